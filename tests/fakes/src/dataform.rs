//! A fake of the Dataform v1 REST API, enough for sigma-dataform's calls: compile, read the
//! compiled actions page by page, create an invocation, list invocations, read an
//! invocation's state and its actions.
//!
//! The graph it serves is a real `dataform compile --json` output converted to the API's
//! shape, so one compiled project feeds both the file path and the API path. It refuses what
//! Google refuses (no or two compilation sources, targets absent from the compilation or
//! naming declarations, unknown resources as `NOT_FOUND`), and lets tests inject failures
//! and compilation errors, and move invocations to their end. It can run in a test
//! ([`FakeDataform::start`]) or as a process for the local stack ([`serve`]), steered over
//! HTTP under `/_fake/` or in-process through [`Handle`].
//!
//! It also keeps each invocation's running interval (creation to its end) and targets, so
//! tests can prove what Dataform would not report: that no two invocations ran the same
//! action at the same time ([`Handle::overlaps`]), and how many action executions a batch
//! cost ([`Handle::action_executions`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const DEFAULT_PAGE_SIZE: usize = 10;

/// `database.schema.name` of a JSON target.
fn key(target: &Value) -> String {
    ["database", "schema", "name"]
        .iter()
        .map(|k| target.get(*k).and_then(Value::as_str).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(".")
}

fn list<'a>(value: &'a Value, field: &str) -> &'a [Value] {
    value
        .get(field)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn flag(value: &Value, field: &str) -> bool {
    value.get(field).and_then(Value::as_bool).unwrap_or(false)
}

/// Copies the fields present (and `true` booleans only, as proto3 JSON omits defaults).
fn pick(from: &Value, fields: &[(&str, &str)]) -> Value {
    let mut out = serde_json::Map::new();
    for (source, target) in fields {
        match from.get(*source) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(Value::Array(items)) if items.is_empty() => {}
            Some(value) => {
                out.insert((*target).to_owned(), value.clone());
            }
        }
    }
    Value::Object(out)
}

/// Converts `dataform compile --json` output (core 2.x or 3.x) into the
/// `compilationResultActions` that `compilationResults.query` would return for it.
pub fn api_actions(compiled: &Value) -> Vec<Value> {
    let header = |action: &Value| {
        let mut out = json!({ "target": action["target"] });
        out["canonicalTarget"] = action
            .get("canonicalTarget")
            .cloned()
            .unwrap_or_else(|| action["target"].clone());
        if let Some(file) = action.get("fileName") {
            out["filePath"] = file.clone();
        }
        out
    };
    let mut actions = Vec::new();
    for table in list(compiled, "tables") {
        let mut relation = pick(
            table,
            &[
                ("dependencyTargets", "dependencyTargets"),
                ("disabled", "disabled"),
                ("tags", "tags"),
                ("query", "selectQuery"),
            ],
        );
        let kind = table.get("type").and_then(Value::as_str).unwrap_or("table");
        relation["relationType"] = json!(match kind {
            "view" => "VIEW",
            "incremental" => "INCREMENTAL_TABLE",
            _ => "TABLE",
        });
        let mut action = header(table);
        action["relation"] = relation;
        actions.push(action);
    }
    for operation in list(compiled, "operations") {
        let mut action = header(operation);
        action["operations"] = pick(
            operation,
            &[
                ("dependencyTargets", "dependencyTargets"),
                ("disabled", "disabled"),
                ("tags", "tags"),
                ("queries", "queries"),
                ("hasOutput", "hasOutput"),
            ],
        );
        actions.push(action);
    }
    for assertion in list(compiled, "assertions") {
        let mut action = header(assertion);
        action["assertion"] = pick(
            assertion,
            &[
                ("dependencyTargets", "dependencyTargets"),
                ("disabled", "disabled"),
                ("tags", "tags"),
                ("query", "selectQuery"),
                ("parentAction", "parentAction"),
            ],
        );
        actions.push(action);
    }
    for declaration in list(compiled, "declarations") {
        let mut action = header(declaration);
        action["declaration"] = json!({});
        actions.push(action);
    }
    actions
}

struct Invocation {
    name: String,
    compilation: String,
    config: Value,
    state: &'static str,
    /// Target, state, failure reason, in the order Dataform would run them.
    actions: Vec<(Value, &'static str, String)>,
    gets: u32,
    /// The counter's value at creation and at the end: an order of events, not clock time,
    /// so two intervals that touch are told apart exactly.
    started: u64,
    ended: Option<u64>,
}

/// Two invocations that were running at the same time and share targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Overlap {
    pub first: String,
    pub second: String,
    pub targets: Vec<String>,
}

