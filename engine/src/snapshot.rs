//! The running configuration as one immutable snapshot shared by every core: customers by
//! system_id, vendors with the live status of each bind slot, and the route table.
//!
//! Only the atomics in [`CustomerRt`] and [`BindSlot`] change after a snapshot is built; they are
//! written by the core that owns the thing they describe and read lock-free by the others.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::config::{Config, CustomerConfig, IdFormat, RouteConfig, VendorConfig};

use crate::customer::BindKind;
use crate::lease::{Lease, LeaseSpec};
use crate::msgid::IdStyle;
use crate::rate::Gcra;

/// A customer and its shared counters.
#[derive(Debug)]
pub struct CustomerRt {
    /// Index in [`Snapshot::customers`].
    pub idx: u32,
    /// Its configuration.
    pub cfg: CustomerConfig,
    /// Its throughput limit in segments per second, shared by all its binds on all cores (and
    /// kept across reloads that do not change it).
    pub limiter: Arc<Gcra>,
    /// Its query_sm, cancel_sm and replace_sm per second on this node, as many as its
    /// throughput (each may ask every executor and Redis): apart from its submits', so that
    /// asking about messages does not take from sending them.
    pub ops_limiter: Arc<Gcra>,
    /// Bound sessions on this node, all cores (kept across reloads).
    pub binds: Arc<AtomicU32>,
    /// Bound sessions on other nodes, as last published through Redis (0 without it).
    pub remote_binds: Arc<AtomicU32>,
    /// Receiving (receiver or transceiver) sessions on this node, all cores.
    pub receivers: Arc<AtomicU32>,
    /// Its share of its throughput limit over all nodes (inactive without Redis).
    pub lease: Arc<Lease>,
    /// How its message ids are written.
    pub id_style: IdStyle,
    /// Its message counters (kept across reloads).
    pub counters: Arc<CustomerCounters>,
}

/// Per-customer message counters, for /metrics.
#[derive(Debug, Default)]
pub struct CustomerCounters {
    /// submit_sm/data_sm/submit_multi destinations accepted for routing.
    pub submitted: AtomicU64,
    /// Segments they count for.
    pub segments: AtomicU64,
    /// Answered with our id.
    pub accepted: AtomicU64,
    /// Answered with an error after routing.
    pub refused: AtomicU64,
    /// Refused for its throughput limit.
    pub throttled: AtomicU64,
    /// Refused before routing: past its window, or an invalid field.
    pub rejected: AtomicU64,
}

/// What a customer session bound with: the password hash it proved its password against, its
/// source address and its bind type. Kept for the session's life, so that each configuration it
/// meets is checked against the bind itself, not against the configuration before, which a core
/// may never have applied (it takes only the newest at each poll, and a customer deleted and
/// added back between two polls is never seen absent).
#[derive(Debug, Clone)]
pub struct BoundWith {
    /// The `password_hash` the bind's password was verified against.
    pub password_hash: String,
    /// The session's source address.
    pub peer: IpAddr,
    /// Its bind type.
    pub kind: BindKind,
}

/// Why a configuration no longer lets a bound session stay bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revoked {
    /// The customer is gone from the configuration.
    Removed,
    /// Its `password_hash` is not the one the session's password was verified against (a hash
    /// of the same password made again differs too: its salt is new).
    PasswordChanged,
    /// Its `allowed_ips` no longer cover the session's source address.
    AddressNotAllowed,
    /// Its `bind_types` no longer include the session's bind type.
    BindTypeNotAllowed,
}

impl Revoked {
    /// For the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Revoked::Removed => "customer removed",
            Revoked::PasswordChanged => "password_hash changed",
            Revoked::AddressNotAllowed => "allowed_ips no longer cover the source address",
            Revoked::BindTypeNotAllowed => "bind_types no longer include the bind type",
        }
    }
}

impl std::fmt::Display for Revoked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl BoundWith {
    /// What a session that bound as `c` (its configuration at the bind) from `peer` as `kind`
    /// bound with.
    pub fn new(c: &CustomerRt, peer: IpAddr, kind: BindKind) -> BoundWith {
        BoundWith { password_hash: c.cfg.password_hash.clone(), peer, kind }
    }

    /// Why the session may not stay bound under its customer's configuration `now` (None: the
    /// customer is gone), or None when it may: a bind now would pass the same checks on
    /// credentials and access (the number of binds, `max_binds`, is left to the next bind).
    pub fn revoked_by(&self, now: Option<&CustomerRt>) -> Option<Revoked> {
        let Some(c) = now else { return Some(Revoked::Removed) };
        if c.cfg.password_hash != self.password_hash {
            Some(Revoked::PasswordChanged)
        } else if !c.allows_ip(self.peer) {
            Some(Revoked::AddressNotAllowed)
        } else if !c.allows(self.kind) {
            Some(Revoked::BindTypeNotAllowed)
        } else {
            None
        }
    }
}

/// Per-vendor outcome counters, for /metrics.
#[derive(Debug, Default)]
pub struct VendorCounters {
    /// Accepted by the vendor.
    pub accepted: AtomicU64,
    /// Refused with a permanent status.
    pub refused: AtomicU64,
    /// Refused with a temporary status other than ESME_RTHROTTLED (passed to the next vendor).
    pub temporary: AtomicU64,
    /// Refused with ESME_RTHROTTLED (passed to the next vendor).
    pub throttled: AtomicU64,
    /// No answer (timeout or connection lost).
    pub unknown: AtomicU64,
    /// Our submit_sm to its submit_sm_resp.
    pub latency: crate::metrics::Histogram,
}

impl CustomerRt {
    /// Whether `peer` may bind as it: its `allowed_ips` cover the address (none listed: any).
    pub fn allows_ip(&self, peer: IpAddr) -> bool {
        self.cfg.allowed_ips.is_empty() || self.cfg.allowed_ips.iter().any(|n| n.contains(peer))
    }

