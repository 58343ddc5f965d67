//! Users, sign-in and sessions (issue 14), through a real HTTP client against the served app:
//! invitations accepted with a password, sign-in with short access tokens and rotating refresh
//! tokens (a reused one ends the family), deactivation ending sessions, TOTP with recovery
//! codes, password resets, the last-owner rule, and failed sign-ins paced the same way for an
//! unknown e-mail as for a wrong password.

use std::time::Duration;

use chronicle_api::auth::Role;
use chronicle_tests::{error_code, settings, TestApp};
use serde_json::{json, Value};

/// A client of the served app.
struct Client {
    http: reqwest::Client,
    base: String,
}

/// An HTTP answer: status, `Retry-After` (seconds) and body.
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl Client {
    async fn new(app: &TestApp) -> Self {
        let address = app.serve().await;
        Self {
            http: reqwest::Client::new(),
            base: format!("http://{address}"),
        }
    }

    async fn post(&self, path: &str, body: Value, address: Option<&str>) -> Answer {
        let mut request = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(address) = address {
            request = request.header("x-forwarded-for", format!("198.51.100.7, {address}"));
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{e}"));
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = response.json().await.unwrap_or(Value::Null);
        Answer {
            status,
            retry_after,
            body,
        }
    }

    async fn sign_in(&self, email: &str, password: &str, extra: Value) -> Answer {
        let mut body = json!({"tenant": "acme", "email": email, "password": password});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        self.post("/auth/sign-in", body, None).await
    }

    async fn graphql(&self, token: &str, query: &str, variables: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/graphql", self.base))
            .bearer_auth(token)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

const INVITE: &str = "mutation($input: InviteUserInput!) { inviteUser(input: $input) {
    id secret appended user { id email name role status invitedBy } } }";
const VIEWER: &str = "{ viewer { userId role account { id email name status twoFactor } } }";

/// Invites `email` with `role` as the holder of `token`; answers the user id and invitation.
async fn invite(client: &Client, token: &str, email: &str, role: &str) -> (String, String) {
    let (_, reply) = client
        .graphql(
            token,
            INVITE,
            json!({"input": {"email": email, "name": format!("Name of {email}"), "role": role}}),
        )
        .await;
    assert!(reply["errors"].is_null(), "{reply}");
    let receipt = &reply["data"]["inviteUser"];
    (
        receipt["id"].as_str().unwrap_or_default().to_string(),
        receipt["secret"].as_str().unwrap_or_default().to_string(),
    )
}

/// Accepts an invitation; answers the session.
async fn accept(client: &Client, invitation: &str, password: &str) -> Answer {
    client
        .post(
            "/auth/accept-invitation",
            json!({"token": invitation, "password": password}),
            None,
        )
        .await
}

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field].as_str().unwrap_or_default()
}

/// A tenant with an owner who signed in: the owner's access token.
async fn tenant_with_owner(app: &TestApp, client: &Client) -> (String, String) {
    app.tenant_with_number("acme", "100200300").await;
    // The operator's token brings the first owner in, as `chronicle admin invite-user` does.
    let operator = app.token("acme", Role::Owner);
    let (owner_id, invitation) = invite(client, &operator, "olive@acme.test", "owner").await;
    let session = accept(client, &invitation, "olive's long passphrase").await;
    assert_eq!(session.status, 200, "{}", session.body);
    (owner_id, text(&session.body, "accessToken").to_string())
}

