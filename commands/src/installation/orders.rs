//! Orders on the write side: placing, paying (by hand: cash; providers through the payment
//! callbacks), fulfilling and cancelling, over the `Order` aggregate.

use super::*;

impl InstallationService {
    /// Places an order for `customer_id` (a contact of the tenant, or `UNKNOWN_CUSTOMER`);
    /// returns its id. With an `idempotency_key` the id is derived from the key
    /// (`order_k<32 hex>`), so a retried request finds the order it placed and records nothing
    /// again, and the key with another customer or other items is refused
    /// (`IDEMPOTENCY_KEY_REUSED`); without one the id is `order_<uuid>`. The site address (blank:
    /// none; at most [`MAX_TEXT_CHARS`] characters) is sealed under the customer's data key; the
    /// installation the paid order opens starts with it.
    pub async fn place_order(
        &self,
        customer_id: &str,
        items: Vec<LineItem>,
        site_address: Option<&str>,
        idempotency_key: Option<&str>,
        metadata: &CommandMetadata,
    ) -> Result<String, CommandError> {
        let site_address = site_address.map(str::trim).filter(|a| !a.is_empty());
        if let Some(address) = site_address {
            text(address, "site address")?;
        }
        let mut command = OrderCommand::Place(PlaceOrder {
            customer_id: customer_id.to_string(),
            items,
            site_address: None,
            by: by_of(metadata),
            at: Utc::now(),
        });
        // The order's own refusals first (empty, mixed currencies, …), decided on a new order
        // without recording anything; then whether the customer is a contact of the tenant.
        let sink = cqrs_es::event_sink::EventSink::default();
        cqrs_es::Aggregate::handle(
            &mut chronicle_domain::installation::order::Order::default(),
            command.clone(),
            &(),
            &sink,
        )
        .await
        .map_err(|e| CommandError::Rejected(e.into()))?;
        let customer = [customer_id.to_string()];
        if !crate::contacts::unknown_contacts(self.commands.pool(), &metadata.tenant_id, &customer)
            .await?
            .is_empty()
        {
            return Err(CommandError::Rejected(
                OrderError::UnknownCustomer {
                    customer_id: customer_id.to_string(),
                }
                .into(),
            ));
        }
        if let (OrderCommand::Place(place), Some(address)) = (&mut command, site_address) {
            place.site_address = Some(self.seal_for(&metadata.tenant_id, customer_id, address).await?);
        }
        let order_id = match idempotency_key.map(str::trim) {
            Some(key) if !key.is_empty() => self.keys.master().id_key().order_id(&metadata.tenant_id, key),
            _ => format!("order_{}", uuid::Uuid::new_v4()),
        };
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
