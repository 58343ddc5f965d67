-- Users' credentials and sessions (issue 14), beside the log like `api_key_credentials`
-- (decision 0018).
--
-- The `User` aggregate's events record who invited whom with which role, role changes,
-- deactivations, resets and the second factor being turned on and off. What sign-in needs and
-- the log must never hold lives here: the password's argon2id hash (PHC string), the SHA-256
-- of the pending invitation and reset tokens (256 random bits each, so a fast hash is
-- enough), the TOTP secret sealed under a per-user data key that the master key wraps, the
-- last TOTP step used (a code is good once), and the SHA-256 of the unused recovery codes.
-- Written only by `chronicle_commands::users`, under a per-tenant advisory lock (the last
-- owner rule and e-mail uniqueness span users). Accounts are looked up by token before their
-- tenant is known, so queries filter by tenant themselves.
CREATE TABLE user_accounts
(
    user_id                text        PRIMARY KEY CHECK (user_id ~ '^usr_[a-z2-7]{16}$'),
    tenant_id              text        NOT NULL,
    email                  text        NOT NULL CHECK (email = lower(email)),
    name                   text        NOT NULL,
    role                   text        NOT NULL,
    status                 text        NOT NULL CHECK (status IN ('invited', 'active', 'deactivated')),
    -- Whether the invitation was ever accepted (a reactivation returns to active or invited).
    accepted               boolean     NOT NULL DEFAULT false,
    password_hash          text,
    invitation_sha256      bytea       UNIQUE CHECK (length(invitation_sha256) = 32),
    invitation_expires_at  timestamptz,
    reset_sha256           bytea       UNIQUE CHECK (length(reset_sha256) = 32),
    reset_expires_at       timestamptz,
    wrapped_key            bytea,
    totp_sealed            bytea,
    totp_pending_sealed    bytea,
    totp_last_step         bigint,
    recovery_sha256        bytea[]     NOT NULL DEFAULT '{}',
    invited_at             timestamptz NOT NULL,
    invited_by             text        NOT NULL,
    updated_at             timestamptz NOT NULL,
    UNIQUE (tenant_id, email)
);

CREATE INDEX user_accounts_by_tenant ON user_accounts (tenant_id, invited_at, user_id);

-- Refresh tokens: opaque, 256 random bits, kept as SHA-256. A sign-in starts a family; every
-- refresh marks its token used and issues the next of the family. Presenting a used token
-- again (a stolen copy racing its owner) revokes the whole family. Sign-out revokes the
-- family; deactivation and a password reset revoke every family of the user.
CREATE TABLE refresh_tokens
(
    token_sha256  bytea       PRIMARY KEY CHECK (length(token_sha256) = 32),
    family_id     text        NOT NULL,
    tenant_id     text        NOT NULL,
    user_id       text        NOT NULL REFERENCES user_accounts (user_id),
    issued_at     timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz,
    revoked_at    timestamptz
);

CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_live_by_user ON refresh_tokens (user_id) WHERE revoked_at IS NULL;

GRANT SELECT, INSERT, UPDATE ON user_accounts TO chronicle_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON refresh_tokens TO chronicle_app;
