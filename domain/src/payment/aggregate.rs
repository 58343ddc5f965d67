//! The `Payment` aggregate's state and its command handling.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::{ConfirmPayment, PaymentCommand};
use super::error::PaymentError;
use super::events::PaymentEvent;
use super::values::{PaymentMatch, PaymentStatus};
use crate::installation::order::is_currency_code;
use crate::installation::PaymentProvider;

/// What the provider confirmed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
struct Confirmed {
    provider: PaymentProvider,
    reference: String,
    merchant_reference: String,
    amount_minor: i64,
    currency: String,
}

/// A payment: confirmed, then matched or kept unmatched.
// `serde(default)`: snapshots taken before a field existed still load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct Payment {
    confirmed: Option<Confirmed>,
    status: PaymentStatus,
    matched: Option<PaymentMatch>,
    unmatched_reason: Option<String>,
}

impl Payment {
    /// The payment's status.
    pub fn status(&self) -> PaymentStatus {
        self.status
    }

    /// What it was matched to, once matched.
    pub fn matched(&self) -> Option<&PaymentMatch> {
        self.matched.as_ref()
    }

    /// Why it was left unmatched (a stable code), while unmatched.
    pub fn unmatched_reason(&self) -> Option<&str> {
        self.unmatched_reason.as_deref()
    }

    /// The merchant reference the provider sent back, once confirmed.
    pub fn merchant_reference(&self) -> Option<&str> {
        self.confirmed.as_ref().map(|c| c.merchant_reference.as_str())
    }

    /// The confirmed amount and currency.
    pub fn amount(&self) -> Option<(i64, &str)> {
        self.confirmed.as_ref().map(|c| (c.amount_minor, c.currency.as_str()))
    }

    /// The provider and its reference, once confirmed.
    pub fn provider_reference(&self) -> Option<(PaymentProvider, &str)> {
        self.confirmed.as_ref().map(|c| (c.provider, c.reference.as_str()))
    }

    fn confirmed(&self) -> Result<&Confirmed, PaymentError> {
        self.confirmed.as_ref().ok_or(PaymentError::UnknownPayment)
    }

    fn confirm(&self, confirm: ConfirmPayment) -> Result<Vec<PaymentEvent>, PaymentError> {
        if self.confirmed.is_some() {
            return Ok(vec![]);
        }
        if confirm.reference.trim().is_empty() {
            return Err(PaymentError::Blank {
                field: "provider reference",
            });
        }
        if confirm.amount_minor <= 0 {
            return Err(PaymentError::NonPositiveAmount {
                amount_minor: confirm.amount_minor,
            });
        }
        if !is_currency_code(&confirm.currency) {
            return Err(PaymentError::InvalidCurrency {
                currency: confirm.currency,
            });
        }
        Ok(vec![PaymentEvent::PaymentConfirmed {
            provider: confirm.provider,
            reference: confirm.reference,
            merchant_reference: confirm.merchant_reference,
            amount_minor: confirm.amount_minor,
            currency: confirm.currency,
            at: confirm.at,
        }])
    }

    /// `Ok(true)`: the same match was already made (record nothing); `Ok(false)`: undecided.
    fn undecided_or_same(&self, target: &PaymentMatch) -> Result<bool, PaymentError> {
        match self.status {
            PaymentStatus::Unknown => Err(PaymentError::UnknownPayment),
            PaymentStatus::Confirmed => Ok(false),
            PaymentStatus::Matched => match &self.matched {
                Some(m) if m == target => Ok(true),
                Some(m) => Err(PaymentError::AlreadyMatched { target: m.to_string() }),
                None => Err(PaymentError::AlreadyMatched {
                    target: "something".into(),
                }),
            },
            PaymentStatus::Unmatched => Err(PaymentError::AlreadyUnmatched {
                reason: self.unmatched_reason.clone().unwrap_or_default(),
            }),
        }
    }

    fn match_to_order(&self, order_id: String, at: DateTime<Utc>) -> Result<Vec<PaymentEvent>, PaymentError> {
        let confirmed = self.confirmed()?;
        if order_id.trim().is_empty() {
            return Err(PaymentError::Blank { field: "order id" });
        }
        if self.undecided_or_same(&PaymentMatch::Order {
            order_id: order_id.clone(),
        })? {
            return Ok(vec![]);
        }
        Ok(vec![PaymentEvent::PaymentMatchedToOrder {
            order_id,
            amount_minor: confirmed.amount_minor,
            currency: confirmed.currency.clone(),
            at,
        }])
    }

