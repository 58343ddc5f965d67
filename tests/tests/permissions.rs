//! The permission table, generated into calls (issue 14): every mutation of the schema is in
//! `chronicle_api::permissions::MUTATIONS`, and every mutation called by every role answers
//! what the table says: `FORBIDDEN` for a role without the mutation's permissions, anything
//! else (success, or a refusal of the made-up input) for a role with them. Arguments are made
//! up from the schema's own types, so a new mutation is covered the day it is added.

use std::collections::BTreeSet;

use chronicle_api::auth::Role;
use chronicle_api::permissions::{may_read, may_run, MUTATIONS, NARROWED, QUERIES};
use chronicle_tests::{error_code, error_message, TestApp};
use serde_json::{json, Map, Value};

const ROLES: [Role; 7] = [
    Role::Owner,
    Role::Admin,
    Role::Agent,
    Role::Technician,
    Role::Finance,
    Role::Auditor,
    Role::Integrator,
];

const TYPE_REF: &str = "kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } }";

/// The schema's types by name.
async fn schema_types(app: &TestApp) -> Map<String, Value> {
    let query = format!(
        "{{ __schema {{ mutationType {{ fields {{ name type {{ {TYPE_REF} }} args {{ name type {{ {TYPE_REF} }} }} }} }}
            queryType {{ fields {{ name type {{ {TYPE_REF} }} args {{ name type {{ {TYPE_REF} }} }} }} }}
            types {{ kind name enumValues {{ name }} inputFields {{ name type {{ {TYPE_REF} }} }} }} }} }}"
    );
    let reply = app.gql("acme", Role::Owner, &query, json!({})).await;
    let schema = &reply["data"]["__schema"];
    let mut types = Map::new();
    for t in schema["types"].as_array().into_iter().flatten() {
        types.insert(t["name"].as_str().unwrap_or_default().to_string(), t.clone());
    }
    types.insert("__mutations".into(), schema["mutationType"]["fields"].clone());
    types.insert("__queries".into(), schema["queryType"]["fields"].clone());
    types
}

/// A type reference as GraphQL writes it (`[String!]!`).
fn type_string(t: &Value) -> String {
    match t["kind"].as_str() {
        Some("NON_NULL") => format!("{}!", type_string(&t["ofType"])),
        Some("LIST") => format!("[{}]", type_string(&t["ofType"])),
        _ => t["name"].as_str().unwrap_or_default().to_string(),
    }
}

/// A made-up value of a (non-null) type: the first enum value, every required field of an
/// input object, an empty list, and plain values for scalars.
fn made_up(t: &Value, types: &Map<String, Value>) -> Value {
    match t["kind"].as_str() {
        Some("NON_NULL") => made_up(&t["ofType"], types),
        Some("LIST") => json!([]),
        Some("ENUM") => {
            let name = t["name"].as_str().unwrap_or_default();
            types[name]["enumValues"][0]["name"].clone()
        }
        Some("INPUT_OBJECT") => {
            let name = t["name"].as_str().unwrap_or_default();
            let mut object = Map::new();
            for field in types[name]["inputFields"].as_array().into_iter().flatten() {
                if field["type"]["kind"] == "NON_NULL" {
                    object.insert(
                        field["name"].as_str().unwrap_or_default().to_string(),
                        made_up(&field["type"], types),
                    );
                }
            }
            Value::Object(object)
        }
        _ => match t["name"].as_str() {
            Some("Int") => json!(1),
            Some("Float") => json!(1.5),
            Some("Boolean") => json!(false),
            // A JSON request names no file: the first (absent) upload.
            Some("Upload") => json!("#__graphql_file__:0"),
            // A year from now: the answer never depends on the day the test runs.
            Some("DateTime") => json!((chrono::Utc::now() + chrono::Duration::days(365)).to_rfc3339()),
            Some("NaiveDate") => json!((chrono::Utc::now() + chrono::Duration::days(365))
                .date_naive()
                .to_string()),
            _ => json!("x"),
        },
    }
}

/// The innermost named type of a type reference, and its kind.
fn named(t: &Value) -> (&str, &str) {
    match t["kind"].as_str() {
        Some("NON_NULL") | Some("LIST") => named(&t["ofType"]),
        kind => (kind.unwrap_or_default(), t["name"].as_str().unwrap_or_default()),
    }
}

