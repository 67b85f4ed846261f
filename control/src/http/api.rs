//! The endpoints: routing, the admin token, and the JSON documents (see `control/API.md`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use smppgw_codec::receipt::MessageState;
use smppgw_engine::config::{ConfigErrors, Location};
use smppgw_engine::limits::CORE_STALL_MS;
use smppgw_engine::metrics::Metrics;
use smppgw_engine::msgid::{IdStyle, format_id, parse_id};
use smppgw_engine::runtime::{Gateway, GatewayControl, LookupIncomplete, ReloadError};
use smppgw_engine::snapshot::Snapshot;
use smppgw_engine::store::Record;
use tracing::{info, warn};

use super::{
    BODY_READ_TIMEOUT_MS, LOOKUP_TIMEOUT_MS, RELOAD_APPLY_WAIT_MS, RELOAD_TIMEOUT_MS, REQUEST_BODY_MAX_BYTES,
    REQUEST_TIMEOUT_MS,
};

/// A boxed, sendable future: what a [`ReloadFn`] returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What `POST /api/v1/config/reload` calls: fetch the configuration from its source (file,
/// PostgreSQL), hand it to the cores ([`GatewayControl::reload`]) and return the new version.
pub type ReloadFn = Arc<dyn Fn() -> BoxFuture<Result<u64, ReloadFailure>> + Send + Sync>;

/// Why a reload did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadFailure {
    /// The new configuration is invalid; the running one stays (HTTP 400, with the reasons).
    #[error("configuration refused: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The reload could not be done now (source unreachable, cores busy): retry later (HTTP 503).
    #[error("reload unavailable: {0}")]
    Unavailable(String),
}

impl From<ReloadError> for ReloadFailure {
    fn from(e: ReloadError) -> Self {
        match e {
            ReloadError::Invalid(errors) => errors.into(),
            // The engine may add kinds of refusal (the type is non-exhaustive): anything not
            // about the contents is the source being unavailable for now.
            other => ReloadFailure::Unavailable(other.to_string()),
        }
    }
}

impl From<ConfigErrors> for ReloadFailure {
    /// One reason per error, as `SOURCE:LINE: message` when it points into a file.
    fn from(errors: ConfigErrors) -> Self {
        let source = errors.source_name();
        ReloadFailure::Invalid(
            errors
                .errors()
                .iter()
                .map(|e| match (&e.location, e.location.line()) {
                    (_, Some(line)) => format!("{source}:{line}: {}", e.message),
                    (Location::Env(var), None) => format!("env:{var}: {}", e.message),
                    _ => e.message.clone(),
                })
                .collect(),
        )
    }
}

