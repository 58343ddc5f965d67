//! `Receipt`: what every mutation answers. The ids it touched, the cursor of the events it
//! appended (a query sent with `atLeast: cursor` sees the write, see [`super::consistency`]),
//! and the few facts a mutation decides that no read model holds yet (the balance a wallet
//! operation left, a service request's ticket number).

use std::future::Future;

use async_graphql::SimpleObject;
use chronicle_commands::repository::{track_writes, Written};
use chronicle_projections::log::Cursor;

/// What a mutation did: the one answer of every mutation.
///
/// To read the write back, send the query with the receipt's `cursor` as its consistency
/// requirement (the `Chronicle-At-Least` header, or `extensions.consistency.atLeast`): the
/// query answers once the read models it reads have reached the cursor, or with
/// `CONSISTENCY_TIMEOUT`.
#[derive(SimpleObject, Clone, Debug, Default)]
pub struct Receipt {
    /// The record the mutation acted on or created (e.g. `order_…`, a contact id for a
    /// conversation, `wallet_…`, a feature name for a price).
    pub id: String,
    /// Every record the mutation touched, `id` first (e.g. a payment and the order it was
    /// matched to).
    pub ids: Vec<String>,
    /// The log cursor of the last event the mutation appended; for a repeated idempotent
    /// mutation that changed nothing, the cursor of the stream's latest event (its first
    /// outcome). Pass it as `atLeast` to read your own write. A mutation that wrote no event
    /// answers the log's start (`c1.AAAAAAAAAAAAAAAAAAAAAA`), which every read model has reached.
    pub cursor: String,
    /// The global log position of the event `cursor` points at (null when it points at the
    /// start).
    pub position: Option<i64>,
    /// Events appended: 0 when the mutation repeated an earlier one and changed nothing.
    pub appended: i32,
    /// The outcome, for mutations that have several: a lead's outcome (`captured`,
    /// `qualified`, …), a campaign's status (`SCHEDULED`, …), a payment's (`MATCHED`, …), a
    /// payment request's (`pending`, …).
    pub status: Option<String>,
    /// The wallet operation's own reference (purchases, transfers, sub-wallets, thresholds).
    pub reference: Option<String>,
    /// The wallet's balances right after a wallet operation.
    pub wallet: Option<Balances>,
    /// What a campaign holds: its recipients and the tokens reserved for them.
    pub campaign: Option<CampaignReservation>,
    /// The ticket a new service request was given.
    pub ticket: Option<ServiceTicket>,
    /// The provider's id for a payment request it accepted (e.g. a Stripe session), if any.
    pub provider_request_id: Option<String>,
    /// `requestPayment`: the page the customer pays on (Stripe Checkout), to send them.
    pub payment_url: Option<String>,
    /// The whole price list after `setPrice`.
    pub prices: Option<Vec<super::wallets::FeaturePrice>>,
    /// `issueApiKey`: the whole key, shown this once (hand it to the program, which sends it as
    /// `Authorization: Bearer <secret>`; Chronicle keeps only its hash). `createWebhook` and
    /// `rotateWebhookSecret`: the endpoint's signing secret (`whsec_…`), shown this once.
    pub secret: Option<String>,
    /// `issueApiKey` only: the key as `apiKeys` lists it.
    pub api_key: Option<super::api_keys::ApiKey>,
    /// `testWebhook` and `redeliverWebhook`: how the delivery went.
    pub delivery: Option<super::webhooks::WebhookDelivery>,
    /// `inviteUser`: the user as `users` lists them. (`inviteUser`, `renewInvitation` and
    /// `issuePasswordReset` answer their one-time token in `secret`.)
    pub user: Option<super::users::User>,
    /// `beginTwoFactorEnrolment`: the secret for the authenticator app.
    pub two_factor_enrolment: Option<super::users::TwoFactorEnrolment>,
    /// `confirmTwoFactor`: ten one-time recovery codes (`abcde-fghij`), shown this once; each
    /// signs in once in place of a TOTP code.
    pub recovery_codes: Option<Vec<String>>,
}

/// A wallet's balances, in milli-tokens.
#[derive(SimpleObject, Clone, Debug, Default, PartialEq, Eq)]
pub struct Balances {
    /// Tokens held.
    pub balance: i64,
    /// Tokens set aside for work in flight (campaign runs, transfers).
    pub reserved: i64,
    /// What can be spent now: `balance - reserved`.
    pub available: i64,
}

/// A campaign's reservation.
#[derive(SimpleObject, Clone, Debug, Default, PartialEq, Eq)]
pub struct CampaignReservation {
    /// Recipients in the audience.
    pub recipients: i32,
    /// Milli-tokens per recipient, fixed when the campaign was scheduled (0 before).
    pub unit_price: i64,
    /// Milli-tokens reserved on the wallet for the recipients not yet sent to.
    pub reserved: i64,
}

/// A service request's ticket.
#[derive(SimpleObject, Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceTicket {
    /// The tenant's running ticket number (1, 2, …).
    pub number: i64,
    /// As shown to customers: `SR-0042`.
    pub label: String,
}

impl Receipt {
    /// A receipt for `id`; the cursor is filled by `receipt`, which runs the mutation.
    pub fn new(id: impl Into<String>) -> Self {
        let id = id.into();
        Self {
            ids: vec![id.clone()],
            id,
            cursor: Cursor::START.to_string(),
            ..Self::default()
        }
    }

    /// Adds another record the mutation touched.
    pub fn touched(mut self, id: impl Into<String>) -> Self {
        let id = id.into();
        if !self.ids.contains(&id) {
            self.ids.push(id);
        }
        self
    }

    /// Sets the outcome.
    pub fn outcome(mut self, status: impl Into<String>) -> Self {
        self.status = Some(status.into());
        self
    }

    /// Sets the outcome from a GraphQL enum value, as clients see it (`SCHEDULED`).
    pub fn outcome_enum<E: async_graphql::InputType>(self, status: E) -> Self {
        let name = match status.to_value() {
            async_graphql::Value::Enum(name) => name.to_string(),
            other => other.to_string(),
        };
        self.outcome(name)
    }

    /// Sets a campaign's reservation.
    pub fn with_campaign(mut self, campaign: CampaignReservation) -> Self {
        self.campaign = Some(campaign);
        self
    }

    /// Sets a wallet's balances and the operation's reference.
    pub fn with_wallet(mut self, reference: impl Into<String>, wallet: Balances) -> Self {
        self.reference = Some(reference.into());
        self.wallet = Some(wallet);
        self
    }

    /// Fills the cursor, position and count from what the mutation wrote.
    fn with_written(mut self, written: Written) -> Self {
        let cursor = written.last.map_or(Cursor::START, |p| Cursor::new(p.tx_id, p.position));
        self.cursor = cursor.to_string();
        self.position = (cursor != Cursor::START).then_some(cursor.position);
        self.appended = i32::try_from(written.appended).unwrap_or(i32::MAX);
        self
    }
}

/// Runs a mutation's `work` and answers its receipt with the cursor of what the commands it ran
/// wrote (they run in this task, where [`track_writes`] watches them).
pub(crate) async fn receipt(
    work: impl Future<Output = async_graphql::Result<Receipt>>,
) -> async_graphql::Result<Receipt> {
    // Boxed: a resolver's future is large, and the scope would otherwise carry it inline.
    let (result, written) = track_writes(Box::pin(work)).await;
    result.map(|r| r.with_written(written))
}