    fn match_to_wallet(
        &self,
        wallet_id: String,
        milli_tokens: i64,
        at: DateTime<Utc>,
    ) -> Result<Vec<PaymentEvent>, PaymentError> {
        let confirmed = self.confirmed()?;
        if wallet_id.trim().is_empty() {
            return Err(PaymentError::Blank { field: "wallet id" });
        }
        if milli_tokens <= 0 {
            return Err(PaymentError::NonPositiveTokens { milli_tokens });
        }
        if self.undecided_or_same(&PaymentMatch::Wallet {
            wallet_id: wallet_id.clone(),
            milli_tokens,
        })? {
            return Ok(vec![]);
        }
        Ok(vec![PaymentEvent::PaymentMatchedToWallet {
            wallet_id,
            milli_tokens,
            amount_minor: confirmed.amount_minor,
            currency: confirmed.currency.clone(),
            at,
        }])
    }

    fn leave_unmatched(&self, reason: String, at: DateTime<Utc>) -> Result<Vec<PaymentEvent>, PaymentError> {
        let confirmed = self.confirmed()?;
        if reason.trim().is_empty() {
            return Err(PaymentError::Blank { field: "reason" });
        }
        match self.status {
            PaymentStatus::Unmatched => Ok(vec![]),
            PaymentStatus::Matched => Err(PaymentError::AlreadyMatched {
                target: self.matched.as_ref().map(|m| m.to_string()).unwrap_or_default(),
            }),
            PaymentStatus::Unknown | PaymentStatus::Confirmed => Ok(vec![PaymentEvent::PaymentLeftUnmatched {
                reason,
                amount_minor: confirmed.amount_minor,
                currency: confirmed.currency.clone(),
                at,
            }]),
        }
    }

    fn match_manually(
        &self,
        order_id: String,
        by: String,
        at: DateTime<Utc>,
    ) -> Result<Vec<PaymentEvent>, PaymentError> {
        let confirmed = self.confirmed()?;
        if order_id.trim().is_empty() {
            return Err(PaymentError::Blank { field: "order id" });
        }
        if by.trim().is_empty() {
            return Err(PaymentError::Blank { field: "by" });
        }
        match (self.status, &self.matched) {
            (PaymentStatus::Unmatched, _) => Ok(vec![PaymentEvent::PaymentMatchedManually {
                order_id,
                amount_minor: confirmed.amount_minor,
                currency: confirmed.currency.clone(),
                by,
                at,
            }]),
            (PaymentStatus::Matched, Some(PaymentMatch::Order { order_id: matched })) if *matched == order_id => {
                Ok(vec![])
            }
            (PaymentStatus::Matched, m) => Err(PaymentError::AlreadyMatched {
                target: m.as_ref().map(|m| m.to_string()).unwrap_or_default(),
            }),
            (status @ (PaymentStatus::Unknown | PaymentStatus::Confirmed), _) => Err(PaymentError::NotUnmatched {
                status: status.as_str(),
            }),
        }
    }

    /// Decides what a command records: nothing for a repeat, events, or a refusal.
    fn decide(&self, command: PaymentCommand) -> Result<Vec<PaymentEvent>, PaymentError> {
        match command {
            PaymentCommand::Confirm(confirm) => self.confirm(confirm),
            PaymentCommand::MatchToOrder { order_id, at } => self.match_to_order(order_id, at),
            PaymentCommand::MatchToWallet {
                wallet_id,
                milli_tokens,
                at,
            } => self.match_to_wallet(wallet_id, milli_tokens, at),
            PaymentCommand::LeaveUnmatched { reason, at } => self.leave_unmatched(reason, at),
            PaymentCommand::MatchManually { order_id, by, at } => self.match_manually(order_id, by, at),
        }
    }
}

impl Aggregate for Payment {
    const TYPE: &'static str = "Payment";
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Error = PaymentError;
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
            PaymentEvent::PaymentConfirmed {
                provider,
                reference,
                merchant_reference,
                amount_minor,
                currency,
                ..
            } => {
                self.confirmed = Some(Confirmed {
                    provider,
                    reference,
                    merchant_reference,
                    amount_minor,
                    currency,
                });
                self.status = PaymentStatus::Confirmed;
            }
            PaymentEvent::PaymentMatchedToOrder { order_id, .. }
            | PaymentEvent::PaymentMatchedManually { order_id, .. } => {
                self.matched = Some(PaymentMatch::Order { order_id });
                self.unmatched_reason = None;
                self.status = PaymentStatus::Matched;
            }
            PaymentEvent::PaymentMatchedToWallet {
                wallet_id,
                milli_tokens,
                ..
            } => {
                self.matched = Some(PaymentMatch::Wallet {
                    wallet_id,
                    milli_tokens,
                });
                self.status = PaymentStatus::Matched;
            }
            PaymentEvent::PaymentLeftUnmatched { reason, .. } => {
                self.unmatched_reason = Some(reason);
                self.status = PaymentStatus::Unmatched;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<Payment>;

    fn at(minute: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).single().unwrap() + Duration::minutes(minute)
    }

