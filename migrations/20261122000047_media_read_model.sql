-- The `media` read model (issue 3): one row per inbound media object with its fetch status,
-- for GraphQL's `media(messageId)`. Written only by the `media` projector from the `Media`
-- events; no personal data (refs are keyed hashes). Row-level security like 20261122000007.
CREATE TABLE media_files
(
    tenant_id       text        NOT NULL,
    media_ref       text        NOT NULL,
    message_ref     text        NOT NULL,
    conversation_id text        NOT NULL,
    contact_id      text        NOT NULL,
    kind            text        NOT NULL,
    -- requested | stored | failed | gave_up
    status          text        NOT NULL,
    expected_sha256 text,
    sha256          text,
    size            bigint,
    mime_type       text,
    -- Failed attempts so far, and the last failure's code.
    failed_attempts integer     NOT NULL DEFAULT 0,
    last_failure    text,
    next_attempt_at timestamptz,
    requested_at    timestamptz NOT NULL,
    stored_at       timestamptz,
    updated_at      timestamptz NOT NULL,
    last_position   bigint      NOT NULL,
    PRIMARY KEY (tenant_id, media_ref)
);
CREATE INDEX media_files_by_message ON media_files (tenant_id, message_ref);

ALTER TABLE media_files ENABLE ROW LEVEL SECURITY;

CREATE POLICY media_files_tenant ON media_files
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));

GRANT SELECT, INSERT, UPDATE, DELETE ON media_files TO chronicle_app;