    /// Whether it may bind as `kind`.
    pub fn allows(&self, kind: BindKind) -> bool {
        use crate::config::BindType;
        self.cfg.bind_types.iter().any(|b| {
            matches!(
                (b, kind),
                (BindType::Transmitter, BindKind::Transmitter)
                    | (BindType::Receiver, BindKind::Receiver)
                    | (BindType::Transceiver, BindKind::Transceiver)
            )
        })
    }

    /// Takes one bind slot if under `max_binds`, counting the binds other nodes published.
    pub fn try_add_bind(&self) -> bool {
        let max = self.cfg.max_binds.saturating_sub(self.remote_binds.load(Ordering::Acquire));
        self.binds.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).is_ok()
    }

    /// Gives a bind slot back.
    pub fn remove_bind(&self) {
        let _ = self.binds.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}

/// The live status of one vendor bind slot, published by the core that owns it.
#[derive(Debug)]
pub struct BindSlot {
    /// Vendor index.
    pub vendor: u32,
    /// Slot number within the vendor.
    pub slot: u32,
    /// Core that owns the connection.
    pub core: usize,
    /// Bound and able to take submits.
    pub up: AtomicBool,
    /// Submits in flight plus queued at the slot.
    pub load: AtomicU32,
    /// Capacity: window plus the slot's queue.
    pub capacity: u32,
    /// The vendor's window: what the slot has in flight when it is full.
    pub window: u32,
    /// What the slot takes now: `capacity`, or, while throttling slows it, about 100 ms of its
    /// current pace, so work goes to other vendors instead of waiting behind the pace.
    pub effective_capacity: AtomicU32,
    /// Submits sent, for the API.
    pub sent: AtomicU64,
    /// Reconnects, for the API and metrics.
    pub reconnects: AtomicU64,
    /// Whether throttling currently slows this slot.
    pub slowed: AtomicBool,
    /// The slot's pace in messages a second while slowed (an f64's bits): a bind that replaces
    /// it (a reload) starts there, not at full speed.
    pub pace_bits: AtomicU64,
    /// Unix ms before which the slot's pace lets it send nothing more (0: it can send now, or it
    /// is not paced). Lets the dispatcher give a message to a bind that can send it at once
    /// rather than to one that would hold it for its pace.
    pub next_send_ms: AtomicU64,
    /// The last thing that went wrong, as [`BindError::encode`]d (0: nothing yet).
    pub last_error: AtomicU64,
    /// Unix seconds of `last_error`.
    pub last_error_at: AtomicU64,
}

/// What went wrong on a vendor bind, packed in one atomic so the API can show it lock-free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindError {
    /// TCP connect failed.
    Connect,
    /// The vendor refused our bind with this status.
    BindRefused(u32),
    /// The connection was closed or broke.
    Disconnected,
    /// The vendor refused a submit with this status.
    SubmitRefused(u32),
    /// A submit got no answer within the response timeout.
    Timeout,
}

impl BindError {
    /// Packs the error in a u64.
    pub fn encode(self) -> u64 {
        match self {
            BindError::Connect => 1 << 32,
            BindError::BindRefused(s) => (2 << 32) | u64::from(s),
            BindError::Disconnected => 3 << 32,
            BindError::SubmitRefused(s) => (4 << 32) | u64::from(s),
            BindError::Timeout => 5 << 32,
        }
    }

    /// Unpacks [`BindError::encode`]; `None` for 0.
    pub fn decode(v: u64) -> Option<BindError> {
        let s = v as u32;
        Some(match v >> 32 {
            1 => BindError::Connect,
            2 => BindError::BindRefused(s),
            3 => BindError::Disconnected,
            4 => BindError::SubmitRefused(s),
            5 => BindError::Timeout,
            _ => return None,
        })
    }
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = |s: u32| smppgw_codec::CommandStatus(s).name_or_hex().into_owned();
        match self {
            BindError::Connect => f.write_str("connect failed"),
            BindError::BindRefused(s) => write!(f, "bind refused: {}", st(*s)),
            BindError::Disconnected => f.write_str("connection closed"),
            BindError::SubmitRefused(s) => write!(f, "submit refused: {}", st(*s)),
            BindError::Timeout => f.write_str("submit timed out"),
        }
    }
}

impl BindSlot {
    /// Records what went wrong, now.
    pub fn set_error(&self, e: BindError, unix_secs: u64) {
        self.last_error.store(e.encode(), Ordering::Relaxed);
        self.last_error_at.store(unix_secs, Ordering::Relaxed);
    }

    /// The last error and when it happened.
    pub fn last_error(&self) -> Option<(BindError, u64)> {
        BindError::decode(self.last_error.load(Ordering::Relaxed))
            .map(|e| (e, self.last_error_at.load(Ordering::Relaxed)))
    }
}

/// How far a slot may be filled by the dispatcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Up to its window: the message goes out at once.
    Window,
    /// Up to its window and its queue: the message waits for the window.
    Queue,
}

impl BindSlot {
    /// Whether a job routed here now would be taken when filling up to `fill`.
    pub fn available(&self, fill: Fill) -> bool {
        let cap = self.effective_capacity.load(Ordering::Relaxed);
        let cap = match fill {
            Fill::Window => cap.min(self.window),
            Fill::Queue => cap,
        };
        self.up.load(Ordering::Relaxed) && self.load.load(Ordering::Relaxed) < cap
    }
}

/// The core that owns slot `s` of a vendor whose binds are spread over `cores` executors.
pub fn slot_core(s: usize, cores: usize) -> usize {
    s % cores.max(1)
}

