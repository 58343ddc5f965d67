-- The `service_requests` and `maintenance_contracts` read models (issue 4), written only by the
-- `service` projector from `ServiceRequest` and `MaintenanceContract` events. No personal data:
-- descriptions and resolutions stay sealed in the log.

-- One row per service ticket, with its SLA due time and breach flag (decided in the log).
CREATE TABLE service_requests
(
    tenant_id       text        NOT NULL,
    -- `sr_<ticket number>`.
    request_id      text        NOT NULL,
    ticket_number   bigint      NOT NULL,
    -- `SR-000042`.
    ticket          text        NOT NULL,
    kind            text        NOT NULL,
    -- urgent, high, normal, low (Priority).
    priority        text        NOT NULL,
    -- open, assigned, resolved, closed (ServiceStatus).
    status          text        NOT NULL,
    customer_id     text        NOT NULL,
    installation_id text,
    technician_id   text,
    opened_at       timestamptz NOT NULL,
    opened_by       text        NOT NULL,
    sla_due_at      timestamptz NOT NULL,
    breached        boolean     NOT NULL DEFAULT false,
    breached_at     timestamptz,
    assigned_at     timestamptz,
    resolved_at     timestamptz,
    closed_at       timestamptz,
    last_position   bigint      NOT NULL,
    PRIMARY KEY (tenant_id, request_id),
    UNIQUE (tenant_id, ticket_number)
);
CREATE INDEX service_requests_by_status ON service_requests (tenant_id, status, priority, ticket_number DESC);
CREATE INDEX service_requests_breached ON service_requests (tenant_id, ticket_number DESC) WHERE breached;

-- One row per maintenance contract.
CREATE TABLE maintenance_contracts
(
    tenant_id          text        NOT NULL,
    -- `mc_<id>`.
    contract_id        text        NOT NULL,
    customer_id        text        NOT NULL,
    installation_id    text,
    starts_at          timestamptz NOT NULL,
    -- The end of the current term (moved by each renewal, from the old end).
    ends_at            timestamptz NOT NULL,
    term_months        integer     NOT NULL,
    annual_value_minor bigint      NOT NULL,
    currency           text        NOT NULL,
    auto_renew         boolean     NOT NULL,
    -- active, cancelled (ContractStatus); lapsed is `ends_at` in the past.
    status             text        NOT NULL,
    renewals           integer     NOT NULL DEFAULT 0,
    last_renewal_reference text,
    renewed_at         timestamptz,
    cancelled_at       timestamptz,
    started_at         timestamptz NOT NULL,
    last_position      bigint      NOT NULL,
    PRIMARY KEY (tenant_id, contract_id)
);
CREATE INDEX maintenance_contracts_by_end ON maintenance_contracts (tenant_id, status, ends_at);

GRANT SELECT, INSERT, UPDATE, DELETE ON service_requests TO chronicle_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON maintenance_contracts TO chronicle_app;

ALTER TABLE service_requests ENABLE ROW LEVEL SECURITY;
ALTER TABLE maintenance_contracts ENABLE ROW LEVEL SECURITY;

CREATE POLICY service_requests_tenant ON service_requests
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));

CREATE POLICY maintenance_contracts_tenant ON maintenance_contracts
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));
