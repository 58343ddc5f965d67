//! The live log: one reader per process tails the whole log and fans each event out to every
//! subscriber, so a thousand subscriptions cost one query per wake-up, not a thousand.
//!
//! A subscriber ([`LiveLog::stream`]) first joins the fan-out, then reads its history from
//! its own cursor with the gap-free reader until it is caught up, then takes live events,
//! skipping those its history already gave (by cursor). That handover is exact: the tail only
//! fans out readable events, which stay readable, so anything fanned out before the subscriber
//! joined is in its history, and anything after is in its queue. Both are in log order.
//!
//! The fan-out keeps the last `buffer` events (a ring, rounded up to a power of two: its size
//! never grows, and the tail never waits for a subscriber), so a slow subscriber never slows
//! appends or the others:
//!
//! - a subscriber the ring overflowed for (a burst of appends, or its first catch-up from an
//!   old cursor) reads history from its cursor, at its own pace, then rejoins; it is back once
//!   it takes an event from the ring again;
//! - a subscriber that had been in the ring once, then overflowed it and is not back within
//!   `grace` (it has not worked through the events it missed in that time: it reads slower
//!   than the log grows, or the burst was that large) is closed with
//!   [`LiveError::FellBehind`], naming the cursor of the last event it was given. It resumes
//!   from there (pages of `eventLog`, then a new subscription after the last page's cursor),
//!   with nothing missed and nothing repeated. A first catch-up from an old cursor is never
//!   cut short.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use sqlx::PgPool;
use tokio::sync::broadcast;

use crate::log::{head, read_after, stream_after, Cursor, LogFilter, StoredEvent};
use crate::wake::Wakeups;

/// Events the fan-out keeps by default: how far a live subscriber may fall behind the tail
/// before it is closed ([`LiveError::FellBehind`]).
pub const FAN_OUT_BUFFER: usize = 4096;

/// How long by default a subscriber may stay behind the fan-out (since it overflowed it,
/// without getting back into it) before it is closed.
pub const SLOW_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Why a live stream ended.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The log could not be read; resume from the last cursor.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The subscriber stayed more than `buffer` events behind the log (see the module docs).
    #[error(
        "the subscriber fell more than {buffer} events behind the log and was closed; resume after {last_delivered}"
    )]
    FellBehind {
        /// The cursor of the last event the subscriber was given (its starting cursor when it
        /// was given none): resume after it.
        last_delivered: Cursor,
        /// The fan-out's size.
        buffer: usize,
    },
}

/// How many events a subscriber reads per history query.
const HISTORY_BATCH: i64 = 500;

/// The process's live log. Cheap to clone.
#[derive(Clone)]
pub struct LiveLog {
    pool: PgPool,
    events: broadcast::Sender<Arc<StoredEvent>>,
    buffer: usize,
    grace: std::time::Duration,
    _tail: Arc<TailTask>,
}

impl std::fmt::Debug for LiveLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveLog")
            .field("subscribers", &self.events.receiver_count())
            .finish()
    }
}

struct TailTask(tokio::task::JoinHandle<()>);

impl Drop for TailTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl LiveLog {
    /// Starts the tail from the log's current head, with the default fan-out
    /// ([`FAN_OUT_BUFFER`]). The tail reconnects by itself: a database error is logged and the
    /// tail resumes from its last cursor after a pause.
    pub async fn start(pool: PgPool, wakeups: Wakeups) -> Result<LiveLog, sqlx::Error> {
        Self::start_with(pool, wakeups, FAN_OUT_BUFFER, SLOW_GRACE).await
    }

