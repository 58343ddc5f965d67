//! Development mode's payment provider sandboxes: stand-ins for Paynow, Safaricom Daraja
//! (M-Pesa) and Stripe, served by Chronicle itself on loopback, so a payment request runs its
//! whole loop (initiation, the customer paying, the signed callback, the confirmation) on one
//! machine with no network, as the WhatsApp sandbox ([`crate::sandbox`]) does for messages.
//!
//! On only in development mode (no `DATABASE_URL`) when none of `PAYNOW_BASE_URL`,
//! `DARAJA_BASE_URL` and `STRIPE_BASE_URL` names a real provider (each unset or `sandbox`);
//! production refuses `sandbox` at start. When on, payment requests initiate here:
//!
//! | route | answers like |
//! |---|---|
//! | `POST /sandbox/paynow/Interface/initiatetransaction` | Paynow's web checkout: a hashed `Status=Ok` with the payment page and poll URL |
//! | `POST /sandbox/paynow/Interface/remotetransaction` | Paynow Express: the customer approves on their phone 2 s later (a number ending in `3333333` declines, one ending in `4444444` has no balance and is refused at once) |
//! | `POST /sandbox/paynow/Interface/CheckPayment/{guid}` | Paynow's status poll, hashed |
//! | `GET`/`POST /sandbox/paynow/pay/{guid}` | the payment page: Pay or Cancel |
//! | `GET /sandbox/daraja/oauth/v1/generate` | Daraja's OAuth token |
//! | `POST /sandbox/daraja/mpesa/stkpush/v1/processrequest` | the STK push: the customer enters their PIN 2 s later (a number ending in `1032` cancels) |
//! | `POST /sandbox/daraja/mpesa/stkpushquery/v1/query` | the STK status query |
//! | `POST /sandbox/stripe/v1/checkout/sessions` | a Checkout Session (the same `Idempotency-Key` answers the same session) |
//! | `POST /sandbox/stripe/v1/checkout/sessions/{id}/expire` | expiring a session |
//! | `GET`/`POST /sandbox/stripe/pay/{id}` | the Checkout page: Pay |
//!
//! When the customer pays, the sandbox posts the provider's callback to Chronicle's own webhook
//! (its own origin and the path the initiation named, never another host), signed as the
//! provider signs it: Paynow's SHA-512 hash with the tenant's integration key, Stripe's
//! `Stripe-Signature` with the tenant's endpoint secret, M-Pesa's on the tenant's secret path.
//! The tenant's credentials are read as the callbacks read them; any value works, as with the
//! providers' own test modes. State lives in memory: a restart forgets open transactions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chronicle_commands::http::form::{encode_form, parse_form};
use chronicle_commands::payments::{credentials, paynow, stripe};
use chronicle_domain::tenant::TenantId;
use serde_json::{json, Value};

use crate::app::AppState;

/// The base URLs the payment intake uses when the sandboxes are on, under Chronicle's origin.
pub const PAYNOW_PATH: &str = "/sandbox/paynow/Interface";
pub const DARAJA_PATH: &str = "/sandbox/daraja";
pub const STRIPE_PATH: &str = "/sandbox/stripe";

/// How long the made-up customer takes to answer a phone prompt.
const PROMPT_DELAY: Duration = Duration::from_secs(2);

/// A Paynow transaction the sandbox opened.
#[derive(Debug, Clone)]
struct PaynowTransaction {
    tenant: String,
    reference: String,
    paynow_reference: String,
    amount: String,
    status: &'static str,
    result_path: String,
    return_url: String,
}

/// An STK push the sandbox accepted.
#[derive(Debug, Clone)]
struct StkPush {
    /// `None` while the customer has not answered; then Daraja's `ResultCode`.
    result: Option<&'static str>,
}

/// A Checkout Session the sandbox opened.
#[derive(Debug, Clone)]
struct Session {
    tenant: String,
    request_id: String,
    amount: i64,
    currency: String,
    status: &'static str,
    success_url: String,
    idempotency_key: Option<String>,
}

