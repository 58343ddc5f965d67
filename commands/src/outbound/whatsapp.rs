//! The WhatsApp Cloud API sender (also of read receipts, [`receipts`], and of template
//! submissions to Meta's review, [`templates`]): copies the `outbox` projector's feed into its own `outbox`
//! table ([`Admission`]: the feed is rebuildable, the outbox is the sender's record of what it
//! handed to WhatsApp), claims due rows of the `outbox`, opens their sealed
//! recipient and body with the contact's data key, renders the Graph API request, sends it
//! from the tenant's mapped business number, and records the outcome on the conversation
//! (`OutboundMessageSent` / `OutboundMessageFailed`).
//!
//! # Never twice
//!
//! A message is sent at most once; where that cannot be known, a person decides.
//!
//! 1. A row is claimed by one short statement that moves it `pending → sending`
//!    (`FOR UPDATE SKIP LOCKED`, committed before any network call), so two senders never
//!    hold one row.
//! 2. Before calling WhatsApp the sender checks the log: if the conversation already records
//!    an outcome for the idempotency key (an outbox rebuilt from the log), the row is settled
//!    and nothing is sent.
//! 3. Only answers that prove WhatsApp did not accept the message put a row back to `pending`
//!    (with backoff): a 5xx, a 429, or a connection that was never established. A 4xx is a
//!    refusal: recorded as failed with the provider's code, not retried.
//! 4. A request that may have reached WhatsApp without an answer (a timeout after connecting,
//!    a broken response, a 2xx without a message id) is marked `needs_operator`, never resent
//!    automatically. So is a row found still `sending` after `stale_after` (its sender crashed
//!    between claiming and settling).
//! 5. After a 2xx the outcome is recorded in the log (retried a few times), then the row is
//!    marked `sent`; if the record cannot be written the row stays `sending` and step 4 hands
//!    it to an operator: the message is not sent again.
//!
//! After `max_attempts` retryable failures the message is recorded as failed with
//! `retryable: true`.
//!
//! A message recorded as failed that a user paid for through metering (`metered_actions`) is
//! refunded (`provider_refused` for a provider's definitive refusal, `send_failed` otherwise).

use std::fmt;
use std::time::Duration;

use chronicle_domain::conversation::rich::{present, Choices, Interactive, MediaSource};
use chronicle_domain::conversation::{
    ConversationCommand, HeaderParameter, OutboundBody, OutboundFailed, OutboundRetry, OutboundSent,
};
use chronicle_domain::metadata::{Actor, CommandMetadata};
use chronicle_domain::pii::{Envelope, IdKey};
use chronicle_domain::tenant::TenantId;
use chrono::Utc;
use rand::rngs::OsRng;
use serde_json::{json, Value};
use sqlx::{PgPool, Row};
use tracing::Instrument;

use crate::dispatch::Commands;
use crate::error::CommandError;
use crate::http::{backoff_delay, is_retryable, GraphApi};
use crate::keystore::KeyStore;
use crate::media::{read_media, MediaRead};
use crate::metering::{message_action, Metering, RefundReason};
use crate::workers::{Admission, Queue, Stale};

mod receipts;
pub mod templates;

/// The provider name of message references (`IdKey::message_ref`), as the webhook uses it.
pub const PROVIDER: &str = "whatsapp";

/// The actor recorded on outcomes.
pub const COMPONENT: &str = "whatsapp-sender";

/// How the sender reaches WhatsApp and paces retries.
#[derive(Clone)]
pub struct SenderConfig {
    /// The Graph API base, e.g. `https://graph.facebook.com/v21.0` (no trailing slash needed).
    pub base_url: String,
    /// The system user's access token (Bearer). Never printed.
    pub access_token: String,
    /// Timeout of one request.
    pub request_timeout: Duration,
    /// Attempts before a retryable failure is recorded as failed.
    pub max_attempts: i32,
    /// The first retry's delay; doubled per attempt up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Rows claimed per pass.
    pub batch_size: i64,
    /// A row still `sending` after this long belonged to a crashed sender.
    pub stale_after: Duration,
}

