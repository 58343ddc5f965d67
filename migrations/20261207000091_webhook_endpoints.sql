-- Webhook endpoints (issue 13), beside the log like `api_key_credentials` (decision 0016).
--
-- The `WebhookEndpoint` aggregate's events record who created which endpoint for which URL and
-- event types, secret rotations, disabling and enabling. This table keeps what delivery needs:
-- the signing secret (sealed under a data key wrapped by the master key, like payment
-- providers' secrets), the previous secret during a rotation's grace period, and the
-- delivery state: the log cursor of the last event delivered (the endpoint's checkpoint: a
-- restart resumes there), consecutive failures and when to try again. Written only by
-- `chronicle_commands::webhooks`; queries filter by tenant themselves.
CREATE TABLE webhook_endpoints
(
    endpoint_id           text        PRIMARY KEY CHECK (endpoint_id ~ '^whk_[a-z2-7]{16}$'),
    tenant_id             text        NOT NULL,
    url                   text        NOT NULL,
    event_types           text[]      NOT NULL,
    description           text,
    wrapped_key           bytea       NOT NULL,
    sealed_secret         jsonb       NOT NULL,
    previous_sealed       jsonb,
    previous_valid_until  timestamptz,
    enabled               boolean     NOT NULL DEFAULT true,
    deleted               boolean     NOT NULL DEFAULT false,
    disabled_reason       text,
    -- The checkpoint: the (tx_id, global_position) of the last event delivered or skipped.
    cursor_tx             text        NOT NULL,
    cursor_position       bigint      NOT NULL,
    failures              integer     NOT NULL DEFAULT 0,
    next_attempt_at       timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    created_by            text        NOT NULL
);

CREATE INDEX webhook_endpoints_by_tenant ON webhook_endpoints (tenant_id, created_at, endpoint_id);
CREATE INDEX webhook_endpoints_due ON webhook_endpoints (next_attempt_at) WHERE enabled AND NOT deleted;

-- Every attempt to deliver to an endpoint: the delivery log owners read in GraphQL.
CREATE TABLE webhook_deliveries
(
    delivery_id     bigserial   PRIMARY KEY,
    endpoint_id     text        NOT NULL REFERENCES webhook_endpoints (endpoint_id),
    tenant_id       text        NOT NULL,
    -- The `webhook-id` header: the same on every attempt of one event.
    message_id      text        NOT NULL,
    event_type      text        NOT NULL,
    -- The event's log position; null for a test delivery.
    event_position  bigint,
    event_cursor    text,
    attempt         integer     NOT NULL,
    manual          boolean     NOT NULL DEFAULT false,
    status_code     integer,
    error           text,
    latency_ms      integer     NOT NULL,
    succeeded       boolean     NOT NULL,
    at              timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, delivery_id);

GRANT SELECT, INSERT, UPDATE ON webhook_endpoints TO chronicle_app;
GRANT SELECT, INSERT ON webhook_deliveries TO chronicle_app;
GRANT USAGE ON SEQUENCE webhook_deliveries_delivery_id_seq TO chronicle_app;
