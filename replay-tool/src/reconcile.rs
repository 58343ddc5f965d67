//! `chronicle-replay reconcile wallets`: a tenant's token wallets reconciled with the log, with
//! their read models and, optionally, with a payment provider's statement (issue 11).
//!
//! # What is checked, as of one log cursor
//!
//! Every wallet event at or before the cursor is replayed in log order:
//!
//! - each event's postings sum to zero (double entry), and the balances it records follow from
//!   the previous ones and its postings on the wallet's own accounts (`identity`);
//! - at the end, per wallet: balance = purchases − debits − captures + refunds − transfers out +
//!   transfers in, and reserved = the amounts still held by open reservations (`identity`);
//! - the ledger read model (`wallet_ledger`) has one row per event, of its wallet, with the
//!   event's balance change and the balances after it (`missing_in_ledger` when the row is
//!   gone, `read_model_drift` when it differs or when a row has no event); the balance read
//!   model (`wallet_balances`) holds the replayed balances, checked for each wallet whose row
//!   was last written by an event at or before the cursor (`read_model_drift`); the checkpoint
//!   and the rows are read in one snapshot;
//! - a transfer out whose transfer in is not in the log yet is a pending item (in transit).
//!
//! With `--statement FILE --provider P` (CSV with a header: `reference,amount,currency,date`;
//! the amount in major units with up to two decimals, as providers print it; the date as
//! `YYYY-MM-DD`), matched with the payments of that provider only (references are unique per
//! provider):
//!
//! - a line whose reference appears earlier in the statement: `duplicate`;
//! - a line no confirmed payment in the log has: `missing_in_ledger`; a payment matched to a
//!   wallet whose purchase is not in the wallet's events: `missing_in_ledger`;
//! - a line whose amount or currency differs from the payment's: `amount_mismatch`;
//! - a payment confirmed within the statement's dates that the statement lacks:
//!   `missing_at_provider`;
//! - a payment left unmatched (waiting for finance) is a pending item, not a break.
//!
//! # The run's files
//!
//! Written to `--out DIR`: `breaks.csv` (class, wallet, reference, expected, found, log
//! positions, detail), `wallets.csv` (per wallet: events and the totals above) and
//! `manifest.json` (tenant, cursor, verdict, counts by class, pending items, each file's name,
//! size and sha-256, and the statement's). Nothing in them depends on when the run happened: a
//! run over the same cursor (`--through`, refused beyond the readable log) writes the same
//! bytes, as long as the read models hold the same rows for the events it covers (a
//! `wallet_balances` row that a later event rewrote is no longer compared).
//!
//! # Verdict and exit code
//!
//! `reconciled` (0), `reconciled with pending items` (0), `breaks` (1; also when the read
//! models could not be compared but the log or the statement shows breaks), `incomplete` (3:
//! nothing broken found, but the wallet read models have not reached the cursor yet, so they
//! were not compared; run again or pass an earlier `--through`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chronicle_domain::installation::PaymentProvider;
use chronicle_domain::payment::PaymentEvent;
use chronicle_domain::tenant::TenantId;
use chronicle_domain::wallet::{Posting, WalletEvent};
use chronicle_projections::log::{self, Cursor, LogFilter, StoredEvent};
use chrono::NaiveDate;
use clap::{Args, Subcommand};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};

use crate::history::{csv_field as csv, parse_cursor, HistoryError};
use crate::{CliError, DatabaseArgs};

/// `chronicle-replay reconcile`.
#[derive(Debug, Clone, Subcommand)]
pub enum ReconcileCommand {
    /// Reconcile a tenant's token wallets with the log, the read models and optionally a
    /// provider's statement; writes breaks.csv, wallets.csv and manifest.json.
    Wallets(WalletsArgs),
}

/// `chronicle-replay reconcile wallets`.
#[derive(Debug, Clone, Args)]
pub struct WalletsArgs {
    /// The tenant whose wallets to reconcile.
    #[arg(long, value_name = "TENANT")]
    pub tenant: String,

    /// A provider's statement: CSV with the header reference,amount,currency,date.
    #[arg(long, value_name = "FILE", requires = "provider")]
    pub statement: Option<PathBuf>,

    /// The provider whose statement it is (paynow, mpesa, stripe, cash): only its payments are
    /// matched with the statement and expected in it.
    #[arg(long, value_name = "PROVIDER", value_parser = parse_provider)]
    pub provider: Option<PaymentProvider>,

    /// Reconcile as of this log cursor (default: the tenant's last readable event). A run over
    /// the same cursor writes the same files.
    #[arg(long, value_name = "CURSOR", value_parser = parse_cursor)]
    pub through: Option<Cursor>,

    /// Where to write the files (default: reconciliation-<tenant>-<position>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    #[command(flatten)]
    pub database: DatabaseArgs,
}

