//! The claims workers make on tables a projector owns (`LeaseClaim::on_feed`, decision 0013):
//! each row leased to one worker at a time, rows given up skipped until they change, leases
//! that end.

use std::collections::BTreeSet;

use chronicle_commands::workers::LeaseClaim;
use sqlx::{PgPool, Row};

async fn claim(pool: &PgPool, claim: &LeaseClaim, limit: i64) -> Vec<String> {
    claim
        .query()
        .bind(limit)
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|row| row.get::<String, _>("id"))
        .collect()
}

async fn end_leases(pool: &PgPool) {
    sqlx::query("UPDATE work_leases SET not_before = now()")
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_feed_claim_leases_each_row_to_one_worker_and_skips_given_up_rows_until_they_change(pool: PgPool) {
    sqlx::query(
        "CREATE TABLE demo_feed (tenant_id text, id text, version bigint, ready boolean, PRIMARY KEY (tenant_id, id))",
    )
    .execute(&pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query(
        "INSERT INTO demo_feed SELECT 'acme', lpad(n::text, 3, '0'), 1, n <= 60 FROM generate_series(1, 70) AS n",
    )
    .execute(&pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let feed = LeaseClaim::on_feed(
        "demo",
        "demo_feed",
        "tenant_id, id",
        Some("version"),
        "ready",
        "id",
        "id",
    );

    // Eight workers at once: every ready row is taken once, by one of them.
    let claims = futures::future::join_all((0..8).map(|_| claim(&pool, &feed, 10))).await;
    let mut taken: Vec<String> = claims.into_iter().flatten().collect();
    loop {
        let more = claim(&pool, &feed, 10).await;
        if more.is_empty() {
            break;
        }
        taken.extend(more);
    }
    let distinct: BTreeSet<&String> = taken.iter().collect();
    assert_eq!(distinct.len(), taken.len(), "a row was claimed twice");
    assert_eq!(taken.len(), 60, "every ready row, and only those");
    // Leased: nothing until the leases end.
    assert!(claim(&pool, &feed, 100).await.is_empty());
    end_leases(&pool).await;

    // A row given up is skipped while its version stands...
    LeaseClaim::give_up(&pool, "demo", &["acme", "001"], "refused: REASON")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let again = claim(&pool, &feed, 100).await;
    assert_eq!(again.len(), 59);
    assert!(!again.contains(&"001".to_string()));
    end_leases(&pool).await;
    // ...and claimed again once the projector changed it, its attempts counted.
    sqlx::query("UPDATE demo_feed SET version = 2 WHERE id = '001'")
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claim(&pool, &feed, 100).await.len(), 60);
    let (attempts, error): (i32, Option<String>) = sqlx::query_as(
        "SELECT attempts, last_error FROM work_leases WHERE worker = 'demo' AND item = '[\"acme\", \"001\"]'",
    )
    .fetch_one(&pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((attempts, error.as_deref()), (2, Some("refused: REASON")));
    // The feed itself was never written by the claims.
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM demo_feed WHERE version = 1")
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        69
    );
}
