-- The work list of the call follow-up process manager.
--
-- The `call_follow_ups` projector adds a row for every `CallCompleted` with a contact (state
-- `new`), and copies the outcome of each follow-up message it sent (`OutboundMessageSent` /
-- `OutboundMessageFailed` whose idempotency key is the row's `message_key`) into `send_state`.
-- The worker in `chronicle_commands::calls`:
--   1. asks the tenant's automation rules for `new` rows and sends `ScheduleFollowUp` to the
--      call (state `scheduled`, with the template and due time) or records that no rule
--      applies (state `no_rule`), or that the call refused (state `refused`);
--   2. queues the template on the contact's conversation for `scheduled` rows that are due
--      (`send_state` `queued`, `message_key` = `call-follow-up:<call id>:<attempt>`);
--   3. records each outcome on the call (`RecordFollowUpAttempt`), then waits for the retry
--      time (`send_state` `idle` again, `due_at` moved) or finishes (state `done`).
-- Rows are claimed with `FOR UPDATE SKIP LOCKED` and a short lease (`not_before`), so several
-- workers never work one row at once; the aggregates' idempotency covers a crash mid-step.
CREATE TABLE call_follow_ups
(
    tenant_id       text        NOT NULL,
    call_id         text        NOT NULL,
    contact_id      text        NOT NULL,
    outcome         text        NOT NULL,
    ended_at        timestamptz NOT NULL,
    -- new, scheduled, no_rule, refused, done
    state           text        NOT NULL DEFAULT 'new',
    template_name   text,
    language        text,
    due_at          timestamptz,
    -- The attempt under way or last made (1, 2, …).
    attempt         integer     NOT NULL DEFAULT 0,
    -- idle, queued, sent, failed
    send_state      text        NOT NULL DEFAULT 'idle',
    message_key     text,
    send_message_ref text,
    send_error_code bigint,
    send_retryable  boolean,
    send_at         timestamptz,
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    not_before      timestamptz NOT NULL DEFAULT now(),
    decided_at      timestamptz,
    -- The CallCompleted event's global position (the causation of ScheduleFollowUp).
    event_position  bigint      NOT NULL,
    PRIMARY KEY (tenant_id, call_id)
);
CREATE INDEX call_follow_ups_todo ON call_follow_ups (not_before) WHERE state IN ('new', 'scheduled');
CREATE UNIQUE INDEX call_follow_ups_by_message ON call_follow_ups (tenant_id, message_key);

-- Written by a projector (every tenant) and by the worker (every tenant): a work list, not a
-- read model served to callers, so no row-level security; both act as the application role.
GRANT SELECT, INSERT, UPDATE, DELETE ON call_follow_ups TO chronicle_app;
