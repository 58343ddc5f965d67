//! The `User` aggregate: a person who signs in to a tenant (issue 14).
//!
//! Stream id: `<tenant>:usr_<id>` (the caller builds it), aggregate type `User`.
//!
//! A user is invited by an owner or admin with a role, accepts with a password, may have their
//! role changed, be deactivated and reactivated, have a password reset issued and completed,
//! and turn a second factor (TOTP) on and off. Every change is an event with its actor, so the
//! audit history shows who gave whom which access.
//!
//! Secrets never enter the log: the invitation and reset tokens, the password's hash, the TOTP
//! secret and the recovery codes are kept beside it (`commands::users`, decision 0018). The
//! e-mail address and name are here in plain: they are a staff member's work identity, which
//! the audit history exists to show.
//!
//! Rules held here:
//! - an e-mail address is one `local@domain` of at most 254 characters (kept lower-cased); a
//!   name is 1 to 100 characters, not blank;
//! - a stream holds one user: inviting again is refused (`UserAlreadyInvited`); a pending
//!   invitation may be renewed with a new expiry;
//! - an invitation is accepted once, before it expires, and not while deactivated;
//! - a deactivated user changes only by reactivation (back to where they were: invited or
//!   active); deactivating twice or reactivating an active user changes nothing;
//! - a password reset is issued only for an active user, and completed only while issued and
//!   not expired; a completed reset closes it;
//! - a second factor is turned on only when off, and off only when on.
//!
//! One rule spans users and so is held by the caller: a tenant keeps at least one active owner
//! (`LastOwner`, raised by `commands::users` under a per-tenant lock).

mod password;

pub use password::{check_password, is_common, MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS};

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// The longest name a user may have, in characters.
pub const MAX_USER_NAME_CHARS: usize = 100;
/// The longest e-mail address (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;

/// An e-mail address as a user is known by: trimmed, lower-cased, `local@domain` with a dot in
/// the domain, no spaces, at most 254 characters.
pub fn normalize_email(raw: &str) -> Result<String, UserError> {
    let email = raw.trim().to_lowercase();
    let valid = email.chars().count() <= MAX_EMAIL_CHARS
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains("..")
        });
    if valid {
        Ok(email)
    } else {
        Err(UserError::InvalidEmail)
    }
}

