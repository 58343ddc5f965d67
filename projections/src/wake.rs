//! Wake-ups: telling readers of the log (projector runners, GraphQL subscriptions) that events
//! were appended, so they read now instead of at their next poll.
//!
//! A wake-up is only a hint. It carries the tenant whose events were appended and nothing else;
//! readers always read the log itself ([`crate::log::read_after`]) and always also poll, so a
//! lost wake-up costs latency, never an event. Sources:
//!
//! - [`Wakeups::postgres`]: `LISTEN` on [`PG_CHANNEL`]. Writers send the tenant id there after
//!   their append has committed, in a statement of their own (`chronicle_commands::announce`),
//!   coalesced; no notification is sent inside an appending transaction (it would make appends
//!   commit one at a time: migration `20261206000084`). Every listening process needs a
//!   connection to the primary (notifications are not sent to read replicas).
//! - [`Wakeups::redis`]: `SUBSCRIBE` to [`REDIS_CHANNEL`], to which writers publish the tenant id
//!   after a successful append ([`publish_redis`]), so many API processes (reading from replicas,
//!   say) share one fan-out. Appends by writers that do not publish (psql, another tool) are
//!   then only seen at the next poll.
//! - [`Wakeups::manual`]: no source; [`Wakeups::notify`] sends (tests, in-process writers).
//!
//! Both network sources reconnect with backoff when their connection drops, warn once per
//! outage, and after reconnecting send a wake-up to everyone ([`Wake::all`]), since appends
//! during the outage went unannounced.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::broadcast;
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// The PostgreSQL channel writers notify after commit (payload: the tenant id). The commands
/// crate names the same string (`chronicle_commands::announce::PG_WAKE_CHANNEL`).
pub const PG_CHANNEL: &str = "chronicle_events";

/// The Redis channel writers publish to after an append (payload: the tenant id). The commands
/// crate duplicates this string (it cannot depend on this crate); keep them equal.
pub const REDIS_CHANNEL: &str = "chronicle:events";

/// How many wake-ups a slow receiver may fall behind before it is told it lagged (which it
/// treats as a wake-up for everything).
const BROADCAST_CAPACITY: usize = 1024;

/// The first reconnection delay after a source's connection drops, doubled up to
/// [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The tenant id of a wake-up meant for every reader. Never a real tenant: tenant ids match
/// `^[a-z0-9][a-z0-9_-]{1,62}$` (migration `20261122000004`).
const ALL_TENANTS: &str = "*";

/// Events of this tenant were appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wake {
    /// The tenant whose events were appended, or `*` for "anything may have changed".
    pub tenant_id: String,
}

impl Wake {
    /// A wake-up for one tenant's readers (and every all-tenant reader).
    pub fn tenant(tenant_id: impl Into<String>) -> Self {
        Wake {
            tenant_id: tenant_id.into(),
        }
    }

    /// A wake-up for every reader (sent after a source reconnects).
    pub fn all() -> Self {
        Wake {
            tenant_id: ALL_TENANTS.to_owned(),
        }
    }

    /// Whether a reader of `tenant` (`None`: of every tenant) should read after this wake-up.
    pub fn concerns(&self, tenant: Option<&str>) -> bool {
        match tenant {
            None => true,
            Some(t) => self.tenant_id == t || self.tenant_id == ALL_TENANTS,
        }
    }
}

/// Aborts the source task when the last [`Wakeups`] handle is dropped.
struct SourceTask(AbortHandle);

impl Drop for SourceTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The wake-ups of one process: a broadcast fed by one source. Cheap to clone; the source
/// task stops when the last clone is dropped.
#[derive(Clone)]
pub struct Wakeups {
    sender: broadcast::Sender<Wake>,
    _source: Option<Arc<SourceTask>>,
}

impl std::fmt::Debug for Wakeups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wakeups")
            .field("receivers", &self.sender.receiver_count())
            .field("has_source", &self._source.is_some())
            .finish()
    }
}

