-- Outbound media and interactive messages (issue 17): what a thread shows of them beyond the
-- text. `attachment` holds, in the clear like `content` (cleared with it on erasure):
-- for media, {"kind", "mediaRef" | "link", "filename"}; for interactive messages, the checked
-- message itself ({"header", "body", "footer", "choices"}). NULL for every other message.
ALTER TABLE messages ADD COLUMN attachment jsonb;
