//! GraphQL over HTTP by the GraphQL Foundation's specification (issue 12), through a real HTTP
//! client against the served app.
//!
//! `the_graphql_over_http_audits_pass` runs the Foundation's published server audits
//! (graphql-http, `src/audits/server.ts`: every audit, its id, level and check, ported one
//! for one since CI has no Node) with a valid token, and fails on any MUST or SHOULD that does
//! not hold. The other tests cover what the audits do not reach: authentication failures, 405,
//! 406, 413, 415, variable coercion and the codes of request errors.

use chronicle_api::auth::Role;
use chronicle_tests::TestApp;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE};
use reqwest::Method;
use serde_json::{json, Value};

const GRJ: &str = "application/graphql-response+json";
const JSON: &str = "application/json";

/// What an audit checks of the response.
#[derive(Debug, Clone)]
enum Expect {
    /// This status.
    Status(u16),
    /// A status in this range.
    Between(u16, u16),
    /// 200 and a content type containing this.
    OkContentType(&'static str),
    /// 200 and a body that is UTF-8.
    OkUtf8,
    /// 200 and an `errors` entry.
    OkErrors,
    /// 200 and no `errors` entry.
    OkNoErrors,
    /// An `errors` entry when the response is JSON, else 400 (7267).
    ErrorsOr400,
    /// No `data` entry.
    NoData,
}

/// One audit: its id, level and wording, the request, the check.
#[derive(Debug, Clone)]
struct Audit {
    id: String,
    text: String,
    method: Method,
    accept: Option<&'static str>,
    content_type: Option<&'static str>,
    /// The body, as text (not always JSON).
    body: Option<String>,
    /// URL parameters (GET).
    params: Vec<(&'static str, String)>,
    expect: Expect,
}

fn post(id: &str, text: &str, accept: Option<&'static str>, body: Value, expect: Expect) -> Audit {
    Audit {
        id: id.into(),
        text: text.into(),
        method: Method::POST,
        accept,
        content_type: Some(JSON),
        body: Some(body.to_string()),
        params: vec![],
        expect,
    }
}

fn get(
    id: &str,
    text: &str,
    accept: Option<&'static str>,
    params: Vec<(&'static str, String)>,
    expect: Expect,
) -> Audit {
    Audit {
        id: id.into(),
        text: text.into(),
        method: Method::GET,
        accept,
        content_type: None,
        body: None,
        params,
        expect,
    }
}

/// The `extendedTypeof` of graphql-http's audit names.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Object(_) => "object",
        Value::Number(_) => "number",
        Value::Bool(_) => "boolean",
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Null => "null",
    }
}

/// Every server audit of graphql-http, in its order.
fn audits() -> Vec<Audit> {
    let typename = json!({ "query": "{ __typename }" });
    let invalid_maps = [json!({"obj": "ect"}), json!(0), json!(false), json!(["array"])];
    let invalid_objects = [json!("string"), json!(0), json!(false), json!(["array"])];
    let type_query = "query Type($name: String!) { __type(name: $name) { name } }";
    let missing_field = json!({ "query": "{ 8f31403dfe404bccbb0e835f2629c6a7 }" });
    let typo = json!({ "qeury": "{ __typename }" });
    let mut all = vec![
        // Media types
        post(
            "22EB",
            "SHOULD accept application/graphql-response+json and match the content-type",
            Some(GRJ),
            typename.clone(),
            Expect::OkContentType(GRJ),
        ),
        post(
            "4655",
            "MUST accept application/json and match the content-type",
            Some(JSON),
            typename.clone(),
            Expect::OkContentType(JSON),
        ),
        post(
            "47DE",
            "SHOULD accept */* and use application/json for the content-type",
            Some("*/*"),
            typename.clone(),
            Expect::OkContentType(JSON),
        ),
        get(
            "80D8",
            "SHOULD assume application/json content-type when accept is missing",
            None,
            vec![("query", "{ __typename }".into())],
            Expect::OkContentType(JSON),
        ),
        post(
            "82A3",
            "MUST use utf-8 encoding when responding",
            None,
            typename.clone(),
            Expect::OkUtf8,
        ),
        Audit {
            content_type: Some("application/json; charset=utf-8"),
            ..post(
                "BF61",
                "MUST accept utf-8 encoded request",
                None,
                typename.clone(),
                Expect::Status(200),
            )
        },
        post(
            "78D5",
            "MUST assume utf-8 in request if encoding is unspecified",
            None,
            typename.clone(),
            Expect::Status(200),
        ),
        // Request
        post(
            "2C94",
            "MUST accept POST requests",
            None,
            typename.clone(),
            Expect::Status(200),
        ),
        get(
            "5A70",
            "MAY accept application/x-www-form-urlencoded formatted GET requests",
            None,
            vec![("query", "{ __typename }".into())],
            Expect::Status(200),
        ),
        // Request GET
        get(
            "9C48",
            "MAY NOT allow executing mutations on GET requests",
            Some(GRJ),
            vec![("query", "mutation { __typename }".into())],
            Expect::Between(400, 499),
        ),
        // Request POST
        Audit {
            content_type: None,
            body: None,
            ..post(
                "9ABE",
                "SHOULD respond with 4xx status code if content-type is not supplied on POST requests",
                None,
                json!(null),
                Expect::Between(400, 499),
            )
        },
        post(
            "03D4",
            "MUST accept application/json POST requests",
            None,
            typename.clone(),
            Expect::Status(200),
        ),
        Audit {
            body: None,
            ..post(
                "7267",
                "MUST require a request body on POST",
                None,
                json!(null),
                Expect::ErrorsOr400,
            )
        },
        // Request parameters
        post(
            "6610",
            "SHOULD use 400 status code on missing {query} parameter when accepting application/graphql-response+json",
            Some(GRJ),
            json!({"notquery": "{ __typename }"}),
            Expect::Status(400),
        ),
        post(
            "3715",
            "SHOULD use 200 status code with errors field on missing {query} parameter when accepting application/json",
            Some(JSON),
            json!({"notquery": "{ __typename }"}),
            Expect::OkErrors,
        ),
    ];
    for (i, invalid) in invalid_maps.iter().enumerate() {
        all.push(post(
            &format!("4F5{i}"),
            &format!(
                "SHOULD use 400 status code on {} {{query}} parameter when accepting application/graphql-response+json",
                type_name(invalid)
            ),
            Some(GRJ),
            json!({"query": invalid}),
            Expect::Status(400),
        ));
    }
    for (i, invalid) in invalid_maps.iter().enumerate() {
        all.push(post(&format!("9FE{i}"), &format!("SHOULD use 200 status code with errors field on {} {{query}} parameter when accepting application/json", type_name(invalid)), Some(JSON), json!({"query": invalid}), Expect::OkErrors));
    }
    all.push(post(
        "34A2",
        "SHOULD allow string {query} parameter when accepting application/graphql-response+json",
        Some(GRJ),
        typename.clone(),
        Expect::Status(200),
    ));
    all.push(post(
        "13EE",
        "MUST allow string {query} parameter when accepting application/json",
        Some(JSON),
        typename.clone(),
        Expect::OkNoErrors,
    ));
    for (i, invalid) in invalid_maps.iter().enumerate() {
        all.push(post(&format!("E3E{i}"), &format!("SHOULD use 400 status code on {} {{operationName}} parameter when accepting application/graphql-response+json", type_name(invalid)), Some(GRJ), json!({"operationName": invalid, "query": "{ __typename }"}), Expect::Status(400)));
    }
    for (i, invalid) in invalid_maps.iter().enumerate() {
        all.push(post(&format!("FB9{i}"), &format!("SHOULD use 200 status code with errors field on {} {{operationName}} parameter when accepting application/json", type_name(invalid)), Some(JSON), json!({"operationName": invalid, "query": "{ __typename }"}), Expect::OkErrors));
    }
    all.push(post(
        "8161",
        "SHOULD allow string {operationName} parameter when accepting application/graphql-response+json",
        Some(GRJ),
        json!({"operationName": "Query", "query": "query Query { __typename }"}),
        Expect::Status(200),
    ));
    all.push(post(
        "B8B3",
        "MUST allow string {operationName} parameter when accepting application/json",
        Some(JSON),
        json!({"operationName": "Query", "query": "query Query { __typename }"}),
        Expect::OkNoErrors,
    ));
    for (i, parameter) in ["variables", "operationName", "extensions"].iter().enumerate() {
        let body = json!({"query": "{ __typename }", *parameter: null});
        all.push(post(
            &format!("94B{i}"),
            &format!("SHOULD allow null {{{parameter}}} parameter when accepting application/graphql-response+json"),
            Some(GRJ),
            body.clone(),
            Expect::OkNoErrors,
        ));
        all.push(post(
            &format!("022{i}"),
            &format!("MUST allow null {{{parameter}}} parameter when accepting application/json"),
            Some(JSON),
            body,
            Expect::OkNoErrors,
        ));
    }
    for (i, invalid) in invalid_objects.iter().enumerate() {
        all.push(post(&format!("69B{i}"), &format!("SHOULD use 400 status code on {} {{variables}} parameter when accepting application/graphql-response+json", type_name(invalid)), Some(GRJ), json!({"query": "{ __typename }", "variables": invalid}), Expect::Status(400)));
    }
    for (i, invalid) in invalid_objects.iter().enumerate() {
        all.push(post(&format!("F05{i}"), &format!("SHOULD use 200 status code with errors field on {} {{variables}} parameter when accepting application/json", type_name(invalid)), Some(JSON), json!({"query": "{ __typename }", "variables": invalid}), Expect::OkErrors));
    }
    all.push(post(
        "2EA1",
        "SHOULD allow map {variables} parameter when accepting application/graphql-response+json",
        Some(GRJ),
        json!({"query": type_query, "variables": {"name": "sometype"}}),
        Expect::Status(200),
    ));
    all.push(post(
        "28B9",
        "MUST allow map {variables} parameter when accepting application/json",
        Some(JSON),
        json!({"query": type_query, "variables": {"name": "sometype"}}),
        Expect::OkNoErrors,
    ));
    let get_variables = vec![
        ("query", type_query.to_string()),
        ("variables", json!({"name": "sometype"}).to_string()),
    ];
    all.push(get("D6D5", "MAY allow URL-encoded JSON string {variables} parameter in GETs when accepting application/graphql-response+json", Some(GRJ), get_variables.clone(), Expect::Status(200)));
    all.push(get(
        "6A70",
        "MAY allow URL-encoded JSON string {variables} parameter in GETs when accepting application/json",
        Some(JSON),
        get_variables,
        Expect::OkNoErrors,
    ));
    for (i, invalid) in invalid_objects.iter().enumerate() {
        all.push(post(&format!("904{i}"), &format!("SHOULD use 400 status code on {} {{extensions}} parameter when accepting application/graphql-response+json", type_name(invalid)), Some(GRJ), json!({"query": "{ __typename }", "extensions": invalid}), Expect::Status(400)));
    }
    for (i, invalid) in invalid_objects.iter().enumerate() {
        all.push(post(&format!("368{i}"), &format!("SHOULD use 200 status code with errors field on {} {{extensions}} parameter when accepting application/json", type_name(invalid)), Some(JSON), json!({"query": "{ __typename }", "extensions": invalid}), Expect::OkErrors));
    }
    all.push(post(
        "428F",
        "SHOULD allow map {extensions} parameter when accepting application/graphql-response+json",
        Some(GRJ),
        json!({"query": "{ __typename }", "extensions": {"some": "value"}}),
        Expect::Status(200),
    ));
    all.push(post(
        "1B7A",
        "MUST allow map {extensions} parameter when accepting application/json",
        Some(JSON),
        json!({"query": "{ __typename }", "extensions": {"some": "value"}}),
        Expect::OkNoErrors,
    ));
    // Response application/json
    let not_json = |id: &str, text: &str, accept, expect| Audit {
        body: Some("{ \"not a JSON".into()),
        ..post(id, text, accept, json!(null), expect)
    };
    all.push(not_json(
        "D477",
        "SHOULD use 200 status code on JSON parsing failure when accepting application/json",
        Some(JSON),
        Expect::Status(200),
    ));
    all.push(post(
        "F5AF",
        "SHOULD use 200 status code if parameters are invalid when accepting application/json",
        Some(JSON),
        typo.clone(),
        Expect::Status(200),
    ));
    all.push(post(
        "572B",
        "SHOULD use 200 status code on document parsing failure when accepting application/json",
        Some(JSON),
        json!({"query": "{"}),
        Expect::Status(200),
    ));
    all.push(post(
        "FDE2",
        "SHOULD use 200 status code on document validation failure when accepting application/json",
        Some(JSON),
        missing_field.clone(),
        Expect::Status(200),
    ));
    // Response application/graphql-response+json
    all.push(not_json(
        "60AA",
        "SHOULD use 4xx or 5xx status codes on JSON parsing failure when accepting application/graphql-response+json",
        Some(GRJ),
        Expect::Between(400, 499),
    ));
    all.push(not_json(
        "2163",
        "SHOULD use 400 status code on JSON parsing failure when accepting application/graphql-response+json",
        Some(GRJ),
        Expect::Status(400),
    ));
    all.push(post(
        "3E36",
        "SHOULD use 4xx or 5xx status codes if parameters are invalid when accepting application/graphql-response+json",
        Some(GRJ),
        typo.clone(),
        Expect::Between(400, 599),
    ));
    all.push(post(
        "17C5",
        "SHOULD use 400 status code if parameters are invalid when accepting application/graphql-response+json",
        Some(GRJ),
        typo.clone(),
        Expect::Status(400),
    ));
    all.push(post(
        "34D6",
        "SHOULD not contain the data entry if parameters are invalid when accepting application/graphql-response+json",
        Some(GRJ),
        typo,
        Expect::NoData,
    ));
    all.push(post("865D", "SHOULD use 4xx or 5xx status codes on document parsing failure when accepting application/graphql-response+json", Some(GRJ), json!({"query": "{"}), Expect::Between(400, 599)));
    all.push(post(
        "556A",
        "SHOULD use 400 status code on document parsing failure when accepting application/graphql-response+json",
        Some(GRJ),
        json!({"query": "{"}),
        Expect::Status(400),
    ));
    all.push(post("D586", "SHOULD not contain the data entry on document parsing failure when accepting application/graphql-response+json", Some(GRJ), json!({"query": "{"}), Expect::NoData));
    all.push(post("51FE", "SHOULD use 4xx or 5xx status codes on document validation failure when accepting application/graphql-response+json", Some(GRJ), missing_field.clone(), Expect::Between(400, 599)));
    all.push(post(
        "74FF",
        "SHOULD use 400 status code on document validation failure when accepting application/graphql-response+json",
        Some(GRJ),
        missing_field.clone(),
        Expect::Status(400),
    ));
    all.push(post("5E5B", "SHOULD not contain the data entry on document validation failure when accepting application/graphql-response+json", Some(GRJ), missing_field, Expect::NoData));
    all
}

/// A response as the audits see it.
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn content_type(&self) -> String {
        self.headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }

