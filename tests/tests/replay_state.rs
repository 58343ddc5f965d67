//! `chronicle-replay state` against the write side (issue 11): for every aggregate type the
//! generator produces, the state folded from the log as of a cursor equals what the write side
//! loaded (snapshot and events, through `Commands`) at that point of the load, and later events
//! are left out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::collections::BTreeSet;

use chronicle_fixtures::generator::{generate, Scale};
use chronicle_fixtures::load::through_commands;
use chronicle_projections::log::{self, Cursor, LogFilter};
use chronicle_replay::state::{state, state_command, AsOfReport, StateArgs};
use chronicle_replay::{Cli, DatabaseArgs};
use chronicle_tests::*;
use clap::Parser;
use serde_json::Value;
use sqlx::PgPool;

/// What the write side loaded at one point of the load.
struct Capture {
    cursor: Cursor,
    /// (aggregate type, stream, state as the write side loaded it).
    states: Vec<(String, String, Value)>,
}

/// The log's readable head once nothing committed is held back.
async fn settled_head(pool: &PgPool) -> Cursor {
    loop {
        let head = log::head(pool, &LogFilter::all())
            .await
            .unwrap()
            .unwrap_or(Cursor::START);
        if !log::any_committed_after(pool, head, &LogFilter::all()).await.unwrap() {
            return head;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The write side's state of the three longest streams of every aggregate type, now.
async fn capture(app: &TestApp) -> Capture {
    let cursor = settled_head(&app.pool).await;
    let streams: Vec<(String, String)> = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id FROM ( \
             SELECT aggregate_type, aggregate_id, row_number() OVER ( \
                 PARTITION BY aggregate_type ORDER BY count(*) DESC, aggregate_id) AS rank \
               FROM events GROUP BY aggregate_type, aggregate_id) s \
          WHERE rank <= 3 ORDER BY aggregate_type, aggregate_id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let mut states = Vec::new();
    for (aggregate_type, stream) in streams {
        let loaded = app
            .state
            .commands
            .state_json(&aggregate_type, &stream)
            .await
            .unwrap_or_else(|e| panic!("{aggregate_type} {stream}: {e}"))
            .unwrap_or_else(|| panic!("the write side knows no aggregate {aggregate_type}"));
        states.push((aggregate_type, stream, loaded));
    }
    Capture { cursor, states }
}

fn args(aggregate_type: Option<&str>, stream: &str, cursor: Option<Cursor>) -> StateArgs {
    StateArgs {
        stream: stream.to_owned(),
        aggregate_type: aggregate_type.map(str::to_owned),
        cursor,
        at: None,
        database: DatabaseArgs {
            database_url: None,
            data_dir: ".chronicle".into(),
        },
    }
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_state_as_of_a_cursor_is_what_the_write_side_loaded_there_for_every_aggregate_type(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let dataset = generate(17, Scale::SMALL);
    let keys = app.keys();
    let captures = RefCell::new(Vec::new());
    // The loader catches the projections up before it runs the call follow-ups (which append
    // to calls, conversations and wallets): the first point captured is before them.
    through_commands(
        app.command_path(&keys),
        &dataset,
        || {
            let (app, captures) = (&app, &captures);
            async move {
                app.project().await;
                let taken = capture(app).await;
                captures.borrow_mut().push(taken);
                Ok(())
            }
        },
        |_, _| {},
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    // And the end of the load, after the follow-ups.
    let end = capture(&app).await;
    let mut captures = captures.into_inner();
    captures.push(end);
    assert!(captures.len() >= 2, "the loader caught up {} times", captures.len() - 1);

    // Every aggregate type the generator produced was captured.
    let generated: BTreeSet<String> = sqlx::query_scalar("SELECT DISTINCT aggregate_type FROM events")
        .fetch_all(&app.pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let last = captures.last().unwrap();
    let captured: BTreeSet<String> = last.states.iter().map(|(t, _, _)| t.clone()).collect();
    assert_eq!(captured, generated);
    for expected in ["Call", "Campaign", "Contact", "Conversation", "Lead", "Order", "Wallet"] {
        assert!(
            generated.contains(expected),
            "the generator made no {expected}: {generated:?}"
        );
    }

    let mut moved_on = 0;
    for capture in &captures {
        for (aggregate_type, stream, written) in &capture.states {
            let folded = state(&app.pool, &args(Some(aggregate_type), stream, Some(capture.cursor)))
                .await
                .unwrap_or_else(|e| panic!("{aggregate_type} {stream}: {e}"));
            assert_eq!(
                &folded.state, written,
                "{aggregate_type} {stream} as of {}: folded from the log vs loaded by the write side",
                capture.cursor
            );
            assert_eq!(folded.as_of, AsOfReport::Cursor(capture.cursor.to_string()));
            let now = state(&app.pool, &args(Some(aggregate_type), stream, None))
                .await
                .unwrap();
            if now.sequence > folded.sequence {
                moved_on += 1;
            }
        }
    }
    // Streams did go on after the first point, and those later events were left out.
    assert!(moved_on > 0, "no captured stream grew after its capture");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn state_refuses_unknown_streams_and_types_and_the_binary_prints_json(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.load_demo().await;
    let stream: String = sqlx::query_scalar(
        "SELECT aggregate_id FROM events WHERE aggregate_type = 'Wallet' ORDER BY global_position LIMIT 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();

    let error = state(&app.pool, &args(None, "nobody:nothing", None)).await.unwrap_err();
    assert!(error.to_string().contains("no stream"), "{error}");
    let error = state(&app.pool, &args(Some("Spaceship"), &stream, None))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("no aggregate has the type"), "{error}");

    // A contact's conversation has the contact's stream id: the type must be given.
    let shared: String = sqlx::query_scalar(
        "SELECT c.aggregate_id FROM events c JOIN events v ON v.aggregate_id = c.aggregate_id \
          WHERE c.aggregate_type = 'Contact' AND v.aggregate_type = 'Conversation' LIMIT 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let error = state(&app.pool, &args(None, &shared, None)).await.unwrap_err();
    assert!(
        error.to_string().contains("Contact, Conversation") && error.to_string().contains("--type"),
        "{error}"
    );
    let contact = state(&app.pool, &args(Some("Contact"), &shared, None)).await.unwrap();
    assert_eq!(contact.aggregate_type, "Contact");

    // Before the stream's first event: the aggregate's initial state, nothing folded.
    let before = state(&app.pool, &args(None, &stream, Some(Cursor::START)))
        .await
        .unwrap();
    assert_eq!((before.events, before.sequence), (0, 0));

    // The command prints the report as JSON.
    let mut out = Vec::new();
    state_command(&app.pool, &args(None, &stream, None), &mut out)
        .await
        .unwrap();
    let json: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(json["aggregate_type"], "Wallet");
    assert_eq!(json["aggregate_id"], stream.as_str());
    assert_eq!(json["as_of"], "now");
    assert!(json["events"].as_u64().unwrap() > 0);
    let written = app.state.commands.state_json("Wallet", &stream).await.unwrap().unwrap();
    assert_eq!(json["state"], written);

    // The command line: a time that is not RFC 3339 is a usage error that says so; a cursor and
    // a time together are refused.
    let bad_time = Cli::try_parse_from(["chronicle-replay", "state", stream.as_str(), "--at", "yesterday"])
        .unwrap_err()
        .to_string();
    assert!(bad_time.contains("RFC 3339"), "{bad_time}");
    let start = Cursor::START.to_string();
    let both = [
        "chronicle-replay",
        "state",
        stream.as_str(),
        "--cursor",
        start.as_str(),
        "--at",
        "2026-01-01T00:00:00Z",
    ];
    assert!(Cli::try_parse_from(both).is_err());
    let at = Cli::try_parse_from([
        "chronicle-replay",
        "state",
        stream.as_str(),
        "--at",
        "2026-01-01T00:00:00+02:00",
    ]);
    assert!(at.is_ok(), "{at:?}");
}
