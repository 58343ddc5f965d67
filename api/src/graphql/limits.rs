//! Query limits that stop abusive queries and still let clients read the schema.
//!
//! async-graphql's own `limit_depth`/`limit_complexity` count introspection like any other
//! field, so the standard introspection query of graphql-js (`getIntrospectionQuery()`, the one
//! GraphiQL, Apollo and code generators send: `__schema { types { fields { args { type {
//! ofType … } } } } }`, 13 to 15 levels) was refused as "nested too deep". [`Limited`] (the executor the
//! HTTP and WebSocket routes run) checks the parsed document instead, in two budgets:
//!
//! - **Data fields** (everything outside `__schema` / `__type`): depth at most [`MAX_DEPTH`],
//!   complexity (one per field selected, fragments inlined, as async-graphql counts it) at most
//!   [`MAX_COMPLEXITY`].
//! - **Introspection** (`__schema` / `__type` and below): depth at most
//!   [`MAX_INTROSPECTION_DEPTH`], and at most [`MAX_INTROSPECTION_LISTS`] list fields of types
//!   (`types`, `fields`, `args`, …) nested on one path, which is what the standard query needs
//!   (`types → fields → args`); `fields { type { fields { type { fields …` multiplies the
//!   answer by the size of the schema at each level and is refused. At most
//!   [`MAX_INTROSPECTION_LIST_SELECTIONS`] such list fields in the whole document, so aliases
//!   cannot ask for the schema many times over.
//!
//! Every field and every fragment spread visited counts as work, and the walk stops as soon
//! as a budget is exceeded ([`MAX_WORK`] visits at most), so a document of fragments spread
//! many times costs no more than the limit to check; fragment cycles end the walk of that
//! branch (validation reports them).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use async_graphql::futures_util::stream::BoxStream;
use async_graphql::futures_util::StreamExt;
use async_graphql::parser::types::{ExecutableDocument, FragmentDefinition, Selection, SelectionSet};
use async_graphql::{Data, ErrorExtensions, Executor, Name, Positioned, Request, Response, ServerError};
use sqlx::PgPool;

use super::consistency::{projectors_read, wait_for, Consistency};
use super::ChronicleSchema;
use crate::error::ApiError;

/// The deepest selection of data fields.
pub const MAX_DEPTH: usize = 12;
/// The most data fields one document may select (fragments counted where they are spread).
pub const MAX_COMPLEXITY: usize = 1000;
/// The deepest selection below `__schema` / `__type`.
pub const MAX_INTROSPECTION_DEPTH: usize = 16;
/// The most introspection list fields (`types`, `fields`, `args`, …) nested on one path.
pub const MAX_INTROSPECTION_LISTS: usize = 3;
/// The most introspection list fields (`types`, `fields`, `args`, …) one document may select;
/// the standard query of graphql-js selects 12.
pub const MAX_INTROSPECTION_LIST_SELECTIONS: usize = 32;
/// The most fields and fragment spreads the check visits before refusing (`TooComplex`).
pub const MAX_WORK: usize = 10_000;
/// The most introspection fields one document may select (the standard query selects about
/// 150 with every option on).
pub const MAX_INTROSPECTION_FIELDS: usize = 1000;

/// Introspection fields whose value is a list of types, fields or values.
const INTROSPECTION_LISTS: [&str; 8] = [
    "types",
    "fields",
    "args",
    "inputFields",
    "interfaces",
    "possibleTypes",
    "enumValues",
    "directives",
];

/// The schema with the limits checked before anything runs, for HTTP and WebSocket alike: the
/// request's document is parsed once (async-graphql executes the parsed document it is handed),
/// checked, and refused with one error when over a budget. A check here, rather than a schema
/// extension, keeps every field's resolution free of the extension chain async-graphql runs
/// for each field once any extension is registered.
///
/// It also holds a query back until the read models it reads have reached the cursor the
/// request asks for (`extensions.consistency`, see [`super::consistency`]).
#[derive(Clone)]
pub struct Limited(pub ChronicleSchema, pub PgPool);

/// The text async-graphql reads as a reference to the request's `n`th uploaded file (a
/// multipart request's `map` puts it where the file goes).
const FILE_REFERENCE: &str = "#__graphql_file__:";

