-- The `messages` read model (written only by the `messages` projector): every message of a
-- conversation, inbound and outbound, with plaintext content opened from the log's envelopes,
-- and the provider's status timeline of each outbound message. Plaintext lives here (mutable,
-- erasable), never in the log.

CREATE TABLE messages
(
    tenant_id           text        NOT NULL,
    conversation_id     text        NOT NULL,
    -- `in:<message ref>` for inbound, `out:<idempotency key>` for outbound.
    message_id          text        NOT NULL,
    direction           text        NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    -- The keyed hash of the provider's message id (inbound: at once; outbound: once sent).
    message_ref         text,
    idempotency_key     text,
    -- inbound: text, image, …; outbound: free_form or template.
    kind                text        NOT NULL,
    -- The opened content: the message JSON (inbound), the text (free-form) or the template
    -- parameters as a JSON array (template). Empty once the contact's key was erased.
    content             text,
    template_name       text,
    template_language   text,
    -- The provider's time of an inbound message; the queueing time of an outbound one. The
    -- conversation's order is (at, position).
    at                  timestamptz NOT NULL,
    -- outbound: queued, sent or failed (the sender's outcome); inbound: received.
    state               text        NOT NULL,
    sent_at             timestamptz,
    requested_by        text,
    error_code          bigint,
    error_title         text,
    retryable           boolean,
    -- The global position of the event that created the row.
    position            bigint      NOT NULL,
    last_position       bigint      NOT NULL,
    PRIMARY KEY (tenant_id, conversation_id, message_id)
);
CREATE INDEX messages_in_order ON messages (tenant_id, conversation_id, at, position);
-- Not unique: a provider answering one id twice must not stop the projector.
CREATE INDEX messages_by_ref ON messages (tenant_id, message_ref) WHERE message_ref IS NOT NULL;

-- One row per delivery status a message reached, with the provider's timestamp. Keyed by the
-- message's reference: a status may arrive before the sender recorded the message as sent.
CREATE TABLE message_timeline
(
    tenant_id       text        NOT NULL,
    conversation_id text        NOT NULL,
    message_ref     text        NOT NULL,
    status          text        NOT NULL,
    at              timestamptz NOT NULL,
    error_code      bigint,
    error_title     text,
    window_closed   boolean     NOT NULL DEFAULT false,
    position        bigint      NOT NULL,
    PRIMARY KEY (tenant_id, message_ref, status)
);

GRANT SELECT, INSERT, UPDATE, DELETE ON messages TO chronicle_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON message_timeline TO chronicle_app;

-- Row-level security as in 20261122000007.
ALTER TABLE messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE message_timeline ENABLE ROW LEVEL SECURITY;

CREATE POLICY messages_tenant ON messages
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));

CREATE POLICY message_timeline_tenant ON message_timeline
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));
