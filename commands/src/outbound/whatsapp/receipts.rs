//! Read receipts: marking a conversation read (`ConversationRead`) tells WhatsApp the latest
//! inbound message was read, so the customer sees it read. The `outbox` projector writes a
//! `read_receipt_feed` row per receipt; the sender copies the feed into its own
//! `read_receipts` ([`Admission`], as for messages: a rebuild sends nothing again) and, in each
//! pass after the messages, sends the due ones:
//! `POST /{business number}/messages {"messaging_product": "whatsapp", "status": "read",
//! "message_id": <WhatsApp's id>}`.
//!
//! A receipt changes nothing when repeated, so unlike a message it is retried after any
//! failure that may be transient (a timeout, 5xx, 429, no connection) with the sender's backoff,
//! up to `max_attempts`, and a claim left by a stopped sender goes back to pending. A refusal
//! (another 4xx: the message is too old), a business number no longer mapped to the tenant, or
//! a message id that cannot be opened (the contact was erased) ends it as `failed`, with the reason
//! (no personal data) in `last_error`. Nothing is recorded in the log: a receipt is a courtesy
//! to the customer, not a fact of the conversation.

use chronicle_domain::pii::Envelope;
use chronicle_domain::tenant::TenantId;
use serde_json::json;
use sqlx::Row;
use tracing::Instrument;

use super::WhatsAppSender;
use crate::error::CommandError;
use crate::http::is_retryable;
use crate::workers::{Admission, Queue, Stale};

/// The sender's queue of receipts.
pub(super) fn queue() -> Queue {
    Queue::new(
        "read_receipts",
        "receipt_id",
        "sending",
        "receipt_id, tenant_id, contact_id, business_number_id, message_id, attempts, correlation_id",
        Stale::Retry,
        "found sending after its sender stopped; sent again (a receipt repeated changes nothing)",
    )
}

/// The receipts' intake from the `outbox` projector's feed.
pub(super) fn admission() -> Admission {
    Admission::new(
        "read_receipt_feed",
        "INSERT INTO read_receipts (tenant_id, stream_id, contact_id, message_ref, business_number_id, message_id,
                                    correlation_id)
         SELECT tenant_id, stream_id, contact_id, message_ref, business_number_id, message_id, correlation_id
           FROM new ORDER BY position
         ON CONFLICT (tenant_id, stream_id, message_ref) DO NOTHING",
    )
}

/// How one receipt ended.
enum Outcome {
    Sent,
    Retry(String),
    Failed(String),
}

impl WhatsAppSender {
    /// Copies new receipts from the feed, puts stale claims back, and sends up to `batch_size`
    /// due receipts. Answers how many were claimed and how many WhatsApp accepted.
    pub(super) async fn send_receipts(&self) -> Result<(usize, usize), CommandError> {
        self.receipt_admission.run(&self.pool).await?;
        let stale = self.receipts.release_stale(&self.pool, self.config.stale_after).await?;
        if stale > 0 {
            tracing::warn!(
                receipts = stale,
                "read receipts left sending by a stopped sender; sending again"
            );
        }
        let (mut claimed, mut sent) = (0, 0);
        while claimed < usize::try_from(self.config.batch_size).unwrap_or(1) {
            let Some(row) = self.receipts.claim_one(&self.pool).await? else {
                break;
            };
            claimed += 1;
            let receipt_id: i64 = row.try_get("receipt_id")?;
            let attempts: i32 = row.try_get("attempts")?;
            let correlation: String = row.try_get("correlation_id")?;
            let tenant: String = row.try_get("tenant_id")?;
            let span = tracing::info_span!(
                "outbound.read_receipt",
                tenant.id = %tenant,
                correlation.id = %correlation,
                receipt.id = receipt_id,
                receipt.attempt = attempts,
            );
            let outcome = self.send_receipt(&row).instrument(span.clone()).await;
            let _entered = span.enter();
            match outcome {
                Ok(Outcome::Sent) => {
                    sent += 1;
                    self.settle_receipt(receipt_id, "sent", None, 0.0).await?;
                }
                Ok(Outcome::Retry(error)) if attempts < self.config.max_attempts => {
                    let delay = self.config.delay(attempts).as_secs_f64();
                    tracing::warn!(error = %error, retry_in_s = delay, "read receipt not accepted; retrying");
                    self.settle_receipt(receipt_id, "pending", Some(&error), delay).await?;
                }
                Ok(Outcome::Retry(error) | Outcome::Failed(error)) => {
                    tracing::warn!(error = %error, "read receipt not sent");
                    self.settle_receipt(receipt_id, "failed", Some(&error), 0.0).await?;
                }
                Err(e) => {
                    // Left `sending`: back to pending once stale.
                    tracing::error!(error = %e, "a read receipt could not be settled");
                }
            }
        }
        Ok((claimed, sent))
    }

