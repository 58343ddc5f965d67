//! Payments from provider callbacks: the `payments` connection (filter by status and
//! provider), `unmatchedPayments` (finance's work list), the `paymentRequests` connection
//! (filter by status, provider and target) and `paymentRequest(id)`, the finance mutation `matchPayment`
//! that matches an unmatched payment to an order, and the admin mutation `setPaymentProvider`
//! that sets a tenant's provider credentials (sealed; never readable back).
//!
//! Roles: reading payments: owner, admin, finance, auditor; matching: owner, admin, finance;
//! provider credentials: owner, admin.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, InputObject, Object, SimpleObject};
use chronicle_commands::keystore::KeyStore;
use chronicle_commands::payments::credentials::ProviderCredentials;
use chronicle_commands::payments::mpesa::DarajaCredentials;
use chronicle_commands::payments::requests::{refused_callbacks, NewPaymentRequest, NewRequestMessage, RequestReceipt};
use chronicle_commands::payments::{match_manually, PaymentIntake};
use chronicle_domain::payment_request::PaymentTarget;
use chronicle_projections::payment_requests::{self as requests_model, PaymentRequestRow, RequestFilter};
use chronicle_projections::payments::{get, list, PaymentFilter as ReadFilter, PaymentRow};
use chrono::{DateTime, Utc};

use super::receipt::{receipt, Receipt};
use super::{allowed, commands, connection, connection_with, metadata, page_size, pool, Counted};
use crate::auth::Caller;
use crate::error::{ApiError, IntoGraphql};
use crate::permissions::Permission;

/// Where a payment stands.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum PaymentStatus {
    /// Confirmed by its provider, not yet matched (a moment, or a retried callback).
    Confirmed,
    /// Matched to an order or a wallet top-up, automatically or by finance (`matchPayment`).
    Matched,
    /// Nothing took it: kept for finance.
    Unmatched,
}

impl PaymentStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Matched => "matched",
            Self::Unmatched => "unmatched",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "matched" => Self::Matched,
            "unmatched" => Self::Unmatched,
            _ => Self::Confirmed,
        }
    }
}

/// Who took a payment.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum PaymentProvider {
    /// Paynow: form callbacks verified by their hash and the status poll.
    Paynow,
    /// M-Pesa through Safaricom's Daraja API (STK push and its callbacks).
    Mpesa,
    /// A Stripe-style provider whose webhooks carry a `Stripe-Signature`.
    Stripe,
}

impl PaymentProvider {
    fn as_str(self) -> &'static str {
        match self {
            Self::Paynow => "paynow",
            Self::Mpesa => "mpesa",
            Self::Stripe => "stripe",
        }
    }
}

/// A payment provider as the tenant configured it. Secrets are never shown: only which are set.
#[derive(SimpleObject)]
pub struct ConfiguredPaymentProvider {
    /// The provider.
    pub provider: PaymentProvider,
    /// Paynow's integration id.
    pub integration_id: Option<String>,
    /// Paynow's integration currency.
    pub currency: Option<String>,
    /// Paynow's merchant e-mail for Express requests, if set.
    pub auth_email: Option<String>,
    /// M-Pesa's short code (paybill or till).
    pub short_code: Option<String>,
    /// The names of the secrets set (`integration_key`; `consumer_key`, `consumer_secret`,
    /// `passkey`, `callback_secret`; `endpoint_secret`, `secret_key`), never their values.
    pub secrets: Vec<String>,
    /// Whether `requestPayment` can ask for payments through it (M-Pesa: set since payment
    /// requests exist; Stripe: with a `secretKey`; Paynow: always).
    pub requestable: bool,
    /// When it was last set (RFC 3339).
    pub updated_at: DateTime<Utc>,
}

