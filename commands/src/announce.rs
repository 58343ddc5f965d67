//! Wake-ups after commit: telling readers of the log that a tenant's events were appended.
//!
//! Appending transactions send no notification (migration `20261206000084`): PostgreSQL holds
//! the notification queue's lock from before commit until the commit is flushed, so a `NOTIFY`
//! in every append made appends commit one at a time. Instead, after an append has committed,
//! [`Announcer::appended`]
//!
//! - wakes this process's readers at once (the hook given by [`Announcer::with_local`]: the
//!   API's projector runners, subscriptions and read-your-writes waits);
//! - and wakes other processes from a background task, coalescing the tenants announced while
//!   the previous wake-up was on its way: through Redis (`PUBLISH` on
//!   [`crate::REDIS_WAKE_CHANNEL`]) when configured, else through PostgreSQL
//!   (`pg_notify('chronicle_events', tenant)`) in a statement of its own, on a connection of
//!   its own with `synchronous_commit = off`, so no write transaction waits on the
//!   notification queue and the notifying transaction does not wait for a flush.
//!
//! A wake-up is a hint: readers also poll, so a lost one costs latency, never an event. A
//! failed wake-up is logged once per outage.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// The PostgreSQL channel readers `LISTEN` on (payload: the tenant id). The projections crate
/// names the same string (`chronicle_projections::wake::PG_CHANNEL`); keep them equal.
pub const PG_WAKE_CHANNEL: &str = "chronicle_events";

/// A hook waking this process's readers of a tenant.
pub type LocalWake = Arc<dyn Fn(&str) + Send + Sync>;

/// Where other processes hear of appends.
#[derive(Clone)]
enum Remote {
    /// `pg_notify` outside write transactions (the default).
    Postgres(PgPool),
    /// `PUBLISH` on Redis.
    Redis(redis::aio::ConnectionManager),
    /// Nobody else listens (a tool appending into a database no server reads yet).
    None,
}

/// The tenants waiting to be announced to other processes, and the signal to the task.
#[derive(Default)]
struct Pending {
    tenants: Mutex<BTreeSet<String>>,
    signal: Notify,
    /// Whether the task is sending a wake-up right now.
    sending: AtomicBool,
}

/// Stops the background task when the last announcer is dropped.
struct Task(AbortHandle);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Wakes readers after an append has committed (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct Announcer {
    local: Option<LocalWake>,
    remote: Remote,
    pending: Arc<Pending>,
    started: Arc<AtomicBool>,
    task: Arc<Mutex<Option<Task>>>,
}

impl std::fmt::Debug for Announcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let remote = match self.remote {
            Remote::Postgres(_) => "postgres",
            Remote::Redis(_) => "redis",
            Remote::None => "none",
        };
        f.debug_struct("Announcer")
            .field("local", &self.local.is_some())
            .field("remote", &remote)
            .finish()
    }
}

impl Announcer {
    /// Announces to other processes through `pg_notify` on the database of `pool`, from a
    /// connection of its own (opened on the first announcement).
    pub fn postgres(pool: &PgPool) -> Self {
        let options = (*pool.connect_options()).clone();
        let notify_pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // The notifying transaction writes nothing worth waiting a flush for.
                    sqlx::query("SET synchronous_commit = off").execute(&mut *conn).await?;
                    Ok(())
                })
            })
            .connect_lazy_with(options);
        Self::with_remote(Remote::Postgres(notify_pool))
    }

    /// Announces to other processes by publishing on Redis.
    pub fn redis(connection: redis::aio::ConnectionManager) -> Self {
        Self::with_remote(Remote::Redis(connection))
    }

    /// Announces to nobody outside this process.
    pub fn local_only() -> Self {
        Self::with_remote(Remote::None)
    }

    fn with_remote(remote: Remote) -> Self {
        Self {
            local: None,
            remote,
            pending: Arc::default(),
            started: Arc::default(),
            task: Arc::default(),
        }
    }

    /// Also wakes this process's readers, at once, through `wake`.
    pub fn with_local(mut self, wake: LocalWake) -> Self {
        self.local = Some(wake);
        self
    }

    /// Announces that events of `tenant` were appended and committed. Never waits on the
    /// network: other processes are told from the background task.
    pub fn appended(&self, tenant: &str) {
        if let Some(local) = &self.local {
            local(tenant);
        }
        if matches!(self.remote, Remote::None) {
            return;
        }
        if let Ok(mut tenants) = self.pending.tenants.lock() {
            if !tenants.contains(tenant) {
                tenants.insert(tenant.to_owned());
            }
        }
        self.start();
        self.pending.signal.notify_one();
    }

    /// Waits (up to `within`) until every announcement made so far has been sent to other
    /// processes. A process about to exit calls it, so its last appends are announced.
    pub async fn flush(&self, within: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            let waiting = self.pending.tenants.lock().map(|t| !t.is_empty()).unwrap_or(false);
            if !waiting && !self.pending.sending.load(Ordering::Acquire) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    /// Starts the background task on the first announcement (inside the runtime that makes it).
    fn start(&self) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let handle = tokio::spawn(announce_loop(self.remote.clone(), self.pending.clone()));
        if let Ok(mut task) = self.task.lock() {
            *task = Some(Task(handle.abort_handle()));
        }
    }
}

async fn announce_loop(remote: Remote, pending: Arc<Pending>) {
    let mut failing = false;
    loop {
        pending.signal.notified().await;
        let tenants: Vec<String> = match pending.tenants.lock() {
            Ok(mut tenants) => {
                // Marked while the set is locked, so `flush` never sees neither.
                pending.sending.store(true, Ordering::Release);
                std::mem::take(&mut *tenants).into_iter().collect()
            }
            Err(_) => return,
        };
        if tenants.is_empty() {
            pending.sending.store(false, Ordering::Release);
            continue;
        }
        let sent = match &remote {
            Remote::Postgres(pool) => sqlx::query("SELECT pg_notify($1, t) FROM unnest($2::text[]) t")
                .bind(PG_WAKE_CHANNEL)
                .bind(&tenants)
                .execute(pool)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Remote::Redis(connection) => {
                let mut connection = connection.clone();
                let mut pipe = redis::pipe();
                for tenant in &tenants {
                    pipe.cmd("PUBLISH").arg(crate::REDIS_WAKE_CHANNEL).arg(tenant).ignore();
                }
                pipe.query_async::<()>(&mut connection).await.map_err(|e| e.to_string())
            }
            Remote::None => Ok(()),
        };
        pending.sending.store(false, Ordering::Release);
        match sent {
            Ok(()) => {
                if failing {
                    tracing::info!("wake-ups reach other processes again");
                }
                failing = false;
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "could not wake other processes; their readers will poll");
                }
                failing = true;
            }
        }
    }
}
