-- Issue 17: marking a conversation read (`ConversationRead`) sends WhatsApp a read receipt for
-- its latest inbound message. As for outbound messages (decision 0013): the `outbox` projector
-- writes a feed row per receipt, and the WhatsApp sender copies the feed into its own table and
-- works it (a receipt is a POST to the Graph API's `/{business number}/messages`).

-- `ConversationRead` → `read_receipts`.
CREATE TABLE read_receipt_feed
(
    tenant_id          text        NOT NULL,
    -- The conversation's stream id, `<tenant>:<contact id>`.
    stream_id          text        NOT NULL,
    contact_id         text        NOT NULL,
    -- The inbound message read up to (a keyed hash, not WhatsApp's id).
    message_ref        text        NOT NULL,
    business_number_id text        NOT NULL,
    -- WhatsApp's id of the message, sealed exactly as in the event (it embeds the phone number).
    message_id         jsonb       NOT NULL,
    correlation_id     text        NOT NULL,
    position           bigint      NOT NULL,
    PRIMARY KEY (tenant_id, stream_id, message_ref)
);
CREATE INDEX read_receipt_feed_position ON read_receipt_feed (position);

-- The sender's own work list of receipts (attempts, outcome); never cleared by a rebuild.
CREATE TABLE read_receipts
(
    receipt_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id          text        NOT NULL,
    stream_id          text        NOT NULL,
    contact_id         text        NOT NULL,
    message_ref        text        NOT NULL,
    business_number_id text        NOT NULL,
    message_id         jsonb       NOT NULL,
    correlation_id     text        NOT NULL,
    state              text        NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'sending', 'sent', 'failed')),
    attempts           integer     NOT NULL DEFAULT 0,
    next_attempt_at    timestamptz NOT NULL DEFAULT now(),
    claimed_at         timestamptz,
    -- The last error, without personal data (HTTP status, provider code and title).
    last_error         text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, stream_id, message_ref)
);
CREATE INDEX read_receipts_due ON read_receipts (next_attempt_at, receipt_id) WHERE state = 'pending';

GRANT SELECT, INSERT, UPDATE, DELETE ON read_receipt_feed TO chronicle_app;
GRANT SELECT, INSERT, UPDATE ON read_receipts TO chronicle_app;

-- A read receipt names the latest inbound message's WhatsApp id, which the `Conversation`
-- aggregate keeps from now on. A snapshot taken before holds none, so the first conversation
-- marked read after the upgrade would send no receipt: the conversations' snapshots go, and
-- each conversation folds its events once more (and snapshots again) on its next command.
DELETE FROM snapshots WHERE aggregate_type = 'Conversation';
