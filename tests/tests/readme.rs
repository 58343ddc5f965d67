//! The README's GraphQL examples, run against the demo of `serve --demo`: every fenced
//! ```` ```graphql tenant=<id> ```` block is sent as that tenant's owner and must answer data,
//! every top-level field non-null and every list or page non-empty, with no errors.

use chronicle_api::auth::Role;
use chronicle_tests::*;
use serde_json::{json, Value};
use sqlx::PgPool;

/// `(tenant, query)` of every GraphQL example of the README, in order.
fn examples() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap_or_default();
    let mut examples = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.trim().strip_prefix("```graphql") else {
            continue;
        };
        let tenant = info
            .split_whitespace()
            .find_map(|w| w.strip_prefix("tenant="))
            .unwrap_or_else(|| panic!("a README GraphQL example names no tenant: {line:?}"))
            .to_string();
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        examples.push((tenant, body.join("\n")));
    }
    examples
}

/// Why `value` (at `path`) is empty, if it is.
fn emptiness(path: &str, value: &Value) -> Option<String> {
    match value {
        Value::Null => Some(format!("{path} is null")),
        Value::Array(items) if items.is_empty() => Some(format!("{path} is an empty list")),
        Value::Object(fields) => {
            for key in ["edges", "nodes"] {
                if let Some(list) = fields.get(key) {
                    if let Some(why) = emptiness(&format!("{path}.{key}"), list) {
                        return Some(why);
                    }
                }
            }
            None
        }
        _ => None,
    }
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn every_graphql_example_of_the_readme_answers_the_demo_with_data(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.load_demo().await;
    // What the server's process managers add once it runs: the installations' warranties.
    let installations =
        chronicle_commands::installation::InstallationWorker::new(app.state.commands.clone(), app.keys());
    installations.drain().await.unwrap_or_else(|e| panic!("{e}"));
    app.project().await;

    let examples = examples();
    assert!(
        examples.len() >= 8,
        "the README's examples were not found: {examples:?}"
    );
    for (tenant, query) in examples {
        let (status, reply) = app
            .graphql(Some(&app.token(&tenant, Role::Owner)), &query, json!({}))
            .await;
        assert_eq!(status, axum::http::StatusCode::OK, "{query}\n{reply}");
        assert!(reply.get("errors").is_none(), "as {tenant}:\n{query}\n{reply}");
        let data = reply["data"].as_object().cloned().unwrap_or_default();
        assert!(!data.is_empty(), "as {tenant}:\n{query}\n{reply}");
        for (field, value) in &data {
            if let Some(why) = emptiness(field, value) {
                panic!("as {tenant}: {why}\n{query}\n{reply}");
            }
        }
    }
}

/// The README's section `## Two paths from route to read model`.
fn walk_through() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap_or_default();
    let start = readme
        .find("## Two paths from route to read model")
        .unwrap_or_else(|| panic!("the README has no walk-through section"));
    let rest = &readme[start + 3..];
    let end = rest.find("\n## ").map_or(rest.len(), |i| i + 1);
    rest[..end].to_string()
}

