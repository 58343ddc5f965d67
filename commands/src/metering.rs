//! Metering: billable actions priced by the tenant's price list and paid from its main wallet
//! BEFORE they run, refunded when they fail.
//!
//! - The price list (`price_list`: tenant, feature, unit price in milli-tokens) is managed by
//!   owners, admins and finance ([`Metering::set_price`]). A tenant with **no entry for a
//!   feature is unmetered** for it (so is a unit price of 0): [`Metering::charge`] answers
//!   [`Charge::Unmetered`], debits nothing and the action runs. Tenants that never set a price
//!   behave exactly as before metering existed.
//! - [`Metering::charge`] debits `unit price × quantity` from the main wallet
//!   ([`crate::wallets::MAIN_WALLET`], opened on first use) under the wallet reference
//!   `action_reference` (the action's idempotency key, so a retried action is charged once),
//!   and remembers the charge in `metered_actions`. When the wallet cannot pay, the refusal is
//!   recorded on the wallet and the caller gets `INSUFFICIENT_BALANCE` with the required and
//!   available amounts: the action must not run.
//! - [`Metering::refund`] returns a charge whose action failed, once, under the wallet
//!   reference `refund:<reason>:<action reference>` (the ledger shows the reason). Actions not
//!   charged through metering (campaign messages paid from a reservation) are not in
//!   `metered_actions`, so refunding them here does nothing.
//!
//! Features priced: [`features::MESSAGE`] (an outbound free-form or template message a user
//! sends; action reference [`message_action`]), [`features::BROADCAST_RECIPIENT`] (one
//! recipient of a campaign), [`features::REPORT`].

use chronicle_domain::metadata::CommandMetadata;
use chronicle_domain::tenant::TenantId;
use chronicle_domain::wallet::WalletError;
use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::dispatch::Commands;
use crate::error::{CommandError, DomainError};
use crate::wallets::{WalletService, MAIN_WALLET};

/// The billable features.
pub mod features {
    /// An outbound free-form or template message sent by a user (GraphQL, call follow-ups).
    pub const MESSAGE: &str = "message";
    /// One recipient of a broadcast campaign.
    pub const BROADCAST_RECIPIENT: &str = "broadcast_recipient";
    /// A report.
    pub const REPORT: &str = "report";
    /// Every feature a price may be set for.
    pub const ALL: &[&str] = &[MESSAGE, BROADCAST_RECIPIENT, REPORT];
}

/// The action reference of a message a user sends on the conversation with `contact_id` under
/// `idempotency_key` (conversation idempotency keys are per conversation, so the contact is
/// part of it).
pub fn message_action(contact_id: &str, idempotency_key: &str) -> String {
    format!("message:{contact_id}:{idempotency_key}")
}

/// What [`Metering::charge`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charge {
    /// No price for the feature: nothing was debited.
    Unmetered,
    /// `amount` was debited from `wallet_id` under `reference`. `fresh` is false when the
    /// action had been charged before under the same reference (a retry: nothing new moved).
    Debited {
        wallet_id: String,
        reference: String,
        amount: i64,
        fresh: bool,
    },
}

/// Why a charge is refunded (shown as the ledger line's reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundReason {
    /// The action was refused before it ran (the conversation refused the send).
    ActionRefused,
    /// The provider refused the message definitively (a 4xx): it was never delivered.
    ProviderRefused,
    /// The message could not be sent (no number, erased contact, retries exhausted).
    SendFailed,
}

impl RefundReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ActionRefused => "action_refused",
            Self::ProviderRefused => "provider_refused",
            Self::SendFailed => "send_failed",
        }
    }
}

/// One entry of a price list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    pub feature: String,
    /// Milli-tokens per unit.
    pub unit_price: i64,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
}

/// Checks a feature name: `[a-z][a-z0-9_]{0,63}`.
pub fn valid_feature(feature: &str) -> Result<&str, CommandError> {
    let ok = feature.len() <= 64
        && feature.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && feature
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(feature)
    } else {
        Err(CommandError::InvalidInput(format!("{feature:?} is not a feature name")))
    }
}

/// Prices and charges billable actions.
#[derive(Debug, Clone)]
pub struct Metering {
    wallets: WalletService,
}

impl Metering {
    pub fn new(commands: Commands) -> Self {
        Self {
            wallets: WalletService::new(commands),
        }
    }

    fn pool(&self) -> &sqlx::PgPool {
        self.wallets.commands().pool()
    }