impl Invocation {
    /// The `WorkflowInvocation` resource, as create, get and list return it.
    fn resource(&self) -> Value {
        json!({
            "name": self.name,
            "compilationResult": self.compilation,
            "invocationConfig": self.config,
            "state": self.state,
            "resolvedCompilationResult": self.compilation,
        })
    }
}

struct Compilation {
    actions: Vec<Value>,
}

#[derive(Default)]
struct Inner {
    actions: Vec<Value>,
    page_size: usize,
    compilations: HashMap<String, Compilation>,
    compile_calls: usize,
    compilation_errors: Vec<Value>,
    /// HTTP status and RPC status name of the next injected failures.
    failures: VecDeque<(u16, &'static str)>,
    invocations: HashMap<String, Invocation>,
    created: Vec<Value>,
    auto_complete_after: Option<u32>,
    counter: u64,
    /// Orders invocations' starts and ends.
    clock: u64,
}

/// In-process control of a running fake.
#[derive(Clone)]
pub struct Handle(Arc<Mutex<Inner>>);

impl Handle {
    /// A fake serving the graph of a `dataform compile --json` output.
    pub fn new(compiled: &Value) -> Self {
        Self(Arc::new(Mutex::new(Inner {
            actions: api_actions(compiled),
            page_size: DEFAULT_PAGE_SIZE,
            ..Inner::default()
        })))
    }

    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(Self::new(&serde_json::from_slice(&bytes)?))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most actions a page holds, whatever the client asks for.
    pub fn set_page_size(&self, size: usize) {
        self.lock().page_size = size.max(1);
    }

    /// The next `times` API requests fail with `status` (429, 500, 503...), with the RPC
    /// status Google sends with it.
    pub fn fail_next(&self, status: u16, times: usize) {
        self.fail_next_as(status, rpc_status(status), times);
    }

    /// The next `times` API requests fail with `status` and the RPC status `rpc` (Google
    /// answers `ABORTED` over HTTP 409, for one: the RPC status says what to do).
    pub fn fail_next_as(&self, status: u16, rpc: &'static str, times: usize) {
        self.lock()
            .failures
            .extend(std::iter::repeat_n((status, rpc), times));
    }

    /// Compilations report these errors (`{"path", "message"}`) until cleared with `vec![]`.
    pub fn set_compilation_errors(&self, errors: Vec<Value>) {
        self.lock().compilation_errors = errors;
    }

    /// Invocations finish successfully once read `gets` times; `None`: only `complete` ends them.
    pub fn set_auto_complete_after(&self, gets: Option<u32>) {
        self.lock().auto_complete_after = gets;
    }

    pub fn compile_calls(&self) -> usize {
        self.lock().compile_calls
    }

    /// The bodies of every `workflowInvocations.create` accepted, in order.
    pub fn created_invocations(&self) -> Vec<Value> {
        self.lock().created.clone()
    }

    /// Ends an invocation (by id or name): the listed targets (`database.schema.name`) fail
    /// with their reasons, their dependents in the invocation are skipped, disabled actions
    /// end `DISABLED`, the rest succeed.
    pub fn complete(&self, invocation: &str, failed: &[(&str, &str)]) -> anyhow::Result<()> {
        let mut inner = self.lock();
        let Inner {
            invocations,
            compilations,
            clock,
            ..
        } = &mut *inner;
        let found = invocations
            .values_mut()
            .find(|i| i.name == invocation || i.name.ends_with(&format!("/{invocation}")))
            .context("no such invocation")?;
        let graph = &compilations[&found.compilation].actions;
        *clock += 1;
        finish(found, graph, failed, *clock);
        Ok(())
    }

    /// Every pair of invocations that were running at the same time (an invocation runs
    /// from its creation to its end, or to now) and share targets, with those targets.
    pub fn overlaps(&self) -> Vec<Overlap> {
        let inner = self.lock();
        let mut invocations: Vec<&Invocation> = inner.invocations.values().collect();
        invocations.sort_by_key(|i| i.started);
        let mut overlaps = Vec::new();
        for (n, first) in invocations.iter().enumerate() {
            let targets: HashSet<String> = first.actions.iter().map(|(t, _, _)| key(t)).collect();
            for second in &invocations[n + 1..] {
                if first.ended.is_some_and(|ended| ended <= second.started) {
                    continue;
                }
                let mut shared: Vec<String> = second
                    .actions
                    .iter()
                    .map(|(t, _, _)| key(t))
                    .filter(|t| targets.contains(t))
                    .collect();
                if !shared.is_empty() {
                    shared.sort();
                    overlaps.push(Overlap {
                        first: first.name.clone(),
                        second: second.name.clone(),
                        targets: shared,
                    });
                }
            }
        }
        overlaps
    }

