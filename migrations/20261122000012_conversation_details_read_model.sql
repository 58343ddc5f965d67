-- The conversation's working state for the conversation view (written only by the `messages`
-- projector): status, assignee, tags, window and handover, and its internal notes (opened
-- from the log's envelopes).

CREATE TABLE conversation_details
(
    tenant_id             text        NOT NULL,
    conversation_id       text        NOT NULL,
    contact_id            text        NOT NULL,
    status                text        NOT NULL DEFAULT 'open',
    assignee              text,
    tags                  text[]      NOT NULL DEFAULT '{}',
    window_expires_at     timestamptz,
    handover_requested_at timestamptz,
    handover_reason       text,
    last_position         bigint      NOT NULL,
    PRIMARY KEY (tenant_id, conversation_id)
);

CREATE TABLE conversation_notes
(
    tenant_id       text        NOT NULL,
    conversation_id text        NOT NULL,
    note_id         text        NOT NULL,
    text            text,
    author          text        NOT NULL,
    at              timestamptz NOT NULL,
    position        bigint      NOT NULL,
    PRIMARY KEY (tenant_id, conversation_id, note_id)
);

GRANT SELECT, INSERT, UPDATE, DELETE ON conversation_details TO chronicle_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON conversation_notes TO chronicle_app;

-- Row-level security as in 20261122000007.
ALTER TABLE conversation_details ENABLE ROW LEVEL SECURITY;
ALTER TABLE conversation_notes ENABLE ROW LEVEL SECURITY;

CREATE POLICY conversation_details_tenant ON conversation_details
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));

CREATE POLICY conversation_notes_tenant ON conversation_notes
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));