/// A request to change a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum UserCommand {
    /// Invite a person with a role; the invitation holds until `expires_at`.
    InviteUser {
        email: String,
        name: String,
        role: String,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// Give a pending invitation a new token and expiry (the old token stops working).
    RenewInvitation {
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// The invited person accepted and set a password.
    AcceptInvitation { at: DateTime<Utc> },
    /// Give the user another role.
    ChangeUserRole { role: String, at: DateTime<Utc> },
    /// Stop the user signing in; their sessions end.
    DeactivateUser { reason: Option<String>, at: DateTime<Utc> },
    /// Let a deactivated user back in.
    ReactivateUser { at: DateTime<Utc> },
    /// Issue a one-time password reset, valid until `expires_at`.
    IssuePasswordReset {
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// The reset was used: the user set a new password.
    CompletePasswordReset { at: DateTime<Utc> },
    /// The user turned on a TOTP second factor (with fresh recovery codes).
    EnableTwoFactor { at: DateTime<Utc> },
    /// The user turned off their second factor.
    DisableTwoFactor { at: DateTime<Utc> },
    /// The user signed in with one of their recovery codes (`remaining` are left).
    UseRecoveryCode { remaining: u32, at: DateTime<Utc> },
}

/// Facts about a user. Names are contracts: never renamed once stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum UserEvent {
    /// A person was invited with a role (the token is not here: the inviter was shown it once).
    UserInvited {
        email: String,
        name: String,
        role: String,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// A pending invitation got a new token and expiry.
    InvitationRenewed {
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// The invitation was accepted: the user can sign in.
    InvitationAccepted { at: DateTime<Utc> },
    /// The user's role changed.
    UserRoleChanged {
        from: String,
        to: String,
        at: DateTime<Utc>,
    },
    /// The user was deactivated: refused at sign-in, their refresh tokens revoked.
    UserDeactivated { reason: Option<String>, at: DateTime<Utc> },
    /// The user was reactivated.
    UserReactivated { at: DateTime<Utc> },
    /// A password reset was issued (to an admin, who hands it over).
    PasswordResetIssued {
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// The user set a new password with a reset; their sessions were ended.
    PasswordResetCompleted { at: DateTime<Utc> },
    /// A TOTP second factor was turned on.
    TwoFactorEnabled { at: DateTime<Utc> },
    /// The second factor was turned off.
    TwoFactorDisabled { at: DateTime<Utc> },
    /// A recovery code was used to sign in; `remaining` are left.
    RecoveryCodeUsed { remaining: u32, at: DateTime<Utc> },
}

impl UserEvent {
    /// Every event type of this aggregate, as stored in `events.event_type`.
    pub const TYPES: &'static [&'static str] = &[
        "UserInvited",
        "InvitationRenewed",
        "InvitationAccepted",
        "UserRoleChanged",
        "UserDeactivated",
        "UserReactivated",
        "PasswordResetIssued",
        "PasswordResetCompleted",
        "TwoFactorEnabled",
        "TwoFactorDisabled",
        "RecoveryCodeUsed",
    ];
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        match self {
            Self::UserInvited { .. } => "UserInvited",
            Self::InvitationRenewed { .. } => "InvitationRenewed",
            Self::InvitationAccepted { .. } => "InvitationAccepted",
            Self::UserRoleChanged { .. } => "UserRoleChanged",
            Self::UserDeactivated { .. } => "UserDeactivated",
            Self::UserReactivated { .. } => "UserReactivated",
            Self::PasswordResetIssued { .. } => "PasswordResetIssued",
            Self::PasswordResetCompleted { .. } => "PasswordResetCompleted",
            Self::TwoFactorEnabled { .. } => "TwoFactorEnabled",
            Self::TwoFactorDisabled { .. } => "TwoFactorDisabled",
            Self::RecoveryCodeUsed { .. } => "RecoveryCodeUsed",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        crate::upcast::current_version(&self.event_type()).to_string()
    }
}

/// Why a user command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// An e-mail address is one `local@domain`, at most 254 characters.
    #[error("not an e-mail address (one local@domain, at most {MAX_EMAIL_CHARS} characters)")]
    InvalidEmail,
    /// A name is 1 to 100 characters, not blank.
    #[error("a user's name is 1 to {MAX_USER_NAME_CHARS} characters and not blank; got {chars} characters")]
    InvalidUserName { chars: usize },
    /// A stream holds one user.
    #[error("this user was already invited")]
    UserAlreadyInvited,
    /// Another user of the tenant has this e-mail address.
    #[error("another user of this tenant has this e-mail address")]
    EmailTaken,
    /// No such user in the tenant.
    #[error("there is no such user")]
    UnknownUser,
    /// Expiries are after the moment they are set.
    #[error("an expiry must be after the moment it is set")]
    ExpiryNotInFuture,
    /// The invitation was already accepted (or the user was never invited).
    #[error("this user has no pending invitation")]
    InvitationNotPending,
    /// The invitation's expiry has passed: an admin renews it.
    #[error("the invitation has expired; ask an admin to renew it")]
    InvitationExpired,
    /// A deactivated user changes only by reactivation.
    #[error("this user is deactivated")]
    UserDeactivated,
    /// A password reset is for an active user.
    #[error("this user has not accepted their invitation; renew the invitation instead")]
    UserNotActive,
    /// No password reset is pending.
    #[error("no password reset is pending for this user")]
    PasswordResetNotPending,
    /// The reset's expiry has passed.
    #[error("the password reset has expired; ask an admin for a new one")]
    PasswordResetExpired,
    /// The second factor is already on.
    #[error("two-factor sign-in is already on for this user")]
    TwoFactorAlreadyEnabled,
    /// The second factor is off.
    #[error("two-factor sign-in is not on for this user")]
    TwoFactorNotEnabled,
    /// A new password follows the password rule ([`check_password`]).
    #[error("this password is too weak: {reason}")]
    WeakPassword { reason: String },
    /// Work is assigned to a user whose role does that work (checked by the caller against the
    /// permission table).
    #[error("the {role} role does not {work}; assign someone whose role does")]
    RoleNotAllowed { role: String, work: String },
    /// Only an owner gives the owner role or changes an owner (checked by the caller).
    #[error("only an owner may give the owner role or change an owner")]
    RoleAboveIssuer,
    /// The acting user was deactivated or lost the role that allowed this since their access
    /// token was issued (checked by the caller).
    #[error("your account was deactivated or your role changed since you signed in; sign in again")]
    CallerNoLongerAllowed,
    /// A tenant keeps at least one active owner (checked across users by the caller).
    #[error("this is the tenant's last active owner: make another user owner first")]
    LastOwner,
}

impl UserError {
    /// The stable code shown to API callers (`extensions.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidEmail => "INVALID_EMAIL",
            Self::InvalidUserName { .. } => "INVALID_USER_NAME",
            Self::UserAlreadyInvited => "USER_ALREADY_INVITED",
            Self::EmailTaken => "EMAIL_TAKEN",
            Self::UnknownUser => "UNKNOWN_USER",
            Self::ExpiryNotInFuture => "EXPIRY_NOT_IN_FUTURE",
            Self::InvitationNotPending => "INVITATION_NOT_PENDING",
            Self::InvitationExpired => "INVITATION_EXPIRED",
            Self::UserDeactivated => "USER_DEACTIVATED",
            Self::UserNotActive => "USER_NOT_ACTIVE",
            Self::PasswordResetNotPending => "PASSWORD_RESET_NOT_PENDING",
            Self::PasswordResetExpired => "PASSWORD_RESET_EXPIRED",
            Self::TwoFactorAlreadyEnabled => "TWO_FACTOR_ALREADY_ENABLED",
            Self::TwoFactorNotEnabled => "TWO_FACTOR_NOT_ENABLED",
            Self::WeakPassword { .. } => "WEAK_PASSWORD",
            Self::RoleNotAllowed { .. } => "ROLE_NOT_ALLOWED",
            Self::RoleAboveIssuer => "ROLE_ABOVE_ISSUER",
            Self::CallerNoLongerAllowed => "CALLER_NO_LONGER_ALLOWED",
            Self::LastOwner => "LAST_OWNER",
        }
    }
}