    /// How many actions all the invocations created so far included: what a batch cost.
    pub fn action_executions(&self) -> usize {
        self.lock()
            .invocations
            .values()
            .map(|i| i.actions.len())
            .sum()
    }
}

fn body_of(action: &Value) -> &Value {
    ["relation", "operations", "assertion", "declaration"]
        .iter()
        .find_map(|k| action.get(*k))
        .unwrap_or(&Value::Null)
}

fn finish(invocation: &mut Invocation, graph: &[Value], failed: &[(&str, &str)], at: u64) {
    invocation.ended = Some(at);
    let by_key: HashMap<String, &Value> = graph.iter().map(|a| (key(&a["target"]), a)).collect();
    let failed: HashMap<&str, &str> = failed.iter().copied().collect();
    let mut broken: HashSet<String> = HashSet::new();
    for (target, state, reason) in invocation.actions.iter_mut() {
        let k = key(target);
        let action = by_key.get(&k).map(|a| body_of(a)).unwrap_or(&Value::Null);
        let upstream_broken = list(action, "dependencyTargets")
            .iter()
            .any(|d| broken.contains(&key(d)));
        (*state, *reason) = if let Some(why) = failed.get(k.as_str()) {
            broken.insert(k);
            ("FAILED", (*why).to_owned())
        } else if upstream_broken {
            broken.insert(k);
            ("SKIPPED", String::new())
        } else if flag(action, "disabled") {
            ("DISABLED", String::new())
        } else {
            ("SUCCEEDED", String::new())
        };
    }
    invocation.state = if failed.is_empty() {
        "SUCCEEDED"
    } else {
        "FAILED"
    };
}

/// The RPC status Google sends with an HTTP status.
fn rpc_status(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    }
}

fn google_error(status: u16, message: impl Into<String>) -> Response {
    google_error_as(status, rpc_status(status), message)
}

fn google_error_as(status: u16, name: &str, message: impl Into<String>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        code,
        Json(json!({"error": {"code": status, "message": message.into(), "status": name}})),
    )
        .into_response()
}

async fn injected_failures(State(handle): State<Handle>, request: Request, next: Next) -> Response {
    let failure = handle.lock().failures.pop_front();
    match failure {
        Some((status, rpc)) => google_error_as(status, rpc, "injected failure"),
        None => next.run(request).await,
    }
}

#[derive(Deserialize)]
struct Repo {
    p: String,
    l: String,
    r: String,
}

#[derive(Deserialize)]
struct Child {
    p: String,
    l: String,
    r: String,
    id: String,
}

impl Repo {
    fn name(&self) -> String {
        format!(
            "projects/{}/locations/{}/repositories/{}",
            self.p, self.l, self.r
        )
    }
}

impl Child {
    fn repo(&self) -> String {
        format!(
            "projects/{}/locations/{}/repositories/{}",
            self.p, self.l, self.r
        )
    }
}

fn tick(inner: &mut Inner) -> u64 {
    inner.clock += 1;
    inner.clock
}

fn new_id(inner: &mut Inner) -> String {
    inner.counter += 1;
    format!("{:04}-{:08x}", inner.counter, rand::random::<u32>())
}