#[derive(Default)]
struct Books {
    paynow: HashMap<String, PaynowTransaction>,
    stk: HashMap<String, StkPush>,
    sessions: HashMap<String, Session>,
}

/// The payment sandboxes: where Chronicle is, what they opened.
#[derive(Clone)]
pub struct PaymentSandbox {
    inner: Arc<Inner>,
}

struct Inner {
    origin: String,
    http: reqwest::Client,
    books: Mutex<Books>,
    counter: AtomicU64,
}

impl std::fmt::Debug for PaymentSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentSandbox")
            .field("origin", &self.inner.origin)
            .finish_non_exhaustive()
    }
}

impl PaymentSandbox {
    /// The sandboxes of a server reached at `origin` (`http://127.0.0.1:<port>`).
    pub fn new(origin: String) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| anyhow::anyhow!("building the payment sandbox's HTTP client: {e}"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                origin,
                http,
                books: Mutex::new(Books::default()),
                counter: AtomicU64::new(0),
            }),
        })
    }

    /// Points the payment intake's providers at the sandboxes.
    pub fn configure(&self, config: &mut chronicle_commands::payments::PaymentsConfig) {
        let origin = &self.inner.origin;
        config.paynow_base_url = format!("{origin}{PAYNOW_PATH}");
        config.daraja_base_url = format!("{origin}{DARAJA_PATH}");
        config.stripe_base_url = format!("{origin}{STRIPE_PATH}");
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.inner
            .books
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn next(&self) -> u64 {
        self.inner.counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Posts a callback to Chronicle's own `path` (the host of the URL an initiation named is
    /// never called: the sandbox only ever calls the server it runs in).
    async fn call_back(&self, path: &str, content_type: &str, headers: &[(&str, String)], body: Vec<u8>) {
        let mut request = self
            .inner
            .http
            .post(format!("{}{path}", self.inner.origin))
            .header("content-type", content_type)
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => {
                tracing::warn!(status = %response.status(), "payment sandbox: Chronicle refused the callback")
            }
            // Without the URL: an M-Pesa callback path holds the tenant's secret.
            Err(e) => tracing::warn!(error = %e.without_url(), "payment sandbox: the callback could not be delivered"),
        }
    }
}

/// The routes, mounted in development mode only.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(&format!("{PAYNOW_PATH}/initiatetransaction"), post(paynow_web))
        .route(&format!("{PAYNOW_PATH}/remotetransaction"), post(paynow_express))
        .route(&format!("{PAYNOW_PATH}/CheckPayment/{{guid}}"), post(paynow_poll))
        .route("/sandbox/paynow/pay/{guid}", get(paynow_page).post(paynow_pay))
        .route(&format!("{DARAJA_PATH}/oauth/v1/generate"), get(daraja_token))
        .route(
            &format!("{DARAJA_PATH}/mpesa/stkpush/v1/processrequest"),
            post(daraja_push),
        )
        .route(
            &format!("{DARAJA_PATH}/mpesa/stkpushquery/v1/query"),
            post(daraja_query),
        )
        .route(&format!("{STRIPE_PATH}/v1/checkout/sessions"), post(stripe_session))
        .route(
            &format!("{STRIPE_PATH}/v1/checkout/sessions/{{id}}/expire"),
            post(stripe_expire),
        )
        .route("/sandbox/stripe/pay/{id}", get(stripe_page).post(stripe_pay))
}

fn off() -> Response {
    (StatusCode::NOT_FOUND, "the payment sandbox is off").into_response()
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The path of `url` (what the sandbox calls back on its own origin), if it is one of
/// Chronicle's payment webhooks; and the tenant it names.
fn webhook_path(url: &str, provider: &str) -> Option<(String, String)> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let path = parsed.path().to_string();
    let mut parts = path.trim_start_matches('/').split('/');
    let (Some("webhooks"), Some("payments"), Some(tenant), Some(named)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    (named == provider && TenantId::parse(tenant).is_ok()).then(|| (path.clone(), tenant.to_string()))
}

/// A link back to the merchant: an http(s) URL only (escaped), `#` otherwise.
fn back_link(url: &str) -> String {
    if url.starts_with("https://") || url.starts_with("http://") {
        escape(url)
    } else {
        "#".into()
    }
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body style=\"font-family: sans-serif; max-width: 32rem; margin: 3rem auto\">\
         <p><small>Chronicle's development sandbox: no real money moves.</small></p>{body}</body></html>",
        title = escape(title)
    ))
}

