-- The work lists of the campaign runner (`chronicle_commands::campaigns::CampaignRunner`),
-- written by the `campaign_work` projector (`chronicle_projections::campaigns`) from the log.
--
-- `campaign_runs`: one row per scheduled campaign, with its status copied from the Campaign
-- events. The runner claims rows that are not `idle`, loads the campaign from the log and does
-- what it needs next: start it when due, run and dispatch the next batch (rate-limited through
-- `not_before`), or settle a finished one (captures confirmed, the rest of the reservation
-- released). It marks the row `idle` when there is nothing to do until the campaign changes;
-- every Campaign event makes it busy again (status changes also clear `not_before`).
CREATE TABLE campaign_runs
(
    tenant_id      text        NOT NULL,
    campaign_id    text        NOT NULL,
    -- scheduled, running, paused, completed, cancelled
    status         text        NOT NULL,
    start_at       timestamptz NOT NULL,
    idle           boolean     NOT NULL DEFAULT false,
    not_before     timestamptz NOT NULL DEFAULT now(),
    attempts       integer     NOT NULL DEFAULT 0,
    last_error     text,
    -- The global position of the campaign's latest event: the runner marks the row idle only
    -- if no event came in since it claimed the row.
    last_position  bigint      NOT NULL,
    PRIMARY KEY (tenant_id, campaign_id)
);
CREATE INDEX campaign_runs_todo ON campaign_runs (not_before) WHERE NOT idle;

-- `campaign_messages`: which campaign and recipient a sent message (its keyed provider
-- reference) belongs to, so delivery statuses find their recipient.
CREATE TABLE campaign_messages
(
    tenant_id   text NOT NULL,
    message_ref text NOT NULL,
    campaign_id text NOT NULL,
    recipient   text NOT NULL,
    PRIMARY KEY (tenant_id, message_ref)
);

-- `campaign_outcomes`: each outcome of a campaign message (the sender's OutboundMessageSent /
-- OutboundMessageFailed for a key `campaign:<id>:<recipient>`, and its delivery statuses),
-- once per (recipient, outcome). The runner records it on the campaign
-- (`RecordRecipientOutcome`), refunds a failed recipient, and marks the row done.
CREATE TABLE campaign_outcomes
(
    tenant_id      text        NOT NULL,
    campaign_id    text        NOT NULL,
    recipient      text        NOT NULL,
    -- sent, delivered, read, failed
    outcome        text        NOT NULL,
    reason         text,
    at             timestamptz NOT NULL,
    -- new, done, refused
    state          text        NOT NULL DEFAULT 'new',
    not_before     timestamptz NOT NULL DEFAULT now(),
    attempts       integer     NOT NULL DEFAULT 0,
    last_error     text,
    event_position bigint      NOT NULL,
    PRIMARY KEY (tenant_id, campaign_id, recipient, outcome)
);
CREATE INDEX campaign_outcomes_todo ON campaign_outcomes (not_before) WHERE state = 'new';

-- Written by a projector (every tenant) and worked by the runner (every tenant): work lists,
-- not read models served to callers, so no row-level security; both act as the application role.
GRANT SELECT, INSERT, UPDATE, DELETE ON campaign_runs TO chronicle_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON campaign_messages TO chronicle_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON campaign_outcomes TO chronicle_app;
