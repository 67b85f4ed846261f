//! Receipts and MO on their way to customers. Each customer has a home core (its index modulo
//! the cores) that owns its queue: an ordered, bounded queue of deliveries, the customer's
//! receiving sessions on every core, and how many deliver_sm each has outstanding. Sans-IO: the
//! driver moves what [`Dispatcher::next`] hands out to the chosen session and reports the answer
//! back with [`Dispatcher::ack`].
//!
//! Overflow policy: when a customer's queue is full (`receipt_queue_max` while it has no receiving
//! bind, [`BOUND_QUEUE_FACTOR`] times that while one is draining it), the oldest queued delivery
//! (with none queued, the retry due soonest) is dropped and counted
//! (`smppgw_deliveries_dropped_total`): the newest receipts are the ones a customer still acts on. Deliveries that never reached the customer (its session closing) go
//! back ahead of everything queued after them, in the order they first came. Deliveries the
//! customer refused (an error deliver_sm_resp or generic_nack) or did not answer in time wait
//! before they go again ([`retry_delay`]: 0.5 s doubling up to 30 s), while the rest of the
//! queue flows; a throttling answer (ESME_RTHROTTLED, ESME_RMSGQFUL) also pauses the customer's
//! whole queue for that delay. After [`DELIVERY_ATTEMPTS_MAX`] attempts (about two minutes of
//! refusals), or at once for a permanent refusal (ESME_RX_P_APPN, ESME_RX_R_APPN), a delivery is
//! given up and counted.

use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::hash::FxHashMap as HashMap;

use smppgw_codec::SubmitSm;

/// deliver_sm outstanding per receiving session.
pub const SESSION_DELIVERY_WINDOW: u32 = 64;
/// Attempts before a delivery is given up (the customer refuses it every time).
pub const DELIVERY_ATTEMPTS_MAX: u8 = 10;
/// The wait before a refused delivery's first retry; each further refusal doubles it.
pub const RETRY_BASE_MS: u64 = 500;
/// The longest wait between two attempts of one delivery.
pub const RETRY_MAX_MS: u64 = 30_000;

/// The wait before attempt `attempts + 1` of a delivery refused `attempts` times (at least 1).
pub fn retry_delay(attempts: u8) -> Duration {
    let shift = u32::from(attempts.saturating_sub(1)).min(16);
    Duration::from_millis((RETRY_BASE_MS << shift).min(RETRY_MAX_MS))
}

/// How a delivery handed to a customer session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// deliver_sm_resp (or data_sm_resp) with ESME_ROK.
    Ok,
    /// An error status, a generic_nack or no answer in time: tried again after a delay.
    Failed,
    /// ESME_RTHROTTLED or ESME_RMSGQFUL: tried again after a delay, and the customer's queue
    /// waits that long too.
    Throttled,
    /// ESME_RX_P_APPN or ESME_RX_R_APPN: the customer will never take it; given up at once.
    Rejected,
    /// It never reached the customer (its session was closing or could not take it): queued
    /// again at once, no attempt counted.
    NotSent,
}

impl Answer {
    /// The answer a deliver_sm_resp / data_sm_resp status means.
    pub fn from_status(st: smppgw_codec::CommandStatus) -> Answer {
        use smppgw_codec::CommandStatus as S;
        match st {
            S::ESME_ROK => Answer::Ok,
            S::ESME_RTHROTTLED | S::ESME_RMSGQFUL => Answer::Throttled,
            S::ESME_RX_P_APPN | S::ESME_RX_R_APPN => Answer::Rejected,
            _ => Answer::Failed,
        }
    }
}

/// While the customer has a receiving bind its queue is draining, so it may hold this many times
/// `receipt_queue_max` before the overflow policy applies: a burst of receipts faster than the
/// customer answers them is absorbed, not dropped. Still a bound.
pub const BOUND_QUEUE_FACTOR: usize = 8;

/// Answers in a row other than ESME_ROK (errors, throttling, timeouts) after which a customer's
/// receiving binds no longer count as draining its queue: a bind that never accepts a delivery
/// does not hold [`BOUND_QUEUE_FACTOR`] times the bound (800,000 deliveries by default) on the
/// node. Its first ESME_ROK makes it count again.
pub const DRAINING_REFUSALS_MAX: u32 = 256;

/// A customer session somewhere in the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionRef {
    /// Its core.
    pub core: u16,
    /// Its slot on that core.
    pub session: u32,
    /// The slot's generation.
    pub generation: u32,
}

/// What is delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A delivery receipt.
    Receipt,
    /// A mobile-originated message.
    Mo,
}

/// One receipt or MO for a customer.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Customer index.
    pub customer: u32,
    /// Home-core token, unique while in flight.
    pub token: u64,
    /// Receipt or MO.
    pub kind: Kind,
    /// The deliver_sm body as it goes to the customer.
    pub body: SubmitSm,
    /// Attempts so far.
    pub attempts: u8,
}

#[derive(Debug, Default)]
struct CustomerQueue {
    /// Pointers, not bodies: a queue of hundreds of thousands of receipts grows (and is moved
    /// through) at 8 octets an entry, not at a deliver_sm body's 250 or so.
    queue: VecDeque<Arc<Delivery>>,
    sessions: Vec<(SessionRef, u32)>,
    next: usize,
    /// Shared with the message that carries it to its session: a retry needs it back, and a
    /// pointer moves through the tables and channels instead of the whole body.
    inflight: HashMap<u64, (SessionRef, Arc<Delivery>)>,
    /// Refused deliveries waiting for their retry time, soonest first. Counted with `queue`
    /// against the customer's bound.
    waiting: BinaryHeap<Waiting>,
    /// The customer throttled us: nothing goes to it before this.
    paused_until: Option<Instant>,
    /// Answers other than ESME_ROK since its last ESME_ROK ([`DRAINING_REFUSALS_MAX`]).
    refusals_in_row: u32,
}