/// One backend `/ready` depends on (PostgreSQL, Redis): a name and a cheap, non-blocking check
/// that reports the backend's last known health (it must not do IO: it runs in the handler).
#[derive(Clone)]
pub struct Backend {
    name: String,
    check: Arc<dyn Fn() -> Result<(), String> + Send + Sync>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Backend {
    /// A backend whose health `check` reports: `Err(why)` while it is unhealthy.
    pub fn new(
        name: impl Into<String>,
        check: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        Self { name: name.into(), check: Arc::new(check) }
    }

    /// A backend healthy while `ok` is true.
    pub fn flag(name: impl Into<String>, ok: Arc<AtomicBool>) -> Self {
        Self::new(
            name,
            move || if ok.load(Ordering::Acquire) { Ok(()) } else { Err("unreachable".to_owned()) },
        )
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// What the API serves: the gateway's control handle and counters, the backends `/ready` checks,
/// and the reload callback.
#[derive(Clone)]
pub struct ApiState {
    control: Arc<GatewayControl>,
    metrics: Arc<Metrics>,
    backends: Vec<Backend>,
    ready_checks: Vec<ReadyCheckFn>,
    reload: Option<ReloadFn>,
    remote_lookup: Option<RemoteLookupFn>,
    extra_metrics: Vec<ExtraMetricsFn>,
    core_stall_limit: Duration,
}

/// Finds a message in state shared between nodes (Redis) when no core of this node holds it.
/// Incomplete when the shared state could not be asked.
pub type RemoteLookupFn =
    Arc<dyn Fn(u64) -> BoxFuture<Result<Option<Record>, LookupIncomplete>> + Send + Sync>;
/// A reason for `/ready` to fail, when there is one (Redis: another instance holds this node's
/// id).
pub type ReadyCheckFn = Arc<dyn Fn() -> Option<String> + Send + Sync>;
/// Appends more families to /metrics (the Redis link's).
pub type ExtraMetricsFn = Arc<dyn Fn(&mut String) + Send + Sync>;

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("backends", &self.backends)
            .field("reload", &self.reload.is_some())
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// State for a gateway's control handle and counters; no backends, no reload source.
    pub fn new(control: Arc<GatewayControl>, metrics: Arc<Metrics>) -> Self {
        Self {
            control,
            metrics,
            backends: Vec::new(),
            ready_checks: Vec::new(),
            reload: None,
            remote_lookup: None,
            extra_metrics: Vec::new(),
            core_stall_limit: Duration::from_millis(CORE_STALL_MS),
        }
    }

    /// How long an executor core may go without ticking before `/health` and `/ready` fail
    /// ([`CORE_STALL_MS`] unless set).
    #[must_use]
    pub fn with_core_stall_limit(mut self, limit: Duration) -> Self {
        self.core_stall_limit = limit;
        self
    }

    /// State for a running gateway.
    pub fn for_gateway(gw: &Gateway) -> Self {
        Self::new(gw.control(), gw.metrics.clone())
    }

    /// Adds a backend that must be healthy for `/ready`.
    #[must_use]
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.backends.push(backend);
        self
    }

    /// Adds a check that makes `/ready` fail, with its reason, while it returns one (unlike a
    /// backend's health, which is only reported).
    #[must_use]
    pub fn with_ready_check(mut self, check: impl Fn() -> Option<String> + Send + Sync + 'static) -> Self {
        self.ready_checks.push(Arc::new(check));
        self
    }

    /// Where `GET /api/v1/messages/{id}` looks when no core of this node holds the message.
    #[must_use]
    pub fn with_remote_lookup<F, Fut>(mut self, lookup: F) -> Self
    where
        F: Fn(u64) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<Record>, LookupIncomplete>> + Send + 'static,
    {
        self.remote_lookup = Some(Arc::new(move |id| Box::pin(lookup(id))));
        self
    }

    /// Appends families to /metrics.
    #[must_use]
    pub fn with_extra_metrics(mut self, render: impl Fn(&mut String) + Send + Sync + 'static) -> Self {
        self.extra_metrics.push(Arc::new(render));
        self
    }

    /// Sets what `POST /api/v1/config/reload` does. Without one, it answers 501.
    #[must_use]
    pub fn with_reload<F, Fut>(mut self, reload: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<u64, ReloadFailure>> + Send + 'static,
    {
        self.reload = Some(Arc::new(move || Box::pin(reload())));
        self
    }

    /// The gateway's control handle.
    pub fn control(&self) -> &Arc<GatewayControl> {
        &self.control
    }
}

/// What every connection shares.
pub(super) struct Shared {
    pub(super) state: ApiState,
    pub(super) token: Option<Arc<str>>,
}

type Resp = Response<Full<Bytes>>;

fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn json(status: StatusCode, value: &impl Serialize) -> Resp {
    match serde_json::to_vec(value) {
        Ok(mut body) => {
            body.push(b'\n');
            text(status, "application/json", body)
        }
        Err(e) => {
            warn!("cannot serialise a response: {e}");
            text(StatusCode::INTERNAL_SERVER_ERROR, "application/json", "{\"error\":\"internal error\"}\n")
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    reasons: &'a [String],
}

fn error(status: StatusCode, msg: &str) -> Resp {
    json(status, &ErrorBody { error: msg, reasons: &[] })
}

/// Permits for message lookups on the blocking pool ([`super::LOOKUPS_BLOCKING_MAX`]).
static LOOKUPS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(super::LOOKUPS_BLOCKING_MAX);

/// 503 with `retry-after`: the answer is not known now, and may be in a moment.
fn unavailable(msg: &str) -> Resp {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, msg);
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

fn method_not_allowed(allow: &'static str) -> Resp {
    let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// Routes one request; every outcome is a response.
pub(super) async fn handle(req: Request<Incoming>, shared: &Shared) -> Resp {
    match tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), route(req, shared)).await {
        Ok(r) => r,
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "request timed out"),
    }
}

/// Answers the one request of a connection that came past the connection limits: the probes
/// (`/health`, `/ready`) as usual, so that clients holding every slot cannot get the node
/// restarted or taken out of service; anything else 503.
pub(super) async fn handle_overflow(req: Request<Incoming>, shared: &Shared) -> Resp {
    let probe = matches!(*req.method(), Method::GET | Method::HEAD)
        && matches!(req.uri().path(), "/health" | "/ready");
    if probe { route(req, shared).await } else { unavailable("too many connections") }
}

async fn route(req: Request<Incoming>, shared: &Shared) -> Resp {
    let st = &shared.state;
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    let path = req.uri().path().to_owned();
    match path.as_str() {
        "/health" if get => match stalled_core(st) {
            None => text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
            Some(why) => {
                text(StatusCode::SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", format!("{why}\n"))
            }
        },
        "/ready" if get => ready(st),
        "/metrics" if get => {
            let mut body = crate::metrics::render(&st.metrics, &st.control.current());
            for extra in &st.extra_metrics {
                extra(&mut body);
            }
            text(StatusCode::OK, crate::metrics::CONTENT_TYPE, body)
        }
        "/api/v1/vendors" if get => json(StatusCode::OK, &vendors(&st.control.current())),
        "/api/v1/customers" if get => {
            let snap = st.control.current();
            match customers(&snap, req.uri().query()) {
                Some(page) => json(StatusCode::OK, &page),
                None => error(StatusCode::BAD_REQUEST, "offset and limit are whole numbers"),
            }
        }
        "/api/v1/config/reload" if *req.method() == Method::POST => reload(req, shared).await,
        "/health" | "/ready" | "/metrics" | "/api/v1/vendors" | "/api/v1/customers" => {
            method_not_allowed("GET, HEAD")
        }
        "/api/v1/config/reload" => method_not_allowed("POST"),
        p => match p.strip_prefix("/api/v1/messages/") {
            // A message's addresses and outcome are a customer's data: with a token configured,
            // reading them takes it too (the other GETs are operational state).
            Some(_) if get && !authorised(&req, shared.token.as_deref()) => unauthorised(),
            Some(id) if get => message(st, id, req.uri().query()).await,
            Some(_) => method_not_allowed("GET, HEAD"),
            None => error(StatusCode::NOT_FOUND, "no such endpoint"),
        },
    }
}

// ---- /health ----

/// Why the node is not alive: an executor core that has not run its ticker for
/// its stall limit ([`CORE_STALL_MS`]; hung without panicking: its sessions get no service, and only a restart
/// brings them back). Not while stopping: the cores leave their tickers to drain.
fn stalled_core(st: &ApiState) -> Option<String> {
    if st.control.shutting_down() {
        return None;
    }
    let cores = st.control.current().cores;
    let (core, age) = st.metrics.core_ticks.stalled(cores, st.core_stall_limit)?;
    Some(format!("executor core {core} has not run for {:.1} s", age.as_secs_f64()))
}

// ---- /ready ----

#[derive(Serialize)]
struct BackendJson<'a> {
    name: &'a str,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct ReadyJson<'a> {
    ready: bool,
    config_version: u64,
    vendor_binds_up: usize,
    vendor_binds: usize,
    backends: Vec<BackendJson<'a>>,
    reasons: Vec<String>,
    /// Settings a reload changed that only a restart applies (not a reason to be unready).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pending_restart: Vec<&'static str>,
}

fn ready(st: &ApiState) -> Resp {
    // The gateway cannot run without a snapshot, so the configuration is loaded whenever the API
    // has a control handle; the version says which one runs.
    let snap = st.control.current();
    let slots = snap.vendors.iter().flatten().flat_map(|v| v.slots.iter());
    let (up, total) = slots.fold((0, 0), |(u, t), s| (u + usize::from(s.up.load(Ordering::Relaxed)), t + 1));
    let mut reasons = Vec::new();
    if st.control.shutting_down() {
        // Draining after SIGTERM: the listeners are closed; a load balancer must stop sending.
        reasons.push("shutting down".to_owned());
    }
    if total == 0 {
        reasons.push("no vendor is configured".to_owned());
    } else if up == 0 {
        reasons.push(format!("none of the {total} vendor binds is up"));
    }
    reasons.extend(stalled_core(st));
    reasons.extend(st.ready_checks.iter().filter_map(|c| c()));
    let backends: Vec<BackendJson<'_>> = st
        .backends
        .iter()
        .map(|b| {
            // Reported, not a reason to be unready: the node carries on from local state (the
            // last configuration, local limits and queues), and a shared backend's outage would
            // otherwise take every node out of service at once.
            let r = (b.check)();
            BackendJson { name: &b.name, ok: r.is_ok(), error: r.err() }
        })
        .collect();
    let body = ReadyJson {
        ready: reasons.is_empty(),
        config_version: snap.version,
        vendor_binds_up: up,
        vendor_binds: total,
        backends,
        reasons,
        pending_restart: st.control.pending_restart(),
    };
    let status = if body.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    json(status, &body)
}

// ---- /api/v1/vendors ----

#[derive(Serialize)]
struct VendorsJson<'a> {
    config_version: u64,
    vendors: Vec<VendorJson<'a>>,
}

#[derive(Serialize)]
struct VendorJson<'a> {
    name: &'a str,
    host: &'a str,
    port: u16,
    bind_type: &'static str,
    window: u32,
    throughput_limit: u32,
    binds_up: usize,
    binds: Vec<BindJson>,
}

#[derive(Serialize)]
struct BindJson {
    slot: u32,
    core: usize,
    state: &'static str,
    load: u32,
    window: u32,
    capacity: u32,
    effective_capacity: u32,
    slowed: bool,
    sent: u64,
    reconnects: u64,
    /// The last error on the bind and when (`null` when none yet).
    last_error: Option<String>,
}

fn vendors(snap: &Snapshot) -> VendorsJson<'_> {
    let vendors = snap
        .vendors
        .iter()
        .flatten()
        .map(|v| {
            let binds: Vec<BindJson> = v
                .slots
                .iter()
                .map(|s| BindJson {
                    slot: s.slot,
                    core: s.core,
                    state: if s.up.load(Ordering::Relaxed) { "up" } else { "down" },
                    load: s.load.load(Ordering::Relaxed),
                    window: v.cfg.window,
                    capacity: s.capacity,
                    effective_capacity: s.effective_capacity.load(Ordering::Relaxed),
                    slowed: s.slowed.load(Ordering::Relaxed),
                    sent: s.sent.load(Ordering::Relaxed),
                    reconnects: s.reconnects.load(Ordering::Relaxed),
                    last_error: s.last_error().map(|(e, at)| format!("{e} (at unix {at})")),
                })
                .collect();
            VendorJson {
                name: &v.cfg.name,
                host: &v.cfg.host,
                port: v.cfg.port,
                bind_type: v.cfg.bind_type.as_str(),
                window: v.cfg.window,
                throughput_limit: v.cfg.throughput,
                binds_up: binds.iter().filter(|b| b.state == "up").count(),
                binds,
            }
        })
        .collect();
    VendorsJson { config_version: snap.version, vendors }
}

