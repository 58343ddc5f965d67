//! The `customers` projector against real PostgreSQL: a customer row is fed by several streams
//! (a lead won, any number of orders), whose events a projector receives in commit order, not
//! by position. Whatever order it sees them in, the row ends the same.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chronicle_domain::installation::{LineItem, OrderEvent};
use chronicle_domain::lead::LeadEvent;
use chronicle_projections::customers::CustomersProjector;
use chronicle_projections::log::{Cursor, StoredEvent};
use chronicle_projections::runtime::Fold;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;

fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).single().unwrap() + Duration::minutes(minutes)
}

fn stored(position: i64, aggregate_type: &str, local_id: &str, event_type: &str, payload: Value) -> StoredEvent {
    StoredEvent {
        cursor: Cursor {
            tx_id: 1_000 + position as u64,
            position,
        },
        global_position: position,
        tenant_id: "acme".into(),
        aggregate_type: aggregate_type.into(),
        aggregate_id: format!("acme:{local_id}"),
        sequence: 1,
        event_type: event_type.into(),
        event_version: "1.0".into(),
        payload,
        metadata: json!({}),
        recorded_at: at(0),
        tx_id: 1_000 + position as u64,
    }
}

fn won(position: i64, lead: &str, minutes: i64) -> StoredEvent {
    let event = LeadEvent::LeadWon {
        customer_id: "ct_1".into(),
        order_ref: None,
        value: None,
        at: at(minutes),
    };
    stored(position, "Lead", lead, "LeadWon", serde_json::to_value(event).unwrap())
}

fn placed(position: i64, order: &str, minutes: i64) -> StoredEvent {
    let event = OrderEvent::OrderPlaced {
        customer_id: "ct_1".into(),
        items: vec![LineItem {
            sku: "panel".into(),
            description: "Panel".into(),
            quantity: 1,
            unit_price_minor: 100,
            currency: "USD".into(),
            installable: None,
            capacity_w: None,
        }],
        currency: "USD".into(),
        total_minor: 100,
        site_address: None,
        by: "agent".into(),
        at: at(minutes),
    };
    stored(
        position,
        "Order",
        order,
        "OrderPlaced",
        serde_json::to_value(event).unwrap(),
    )
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_customer_row_is_the_same_whatever_order_its_streams_events_arrive_in(pool: PgPool) {
    // A lead won at 20, another at 10, orders at 5 and 30.
    let events = [
        won(10, "lead_b", 20),
        won(11, "lead_a", 10),
        placed(12, "order_1", 5),
        placed(13, "order_2", 30),
    ];
    let expected = json!({"since": at(5), "won_lead_id": "lead_a", "won_at": at(10), "first_order_at": at(5)});
    let mut orders: Vec<Vec<usize>> = Vec::new();
    permutations(&mut [0, 1, 2, 3], 0, &mut orders);
    assert_eq!(orders.len(), 24);
    let mut db = pool.acquire().await.unwrap();
    for order in orders {
        sqlx::query("DELETE FROM customers").execute(&mut *db).await.unwrap();
        for i in &order {
            CustomersProjector.apply_one(&mut db, &events[*i]).await.unwrap();
        }
        // Each applied twice (a batch repeated) changes nothing either.
        for i in &order {
            CustomersProjector.apply_one(&mut db, &events[*i]).await.unwrap();
        }
        let row: Value = sqlx::query_scalar(
            "SELECT jsonb_build_object('since', since, 'won_lead_id', won_lead_id, 'won_at', won_at,
                                       'first_order_at', first_order_at)
               FROM customers WHERE tenant_id = 'acme' AND customer_id = 'ct_1'",
        )
        .fetch_one(&mut *db)
        .await
        .unwrap();
        let row: Value = json!({
            "since": row["since"].as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc)),
            "won_lead_id": row["won_lead_id"],
            "won_at": row["won_at"].as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc)),
            "first_order_at": row["first_order_at"].as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc)),
        });
        assert_eq!(row, expected, "applied in the order {order:?}");
    }
}

fn permutations(items: &mut [usize], k: usize, out: &mut Vec<Vec<usize>>) {
    if k == items.len() {
        out.push(items.to_vec());
        return;
    }
    for i in k..items.len() {
        items.swap(k, i);
        permutations(items, k + 1, out);
        items.swap(k, i);
    }
}
