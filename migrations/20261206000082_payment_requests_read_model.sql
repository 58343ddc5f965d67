-- The `payment_requests` read model (issue 16), written only by the `payment_requests` projector
-- from the `PaymentRequest` streams (`<tenant>:preq_…`): one row per request with where it
-- stands, for finance and dashboards. No personal data: the contact is its keyed-hash id, a free
-- amount's description is the business's own text.
CREATE TABLE payment_requests
(
    tenant_id           text        NOT NULL,
    request_id          text        NOT NULL,
    provider            text        NOT NULL,
    -- order, wallet, free
    target_kind         text        NOT NULL,
    -- The order or wallet id, or the free amount's description.
    target              text        NOT NULL,
    amount_minor        bigint      NOT NULL,
    currency            text        NOT NULL,
    contact_id          text,
    -- requested, sent, paid, failed, cancelled, expired
    status              text        NOT NULL,
    provider_request_id text,
    provider_reference  text,
    -- Why the initiation or the payment failed (the provider's reason or result code).
    failure             text,
    -- Callbacks that named the request but paid nothing (kept for finance).
    refused_callbacks   integer     NOT NULL DEFAULT 0,
    requested_by        text        NOT NULL,
    requested_at        timestamptz NOT NULL,
    expires_at          timestamptz NOT NULL,
    sent_at             timestamptz,
    closed_at           timestamptz,
    last_position       bigint      NOT NULL,
    PRIMARY KEY (tenant_id, request_id)
);
CREATE INDEX payment_requests_by_time ON payment_requests (tenant_id, requested_at DESC, request_id);

GRANT SELECT, INSERT, UPDATE, DELETE ON payment_requests TO chronicle_app;

ALTER TABLE payment_requests ENABLE ROW LEVEL SECURITY;

CREATE POLICY payment_requests_tenant ON payment_requests
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));
