//! Payment callbacks from Paynow, M-Pesa and a Stripe-style provider, end to end on the write
//! side: verify, confirm with the provider, record a `Payment` once per provider + reference,
//! then match it to what it paid for.
//!
//! # Layout
//!
//! - [`paynow`]: form callbacks, the SHA-512 hash, the status poll (pollurl on the configured
//!   base only).
//! - [`mpesa`]: STK callbacks on a secret path, the Daraja STK status query.
//! - [`stripe`]: `Stripe-Signature` (`t=`, `v1=`, HMAC-SHA256, 300 s tolerance).
//! - [`credentials`]: per-tenant provider credentials, sealed under the master key.
//! - [`expiry`]: the sweeper that expires open payment requests past their expiry.
//! - [`requests`]: payment requests: asking a customer to pay (the M-Pesa STK push), and
//!   callbacks matched to what was asked; refused callbacks kept for finance.
//!
//! # Processing (synchronous: the provider's retry is the inbox)
//!
//! A callback is verified on its raw bytes (hash, signature or secret path; a failure answers
//! 4xx and stores nothing: no event, no row), then confirmed with the provider where the
//! provider offers it (Paynow's poll, Daraja's STK query), then recorded, all before the
//! answer. A transient failure of the status call, a write conflict or a database failure
//! answers 5xx, so the provider delivers the callback again; nothing is half-done that a retry
//! would not finish, because every step is idempotent:
//!
//! 1. `PaymentCommand::Confirm` on `<tenant>:pay_…` ([`payment_local_id`]): a repeat records
//!    nothing, the first confirmation stands;
//! 2. the payment is loaded: if it is already matched or unmatched, that is the outcome;
//! 3. otherwise the merchant reference decides (see [`Target`]): `order_<id>` →
//!    `OrderCommand::RecordPayment` (idempotent per provider + reference in the order) then
//!    `MatchToOrder`; `wallet_<id>` → a wallet purchase under the provider's reference
//!    (idempotent by reference) of `amount × rate` milli-tokens (the rate per currency is
//!    configured, [`PaymentsConfig::token_rates`]) then `MatchToWallet`; anything else, or any
//!    refusal of the order or wallet (unknown order, overpayment, a cancelled order, another
//!    currency, no rate for the currency), → `LeaveUnmatched` with the refusal's code. Nothing
//!    is dropped: finance sees the unmatched payment and matches it by hand
//!    ([`PaymentIntake::match_manually`]).
//!
//! Why not the webhook inbox: a payment only counts after the provider confirms it, and the
//! confirmation call can fail; answering 5xx lets the provider's own retry schedule drive the
//! retries without a second queue, and a callback whose verification fails never touches the
//! database.

pub mod credentials;
pub mod expiry;
pub mod mpesa;
pub mod paynow;
pub mod requests;
pub mod stripe;

use std::collections::BTreeMap;
use std::time::Duration;

use chronicle_domain::installation::order::RecordPayment;
use chronicle_domain::installation::{OrderCommand, PaymentProvider};
use chronicle_domain::metadata::{Actor, CommandMetadata};
use chronicle_domain::payment::{
    payment_local_id, ConfirmPayment, Payment, PaymentCommand, PaymentMatch, PaymentStatus,
};
use chronicle_domain::pii::MasterKey;
use chronicle_domain::tenant::TenantId;
use chrono::{DateTime, Utc};
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::EventStore;
use postgres_es::PostgresEventRepository;
use tracing::Instrument;

use crate::dispatch::Commands;
use crate::error::CommandError;
use crate::wallets::{valid_wallet_id, WalletService, MAIN_WALLET};

/// Where the providers are, and how top-ups convert money into tokens.
#[derive(Debug, Clone)]
pub struct PaymentsConfig {
    /// Paynow's base URL (no trailing `/`); poll URLs must lie under it.
    pub paynow_base_url: String,
    /// Daraja's base URL (no trailing `/`).
    pub daraja_base_url: String,
    /// Stripe's API base URL (no trailing `/`).
    pub stripe_base_url: String,
    /// Milli-tokens credited per minor unit of each currency for wallet top-ups.
    pub token_rates: BTreeMap<String, i64>,
    /// Timeout of one call to a provider.
    pub timeout: Duration,
    /// Chronicle's public base URL (no trailing `/`), for the callback URLs given to providers.
    pub public_url: String,
}