    async fn send_receipt(&self, row: &sqlx::postgres::PgRow) -> Result<Outcome, CommandError> {
        let tenant = TenantId::parse(&row.try_get::<String, _>("tenant_id")?)
            .map_err(|e| CommandError::InvalidInput(e.to_string()))?;
        let contact_id: String = row.try_get("contact_id")?;
        let number: String = row.try_get("business_number_id")?;
        let sealed: serde_json::Value = row.try_get("message_id")?;
        let Ok(sealed) = serde_json::from_value::<Envelope>(sealed) else {
            return Ok(Outcome::Failed("the message id is not an envelope".into()));
        };
        let Some(key) = self.keys.existing(&tenant, &contact_id).await? else {
            return Ok(Outcome::Failed(
                "the contact was erased: the message id cannot be opened".into(),
            ));
        };
        let Ok(message_id) = key.open(&tenant, &contact_id, &sealed) else {
            return Ok(Outcome::Failed("the message id cannot be opened".into()));
        };
        // Only from a number that is still the tenant's (the token is the platform's: a number
        // mapped to another tenant since must not speak for this one).
        let mapped: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM whatsapp_numbers WHERE tenant_id = $1 AND phone_number_id = $2)",
        )
        .bind(tenant.as_str())
        .bind(&number)
        .fetch_one(&self.pool)
        .await?;
        if !mapped {
            return Ok(Outcome::Failed("the business number is no longer the tenant's".into()));
        }
        let body = json!({"messaging_product": "whatsapp", "status": "read", "message_id": message_id});
        let response = match self.graph.post_json(&format!("{number}/messages"), &body).send().await {
            Ok(response) => response,
            Err(e) if e.is_connect() => return Ok(Outcome::Retry("could not connect to the Graph API".into())),
            Err(e) if e.is_timeout() => return Ok(Outcome::Retry("the Graph API did not answer in time".into())),
            Err(e) => return Ok(Outcome::Retry(format!("the request failed: {e}"))),
        };
        let status = response.status();
        if status.is_success() {
            return Ok(Outcome::Sent);
        }
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let error = format!(
            "HTTP {}{}",
            status.as_u16(),
            body["error"]["code"]
                .as_i64()
                .map(|c| format!(", code {c}"))
                .unwrap_or_default()
        );
        Ok(if is_retryable(status) {
            Outcome::Retry(error)
        } else {
            Outcome::Failed(error)
        })
    }

    async fn settle_receipt(
        &self,
        receipt_id: i64,
        state: &str,
        error: Option<&str>,
        retry_in_s: f64,
    ) -> Result<(), CommandError> {
        sqlx::query(
            "UPDATE read_receipts SET state = $2, claimed_at = NULL, updated_at = now(),
                    last_error = coalesce($3, last_error), next_attempt_at = now() + make_interval(secs => $4)
              WHERE receipt_id = $1 AND state = 'sending'",
        )
        .bind(receipt_id)
        .bind(state)
        .bind(error)
        .bind(retry_in_s)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
