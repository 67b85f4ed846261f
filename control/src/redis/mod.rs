//! Redis as the state that makes several nodes act as one: the receipt store (vendor id -> our
//! message, and each message's state), per-customer queues of receipts for customers bound on
//! another node, global rate limits as leased quotas, and global bind counts.
//!
//! Everything here runs on the control thread's tokio runtime; the cores only exchange bounded
//! batches with it ([`smppgw_engine::remote`]). Writes are pipelined in batches of up to
//! [`WRITE_BATCH`] records, never one round trip per message.
//!
//! One task takes the cores' ops into bounded structures of its own (the write backlog, pending
//! lookups, hand-overs) and works a round at a time: a pipeline of writes, a transaction of
//! hand-overs, a batch of lookups, taking the cores' ops again before each, and skipping the rest
//! of the round once a command failed. A replay of the backlog, or a Redis that stopped
//! answering, never leaves the cores' channel full; nor does a core whose control queue is full,
//! whose messages wait apart and are offered again.
//!
//! Redis down: the node keeps serving from local state. Writes wait in a backlog bounded by
//! [`WRITE_BACKLOG_MAX`] and are replayed when Redis returns (beyond the bound the oldest are
//! dropped and counted: they stay in the node's own store, only other nodes cannot see them);
//! receipts for customers with no receiving bind here stay in the local queue; leases turn off,
//! so local limits apply alone; lookups answer "not found". The node reconnects with backoff.
//!
//! A value that is not what this version writes (a key of another type, a field that is not one
//! of our ids, a bind count that is not text: another version, a key-prefix collision, a hand
//! edit) reads as absent and is counted in `smppgw_redis_malformed_total`; only a failure of the
//! link itself (I/O, timeout, Redis unable to serve on this connection: loading, a replica, no
//! auth, scripts gone) marks Redis down. Any other error reply (out of memory under `noeviction`,
//! a failed save under `stop-writes-on-bgsave-error`, an ACL refusal) refuses that command
//! alone: a reconnect would change nothing, so the link stays, and the refusal is counted in
//! `smppgw_redis_refused_total`, logged at most once a minute and shown by `/ready` ([`is_link_error`]).
//!
//! Keys (prefix configurable, default `smppgw`), all with a TTL:
//!
//! | key | value |
//! |---|---|
//! | `{p}:m:{our id >> 5}` | string: the records of 32 consecutive ids, appended ([`wire::push_entry`]): each under our internal id, and a submit_multi destination also under the id the customer was given (which its destinations share) |
//! | `{p}:v:{day}:{bucket}` | hash `{vendor}:{vendor id}` -> our internal id (messages awaiting a receipt) |
//! | `{p}:dlrq:{system_id}` | list of queued receipts/MO for the customer, receipt TTL |
//! | `{p}:dlrq-pending` | set of the system_ids whose `dlrq` list may hold something; TTL that of the newest list |
//! | `{p}:dlrq-taken:{node id}:{system_id}` | what that node took from the list and its cores do not have yet, receipt TTL |
//! | `{p}:binds:node:{node id}` | hash system_id -> binds on that node, and `@published_at_ms` -> unix ms of Redis's clock; TTL 2 x [`BINDS_STALE_MS`] |
//! | `{p}:binds:nodes` | sorted set of node ids by their last publication (unix ms of Redis's clock) |
//! | `{p}:rate:{kind}:{name}:{window}` | units granted in that window, 2 windows |
//! | `{p}:ids:{node id}` | the highest message id counter the node issued ([`crate::ids`]), receipt TTL + 1 day |
//! | `{p}:node:{node id}` | the token of the process that holds that node id ([`keep_node_id`]), [`NODE_CLAIM_TTL_MS`] |
//!
//! `day` is the day (UTC, by the sending node's clock: a lookup asks the next day too, for a node
//! whose clock runs ahead) the message was submitted and `bucket` a hash of the vendor field modulo
//! [`BUCKETS_PER_DAY`]. A pipeline writes one APPEND per group and one multi-field HSET per bucket
//! (Redis's cost is per command far more than per byte), and keys expire `receipt_ttl_secs` after
//! the end of the day of their newest message, so a message is kept for between the TTL and the
//! TTL plus one day. A group's expiry only ever moves later (`EXPIREAT .. GT`, hence Redis 7).
//!
//! A node takes a customer's queued receipts by moving them, in one script, to its own
//! `dlrq-taken` list, and drops them from there once its cores have them: a reply lost on the way,
//! a hand-over that fails or a node that dies in between leaves them there, and they go back to
//! the head of the queue when the node (the same node id) next connects. So a receipt may come
//! twice, never not at all.
//!
//! Every push to a `dlrq` list (and every give-back) adds its customer to `dlrq-pending` in the
//! same transaction or script, and the take that leaves the list empty (or finds it gone)
//! removes it in the same script, so a push after that take announces the list again. Each
//! [`POLL_MS`] a node asks which of the customers with a receiving bind on it are pending (one
//! SMISMEMBER per [`PENDING_CHECK_BATCH`]) and takes from those only; a take that came back full
//! is followed by another in the same poll (up to [`TAKE_ROUNDS_MAX`], and no more than the
//! customer's local queue holds). Every [`QUEUE_SWEEP_MS`], and on a new connection, it takes
//! from every bound customer's list instead: lists written by a node of an earlier version,
//! which does not announce them, or whose announcement was lost, still drain.
//!
//! A node uses none of this before it holds its node id ([`keep_node_id`]): another instance with
//! the same id (a copied configuration) would issue the same message ids and take this node's
//! in-flight receipts back to the queues. While the id is held elsewhere the node runs as while
//! Redis is down, and `/ready` fails.
//!
//! Bind counts carry Redis's time (`TIME` in the publishing script) and are judged against
//! Redis's `TIME` of the same round, never a node's own clock: nodes whose clocks disagree still
//! see each other's counts. A node that stops cleanly deletes its hash and leaves `binds:nodes`
//! once its cores have stopped.

mod leases;
pub mod wire;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::{ErrorKind, RedisError, Value};
use smppgw_engine::core::Found;
use smppgw_engine::deliveries::{BOUND_QUEUE_FACTOR, Delivery};
use smppgw_engine::hash::FxHashMap;
use smppgw_engine::lease::LeaseSpec;
use smppgw_engine::remote::{REMOTE_CHANNEL_CAPACITY, RemoteEnd, RemoteOp};
use smppgw_engine::runtime::{Control, GatewayControl};
use smppgw_engine::snapshot::Snapshot;
use smppgw_engine::store::{Radix, Record, alternate_ids, canonical_id, shard_key, shard_of};
use tokio::sync::Notify;

use self::leases::LeaseStates;
use tracing::{error, info, warn};

/// Only the control thread touches it (never a core).
#[allow(clippy::disallowed_types)]
type Lock<T> = std::sync::Mutex<T>;

/// Records written per pipeline.
pub const WRITE_BATCH: usize = 2_000;
/// How long a record write is held before it is flushed, so that a receipt arriving meanwhile is
/// written with it (one write per message instead of two or three). Other nodes see a message
/// this much later; their receipt lookups retry ([`MISS_RETRY_MS`]).
pub const WRITE_HOLD_MS: u64 = 100;
/// Writes held beyond this many are flushed at once, whatever their age.
pub const WRITE_HOLD_MAX: usize = 200_000;
/// Record writes waiting while Redis is slow or down; beyond it the oldest are dropped (counted
/// in `smppgw_redis_writes_dropped_total`; the node's own store still has them).
pub const WRITE_BACKLOG_MAX: usize = 1_000_000;
/// Receipts waiting for a message another node may have stored.
pub const MISS_PENDING_MAX: usize = 100_000;
/// query_sm, cancel_sm and replace_sm lookups in Redis at once; more are answered "not found"
/// at once (the customer gets ESME_RQUERYFAIL and the like) instead of queueing without end.
pub const QUERY_LOOKUPS_MAX: usize = 1_024;
/// The waits before each try of a receipt's lookup, each after the one before, while no node's
/// record is found (a node writes its records behind by up to a few milliseconds, so a fast
/// receipt can beat them, and the sending node learns the vendor's id only from a submit_sm_resp
/// that may take the vendor's whole response timeout). The tries fall about 0.01, 0.06, 0.26,
/// 1.3, 4.3, 14, 30, 60 and 110 s after the receipt came: the last just before the core's
/// early-receipt TTL ends its wait.
pub const MISS_RETRY_MS: [u64; 9] = [10, 50, 200, 1_000, 3_000, 10_000, 16_000, 30_000, 50_000];
/// Once the node stops, the longest wait before a receipt's next lookup: its core waits for the
/// receipts it parked only for part of the stop, and a retry 10 s away would come after it.
/// The lookups go on, at this pace, until the process exits, past the last of the tries above.
pub const MISS_RETRY_STOPPING_MS: u64 = 100;

// The last try comes while the receipt still waits in its core.
const _: () = {
    let mut total = 0;
    let mut i = 0;
    while i < MISS_RETRY_MS.len() {
        total += MISS_RETRY_MS[i];
        i += 1;
    }
    assert!(total < smppgw_engine::store::EARLY_RECEIPT_TTL_SECS * 1_000);
};
/// Lookups per pipeline.
pub const LOOKUP_BATCH: usize = 256;
/// Receipts/MO per transaction that queues them for other nodes (3 commands each): a round may
/// drain far more, and one transaction of them all would hold Redis up for everyone and, timing
/// out after Redis applied it, come back here whole to be queued twice.
pub const HAND_OVER_BATCH_MAX: usize = 1_000;
/// Receipts/MO waiting in this node for their transaction to the shared queues. While this many
/// wait, the node takes no more of its cores' ops (Redis takes them slower than they come, and
/// the cores keep or handle locally what they cannot hand over, [`smppgw_engine::remote`]).
pub const HAND_OVER_PENDING_MAX: usize = 100_000;
/// Messages for one core (receipts handed back, records found) waiting for room in its control
/// queue; beyond it the oldest is dropped, as one still waiting after 500 ms is.
pub const CORE_OUTBOX_MAX: usize = 1_024;
/// Deliveries taken from one customer's queue per take; also the most a node's `dlrq-taken` list
/// of a customer holds.
pub const DELIVERY_POP_BATCH: usize = 256;
/// How often the queues of customers bound here that the pending set announces are polled.
pub const POLL_MS: u64 = 20;
/// Takes from one customer's queue per poll: a take that comes back full is followed by another
/// in the same poll, so a deep queue drains at up to this many times [`DELIVERY_POP_BATCH`] per
/// [`POLL_MS`] instead of one batch.
pub const TAKE_ROUNDS_MAX: usize = 8;
/// How often every bound customer's queue is taken from, announced in the pending set or not: a
/// queue pushed by a node of an earlier version (which does not announce it), or whose
/// announcement was lost, waits at most this long.
pub const QUEUE_SWEEP_MS: u64 = 1_000;
/// system_ids per SMISMEMBER asking which bound customers' queues are pending: one command of
/// every bound customer would hold Redis up for the others.
pub const PENDING_CHECK_BATCH: usize = 1_000;
/// How often leases are topped up.
pub const LEASE_TICK_MS: u64 = 10;
/// After Redis refused a lease request (out of memory), the leases stay off this long, as while
/// Redis is away (local limits alone), before they ask again.
pub const LEASE_REFUSED_PAUSE_MS: u64 = 1_000;
/// How often bind counts are published and read.
pub const BINDS_PUBLISH_MS: u64 = 1_000;
/// A node's published bind count older than this (by Redis's clock) is ignored (the node is gone).
pub const BINDS_STALE_MS: u64 = 5_000;
/// Fields per HSET or HDEL in the bind-count script: Lua's `unpack` takes at most about 8,000
/// values, and a node may have more customers bound.
pub const BINDS_SCRIPT_CHUNK: usize = 1_000;
/// Connect and response timeout.
pub const TIMEOUT_MS: u64 = 1_000;
/// Commands per pipeline where a round's commands grow with the configuration (the give-backs at
/// a connect, one per customer; the lease asks and returns, one per limit): sent as one, 50,000
/// of them took longer than [`TIMEOUT_MS`], failing with every command queued behind them on the
/// shared connection, and the link went down at every reconnect again.
pub const CONFIG_PIPELINE_BATCH: usize = 1_000;
/// Leases that ask for the first time in one lease tick: a large configuration's first asks are
/// spread over ticks (the others admit on their local limit meanwhile, as while Redis is away).
pub const LEASE_FIRST_ASKS_PER_TICK: usize = CONFIG_PIPELINE_BATCH;
/// How long a node's claim on its node id (`{p}:node:{id}`) lives unless its holder refreshes
/// it: a node restarted after a crash waits at most this long before it uses the shared state
/// (one stopped cleanly gives its claim up).
pub const NODE_CLAIM_TTL_MS: u64 = 10_000;
/// How often the holder refreshes its claim, and a node that found its id held tries again.
pub const NODE_CLAIM_REFRESH_MS: u64 = 1_000;
/// A node whose id another instance holds says so in the log at most this often.
pub const NODE_CONFLICT_LOG_MS: u64 = 60_000;
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
    "smppgw_redis_deliveries_lost_total",
    "smppgw_redis_lease_requests_total",
    "smppgw_redis_malformed_total",
    "smppgw_redis_refused_total",
    "smppgw_redis_node_id_conflict",
];

/// A refusal is logged at most once per this long (with the count since the last log).
pub const REFUSED_LOG_MS: u64 = 60_000;
/// `/ready` reports Redis as refusing commands for this long after the last refusal.
pub const REFUSED_RECENT_MS: u64 = 60_000;

/// Claims the node id key KEYS[1] for instance ARGV[1] for ARGV[2] ms: takes it when it is free,
/// refreshes it when this instance holds it, and never touches another instance's claim.
/// Returns 1, or what holds it instead (another instance's token). Allowed to write while Redis
/// is out of memory (`allow-oom`): a full Redis must not keep a node from using it at all.
const CLAIM_SCRIPT: &str = r"#!lua flags=allow-oom
local v = redis.pcall('GET', KEYS[1])
if v == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if type(v) ~= 'string' then return 'a key of another type' end
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return v
";

