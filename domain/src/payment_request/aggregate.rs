//! The `PaymentRequest` aggregate's state and its command handling.

use std::collections::BTreeMap;
#[cfg(test)]
use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::{PaidCallback, PaymentRequestCommand, PaymentTarget, RequestMessage, RequestPayment};
use super::error::PaymentRequestError;
use super::events::{CallbackRefusal, PaymentRequestEvent};
use crate::installation::order::is_currency_code;
use crate::installation::PaymentProvider;

/// Where a request stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentRequestStatus {
    /// Not requested (a fresh stream).
    #[default]
    Unknown,
    Requested,
    Sent,
    Paid,
    Failed,
    Cancelled,
    Expired,
}

impl PaymentRequestStatus {
    /// The status as stored in read models and shown in GraphQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Requested => "requested",
            Self::Sent => "sent",
            Self::Paid => "paid",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }

    fn is_open(self) -> bool {
        matches!(self, Self::Requested | Self::Sent)
    }
}

/// A payment request.
// `serde(default)`: snapshots taken before a field existed still load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct PaymentRequest {
    request: Option<RequestPayment>,
    status: PaymentRequestStatus,
    provider_request_id: Option<String>,
    payment_url: Option<String>,
    paid_reference: Option<String>,
    /// Provider references of callbacks refused, with why: a repeat records nothing.
    refused: BTreeMap<String, CallbackRefusal>,
    /// How it went to the customer on WhatsApp, once it did.
    message: Option<RequestMessage>,
    reminded: bool,
}

impl PaymentRequest {
    pub fn status(&self) -> PaymentRequestStatus {
        self.status
    }

    /// What was asked, once requested.
    pub fn request(&self) -> Option<&RequestPayment> {
        self.request.as_ref()
    }

    /// The provider's id for the initiation, once sent.
    pub fn provider_request_id(&self) -> Option<&str> {
        self.provider_request_id.as_deref()
    }

    /// The page the customer pays on, when the provider gave one.
    pub fn payment_url(&self) -> Option<&str> {
        self.payment_url.as_deref()
    }

    /// The provider reference that paid the request.
    pub fn paid_reference(&self) -> Option<&str> {
        self.paid_reference.as_deref()
    }

    /// How the request went to the customer on WhatsApp, once it did.
    pub fn message(&self) -> Option<&RequestMessage> {
        self.message.as_ref()
    }

    /// Whether the reminder went out.
    pub fn reminded(&self) -> bool {
        self.reminded
    }

    fn record_messaged(
        &self,
        message: RequestMessage,
        at: DateTime<Utc>,
    ) -> Result<Vec<PaymentRequestEvent>, PaymentRequestError> {
        self.requested()?;
        if self.message.is_some() {
            return Ok(vec![]);
        }
        if self.status != PaymentRequestStatus::Sent {
            return Err(PaymentRequestError::NotSent {
                status: self.status.as_str(),
            });
        }
        if message.template.trim().is_empty() {
            return Err(PaymentRequestError::Blank { field: "template" });
        }
        if message.language.trim().is_empty() {
            return Err(PaymentRequestError::Blank { field: "language" });
        }
        Ok(vec![PaymentRequestEvent::PaymentRequestMessaged {
            template: message.template,
            language: message.language,
            parameters: message.parameters,
            remind_at: message.remind_at,
            at,
        }])
    }

    fn record_reminded(&self, at: DateTime<Utc>) -> Result<Vec<PaymentRequestEvent>, PaymentRequestError> {
        self.requested()?;
        if self.message.as_ref().and_then(|m| m.remind_at).is_none() {
            return Err(PaymentRequestError::NoReminder);
        }
        if self.reminded {
            return Ok(vec![]);
        }
        if self.status != PaymentRequestStatus::Sent {
            return Err(PaymentRequestError::NotSent {
                status: self.status.as_str(),
            });
        }
        Ok(vec![PaymentRequestEvent::PaymentRequestReminded { at }])
    }

    /// Whether a callback with `provider_reference` was already decided.
    pub fn has_seen(&self, provider_reference: &str) -> bool {
        self.paid_reference.as_deref() == Some(provider_reference) || self.refused.contains_key(provider_reference)
    }

    /// Why the callback with `provider_reference` was refused, if it was.
    pub fn refusal_of_reference(&self, provider_reference: &str) -> Option<CallbackRefusal> {
        self.refused.get(provider_reference).copied()
    }

    fn requested(&self) -> Result<&RequestPayment, PaymentRequestError> {
        self.request.as_ref().ok_or(PaymentRequestError::UnknownRequest)
    }

