//! Payment callbacks from end to end: Paynow (form, SHA-512 hash, then a poll of a loopback
//! "Paynow" before the payment counts), M-Pesa (a secret callback path, then an STK status query
//! to a loopback "Daraja") and a Stripe-style signed webhook. Each delivered five times creates
//! one payment; a bad hash, a bad or old signature or a wrong secret path stores nothing (no
//! event, no row) and answers 4xx; a poll answering not-paid counts nothing; a poll URL off the
//! configured Paynow base is refused without being called; an unmatched payment appears in
//! GraphQL for finance, who matches it to an order; and an order paid through a callback ends,
//! with no other call, in an installation a technician is assigned to.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use chronicle_api::auth::Role;
use chronicle_commands::contacts::{ContactService, Handle};
use chronicle_commands::http::form::encode_form;
use chronicle_commands::installation::{installation_id_for_order, InstallationWorker};
use chronicle_commands::keystore::KeyStore;
use chronicle_commands::payments::paynow::paynow_hash;
use chronicle_commands::payments::requests::NewPaymentRequest;
use chronicle_commands::payments::stripe;
use chronicle_commands::tenants;
use chronicle_domain::contact::ContactSource;
use chronicle_domain::installation::order::PlaceOrder;
use chronicle_domain::installation::PaymentProvider;
use chronicle_domain::installation::{InstallationType, LineItem, OrderCommand};
use chronicle_domain::metadata::CommandMetadata;
use chronicle_domain::payment_request::PaymentTarget;
use chronicle_domain::phone::PhoneNumber;
use chronicle_tests::*;
use serde_json::{json, Value};
use sqlx::PgPool;

const TENANT: &str = "acme";
const PAYNOW_KEY: &str = "paynow-integration-key";
/// The merchant's Paynow login, sent with Express requests.
const PAYNOW_MERCHANT: &str = "merchant@acme.example";
const STRIPE_SECRET: &str = "whsec_test_secret";
const STRIPE_KEY: &str = "sk_test_chronicle";
const MPESA_SECRET: &str = "mpesa-callback-secret-0123456789";
const SHORT_CODE: &str = "174379";
const PASSKEY: &str = "daraja-passkey";
const CONSUMER_KEY: &str = "consumer-key";
const CONSUMER_SECRET: &str = "consumer-secret";
const PUBLIC_URL: &str = "https://chronicle.example";
/// The customer prompted by M-Pesa requests.
const MPESA_CUSTOMER: &str = "+254708374149";

/// A payment the loopback Paynow knows: (merchant ref, paynow ref, amount, status).
type PaynowPayment = (String, String, String, String);

/// An initiation the loopback Paynow received: (path, form).
type Initiation = (String, Vec<(String, String)>);

/// What the loopback Paynow answers to polls, by guid.
#[derive(Clone, Default)]
struct Paynow {
    payments: Arc<Mutex<HashMap<String, PaynowPayment>>>,
    polls: Arc<AtomicUsize>,
    /// While set, polls answer 500 (a transient failure).
    failing: Arc<Mutex<bool>>,
    /// Initiations received (path, form), in order; each opened the transaction `init-<n>`.
    initiations: Arc<Mutex<Vec<Initiation>>>,
    /// The loopback's base URL (`…/paynow/Interface`), once serving.
    base: Arc<Mutex<String>>,
    /// How long an initiation takes to answer (ms).
    slow: Arc<std::sync::atomic::AtomicU64>,
}

impl Paynow {
    fn initiations(&self) -> Vec<Initiation> {
        self.initiations.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sets the status of the transaction `guid` (the customer paid, declined, …).
    fn set_status(&self, guid: &str, status: &str) {
        if let Some(payment) = self.payments.lock().unwrap_or_else(|e| e.into_inner()).get_mut(guid) {
            payment.3 = status.to_string();
        }
    }
}

async fn paynow_web(State(paynow): State<Paynow>, body: String) -> (StatusCode, String) {
    tokio::time::sleep(std::time::Duration::from_millis(paynow.slow.load(Ordering::SeqCst))).await;
    paynow_initiate(&paynow, "initiatetransaction", &body)
}

async fn paynow_express(State(paynow): State<Paynow>, body: String) -> (StatusCode, String) {
    tokio::time::sleep(std::time::Duration::from_millis(paynow.slow.load(Ordering::SeqCst))).await;
    paynow_initiate(&paynow, "remotetransaction", &body)
}

/// Paynow's initiation as documented: the form's hash checked with the integration key, an
/// answer `Status=Ok` with the poll URL (and the payment page, or Express's instructions and
/// Paynow reference), hashed; `Status=Error` for a bad hash or the test number that has no
/// balance (`0774444444`, as Paynow's test mode does).
fn paynow_initiate(paynow: &Paynow, path: &str, body: &str) -> (StatusCode, String) {
    let form: Vec<(String, String)> = serde_urlencoded::from_str(body).unwrap_or_default();
    let mut initiations = paynow.initiations.lock().unwrap_or_else(|e| e.into_inner());
    initiations.push((path.to_string(), form.clone()));
    let n = initiations.len();
    drop(initiations);
    let hash = field(&form, "hash").unwrap_or_default().to_string();
    if hash != paynow_hash(&form, PAYNOW_KEY) {
        return (StatusCode::OK, "Status=Error&Error=Invalid+Hash".into());
    }
    if field(&form, "phone") == Some("0774444444") {
        return (StatusCode::OK, "Status=Error&Error=Insufficient+balance".into());
    }
    let guid = format!("init-{n}");
    let paynow_reference = format!("PN-{n}");
    paynow.payments.lock().unwrap_or_else(|e| e.into_inner()).insert(
        guid.clone(),
        (
            field(&form, "reference").unwrap_or_default().into(),
            paynow_reference.clone(),
            field(&form, "amount").unwrap_or_default().into(),
            "Sent".into(),
        ),
    );
    let base = paynow.base.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let root = base.trim_end_matches("/Interface");
    let mut answer = vec![("Status".to_string(), "Ok".to_string())];
    if path == "remotetransaction" {
        answer.push(("Instructions".into(), "Dial *151*2*4# and enter your PIN".into()));
        answer.push(("PaynowReference".into(), paynow_reference));
    } else {
        answer.push(("BrowserUrl".into(), format!("{root}/Payment/ConfirmPayment/{n}")));
    }
    answer.push(("PollUrl".into(), format!("{base}/CheckPayment/{guid}")));
    let hash = paynow_hash(&answer, PAYNOW_KEY);
    answer.push(("Hash".into(), hash));
    (StatusCode::OK, encode_form(&answer))
}

async fn paynow_poll(State(paynow): State<Paynow>, Path(guid): Path<String>) -> (StatusCode, String) {
    paynow.polls.fetch_add(1, Ordering::SeqCst);
    if *paynow.failing.lock().unwrap_or_else(|e| e.into_inner()) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "down".into());
    }
    let Some((reference, paynow_reference, amount, status)) = paynow
        .payments
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&guid)
        .cloned()
    else {
        return (StatusCode::OK, "status=Error&error=unknown".into());
    };
    let mut pairs = vec![
        ("reference".to_string(), reference),
        ("paynowreference".to_string(), paynow_reference),
        ("amount".to_string(), amount),
        ("status".to_string(), status),
        ("pollurl".to_string(), format!("http://poll/{guid}")),
    ];
    let hash = paynow_hash(&pairs, PAYNOW_KEY);
    pairs.push(("hash".to_string(), hash));
    (StatusCode::OK, encode_form(&pairs))
}

/// The loopback Daraja: a token, STK pushes (each answered with a new CheckoutRequestID, kept
/// with its body; an amount of 1 shilling is refused as Daraja refuses a bad request), and STK
/// query answers by CheckoutRequestID.
#[derive(Clone, Default)]
struct Daraja {
    results: Arc<Mutex<HashMap<String, String>>>,
    queries: Arc<AtomicUsize>,
    pushes: Arc<Mutex<Vec<Value>>>,
}

/// Every Daraja call after the token: our bearer token, the short code, and the password of
/// short code, passkey and the request's timestamp.
fn assert_daraja_call(headers: &HeaderMap, body: &Value) {
    use base64::Engine;
    assert_eq!(
        headers.get("authorization").and_then(|v| v.to_str().ok()),
        Some("Bearer daraja-token")
    );
    let timestamp = body["Timestamp"].as_str().unwrap_or_default();
    let password = base64::engine::general_purpose::STANDARD.encode(format!("{SHORT_CODE}{PASSKEY}{timestamp}"));
    assert_eq!(body["Password"], json!(password));
    assert_eq!(body["BusinessShortCode"], json!(SHORT_CODE));
}

async fn daraja_push(
    State(daraja): State<Daraja>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    assert_daraja_call(&headers, &body);
    let mut pushes = daraja.pushes.lock().unwrap_or_else(|e| e.into_inner());
    pushes.push(body.clone());
    if body["Amount"] == json!(1) {
        return (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"requestId": "r-1", "errorCode": "400.002.02", "errorMessage": "Bad Request - Invalid Amount"}),
            ),
        );
    }
    (
        StatusCode::OK,
        Json(
            json!({"MerchantRequestID": "m-1", "CheckoutRequestID": format!("ws_CO_{}", pushes.len()),
                    "ResponseCode": "0", "ResponseDescription": "Success. Request accepted for processing",
                    "CustomerMessage": "Success. Request accepted for processing"}),
        ),
    )
}

async fn daraja_token(headers: HeaderMap) -> (StatusCode, Json<Value>) {
    use base64::Engine;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CONSUMER_KEY}:{CONSUMER_SECRET}"))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"errorMessage": "Invalid credentials"})),
        );
    }
    (
        StatusCode::OK,
        Json(json!({"access_token": "daraja-token", "expires_in": "3599"})),
    )
}

async fn daraja_query(
    State(daraja): State<Daraja>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    daraja.queries.fetch_add(1, Ordering::SeqCst);
    assert_daraja_call(&headers, &body);
    let id = body["CheckoutRequestID"].as_str().unwrap_or_default().to_string();
    let code = daraja
        .results
        .lock()
        .unwrap_or_else(|e| panic!("{e}"))
        .get(&id)
        .cloned()
        .unwrap_or_else(|| "1037".into());
    (
        StatusCode::OK,
        Json(
            json!({"ResponseCode": "0", "MerchantRequestID": "m-1", "CheckoutRequestID": id, "ResultCode": code, "ResultDesc": "done"}),
        ),
    )
}

/// The loopback Stripe API: Checkout Sessions, each kept with its headers and form. The secret
/// key is checked; a second call with an idempotency key already used answers the same session
/// when its form is the same and `idempotency_error` otherwise, as Stripe does; an amount of 13
/// minor units is refused as below Stripe's minimum; `failures` calls answer 503 (before or,
/// with `open_first`, after opening the session, as a timeout after Stripe acted would).
/// A Checkout Session as the loopback Stripe received it: its headers and form.
type SessionCall = (HeaderMap, Vec<(String, String)>);

#[derive(Clone, Default)]
struct StripeApi {
    sessions: Arc<Mutex<Vec<SessionCall>>>,
    expired: Arc<Mutex<Vec<String>>>,
    /// Calls still to answer 503 (Stripe down), after opening the session when `open_first`.
    failures: Arc<AtomicUsize>,
    open_first: Arc<std::sync::atomic::AtomicBool>,
}

async fn stripe_expire(State(api): State<StripeApi>, Path(id): Path<String>, headers: HeaderMap) -> StatusCode {
    assert_eq!(
        headers.get("authorization").and_then(|v| v.to_str().ok()),
        Some(format!("Bearer {STRIPE_KEY}").as_str())
    );
    api.expired.lock().unwrap_or_else(|e| e.into_inner()).push(id);
    StatusCode::OK
}

impl StripeApi {
    fn sessions(&self) -> Vec<SessionCall> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The value of `name` in a form.
fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

async fn stripe_session(State(api): State<StripeApi>, headers: HeaderMap, body: String) -> (StatusCode, Json<Value>) {
    let form: Vec<(String, String)> = serde_urlencoded::from_str(&body).unwrap_or_default();
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {STRIPE_KEY}")) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}})),
        );
    }
    if field(&form, "line_items[0][price_data][unit_amount]") == Some("13") {
        return (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"error": {"code": "amount_too_small", "type": "invalid_request_error",
                                   "message": "The Checkout Session's total amount due must add up to at least $0.50 usd"}}),
            ),
        );
    }
    let failing = api
        .failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let open_first = api.open_first.load(Ordering::SeqCst);
    if failing && !open_first {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": {"type": "api_error"}})),
        );
    }
    let key = headers.get("idempotency-key").cloned();
    let mut sessions = api.sessions.lock().unwrap_or_else(|e| e.into_inner());
    let known = sessions
        .iter()
        .position(|(h, _)| key.is_some() && h.get("idempotency-key") == key.as_ref());
    let n = match known {
        Some(i) if sessions[i].1 != form => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": {"type": "idempotency_error",
                                       "message": "Keys for idempotent requests can only be used with the same parameters they were first used with."}})),
            )
        }
        Some(i) => i + 1,
        None => {
            sessions.push((headers.clone(), form));
            sessions.len()
        }
    };
    if failing {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": {"type": "api_error"}})),
        );
    }
    (
        StatusCode::OK,
        Json(
            json!({"id": format!("cs_test_{n}"), "object": "checkout.session", "mode": "payment",
                    "url": format!("https://checkout.stripe.test/c/pay/cs_test_{n}"),
                    "payment_status": "unpaid", "status": "open"}),
        ),
    )
}

