//! The `Campaign` aggregate's state and its command handling.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::{CampaignCommand, NewCampaign};
use super::error::CampaignError;
use super::events::CampaignEvent;
use super::values::{
    capture_reference, refund_reference, release_reference, valid_campaign_id, CampaignStatus, RecipientCounts,
    RecipientOutcome, RecipientStatus, RefundDue, MAX_RECIPIENTS,
};

/// What was scheduled: the price and the reservation it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
struct Schedule {
    start_at: DateTime<Utc>,
    unit_price: i64,
    reserved: i64,
    reservation: Option<String>,
}

/// One recipient's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
struct Recipient {
    status: RecipientStatus,
    /// The batch it was run in (0: not run).
    batch: u32,
    reason: Option<String>,
    refund: Option<RefundDue>,
}

/// One batch of recipients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
struct Batch {
    recipients: Vec<String>,
    capture: Option<String>,
    charged: i64,
    dispatched: bool,
}

/// A template sent to a segment of contacts, paid from a wallet reservation.
// `serde(default)`: snapshots taken before a field existed still load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct Campaign {
    /// The creating request (its `at` aside, compared for idempotency).
    created: Option<NewCampaign>,
    status: CampaignStatus,
    started: bool,
    schedule: Option<Schedule>,
    recipients: BTreeMap<String, Recipient>,
    /// Index in the creating request's recipients of the next one to run.
    next_pending: usize,
    /// Batches in order; batch `n` is at index `n - 1`.
    batches: Vec<Batch>,
    counts: RecipientCounts,
}

impl Campaign {
    /// The campaign's id, once created.
    pub fn campaign_id(&self) -> Option<&str> {
        self.created.as_ref().map(|c| c.campaign_id.as_str())
    }

    /// The campaign's status.
    pub fn status(&self) -> CampaignStatus {
        self.status
    }

    /// The creating request (name, template, variables, segment, recipients in order).
    pub fn definition(&self) -> Option<&NewCampaign> {
        self.created.as_ref()
    }

    /// The counts of recipients per status and the milli-tokens charged and refunded.
    pub fn counts(&self) -> RecipientCounts {
        self.counts
    }

    /// Whether the campaign has started running (it may be paused since).
    pub fn has_started(&self) -> bool {
        self.started
    }

    /// When it starts, once scheduled.
    pub fn start_at(&self) -> Option<DateTime<Utc>> {
        self.schedule.as_ref().map(|s| s.start_at)
    }

    /// The unit price per recipient in milli-tokens (0 before scheduling, or free).
    pub fn unit_price(&self) -> i64 {
        self.schedule.as_ref().map_or(0, |s| s.unit_price)
    }

    /// The wallet reservation the campaign holds (`None` when free or not scheduled) and its
    /// amount.
    pub fn reservation(&self) -> Option<(&str, i64)> {
        self.schedule
            .as_ref()
            .and_then(|s| s.reservation.as_deref().map(|r| (r, s.reserved)))
    }

    /// What scheduling at `unit_price` would reserve: recipients × unit price (`None` when it
    /// overflows, or before the campaign exists).
    pub fn required_reservation(&self, unit_price: i64) -> Option<i64> {
        let total = i64::from(self.created.as_ref().map(|_| self.counts.total)?);
        total.checked_mul(unit_price)
    }

    /// The batch still to be dispatched, if any: its number and recipients.
    pub fn batch_in_flight(&self) -> Option<(u32, &[String])> {
        let last = self.batches.last().filter(|b| !b.dispatched)?;
        Some((batch_number(self.batches.len()), &last.recipients))
    }

    /// Every batch's number, capture reference (`None` when free) and charge.
    pub fn captures(&self) -> Vec<(u32, Option<&str>, i64)> {
        self.batches
            .iter()
            .enumerate()
            .map(|(i, b)| (batch_number(i + 1), b.capture.as_deref(), b.charged))
            .collect()
    }

    /// A recipient's status (`None`: not a recipient).
    pub fn recipient_status(&self, recipient: &str) -> Option<RecipientStatus> {
        self.recipients.get(recipient).map(|r| r.status)
    }

    /// The refund a failed recipient is owed (`None`: not failed, or free).
    pub fn refund_of(&self, recipient: &str) -> Option<&RefundDue> {
        self.recipients.get(recipient).and_then(|r| r.refund.as_ref())
    }

    /// The release due once the campaign is finished: the reference and what is left of the
    /// reservation (`None` while it runs, or when nothing is left).
    pub fn release_due(&self) -> Option<(String, i64)> {
        if !self.status.is_finished() {
            return None;
        }
        let (id, left) = (self.campaign_id()?, self.reservation_left()?);
        Some((release_reference(id), left))
    }

    /// What the reservation still holds once every batch is captured (`None`: no reservation,
    /// or nothing left).
    fn reservation_left(&self) -> Option<i64> {
        let schedule = self.schedule.as_ref()?;
        schedule.reservation.as_ref()?;
        let left = schedule.reserved.saturating_sub(self.counts.charged);
        (left > 0).then_some(left)
    }

    fn existing(&self) -> Result<&NewCampaign, CampaignError> {
        self.created.as_ref().ok_or(CampaignError::UnknownCampaign)
    }

    fn decide(&self, command: CampaignCommand) -> Result<Vec<CampaignEvent>, CampaignError> {
        match command {
            CampaignCommand::CreateCampaign(new) => self.create(new),
            CampaignCommand::ScheduleCampaign {
                start_at,
                unit_price,
                reservation,
                at,
            } => self.schedule(start_at, unit_price, reservation, at),
            CampaignCommand::StartCampaign { at } => self.start(at),
            CampaignCommand::RunBatch { size, at } => self.run_batch(size, at),
            CampaignCommand::MarkBatchDispatched { batch, at } => self.mark_dispatched(batch, at),
            CampaignCommand::RecordRecipientOutcome { recipient, outcome, at } => {
                self.record_outcome(recipient, outcome, at)
            }
            CampaignCommand::PauseCampaign { by, at } => self.pause(by, at),
            CampaignCommand::ResumeCampaign { by, at } => self.resume(by, at),
            CampaignCommand::CancelCampaign { by, at } => self.cancel(by, at),
        }
    }

    fn create(&self, mut new: NewCampaign) -> Result<Vec<CampaignEvent>, CampaignError> {
        if !valid_campaign_id(&new.campaign_id) {
            return Err(CampaignError::InvalidCampaignId {
                campaign_id: new.campaign_id,
            });
        }
        let mut seen = std::collections::BTreeSet::new();
        new.recipients.retain(|r| seen.insert(r.clone()));
        if let Some(existing) = &self.created {
            let repeat = NewCampaign {
                at: existing.at,
                ..new.clone()
            };
            return if &repeat == existing {
                Ok(vec![])
            } else {
                Err(CampaignError::CampaignAlreadyExists {
                    campaign_id: new.campaign_id,
                })
            };
        }
        for (field, value) in [
            ("name", &new.name),
            ("template name", &new.template_name),
            ("language", &new.language),
        ] {
            if value.trim().is_empty() {
                return Err(CampaignError::Blank { field });
            }
        }
        if new.recipients.iter().any(|r| r.trim().is_empty()) {
            return Err(CampaignError::Blank { field: "recipient" });
        }
        if new.recipients.is_empty() {
            return Err(CampaignError::NoRecipients);
        }
        if new.recipients.len() > MAX_RECIPIENTS {
            return Err(CampaignError::TooManyRecipients {
                count: new.recipients.len(),
                max: MAX_RECIPIENTS,
            });
        }
        // Bounded by MAX_RECIPIENTS above, so it fits.
        let total = u32::try_from(new.recipients.len()).unwrap_or(u32::MAX);
        Ok(vec![CampaignEvent::CampaignCreated {
            campaign_id: new.campaign_id,
            name: new.name,
            template_name: new.template_name,
            language: new.language,
            variables: new.variables,
            segment: new.segment,
            recipients: new.recipients,
            created_by: new.created_by,
            counts: RecipientCounts::new(total),
            at: new.at,
        }])
    }

