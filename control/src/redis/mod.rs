//! Redis as the state that makes several nodes act as one: the receipt store (vendor id -> our
//! message, and each message's state), per-customer queues of receipts for customers bound on
//! another node, global rate limits as leased quotas, and global bind counts.
//!
//! Everything here runs on the control thread's tokio runtime; the cores only exchange bounded
//! batches with it ([`smppgw_engine::remote`]). Writes are pipelined in batches of up to
//! [`WRITE_BATCH`] records, never one round trip per message.
//!
//! Redis down: the node keeps serving from local state. Writes wait in a backlog bounded by
//! [`WRITE_BACKLOG_MAX`] and are replayed when Redis returns (beyond the bound the oldest are
//! dropped and counted: they stay in the node's own store, only other nodes cannot see them);
//! receipts for customers with no receiving bind here stay in the local queue; leases turn off,
//! so local limits apply alone; lookups answer "not found". The node reconnects with backoff.
//!
//! Keys (prefix configurable, default `smppgw`), all with a TTL:
//!
//! | key | value |
//! |---|---|
//! | `{p}:v:{vendor}:{vendor id}` | the message record ([`wire`]), receipt TTL |
//! | `{p}:m:{our id}` | `{vendor}:{vendor id}`, pointer to the above, receipt TTL |
//! | `{p}:dlrq:{system_id}` | list of queued receipts/MO for the customer, receipt TTL |
//! | `{p}:binds:{system_id}` | hash node id -> `{binds}:{unix ms}` |
//! | `{p}:rate:{kind}:{name}:{window}` | units granted in that window, 2 windows |

pub mod wire;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::Value;
use redis::aio::MultiplexedConnection;
use smppgw_engine::core::Found;
use smppgw_engine::deliveries::Delivery;
use smppgw_engine::lease::LeaseSpec;
use smppgw_engine::remote::{RemoteEnd, RemoteOp};
use smppgw_engine::runtime::{Control, GatewayControl};
use smppgw_engine::snapshot::Snapshot;
use smppgw_engine::store::{Record, alternate_ids, canonical_id, shard_key, shard_of};
use tokio::sync::Notify;
use tracing::{info, warn};

/// Only the control thread touches it (never a core).
#[allow(clippy::disallowed_types)]
type Lock<T> = std::sync::Mutex<T>;

/// Records written per pipeline.
pub const WRITE_BATCH: usize = 2_000;
/// Record writes waiting while Redis is slow or down; beyond it the oldest are dropped (counted
/// in `smppgw_redis_writes_dropped_total`; the node's own store still has them).
pub const WRITE_BACKLOG_MAX: usize = 1_000_000;
/// Receipts waiting for a message another node may have stored.
pub const MISS_PENDING_MAX: usize = 100_000;
/// When a receipt's lookup is retried while no node's record is found (a node writes its records
/// behind by up to a few milliseconds, so a fast receipt can beat them): then it is given up
/// here and stays parked in the core until the early-receipt TTL.
pub const MISS_RETRY_MS: [u64; 6] = [10, 50, 200, 1_000, 3_000, 10_000];
/// Lookups per pipeline.
pub const LOOKUP_BATCH: usize = 256;
/// Deliveries taken from one customer's queue per poll.
pub const DELIVERY_POP_BATCH: usize = 256;
/// How often queues of customers bound here are polled.
pub const POLL_MS: u64 = 20;
/// How often leases are topped up.
pub const LEASE_TICK_MS: u64 = 10;
/// How often bind counts are published and read.
pub const BINDS_PUBLISH_MS: u64 = 1_000;
/// A node's published bind count older than this is ignored (the node is gone).
pub const BINDS_STALE_MS: u64 = 5_000;
/// Connect and response timeout.
pub const TIMEOUT_MS: u64 = 1_000;
/// Reconnect backoff bounds.
pub const RECONNECT_MIN_MS: u64 = 100;
/// Upper bound of the reconnect backoff.
pub const RECONNECT_MAX_MS: u64 = 2_000;