    fn request_payment(&self, cmd: RequestPayment) -> Result<Vec<PaymentRequestEvent>, PaymentRequestError> {
        if let Some(existing) = &self.request {
            // The same request again (a retry) records nothing; `at` is the retry's clock and
            // its expiry follows from it: the first request's expiry stands.
            let same = RequestPayment {
                at: existing.at,
                expires_at: existing.expires_at,
                ..cmd.clone()
            };
            return if &same == existing {
                Ok(vec![])
            } else {
                Err(PaymentRequestError::AlreadyRequested)
            };
        }
        match &cmd.target {
            PaymentTarget::Order { order_id } if order_id.trim().is_empty() => {
                return Err(PaymentRequestError::Blank { field: "order id" })
            }
            PaymentTarget::Wallet { wallet_id } if wallet_id.trim().is_empty() => {
                return Err(PaymentRequestError::Blank { field: "wallet id" })
            }
            PaymentTarget::Free { description } if description.trim().is_empty() => {
                return Err(PaymentRequestError::Blank { field: "description" })
            }
            _ => {}
        }
        if cmd.by.trim().is_empty() {
            return Err(PaymentRequestError::Blank { field: "by" });
        }
        if cmd.amount_minor <= 0 {
            return Err(PaymentRequestError::NonPositiveAmount {
                amount_minor: cmd.amount_minor,
            });
        }
        if !is_currency_code(&cmd.currency) {
            return Err(PaymentRequestError::InvalidCurrency { currency: cmd.currency });
        }
        match cmd.provider {
            PaymentProvider::Cash => {
                return Err(PaymentRequestError::NotRequestable {
                    provider: cmd.provider.as_str(),
                })
            }
            PaymentProvider::Mpesa => {
                if cmd.currency != "KES" {
                    return Err(PaymentRequestError::ProviderCurrency {
                        provider: "mpesa",
                        expected: "KES".into(),
                        currency: cmd.currency,
                    });
                }
                if cmd.amount_minor % 100 != 0 {
                    return Err(PaymentRequestError::NotWholeUnits {
                        provider: "mpesa",
                        amount_minor: cmd.amount_minor,
                    });
                }
            }
            PaymentProvider::Paynow | PaymentProvider::Stripe => {}
        }
        if let Some(method) = cmd.mobile_money {
            if cmd.provider != PaymentProvider::Paynow {
                return Err(PaymentRequestError::MobileMoneyNotOffered {
                    provider: cmd.provider.as_str(),
                    method: method.as_str(),
                });
            }
            if cmd.contact_id.as_deref().is_none_or(|c| c.trim().is_empty()) {
                return Err(PaymentRequestError::Blank { field: "contact id" });
            }
        }
        if cmd.expires_at <= cmd.at {
            return Err(PaymentRequestError::ExpiryNotAfterRequest);
        }
        Ok(vec![PaymentRequestEvent::PaymentRequested {
            target: cmd.target,
            provider: cmd.provider,
            amount_minor: cmd.amount_minor,
            currency: cmd.currency,
            expires_at: cmd.expires_at,
            contact_id: cmd.contact_id,
            mobile_money: cmd.mobile_money,
            by: cmd.by,
            at: cmd.at,
        }])
    }

    fn record_sent(
        &self,
        provider_request_id: String,
        payment_url: Option<String>,
        at: DateTime<Utc>,
    ) -> Result<Vec<PaymentRequestEvent>, PaymentRequestError> {
        self.requested()?;
        if provider_request_id.trim().is_empty() {
            return Err(PaymentRequestError::Blank {
                field: "provider request id",
            });
        }
        if self.provider_request_id.as_deref() == Some(provider_request_id.as_str()) {
            return Ok(vec![]);
        }
        if self.status != PaymentRequestStatus::Requested {
            return Err(PaymentRequestError::NotAwaitingInitiation {
                status: self.status.as_str(),
            });
        }
        Ok(vec![PaymentRequestEvent::PaymentRequestSent {
            provider_request_id,
            payment_url,
            at,
        }])
    }

    fn record_initiation_failed(
        &self,
        reason: String,
        at: DateTime<Utc>,
    ) -> Result<Vec<PaymentRequestEvent>, PaymentRequestError> {
        self.requested()?;
        if reason.trim().is_empty() {
            return Err(PaymentRequestError::Blank { field: "reason" });
        }
        if self.status != PaymentRequestStatus::Requested {
            return Err(PaymentRequestError::NotAwaitingInitiation {
                status: self.status.as_str(),
            });
        }
        Ok(vec![PaymentRequestEvent::PaymentRequestInitiationFailed { reason, at }])
    }

