//! The state one simulator core shares between its sessions: accounts, ids, the receipt and MO
//! queues, routing of receipts to receiver binds, and the counters. Sans-IO: time comes in as
//! `now`, and waking a session is a flag on its [`Notify`].

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use smppgw_codec::receipt::MessageState;
use smppgw_codec::{CommandStatus, SubmitSm};

use super::config::SimConfig;
use super::delayq::DelayQueue;
use super::receipt::{Addr, ReceiptData};
use crate::limits::SIM_FORWARD_CHANNEL;
use crate::msgid::{IdText, format_id, parse_id};
use crate::pattern::PatternGen;
use crate::rng::{Rng, mix64};
use crate::runtime::{Notify, bump, get, set};

/// Identifies a session on its core; the generation makes a reused slot a different id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId {
    idx: u32,
    generation: u32,
}

/// How a session is bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BindKind {
    /// bind_transmitter: submits only.
    Transmitter,
    /// bind_receiver: deliver_sm only.
    Receiver,
    /// bind_transceiver: both.
    Transceiver,
}

impl BindKind {
    /// May submit.
    pub const fn can_submit(self) -> bool {
        !matches!(self, BindKind::Receiver)
    }
    /// May be sent deliver_sm.
    pub const fn can_receive(self) -> bool {
        !matches!(self, BindKind::Transmitter)
    }
}

/// What waits to be sent to a receiver.
#[derive(Debug, Clone)]
pub enum OutKind {
    /// A delivery receipt.
    Receipt(Box<ReceiptData>),
    /// An MO message.
    Mo {
        /// Originator (the handset).
        source: Addr,
        /// Recipient.
        dest: Addr,
    },
}

/// A deliver_sm waiting for its time or its receiver.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// What it is.
    pub kind: OutKind,
    /// The account it belongs to.
    pub account: u16,
    /// The session whose submit caused it (a transceiver gets its own receipts back).
    pub origin: Option<SessionId>,
}

/// A submit_sm as the simulator received it, for tests that check what reached the vendor.
#[derive(Debug, Clone)]
pub struct RecordedSubmit {
    /// The account (system_id) it came on.
    pub system_id: String,
    /// The message id the simulator gave it ("" when answered with an error).
    pub message_id: String,
    /// The status it was answered with.
    pub status: CommandStatus,
    /// The PDU body, in a buffer of its own.
    pub pdu: SubmitSm,
}

/// A cancel_sm or replace_sm as the simulator received it (record mode).
#[derive(Debug, Clone)]
pub struct RecordedOp {
    /// The account (system_id) it came on.
    pub system_id: String,
    /// CANCEL_SM or REPLACE_SM.
    pub command_id: smppgw_codec::CommandId,
    /// The message id it names.
    pub message_id: String,
    /// replace_sm's new short_message (empty for cancel_sm).
    pub short_message: bytes::Bytes,
    /// The status it was answered with.
    pub status: CommandStatus,
}

/// Per-account counters of one core.
#[derive(Debug, Default)]
pub struct AccountCounters {
    /// Sessions bound now.
    pub binds_current: AtomicU64,
    /// Successful binds.
    pub binds_total: AtomicU64,
    /// submit_sm received.
    pub submits: AtomicU64,
    /// Receipts written.
    pub receipts_sent: AtomicU64,
    /// MO written.
    pub mo_sent: AtomicU64,
}