    fn confirm(reference: &str, amount: i64, currency: &str) -> PaymentCommand {
        PaymentCommand::Confirm(ConfirmPayment {
            provider: PaymentProvider::Paynow,
            reference: reference.into(),
            merchant_reference: "order_1".into(),
            amount_minor: amount,
            currency: currency.into(),
            at: at(0),
        })
    }

    fn confirmed() -> PaymentEvent {
        PaymentEvent::PaymentConfirmed {
            provider: PaymentProvider::Paynow,
            reference: "PN-1".into(),
            merchant_reference: "order_1".into(),
            amount_minor: 10_000,
            currency: "USD".into(),
            at: at(0),
        }
    }

    fn matched_to_order(order: &str) -> PaymentEvent {
        PaymentEvent::PaymentMatchedToOrder {
            order_id: order.into(),
            amount_minor: 10_000,
            currency: "USD".into(),
            at: at(1),
        }
    }

    fn left_unmatched() -> PaymentEvent {
        PaymentEvent::PaymentLeftUnmatched {
            reason: "UNKNOWN_ORDER".into(),
            amount_minor: 10_000,
            currency: "USD".into(),
            at: at(1),
        }
    }

    fn to_order(order: &str) -> PaymentCommand {
        PaymentCommand::MatchToOrder {
            order_id: order.into(),
            at: at(1),
        }
    }

    fn to_wallet(wallet: &str, tokens: i64) -> PaymentCommand {
        PaymentCommand::MatchToWallet {
            wallet_id: wallet.into(),
            milli_tokens: tokens,
            at: at(1),
        }
    }

    fn unmatched(reason: &str) -> PaymentCommand {
        PaymentCommand::LeaveUnmatched {
            reason: reason.into(),
            at: at(1),
        }
    }

    fn manually(order: &str, by: &str) -> PaymentCommand {
        PaymentCommand::MatchManually {
            order_id: order.into(),
            by: by.into(),
            at: at(2),
        }
    }

    // Confirm

    #[test]
    fn a_confirmed_payment_is_recorded_with_its_amount_and_merchant_reference() {
        Given::with(())
            .given_no_previous_events()
            .when(confirm("PN-1", 10_000, "USD"))
            .then_expect_events(vec![confirmed()]);
    }

    #[test]
    fn a_confirmation_delivered_again_records_nothing_even_with_other_values() {
        Given::with(())
            .given(vec![confirmed()])
            .when(confirm("PN-1", 99, "ZWG"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_confirmation_without_a_provider_reference_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(confirm(" ", 10_000, "USD"))
            .then_expect_error(PaymentError::Blank {
                field: "provider reference",
            });
    }

    #[test]
    fn a_confirmation_of_zero_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(confirm("PN-1", 0, "USD"))
            .then_expect_error(PaymentError::NonPositiveAmount { amount_minor: 0 });
    }

    #[test]
    fn a_confirmation_in_an_invalid_currency_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(confirm("PN-1", 10, "usd"))
            .then_expect_error(PaymentError::InvalidCurrency { currency: "usd".into() });
    }

    // Match to an order

    #[test]
    fn a_confirmed_payment_is_matched_to_an_order_with_its_amount() {
        Given::with(())
            .given(vec![confirmed()])
            .when(to_order("order_1"))
            .then_expect_events(vec![matched_to_order("order_1")]);
    }