    /// Why a confirmed callback does not pay this request, if it does not.
    fn refusal_of(&self, request: &RequestPayment, paid: &PaidCallback) -> Option<CallbackRefusal> {
        if paid.amount_minor != request.amount_minor || paid.currency != request.currency {
            return Some(CallbackRefusal::AmountMismatch);
        }
        match self.status {
            PaymentRequestStatus::Paid => Some(CallbackRefusal::AlreadyPaid),
            PaymentRequestStatus::Cancelled => Some(CallbackRefusal::RequestCancelled),
            PaymentRequestStatus::Failed => Some(CallbackRefusal::RequestFailed),
            PaymentRequestStatus::Expired => Some(CallbackRefusal::RequestExpired),
            PaymentRequestStatus::Requested | PaymentRequestStatus::Sent | PaymentRequestStatus::Unknown => {
                (paid.at > request.expires_at).then_some(CallbackRefusal::RequestExpired)
            }
        }
    }

    fn record_callback(&self, paid: PaidCallback) -> Result<Vec<PaymentRequestEvent>, PaymentRequestError> {
        let request = self.requested()?;
        if paid.provider_reference.trim().is_empty() {
            return Err(PaymentRequestError::Blank {
                field: "provider reference",
            });
        }
        if self.has_seen(&paid.provider_reference) {
            return Ok(vec![]);
        }
        Ok(vec![match self.refusal_of(request, &paid) {
            Some(reason) => PaymentRequestEvent::PaymentRequestCallbackRefused {
                reason,
                provider_reference: paid.provider_reference,
                amount_minor: paid.amount_minor,
                currency: paid.currency,
                at: paid.at,
            },
            None => PaymentRequestEvent::PaymentRequestPaid {
                provider_reference: paid.provider_reference,
                amount_minor: paid.amount_minor,
                currency: paid.currency,
                at: paid.at,
            },
        }])
    }

    fn record_not_paid(
        &self,
        result_code: String,
        at: DateTime<Utc>,
    ) -> Result<Vec<PaymentRequestEvent>, PaymentRequestError> {
        self.requested()?;
        if result_code.trim().is_empty() {
            return Err(PaymentRequestError::Blank { field: "result code" });
        }
        match self.status {
            PaymentRequestStatus::Failed => Ok(vec![]),
            status if status.is_open() => Ok(vec![PaymentRequestEvent::PaymentRequestFailed { result_code, at }]),
            status => Err(PaymentRequestError::Closed {
                status: status.as_str(),
            }),
        }
    }

    fn cancel(&self, by: String, at: DateTime<Utc>) -> Result<Vec<PaymentRequestEvent>, PaymentRequestError> {
        self.requested()?;
        if by.trim().is_empty() {
            return Err(PaymentRequestError::Blank { field: "by" });
        }
        match self.status {
            PaymentRequestStatus::Cancelled => Ok(vec![]),
            PaymentRequestStatus::Paid => Err(PaymentRequestError::AlreadyPaid),
            status if status.is_open() => Ok(vec![PaymentRequestEvent::PaymentRequestCancelled { by, at }]),
            status => Err(PaymentRequestError::Closed {
                status: status.as_str(),
            }),
        }
    }

    fn expire(&self, at: DateTime<Utc>) -> Result<Vec<PaymentRequestEvent>, PaymentRequestError> {
        let request = self.requested()?;
        match self.status {
            PaymentRequestStatus::Expired => Ok(vec![]),
            status if status.is_open() => {
                if at < request.expires_at {
                    return Err(PaymentRequestError::NotYetExpired {
                        expires_at: request.expires_at.to_rfc3339(),
                    });
                }
                Ok(vec![PaymentRequestEvent::PaymentRequestExpired { at }])
            }
            status => Err(PaymentRequestError::Closed {
                status: status.as_str(),
            }),
        }
    }

