-- The `agent_performance` read model (written only by the `agent_performance` projector,
-- `chronicle_projections::agents`): per conversation episode, when the customer first wrote,
-- when and by whom they were first answered, when and by whom the episode was resolved; and
-- every assignment. Averages and medians per agent and per period are then SQL queries.
--
-- An episode begins with an inbound message while no episode is open (the conversation's first
-- message, or the first one after it was resolved) and ends when the conversation is resolved.
-- All times are the events' own business times (provider timestamps, command `at`), never the
-- time an event arrived or was projected.

-- The projector's working state per conversation: the current episode, whether it is open,
-- and the current assignee. `last_position` guards every write: an event applied twice
-- changes nothing.
CREATE TABLE agent_conversation_state
(
    tenant_id       text    NOT NULL,
    conversation_id text    NOT NULL,
    episode         integer NOT NULL DEFAULT 0,
    episode_open    boolean NOT NULL DEFAULT false,
    assignee        text,
    last_position   bigint  NOT NULL,
    PRIMARY KEY (tenant_id, conversation_id)
);

-- One row per conversation episode.
CREATE TABLE agent_conversation_episodes
(
    tenant_id         text        NOT NULL,
    conversation_id   text        NOT NULL,
    -- 1 for the conversation's first episode, 2 after its first reopening, …
    episode           integer     NOT NULL,
    -- The provider's timestamp of the episode's first inbound message (in log order).
    started_at        timestamptz NOT NULL,
    -- The `at` of the episode's first outbound message queued by a person (not `system:…` or
    -- `api_key:…`), and that person's user id (`requested_by`).
    first_response_at timestamptz,
    first_response_by text,
    -- The `at` of the move to `resolved` that ended the episode, who made it, and the agent it
    -- is attributed to: the assignee at that moment, else the one who resolved it.
    resolved_at       timestamptz,
    resolved_by       text,
    resolution_agent  text,
    last_position     bigint      NOT NULL,
    PRIMARY KEY (tenant_id, conversation_id, episode)
);
CREATE INDEX agent_episodes_by_response ON agent_conversation_episodes (tenant_id, first_response_at);
CREATE INDEX agent_episodes_by_resolution ON agent_conversation_episodes (tenant_id, resolved_at);

-- Every assignment of a conversation to an agent, keyed by its event's global position: applying
-- an event twice inserts nothing.
CREATE TABLE agent_assignments
(
    tenant_id       text        NOT NULL,
    position        bigint      NOT NULL,
    conversation_id text        NOT NULL,
    agent_id        text        NOT NULL,
    at              timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, position)
);
CREATE INDEX agent_assignments_by_time ON agent_assignments (tenant_id, at, agent_id);

GRANT SELECT, INSERT, UPDATE, DELETE ON agent_conversation_state TO chronicle_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON agent_conversation_episodes TO chronicle_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON agent_assignments TO chronicle_app;

-- Row-level security as in 20261122000007: visible only when `chronicle.tenant_id` names the
-- row's tenant (queries) or is '*' (projectors).
ALTER TABLE agent_conversation_state ENABLE ROW LEVEL SECURITY;
ALTER TABLE agent_conversation_episodes ENABLE ROW LEVEL SECURITY;
ALTER TABLE agent_assignments ENABLE ROW LEVEL SECURITY;

CREATE POLICY agent_conversation_state_tenant ON agent_conversation_state
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));

CREATE POLICY agent_conversation_episodes_tenant ON agent_conversation_episodes
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));

CREATE POLICY agent_assignments_tenant ON agent_assignments
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));
