-- Per-tenant payment provider credentials (Paynow, M-Pesa, Stripe-style), beside the log like
-- `tenants` (decision 0001): the callback routes must find a tenant's keys before any command
-- runs, and keys are configuration that changes and must be replaceable, not facts.
--
-- Written only by `chronicle_commands::payments::credentials` (the admin GraphQL mutation
-- `setPaymentProvider`). Secrets are never stored in the clear:
--   * `sealed_secrets` is the JSON of the provider's secrets (Paynow integration key, Daraja
--     consumer secret and passkey, the Stripe endpoint secret) sealed with AES-256-GCM under a
--     fresh data key bound to (tenant, `payment-provider:<provider>`);
--   * `wrapped_key` is that data key wrapped by the master key (as `contact_keys`);
--   * `callback_secret_sha256` is SHA-256 of the M-Pesa callback path secret (the callback has
--     no signature; the secret path is its only proof), compared in constant time;
--   * `settings` holds what is not secret (Paynow integration id and currency, the M-Pesa
--     short code).
CREATE TABLE payment_providers
(
    tenant_id              text        NOT NULL,
    -- paynow, mpesa, stripe
    provider               text        NOT NULL,
    settings               jsonb       NOT NULL DEFAULT '{}'::jsonb,
    wrapped_key            bytea       NOT NULL,
    sealed_secrets         jsonb       NOT NULL,
    callback_secret_sha256 bytea,
    updated_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, provider),
    CHECK (provider IN ('paynow', 'mpesa', 'stripe'))
);

-- Configuration read by every tenant's callback (routing happens before a tenant is trusted),
-- so no row-level security; the application role reads and replaces rows, never more.
GRANT SELECT, INSERT, UPDATE ON payment_providers TO chronicle_app;