impl fmt::Debug for SenderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderConfig")
            .field("base_url", &self.base_url)
            .field("access_token", &"[redacted]")
            .field("request_timeout", &self.request_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl SenderConfig {
    /// Defaults for `base_url` and `access_token`: 15 s requests, 8 attempts, backoff from 2 s
    /// to 5 min, 20 rows per pass, claims stale after 2 min.
    pub fn new(base_url: impl Into<String>, access_token: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            access_token: access_token.into(),
            request_timeout: Duration::from_secs(15),
            max_attempts: 8,
            backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(300),
            batch_size: 20,
            stale_after: Duration::from_secs(120),
        }
    }

    /// The time an upload of `bytes` may take: the request timeout and a second per 512 KiB
    /// (a 16 MiB file: 32 s more), never more than half of `stale_after`, so the upload and the
    /// message's own request together end before the claim is taken for a crashed sender's.
    pub fn upload_timeout(&self, bytes: usize) -> Duration {
        let transfer = Duration::from_secs(u64::try_from(bytes / (512 * 1024)).unwrap_or(u64::MAX));
        (self.request_timeout + transfer)
            .min(self.stale_after / 2)
            .max(self.request_timeout)
    }

    fn delay(&self, attempts: i32) -> Duration {
        backoff_delay(self.backoff, self.max_backoff, u32::try_from(attempts).unwrap_or(0))
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendPass {
    pub claimed: usize,
    pub sent: usize,
    pub failed: usize,
    pub retry: usize,
    pub needs_operator: usize,
    /// Rows settled from an outcome already in the log (nothing sent).
    pub settled: usize,
    /// Rows whose outcome could not be recorded (left to retry or to an operator).
    pub unsettled: usize,
    /// Read receipts claimed, and of them those WhatsApp accepted.
    pub receipts: usize,
    pub receipts_sent: usize,
    /// Template submissions claimed, and of them those Meta took.
    pub templates: usize,
    pub templates_submitted: usize,
}

/// A claimed outbox row.
#[derive(Debug)]
struct Claimed {
    outbox_id: i64,
    tenant: TenantId,
    stream_id: String,
    contact_id: String,
    idempotency_key: String,
    business_number_id: Option<String>,
    recipient: Envelope,
    body: OutboundBody,
    attempts: i32,
    correlation_id: String,
    /// When this claim was made: what tells it from a later claim of the same row.
    claimed_at: Option<chrono::DateTime<Utc>>,
}

/// Why a row found `sending` after its sender stopped goes to an operator.
const STALE_REASON: &str = "found sending after its sender stopped: it may have reached WhatsApp";

/// How one attempt ended.
#[derive(Debug)]
enum Attempt {
    /// WhatsApp accepted the message: its id.
    Accepted(String),
    /// A refusal: not retried.
    Refused { code: Option<i64>, title: String },
    /// Not accepted, safe to try again.
    Retry { code: Option<i64>, title: String },
    /// May have reached WhatsApp: an operator decides.
    Unknown(String),
}

/// The WhatsApp sender.
#[derive(Clone)]
pub struct WhatsAppSender {
    pool: PgPool,
    commands: Commands,
    keys: KeyStore,
    ids: IdKey,
    graph: GraphApi,
    queue: Queue,
    admission: Admission,
    /// Read receipts (`read_receipts`, from `read_receipt_feed`): see [`receipts`].
    receipts: Queue,
    receipt_admission: Admission,
    /// Template submissions (`template_submissions`, from `template_submission_feed`): see
    /// [`templates`].
    templates: Queue,
    template_admission: Admission,
    config: SenderConfig,
}

impl fmt::Debug for WhatsAppSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WhatsAppSender")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl WhatsAppSender {
    /// A sender over the outbox of `commands`' pool.
    pub fn new(commands: Commands, keys: KeyStore, config: SenderConfig) -> Result<Self, CommandError> {
        let graph = GraphApi::new(&config.base_url, &config.access_token, config.request_timeout)
            .map_err(|e| CommandError::Unexpected(Box::new(e)))?;
        Ok(Self {
            pool: commands.pool().clone(),
            ids: keys.master().id_key(),
            commands,
            keys,
            graph,
            queue: Queue::new(
                "outbox",
                "outbox_id",
                "sending",
                "outbox_id, tenant_id, stream_id, contact_id, idempotency_key, business_number_id, recipient, body, \
                 attempts, correlation_id, claimed_at",
                Stale::Operator,
                STALE_REASON,
            ),
            admission: Admission::new(
                "outbox_feed",
                "INSERT INTO outbox (tenant_id, stream_id, contact_id, idempotency_key, business_number_id, recipient,
                                     body, next_attempt_at, correlation_id, queued_position, created_at, state)
                 SELECT tenant_id, stream_id, contact_id, idempotency_key, business_number_id, recipient, body, now(),
                        correlation_id, queued_position, created_at, coalesce(settled, 'pending')
                   FROM new ORDER BY position
                 ON CONFLICT (tenant_id, stream_id, idempotency_key) DO UPDATE
                    SET state = excluded.state, claimed_at = NULL, updated_at = now()
                  WHERE excluded.state <> 'pending' AND outbox.state NOT IN ('sent', 'failed')",
            ),
            receipts: receipts::queue(),
            receipt_admission: receipts::admission(),
            templates: templates::queue(),
            template_admission: templates::admission(),
            config,
        })
    }

    /// Copies what the projector's feed gained into the sender's own table (every pass does it
    /// first). Returns how many feed rows were read.
    pub async fn admit(&self) -> Result<u64, CommandError> {
        Ok(self.admission.run(&self.pool).await?)
    }

    /// Hands rows left `sending` by a crashed sender to an operator. Returns how many. (Each
    /// is recorded in its conversation by [`Self::record_uncertain`].)
    pub async fn release_stale(&self) -> Result<u64, CommandError> {
        let stale = self.queue.release_stale(&self.pool, self.config.stale_after).await?;
        if stale > 0 {
            tracing::error!(
                outbox.rows = stale,
                "outbound messages were left sending by a stopped sender; marked needs_operator, not resent"
            );
        }
        Ok(stale)
    }

    /// Records in its conversation every message left for an operator that the log does not
    /// have yet (`OutboundSendUncertain`, with the row's last error as the reason), and marks
    /// the row. Each row is held while it is recorded, so an operator's resend (which holds it
    /// too) comes after the record, never before. A failure leaves the row for the next pass.
    /// Returns how many were recorded.
    pub async fn record_uncertain(&self) -> Result<u64, CommandError> {
        let mut recorded = 0;
        // Past a row that failed this pass: it waits for the next, the others go on (until a
        // few fail: then the store is likely down, and the next pass tries again).
        let mut after = 0_i64;
        let mut failures = 0;
        loop {
            let mut tx = self.pool.begin().await?;
            let Some(row) = sqlx::query(
                "SELECT outbox_id, tenant_id, contact_id, idempotency_key, correlation_id, last_error, updated_at
                   FROM outbox
                  WHERE state = 'needs_operator' AND NOT uncertain_recorded AND outbox_id > $1
                  ORDER BY outbox_id LIMIT 1 FOR UPDATE SKIP LOCKED",
            )
            .bind(after)
            .fetch_optional(&mut *tx)
            .await?
            else {
                tx.commit().await?;
                return Ok(recorded);
            };
            let outbox_id: i64 = row.try_get("outbox_id")?;
            after = outbox_id;
            let tenant: String = row.try_get("tenant_id")?;
            let contact_id: String = row.try_get("contact_id")?;
            let reason: Option<String> = row.try_get("last_error")?;
            if let Ok(tenant) = TenantId::parse(&tenant) {
                let metadata = CommandMetadata {
                    tenant_id: tenant,
                    actor: Actor::System {
                        component: COMPONENT.into(),
                    },
                    correlation_id: row.try_get("correlation_id")?,
                    causation_id: format!("outbox-{outbox_id}"),
                };
                let command = ConversationCommand::RecordOutboundUncertain {
                    idempotency_key: row.try_get("idempotency_key")?,
                    reason: reason.unwrap_or_else(|| STALE_REASON.into()),
                    // When the row was handed over, not when this record is made.
                    at: row.try_get("updated_at")?,
                };
                match self.commands.conversation(&contact_id, command, &metadata).await {
                    // Recorded, or refused for good (a message the conversation does not know):
                    // either way nothing more to do for this row.
                    Ok(_) | Err(CommandError::Rejected(_)) => {}
                    Err(e) => {
                        tracing::warn!(outbox.id = outbox_id, error = %e, "recording a message left for an operator failed; next pass");
                        tx.rollback().await?;
                        failures += 1;
                        if failures >= 3 {
                            return Ok(recorded);
                        }
                        continue;
                    }
                }
            }
            sqlx::query("UPDATE outbox SET uncertain_recorded = true WHERE outbox_id = $1")
                .bind(outbox_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            recorded += 1;
        }
    }

    /// Records a try to be made again in the message's conversation. The sender's own row
    /// decides what it does next, so a failure here is logged, not returned: the read models
    /// show one try fewer until the next try is recorded.
    async fn record_progress(&self, contact_id: &str, command: ConversationCommand, metadata: &CommandMetadata) {
        if let Err(e) = self.commands.conversation(contact_id, command, metadata).await {
            tracing::warn!(error = %e, "recording the sender's progress on an outbound message failed");
        }
    }

    /// One pass: copies what the feed gained, releases stale claims, then claims and sends up to `batch_size` due rows.
    ///
    /// Rows are claimed one at a time, each just before its request, so a claim's age bounds
    /// the request in flight and `stale_after` never catches a row a live sender still holds.
    /// A failure on one row is logged and does not stop the pass.
    pub async fn run_once(&self) -> Result<SendPass, CommandError> {
        self.admit().await?;
        self.release_stale().await?;
        let mut pass = SendPass::default();
        while pass.claimed < usize::try_from(self.config.batch_size).unwrap_or(1) {
            let Some(row) = self.queue.claim_one(&self.pool).await? else {
                break;
            };
            pass.claimed += 1;
            let outbox_id: i64 = row.try_get("outbox_id")?;
            let claimed = match decode(&row) {
                Ok(claimed) => claimed,
                Err(reason) => {
                    // A row this sender cannot read: never guess, hand it over.
                    self.mark(outbox_id, "needs_operator", Some(&reason)).await?;
                    pass.needs_operator += 1;
                    continue;
                }
            };
            let span = tracing::info_span!(
                "outbound.send",
                tenant.id = %claimed.tenant,
                correlation.id = %claimed.correlation_id,
                outbox.id = claimed.outbox_id,
                outbox.attempt = claimed.attempts,
            );
            // Boxed: one send's future (render, upload, request, record) is large.
            match Box::pin(self.send(claimed).instrument(span)).await {
                Ok(Settled::Sent) => pass.sent += 1,
                Ok(Settled::Failed) => pass.failed += 1,
                Ok(Settled::Retry) => pass.retry += 1,
                Ok(Settled::NeedsOperator) => pass.needs_operator += 1,
                Ok(Settled::FromLog) => pass.settled += 1,
                Err(e) => {
                    // After the request was made: the row stays `sending` and goes to an
                    // operator once stale (never resent). Before it: it was released.
                    tracing::error!(outbox.id = outbox_id, error = %e, "an outbound message could not be settled");
                    pass.unsettled += 1;
                }
            }
        }
        self.record_uncertain().await?;
        let (receipts, receipts_sent) = Box::pin(self.send_receipts()).await?;
        pass.receipts = receipts;
        pass.receipts_sent = receipts_sent;
        let (templates, templates_submitted) = Box::pin(self.submit_templates()).await?;
        pass.templates = templates;
        pass.templates_submitted = templates_submitted;
        Ok(pass)
    }

    /// Works the outbox until `shutdown` turns true: a pass, then the next after `poll` (at
    /// once while rows keep coming). Failures are logged and retried on the next pass.
    pub async fn run(self, poll: Duration, shutdown: tokio::sync::watch::Receiver<bool>) {
        crate::workers::poll_until_shutdown("outbox", poll, shutdown, || async {
            let pass = self.run_once().await?;
            if pass.claimed > 0 {
                tracing::info!(
                    sent = pass.sent,
                    failed = pass.failed,
                    retry = pass.retry,
                    needs_operator = pass.needs_operator,
                    "outbox pass"
                );
            }
            Ok(pass.claimed as i64 >= self.config.batch_size
                || pass.receipts as i64 >= self.config.batch_size
                || pass.templates as i64 >= self.config.batch_size)
        })
        .await
    }

    /// Passes until no due row is left (retries due later are left for later). For tests and
    /// the worker.
    pub async fn drain(&self) -> Result<SendPass, CommandError> {
        let mut total = SendPass::default();
        loop {
            let pass = self.run_once().await?;
            total.claimed += pass.claimed;
            total.sent += pass.sent;
            total.failed += pass.failed;
            total.retry += pass.retry;
            total.needs_operator += pass.needs_operator;
            total.settled += pass.settled;
            total.unsettled += pass.unsettled;
            total.receipts += pass.receipts;
            total.receipts_sent += pass.receipts_sent;
            total.templates += pass.templates;
            total.templates_submitted += pass.templates_submitted;
            if pass.claimed == 0 && pass.receipts == 0 && pass.templates == 0 {
                return Ok(total);
            }
        }
    }

    async fn send(&self, row: Claimed) -> Result<Settled, CommandError> {
        let metadata = CommandMetadata {
            tenant_id: row.tenant.clone(),
            actor: Actor::System {
                component: COMPONENT.into(),
            },
            correlation_id: row.correlation_id.clone(),
            causation_id: format!("outbox-{}", row.outbox_id),
        };
        // Nothing is sent before the call: a failure up to it puts the row back to pending
        // (safe: a recorded outcome is found in the log on the next attempt).
        let prepared = match Box::pin(self.prepare(&row, &metadata)).await {
            Ok(prepared) => prepared,
            Err(e) => {
                self.release(&row, &e.to_string()).await?;
                return Err(e);
            }
        };
        let (number, mut payload, upload) = match prepared {
            Prepared::Settled(settled) => return Ok(settled),
            Prepared::Ready {
                number,
                payload,
                upload,
            } => (number, payload, upload),
        };
        // A file uploaded through Chronicle goes to WhatsApp first; a failed upload sent the
        // customer nothing, so it is retried or refused like a send that was not accepted.
        let attempt = match upload {
            Some(file) => match Box::pin(self.upload(&number, &file)).await {
                Ok(media_id) => {
                    let kind = payload["type"].as_str().unwrap_or_default().to_string();
                    payload[kind.as_str()]["id"] = Value::String(media_id);
                    Box::pin(self.call(&number, &payload)).await
                }
                Err(attempt) => attempt,
            },
            None => Box::pin(self.call(&number, &payload)).await,
        };
        match attempt {
            Attempt::Accepted(wamid) => {
                let command = ConversationCommand::RecordOutboundSent(OutboundSent {
                    idempotency_key: row.idempotency_key.clone(),
                    message_ref: self.ids.message_ref(&row.tenant, PROVIDER, &wamid),
                    provider_message_id: self.seal(&row, &wamid).await?,
                    at: Utc::now(),
                });
                self.record(&row, command, &metadata).await?;
                self.mark(row.outbox_id, "sent", None).await?;
                tracing::info!("outbound message sent");
                Ok(Settled::Sent)
            }
            Attempt::Refused { code, title } => {
                tracing::warn!(provider.code = ?code, "WhatsApp refused an outbound message");
                self.fail(&row, &metadata, code, title, false).await
            }
            Attempt::Retry { code, title } if row.attempts >= self.config.max_attempts => {
                tracing::error!(provider.code = ?code, attempts = row.attempts, "outbound message given up after retries");
                self.fail(&row, &metadata, code, title, true).await
            }
            Attempt::Retry { code, title } => {
                let delay = self.config.delay(row.attempts);
                let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
                let moved = sqlx::query(
                    "UPDATE outbox SET state = 'pending', claimed_at = NULL, updated_at = now(), last_error = $2,
                            next_attempt_at = now() + make_interval(secs => $3)
                      WHERE outbox_id = $1 AND state = 'sending' AND claimed_at IS NOT DISTINCT FROM $4",
                )
                .bind(row.outbox_id)
                .bind(format!("{}{title}", code.map(|c| format!("{c}: ")).unwrap_or_default()))
                .bind(delay_ms as f64 / 1000.0)
                .bind(row.claimed_at)
                .execute(&self.pool)
                .await?
                .rows_affected();
                tracing::warn!(provider.code = ?code, retry_in_ms = delay_ms, "outbound message not accepted; retrying");
                // The row left `sending` meanwhile (handed to an operator as stale): this try
                // is no longer the message's story.
                if moved == 0 {
                    return Ok(Settled::Retry);
                }
                let now = Utc::now();
                let retry = OutboundRetry {
                    idempotency_key: row.idempotency_key.clone(),
                    attempt: u32::try_from(row.attempts).unwrap_or(0),
                    code,
                    title,
                    next_try_at: now + chrono::Duration::milliseconds(delay_ms),
                    at: now,
                };
                self.record_progress(
                    &row.contact_id,
                    ConversationCommand::RecordOutboundRetry(retry),
                    &metadata,
                )
                .await;
                Ok(Settled::Retry)
            }
            Attempt::Unknown(reason) => {
                tracing::error!(reason = %reason, "outbound message may have reached WhatsApp; marked needs_operator, not resent");
                self.mark(row.outbox_id, "needs_operator", Some(&reason)).await?;
                // Recorded in the conversation by `record_uncertain` (at the end of this pass).
                Ok(Settled::NeedsOperator)
            }
        }
    }

    /// Everything before the request: an outcome already in the log, a local refusal, or the
    /// rendered request.
    async fn prepare(&self, row: &Claimed, metadata: &CommandMetadata) -> Result<Prepared, CommandError> {
        if let Some(state) = self.outcome_in_log(row).await? {
            self.mark(row.outbox_id, state, None).await?;
            if state == "failed" {
                // A refund interrupted after the failure was recorded (once: metered_actions).
                self.refund_metered(row, metadata, None, false).await;
            }
            return Ok(Prepared::Settled(Settled::FromLog));
        }
        match self.render(row).await? {
            Ok((number, payload, upload)) => Ok(Prepared::Ready {
                number,
                payload,
                upload,
            }),
            // Nothing was sent: a local refusal, recorded like a provider's.
            Err(title) => Ok(Prepared::Settled(self.fail(row, metadata, None, title, false).await?)),
        }
    }

    /// Puts a claimed row back to pending after a failure before its request.
    async fn release(&self, row: &Claimed, error: &str) -> Result<(), CommandError> {
        let delay = self.config.delay(row.attempts).as_secs_f64();
        sqlx::query(
            "UPDATE outbox SET state = 'pending', claimed_at = NULL, updated_at = now(), last_error = $2,
                    next_attempt_at = now() + make_interval(secs => $3)
              WHERE outbox_id = $1 AND state = 'sending'",
        )
        .bind(row.outbox_id)
        .bind(error)
        .bind(delay)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn fail(
        &self,
        row: &Claimed,
        metadata: &CommandMetadata,
        code: Option<i64>,
        title: String,
        retryable: bool,
    ) -> Result<Settled, CommandError> {
        let error = format!("{}{title}", code.map(|c| format!("{c}: ")).unwrap_or_default());
        let command = ConversationCommand::RecordOutboundFailed(OutboundFailed {
            idempotency_key: row.idempotency_key.clone(),
            code,
            title,
            retryable,
            at: Utc::now(),
        });
        self.record(row, command, metadata).await?;
        self.mark(row.outbox_id, "failed", Some(&error)).await?;
        self.refund_metered(row, metadata, code, retryable).await;
        Ok(Settled::Failed)
    }

    /// Refunds a message a user paid for through metering (`metered_actions`) now that it is
    /// recorded as failed; messages not charged there (unmetered, campaigns paid from a
    /// reservation) are left alone. A failed refund is logged: the message's outcome stands
    /// and the charge stays visible in `metered_actions` (state `charged`) for an operator.
    async fn refund_metered(&self, row: &Claimed, metadata: &CommandMetadata, code: Option<i64>, retryable: bool) {
        let reason = if !retryable && code.is_some() {
            RefundReason::ProviderRefused
        } else {
            RefundReason::SendFailed
        };
        let action = message_action(&row.contact_id, &row.idempotency_key);
        match Metering::new(self.commands.clone())
            .refund(&action, reason, metadata)
            .await
        {
            Ok(Some(amount)) => tracing::info!(amount, reason = reason.as_str(), "failed metered message refunded"),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "a failed metered message could not be refunded"),
        }
    }

    /// Records an outcome, retrying transient failures a few times. If it still fails the
    /// row stays `sending` and becomes `needs_operator` once stale: never sent again.
    async fn record(
        &self,
        row: &Claimed,
        command: ConversationCommand,
        metadata: &CommandMetadata,
    ) -> Result<(), CommandError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self
                .commands
                .conversation(&row.contact_id, command.clone(), metadata)
                .await
            {
                Ok(_) => return Ok(()),
                Err(CommandError::Rejected(e)) => return Err(CommandError::Rejected(e)),
                Err(e) if tries >= 3 => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "recording an outbound outcome failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                }
            }
        }
    }

    async fn mark(&self, outbox_id: i64, state: &str, error: Option<&str>) -> Result<(), CommandError> {
        sqlx::query(
            "UPDATE outbox SET state = $2, claimed_at = NULL, updated_at = now(), last_error = coalesce($3, last_error)
              WHERE outbox_id = $1",
        )
        .bind(outbox_id)
        .bind(state)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// `sent` or `failed` if the conversation already records an outcome for the row's key.
    async fn outcome_in_log(&self, row: &Claimed) -> Result<Option<&'static str>, CommandError> {
        let found: Option<String> = sqlx::query_scalar(
            "SELECT event_type FROM events
              WHERE aggregate_type = 'Conversation' AND aggregate_id = $1
                AND event_type IN ('OutboundMessageSent', 'OutboundMessageFailed')
                AND coalesce(payload -> 'OutboundMessageSent' ->> 'idempotency_key',
                             payload -> 'OutboundMessageFailed' ->> 'idempotency_key') = $2
              LIMIT 1",
        )
        .bind(&row.stream_id)
        .bind(&row.idempotency_key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.map(|t| if t == "OutboundMessageSent" { "sent" } else { "failed" }))
    }

    async fn seal(&self, row: &Claimed, plain: &str) -> Result<Envelope, CommandError> {
        let key = self.keys.key_for(&row.tenant, &row.contact_id).await?;
        Ok(key.seal(&row.tenant, &row.contact_id, plain, &mut OsRng))
    }

    /// The business number and the Graph API body, or why the message cannot be sent.
    async fn render(&self, row: &Claimed) -> Result<Rendered, CommandError> {
        let number: Option<String> = sqlx::query_scalar(
            "SELECT phone_number_id FROM whatsapp_numbers WHERE tenant_id = $1
              ORDER BY (phone_number_id = $2) IS TRUE DESC, mapped_at, phone_number_id LIMIT 1",
        )
        .bind(row.tenant.as_str())
        .bind(row.business_number_id.as_deref())
        .fetch_optional(&self.pool)
        .await?;
        let Some(number) = number else {
            return Ok(Err("no WhatsApp number is mapped to the tenant".into()));
        };
        let key = self.keys.key_for(&row.tenant, &row.contact_id).await?;
        let open = |e: &Envelope| key.open(&row.tenant, &row.contact_id, e).ok();
        let Some(phone) = open(&row.recipient) else {
            return Ok(Err("the contact's data was erased".into()));
        };
        let to = phone.trim_start_matches('+').to_string();
        let payload = match &row.body {
            OutboundBody::FreeForm { text } => {
                let Some(text) = open(text) else {
                    return Ok(Err("the contact's data was erased".into()));
                };
                json!({
                    "messaging_product": "whatsapp",
                    "recipient_type": "individual",
                    "to": to,
                    "type": "text",
                    "text": {"preview_url": false, "body": text},
                })
            }
            OutboundBody::Template {
                name,
                language,
                parameters,
                header,
            } => {
                let Some(parameters) = open(parameters) else {
                    return Ok(Err("the contact's data was erased".into()));
                };
                let Ok(parameters) = serde_json::from_str::<Vec<String>>(&parameters) else {
                    return Ok(Err("the template parameters are not a list of texts".into()));
                };
                let header = match header {
                    None => None,
                    Some(HeaderParameter::Text { text }) => match open(text) {
                        Some(text) => Some(json!({"type": "text", "text": text})),
                        None => return Ok(Err("the contact's data was erased".into())),
                    },
                    Some(HeaderParameter::Media { format, link }) => match open(link) {
                        Some(link) => Some(json!({"type": format.as_str(), format.as_str(): {"link": link}})),
                        None => return Ok(Err("the contact's data was erased".into())),
                    },
                };
                render_template(&to, name, language, &parameters, header)
            }
            OutboundBody::Media {
                kind,
                source,
                caption,
                filename,
            } => {
                let mut object = json!({});
                let filename = match filename {
                    Some(f) => match open(f) {
                        Some(f) => Some(f),
                        None => return Ok(Err("the contact's data was erased".into())),
                    },
                    None => None,
                };
                if let Some(caption) = caption {
                    let Some(caption) = open(caption) else {
                        return Ok(Err("the contact's data was erased".into()));
                    };
                    object["caption"] = caption.into();
                }
                if let Some(name) = &filename {
                    object["filename"] = name.clone().into();
                }
                let mut upload = None;
                match source {
                    MediaSource::Link { url } => {
                        let Some(url) = open(url) else {
                            return Ok(Err("the contact's data was erased".into()));
                        };
                        object["link"] = url.into();
                    }
                    MediaSource::Upload { media_ref } => {
                        match read_media(&self.pool, self.keys.master(), &row.tenant, media_ref).await? {
                            // Only a file of the message's own contact (the send's check
                            // said so; this holds it whatever queued the message).
                            MediaRead::Found(blob) if blob.contact_id != row.contact_id => {
                                return Ok(Err(format!("the uploaded file {media_ref} is another contact's")));
                            }
                            MediaRead::Found(blob) => {
                                upload = Some(FileUpload {
                                    bytes: blob.bytes,
                                    filename: filename
                                        .clone()
                                        .unwrap_or_else(|| file_name(kind.as_str(), &blob.mime_type)),
                                    mime_type: blob.mime_type,
                                });
                            }
                            MediaRead::NotFound => {
                                return Ok(Err(format!("the uploaded file {media_ref} is not stored")))
                            }
                            MediaRead::Erased => return Ok(Err("the contact's data was erased".into())),
                        }
                    }
                }
                let mut payload = json!({
                    "messaging_product": "whatsapp",
                    "recipient_type": "individual",
                    "to": to,
                    "type": kind.as_str(),
                });
                payload[kind.as_str()] = object;
                return Ok(Ok((number, payload, upload)));
            }
            OutboundBody::Interactive { content, .. } => {
                let Some(content) = open(content) else {
                    return Ok(Err("the contact's data was erased".into()));
                };
                let Ok(message) = serde_json::from_str::<Interactive>(&content) else {
                    return Ok(Err("the interactive message is not readable".into()));
                };
                render_interactive(&to, &message)
            }
        };
        Ok(Ok((number, payload, None)))
    }

    /// Uploads a file to the Graph API (`POST {number}/media`, multipart) and returns WhatsApp's
    /// media id, or the attempt's outcome: nothing reached the customer, so any failure but a
    /// refusal (4xx) may be tried again.
    async fn upload(&self, number: &str, file: &FileUpload) -> Result<String, Attempt> {
        let response = self
            .graph
            .post_multipart(
                &format!("{number}/media"),
                &[("messaging_product", "whatsapp"), ("type", &file.mime_type)],
                ("file", &file.filename, &file.mime_type, &file.bytes),
            )
            .timeout(self.config.upload_timeout(file.bytes.len()))
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                return Err(Attempt::Retry {
                    code: None,
                    title: if e.is_connect() {
                        "could not connect to the Graph API to upload the file".into()
                    } else if e.is_timeout() {
                        "the file's upload did not finish in time".into()
                    } else {
                        "the file's upload failed before the Graph API answered".into()
                    },
                })
            }
        };
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return match body["id"].as_str() {
                Some(id) if !id.is_empty() => Ok(id.to_string()),
                _ => Err(Attempt::Retry {
                    code: None,
                    title: format!("the file's upload answered {status} without a media id"),
                }),
            };
        }
        let code = body["error"]["code"].as_i64();
        let title = body["error"]["error_data"]["details"]
            .as_str()
            .or_else(|| body["error"]["message"].as_str())
            .map(|t| format!("the file's upload was refused: {t}"))
            .unwrap_or_else(|| format!("the file's upload answered HTTP {}", status.as_u16()));
        Err(if is_retryable(status) {
            Attempt::Retry { code, title }
        } else {
            Attempt::Refused { code, title }
        })
    }

    async fn call(&self, number: &str, payload: &Value) -> Attempt {
        let response = self
            .graph
            .post_json(&format!("{number}/messages"), payload)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            // Never connected: the request cannot have reached WhatsApp.
            Err(e) if e.is_connect() => {
                return Attempt::Retry {
                    code: None,
                    title: "could not connect to the Graph API".into(),
                }
            }
            Err(e) if e.is_timeout() => {
                return Attempt::Unknown("the Graph API did not answer in time; the request may have arrived".into())
            }
            Err(e) => return Attempt::Unknown(format!("the request failed after it may have been sent: {e}")),
        };
        let status = response.status();
        let body: Value = match response.json().await {
            Ok(v) => v,
            Err(_) if status.is_success() => {
                return Attempt::Unknown(format!(
                    "{status} with an unreadable body; the message may have been sent"
                ))
            }
            Err(_) => Value::Null,
        };
        let code = body["error"]["code"].as_i64();
        let title = body["error"]["error_data"]["details"]
            .as_str()
            .or_else(|| body["error"]["title"].as_str())
            .or_else(|| body["error"]["message"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
        if status.is_success() {
            return match body["messages"][0]["id"].as_str() {
                Some(id) if !id.is_empty() => Attempt::Accepted(id.to_string()),
                _ => Attempt::Unknown(format!("{status} without a message id; the message may have been sent")),
            };
        }
        if is_retryable(status) {
            Attempt::Retry { code, title }
        } else {
            Attempt::Refused { code, title }
        }
    }
}

