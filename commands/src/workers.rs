//! Every background worker of the write side, built once and run in one place.
//!
//! [`Workers::new`] builds them over one [`Commands`] and one [`KeyStore`]: the webhook inbox
//! processor, the call follow-ups, the WhatsApp sender and the media fetcher (when a Graph API
//! token is configured), the installation process manager, the campaign runner, and the wallet,
//! payment-request and service sweepers. [`Workers::spawn`] runs each under [`supervise`]
//! (restarted after a panic, stopped by the shutdown signal), every one on the same loop,
//! [`poll_until_shutdown`]: a pass; the next at once when it was busy, else after its pause.
//! The server spawns them beside its projectors; tests drive a worker's `drain` or `run_once`
//! directly.
//!
//! The shared parts (decision 0013): [`Admission`] copies a projector's feed into a worker's own
//! table; [`LeaseClaim`] claims rows under a lease, on the worker's own table ([`LeaseClaim::new`])
//! or on a table a projector owns, the leases kept in `work_leases` ([`LeaseClaim::on_feed`]);
//! [`Queue`] claims the rows of a worker that calls out, one at a time.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::calls::FollowUpWorker;
use crate::campaigns::{CampaignConfig, CampaignRunner};
use crate::dispatch::Commands;
use crate::error::CommandError;
use crate::installation::InstallationWorker;
use crate::installation::ServiceSweeper;
use crate::intake::inbox::InboxProcessor;
use crate::keystore::KeyStore;
use crate::media::{FetcherConfig, MediaFetcher};
use crate::outbound::whatsapp::{SenderConfig, WhatsAppSender};
use crate::payments::expiry::RequestExpirySweeper;
use crate::wallet_sweeper::WalletSweeper;