fn parse_provider(text: &str) -> Result<PaymentProvider, String> {
    [
        PaymentProvider::Paynow,
        PaymentProvider::Mpesa,
        PaymentProvider::Stripe,
        PaymentProvider::Cash,
    ]
    .into_iter()
    .find(|p| p.as_str().eq_ignore_ascii_case(text.trim()))
    .ok_or_else(|| format!("unknown provider {text:?} (paynow, mpesa, stripe or cash)"))
}

/// The run's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    #[serde(rename = "reconciled")]
    Reconciled,
    #[serde(rename = "reconciled with pending items")]
    ReconciledWithPendingItems,
    #[serde(rename = "breaks")]
    Breaks,
    #[serde(rename = "incomplete")]
    Incomplete,
}

/// What kind of break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakClass {
    Identity,
    MissingInLedger,
    MissingAtProvider,
    AmountMismatch,
    Duplicate,
    ReadModelDrift,
}

impl BreakClass {
    fn as_str(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::MissingInLedger => "missing_in_ledger",
            Self::MissingAtProvider => "missing_at_provider",
            Self::AmountMismatch => "amount_mismatch",
            Self::Duplicate => "duplicate",
            Self::ReadModelDrift => "read_model_drift",
        }
    }
}

/// One break.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Break {
    pub class: BreakClass,
    pub wallet_id: String,
    pub reference: String,
    pub expected: String,
    pub found: String,
    /// The global positions of the events involved.
    pub events: Vec<i64>,
    pub detail: String,
}

/// Per-wallet totals from the replay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WalletTotals {
    pub events: u64,
    pub purchases: i64,
    pub debits: i64,
    pub captures: i64,
    pub refunds: i64,
    pub transfers_out: i64,
    pub transfers_in: i64,
    pub balance: i64,
    pub reserved: i64,
    pub available: i64,
}

/// A pending item: not a break, but not settled either.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Pending {
    pub reference: String,
    pub detail: String,
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Reconciliation {
    pub tenant: String,
    pub cursor: String,
    pub position: i64,
    pub verdict: Verdict,
    /// Why the run is incomplete, when it is.
    pub incomplete: Option<String>,
    pub breaks: Vec<Break>,
    pub pending: Vec<Pending>,
    pub wallets: BTreeMap<String, WalletTotals>,
}

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("the statement {path}: {reason}")]
    Statement { path: String, reason: String },
    #[error("wallet event at position {position} cannot be read: {reason}")]
    Undecodable { position: i64, reason: String },
    #[error(
        "--through {through} lies beyond the tenant's readable log (its last event is at {head}): \
         pass a cursor at or before it"
    )]
    BeyondHead { through: String, head: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// A statement line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementLine {
    pub line: usize,
    pub reference: String,
    pub amount_minor: i64,
    pub currency: String,
    pub date: NaiveDate,
}

/// Parses a provider statement (see the module docs).
pub fn parse_statement(text: &str) -> Result<Vec<StatementLine>, String> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err("it is empty: expected the header reference,amount,currency,date".into());
    };
    let header: Vec<String> = header.split(',').map(|h| h.trim().to_ascii_lowercase()).collect();
    if header != ["reference", "amount", "currency", "date"] {
        return Err(format!(
            "line 1: the header must be reference,amount,currency,date (found {})",
            header.join(",")
        ));
    }
    let mut out = Vec::new();
    for (index, line) in lines {
        let number = index + 1;
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [reference, amount, currency, date] = fields.as_slice() else {
            return Err(format!("line {number}: expected 4 fields, found {}", fields.len()));
        };
        if reference.is_empty() {
            return Err(format!("line {number}: the reference is empty"));
        }
        let amount_minor = parse_amount(amount)
            .ok_or_else(|| format!("line {number}: the amount {amount:?} is not a number with at most two decimals"))?;
        if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(format!(
                "line {number}: the currency {currency:?} is not a three-letter code"
            ));
        }
        let date = NaiveDate::parse_from_str(date, "%Y-%m-%d")
            .map_err(|_| format!("line {number}: the date {date:?} is not YYYY-MM-DD"))?;
        out.push(StatementLine {
            line: number,
            reference: (*reference).to_owned(),
            amount_minor,
            currency: currency.to_ascii_uppercase(),
            date,
        });
    }
    Ok(out)
}

/// `12`, `12.5`, `12.50`, `-3.10` in minor units (two decimals).
fn parse_amount(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = match digits.split_once('.') {
        Some((w, f)) => (w, f),
        None => (digits, ""),
    };
    if whole.is_empty() || !whole.chars().all(|c| c.is_ascii_digit()) || fraction.len() > 2 {
        return None;
    }
    if !fraction.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let fraction: i64 = format!("{fraction:0<2}").parse().ok()?;
    let minor = whole.checked_mul(100)?.checked_add(fraction)?;
    Some(if negative { -minor } else { minor })
}

