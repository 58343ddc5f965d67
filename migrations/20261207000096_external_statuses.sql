-- Statuses of messages Chronicle did not send (decision 0020, issue 17).
--
-- The Conversation aggregate now keeps the message ids WhatsApp accepted from Chronicle
-- (`sent_refs`) to tell a status of its own message from one of a message sent outside Chronicle
-- (`DeliveryStatusRecorded.external`). A snapshot taken before holds none, so every status after
-- the upgrade would be taken as external: the conversations' snapshots go, and each conversation
-- folds its events once more (and snapshots again) on its next command.
DELETE FROM snapshots WHERE aggregate_type = 'Conversation';
