-- Appends commit in groups again (issue 19).
--
-- 1. No NOTIFY inside an appending transaction. PostgreSQL takes the notification queue's lock
--    before commit and holds it until the commit record is flushed, so every appending
--    transaction committed alone and group commit was lost (with fsync on, appends ran at a
--    third of stock postgres-es). Writers now wake readers after commit: in their own process at
--    once, and other processes through Redis or a coalesced `pg_notify` sent outside any write
--    transaction (chronicle_commands::announce). Readers still poll as the safety net.
DROP TRIGGER events_notify ON events;
DROP FUNCTION chronicle_events_notify();

-- 2. Many commands' events in one statement, so concurrent commands of different callers
--    commit together (chronicle_commands::committer). Each command is one `request`: its events
--    are stored all or none. Rows whose (aggregate_type, aggregate_id, sequence) exists already
--    are skipped (a concurrent writer won: the command's optimistic-lock conflict); a command
--    of which some rows were stored and others skipped aborts the whole statement with SQLSTATE
--    CH001, listing those requests in DETAIL, and the caller sends the rest again without them.
--    The rows go in key order (aggregate_type, aggregate_id, sequence): the hash-chain trigger
--    sees a command's earlier events before its later ones, and concurrent batches take their
--    key locks in the same order, so they never wait on each other in a cycle. The caller
--    sends at most one request per stream, so a stored row belongs to exactly one request.
CREATE FUNCTION chronicle_append_batch(
    requests int[], aggregate_types text[], aggregate_ids text[], sequences bigint[],
    event_types text[], event_versions text[], payloads jsonb[], metadatas jsonb[])
    RETURNS TABLE (request int, sequence bigint, tx_id text, global_position bigint)
    LANGUAGE plpgsql AS
$$
#variable_conflict use_column
DECLARE
    stored_request int[];
    stored_sequence bigint[];
    stored_tx text[];
    stored_position bigint[];
    partial int[];
BEGIN
    WITH input AS (
        SELECT *
          FROM unnest(requests, aggregate_types, aggregate_ids, sequences, event_types,
                      event_versions, payloads, metadatas)
               AS t(request, aggregate_type, aggregate_id, sequence, event_type, event_version,
                    payload, metadata)
    ), stored AS (
        INSERT INTO events AS e (aggregate_type, aggregate_id, sequence, event_type, event_version,
                                 payload, metadata)
        SELECT i.aggregate_type, i.aggregate_id, i.sequence, i.event_type, i.event_version,
               i.payload::json, i.metadata::json
          FROM input i
         ORDER BY i.aggregate_type, i.aggregate_id, i.sequence
            ON CONFLICT DO NOTHING
     RETURNING e.aggregate_type, e.aggregate_id, e.sequence, e.tx_id, e.global_position
    )
    SELECT array_agg(i.request ORDER BY s.global_position),
           array_agg(s.sequence ORDER BY s.global_position),
           array_agg(s.tx_id::text ORDER BY s.global_position),
           array_agg(s.global_position ORDER BY s.global_position)
      INTO stored_request, stored_sequence, stored_tx, stored_position
      FROM stored s
      JOIN input i ON i.aggregate_type = s.aggregate_type AND i.aggregate_id = s.aggregate_id
                  AND i.sequence = s.sequence;

    SELECT array_agg(sent.request)
      INTO partial
      FROM (SELECT r AS request, count(*) AS n FROM unnest(requests) r GROUP BY r) sent
     WHERE (SELECT count(*) FROM unnest(stored_request) x WHERE x = sent.request) NOT IN (0, sent.n);
    IF partial IS NOT NULL THEN
        RAISE EXCEPTION 'some events of a command were stored and others conflicted'
            USING ERRCODE = 'CH001', DETAIL = array_to_string(partial, ',');
    END IF;

    RETURN QUERY
        SELECT * FROM unnest(stored_request, stored_sequence, stored_tx, stored_position);
END
$$;

GRANT EXECUTE ON FUNCTION chronicle_append_batch(int[], text[], text[], bigint[], text[], text[], jsonb[], jsonb[])
    TO chronicle_app;
