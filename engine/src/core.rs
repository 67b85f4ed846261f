//! One core's share of the gateway: its sessions, its vendor binds, and the routing of submits to
//! a vendor bind on this core or, through a bounded channel, on another.
//!
//! Everything here is owned by one glommio executor (`Rc`, `RefCell`, `Cell`): the hot path takes
//! no lock. Other cores are reached only through [`Outbox`]es that feed bounded shared channels.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use smppgw_codec::{CommandStatus, SubmitSm};

use crate::mailbox::Mailbox;
use crate::metrics::Metrics;
use crate::msgid::IdGen;
use crate::snapshot::{BindSlot, Snapshot};

/// Where a submit's answer goes: a customer session on some core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyTo {
    /// Core of the customer session.
    pub core: u16,
    /// Session slot on that core.
    pub session: u32,
    /// Generation of the slot, so a reused slot never gets an old answer.
    pub generation: u32,
    /// The customer's sequence number.
    pub seq: u32,
}

/// Most vendors one message may be offered to (failover depth).
pub const FAILOVER_MAX: usize = 8;

/// A submit on its way to a vendor.
#[derive(Debug)]
pub struct Job {
    /// Our message id.
    pub msg_id: u64,
    /// Where the answer goes.
    pub reply: ReplyTo,
    /// Customer index.
    pub customer: u32,
    /// Answer with data_sm_resp instead of submit_sm_resp.
    pub data_sm: bool,
    /// The message as it goes to the vendor.
    pub submit: SubmitSm,
    /// Route index.
    pub route: u32,
    /// Vendors already tried.
    pub tried: [u32; FAILOVER_MAX],
    /// How many of `tried` are set.
    pub tried_len: u8,
    /// The last temporary failure, answered if no vendor is left.
    pub last_status: Option<CommandStatus>,
    /// When the customer's submit arrived.
    pub received: Instant,
}

impl Job {
    fn has_tried(&self, vendor: u32) -> bool {
        self.tried[..usize::from(self.tried_len)].contains(&vendor)
    }

    /// Marks `vendor` as tried; returns false when the failover depth is used up.
    pub fn mark_tried(&mut self, vendor: u32) -> bool {
        if usize::from(self.tried_len) >= FAILOVER_MAX {
            return false;
        }
        self.tried[usize::from(self.tried_len)] = vendor;
        self.tried_len += 1;
        true
    }
}

/// What moves between cores.
#[derive(Debug)]
pub enum CoreMsg {
    /// Run this job on vendor slot (vendor, slot), owned by the receiving core.
    Job {
        /// Vendor index.
        vendor: u32,
        /// Slot index.
        slot: u32,
        /// The job.
        job: Job,
    },
    /// A submit finished: answer the customer.
    Done {
        /// Where.
        reply: ReplyTo,
        /// data_sm_resp or submit_sm_resp.
        data_sm: bool,
        /// Our id or the status.
        result: Result<u64, CommandStatus>,
    },
}

/// What a customer session's task receives.
#[derive(Debug)]
pub enum SessionMsg {
    /// One of its submits finished.
    Done {
        /// The customer's sequence number.
        seq: u32,
        /// data_sm or submit_sm.
        data_sm: bool,
        /// Our id or the status.
        result: Result<u64, CommandStatus>,
    },
    /// The gateway is shutting down.
    Shutdown,
}

/// What a vendor bind's task receives.
#[derive(Debug)]
pub enum VendorMsg {
    /// Send this.
    Job(Job),
    /// The gateway is shutting down.
    Shutdown,
}

/// Messages waiting for the channel to another core. Bounded by everything in flight, which the
/// windows bound; the pump task awaits channel space, so nothing is dropped.
pub type Outbox = Mailbox<CoreMsg>;

struct SessionEntry {
    generation: u32,
    mailbox: Rc<Mailbox<SessionMsg>>,
}