/// Gives the node id key KEYS[1] up if instance ARGV[1] holds it (a node stopping cleanly, so
/// that its restart need not wait for the claim to expire).
const RELEASE_SCRIPT: &str = r"#!lua flags=allow-oom
local v = redis.pcall('GET', KEYS[1])
if v == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Gives ARGV[1] units back to the window count KEYS[1] (never below zero; nothing for a count
/// that is absent or not a number): a stopping node returns what it held and did not send.
const RETURN_SCRIPT: &str = r"
local v = redis.pcall('GET', KEYS[1])
if type(v) ~= 'string' or not string.match(v, '^%d+$') then return 0 end
local n = math.min(tonumber(v), tonumber(ARGV[1]))
if n > 0 then redis.call('DECRBY', KEYS[1], n) end
return n
";

const LEASE_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local win = tonumber(ARGV[2])
local w = math.floor(now / win)
local k = KEYS[1] .. ':' .. w
-- A count that is not a whole number (another version, a hand edit, a key of another type) is
-- dropped and the window starts again, flagged: one bad key must not fail the node's every
-- lease request (and mark Redis down) for the rest of the window.
-- Only digits count: tonumber also takes '5.0', '0x10', '1e3' and ' 7', on which INCRBY fails.
local v = redis.pcall('GET', k)
local used = nil
if v == false then
  used = 0
elseif type(v) == 'string' and string.len(v) <= 15 and string.match(v, '^%d+$') then
  used = tonumber(v)
end
local bad = 0
if used == nil then
  redis.call('DEL', k)
  used = 0
  bad = 1
end
local grant = tonumber(ARGV[1]) - used
local want = tonumber(ARGV[3])
if grant > want then grant = want end
if grant > 0 then
  redis.call('INCRBY', k, grant)
  redis.call('PEXPIRE', k, win * 2)
else
  grant = 0
end
return {grant, w, win - (now % win), bad}
";

/// Takes up to ARGV[1] receipts from the head of queue KEYS[1] into the taken list KEYS[2] (TTL
/// ARGV[2] s) and returns them; when the taken list still holds some (a hand-over whose end never
/// reached Redis), returns those instead: they are older than anything in the queue. A queue left
/// empty (or gone: expired) is no longer announced: ARGV[3] leaves the pending set KEYS[3], in
/// the same atomic step, so a push after it announces it again. A pending set of the wrong type
/// must not stop the take (whatever it moved would stay in the taken list), hence `pcall`.
const TAKE_SCRIPT: &str = r"
local most = tonumber(ARGV[1])
local items = redis.call('LRANGE', KEYS[2], 0, most - 1)
if #items == 0 then
  items = redis.call('LPOP', KEYS[1], most)
  if not items then
    items = {}
  end
  if #items > 0 then
    redis.call('RPUSH', KEYS[2], unpack(items))
  end
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.pcall('SREM', KEYS[3], ARGV[3])
end
if #items > 0 then
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
return items
";

/// Moves everything in the taken list KEYS[1] back to the head of queue KEYS[2], in order, sets
/// the queue's TTL to ARGV[1] s (LPOP deleted the key if it emptied it) and announces it: ARGV[2]
/// joins the pending set KEYS[3], whose TTL only grows to that of the queue. Returns how many.
const GIVE_BACK_SCRIPT: &str = r"
local n = redis.call('LLEN', KEYS[1])
for _ = 1, n do
  redis.call('RPOPLPUSH', KEYS[1], KEYS[2])
end
if n > 0 then
  redis.call('EXPIRE', KEYS[2], ARGV[1])
  redis.pcall('SADD', KEYS[3], ARGV[2])
  redis.call('EXPIRE', KEYS[3], ARGV[1], 'NX')
  redis.call('EXPIRE', KEYS[3], ARGV[1], 'GT')
end
return n
";

/// Publishes a node's bind counts on Redis's clock (node clocks may disagree by more than
/// [`BINDS_STALE_MS`]): writes the hash KEYS[1] (deleted first when ARGV[5] is 1: written whole,
/// atomically, so that no other node reads it empty), with the field ARGV[2] at Redis's time in
/// unix ms, lists node ARGV[1] in the sorted set KEYS[2] at that time and drops the nodes silent
/// for ARGV[3] ms, which is also both keys' TTL. ARGV[6] fields to delete follow, then field/value
/// pairs, written ARGV[4] fields per command. Returns the time.
const BINDS_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- Written as whole numbers: a Lua number may go to Redis in exponent form.
local at = string.format('%d', now)
local ttl = tonumber(ARGV[3])
local chunk = tonumber(ARGV[4])
if ARGV[5] == '1' then
  redis.call('DEL', KEYS[1])
end
local gone_end = 6 + tonumber(ARGV[6])
for i = 7, gone_end, chunk do
  redis.call('HDEL', KEYS[1], unpack(ARGV, i, math.min(i + chunk - 1, gone_end)))
end
redis.call('HSET', KEYS[1], ARGV[2], at)
for i = gone_end + 1, #ARGV, 2 * chunk do
  redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + 2 * chunk - 1, #ARGV)))
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], at, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%d', now - ttl))
redis.call('PEXPIRE', KEYS[2], ttl)
return now
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
    /// Receipts/MO that reached no customer queue: a core's control queue stayed full, or the
    /// customer was removed meanwhile.
    lost: AtomicU64,
    lease_requests: AtomicU64,
    malformed: AtomicU64,
    /// Commands Redis refused with an error reply that is not the link's ([`is_link_error`]).
    refused: AtomicU64,
    /// The last refusal (when, what) and the last time one was logged, with the count then.
    last_refused: Lock<Option<(Instant, String)>>,
    refused_logged: Lock<Option<(Instant, u64)>>,
    flush_now: AtomicBool,
    /// The units the leases held were given back to their windows at the stop (or there was
    /// nothing to give back).
    leases_returned: AtomicBool,
    /// This node's bind counts were taken out of Redis at the stop.
    binds_withdrawn: AtomicBool,
    /// Wakes the bind-count task when the node stops ([`RedisHealth::flush_now`]).
    stopping: Notify,
    /// The cores' ops not yet taken by the writer (set when the link starts).
    ops: std::sync::OnceLock<crossbeam_channel::Receiver<Vec<RemoteOp>>>,
    /// Set while the writer works on ops it took.
    writing: AtomicBool,
    /// Receipts/MO the writer holds for the shared queues, not queued there yet.
    handing_over: AtomicU64,
    /// The cores have stopped and the node waits for its last writes ([`RedisHealth::wait_written`]):
    /// a link that is down is tried again at once, not after the backoff.
    exiting: AtomicBool,
    reconnect_now: Notify,
    last_error: Lock<Option<String>>,
    /// This instance holds its node id's claim in Redis (as of its last check): only then does
    /// it use the shared state.
    claimed: AtomicBool,
    /// Why not, while another instance holds the claim (two nodes with one `server.node_id`).
    conflict: Lock<Option<String>>,
    /// The node stops: give the claim up ([`RedisHealth::release_node_id`]).
    release: AtomicBool,
    released: AtomicBool,
    release_wake: Notify,
}

impl RedisHealth {
    /// Whether Redis answers.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// For /ready: `Err(why)` while Redis is unreachable, its shared state is not used for a
    /// node id conflict, or it refuses commands (within the last [`REFUSED_RECENT_MS`]).
    pub fn check(&self) -> Result<(), String> {
        if self.is_up() {
            if let Some(conflict) = self.node_id_conflict() {
                return Err(conflict);
            }
            let last = self.last_refused.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            return match &*last {
                Some((at, what)) if at.elapsed() < Duration::from_millis(REFUSED_RECENT_MS) => Err(format!(
                    "connected, but refusing commands ({} so far; last {} s ago: {what})",
                    self.refused(),
                    at.elapsed().as_secs()
                )),
                _ => Ok(()),
            };
        }
        let e = self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        Err(e.unwrap_or_else(|| "not connected yet".into()))
    }

    /// Why this node does not use the shared state, while another instance holds its node id
    /// (two nodes configured with one `server.node_id`): a reason for /ready to fail.
    pub fn node_id_conflict(&self) -> Option<String> {
        self.conflict.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// For a node stopping, after [`RedisHealth::wait_written`]: gives its node id's claim up
    /// (blocking, at most `within`), so that its restart uses the shared state at once instead
    /// of after [`NODE_CLAIM_TTL_MS`]. From then on the shared state is not used. False when
    /// the claim could not be given up (Redis down: it expires).
    pub fn release_node_id(&self, within: Duration) -> bool {
        self.release.store(true, Ordering::Release);
        self.release_wake.notify_one();
        let deadline = Instant::now() + within;
        while !self.released.load(Ordering::Acquire) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Record writes waiting for Redis.
    pub fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed)
    }

    /// Flushes held writes at once from now on (before the node stops), so that other nodes find
    /// every message this node acknowledged.
    pub fn flush_now(&self) {
        self.flush_now.store(true, Ordering::Release);
        self.stopping.notify_one();
    }