/// A confirmed payment, replayed.
#[derive(Debug, Clone, Default)]
struct PaymentFacts {
    provider: String,
    reference: String,
    amount_minor: i64,
    currency: String,
    date: Option<NaiveDate>,
    position: i64,
    wallet: Option<String>,
    unmatched: Option<String>,
}

/// Runs the reconciliation (no files written).
pub async fn reconcile(
    pool: &PgPool,
    tenant: &TenantId,
    through: Option<Cursor>,
    statement: Option<(PaymentProvider, &[StatementLine])>,
) -> Result<Reconciliation, CliError> {
    let filter = LogFilter::tenant(tenant.as_str()).with_types(
        WalletEvent::TYPES
            .iter()
            .chain(PaymentEvent::TYPES)
            .map(|t| (*t).to_owned()),
    );
    let head = log::head(pool, &LogFilter::tenant(tenant.as_str()))
        .await?
        .unwrap_or(Cursor::START);
    let cursor = match through {
        // Past the readable end, a run would cover less now than later: refused.
        Some(cursor) if cursor > head => {
            return Err(ReconcileError::BeyondHead {
                through: cursor.to_string(),
                head: head.to_string(),
            }
            .into())
        }
        Some(cursor) => cursor,
        None => head,
    };

    // The log, as of the cursor.
    let mut wallet_events: Vec<(StoredEvent, WalletEvent)> = Vec::new();
    let mut payments: BTreeMap<String, PaymentFacts> = BTreeMap::new();
    let mut after = Cursor::START;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE tenant_id = $1 AND event_type = ANY($2)")
        .bind(tenant.as_str())
        .bind(filter.event_types.clone().unwrap_or_default())
        .fetch_one(pool)
        .await?;
    let bar = crate::progress_bar("replaying wallets and payments", u64::try_from(total).unwrap_or(0));
    'read: loop {
        let batch = log::read_after(pool, after, &filter, 2_000).await?;
        let Some(last) = batch.last() else { break };
        after = last.cursor;
        for event in batch {
            bar.inc(1);
            if event.cursor > cursor {
                break 'read;
            }
            let undecodable = |reason: String| ReconcileError::Undecodable {
                position: event.global_position,
                reason,
            };
            match event.aggregate_type.as_str() {
                "Wallet" => {
                    let decoded: WalletEvent =
                        serde_json::from_value(event.payload.clone()).map_err(|e| undecodable(e.to_string()))?;
                    wallet_events.push((event, decoded));
                }
                "Payment" => {
                    let decoded: PaymentEvent =
                        serde_json::from_value(event.payload.clone()).map_err(|e| undecodable(e.to_string()))?;
                    let facts = payments.entry(event.aggregate_id.clone()).or_default();
                    match decoded {
                        PaymentEvent::PaymentConfirmed {
                            provider,
                            reference,
                            amount_minor,
                            currency,
                            at,
                            ..
                        } => {
                            facts.provider = provider.as_str().to_owned();
                            facts.reference = reference;
                            facts.amount_minor = amount_minor;
                            facts.currency = currency;
                            facts.date = Some(at.date_naive());
                            facts.position = event.global_position;
                        }
                        PaymentEvent::PaymentMatchedToWallet { wallet_id, .. } => facts.wallet = Some(wallet_id),
                        PaymentEvent::PaymentLeftUnmatched { reason, .. } => facts.unmatched = Some(reason),
                        PaymentEvent::PaymentMatchedToOrder { .. } | PaymentEvent::PaymentMatchedManually { .. } => {
                            facts.unmatched = None
                        }
                    }
                }
                _ => {}
            }
        }
    }
    bar.finish_and_clear();

    let mut breaks = Vec::new();
    let mut pending = Vec::new();
    let mut wallets: BTreeMap<String, WalletTotals> = BTreeMap::new();
    // wallet -> references of its purchases.
    let mut purchases: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut positions: BTreeMap<i64, (String, WalletEvent)> = BTreeMap::new();
    let mut last_balances: BTreeMap<String, (i64, chronicle_domain::wallet::Balances)> = BTreeMap::new();
    let mut open_reservations: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    // Transfers out whose transfer in is not in the log yet, by reference.
    let mut in_transit: BTreeMap<String, (String, i64)> = BTreeMap::new();

    for (stored, event) in &wallet_events {
        let wallet = wallet_of(&stored.aggregate_id);
        let totals = wallets.entry(wallet.clone()).or_default();
        totals.events += 1;
        let identity = |expected: String, found: String, detail: &str| Break {
            class: BreakClass::Identity,
            wallet_id: wallet.clone(),
            reference: reference_of(event),
            expected,
            found,
            events: vec![stored.global_position],
            detail: detail.to_owned(),
        };
        if !Posting::balanced(event.postings()) {
            let sum = event
                .postings()
                .iter()
                .fold(0i64, |sum, p| sum.saturating_add(p.amount));
            breaks.push(identity(
                "0".into(),
                sum.to_string(),
                "the event's postings do not sum to zero",
            ));
        }
        let change = wallet_change(event);
        let reserved_change = event
            .postings()
            .iter()
            .filter(|p| p.account == chronicle_domain::wallet::Account::WalletReserved)
            .fold(0i64, |sum, p| sum.saturating_add(p.amount));
        let expected_balance = totals.balance.saturating_add(change);
        let expected_reserved = totals.reserved.saturating_add(reserved_change);
        let recorded = event.balances();
        if recorded.balance != expected_balance || recorded.reserved != expected_reserved {
            breaks.push(identity(
                format!("balance {expected_balance}, reserved {expected_reserved}"),
                format!("balance {}, reserved {}", recorded.balance, recorded.reserved),
                "the balances the event records do not follow from the previous ones and its postings",
            ));
        }
        totals.balance = recorded.balance;
        totals.reserved = recorded.reserved;
        totals.available = recorded.available;
        let open = open_reservations.entry(wallet.clone()).or_default();
        match event {
            WalletEvent::TokensPurchased { reference, amount, .. } => {
                totals.purchases = totals.purchases.saturating_add(*amount);
                purchases.entry(wallet.clone()).or_default().insert(reference.clone());
            }
            WalletEvent::TokensDebited { amount, .. } => totals.debits = totals.debits.saturating_add(*amount),
            WalletEvent::ReservationCaptured {
                reservation,
                amount,
                remaining,
                ..
            } => {
                totals.captures = totals.captures.saturating_add(*amount);
                open.insert(reservation.clone(), *remaining);
            }
            WalletEvent::TokensReserved { reference, amount, .. } => {
                open.insert(reference.clone(), *amount);
            }
            WalletEvent::ReservationReleased { reservation, .. }
            | WalletEvent::ReservationExpired { reservation, .. } => {
                open.remove(reservation);
            }
            WalletEvent::TokensRefunded { amount, .. } => totals.refunds = totals.refunds.saturating_add(*amount),
            WalletEvent::TokensTransferredOut { reference, amount, .. } => {
                totals.transfers_out = totals.transfers_out.saturating_add(*amount);
                in_transit.insert(reference.clone(), (wallet.clone(), *amount));
            }
            WalletEvent::TokensTransferredIn { reference, amount, .. } => {
                totals.transfers_in = totals.transfers_in.saturating_add(*amount);
                in_transit.remove(reference);
            }
            _ => {}
        }
        open.retain(|_, remaining| *remaining > 0);
        positions.insert(stored.global_position, (wallet.clone(), event.clone()));
        last_balances.insert(wallet.clone(), (stored.global_position, recorded));
    }
    for (wallet, totals) in &wallets {
        let by_kind = totals
            .purchases
            .saturating_sub(totals.debits)
            .saturating_sub(totals.captures)
            .saturating_add(totals.refunds)
            .saturating_sub(totals.transfers_out)
            .saturating_add(totals.transfers_in);
        let last = last_balances.get(wallet).map_or(0, |(p, _)| *p);
        if by_kind != totals.balance {
            breaks.push(Break {
                class: BreakClass::Identity,
                wallet_id: wallet.clone(),
                reference: String::new(),
                expected: format!("balance {by_kind}"),
                found: format!("balance {}", totals.balance),
                events: vec![last],
                detail: "balance ≠ purchases − debits − captures + refunds − transfers out + transfers in".into(),
            });
        }
        let held = open_reservations
            .get(wallet)
            .map_or(0, |o| o.values().fold(0i64, |sum, v| sum.saturating_add(*v)));
        if held != totals.reserved {
            breaks.push(Break {
                class: BreakClass::Identity,
                wallet_id: wallet.clone(),
                reference: String::new(),
                expected: format!("reserved {held}"),
                found: format!("reserved {}", totals.reserved),
                events: vec![last],
                detail: "reserved ≠ the amounts held by open reservations".into(),
            });
        }
    }

    for (reference, (wallet, amount)) in &in_transit {
        pending.push(Pending {
            reference: reference.clone(),
            detail: format!("{amount} milli-tokens sent by wallet {wallet}, not yet received (in transit)"),
        });
    }

    // The read models, if they have reached the cursor.
    let last_event = wallet_events.last().map(|(e, _)| e.cursor);
    let incomplete = match compare_read_models(pool, tenant, last_event, &positions, &last_balances).await? {
        Some(found) => {
            breaks.extend(found);
            None
        }
        None => Some(format!(
            "the wallet read models have not reached cursor {cursor} yet, so they were not \
             compared: run again when they have (or pass an earlier --through)"
        )),
    };

    // The provider's statement.
    if let Some((provider, statement)) = statement {
        // A provider's references are unique among its own payments only.
        let by_reference: BTreeMap<&str, &PaymentFacts> = payments
            .values()
            .filter(|p| !p.reference.is_empty() && p.provider == provider.as_str())
            .map(|p| (p.reference.as_str(), p))
            .collect();
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for line in statement {
            if let Some(first) = seen.get(line.reference.as_str()) {
                breaks.push(Break {
                    class: BreakClass::Duplicate,
                    wallet_id: String::new(),
                    reference: line.reference.clone(),
                    expected: format!("once (line {first})"),
                    found: format!("again on line {}", line.line),
                    events: Vec::new(),
                    detail: "the statement lists this reference more than once".into(),
                });
                continue;
            }
            seen.insert(&line.reference, line.line);
            let Some(payment) = by_reference.get(line.reference.as_str()) else {
                breaks.push(Break {
                    class: BreakClass::MissingInLedger,
                    wallet_id: String::new(),
                    reference: line.reference.clone(),
                    expected: format!("{} {}", minor_text(line.amount_minor), line.currency),
                    found: "no confirmed payment".into(),
                    events: Vec::new(),
                    detail: format!("statement line {}: the provider has it, the log does not", line.line),
                });
                continue;
            };
            if payment.amount_minor != line.amount_minor || !payment.currency.eq_ignore_ascii_case(&line.currency) {
                breaks.push(Break {
                    class: BreakClass::AmountMismatch,
                    wallet_id: payment.wallet.clone().unwrap_or_default(),
                    reference: line.reference.clone(),
                    expected: format!("{} {}", minor_text(line.amount_minor), line.currency),
                    found: format!("{} {}", minor_text(payment.amount_minor), payment.currency),
                    events: vec![payment.position],
                    detail: format!("statement line {}: the amounts differ", line.line),
                });
            }
            if let Some(wallet) = &payment.wallet {
                if !purchases.get(wallet).is_some_and(|p| p.contains(&line.reference)) {
                    breaks.push(Break {
                        class: BreakClass::MissingInLedger,
                        wallet_id: wallet.clone(),
                        reference: line.reference.clone(),
                        expected: "a purchase of the payment".into(),
                        found: "no purchase in the wallet".into(),
                        events: vec![payment.position],
                        detail: format!("statement line {}: matched to the wallet, never credited", line.line),
                    });
                }
            }
            if let Some(reason) = &payment.unmatched {
                pending.push(Pending {
                    reference: line.reference.clone(),
                    detail: format!("payment left unmatched ({reason}): waiting for finance"),
                });
            }
        }
        let first = statement.iter().map(|l| l.date).min();
        let last = statement.iter().map(|l| l.date).max();
        if let (Some(first), Some(last)) = (first, last) {
            for payment in by_reference.values() {
                let within = payment.date.is_some_and(|d| d >= first && d <= last);
                if within && !seen.contains_key(payment.reference.as_str()) {
                    breaks.push(Break {
                        class: BreakClass::MissingAtProvider,
                        wallet_id: payment.wallet.clone().unwrap_or_default(),
                        reference: payment.reference.clone(),
                        expected: "a statement line".into(),
                        found: format!(
                            "{} {} confirmed in the log",
                            minor_text(payment.amount_minor),
                            payment.currency
                        ),
                        events: vec![payment.position],
                        detail: format!(
                            "confirmed {} within the statement's dates",
                            payment.date.map(|d| d.to_string()).unwrap_or_default()
                        ),
                    });
                }
            }
        }
    } else {
        for payment in payments.values() {
            if let Some(reason) = &payment.unmatched {
                pending.push(Pending {
                    reference: payment.reference.clone(),
                    detail: format!("payment left unmatched ({reason}): waiting for finance"),
                });
            }
        }
    }

    breaks.sort();
    pending.sort();
    // Breaks found in the log itself stand even when the read models could not be compared.
    let verdict = if !breaks.is_empty() {
        Verdict::Breaks
    } else if incomplete.is_some() {
        Verdict::Incomplete
    } else if !pending.is_empty() {
        Verdict::ReconciledWithPendingItems
    } else {
        Verdict::Reconciled
    };
    Ok(Reconciliation {
        tenant: tenant.to_string(),
        cursor: cursor.to_string(),
        position: cursor.position,
        verdict,
        incomplete,
        breaks,
        pending,
        wallets,
    })
}