impl CustomerQueue {
    /// Hands out what can go at `now`, each with the session to send it on, in queue order.
    fn next(&mut self, now: Instant, out: &mut Vec<(SessionRef, Arc<Delivery>)>) {
        if !self.waiting.is_empty() {
            self.release_due(Some(now));
        }
        if self.paused_until.is_some_and(|t| t > now) {
            return;
        }
        self.paused_until = None;
        while !self.queue.is_empty() && !self.sessions.is_empty() {
            // Round robin over sessions with room.
            let n = self.sessions.len();
            let Some(i) =
                (0..n).map(|k| (self.next + k) % n).find(|&i| self.sessions[i].1 < SESSION_DELIVERY_WINDOW)
            else {
                break;
            };
            self.next = (i + 1) % n;
            let Some(d) = self.queue.pop_front() else { break };
            self.sessions[i].1 += 1;
            let s = self.sessions[i].0;
            self.inflight.insert(d.token, (s, d.clone()));
            out.push((s, d));
        }
    }

    /// A delivery that went out and came back (refused, timed out, its session gone) goes out
    /// again before everything queued after it, and in the order it first came among the others
    /// that came back. Tokens grow with each new delivery and every queued delivery came in
    /// through [`Dispatcher::push`] or here, so the queue is in token order and this is its place
    /// (at or near the front: whatever was queued when it went out is newer).
    fn requeue(&mut self, d: Arc<Delivery>) {
        let at = self.queue.partition_point(|x| x.token < d.token);
        self.queue.insert(at, d);
    }

    /// Retries whose time has come (all of them with `now` = `None`) rejoin the queue. Each goes
    /// near its front (it is older than most of what is queued), where inserting moves little.
    fn release_due(&mut self, now: Option<Instant>) {
        if now.is_none() {
            self.paused_until = None;
        }
        while self.waiting.peek().is_some_and(|w| now.is_none_or(|t| w.at <= t)) {
            if let Some(w) = self.waiting.pop() {
                self.requeue(w.delivery);
            }
        }
    }

    /// How many it may hold: `queue_max` while it has no receiving session, more while one
    /// drains it ([`BOUND_QUEUE_FACTOR`]; not once its sessions refuse everything,
    /// [`DRAINING_REFUSALS_MAX`]).
    fn cap(&self, queue_max: usize) -> usize {
        if self.sessions.is_empty() || self.refusals_in_row >= DRAINING_REFUSALS_MAX {
            queue_max
        } else {
            queue_max * BOUND_QUEUE_FACTOR
        }
    }

    fn held(&self) -> usize {
        self.queue.len() + self.waiting.len()
    }

    /// Drops the oldest queued delivery or, with none queued, the retry due soonest, to make
    /// room.
    fn drop_oldest(&mut self) -> bool {
        self.queue.pop_front().is_some() || self.waiting.pop().is_some()
    }
}

/// A refused delivery and when it may go again; the heap's top is the soonest (then the oldest).
#[derive(Debug)]
struct Waiting {
    at: Instant,
    delivery: Arc<Delivery>,
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Waiting {}

impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Reversed: BinaryHeap is a max-heap.
        (other.at, other.delivery.token).cmp(&(self.at, self.delivery.token))
    }
}

/// The home-core side of every customer homed on this core.
#[derive(Debug)]
pub struct Dispatcher {
    customers: HashMap<u32, CustomerQueue>,
    queue_max: usize,
    next_token: u64,
    /// Deliveries dropped by the overflow policy.
    pub dropped: u64,
    /// Deliveries given up after [`DELIVERY_ATTEMPTS_MAX`].
    pub given_up: u64,
}

impl Dispatcher {
    /// A dispatcher whose per-customer queues hold at most `queue_max`.
    pub fn new(queue_max: usize, core: usize) -> Dispatcher {
        Dispatcher {
            customers: HashMap::default(),
            queue_max: queue_max.max(1),
            next_token: (core as u64) << 56,
            dropped: 0,
            given_up: 0,
        }
    }

    /// A new bound for each customer's queue (a reload); a longer queue sheds its oldest as
    /// deliveries arrive.
    pub fn set_queue_max(&mut self, queue_max: usize) {
        self.queue_max = queue_max.max(1);
    }

    /// Queues a delivery (a new one gets a token). It arrives shared, as it crossed the cores,
    /// and stays so until the customer answers it: nothing copies the body on the way.
    pub fn push(&mut self, mut d: Arc<Delivery>) {
        if d.token == 0 {
            self.next_token += 1;
            // A new delivery has no other owner yet, so this does not copy it.
            Arc::make_mut(&mut d).token = self.next_token;
        }
        let q = self.customers.entry(d.customer).or_default();
        let cap = q.cap(self.queue_max);
        while q.held() >= cap && q.drop_oldest() {
            self.dropped += 1;
        }
        q.queue.push_back(d);
    }

    /// Forgets the queues of customers a reload removed once nothing of theirs is in flight
    /// (their sessions are unbound by then); what they held is dropped and counted. Returns how
    /// many deliveries went.
    pub fn drop_removed(&mut self, present: impl Fn(u32) -> bool) -> usize {
        let mut gone = 0;
        self.customers.retain(|&c, q| {
            let keep = present(c) || !q.sessions.is_empty() || !q.inflight.is_empty();
            if !keep {
                gone += q.held();
            }
            keep
        });
        self.dropped += gone as u64;
        gone
    }

    /// Whether `customer` has a receiving session on this node.
    pub fn has_receiver(&self, customer: u32) -> bool {
        self.customers.get(&customer).is_some_and(|q| !q.sessions.is_empty())
    }

    /// A receiving session of `customer` came up.
    pub fn session_up(&mut self, customer: u32, s: SessionRef) {
        let q = self.customers.entry(customer).or_default();
        if !q.sessions.iter().any(|(x, _)| *x == s) {
            q.sessions.push((s, 0));
        }
    }

    /// A receiving session went away: what it had in flight is queued again, first.
    pub fn session_down(&mut self, customer: u32, s: SessionRef) {
        let Some(q) = self.customers.get_mut(&customer) else { return };
        q.sessions.retain(|(x, _)| *x != s);
        let back: Vec<u64> = q.inflight.iter().filter(|(_, (x, _))| *x == s).map(|(t, _)| *t).collect();
        for t in back {
            if let Some((_, d)) = q.inflight.remove(&t) {
                q.requeue(d);
            }
        }
        self.keep_bound(customer);
    }

    /// Deliveries put back (a session gone, one that could not take them) count against the
    /// customer's bound as new ones do: past it, the oldest go and are counted.
    fn keep_bound(&mut self, customer: u32) {
        let Some(q) = self.customers.get_mut(&customer) else { return };
        let cap = q.cap(self.queue_max);
        while q.held() > cap && q.drop_oldest() {
            self.dropped += 1;
        }
    }