/// What preparing a request found.
enum Prepared {
    Settled(Settled),
    Ready {
        number: String,
        payload: Value,
        upload: Option<FileUpload>,
    },
}

/// A file uploaded through Chronicle, to upload to the Graph API before its message is sent.
struct FileUpload {
    bytes: Vec<u8>,
    mime_type: String,
    filename: String,
}

/// What rendering a claimed row gave: the business number, the request's body and the file to
/// upload first (if any), or why it cannot be sent.
type Rendered = Result<(String, Value, Option<FileUpload>), String>;

/// How a claimed row ended.
enum Settled {
    Sent,
    Failed,
    Retry,
    NeedsOperator,
    FromLog,
}

fn decode(row: &sqlx::postgres::PgRow) -> Result<Claimed, String> {
    let get_text = |name: &str| row.try_get::<String, _>(name).map_err(|e| e.to_string());
    let tenant = TenantId::parse(&get_text("tenant_id")?).map_err(|e| e.to_string())?;
    let recipient: Value = row.try_get("recipient").map_err(|e| e.to_string())?;
    let body: Value = row.try_get("body").map_err(|e| e.to_string())?;
    Ok(Claimed {
        outbox_id: row.try_get("outbox_id").map_err(|e| e.to_string())?,
        tenant,
        stream_id: get_text("stream_id")?,
        contact_id: get_text("contact_id")?,
        idempotency_key: get_text("idempotency_key")?,
        business_number_id: row.try_get("business_number_id").map_err(|e| e.to_string())?,
        recipient: serde_json::from_value(recipient).map_err(|e| format!("recipient: {e}"))?,
        body: serde_json::from_value(body).map_err(|e| format!("body: {e}"))?,
        attempts: row.try_get("attempts").map_err(|e| e.to_string())?,
        correlation_id: get_text("correlation_id")?,
        claimed_at: row.try_get("claimed_at").map_err(|e| e.to_string())?,
    })
}

