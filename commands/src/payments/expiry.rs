//! The payment requests' expiry sweeper: [`RequestExpirySweeper`] finds open requests (`requested`
//! or `sent`) past their expiry in the `payment_requests` read model, by the database's clock,
//! and sends each `Expire`, so the request lists as expired without waiting for a late callback
//! (which the aggregate refuses by its time either way). It only reads the read model and only
//! writes commands; the projector records the expiry when the event arrives.
//!
//! `Expire` is idempotent (an expired request records nothing), so a pass that finds a request
//! again before the projector has caught up changes nothing; a request paid or cancelled in
//! between is refused by the aggregate (`PAYMENT_REQUEST_CLOSED`) and left as it is.
//!
//! With the payment intake ([`RequestExpirySweeper::with_intake`], as the server runs it) the
//! sweeper also
//! - tells the provider an expired request's page no longer takes payments where the provider
//!   can be told: Stripe's Checkout Session is expired (it may outlive a short request, since
//!   Stripe keeps a session open 45 minutes at least). M-Pesa's prompt times out on the phone by
//!   itself; Paynow offers no cancellation (a payment that still arrives is kept for finance as
//!   `REQUEST_EXPIRED`);
//! - sends the reminders that are due of open requests that went to the customer on WhatsApp
//!   (the same template again, metered; see [`PaymentIntake::remind`]);
//! - polls open Paynow requests' status (each at most once every `paynow_poll_every`), so an
//!   Express payment whose result callback never comes still pays its request, and a prompt
//!   the customer declined fails it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chronicle_domain::metadata::{Actor, CommandMetadata};
use chronicle_domain::payment_request::PaymentRequestCommand;
use chronicle_domain::tenant::TenantId;
use chrono::{DateTime, Utc};
use sqlx::Row;
use tracing::Instrument;

use super::PaymentIntake;
use crate::dispatch::Commands;
use crate::error::CommandError;

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpiryPass {
    /// Requests sent `Expire` (or found expired already).
    pub expired: u32,
    /// Requests the aggregate would not expire (paid or cancelled since the read model saw them).
    pub refused: u32,
    /// Requests left for a later pass after a transient failure.
    pub retry: u32,
    /// Open Paynow requests whose status was polled.
    pub polled: u32,
    /// Reminders sent (or found refused for good, see [`PaymentIntake::remind`]).
    pub reminded: u32,
}

impl ExpiryPass {
    /// Requests worked.
    pub fn worked(&self) -> u32 {
        self.expired + self.refused + self.retry + self.polled + self.reminded
    }
}

/// The sweeper (see the module docs).
#[derive(Clone, Debug)]
pub struct RequestExpirySweeper {
    commands: Commands,
    intake: Option<PaymentIntake>,
    paynow_poll_every: Duration,
    /// When each open Paynow request was last polled (this process's memory: a restart polls
    /// each once more, which is harmless).
    last_polled: Arc<Mutex<HashMap<(String, String), Instant>>>,
}

impl RequestExpirySweeper {
    /// A sweeper that only expires requests.
    pub fn new(commands: Commands) -> Self {
        Self {
            commands,
            intake: None,
            paynow_poll_every: Duration::from_secs(20),
            last_polled: Arc::default(),
        }
    }

    /// Also closes expired requests with their provider and polls open Paynow requests, each
    /// at most once every `paynow_poll_every`.
    pub fn with_intake(mut self, intake: PaymentIntake, paynow_poll_every: Duration) -> Self {
        self.intake = Some(intake);
        self.paynow_poll_every = paynow_poll_every;
        self
    }

    /// (tenant, request id) of every tenant's requests `sql` selects (`$1` its limit): row-level
    /// security lets the sweeper read across tenants (migration 0007).
    async fn requests(&self, sql: &str, limit: i64) -> Result<Vec<(String, String)>, CommandError> {
        let mut tx = self.commands.pool().begin().await?;
        sqlx::query("SELECT set_config('chronicle.tenant_id', '*', true)")
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query_as(sql).bind(limit).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// Sends up to `limit` reminders that are due, of open requests sent on WhatsApp.
    async fn remind(&self, limit: i64, pass: &mut ExpiryPass) -> Result<(), CommandError> {
        let Some(intake) = &self.intake else {
            return Ok(());
        };
        let rows = self
            .requests(
                "SELECT tenant_id, request_id FROM payment_requests
                  WHERE status = 'sent' AND remind_at IS NOT NULL AND reminded_at IS NULL
                    AND remind_at <= now() AND expires_at > now()
                  ORDER BY remind_at, tenant_id, request_id
                  LIMIT $1",
                limit,
            )
            .await?;
        for (tenant, request_id) in rows {
            let Ok(tenant_id) = TenantId::parse(&tenant) else {
                continue;
            };
            let correlation = format!("payment-request-reminder:{request_id}");
            let span = tracing::info_span!("payment_request.remind", tenant.id = %tenant, payment_request.id = %request_id, correlation.id = %correlation);
            match intake
                .remind(&tenant_id, &request_id, &correlation)
                .instrument(span)
                .await
            {
                Ok(true) => pass.reminded += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(tenant.id = %tenant, payment_request.id = %request_id, error = %e, "a payment request reminder will be retried");
                    pass.retry += 1;
                }
            }
        }
        Ok(())
    }

