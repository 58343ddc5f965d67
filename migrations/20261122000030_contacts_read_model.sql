-- The `contacts` read model, written only by the `contacts` projector: one row per contact with
-- its profile in plaintext (opened from the log's envelopes with the contact's data key), tags,
-- custom fields, consent and the time of its last inbound message. Read models are mutable and
-- erasable: erasure clears every personal column here, and the log keeps only ciphertext whose
-- key is destroyed.
CREATE TABLE contacts
(
    tenant_id           text        NOT NULL,
    contact_id          text        NOT NULL,
    handle_kind         text        NOT NULL,
    phone               text,
    provider_user_id    text,
    name                text,
    email               text,
    source              text        NOT NULL,
    tags                text[]      NOT NULL DEFAULT '{}',
    -- Custom field values, opened: {"key": "value"}.
    custom_fields       jsonb       NOT NULL DEFAULT '{}',
    consent_status      text        NOT NULL DEFAULT 'unknown',
    consent_source      text,
    consent_at          timestamptz,
    last_contact_at     timestamptz,
    erased_at           timestamptz,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    -- The global position of the last contact event applied: updates are guarded by it, so
    -- applying an event twice changes nothing.
    last_position       bigint      NOT NULL,
    PRIMARY KEY (tenant_id, contact_id)
);
-- Lists newest first; tags are searched with `tags @> ARRAY[...]`.
CREATE INDEX contacts_by_created ON contacts (tenant_id, created_at DESC, contact_id);
CREATE INDEX contacts_tags ON contacts USING gin (tags);

GRANT SELECT, INSERT, UPDATE, DELETE ON contacts TO chronicle_app;

ALTER TABLE contacts ENABLE ROW LEVEL SECURITY;

CREATE POLICY contacts_tenant ON contacts
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));
