//! The write side of Chronicle: the only writer of the event log.
//!
//! # Layout
//!
//! - [`dispatch`]: [`dispatch::Commands`], the tenant-scoped command dispatcher over cqrs-es and
//!   postgres-es: metadata on every command, bounded retry of write conflicts, snapshots per
//!   aggregate, wake-ups after each append, metrics.
//! - [`error`]: [`error::CommandError`], a refusal (the caller's fault, with its domain code), a
//!   conflict, or an unexpected failure.
//! - [`keystore`]: per-contact data keys, created on first use and stored wrapped by the master
//!   key.
//! - [`outbound`]: the WhatsApp sender working the `outbox` table (never sends a message twice).
//! - [`leads`]: lead capture with duplicate detection (phone or e-mail of an open lead) and the
//!   other lead commands, keeping the duplicate index in step.
//! - [`media`]: the media fetcher working `media_jobs`: inbound WhatsApp media fetched from the
//!   Graph API, sha-256 checked, stored sealed in `media_blobs`, retried with backoff.
//! - [`tenants`]: the tenant registry and the WhatsApp numbers mapped to tenants.
//! - [`contacts`]: contact registration, profile, tags, consent (WhatsApp keywords) and erasure
//!   (data key destroyed, read models scrubbed).
//! - [`calls`]: completed calls from the telephony webhook and the call follow-up worker.
//! - [`worker`]: the polling loop of the queue workers (outbound sender, media fetcher).
//! - [`intake`]: inbound webhooks: verification, the inbox table, and processing of inbox rows
//!   into commands.
//!
//! A command becomes events like this: a webhook or a mutation builds a domain command (with
//!   personal fields sealed by the key store), [`dispatch::Commands`] runs it with its metadata
//!   through cqrs-es, the aggregate in `domain` decides, postgres-es appends the events, and
//!   the database stamps tenant, position, transaction id and hash.

#![forbid(unsafe_code)]

pub mod calls;
pub mod contacts;
pub mod dispatch;
pub mod error;
pub mod intake;
pub mod keystore;
pub mod leads;
pub mod media;
pub mod outbound;
pub mod tenants;
pub mod worker;

/// The Redis channel on which appends are announced (payload: the tenant id) when Redis is
/// configured. The read side subscribes to the same name (`projections::wake::REDIS_CHANNEL`).
pub const REDIS_WAKE_CHANNEL: &str = "chronicle:events";
