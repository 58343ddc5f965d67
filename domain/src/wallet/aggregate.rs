//! The `Wallet` aggregate's state and its command handling.
//!
//! `handle` is a pure `decide`: the command is checked against a working copy of the state,
//! which first releases the reservations expired by the command's log time, then takes the
//! operation, then the threshold checks; every event produced is written in that order.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::WalletCommand;
use super::error::WalletError;
use super::events::WalletEvent;
use super::values::{Account, AutoRefill, Balances, Posting, Request};

/// A reservation's state, by its reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
struct Reservation {
    amount: i64,
    captured: i64,
    expires_at: DateTime<Utc>,
    closed: bool,
}

impl Reservation {
    fn remaining(&self) -> i64 {
        self.amount - self.captured
    }
}

/// What a debit or capture charged and what was refunded of it, by its reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
struct Charge {
    charged: i64,
    refunded: i64,
}

/// The first outcome of a reference: its request, and the refusal recorded for it, if any
/// (`(required, available)`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
struct Outcome {
    request: Request,
    refused: Option<(i64, i64)>,
}

/// One token wallet of a tenant (its main wallet or a sub-wallet).
// `serde(default)`: snapshots taken before a field existed still load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct Wallet {
    wallet_id: Option<String>,
    parent_id: Option<String>,
    balances: Balances,
    reservations: BTreeMap<String, Reservation>,
    charges: BTreeMap<String, Charge>,
    /// Every reference ever used, forever: money is never charged twice for one reference.
    outcomes: BTreeMap<String, Outcome>,
    low_balance_alert: Option<i64>,
    auto_refill: Option<AutoRefill>,
    /// Whether the next crossing below a threshold alerts / refills (disarmed by the alert,
    /// re-armed once available is back at or above the threshold).
    alert_armed: bool,
    refill_armed: bool,
}

/// The refusal recorded among `events`, if any: the write side runs the command (which
/// succeeds, so the `DebitRefused` is stored for finance) and then answers the caller with this
/// error instead of a success.
pub fn refusal(events: &[WalletEvent]) -> Option<WalletError> {
    events.iter().find_map(|e| match e {
        WalletEvent::DebitRefused {
            required, available, ..
        } => Some(WalletError::InsufficientBalance {
            required: *required,
            available: *available,
        }),
        _ => None,
    })
}

fn positive(amount: i64) -> Result<(), WalletError> {
    if amount <= 0 {
        return Err(WalletError::NonPositiveAmount { amount });
    }
    Ok(())
}

fn not_blank(value: &str, field: &'static str) -> Result<(), WalletError> {
    if value.trim().is_empty() {
        return Err(WalletError::Blank { field });
    }
    Ok(())
}

fn threshold(value: Option<i64>) -> Result<(), WalletError> {
    match value {
        Some(threshold) if threshold < 0 => Err(WalletError::InvalidThreshold { threshold }),
        _ => Ok(()),
    }
}

impl Wallet {
    /// The wallet's id, once opened.
    pub fn wallet_id(&self) -> Option<&str> {
        self.wallet_id.as_deref()
    }

    /// The parent of a sub-wallet.
    pub fn parent_id(&self) -> Option<&str> {
        self.parent_id.as_deref()
    }

    /// Balance, reserved and available, in milli-tokens.
    pub fn balances(&self) -> Balances {
        self.balances
    }

    /// The first outcome of `reference`, if it was used: `Ok(())` for an operation that took
    /// effect, the recorded refusal otherwise. The write side may read it after a command
    /// instead of [`refusal`].
    pub fn outcome(&self, reference: &str) -> Option<Result<(), WalletError>> {
        self.outcomes.get(reference).map(|o| match o.refused {
            Some((required, available)) => Err(WalletError::InsufficientBalance { required, available }),
            None => Ok(()),
        })
    }

    /// The postings moving `moves` and the balances after them.
    fn post(&self, moves: &[(Account, i64)]) -> Result<(Vec<Posting>, Balances), WalletError> {
        let mut after = self.balances;
        for (account, amount) in moves {
            let target = match account {
                Account::WalletAvailable => &mut after.available,
                Account::WalletReserved => &mut after.reserved,
                _ => continue,
            };
            *target = target.checked_add(*amount).ok_or(WalletError::AmountTooLarge)?;
        }
        after.balance = after
            .available
            .checked_add(after.reserved)
            .ok_or(WalletError::AmountTooLarge)?;
        let postings = moves
            .iter()
            .map(|(account, amount)| Posting {
                account: *account,
                amount: *amount,
            })
            .collect();
        Ok((postings, after))
    }

    /// Every event `command` produces, in order (empty: nothing changes).
    pub fn decide(&self, command: WalletCommand) -> Result<Vec<WalletEvent>, WalletError> {
        let (reference, request, at) = match request_of(&command) {
            Some(parts) => parts,
            None => {
                let WalletCommand::ExpireReservations { at } = command else {
                    return Ok(Vec::new());
                };
                self.open_id()?;
                let mut work = self.clone();
                let mut events = work.expire(at);
                events.extend(work.thresholds("expiry", at));
                return Ok(events);
            }
        };
        if reference.trim().is_empty() {
            return Err(WalletError::MissingReference);
        }
        if let Some(first) = self.outcomes.get(&reference) {
            if first.request != request {
                return Err(WalletError::IdempotencyConflict { reference });
            }
            return match first.refused {
                Some((required, available)) => Err(WalletError::InsufficientBalance { required, available }),
                None => Ok(Vec::new()),
            };
        }
        if let Request::Open { wallet_id, parent_id } = request {
            return self.open(reference, wallet_id, parent_id, at).map(|e| vec![e]);
        }
        self.open_id()?;
        let mut work = self.clone();
        let mut events = work.expire(at);
        let event = work.operate(reference.clone(), request, at)?;
        work.apply(event.clone());
        events.push(event);
        events.extend(work.thresholds(&reference, at));
        Ok(events)
    }

    fn open_id(&self) -> Result<&str, WalletError> {
        self.wallet_id.as_deref().ok_or(WalletError::UnknownWallet)
    }

    fn open(
        &self,
        reference: String,
        wallet_id: String,
        parent_id: Option<String>,
        at: DateTime<Utc>,
    ) -> Result<WalletEvent, WalletError> {
        if let Some(open) = &self.wallet_id {
            return Err(WalletError::WalletAlreadyOpen {
                wallet_id: open.clone(),
            });
        }
        not_blank(&wallet_id, "wallet id")?;
        if let Some(parent) = &parent_id {
            not_blank(parent, "parent wallet id")?;
            if parent == &wallet_id {
                return Err(WalletError::SubWalletOfItself);
            }
        }
        Ok(WalletEvent::WalletOpened {
            reference,
            wallet_id,
            parent_id,
            postings: Vec::new(),
            balances: self.balances,
            at,
        })
    }

    /// Releases (as `ReservationExpired`) every open reservation expired at `at`, applying each.
    fn expire(&mut self, at: DateTime<Utc>) -> Vec<WalletEvent> {
        let due: Vec<(String, Reservation)> = self
            .reservations
            .iter()
            .filter(|(_, r)| !r.closed && r.expires_at <= at)
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect();
        let mut events = Vec::new();
        for (reservation, r) in due {
            let amount = r.remaining();
            // Moving tokens from reserved back to available keeps the sum; it cannot overflow.
            let Ok((postings, balances)) =
                self.post(&[(Account::WalletReserved, -amount), (Account::WalletAvailable, amount)])
            else {
                continue;
            };
            let event = WalletEvent::ReservationExpired {
                reservation,
                amount,
                captured: r.captured,
                expires_at: r.expires_at,
                postings,
                balances,
                at,
            };
            self.apply(event.clone());
            events.push(event);
        }
        events
    }