impl VendorRt {
    /// The slots owned by `core` of `cores`, found by their index alone ([`slot_core`]):
    /// another core's slots are written by that core with every message, so even reading which
    /// core a slot belongs to is a cache miss there.
    pub fn slots_on(&self, core: usize, cores: usize) -> impl Iterator<Item = &Arc<BindSlot>> {
        self.slots.iter().enumerate().filter(move |(s, _)| slot_core(*s, cores) == core).map(|(_, b)| b)
    }

    /// The slots owned by other cores than `core` of `cores`.
    pub fn slots_off(&self, core: usize, cores: usize) -> impl Iterator<Item = &Arc<BindSlot>> {
        self.slots.iter().enumerate().filter(move |(s, _)| slot_core(*s, cores) != core).map(|(_, b)| b)
    }
}

/// A vendor and its bind slots.
#[derive(Debug)]
pub struct VendorRt {
    /// Index in [`Snapshot::vendors`].
    pub idx: u32,
    /// Its configuration.
    pub cfg: VendorConfig,
    /// One per configured bind; slot `s` lives on core [`slot_core`]`(s, cores)`.
    pub slots: Vec<Arc<BindSlot>>,
    /// Outcome counters (kept across reloads).
    pub counters: Arc<VendorCounters>,
    /// Its share of the vendor account's throughput over all nodes (inactive without Redis).
    pub lease: Arc<Lease>,
    /// Its bind tasks running on every core, older generations a reload replaced included
    /// (kept across reloads): a new bind refused by a vendor that limits the account's binds
    /// waits until the older ones are gone.
    pub bind_tasks: Arc<AtomicU32>,
}

impl VendorRt {
    /// Bind tasks its configuration asks for (a `transmitter_receiver` slot has two).
    pub fn bind_tasks_wanted(&self) -> u32 {
        let per_slot = match self.cfg.bind_type {
            crate::config::VendorBindType::TransmitterReceiver => 2,
            _ => 1,
        };
        self.cfg.binds.saturating_mul(per_slot)
    }
}

/// One compiled route.
#[derive(Debug)]
pub struct RouteRt {
    /// Its name.
    pub name: String,
    /// Customer indexes it is limited to (empty: all).
    pub customers: Vec<u32>,
    /// Source prefixes it is limited to (empty: all).
    pub source_prefixes: Vec<Vec<u8>>,
    /// Vendor groups by ascending priority: (vendor index, weight).
    pub groups: Vec<Vec<(u32, u32)>>,
    /// Its message counters (kept across reloads by route name).
    pub counters: Arc<RouteCounters>,
}

/// Per-route message counters, for /metrics.
#[derive(Debug, Default)]
pub struct RouteCounters {
    /// Answered with our id.
    pub accepted: AtomicU64,
    /// Answered with an error after routing.
    pub refused: AtomicU64,
}

impl RouteRt {
    /// How specifically this route matches (None: it does not).
    fn specificity(&self, customer: u32, source: &[u8]) -> Option<usize> {
        let mut score = 0;
        if !self.customers.is_empty() {
            if !self.customers.contains(&customer) {
                return None;
            }
            score += 1000;
        }
        if !self.source_prefixes.is_empty() {
            let src = strip_plus(source);
            let best = self.source_prefixes.iter().filter(|p| src.starts_with(p)).map(|p| p.len()).max()?;
            score += 100 + best;
        }
        Some(score)
    }
}

fn strip_plus(s: &[u8]) -> &[u8] {
    s.strip_prefix(b"+").unwrap_or(s)
}

/// A destination prefix as a map key: up to 15 octets packed with their length into one u128,
/// hashed in two rounds and compared in one instruction (a `Vec<u8>` key costs a call to memcmp
/// per lookup, on every message); longer prefixes keep their octets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum PrefixKey {
    Packed(u128),
    Long(Box<[u8]>),
}

impl PrefixKey {
    fn new(p: &[u8]) -> PrefixKey {
        match p.len() {
            n @ 0..=15 => {
                let mut b = [0u8; 16];
                b[..n].copy_from_slice(p);
                b[15] = n as u8;
                PrefixKey::Packed(u128::from_le_bytes(b))
            }
            _ => PrefixKey::Long(p.into()),
        }
    }
}

/// Destination prefix -> routes, searched longest prefix first.
#[derive(Debug, Default)]
pub struct RouteTable {
    by_prefix: crate::hash::FxHashMap<PrefixKey, Vec<u32>>,
    longest: usize,
    /// Bit n set: some route has a destination prefix of n digits (n < 64), so lookups skip the
    /// lengths no route uses.
    lengths: u64,
    /// Routes in config order.
    pub routes: Vec<RouteRt>,
}

impl RouteTable {
    /// The route for `dest` from `customer` with `source`: the longest destination prefix first;
    /// among routes with that prefix, the most specific whose filters match (a customer filter
    /// outranks a source filter, which outranks none; a longer source prefix outranks a shorter),
    /// then config order.
    pub fn lookup(&self, customer: u32, source: &[u8], dest: &[u8]) -> Option<(u32, &RouteRt)> {
        let dest = strip_plus(dest);
        for len in (0..=dest.len().min(self.longest)).rev() {
            if len < 64 && self.lengths & (1 << len) == 0 {
                continue;
            }
            if let Some(ids) = self.by_prefix.get(&PrefixKey::new(&dest[..len])) {
                let mut best: Option<(usize, u32)> = None;
                for &i in ids {
                    let r = &self.routes[i as usize];
                    if let Some(score) = r.specificity(customer, source)
                        && best.is_none_or(|(b, _)| score > b)
                    {
                        best = Some((score, i));
                    }
                }
                if let Some((_, i)) = best {
                    return Some((i, &self.routes[i as usize]));
                }
            }
        }
        None
    }
}