/// Where a user stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    /// No invitation yet (an empty stream).
    #[default]
    Unknown,
    /// Invited, not yet accepted.
    Invited,
    /// Signs in.
    Active,
    /// Refused at sign-in until reactivated.
    Deactivated,
}

impl UserStatus {
    /// The status's name, as read models and GraphQL show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Invited => "invited",
            Self::Active => "active",
            Self::Deactivated => "deactivated",
        }
    }
}

/// A user of one tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct User {
    status: UserStatus,
    /// Whether the invitation was ever accepted (where a reactivation returns to).
    accepted: bool,
    email: String,
    name: String,
    role: String,
    invitation_expires_at: Option<DateTime<Utc>>,
    reset_expires_at: Option<DateTime<Utc>>,
    two_factor: bool,
}

impl User {
    /// Where the user stands.
    pub fn status(&self) -> UserStatus {
        self.status
    }

    /// The user's role.
    pub fn role(&self) -> &str {
        &self.role
    }

    /// The user's e-mail address (lower-cased).
    pub fn email(&self) -> &str {
        &self.email
    }

    /// Whether a second factor is on.
    pub fn two_factor(&self) -> bool {
        self.two_factor
    }

    fn invite(
        &self,
        email: &str,
        name: &str,
        role: String,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<UserEvent, UserError> {
        if self.status != UserStatus::Unknown {
            return Err(UserError::UserAlreadyInvited);
        }
        let email = normalize_email(email)?;
        let name = name.trim().to_string();
        let chars = name.chars().count();
        if name.is_empty() || chars > MAX_USER_NAME_CHARS {
            return Err(UserError::InvalidUserName { chars });
        }
        if expires_at <= at {
            return Err(UserError::ExpiryNotInFuture);
        }
        Ok(UserEvent::UserInvited {
            email,
            name,
            role,
            expires_at,
            at,
        })
    }

    /// Refuses a command on a user who does not exist or is deactivated.
    fn live(&self) -> Result<(), UserError> {
        match self.status {
            UserStatus::Unknown => Err(UserError::UnknownUser),
            UserStatus::Deactivated => Err(UserError::UserDeactivated),
            UserStatus::Invited | UserStatus::Active => Ok(()),
        }
    }

    fn decide(&self, command: UserCommand) -> Result<Option<UserEvent>, UserError> {
        use UserCommand as C;
        use UserEvent as E;
        Ok(match command {
            C::InviteUser {
                email,
                name,
                role,
                expires_at,
                at,
            } => Some(self.invite(&email, &name, role, expires_at, at)?),
            C::RenewInvitation { expires_at, at } => {
                self.live()?;
                if self.status != UserStatus::Invited {
                    return Err(UserError::InvitationNotPending);
                }
                if expires_at <= at {
                    return Err(UserError::ExpiryNotInFuture);
                }
                Some(E::InvitationRenewed { expires_at, at })
            }
            C::AcceptInvitation { at } => {
                self.live()?;
                if self.status != UserStatus::Invited {
                    return Err(UserError::InvitationNotPending);
                }
                if self.invitation_expires_at.is_none_or(|expiry| expiry <= at) {
                    return Err(UserError::InvitationExpired);
                }
                Some(E::InvitationAccepted { at })
            }
            C::ChangeUserRole { role, at } => {
                self.live()?;
                (role != self.role).then(|| E::UserRoleChanged {
                    from: self.role.clone(),
                    to: role,
                    at,
                })
            }
            C::DeactivateUser { reason, at } => match self.status {
                UserStatus::Unknown => return Err(UserError::UnknownUser),
                UserStatus::Deactivated => None,
                UserStatus::Invited | UserStatus::Active => Some(E::UserDeactivated {
                    reason: reason.map(|r| r.trim().to_string()).filter(|r| !r.is_empty()),
                    at,
                }),
            },
            C::ReactivateUser { at } => match self.status {
                UserStatus::Unknown => return Err(UserError::UnknownUser),
                UserStatus::Deactivated => Some(E::UserReactivated { at }),
                UserStatus::Invited | UserStatus::Active => None,
            },
            C::IssuePasswordReset { expires_at, at } => {
                self.live()?;
                if self.status != UserStatus::Active {
                    return Err(UserError::UserNotActive);
                }
                if expires_at <= at {
                    return Err(UserError::ExpiryNotInFuture);
                }
                Some(E::PasswordResetIssued { expires_at, at })
            }
            C::CompletePasswordReset { at } => {
                self.live()?;
                match self.reset_expires_at {
                    None => return Err(UserError::PasswordResetNotPending),
                    Some(expiry) if expiry <= at => return Err(UserError::PasswordResetExpired),
                    Some(_) => Some(E::PasswordResetCompleted { at }),
                }
            }
            C::EnableTwoFactor { at } => {
                self.live()?;
                if self.status != UserStatus::Active {
                    return Err(UserError::UserNotActive);
                }
                if self.two_factor {
                    return Err(UserError::TwoFactorAlreadyEnabled);
                }
                Some(E::TwoFactorEnabled { at })
            }
            C::DisableTwoFactor { at } => {
                self.live()?;
                if !self.two_factor {
                    return Err(UserError::TwoFactorNotEnabled);
                }
                Some(E::TwoFactorDisabled { at })
            }
            C::UseRecoveryCode { remaining, at } => {
                self.live()?;
                if !self.two_factor {
                    return Err(UserError::TwoFactorNotEnabled);
                }
                Some(E::RecoveryCodeUsed { remaining, at })
            }
        })
    }
}

impl Aggregate for User {
    const TYPE: &'static str = "User";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        if let Some(event) = self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            UserEvent::UserInvited {
                email,
                name,
                role,
                expires_at,
                ..
            } => {
                self.status = UserStatus::Invited;
                self.email = email;
                self.name = name;
                self.role = role;
                self.invitation_expires_at = Some(expires_at);
            }
            UserEvent::InvitationRenewed { expires_at, .. } => self.invitation_expires_at = Some(expires_at),
            UserEvent::InvitationAccepted { .. } => {
                self.status = UserStatus::Active;
                self.accepted = true;
                self.invitation_expires_at = None;
            }
            UserEvent::UserRoleChanged { to, .. } => self.role = to,
            UserEvent::UserDeactivated { .. } => {
                self.status = UserStatus::Deactivated;
                self.reset_expires_at = None;
            }
            UserEvent::UserReactivated { .. } => {
                self.status = if self.accepted {
                    UserStatus::Active
                } else {
                    UserStatus::Invited
                };
            }
            UserEvent::PasswordResetIssued { expires_at, .. } => self.reset_expires_at = Some(expires_at),
            UserEvent::PasswordResetCompleted { .. } => self.reset_expires_at = None,
            UserEvent::TwoFactorEnabled { .. } => self.two_factor = true,
            UserEvent::TwoFactorDisabled { .. } => self.two_factor = false,
            UserEvent::RecoveryCodeUsed { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;
    use proptest::prelude::*;

    fn at(second: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + second, 0).unwrap_or_default()
    }

