//! A slow subscriber (issue 13): it never slows appends or other subscribers, and one that
//! stays behind the log is closed with `SUBSCRIBER_TOO_SLOW`, naming the cursor of the last
//! event it was sent; resumed from there it gets exactly the rest.
//!
//! The slow client is served over an in-memory pipe of 1 KiB: when it stops reading, the
//! server is held back after exactly that much (no kernel socket buffers of unknown size).

use std::time::Duration;

use chronicle_api::app::router;
use chronicle_api::auth::Role;
use chronicle_tests::ws::{ack, connect, connect_piped, next, subscribe_events};
use chronicle_tests::*;
use serde_json::Value;
use sqlx::PgPool;

const NUMBER: &str = "15550002222";
const PHONE: &str = "263771000031";
const FIELDS: &str = "cursor sequence eventType";
const GRACE: Duration = Duration::from_millis(300);

/// Appends `count` inbound messages numbered from `from`, 50 to a delivery.
async fn append_messages(app: &TestApp, from: u32, count: u32) {
    let now = chrono::Utc::now().timestamp();
    let numbers: Vec<u32> = (from..from + count).collect();
    for chunk in numbers.chunks(50) {
        let messages = chunk
            .iter()
            .map(|n| text_message(PHONE, &wamid(PHONE, *n), now, &format!("message {n}")))
            .collect();
        let (status, reply) = app
            .post_delivery(&delivery(NUMBER, &[(PHONE, "Ann")], messages, vec![]))
            .await;
        assert_eq!(status, 200, "{reply}");
    }
    app.drain().await;
}

/// Reads `count` events of subscription `id` from a client that keeps up.
async fn read_events<S>(socket: &mut tokio_tungstenite::WebSocketStream<S>, count: usize) -> Vec<Value>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut events = Vec::new();
    while events.len() < count {
        let message = next(socket).await;
        assert_eq!(message["type"], "next", "{message}");
        assert!(message["payload"]["errors"].is_null(), "{message}");
        events.push(message["payload"]["data"]["events"].clone());
    }
    events
}

fn cursors(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["cursor"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_subscriber_that_stays_behind_is_closed_naming_its_last_cursor_and_never_slows_the_others(pool: PgPool) {
    let mut settings = settings(false);
    settings.websocket.subscriber_buffer = 16;
    settings.websocket.subscriber_grace = GRACE;
    // No pings: a client waiting for a message that never comes fails within 20 s.
    settings.websocket.keep_alive = Duration::from_secs(3600);
    let app = TestApp::with_settings(pool, settings).await;
    app.tenant_with_number("acme", NUMBER).await;
    let token = app.token("acme", Role::Owner);
    let types: &[&str] = &["MessageReceived"];

    let mut slow = connect_piped(router(app.state.clone()), 1024, &token).await;
    ack(&mut slow).await;
    subscribe_events(&mut slow, "slow", None, Some(types), FIELDS).await;
    let base = format!("http://{}", app.serve().await);
    let mut fast = connect(&base, &token).await;
    ack(&mut fast).await;
    subscribe_events(&mut fast, "fast", None, Some(types), FIELDS).await;
    // Both reach the end of the (empty) history and wait at the tail.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The slow client reads nothing while 150 messages arrive: the appends finish and the
    // fast client gets every event.
    append_messages(&app, 1, 150).await;
    let mut all = read_events(&mut fast, 150).await;

    // The slow client takes one message (the server finds it behind the fan-out and reads on
    // from history), then nothing for longer than the grace while 150 more arrive.
    let mut given = read_events(&mut slow, 1).await;
    tokio::time::sleep(GRACE * 2).await;
    append_messages(&app, 151, 150).await;
    all.extend(read_events(&mut fast, 150).await);
    let all = cursors(&all);
    assert_eq!(all.len(), 300);

    // Then it reads: what was sent to it, in order, then the subscription's end.
    let error = loop {
        let message = next(&mut slow).await;
        assert_eq!(message["type"], "next", "{message}");
        if !message["payload"]["errors"].is_null() {
            break message["payload"]["errors"][0].clone();
        }
        given.push(message["payload"]["data"]["events"].clone());
    };
    assert_eq!(error["extensions"]["code"], "SUBSCRIBER_TOO_SLOW", "{error}");
    let given = cursors(&given);
    assert!(given.len() < 300, "closed before it caught up");
    assert_eq!(
        given[..],
        all[..given.len()],
        "what it was sent is the log's prefix, in order"
    );
    let last = given.last().cloned().unwrap_or_default();
    assert_eq!(
        error["extensions"]["lastCursor"],
        last.as_str(),
        "the reason names its last cursor"
    );
    assert!(error["message"].as_str().unwrap_or_default().contains(&last), "{error}");
    let complete = next(&mut slow).await;
    assert_eq!(complete["type"], "complete", "{complete}");
    assert_eq!(complete["id"], "slow");

    // Resumed after that cursor, on the same connection, it gets exactly the rest.
    subscribe_events(&mut slow, "resumed", Some(&last), Some(types), FIELDS).await;
    let rest = cursors(&read_events(&mut slow, 300 - given.len()).await);
    assert_eq!(rest[..], all[given.len()..]);
}
