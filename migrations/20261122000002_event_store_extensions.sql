-- Chronicle's extensions of the event store (DESIGN.md, "The event store").
--
-- Every column here is filled by the database (identity, defaults, trigger), never by the
-- writer, so postgres-es's seven-column INSERT stays the append path.

-- The event's unique number in the whole log.
ALTER TABLE events ADD COLUMN global_position bigint GENERATED ALWAYS AS IDENTITY;
ALTER TABLE events ADD CONSTRAINT events_global_position_unique UNIQUE (global_position);

-- The tenant, taken from the command's metadata (`tenant_id`). A stream never spans tenants:
-- the aggregate id must begin with `<tenant>:`.
ALTER TABLE events ADD COLUMN tenant_id text NOT NULL;
ALTER TABLE events ADD CONSTRAINT events_stream_belongs_to_tenant
    CHECK (tenant_id <> '' AND starts_with(aggregate_id, tenant_id || ':'));

-- When the event was recorded, and the writer's transaction id, which orders the gap-free read
-- of the whole log (DESIGN.md, "Reading the whole log without gaps").
ALTER TABLE events ADD COLUMN recorded_at timestamptz NOT NULL DEFAULT clock_timestamp();
ALTER TABLE events ADD COLUMN tx_id xid8 NOT NULL DEFAULT pg_current_xact_id();

-- The per-stream hash chain: sha-256 over the previous event's hash in the same stream and this
-- event's stream, sequence, type, version, payload and metadata (see chronicle_event_hash).
ALTER TABLE events ADD COLUMN hash bytea NOT NULL;

-- A field of the hash input: its length in bytes (8 bytes, big-endian), then its UTF-8 bytes,
-- so that no two different events hash the same bytes. `chronicle-replay verify` computes the
-- same function in Rust (projections::chain).
CREATE FUNCTION chronicle_hash_field(value text) RETURNS bytea
    LANGUAGE sql IMMUTABLE STRICT
    RETURN int8send(octet_length(value)::bigint) || convert_to(value, 'UTF8');

CREATE FUNCTION chronicle_event_hash(
    previous bytea, aggregate_type text, aggregate_id text, sequence bigint,
    event_type text, event_version text, payload text, metadata text) RETURNS bytea
    LANGUAGE sql IMMUTABLE
    RETURN sha256(
        coalesce(previous, '\x'::bytea)
        || chronicle_hash_field(aggregate_type)
        || chronicle_hash_field(aggregate_id)
        || int8send(sequence)
        || chronicle_hash_field(event_type)
        || chronicle_hash_field(event_version)
        || chronicle_hash_field(payload)
        || chronicle_hash_field(metadata));

-- Fills tenant_id, tx_id, recorded_at and hash on every insert. Row-level BEFORE triggers see the rows inserted
-- earlier by the same statement, so a multi-event append chains correctly.
CREATE FUNCTION chronicle_events_before_insert() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    previous bytea;
BEGIN
    -- Columns the database owns are set here whatever the INSERT said: the tenant always comes
    -- from the (hashed) metadata, and a forged transaction id or time could break the gap-free
    -- order or the audit trail.
    NEW.tenant_id := NEW.metadata ->> 'tenant_id';
    NEW.tx_id := pg_current_xact_id();
    NEW.recorded_at := clock_timestamp();
    IF NEW.tenant_id IS NULL OR NEW.tenant_id = '' THEN
        RAISE EXCEPTION 'event %/%#% has no tenant_id in its metadata',
            NEW.aggregate_type, NEW.aggregate_id, NEW.sequence
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.sequence > 1 THEN
        SELECT e.hash INTO previous
          FROM events e
         WHERE e.aggregate_type = NEW.aggregate_type
           AND e.aggregate_id = NEW.aggregate_id
           AND e.sequence = NEW.sequence - 1;
        IF previous IS NULL THEN
            RAISE EXCEPTION 'event %/%#% does not follow a stored event',
                NEW.aggregate_type, NEW.aggregate_id, NEW.sequence
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    NEW.hash := chronicle_event_hash(previous, NEW.aggregate_type, NEW.aggregate_id,
        NEW.sequence, NEW.event_type, NEW.event_version, NEW.payload::text, NEW.metadata::text);
    RETURN NEW;
END
$$;

CREATE TRIGGER events_before_insert
    BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION chronicle_events_before_insert();

-- The log is append-only: UPDATE, DELETE and TRUNCATE are refused.
CREATE FUNCTION chronicle_events_refuse_change() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    RAISE EXCEPTION 'the event log is append-only: % on events is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER events_refuse_update
    BEFORE UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION chronicle_events_refuse_change();
CREATE TRIGGER events_refuse_delete
    BEFORE DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION chronicle_events_refuse_change();
CREATE TRIGGER events_refuse_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION chronicle_events_refuse_change();

-- Wakes projectors and subscriptions: one notification per appending statement, carrying the
-- tenant. Delivered at commit, so listeners never see an uncommitted append.
CREATE FUNCTION chronicle_events_notify() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    tenant text;
BEGIN
    FOR tenant IN SELECT DISTINCT n.tenant_id FROM new_events n LOOP
        PERFORM pg_notify('chronicle_events', tenant);
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_notify
    AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION chronicle_events_notify();

-- Indexes: one stream in order is the primary key; the whole log from a cursor; one tenant's
-- log from a cursor.
CREATE INDEX events_log_order ON events (tx_id, global_position);
CREATE INDEX events_tenant_log_order ON events (tenant_id, tx_id, global_position);

-- The application's role may only read and append (DESIGN.md). Deployments connect as it;
-- the embedded cluster and the tests connect as the owner, and the triggers above hold there.
DO
$$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'chronicle_app') THEN
        CREATE ROLE chronicle_app NOLOGIN;
    END IF;
EXCEPTION
    -- Roles are cluster-wide: a migration running at the same moment in another database of
    -- the cluster (parallel tests) may have created it first.
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;
GRANT SELECT, INSERT ON events TO chronicle_app;
GRANT SELECT, INSERT, UPDATE ON snapshots TO chronicle_app;