/// Every metric family [`RedisHealth::render`] writes.
pub const METRIC_FAMILIES: &[&str] = &[
    "smppgw_redis_up",
    "smppgw_redis_errors_total",
    "smppgw_redis_connects_total",
    "smppgw_redis_records_written_total",
    "smppgw_redis_write_backlog",
    "smppgw_redis_writes_dropped_total",
    "smppgw_redis_lookups_total",
    "smppgw_redis_lookups_found_total",
    "smppgw_redis_lookups_given_up_total",
    "smppgw_redis_deliveries_queued_total",
    "smppgw_redis_deliveries_taken_total",
    "smppgw_redis_deliveries_trimmed_total",
    "smppgw_redis_lease_requests_total",
];

const LEASE_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local win = tonumber(ARGV[2])
local w = math.floor(now / win)
local k = KEYS[1] .. ':' .. w
local used = tonumber(redis.call('GET', k) or '0')
local grant = tonumber(ARGV[1]) - used
local want = tonumber(ARGV[3])
if grant > want then grant = want end
if grant > 0 then
  redis.call('INCRBY', k, grant)
  redis.call('PEXPIRE', k, win * 2)
else
  grant = 0
end
return {grant, w, win - (now % win)}
";

/// Where this node finds Redis and how it names its keys.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://host:port/db`.
    pub url: String,
    /// Key prefix, so that several gateways (or tests) can share one Redis.
    pub prefix: String,
}

impl RedisOptions {
    /// Options for `url` with the default prefix `smppgw`.
    pub fn new(url: impl Into<String>) -> Self {
        RedisOptions { url: url.into(), prefix: "smppgw".into() }
    }

    /// Sets the key prefix.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
}

/// What the node knows of its Redis link, for /ready and /metrics.
#[derive(Debug, Default)]
pub struct RedisHealth {
    up: AtomicBool,
    errors: AtomicU64,
    connects: AtomicU64,
    written: AtomicU64,
    backlog: AtomicU64,
    dropped: AtomicU64,
    lookups: AtomicU64,
    found: AtomicU64,
    given_up: AtomicU64,
    deliveries_out: AtomicU64,
    deliveries_in: AtomicU64,
    trimmed: AtomicU64,
    lease_requests: AtomicU64,
    last_error: Lock<Option<String>>,
}

impl RedisHealth {
    /// Whether Redis answers.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// For /ready: `Err(why)` while Redis is unreachable.
    pub fn check(&self) -> Result<(), String> {
        if self.is_up() {
            return Ok(());
        }
        let e = self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        Err(e.unwrap_or_else(|| "not connected yet".into()))
    }