    /// At exit, once the sessions had their time to answer: every receiving session here counts
    /// as gone, whether it closed or is still unbinding, and what any of them has in flight
    /// (sent, unanswered) is queued again. A delivery whose answer never came is handed on
    /// (possibly a second time for the customer) rather than lost with the process.
    pub fn end_sessions(&mut self) -> usize {
        let mut back = 0;
        for q in self.customers.values_mut() {
            q.sessions.clear();
            let mut inflight: Vec<Arc<Delivery>> = q.inflight.drain().map(|(_, (_, d))| d).collect();
            inflight.sort_by_key(|d| d.token);
            back += inflight.len();
            for d in inflight {
                q.requeue(d);
            }
        }
        back
    }

    /// A receiving session stays open but takes no new deliveries: it leaves the round robin,
    /// and what it has in flight stays its own until it answers or goes down
    /// ([`Dispatcher::session_down`] then gives back the rest).
    pub fn session_draining(&mut self, customer: u32, s: SessionRef) {
        if let Some(q) = self.customers.get_mut(&customer) {
            q.sessions.retain(|(x, _)| *x != s);
        }
    }

    /// The customer answered (or failed to answer) delivery `token` on session `from`, at `now`.
    /// An answer from another session than the one the delivery is in flight on is stale (the
    /// delivery was requeued when that session went down and has gone out again since) and
    /// changes nothing: acting on it would send the delivery a second time, or drop the one in
    /// flight.
    pub fn ack(&mut self, customer: u32, token: u64, from: SessionRef, answer: Answer, now: Instant) {
        let Some(q) = self.customers.get_mut(&customer) else { return };
        if q.inflight.get(&token).is_none_or(|(s, _)| *s != from) {
            return;
        }
        let Some((s, mut d)) = q.inflight.remove(&token) else { return };
        if let Some(e) = q.sessions.iter_mut().find(|(x, _)| *x == s) {
            e.1 = e.1.saturating_sub(1);
        }
        match answer {
            Answer::Ok | Answer::NotSent => {}
            _ => q.refusals_in_row = q.refusals_in_row.saturating_add(1),
        }
        match answer {
            Answer::Ok => q.refusals_in_row = 0,
            Answer::NotSent => {
                q.requeue(d);
                self.keep_bound(customer);
            }
            Answer::Rejected => self.given_up += 1,
            Answer::Failed | Answer::Throttled => {
                // Copies the delivery only if its session still holds the other reference.
                // Saturating: a count read back from the shared queue may be anything.
                let attempts = &mut Arc::make_mut(&mut d).attempts;
                *attempts = attempts.saturating_add(1);
                if d.attempts >= DELIVERY_ATTEMPTS_MAX {
                    self.given_up += 1;
                    return;
                }
                let at = now + retry_delay(d.attempts);
                if answer == Answer::Throttled {
                    q.paused_until = Some(q.paused_until.map_or(at, |p| p.max(at)));
                }
                q.waiting.push(Waiting { at, delivery: d });
            }
        }
    }

    /// The earliest time a waiting retry or a throttled customer's pause ends (the driver calls
    /// [`Dispatcher::next`] then), if any.
    pub fn next_due(&self) -> Option<Instant> {
        self.customers
            .values()
            .flat_map(|q| q.waiting.peek().map(|w| w.at).into_iter().chain(q.paused_until))
            .min()
    }

    /// Every waiting retry may go now, and no customer is paused: the node is draining, and a
    /// delivery still waiting when its customer is unbound would be left behind.
    pub fn release_all(&mut self) {
        for q in self.customers.values_mut() {
            q.release_due(None);
        }
    }

    /// Deliveries that can go at `now`, each with the session to send it on, in queue order.
    pub fn next(&mut self, now: Instant, out: &mut Vec<(SessionRef, Arc<Delivery>)>) {
        for q in self.customers.values_mut() {
            q.next(now, out);
        }
    }

    /// [`Dispatcher::next`] for one customer's queue: what a delivery pushed for it, or its
    /// answer, can have made ready (every other queue is as it was). A node with thousands of
    /// customers does not look at all of them for each receipt.
    pub fn next_for(&mut self, customer: u32, now: Instant, out: &mut Vec<(SessionRef, Arc<Delivery>)>) {
        if let Some(q) = self.customers.get_mut(&customer) {
            q.next(now, out);
        }
    }

    /// The queued deliveries of `customer` when it has no receiving session here (for a shared
    /// queue that another node where it binds can deliver from), in queue order; nothing while
    /// it has one.
    pub fn take_unreceived(&mut self, customer: u32) -> Vec<Arc<Delivery>> {
        match self.customers.get_mut(&customer) {
            Some(q) if q.sessions.is_empty() => {
                q.release_due(None);
                q.queue.drain(..).collect()
            }
            _ => Vec::new(),
        }
    }

    /// Every queued or waiting delivery (not those in flight), each customer's in queue order:
    /// the queues are empty afterwards. A clean stop hands them to the next start this way.
    pub fn take_all(&mut self) -> Vec<Arc<Delivery>> {
        let mut out = Vec::with_capacity(self.queued_total());
        let mut customers: Vec<u32> = self.customers.keys().copied().collect();
        customers.sort_unstable();
        for c in customers {
            if let Some(q) = self.customers.get_mut(&c) {
                q.release_due(None);
                out.extend(q.queue.drain(..));
            }
        }
        out
    }

    /// Customers with deliveries queued and no receiving session here.
    pub fn unreceived_customers(&self) -> Vec<u32> {
        self.customers
            .iter()
            .filter(|(_, q)| q.sessions.is_empty() && q.held() > 0)
            .map(|(&c, _)| c)
            .collect()
    }

    /// Queued or waiting (not in flight) deliveries for `customer`.
    pub fn queued(&self, customer: u32) -> usize {
        self.customers.get(&customer).map_or(0, |q| q.held())
    }

    /// Deliveries queued or in flight for customers that have a receiving session: what a
    /// draining node can still hand over before it unbinds them.
    pub fn deliverable(&self) -> usize {
        self.customers.values().filter(|q| !q.sessions.is_empty()).map(|q| q.held() + q.inflight.len()).sum()
    }

    /// Queued or waiting deliveries over all customers.
    pub fn queued_total(&self) -> usize {
        self.customers.values().map(|q| q.held()).sum()
    }
}

