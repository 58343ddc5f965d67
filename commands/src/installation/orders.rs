//! Orders on the write side: placing, paying (by hand: cash; providers through the payment
//! callbacks), fulfilling and cancelling, over the `Order` aggregate.

use super::*;

impl InstallationService {
    /// Places an order for `customer_id` (a contact id); returns its id `order_<uuid>`.
    pub async fn place_order(
        &self,
        customer_id: &str,
        items: Vec<LineItem>,
        metadata: &CommandMetadata,
    ) -> Result<String, CommandError> {
        let order_id = format!("order_{}", uuid::Uuid::new_v4());
        let command = OrderCommand::Place(PlaceOrder {
            customer_id: customer_id.to_string(),
            items,
            by: by_of(metadata),
            at: Utc::now(),
        });
        self.commands.order(&order_id, command, metadata).await?;
        Ok(order_id)
    }

    /// Records a confirmed payment on an order (once per provider and reference). The payment
    /// callbacks verify and confirm before calling this; by hand it is for cash.
    pub async fn record_payment(
        &self,
        order_id: &str,
        provider: PaymentProvider,
        reference: &str,
        amount_minor: i64,
        currency: &str,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let command = OrderCommand::RecordPayment(RecordPayment {
            provider,
            reference: reference.to_string(),
            amount_minor,
            currency: currency.to_string(),
            at: Utc::now(),
        });
        self.commands.order(order_id, command, metadata).await
    }

    /// Marks a paid order fulfilled.
    pub async fn fulfil_order(&self, order_id: &str, metadata: &CommandMetadata) -> Result<Appended, CommandError> {
        let command = OrderCommand::Fulfil {
            by: by_of(metadata),
            at: Utc::now(),
        };
        self.commands.order(order_id, command, metadata).await
    }

    /// Cancels an order not yet fulfilled; the reason is sealed under the customer's key.
    pub async fn cancel_order(
        &self,
        order_id: &str,
        reason: Option<&str>,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let tenant = &metadata.tenant_id;
        let Some((customer_id, _)) = order_facts(self.commands.pool(), tenant, order_id).await? else {
            return Err(CommandError::Rejected(DomainError::Order(OrderError::UnknownOrder)));
        };
        let reason = match reason.map(str::trim).filter(|r| !r.is_empty()) {
            Some(text) => Some(self.seal_for(tenant, &customer_id, text).await?),
            None => None,
        };
        let command = OrderCommand::Cancel {
            reason,
            by: by_of(metadata),
            at: Utc::now(),
        };
        self.commands.order(order_id, command, metadata).await
    }
}
