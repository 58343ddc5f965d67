//! Upcasting (issue 13): an event stored at an older version of its type stays readable. A
//! `DeliveryStatusRecorded` stored at 1.0, before `current` and `window_closed` existed, is
//! read at 1.1 by the event contract (with `current` = `status`), folded by the aggregate (a
//! repeated status adds nothing; a later one moves `current`) and by the projectors (a rebuild
//! from zero), while the log keeps the row as it was stored.

use chronicle_api::auth::Role;
use chronicle_tests::*;
use serde_json::{json, Value};
use sqlx::PgPool;

const NUMBER: &str = "333000444";
const RECIPIENT: &str = "263771000021";

const STATUSES: &str = "query($filter: EventLogFilter) {
  eventLog(first: 50, filter: $filter) {
    edges { node { eventType eventVersion sequence data } } } }";

async fn statuses(app: &TestApp) -> Vec<Value> {
    let reply = app
        .gql(
            "acme",
            Role::Owner,
            STATUSES,
            json!({"filter": {"eventTypes": ["DeliveryStatusRecorded"]}}),
        )
        .await;
    reply["data"]["eventLog"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("no page: {reply}"))
        .iter()
        .map(|edge| edge["node"].clone())
        .collect()
}

async fn post_status(app: &TestApp, status_name: &str, at: i64) {
    let body = delivery(
        NUMBER,
        &[],
        vec![],
        vec![status("wamid.out.u", status_name, at, RECIPIENT)],
    );
    app.post_delivery(&body).await;
    app.drain().await;
}

/// Rewrites the stored `DeliveryStatusRecorded` events into their 1.0 shape, as events
/// stored before 1.1 are (the log refuses updates: its triggers are off for this one
/// transaction, as only a test may do).
async fn store_as_version_1_0(pool: &PgPool) {
    let mut tx = pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let rewritten = sqlx::query(
        "UPDATE events
            SET payload = (payload::jsonb #- '{DeliveryStatusRecorded,current}'
                                          #- '{DeliveryStatusRecorded,window_closed}'
                                          #- '{DeliveryStatusRecorded,external}')::json,
                event_version = '1.0'
          WHERE event_type = 'DeliveryStatusRecorded'",
    )
    .execute(&mut *tx)
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .rows_affected();
    assert_eq!(rewritten, 1);
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_delivery_status_stored_at_1_0_is_read_at_1_1_by_the_contract_the_aggregate_and_the_projectors(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    app.tenant_with_number("acme", NUMBER).await;
    // The recipient wrote first (a status never opens a conversation, decision 0020).
    let hello = delivery(
        NUMBER,
        &[(RECIPIENT, "Rudo")],
        vec![text_message(RECIPIENT, "wamid.in.u", 1_790_000_000, "hi")],
        vec![],
    );
    app.post_delivery(&hello).await;
    app.drain().await;
    post_status(&app, "sent", 1_790_000_010).await;
    let written = statuses(&app).await;
    assert_eq!(written.len(), 1);
    assert_eq!(
        written[0]["eventVersion"], "1.1",
        "new events are written at the current version"
    );
    store_as_version_1_0(&pool).await;

    // The contract reads it at 1.1, with the fields 1.1 always has.
    let read = statuses(&app).await;
    assert_eq!(read.len(), 1);
    assert_eq!(read[0]["eventVersion"], "1.1");
    assert_eq!(read[0]["data"]["status"], "sent");
    assert_eq!(
        read[0]["data"]["current"], "sent",
        "current is the status of a 1.0 event"
    );
    assert_eq!(read[0]["data"]["window_closed"], false);
    // The log keeps what was stored.
    let stored: (String, Value) = sqlx::query_as(
        "SELECT event_version, payload::jsonb -> 'DeliveryStatusRecorded'
           FROM events WHERE event_type = 'DeliveryStatusRecorded'",
    )
    .fetch_one(&pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored.0, "1.0");
    assert!(stored.1.get("current").is_none(), "{}", stored.1);

    // A fresh process (no cached aggregate) folds the 1.0 event, without snapshots (every
    // event read) and with them (the default: the stream read with its snapshot): the repeated
    // `sent` is already a fact and records nothing; later statuses move the message on.
    let mut no_snapshots = settings(false);
    no_snapshots.snapshots.conversation = None;
    let unsnapshotted = TestApp::with_settings(pool.clone(), no_snapshots).await;
    post_status(&unsnapshotted, "sent", 1_790_000_010).await;
    post_status(&unsnapshotted, "delivered", 1_790_000_020).await;
    let fresh = TestApp::new(pool.clone()).await;
    post_status(&fresh, "sent", 1_790_000_010).await;
    post_status(&fresh, "read", 1_790_000_030).await;
    let read = statuses(&fresh).await;
    assert_eq!(read.len(), 3, "the 1.0 fact is known: {read:?}");
    assert_eq!(read[1]["data"]["status"], "delivered");
    assert_eq!(read[1]["data"]["current"], "delivered");
    assert_eq!(read[2]["eventVersion"], "1.1");
    assert_eq!(read[2]["data"]["current"], "read");

    // The projectors read it too: rebuilt from zero, the message's status is the latest.
    fresh.rebuild_only(&["conversations", "messages"]).await;
    let reference = fresh
        .state
        .id_key
        .message_ref(&tenant("acme"), "whatsapp", "wamid.out.u");
    let status: String = sqlx::query_scalar("SELECT status FROM message_statuses WHERE message_ref = $1")
        .bind(&reference)
        .fetch_one(&pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, "read");
    let timeline: i64 = sqlx::query_scalar("SELECT count(*) FROM message_timeline WHERE message_ref = $1")
        .bind(&reference)
        .fetch_one(&pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(timeline, 3, "every fact is in the timeline, the 1.0 one included");
}
