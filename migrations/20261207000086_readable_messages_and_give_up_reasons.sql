-- Issue 17, two read models that said less than the log holds.
--
-- 1. A call's follow-up that was given up showed no reason. The reason is in the
--    `FollowUpGaveUp` event (not personal data); the `calls` projector now writes it, and the
--    rows given up before this migration get it from the log here, so nothing is rebuilt.
ALTER TABLE calls ADD COLUMN follow_up_give_up_reason text;

UPDATE calls c
   SET follow_up_give_up_reason = (
         SELECT e.payload -> 'FollowUpGaveUp' ->> 'reason'
           FROM events e
          WHERE e.aggregate_type = 'Call'
            AND e.aggregate_id = c.tenant_id || ':' || c.call_id
            AND e.event_type = 'FollowUpGaveUp'
          ORDER BY e.sequence DESC
          LIMIT 1)
 WHERE c.follow_up_status = 'gave_up';

-- 2. An inbound message's `content` was WhatsApp's object for its kind as JSON text
--    (`{"body": "…"}`); the `messages` projector now writes what a person reads (the body, a
--    caption, a file name, …). The content is sealed in the log, so only the projector can
--    open it: the projector starts over (its tables cleared, its checkpoint at the start), and
--    rebuilds from the log on the next start, as any projector does from zero.
DELETE FROM messages;
DELETE FROM message_timeline;
DELETE FROM conversation_details;
DELETE FROM conversation_notes;
UPDATE projector_checkpoints
   SET last_tx_id = '0'::xid8, last_position = 0, events_applied = 0, updated_at = now()
 WHERE projector = 'messages';

-- 3. A conversation's last message ignored outbound ones; the `conversations` projector now
--    shows either way's latest (and the inbox orders by it). It starts over as well.
DELETE FROM conversations;
DELETE FROM message_statuses;
UPDATE projector_checkpoints
   SET last_tx_id = '0'::xid8, last_position = 0, events_applied = 0, updated_at = now()
 WHERE projector = 'conversations';
