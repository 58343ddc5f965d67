-- The application's role, `chronicle_app` (created NOLOGIN in the event store migration), gets
-- exactly what the server needs and no more. The server runs migrations as the owner, then
-- serves with `SET ROLE chronicle_app`, so the event log is append-only by privilege as well as
-- by trigger: the role can neither UPDATE nor DELETE events nor disable their triggers.
--
-- Every later migration that creates a table grants on it here-style, explicitly.

GRANT SELECT, INSERT, UPDATE ON tenants TO chronicle_app;
-- UPDATE only for the row lock (SELECT … FOR UPDATE) that serializes mappings of one number.
GRANT SELECT, INSERT, UPDATE ON whatsapp_numbers TO chronicle_app;
GRANT SELECT, INSERT, UPDATE ON webhook_inbox TO chronicle_app;
GRANT SELECT, INSERT, DELETE ON contact_keys TO chronicle_app;
GRANT SELECT, INSERT, UPDATE ON projector_checkpoints TO chronicle_app;
-- Read models: the projectors rebuild them (DELETE) and keep them (INSERT, UPDATE).
GRANT SELECT, INSERT, UPDATE, DELETE ON conversations TO chronicle_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON message_statuses TO chronicle_app;

-- `chronicle_log_oldest_open_write_seconds` reads pg_stat_activity, which shows other roles'
-- transactions only to members of pg_read_all_stats. Where the migrating role may not grant it
-- (managed databases), the metric counts the application's own sessions only.
DO
$$
BEGIN
    GRANT pg_read_all_stats TO chronicle_app;
EXCEPTION
    WHEN insufficient_privilege OR invalid_grant_operation THEN
        RAISE NOTICE 'chronicle_app was not granted pg_read_all_stats: %', SQLERRM;
    -- Role membership is cluster-wide: migrations of several databases at once (parallel
    -- tests on a fresh cluster) may race to grant it; the loser finds it granted. The grant
    -- only widens one metric, so no failure of it may stop a migration.
    WHEN unique_violation THEN
        NULL;
    WHEN OTHERS THEN
        RAISE NOTICE 'chronicle_app was not granted pg_read_all_stats: %', SQLERRM;
END
$$;