    fn schedule(
        &self,
        start_at: DateTime<Utc>,
        unit_price: i64,
        reservation: Option<String>,
        at: DateTime<Utc>,
    ) -> Result<Vec<CampaignEvent>, CampaignError> {
        self.existing()?;
        if unit_price < 0 {
            return Err(CampaignError::NegativePrice { unit_price });
        }
        let reserved = self
            .required_reservation(unit_price)
            .ok_or(CampaignError::AmountTooLarge)?;
        let reservation = match reservation {
            _ if reserved == 0 => None,
            Some(r) if r.trim().is_empty() => return Err(CampaignError::Blank { field: "reservation" }),
            Some(r) => Some(r),
            None => return Err(CampaignError::ReservationRequired),
        };
        if self.status != CampaignStatus::Draft {
            let same = self
                .schedule
                .as_ref()
                .is_some_and(|s| s.start_at == start_at && s.unit_price == unit_price && s.reservation == reservation);
            return if same {
                Ok(vec![])
            } else {
                Err(CampaignError::CampaignNotDraft {
                    status: self.status.as_str(),
                })
            };
        }
        Ok(vec![CampaignEvent::CampaignScheduled {
            start_at,
            unit_price,
            reserved,
            reservation,
            counts: self.counts,
            at,
        }])
    }

    fn start(&self, at: DateTime<Utc>) -> Result<Vec<CampaignEvent>, CampaignError> {
        self.existing()?;
        match self.status {
            CampaignStatus::Running => Ok(vec![]),
            CampaignStatus::Paused if self.started => Ok(vec![]),
            CampaignStatus::Completed | CampaignStatus::Cancelled => Err(CampaignError::CampaignFinished {
                status: self.status.as_str(),
            }),
            CampaignStatus::Scheduled => match self.start_at() {
                Some(start_at) if at < start_at => Err(CampaignError::NotDueYet { start_at }),
                _ => Ok(vec![CampaignEvent::CampaignStarted {
                    counts: self.counts,
                    at,
                }]),
            },
            CampaignStatus::Draft | CampaignStatus::Paused => Err(CampaignError::CampaignNotScheduled {
                status: self.status.as_str(),
            }),
        }
    }

    fn run_batch(&self, size: u32, at: DateTime<Utc>) -> Result<Vec<CampaignEvent>, CampaignError> {
        let campaign = self.existing()?;
        if self.status != CampaignStatus::Running {
            return Err(CampaignError::CampaignNotRunning {
                status: self.status.as_str(),
            });
        }
        if size == 0 {
            return Err(CampaignError::InvalidBatchSize);
        }
        if let Some((batch, _)) = self.batch_in_flight() {
            return Err(CampaignError::BatchInFlight { batch });
        }
        let take = usize::try_from(size).unwrap_or(usize::MAX);
        let recipients: Vec<String> = campaign
            .recipients
            .iter()
            .skip(self.next_pending)
            .take(take)
            .cloned()
            .collect();
        if recipients.is_empty() {
            return Err(CampaignError::NothingPending);
        }
        // At most MAX_RECIPIENTS, so it fits.
        let n = u32::try_from(recipients.len()).unwrap_or(u32::MAX);
        let unit_price = self.unit_price();
        let charged = unit_price
            .checked_mul(i64::from(n))
            .ok_or(CampaignError::AmountTooLarge)?;
        let batch = batch_number(self.batches.len() + 1);
        let mut counts = self.counts.moved(RecipientStatus::Pending, RecipientStatus::Queued, n);
        counts.charged = counts.charged.saturating_add(charged);
        Ok(vec![CampaignEvent::CampaignBatchStarted {
            batch,
            recipients,
            unit_price,
            charged,
            capture: (charged > 0).then(|| capture_reference(&campaign.campaign_id, batch)),
            counts,
            at,
        }])
    }

    fn mark_dispatched(&self, batch: u32, at: DateTime<Utc>) -> Result<Vec<CampaignEvent>, CampaignError> {
        self.existing()?;
        let index = usize::try_from(batch).unwrap_or(usize::MAX);
        let known = index
            .checked_sub(1)
            .and_then(|i| self.batches.get(i))
            .ok_or(CampaignError::UnknownBatch { batch })?;
        if known.dispatched {
            return Ok(vec![]);
        }
        Ok(vec![CampaignEvent::CampaignBatchDispatched {
            batch,
            counts: self.counts,
            at,
        }])
    }

    fn record_outcome(
        &self,
        recipient: String,
        outcome: RecipientOutcome,
        at: DateTime<Utc>,
    ) -> Result<Vec<CampaignEvent>, CampaignError> {
        let campaign = self.existing()?;
        let state = self
            .recipients
            .get(&recipient)
            .ok_or_else(|| CampaignError::UnknownRecipient {
                recipient: recipient.clone(),
            })?;
        if let RecipientOutcome::Failed { reason } = &outcome {
            if reason.trim().is_empty() {
                return Err(CampaignError::Blank { field: "reason" });
            }
        }
        let current = state.status;
        if !current.was_run() {
            return Err(CampaignError::RecipientNotRun { recipient });
        }
        let to = outcome.status();
        // Statuses only move forward (sent → delivered → read); failed only before delivery,
        // and terminal. Anything else is a late or repeated report: nothing to record.
        let moves = match (current, to) {
            (RecipientStatus::Failed, _) => false,
            (_, RecipientStatus::Failed) => matches!(current, RecipientStatus::Queued | RecipientStatus::Sent),
            (current, to) => to > current,
        };
        if !moves {
            return Ok(vec![]);
        }
        let mut counts = self.counts.moved(current, to, 1);
        let event = match outcome {
            RecipientOutcome::Sent => CampaignEvent::CampaignRecipientSent { recipient, counts, at },
            RecipientOutcome::Delivered => CampaignEvent::CampaignRecipientDelivered { recipient, counts, at },
            RecipientOutcome::Read => CampaignEvent::CampaignRecipientRead { recipient, counts, at },
            RecipientOutcome::Failed { reason } => {
                let price = self
                    .batches
                    .get(usize::try_from(state.batch).unwrap_or(usize::MAX).saturating_sub(1))
                    .filter(|b| b.charged > 0)
                    .map_or(0, |_| self.unit_price());
                let refund = (price > 0).then(|| RefundDue {
                    reference: refund_reference(&campaign.campaign_id, &recipient),
                    capture: capture_reference(&campaign.campaign_id, state.batch),
                    amount: price,
                });
                counts.refunded = counts.refunded.saturating_add(price);
                CampaignEvent::CampaignRecipientFailed {
                    recipient,
                    batch: state.batch,
                    reason,
                    refund,
                    counts,
                    at,
                }
            }
        };
        let mut events = vec![event];
        let active = matches!(self.status, CampaignStatus::Running | CampaignStatus::Paused);
        if active && counts.all_final() {
            let left = self.reservation_left();
            events.push(CampaignEvent::CampaignCompleted {
                release: left.map(|_| release_reference(&campaign.campaign_id)),
                released: left.unwrap_or(0),
                counts,
                at,
            });
        }
        Ok(events)
    }