    /// For the last moments of a node, after its cores stopped: flushes held writes at once and
    /// waits (blocking) until everything the cores handed over (records, receipts for customers
    /// bound elsewhere) is in Redis, the leases' units are given back and the node's bind counts
    /// are withdrawn. Redis down or reconnecting does not end the wait: the link is tried again
    /// at once and the writes go when it answers, within `within`; what is still unwritten then
    /// is lost with the process ([`RedisHealth::unwritten`] says how much). With nothing of the
    /// cores' left, the leases and bind counts are settled first, while Redis answers. False
    /// when something was not done (`within` passed, or Redis down).
    pub fn wait_written(&self, within: Duration) -> bool {
        self.flush_now();
        self.exiting.store(true, Ordering::Release);
        self.reconnect_now.notify_one();
        let deadline = Instant::now() + within;
        loop {
            // In this order: ops the writer takes after the first look are seen by the second.
            let queued = self.ops.get().is_some_and(|r| !r.is_empty());
            let returned =
                self.leases_returned.load(Ordering::Acquire) && self.binds_withdrawn.load(Ordering::Acquire);
            let holding = queued || self.writing.load(Ordering::SeqCst) || self.backlog() > 0;
            if !holding && returned {
                return true;
            }
            // The leases' units are not worth waiting for Redis to return; the cores' writes are.
            // Another instance holding this node id: nothing is written under it.
            if (!holding && !self.is_up()) || self.node_id_conflict().is_some() || Instant::now() >= deadline
            {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// What did not reach Redis: (record writes, receipts/MO for the shared queues). For the
    /// very end, after [`RedisHealth::wait_written`]: it counts what the writer never took off
    /// the cores' channel by taking it, so the writer cannot write it any more.
    pub fn unwritten(&self) -> (u64, u64) {
        let (mut records, mut deliveries) = (self.backlog(), self.handing_over.load(Ordering::Acquire));
        for op in self.ops.get().into_iter().flat_map(|r| r.try_iter()).flatten() {
            match op {
                RemoteOp::Put { .. } => records += 1,
                RemoteOp::Deliver(_) => deliveries += 1,
                _ => {}
            }
        }
        (records, deliveries)
    }

    /// Records written to Redis so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Values read from Redis that were not what this version writes, read as absent.
    pub fn malformed(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }

    /// Commands Redis refused with an error reply that left the link up (out of memory, ...).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Counts a command Redis refused (`what` the node was doing, `e` its reply); logs at most
    /// once per [`REFUSED_LOG_MS`].
    fn refuse(&self, what: &str, e: &RedisError) {
        let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let now = Instant::now();
        let msg = format!("{what}: {e}");
        let mut logged = self.refused_logged.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let due =
            logged.is_none_or(|(at, _)| now.duration_since(at) >= Duration::from_millis(REFUSED_LOG_MS));
        if due {
            let since = n - logged.map_or(0, |(_, count)| count);
            *logged = Some((now, n));
            warn!(
                refused = since,
                "Redis refuses commands, link kept (smppgw_redis_refused_total; next report in a minute at most): {msg}"
            );
        }
        drop(logged);
        *self.last_refused.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((now, msg));
    }

    /// Appends the Redis families in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let conflict = u64::from(self.node_id_conflict().is_some());
        let fams: [(&str, &str, &str, u64); 17] = [
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
                "Record writes that did not reach Redis: beyond the backlog bound, not encodable (customer or vendor removed), or refused for a key of the wrong type or by a full Redis (kept in the local store)",
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
                "Lookups given up: receipts not found after every retry, and receipts and queries refused at once for the bounds on lookups pending",
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
                "smppgw_redis_deliveries_lost_total",
                "counter",
                "Receipts and MO from Redis or handed back that reached no customer queue (a core stalled, or the customer removed)",
                load(&self.lost),
            ),
            (
                "smppgw_redis_lease_requests_total",
                "counter",
                "Quota requests made for global rate limits",
                load(&self.lease_requests),
            ),
            (
                "smppgw_redis_malformed_total",
                "counter",
                "Values read from Redis of the wrong type or format, taken as absent",
                load(&self.malformed),
            ),
            (
                "smppgw_redis_refused_total",
                "counter",
                "Commands Redis refused with an error reply, the link kept (out of memory, a failed save, an ACL): the writes among them did not happen",
                load(&self.refused),
            ),
            (
                "smppgw_redis_node_id_conflict",
                "gauge",
                "1 while another instance holds this node's server.node_id in Redis (the shared state is not used)",
                conflict,
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

/// Sends `pipe` (not atomic, nothing ignored) and returns one raw reply per command, in order, a
/// command Redis refused among them as `Value::ServerError`. `Pipeline::query_async` would turn
/// one refused command, or one value that does not convert, into an error of the whole pipeline
/// that looks like a lost link; here each reply is judged alone ([`reply`]).
///
/// # Errors
/// Only the link's: I/O, timeout, a reply count that does not match.
async fn replies(conn: &mut MultiplexedConnection, pipe: &redis::Pipeline) -> Result<Vec<Value>, RedisError> {
    if pipe.is_empty() {
        return Ok(Vec::new());
    }
    let values = conn.send_packed_commands(pipe, 0, pipe.len()).await?;
    if values.len() != pipe.len() {
        return Err(RedisError::from((
            ErrorKind::ResponseError,
            "a pipeline got the wrong number of replies",
        )));
    }
    Ok(values)
}

/// One command per item of `items` (added by `cmd`), in pipelines of at most `batch` commands.
fn pipelines<'a, T>(
    items: &'a [T],
    batch: usize,
    mut cmd: impl FnMut(&mut redis::Pipeline, &T) + 'a,
) -> impl Iterator<Item = redis::Pipeline> + 'a {
    items.chunks(batch.max(1)).map(move |chunk| {
        let mut pipe = redis::pipe();
        for item in chunk {
            cmd(&mut pipe, item);
        }
        pipe
    })
}

/// [`replies`] of one command per item of `items` (added by `cmd`), sent in pipelines of
/// [`CONFIG_PIPELINE_BATCH`] one after the other: each within its own timeout, and the other
/// tasks' commands go between them. Returns the replies of the pipelines that went through, in
/// order (a prefix of one per item), and the link's error that stopped the rest.
async fn replies_batched<T>(
    conn: &mut MultiplexedConnection,
    items: &[T],
    cmd: impl FnMut(&mut redis::Pipeline, &T),
) -> (Vec<Value>, Option<RedisError>) {
    let mut out = Vec::with_capacity(items.len());
    for pipe in pipelines(items, CONFIG_PIPELINE_BATCH, cmd) {
        match replies(conn, &pipe).await {
            Ok(values) => out.extend(values),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

/// [`replies`] of read commands, each through [`reply`].
///
/// # Errors
/// The link's, as for [`replies`] and [`reply`].
async fn read(
    inner: &Inner,
    conn: &mut MultiplexedConnection,
    pipe: &redis::Pipeline,
) -> Result<Vec<Value>, RedisError> {
    replies(conn, pipe).await?.into_iter().map(|v| reply(inner, v)).collect()
}

/// Whether Redis refused a command for what its key holds (another type): a fault of that key,
/// not of the link.
fn is_wrong_type(e: &RedisError) -> bool {
    e.code() == Some("WRONGTYPE")
}

/// Whether an error means the link cannot serve, so that a new connection is needed or may help:
/// no error code (I/O, timeout), or a reply saying this server cannot serve this connection now
/// (loading its data, a replica after a failover, authentication lost, our scripts flushed: a
/// new connection loads them). Any other error reply (OOM under `noeviction`, MISCONF, NOPERM,
/// EXECABORT of a transaction one of whose commands was refused, ...) refuses that command
/// alone: reconnecting would not change it, and did only make the link flap.
fn is_link_error(e: &RedisError) -> bool {
    e.code().is_none_or(|code| matches!(code, "LOADING" | "READONLY" | "MASTERDOWN" | "NOAUTH" | "NOSCRIPT"))
}

/// One reply of [`replies`] as its reader sees it: a key of the wrong type reads as absent
/// (`Nil`) and is counted as malformed; another refusal that is not the link's reads as absent
/// too, counted as refused.
///
/// # Errors
/// A refusal of the link ([`is_link_error`]: LOADING, READONLY, NOAUTH, ...): Redis cannot
/// serve, as for a lost link.
fn reply(inner: &Inner, v: Value) -> Result<Value, RedisError> {
    match v {
        Value::ServerError(e) => {
            let e = RedisError::from(e);
            if is_link_error(&e) {
                return Err(e);
            }
            match is_wrong_type(&e) {
                true => add(&inner.health.malformed, 1),
                false => inner.health.refuse("reading", &e),
            }
            Ok(Value::Nil)
        }
        v => Ok(v),
    }
}

/// The error of a write's reply when it means Redis cannot serve ([`is_link_error`]); a key of
/// the wrong type or another refusal is left to [`count_refused`].
fn write_error(v: &Value) -> Option<RedisError> {
    match v {
        Value::ServerError(e) => Some(RedisError::from(e.clone())).filter(is_link_error),
        _ => None,
    }
}

/// Counts the refusals among `values` that are not the link's ([`write_error`] finds those): a
/// key of the wrong type as malformed, any other as refused (`what` the node was doing).
fn count_refused(inner: &Inner, what: &str, values: &[Value]) {
    for v in values {
        if let Value::ServerError(e) = v {
            let e = RedisError::from(e.clone());
            match is_wrong_type(&e) {
                true => add(&inner.health.malformed, 1),
                false if !is_link_error(&e) => inner.health.refuse(what, &e),
                false => {}
            }
        }
    }
}

/// Counts a value of the wrong type or format; it reads as absent.
fn malformed<T>(inner: &Inner) -> Option<T> {
    add(&inner.health.malformed, 1);
    None
}

/// Our id as a `v:` hash holds it (decimal text); None when absent or malformed (counted).
fn id_value(inner: &Inner, v: Value) -> Option<u64> {
    match v {
        Value::Nil => None,
        Value::BulkString(b) => match std::str::from_utf8(&b).ok().and_then(|t| t.parse().ok()) {
            Some(id) => Some(id),
            None => malformed(inner),
        },
        Value::Int(i) => u64::try_from(i).ok().or_else(|| malformed(inner)),
        _ => malformed(inner),
    }
}

/// A string value (a group of records); None when absent or malformed (counted).
fn bytes_value(inner: &Inner, v: Value) -> Option<Vec<u8>> {
    match v {
        Value::Nil => None,
        Value::BulkString(b) => Some(b),
        _ => malformed(inner),
    }
}

/// A connection to Redis and which one it is (connections are numbered as they are made).
#[derive(Clone)]
struct Conn {
    link: MultiplexedConnection,
    id: u64,
}

impl std::ops::Deref for Conn {
    type Target = MultiplexedConnection;
    fn deref(&self) -> &MultiplexedConnection {
        &self.link
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut MultiplexedConnection {
        &mut self.link
    }
}

struct Inner {
    prefix: String,
    node_id: u32,
    health: Arc<RedisHealth>,
    control: Arc<GatewayControl>,
    conn: Lock<Option<Conn>>,
    /// Which connection is the current one ([`Conn::id`]).
    conn_id: AtomicU64,
    broken: Notify,
    /// The cores' view of `health.up`.
    engine_up: Arc<AtomicBool>,
    lease_sha: Lock<String>,
    queue_scripts: Lock<QueueScripts>,
    /// This process's claim on its node id (`{p}:node:{id}`): random per process.
    token: String,
    /// When the node id conflict was last logged.
    conflict_logged: Lock<Option<Instant>>,
}

/// SHA1s of the shared receipt queue's scripts, as loaded on the current connection.
#[derive(Clone, Default)]
struct QueueScripts {
    take: String,
    give_back: String,
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
            conn_id: AtomicU64::new(0),
            broken: Notify::new(),
            engine_up: end.up.clone(),
            lease_sha: Lock::new(String::new()),
            queue_scripts: Lock::default(),
            token: instance_token(),
            conflict_logged: Lock::new(None),
        });
        let _ = inner.health.ops.set(end.ops.clone());
        tokio::spawn(supervise(inner.clone(), opts.url));
        tokio::spawn(write_loop(inner.clone(), end));
        tokio::spawn(poll_deliveries(inner.clone()));
        tokio::spawn(keep_leases(inner.clone()));
        tokio::spawn(publish_binds(inner.clone()));
        tokio::spawn(keep_ids(inner.clone()));
        tokio::spawn(keep_node_id(inner.clone()));
        Redis { inner }
    }

    /// Link health and counters.
    pub fn health(&self) -> Arc<RedisHealth> {
        self.inner.health.clone()
    }

    /// The message a customer knows by `shown_id`, as the shared store holds it.
    /// Incomplete when Redis could not be asked (down, or the request failed).
    pub async fn lookup(
        &self,
        shown_id: u64,
    ) -> Result<Option<Record>, smppgw_engine::runtime::LookupIncomplete> {
        lookup_shown_checked(&self.inner, shown_id)
            .await
            .map_err(|()| smppgw_engine::runtime::LookupIncomplete)
    }
}

impl Inner {
    /// The link for the shared state: none while Redis is down or this instance does not hold
    /// its node id ([`keep_node_id`]).
    fn conn(&self) -> Option<Conn> {
        if !self.health.claimed.load(Ordering::Acquire) {
            return None;
        }
        self.link()
    }

    /// The link, whether or not this instance holds its node id.
    fn link(&self) -> Option<Conn> {
        if !self.health.is_up() {
            return None;
        }
        self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn node_key(&self) -> String {
        self.key(format_args!("node:{}", self.node_id))
    }

    /// This instance holds its node id: it uses the shared state.
    fn claim_held(&self) {
        *self.health.conflict.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        self.health.claimed.store(true, Ordering::Release);
        self.engine_up.store(self.health.is_up(), Ordering::Release);
    }

    /// Another instance (`holder`) holds this node's id: the shared state is left alone, as
    /// while Redis is down, until the claim is free.
    fn claim_conflict(&self, holder: &str) {
        self.health.claimed.store(false, Ordering::Release);
        self.engine_up.store(false, Ordering::Release);
        let why = format!(
            "node id {} is in use by another instance ({holder}, key {}): two nodes with one server.node_id; this one does not use the shared state in Redis",
            self.node_id,
            self.node_key()
        );
        *self.health.conflict.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(why.clone());
        let mut logged = self.conflict_logged.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if logged.is_none_or(|t| t.elapsed() >= Duration::from_millis(NODE_CONFLICT_LOG_MS)) {
            *logged = Some(Instant::now());
            error!("{why}");
        }
    }

    /// A request on `on` failed for the link (I/O, timeout). Once per connection: a request
    /// still out on a connection the supervisor has replaced (or is replacing) says nothing of
    /// the new one, and must not take it down.
    fn fail(&self, on: &Conn, what: &str, e: &redis::RedisError) {
        add(&self.health.errors, 1);
        let msg = format!("{what}: {e}");
        *self.health.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(msg.clone());
        if on.id != self.conn_id.load(Ordering::Acquire) {
            return;
        }
        self.engine_up.store(false, Ordering::Release);
        if self.health.up.swap(false, Ordering::AcqRel) {
            warn!("Redis unreachable, serving from local state: {msg}");
            self.broken.notify_one();
        }
    }

    /// A connection attempt failed.
    fn fail_connect(&self, e: &redis::RedisError) {
        add(&self.health.errors, 1);
        *self.health.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(format!("connect: {e}"));
    }

    fn key(&self, rest: std::fmt::Arguments<'_>) -> String {
        format!("{}:{}", self.prefix, rest)
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.control.current()
    }

    /// Whether `conn` is still the link to use: no request on it failed (and it was not
    /// replaced) since it was taken, and this instance still holds its node id.
    fn usable(&self, conn: &Conn) -> bool {
        self.health.is_up()
            && self.health.claimed.load(Ordering::Acquire)
            && conn.id == self.conn_id.load(Ordering::Acquire)
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
            // Once per attempt, before anything is written with commands an old Redis lacks. A
            // server refusing INFO (renamed away) says nothing of its version, as one whose
            // INFO names none.
            let info: String = match redis::cmd("INFO").arg("server").query_async(&mut conn).await {
                Ok(info) => info,
                Err(e) if e.code().is_some() => String::new(),
                Err(e) => return Err(e),
            };
            if let Some(why) = version_refusal(&info) {
                error!("Redis not used, serving from local state: {why}");
                return Err(RedisError::from((ErrorKind::ClientError, "unsupported Redis", why)));
            }
            if redis_version(&info).is_none() {
                let (major, minor) = REDIS_MIN_VERSION;
                warn!(
                    "Redis did not tell its version (INFO server); this gateway needs Redis {major}.{minor} or later"
                );
            }
            let (sha, take, give_back): (String, String, String) = redis::pipe()
                .cmd("SCRIPT")
                .arg("LOAD")
                .arg(LEASE_SCRIPT)
                .cmd("SCRIPT")
                .arg("LOAD")
                .arg(TAKE_SCRIPT)
                .cmd("SCRIPT")
                .arg("LOAD")
                .arg(GIVE_BACK_SCRIPT)
                .query_async(&mut conn)
                .await?;
            // Before the shared state is used: a node id another instance holds would mix this
            // node's message ids and taken receipts with that one's.
            let holder = claim_node_id(&inner, &mut conn).await?;
            // Before the node takes anything again: what it had taken keeps its place ahead of
            // what was queued since, whichever node the customer is bound to now. Not what the
            // other holder of the id has taken (in flight there).
            if holder.is_none() {
                give_back_all(&inner, &mut conn, &give_back).await?;
            }
            Ok::<_, redis::RedisError>((conn, sha, QueueScripts { take, give_back }, holder))
        };
        match attempt.await {
            Ok((link, sha, scripts, holder)) => {
                match &holder {
                    None => inner.claim_held(),
                    // Given up at the stop: not a conflict to report (no error, no unready).
                    Some(_) if inner.health.release.load(Ordering::Acquire) => {
                        inner.health.claimed.store(false, Ordering::Release);
                    }
                    Some(h) => inner.claim_conflict(h),
                }
                *inner.lease_sha.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = sha;
                *inner.queue_scripts.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = scripts;
                let id = inner.conn_id.fetch_add(1, Ordering::AcqRel) + 1;
                *inner.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some(Conn { link, id });
                add(&inner.health.connects, 1);
                inner.health.up.store(true, Ordering::Release);
                inner.engine_up.store(holder.is_none(), Ordering::Release);
                info!("Redis connected");
                backoff = RECONNECT_MIN_MS;
                inner.broken.notified().await;
                *inner.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            }
            Err(e) => inner.fail_connect(&e),
        }
        // The node waits for its last writes: the next attempt goes at once, and then at the
        // shortest backoff.
        if inner.health.exiting.load(Ordering::Acquire) {
            backoff = RECONNECT_MIN_MS;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(backoff)) => {}
            () = inner.health.reconnect_now.notified() => backoff = RECONNECT_MIN_MS,
        }
        backoff = (backoff * 2).min(RECONNECT_MAX_MS);
    }
}

/// A token naming this process's claim on its node id: host name, pid and a random part, so
/// that the log of the other holder's node says which instance it is.
fn instance_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
    );
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "?".into());
    format!("{host}/{}/{:016x}", std::process::id(), h.finish())
}

/// Claims this node's id for this instance ([`CLAIM_SCRIPT`]): None when it holds it now, or
/// what holds it instead.
///
/// # Errors
/// The link's, or Redis refusing the script.
async fn claim_node_id(
    inner: &Inner,
    conn: &mut MultiplexedConnection,
) -> Result<Option<String>, RedisError> {
    if inner.health.release.load(Ordering::Acquire) {
        // Given up at the stop: a reconnect after it must not take it again.
        return Ok(Some("none: this node is stopping".into()));
    }
    let v: Value = redis::Script::new(CLAIM_SCRIPT)
        .key(inner.node_key())
        .arg(&inner.token)
        .arg(NODE_CLAIM_TTL_MS)
        .invoke_async(conn)
        .await?;
    Ok(match v {
        Value::Int(1) => None,
        Value::BulkString(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        other => Some(format!("{other:?}")),
    })
}

/// Holds this node's id for this instance while the link is up: refreshes the claim every
/// [`NODE_CLAIM_REFRESH_MS`] (its TTL is [`NODE_CLAIM_TTL_MS`]). While another instance holds it
/// (a copied configuration, or this node restarted within the TTL of its previous run's claim)
/// the node does not use the shared state, as while Redis is down, and is not ready; once the
/// claim is free it takes it, gives back what this id had taken from the shared queues, and goes
/// on. At the stop ([`RedisHealth::release_node_id`]) it gives the claim up.
async fn keep_node_id(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_millis(NODE_CLAIM_REFRESH_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = inner.health.release_wake.notified() => {}
        }
        let Some(mut conn) = inner.link() else { continue };
        if inner.health.release.load(Ordering::Acquire) {
            let gone: Result<Value, _> = redis::Script::new(RELEASE_SCRIPT)
                .key(inner.node_key())
                .arg(&inner.token)
                .invoke_async(&mut conn.link)
                .await;
            match gone {
                Ok(_) => {
                    inner.health.claimed.store(false, Ordering::Release);
                    inner.engine_up.store(false, Ordering::Release);
                    inner.health.released.store(true, Ordering::Release);
                    return;
                }
                Err(e) if !is_link_error(&e) => inner.health.refuse("giving up the node id", &e),
                Err(e) => inner.fail(&conn, "giving up the node id", &e),
            }
            continue;
        }
        let held = inner.health.claimed.load(Ordering::Acquire);
        match claim_node_id(&inner, &mut conn.link).await {
            Ok(None) if held => {}
            Ok(None) => {
                // The other instance is gone: what this node id had taken from the shared queues
                // (a previous run that died) goes back before anything else is taken.
                let sha = inner
                    .queue_scripts
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .give_back
                    .clone();
                if let Err(e) = give_back_all(&inner, &mut conn.link, &sha).await {
                    inner.fail(&conn, "giving back taken receipts", &e);
                    continue;
                }
                info!(node_id = inner.node_id, "node id claimed: the shared state in Redis is used");
                inner.claim_held();
            }
            Ok(Some(holder)) => inner.claim_conflict(&holder),
            Err(e) if !is_link_error(&e) => inner.health.refuse("claiming the node id", &e),
            Err(e) => inner.fail(&conn, "claiming the node id", &e),
        }
    }
}

/// Whether `url` is a Redis URL this build can connect with (a node refuses to start with one it
/// cannot: it would run as if alone while `/ready` stays green).
///
/// # Errors
/// Why it cannot (not a URL, an unknown scheme, TLS, which this build lacks).
pub fn check_url(url: &str) -> Result<(), String> {
    redis::Client::open(url).map(|_| ()).map_err(|e| e.to_string())
}

/// The oldest Redis (major, minor) the link works with: record groups' expiry only moves later
/// with `EXPIREAT .. GT`, which Redis 7.0 brought; on an older one every flush fails and the
/// link would flap.
pub const REDIS_MIN_VERSION: (u32, u32) = (7, 0);

