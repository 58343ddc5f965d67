-- The `calls` read model, written only by the `calls` projector: one row per completed call
-- with its follow-up status. The numbers are opened from the log's envelopes (sealed under the
-- contact's data key) and cleared when the contact is erased.
CREATE TABLE calls
(
    tenant_id              text        NOT NULL,
    call_id                text        NOT NULL,
    provider               text        NOT NULL,
    provider_call_id       text        NOT NULL,
    direction              text        NOT NULL,
    contact_id             text,
    from_number            text,
    to_number              text,
    duration_s             integer     NOT NULL,
    outcome                text        NOT NULL,
    agent_user_id          text,
    ended_at               timestamptz NOT NULL,
    -- not_scheduled, pending, sent, gave_up (FollowUpStatus).
    follow_up_status       text        NOT NULL DEFAULT 'not_scheduled',
    follow_up_template     text,
    follow_up_language     text,
    follow_up_rule_version integer,
    follow_up_due_at       timestamptz,
    follow_up_attempts     integer     NOT NULL DEFAULT 0,
    follow_up_last_error   bigint,
    follow_up_next_at      timestamptz,
    follow_up_message_ref  text,
    last_position          bigint      NOT NULL,
    PRIMARY KEY (tenant_id, call_id)
);
CREATE INDEX calls_by_ended ON calls (tenant_id, ended_at DESC, call_id);

GRANT SELECT, INSERT, UPDATE, DELETE ON calls TO chronicle_app;

ALTER TABLE calls ENABLE ROW LEVEL SECURITY;

CREATE POLICY calls_tenant ON calls
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));