    /// The unit price of `feature` for `tenant` in milli-tokens; `None`: unmetered.
    pub async fn price_of(&self, tenant: &TenantId, feature: &str) -> Result<Option<i64>, CommandError> {
        let price: Option<i64> =
            sqlx::query_scalar("SELECT unit_price FROM price_list WHERE tenant_id = $1 AND feature = $2")
                .bind(tenant.as_str())
                .bind(feature)
                .fetch_optional(self.pool())
                .await?;
        Ok(price)
    }

    /// The tenant's price list, by feature.
    pub async fn prices(&self, tenant: &TenantId) -> Result<Vec<Price>, CommandError> {
        let rows = sqlx::query(
            "SELECT feature, unit_price, updated_by, updated_at FROM price_list WHERE tenant_id = $1 ORDER BY feature",
        )
        .bind(tenant.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Price {
                    feature: r.try_get("feature")?,
                    unit_price: r.try_get("unit_price")?,
                    updated_by: r.try_get("updated_by")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// Sets the unit price of `feature` (milli-tokens, 0 or more), or removes it (`None`:
    /// the feature becomes unmetered for the tenant).
    pub async fn set_price(
        &self,
        tenant: &TenantId,
        feature: &str,
        unit_price: Option<i64>,
        updated_by: &str,
    ) -> Result<(), CommandError> {
        let feature = valid_feature(feature)?;
        // Only what Chronicle meters can be priced: a price for anything else would be stored
        // and never charged.
        if !features::ALL.contains(&feature) {
            return Err(CommandError::InvalidInput(format!(
                "{feature:?} is not a metered feature (one of {})",
                features::ALL.join(", ")
            )));
        }
        match unit_price {
            Some(price) if price < 0 => Err(CommandError::InvalidInput(format!(
                "a unit price is 0 or more milli-tokens; got {price}"
            ))),
            Some(price) => {
                sqlx::query(
                    "INSERT INTO price_list (tenant_id, feature, unit_price, updated_by, updated_at)
                     VALUES ($1, $2, $3, $4, now())
                     ON CONFLICT (tenant_id, feature) DO UPDATE SET
                            unit_price = EXCLUDED.unit_price, updated_by = EXCLUDED.updated_by, updated_at = now()",
                )
                .bind(tenant.as_str())
                .bind(feature)
                .bind(price)
                .bind(updated_by)
                .execute(self.pool())
                .await?;
                tracing::info!(tenant.id = %tenant, feature, unit_price = price, "price set");
                Ok(())
            }
            None => {
                sqlx::query("DELETE FROM price_list WHERE tenant_id = $1 AND feature = $2")
                    .bind(tenant.as_str())
                    .bind(feature)
                    .execute(self.pool())
                    .await?;
                tracing::info!(tenant.id = %tenant, feature, "price removed: unmetered");
                Ok(())
            }
        }
    }

    /// Pays for `quantity` units of `feature` before the action `action_reference` runs. See
    /// the module docs; `Err` with `INSUFFICIENT_BALANCE` means the action must not run.
    pub async fn charge(
        &self,
        feature: &str,
        quantity: i64,
        action_reference: &str,
        metadata: &CommandMetadata,
    ) -> Result<Charge, CommandError> {
        let tenant = &metadata.tenant_id;
        if quantity <= 0 {
            return Err(CommandError::InvalidInput(format!(
                "a charge is for 1 unit or more; got {quantity}"
            )));
        }
        if action_reference.trim().is_empty() {
            return Err(CommandError::Rejected(WalletError::MissingReference.into()));
        }
        let unit_price = match self.price_of(tenant, feature).await? {
            None | Some(0) => return Ok(Charge::Unmetered),
            Some(price) => price,
        };
        let amount = unit_price
            .checked_mul(quantity)
            .ok_or(CommandError::Rejected(WalletError::AmountTooLarge.into()))?;
        let fresh = sqlx::query(
            "INSERT INTO metered_actions (tenant_id, action_reference, wallet_id, debit_reference, feature, quantity, amount)
             VALUES ($1, $2, $3, $2, $4, $5, $6)
             ON CONFLICT (tenant_id, action_reference) DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(action_reference)
        .bind(MAIN_WALLET)
        .bind(feature)
        .bind(quantity)
        .bind(amount)
        .execute(self.pool())
        .await?
        .rows_affected()
            == 1;
        let mut debited = self
            .wallets
            .debit(MAIN_WALLET, action_reference, amount, feature, metadata)
            .await;
        if matches!(
            debited,
            Err(CommandError::Rejected(DomainError::Wallet(WalletError::UnknownWallet)))
        ) {
            self.wallets.ensure_main(metadata).await?;
            debited = self
                .wallets
                .debit(MAIN_WALLET, action_reference, amount, feature, metadata)
                .await;
        }
        if let Err(e) = debited {
            if matches!(
                e,
                CommandError::Rejected(DomainError::Wallet(WalletError::InsufficientBalance { .. }))
            ) {
                self.settle_charge(tenant, action_reference, "refused").await?;
                tracing::info!(tenant.id = %tenant, feature, amount, "metered action refused: insufficient balance");
            }
            return Err(e);
        }
        self.settle_charge(tenant, action_reference, "charged").await?;
        tracing::info!(tenant.id = %tenant, feature, amount, fresh, "metered action charged");
        Ok(Charge::Debited {
            wallet_id: MAIN_WALLET.to_string(),
            reference: action_reference.to_string(),
            amount,
            fresh,
        })
    }

    async fn settle_charge(&self, tenant: &TenantId, action_reference: &str, state: &str) -> Result<(), CommandError> {
        sqlx::query(
            "UPDATE metered_actions SET state = $3 WHERE tenant_id = $1 AND action_reference = $2 AND state = 'charging'",
        )
        .bind(tenant.as_str())
        .bind(action_reference)
        .bind(state)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Refunds the `message` charge of a send the conversation refused, unless a message with
    /// the same idempotency key was queued on it before (a repeated key whose first send went
    /// out keeps its charge). Read from the write side's own log.
    pub async fn refund_refused_send(
        &self,
        contact_id: &str,
        idempotency_key: &str,
        metadata: &CommandMetadata,
    ) -> Result<Option<i64>, CommandError> {
        let queued: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM events
                             WHERE aggregate_type = 'Conversation' AND aggregate_id = $1
                               AND event_type = 'OutboundMessageQueued'
                               AND payload -> 'OutboundMessageQueued' ->> 'idempotency_key' = $2)",
        )
        .bind(metadata.tenant_id.stream_id(contact_id))
        .bind(idempotency_key)
        .fetch_one(self.pool())
        .await?;
        if queued {
            return Ok(None);
        }
        self.refund(
            &message_action(contact_id, idempotency_key),
            RefundReason::ActionRefused,
            metadata,
        )
        .await
    }

    /// Refunds the charge of `action_reference` because its action failed (`reason`), once.
    /// Answers the amount refunded now; `None` when there is nothing to refund (never charged,
    /// not metered, refused, or refunded already).
    pub async fn refund(
        &self,
        action_reference: &str,
        reason: RefundReason,
        metadata: &CommandMetadata,
    ) -> Result<Option<i64>, CommandError> {
        let tenant = &metadata.tenant_id;
        let row = sqlx::query(
            "SELECT wallet_id, debit_reference, amount, state FROM metered_actions
              WHERE tenant_id = $1 AND action_reference = $2",
        )
        .bind(tenant.as_str())
        .bind(action_reference)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let state: String = row.try_get("state")?;
        if state != "charged" && state != "charging" {
            return Ok(None);
        }
        let wallet_id: String = row.try_get("wallet_id")?;
        let debit: String = row.try_get("debit_reference")?;
        let amount: i64 = row.try_get("amount")?;
        let reference = format!("refund:{}:{action_reference}", reason.as_str());
        let refunded = self
            .wallets
            .refund(&wallet_id, &reference, &debit, amount, metadata)
            .await;
        let (state, result) = match refunded {
            Ok(_) => ("refunded", Some(amount)),
            // Refunded already (under another reason): nothing more to return.
            Err(CommandError::Rejected(DomainError::Wallet(WalletError::RefundExceedsDebit { .. }))) => {
                ("refunded", None)
            }
            // The debit never landed (a charge interrupted before it): nothing was taken.
            Err(CommandError::Rejected(DomainError::Wallet(WalletError::UnknownDebit { .. }))) => ("refused", None),
            Err(e) => return Err(e),
        };
        sqlx::query(
            "UPDATE metered_actions SET state = $3, refunded = ($3 = 'refunded'),
                    refund_reference = CASE WHEN $4 THEN $5 ELSE refund_reference END,
                    refund_reason = CASE WHEN $4 THEN $6 ELSE refund_reason END,
                    refunded_at = CASE WHEN $4 THEN now() ELSE refunded_at END
              WHERE tenant_id = $1 AND action_reference = $2",
        )
        .bind(tenant.as_str())
        .bind(action_reference)
        .bind(state)
        .bind(result.is_some())
        .bind(&reference)
        .bind(reason.as_str())
        .execute(self.pool())
        .await?;
        if let Some(amount) = result {
            tracing::info!(tenant.id = %tenant, amount, reason = reason.as_str(), "metered action refunded");
        }
        Ok(result)
    }
}
