//! What one load-generator core's sessions share: templates, counters, histograms, and the
//! receipt matching tables. Sans-IO: `now` comes in.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use smppgw_codec::receipt::{MessageState, Receipt, is_receipt};
use smppgw_codec::{CommandStatus, DeliverSm};

use super::config::LoadConfig;
use super::report::{Histograms, new_histogram};
use super::template::Templates;
use crate::limits::{LOAD_AWAITING_RECEIPTS_MAX, LOAD_EARLY_RECEIPTS_MAX};
use crate::msgid::IdKey;
use crate::rng::{FastBuild, Rng};
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
    pub malformed: u64,
    pub mo_received: u64,
    pub binds_ok: u64,
    pub connect_failures: u64,
    pub disconnects: u64,
    pub reconnects: u64,
    pub receipts_expected: u64,
    pub receipts_matched: u64,
    pub receipts_unparsable: u64,
    pub receipts_intermediate: u64,
    pub receipts_untracked: u64,
    pub receipts_overflow: u64,
    pub inflight: u64,
}

/// What the cores of a run share.
#[derive(Debug)]
pub struct LoadShared {
    /// Cores whose sessions are still sending or waiting for responses.
    pub sending_cores: AtomicUsize,
    /// Receipts awaited per core (gauge).
    pub awaiting: Box<[AtomicU64]>,
    /// Receipts parked per core, id not known there (gauge).
    pub early: Box<[AtomicU64]>,
    /// Set to end the run early: sending stops, sessions drain and unbind.
    pub stop: Arc<AtomicBool>,
}

impl LoadShared {
    /// For `cores` cores.
    pub fn new(cores: usize, stop: Arc<AtomicBool>) -> LoadShared {
        LoadShared {
            sending_cores: AtomicUsize::new(cores),
            awaiting: (0..cores).map(|_| AtomicU64::new(0)).collect(),
            early: (0..cores).map(|_| AtomicU64::new(0)).collect(),
            stop,
        }
    }

    /// Receipts still awaited over all cores, and receipts parked.
    pub fn receipt_balance(&self) -> (u64, u64) {
        let s = |v: &[AtomicU64]| v.iter().map(|a| a.load(Ordering::Relaxed)).sum();
        (s(&self.awaiting), s(&self.early))
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
    /// Set when sessions must finish (unbind and close).
    pub finishing: bool,
    /// Sender sessions not yet done.
    pub senders_active: usize,
    /// First submit sent.
    pub first_send: Option<Instant>,
    /// Last response received.
    pub last_resp: Option<Instant>,
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
            finishing: false,
            senders_active: 0,
            first_send: None,
            last_resp: None,
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

    /// A submit_sm got its response (or was given up: `resolved` false for timeouts and losses).
    #[inline]
    pub fn on_resp(&mut self, now: Instant, intended: Instant, sent: Instant, status: CommandStatus) {
        self.counters.inflight = self.counters.inflight.saturating_sub(1);
        self.last_resp = Some(now);
        let lat = us(now.saturating_duration_since(intended));
        self.hist.submit_resp.saturating_record(lat);
        self.interval.saturating_record(lat);
        self.hist.service_time.saturating_record(us(now.saturating_duration_since(sent)));
        if status.is_ok() {
            self.counters.submits_ok += 1;
        } else {
            self.counters.submits_failed += 1;
            *self.errors.entry(status.0).or_insert(0) += 1;
        }
    }

    /// Outstanding submits given up (timeout or lost connection).
    pub fn on_abandoned(&mut self, n: u64) {
        self.counters.inflight = self.counters.inflight.saturating_sub(n);
    }

    /// The id of an OK submit whose receipt is awaited, and its reference time.
    #[inline]
    pub fn await_receipt(&mut self, id: &[u8], t_ref: Instant) {
        let key = IdKey::new(id);
        self.counters.receipts_expected += 1;
        if let Some(arrived) = self.early.remove(&key) {
            self.counters.receipts_matched += 1;
            self.hist.receipt.saturating_record(us(arrived.saturating_duration_since(t_ref)));
            return;
        }
        if self.awaiting.len() < LOAD_AWAITING_RECEIPTS_MAX {
            self.awaiting.insert(key, t_ref);
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
        let key = IdKey::new(&id);
        if let Some(t_ref) = self.awaiting.remove(&key) {
            self.counters.receipts_matched += 1;
            self.hist.receipt.saturating_record(us(now.saturating_duration_since(t_ref)));
        } else if self.early.len() < LOAD_EARLY_RECEIPTS_MAX {
            // Before its submit_sm_resp, for another core, a duplicate, or for nothing: decided later.
            self.early.insert(key, now);
        } else {
            self.counters.receipts_overflow += 1;
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
        }
    }
}

/// A nanosecond count as a duration (saturating: runs do not last 584 years).
fn nanos(n: u128) -> Duration {
    Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX))
}
