-- The sender's progress on a queued outbound message, from the log (issue 17: a call's
-- follow-up showed PENDING with 0 attempts while its message had been tried 7 times).
--
-- `OutboundSendRetried` (a try not accepted for now, to be made again) and
-- `OutboundSendUncertain` (left for an operator: it may have reached WhatsApp) are recorded on
-- the conversation. The messages read model shows them on the message (state `retrying` or
-- `needs_operator`, the tries, the last error, the next try); the calls read model on the
-- follow-up whose message it is (status `sending` or `awaiting_operator`, the tries).
-- No event of either new type exists before this migration, but the calls projector now also
-- reads two that do (`OutboundMessageQueued`, `OutboundResendAuthorized` of follow-up messages):
-- it starts over (its table cleared, its checkpoint at the start) and rebuilds from the log on
-- the next start, so a follow-up queued before the upgrade reads SENDING as a rebuild would.

ALTER TABLE messages
    ADD COLUMN send_tries      integer NOT NULL DEFAULT 0,
    ADD COLUMN last_send_error text,
    ADD COLUMN next_try_at     timestamptz;

ALTER TABLE calls
    ADD COLUMN follow_up_send_tries      integer NOT NULL DEFAULT 0,
    ADD COLUMN follow_up_last_send_error text;

DELETE FROM calls;
UPDATE projector_checkpoints
   SET last_tx_id = '0'::xid8, last_position = 0, events_applied = 0, updated_at = now()
 WHERE projector = 'calls';

-- The sender records a message it left for an operator (`OutboundSendUncertain`) from its own
-- row, and marks the row once the log has it: a record lost to a crash or an outage is made on
-- a later pass. Rows left before this migration are recorded too.
ALTER TABLE outbox ADD COLUMN uncertain_recorded boolean NOT NULL DEFAULT false;
-- What the sender's pass looks for: a few rows at most, in a table that keeps every message.
CREATE INDEX outbox_uncertain_unrecorded ON outbox (outbox_id) WHERE state = 'needs_operator' AND NOT uncertain_recorded;