/// The state of one core.
pub struct Core {
    /// This core's index.
    pub idx: usize,
    snapshot: RefCell<Arc<Snapshot>>,
    ids: RefCell<IdGen>,
    sessions: RefCell<Vec<Option<SessionEntry>>>,
    free: RefCell<Vec<u32>>,
    generation: Cell<u32>,
    vendor_binds: RefCell<HashMap<(u32, u32), Rc<Mailbox<VendorMsg>>>>,
    /// One outbox per core (None for this core).
    pub outboxes: Vec<Option<Rc<Outbox>>>,
    rng: Cell<u64>,
    /// Shared counters.
    pub metrics: Arc<Metrics>,
    /// Set when shutdown began.
    pub shutting_down: Cell<bool>,
    /// Unknown-outcome policy: fail over (true) or answer ESME_RSUBMITFAIL (false).
    pub failover_on_unknown: bool,
}

/// Outbox length above which another core is treated as congested for new jobs.
const OUTBOX_CONGESTED: usize = crate::limits::CROSS_CORE_CHANNEL_CAPACITY;

impl Core {
    /// A core with its outboxes to the other cores.
    pub fn new(idx: usize, snapshot: Arc<Snapshot>, outboxes: Vec<Option<Rc<Outbox>>>, metrics: Arc<Metrics>) -> Core {
        let node = snapshot.config.server.node_id as u8;
        let failover_on_unknown = snapshot.config.server.unknown_outcome_failover;
        Core {
            idx,
            snapshot: RefCell::new(snapshot),
            ids: RefCell::new(IdGen::new(node, idx)),
            sessions: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
            generation: Cell::new(1),
            vendor_binds: RefCell::new(HashMap::new()),
            outboxes,
            rng: Cell::new(0x9E37_79B9_7F4A_7C15 ^ (idx as u64 + 1)),
            metrics,
            shutting_down: Cell::new(false),
            failover_on_unknown,
        }
    }

    /// The current config snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// A new message id.
    pub fn next_msg_id(&self) -> u64 {
        self.ids.borrow_mut().next_id()
    }

    /// Keeps message ids tied to the clock (from a periodic timer).
    pub fn catch_up_ids(&self) {
        self.ids.borrow_mut().catch_up();
    }