/// The ledger and balance read models against the replay.
///
/// `None` when the wallets projector has not read `last_event` yet (the read models cannot be
/// compared). The checkpoint and the rows are read in one snapshot, so a rebuild running beside
/// the run cannot show half-written tables as breaks.
async fn compare_read_models(
    pool: &PgPool,
    tenant: &TenantId,
    last_event: Option<Cursor>,
    positions: &BTreeMap<i64, (String, WalletEvent)>,
    last_balances: &BTreeMap<String, (i64, chronicle_domain::wallet::Balances)>,
) -> Result<Option<Vec<Break>>, sqlx::Error> {
    let mut breaks = Vec::new();
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    chronicle_projections::for_tenant(&mut tx, tenant).await?;
    let checkpoint: Option<(String, i64)> =
        sqlx::query_as("SELECT last_tx_id::text, last_position FROM projector_checkpoints WHERE projector = $1")
            .bind(chronicle_projections::wallets::NAME)
            .fetch_optional(&mut *tx)
            .await?;
    // The projector reads only wallet events: it has reached the cursor when it has read the
    // last wallet event at or before it.
    let checkpoint = checkpoint.and_then(|(tx, position)| tx.parse::<u64>().ok().map(|tx| Cursor::new(tx, position)));
    let reached = match last_event {
        None => true,
        Some(last) => checkpoint.is_some_and(|c| c >= last),
    };
    if !reached {
        tx.rollback().await?;
        return Ok(None);
    }
    let rows = sqlx::query(
        "SELECT global_position, wallet_id, reference, amount, balance_change, balance, reserved, available \
           FROM wallet_ledger WHERE tenant_id = $1 ORDER BY global_position",
    )
    .bind(tenant.as_str())
    .fetch_all(&mut *tx)
    .await?;
    let all_wallet_positions: BTreeSet<i64> =
        sqlx::query_scalar("SELECT global_position FROM events WHERE tenant_id = $1 AND aggregate_type = 'Wallet'")
            .bind(tenant.as_str())
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
    let mut ledger: BTreeMap<i64, sqlx::postgres::PgRow> = BTreeMap::new();
    for row in rows {
        let position: i64 = row.try_get("global_position")?;
        if !all_wallet_positions.contains(&position) {
            breaks.push(Break {
                class: BreakClass::ReadModelDrift,
                wallet_id: row.try_get("wallet_id")?,
                reference: row.try_get::<Option<String>, _>("reference")?.unwrap_or_default(),
                expected: "no row".into(),
                found: "a ledger row".into(),
                events: vec![position],
                detail: "a ledger row without a wallet event".into(),
            });
            continue;
        }
        ledger.insert(position, row);
    }
    for (position, (wallet, event)) in positions {
        let reference = reference_of(event);
        let Some(row) = ledger.get(position) else {
            breaks.push(Break {
                class: BreakClass::MissingInLedger,
                wallet_id: wallet.clone(),
                reference,
                expected: format!("a {} row", kind_of(event)),
                found: "no ledger row".into(),
                events: vec![*position],
                detail: "the event has no row in wallet_ledger".into(),
            });
            continue;
        };
        let balances = event.balances();
        let change = wallet_change(event);
        let found = (
            row.try_get::<String, _>("wallet_id")?,
            row.try_get::<i64, _>("balance_change")?,
            row.try_get::<i64, _>("balance")?,
            row.try_get::<i64, _>("reserved")?,
            row.try_get::<i64, _>("available")?,
        );
        let expected = (
            wallet.clone(),
            change,
            balances.balance,
            balances.reserved,
            balances.available,
        );
        if found != expected {
            breaks.push(Break {
                class: BreakClass::ReadModelDrift,
                wallet_id: wallet.clone(),
                reference,
                expected: format!(
                    "wallet {}, change {}, balance {}, reserved {}, available {}",
                    expected.0, expected.1, expected.2, expected.3, expected.4
                ),
                found: format!(
                    "wallet {}, change {}, balance {}, reserved {}, available {}",
                    found.0, found.1, found.2, found.3, found.4
                ),
                events: vec![*position],
                detail: "the ledger row differs from its event".into(),
            });
        }
    }
    let rows = sqlx::query(
        "SELECT wallet_id, balance, reserved, available, last_position FROM wallet_balances WHERE tenant_id = $1",
    )
    .bind(tenant.as_str())
    .fetch_all(&mut *tx)
    .await?;
    let mut seen = BTreeSet::new();
    for row in rows {
        let wallet: String = row.try_get("wallet_id")?;
        let last_position: i64 = row.try_get("last_position")?;
        seen.insert(wallet.clone());
        let Some((position, balances)) = last_balances.get(&wallet) else {
            continue;
        };
        // Only a row last written by an event the run covers shows the state it replayed.
        if last_position != *position {
            continue;
        }
        let found = (
            row.try_get::<i64, _>("balance")?,
            row.try_get::<i64, _>("reserved")?,
            row.try_get::<i64, _>("available")?,
        );
        let expected = (balances.balance, balances.reserved, balances.available);
        if found != expected {
            breaks.push(Break {
                class: BreakClass::ReadModelDrift,
                wallet_id: wallet,
                reference: String::new(),
                expected: format!(
                    "balance {}, reserved {}, available {}",
                    expected.0, expected.1, expected.2
                ),
                found: format!("balance {}, reserved {}, available {}", found.0, found.1, found.2),
                events: vec![*position],
                detail: "wallet_balances differs from the replay".into(),
            });
        }
    }
    for (wallet, (position, _)) in last_balances {
        if !seen.contains(wallet) {
            breaks.push(Break {
                class: BreakClass::ReadModelDrift,
                wallet_id: wallet.clone(),
                reference: String::new(),
                expected: "a wallet_balances row".into(),
                found: "none".into(),
                events: vec![*position],
                detail: "the wallet has events but no balance row".into(),
            });
        }
    }
    tx.rollback().await?;
    Ok(Some(breaks))
}