/// Everything the data plane reads from the config.
///
/// Customers and vendors keep their index across reloads (found by system_id and name), so work
/// in flight during a reload still finds them; a removed one leaves a hole.
#[derive(Debug)]
pub struct Snapshot {
    /// The config it was built from.
    pub config: Config,
    /// Customers by stable index.
    pub customers: Vec<Option<Arc<CustomerRt>>>,
    /// system_id -> customer index.
    pub customer_by_id: HashMap<Vec<u8>, u32>,
    /// Vendors by stable index.
    pub vendors: Vec<Option<Arc<VendorRt>>>,
    /// Routes.
    pub routes: RouteTable,
    /// Number of executor cores.
    pub cores: usize,
    /// Increases with every reload.
    pub version: u64,
    /// 10DLC campaigns and brands with their counters (see [`Snapshot::campaign_admit`]).
    pub campaigns: crate::campaign::CampaignTable,
    /// MO number ranges: prefix -> customer, searched longest first.
    mo_ranges: HashMap<Vec<u8>, u32>,
    mo_longest: usize,
    /// The next customer and vendor indexes: never one used before, even by an item a reload
    /// removed since (its records stay in the store for the receipt TTL, under its index).
    next_customer: u32,
    next_vendor: u32,
    /// Customers (by system_id) and vendors (by name) a reload removed, with their indexes: one
    /// added back gets its index again, so the messages stored under it still find their
    /// customer (their receipts, query_sm) and their vendor (its receipts).
    retired_customers: HashMap<Vec<u8>, u32>,
    /// The bind and receiver counts of removed customers whose sessions are still closing: a
    /// customer added again takes them up, so that those sessions, closing after it, count down
    /// what they counted up (and the re-added customer's max_binds holds meanwhile).
    retired_counts: HashMap<Vec<u8>, (Arc<AtomicU32>, Arc<AtomicU32>)>,
    retired_vendors: HashMap<String, u32>,
    /// The bind task counts of removed vendors whose binds are still running (draining, or
    /// finishing what they had in flight): a vendor added again takes them up, so that its new
    /// binds, refused by a vendor that limits the account's binds, wait for those to end as a
    /// replaced bind's successor does.
    retired_bind_tasks: HashMap<String, Arc<AtomicU32>>,
}

/// The parts of a vendor's config that a live bind depends on: a change replaces the binds.
fn connection_key(v: &VendorConfig) -> (String, u16, String, String, String, String, u32) {
    (
        v.host.clone(),
        v.port,
        v.system_id.clone(),
        v.password.clone(),
        v.system_type.clone(),
        v.bind_type.as_str().to_owned(),
        v.window,
    )
}

impl Snapshot {
    /// Compiles `config` for `cores` cores. Vendor slot `i` is owned by core `i % cores`.
    pub fn build(config: Config, cores: usize) -> Snapshot {
        Snapshot::build_next(None, config, cores)
    }

    /// Compiles `config` as the successor of `prev`: indexes, bind counters, rate state and
    /// unchanged vendor binds carry over, so a reload drops no session.
    pub fn build_next(prev: Option<&Snapshot>, config: Config, cores: usize) -> Snapshot {
        let cores = cores.max(1);
        let mut customers: Vec<Option<Arc<CustomerRt>>> = Vec::new();
        let mut customer_by_id = HashMap::new();
        let mut next_c = prev.map_or(0, |p| p.next_customer.max(p.customers.len() as u32));
        let mut retired_customers = prev.map(|p| p.retired_customers.clone()).unwrap_or_default();
        let mut retired_counts = prev.map(|p| p.retired_counts.clone()).unwrap_or_default();
        if let Some(p) = prev {
            for c in p.customers.iter().flatten() {
                retired_customers.insert(c.cfg.system_id.as_bytes().to_vec(), c.idx);
                retired_counts
                    .insert(c.cfg.system_id.as_bytes().to_vec(), (c.binds.clone(), c.receivers.clone()));
            }
        }
        // Counts no session holds any more are the fresh counts a re-added customer starts with.
        retired_counts.retain(|_, (b, r)| b.load(Ordering::Acquire) > 0 || r.load(Ordering::Acquire) > 0);
        for c in &config.customers {
            let old = prev.and_then(|p| p.customer(c.system_id.as_bytes())).cloned();
            let idx = match (&old, retired_customers.remove(c.system_id.as_bytes())) {
                (Some(o), _) => o.idx,
                (None, Some(idx)) => idx,
                (None, None) => {
                    next_c += 1;
                    next_c - 1
                }
            };
            let counts = retired_counts.remove(c.system_id.as_bytes());
            let mut rt = customer_rt(idx, c, old.as_deref());
            if let (None, Some((binds, receivers))) = (&old, counts) {
                (rt.binds, rt.receivers) = (binds, receivers);
            }
            if customers.len() <= idx as usize {
                customers.resize(idx as usize + 1, None);
            }
            customer_by_id.insert(c.system_id.as_bytes().to_vec(), idx);
            customers[idx as usize] = Some(Arc::new(rt));
        }
        let mut vendors: Vec<Option<Arc<VendorRt>>> = Vec::new();
        let mut next_v = prev.map_or(0, |p| p.next_vendor.max(p.vendors.len() as u32));
        let mut vendor_by_name = HashMap::new();
        let mut retired_vendors = prev.map(|p| p.retired_vendors.clone()).unwrap_or_default();
        let mut retired_bind_tasks = prev.map(|p| p.retired_bind_tasks.clone()).unwrap_or_default();
        if let Some(p) = prev {
            for v in p.vendors.iter().flatten() {
                retired_vendors.insert(v.cfg.name.clone(), v.idx);
                retired_bind_tasks.insert(v.cfg.name.clone(), v.bind_tasks.clone());
            }
        }
        // A count no task holds any more is the fresh one a re-added vendor starts with.
        retired_bind_tasks.retain(|_, n| n.load(Ordering::Acquire) > 0);
        for v in &config.vendors {
            let old = prev.and_then(|p| p.vendors.iter().flatten().find(|o| o.cfg.name == v.name)).cloned();
            let idx = match (&old, retired_vendors.remove(&v.name)) {
                (Some(o), _) => o.idx,
                (None, Some(idx)) => idx,
                (None, None) => {
                    next_v += 1;
                    next_v - 1
                }
            };
            let keep = old.as_ref().filter(|o| connection_key(&o.cfg) == connection_key(v));
            let mut rt = vendor_rt(idx, v, cores, keep.map(|o| o.slots.as_slice()));
            let still_running = retired_bind_tasks.remove(&v.name);
            if let Some(o) = &old {
                rt.counters = o.counters.clone();
                rt.bind_tasks = o.bind_tasks.clone();
                if o.cfg.throughput == v.throughput {
                    rt.lease = o.lease.clone();
                }
            } else if let Some(n) = still_running {
                // Added back while binds of its earlier self still run: they count on.
                rt.bind_tasks = n;
            }
            if vendors.len() <= idx as usize {
                vendors.resize(idx as usize + 1, None);
            }
            vendor_by_name.insert(v.name.clone(), idx);
            vendors[idx as usize] = Some(Arc::new(rt));
        }
        let routes = route_table(&config.routes, &customer_by_id, &vendor_by_name, prev.map(|p| &p.routes));
        let mut mo_ranges = HashMap::new();
        let mut mo_longest = 0;
        for c in customers.iter().flatten() {
            for r in &c.cfg.number_ranges {
                let r = strip_plus(r.as_bytes()).to_vec();
                mo_longest = mo_longest.max(r.len());
                mo_ranges.insert(r, c.idx);
            }
        }
        let version = prev.map_or(1, |p| p.version + 1);
        let campaigns = crate::campaign::CampaignTable::build(
            &config.brands,
            &config.campaigns,
            prev.map(|p| &p.campaigns),
        );
        Snapshot {
            config,
            customers,
            customer_by_id,
            vendors,
            routes,
            cores,
            version,
            campaigns,
            mo_ranges,
            mo_longest,
            next_customer: next_c,
            next_vendor: next_v,
            retired_customers,
            retired_counts,
            retired_vendors,
            retired_bind_tasks,
        }
    }

