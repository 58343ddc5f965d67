-- API keys' credentials (issue 13), beside the log like `contact_keys` (decision 0015).
--
-- The `ApiKey` aggregate's events record who issued which key with which role, scopes and
-- expiry, and who revoked it. The secret is shown once to the issuer and never stored: this
-- table keeps its SHA-256 (the secret is 256 random bits, so a fast hash is enough), and what
-- a request needs to be answered without reading the log: the role, the scopes, the expiry
-- and the revocation. Written only by `chronicle_commands::api_keys`: the revocation is
-- written here before its event, so a key is refused from the moment a revocation is
-- acknowledged (or even attempted), whatever the projectors' lag.
--
-- A key is looked up by its id before its tenant is known, so queries filter by tenant
-- themselves (no row-level security, like `tenants`).
CREATE TABLE api_key_credentials
(
    key_id        text        PRIMARY KEY CHECK (key_id ~ '^key_[a-z2-7]{16}$'),
    tenant_id     text        NOT NULL,
    secret_sha256 bytea       NOT NULL CHECK (length(secret_sha256) = 32),
    name          text        NOT NULL,
    role          text        NOT NULL,
    scopes        text[]      NOT NULL,
    expires_at    timestamptz,
    issued_at     timestamptz NOT NULL,
    issued_by     text        NOT NULL,
    revoked_at    timestamptz,
    revoked_by    text,
    -- Written at most once a minute per key, so a busy key costs no write per request.
    last_used_at  timestamptz
);

CREATE INDEX api_key_credentials_by_tenant ON api_key_credentials (tenant_id, issued_at, key_id);

GRANT SELECT, INSERT, UPDATE ON api_key_credentials TO chronicle_app;
