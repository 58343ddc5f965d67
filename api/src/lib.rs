//! The Chronicle server: GraphQL (queries and subscriptions), provider webhooks, auth, health
//! and metrics, and the wiring of the write side (`chronicle-commands`) and the read side
//! (`chronicle-projections`). The `chronicle` binary is a thin shell over [`cli`].
//!
//! # Layout
//!
//! - [`config`]: settings from the environment, validated at start; secrets redacted.
//! - [`app`]: the application state, the router, background tasks (projector runners and the
//!   write side's workers, `chronicle_commands::workers`) and `serve`.
//! - [`auth`]: JWT access tokens and API keys; the tenant always comes from the credential.
//! - [`permissions`]: the one permission table (what each role may do), consulted by every
//!   resolver.
//! - [`error`]: the one API error type, an HTTP response and a GraphQL error with
//!   `extensions.code`.
//! - [`graphql`]: the schema, one module per area, merged in one place.
//! - [`http`]: the REST routes others dictate: WhatsApp webhooks, `/health`, `/metrics`.
//! - [`metrics`]: the Prometheus registry and request metrics.
//! - [`sandbox`]: development mode's WhatsApp Cloud API stand-in (sends, statuses, media,
//!   customers writing in).
//! - [`sessions`]: sessions' lives and the sign-in limiter (Redis or memory).
//! - [`telemetry`]: tracing set-up (pretty or JSON).
//! - [`webhooks`]: delivering events to integrators' webhook endpoints, signed by the Standard
//!   Webhooks specification, in order, retried, disabled after persistent failure.
//! - [`cli`]: `chronicle serve`, the `chronicle admin` commands and `chronicle sandbox`.

#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod graphql;
pub mod http;
pub mod metrics;
pub mod payment_sandbox;
pub mod permissions;
pub mod sandbox;
pub mod sessions;
pub mod telemetry;
pub mod webhooks;