    /// Every limit shared between nodes, for the control plane to keep leases of: customer
    /// throughput (segments per second), vendor throughput (messages per second), 10DLC campaign
    /// rates (segments per minute) and brand caps (segments per day).
    pub fn leases(&self) -> Vec<LeaseSpec> {
        let mut out = Vec::new();
        for c in self.customers.iter().flatten().filter(|c| c.cfg.throughput > 0) {
            out.push(LeaseSpec {
                key: format!("rate:customer:{}", c.cfg.system_id),
                limit: u64::from(c.cfg.throughput),
                window_ms: 1000,
                // A second's worth after a quiet second, as its local limiter allows.
                idle_burst: u64::from(c.cfg.throughput),
                lease: c.lease.clone(),
            });
        }
        for v in self.vendors.iter().flatten().filter(|v| v.cfg.throughput > 0) {
            out.push(LeaseSpec {
                key: format!("rate:vendor:{}", v.cfg.name),
                limit: u64::from(v.cfg.throughput),
                window_ms: 1000,
                // Its binds pace themselves: one message ahead of the grant.
                idle_burst: 1,
                lease: v.lease.clone(),
            });
        }
        out.extend(self.campaigns.leases());
        out
    }

    /// The customer that owns `dest` for MO (longest number range prefix).
    pub fn mo_owner(&self, dest: &[u8]) -> Option<u32> {
        let dest = strip_plus(dest);
        // From the whole number down to the empty range, which covers every number.
        (0..=dest.len().min(self.mo_longest)).rev().find_map(|l| self.mo_ranges.get(&dest[..l]).copied())
    }

    /// The customer with this system_id.
    pub fn customer(&self, system_id: &[u8]) -> Option<&Arc<CustomerRt>> {
        self.customer_by_id.get(system_id).and_then(|&i| self.customer_at(i))
    }

    /// The customer with this index.
    pub fn customer_at(&self, idx: u32) -> Option<&Arc<CustomerRt>> {
        self.customers.get(idx as usize).and_then(Option::as_ref)
    }

    /// The vendor with this index.
    pub fn vendor(&self, idx: u32) -> Option<&Arc<VendorRt>> {
        self.vendors.get(idx as usize).and_then(Option::as_ref)
    }
}

fn customer_rt(idx: u32, c: &CustomerConfig, old: Option<&CustomerRt>) -> CustomerRt {
    // A second's worth of traffic at once (see `Gcra::per_second`).
    let limiter = match old {
        Some(o) if o.cfg.throughput == c.throughput => o.limiter.clone(),
        _ => Arc::new(Gcra::per_second(c.throughput)),
    };
    let ops_limiter = match old {
        Some(o) if o.cfg.throughput == c.throughput => o.ops_limiter.clone(),
        _ => Arc::new(Gcra::per_second(c.throughput)),
    };
    CustomerRt {
        idx,
        cfg: c.clone(),
        limiter,
        ops_limiter,
        binds: old.map_or_else(|| Arc::new(AtomicU32::new(0)), |o| o.binds.clone()),
        remote_binds: old.map_or_else(Arc::default, |o| o.remote_binds.clone()),
        receivers: old.map_or_else(Arc::default, |o| o.receivers.clone()),
        lease: match old {
            Some(o) if o.cfg.throughput == c.throughput => o.lease.clone(),
            _ => Arc::default(),
        },
        counters: old.map_or_else(Arc::default, |o| o.counters.clone()),
        id_style: match c.id_format {
            IdFormat::Hex => IdStyle::Hex,
            IdFormat::Decimal => IdStyle::Decimal,
        },
    }
}

