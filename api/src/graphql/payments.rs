//! Payments from provider callbacks: the `payments` connection (filter by status and
//! provider), `unmatchedPayments` (finance's work list), the finance mutation `matchPayment`
//! that matches an unmatched payment to an order, and the admin mutation `setPaymentProvider`
//! that sets a tenant's provider credentials (sealed; never readable back).
//!
//! Roles: reading payments: owner, admin, finance, auditor; matching: owner, admin, finance;
//! provider credentials: owner, admin.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, InputObject, Object, SimpleObject};
use chronicle_commands::keystore::KeyStore;
use chronicle_commands::payments::credentials::{set_provider, ProviderCredentials};
use chronicle_commands::payments::match_manually;
use chronicle_commands::payments::mpesa::DarajaCredentials;
use chronicle_projections::payments::{get, list, PaymentFilter as ReadFilter, PaymentRow};
use chrono::{DateTime, Utc};

use super::contacts::commands;
use super::{caller, metadata, pool, require};
use crate::auth::{Caller, Role};
use crate::error::{ApiError, IntoGraphql};

/// Where a payment stands.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum PaymentStatus {
    /// Confirmed by its provider, not yet matched (a moment, or a retried callback).
    Confirmed,
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
    Paynow,
    Mpesa,
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
    pub amount_minor: i64,
    pub currency: String,
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
    pub confirmed_at: DateTime<Utc>,
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

/// What `matchPayment` did: the payment as its stream now says.
#[derive(SimpleObject)]
pub struct PaymentMatchResult {
    pub payment_id: String,
    pub status: PaymentStatus,
    pub order_id: String,
}

/// Paynow credentials.
#[derive(InputObject)]
pub struct PaynowInput {
    pub integration_id: String,
    pub integration_key: String,
    /// The integration's currency (`USD`, `ZWG`).
    pub currency: String,
}

/// M-Pesa (Daraja) credentials and the callback path secret.
#[derive(InputObject)]
pub struct MpesaInput {
    pub short_code: String,
    pub consumer_key: String,
    pub consumer_secret: String,
    pub passkey: String,
    /// At least 16 characters from A-Z, a-z, 0-9, `-`, `_`: the callback URL is
    /// `/webhooks/payments/<tenant>/mpesa/<secret>?reference=<merchant reference>`.
    pub callback_secret: String,
}

/// A Stripe-style endpoint's signing secret.
#[derive(InputObject)]
pub struct StripeInput {
    pub endpoint_secret: String,
}

/// One provider's credentials: exactly one of the fields.
#[derive(InputObject)]
pub struct PaymentProviderInput {
    pub paynow: Option<PaynowInput>,
    pub mpesa: Option<MpesaInput>,
    pub stripe: Option<StripeInput>,
}

fn reads_payments(role: Role) -> bool {
    matches!(role, Role::Owner | Role::Admin | Role::Finance | Role::Auditor)
}

fn matches_payments(role: Role) -> bool {
    matches!(role, Role::Owner | Role::Admin | Role::Finance)
}

fn manages_providers(role: Role) -> bool {
    matches!(role, Role::Owner | Role::Admin)
}

async fn page(
    ctx: &Context<'_>,
    caller: &Caller,
    filter: ReadFilter,
    first: i32,
    after: Option<String>,
) -> async_graphql::Result<Connection<String, Payment>> {
    let page = list(
        pool(ctx).gql()?,
        &caller.tenant,
        &filter,
        i64::from(first),
        after.as_deref(),
    )
    .await
    .map_err(ApiError::from)
    .gql()?
    .map_err(|e| ApiError::bad_request("BAD_CURSOR", e.to_string()))
    .gql()?;
    let mut connection = Connection::new(after.is_some(), page.has_next_page);
    connection.edges.extend(
        page.rows
            .into_iter()
            .map(|(cursor, row)| Edge::new(cursor, Payment::from(row))),
    );
    Ok(connection)
}

#[derive(Default)]
pub struct PaymentsQuery;

#[Object]
impl PaymentsQuery {
    /// The caller's tenant's payments, latest confirmation first.
    async fn payments(
        &self,
        ctx: &Context<'_>,
        status: Option<PaymentStatus>,
        provider: Option<PaymentProvider>,
        #[graphql(default = 20, validator(minimum = 1, maximum = 100))] first: i32,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Payment>> {
        let caller = caller(ctx).gql()?;
        require(reads_payments(caller.role), caller, "read payments").gql()?;
        let filter = ReadFilter {
            status: status.map(|s| s.as_str().to_string()),
            provider: provider.map(|p| p.as_str().to_string()),
        };
        page(ctx, caller, filter, first, after).await
    }

    /// Payments nothing took, for finance, latest first.
    async fn unmatched_payments(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, validator(minimum = 1, maximum = 100))] first: i32,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Payment>> {
        let caller = caller(ctx).gql()?;
        require(reads_payments(caller.role), caller, "read payments").gql()?;
        let filter = ReadFilter {
            status: Some("unmatched".into()),
            provider: None,
        };
        page(ctx, caller, filter, first, after).await
    }

    /// One payment of the caller's tenant.
    async fn payment(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<Option<Payment>> {
        let caller = caller(ctx).gql()?;
        require(reads_payments(caller.role), caller, "read payments").gql()?;
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
    /// `UNKNOWN_ORDER`…), then the payment is matched. Repeating it changes nothing.
    async fn match_payment(
        &self,
        ctx: &Context<'_>,
        payment_id: String,
        order_id: String,
    ) -> async_graphql::Result<PaymentMatchResult> {
        let caller = caller(ctx).gql()?;
        require(matches_payments(caller.role), caller, "match payments").gql()?;
        let payment = match_manually(commands(ctx).gql()?, &payment_id, &order_id, &metadata(ctx, caller))
            .await
            .gql()?;
        Ok(PaymentMatchResult {
            payment_id,
            status: PaymentStatus::parse(payment.status().as_str()),
            order_id,
        })
    }

    /// Sets (or replaces) the tenant's credentials for one payment provider (owner, admin).
    /// Secrets are sealed under the master key and never returned. Returns the provider's name.
    async fn set_payment_provider(
        &self,
        ctx: &Context<'_>,
        provider: PaymentProviderInput,
    ) -> async_graphql::Result<String> {
        let caller = caller(ctx).gql()?;
        require(manages_providers(caller.role), caller, "set payment providers").gql()?;
        let credentials = match (provider.paynow, provider.mpesa, provider.stripe) {
            (Some(p), None, None) => ProviderCredentials::Paynow {
                integration_id: p.integration_id,
                integration_key: p.integration_key,
                currency: p.currency,
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
            },
            _ => {
                return Err(ApiError::bad_request(
                    "ONE_PROVIDER",
                    "give exactly one of paynow, mpesa and stripe",
                ))
                .gql()
            }
        };
        let keys = ctx
            .data::<KeyStore>()
            .map_err(|_| ApiError::Unavailable("no key store in the schema".into()))
            .gql()?;
        set_provider(pool(ctx).gql()?, keys.master(), &caller.tenant, &credentials)
            .await
            .gql()?;
        tracing::info!(tenant.id = %caller.tenant, payment.provider = credentials.provider(), "payment provider set");
        Ok(credentials.provider().to_string())
    }
}
