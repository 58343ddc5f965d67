-- The work lists of the service process managers (issue 4). Written by the `service_work`
-- projector (every tenant), worked by `chronicle_commands::service` (every tenant): work lists,
-- not read models served to callers, so no row-level security, like `call_follow_ups`.
--
-- `service_sla_watch`: one row per opened service request (state `pending`) with its SLA due
-- time. The SLA sweeper claims pending rows whose due time has passed by the database's clock
-- and sends `CheckSla { at: now() }` to the request; the aggregate records the breach once.
-- The projector sets state `done` when the request is breached or resolved (nothing left to
-- watch); the sweeper sets `done` after a successful check and `refused` for a refusal.
--
-- `maintenance_renewals`: one row per maintenance contract mirroring its end, auto-renewal and
-- status. The renewal worker claims active, auto-renewing rows whose end has passed by the
-- database's clock and renews for 12 months under the reference `auto:<old end>`; the
-- contract's idempotency by reference makes a repeated pass renew once. The projector moves
-- `ends_at` on each renewal, so the row waits for the next end.
--
-- Rows are claimed with `FOR UPDATE SKIP LOCKED` and a lease (`not_before`).
CREATE TABLE service_sla_watch
(
    tenant_id      text        NOT NULL,
    request_id     text        NOT NULL,
    sla_due_at     timestamptz NOT NULL,
    -- pending, done, refused
    state          text        NOT NULL DEFAULT 'pending',
    attempts       integer     NOT NULL DEFAULT 0,
    last_error     text,
    not_before     timestamptz NOT NULL DEFAULT now(),
    -- The ServiceRequestOpened event's global position.
    event_position bigint      NOT NULL,
    PRIMARY KEY (tenant_id, request_id)
);
CREATE INDEX service_sla_watch_due ON service_sla_watch (sla_due_at) WHERE state = 'pending';

CREATE TABLE maintenance_renewals
(
    tenant_id      text        NOT NULL,
    contract_id    text        NOT NULL,
    ends_at        timestamptz NOT NULL,
    auto_renew     boolean     NOT NULL,
    -- active, cancelled
    status         text        NOT NULL,
    attempts       integer     NOT NULL DEFAULT 0,
    last_error     text,
    not_before     timestamptz NOT NULL DEFAULT now(),
    last_position  bigint      NOT NULL,
    PRIMARY KEY (tenant_id, contract_id)
);
CREATE INDEX maintenance_renewals_due ON maintenance_renewals (ends_at) WHERE auto_renew AND status = 'active';

GRANT SELECT, INSERT, UPDATE, DELETE ON service_sla_watch TO chronicle_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON maintenance_renewals TO chronicle_app;
