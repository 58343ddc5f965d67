//! The `Order` aggregate's state and its command handling.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::{OrderCommand, PlaceOrder, RecordPayment};
use super::error::OrderError;
use super::events::OrderEvent;
use super::values::{is_currency_code, LineItem, OrderStatus, PaymentProvider};
use crate::pii::Envelope;

/// What an order was placed with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
struct Placed {
    customer_id: String,
    items: Vec<LineItem>,
    currency: String,
    total_minor: i64,
}

/// An order: items, total, payments.
// `serde(default)`: snapshots taken before a field existed still load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct Order {
    placed: Option<Placed>,
    status: OrderStatus,
    paid_minor: i64,
    /// `(provider, reference)` of every payment recorded (the dedupe keys).
    payments: BTreeSet<(PaymentProvider, String)>,
}

impl Order {
    /// The order's status.
    pub fn status(&self) -> OrderStatus {
        self.status
    }

    /// The derived total, once placed.
    pub fn total_minor(&self) -> Option<i64> {
        self.placed.as_ref().map(|p| p.total_minor)
    }

    /// What has been paid.
    pub fn paid_minor(&self) -> i64 {
        self.paid_minor
    }

    /// What is still owed (zero before placement).
    pub fn outstanding_minor(&self) -> i64 {
        self.total_minor().map_or(0, |t| t.saturating_sub(self.paid_minor))
    }

    fn placed(&self) -> Result<&Placed, OrderError> {
        self.placed.as_ref().ok_or(OrderError::UnknownOrder)
    }

    fn place(&self, place: PlaceOrder) -> Result<Vec<OrderEvent>, OrderError> {
        // The stream's id comes from the caller's idempotency key (or a fresh id): the same
        // order again is a repeat and changes nothing; another order under the key is refused.
        if let Some(placed) = &self.placed {
            return if placed.customer_id == place.customer_id && placed.items == place.items {
                Ok(vec![])
            } else {
                Err(OrderError::IdempotencyKeyReused)
            };
        }
        if place.customer_id.trim().is_empty() {
            return Err(OrderError::Blank { field: "customer id" });
        }
        let Some(first) = place.items.first() else {
            return Err(OrderError::EmptyOrder);
        };
        let currency = first.currency.clone();
        let mut currencies = BTreeSet::new();
        let mut total_minor: i64 = 0;
        for item in &place.items {
            if item.sku.trim().is_empty() {
                return Err(OrderError::Blank { field: "sku" });
            }
            if !is_currency_code(&item.currency) {
                return Err(OrderError::InvalidCurrency {
                    currency: item.currency.clone(),
                });
            }
            if item.quantity == 0 {
                return Err(OrderError::ZeroQuantity { sku: item.sku.clone() });
            }
            if item.unit_price_minor < 0 {
                return Err(OrderError::NegativePrice { sku: item.sku.clone() });
            }
            if item.capacity_w == Some(0) {
                return Err(OrderError::ZeroCapacity { sku: item.sku.clone() });
            }
            currencies.insert(item.currency.clone());
            total_minor = item
                .line_total_minor()
                .and_then(|line| total_minor.checked_add(line))
                .ok_or(OrderError::TotalOverflow)?;
        }
        if currencies.len() > 1 {
            return Err(OrderError::MixedCurrencies {
                currencies: currencies.into_iter().collect(),
            });
        }
        if total_minor == 0 {
            return Err(OrderError::ZeroTotal);
        }
        Ok(vec![OrderEvent::OrderPlaced {
            customer_id: place.customer_id,
            items: place.items,
            currency,
            total_minor,
            site_address: place.site_address,
            by: place.by,
            at: place.at,
        }])
    }

