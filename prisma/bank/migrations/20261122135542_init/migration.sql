-- CreateTable
CREATE TABLE "accounts" (
    "id" BIGSERIAL NOT NULL,
    "address" TEXT NOT NULL,
    "kind" TEXT NOT NULL,
    "balance" DECIMAL(78,0) NOT NULL DEFAULT 0,
    "allow_negative" BOOLEAN NOT NULL DEFAULT false,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "accounts_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "transfers" (
    "id" TEXT NOT NULL,
    "kind" TEXT NOT NULL,
    "memo" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "transfers_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "entries" (
    "id" BIGSERIAL NOT NULL,
    "transfer_id" TEXT NOT NULL,
    "account_id" BIGINT NOT NULL,
    "amount" DECIMAL(78,0) NOT NULL,
    "balance_after" DECIMAL(78,0) NOT NULL,
    "kind" TEXT NOT NULL,
    "counterparty" TEXT,
    "memo" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "entries_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "holds" (
    "id" TEXT NOT NULL,
    "account_id" BIGINT NOT NULL,
    "escrow_account_id" BIGINT NOT NULL,
    "reference" TEXT NOT NULL,
    "amount" DECIMAL(78,0) NOT NULL,
    "posted" DECIMAL(78,0) NOT NULL DEFAULT 0,
    "status" TEXT NOT NULL DEFAULT 'held',
    "expires_at" TIMESTAMPTZ(3) NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "resolved_at" TIMESTAMPTZ(3),

    CONSTRAINT "holds_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "payments" (
    "key" TEXT NOT NULL,
    "hold_id" TEXT NOT NULL,
    "transfer_id" TEXT NOT NULL,
    "recipient_id" BIGINT NOT NULL,
    "amount" DECIMAL(78,0) NOT NULL,
    "fee" DECIMAL(78,0) NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "payments_pkey" PRIMARY KEY ("key")
);

-- CreateTable
CREATE TABLE "idempotency_keys" (
    "scope" TEXT NOT NULL,
    "key" TEXT NOT NULL,
    "request_hash" TEXT NOT NULL,
    "response" JSON,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "idempotency_keys_pkey" PRIMARY KEY ("scope","key")
);

-- CreateIndex
CREATE UNIQUE INDEX "accounts_address_key" ON "accounts"("address");

-- CreateIndex
CREATE INDEX "entries_account_id_id_idx" ON "entries"("account_id", "id");

-- CreateIndex
CREATE INDEX "entries_transfer_id_idx" ON "entries"("transfer_id");

-- CreateIndex
CREATE UNIQUE INDEX "holds_escrow_account_id_key" ON "holds"("escrow_account_id");

-- CreateIndex
CREATE INDEX "holds_status_expires_at_idx" ON "holds"("status", "expires_at");

-- CreateIndex
CREATE INDEX "holds_reference_idx" ON "holds"("reference");

-- CreateIndex
CREATE INDEX "payments_hold_id_idx" ON "payments"("hold_id");

-- AddForeignKey
ALTER TABLE "entries" ADD CONSTRAINT "entries_transfer_id_fkey" FOREIGN KEY ("transfer_id") REFERENCES "transfers"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "entries" ADD CONSTRAINT "entries_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "accounts"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "payments" ADD CONSTRAINT "payments_hold_id_fkey" FOREIGN KEY ("hold_id") REFERENCES "holds"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- Invariants Prisma's schema language cannot express (added by hand).

-- Balances never go negative; only the bridge account (which mirrors tokens locked in the vault)
-- may. The ledger checks this before it writes (ENOFUNDS); this is the last line.
ALTER TABLE "accounts" ADD CONSTRAINT "accounts_balance_non_negative" CHECK ("allow_negative" OR "balance" >= 0);
ALTER TABLE "accounts" ADD CONSTRAINT "accounts_kind" CHECK ("kind" IN ('user', 'fee', 'bridge', 'hold'));
ALTER TABLE "holds" ADD CONSTRAINT "holds_amounts" CHECK ("amount" >= 0 AND "posted" >= 0 AND "posted" <= "amount");
ALTER TABLE "holds" ADD CONSTRAINT "holds_status" CHECK ("status" IN ('held', 'released', 'expired'));
ALTER TABLE "payments" ADD CONSTRAINT "payments_amounts" CHECK ("amount" >= 0 AND "fee" >= 0);

-- Double entry: the entries of a transfer are inserted by one statement and must sum to zero.
CREATE FUNCTION "entries_sum_to_zero"() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  unbalanced TEXT;
BEGIN
  SELECT transfer_id INTO unbalanced FROM new_entries GROUP BY transfer_id HAVING sum(amount) <> 0 LIMIT 1;
  IF unbalanced IS NOT NULL THEN
    RAISE EXCEPTION 'entries of transfer % do not sum to zero', unbalanced USING ERRCODE = '23514';
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER "entries_sum_to_zero" AFTER INSERT ON "entries" REFERENCING NEW TABLE AS new_entries
  FOR EACH STATEMENT EXECUTE FUNCTION "entries_sum_to_zero"();

-- The ledger is append-only: a mistake is corrected by another transfer, never by an edit.
CREATE FUNCTION "ledger_append_only"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = '42501';
END $$;
CREATE TRIGGER "entries_append_only" BEFORE UPDATE OR DELETE ON "entries" FOR EACH STATEMENT EXECUTE FUNCTION "ledger_append_only"();
CREATE TRIGGER "transfers_append_only" BEFORE UPDATE OR DELETE ON "transfers" FOR EACH STATEMENT EXECUTE FUNCTION "ledger_append_only"();
CREATE TRIGGER "payments_append_only" BEFORE UPDATE OR DELETE ON "payments" FOR EACH STATEMENT EXECUTE FUNCTION "ledger_append_only"();