/// A payment a provider confirmed.
#[derive(SimpleObject)]
pub struct Payment {
    /// `pay_…`, one per provider and provider reference.
    pub id: String,
    /// `paynow`, `mpesa`, `stripe`.
    pub provider: String,
    /// The provider's reference (Paynow reference, M-Pesa receipt, payment intent).
    pub reference: String,
    /// The reference we gave the provider (`order_…`, `wallet_…`), as it came back.
    pub merchant_reference: String,
    /// The amount the provider confirmed, in integer minor units of `currency` (above zero).
    pub amount_minor: i64,
    /// ISO 4217 code of the amount.
    pub currency: String,
    /// Where the payment stands.
    pub status: PaymentStatus,
    /// `order` or `wallet`, once matched.
    pub matched_kind: Option<String>,
    /// The order id or wallet id, once matched.
    pub matched_id: Option<String>,
    /// Milli-tokens credited, for a wallet top-up.
    pub milli_tokens: Option<i64>,
    /// Why nothing took it (a stable code: `UNKNOWN_ORDER`, `OVERPAYMENT`,
    /// `UNRECOGNISED_REFERENCE`…).
    pub unmatched_reason: Option<String>,
    /// Who matched it by hand.
    pub matched_by: Option<String>,
    /// When Chronicle recorded the provider's confirmation (RFC 3339, UTC).
    pub confirmed_at: DateTime<Utc>,
    /// When it was last matched or left unmatched (RFC 3339, UTC; a manual match sets it again);
    /// null while `CONFIRMED`.
    pub decided_at: Option<DateTime<Utc>>,
}

impl From<PaymentRow> for Payment {
    fn from(row: PaymentRow) -> Self {
        Self {
            id: row.payment_id,
            provider: row.provider,
            reference: row.reference,
            merchant_reference: row.merchant_reference,
            amount_minor: row.amount_minor,
            currency: row.currency,
            status: PaymentStatus::parse(&row.status),
            matched_kind: row.matched_kind,
            matched_id: row.matched_id,
            milli_tokens: row.milli_tokens,
            unmatched_reason: row.unmatched_reason,
            matched_by: row.matched_by,
            confirmed_at: row.confirmed_at,
            decided_at: row.decided_at,
        }
    }
}

/// Paynow credentials.
#[derive(InputObject)]
pub struct PaynowInput {
    /// The Paynow integration id; not blank.
    pub integration_id: String,
    /// The Paynow integration key, which callback hashes are checked with; sealed, never returned.
    pub integration_key: String,
    /// The integration's currency (`USD`, `ZWG`): Paynow requests are in it.
    pub currency: String,
    /// The merchant's Paynow login e-mail, sent as `authemail` with Express (EcoCash,
    /// OneMoney) requests, which Paynow requires (in its test mode it must be the merchant's).
    pub auth_email: Option<String>,
}

/// M-Pesa (Daraja) credentials and the callback path secret.
#[derive(InputObject)]
pub struct MpesaInput {
    /// The M-Pesa business short code (paybill or till) STK pushes pay to; not blank.
    pub short_code: String,
    /// The Daraja app's consumer key; sealed, never returned.
    pub consumer_key: String,
    /// The Daraja app's consumer secret; sealed, never returned.
    pub consumer_secret: String,
    /// The Lipa na M-Pesa Online passkey of the short code; sealed, never returned.
    pub passkey: String,
    /// At least 16 characters from A-Z, a-z, 0-9, `-`, `_`: the callback URL given to Daraja in
    /// each STK push is `<CHRONICLE_PUBLIC_URL>/webhooks/payments/<tenant>/mpesa/<secret>`.
    pub callback_secret: String,
}

/// A Stripe-style endpoint's signing secret.
#[derive(InputObject)]
pub struct StripeInput {
    /// The endpoint's signing secret, which `Stripe-Signature` (HMAC-SHA256, 300 s tolerance) is
    /// checked with; sealed, never returned.
    pub endpoint_secret: String,
    /// The secret key (`sk_…`, or a restricted `rk_…` allowed to write Checkout Sessions) that
    /// `requestPayment` opens Checkout Sessions with; sealed, never returned. Without it Stripe
    /// payments are received but cannot be requested (`PROVIDER_NOT_CONFIGURED`).
    pub secret_key: Option<String>,
}

/// One provider's credentials: exactly one of the fields.
#[derive(InputObject)]
pub struct PaymentProviderInput {
    /// Paynow's credentials.
    pub paynow: Option<PaynowInput>,
    /// M-Pesa's (Daraja) credentials and callback path secret.
    pub mpesa: Option<MpesaInput>,
    /// A Stripe-style endpoint's signing secret.
    pub stripe: Option<StripeInput>,
}

/// What a payment request pays for: exactly one of the fields.
#[derive(InputObject)]
pub struct PaymentTargetInput {
    /// An order (`order_…`): the amount asked is the deposit, the balance or the whole.
    pub order_id: Option<String>,
    /// A top-up of the tenant's wallet (`main` or a sub-wallet).
    pub wallet_id: Option<String>,
    /// A free amount, for the purpose described (no personal data).
    pub description: Option<String>,
}