impl Default for PaymentsConfig {
    /// Production providers; one token per US cent.
    fn default() -> Self {
        Self {
            paynow_base_url: "https://www.paynow.co.zw/Interface".into(),
            daraja_base_url: "https://api.safaricom.co.ke".into(),
            stripe_base_url: "https://api.stripe.com".into(),
            token_rates: BTreeMap::from([("USD".to_string(), 1_000)]),
            timeout: Duration::from_secs(15),
            public_url: "http://127.0.0.1:8080".into(),
        }
    }
}

/// Why a provider did not accept an initiation (an STK push, a Checkout Session, a Paynow
/// transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitiationError {
    /// The provider refused it, with its code: the request fails for good.
    Refused { code: String },
    /// The provider could not be reached or failed: the outcome is unknown; try again later.
    Unavailable(String),
}

/// Why a callback was not counted; answered with [`CallbackError::status`] and
/// [`CallbackError::code`].
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// The path names no tenant.
    #[error("the path names no tenant of this platform")]
    UnknownTenant,
    /// The tenant has not configured the provider.
    #[error("{provider} is not configured for this tenant")]
    NotConfigured { provider: &'static str },
    /// The M-Pesa callback path's secret is wrong (or M-Pesa is not configured).
    #[error("unknown callback path")]
    WrongSecretPath,
    /// The body is not what the provider sends.
    #[error("{0}")]
    Malformed(String),
    /// Paynow's hash does not match the values and the integration key.
    #[error("the Paynow hash does not match")]
    BadHash,
    /// A Stripe-style signature is missing, wrong or too old.
    #[error("{0}")]
    BadSignature(String),
    /// Paynow's poll URL is not on the configured Paynow base URL.
    #[error("the poll URL is not on the configured Paynow base URL")]
    PollUrlRefused,
    /// Paynow's poll answer failed its hash check.
    #[error("Paynow's poll answer failed its hash check")]
    PollHashMismatch,
    /// The provider's status API failed or cannot say yet: transient.
    #[error("{0}")]
    Upstream(String),
    /// The write side failed or refused.
    #[error(transparent)]
    Command(#[from] CommandError),
}

impl PartialEq for CallbackError {
    fn eq(&self, other: &Self) -> bool {
        self.code() == other.code() && self.to_string() == other.to_string()
    }
}

impl CallbackError {
    /// The HTTP status to answer: 4xx for the caller's fault (the provider should not retry),
    /// 5xx for what a retry can fix.
    pub fn status(&self) -> u16 {
        match self {
            Self::UnknownTenant | Self::NotConfigured { .. } | Self::WrongSecretPath => 404,
            Self::Malformed(_) | Self::PollUrlRefused => 400,
            Self::BadHash | Self::BadSignature(_) => 401,
            Self::PollHashMismatch => 502,
            Self::Upstream(_) => 503,
            Self::Command(CommandError::Rejected(_)) => 422,
            Self::Command(CommandError::InvalidInput(_)) => 400,
            Self::Command(CommandError::Conflict) => 503,
            Self::Command(CommandError::Unexpected(_)) => 500,
        }
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownTenant => "UNKNOWN_TENANT",
            Self::NotConfigured { .. } => "PROVIDER_NOT_CONFIGURED",
            Self::WrongSecretPath => "UNKNOWN_CALLBACK_PATH",
            Self::Malformed(_) => "MALFORMED_CALLBACK",
            Self::BadHash => "BAD_HASH",
            Self::BadSignature(_) => "BAD_SIGNATURE",
            Self::PollUrlRefused => "POLL_URL_REFUSED",
            Self::PollHashMismatch => "POLL_HASH_MISMATCH",
            Self::Upstream(_) => "PROVIDER_UNAVAILABLE",
            Self::Command(e) => e.code(),
        }
    }
}

/// Reads token rates written `USD=1000,KES=8` (milli-tokens per minor unit of each currency).
pub fn parse_token_rates(text: &str) -> Result<BTreeMap<String, i64>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (currency, rate) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not CURRENCY=milli-tokens"))?;
            let currency = currency.trim();
            if !chronicle_domain::installation::order::is_currency_code(currency) {
                return Err(format!("{currency:?} is not an ISO 4217 code"));
            }
            let rate: i64 = rate
                .trim()
                .parse()
                .ok()
                .filter(|r| *r > 0)
                .ok_or_else(|| format!("{rate:?} is not a positive number of milli-tokens"))?;
            Ok((currency.to_string(), rate))
        })
        .collect()
}