// ---- /api/v1/customers ----

/// Customers in one `/api/v1/customers` page at most (and by default): a config may hold a
/// hundred thousand.
const CUSTOMERS_PAGE_MAX: usize = 1_000;

#[derive(Serialize)]
struct CustomersJson<'a> {
    config_version: u64,
    /// Customers in the configuration.
    total: usize,
    customers: Vec<CustomerJson<'a>>,
    /// The `offset` of the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_offset: Option<usize>,
}

#[derive(Serialize)]
struct CustomerJson<'a> {
    system_id: &'a str,
    bound_sessions: u32,
    max_binds: u32,
    throughput_limit: u32,
    window: u32,
    bind_types: Vec<&'static str>,
    id_format: &'static str,
}

/// One page of the customers, `offset` and `limit` from the query (`limit` at most
/// [`CUSTOMERS_PAGE_MAX`], its default); `None` for a parameter that is not a number.
fn customers<'a>(snap: &'a Snapshot, query: Option<&str>) -> Option<CustomersJson<'a>> {
    let number = |key: &str, default: usize| match query_param(query, key) {
        Some(v) => v.parse::<usize>().ok(),
        None => Some(default),
    };
    let offset = number("offset", 0)?;
    let limit = number("limit", CUSTOMERS_PAGE_MAX)?.clamp(1, CUSTOMERS_PAGE_MAX);
    let total = snap.customers.iter().flatten().count();
    let customers = snap
        .customers
        .iter()
        .flatten()
        .skip(offset)
        .take(limit)
        .map(|c| CustomerJson {
            system_id: &c.cfg.system_id,
            bound_sessions: c.binds.load(Ordering::Relaxed),
            max_binds: c.cfg.max_binds,
            throughput_limit: c.cfg.throughput,
            window: c.cfg.effective_window(snap.config.server.window),
            bind_types: c.cfg.bind_types.iter().map(|b| b.as_str()).collect(),
            id_format: c.cfg.id_format.as_str(),
        })
        .collect();
    let next_offset = (offset.saturating_add(limit) < total).then(|| offset + limit);
    Some(CustomersJson { config_version: snap.version, total, customers, next_offset })
}