    /// Decides what a command records: nothing for a repeat, events, or a refusal.
    fn decide(&self, command: PaymentRequestCommand) -> Result<Vec<PaymentRequestEvent>, PaymentRequestError> {
        match command {
            PaymentRequestCommand::Request(cmd) => self.request_payment(cmd),
            PaymentRequestCommand::RecordSent {
                provider_request_id,
                payment_url,
                at,
            } => self.record_sent(provider_request_id, payment_url, at),
            PaymentRequestCommand::RecordInitiationFailed { reason, at } => self.record_initiation_failed(reason, at),
            PaymentRequestCommand::RecordCallback(paid) => self.record_callback(paid),
            PaymentRequestCommand::RecordNotPaid { result_code, at } => self.record_not_paid(result_code, at),
            PaymentRequestCommand::Cancel { by, at } => self.cancel(by, at),
            PaymentRequestCommand::Expire { at } => self.expire(at),
            PaymentRequestCommand::RecordMessaged { message, at } => self.record_messaged(message, at),
            PaymentRequestCommand::RecordReminded { at } => self.record_reminded(at),
        }
    }
}

impl Aggregate for PaymentRequest {
    const TYPE: &'static str = "PaymentRequest";
    type Command = PaymentRequestCommand;
    type Event = PaymentRequestEvent;
    type Error = PaymentRequestError;
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
            PaymentRequestEvent::PaymentRequested {
                target,
                provider,
                amount_minor,
                currency,
                expires_at,
                contact_id,
                mobile_money,
                by,
                at,
            } => {
                self.request = Some(RequestPayment {
                    target,
                    provider,
                    amount_minor,
                    currency,
                    expires_at,
                    contact_id,
                    mobile_money,
                    by,
                    at,
                });
                self.status = PaymentRequestStatus::Requested;
            }
            PaymentRequestEvent::PaymentRequestSent {
                provider_request_id,
                payment_url,
                ..
            } => {
                self.provider_request_id = Some(provider_request_id);
                self.payment_url = payment_url;
                self.status = PaymentRequestStatus::Sent;
            }
            PaymentRequestEvent::PaymentRequestInitiationFailed { .. }
            | PaymentRequestEvent::PaymentRequestFailed { .. } => {
                self.status = PaymentRequestStatus::Failed;
            }
            PaymentRequestEvent::PaymentRequestPaid { provider_reference, .. } => {
                self.paid_reference = Some(provider_reference);
                self.status = PaymentRequestStatus::Paid;
            }
            PaymentRequestEvent::PaymentRequestCallbackRefused {
                reason,
                provider_reference,
                ..
            } => {
                self.refused.insert(provider_reference, reason);
            }
            PaymentRequestEvent::PaymentRequestCancelled { .. } => self.status = PaymentRequestStatus::Cancelled,
            PaymentRequestEvent::PaymentRequestExpired { .. } => self.status = PaymentRequestStatus::Expired,
            PaymentRequestEvent::PaymentRequestMessaged {
                template,
                language,
                parameters,
                remind_at,
                ..
            } => {
                self.message = Some(RequestMessage {
                    template,
                    language,
                    parameters,
                    remind_at,
                });
            }
            PaymentRequestEvent::PaymentRequestReminded { .. } => self.reminded = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payment_request::MobileMoney;
    use chrono::{Duration, TimeZone};
    use cqrs_es::test::TestFramework;
    use proptest::prelude::*;

    type Given = TestFramework<PaymentRequest>;

