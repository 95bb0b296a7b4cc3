-- The Ethereum bridge's tables, in the bank's Postgres schema (search_path). Applied by
-- BridgeModule at start (BridgeRepository.applySchema), idempotently: every statement may run again.
-- Amounts are NUMERIC(78,0) in the smallest unit, as the ledger's. A later change to a table is an
-- idempotent `ALTER TABLE ... IF NOT EXISTS` after its CREATE (as bridge_deposits' below), so a
-- bank started on an older database brings it up to date (or the file moves into
-- prisma/bank/migrations as a migration of its own).

-- Which chain the bridge's state is about (one row): the chain id and genesis block hash the node
-- answered with when the state was recorded, the vault watched, and how deposits on that chain are
-- keyed in the ledger (domain/chain-identity.ts). A node with another genesis is another chain:
-- a dev chain started afresh (BRIDGE_DEV_CHAIN: the chain-derived state is reset) or the wrong
-- network (the bridge stops).
CREATE TABLE IF NOT EXISTS bridge_chain (
  id            SMALLINT    PRIMARY KEY DEFAULT 1 CHECK (id = 1),
  chain_id      BIGINT      NOT NULL,
  genesis_hash  TEXT        NOT NULL,
  vault         TEXT        NOT NULL,
  deposit_keys  TEXT        NOT NULL CHECK (deposit_keys IN ('legacy', 'chain')),
  resets        INTEGER     NOT NULL DEFAULT 0,
  recorded_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Every Deposited event the bank has taken on. A deposit is (chain id, genesis, transaction,
-- ordinal: its place among the vault's Deposited events of that transaction), which stays the
-- same when a reorganisation mines the transaction again in another block at another log index.
-- The row is written before the ledger is credited, with the ledger key it is credited under
-- (ledger_key); transfer_id is set once the ledger has it. A row without transfer_id is a credit
-- the bank may not have finished: the next scan credits it again under the same key, which the
-- ledger turns into "already done" if it was.
CREATE TABLE IF NOT EXISTS bridge_deposits (
  chain_id        BIGINT        NOT NULL,
  -- NULL only on rows older than bridge_chain whose chain a dev-chain reset left behind.
  genesis_hash    TEXT,
  tx_hash         TEXT          NOT NULL,
  ordinal         INTEGER       NOT NULL,
  -- Where the event was when the bank first saw it.
  log_index       INTEGER       NOT NULL,
  block_number    BIGINT        NOT NULL,
  block_hash      TEXT          NOT NULL,
  vault           TEXT          NOT NULL,
  deposit_id      NUMERIC(78,0) NOT NULL,
  from_address    TEXT          NOT NULL,
  ledger_account  TEXT          NOT NULL,
  amount          NUMERIC(78,0) NOT NULL CHECK (amount > 0),
  ledger_key      TEXT          NOT NULL,
  transfer_id     TEXT,
  credited_at     TIMESTAMPTZ   NOT NULL DEFAULT now()
);
-- Tables made before bridge_chain: keyed (chain, tx, log index), credited before recorded.
ALTER TABLE bridge_deposits ADD COLUMN IF NOT EXISTS genesis_hash TEXT;
ALTER TABLE bridge_deposits ADD COLUMN IF NOT EXISTS ordinal INTEGER;
ALTER TABLE bridge_deposits ADD COLUMN IF NOT EXISTS ledger_key TEXT;
ALTER TABLE bridge_deposits ALTER COLUMN transfer_id DROP NOT NULL;
UPDATE bridge_deposits SET ledger_key = 'deposit:' || chain_id || ':' || tx_hash || ':' || log_index WHERE ledger_key IS NULL;
UPDATE bridge_deposits AS d SET ordinal = o.ordinal
  FROM (SELECT chain_id, tx_hash, log_index, (row_number() OVER (PARTITION BY chain_id, tx_hash ORDER BY log_index) - 1)::int AS ordinal
        FROM bridge_deposits WHERE ordinal IS NULL) AS o
  WHERE d.ordinal IS NULL AND d.chain_id = o.chain_id AND d.tx_hash = o.tx_hash AND d.log_index = o.log_index;
ALTER TABLE bridge_deposits DROP CONSTRAINT IF EXISTS bridge_deposits_pkey;
ALTER TABLE bridge_deposits ALTER COLUMN ordinal SET NOT NULL;
ALTER TABLE bridge_deposits ALTER COLUMN ledger_key SET NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS bridge_deposits_identity ON bridge_deposits (chain_id, genesis_hash, tx_hash, ordinal);
CREATE UNIQUE INDEX IF NOT EXISTS bridge_deposits_ledger_key ON bridge_deposits (ledger_key);
CREATE INDEX IF NOT EXISTS bridge_deposits_ledger_account ON bridge_deposits (ledger_account, credited_at);

-- How far a watcher has read: the last block scanned (final when scanned) and its hash, so a
-- reorganisation deeper than the confirmations is noticed and reported.
CREATE TABLE IF NOT EXISTS bridge_cursors (
  name         TEXT        PRIMARY KEY,
  block_number BIGINT      NOT NULL,
  block_hash   TEXT,
  updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The cursor's recent positions (the newest 64 per cursor): after a reorganisation deeper than the
-- confirmations, the newest one still on the chain is where the watcher reads again from.
CREATE TABLE IF NOT EXISTS bridge_anchors (
  name         TEXT   NOT NULL,
  block_number BIGINT NOT NULL,
  block_hash   TEXT   NOT NULL,
  PRIMARY KEY (name, block_number)
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