/// Asking a customer to pay.
#[derive(InputObject)]
pub struct PaymentRequestInput {
    /// The caller's key for this request: the same key answers with the first request and
    /// initiates nothing twice (1 to 200 characters).
    pub idempotency_key: String,
    /// `MPESA` (an STK push to the customer's phone), `STRIPE` (a Checkout Session: the
    /// receipt's `paymentUrl` is the page to send the customer) or `PAYNOW` (a web checkout
    /// whose page is the receipt's `paymentUrl`, or with `mobileMoney` an Express prompt on the
    /// customer's EcoCash or OneMoney phone).
    pub provider: PaymentProvider,
    /// What it pays for: exactly one of its fields (`ONE_TARGET` otherwise).
    pub target: PaymentTargetInput,
    /// In minor units (M-Pesa: whole shillings, so a multiple of 100; Stripe: the currency's
    /// smallest unit as Stripe counts it, e.g. cents, or yen for `JPY`).
    pub amount_minor: i64,
    /// ISO 4217 (M-Pesa: `KES`; Paynow: the integration's currency).
    pub currency: String,
    /// Paynow Express: prompt the contact's mobile money wallet (`ECOCASH`, `ONEMONEY`; a
    /// Zimbabwean number) instead of a payment page. Only with `PAYNOW`
    /// (`MOBILE_MONEY_NOT_OFFERED` otherwise).
    pub mobile_money: Option<MobileMoneyMethod>,
    /// Send the request to the customer on WhatsApp once the provider accepted it: an approved
    /// template of the tenant, metered like any send (refunded if WhatsApp refuses it), with an
    /// optional reminder before the expiry. If the send is refused (say
    /// `INSUFFICIENT_BALANCE`), the request stays as it is: call again with the same key to
    /// send it.
    pub message: Option<PaymentRequestMessageInput>,
    /// The customer asked (M-Pesa: their phone number gets the prompt; Stripe: whom the
    /// payment page is for).
    pub contact_id: String,
    /// Minutes until the request expires (1 to 43,200; default 60). A payment after it is kept
    /// for finance, not credited.
    pub expires_in_minutes: Option<i32>,
}

/// How a payment request goes to the customer on WhatsApp.
#[derive(InputObject)]
pub struct PaymentRequestMessageInput {
    /// The template's name (approved: `TEMPLATE_NOT_APPROVED`, `UNKNOWN_TEMPLATE` otherwise).
    pub template: String,
    /// The template's language (`en`, `en_US`, …).
    pub language: String,
    /// One per template variable (`WRONG_PARAMETER_COUNT` otherwise). Each may hold the
    /// placeholders `{amount}` (`USD 150.00`), `{link}` (the payment page: Stripe and Paynow web
    /// only, `INVALID_INPUT` for a prompt), `{expires}` (`2026-12-07 15:00 UTC`) and
    /// `{reference}` (the request id), filled when the message is sent.
    pub parameters: Vec<String>,
    /// Remind the customer this many minutes before the expiry (1 to 43,200), with the same
    /// template, if the request is still unpaid then.
    pub remind_before_minutes: Option<i32>,
}

/// The mobile money wallets Paynow Express prompts.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum MobileMoneyMethod {
    /// EcoCash (Econet).
    Ecocash,
    /// OneMoney (NetOne).
    Onemoney,
}

/// Where a payment request stands.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum PaymentRequestStatus {
    /// Recorded; the provider has not accepted the initiation yet (it could not be reached:
    /// the same call again, with the same idempotency key, initiates it).
    Requested,
    /// The provider accepted the initiation (M-Pesa: the prompt is on the customer's phone).
    Sent,
    /// Paid: its order or wallet got the payment, once.
    Paid,
    /// The provider refused the initiation, or reported that the customer did not pay (see
    /// `failure`).
    Failed,
    /// Cancelled by staff; a later callback is kept for finance, never credited.
    Cancelled,
    /// Past its expiry unpaid; a later callback is kept for finance, never credited.
    Expired,
}

impl PaymentRequestStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Sent => "sent",
            Self::Paid => "paid",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }

    fn parse(status: &str) -> Self {
        match status {
            "sent" => Self::Sent,
            "paid" => Self::Paid,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            "expired" => Self::Expired,
            _ => Self::Requested,
        }
    }
}

/// What a payment request is for.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum PaymentRequestTargetKind {
    /// An order (`target` is its id, `order_…`).
    Order,
    /// A top-up of a wallet (`target` is the wallet id: `main` or a sub-wallet).
    Wallet,
    /// A free amount (`target` is its description).
    Free,
}