    fn invited() -> UserEvent {
        UserEvent::UserInvited {
            email: "amina@example.com".into(),
            name: "Amina".into(),
            role: "agent".into(),
            expires_at: at(100),
            at: at(0),
        }
    }

    fn invite(email: &str, name: &str, expires_at: DateTime<Utc>) -> UserCommand {
        UserCommand::InviteUser {
            email: email.into(),
            name: name.into(),
            role: "agent".into(),
            expires_at,
            at: at(0),
        }
    }

    type F = TestFramework<User>;

    #[test]
    fn an_invitation_is_recorded_with_the_email_lower_cased_and_the_name_trimmed() {
        F::with(())
            .given_no_previous_events()
            .when(invite(" Amina@Example.COM ", " Amina ", at(100)))
            .then_expect_events(vec![invited()]);
    }

    #[test]
    fn an_invitation_with_a_bad_email_name_or_expiry_or_a_second_one_is_refused() {
        for email in [
            "amina",
            "amina@",
            "@example.com",
            "a b@example.com",
            "a@example",
            "a@b@c.com",
            "a@.com",
        ] {
            F::with(())
                .given_no_previous_events()
                .when(invite(email, "Amina", at(100)))
                .then_expect_error(UserError::InvalidEmail);
        }
        F::with(())
            .given_no_previous_events()
            .when(invite("a@example.com", "  ", at(100)))
            .then_expect_error(UserError::InvalidUserName { chars: 0 });
        F::with(())
            .given_no_previous_events()
            .when(invite("a@example.com", &"n".repeat(101), at(100)))
            .then_expect_error(UserError::InvalidUserName { chars: 101 });
        F::with(())
            .given_no_previous_events()
            .when(invite("a@example.com", "Amina", at(0)))
            .then_expect_error(UserError::ExpiryNotInFuture);
        F::with(())
            .given(vec![invited()])
            .when(invite("a@example.com", "Amina", at(100)))
            .then_expect_error(UserError::UserAlreadyInvited);
    }

