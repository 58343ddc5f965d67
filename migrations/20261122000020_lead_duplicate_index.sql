-- The write side's index of leads (issue 3, "Leads and sales"): duplicate detection and capture
-- idempotency. These are write-side registry tables beside the log (decision 0001), not read
-- models: the lead commands (`chronicle_commands::leads`) read and lock them to decide which
-- stream a capture goes to, so they must never lag behind the log.

-- One row per identity of a prospect in a tenant: the keyed hash (`IdKey::contact_id`, never the
-- number or address itself) of its phone number and of its e-mail address, and the lead it last
-- belonged to. `open` is true while that lead is open; a capture whose identity maps to an open
-- lead is attached to it, otherwise a new lead is captured and the row repointed. A capture
-- locks its identity rows (creating them if new) for its whole decision, so two captures of one
-- prospect at once make one lead.
CREATE TABLE lead_identities
(
    tenant_id     text        NOT NULL,
    identity_hash text        NOT NULL,
    lead_id       text        NOT NULL,
    open          boolean     NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, identity_hash)
);
CREATE INDEX lead_identities_by_lead ON lead_identities (tenant_id, lead_id);

-- Every capture reference seen in a tenant (a form's submission id, a manual capture's
-- idempotency key) and the lead it went to: a repeated capture answers with the first outcome
-- and sends no command, even after that lead has closed.
CREATE TABLE lead_captures
(
    tenant_id   text        NOT NULL,
    capture_ref text        NOT NULL,
    lead_id     text        NOT NULL,
    -- 'captured' (a new lead) or 'attached' (a duplicate attached to an open lead).
    outcome     text        NOT NULL CHECK (outcome IN ('captured', 'attached')),
    captured_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, capture_ref)
);

-- The application role decides captures: it reads, creates and repoints these rows (UPDATE also
-- for the row locks of `INSERT … ON CONFLICT DO UPDATE`).
GRANT SELECT, INSERT, UPDATE ON lead_identities TO chronicle_app;
GRANT SELECT, INSERT, UPDATE ON lead_captures TO chronicle_app;