    fn pause(&self, by: String, at: DateTime<Utc>) -> Result<Vec<CampaignEvent>, CampaignError> {
        self.existing()?;
        match self.status {
            CampaignStatus::Scheduled | CampaignStatus::Running => Ok(vec![CampaignEvent::CampaignPaused {
                by,
                counts: self.counts,
                at,
            }]),
            CampaignStatus::Paused => Ok(vec![]),
            CampaignStatus::Draft => Err(CampaignError::CampaignNotScheduled {
                status: self.status.as_str(),
            }),
            CampaignStatus::Completed | CampaignStatus::Cancelled => Err(CampaignError::CampaignFinished {
                status: self.status.as_str(),
            }),
        }
    }

    fn resume(&self, by: String, at: DateTime<Utc>) -> Result<Vec<CampaignEvent>, CampaignError> {
        self.existing()?;
        match self.status {
            CampaignStatus::Paused => Ok(vec![CampaignEvent::CampaignResumed {
                by,
                status: if self.started {
                    CampaignStatus::Running
                } else {
                    CampaignStatus::Scheduled
                },
                counts: self.counts,
                at,
            }]),
            CampaignStatus::Scheduled | CampaignStatus::Running => Ok(vec![]),
            CampaignStatus::Draft => Err(CampaignError::CampaignNotScheduled {
                status: self.status.as_str(),
            }),
            CampaignStatus::Completed | CampaignStatus::Cancelled => Err(CampaignError::CampaignFinished {
                status: self.status.as_str(),
            }),
        }
    }

    fn cancel(&self, by: String, at: DateTime<Utc>) -> Result<Vec<CampaignEvent>, CampaignError> {
        let campaign = self.existing()?;
        match self.status {
            CampaignStatus::Cancelled => Ok(vec![]),
            CampaignStatus::Completed => Err(CampaignError::CampaignFinished {
                status: self.status.as_str(),
            }),
            CampaignStatus::Draft | CampaignStatus::Scheduled | CampaignStatus::Running | CampaignStatus::Paused => {
                let cancelled = self.counts.pending;
                let counts = self
                    .counts
                    .moved(RecipientStatus::Pending, RecipientStatus::Cancelled, cancelled);
                let left = self.reservation_left();
                Ok(vec![CampaignEvent::CampaignCancelled {
                    by,
                    cancelled,
                    release: left.map(|_| release_reference(&campaign.campaign_id)),
                    released: left.unwrap_or(0),
                    counts,
                    at,
                }])
            }
        }
    }

    fn set_recipient(&mut self, recipient: &str, status: RecipientStatus) {
        if let Some(r) = self.recipients.get_mut(recipient) {
            r.status = status;
        }
    }
}

/// Batch numbers start at 1; a campaign has at most `MAX_RECIPIENTS` batches, so it fits.
fn batch_number(position: usize) -> u32 {
    u32::try_from(position).unwrap_or(u32::MAX)
}

impl Aggregate for Campaign {
    const TYPE: &'static str = "Campaign";
    type Command = CampaignCommand;
    type Event = CampaignEvent;
    type Error = CampaignError;
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
        self.counts = event.counts();
        match event {
            CampaignEvent::CampaignCreated {
                campaign_id,
                name,
                template_name,
                language,
                variables,
                segment,
                recipients,
                created_by,
                at,
                ..
            } => {
                self.recipients = recipients.iter().map(|r| (r.clone(), Recipient::default())).collect();
                self.created = Some(NewCampaign {
                    campaign_id,
                    name,
                    template_name,
                    language,
                    variables,
                    segment,
                    recipients,
                    created_by,
                    at,
                });
                self.status = CampaignStatus::Draft;
            }
            CampaignEvent::CampaignScheduled {
                start_at,
                unit_price,
                reserved,
                reservation,
                ..
            } => {
                self.schedule = Some(Schedule {
                    start_at,
                    unit_price,
                    reserved,
                    reservation,
                });
                self.status = CampaignStatus::Scheduled;
            }
            CampaignEvent::CampaignStarted { .. } => {
                self.started = true;
                self.status = CampaignStatus::Running;
            }
            CampaignEvent::CampaignBatchStarted {
                batch,
                recipients,
                charged,
                capture,
                ..
            } => {
                for r in &recipients {
                    if let Some(state) = self.recipients.get_mut(r) {
                        state.status = RecipientStatus::Queued;
                        state.batch = batch;
                    }
                }
                self.next_pending = self.next_pending.saturating_add(recipients.len());
                self.batches.push(Batch {
                    recipients,
                    capture,
                    charged,
                    dispatched: false,
                });
            }
            CampaignEvent::CampaignBatchDispatched { batch, .. } => {
                let index = usize::try_from(batch).unwrap_or(usize::MAX).saturating_sub(1);
                if let Some(b) = self.batches.get_mut(index) {
                    b.dispatched = true;
                }
            }
            CampaignEvent::CampaignRecipientSent { recipient, .. } => {
                self.set_recipient(&recipient, RecipientStatus::Sent);
            }
            CampaignEvent::CampaignRecipientDelivered { recipient, .. } => {
                self.set_recipient(&recipient, RecipientStatus::Delivered);
            }
            CampaignEvent::CampaignRecipientRead { recipient, .. } => {
                self.set_recipient(&recipient, RecipientStatus::Read);
            }
            CampaignEvent::CampaignRecipientFailed {
                recipient,
                reason,
                refund,
                ..
            } => {
                if let Some(r) = self.recipients.get_mut(&recipient) {
                    r.status = RecipientStatus::Failed;
                    r.reason = Some(reason);
                    r.refund = refund;
                }
            }
            CampaignEvent::CampaignPaused { .. } => self.status = CampaignStatus::Paused,
            CampaignEvent::CampaignResumed { status, .. } => self.status = status,
            CampaignEvent::CampaignCancelled { .. } => {
                for r in self.recipients.values_mut() {
                    if r.status == RecipientStatus::Pending {
                        r.status = RecipientStatus::Cancelled;
                    }
                }
                self.status = CampaignStatus::Cancelled;
            }
            CampaignEvent::CampaignCompleted { .. } => self.status = CampaignStatus::Completed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::values::{message_key, reservation_reference};
    use chrono::{Duration, TimeZone};
    use cqrs_es::test::TestFramework;
    use cqrs_es::DomainEvent;
    use proptest::prelude::*;

    type Given = TestFramework<Campaign>;

    const ID: &str = "black-friday";

    fn at(minutes: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 8, 0, 0)
            .single()
            .expect("a valid time")
            + Duration::minutes(minutes)
    }

    fn ct(n: usize) -> String {
        format!("ct_{n:04x}")
    }