    #[test]
    fn matching_to_the_same_order_again_records_nothing() {
        Given::with(())
            .given(vec![confirmed(), matched_to_order("order_1")])
            .when(to_order("order_1"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn matching_a_matched_payment_to_another_order_is_refused() {
        Given::with(())
            .given(vec![confirmed(), matched_to_order("order_1")])
            .when(to_order("order_2"))
            .then_expect_error(PaymentError::AlreadyMatched {
                target: "order order_1".into(),
            });
    }

    #[test]
    fn matching_an_unmatched_payment_automatically_is_refused() {
        Given::with(())
            .given(vec![confirmed(), left_unmatched()])
            .when(to_order("order_1"))
            .then_expect_error(PaymentError::AlreadyUnmatched {
                reason: "UNKNOWN_ORDER".into(),
            });
    }

    #[test]
    fn matching_a_payment_never_confirmed_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(to_order("order_1"))
            .then_expect_error(PaymentError::UnknownPayment);
    }

    #[test]
    fn matching_to_a_blank_order_is_refused() {
        Given::with(())
            .given(vec![confirmed()])
            .when(to_order(""))
            .then_expect_error(PaymentError::Blank { field: "order id" });
    }

    // Match to a wallet top-up

    #[test]
    fn a_confirmed_payment_tops_up_a_wallet_with_its_tokens() {
        Given::with(())
            .given(vec![confirmed()])
            .when(to_wallet("wallet_main", 10_000_000))
            .then_expect_events(vec![PaymentEvent::PaymentMatchedToWallet {
                wallet_id: "wallet_main".into(),
                milli_tokens: 10_000_000,
                amount_minor: 10_000,
                currency: "USD".into(),
                at: at(1),
            }]);
    }

    #[test]
    fn a_top_up_of_no_tokens_is_refused() {
        Given::with(())
            .given(vec![confirmed()])
            .when(to_wallet("wallet_main", 0))
            .then_expect_error(PaymentError::NonPositiveTokens { milli_tokens: 0 });
    }

    #[test]
    fn a_top_up_of_a_payment_matched_to_an_order_is_refused() {
        Given::with(())
            .given(vec![confirmed(), matched_to_order("order_1")])
            .when(to_wallet("wallet_main", 5))
            .then_expect_error(PaymentError::AlreadyMatched {
                target: "order order_1".into(),
            });
    }

    #[test]
    fn a_top_up_to_a_blank_wallet_is_refused() {
        Given::with(())
            .given(vec![confirmed()])
            .when(to_wallet(" ", 5))
            .then_expect_error(PaymentError::Blank { field: "wallet id" });
    }

    #[test]
    fn a_top_up_of_a_payment_never_confirmed_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(to_wallet("wallet_main", 5))
            .then_expect_error(PaymentError::UnknownPayment);
    }

    // Leave unmatched

    #[test]
    fn a_payment_nothing_takes_is_kept_unmatched_with_the_reason() {
        Given::with(())
            .given(vec![confirmed()])
            .when(unmatched("UNKNOWN_ORDER"))
            .then_expect_events(vec![left_unmatched()]);
    }

    #[test]
    fn leaving_a_payment_unmatched_again_records_nothing() {
        Given::with(())
            .given(vec![confirmed(), left_unmatched()])
            .when(unmatched("OTHER"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_matched_payment_cannot_be_left_unmatched() {
        Given::with(())
            .given(vec![confirmed(), matched_to_order("order_1")])
            .when(unmatched("UNKNOWN_ORDER"))
            .then_expect_error(PaymentError::AlreadyMatched {
                target: "order order_1".into(),
            });
    }

    #[test]
    fn leaving_unmatched_without_a_reason_is_refused() {
        Given::with(())
            .given(vec![confirmed()])
            .when(unmatched(""))
            .then_expect_error(PaymentError::Blank { field: "reason" });
    }

    #[test]
    fn leaving_a_payment_never_confirmed_unmatched_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(unmatched("X"))
            .then_expect_error(PaymentError::UnknownPayment);
    }

    // Manual match by finance

    #[test]
    fn finance_matches_an_unmatched_payment_to_an_order() {
        Given::with(())
            .given(vec![confirmed(), left_unmatched()])
            .when(manually("order_7", "finance-1"))
            .then_expect_events(vec![PaymentEvent::PaymentMatchedManually {
                order_id: "order_7".into(),
                amount_minor: 10_000,
                currency: "USD".into(),
                by: "finance-1".into(),
                at: at(2),
            }]);
    }

    #[test]
    fn repeating_a_manual_match_records_nothing() {
        Given::with(())
            .given(vec![
                confirmed(),
                left_unmatched(),
                PaymentEvent::PaymentMatchedManually {
                    order_id: "order_7".into(),
                    amount_minor: 10_000,
                    currency: "USD".into(),
                    by: "finance-1".into(),
                    at: at(2),
                },
            ])
            .when(manually("order_7", "finance-2"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_manual_match_of_a_payment_not_yet_decided_is_refused() {
        Given::with(())
            .given(vec![confirmed()])
            .when(manually("order_7", "finance-1"))
            .then_expect_error(PaymentError::NotUnmatched { status: "confirmed" });
    }

    #[test]
    fn a_manual_match_of_a_payment_matched_elsewhere_is_refused() {
        Given::with(())
            .given(vec![confirmed(), matched_to_order("order_1")])
            .when(manually("order_7", "finance-1"))
            .then_expect_error(PaymentError::AlreadyMatched {
                target: "order order_1".into(),
            });
    }

    #[test]
    fn a_manual_match_without_who_did_it_is_refused() {
        Given::with(())
            .given(vec![confirmed(), left_unmatched()])
            .when(manually("order_7", " "))
            .then_expect_error(PaymentError::Blank { field: "by" });
    }

    #[test]
    fn a_manual_match_of_a_payment_never_confirmed_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(manually("order_7", "finance-1"))
            .then_expect_error(PaymentError::UnknownPayment);
    }

    #[test]
    fn every_event_type_is_listed() {
        for e in [
            confirmed(),
            matched_to_order("o"),
            left_unmatched(),
            PaymentEvent::PaymentMatchedToWallet {
                wallet_id: "w".into(),
                milli_tokens: 1,
                amount_minor: 1,
                currency: "USD".into(),
                at: at(0),
            },
            PaymentEvent::PaymentMatchedManually {
                order_id: "o".into(),
                amount_minor: 1,
                currency: "USD".into(),
                by: "f".into(),
                at: at(0),
            },
        ] {
            assert!(PaymentEvent::TYPES.contains(&cqrs_es::DomainEvent::event_type(&e).as_str()));
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

    fn command(kind: u8, n: u8, amount: i64) -> PaymentCommand {
        match kind {
            0 => PaymentCommand::Confirm(ConfirmPayment {
                provider: PaymentProvider::Mpesa,
                reference: "MP-1".into(),
                merchant_reference: format!("order_{n}"),
                amount_minor: amount,
                currency: "KES".into(),
                at: at(),
            }),
            1 => PaymentCommand::MatchToOrder {
                order_id: format!("order_{n}"),
                at: at(),
            },
            2 => PaymentCommand::MatchToWallet {
                wallet_id: format!("wallet_{n}"),
                milli_tokens: amount,
                at: at(),
            },
            3 => PaymentCommand::LeaveUnmatched {
                reason: format!("R{n}"),
                at: at(),
            },
            _ => PaymentCommand::MatchManually {
                order_id: format!("order_{n}"),
                by: "finance".into(),
                at: at(),
            },
        }
    }

    proptest! {
        /// Random command sequences, each command delivered twice in a row: the repeat never
        /// records anything; at most one confirmation and at most one automatic decision are
        /// ever recorded; the first confirmation's amount stands; a matched payment stays
        /// matched to what it was first matched to.
        #[test]
        fn repeats_record_nothing_and_the_first_outcome_stands(
            steps in proptest::collection::vec((0u8..5, 0u8..3, -5i64..1_000), 0..30),
        ) {
            let mut payment = Payment::default();
            let mut confirmations = 0;
            let mut automatic = 0;
            let mut first_amount: Option<i64> = None;
            let mut first_match: Option<PaymentMatch> = None;
            for (kind, n, amount) in steps {
                let command = command(kind, n, amount);
                if let Ok(events) = payment.decide(command.clone()) {
                    for e in events {
                        match &e {
                            PaymentEvent::PaymentConfirmed { amount_minor, .. } => {
                                confirmations += 1;
                                first_amount = Some(*amount_minor);
                            }
                            PaymentEvent::PaymentMatchedToOrder { .. }
                            | PaymentEvent::PaymentMatchedToWallet { .. }
                            | PaymentEvent::PaymentLeftUnmatched { .. } => automatic += 1,
                            PaymentEvent::PaymentMatchedManually { .. } => {}
                        }
                        payment.apply(e);
                    }
                }
                if first_match.is_none() {
                    first_match = payment.matched().cloned();
                }
                // The same command again: nothing new, whatever the first answer was.
                let again = payment.decide(command);
                prop_assert!(again.as_ref().map_or(true, Vec::is_empty), "a repeat recorded {:?}", again);
                prop_assert!(confirmations <= 1);
                prop_assert!(automatic <= 1);
                prop_assert_eq!(payment.amount().map(|(a, _)| a), first_amount);
                prop_assert_eq!(payment.matched().cloned(), first_match.clone());
                prop_assert_eq!(
                    payment.unmatched_reason().is_some(),
                    payment.status() == PaymentStatus::Unmatched
                );
            }
        }
    }
}