    fn json(&self) -> Option<serde_json::Map<String, Value>> {
        match serde_json::from_slice(&self.body) {
            Ok(Value::Object(map)) => Some(map),
            _ => None,
        }
    }
}

async fn send(http: &reqwest::Client, url: &str, token: Option<&str>, audit: &Audit) -> Reply {
    let mut request = if audit.method == Method::GET {
        http.get(url).query(&audit.params)
    } else {
        http.request(audit.method.clone(), url)
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(accept) = audit.accept {
        request = request.header(ACCEPT, accept);
    }
    if let Some(content_type) = audit.content_type {
        request = request.header(CONTENT_TYPE, content_type);
    }
    if let Some(body) = &audit.body {
        request = request.body(body.clone());
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("{}: {e}", audit.id));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap_or_default().to_vec();
    Reply { status, headers, body }
}

/// Whether the reply passes the audit; `Err` says how it failed.
fn check(audit: &Audit, reply: &Reply) -> Result<(), String> {
    let status = |want: u16| {
        if reply.status == want {
            Ok(())
        } else {
            Err(format!("status {} (want {want})", reply.status))
        }
    };
    let has_errors = || reply.json().is_some_and(|b| b.contains_key("errors"));
    match &audit.expect {
        Expect::Status(want) => status(*want),
        Expect::Between(lo, hi) if (*lo..=*hi).contains(&reply.status) => Ok(()),
        Expect::Between(lo, hi) => Err(format!("status {} (want {lo}–{hi})", reply.status)),
        Expect::OkContentType(want) => {
            status(200)?;
            if reply.content_type().contains(want) {
                Ok(())
            } else {
                Err(format!("content type {:?} (want {want})", reply.content_type()))
            }
        }
        Expect::OkUtf8 => {
            status(200)?;
            std::str::from_utf8(&reply.body)
                .map(|_| ())
                .map_err(|_| "body is not UTF-8".into())
        }
        Expect::OkErrors => {
            status(200)?;
            if has_errors() {
                Ok(())
            } else {
                Err("no errors entry".into())
            }
        }
        Expect::OkNoErrors => {
            status(200)?;
            if reply.json().is_some() && !has_errors() {
                Ok(())
            } else {
                Err(format!("errors: {}", String::from_utf8_lossy(&reply.body)))
            }
        }
        Expect::ErrorsOr400 => {
            if reply.content_type().contains("application/json") {
                if has_errors() {
                    Ok(())
                } else {
                    Err("no errors entry".into())
                }
            } else {
                status(400)
            }
        }
        Expect::NoData => match reply.json() {
            Some(body) if !body.contains_key("data") => Ok(()),
            _ => Err(format!("a data entry: {}", String::from_utf8_lossy(&reply.body))),
        },
    }
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_graphql_over_http_audits_pass(pool: sqlx::PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "15550001111").await;
    let url = format!("http://{}/graphql", app.serve().await);
    let token = app.token("acme", Role::Owner);
    let http = reqwest::Client::new();
    let audits = audits();
    assert_eq!(audits.len(), 78, "every audit of graphql-http's server.ts");
    let mut failures = Vec::new();
    for audit in &audits {
        let reply = send(&http, &url, Some(&token), audit).await;
        if let Err(why) = check(audit, &reply) {
            failures.push(format!("{} {}: {why}", audit.id, audit.text));
        }
    }
    assert!(failures.is_empty(), "failed audits:\n{}", failures.join("\n"));
}

/// A request of the tests below.
fn request(method: Method, accept: Option<&'static str>, body: Option<Value>) -> Audit {
    Audit {
        id: "-".into(),
        text: String::new(),
        method,
        accept,
        content_type: Some(JSON),
        body: body.map(|b| b.to_string()),
        params: vec![],
        expect: Expect::Status(200),
    }
}

fn errors_of(reply: &Reply) -> Vec<Value> {
    reply
        .json()
        .and_then(|b| b.get("errors").cloned())
        .and_then(|e| e.as_array().cloned())
        .unwrap_or_default()
}

fn code_of(reply: &Reply) -> String {
    errors_of(reply)
        .first()
        .and_then(|e| e["extensions"]["code"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn authentication_failures_are_graphql_errors_with_a_challenge(pool: sqlx::PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "15550001111").await;
    let url = format!("http://{}/graphql", app.serve().await);
    let http = reqwest::Client::new();
    let query = json!({"query": "{ viewer { tenantId } }"});
    for accept in [None, Some(JSON), Some(GRJ)] {
        // No token.
        let reply = send(&http, &url, None, &request(Method::POST, accept, Some(query.clone()))).await;
        assert_eq!(reply.status, 401);
        assert_eq!(code_of(&reply), "UNAUTHENTICATED");
        assert!(!reply.json().is_some_and(|b| b.contains_key("data")));
        assert_eq!(
            reply.headers.get("www-authenticate").and_then(|v| v.to_str().ok()),
            Some(r#"Bearer realm="chronicle""#)
        );
        assert!(
            reply.content_type().contains(accept.unwrap_or(JSON)),
            "{}",
            reply.content_type()
        );
        // A token that is not ours: the challenge says why, the message has no type names.
        let forged = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4IiwiZXhwIjo5OTk5OTk5OTk5fQ.c2lnbmF0dXJl";
        let reply = send(
            &http,
            &url,
            Some(forged),
            &request(Method::POST, accept, Some(query.clone())),
        )
        .await;
        assert_eq!(reply.status, 401);
        assert_eq!(code_of(&reply), "UNAUTHENTICATED");
        assert_eq!(
            reply.headers.get("www-authenticate").and_then(|v| v.to_str().ok()),
            Some(r#"Bearer realm="chronicle", error="invalid_token""#)
        );
        let message = errors_of(&reply)[0]["message"].as_str().unwrap_or_default().to_string();
        assert!(message.starts_with("the access token"), "{message}");
        // Over GET too.
        let mut get = request(Method::GET, accept, None);
        get.params = vec![("query", "{ viewer { tenantId } }".into())];
        let reply = send(&http, &url, None, &get).await;
        assert_eq!(reply.status, 401);
        assert_eq!(code_of(&reply), "UNAUTHENTICATED");
    }
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn methods_media_types_and_sizes_are_refused_by_the_specification(pool: sqlx::PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "15550001111").await;
    let url = format!("http://{}/graphql", app.serve().await);
    let token = app.token("acme", Role::Owner);
    let http = reqwest::Client::new();

    // A mutation over GET: 405 with Allow: POST, whichever media type.
    for accept in [Some(JSON), Some(GRJ)] {
        let mut get = request(Method::GET, accept, None);
        get.params = vec![(
            "query",
            "mutation { addConversationTag(conversationId: \"x\", tag: \"y\") { cursor } }".into(),
        )];
        let reply = send(&http, &url, Some(&token), &get).await;
        assert_eq!(reply.status, 405);
        assert_eq!(code_of(&reply), "METHOD_NOT_ALLOWED");
        assert_eq!(reply.headers.get("allow").and_then(|v| v.to_str().ok()), Some("POST"));
    }
    // A query over GET runs (and a named query chosen by operationName).
    let mut get = request(Method::GET, Some(GRJ), None);
    get.params = vec![
        (
            "query",
            "query A { viewer { tenantId } } mutation B { __typename }".into(),
        ),
        ("operationName", "A".into()),
    ];
    let reply = send(&http, &url, Some(&token), &get).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json().map(|b| b["data"]["viewer"]["tenantId"].clone()),
        Some(json!("acme"))
    );
    // Other methods: 405, Allow: GET, POST.
    let reply = send(
        &http,
        &url,
        Some(&token),
        &request(Method::PUT, None, Some(json!({"query": "{ __typename }"}))),
    )
    .await;
    assert_eq!(reply.status, 405);
    assert_eq!(
        reply.headers.get("allow").and_then(|v| v.to_str().ok()),
        Some("GET, POST")
    );
    assert_eq!(code_of(&reply), "METHOD_NOT_ALLOWED");

    // 415 for anything but JSON in UTF-8.
    for content_type in ["text/plain", "application/graphql", "application/json; charset=latin1"] {
        let mut post = request(Method::POST, Some(GRJ), Some(json!({"query": "{ __typename }"})));
        post.content_type = Some(content_type);
        let reply = send(&http, &url, Some(&token), &post).await;
        assert_eq!(reply.status, 415, "{content_type}");
        assert_eq!(code_of(&reply), "UNSUPPORTED_MEDIA_TYPE");
    }
    // 406 when neither media type is acceptable (answered in application/json).
    let reply = send(
        &http,
        &url,
        Some(&token),
        &request(
            Method::POST,
            Some("text/html"),
            Some(json!({"query": "{ __typename }"})),
        ),
    )
    .await;
    assert_eq!(reply.status, 406);
    assert_eq!(code_of(&reply), "NOT_ACCEPTABLE");
    assert!(reply.content_type().starts_with(JSON));

    // 413 over the limit, in the errors shape.
    let huge =
        json!({"query": "{ __typename }", "padding": "x".repeat(chronicle_api::http::graphql::MAX_GRAPHQL_BODY_BYTES)});
    let reply = send(&http, &url, Some(&token), &request(Method::POST, Some(GRJ), Some(huge))).await;
    assert_eq!(reply.status, 413);
    assert_eq!(code_of(&reply), "PAYLOAD_TOO_LARGE");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn request_errors_have_codes_and_messages_for_people(pool: sqlx::PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "15550001111").await;
    let url = format!("http://{}/graphql", app.serve().await);
    let token = app.token("acme", Role::Owner);
    let http = reqwest::Client::new();
    let cases = [
        (json!({"query": "{"}), "GRAPHQL_PARSE_FAILED"),
        (json!({"query": "{ noSuchField }"}), "GRAPHQL_VALIDATION_FAILED"),
        // Variables that do not coerce.
        (
            json!({"query": "query($n: Int) { conversations(first: $n) { edges { cursor } } }", "variables": {"n": "many"}}),
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            json!({"query": "{ __typename }", "variables": ["array"]}),
            "BAD_REQUEST",
        ),
        (json!([{"query": "{ __typename }"}]), "BAD_REQUEST"),
    ];
    for (body, code) in cases {
        let reply = send(
            &http,
            &url,
            Some(&token),
            &request(Method::POST, Some(GRJ), Some(body.clone())),
        )
        .await;
        assert_eq!(reply.status, 400, "{body}");
        assert_eq!(code_of(&reply), code, "{body}");
        assert!(!reply.json().is_some_and(|b| b.contains_key("data")), "{body}");
        let text = String::from_utf8_lossy(&reply.body).to_string();
        for rust in ["Some(", "InvalidRequest", "untagged enum", "Error("] {
            assert!(!text.contains(rust), "{text}");
        }
        // The same in application/json: 200, the same errors.
        let reply = send(
            &http,
            &url,
            Some(&token),
            &request(Method::POST, Some(JSON), Some(body.clone())),
        )
        .await;
        assert_eq!(reply.status, 200, "{body}");
        assert_eq!(code_of(&reply), code, "{body}");
    }
    // A field error is not a request error: 200 and data, whichever the media type.
    let technician = app.token("acme", Role::Technician);
    let reply = send(
        &http,
        &url,
        Some(&technician),
        &request(
            Method::POST,
            Some(GRJ),
            Some(json!({"query": "{ viewer { tenantId } conversations(first: 1) { edges { cursor } } }"})),
        ),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(code_of(&reply), "FORBIDDEN");
    assert!(reply.json().is_some_and(|b| b.contains_key("data")));
    // A consistency requirement that is not met: 503 CONSISTENCY_TIMEOUT in the new media type.
    let mut waiting = request(
        Method::POST,
        Some(GRJ),
        Some(json!({"query": "{ conversations(first: 1) { edges { cursor } } }"})),
    );
    waiting.body = Some(
        json!({"query": "{ conversations(first: 1) { edges { cursor } } }", "extensions": {"consistency": {"atLeast": chronicle_projections::log::Cursor::new(u64::MAX >> 2, i64::MAX).to_string(), "timeoutMs": 50}}})
            .to_string(),
    );
    let reply = send(&http, &url, Some(&token), &waiting).await;
    assert_eq!(reply.status, 503, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(code_of(&reply), "CONSISTENCY_TIMEOUT");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_browser_asking_for_a_page_gets_graphiql_and_a_client_gets_json(pool: sqlx::PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "15550001111").await;
    let url = format!("http://{}/graphql", app.serve().await);
    let http = reqwest::Client::new();
    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let page = send(&http, &url, None, &request(Method::GET, Some(browser), None)).await;
    assert_eq!(page.status, 200);
    assert!(page.content_type().starts_with("text/html"), "{}", page.content_type());
    // A plain GET (curl, a link) without a query gets the page too.
    let plain = send(&http, &url, None, &request(Method::GET, None, None)).await;
    assert!(
        plain.content_type().starts_with("text/html"),
        "{}",
        plain.content_type()
    );
    // With a query the same Accept gets the result (application/json through */*).
    let mut get = request(Method::GET, Some(browser), None);
    get.params = vec![("query", "{ viewer { tenantId } }".into())];
    let reply = send(&http, &url, Some(&app.token("acme", Role::Owner)), &get).await;
    assert_eq!(reply.status, 200);
    assert!(reply.content_type().starts_with(JSON), "{}", reply.content_type());
    // A client asking for JSON without a query: a request error, not the page.
    let reply = send(
        &http,
        &url,
        Some(&app.token("acme", Role::Owner)),
        &request(Method::GET, Some(GRJ), None),
    )
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(code_of(&reply), "BAD_REQUEST");
}
