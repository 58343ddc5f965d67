-- The `templates` read model, written only by the `templates` projector: one row per WhatsApp
-- template (name and language) with its latest version and approval status. Templates are the
-- tenant's text, not personal data.
CREATE TABLE templates
(
    tenant_id            text        NOT NULL,
    template_id          text        NOT NULL,
    name                 text        NOT NULL,
    language             text        NOT NULL,
    category             text        NOT NULL,
    body                 text        NOT NULL,
    -- The buttons as the event carries them (kind, text, value).
    buttons              jsonb       NOT NULL DEFAULT '[]',
    variable_count       integer     NOT NULL,
    version              integer     NOT NULL,
    status               text        NOT NULL,
    provider_template_id text,
    rejection_reason     text,
    submitted_at         timestamptz NOT NULL,
    decided_at           timestamptz,
    last_position        bigint      NOT NULL,
    PRIMARY KEY (tenant_id, template_id)
);
CREATE INDEX templates_by_status ON templates (tenant_id, status, name, language);

GRANT SELECT, INSERT, UPDATE, DELETE ON templates TO chronicle_app;

ALTER TABLE templates ENABLE ROW LEVEL SECURITY;

CREATE POLICY templates_tenant ON templates
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));
