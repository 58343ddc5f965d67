//! Payment requests (issue 16): asking a customer to pay through a provider, and matching the
//! provider's callbacks to what was asked.
//!
//! # Asking
//!
//! [`PaymentIntake::request_payment`] records the request (`PaymentRequestCommand::Request` on
//! `<tenant>:preq_…`, the id derived from the caller's idempotency key), then initiates it with
//! the provider before answering:
//!
//! - M-Pesa: an STK push through Daraja to the customer's phone (opened from their contact,
//!   never logged), with the tenant's secret callback path as `CallBackURL`. The returned
//!   `CheckoutRequestID` goes into `payment_request_refs` first, then the request records it
//!   (`RecordSent`), so a callback that arrives at once finds its request. Daraja refusing the
//!   push fails the request with its code; Daraja unreachable leaves it `requested` and answers
//!   `PROVIDER_UNAVAILABLE`: the same call again (same idempotency key) pushes again.
//! - Stripe: a Checkout Session (see [`super::stripe`]) with the request id in its metadata
//!   and as its idempotency key. The session's id goes into `payment_request_refs` first, then
//!   the request records it with the session's payment page (`RecordSent`), which the caller
//!   sends the customer. Stripe refusing the session fails the request with its code; Stripe
//!   unreachable (or still answering the same key) leaves it `requested` and answers
//!   `UNAVAILABLE`: the same call again sends the same form under the same key, and Stripe
//!   answers the same session if it had opened one (see [`super::stripe`] for the limits).
//! - Paynow: a web checkout (`initiatetransaction`), or with `mobile_money` an Express prompt
//!   (`remotetransaction`) on the contact's EcoCash or OneMoney phone, the request id as Paynow's
//!   `reference` (see [`super::paynow`]). The answer's hash is checked; its poll URL goes into
//!   `payment_request_refs`, then the request records it with the payment page (web). Paynow
//!   refusing fails the request with its error; Paynow unreachable leaves it `requested`
//!   (`UNAVAILABLE`): the same call again initiates again under the same reference.
//!
//! # Callbacks
//!
//! A callback is matched to its request by the provider's id for the initiation (M-Pesa's
//! `CheckoutRequestID`, Stripe's session), for Stripe's `payment_intent.succeeded` by the
//! request id in the intent's signed metadata, and for Paynow by the request id as the
//! reference of a hash-checked callback confirmed by Paynow's status poll, and nothing else.
//! Open Paynow requests are also polled by the requests' watcher ([`super::expiry`]), so an
//! Express payment whose callback never comes still pays. No request with that id: nothing is recorded on the log and the callback is kept for
//! finance in `payment_callback_refusals` (`NO_PAYMENT_REQUEST`). Otherwise the provider confirms
//! it (Daraja's status query), then the request decides (`RecordCallback`): the amount asked, on
//! an open request, before its expiry, once, pays it, and only then is a `Payment` recorded and
//! matched to the order or wallet the request names. A refused callback is kept for finance with
//! its reason; a late or cancelled request paid in full keeps the money as an unmatched payment
//! (`REQUEST_EXPIRED`, `REQUEST_CANCELLED`), since the provider really took it.

use chronicle_domain::contact::Contact;
use chronicle_domain::installation::PaymentProvider;
use chronicle_domain::metadata::CommandMetadata;
use chronicle_domain::payment_request::{
    payment_request_local_id, CallbackRefusal, MobileMoney, PaidCallback, PaymentRequest, PaymentRequestCommand,
    PaymentRequestError, PaymentRequestStatus, PaymentTarget, RequestPayment,
};
use chronicle_domain::tenant::TenantId;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{
    credentials, mpesa, paynow, stripe, CallbackError, CallbackOutcome, InitiationError, PaymentIntake, VerifiedPayment,
};
use crate::error::CommandError;
use crate::installation::by_of;
use crate::installation::load;
use crate::keystore::KeyStore;

/// What a caller asks for.
#[derive(Debug, Clone)]
pub struct NewPaymentRequest {
    /// The caller's idempotency key: the same key answers with the first request.
    pub idempotency_key: String,
    pub target: PaymentTarget,
    pub provider: PaymentProvider,
    pub amount_minor: i64,
    pub currency: String,
    pub expires_at: DateTime<Utc>,
    /// The customer asked (required for M-Pesa and Paynow Express: the prompt goes to their
    /// phone).
    pub contact_id: Option<String>,
    /// Paynow Express: the mobile money wallet prompted instead of a payment page.
    pub mobile_money: Option<MobileMoney>,
    /// Send the request to the customer on WhatsApp once the provider accepted it.
    pub message: Option<NewRequestMessage>,
}

/// How a request goes to the customer on WhatsApp: an approved template of the tenant, whose
/// parameters may hold the placeholders of [`PLACEHOLDERS`], filled from the request.
#[derive(Debug, Clone)]
pub struct NewRequestMessage {
    pub template: String,
    pub language: String,
    pub parameters: Vec<String>,
    /// Remind the customer this long before the expiry (the same template again), while the
    /// request is unpaid: more than zero and at most 30 days.
    pub remind_before: Option<chrono::Duration>,
}

/// What a request message's parameters may hold: the amount asked (`USD 150.00`), the payment
/// page (only for requests that have one: Stripe, Paynow web), the expiry (`2026-12-07 15:00
/// UTC`) and the request id.
pub const PLACEHOLDERS: [&str; 4] = ["{amount}", "{link}", "{expires}", "{reference}"];

/// Currencies without minor units, and with three decimals, as Stripe counts them (every
/// other currency has two).
const ZERO_DECIMAL: [&str; 16] = [
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF",
];
const THREE_DECIMAL: [&str; 5] = ["BHD", "JOD", "KWD", "OMR", "TND"];

/// An amount in minor units as people read it: `USD 150.00`, `JPY 1500`, `KWD 1.250`.
pub fn display_amount(amount_minor: i64, currency: &str) -> String {
    let (sign, units) = (if amount_minor < 0 { "-" } else { "" }, amount_minor.unsigned_abs());
    if ZERO_DECIMAL.contains(&currency) {
        format!("{currency} {sign}{units}")
    } else if THREE_DECIMAL.contains(&currency) {
        format!("{currency} {sign}{}.{:03}", units / 1_000, units % 1_000)
    } else {
        format!("{currency} {sign}{}.{:02}", units / 100, units % 100)
    }
}

