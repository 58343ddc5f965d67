//! The `Campaign` aggregate: a WhatsApp template broadcast to a segment of contacts, paid for
//! from a wallet reservation (DOMAIN.md, "Campaigns").
//!
//! Stream id: `<tenant>:campaign_<id>` ([`campaign_local_id`]).
//!
//! Rules held here:
//! - a campaign is created once with its recipients (contact ids, keyed hashes, resolved by the
//!   caller; repeats dropped, at least one, at most [`MAX_RECIPIENTS`]) and a template by name
//!   and language with its variables; the same request again changes nothing, another one under
//!   the same id is refused;
//! - `draft → scheduled → running → completed`; `paused` from scheduled or running and back by
//!   resuming; `cancelled` from anything not finished; completed and cancelled are final;
//! - scheduling records the reservation the campaign needs: recipients × unit price, made on
//!   the wallet by the write side first under a [`reservation_reference`] (a priced campaign
//!   without one is refused; a free one needs none), so a campaign the wallet cannot pay for is
//!   never scheduled;
//! - a campaign starts at or after its start time and runs recipients in batches, in the
//!   creating order, one batch at a time (the previous one must be dispatched); each batch is
//!   charged recipients × unit price, captured under [`capture_reference`], so a recipient is
//!   charged at most once;
//! - recipients move `pending → queued → sent → delivered → read` (late or repeated reports
//!   change nothing), or to `failed` from queued or sent, which is terminal and owes the
//!   recipient a refund of the unit price from its batch's capture ([`RefundDue`], under
//!   [`refund_reference`]); so charged − refunded = unit price × recipients run and not failed;
//! - the campaign completes when every recipient has a final status (sent or beyond, failed);
//! - cancelling cancels the pending recipients (never charged) and releases what is left of the
//!   reservation ([`release_reference`]); messages already queued still report outcomes, and a
//!   failure among them is still refunded;
//! - every event carries the [`RecipientCounts`] after it: recipients per status (summing to
//!   the total), charged and refunded.

mod aggregate;
mod commands;
mod error;
mod events;
mod values;

pub use aggregate::Campaign;
pub use commands::{CampaignCommand, NewCampaign};
pub use error::CampaignError;
pub use events::CampaignEvent;
pub use values::{
    campaign_local_id, capture_reference, message_key, refund_reference, release_reference, reservation_reference,
    valid_campaign_id, CampaignStatus, RecipientCounts, RecipientOutcome, RecipientStatus, RefundDue, MAX_RECIPIENTS,
    MESSAGE_KEY_PREFIX,
};