async fn create_compilation(
    State(handle): State<Handle>,
    UrlPath(repo): UrlPath<Repo>,
    Json(body): Json<Value>,
) -> Response {
    let parent = repo.name();
    let sources: Vec<&str> = ["gitCommitish", "workspace", "releaseConfig"]
        .into_iter()
        .filter(|k| {
            body.get(*k)
                .and_then(Value::as_str)
                .is_some_and(|v| !v.is_empty())
        })
        .collect();
    if sources.len() != 1 {
        return google_error(
            400,
            "exactly one of git_commitish, workspace, release_config must be set",
        );
    }
    for (field, collection) in [
        ("workspace", "workspaces"),
        ("releaseConfig", "releaseConfigs"),
    ] {
        if let Some(value) = body.get(field).and_then(Value::as_str)
            && !value.starts_with(&format!("{parent}/{collection}/"))
        {
            return google_error(404, format!("{value} not found"));
        }
    }
    let mut inner = handle.lock();
    inner.compile_calls += 1;
    let name = format!("{parent}/compilationResults/{}", new_id(&mut inner));
    let mut result = body.clone();
    result["name"] = json!(name);
    result["dataformCoreVersion"] = json!("3.0.0");
    result["createTime"] = json!("2024-01-15T06:00:00Z");
    if !inner.compilation_errors.is_empty() {
        result["compilationErrors"] = json!(inner.compilation_errors);
    }
    let actions = inner.actions.clone();
    inner.compilations.insert(name, Compilation { actions });
    Json(result).into_response()
}

/// `pageToken` is the offset of the page's first item; the page is at most the fake's size.
/// `None`: the token is not one this fake handed out.
fn page<T: Clone>(
    items: &[T],
    query: &HashMap<String, String>,
    max: usize,
) -> Option<(Vec<T>, Option<String>)> {
    let start: usize = match query.get("pageToken").map(String::as_str) {
        None | Some("") => 0,
        Some(token) => token.parse().ok().filter(|s| *s <= items.len())?,
    };
    let asked: usize = query
        .get("pageSize")
        .and_then(|s| s.parse().ok())
        .filter(|s| *s > 0)
        .unwrap_or(max);
    let end = (start + asked.min(max)).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    Some((items[start..end].to_vec(), next))
}

async fn compilation_result(
    State(handle): State<Handle>,
    UrlPath(child): UrlPath<Child>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (id, method) = child.id.split_once(':').unwrap_or((&child.id, ""));
    let name = format!("{}/compilationResults/{id}", child.repo());
    let inner = handle.lock();
    let Some(compilation) = inner.compilations.get(&name) else {
        return google_error(404, format!("{name} not found"));
    };
    match method {
        "query" => match page(&compilation.actions, &query, inner.page_size) {
            Some((actions, next)) => {
                let mut out = json!({ "compilationResultActions": actions });
                if let Some(next) = next {
                    out["nextPageToken"] = json!(next);
                }
                Json(out).into_response()
            }
            None => google_error(400, "invalid page token"),
        },
        "" => Json(json!({ "name": name })).into_response(),
        other => google_error(404, format!("no method {other}")),
    }
}

async fn create_invocation(
    State(handle): State<Handle>,
    UrlPath(repo): UrlPath<Repo>,
    Json(body): Json<Value>,
) -> Response {
    let parent = repo.name();
    let Some(compilation) = body.get("compilationResult").and_then(Value::as_str) else {
        return google_error(
            400,
            "compilation_result is required (this fake does not run workflow configs)",
        );
    };
    if !compilation.starts_with(&format!("{parent}/compilationResults/")) {
        return google_error(400, format!("{compilation} is not in {parent}"));
    }
    let mut inner = handle.lock();
    let Some(graph) = inner.compilations.get(compilation) else {
        return google_error(404, format!("{compilation} not found"));
    };
    let by_key: HashMap<String, &Value> = graph
        .actions
        .iter()
        .map(|a| (key(&a["target"]), a))
        .collect();
    let config = body
        .get("invocationConfig")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let included = list(&config, "includedTargets");
    let mut actions = Vec::new();
    for target in included {
        match by_key.get(&key(target)) {
            None => {
                return google_error(
                    400,
                    format!(
                        "included target {} does not exist in the compilation result",
                        key(target)
                    ),
                );
            }
            Some(action) if action.get("declaration").is_some() => {
                return google_error(
                    400,
                    format!(
                        "included target {} is a declaration, which cannot be run",
                        key(target)
                    ),
                );
            }
            Some(action) => actions.push((action["target"].clone(), "PENDING", String::new())),
        }
    }
    if included.is_empty() && list(&config, "includedTags").is_empty() {
        // Google runs the whole project when nothing is selected.
        actions = graph
            .actions
            .iter()
            .filter(|a| a.get("declaration").is_none())
            .map(|a| (a["target"].clone(), "PENDING", String::new()))
            .collect();
    }
    let compilation = compilation.to_owned();
    let name = format!("{parent}/workflowInvocations/{}", new_id(&mut inner));
    inner.created.push(body.clone());
    let invocation = Invocation {
        name: name.clone(),
        compilation,
        config,
        state: "RUNNING",
        actions,
        gets: 0,
        started: tick(&mut inner),
        ended: None,
    };
    let resource = invocation.resource();
    inner.invocations.insert(name, invocation);
    Json(resource).into_response()
}

