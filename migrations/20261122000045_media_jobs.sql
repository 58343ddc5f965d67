-- The work queue of inbound media to fetch (issue 3, "Inbound": media fetched and stored as a
-- separate, retried step). One row per inbound media message, written by the `media` projector
-- from `MessageReceived` and worked by the media fetcher (commands::media). Like the outbox it
-- is a work queue read across tenants by one worker, not a read model: no row-level security,
-- and a projector rebuild never deletes it (its states record what was already fetched).
--
-- States: pending (due at next_attempt_at) → fetching (claimed) → stored | failed.
-- A row found `fetching` after its fetcher stopped goes back to pending: fetching is a read,
-- safe to repeat.
CREATE TABLE media_jobs
(
    job_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       text        NOT NULL,
    -- The keyed hash of WhatsApp's media id (IdKey::media_ref): the Media stream's local id.
    media_ref       text        NOT NULL,
    conversation_id text        NOT NULL,
    contact_id      text        NOT NULL,
    message_ref     text        NOT NULL,
    kind            text        NOT NULL,
    -- The message's content (WhatsApp's media object: id, mime type, sha-256, caption), sealed
    -- exactly as in the event; the fetcher opens it for the media id.
    content         jsonb       NOT NULL,
    state           text        NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'fetching', 'stored', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_at      timestamptz,
    -- The last error, without personal data (HTTP status or failure code).
    last_error      text,
    correlation_id  text        NOT NULL,
    -- The global position of the `MessageReceived` event.
    event_position  bigint      NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, media_ref)
);
-- The fetcher claims due pending rows oldest first.
CREATE INDEX media_jobs_due ON media_jobs (next_attempt_at, job_id) WHERE state = 'pending';

GRANT SELECT, INSERT, UPDATE ON media_jobs TO chronicle_app;
