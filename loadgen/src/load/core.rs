//! What one load-generator core's sessions share: templates, counters, histograms, and the
//! receipt matching tables. Sans-IO: `now` comes in.
//!
//! Receipt matching across cores: each message id has an owner core (a hash of its key), and
//! both its expectation (from the submit_sm_resp) and its receipt are matched there. Whatever
//! arrives on another core is sent to the owner over a bounded channel, so that with several
//! cores receipts match during the run, as they come, not only when the report is merged.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use hdrhistogram::Histogram;
use smppgw_codec::receipt::{MessageState, Receipt, is_receipt};
use smppgw_codec::{CommandStatus, DeliverSm};

use super::config::LoadConfig;
use super::report::{Histograms, new_histogram};
use super::template::Templates;
use crate::limits::{LOAD_AWAITING_RECEIPTS_MAX, LOAD_EARLY_RECEIPTS_MAX, LOAD_ROUTE_CHANNEL};
use crate::msgid::IdKey;
use crate::rng::{FastBuild, Rng, mix64};
use crate::runtime::Notify;

/// Plain counters of one core (see [`super::Report`] for their meaning).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Counters {
    pub messages_sent: u64,
    pub submits_sent: u64,
    pub submits_ok: u64,
    pub submits_failed: u64,
    pub timeouts: u64,
    pub late_responses: u64,
    pub lost_in_flight: u64,
    pub due_unsent: u64,
    pub malformed: u64,
    pub mo_received: u64,
    pub binds_ok: u64,
    pub connect_failures: u64,
    pub disconnects: u64,
    pub server_unbinds: u64,
    pub reconnects: u64,
    pub receipts_expected: u64,
    pub receipts_matched: u64,
    pub receipts_unparsable: u64,
    pub receipts_intermediate: u64,
    pub receipts_untracked: u64,
    pub receipts_overflow: u64,
    pub duplicate_ids: u64,
    pub receipts_duplicate: u64,
    pub inflight: u64,
}

/// What travels to the core that owns an id: the id's expectation or its receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteKind {
    /// An OK submit_sm_resp gave this id; `at` is the message's reference time.
    Await,
    /// A final receipt for this id arrived at `at`.
    Receipt,
}

/// One id sent to its owner core.
#[derive(Debug)]
pub(crate) struct Routed {
    pub kind: RouteKind,
    pub key: IdKey,
    pub at: Instant,
}

/// What the cores of a run share.
#[derive(Debug)]
pub struct LoadShared {
    /// Cores whose sessions are still sending or waiting for responses.
    pub sending_cores: AtomicUsize,
    /// Receipts awaited per core (gauge).
    pub awaiting: Box<[AtomicU64]>,
    /// Receipts parked per core, id not (yet) awaited there (gauge).
    pub early: Box<[AtomicU64]>,
    /// Set to end the run early: sending stops, sessions drain and unbind.
    pub stop: Arc<AtomicBool>,
    /// Per core, its inbox: ids and receipts it owns that reached another core.
    routes: Box<[(Sender<Routed>, Receiver<Routed>)]>,
    /// Routed items sent and not yet taken in (and published) by their owner.
    in_transit: AtomicU64,
    /// Sessions of the run not yet ended, over all cores: a core without sessions left still
    /// owns ids, and takes them in until the run finishes or no session is left anywhere.
    pub live_sessions: AtomicUsize,
}

impl LoadShared {
    /// For `cores` cores.
    pub fn new(cores: usize, stop: Arc<AtomicBool>) -> LoadShared {
        // One core owns every id: no inbox needed (a bounded channel allocates its capacity).
        let cap = if cores > 1 { LOAD_ROUTE_CHANNEL } else { 0 };
        LoadShared {
            sending_cores: AtomicUsize::new(cores),
            awaiting: (0..cores).map(|_| AtomicU64::new(0)).collect(),
            early: (0..cores).map(|_| AtomicU64::new(0)).collect(),
            stop,
            routes: (0..cores).map(|_| crossbeam_channel::bounded(cap)).collect(),
            in_transit: AtomicU64::new(0),
            live_sessions: AtomicUsize::new(0),
        }
    }

    /// Receipts still awaited over all cores, and receipts parked.
    pub fn receipt_balance(&self) -> (u64, u64) {
        let s = |v: &[AtomicU64]| v.iter().map(|a| a.load(Ordering::Relaxed)).sum();
        (s(&self.awaiting), s(&self.early))
    }