    fn new_campaign(recipients: usize) -> NewCampaign {
        NewCampaign {
            campaign_id: ID.into(),
            name: "Black Friday".into(),
            template_name: "promo".into(),
            language: "en".into(),
            variables: vec!["20%".into()],
            segment: "tags: vip".into(),
            recipients: (1..=recipients).map(ct).collect(),
            created_by: "u1".into(),
            at: at(0),
        }
    }

    fn created(recipients: usize) -> CampaignEvent {
        let n = new_campaign(recipients);
        CampaignEvent::CampaignCreated {
            campaign_id: n.campaign_id,
            name: n.name,
            template_name: n.template_name,
            language: n.language,
            variables: n.variables,
            segment: n.segment,
            recipients: n.recipients,
            created_by: n.created_by,
            counts: RecipientCounts::new(u32::try_from(recipients).expect("small")),
            at: at(0),
        }
    }

    fn counts(total: u32, f: impl FnOnce(&mut RecipientCounts)) -> RecipientCounts {
        let mut c = RecipientCounts::new(total);
        f(&mut c);
        c
    }

    fn scheduled(recipients: usize, price: i64) -> CampaignEvent {
        let total = u32::try_from(recipients).expect("small");
        let reserved = price * i64::from(total);
        CampaignEvent::CampaignScheduled {
            start_at: at(10),
            unit_price: price,
            reserved,
            reservation: (reserved > 0).then(|| reservation_reference(ID, 1)),
            counts: RecipientCounts::new(total),
            at: at(1),
        }
    }

    fn started(recipients: u32) -> CampaignEvent {
        CampaignEvent::CampaignStarted {
            counts: RecipientCounts::new(recipients),
            at: at(10),
        }
    }

    /// Three recipients at 30 milli-tokens each, running.
    fn running() -> Vec<CampaignEvent> {
        vec![created(3), scheduled(3, 30), started(3)]
    }

    fn batch_started(batch: u32, from: usize, n: usize, price: i64, c: RecipientCounts) -> CampaignEvent {
        let charged = price * i64::try_from(n).expect("small");
        CampaignEvent::CampaignBatchStarted {
            batch,
            recipients: (from..from + n).map(ct).collect(),
            unit_price: price,
            charged,
            capture: (charged > 0).then(|| capture_reference(ID, batch)),
            counts: c,
            at: at(11),
        }
    }

    /// Running, first two recipients in batch 1 (dispatched), third pending.
    fn first_batch_out() -> Vec<CampaignEvent> {
        let mut events = running();
        let c = counts(3, |c| {
            c.pending = 1;
            c.queued = 2;
            c.charged = 60;
        });
        events.push(batch_started(1, 1, 2, 30, c));
        events.push(CampaignEvent::CampaignBatchDispatched {
            batch: 1,
            counts: c,
            at: at(11),
        });
        events
    }

    fn outcome(n: usize, outcome: RecipientOutcome, minute: i64) -> CampaignCommand {
        CampaignCommand::RecordRecipientOutcome {
            recipient: ct(n),
            outcome,
            at: at(minute),
        }
    }

    fn failed(reason: &str) -> RecipientOutcome {
        RecipientOutcome::Failed { reason: reason.into() }
    }

    fn by(minute: i64) -> (String, DateTime<Utc>) {
        ("u1".to_string(), at(minute))
    }

    // --- CreateCampaign ---

    #[test]
    fn a_campaign_is_created_as_a_draft_with_its_recipients_counted() {
        Given::with(())
            .given_no_previous_events()
            .when(CampaignCommand::CreateCampaign(new_campaign(3)))
            .then_expect_events(vec![created(3)]);
    }

    #[test]
    fn repeated_recipients_are_dropped_keeping_the_first_order() {
        let mut new = new_campaign(2);
        new.recipients.push(ct(1));
        Given::with(())
            .given_no_previous_events()
            .when(CampaignCommand::CreateCampaign(new))
            .then_expect_events(vec![created(2)]);
    }

    #[test]
    fn creating_the_same_campaign_again_changes_nothing() {
        let mut again = new_campaign(3);
        again.at = at(5);
        Given::with(())
            .given(vec![created(3)])
            .when(CampaignCommand::CreateCampaign(again))
            .then_expect_events(vec![]);
    }

    #[test]
    fn another_campaign_under_the_same_id_is_refused() {
        Given::with(())
            .given(vec![created(3)])
            .when(CampaignCommand::CreateCampaign(new_campaign(4)))
            .then_expect_error(CampaignError::CampaignAlreadyExists { campaign_id: ID.into() });
    }

    #[test]
    fn a_campaign_id_that_is_not_a_short_lowercase_name_is_refused() {
        let mut new = new_campaign(1);
        new.campaign_id = "Black Friday!".into();
        Given::with(())
            .given_no_previous_events()
            .when(CampaignCommand::CreateCampaign(new))
            .then_expect_error(CampaignError::InvalidCampaignId {
                campaign_id: "Black Friday!".into(),
            });
    }

    #[test]
    fn a_campaign_without_a_name_or_template_is_refused() {
        let mut new = new_campaign(1);
        new.name = " ".into();
        Given::with(())
            .given_no_previous_events()
            .when(CampaignCommand::CreateCampaign(new))
            .then_expect_error(CampaignError::Blank { field: "name" });
        let mut new = new_campaign(1);
        new.language = String::new();
        Given::with(())
            .given_no_previous_events()
            .when(CampaignCommand::CreateCampaign(new))
            .then_expect_error(CampaignError::Blank { field: "language" });
    }

    #[test]
    fn a_blank_recipient_is_refused() {
        let mut new = new_campaign(1);
        new.recipients.push(" ".into());
        Given::with(())
            .given_no_previous_events()
            .when(CampaignCommand::CreateCampaign(new))
            .then_expect_error(CampaignError::Blank { field: "recipient" });
    }

