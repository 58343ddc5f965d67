-- The `payouts` read model (issue 4), written only by the `payouts` projector from `Payout`
-- events: one row per technician payout with its tier, amounts (integer minor units) and
-- status. Totals by status are queries over it.
CREATE TABLE payouts
(
    tenant_id       text        NOT NULL,
    payout_id       text        NOT NULL,
    installation_id text        NOT NULL,
    technician_ids  text[]      NOT NULL,
    system_size_w   bigint      NOT NULL,
    -- small, medium, large, commercial (PayoutTier).
    tier            text        NOT NULL,
    base_minor      bigint      NOT NULL,
    bonus_minor     bigint      NOT NULL,
    amount_minor    bigint      NOT NULL,
    currency        text        NOT NULL,
    -- pending, approved, paid (PayoutStatus).
    status          text        NOT NULL,
    computed_at     timestamptz NOT NULL,
    approved_at     timestamptz,
    approved_by     text,
    paid_at         timestamptz,
    paid_reference  text,
    last_position   bigint      NOT NULL,
    PRIMARY KEY (tenant_id, payout_id)
);
CREATE INDEX payouts_by_status ON payouts (tenant_id, status, computed_at DESC);
CREATE INDEX payouts_by_installation ON payouts (tenant_id, installation_id);

GRANT SELECT, INSERT, UPDATE, DELETE ON payouts TO chronicle_app;

ALTER TABLE payouts ENABLE ROW LEVEL SECURITY;

CREATE POLICY payouts_tenant ON payouts
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));