async fn serve(router: Router) -> String {
    chronicle_tests::serve_loopback(router).await
}

struct World {
    app: TestApp,
    paynow: Paynow,
    paynow_base: String,
    daraja: Daraja,
    stripe: StripeApi,
}

/// An app whose Paynow and Daraja are loopback servers, with tenant `acme` and its three
/// providers set through the admin mutation.
async fn world(pool: PgPool) -> World {
    let paynow = Paynow::default();
    let paynow_root = serve(
        Router::new()
            .route("/paynow/Interface/CheckPayment/{guid}", post(paynow_poll))
            .route("/paynow/Interface/initiatetransaction", post(paynow_web))
            .route("/paynow/Interface/remotetransaction", post(paynow_express))
            .with_state(paynow.clone()),
    )
    .await;
    let daraja = Daraja::default();
    let daraja_base = serve(
        Router::new()
            .route("/oauth/v1/generate", get(daraja_token))
            .route("/mpesa/stkpushquery/v1/query", post(daraja_query))
            .route("/mpesa/stkpush/v1/processrequest", post(daraja_push))
            .with_state(daraja.clone()),
    )
    .await;
    let stripe = StripeApi::default();
    let stripe_base = serve(
        Router::new()
            .route("/v1/checkout/sessions", post(stripe_session))
            .route("/v1/checkout/sessions/{id}/expire", post(stripe_expire))
            .with_state(stripe.clone()),
    )
    .await;
    let mut settings = settings(false);
    settings.payments.stripe_base_url = stripe_base;
    let paynow_base = format!("{paynow_root}/paynow/Interface");
    *paynow.base.lock().unwrap_or_else(|e| e.into_inner()) = paynow_base.clone();
    settings.payments.paynow_base_url = paynow_base.clone();
    settings.payments.daraja_base_url = daraja_base;
    settings.payments.token_rates.insert("USD".into(), 1_000);
    settings.payments.token_rates.insert("KES".into(), 10);
    settings.public_url = PUBLIC_URL.into();
    let app = TestApp::with_settings(pool, settings).await;
    tenants::create_tenant(&app.state.pool, &tenant(TENANT), TENANT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let owner = app.token(TENANT, Role::Owner);
    for provider in [
        json!({"paynow": {"integrationId": "1201", "integrationKey": PAYNOW_KEY, "currency": "USD",
                          "authEmail": PAYNOW_MERCHANT}}),
        json!({"mpesa": {"shortCode": SHORT_CODE, "consumerKey": CONSUMER_KEY, "consumerSecret": CONSUMER_SECRET,
                          "passkey": PASSKEY, "callbackSecret": MPESA_SECRET}}),
        json!({"stripe": {"endpointSecret": STRIPE_SECRET, "secretKey": STRIPE_KEY}}),
    ] {
        let (status, body) = app
            .graphql(
                Some(&owner),
                "mutation($p: PaymentProviderInput!) { setPaymentProvider(provider: $p) { id } }",
                json!({ "p": provider }),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.get("errors").is_none(), "{body}");
    }
    World {
        app,
        paynow,
        paynow_base,
        daraja,
        stripe,
    }
}

fn metadata() -> CommandMetadata {
    chronicle_tests::user_metadata(TENANT, "agent-1", "agent")
}

/// Places an order of one installable 5 kW solar kit for `price` minor units of `currency`.
async fn place_order(app: &TestApp, price: i64, currency: &str) -> String {
    let order_id = format!("order_{}", uuid::Uuid::new_v4());
    let command = OrderCommand::Place(PlaceOrder {
        site_address: None,
        customer_id: "ct_customer".into(),
        items: vec![LineItem {
            capacity_w: None,
            sku: "solar-kit-5kw".into(),
            description: "5 kW solar kit".into(),
            quantity: 1,
            unit_price_minor: price,
            currency: currency.into(),
            installable: Some(InstallationType::Solar),
        }],
        by: "agent-1".into(),
        at: chrono::Utc::now(),
    });
    app.state
        .commands
        .order(&order_id, command, &metadata())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    order_id
}

impl World {
    /// Registers a payment with the loopback Paynow and returns its callback form.
    fn paynow_callback(
        &self,
        guid: &str,
        reference: &str,
        paynow_reference: &str,
        amount: &str,
        status: &str,
    ) -> Vec<(String, String)> {
        self.paynow.payments.lock().unwrap_or_else(|e| e.into_inner()).insert(
            guid.to_string(),
            (reference.into(), paynow_reference.into(), amount.into(), status.into()),
        );
        let mut pairs = vec![
            ("reference".to_string(), reference.to_string()),
            ("paynowreference".to_string(), paynow_reference.to_string()),
            ("amount".to_string(), amount.to_string()),
            ("status".to_string(), status.to_string()),
            (
                "pollurl".to_string(),
                format!("{}/CheckPayment/{guid}", self.paynow_base),
            ),
        ];
        let hash = paynow_hash(&pairs, PAYNOW_KEY);
        pairs.push(("hash".to_string(), hash));
        pairs
    }

    async fn post_paynow(&self, pairs: &[(String, String)]) -> (StatusCode, Value) {
        self.app
            .send(
                Request::post(format!("/webhooks/payments/{TENANT}/paynow"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Body::from(encode_form(pairs)))
                    .unwrap_or_else(|e| panic!("{e}")),
            )
            .await
    }

    async fn post_stripe(&self, body: &[u8], signature: Option<String>) -> (StatusCode, Value) {
        let mut request =
            Request::post(format!("/webhooks/payments/{TENANT}/stripe")).header("content-type", "application/json");
        if let Some(signature) = signature {
            request = request.header("Stripe-Signature", signature);
        }
        self.app
            .send(
                request
                    .body(Body::from(body.to_vec()))
                    .unwrap_or_else(|e| panic!("{e}")),
            )
            .await
    }

    async fn post_mpesa(&self, secret: &str, body: &Value) -> (StatusCode, Value) {
        self.app
            .send(
                Request::post(format!("/webhooks/payments/{TENANT}/mpesa/{secret}"))
                    .header("content-type", "application/json")
                    .body(Body::from(body.to_string()))
                    .unwrap_or_else(|e| panic!("{e}")),
            )
            .await
    }

    /// A contact of the tenant with the Kenyan number M-Pesa prompts.
    async fn customer(&self) -> String {
        self.contact_with_phone(MPESA_CUSTOMER).await
    }

    async fn contact_with_phone(&self, phone: &str) -> String {
        let service = ContactService::new(
            self.app.state.commands.clone(),
            KeyStore::new(self.app.state.pool.clone(), self.app.state.master_key.clone()),
        );
        let phone = PhoneNumber::parse(phone).unwrap_or_else(|e| panic!("{e}"));
        service
            .register(
                &Handle::Phone(phone),
                Some("Wanjiru"),
                ContactSource::Manual,
                chrono::Utc::now(),
                &metadata(),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Finance asks `contact` to pay `amount` KES minor units through M-Pesa; the receipt.
    async fn request_mpesa(&self, key: &str, target: Value, amount: i64, contact: &str) -> Value {
        let reply = self
            .ask(REQUEST_PAYMENT, key, "MPESA", target, amount, "KES", contact)
            .await;
        assert!(reply.get("errors").is_none(), "{reply}");
        reply["data"]["requestPayment"].clone()
    }

    /// Finance asks `contact` to pay `amount` USD minor units through Stripe; the receipt (or
    /// the whole reply when `errors` is expected).
    async fn request_stripe(&self, key: &str, target: Value, amount: i64, contact: &str) -> Value {
        let reply = self
            .ask(REQUEST_STRIPE, key, "STRIPE", target, amount, "USD", contact)
            .await;
        if reply.get("errors").is_some() {
            return reply;
        }
        reply["data"]["requestPayment"].clone()
    }

    /// `requestPayment` as finance; the whole reply.
    #[allow(clippy::too_many_arguments)]
    async fn ask(
        &self,
        document: &str,
        key: &str,
        provider: &str,
        target: Value,
        amount: i64,
        currency: &str,
        contact: &str,
    ) -> Value {
        let finance = self.app.token(TENANT, Role::Finance);
        let variables = json!({"input": {"idempotencyKey": key, "provider": provider, "target": target,
                                          "amountMinor": amount, "currency": currency, "contactId": contact}});
        self.app.graphql(Some(&finance), document, variables).await.1
    }

    async fn count_events(&self, event_type: &str) -> i64 {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = $1")
            .bind(event_type)
            .fetch_one(&self.app.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        count
    }

    /// Events of payments, and payment rows once projected.
    async fn payment_facts(&self) -> (i64, i64) {
        self.app.project().await;
        let events = self
            .app
            .count("SELECT count(*) FROM events WHERE aggregate_type = 'Payment'")
            .await;
        let rows = self.app.count("SELECT count(*) FROM payments").await;
        (events, rows)
    }

    async fn order_payments(&self) -> i64 {
        self.app
            .count("SELECT count(*) FROM events WHERE event_type = 'PaymentRecorded'")
            .await
    }
}

fn stripe_event(intent: &str, amount: i64, currency: &str, reference: &str) -> Vec<u8> {
    json!({
        "id": format!("evt_{intent}"),
        "type": "payment_intent.succeeded",
        "data": {"object": {"id": intent, "object": "payment_intent", "amount": amount, "amount_received": amount,
                             "currency": currency, "metadata": {"reference": reference}}}
    })
    .to_string()
    .into_bytes()
}

const REQUEST_PAYMENT: &str =
    "mutation($input: PaymentRequestInput!) { requestPayment(input: $input) { id status providerRequestId } }";

const REQUEST_STRIPE: &str = "mutation($input: PaymentRequestInput!) {
  requestPayment(input: $input) { id status providerRequestId paymentUrl } }";

/// A signed Stripe event.
fn signed(body: &Value) -> (Vec<u8>, String) {
    let bytes = body.to_string().into_bytes();
    let signature = stripe::sign(STRIPE_SECRET, chrono::Utc::now().timestamp(), &bytes);
    (bytes, signature)
}

/// `checkout.session.completed` of session `session`, paid by intent `intent`.
fn session_completed(session: &str, intent: &str, amount: i64, request_id: &str) -> Value {
    json!({"id": format!("evt_cs_{intent}"), "type": "checkout.session.completed",
           "data": {"object": {"id": session, "object": "checkout.session", "amount_total": amount, "currency": "usd",
                               "payment_status": "paid", "payment_intent": intent, "client_reference_id": request_id,
                               "metadata": {"request_id": request_id}}}})
}

/// `payment_intent.succeeded` of a request's intent.
fn intent_succeeded(intent: &str, amount: i64, request_id: &str) -> Value {
    json!({"id": format!("evt_pi_{intent}"), "type": "payment_intent.succeeded",
           "data": {"object": {"id": intent, "object": "payment_intent", "amount": amount, "amount_received": amount,
                               "currency": "usd", "metadata": {"request_id": request_id}}}})
}

fn stk_callback(checkout: &str, receipt: &str, amount: i64) -> Value {
    json!({"Body": {"stkCallback": {"MerchantRequestID": "m-1", "CheckoutRequestID": checkout, "ResultCode": 0,
        "ResultDesc": "The service request is processed successfully.",
        "CallbackMetadata": {"Item": [
            {"Name": "Amount", "Value": amount},
            {"Name": "MpesaReceiptNumber", "Value": receipt},
            {"Name": "TransactionDate", "Value": 20261122103015_i64},
            {"Name": "PhoneNumber", "Value": 254708374149_i64}]}}}})
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_paynow_callback_delivered_five_times_creates_one_payment_that_pays_the_order(pool: PgPool) {
    let w = world(pool).await;
    let order = place_order(&w.app, 15_000, "USD").await;
    let callback = w.paynow_callback("g1", &order, "PN-1001", "150.00", "Paid");
    for _ in 0..5 {
        let (status, body) = w.post_paynow(&callback).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "matched", "{body}");
        assert_eq!(body["matchedId"], json!(order));
    }
    assert_eq!(
        w.paynow.polls.load(Ordering::SeqCst),
        5,
        "every delivery is confirmed by a poll"
    );
    // Confirmed + matched, once; the order recorded one payment and is paid.
    assert_eq!(w.payment_facts().await, (2, 1));
    assert_eq!(w.order_payments().await, 1);
    assert_eq!(
        w.app
            .count("SELECT count(*) FROM events WHERE event_type = 'OrderPaid'")
            .await,
        1
    );
    let (amount, status): (i64, String) =
        sqlx::query_as("SELECT amount_minor, status FROM payments WHERE provider = 'paynow' AND reference = 'PN-1001'")
            .fetch_one(&w.app.pool)
            .await
            .unwrap();
    assert_eq!((amount, status.as_str()), (15_000, "matched"));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_mpesa_request_is_pushed_and_its_callback_delivered_five_times_pays_the_order_once(pool: PgPool) {
    let w = world(pool).await;
    let order = place_order(&w.app, 250_000, "KES").await;
    let contact = w.customer().await;
    let request = w
        .request_mpesa("req-1", json!({"orderId": order}), 250_000, &contact)
        .await;
    assert_eq!(request["status"], "sent", "{request}");
    assert_eq!(request["providerRequestId"], "ws_CO_1");
    // The push Daraja received: the amount in whole shillings, the customer's number, our
    // secret callback path on the public URL.
    let push = w.daraja.pushes.lock().unwrap_or_else(|e| e.into_inner())[0].clone();
    assert_eq!(push["Amount"], 2_500, "{push}");
    assert_eq!(push["PhoneNumber"], "254708374149");
    assert_eq!(push["PartyA"], "254708374149");
    assert_eq!(push["PartyB"], SHORT_CODE);
    assert_eq!(push["TransactionType"], "CustomerPayBillOnline");
    assert_eq!(
        push["CallBackURL"],
        format!("{PUBLIC_URL}/webhooks/payments/{TENANT}/mpesa/{MPESA_SECRET}")
    );
    // The same request again (same key) answers with the first and pushes nothing more.
    let again = w
        .request_mpesa("req-1", json!({"orderId": order}), 250_000, &contact)
        .await;
    assert_eq!(again, request);
    assert_eq!(w.daraja.pushes.lock().unwrap_or_else(|e| e.into_inner()).len(), 1);

    w.daraja
        .results
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert("ws_CO_1".into(), "0".into());
    let callback = stk_callback("ws_CO_1", "NLJ7RT61SV", 2_500);
    for _ in 0..5 {
        let (status, body) = w.post_mpesa(MPESA_SECRET, &callback).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["ResultCode"], 0);
        assert_eq!(body["status"], "matched", "{body}");
        assert_eq!(body["matchedId"], json!(order));
    }
    assert_eq!(w.daraja.queries.load(Ordering::SeqCst), 5);
    assert_eq!(w.payment_facts().await, (2, 1));
    assert_eq!(w.order_payments().await, 1);
    assert_eq!(w.count_events("PaymentRequestPaid").await, 1);
    assert_eq!(w.count_events("OrderPaid").await, 1);
    // The payer's phone number is never stored in the log in the clear.
    assert_eq!(
        w.app
            .count("SELECT count(*) FROM events WHERE payload::text LIKE '%254708374149%'")
            .await,
        0
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn forged_mpesa_callbacks_record_no_payment_credit_nothing_and_are_kept_for_finance(pool: PgPool) {
    let w = world(pool).await;
    let order = place_order(&w.app, 250_000, "KES").await;
    let contact = w.customer().await;
    w.request_mpesa("paid", json!({"orderId": order}), 250_000, &contact)
        .await;
    let open = w
        .request_mpesa("open", json!({"walletId": "main"}), 50_000, &contact)
        .await;
    assert_eq!(open["providerRequestId"], "ws_CO_2", "{open}");
    {
        let mut results = w.daraja.results.lock().unwrap_or_else(|e| e.into_inner());
        results.insert("ws_CO_1".into(), "0".into());
        results.insert("ws_CO_2".into(), "0".into());
        results.insert("ws_CO_666".into(), "0".into());
    }
    let (status, body) = w
        .post_mpesa(MPESA_SECRET, &stk_callback("ws_CO_1", "GENUINE1", 2_500))
        .await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::OK, json!("matched")),
        "{body}"
    );
    assert_eq!(w.payment_facts().await, (2, 1));
    let queries_before = w.daraja.queries.load(Ordering::SeqCst);

    // 1. A CheckoutRequestID no request of ours has (even one Daraja would call paid).
    let (status, body) = w
        .post_mpesa(MPESA_SECRET, &stk_callback("ws_CO_666", "FORGED1", 1_000_000))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["counted"].clone(), body["refused"].clone()),
        (json!(false), json!("NO_PAYMENT_REQUEST"))
    );
    assert_eq!(
        w.daraja.queries.load(Ordering::SeqCst),
        queries_before,
        "an unknown push is not even queried"
    );
    // 2. The open request's push, with another amount.
    let (status, body) = w
        .post_mpesa(MPESA_SECRET, &stk_callback("ws_CO_2", "FORGED2", 99_999))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["refused"], "AMOUNT_MISMATCH", "{body}");
    // 3. The paid push again, with a new receipt number, five times.
    for _ in 0..5 {
        let (status, body) = w
            .post_mpesa(MPESA_SECRET, &stk_callback("ws_CO_1", "FORGED3", 2_500))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["refused"], "REQUEST_ALREADY_PAID", "{body}");
    }
    // No payment recorded, the order paid once, the wallet never credited.
    assert_eq!(w.payment_facts().await, (2, 1));
    assert_eq!(w.order_payments().await, 1);
    assert_eq!(w.count_events("TokensPurchased").await, 0);
    assert_eq!(w.count_events("PaymentRequestPaid").await, 1);
    // Finance sees each, with its reason.
    let finance = w.app.token(TENANT, Role::Finance);
    let (_, reply) = w
        .app
        .graphql(
            Some(&finance),
            "{ refusedPaymentCallbacks { nodes { providerRequestId providerReference requestId reason amountMinor deliveries } } }",
            json!({}),
        )
        .await;
    let mut seen: Vec<(String, String, i64, i64)> = reply["data"]["refusedPaymentCallbacks"]["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("{reply}"))
        .iter()
        .map(|r| {
            (
                r["providerReference"].as_str().unwrap_or_default().to_string(),
                r["reason"].as_str().unwrap_or_default().to_string(),
                r["amountMinor"].as_i64().unwrap_or_default(),
                r["deliveries"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("FORGED1".to_string(), "NO_PAYMENT_REQUEST".to_string(), 100_000_000, 1),
            ("FORGED2".to_string(), "AMOUNT_MISMATCH".to_string(), 9_999_900, 1),
            ("FORGED3".to_string(), "REQUEST_ALREADY_PAID".to_string(), 250_000, 5),
        ]
    );
    // The open request is still open: its genuine payment still counts.
    let (_, body) = w
        .post_mpesa(MPESA_SECRET, &stk_callback("ws_CO_2", "GENUINE2", 500))
        .await;
    assert_eq!(body["status"], "matched", "{body}");
    assert_eq!(body["matchedKind"], "wallet", "{body}");
    // An agent does not read them.
    let agent = w.app.token(TENANT, Role::Agent);
    let (_, reply) = w
        .app
        .graphql(
            Some(&agent),
            "{ refusedPaymentCallbacks { nodes { reason } } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&reply), "FORBIDDEN", "{reply}");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_late_or_cancelled_requests_payment_credits_nothing_and_is_kept_unmatched_for_finance(pool: PgPool) {
    let w = world(pool).await;
    let contact = w.customer().await;
    // A request that expires a moment from now (the API's shortest is a minute).
    let meta = metadata();
    let late = w
        .app
        .state
        .payments
        .request_payment(
            NewPaymentRequest {
                idempotency_key: "late".into(),
                target: PaymentTarget::Wallet {
                    wallet_id: "main".into(),
                },
                provider: PaymentProvider::Mpesa,
                amount_minor: 10_000,
                currency: "KES".into(),
                expires_at: chrono::Utc::now() + chrono::Duration::milliseconds(500),
                contact_id: Some(contact.clone()),
                mobile_money: None,
                message: None,
            },
            &meta,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let cancelled = w
        .request_mpesa("cancelled", json!({"walletId": "main"}), 20_000, &contact)
        .await;
    let finance = w.app.token(TENANT, Role::Finance);
    let (_, reply) = w
        .app
        .graphql(
            Some(&finance),
            "mutation($id: String!) { cancelPaymentRequest(id: $id) { id status } }",
            json!({"id": cancelled["id"]}),
        )
        .await;
    assert_eq!(reply["data"]["cancelPaymentRequest"]["status"], "cancelled", "{reply}");
    {
        let mut results = w.daraja.results.lock().unwrap_or_else(|e| e.into_inner());
        results.insert("ws_CO_1".into(), "0".into());
        results.insert("ws_CO_2".into(), "0".into());
    }
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert_eq!(late.provider_request_id.as_deref(), Some("ws_CO_1"));
    for (checkout, receipt, amount, reason) in [
        ("ws_CO_1", "LATE1", 100, "REQUEST_EXPIRED"),
        ("ws_CO_2", "CANCELLED1", 200, "REQUEST_CANCELLED"),
    ] {
        for _ in 0..2 {
            let (status, body) = w
                .post_mpesa(MPESA_SECRET, &stk_callback(checkout, receipt, amount))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(
                (body["status"].clone(), body["unmatchedReason"].clone()),
                (json!("unmatched"), json!(reason)),
                "{body}"
            );
        }
    }
    // Kept as unmatched payments (once each), nothing credited.
    assert_eq!(w.payment_facts().await, (4, 2));
    assert_eq!(w.count_events("TokensPurchased").await, 0);
    let (_, reply) = w
        .app
        .graphql(
            Some(&finance),
            "{ unmatchedPayments(first: 10) { edges { node { reference unmatchedReason } } } }",
            json!({}),
        )
        .await;
    let mut kept: Vec<String> = reply["data"]["unmatchedPayments"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{reply}"))
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["node"]["reference"].as_str().unwrap_or_default(),
                e["node"]["unmatchedReason"].as_str().unwrap_or_default()
            )
        })
        .collect();
    kept.sort();
    assert_eq!(kept, vec!["CANCELLED1 REQUEST_CANCELLED", "LATE1 REQUEST_EXPIRED"]);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn payment_requests_are_refused_by_rule_and_role_with_nothing_pushed(pool: PgPool) {
    let w = world(pool).await;
    let order = place_order(&w.app, 250_000, "KES").await;
    let contact = w.customer().await;
    let zimbabwean = w.contact_with_phone("+263771000009").await;
    let finance = w.app.token(TENANT, Role::Finance);
    let ask = |provider: &str, amount: i64, currency: &str, contact: &str, target: Value| {
        json!({"input": {"idempotencyKey": format!("k-{provider}-{amount}-{currency}-{contact}"), "provider": provider,
                          "target": target, "amountMinor": amount, "currency": currency, "contactId": contact}})
    };
    for (variables, expected) in [
        (
            ask("PAYNOW", 1_000, "KES", &contact, json!({"orderId": order})),
            "PROVIDER_CURRENCY",
        ),
        (
            ask("MPESA", 1_000, "USD", &contact, json!({"orderId": order})),
            "PROVIDER_CURRENCY",
        ),
        (
            ask("MPESA", 1_050, "KES", &contact, json!({"orderId": order})),
            "NOT_WHOLE_UNITS",
        ),
        (
            ask("MPESA", 0, "KES", &contact, json!({"orderId": order})),
            "NON_POSITIVE_PAYMENT",
        ),
        (
            ask("MPESA", 1_000, "KES", &zimbabwean, json!({"orderId": order})),
            "INVALID_INPUT",
        ),
        (
            ask("MPESA", 1_000, "KES", "ct_nobody", json!({"orderId": order})),
            "INVALID_INPUT",
        ),
        (
            ask(
                "MPESA",
                1_000,
                "KES",
                &contact,
                json!({"orderId": order, "walletId": "main"}),
            ),
            "ONE_TARGET",
        ),
    ] {
        let (_, reply) = w.app.graphql(Some(&finance), REQUEST_PAYMENT, variables.clone()).await;
        assert_eq!(error_code(&reply), expected, "{variables} → {reply}");
    }
    assert!(w.daraja.pushes.lock().unwrap_or_else(|e| e.into_inner()).is_empty());
    // Daraja refusing the push fails the request with its code.
    let refused = w
        .request_mpesa("one-shilling", json!({"orderId": order}), 100, &contact)
        .await;
    assert_eq!(refused["status"], "failed", "{refused}");
    assert_eq!(refused["providerRequestId"], Value::Null);
    // Roles: a technician or an auditor asks for nothing.
    for role in [Role::Technician, Role::Auditor] {
        let token = w.app.token(TENANT, role);
        let (_, reply) = w
            .app
            .graphql(
                Some(&token),
                REQUEST_PAYMENT,
                ask("MPESA", 1_000, "KES", &contact, json!({"orderId": order})),
            )
            .await;
        assert_eq!(error_code(&reply), "FORBIDDEN", "{reply}");
    }
    assert_eq!(w.count_events("PaymentRequested").await, 1);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_stripe_callback_delivered_five_times_creates_one_payment_and_tops_up_the_wallet_once(pool: PgPool) {
    let w = world(pool).await;
    let body = stripe_event("pi_3Abc", 2_000, "usd", "wallet_main");
    for _ in 0..5 {
        let signature = stripe::sign(STRIPE_SECRET, chrono::Utc::now().timestamp(), &body);
        let (status, answer) = w.post_stripe(&body, Some(signature)).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["matchedKind"], "wallet", "{answer}");
    }
    assert_eq!(w.payment_facts().await, (2, 1));
    assert_eq!(
        w.app
            .count("SELECT count(*) FROM events WHERE event_type = 'TokensPurchased'")
            .await,
        1
    );
    let tokens: i64 = sqlx::query_scalar("SELECT milli_tokens FROM payments WHERE reference = 'pi_3Abc'")
        .fetch_one(&w.app.pool)
        .await
        .unwrap();
    assert_eq!(tokens, 2_000 * 1_000, "one token per US cent");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_paynow_callback_with_a_bad_hash_stores_nothing_and_answers_4xx(pool: PgPool) {
    let w = world(pool).await;
    let order = place_order(&w.app, 15_000, "USD").await;
    let mut callback = w.paynow_callback("g1", &order, "PN-1", "150.00", "Paid");
    // Tampered amount, hash of the original values.
    callback[2].1 = "1.00".into();
    let (status, body) = w.post_paynow(&callback).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "BAD_HASH");
    // Signed with another key.
    let mut forged = w.paynow_callback("g1", &order, "PN-1", "150.00", "Paid");
    forged.pop();
    let hash = paynow_hash(&forged, "not-the-key");
    forged.push(("hash".into(), hash));
    let (status, _) = w.post_paynow(&forged).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        w.paynow.polls.load(Ordering::SeqCst),
        0,
        "nothing is polled for a bad hash"
    );
    assert_eq!(w.payment_facts().await, (0, 0));
    assert_eq!(w.order_payments().await, 0);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_stripe_callback_with_a_bad_or_old_signature_stores_nothing_and_answers_4xx(pool: PgPool) {
    let w = world(pool).await;
    let order = place_order(&w.app, 2_000, "USD").await;
    let body = stripe_event("pi_1", 2_000, "usd", &order);
    let now = chrono::Utc::now().timestamp();
    for signature in [
        Some(stripe::sign("whsec_wrong", now, &body)),
        Some(stripe::sign(STRIPE_SECRET, now - 301, &body)),
        Some(format!("t={now},v1={}", "0".repeat(64))),
        None,
    ] {
        let (status, answer) = w.post_stripe(&body, signature).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
        assert_eq!(answer["error"]["code"], "BAD_SIGNATURE");
    }
    assert_eq!(w.payment_facts().await, (0, 0));
    assert_eq!(w.order_payments().await, 0);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_mpesa_callback_on_a_wrong_secret_path_stores_nothing_and_answers_4xx(pool: PgPool) {
    let w = world(pool).await;
    w.daraja
        .results
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert("ws_CO_1".into(), "0".into());
    let callback = stk_callback("ws_CO_1", "NLJ7RT61SV", 2_500);
    for secret in ["mpesa-callback-secret-0123456788", "x"] {
        let (status, body) = w.post_mpesa(secret, &callback).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["error"]["code"], "UNKNOWN_CALLBACK_PATH");
    }
    assert_eq!(
        w.daraja.queries.load(Ordering::SeqCst),
        0,
        "nothing is queried for a wrong path"
    );
    assert_eq!(w.payment_facts().await, (0, 0));
    assert_eq!(w.order_payments().await, 0);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_poll_or_status_query_answering_not_paid_counts_nothing(pool: PgPool) {
    let w = world(pool).await;
    let order = place_order(&w.app, 15_000, "USD").await;
    // The callback claims Paid; the poll says Cancelled.
    let mut callback = w.paynow_callback("g1", &order, "PN-1", "150.00", "Cancelled");
    callback.pop();
    callback[3].1 = "Paid".into();
    let hash = paynow_hash(&callback, PAYNOW_KEY);
    callback.push(("hash".into(), hash));
    let (status, body) = w.post_paynow(&callback).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["counted"], false);
    // Daraja does not confirm the STK push (ResultCode 1032).
    w.daraja
        .results
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert("ws_CO_9".into(), "1032".into());
    let (status, body) = w.post_mpesa(MPESA_SECRET, &stk_callback("ws_CO_9", "RCPT9", 100)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["counted"], false);
    assert_eq!(w.payment_facts().await, (0, 0));
    assert_eq!(w.order_payments().await, 0);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_poll_url_off_the_configured_paynow_base_is_refused_and_never_called(pool: PgPool) {
    let w = world(pool).await;
    let order = place_order(&w.app, 15_000, "USD").await;
    // A server the attacker controls, answering "Paid".
    let evil = Paynow::default();
    evil.payments.lock().unwrap_or_else(|e| e.into_inner()).insert(
        "g1".into(),
        (order.clone(), "PN-1".into(), "150.00".into(), "Paid".into()),
    );
    let evil_root = serve(
        Router::new()
            .route("/paynow/Interface/CheckPayment/{guid}", post(paynow_poll))
            .with_state(evil.clone()),
    )
    .await;
    let mut pairs = vec![
        ("reference".to_string(), order.clone()),
        ("paynowreference".to_string(), "PN-1".to_string()),
        ("amount".to_string(), "150.00".to_string()),
        ("status".to_string(), "Paid".to_string()),
        (
            "pollurl".to_string(),
            format!("{evil_root}/paynow/Interface/CheckPayment/g1"),
        ),
    ];
    let hash = paynow_hash(&pairs, PAYNOW_KEY);
    pairs.push(("hash".to_string(), hash));
    let (status, body) = w.post_paynow(&pairs).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "POLL_URL_REFUSED");
    assert_eq!(evil.polls.load(Ordering::SeqCst), 0);
    assert_eq!(w.payment_facts().await, (0, 0));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_poll_that_fails_answers_5xx_so_paynow_retries_and_the_retry_counts_once(pool: PgPool) {
    let w = world(pool).await;
    let order = place_order(&w.app, 15_000, "USD").await;
    let callback = w.paynow_callback("g1", &order, "PN-7", "150.00", "Paid");
    *w.paynow.failing.lock().unwrap_or_else(|e| e.into_inner()) = true;
    let (status, body) = w.post_paynow(&callback).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "PROVIDER_UNAVAILABLE");
    assert_eq!(w.payment_facts().await, (0, 0));
    *w.paynow.failing.lock().unwrap_or_else(|e| e.into_inner()) = false;
    let (status, body) = w.post_paynow(&callback).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(w.payment_facts().await, (2, 1));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_unmatched_payment_appears_in_graphql_for_finance_who_matches_it_to_an_order(pool: PgPool) {
    let w = world(pool).await;
    // A reference we never issued, and an overpayment of a real order: both kept, unmatched.
    let body = stripe_event("pi_stray", 5_000, "usd", "INV-77");
    let (status, answer) = w
        .post_stripe(
            &body,
            Some(stripe::sign(STRIPE_SECRET, chrono::Utc::now().timestamp(), &body)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "unmatched");
    let small = place_order(&w.app, 1_000, "USD").await;
    let over = stripe_event("pi_over", 5_000, "usd", &small);
    w.post_stripe(
        &over,
        Some(stripe::sign(STRIPE_SECRET, chrono::Utc::now().timestamp(), &over)),
    )
    .await;
    w.app.project().await;

    let finance = w.app.token(TENANT, Role::Finance);
    let query = "{ unmatchedPayments(first: 10) { edges { node { id provider reference merchantReference amountMinor currency status unmatchedReason } } } }";
    let (_, page) = w.app.graphql(Some(&finance), query, json!({})).await;
    let nodes: Vec<Value> = page["data"]["unmatchedPayments"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{page}"))
        .iter()
        .map(|e| e["node"].clone())
        .collect();
    assert_eq!(nodes.len(), 2, "{page}");
    let stray = nodes.iter().find(|n| n["reference"] == "pi_stray").unwrap();
    assert_eq!(stray["unmatchedReason"], "UNRECOGNISED_REFERENCE");
    assert_eq!(stray["amountMinor"], 5_000);
    assert_eq!(stray["status"], "UNMATCHED");
    let overpaid = nodes.iter().find(|n| n["reference"] == "pi_over").unwrap();
    assert_eq!(overpaid["unmatchedReason"], "OVERPAYMENT");

    // Agents may not see them.
    let agent = w.app.token(TENANT, Role::Agent);
    let (_, denied) = w.app.graphql(Some(&agent), query, json!({})).await;
    assert_eq!(denied["errors"][0]["extensions"]["code"], "FORBIDDEN");

    // Finance matches the stray payment to an order that costs exactly that much.
    let order = place_order(&w.app, 5_000, "USD").await;
    let matching = "mutation($p: String!, $o: String!) { matchPayment(paymentId: $p, orderId: $o) { status ids } }";
    let variables = json!({"p": stray["id"], "o": order});
    for _ in 0..2 {
        let (_, matched) = w.app.graphql(Some(&finance), matching, variables.clone()).await;
        assert_eq!(matched["data"]["matchPayment"]["status"], "MATCHED", "{matched}");
    }
    assert_eq!(
        w.app
            .count("SELECT count(*) FROM events WHERE event_type = 'OrderPaid'")
            .await,
        1
    );
    assert_eq!(
        w.app
            .count("SELECT count(*) FROM events WHERE event_type = 'PaymentMatchedManually'")
            .await,
        1
    );
    // An order that would be overpaid is refused with the order's rule.
    let (_, refused) = w
        .app
        .graphql(Some(&finance), matching, json!({"p": overpaid["id"], "o": small}))
        .await;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "OVERPAYMENT", "{refused}");

    w.app.project().await;
    let (_, listed) = w
        .app
        .graphql(
            Some(&finance),
            "{ payments(status: MATCHED, provider: STRIPE) { edges { node { reference matchedKind matchedId matchedBy } } } }",
            json!({}),
        )
        .await;
    let edges = listed["data"]["payments"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(edges.len(), 1, "{listed}");
    assert_eq!(edges[0]["node"]["matchedId"], json!(order));
    assert_eq!(edges[0]["node"]["matchedBy"], "user-1");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_order_paid_through_a_callback_ends_in_an_installation_technicians_can_be_assigned_to(pool: PgPool) {
    let w = world(pool).await;
    let order = place_order(&w.app, 15_000, "USD").await;
    let callback = w.paynow_callback("g1", &order, "PN-42", "150.00", "Paid");
    let (status, body) = w.post_paynow(&callback).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Only what runs in the background: projectors and the installation process manager.
    let worker = InstallationWorker::new(
        w.app.state.commands.clone(),
        KeyStore::new(w.app.state.pool.clone(), w.app.state.master_key.clone()),
    );
    let isr = installation_id_for_order(&tenant(TENANT), &order);
    let mut opened = false;
    for _ in 0..50 {
        w.app.project().await;
        worker.drain().await.unwrap();
        w.app.project().await;
        let found = w
            .app
            .count(&format!(
                "SELECT count(*) FROM installations WHERE installation_id = '{isr}'"
            ))
            .await;
        if found == 1 {
            opened = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(opened, "no installation was opened for the paid order");
    assert_eq!(
        w.app
            .count("SELECT count(*) FROM events WHERE event_type = 'InstallationOpened'")
            .await,
        1
    );

    let admin = w.app.token(TENANT, Role::Admin);
    let tech = w.app.user(TENANT, Role::Technician).await;
    let (_, assigned) = w
        .app
        .graphql(
            Some(&admin),
            "mutation($i: String!, $t: String!) { assignTechnician(installationId: $i, technicianId: $t) { id } }",
            json!({"i": isr, "t": tech}),
        )
        .await;
    assert!(
        assigned["data"]["assignTechnician"]["id"].as_str().is_some(),
        "{assigned}"
    );
    assert_eq!(
        w.app
            .count("SELECT count(*) FROM events WHERE event_type = 'TechnicianAssigned'")
            .await,
        1
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn five_concurrent_deliveries_of_one_callback_create_one_payment(pool: PgPool) {
    let w = world(pool).await;
    let order = place_order(&w.app, 2_000, "USD").await;
    let body = stripe_event("pi_race", 2_000, "usd", &order);
    let signature = stripe::sign(STRIPE_SECRET, chrono::Utc::now().timestamp(), &body);
    let answers = futures::future::join_all((0..5).map(|_| w.post_stripe(&body, Some(signature.clone())))).await;
    for (status, answer) in answers {
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["status"], "matched", "{answer}");
    }
    assert_eq!(w.payment_facts().await, (2, 1));
    assert_eq!(w.order_payments().await, 1);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_status_query_daraja_cannot_answer_yet_answers_5xx_and_stores_nothing(pool: PgPool) {
    let w = world(pool).await;
    let order = place_order(&w.app, 250_000, "KES").await;
    let contact = w.customer().await;
    let request = w
        .request_mpesa("down", json!({"orderId": order}), 250_000, &contact)
        .await;
    assert_eq!(request["providerRequestId"], "ws_CO_1", "{request}");
    // The same tenant and database, served by an app whose Daraja is down.
    let mut settings = settings(false);
    settings.payments.daraja_base_url = "http://127.0.0.1:9".into();
    settings.payments.timeout = std::time::Duration::from_secs(2);
    let down = TestApp::with_settings(w.app.pool.clone(), settings).await;
    let (status, body) = down
        .send(
            Request::post(format!("/webhooks/payments/{TENANT}/mpesa/{MPESA_SECRET}"))
                .header("content-type", "application/json")
                .body(Body::from(stk_callback("ws_CO_1", "RCPT5", 2_500).to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "PROVIDER_UNAVAILABLE");
    assert_eq!(w.payment_facts().await, (0, 0));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn provider_secrets_are_stored_sealed_and_only_admins_set_them(pool: PgPool) {
    let w = world(pool).await;
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT settings::text || sealed_secrets::text || encode(wrapped_key, 'hex') || coalesce(encode(callback_secret_sha256, 'hex'), '')
           FROM payment_providers",
    )
    .fetch_all(&w.app.pool)
    .await
    .unwrap();
    assert_eq!(stored.len(), 3);
    for secret in [
        PAYNOW_KEY,
        STRIPE_SECRET,
        MPESA_SECRET,
        PASSKEY,
        CONSUMER_SECRET,
        CONSUMER_KEY,
    ] {
        assert!(
            stored.iter().all(|row| !row.contains(secret)),
            "{secret} is stored in the clear"
        );
    }
    let finance = w.app.token(TENANT, Role::Finance);
    let (_, denied) = w
        .app
        .graphql(
            Some(&finance),
            "mutation { setPaymentProvider(provider: {stripe: {endpointSecret: \"whsec_mine\"}}) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(denied["errors"][0]["extensions"]["code"], "FORBIDDEN");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn payment_requests_are_listed_with_where_they_stand_filtered_and_paged(pool: PgPool) {
    let w = world(pool).await;
    let order = place_order(&w.app, 250_000, "KES").await;
    let contact = w.customer().await;
    let paid = w
        .request_mpesa("list-1", json!({"orderId": order}), 250_000, &contact)
        .await;
    let cancelled = w
        .request_mpesa("list-2", json!({"walletId": "main"}), 20_000, &contact)
        .await;
    let refused = w
        .request_mpesa("list-3", json!({"walletId": "main"}), 30_000, &contact)
        .await;
    {
        let mut results = w.daraja.results.lock().unwrap_or_else(|e| e.into_inner());
        results.insert("ws_CO_1".into(), "0".into());
        results.insert("ws_CO_3".into(), "0".into());
    }
    let (status, body) = w
        .post_mpesa(MPESA_SECRET, &stk_callback("ws_CO_1", "PAID1", 2_500))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Another amount than asked: refused, counted on the request.
    let (status, body) = w
        .post_mpesa(MPESA_SECRET, &stk_callback("ws_CO_3", "WRONG1", 999))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let finance = w.app.token(TENANT, Role::Finance);
    let (_, reply) = w
        .app
        .graphql(
            Some(&finance),
            "mutation($id: String!) { cancelPaymentRequest(id: $id) { status } }",
            json!({"id": cancelled["id"]}),
        )
        .await;
    assert!(reply.get("errors").is_none(), "{reply}");
    w.app.project().await;

    const LIST: &str = "query($status: PaymentRequestStatus, $kind: PaymentRequestTargetKind, $target: String,
                              $first: Int! = 20, $after: String) {
        paymentRequests(filter: { status: $status, targetKind: $kind, target: $target }, first: $first, after: $after) {
          edges { node { id provider targetKind target amountMinor currency contactId status providerRequestId
                         providerReference refusedCallbacks requestedBy expiresAt sentAt closedAt } }
          pageInfo { hasNextPage endCursor } } }";
    let list = |token: String, variables: Value| {
        let app = &w.app;
        async move { app.graphql(Some(&token), LIST, variables).await.1 }
    };
    let ids = |reply: &Value| -> Vec<String> {
        reply["data"]["paymentRequests"]["edges"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e["node"]["id"].as_str().map(str::to_string))
            .collect()
    };
    let id = |request: &Value| request["id"].as_str().unwrap_or_default().to_string();

    // Latest first, each with where it stands.
    let all = list(finance.clone(), json!({})).await;
    assert_eq!(ids(&all), [id(&refused), id(&cancelled), id(&paid)], "{all}");
    let nodes: Vec<Value> = all["data"]["paymentRequests"]["edges"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e["node"].clone())
        .collect();
    assert_eq!(nodes[0]["status"], "SENT");
    assert_eq!(nodes[0]["refusedCallbacks"], 1);
    assert_eq!(nodes[0]["targetKind"], "WALLET");
    assert_eq!(nodes[1]["status"], "CANCELLED");
    assert!(nodes[1]["closedAt"].is_string(), "{all}");
    assert_eq!(nodes[2]["status"], "PAID");
    assert_eq!(nodes[2]["providerReference"], "PAID1");
    assert_eq!(nodes[2]["providerRequestId"], "ws_CO_1");
    assert_eq!(nodes[2]["target"], json!(order));
    assert_eq!(nodes[2]["amountMinor"], 250_000);
    assert_eq!(nodes[2]["currency"], "KES");
    assert_eq!(nodes[2]["contactId"], json!(contact));
    assert_eq!(nodes[2]["provider"], "mpesa");

    // Filters.
    assert_eq!(
        ids(&list(finance.clone(), json!({"status": "PAID"})).await),
        [id(&paid)]
    );
    assert_eq!(
        ids(&list(finance.clone(), json!({"kind": "WALLET"})).await),
        [id(&refused), id(&cancelled)]
    );
    assert_eq!(ids(&list(finance.clone(), json!({"target": order})).await), [id(&paid)]);
    assert!(ids(&list(finance.clone(), json!({"status": "EXPIRED"})).await).is_empty());

    // Pages.
    let first = list(finance.clone(), json!({"first": 2})).await;
    assert_eq!(ids(&first), [id(&refused), id(&cancelled)]);
    assert_eq!(first["data"]["paymentRequests"]["pageInfo"]["hasNextPage"], true);
    let after = first["data"]["paymentRequests"]["pageInfo"]["endCursor"].clone();
    let second = list(finance.clone(), json!({"first": 2, "after": after})).await;
    assert_eq!(ids(&second), [id(&paid)]);
    assert_eq!(second["data"]["paymentRequests"]["pageInfo"]["hasNextPage"], false);
    let bad = list(finance.clone(), json!({"after": "not-a-cursor"})).await;
    assert_eq!(error_code(&bad), "BAD_CURSOR", "{bad}");

    // One by id; agents read them (they make requests), technicians do not.
    let agent = w.app.token(TENANT, Role::Agent);
    let (_, one) = w
        .app
        .graphql(
            Some(&agent),
            "query($id: String!) { paymentRequest(id: $id) { id status } nobody: paymentRequest(id: \"preq_none\") { id } }",
            json!({"id": cancelled["id"]}),
        )
        .await;
    assert_eq!(one["data"]["paymentRequest"]["status"], "CANCELLED", "{one}");
    assert!(one["data"]["nobody"].is_null(), "{one}");
    let technician = list(w.app.token(TENANT, Role::Technician), json!({})).await;
    assert_eq!(error_code(&technician), "FORBIDDEN", "{technician}");
    // Another tenant sees none of them.
    w.app.tenant_with_number("other", "999000999").await;
    assert!(ids(&list(w.app.token("other", Role::Finance), json!({})).await).is_empty());
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_sweeper_expires_open_requests_past_their_expiry_once_and_leaves_the_rest(pool: PgPool) {
    use chronicle_commands::payments::expiry::RequestExpirySweeper;
    let w = world(pool).await;
    let contact = w.customer().await;
    // A request that expires a moment from now (the API's shortest is a minute), one that does
    // not, and one paid.
    let short = w
        .app
        .state
        .payments
        .request_payment(
            NewPaymentRequest {
                idempotency_key: "short".into(),
                target: PaymentTarget::Wallet {
                    wallet_id: "main".into(),
                },
                provider: PaymentProvider::Mpesa,
                amount_minor: 10_000,
                currency: "KES".into(),
                expires_at: chrono::Utc::now() + chrono::Duration::milliseconds(500),
                contact_id: Some(contact.clone()),
                mobile_money: None,
                message: None,
            },
            &metadata(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let open = w
        .request_mpesa("open", json!({"walletId": "main"}), 20_000, &contact)
        .await;
    let sweeper = RequestExpirySweeper::new(w.app.state.commands.clone());
    w.app.project().await;
    // Nothing is due yet.
    assert_eq!(
        sweeper.run_once(100).await.unwrap_or_else(|e| panic!("{e}")).worked(),
        0
    );
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let pass = sweeper.run_once(100).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((pass.expired, pass.refused, pass.retry), (1, 0, 0));
    // A second pass before the projector caught up records nothing more.
    sweeper.run_once(100).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(w.count_events("PaymentRequestExpired").await, 1);
    w.app.project().await;
    assert_eq!(
        sweeper.run_once(100).await.unwrap_or_else(|e| panic!("{e}")).worked(),
        0
    );
    let finance = w.app.token(TENANT, Role::Finance);
    let (_, reply) = w
        .app
        .graphql(
            Some(&finance),
            "query($a: String!, $b: String!) { a: paymentRequest(id: $a) { status closedAt } b: paymentRequest(id: $b) { status } }",
            json!({"a": short.request_id, "b": open["id"]}),
        )
        .await;
    assert_eq!(reply["data"]["a"]["status"], "EXPIRED", "{reply}");
    assert!(reply["data"]["a"]["closedAt"].is_string(), "{reply}");
    assert_eq!(reply["data"]["b"]["status"], "SENT", "{reply}");
    // Its late payment is still refused by the request and kept for finance.
    w.daraja
        .results
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert("ws_CO_1".into(), "0".into());
    let (status, body) = w.post_mpesa(MPESA_SECRET, &stk_callback("ws_CO_1", "LATE2", 100)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["unmatchedReason"], "REQUEST_EXPIRED", "{body}");
    assert_eq!(w.count_events("TokensPurchased").await, 0);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_stripe_request_opens_a_checkout_session_whose_events_delivered_five_times_pay_the_order_once(pool: PgPool) {
    let w = world(pool).await;
    let order = place_order(&w.app, 25_000, "USD").await;
    let contact = w.customer().await;
    let before = chrono::Utc::now().timestamp();
    let request = w
        .request_stripe("stripe-1", json!({"orderId": order}), 25_000, &contact)
        .await;
    assert_eq!(request["status"], "sent", "{request}");
    assert_eq!(request["providerRequestId"], "cs_test_1");
    assert_eq!(request["paymentUrl"], "https://checkout.stripe.test/c/pay/cs_test_1");
    let request_id = request["id"].as_str().unwrap_or_default().to_string();

    // The session Stripe received: the documented form, our secret key, the request id as
    // idempotency key, client reference and metadata of the session and of its intent.
    let sessions = w.stripe.sessions();
    assert_eq!(sessions.len(), 1);
    let (headers, form) = &sessions[0];
    assert_eq!(
        headers.get("idempotency-key").and_then(|v| v.to_str().ok()),
        Some(format!("{TENANT}:{request_id}").as_str())
    );
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/x-www-form-urlencoded")
    );
    for (name, value) in [
        ("mode", "payment"),
        ("line_items[0][quantity]", "1"),
        ("line_items[0][price_data][currency]", "usd"),
        ("line_items[0][price_data][unit_amount]", "25000"),
        ("client_reference_id", request_id.as_str()),
        ("metadata[request_id]", request_id.as_str()),
        ("payment_intent_data[metadata][request_id]", request_id.as_str()),
        ("metadata[tenant_id]", TENANT),
        ("payment_intent_data[metadata][tenant_id]", TENANT),
        ("success_url", &format!("{PUBLIC_URL}/payments/done")),
    ] {
        assert_eq!(field(form, name), Some(value), "{name} in {form:?}");
    }
    assert_eq!(
        field(form, "line_items[0][price_data][product_data][name]"),
        Some(format!("Order {order}").as_str())
    );
    let expires: i64 = field(form, "expires_at").and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(
        expires >= before + 45 * 60 && expires <= chrono::Utc::now().timestamp() + 24 * 3600,
        "expires_at {expires} within Stripe's 30 minutes to 24 hours (45 minutes at least)"
    );
    // The same request again answers the first and opens nothing more.
    let again = w
        .request_stripe("stripe-1", json!({"orderId": order}), 25_000, &contact)
        .await;
    assert_eq!(again, request);
    assert_eq!(w.stripe.sessions().len(), 1);

    // Both events of the payment, each delivered five times: one payment, the order paid once.
    for round in 0..5 {
        for event in [
            session_completed("cs_test_1", "pi_paid", 25_000, &request_id),
            intent_succeeded("pi_paid", 25_000, &request_id),
        ] {
            let (body, signature) = signed(&event);
            let (status, answer) = w.post_stripe(&body, Some(signature)).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            assert_eq!(answer["status"], "matched", "round {round}: {answer}");
            assert_eq!(answer["matchedId"], json!(order));
        }
    }
    assert_eq!(w.payment_facts().await, (2, 1));
    assert_eq!(w.order_payments().await, 1);
    assert_eq!(w.count_events("PaymentRequestPaid").await, 1);
    assert_eq!(w.count_events("OrderPaid").await, 1);

    // Read back: paid, with its payment page and the intent as the reference.
    let finance = w.app.token(TENANT, Role::Finance);
    let (_, read) = w
        .app
        .graphql(
            Some(&finance),
            "query($id: String!) { paymentRequest(id: $id) { status provider providerRequestId paymentUrl providerReference } }",
            json!({"id": request_id}),
        )
        .await;
    let read = &read["data"]["paymentRequest"];
    assert_eq!(read["status"], "PAID", "{read}");
    assert_eq!(read["provider"], "stripe");
    assert_eq!(read["providerRequestId"], "cs_test_1");
    assert_eq!(read["paymentUrl"], "https://checkout.stripe.test/c/pay/cs_test_1");
    assert_eq!(read["providerReference"], "pi_paid");
    // The page Stripe sends the customer back to.
    let (status, _) = w
        .app
        .send(
            Request::get("/payments/done")
                .body(Body::empty())
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn stripe_events_for_no_request_or_another_amount_credit_nothing_and_are_kept_for_finance(pool: PgPool) {
    let w = world(pool).await;
    let order = place_order(&w.app, 25_000, "USD").await;
    let contact = w.customer().await;
    let request = w
        .request_stripe("stripe-2", json!({"orderId": order}), 25_000, &contact)
        .await;
    let request_id = request["id"].as_str().unwrap_or_default().to_string();
    for event in [
        // A session Chronicle never opened, even naming a real request in its metadata.
        session_completed("cs_forged", "pi_forged", 25_000, &request_id),
        // An intent naming a request that does not exist.
        intent_succeeded("pi_stray", 25_000, "preq_00000000000000000000000000000000"),
        // The real session, for another amount.
        session_completed("cs_test_1", "pi_short", 100, &request_id),
    ] {
        for _ in 0..2 {
            let (body, signature) = signed(&event);
            let (status, answer) = w.post_stripe(&body, Some(signature)).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            assert_eq!(answer["counted"], false, "{answer}");
        }
    }
    assert_eq!(w.payment_facts().await, (0, 0));
    assert_eq!(w.count_events("PaymentRequestPaid").await, 0);
    assert_eq!(w.count_events("OrderPaid").await, 0);
    let finance = w.app.token(TENANT, Role::Finance);
    let (_, refused) = w
        .app
        .graphql(
            Some(&finance),
            "{ refusedPaymentCallbacks(first: 10) { edges { node { provider providerRequestId providerReference reason deliveries } } } }",
            json!({}),
        )
        .await;
    let mut reasons: Vec<(String, String, i64)> = refused["data"]["refusedPaymentCallbacks"]["edges"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let n = &e["node"];
            assert_eq!(n["provider"], "stripe", "{n}");
            (
                n["providerReference"].as_str().unwrap_or_default().to_string(),
                n["reason"].as_str().unwrap_or_default().to_string(),
                n["deliveries"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            ("pi_forged".to_string(), "NO_PAYMENT_REQUEST".to_string(), 2),
            ("pi_short".to_string(), "AMOUNT_MISMATCH".to_string(), 2),
            ("pi_stray".to_string(), "NO_PAYMENT_REQUEST".to_string(), 2),
        ],
        "{refused}"
    );
    // The genuine payment still counts afterwards.
    let (body, signature) = signed(&session_completed("cs_test_1", "pi_real", 25_000, &request_id));
    let (_, answer) = w.post_stripe(&body, Some(signature)).await;
    assert_eq!(answer["status"], "matched", "{answer}");

    // Cancelling a request expires its Checkout Session with Stripe.
    let cancelled = w
        .request_stripe("stripe-4", json!({"orderId": order}), 25_000, &contact)
        .await;
    assert_eq!(cancelled["providerRequestId"], "cs_test_2", "{cancelled}");
    let (_, reply) = w
        .app
        .graphql(
            Some(&finance),
            "mutation($id: String!) { cancelPaymentRequest(id: $id) { status } }",
            json!({"id": cancelled["id"]}),
        )
        .await;
    assert_eq!(reply["data"]["cancelPaymentRequest"]["status"], "cancelled", "{reply}");
    assert_eq!(
        *w.stripe.expired.lock().unwrap_or_else(|e| e.into_inner()),
        vec!["cs_test_2".to_string()]
    );

    // Stripe refusing the session fails the request with its code.
    let small = place_order(&w.app, 13, "USD").await;
    let refused = w
        .request_stripe("stripe-13", json!({"orderId": small}), 13, &contact)
        .await;
    assert_eq!(refused["status"], "failed", "{refused}");
    assert_eq!(refused["paymentUrl"], Value::Null);
    // Stripe configured without a secret key: received, never requested.
    let owner = w.app.token(TENANT, Role::Owner);
    let (_, set) = w
        .app
        .graphql(
            Some(&owner),
            "mutation($p: PaymentProviderInput!) { setPaymentProvider(provider: $p) { id } }",
            json!({"p": {"stripe": {"endpointSecret": STRIPE_SECRET}}}),
        )
        .await;
    assert!(set.get("errors").is_none(), "{set}");
    let unconfigured = w
        .request_stripe("stripe-3", json!({"orderId": order}), 25_000, &contact)
        .await;
    assert_eq!(error_code(&unconfigured), "PROVIDER_NOT_CONFIGURED", "{unconfigured}");
    let (_, bad) = w
        .app
        .graphql(
            Some(&owner),
            "mutation($p: PaymentProviderInput!) { setPaymentProvider(provider: $p) { id } }",
            json!({"p": {"stripe": {"endpointSecret": STRIPE_SECRET, "secretKey": "pk_live_public"}}}),
        )
        .await;
    assert_eq!(
        error_code(&bad),
        "INVALID_INPUT",
        "a publishable key is not a secret key: {bad}"
    );
    assert_eq!(w.stripe.sessions().len(), 2, "nothing more was opened");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_stripe_request_retried_after_stripe_was_down_opens_one_session_and_late_deliveries_count_by_stripe_time(
    pool: PgPool,
) {
    let w = world(pool).await;
    let order = place_order(&w.app, 25_000, "USD").await;
    let contact = w.customer().await;
    // Stripe down: UNAVAILABLE, the request stays open, nothing recorded as sent.
    w.stripe.failures.store(1, Ordering::SeqCst);
    let down = w
        .request_stripe("retry-1", json!({"orderId": order}), 25_000, &contact)
        .await;
    assert_eq!(error_code(&down), "UNAVAILABLE", "{down}");
    assert_eq!(w.count_events("PaymentRequestSent").await, 0);
    // Stripe opened the session but the answer was lost: the same call again answers it.
    w.stripe.open_first.store(true, Ordering::SeqCst);
    w.stripe.failures.store(1, Ordering::SeqCst);
    let lost = w
        .request_stripe("retry-1", json!({"orderId": order}), 25_000, &contact)
        .await;
    assert_eq!(error_code(&lost), "UNAVAILABLE", "{lost}");
    let sent = w
        .request_stripe("retry-1", json!({"orderId": order}), 25_000, &contact)
        .await;
    assert_eq!(sent["status"], "sent", "{sent}");
    assert_eq!(sent["providerRequestId"], "cs_test_1");
    assert_eq!(w.stripe.sessions().len(), 1, "one session, however many calls");

    // Another tenant's payment on a shared Stripe account is not this tenant's to count.
    let request_id = sent["id"].as_str().unwrap_or_default().to_string();
    let mut theirs = intent_succeeded("pi_theirs", 25_000, &request_id);
    theirs["data"]["object"]["metadata"]["tenant_id"] = json!("beta");
    let (body, signature) = signed(&theirs);
    let (status, answer) = w.post_stripe(&body, Some(signature)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["counted"], false, "{answer}");
    assert_eq!(w.count_events("PaymentRequestPaid").await, 0);

    // A request that expired while a payment made in time was on its way: Stripe's event time
    // decides, so it pays; one made after the expiry is kept for finance.
    let ask = |key: &str| NewPaymentRequest {
        idempotency_key: key.into(),
        target: PaymentTarget::Wallet {
            wallet_id: "main".into(),
        },
        provider: PaymentProvider::Stripe,
        amount_minor: 2_000,
        currency: "USD".into(),
        expires_at: chrono::Utc::now() + chrono::Duration::seconds(1),
        contact_id: Some(contact.clone()),
        mobile_money: None,
        message: None,
    };
    let meta = metadata();
    let short = w
        .app
        .state
        .payments
        .request_payment(ask("short-stripe"), &meta)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let paid_in_time = chrono::Utc::now().timestamp();
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let mut in_time = intent_succeeded("pi_in_time", 2_000, &short.request_id);
    in_time["created"] = json!(paid_in_time);
    let (body, signature) = signed(&in_time);
    let (_, answer) = w.post_stripe(&body, Some(signature)).await;
    assert_eq!(
        answer["status"], "matched",
        "paid before the expiry, delivered after: {answer}"
    );
    let late_request = w
        .app
        .state
        .payments
        .request_payment(ask("late-stripe"), &meta)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Whole seconds on the wire: past the expiry by more than one.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let mut late = intent_succeeded("pi_late", 2_000, &late_request.request_id);
    late["created"] = json!(chrono::Utc::now().timestamp());
    let (body, signature) = signed(&late);
    let (_, answer) = w.post_stripe(&body, Some(signature)).await;
    assert_eq!(answer["status"], "unmatched", "paid after the expiry: {answer}");
    assert_eq!(answer["unmatchedReason"], "REQUEST_EXPIRED", "{answer}");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn configured_providers_are_read_back_without_their_secrets(pool: PgPool) {
    let w = world(pool).await;
    let finance = w.app.token(TENANT, Role::Finance);
    let query = "{ paymentProviders { provider integrationId currency shortCode secrets requestable updatedAt } }";
    let (_, reply) = w.app.graphql(Some(&finance), query, json!({})).await;
    let providers = reply["data"]["paymentProviders"].clone();
    assert_eq!(
        providers,
        json!([
            {"provider": "MPESA", "integrationId": null, "currency": null, "shortCode": SHORT_CODE,
             "secrets": ["callback_secret", "consumer_key", "consumer_secret", "passkey"], "requestable": true,
             "updatedAt": providers[0]["updatedAt"]},
            {"provider": "PAYNOW", "integrationId": "1201", "currency": "USD", "shortCode": null,
             "secrets": ["integration_key"], "requestable": true, "updatedAt": providers[1]["updatedAt"]},
            {"provider": "STRIPE", "integrationId": null, "currency": null, "shortCode": null,
             "secrets": ["endpoint_secret", "secret_key"], "requestable": true, "updatedAt": providers[2]["updatedAt"]},
        ]),
        "{reply}"
    );
    assert!(providers[0]["updatedAt"].is_string(), "{providers}");
    let text = reply.to_string();
    for secret in [
        PAYNOW_KEY,
        STRIPE_SECRET,
        STRIPE_KEY,
        MPESA_SECRET,
        PASSKEY,
        CONSUMER_KEY,
        CONSUMER_SECRET,
    ] {
        assert!(!text.contains(secret), "a secret in the read-back: {secret}");
    }
    for role in [Role::Agent, Role::Technician, Role::Integrator] {
        let (_, reply) = w.app.graphql(Some(&w.app.token(TENANT, role)), query, json!({})).await;
        assert_eq!(error_code(&reply), "FORBIDDEN", "{role:?}: {reply}");
    }
}

/// `requestPayment` through Paynow as finance, Express when `mobile` is given; the whole reply.
async fn ask_paynow(w: &World, key: &str, order: &str, amount: i64, contact: &str, mobile: Option<&str>) -> Value {
    let finance = w.app.token(TENANT, Role::Finance);
    let variables = json!({"input": {"idempotencyKey": key, "provider": "PAYNOW", "target": {"orderId": order},
                                      "amountMinor": amount, "currency": "USD", "contactId": contact,
                                      "mobileMoney": mobile}});
    w.app.graphql(Some(&finance), REQUEST_STRIPE, variables).await.1
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_paynow_request_opens_a_checkout_whose_callback_delivered_five_times_pays_the_order_once(pool: PgPool) {
    let w = world(pool).await;
    let order = place_order(&w.app, 15_000, "USD").await;
    let contact = w.contact_with_phone("+263771234567").await;
    let reply = ask_paynow(&w, "pn-web", &order, 15_000, &contact, None).await;
    let receipt = reply["data"]["requestPayment"].clone();
    assert_eq!(receipt["status"], "sent", "{reply}");
    let request_id = receipt["id"].as_str().unwrap_or_default().to_string();
    // The documented initiation: the fields in Paynow's order, hashed with the integration key,
    // our request id as the reference, the result URL on this tenant's Paynow callback.
    let initiations = w.paynow.initiations();
    assert_eq!(initiations.len(), 1);
    let (path, form) = &initiations[0];
    assert_eq!(path, "initiatetransaction");
    let names: Vec<&str> = form.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "id",
            "reference",
            "amount",
            "additionalinfo",
            "returnurl",
            "resulturl",
            "status",
            "hash"
        ]
    );
    assert_eq!(field(form, "id"), Some("1201"));
    assert_eq!(field(form, "reference"), Some(request_id.as_str()));
    assert_eq!(field(form, "amount"), Some("150.00"));
    assert_eq!(field(form, "additionalinfo"), Some(format!("Order {order}").as_str()));
    assert_eq!(
        field(form, "returnurl"),
        Some(format!("{PUBLIC_URL}/payments/done").as_str())
    );
    assert_eq!(
        field(form, "resulturl"),
        Some(format!("{PUBLIC_URL}/webhooks/payments/{TENANT}/paynow").as_str())
    );
    assert_eq!(field(form, "status"), Some("Message"));
    assert_eq!(field(form, "hash"), Some(paynow_hash(form, PAYNOW_KEY).as_str()));
    // The page to send the customer, and the poll URL as the provider's id.
    assert!(
        receipt["paymentUrl"]
            .as_str()
            .is_some_and(|u| u.ends_with("/paynow/Payment/ConfirmPayment/1")),
        "{receipt}"
    );
    assert_eq!(
        receipt["providerRequestId"],
        json!(format!("{}/CheckPayment/init-1", w.paynow_base))
    );
    // A hashed callback claiming a payment Paynow's poll does not confirm counts nothing.
    let claimed = w.paynow_callback("init-1", &request_id, "PN-1", "150.00", "Paid");
    w.paynow.set_status("init-1", "Sent");
    let (status, body) = w.post_paynow(&claimed).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["counted"], false, "{body}");
    assert_eq!(w.count_events("PaymentRequestPaid").await, 0);
    // The customer pays; Paynow posts the hashed result five times; each is polled.
    let callback = w.paynow_callback("init-1", &request_id, "PN-1", "150.00", "Paid");
    for _ in 0..5 {
        let (status, body) = w.post_paynow(&callback).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "matched", "{body}");
        assert_eq!(body["matchedId"], json!(order), "{body}");
    }
    assert_eq!(w.paynow.polls.load(Ordering::SeqCst), 6);
    assert_eq!(w.payment_facts().await, (2, 1));
    assert_eq!(w.order_payments().await, 1);
    assert_eq!(w.count_events("OrderPaid").await, 1);
    assert_eq!(w.count_events("PaymentRequestPaid").await, 1);
    let finance = w.app.token(TENANT, Role::Finance);
    let (_, read) = w
        .app
        .graphql(
            Some(&finance),
            "query($id: String!) { paymentRequest(id: $id) { status providerReference paymentUrl } }",
            json!({"id": request_id}),
        )
        .await;
    assert_eq!(read["data"]["paymentRequest"]["status"], "PAID", "{read}");
    assert_eq!(read["data"]["paymentRequest"]["providerReference"], "PN-1", "{read}");
    // The same request again (same key) initiates nothing more.
    let again = ask_paynow(&w, "pn-web", &order, 15_000, &contact, None).await;
    assert_eq!(again["data"]["requestPayment"]["status"], "paid", "{again}");
    assert_eq!(w.paynow.initiations().len(), 1);
    // A second Paynow payment of the paid request (another transaction with its reference,
    // vouched for by Paynow's poll) is real money: kept for finance, never credited.
    let second = w.paynow_callback("init-9", &request_id, "PN-9", "150.00", "Paid");
    let (status, body) = w.post_paynow(&second).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "unmatched", "{body}");
    assert_eq!(body["unmatchedReason"], "REQUEST_ALREADY_PAID", "{body}");
    assert_eq!(w.order_payments().await, 1);
    // A hashed callback naming no request credits nothing.
    let stranger = w.paynow_callback(
        "init-x",
        "preq_00000000000000000000000000000000",
        "PN-X",
        "150.00",
        "Paid",
    );
    let (status, body) = w.post_paynow(&stranger).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["refused"], "NO_PAYMENT_REQUEST", "{body}");
    assert_eq!(
        w.payment_facts().await,
        (4, 2),
        "the second payment's confirmation and its unmatched"
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn paynow_express_prompts_are_polled_until_paid_or_declined_and_refusals_record_nothing(pool: PgPool) {
    use chronicle_commands::payments::expiry::RequestExpirySweeper;
    let w = world(pool).await;
    let order = place_order(&w.app, 2_500, "USD").await;
    let other_order = place_order(&w.app, 2_500, "USD").await;
    let ecocash = w.contact_with_phone("+263771111111").await;
    let onemoney = w.contact_with_phone("+263773333333").await;
    let broke = w.contact_with_phone("+263774444444").await;
    let kenyan = w.customer().await;
    // Refused before anything is recorded or sent.
    let finance = w.app.token(TENANT, Role::Finance);
    let stripe_mobile = json!({"input": {"idempotencyKey": "s-m", "provider": "STRIPE", "target": {"orderId": order},
                                          "amountMinor": 2_500, "currency": "USD", "contactId": ecocash,
                                          "mobileMoney": "ECOCASH"}});
    let (_, reply) = w.app.graphql(Some(&finance), REQUEST_STRIPE, stripe_mobile).await;
    assert_eq!(error_code(&reply), "MOBILE_MONEY_NOT_OFFERED", "{reply}");
    let reply = ask_paynow(&w, "kenyan", &order, 2_500, &kenyan, Some("ECOCASH")).await;
    assert_eq!(error_code(&reply), "INVALID_INPUT", "{reply}");
    assert_eq!(w.count_events("PaymentRequested").await, 0);
    assert!(w.paynow.initiations().is_empty());
    // An EcoCash prompt: the documented Express form, no payment page.
    let reply = ask_paynow(&w, "eco", &order, 2_500, &ecocash, Some("ECOCASH")).await;
    let receipt = reply["data"]["requestPayment"].clone();
    assert_eq!(receipt["status"], "sent", "{reply}");
    assert_eq!(receipt["paymentUrl"], Value::Null, "{receipt}");
    let (path, form) = w.paynow.initiations()[0].clone();
    assert_eq!(path, "remotetransaction");
    let names: Vec<&str> = form.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "id",
            "reference",
            "amount",
            "additionalinfo",
            "returnurl",
            "resulturl",
            "authemail",
            "phone",
            "method",
            "status",
            "hash"
        ]
    );
    assert_eq!(field(&form, "phone"), Some("0771111111"));
    assert_eq!(field(&form, "method"), Some("ecocash"));
    assert_eq!(field(&form, "authemail"), Some(PAYNOW_MERCHANT));
    assert_eq!(field(&form, "amount"), Some("25.00"));
    // A OneMoney prompt the customer will decline (asked twice at once: one prompt), and one
    // Paynow refuses at once.
    w.paynow.slow.store(300, Ordering::SeqCst);
    let (declined, twice) = tokio::join!(
        ask_paynow(&w, "one", &other_order, 2_500, &onemoney, Some("ONEMONEY")),
        ask_paynow(&w, "one", &other_order, 2_500, &onemoney, Some("ONEMONEY"))
    );
    assert_eq!(declined["data"]["requestPayment"]["status"], "sent", "{declined}");
    assert_eq!(
        twice["data"]["requestPayment"], declined["data"]["requestPayment"],
        "{twice}"
    );
    assert_eq!(w.paynow.initiations().len(), 2, "one prompt for the two calls");
    w.paynow.slow.store(0, Ordering::SeqCst);
    // Another transaction carrying its reference, declined, does not end it.
    let stray = w.paynow_callback(
        "stray",
        declined["data"]["requestPayment"]["id"].as_str().unwrap_or_default(),
        "PN-STRAY",
        "25.00",
        "Cancelled",
    );
    let (status, body) = w.post_paynow(&stray).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(w.count_events("PaymentRequestFailed").await, 0);
    let refused = ask_paynow(&w, "broke", &other_order, 2_500, &broke, Some("ECOCASH")).await;
    assert_eq!(refused["data"]["requestPayment"]["status"], "failed", "{refused}");
    // No callback comes: the sweeper polls the open requests.
    let sweeper = RequestExpirySweeper::new(w.app.state.commands.clone())
        .with_intake(w.app.state.payments.clone(), std::time::Duration::ZERO);
    w.app.project().await;
    let pass = sweeper.run_once(100).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((pass.polled, pass.retry), (2, 0), "both prompts polled, still waiting");
    assert_eq!(w.count_events("PaymentRequestPaid").await, 0);
    w.paynow.set_status("init-1", "Paid");
    w.paynow.set_status("init-2", "Cancelled");
    let pass = sweeper.run_once(100).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((pass.polled, pass.retry), (2, 0));
    assert_eq!(w.count_events("PaymentRequestPaid").await, 1);
    assert_eq!(w.count_events("PaymentRequestFailed").await, 1);
    assert_eq!(w.order_payments().await, 1);
    w.app.project().await;
    // Closed requests are polled no more.
    assert_eq!(sweeper.run_once(100).await.unwrap_or_else(|e| panic!("{e}")).polled, 0);
    let (_, read) = w
        .app
        .graphql(
            Some(&finance),
            "query($a: String!, $b: String!, $c: String!) {
               a: paymentRequest(id: $a) { status } b: paymentRequest(id: $b) { status failure }
               c: paymentRequest(id: $c) { status failure } }",
            json!({"a": receipt["id"], "b": declined["data"]["requestPayment"]["id"],
                   "c": refused["data"]["requestPayment"]["id"]}),
        )
        .await;
    assert_eq!(read["data"]["a"]["status"], "PAID", "{read}");
    assert_eq!(read["data"]["b"]["status"], "FAILED", "{read}");
    assert_eq!(read["data"]["b"]["failure"], "cancelled", "{read}");
    assert_eq!(read["data"]["c"]["status"], "FAILED", "{read}");
    assert_eq!(read["data"]["c"]["failure"], "paynow:insufficient_balance", "{read}");
    // The paid request's late callback (Paynow retries) pays nothing more.
    let callback = w.paynow_callback(
        "init-1",
        receipt["id"].as_str().unwrap_or_default(),
        "PN-1",
        "25.00",
        "Paid",
    );
    let (status, body) = w.post_paynow(&callback).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(w.order_payments().await, 1);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_sweeper_expires_a_stripe_requests_checkout_session_when_the_request_expires(pool: PgPool) {
    use chronicle_commands::payments::expiry::RequestExpirySweeper;
    let w = world(pool).await;
    let contact = w.customer().await;
    let receipt = w
        .app
        .state
        .payments
        .request_payment(
            NewPaymentRequest {
                idempotency_key: "short-stripe".into(),
                target: PaymentTarget::Wallet {
                    wallet_id: "main".into(),
                },
                provider: PaymentProvider::Stripe,
                amount_minor: 10_000,
                currency: "USD".into(),
                expires_at: chrono::Utc::now() + chrono::Duration::milliseconds(500),
                contact_id: Some(contact.clone()),
                mobile_money: None,
                message: None,
            },
            &metadata(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let session = receipt.provider_request_id.clone().unwrap_or_default();
    assert!(session.starts_with("cs_test_"), "{receipt:?}");
    let sweeper = RequestExpirySweeper::new(w.app.state.commands.clone())
        .with_intake(w.app.state.payments.clone(), std::time::Duration::ZERO);
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    w.app.project().await;
    let pass = sweeper.run_once(100).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pass.expired, 1);
    // Stripe keeps a session open 45 minutes at least: the sweeper closes it there.
    assert_eq!(
        *w.stripe.expired.lock().unwrap_or_else(|e| e.into_inner()),
        vec![session]
    );
}

/// The tenant's WhatsApp number in the messaging test.
const WA_NUMBER: &str = "555000333";

/// A loopback Graph API: accepts every message except to a number ending in 131026, which it
/// refuses as Meta does (not on WhatsApp); keeps what it was sent.
#[derive(Clone, Default)]
struct Graph {
    sent: Arc<Mutex<Vec<Value>>>,
}

async fn graph_messages(State(graph): State<Graph>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    graph.sent.lock().unwrap_or_else(|e| e.into_inner()).push(body.clone());
    let to = body["to"].as_str().unwrap_or_default();
    if to.ends_with("131026") {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"code": 131026, "message": "Message undeliverable",
                                   "error_data": {"details": "not a WhatsApp number"}}})),
        );
    }
    (StatusCode::OK, Json(json!({"messages": [{"id": wamid(to, 700)}]})))
}

impl Graph {
    fn sent(&self) -> Vec<Value> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A customer writes to the tenant's number; their contact (and conversation) id.
async fn customer_writes(app: &TestApp, phone: &str) -> String {
    let before: Vec<String> = sqlx::query_scalar("SELECT conversation_id FROM conversations")
        .fetch_all(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let body = delivery(
        WA_NUMBER,
        &[(phone, "Rudo Banda")],
        vec![text_message(
            phone,
            &wamid(phone, 1),
            chrono::Utc::now().timestamp(),
            "How do I pay?",
        )],
        vec![],
    );
    let (status, _) = app.post_delivery(&body).await;
    assert_eq!(status, StatusCode::OK);
    app.drain().await;
    app.project().await;
    let after: Vec<String> = sqlx::query_scalar("SELECT conversation_id FROM conversations")
        .fetch_all(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    after
        .into_iter()
        .find(|c| !before.contains(c))
        .unwrap_or_else(|| panic!("no new conversation"))
}

/// Submits and approves the tenant's `payment_link` template (English, three variables).
async fn approve_payment_template(app: &TestApp) {
    use chronicle_domain::template::{SubmitTemplate, TemplateCategory, TemplateCommand};
    for command in [
        TemplateCommand::SubmitTemplate(SubmitTemplate {
            name: "payment_link".into(),
            language: "en".into(),
            category: TemplateCategory::Utility,
            body: "Please pay {{1}} here: {{2}} (open until {{3}}).".into(),
            buttons: vec![],
            at: chrono::Utc::now(),
            header: None,
            footer: None,
        }),
        TemplateCommand::ApproveTemplate {
            provider_template_id: "wa-tpl-pay".into(),
            at: chrono::Utc::now(),
        },
    ] {
        app.state
            .commands
            .template("tpl_payment_link_en", command, &system_metadata(TENANT))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

async fn available_tokens(app: &TestApp) -> i64 {
    chronicle_commands::wallets::WalletService::new(app.state.commands.clone())
        .balances(&tenant(TENANT), chronicle_commands::wallets::MAIN_WALLET)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .available
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_requests_link_goes_out_on_whatsapp_metered_refunded_when_refused_and_reminded_once(pool: PgPool) {
    use chronicle_commands::metering::{features, Metering};
    use chronicle_commands::payments::expiry::RequestExpirySweeper;
    use chronicle_commands::payments::requests::NewRequestMessage;
    let w = world(pool).await;
    tenants::map_whatsapp_number(&w.app.state.pool, &tenant(TENANT), WA_NUMBER)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let graph = Graph::default();
    let graph_base = format!(
        "{}/v21.0",
        serve(
            Router::new()
                .route("/{version}/{number}/messages", post(graph_messages))
                .with_state(graph.clone())
        )
        .await
    );
    let sender = w.app.sender(&graph_base);
    let reachable = customer_writes(&w.app, "263771000009").await;
    let unreachable = customer_writes(&w.app, "263770131026").await;
    approve_payment_template(&w.app).await;
    Metering::new(w.app.state.commands.clone())
        .set_price(&tenant(TENANT), features::MESSAGE, Some(1_000), "finance-1")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let wallets = chronicle_commands::wallets::WalletService::new(w.app.state.commands.clone());
    wallets
        .ensure_main(&system_metadata(TENANT))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wallets
        .purchase(
            chronicle_commands::wallets::MAIN_WALLET,
            "fund-1",
            10_000,
            "finance",
            &system_metadata(TENANT),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let order = place_order(&w.app, 15_000, "USD").await;
    let finance = w.app.token(TENANT, Role::Finance);
    let ask = |key: &str, provider: &str, contact: &str, parameters: Value, template: &str| {
        json!({"input": {"idempotencyKey": key, "provider": provider, "target": {"orderId": order},
                          "amountMinor": 15_000, "currency": if provider == "MPESA" { "KES" } else { "USD" },
                          "contactId": contact,
                          "message": {"template": template, "language": "en", "parameters": parameters,
                                      "remindBeforeMinutes": 30}}})
    };
    let link = json!(["{amount}", "{link}", "{expires}"]);
    // Refused before anything is recorded or charged.
    let kenyan = w.customer().await;
    for (variables, expected) in [
        (
            ask("r1", "STRIPE", &reachable, link.clone(), "no_such_template"),
            "UNKNOWN_TEMPLATE",
        ),
        (
            ask("r2", "STRIPE", &reachable, json!(["{amount}"]), "payment_link"),
            "WRONG_PARAMETER_COUNT",
        ),
        (
            ask("r3", "MPESA", &kenyan, link.clone(), "payment_link"),
            "INVALID_INPUT",
        ),
        (
            ask("r4", "STRIPE", &kenyan, link.clone(), "payment_link"),
            "UNKNOWN_CONVERSATION",
        ),
    ] {
        let (_, reply) = w.app.graphql(Some(&finance), REQUEST_STRIPE, variables.clone()).await;
        assert_eq!(error_code(&reply), expected, "{variables} → {reply}");
    }
    assert_eq!(w.count_events("PaymentRequested").await, 0);
    assert!(w.stripe.sessions().is_empty());
    assert_eq!(available_tokens(&w.app).await, 10_000);

    // The link goes to a customer WhatsApp delivers to: charged once, even when asked again.
    let (_, reply) = w
        .app
        .graphql(
            Some(&finance),
            REQUEST_STRIPE,
            ask("pay-1", "STRIPE", &reachable, link.clone(), "payment_link"),
        )
        .await;
    let receipt = reply["data"]["requestPayment"].clone();
    assert_eq!(receipt["status"], "sent", "{reply}");
    let (_, again) = w
        .app
        .graphql(
            Some(&finance),
            REQUEST_STRIPE,
            ask("pay-1", "STRIPE", &reachable, link.clone(), "payment_link"),
        )
        .await;
    assert!(again.get("errors").is_none(), "{again}");
    assert_eq!(w.count_events("OutboundMessageQueued").await, 1);
    assert_eq!(w.count_events("PaymentRequestMessaged").await, 1);
    // The parameters as staff wrote them are sealed under the contact's key in the log.
    let messaged: Value = sqlx::query_scalar(
        "SELECT payload->'PaymentRequestMessaged'->'parameters' FROM events WHERE event_type = 'PaymentRequestMessaged'",
    )
    .fetch_one(&w.app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(messaged["enc"], "aes256gcm.v1", "{messaged}");
    assert!(!messaged.to_string().contains("{amount}"), "{messaged}");
    assert_eq!(available_tokens(&w.app).await, 9_000);
    w.app.project().await;
    let pass = sender.drain().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pass.failed, 0);
    let sent = graph.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["type"], "template", "{}", sent[0]);
    assert_eq!(sent[0]["template"]["name"], "payment_link");
    let texts: Vec<&str> = sent[0]["template"]["components"][0]["parameters"]
        .as_array()
        .map(|p| p.iter().filter_map(|x| x["text"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(texts.len(), 3, "{}", sent[0]);
    assert_eq!(texts[0], "USD 150.00");
    assert_eq!(Some(texts[1]), receipt["paymentUrl"].as_str());
    assert!(texts[2].ends_with(" UTC"), "{texts:?}");
    assert_eq!(available_tokens(&w.app).await, 9_000);
    let (_, read) = w
        .app
        .graphql(
            Some(&finance),
            "query($id: String!) { paymentRequest(id: $id) { messageTemplate messagedAt remindAt remindedAt } }",
            json!({"id": receipt["id"]}),
        )
        .await;
    let read = read["data"]["paymentRequest"].clone();
    assert_eq!(read["messageTemplate"], "payment_link (en)", "{read}");
    assert!(read["messagedAt"].is_string() && read["remindAt"].is_string(), "{read}");
    assert_eq!(read["remindedAt"], Value::Null);

    // A customer WhatsApp refuses (not on WhatsApp): the send is refunded.
    let (_, reply) = w
        .app
        .graphql(
            Some(&finance),
            REQUEST_STRIPE,
            ask("pay-2", "STRIPE", &unreachable, link.clone(), "payment_link"),
        )
        .await;
    assert_eq!(reply["data"]["requestPayment"]["status"], "sent", "{reply}");
    assert_eq!(available_tokens(&w.app).await, 8_000);
    w.app.project().await;
    let pass = sender.drain().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pass.failed, 1);
    assert_eq!(available_tokens(&w.app).await, 9_000);
    assert_eq!(w.count_events("TokensRefunded").await, 1);

    // A reminder before the expiry: once, metered, the same template with the same link.
    let soon = w
        .app
        .state
        .payments
        .request_payment(
            NewPaymentRequest {
                idempotency_key: "pay-soon".into(),
                target: PaymentTarget::Free {
                    description: "Deposit".into(),
                },
                provider: PaymentProvider::Stripe,
                amount_minor: 5_000,
                currency: "USD".into(),
                expires_at: chrono::Utc::now() + chrono::Duration::seconds(5),
                contact_id: Some(reachable.clone()),
                mobile_money: None,
                message: Some(NewRequestMessage {
                    template: "payment_link".into(),
                    language: "en".into(),
                    parameters: vec!["{amount}".into(), "{link}".into(), "{reference}".into()],
                    remind_before: Some(chrono::Duration::seconds(4)),
                }),
            },
            &metadata(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(available_tokens(&w.app).await, 8_000);
    let sweeper = RequestExpirySweeper::new(w.app.state.commands.clone())
        .with_intake(w.app.state.payments.clone(), std::time::Duration::from_secs(600));
    w.app.project().await;
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let pass = sweeper.run_once(100).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((pass.reminded, pass.retry), (1, 0));
    assert_eq!(w.count_events("PaymentRequestReminded").await, 1);
    assert_eq!(available_tokens(&w.app).await, 7_000);
    w.app.project().await;
    assert_eq!(
        sweeper.run_once(100).await.unwrap_or_else(|e| panic!("{e}")).reminded,
        0
    );
    sender.drain().await.unwrap_or_else(|e| panic!("{e}"));
    let sent = graph.sent();
    assert_eq!(
        sent.len(),
        4,
        "link, refused link, the soon request's link, its reminder"
    );
    let reminder_texts: Vec<&str> = sent[3]["template"]["components"][0]["parameters"]
        .as_array()
        .map(|p| p.iter().filter_map(|x| x["text"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(reminder_texts[0], "USD 50.00");
    assert_eq!(reminder_texts[2], soon.request_id);
    // The first request's reminder is not due: nothing else went out.
    assert_eq!(w.count_events("OutboundMessageQueued").await, 4);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn provider_configuration_changes_are_events_naming_who_and_which_secrets_changed_never_their_values(
    pool: PgPool,
) {
    let w = world(pool).await;
    let pool = w.app.pool.clone();
    let configured = || {
        let pool = pool.clone();
        async move {
            let rows: Vec<(String, Value)> = sqlx::query_as(
                "SELECT aggregate_id, payload->'PaymentProviderConfigured' FROM events
                  WHERE event_type = 'PaymentProviderConfigured' ORDER BY sequence",
            )
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
            rows
        }
    };
    // The world's three providers, set by the owner: each an event, secrets by name only.
    let rows = configured().await;
    let streams: Vec<&str> = rows.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        streams,
        ["acme:payprov_paynow", "acme:payprov_mpesa", "acme:payprov_stripe"]
    );
    let paynow = &rows[0].1;
    assert_eq!(paynow["provider"], "paynow");
    assert_eq!(paynow["by"], "user-1", "{paynow}");
    assert_eq!(
        paynow["settings"],
        json!({"auth_email": PAYNOW_MERCHANT, "currency": "USD", "integration_id": "1201"})
    );
    assert_eq!(paynow["secrets"], json!(["integration_key"]));
    assert_eq!(paynow["secrets_replaced"], json!(["integration_key"]));
    assert_eq!(
        rows[1].1["secrets"],
        json!(["callback_secret", "consumer_key", "consumer_secret", "passkey"])
    );
    let log: Vec<String> = sqlx::query_scalar("SELECT payload::text FROM events")
        .fetch_all(&w.app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for secret in [
        PAYNOW_KEY,
        STRIPE_SECRET,
        STRIPE_KEY,
        MPESA_SECRET,
        PASSKEY,
        CONSUMER_KEY,
        CONSUMER_SECRET,
    ] {
        assert!(log.iter().all(|p| !p.contains(secret)), "{secret} in the log");
    }
    let owner = w.app.token(TENANT, Role::Owner);
    let set = |provider: Value| {
        let (owner, app) = (owner.clone(), &w.app);
        async move {
            let (_, reply) = app
                .graphql(
                    Some(&owner),
                    "mutation($p: PaymentProviderInput!) { setPaymentProvider(provider: $p) { id } }",
                    json!({ "p": provider }),
                )
                .await;
            reply
        }
    };
    // The same again: nothing new. A new key: which secret changed. Another currency: only that.
    let same = json!({"paynow": {"integrationId": "1201", "integrationKey": PAYNOW_KEY, "currency": "USD",
                                 "authEmail": PAYNOW_MERCHANT}});
    assert!(set(same).await.get("errors").is_none());
    assert_eq!(configured().await.len(), 3);
    let rotated = json!({"paynow": {"integrationId": "1201", "integrationKey": "a-new-integration-key",
                                    "currency": "USD", "authEmail": PAYNOW_MERCHANT}});
    assert!(set(rotated).await.get("errors").is_none());
    let zwg = json!({"paynow": {"integrationId": "1201", "integrationKey": "a-new-integration-key",
                                "currency": "ZWG", "authEmail": PAYNOW_MERCHANT}});
    assert!(set(zwg).await.get("errors").is_none());
    let rows = configured().await;
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[3].1["secrets_replaced"], json!(["integration_key"]));
    assert_eq!(rows[4].1["secrets_replaced"], json!([]));
    assert_eq!(rows[4].1["settings"]["currency"], "ZWG");
    // A refused change records nothing and changes nothing.
    let bad = json!({"paynow": {"integrationId": "1201", "integrationKey": "k", "currency": "dollars"}});
    assert_eq!(error_code(&set(bad).await), "INVALID_INPUT");
    assert_eq!(configured().await.len(), 5);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_paynow_payment_found_after_the_expiry_is_kept_for_finance_not_credited(pool: PgPool) {
    use chronicle_commands::payments::expiry::RequestExpirySweeper;
    let w = world(pool).await;
    let order = place_order(&w.app, 2_500, "USD").await;
    let ecocash = w.contact_with_phone("+263771111111").await;
    let receipt = w
        .app
        .state
        .payments
        .request_payment(
            NewPaymentRequest {
                idempotency_key: "late-eco".into(),
                target: PaymentTarget::Order {
                    order_id: order.clone(),
                },
                provider: PaymentProvider::Paynow,
                amount_minor: 2_500,
                currency: "USD".into(),
                expires_at: chrono::Utc::now() + chrono::Duration::milliseconds(800),
                contact_id: Some(ecocash),
                mobile_money: Some(chronicle_domain::payment_request::MobileMoney::Ecocash),
                message: None,
            },
            &metadata(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(receipt.status.as_str(), "sent");
    let sweeper = RequestExpirySweeper::new(w.app.state.commands.clone())
        .with_intake(w.app.state.payments.clone(), std::time::Duration::ZERO);
    w.app.project().await;
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    // Not paid yet: the sweeper polls (nothing), then expires the request.
    let pass = sweeper.run_once(100).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((pass.polled, pass.expired), (1, 1), "{pass:?}");
    w.app.project().await;
    // Paid on the phone at the last moment; no callback ever comes. The sweeper polls the
    // just-expired request once more, and the request keeps the money for finance.
    w.paynow.set_status("init-1", "Paid");
    let pass = sweeper.run_once(100).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pass.polled, 1, "{pass:?}");
    assert_eq!(w.order_payments().await, 0, "nothing credited to the order");
    let reason: String = sqlx::query_scalar(
        "SELECT payload->'PaymentLeftUnmatched'->>'reason' FROM events WHERE event_type = 'PaymentLeftUnmatched'",
    )
    .fetch_one(&w.app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reason, "REQUEST_EXPIRED");
}
