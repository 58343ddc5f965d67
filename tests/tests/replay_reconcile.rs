//! `chronicle-replay reconcile wallets` (issue 11): a fixture of wallets fed by provider
//! payments, debits, a reservation, a refund and a transfer; each break class planted in turn
//! is reported exactly, a clean run says "reconciled", and runs over one cursor write the same
//! bytes.

use chronicle_commands::wallets::WalletService;
use chronicle_domain::installation::PaymentProvider;
use chronicle_domain::payment::{payment_local_id, ConfirmPayment, PaymentCommand};
use chronicle_projections::log::{self, Cursor, LogFilter};
use chronicle_replay::reconcile::{
    parse_statement, reconcile, report_files, wallets_command, BreakClass, Verdict, WalletsArgs,
};
use chronicle_replay::DatabaseArgs;
use chronicle_tests::*;
use chrono::Utc;
use sha2::Digest;
use sqlx::PgPool;

const TENANT: &str = "fin-1";

/// A payment confirmed by `provider` and matched to the main wallet, which it credits.
async fn paid_top_up(app: &TestApp, wallets: &WalletService, provider: PaymentProvider, reference: &str, minor: i64) {
    let meta = system_metadata(TENANT);
    let local = payment_local_id(provider, reference);
    let confirm = PaymentCommand::Confirm(ConfirmPayment {
        provider,
        reference: reference.to_owned(),
        merchant_reference: "wallet_main".into(),
        amount_minor: minor,
        currency: "USD".into(),
        at: Utc::now(),
    });
    app.state
        .commands
        .payment(&local, confirm, &meta)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let milli = minor * 1_000;
    wallets
        .purchase("main", reference, milli, provider.as_str(), &meta)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let matched = PaymentCommand::MatchToWallet {
        wallet_id: "main".into(),
        milli_tokens: milli,
        at: Utc::now(),
    };
    app.state
        .commands
        .payment(&local, matched, &meta)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

async fn fixture(app: &TestApp) {
    app.tenant_with_number(TENANT, "200000000001").await;
    let wallets = WalletService::new(app.state.commands.clone());
    let meta = system_metadata(TENANT);
    wallets
        .open_sub_wallet("team", &meta)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    paid_top_up(app, &wallets, PaymentProvider::Stripe, "P-1", 2_000).await;
    paid_top_up(app, &wallets, PaymentProvider::Stripe, "P-2", 500).await;
    // Another provider's payment: never expected in Stripe's statement.
    paid_top_up(app, &wallets, PaymentProvider::Paynow, "PN-7", 100).await;
    wallets
        .debit("main", "send-1", 1_000_000, "message", &meta)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let expires = Utc::now() + chrono::Duration::days(1);
    wallets
        .reserve("main", "camp-1", 1_000_000, expires, "campaign", &meta)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wallets
        .capture("main", "cap-1", "camp-1", 500_000, &meta)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wallets
        .refund("main", "refund:failed:send-1", "send-1", 400_000, &meta)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wallets
        .transfer("main", "team", "move-1", 500_000, &meta)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
}

fn statement(lines: &[&str]) -> String {
    let today = Utc::now().date_naive();
    let mut text = String::from("reference,amount,currency,date\n");
    for line in lines {
        text.push_str(&line.replace("TODAY", &today.to_string()));
        text.push('\n');
    }
    text
}

const CLEAN: &[&str] = &["P-1,20.00,USD,TODAY", "P-2,5.00,USD,TODAY"];

/// The breaks of a run as (class, wallet, reference).
async fn breaks(app: &TestApp, statement_text: &str) -> (Verdict, Vec<(BreakClass, String, String)>) {
    let lines = parse_statement(statement_text).unwrap_or_else(|e| panic!("{e}"));
    let run = reconcile(
        &app.pool,
        &tenant(TENANT),
        None,
        Some((PaymentProvider::Stripe, &lines)),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let found = run
        .breaks
        .iter()
        .map(|b| (b.class, b.wallet_id.clone(), b.reference.clone()))
        .collect();
    (run.verdict, found)
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn each_planted_break_is_reported_exactly_and_a_clean_ledger_reconciles(pool: PgPool) {
    let app = TestApp::new(pool).await;
    fixture(&app).await;

    // Clean: the identities hold, the read models agree, the statement matches.
    let (verdict, found) = breaks(&app, &statement(CLEAN)).await;
    assert_eq!((verdict, found), (Verdict::Reconciled, vec![]));
    let run = reconcile(&app.pool, &tenant(TENANT), None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let main = &run.wallets["main"];
    assert_eq!(
        (
            main.purchases,
            main.debits,
            main.captures,
            main.refunds,
            main.transfers_out
        ),
        (2_600_000, 1_000_000, 500_000, 400_000, 500_000)
    );
    assert_eq!(main.reserved, 500_000, "the reservation's remaining hold");
    assert_eq!(main.balance, 1_000_000);
    assert_eq!(run.wallets["team"].transfers_in, 500_000);

    // A provider line twice.
    let (verdict, found) = breaks(
        &app,
        &statement(&["P-1,20.00,USD,TODAY", "P-2,5.00,USD,TODAY", "P-1,20.00,USD,TODAY"]),
    )
    .await;
    assert_eq!(verdict, Verdict::Breaks);
    assert_eq!(found, vec![(BreakClass::Duplicate, String::new(), "P-1".into())]);

    // An amount mismatch.
    let (_, found) = breaks(&app, &statement(&["P-1,20.00,USD,TODAY", "P-2,6.00,USD,TODAY"])).await;
    assert_eq!(found, vec![(BreakClass::AmountMismatch, "main".into(), "P-2".into())]);

    // A payment the provider does not list; a line the log does not have.
    let (_, found) = breaks(&app, &statement(&["P-1,20.00,USD,TODAY"])).await;
    assert_eq!(
        found,
        vec![(BreakClass::MissingAtProvider, "main".into(), "P-2".into())]
    );
    let (_, found) = breaks(
        &app,
        &statement(&["P-1,20.00,USD,TODAY", "P-2,5.00,USD,TODAY", "P-9,1.00,USD,TODAY"]),
    )
    .await;
    assert_eq!(found, vec![(BreakClass::MissingInLedger, String::new(), "P-9".into())]);

    // A purchase missing in the ledger read model.
    sqlx::query("DELETE FROM wallet_ledger WHERE tenant_id = $1 AND reference = 'P-2' AND kind = 'purchase'")
        .bind(TENANT)
        .execute(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (verdict, found) = breaks(&app, &statement(CLEAN)).await;
    assert_eq!(verdict, Verdict::Breaks);
    assert_eq!(found, vec![(BreakClass::MissingInLedger, "main".into(), "P-2".into())]);

    // And a drifted balance row.
    sqlx::query("UPDATE wallet_balances SET balance = balance + 1 WHERE tenant_id = $1 AND wallet_id = 'team'")
        .bind(TENANT)
        .execute(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (_, found) = breaks(&app, &statement(CLEAN)).await;
    assert_eq!(
        found,
        vec![
            (BreakClass::MissingInLedger, "main".into(), "P-2".into()),
            (BreakClass::ReadModelDrift, "team".into(), String::new()),
        ]
    );

    // The transfer arrived: nothing in transit, nothing pending.
    let run = reconcile(&app.pool, &tenant(TENANT), None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(run.pending.is_empty(), "{:?}", run.pending);

    // A cursor beyond the readable log is refused.
    let head = log::head(&app.pool, &LogFilter::tenant(TENANT))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or(Cursor::START);
    let beyond = Cursor::new(head.tx_id + 1_000, head.position + 1_000);
    let error = reconcile(&app.pool, &tenant(TENANT), Some(beyond), None)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("beyond the tenant's readable log"),
        "{error}"
    );

    // Read models behind the cursor: incomplete, nothing compared.
    sqlx::query("UPDATE projector_checkpoints SET last_tx_id = '0', last_position = 0 WHERE projector = 'wallets'")
        .execute(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (verdict, found) = breaks(&app, &statement(CLEAN)).await;
    assert_eq!((verdict, found), (Verdict::Incomplete, vec![]));
    // ... but a break the statement shows still makes the verdict "breaks".
    let (verdict, found) = breaks(&app, &statement(&["P-1,20.00,USD,TODAY"])).await;
    assert_eq!(verdict, Verdict::Breaks);
    assert_eq!(
        found,
        vec![(BreakClass::MissingAtProvider, "main".into(), "P-2".into())]
    );
}

fn args(dir: &std::path::Path, statement: Option<&std::path::Path>, through: Option<Cursor>) -> WalletsArgs {
    WalletsArgs {
        tenant: TENANT.into(),
        statement: statement.map(std::path::Path::to_path_buf),
        provider: statement.map(|_| PaymentProvider::Stripe),
        through,
        out: Some(dir.to_path_buf()),
        database: DatabaseArgs {
            database_url: None,
            data_dir: ".chronicle".into(),
        },
    }
}

fn read_dir(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|entry| {
            let entry = entry.unwrap_or_else(|e| panic!("{e}"));
            (
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read(entry.path()).unwrap_or_else(|e| panic!("{e}")),
            )
        })
        .collect();
    files.sort();
    files
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn runs_over_one_cursor_write_the_same_bytes_with_their_checksums(pool: PgPool) {
    let app = TestApp::new(pool).await;
    fixture(&app).await;
    let base = std::env::temp_dir().join(format!(
        "chronicle-reconcile-{}-{}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    ));
    let statement_path = base.join("statement.csv");
    std::fs::create_dir_all(&base).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        &statement_path,
        statement(&["P-1,20.00,USD,TODAY", "P-2,6.00,USD,TODAY"]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let cursor = log::head(&app.pool, &LogFilter::tenant(TENANT))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or(Cursor::START);

    let mut printed = Vec::new();
    let first = base.join("first");
    let verdict = wallets_command(
        &app.pool,
        &args(&first, Some(&statement_path), Some(cursor)),
        &mut printed,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(verdict, Verdict::Breaks, "the amount mismatch");
    let text = String::from_utf8_lossy(&printed);
    assert!(text.starts_with("breaks: 2 wallets of tenant fin-1"), "{text}");
    assert!(
        text.contains("BREAK amount_mismatch wallet main reference P-2: expected 6.00 USD, found 5.00 USD"),
        "{text}"
    );

    // More activity, then a run over the same cursor: byte for byte the same files.
    let wallets = WalletService::new(app.state.commands.clone());
    wallets
        .debit("main", "send-2", 1_000, "message", &system_metadata(TENANT))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
    let second = base.join("second");
    wallets_command(
        &app.pool,
        &args(&second, Some(&statement_path), Some(cursor)),
        &mut Vec::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let files = read_dir(&first);
    assert_eq!(files, read_dir(&second));
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["breaks.csv", "manifest.json", "wallets.csv"]);

    // The manifest names each file with its sha-256, the statement's too, and the verdict.
    let manifest: serde_json::Value = serde_json::from_slice(&files[1].1).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(manifest["verdict"], "breaks");
    assert_eq!(manifest["breaks"]["amount_mismatch"], 1);
    assert_eq!(manifest["cursor"], cursor.to_string());
    for (name, bytes) in [&files[0], &files[2]] {
        let entry = manifest["files"]
            .as_array()
            .and_then(|f| f.iter().find(|e| e["name"] == name.as_str()))
            .unwrap_or_else(|| panic!("{name} not in {manifest}"));
        assert_eq!(entry["sha256"], hex::encode(sha2::Sha256::digest(bytes)).as_str());
    }
    let statement_bytes = std::fs::read(&statement_path).unwrap_or_default();
    assert_eq!(
        manifest["statement"]["sha256"],
        hex::encode(sha2::Sha256::digest(&statement_bytes)).as_str()
    );

    // The library and the command agree on the bytes.
    let lines = parse_statement(&String::from_utf8_lossy(&statement_bytes)).unwrap_or_default();
    let run = reconcile(
        &app.pool,
        &tenant(TENANT),
        Some(cursor),
        Some((PaymentProvider::Stripe, &lines)),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let built = report_files(&run, Some(("statement.csv", &statement_bytes)));
    let mut built: Vec<(String, Vec<u8>)> = built;
    built.sort();
    assert_eq!(built, files);

    // A statement that is not CSV of the right shape is an error that names the line.
    std::fs::write(
        &statement_path,
        "reference,amount,currency,date\nP-1,twenty,USD,2026-01-01\n",
    )
    .unwrap_or_default();
    let error = wallets_command(
        &app.pool,
        &args(&base.join("third"), Some(&statement_path), None),
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("line 2"), "{error}");
    let _ = std::fs::remove_dir_all(&base);
}