impl Wakeups {
    /// Wake-ups with no source: only [`Wakeups::notify`] sends.
    pub fn manual() -> Self {
        let (sender, _) = broadcast::channel(BROADCAST_CAPACITY);
        Wakeups { sender, _source: None }
    }

    /// Wake-ups from `LISTEN chronicle_events` on the database of `pool`.
    ///
    /// Opens its own connection (with `pool`'s options, outside the pool) and is listening
    /// when this returns, so every append committed afterwards wakes its receivers.
    pub async fn postgres(pool: &PgPool) -> Result<Wakeups, sqlx::Error> {
        // A private pool of one connection, as PgListener::connect does: the listener never
        // takes a connection from the application's pool, and reconnecting is just acquiring.
        let listen_pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_lazy_with((*pool.connect_options()).clone());
        let listener = listen(&listen_pool).await?;
        let manual = Wakeups::manual();
        let sender = manual.sender.clone();
        let task = tokio::spawn(postgres_source(listen_pool, listener, sender));
        Ok(Wakeups {
            sender: manual.sender,
            _source: Some(Arc::new(SourceTask(task.abort_handle()))),
        })
    }

    /// Wake-ups from `SUBSCRIBE chronicle:events` on the Redis server at `url`.
    ///
    /// Subscribed when this returns, so every publication afterwards wakes its receivers.
    pub async fn redis(url: &str) -> Result<Wakeups, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let pubsub = subscribe(&client).await?;
        let manual = Wakeups::manual();
        let sender = manual.sender.clone();
        let task = tokio::spawn(redis_source(client, pubsub, sender));
        Ok(Wakeups {
            sender: manual.sender,
            _source: Some(Arc::new(SourceTask(task.abort_handle()))),
        })
    }

    /// Wakes this process's readers of `tenant_id` (and all-tenant readers).
    pub fn notify(&self, tenant_id: &str) {
        // An error only means that nobody is subscribed right now, which is fine.
        let _ = self.sender.send(Wake::tenant(tenant_id));
    }

    /// Wakes every reader of this process.
    pub fn notify_all(&self) {
        let _ = self.sender.send(Wake::all());
    }

    /// A receiver of every wake-up sent from now on. Subscribe before reading the log, so a
    /// wake-up that arrives while reading is not lost.
    pub fn subscribe(&self) -> WakeReceiver {
        WakeReceiver {
            receiver: self.sender.subscribe(),
        }
    }
}

/// Why [`WakeReceiver::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woken {
    /// A wake-up for the tenant (or for everyone) arrived, or the receiver fell behind.
    Notified,
    /// The poll interval elapsed first.
    PollElapsed,
}

/// One reader's subscription to the wake-ups.
#[derive(Debug)]
pub struct WakeReceiver {
    receiver: broadcast::Receiver<Wake>,
}

impl WakeReceiver {
    /// Waits until a wake-up concerning `tenant` (`None`: any tenant) arrives or `poll` elapses.
    ///
    /// On a wake-up, also discards every wake-up already queued behind it: the read that
    /// follows covers them. Falling behind the broadcast counts as a wake-up.
    pub async fn wait(&mut self, tenant: Option<&str>, poll: Duration) -> Woken {
        let deadline = Instant::now() + poll;
        loop {
            match tokio::time::timeout_at(deadline, self.receiver.recv()).await {
                Err(_) => return Woken::PollElapsed,
                Ok(Ok(wake)) => {
                    if wake.concerns(tenant) {
                        self.drain();
                        return Woken::Notified;
                    }
                }
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                    self.drain();
                    return Woken::Notified;
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => {
                    // No source left: plain polling.
                    tokio::time::sleep_until(deadline).await;
                    return Woken::PollElapsed;
                }
            }
        }
    }

    fn drain(&mut self) {
        loop {
            match self.receiver.try_recv() {
                Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(_) => return,
            }
        }
    }
}

