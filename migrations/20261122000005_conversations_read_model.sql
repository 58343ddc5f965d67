-- The `conversations` read model, written only by the `conversations` projector. Plaintext
-- lives here (read models are mutable and erasable), never in the log.
CREATE TABLE conversations
(
    tenant_id           text        NOT NULL,
    conversation_id     text        NOT NULL,
    contact_id          text        NOT NULL,
    contact_phone       text,
    contact_name        text,
    status              text        NOT NULL DEFAULT 'open',
    last_message_ref    text,
    last_message_kind   text,
    last_message_text   text,
    last_message_at     timestamptz,
    last_direction      text,
    unread_count        integer     NOT NULL DEFAULT 0,
    message_count       integer     NOT NULL DEFAULT 0,
    window_expires_at   timestamptz,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    -- The global position of the last event applied: updates are guarded by it, so applying
    -- an event twice changes nothing (projections are idempotent).
    last_position       bigint      NOT NULL,
    PRIMARY KEY (tenant_id, conversation_id)
);
-- The inbox lists a tenant's conversations newest first, optionally by status.
CREATE INDEX conversations_inbox ON conversations (tenant_id, last_message_at DESC, conversation_id);
CREATE INDEX conversations_by_status ON conversations (tenant_id, status, last_message_at DESC, conversation_id);

-- The latest delivery status of each outbound message seen on the webhook, keyed by the
-- message's keyed-hash reference (WhatsApp's own ids embed phone numbers).
CREATE TABLE message_statuses
(
    tenant_id       text        NOT NULL,
    conversation_id text        NOT NULL,
    message_ref     text        NOT NULL,
    status          text        NOT NULL,
    status_at       timestamptz NOT NULL,
    error_code      integer,
    last_position   bigint      NOT NULL,
    PRIMARY KEY (tenant_id, message_ref)
);
