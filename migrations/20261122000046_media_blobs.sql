-- Inbound media bytes (issue 3, "Inbound"). Media is personal data: the bytes are stored
-- sealed under the contact's data key (DataKey::seal_bytes: nonce, ciphertext and tag, bound
-- to tenant and contact), never in the log. Destroying the contact's key on erasure turns them
-- into noise. Written by the media fetcher, read by the API's `GET /media/{media_ref}`; both
-- act as the application role under row-level security, scoped to one tenant per transaction.
CREATE TABLE media_blobs
(
    tenant_id  text        NOT NULL,
    media_ref  text        NOT NULL,
    contact_id text        NOT NULL,
    ciphertext bytea       NOT NULL,
    -- Lowercase hex sha-256 of the plaintext bytes, as recorded by `MediaStored`.
    sha256     text        NOT NULL,
    size       bigint      NOT NULL,
    mime_type  text        NOT NULL,
    stored_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, media_ref)
);

ALTER TABLE media_blobs ENABLE ROW LEVEL SECURITY;

CREATE POLICY media_blobs_tenant ON media_blobs
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));

GRANT SELECT, INSERT, UPDATE, DELETE ON media_blobs TO chronicle_app;