async fn event_types(app: &TestApp, user_id: &str) -> Vec<(String, String)> {
    sqlx::query_as("SELECT event_type, metadata->>'actor' FROM events WHERE aggregate_id = $1 ORDER BY sequence")
        .bind(format!("acme:{user_id}"))
        .fetch_all(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn invite_accept_sign_in_refresh_reuse_and_deactivation(pool: sqlx::PgPool) {
    let mut settings = settings(false);
    settings.sessions.access_ttl = Duration::from_secs(1);
    let app = TestApp::with_settings(pool, settings).await;
    let client = Client::new(&app).await;
    let (owner_id, owner) = tenant_with_owner(&app, &client).await;

    // Invite → accept (a weak password first: refused, nothing changes) → sign in → query.
    let (amina, invitation) = invite(&client, &owner, "Amina@Acme.test", "agent").await;
    let weak = accept(&client, &invitation, "password123").await;
    assert_eq!((weak.status, weak.code()), (422, "WEAK_PASSWORD"), "{}", weak.body);
    let accepted = accept(&client, &invitation, "amina's own passphrase").await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    let again = accept(&client, &invitation, "amina's own passphrase").await;
    assert_eq!(
        (again.status, again.code()),
        (401, "INVALID_TOKEN"),
        "an invitation is used once"
    );

    let signed_in = client
        .sign_in("amina@acme.test", "amina's own passphrase", json!({}))
        .await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    assert_eq!(
        (
            text(&signed_in.body, "tokenType"),
            text(&signed_in.body, "role"),
            text(&signed_in.body, "userId")
        ),
        ("Bearer", "agent", amina.as_str())
    );
    assert_eq!(signed_in.body["expiresIn"], 1);
    let access = text(&signed_in.body, "accessToken").to_string();
    let (_, viewer) = client.graphql(&access, VIEWER, json!({})).await;
    assert_eq!(
        viewer["data"]["viewer"]["account"],
        json!({"id": amina, "email": "amina@acme.test", "name": "Name of Amina@Acme.test", "status": "active", "twoFactor": false}),
        "{viewer}"
    );

    // Refresh → refresh again with the old token: the family is ended, the newer token too.
    let first = text(&signed_in.body, "refreshToken").to_string();
    let refreshed = client.post("/auth/refresh", json!({"refreshToken": first}), None).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    let second = text(&refreshed.body, "refreshToken").to_string();
    assert_ne!(second, first);
    let reused = client.post("/auth/refresh", json!({"refreshToken": first}), None).await;
    assert_eq!(
        (reused.status, reused.code()),
        (401, "REFRESH_TOKEN_REUSED"),
        "{}",
        reused.body
    );
    let newer = client
        .post("/auth/refresh", json!({"refreshToken": second}), None)
        .await;
    assert_eq!(newer.status, 401, "the stolen family is ended: {}", newer.body);

    // Two refreshes of one token at once (a thief racing the owner): one wins, the other ends
    // the family, the winner's new token with it.
    let raced = client
        .sign_in("amina@acme.test", "amina's own passphrase", json!({}))
        .await;
    let token = text(&raced.body, "refreshToken").to_string();
    let (a, b) = tokio::join!(
        client.post("/auth/refresh", json!({"refreshToken": token}), None),
        client.post("/auth/refresh", json!({"refreshToken": token}), None)
    );
    let mut statuses = [(a.status, a.code().to_string()), (b.status, b.code().to_string())];
    statuses.sort();
    assert_eq!(
        statuses,
        [(200, String::new()), (401, "REFRESH_TOKEN_REUSED".to_string())],
        "{} {}",
        a.body,
        b.body
    );
    let winner = if a.status == 200 { &a } else { &b };
    let after = client
        .post(
            "/auth/refresh",
            json!({"refreshToken": text(&winner.body, "refreshToken")}),
            None,
        )
        .await;
    assert_eq!(after.status, 401, "the family ended: {}", after.body);

    // Sign in again → deactivated by an admin → refresh refused at once; the access token
    // works until its short life ends, then is refused; sign-in is refused.
    let (admin_id, admin_invitation) = invite(&client, &owner, "ada@acme.test", "admin").await;
    let admin_session = accept(&client, &admin_invitation, "ada's long passphrase").await;
    let admin = text(&admin_session.body, "accessToken").to_string();
    let again = client
        .sign_in("amina@acme.test", "amina's own passphrase", json!({}))
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    let refresh = text(&again.body, "refreshToken").to_string();
    let access = text(&again.body, "accessToken").to_string();
    let (_, deactivated) = client
        .graphql(
            &admin,
            "mutation($id: String!) { deactivateUser(id: $id, reason: \"left\") { id appended } }",
            json!({"id": amina}),
        )
        .await;
    assert_eq!(deactivated["data"]["deactivateUser"]["appended"], 1, "{deactivated}");
    let refused = client
        .post("/auth/refresh", json!({"refreshToken": refresh}), None)
        .await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    let (status, _) = client.graphql(&access, VIEWER, json!({})).await;
    assert_eq!(status, 200, "the access token lives out its short life");
    // One second of life and the verifier's five seconds of leeway for clock skew (in whole
    // seconds: refused once now - exp > 5).
    tokio::time::sleep(Duration::from_millis(7_500)).await;
    let (status, expired) = client.graphql(&access, VIEWER, json!({})).await;
    assert_eq!((status, error_code(&expired)), (401, "UNAUTHENTICATED"), "{expired}");
    let barred = client
        .sign_in("amina@acme.test", "amina's own passphrase", json!({}))
        .await;
    assert_eq!((barred.status, barred.code()), (401, "ACCOUNT_DEACTIVATED"));

    // The audit history: who invited, who accepted, who deactivated.
    let owner_actor = format!("user:{owner_id}:owner");
    assert_eq!(
        event_types(&app, &amina).await,
        [
            ("UserInvited".to_string(), owner_actor.clone()),
            ("InvitationAccepted".to_string(), format!("user:{amina}:agent")),
            ("UserDeactivated".to_string(), format!("user:{admin_id}:admin")),
        ]
    );
    // No secret reaches the log.
    let log: String = sqlx::query_scalar("SELECT string_agg(payload::text, ' ') FROM events")
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for secret in [
        invitation.as_str(),
        first.as_str(),
        second.as_str(),
        "amina's own passphrase",
    ] {
        assert!(!log.contains(secret), "{secret} is in the log");
    }
}

/// RFC 4648 base32 (no padding) back to bytes.
fn base32_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0);
    for c in text.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32: {text}"),
        };
        buffer = (buffer << 5) | u32::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_second_factor_is_asked_for_refused_wrong_or_reused_and_recovery_codes_work_once(pool: sqlx::PgPool) {
    let mut settings = settings(false);
    settings.sessions.limits.free_attempts = 100;
    let app = TestApp::with_settings(pool, settings).await;
    let client = Client::new(&app).await;
    let (owner_id, owner) = tenant_with_owner(&app, &client).await;
    let password = "olive's long passphrase";

    let (_, begun) = client
        .graphql(
            &owner,
            "mutation($p: String!) { beginTwoFactorEnrolment(password: $p) { id twoFactorEnrolment { secret otpauthUri } } }",
            json!({"p": password}),
        )
        .await;
    let enrolment = &begun["data"]["beginTwoFactorEnrolment"]["twoFactorEnrolment"];
    let (_, stolen) = client
        .graphql(
            &owner,
            "mutation { beginTwoFactorEnrolment(password: \"a guessed passphrase\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(
        error_code(&stolen),
        "INVALID_CREDENTIALS",
        "an access token alone cannot enrol: {stolen}"
    );
    let secret = base32_decode(text(enrolment, "secret"));
    assert_eq!(secret.len(), 20, "{begun}");
    assert!(text(enrolment, "otpauthUri").starts_with("otpauth://totp/Chronicle%20%28acme%29:olive@acme.test?secret="));
    let code_at = |step: i64| chronicle_domain::totp::code_at(&secret, step);
    let now_step = || chronicle_domain::totp::step_of(chrono::Utc::now().timestamp());

    let confirm = "mutation($code: String!) { confirmTwoFactor(code: $code) { id appended recoveryCodes } }";
    // A code that is none of the window's.
    let window: Vec<String> = (-2..=2).map(|d| code_at(now_step() + d)).collect();
    let wrong_code = ["000000", "111111", "222222"]
        .into_iter()
        .find(|c| !window.iter().any(|w| w == c))
        .unwrap_or("333333");
    let (_, wrong) = client.graphql(&owner, confirm, json!({"code": wrong_code})).await;
    assert_eq!(error_code(&wrong), "INVALID_SECOND_FACTOR", "{wrong}");
    let confirmed_step = now_step();
    let (_, confirmed) = client
        .graphql(&owner, confirm, json!({"code": code_at(confirmed_step)}))
        .await;
    assert_eq!(confirmed["data"]["confirmTwoFactor"]["appended"], 1, "{confirmed}");
    let recovery: Vec<String> =
        serde_json::from_value(confirmed["data"]["confirmTwoFactor"]["recoveryCodes"].clone()).unwrap_or_default();
    assert_eq!(recovery.len(), 10);

    let email = "olive@acme.test";
    let bare = client.sign_in(email, password, json!({})).await;
    assert_eq!((bare.status, bare.code()), (401, "SECOND_FACTOR_REQUIRED"));
    let wrong = client.sign_in(email, password, json!({"code": wrong_code})).await;
    assert_eq!((wrong.status, wrong.code()), (401, "INVALID_SECOND_FACTOR"));
    // The code the enrolment was confirmed with was used: refused.
    let reused = client
        .sign_in(email, password, json!({"code": code_at(confirmed_step)}))
        .await;
    assert_eq!(
        (reused.status, reused.code()),
        (401, "INVALID_SECOND_FACTOR"),
        "{}",
        reused.body
    );
    // The next step's code (within the window of one step either side) signs in, once.
    let next = code_at(confirmed_step + 1);
    let good = client.sign_in(email, password, json!({"code": next})).await;
    assert_eq!(good.status, 200, "{}", good.body);
    let again = client.sign_in(email, password, json!({"code": next})).await;
    assert_eq!(
        (again.status, again.code()),
        (401, "INVALID_SECOND_FACTOR"),
        "a code is good once"
    );
    // A wrong password with a good code is still a wrong password.
    let bad_password = client
        .sign_in(
            email,
            "not olive's passphrase",
            json!({"code": code_at(now_step() + 1)}),
        )
        .await;
    assert_eq!(bad_password.code(), "INVALID_CREDENTIALS");

    // A recovery code signs in once (written any case, with or without its dash).
    let code = recovery[3].replace('-', "").to_uppercase();
    let recovered = client.sign_in(email, password, json!({"recoveryCode": code})).await;
    assert_eq!(recovered.status, 200, "{}", recovered.body);
    let twice = client
        .sign_in(email, password, json!({"recoveryCode": recovery[3]}))
        .await;
    assert_eq!((twice.status, twice.code()), (401, "INVALID_SECOND_FACTOR"));
    // An owner who lost authenticator and codes is helped by another manager: the second
    // factor is turned off for them, and the password alone signs in again.
    let operator = app.token("acme", Role::Owner);
    let (_, reset) = client
        .graphql(
            &operator,
            "mutation($id: String!) { resetTwoFactor(id: $id) { appended } }",
            json!({"id": owner_id}),
        )
        .await;
    assert_eq!(reset["data"]["resetTwoFactor"]["appended"], 1, "{reset}");
    let plain = client.sign_in(email, password, json!({})).await;
    assert_eq!(plain.status, 200, "{}", plain.body);
    let types: Vec<String> = event_types(&app, &owner_id).await.into_iter().map(|(t, _)| t).collect();
    assert_eq!(
        types,
        [
            "UserInvited",
            "InvitationAccepted",
            "TwoFactorEnabled",
            "RecoveryCodeUsed",
            "TwoFactorDisabled"
        ]
    );
    let remaining: Option<i64> = sqlx::query_scalar(
        "SELECT (payload->'RecoveryCodeUsed'->>'remaining')::bigint FROM events WHERE event_type = 'RecoveryCodeUsed'",
    )
    .fetch_optional(&app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(remaining, Some(9));
    // The secret is sealed at rest.
    let stored: Option<Vec<u8>> = sqlx::query_scalar("SELECT totp_sealed FROM user_accounts WHERE user_id = $1")
        .bind(&owner_id)
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let stored = stored.unwrap_or_default();
    assert!(!stored.windows(secret.len()).any(|w| w == secret.as_slice()));
}

/// The statuses of up to `max` wrong sign-ins of `email` from `address`, sent one after the
/// other; after a 429 the next is sent once its `Retry-After` passed, and a wait longer than
/// five seconds (a lock) ends the run.
async fn paced_failures(client: &Client, email: &str, address: &str, max: usize) -> Vec<(u16, String)> {
    let mut seen = Vec::new();
    for _ in 0..max {
        let body = json!({"tenant": "acme", "email": email, "password": "a wrong passphrase"});
        let answer = client.post("/auth/sign-in", body, Some(address)).await;
        seen.push((answer.status, answer.code().to_string()));
        if answer.status == 429 {
            assert!(answer.retry_after.is_some(), "a 429 says when to retry");
            let wait = answer.body["error"]["retryAfterMs"].as_u64().unwrap_or(0);
            if wait > 5_000 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(wait + 30)).await;
        }
    }
    seen
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn wrong_passwords_slow_down_then_lock_the_account_and_an_unknown_email_behaves_the_same(pool: sqlx::PgPool) {
    let mut settings = settings(true);
    settings.sessions.limits.free_attempts = 2;
    settings.sessions.limits.delay = Duration::from_millis(150);
    settings.sessions.limits.lock_after = 5;
    settings.sessions.limits.lock_for = Duration::from_secs(60);
    settings.sessions.client_ip_header = Some("x-forwarded-for".into());
    let app = TestApp::with_settings(pool, settings).await;
    let client = Client::new(&app).await;
    tenant_with_owner(&app, &client).await;

    let known = paced_failures(&client, "olive@acme.test", "203.0.113.1", 12).await;
    let unknown = paced_failures(&client, "nobody@acme.test", "203.0.113.2", 12).await;
    let wrong = (401, "INVALID_CREDENTIALS".to_string());
    let slow = (429, "TOO_MANY_SIGN_IN_ATTEMPTS".to_string());
    // Two free failures; then each attempt made at once is refused and must wait (150 ms,
    // 300 ms, 600 ms: doubling); the fifth failure locks the account for a minute.
    assert_eq!(
        known,
        [
            wrong.clone(),
            wrong.clone(),
            slow.clone(),
            wrong.clone(),
            slow.clone(),
            wrong.clone(),
            slow.clone(),
            wrong.clone(),
            slow.clone(),
        ],
        "{known:?}"
    );
    assert_eq!(
        unknown, known,
        "an unknown e-mail is answered exactly like a wrong password"
    );
    // Locked: even the right password is refused, with a wait of about the lock's length.
    let locked = client
        .post(
            "/auth/sign-in",
            json!({"tenant": "acme", "email": "olive@acme.test", "password": "olive's long passphrase"}),
            Some("203.0.113.3"),
        )
        .await;
    assert_eq!((locked.status, locked.code()), (429, "TOO_MANY_SIGN_IN_ATTEMPTS"));
    assert!(
        locked.retry_after.is_some_and(|s| (50..=60).contains(&s)),
        "{:?}",
        locked.retry_after
    );
    // Another account from the same address is not locked by these failures.
    let other = paced_failures(&client, "someone@acme.test", "203.0.113.1", 1).await;
    assert_eq!(other, [wrong]);
    // The counts live in Redis (shared by every API process), never with e-mails in clear.
    let mut redis = redis::Client::open(std::env::var("REDIS_URL").unwrap_or_default())
        .and_then(|c| c.get_connection())
        .unwrap_or_else(|e| panic!("{e}"));
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("chronicle:sign-in:*")
        .query(&mut redis)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(keys.len() >= 4, "{keys:?}");
    assert!(keys.iter().all(|k| !k.contains('@')), "{keys:?}");
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query(&mut redis)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn many_accounts_guessed_from_one_address_are_paced_by_the_address(pool: sqlx::PgPool) {
    let mut settings = settings(false);
    settings.sessions.limits.free_attempts = 1;
    settings.sessions.limits.delay = Duration::from_secs(30);
    let app = TestApp::with_settings(pool, settings).await;
    let client = Client::new(&app).await;
    tenant_with_owner(&app, &client).await;
    // The TCP peer is the address: five failures are free (five times an account's count),
    // each on another e-mail so no account is paced.
    for i in 0..5 {
        let answer = client
            .sign_in(&format!("guess{i}@acme.test"), "a wrong passphrase", json!({}))
            .await;
        assert_eq!(answer.code(), "INVALID_CREDENTIALS", "{i}");
    }
    let paced = client
        .sign_in("guess9@acme.test", "a wrong passphrase", json!({}))
        .await;
    assert_eq!((paced.status, paced.code()), (429, "TOO_MANY_SIGN_IN_ATTEMPTS"));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_last_owner_stays_and_admins_cannot_reach_the_owner_role(pool: sqlx::PgPool) {
    let app = TestApp::new(pool).await;
    let client = Client::new(&app).await;
    let (owner_id, owner) = tenant_with_owner(&app, &client).await;
    let role_change = "mutation($id: String!, $role: String!) { changeUserRole(id: $id, role: $role) { id appended } }";
    let deactivate = "mutation($id: String!) { deactivateUser(id: $id) { id appended } }";

    let (_, last) = client.graphql(&owner, deactivate, json!({"id": owner_id})).await;
    assert_eq!(error_code(&last), "LAST_OWNER", "{last}");
    let (_, last) = client
        .graphql(&owner, role_change, json!({"id": owner_id, "role": "admin"}))
        .await;
    assert_eq!(error_code(&last), "LAST_OWNER", "{last}");

    // An admin: cannot invite an owner, change an owner, or make someone owner.
    let (admin_id, invitation) = invite(&client, &owner, "ada@acme.test", "admin").await;
    let admin = text(
        &accept(&client, &invitation, "ada's long passphrase").await.body,
        "accessToken",
    )
    .to_string();
    let (_, above) = client
        .graphql(
            &admin,
            INVITE,
            json!({"input": {"email": "o2@acme.test", "name": "O", "role": "owner"}}),
        )
        .await;
    assert_eq!(error_code(&above), "ROLE_ABOVE_ISSUER", "{above}");
    let (_, above) = client.graphql(&admin, deactivate, json!({"id": owner_id})).await;
    assert_eq!(error_code(&above), "ROLE_ABOVE_ISSUER", "{above}");
    let (_, above) = client
        .graphql(&admin, role_change, json!({"id": admin_id, "role": "owner"}))
        .await;
    assert_eq!(error_code(&above), "ROLE_ABOVE_ISSUER", "{above}");
    // Refusals of the invitation itself, nothing stored.
    for (input, code) in [
        (
            json!({"email": "OLIVE@acme.test", "name": "Again", "role": "agent"}),
            "EMAIL_TAKEN",
        ),
        (
            json!({"email": "not-an-email", "name": "X", "role": "agent"}),
            "INVALID_EMAIL",
        ),
        (
            json!({"email": "x@acme.test", "name": " ", "role": "agent"}),
            "INVALID_USER_NAME",
        ),
        (
            json!({"email": "x@acme.test", "name": "X", "role": "janitor"}),
            "UNKNOWN_ROLE",
        ),
    ] {
        let (_, refused) = client.graphql(&admin, INVITE, json!({"input": input})).await;
        assert_eq!(error_code(&refused), code, "{refused}");
    }
    let (_, agent) = client
        .graphql(
            &app.token("acme", Role::Agent),
            INVITE,
            json!({"input": {"email": "y@acme.test", "name": "Y", "role": "agent"}}),
        )
        .await;
    assert_eq!(error_code(&agent), "FORBIDDEN");
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM user_accounts")
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(accounts, 2);

    // An admin demoted while holding an access token that still says admin cannot use it to
    // manage users (the write side reads the acting user again).
    let (demoted_id, invitation) = invite(&client, &owner, "dee@acme.test", "admin").await;
    let demoted = text(
        &accept(&client, &invitation, "dee's long passphrase").await.body,
        "accessToken",
    )
    .to_string();
    let (_, changed) = client
        .graphql(&owner, role_change, json!({"id": demoted_id, "role": "agent"}))
        .await;
    assert_eq!(changed["data"]["changeUserRole"]["appended"], 1, "{changed}");
    let (_, stale) = client
        .graphql(&demoted, role_change, json!({"id": demoted_id, "role": "admin"}))
        .await;
    assert_eq!(error_code(&stale), "CALLER_NO_LONGER_ALLOWED", "{stale}");

    // With a second owner, the first may step down.
    let (_, promoted) = client
        .graphql(&owner, role_change, json!({"id": admin_id, "role": "owner"}))
        .await;
    assert_eq!(promoted["data"]["changeUserRole"]["appended"], 1, "{promoted}");
    let (_, stepped) = client
        .graphql(&owner, role_change, json!({"id": owner_id, "role": "finance"}))
        .await;
    assert_eq!(stepped["data"]["changeUserRole"]["appended"], 1, "{stepped}");
    // The directory lists both with their roles.
    let (_, listed) = client
        .graphql(&admin, "{ users { nodes { email role status } } }", json!({}))
        .await;
    assert_eq!(
        listed["data"]["users"]["nodes"],
        json!([
            {"email": "olive@acme.test", "role": "finance", "status": "active"},
            {"email": "ada@acme.test", "role": "owner", "status": "active"},
            {"email": "dee@acme.test", "role": "agent", "status": "active"}
        ]),
        "{listed}"
    );
    // The next refresh carries the new role.
    let signed = client
        .sign_in("olive@acme.test", "olive's long passphrase", json!({}))
        .await;
    let refreshed = client
        .post(
            "/auth/refresh",
            json!({"refreshToken": text(&signed.body, "refreshToken")}),
            None,
        )
        .await;
    assert_eq!(text(&refreshed.body, "role"), "finance");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_password_reset_is_handed_over_used_once_and_ends_every_session(pool: sqlx::PgPool) {
    let app = TestApp::new(pool).await;
    let client = Client::new(&app).await;
    let (_, owner) = tenant_with_owner(&app, &client).await;
    let (user, invitation) = invite(&client, &owner, "tech@acme.test", "technician").await;
    let issue = "mutation($id: String!) { issuePasswordReset(id: $id) { id secret } }";
    let (_, early) = client.graphql(&owner, issue, json!({"id": user})).await;
    assert_eq!(error_code(&early), "USER_NOT_ACTIVE", "{early}");
    let session = accept(&client, &invitation, "first passphrase of tech").await;
    let old_refresh = text(&session.body, "refreshToken").to_string();

    let (_, issued) = client.graphql(&owner, issue, json!({"id": user})).await;
    let reset = text(&issued["data"]["issuePasswordReset"], "secret").to_string();
    assert!(reset.starts_with("rst_"), "{issued}");
    let weak = client
        .post(
            "/auth/reset-password",
            json!({"token": reset, "password": "short"}),
            None,
        )
        .await;
    assert_eq!(weak.code(), "WEAK_PASSWORD");
    let done = client
        .post(
            "/auth/reset-password",
            json!({"token": reset, "password": "second passphrase of tech"}),
            None,
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let again = client
        .post(
            "/auth/reset-password",
            json!({"token": reset, "password": "third passphrase of tech"}),
            None,
        )
        .await;
    assert_eq!(again.code(), "INVALID_TOKEN");
    let ended = client
        .post("/auth/refresh", json!({"refreshToken": old_refresh}), None)
        .await;
    assert_eq!(ended.status, 401, "sessions from before the reset end");
    let old = client
        .sign_in("tech@acme.test", "first passphrase of tech", json!({}))
        .await;
    assert_eq!(old.code(), "INVALID_CREDENTIALS");
    let new = client
        .sign_in("tech@acme.test", "second passphrase of tech", json!({}))
        .await;
    assert_eq!(new.status, 200);
    // Sign-out ends the session.
    let refresh = text(&new.body, "refreshToken").to_string();
    let out = client
        .post("/auth/sign-out", json!({"refreshToken": refresh}), None)
        .await;
    assert_eq!(out.status, 204);
    let after = client
        .post("/auth/refresh", json!({"refreshToken": refresh}), None)
        .await;
    assert_eq!(after.code(), "INVALID_REFRESH_TOKEN");
    // Malformed bodies are refused with nothing done.
    let malformed = client
        .post("/auth/sign-in", json!({"tenant": "acme", "mail": "x"}), None)
        .await;
    assert_eq!((malformed.status, malformed.code()), (400, "INVALID_INPUT"));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn work_is_assigned_only_to_active_users_of_the_tenant_whose_role_does_it(pool: sqlx::PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "100200300").await;
    app.tenant_with_number("globex", "100200301").await;
    let agent = app.user("acme", Role::Agent).await;
    let technician = app.user("acme", Role::Technician).await;
    let finance = app.user("acme", Role::Finance).await;
    let outsider = app.user("globex", Role::Agent).await;
    let gone = app.user("acme", Role::Technician).await;
    let operator = app.token("acme", Role::Owner);
    let (_, deactivated) = app
        .graphql(
            Some(&operator),
            "mutation($id: String!) { deactivateUser(id: $id) { appended } }",
            json!({"id": gone}),
        )
        .await;
    assert_eq!(deactivated["data"]["deactivateUser"]["appended"], 1, "{deactivated}");
    let (_, invited) = app
        .graphql(
            Some(&operator),
            INVITE,
            json!({"input": {"email": "pending@acme.test", "name": "Pending", "role": "agent"}}),
        )
        .await;
    let pending = invited["data"]["inviteUser"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (_, captured) = app
        .graphql(
            Some(&operator),
            "mutation { captureLead(input: {idempotencyKey: \"k1\", phone: \"+263771000099\", name: \"Rudo\"}) { id } }",
            json!({}),
        )
        .await;
    let lead = captured["data"]["captureLead"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    // Each assignment, with who fits it and who does not.
    let assignments = [
        (
            "mutation($u: String) { assignConversation(conversationId: \"ct_00000000000000000000000000000000\", agentId: $u) { id } }",
            agent.clone(),
            finance.clone(),
        ),
        (
            "mutation($u: String!, $l: ID!) { assignLead(id: $l, userId: $u) { id } }",
            agent.clone(),
            technician.clone(),
        ),
        (
            "mutation($u: String!) { assignTechnician(installationId: \"isr_0\", technicianId: $u) { id } }",
            technician.clone(),
            agent.clone(),
        ),
        (
            "mutation($u: String!) { assignServiceRequest(requestId: \"sr_99\", technicianId: $u) { id } }",
            technician.clone(),
            finance.clone(),
        ),
    ];
    let user_codes = [
        "UNKNOWN_USER",
        "USER_DEACTIVATED",
        "USER_NOT_ACTIVE",
        "ROLE_NOT_ALLOWED",
    ];
    for (mutation, fits, misfit) in assignments {
        let call = |user: &str| {
            let (app, operator, lead) = (&app, &operator, &lead);
            let variables = if mutation.contains("$l") {
                json!({"u": user, "l": lead})
            } else {
                json!({"u": user})
            };
            async move { app.graphql(Some(operator), mutation, variables).await.1 }
        };
        for (user, code) in [
            ("usr_aaaaaaaaaaaaaaaa", "UNKNOWN_USER"),
            ("bob", "UNKNOWN_USER"),
            (outsider.as_str(), "UNKNOWN_USER"),
            (gone.as_str(), "USER_DEACTIVATED"),
            (pending.as_str(), "USER_NOT_ACTIVE"),
            (misfit.as_str(), "ROLE_NOT_ALLOWED"),
        ] {
            let reply = call(user).await;
            assert_eq!(error_code(&reply), code, "{mutation} with {user}: {reply}");
        }
        // The one who fits passes the check (what follows is the record's own rules).
        let reply = call(&fits).await;
        assert!(!user_codes.contains(&error_code(&reply)), "{mutation}: {reply}");
    }
    // Nothing was assigned by a refused call.
    let assigned: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type IN ('ConversationAssigned', 'LeadAssigned', 'TechnicianAssigned', 'ServiceRequestAssigned')",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(assigned, 1, "only the lead's assignment to the agent was recorded");
    // The lead shows its assignee with the name from the directory.
    app.project().await;
    let (_, read) = app
        .graphql(
            Some(&operator),
            "query($id: ID!) { lead(id: $id) { assignee assignedTo { id name } } }",
            json!({"id": lead}),
        )
        .await;
    let name: String = sqlx::query_scalar("SELECT name FROM user_accounts WHERE user_id = $1")
        .bind(&agent)
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        read["data"]["lead"],
        json!({"assignee": agent, "assignedTo": {"id": agent, "name": name}}),
        "{read}"
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_row_write_lost_after_its_event_is_repaired_by_the_retry_but_never_past_the_tokens_expiry(
    pool: sqlx::PgPool,
) {
    let app = TestApp::new(pool).await;
    let client = Client::new(&app).await;
    let (_, owner) = tenant_with_owner(&app, &client).await;
    let (user, invitation) = invite(&client, &owner, "late@acme.test", "agent").await;
    let accepted = accept(&client, &invitation, "late user's passphrase").await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    // As if the row's commit had been lost after `InvitationAccepted` was appended: the row is
    // back to invited with the token, the log says accepted.
    let lose = |expires: &'static str| {
        let (pool, user, invitation) = (app.pool.clone(), user.clone(), invitation.clone());
        async move {
            use sha2::Digest;
            sqlx::query(&format!(
                "UPDATE user_accounts SET status = 'invited', accepted = false, password_hash = NULL, \
                   invitation_sha256 = $2, invitation_expires_at = {expires} WHERE user_id = $1"
            ))
            .bind(&user)
            .bind(sha2::Sha256::digest(invitation.as_bytes()).to_vec())
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        }
    };
    lose("now() + interval '1 day'").await;
    let retried = accept(&client, &invitation, "late user's passphrase").await;
    assert_eq!(retried.status, 200, "the retry repairs the row: {}", retried.body);
    let status: String = sqlx::query_scalar("SELECT status FROM user_accounts WHERE user_id = $1")
        .bind(&user)
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, "active");
    let accepted_events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'InvitationAccepted' AND aggregate_id = $1")
            .bind(format!("acme:{user}"))
            .fetch_one(&app.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(accepted_events, 1, "the repair appends nothing");
    // Past its expiry, the token is refused even on the repair path.
    lose("now() - interval '1 minute'").await;
    let expired = accept(&client, &invitation, "late user's passphrase").await;
    assert_eq!(
        (expired.status, expired.code()),
        (422, "INVITATION_EXPIRED"),
        "{}",
        expired.body
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn refreshes_racing_a_deactivation_never_fail_and_never_outlive_it(pool: sqlx::PgPool) {
    let app = TestApp::new(pool).await;
    let client = Client::new(&app).await;
    let (_, owner) = tenant_with_owner(&app, &client).await;
    let (user, invitation) = invite(&client, &owner, "racer@acme.test", "agent").await;
    accept(&client, &invitation, "racer's own passphrase").await;
    // Eight sessions refreshing at once while an owner deactivates the user.
    let mut sessions = Vec::new();
    for _ in 0..8 {
        let signed = client
            .sign_in("racer@acme.test", "racer's own passphrase", json!({}))
            .await;
        sessions.push(text(&signed.body, "refreshToken").to_string());
    }
    let deactivate = client.graphql(
        &owner,
        "mutation($id: String!) { deactivateUser(id: $id) { appended } }",
        json!({"id": user}),
    );
    let refreshes = futures::future::join_all(
        sessions
            .iter()
            .map(|token| client.post("/auth/refresh", json!({"refreshToken": token}), None)),
    );
    let ((_, deactivated), answers) = tokio::join!(deactivate, refreshes);
    assert_eq!(deactivated["data"]["deactivateUser"]["appended"], 1, "{deactivated}");
    // Each refresh either ran before the deactivation or was refused by it; none failed.
    for answer in &answers {
        assert!(matches!(answer.status, 200 | 401), "{} {}", answer.status, answer.body);
    }
    // Whatever was issued before the deactivation committed was revoked by it.
    for answer in answers.iter().filter(|a| a.status == 200) {
        let next = client
            .post(
                "/auth/refresh",
                json!({"refreshToken": text(&answer.body, "refreshToken")}),
                None,
            )
            .await;
        assert_eq!(next.status, 401, "{}", next.body);
    }
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM refresh_tokens WHERE user_id = $1 AND revoked_at IS NULL")
        .bind(&user)
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(live, 0);
}