    #[test]
    fn an_invitation_is_accepted_once_and_only_before_it_expires() {
        F::with(())
            .given(vec![invited()])
            .when(UserCommand::AcceptInvitation { at: at(99) })
            .then_expect_events(vec![UserEvent::InvitationAccepted { at: at(99) }]);
        F::with(())
            .given(vec![invited()])
            .when(UserCommand::AcceptInvitation { at: at(100) })
            .then_expect_error(UserError::InvitationExpired);
        F::with(())
            .given(vec![invited(), UserEvent::InvitationAccepted { at: at(5) }])
            .when(UserCommand::AcceptInvitation { at: at(6) })
            .then_expect_error(UserError::InvitationNotPending);
        F::with(())
            .given_no_previous_events()
            .when(UserCommand::AcceptInvitation { at: at(6) })
            .then_expect_error(UserError::UnknownUser);
        F::with(())
            .given(vec![
                invited(),
                UserEvent::UserDeactivated {
                    reason: None,
                    at: at(5),
                },
            ])
            .when(UserCommand::AcceptInvitation { at: at(6) })
            .then_expect_error(UserError::UserDeactivated);
        // A renewed invitation is accepted after the first expiry.
        F::with(())
            .given(vec![
                invited(),
                UserEvent::InvitationRenewed {
                    expires_at: at(500),
                    at: at(150),
                },
            ])
            .when(UserCommand::AcceptInvitation { at: at(200) })
            .then_expect_events(vec![UserEvent::InvitationAccepted { at: at(200) }]);
        F::with(())
            .given(vec![invited(), UserEvent::InvitationAccepted { at: at(5) }])
            .when(UserCommand::RenewInvitation {
                expires_at: at(500),
                at: at(6),
            })
            .then_expect_error(UserError::InvitationNotPending);
    }