/// The Graph API body of a template message: its header's parameter (a text, or a media by
/// link) and its body parameters as text components.
pub fn render_template(to: &str, name: &str, language: &str, parameters: &[String], header: Option<Value>) -> Value {
    let mut template = json!({"name": name, "language": {"code": language}});
    let mut components = Vec::new();
    if let Some(header) = header {
        components.push(json!({"type": "header", "parameters": [header]}));
    }
    if !parameters.is_empty() {
        let parameters: Vec<Value> = parameters.iter().map(|p| json!({"type": "text", "text": p})).collect();
        components.push(json!({"type": "body", "parameters": parameters}));
    }
    if !components.is_empty() {
        template["components"] = Value::Array(components);
    }
    json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "template": template,
    })
}

/// The name a file uploaded without one is given: its kind and the extension of its type.
fn file_name(kind: &str, mime_type: &str) -> String {
    let extension = match mime_type {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/webp" => "webp",
        "audio/aac" => "aac",
        "audio/amr" => "amr",
        "audio/mpeg" => "mp3",
        "audio/mp4" => "m4a",
        "audio/ogg" => "ogg",
        "video/mp4" => "mp4",
        "video/3gpp" => "3gp",
        "application/pdf" => "pdf",
        "text/plain" => "txt",
        _ => "bin",
    };
    format!("{kind}.{extension}")
}

