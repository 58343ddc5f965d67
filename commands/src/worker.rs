//! The polling loop shared by the write side's queue workers (the outbound sender, the media
//! fetcher): run a pass; if it was full, run the next at once, else wait for `poll` or
//! shutdown. A failed pass is logged once and retried on the next one.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

use crate::error::CommandError;

/// Runs `pass` until `shutdown` turns true. `pass` answers whether it was busy (a full batch:
/// more rows are likely waiting).
pub async fn poll_until_shutdown<F, Fut>(
    name: &'static str,
    poll: Duration,
    mut shutdown: watch::Receiver<bool>,
    mut pass: F,
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
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => {}
            }
        }
        if *shutdown.borrow() {
            return;
        }
    }
}
