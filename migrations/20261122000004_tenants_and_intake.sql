-- Tenants, the WhatsApp phone numbers mapped to them, and the webhook inbox.
--
-- These are registry and intake tables, not the log: a tenant's row and its number mappings are
-- configuration written by operators (the `chronicle admin` command); the inbox holds deliveries
-- between receipt and processing.

CREATE TABLE tenants
(
    tenant_id  text PRIMARY KEY CHECK (tenant_id ~ '^[a-z0-9][a-z0-9_-]{1,62}$'),
    name       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The receiving WhatsApp Business phone-number id of a delivery decides its tenant.
CREATE TABLE whatsapp_numbers
(
    phone_number_id text PRIMARY KEY,
    tenant_id       text        NOT NULL REFERENCES tenants (tenant_id),
    mapped_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX whatsapp_numbers_tenant ON whatsapp_numbers (tenant_id);

-- One row per item of a provider delivery (a message or a status), keyed by the provider's
-- dedupe key, so a repeated delivery stores nothing new. `payload` holds the item as received
-- (it may contain personal data in the clear) and is cleared once the item's events are
-- appended. `state`: pending (to process), unmapped (no tenant for its phone-number id yet:
-- kept for operators and processed once mapped), done, failed (kept with its error, retried).
CREATE TABLE webhook_inbox
(
    inbox_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider        text        NOT NULL,
    dedupe_key      text        NOT NULL,
    phone_number_id text,
    kind            text        NOT NULL,
    -- The correlation id of the request that delivered it, carried into its events' metadata.
    correlation_id  text        NOT NULL,
    payload         jsonb,
    state           text        NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'unmapped', 'done', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    -- A worker that claims a row holds it until then; a crashed worker's claim expires.
    claimed_until   timestamptz,
    last_error      text,
    received_at     timestamptz NOT NULL DEFAULT now(),
    processed_at    timestamptz,
    UNIQUE (provider, dedupe_key)
);
CREATE INDEX webhook_inbox_open ON webhook_inbox (state, inbox_id) WHERE state <> 'done';

-- Per-contact data keys (DESIGN.md, "Personal data in an immutable log"): AES-256-GCM keys,
-- stored wrapped by the master key. Erasure deletes the row; the log keeps only ciphertext.
CREATE TABLE contact_keys
(
    tenant_id   text        NOT NULL,
    contact_id  text        NOT NULL,
    wrapped_key bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, contact_id)
);