/// `workflowInvocations.list`: the repository's invocations by name (ascending unless
/// `orderBy` is `name desc`; the API orders by nothing else), a page at a time.
async fn list_invocations(
    State(handle): State<Handle>,
    UrlPath(repo): UrlPath<Repo>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let parent = format!("{}/workflowInvocations/", repo.name());
    let descending = match query.get("orderBy").map(|o| o.trim()) {
        None | Some("") | Some("name") | Some("name asc") => false,
        Some("name desc") => true,
        Some(other) => {
            return google_error(400, format!("orderBy supports only name, not {other}"));
        }
    };
    if query.get("filter").is_some_and(|f| !f.is_empty()) {
        return google_error(400, "this fake evaluates no filter expressions");
    }
    let inner = handle.lock();
    let mut invocations: Vec<&Invocation> = inner
        .invocations
        .values()
        .filter(|i| i.name.starts_with(&parent))
        .collect();
    invocations.sort_by(|a, b| a.name.cmp(&b.name));
    if descending {
        invocations.reverse();
    }
    let resources: Vec<Value> = invocations.iter().map(|i| i.resource()).collect();
    match page(&resources, &query, inner.page_size) {
        Some((items, next)) => {
            let mut out = json!({ "workflowInvocations": items });
            if let Some(next) = next {
                out["nextPageToken"] = json!(next);
            }
            Json(out).into_response()
        }
        None => google_error(400, "invalid page token"),
    }
}

async fn workflow_invocation(
    State(handle): State<Handle>,
    UrlPath(child): UrlPath<Child>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (id, method) = child.id.split_once(':').unwrap_or((&child.id, ""));
    let name = format!("{}/workflowInvocations/{id}", child.repo());
    let mut inner = handle.lock();
    let page_size = inner.page_size;
    let auto = inner.auto_complete_after;
    let Inner {
        invocations,
        compilations,
        clock,
        ..
    } = &mut *inner;
    let Some(invocation) = invocations.get_mut(&name) else {
        return google_error(404, format!("{name} not found"));
    };
    match method {
        "" => {
            invocation.gets += 1;
            if invocation.state == "RUNNING" && auto.is_some_and(|after| invocation.gets >= after) {
                let graph = &compilations[&invocation.compilation].actions;
                *clock += 1;
                finish(invocation, graph, &[], *clock);
            }
            Json(invocation.resource()).into_response()
        }
        "query" => match page(&invocation.actions, &query, page_size) {
            Some((actions, next)) => {
                let actions: Vec<Value> = actions
                    .into_iter()
                    .map(|(target, state, reason)| {
                        let mut action =
                            json!({"target": target, "canonicalTarget": target, "state": state});
                        if !reason.is_empty() {
                            action["failureReason"] = json!(reason);
                        }
                        action
                    })
                    .collect();
                let mut out = json!({ "workflowInvocationActions": actions });
                if let Some(next) = next {
                    out["nextPageToken"] = json!(next);
                }
                Json(out).into_response()
            }
            None => google_error(400, "invalid page token"),
        },
        other => google_error(404, format!("no method {other}")),
    }
}

/// `workflowInvocations.cancel` (`POST {name}:cancel`, body `{}`): a running invocation ends
/// `CANCELLED` and so do its actions that had not ended; one that has ended is refused with
/// 400 `FAILED_PRECONDITION`, as Dataform refuses it.
async fn invocation_method(
    State(handle): State<Handle>,
    UrlPath(child): UrlPath<Child>,
    body: axum::body::Bytes,
) -> Response {
    let Some((id, "cancel")) = child.id.split_once(':') else {
        return google_error(404, format!("no method in {}", child.id));
    };
    if !body.is_empty() {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(fields)) if fields.keys().all(|k| k == "name") => {}
            Ok(other) => {
                return google_error(
                    400,
                    format!("Invalid JSON payload received. Unknown name in {other}"),
                );
            }
            Err(e) => return google_error(400, format!("Invalid JSON payload received. {e}")),
        }
    }
    let name = format!("{}/workflowInvocations/{id}", child.repo());
    let mut inner = handle.lock();
    let at = tick(&mut inner);
    let Some(invocation) = inner.invocations.get_mut(&name) else {
        return google_error(404, format!("{name} not found"));
    };
    if invocation.state != "RUNNING" {
        return google_error_as(
            400,
            "FAILED_PRECONDITION",
            format!(
                "{name} is {} and can no longer be cancelled",
                invocation.state
            ),
        );
    }
    invocation.state = "CANCELLED";
    invocation.ended = Some(at);
    for (_, state, _) in invocation.actions.iter_mut() {
        if matches!(*state, "PENDING" | "RUNNING") {
            *state = "CANCELLED";
        }
    }
    Json(json!({})).into_response()
}