impl PaymentRequestTargetKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Order => "order",
            Self::Wallet => "wallet",
            Self::Free => "free",
        }
    }

    fn parse(kind: &str) -> Self {
        match kind {
            "order" => Self::Order,
            "wallet" => Self::Wallet,
            _ => Self::Free,
        }
    }
}

/// Which payment requests to list; every field optional, all given must hold.
#[derive(InputObject, Default)]
pub struct PaymentRequestFilter {
    /// Only requests with this status.
    pub status: Option<PaymentRequestStatus>,
    /// Only requests to this provider.
    pub provider: Option<PaymentProvider>,
    /// Only requests for this kind of target.
    pub target_kind: Option<PaymentRequestTargetKind>,
    /// Only requests for this order or wallet id (exact).
    pub target: Option<String>,
}

/// A request to a customer to pay, with where it stands.
#[derive(SimpleObject)]
pub struct PaymentRequest {
    /// `preq_…`.
    pub id: String,
    /// The provider asked: `paynow`, `mpesa` or `stripe`.
    pub provider: String,
    /// What it is for.
    pub target_kind: PaymentRequestTargetKind,
    /// The order id (`order_…`) or wallet id, or the free amount's description.
    pub target: String,
    /// The amount asked, in integer minor units of `currency`.
    pub amount_minor: i64,
    /// ISO 4217 code of the amount.
    pub currency: String,
    /// The customer asked (`ct_…`), when the request names one.
    pub contact_id: Option<String>,
    /// Where it stands.
    pub status: PaymentRequestStatus,
    /// The provider's id for the initiation (M-Pesa's `CheckoutRequestID`, Stripe's Checkout
    /// Session id), once accepted.
    pub provider_request_id: Option<String>,
    /// The page the customer pays on (Stripe Checkout), once accepted; null for M-Pesa, whose
    /// prompt goes to the customer's phone.
    pub payment_url: Option<String>,
    /// The provider's reference of the payment (M-Pesa receipt, Stripe PaymentIntent), once paid.
    pub provider_reference: Option<String>,
    /// Why the provider refused the initiation or why the customer did not pay (`FAILED`).
    pub failure: Option<String>,
    /// Callbacks that named this request but paid nothing (another amount, a second payment, a
    /// late one): each is in `refusedPaymentCallbacks`.
    pub refused_callbacks: i32,
    /// Who asked (`user:<id>`).
    pub requested_by: String,
    /// When it was recorded (RFC 3339).
    pub requested_at: DateTime<Utc>,
    /// When it stops being payable (RFC 3339).
    pub expires_at: DateTime<Utc>,
    /// When the provider accepted the initiation (RFC 3339).
    pub sent_at: Option<DateTime<Utc>>,
    /// When it was paid, failed, cancelled or expired (RFC 3339).
    pub closed_at: Option<DateTime<Utc>>,
    /// The WhatsApp template it went to the customer with (`name (language)`), once it did.
    pub message_template: Option<String>,
    /// When it went to the customer on WhatsApp (RFC 3339).
    pub messaged_at: Option<DateTime<Utc>>,
    /// When the reminder before expiry is due (RFC 3339), if one was asked for.
    pub remind_at: Option<DateTime<Utc>>,
    /// When the reminder went out (RFC 3339).
    pub reminded_at: Option<DateTime<Utc>>,
}

impl From<PaymentRequestRow> for PaymentRequest {
    fn from(r: PaymentRequestRow) -> Self {
        Self {
            id: r.request_id,
            provider: r.provider,
            target_kind: PaymentRequestTargetKind::parse(&r.target_kind),
            target: r.target,
            amount_minor: r.amount_minor,
            currency: r.currency,
            contact_id: r.contact_id,
            status: PaymentRequestStatus::parse(&r.status),
            provider_request_id: r.provider_request_id,
            payment_url: r.payment_url,
            provider_reference: r.provider_reference,
            failure: r.failure,
            refused_callbacks: r.refused_callbacks,
            requested_by: r.requested_by,
            requested_at: r.requested_at,
            expires_at: r.expires_at,
            sent_at: r.sent_at,
            closed_at: r.closed_at,
            message_template: r.message_template,
            messaged_at: r.messaged_at,
            remind_at: r.remind_at,
            reminded_at: r.reminded_at,
        }
    }
}

