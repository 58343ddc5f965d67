-- The outbox of WhatsApp messages to send (issue 3, "Outbound"): one row per
-- `OutboundMessageQueued`, written by the `outbox` projector and worked by the sender
-- (commands::outbound::whatsapp). It is a work queue, not a read model: no row-level security
-- (like webhook_inbox, it is read across tenants by one worker), and it is never deleted on a
-- projector rebuild, since its states record what was already handed to the provider.
--
-- States: pending (due at next_attempt_at) → sending (claimed: the provider may have received
-- it) → sent | failed; `needs_operator` marks a row found `sending` after a crash or a request
-- that timed out: it may or may not have reached WhatsApp, so it is never resent automatically.
CREATE TABLE outbox
(
    outbox_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id          text        NOT NULL,
    -- The conversation's stream id, `<tenant>:<contact id>`.
    stream_id          text        NOT NULL,
    contact_id         text        NOT NULL,
    idempotency_key    text        NOT NULL,
    -- The business phone-number id of the conversation's latest inbound message (preferred
    -- sender, if still mapped to the tenant).
    business_number_id text,
    -- The recipient's phone number and the body, sealed exactly as in the event.
    recipient          jsonb       NOT NULL,
    body               jsonb       NOT NULL,
    state              text        NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'needs_operator')),
    attempts           integer     NOT NULL DEFAULT 0,
    next_attempt_at    timestamptz NOT NULL DEFAULT now(),
    -- When the current attempt was claimed (state `sending`).
    claimed_at         timestamptz,
    -- The last error, without personal data (HTTP status, provider code and title).
    last_error         text,
    correlation_id     text        NOT NULL,
    -- The global position of the `OutboundMessageQueued` event.
    queued_position    bigint      NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, stream_id, idempotency_key)
);
-- The sender claims due pending rows oldest first.
CREATE INDEX outbox_due ON outbox (next_attempt_at, outbox_id) WHERE state = 'pending';

GRANT SELECT, INSERT, UPDATE ON outbox TO chronicle_app;