    fn next_rand(&self) -> u64 {
        // xorshift64*: weights need spread, not secrecy.
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Registers a customer session; returns its slot and generation.
    pub fn add_session(&self, mailbox: Rc<Mailbox<SessionMsg>>) -> (u32, u32) {
        let generation = self.generation.get().wrapping_add(1).max(1);
        self.generation.set(generation);
        let entry = SessionEntry { generation, mailbox };
        let mut sessions = self.sessions.borrow_mut();
        let slot = match self.free.borrow_mut().pop() {
            Some(s) => {
                sessions[s as usize] = Some(entry);
                s
            }
            None => {
                sessions.push(Some(entry));
                (sessions.len() - 1) as u32
            }
        };
        (slot, generation)
    }

    /// Removes a session.
    pub fn remove_session(&self, slot: u32) {
        if let Some(e) = self.sessions.borrow_mut().get_mut(slot as usize) {
            *e = None;
            self.free.borrow_mut().push(slot);
        }
    }

    /// Every session's mailbox (for shutdown).
    pub fn session_mailboxes(&self) -> Vec<Rc<Mailbox<SessionMsg>>> {
        self.sessions.borrow().iter().flatten().map(|e| e.mailbox.clone()).collect()
    }

    /// Number of sessions on this core.
    pub fn session_count(&self) -> usize {
        self.sessions.borrow().iter().flatten().count()
    }

    /// Registers the mailbox of a local vendor bind slot.
    pub fn add_vendor_bind(&self, vendor: u32, slot: u32, mailbox: Rc<Mailbox<VendorMsg>>) {
        self.vendor_binds.borrow_mut().insert((vendor, slot), mailbox);
    }

    /// Mailboxes of the local vendor binds (for shutdown).
    pub fn vendor_mailboxes(&self) -> Vec<Rc<Mailbox<VendorMsg>>> {
        self.vendor_binds.borrow().values().cloned().collect()
    }

    /// Routes a new submit: picks its route and hands it to a vendor.
    pub fn submit(&self, mut job: Job) {
        let snap = self.snapshot();
        match snap.routes.lookup(job.customer, &job.submit.source.addr, &job.submit.dest.addr) {
            Some((route, _)) => {
                job.route = route;
                self.dispatch(job);
            }
            None => {
                self.metrics.no_route.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(dest = ?job.submit.dest.addr, "no route");
                // Documented: no route for the destination is ESME_RINVDSTADR.
                self.finish(&job, Err(CommandStatus::ESME_RINVDSTADR));
            }
        }
    }

    /// Offers a job to the next vendor of its route that can take it, here or on another core;
    /// answers the customer when none can.
    pub fn dispatch(&self, mut job: Job) {
        let snap = self.snapshot();
        let Some(route) = snap.routes.routes.get(job.route as usize) else {
            return self.finish(&job, Err(CommandStatus::ESME_RSYSERR));
        };
        let mut any_up = false;
        for group in &route.groups {
            // Weighted order within an equal-priority group: start at a weighted random member.
            let total: u64 = group.iter().map(|&(_, w)| u64::from(w)).sum();
            let mut pick = if total > 0 { self.next_rand() % total } else { 0 };
            let mut start = 0;
            for (i, &(_, w)) in group.iter().enumerate() {
                if pick < u64::from(w) {
                    start = i;
                    break;
                }
                pick -= u64::from(w);
            }
            for k in 0..group.len() {
                let (v, _) = group[(start + k) % group.len()];
                if job.has_tried(v) {
                    continue;
                }
                let Some(vendor) = snap.vendors.get(v as usize) else { continue };
                if vendor.slots.iter().any(|s| s.up.load(Ordering::Relaxed)) {
                    any_up = true;
                }
                match self.offer(&vendor.slots, job) {
                    Ok(()) => return,
                    Err(j) => job = j,
                }
            }
        }
        let status = job.last_status.unwrap_or(if any_up {
            // Every bind is up but full: slow down and retry.
            CommandStatus::ESME_RTHROTTLED
        } else {
            // No vendor of the route is bound.
            CommandStatus::ESME_RSYSERR
        });
        self.metrics.no_vendor.fetch_add(1, Ordering::Relaxed);
        self.finish(&job, Err(status));
    }

    /// Hands the job to the least loaded available slot, preferring this core's.
    fn offer(&self, slots: &[Arc<BindSlot>], job: Job) -> Result<(), Job> {
        let mut best: Option<&Arc<BindSlot>> = None;
        for s in slots.iter().filter(|s| s.available()) {
            let better = match best {
                None => true,
                Some(b) => {
                    let (local, blocal) = (s.core == self.idx, b.core == self.idx);
                    (local && !blocal)
                        || (local == blocal && s.load.load(Ordering::Relaxed) < b.load.load(Ordering::Relaxed))
                }
            };
            if better {
                best = Some(s);
            }
        }
        let Some(slot) = best else { return Err(job) };
        if slot.core == self.idx {
            let mb = self.vendor_binds.borrow().get(&(slot.vendor, slot.slot)).cloned();
            let Some(mb) = mb else { return Err(job) };
            slot.load.fetch_add(1, Ordering::Relaxed);
            mb.push(VendorMsg::Job(job)).map_err(|m| {
                slot.load.fetch_sub(1, Ordering::Relaxed);
                match m {
                    VendorMsg::Job(j) => j,
                    VendorMsg::Shutdown => unreachable_job(),
                }
            })
        } else {
            let Some(Some(outbox)) = self.outboxes.get(slot.core) else { return Err(job) };
            if outbox.len() >= OUTBOX_CONGESTED {
                return Err(job);
            }
            slot.load.fetch_add(1, Ordering::Relaxed);
            outbox.push(CoreMsg::Job { vendor: slot.vendor, slot: slot.slot, job }).map_err(|m| {
                slot.load.fetch_sub(1, Ordering::Relaxed);
                match m {
                    CoreMsg::Job { job, .. } => job,
                    CoreMsg::Done { .. } => unreachable_job(),
                }
            })
        }
    }

    /// A job arrived from another core for one of our vendor slots.
    pub fn accept_remote_job(&self, vendor: u32, slot: u32, job: Job) {
        let mb = self.vendor_binds.borrow().get(&(vendor, slot)).cloned();
        let snap = self.snapshot();
        let slot_rt = snap.vendors.get(vendor as usize).and_then(|v| v.slots.get(slot as usize)).cloned();
        match (mb, slot_rt) {
            (Some(mb), Some(_)) => {
                if let Err(VendorMsg::Job(job)) = mb.push(VendorMsg::Job(job)) {
                    if let Some(s) = &snap.vendors[vendor as usize].slots.get(slot as usize) {
                        s.load.fetch_sub(1, Ordering::Relaxed);
                    }
                    self.dispatch(job);
                }
            }
            (_, slot_rt) => {
                if let Some(s) = slot_rt {
                    s.load.fetch_sub(1, Ordering::Relaxed);
                }
                self.dispatch(job);
            }
        }
    }

    /// Answers the customer of `job`, on whichever core its session lives.
    pub fn finish(&self, job: &Job, result: Result<u64, CommandStatus>) {
        match &result {
            Ok(_) => self.metrics.accepted.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.metrics.refused.fetch_add(1, Ordering::Relaxed),
        };
        self.metrics.observe_submit(job.received.elapsed());
        self.deliver_done(job.reply, job.data_sm, result);
    }

    /// Delivers a submit answer to a session here, or sends it to its core.
    pub fn deliver_done(&self, reply: ReplyTo, data_sm: bool, result: Result<u64, CommandStatus>) {
        if usize::from(reply.core) != self.idx {
            if let Some(Some(outbox)) = self.outboxes.get(usize::from(reply.core)) {
                // The outbox is bounded by the windows in flight; see `Outbox`.
                if outbox.push(CoreMsg::Done { reply, data_sm, result }).is_err() {
                    self.metrics.lost_answers.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(core = reply.core, "outbox to core is full: answer lost");
                }
            }
            return;
        }
        let mb = {
            let sessions = self.sessions.borrow();
            match sessions.get(reply.session as usize) {
                Some(Some(e)) if e.generation == reply.generation => Some(e.mailbox.clone()),
                _ => None,
            }
        };
        match mb {
            Some(mb) => {
                if mb.push(SessionMsg::Done { seq: reply.seq, data_sm, result }).is_err() {
                    self.metrics.lost_answers.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                // The customer disconnected before its answer: the message went to the vendor
                // (its receipt will still find the customer), only the id cannot be given.
                self.metrics.orphan_answers.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Handles a message from another core.
    pub fn on_core_msg(&self, msg: CoreMsg) {
        match msg {
            CoreMsg::Job { vendor, slot, job } => self.accept_remote_job(vendor, slot, job),
            CoreMsg::Done { reply, data_sm, result } => self.deliver_done(reply, data_sm, result),
        }
    }
}

fn unreachable_job() -> Job {
    // Only jobs are pushed where these conversions run; a job is returned in every branch above.
    // Kept as a function so the impossible branch does not panic the core.
    Job {
        msg_id: 0,
        reply: ReplyTo { core: 0, session: u32::MAX, generation: 0, seq: 0 },
        customer: 0,
        data_sm: false,
        submit: SubmitSm::default(),
        route: 0,
        tried: [0; FAILOVER_MAX],
        tried_len: 0,
        last_status: None,
        received: Instant::now(),
    }
}