// Paynow

fn paynow_answer(pairs: Vec<(String, String)>, key: &str) -> Response {
    let mut pairs = pairs;
    let hash = paynow::paynow_hash(&pairs, key);
    pairs.push(("Hash".into(), hash));
    (StatusCode::OK, encode_form(&pairs)).into_response()
}

fn paynow_error(error: &str) -> Response {
    (
        StatusCode::OK,
        encode_form(&[
            ("Status".to_string(), "Error".to_string()),
            ("Error".to_string(), error.to_string()),
        ]),
    )
        .into_response()
}

async fn paynow_web(State(state): State<AppState>, body: Bytes) -> Response {
    paynow_initiate(state, body, false).await
}

async fn paynow_express(State(state): State<AppState>, body: Bytes) -> Response {
    paynow_initiate(state, body, true).await
}

async fn paynow_initiate(state: AppState, body: Bytes, express: bool) -> Response {
    let Some(sandbox) = state.payment_sandbox.clone() else {
        return off();
    };
    let Some(form) = parse_form(&body) else {
        return paynow_error("The request is not a form");
    };
    let Some((result_path, tenant)) = field(&form, "resulturl").and_then(|u| webhook_path(u, "paynow")) else {
        return paynow_error("Invalid resulturl: the sandbox calls back Chronicle's Paynow webhook only");
    };
    let Ok(tenant_id) = TenantId::parse(&tenant) else {
        return paynow_error("Invalid resulturl");
    };
    let Ok(integration) = credentials::paynow_integration(&state.pool, &state.master_key, &tenant_id).await else {
        return paynow_error("Invalid Id: the tenant has no Paynow integration");
    };
    if field(&form, "id") != Some(integration.id.as_str()) {
        return paynow_error("Invalid Id");
    }
    if paynow::verify_hash(&form, &integration.key).is_err() {
        return paynow_error("Invalid Hash");
    }
    let (Some(reference), Some(amount)) = (field(&form, "reference"), field(&form, "amount")) else {
        return paynow_error("Missing reference or amount");
    };
    let phone = field(&form, "phone").unwrap_or_default().to_string();
    if express {
        if field(&form, "authemail").is_none_or(str::is_empty) {
            return paynow_error("authemail is required for mobile transactions");
        }
        if !matches!(field(&form, "method"), Some("ecocash" | "onemoney")) {
            return paynow_error("Invalid method");
        }
        if phone.ends_with("4444444") {
            return paynow_error("Insufficient balance");
        }
    }
    let n = sandbox.next();
    let guid = format!("sbx-{n:06}-{:08x}", rand::random::<u32>());
    let paynow_reference = format!("{}", 9_000_000 + n);
    sandbox.books().paynow.insert(
        guid.clone(),
        PaynowTransaction {
            tenant: tenant.clone(),
            reference: reference.to_string(),
            paynow_reference: paynow_reference.clone(),
            amount: amount.to_string(),
            status: "Sent",
            result_path,
            return_url: field(&form, "returnurl").unwrap_or_default().to_string(),
        },
    );
    let origin = &sandbox.inner.origin;
    let mut answer = vec![("Status".to_string(), "Ok".to_string())];
    if express {
        answer.push((
            "Instructions".into(),
            "The customer approves the payment on their phone.".into(),
        ));
        answer.push(("PaynowReference".into(), paynow_reference));
        let (sandbox, guid) = (sandbox.clone(), guid.clone());
        let outcome = if phone.ends_with("3333333") {
            "Cancelled"
        } else {
            "Paid"
        };
        tokio::spawn(async move {
            tokio::time::sleep(PROMPT_DELAY).await;
            paynow_settle(&state, &sandbox, &guid, outcome).await;
        });
    } else {
        answer.push(("BrowserUrl".into(), format!("{origin}/sandbox/paynow/pay/{guid}")));
    }
    answer.push(("PollUrl".into(), format!("{origin}{PAYNOW_PATH}/CheckPayment/{guid}")));
    paynow_answer(answer, &integration.key)
}

