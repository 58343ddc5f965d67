-- Ticket numbers of service requests, per tenant (issue 4). The write side
-- (`chronicle_commands::service`) takes the next number with one atomic upsert
-- (`INSERT … ON CONFLICT DO UPDATE SET last_number = last_number + 1 RETURNING`), so numbers
-- are unique and sequential per tenant: 1, 2, 3, … (a crash between taking a number and
-- opening the request can leave a gap; never a duplicate). The ticket's stream is
-- `<tenant>:sr_<number>`, so a number is opened at most once.
CREATE TABLE service_ticket_numbers
(
    tenant_id   text   NOT NULL PRIMARY KEY,
    last_number bigint NOT NULL CHECK (last_number > 0)
);

-- Write-side state of every tenant, used by the application role; not a read model served to
-- callers, so no row-level security (like `lead_intake_keys`).
GRANT SELECT, INSERT, UPDATE ON service_ticket_numbers TO chronicle_app;