/// The Graph API body of an interactive message: reply buttons or a list, with its text header
/// and footer when given.
pub fn render_interactive(to: &str, message: &Interactive) -> Value {
    let mut interactive = json!({"type": message.kind().as_str(), "body": {"text": message.body.trim()}});
    if let Some(header) = present(&message.header) {
        interactive["header"] = json!({"type": "text", "text": header});
    }
    if let Some(footer) = present(&message.footer) {
        interactive["footer"] = json!({"text": footer});
    }
    interactive["action"] = match &message.choices {
        Choices::Buttons { buttons } => json!({"buttons": buttons
            .iter()
            .map(|b| json!({"type": "reply", "reply": {"id": b.id.trim(), "title": b.title.trim()}}))
            .collect::<Vec<_>>()}),
        Choices::List { button, sections } => json!({
            "button": button.trim(),
            "sections": sections.iter().map(|section| {
                let rows: Vec<Value> = section.rows.iter().map(|r| {
                    let mut row = json!({"id": r.id.trim(), "title": r.title.trim()});
                    if let Some(description) = present(&r.description) {
                        row["description"] = description.into();
                    }
                    row
                }).collect();
                let mut out = json!({"rows": rows});
                if let Some(title) = present(&section.title) {
                    out["title"] = title.into();
                }
                out
            }).collect::<Vec<_>>(),
        }),
    };
    json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "interactive",
        "interactive": interactive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_buttons_and_lists_render_as_the_cloud_api_documents_them() {
        use chronicle_domain::conversation::rich::{ListRow, ListSection, ReplyButton};
        let buttons = Interactive {
            header: Some("Installation".into()),
            body: "Which day suits you?".into(),
            footer: None,
            choices: Choices::Buttons {
                buttons: vec![ReplyButton {
                    id: "mon".into(),
                    title: "Monday".into(),
                }],
            },
        };
        let body = render_interactive("263771000001", &buttons);
        assert_eq!(body["type"], "interactive");
        assert_eq!(body["interactive"]["type"], "button");
        assert_eq!(
            body["interactive"]["header"],
            json!({"type": "text", "text": "Installation"})
        );
        assert_eq!(
            body["interactive"]["action"]["buttons"][0],
            json!({"type": "reply", "reply": {"id": "mon", "title": "Monday"}})
        );
        assert!(body["interactive"].get("footer").is_none());
        let list = Interactive {
            header: None,
            body: "Pick a kit".into(),
            footer: Some("VAT included".into()),
            choices: Choices::List {
                button: "Kits".into(),
                sections: vec![ListSection {
                    title: None,
                    rows: vec![ListRow {
                        id: "k5".into(),
                        title: "5 kW".into(),
                        description: Some("10 panels".into()),
                    }],
                }],
            },
        };
        let body = render_interactive("263771000001", &list);
        assert_eq!(body["interactive"]["type"], "list");
        assert_eq!(body["interactive"]["action"]["button"], "Kits");
        assert_eq!(
            body["interactive"]["action"]["sections"][0],
            json!({"rows": [{"id": "k5", "title": "5 kW", "description": "10 panels"}]})
        );
        assert_eq!(body["interactive"]["footer"]["text"], "VAT included");
    }

    #[test]
    fn a_template_renders_its_parameters_as_body_components() {
        let body = render_template(
            "263771000001",
            "follow_up",
            "en",
            &["Rudo".into(), "Friday".into()],
            None,
        );
        assert_eq!(body["type"], "template");
        assert_eq!(body["template"]["language"]["code"], "en");
        assert_eq!(body["template"]["components"][0]["parameters"][1]["text"], "Friday");
        let bare = render_template("263771000001", "hello", "en_US", &[], None);
        assert!(bare["template"].get("components").is_none());
        let headed = render_template(
            "263771000001",
            "kit_photo",
            "en",
            &[],
            Some(json!({"type": "image", "image": {"link": "https://example.com/kit.jpg"}})),
        );
        assert_eq!(
            headed["template"]["components"],
            json!([{"type": "header", "parameters": [{"type": "image", "image": {"link": "https://example.com/kit.jpg"}}]}])
        );
    }

    #[test]
    fn an_upload_has_time_for_its_size_within_half_the_stale_claim() {
        let config = SenderConfig::new("http://x", "t");
        assert_eq!(config.upload_timeout(1000), Duration::from_secs(15));
        assert_eq!(config.upload_timeout(16 * 1024 * 1024), Duration::from_secs(47));
        assert_eq!(config.upload_timeout(usize::MAX), Duration::from_secs(60));
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let mut config = SenderConfig::new("http://x", "t");
        config.backoff = Duration::from_secs(2);
        config.max_backoff = Duration::from_secs(10);
        assert_eq!(config.delay(1), Duration::from_secs(2));
        assert_eq!(config.delay(2), Duration::from_secs(4));
        assert_eq!(config.delay(4), Duration::from_secs(10));
        assert_eq!(config.delay(100), Duration::from_secs(10));
    }

    #[test]
    fn the_access_token_never_shows_in_debug_output() {
        let config = SenderConfig::new("http://x", "secret-token");
        assert!(!format!("{config:?}").contains("secret-token"));
    }
}
