//! The read side of Chronicle: the only reader of the event log.
//!
//! # Layout
//!
//! - [`log`]: the global log reader. Reads the events after an opaque [`log::Cursor`], in
//!   batches, optionally for one tenant and a set of event types, in an order that never skips
//!   an event whose transaction commits late (DESIGN.md, "Reading the whole log without gaps").
//! - [`live`]: the live log: one tail per process fanned out to every subscriber.
//! - [`wake`]: wake-ups when events are appended: LISTEN for the writers' notifications sent
//!   after commit, or Redis pub/sub when configured, with polling as the fallback.
//! - [`runtime`]: the projector runtime: named projectors, batches committed with their
//!   checkpoint in one transaction, one active runner per projector across processes, lag.
//!   [`projectors`] lists every projector Chronicle runs.
//! - [`rebuild`]: blue/green rebuilds: new tables beside the live ones, filled from one read of
//!   the log shared by the projectors rebuilt, compared with the live ones and swapped in one
//!   transaction while queries go on (the replay tool's `rebuild`).
//! - [`page`]: the one shape of a paged list ([`page::Page`], [`page::BadCursor`]) and the
//!   keyset cursors every list gives out.
//! - `shared` (private): what every projector shares: the tenant scope of a transaction
//!   (`begin_for_tenant` for every query, `all_tenants` for projectors), contacts' data keys,
//!   decoding an event's payload, and clearing a person's rows on `ContactErased`.
//! - [`chain`]: the per-stream sha-256 hash chain, computed as the database computes it, for
//!   verification.
//! - [`digest`]: tenant digests, one hash over the heads of a tenant's streams as of a cursor,
//!   kept outside the database to prove later that covered history is unchanged.
//! - [`conversations`]: the `conversations` projector and its queries.
//! - [`messages`]: the `messages` projector (messages in order, status timelines, conversation
//!   details and notes) and its queries.
//! - [`outbox`]: the `outbox` projector, which feeds outbound messages to the sender
//!   (`outbox_feed`; decision 0013).
//! - [`leads`]: the `leads` projector (leads and their stage transitions), lead queries and the
//!   funnel.
//! - [`contacts`], [`templates`], [`calls`]: the `contacts`, `templates` and `calls` read models,
//!   and the call follow-up feed (`call_follow_up_feed`, `call_follow_up_outcome_feed`).
//! - [`campaigns`]: the `campaigns` and `campaign_recipients` read models, and the campaign
//!   runner's feeds (`campaign_run_feed`, `campaign_outcome_feed`).
//! - [`installation`]: orders, installation records (with the timeline), payouts, warranties,
//!   claims, service requests and maintenance contracts, one file each as in the domain, and the
//!   feeds of the area's process managers and sweepers.
//! - [`agents`]: the `agent_performance` projector (conversation episodes: first response and
//!   resolution times, assignments) and the per-agent figures of a period.
//! - [`media`]: the `media` projector: the `media_job_feed` of inbound media to fetch, and the
//!   `media_files` read model of their fetch status.
//! - [`payment_requests`]: the `payment_requests` projector: payment requests with where they
//!   stand (requested, sent, paid, failed, cancelled, expired), filtered and paged.
//! - [`payments`]: the `payments` projector: payments from provider callbacks, matched or
//!   unmatched (finance's work list).
//! - [`contract`]: the event contract: events as integrators receive them (plain data,
//!   personal fields opened or omitted, versioned).
//! - [`personal`]: personal fields of events opened for readers of the log (the replay tool,
//!   the API's event contract): plaintext, withheld, erased, never an envelope.
//! - [`wallets`]: the `wallets` projector: wallet balances, the ledger with running balances
//!   (usage per feature per day is a query over it) and reservations.
//! - [`wallet_work`]: the `wallet_work` projector: the wallet sweeper's work lists and the
//!   `wallet_alerts` read model (low-balance alerts, auto-refill requests).
//! - [`MIGRATOR`]: the one migrator of the schema, shared by the server and the tests.
//! - [`embedded`]: the private PostgreSQL cluster of development mode (no `DATABASE_URL`),
//!   shared by `chronicle serve`, `chronicle admin` and `chronicle-replay` (decision 0012).

#![forbid(unsafe_code)]

pub mod agents;
pub mod calls;
pub mod campaigns;
pub mod chain;
pub mod contacts;
pub mod contract;
pub mod conversations;
pub mod customers;
pub mod digest;
pub mod embedded;
pub mod installation;
pub mod leads;
pub mod live;
pub mod log;
pub mod media;
pub mod messages;
pub mod outbox;
pub mod page;
pub mod payment_requests;
pub mod payments;
pub mod personal;
pub mod rebuild;
pub mod runtime;
mod shared;

/// The tenant-scoped read transaction every query begins with (also used by the replay tool's export).
pub use shared::{begin_for_tenant, for_tenant};
pub mod templates;
pub mod wake;
pub mod wallet_work;
pub mod wallets;

/// Every projector Chronicle runs, in the order the server starts them and a rebuild applies
/// a batch to them. `master` opens the personal fields some read models show (names, texts).
pub fn projectors(master: &chronicle_domain::pii::MasterKey) -> Vec<std::sync::Arc<dyn runtime::Projector>> {
    use std::sync::Arc;
    vec![
        Arc::new(conversations::ConversationsProjector::new(master.clone())),
        Arc::new(leads::LeadsProjector::new(master.clone())),
        Arc::new(contacts::ContactsProjector::new(master.clone())),
        Arc::new(templates::TemplatesProjector),
        Arc::new(calls::CallsProjector::new(master.clone())),
        Arc::new(calls::CallFollowUpsProjector),
        Arc::new(campaigns::CampaignsProjector),
        Arc::new(campaigns::CampaignWorkProjector),
        Arc::new(outbox::OutboxProjector),
        Arc::new(media::MediaProjector::new(master.clone())),
        Arc::new(messages::MessagesProjector::new(master.clone())),
        Arc::new(agents::AgentPerformanceProjector),
        Arc::new(payments::PaymentsProjector),
        Arc::new(payment_requests::PaymentRequestsProjector),
        Arc::new(installation::InstallationWorkProjector),
        Arc::new(installation::OrdersProjector),
        Arc::new(installation::InstallationsProjector::new(master.clone())),
        Arc::new(installation::PayoutsProjector),
        Arc::new(wallets::WalletsProjector),
        Arc::new(wallet_work::WalletWorkProjector),
        Arc::new(installation::WarrantiesProjector),
        Arc::new(installation::ServiceProjector),
        Arc::new(installation::ServiceWorkProjector),
        Arc::new(customers::CustomersProjector),
    ]
}

/// The schema's only migrator: applied at start-up by the server and by every test database
/// (`#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