/// The wallet id of a wallet stream (`<tenant>:wallet_<id>`), as payments and the read models
/// name it.
/// The change an event makes to the wallet's balance: its postings on the wallet's accounts.
fn wallet_change(event: &WalletEvent) -> i64 {
    event
        .postings()
        .iter()
        .filter(|p| p.account.is_wallet())
        .fold(0i64, |sum, p| sum.saturating_add(p.amount))
}

fn wallet_of(stream: &str) -> String {
    let local = stream.split_once(':').map_or(stream, |(_, local)| local);
    local.strip_prefix("wallet_").unwrap_or(local).to_owned()
}

fn reference_of(event: &WalletEvent) -> String {
    match event {
        WalletEvent::WalletOpened { reference, .. }
        | WalletEvent::TokensPurchased { reference, .. }
        | WalletEvent::TokensDebited { reference, .. }
        | WalletEvent::DebitRefused { reference, .. }
        | WalletEvent::TokensReserved { reference, .. }
        | WalletEvent::ReservationCaptured { reference, .. }
        | WalletEvent::ReservationReleased { reference, .. }
        | WalletEvent::TokensRefunded { reference, .. }
        | WalletEvent::TokensTransferredOut { reference, .. }
        | WalletEvent::TokensTransferredIn { reference, .. }
        | WalletEvent::ThresholdsConfigured { reference, .. } => reference.clone(),
        WalletEvent::ReservationExpired { reservation, .. } => reservation.clone(),
        WalletEvent::LowBalanceAlerted { trigger, .. } => trigger.clone(),
        WalletEvent::AutoRefillRequested { .. } => String::new(),
    }
}

