-- The sender's progress on a queued outbound message, from the log (issue 17: a call's
-- follow-up showed PENDING with 0 attempts while its message had been tried 7 times).
--
-- `OutboundSendRetried` (a try not accepted for now, to be made again) and
-- `OutboundSendUncertain` (left for an operator: it may have reached WhatsApp) are recorded on
-- the conversation. The messages read model shows them on the message (state `retrying` or
-- `needs_operator`, the tries, the last error, the next try); the calls read model on the
-- follow-up whose message it is (status `sending` or `awaiting_operator`, the tries).
-- Both columns start empty: no event of either type exists before this migration.

ALTER TABLE messages
    ADD COLUMN send_tries      integer NOT NULL DEFAULT 0,
    ADD COLUMN last_send_error text,
    ADD COLUMN next_try_at     timestamptz;

ALTER TABLE calls
    ADD COLUMN follow_up_send_tries      integer NOT NULL DEFAULT 0,
    ADD COLUMN follow_up_last_send_error text;