    #[test]
    fn role_changes_deactivation_and_reactivation() {
        let active = || vec![invited(), UserEvent::InvitationAccepted { at: at(5) }];
        F::with(())
            .given(active())
            .when(UserCommand::ChangeUserRole {
                role: "admin".into(),
                at: at(6),
            })
            .then_expect_events(vec![UserEvent::UserRoleChanged {
                from: "agent".into(),
                to: "admin".into(),
                at: at(6),
            }]);
        F::with(())
            .given(active())
            .when(UserCommand::ChangeUserRole {
                role: "agent".into(),
                at: at(6),
            })
            .then_expect_events(vec![]);
        F::with(())
            .given(active())
            .when(UserCommand::DeactivateUser {
                reason: Some(" left ".into()),
                at: at(6),
            })
            .then_expect_events(vec![UserEvent::UserDeactivated {
                reason: Some("left".into()),
                at: at(6),
            }]);
        let deactivated = || {
            let mut events = active();
            events.push(UserEvent::UserDeactivated {
                reason: None,
                at: at(6),
            });
            events
        };
        F::with(())
            .given(deactivated())
            .when(UserCommand::DeactivateUser {
                reason: None,
                at: at(7),
            })
            .then_expect_events(vec![]);
        F::with(())
            .given(deactivated())
            .when(UserCommand::ChangeUserRole {
                role: "admin".into(),
                at: at(7),
            })
            .then_expect_error(UserError::UserDeactivated);
        F::with(())
            .given(deactivated())
            .when(UserCommand::ReactivateUser { at: at(7) })
            .then_expect_events(vec![UserEvent::UserReactivated { at: at(7) }]);
        F::with(())
            .given(active())
            .when(UserCommand::ReactivateUser { at: at(7) })
            .then_expect_events(vec![]);
        F::with(())
            .given_no_previous_events()
            .when(UserCommand::DeactivateUser {
                reason: None,
                at: at(7),
            })
            .then_expect_error(UserError::UnknownUser);
    }

    #[test]
    fn a_password_reset_is_for_an_active_user_and_used_once_before_it_expires() {
        let active = || vec![invited(), UserEvent::InvitationAccepted { at: at(5) }];
        F::with(())
            .given(vec![invited()])
            .when(UserCommand::IssuePasswordReset {
                expires_at: at(60),
                at: at(6),
            })
            .then_expect_error(UserError::UserNotActive);
        F::with(())
            .given(active())
            .when(UserCommand::CompletePasswordReset { at: at(6) })
            .then_expect_error(UserError::PasswordResetNotPending);
        let issued = || {
            let mut events = active();
            events.push(UserEvent::PasswordResetIssued {
                expires_at: at(60),
                at: at(6),
            });
            events
        };
        F::with(())
            .given(issued())
            .when(UserCommand::CompletePasswordReset { at: at(60) })
            .then_expect_error(UserError::PasswordResetExpired);
        F::with(())
            .given(issued())
            .when(UserCommand::CompletePasswordReset { at: at(30) })
            .then_expect_events(vec![UserEvent::PasswordResetCompleted { at: at(30) }]);
        let mut used = issued();
        used.push(UserEvent::PasswordResetCompleted { at: at(30) });
        F::with(())
            .given(used)
            .when(UserCommand::CompletePasswordReset { at: at(31) })
            .then_expect_error(UserError::PasswordResetNotPending);
    }