    /// The insufficient-balance refusal of `request`, recorded, if `amount` is not available.
    fn refused(&self, reference: &str, request: &Request, amount: i64, at: DateTime<Utc>) -> Option<WalletEvent> {
        (amount > self.balances.available).then(|| WalletEvent::DebitRefused {
            reference: reference.to_string(),
            request: request.clone(),
            required: amount,
            available: self.balances.available,
            postings: Vec::new(),
            balances: self.balances,
            at,
        })
    }

    fn operate(&self, reference: String, request: Request, at: DateTime<Utc>) -> Result<WalletEvent, WalletError> {
        use Account::{PlatformConsumption, PlatformSales, TransfersInTransit, WalletAvailable, WalletReserved};
        match request.clone() {
            Request::Open { .. } => Err(WalletError::WalletAlreadyOpen {
                wallet_id: self.open_id()?.to_string(),
            }),
            Request::Purchase { amount, source } => {
                positive(amount)?;
                not_blank(&source, "source")?;
                let (postings, balances) = self.post(&[(WalletAvailable, amount), (PlatformSales, -amount)])?;
                Ok(WalletEvent::TokensPurchased {
                    reference,
                    amount,
                    source,
                    postings,
                    balances,
                    at,
                })
            }
            Request::Debit { amount, feature } => {
                positive(amount)?;
                not_blank(&feature, "feature")?;
                if let Some(refused) = self.refused(&reference, &request, amount, at) {
                    return Ok(refused);
                }
                let (postings, balances) = self.post(&[(WalletAvailable, -amount), (PlatformConsumption, amount)])?;
                Ok(WalletEvent::TokensDebited {
                    reference,
                    amount,
                    feature,
                    postings,
                    balances,
                    at,
                })
            }
            Request::Reserve {
                amount,
                expires_at,
                purpose,
            } => {
                positive(amount)?;
                not_blank(&purpose, "purpose")?;
                if expires_at <= at {
                    return Err(WalletError::ExpiryNotAfterStart { expires_at, at });
                }
                if let Some(refused) = self.refused(&reference, &request, amount, at) {
                    return Ok(refused);
                }
                let (postings, balances) = self.post(&[(WalletAvailable, -amount), (WalletReserved, amount)])?;
                Ok(WalletEvent::TokensReserved {
                    reference,
                    amount,
                    expires_at,
                    purpose,
                    postings,
                    balances,
                    at,
                })
            }
            Request::Capture { reservation, amount } => {
                positive(amount)?;
                let remaining = self.open_reservation(&reservation)?.remaining();
                if amount > remaining {
                    return Err(WalletError::CaptureExceedsReservation {
                        requested: amount,
                        remaining,
                    });
                }
                let (postings, balances) = self.post(&[(WalletReserved, -amount), (PlatformConsumption, amount)])?;
                Ok(WalletEvent::ReservationCaptured {
                    reference,
                    reservation,
                    amount,
                    remaining: remaining - amount,
                    postings,
                    balances,
                    at,
                })
            }
            Request::Release { reservation } => {
                let held = self.open_reservation(&reservation)?;
                let (amount, captured) = (held.remaining(), held.captured);
                let (postings, balances) = self.post(&[(WalletReserved, -amount), (WalletAvailable, amount)])?;
                Ok(WalletEvent::ReservationReleased {
                    reference,
                    reservation,
                    amount,
                    captured,
                    postings,
                    balances,
                    at,
                })
            }
            Request::Refund { debit, amount } => {
                positive(amount)?;
                let charge = self
                    .charges
                    .get(&debit)
                    .ok_or_else(|| WalletError::UnknownDebit { debit: debit.clone() })?;
                let refundable = charge.charged - charge.refunded;
                if amount > refundable {
                    return Err(WalletError::RefundExceedsDebit {
                        requested: amount,
                        refundable,
                    });
                }
                let (postings, balances) = self.post(&[(PlatformConsumption, -amount), (WalletAvailable, amount)])?;
                Ok(WalletEvent::TokensRefunded {
                    reference,
                    debit,
                    amount,
                    refunded_total: charge.refunded + amount,
                    postings,
                    balances,
                    at,
                })
            }
            Request::TransferOut { to_wallet, amount } => {
                positive(amount)?;
                not_blank(&to_wallet, "target wallet id")?;
                if to_wallet == self.open_id()? {
                    return Err(WalletError::TransferToSameWallet);
                }
                if let Some(refused) = self.refused(&reference, &request, amount, at) {
                    return Ok(refused);
                }
                let (postings, balances) = self.post(&[(WalletAvailable, -amount), (TransfersInTransit, amount)])?;
                Ok(WalletEvent::TokensTransferredOut {
                    reference,
                    to_wallet,
                    amount,
                    postings,
                    balances,
                    at,
                })
            }
            Request::TransferIn { from_wallet, amount } => {
                positive(amount)?;
                not_blank(&from_wallet, "source wallet id")?;
                if from_wallet == self.open_id()? {
                    return Err(WalletError::TransferToSameWallet);
                }
                let (postings, balances) = self.post(&[(TransfersInTransit, -amount), (WalletAvailable, amount)])?;
                Ok(WalletEvent::TokensTransferredIn {
                    reference,
                    from_wallet,
                    amount,
                    postings,
                    balances,
                    at,
                })
            }
            Request::ConfigureThresholds {
                low_balance_alert,
                auto_refill,
            } => {
                threshold(low_balance_alert)?;
                if let Some(refill) = auto_refill {
                    threshold(Some(refill.threshold))?;
                    positive(refill.amount)?;
                }
                Ok(WalletEvent::ThresholdsConfigured {
                    reference,
                    low_balance_alert,
                    auto_refill,
                    postings: Vec::new(),
                    balances: self.balances,
                    at,
                })
            }
        }
    }

    fn open_reservation(&self, reservation: &str) -> Result<&Reservation, WalletError> {
        match self.reservations.get(reservation) {
            None => Err(WalletError::UnknownReservation {
                reservation: reservation.to_string(),
            }),
            Some(r) if r.closed => Err(WalletError::ReservationClosed {
                reservation: reservation.to_string(),
            }),
            Some(r) => Ok(r),
        }
    }

    /// The alert and refill due now that available is below an armed threshold.
    fn thresholds(&self, trigger: &str, at: DateTime<Utc>) -> Vec<WalletEvent> {
        let available = self.balances.available;
        let mut events = Vec::new();
        if let Some(threshold) = self.low_balance_alert.filter(|t| self.alert_armed && available < *t) {
            events.push(WalletEvent::LowBalanceAlerted {
                trigger: trigger.to_string(),
                threshold,
                postings: Vec::new(),
                balances: self.balances,
                at,
            });
        }
        if let Some(refill) = self
            .auto_refill
            .filter(|r| self.refill_armed && available < r.threshold)
        {
            events.push(WalletEvent::AutoRefillRequested {
                trigger: trigger.to_string(),
                threshold: refill.threshold,
                amount: refill.amount,
                purchase_reference: format!("refill:{trigger}"),
                postings: Vec::new(),
                balances: self.balances,
                at,
            });
        }
        events
    }

    fn remember(&mut self, reference: String, request: Request, refused: Option<(i64, i64)>) {
        self.outcomes.insert(reference, Outcome { request, refused });
    }
}