fn vendor_rt(idx: u32, v: &VendorConfig, cores: usize, keep: Option<&[Arc<BindSlot>]>) -> VendorRt {
    let slots = (0..v.binds)
        .map(|s| {
            if let Some(old) = keep.and_then(|k| k.get(s as usize)) {
                return old.clone();
            }
            let capacity = v.window + crate::limits::VENDOR_BIND_QUEUE_MAX.min(v.window as usize * 4) as u32;
            Arc::new(BindSlot {
                effective_capacity: AtomicU32::new(capacity),
                vendor: idx,
                slot: s,
                core: slot_core(s as usize, cores),
                up: AtomicBool::new(false),
                load: AtomicU32::new(0),
                capacity,
                window: v.window,
                sent: AtomicU64::new(0),
                reconnects: AtomicU64::new(0),
                slowed: AtomicBool::new(false),
                pace_bits: AtomicU64::new(f64::INFINITY.to_bits()),
                next_send_ms: AtomicU64::new(0),
                last_error: AtomicU64::new(0),
                last_error_at: AtomicU64::new(0),
            })
        })
        .collect();
    VendorRt {
        idx,
        cfg: v.clone(),
        slots,
        counters: Arc::default(),
        lease: Arc::default(),
        bind_tasks: Arc::default(),
    }
}