/// Earlier parts of long messages the customer was refused, remembered per home core: their
/// receipts derive from the last part's (`receipt_parts = "last"`), and a part that was refused
/// gets none (the customer holds no id for it).
pub const REFUSED_PARTS_MAX: usize = 100_000;

/// The ids of refused earlier parts, at most [`REFUSED_PARTS_MAX`]; the oldest is forgotten
/// first (a derived receipt for it would then go out, as before this set existed).
#[derive(Debug, Default)]
pub struct RefusedParts {
    ids: crate::hash::FxHashSet<u64>,
    order: VecDeque<u64>,
}

impl RefusedParts {
    /// Remembers `shown_id`.
    pub fn insert(&mut self, shown_id: u64) {
        if !self.ids.insert(shown_id) {
            return;
        }
        if self.order.len() >= REFUSED_PARTS_MAX
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        self.order.push_back(shown_id);
    }

    /// Whether `shown_id` was refused (it stays remembered: a receipt may be repeated).
    pub fn contains(&self, shown_id: u64) -> bool {
        self.ids.contains(&shown_id)
    }

    /// Ids remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// Earlier parts whose receipt is derived, tracked on the customer's home core from when they
/// join their group until the vendor's answer for them is known there, at most this many (the
/// oldest is forgotten first: a receipt derived for it then goes out unchecked, as before).
pub const UNSETTLED_PARTS_MAX: usize = 100_000;
/// The longest a receipt derived for a part whose answer has not come is held (then it goes
/// out): beyond the vendors' response timeouts over every failover of the usual settings.
pub const HELD_DERIVED_MAX: Duration = Duration::from_secs(120);
/// Derived receipts held for one part; more are dropped (a vendor repeating itself).
pub const HELD_PER_PART_MAX: usize = 4;

/// Earlier parts of long messages (receipt_parts = "last") whose answer from the vendors has not
/// reached the customer's home core yet. A receipt derived for one of them (from the last part's
/// receipt, or from the last part's refusal) comes from another core than the part's answer, in
/// no set order: it waits for the answer, and is dropped if the part was refused (the customer
/// got an error and no id for it). Sans-IO: the caller passes the time.
#[derive(Debug, Default)]
pub struct PartSettlements {
    /// Part id -> when it joined its group and the derived receipts held for it (an
    /// intermediate one and the final one, a repeat), at most [`HELD_PER_PART_MAX`].
    unsettled: HashMap<u64, Awaited>,
    /// Entries in the order they began, for the hold's expiry and for forgetting the oldest.
    /// An entry whose part was answered stays until it reaches the front or the queue is
    /// compacted (at twice [`UNSETTLED_PARTS_MAX`]); it is stale once `unsettled` no longer
    /// holds its part with the same start, and is then skipped. The bound counts `unsettled`.
    order: VecDeque<(Instant, u64)>,
}

#[derive(Debug)]
struct Awaited {
    since: Instant,
    held: Vec<Arc<Delivery>>,
}

/// What a part's answer releases.
#[derive(Debug)]
pub enum Settled {
    /// Nothing was held for it.
    Nothing,
    /// Accepted: its derived receipts go out now, in the order they came.
    Deliver(Vec<Arc<Delivery>>),
    /// Refused: its derived receipts (this many) are dropped.
    Dropped(usize),
}

impl PartSettlements {
    /// Part `shown_id` joined its group: its answer is awaited. At the bound the oldest still
    /// awaited is forgotten, and the receipts held for it, if any, are handed back to go out.
    pub fn grouped(&mut self, shown_id: u64, now: Instant) -> Vec<Arc<Delivery>> {
        if self.unsettled.contains_key(&shown_id) {
            return Vec::new();
        }
        let out = if self.unsettled.len() >= UNSETTLED_PARTS_MAX {
            self.forget_oldest().unwrap_or_default()
        } else {
            Vec::new()
        };
        if self.order.len() >= 2 * UNSETTLED_PARTS_MAX {
            // Answered parts leave `unsettled` at once but `order` only from its front: drop
            // them here, at most once per UNSETTLED_PARTS_MAX entries (at most that many live).
            let unsettled = &self.unsettled;
            self.order.retain(|(at, id)| unsettled.get(id).is_some_and(|a| a.since == *at));
        }
        self.unsettled.insert(shown_id, Awaited { since: now, held: Vec::new() });
        self.order.push_back((now, shown_id));
        out
    }

    /// The answer for part `shown_id` came (`refused` or not).
    pub fn settled(&mut self, shown_id: u64, refused: bool) -> Settled {
        match self.unsettled.remove(&shown_id).map(|a| a.held) {
            None => Settled::Nothing,
            Some(held) if held.is_empty() => Settled::Nothing,
            Some(held) if refused => Settled::Dropped(held.len()),
            Some(held) => Settled::Deliver(held),
        }
    }

    /// A receipt derived for part `shown_id`: handed back to go out now, unless that part's
    /// answer has not come yet (then it is held).
    pub fn derived(&mut self, shown_id: u64, d: Arc<Delivery>) -> Option<Arc<Delivery>> {
        match self.unsettled.get_mut(&shown_id) {
            Some(a) => {
                if a.held.len() < HELD_PER_PART_MAX {
                    a.held.push(d);
                }
                None
            }
            None => Some(d),
        }
    }

    /// The receipts held longer than [`HELD_DERIVED_MAX`] (or all of them, with `all`: the
    /// node stops), to go out; their parts are no longer awaited.
    pub fn expire(&mut self, now: Instant, all: bool) -> Vec<Arc<Delivery>> {
        let mut out = Vec::new();
        while let Some(&(at, _)) = self.order.front() {
            if !all && now.saturating_duration_since(at) < HELD_DERIVED_MAX {
                break;
            }
            out.extend(self.forget_oldest().unwrap_or_default());
        }
        out
    }

    /// Pops entries off the front of `order` until one still awaited is found, forgets that
    /// one and hands back its held receipts; `None` if none is awaited.
    fn forget_oldest(&mut self) -> Option<Vec<Arc<Delivery>>> {
        while let Some((at, id)) = self.order.pop_front() {
            if self.unsettled.get(&id).is_some_and(|a| a.since == at) {
                return self.unsettled.remove(&id).map(|a| a.held);
            }
        }
        None
    }

