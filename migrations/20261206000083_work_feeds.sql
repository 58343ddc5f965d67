-- Work lists split in two (issue 18, decision 0013): the projector's feed, rebuildable, and the
-- worker's own table, owned by `commands`.
--
-- Before, a projector inserted into a worker's table (`outbox`, `call_follow_ups`,
-- `campaign_runs`, `campaign_outcomes`, `installation_openings`, `installation_commissionings`,
-- `media_jobs`, `wallet_alert_work`) and the worker updated the same rows, so the table had two
-- owners and a projector's reset could not clear it. Now:
--
--   * each projector writes only its `*_feed` tables (what the log says: the facts the work
--     starts from, and outcomes the log recorded), and its reset deletes them: a feed is a read
--     model like any other, rebuilt from the log at will;
--   * each worker copies what its feed gained into its own table (`commands::workers::Admission`)
--     and only then works it. Its mark in `work_admissions` is the highest feed position it
--     copied; a feed rebuilt from the log brings back rows at the positions they had, all at or
--     below the mark, so nothing is copied (and no side effect runs) again. A feed row whose
--     position moves (an outcome the log recorded later) is copied again, as an update.
--
-- The worker tables keep their names, columns and meaning; only their writer changed.

CREATE TABLE work_admissions
(
    -- The feed table's name.
    feed        text        PRIMARY KEY,
    -- The highest feed position copied into the worker's table.
    position    bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- `OutboundMessageQueued` (and the log's outcome of the message) → `outbox`.
CREATE TABLE outbox_feed
(
    tenant_id          text        NOT NULL,
    stream_id          text        NOT NULL,
    contact_id         text        NOT NULL,
    idempotency_key    text        NOT NULL,
    business_number_id text,
    recipient          jsonb       NOT NULL,
    body               jsonb       NOT NULL,
    correlation_id     text        NOT NULL,
    queued_position    bigint      NOT NULL,
    created_at         timestamptz NOT NULL,
    -- sent or failed once the log recorded the outcome.
    settled            text CHECK (settled IN ('sent', 'failed')),
    position           bigint      NOT NULL,
    PRIMARY KEY (tenant_id, stream_id, idempotency_key)
);
CREATE INDEX outbox_feed_position ON outbox_feed (position);

-- `CallCompleted` with a contact → `call_follow_ups`.
CREATE TABLE call_follow_up_feed
(
    tenant_id   text        NOT NULL,
    call_id     text        NOT NULL,
    contact_id  text        NOT NULL,
    outcome     text        NOT NULL,
    ended_at    timestamptz NOT NULL,
    position    bigint      NOT NULL,
    PRIMARY KEY (tenant_id, call_id)
);
CREATE INDEX call_follow_up_feed_position ON call_follow_up_feed (position);

-- The outcome of each follow-up message (`OutboundMessageSent` / `OutboundMessageFailed` of a
-- `call-follow-up:` key) → the `call_follow_ups` row waiting for it.
CREATE TABLE call_follow_up_outcome_feed
(
    tenant_id        text        NOT NULL,
    message_key      text        NOT NULL,
    -- sent or failed
    send_state       text        NOT NULL,
    send_message_ref text,
    send_error_code  bigint,
    send_retryable   boolean,
    send_at          timestamptz NOT NULL,
    position         bigint      NOT NULL,
    PRIMARY KEY (tenant_id, message_key)
);
CREATE INDEX call_follow_up_outcome_feed_position ON call_follow_up_outcome_feed (position);

-- A scheduled campaign's status and latest event → `campaign_runs` (busy again).
CREATE TABLE campaign_run_feed
(
    tenant_id   text        NOT NULL,
    campaign_id text        NOT NULL,
    status      text        NOT NULL,
    start_at    timestamptz NOT NULL,
    -- The campaign's latest event, and its latest that changed the status.
    position        bigint  NOT NULL,
    status_position bigint  NOT NULL,
    PRIMARY KEY (tenant_id, campaign_id)
);
CREATE INDEX campaign_run_feed_position ON campaign_run_feed (position);

-- Each outcome of a campaign message → `campaign_outcomes`.
CREATE TABLE campaign_outcome_feed
(
    tenant_id   text        NOT NULL,
    campaign_id text        NOT NULL,
    recipient   text        NOT NULL,
    outcome     text        NOT NULL,
    reason      text,
    at          timestamptz NOT NULL,
    position    bigint      NOT NULL,
    PRIMARY KEY (tenant_id, campaign_id, recipient, outcome)
);
CREATE INDEX campaign_outcome_feed_position ON campaign_outcome_feed (position);

-- `OrderPaid` with installable items → `installation_openings`.
CREATE TABLE installation_opening_feed
(
    tenant_id         text        NOT NULL,
    order_id          text        NOT NULL,
    customer_id       text        NOT NULL,
    installable_items jsonb       NOT NULL,
    paid_at           timestamptz NOT NULL,
    position          bigint      NOT NULL,
    PRIMARY KEY (tenant_id, order_id)
);
CREATE INDEX installation_opening_feed_position ON installation_opening_feed (position);

-- `InstallationCommissioned` → `installation_commissionings`.
CREATE TABLE installation_commissioning_feed
(
    tenant_id         text        NOT NULL,
    installation_id   text        NOT NULL,
    customer_id       text        NOT NULL,
    order_id          text        NOT NULL,
    installation_type text        NOT NULL,
    system_size_w     bigint      NOT NULL,
    components        jsonb       NOT NULL,
    technicians       jsonb       NOT NULL,
    commissioned_at   timestamptz NOT NULL,
    position          bigint      NOT NULL,
    PRIMARY KEY (tenant_id, installation_id)
);
CREATE INDEX installation_commissioning_feed_position ON installation_commissioning_feed (position);

-- A media message (and the log's outcome of its fetch) → `media_jobs`.
CREATE TABLE media_job_feed
(
    tenant_id       text        NOT NULL,
    media_ref       text        NOT NULL,
    conversation_id text        NOT NULL,
    contact_id      text        NOT NULL,
    message_ref     text        NOT NULL,
    kind            text        NOT NULL,
    content         jsonb       NOT NULL,
    correlation_id  text        NOT NULL,
    event_position  bigint      NOT NULL,
    -- stored or failed once the log recorded the outcome, with the failure's code.
    settled         text CHECK (settled IN ('stored', 'failed')),
    settled_error   text,
    position        bigint      NOT NULL,
    PRIMARY KEY (tenant_id, media_ref)
);
CREATE INDEX media_job_feed_position ON media_job_feed (position);

-- `LowBalanceAlerted` / `AutoRefillRequested` → `wallet_alert_work`.
CREATE TABLE wallet_alert_feed
(
    tenant_id text   NOT NULL,
    wallet_id text   NOT NULL,
    kind      text   NOT NULL,
    threshold bigint NOT NULL,
    available bigint NOT NULL,
    -- The alert's event (also the work row's key).
    position  bigint NOT NULL,
    PRIMARY KEY (tenant_id, position)
);
CREATE INDEX wallet_alert_feed_position ON wallet_alert_feed (position);

-- The sweepers' leases on the tables their projectors own (`wallet_open_transfers`,
-- `wallet_open_reservations`, `service_sla_watch`, `maintenance_renewals`): those tables are
-- feeds already (the projectors clear them on a rebuild), but the sweepers wrote their leases,
-- errors and give-ups into them. These now live here, owned by `commands`
-- (`commands::workers::LeaseClaim::on_feed`).
CREATE TABLE work_leases
(
    -- The worker (`wallet-transfers`, `wallet-expiries`, `service-sla`, `maintenance-renewals`).
    worker     text        NOT NULL,
    -- The feed row's key values, as a JSON array in the claim's key order.
    item       jsonb       NOT NULL,
    -- Claimable again after this (the lease).
    not_before timestamptz NOT NULL,
    attempts   integer     NOT NULL DEFAULT 0,
    -- The last error, without personal data.
    last_error text,
    -- Given up on the row while its `version` (the feed row's, when it has one) is unchanged.
    given_up   boolean     NOT NULL DEFAULT false,
    version    bigint,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (worker, item)
);

-- What the sweepers wrote into the projectors' tables moves out (nothing is lost that matters:
-- a lease left behind ends within a minute; a give-up is recomputed by the next refused try).
ALTER TABLE wallet_open_transfers DROP COLUMN attempts, DROP COLUMN last_error, DROP COLUMN not_before;
ALTER TABLE wallet_open_reservations DROP COLUMN attempts, DROP COLUMN last_error, DROP COLUMN not_before;
ALTER TABLE service_sla_watch DROP COLUMN attempts, DROP COLUMN last_error, DROP COLUMN not_before;
ALTER TABLE maintenance_renewals DROP COLUMN attempts, DROP COLUMN last_error, DROP COLUMN not_before;
-- States only the sweepers set: back to the log's view (the rebuild below recomputes them).
UPDATE wallet_open_transfers SET state = 'open' WHERE state = 'refused';
UPDATE service_sla_watch SET state = 'pending' WHERE state = 'refused';
UPDATE maintenance_renewals SET status = 'active' WHERE status = 'refused';

-- A deployment that ran the old projectors: everything they wrote is already in the worker
-- tables, so each worker's mark starts at its projector's checkpoint, and the projector starts
-- over to fill its feed from the log (positions at or below the mark are not copied again).
INSERT INTO work_admissions (feed, position)
SELECT f.feed, coalesce(c.last_position, 0)
  FROM (VALUES ('outbox_feed', 'outbox'),
               ('call_follow_up_feed', 'call_follow_ups'),
               ('call_follow_up_outcome_feed', 'call_follow_ups'),
               ('campaign_run_feed', 'campaign_work'),
               ('campaign_outcome_feed', 'campaign_work'),
               ('installation_opening_feed', 'installation_work'),
               ('installation_commissioning_feed', 'installation_work'),
               ('media_job_feed', 'media'),
               ('wallet_alert_feed', 'wallet_work')) AS f (feed, projector)
  LEFT JOIN projector_checkpoints c ON c.projector = f.projector;

UPDATE projector_checkpoints
   SET last_tx_id = '0'::xid8, last_position = 0, events_applied = 0, updated_at = now()
 WHERE projector IN ('outbox', 'call_follow_ups', 'campaign_work', 'installation_work', 'media', 'wallet_work');

-- The projectors that start over rebuild their other tables too.
DELETE FROM campaign_messages;
DELETE FROM media_files;
DELETE FROM wallet_open_transfers;
DELETE FROM wallet_open_reservations;
DELETE FROM wallet_alerts;

GRANT SELECT, INSERT, UPDATE, DELETE ON outbox_feed, call_follow_up_feed, call_follow_up_outcome_feed,
    campaign_run_feed, campaign_outcome_feed, installation_opening_feed, installation_commissioning_feed,
    media_job_feed, wallet_alert_feed TO chronicle_app;
GRANT SELECT, INSERT, UPDATE ON work_admissions TO chronicle_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON work_leases TO chronicle_app;
-- The workers own their tables now; the projectors' resets never delete from them.