/// `parameters` with the placeholders filled from the request.
fn fill(parameters: &[String], request_id: &str, request: &RequestPayment, payment_url: Option<&str>) -> Vec<String> {
    let amount = display_amount(request.amount_minor, &request.currency);
    let expires = request.expires_at.format("%Y-%m-%d %H:%M UTC").to_string();
    parameters
        .iter()
        .map(|p| {
            p.replace("{amount}", &amount)
                .replace("{link}", payment_url.unwrap_or_default())
                .replace("{expires}", &expires)
                .replace("{reference}", request_id)
        })
        .collect()
}

/// A request as it stands after asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestReceipt {
    pub request_id: String,
    pub status: PaymentRequestStatus,
    /// The provider's id for the initiation, once it accepted it.
    pub provider_request_id: Option<String>,
    /// The page the customer pays on (Stripe), once the provider gave it.
    pub payment_url: Option<String>,
}

impl RequestReceipt {
    fn of(request_id: &str, state: &PaymentRequest) -> Self {
        Self {
            request_id: request_id.to_string(),
            status: state.status(),
            provider_request_id: state.provider_request_id().map(str::to_string),
            payment_url: state.payment_url().map(str::to_string),
        }
    }
}

/// How a recorded request is initiated: what each provider needs, checked before anything is
/// recorded.
enum Initiation {
    Mpesa {
        phone: String,
        daraja: mpesa::DarajaCredentials,
        secret: String,
    },
    Stripe {
        secret_key: String,
    },
    Paynow {
        integration: paynow::Integration,
        /// Express: (local number, `ecocash`/`onemoney`).
        mobile: Option<(String, &'static str)>,
    },
}

/// The payment request `<tenant>:<local_id>` as it stands (default when never requested).
pub async fn load_request(pool: &PgPool, tenant: &TenantId, local_id: &str) -> Result<PaymentRequest, CommandError> {
    load(pool, tenant, local_id).await
}

/// The request the provider's initiation id belongs to.
async fn find_request(
    pool: &PgPool,
    tenant: &TenantId,
    provider: PaymentProvider,
    provider_request_id: &str,
) -> Result<Option<String>, CommandError> {
    Ok(sqlx::query_scalar(
        "SELECT request_id FROM payment_request_refs
          WHERE tenant_id = $1 AND provider = $2 AND provider_request_id = $3",
    )
    .bind(tenant.as_str())
    .bind(provider.as_str())
    .bind(provider_request_id)
    .fetch_optional(pool)
    .await?)
}

/// Claims the initiation of a request for 90 s: false while another caller holds it.
async fn claim_initiation(pool: &PgPool, tenant: &TenantId, request_id: &str) -> Result<bool, CommandError> {
    let claimed: Option<i32> = sqlx::query_scalar(
        "INSERT INTO payment_request_initiations (tenant_id, request_id, until)
         VALUES ($1, $2, now() + interval '90 seconds')
         ON CONFLICT (tenant_id, request_id) DO UPDATE SET until = EXCLUDED.until
          WHERE payment_request_initiations.until < now()
         RETURNING 1",
    )
    .bind(tenant.as_str())
    .bind(request_id)
    .fetch_optional(pool)
    .await?;
    Ok(claimed.is_some())
}

/// Ends a claim (best effort: a claim left behind ends by itself after 90 s).
async fn release_initiation(pool: &PgPool, tenant: &TenantId, request_id: &str) {
    let released = sqlx::query("DELETE FROM payment_request_initiations WHERE tenant_id = $1 AND request_id = $2")
        .bind(tenant.as_str())
        .bind(request_id)
        .execute(pool)
        .await;
    if let Err(e) = released {
        tracing::warn!(tenant.id = %tenant, payment_request.id = %request_id, error = %e, "an initiation claim was not released; it ends by itself");
    }
}

/// A callback that paid nothing, kept for finance (a repeat counts another delivery).
#[derive(Debug, Clone)]
pub struct Refusal<'a> {
    pub provider: PaymentProvider,
    pub provider_request_id: &'a str,
    pub provider_reference: &'a str,
    pub request_id: Option<&'a str>,
    pub reason: &'a str,
    pub amount_minor: Option<i64>,
    pub currency: Option<&'a str>,
}

async fn keep_refusal(pool: &PgPool, tenant: &TenantId, refusal: &Refusal<'_>) -> Result<(), CommandError> {
    sqlx::query(
        "INSERT INTO payment_callback_refusals
                (tenant_id, provider, provider_request_id, provider_reference, request_id, reason, amount_minor, currency)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (tenant_id, provider, provider_request_id, provider_reference) DO UPDATE
            SET deliveries = payment_callback_refusals.deliveries + 1, last_seen_at = now()",
    )
    .bind(tenant.as_str())
    .bind(refusal.provider.as_str())
    .bind(refusal.provider_request_id)
    .bind(refusal.provider_reference)
    .bind(refusal.request_id)
    .bind(refusal.reason)
    .bind(refusal.amount_minor)
    .bind(refusal.currency)
    .execute(pool)
    .await?;
    tracing::warn!(
        payment.provider = refusal.provider.as_str(),
        refusal.reason = refusal.reason,
        "payment callback refused and kept for finance"
    );
    Ok(())
}

/// A refused callback, as finance lists it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RefusedCallback {
    pub provider: String,
    pub provider_request_id: String,
    pub provider_reference: String,
    pub request_id: Option<String>,
    pub reason: String,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub deliveries: i32,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

impl RefusedCallback {
    /// What orders refusals seen at the same time: provider, request id and reference, joined
    /// by U+001F (a character none of them holds).
    pub fn key(&self) -> String {
        format!(
            "{}\u{1f}{}\u{1f}{}",
            self.provider, self.provider_request_id, self.provider_reference
        )
    }
}