    /// [`LiveLog::start`] with a fan-out of `buffer` events (at least 2), closing a subscriber
    /// that stays behind it for `grace` (see the module docs).
    pub async fn start_with(
        pool: PgPool,
        wakeups: Wakeups,
        buffer: usize,
        grace: std::time::Duration,
    ) -> Result<LiveLog, sqlx::Error> {
        // tokio's ring holds a power of two: say so, rather than a smaller figure.
        let buffer = buffer.max(2).next_power_of_two();
        // The tail hands out at most half the ring per query, so one query's events never
        // overflow a subscriber that keeps up.
        let tail_batch = i64::try_from(buffer / 2).unwrap_or(HISTORY_BATCH).min(HISTORY_BATCH);
        let (events, _) = broadcast::channel(buffer);
        let start = head(&pool, &LogFilter::all()).await?.unwrap_or(Cursor::START);
        let sender = events.clone();
        let tail_pool = pool.clone();
        let task = tokio::spawn(async move {
            let mut cursor = start;
            loop {
                let mut tail = Box::pin(stream_after(
                    tail_pool.clone(),
                    cursor,
                    LogFilter::all(),
                    tail_batch,
                    wakeups.subscribe(),
                ));
                while let Some(item) = tail.next().await {
                    match item {
                        Ok(event) => {
                            cursor = event.cursor;
                            // No subscriber is fine: nobody is listening right now.
                            let _ = sender.send(Arc::new(event));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "live log tail failed; resuming in 1 s");
                            break;
                        }
                    }
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        });
        Ok(LiveLog {
            pool,
            events,
            buffer,
            grace,
            _tail: Arc::new(TailTask(task)),
        })
    }

    /// How far a live subscriber may fall behind before it is closed.
    pub fn buffer(&self) -> usize {
        self.buffer
    }

    /// The events matching `filter` after `after`: history first, then live, until the
    /// subscriber falls too far behind ([`LiveError::FellBehind`], see the module docs) or the
    /// log cannot be read ([`LiveError::Database`]); either error ends the stream.
    pub fn stream(
        &self,
        after: Cursor,
        filter: LogFilter,
    ) -> impl Stream<Item = Result<StoredEvent, LiveError>> + Send + 'static {
        let pool = self.pool.clone();
        let events = self.events.clone();
        let buffer = self.buffer;
        let grace = self.grace;
        async_stream::try_stream! {
            // The last event read (matching or not) and the last one given to the subscriber.
            let mut last = after;
            let mut delivered = after;
            // Whether it was ever within the ring (at or near the tail), and since when it has
            // been behind the ring without getting back into it.
            let mut caught_up = false;
            let mut behind_since: Option<std::time::Instant> = None;
            loop {
                // Join first, so nothing fanned out from now on is missed...
                let mut live = events.subscribe();
                // ...then read history until caught up, at the subscriber's pace, unless it has
                // been behind for longer than the grace.
                loop {
                    if caught_up && behind_since.is_some_and(|since| since.elapsed() >= grace) {
                        tracing::info!(buffer, "a subscriber stays behind the log; closing it");
                        Err(LiveError::FellBehind { last_delivered: delivered, buffer })?;
                    }
                    let batch = read_after(&pool, last, &filter, HISTORY_BATCH).await?;
                    let done = (batch.len() as i64) < HISTORY_BATCH;
                    for event in batch {
                        last = event.cursor;
                        delivered = event.cursor;
                        yield event;
                    }
                    if done {
                        break;
                    }
                }
                // Live, skipping what history gave.
                loop {
                    match live.recv().await {
                        Ok(event) => {
                            // Taken from the ring without overflowing it: within `buffer` of
                            // the tail, so not behind.
                            caught_up = true;
                            behind_since = None;
                            if event.cursor > last {
                                last = event.cursor;
                                if filter.matches(&event) {
                                    delivered = event.cursor;
                                    yield StoredEvent::clone(&event);
                                }
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            // A burst (or the first catch-up): read on from the cursor; the
                            // history loop closes it if it stays behind beyond the grace.
                            behind_since.get_or_insert_with(std::time::Instant::now);
                            tracing::debug!(missed, "a subscriber fell behind the fan-out; reading history");
                            break;
                        }
                        Err(broadcast::error::RecvError::Closed) => {
                            // The tail is gone (shutdown): keep serving by polling history.
                            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                            break;
                        }
                    }
                }
            }
        }
    }
}
