//! The wallet process manager against PostgreSQL: the `wallet_work` projector's work lists and
//! the `WalletSweeper` (expired reservations released by the database's clock and not before;
//! a lost transfer half completed once however often the sweeper runs; alerts raised once),
//! and the GraphQL `configureWalletThresholds` mutation and `walletAlerts` query (an alert
//! once per crossing, re-armed above; an auto-refill pending until finance buys it under its
//! reference; role checks; tenant isolation).

use chronicle_api::auth::Role;
use chronicle_commands::wallet_sweeper::WalletSweeper;
use chronicle_commands::wallets::{wallet_local_id, WalletService, MAIN_WALLET};
use chronicle_domain::wallet::WalletCommand;
use chronicle_projections::wallet_work;
use chronicle_projections::wallets as read;
use chronicle_tests::error_code as code;
use chronicle_tests::system_metadata as meta;
use chronicle_tests::*;
use chrono::{Duration, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;

/// A main wallet of `tenant_id` holding `amount`.
async fn funded(app: &TestApp, tenant_id: &str, amount: i64) -> WalletService {
    let wallets = WalletService::new(app.state.commands.clone());
    let m = meta(tenant_id);
    wallets.ensure_main(&m).await.unwrap_or_else(|e| panic!("{e}"));
    wallets
        .purchase(MAIN_WALLET, "pay-1", amount, "finance", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wallets
}

fn sweeper(app: &TestApp) -> WalletSweeper {
    WalletSweeper::new(app.state.commands.clone()).with_transfer_grace(std::time::Duration::ZERO)
}

const CONFIGURE: &str = "mutation($alert: Int, $refill: AutoRefillInput) {
    configureWalletThresholds(lowBalanceAlert: $alert, autoRefill: $refill) { id wallet { available } } }";

const ALERTS: &str = "query($first: Int = 50, $after: String) { walletAlerts(first: $first, after: $after) {
    edges { cursor node { walletId kind trigger threshold available refillAmount purchaseReference status
    fulfilledAmount fulfilledAt } } pageInfo { hasNextPage } } }";