#[derive(Deserialize)]
struct FailControl {
    status: u16,
    #[serde(default = "one")]
    times: usize,
}

fn one() -> usize {
    1
}

#[derive(Deserialize)]
struct CompleteControl {
    #[serde(default)]
    failed: HashMap<String, String>,
}

#[derive(Deserialize)]
struct AutoControl {
    after_gets: Option<u32>,
}

/// The fake's routes: Google's paths under `/v1`, the control surface under `/_fake`.
pub fn router(handle: Handle) -> Router {
    const REPO: &str = "/v1/projects/{p}/locations/{l}/repositories/{r}";
    let google = Router::new()
        .route(
            &format!("{REPO}/compilationResults"),
            post(create_compilation),
        )
        .route(
            &format!("{REPO}/compilationResults/{{id}}"),
            get(compilation_result),
        )
        .route(
            &format!("{REPO}/workflowInvocations"),
            post(create_invocation).get(list_invocations),
        )
        .route(
            &format!("{REPO}/workflowInvocations/{{id}}"),
            get(workflow_invocation).post(invocation_method),
        )
        .layer(middleware::from_fn_with_state(
            handle.clone(),
            injected_failures,
        ))
        // A 100,000-target invocation is a ~7 MB create request; axum's default is 2 MB.
        .layer(axum::extract::DefaultBodyLimit::max(64 << 20));
    let control = Router::new()
        .route(
            "/_fake/fail",
            post(
                |State(h): State<Handle>, Json(c): Json<FailControl>| async move {
                    h.fail_next(c.status, c.times)
                },
            ),
        )
        .route(
            "/_fake/compilation_errors",
            post(
                |State(h): State<Handle>, Json(errors): Json<Vec<Value>>| async move {
                    h.set_compilation_errors(errors)
                },
            ),
        )
        .route(
            "/_fake/auto_complete",
            post(
                |State(h): State<Handle>, Json(c): Json<AutoControl>| async move {
                    h.set_auto_complete_after(c.after_gets)
                },
            ),
        )
        .route(
            "/_fake/invocations",
            get(|State(h): State<Handle>| async move { Json(h.created_invocations()) }),
        )
        .route(
            "/_fake/overlaps",
            get(|State(h): State<Handle>| async move {
                Json(json!({"overlaps": h.overlaps(), "action_executions": h.action_executions()}))
            }),
        )
        .route(
            "/_fake/invocations/{id}/complete",
            post(
                |State(h): State<Handle>,
                 UrlPath(id): UrlPath<String>,
                 Json(c): Json<CompleteControl>| async move {
                    let failed: Vec<(&str, &str)> = c
                        .failed
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    match h.complete(&id, &failed) {
                        Ok(()) => StatusCode::NO_CONTENT.into_response(),
                        Err(e) => google_error(404, e.to_string()),
                    }
                },
            ),
        );
    google.merge(control).with_state(handle)
}

/// A running fake; stops when dropped.
pub struct FakeDataform {
    /// `http://127.0.0.1:PORT`, the value for `DATAFORM_ENDPOINT`.
    pub endpoint: String,
    pub handle: Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeDataform {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeDataform {
    /// Serves `compiled` (a `dataform compile --json` document) on a random loopback port.
    pub async fn start(compiled: &Value) -> anyhow::Result<Self> {
        Self::listen("127.0.0.1:0".parse()?, Handle::new(compiled)).await
    }

    async fn listen(addr: SocketAddr, handle: Handle) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let app = router(handle.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            endpoint: format!("http://{local}"),
            handle,
            task,
        })
    }
}

/// Serves the graph of a compiled JSON file at `addr`, for the local end-to-end stack.
pub async fn serve(addr: SocketAddr, graph_path: &Path) -> anyhow::Result<FakeDataform> {
    FakeDataform::listen(addr, Handle::from_file(graph_path)?).await
}
