-- The work lists of the wallet sweeper (issue 5's process manager). Written by the
-- `wallet_work` projector (`chronicle_projections::wallet_work`, every tenant) from `Wallet`
-- events, worked by `chronicle_commands::wallet_sweeper::WalletSweeper` (every tenant): work
-- lists, not read models served to callers, so no row-level security, like `call_follow_ups`.
--
-- wallet_open_transfers: one row per `TokensTransferredOut` (state `open`) until the target's
--   `TokensTransferredIn` with the same reference lands (state `done`). The sweeper runs the
--   missing second half (`TransferIn`, idempotent by the transfer's reference) for open rows
--   older than a grace period, so the inline retry of `WalletService::transfer` goes first.
-- wallet_open_reservations: one row per `TokensReserved` with its `expires_at` (state `open`)
--   until the reservation is closed (fully captured, released or expired: state `closed`).
--   The sweeper sends `ExpireReservations { at: <database now> }` to each wallet with an open
--   row past due by the database's clock.
-- wallet_alert_work: one row per `LowBalanceAlerted` / `AutoRefillRequested` (state `new`);
--   the sweeper raises each once to the operators (state `raised`). Finance sees them in the
--   `wallet_alerts` read model (migration 0054).
--
-- Rows are claimed with `FOR UPDATE SKIP LOCKED` and a lease (`not_before`); the aggregate's
-- idempotency covers a crash mid-step or two sweepers.
CREATE TABLE wallet_open_transfers
(
    tenant_id      text        NOT NULL,
    from_wallet    text        NOT NULL,
    reference      text        NOT NULL,
    to_wallet      text        NOT NULL,
    amount         bigint      NOT NULL,
    -- The source half's log time.
    out_at         timestamptz NOT NULL,
    -- open, done, refused
    state          text        NOT NULL DEFAULT 'open',
    attempts       integer     NOT NULL DEFAULT 0,
    last_error     text,
    not_before     timestamptz NOT NULL DEFAULT now(),
    event_position bigint      NOT NULL,
    PRIMARY KEY (tenant_id, from_wallet, reference)
);
CREATE INDEX wallet_open_transfers_todo ON wallet_open_transfers (out_at) WHERE state = 'open';

CREATE TABLE wallet_open_reservations
(
    tenant_id      text        NOT NULL,
    wallet_id      text        NOT NULL,
    reservation    text        NOT NULL,
    expires_at     timestamptz NOT NULL,
    -- open, closed
    state          text        NOT NULL DEFAULT 'open',
    attempts       integer     NOT NULL DEFAULT 0,
    last_error     text,
    not_before     timestamptz NOT NULL DEFAULT now(),
    event_position bigint      NOT NULL,
    PRIMARY KEY (tenant_id, wallet_id, reservation)
);
CREATE INDEX wallet_open_reservations_due ON wallet_open_reservations (expires_at) WHERE state = 'open';

CREATE TABLE wallet_alert_work
(
    tenant_id       text        NOT NULL,
    global_position bigint      NOT NULL,
    wallet_id       text        NOT NULL,
    -- low_balance_alert, auto_refill
    kind            text        NOT NULL,
    threshold       bigint      NOT NULL,
    available       bigint      NOT NULL,
    -- new, raised
    state           text        NOT NULL DEFAULT 'new',
    raised_at       timestamptz,
    attempts        integer     NOT NULL DEFAULT 0,
    not_before      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, global_position)
);
CREATE INDEX wallet_alert_work_new ON wallet_alert_work (global_position) WHERE state = 'new';

GRANT SELECT, INSERT, UPDATE, DELETE ON wallet_open_transfers TO chronicle_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON wallet_open_reservations TO chronicle_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON wallet_alert_work TO chronicle_app;
