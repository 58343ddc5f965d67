//! Errors of the write side: one type for every command, split into the caller's fault and
//! everything else.

use chronicle_domain::api_key::ApiKeyError;
use chronicle_domain::call::{AutomationRulesError, CallError};
use chronicle_domain::campaign::CampaignError;
use chronicle_domain::contact::ContactError;
use chronicle_domain::conversation::ConversationError;
use chronicle_domain::installation::WarrantyError;
use chronicle_domain::installation::{ClaimError, MaintenanceError, ServiceError};
use chronicle_domain::installation::{InstallationError, OrderError, PayoutError};
use chronicle_domain::lead::LeadError;
use chronicle_domain::media::MediaError;
use chronicle_domain::payment::PaymentError;
use chronicle_domain::payment_request::PaymentRequestError;
use chronicle_domain::template::TemplateError;
use chronicle_domain::user::UserError;
use chronicle_domain::wallet::WalletError;
use chronicle_domain::webhook::WebhookError;

/// A refusal by an aggregate: the caller's fault, with the rule's stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error(transparent)]
    Conversation(#[from] ConversationError),
    #[error(transparent)]
    Contact(#[from] ContactError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Lead(#[from] LeadError),
    #[error(transparent)]
    Call(#[from] CallError),
    #[error(transparent)]
    AutomationRules(#[from] AutomationRulesError),
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error(transparent)]
    Wallet(#[from] WalletError),
    #[error(transparent)]
    Order(#[from] OrderError),
    #[error(transparent)]
    Installation(#[from] InstallationError),
    #[error(transparent)]
    Payout(#[from] PayoutError),
    #[error(transparent)]
    Campaign(#[from] CampaignError),
    #[error(transparent)]
    Payment(#[from] PaymentError),
    #[error(transparent)]
    PaymentRequest(#[from] PaymentRequestError),
    #[error(transparent)]
    PaymentProvider(#[from] chronicle_domain::payment_provider::PaymentProviderError),
    #[error(transparent)]
    Warranty(#[from] WarrantyError),
    #[error(transparent)]
    Claim(#[from] ClaimError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(transparent)]
    Maintenance(#[from] MaintenanceError),
    #[error(transparent)]
    ApiKey(#[from] ApiKeyError),
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    #[error(transparent)]
    User(#[from] UserError),
}

impl DomainError {
    /// The stable code of the broken rule (`extensions.code` in GraphQL).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Conversation(e) => e.code(),
            Self::Contact(e) => e.code(),
            Self::Template(e) => e.code(),
            Self::Lead(e) => e.code(),
            Self::Call(e) => e.code(),
            Self::AutomationRules(e) => e.code(),
            Self::Media(e) => e.code(),
            Self::Wallet(e) => e.code(),
            Self::Order(e) => e.code(),
            Self::Installation(e) => e.code(),
            Self::Payout(e) => e.code(),
            Self::Campaign(e) => e.code(),
            Self::Payment(e) => e.code(),
            Self::PaymentRequest(e) => e.code(),
            Self::PaymentProvider(e) => e.code(),
            Self::Warranty(e) => e.code(),
            Self::Claim(e) => e.code(),
            Self::Service(e) => e.code(),
            Self::Maintenance(e) => e.code(),
            Self::ApiKey(e) => e.code(),
            Self::Webhook(e) => e.code(),
            Self::User(e) => e.code(),
        }
    }
}

/// Why a command did not produce its events.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The aggregate refused the command: the caller's fault.
    #[error("{0}")]
    Rejected(#[from] DomainError),
    /// Another command changed the same stream at the same moment, every retry included.
    #[error("the stream was changed concurrently; try again")]
    Conflict,
    /// The input could not be turned into a command (a malformed phone number, say).
    #[error("{0}")]
    InvalidInput(String),
    /// Anything else: the database, serialization. Logged once at the boundary.
    #[error("unexpected failure: {0}")]
    Unexpected(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl CommandError {
    /// A stable code for API callers.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Rejected(e) => e.code(),
            Self::Conflict => "CONFLICT",
            Self::InvalidInput(_) => "INVALID_INPUT",
            Self::Unexpected(_) => "INTERNAL",
        }
    }
}

impl From<sqlx::Error> for CommandError {
    fn from(e: sqlx::Error) -> Self {
        Self::Unexpected(Box::new(e))
    }
}
