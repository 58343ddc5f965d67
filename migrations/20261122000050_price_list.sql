-- The tenants' price lists (metering): what one unit of a billable feature costs, in
-- milli-tokens, debited from the tenant's main wallet before the action runs
-- (`chronicle_commands::metering`).
--
-- A tenant with no row for a feature is UNMETERED for it: the action runs and nothing is
-- debited. So is a row with a unit price of 0. Features: `message` (an outbound free-form or
-- template message sent by a user), `broadcast_recipient` (one recipient of a campaign),
-- `report`.
--
-- Managed by owners, admins and finance (GraphQL `setPrice`, `chronicle admin set-price`);
-- configuration of the write side, not a read model: queries filter by tenant themselves.
CREATE TABLE price_list
(
    tenant_id   text        NOT NULL,
    feature     text        NOT NULL CHECK (feature ~ '^[a-z][a-z0-9_]{0,63}$'),
    -- Milli-tokens per unit (1 token = 1000).
    unit_price  bigint      NOT NULL CHECK (unit_price >= 0),
    updated_by  text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, feature)
);

GRANT SELECT, INSERT, UPDATE, DELETE ON price_list TO chronicle_app;
