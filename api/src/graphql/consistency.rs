//! Read-your-writes: a query may ask to be answered only once the read models it reads have
//! reached a log cursor (the `cursor` of a mutation's [`super::receipt::Receipt`]).
//!
//! The requirement comes with the request, in either form:
//!
//! - HTTP headers: `Chronicle-At-Least: <cursor>` and optionally `Chronicle-Timeout-Ms: <ms>`;
//! - the request's `extensions`: `{"consistency": {"atLeast": "<cursor>", "timeoutMs": 2000}}`
//!   (what GraphQL clients can send over HTTP and WebSocket alike; it wins over the headers).
//!
//! The timeout defaults to [`DEFAULT_TIMEOUT_MS`] and may be 1 to [`MAX_TIMEOUT_MS`]. A cursor
//! that does not parse is `BAD_CURSOR`, a timeout out of range `BAD_TIMEOUT`, both before
//! anything runs. The executor ([`super::limits::Limited`]) finds the query's root fields,
//! looks up the projectors each reads ([`read_models`]) and waits until every one of them has
//! checkpointed at or past the cursor; past the timeout the query is answered with
//! `CONSISTENCY_TIMEOUT` naming the projectors still behind. Mutations and subscriptions do
//! not wait.
//!
//! A projector's checkpoint moves past the events of other types too when it catches up (see
//! `chronicle_projections::runtime`), so a projector that reads none of the written events
//! still reaches the cursor at its next batch.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql::{Request, Value as ConstValue};
use axum::http::HeaderMap;
use chronicle_projections::log::Cursor;
use sqlx::PgPool;

use crate::error::ApiError;

/// The header carrying the cursor to wait for.
pub const AT_LEAST_HEADER: &str = "chronicle-at-least";
/// The header carrying the wait's limit in milliseconds.
pub const TIMEOUT_HEADER: &str = "chronicle-timeout-ms";
/// The wait's limit when the request gives none.
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
/// The longest wait a request may ask for.
pub const MAX_TIMEOUT_MS: u64 = 60_000;

/// A request's consistency requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Consistency {
    /// Answer once the read models have applied every event up to this cursor.
    pub at_least: Cursor,
    /// Give up after this long, with `CONSISTENCY_TIMEOUT`.
    pub timeout: Duration,
}

impl Consistency {
    /// The requirement of `at_least` and `timeout_ms` (the default when absent).
    pub fn parse(at_least: &str, timeout_ms: Option<i64>) -> Result<Self, ApiError> {
        let at_least = at_least.trim().parse::<Cursor>().map_err(|e| {
            ApiError::bad_request(
                "BAD_CURSOR",
                format!("atLeast must be a cursor from a mutation's receipt: {e}"),
            )
        })?;
        let timeout_ms = match timeout_ms {
            None => DEFAULT_TIMEOUT_MS,
            Some(ms) => u64::try_from(ms)
                .ok()
                .filter(|ms| (1..=MAX_TIMEOUT_MS).contains(ms))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "BAD_TIMEOUT",
                        format!("timeoutMs must be 1 to {MAX_TIMEOUT_MS} milliseconds, not {ms}"),
                    )
                })?,
        };
        Ok(Self {
            at_least,
            timeout: Duration::from_millis(timeout_ms),
        })
    }

    /// As the request's `extensions.consistency` value.
    pub fn to_value(self) -> ConstValue {
        let mut fields = async_graphql::indexmap::IndexMap::new();
        fields.insert(
            async_graphql::Name::new("atLeast"),
            ConstValue::String(self.at_least.to_string()),
        );
        fields.insert(
            async_graphql::Name::new("timeoutMs"),
            ConstValue::from(u64::try_from(self.timeout.as_millis()).unwrap_or(MAX_TIMEOUT_MS)),
        );
        ConstValue::Object(fields)
    }

    /// The requirement in the HTTP headers, if any.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, ApiError> {
        let text = |name: &str| -> Result<Option<&str>, ApiError> {
            headers
                .get(name)
                .map(|v| {
                    v.to_str()
                        .map_err(|_| ApiError::bad_request("BAD_CURSOR", format!("the {name} header is not text")))
                })
                .transpose()
        };
        let Some(at_least) = text(AT_LEAST_HEADER)? else {
            return Ok(None);
        };
        let timeout = text(TIMEOUT_HEADER)?
            .map(|t| {
                t.trim().parse::<i64>().map_err(|_| {
                    ApiError::bad_request(
                        "BAD_TIMEOUT",
                        format!("the {TIMEOUT_HEADER} header must be a whole number of milliseconds"),
                    )
                })
            })
            .transpose()?;
        Self::parse(at_least, timeout).map(Some)
    }

    /// The requirement in the request's `extensions.consistency`, if any.
    pub fn from_extensions(request: &Request) -> Result<Option<Self>, ApiError> {
        let Some(value) = request.extensions.0.get("consistency") else {
            return Ok(None);
        };
        let ConstValue::Object(fields) = value else {
            return Err(ApiError::bad_request(
                "BAD_CURSOR",
                "extensions.consistency must be an object: {\"atLeast\": \"<cursor>\", \"timeoutMs\": <ms>}",
            ));
        };
        let at_least = match fields.get("atLeast") {
            Some(ConstValue::String(cursor)) => cursor.as_str(),
            _ => {
                return Err(ApiError::bad_request(
                    "BAD_CURSOR",
                    "extensions.consistency.atLeast must be a cursor (a string)",
                ))
            }
        };
        let timeout = match fields.get("timeoutMs") {
            None | Some(ConstValue::Null) => None,
            Some(ConstValue::Number(n)) => Some(n.as_i64().ok_or_else(|| {
                ApiError::bad_request("BAD_TIMEOUT", "extensions.consistency.timeoutMs must be a whole number")
            })?),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "BAD_TIMEOUT",
                    "extensions.consistency.timeoutMs must be a whole number",
                ))
            }
        };
        Self::parse(at_least, timeout).map(Some)
    }
}