    /// Once every sender is done (no submit_sm_resp can come any more): whether nothing is
    /// awaited any more, nor on its way to the core that will await it, so that waiting longer
    /// cannot match more. Parked receipts (strays, duplicates, ids nobody gave) never stand in
    /// for awaited ones: an id's receipt and expectation meet on its owner core.
    pub fn receipts_settled(&self) -> bool {
        // Acquire: an owner publishes its gauge before it takes an item off `in_transit`.
        let in_transit = self.in_transit.load(Ordering::Acquire);
        let awaiting: u64 = self.awaiting.iter().map(|a| a.load(Ordering::Relaxed)).sum();
        in_transit == 0 && awaiting == 0
    }

    /// The core that matches `key`: the same on every core, and spread evenly.
    pub(crate) fn owner(&self, key: &IdKey) -> usize {
        let cores = self.routes.len();
        if cores <= 1 {
            return 0;
        }
        // Re-mixed: the maps on the owner hash the same key, and must not see only a slice of it.
        (mix64(FastBuild::default().hash_one(key) ^ 0x9E37_79B9_7F4A_7C15) % cores as u64) as usize
    }

    /// Sends `item` to core `owner`; a full inbox hands it back (the caller keeps it locally).
    fn route(&self, owner: usize, item: Routed) -> Result<(), Routed> {
        self.in_transit.fetch_add(1, Ordering::AcqRel);
        match self.routes[owner].0.try_send(item) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.in_transit.fetch_sub(1, Ordering::AcqRel);
                Err(e.into_inner())
            }
        }
    }

    /// What is left in every inbox once all cores have ended, for the merge.
    pub(crate) fn take_leftovers(&self) -> Vec<Routed> {
        let mut v = Vec::new();
        for (_, rx) in self.routes.iter() {
            v.extend(rx.try_iter());
        }
        self.in_transit.store(0, Ordering::Release);
        v
    }
}

/// The state of one load core.
pub struct LoadCore {
    /// Configuration.
    pub cfg: Arc<LoadConfig>,
    /// Shared with the other cores.
    pub shared: Arc<LoadShared>,
    /// This core's index.
    pub index: usize,
    /// When the run started (common to every core).
    pub start: Instant,
    /// When sending stops (duration runs).
    pub send_deadline: Option<Instant>,
    /// The messages.
    pub templates: Rc<Templates>,
    /// Random choices.
    pub rng: Rng,
    /// Counters.
    pub counters: Counters,
    /// Non-OK submit statuses.
    pub errors: HashMap<u32, u64>,
    /// Non-OK bind statuses.
    pub bind_failures: HashMap<u32, u64>,
    /// Final states of receipts, indexed by message_state value.
    pub states: [u64; 10],
    /// Latency histograms.
    pub hist: Histograms,
    /// submit->resp of the current progress interval.
    pub interval: Histogram<u64>,
    awaiting: HashMap<IdKey, Instant, FastBuild>,
    early: HashMap<IdKey, Instant, FastBuild>,
    /// Bounds of `awaiting` and `early` (the limits; smaller in tests).
    awaiting_max: usize,
    early_max: usize,
    /// Set when sessions must finish (unbind and close).
    pub finishing: bool,
    /// Sender sessions not yet done.
    pub senders_active: usize,
    /// First submit sent.
    pub first_send: Option<Instant>,
    /// Last response received.
    pub last_resp: Option<Instant>,
    /// Last final receipt received.
    pub last_receipt: Option<Instant>,
    notifies: Vec<Rc<Notify>>,
}

/// A core's final state, handed back to the thread that merges the report.
pub struct CoreResult {
    /// Counters.
    pub counters: Counters,
    /// Non-OK submit statuses.
    pub errors: HashMap<u32, u64>,
    /// Non-OK bind statuses.
    pub bind_failures: HashMap<u32, u64>,
    /// Receipt final states.
    pub states: [u64; 10],
    /// Histograms.
    pub hist: Histograms,
    /// Receipts still awaited: id and reference time.
    pub awaiting: HashMap<IdKey, Instant, FastBuild>,
    /// Receipts received whose id was not known here.
    pub early: HashMap<IdKey, Instant, FastBuild>,
    /// First submit.
    pub first_send: Option<Instant>,
    /// Last response.
    pub last_resp: Option<Instant>,
    /// Last final receipt.
    pub last_receipt: Option<Instant>,
}