    fn pay(&self, payment: RecordPayment) -> Result<Vec<OrderEvent>, OrderError> {
        let placed = self.placed()?;
        if payment.reference.trim().is_empty() {
            return Err(OrderError::Blank {
                field: "payment reference",
            });
        }
        if self.payments.contains(&(payment.provider, payment.reference.clone())) {
            return Ok(vec![]);
        }
        if self.status == OrderStatus::Cancelled {
            return Err(OrderError::PaymentAfterCancellation);
        }
        if payment.amount_minor <= 0 {
            return Err(OrderError::NonPositivePayment);
        }
        if payment.currency != placed.currency {
            return Err(OrderError::PaymentCurrencyMismatch {
                expected: placed.currency.clone(),
                got: payment.currency,
            });
        }
        let outstanding = self.outstanding_minor();
        if payment.amount_minor > outstanding {
            return Err(OrderError::Overpayment {
                amount_minor: payment.amount_minor,
                outstanding_minor: outstanding,
            });
        }
        // amount ≤ outstanding = total − paid, so paid + amount ≤ total: no overflow.
        let paid_minor = self.paid_minor + payment.amount_minor;
        let outstanding_minor = placed.total_minor - paid_minor;
        let mut events = vec![OrderEvent::PaymentRecorded {
            provider: payment.provider,
            reference: payment.reference,
            amount_minor: payment.amount_minor,
            currency: payment.currency,
            paid_minor,
            outstanding_minor,
            at: payment.at,
        }];
        if outstanding_minor == 0 {
            events.push(OrderEvent::OrderPaid {
                customer_id: placed.customer_id.clone(),
                total_minor: placed.total_minor,
                paid_minor,
                currency: placed.currency.clone(),
                installable_items: placed
                    .items
                    .iter()
                    .filter(|i| i.installable.is_some())
                    .cloned()
                    .collect(),
                at: payment.at,
            });
        }
        Ok(events)
    }

    fn fulfil(&self, by: String, at: DateTime<Utc>) -> Result<Vec<OrderEvent>, OrderError> {
        self.placed()?;
        match self.status {
            OrderStatus::Paid => Ok(vec![OrderEvent::OrderFulfilled { by, at }]),
            OrderStatus::Fulfilled => Ok(vec![]),
            status @ (OrderStatus::Placed | OrderStatus::Cancelled) => Err(OrderError::FulfilmentRequiresPayment {
                status: status.as_str(),
            }),
        }
    }

    fn cancel(&self, reason: Option<Envelope>, by: String, at: DateTime<Utc>) -> Result<Vec<OrderEvent>, OrderError> {
        let placed = self.placed()?;
        match self.status {
            OrderStatus::Placed | OrderStatus::Paid => Ok(vec![OrderEvent::OrderCancelled {
                reason,
                paid_minor: self.paid_minor,
                currency: placed.currency.clone(),
                by,
                at,
            }]),
            OrderStatus::Cancelled => Ok(vec![]),
            OrderStatus::Fulfilled => Err(OrderError::CancelAfterFulfilment),
        }
    }

    /// Decides what a command records: nothing for a repeat, events, or a refusal.
    fn decide(&self, command: OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        match command {
            OrderCommand::Place(place) => self.place(place),
            OrderCommand::RecordPayment(payment) => self.pay(payment),
            OrderCommand::Fulfil { by, at } => self.fulfil(by, at),
            OrderCommand::Cancel { reason, by, at } => self.cancel(reason, by, at),
        }
    }
}