/// A decimal amount with at most two decimals (`"10"`, `"10.5"`, `"10.50"`) in minor units;
/// `None` for anything else (more decimals, signs, exponents, overflow).
pub fn amount_to_minor(text: &str) -> Option<i64> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > 2 {
        return None;
    }
    let cents: i64 = format!("{fraction:0<2}").parse().ok()?;
    whole.parse::<i64>().ok()?.checked_mul(100)?.checked_add(cents)
}

/// A payment whose provider vouched for it (hash, signature or secret path, and the status
/// call where the provider has one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPayment {
    pub provider: PaymentProvider,
    pub reference: String,
    pub merchant_reference: String,
    pub amount_minor: i64,
    pub currency: String,
}

/// What a callback came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackOutcome {
    /// Verified, but not a payment to count (not paid, another event type).
    Ignored { reason: String },
    /// Verified, but it pays nothing: no request of ours, another amount than asked, a second
    /// payment of a paid request. Kept for finance with the reason's code; no payment recorded.
    Refused { reason: String, request_id: Option<String> },
    /// The payment as it stands after this delivery (the first delivery's outcome on a repeat).
    Recorded {
        payment_id: String,
        status: PaymentStatus,
        matched: Option<PaymentMatch>,
        unmatched_reason: Option<String>,
    },
}

/// What a merchant reference names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `order_<id>`: the order's local stream id is the reference itself.
    Order(String),
    /// `wallet_<id>`: a top-up of the tenant's wallet `<id>` (`main`, or a sub-wallet).
    Wallet(String),
    /// Nothing we issued.
    Unrecognised,
}

impl Target {
    /// Reads a merchant reference.
    pub fn of(merchant_reference: &str) -> Self {
        let id_ok = |id: &str| {
            !id.is_empty() && id.len() <= 100 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        let reference = merchant_reference.trim();
        if let Some(id) = reference.strip_prefix("order_").filter(|id| id_ok(id)) {
            return Self::Order(format!("order_{id}"));
        }
        if let Some(id) = reference.strip_prefix("wallet_") {
            if valid_wallet_id(id).is_ok() {
                return Self::Wallet(id.to_string());
            }
        }
        Self::Unrecognised
    }
}

/// The payment callbacks' write side.
#[derive(Clone)]
pub struct PaymentIntake {
    commands: Commands,
    wallets: WalletService,
    master: MasterKey,
    config: PaymentsConfig,
    client: reqwest::Client,
}

impl std::fmt::Debug for PaymentIntake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentIntake")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn metadata(tenant: &TenantId, component: &str, correlation: &str, causation: String) -> CommandMetadata {
    CommandMetadata {
        tenant_id: tenant.clone(),
        actor: Actor::System {
            component: component.to_string(),
        },
        correlation_id: correlation.to_string(),
        causation_id: causation,
    }
}

impl PaymentIntake {
    /// An intake writing through `commands`, opening credentials with `master`.
    pub fn new(commands: Commands, master: MasterKey, config: PaymentsConfig) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            // A redirect could lead the poll off the checked base URL.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            wallets: WalletService::new(commands.clone()),
            commands,
            master,
            config,
            client,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &PaymentsConfig {
        &self.config
    }

    /// Sets a tenant's credentials for one provider (admin), recorded in the log (see
    /// [`credentials::set_provider`]).
    pub async fn set_provider(
        &self,
        credentials: &credentials::ProviderCredentials,
        metadata: &CommandMetadata,
    ) -> Result<(), CommandError> {
        credentials::set_provider(&self.commands, &self.master, credentials, metadata).await
    }