/// A call of the root field `field` (`operation`: `query` or `mutation`) with made-up values
/// for its required arguments: the text and the variables.
fn call_of(operation: &str, field: &Value, types: &Map<String, Value>) -> (String, Map<String, Value>) {
    let name = field["name"].as_str().unwrap_or_default();
    let required: Vec<&Value> = field["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["type"]["kind"] == "NON_NULL")
        .collect();
    let arg = |a: &Value| a["name"].as_str().unwrap_or_default().to_string();
    let declarations: Vec<String> = required
        .iter()
        .map(|a| format!("${}: {}", arg(a), type_string(&a["type"])))
        .collect();
    let arguments: Vec<String> = required.iter().map(|a| format!("{0}: ${0}", arg(a))).collect();
    let variables: Map<String, Value> = required.iter().map(|a| (arg(a), made_up(&a["type"], types))).collect();
    let selection = match named(&field["type"]).0 {
        "OBJECT" | "INTERFACE" | "UNION" => " { __typename }",
        _ => "",
    };
    let text = if required.is_empty() {
        format!("{operation} {{ {name}{selection} }}")
    } else {
        format!(
            "{operation}({}) {{ {name}({}){selection} }}",
            declarations.join(", "),
            arguments.join(", ")
        )
    };
    (text, variables)
}

/// Calls every root field of `operation` as every role and answers each answer that differs
/// from `table`; first checks the table names exactly the schema's fields.
async fn differences(
    app: &TestApp,
    types: &Map<String, Value>,
    operation: &str,
    table: &[(&str, &[chronicle_api::permissions::Permission])],
) -> Vec<String> {
    let key = if operation == "query" {
        "__queries"
    } else {
        "__mutations"
    };
    let fields = types[key].as_array().cloned().unwrap_or_default();
    let in_schema: BTreeSet<&str> = fields.iter().filter_map(|f| f["name"].as_str()).collect();
    let in_table: BTreeSet<&str> = table.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        in_schema, in_table,
        "the permission table and the schema's {operation} fields differ"
    );
    assert_eq!(in_table.len(), table.len(), "a {operation} field is listed twice");
    let mut wrong = Vec::new();
    for field in &fields {
        let name = field["name"].as_str().unwrap_or_default();
        let (text, variables) = call_of(operation, field, types);
        let needs = table.iter().find(|(n, _)| *n == name).map_or(&[][..], |(_, p)| *p);
        for role in ROLES {
            let allowed = needs.iter().all(|p| role.may(*p));
            let reply = app.gql("acme", role, &text, Value::Object(variables.clone())).await;
            let code = error_code(&reply);
            let narrowed = NARROWED
                .iter()
                .any(|(permission, narrowed_role, _)| *narrowed_role == role && needs.contains(permission));
            let as_table = if allowed {
                // A role narrowed to its own records may be refused a made-up record, saying why.
                code != "FORBIDDEN" || (narrowed && error_message(&reply).contains("assigned"))
            } else {
                code == "FORBIDDEN"
            };
            if !as_table {
                wrong.push(format!(
                    "{name} as {}: the table says {}, the answer was {reply}",
                    role.as_str(),
                    if allowed { "allowed" } else { "FORBIDDEN" }
                ));
            }
        }
    }
    wrong
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn every_mutation_answers_every_role_as_the_permission_table_says(pool: sqlx::PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "100200300").await;
    let types = schema_types(&app).await;
    let wrong = differences(&app, &types, "mutation", MUTATIONS).await;
    assert!(
        wrong.is_empty(),
        "{} answers differ from the table:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(may_run(Role::Agent, "issueApiKey"), Some(false));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn every_query_answers_every_role_as_the_permission_table_says(pool: sqlx::PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "100200300").await;
    let types = schema_types(&app).await;
    let wrong = differences(&app, &types, "query", QUERIES).await;
    assert!(
        wrong.is_empty(),
        "{} answers differ from the table:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(may_read(Role::Integrator, "leads"), Some(false));
}

/// The README's table of roles and permissions is the code's (`CHRONICLE_WRITE_README=1`
/// rewrites it).
#[test]
fn the_readme_lists_the_permission_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
    let (start, end) = ("<!-- permissions:start -->\n", "<!-- permissions:end -->");
    let from = readme.find(start).map(|i| i + start.len());
    let to = readme.find(end);
    let (Some(from), Some(to)) = (from, to) else {
        panic!("README.md has no {start:?} … {end:?} block");
    };
    let table = chronicle_api::permissions::markdown();
    if std::env::var("CHRONICLE_WRITE_README").is_ok() {
        let rewritten = format!("{}{table}{}", &readme[..from], &readme[to..]);
        std::fs::write(path, rewritten).unwrap_or_else(|e| panic!("{e}"));
        return;
    }
    assert_eq!(
        &readme[from..to],
        table,
        "the README's permission table is stale: run with CHRONICLE_WRITE_README=1"
    );
}
