-- The `payments` read model, written only by the `payments` projector: one row per payment a
-- provider confirmed (stream `<tenant>:pay_…`), with what it was matched to. Finance lists the
-- unmatched ones (`status = 'unmatched'`) and matches them by hand. No personal data: provider
-- references, merchant references (`order_…`, `wallet_…`) and amounts only.
CREATE TABLE payments
(
    tenant_id          text        NOT NULL,
    payment_id         text        NOT NULL,
    provider           text        NOT NULL,
    reference          text        NOT NULL,
    merchant_reference text        NOT NULL,
    amount_minor       bigint      NOT NULL,
    currency           text        NOT NULL,
    -- confirmed, matched, unmatched
    status             text        NOT NULL,
    -- order, wallet (when matched)
    matched_kind       text,
    matched_id         text,
    milli_tokens       bigint,
    unmatched_reason   text,
    matched_by         text,
    confirmed_at       timestamptz NOT NULL,
    decided_at         timestamptz,
    last_position      bigint      NOT NULL,
    PRIMARY KEY (tenant_id, payment_id)
);
CREATE INDEX payments_by_confirmed ON payments (tenant_id, confirmed_at DESC, payment_id);
CREATE INDEX payments_unmatched ON payments (tenant_id, confirmed_at DESC) WHERE status = 'unmatched';

GRANT SELECT, INSERT, UPDATE, DELETE ON payments TO chronicle_app;

ALTER TABLE payments ENABLE ROW LEVEL SECURITY;

CREATE POLICY payments_tenant ON payments
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));
