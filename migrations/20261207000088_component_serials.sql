-- Issue 17: one serial number could be installed on two installations, giving two active
-- warranties to two customers. The write side claims a serial for its installation here before
-- it records `ComponentInstalled`; a serial claimed by another installation of the tenant is
-- refused (`SERIAL_ON_ANOTHER_INSTALLATION`). This is the write side's own table, not a read
-- model: it is never rebuilt.
CREATE TABLE component_serials
(
    tenant_id       text        NOT NULL,
    serial          text        NOT NULL,
    installation_id text        NOT NULL,
    claimed_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, serial)
);

-- The serials installed before (trimmed of white space as the write side trims them): the
-- first installation that recorded one keeps it (a serial already on two installations stays
-- as the log says; the next install of it elsewhere is refused). A claim whose installation
-- never recorded the serial (its command was lost) is taken over after ten minutes.
INSERT INTO component_serials (tenant_id, serial, installation_id, claimed_at)
SELECT DISTINCT ON (e.tenant_id, regexp_replace(e.payload -> 'ComponentInstalled' ->> 'serial', '^\s+|\s+$', '', 'g'))
       e.tenant_id,
       regexp_replace(e.payload -> 'ComponentInstalled' ->> 'serial', '^\s+|\s+$', '', 'g'),
       substr(e.aggregate_id, length(e.tenant_id) + 2),
       e.recorded_at
  FROM events e
 WHERE e.aggregate_type = 'InstallationRecord'
   AND e.event_type = 'ComponentInstalled'
   AND coalesce(regexp_replace(e.payload -> 'ComponentInstalled' ->> 'serial', '^\s+|\s+$', '', 'g'), '') <> ''
 ORDER BY e.tenant_id, regexp_replace(e.payload -> 'ComponentInstalled' ->> 'serial', '^\s+|\s+$', '', 'g'), e.global_position
ON CONFLICT DO NOTHING;

GRANT SELECT, INSERT, UPDATE, DELETE ON component_serials TO chronicle_app;
