-- Idempotency keys of `openServiceRequest` (issue 4): the caller's key → the ticket number it
-- opened, per tenant. A retried request with the same key gets the same ticket (its stream
-- `sr_<number>` records the opening once); two racing requests with one key both end on the
-- number stored first (the loser's number is left unused: a gap, never a duplicate).
CREATE TABLE service_request_keys
(
    tenant_id       text        NOT NULL,
    idempotency_key text        NOT NULL,
    ticket_number   bigint      NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, idempotency_key)
);

-- Write-side state used by the application role; not a read model, so no row-level security
-- (like `service_ticket_numbers`).
GRANT SELECT, INSERT ON service_request_keys TO chronicle_app;
