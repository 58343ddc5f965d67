-- The `leads` read model and the funnel's stage transitions, written only by the `leads`
-- projector (`chronicle_projections::leads`). Plaintext personal fields live here (read models
-- are mutable and erasable), never in the log.

-- One row per lead as dashboards see it.
CREATE TABLE leads
(
    tenant_id       text        NOT NULL,
    lead_id         text        NOT NULL,
    -- The contact whose data key sealed the first capture (a keyed hash, not personal data).
    contact_id      text,
    stage           text        NOT NULL,
    -- The source of the first capture: the lead's source in the funnel.
    source          text        NOT NULL,
    score           integer     NOT NULL DEFAULT 0,
    -- [{"factor": "high_intent_source", "points": 35}, …] as recorded by `LeadScored`.
    score_reasons   jsonb       NOT NULL DEFAULT '[]',
    assignee        text,
    name            text,
    phone           text,
    email           text,
    interest        text,
    priority        text        NOT NULL,
    property_type   text,
    system_size_w   integer,
    budget_min      bigint,
    budget_max      bigint,
    budget_currency text,
    captures        integer     NOT NULL DEFAULT 1,
    customer_id     text,
    won_order_ref   text,
    won_value_minor bigint,
    won_currency    text,
    lost_reason     text,
    lost_note       text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    -- The global position of the last event applied: updates are guarded by it, so applying
    -- an event twice changes nothing.
    last_position   bigint      NOT NULL,
    PRIMARY KEY (tenant_id, lead_id)
);
CREATE INDEX leads_by_created ON leads (tenant_id, created_at DESC, lead_id);
CREATE INDEX leads_by_updated ON leads (tenant_id, updated_at DESC, lead_id);
CREATE INDEX leads_by_score ON leads (tenant_id, score DESC, lead_id);
CREATE INDEX leads_by_stage ON leads (tenant_id, stage, source);
CREATE INDEX leads_by_assignee ON leads (tenant_id, assignee);

-- Every move of a lead into a stage: its capture (from_stage NULL, to 'new'), each advance, each
-- loss, each reopening and its win, with the lead's source and the move's business time, so the
-- funnel for any period and source is a query. Keyed by the event's global position: applying an
-- event twice inserts nothing.
CREATE TABLE lead_stage_transitions
(
    tenant_id     text        NOT NULL,
    position      bigint      NOT NULL,
    lead_id       text        NOT NULL,
    source        text        NOT NULL,
    from_stage    text,
    to_stage      text        NOT NULL,
    at            timestamptz NOT NULL,
    day           date        NOT NULL,
    PRIMARY KEY (tenant_id, position)
);
CREATE INDEX lead_stage_transitions_by_time ON lead_stage_transitions (tenant_id, at, source);

GRANT SELECT, INSERT, UPDATE, DELETE ON leads TO chronicle_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON lead_stage_transitions TO chronicle_app;

-- Row-level security as in 20261122000007: visible only when `chronicle.tenant_id` names the
-- row's tenant (queries) or is '*' (projectors).
ALTER TABLE leads ENABLE ROW LEVEL SECURITY;
ALTER TABLE lead_stage_transitions ENABLE ROW LEVEL SECURITY;

CREATE POLICY leads_tenant ON leads
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));

CREATE POLICY lead_stage_transitions_tenant ON lead_stage_transitions
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));