/// The transaction's status as Paynow posts and polls it, hashed.
fn paynow_status_pairs(guid: &str, origin: &str, t: &PaynowTransaction) -> Vec<(String, String)> {
    vec![
        ("reference".into(), t.reference.clone()),
        ("paynowreference".into(), t.paynow_reference.clone()),
        ("amount".into(), t.amount.clone()),
        ("status".into(), t.status.into()),
        ("pollurl".into(), format!("{origin}{PAYNOW_PATH}/CheckPayment/{guid}")),
    ]
}

/// The customer paid or cancelled: the status changes, then Paynow posts the result.
async fn paynow_settle(state: &AppState, sandbox: &PaymentSandbox, guid: &str, outcome: &'static str) {
    let transaction = {
        let mut books = sandbox.books();
        let Some(t) = books.paynow.get_mut(guid) else {
            return;
        };
        if t.status != "Sent" {
            return;
        }
        t.status = outcome;
        t.clone()
    };
    let Ok(tenant) = TenantId::parse(&transaction.tenant) else {
        return;
    };
    let Ok(integration) = credentials::paynow_integration(&state.pool, &state.master_key, &tenant).await else {
        return;
    };
    let mut pairs = paynow_status_pairs(guid, &sandbox.inner.origin, &transaction);
    let hash = paynow::paynow_hash(&pairs, &integration.key);
    pairs.push(("hash".into(), hash));
    sandbox
        .call_back(
            &transaction.result_path,
            "application/x-www-form-urlencoded",
            &[],
            encode_form(&pairs).into_bytes(),
        )
        .await;
}

async fn paynow_poll(State(state): State<AppState>, Path(guid): Path<String>) -> Response {
    let Some(sandbox) = state.payment_sandbox.clone() else {
        return off();
    };
    let Some(transaction) = sandbox.books().paynow.get(&guid).cloned() else {
        return paynow_error("Unknown transaction");
    };
    let Ok(tenant) = TenantId::parse(&transaction.tenant) else {
        return paynow_error("Unknown transaction");
    };
    let Ok(integration) = credentials::paynow_integration(&state.pool, &state.master_key, &tenant).await else {
        return paynow_error("Invalid Id");
    };
    paynow_answer(
        paynow_status_pairs(&guid, &sandbox.inner.origin, &transaction),
        &integration.key,
    )
}

async fn paynow_page(State(state): State<AppState>, Path(guid): Path<String>) -> Response {
    let Some(sandbox) = state.payment_sandbox.clone() else {
        return off();
    };
    let Some(t) = sandbox.books().paynow.get(&guid).cloned() else {
        return (StatusCode::NOT_FOUND, page("Paynow", "<p>No such transaction.</p>")).into_response();
    };
    if t.status != "Sent" {
        return page("Paynow", &format!("<p>This transaction is {}.</p>", escape(t.status))).into_response();
    }
    page(
        "Paynow: pay",
        &format!(
            "<h1>Pay {amount}</h1><p>Reference {reference}</p><form method=\"post\">\
             <button name=\"action\" value=\"pay\">Pay</button> \
             <button name=\"action\" value=\"cancel\">Cancel</button></form>",
            amount = escape(&t.amount),
            reference = escape(&t.reference)
        ),
    )
    .into_response()
}

async fn paynow_pay(State(state): State<AppState>, Path(guid): Path<String>, body: Bytes) -> Response {
    let Some(sandbox) = state.payment_sandbox.clone() else {
        return off();
    };
    let action = parse_form(&body)
        .and_then(|f| field(&f, "action").map(str::to_string))
        .unwrap_or_default();
    let outcome = if action == "cancel" { "Cancelled" } else { "Paid" };
    if !sandbox.books().paynow.contains_key(&guid) {
        return (StatusCode::NOT_FOUND, page("Paynow", "<p>No such transaction.</p>")).into_response();
    }
    paynow_settle(&state, &sandbox, &guid, outcome).await;
    let back = sandbox
        .books()
        .paynow
        .get(&guid)
        .map(|t| t.return_url.clone())
        .unwrap_or_default();
    page(
        "Paynow",
        &format!(
            "<p>Payment {}.</p><p><a href=\"{}\">Back to the merchant</a></p>",
            outcome.to_ascii_lowercase(),
            back_link(&back)
        ),
    )
    .into_response()
}

