-- The token wallets' read models, written only by the `wallets` projector
-- (`chronicle_projections::wallets`) from `Wallet` events, which carry their postings and the
-- balances after them, so nothing here recomputes a rule.
--
-- wallet_balances: one row per wallet (balance = available + reserved).
-- wallet_ledger: one row per wallet event (operation) with its postings (double entry, summing
--   to zero), the operation's amount, the change of the wallet's balance, the running balances
--   after it, the feature it paid for and a reason in words. Usage per feature per day is a
--   query over it (debits and captures, less refunds).
-- wallet_reservations: every reservation, open or closed (captured + released = amount once
--   closed).

CREATE TABLE wallet_balances
(
    tenant_id     text        NOT NULL,
    wallet_id     text        NOT NULL,
    parent_id     text,
    balance       bigint      NOT NULL DEFAULT 0,
    reserved      bigint      NOT NULL DEFAULT 0,
    available     bigint      NOT NULL DEFAULT 0,
    opened_at     timestamptz,
    updated_at    timestamptz NOT NULL,
    last_position bigint      NOT NULL,
    PRIMARY KEY (tenant_id, wallet_id)
);

CREATE TABLE wallet_ledger
(
    tenant_id       text        NOT NULL,
    global_position bigint      NOT NULL,
    wallet_id       text        NOT NULL,
    -- purchase, debit, refused, reserve, capture, release, expire, refund, transfer_out,
    -- transfer_in, open, thresholds, low_balance_alert, auto_refill_requested
    kind            text        NOT NULL,
    reference       text,
    feature         text,
    reason          text        NOT NULL,
    -- The operation's amount (a refused one: what was required).
    amount          bigint      NOT NULL DEFAULT 0,
    -- The change of the wallet's balance (sum of its own accounts' postings).
    balance_change  bigint      NOT NULL DEFAULT 0,
    -- [{"account", "amount"}], summing to zero.
    postings        jsonb       NOT NULL,
    balance         bigint      NOT NULL,
    reserved        bigint      NOT NULL,
    available       bigint      NOT NULL,
    at              timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, global_position)
);
CREATE INDEX wallet_ledger_by_wallet ON wallet_ledger (tenant_id, wallet_id, global_position);
CREATE INDEX wallet_ledger_by_reference ON wallet_ledger (tenant_id, wallet_id, reference);
CREATE INDEX wallet_ledger_by_time ON wallet_ledger (tenant_id, at);

CREATE TABLE wallet_reservations
(
    tenant_id     text        NOT NULL,
    wallet_id     text        NOT NULL,
    reservation   text        NOT NULL,
    purpose       text        NOT NULL,
    amount        bigint      NOT NULL,
    captured      bigint      NOT NULL DEFAULT 0,
    released      bigint      NOT NULL DEFAULT 0,
    expires_at    timestamptz NOT NULL,
    -- open, captured (fully), released, expired
    state         text        NOT NULL DEFAULT 'open',
    reserved_at   timestamptz NOT NULL,
    closed_at     timestamptz,
    last_position bigint      NOT NULL,
    PRIMARY KEY (tenant_id, wallet_id, reservation)
);
CREATE INDEX wallet_reservations_open ON wallet_reservations (tenant_id, expires_at) WHERE state = 'open';

GRANT SELECT, INSERT, UPDATE, DELETE ON wallet_balances TO chronicle_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON wallet_ledger TO chronicle_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON wallet_reservations TO chronicle_app;

-- Row-level security as in 20261122000007.
ALTER TABLE wallet_balances ENABLE ROW LEVEL SECURITY;
ALTER TABLE wallet_ledger ENABLE ROW LEVEL SECURITY;
ALTER TABLE wallet_reservations ENABLE ROW LEVEL SECURITY;

CREATE POLICY wallet_balances_tenant ON wallet_balances
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));

CREATE POLICY wallet_ledger_tenant ON wallet_ledger
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));

CREATE POLICY wallet_reservations_tenant ON wallet_reservations
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));