    /// Record writes waiting for Redis.
    pub fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed)
    }

    /// Records written to Redis so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Appends the Redis families in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let fams: [(&str, &str, &str, u64); 13] = [
            ("smppgw_redis_up", "gauge", "1 while Redis answers", u64::from(self.is_up())),
            (
                "smppgw_redis_errors_total",
                "counter",
                "Redis commands or connects that failed",
                load(&self.errors),
            ),
            ("smppgw_redis_connects_total", "counter", "Connections made to Redis", load(&self.connects)),
            (
                "smppgw_redis_records_written_total",
                "counter",
                "Message records written to Redis",
                load(&self.written),
            ),
            ("smppgw_redis_write_backlog", "gauge", "Record writes waiting for Redis", load(&self.backlog)),
            (
                "smppgw_redis_writes_dropped_total",
                "counter",
                "Record writes dropped for the backlog bound (kept in the local store)",
                load(&self.dropped),
            ),
            (
                "smppgw_redis_lookups_total",
                "counter",
                "Messages looked up in Redis (receipts and queries not matched locally)",
                load(&self.lookups),
            ),
            (
                "smppgw_redis_lookups_found_total",
                "counter",
                "Lookups that found the message",
                load(&self.found),
            ),
            (
                "smppgw_redis_lookups_given_up_total",
                "counter",
                "Receipt lookups given up after every retry",
                load(&self.given_up),
            ),
            (
                "smppgw_redis_deliveries_queued_total",
                "counter",
                "Receipts/MO queued in Redis for a customer bound on another node",
                load(&self.deliveries_out),
            ),
            (
                "smppgw_redis_deliveries_taken_total",
                "counter",
                "Receipts/MO taken from Redis for customers bound here",
                load(&self.deliveries_in),
            ),
            (
                "smppgw_redis_deliveries_trimmed_total",
                "counter",
                "Queued receipts/MO dropped (oldest first) for the queue bound",
                load(&self.trimmed),
            ),
            (
                "smppgw_redis_lease_requests_total",
                "counter",
                "Quota requests made for global rate limits",
                load(&self.lease_requests),
            ),
        ];
        for (name, kind, help, v) in fams {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
    }
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn add(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

struct Inner {
    prefix: String,
    node_id: u32,
    health: Arc<RedisHealth>,
    control: Arc<GatewayControl>,
    conn: Lock<Option<MultiplexedConnection>>,
    broken: Notify,
    /// The cores' view of `health.up`.
    engine_up: Arc<AtomicBool>,
    lease_sha: Lock<String>,
}

/// A running Redis link. Cloneable; its tasks live on the runtime it was started on.
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

impl Redis {
    /// Starts the link's tasks on the current tokio runtime. Never fails: Redis down at start
    /// is the same degraded mode as Redis down later (local state, reconnect with backoff).
    pub fn start(opts: RedisOptions, control: Arc<GatewayControl>, end: RemoteEnd) -> Redis {
        let node_id = control.current().config.server.node_id;
        let inner = Arc::new(Inner {
            prefix: opts.prefix.clone(),
            node_id,
            health: Arc::default(),
            control,
            conn: Lock::new(None),
            broken: Notify::new(),
            engine_up: end.up.clone(),
            lease_sha: Lock::new(String::new()),
        });
        tokio::spawn(supervise(inner.clone(), opts.url));
        tokio::spawn(write_loop(inner.clone(), end));
        tokio::spawn(poll_deliveries(inner.clone()));
        tokio::spawn(keep_leases(inner.clone()));
        tokio::spawn(publish_binds(inner.clone()));
        Redis { inner }
    }

    /// Link health and counters.
    pub fn health(&self) -> Arc<RedisHealth> {
        self.inner.health.clone()
    }

    /// The message a customer knows by `shown_id`, as the shared store holds it.
    pub async fn lookup(&self, shown_id: u64) -> Option<Record> {
        lookup_shown(&self.inner, shown_id).await
    }
}

impl Inner {
    fn conn(&self) -> Option<MultiplexedConnection> {
        if !self.health.is_up() {
            return None;
        }
        self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn fail(&self, what: &str, e: &redis::RedisError) {
        add(&self.health.errors, 1);
        let msg = format!("{what}: {e}");
        if self.health.up.swap(false, Ordering::AcqRel) {
            warn!("Redis unreachable, serving from local state: {msg}");
        }
        self.engine_up.store(false, Ordering::Release);
        *self.health.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(msg);
        self.broken.notify_one();
    }

    fn key(&self, rest: std::fmt::Arguments<'_>) -> String {
        format!("{}:{}", self.prefix, rest)
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.control.current()
    }
}

async fn supervise(inner: Arc<Inner>, url: String) {
    let mut backoff = RECONNECT_MIN_MS;
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Duration::from_millis(TIMEOUT_MS))
        .set_response_timeout(Duration::from_millis(TIMEOUT_MS));
    loop {
        let attempt = async {
            let client = redis::Client::open(url.as_str())?;
            let mut conn = client.get_multiplexed_async_connection_with_config(&cfg).await?;
            let sha: String =
                redis::cmd("SCRIPT").arg("LOAD").arg(LEASE_SCRIPT).query_async(&mut conn).await?;
            Ok::<_, redis::RedisError>((conn, sha))
        };
        match attempt.await {
            Ok((conn, sha)) => {
                *inner.lease_sha.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = sha;
                *inner.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(conn);
                add(&inner.health.connects, 1);
                inner.health.up.store(true, Ordering::Release);
                inner.engine_up.store(true, Ordering::Release);
                info!("Redis connected");
                backoff = RECONNECT_MIN_MS;
                inner.broken.notified().await;
                *inner.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            }
            Err(e) => {
                inner.fail("connect", &e);
                // The permit `fail` left is for a live connection; there is none.
                let _ = tokio::time::timeout(Duration::ZERO, inner.broken.notified()).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(backoff)).await;
        backoff = (backoff * 2).min(RECONNECT_MAX_MS);
    }
}

/// A record write waiting for Redis.
struct Write {
    key: String,
    value: Vec<u8>,
    /// `{p}:m:{id}` keys to point at `key` (first write only).
    pointers: Vec<String>,
    pointer: String,
    ttl: u64,
}

struct Miss {
    due: Instant,
    attempt: usize,
    vendor: u32,
    id: Bytes,
}

async fn write_loop(inner: Arc<Inner>, end: RemoteEnd) {
    let mut backlog: VecDeque<Write> = VecDeque::new();
    let mut misses: VecDeque<Miss> = VecDeque::new();
    let mut deliveries: Vec<Delivery> = Vec::new();
    loop {
        let snap = inner.snapshot();
        let ttl = u64::from(snap.config.server.receipt_ttl_secs).max(1);
        let mut got = 0usize;
        while backlog.len() < WRITE_BATCH * 4 {
            let Ok(batch) = end.ops.try_recv() else { break };
            got += batch.len();
            for op in batch {
                match op {
                    RemoteOp::Put { record, new } => {
                        let Some(w) = make_write(&inner, &snap, &record, new, ttl) else { continue };
                        if backlog.len() >= WRITE_BACKLOG_MAX {
                            backlog.pop_front();
                            add(&inner.health.dropped, 1);
                        }
                        backlog.push_back(w);
                    }
                    RemoteOp::Miss { vendor, id } => {
                        if misses.len() < MISS_PENDING_MAX {
                            let due = Instant::now() + Duration::from_millis(MISS_RETRY_MS[0]);
                            misses.push_back(Miss { due, attempt: 0, vendor, id });
                        } else {
                            add(&inner.health.given_up, 1);
                        }
                    }
                    RemoteOp::Query { shown_id, customer, reply } => {
                        let inner = inner.clone();
                        tokio::spawn(async move {
                            let found =
                                lookup_shown(&inner, shown_id).await.filter(|r| r.customer == customer);
                            let found = found.map(|record| {
                                let snap = inner.snapshot();
                                let shard = shard_of(
                                    record.vendor,
                                    &shard_key(&canonical_id(&record.vendor_id)),
                                    snap.cores,
                                ) as u16;
                                Box::new(Found { shard, record })
                            });
                            answer_query(&inner, reply, found).await;
                        });
                    }
                    RemoteOp::Deliver(d) => deliveries.push(*d),
                }
            }
        }
        inner.health.backlog.store(backlog.len() as u64, Ordering::Relaxed);
        let conn = inner.conn();
        match conn {
            Some(mut conn) => {
                flush_writes(&inner, &mut conn, &mut backlog).await;
                if !deliveries.is_empty() {
                    push_deliveries(&inner, &mut conn, &snap, &mut deliveries).await;
                }
                if misses.front().is_some_and(|m| m.due <= Instant::now()) {
                    resolve_misses(&inner, &mut conn, &snap, &mut misses).await;
                }
            }
            None => {
                // Nobody else can take them now: back to the customer's local queue.
                hand_back(&inner, &snap, std::mem::take(&mut deliveries)).await;
            }
        }
        inner.health.backlog.store(backlog.len() as u64, Ordering::Relaxed);
        if got == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

fn make_write(inner: &Inner, snap: &Snapshot, rec: &Record, new: bool, ttl: u64) -> Option<Write> {
    let value = wire::encode_record(rec, snap)?;
    let vendor = &snap.vendor(rec.vendor)?.cfg.name;
    let canonical = String::from_utf8_lossy(&canonical_id(&rec.vendor_id)).into_owned();
    let pointer = format!("{vendor}:{canonical}");
    let key = inner.key(format_args!("v:{pointer}"));
    let pointers = if new {
        std::iter::once(rec.shown_id)
            .chain(rec.siblings.iter().copied())
            .map(|id| inner.key(format_args!("m:{id}")))
            .collect()
    } else {
        Vec::new()
    };
    Some(Write { key, value, pointers, pointer, ttl })
}

async fn flush_writes(inner: &Inner, conn: &mut MultiplexedConnection, backlog: &mut VecDeque<Write>) {
    while !backlog.is_empty() {
        let n = backlog.len().min(WRITE_BATCH);
        let mut pipe = redis::pipe();
        for w in backlog.iter().take(n) {
            pipe.cmd("SET").arg(&w.key).arg(&w.value).arg("EX").arg(w.ttl).ignore();
            for p in &w.pointers {
                pipe.cmd("SET").arg(p).arg(&w.pointer).arg("EX").arg(w.ttl).ignore();
            }
        }
        match pipe.query_async::<()>(conn).await {
            Ok(()) => {
                backlog.drain(..n);
                add(&inner.health.written, n as u64);
            }
            Err(e) => {
                // Kept, in order, for when Redis is back.
                inner.fail("writing records", &e);
                return;
            }
        }
    }
}

fn list_key(inner: &Inner, system_id: &str) -> String {
    inner.key(format_args!("dlrq:{system_id}"))
}

async fn push_deliveries(
    inner: &Inner,
    conn: &mut MultiplexedConnection,
    snap: &Snapshot,
    deliveries: &mut Vec<Delivery>,
) {
    let batch = std::mem::take(deliveries);
    let ttl = u64::from(snap.config.server.receipt_ttl_secs).max(1);
    let max = snap.config.server.receipt_queue_max.max(1);
    let mut pipe = redis::pipe();
    let mut pushed = 0usize;
    for d in &batch {
        let Some(c) = snap.customer_at(d.customer) else { continue };
        let key = list_key(inner, &c.cfg.system_id);
        pipe.cmd("RPUSH").arg(&key).arg(wire::encode_delivery(d));
        pipe.cmd("LTRIM").arg(&key).arg(-i64::from(max)).arg(-1).ignore();
        pipe.cmd("EXPIRE").arg(&key).arg(ttl).ignore();
        pushed += 1;
    }
    match pipe.query_async::<Vec<i64>>(conn).await {
        Ok(lens) => {
            add(&inner.health.deliveries_out, pushed as u64);
            let over: u64 = lens.iter().map(|&l| (l - i64::from(max)).max(0) as u64).sum();
            // Each push past the bound drops exactly one (the oldest).
            add(&inner.health.trimmed, over.min(pushed as u64));
        }
        Err(e) => {
            inner.fail("queueing receipts", &e);
            hand_back(inner, snap, batch).await;
        }
    }
}

/// Gives deliveries back to their customers' home cores on this node.
async fn hand_back(inner: &Inner, snap: &Snapshot, batch: Vec<Delivery>) {
    if batch.is_empty() {
        return;
    }
    let cores = inner.control.cores().max(1);
    let mut by_core: HashMap<usize, Vec<Delivery>> = HashMap::new();
    for d in batch {
        if snap.customer_at(d.customer).is_some() {
            by_core.entry(d.customer as usize % cores).or_default().push(d);
        }
    }
    for (core, ds) in by_core {
        let n = ds.len();
        if !to_core(inner, core, Control::Deliveries(ds)).await {
            warn!(core, n, "receipts dropped: core control queue full");
        }
    }
}

/// Tries to hand a message to a core for this long while its control queue is full (the cores
/// drain it every few milliseconds, so only a stalled core makes this give up).
const CORE_SEND_PATIENCE_MS: u64 = 500;

/// Hands `msg` to a core, waiting while its control queue is full; false when it stayed full.
async fn to_core(inner: &Inner, core: usize, mut msg: Control) -> bool {
    for _ in 0..CORE_SEND_PATIENCE_MS {
        match inner.control.send_to_core(core, msg) {
            Ok(()) => return true,
            Err(m) => msg = m,
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    false
}

async fn answer_query(inner: &Inner, reply: smppgw_engine::core::ReplyTo, found: Option<Box<Found>>) {
    if !to_core(inner, usize::from(reply.core), Control::QueryAnswer { reply, found }).await {
        warn!("query answer dropped: core control queue full");
    }
}

async fn resolve_misses(
    inner: &Inner,
    conn: &mut MultiplexedConnection,
    snap: &Snapshot,
    misses: &mut VecDeque<Miss>,
) {
    let now = Instant::now();
    let mut due = Vec::new();
    let mut later = VecDeque::with_capacity(misses.len());
    while let Some(m) = misses.pop_front() {
        if m.due <= now && due.len() < LOOKUP_BATCH {
            due.push(m);
        } else {
            later.push_back(m);
        }
    }
    *misses = later;
    let mut pipe = redis::pipe();
    for m in &due {
        let vendor = snap.vendor(m.vendor).map(|v| v.cfg.name.clone()).unwrap_or_default();
        let c = canonical_id(&m.id);
        let keys: Vec<String> = std::iter::once(c.clone())
            .chain(alternate_ids(&c))
            .map(|k| inner.key(format_args!("v:{vendor}:{}", String::from_utf8_lossy(&k))))
            .collect();
        pipe.cmd("MGET").arg(keys);
    }
    add(&inner.health.lookups, due.len() as u64);
    let answers: Vec<Vec<Option<Vec<u8>>>> = match pipe.query_async(conn).await {
        Ok(a) => a,
        Err(e) => {
            inner.fail("looking up receipts", &e);
            misses.extend(due);
            return;
        }
    };
    for (m, vals) in due.into_iter().zip(answers) {
        let rec = vals.into_iter().flatten().find_map(|v| wire::decode_record(&v, snap));
        match rec {
            Some(rec) => {
                add(&inner.health.found, 1);
                let shard = shard_of(rec.vendor, &shard_key(&canonical_id(&rec.vendor_id)), snap.cores);
                if !to_core(inner, shard, Control::Record(Box::new(rec))).await {
                    warn!(shard, "found record dropped: core control queue full");
                }
            }
            None if m.attempt + 1 < MISS_RETRY_MS.len() => {
                let due = Instant::now() + Duration::from_millis(MISS_RETRY_MS[m.attempt + 1]);
                misses.push_back(Miss { due, attempt: m.attempt + 1, ..m });
            }
            None => add(&inner.health.given_up, 1),
        }
    }
    misses.make_contiguous().sort_by_key(|m| m.due);
}

async fn lookup_shown(inner: &Inner, shown_id: u64) -> Option<Record> {
    let mut conn = inner.conn()?;
    add(&inner.health.lookups, 1);
    let mkey = inner.key(format_args!("m:{shown_id}"));
    let ptr: Option<String> = match redis::cmd("GET").arg(mkey).query_async(&mut conn).await {
        Ok(p) => p,
        Err(e) => {
            inner.fail("looking up a message", &e);
            return None;
        }
    };
    let ptr = ptr?;
    let vkey = inner.key(format_args!("v:{ptr}"));
    let val: Option<Vec<u8>> = match redis::cmd("GET").arg(vkey).query_async(&mut conn).await {
        Ok(v) => v,
        Err(e) => {
            inner.fail("looking up a message", &e);
            return None;
        }
    };
    let rec = wire::decode_record(&val?, &inner.snapshot())?;
    add(&inner.health.found, 1);
    // A sibling part of a long message points at the part that carries the receipt.
    Some(Record { shown_id, ..rec })
}

async fn poll_deliveries(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_millis(POLL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(mut conn) = inner.conn() else { continue };
        let snap = inner.snapshot();
        let bound: Vec<(u32, String)> = snap
            .customers
            .iter()
            .flatten()
            .filter(|c| c.receivers.load(Ordering::Acquire) > 0)
            .map(|c| (c.idx, list_key(&inner, &c.cfg.system_id)))
            .collect();
        if bound.is_empty() {
            continue;
        }
        let mut pipe = redis::pipe();
        for (_, key) in &bound {
            pipe.cmd("LPOP").arg(key).arg(DELIVERY_POP_BATCH);
        }
        let popped: Vec<Value> = match pipe.query_async(&mut conn).await {
            Ok(v) => v,
            Err(e) => {
                inner.fail("taking queued receipts", &e);
                continue;
            }
        };
        let cores = inner.control.cores().max(1);
        for ((idx, key), v) in bound.iter().zip(popped) {
            let raw: Vec<Vec<u8>> = match v {
                Value::Array(items) => items
                    .into_iter()
                    .filter_map(|i| match i {
                        Value::BulkString(b) => Some(b),
                        _ => None,
                    })
                    .collect(),
                _ => continue,
            };
            if raw.is_empty() {
                continue;
            }
            let batch: Vec<Delivery> = raw.iter().filter_map(|b| wire::decode_delivery(b, *idx)).collect();
            let n = batch.len() as u64;
            if to_core(&inner, *idx as usize % cores, Control::Deliveries(batch)).await {
                add(&inner.health.deliveries_in, n);
            } else {
                // Back to the head of the queue, in order.
                let mut back = redis::cmd("LPUSH");
                back.arg(key);
                for b in raw.iter().rev() {
                    back.arg(b);
                }
                if let Err(e) = back.query_async::<()>(&mut conn).await {
                    inner.fail("returning queued receipts", &e);
                }
            }
        }
    }
}

/// A lease's state on this node.
struct LeaseState {
    window: i64,
    end: Instant,
    last_taken: u64,
    /// Units taken per tick, smoothed.
    rate: f64,
    /// Redis granted less than asked: the window is (nearly) used up; ask again only slowly.
    short_at: Option<Instant>,
}

async fn keep_leases(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_millis(LEASE_TICK_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut version = 0;
    let mut specs: Vec<LeaseSpec> = Vec::new();
    let mut states: HashMap<String, LeaseState> = HashMap::new();
    loop {
        tick.tick().await;
        let snap = inner.snapshot();
        if snap.version != version {
            version = snap.version;
            specs = snap.leases();
            states.retain(|k, _| specs.iter().any(|s| &s.key == k));
        }
        let Some(mut conn) = inner.conn() else {
            for s in &specs {
                s.lease.deactivate();
            }
            states.clear();
            continue;
        };
        let now = Instant::now();
        let mut asks: Vec<(usize, u64)> = Vec::new();
        for (i, s) in specs.iter().enumerate() {
            let st = states.entry(s.key.clone()).or_insert(LeaseState {
                window: -1,
                end: now,
                last_taken: s.lease.taken(),
                rate: 0.0,
                short_at: None,
            });
            let taken = s.lease.taken();
            st.rate = 0.7 * st.rate + 0.3 * (taken.saturating_sub(st.last_taken)) as f64;
            st.last_taken = taken;
            // A window's units are never spent after it ends.
            let expired = st.window < 0 || now >= st.end;
            if expired && s.lease.is_active() {
                s.lease.activate(0);
            }
            let want = ((s.limit / 50).max((st.rate * 10.0) as u64)).clamp(1, s.limit.max(1));
            let low = s.lease.tokens() < (want / 2).max(1) as i64;
            let may_retry = st.short_at.is_none_or(|t| now.duration_since(t) >= Duration::from_millis(50));
            if expired || (low && may_retry) {
                asks.push((i, want));
            }
        }
        if asks.is_empty() {
            continue;
        }
        let sha = inner.lease_sha.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let mut pipe = redis::pipe();
        for &(i, want) in &asks {
            let s = &specs[i];
            pipe.cmd("EVALSHA")
                .arg(&sha)
                .arg(1)
                .arg(inner.key(format_args!("{}", s.key)))
                .arg(s.limit)
                .arg(s.window_ms)
                .arg(want);
        }
        add(&inner.health.lease_requests, asks.len() as u64);
        let answers: Vec<(i64, i64, i64)> = match pipe.query_async(&mut conn).await {
            Ok(a) => a,
            Err(e) => {
                inner.fail("leasing quotas", &e);
                continue;
            }
        };
        let now = Instant::now();
        for ((i, want), (grant, window, ms_left)) in asks.into_iter().zip(answers) {
            let s = &specs[i];
            let Some(st) = states.get_mut(&s.key) else { continue };
            if window != st.window || !s.lease.is_active() {
                s.lease.activate(grant);
                st.window = window;
            } else {
                s.lease.grant(grant);
            }
            st.end = now + Duration::from_millis(ms_left.max(0) as u64);
            st.short_at = ((grant as u64) < want).then_some(now);
        }
    }
}

async fn publish_binds(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_millis(BINDS_PUBLISH_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let snap = inner.snapshot();
        let Some(mut conn) = inner.conn() else {
            for c in snap.customers.iter().flatten() {
                c.remote_binds.store(0, Ordering::Release);
            }
            continue;
        };
        let now_ms = smppgw_engine::core::unix_now_ms();
        let node = inner.node_id.to_string();
        let mut pipe = redis::pipe();
        let customers: Vec<_> = snap.customers.iter().flatten().cloned().collect();
        for c in &customers {
            let key = inner.key(format_args!("binds:{}", c.cfg.system_id));
            let mine = c.binds.load(Ordering::Acquire);
            pipe.cmd("HSET").arg(&key).arg(&node).arg(format!("{mine}:{now_ms}")).ignore();
            pipe.cmd("PEXPIRE").arg(&key).arg(BINDS_STALE_MS * 2).ignore();
            pipe.cmd("HGETALL").arg(&key);
        }
        let all: Vec<HashMap<String, String>> = match pipe.query_async(&mut conn).await {
            Ok(a) => a,
            Err(e) => {
                inner.fail("publishing bind counts", &e);
                continue;
            }
        };
        for (c, nodes) in customers.iter().zip(all) {
            let others: u32 = nodes
                .iter()
                .filter(|(n, _)| **n != node)
                .filter_map(|(_, v)| {
                    let (count, at) = v.split_once(':')?;
                    let at: u64 = at.parse().ok()?;
                    (now_ms.saturating_sub(at) <= BINDS_STALE_MS).then(|| count.parse::<u32>().ok())?
                })
                .sum();
            c.remote_binds.store(others, Ordering::Release);
        }
    }
}

/// Starts the Redis link (on the current runtime) and wires it into the API: `/ready` checks it,
/// `/metrics` shows it, `GET /api/v1/messages/{id}` falls back to it.
pub fn attach(
    state: crate::http::ApiState,
    opts: RedisOptions,
    control: Arc<GatewayControl>,
    end: RemoteEnd,
) -> (crate::http::ApiState, Redis) {
    let redis = Redis::start(opts, control, end);
    let health = redis.health();
    let h = health.clone();
    let r = redis.clone();
    let state = state
        .with_backend(crate::http::Backend::new("redis", move || h.check()))
        .with_extra_metrics(move |out| health.render(out))
        .with_remote_lookup(move |id| {
            let r = r.clone();
            async move { r.lookup(id).await }
        });
    (state, redis)
}
