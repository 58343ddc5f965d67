-- Per-tenant keys of the lead intake endpoint (`POST /intake/leads/{source}`): web forms,
-- chatbots and calculators on a tenant's website post submissions with the header
-- `X-Intake-Key`. Only the SHA-256 of a key is stored (keys are 256-bit random values, so a
-- plain hash suffices); the key itself is printed once by `chronicle admin create-intake-key`.
CREATE TABLE lead_intake_keys
(
    key_hash     text PRIMARY KEY,
    tenant_id    text        NOT NULL REFERENCES tenants (tenant_id),
    -- The first characters of the key, so an operator can tell keys apart.
    key_prefix   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_used_at timestamptz
);
CREATE INDEX lead_intake_keys_tenant ON lead_intake_keys (tenant_id);

-- The server checks keys and records their last use; operators create and revoke them.
GRANT SELECT, INSERT, UPDATE ON lead_intake_keys TO chronicle_app;