    /// A Paynow result callback (the raw form body).
    pub async fn paynow(
        &self,
        tenant: &TenantId,
        body: &[u8],
        correlation: &str,
    ) -> Result<CallbackOutcome, CallbackError> {
        let pairs = crate::http::form::parse_form(body).ok_or_else(|| {
            CallbackError::Malformed("the body is not an application/x-www-form-urlencoded form".into())
        })?;
        let (key, currency) = credentials::paynow(self.commands.pool(), &self.master, tenant).await?;
        paynow::verify_hash(&pairs, &key)?;
        let callback = paynow::PaynowStatus::from_pairs(&pairs)?;
        let url = paynow::checked_poll_url(&callback.poll_url, &self.config.paynow_base_url)?;
        let polled_url = url.to_string();
        let polled = paynow::poll(&self.client, url, &key).await?;
        if polled.paynow_reference != callback.paynow_reference {
            return Err(CallbackError::Malformed(
                "the poll answered for another Paynow reference".into(),
            ));
        }
        if chronicle_domain::payment_request::is_payment_request_id(&polled.merchant_reference) {
            // A payment request's transaction: matched to the request by its reference.
            return self
                .paynow_status(tenant, polled, &polled_url, currency, correlation)
                .await;
        }
        if !polled.is_paid() {
            return Ok(CallbackOutcome::Ignored {
                reason: format!("Paynow reports the payment {}", polled.status),
            });
        }
        let payment = VerifiedPayment {
            provider: PaymentProvider::Paynow,
            reference: polled.paynow_reference,
            merchant_reference: polled.merchant_reference,
            amount_minor: polled.amount_minor,
            currency,
        };
        self.record(tenant, payment, correlation).await
    }

    /// An M-Pesa STK callback on the path secret `path_secret`: counted only for a payment
    /// request's STK push, and only as the request asked (see [`requests`]).
    pub async fn mpesa(
        &self,
        tenant: &TenantId,
        path_secret: &str,
        body: &[u8],
        correlation: &str,
    ) -> Result<CallbackOutcome, CallbackError> {
        let daraja = credentials::mpesa(self.commands.pool(), &self.master, tenant, path_secret).await?;
        let callback = mpesa::parse_callback(body)?;
        self.mpesa_callback(tenant, &daraja, callback, correlation).await
    }

    /// A Stripe-style webhook (raw body and its `Stripe-Signature` header), checked at `now`.
    pub async fn stripe(
        &self,
        tenant: &TenantId,
        signature: Option<&str>,
        body: &[u8],
        now: DateTime<Utc>,
        correlation: &str,
    ) -> Result<CallbackOutcome, CallbackError> {
        let secret = credentials::stripe(self.commands.pool(), &self.master, tenant).await?;
        stripe::verify_signature(&secret, signature, body, now)?;
        let intent = match stripe::parse_event(body)? {
            stripe::StripeEvent::Ignored(reason) => return Ok(CallbackOutcome::Ignored { reason }),
            stripe::StripeEvent::RequestPaid(paid) => return self.stripe_callback(tenant, paid, correlation).await,
            stripe::StripeEvent::Payment(intent) => intent,
        };
        let payment = VerifiedPayment {
            provider: PaymentProvider::Stripe,
            reference: intent.payment_intent,
            merchant_reference: intent.merchant_reference,
            amount_minor: intent.amount_minor,
            currency: intent.currency,
        };
        self.record(tenant, payment, correlation).await
    }

    /// The payment `<tenant>:<local_id>` as it stands.
    pub async fn load(&self, tenant: &TenantId, local_id: &str) -> Result<Payment, CommandError> {
        load_payment(self.commands.pool(), tenant, local_id).await
    }

    /// Records a verified payment once and matches it (see the module docs).
    pub async fn record(
        &self,
        tenant: &TenantId,
        payment: VerifiedPayment,
        correlation: &str,
    ) -> Result<CallbackOutcome, CallbackError> {
        self.record_as(tenant, payment, correlation, None).await
    }