/// Every projector of the server (`crate::app::projectors`), for a field not in the table.
pub const ALL_PROJECTORS: &[&str] = &[
    "conversations",
    "leads",
    "contacts",
    "templates",
    "calls",
    "call_follow_ups",
    "campaigns",
    "campaign_work",
    "outbox",
    "media",
    "messages",
    "agent_performance",
    "payments",
    "payment_requests",
    "installation_work",
    "orders",
    "installations",
    "payouts",
    "wallets",
    "wallet_work",
    "warranties",
    "service",
    "service_work",
    "customers",
];

const INSTALLATION: &[&str] = &[
    "orders",
    "installations",
    "payouts",
    "warranties",
    "service",
    "service_work",
    "installation_work",
];
const PAYMENTS: &[&str] = &["payments", "payment_requests", "orders", "wallets"];
const WALLETS: &[&str] = &["wallets", "wallet_work"];

/// The projectors whose read models a root query field reads (its nested fields included).
/// Fields that read the log itself (`callFollowUpRule`) or nothing (`viewer`) wait for none;
/// a field missing here waits for every projector ([`ALL_PROJECTORS`]).
pub fn read_models(field: &str) -> &'static [&'static str] {
    match field {
        // Read the log itself, or tables written with no projector between.
        "viewer" | "callFollowUpRule" | "__typename" | "__schema" | "__type" | "eventLog" | "eventTypes"
        | "apiKeys" | "webhooks" | "webhookDeliveries" | "paymentProviders" => &[],
        "agentPerformance" => &["agent_performance"],
        "calls" => &["calls"],
        "campaigns" | "campaign" => &["campaigns", "campaign_work"],
        "contacts" | "contact" => &["contacts", "conversations"],
        "templates" => &["templates"],
        "conversations" | "conversation" => &["conversations", "messages", "media", "contacts"],
        "leads" | "lead" | "leadFunnel" => &["leads", "contacts"],
        "media" => &["media"],
        "payments"
        | "unmatchedPayments"
        | "refusedPaymentCallbacks"
        | "paymentRequests"
        | "paymentRequest"
        | "payment" => PAYMENTS,
        "orders"
        | "order"
        | "installations"
        | "installation"
        | "technicianCalendar"
        | "installationCounts"
        | "payouts"
        | "warranties"
        | "warrantyClaims"
        | "maintenanceContracts"
        | "serviceRequests" => INSTALLATION,
        "customers" | "customer" => &["customers", "contacts", "orders", "installations", "service"],
        "wallet" | "wallets" | "walletLedger" | "usage" | "reservations" | "walletAlerts" | "priceList" => WALLETS,
        _ => ALL_PROJECTORS,
    }
}

/// The projectors the operation `operation_name` of `document` reads, if it is a query;
/// `None` for a mutation or subscription (which do not wait), or an operation not found (left
/// to the schema to refuse).
pub fn projectors_read(document: &ExecutableDocument, operation_name: Option<&str>) -> Option<BTreeSet<&'static str>> {
    let operation = match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), _) => op,
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name)?,
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next()?,
        (DocumentOperations::Multiple(_), None) => return None,
    };
    if operation.node.ty != OperationType::Query {
        return None;
    }
    let mut projectors = BTreeSet::new();
    let mut visited = BTreeSet::new();
    root_fields(
        document,
        &operation.node.selection_set.node,
        &mut projectors,
        &mut visited,
    );
    Some(projectors)
}