    #[test]
    fn the_second_factor_turns_on_and_off_once() {
        let active = || vec![invited(), UserEvent::InvitationAccepted { at: at(5) }];
        F::with(())
            .given(active())
            .when(UserCommand::DisableTwoFactor { at: at(6) })
            .then_expect_error(UserError::TwoFactorNotEnabled);
        F::with(())
            .given(active())
            .when(UserCommand::EnableTwoFactor { at: at(6) })
            .then_expect_events(vec![UserEvent::TwoFactorEnabled { at: at(6) }]);
        let mut on = active();
        on.push(UserEvent::TwoFactorEnabled { at: at(6) });
        F::with(())
            .given(on.clone())
            .when(UserCommand::EnableTwoFactor { at: at(7) })
            .then_expect_error(UserError::TwoFactorAlreadyEnabled);
        F::with(())
            .given(on)
            .when(UserCommand::UseRecoveryCode {
                remaining: 9,
                at: at(7),
            })
            .then_expect_events(vec![UserEvent::RecoveryCodeUsed {
                remaining: 9,
                at: at(7),
            }]);
    }

    fn any_command() -> impl Strategy<Value = UserCommand> {
        let t = || (0i64..200).prop_map(at);
        prop_oneof![
            (t(), t()).prop_map(|(expires_at, at)| invite_at("a@example.com", expires_at, at)),
            (t(), t()).prop_map(|(expires_at, at)| UserCommand::RenewInvitation { expires_at, at }),
            t().prop_map(|at| UserCommand::AcceptInvitation { at }),
            (prop::sample::select(vec!["owner", "admin", "agent"]), t())
                .prop_map(|(role, at)| { UserCommand::ChangeUserRole { role: role.into(), at } }),
            t().prop_map(|at| UserCommand::DeactivateUser { reason: None, at }),
            t().prop_map(|at| UserCommand::ReactivateUser { at }),
            (t(), t()).prop_map(|(expires_at, at)| UserCommand::IssuePasswordReset { expires_at, at }),
            t().prop_map(|at| UserCommand::CompletePasswordReset { at }),
            t().prop_map(|at| UserCommand::EnableTwoFactor { at }),
            t().prop_map(|at| UserCommand::DisableTwoFactor { at }),
        ]
    }

    fn invite_at(email: &str, expires_at: DateTime<Utc>, at: DateTime<Utc>) -> UserCommand {
        UserCommand::InviteUser {
            email: email.into(),
            name: "A".into(),
            role: "agent".into(),
            expires_at,
            at,
        }
    }

    proptest! {
        /// Whatever commands arrive: a deactivated user changes only by reactivation, a user
        /// is active only after an accepted invitation, a second factor only for someone who
        /// accepted, and refused commands leave the state as it was.
        #[test]
        fn the_state_machine_holds(commands in prop::collection::vec(any_command(), 1..40)) {
            let mut user = User::default();
            for command in commands {
                let before = user.clone();
                match user.decide(command.clone()) {
                    Ok(Some(event)) => {
                        if before.status == UserStatus::Deactivated {
                            prop_assert!(matches!(event, UserEvent::UserReactivated { .. }), "{event:?}");
                        }
                        user.apply(event);
                    }
                    Ok(None) | Err(_) => prop_assert_eq!(&user, &before),
                }
                if user.status == UserStatus::Active || user.two_factor {
                    prop_assert!(user.accepted);
                }
                if user.status == UserStatus::Unknown {
                    prop_assert_eq!(&user, &User::default());
                }
            }
        }
    }
}