fn route_table(
    routes: &[RouteConfig],
    customers: &HashMap<Vec<u8>, u32>,
    vendors: &HashMap<String, u32>,
    prev: Option<&RouteTable>,
) -> RouteTable {
    let old: HashMap<&str, &Arc<RouteCounters>> =
        prev.map(|p| p.routes.iter().map(|r| (r.name.as_str(), &r.counters)).collect()).unwrap_or_default();
    let mut t = RouteTable::default();
    for (i, r) in routes.iter().enumerate() {
        let mut by_prio: Vec<(u32, Vec<(u32, u32)>)> = Vec::new();
        for rv in &r.vendors {
            let Some(&vi) = vendors.get(&rv.name) else { continue };
            match by_prio.iter_mut().find(|(p, _)| *p == rv.priority) {
                Some((_, g)) => g.push((vi, rv.weight.max(1))),
                None => by_prio.push((rv.priority, vec![(vi, rv.weight.max(1))])),
            }
        }
        by_prio.sort_by_key(|(p, _)| *p);
        t.routes.push(RouteRt {
            name: r.name.clone(),
            customers: r.customers.iter().filter_map(|c| customers.get(c.as_bytes()).copied()).collect(),
            source_prefixes: r.source_prefixes.iter().map(|p| strip_plus(p.as_bytes()).to_vec()).collect(),
            groups: by_prio.into_iter().map(|(_, g)| g).collect(),
            counters: old.get(r.name.as_str()).map_or_else(Arc::default, |c| Arc::clone(c)),
        });
        for p in &r.prefixes {
            let p = strip_plus(p.as_bytes()).to_vec();
            t.longest = t.longest.max(p.len());
            t.lengths |= if p.len() < 64 { 1 << p.len() } else { 0 };
            t.by_prefix.entry(PrefixKey::new(&p)).or_default().push(i as u32);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CustomerConfig, RouteConfig, VendorConfig};

    #[test]
    fn indexes_of_removed_customers_and_vendors_are_never_given_again() {
        // Records keep their customer's and vendor's index for the receipt TTL: an index given
        // to a newcomer would hand it another customer's receipts and queries.
        let mut cfg = Config::default();
        cfg.customers.push(CustomerConfig::new("a", "x"));
        cfg.customers.push(CustomerConfig::new("b", "x"));
        cfg.vendors.push(VendorConfig::new("v", "h", 1, "s", "p"));
        cfg.vendors.push(VendorConfig::new("w", "h", 1, "s", "p"));
        cfg.routes.push(RouteConfig::new("default", &["v"]));
        let first = Snapshot::build(cfg.clone(), 1);
        let vendor_idx = |snap: &Snapshot, name: &str| {
            snap.vendors.iter().flatten().find(|v| v.cfg.name == name).map(|v| v.idx).unwrap()
        };
        let (b, w) = (first.customer(b"b").unwrap().idx, vendor_idx(&first, "w"));
        cfg.customers.pop();
        cfg.vendors.pop();
        let second = Snapshot::build_next(Some(&first), cfg.clone(), 1);
        cfg.customers.push(CustomerConfig::new("c", "x"));
        cfg.vendors.push(VendorConfig::new("z", "h", 1, "s", "p"));
        let third = Snapshot::build_next(Some(&second), cfg.clone(), 1);
        assert!(third.customer(b"c").unwrap().idx > b, "c did not take b's index");
        assert!(vendor_idx(&third, "z") > w, "z did not take w's index");
        // b and w added back (a later reload): their own indexes again, so the messages stored
        // under them find their customer and vendor.
        cfg.customers.push(CustomerConfig::new("b", "x"));
        cfg.vendors.push(VendorConfig::new("w", "h", 1, "s", "p"));
        let fourth = Snapshot::build_next(Some(&third), cfg.clone(), 1);
        assert_eq!(fourth.customer(b"b").unwrap().idx, b, "b's index again");
        assert_eq!(vendor_idx(&fourth, "w"), w, "w's index again");
        let fifth = Snapshot::build_next(Some(&fourth), cfg, 1);
        assert_eq!(fifth.customer(b"b").unwrap().idx, b, "kept");
        assert!(fifth.customer(b"c").unwrap().idx != b);
    }

    #[test]
    fn a_customer_added_back_while_its_old_sessions_close_shares_their_counts() {
        // A session of a removed customer still closing (an unbind unanswered) counts down, when
        // it closes, the counters it counted up: the customer added back meanwhile must share
        // them, or its bind count ends one short and max_binds lets one bind too many in.
        let mut cfg = Config::default();
        cfg.customers.push(CustomerConfig::new("a", "x"));
        cfg.vendors.push(VendorConfig::new("v", "h", 1, "s", "p"));
        cfg.routes.push(RouteConfig::new("default", &["v"]));
        let first = Snapshot::build(cfg.clone(), 1);
        let old = first.customer(b"a").unwrap().clone();
        old.binds.fetch_add(1, Ordering::AcqRel);
        let without = Config { customers: Vec::new(), ..cfg.clone() };
        let second = Snapshot::build_next(Some(&first), without.clone(), 1);
        let third = Snapshot::build_next(Some(&second), cfg.clone(), 1);
        let back = third.customer(b"a").unwrap();
        assert!(Arc::ptr_eq(&back.binds, &old.binds), "the closing session's count");
        assert_eq!(back.binds.load(Ordering::Acquire), 1);
        // Once no session holds them, a customer added back starts afresh.
        old.binds.fetch_sub(1, Ordering::AcqRel);
        let fourth = Snapshot::build_next(Some(&third), without, 1);
        let fifth = Snapshot::build_next(Some(&fourth), cfg, 1);
        assert!(!Arc::ptr_eq(&fifth.customer(b"a").unwrap().binds, &old.binds));
        assert!(fifth.retired_counts.is_empty(), "nothing kept for counts back at zero");
    }

    #[test]
    fn a_vendor_added_back_while_its_old_binds_drain_shares_their_task_count() {
        // A removed vendor's binds still running (draining) count down, when they end, the
        // count they counted up: the vendor added back meanwhile must share it, so that its new
        // binds, refused by an account that allows no more, see the old ones still there.
        let mut cfg = Config::default();
        cfg.vendors.push(VendorConfig::new("v", "h", 1, "s", "p"));
        cfg.vendors.push(VendorConfig::new("w", "h", 1, "s", "p"));
        cfg.routes.push(RouteConfig::new("default", &["w"]));
        let vendor = |snap: &Snapshot| snap.vendors.iter().flatten().find(|v| v.cfg.name == "v").cloned();
        let first = Snapshot::build(cfg.clone(), 1);
        let old = vendor(&first).unwrap();
        old.bind_tasks.fetch_add(2, Ordering::AcqRel);
        let mut without = cfg.clone();
        without.vendors.retain(|v| v.name != "v");
        let second = Snapshot::build_next(Some(&first), without.clone(), 1);
        assert!(vendor(&second).is_none());
        let third = Snapshot::build_next(Some(&second), cfg.clone(), 1);
        let back = vendor(&third).unwrap();
        assert!(Arc::ptr_eq(&back.bind_tasks, &old.bind_tasks), "the draining binds' count");
        assert_eq!(back.bind_tasks.load(Ordering::Acquire), 2);
        // Once none runs, a vendor added back starts afresh.
        old.bind_tasks.fetch_sub(2, Ordering::AcqRel);
        let fourth = Snapshot::build_next(Some(&third), without, 1);
        let fifth = Snapshot::build_next(Some(&fourth), cfg, 1);
        assert!(!Arc::ptr_eq(&vendor(&fifth).unwrap().bind_tasks, &old.bind_tasks));
        assert!(fifth.retired_bind_tasks.is_empty(), "nothing kept for counts back at zero");
    }

    #[test]
    fn an_empty_number_range_takes_the_mo_no_longer_range_covers() {
        // check-config says "" matches every number: it did not (the lookup began at one digit),
        // and every MO for that customer was dropped as unroutable.
        let mut cfg = Config::default();
        let mut all = CustomerConfig::new("all", "x");
        all.number_ranges = vec![String::new()];
        let mut uk = CustomerConfig::new("uk", "x");
        uk.number_ranges = vec!["+44".into()];
        cfg.customers.push(all);
        cfg.customers.push(uk);
        cfg.vendors.push(VendorConfig::new("v", "h", 1, "s", "p"));
        cfg.routes.push(RouteConfig::new("default", &["v"]));
        let snap = Snapshot::build(cfg, 1);
        let (all, uk) = (snap.customer(b"all").unwrap().idx, snap.customer(b"uk").unwrap().idx);
        assert_eq!(snap.mo_owner(b"15551230000"), Some(all));
        assert_eq!(snap.mo_owner(b"+447700900123"), Some(uk), "the longer range first");
        assert_eq!(snap.mo_owner(b""), Some(all));
    }

    #[test]
    fn the_most_specific_route_wins_over_config_order() {
        let mut cfg = Config::default();
        cfg.customers.push(CustomerConfig::new("acme", "x"));
        cfg.customers.push(CustomerConfig::new("other", "x"));
        cfg.vendors.push(VendorConfig::new("a", "h", 1, "s", "p"));
        cfg.vendors.push(VendorConfig::new("b", "h", 1, "s", "p"));
        cfg.routes.push(RouteConfig::new("default", &["a"]));
        let mut special = RouteConfig::new("acme-short", &["b"]);
        special.customers = vec!["acme".into()];
        special.source_prefixes = vec!["12345".into()];
        cfg.routes.push(special);
        let mut us = RouteConfig::new("us", &["b"]);
        us.prefixes = vec!["1".into()];
        cfg.routes.push(us);
        let snap = Snapshot::build(cfg, 1);
        let acme = snap.customer(b"acme").unwrap().idx;
        let other = snap.customer(b"other").unwrap().idx;
        assert_eq!(snap.routes.lookup(acme, b"12345", b"4412").unwrap().1.name, "acme-short");
        assert_eq!(snap.routes.lookup(other, b"12345", b"4412").unwrap().1.name, "default");
        assert_eq!(snap.routes.lookup(acme, b"999", b"4412").unwrap().1.name, "default");
        assert_eq!(
            snap.routes.lookup(acme, b"12345", b"1555").unwrap().1.name,
            "us",
            "longer destination prefix first"
        );
    }

    #[test]
    fn prefixes_of_every_length_route_to_the_longest_that_matches() {
        // Prefixes up to 15 digits are packed map keys, longer ones are not: both kinds, and a
        // prefix next to one a NUL or a digit longer, must find their own routes.
        let mut cfg = Config::default();
        cfg.vendors.push(VendorConfig::new("a", "h", 1, "s", "p"));
        let prefixes = ["", "1", "10", "123456789012345", "1234567890123456", "12345678901234567"];
        for p in prefixes {
            let mut r = RouteConfig::new(format!("p{}", p.len()), &["a"]);
            r.prefixes = vec![p.into()];
            cfg.routes.push(r);
        }
        let snap = Snapshot::build(cfg, 1);
        let route = |dest: &[u8]| snap.routes.lookup(0, b"1", dest).map(|(_, r)| r.name.clone());
        assert_eq!(route(b"999").as_deref(), Some("p0"));
        assert_eq!(route(b"1").as_deref(), Some("p1"));
        assert_eq!(route(b"1\0").as_deref(), Some("p1"), "a NUL is not the end of a shorter prefix");
        assert_eq!(route(b"109").as_deref(), Some("p2"));
        assert_eq!(route(b"12345678901234").as_deref(), Some("p1"));
        assert_eq!(route(b"123456789012345").as_deref(), Some("p15"));
        assert_eq!(route(b"1234567890123459").as_deref(), Some("p15"));
        assert_eq!(route(b"1234567890123456").as_deref(), Some("p16"));
        assert_eq!(route(b"+12345678901234567890").as_deref(), Some("p17"));
    }

    #[test]
    fn a_bound_session_is_checked_against_what_it_bound_with_not_the_configuration_before() {
        // Goal: a reload that changes a customer's password hash, narrows its allowed_ips or
        // its bind_types revokes the sessions bound before, even when the core never applied
        // the versions in between (the customer deleted and added back between two polls);
        // one that changes nothing of its credentials or access (its throughput) revokes none.
        use crate::config::{BindType, Cidr};
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let mut cfg = Config::default();
        cfg.customers.push(CustomerConfig::new("a", "h1"));
        let first = Snapshot::build(cfg.clone(), 1);
        let a = first.customer(b"a").unwrap();
        let (idx, bound) = (a.idx, BoundWith::new(a, peer, BindKind::Transceiver));
        let with = |prev: &Snapshot, change: &dyn Fn(&mut CustomerConfig)| {
            let mut next = cfg.clone();
            change(&mut next.customers[0]);
            Snapshot::build_next(Some(prev), next, 1)
        };
        let check = |snap: &Snapshot| bound.revoked_by(snap.customer_at(idx).map(|c| &**c));

        assert_eq!(check(&with(&first, &|c| c.throughput = 50)), None, "throughput only");
        assert_eq!(check(&with(&first, &|c| c.password_hash = "h2".into())), Some(Revoked::PasswordChanged));
        let net = |s: &str| s.parse::<Cidr>().unwrap();
        let narrowed = with(&first, &|c| c.allowed_ips = vec![net("10.0.0.0/8")]);
        assert_eq!(check(&narrowed), Some(Revoked::AddressNotAllowed));
        assert_eq!(
            check(&with(&first, &|c| c.allowed_ips = vec![net("127.0.0.0/8")])),
            None,
            "still covered"
        );
        let tx_only = with(&first, &|c| c.bind_types = vec![BindType::Transmitter]);
        assert_eq!(check(&tx_only), Some(Revoked::BindTypeNotAllowed));
        let tx_and_trx = with(&first, &|c| c.bind_types = vec![BindType::Transmitter, BindType::Transceiver]);
        assert_eq!(check(&tx_and_trx), None, "its own bind type still allowed");

        // Deleted, then added back with a new password, applied at once (version 1 to 3): the
        // core never saw it absent; the hash the session proved is what counts.
        let gone = Snapshot::build_next(Some(&first), Config { customers: Vec::new(), ..cfg.clone() }, 1);
        assert_eq!(check(&gone), Some(Revoked::Removed));
        let back = with(&gone, &|c| c.password_hash = "h2".into());
        assert_eq!(back.customer(b"a").unwrap().idx, idx, "its index again");
        assert_eq!(check(&back), Some(Revoked::PasswordChanged));
        // Added back as it was: nothing it bound with changed.
        assert_eq!(check(&with(&gone, &|_| {})), None);
        // The version after the one that changed the hash (which the core skipped) changes
        // only the throughput: the session is still revoked.
        let changed = with(&first, &|c| c.password_hash = "h2".into());
        let then = with(&changed, &|c| {
            c.password_hash = "h2".into();
            c.throughput = 50;
        });
        assert_eq!(check(&then), Some(Revoked::PasswordChanged));
    }

    #[test]
    fn a_vendors_slots_split_by_the_core_that_owns_them() {
        let mut v = VendorConfig::new("a", "h", 1, "s", "p");
        v.binds = 5;
        let rt = vendor_rt(0, &v, 2, None);
        let ids =
            |it: &mut dyn Iterator<Item = &Arc<BindSlot>>| it.map(|b| (b.slot, b.core)).collect::<Vec<_>>();
        assert_eq!(ids(&mut rt.slots_on(0, 2)), [(0, 0), (2, 0), (4, 0)]);
        assert_eq!(ids(&mut rt.slots_on(1, 2)), [(1, 1), (3, 1)]);
        assert_eq!(ids(&mut rt.slots_off(0, 2)), [(1, 1), (3, 1)]);
        assert_eq!(ids(&mut rt.slots_off(1, 2)), [(0, 0), (2, 0), (4, 0)]);
        let one = vendor_rt(0, &v, 1, None);
        assert_eq!(one.slots_on(0, 1).count(), 5);
        assert_eq!(one.slots_off(0, 1).count(), 0);
    }
}