/// The reference, request fingerprint and log time of a command (`None`: the expiry sweep).
fn request_of(command: &WalletCommand) -> Option<(String, Request, DateTime<Utc>)> {
    let (reference, request, at) = match command.clone() {
        WalletCommand::Open {
            reference,
            wallet_id,
            parent_id,
            at,
        } => (reference, Request::Open { wallet_id, parent_id }, at),
        WalletCommand::Purchase {
            reference,
            amount,
            source,
            at,
        } => (reference, Request::Purchase { amount, source }, at),
        WalletCommand::Debit {
            reference,
            amount,
            feature,
            at,
        } => (reference, Request::Debit { amount, feature }, at),
        WalletCommand::Reserve {
            reference,
            amount,
            expires_at,
            purpose,
            at,
        } => (
            reference,
            Request::Reserve {
                amount,
                expires_at,
                purpose,
            },
            at,
        ),
        WalletCommand::Capture {
            reference,
            reservation,
            amount,
            at,
        } => (reference, Request::Capture { reservation, amount }, at),
        WalletCommand::Release {
            reference,
            reservation,
            at,
        } => (reference, Request::Release { reservation }, at),
        WalletCommand::Refund {
            reference,
            debit,
            amount,
            at,
        } => (reference, Request::Refund { debit, amount }, at),
        WalletCommand::TransferOut {
            reference,
            to_wallet,
            amount,
            at,
        } => (reference, Request::TransferOut { to_wallet, amount }, at),
        WalletCommand::TransferIn {
            reference,
            from_wallet,
            amount,
            at,
        } => (reference, Request::TransferIn { from_wallet, amount }, at),
        WalletCommand::ConfigureThresholds {
            reference,
            low_balance_alert,
            auto_refill,
            at,
        } => (
            reference,
            Request::ConfigureThresholds {
                low_balance_alert,
                auto_refill,
            },
            at,
        ),
        WalletCommand::ExpireReservations { .. } => return None,
    };
    Some((reference, request, at))
}

