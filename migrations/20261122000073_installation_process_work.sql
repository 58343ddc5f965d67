-- The work lists of the installation process managers (issue 4). Written by the
-- `installation_work` projector (every tenant), worked by
-- `chronicle_commands::installations::InstallationWorker` (every tenant): work lists, not read
-- models served to callers, so no row-level security, like `call_follow_ups`.
--
-- `installation_openings`: one row per `OrderPaid` with installable items (state `new`). The
-- worker opens one installation per order (`isr_<uuid>`, derived from the tenant and the order
-- id, so running twice opens it once) and sets state `done`, or `refused` with the reason.
--
-- `installation_commissionings`: one row per `InstallationCommissioned`. Each step has its own
-- state and is idempotent: the payout (`payout_<uuid>` derived from the installation id,
-- computed once), the warranties (`Register` per installed component with a warranty period,
-- one stream per component), and the
-- customer's notification (a template queued on the customer's conversation under the key
-- `installation-commissioned:<installation id>`; `skipped` with the reason when the customer has
-- no conversation, opted out, or the template is not approved).
--
-- Rows are claimed with `FOR UPDATE SKIP LOCKED` and a lease (`not_before`); a transient failure
-- is retried after a growing delay (`not_before`, from `attempts`).
CREATE TABLE installation_openings
(
    tenant_id         text        NOT NULL,
    order_id          text        NOT NULL,
    customer_id       text        NOT NULL,
    -- The installable line items of the paid order, as in `OrderPaid`.
    installable_items jsonb       NOT NULL,
    paid_at           timestamptz NOT NULL,
    -- new, done, refused
    state             text        NOT NULL DEFAULT 'new',
    installation_id   text,
    attempts          integer     NOT NULL DEFAULT 0,
    last_error        text,
    not_before        timestamptz NOT NULL DEFAULT now(),
    done_at           timestamptz,
    -- The OrderPaid event's global position (the causation of the opening).
    event_position    bigint      NOT NULL,
    PRIMARY KEY (tenant_id, order_id)
);
CREATE INDEX installation_openings_todo ON installation_openings (not_before) WHERE state = 'new';

CREATE TABLE installation_commissionings
(
    tenant_id         text        NOT NULL,
    installation_id   text        NOT NULL,
    customer_id       text        NOT NULL,
    order_id          text        NOT NULL,
    installation_type text        NOT NULL,
    system_size_w     bigint      NOT NULL,
    -- [{serial, kind, warranty_months}] and [technician id], as in `InstallationCommissioned`.
    components        jsonb       NOT NULL,
    technicians       jsonb       NOT NULL,
    commissioned_at   timestamptz NOT NULL,
    -- new, done, refused
    payout_state      text        NOT NULL DEFAULT 'new',
    payout_id         text,
    -- new, done, refused
    warranty_state    text        NOT NULL DEFAULT 'new',
    -- new, queued, skipped
    notify_state      text        NOT NULL DEFAULT 'new',
    -- Why the notification was skipped (a refusal code, no personal data).
    notify_reason     text,
    attempts          integer     NOT NULL DEFAULT 0,
    last_error        text,
    not_before        timestamptz NOT NULL DEFAULT now(),
    event_position    bigint      NOT NULL,
    PRIMARY KEY (tenant_id, installation_id)
);
CREATE INDEX installation_commissionings_todo ON installation_commissionings (not_before)
    WHERE payout_state = 'new' OR warranty_state = 'new' OR notify_state = 'new';

GRANT SELECT, INSERT, UPDATE, DELETE ON installation_openings TO chronicle_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON installation_commissionings TO chronicle_app;