// Daraja (M-Pesa)

async fn daraja_token(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if state.payment_sandbox.is_none() {
        return off();
    }
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Basic "));
    if !basic {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"errorCode": "401.002.01", "errorMessage": "Error Occurred - Invalid Access Token"})),
        )
            .into_response();
    }
    Json(json!({"access_token": format!("sandbox-{:016x}", rand::random::<u64>()), "expires_in": "3599"}))
        .into_response()
}

fn daraja_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"requestId": "sandbox", "errorCode": code, "errorMessage": message})),
    )
        .into_response()
}

fn bearer(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer sandbox-"))
}

async fn daraja_push(State(state): State<AppState>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let Some(sandbox) = state.payment_sandbox.clone() else {
        return off();
    };
    if !bearer(&headers) {
        return daraja_error(StatusCode::UNAUTHORIZED, "404.001.03", "Invalid Access Token");
    }
    let text = |name: &str| match &body[name] {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let (Some(_), Some(_), Some(_), Some(amount), Some(phone), Some(callback)) = (
        text("BusinessShortCode"),
        text("Password"),
        text("Timestamp"),
        body["Amount"].as_i64(),
        text("PhoneNumber"),
        text("CallBackURL"),
    ) else {
        return daraja_error(StatusCode::BAD_REQUEST, "400.002.02", "Bad Request - Invalid fields");
    };
    if amount < 1 {
        return daraja_error(StatusCode::BAD_REQUEST, "400.002.02", "Bad Request - Invalid Amount");
    }
    let Some((callback_path, _)) = webhook_path(&callback, "mpesa") else {
        return daraja_error(
            StatusCode::BAD_REQUEST,
            "400.002.02",
            "Bad Request - Invalid CallBackURL",
        );
    };
    let n = sandbox.next();
    let checkout = format!("ws_CO_SBX_{n:06}{:08x}", rand::random::<u32>());
    sandbox.books().stk.insert(checkout.clone(), StkPush { result: None });
    let cancels = phone.ends_with("1032");
    let (task_sandbox, task_checkout) = (sandbox.clone(), checkout.clone());
    tokio::spawn(async move {
        tokio::time::sleep(PROMPT_DELAY).await;
        let code = if cancels { "1032" } else { "0" };
        if let Some(push) = task_sandbox.books().stk.get_mut(&task_checkout) {
            push.result = Some(code);
        }
        let mut result = json!({"MerchantRequestID": format!("sbx-{n}"), "CheckoutRequestID": task_checkout,
                                "ResultCode": if cancels { 1032 } else { 0 },
                                "ResultDesc": if cancels { "Request cancelled by user" } else { "The service request is processed successfully." }});
        if !cancels {
            result["CallbackMetadata"] = json!({"Item": [
                {"Name": "Amount", "Value": amount},
                {"Name": "MpesaReceiptNumber", "Value": format!("SBX{n:07}")},
                {"Name": "TransactionDate", "Value": chrono::Utc::now().format("%Y%m%d%H%M%S").to_string().parse::<i64>().unwrap_or_default()},
                {"Name": "PhoneNumber", "Value": phone.parse::<i64>().unwrap_or_default()}]});
        }
        let body = json!({"Body": {"stkCallback": result}}).to_string().into_bytes();
        task_sandbox
            .call_back(&callback_path, "application/json", &[], body)
            .await;
    });
    Json(
        json!({"MerchantRequestID": format!("sbx-{n}"), "CheckoutRequestID": checkout, "ResponseCode": "0",
                "ResponseDescription": "Success. Request accepted for processing",
                "CustomerMessage": "Success. Request accepted for processing"}),
    )
    .into_response()
}

async fn daraja_query(State(state): State<AppState>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let Some(sandbox) = state.payment_sandbox.clone() else {
        return off();
    };
    if !bearer(&headers) {
        return daraja_error(StatusCode::UNAUTHORIZED, "404.001.03", "Invalid Access Token");
    }
    let id = body["CheckoutRequestID"].as_str().unwrap_or_default().to_string();
    let push = sandbox.books().stk.get(&id).cloned();
    match push {
        None => daraja_error(StatusCode::BAD_REQUEST, "400.002.02", "Bad Request - Invalid CheckoutRequestID"),
        Some(StkPush { result: None }) => daraja_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "500.001.1001",
            "The transaction is being processed",
        ),
        Some(StkPush { result: Some(code) }) => Json(json!({"ResponseCode": "0", "ResponseDescription": "The service request has been accepted successsfully",
                    "MerchantRequestID": "sandbox", "CheckoutRequestID": id, "ResultCode": code,
                    "ResultDesc": if code == "0" { "The service request is processed successfully." } else { "Request cancelled by user" }}))
        .into_response(),
    }
}