/// Counters of one core, written by that core only (see [`bump`]), read by anyone.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct CoreCounters {
    /// TCP connections accepted.
    pub connections: AtomicU64,
    /// Binds refused (bad credentials, ...).
    pub bind_failures: AtomicU64,
    /// submit_sm received on bound transmitters.
    pub submits: AtomicU64,
    /// submit_sm answered ESME_ROK.
    pub submits_ok: AtomicU64,
    /// Injected error responses (`--error-rate`).
    pub injected_errors: AtomicU64,
    /// ESME_RTHROTTLED for going over `--throttle-tps`.
    pub throttled: AtomicU64,
    /// submit_sm never answered (`--drop-rate`).
    pub dropped: AtomicU64,
    /// Receipts written.
    pub receipts_sent: AtomicU64,
    /// Receipts and MO dropped: queue full, or no receiver bound for the account.
    pub receipts_dropped: AtomicU64,
    /// Receipts and MO waiting now (gauge).
    pub receipts_queued: AtomicU64,
    /// deliver_sm_resp received with ESME_ROK.
    pub deliver_resp_ok: AtomicU64,
    /// deliver_sm_resp received with an error.
    pub deliver_resp_errors: AtomicU64,
    /// deliver_sm given up without response.
    pub deliver_timeouts: AtomicU64,
    /// MO written.
    pub mo_sent: AtomicU64,
    /// enquire_link answered.
    pub enquire_links: AtomicU64,
    /// unbind answered (a peer that left cleanly).
    pub unbinds: AtomicU64,
    /// query_sm answered.
    pub queries: AtomicU64,
    /// generic_nack sent (unknown commands, broken PDUs).
    pub generic_nacks: AtomicU64,
    /// Malformed PDUs received.
    pub malformed: AtomicU64,
    /// Connections closed by `--disconnect-after`.
    pub disconnects_injected: AtomicU64,
    /// Message ids this core has given (the counter part of its ids), so that any core can tell
    /// an id it never gave in a query_sm.
    pub ids_issued: AtomicU64,
    /// Stalls done (`--stall-ms`).
    pub stalls: AtomicU64,
    /// `--receipt-before-resp`: receipts that could not be written ahead of their response (a
    /// transmitter's receipt goes to a receiver, the deliver window was full, or receipts were
    /// queued ahead of it) and so followed it as usual.
    pub before_resp_missed: AtomicU64,
    /// Per account, in the order of the configuration.
    pub accounts: Box<[AccountCounters]>,
}

/// What all cores of one simulator share.
#[derive(Debug)]
pub struct Shared {
    /// Set to stop every core.
    pub stop: AtomicBool,
    /// Counters, one block per core.
    pub cores: Box<[CoreCounters]>,
    /// Receiver-capable sessions per account and core: `[account * cores + core]`.
    receivers: Box<[AtomicU32]>,
    forward_tx: Vec<Sender<Outbound>>,
    forward_rx: Vec<Receiver<Outbound>>,
    record: Option<(Sender<RecordedSubmit>, Receiver<RecordedSubmit>)>,
    ops_record: Option<(Sender<RecordedOp>, Receiver<RecordedOp>)>,
    /// Account system_ids, in configuration order.
    pub system_ids: Vec<String>,
    /// The salt of this run's ids, one for every core: an id any core gave parses on all of them
    /// (a query_sm may come on a connection another core holds).
    salt: u64,
}

impl Shared {
    /// The shared state for a configuration.
    pub fn new(cfg: &SimConfig) -> Shared {
        let cores = cfg.cores.max(1);
        let accounts = cfg.accounts.len();
        let mut forward_tx = Vec::with_capacity(cores);
        let mut forward_rx = Vec::with_capacity(cores);
        for _ in 0..cores {
            let (tx, rx) = crossbeam_channel::bounded(SIM_FORWARD_CHANNEL);
            forward_tx.push(tx);
            forward_rx.push(rx);
        }
        Shared {
            stop: AtomicBool::new(false),
            cores: (0..cores)
                .map(|_| CoreCounters {
                    accounts: (0..accounts).map(|_| AccountCounters::default()).collect(),
                    ..CoreCounters::default()
                })
                .collect(),
            receivers: (0..accounts * cores).map(|_| AtomicU32::new(0)).collect(),
            forward_tx,
            forward_rx,
            record: (cfg.record_max > 0).then(|| crossbeam_channel::bounded(cfg.record_max)),
            ops_record: (cfg.record_max > 0).then(|| crossbeam_channel::bounded(cfg.record_max)),
            system_ids: cfg.accounts.iter().map(|a| a.system_id.clone()).collect(),
            salt: match cfg.seed {
                Some(seed) => salt_of_seed(seed),
                None => Rng::from_time(cores as u64).next_u64(),
            },
        }
    }

    /// Drains the recorded submits.
    pub fn take_recorded(&self) -> Vec<RecordedSubmit> {
        match &self.record {
            Some((_, rx)) => rx.try_iter().collect(),
            None => Vec::new(),
        }
    }