    /// [`Self::record`], leaving the payment unmatched with `unmatched` when given (a payment
    /// its request refused but whose money is real: paid late, or after a cancellation).
    async fn record_as(
        &self,
        tenant: &TenantId,
        payment: VerifiedPayment,
        correlation: &str,
        unmatched: Option<&str>,
    ) -> Result<CallbackOutcome, CallbackError> {
        let span = tracing::info_span!(
            "payment.record",
            tenant.id = %tenant,
            correlation.id = %correlation,
            payment.provider = payment.provider.as_str(),
        );
        async {
            let local = payment_local_id(payment.provider, &payment.reference);
            let meta = metadata(
                tenant,
                &format!("payments:{}", payment.provider.as_str()),
                correlation,
                format!("{}-callback:{}", payment.provider.as_str(), payment.reference),
            );
            let confirm = PaymentCommand::Confirm(ConfirmPayment {
                provider: payment.provider,
                reference: payment.reference.clone(),
                merchant_reference: payment.merchant_reference.clone(),
                amount_minor: payment.amount_minor,
                currency: payment.currency.clone(),
                at: Utc::now(),
            });
            self.commands.payment(&local, confirm, &meta).await?;
            let state = self.load(tenant, &local).await?;
            if state.status() == PaymentStatus::Confirmed {
                match unmatched {
                    Some(reason) => match self.commands.payment(&local, self::unmatched(reason), &meta).await {
                        // Decided by a concurrent delivery in between: its decision stands.
                        Ok(_) | Err(CommandError::Rejected(_)) => {}
                        Err(e) => return Err(e.into()),
                    },
                    None => self.settle(&local, &state, &meta).await?,
                }
            }
            let state = self.load(tenant, &local).await?;
            tracing::info!(payment.id = %local, payment.status = state.status().as_str(), "payment callback recorded");
            Ok(CallbackOutcome::Recorded {
                payment_id: local,
                status: state.status(),
                matched: state.matched().cloned(),
                unmatched_reason: state.unmatched_reason().map(str::to_string),
            })
        }
        .instrument(span)
        .await
    }

    /// Matches a confirmed, undecided payment from its first confirmation's values.
    async fn settle(&self, local: &str, state: &Payment, meta: &CommandMetadata) -> Result<(), CommandError> {
        let (Some((provider, reference)), Some((amount_minor, currency)), Some(merchant)) =
            (state.provider_reference(), state.amount(), state.merchant_reference())
        else {
            return Ok(());
        };
        let decision = match Target::of(merchant) {
            Target::Order(order_id) => {
                let command = OrderCommand::RecordPayment(RecordPayment {
                    provider,
                    reference: reference.to_string(),
                    amount_minor,
                    currency: currency.to_string(),
                    at: Utc::now(),
                });
                match self.commands.order(&order_id, command, meta).await {
                    Ok(_) => PaymentCommand::MatchToOrder {
                        order_id,
                        at: Utc::now(),
                    },
                    Err(CommandError::Rejected(e)) => unmatched(e.code()),
                    Err(e) => return Err(e),
                }
            }
            Target::Wallet(wallet_id) => {
                let tokens = match self.config.token_rates.get(currency) {
                    None => Err("NO_TOKEN_RATE"),
                    Some(rate) => rate.checked_mul(amount_minor).ok_or("AMOUNT_TOO_LARGE"),
                };
                match tokens {
                    Err(reason) => unmatched(reason),
                    Ok(milli_tokens) => match self.top_up(&wallet_id, provider, reference, milli_tokens, meta).await {
                        Ok(()) => PaymentCommand::MatchToWallet {
                            wallet_id,
                            milli_tokens,
                            at: Utc::now(),
                        },
                        Err(CommandError::Rejected(e)) => unmatched(e.code()),
                        Err(CommandError::InvalidInput(_)) => unmatched("UNRECOGNISED_REFERENCE"),
                        Err(e) => return Err(e),
                    },
                }
            }
            Target::Unrecognised => unmatched("UNRECOGNISED_REFERENCE"),
        };
        match self.commands.payment(local, decision, meta).await {
            // Decided by a concurrent delivery in between: its decision stands.
            Err(CommandError::Rejected(_)) => Ok(()),
            other => other.map(drop),
        }
    }

    async fn top_up(
        &self,
        wallet_id: &str,
        provider: PaymentProvider,
        reference: &str,
        milli_tokens: i64,
        meta: &CommandMetadata,
    ) -> Result<(), CommandError> {
        if wallet_id == MAIN_WALLET {
            self.wallets.ensure_main(meta).await?;
        }
        self.wallets
            .purchase(wallet_id, reference, milli_tokens, provider.as_str(), meta)
            .await
            .map(|_| ())
    }

    /// Finance matches an unmatched payment to an order (see [`match_manually`]).
    pub async fn match_manually(
        &self,
        payment_id: &str,
        order_id: &str,
        metadata: &CommandMetadata,
    ) -> Result<Payment, CommandError> {
        match_manually(&self.commands, payment_id, order_id, metadata).await
    }
}