/// Adds the projectors of the root fields in `set`, looking through fragments (each once).
fn root_fields<'d>(
    document: &'d ExecutableDocument,
    set: &'d SelectionSet,
    projectors: &mut BTreeSet<&'static str>,
    visited: &mut BTreeSet<&'d str>,
) {
    for selection in &set.items {
        match &selection.node {
            Selection::Field(field) => projectors.extend(read_models(field.node.name.node.as_str())),
            Selection::InlineFragment(fragment) => {
                root_fields(document, &fragment.node.selection_set.node, projectors, visited)
            }
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                if visited.insert(name) {
                    if let Some(fragment) = document.fragments.get(&spread.node.fragment_name.node) {
                        root_fields(document, &fragment.node.selection_set.node, projectors, visited);
                    }
                }
            }
        }
    }
}

/// Waits until every projector in `projectors` has checkpointed at or past `at_least`, looking
/// again whenever a runner of this process commits a batch
/// (`chronicle_projections::runtime::progress`) and otherwise after a short, growing pause (2 ms
/// up to 25 ms: runners of other processes). `CONSISTENCY_TIMEOUT`, naming those
/// still behind, after `timeout`.
pub async fn wait_for(
    pool: &PgPool,
    projectors: &BTreeSet<&'static str>,
    at_least: Cursor,
    timeout: Duration,
) -> Result<(), ApiError> {
    if projectors.is_empty() || at_least == Cursor::START {
        return Ok(());
    }
    let names: Vec<&str> = projectors.iter().copied().collect();
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        // Listening before looking, so a batch committed meanwhile is not missed.
        let progressed = chronicle_projections::runtime::progress().notified();
        tokio::pin!(progressed);
        progressed.as_mut().enable();
        let reached: Vec<String> = sqlx::query_scalar(
            "SELECT projector FROM projector_checkpoints \
             WHERE projector = ANY($1) AND (last_tx_id, last_position) >= ($2::text::xid8, $3)",
        )
        .bind(&names)
        .bind(at_least.tx_id.to_string())
        .bind(at_least.position)
        .fetch_all(pool)
        .await?;
        if reached.len() >= names.len() {
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            let behind: Vec<&str> = names
                .iter()
                .copied()
                .filter(|n| !reached.iter().any(|r| r == n))
                .collect();
            return Err(ApiError::ConsistencyTimeout(format!(
                "the read models of {} have not reached cursor {at_least} after {} ms; ask again, or \
                 allow a longer timeoutMs",
                behind.join(", "),
                timeout.as_millis()
            )));
        }
        tokio::select! {
            () = &mut progressed => {}
            () = tokio::time::sleep(pause.min(deadline - now)) => {
                pause = (pause * 2).min(Duration::from_millis(25));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requirement_parses_from_a_cursor_and_an_optional_timeout() {
        let cursor = Cursor::new(7, 42).to_string();
        let c = Consistency::parse(&cursor, None).unwrap();
        assert_eq!(c.at_least, Cursor::new(7, 42));
        assert_eq!(c.timeout, Duration::from_millis(DEFAULT_TIMEOUT_MS));
        assert_eq!(
            Consistency::parse(&cursor, Some(250)).unwrap().timeout,
            Duration::from_millis(250)
        );
        for bad in [0, -1, 60_001] {
            assert_eq!(
                Consistency::parse(&cursor, Some(bad)).unwrap_err().code(),
                "BAD_TIMEOUT"
            );
        }
        assert_eq!(Consistency::parse("42", None).unwrap_err().code(), "BAD_CURSOR");
    }

    #[test]
    fn every_projector_named_in_the_table_exists() {
        for field in [
            "conversations",
            "leads",
            "payments",
            "orders",
            "wallets",
            "campaigns",
            "contacts",
            "media",
            "agentPerformance",
            "calls",
            "templates",
        ] {
            for p in read_models(field) {
                assert!(ALL_PROJECTORS.contains(p), "{field} names {p}, which is no projector");
            }
        }
    }

    #[test]
    fn only_queries_wait_and_fragments_count() {
        let doc = async_graphql::parser::parse_query(
            "query { ...F viewer } fragment F on Query { leads { totalCount } wallets { nodes { id } } }",
        )
        .unwrap();
        let read = projectors_read(&doc, None).unwrap();
        assert!(read.contains("leads") && read.contains("wallets") && !read.contains("messages"));
        let doc = async_graphql::parser::parse_query("mutation { x }").unwrap();
        assert!(projectors_read(&doc, None).is_none());
    }
}
