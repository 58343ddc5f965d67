//! Token wallets through the real command path against PostgreSQL: every `WalletService`
//! operation's success and refusals, concurrent debits of one wallet (no lost update, no
//! negative balance, each debit lands or is clearly refused), transfers (both halves, a lost
//! second half finished by the wallet sweeper), the `wallets` read models (balances, ledger
//! with running balances, usage, reservations) agreeing with the aggregate, and the GraphQL
//! queries and finance mutations with their role checks and tenant isolation.

use std::sync::Arc;

use chronicle_api::auth::Role;
use chronicle_commands::error::{CommandError, DomainError};
use chronicle_commands::wallet_sweeper::WalletSweeper;
use chronicle_commands::wallets::{wallet_local_id, WalletService, MAIN_WALLET};
use chronicle_domain::wallet::{WalletCommand, WalletError};
use chronicle_projections::wallets::{self as read, LedgerFilter};
use chronicle_tests::error_code as code;
use chronicle_tests::system_metadata as meta;
use chronicle_tests::*;
use chrono::{Duration, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;

fn service(app: &TestApp) -> WalletService {
    WalletService::new(app.state.commands.clone())
}

/// The wallet rule a result broke, or a panic.
fn refusal<T: std::fmt::Debug>(result: Result<T, CommandError>) -> WalletError {
    match result {
        Err(CommandError::Rejected(DomainError::Wallet(e))) => e,
        other => panic!("expected a wallet refusal, got {other:?}"),
    }
}

/// A main wallet of `acme` holding `amount`.
async fn funded(app: &TestApp, amount: i64) -> WalletService {
    let wallets = service(app);
    let m = meta("acme");
    wallets.ensure_main(&m).await.unwrap_or_else(|e| panic!("{e}"));
    wallets
        .purchase(MAIN_WALLET, "pay-1", amount, "finance", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wallets
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_main_wallet_opens_once_and_sub_wallets_hang_under_it(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let wallets = service(&app);
    let m = meta("acme");
    let first = wallets.ensure_main(&m).await.unwrap_or_else(|e| panic!("{e}"));
    let again = wallets.ensure_main(&m).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first, again);
    assert_eq!(app.count_events("WalletOpened").await, 1);
    let sub = wallets
        .open_sub_wallet("marketing", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sub.wallet_id, "marketing");
    wallets
        .open_sub_wallet("marketing", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let loaded = wallets
        .load(&tenant("acme"), "marketing")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.parent_id(), Some(MAIN_WALLET));
    assert_eq!(app.count_events("WalletOpened").await, 2);
    // Refusals: the main wallet is no sub-wallet, and ids are checked.
    assert_eq!(
        refusal(wallets.open_sub_wallet(MAIN_WALLET, &m).await),
        WalletError::SubWalletOfItself
    );
    assert!(matches!(
        wallets.open_sub_wallet("Bad Id!", &m).await,
        Err(CommandError::InvalidInput(_))
    ));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_purchase_credits_once_per_reference_and_refuses_a_different_request(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let wallets = funded(&app, 5_000).await;
    let m = meta("acme");
    let again = wallets
        .purchase(MAIN_WALLET, "pay-1", 5_000, "finance", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.balances.balance, 5_000);
    assert_eq!(app.count_events("TokensPurchased").await, 1);
    assert_eq!(
        refusal(wallets.purchase(MAIN_WALLET, "pay-1", 7_000, "finance", &m).await),
        WalletError::IdempotencyConflict {
            reference: "pay-1".into()
        }
    );
    assert_eq!(
        refusal(wallets.purchase(MAIN_WALLET, "pay-2", 0, "finance", &m).await),
        WalletError::NonPositiveAmount { amount: 0 }
    );
    assert_eq!(
        refusal(wallets.purchase("savings", "pay-3", 1_000, "finance", &m).await),
        WalletError::UnknownWallet
    );
    assert_eq!(
        wallets
            .balances(&tenant("acme"), MAIN_WALLET)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .balance,
        5_000
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_debit_the_wallet_cannot_pay_is_recorded_and_answered_with_both_amounts(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let wallets = funded(&app, 3_000).await;
    let m = meta("acme");
    let paid = wallets
        .debit(MAIN_WALLET, "act-1", 2_000, "message", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(paid.balances.available, 1_000);
    let refused = refusal(wallets.debit(MAIN_WALLET, "act-2", 2_000, "message", &m).await);
    assert_eq!(
        refused,
        WalletError::InsufficientBalance {
            required: 2_000,
            available: 1_000
        }
    );
    assert_eq!(refused.code(), "INSUFFICIENT_BALANCE");
    assert_eq!(app.count_events("DebitRefused").await, 1);
    // The same reference answers the same refusal and records nothing more.
    assert_eq!(
        refusal(wallets.debit(MAIN_WALLET, "act-2", 2_000, "message", &m).await),
        refused
    );
    assert_eq!(app.count_events("DebitRefused").await, 1);
    assert_eq!(
        refusal(wallets.debit(MAIN_WALLET, "act-3", -5, "message", &m).await),
        WalletError::NonPositiveAmount { amount: -5 }
    );
    assert_eq!(
        refusal(wallets.debit(MAIN_WALLET, "act-4", 5, " ", &m).await),
        WalletError::Blank { field: "feature" }
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn reservations_capture_release_and_refuse_by_the_rules(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let wallets = funded(&app, 10_000).await;
    let m = meta("acme");
    let expires = Utc::now() + Duration::hours(1);
    let held = wallets
        .reserve(MAIN_WALLET, "camp-1", 6_000, expires, "broadcast_recipient", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((held.balances.reserved, held.balances.available), (6_000, 4_000));
    assert_eq!(
        refusal(
            wallets
                .reserve(MAIN_WALLET, "camp-2", 5_000, expires, "broadcast_recipient", &m)
                .await
        ),
        WalletError::InsufficientBalance {
            required: 5_000,
            available: 4_000
        }
    );
    assert!(matches!(
        refusal(
            wallets
                .reserve(MAIN_WALLET, "camp-3", 1_000, Utc::now() - Duration::hours(1), "x", &m)
                .await
        ),
        WalletError::ExpiryNotAfterStart { .. }
    ));
    let captured = wallets
        .capture(MAIN_WALLET, "camp-1:b1", "camp-1", 2_500, &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((captured.balances.balance, captured.balances.reserved), (7_500, 3_500));
    assert_eq!(
        refusal(wallets.capture(MAIN_WALLET, "camp-1:b2", "camp-1", 9_000, &m).await),
        WalletError::CaptureExceedsReservation {
            requested: 9_000,
            remaining: 3_500
        }
    );
    assert_eq!(
        refusal(wallets.capture(MAIN_WALLET, "x:b1", "nope", 1, &m).await),
        WalletError::UnknownReservation {
            reservation: "nope".into()
        }
    );
    let released = wallets
        .release(MAIN_WALLET, "camp-1:end", "camp-1", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (
            released.balances.balance,
            released.balances.reserved,
            released.balances.available
        ),
        (7_500, 0, 7_500)
    );
    assert_eq!(
        refusal(wallets.release(MAIN_WALLET, "camp-1:end-2", "camp-1", &m).await),
        WalletError::ReservationClosed {
            reservation: "camp-1".into()
        }
    );
    // A refund of part of the capture, then no more than what it charged.
    let refunded = wallets
        .refund(MAIN_WALLET, "refund:recipient_failed:camp-1:r7", "camp-1:b1", 500, &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(refunded.balances.available, 8_000);
    assert_eq!(
        refusal(wallets.refund(MAIN_WALLET, "refund:x:2", "camp-1:b1", 2_500, &m).await),
        WalletError::RefundExceedsDebit {
            requested: 2_500,
            refundable: 2_000
        }
    );
    assert_eq!(
        refusal(wallets.refund(MAIN_WALLET, "refund:x:3", "nothing", 1, &m).await),
        WalletError::UnknownDebit {
            debit: "nothing".into()
        }
    );

    // The read models: the reservation closed with captured + released = reserved; the
    // capture's and refund's ledger lines name the reservation's purpose and the refund's why.
    app.project().await;
    let all = chronicle_tests::page_rows(read::reservations(&app.state.pool, &tenant("acme"), true, 100, None).await);
    assert_eq!(all.len(), 1);
    assert_eq!(
        (
            all[0].state.as_str(),
            all[0].captured,
            all[0].released,
            all[0].remaining
        ),
        ("released", 2_500, 3_500, 0)
    );
    assert!(
        chronicle_tests::page_rows(read::reservations(&app.state.pool, &tenant("acme"), false, 100, None).await)
            .is_empty()
    );
    let page = read::ledger(&app.state.pool, &tenant("acme"), &LedgerFilter::default(), 100, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let capture = page
        .rows
        .iter()
        .find(|r| r.kind == "capture")
        .unwrap_or_else(|| panic!("no capture"));
    assert_eq!(capture.feature.as_deref(), Some("broadcast_recipient"));
    let refund = page
        .rows
        .iter()
        .find(|r| r.kind == "refund")
        .unwrap_or_else(|| panic!("no refund"));
    assert_eq!(refund.feature.as_deref(), Some("broadcast_recipient"));
    assert!(refund.reason.starts_with("recipient_failed"), "{}", refund.reason);
    let usage = chronicle_tests::page_rows(read::usage(&app.state.pool, &tenant("acme"), None, None, 500, None).await);
    assert_eq!(usage.len(), 1);
    assert_eq!(
        (
            usage[0].feature.as_str(),
            usage[0].charged,
            usage[0].refunded,
            usage[0].net
        ),
        ("broadcast_recipient", 2_500, 500, 2_000)
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_transfer_moves_all_or_nothing_and_runs_both_halves(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let wallets = funded(&app, 4_000).await;
    let m = meta("acme");
    wallets
        .open_sub_wallet("ops", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let out = wallets
        .transfer(MAIN_WALLET, "ops", "tr-1", 1_500, &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.balances.balance, 2_500);
    let t = tenant("acme");
    assert_eq!(
        wallets
            .balances(&t, "ops")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .balance,
        1_500
    );
    // Refusals: more than available (recorded, nothing moves), same wallet, unknown target.
    assert_eq!(
        refusal(wallets.transfer(MAIN_WALLET, "ops", "tr-2", 9_000, &m).await),
        WalletError::InsufficientBalance {
            required: 9_000,
            available: 2_500
        }
    );
    assert_eq!(
        wallets
            .balances(&t, "ops")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .balance,
        1_500
    );
    assert_eq!(
        refusal(wallets.transfer("ops", "ops", "tr-3", 1, &m).await),
        WalletError::TransferToSameWallet
    );
    assert_eq!(
        refusal(wallets.transfer(MAIN_WALLET, "nowhere", "tr-4", 1, &m).await),
        WalletError::UnknownWallet
    );
    assert_eq!(app.count_events("TokensTransferredIn").await, 1);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_transfer_whose_second_half_was_lost_is_finished_by_the_wallet_sweeper(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let wallets = funded(&app, 4_000).await;
    let m = meta("acme");
    wallets
        .open_sub_wallet("ops", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Only the source half, as if the process stopped right after it.
    app.state
        .commands
        .wallet(
            &wallet_local_id(MAIN_WALLET),
            WalletCommand::TransferOut {
                reference: "tr-lost".into(),
                to_wallet: "ops".into(),
                amount: 1_000,
                at: Utc::now(),
            },
            &m,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let t = tenant("acme");
    assert_eq!(
        wallets
            .balances(&t, "ops")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .balance,
        0
    );
    let sweeper = WalletSweeper::new(app.state.commands.clone()).with_transfer_grace(std::time::Duration::ZERO);
    app.project().await;
    assert_eq!(
        sweeper
            .run_once(100)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .transfers_completed,
        1
    );
    assert_eq!(
        wallets
            .balances(&t, "ops")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .balance,
        1_000
    );
    // Done once: nothing is left to finish, and the money arrived once.
    app.project().await;
    assert_eq!(
        sweeper
            .run_once(100)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .transfers_completed,
        0
    );
    assert_eq!(app.count_events("TokensTransferredIn").await, 1);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn many_concurrent_debits_of_one_wallet_never_lose_an_update_or_go_negative(pool: PgPool) {
    let app = TestApp::new(pool).await;
    // Pays for 40 of the 64 debits of 250.
    let wallets = Arc::new(funded(&app, 10_000).await);
    let mut tasks = Vec::new();
    for task in 0..64 {
        let wallets = wallets.clone();
        tasks.push(tokio::spawn(async move {
            wallets
                .debit(MAIN_WALLET, &format!("act-{task}"), 250, "message", &meta("acme"))
                .await
        }));
    }
    let (mut landed, mut refused) = (0i64, 0i64);
    for task in tasks {
        match task.await.unwrap_or_else(|e| panic!("{e}")) {
            Ok(receipt) => {
                assert!(receipt.balances.available >= 0);
                landed += 1;
            }
            Err(CommandError::Rejected(DomainError::Wallet(WalletError::InsufficientBalance {
                required,
                available,
            }))) => {
                assert_eq!(required, 250);
                assert!(available < 250, "refused with {available} available");
                refused += 1;
            }
            Err(other) => panic!("a debit neither landed nor was clearly refused: {other}"),
        }
    }
    assert_eq!(landed + refused, 64);
    assert_eq!(landed, 40);
    let t = tenant("acme");
    let balances = wallets
        .balances(&t, MAIN_WALLET)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(balances.balance, 10_000 - landed * 250);
    assert_eq!(balances.available, 0);
    assert_eq!(app.count_events("TokensDebited").await, landed);
    assert_eq!(app.count_events("DebitRefused").await, refused);

    // The ledger read model agrees with the aggregate: the last running balance, and the sum
    // of the wallet's postings.
    app.project().await;
    let page = read::ledger(&app.state.pool, &t, &LedgerFilter::default(), 500, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let last = page.rows.last().unwrap_or_else(|| panic!("an empty ledger"));
    assert_eq!((last.balance, last.available), (balances.balance, balances.available));
    let posted: i64 = page.rows.iter().map(|r| r.balance_change).sum();
    assert_eq!(posted, balances.balance);
    let debits = page.rows.iter().filter(|r| r.kind == "debit").count() as i64;
    let refusals = page.rows.iter().filter(|r| r.kind == "refused").count() as i64;
    assert_eq!((debits, refusals), (landed, refused));
    assert!(page.rows.iter().all(|r| r.available >= 0));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_ledgers_running_balance_equals_the_aggregates_balances_after_every_line(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let wallets = funded(&app, 9_000).await;
    let m = meta("acme");
    wallets
        .open_sub_wallet("ops", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wallets
        .debit(MAIN_WALLET, "d-1", 1_000, "message", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = wallets.debit(MAIN_WALLET, "d-2", 100_000, "report", &m).await;
    wallets
        .reserve(
            MAIN_WALLET,
            "r-1",
            3_000,
            Utc::now() + Duration::hours(2),
            "broadcast_recipient",
            &m,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wallets
        .capture(MAIN_WALLET, "r-1:c", "r-1", 1_000, &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wallets
        .refund(MAIN_WALLET, "refund:test:d-1", "d-1", 1_000, &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wallets
        .transfer(MAIN_WALLET, "ops", "t-1", 500, &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
    let t = tenant("acme");
    for wallet in [MAIN_WALLET, "ops"] {
        let filter = LedgerFilter {
            wallet_id: Some(wallet.to_string()),
            ..LedgerFilter::default()
        };
        let page = read::ledger(&app.state.pool, &t, &filter, 500, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut running = 0i64;
        for line in &page.rows {
            running += line.balance_change;
            assert_eq!(running, line.balance, "running balance at {}", line.kind);
            assert_eq!(line.balance, line.available + line.reserved);
            let sum: i64 = line
                .postings
                .as_array()
                .unwrap_or_else(|| panic!("postings"))
                .iter()
                .map(|p| p["amount"].as_i64().unwrap_or_default())
                .sum();
            assert_eq!(sum, 0, "the postings of a {} line sum to zero", line.kind);
        }
        let aggregate = wallets.balances(&t, wallet).await.unwrap_or_else(|e| panic!("{e}"));
        let last = page.rows.last().unwrap_or_else(|| panic!("no lines"));
        assert_eq!(
            (last.balance, last.reserved, last.available),
            (aggregate.balance, aggregate.reserved, aggregate.available)
        );
        let row = read::balance(&app.state.pool, &t, wallet)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("no balance row of {wallet}"));
        assert_eq!(
            (row.balance, row.reserved, row.available),
            (aggregate.balance, aggregate.reserved, aggregate.available)
        );
    }
}

const PURCHASE: &str = "mutation($ref: String!, $amount: Int!) {
  purchaseTokens(reference: $ref, amount: $amount) { id reference wallet { balance available } }
}";

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_purchase_through_graphql_is_idempotent_by_its_reference(pool: PgPool) {
    let app = TestApp::new(pool).await;
    for _ in 0..2 {
        let reply = app
            .gql(
                "acme",
                Role::Finance,
                PURCHASE,
                json!({"ref": "mpesa-77", "amount": 12_000}),
            )
            .await;
        assert!(reply["errors"].is_null(), "{reply}");
        assert_eq!(reply["data"]["purchaseTokens"]["wallet"]["balance"], 12_000);
        assert_eq!(reply["data"]["purchaseTokens"]["id"], "main");
    }
    let conflict = app
        .gql("acme", Role::Owner, PURCHASE, json!({"ref": "mpesa-77", "amount": 1}))
        .await;
    assert_eq!(code(&conflict), "IDEMPOTENCY_CONFLICT", "{conflict}");
    assert_eq!(app.count_events("TokensPurchased").await, 1);
    // Agents and auditors cannot credit purchases.
    for role in [Role::Agent, Role::Auditor, Role::Admin] {
        let reply = app
            .gql("acme", role, PURCHASE, json!({"ref": "x-1", "amount": 5}))
            .await;
        assert_eq!(code(&reply), "FORBIDDEN", "{reply}");
    }
    app.project().await;
    let reply = app
        .gql(
            "acme",
            Role::Auditor,
            "{ wallet { id balance reserved available } }",
            json!({}),
        )
        .await;
    assert_eq!(
        reply["data"]["wallet"],
        json!({"id": "main", "balance": 12_000, "reserved": 0, "available": 12_000})
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn finance_opens_sub_wallets_transfers_and_reads_the_ledger_by_kind_and_page(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let reply = app
        .gql("acme", Role::Finance, PURCHASE, json!({"ref": "p-1", "amount": 10_000}))
        .await;
    assert!(reply["errors"].is_null(), "{reply}");
    let reply = app
        .gql(
            "acme",
            Role::Finance,
            "mutation { openSubWallet(walletId: \"sales\") { id wallet { balance } } }",
            json!({}),
        )
        .await;
    assert_eq!(reply["data"]["openSubWallet"]["id"], "sales", "{reply}");
    let transfer = "mutation($amount: Int!, $ref: String!) {
      transferTokens(from: \"main\", to: \"sales\", reference: $ref, amount: $amount) { wallet { balance available } }
    }";
    let reply = app
        .gql("acme", Role::Finance, transfer, json!({"amount": 4_000, "ref": "t-1"}))
        .await;
    assert_eq!(reply["data"]["transferTokens"]["wallet"]["balance"], 6_000, "{reply}");
    let reply = app
        .gql("acme", Role::Finance, transfer, json!({"amount": 60_000, "ref": "t-2"}))
        .await;
    assert_eq!(code(&reply), "INSUFFICIENT_BALANCE", "{reply}");
    assert_eq!(reply["errors"][0]["extensions"]["required"], 60_000);
    assert_eq!(reply["errors"][0]["extensions"]["available"], 6_000);
    let reply = app
        .gql("acme", Role::Agent, transfer, json!({"amount": 1, "ref": "t-3"}))
        .await;
    assert_eq!(code(&reply), "FORBIDDEN", "{reply}");
    app.project().await;

    let reply = app
        .gql(
            "acme",
            Role::Finance,
            "{ wallets { nodes { id parentId balance } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        reply["data"]["wallets"]["nodes"],
        json!([{"id": "main", "parentId": null, "balance": 6_000}, {"id": "sales", "parentId": "main", "balance": 4_000}])
    );
    let ledger = "query($kind: String, $after: String, $from: DateTime, $to: DateTime) {
      walletLedger(kind: $kind, first: 2, after: $after, from: $from, to: $to) {
        edges { cursor node { kind walletId reference amount balance reason postings { account amount } } }
        pageInfo { hasNextPage }
      }
    }";
    let reply = app.gql("acme", Role::Auditor, ledger, json!({})).await;
    let edges = reply["data"]["walletLedger"]["edges"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(edges.len(), 2, "{reply}");
    assert_eq!(reply["data"]["walletLedger"]["pageInfo"]["hasNextPage"], true);
    let mut kinds: Vec<String> = edges
        .iter()
        .map(|e| e["node"]["kind"].as_str().unwrap_or_default().to_string())
        .collect();
    let mut after = edges[1]["cursor"].as_str().map(str::to_string);
    while let Some(cursor) = after.take() {
        let reply = app.gql("acme", Role::Auditor, ledger, json!({"after": cursor})).await;
        let page = &reply["data"]["walletLedger"];
        for edge in page["edges"].as_array().cloned().unwrap_or_default() {
            kinds.push(edge["node"]["kind"].as_str().unwrap_or_default().to_string());
            after = edge["cursor"].as_str().map(str::to_string);
        }
        if page["pageInfo"]["hasNextPage"] != true {
            after = None;
        }
    }
    assert_eq!(
        kinds,
        ["open", "purchase", "open", "transfer_out", "transfer_in", "refused"]
    );
    let reply = app.gql("acme", Role::Auditor, ledger, json!({"kind": "refused"})).await;
    let refused = &reply["data"]["walletLedger"]["edges"][0]["node"];
    assert_eq!(refused["amount"], 60_000, "{reply}");
    assert!(refused["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("insufficient balance"));
    // A period before everything selects nothing.
    let reply = app
        .gql(
            "acme",
            Role::Auditor,
            ledger,
            json!({"from": "2020-01-01T00:00:00Z", "to": "2020-01-02T00:00:00Z"}),
        )
        .await;
    assert_eq!(reply["data"]["walletLedger"]["edges"], json!([]), "{reply}");
    let reply = app.gql("acme", Role::Agent, ledger, json!({})).await;
    assert_eq!(code(&reply), "FORBIDDEN");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn wallet_read_models_show_each_tenant_only_its_own(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let wallets = funded(&app, 7_000).await;
    wallets
        .reserve(
            MAIN_WALLET,
            "r-1",
            1_000,
            Utc::now() + Duration::hours(1),
            "report",
            &meta("acme"),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wallets
        .debit(MAIN_WALLET, "d-1", 1_000, "report", &meta("acme"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
    let query =
        "{ wallets { nodes { id } } walletLedger { edges { node { kind } } } usage { nodes { feature } } reservations { nodes { reference } } }";
    let mine = app.gql("acme", Role::Owner, query, json!({})).await;
    assert_eq!(
        mine["data"]["wallets"]["nodes"].as_array().map(Vec::len),
        Some(1),
        "{mine}"
    );
    assert_eq!(
        mine["data"]["reservations"]["nodes"].as_array().map(Vec::len),
        Some(1),
        "{mine}"
    );
    assert_eq!(mine["data"]["usage"]["nodes"][0]["feature"], "report", "{mine}");
    let theirs = app.gql("globex", Role::Owner, query, json!({})).await;
    assert!(theirs["errors"].is_null(), "{theirs}");
    assert_eq!(theirs["data"]["wallets"]["nodes"], json!([]));
    assert_eq!(theirs["data"]["walletLedger"]["edges"], json!([]));
    assert_eq!(theirs["data"]["usage"]["nodes"], json!([]));
    assert_eq!(theirs["data"]["reservations"]["nodes"], json!([]));
    let reply = app.gql("globex", Role::Owner, "{ wallet { id } }", json!({})).await;
    assert_eq!(reply["data"]["wallet"], Value::Null);
    // Row-level security: the application role with another tenant's scope sees no row.
    let mut tx = app.state.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("SELECT set_config('chronicle.tenant_id', 'globex', true)")
        .execute(&mut *tx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM wallet_ledger")
        .fetch_one(&mut *tx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(seen, 0);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_expired_reservation_is_released_by_the_sweep_and_shown_closed(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let wallets = funded(&app, 5_000).await;
    let m = meta("acme");
    wallets
        .reserve(
            MAIN_WALLET,
            "short",
            2_000,
            Utc::now() + Duration::milliseconds(300),
            "broadcast_recipient",
            &m,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let after = wallets
        .expire_reservations(MAIN_WALLET, &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((after.balance, after.reserved, after.available), (5_000, 0, 5_000));
    // Swept once: a second sweep records nothing.
    wallets
        .expire_reservations(MAIN_WALLET, &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(app.count_events("ReservationExpired").await, 1);
    app.project().await;
    let all = chronicle_tests::page_rows(read::reservations(&app.state.pool, &tenant("acme"), true, 100, None).await);
    assert_eq!(
        (all[0].state.as_str(), all[0].released, all[0].remaining),
        ("expired", 2_000, 0)
    );
    let reply = app
        .gql(
            "acme",
            Role::Finance,
            "{ reservations { nodes { reference } } }",
            json!({}),
        )
        .await;
    assert_eq!(reply["data"]["reservations"]["nodes"], json!([]), "{reply}");
}