    /// Parts awaited.
    pub fn len(&self) -> usize {
        self.unsettled.len()
    }

    /// Whether none is awaited.
    pub fn is_empty(&self) -> bool {
        self.unsettled.is_empty()
    }
}

/// States set for parts not in this core's store yet (see [`EarlyStates`]), at most this many.
pub const EARLY_STATES_MAX: usize = 10_000;
/// How long such a state waits for its record.
pub const EARLY_STATE_TTL: Duration = Duration::from_secs(10);

/// States derived for earlier parts of long messages whose records have not reached their store
/// shard yet (the part's answer and the last part's receipt come from different cores, in no set
/// order): applied when the record is stored, so that query_sm sees the derived state. Every
/// core is told (records are sharded by the vendor's id, which the deriving core does not know),
/// so each keeps them briefly; the oldest go first. Sans-IO: the caller passes the time.
#[derive(Debug, Default)]
pub struct EarlyStates {
    states: HashMap<u64, (MessageState, Option<u16>)>,
    order: VecDeque<(Instant, u64)>,
}

use smppgw_codec::receipt::MessageState;

impl EarlyStates {
    /// Keeps `state` (and `error`) for `shown_id` until its record comes.
    pub fn put(&mut self, shown_id: u64, state: MessageState, error: Option<u16>, now: Instant) {
        self.expire(now);
        if self.order.len() >= EARLY_STATES_MAX
            && let Some((_, old)) = self.order.pop_front()
        {
            self.states.remove(&old);
        }
        if self.states.insert(shown_id, (state, error)).is_none() {
            self.order.push_back((now, shown_id));
        }
    }

    /// The state kept for `shown_id`, taken.
    pub fn take(&mut self, shown_id: u64) -> Option<(MessageState, Option<u16>)> {
        if self.states.is_empty() {
            return None;
        }
        self.states.remove(&shown_id)
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.order.front() {
            if now.saturating_duration_since(at) < EARLY_STATE_TTL {
                break;
            }
            self.order.pop_front();
            self.states.remove(&id);
        }
    }

    /// States kept.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_for_a_record_not_stored_yet_waits_briefly_for_it() {
        let t0 = Instant::now();
        let mut e = EarlyStates::default();
        assert_eq!(e.take(1), None);
        let (delivered, undeliverable) = (MessageState::Delivered, MessageState::Undeliverable);
        e.put(1, delivered, Some(0), t0);
        e.put(2, undeliverable, None, t0);
        assert_eq!(e.take(1), Some((delivered, Some(0))), "applied when the record comes");
        assert_eq!(e.take(1), None, "once");
        e.put(3, delivered, None, t0 + EARLY_STATE_TTL);
        assert_eq!(e.take(2), None, "forgotten after the wait");
        for id in 10..10 + EARLY_STATES_MAX as u64 {
            e.put(id, delivered, None, t0 + EARLY_STATE_TTL);
        }
        assert_eq!(e.len(), EARLY_STATES_MAX, "bounded");
        assert_eq!(e.take(3), None, "the oldest went first");
    }

    #[test]
    fn a_receipt_derived_before_its_parts_answer_waits_for_it() {
        // Goal: the receipt derived for an earlier part can reach the home core before that
        // part's answer: it is held, then delivered if the part was accepted and dropped if it
        // was refused; one for a part not awaited goes out at once; a held one goes out after
        // the longest wait, or when the node stops.
        let n = |d: Option<Arc<Delivery>>| d.map(|d| d.body.esm_class);
        let all = |v: Vec<Arc<Delivery>>| v.iter().map(|d| d.body.esm_class).collect::<Vec<_>>();
        let t0 = Instant::now();
        let mut p = PartSettlements::default();
        for id in 1..=3 {
            assert!(p.grouped(id, t0).is_empty());
        }
        assert_eq!(n(p.derived(1, d(0, 1))), None, "part 1 not answered yet: held");
        assert_eq!(n(p.derived(1, d(0, 11))), None, "and a second receipt for it (the final one)");
        assert_eq!(n(p.derived(2, d(0, 2))), None);
        assert!(
            matches!(p.settled(1, false), Settled::Deliver(v) if all(v.clone()) == vec![1, 11]),
            "accepted: both delivered, in order"
        );
        assert!(matches!(p.settled(2, true), Settled::Dropped(1)), "refused: dropped");
        assert!(matches!(p.settled(3, false), Settled::Nothing), "answered before any receipt");
        assert_eq!(n(p.derived(3, d(0, 3))), Some(3), "answered already: out at once");
        assert_eq!(n(p.derived(9, d(0, 9))), Some(9), "never awaited: out at once");
        assert!(p.grouped(4, t0).is_empty());
        assert_eq!(n(p.derived(4, d(0, 4))), None);
        assert!(p.expire(t0 + HELD_DERIVED_MAX / 2, false).is_empty(), "not yet");
        assert_eq!(all(p.expire(t0 + HELD_DERIVED_MAX, false)), vec![4], "out after the longest wait");
        assert!(p.grouped(5, t0).is_empty());
        assert_eq!(n(p.derived(5, d(0, 5))), None);
        assert_eq!(all(p.expire(t0, true)), vec![5], "all of them at a stop");
        assert!(p.is_empty());
    }

    #[test]
    fn answered_parts_do_not_count_against_the_bound_of_parts_awaited() {
        // Goal: a part still awaited stays awaited however many other parts join and are
        // answered meanwhile (answered ones used to count until they expired), and the queue
        // behind the bound does not grow with them.
        let t0 = Instant::now();
        let mut p = PartSettlements::default();
        assert!(p.grouped(1, t0).is_empty());
        for id in 2..2 + 2 * UNSETTLED_PARTS_MAX as u64 {
            assert!(p.grouped(id, t0).is_empty(), "nothing forgotten");
            assert!(matches!(p.settled(id, false), Settled::Nothing));
        }
        assert_eq!(p.len(), 1);
        assert!(p.order.len() <= 2 * UNSETTLED_PARTS_MAX, "the queue is compacted");
        assert!(p.derived(1, d(0, 1)).is_none(), "part 1 still awaited: its receipt is held");
        assert!(matches!(p.settled(1, true), Settled::Dropped(1)), "and dropped when it is refused");
        for id in 10..10 + UNSETTLED_PARTS_MAX as u64 {
            assert!(p.grouped(id, t0).is_empty());
        }
        assert!(p.derived(10, d(0, 10)).is_none());
        let out = p.grouped(u64::MAX, t0);
        assert_eq!(out.iter().map(|d| d.body.esm_class).collect::<Vec<_>>(), vec![10], "oldest goes");
        assert!(p.derived(10, d(0, 10)).is_some(), "part 10 forgotten: out at once");
        assert_eq!(p.len(), UNSETTLED_PARTS_MAX);
    }