/// `redis_version` of an `INFO server` reply as (major, minor); None when absent or not a
/// version.
fn redis_version(info: &str) -> Option<(u32, u32)> {
    let v = info.lines().find_map(|l| l.trim().strip_prefix("redis_version:"))?;
    let mut parts = v.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Why the server that sent `info` (an `INFO server` reply) cannot serve as this node's Redis;
/// None when it can. A server that names no version (a Redis-compatible one) is given the
/// benefit of the doubt: refusing it would leave it unusable even where it works.
fn version_refusal(info: &str) -> Option<String> {
    let v = redis_version(info)?;
    (v < REDIS_MIN_VERSION).then(|| {
        format!(
            "Redis {}.{} is too old: {}.{} or later is needed",
            v.0, v.1, REDIS_MIN_VERSION.0, REDIS_MIN_VERSION.1
        )
    })
}

/// What a record write indexes besides the record.
struct Write {
    /// Day of the message's submission (its buckets).
    day: u64,
    /// First write of a message whose receipt is awaited: index its vendor id, (bucket, field).
    vendor_index: Option<(u32, String)>,
}

/// Record writes waiting to be flushed. A new message's first write is held [`WRITE_HOLD_MS`] so
/// that a receipt arriving meanwhile is written with it (one write per message instead of two or
/// three); a later state of a message already written goes out at once. A newer state replaces
/// a waiting write of the same message.
struct Backlog {
    /// First writes, held, in arrival order.
    held: Fifo,
    /// Updates of messages already written, due at once.
    updates: Fifo,
    /// Our internal id (one per vendor submit: a submit_multi's destinations share the id the
    /// customer was given, not this one) -> (in `held`?, sequence number) of its waiting write.
    index: FxHashMap<u64, (bool, u64)>,
}

#[derive(Default)]
struct Fifo {
    queue: VecDeque<Pending>,
    /// Sequence number of `queue[0]`.
    front: u64,
}

struct Pending {
    at: Instant,
    record: Record,
    new: bool,
}

impl Backlog {
    fn new() -> Backlog {
        Backlog { held: Fifo::default(), updates: Fifo::default(), index: FxHashMap::default() }
    }

    fn len(&self) -> usize {
        self.held.queue.len() + self.updates.queue.len()
    }

    /// Adds a write; returns true when the bound dropped the oldest.
    fn put(&mut self, record: Record, new: bool, now: Instant) -> bool {
        if let Some(&(held, seq)) = self.index.get(&record.msg_id) {
            let fifo = if held { &mut self.held } else { &mut self.updates };
            if let Some(p) = seq.checked_sub(fifo.front).and_then(|i| fifo.queue.get_mut(i as usize)) {
                p.record = record;
                return false;
            }
        }
        let fifo = if new { &mut self.held } else { &mut self.updates };
        let seq = fifo.front + fifo.queue.len() as u64;
        self.index.insert(record.msg_id, (new, seq));
        fifo.queue.push_back(Pending { at: now, record, new });
        if self.len() > WRITE_BACKLOG_MAX {
            let oldest_held = self.held.queue.front().map(|p| p.at);
            let oldest_update = self.updates.queue.front().map(|p| p.at);
            self.pop_front(
                oldest_held.is_some() && (oldest_update.is_none() || oldest_held <= oldest_update),
            );
            return true;
        }
        false
    }

    /// The writes due now, oldest first: every update, and first writes held long enough (all of
    /// them with `all`, or those beyond [`WRITE_HOLD_MAX`]); at most `max`.
    fn take_due(&mut self, now: Instant, all: bool, max: usize) -> Vec<Pending> {
        let mut out = Vec::new();
        while out.len() < max && !self.updates.queue.is_empty() {
            if let Some(p) = self.pop_front(false) {
                out.push(p);
            }
        }
        let hold = Duration::from_millis(WRITE_HOLD_MS);
        while out.len() < max {
            let Some(p) = self.held.queue.front() else { break };
            if !all && now.duration_since(p.at) < hold && self.held.queue.len() <= WRITE_HOLD_MAX {
                break;
            }
            if let Some(p) = self.pop_front(true) {
                out.push(p);
            }
        }
        out
    }

    /// Puts writes that could not be flushed back at the front, in order.
    fn restore(&mut self, writes: Vec<Pending>) {
        for p in writes.into_iter().rev() {
            let fifo = if p.new { &mut self.held } else { &mut self.updates };
            // A newer state that arrived since replaces the restored one.
            let newer =
                self.index.get(&p.record.msg_id).is_some_and(|&(h, seq)| h == p.new && seq >= fifo.front);
            fifo.front -= 1;
            if !newer {
                self.index.insert(p.record.msg_id, (p.new, fifo.front));
            }
            fifo.queue.push_front(p);
        }
    }

    fn pop_front(&mut self, held: bool) -> Option<Pending> {
        let fifo = if held { &mut self.held } else { &mut self.updates };
        let p = fifo.queue.pop_front()?;
        if self.index.get(&p.record.msg_id) == Some(&(held, fifo.front)) {
            self.index.remove(&p.record.msg_id);
        }
        fifo.front += 1;
        Some(p)
    }
}

struct Miss {
    due: Instant,
    attempt: usize,
    vendor: u32,
    id: Bytes,
}

/// Receipt lookups waiting for their time, the soonest first: a new one (due in 10 ms) must not
/// wait behind a hopeless one retrying at 50 s.
#[derive(Default)]
struct Misses {
    heap: std::collections::BinaryHeap<std::cmp::Reverse<MissAt>>,
    /// Ties broken by arrival, so that equal times keep their order.
    next: u64,
}

struct MissAt(Instant, u64, Miss);

impl PartialEq for MissAt {
    fn eq(&self, other: &Self) -> bool {
        (self.0, self.1) == (other.0, other.1)
    }
}

impl Eq for MissAt {}

impl PartialOrd for MissAt {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MissAt {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.0, self.1).cmp(&(other.0, other.1))
    }
}

impl Misses {
    fn len(&self) -> usize {
        self.heap.len()
    }

    fn push(&mut self, m: Miss) {
        self.next += 1;
        self.heap.push(std::cmp::Reverse(MissAt(m.due, self.next, m)));
    }

    fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|r| r.0.0)
    }

    /// Every lookup due later than `by` is due at `by` (the node stops: its cores wait for the
    /// receipts they parked only so long).
    fn hurry(&mut self, by: Instant) {
        let all: Vec<Miss> = std::mem::take(&mut self.heap).into_iter().map(|r| r.0.2).collect();
        for m in all {
            self.push(Miss { due: m.due.min(by), ..m });
        }
    }

    /// The lookups due at `now`, soonest first, at most `max`.
    fn take_due(&mut self, now: Instant, max: usize) -> Vec<Miss> {
        let mut due = Vec::new();
        while due.len() < max && self.next_due().is_some_and(|t| t <= now) {
            if let Some(std::cmp::Reverse(MissAt(_, _, m))) = self.heap.pop() {
                due.push(m);
            }
        }
        due
    }
}

/// Messages for the cores whose control queue was full, per core and in order. The writer offers
/// them again before each of its steps instead of awaiting room: waiting for one busy core (up to
/// [`CORE_SEND_PATIENCE_MS`] a message, one after another) held back every Redis write and every
/// other core's message with it.
#[derive(Default)]
struct Outbox {
    /// Per core: each message and when it is given up.
    waiting: FxHashMap<usize, VecDeque<(Instant, Control)>>,
}

impl Outbox {
    /// Hands `msg` to `core` through `send` at once when nothing of that core's waits before it
    /// and its queue has room; otherwise it waits its turn. Returns what the bound dropped (the
    /// oldest of that core's).
    fn send(
        &mut self,
        core: usize,
        msg: Control,
        now: Instant,
        send: &mut impl FnMut(usize, Control) -> Result<(), Control>,
    ) -> Option<Control> {
        let queue = self.waiting.entry(core).or_default();
        let msg = match queue.is_empty() {
            true => match send(core, msg) {
                Ok(()) => return None,
                Err(m) => m,
            },
            false => msg,
        };
        queue.push_back((now + Duration::from_millis(CORE_SEND_PATIENCE_MS), msg));
        match queue.len() > CORE_OUTBOX_MAX {
            true => queue.pop_front().map(|(_, m)| m),
            false => None,
        }
    }

    /// Offers the waiting messages again, each core's oldest first; returns, with their core,
    /// those given up (no room still [`CORE_SEND_PATIENCE_MS`] after their first try).
    fn retry(
        &mut self,
        now: Instant,
        send: &mut impl FnMut(usize, Control) -> Result<(), Control>,
    ) -> Vec<(usize, Control)> {
        let mut given_up = Vec::new();
        self.waiting.retain(|&core, queue| {
            while let Some((until, msg)) = queue.pop_front() {
                match send(core, msg) {
                    Ok(()) => {}
                    Err(m) if now >= until => given_up.push((core, m)),
                    Err(m) => {
                        queue.push_front((until, m));
                        break;
                    }
                }
            }
            !queue.is_empty()
        });
        given_up
    }

    fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

/// Counts a message a core's full control queue did not take in time.
fn undelivered(inner: &Inner, core: usize, msg: Control) {
    match msg {
        Control::Deliveries(ds) => {
            add(&inner.health.lost, ds.len() as u64);
            warn!(core, n = ds.len(), "receipts dropped: core control queue full");
        }
        Control::Record(_) => warn!(core, "found record dropped: core control queue full"),
        _ => warn!(core, "message to a core dropped: core control queue full"),
    }
}

/// What the writer took from the cores and has not finished with, each part bounded.
struct Writer {
    backlog: Backlog,
    misses: Misses,
    /// Receipts/MO for other nodes' customers, oldest first, for the shared queues.
    deliveries: VecDeque<Delivery>,
    /// query_sm lookups and derived-receipt checks in flight.
    lookups: Arc<tokio::sync::Semaphore>,
    to_cores: Outbox,
}

impl Writer {
    fn new() -> Writer {
        Writer {
            backlog: Backlog::new(),
            misses: Misses::default(),
            deliveries: VecDeque::new(),
            lookups: Arc::new(tokio::sync::Semaphore::new(QUERY_LOOKUPS_MAX)),
            to_cores: Outbox::default(),
        }
    }

    /// Takes the ops the cores handed over into the writer's bounded structures and offers the
    /// cores' waiting messages again; returns the ops taken. Called before every step that
    /// awaits Redis: one that takes long (a backlog replayed after an outage, a Redis that
    /// stopped answering) must not leave the channel full, which makes the cores keep or handle
    /// locally what they hand over. At most a channel's worth at a time, so that the steps go on
    /// under any load, and nothing while [`HAND_OVER_PENDING_MAX`] deliveries wait.
    fn take_ops(&mut self, inner: &Arc<Inner>, ops: &crossbeam_channel::Receiver<Vec<RemoteOp>>) -> usize {
        let now = Instant::now();
        let mut got = 0;
        for _ in 0..REMOTE_CHANNEL_CAPACITY {
            if self.deliveries.len() >= HAND_OVER_PENDING_MAX {
                break;
            }
            let Ok(batch) = ops.try_recv() else { break };
            got += batch.len();
            for op in batch {
                self.take(inner, op, now);
            }
        }
        self.offer_to_cores(inner);
        inner.health.backlog.store(self.backlog.len() as u64, Ordering::Relaxed);
        got
    }

    fn take(&mut self, inner: &Arc<Inner>, op: RemoteOp, now: Instant) {
        match op {
            RemoteOp::Put { record, new } => {
                if self.backlog.put(record, new, now) {
                    add(&inner.health.dropped, 1);
                }
            }
            RemoteOp::Miss { vendor, id } => {
                if self.misses.len() < MISS_PENDING_MAX {
                    let due = now + Duration::from_millis(MISS_RETRY_MS[0]);
                    self.misses.push(Miss { due, attempt: 0, vendor, id });
                } else {
                    add(&inner.health.given_up, 1);
                }
            }
            RemoteOp::Query { shown_id, customer, reply } => {
                let inner = inner.clone();
                let Ok(permit) = self.lookups.clone().try_acquire_owned() else {
                    add(&inner.health.given_up, 1);
                    tokio::spawn(async move { answer_query(&inner, reply, None).await });
                    return;
                };
                tokio::spawn(async move {
                    let _permit = permit;
                    let found = lookup_shown(&inner, shown_id).await.filter(|r| r.customer == customer);
                    let found = found.map(|record| {
                        let snap = inner.snapshot();
                        let shard =
                            shard_of(record.vendor, &shard_key(&canonical_id(&record.vendor_id)), snap.cores)
                                as u16;
                        Box::new(Found { shard, record, shared: true })
                    });
                    answer_query(&inner, reply, found).await;
                });
            }
            RemoteOp::Deliver(d) => self.deliveries.push_back(Arc::unwrap_or_clone(d)),
            RemoteOp::DerivedCheck { delivery, shown_id } => {
                let inner = inner.clone();
                // Out of lookup capacity: delivered unchecked, as without Redis.
                let permit = self.lookups.clone().try_acquire_owned().ok();
                tokio::spawn(async move {
                    let stored = match &permit {
                        Some(_) => part_stored(&inner, shown_id).await,
                        None => true,
                    };
                    drop(permit);
                    let home = delivery.customer as usize % inner.control.cores().max(1);
                    if !to_core(&inner, home, Control::Derived { delivery, stored }).await {
                        add(&inner.health.lost, 1);
                        warn!("derived receipt dropped: core control queue full");
                    }
                });
            }
        }
    }

    /// Hands `msg` to `core`, or keeps it to offer again ([`Outbox`]).
    fn hand_to_core(&mut self, inner: &Inner, core: usize, msg: Control) {
        let mut send = |core, msg| inner.control.send_to_core(core, msg);
        if let Some(m) = self.to_cores.send(core, msg, Instant::now(), &mut send) {
            undelivered(inner, core, m);
        }
    }

    fn offer_to_cores(&mut self, inner: &Inner) {
        if self.to_cores.is_empty() {
            return;
        }
        let mut send = |core, msg| inner.control.send_to_core(core, msg);
        for (core, m) in self.to_cores.retry(Instant::now(), &mut send) {
            undelivered(inner, core, m);
        }
    }

    /// Gives deliveries back to their customers' home cores on this node.
    fn hand_back(&mut self, inner: &Inner, snap: &Snapshot, batch: Vec<Delivery>) {
        if batch.is_empty() {
            return;
        }
        let cores = inner.control.cores().max(1);
        let mut by_core: HashMap<usize, Vec<Delivery>> = HashMap::new();
        for d in batch {
            if snap.customer_at(d.customer).is_some() {
                by_core.entry(d.customer as usize % cores).or_default().push(d);
            } else {
                add(&inner.health.lost, 1);
            }
        }
        for (core, ds) in by_core {
            self.hand_to_core(inner, core, Control::Deliveries(ds));
        }
    }