    /// Drains the recorded cancel_sm and replace_sm.
    pub fn take_recorded_ops(&self) -> Vec<RecordedOp> {
        match &self.ops_record {
            Some((_, rx)) => rx.try_iter().collect(),
            None => Vec::new(),
        }
    }

    /// Sums the counters of every core.
    pub fn stats(&self) -> SimStats {
        let mut s = SimStats {
            accounts: self
                .system_ids
                .iter()
                .map(|id| AccountStats { system_id: id.clone(), ..AccountStats::default() })
                .collect(),
            ..SimStats::default()
        };
        for c in self.cores.iter() {
            s.connections += get(&c.connections);
            s.bind_failures += get(&c.bind_failures);
            s.submits += get(&c.submits);
            s.submits_ok += get(&c.submits_ok);
            s.injected_errors += get(&c.injected_errors);
            s.throttled += get(&c.throttled);
            s.dropped += get(&c.dropped);
            s.receipts_sent += get(&c.receipts_sent);
            s.receipts_dropped += get(&c.receipts_dropped);
            s.receipts_queued += get(&c.receipts_queued);
            s.deliver_resp_ok += get(&c.deliver_resp_ok);
            s.deliver_resp_errors += get(&c.deliver_resp_errors);
            s.deliver_timeouts += get(&c.deliver_timeouts);
            s.mo_sent += get(&c.mo_sent);
            s.enquire_links += get(&c.enquire_links);
            s.unbinds += get(&c.unbinds);
            s.queries += get(&c.queries);
            s.generic_nacks += get(&c.generic_nacks);
            s.malformed += get(&c.malformed);
            s.disconnects_injected += get(&c.disconnects_injected);
            s.stalls += get(&c.stalls);
            s.before_resp_missed += get(&c.before_resp_missed);
            for (a, ac) in s.accounts.iter_mut().zip(c.accounts.iter()) {
                a.binds_current += get(&ac.binds_current);
                a.binds_total += get(&ac.binds_total);
                a.submits += get(&ac.submits);
                a.receipts_sent += get(&ac.receipts_sent);
                a.mo_sent += get(&ac.mo_sent);
            }
        }
        s.binds_current = s.accounts.iter().map(|a| a.binds_current).sum();
        s.binds_total = s.accounts.iter().map(|a| a.binds_total).sum();
        s
    }
}

/// Per-account figures of [`SimStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AccountStats {
    /// The account.
    pub system_id: String,
    /// Sessions bound now.
    pub binds_current: u64,
    /// Successful binds since start.
    pub binds_total: u64,
    /// submit_sm received.
    pub submits: u64,
    /// Receipts sent.
    pub receipts_sent: u64,
    /// MO sent.
    pub mo_sent: u64,
}

/// A snapshot of the simulator's counters, summed over its cores. See [`CoreCounters`] for each.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[allow(missing_docs)]
pub struct SimStats {
    pub connections: u64,
    pub binds_current: u64,
    pub binds_total: u64,
    pub bind_failures: u64,
    pub submits: u64,
    pub submits_ok: u64,
    pub injected_errors: u64,
    pub throttled: u64,
    pub dropped: u64,
    pub receipts_sent: u64,
    pub receipts_dropped: u64,
    pub receipts_queued: u64,
    pub deliver_resp_ok: u64,
    pub deliver_resp_errors: u64,
    pub deliver_timeouts: u64,
    pub mo_sent: u64,
    pub enquire_links: u64,
    pub unbinds: u64,
    pub queries: u64,
    pub generic_nacks: u64,
    pub malformed: u64,
    pub disconnects_injected: u64,
    pub stalls: u64,
    pub before_resp_missed: u64,
    pub accounts: Vec<AccountStats>,
}

struct SlotData {
    account: Option<usize>,
    can_receive: bool,
    ready: VecDeque<Outbound>,
    notify: Rc<Notify>,
}

struct Slot {
    generation: u32,
    data: Option<SlotData>,
}

struct MoState {
    start: Instant,
    made: u64,
    rate_per_s: f64,
    source: PatternGen,
    dest: PatternGen,
    rr: usize,
}

