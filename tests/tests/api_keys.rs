//! API keys for programs (issue 13), through a real HTTP and WebSocket client against the
//! served app: issued by owners and admins, shown once, stored hashed, listed, used as a
//! Bearer credential whose scopes bound what its role allows, and refused on GraphQL, REST and
//! WebSocket from the moment it is revoked or expires (open subscriptions end).

use std::time::Duration;

use chronicle_api::auth::Role;
use chronicle_domain::api_key::ApiKeyScope;
use chronicle_tests::{error_code, error_message, TestApp};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const ISSUE: &str = "mutation($input: IssueApiKeyInput!) { issueApiKey(input: $input) {
    id appended secret key: apiKey { id prefix name role scopes expiresAt issuedBy revokedAt lastUsedAt } } }";

/// A GraphQL client of the served app.
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn new(app: &TestApp) -> Self {
        let address = app.serve().await;
        Self {
            http: reqwest::Client::new(),
            base: format!("http://{address}"),
        }
    }

    /// Posts a GraphQL request with `credential` as Bearer; answers status and body.
    async fn post(&self, credential: &str, query: &str, variables: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/graphql", self.base))
            .bearer_auth(credential)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_else(|e| panic!("{e}")))
    }

    /// `GET /media/<ref>` with `credential`: the status.
    async fn media(&self, credential: &str) -> u16 {
        self.http
            .get(format!("{}/media/media_0000", self.base))
            .bearer_auth(credential)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .status()
            .as_u16()
    }

    /// Issues a key as `issuer`; answers the whole reply.
    async fn issue(&self, issuer: &str, input: Value) -> Value {
        self.post(issuer, ISSUE, json!({ "input": input })).await.1
    }

    /// Issues a key that must be accepted; answers (secret, key id).
    async fn issued(&self, issuer: &str, input: Value) -> (String, String) {
        let reply = self.issue(issuer, input).await;
        assert!(reply["errors"].is_null(), "{reply}");
        let issued = &reply["data"]["issueApiKey"];
        (
            issued["secret"].as_str().unwrap_or_default().to_string(),
            issued["key"]["id"].as_str().unwrap_or_default().to_string(),
        )
    }

    async fn revoke(&self, issuer: &str, key_id: &str) -> Value {
        self.post(
            issuer,
            "mutation($id: String!) { revokeApiKey(id: $id, reason: \"rotated\") { id appended } }",
            json!({ "id": key_id }),
        )
        .await
        .1
    }
}

