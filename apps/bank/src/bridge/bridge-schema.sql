-- The Ethereum bridge's tables, in the bank's Postgres schema (search_path). Applied by
-- BridgeModule at start (bridge-database.ts), idempotently: every statement is IF NOT EXISTS.
-- Amounts are NUMERIC(78,0) in the smallest unit, as the ledger's. A later change to a table is an
-- `ALTER TABLE ... ADD COLUMN IF NOT EXISTS` appended here (or the file moves into
-- prisma/bank/migrations as a migration of its own).

-- Every Deposited event credited to the ledger: (chain, tx, log index) is the event's identity and
-- the ledger's idempotency key (deposit:<chainId>:<txHash>:<logIndex>).
CREATE TABLE IF NOT EXISTS bridge_deposits (
  chain_id        BIGINT        NOT NULL,
  tx_hash         TEXT          NOT NULL,
  log_index       INTEGER       NOT NULL,
  block_number    BIGINT        NOT NULL,
  block_hash      TEXT          NOT NULL,
  vault           TEXT          NOT NULL,
  deposit_id      NUMERIC(78,0) NOT NULL,
  from_address    TEXT          NOT NULL,
  ledger_account  TEXT          NOT NULL,
  amount          NUMERIC(78,0) NOT NULL CHECK (amount > 0),
  transfer_id     TEXT          NOT NULL,
  credited_at     TIMESTAMPTZ   NOT NULL DEFAULT now(),
  PRIMARY KEY (chain_id, tx_hash, log_index)
);
CREATE INDEX IF NOT EXISTS bridge_deposits_ledger_account ON bridge_deposits (ledger_account, credited_at);

-- How far a watcher has read: the last block scanned (final when scanned) and its hash, so a
-- reorganisation deeper than the confirmations is noticed and reported.
CREATE TABLE IF NOT EXISTS bridge_cursors (
  name         TEXT        PRIMARY KEY,
  block_number BIGINT      NOT NULL,
  block_hash   TEXT,
  updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Withdrawals: requested by a signed POST /withdrawals, funded by a ledger hold, paid by the
-- vault (withdrawal_id is the vault's withdrawalId), then burnt (confirmed) or released (failed).
CREATE TABLE IF NOT EXISTS bridge_withdrawals (
  withdrawal_id     TEXT          PRIMARY KEY CHECK (withdrawal_id ~ '^0x[0-9a-f]{64}$'),
  from_address      TEXT          NOT NULL,
  to_address        TEXT          NOT NULL,
  amount            NUMERIC(78,0) NOT NULL CHECK (amount > 0),
  idempotency_key   TEXT          NOT NULL,
  request_hash      TEXT          NOT NULL,
  signature         TEXT          NOT NULL,
  expires_at        TIMESTAMPTZ   NOT NULL,
  status            TEXT          NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'confirmed', 'failed')),
  hold_id           TEXT,
  nonce             BIGINT,
  tx_hash           TEXT,
  raw_tx            TEXT,
  accepted          BOOLEAN       NOT NULL DEFAULT false,
  rejections        INTEGER       NOT NULL DEFAULT 0,
  replacements      INTEGER       NOT NULL DEFAULT 0,
  resends           INTEGER       NOT NULL DEFAULT 0,
  cancelling        BOOLEAN       NOT NULL DEFAULT false,
  last_broadcast_at TIMESTAMPTZ,
  block_number      BIGINT,
  signed_at_block   BIGINT,
  transfer_id       TEXT,
  error             TEXT,
  created_at        TIMESTAMPTZ   NOT NULL DEFAULT now(),
  updated_at        TIMESTAMPTZ   NOT NULL DEFAULT now(),
  finished_at       TIMESTAMPTZ,
  UNIQUE (from_address, idempotency_key)
);
CREATE INDEX IF NOT EXISTS bridge_withdrawals_open ON bridge_withdrawals (created_at) WHERE status IN ('pending', 'sent');