// ---- /api/v1/messages/{id} ----

#[derive(Serialize)]
struct MessageJson<'a> {
    id: String,
    customer: Option<&'a str>,
    vendor: Option<&'a str>,
    vendor_id: String,
    state: &'static str,
    #[serde(rename = "final")]
    is_final: bool,
    submitted_at: String,
    submitted_unix: u64,
    final_at: Option<String>,
    final_unix: Option<u64>,
    error_code: Option<u16>,
    receipt_requested: bool,
    parts: usize,
}

fn state_name(s: MessageState) -> &'static str {
    match s {
        MessageState::Scheduled => "scheduled",
        MessageState::Enroute => "enroute",
        MessageState::Delivered => "delivered",
        MessageState::Expired => "expired",
        MessageState::Deleted => "deleted",
        MessageState::Undeliverable => "undeliverable",
        MessageState::Accepted => "accepted",
        MessageState::Unknown => "unknown",
        MessageState::Rejected => "rejected",
        MessageState::Skipped => "skipped",
    }
}

/// The value of `key` in a query string, percent-decoded (`None` when absent or undecodable).
fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    let pair = query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then_some(v)
    })?;
    let bytes = pair.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let s = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(s, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Looks `id` up as the id a customer was given. With `?customer=SYSTEM_ID` it is read in that
/// customer's id format and must be that customer's message; without, it is tried as hex, then as
/// decimal, and a record counts only if its customer uses the format that found it.
async fn message(st: &ApiState, id: &str, query: Option<&str>) -> Resp {
    // The longest id is 20 decimal digits (u64::MAX).
    if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return error(StatusCode::BAD_REQUEST, "not a message id: expected 1 to 20 hex or decimal digits");
    }
    let snap = st.control.current();
    let customer = query_param(query, "customer");
    let asked_for_customer =
        query.is_some_and(|q| q.split('&').any(|kv| kv.split_once('=').map_or(kv, |(k, _)| k) == "customer"));
    if asked_for_customer && customer.is_none() {
        // Not read as "any customer": a filter that cannot be decoded must not widen the lookup.
        return error(StatusCode::BAD_REQUEST, "customer: not a percent-encoded UTF-8 system_id");
    }
    let candidates: Vec<(IdStyle, u64, Option<u32>)> = match customer {
        Some(system_id) => {
            let Some(c) = snap.customer(system_id.as_bytes()) else {
                return error(StatusCode::NOT_FOUND, "unknown customer");
            };
            match parse_id(id.as_bytes(), c.id_style) {
                Some(v) => vec![(c.id_style, v, Some(c.idx))],
                None => {
                    return error(StatusCode::BAD_REQUEST, "not a message id in this customer's id format");
                }
            }
        }
        None => {
            let mut v = Vec::with_capacity(2);
            for style in [IdStyle::Hex, IdStyle::Decimal] {
                if let Some(n) = parse_id(id.as_bytes(), style)
                    && !v.iter().any(|&(_, m, _)| m == n)
                {
                    v.push((style, n, None));
                }
            }
            if v.is_empty() {
                return error(StatusCode::BAD_REQUEST, "not a message id: too large for hex or decimal");
            }
            v
        }
    };
    // A candidate that could not be looked up everywhere (a core too busy to answer, Redis
    // down) may be the message: "no such message" is said only when every lookup answered.
    let mut unsure = false;
    for (style, shown_id, only_customer) in candidates {
        let control = st.control.clone();
        let Ok(permit) = LOOKUPS.try_acquire() else {
            return unavailable("too many message lookups at once");
        };
        let looked_up = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            control.lookup(shown_id, Duration::from_millis(LOOKUP_TIMEOUT_MS))
        })
        .await;
        let local = match looked_up {
            Ok(local) => local,
            Err(e) => {
                warn!("message lookup task failed: {e}");
                return error(StatusCode::INTERNAL_SERVER_ERROR, "lookup failed");
            }
        };
        // Another node may hold the receipt this node has not seen: Redis's copy wins over a
        // local one that is not final.
        let found = match (local, &st.remote_lookup) {
            (Ok(Some(r)), _) if r.state.is_final() => Some(r),
            (local, Some(remote)) => match (remote(shown_id).await, local) {
                (Ok(Some(r)), Ok(Some(l))) => Some(if r.state.is_final() { r } else { l }),
                (Ok(Some(r)), _) => Some(r),
                (_, Ok(Some(l))) => Some(l),
                (shared, local) => {
                    unsure |= shared.is_err() || local.is_err();
                    None
                }
            },
            (Ok(local), None) => local,
            (Err(LookupIncomplete), None) => {
                unsure = true;
                None
            }
        };
        let Some(rec) = found else { continue };
        let owner = snap.customer_at(rec.customer);
        let matches = match only_customer {
            Some(idx) => rec.customer == idx,
            // A customer removed since keeps its messages findable in either format.
            None => owner.is_none_or(|c| c.id_style == style),
        };
        if matches {
            return json(StatusCode::OK, &message_json(&snap, &rec, style));
        }
    }
    if unsure {
        return unavailable("the message could not be looked up everywhere now; try again");
    }
    error(StatusCode::NOT_FOUND, "no such message")
}