impl Aggregate for Order {
    const TYPE: &'static str = "Order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            OrderEvent::OrderPlaced {
                customer_id,
                items,
                currency,
                total_minor,
                ..
            } => {
                self.placed = Some(Placed {
                    customer_id,
                    items,
                    currency,
                    total_minor,
                });
                self.status = OrderStatus::Placed;
            }
            OrderEvent::PaymentRecorded {
                provider,
                reference,
                paid_minor,
                ..
            } => {
                self.payments.insert((provider, reference));
                self.paid_minor = paid_minor;
            }
            OrderEvent::OrderPaid { .. } => self.status = OrderStatus::Paid,
            OrderEvent::OrderFulfilled { .. } => self.status = OrderStatus::Fulfilled,
            OrderEvent::OrderCancelled { .. } => self.status = OrderStatus::Cancelled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::installation::isr::InstallationType;
    use chrono::{Duration, TimeZone};
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<Order>;

    fn at(hour: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().unwrap() + Duration::hours(hour)
    }

    fn line(sku: &str, quantity: u32, price: i64, currency: &str, installable: Option<InstallationType>) -> LineItem {
        LineItem {
            capacity_w: None,
            sku: sku.into(),
            description: format!("{sku} description"),
            quantity,
            unit_price_minor: price,
            currency: currency.into(),
            installable,
        }
    }

    /// A 5 kW solar kit (1 × 400 000) and two cables (2 × 5 000): 410 000 USD cents.
    fn items() -> Vec<LineItem> {
        vec![
            line("SOLAR-5KW", 1, 400_000, "USD", Some(InstallationType::Solar)),
            line("CABLE", 2, 5_000, "USD", None),
        ]
    }

    fn place_command(items: Vec<LineItem>) -> OrderCommand {
        OrderCommand::Place(PlaceOrder {
            site_address: None,
            customer_id: "ct_1".into(),
            items,
            by: "agent".into(),
            at: at(0),
        })
    }

    fn placed() -> OrderEvent {
        OrderEvent::OrderPlaced {
            site_address: None,
            customer_id: "ct_1".into(),
            items: items(),
            currency: "USD".into(),
            total_minor: 410_000,
            by: "agent".into(),
            at: at(0),
        }
    }

    fn payment(provider: PaymentProvider, reference: &str, amount: i64) -> RecordPayment {
        RecordPayment {
            provider,
            reference: reference.into(),
            amount_minor: amount,
            currency: "USD".into(),
            at: at(1),
        }
    }

    fn recorded(provider: PaymentProvider, reference: &str, amount: i64, paid: i64) -> OrderEvent {
        OrderEvent::PaymentRecorded {
            provider,
            reference: reference.into(),
            amount_minor: amount,
            currency: "USD".into(),
            paid_minor: paid,
            outstanding_minor: 410_000 - paid,
            at: at(1),
        }
    }

    fn paid() -> OrderEvent {
        OrderEvent::OrderPaid {
            customer_id: "ct_1".into(),
            total_minor: 410_000,
            paid_minor: 410_000,
            currency: "USD".into(),
            installable_items: vec![items()[0].clone()],
            at: at(1),
        }
    }

    fn fully_paid() -> Vec<OrderEvent> {
        vec![
            placed(),
            recorded(PaymentProvider::Paynow, "PN-1", 410_000, 410_000),
            paid(),
        ]
    }

    fn cancel(hour: i64) -> OrderCommand {
        OrderCommand::Cancel {
            reason: None,
            by: "agent".into(),
            at: at(hour),
        }
    }

    // Place

    #[test]
    fn an_order_is_placed_with_its_total_derived() {
        Given::with(())
            .given_no_previous_events()
            .when(place_command(items()))
            .then_expect_events(vec![placed()]);
    }

    #[test]
    fn placing_the_same_order_again_records_nothing() {
        Given::with(())
            .given(vec![placed()])
            .when(place_command(items()))
            .then_expect_events(vec![]);
    }

    #[test]
    fn another_order_under_the_same_idempotency_key_is_refused() {
        Given::with(())
            .given(vec![placed()])
            .when(place_command(vec![line("X", 1, 1, "USD", None)]))
            .then_expect_error(OrderError::IdempotencyKeyReused);
        Given::with(())
            .given(vec![placed()])
            .when(OrderCommand::Place(PlaceOrder {
                site_address: None,
                customer_id: "ct_2".into(),
                items: items(),
                by: "agent".into(),
                at: at(0),
            }))
            .then_expect_error(OrderError::IdempotencyKeyReused);
    }

    #[test]
    fn an_empty_order_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(place_command(vec![]))
            .then_expect_error(OrderError::EmptyOrder);
    }

    #[test]
    fn an_order_in_mixed_currencies_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(place_command(vec![
                line("A", 1, 100, "USD", None),
                line("B", 1, 100, "ZWG", None),
            ]))
            .then_expect_error(OrderError::MixedCurrencies {
                currencies: vec!["USD".into(), "ZWG".into()],
            });
    }

    #[test]
    fn an_order_in_an_invalid_currency_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(place_command(vec![line("A", 1, 100, "usd", None)]))
            .then_expect_error(OrderError::InvalidCurrency { currency: "usd".into() });
    }

    #[test]
    fn a_line_of_zero_quantity_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(place_command(vec![line("A", 0, 100, "USD", None)]))
            .then_expect_error(OrderError::ZeroQuantity { sku: "A".into() });
    }

    #[test]
    fn a_negative_price_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(place_command(vec![line("A", 1, -100, "USD", None)]))
            .then_expect_error(OrderError::NegativePrice { sku: "A".into() });
    }

    #[test]
    fn a_capacity_of_zero_watts_is_refused() {
        let item = LineItem {
            capacity_w: Some(0),
            ..line("PANEL", 10, 100, "USD", Some(InstallationType::Solar))
        };
        Given::with(())
            .given_no_previous_events()
            .when(place_command(vec![item]))
            .then_expect_error(OrderError::ZeroCapacity { sku: "PANEL".into() });
    }

    #[test]
    fn the_site_address_and_capacities_are_recorded_with_the_order() {
        let address = Envelope {
            enc: "aes256gcm.v1".into(),
            nonce: "n".into(),
            ciphertext: "address".into(),
        };
        let mut items = items();
        items[0].capacity_w = Some(5_000);
        let OrderCommand::Place(mut place) = place_command(items.clone()) else {
            unreachable!("place_command builds a Place")
        };
        place.site_address = Some(address.clone());
        let OrderEvent::OrderPlaced { total_minor, .. } = placed() else {
            unreachable!("placed builds an OrderPlaced")
        };
        Given::with(())
            .given_no_previous_events()
            .when(OrderCommand::Place(place))
            .then_expect_events(vec![OrderEvent::OrderPlaced {
                site_address: Some(address),
                customer_id: "ct_1".into(),
                items,
                currency: "USD".into(),
                total_minor,
                by: "agent".into(),
                at: at(0),
            }]);
    }

    #[test]
    fn an_order_totalling_zero_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(place_command(vec![line("FREEBIE", 1, 0, "USD", None)]))
            .then_expect_error(OrderError::ZeroTotal);
    }

    #[test]
    fn a_total_beyond_64_bits_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(place_command(vec![line("A", 2, i64::MAX / 2 + 1, "USD", None)]))
            .then_expect_error(OrderError::TotalOverflow);
    }

    #[test]
    fn an_order_without_a_customer_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(OrderCommand::Place(PlaceOrder {
                site_address: None,
                customer_id: "".into(),
                items: items(),
                by: "agent".into(),
                at: at(0),
            }))
            .then_expect_error(OrderError::Blank { field: "customer id" });
    }

    // Payments

    #[test]
    fn a_partial_payment_records_the_amounts_paid_and_outstanding() {
        Given::with(())
            .given(vec![placed()])
            .when(OrderCommand::RecordPayment(payment(
                PaymentProvider::Mpesa,
                "MP-1",
                100_000,
            )))
            .then_expect_events(vec![recorded(PaymentProvider::Mpesa, "MP-1", 100_000, 100_000)]);
    }

    #[test]
    fn the_payment_covering_the_total_pays_the_order_and_lists_installable_items() {
        Given::with(())
            .given(vec![
                placed(),
                recorded(PaymentProvider::Mpesa, "MP-1", 100_000, 100_000),
            ])
            .when(OrderCommand::RecordPayment(payment(
                PaymentProvider::Stripe,
                "pi_1",
                310_000,
            )))
            .then_expect_events(vec![
                recorded(PaymentProvider::Stripe, "pi_1", 310_000, 410_000),
                paid(),
            ]);
    }

    #[test]
    fn a_payment_delivered_again_records_nothing() {
        Given::with(())
            .given(fully_paid())
            .when(OrderCommand::RecordPayment(payment(
                PaymentProvider::Paynow,
                "PN-1",
                410_000,
            )))
            .then_expect_events(vec![]);
    }

    #[test]
    fn the_same_reference_from_another_provider_is_another_payment() {
        Given::with(())
            .given(vec![placed(), recorded(PaymentProvider::Paynow, "R-1", 1_000, 1_000)])
            .when(OrderCommand::RecordPayment(payment(
                PaymentProvider::Cash,
                "R-1",
                1_000,
            )))
            .then_expect_events(vec![recorded(PaymentProvider::Cash, "R-1", 1_000, 2_000)]);
    }

    #[test]
    fn a_payment_beyond_the_outstanding_amount_is_refused() {
        Given::with(())
            .given(vec![
                placed(),
                recorded(PaymentProvider::Mpesa, "MP-1", 400_000, 400_000),
            ])
            .when(OrderCommand::RecordPayment(payment(
                PaymentProvider::Cash,
                "C-1",
                10_001,
            )))
            .then_expect_error(OrderError::Overpayment {
                amount_minor: 10_001,
                outstanding_minor: 10_000,
            });
    }

    #[test]
    fn a_payment_after_cancellation_is_refused() {
        Given::with(())
            .given(vec![
                placed(),
                OrderEvent::OrderCancelled {
                    reason: None,
                    paid_minor: 0,
                    currency: "USD".into(),
                    by: "agent".into(),
                    at: at(1),
                },
            ])
            .when(OrderCommand::RecordPayment(payment(
                PaymentProvider::Paynow,
                "PN-9",
                1_000,
            )))
            .then_expect_error(OrderError::PaymentAfterCancellation);
    }

    #[test]
    fn a_payment_in_another_currency_is_refused() {
        let mut p = payment(PaymentProvider::Mpesa, "MP-1", 1_000);
        p.currency = "KES".into();
        Given::with(())
            .given(vec![placed()])
            .when(OrderCommand::RecordPayment(p))
            .then_expect_error(OrderError::PaymentCurrencyMismatch {
                expected: "USD".into(),
                got: "KES".into(),
            });
    }

    #[test]
    fn a_payment_of_zero_is_refused() {
        Given::with(())
            .given(vec![placed()])
            .when(OrderCommand::RecordPayment(payment(PaymentProvider::Cash, "C-0", 0)))
            .then_expect_error(OrderError::NonPositivePayment);
    }

    #[test]
    fn a_payment_without_a_reference_is_refused() {
        Given::with(())
            .given(vec![placed()])
            .when(OrderCommand::RecordPayment(payment(PaymentProvider::Cash, " ", 10)))
            .then_expect_error(OrderError::Blank {
                field: "payment reference",
            });
    }

    #[test]
    fn a_payment_for_an_order_never_placed_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(OrderCommand::RecordPayment(payment(PaymentProvider::Cash, "C-1", 10)))
            .then_expect_error(OrderError::UnknownOrder);
    }

    // Fulfilment

    #[test]
    fn a_paid_order_is_fulfilled() {
        Given::with(())
            .given(fully_paid())
            .when(OrderCommand::Fulfil {
                by: "ops".into(),
                at: at(2),
            })
            .then_expect_events(vec![OrderEvent::OrderFulfilled {
                by: "ops".into(),
                at: at(2),
            }]);
    }

    #[test]
    fn fulfilling_twice_records_nothing() {
        let mut given = fully_paid();
        given.push(OrderEvent::OrderFulfilled {
            by: "ops".into(),
            at: at(2),
        });
        Given::with(())
            .given(given)
            .when(OrderCommand::Fulfil {
                by: "ops".into(),
                at: at(3),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_unpaid_order_cannot_be_fulfilled() {
        Given::with(())
            .given(vec![placed()])
            .when(OrderCommand::Fulfil {
                by: "ops".into(),
                at: at(2),
            })
            .then_expect_error(OrderError::FulfilmentRequiresPayment { status: "placed" });
    }

    // Cancellation

    #[test]
    fn a_partly_paid_order_is_cancelled_with_what_was_paid() {
        Given::with(())
            .given(vec![
                placed(),
                recorded(PaymentProvider::Mpesa, "MP-1", 100_000, 100_000),
            ])
            .when(cancel(2))
            .then_expect_events(vec![OrderEvent::OrderCancelled {
                reason: None,
                paid_minor: 100_000,
                currency: "USD".into(),
                by: "agent".into(),
                at: at(2),
            }]);
    }

    #[test]
    fn cancelling_twice_records_nothing() {
        Given::with(())
            .given(vec![
                placed(),
                OrderEvent::OrderCancelled {
                    reason: None,
                    paid_minor: 0,
                    currency: "USD".into(),
                    by: "agent".into(),
                    at: at(1),
                },
            ])
            .when(cancel(2))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_fulfilled_order_cannot_be_cancelled() {
        let mut given = fully_paid();
        given.push(OrderEvent::OrderFulfilled {
            by: "ops".into(),
            at: at(2),
        });
        Given::with(())
            .given(given)
            .when(cancel(3))
            .then_expect_error(OrderError::CancelAfterFulfilment);
    }

    #[test]
    fn every_event_type_is_listed() {
        for e in fully_paid() {
            assert!(OrderEvent::TYPES.contains(&cqrs_es::DomainEvent::event_type(&e).as_str()));
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).single().unwrap()
    }

    proptest! {
        /// Payments in any amounts, with repeated references: the order agrees with a reference
        /// model (a set of references and a running sum), never holds more than its total, and
        /// is paid exactly when the payments cover the total.
        #[test]
        fn payments_follow_the_reference_model(
            total in 1i64..10_000,
            payments in proptest::collection::vec((0u8..6, -10i64..6_000), 0..20),
        ) {
            let mut order = Order::default();
            let place = OrderCommand::Place(PlaceOrder {
                site_address: None,
                customer_id: "ct_1".into(),
                items: vec![LineItem {
                    capacity_w: None,
                    sku: "KIT".into(), description: "kit".into(), quantity: 1,
                    unit_price_minor: total, currency: "USD".into(), installable: None,
                }],
                by: "a".into(),
                at: at(),
            });
            for e in order.decide(place).unwrap() { order.apply(e); }
            let mut seen = BTreeSet::new();
            let mut model_paid = 0i64;
            for (reference, amount) in payments {
                let reference = format!("R-{reference}");
                let events = order.decide(OrderCommand::RecordPayment(RecordPayment {
                    provider: PaymentProvider::Mpesa,
                    reference: reference.clone(),
                    amount_minor: amount,
                    currency: "USD".into(),
                    at: at(),
                }));
                let accepted = !seen.contains(&reference) && amount > 0 && amount <= total - model_paid;
                match events {
                    Ok(events) if accepted => {
                        seen.insert(reference);
                        model_paid += amount;
                        prop_assert_eq!(events.len(), if model_paid == total { 2 } else { 1 });
                        for e in events { order.apply(e); }
                    }
                    Ok(events) => prop_assert!(events.is_empty() && seen.contains(&reference)),
                    Err(e) => prop_assert!(!accepted, "refused {:?}", e),
                }
                prop_assert_eq!(order.paid_minor(), model_paid);
                prop_assert!(order.paid_minor() <= total);
                prop_assert_eq!(order.status() == OrderStatus::Paid, model_paid == total);
            }
        }
    }
}