fn kind_of(event: &WalletEvent) -> String {
    cqrs_es::DomainEvent::event_type(event)
}

fn minor_text(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", minor.unsigned_abs() / 100, minor.unsigned_abs() % 100)
}

/// The files of a run, as bytes: `breaks.csv`, `wallets.csv`, `manifest.json`.
pub fn report_files(run: &Reconciliation, statement: Option<(&str, &[u8])>) -> Vec<(String, Vec<u8>)> {
    let mut breaks = String::from("class,wallet_id,reference,expected,found,events,detail\r\n");
    for b in &run.breaks {
        let events: Vec<String> = b.events.iter().map(i64::to_string).collect();
        let fields = [
            b.class.as_str(),
            &b.wallet_id,
            &b.reference,
            &b.expected,
            &b.found,
            &events.join(" "),
            &b.detail,
        ];
        let line: Vec<String> = fields.iter().map(|f| csv(f)).collect();
        breaks.push_str(&line.join(","));
        breaks.push_str("\r\n");
    }
    let mut wallets = String::from(
        "wallet_id,events,purchases,debits,captures,refunds,transfers_out,transfers_in,balance,reserved,available\r\n",
    );
    for (wallet, t) in &run.wallets {
        wallets.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{}\r\n",
            csv(wallet),
            t.events,
            t.purchases,
            t.debits,
            t.captures,
            t.refunds,
            t.transfers_out,
            t.transfers_in,
            t.balance,
            t.reserved,
            t.available
        ));
    }
    #[derive(Serialize)]
    struct FileEntry {
        name: String,
        bytes: usize,
        sha256: String,
    }
    #[derive(Serialize)]
    struct Manifest<'a> {
        tenant: &'a str,
        cursor: &'a str,
        position: i64,
        verdict: Verdict,
        incomplete: &'a Option<String>,
        breaks: BTreeMap<&'static str, usize>,
        pending: &'a [Pending],
        wallets: usize,
        statement: Option<FileEntry>,
        files: Vec<FileEntry>,
    }
    let entry = |name: &str, bytes: &[u8]| FileEntry {
        name: name.to_owned(),
        bytes: bytes.len(),
        sha256: hex::encode(Sha256::digest(bytes)),
    };
    let mut counts = BTreeMap::new();
    for b in &run.breaks {
        *counts.entry(b.class.as_str()).or_insert(0) += 1;
    }
    let files = vec![
        ("breaks.csv".to_owned(), breaks.into_bytes()),
        ("wallets.csv".to_owned(), wallets.into_bytes()),
    ];
    let manifest = Manifest {
        tenant: &run.tenant,
        cursor: &run.cursor,
        position: run.position,
        verdict: run.verdict,
        incomplete: &run.incomplete,
        breaks: counts,
        pending: &run.pending,
        wallets: run.wallets.len(),
        statement: statement.map(|(name, bytes)| entry(name, bytes)),
        files: files.iter().map(|(name, bytes)| entry(name, bytes)).collect(),
    };
    let mut manifest_bytes = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    manifest_bytes.push(b'\n');
    let mut all = files;
    all.push(("manifest.json".to_owned(), manifest_bytes));
    all
}

