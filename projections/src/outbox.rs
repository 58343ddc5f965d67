//! The `outbox` projector: turns each `OutboundMessageQueued` into a row of the `outbox_feed`
//! (migration 20261206000083), which the WhatsApp sender (`commands::outbound::whatsapp`)
//! copies into its own `outbox` and works. The body and recipient stay sealed exactly as in the
//! event; the sender opens them.
//!
//! The feed is a read model like any other: a row per (tenant, stream, idempotency key), its
//! `settled` set by the outcome events (`OutboundMessageSent`, `OutboundMessageFailed`), its
//! `position` the latest of them; [`Projector::reset`](crate::runtime::Projector::reset) clears it. What was handed to the
//! provider (which the log alone cannot say for a message claimed but not yet settled) is the
//! sender's own state, in `outbox`, which no rebuild touches (decision 0013).

use chronicle_domain::conversation::ConversationEvent;
use sqlx::PgConnection;

use crate::log::StoredEvent;
use crate::runtime::{Fold, ProjectionError};
use crate::shared::payload;

/// The projector's name (its checkpoint key). Never renamed.
pub const NAME: &str = "outbox";

/// The event types the outbox reads.
const TYPES: &[&str] = &[
    "OutboundMessageQueued",
    "OutboundMessageSent",
    "OutboundMessageFailed",
    "ConversationRead",
];

/// Folds queued messages and their outcomes into `outbox_feed`.
#[derive(Debug, Default)]
pub struct OutboxProjector;

/// Marks a row with the outcome the log recorded (its first one).
async fn settle(
    db: &mut PgConnection,
    event: &StoredEvent,
    idempotency_key: &str,
    state: &str,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "UPDATE outbox_feed SET settled = $4, position = $5
          WHERE tenant_id = $1 AND stream_id = $2 AND idempotency_key = $3 AND settled IS NULL",
    )
    .bind(&event.tenant_id)
    .bind(&event.aggregate_id)
    .bind(idempotency_key)
    .bind(state)
    .bind(event.global_position)
    .execute(&mut *db)
    .await?;
    Ok(())
}

impl Fold for OutboxProjector {
    const NAME: &'static str = NAME;
    const EVENT_TYPES: &'static [&'static str] = TYPES;
    const AGGREGATES: &'static [&'static str] = &["Conversation"];
    const TABLES: &'static [&'static str] = &["outbox_feed", "read_receipt_feed"];
    const FEEDS: &'static [&'static str] = &["outbox_feed", "read_receipt_feed"];

    async fn apply_one(&self, db: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        let parsed: ConversationEvent = payload(event)?;
        match parsed {
            ConversationEvent::OutboundMessageQueued {
                idempotency_key,
                contact_id,
                to,
                business_number_id,
                body,
                at,
                ..
            } => {
                let recipient = serde_json::to_value(&to).map_err(|source| ProjectionError::Decode {
                    position: event.global_position,
                    source,
                })?;
                let body = serde_json::to_value(&body).map_err(|source| ProjectionError::Decode {
                    position: event.global_position,
                    source,
                })?;
                let correlation = event.metadata["correlation_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                sqlx::query(
                    "INSERT INTO outbox_feed (tenant_id, stream_id, contact_id, idempotency_key, business_number_id,
                                              recipient, body, correlation_id, queued_position, created_at, position)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $9)
                     ON CONFLICT (tenant_id, stream_id, idempotency_key) DO NOTHING",
                )
                .bind(&event.tenant_id)
                .bind(&event.aggregate_id)
                .bind(&contact_id)
                .bind(&idempotency_key)
                .bind(business_number_id)
                .bind(recipient)
                .bind(body)
                .bind(correlation)
                .bind(event.global_position)
                .bind(at)
                .execute(&mut *db)
                .await?;
            }
            ConversationEvent::OutboundMessageSent { idempotency_key, .. } => {
                settle(db, event, &idempotency_key, "sent").await?;
            }
            ConversationEvent::OutboundMessageFailed { idempotency_key, .. } => {
                settle(db, event, &idempotency_key, "failed").await?;
            }
            // A read receipt to send (migration ..87); none when the event could not name the
            // message (a state from before the message ids were kept).
            ConversationEvent::ConversationRead {
                up_to,
                message_id: Some(message_id),
                business_number_id: Some(business_number_id),
                ..
            } => {
                let message_id = serde_json::to_value(&message_id).map_err(|source| ProjectionError::Decode {
                    position: event.global_position,
                    source,
                })?;
                let contact_id = event
                    .aggregate_id
                    .strip_prefix(&format!("{}:", event.tenant_id))
                    .unwrap_or(&event.aggregate_id);
                sqlx::query(
                    "INSERT INTO read_receipt_feed (tenant_id, stream_id, contact_id, message_ref, business_number_id,
                                                   message_id, correlation_id, position)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (tenant_id, stream_id, message_ref) DO NOTHING",
                )
                .bind(&event.tenant_id)
                .bind(&event.aggregate_id)
                .bind(contact_id)
                .bind(&up_to)
                .bind(&business_number_id)
                .bind(message_id)
                .bind(event.metadata["correlation_id"].as_str().unwrap_or_default())
                .bind(event.global_position)
                .execute(&mut *db)
                .await?;
            }
            _ => {}
        }
        Ok(())
    }
}
