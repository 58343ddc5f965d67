-- A payment request sent to the customer on WhatsApp (issue 16): the template it went out
-- with, when, and its reminder before expiry (`PaymentRequestMessaged`,
-- `PaymentRequestReminded`). The sweeper finds reminders due by `remind_at`.
ALTER TABLE payment_requests
    ADD COLUMN message_template text,
    ADD COLUMN messaged_at      timestamptz,
    ADD COLUMN remind_at        timestamptz,
    ADD COLUMN reminded_at      timestamptz;

-- The sweeper's Paynow polls find open (and just closed) requests by provider and status.
CREATE INDEX payment_requests_by_provider_status ON payment_requests (provider, status);

CREATE INDEX payment_requests_reminders_due ON payment_requests (remind_at)
    WHERE status = 'sent' AND remind_at IS NOT NULL AND reminded_at IS NULL;

-- A refused initiation (`PaymentRequestInitiationFailed`) fails the request for good, as the
-- aggregate holds; the projector kept such rows `requested`, which the expiry sweeper then
-- picked up on every pass. Rows written before this fix are mended here.
UPDATE payment_requests
   SET status = 'failed', closed_at = COALESCE(closed_at, requested_at)
 WHERE status = 'requested' AND failure IS NOT NULL;

-- One initiation at a time per payment request: a claim committed before the provider is
-- called (no connection held across the call), ended after it, or by itself after `until`.
CREATE TABLE payment_request_initiations
(
    tenant_id  text        NOT NULL,
    request_id text        NOT NULL,
    until      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, request_id)
);

GRANT SELECT, INSERT, UPDATE, DELETE ON payment_request_initiations TO chronicle_app;
