-- Templates with Meta (issue 17): a tenant's WhatsApp Business Account, the submission of
-- templates to Meta's review, and what the templates read model shows of them.

-- The WhatsApp Business Account (WABA) id of a tenant: where its templates are submitted
-- (`POST /{waba-id}/message_templates`), and the `entry.id` of the webhook deliveries about
-- them (`message_template_status_update`), which decides their tenant. Registry configuration,
-- written by operators (`chronicle admin map-account`), like `whatsapp_numbers`.
CREATE TABLE whatsapp_accounts
(
    waba_id   text PRIMARY KEY,
    tenant_id text        NOT NULL REFERENCES tenants (tenant_id),
    mapped_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX whatsapp_accounts_tenant ON whatsapp_accounts (tenant_id);
GRANT SELECT, INSERT, UPDATE ON whatsapp_accounts TO chronicle_app;

-- A template status update is kept in the webhook inbox with the account's id where a
-- message's row has its phone-number id (`phone_number_id`): it decides the tenant.

-- The templates read model: the header and footer of the current version, and why WhatsApp
-- paused or disabled it. (Events before this carry neither: no rebuild is needed.)
ALTER TABLE templates ADD COLUMN header jsonb, ADD COLUMN footer text, ADD COLUMN status_reason text;

-- `TemplateSubmitted` → a submission to Meta's review (the `templates` projector's feed; the
-- WhatsApp sender copies it into `template_submissions` and works it).
CREATE TABLE template_submission_feed
(
    tenant_id      text    NOT NULL,
    -- The template's stream local id, `tpl_<name>_<language>`.
    template_id    text    NOT NULL,
    version        integer NOT NULL,
    correlation_id text    NOT NULL,
    position       bigint  NOT NULL,
    PRIMARY KEY (tenant_id, template_id, version)
);
CREATE INDEX template_submission_feed_position ON template_submission_feed (position);
GRANT SELECT, INSERT, UPDATE, DELETE ON template_submission_feed TO chronicle_app;

-- The sender's own work list of submissions (attempts, outcome); never cleared by a rebuild.
-- pending → submitting → submitted (Meta took it: `TemplateSentForReview`) | refused (Meta
-- refused it: `TemplateRejected`) | superseded (nothing to submit: decided, or a newer version).
CREATE TABLE template_submissions
(
    submission_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       text        NOT NULL,
    template_id     text        NOT NULL,
    version         integer     NOT NULL,
    correlation_id  text        NOT NULL,
    state           text        NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'submitting', 'submitted', 'refused', 'superseded')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_at      timestamptz,
    -- The last error, without personal data (HTTP status, Meta's code and message).
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, template_id, version)
);
CREATE INDEX template_submissions_due ON template_submissions (next_attempt_at) WHERE state = 'pending';
GRANT SELECT, INSERT, UPDATE ON template_submissions TO chronicle_app;

-- Templates already pending when this runs go to review too: a submission each (the
-- projector's checkpoint is past their events), and the feed's mark starts at that checkpoint,
-- so a rebuild of the feed copies none of them again.
INSERT INTO template_submissions (tenant_id, template_id, version, correlation_id)
SELECT tenant_id, template_id, version, 'migration-20261208000099'
  FROM templates
 WHERE status = 'pending' AND provider_template_id IS NULL
ON CONFLICT (tenant_id, template_id, version) DO NOTHING;

INSERT INTO work_admissions (feed, position)
SELECT 'template_submission_feed', last_position FROM projector_checkpoints WHERE projector = 'templates'
ON CONFLICT (feed) DO NOTHING;
