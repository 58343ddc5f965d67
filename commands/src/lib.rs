//! The write side of Chronicle: the only writer of the event log.
//!
//! # Layout
//!
//! - [`dispatch`]: [`dispatch::Commands`], the tenant-scoped command dispatcher over cqrs-es and
//!   postgres-es: metadata on every command, bounded retry of write conflicts, snapshots per
//!   aggregate, wake-ups after each append, metrics.
//! - [`repository`]: Chronicle's event repository over postgres-es's tables: appends that
//!   return their log positions, one-statement snapshot loads.
//! - [`committer`]: group commit in the application: the events of concurrent commands of
//!   different callers appended by one statement, each command stored all or none.
//! - `store` (private): one aggregate type's load, decide and append, with an in-process cache
//!   of recently used aggregates and snapshots taken after the command that crosses them.
//! - [`api_keys`]: API keys for programs: issued (the secret shown once, its hash kept beside
//!   the log), revoked at once, and checked on every request.
//! - [`users`]: users (invitations, roles, deactivation, password resets, the second factor),
//!   sign-in and rotating refresh-token sessions, with credentials kept beside the log.
//! - [`webhooks`]: webhook endpoints: created, rotated, disabled as events; their secrets and
//!   delivery state (checkpoint, failures, the delivery log) beside the log.
//! - [`announce`]: wake-ups after commit (this process at once; others through Redis or a
//!   coalesced `pg_notify` outside write transactions).
//! - [`error`]: [`error::CommandError`], a refusal (the caller's fault, with its domain code), a
//!   conflict, or an unexpected failure.
//! - [`http`]: form bodies, retry pacing and the Graph API client, for every worker that calls
//!   out.
//! - [`keystore`]: per-contact data keys, created on first use and stored wrapped by the master
//!   key.
//! - [`outbound`]: queueing a message, the metered send ([`outbound::send_metered`]: charge,
//!   queue, refund a refusal) and the WhatsApp sender working the `outbox` table (never sends a
//!   message twice).
//! - [`leads`]: lead capture with duplicate detection (phone or e-mail of an open lead) and the
//!   other lead commands, keeping the duplicate index in step.
//! - [`media`]: the media fetcher working `media_jobs`: inbound WhatsApp media fetched from the
//!   Graph API, sha-256 checked, stored sealed in `media_blobs`, retried with backoff.
//! - [`tenants`]: the tenant registry and the WhatsApp numbers mapped to tenants.
//! - [`contacts`]: contact registration, profile, tags, consent (WhatsApp keywords) and erasure
//!   (`ContactErased` appended, data key destroyed; the projectors clear their rows).
//! - [`campaigns`]: campaign commands (scheduling reserves on the main wallet first) and the
//!   campaign runner: rate-limited batches, capture per batch, failed recipients refunded.
//! - [`calls`]: completed calls from the telephony webhook and the call follow-up worker.
//! - [`installation`]: orders, installation records, payouts, warranties, claims, service
//!   requests and maintenance contracts, one file each as in the domain, and the area's process
//!   managers (paid order → installation; commissioning → payout, warranties, notification; the
//!   SLA and auto-renewal sweeper).
//! - [`wallets`]: the token wallets' write side ([`wallets::WalletService`]: open, purchase,
//!   debit, reserve, capture, release, refund, transfer) with typed outcomes.
//! - [`wallet_sweeper`]: the wallet sweeper (lost transfer halves, expired reservations,
//!   low-balance alerts and auto-refill requests) over the `wallet_work` lists.
//! - [`metering`]: billable actions priced by the tenant's price list, charged to the main
//!   wallet before they run and refunded when they fail.
//! - [`payments`]: payment callbacks (Paynow, M-Pesa, Stripe-style): verified, confirmed with
//!   the provider, recorded once per provider reference, matched to an order or a wallet top-up
//!   or kept unmatched for finance.
//! - [`workers`]: every background worker, built once ([`workers::Workers`]) and run under one
//!   supervisor and one polling loop.
//! - [`intake`]: inbound webhooks: verification, the inbox table, and processing of inbox rows
//!   into commands.
//!
//! A command becomes events like this: a webhook or a mutation builds a domain command (with
//!   personal fields sealed by the key store), [`dispatch::Commands`] runs it with its metadata
//!   on the aggregate (cached, or loaded by `store`), the aggregate in `domain` decides,
//!   Chronicle's event repository ([`repository`]) appends the events through the
//!   [`committer`] (with other callers' commands in one statement) and hands their positions
//!   back ([`dispatch::Appended`]), the database stamps tenant, position, transaction id and
//!   hash, and [`announce`] wakes the readers.

#![forbid(unsafe_code)]

pub mod announce;
pub mod api_keys;
pub mod calls;
pub mod campaigns;
pub mod committer;
pub mod contacts;
pub mod dispatch;
pub mod error;
pub mod http;
pub mod installation;
pub mod intake;
pub mod keystore;
pub mod leads;
pub mod media;
pub mod metering;
pub mod outbound;
pub mod payments;
pub mod repository;
mod store;
pub mod tenants;
pub mod users;
pub mod wallet_sweeper;
pub mod wallets;
pub mod webhooks;
pub mod workers;

/// The Redis channel on which appends are announced (payload: the tenant id) when Redis is
/// configured. The read side subscribes to the same name (`projections::wake::REDIS_CHANNEL`).
pub const REDIS_WAKE_CHANNEL: &str = "chronicle:events";