    /// Whether the writer holds something the cores handed over that is not written yet (the
    /// backlog is told apart, in [`RedisHealth::backlog`]).
    fn holding(&self) -> bool {
        !self.deliveries.is_empty() || !self.to_cores.is_empty()
    }
}

/// The only reader of the cores' ops. Each round takes one step of each kind that has work (a
/// pipeline of record writes, a transaction of hand-overs, a batch of receipt lookups), and the
/// cores' ops are taken before each step: a replay of a large backlog is many rounds, never a
/// stretch of seconds that leaves the ops channel full.
async fn write_loop(inner: Arc<Inner>, end: RemoteEnd) {
    let mut w = Writer::new();
    let mut stopping = false;
    loop {
        inner.health.writing.store(true, Ordering::SeqCst);
        let mut busy = w.take_ops(&inner, &end.ops) > 0;
        if !stopping && inner.control.shutting_down() {
            stopping = true;
            w.misses.hurry(Instant::now() + Duration::from_millis(MISS_RETRY_STOPPING_MS));
        }
        let snap = inner.snapshot();
        let ttl = u64::from(snap.config.server.receipt_ttl_secs).max(1);
        match inner.conn() {
            Some(mut conn) => {
                busy |= flush_writes(&inner, &mut conn, &snap, &mut w.backlog, ttl).await;
                // Once a command on this connection failed, the other steps would each only wait
                // for their own timeout: they wait for the next connection instead.
                if !w.deliveries.is_empty() && inner.usable(&conn) {
                    w.take_ops(&inner, &end.ops);
                    push_deliveries(&inner, &mut conn, &snap, &mut w).await;
                    busy = true;
                }
                if w.misses.next_due().is_some_and(|t| t <= Instant::now()) && inner.usable(&conn) {
                    w.take_ops(&inner, &end.ops);
                    resolve_misses(&inner, &mut conn, &snap, &mut w).await;
                    busy = true;
                }
            }
            // Nobody else can take them now: back to the customer's local queue. Not once the
            // node stops: its cores hand everything over at their end, whatever the link, and
            // what would go back to them could be lost with them; here it waits for Redis to
            // return before the process exits ([`RedisHealth::wait_written`]).
            None if !inner.control.shutting_down() => {
                let back = Vec::from(std::mem::take(&mut w.deliveries));
                w.hand_back(&inner, &snap, back);
            }
            None => {}
        }
        w.offer_to_cores(&inner);
        inner.health.backlog.store(w.backlog.len() as u64, Ordering::Relaxed);
        inner.health.handing_over.store(w.deliveries.len() as u64, Ordering::Release);
        inner.health.writing.store(w.holding(), Ordering::SeqCst);
        if !busy {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

fn make_write(snap: &Snapshot, rec: &Record, new: bool) -> Option<Write> {
    // Only a message whose receipt is still awaited needs finding by the vendor's id: the others
    // (no receipt asked, or it came while the write was held) are found by our id alone, which
    // halves what Redis stores for them.
    let vendor_index = if new && rec.awaits_vendor_receipt() && !rec.state.is_final() {
        let vendor = &snap.vendor(rec.vendor)?.cfg.name;
        let field = record_field(vendor, &canonical_id(&rec.vendor_id));
        Some((bucket_of(field.as_bytes()), field))
    } else {
        None
    };
    Some(Write { day: rec.submitted / DAY_SECS, vendor_index })
}

/// The field of a vendor id in its bucket: the vendor and its id in canonical form.
fn record_field(vendor: &str, canonical: &[u8]) -> String {
    format!("{vendor}:{}", String::from_utf8_lossy(canonical))
}

/// Seconds in a day: records are kept in buckets per day of submission.
const DAY_SECS: u64 = 86_400;
/// Hashes per day for records and for pointers. A pipeline of records writes one HSET with many
/// fields per bucket instead of one SET per record: Redis's cost per command, not per field,
/// dominates at a few hundred thousand messages per second.
pub const BUCKETS_PER_DAY: u32 = 64;

fn bucket_of(field: &[u8]) -> u32 {
    // FNV-1a: the same on every node.
    let mut h: u32 = 0x811c_9dc5;
    for &b in field {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % BUCKETS_PER_DAY
}

/// The hash of vendor ids -> our ids.
fn vendor_ids_key(inner: &Inner, day: u64, bucket: u32) -> String {
    inner.key(format_args!("v:{day}:{bucket}"))
}

/// Ids per group key: consecutive ids (one core's, at a high rate) share one string key that
/// each flush APPENDs to, so Redis handles one command per group instead of one per message.
pub const GROUP_BITS: u32 = 5;

/// The group key of our id.
fn records_key(inner: &Inner, id: u64) -> String {
    inner.key(format_args!("m:{}", id >> GROUP_BITS))
}

/// Days whose buckets may hold a message still within `ttl_secs`, newest first, by this node's
/// clock: [`days_around`] of today.
fn recent_days(ttl_secs: u64) -> impl Iterator<Item = u64> {
    days_around(smppgw_engine::core::unix_now() / DAY_SECS, ttl_secs)
}

/// The days a receipt's message may be filed under when this node's clock says `today`, newest
/// first: tomorrow (a node whose clock runs ahead of this one's files a message sent just before
/// midnight here under the next day), today, and every earlier day `ttl_secs` may keep.
fn days_around(today: u64, ttl_secs: u64) -> impl Iterator<Item = u64> {
    let span = ttl_secs.div_ceil(DAY_SECS) + 1;
    std::iter::once(today + 1).chain((0..=span).filter_map(move |d| today.checked_sub(d)))
}

/// The days a receipt's first lookup asks (receipts mostly come within minutes): tomorrow,
/// today and yesterday.
const FIRST_LOOKUP_DAYS: usize = 3;

/// Writes the oldest due record writes, at most [`WRITE_BATCH`], in one pipeline; false when none
/// was due. A write that cannot reach Redis (its customer or vendor removed, a record too large,
/// its group key refused for its type) is counted dropped; a pipeline the link failed goes back
/// to the front of the backlog, in order.
async fn flush_writes(
    inner: &Inner,
    conn: &mut Conn,
    snap: &Snapshot,
    backlog: &mut Backlog,
    ttl: u64,
) -> bool {
    let all = inner.health.flush_now.load(Ordering::Acquire);
    let due = backlog.take_due(Instant::now(), all, WRITE_BATCH);
    if due.is_empty() {
        return false;
    }
    // One APPEND per group and one HSET per vendor-id bucket; entries keep their order, so a
    // later state of a message wins. A group also counts the messages whose record (under our
    // internal id) it carries.
    let mut groups: FxHashMap<u64, (u64, Vec<u8>, u64)> = FxHashMap::default();
    let mut vendor_ids: HashMap<(u64, u32), redis::Cmd> = HashMap::new();
    let mut kept = Vec::with_capacity(due.len());
    let mut dropped = 0u64;
    for p in due {
        let Some(w) = make_write(snap, &p.record, p.new) else {
            dropped += 1;
            continue;
        };
        // Under our internal id, which the vendor-id index points to (one per vendor submit); a
        // submit_multi destination, which shares the id the customer was given with the others,
        // under that id too, for query_sm and lookups by it.
        let (msg, shown) = (p.record.msg_id, p.record.shown_id);
        let mut pushed = false;
        for id in std::iter::once(msg).chain((shown != msg).then_some(shown)) {
            let (day, blob, _) = groups.entry(id >> GROUP_BITS).or_insert_with(|| (w.day, Vec::new(), 0));
            *day = (*day).max(w.day);
            pushed |= wire::push_record(blob, id, &p.record, snap);
        }
        if !pushed {
            dropped += 1;
            continue;
        }
        if let Some((_, _, n)) = groups.get_mut(&(msg >> GROUP_BITS)) {
            *n += 1;
        }
        if let Some((bucket, field)) = &w.vendor_index {
            vendor_ids
                .entry((w.day, *bucket))
                .or_insert_with(|| {
                    let mut c = redis::cmd("HSET");
                    c.arg(vendor_ids_key(inner, w.day, *bucket));
                    c
                })
                .arg(field)
                .arg(msg);
        }
        kept.push(p);
    }
    add(&inner.health.dropped, dropped);
    let mut pipe = redis::pipe();
    // What a day wrote goes when that day's TTL has passed.
    let expire_at = |day: u64| (day + 1) * DAY_SECS + ttl;
    // The messages of each group's APPEND, in the pipeline's order (three commands a group).
    let mut appended = Vec::with_capacity(groups.len());
    for (group, (day, blob, n)) in groups {
        if blob.is_empty() {
            continue;
        }
        let key = records_key(inner, group << GROUP_BITS);
        pipe.cmd("APPEND").arg(&key).arg(blob);
        // A group can span midnight: a later state of its earlier day's message must not cut
        // short the time of a newer one. NX gives a new key its expiry (GT takes no expiry as
        // infinite), GT only ever extends it.
        pipe.cmd("EXPIREAT").arg(&key).arg(expire_at(day)).arg("NX");
        pipe.cmd("EXPIREAT").arg(key).arg(expire_at(day)).arg("GT");
        appended.push(n);
    }
    for ((day, bucket), cmd) in vendor_ids {
        pipe.add_command(cmd);
        pipe.cmd("EXPIREAT").arg(vendor_ids_key(inner, day, bucket)).arg(expire_at(day));
    }
    // Each reply judged alone: a key of the wrong type (put there by hand, or another program's
    // under our prefix) refuses its own write, counted as malformed; it must not make the link
    // look down and hold every later write back with it.
    let failed = match replies(conn, &pipe).await {
        Ok(values) => match values.iter().find_map(write_error) {
            Some(e) => Some(e),
            None => {
                count_refused(inner, "writing records", &values);
                // The messages of a refused APPEND are not in Redis.
                let lost: u64 = values
                    .chunks(3)
                    .zip(&appended)
                    .filter(|(r, _)| matches!(r[0], Value::ServerError(_)))
                    .map(|(_, n)| *n)
                    .sum();
                add(&inner.health.dropped, lost);
                add(&inner.health.written, (kept.len() as u64).saturating_sub(lost));
                None
            }
        },
        Err(e) => Some(e),
    };
    if let Some(e) = failed {
        // Kept, in order, for when Redis is back.
        backlog.restore(kept);
        inner.fail(conn, "writing records", &e);
    }
    true
}

fn list_key(inner: &Inner, system_id: &str) -> String {
    inner.key(format_args!("dlrq:{system_id}"))
}

/// What this node took from `system_id`'s queue and its cores do not have yet.
fn taken_key(inner: &Inner, system_id: &str) -> String {
    inner.key(format_args!("dlrq-taken:{}:{system_id}", inner.node_id))
}

/// The set of system_ids whose queue may hold something: pollers take only from those (and from
/// every bound customer's queue each [`QUEUE_SWEEP_MS`]) instead of running a script for every
/// bound customer at every poll.
fn pending_key(inner: &Inner) -> String {
    inner.key(format_args!("dlrq-pending"))
}

/// TTL of the shared queues, in seconds: a queued receipt lives as long as its message.
fn queue_ttl(snap: &Snapshot) -> u64 {
    u64::from(snap.config.server.receipt_ttl_secs).max(1)
}

/// Adds to `pipe` the move of this node's taken receipts of `system_id` back to the head of its
/// queue.
fn give_back(pipe: &mut redis::Pipeline, inner: &Inner, sha: &str, system_id: &str, ttl: u64) {
    pipe.cmd("EVALSHA")
        .arg(sha)
        .arg(3)
        .arg(taken_key(inner, system_id))
        .arg(list_key(inner, system_id))
        .arg(pending_key(inner))
        .arg(ttl)
        .arg(system_id);
}

/// Puts every customer's receipts this node id had taken and not handed to its cores (a previous
/// run that died in between, a link lost before the end of a hand-over) back in their queues.
///
/// # Errors
/// The link's, as for [`read`]; a key of the wrong type is counted and skipped.
async fn give_back_all(inner: &Inner, conn: &mut MultiplexedConnection, sha: &str) -> Result<(), RedisError> {
    let snap = inner.snapshot();
    let ttl = queue_ttl(&snap);
    let customers: Vec<&str> = snap.customers.iter().flatten().map(|c| c.cfg.system_id.as_str()).collect();
    let (values, failed) =
        replies_batched(conn, &customers, |pipe, system_id| give_back(pipe, inner, sha, system_id, ttl))
            .await;
    let mut returned = 0;
    for v in values {
        if let Value::Int(n) = reply(inner, v)? {
            returned += n;
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    if returned > 0 {
        info!(returned, "receipts this node had taken from the shared queues are back in them");
    }
    Ok(())
}

/// Hands the oldest receipts/MO waiting, at most [`HAND_OVER_BATCH_MAX`] (one transaction), to
/// their customers' shared queues; what Redis did not take goes back to the local queues. The
/// rest wait for the next round, behind the cores' ops taken meanwhile.
async fn push_deliveries(inner: &Inner, conn: &mut Conn, snap: &Snapshot, w: &mut Writer) {
    let n = w.deliveries.len().min(HAND_OVER_BATCH_MAX);
    let batch: Vec<Delivery> = w.deliveries.drain(..n).collect();
    let (back, link_ok) = queue_batch(inner, conn, snap, batch).await;
    if !link_ok && inner.control.shutting_down() {
        // Kept for the next connection, ahead of the rest, as in `write_loop`.
        for d in back.into_iter().rev() {
            w.deliveries.push_front(d);
        }
        return;
    }
    w.hand_back(inner, snap, back);
}

/// Commands announcing a transaction's queues in the pending set: SADD and two EXPIREs.
const ANNOUNCE_COMMANDS: usize = 3;

/// Queues one batch in one transaction; returns the deliveries to hand back here, and false when
/// the link failed.
async fn queue_batch(
    inner: &Inner,
    conn: &mut Conn,
    snap: &Snapshot,
    batch: Vec<Delivery>,
) -> (Vec<Delivery>, bool) {
    let ttl = queue_ttl(snap);
    let max = snap.config.server.receipt_queue_max.max(1);
    // One transaction: a connection failure leaves none of the batch queued, so handing it all
    // back to the local queues duplicates nothing (except when the connection drops between
    // Redis applying it and its answer reaching us: then twice, never none). Batches EXEC'd
    // before are done. Inside it each push is judged by its own reply: one Redis refuses (a
    // customer's key of the wrong type, put there by hand) stays here without the others
    // coming back twice.
    let mut pipe = redis::pipe();
    pipe.atomic();
    let mut pushed = Vec::with_capacity(batch.len());
    let mut customers: Vec<&str> = Vec::new();
    for d in batch {
        let Some(c) = snap.customer_at(d.customer) else { continue };
        let key = list_key(inner, &c.cfg.system_id);
        pipe.cmd("RPUSH").arg(&key).arg(wire::encode_delivery(&d));
        pipe.cmd("LTRIM").arg(&key).arg(-i64::from(max)).arg(-1);
        pipe.cmd("EXPIRE").arg(&key).arg(ttl);
        customers.push(&c.cfg.system_id);
        pushed.push(d);
    }
    if pushed.is_empty() {
        return (Vec::new(), true);
    }
    // Announced in the same transaction: a poller that finds no member takes nothing, and one
    // whose take emptied the queue just before removed the member atomically with it. The set
    // lives as long as the newest queue it announces (NX gives a new set its TTL, GT only ever
    // extends it), so it never outlives them all; a member whose queue expired goes at its
    // next take.
    customers.sort_unstable();
    customers.dedup();
    let pending = pending_key(inner);
    pipe.cmd("SADD").arg(&pending).arg(&customers);
    pipe.cmd("EXPIRE").arg(&pending).arg(ttl).arg("NX");
    pipe.cmd("EXPIRE").arg(&pending).arg(ttl).arg("GT");
    let commands = 3 * pushed.len() + ANNOUNCE_COMMANDS;
    // MULTI, one QUEUED per command, then EXEC's reply: one reply per command.
    let exec = conn.send_packed_commands(&pipe, pipe.len() + 1, 1).await.map(|mut v| v.pop());
    let replies = match exec {
        Ok(Some(Value::Array(replies))) if replies.len() == commands => replies,
        // Refused whole (a command of it refused as it was queued, EXECABORT: Redis out of
        // memory): nothing of it was applied, and the link is fine; all of it stays here.
        Ok(Some(Value::ServerError(e))) if !is_link_error(&RedisError::from(e.clone())) => {
            inner.health.refuse("queueing receipts", &RedisError::from(e));
            return (pushed, true);
        }
        Err(e) if !is_link_error(&e) => {
            inner.health.refuse("queueing receipts", &e);
            return (pushed, true);
        }
        Ok(_) => {
            let e =
                RedisError::from((ErrorKind::ResponseError, "the receipt queue transaction was not applied"));
            inner.fail(conn, "queueing receipts", &e);
            return (pushed, false);
        }
        Err(e) => {
            inner.fail(conn, "queueing receipts", &e);
            return (pushed, false);
        }
    };
    // `refused`: a reply of neither kind (malformed).
    let (mut queued, mut over, mut refused) = (0u64, 0u64, 0u64);
    let mut link_ok = true;
    let mut back = Vec::new();
    let (pushes, announce) = replies.split_at(commands - ANNOUNCE_COMMANDS);
    // The queues are written whatever the set's fate: a set of the wrong type only leaves them
    // to the sweep.
    match announce.iter().find_map(write_error) {
        Some(e) => {
            inner.fail(conn, "queueing receipts", &e);
            link_ok = false;
        }
        None => count_refused(inner, "announcing queued receipts", announce),
    }
    for (d, r) in pushed.into_iter().zip(pushes.chunks(3)) {
        match &r[0] {
            Value::Int(len) => {
                queued += 1;
                // Each push past the bound drops exactly one (the oldest).
                over += u64::from(*len > i64::from(max));
            }
            other => {
                match write_error(other) {
                    Some(e) => {
                        inner.fail(conn, "queueing receipts", &e);
                        link_ok = false;
                    }
                    None if matches!(other, Value::ServerError(_)) => {
                        count_refused(inner, "queueing receipts", std::slice::from_ref(other));
                    }
                    None => refused += 1,
                }
                back.push(d);
            }
        }
    }
    add(&inner.health.deliveries_out, queued);
    add(&inner.health.trimmed, over);
    add(&inner.health.malformed, refused);
    (back, link_ok)
}

/// Tries to hand a message to a core for this long while its control queue is full (the cores
/// drain it every few milliseconds, so only a stalled core makes this give up).
const CORE_SEND_PATIENCE_MS: u64 = 500;

/// Hands `msg` to a core, waiting while its control queue is full; false when it stayed full. For
/// tasks of their own only: the writer keeps what a core cannot take yet ([`Outbox`]).
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

/// Looks up the receipts due (at most [`LOOKUP_BATCH`]) and hands each record found to its
/// shard's core.
async fn resolve_misses(inner: &Inner, conn: &mut Conn, snap: &Snapshot, w: &mut Writer) {
    let due = w.misses.take_due(Instant::now(), LOOKUP_BATCH);
    // First try the days around today (receipts mostly come within minutes; tomorrow for a node
    // whose clock runs ahead), later every day the TTL covers. Phase one finds our id from the
    // vendor's, phase two the record.
    let ttl = u64::from(snap.config.server.receipt_ttl_secs).max(1);
    let mut pipe = redis::pipe();
    let mut asked = Vec::with_capacity(due.len());
    for m in &due {
        let vendor_rt = snap.vendor(m.vendor);
        let radix = vendor_rt.map_or(Radix::BOTH, |v| Radix::receipt_to_record(v.cfg.id_format));
        let vendor = vendor_rt.map(|v| v.cfg.name.clone()).unwrap_or_default();
        let c = canonical_id(&m.id);
        let first = if m.attempt == 0 { FIRST_LOOKUP_DAYS } else { usize::MAX };
        let days: Vec<u64> = recent_days(ttl).take(first).collect();
        let mut keys = Vec::new();
        for spelling in std::iter::once(c.clone()).chain(alternate_ids(&c, radix)) {
            let field = record_field(&vendor, &spelling);
            let bucket = bucket_of(field.as_bytes());
            for &day in &days {
                pipe.cmd("HGET").arg(vendor_ids_key(inner, day, bucket)).arg(&field);
                keys.push(day);
            }
        }
        asked.push(keys);
    }
    add(&inner.health.lookups, due.len() as u64);
    let ids: Vec<Option<u64>> = match read(inner, conn, &pipe).await {
        // A malformed entry reads as absent: its lookup counts an attempt like any miss, so it
        // ends, instead of taking the link down and being asked again after every reconnect.
        Ok(a) => a.into_iter().map(|v| id_value(inner, v)).collect(),
        Err(e) => {
            // Not an attempt: the link is down, and the lookup waits for it.
            inner.fail(conn, "looking up receipts", &e);
            due.into_iter().for_each(|m| w.misses.push(m));
            return;
        }
    };
    let mut ids = ids.into_iter();
    let found: Vec<Option<(u64, u64)>> = asked
        .iter()
        .map(|days| days.iter().zip(ids.by_ref().take(days.len())).find_map(|(d, id)| id.map(|id| (*d, id))))
        .collect();
    let mut pipe = redis::pipe();
    for (_, shown) in found.iter().flatten() {
        pipe.cmd("GET").arg(records_key(inner, *shown));
    }
    let records: Vec<Option<Vec<u8>>> = if found.iter().any(Option::is_some) {
        match read(inner, conn, &pipe).await {
            Ok(a) => a.into_iter().map(|v| bytes_value(inner, v)).collect(),
            Err(e) => {
                inner.fail(conn, "looking up receipts", &e);
                due.into_iter().for_each(|m| w.misses.push(m));
                return;
            }
        }
    } else {
        Vec::new()
    };
    let mut records = records.into_iter();
    let stopping = inner.control.shutting_down();
    for (m, f) in due.into_iter().zip(found) {
        let rec = f.and_then(|(_, shown)| {
            let blob = records.next().flatten()?;
            wire::find_entry(&blob, shown).and_then(|v| wire::decode_record(v, snap))
        });
        match rec {
            Some(rec) => {
                add(&inner.health.found, 1);
                let shard = shard_of(rec.vendor, &shard_key(&canonical_id(&rec.vendor_id)), snap.cores);
                w.hand_to_core(inner, shard, Control::Record(Box::new(rec)));
            }
            None if m.attempt + 1 < MISS_RETRY_MS.len() || stopping => {
                let attempt = (m.attempt + 1).min(MISS_RETRY_MS.len() - 1);
                let mut wait = MISS_RETRY_MS[attempt];
                if stopping {
                    wait = wait.min(MISS_RETRY_STOPPING_MS);
                }
                let due = Instant::now() + Duration::from_millis(wait);
                w.misses.push(Miss { due, attempt, ..m });
            }
            None => add(&inner.health.given_up, 1),
        }
    }
}

async fn lookup_shown(inner: &Inner, shown_id: u64) -> Option<Record> {
    lookup_shown_checked(inner, shown_id).await.ok().flatten()
}

/// The record of `shown_id` in the shared store: `Ok(None)` when it is not there, `Err` when
/// Redis could not be asked.
async fn lookup_shown_checked(inner: &Inner, shown_id: u64) -> Result<Option<Record>, ()> {
    let mut conn = inner.conn().ok_or(())?;
    add(&inner.health.lookups, 1);
    let mut pipe = redis::pipe();
    pipe.cmd("GET").arg(records_key(inner, shown_id));
    let blob = match read(inner, &mut conn, &pipe).await {
        Ok(v) => v.into_iter().next().and_then(|v| bytes_value(inner, v)),
        Err(e) => {
            inner.fail(&conn, "looking up a message", &e);
            return Err(());
        }
    };
    let rec = blob.and_then(|b| wire::decode_record(wire::find_entry(&b, shown_id)?, &inner.snapshot()));
    if rec.is_some() {
        add(&inner.health.found, 1);
    }
    Ok(rec)
}

/// When a derived receipt's part is looked for in the shared store: the node that handled it
/// writes its records behind, so a part accepted just before the last is retried.
pub const DERIVED_CHECK_MS: [u64; 3] = [0, 300, 1_500];

/// Whether the node that handled part `shown_id` stored it (the vendor accepted it). A store
/// that cannot be asked counts as stored: the receipt is delivered, as without Redis.
async fn part_stored(inner: &Inner, shown_id: u64) -> bool {
    for ms in DERIVED_CHECK_MS {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        match lookup_shown_checked(inner, shown_id).await {
            Ok(Some(_)) | Err(()) => return true,
            Ok(None) => {}
        }
    }
    false
}

/// Takes from the shared queues of the customers with a receiving bind here, every [`POLL_MS`]:
/// from those the pending set announces, and every [`QUEUE_SWEEP_MS`] (and on a new connection)
/// from all of them. A poll with nothing pending is one command, whatever the customers bound.
async fn poll_deliveries(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_millis(POLL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The connection and time of the last sweep.
    let mut swept: Option<(u64, Instant)> = None;
    loop {
        tick.tick().await;
        let Some(mut conn) = inner.conn() else { continue };
        // Held until what is taken below is with the cores or back in the queue; none once
        // shutdown began (the queue keeps them for the node the customer binds to next).
        let Some(_handoff) = inner.control.begin_handoff() else { continue };
        let snap = inner.snapshot();
        let bound: Vec<(u32, &str)> = snap
            .customers
            .iter()
            .flatten()
            .filter(|c| c.receivers.load(Ordering::Acquire) > 0)
            .map(|c| (c.idx, c.cfg.system_id.as_str()))
            .collect();
        if bound.is_empty() {
            continue;
        }
        let now = Instant::now();
        let sweep = sweep_due(swept, conn.id, now);
        let due = if sweep {
            swept = Some((conn.id, now));
            bound
        } else {
            match announced(&inner, &mut conn, bound).await {
                Ok(due) => due,
                Err(e) => {
                    inner.fail(&conn, "reading which receipt queues are pending", &e);
                    continue;
                }
            }
        };
        if !due.is_empty() {
            take_queued(&inner, &mut conn, &snap, due).await;
        }
    }
}

/// Whether a poll on connection `conn` at `now` takes from every bound customer's queue, given
/// the connection and time of the last sweep: a new connection may follow an outage in which the
/// set was lost or queues were pushed without it.
fn sweep_due(swept: Option<(u64, Instant)>, conn: u64, now: Instant) -> bool {
    swept.is_none_or(|(on, at)| {
        on != conn || now.saturating_duration_since(at) >= Duration::from_millis(QUEUE_SWEEP_MS)
    })
}

/// Those of `bound` whose queue the pending set announces, asked [`PENDING_CHECK_BATCH`] at a
/// time: the work is that of the customers bound here, not of every customer with a queue (a
/// customer that never binds a receiver keeps one for the receipt TTL).
///
/// # Errors
/// The link's, as for [`read`]; a set of the wrong type reads as empty (counted), which leaves
/// the queues to the sweep.
async fn announced<'a>(
    inner: &Inner,
    conn: &mut Conn,
    bound: Vec<(u32, &'a str)>,
) -> Result<Vec<(u32, &'a str)>, RedisError> {
    let key = pending_key(inner);
    let mut pipe = redis::pipe();
    for chunk in bound.chunks(PENDING_CHECK_BATCH) {
        let cmd = pipe.cmd("SMISMEMBER").arg(&key);
        for (_, system_id) in chunk {
            cmd.arg(*system_id);
        }
    }
    let answers = read(inner, conn, &pipe).await?;
    let mut flags = Vec::with_capacity(bound.len());
    for (chunk, v) in bound.chunks(PENDING_CHECK_BATCH).zip(answers) {
        match member_flags(v, chunk.len()) {
            Some(f) => flags.extend(f),
            None => {
                // Nil is a set of the wrong type, counted by `read`.
                flags.extend(std::iter::repeat_n(false, chunk.len()));
            }
        }
    }
    Ok(bound.into_iter().zip(flags).filter_map(|(b, pending)| pending.then_some(b)).collect())
}

/// SMISMEMBER's answer for `n` members, one flag each; None when it is not one (counted as
/// malformed unless Nil, which `read` made of a key of the wrong type and counted).
fn member_flags(v: Value, n: usize) -> Option<Vec<bool>> {
    match v {
        Value::Array(a) if a.len() == n => Some(a.iter().map(|x| matches!(x, Value::Int(1))).collect()),
        _ => None,
    }
}

/// How many a take asks of a customer's queue when this poll already handed `so_far` of its
/// receipts to the cores: a batch, and never past `room`, what the customer's local queue holds
/// (more would push out its oldest there).
fn take_size(so_far: usize, room: usize) -> usize {
    DELIVERY_POP_BATCH.min(room.saturating_sub(so_far))
}

/// What a customer's local queue holds while it has a receiving bind (the engine's bound): one
/// poll takes at most this much of its shared queue.
fn local_room(snap: &Snapshot) -> usize {
    (snap.config.server.receipt_queue_max as usize).max(1).saturating_mul(BOUND_QUEUE_FACTOR)
}

/// The first reply among the ends of hand-overs (LTRIM of a taken list, or its give-back) that
/// means Redis cannot serve; without one, the refusals are counted ([`count_refused`]: what a
/// refused end leaves in a taken list comes again at the next take).
fn ends_error(inner: &Inner, values: &[Value]) -> Option<RedisError> {
    let failed = values.iter().find_map(write_error);
    if failed.is_none() {
        count_refused(inner, "ending the hand-over of queued receipts", values);
    }
    failed
}

/// Takes the receipts queued for `due`, hands them to each customer's home core and ends each
/// take (the taken list trimmed when the cores have them, given back when they do not). A take
/// that came back full is taken again, with the ends before it in the same round trip (a take
/// returns what its taken list still holds), up to [`TAKE_ROUNDS_MAX`] takes and
/// [`local_room`] receipts per customer. A failure leaves what was taken in the taken lists: given
/// back at the reconnect, so a receipt the cores already have may come twice, but none is lost.
async fn take_queued(inner: &Inner, conn: &mut Conn, snap: &Snapshot, due: Vec<(u32, &str)>) {
    let scripts = inner.queue_scripts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let ttl = queue_ttl(snap);
    let room = local_room(snap);
    let pending = pending_key(inner);
    let cores = inner.control.cores().max(1);
    // Each customer with how many of its receipts this poll handed to the cores.
    let mut due: Vec<(u32, &str, usize)> = due.into_iter().map(|(idx, s)| (idx, s, 0)).collect();
    let mut ends = redis::pipe();
    for round in 0..TAKE_ROUNDS_MAX {
        // A stopping node takes no more (what it took goes to the cores, which still read).
        if due.is_empty() || (round > 0 && inner.control.shutting_down()) {
            break;
        }
        let mut pipe = std::mem::replace(&mut ends, redis::pipe());
        let ended = pipe.len();
        let mut asked = Vec::with_capacity(due.len());
        for (_, system_id, so_far) in &due {
            let most = take_size(*so_far, room);
            pipe.cmd("EVALSHA")
                .arg(&scripts.take)
                .arg(3)
                .arg(list_key(inner, system_id))
                .arg(taken_key(inner, system_id))
                .arg(&pending)
                .arg(most)
                .arg(ttl)
                .arg(*system_id);
            asked.push(most);
        }
        let values = match replies(conn, &pipe).await {
            Ok(v) => v,
            Err(e) => {
                // Whatever Redis did take waits in the taken lists for the reconnect.
                inner.fail(conn, "taking queued receipts", &e);
                return;
            }
        };
        let (end_replies, takes) = values.split_at(ended);
        if let Some(e) = ends_error(inner, end_replies) {
            inner.fail(conn, "ending the hand-over of queued receipts", &e);
            return;
        }
        // Judged reply by reply before any goes to the cores: one customer's queue of the wrong
        // type must not fail the others', whose receipts the same pipeline has already taken.
        let takes: Vec<Value> = match takes.iter().map(|v| reply(inner, v.clone())).collect() {
            Ok(t) => t,
            Err(e) => {
                inner.fail(conn, "taking queued receipts", &e);
                return;
            }
        };
        let mut again = Vec::new();
        for ((idx, system_id, so_far), (v, most)) in due.into_iter().zip(takes.into_iter().zip(asked)) {
            let items = match v {
                Value::Array(items) => items,
                Value::Nil => continue,
                _ => {
                    add(&inner.health.malformed, 1);
                    continue;
                }
            };
            if items.is_empty() {
                continue;
            }
            let count = items.len();
            let raw: Vec<Vec<u8>> = items.into_iter().filter_map(|i| bytes_value(inner, i)).collect();
            let batch: Vec<Delivery> = raw.iter().filter_map(|b| wire::decode_delivery(b, idx)).collect();
            add(&inner.health.malformed, (raw.len() - batch.len()) as u64);
            let n = batch.len() as u64;
            if batch.is_empty() || to_core(inner, idx as usize % cores, Control::Deliveries(batch)).await {
                add(&inner.health.deliveries_in, n);
                ends.cmd("LTRIM").arg(taken_key(inner, system_id)).arg(count).arg(-1);
                let so_far = so_far + count;
                if count >= most && so_far < room {
                    again.push((idx, system_id, so_far));
                }
            } else {
                give_back(&mut ends, inner, &scripts.give_back, system_id, ttl);
            }
        }
        due = again;
    }
    let failed = match replies(conn, &ends).await {
        Ok(values) => ends_error(inner, &values),
        Err(e) => Some(e),
    };
    if let Some(e) = failed {
        inner.fail(conn, "ending the hand-over of queued receipts", &e);
    }
}

async fn keep_leases(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_millis(LEASE_TICK_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut version = 0;
    let mut specs: Vec<LeaseSpec> = Vec::new();
    let mut states = LeaseStates::default();
    // Until when the leases stay off for a refused request.
    let mut refused_until: Option<Instant> = None;
    loop {
        tick.tick().await;
        let snap = inner.snapshot();
        if snap.version != version {
            version = snap.version;
            specs = snap.leases();
            // A limit whose value changed has a new lease: forget its state so that it asks at
            // once (an idle state would wait for a refusal that an inactive lease never makes,
            // leaving only the local limit for the rest of the window). The others stay, also
            // while Redis is away (their leases inactive, their units kept for its return).
            states.retain_configured(&specs);
        }
        let Some(mut conn) = inner.conn() else {
            // Only the local limits apply while Redis is away. The states are kept: Redis
            // counted the units each lease holds as this node's, so when it answers again
            // within the same window the lease resumes with them instead of asking anew (each
            // blip stranded a share of every limit, up to a fiftieth of a brand's day).
            for s in &specs {
                s.lease.deactivate();
            }
            continue;
        };
        let now = Instant::now();
        if inner.health.flush_now.load(Ordering::Acquire) {
            // The node stops (its cores have): what the leases hold in windows still running
            // goes back to Redis for the other nodes, once.
            if !inner.health.leases_returned.load(Ordering::Acquire) {
                let mut held = Vec::new();
                for s in &specs {
                    let units = s.lease.tokens();
                    if let Some(st) = states.get(s).filter(|st| st.in_window(now))
                        && s.lease.is_active()
                        && units > 0
                    {
                        held.push((inner.key(format_args!("{}:{}", s.key, st.window())), units));
                    }
                    s.lease.deactivate();
                }
                let (_, failed) = replies_batched(&mut conn.link, &held, |pipe, (key, units)| {
                    pipe.cmd("EVAL").arg(RETURN_SCRIPT).arg(1).arg(key).arg(units);
                })
                .await;
                match failed {
                    None => inner.health.leases_returned.store(true, Ordering::Release),
                    Some(e) => inner.fail(&conn, "giving back leased units", &e),
                }
            }
            continue;
        }
        if refused_until.is_some_and(|t| now < t) {
            for s in &specs {
                s.lease.deactivate();
            }
            continue;
        }
        for s in &specs {
            if !s.lease.is_active() && states.get(s).is_some_and(|st| st.in_window(now)) {
                s.lease.resume();
            }
        }
        let mut asks: Vec<(usize, u64)> = Vec::new();
        let mut first_asks = LEASE_FIRST_ASKS_PER_TICK;
        for (i, s) in specs.iter().enumerate() {
            // A lease seen for the first time asks at once: a large configuration's first asks
            // go over several ticks, so that no round holds the connection past its timeout
            // (the lease admits on its local limit until then).
            states.at_tick(s, now, &mut first_asks, |st| {
                if let Some(want) = st.plan(s, now) {
                    asks.push((i, want));
                }
            });
        }
        if asks.is_empty() {
            continue;
        }
        let sha = inner.lease_sha.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        add(&inner.health.lease_requests, asks.len() as u64);
        let (values, failed) = replies_batched(&mut conn.link, &asks, |pipe, &(i, want)| {
            let s = &specs[i];
            pipe.cmd("EVALSHA")
                .arg(&sha)
                .arg(1)
                .arg(inner.key(format_args!("{}", s.key)))
                .arg(s.limit)
                .arg(s.window_ms)
                .arg(want);
        })
        .await;
        // The answers of the pipelines that went through are applied (Redis counted those units
        // as this node's) even when a later one failed; each judged alone: one Redis refused
        // (out of memory) fails neither the others nor the link.
        let answers = values;
        if let Some(e) = failed {
            inner.fail(&conn, "leasing quotas", &e);
        }
        let now = Instant::now();
        for ((i, want), answer) in asks.into_iter().zip(answers) {
            let s = &specs[i];
            let (grant, window, ms_left, bad) = match reply(&inner, answer) {
                Ok(Value::Nil) => {
                    // Refused (counted; Redis out of memory): as while Redis is away, the local
                    // limits apply alone for a while. The states stay: Redis counted the units
                    // the leases hold as this node's.
                    s.lease.deactivate();
                    refused_until = Some(now + Duration::from_millis(LEASE_REFUSED_PAUSE_MS));
                    continue;
                }
                Ok(v) => match redis::from_redis_value::<(i64, i64, i64, i64)>(&v) {
                    Ok(a) => a,
                    Err(_) => {
                        add(&inner.health.malformed, 1);
                        s.lease.deactivate();
                        continue;
                    }
                },
                Err(e) => {
                    inner.fail(&conn, "leasing quotas", &e);
                    break;
                }
            };
            if bad != 0 {
                add(&inner.health.malformed, 1);
            }
            if let Some(st) = states.get_mut(s) {
                st.apply(s, want, (grant, window, ms_left), now);
            }
        }
    }
}

/// Field of a node's bind-count hash holding when it was published (unix ms, Redis's clock); the
/// others are system_ids, which are at most 15 characters: this one is longer, so none of them.
const BINDS_AT_FIELD: &str = "@published_at_ms";

/// Publishes this node's bind counts and reads the other nodes', every [`BINDS_PUBLISH_MS`].
/// Each node keeps one hash, `binds:node:{node_id}`, of the customers bound to it (and when it
/// wrote it), and is listed in the sorted set `binds:nodes` by that time: a second's work is one
/// round trip whose size grows with the customers bound and the nodes, not with every customer
/// configured. Every time is Redis's ([`BINDS_SCRIPT`], `TIME`): node clocks apart by more than
/// [`BINDS_STALE_MS`] would otherwise ignore each other's counts or drop each other's entries.
async fn publish_binds(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_millis(BINDS_PUBLISH_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let node = inner.node_id.to_string();
    let own_key = inner.key(format_args!("binds:node:{node}"));
    let nodes_key = inner.key(format_args!("binds:nodes"));
    // The customers this node published last on which connection (a customer no longer bound
    // here is removed from its hash); None while what Redis holds of this node is unknown (at
    // start: a run of the same node id that died left its hash for its TTL; after an outage or
    // a failed publish), and the hash is then written whole. And the other nodes publishing at
    // the last look.
    let mut published: Option<(u64, std::collections::HashSet<String>)> = None;
    let mut others: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = inner.health.stopping.notified() => {}
        }
        if inner.health.flush_now.load(Ordering::Acquire) {
            withdraw_binds(&inner, &own_key, &nodes_key, &node).await;
            continue;
        }
        let snap = inner.snapshot();
        let Some(mut conn) = inner.conn() else {
            for c in snap.customers.iter().flatten() {
                c.remote_binds.store(0, Ordering::Release);
            }
            published = None;
            continue;
        };
        // A connection other than the last publish's: Redis may have lost or kept anything since.
        let known = published.take().filter(|(on, _)| *on == conn.id).map(|(_, set)| set);
        let mut bound = std::collections::HashSet::new();
        let mut counts = Vec::new();
        for c in snap.customers.iter().flatten() {
            let mine = c.binds.load(Ordering::Acquire);
            if mine > 0 {
                counts.push((c.cfg.system_id.as_str(), mine));
                bound.insert(c.cfg.system_id.clone());
            }
        }
        let gone: Vec<&String> = known.as_ref().map(|k| k.difference(&bound).collect()).unwrap_or_default();
        // The writes in one script on Redis's clock (whole: the hash deleted and written again
        // atomically, so that no other node ever reads it empty), then Redis's time to judge
        // the others' by, the node list and the other nodes' hashes.
        let mut pipe = redis::pipe();
        let cmd = pipe
            .cmd("EVAL")
            .arg(BINDS_SCRIPT)
            .arg(2)
            .arg(&own_key)
            .arg(&nodes_key)
            .arg(&node)
            .arg(BINDS_AT_FIELD)
            .arg(BINDS_STALE_MS * 2)
            .arg(BINDS_SCRIPT_CHUNK)
            .arg(u8::from(known.is_none()))
            .arg(gone.len())
            .arg(gone);
        for (system_id, n) in counts {
            cmd.arg(system_id).arg(n);
        }
        pipe.cmd("TIME");
        pipe.cmd("ZRANGE").arg(&nodes_key).arg(0).arg(-1);
        // The nodes seen last time; one that joined since is read next time.
        for n in &others {
            pipe.cmd("HGETALL").arg(inner.key(format_args!("binds:node:{n}")));
        }
        let all = match replies(&mut conn, &pipe).await {
            Ok(a) => a,
            Err(e) => {
                inner.fail(&conn, "publishing bind counts", &e);
                continue;
            }
        };
        let Some((write, read)) = all.split_first() else { continue };
        match write {
            Value::ServerError(_) => match write_error(write) {
                Some(e) => {
                    inner.fail(&conn, "publishing bind counts", &e);
                    continue;
                }
                // A key of the wrong type (a hand edit), or Redis refusing (out of memory):
                // counted, and the hash written whole next time.
                None => count_refused(&inner, "publishing bind counts", std::slice::from_ref(write)),
            },
            _ => published = Some((conn.id, bound)),
        }
        let Some((time, read)) = read.split_first() else { continue };
        let now_ms = match reply(&inner, time.clone()) {
            Ok(t) => redis_time_ms(&t).or_else(|| malformed(&inner)),
            Err(e) => {
                inner.fail(&conn, "reading bind counts", &e);
                continue;
            }
        };
        let Some((node_list, read)) = read.split_first() else { continue };
        // Counts come from other nodes (or a hand edit): each count is taken at most at the
        // customer's limit and summed without overflow, and a hash whose time is ahead of Redis's
        // clock by more than the staleness bound is stale too.
        let mut totals: HashMap<Vec<u8>, u32> = HashMap::new();
        let mut failed = None;
        for v in read {
            let v = match reply(&inner, v.clone()) {
                Ok(v) => v,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            let (at, counts) = bind_counts(&inner, v);
            if binds_fresh(at, now_ms) {
                for (customer, count) in counts {
                    let t = totals.entry(customer).or_default();
                    *t = t.saturating_add(count);
                }
            }
        }
        if let Some(e) = failed {
            inner.fail(&conn, "reading bind counts", &e);
            continue;
        }
        for c in snap.customers.iter().flatten() {
            let others = totals.get(c.cfg.system_id.as_bytes()).copied().unwrap_or(0);
            c.remote_binds.store(others.min(c.cfg.max_binds), Ordering::Release);
        }
        // The node list for the next round.
        others = match reply(&inner, node_list.clone()) {
            Ok(Value::Array(ids)) => ids
                .into_iter()
                .filter_map(|id| match id {
                    Value::BulkString(b) => String::from_utf8(b).ok().filter(|n| n.parse::<u32>().is_ok()),
                    _ => None,
                })
                .filter(|n| *n != node)
                .collect(),
            Ok(_) => {
                malformed::<()>(&inner);
                Vec::new()
            }
            Err(e) => {
                inner.fail(&conn, "reading bind counts", &e);
                Vec::new()
            }
        };
    }
}

/// At a clean stop (the cores have stopped, so no customer is bound here any more): takes this
/// node's bind counts out of Redis, its hash and its place in the node list, once. The other
/// nodes then count none of its binds from their next round, instead of until its last
/// publication ages out ([`BINDS_STALE_MS`]): a customer at its `max_binds` that this node
/// unbound at its stop can bind again elsewhere at once.
async fn withdraw_binds(inner: &Inner, own_key: &str, nodes_key: &str, node: &str) {
    if inner.health.binds_withdrawn.load(Ordering::Acquire) {
        return;
    }
    let Some(mut conn) = inner.conn() else { return };
    let mut pipe = redis::pipe();
    pipe.cmd("DEL").arg(own_key);
    pipe.cmd("ZREM").arg(nodes_key).arg(node);
    let failed = match replies(&mut conn, &pipe).await {
        Ok(values) => {
            count_refused(inner, "withdrawing bind counts", &values);
            values.iter().find_map(write_error)
        }
        Err(e) => Some(e),
    };
    match failed {
        Some(e) => inner.fail(&conn, "withdrawing bind counts", &e),
        None => inner.health.binds_withdrawn.store(true, Ordering::Release),
    }
}

/// Whether a bind-count hash published at `at` counts at `now_ms` (both Redis's clock, unix ms):
/// neither older nor ahead by more than [`BINDS_STALE_MS`]. Nothing counts without either time.
fn binds_fresh(at: Option<u64>, now_ms: Option<u64>) -> bool {
    matches!((at, now_ms), (Some(at), Some(now)) if now.abs_diff(at) <= BINDS_STALE_MS)
}

/// Redis's `TIME` reply (seconds and microseconds, as text) in unix ms; None when it is not one.
fn redis_time_ms(v: &Value) -> Option<u64> {
    let Value::Array(parts) = v else { return None };
    let number = |v: &Value| match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse::<u64>().ok(),
        Value::Int(i) => u64::try_from(*i).ok(),
        _ => None,
    };
    match parts.as_slice() {
        [secs, micros] => number(secs)?.checked_mul(1_000)?.checked_add(number(micros)? / 1_000),
        _ => None,
    }
}

/// Writes the node's id watermark (see [`crate::ids`]) every [`crate::ids::ID_STATE_WRITE_MS`]
/// while it changes, kept for the receipt TTL and a day (ids are not reused within the TTL).
async fn keep_ids(inner: Arc<Inner>) {
    let ids = inner.control.ids();
    let script = redis::Script::new(crate::ids::REDIS_SAVE_SCRIPT);
    let key = crate::ids::redis_key(&inner.prefix, inner.node_id);
    let mut tick = tokio::time::interval(Duration::from_millis(crate::ids::ID_STATE_WRITE_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut saved = None;
    loop {
        tick.tick().await;
        let now = ids.issued();
        let Some(mut conn) = inner.conn().filter(|_| saved != Some(now)) else { continue };
        let ttl = u64::from(inner.snapshot().config.server.receipt_ttl_secs).saturating_add(86_400);
        match script.key(&key).arg(now).arg(ttl).invoke_async::<Value>(&mut conn.link).await {
            Ok(_) => saved = Some(now),
            // Refused (out of memory): tried again at the next tick, on the same link.
            Err(e) if !is_link_error(&e) => inner.health.refuse("saving the message id watermark", &e),
            Err(e) => inner.fail(&conn, "saving the message id watermark", &e),
        }
    }
}

/// A node's bind-count hash: when it was published, and (system_id, count) for each customer
/// bound there. A field that does not parse is counted as malformed and skipped.
fn bind_counts(inner: &Inner, reply: Value) -> (Option<u64>, Vec<(Vec<u8>, u32)>) {
    let pairs: Vec<(Value, Value)> = match reply {
        Value::Nil => Vec::new(),
        Value::Map(pairs) => pairs,
        Value::Array(flat) if flat.len() % 2 == 0 => {
            let mut it = flat.into_iter();
            std::iter::from_fn(|| Some((it.next()?, it.next()?))).collect()
        }
        _ => malformed(inner).unwrap_or_default(),
    };
    let mut at = None;
    let mut counts = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        let number = |v: &[u8]| std::str::from_utf8(v).ok().and_then(|v| v.parse::<u64>().ok());
        match (k, v) {
            (Value::BulkString(k), Value::BulkString(v)) if k == BINDS_AT_FIELD.as_bytes() => {
                at = number(&v).or_else(|| malformed(inner));
            }
            (Value::BulkString(k), Value::BulkString(v)) => {
                match number(&v).and_then(|n| u32::try_from(n).ok()) {
                    Some(n) => counts.push((k, n)),
                    None => {
                        malformed::<()>(inner);
                    }
                }
            }
            _ => {
                malformed::<()>(inner);
            }
        }
    }
    (at, counts)
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
    let c = health.clone();
    let state = state
        .with_backend(crate::http::Backend::new("redis", move || h.check()))
        .with_ready_check(move || c.node_id_conflict())
        .with_extra_metrics(move |out| health.render(out))
        .with_remote_lookup(move |id| {
            let r = r.clone();
            async move { r.lookup(id).await }
        });
    (state, redis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_receipt_lookup_does_not_wait_behind_one_retrying_later() {
        let now = Instant::now();
        let miss = |after_ms: u64, attempt: usize| Miss {
            due: now + Duration::from_millis(after_ms),
            attempt,
            vendor: 0,
            id: Bytes::from(format!("{after_ms}")),
        };
        let mut m = Misses::default();
        m.push(miss(50_000, 8));
        m.push(miss(10, 0));
        m.push(miss(10, 0));
        m.push(miss(30_000, 7));
        assert_eq!(m.next_due(), Some(now + Duration::from_millis(10)));
        let due = m.take_due(now + Duration::from_millis(20), 10);
        assert_eq!(due.len(), 2, "both new lookups, not the ones retrying later");
        assert!(due.iter().all(|d| d.attempt == 0));
        assert_eq!(m.len(), 2);
        let due = m.take_due(now + Duration::from_secs(60), 1);
        assert_eq!(due[0].attempt, 7, "the soonest first, up to the batch");
        assert_eq!(m.next_due(), Some(now + Duration::from_millis(50_000)));
    }
    use smppgw_codec::receipt::MessageState;
    use smppgw_engine::store::{Small, Wanted};

    fn rec(shown_id: u64, state: MessageState) -> Record {
        Record {
            msg_id: shown_id,
            shown_id,
            customer: 0,
            vendor: 0,
            vendor_id: Small::from("1"),
            source: (0, 0, Small::from("1")),
            dest: (0, 0, Small::from("2")),
            submitted: 0,
            submitted_ms: 0,
            state,
            final_at: 0,
            error: 0,
            receipts: Wanted::FINAL,
            siblings: Vec::new(),
        }
    }

    #[test]
    fn a_receipt_within_the_hold_is_written_with_its_message() {
        let t = Instant::now();
        let mut b = Backlog::new();
        b.put(rec(1, MessageState::Enroute), true, t);
        b.put(rec(2, MessageState::Enroute), true, t);
        b.put(rec(1, MessageState::Delivered), false, t + Duration::from_millis(5));
        assert_eq!(b.len(), 2, "the receipt's state replaced the waiting first write");
        assert!(b.take_due(t + Duration::from_millis(50), false, 10).is_empty(), "still held");
        let due = b.take_due(t + Duration::from_millis(WRITE_HOLD_MS), false, 10);
        let got: Vec<(u64, MessageState, bool)> =
            due.iter().map(|p| (p.record.shown_id, p.record.state, p.new)).collect();
        assert_eq!(got, vec![(1, MessageState::Delivered, true), (2, MessageState::Enroute, true)]);
        assert_eq!(b.len(), 0);
    }

    #[test]
    fn the_destinations_of_one_submit_multi_are_each_written() {
        // Goal: a submit_multi's destinations share the id the customer was given but are
        // separate messages (each with its vendor id): one does not replace another's waiting
        // write, or only the last would reach Redis and the others' receipts at another node
        // would find nothing.
        let t = Instant::now();
        let mut b = Backlog::new();
        for msg_id in [11, 12, 13] {
            b.put(Record { msg_id, ..rec(10, MessageState::Enroute) }, true, t);
        }
        b.put(Record { msg_id: 12, ..rec(10, MessageState::Delivered) }, false, t);
        let due = b.take_due(t + Duration::from_millis(WRITE_HOLD_MS), false, 10);
        let got: Vec<(u64, u64, MessageState)> =
            due.iter().map(|p| (p.record.msg_id, p.record.shown_id, p.record.state)).collect();
        assert_eq!(
            got,
            vec![
                (11, 10, MessageState::Enroute),
                (12, 10, MessageState::Delivered),
                (13, 10, MessageState::Enroute)
            ],
            "each destination once, with its own newest state"
        );
    }

    #[test]
    fn a_later_state_of_a_written_message_goes_at_once_and_a_failed_flush_keeps_order() {
        let t = Instant::now();
        let mut b = Backlog::new();
        b.put(rec(7, MessageState::Enroute), true, t);
        b.put(rec(3, MessageState::Delivered), false, t);
        b.put(rec(4, MessageState::Expired), false, t);
        let due = b.take_due(t, false, 10);
        assert_eq!(due.iter().map(|p| p.record.shown_id).collect::<Vec<_>>(), vec![3, 4], "updates only");
        b.restore(due);
        // A newer state of a restored write still replaces it.
        b.put(rec(3, MessageState::Undeliverable), false, t);
        let due = b.take_due(t, true, 10);
        let got: Vec<(u64, MessageState)> = due.iter().map(|p| (p.record.shown_id, p.record.state)).collect();
        assert_eq!(
            got,
            vec![(3, MessageState::Undeliverable), (4, MessageState::Expired), (7, MessageState::Enroute)]
        );
    }

    #[test]
    fn a_message_whose_receipt_came_is_not_indexed_by_the_vendor_id() {
        let mut cfg = smppgw_engine::config::Config::default();
        cfg.customers.push(smppgw_engine::config::CustomerConfig::new("c", "x"));
        cfg.vendors.push(smppgw_engine::config::VendorConfig::new("v", "127.0.0.1", 1, "a", "b"));
        let snap = Snapshot::build(cfg, 1);
        let waiting = make_write(&snap, &rec(1, MessageState::Enroute), true).expect("known names");
        assert_eq!(waiting.vendor_index.map(|(_, f)| f), Some("v:1".to_owned()));
        assert!(
            make_write(&snap, &rec(1, MessageState::Delivered), true).expect("known").vendor_index.is_none()
        );
        assert!(
            make_write(&snap, &rec(1, MessageState::Enroute), false).expect("known").vendor_index.is_none()
        );
        let mut no_receipt = rec(1, MessageState::Enroute);
        no_receipt.receipts = Wanted::NONE;
        assert!(make_write(&snap, &no_receipt, true).expect("known").vendor_index.is_none());
        // The last part of a long message whose earlier parts' receipts derive from its own
        // waits for the vendor's receipt even when its customer asked for none for it: another
        // node must find it by the vendor's id.
        no_receipt.siblings = vec![smppgw_engine::io::Sibling { shown_id: 7, wants: Wanted::FINAL }];
        assert!(make_write(&snap, &no_receipt, true).expect("known").vendor_index.is_some());
    }

    #[test]
    fn the_bound_drops_the_oldest_write() {
        let t = Instant::now();
        let mut b = Backlog::new();
        for i in 0..WRITE_BACKLOG_MAX as u64 {
            assert!(!b.put(rec(i, MessageState::Enroute), true, t));
        }
        assert!(b.put(rec(u64::MAX, MessageState::Enroute), true, t), "one over the bound");
        assert_eq!(b.len(), WRITE_BACKLOG_MAX);
        let first = b.take_due(t, true, 1);
        assert_eq!(first[0].record.shown_id, 1, "message 0 was dropped");
    }

    /// The record ids of messages for cores, in order (only [`Control::Record`] is sent here).
    fn record_ids(msgs: &[(usize, Control)]) -> Vec<(usize, u64)> {
        msgs.iter()
            .map(|(core, m)| match m {
                Control::Record(r) => (*core, r.msg_id),
                _ => (*core, u64::MAX),
            })
            .collect()
    }

    fn found(id: u64) -> Control {
        Control::Record(Box::new(rec(id, MessageState::Delivered)))
    }

    #[test]
    fn a_core_whose_control_queue_is_full_holds_back_neither_the_writer_nor_the_other_cores() {
        // Goal: the writer never waits for a busy core: what core 0 cannot take now waits in
        // order and goes when it has room, core 1 gets its own at once meanwhile; what waits
        // past the patience, or beyond the bound, is given back to be counted.
        let t = Instant::now();
        let mut sent: Vec<(usize, Control)> = Vec::new();
        let mut out = Outbox::default();
        // Core 0's queue is full at first.
        let mut send = |core: usize, m: Control| match core {
            0 => Err(m),
            _ => {
                sent.push((core, m));
                Ok(())
            }
        };
        assert!(out.send(0, found(1), t, &mut send).is_none());
        assert!(out.send(1, found(2), t, &mut send).is_none());
        assert!(out.send(0, found(3), t, &mut send).is_none());
        assert!(out.retry(t + Duration::from_millis(1), &mut send).is_empty(), "still waiting");
        assert!(!out.is_empty());
        let mut send = |core: usize, m: Control| {
            sent.push((core, m));
            Ok::<(), Control>(())
        };
        // A new message does not overtake the ones waiting for the same core.
        assert!(out.send(0, found(4), t, &mut send).is_none());
        assert!(out.retry(t + Duration::from_millis(2), &mut send).is_empty());
        assert!(out.is_empty());
        assert_eq!(record_ids(&sent), vec![(1, 2), (0, 1), (0, 3), (0, 4)]);

        let mut refuse = |_: usize, m: Control| Err::<(), Control>(m);
        for id in 0..=CORE_OUTBOX_MAX as u64 {
            let dropped = out.send(0, found(id), t, &mut refuse);
            assert_eq!(dropped.is_some(), id == CORE_OUTBOX_MAX as u64, "only beyond the bound");
            if let Some(m) = dropped {
                assert_eq!(record_ids(&[(0, m)]), vec![(0, 0)], "the oldest");
            }
        }
        let patience = Duration::from_millis(CORE_SEND_PATIENCE_MS);
        assert!(out.retry(t + patience / 2, &mut refuse).is_empty());
        let given_up = out.retry(t + patience, &mut refuse);
        assert_eq!(given_up.len(), CORE_OUTBOX_MAX, "every one waiting past the patience");
        assert!(out.is_empty());
    }

    #[test]
    fn redis_older_than_7_is_refused_and_7_or_later_taken() {
        let info = |v: &str| format!("# Server\r\nredis_version:{v}\r\nredis_git_sha1:00000000\r\n");
        assert_eq!(redis_version(&info("7.0.15")), Some((7, 0)));
        assert_eq!(redis_version(&info("6.2.14")), Some((6, 2)));
        assert!(version_refusal(&info("6.2.14")).is_some_and(|why| why.contains("6.2")));
        assert!(version_refusal(&info("5.0.7")).is_some());
        assert!(version_refusal(&info("7.0.0")).is_none());
        assert!(version_refusal(&info("7.2.4")).is_none());
        assert!(version_refusal(&info("10.0.1")).is_none());
        // No version said, or not one: not refused for it.
        assert_eq!(redis_version("# Server\r\nos:Linux\r\n"), None);
        assert_eq!(redis_version(&info("seven")), None);
        assert!(version_refusal("").is_none());
    }

    #[test]
    fn bind_counts_are_judged_on_redis_s_clock_alone() {
        // Goal: freshness compares a hash's time (Redis's, written by the publishing script) with
        // Redis's TIME of the same round, never with a node's own clock.
        let time = |raw: &[u8]| redis_time_ms(&redis::parse_redis_value(raw).expect("a reply"));
        let now = time(b"*2\r\n$10\r\n1700000000\r\n$6\r\n123456\r\n");
        assert_eq!(now, Some(1_700_000_000_123));
        assert_eq!(time(b"*1\r\n$10\r\n1700000000\r\n"), None, "not a TIME reply");
        assert_eq!(time(b"*2\r\n$3\r\nabc\r\n$1\r\n0\r\n"), None);
        assert_eq!(time(b"$10\r\n1700000000\r\n"), None);
        let t = 1_700_000_000_123;
        assert!(binds_fresh(Some(t), now));
        assert!(binds_fresh(Some(t - BINDS_STALE_MS), now), "at the bound");
        assert!(!binds_fresh(Some(t - BINDS_STALE_MS - 1), now), "older");
        assert!(binds_fresh(Some(t + BINDS_STALE_MS), now));
        assert!(!binds_fresh(Some(t + BINDS_STALE_MS + 1), now), "ahead of Redis");
        assert!(!binds_fresh(None, now), "no time published");
        assert!(!binds_fresh(Some(t), None), "no time of Redis");
    }

    #[test]
    fn a_full_take_is_followed_by_more_only_while_the_customer_s_local_queue_has_room() {
        assert_eq!(take_size(0, 100_000), DELIVERY_POP_BATCH);
        assert_eq!(take_size(DELIVERY_POP_BATCH, DELIVERY_POP_BATCH + 10), 10);
        assert_eq!(take_size(50, 50), 0);
        assert_eq!(take_size(60, 50), 0);
        let mut cfg = smppgw_engine::config::Config::default();
        cfg.server.receipt_queue_max = 3;
        let snap = Snapshot::build(cfg, 1);
        assert_eq!(local_room(&snap), 3 * BOUND_QUEUE_FACTOR);
        assert_eq!(take_size(0, local_room(&snap)), 3 * BOUND_QUEUE_FACTOR, "a small queue's bound");
    }

    #[test]
    fn every_bound_queue_is_swept_on_a_new_connection_and_after_the_sweep_period() {
        let t = Instant::now();
        let period = Duration::from_millis(QUEUE_SWEEP_MS);
        assert!(sweep_due(None, 1, t), "the first poll");
        assert!(!sweep_due(Some((1, t)), 1, t + period / 2));
        assert!(sweep_due(Some((1, t)), 1, t + period));
        assert!(sweep_due(Some((1, t)), 2, t), "a new connection");
    }

    #[test]
    fn a_receipt_is_looked_up_under_tomorrow_too_for_a_node_whose_clock_runs_ahead() {
        // Goal: node A, its clock ahead of node B's, files a message sent just before B's
        // midnight under the next day; B's lookup of its receipt must look there too, from the
        // first try.
        let today = 20_000;
        let days: Vec<u64> = days_around(today, DAY_SECS).collect();
        assert_eq!(days, vec![today + 1, today, today - 1, today - 2], "tomorrow, today, the TTL's days");
        let first: Vec<u64> = days_around(today, 7 * DAY_SECS).take(FIRST_LOOKUP_DAYS).collect();
        assert_eq!(first, vec![today + 1, today, today - 1]);
        assert_eq!(days_around(0, DAY_SECS).collect::<Vec<_>>(), vec![1, 0], "no day before the first");
    }

    #[test]
    fn only_a_reply_that_the_connection_cannot_serve_takes_the_link_down() {
        // Goal: a full Redis (OOM under noeviction) and other refusals of one command keep the
        // link; a server that cannot serve this connection now, or the link itself, does not.
        let error = |raw: &str| match redis::parse_redis_value(raw.as_bytes()) {
            Ok(Value::ServerError(e)) => RedisError::from(e),
            Err(e) => e,
            Ok(v) => panic!("not an error reply: {v:?}"),
        };
        for refused in [
            "-OOM command not allowed when used memory > 'maxmemory'.\r\n",
            "-EXECABORT Transaction discarded because of previous errors.\r\n",
            "-MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist\r\n",
            "-NOPERM this user has no permissions\r\n",
            "-ERR unknown command 'EXPIREAT'\r\n",
            "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        ] {
            assert!(!is_link_error(&error(refused)), "{refused}");
        }
        for link in [
            "-LOADING Redis is loading the dataset in memory\r\n",
            "-READONLY You can't write against a read only replica.\r\n",
            "-MASTERDOWN Link with MASTER is down\r\n",
            "-NOAUTH Authentication required.\r\n",
            "-NOSCRIPT No matching script. Please use EVAL.\r\n",
        ] {
            assert!(is_link_error(&error(link)), "{link}");
        }
        assert!(is_link_error(&RedisError::from(std::io::Error::other("reset"))));
    }

    #[test]
    fn config_sized_rounds_go_in_pipelines_of_at_most_the_batch() {
        // Goal: one command per customer or limit goes in pipelines of CONFIG_PIPELINE_BATCH,
        // none larger, all of them in order (50,000 in one pipeline outlasted the timeout).
        let items: Vec<u32> = (0..2_500).collect();
        let sizes: Vec<usize> = pipelines(&items, CONFIG_PIPELINE_BATCH, |pipe, n| {
            pipe.cmd("GET").arg(*n);
        })
        .map(|p| p.len())
        .collect();
        assert_eq!(sizes, vec![1_000, 1_000, 500]);
        assert_eq!(pipelines(&items[..0], 1_000, |_, _| {}).count(), 0, "nothing, no pipeline");
    }

    #[test]
    fn smismember_s_answer_flags_each_member() {
        let v = Value::Array(vec![Value::Int(1), Value::Int(0), Value::Int(1)]);
        assert_eq!(member_flags(v.clone(), 3), Some(vec![true, false, true]));
        assert_eq!(member_flags(v, 2), None, "not one flag per member");
        assert_eq!(member_flags(Value::Nil, 1), None);
    }
}