/// The salt of the ids of a run seeded with `seed` (`--seed`): its 16 low bits go into every
/// id, so a test can choose a seed that gives ids of a chosen shape.
pub fn salt_of_seed(seed: u64) -> u64 {
    Rng::new(seed ^ 0x5A17_5A17).next_u64()
}

/// The counter part of an id's value (below the core's byte and the salt's 16 bits).
const ID_COUNTER_MASK: u64 = (1 << 40) - 1;

/// Most MO generated in one poll, so that a long pause does not produce an unbounded burst.
const MO_BURST_MAX: u64 = 10_000;
/// How often a core looks at its forwarded receipts and MO schedule when nothing else is due.
pub const PUMP_TICK: Duration = Duration::from_millis(5);

/// The state of one simulator core.
pub struct SimCore {
    /// The configuration.
    pub cfg: Arc<SimConfig>,
    /// What the cores share.
    pub shared: Arc<Shared>,
    /// This core's index.
    pub index: usize,
    salt: u64,
    next_id: u64,
    /// Random choices (faults, delays).
    pub rng: Rng,
    slots: Vec<Slot>,
    free: Vec<u32>,
    receivers: Vec<Vec<SessionId>>,
    rr: Vec<usize>,
    delayed: DelayQueue<Outbound>,
    queued: usize,
    wall_base: (Instant, Duration),
    mo: Option<MoState>,
    next_stall: Option<Instant>,
    /// The earliest instant the pump task sleeps to; a push before it wakes the pump.
    pump_wake_at: Option<Instant>,
    /// Wakes the core's pump task (the driver waits on it).
    pub pump: Rc<Notify>,
}

impl SimCore {
    /// Core `index`; `now` and `wall_now` (time since the Unix epoch) anchor its clocks.
    pub fn new(
        cfg: Arc<SimConfig>,
        shared: Arc<Shared>,
        index: usize,
        now: Instant,
        wall_now: Duration,
    ) -> SimCore {
        let seed = cfg.seed.unwrap_or_else(|| Rng::from_time(index as u64).next_u64());
        let rng = Rng::new(seed ^ (index as u64).wrapping_mul(0x9E37_79B9));
        // Ids: the top byte is the core, the next 16 bits the run's salt, then a counter.
        let salt = shared.salt;
        let next_id = ((index as u64 & 0xFF) << 56) | ((salt & 0xFFFF) << 40);
        let cores = cfg.cores.max(1);
        let mo = (cfg.mo.rate_per_s > 0.0).then(|| MoState {
            start: now,
            made: 0,
            rate_per_s: cfg.mo.rate_per_s / cores as f64,
            source: cfg.mo.source.instance(index, cores),
            dest: cfg.mo.dest.instance(index, cores),
            rr: 0,
        });
        let next_stall = cfg.faults.stall.map(|s| now + s.every);
        let accounts = cfg.accounts.len();
        SimCore {
            salt,
            next_id,
            rng,
            slots: Vec::new(),
            free: Vec::new(),
            receivers: vec![Vec::new(); accounts],
            rr: vec![0; accounts],
            delayed: DelayQueue::default(),
            queued: 0,
            wall_base: (now, wall_now),
            mo,
            next_stall,
            pump_wake_at: None,
            pump: Rc::new(Notify::default()),
            cfg,
            shared,
            index,
        }
    }

    /// This core's counters.
    #[inline]
    pub fn counters(&self) -> &CoreCounters {
        &self.shared.cores[self.index]
    }

    /// Unix seconds at `now`.
    pub fn unix_secs(&self, now: Instant) -> u64 {
        (self.wall_base.1 + now.saturating_duration_since(self.wall_base.0)).as_secs()
    }

    /// The salt of this run's UUID-style ids.
    pub fn salt(&self) -> u64 {
        self.salt
    }

    /// A new connection; `notify` wakes its driver.
    pub fn open_session(&mut self, notify: Rc<Notify>) -> SessionId {
        bump(&self.counters().connections, 1);
        let data = SlotData { account: None, can_receive: false, ready: VecDeque::new(), notify };
        match self.free.pop() {
            Some(idx) => {
                let slot = &mut self.slots[idx as usize];
                slot.generation = slot.generation.wrapping_add(1);
                slot.data = Some(data);
                SessionId { idx, generation: slot.generation }
            }
            None => {
                self.slots.push(Slot { generation: 0, data: Some(data) });
                SessionId { idx: (self.slots.len() - 1) as u32, generation: 0 }
            }
        }
    }