/// A provider callback that paid nothing, kept for finance.
#[derive(SimpleObject)]
pub struct RefusedPaymentCallback {
    /// The provider that sent it, e.g. `mpesa`.
    pub provider: String,
    /// The provider's id for the initiation it names (M-Pesa's `CheckoutRequestID`).
    pub provider_request_id: String,
    /// The provider's reference it carried (M-Pesa receipt), as sent: unverified.
    pub provider_reference: String,
    /// The request the id belongs to, when one does.
    pub request_id: Option<String>,
    /// `NO_PAYMENT_REQUEST`, `AMOUNT_MISMATCH`, `REQUEST_ALREADY_PAID`, `REQUEST_FAILED`.
    pub reason: String,
    /// The amount it claimed, unverified.
    pub amount_minor: Option<i64>,
    /// The ISO 4217 code it claimed, unverified; null when it carried no amount.
    pub currency: Option<String>,
    /// How many times it was delivered.
    pub deliveries: i32,
    /// Its first delivery (RFC 3339, UTC).
    pub first_seen_at: DateTime<Utc>,
    /// Its latest delivery (RFC 3339, UTC); the list is ordered by it, latest first.
    pub last_seen_at: DateTime<Utc>,
}

fn payment_intake<'a>(ctx: &'a Context<'_>) -> Result<&'a PaymentIntake, ApiError> {
    ctx.data::<PaymentIntake>()
        .map_err(|_| ApiError::Unavailable("no payment intake in the schema".into()))
}

async fn page(
    ctx: &Context<'_>,
    caller: &Caller,
    filter: ReadFilter,
    first: i64,
    after: Option<String>,
) -> async_graphql::Result<Connection<String, Payment, Counted>> {
    let pool = pool(ctx).gql()?;
    let page = list(pool, &caller.tenant, &filter, first, after.as_deref()).await;
    let (pool, tenant) = (pool.clone(), caller.tenant.clone());
    let count = Counted::new(async move { chronicle_projections::payments::count(&pool, &tenant, &filter).await });
    connection_with(after.is_some(), page, Payment::from, count)
}

#[derive(Default)]
pub struct PaymentsQuery;

#[Object]
impl PaymentsQuery {
    /// The payment providers the caller's tenant configured (`setPaymentProvider`), one row
    /// each, without their secrets. Owner, admin, finance, auditor.
    async fn payment_providers(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ConfiguredPaymentProvider>> {
        let caller = allowed(ctx, Permission::ReadPayments, "read payment providers").gql()?;
        let keys = ctx
            .data::<KeyStore>()
            .map_err(|_| ApiError::Unavailable("no key store in the schema".into()))
            .gql()?;
        let configured =
            chronicle_commands::payments::credentials::configured(pool(ctx).gql()?, keys.master(), &caller.tenant)
                .await
                .map_err(ApiError::from)
                .gql()?;
        Ok(configured
            .into_iter()
            .map(|c| ConfiguredPaymentProvider {
                provider: match c.provider.as_str() {
                    "paynow" => PaymentProvider::Paynow,
                    "mpesa" => PaymentProvider::Mpesa,
                    _ => PaymentProvider::Stripe,
                },
                integration_id: c.settings.get("integration_id").cloned(),
                currency: c.settings.get("currency").cloned(),
                auth_email: c.settings.get("auth_email").cloned(),
                short_code: c.settings.get("short_code").cloned(),
                secrets: c.secrets,
                requestable: c.requestable,
                updated_at: c.updated_at,
            })
            .collect())
    }

    /// The caller's tenant's payments, latest confirmation first. Owner, admin, finance, auditor.
    async fn payments(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only payments with this status; every status when null.")] status: Option<PaymentStatus>,
        #[graphql(desc = "Only payments of this provider; all when null.")] provider: Option<PaymentProvider>,
        #[graphql(default = 20, desc = "Page size: 1 to 100, default 20 (`PAGE_TOO_LARGE` above 100).")] first: i32,
        #[graphql(
            desc = "The cursor of the last edge of the previous page; a malformed one is refused with `BAD_CURSOR`."
        )]
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Payment, Counted>> {
        let caller = allowed(ctx, Permission::ReadPayments, "read payments").gql()?;
        let first = page_size(first, 100).gql()?;
        let filter = ReadFilter {
            status: status.map(|s| s.as_str().to_string()),
            provider: provider.map(|p| p.as_str().to_string()),
        };
        page(ctx, caller, filter, first, after).await
    }