/// `reconcile wallets`: runs, writes the files, prints a summary, and answers the exit code.
pub async fn wallets_command(pool: &PgPool, args: &WalletsArgs, out: &mut impl Write) -> Result<Verdict, CliError> {
    let tenant = TenantId::parse(args.tenant.trim()).map_err(|e| HistoryError::Tenant(e.to_string()))?;
    let statement_bytes = match &args.statement {
        Some(path) => Some(std::fs::read(path).map_err(|e| ReconcileError::Statement {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?),
        None => None,
    };
    let statement = match (&args.statement, &statement_bytes) {
        (Some(path), Some(bytes)) => {
            let text = String::from_utf8_lossy(bytes);
            let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
            Some(parse_statement(text).map_err(|reason| ReconcileError::Statement {
                path: path.display().to_string(),
                reason,
            })?)
        }
        _ => None,
    };
    let statement = match (args.provider, statement.as_deref()) {
        (Some(provider), Some(lines)) => Some((provider, lines)),
        _ => None,
    };
    let run = reconcile(pool, &tenant, args.through, statement).await?;
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("reconciliation-{}-{}", tenant.as_str(), run.position)));
    let statement_name = args
        .statement
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    let files = report_files(&run, statement_name.as_deref().zip(statement_bytes.as_deref()));
    write_files(&dir, &files)?;

    let verdict = match run.verdict {
        Verdict::Reconciled => "reconciled",
        Verdict::ReconciledWithPendingItems => "reconciled with pending items",
        Verdict::Breaks => "breaks",
        Verdict::Incomplete => "incomplete",
    };
    writeln!(
        out,
        "{verdict}: {} wallets of tenant {} as of {} (position {}); {} breaks, {} pending items",
        run.wallets.len(),
        run.tenant,
        run.cursor,
        run.position,
        run.breaks.len(),
        run.pending.len()
    )?;
    for b in &run.breaks {
        writeln!(
            out,
            "BREAK {} wallet {} reference {}: expected {}, found {} ({})",
            b.class.as_str(),
            if b.wallet_id.is_empty() { "-" } else { &b.wallet_id },
            if b.reference.is_empty() { "-" } else { &b.reference },
            b.expected,
            b.found,
            b.detail
        )?;
    }
    if let Some(reason) = &run.incomplete {
        writeln!(out, "INCOMPLETE {reason}")?;
    }
    writeln!(out, "report: {}", dir.join("manifest.json").display())?;
    out.flush()?;
    Ok(run.verdict)
}