    fn d(c: u32, n: u8) -> Arc<Delivery> {
        Arc::new(Delivery {
            customer: c,
            token: 0,
            kind: Kind::Receipt,
            body: SubmitSm { esm_class: n, ..Default::default() },
            attempts: 0,
        })
    }
    /// One instant for a whole test: time moves only where a test moves it.
    fn t() -> Instant {
        static T: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *T.get_or_init(Instant::now)
    }
    const S1: SessionRef = SessionRef { core: 0, session: 1, generation: 1 };
    const S2: SessionRef = SessionRef { core: 1, session: 1, generation: 1 };

    #[test]
    fn refused_parts_are_bounded_and_forget_the_oldest_first() {
        let mut r = RefusedParts::default();
        for id in 0..REFUSED_PARTS_MAX as u64 {
            r.insert(id);
        }
        r.insert(7);
        assert_eq!(r.len(), REFUSED_PARTS_MAX, "a repeated id takes no second place");
        r.insert(u64::MAX);
        assert_eq!(r.len(), REFUSED_PARTS_MAX);
        assert!(!r.contains(0), "the oldest went first");
        assert!(r.contains(1) && r.contains(u64::MAX));
    }
    #[test]
    fn a_customers_own_pump_hands_out_its_queue_alone() {
        // Goal: a receipt pushed for one customer is sent at once without looking at every
        // other customer's queue (next_for); the others' stay for their own turn.
        let mut x = Dispatcher::new(10, 0);
        x.session_up(7, S1);
        x.session_up(8, S2);
        x.push(d(7, 1));
        x.push(d(8, 2));
        let mut out = Vec::new();
        x.next_for(7, t(), &mut out);
        assert_eq!(out.iter().map(|(s, d)| (*s, d.customer)).collect::<Vec<_>>(), vec![(S1, 7)]);
        out.clear();
        x.next_for(9, t(), &mut out);
        assert!(out.is_empty(), "no queue, nothing");
        x.next(t(), &mut out);
        assert_eq!(out.iter().map(|(s, d)| (*s, d.customer)).collect::<Vec<_>>(), vec![(S2, 8)]);
    }

    #[test]
    fn held_while_no_receiver_then_delivered_in_order() {
        let mut x = Dispatcher::new(10, 0);
        for n in 0..3 {
            x.push(d(7, n));
        }
        let mut out = Vec::new();
        x.next(t(), &mut out);
        assert!(out.is_empty());
        x.session_up(7, S1);
        x.next(t(), &mut out);
        assert_eq!(out.iter().map(|(_, d)| d.body.esm_class).collect::<Vec<_>>(), vec![0, 1, 2]);
    }

    #[test]
    fn a_removed_customers_queue_goes_once_nothing_of_it_is_in_flight() {
        let mut x = Dispatcher::new(10, 0);
        x.session_up(7, S1);
        for n in 0..3 {
            x.push(d(7, n));
        }
        let mut out = Vec::new();
        x.next(t(), &mut out);
        x.push(d(7, 3));
        x.push(d(8, 0));
        // Customer 7 is removed: its session is still draining, so nothing goes yet.
        assert_eq!(x.drop_removed(|c| c == 8), 0);
        x.session_down(7, S1);
        assert_eq!(x.drop_removed(|c| c == 8), 4, "the three back from the session and the queued one");
        assert_eq!((x.queued(7), x.queued(8), x.dropped), (0, 1, 4));
        assert!(x.unreceived_customers() == vec![8]);
    }

    #[test]
    fn a_lower_queue_bound_from_a_reload_sheds_the_oldest() {
        let mut x = Dispatcher::new(10, 0);
        for n in 0..10 {
            x.push(d(7, n));
        }
        x.set_queue_max(4);
        x.push(d(7, 10));
        assert_eq!(x.queued(7), 4);
        assert_eq!(x.dropped, 7);
        x.session_up(7, S1);
        let mut out = Vec::new();
        x.next(t(), &mut out);
        assert_eq!(out.iter().map(|(_, d)| d.body.esm_class).collect::<Vec<_>>(), vec![7, 8, 9, 10]);
    }

    #[test]
    fn refused_deliveries_wait_then_go_out_again_in_the_order_they_first_came() {
        // Goal: deliveries the customer refused are not sent straight back (a customer refusing
        // for a moment would see them all given up within milliseconds): they wait
        // RETRY_BASE_MS while the rest flows, then go in the order they first came. What a
        // closed session never answered goes again at once.
        let mut x = Dispatcher::new(10, 0);
        x.session_up(7, S1);
        for n in 0..5 {
            x.push(d(7, n));
        }
        let mut out = Vec::new();
        x.next(t(), &mut out);
        // Two more queued behind the five in flight; the customer refuses three, answers in
        // the order 0, 2, 1, and the session goes down with one (3) unanswered.
        x.push(d(7, 5));
        x.push(d(7, 6));
        let token = |n: u8| out.iter().find(|(_, d)| d.body.esm_class == n).map(|(_, d)| d.token).unwrap();
        x.ack(7, token(0), S1, Answer::Failed, t());
        x.ack(7, token(2), S1, Answer::Failed, t());
        x.ack(7, token(1), S1, Answer::Failed, t());
        x.ack(7, token(4), S1, Answer::Ok, t());
        x.session_down(7, S1);
        x.session_up(7, S2);
        let esm = |v: &Vec<(SessionRef, Arc<Delivery>)>| {
            v.iter().map(|(_, d)| d.body.esm_class).collect::<Vec<_>>()
        };
        let mut again = Vec::new();
        x.next(t(), &mut again);
        assert_eq!(esm(&again), vec![3, 5, 6], "the refused ones wait");
        assert_eq!(x.next_due(), Some(t() + Duration::from_millis(RETRY_BASE_MS)));
        again.clear();
        x.next(t() + Duration::from_millis(RETRY_BASE_MS - 1), &mut again);
        assert!(again.is_empty());
        x.next(t() + Duration::from_millis(RETRY_BASE_MS), &mut again);
        assert_eq!(esm(&again), vec![0, 1, 2]);
    }