    /// Polls up to `limit` open Paynow requests not polled within `paynow_poll_every`.
    async fn poll_paynow(&self, limit: i64, pass: &mut ExpiryPass) -> Result<(), CommandError> {
        let Some(intake) = &self.intake else {
            return Ok(());
        };
        // Open requests; requests expired in the last two minutes (a payment made just before
        // the expiry whose callback never came); paid ones whose payment is not recorded yet.
        let rows = self
            .requests(
                "SELECT pr.tenant_id, pr.request_id FROM payment_requests pr
              WHERE pr.provider = 'paynow'
                AND (pr.status = 'sent'
                     OR (pr.status = 'expired' AND pr.closed_at > now() - interval '2 minutes')
                     OR (pr.status = 'paid' AND pr.closed_at > now() - interval '1 day'
                         AND NOT EXISTS (SELECT 1 FROM payments p
                                          WHERE p.tenant_id = pr.tenant_id AND p.provider = 'paynow'
                                            AND p.reference = pr.provider_reference
                                            AND p.status IN ('matched', 'unmatched'))))
              ORDER BY pr.sent_at, pr.tenant_id, pr.request_id
              LIMIT $1",
                1_000,
            )
            .await?;
        let due: Vec<(String, String)> = {
            let mut last = self.last_polled.lock().unwrap_or_else(|e| e.into_inner());
            let open: std::collections::HashSet<&(String, String)> = rows.iter().collect();
            last.retain(|key, _| open.contains(key));
            rows.iter()
                .filter(|key| last.get(*key).is_none_or(|at| at.elapsed() >= self.paynow_poll_every))
                .take(usize::try_from(limit).unwrap_or(usize::MAX))
                .cloned()
                .collect()
        };
        for (tenant, request_id) in due {
            self.last_polled
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert((tenant.clone(), request_id.clone()), Instant::now());
            let Ok(tenant_id) = TenantId::parse(&tenant) else {
                continue;
            };
            let correlation = format!("paynow-poll:{request_id}");
            let span = tracing::info_span!("payment_request.poll", tenant.id = %tenant, payment_request.id = %request_id, correlation.id = %correlation);
            match intake
                .poll_paynow_request(&tenant_id, &request_id, &correlation)
                .instrument(span)
                .await
            {
                Ok(_) => pass.polled += 1,
                Err(e) => {
                    tracing::warn!(tenant.id = %tenant, payment_request.id = %request_id, error = %e, "polling a Paynow request failed; polled again later");
                    pass.retry += 1;
                    if matches!(e, super::CallbackError::Upstream(_)) {
                        // Paynow is slow or down: the rest waits for the next pass rather than
                        // holding expiries and reminders behind a timeout each.
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// One pass over up to `limit` open requests past their expiry, oldest expiry first.
    pub async fn run_once(&self, limit: i64) -> Result<ExpiryPass, CommandError> {
        let mut pass = ExpiryPass::default();
        // Paynow first: a payment made just before the expiry is found before the request
        // expires (and one found after is kept for finance).
        self.poll_paynow(limit, &mut pass).await?;
        let mut tx = self.commands.pool().begin().await?;
        // Every tenant's requests (row-level security, migration 0007).
        sqlx::query("SELECT set_config('chronicle.tenant_id', '*', true)")
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query(
            "SELECT tenant_id, request_id, now() AS db_now FROM payment_requests
              WHERE status IN ('requested', 'sent') AND expires_at <= now()
              ORDER BY expires_at, tenant_id, request_id
              LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        for row in rows {
            let tenant: String = row.try_get("tenant_id")?;
            let request_id: String = row.try_get("request_id")?;
            let now: DateTime<Utc> = row.try_get("db_now")?;
            let correlation = format!("request-expiry:{request_id}");
            let span = tracing::info_span!("payment_request.expire", tenant.id = %tenant, payment_request.id = %request_id, correlation.id = %correlation);
            let result = async {
                let metadata = CommandMetadata {
                    tenant_id: TenantId::parse(&tenant).map_err(|e| CommandError::InvalidInput(e.to_string()))?,
                    actor: Actor::System {
                        component: "payment-request-expiry".into(),
                    },
                    causation_id: correlation.clone(),
                    correlation_id: correlation.clone(),
                };
                self.commands
                    .payment_request(&request_id, PaymentRequestCommand::Expire { at: now }, &metadata)
                    .await
            }
            .instrument(span)
            .await;
            match result {
                Ok(_) => {
                    pass.expired += 1;
                    if let Some(intake) = &self.intake {
                        intake.close_expired_with_provider(&tenant, &request_id).await;
                    }
                }
                Err(e @ (CommandError::Rejected(_) | CommandError::InvalidInput(_))) => {
                    tracing::info!(tenant.id = %tenant, payment_request.id = %request_id, reason = %e, "payment request not expired: closed since");
                    pass.refused += 1;
                }
                Err(e) => {
                    tracing::warn!(tenant.id = %tenant, payment_request.id = %request_id, error = %e, "payment request expiry will be retried");
                    pass.retry += 1;
                }
            }
        }
        self.remind(limit, &mut pass).await?;
        Ok(pass)
    }

    /// Runs until `shutdown` turns true, a pass every `poll`.
    pub async fn run(self, poll: Duration, shutdown: tokio::sync::watch::Receiver<bool>) {
        crate::workers::poll_until_shutdown("payment-request-expiry", poll, shutdown, || async {
            let pass = self.run_once(100).await?;
            if pass.worked() > 0 {
                tracing::info!(
                    expired = pass.expired,
                    refused = pass.refused,
                    retry = pass.retry,
                    polled = pass.polled,
                    reminded = pass.reminded,
                    "payment request expiry pass"
                );
            }
            // Never busy: requests stay listed until the projector records their expiry.
            Ok(false)
        })
        .await;
    }
}