/// Whether a JSON text holds a string that starts as a file reference but is not `<prefix><n>`
/// (async-graphql's `Upload` unwraps the number's parse: such a string would panic there).
fn bad_reference_in_json(json: &str) -> bool {
    let needle = format!("\"{FILE_REFERENCE}");
    json.match_indices(&needle).any(|(at, _)| {
        let rest = &json[at + needle.len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        !(1..=9).contains(&digits) || !rest[digits..].starts_with('"')
    })
}

/// Whether a variable value holds such a string.
fn bad_reference_in_value(value: &async_graphql::Value) -> bool {
    match value {
        async_graphql::Value::String(s) => s
            .strip_prefix(FILE_REFERENCE)
            .is_some_and(|n| !(1..=9).contains(&n.len()) || !n.bytes().all(|b| b.is_ascii_digit())),
        async_graphql::Value::List(items) => items.iter().any(bad_reference_in_value),
        async_graphql::Value::Object(fields) => fields.values().any(bad_reference_in_value),
        _ => false,
    }
}

/// Whether the request's variables or document name a file by something other than its number
/// (refused before anything runs, on HTTP and WebSocket alike). The document is only looked at
/// when its text could hold one (the prefix, or a `\u` escape that could spell it).
fn bad_file_reference(request: &mut Request) -> bool {
    if request.variables.values().any(bad_reference_in_value) {
        return true;
    }
    let suspicious = request.query.contains("graphql_file") || request.query.contains("\\u");
    suspicious
        && request
            .parsed_query()
            .ok()
            .and_then(|document| serde_json::to_string(document).ok())
            .is_some_and(|json| bad_reference_in_json(&json))
}

/// The refusal of a request over the limits; `None` to run it (a document that does not parse
/// is left to the schema, which answers its syntax error as usual).
fn refusal(request: &mut Request) -> Option<Response> {
    if bad_file_reference(request) {
        return Some(refused(ApiError::bad_request(
            "BAD_REQUEST",
            "a file is referenced by its number (`#__graphql_file__:<n>`): send files as a multipart request",
        )));
    }
    let document = request.parsed_query().ok()?;
    let refused = check(document).err()?;
    Some(Response::from_errors(vec![ServerError::new(refused.message(), None)]))
}

/// A response of one error with its code, for a failure before the schema runs.
pub(crate) fn refused(error: ApiError) -> Response {
    let mut error = error.extend().into_server_error(async_graphql::Pos::default());
    error.locations.clear();
    Response::from_errors(vec![error])
}

/// What the request must wait for before it runs: the projectors its query reads and its
/// requirement; `None` when it asks for nothing or is not a query.
fn requirement(request: &mut Request) -> Result<Option<(BTreeSet<&'static str>, Consistency)>, ApiError> {
    let Some(consistency) = Consistency::from_extensions(request)? else {
        return Ok(None);
    };
    let operation = request.operation_name.clone();
    let Ok(document) = request.parsed_query() else {
        return Ok(None);
    };
    Ok(projectors_read(document, operation.as_deref()).map(|projectors| (projectors, consistency)))
}

impl Limited {
    /// Waits for the request's consistency requirement, if any.
    async fn consistent(&self, request: &mut Request) -> Result<(), ApiError> {
        match requirement(request)? {
            Some((projectors, c)) => wait_for(&self.1, &projectors, c.at_least, c.timeout).await,
            None => Ok(()),
        }
    }
}

impl Executor for Limited {
    async fn execute(&self, mut request: Request) -> Response {
        if let Some(refused) = refusal(&mut request) {
            return refused;
        }
        match self.consistent(&mut request).await {
            Ok(()) => self.0.execute(request).await,
            Err(e) => refused(e),
        }
    }

    fn execute_stream(&self, mut request: Request, session_data: Option<Arc<Data>>) -> BoxStream<'static, Response> {
        if let Some(refused) = refusal(&mut request) {
            return futures::stream::once(async move { refused }).boxed();
        }
        let this = self.clone();
        futures::stream::once(async move {
            let mut request = request;
            let waited = this.consistent(&mut request).await;
            (this, request, waited)
        })
        .flat_map(move |(this, request, waited)| match waited {
            Ok(()) => Executor::execute_stream(&this.0, request, session_data.clone()),
            Err(e) => futures::stream::once(async move { refused(e) }).boxed(),
        })
        .boxed()
    }
}

/// Why a document was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TooDeep,
    TooComplex,
    IntrospectionTooDeep,
    IntrospectionTooNested,
    IntrospectionTooLarge,
    IntrospectionRepeated,
}