// Stripe

fn stripe_error(status: StatusCode, kind: &str, code: Option<&str>, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"type": kind, "code": code, "message": message}})),
    )
        .into_response()
}

fn session_json(id: &str, origin: &str, s: &Session) -> Value {
    json!({"id": id, "object": "checkout.session", "mode": "payment",
           "url": format!("{origin}/sandbox/stripe/pay/{id}"), "amount_total": s.amount,
           "currency": s.currency, "client_reference_id": s.request_id,
           "payment_status": if s.status == "complete" { "paid" } else { "unpaid" }, "status": s.status,
           "metadata": {"request_id": s.request_id, "tenant_id": s.tenant}})
}

async fn stripe_session(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(sandbox) = state.payment_sandbox.clone() else {
        return off();
    };
    let secret = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !(secret.starts_with("sk_") || secret.starts_with("rk_")) {
        return stripe_error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            None,
            "Invalid API Key provided",
        );
    }
    let Some(form) = parse_form(&body) else {
        return stripe_error(StatusCode::BAD_REQUEST, "invalid_request_error", None, "Invalid form");
    };
    let get = |name: &str| form.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let (Some(tenant), Some(request_id), Some(amount), Some(currency)) = (
        get("metadata[tenant_id]"),
        get("metadata[request_id]"),
        get("line_items[0][price_data][unit_amount]").and_then(|a| a.parse::<i64>().ok()),
        get("line_items[0][price_data][currency]"),
    ) else {
        return stripe_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("parameter_missing"),
            "Missing required param: line_items or metadata",
        );
    };
    if amount < 50 {
        return stripe_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("amount_too_small"),
            "The Checkout Session's total amount due must add up to at least 0.50",
        );
    }
    // As Stripe: the session is opened only with the tenant's own secret key.
    let known = match TenantId::parse(&tenant) {
        Ok(t) => credentials::stripe_secret_key(&state.pool, &state.master_key, &t)
            .await
            .ok()
            .is_some_and(|k| chronicle_domain::crypto::constant_time_eq(k.as_bytes(), secret.as_bytes())),
        Err(_) => false,
    };
    if !known {
        return stripe_error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            None,
            "Invalid API Key provided",
        );
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let origin = sandbox.inner.origin.clone();
    let mut books = sandbox.books();
    if let Some((id, s)) = books
        .sessions
        .iter()
        .find(|(_, s)| key.is_some() && s.idempotency_key == key)
    {
        return Json(session_json(id, &origin, s)).into_response();
    }
    let id = format!("cs_test_sbx_{:06}{:08x}", sandbox.next(), rand::random::<u32>());
    let session = Session {
        tenant,
        request_id,
        amount,
        currency,
        status: "open",
        success_url: get("success_url").unwrap_or_default(),
        idempotency_key: key,
    };
    let answer = session_json(&id, &origin, &session);
    books.sessions.insert(id, session);
    Json(answer).into_response()
}