/// Runs `pass` until `shutdown` turns true. `pass` answers whether it was busy (a full batch:
/// more rows are likely waiting); an idle pass waits `poll` (or until `kick` is notified, when
/// given). A failed pass is logged once and retried on the next one.
pub async fn poll_until_shutdown<F, Fut>(
    name: &'static str,
    poll: Duration,
    mut shutdown: watch::Receiver<bool>,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, CommandError>>,
{
    poll_or_kick(name, poll, None, &mut shutdown, &mut pass).await;
}

async fn poll_or_kick<F, Fut>(
    name: &'static str,
    poll: Duration,
    kick: Option<&Notify>,
    shutdown: &mut watch::Receiver<bool>,
    pass: &mut F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, CommandError>>,
{
    loop {
        let busy = match pass().await {
            Ok(busy) => busy,
            Err(e) => {
                tracing::error!(worker = name, error = %e, "worker pass failed; retrying");
                false
            }
        };
        if !busy {
            match kick {
                Some(kick) => tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = kick.notified() => {}
                    _ = shutdown.changed() => {}
                },
                None => tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = shutdown.changed() => {}
                },
            }
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// Runs the task `make` builds until it returns; restarts it after a panic (after 1 s, doubling
/// up to a minute), unless shutting down.
pub async fn supervise<F, Fut>(name: &'static str, shutdown: watch::Receiver<bool>, make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut pause = Duration::from_secs(1);
    loop {
        match tokio::spawn(make()).await {
            Ok(()) => return,
            Err(e) if e.is_panic() => {
                tracing::error!(
                    task = name,
                    "background task panicked; restarting in {} s",
                    pause.as_secs()
                );
            }
            Err(_) => return,
        }
        if *shutdown.borrow() {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(60));
    }
}

/// How the workers that call out are configured; `None` leaves that worker off.
#[derive(Debug, Clone, Default)]
pub struct WorkerSettings {
    /// The WhatsApp sender's (off without a Graph API token: messages stay queued).
    pub sender: Option<SenderConfig>,
    /// The media fetcher's (off without a Graph API token).
    pub fetcher: Option<FetcherConfig>,
    pub campaigns: CampaignConfig,
    /// The payment intake the payment requests' sweeper closes expired requests with their
    /// provider and polls Paynow through (without it, it only expires them).
    pub payments: Option<crate::payments::PaymentIntake>,
}

/// Every background worker of the write side.
#[derive(Clone, Debug)]
pub struct Workers {
    pub inbox: InboxProcessor,
    /// Notified when a webhook stored a delivery, so the inbox runs at once.
    pub inbox_kick: Arc<Notify>,
    pub follow_ups: FollowUpWorker,
    pub sender: Option<WhatsAppSender>,
    pub media: Option<MediaFetcher>,
    pub installations: InstallationWorker,
    pub campaigns: CampaignRunner,
    pub wallet_sweeper: WalletSweeper,
    pub request_expiry: RequestExpirySweeper,
    pub service_sweeper: ServiceSweeper,
}

impl Workers {
    /// Builds every worker over `commands` and `keys`.
    pub fn new(commands: &Commands, keys: &KeyStore, settings: WorkerSettings) -> Result<Self, CommandError> {
        let sender = settings
            .sender
            .map(|config| WhatsAppSender::new(commands.clone(), keys.clone(), config))
            .transpose()?;
        let media = settings
            .fetcher
            .map(|config| MediaFetcher::new(commands.clone(), keys.master().clone(), config))
            .transpose()?;
        Ok(Self {
            inbox: InboxProcessor::new(commands.clone(), keys.clone()),
            inbox_kick: Arc::new(Notify::new()),
            follow_ups: FollowUpWorker::new(commands.clone(), keys.clone()),
            sender,
            media,
            installations: InstallationWorker::new(commands.clone(), keys.clone()),
            campaigns: CampaignRunner::new(commands.clone(), keys.clone(), settings.campaigns),
            wallet_sweeper: WalletSweeper::new(commands.clone()),
            request_expiry: match settings.payments {
                Some(intake) => {
                    RequestExpirySweeper::new(commands.clone()).with_intake(intake, Duration::from_secs(20))
                }
                None => RequestExpirySweeper::new(commands.clone()),
            },
            service_sweeper: ServiceSweeper::new(commands.clone()),
        })
    }

    /// Spawns every worker, each supervised, until `shutdown` turns true. The pauses between
    /// idle passes: the sender and the campaign runner 1 s, the inbox, the follow-ups, the media
    /// fetcher and the installation process manager 2 s, the sweepers 5 s.
    pub fn spawn(&self, shutdown: &watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        let (inbox, kick) = (self.inbox.clone(), self.inbox_kick.clone());
        spawn_one(&mut tasks, "inbox", shutdown, move |stop| {
            run_inbox(inbox.clone(), kick.clone(), stop)
        });
        let follow_ups = self.follow_ups.clone();
        spawn_one(&mut tasks, "call-follow-ups", shutdown, move |stop| {
            run_follow_ups(follow_ups.clone(), stop)
        });
        if let Some(sender) = &self.sender {
            let sender = sender.clone();
            spawn_one(&mut tasks, "whatsapp-sender", shutdown, move |stop| {
                sender.clone().run(Duration::from_secs(1), stop)
            });
        }
        if let Some(media) = &self.media {
            let media = media.clone();
            spawn_one(&mut tasks, "media-fetcher", shutdown, move |stop| {
                media.clone().run(Duration::from_secs(2), stop)
            });
        }
        let installations = self.installations.clone();
        spawn_one(&mut tasks, "installation-pm", shutdown, move |stop| {
            installations.clone().run(Duration::from_secs(2), stop)
        });
        let campaigns = self.campaigns.clone();
        spawn_one(&mut tasks, "campaign-runner", shutdown, move |stop| {
            campaigns.clone().run(Duration::from_secs(1), stop)
        });
        let wallet_sweeper = self.wallet_sweeper.clone();
        spawn_one(&mut tasks, "wallet-sweeper", shutdown, move |stop| {
            wallet_sweeper.clone().run(Duration::from_secs(5), stop)
        });
        let request_expiry = self.request_expiry.clone();
        spawn_one(&mut tasks, "payment-request-expiry", shutdown, move |stop| {
            request_expiry.clone().run(Duration::from_secs(5), stop)
        });
        let service_sweeper = self.service_sweeper.clone();
        spawn_one(&mut tasks, "service-sweeper", shutdown, move |stop| {
            service_sweeper.clone().run(Duration::from_secs(5), stop)
        });
        tasks
    }
}

/// Spawns `make`'s task under [`supervise`], handing it the shutdown signal.
fn spawn_one<F, Fut>(tasks: &mut Vec<JoinHandle<()>>, name: &'static str, shutdown: &watch::Receiver<bool>, make: F)
where
    F: Fn(watch::Receiver<bool>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let stop = shutdown.clone();
    tasks.push(tokio::spawn(supervise(name, shutdown.clone(), move || {
        make(stop.clone())
    })));
}

/// The webhook inbox: at once when a delivery arrives (`kick`), and every 2 s for retries,
/// crashed claims and numbers mapped by another process.
async fn run_inbox(inbox: InboxProcessor, kick: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
    let mut pass = || {
        let inbox = inbox.clone();
        async move {
            let done = inbox.drain().await?;
            if done.claimed() > 0 {
                tracing::info!(
                    done = done.done,
                    unmapped = done.unmapped,
                    failed = done.failed,
                    retry = done.retry,
                    "inbox processed"
                );
            }
            // `drain` works until nothing is left: the next pass waits.
            Ok(false)
        }
    };
    poll_or_kick("inbox", Duration::from_secs(2), Some(&kick), &mut shutdown, &mut pass).await;
}

/// The call follow-ups (`call_follow_ups` rows the projector adds), every 2 s: decides, queues
/// due templates, records outcomes.
async fn run_follow_ups(follow_ups: FollowUpWorker, mut shutdown: watch::Receiver<bool>) {
    let mut pass = || {
        let follow_ups = follow_ups.clone();
        async move {
            let pass = follow_ups.drain().await?;
            if pass.worked() > 0 {
                tracing::info!(
                    scheduled = pass.scheduled,
                    no_rule = pass.no_rule,
                    queued = pass.queued,
                    recorded = pass.recorded,
                    refused = pass.refused,
                    retry = pass.retry,
                    "call follow-ups decided"
                );
            }
            Ok(false)
        }
    };
    poll_or_kick(
        "call-follow-ups",
        Duration::from_secs(2),
        None,
        &mut shutdown,
        &mut pass,
    )
    .await;
}

/// How long a claimed row stays invisible to other workers: a worker that stops mid-row leaves
/// it to be claimed again after this.
pub const LEASE_SECS: u32 = 60;

/// The claim of a work list worked under leases, the one statement every lease worker uses:
/// up to `$1` ready rows, in the list's order, skipping rows another worker holds, each leased
/// for [`LEASE_SECS`] (its `not_before` moved on) and its `attempts` counted, in one statement
/// committed before any work, so two workers never work one row and a crashed worker's rows
/// come back when their lease ends.
#[derive(Debug, Clone)]
pub struct LeaseClaim {
    sql: String,
}

impl LeaseClaim {
    /// The claim of `table`'s rows identified by the columns `key` (`"tenant_id, call_id"`)
    /// that meet `ready` (an SQL condition; `$2` and on are the caller's), ordered by `order`,
    /// answering `returning`.
    pub fn new(table: &str, key: &str, ready: &str, order: &str, returning: &str) -> Self {
        Self {
            sql: format!(
                "UPDATE {table} SET not_before = now() + interval '{LEASE_SECS} seconds', attempts = attempts + 1
                  WHERE ({key}) IN (
                        SELECT {key} FROM {table}
                         WHERE ({ready}) AND not_before <= now()
                         ORDER BY {order}
                         LIMIT $1
                           FOR UPDATE SKIP LOCKED)
              RETURNING {returning}"
            ),
        }
    }

    /// The claim of a feed's rows: a table a projector owns (`wallet_open_transfers`,
    /// `service_sla_watch`, …), whose leases the worker keeps beside it in `work_leases` under
    /// `worker`, so the projector stays the table's only writer and a rebuild keeps them
    /// (decision 0013). Rows are identified by the columns `key`, meet `ready` (on the feed's
    /// columns; `$2` and on are the caller's), and have no live lease; each is leased for
    /// [`LEASE_SECS`] and its attempts counted. The lease is taken by an upsert, which locks the
    /// lease row and rechecks it, so two workers never claim one row. A row given up
    /// ([`LeaseClaim::give_up`]) is skipped while its `version` column (when given) is
    /// unchanged.
    pub fn on_feed(
        worker: &str,
        feed: &str,
        key: &str,
        version: Option<&str>,
        ready: &str,
        order: &str,
        returning: &str,
    ) -> Self {
        let item = format!(
            "jsonb_build_array({})",
            key.split(',')
                .map(|c| format!("f.{}", c.trim()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let version = version.map_or_else(|| "NULL::bigint".to_string(), |v| format!("f.{v}"));
        Self {
            sql: format!(
                "WITH picked AS (
                      SELECT f.*, {item} AS lease_item, {version} AS lease_version FROM {feed} f
                       WHERE ({ready})
                         AND NOT EXISTS (SELECT 1 FROM work_leases l
                                          WHERE l.worker = '{worker}' AND l.item = {item}
                                            AND (l.not_before > now()
                                                 OR (l.given_up AND l.version IS NOT DISTINCT FROM {version})))
                       ORDER BY {order}
                       LIMIT $1),
                  leased AS (
                      INSERT INTO work_leases (worker, item, version, not_before, attempts)
                      SELECT '{worker}', lease_item, lease_version, now() + interval '{LEASE_SECS} seconds', 1 FROM picked
                      ON CONFLICT (worker, item) DO UPDATE
                         SET not_before = excluded.not_before, attempts = work_leases.attempts + 1,
                             version = excluded.version, given_up = false, updated_at = now()
                       WHERE work_leases.not_before <= now()
                         AND NOT (work_leases.given_up AND work_leases.version IS NOT DISTINCT FROM excluded.version)
                      RETURNING item)
                 SELECT {returning} FROM picked WHERE lease_item IN (SELECT item FROM leased)"
            ),
        }
    }

    /// Records the last error of a feed row's lease (`worker`, the row's key values in the
    /// claim's `key` order); `give_up` stops claiming the row until its version changes.
    pub async fn record(
        pool: &sqlx::PgPool,
        worker: &str,
        key: &[&str],
        error: Option<&str>,
        give_up: bool,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE work_leases SET last_error = $3, given_up = $4, updated_at = now()
              WHERE worker = $1 AND item = to_jsonb($2::text[])",
        )
        .bind(worker)
        .bind(key)
        .bind(error)
        .bind(give_up)
        .execute(pool)
        .await?;
        Ok(())
    }

    /// Stops claiming a feed row until its version changes (see [`LeaseClaim::record`]).
    pub async fn give_up(pool: &sqlx::PgPool, worker: &str, key: &[&str], error: &str) -> Result<(), sqlx::Error> {
        Self::record(pool, worker, key, Some(error), true).await
    }

    /// Claims up to `limit` rows of a claim whose condition has no binds of its own, each read
    /// as a `T` (its fields named as the `returning` columns).
    pub async fn fetch<T>(&self, pool: &sqlx::PgPool, limit: i64) -> Result<Vec<T>, sqlx::Error>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
    {
        sqlx::query_as(&self.sql).bind(limit).fetch_all(pool).await
    }

    /// The statement, ready for its binds: `$1` the most rows to claim, then the condition's.
    pub fn query(&self) -> sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments> {
        sqlx::query(&self.sql)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_claim_skips_held_rows_and_leases_what_it_takes() {
        let claim = LeaseClaim::new(
            "campaign_runs",
            "tenant_id, campaign_id",
            "NOT idle",
            "not_before",
            "tenant_id, campaign_id",
        );
        let sql: String = claim.sql.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(
            sql,
            "UPDATE campaign_runs SET not_before = now() + interval '60 seconds', attempts = attempts + 1 \
             WHERE (tenant_id, campaign_id) IN ( SELECT tenant_id, campaign_id FROM campaign_runs \
             WHERE (NOT idle) AND not_before <= now() ORDER BY not_before LIMIT $1 FOR UPDATE SKIP LOCKED) \
             RETURNING tenant_id, campaign_id"
        );
    }
}

/// The queue of a worker that calls out (the WhatsApp sender's `outbox`, the media fetcher's
/// `media_jobs`): rows move `pending` → the working state (claimed one at a time, just before
/// the call, so a claim's age bounds the call in flight) → a final state or back to `pending`
/// with a later `next_attempt_at`. The table has `state`, `attempts`, `claimed_at`,
/// `next_attempt_at`, `updated_at` and `last_error`.
#[derive(Debug, Clone)]
pub struct Queue {
    claim: String,
    stale: String,
}

/// What becomes of a row found in the working state after its worker stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// Back to `pending`, to be worked again (the call has no effect when repeated).
    Retry,
    /// To `needs_operator` (the call may have had its effect: never repeated blindly).
    Operator,
}

impl Queue {
    /// The queue of `table`, whose rows are identified by `id`, worked in the state `working`,
    /// answering `returning` when claimed; rows stale after their worker stopped go as `stale`
    /// says, with `reason` as their last error.
    pub fn new(table: &str, id: &str, working: &str, returning: &str, stale: Stale, reason: &str) -> Self {
        let reason = reason.replace('\'', "''");
        let to = match stale {
            Stale::Retry => "state = 'pending', claimed_at = NULL, next_attempt_at = now()",
            Stale::Operator => "state = 'needs_operator'",
        };
        Self {
            claim: format!(
                "UPDATE {table} SET state = '{working}', attempts = attempts + 1, claimed_at = now(), updated_at = now()
                  WHERE {id} = (SELECT {id} FROM {table}
                                 WHERE state = 'pending' AND next_attempt_at <= now()
                                 ORDER BY next_attempt_at, {id}
                                 LIMIT 1
                                 FOR UPDATE SKIP LOCKED)
                  RETURNING {returning}"
            ),
            stale: format!(
                "UPDATE {table} SET {to}, updated_at = now(), last_error = '{reason}'
                  WHERE state = '{working}' AND claimed_at < now() - make_interval(secs => $1)"
            ),
        }
    }

    /// Claims the next due row, if any (skipping rows another worker holds).
    pub async fn claim_one(&self, pool: &sqlx::PgPool) -> Result<Option<sqlx::postgres::PgRow>, sqlx::Error> {
        sqlx::query(&self.claim).fetch_optional(pool).await
    }

    /// Moves rows left in the working state longer than `after` as [`Stale`] says; answers how
    /// many.
    pub async fn release_stale(&self, pool: &sqlx::PgPool, after: Duration) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(&self.stale)
            .bind(after.as_secs_f64())
            .execute(pool)
            .await?
            .rows_affected())
    }
}

/// How many feed rows one admission statement copies at most ([`Admission::run`] repeats until
/// the feed is copied).
const ADMISSION_BATCH: i64 = 5_000;

/// A worker's intake from its projector's feed (decision 0013, migration `..83`): the feed
/// (`outbox_feed`, `call_follow_up_feed`, …) is a read model the projector alone writes and a
/// rebuild clears; the worker's table is its own. `Admission` copies the feed rows past the
/// worker's mark (`work_admissions`, the highest feed `position` copied) into the worker's
/// table with the worker's statement, and moves the mark, in one statement. A rebuilt feed
/// brings its rows back at the positions they had, at or below the mark, so a rebuild copies
/// nothing again and no work is repeated; a row whose position moved (the log recorded an
/// outcome) is copied again, which the worker's statement treats as an update.
#[derive(Debug, Clone)]
pub struct Admission {
    feed: &'static str,
    sql: String,
}

impl Admission {
    /// The admission from `feed` by `apply`: an `INSERT … SELECT … FROM new …` or
    /// `UPDATE … FROM new …` statement over `new`, the feed's rows past the mark (every column
    /// of the feed), oldest first.
    pub fn new(feed: &'static str, apply: &str) -> Self {
        Self {
            feed,
            sql: format!(
                "WITH new AS (SELECT * FROM {feed}
                               WHERE position > coalesce((SELECT position FROM work_admissions WHERE feed = '{feed}'), 0)
                               ORDER BY position
                               LIMIT {ADMISSION_BATCH}),
                      applied AS ({apply} RETURNING 1),
                      marked AS (INSERT INTO work_admissions (feed, position)
                                 SELECT '{feed}', max(position) FROM new HAVING count(*) > 0
                                 ON CONFLICT (feed) DO UPDATE
                                    SET position = greatest(work_admissions.position, excluded.position),
                                        updated_at = now())
                 SELECT (SELECT count(*) FROM new), (SELECT count(*) FROM applied)"
            ),
        }
    }

    /// The feed this admission reads.
    pub fn feed(&self) -> &'static str {
        self.feed
    }

    /// Copies everything the feed gained since the mark; answers how many feed rows were read.
    /// Concurrent admissions of one feed (two server processes) are harmless: each statement
    /// is idempotent and the mark only moves forward.
    pub async fn run(&self, pool: &sqlx::PgPool) -> Result<u64, sqlx::Error> {
        let mut total = 0;
        loop {
            let (read, _applied): (i64, i64) = sqlx::query_as(&self.sql).fetch_one(pool).await?;
            total += u64::try_from(read).unwrap_or(0);
            if read < ADMISSION_BATCH {
                return Ok(total);
            }
        }
    }
}
