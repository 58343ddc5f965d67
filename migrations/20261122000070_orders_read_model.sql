-- The `orders` read model (issue 4), written only by the `orders` projector from `Order`
-- events: one row per order with its status, items, totals and payments, in integer minor
-- units of the order's currency. No personal data: the customer is a keyed contact id and a
-- cancellation reason (sealed in the log) is not copied here.
CREATE TABLE orders
(
    tenant_id         text        NOT NULL,
    order_id          text        NOT NULL,
    customer_id       text        NOT NULL,
    -- placed, paid, fulfilled, cancelled (OrderStatus).
    status            text        NOT NULL,
    currency          text        NOT NULL,
    total_minor       bigint      NOT NULL,
    paid_minor        bigint      NOT NULL DEFAULT 0,
    outstanding_minor bigint      NOT NULL,
    -- The line items as placed: [{sku, description, quantity, unit_price_minor, currency, installable}].
    items             jsonb       NOT NULL,
    -- Whether any item is installed on site (a paid order of such items opens an installation).
    installable       boolean     NOT NULL,
    -- [{provider, reference, amount_minor, at}] in the order recorded.
    payments          jsonb       NOT NULL DEFAULT '[]',
    placed_at         timestamptz NOT NULL,
    paid_at           timestamptz,
    fulfilled_at      timestamptz,
    cancelled_at      timestamptz,
    last_position     bigint      NOT NULL,
    PRIMARY KEY (tenant_id, order_id)
);
CREATE INDEX orders_by_placed ON orders (tenant_id, placed_at DESC, order_id);

GRANT SELECT, INSERT, UPDATE, DELETE ON orders TO chronicle_app;

ALTER TABLE orders ENABLE ROW LEVEL SECURITY;

CREATE POLICY orders_tenant ON orders
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));