/// The tenant's alerts as seen by finance, newest first.
async fn alerts(app: &TestApp, tenant_id: &str) -> Vec<Value> {
    let reply = app.gql(tenant_id, Role::Finance, ALERTS, json!({})).await;
    assert!(reply["errors"].is_null(), "{reply}");
    reply["data"]["walletAlerts"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{reply}"))
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

async fn debit(wallets: &WalletService, tenant_id: &str, reference: &str, amount: i64) {
    wallets
        .debit(MAIN_WALLET, reference, amount, "message", &meta(tenant_id))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_expired_reservation_is_released_by_the_sweeper_and_not_before_its_expiry(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let wallets = funded(&app, "acme", 5_000).await;
    let m = meta("acme");
    let expires_at = Utc::now() + Duration::milliseconds(1_500);
    wallets
        .reserve(MAIN_WALLET, "hold-1", 2_000, expires_at, "broadcast_recipient", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
    let sweeper = sweeper(&app);

    // Not yet due: nothing is expired.
    let pass = sweeper.run_once(100).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pass.wallets_expired, 0);
    assert_eq!(app.count_events("ReservationExpired").await, 0);
    let t = tenant("acme");
    let before = wallets
        .balances(&t, MAIN_WALLET)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((before.reserved, before.available), (2_000, 3_000));

    // Past due by the database's clock: released once, however often the sweeper runs.
    while Utc::now() <= expires_at + Duration::milliseconds(100) {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let pass = sweeper.run_once(100).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pass.wallets_expired, 1);
    let pass = sweeper.run_once(100).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pass.wallets_expired, 0);
    assert_eq!(app.count_events("ReservationExpired").await, 1);
    let after = wallets
        .balances(&t, MAIN_WALLET)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((after.balance, after.reserved, after.available), (5_000, 0, 5_000));

    app.project().await;
    let all = chronicle_tests::page_rows(read::reservations(&app.state.pool, &t, true, 100, None).await);
    assert_eq!(
        (
            all[0].state.as_str(),
            all[0].released,
            all[0].remaining,
            all[0].closed_at.is_some()
        ),
        ("expired", 2_000, 0, true)
    );
    let state: String = sqlx::query_scalar("SELECT state FROM wallet_open_reservations WHERE reservation = 'hold-1'")
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state, "closed");
    assert_eq!(
        sweeper
            .run_once(100)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .wallets_expired,
        0
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_released_reservation_leaves_nothing_for_the_sweeper(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let wallets = funded(&app, "acme", 5_000).await;
    let m = meta("acme");
    wallets
        .reserve(
            MAIN_WALLET,
            "hold-1",
            1_000,
            Utc::now() + Duration::milliseconds(300),
            "broadcast_recipient",
            &m,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wallets
        .release(MAIN_WALLET, "rel-1", "hold-1", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let pass = sweeper(&app).run_once(100).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pass.wallets_expired, 0);
    assert_eq!(app.count_events("ReservationExpired").await, 0);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_transfer_whose_second_half_is_missing_is_completed_once_even_when_the_sweeper_runs_twice(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let wallets = funded(&app, "acme", 4_000).await;
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
    app.project().await;

    // Within the grace period the inline retry owns it: the default sweeper leaves it.
    let patient = WalletSweeper::new(app.state.commands.clone());
    assert_eq!(
        patient
            .run_once(100)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .transfers_completed,
        0
    );

    // Two sweepers at once, then again before the projector caught up: one credit.
    let (a, b) = (sweeper(&app), sweeper(&app));
    let (first, second) = tokio::join!(a.run_once(100), b.run_once(100));
    let first = first.unwrap_or_else(|e| panic!("{e}"));
    let second = second.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.transfers_completed + second.transfers_completed, 1);
    assert_eq!(
        a.run_once(100)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .transfers_completed,
        0
    );
    app.project().await;
    assert_eq!(
        b.run_once(100)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .transfers_completed,
        0
    );
    assert_eq!(app.count_events("TokensTransferredIn").await, 1);
    let t = tenant("acme");
    let ops = wallets.balances(&t, "ops").await.unwrap_or_else(|e| panic!("{e}"));
    let main = wallets
        .balances(&t, MAIN_WALLET)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((ops.balance, main.balance), (1_000, 3_000));
    let state: String = sqlx::query_scalar("SELECT state FROM wallet_open_transfers WHERE reference = 'tr-lost'")
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state, "done");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_transfer_that_ran_both_halves_inline_leaves_nothing_for_the_sweeper(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let wallets = funded(&app, "acme", 4_000).await;
    let m = meta("acme");
    wallets
        .open_sub_wallet("ops", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wallets
        .transfer(MAIN_WALLET, "ops", "tr-1", 500, &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
    let pass = sweeper(&app).run_once(100).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pass.transfers_completed, 0);
    assert_eq!(app.count_events("TokensTransferredIn").await, 1);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_low_balance_alert_fires_once_per_crossing_and_re_arms_back_above(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let wallets = funded(&app, "acme", 5_000).await;
    let reply = app
        .gql("acme", Role::Finance, CONFIGURE, json!({ "alert": 3_000 }))
        .await;
    assert!(reply["errors"].is_null(), "{reply}");
    assert_eq!(
        reply["data"]["configureWalletThresholds"]["wallet"]["available"],
        json!(5_000)
    );

    debit(&wallets, "acme", "d-1", 2_500).await; // 2 500 < 3 000: alert
    debit(&wallets, "acme", "d-2", 100).await; // still below: no alert
    app.project().await;
    let seen = alerts(&app, "acme").await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (
            &seen[0]["kind"],
            &seen[0]["trigger"],
            &seen[0]["threshold"],
            &seen[0]["available"],
            &seen[0]["status"]
        ),
        (
            &json!("low_balance_alert"),
            &json!("d-1"),
            &json!(3_000),
            &json!(2_500),
            &json!("raised")
        )
    );

    wallets
        .purchase(MAIN_WALLET, "pay-2", 2_000, "finance", &meta("acme"))
        .await
        .unwrap_or_else(|e| panic!("{e}")); // 4 400: re-armed
    debit(&wallets, "acme", "d-3", 2_000).await; // 2 400: alert again
    app.project().await;
    let seen = alerts(&app, "acme").await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0]["trigger"], json!("d-3"));
    assert_eq!(app.count_events("LowBalanceAlerted").await, 2);

    // The sweeper raises each alert once.
    let sweeper = sweeper(&app);
    assert_eq!(
        sweeper
            .run_once(100)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .alerts_raised,
        2
    );
    assert_eq!(
        sweeper
            .run_once(100)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .alerts_raised,
        0
    );

    // Paginated newest first.
    let page = app.gql("acme", Role::Auditor, ALERTS, json!({ "first": 1 })).await;
    let edges = &page["data"]["walletAlerts"]["edges"];
    assert_eq!(edges[0]["node"]["trigger"], json!("d-3"), "{page}");
    assert_eq!(page["data"]["walletAlerts"]["pageInfo"]["hasNextPage"], json!(true));
    let cursor = edges[0]["cursor"].clone();
    let next = app
        .gql("acme", Role::Auditor, ALERTS, json!({ "first": 1, "after": cursor }))
        .await;
    assert_eq!(
        next["data"]["walletAlerts"]["edges"][0]["node"]["trigger"],
        json!("d-1"),
        "{next}"
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_auto_refill_shows_pending_until_finance_buys_it_under_its_reference(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let wallets = funded(&app, "acme", 5_000).await;
    let reply = app
        .gql(
            "acme",
            Role::Admin,
            CONFIGURE,
            json!({ "refill": { "below": 2_000, "amount": 10_000 } }),
        )
        .await;
    assert!(reply["errors"].is_null(), "{reply}");
    debit(&wallets, "acme", "d-1", 3_500).await; // 1 500 < 2 000: refill requested
                                                 // A purchase under another reference does not fulfil it.
    wallets
        .purchase(MAIN_WALLET, "pay-2", 100, "finance", &meta("acme"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
    let seen = alerts(&app, "acme").await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (
            &seen[0]["kind"],
            &seen[0]["refillAmount"],
            &seen[0]["purchaseReference"],
            &seen[0]["status"]
        ),
        (
            &json!("auto_refill"),
            &json!(10_000),
            &json!("refill:d-1"),
            &json!("pending")
        )
    );

    let bought = app
        .gql(
            "acme",
            Role::Finance,
            "mutation { purchaseTokens(reference: \"refill:d-1\", amount: 10000) { wallet { available } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        bought["data"]["purchaseTokens"]["wallet"]["available"],
        json!(11_600),
        "{bought}"
    );
    app.project().await;
    let seen = alerts(&app, "acme").await;
    assert_eq!(
        (
            &seen[0]["status"],
            &seen[0]["fulfilledAmount"],
            seen[0]["fulfilledAt"].is_string()
        ),
        (&json!("fulfilled"), &json!(10_000), true)
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn configuring_thresholds_is_refused_for_other_roles_and_for_negative_thresholds(pool: PgPool) {
    let app = TestApp::new(pool).await;
    funded(&app, "acme", 5_000).await;
    for role in [Role::Agent, Role::Technician, Role::Auditor, Role::Integrator] {
        let reply = app.gql("acme", role, CONFIGURE, json!({ "alert": 1_000 })).await;
        assert_eq!(code(&reply), "FORBIDDEN", "{role:?}: {reply}");
    }
    for role in [Role::Agent, Role::Technician, Role::Integrator] {
        let reply = app.gql("acme", role, ALERTS, json!({})).await;
        assert_eq!(code(&reply), "FORBIDDEN", "{role:?}: {reply}");
    }
    let reply = app.gql("acme", Role::Owner, CONFIGURE, json!({ "alert": -1 })).await;
    assert_eq!(code(&reply), "INVALID_THRESHOLD", "{reply}");
    let reply = app
        .gql(
            "acme",
            Role::Owner,
            CONFIGURE,
            json!({ "refill": { "below": 1_000, "amount": 0 } }),
        )
        .await;
    assert_eq!(code(&reply), "NON_POSITIVE_AMOUNT", "{reply}");
    assert_eq!(app.count_events("ThresholdsConfigured").await, 0);
    let reply = app.gql("acme", Role::Owner, CONFIGURE, json!({ "alert": 1_000 })).await;
    assert!(reply["errors"].is_null(), "{reply}");
    assert_eq!(app.count_events("ThresholdsConfigured").await, 1);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn wallet_alerts_show_each_tenant_only_its_own(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let acme = funded(&app, "acme", 5_000).await;
    funded(&app, "globex", 5_000).await;
    let reply = app
        .gql("acme", Role::Finance, CONFIGURE, json!({ "alert": 3_000 }))
        .await;
    assert!(reply["errors"].is_null(), "{reply}");
    debit(&acme, "acme", "d-1", 2_500).await;
    app.project().await;
    assert_eq!(alerts(&app, "acme").await.len(), 1);
    assert!(alerts(&app, "globex").await.is_empty());
    // The second wall: row-level security scopes the read model to the tenant.
    let page = wallet_work::alerts(&app.state.pool, &tenant("globex"), 50, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(page.rows.is_empty());
    let hidden: i64 = {
        let mut tx = app.state.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
        sqlx::query("SELECT set_config('chronicle.tenant_id', 'globex', true)")
            .execute(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        sqlx::query_scalar("SELECT count(*) FROM wallet_alerts")
            .fetch_one(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    };
    assert_eq!(hidden, 0);
}