async fn stripe_expire(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Some(sandbox) = state.payment_sandbox.clone() else {
        return off();
    };
    let origin = sandbox.inner.origin.clone();
    let mut books = sandbox.books();
    let Some(session) = books.sessions.get_mut(&id) else {
        return stripe_error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("resource_missing"),
            "No such checkout.session",
        );
    };
    if session.status == "complete" {
        return stripe_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            "This Checkout Session is complete and cannot be expired.",
        );
    }
    session.status = "expired";
    Json(session_json(&id, &origin, session)).into_response()
}

async fn stripe_page(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Some(sandbox) = state.payment_sandbox.clone() else {
        return off();
    };
    let Some(s) = sandbox.books().sessions.get(&id).cloned() else {
        return (StatusCode::NOT_FOUND, page("Checkout", "<p>No such session.</p>")).into_response();
    };
    if s.status != "open" {
        return page("Checkout", &format!("<p>This session is {}.</p>", escape(s.status))).into_response();
    }
    page(
        "Checkout: pay",
        &format!(
            "<h1>Pay {amount} {currency}</h1><p>(minor units)</p><form method=\"post\"><button>Pay</button></form>",
            amount = s.amount,
            currency = escape(&s.currency.to_ascii_uppercase())
        ),
    )
    .into_response()
}

/// The customer pays: the session completes, then Stripe sends `checkout.session.completed`
/// signed with the tenant's endpoint secret.
async fn stripe_pay(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Some(sandbox) = state.payment_sandbox.clone() else {
        return off();
    };
    let session = {
        let mut books = sandbox.books();
        let Some(s) = books.sessions.get_mut(&id) else {
            return (StatusCode::NOT_FOUND, page("Checkout", "<p>No such session.</p>")).into_response();
        };
        if s.status != "open" {
            return page("Checkout", &format!("<p>This session is {}.</p>", escape(s.status))).into_response();
        }
        s.status = "complete";
        s.clone()
    };
    let Ok(tenant) = TenantId::parse(&session.tenant) else {
        return off();
    };
    let Ok(secret) = credentials::stripe(&state.pool, &state.master_key, &tenant).await else {
        return page("Checkout", "<p>The merchant has no Stripe webhook secret.</p>").into_response();
    };
    let now = chrono::Utc::now().timestamp();
    let intent = format!("pi_sbx_{:08x}{:08x}", sandbox.next(), rand::random::<u32>());
    let mut object = session_json(&id, &sandbox.inner.origin, &session);
    object["payment_intent"] = json!(intent);
    let event = json!({"id": format!("evt_sbx_{:08x}", rand::random::<u32>()), "object": "event",
                       "type": "checkout.session.completed", "created": now, "data": {"object": object}});
    let body = event.to_string().into_bytes();
    let signature = stripe::sign(&secret, now, &body);
    sandbox
        .call_back(
            &format!("/webhooks/payments/{}/stripe", session.tenant),
            "application/json",
            &[("stripe-signature", signature)],
            body,
        )
        .await;
    page(
        "Checkout",
        &format!(
            "<p>Paid.</p><p><a href=\"{}\">Back to the merchant</a></p>",
            back_link(&session.success_url)
        ),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callbacks_go_only_to_chronicles_own_payment_webhooks() {
        assert_eq!(
            webhook_path("https://chronicle.example/webhooks/payments/acme/paynow", "paynow"),
            Some(("/webhooks/payments/acme/paynow".to_string(), "acme".to_string()))
        );
        assert_eq!(
            webhook_path(
                "http://127.0.0.1:8080/webhooks/payments/acme/mpesa/secret-0123456789abcdef",
                "mpesa"
            )
            .map(|(_, t)| t),
            Some("acme".to_string())
        );
        assert_eq!(webhook_path("http://evil.example/steal", "paynow"), None);
        assert_eq!(webhook_path("http://x/webhooks/payments/acme/stripe", "paynow"), None);
        assert_eq!(webhook_path("not a url", "paynow"), None);
    }

    #[test]
    fn back_links_are_http_only() {
        assert_eq!(back_link("javascript:alert(1)"), "#");
        assert_eq!(
            back_link("https://c.example/payments/done"),
            "https://c.example/payments/done"
        );
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }
}
