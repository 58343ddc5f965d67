//! Value types of service requests: priorities with their SLA, the status machine, ticket ids.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// How urgent a request is; each priority has a service-level time to resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Urgent,
    High,
    Normal,
    Low,
}

impl Priority {
    /// Every priority, most urgent first.
    pub const ALL: [Self; 4] = [Self::Urgent, Self::High, Self::Normal, Self::Low];

    /// The priority as stored in read models and shown in GraphQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Urgent => "urgent",
            Self::High => "high",
            Self::Normal => "normal",
            Self::Low => "low",
        }
    }

    /// From its stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// The time to resolution promised: urgent 4 h, high 8 h, normal 24 h, low 72 h.
    pub fn sla(self) -> Duration {
        match self {
            Self::Urgent => Duration::hours(4),
            Self::High => Duration::hours(8),
            Self::Normal => Duration::hours(24),
            Self::Low => Duration::hours(72),
        }
    }
}

/// When a request opened at `opened_at` with `priority` is due: `opened_at + priority.sla()`.
pub fn sla_due_at(opened_at: DateTime<Utc>, priority: Priority) -> DateTime<Utc> {
    // The SLA is at most three days; saturate rather than panic at the end of time.
    opened_at
        .checked_add_signed(priority.sla())
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The local stream id of ticket `number`: `sr_<number>`.
pub fn service_request_local_id(number: u64) -> String {
    format!("sr_{number}")
}

/// The ticket as people say it: `SR-000042`.
pub fn ticket_label(number: u64) -> String {
    format!("SR-{number:06}")
}

/// A request's status: `open → assigned → resolved → closed` (`open → resolved` too).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ServiceStatus {
    #[default]
    Open,
    Assigned,
    Resolved,
    Closed,
}

impl ServiceStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 4] = [Self::Open, Self::Assigned, Self::Resolved, Self::Closed];

    /// The status as stored in read models and shown in GraphQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Assigned => "assigned",
            Self::Resolved => "resolved",
            Self::Closed => "closed",
        }
    }

    /// From its stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether the request is still being worked (its SLA still runs).
    pub fn is_pending(self) -> bool {
        matches!(self, Self::Open | Self::Assigned)
    }

    /// The allowed moves: `open → assigned`, `open | assigned → resolved`, `resolved → closed`.
    pub fn may_move_to(self, next: Self) -> bool {
        matches!(
            (self, next),
            (Self::Open, Self::Assigned)
                | (Self::Open, Self::Resolved)
                | (Self::Assigned, Self::Resolved)
                | (Self::Resolved, Self::Closed)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_sla_due_time_is_the_opening_time_plus_the_priority_sla() {
        let opened = Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).single().unwrap();
        assert_eq!(sla_due_at(opened, Priority::Urgent), opened + Duration::hours(4));
        assert_eq!(sla_due_at(opened, Priority::Low), opened + Duration::hours(72));
        for p in Priority::ALL {
            assert_eq!(Priority::parse(p.as_str()), Some(p));
        }
        assert!(Priority::Urgent.sla() < Priority::High.sla() && Priority::Normal.sla() < Priority::Low.sla());
    }

    #[test]
    fn tickets_read_as_padded_numbers() {
        assert_eq!(ticket_label(42), "SR-000042");
        assert_eq!(service_request_local_id(42), "sr_42");
    }

    #[test]
    fn statuses_only_move_forward_and_closed_is_final() {
        for from in ServiceStatus::ALL {
            assert_eq!(ServiceStatus::parse(from.as_str()), Some(from));
            for to in ServiceStatus::ALL {
                if from.may_move_to(to) {
                    assert!(to > from);
                }
            }
            assert!(!ServiceStatus::Closed.may_move_to(from));
        }
    }
}
