-- The `customers` read model (issue 17: "a won lead becomes a customer with a read model
-- (orders, installations, service history, lifetime value)"), written only by the `customers`
-- projector from `LeadWon` and `OrderPlaced`: who became a customer, when and how. No personal
-- data: the customer is the contact's keyed id (the name is read from `contacts`, which an
-- erasure clears). Orders, installations, service requests and the lifetime value are read from
-- their own read models by `customer_id` (indexes below).
CREATE TABLE customers
(
    tenant_id      text        NOT NULL,
    customer_id    text        NOT NULL,
    -- The first of: the lead won for them, their first order.
    since          timestamptz NOT NULL,
    -- The first lead won for them (`lead_…`) and when; null for a customer who bought without one.
    won_lead_id    text,
    won_at         timestamptz,
    first_order_at timestamptz,
    last_position  bigint      NOT NULL,
    PRIMARY KEY (tenant_id, customer_id)
);
CREATE INDEX customers_by_since ON customers (tenant_id, since DESC, customer_id);

CREATE INDEX orders_by_customer ON orders (tenant_id, customer_id, placed_at DESC);
CREATE INDEX installations_by_customer ON installations (tenant_id, customer_id, opened_at DESC);
CREATE INDEX service_requests_by_customer ON service_requests (tenant_id, customer_id, ticket_number DESC);

GRANT SELECT, INSERT, UPDATE, DELETE ON customers TO chronicle_app;

ALTER TABLE customers ENABLE ROW LEVEL SECURITY;

CREATE POLICY customers_tenant ON customers
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));
