-- The installation read models (issue 4), written only by the `installations` projector from
-- `InstallationRecord` events:
--
-- * `installations`: one row per installation system record: type, status, technicians,
--   schedule, checklist progress, photos and components. The site address is opened from the
--   log's envelope with the customer's data key (empty after the customer is erased). A
--   technician's calendar and the dashboard counts per type and status are queries over it.
-- * `installation_timeline`: one row per event of an installation, in stream order, with a
--   human summary that names no personal data (reasons and addresses stay sealed in the log).
CREATE TABLE installations
(
    tenant_id          text        NOT NULL,
    installation_id    text        NOT NULL,
    order_id           text        NOT NULL,
    customer_id        text        NOT NULL,
    -- solar, starlink, hybrid, custom_furniture (InstallationType).
    installation_type  text        NOT NULL,
    -- pending, in_progress, commissioned, active, decommissioned (InstallationStatus).
    status             text        NOT NULL,
    system_size_w      bigint      NOT NULL,
    site_address       text,
    technicians        text[]      NOT NULL DEFAULT '{}',
    scheduled_at       timestamptz,
    -- Checklist items completed, in the order completed.
    checklist_done     text[]      NOT NULL DEFAULT '{}',
    checklist_required integer     NOT NULL,
    -- [{kind, sha256, at}] in the order attached.
    photos             jsonb       NOT NULL DEFAULT '[]',
    -- [{serial, kind, warranty_months, at}] in the order installed.
    components         jsonb       NOT NULL DEFAULT '[]',
    opened_at          timestamptz NOT NULL,
    started_at         timestamptz,
    commissioned_at    timestamptz,
    activated_at       timestamptz,
    decommissioned_at  timestamptz,
    updated_at         timestamptz NOT NULL,
    last_position      bigint      NOT NULL,
    PRIMARY KEY (tenant_id, installation_id)
);
CREATE INDEX installations_by_opened ON installations (tenant_id, opened_at DESC, installation_id);
CREATE INDEX installations_by_schedule ON installations (tenant_id, scheduled_at);
CREATE INDEX installations_by_technician ON installations USING gin (technicians);

CREATE TABLE installation_timeline
(
    tenant_id       text        NOT NULL,
    installation_id text        NOT NULL,
    -- The event's sequence in the installation's stream.
    sequence        bigint      NOT NULL,
    global_position bigint      NOT NULL,
    event_type      text        NOT NULL,
    -- When it happened (the command's time).
    at              timestamptz NOT NULL,
    -- Who: the metadata's actor (`user:<id>:<role>`, `system:<component>`).
    actor           text        NOT NULL,
    summary         text        NOT NULL,
    PRIMARY KEY (tenant_id, installation_id, sequence)
);

GRANT SELECT, INSERT, UPDATE, DELETE ON installations TO chronicle_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON installation_timeline TO chronicle_app;

ALTER TABLE installations ENABLE ROW LEVEL SECURITY;
ALTER TABLE installation_timeline ENABLE ROW LEVEL SECURITY;

CREATE POLICY installations_tenant ON installations
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));

CREATE POLICY installation_timeline_tenant ON installation_timeline
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));