/// Publishes that `tenant_id`'s events were appended. Writers call this after a successful
/// append when Redis is configured.
pub async fn publish_redis(
    conn: &mut impl redis::aio::ConnectionLike,
    tenant_id: &str,
) -> Result<(), redis::RedisError> {
    redis::cmd("PUBLISH")
        .arg(REDIS_CHANNEL)
        .arg(tenant_id)
        .query_async::<i64>(conn)
        .await?;
    Ok(())
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // Reconnection is this module's business (with backoff and a wake-up for all after it),
    // so a lost connection surfaces as `Ok(None)` from try_recv without reconnecting there.
    listener.eager_reconnect(false);
    listener.listen(PG_CHANNEL).await?;
    Ok(listener)
}

/// Doubles the backoff, up to [`MAX_BACKOFF`].
fn next_backoff(backoff: Duration) -> Duration {
    (backoff * 2).min(MAX_BACKOFF)
}

async fn postgres_source(pool: PgPool, first: PgListener, sender: broadcast::Sender<Wake>) {
    let mut listener = Some(first);
    let mut backoff = MIN_BACKOFF;
    // Only a lost connection leads to a reconnection attempt, and its loss was warned about:
    // failed attempts during the same outage log at debug level.
    loop {
        let mut current = match listener.take() {
            Some(l) => l,
            None => match listen(&pool).await {
                Ok(l) => {
                    tracing::info!(channel = PG_CHANNEL, "LISTEN wake-ups reconnected");
                    backoff = MIN_BACKOFF;
                    // Appends during the outage went unannounced.
                    let _ = sender.send(Wake::all());
                    l
                }
                Err(error) => {
                    tracing::debug!(%error, channel = PG_CHANNEL, "LISTEN reconnection failed");
                    tokio::time::sleep(backoff).await;
                    backoff = next_backoff(backoff);
                    continue;
                }
            },
        };
        loop {
            match current.try_recv().await {
                Ok(Some(notification)) => {
                    let _ = sender.send(Wake::tenant(notification.payload()));
                }
                Ok(None) => {
                    tracing::warn!(
                        channel = PG_CHANNEL,
                        "LISTEN connection lost; polling until it reconnects"
                    );
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, channel = PG_CHANNEL,
                        "LISTEN connection failed; polling until it reconnects");
                    break;
                }
            }
        }
        drop(current);
        tokio::time::sleep(backoff).await;
        backoff = next_backoff(backoff);
    }
}

async fn subscribe(client: &redis::Client) -> Result<redis::aio::PubSub, redis::RedisError> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(REDIS_CHANNEL).await?;
    Ok(pubsub)
}

async fn redis_source(client: redis::Client, first: redis::aio::PubSub, sender: broadcast::Sender<Wake>) {
    let mut pubsub = Some(first);
    let mut backoff = MIN_BACKOFF;
    // Only a lost connection leads to a reconnection attempt, and its loss was warned about:
    // failed attempts during the same outage log at debug level.
    loop {
        let current = match pubsub.take() {
            Some(p) => p,
            None => match subscribe(&client).await {
                Ok(p) => {
                    tracing::info!(channel = REDIS_CHANNEL, "Redis wake-ups reconnected");
                    backoff = MIN_BACKOFF;
                    let _ = sender.send(Wake::all());
                    p
                }
                Err(error) => {
                    tracing::debug!(%error, channel = REDIS_CHANNEL, "Redis reconnection failed");
                    tokio::time::sleep(backoff).await;
                    backoff = next_backoff(backoff);
                    continue;
                }
            },
        };
        let mut messages = current.into_on_message();
        while let Some(message) = messages.next().await {
            match message.get_payload::<String>() {
                Ok(tenant) => {
                    let _ = sender.send(Wake::tenant(tenant));
                }
                // Not text: still an append somewhere.
                Err(_) => {
                    let _ = sender.send(Wake::all());
                }
            }
        }
        // The message stream ends when the connection does.
        tracing::warn!(
            channel = REDIS_CHANNEL,
            "Redis subscription lost; polling until it reconnects"
        );
        drop(messages);
        tokio::time::sleep(backoff).await;
        backoff = next_backoff(backoff);
    }
}