/// Every `path/with/a/slash.ext` or `dir/` in backquotes of a text.
fn named_paths(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|code| {
            code.contains('/')
                && !code.contains(' ')
                && !code.starts_with('/')
                && (code.ends_with(".rs") || code.ends_with(".sql") || code.ends_with('/'))
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn the_walk_through_names_files_that_exist_for_both_paths() {
    let section = walk_through();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for path in ["### A WhatsApp message, received", "### A metered send"] {
        assert!(section.contains(path), "the walk-through lost its part {path:?}");
    }
    let paths = named_paths(&section);
    assert!(paths.len() >= 20, "the walk-through names too few files: {paths:?}");
    let missing: Vec<&String> = paths.iter().filter(|p| !root.join(p).exists()).collect();
    assert!(
        missing.is_empty(),
        "the README's walk-through names files that do not exist: {missing:?}"
    );
    // Each layer appears on each path: route, write side, domain, read side.
    for (part, next) in [
        ("### A WhatsApp message, received", "### A metered send"),
        ("### A metered send", "\u{0}"),
    ] {
        let from = section.find(part).unwrap_or_default();
        let to = section.find(next).unwrap_or(section.len());
        let text = &section[from..to.max(from)];
        for layer in ["api/src/", "commands/src/", "domain/src/", "projections/src/"] {
            assert!(
                named_paths(text).iter().any(|p| p.starts_with(layer)),
                "{part} names no file under {layer}"
            );
        }
    }
}

#[test]
fn a_missing_file_in_the_walk_through_would_be_found() {
    let paths = named_paths("see `commands/src/nowhere.rs` and `api/src/graphql/inbox.rs`, not `a b/c.rs`");
    assert_eq!(paths, ["commands/src/nowhere.rs", "api/src/graphql/inbox.rs"]);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    assert!(!root.join(&paths[0]).exists());
    assert!(root.join(&paths[1]).exists());
}

#[test]
fn the_installation_area_has_the_same_files_in_every_layer() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let files = |dir: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(root.join(dir))
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .filter_map(Result::ok)
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let expected = [
        "claims.rs",
        "maintenance.rs",
        "mod.rs",
        "orders.rs",
        "payouts.rs",
        "process.rs",
        "records.rs",
        "service_requests.rs",
        "warranties.rs",
    ];
    for layer in ["commands/src/installation", "projections/src/installation"] {
        assert_eq!(files(layer), expected, "{layer}");
    }
    // The API serves the areas; the process managers have no resolver of their own.
    let served: Vec<&str> = expected.iter().copied().filter(|f| *f != "process.rs").collect();
    assert_eq!(files("api/src/graphql/installation"), served);
    // The domain: one module per aggregate of the area.
    let domain = files("domain/src/installation");
    for module in ["order", "isr", "payout", "warranty", "claim", "service", "maintenance"] {
        assert!(domain.contains(&module.to_string()), "domain/src/installation/{module}");
    }
}

/// Every stable error code the source can raise: `bad_request("CODE", …)` anywhere, and the
/// codes of every `fn code(&self)` (the domain's rules, the write side's, the callbacks').
fn codes_in_source() -> std::collections::BTreeMap<String, String> {
    fn walk(dir: &std::path::Path, files: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, files);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for crate_dir in ["domain/src", "commands/src", "api/src"] {
        walk(&root.join(crate_dir), &mut files);
    }
    let is_code = |s: &str| {
        s.len() >= 3
            && s.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            && s.starts_with(|c: char| c.is_ascii_uppercase())
    };
    let mut codes = std::collections::BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let name = file.display().to_string();
        // bad_request("CODE" (possibly on the next line)
        for (i, _) in text.match_indices("bad_request(") {
            let rest = text[i + "bad_request(".len()..].trim_start();
            if let Some(quoted) = rest.strip_prefix('"') {
                let code = quoted.split('"').next().unwrap_or_default();
                if is_code(code) {
                    codes.insert(code.to_string(), name.clone());
                }
            }
        }
        // the bodies of `fn code(&self)`: every "CODE" in them
        for (i, _) in text.match_indices("fn code(&self)") {
            let body = &text[i..];
            let end = body.find("\n    }\n").unwrap_or(body.len());
            for quoted in body[..end].split('"').skip(1).step_by(2) {
                if is_code(quoted) {
                    codes.insert(quoted.to_string(), name.clone());
                }
            }
        }
    }
    codes
}

#[test]
fn every_error_code_is_listed_in_the_readme() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap_or_default();
    let codes = codes_in_source();
    assert!(codes.len() > 150, "the codes were not found: {codes:?}");
    let missing: Vec<String> = codes
        .iter()
        .filter(|(code, _)| !readme.contains(&format!("`{code}`")))
        .map(|(code, file)| format!("{code} ({file})"))
        .collect();
    assert!(
        missing.is_empty(),
        "codes the README does not list:\n{}",
        missing.join("\n")
    );
}
