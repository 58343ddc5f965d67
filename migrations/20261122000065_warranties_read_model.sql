-- The `warranties` and `warranty_claims` read models (issue 4), written only by the
-- `warranties` projector from `Warranty` and `WarrantyClaim` events. No personal data: ids are
-- keyed hashes or caller-chosen, claim descriptions and resolutions stay sealed in the log.

-- One row per registered warranty (one installed component).
CREATE TABLE warranties
(
    tenant_id       text        NOT NULL,
    -- `warranty_<installation id>/<serial>`.
    warranty_id     text        NOT NULL,
    installation_id text        NOT NULL,
    serial          text        NOT NULL,
    kind            text        NOT NULL,
    customer_id     text        NOT NULL,
    warranty_months integer     NOT NULL,
    starts_at       timestamptz NOT NULL,
    -- Exclusive end of the period (derived by the domain: starts_at + months).
    ends_at         timestamptz NOT NULL,
    -- active, voided (WarrantyStatus).
    status          text        NOT NULL,
    registered_at   timestamptz NOT NULL,
    voided_at       timestamptz,
    -- Claims filed under this warranty.
    claims          integer     NOT NULL DEFAULT 0,
    last_position   bigint      NOT NULL,
    PRIMARY KEY (tenant_id, warranty_id)
);
CREATE INDEX warranties_by_installation ON warranties (tenant_id, installation_id);
CREATE INDEX warranties_by_customer ON warranties (tenant_id, customer_id);
CREATE INDEX warranties_by_end ON warranties (tenant_id, ends_at);

-- One row per warranty claim.
CREATE TABLE warranty_claims
(
    tenant_id        text        NOT NULL,
    claim_id         text        NOT NULL,
    warranty_id      text        NOT NULL,
    installation_id  text        NOT NULL,
    serial           text        NOT NULL,
    customer_id      text        NOT NULL,
    warranty_ends_at timestamptz NOT NULL,
    -- submitted, under_review, approved, rejected, resolved (ClaimStatus).
    status           text        NOT NULL,
    filed_at         timestamptz NOT NULL,
    filed_by         text        NOT NULL,
    review_started_at timestamptz,
    -- approved, rejected (ClaimDecision), once decided.
    decision         text,
    decided_at       timestamptz,
    decided_by       text,
    resolved_at      timestamptz,
    last_position    bigint      NOT NULL,
    PRIMARY KEY (tenant_id, claim_id)
);
CREATE INDEX warranty_claims_by_status ON warranty_claims (tenant_id, status, filed_at DESC);
CREATE INDEX warranty_claims_by_warranty ON warranty_claims (tenant_id, warranty_id);

GRANT SELECT, INSERT, UPDATE, DELETE ON warranties TO chronicle_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON warranty_claims TO chronicle_app;

ALTER TABLE warranties ENABLE ROW LEVEL SECURITY;
ALTER TABLE warranty_claims ENABLE ROW LEVEL SECURITY;

CREATE POLICY warranties_tenant ON warranties
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));

CREATE POLICY warranty_claims_tenant ON warranty_claims
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));