/// The payment `<tenant>:<local_id>` as it stands (from its stream).
pub async fn load_payment(pool: &sqlx::PgPool, tenant: &TenantId, local_id: &str) -> Result<Payment, CommandError> {
    let store = PersistedEventStore::<_, Payment>::new_event_store(PostgresEventRepository::new(pool.clone()))
        .with_upcasters(crate::repository::upcasters());
    let mut context = store
        .load_aggregate(&tenant.stream_id(local_id))
        .await
        .map_err(|e| CommandError::Unexpected(Box::new(e)))?;
    Ok(std::mem::take(cqrs_es::AggregateContext::aggregate(&mut context)))
}

/// Finance matches the unmatched payment `payment_id` to the order `order_id` (`order_…`):
/// the order records the payment (its refusals are returned as they are: overpayment,
/// another currency…), then the payment records the manual match. Repeating it changes
/// nothing.
pub async fn match_manually(
    commands: &Commands,
    payment_id: &str,
    order_id: &str,
    metadata: &CommandMetadata,
) -> Result<Payment, CommandError> {
    let tenant = &metadata.tenant_id;
    if !payment_id.starts_with("pay_") {
        return Err(CommandError::InvalidInput(format!(
            "{payment_id:?} is not a payment id"
        )));
    }
    let Target::Order(order_id) = Target::of(order_id) else {
        return Err(CommandError::InvalidInput(format!("{order_id:?} is not an order id")));
    };
    let state = load_payment(commands.pool(), tenant, payment_id).await?;
    let by = match &metadata.actor {
        Actor::User { user_id, .. } => user_id.clone(),
        other => other.to_string(),
    };
    let command = PaymentCommand::MatchManually {
        order_id: order_id.clone(),
        by,
        at: Utc::now(),
    };
    // Only an unmatched payment goes to the order; any other state is answered by the
    // payment itself (a repeat records nothing, anything else is refused with its rule).
    if state.status() == PaymentStatus::Unmatched {
        let (Some((provider, reference)), Some((amount_minor, currency))) =
            (state.provider_reference(), state.amount())
        else {
            return Err(CommandError::Unexpected(
                "an unmatched payment without its confirmation".into(),
            ));
        };
        let record = OrderCommand::RecordPayment(RecordPayment {
            provider,
            reference: reference.to_string(),
            amount_minor,
            currency: currency.to_string(),
            at: Utc::now(),
        });
        commands.order(&order_id, record, metadata).await?;
    }
    commands.payment(payment_id, command, metadata).await?;
    load_payment(commands.pool(), tenant, payment_id).await
}

fn unmatched(reason: &str) -> PaymentCommand {
    PaymentCommand::LeaveUnmatched {
        reason: reason.to_string(),
        at: Utc::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_with_up_to_two_decimals_become_minor_units() {
        assert_eq!(amount_to_minor("10"), Some(1_000));
        assert_eq!(amount_to_minor("10.5"), Some(1_050));
        assert_eq!(amount_to_minor("10.50"), Some(1_050));
        assert_eq!(amount_to_minor("0.01"), Some(1));
        assert_eq!(amount_to_minor("150.500"), Some(15_050));
        for bad in ["", "-1", "1e3", "1.001", "abc", ".5", "99999999999999999999"] {
            assert_eq!(amount_to_minor(bad), None, "{bad}");
        }
    }

    #[test]
    fn merchant_references_name_orders_wallets_or_nothing() {
        assert_eq!(
            Target::of("order_123e4567-e89b"),
            Target::Order("order_123e4567-e89b".into())
        );
        assert_eq!(Target::of("wallet_main"), Target::Wallet("main".into()));
        assert_eq!(Target::of("wallet_Main"), Target::Unrecognised);
        assert_eq!(Target::of("order_"), Target::Unrecognised);
        assert_eq!(Target::of("order_1;drop"), Target::Unrecognised);
        assert_eq!(Target::of("INV-77"), Target::Unrecognised);
    }

    #[test]
    fn token_rates_are_read_per_currency() {
        assert_eq!(
            parse_token_rates("USD=1000, KES=8"),
            Ok(BTreeMap::from([("USD".to_string(), 1000), ("KES".to_string(), 8)]))
        );
        assert!(parse_token_rates("usd=1").is_err());
        assert!(parse_token_rates("USD=0").is_err());
        assert!(parse_token_rates("USD").is_err());
    }
}
