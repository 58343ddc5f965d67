-- A payment request sent to the customer on WhatsApp (issue 16): the template it went out
-- with, when, and its reminder before expiry (`PaymentRequestMessaged`,
-- `PaymentRequestReminded`). The sweeper finds reminders due by `remind_at`.
ALTER TABLE payment_requests
    ADD COLUMN message_template text,
    ADD COLUMN messaged_at      timestamptz,
    ADD COLUMN remind_at        timestamptz,
    ADD COLUMN reminded_at      timestamptz;

CREATE INDEX payment_requests_reminders_due ON payment_requests (remind_at)
    WHERE status = 'sent' AND remind_at IS NOT NULL AND reminded_at IS NULL;