fn message_json<'a>(snap: &'a Snapshot, rec: &Record, style: IdStyle) -> MessageJson<'a> {
    let mut buf = [0u8; 20];
    let id = String::from_utf8_lossy(format_id(rec.shown_id, style, &mut buf)).into_owned();
    let is_final = rec.state.is_final();
    let final_unix = (is_final && rec.final_at > 0).then_some(rec.final_at);
    MessageJson {
        id,
        customer: snap.customer_at(rec.customer).map(|c| c.cfg.system_id.as_str()),
        vendor: snap.vendor(rec.vendor).map(|v| v.cfg.name.as_str()),
        vendor_id: String::from_utf8_lossy(&rec.vendor_id).into_owned(),
        state: state_name(rec.state),
        is_final,
        submitted_at: rfc3339(rec.submitted),
        submitted_unix: rec.submitted,
        final_at: final_unix.map(rfc3339),
        final_unix,
        error_code: (rec.error != 0).then_some(rec.error),
        receipt_requested: rec.receipts.any(),
        parts: rec.siblings.len() + 1,
    }
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
fn rfc3339(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Days to civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

// ---- POST /api/v1/config/reload ----

/// Whether the request carries the admin token (always true when none is configured). The
/// comparison takes the same time wherever the first difference is.
fn authorised<B>(req: &Request<B>, token: Option<&str>) -> bool {
    let Some(token) = token else { return true };
    let Some(given) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme is case-insensitive (RFC 9110 11.1); the token is not.
        .and_then(|v| v.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")))
        .map(|(_, token)| token)
    else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Serialize)]
struct ReloadJson {
    version: u64,
    applied_everywhere: bool,
    /// Settings the new configuration changed that only a restart applies.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pending_restart: Vec<&'static str>,
}

/// 401 with the challenge.
fn unauthorised() -> Resp {
    let mut r = error(StatusCode::UNAUTHORIZED, "admin token required: Authorization: Bearer <token>");
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

async fn reload(req: Request<Incoming>, shared: &Shared) -> Resp {
    if !authorised(&req, shared.token.as_deref()) {
        return unauthorised();
    }
    // No body is needed; one within bounds is read and ignored, so the connection stays usable.
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > REQUEST_BODY_MAX_BYTES as u64) {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    }
    let body = Limited::new(req.into_body(), REQUEST_BODY_MAX_BYTES).collect();
    match tokio::time::timeout(Duration::from_millis(BODY_READ_TIMEOUT_MS), body).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
        }
        Ok(Err(_)) => return error(StatusCode::BAD_REQUEST, "cannot read the request body"),
        Err(_) => return error(StatusCode::REQUEST_TIMEOUT, "request body timed out"),
    }
    let st = &shared.state;
    let Some(reload) = st.reload.clone() else {
        return error(StatusCode::NOT_IMPLEMENTED, "no reload source is configured");
    };
    let outcome = tokio::time::timeout(Duration::from_millis(RELOAD_TIMEOUT_MS), reload()).await;
    match outcome {
        Ok(Ok(version)) => {
            let applied_everywhere = wait_applied(&st.control, version).await;
            info!(version, applied_everywhere, "config reloaded through the HTTP API");
            let pending_restart = shared.state.control.pending_restart();
            json(StatusCode::OK, &ReloadJson { version, applied_everywhere, pending_restart })
        }
        Ok(Err(ReloadFailure::Invalid(reasons))) => {
            warn!(reasons = %reasons.join("; "), "config reload refused");
            json(StatusCode::BAD_REQUEST, &ErrorBody { error: "configuration refused", reasons: &reasons })
        }
        Ok(Err(ReloadFailure::Unavailable(why))) => {
            warn!("config reload unavailable: {why}");
            json(StatusCode::SERVICE_UNAVAILABLE, &ErrorBody { error: "reload unavailable", reasons: &[why] })
        }
        // The reload itself is not cancelled (it runs on the blocking pool and may still
        // publish): the answer must not read as "nothing happened".
        Err(_) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &ErrorBody {
                error: "reload timed out",
                reasons: &[format!(
                    "it may still be applied: the running configuration was version {} when this request gave up; \
                     GET /ready shows config_version",
                    shared.state.control.current().version
                )],
            },
        ),
    }
}

