//! The live log: one reader per process tails the whole log and fans each event out to every
//! subscriber, so a thousand subscriptions cost one query per wake-up, not a thousand.
//!
//! A subscriber ([`LiveLog::stream`]) first joins the fan-out, then reads its history from
//! its own cursor with the gap-free reader until it is caught up, then takes live events,
//! skipping those its history already gave (by cursor). That handover is exact: the tail only
//! fans out readable events, which stay readable, so anything fanned out before the subscriber
//! joined is in its history, and anything after is in its queue. Both are in log order. A
//! subscriber that falls behind the fan-out's buffer goes back to reading history from its last
//! cursor, then rejoins: slow subscribers never slow the others, and never miss an event.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use sqlx::PgPool;
use tokio::sync::broadcast;

use crate::log::{head, read_after, stream_after, Cursor, LogFilter, StoredEvent};
use crate::wake::Wakeups;

/// Events buffered per subscriber before it must fall back to reading history.
pub const FAN_OUT_BUFFER: usize = 4096;

/// How many events a subscriber reads per history query.
const HISTORY_BATCH: i64 = 500;

/// The process's live log. Cheap to clone.
#[derive(Clone)]
pub struct LiveLog {
    pool: PgPool,
    events: broadcast::Sender<Arc<StoredEvent>>,
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
    /// Starts the tail from the log's current head. The tail reconnects by itself: a database
    /// error is logged and the tail resumes from its last cursor after a pause.
    pub async fn start(pool: PgPool, wakeups: Wakeups) -> Result<LiveLog, sqlx::Error> {
        let (events, _) = broadcast::channel(FAN_OUT_BUFFER);
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
                    HISTORY_BATCH,
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
            _tail: Arc::new(TailTask(task)),
        })
    }

    /// The events matching `filter` after `after`: history first, then live, forever. A
    /// database error is yielded and ends the stream; resume from the last cursor.
    pub fn stream(
        &self,
        after: Cursor,
        filter: LogFilter,
    ) -> impl Stream<Item = Result<StoredEvent, sqlx::Error>> + Send + 'static {
        let pool = self.pool.clone();
        let events = self.events.clone();
        async_stream::try_stream! {
            let mut last = after;
            loop {
                // Join first, so nothing fanned out from now on is missed...
                let mut live = events.subscribe();
                // ...then read history until caught up.
                loop {
                    let batch = read_after(&pool, last, &filter, HISTORY_BATCH).await?;
                    let done = (batch.len() as i64) < HISTORY_BATCH;
                    for event in batch {
                        last = event.cursor;
                        yield event;
                    }
                    if done {
                        break;
                    }
                }
                // Live, skipping what history gave, until this subscriber falls behind.
                loop {
                    match live.recv().await {
                        Ok(event) => {
                            if event.cursor > last && filter.matches(&event) {
                                last = event.cursor;
                                yield StoredEvent::clone(&event);
                            } else if event.cursor > last {
                                last = event.cursor;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            tracing::debug!(missed, "a live subscriber fell behind; reading history again");
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