fn in_seconds(seconds: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(seconds)).to_rfc3339()
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_owner_issues_a_key_shown_once_stored_hashed_listed_and_recorded(pool: sqlx::PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "15550001111").await;
    let client = Client::new(&app).await;
    let owner = app.token("acme", Role::Owner);

    let reply = client
        .issue(
            &owner,
            json!({"name": " Zoho sync ", "role": "agent", "scopes": ["leads:write", "leads:read", "leads:write"],
                   "expiresAt": in_seconds(86_400)}),
        )
        .await;
    assert!(reply["errors"].is_null(), "{reply}");
    let issued = &reply["data"]["issueApiKey"];
    let secret = issued["secret"].as_str().unwrap_or_default().to_string();
    let key = &issued["key"];
    let key_id = key["id"].as_str().unwrap_or_default().to_string();
    let prefix = key["prefix"].as_str().unwrap_or_default().to_string();
    assert!(key_id.starts_with("key_") && key_id.len() == 20, "{key_id}");
    assert_eq!(prefix, format!("chr_{}", &key_id[4..]));
    assert!(
        secret.starts_with(&format!("{prefix}_")),
        "the key starts with its visible prefix"
    );
    assert_eq!(key["name"], "Zoho sync");
    assert_eq!(key["role"], "agent");
    assert_eq!(key["scopes"], json!(["leads:read", "leads:write"]));
    assert_eq!(key["issuedBy"], "user:user-1:owner");
    assert!(key["revokedAt"].is_null() && key["lastUsedAt"].is_null());
    assert_eq!(issued["id"], json!(key_id));
    assert_eq!(issued["appended"], 1);

    // Stored hashed: the secret is nowhere in the database, the log included.
    // The part after `chr_<id>_` (which may itself hold `_`: base64url).
    let secret_part = secret[prefix.len() + 1..].to_string();
    assert_eq!(secret_part.len(), 43);
    let anywhere = app
        .count(&format!(
            "SELECT count(*) FROM api_key_credentials c, events e \
             WHERE c.secret_sha256 = convert_to('{secret_part}', 'UTF8') \
                OR e.payload::text LIKE '%{secret_part}%' OR e.metadata::text LIKE '%{secret_part}%'"
        ))
        .await;
    assert_eq!(anywhere, 0);
    let hashed = app
        .count(&format!(
            "SELECT count(*) FROM api_key_credentials WHERE secret_sha256 = sha256(convert_to('{secret_part}', 'UTF8'))"
        ))
        .await;
    assert_eq!(hashed, 1);

    // The issue is an event with its actor; the secret is not in it.
    let (event_type, actor, payload): (String, String, Value) =
        sqlx::query_as("SELECT event_type, metadata ->> 'actor', payload FROM events WHERE aggregate_id = $1")
            .bind(format!("acme:{key_id}"))
            .fetch_one(&app.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (event_type.as_str(), actor.as_str()),
        ("ApiKeyIssued", "user:user-1:owner")
    );
    assert_eq!(payload["ApiKeyIssued"]["prefix"], json!(prefix));

    // Used as a Bearer credential: the lead it captures is the key's doing.
    let (status, reply) = client
        .post(
            &secret,
            "mutation { captureLead(input: { idempotencyKey: \"k1\", phone: \"+15550009999\", name: \"P\" }) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert!(reply["errors"].is_null(), "{reply}");
    let lead_actor: String =
        sqlx::query_scalar("SELECT metadata ->> 'actor' FROM events WHERE event_type = 'LeadCaptured' LIMIT 1")
            .fetch_one(&app.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(lead_actor, format!("api_key:{key_id}"));

    // Listed, with its last use; never its secret.
    let (_, listed) = client
        .post(
            &owner,
            "{ apiKeys { nodes { id prefix scopes lastUsedAt revokedAt } } }",
            json!({}),
        )
        .await;
    let keys = listed["data"]["apiKeys"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(keys.len(), 1, "{listed}");
    assert_eq!(keys[0]["id"], json!(key_id));
    assert!(keys[0]["lastUsedAt"].is_string(), "{listed}");
    assert!(!listed.to_string().contains(&secret_part));

    // Revoked: an event with its actor and reason; a second revocation changes nothing.
    let revoked = client.revoke(&owner, &key_id).await;
    assert_eq!(revoked["data"]["revokeApiKey"]["appended"], 1, "{revoked}");
    let again = client.revoke(&owner, &key_id).await;
    assert_eq!(again["data"]["revokeApiKey"]["appended"], 0, "{again}");
    assert_eq!(app.count_events("ApiKeyRevoked").await, 1);
    let unknown = client.revoke(&owner, "key_aaaaaaaaaaaaaaaa").await;
    assert_eq!(error_code(&unknown), "UNKNOWN_API_KEY", "{unknown}");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn refused_issues_store_nothing_and_only_owners_and_admins_manage_keys(pool: sqlx::PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "15550001111").await;
    app.tenant_with_number("globex", "15550002222").await;
    let client = Client::new(&app).await;
    let owner = app.token("acme", Role::Owner);
    let admin = app.token("acme", Role::Admin);
    let base = || json!({"name": "sync", "scopes": ["events:read"]});
    let with = |field: &str, value: Value| {
        let mut input = base();
        input[field] = value;
        input
    };
    for (input, code) in [
        (with("scopes", json!(["events:write"])), "UNKNOWN_SCOPE"),
        (with("scopes", json!([])), "NO_SCOPES"),
        (with("role", json!("boss")), "UNKNOWN_ROLE"),
        (with("name", json!("   ")), "INVALID_API_KEY_NAME"),
        (with("name", json!("n".repeat(101))), "INVALID_API_KEY_NAME"),
        (with("expiresAt", json!(in_seconds(-60))), "EXPIRY_NOT_IN_FUTURE"),
    ] {
        let reply = client.issue(&owner, input.clone()).await;
        assert_eq!(error_code(&reply), code, "{input}: {reply}");
    }
    let reply = client.issue(&admin, with("role", json!("owner"))).await;
    assert_eq!(error_code(&reply), "ROLE_ABOVE_ISSUER", "{reply}");
    assert_eq!(app.count("SELECT count(*) FROM api_key_credentials").await, 0);
    assert_eq!(app.count_events("ApiKeyIssued").await, 0);

    for role in [
        Role::Agent,
        Role::Technician,
        Role::Finance,
        Role::Auditor,
        Role::Integrator,
    ] {
        let token = app.token("acme", role);
        let reply = client.issue(&token, base()).await;
        assert_eq!(error_code(&reply), "FORBIDDEN", "{role:?}: {reply}");
        let (_, listed) = client.post(&token, "{ apiKeys { nodes { id } } }", json!({})).await;
        assert_eq!(error_code(&listed), "FORBIDDEN", "{role:?}: {listed}");
    }

    // An admin issues an integrator's key (the default role); an owner's key with every scope
    // still cannot issue, list or revoke keys.
    let (_, admin_key) = client.issued(&admin, base()).await;
    let scopes: Vec<&str> = ApiKeyScope::ALL.iter().map(|s| s.as_str()).collect();
    let (all_powerful, _) = client
        .issued(&owner, json!({"name": "all", "role": "owner", "scopes": scopes}))
        .await;
    let reply = client.issue(&all_powerful, base()).await;
    assert_eq!(error_code(&reply), "FORBIDDEN", "{reply}");
    assert!(error_message(&reply).contains("API key"), "{reply}");
    let reply = client.revoke(&all_powerful, &admin_key).await;
    assert_eq!(error_code(&reply), "FORBIDDEN", "{reply}");
    let (_, listed) = client
        .post(&owner, "{ apiKeys { nodes { id role } } }", json!({}))
        .await;
    assert_eq!(
        listed["data"]["apiKeys"]["nodes"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );

    // Another tenant's owner neither sees nor revokes acme's keys.
    let globex = app.token("globex", Role::Owner);
    let (_, theirs) = client.post(&globex, "{ apiKeys { nodes { id } } }", json!({})).await;
    assert_eq!(theirs["data"]["apiKeys"]["nodes"], json!([]), "{theirs}");
    let reply = client.revoke(&globex, &admin_key).await;
    assert_eq!(error_code(&reply), "UNKNOWN_API_KEY", "{reply}");
    assert_eq!(app.count_events("ApiKeyRevoked").await, 0);
}

/// One operation per scope that grants something: what a key with that scope (and the owner's
/// role, so the role never decides) may run, and every other key may not.
const PROBES: &[(ApiKeyScope, &str)] = &[
    (ApiKeyScope::EventsRead, "{ eventLog(first: 1) { edges { cursor } } }"),
    (ApiKeyScope::InboxRead, "{ conversations { edges { cursor } } }"),
    (
        ApiKeyScope::InboxRead,
        "{ agentPerformance(from: \"2026-01-01T00:00:00Z\", to: \"2026-02-01T00:00:00Z\") { agentId } }",
    ),
    (
        ApiKeyScope::InboxWrite,
        "mutation { tagConversation(conversationId: \"ct_00000000000000000000000000000000\", tag: \"x\") { id } }",
    ),
    (ApiKeyScope::LeadsRead, "{ leads { edges { cursor } } }"),
    (
        ApiKeyScope::LeadsWrite,
        "mutation { captureLead(input: { idempotencyKey: \"probe\", phone: \"+15550009999\" }) { id } }",
    ),
    (ApiKeyScope::ContactsRead, "{ contacts { edges { cursor } } }"),
    (
        ApiKeyScope::ContactsWrite,
        "mutation { tagContact(contactId: \"ct_00000000000000000000000000000000\", tag: \"x\") { id } }",
    ),
    (ApiKeyScope::CampaignsRead, "{ campaigns { edges { cursor } } }"),
    (ApiKeyScope::WalletsRead, "{ wallets { edges { cursor } } }"),
    (ApiKeyScope::PaymentsRead, "{ payments { edges { cursor } } }"),
    (ApiKeyScope::OrdersRead, "{ orders { edges { cursor } } }"),
    (
        ApiKeyScope::OrdersWrite,
        "mutation { placeOrder(customerId: \"ct_00000000000000000000000000000000\", items: [{ sku: \"p\", description: \"panel\", quantity: 1, unitPriceMinor: 100, currency: \"USD\" }]) { id } }",
    ),
    (ApiKeyScope::InstallationsRead, "{ installations { edges { cursor } } }"),
    (ApiKeyScope::WebhooksManage, "{ webhooks { nodes { id } } }"),
];

/// What no key may do, whatever its scopes: money, configuration, erasure.
const PEOPLE_ONLY: &[&str] = &[
    "mutation { purchaseTokens(amount: 1000, source: \"manual\", reference: \"r1\") { id } }",
    "mutation { setPrice(feature: \"message\", unitPrice: 1) { id } }",
    "mutation { eraseContact(contactId: \"ct_00000000000000000000000000000000\") { id } }",
];

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn each_scope_allows_its_operations_and_no_other(pool: sqlx::PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "15550001111").await;
    let client = Client::new(&app).await;
    let owner = app.token("acme", Role::Owner);
    for scope in ApiKeyScope::ALL {
        let (key, _) = client
            .issued(
                &owner,
                json!({"name": scope.as_str(), "role": "owner", "scopes": [scope.as_str()]}),
            )
            .await;
        for (needs, operation) in PROBES {
            let (status, reply) = client.post(&key, operation, json!({})).await;
            let forbidden = error_code(&reply) == "FORBIDDEN";
            assert_eq!(
                forbidden,
                needs != scope,
                "a key with {scope} running {operation}: {status} {reply}"
            );
        }
        for operation in PEOPLE_ONLY {
            let (_, reply) = client.post(&key, operation, json!({})).await;
            assert_eq!(error_code(&reply), "FORBIDDEN", "{scope}: {operation}: {reply}");
        }
    }
    // Every scope that grants an operation has its probe.
    for scope in ApiKeyScope::ALL {
        let grants = chronicle_api::permissions::TABLE
            .iter()
            .any(|(permission, _)| permission.key_scopes().contains(scope));
        assert_eq!(
            grants,
            // events:read_personal opens personal fields of what events:read reads
            // (tests/tests/event_feed.rs), it grants no operation of its own.
            PROBES.iter().any(|(s, _)| s == scope) || *scope == ApiKeyScope::EventsReadPersonal,
            "{scope}"
        );
    }

    // The role bounds the scopes: an auditor's key with leads:write reads but captures nothing.
    let (auditor_key, _) = client
        .issued(
            &owner,
            json!({"name": "audit", "role": "auditor", "scopes": ["leads:read", "leads:write"]}),
        )
        .await;
    let probe = |scope: ApiKeyScope| {
        PROBES
            .iter()
            .find(|(s, _)| *s == scope)
            .map(|(_, operation)| *operation)
            .unwrap_or_default()
    };
    let (_, reply) = client
        .post(&auditor_key, probe(ApiKeyScope::LeadsWrite), json!({}))
        .await;
    assert_eq!(error_code(&reply), "FORBIDDEN", "{reply}");
    let (_, reply) = client
        .post(&auditor_key, probe(ApiKeyScope::LeadsRead), json!({}))
        .await;
    assert!(reply["errors"].is_null(), "{reply}");

    // Managing webhooks is not reading events: creating one (which receives events) needs
    // events:read too.
    let create = "mutation { createWebhook(input: { url: \"http://127.0.0.1:9/hook\" }) { id } }";
    let (manage_only, _) = client
        .issued(
            &owner,
            json!({"name": "hooks", "role": "owner", "scopes": ["webhooks:manage"]}),
        )
        .await;
    let (_, reply) = client.post(&manage_only, create, json!({})).await;
    assert_eq!(error_code(&reply), "FORBIDDEN", "{reply}");
    let (both, _) = client
        .issued(
            &owner,
            json!({"name": "hooks+events", "role": "integrator", "scopes": ["webhooks:manage", "events:read"]}),
        )
        .await;
    let (_, reply) = client.post(&both, create, json!({})).await;
    assert!(reply["errors"].is_null(), "{reply}");
}

async fn ws_connect(base: &str, credential: &str) -> Socket {
    let url = format!("{}/graphql/ws", base.replace("http://", "ws://"));
    let mut request = url.into_client_request().unwrap_or_else(|e| panic!("{e}"));
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap_or_else(|e| panic!("{e}")),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let init = json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {credential}")}});
    socket
        .send(Message::Text(init.to_string().into()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    socket
}

/// The next message that is not a ping or pong, or the close frame's code and reason.
async fn ws_next(socket: &mut Socket) -> Result<Value, (u16, String)> {
    loop {
        let message = match tokio::time::timeout(Duration::from_secs(20), socket.next()).await {
            Err(_) => panic!("no message within 20 s"),
            Ok(None) => return Err((0, "ended".into())),
            Ok(Some(Err(e))) => return Err((0, e.to_string())),
            Ok(Some(Ok(message))) => message,
        };
        match message {
            Message::Text(text) => {
                let value: Value = serde_json::from_str(&text).unwrap_or_default();
                if value["type"] == "ping" || value["type"] == "pong" {
                    continue;
                }
                return Ok(value);
            }
            Message::Close(Some(frame)) => return Err((u16::from(frame.code), frame.reason.to_string())),
            Message::Close(None) => return Err((1005, String::new())),
            _ => continue,
        }
    }
}

/// Subscribes to `events` and waits for the first event.
async fn subscribe(socket: &mut Socket) {
    assert_eq!(
        ws_next(socket).await.map(|v| v["type"].clone()),
        Ok(json!("connection_ack"))
    );
    let subscribe =
        json!({"id": "1", "type": "subscribe", "payload": {"query": "subscription { events { eventType } }"}});
    socket
        .send(Message::Text(subscribe.to_string().into()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let first = ws_next(socket).await;
    assert_eq!(first.map(|v| v["type"].clone()), Ok(json!("next")));
}

/// After revocation or expiry: the open subscription ends with an error naming why, and the
/// key is refused on GraphQL, REST and a new WebSocket connection.
async fn refused_everywhere(client: &Client, socket: &mut Socket, key: &str, why: &str) {
    // The subscription's last result carries the error; then it completes.
    let ended = loop {
        match ws_next(socket).await {
            Ok(v) if v["type"] == "next" && v["payload"]["errors"].is_null() => continue,
            other => break other,
        }
    };
    let ended = ended.unwrap_or_else(|closed| panic!("closed instead of an error: {closed:?}"));
    assert_eq!(ended["type"], "next", "{ended}");
    assert_eq!(
        ended["payload"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{ended}"
    );
    assert!(
        ended["payload"]["errors"][0]["message"].to_string().contains(why),
        "{ended}"
    );
    assert_eq!(ws_next(socket).await.map(|v| v["type"].clone()), Ok(json!("complete")));
    // Another operation on the same connection: the key is checked again, and the connection
    // ends.
    let again = json!({"id": "2", "type": "subscribe", "payload": {"query": "{ leads { edges { cursor } } }"}});
    socket
        .send(Message::Text(again.to_string().into()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let closed = ws_next(socket).await;
    assert!(
        matches!(&closed, Err((4403, reason)) if reason.contains(why)),
        "{closed:?}"
    );
    let (status, reply) = client.post(key, "{ leads { edges { cursor } } }", json!({})).await;
    assert_eq!((status, error_code(&reply)), (401, "UNAUTHENTICATED"), "{reply}");
    assert!(error_message(&reply).contains(why), "{reply}");
    assert_eq!(client.media(key).await, 401);
    let mut again = ws_connect(&client.base, key).await;
    let closed = ws_next(&mut again).await;
    assert!(
        matches!(&closed, Err((4403, reason)) if reason.contains(why)),
        "{closed:?}"
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_revoked_or_expired_key_is_refused_on_graphql_rest_and_websocket(pool: sqlx::PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "15550001111").await;
    let client = Client::new(&app).await;
    let owner = app.token("acme", Role::Owner);
    let scopes = json!(["events:read", "inbox:read", "leads:read"]);

    // Revoked: usable until the revocation, refused from the next request on.
    let (key, key_id) = client
        .issued(&owner, json!({"name": "revoked", "role": "owner", "scopes": scopes}))
        .await;
    let (status, reply) = client.post(&key, "{ leads { edges { cursor } } }", json!({})).await;
    assert_eq!(status, 200, "{reply}");
    assert!(reply["errors"].is_null(), "{reply}");
    assert_eq!(client.media(&key).await, 404, "allowed, and no such media");
    let mut socket = ws_connect(&client.base, &key).await;
    subscribe(&mut socket).await;
    let revoked = client.revoke(&owner, &key_id).await;
    assert!(revoked["errors"].is_null(), "{revoked}");
    refused_everywhere(&client, &mut socket, &key, "revoked").await;

    // Expired: the same from its expiry on.
    let (key, _) = client
        .issued(
            &owner,
            json!({"name": "short", "role": "owner", "scopes": scopes, "expiresAt": in_seconds(10)}),
        )
        .await;
    let (status, reply) = client.post(&key, "{ leads { edges { cursor } } }", json!({})).await;
    assert_eq!(status, 200, "{reply}");
    let mut socket = ws_connect(&client.base, &key).await;
    subscribe(&mut socket).await;
    refused_everywhere(&client, &mut socket, &key, "expired").await;

    // A key of the right form with a wrong secret, or an unknown key, is simply not valid.
    let forged = format!("{}_{}", &key[..20], "A".repeat(43));
    let (status, reply) = client.post(&forged, "{ leads { edges { cursor } } }", json!({})).await;
    assert_eq!(status, 401, "{reply}");
    assert_eq!(error_message(&reply), "the API key is not valid");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_key_revoked_while_a_legacy_websocket_is_open_is_refused_at_its_next_operation(pool: sqlx::PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "15550001111").await;
    let client = Client::new(&app).await;
    let owner = app.token("acme", Role::Owner);
    let (key, key_id) = client
        .issued(
            &owner,
            json!({"name": "legacy", "role": "owner", "scopes": ["leads:read"]}),
        )
        .await;
    let mut socket = chronicle_tests::ws::open(&client.base, "graphql-ws").await;
    chronicle_tests::ws::init(&mut socket, &key).await;
    assert_eq!(chronicle_tests::ws::next(&mut socket).await["type"], "connection_ack");
    let start = |id: &str| json!({"id": id, "type": "start", "payload": {"query": "{ leads { edges { cursor } } }"}});

    chronicle_tests::ws::send(&mut socket, start("1")).await;
    let data = chronicle_tests::ws::next(&mut socket).await;
    assert_eq!(data["type"], "data", "{data}");
    assert!(data["payload"]["errors"].is_null(), "{data}");
    assert!(data["payload"]["data"]["leads"].is_object(), "{data}");
    assert_eq!(chronicle_tests::ws::next(&mut socket).await["type"], "complete");

    let revoked = client.revoke(&owner, &key_id).await;
    assert!(revoked["errors"].is_null(), "{revoked}");
    chronicle_tests::ws::send(&mut socket, start("2")).await;
    let refused = chronicle_tests::ws::next(&mut socket).await;
    assert_eq!(refused["id"], "2", "{refused}");
    assert_eq!(error_code(&refused["payload"]), "UNAUTHENTICATED", "{refused}");
    assert!(error_message(&refused["payload"]).contains("revoked"), "{refused}");
    assert!(refused["payload"]["data"].is_null(), "nothing ran: {refused}");
}