    #[test]
    fn each_refusal_doubles_the_wait_and_the_last_attempt_gives_up() {
        // Goal: a delivery refused again and again is tried DELIVERY_ATTEMPTS_MAX times over
        // about two minutes (0.5 s doubling, at most 30 s apart), then given up and counted.
        let mut x = Dispatcher::new(10, 0);
        x.session_up(7, S1);
        x.push(d(7, 0));
        let mut now = t();
        let mut waits = Vec::new();
        for attempt in 1..=DELIVERY_ATTEMPTS_MAX {
            let mut out = Vec::new();
            x.next(now, &mut out);
            assert_eq!(out.len(), 1, "attempt {attempt} goes out");
            x.ack(7, out[0].1.token, S1, Answer::Failed, now);
            match x.next_due() {
                Some(due) => {
                    waits.push((due - now).as_millis() as u64);
                    now = due;
                }
                None => assert_eq!(attempt, DELIVERY_ATTEMPTS_MAX),
            }
        }
        assert_eq!(waits, vec![500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
        assert_eq!((x.given_up, x.queued(7)), (1, 0));
    }

    #[test]
    fn a_throttling_customer_pauses_its_queue_and_a_permanent_refusal_is_given_up_at_once() {
        // Goal: ESME_RTHROTTLED from the customer holds back its whole queue for the retry
        // delay (not only the throttled delivery), ESME_RX_R_APPN drops that delivery without
        // retries, and a delivery that never reached the customer goes again at once without
        // counting an attempt.
        assert_eq!(Answer::from_status(smppgw_codec::CommandStatus::ESME_RTHROTTLED), Answer::Throttled);
        assert_eq!(Answer::from_status(smppgw_codec::CommandStatus::ESME_RX_R_APPN), Answer::Rejected);
        assert_eq!(Answer::from_status(smppgw_codec::CommandStatus::ESME_RSYSERR), Answer::Failed);
        let mut x = Dispatcher::new(10, 0);
        x.session_up(7, S1);
        x.push(d(7, 0));
        x.push(d(7, 1));
        x.push(d(7, 2));
        let mut out = Vec::new();
        x.next(t(), &mut out);
        let tokens: Vec<u64> = out.iter().map(|(_, d)| d.token).collect();
        x.ack(7, tokens[0], S1, Answer::Throttled, t());
        x.ack(7, tokens[1], S1, Answer::Rejected, t());
        x.ack(7, tokens[2], S1, Answer::NotSent, t());
        assert_eq!(x.given_up, 1);
        x.push(d(7, 3));
        out.clear();
        x.next(t() + Duration::from_millis(100), &mut out);
        assert!(out.is_empty(), "paused: neither the bounced one nor a new one goes");
        x.next(t() + Duration::from_millis(RETRY_BASE_MS), &mut out);
        let esm: Vec<u8> = out.iter().map(|(_, d)| d.body.esm_class).collect();
        assert_eq!(esm, vec![0, 2, 3], "then all, in order");
        assert_eq!(out[1].1.attempts, 0, "the bounced one counted no attempt");
    }

    #[test]
    fn retries_waiting_count_against_the_bound_and_go_at_once_when_the_node_drains() {
        // Goal: refused deliveries waiting for their retry are held within the customer's
        // queue bound (the oldest dropped first), and a draining node sends them at once
        // instead of leaving them behind when the customer is unbound.
        let mut x = Dispatcher::new(2, 0);
        x.push(d(7, 0));
        x.push(d(7, 1));
        x.session_up(7, S1);
        let mut out = Vec::new();
        x.next(t(), &mut out);
        for (s, d) in &out {
            x.ack(7, d.token, *s, Answer::Failed, t());
        }
        assert_eq!(x.queued(7), 2);
        x.session_down(7, S1);
        x.push(d(7, 2));
        assert_eq!((x.queued(7), x.dropped), (2, 1), "bounded: the oldest waiting one went");
        x.session_up(7, S1);
        x.release_all();
        out.clear();
        x.next(t(), &mut out);
        assert_eq!(out.iter().map(|(_, d)| d.body.esm_class).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn failures_are_retried_first_and_a_dead_session_gives_back_its_work() {
        let mut x = Dispatcher::new(10, 0);
        x.session_up(7, S1);
        x.push(d(7, 0));
        x.push(d(7, 1));
        let mut out = Vec::new();
        x.next(t(), &mut out);
        let t0 = out[0].1.token;
        x.ack(7, t0, S1, Answer::Failed, t());
        x.session_down(7, S1);
        assert_eq!(x.queued(7), 2);
        x.session_up(7, S2);
        out.clear();
        x.next(t() + retry_delay(1), &mut out);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|(s, _)| *s == S2));
        for (s, d) in &out {
            x.ack(7, d.token, *s, Answer::Ok, t());
        }
        out.clear();
        x.next(t(), &mut out);
        assert!(out.is_empty(), "nothing duplicated");
    }

    #[test]
    fn a_stale_failure_from_a_closed_session_does_not_touch_the_retry() {
        // Goal: a delivery requeued when its session went down and sent again on another is not
        // sent a third time (nor dropped) by a late failure answer from the first session; the
        // answer of the session it is on now counts.
        let mut x = Dispatcher::new(10, 0);
        x.session_up(7, S1);
        x.session_up(7, S2);
        x.push(d(7, 0));
        let mut out = Vec::new();
        x.next(t(), &mut out);
        let (first, tok) = (out[0].0, out[0].1.token);
        let other = if first == S1 { S2 } else { S1 };
        x.session_down(7, first);
        out.clear();
        x.next(t(), &mut out);
        assert_eq!((out.len(), out[0].0), (1, other), "sent again on the other session");
        x.ack(7, tok, first, Answer::Failed, t());
        out.clear();
        x.next(t(), &mut out);
        assert!(out.is_empty(), "the stale failure sent nothing more");
        x.ack(7, tok, other, Answer::Ok, t());
        assert_eq!((x.queued(7), x.deliverable()), (0, 0), "accepted once, gone");
    }

    #[test]
    fn a_draining_session_keeps_what_it_has_and_takes_nothing_more() {
        // Goal: a session that is unbinding still answers what it has (each accepted once, not
        // sent again elsewhere), new deliveries go to the other session, and what it never
        // answered comes back when it goes down.
        let mut x = Dispatcher::new(10, 0);
        x.session_up(7, S1);
        x.push(d(7, 0));
        x.push(d(7, 1));
        let mut out = Vec::new();
        x.next(t(), &mut out);
        let (t0, t1) = (out[0].1.token, out[1].1.token);
        x.session_up(7, S2);
        x.session_draining(7, S1);
        x.push(d(7, 2));
        out.clear();
        x.next(t(), &mut out);
        assert_eq!(out.iter().map(|(s, d)| (*s, d.body.esm_class)).collect::<Vec<_>>(), vec![(S2, 2)]);
        x.ack(7, t0, S1, Answer::Ok, t());
        x.session_down(7, S1);
        out.clear();
        x.next(t(), &mut out);
        assert_eq!(
            out.iter().map(|(s, d)| (*s, d.token)).collect::<Vec<_>>(),
            vec![(S2, t1)],
            "only the unanswered one goes again"
        );
    }

    #[test]
    fn what_a_closed_session_had_goes_again_in_its_first_order() {
        // Goal: deliveries in flight on a session that closes are requeued ahead of the rest,
        // in the order they first came (a receipt queue is ordered).
        let mut x = Dispatcher::new(100, 0);
        x.session_up(7, S1);
        for n in 0..20 {
            x.push(d(7, n));
        }
        let mut out = Vec::new();
        x.next(t(), &mut out);
        x.push(d(7, 20));
        x.session_down(7, S1);
        x.session_up(7, S2);
        out.clear();
        x.next(t(), &mut out);
        let order: Vec<u8> = out.iter().map(|(_, d)| d.body.esm_class).collect();
        assert_eq!(order, (0..=20).collect::<Vec<u8>>());
    }

    #[test]
    fn a_draining_queue_absorbs_bursts() {
        let mut x = Dispatcher::new(2, 0);
        x.session_up(1, S1);
        for n in 0..(2 * BOUND_QUEUE_FACTOR as u8) {
            x.push(d(1, n));
        }
        assert_eq!(x.dropped, 0);
        x.push(d(1, 99));
        assert_eq!(x.dropped, 1, "still bounded");
    }

    #[test]
    fn a_bound_customer_that_refuses_everything_holds_only_the_plain_bound() {
        // Goal: the larger bound is for a queue a bind drains; a bind that answers every
        // delivery with an error or not at all (each a retry later) drains nothing, and its
        // customer's queue falls back to receipt_queue_max (800,000 against 100,000 entries by
        // default, per customer); its first ESME_ROK gives the larger bound back.
        let mut x = Dispatcher::new(2, 0);
        x.session_up(1, S1);
        let mut out = Vec::new();
        let mut refusals = 0;
        let mut n = 0u8;
        while refusals < DRAINING_REFUSALS_MAX {
            x.push(d(1, n));
            n = n.wrapping_add(1);
            out.clear();
            x.release_all();
            x.next(t(), &mut out);
            for (s, dl) in &out {
                x.ack(1, dl.token, *s, Answer::Failed, t());
                refusals += 1;
            }
        }
        let before = x.dropped + x.given_up;
        for k in 0..(2 * BOUND_QUEUE_FACTOR as u8) {
            x.push(d(1, k));
        }
        assert!(x.dropped + x.given_up - before >= 2 * BOUND_QUEUE_FACTOR as u64 - 2, "cut to 2");
        x.release_all();
        out.clear();
        x.next(t(), &mut out);
        let (s, dl) = out[0].clone();
        x.ack(1, dl.token, s, Answer::Ok, t());
        let before = x.dropped;
        for k in 0..(BOUND_QUEUE_FACTOR as u8) {
            x.push(d(1, k));
        }
        assert_eq!(x.dropped, before, "draining again: the larger bound");
    }

    #[test]
    fn sessions_still_open_at_exit_give_back_what_they_have_in_flight_in_order() {
        let mut x = Dispatcher::new(100, 0);
        x.session_up(1, S1);
        x.session_up(1, S2);
        for n in 0..4 {
            x.push(d(1, n));
        }
        let mut out = Vec::new();
        x.next(t(), &mut out);
        assert_eq!(out.len(), 4);
        // One session is unbinding (out of the round robin, its deliveries still its own), the
        // other still bound; a fifth delivery is queued.
        x.session_draining(1, S1);
        x.push(d(1, 4));
        assert_eq!(x.take_unreceived(1).len(), 0, "a bound session still holds the queue");
        assert_eq!(x.end_sessions(), 4);
        let back: Vec<u8> = x.take_unreceived(1).iter().map(|d| d.body.esm_class).collect();
        assert_eq!(back, vec![0, 1, 2, 3, 4]);
        // A late answer from a session that was ended changes nothing.
        x.ack(1, out[0].1.token, out[0].0, Answer::Ok, t());
        assert_eq!(x.queued_total(), 0);
    }

    #[test]
    fn deliveries_put_back_count_against_the_bound() {
        // Two receiving sessions, the queue at its bound of 2 x 8 with 4 in flight: one session
        // goes, its deliveries come back, and with one session left the queue stays within the
        // bound, the oldest dropped and counted.
        let mut x = Dispatcher::new(2, 0);
        x.session_up(1, S1);
        x.session_up(1, S2);
        for n in 0..4 {
            x.push(d(1, n));
        }
        let mut out = Vec::new();
        x.next(t(), &mut out);
        assert_eq!(out.len(), 4);
        for n in 4..20 {
            x.push(d(1, n));
        }
        assert_eq!(x.queued(1), 16);
        x.session_down(1, S1);
        assert_eq!(x.queued(1), 16, "2 came back, the 2 oldest went");
        assert_eq!(x.dropped, 2);
    }

    #[test]
    fn overflow_drops_the_oldest() {
        let mut x = Dispatcher::new(2, 0);
        for n in 0..3 {
            x.push(d(1, n));
        }
        assert_eq!(x.dropped, 1);
        x.session_up(1, S1);
        let mut out = Vec::new();
        x.next(t(), &mut out);
        assert_eq!(out.iter().map(|(_, d)| d.body.esm_class).collect::<Vec<_>>(), vec![1, 2]);
    }
}