/// Waits up to [`RELOAD_APPLY_WAIT_MS`] for every core to run `version`.
async fn wait_applied(control: &GatewayControl, version: u64) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(RELOAD_APPLY_WAIT_MS);
    loop {
        if control.applied_everywhere(version) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_lookups_beyond_their_share_of_the_blocking_pool_are_503_at_once() {
        // Goal: with LOOKUPS_BLOCKING_MAX lookups waiting on the cores, another is answered 503
        // with retry-after at once (it would have queued for a blocking thread that reloads and
        // file writes need); once they end, lookups are answered again.
        let mut cfg = smppgw_engine::config::Config::default();
        cfg.server.listen = "127.0.0.1:0".parse().expect("addr");
        cfg.server.cores = 1;
        cfg.server.shutdown_grace_ms = 200;
        let gw = smppgw_engine::start(cfg).expect("the gateway starts");
        let st = ApiState::for_gateway(&gw);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let held = LOOKUPS.try_acquire_many(super::super::LOOKUPS_BLOCKING_MAX as u32).expect("permits");
        let busy = rt.block_on(message(&st, "1", None));
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(busy.headers().contains_key(header::RETRY_AFTER));
        drop(held);
        let free = rt.block_on(message(&st, "1", None));
        assert_eq!(free.status(), StatusCode::NOT_FOUND, "no such message, looked up everywhere");
        gw.shutdown();
        gw.join();
    }

    #[test]
    fn dates_are_utc_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_735_689_599), "2024-12-31T23:59:59Z");
        assert_eq!(rfc3339(4_107_542_400), "2100-03-01T00:00:00Z");
    }

    #[test]
    fn query_params_are_found_and_decoded() {
        assert_eq!(query_param(Some("customer=c1"), "customer").as_deref(), Some("c1"));
        assert_eq!(query_param(Some("a=1&customer=a%20b+c"), "customer").as_deref(), Some("a b+c"));
        // A system_id may hold a '+' (any printable character but a space): it is not a space.
        assert_eq!(query_param(Some("customer=acme+uk"), "customer").as_deref(), Some("acme+uk"));
        assert_eq!(query_param(Some("customer=%zz"), "customer"), None);
        assert_eq!(query_param(Some("customerx=1"), "customer"), None);
        assert_eq!(query_param(None, "customer"), None);
    }

    #[test]
    fn the_token_must_match_exactly() {
        let req = |auth: Option<&str>| {
            let mut b = Request::builder();
            if let Some(a) = auth {
                b = b.header(header::AUTHORIZATION, a);
            }
            b.body(()).unwrap()
        };
        assert!(authorised(&req(None), None), "no token configured");
        assert!(authorised(&req(Some("Bearer s3cret")), Some("s3cret")));
        assert!(authorised(&req(Some("bearer s3cret")), Some("s3cret")), "the scheme in any case");
        assert!(!authorised(&req(Some("Bearer S3CRET")), Some("s3cret")), "the token exactly");
        assert!(!authorised(&req(Some("Basic s3cret")), Some("s3cret")));
        assert!(!authorised(&req(None), Some("s3cret")));
        assert!(!authorised(&req(Some("Bearer s3cre")), Some("s3cret")));
        assert!(!authorised(&req(Some("Bearer s3cret2")), Some("s3cret")));
        assert!(!authorised(&req(Some("Basic s3cret")), Some("s3cret")));
    }

    #[test]
    fn config_errors_become_reasons() {
        let mut cfg = smppgw_engine::config::Config::default();
        cfg.customers.push(smppgw_engine::config::CustomerConfig::new("", "x"));
        let e = cfg.validate().expect_err("an empty system_id is invalid");
        match ReloadFailure::from(ReloadError::Invalid(e)) {
            ReloadFailure::Invalid(reasons) => {
                assert!(!reasons.is_empty());
                assert!(
                    reasons.iter().all(|r| !r.starts_with("<config>")),
                    "no meaningless source: {reasons:?}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
