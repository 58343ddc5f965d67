-- The inbox list's order as an index (benchmarks, issue 6).
--
-- `conversations::list` orders a tenant's conversations by `last_message_at DESC NULLS LAST,
-- conversation_id DESC`. The index of migration 0005 has the default `DESC NULLS FIRST` and an
-- ascending id, so it cannot serve that order: every first page sorted all of the tenant's
-- conversations. With this index a page is the first rows of an index range.
CREATE INDEX conversations_inbox_order
    ON conversations (tenant_id, last_message_at DESC NULLS LAST, conversation_id DESC);
