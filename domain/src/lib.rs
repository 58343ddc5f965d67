//! Chronicle's domain: aggregates, commands, events, errors and value types. Pure: no IO, no
//! database, HTTP, GraphQL or Redis. Everything here can be tested with cqrs-es's
//! `TestFramework` alone.
//!
//! # Layout
//!
//! - [`tenant`]: tenant ids, the prefix of every stream id.
//! - [`metadata`]: the metadata every command carries (tenant, actor, correlation, causation)
//!   and that cqrs-es stores beside each event.
//! - [`crypto`]: the one home of keyed hashes (HMAC-SHA256/SHA1) and constant-time comparison.
//! - [`pii`]: personal data in an immutable log: per-contact data keys, ciphertext envelopes,
//!   contact ids from a keyed hash (DESIGN.md, "Personal data in an immutable log").
//! - [`phone`]: E.164 phone numbers, parsed once at the edge.
//! - [`conversation`]: the `Conversation` aggregate (WhatsApp inbox).
//! - [`contact`]: the `Contact` aggregate: identity, profile, tags, consent, erasure.
//! - [`template`]: the `Template` aggregate: WhatsApp message templates and their approval.
//! - [`lead`]: the `Lead` aggregate: capture, scoring, assignment, the sales pipeline.
//! - [`media`]: the `Media` aggregate: inbound media fetched and stored as a retried step.
//! - [`wallet`]: token wallets: purchases, debits, reservations, refunds, transfers (issue 5).
//! - [`installation`]: orders, installation system records and technician payouts (issue 4).
//! - [`payment`]: the `Payment` aggregate: provider callbacks confirmed once, matched to an
//!   order or a wallet top-up, or kept unmatched for finance (issue 4).
//! - [`payment_provider`]: the `PaymentProviderConfig` aggregate: who configured which payment
//!   provider when (its settings and the names of its secrets; the secrets live beside the log).
//! - [`payment_request`]: the `PaymentRequest` aggregate: asking a customer to pay a fixed
//!   amount through a provider; a callback counts only when it matches an open request (issue 16).
//! - [`campaign`]: the `Campaign` aggregate: template broadcasts to a segment, paid from a
//!   wallet reservation (issue 5).
//! - [`call`]: the `Call` aggregate: completed calls and their WhatsApp follow-ups; tenants'
//!   automation rules.
//! - [`api_key`]: the `ApiKey` aggregate: credentials for programs, with a role and scopes
//!   (issue 13).
//! - [`totp`]: time-based one-time passwords (RFC 6238), the second factor of sign-in.
//! - [`user`]: the `User` aggregate: people who sign in, their roles, invitations, resets and
//!   second factor (issue 14).
//! - [`webhook`]: the `WebhookEndpoint` aggregate: integrators' receivers of events (issue 13).
//! - [`catalogue`]: the event catalogue: every event type's data as a JSON Schema, generated
//!   from these types (issue 13).
//! - [`upcast`]: upcasters: old stored versions of an event type read as its current shape
//!   (issue 13).
//! - [`aggregates`]: every aggregate type in one list, and `for_aggregate_type!` to run code
//!   with the aggregate a log row's `aggregate_type` names.

#![forbid(unsafe_code)]

pub mod aggregates;
pub mod api_key;
pub mod call;
pub mod campaign;
pub mod catalogue;
pub mod contact;
pub mod conversation;
pub mod crypto;
pub mod installation;
pub mod lead;
pub mod media;
pub mod metadata;
pub mod payment;
pub mod payment_provider;
pub mod payment_request;
pub mod phone;
pub mod pii;
pub mod template;
pub mod tenant;
pub mod totp;
pub mod upcast;
pub mod user;
pub mod wallet;
pub mod webhook;