    /// Payments nothing took, for finance, latest first. Owner, admin, finance, auditor.
    async fn unmatched_payments(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, desc = "Page size: 1 to 100, default 20 (`PAGE_TOO_LARGE` above 100).")] first: i32,
        #[graphql(
            desc = "The cursor of the last edge of the previous page; a malformed one is refused with `BAD_CURSOR`."
        )]
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Payment, Counted>> {
        let caller = allowed(ctx, Permission::ReadPayments, "read payments").gql()?;
        let first = page_size(first, 100).gql()?;
        let filter = ReadFilter {
            status: Some("unmatched".into()),
            provider: None,
        };
        page(ctx, caller, filter, first, after).await
    }

    /// Provider callbacks that paid nothing (no request of ours, another amount than asked, a
    /// second payment of a paid request), the most recent first, a page at a time. Owner, admin,
    /// finance, auditor.
    async fn refused_payment_callbacks(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50, desc = "Page size: 1 to 200, default 50 (`PAGE_TOO_LARGE` above 200).")] first: i32,
        #[graphql(desc = "The `cursor` of the last edge of the previous page (opaque); null for the first page.")]
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, RefusedPaymentCallback>> {
        let caller = allowed(ctx, Permission::ReadPayments, "read payments").gql()?;
        let first = page_size(first, 200).gql()?;
        let before = match chronicle_projections::page::after_time(after.as_deref()) {
            Ok((Some(at), Some(key))) => Some((at, key)),
            Ok(_) => None,
            Err(e) => return Err(ApiError::bad_request("BAD_CURSOR", e.to_string())).gql(),
        };
        let mut rows = refused_callbacks(pool(ctx).gql()?, &caller.tenant, before, first + 1)
            .await
            .map_err(ApiError::from)
            .gql()?;
        let has_next_page = rows.len() as i64 > first;
        rows.truncate(usize::try_from(first).unwrap_or_default());
        let mut connection = Connection::new(after.is_some(), has_next_page);
        connection.edges.extend(rows.into_iter().map(|r| {
            let cursor = chronicle_projections::page::time_cursor(r.last_seen_at, r.key());
            Edge::new(
                cursor,
                RefusedPaymentCallback {
                    provider: r.provider,
                    provider_request_id: r.provider_request_id,
                    provider_reference: r.provider_reference,
                    request_id: r.request_id,
                    reason: r.reason,
                    amount_minor: r.amount_minor,
                    currency: r.currency,
                    deliveries: r.deliveries,
                    first_seen_at: r.first_seen_at,
                    last_seen_at: r.last_seen_at,
                },
            )
        }));
        Ok(connection)
    }

    /// The caller's tenant's payment requests, latest first, filtered. Owner, admin, finance,
    /// auditor and agent (else `FORBIDDEN`); a malformed `after` is `BAD_CURSOR`.
    async fn payment_requests(
        &self,
        ctx: &Context<'_>,
        #[graphql(default, desc = "Which requests: every one when null or empty.")] filter: PaymentRequestFilter,
        #[graphql(default = 20, desc = "Page size: 1 to 100, default 20 (`PAGE_TOO_LARGE` above 100).")] first: i32,
        #[graphql(
            desc = "The cursor of the last edge of the previous page; a malformed one is refused with `BAD_CURSOR`."
        )]
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, PaymentRequest>> {
        let caller = allowed(ctx, Permission::ReadPaymentRequests, "read payment requests").gql()?;
        let first = page_size(first, 100).gql()?;
        let filter = RequestFilter {
            status: filter.status.map(|s| s.as_str().to_string()),
            provider: filter.provider.map(|p| p.as_str().to_string()),
            target_kind: filter.target_kind.map(|k| k.as_str().to_string()),
            target: filter.target,
        };
        let page = requests_model::list(pool(ctx).gql()?, &caller.tenant, &filter, first, after.as_deref()).await;
        connection(after.is_some(), page, PaymentRequest::from)
    }

    /// One payment request of the caller's tenant; null when it has none with this id. Owner,
    /// admin, finance, auditor and agent.
    async fn payment_request(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The request id (`preq_…`).")] id: String,
    ) -> async_graphql::Result<Option<PaymentRequest>> {
        let caller = allowed(ctx, Permission::ReadPaymentRequests, "read payment requests").gql()?;
        let row = requests_model::get(pool(ctx).gql()?, &caller.tenant, &id)
            .await
            .map_err(ApiError::from)
            .gql()?;
        Ok(row.map(PaymentRequest::from))
    }

    /// One payment of the caller's tenant; null when it has none with this id. Owner, admin,
    /// finance, auditor.
    async fn payment(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The payment id (`pay_…`).")] id: String,
    ) -> async_graphql::Result<Option<Payment>> {
        let caller = allowed(ctx, Permission::ReadPayments, "read payments").gql()?;
        let row = get(pool(ctx).gql()?, &caller.tenant, &id)
            .await
            .map_err(ApiError::from)
            .gql()?;
        Ok(row.map(Payment::from))
    }
}