    fn at(minute: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).single().unwrap() + Duration::minutes(minute)
    }

    fn request_cmd(provider: PaymentProvider, amount: i64, currency: &str) -> RequestPayment {
        RequestPayment {
            target: PaymentTarget::Order {
                order_id: "order_1".into(),
            },
            provider,
            amount_minor: amount,
            currency: currency.into(),
            expires_at: at(60),
            contact_id: Some("ct_1".into()),
            mobile_money: None,
            by: "finance-1".into(),
            at: at(0),
        }
    }

    fn request() -> PaymentRequestCommand {
        PaymentRequestCommand::Request(request_cmd(PaymentProvider::Mpesa, 250_000, "KES"))
    }

    fn requested() -> PaymentRequestEvent {
        PaymentRequestEvent::PaymentRequested {
            target: PaymentTarget::Order {
                order_id: "order_1".into(),
            },
            provider: PaymentProvider::Mpesa,
            amount_minor: 250_000,
            currency: "KES".into(),
            expires_at: at(60),
            contact_id: Some("ct_1".into()),
            mobile_money: None,
            by: "finance-1".into(),
            at: at(0),
        }
    }

    fn sent() -> PaymentRequestEvent {
        PaymentRequestEvent::PaymentRequestSent {
            provider_request_id: "ws_CO_1".into(),
            payment_url: None,
            at: at(1),
        }
    }

    fn callback(reference: &str, amount: i64, minute: i64) -> PaymentRequestCommand {
        PaymentRequestCommand::RecordCallback(PaidCallback {
            provider_reference: reference.into(),
            amount_minor: amount,
            currency: "KES".into(),
            at: at(minute),
        })
    }

    fn paid(reference: &str) -> PaymentRequestEvent {
        PaymentRequestEvent::PaymentRequestPaid {
            provider_reference: reference.into(),
            amount_minor: 250_000,
            currency: "KES".into(),
            at: at(5),
        }
    }

    fn refused(reason: CallbackRefusal, reference: &str, amount: i64, minute: i64) -> PaymentRequestEvent {
        PaymentRequestEvent::PaymentRequestCallbackRefused {
            reason,
            provider_reference: reference.into(),
            amount_minor: amount,
            currency: "KES".into(),
            at: at(minute),
        }
    }

    // Request

    #[test]
    fn a_request_is_recorded_with_what_it_asks() {
        Given::with(())
            .given_no_previous_events()
            .when(request())
            .then_expect_events(vec![requested()]);
    }

    #[test]
    fn the_same_request_again_records_nothing_and_another_one_on_its_id_is_refused() {
        let mut retry = request_cmd(PaymentProvider::Mpesa, 250_000, "KES");
        retry.at = at(3);
        retry.expires_at = at(63);
        Given::with(())
            .given(vec![requested()])
            .when(PaymentRequestCommand::Request(retry))
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![requested()])
            .when(PaymentRequestCommand::Request(request_cmd(
                PaymentProvider::Mpesa,
                100,
                "KES",
            )))
            .then_expect_error(PaymentRequestError::AlreadyRequested);
    }

    #[test]
    fn a_request_for_nothing_in_a_bad_currency_or_already_expired_is_refused() {
        let refuse = |cmd: RequestPayment, error: PaymentRequestError| {
            Given::with(())
                .given_no_previous_events()
                .when(PaymentRequestCommand::Request(cmd))
                .then_expect_error(error);
        };
        refuse(
            request_cmd(PaymentProvider::Paynow, 0, "USD"),
            PaymentRequestError::NonPositiveAmount { amount_minor: 0 },
        );
        refuse(
            request_cmd(PaymentProvider::Paynow, 10, "usd"),
            PaymentRequestError::InvalidCurrency { currency: "usd".into() },
        );
        refuse(
            request_cmd(PaymentProvider::Mpesa, 10_000, "USD"),
            PaymentRequestError::ProviderCurrency {
                provider: "mpesa",
                expected: "KES".into(),
                currency: "USD".into(),
            },
        );
        refuse(
            request_cmd(PaymentProvider::Mpesa, 10_050, "KES"),
            PaymentRequestError::NotWholeUnits {
                provider: "mpesa",
                amount_minor: 10_050,
            },
        );
        refuse(
            request_cmd(PaymentProvider::Cash, 10_000, "USD"),
            PaymentRequestError::NotRequestable { provider: "cash" },
        );
        let mut expired = request_cmd(PaymentProvider::Stripe, 10_000, "USD");
        expired.expires_at = expired.at;
        refuse(expired, PaymentRequestError::ExpiryNotAfterRequest);
        let mut blank = request_cmd(PaymentProvider::Stripe, 10_000, "USD");
        blank.target = PaymentTarget::Wallet { wallet_id: " ".into() };
        refuse(blank, PaymentRequestError::Blank { field: "wallet id" });
        let mut nobody = request_cmd(PaymentProvider::Stripe, 10_000, "USD");
        nobody.by = String::new();
        refuse(nobody, PaymentRequestError::Blank { field: "by" });
        let mut mobile_elsewhere = request_cmd(PaymentProvider::Stripe, 10_000, "USD");
        mobile_elsewhere.mobile_money = Some(MobileMoney::Ecocash);
        refuse(
            mobile_elsewhere,
            PaymentRequestError::MobileMoneyNotOffered {
                provider: "stripe",
                method: "ecocash",
            },
        );
        let mut mobile_nobody = request_cmd(PaymentProvider::Paynow, 10_000, "USD");
        mobile_nobody.mobile_money = Some(MobileMoney::Onemoney);
        mobile_nobody.contact_id = None;
        refuse(mobile_nobody, PaymentRequestError::Blank { field: "contact id" });
    }

    // Sending to the customer

    fn message(remind_at: Option<DateTime<Utc>>) -> RequestMessage {
        RequestMessage {
            template: "payment_link".into(),
            language: "en".into(),
            parameters: crate::pii::Envelope {
                enc: "aes256gcm.v1".into(),
                nonce: "n".into(),
                ciphertext: "c".into(),
            },
            remind_at,
        }
    }

    fn messaged(remind_at: Option<DateTime<Utc>>) -> PaymentRequestEvent {
        let m = message(remind_at);
        PaymentRequestEvent::PaymentRequestMessaged {
            template: m.template,
            language: m.language,
            parameters: m.parameters,
            remind_at: m.remind_at,
            at: at(1),
        }
    }

    #[test]
    fn a_sent_request_goes_to_the_customer_once_and_is_reminded_once() {
        let send = |remind| PaymentRequestCommand::RecordMessaged {
            message: message(remind),
            at: at(1),
        };
        Given::with(())
            .given(vec![requested(), sent()])
            .when(send(Some(at(50))))
            .then_expect_events(vec![messaged(Some(at(50)))]);
        Given::with(())
            .given(vec![requested(), sent(), messaged(None)])
            .when(send(Some(at(50))))
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![requested()])
            .when(send(None))
            .then_expect_error(PaymentRequestError::NotSent { status: "requested" });
        Given::with(())
            .given(vec![
                requested(),
                sent(),
                PaymentRequestEvent::PaymentRequestCancelled {
                    by: "f".into(),
                    at: at(2),
                },
            ])
            .when(send(None))
            .then_expect_error(PaymentRequestError::NotSent { status: "cancelled" });
        Given::with(())
            .given_no_previous_events()
            .when(send(None))
            .then_expect_error(PaymentRequestError::UnknownRequest);
        let mut blank = message(None);
        blank.template = " ".into();
        Given::with(())
            .given(vec![requested(), sent()])
            .when(PaymentRequestCommand::RecordMessaged {
                message: blank,
                at: at(1),
            })
            .then_expect_error(PaymentRequestError::Blank { field: "template" });
        // The reminder: once, only when asked for, only while the request is open.
        let remind = || PaymentRequestCommand::RecordReminded { at: at(50) };
        Given::with(())
            .given(vec![requested(), sent(), messaged(Some(at(50)))])
            .when(remind())
            .then_expect_events(vec![PaymentRequestEvent::PaymentRequestReminded { at: at(50) }]);
        Given::with(())
            .given(vec![
                requested(),
                sent(),
                messaged(Some(at(50))),
                PaymentRequestEvent::PaymentRequestReminded { at: at(50) },
            ])
            .when(remind())
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![requested(), sent(), messaged(None)])
            .when(remind())
            .then_expect_error(PaymentRequestError::NoReminder);
        Given::with(())
            .given(vec![
                requested(),
                sent(),
                messaged(Some(at(50))),
                PaymentRequestEvent::PaymentRequestExpired { at: at(60) },
            ])
            .when(remind())
            .then_expect_error(PaymentRequestError::NotSent { status: "expired" });
    }

    // Initiation

    #[test]
    fn the_providers_id_is_recorded_once_while_the_request_awaits_initiation() {
        Given::with(())
            .given(vec![requested()])
            .when(PaymentRequestCommand::RecordSent {
                provider_request_id: "ws_CO_1".into(),
                payment_url: None,
                at: at(1),
            })
            .then_expect_events(vec![sent()]);
        Given::with(())
            .given(vec![requested(), sent()])
            .when(PaymentRequestCommand::RecordSent {
                provider_request_id: "ws_CO_1".into(),
                payment_url: None,
                at: at(2),
            })
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![requested(), sent()])
            .when(PaymentRequestCommand::RecordSent {
                provider_request_id: "ws_CO_2".into(),
                payment_url: None,
                at: at(2),
            })
            .then_expect_error(PaymentRequestError::NotAwaitingInitiation { status: "sent" });
        Given::with(())
            .given_no_previous_events()
            .when(PaymentRequestCommand::RecordSent {
                provider_request_id: "ws_CO_1".into(),
                payment_url: None,
                at: at(2),
            })
            .then_expect_error(PaymentRequestError::UnknownRequest);
    }

    #[test]
    fn a_refused_initiation_fails_the_request_and_only_while_it_awaits_initiation() {
        let failed = PaymentRequestCommand::RecordInitiationFailed {
            reason: "400.002.02".into(),
            at: at(1),
        };
        Given::with(())
            .given(vec![requested()])
            .when(failed.clone())
            .then_expect_events(vec![PaymentRequestEvent::PaymentRequestInitiationFailed {
                reason: "400.002.02".into(),
                at: at(1),
            }]);
        Given::with(())
            .given(vec![requested(), sent()])
            .when(failed)
            .then_expect_error(PaymentRequestError::NotAwaitingInitiation { status: "sent" });
    }

    // Callbacks

    #[test]
    fn a_confirmed_callback_of_the_amount_asked_pays_the_request_once() {
        Given::with(())
            .given(vec![requested(), sent()])
            .when(callback("RCPT1", 250_000, 5))
            .then_expect_events(vec![paid("RCPT1")]);
        Given::with(())
            .given(vec![requested(), sent(), paid("RCPT1")])
            .when(callback("RCPT1", 250_000, 6))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_callback_for_another_amount_is_refused_and_kept() {
        Given::with(())
            .given(vec![requested(), sent()])
            .when(callback("RCPT1", 1_000_000, 5))
            .then_expect_events(vec![refused(CallbackRefusal::AmountMismatch, "RCPT1", 1_000_000, 5)]);
    }

    #[test]
    fn a_second_payment_of_a_paid_request_is_refused_once_per_reference() {
        Given::with(())
            .given(vec![requested(), sent(), paid("RCPT1")])
            .when(callback("RCPT2", 250_000, 6))
            .then_expect_events(vec![refused(CallbackRefusal::AlreadyPaid, "RCPT2", 250_000, 6)]);
        Given::with(())
            .given(vec![
                requested(),
                sent(),
                paid("RCPT1"),
                refused(CallbackRefusal::AlreadyPaid, "RCPT2", 250_000, 6),
            ])
            .when(callback("RCPT2", 250_000, 7))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_callback_after_the_expiry_or_on_a_closed_request_is_refused() {
        Given::with(())
            .given(vec![requested(), sent()])
            .when(callback("RCPT1", 250_000, 61))
            .then_expect_events(vec![refused(CallbackRefusal::RequestExpired, "RCPT1", 250_000, 61)]);
        for (closing, reason) in [
            (
                PaymentRequestEvent::PaymentRequestCancelled {
                    by: "finance-1".into(),
                    at: at(2),
                },
                CallbackRefusal::RequestCancelled,
            ),
            (
                PaymentRequestEvent::PaymentRequestFailed {
                    result_code: "1032".into(),
                    at: at(2),
                },
                CallbackRefusal::RequestFailed,
            ),
            (
                PaymentRequestEvent::PaymentRequestExpired { at: at(60) },
                CallbackRefusal::RequestExpired,
            ),
        ] {
            Given::with(())
                .given(vec![requested(), sent(), closing])
                .when(callback("RCPT1", 250_000, 5))
                .then_expect_events(vec![refused(reason, "RCPT1", 250_000, 5)]);
        }
        Given::with(())
            .given_no_previous_events()
            .when(callback("RCPT1", 250_000, 5))
            .then_expect_error(PaymentRequestError::UnknownRequest);
        Given::with(())
            .given(vec![requested()])
            .when(callback(" ", 250_000, 5))
            .then_expect_error(PaymentRequestError::Blank {
                field: "provider reference",
            });
    }

    #[test]
    fn only_late_or_cancelled_payments_of_the_amount_asked_are_kept_as_payments() {
        assert!(CallbackRefusal::RequestExpired.keeps_payment());
        assert!(CallbackRefusal::RequestCancelled.keeps_payment());
        assert!(!CallbackRefusal::AmountMismatch.keeps_payment());
        assert!(!CallbackRefusal::AlreadyPaid.keeps_payment());
        assert!(!CallbackRefusal::RequestFailed.keeps_payment());
    }

    // Not paid, cancel, expire

    #[test]
    fn a_not_paid_report_fails_an_open_request_once() {
        let not_paid = PaymentRequestCommand::RecordNotPaid {
            result_code: "1032".into(),
            at: at(3),
        };
        let failed = PaymentRequestEvent::PaymentRequestFailed {
            result_code: "1032".into(),
            at: at(3),
        };
        Given::with(())
            .given(vec![requested(), sent()])
            .when(not_paid.clone())
            .then_expect_events(vec![failed.clone()]);
        Given::with(())
            .given(vec![requested(), sent(), failed])
            .when(not_paid.clone())
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![requested(), sent(), paid("RCPT1")])
            .when(not_paid)
            .then_expect_error(PaymentRequestError::Closed { status: "paid" });
    }

    #[test]
    fn an_open_request_is_cancelled_once_and_a_paid_one_is_not() {
        let cancel = PaymentRequestCommand::Cancel {
            by: "finance-1".into(),
            at: at(2),
        };
        let cancelled = PaymentRequestEvent::PaymentRequestCancelled {
            by: "finance-1".into(),
            at: at(2),
        };
        Given::with(())
            .given(vec![requested(), sent()])
            .when(cancel.clone())
            .then_expect_events(vec![cancelled.clone()]);
        Given::with(())
            .given(vec![requested(), cancelled])
            .when(cancel.clone())
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![requested(), sent(), paid("RCPT1")])
            .when(cancel)
            .then_expect_error(PaymentRequestError::AlreadyPaid);
    }

    #[test]
    fn a_request_expires_once_and_only_after_its_expiry() {
        Given::with(())
            .given(vec![requested(), sent()])
            .when(PaymentRequestCommand::Expire { at: at(59) })
            .then_expect_error(PaymentRequestError::NotYetExpired {
                expires_at: at(60).to_rfc3339(),
            });
        Given::with(())
            .given(vec![requested(), sent()])
            .when(PaymentRequestCommand::Expire { at: at(60) })
            .then_expect_events(vec![PaymentRequestEvent::PaymentRequestExpired { at: at(60) }]);
        Given::with(())
            .given(vec![
                requested(),
                PaymentRequestEvent::PaymentRequestExpired { at: at(60) },
            ])
            .when(PaymentRequestCommand::Expire { at: at(61) })
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![requested(), sent(), paid("RCPT1")])
            .when(PaymentRequestCommand::Expire { at: at(61) })
            .then_expect_error(PaymentRequestError::Closed { status: "paid" });
    }

    // The state machine, against a reference model.

    fn run(
        state: &mut PaymentRequest,
        command: PaymentRequestCommand,
    ) -> Result<Vec<PaymentRequestEvent>, PaymentRequestError> {
        let events = state.decide(command)?;
        for event in events.clone() {
            state.apply(event);
        }
        Ok(events)
    }

    fn any_command() -> impl Strategy<Value = PaymentRequestCommand> {
        let reference = prop::sample::select(vec!["R1", "R2", "R3"]);
        let amount = prop::sample::select(vec![250_000_i64, 100_000]);
        let minute = 0_i64..90;
        prop_oneof![
            Just(request()),
            (prop::sample::select(vec!["ws_1", "ws_2"]), minute.clone()).prop_map(|(id, m)| {
                PaymentRequestCommand::RecordSent {
                    provider_request_id: id.into(),
                    payment_url: None,
                    at: at(m),
                }
            }),
            (reference, amount, minute.clone()).prop_map(|(r, a, m)| callback(r, a, m)),
            minute.clone().prop_map(|m| PaymentRequestCommand::RecordNotPaid {
                result_code: "1032".into(),
                at: at(m),
            }),
            minute.clone().prop_map(|m| PaymentRequestCommand::Cancel {
                by: "finance-1".into(),
                at: at(m),
            }),
            minute.prop_map(|m| PaymentRequestCommand::Expire { at: at(m) }),
        ]
    }

    proptest! {
        /// Whatever callbacks arrive in whatever order: at most one payment, of exactly the
        /// amount asked, on an open request before its expiry; every other confirmed callback
        /// is kept once per reference; a closed request never reopens.
        #[test]
        fn a_request_is_paid_at_most_once_and_only_as_asked(commands in prop::collection::vec(any_command(), 1..40)) {
            let mut state = PaymentRequest::default();
            let mut paid_count = 0;
            let mut decided = BTreeSet::new();
            for command in commands {
                let before = state.status;
                let Ok(events) = run(&mut state, command) else { continue };
                for event in &events {
                    match event {
                        PaymentRequestEvent::PaymentRequestPaid { provider_reference, amount_minor, currency, at: when } => {
                            paid_count += 1;
                            prop_assert!(before.is_open(), "paid from {before:?}");
                            prop_assert_eq!(*amount_minor, 250_000);
                            prop_assert_eq!(currency.as_str(), "KES");
                            prop_assert!(*when <= at(60));
                            prop_assert!(decided.insert(provider_reference.clone()));
                        }
                        PaymentRequestEvent::PaymentRequestCallbackRefused { provider_reference, .. } => {
                            prop_assert!(decided.insert(provider_reference.clone()), "a reference decided twice");
                        }
                        _ => {}
                    }
                }
                let closed = |s: PaymentRequestStatus| matches!(s, PaymentRequestStatus::Paid | PaymentRequestStatus::Failed | PaymentRequestStatus::Cancelled | PaymentRequestStatus::Expired);
                if closed(before) {
                    prop_assert_eq!(state.status, before, "a closed request changed");
                }
            }
            prop_assert!(paid_count <= 1);
        }
    }
}