/// A tenant's refused callbacks, the most recent first: at most `limit`, after `before` (the
/// `last_seen_at` and [`RefusedCallback::key`] of the last one of the previous page).
pub async fn refused_callbacks(
    pool: &PgPool,
    tenant: &TenantId,
    before: Option<(DateTime<Utc>, String)>,
    limit: i64,
) -> Result<Vec<RefusedCallback>, CommandError> {
    let (before_at, before_key) = before.unzip();
    Ok(sqlx::query_as(
        "SELECT provider, provider_request_id, provider_reference, request_id, reason, amount_minor, currency,
                deliveries, first_seen_at, last_seen_at
           FROM payment_callback_refusals
          WHERE tenant_id = $1
            AND ($2::timestamptz IS NULL
                 OR (last_seen_at, provider || chr(31) || provider_request_id || chr(31) || provider_reference)
                    < ($2, $3))
          ORDER BY last_seen_at DESC, provider || chr(31) || provider_request_id || chr(31) || provider_reference DESC
          LIMIT $4",
    )
    .bind(tenant.as_str())
    .bind(before_at)
    .bind(before_key)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// What the customer is shown about a request (no personal data).
fn description_of(target: &PaymentTarget) -> String {
    match target {
        PaymentTarget::Order { order_id } => format!("Order {order_id}"),
        PaymentTarget::Wallet { .. } => "Token top-up".to_string(),
        PaymentTarget::Free { description } => description.clone(),
    }
}

fn invalid(message: impl Into<String>) -> CallbackError {
    CallbackError::Command(CommandError::InvalidInput(message.into()))
}

impl PaymentIntake {
    /// Records a payment request and initiates it with its provider (see the module docs).
    pub async fn request_payment(
        &self,
        new: NewPaymentRequest,
        metadata: &CommandMetadata,
    ) -> Result<RequestReceipt, CallbackError> {
        let tenant = &metadata.tenant_id;
        if new.idempotency_key.trim().is_empty() || new.idempotency_key.len() > 200 {
            return Err(invalid("the idempotency key must have 1 to 200 characters"));
        }
        // Everything the initiation needs is checked before anything is recorded.
        let initiation = match new.provider {
            PaymentProvider::Mpesa => {
                let contact_id = new
                    .contact_id
                    .as_deref()
                    .ok_or_else(|| invalid("an M-Pesa request needs the customer's contact (contactId)"))?;
                let phone = self.mpesa_phone(tenant, contact_id).await?;
                let (daraja, secret) = credentials::mpesa_for_push(self.commands.pool(), &self.master, tenant).await?;
                Initiation::Mpesa { phone, daraja, secret }
            }
            PaymentProvider::Stripe => {
                if let Some(contact_id) = new.contact_id.as_deref() {
                    self.registered_contact(tenant, contact_id).await?;
                }
                let secret_key = credentials::stripe_secret_key(self.commands.pool(), &self.master, tenant).await?;
                Initiation::Stripe { secret_key }
            }
            PaymentProvider::Paynow => {
                let integration = credentials::paynow_integration(self.commands.pool(), &self.master, tenant).await?;
                if new.currency != integration.currency {
                    return Err(CallbackError::Command(CommandError::Rejected(
                        PaymentRequestError::ProviderCurrency {
                            provider: "paynow",
                            expected: integration.currency.clone(),
                            currency: new.currency.clone(),
                        }
                        .into(),
                    )));
                }
                let mobile = match new.mobile_money {
                    Some(method) => {
                        let contact_id = new.contact_id.as_deref().ok_or_else(|| {
                            invalid("a mobile money request needs the customer's contact (contactId)")
                        })?;
                        if integration.auth_email.is_none() {
                            // Paynow requires `authemail` for Express: without the merchant's
                            // e-mail configured, Express is not set up for this tenant.
                            return Err(CallbackError::NotConfigured {
                                provider: "paynow express (authEmail)",
                            });
                        }
                        Some((self.zimbabwe_phone(tenant, contact_id).await?, method.as_str()))
                    }
                    None => {
                        if let Some(contact_id) = new.contact_id.as_deref() {
                            self.registered_contact(tenant, contact_id).await?;
                        }
                        None
                    }
                };
                Initiation::Paynow { integration, mobile }
            }
            other => {
                return Err(CallbackError::Command(CommandError::Rejected(
                    chronicle_domain::payment_request::PaymentRequestError::NotRequestable {
                        provider: other.as_str(),
                    }
                    .into(),
                )))
            }
        };
        if let Some(message) = &new.message {
            // A retry of a request already sent on WhatsApp answers it as it stands, whatever
            // became of the template since.
            let existing = load_request(
                self.commands.pool(),
                tenant,
                &payment_request_local_id(&new.idempotency_key),
            )
            .await?;
            if existing.message().is_none() {
                Box::pin(self.check_message(&new, message, metadata)).await?;
            }
        }
        let request_id = payment_request_local_id(&new.idempotency_key);
        let by = by_of(metadata);
        let command = PaymentRequestCommand::Request(RequestPayment {
            target: new.target,
            provider: new.provider,
            amount_minor: new.amount_minor,
            currency: new.currency,
            expires_at: new.expires_at,
            contact_id: new.contact_id,
            mobile_money: new.mobile_money,
            by,
            at: Utc::now(),
        });
        self.commands.payment_request(&request_id, command, metadata).await?;
        // One initiation at a time per request: two calls with the same key (a double click)
        // must not both reach the provider (a Paynow Express or M-Pesa prompt twice). A lease
        // row, committed at once, marks the initiation in flight (no connection is held across
        // the provider's call); a second caller waits for it, then answers the request as the
        // first left it. A lease outlives a crashed caller by 90 s at most.
        let waited = std::time::Instant::now();
        let state = loop {
            let state = load_request(self.commands.pool(), tenant, &request_id).await?;
            if state.status() != PaymentRequestStatus::Requested {
                break state;
            }
            if claim_initiation(self.commands.pool(), tenant, &request_id).await? {
                // Decided by the first caller between the read and the claim: nothing to do.
                let state = load_request(self.commands.pool(), tenant, &request_id).await?;
                if state.status() == PaymentRequestStatus::Requested {
                    let initiated = match &initiation {
                        Initiation::Mpesa { phone, daraja, secret } => {
                            self.push_mpesa(tenant, &request_id, &state, phone, daraja, secret, metadata)
                                .await
                        }
                        Initiation::Stripe { secret_key } => {
                            self.checkout_stripe(tenant, &request_id, &state, secret_key, metadata)
                                .await
                        }
                        Initiation::Paynow { integration, mobile } => {
                            self.initiate_paynow(tenant, &request_id, &state, integration, mobile.as_ref(), metadata)
                                .await
                        }
                    };
                    release_initiation(self.commands.pool(), tenant, &request_id).await;
                    initiated?;
                }
                break load_request(self.commands.pool(), tenant, &request_id).await?;
            }
            if waited.elapsed() > std::time::Duration::from_secs(30) {
                return Err(CallbackError::Upstream(
                    "an initiation of this request is still in progress: call again in a moment".into(),
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        };
        if let Some(message) = &new.message {
            if state.status() == PaymentRequestStatus::Sent && state.message().is_none() {
                Box::pin(self.send_message(tenant, &request_id, &state, message, metadata)).await?;
            }
        }
        let state = load_request(self.commands.pool(), tenant, &request_id).await?;
        Ok(RequestReceipt::of(&request_id, &state))
    }

    /// Everything a request message needs, checked before anything is recorded: a contact
    /// with a conversation, not erased; a `{link}` only for a request with a payment page; an
    /// approved template its parameters fill; a reminder within 1 to 43,200 minutes.
    async fn check_message(
        &self,
        new: &NewPaymentRequest,
        message: &NewRequestMessage,
        metadata: &CommandMetadata,
    ) -> Result<(), CallbackError> {
        let contact_id = new
            .contact_id
            .as_deref()
            .ok_or_else(|| invalid("a request sent on WhatsApp needs the customer's contact (contactId)"))?;
        let has_page = match new.provider {
            PaymentProvider::Stripe => true,
            PaymentProvider::Paynow => new.mobile_money.is_none(),
            _ => false,
        };
        if !has_page && message.parameters.iter().any(|p| p.contains("{link}")) {
            return Err(invalid(
                "this request has no payment page (the customer gets a prompt on their phone): {link} cannot be filled",
            ));
        }
        if message
            .remind_before
            .is_some_and(|d| d <= chrono::Duration::zero() || d > chrono::Duration::days(30))
        {
            return Err(invalid(
                "a reminder comes between 1 minute and 30 days before the expiry",
            ));
        }
        let commands = &self.commands;
        crate::outbound::require_conversation(commands, metadata, contact_id).await?;
        crate::outbound::require_not_erased(commands, metadata, contact_id).await?;
        {
            use chronicle_domain::template::{TemplateError, TemplateStatus};
            let template = commands
                .load_template(
                    &metadata.tenant_id,
                    &format!("tpl_{}_{}", message.template, message.language),
                )
                .await?;
            let refused = match template.status() {
                Some(TemplateStatus::Approved) => None,
                None => Some(TemplateError::UnknownTemplate {
                    name: message.template.clone(),
                    language: message.language.clone(),
                }),
                Some(_) => Some(TemplateError::TemplateNotApproved),
            };
            if let Some(e) = refused {
                return Err(CallbackError::Command(CommandError::Rejected(e.into())));
            }
        }
        crate::outbound::check_parameters(
            commands,
            metadata,
            &message.template,
            &message.language,
            &message.parameters,
            None,
        )
        .await?;
        Ok(())
    }

    /// Sends a sent request to its customer on WhatsApp (metered like any send: charged
    /// first, refunded if the conversation or WhatsApp refuses it), then records it on the
    /// request. The message's key is the request's, so a retry sends and charges nothing twice.
    async fn send_message(
        &self,
        tenant: &TenantId,
        request_id: &str,
        state: &PaymentRequest,
        message: &NewRequestMessage,
        metadata: &CommandMetadata,
    ) -> Result<(), CallbackError> {
        let (Some(request), Some(contact_id)) = (state.request(), state.request().and_then(|r| r.contact_id.clone()))
        else {
            return Err(invalid("a request sent on WhatsApp needs the customer's contact"));
        };
        let parameters = fill(&message.parameters, request_id, request, state.payment_url());
        let keys = KeyStore::new(self.commands.pool().clone(), self.master.clone());
        let key = keys.key_for(tenant, &contact_id).await?;
        let written = serde_json::to_string(&message.parameters)
            .map_err(|e| CallbackError::Command(CommandError::InvalidInput(e.to_string())))?;
        let sealed = key.seal(tenant, &contact_id, &written, &mut rand::rngs::OsRng);
        Box::pin(crate::outbound::send_metered(
            &self.commands,
            &keys,
            &contact_id,
            &format!("payment-request:{request_id}"),
            crate::outbound::Outgoing::Template {
                name: message.template.clone(),
                language: message.language.clone(),
                parameters,
                header: None,
            },
            metadata,
        ))
        .await?;
        let now = Utc::now();
        let remind_at = message
            .remind_before
            .map(|before| request.expires_at - before)
            .filter(|at| *at > now);
        let command = PaymentRequestCommand::RecordMessaged {
            message: chronicle_domain::payment_request::RequestMessage {
                template: message.template.clone(),
                language: message.language.clone(),
                parameters: sealed,
                remind_at,
            },
            at: now,
        };
        match self.commands.payment_request(request_id, command, metadata).await {
            // Closed in between (paid already): the message went out; nothing to remind.
            Ok(_) | Err(CommandError::Rejected(_)) => {}
            Err(e) => return Err(e.into()),
        }
        tracing::info!(tenant.id = %tenant, payment_request.id = %request_id, "payment request sent on WhatsApp");
        Ok(())
    }

    /// The reminder of an open request whose reminder is due (the sweeper's pass): the same
    /// template again, metered, under its own key; then recorded once. Answers whether it went.
    pub async fn remind(&self, tenant: &TenantId, request_id: &str, correlation: &str) -> Result<bool, CallbackError> {
        let state = load_request(self.commands.pool(), tenant, request_id).await?;
        let now = Utc::now();
        let (Some(request), Some(message)) = (state.request(), state.message()) else {
            return Ok(false);
        };
        let due = message.remind_at.is_some_and(|at| at <= now) && now < request.expires_at;
        if !due || state.reminded() || state.status() != PaymentRequestStatus::Sent {
            return Ok(false);
        }
        let Some(contact_id) = request.contact_id.clone() else {
            return Ok(false);
        };
        let meta = super::metadata(
            tenant,
            "payment-request-reminder",
            correlation,
            format!("payment-request-reminder:{request_id}"),
        );
        let keys = KeyStore::new(self.commands.pool().clone(), self.master.clone());
        // The contact's existing key only: an erased contact's key is gone and stays gone.
        let written: Option<Vec<String>> = keys
            .existing(tenant, &contact_id)
            .await?
            .and_then(|key| key.open(tenant, &contact_id, &message.parameters).ok())
            .and_then(|json| serde_json::from_str(&json).ok());
        let Some(written) = written else {
            // The contact was erased since (its key shredded): no reminder, recorded as done.
            tracing::info!(tenant.id = %tenant, payment_request.id = %request_id, "payment request reminder not sent: its parameters can no longer be opened");
            return self.reminded(request_id, now, &meta).await;
        };
        let parameters = fill(&written, request_id, request, state.payment_url());
        let sent = Box::pin(crate::outbound::send_metered(
            &self.commands,
            &keys,
            &contact_id,
            &format!("payment-request-reminder:{request_id}"),
            crate::outbound::Outgoing::Template {
                name: message.template.clone(),
                language: message.language.clone(),
                parameters,
                header: None,
            },
            &meta,
        ))
        .await;
        if let Err(e) = sent {
            match e {
                // Refused for good (opted out, erased, the template withdrawn, no tokens):
                // recorded as done, so it is not tried every pass; the refusal is logged.
                CommandError::Rejected(_) | CommandError::InvalidInput(_) => {
                    tracing::info!(tenant.id = %tenant, payment_request.id = %request_id, error = %e, "payment request reminder refused");
                }
                e => return Err(e.into()),
            }
        }
        self.reminded(request_id, now, &meta).await
    }

    /// Records the reminder as done (a request closed in between records nothing).
    async fn reminded(
        &self,
        request_id: &str,
        now: DateTime<Utc>,
        meta: &CommandMetadata,
    ) -> Result<bool, CallbackError> {
        match self
            .commands
            .payment_request(request_id, PaymentRequestCommand::RecordReminded { at: now }, meta)
            .await
        {
            Ok(_) | Err(CommandError::Rejected(_)) => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    /// A registered (not erased) contact of the tenant.
    async fn registered_contact(&self, tenant: &TenantId, contact_id: &str) -> Result<Contact, CallbackError> {
        let contact: Contact = load(self.commands.pool(), tenant, contact_id).await?;
        if !contact.is_registered() {
            return Err(invalid(format!(
                "{contact_id:?} is no contact of this tenant (or was erased)"
            )));
        }
        Ok(contact)
    }

    /// The number an M-Pesa prompt for `contact_id` goes to: digits with the country code,
    /// Kenyan only. Personal data: never logged.
    async fn mpesa_phone(&self, tenant: &TenantId, contact_id: &str) -> Result<String, CallbackError> {
        let digits = self.contact_phone_digits(tenant, contact_id).await?;
        if !digits.starts_with("254") || digits.len() != 12 {
            return Err(invalid("M-Pesa prompts go to Kenyan numbers (+254…) only"));
        }
        Ok(digits)
    }

    /// The number a Paynow Express prompt for `contact_id` goes to, as Paynow takes it: the
    /// local form (`07…`) of a Zimbabwean number. Personal data: never logged.
    async fn zimbabwe_phone(&self, tenant: &TenantId, contact_id: &str) -> Result<String, CallbackError> {
        let digits = self.contact_phone_digits(tenant, contact_id).await?;
        match digits.strip_prefix("263") {
            Some(local) if local.len() == 9 && local.starts_with('7') => Ok(format!("0{local}")),
            _ => Err(invalid(
                "EcoCash and OneMoney prompts go to Zimbabwean mobile numbers (+2637…) only",
            )),
        }
    }

    /// A contact's phone number as digits with the country code. Personal data: never logged.
    async fn contact_phone_digits(&self, tenant: &TenantId, contact_id: &str) -> Result<String, CallbackError> {
        let contact = self.registered_contact(tenant, contact_id).await?;
        let Some(sealed) = contact.phone() else {
            return Err(invalid("the contact has no phone number to prompt"));
        };
        let keys = KeyStore::new(self.commands.pool().clone(), self.master.clone());
        let key = keys.key_for(tenant, contact_id).await?;
        let phone = key
            .open(tenant, contact_id, sealed)
            .map_err(|_| invalid("the contact's phone number cannot be opened"))?;
        let digits = phone.trim_start_matches('+').to_string();
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("the contact's phone number is not a number"));
        }
        Ok(digits)
    }

    /// The Paynow initiation of a recorded request: a web checkout, or an Express prompt.
    async fn initiate_paynow(
        &self,
        tenant: &TenantId,
        request_id: &str,
        state: &PaymentRequest,
        integration: &paynow::Integration,
        mobile: Option<&(String, &'static str)>,
        metadata: &CommandMetadata,
    ) -> Result<(), CallbackError> {
        let Some(request) = state.request() else {
            return Err(CallbackError::Command(CommandError::Unexpected(
                "a requested payment request without its request".into(),
            )));
        };
        let public = self.config.public_url.trim_end_matches('/');
        let return_url = format!("{public}/payments/done");
        let result_url = format!("{public}/webhooks/payments/{tenant}/paynow");
        let initiate = paynow::Initiate {
            reference: request_id,
            amount_minor: request.amount_minor,
            additional_info: &description_of(&request.target),
            return_url: &return_url,
            result_url: &result_url,
            auth_email: mobile.and(integration.auth_email.as_deref()),
            mobile: mobile.map(|(phone, method)| (phone.as_str(), *method)),
        };
        let answered = paynow::initiate(&self.client, &self.config.paynow_base_url, integration, &initiate)
            .await
            .map(|initiated| (initiated.poll_url, initiated.browser_url));
        self.conclude(tenant, request_id, PaymentProvider::Paynow, answered, metadata)
            .await
    }

    /// A Paynow status (a hash-checked callback confirmed by a poll, or the watcher's own poll)
    /// for the request its reference names: paid → the request decides, as for every provider;
    /// cancelled or failed → the request fails; anything else → nothing yet.
    /// `polled_url` is the poll URL Paynow answered on (its transaction).
    pub(super) async fn paynow_status(
        &self,
        tenant: &TenantId,
        polled: paynow::PaynowStatus,
        polled_url: &str,
        currency: String,
        correlation: &str,
    ) -> Result<CallbackOutcome, CallbackError> {
        let pool = self.commands.pool();
        let request_id = polled.merchant_reference.clone();
        let state = load_request(pool, tenant, &request_id).await?;
        let ours = state.request().is_some_and(|r| r.provider == PaymentProvider::Paynow);
        if !ours {
            if !polled.is_paid() {
                return Ok(CallbackOutcome::Ignored {
                    reason: format!("Paynow reports the payment {}", polled.status),
                });
            }
            keep_refusal(
                pool,
                tenant,
                &Refusal {
                    provider: PaymentProvider::Paynow,
                    provider_request_id: polled_url,
                    provider_reference: &polled.paynow_reference,
                    request_id: None,
                    reason: "NO_PAYMENT_REQUEST",
                    amount_minor: Some(polled.amount_minor),
                    currency: Some(&currency),
                },
            )
            .await?;
            return Ok(CallbackOutcome::Refused {
                reason: "NO_PAYMENT_REQUEST".into(),
                request_id: None,
            });
        }
        let meta = super::metadata(
            tenant,
            "payments:paynow",
            correlation,
            format!("paynow-status:{}", polled.paynow_reference),
        );
        if !polled.is_paid() {
            let status = polled.status.trim().to_ascii_lowercase();
            // Only the request's own transaction ends it: another one with its reference (a
            // prompt sent again after a lost answer) declined says nothing about this one.
            let current = state.provider_request_id() == Some(polled_url);
            if current && paynow::NOT_PAID_STATUSES.contains(&status.as_str()) {
                let command = PaymentRequestCommand::RecordNotPaid {
                    result_code: status.replace(' ', "_"),
                    at: Utc::now(),
                };
                match self.commands.payment_request(&request_id, command, &meta).await {
                    Ok(_) | Err(CommandError::Rejected(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(CallbackOutcome::Ignored {
                reason: format!("Paynow reports the payment {}", polled.status),
            });
        }
        self.settle_request(
            tenant,
            &request_id,
            polled_url,
            PaymentProvider::Paynow,
            PaidCallback {
                provider_reference: polled.paynow_reference,
                amount_minor: polled.amount_minor,
                currency,
                at: Utc::now(),
            },
            &meta,
            correlation,
        )
        .await
    }

    /// The watcher's pass over one Paynow request: an open (or just expired) one is polled at
    /// its stored poll URL, so a payment whose callback never came still pays (or, paid after
    /// the expiry, is kept for finance) and a declined prompt fails the request; a paid one
    /// whose payment is not recorded yet (a step failed after the request decided) is recorded
    /// again, which is idempotent.
    pub async fn poll_paynow_request(
        &self,
        tenant: &TenantId,
        request_id: &str,
        correlation: &str,
    ) -> Result<CallbackOutcome, CallbackError> {
        let state = load_request(self.commands.pool(), tenant, request_id).await?;
        let (Some(request), Some(poll_url)) = (state.request(), state.provider_request_id()) else {
            return Ok(CallbackOutcome::Ignored {
                reason: "the request was never sent".into(),
            });
        };
        if request.provider != PaymentProvider::Paynow {
            return Ok(CallbackOutcome::Ignored {
                reason: "not a Paynow request".into(),
            });
        }
        match (state.status(), state.paid_reference()) {
            (PaymentRequestStatus::Paid, Some(reference)) => {
                let payment = VerifiedPayment {
                    provider: PaymentProvider::Paynow,
                    reference: reference.to_string(),
                    merchant_reference: request.target.merchant_reference(request_id),
                    amount_minor: request.amount_minor,
                    currency: request.currency.clone(),
                };
                return self.record_as(tenant, payment, correlation, None).await;
            }
            (PaymentRequestStatus::Sent | PaymentRequestStatus::Expired, _) => {}
            _ => {
                return Ok(CallbackOutcome::Ignored {
                    reason: "the request is closed".into(),
                })
            }
        }
        let integration = credentials::paynow_integration(self.commands.pool(), &self.master, tenant).await?;
        let url = paynow::checked_poll_url(poll_url, &self.config.paynow_base_url)?;
        let polled_url = url.to_string();
        let polled = paynow::poll(&self.client, url, &integration.key).await?;
        if polled.merchant_reference != request_id {
            return Err(CallbackError::Malformed(
                "Paynow's poll answered for another reference".into(),
            ));
        }
        self.paynow_status(tenant, polled, &polled_url, integration.currency, correlation)
            .await
    }

    /// The M-Pesa STK push of a recorded request.
    #[allow(clippy::too_many_arguments)]
    async fn push_mpesa(
        &self,
        tenant: &TenantId,
        request_id: &str,
        state: &PaymentRequest,
        phone: &str,
        daraja: &mpesa::DarajaCredentials,
        secret: &str,
        metadata: &CommandMetadata,
    ) -> Result<(), CallbackError> {
        let Some(request) = state.request() else {
            return Err(CallbackError::Command(CommandError::Unexpected(
                "a requested payment request without its request".into(),
            )));
        };
        let callback_url = format!(
            "{}/webhooks/payments/{tenant}/mpesa/{secret}",
            self.config.public_url.trim_end_matches('/')
        );
        let push = mpesa::StkPush {
            phone,
            amount: request.amount_minor / 100,
            callback_url: &callback_url,
            account_reference: request_id.trim_start_matches("preq_"),
            description: "Payment",
        };
        let answered = mpesa::stk_push(&self.client, &self.config.daraja_base_url, daraja, &push, Utc::now())
            .await
            .map(|checkout_request_id| (checkout_request_id, None));
        self.conclude(tenant, request_id, PaymentProvider::Mpesa, answered, metadata)
            .await
    }

    /// Records what the provider answered to an initiation (its id and payment page): accepted (see
    /// [`Self::record_sent`]), refused (the request fails with `<provider>:<its code>`), or
    /// unknown (the request stays requested; `UNAVAILABLE`).
    async fn conclude(
        &self,
        tenant: &TenantId,
        request_id: &str,
        provider: PaymentProvider,
        answered: Result<(String, Option<String>), InitiationError>,
        metadata: &CommandMetadata,
    ) -> Result<(), CallbackError> {
        match answered {
            Ok((provider_request_id, payment_url)) => {
                self.record_sent(tenant, request_id, provider, provider_request_id, payment_url, metadata)
                    .await
            }
            Err(InitiationError::Refused { code }) => {
                self.initiation_refused(request_id, provider, &code, metadata).await
            }
            Err(InitiationError::Unavailable(reason)) => Err(CallbackError::Upstream(reason)),
        }
    }

    /// The provider accepted the initiation: its id goes into `payment_request_refs` first (so
    /// a callback that arrives at once finds its request), then the request records it.
    async fn record_sent(
        &self,
        tenant: &TenantId,
        request_id: &str,
        provider: PaymentProvider,
        provider_request_id: String,
        payment_url: Option<String>,
        metadata: &CommandMetadata,
    ) -> Result<(), CallbackError> {
        sqlx::query(
            "INSERT INTO payment_request_refs (tenant_id, provider, provider_request_id, request_id)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(provider.as_str())
        .bind(&provider_request_id)
        .bind(request_id)
        .execute(self.commands.pool())
        .await
        .map_err(|e| CallbackError::Command(e.into()))?;
        let sent = PaymentRequestCommand::RecordSent {
            provider_request_id,
            payment_url,
            at: Utc::now(),
        };
        self.commands.payment_request(request_id, sent, metadata).await?;
        Ok(())
    }

    /// The provider refused the initiation: the request records why (`<provider>:<its code>`).
    async fn initiation_refused(
        &self,
        request_id: &str,
        provider: PaymentProvider,
        code: &str,
        metadata: &CommandMetadata,
    ) -> Result<(), CallbackError> {
        let failed = PaymentRequestCommand::RecordInitiationFailed {
            reason: format!("{}:{code}", provider.as_str()),
            at: Utc::now(),
        };
        self.commands.payment_request(request_id, failed, metadata).await?;
        Ok(())
    }

    /// The Stripe Checkout Session of a recorded request.
    async fn checkout_stripe(
        &self,
        tenant: &TenantId,
        request_id: &str,
        state: &PaymentRequest,
        secret_key: &str,
        metadata: &CommandMetadata,
    ) -> Result<(), CallbackError> {
        let Some(request) = state.request() else {
            return Err(CallbackError::Command(CommandError::Unexpected(
                "a requested payment request without its request".into(),
            )));
        };
        let success_url = format!("{}/payments/done", self.config.public_url.trim_end_matches('/'));
        let description = description_of(&request.target);
        let checkout = stripe::CheckoutRequest {
            tenant: tenant.as_str(),
            request_id,
            amount_minor: request.amount_minor,
            currency: &request.currency,
            description: &description,
            success_url: &success_url,
            expires_at: request.expires_at,
            requested_at: request.at,
        };
        let answered =
            stripe::create_checkout_session(&self.client, &self.config.stripe_base_url, secret_key, &checkout)
                .await
                .map(|session| (session.session_id, Some(session.url)));
        self.conclude(tenant, request_id, PaymentProvider::Stripe, answered, metadata)
            .await
    }

    /// A Stripe payment that names a payment request (a verified `checkout.session.completed`
    /// or `payment_intent.succeeded`): matched to the request by the session it belongs to, or
    /// by the request id in the intent's metadata; then the request decides (see the module
    /// docs). Both events of one payment carry the same reference and count once.
    pub(super) async fn stripe_callback(
        &self,
        tenant: &TenantId,
        paid: stripe::RequestPayment,
        correlation: &str,
    ) -> Result<CallbackOutcome, CallbackError> {
        let pool = self.commands.pool();
        if paid.tenant_id.as_deref().is_some_and(|named| named != tenant.as_str()) {
            // Another tenant's payment on a Stripe account they share: theirs to count.
            return Ok(CallbackOutcome::Ignored {
                reason: "the payment belongs to another tenant".into(),
            });
        }
        let request_id = match &paid.session_id {
            Some(session) => find_request(pool, tenant, PaymentProvider::Stripe, session).await?,
            None if chronicle_domain::payment_request::is_payment_request_id(&paid.request_id) => {
                let state = load_request(pool, tenant, &paid.request_id).await?;
                state
                    .request()
                    .filter(|r| r.provider == PaymentProvider::Stripe)
                    .map(|_| paid.request_id.clone())
            }
            None => None,
        };
        let provider_request_id = paid.session_id.clone().unwrap_or_else(|| paid.request_id.clone());
        let Some(request_id) = request_id else {
            keep_refusal(
                pool,
                tenant,
                &Refusal {
                    provider: PaymentProvider::Stripe,
                    provider_request_id: &provider_request_id,
                    provider_reference: &paid.reference,
                    request_id: None,
                    reason: "NO_PAYMENT_REQUEST",
                    amount_minor: Some(paid.amount_minor),
                    currency: Some(&paid.currency),
                },
            )
            .await?;
            return Ok(CallbackOutcome::Refused {
                reason: "NO_PAYMENT_REQUEST".into(),
                request_id: None,
            });
        };
        let meta = super::metadata(
            tenant,
            "payments:stripe",
            correlation,
            format!("stripe-payment:{}", paid.reference),
        );
        let session = load_request(pool, tenant, &request_id)
            .await?
            .provider_request_id()
            .map_or(provider_request_id, str::to_string);
        self.settle_request(
            tenant,
            &request_id,
            &session,
            PaymentProvider::Stripe,
            PaidCallback {
                provider_reference: paid.reference,
                amount_minor: paid.amount_minor,
                currency: paid.currency,
                // When Stripe saw the payment: a delivery delayed by an outage still counts.
                at: paid.at.unwrap_or_else(Utc::now),
            },
            &meta,
            correlation,
        )
        .await
    }

    /// Staff cancel an open request.
    pub async fn cancel_request(
        &self,
        request_id: &str,
        metadata: &CommandMetadata,
    ) -> Result<RequestReceipt, CommandError> {
        let by = by_of(metadata);
        let command = PaymentRequestCommand::Cancel { by, at: Utc::now() };
        self.commands.payment_request(request_id, command, metadata).await?;
        let state = load_request(self.commands.pool(), &metadata.tenant_id, request_id).await?;
        self.close_with_provider(&metadata.tenant_id, &state).await;
        Ok(RequestReceipt::of(request_id, &state))
    }

    /// [`Self::close_with_provider`] for a request the expiry sweeper expired.
    pub(super) async fn close_expired_with_provider(&self, tenant: &str, request_id: &str) {
        let Ok(tenant) = TenantId::parse(tenant) else {
            return;
        };
        match load_request(self.commands.pool(), &tenant, request_id).await {
            Ok(state) => self.close_with_provider(&tenant, &state).await,
            Err(e) => {
                tracing::warn!(tenant.id = %tenant, error = %e, "an expired request could not be read to close it with its provider")
            }
        }
    }

    /// Tells the provider a cancelled or expired request's page no longer takes payments,
    /// where it can be told (Stripe: the Checkout Session is expired; an M-Pesa prompt times
    /// out on the phone by itself; Paynow has no cancellation). Best effort: a failure is
    /// logged, and a payment that still arrives is refused by the request and kept for finance
    /// as `REQUEST_CANCELLED` or `REQUEST_EXPIRED`.
    async fn close_with_provider(&self, tenant: &TenantId, state: &PaymentRequest) {
        let (Some(request), Some(session)) = (state.request(), state.provider_request_id()) else {
            return;
        };
        if request.provider != PaymentProvider::Stripe
            || !matches!(
                state.status(),
                PaymentRequestStatus::Cancelled | PaymentRequestStatus::Expired
            )
        {
            return;
        }
        let outcome = match credentials::stripe_secret_key(self.commands.pool(), &self.master, tenant).await {
            Ok(key) => stripe::expire_checkout_session(&self.client, &self.config.stripe_base_url, &key, session)
                .await
                .map_err(|e| format!("{e:?}")),
            Err(e) => Err(e.to_string()),
        };
        if let Err(reason) = outcome {
            tracing::warn!(
                tenant.id = %tenant,
                payment.provider = "stripe",
                error = %reason,
                "the closed request's Checkout Session could not be expired; a payment on it is kept for finance"
            );
        }
    }

    /// An M-Pesa STK callback, on the tenant's secret path (see the module docs).
    pub(super) async fn mpesa_callback(
        &self,
        tenant: &TenantId,
        daraja: &mpesa::DarajaCredentials,
        callback: mpesa::StkResult,
        correlation: &str,
    ) -> Result<CallbackOutcome, CallbackError> {
        let pool = self.commands.pool();
        let checkout_request_id = callback.checkout_request_id().to_string();
        let Some(request_id) = find_request(pool, tenant, PaymentProvider::Mpesa, &checkout_request_id).await? else {
            let (reference, amount) = match &callback {
                mpesa::StkResult::Paid {
                    receipt, amount_minor, ..
                } => (receipt.as_str(), Some(*amount_minor)),
                mpesa::StkResult::NotPaid { .. } => ("", None),
            };
            keep_refusal(
                pool,
                tenant,
                &Refusal {
                    provider: PaymentProvider::Mpesa,
                    provider_request_id: &checkout_request_id,
                    provider_reference: reference,
                    request_id: None,
                    reason: "NO_PAYMENT_REQUEST",
                    amount_minor: amount,
                    currency: amount.map(|_| mpesa::CURRENCY),
                },
            )
            .await?;
            return Ok(CallbackOutcome::Refused {
                reason: "NO_PAYMENT_REQUEST".into(),
                request_id: None,
            });
        };
        let meta = super::metadata(
            tenant,
            "payments:mpesa",
            correlation,
            format!("mpesa-callback:{checkout_request_id}"),
        );
        let paid = mpesa::query_paid(
            &self.client,
            &self.config.daraja_base_url,
            daraja,
            &checkout_request_id,
            Utc::now(),
        )
        .await?;
        match callback {
            mpesa::StkResult::NotPaid { result_code, .. } => {
                if !paid {
                    let command = PaymentRequestCommand::RecordNotPaid {
                        result_code: result_code.to_string(),
                        at: Utc::now(),
                    };
                    match self.commands.payment_request(&request_id, command, &meta).await {
                        Ok(_) | Err(CommandError::Rejected(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(CallbackOutcome::Ignored {
                    reason: format!("the STK push ended with ResultCode {result_code}"),
                })
            }
            mpesa::StkResult::Paid {
                receipt, amount_minor, ..
            } => {
                if !paid {
                    return Ok(CallbackOutcome::Ignored {
                        reason: "Daraja does not confirm the STK push as paid".into(),
                    });
                }
                self.settle_request(
                    tenant,
                    &request_id,
                    &checkout_request_id,
                    PaymentProvider::Mpesa,
                    PaidCallback {
                        provider_reference: receipt,
                        amount_minor,
                        currency: mpesa::CURRENCY.to_string(),
                        at: Utc::now(),
                    },
                    &meta,
                    correlation,
                )
                .await
            }
        }
    }

    /// A payment the provider confirmed for the request `request_id`: the request decides, then
    /// the payment is recorded and matched (paid), kept unmatched (paid late or after a
    /// cancellation) or only kept as a refusal.
    #[allow(clippy::too_many_arguments)]
    async fn settle_request(
        &self,
        tenant: &TenantId,
        request_id: &str,
        provider_request_id: &str,
        provider: PaymentProvider,
        paid: PaidCallback,
        meta: &CommandMetadata,
        correlation: &str,
    ) -> Result<CallbackOutcome, CallbackError> {
        let pool = self.commands.pool();
        let reference = paid.provider_reference.clone();
        let (amount_minor, currency) = (paid.amount_minor, paid.currency.clone());
        self.commands
            .payment_request(request_id, PaymentRequestCommand::RecordCallback(paid), meta)
            .await?;
        let state = load_request(pool, tenant, request_id).await?;
        let Some(request) = state.request() else {
            return Err(CallbackError::Command(CommandError::Unexpected(
                "a payment request without its request".into(),
            )));
        };
        let payment = VerifiedPayment {
            provider,
            reference: reference.clone(),
            merchant_reference: request.target.merchant_reference(request_id),
            amount_minor,
            currency: currency.clone(),
        };
        if state.paid_reference() == Some(reference.as_str()) {
            return self.record_as(tenant, payment, correlation, None).await;
        }
        let Some(refusal) = state.refusal_of_reference(&reference) else {
            return Err(CallbackError::Command(CommandError::Unexpected(
                "a callback the request neither paid nor refused".into(),
            )));
        };
        // Money the provider vouches for is kept for finance as an unmatched payment: paid late
        // or after a cancellation, and for Paynow (whose hash-checked poll confirms each
        // transaction) also a second payment of a paid request or a payment of a failed one
        // (a prompt sent again after a lost answer). An M-Pesa callback is only as good as
        // its request: those are kept as refusals, never as payments.
        let vouched = provider == PaymentProvider::Paynow
            && matches!(refusal, CallbackRefusal::AlreadyPaid | CallbackRefusal::RequestFailed);
        if refusal.keeps_payment() || vouched {
            return self.record_as(tenant, payment, correlation, Some(refusal.code())).await;
        }
        keep_refusal(
            pool,
            tenant,
            &Refusal {
                provider,
                provider_request_id,
                provider_reference: &reference,
                request_id: Some(request_id),
                reason: refusal.code(),
                amount_minor: Some(amount_minor),
                currency: Some(&currency),
            },
        )
        .await?;
        Ok(CallbackOutcome::Refused {
            reason: refusal.code().to_string(),
            request_id: Some(request_id.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn amounts_are_shown_with_their_currencys_decimals() {
        assert_eq!(super::display_amount(15_000, "USD"), "USD 150.00");
        assert_eq!(super::display_amount(1_500, "JPY"), "JPY 1500");
        assert_eq!(super::display_amount(1_250, "KWD"), "KWD 1.250");
        assert_eq!(super::display_amount(7, "KES"), "KES 0.07");
    }
}