#[inline]
fn us(d: std::time::Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

impl LoadCore {
    /// Open model: the latest send point at or before `now`. Messages due up to it go out now;
    /// later ones wait for the next point. Without a send quantum every instant is a send point.
    pub fn send_point(&self, now: Instant) -> Instant {
        let q = self.cfg.send_quantum.as_nanos();
        if q == 0 || now <= self.start {
            return now;
        }
        let since = now.duration_since(self.start).as_nanos();
        self.start + nanos(since - since % q)
    }

    /// Open model: the first send point at or after `due`, when a message due then goes out.
    pub fn send_point_for(&self, due: Instant) -> Instant {
        let q = self.cfg.send_quantum.as_nanos();
        if q == 0 || due <= self.start {
            return due;
        }
        let since = due.duration_since(self.start).as_nanos();
        self.start + nanos(since.div_ceil(q) * q)
    }

    /// Core `index` of a run that started at `start`.
    pub fn new(
        cfg: Arc<LoadConfig>,
        shared: Arc<LoadShared>,
        index: usize,
        start: Instant,
        templates: Rc<Templates>,
    ) -> LoadCore {
        let seed = cfg.seed.unwrap_or_else(|| Rng::from_time(index as u64).next_u64());
        LoadCore {
            send_deadline: cfg.duration.map(|d| start + d),
            rng: Rng::new(seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            counters: Counters::default(),
            errors: HashMap::new(),
            bind_failures: HashMap::new(),
            states: [0; 10],
            hist: Histograms::default(),
            interval: new_histogram(),
            awaiting: HashMap::default(),
            early: HashMap::default(),
            awaiting_max: LOAD_AWAITING_RECEIPTS_MAX,
            early_max: LOAD_EARLY_RECEIPTS_MAX,
            finishing: false,
            senders_active: 0,
            first_send: None,
            last_resp: None,
            last_receipt: None,
            notifies: Vec::new(),
            cfg,
            shared,
            index,
            start,
            templates,
        }
    }

    /// Registers a session's wake-up flag (woken when the run finishes).
    pub fn add_session(&mut self, notify: Rc<Notify>, sender: bool) {
        self.notifies.push(notify);
        if sender {
            self.senders_active += 1;
        }
    }

    /// Starts finishing: every session unbinds.
    pub fn finish(&mut self) {
        if !self.finishing {
            self.finishing = true;
            for n in &self.notifies {
                n.notify();
            }
        }
    }

    /// A submit_sm went out.
    #[inline]
    pub fn on_sent(&mut self, now: Instant) {
        self.counters.submits_sent += 1;
        self.counters.inflight += 1;
        if self.first_send.is_none() {
            self.first_send = Some(now);
        }
    }

    /// A submit_sm got its response. Latency of ESME_ROK responses goes to submit->resp and the
    /// service time; that of error responses (refusals such as ESME_RTHROTTLED, often answered
    /// at once) to their own histogram, so that they neither flatter nor hide the OK latency.
    #[inline]
    pub fn on_resp(&mut self, now: Instant, intended: Instant, sent: Instant, status: CommandStatus) {
        self.counters.inflight = self.counters.inflight.saturating_sub(1);
        self.last_resp = Some(now);
        let lat = us(now.saturating_duration_since(intended));
        if status.is_ok() {
            self.counters.submits_ok += 1;
            self.hist.submit_resp.saturating_record(lat);
            self.interval.saturating_record(lat);
            self.hist.service_time.saturating_record(us(now.saturating_duration_since(sent)));
        } else {
            self.counters.submits_failed += 1;
            *self.errors.entry(status.0).or_insert(0) += 1;
            self.hist.error_resp.saturating_record(lat);
        }
    }

    /// An outstanding submit given up at `now` (timeout or lost connection; the caller counts
    /// which). It never got an answer, so it is recorded in submit->resp and the service time at
    /// the time it was given up, a lower bound of its latency: a server that drops one submit in
    /// a hundred shows in the p99 instead of only in a counter.
    #[inline]
    pub fn on_given_up(&mut self, now: Instant, intended: Instant, sent: Instant) {
        self.counters.inflight = self.counters.inflight.saturating_sub(1);
        let lat = us(now.saturating_duration_since(intended));
        self.hist.submit_resp.saturating_record(lat);
        self.interval.saturating_record(lat);
        self.hist.service_time.saturating_record(us(now.saturating_duration_since(sent)));
    }

    /// Open model: `n` messages that fell due before the end of the run but were never sent (the
    /// window stayed full until the deadline), the first due at `first_due`, the next ones every
    /// `interval`. Counted in `due_unsent` and recorded in submit->resp at `now - due` each
    /// (coordinated omission: a stall near the end shows in the percentiles). Recorded by
    /// histogram bucket, so that a long stall at a high rate costs no more than a few thousand
    /// steps.
    pub fn on_due_unsent(&mut self, now: Instant, first_due: Instant, interval: Duration, n: u64) {
        self.counters.due_unsent += n;
        let first_us = now.saturating_duration_since(first_due).as_secs_f64() * 1e6;
        let step_us = interval.as_secs_f64() * 1e6;
        let mut j = 0u64;
        while j < n {
            // Latencies fall by `step_us` from one message to the next: record together all those
            // in the bucket of the current one.
            let v = ((first_us - step_us * j as f64).max(1.0)) as u64;
            let low = self.hist.submit_resp.lowest_equivalent(v);
            let same = if step_us > 0.0 { ((v - low) as f64 / step_us) as u64 + 1 } else { n - j };
            let c = same.clamp(1, n - j);
            self.hist.submit_resp.saturating_record_n(v, c);
            self.interval.saturating_record_n(v, c);
            j += c;
        }
    }

    /// The id of an OK submit whose receipt is awaited, and its reference time: awaited here if
    /// this core owns the id, else sent to its owner.
    #[inline]
    pub fn await_receipt(&mut self, id: &[u8], t_ref: Instant) {
        let mut key = IdKey::new(id);
        let owner = self.shared.owner(&key);
        // A receipt parked here because its owner's inbox was full is claimed here.
        if owner != self.index && !self.early.contains_key(&key) {
            match self.shared.route(owner, Routed { kind: RouteKind::Await, key, at: t_ref }) {
                Ok(()) => return,
                Err(r) => key = r.key,
            }
        }
        self.await_here(key, t_ref);
    }

    /// Awaits `key` on this core (its owner, or the owner's inbox was full).
    fn await_here(&mut self, key: IdKey, t_ref: Instant) {
        self.counters.receipts_expected += 1;
        if let Some(arrived) = self.early.remove(&key) {
            self.counters.receipts_matched += 1;
            self.hist.receipt.saturating_record(us(arrived.saturating_duration_since(t_ref)));
            return;
        }
        if self.awaiting.len() < self.awaiting_max {
            if self.awaiting.insert(key, t_ref).is_some() {
                // The server gave this id to two messages: one receipt will match, the other
                // expectation would vanish without a trace.
                self.counters.duplicate_ids += 1;
            }
        } else {
            self.counters.receipts_expected -= 1;
            self.counters.receipts_untracked += 1;
        }
    }

    /// A deliver_sm arrived: a receipt to match, or an MO to count.
    pub fn on_deliver(&mut self, d: &DeliverSm, now: Instant) {
        if !is_receipt(d.esm_class) {
            self.counters.mo_received += 1;
            return;
        }
        let tlv_id = d.tlvs.receipted_message_id().filter(|i| !i.is_empty());
        let tlv_state = d.tlvs.message_state().and_then(MessageState::from_u8);
        let (id, state) = match (tlv_id, tlv_state) {
            (Some(id), Some(st)) => (id, st),
            (tlv_id, tlv_state) => match Receipt::parse_bytes(&d.short_message) {
                Ok(r) => (tlv_id.unwrap_or_else(|| r.id.into_bytes()), tlv_state.unwrap_or(r.stat)),
                Err(_) => {
                    self.counters.receipts_unparsable += 1;
                    return;
                }
            },
        };
        if !state.is_final() {
            self.counters.receipts_intermediate += 1;
            return;
        }
        self.states[usize::from(state.as_u8()).min(9)] += 1;
        self.last_receipt = Some(now);
        let mut key = IdKey::new(&id);
        let owner = self.shared.owner(&key);
        // An expectation kept here because its owner's inbox was full matches here.
        if owner != self.index && !self.awaiting.contains_key(&key) {
            match self.shared.route(owner, Routed { kind: RouteKind::Receipt, key, at: now }) {
                Ok(()) => return,
                Err(r) => key = r.key,
            }
        }
        self.receipt_here(key, now);
    }

    /// A final receipt for `key` that arrived at `arrived`, matched on this core.
    fn receipt_here(&mut self, key: IdKey, arrived: Instant) {
        if let Some(t_ref) = self.awaiting.remove(&key) {
            self.counters.receipts_matched += 1;
            self.hist.receipt.saturating_record(us(arrived.saturating_duration_since(t_ref)));
        } else if self.early.len() < self.early_max {
            // Before its submit_sm_resp, a duplicate, or for nothing: decided later. A second
            // one for the same id parked here is a duplicate now.
            if self.early.insert(key, arrived).is_some() {
                self.counters.receipts_duplicate += 1;
            }
        } else {
            self.counters.receipts_overflow += 1;
        }
    }

    /// Takes in the ids and receipts the other cores sent here (at most an inbox's worth), then
    /// publishes the receipt gauges. Only then are they off `in_transit`, so that no core sees
    /// an expectation neither on its way nor awaited, and ends the receipt wait too soon.
    pub fn take_routed(&mut self) {
        let shared = self.shared.clone();
        let mut n = 0u64;
        for r in shared.routes[self.index].1.try_iter().take(LOAD_ROUTE_CHANNEL) {
            match r.kind {
                RouteKind::Await => self.await_here(r.key, r.at),
                RouteKind::Receipt => self.receipt_here(r.key, r.at),
            }
            n += 1;
        }
        self.publish_receipts();
        if n > 0 {
            shared.in_transit.fetch_sub(n, Ordering::AcqRel);
        }
    }

    /// Publishes the receipt gauges for the other cores.
    pub fn publish_receipts(&self) {
        self.shared.awaiting[self.index].store(self.awaiting.len() as u64, Ordering::Relaxed);
        self.shared.early[self.index].store(self.early.len() as u64, Ordering::Relaxed);
    }

    /// Takes the final state out (the core is left empty).
    pub fn take_result(&mut self) -> CoreResult {
        // Submits still outstanding now were abandoned with their session: count them as lost.
        self.counters.lost_in_flight += self.counters.inflight;
        self.counters.inflight = 0;
        CoreResult {
            counters: self.counters,
            errors: std::mem::take(&mut self.errors),
            bind_failures: std::mem::take(&mut self.bind_failures),
            states: self.states,
            hist: std::mem::take(&mut self.hist),
            awaiting: std::mem::take(&mut self.awaiting),
            early: std::mem::take(&mut self.early),
            first_send: self.first_send,
            last_resp: self.last_resp,
            last_receipt: self.last_receipt,
        }
    }
}

/// A nanosecond count as a duration (saturating: runs do not last 584 years).
fn nanos(n: u128) -> Duration {
    Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::template::Templates;

    /// `n` cores of one run, sharing their [`LoadShared`].
    fn cores(n: usize, t0: Instant) -> (Arc<LoadShared>, Vec<LoadCore>) {
        let cfg = Arc::new(LoadConfig::default());
        let templates = Rc::new(Templates::build(&cfg.mix).unwrap());
        let shared = Arc::new(LoadShared::new(n, Arc::new(AtomicBool::new(false))));
        let c =
            (0..n).map(|i| LoadCore::new(cfg.clone(), shared.clone(), i, t0, templates.clone())).collect();
        (shared, c)
    }

    fn receipt(id: &str) -> DeliverSm {
        DeliverSm {
            esm_class: 0x04,
            short_message: bytes::Bytes::from(format!("id:{id} stat:DELIVRD")),
            ..Default::default()
        }
    }

    #[test]
    fn stray_receipts_do_not_end_the_receipt_wait() {
        // Goal: receipts parked on a core (strays, duplicates) never end the receipt wait while
        // a real one is due, on any core, nor does an id still on its way to the core that owns
        // it; once that one's receipt came, the wait can end, strays left unmatched.
        let t0 = Instant::now();
        let (shared, mut c) = cores(2, t0);
        let owned_by = |core: usize| {
            (0u32..).map(|i| format!("{i:08x}")).find(|id| shared.owner(&IdKey::new(id.as_bytes())) == core)
        };
        let (real, stray) = (owned_by(1).unwrap(), owned_by(0).unwrap());
        c[0].await_receipt(real.as_bytes(), t0);
        assert!(!shared.receipts_settled(), "on its way to core 1");
        for _ in 0..3 {
            c[1].on_deliver(&receipt(&stray), t0);
            c[0].on_deliver(&receipt("nobody"), t0);
        }
        c[0].take_routed();
        c[1].take_routed();
        assert!(!shared.receipts_settled(), "awaited on core 1, strays parked on both");
        c[0].on_deliver(&receipt(&real), t0);
        c[1].take_routed();
        c[0].take_routed();
        assert!(shared.receipts_settled());
        let matched: u64 = c.iter().map(|k| k.counters.receipts_matched).sum();
        assert_eq!(matched, 1);
    }

    #[test]
    fn receipts_reaching_another_core_match_during_the_run() {
        // Goal: with two load cores, 100 ids awaited on core 0 whose receipts all come to core 1
        // (its receiver got them) match as they come, whatever the bound on parked receipts (8
        // here, 1 Mi in a run): matched 100, missing 0, unmatched 0, and the receipt wait can end
        // instead of lasting the whole --receipt-wait.
        let t0 = Instant::now();
        let (shared, mut c) = cores(2, t0);
        for k in c.iter_mut() {
            k.early_max = 8;
        }
        let ids: Vec<String> = (0..100u64).map(|i| format!("{:016x}", i * 7919)).collect();
        for id in &ids {
            c[0].await_receipt(id.as_bytes(), t0);
        }
        // Control ticks while the receipts are on their way.
        c[0].take_routed();
        c[1].take_routed();
        let t1 = t0 + Duration::from_millis(30);
        for id in &ids {
            c[1].on_deliver(&receipt(id), t1);
        }
        c[0].take_routed();
        c[1].take_routed();
        let matched: u64 = c.iter().map(|k| k.counters.receipts_matched).sum();
        assert_eq!(matched, 100, "matched during the run, not only in the merge");
        assert!(shared.receipts_settled());
        let cfg = LoadConfig::default();
        let results = c.iter_mut().map(|k| k.take_result()).collect();
        let r = crate::load::merge(&cfg, 2, results, shared.take_leftovers());
        let rc = &r.receipts;
        assert_eq!((rc.expected, rc.matched, rc.missing, rc.unmatched), (100, 100, 0, 0), "{}", r.to_table());
        assert_eq!(r.latency_us.receipt.count, 100);
        assert!(
            r.latency_us.receipt.min >= 29_000,
            "from the arrival on core 1: {}",
            r.latency_us.receipt.min
        );
    }

    #[test]
    fn messages_beyond_the_tracking_bound_make_the_run_unclean() {
        // Goal: once the table of awaited ids is full (2 here, 16 Mi in a run), the receipts of
        // further messages cannot be checked: the report says how many and the run is not clean,
        // although every receipt that was tracked matched.
        let t0 = Instant::now();
        let (shared, mut c) = cores(1, t0);
        c[0].awaiting_max = 2;
        for id in ["a1", "a2", "a3"] {
            c[0].await_receipt(id.as_bytes(), t0);
        }
        for id in ["a1", "a2"] {
            c[0].on_deliver(&receipt(id), t0);
        }
        let r =
            crate::load::merge(&LoadConfig::default(), 1, vec![c[0].take_result()], shared.take_leftovers());
        let rc = &r.receipts;
        assert_eq!((rc.expected, rc.matched, rc.missing, rc.untracked), (2, 2, 0, 1));
        assert!(!r.is_clean(), "{}", r.to_table());
        assert!(r.to_table().contains("receipts untracked"), "{}", r.to_table());
    }

    #[test]
    fn due_unsent_messages_are_recorded_by_bucket_at_their_own_latency() {
        // Goal: ten million messages due 100 ns apart (a 1 s stall at 10 million msg/s) are
        // recorded with the latency each had, from 2 s (the first, due at 0) down to 1 s (the last),
        // in a few thousand steps, not ten million.
        let t0 = Instant::now();
        let cfg = LoadConfig::default();
        let templates = Rc::new(Templates::build(&cfg.mix).unwrap());
        let shared = Arc::new(LoadShared::new(1, Arc::new(AtomicBool::new(false))));
        let mut c = LoadCore::new(Arc::new(cfg), shared, 0, t0, templates);
        let n = 10_000_000;
        c.on_due_unsent(t0 + Duration::from_secs(2), t0, Duration::from_nanos(100), n);
        let h = &c.hist.submit_resp;
        assert_eq!((c.counters.due_unsent, h.len(), c.interval.len()), (n, n, n));
        assert!((1_998_000..=2_001_000).contains(&h.max()), "{}", h.max());
        assert!((999_000..=1_001_000).contains(&h.min()), "{}", h.min());
        let p50 = h.value_at_quantile(0.5);
        assert!((1_495_000..=1_505_000).contains(&p50), "{p50}");
    }
}