impl Aggregate for Wallet {
    const TYPE: &'static str = "Wallet";
    type Command = WalletCommand;
    type Event = WalletEvent;
    type Error = WalletError;
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
        let balances = event.balances();
        match event {
            WalletEvent::WalletOpened {
                reference,
                wallet_id,
                parent_id,
                ..
            } => {
                self.wallet_id = Some(wallet_id.clone());
                self.parent_id = parent_id.clone();
                self.remember(reference, Request::Open { wallet_id, parent_id }, None);
            }
            WalletEvent::TokensPurchased {
                reference,
                amount,
                source,
                ..
            } => self.remember(reference, Request::Purchase { amount, source }, None),
            WalletEvent::TokensDebited {
                reference,
                amount,
                feature,
                ..
            } => {
                self.charges.insert(
                    reference.clone(),
                    Charge {
                        charged: amount,
                        refunded: 0,
                    },
                );
                self.remember(reference, Request::Debit { amount, feature }, None);
            }
            WalletEvent::DebitRefused {
                reference,
                request,
                required,
                available,
                ..
            } => self.remember(reference, request, Some((required, available))),
            WalletEvent::TokensReserved {
                reference,
                amount,
                expires_at,
                purpose,
                ..
            } => {
                self.reservations.insert(
                    reference.clone(),
                    Reservation {
                        amount,
                        captured: 0,
                        expires_at,
                        closed: false,
                    },
                );
                self.remember(
                    reference,
                    Request::Reserve {
                        amount,
                        expires_at,
                        purpose,
                    },
                    None,
                );
            }
            WalletEvent::ReservationCaptured {
                reference,
                reservation,
                amount,
                remaining,
                ..
            } => {
                if let Some(r) = self.reservations.get_mut(&reservation) {
                    r.captured = r.captured.saturating_add(amount);
                    r.closed = remaining == 0;
                }
                self.charges.insert(
                    reference.clone(),
                    Charge {
                        charged: amount,
                        refunded: 0,
                    },
                );
                self.remember(reference, Request::Capture { reservation, amount }, None);
            }
            WalletEvent::ReservationReleased {
                reference, reservation, ..
            } => {
                if let Some(r) = self.reservations.get_mut(&reservation) {
                    r.closed = true;
                }
                self.remember(reference, Request::Release { reservation }, None);
            }
            WalletEvent::ReservationExpired { reservation, .. } => {
                if let Some(r) = self.reservations.get_mut(&reservation) {
                    r.closed = true;
                }
            }
            WalletEvent::TokensRefunded {
                reference,
                debit,
                amount,
                refunded_total,
                ..
            } => {
                if let Some(charge) = self.charges.get_mut(&debit) {
                    charge.refunded = refunded_total;
                }
                self.remember(reference, Request::Refund { debit, amount }, None);
            }
            WalletEvent::TokensTransferredOut {
                reference,
                to_wallet,
                amount,
                ..
            } => self.remember(reference, Request::TransferOut { to_wallet, amount }, None),
            WalletEvent::TokensTransferredIn {
                reference,
                from_wallet,
                amount,
                ..
            } => self.remember(reference, Request::TransferIn { from_wallet, amount }, None),
            WalletEvent::ThresholdsConfigured {
                reference,
                low_balance_alert,
                auto_refill,
                ..
            } => {
                self.low_balance_alert = low_balance_alert;
                self.auto_refill = auto_refill;
                self.alert_armed = true;
                self.refill_armed = true;
                self.remember(
                    reference,
                    Request::ConfigureThresholds {
                        low_balance_alert,
                        auto_refill,
                    },
                    None,
                );
            }
            WalletEvent::LowBalanceAlerted { .. } => self.alert_armed = false,
            WalletEvent::AutoRefillRequested { .. } => self.refill_armed = false,
        }
        self.balances = balances;
        // Back at or above a threshold re-arms it for the next crossing.
        if self.low_balance_alert.is_some_and(|t| balances.available >= t) {
            self.alert_armed = true;
        }
        if self.auto_refill.is_some_and(|r| balances.available >= r.threshold) {
            self.refill_armed = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use cqrs_es::test::TestFramework;
    use cqrs_es::DomainEvent;
    use proptest::prelude::Strategy;
    use proptest::prop_oneof;
    use proptest::strategy::Just;
    use Account::{PlatformConsumption, PlatformSales, TransfersInTransit, WalletAvailable, WalletReserved};

    type Given = TestFramework<Wallet>;

    fn t(hour: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().unwrap_or_default() + Duration::hours(hour)
    }

    fn b(available: i64, reserved: i64) -> Balances {
        Balances {
            balance: available + reserved,
            reserved,
            available,
        }
    }

    fn p(moves: &[(Account, i64)]) -> Vec<Posting> {
        moves
            .iter()
            .map(|(account, amount)| Posting {
                account: *account,
                amount: *amount,
            })
            .collect()
    }

    fn opened() -> WalletEvent {
        WalletEvent::WalletOpened {
            reference: "open-1".into(),
            wallet_id: "w_main".into(),
            parent_id: None,
            postings: vec![],
            balances: b(0, 0),
            at: t(0),
        }
    }

    fn purchased(reference: &str, amount: i64, after: Balances) -> WalletEvent {
        WalletEvent::TokensPurchased {
            reference: reference.into(),
            amount,
            source: "mpesa".into(),
            postings: p(&[(WalletAvailable, amount), (PlatformSales, -amount)]),
            balances: after,
            at: t(1),
        }
    }

    fn debited(reference: &str, amount: i64, after: Balances, hour: i64) -> WalletEvent {
        WalletEvent::TokensDebited {
            reference: reference.into(),
            amount,
            feature: "message".into(),
            postings: p(&[(WalletAvailable, -amount), (PlatformConsumption, amount)]),
            balances: after,
            at: t(hour),
        }
    }

    fn reserved(reference: &str, amount: i64, expires: i64, after: Balances) -> WalletEvent {
        WalletEvent::TokensReserved {
            reference: reference.into(),
            amount,
            expires_at: t(expires),
            purpose: "campaign cp_1".into(),
            postings: p(&[(WalletAvailable, -amount), (WalletReserved, amount)]),
            balances: after,
            at: t(2),
        }
    }

    fn captured(reference: &str, amount: i64, remaining: i64, after: Balances) -> WalletEvent {
        WalletEvent::ReservationCaptured {
            reference: reference.into(),
            reservation: "rs-1".into(),
            amount,
            remaining,
            postings: p(&[(WalletReserved, -amount), (PlatformConsumption, amount)]),
            balances: after,
            at: t(3),
        }
    }

    /// Opened, 10 tokens bought.
    fn funded() -> Vec<WalletEvent> {
        vec![opened(), purchased("pay-1", 10_000, b(10_000, 0))]
    }

    /// Funded, then 4 tokens reserved as `rs-1` until hour 10.
    fn holding() -> Vec<WalletEvent> {
        let mut events = funded();
        events.push(reserved("rs-1", 4_000, 10, b(6_000, 4_000)));
        events
    }

    fn debit(reference: &str, amount: i64, hour: i64) -> WalletCommand {
        WalletCommand::Debit {
            reference: reference.into(),
            amount,
            feature: "message".into(),
            at: t(hour),
        }
    }

    fn purchase(reference: &str, amount: i64) -> WalletCommand {
        WalletCommand::Purchase {
            reference: reference.into(),
            amount,
            source: "mpesa".into(),
            at: t(1),
        }
    }

    fn reserve(reference: &str, amount: i64, expires: i64) -> WalletCommand {
        WalletCommand::Reserve {
            reference: reference.into(),
            amount,
            expires_at: t(expires),
            purpose: "campaign cp_1".into(),
            at: t(2),
        }
    }

    fn capture(reference: &str, amount: i64, hour: i64) -> WalletCommand {
        WalletCommand::Capture {
            reference: reference.into(),
            reservation: "rs-1".into(),
            amount,
            at: t(hour),
        }
    }

    fn release(reference: &str, reservation: &str) -> WalletCommand {
        WalletCommand::Release {
            reference: reference.into(),
            reservation: reservation.into(),
            at: t(4),
        }
    }

    fn refund(reference: &str, debit: &str, amount: i64) -> WalletCommand {
        WalletCommand::Refund {
            reference: reference.into(),
            debit: debit.into(),
            amount,
            at: t(5),
        }
    }

    fn transfer_out(reference: &str, to: &str, amount: i64) -> WalletCommand {
        WalletCommand::TransferOut {
            reference: reference.into(),
            to_wallet: to.into(),
            amount,
            at: t(3),
        }
    }

    fn transfer_in(reference: &str, from: &str, amount: i64) -> WalletCommand {
        WalletCommand::TransferIn {
            reference: reference.into(),
            from_wallet: from.into(),
            amount,
            at: t(3),
        }
    }

    fn configure(reference: &str, alert: Option<i64>, refill: Option<AutoRefill>) -> WalletCommand {
        WalletCommand::ConfigureThresholds {
            reference: reference.into(),
            low_balance_alert: alert,
            auto_refill: refill,
            at: t(1),
        }
    }

    fn configured(alert: Option<i64>, refill: Option<AutoRefill>, after: Balances) -> WalletEvent {
        WalletEvent::ThresholdsConfigured {
            reference: "cfg-1".into(),
            low_balance_alert: alert,
            auto_refill: refill,
            postings: vec![],
            balances: after,
            at: t(1),
        }
    }

    fn state(events: Vec<WalletEvent>) -> Wallet {
        let mut wallet = Wallet::default();
        for event in events {
            wallet.apply(event);
        }
        wallet
    }

    // Open

    #[test]
    fn a_main_wallet_opens_empty() {
        Given::with(())
            .given_no_previous_events()
            .when(WalletCommand::Open {
                reference: "open-1".into(),
                wallet_id: "w_main".into(),
                parent_id: None,
                at: t(0),
            })
            .then_expect_events(vec![opened()]);
    }

    #[test]
    fn a_sub_wallet_opens_under_its_parent() {
        Given::with(())
            .given_no_previous_events()
            .when(WalletCommand::Open {
                reference: "open-sub".into(),
                wallet_id: "w_team".into(),
                parent_id: Some("w_main".into()),
                at: t(0),
            })
            .then_expect_events(vec![WalletEvent::WalletOpened {
                reference: "open-sub".into(),
                wallet_id: "w_team".into(),
                parent_id: Some("w_main".into()),
                postings: vec![],
                balances: b(0, 0),
                at: t(0),
            }]);
    }

    #[test]
    fn opening_an_open_wallet_under_a_new_reference_is_refused() {
        Given::with(())
            .given(vec![opened()])
            .when(WalletCommand::Open {
                reference: "open-2".into(),
                wallet_id: "w_main".into(),
                parent_id: None,
                at: t(0),
            })
            .then_expect_error(WalletError::WalletAlreadyOpen {
                wallet_id: "w_main".into(),
            });
    }

    #[test]
    fn opening_again_under_the_same_reference_records_nothing() {
        Given::with(())
            .given(vec![opened()])
            .when(WalletCommand::Open {
                reference: "open-1".into(),
                wallet_id: "w_main".into(),
                parent_id: None,
                at: t(5),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_sub_wallet_of_itself_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(WalletCommand::Open {
                reference: "open-1".into(),
                wallet_id: "w_a".into(),
                parent_id: Some("w_a".into()),
                at: t(0),
            })
            .then_expect_error(WalletError::SubWalletOfItself);
    }

    #[test]
    fn a_wallet_without_an_id_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(WalletCommand::Open {
                reference: "open-1".into(),
                wallet_id: " ".into(),
                parent_id: None,
                at: t(0),
            })
            .then_expect_error(WalletError::Blank { field: "wallet id" });
    }

    #[test]
    fn an_operation_on_a_wallet_never_opened_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(purchase("pay-1", 1_000))
            .then_expect_error(WalletError::UnknownWallet);
    }

    // Purchase

    #[test]
    fn a_confirmed_payment_credits_the_wallet() {
        Given::with(())
            .given(vec![opened()])
            .when(purchase("pay-1", 10_000))
            .then_expect_events(vec![purchased("pay-1", 10_000, b(10_000, 0))]);
    }

    #[test]
    fn a_payment_confirmed_twice_under_its_provider_reference_is_credited_once() {
        Given::with(())
            .given(funded())
            .when(purchase("pay-1", 10_000))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_provider_reference_reused_for_another_amount_is_an_idempotency_conflict() {
        let error = WalletError::IdempotencyConflict {
            reference: "pay-1".into(),
        };
        assert_eq!(error.code(), "IDEMPOTENCY_CONFLICT");
        Given::with(())
            .given(funded())
            .when(purchase("pay-1", 20_000))
            .then_expect_error(error);
    }

    #[test]
    fn a_reference_reused_for_another_operation_is_an_idempotency_conflict() {
        Given::with(())
            .given(funded())
            .when(debit("pay-1", 10_000, 2))
            .then_expect_error(WalletError::IdempotencyConflict {
                reference: "pay-1".into(),
            });
    }

    #[test]
    fn a_purchase_without_a_reference_is_refused() {
        Given::with(())
            .given(vec![opened()])
            .when(purchase("  ", 1_000))
            .then_expect_error(WalletError::MissingReference);
    }

    #[test]
    fn a_purchase_of_nothing_is_refused() {
        Given::with(())
            .given(vec![opened()])
            .when(purchase("pay-1", 0))
            .then_expect_error(WalletError::NonPositiveAmount { amount: 0 });
    }

    #[test]
    fn a_purchase_overflowing_the_balance_is_refused() {
        Given::with(())
            .given(funded())
            .when(purchase("pay-2", i64::MAX))
            .then_expect_error(WalletError::AmountTooLarge);
    }

    // Debit

    #[test]
    fn a_debit_within_the_available_balance_is_paid() {
        Given::with(())
            .given(funded())
            .when(debit("msg-1", 1_000, 2))
            .then_expect_events(vec![debited("msg-1", 1_000, b(9_000, 0), 2)]);
    }

    #[test]
    fn a_repeated_debit_is_charged_once() {
        let mut events = funded();
        events.push(debited("msg-1", 1_000, b(9_000, 0), 2));
        Given::with(())
            .given(events)
            .when(debit("msg-1", 1_000, 3))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_debit_beyond_the_available_balance_is_recorded_as_refused() {
        let refused = WalletEvent::DebitRefused {
            reference: "msg-1".into(),
            request: Request::Debit {
                amount: 7_000,
                feature: "message".into(),
            },
            required: 7_000,
            available: 6_000,
            postings: vec![],
            balances: b(6_000, 4_000),
            at: t(2),
        };
        Given::with(())
            .given(holding())
            .when(debit("msg-1", 7_000, 2))
            .then_expect_events(vec![refused.clone()]);
        let error = refusal(std::slice::from_ref(&refused));
        assert_eq!(
            error,
            Some(WalletError::InsufficientBalance {
                required: 7_000,
                available: 6_000
            })
        );
        assert_eq!(error.map(|e| e.code()), Some("INSUFFICIENT_BALANCE"));
        let mut events = holding();
        events.push(refused);
        assert_eq!(
            state(events).outcome("msg-1"),
            Some(Err(WalletError::InsufficientBalance {
                required: 7_000,
                available: 6_000
            }))
        );
    }

    #[test]
    fn a_repeated_refused_debit_returns_the_first_refusal_and_records_nothing() {
        let mut events = funded();
        events.push(purchased("pay-2", 50_000, b(60_000, 0)));
        events.insert(
            1,
            WalletEvent::DebitRefused {
                reference: "msg-1".into(),
                request: Request::Debit {
                    amount: 7_000,
                    feature: "message".into(),
                },
                required: 7_000,
                available: 0,
                postings: vec![],
                balances: b(0, 0),
                at: t(0),
            },
        );
        Given::with(())
            .given(events)
            .when(debit("msg-1", 7_000, 3))
            .then_expect_error(WalletError::InsufficientBalance {
                required: 7_000,
                available: 0,
            });
    }

    #[test]
    fn a_debit_for_no_feature_is_refused() {
        Given::with(())
            .given(funded())
            .when(WalletCommand::Debit {
                reference: "msg-1".into(),
                amount: 1_000,
                feature: "".into(),
                at: t(2),
            })
            .then_expect_error(WalletError::Blank { field: "feature" });
    }

    #[test]
    fn a_negative_debit_is_refused() {
        Given::with(())
            .given(funded())
            .when(debit("msg-1", -5, 2))
            .then_expect_error(WalletError::NonPositiveAmount { amount: -5 });
    }

    // Reserve

    #[test]
    fn a_reservation_holds_tokens_out_of_available() {
        Given::with(())
            .given(funded())
            .when(reserve("rs-1", 4_000, 10))
            .then_expect_events(vec![reserved("rs-1", 4_000, 10, b(6_000, 4_000))]);
    }

    #[test]
    fn a_reservation_beyond_available_is_recorded_as_refused() {
        Given::with(())
            .given(holding())
            .when(reserve("rs-2", 6_001, 10))
            .then_expect_events(vec![WalletEvent::DebitRefused {
                reference: "rs-2".into(),
                request: Request::Reserve {
                    amount: 6_001,
                    expires_at: t(10),
                    purpose: "campaign cp_1".into(),
                },
                required: 6_001,
                available: 6_000,
                postings: vec![],
                balances: b(6_000, 4_000),
                at: t(2),
            }]);
    }

    #[test]
    fn a_reservation_expiring_when_it_is_made_is_refused() {
        Given::with(())
            .given(funded())
            .when(reserve("rs-1", 4_000, 2))
            .then_expect_error(WalletError::ExpiryNotAfterStart {
                expires_at: t(2),
                at: t(2),
            });
    }

    // Capture

    #[test]
    fn part_of_a_reservation_can_be_captured() {
        Given::with(())
            .given(holding())
            .when(capture("batch-1", 1_500, 3))
            .then_expect_events(vec![captured("batch-1", 1_500, 2_500, b(6_000, 2_500))]);
    }

    #[test]
    fn a_fully_captured_reservation_is_closed() {
        let mut events = holding();
        events.push(captured("batch-1", 4_000, 0, b(6_000, 0)));
        Given::with(())
            .given(events)
            .when(capture("batch-2", 1, 3))
            .then_expect_error(WalletError::ReservationClosed {
                reservation: "rs-1".into(),
            });
    }

    #[test]
    fn a_capture_beyond_what_is_left_of_the_reservation_is_refused() {
        let mut events = holding();
        events.push(captured("batch-1", 1_500, 2_500, b(6_000, 2_500)));
        Given::with(())
            .given(events)
            .when(capture("batch-2", 2_501, 3))
            .then_expect_error(WalletError::CaptureExceedsReservation {
                requested: 2_501,
                remaining: 2_500,
            });
    }

    #[test]
    fn a_capture_of_an_unknown_reservation_is_refused() {
        Given::with(())
            .given(funded())
            .when(capture("batch-1", 1_000, 3))
            .then_expect_error(WalletError::UnknownReservation {
                reservation: "rs-1".into(),
            });
    }

    #[test]
    fn an_expired_reservation_cannot_be_captured() {
        Given::with(())
            .given(holding())
            .when(capture("batch-1", 1_000, 10))
            .then_expect_error(WalletError::ReservationClosed {
                reservation: "rs-1".into(),
            });
    }

    // Release and expiry

    #[test]
    fn a_release_returns_the_rest_of_a_reservation() {
        let mut events = holding();
        events.push(captured("batch-1", 1_500, 2_500, b(6_000, 2_500)));
        Given::with(())
            .given(events)
            .when(release("cancel-1", "rs-1"))
            .then_expect_events(vec![WalletEvent::ReservationReleased {
                reference: "cancel-1".into(),
                reservation: "rs-1".into(),
                amount: 2_500,
                captured: 1_500,
                postings: p(&[(WalletReserved, -2_500), (WalletAvailable, 2_500)]),
                balances: b(8_500, 0),
                at: t(4),
            }]);
    }

    #[test]
    fn a_released_reservation_cannot_be_released_again() {
        let mut events = holding();
        events.push(WalletEvent::ReservationReleased {
            reference: "cancel-1".into(),
            reservation: "rs-1".into(),
            amount: 4_000,
            captured: 0,
            postings: p(&[(WalletReserved, -4_000), (WalletAvailable, 4_000)]),
            balances: b(10_000, 0),
            at: t(4),
        });
        Given::with(())
            .given(events)
            .when(release("cancel-2", "rs-1"))
            .then_expect_error(WalletError::ReservationClosed {
                reservation: "rs-1".into(),
            });
    }

    #[test]
    fn a_release_of_an_unknown_reservation_is_refused() {
        Given::with(())
            .given(funded())
            .when(release("cancel-1", "rs-9"))
            .then_expect_error(WalletError::UnknownReservation {
                reservation: "rs-9".into(),
            });
    }

    fn expired(after: Balances, hour: i64) -> WalletEvent {
        WalletEvent::ReservationExpired {
            reservation: "rs-1".into(),
            amount: 4_000,
            captured: 0,
            expires_at: t(10),
            postings: p(&[(WalletReserved, -4_000), (WalletAvailable, 4_000)]),
            balances: after,
            at: t(hour),
        }
    }

    #[test]
    fn reservations_past_their_expiry_are_released_by_log_time() {
        Given::with(())
            .given(holding())
            .when(WalletCommand::ExpireReservations { at: t(11) })
            .then_expect_events(vec![expired(b(10_000, 0), 11)]);
    }

    #[test]
    fn nothing_expires_before_its_time() {
        Given::with(())
            .given(holding())
            .when(WalletCommand::ExpireReservations { at: t(9) })
            .then_expect_events(vec![]);
    }

    #[test]
    fn expiring_an_unopened_wallet_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(WalletCommand::ExpireReservations { at: t(9) })
            .then_expect_error(WalletError::UnknownWallet);
    }

    #[test]
    fn a_debit_after_the_expiry_is_paid_from_the_released_tokens() {
        Given::with(())
            .given(holding())
            .when(debit("msg-1", 9_000, 12))
            .then_expect_events(vec![
                expired(b(10_000, 0), 12),
                debited("msg-1", 9_000, b(1_000, 0), 12),
            ]);
    }

    // Refund

    #[test]
    fn a_failed_action_is_refunded() {
        let mut events = funded();
        events.push(debited("msg-1", 1_000, b(9_000, 0), 2));
        Given::with(())
            .given(events)
            .when(refund("rf-1", "msg-1", 1_000))
            .then_expect_events(vec![WalletEvent::TokensRefunded {
                reference: "rf-1".into(),
                debit: "msg-1".into(),
                amount: 1_000,
                refunded_total: 1_000,
                postings: p(&[(PlatformConsumption, -1_000), (WalletAvailable, 1_000)]),
                balances: b(10_000, 0),
                at: t(5),
            }]);
    }

    #[test]
    fn failed_recipients_of_a_captured_batch_are_refunded() {
        let mut events = holding();
        events.push(captured("batch-1", 1_500, 2_500, b(6_000, 2_500)));
        Given::with(())
            .given(events)
            .when(refund("rf-1", "batch-1", 500))
            .then_expect_events(vec![WalletEvent::TokensRefunded {
                reference: "rf-1".into(),
                debit: "batch-1".into(),
                amount: 500,
                refunded_total: 500,
                postings: p(&[(PlatformConsumption, -500), (WalletAvailable, 500)]),
                balances: b(6_500, 2_500),
                at: t(5),
            }]);
    }

    #[test]
    fn refunds_never_exceed_their_debit_cumulatively() {
        let mut events = funded();
        events.push(debited("msg-1", 1_000, b(9_000, 0), 2));
        events.push(WalletEvent::TokensRefunded {
            reference: "rf-1".into(),
            debit: "msg-1".into(),
            amount: 600,
            refunded_total: 600,
            postings: p(&[(PlatformConsumption, -600), (WalletAvailable, 600)]),
            balances: b(9_600, 0),
            at: t(5),
        });
        Given::with(())
            .given(events)
            .when(refund("rf-2", "msg-1", 401))
            .then_expect_error(WalletError::RefundExceedsDebit {
                requested: 401,
                refundable: 400,
            });
    }

    #[test]
    fn a_refund_of_an_unknown_debit_is_refused() {
        Given::with(())
            .given(funded())
            .when(refund("rf-1", "msg-9", 1))
            .then_expect_error(WalletError::UnknownDebit { debit: "msg-9".into() });
    }

    // Transfers

    #[test]
    fn a_transfer_out_moves_tokens_in_transit() {
        Given::with(())
            .given(funded())
            .when(transfer_out("tr-1", "w_team", 3_000))
            .then_expect_events(vec![WalletEvent::TokensTransferredOut {
                reference: "tr-1".into(),
                to_wallet: "w_team".into(),
                amount: 3_000,
                postings: p(&[(WalletAvailable, -3_000), (TransfersInTransit, 3_000)]),
                balances: b(7_000, 0),
                at: t(3),
            }]);
    }

    #[test]
    fn a_transfer_out_beyond_available_moves_nothing_and_is_recorded() {
        Given::with(())
            .given(holding())
            .when(transfer_out("tr-1", "w_team", 6_500))
            .then_expect_events(vec![WalletEvent::DebitRefused {
                reference: "tr-1".into(),
                request: Request::TransferOut {
                    to_wallet: "w_team".into(),
                    amount: 6_500,
                },
                required: 6_500,
                available: 6_000,
                postings: vec![],
                balances: b(6_000, 4_000),
                at: t(3),
            }]);
    }

    #[test]
    fn a_transfer_to_the_same_wallet_is_refused() {
        Given::with(())
            .given(funded())
            .when(transfer_out("tr-1", "w_main", 1_000))
            .then_expect_error(WalletError::TransferToSameWallet);
    }

    #[test]
    fn a_transfer_in_credits_the_target() {
        Given::with(())
            .given(vec![opened()])
            .when(transfer_in("tr-1", "w_other", 3_000))
            .then_expect_events(vec![WalletEvent::TokensTransferredIn {
                reference: "tr-1".into(),
                from_wallet: "w_other".into(),
                amount: 3_000,
                postings: p(&[(TransfersInTransit, -3_000), (WalletAvailable, 3_000)]),
                balances: b(3_000, 0),
                at: t(3),
            }]);
    }

    #[test]
    fn a_transfer_in_run_twice_credits_once() {
        let mut wallet = state(vec![opened()]);
        let first = wallet.decide(transfer_in("tr-1", "w_other", 3_000));
        for event in first.clone().unwrap_or_default() {
            wallet.apply(event);
        }
        assert_eq!(first.map(|e| e.len()), Ok(1));
        assert_eq!(wallet.decide(transfer_in("tr-1", "w_other", 3_000)), Ok(vec![]));
        assert_eq!(wallet.balances(), b(3_000, 0));
    }

    #[test]
    fn a_transfer_in_from_the_same_wallet_is_refused() {
        Given::with(())
            .given(vec![opened()])
            .when(transfer_in("tr-1", "w_main", 3_000))
            .then_expect_error(WalletError::TransferToSameWallet);
    }

    // Thresholds

    fn refill() -> AutoRefill {
        AutoRefill {
            threshold: 2_000,
            amount: 20_000,
        }
    }

    #[test]
    fn thresholds_are_configured() {
        Given::with(())
            .given(funded())
            .when(configure("cfg-1", Some(3_000), Some(refill())))
            .then_expect_events(vec![configured(Some(3_000), Some(refill()), b(10_000, 0))]);
    }

    #[test]
    fn a_negative_threshold_is_refused() {
        Given::with(())
            .given(funded())
            .when(configure("cfg-1", Some(-1), None))
            .then_expect_error(WalletError::InvalidThreshold { threshold: -1 });
    }

    #[test]
    fn an_auto_refill_of_nothing_is_refused() {
        Given::with(())
            .given(funded())
            .when(configure(
                "cfg-1",
                None,
                Some(AutoRefill {
                    threshold: 1_000,
                    amount: 0,
                }),
            ))
            .then_expect_error(WalletError::NonPositiveAmount { amount: 0 });
    }

    fn configured_and_funded() -> Vec<WalletEvent> {
        let mut events = funded();
        events.push(configured(Some(3_000), Some(refill()), b(10_000, 0)));
        events
    }

    #[test]
    fn a_debit_crossing_below_the_thresholds_alerts_and_asks_for_a_refill_once() {
        Given::with(())
            .given(configured_and_funded())
            .when(debit("msg-1", 8_500, 2))
            .then_expect_events(vec![
                debited("msg-1", 8_500, b(1_500, 0), 2),
                WalletEvent::LowBalanceAlerted {
                    trigger: "msg-1".into(),
                    threshold: 3_000,
                    postings: vec![],
                    balances: b(1_500, 0),
                    at: t(2),
                },
                WalletEvent::AutoRefillRequested {
                    trigger: "msg-1".into(),
                    threshold: 2_000,
                    amount: 20_000,
                    purchase_reference: "refill:msg-1".into(),
                    postings: vec![],
                    balances: b(1_500, 0),
                    at: t(2),
                },
            ]);
    }

    #[test]
    fn a_second_debit_below_the_threshold_alerts_nothing_until_it_rises_again() {
        let mut wallet = state(configured_and_funded());
        let mut alerts = Vec::new();
        for command in [
            debit("msg-1", 7_500, 2),
            debit("msg-2", 100, 2),
            purchase("pay-2", 5_000),
            debit("msg-3", 5_000, 3),
        ] {
            for event in wallet.decide(command).unwrap_or_default() {
                if let WalletEvent::LowBalanceAlerted { trigger, .. } = &event {
                    alerts.push(trigger.clone());
                }
                wallet.apply(event);
            }
        }
        assert_eq!(alerts, vec!["msg-1".to_string(), "msg-3".to_string()]);
    }

    #[test]
    fn every_operation_without_a_reference_is_refused() {
        let wallet = state(holding());
        for command in [
            purchase("", 1),
            debit("", 1, 2),
            reserve("", 1, 9),
            capture("", 1, 3),
            release("", "rs-1"),
            refund("", "msg-1", 1),
            transfer_out("", "w_team", 1),
            transfer_in("", "w_team", 1),
            configure("", None, None),
        ] {
            assert_eq!(
                wallet.decide(command.clone()),
                Err(WalletError::MissingReference),
                "{command:?}"
            );
        }
    }

    #[test]
    fn every_amount_of_zero_or_less_is_refused() {
        let mut events = holding();
        events.push(debited("msg-1", 1_000, b(5_000, 4_000), 2));
        let wallet = state(events);
        for command in [
            purchase("x", 0),
            debit("x", -1, 2),
            reserve("x", 0, 9),
            capture("x", 0, 3),
            refund("x", "msg-1", 0),
            transfer_out("x", "w_team", 0),
            transfer_in("x", "w_team", -3),
        ] {
            assert!(
                matches!(
                    wallet.decide(command.clone()),
                    Err(WalletError::NonPositiveAmount { .. })
                ),
                "{command:?}"
            );
        }
    }

    #[test]
    fn events_and_snapshots_survive_a_json_round_trip() {
        let mut wallet = state(configured_and_funded());
        let mut events = Vec::new();
        for command in [
            reserve("rs-1", 4_000, 10),
            capture("batch-1", 1_000, 3),
            refund("rf-1", "batch-1", 500),
            debit("msg-1", 9_000, 4),
            debit("msg-2", 4_000, 4),
            transfer_out("tr-1", "w_team", 500),
            transfer_in("tr-2", "w_team", 500),
            release("cancel-1", "rs-1"),
        ] {
            for event in wallet.decide(command).unwrap_or_default() {
                events.push(event.clone());
                wallet.apply(event);
            }
        }
        let types: std::collections::BTreeSet<String> = events.iter().map(DomainEvent::event_type).collect();
        assert!(types.len() >= 9, "{types:?}");
        for event in events {
            assert!(WalletEvent::TYPES.contains(&event.event_type().as_str()));
            let json = serde_json::to_string(&event).unwrap();
            assert_eq!(serde_json::from_str::<WalletEvent>(&json).unwrap(), event);
        }
        let snapshot = serde_json::to_string(&wallet).unwrap();
        assert_eq!(serde_json::from_str::<Wallet>(&snapshot).unwrap(), wallet);
    }

    #[test]
    fn every_error_has_a_stable_code() {
        let errors = [
            WalletError::MissingReference,
            WalletError::AmountTooLarge,
            WalletError::UnknownWallet,
            WalletError::SubWalletOfItself,
            WalletError::TransferToSameWallet,
        ];
        let codes: Vec<_> = errors.iter().map(WalletError::code).collect();
        assert_eq!(
            codes,
            [
                "MISSING_REFERENCE",
                "AMOUNT_TOO_LARGE",
                "UNKNOWN_WALLET",
                "SUB_WALLET_OF_ITSELF",
                "TRANSFER_TO_SAME_WALLET"
            ]
        );
        assert_eq!(WalletEvent::TYPES.len(), 14);
    }

    // The property: random operations with repeated and conflicting references against
    // a simple reference model.

    /// The reference model: plain arithmetic over what each reference did.
    #[derive(Default)]
    struct Model {
        available: i64,
        reserved: i64,
        /// reservation → (amount, captured, expires hour, closed)
        holds: BTreeMap<String, (i64, i64, i64, bool)>,
        /// debit or capture → (charged, refunded)
        charges: BTreeMap<String, (i64, i64)>,
        /// reference → (request, refused)
        seen: BTreeMap<String, (WalletCommand, bool)>,
    }

    /// The command without its log time, for comparing requests.
    fn timeless(command: &WalletCommand) -> WalletCommand {
        let mut c = command.clone();
        match &mut c {
            WalletCommand::Open { at, .. }
            | WalletCommand::Purchase { at, .. }
            | WalletCommand::Debit { at, .. }
            | WalletCommand::Reserve { at, .. }
            | WalletCommand::Capture { at, .. }
            | WalletCommand::Release { at, .. }
            | WalletCommand::Refund { at, .. }
            | WalletCommand::TransferOut { at, .. }
            | WalletCommand::TransferIn { at, .. }
            | WalletCommand::ConfigureThresholds { at, .. }
            | WalletCommand::ExpireReservations { at } => *at = t(0),
        }
        c
    }

    #[derive(Debug, PartialEq)]
    enum Expect {
        /// Nothing recorded (a repeat, or a refusal returned as an error).
        Nothing,
        /// The operation took effect (or its refusal was recorded, `true`).
        Effect(bool),
        Error,
    }

    impl Model {
        /// What `command` at `hour` should do, updating the model when it takes effect.
        fn step(&mut self, command: &WalletCommand, hour: i64) -> Expect {
            let reference = match command {
                WalletCommand::Purchase { reference, .. }
                | WalletCommand::Debit { reference, .. }
                | WalletCommand::Reserve { reference, .. }
                | WalletCommand::Capture { reference, .. }
                | WalletCommand::Release { reference, .. }
                | WalletCommand::Refund { reference, .. }
                | WalletCommand::TransferOut { reference, .. }
                | WalletCommand::TransferIn { reference, .. } => reference.clone(),
                _ => return Expect::Error,
            };
            if let Some((first, refused)) = self.seen.get(&reference) {
                return match (timeless(first) == timeless(command), refused) {
                    (true, false) => Expect::Nothing,
                    _ => Expect::Error,
                };
            }
            // Work on a copy: an error commits nothing, not even expiries.
            let mut next = Model {
                available: self.available,
                reserved: self.reserved,
                holds: self.holds.clone(),
                charges: self.charges.clone(),
                seen: BTreeMap::new(),
            };
            for hold in next.holds.values_mut() {
                if !hold.3 && hold.2 <= hour {
                    hold.3 = true;
                    next.reserved -= hold.0 - hold.1;
                    next.available += hold.0 - hold.1;
                }
            }
            let mut refused = false;
            match command {
                WalletCommand::Purchase { amount, .. } | WalletCommand::TransferIn { amount, .. } => {
                    next.available += amount
                }
                WalletCommand::Debit { amount, .. } | WalletCommand::TransferOut { amount, .. } => {
                    if *amount > next.available {
                        refused = true;
                    } else {
                        next.available -= amount;
                        if matches!(command, WalletCommand::Debit { .. }) {
                            next.charges.insert(reference.clone(), (*amount, 0));
                        }
                    }
                }
                WalletCommand::Reserve { amount, expires_at, .. } => {
                    if *amount > next.available {
                        refused = true;
                    } else {
                        next.available -= amount;
                        next.reserved += amount;
                        let expires = (*expires_at - t(0)).num_hours();
                        next.holds.insert(reference.clone(), (*amount, 0, expires, false));
                    }
                }
                WalletCommand::Capture {
                    reservation, amount, ..
                } => match next.holds.get_mut(reservation) {
                    Some(hold) if !hold.3 && *amount <= hold.0 - hold.1 => {
                        hold.1 += amount;
                        hold.3 = hold.0 == hold.1;
                        next.reserved -= amount;
                        next.charges.insert(reference.clone(), (*amount, 0));
                    }
                    _ => return Expect::Error,
                },
                WalletCommand::Release { reservation, .. } => match next.holds.get_mut(reservation) {
                    Some(hold) if !hold.3 => {
                        hold.3 = true;
                        next.reserved -= hold.0 - hold.1;
                        next.available += hold.0 - hold.1;
                    }
                    _ => return Expect::Error,
                },
                WalletCommand::Refund { debit, amount, .. } => match next.charges.get_mut(debit) {
                    Some(charge) if *amount <= charge.0 - charge.1 => {
                        charge.1 += amount;
                        next.available += amount;
                    }
                    _ => return Expect::Error,
                },
                _ => return Expect::Error,
            }
            self.available = next.available;
            self.reserved = next.reserved;
            self.holds = next.holds;
            self.charges = next.charges;
            self.seen.insert(reference, (command.clone(), refused));
            Expect::Effect(refused)
        }
    }

    fn any_command() -> impl Strategy<Value = (WalletCommand, i64)> {
        let reference = (0..24u8).prop_map(|n| format!("r{n}"));
        let amount = prop_oneof![1..3_000i64, Just(500i64), Just(1_000i64), Just(1_500i64), Just(501i64)];
        (0..8u8, reference.clone(), reference, amount, 0..3i64, 1..6i64).prop_map(
            |(kind, reference, other, amount, advance, expires)| {
                let at = t(advance);
                let command = match kind {
                    0 => WalletCommand::Purchase {
                        reference,
                        amount,
                        source: "mpesa".into(),
                        at,
                    },
                    1 => WalletCommand::Debit {
                        reference,
                        amount,
                        feature: "message".into(),
                        at,
                    },
                    2 => WalletCommand::Reserve {
                        reference,
                        amount,
                        // Placeholder: the expiry is rebased on the step's hour below.
                        expires_at: t(expires),
                        purpose: "campaign".into(),
                        at,
                    },
                    3 => WalletCommand::Capture {
                        reference,
                        reservation: other,
                        amount,
                        at,
                    },
                    4 => WalletCommand::Release {
                        reference,
                        reservation: other,
                        at,
                    },
                    5 => WalletCommand::Refund {
                        reference,
                        debit: other,
                        amount,
                        at,
                    },
                    6 => WalletCommand::TransferOut {
                        reference,
                        to_wallet: "w_team".into(),
                        amount,
                        at,
                    },
                    _ => WalletCommand::TransferIn {
                        reference,
                        from_wallet: "w_team".into(),
                        amount,
                        at,
                    },
                };
                (command, advance)
            },
        )
    }

    /// Sets the command's log time to `hour` (and a reservation's expiry after it).
    fn at_hour(command: WalletCommand, hour: i64) -> WalletCommand {
        let mut c = command;
        match &mut c {
            WalletCommand::Reserve { at, expires_at, .. } => {
                *expires_at = t(hour) + (*expires_at - t(0));
                *at = t(hour);
            }
            WalletCommand::Purchase { at, .. }
            | WalletCommand::Debit { at, .. }
            | WalletCommand::Capture { at, .. }
            | WalletCommand::Release { at, .. }
            | WalletCommand::Refund { at, .. }
            | WalletCommand::TransferOut { at, .. }
            | WalletCommand::TransferIn { at, .. }
            | WalletCommand::Open { at, .. }
            | WalletCommand::ConfigureThresholds { at, .. }
            | WalletCommand::ExpireReservations { at } => *at = t(hour),
        }
        c
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// After every step: available never negative; balance equals the sum of the postings
        /// to the wallet's accounts; each event's postings sum to zero; captured + released =
        /// reserved for every closed reservation; each reference takes effect at most once;
        /// and the wallet agrees with the reference model.
        #[test]
        fn the_ledger_holds_its_identities_under_any_sequence(
            steps in proptest::collection::vec(any_command(), 1..80),
            threshold in 0..5_000i64,
        ) {
            let mut wallet = state(vec![opened()]);
            for event in wallet.decide(configure("cfg-1", Some(threshold), None)).unwrap_or_default() {
                wallet.apply(event);
            }
            let mut model = Model::default();
            let mut hour = 0i64;
            let mut posted: BTreeMap<Account, i64> = BTreeMap::new();
            let mut effects: BTreeMap<String, usize> = BTreeMap::new();
            // reservation → (reserved, captured, released)
            let mut holds: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
            let mut closed: Vec<String> = Vec::new();
            let mut armed = true;
            for (command, advance) in steps {
                hour += advance;
                let command = at_hour(command, hour);
                let expected = model.step(&command, hour);
                let outcome = wallet.decide(command.clone());
                match (&expected, &outcome) {
                    (Expect::Nothing, Ok(events)) => proptest::prop_assert!(events.is_empty(), "{:?}", events),
                    (Expect::Error, Err(_)) => {}
                    (Expect::Effect(refused), Ok(events)) => {
                        proptest::prop_assert!(!events.is_empty());
                        proptest::prop_assert_eq!(refusal(events).is_some(), *refused);
                    }
                    _ => proptest::prop_assert!(false, "{:?} expected {:?}, got {:?}", command, expected, outcome),
                }
                for event in outcome.unwrap_or_default() {
                    proptest::prop_assert!(Posting::balanced(event.postings()), "{:?}", event);
                    for posting in event.postings() {
                        *posted.entry(posting.account).or_default() += posting.amount;
                    }
                    match &event {
                        WalletEvent::TokensPurchased { reference, .. }
                        | WalletEvent::TokensDebited { reference, .. }
                        | WalletEvent::DebitRefused { reference, .. }
                        | WalletEvent::ReservationCaptured { reference, .. }
                        | WalletEvent::ReservationReleased { reference, .. }
                        | WalletEvent::TokensRefunded { reference, .. }
                        | WalletEvent::TokensTransferredOut { reference, .. }
                        | WalletEvent::TokensTransferredIn { reference, .. } => {
                            *effects.entry(reference.clone()).or_default() += 1;
                        }
                        WalletEvent::TokensReserved { reference, amount, .. } => {
                            *effects.entry(reference.clone()).or_default() += 1;
                            holds.insert(reference.clone(), (*amount, 0, 0));
                        }
                        WalletEvent::LowBalanceAlerted { balances, .. } => {
                            proptest::prop_assert!(armed && balances.available < threshold);
                            armed = false;
                        }
                        _ => {}
                    }
                    match &event {
                        WalletEvent::ReservationCaptured { reservation, amount, remaining, .. } => {
                            if let Some(h) = holds.get_mut(reservation) { h.1 += amount; }
                            if *remaining == 0 { closed.push(reservation.clone()); }
                        }
                        WalletEvent::ReservationReleased { reservation, amount, .. }
                        | WalletEvent::ReservationExpired { reservation, amount, .. } => {
                            if let Some(h) = holds.get_mut(reservation) { h.2 += amount; }
                            closed.push(reservation.clone());
                        }
                        _ => {}
                    }
                    wallet.apply(event);
                    if wallet.balances().available >= threshold { armed = true; }
                }
                let balances = wallet.balances();
                proptest::prop_assert!(balances.available >= 0);
                proptest::prop_assert_eq!(balances.balance, balances.available + balances.reserved);
                let wallet_postings: i64 = posted.iter().filter(|(a, _)| a.is_wallet()).map(|(_, v)| v).sum();
                proptest::prop_assert_eq!(balances.balance, wallet_postings);
                proptest::prop_assert_eq!(balances.available, posted.get(&Account::WalletAvailable).copied().unwrap_or(0));
                proptest::prop_assert_eq!((balances.available, balances.reserved), (model.available, model.reserved));
                for reservation in &closed {
                    let (amount, captured, released) = holds[reservation];
                    proptest::prop_assert_eq!(captured + released, amount, "{}", reservation);
                }
                proptest::prop_assert!(effects.values().all(|n| *n == 1), "{:?}", effects);
                for (name, hold) in &model.holds {
                    let held = wallet.reservations.get(name).map(|r| (r.amount, r.captured, r.closed));
                    proptest::prop_assert_eq!(held, Some((hold.0, hold.1, hold.3)), "{}", name);
                }
                for (name, charge) in &model.charges {
                    let charged = wallet.charges.get(name).map(|c| (c.charged, c.refunded));
                    proptest::prop_assert_eq!(charged, Some(*charge), "{}", name);
                }
            }
        }
    }
}