fn write_files(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<(), CliError> {
    let failed = |path: &Path, source: io::Error| ReconcileError::Write {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| failed(dir, e))?;
    for (name, bytes) in files {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| failed(&path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_in_minor_units_with_at_most_two_decimals() {
        assert_eq!(parse_amount("12"), Some(1200));
        assert_eq!(parse_amount("12.5"), Some(1250));
        assert_eq!(parse_amount("12.05"), Some(1205));
        assert_eq!(parse_amount("-3.10"), Some(-310));
        assert_eq!(parse_amount("1.234"), None);
        assert_eq!(parse_amount("abc"), None);
        assert_eq!(parse_amount(".5"), None);
        assert_eq!(minor_text(1205), "12.05");
        assert_eq!(minor_text(-310), "-3.10");
    }

    #[test]
    fn a_statement_needs_its_header_and_four_valid_fields_per_line() {
        let good = "reference,amount,currency,date\nP-1,10.00,usd,2026-12-01\n\nP-2,5,USD,2026-12-02\n";
        let lines = parse_statement(good).unwrap_or_default();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].currency, "USD");
        assert_eq!(lines[1].line, 4);
        assert!(parse_statement("").is_err());
        assert!(parse_statement("ref,amount\n").unwrap_err().contains("header"));
        let bad = parse_statement("reference,amount,currency,date\nP-1,ten,USD,2026-12-01\n").unwrap_err();
        assert!(bad.contains("line 2"), "{bad}");
        assert!(parse_statement("reference,amount,currency,date\nP-1,1,USD,yesterday\n").is_err());
        assert!(parse_statement("reference,amount,currency,date\nP-1,1,USD\n").is_err());
    }
}
