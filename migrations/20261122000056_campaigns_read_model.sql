-- The campaigns read models, written only by the `campaigns` projector from Campaign events:
-- `campaigns` (one row per campaign with its status and the counts every event carries) and
-- `campaign_recipients` (one row per recipient with its status, batch and failure reason).
-- Counts are copied from the events, never recounted.
CREATE TABLE campaigns
(
    tenant_id     text        NOT NULL,
    campaign_id   text        NOT NULL,
    name          text        NOT NULL,
    template_name text        NOT NULL,
    language      text        NOT NULL,
    variables     jsonb       NOT NULL DEFAULT '[]',
    segment       text        NOT NULL,
    -- draft, scheduled, running, paused, completed, cancelled
    status        text        NOT NULL,
    created_by    text        NOT NULL,
    created_at    timestamptz NOT NULL,
    start_at      timestamptz,
    started_at    timestamptz,
    finished_at   timestamptz,
    -- Milli-tokens: per recipient, held by the reservation, captured, refunded, released.
    unit_price    bigint      NOT NULL DEFAULT 0,
    reserved      bigint      NOT NULL DEFAULT 0,
    reservation   text,
    charged       bigint      NOT NULL DEFAULT 0,
    refunded      bigint      NOT NULL DEFAULT 0,
    released      bigint      NOT NULL DEFAULT 0,
    batches       integer     NOT NULL DEFAULT 0,
    total         integer     NOT NULL,
    pending       integer     NOT NULL,
    queued        integer     NOT NULL DEFAULT 0,
    sent          integer     NOT NULL DEFAULT 0,
    delivered     integer     NOT NULL DEFAULT 0,
    read          integer     NOT NULL DEFAULT 0,
    failed        integer     NOT NULL DEFAULT 0,
    cancelled     integer     NOT NULL DEFAULT 0,
    last_position bigint      NOT NULL,
    PRIMARY KEY (tenant_id, campaign_id)
);
CREATE INDEX campaigns_by_created ON campaigns (tenant_id, created_at DESC, campaign_id);

CREATE TABLE campaign_recipients
(
    tenant_id     text        NOT NULL,
    campaign_id   text        NOT NULL,
    recipient     text        NOT NULL,
    -- The recipient's place in the sending order (0-based).
    position      integer     NOT NULL,
    -- pending, queued, sent, delivered, read, failed, cancelled
    status        text        NOT NULL DEFAULT 'pending',
    batch         integer,
    reason        text,
    refunded      bigint      NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL,
    last_position bigint      NOT NULL,
    PRIMARY KEY (tenant_id, campaign_id, recipient)
);
CREATE INDEX campaign_recipients_by_position ON campaign_recipients (tenant_id, campaign_id, position);

GRANT SELECT, INSERT, UPDATE, DELETE ON campaigns TO chronicle_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON campaign_recipients TO chronicle_app;

ALTER TABLE campaigns ENABLE ROW LEVEL SECURITY;
ALTER TABLE campaign_recipients ENABLE ROW LEVEL SECURITY;

CREATE POLICY campaigns_tenant ON campaigns
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));

CREATE POLICY campaign_recipients_tenant ON campaign_recipients
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));