#[derive(Default)]
pub struct PaymentsMutation;

#[Object]
impl PaymentsMutation {
    /// Matches an unmatched payment to an order (owner, admin, finance): the order records the
    /// payment (refused with its rule's code: `OVERPAYMENT`, `PAYMENT_CURRENCY_MISMATCH`,
    /// `UNKNOWN_ORDER`…), then the payment is matched. Repeating it changes nothing. Also refused:
    /// `INVALID_INPUT` (ids of another shape), `UNKNOWN_PAYMENT`, `PAYMENT_NOT_UNMATCHED` (not
    /// left unmatched), `PAYMENT_ALREADY_MATCHED` (matched to something else).
    async fn match_payment(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The unmatched payment (`pay_…`).")] payment_id: String,
        #[graphql(desc = "The order it paid (`order_…`).")] order_id: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::MatchPayments, "match payments").gql()?;
            let payment = match_manually(commands(ctx).gql()?, &payment_id, &order_id, &metadata(ctx, caller))
                .await
                .gql()?;
            Ok(Receipt::new(payment_id)
                .touched(order_id)
                .outcome_enum(PaymentStatus::parse(payment.status().as_str())))
        })
        .await
    }

    /// Asks a customer to pay (owner, admin, finance, agent): records the request and
    /// initiates it with the provider (M-Pesa: an STK push to the contact's phone; Stripe: a
    /// Checkout Session, whose page is the receipt's `paymentUrl`; Paynow: a web checkout
    /// page, or an Express prompt on the contact's EcoCash/OneMoney phone). Only a callback for
    /// this request, of the amount asked, before its expiry, pays its order or credits its
    /// wallet, once. Refusals: `PROVIDER_NOT_REQUESTABLE` (cash), `PROVIDER_CURRENCY`,
    /// `MOBILE_MONEY_NOT_OFFERED`, `NOT_WHOLE_UNITS`,
    /// `NON_POSITIVE_PAYMENT`, `PAYMENT_REQUEST_ID_TAKEN` (the key was used for another
    /// request), `PROVIDER_NOT_CONFIGURED`, `INVALID_INPUT`; `UNAVAILABLE` when the provider
    /// cannot be reached (the request stays `requested`: call again with the same key). Also
    /// `ONE_TARGET` (not exactly one target), `INVALID_EXPIRY` (outside 1 to 43,200 minutes).
    async fn request_payment(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "What is asked, of whom, for what, and until when.")] input: PaymentRequestInput,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::RequestPayments, "request payments").gql()?;
            let target = match (input.target.order_id, input.target.wallet_id, input.target.description) {
                (Some(order_id), None, None) => PaymentTarget::Order { order_id },
                (None, Some(wallet_id), None) => PaymentTarget::Wallet { wallet_id },
                (None, None, Some(description)) => PaymentTarget::Free { description },
                _ => {
                    return Err(ApiError::bad_request(
                        "ONE_TARGET",
                        "give exactly one of orderId, walletId and description",
                    ))
                    .gql()
                }
            };
            let minutes = input.expires_in_minutes.unwrap_or(60);
            if !(1..=43_200).contains(&minutes) {
                return Err(ApiError::bad_request(
                    "INVALID_EXPIRY",
                    "expiresInMinutes must be between 1 and 43200 (30 days)",
                ))
                .gql();
            }
            let provider = match input.provider {
                PaymentProvider::Paynow => chronicle_domain::installation::PaymentProvider::Paynow,
                PaymentProvider::Mpesa => chronicle_domain::installation::PaymentProvider::Mpesa,
                PaymentProvider::Stripe => chronicle_domain::installation::PaymentProvider::Stripe,
            };
            let new = NewPaymentRequest {
                idempotency_key: input.idempotency_key,
                target,
                provider,
                amount_minor: input.amount_minor,
                currency: input.currency,
                expires_at: Utc::now() + chrono::Duration::minutes(i64::from(minutes)),
                contact_id: Some(input.contact_id),
                mobile_money: input.mobile_money.map(|m| match m {
                    MobileMoneyMethod::Ecocash => chronicle_domain::payment_request::MobileMoney::Ecocash,
                    MobileMoneyMethod::Onemoney => chronicle_domain::payment_request::MobileMoney::Onemoney,
                }),
                message: match input.message {
                    None => None,
                    Some(m) => Some(NewRequestMessage {
                        template: m.template,
                        language: m.language,
                        parameters: m.parameters,
                        remind_before: match m.remind_before_minutes {
                            None => None,
                            Some(minutes @ 1..=43_200) => Some(chrono::Duration::minutes(i64::from(minutes))),
                            Some(_) => {
                                return Err(ApiError::bad_request(
                                    "INVALID_INPUT",
                                    "remindBeforeMinutes must be between 1 and 43200",
                                ))
                                .gql()
                            }
                        },
                    }),
                },
            };
            let receipt = payment_intake(ctx)
                .gql()?
                .request_payment(new, &metadata(ctx, caller))
                .await
                .map_err(ApiError::from)
                .gql()?;
            Ok(receipt_of(receipt))
        })
        .await
    }

    /// Cancels an open payment request (owner, admin, finance): a payment that arrives after
    /// it is kept for finance, not credited. `PAYMENT_REQUEST_PAID` for a paid request,
    /// `PAYMENT_REQUEST_CLOSED` for a failed or expired one, `UNKNOWN_PAYMENT_REQUEST`,
    /// `INVALID_INPUT` (not a `preq_…` id). Cancelling again changes nothing. Returns the request
    /// as it stands.
    async fn cancel_payment_request(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The payment request id (`preq_` and 32 hex digits).")] id: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::MatchPayments, "cancel payment requests").gql()?;
            if !chronicle_domain::payment_request::is_payment_request_id(&id) {
                return Err(ApiError::bad_request(
                    "INVALID_INPUT",
                    format!("{id:?} is not a payment request id"),
                ))
                .gql();
            }
            let receipt = payment_intake(ctx)
                .gql()?
                .cancel_request(&id, &metadata(ctx, caller))
                .await
                .gql()?;
            Ok(receipt_of(receipt))
        })
        .await
    }

    /// Sets (or replaces) the tenant's credentials for one payment provider (owner, admin).
    /// Secrets are sealed under the master key and never returned. Returns the provider's name.
    /// Refusals: `ONE_PROVIDER`, `INVALID_INPUT` (a blank field, a Paynow currency that is not
    /// ISO 4217, an M-Pesa callback secret that is too short or has other characters).
    async fn set_payment_provider(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The credentials of exactly one provider (`ONE_PROVIDER` otherwise).")]
        provider: PaymentProviderInput,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
        let caller = allowed(ctx, Permission::ManageProviders, "set payment providers").gql()?;
        let credentials = match (provider.paynow, provider.mpesa, provider.stripe) {
            (Some(p), None, None) => ProviderCredentials::Paynow {
                integration_id: p.integration_id,
                integration_key: p.integration_key,
                currency: p.currency,
                auth_email: p.auth_email,
            },
            (None, Some(m), None) => ProviderCredentials::Mpesa {
                daraja: DarajaCredentials {
                    short_code: m.short_code,
                    consumer_key: m.consumer_key,
                    consumer_secret: m.consumer_secret,
                    passkey: m.passkey,
                },
                callback_secret: m.callback_secret,
            },
            (None, None, Some(s)) => ProviderCredentials::Stripe {
                endpoint_secret: s.endpoint_secret,
                secret_key: s.secret_key,
            },
            _ => {
                return Err(ApiError::bad_request(
                    "ONE_PROVIDER",
                    "give exactly one of paynow, mpesa and stripe",
                ))
                .gql()
            }
        };
        payment_intake(ctx)
            .gql()?
            .set_provider(&credentials, &metadata(ctx, caller))
            .await
            .gql()?;
        tracing::info!(tenant.id = %caller.tenant, payment.provider = credentials.provider(), "payment provider set");
        Ok(Receipt::new(credentials.provider()))
            })
        .await
    }
}

fn receipt_of(receipt: RequestReceipt) -> Receipt {
    let mut answer = Receipt::new(receipt.request_id).outcome(receipt.status.as_str());
    answer.provider_request_id = receipt.provider_request_id;
    answer.payment_url = receipt.payment_url;
    answer
}