    fn slot(&mut self, id: SessionId) -> Option<&mut SlotData> {
        self.slots
            .get_mut(id.idx as usize)
            .filter(|s| s.generation == id.generation)
            .and_then(|s| s.data.as_mut())
    }

    /// Checks credentials: the account's index, or the status to refuse with.
    pub fn check_bind(&self, system_id: &[u8], password: &[u8]) -> Result<usize, CommandStatus> {
        let Some(i) = self.cfg.accounts.iter().position(|a| a.system_id.as_bytes() == system_id) else {
            return Err(CommandStatus::ESME_RINVSYSID);
        };
        if self.cfg.accounts[i].password.as_bytes() != password {
            return Err(CommandStatus::ESME_RINVPASWD);
        }
        if let Some(max) = self.cfg.faults.max_binds {
            let bound: u64 = self.shared.cores.iter().map(|c| get(&c.accounts[i].binds_current)).sum();
            if bound >= u64::from(max) {
                return Err(CommandStatus::ESME_RBINDFAIL);
            }
        }
        Ok(i)
    }

    /// A session bound successfully.
    pub fn bound(&mut self, id: SessionId, account: usize, kind: BindKind) {
        let cores = self.cfg.cores.max(1);
        let core = self.index;
        let Some(s) = self.slot(id) else { return };
        s.account = Some(account);
        s.can_receive = kind.can_receive();
        if kind.can_receive() {
            self.receivers[account].push(id);
            self.shared.receivers[account * cores + core].fetch_add(1, Ordering::Relaxed);
        }
        let c = &self.counters().accounts[account];
        bump(&c.binds_current, 1);
        bump(&c.binds_total, 1);
    }

