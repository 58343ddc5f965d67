-- Row-level security on read models (DESIGN.md, "Projections"): a second wall behind the
-- resolvers' tenant filter. For the application role, a read-model row is visible only when the
-- transaction's `chronicle.tenant_id` setting names its tenant. Queries set it to the caller's
-- tenant (from the token); projectors, which write every tenant's rows, set it to '*'. A
-- resolver that forgot its tenant filter therefore still sees one tenant only, and a
-- transaction that set nothing sees nothing. The owner (migrations, operators) is not subject.

ALTER TABLE conversations ENABLE ROW LEVEL SECURITY;
ALTER TABLE message_statuses ENABLE ROW LEVEL SECURITY;

CREATE POLICY conversations_tenant ON conversations
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));

CREATE POLICY message_statuses_tenant ON message_statuses
    TO chronicle_app
    USING (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'))
    WITH CHECK (current_setting('chronicle.tenant_id', true) IN (tenant_id, '*'));
