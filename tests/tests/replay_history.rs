//! `chronicle-replay history` (issue 11) over the demo: log order, every filter, every format,
//! and personal fields: never ciphertext, opened with `--reveal`, `[erased]` after an erasure.

use chronicle_api::auth::Role;
use chronicle_domain::pii::MasterKey;
use chronicle_projections::log::Cursor;
use chronicle_replay::history::{history, history_command, Format, HistoryArgs, HistoryRow, ERASED, PERSONAL};
use chronicle_replay::DatabaseArgs;
use chronicle_tests::*;
use serde_json::{json, Value};
use sqlx::PgPool;

const TENANT: &str = "installer-1";

fn args(tenant: &str) -> HistoryArgs {
    HistoryArgs::of_tenant(
        tenant,
        DatabaseArgs {
            database_url: None,
            data_dir: ".chronicle".into(),
        },
    )
}

fn master() -> MasterKey {
    MasterKey::from_base64(MASTER_KEY).unwrap_or_else(|e| panic!("{e}"))
}

async fn rows(app: &TestApp, args: &HistoryArgs) -> Vec<HistoryRow> {
    let mut rows = Vec::new();
    let master = args.reveal.then(master);
    history(&app.pool, args, master, |row| {
        rows.push(row);
        Ok(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    rows
}

/// Every string in `value`, at any depth.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

fn mentions(rows: &[HistoryRow], text: &str) -> bool {
    rows.iter().any(|row| {
        let mut all = Vec::new();
        strings(&row.payload, &mut all);
        all.iter().any(|s| s.contains(text))
    })
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn history_is_the_tenants_log_in_order_and_never_prints_an_envelope(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.load_demo().await;
    app.project().await;

    let all = rows(&app, &args(TENANT)).await;
    let expected = app
        .count(&format!("SELECT count(*) FROM events WHERE tenant_id = '{TENANT}'"))
        .await;
    assert_eq!(all.len() as i64, expected);
    // Log order: cursors strictly increase.
    let cursors: Vec<Cursor> = all
        .iter()
        .map(|r| r.cursor.parse().unwrap_or_else(|e| panic!("{e}")))
        .collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]));
    assert!(all.iter().all(|r| r.aggregate_id.starts_with("installer-1:")));

    // No envelope anywhere, revealed or not; personal fields show as [personal].
    for reveal in [false, true] {
        let mut a = args(TENANT);
        a.reveal = reveal;
        let mut out = Vec::new();
        let master = reveal.then(master);
        history(&app.pool, &a, master, |row| {
            out.push(serde_json::to_string(&row).unwrap_or_default());
            Ok(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let text = out.join("\n");
        assert!(!text.contains("aes256gcm"), "an envelope was printed");
        assert!(!text.contains("\"enc\""), "an envelope was printed");
        assert_eq!(text.contains(PERSONAL), !reveal);
    }

    // A contact's name, as the read model holds it, is in its history only when revealed.
    let (contact_id, name): (String, String) = sqlx::query_as(
        "SELECT contact_id, name FROM contacts WHERE tenant_id = $1 AND name IS NOT NULL ORDER BY contact_id LIMIT 1",
    )
    .bind(TENANT)
    .fetch_one(&app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let mut of_contact = args(TENANT);
    of_contact.streams = vec![contact_id.clone()];
    let hidden = rows(&app, &of_contact).await;
    assert!(!hidden.is_empty());
    assert!(!mentions(&hidden, &name));
    of_contact.reveal = true;
    let revealed = rows(&app, &of_contact).await;
    assert!(mentions(&revealed, &name), "{name} not in {revealed:?}");
    assert!(revealed
        .iter()
        .all(|r| r.aggregate_id == format!("{TENANT}:{contact_id}")));

    // --reveal without a master key is refused.
    let error = history(&app.pool, &of_contact, None, |_| Ok(())).await.unwrap_err();
    assert!(error.to_string().contains("CHRONICLE_MASTER_KEY"), "{error}");

    // After the contact is erased: [erased], revealed or not, and the name nowhere.
    let reply = app
        .gql(
            TENANT,
            Role::Owner,
            "mutation($id: String!) { eraseContact(contactId: $id) { id } }",
            json!({"id": contact_id}),
        )
        .await;
    assert!(reply.get("errors").is_none(), "{reply}");
    let erased = rows(&app, &of_contact).await;
    assert!(!mentions(&erased, &name));
    assert!(mentions(&erased, ERASED));
    let mut everything = args(TENANT);
    everything.reveal = true;
    assert!(!mentions(&rows(&app, &everything).await, &name));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn history_filters_by_type_event_actor_time_and_cursor_and_prints_every_format(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.load_demo().await;
    let all = rows(&app, &args(TENANT)).await;
    assert!(all.len() > 100, "{}", all.len());

    let mut by_type = args(TENANT);
    by_type.aggregate_types = vec!["Order".into(), "Payment".into()];
    let found = rows(&app, &by_type).await;
    assert!(!found.is_empty());
    assert!(found
        .iter()
        .all(|r| r.aggregate_type == "Order" || r.aggregate_type == "Payment"));
    assert_eq!(
        found.len(),
        all.iter()
            .filter(|r| r.aggregate_type == "Order" || r.aggregate_type == "Payment")
            .count()
    );

    let mut by_event = args(TENANT);
    by_event.event_types = vec!["MessageReceived".into()];
    let found = rows(&app, &by_event).await;
    assert!(!found.is_empty());
    assert_eq!(
        found.len(),
        all.iter().filter(|r| r.event_type == "MessageReceived").count()
    );

    let actor = all.iter().find_map(|r| r.actor.clone()).unwrap_or_default();
    let kind = actor.split(':').next().unwrap_or_default().to_owned();
    let mut by_actor = args(TENANT);
    by_actor.actor = Some(kind.clone());
    let found = rows(&app, &by_actor).await;
    assert!(!found.is_empty());
    assert!(found
        .iter()
        .all(|r| r.actor.as_deref().is_some_and(|a| a.starts_with(&format!("{kind}:")))));
    by_actor.actor = Some(actor.clone());
    assert!(rows(&app, &by_actor)
        .await
        .iter()
        .all(|r| r.actor.as_deref() == Some(actor.as_str())));

    // Time range: [since, until).
    let middle = all[all.len() / 2].recorded_at;
    let mut by_time = args(TENANT);
    by_time.since = Some(middle);
    let later = rows(&app, &by_time).await;
    assert_eq!(later.len(), all.iter().filter(|r| r.recorded_at >= middle).count());
    by_time.since = None;
    by_time.until = Some(middle);
    let earlier = rows(&app, &by_time).await;
    assert_eq!(earlier.len() + later.len(), all.len());

    // Cursor range: (after, through].
    let mut by_cursor = args(TENANT);
    by_cursor.after = Some(all[9].cursor.parse().unwrap_or_else(|e| panic!("{e}")));
    by_cursor.through = Some(all[19].cursor.parse().unwrap_or_else(|e| panic!("{e}")));
    let found = rows(&app, &by_cursor).await;
    assert_eq!(found, all[10..20].to_vec());
    by_cursor.through = None;
    by_cursor.limit = Some(3);
    assert_eq!(rows(&app, &by_cursor).await, all[10..13].to_vec());

    // Formats: the same rows as JSON lines, one JSON array, CSV, a table.
    let mut small = args(TENANT);
    small.limit = Some(25);
    let expected: Vec<Value> = all[..25]
        .iter()
        .map(|r| serde_json::to_value(r).unwrap_or_default())
        .collect();
    let print = |format: Format| {
        let mut a = small.clone();
        a.format = format;
        let pool = app.pool.clone();
        async move {
            let mut out = Vec::new();
            history_command(&pool, &a, &mut out)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            String::from_utf8(out).unwrap_or_default()
        }
    };
    let jsonl = print(Format::Jsonl).await;
    let lines: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_default())
        .collect();
    assert_eq!(lines, expected);
    let array: Value = serde_json::from_str(&print(Format::Json).await).unwrap_or_default();
    assert_eq!(array, Value::Array(expected.clone()));
    let csv = print(Format::Csv).await;
    let records: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(records[0].starts_with("cursor,global_position,recorded_at,"), "{csv}");
    // The payload is JSON text, so a record never spans lines.
    assert_eq!(records.len(), 26, "{csv}");
    assert!(records[1].starts_with(&format!("{},{},", all[0].cursor, all[0].global_position)));
    let table = print(Format::Table).await;
    assert!(table.starts_with(" position  recorded at (UTC)"), "{table}");
    assert!(table.ends_with("25 events\n"), "{table}");

    // An empty tenant prints an empty array, not nothing.
    let mut nobody = args("nobody");
    nobody.format = Format::Json;
    let mut out = Vec::new();
    history_command(&app.pool, &nobody, &mut out)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(String::from_utf8(out).unwrap_or_default(), "[\n]\n");
}