    /// A session ended: unregister it and re-route what was waiting for it.
    pub fn close_session(&mut self, id: SessionId) {
        let cores = self.cfg.cores.max(1);
        let core = self.index;
        let Some(slot) = self.slots.get_mut(id.idx as usize).filter(|s| s.generation == id.generation) else {
            return;
        };
        let Some(data) = slot.data.take() else { return };
        self.free.push(id.idx);
        if let Some(account) = data.account {
            let c = &self.shared.cores[core].accounts[account];
            set(&c.binds_current, get(&c.binds_current).saturating_sub(1));
            if data.can_receive {
                self.receivers[account].retain(|r| *r != id);
                self.shared.receivers[account * cores + core].fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.queued -= data.ready.len().min(self.queued);
        for mut o in data.ready {
            o.origin = None;
            self.route(o);
        }
        self.publish_queued();
    }

    /// A new message id: its value (see [`SimCore::final_state`]) and its text.
    #[inline]
    pub fn new_message_id(&mut self) -> (u64, IdText) {
        self.next_id += 1;
        bump(&self.counters().ids_issued, 1);
        (self.next_id, format_id(self.cfg.id_format, self.salt, self.next_id))
    }

    /// The value of an id a peer quotes (any case, leading zeros for decimal ids), if it is one
    /// this run gave: from a core of the run, with the run's salt, counter not past what that
    /// core has given.
    pub fn issued_id(&self, text: &[u8]) -> Option<u64> {
        let v = parse_id(self.cfg.id_format, self.salt, text)?;
        let (core, salt, n) = ((v >> 56) as usize, (v >> 40) & 0xFFFF, v & ID_COUNTER_MASK);
        let given = get(&self.shared.cores.get(core)?.ids_issued);
        (salt == self.salt & 0xFFFF && n >= 1 && n <= given).then_some(v)
    }

    /// The final state of a message, a function of its id's value (not of its spelling) so that
    /// query_sm agrees with the receipt however the id is quoted.
    #[inline]
    pub fn final_state(&self, id: u64) -> MessageState {
        self.cfg.receipts.mix.pick(mix64(id))
    }

    /// Whether the receipt queue has room for one more.
    #[inline]
    pub fn has_room(&self) -> bool {
        self.queued < self.cfg.receipt_queue_max
    }

    /// Queues a receipt or MO for `due`. Overflow policy: when the core already holds
    /// `receipt_queue_max`, the new one is dropped and counted in `receipts_dropped`.
    pub fn enqueue(&mut self, o: Outbound, due: Instant, now: Instant) {
        if !self.has_room() {
            bump(&self.counters().receipts_dropped, 1);
            return;
        }
        if due <= now {
            self.route(o);
        } else {
            self.queued += 1;
            if self.pump_wake_at.is_none_or(|w| due < w) {
                self.pump_wake_at = Some(due);
                self.pump.notify();
            }
            self.delayed.push(due, o);
        }
        self.publish_queued();
    }

    fn publish_queued(&self) {
        set(&self.counters().receipts_queued, self.queued as u64);
    }

    /// Puts `o` in the ready queue of its receiver: the originating session if it can receive,
    /// else the next receiver of the account on this core, else another core's, else drops it.
    fn route(&mut self, o: Outbound) {
        let account = usize::from(o.account);
        let target = match o.origin {
            Some(origin) if self.slot(origin).is_some_and(|s| s.can_receive) => Some(origin),
            _ => {
                let list = &self.receivers[account];
                if list.is_empty() {
                    None
                } else {
                    let i = self.rr[account] % list.len();
                    self.rr[account] = i + 1;
                    Some(list[i])
                }
            }
        };
        match target.and_then(|t| self.slots.get_mut(t.idx as usize)).and_then(|s| s.data.as_mut()) {
            Some(s) => {
                s.ready.push_back(o);
                s.notify.notify();
                self.queued += 1;
            }
            None => self.forward(o),
        }
    }

    fn forward(&mut self, mut o: Outbound) {
        // A session id means something on its own core only: on another, the same slot number
        // is another session, perhaps of another account.
        o.origin = None;
        let cores = self.cfg.cores.max(1);
        let account = usize::from(o.account);
        let other = (1..cores)
            .map(|k| (self.index + k) % cores)
            .find(|&c| self.shared.receivers[account * cores + c].load(Ordering::Relaxed) > 0);
        match other {
            Some(c) => match self.shared.forward_tx[c].try_send(o) {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    bump(&self.counters().receipts_dropped, 1);
                }
            },
            None => bump(&self.counters().receipts_dropped, 1),
        }
    }

    /// Takes the next deliver_sm waiting for session `id`.
    #[inline]
    pub fn take_ready(&mut self, id: SessionId) -> Option<Outbound> {
        let o = self.slot(id)?.ready.pop_front()?;
        self.queued -= 1;
        Some(o)
    }

    /// Whether anything waits for session `id`.
    #[inline]
    pub fn has_ready(&mut self, id: SessionId) -> bool {
        self.slot(id).is_some_and(|s| !s.ready.is_empty())
    }

    /// Records a cancel_sm or replace_sm (record mode), dropping the oldest when the record is full.
    pub fn record_op(
        &self,
        system_id: usize,
        command_id: smppgw_codec::CommandId,
        message_id: &[u8],
        short_message: &[u8],
        status: CommandStatus,
    ) {
        let Some((tx, rx)) = &self.shared.ops_record else { return };
        let item = RecordedOp {
            system_id: self.cfg.accounts.get(system_id).map(|a| a.system_id.clone()).unwrap_or_default(),
            command_id,
            message_id: String::from_utf8_lossy(message_id).into_owned(),
            short_message: bytes::Bytes::copy_from_slice(short_message),
            status,
        };
        push_dropping_oldest(tx, rx, item);
    }

    /// Records a submit (record mode), dropping the oldest when the record is full.
    pub fn record(&self, system_id: usize, message_id: &[u8], status: CommandStatus, pdu: &SubmitSm) {
        let Some((tx, rx)) = &self.shared.record else { return };
        // A copy in a buffer of its own, so that the record does not pin read buffers.
        let own = smppgw_codec::Pdu::new(1, smppgw_codec::Body::SubmitSm(pdu.clone())).to_bytes();
        let mut b = bytes::BytesMut::from(&own[..]);
        let Ok(Some(smppgw_codec::Pdu { body: smppgw_codec::Body::SubmitSm(copy), .. })) =
            smppgw_codec::Decoder::default().decode(&mut b)
        else {
            return;
        };
        let item = RecordedSubmit {
            system_id: self.cfg.accounts.get(system_id).map(|a| a.system_id.clone()).unwrap_or_default(),
            message_id: String::from_utf8_lossy(message_id).into_owned(),
            status,
            pdu: copy,
        };
        push_dropping_oldest(tx, rx, item);
    }

    /// Moves due receipts to their sessions, takes forwarded ones, makes due MO; returns when it
    /// wants to be called again.
    pub fn poll(&mut self, now: Instant) -> Instant {
        while let Some(o) = self.delayed.pop_due(now) {
            self.queued -= 1;
            self.route(o);
        }
        let rx = self.shared.forward_rx[self.index].clone();
        for o in rx.try_iter().take(SIM_FORWARD_CHANNEL) {
            if self.has_room() {
                self.route(o);
            } else {
                bump(&self.counters().receipts_dropped, 1);
            }
        }
        let mut next = now + PUMP_TICK;
        if let Some(mo_due) = self.make_mo(now) {
            next = next.min(mo_due);
        }
        if let Some(d) = self.delayed.next_due() {
            next = next.min(d);
        }
        if let Some(s) = self.next_stall {
            next = next.min(s);
        }
        self.publish_queued();
        self.pump_wake_at = Some(next);
        next
    }

    fn make_mo(&mut self, now: Instant) -> Option<Instant> {
        let mut mo = self.mo.take()?;
        let elapsed = now.saturating_duration_since(mo.start).as_secs_f64();
        let target = (elapsed * mo.rate_per_s) as u64;
        let mut todo = target.saturating_sub(mo.made).min(MO_BURST_MAX);
        mo.made = mo.made.max(target.saturating_sub(MO_BURST_MAX));
        while todo > 0 {
            todo -= 1;
            mo.made += 1;
            // Round-robin over every receiver of every account.
            let total: usize = self.receivers.iter().map(Vec::len).sum();
            if total == 0 {
                continue;
            }
            let mut k = mo.rr % total;
            mo.rr = mo.rr.wrapping_add(1);
            let mut target = None;
            for (a, list) in self.receivers.iter().enumerate() {
                if k < list.len() {
                    target = Some((a, list[k]));
                    break;
                }
                k -= list.len();
            }
            let Some((account, sid)) = target else { continue };
            let (mut s, mut d) = ([0u8; 20], [0u8; 20]);
            let (sw, dw) = (mo.source.width(), mo.dest.width());
            mo.source.fill(&mut self.rng, &mut s[..sw]);
            mo.dest.fill(&mut self.rng, &mut d[..dw]);
            let o = Outbound {
                kind: OutKind::Mo { source: Addr::new(1, 1, &s[..sw]), dest: Addr::new(0, 0, &d[..dw]) },
                account: account as u16,
                origin: Some(sid),
            };
            if self.has_room() {
                self.route(o);
            } else {
                bump(&self.counters().receipts_dropped, 1);
            }
        }
        let next = mo.start + Duration::from_secs_f64((mo.made + 1) as f64 / mo.rate_per_s);
        self.mo = Some(mo);
        Some(next)
    }

    /// If a stall is due at `now`, how long to stall (the caller blocks the whole core).
    pub fn stall_due(&mut self, now: Instant) -> Option<Duration> {
        let stall = self.cfg.faults.stall?;
        let at = self.next_stall?;
        if now < at {
            return None;
        }
        self.next_stall = Some(at + stall.every);
        bump(&self.counters().stalls, 1);
        Some(stall.length)
    }

    /// Every session's notify, to wake them all (stop).
    pub fn notify_all(&self) {
        for s in self.slots.iter().filter_map(|s| s.data.as_ref()) {
            s.notify.notify();
        }
    }

    /// Sessions open.
    pub fn sessions(&self) -> usize {
        self.slots.iter().filter(|s| s.data.is_some()).count()
    }
}

/// Puts `item` in a bounded record, dropping the oldest entry when it is full.
fn push_dropping_oldest<T>(tx: &Sender<T>, rx: &Receiver<T>, mut item: T) {
    loop {
        match tx.try_send(item) {
            Ok(()) => return,
            Err(TrySendError::Full(back)) => {
                item = back;
                let _ = rx.try_recv();
            }
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}
