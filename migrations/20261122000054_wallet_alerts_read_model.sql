-- The `wallet_alerts` read model: low-balance alerts and auto-refill requests as finance sees
-- them, written only by the `wallet_work` projector (`chronicle_projections::wallet_work`) from
-- `Wallet` events; one row per `LowBalanceAlerted` / `AutoRefillRequested` (the domain emits
-- each once per threshold crossing).
--
-- An auto-refill cannot charge anything by itself (no stored payment method exists): it shows
-- `pending` with the purchase reference the domain named (`refill:<trigger>`), and turns
-- `fulfilled` when a `TokensPurchased` with that reference lands on the same wallet (finance
-- completes it with the ordinary purchase mutation). Low-balance alerts show `raised`.
CREATE TABLE wallet_alerts
(
    tenant_id          text        NOT NULL,
    global_position    bigint      NOT NULL,
    wallet_id          text        NOT NULL,
    -- low_balance_alert, auto_refill
    kind               text        NOT NULL,
    -- The reference of the operation that crossed the threshold.
    trigger            text        NOT NULL,
    threshold          bigint      NOT NULL,
    -- Available after the crossing.
    available          bigint      NOT NULL,
    -- Auto-refills: the amount to buy and the purchase reference to buy it under.
    refill_amount      bigint,
    purchase_reference text,
    -- raised (alerts); pending, fulfilled (auto-refills)
    status             text        NOT NULL,
    fulfilled_amount   bigint,
    fulfilled_at       timestamptz,
    at                 timestamptz NOT NULL,
    last_position      bigint      NOT NULL,
    PRIMARY KEY (tenant_id, global_position)
);
CREATE INDEX wallet_alerts_by_purchase ON wallet_alerts (tenant_id, wallet_id, purchase_reference)
    WHERE purchase_reference IS NOT NULL;

GRANT SELECT, INSERT, UPDATE, DELETE ON wallet_alerts TO chronicle_app;

-- Row-level security as in 20261122000007.
ALTER TABLE wallet_alerts ENABLE ROW LEVEL SECURITY;

CREATE POLICY wallet_alerts_tenant ON wallet_alerts
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));