    #[test]
    fn a_campaign_without_recipients_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(CampaignCommand::CreateCampaign(new_campaign(0)))
            .then_expect_error(CampaignError::NoRecipients);
    }

    #[test]
    fn a_campaign_with_more_than_the_maximum_of_recipients_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(CampaignCommand::CreateCampaign(new_campaign(MAX_RECIPIENTS + 1)))
            .then_expect_error(CampaignError::TooManyRecipients {
                count: MAX_RECIPIENTS + 1,
                max: MAX_RECIPIENTS,
            });
    }

    // --- ScheduleCampaign ---

    #[test]
    fn scheduling_a_priced_campaign_records_the_reservation_it_needs() {
        Given::with(())
            .given(vec![created(3)])
            .when(CampaignCommand::ScheduleCampaign {
                start_at: at(10),
                unit_price: 30,
                reservation: Some(reservation_reference(ID, 1)),
                at: at(1),
            })
            .then_expect_events(vec![scheduled(3, 30)]);
    }

    #[test]
    fn a_free_campaign_is_scheduled_without_a_reservation() {
        Given::with(())
            .given(vec![created(3)])
            .when(CampaignCommand::ScheduleCampaign {
                start_at: at(10),
                unit_price: 0,
                reservation: Some(reservation_reference(ID, 1)),
                at: at(1),
            })
            .then_expect_events(vec![scheduled(3, 0)]);
    }

    #[test]
    fn scheduling_the_same_way_again_changes_nothing() {
        Given::with(())
            .given(vec![created(3), scheduled(3, 30)])
            .when(CampaignCommand::ScheduleCampaign {
                start_at: at(10),
                unit_price: 30,
                reservation: Some(reservation_reference(ID, 1)),
                at: at(2),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn scheduling_a_campaign_that_is_not_a_draft_is_refused() {
        Given::with(())
            .given(vec![created(3), scheduled(3, 30)])
            .when(CampaignCommand::ScheduleCampaign {
                start_at: at(20),
                unit_price: 30,
                reservation: Some(reservation_reference(ID, 1)),
                at: at(2),
            })
            .then_expect_error(CampaignError::CampaignNotDraft { status: "scheduled" });
    }

    #[test]
    fn a_priced_campaign_without_its_reservation_is_refused() {
        Given::with(())
            .given(vec![created(3)])
            .when(CampaignCommand::ScheduleCampaign {
                start_at: at(10),
                unit_price: 30,
                reservation: None,
                at: at(1),
            })
            .then_expect_error(CampaignError::ReservationRequired);
    }

    #[test]
    fn a_negative_price_is_refused() {
        Given::with(())
            .given(vec![created(3)])
            .when(CampaignCommand::ScheduleCampaign {
                start_at: at(10),
                unit_price: -1,
                reservation: Some(reservation_reference(ID, 1)),
                at: at(1),
            })
            .then_expect_error(CampaignError::NegativePrice { unit_price: -1 });
    }

    #[test]
    fn a_reservation_that_overflows_is_refused() {
        Given::with(())
            .given(vec![created(3)])
            .when(CampaignCommand::ScheduleCampaign {
                start_at: at(10),
                unit_price: i64::MAX / 2,
                reservation: Some(reservation_reference(ID, 1)),
                at: at(1),
            })
            .then_expect_error(CampaignError::AmountTooLarge);
    }

    #[test]
    fn every_command_on_a_campaign_never_created_is_refused() {
        let (who, when) = by(1);
        for command in [
            CampaignCommand::ScheduleCampaign {
                start_at: at(10),
                unit_price: 1,
                reservation: Some(reservation_reference(ID, 1)),
                at: at(1),
            },
            CampaignCommand::StartCampaign { at: at(1) },
            CampaignCommand::RunBatch { size: 1, at: at(1) },
            CampaignCommand::MarkBatchDispatched { batch: 1, at: at(1) },
            outcome(1, RecipientOutcome::Sent, 1),
            CampaignCommand::PauseCampaign {
                by: who.clone(),
                at: when,
            },
            CampaignCommand::ResumeCampaign {
                by: who.clone(),
                at: when,
            },
            CampaignCommand::CancelCampaign {
                by: who.clone(),
                at: when,
            },
        ] {
            Given::with(())
                .given_no_previous_events()
                .when(command)
                .then_expect_error(CampaignError::UnknownCampaign);
        }
    }

    // --- StartCampaign ---

    #[test]
    fn a_scheduled_campaign_starts_at_its_start_time() {
        Given::with(())
            .given(vec![created(3), scheduled(3, 30)])
            .when(CampaignCommand::StartCampaign { at: at(10) })
            .then_expect_events(vec![started(3)]);
    }

    #[test]
    fn starting_before_the_start_time_is_refused() {
        Given::with(())
            .given(vec![created(3), scheduled(3, 30)])
            .when(CampaignCommand::StartCampaign { at: at(9) })
            .then_expect_error(CampaignError::NotDueYet { start_at: at(10) });
    }

    #[test]
    fn starting_a_draft_is_refused() {
        Given::with(())
            .given(vec![created(3)])
            .when(CampaignCommand::StartCampaign { at: at(10) })
            .then_expect_error(CampaignError::CampaignNotScheduled { status: "draft" });
    }

    #[test]
    fn starting_a_running_campaign_again_changes_nothing() {
        Given::with(())
            .given(running())
            .when(CampaignCommand::StartCampaign { at: at(12) })
            .then_expect_events(vec![]);
    }

    // --- RunBatch ---

    #[test]
    fn a_batch_queues_the_next_recipients_and_charges_them_from_the_reservation() {
        let c = counts(3, |c| {
            c.pending = 1;
            c.queued = 2;
            c.charged = 60;
        });
        Given::with(())
            .given(running())
            .when(CampaignCommand::RunBatch { size: 2, at: at(11) })
            .then_expect_events(vec![batch_started(1, 1, 2, 30, c)]);
    }

    #[test]
    fn the_last_batch_takes_what_is_left() {
        let c = counts(3, |c| {
            c.pending = 0;
            c.queued = 3;
            c.charged = 90;
        });
        let mut later = batch_started(2, 3, 1, 30, c);
        if let CampaignEvent::CampaignBatchStarted { at: t, .. } = &mut later {
            *t = at(12);
        }
        Given::with(())
            .given(first_batch_out())
            .when(CampaignCommand::RunBatch { size: 5, at: at(12) })
            .then_expect_events(vec![later]);
    }

    #[test]
    fn a_free_campaigns_batch_charges_nothing_and_captures_nothing() {
        let c = counts(3, |c| {
            c.pending = 2;
            c.queued = 1;
        });
        Given::with(())
            .given(vec![created(3), scheduled(3, 0), started(3)])
            .when(CampaignCommand::RunBatch { size: 1, at: at(11) })
            .then_expect_events(vec![batch_started(1, 1, 1, 0, c)]);
    }

    #[test]
    fn a_batch_of_a_campaign_that_is_not_running_is_refused() {
        Given::with(())
            .given(vec![created(3), scheduled(3, 30)])
            .when(CampaignCommand::RunBatch { size: 2, at: at(11) })
            .then_expect_error(CampaignError::CampaignNotRunning { status: "scheduled" });
    }

    #[test]
    fn a_batch_of_no_recipients_is_refused() {
        Given::with(())
            .given(running())
            .when(CampaignCommand::RunBatch { size: 0, at: at(11) })
            .then_expect_error(CampaignError::InvalidBatchSize);
    }

    #[test]
    fn a_batch_before_the_previous_one_was_dispatched_is_refused() {
        let mut events = first_batch_out();
        events.pop();
        Given::with(())
            .given(events)
            .when(CampaignCommand::RunBatch { size: 1, at: at(12) })
            .then_expect_error(CampaignError::BatchInFlight { batch: 1 });
    }

    #[test]
    fn a_batch_when_every_recipient_was_run_is_refused() {
        let mut events = first_batch_out();
        let c = counts(3, |c| {
            c.pending = 0;
            c.queued = 3;
            c.charged = 90;
        });
        events.push(batch_started(2, 3, 1, 30, c));
        events.push(CampaignEvent::CampaignBatchDispatched {
            batch: 2,
            counts: c,
            at: at(12),
        });
        Given::with(())
            .given(events)
            .when(CampaignCommand::RunBatch { size: 1, at: at(13) })
            .then_expect_error(CampaignError::NothingPending);
    }

    // --- MarkBatchDispatched ---

    #[test]
    fn a_batch_is_marked_dispatched_once() {
        let mut events = first_batch_out();
        let dispatched = events.pop().expect("dispatched");
        Given::with(())
            .given(events)
            .when(CampaignCommand::MarkBatchDispatched { batch: 1, at: at(11) })
            .then_expect_events(vec![dispatched]);
        Given::with(())
            .given(first_batch_out())
            .when(CampaignCommand::MarkBatchDispatched { batch: 1, at: at(12) })
            .then_expect_events(vec![]);
    }

    #[test]
    fn dispatching_a_batch_never_started_is_refused() {
        Given::with(())
            .given(first_batch_out())
            .when(CampaignCommand::MarkBatchDispatched { batch: 2, at: at(12) })
            .then_expect_error(CampaignError::UnknownBatch { batch: 2 });
        Given::with(())
            .given(first_batch_out())
            .when(CampaignCommand::MarkBatchDispatched { batch: 0, at: at(12) })
            .then_expect_error(CampaignError::UnknownBatch { batch: 0 });
    }

    // --- RecordRecipientOutcome ---

    #[test]
    fn a_sent_message_moves_its_recipient_to_sent() {
        let c = counts(3, |c| {
            c.pending = 1;
            c.queued = 1;
            c.sent = 1;
            c.charged = 60;
        });
        Given::with(())
            .given(first_batch_out())
            .when(outcome(1, RecipientOutcome::Sent, 12))
            .then_expect_events(vec![CampaignEvent::CampaignRecipientSent {
                recipient: ct(1),
                counts: c,
                at: at(12),
            }]);
    }

    #[test]
    fn a_failed_recipient_is_owed_a_refund_of_the_unit_price_from_its_batch() {
        let c = counts(3, |c| {
            c.pending = 1;
            c.queued = 1;
            c.failed = 1;
            c.charged = 60;
            c.refunded = 30;
        });
        Given::with(())
            .given(first_batch_out())
            .when(outcome(2, failed("131026 undeliverable"), 12))
            .then_expect_events(vec![CampaignEvent::CampaignRecipientFailed {
                recipient: ct(2),
                batch: 1,
                reason: "131026 undeliverable".into(),
                refund: Some(RefundDue {
                    reference: refund_reference(ID, &ct(2)),
                    capture: capture_reference(ID, 1),
                    amount: 30,
                }),
                counts: c,
                at: at(12),
            }]);
    }

    #[test]
    fn late_repeated_and_contradicting_reports_change_nothing() {
        let mut events = first_batch_out();
        let c = counts(3, |c| {
            c.pending = 1;
            c.queued = 1;
            c.read = 1;
            c.charged = 60;
        });
        events.push(CampaignEvent::CampaignRecipientRead {
            recipient: ct(1),
            counts: c,
            at: at(13),
        });
        for report in [
            RecipientOutcome::Sent,
            RecipientOutcome::Delivered,
            RecipientOutcome::Read,
            failed("too late"),
        ] {
            Given::with(())
                .given(events.clone())
                .when(outcome(1, report, 14))
                .then_expect_events(vec![]);
        }
    }

    #[test]
    fn the_last_final_outcome_completes_the_campaign() {
        let mut events = first_batch_out();
        let mut c = counts(3, |c| {
            c.pending = 0;
            c.queued = 3;
            c.charged = 90;
        });
        events.push(batch_started(2, 3, 1, 30, c));
        for n in [1, 2] {
            c = c.moved(RecipientStatus::Queued, RecipientStatus::Sent, 1);
            events.push(CampaignEvent::CampaignRecipientSent {
                recipient: ct(n),
                counts: c,
                at: at(13),
            });
        }
        let done = c.moved(RecipientStatus::Queued, RecipientStatus::Delivered, 1);
        Given::with(())
            .given(events)
            .when(outcome(3, RecipientOutcome::Delivered, 14))
            .then_expect_events(vec![
                CampaignEvent::CampaignRecipientDelivered {
                    recipient: ct(3),
                    counts: done,
                    at: at(14),
                },
                CampaignEvent::CampaignCompleted {
                    release: None,
                    released: 0,
                    counts: done,
                    at: at(14),
                },
            ]);
    }

    #[test]
    fn an_outcome_for_someone_not_in_the_campaign_is_refused() {
        Given::with(())
            .given(first_batch_out())
            .when(outcome(9, RecipientOutcome::Sent, 12))
            .then_expect_error(CampaignError::UnknownRecipient { recipient: ct(9) });
    }

    #[test]
    fn an_outcome_for_a_recipient_not_run_yet_is_refused() {
        Given::with(())
            .given(first_batch_out())
            .when(outcome(3, RecipientOutcome::Sent, 12))
            .then_expect_error(CampaignError::RecipientNotRun { recipient: ct(3) });
    }

    #[test]
    fn a_failure_without_a_reason_is_refused() {
        Given::with(())
            .given(first_batch_out())
            .when(outcome(1, failed(" "), 12))
            .then_expect_error(CampaignError::Blank { field: "reason" });
    }

    // --- PauseCampaign / ResumeCampaign ---

    #[test]
    fn a_running_campaign_is_paused_and_resumed_to_running() {
        let paused = CampaignEvent::CampaignPaused {
            by: "u1".into(),
            counts: RecipientCounts::new(3),
            at: at(11),
        };
        Given::with(())
            .given(running())
            .when(CampaignCommand::PauseCampaign {
                by: "u1".into(),
                at: at(11),
            })
            .then_expect_events(vec![paused.clone()]);
        let mut events = running();
        events.push(paused);
        Given::with(())
            .given(events)
            .when(CampaignCommand::ResumeCampaign {
                by: "u1".into(),
                at: at(12),
            })
            .then_expect_events(vec![CampaignEvent::CampaignResumed {
                by: "u1".into(),
                status: CampaignStatus::Running,
                counts: RecipientCounts::new(3),
                at: at(12),
            }]);
    }

    #[test]
    fn a_campaign_paused_before_it_started_resumes_to_scheduled() {
        let paused = CampaignEvent::CampaignPaused {
            by: "u1".into(),
            counts: RecipientCounts::new(3),
            at: at(2),
        };
        Given::with(())
            .given(vec![created(3), scheduled(3, 30), paused])
            .when(CampaignCommand::ResumeCampaign {
                by: "u1".into(),
                at: at(3),
            })
            .then_expect_events(vec![CampaignEvent::CampaignResumed {
                by: "u1".into(),
                status: CampaignStatus::Scheduled,
                counts: RecipientCounts::new(3),
                at: at(3),
            }]);
    }

    #[test]
    fn a_paused_campaign_runs_no_batch() {
        let paused = CampaignEvent::CampaignPaused {
            by: "u1".into(),
            counts: RecipientCounts::new(3),
            at: at(11),
        };
        let mut events = running();
        events.push(paused);
        Given::with(())
            .given(events)
            .when(CampaignCommand::RunBatch { size: 1, at: at(12) })
            .then_expect_error(CampaignError::CampaignNotRunning { status: "paused" });
    }

    #[test]
    fn pausing_twice_and_resuming_a_running_campaign_change_nothing() {
        let mut events = running();
        events.push(CampaignEvent::CampaignPaused {
            by: "u1".into(),
            counts: RecipientCounts::new(3),
            at: at(11),
        });
        Given::with(())
            .given(events)
            .when(CampaignCommand::PauseCampaign {
                by: "u1".into(),
                at: at(12),
            })
            .then_expect_events(vec![]);
        Given::with(())
            .given(running())
            .when(CampaignCommand::ResumeCampaign {
                by: "u1".into(),
                at: at(12),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn pausing_or_resuming_a_draft_is_refused() {
        for command in [
            CampaignCommand::PauseCampaign {
                by: "u1".into(),
                at: at(1),
            },
            CampaignCommand::ResumeCampaign {
                by: "u1".into(),
                at: at(1),
            },
        ] {
            Given::with(())
                .given(vec![created(3)])
                .when(command)
                .then_expect_error(CampaignError::CampaignNotScheduled { status: "draft" });
        }
    }

    // --- CancelCampaign ---

    fn cancelled_after_first_batch() -> CampaignEvent {
        CampaignEvent::CampaignCancelled {
            by: "u1".into(),
            cancelled: 1,
            release: Some(release_reference(ID)),
            released: 30,
            counts: counts(3, |c| {
                c.pending = 0;
                c.queued = 2;
                c.cancelled = 1;
                c.charged = 60;
            }),
            at: at(12),
        }
    }

    #[test]
    fn cancelling_cancels_the_pending_recipients_and_releases_the_rest_of_the_reservation() {
        Given::with(())
            .given(first_batch_out())
            .when(CampaignCommand::CancelCampaign {
                by: "u1".into(),
                at: at(12),
            })
            .then_expect_events(vec![cancelled_after_first_batch()]);
    }

    #[test]
    fn cancelling_a_draft_releases_nothing() {
        Given::with(())
            .given(vec![created(2)])
            .when(CampaignCommand::CancelCampaign {
                by: "u1".into(),
                at: at(1),
            })
            .then_expect_events(vec![CampaignEvent::CampaignCancelled {
                by: "u1".into(),
                cancelled: 2,
                release: None,
                released: 0,
                counts: counts(2, |c| {
                    c.pending = 0;
                    c.cancelled = 2;
                }),
                at: at(1),
            }]);
    }

    #[test]
    fn a_queued_recipient_of_a_cancelled_campaign_still_gets_its_outcome_and_refund() {
        let mut events = first_batch_out();
        events.push(cancelled_after_first_batch());
        let mut state = Campaign::default();
        for e in events.clone() {
            state.apply(e);
        }
        let produced = state.decide(outcome(1, failed("rejected"), 13)).expect("accepted");
        assert_eq!(produced.len(), 1, "a cancelled campaign does not complete");
        assert!(matches!(
            &produced[0],
            CampaignEvent::CampaignRecipientFailed { refund: Some(r), .. } if r.amount == 30
        ));
        Given::with(())
            .given(events)
            .when(CampaignCommand::CancelCampaign {
                by: "u1".into(),
                at: at(14),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_completed_campaign_cannot_be_cancelled_paused_or_resumed() {
        let done = counts(1, |c| {
            c.pending = 0;
            c.sent = 1;
            c.charged = 30;
        });
        let events = vec![
            created(1),
            scheduled(1, 30),
            started(1),
            batch_started(
                1,
                1,
                1,
                30,
                done.moved(RecipientStatus::Sent, RecipientStatus::Queued, 1),
            ),
            CampaignEvent::CampaignRecipientSent {
                recipient: ct(1),
                counts: done,
                at: at(12),
            },
            CampaignEvent::CampaignCompleted {
                release: None,
                released: 0,
                counts: done,
                at: at(12),
            },
        ];
        let (who, when) = by(13);
        for command in [
            CampaignCommand::CancelCampaign {
                by: who.clone(),
                at: when,
            },
            CampaignCommand::PauseCampaign {
                by: who.clone(),
                at: when,
            },
            CampaignCommand::ResumeCampaign {
                by: who.clone(),
                at: when,
            },
            CampaignCommand::StartCampaign { at: when },
        ] {
            Given::with(())
                .given(events.clone())
                .when(command)
                .then_expect_error(CampaignError::CampaignFinished { status: "completed" });
        }
    }

    #[test]
    fn the_state_answers_what_the_write_side_needs() {
        let mut state = Campaign::default();
        assert_eq!(state.required_reservation(10), None);
        for e in first_batch_out() {
            state.apply(e);
        }
        assert_eq!(state.campaign_id(), Some(ID));
        assert_eq!(state.status(), CampaignStatus::Running);
        assert!(state.has_started());
        assert_eq!(state.reservation(), Some((reservation_reference(ID, 1).as_str(), 90)));
        assert_eq!(state.required_reservation(30), Some(90));
        assert_eq!(state.batch_in_flight(), None);
        assert_eq!(state.captures(), vec![(1, Some(capture_reference(ID, 1).as_str()), 60)]);
        assert_eq!(state.recipient_status(&ct(1)), Some(RecipientStatus::Queued));
        assert_eq!(state.recipient_status(&ct(3)), Some(RecipientStatus::Pending));
        assert_eq!(state.release_due(), None);
        assert_eq!(state.definition().map(|d| d.recipients.len()), Some(3));
        assert_eq!(state.start_at(), Some(at(10)));
        assert_eq!(message_key(ID, &ct(1)), format!("campaign:{ID}:{}", ct(1)));
        state.apply(cancelled_after_first_batch());
        assert_eq!(state.release_due(), Some((release_reference(ID), 30)));
    }

    #[test]
    fn the_state_survives_a_snapshot_round_trip() {
        let mut state = Campaign::default();
        for e in first_batch_out() {
            state.apply(e);
        }
        let json = serde_json::to_value(&state).expect("serializes");
        let back: Campaign = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, state);
    }

    #[test]
    fn every_event_type_is_listed_and_versioned() {
        let c = RecipientCounts::new(1);
        let events = [
            created(1),
            scheduled(1, 1),
            started(1),
            batch_started(1, 1, 1, 1, c),
            CampaignEvent::CampaignBatchDispatched {
                batch: 1,
                counts: c,
                at: at(1),
            },
            CampaignEvent::CampaignRecipientSent {
                recipient: ct(1),
                counts: c,
                at: at(1),
            },
            CampaignEvent::CampaignRecipientDelivered {
                recipient: ct(1),
                counts: c,
                at: at(1),
            },
            CampaignEvent::CampaignRecipientRead {
                recipient: ct(1),
                counts: c,
                at: at(1),
            },
            CampaignEvent::CampaignRecipientFailed {
                recipient: ct(1),
                batch: 1,
                reason: "x".into(),
                refund: None,
                counts: c,
                at: at(1),
            },
            CampaignEvent::CampaignPaused {
                by: "u".into(),
                counts: c,
                at: at(1),
            },
            CampaignEvent::CampaignResumed {
                by: "u".into(),
                status: CampaignStatus::Running,
                counts: c,
                at: at(1),
            },
            CampaignEvent::CampaignCancelled {
                by: "u".into(),
                cancelled: 0,
                release: None,
                released: 0,
                counts: c,
                at: at(1),
            },
            CampaignEvent::CampaignCompleted {
                release: None,
                released: 0,
                counts: c,
                at: at(1),
            },
        ];
        let types: Vec<String> = events.iter().map(DomainEvent::event_type).collect();
        assert_eq!(types, CampaignEvent::TYPES);
        assert!(events.iter().all(|e| e.event_version() == "1.0" && e.counts() == c));
    }

    #[test]
    fn error_codes_are_distinct_screaming_snake_case() {
        let errors = [
            CampaignError::Blank { field: "x" },
            CampaignError::InvalidCampaignId {
                campaign_id: String::new(),
            },
            CampaignError::NoRecipients,
            CampaignError::TooManyRecipients { count: 0, max: 0 },
            CampaignError::CampaignAlreadyExists {
                campaign_id: String::new(),
            },
            CampaignError::UnknownCampaign,
            CampaignError::NegativePrice { unit_price: 0 },
            CampaignError::ReservationRequired,
            CampaignError::AmountTooLarge,
            CampaignError::CampaignNotDraft { status: "x" },
            CampaignError::CampaignNotScheduled { status: "x" },
            CampaignError::NotDueYet { start_at: at(0) },
            CampaignError::CampaignNotRunning { status: "x" },
            CampaignError::InvalidBatchSize,
            CampaignError::BatchInFlight { batch: 0 },
            CampaignError::NothingPending,
            CampaignError::UnknownBatch { batch: 0 },
            CampaignError::UnknownRecipient {
                recipient: String::new(),
            },
            CampaignError::RecipientNotRun {
                recipient: String::new(),
            },
            CampaignError::CampaignFinished { status: "x" },
        ];
        let codes: std::collections::BTreeSet<&str> = errors.iter().map(CampaignError::code).collect();
        assert_eq!(codes.len(), errors.len());
        assert!(codes
            .iter()
            .all(|c| c.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')));
    }

    // --- Properties over random command sequences ---

    #[derive(Debug, Clone)]
    enum Op {
        Create(usize),
        Schedule(i64),
        Start,
        RunBatch(u32),
        Dispatch(u32),
        Outcome(usize, u8),
        Pause,
        Resume,
        Cancel,
    }

    fn any_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            1 => (1usize..6).prop_map(Op::Create),
            1 => (0i64..4).prop_map(|p| Op::Schedule(p * 10)),
            2 => Just(Op::Start),
            4 => (0u32..4).prop_map(Op::RunBatch),
            3 => (0u32..5).prop_map(Op::Dispatch),
            10 => (1usize..7, 0u8..4).prop_map(|(r, k)| Op::Outcome(r, k)),
            1 => Just(Op::Pause),
            1 => Just(Op::Resume),
            1 => Just(Op::Cancel),
        ]
    }

    fn command(op: &Op, now: DateTime<Utc>) -> CampaignCommand {
        let who = "u1".to_string();
        match op {
            Op::Create(n) => CampaignCommand::CreateCampaign(new_campaign(*n)),
            Op::Schedule(price) => CampaignCommand::ScheduleCampaign {
                start_at: at(10),
                unit_price: *price,
                reservation: Some(reservation_reference(ID, 1)),
                at: now,
            },
            Op::Start => CampaignCommand::StartCampaign { at: now },
            Op::RunBatch(size) => CampaignCommand::RunBatch { size: *size, at: now },
            Op::Dispatch(batch) => CampaignCommand::MarkBatchDispatched { batch: *batch, at: now },
            Op::Outcome(r, kind) => CampaignCommand::RecordRecipientOutcome {
                recipient: ct(*r),
                outcome: match kind {
                    0 => RecipientOutcome::Sent,
                    1 => RecipientOutcome::Delivered,
                    2 => RecipientOutcome::Read,
                    _ => failed("provider refused"),
                },
                at: now,
            },
            Op::Pause => CampaignCommand::PauseCampaign { by: who, at: now },
            Op::Resume => CampaignCommand::ResumeCampaign { by: who, at: now },
            Op::Cancel => CampaignCommand::CancelCampaign { by: who, at: now },
        }
    }

    /// Recounts recipients per status from the state's own per-recipient records.
    fn recount(state: &Campaign) -> RecipientCounts {
        let mut c = RecipientCounts {
            total: state.counts.total,
            ..RecipientCounts::default()
        };
        for r in state.recipients.values() {
            // Exactly one in the recipient's status (moving from an empty slot saturates).
            let one = RecipientCounts::default().moved(RecipientStatus::Pending, r.status, 1);
            c.pending += one.pending;
            c.queued += one.queued;
            c.sent += one.sent;
            c.delivered += one.delivered;
            c.read += one.read;
            c.failed += one.failed;
            c.cancelled += one.cancelled;
        }
        c.charged = state.counts.charged;
        c.refunded = state.counts.refunded;
        c
    }

    proptest! {
        #[test]
        fn counts_stay_consistent_and_each_recipient_is_charged_once_and_refunded_only_when_failed(
            ops in proptest::collection::vec(any_op(), 1..60)
        ) {
            let mut state = Campaign::default();
            let mut log: Vec<CampaignEvent> = Vec::new();
            for (i, op) in ops.iter().enumerate() {
                let now = at(i64::try_from(i).unwrap_or(0) + 5);
                let before = state.clone();
                let Ok(events) = state.decide(command(op, now)) else {
                    prop_assert_eq!(&state, &before);
                    continue;
                };
                for event in events {
                    state.apply(event.clone());
                    log.push(event);
                }
                let counts = state.counts();
                // Counts add up, and match the per-recipient records.
                prop_assert_eq!(counts.sum(), u64::from(counts.total));
                prop_assert_eq!(recount(&state), counts);
                if let Some(last) = log.last() {
                    prop_assert_eq!(last.counts(), counts);
                }
                // A recipient is charged at most once, refunded at most once and only when failed.
                let mut charged_times: BTreeMap<String, u32> = BTreeMap::new();
                let mut refunded_times: BTreeMap<String, u32> = BTreeMap::new();
                let (mut charged, mut refunded) = (0i64, 0i64);
                for event in &log {
                    match event {
                        CampaignEvent::CampaignBatchStarted { recipients, charged: c, unit_price, .. } => {
                            prop_assert_eq!(*c, unit_price * i64::try_from(recipients.len()).unwrap_or(0));
                            charged += c;
                            for r in recipients {
                                *charged_times.entry(r.clone()).or_default() += 1;
                            }
                        }
                        CampaignEvent::CampaignRecipientFailed {
                            recipient,
                            refund: Some(r),
                            ..
                        } => {
                            refunded += r.amount;
                            *refunded_times.entry(recipient.clone()).or_default() += 1;
                        }
                        _ => {}
                    }
                }
                prop_assert!(charged_times.values().all(|n| *n == 1));
                prop_assert!(refunded_times.values().all(|n| *n == 1));
                prop_assert!(refunded_times.keys().all(|r| state.recipient_status(r) == Some(RecipientStatus::Failed)));
                prop_assert_eq!((counts.charged, counts.refunded), (charged, refunded));
                // charged − refunded = unit price × recipients run and not failed.
                let run_ok = state
                    .recipients
                    .values()
                    .filter(|r| r.status.was_run() && r.status != RecipientStatus::Failed)
                    .count();
                prop_assert_eq!(charged - refunded, state.unit_price() * i64::try_from(run_ok).unwrap_or(0));
                // Never more charged than reserved; what is released is the rest.
                if let Some((_, reserved)) = state.reservation() {
                    prop_assert!(charged <= reserved);
                }
                for event in &log {
                    if let CampaignEvent::CampaignCancelled { released, counts, .. }
                        | CampaignEvent::CampaignCompleted { released, counts, .. } = event
                    {
                        let reserved = state.reservation().map_or(0, |(_, r)| r);
                        prop_assert_eq!(counts.charged + released, reserved);
                    }
                }
                // Completed exactly when every recipient is final (and it was not cancelled).
                if state.status() == CampaignStatus::Completed {
                    prop_assert!(counts.all_final());
                }
                if matches!(state.status(), CampaignStatus::Running | CampaignStatus::Paused) && state.has_started() {
                    prop_assert!(!counts.all_final());
                }
            }
        }
    }
}