impl Refusal {
    pub fn message(self) -> String {
        match self {
            Refusal::TooDeep => format!("Query is nested too deep (at most {MAX_DEPTH} levels of fields)."),
            Refusal::TooComplex => {
                format!("Query is too complex (at most {MAX_COMPLEXITY} fields, fragments counted where spread).")
            }
            Refusal::IntrospectionTooDeep => format!(
                "Introspection query is nested too deep (at most {MAX_INTROSPECTION_DEPTH} levels below __schema or __type)."
            ),
            Refusal::IntrospectionTooNested => format!(
                "Introspection query nests too many lists of types or fields (at most {MAX_INTROSPECTION_LISTS} on one path, as in types → fields → args)."
            ),
            Refusal::IntrospectionTooLarge => format!(
                "Introspection query selects too many fields (at most {MAX_INTROSPECTION_FIELDS})."
            ),
            Refusal::IntrospectionRepeated => format!(
                "Introspection query selects too many lists of types or fields (at most {MAX_INTROSPECTION_LIST_SELECTIONS} in one document)."
            ),
        }
    }
}

/// Checks every operation of a parsed document against the limits.
pub fn check(document: &ExecutableDocument) -> Result<(), Refusal> {
    let mut walk = Walk {
        fragments: document,
        data_fields: 0,
        introspection_fields: 0,
        introspection_lists: 0,
        work: 0,
        active: HashSet::new(),
    };
    for (_, operation) in document.operations.iter() {
        walk.selections(&operation.node.selection_set, Place::Data { depth: 0 })?;
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Place {
    Data { depth: usize },
    Introspection { depth: usize, lists: usize },
}

struct Walk<'a> {
    fragments: &'a ExecutableDocument,
    data_fields: usize,
    introspection_fields: usize,
    introspection_lists: usize,
    /// Fields and fragment spreads visited.
    work: usize,
    /// Fragments being walked on the current path (a cycle stops there).
    active: HashSet<&'a Name>,
}

impl<'a> Walk<'a> {
    fn selections(&mut self, set: &'a Positioned<SelectionSet>, place: Place) -> Result<(), Refusal> {
        for selection in &set.node.items {
            self.work += 1;
            if self.work > MAX_WORK {
                return Err(Refusal::TooComplex);
            }
            match &selection.node {
                Selection::Field(field) => {
                    let name = field.node.name.node.as_str();
                    let below = self.enter(name, place)?;
                    self.selections(&field.node.selection_set, below)?;
                }
                Selection::InlineFragment(fragment) => {
                    self.selections(&fragment.node.selection_set, place)?;
                }
                Selection::FragmentSpread(spread) => {
                    let name = &spread.node.fragment_name.node;
                    let Some(definition) = self.fragment(name) else {
                        continue; // an unknown fragment: validation reports it
                    };
                    if !self.active.insert(name) {
                        continue; // a cycle: validation reports it
                    }
                    let walked = self.selections(&definition.node.selection_set, place);
                    self.active.remove(name);
                    walked?;
                }
            }
        }
        Ok(())
    }

    fn fragment(&self, name: &Name) -> Option<&'a Positioned<FragmentDefinition>> {
        self.fragments.fragments.get(name)
    }

    /// Counts a field selected at `place` and returns the place of its own selections.
    fn enter(&mut self, name: &str, place: Place) -> Result<Place, Refusal> {
        match place {
            Place::Data { depth } if name == "__schema" || name == "__type" => {
                self.count_introspection()?;
                Ok(Place::Introspection {
                    depth: depth + 1,
                    lists: 0,
                })
            }
            Place::Data { depth } => {
                if depth + 1 > MAX_DEPTH {
                    return Err(Refusal::TooDeep);
                }
                self.data_fields += 1;
                if self.data_fields > MAX_COMPLEXITY {
                    return Err(Refusal::TooComplex);
                }
                Ok(Place::Data { depth: depth + 1 })
            }
            Place::Introspection { depth, lists } => {
                if depth + 1 > MAX_INTROSPECTION_DEPTH {
                    return Err(Refusal::IntrospectionTooDeep);
                }
                let list = INTROSPECTION_LISTS.contains(&name);
                let lists = lists + usize::from(list);
                if lists > MAX_INTROSPECTION_LISTS {
                    return Err(Refusal::IntrospectionTooNested);
                }
                self.introspection_lists += usize::from(list);
                if self.introspection_lists > MAX_INTROSPECTION_LIST_SELECTIONS {
                    return Err(Refusal::IntrospectionRepeated);
                }
                self.count_introspection()?;
                Ok(Place::Introspection {
                    depth: depth + 1,
                    lists,
                })
            }
        }
    }

    fn count_introspection(&mut self) -> Result<(), Refusal> {
        self.introspection_fields += 1;
        if self.introspection_fields > MAX_INTROSPECTION_FIELDS {
            return Err(Refusal::IntrospectionTooLarge);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::parser::parse_query;

    fn verdict(query: &str) -> Result<(), Refusal> {
        check(&parse_query(query).unwrap_or_else(|e| panic!("{e}")))
    }

    fn nested(name: &str, levels: usize) -> String {
        (1..levels).fold(name.to_string(), |inner, _| format!("{name} {{ {inner} }}"))
    }

    #[test]
    fn file_references_that_are_not_numbers_are_found_in_json_and_values() {
        assert!(!bad_reference_in_json(r##"{"a":"#__graphql_file__:0","b":"text"}"##));
        assert!(bad_reference_in_json(r##"{"a":"#__graphql_file__:x"}"##));
        assert!(bad_reference_in_json(r##"{"a":"#__graphql_file__:0x"}"##));
        assert!(bad_reference_in_json(r##"{"a":"#__graphql_file__:"}"##));
        assert!(bad_reference_in_json(
            r##"{"a":"#__graphql_file__:12345678901234567890"}"##
        ));
        assert!(!bad_reference_in_json(r##"{"a":"see #__graphql_file__:x"}"##));
        let value = async_graphql::Value::List(vec![async_graphql::Value::String("#__graphql_file__:-1".into())]);
        assert!(bad_reference_in_value(&value));
        assert!(!bad_reference_in_value(&async_graphql::Value::String(
            "#__graphql_file__:3".into()
        )));
    }

    #[test]
    fn the_standard_introspection_queries_pass() {
        for query in [
            include_str!("../../../tests/fixtures/introspection/introspection-graphql-js-16.graphql"),
            include_str!("../../../tests/fixtures/introspection/introspection-graphql-js-16-no-descriptions.graphql"),
            include_str!("../../../tests/fixtures/introspection/introspection-graphql-js-17.graphql"),
        ] {
            assert_eq!(verdict(query), Ok(()));
        }
    }

    #[test]
    fn data_depth_counts_through_inline_fragments_and_spreads() {
        assert_eq!(verdict(&format!("{{ {} }}", nested("a", 12))), Ok(()));
        assert_eq!(verdict(&format!("{{ {} }}", nested("a", 13))), Err(Refusal::TooDeep));
        // Six levels, then an inline fragment and a spread of a fragment six (or seven) deep.
        let outer = |inner: &str| (0..6).fold(format!("... on T {{ ...F }} {inner}"), |x, _| format!("a {{ {x} }}"));
        let six = format!("{{ {} }} fragment F on T {{ {} }}", outer(""), nested("a", 6));
        let seven = format!("{{ {} }} fragment F on T {{ {} }}", outer(""), nested("a", 7));
        assert_eq!(verdict(&six), Ok(()));
        assert_eq!(verdict(&seven), Err(Refusal::TooDeep));
    }

    #[test]
    fn aliases_and_spreads_count_towards_complexity_and_every_operation_is_checked() {
        let wide: String = (0..1001).map(|i| format!("f{i}: a ")).collect();
        assert_eq!(verdict(&format!("{{ {wide} }}")), Err(Refusal::TooComplex));
        let spread: String = (0..600).map(|_| "...F ").collect();
        assert_eq!(
            verdict(&format!("{{ {spread} }} fragment F on T {{ a b }}")),
            Err(Refusal::TooComplex)
        );
        assert_eq!(
            verdict(&format!("query A {{ a }} query B {{ {} }}", nested("a", 13))),
            Err(Refusal::TooDeep)
        );
    }

    #[test]
    fn fragment_bombs_and_cycles_end_within_the_work_budget() {
        // F0 spreads F1 twice, F1 spreads F2 twice, …: 2^30 paths if walked in full.
        let mut document = String::from("{ ...F0 } ");
        for i in 0..30 {
            document.push_str(&format!("fragment F{i} on T {{ ...F{} ...F{} }} ", i + 1, i + 1));
        }
        document.push_str("fragment F30 on T { ...Missing }");
        assert_eq!(verdict(&document), Err(Refusal::TooComplex));
        assert_eq!(
            verdict("{ ...A } fragment A on T { ...B } fragment B on T { ...A }"),
            Ok(())
        );
    }

    #[test]
    fn recursive_repeated_and_deep_introspection_is_refused() {
        assert_eq!(
            verdict("{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }"),
            Err(Refusal::IntrospectionTooNested)
        );
        let copies: String = (0..11)
            .map(|i| format!("t{i}: types {{ fields {{ args {{ name }} }} }} "))
            .collect();
        assert_eq!(
            verdict(&format!("{{ __schema {{ {copies} }} }}")),
            Err(Refusal::IntrospectionRepeated)
        );
        let of_type = (0..16).fold(String::from("name"), |inner, _| format!("ofType {{ {inner} }}"));
        assert_eq!(
            verdict(&format!("{{ __type(name: \"Query\") {{ {of_type} }} }}")),
            Err(Refusal::IntrospectionTooDeep)
        );
    }
}
