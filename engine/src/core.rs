//! One core's share of the gateway: its sessions, its vendor binds, its shard of the receipt
//! store, the delivery queues of the customers homed on it, and the routing of work to whichever
//! core owns what the work needs.
//!
//! Everything here is owned by one glommio executor (`Rc`, `RefCell`, `Cell`): the hot path takes
//! no lock. Other cores are reached only through [`Outbox`]es that feed bounded shared channels;
//! work for this core itself goes through a local inbox so no handler ever re-enters another.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use smppgw_codec::receipt::{EsmMessageType, MessageState, Receipt, esm_class_message_type, is_receipt};
use smppgw_codec::{Address, CommandStatus, SubmitSm, TlvsBuilder, tag};

use crate::deliveries::{Answer, Delivery, Dispatcher, Kind, SessionRef};
use crate::hash::FxHashMap;
use crate::mailbox::Mailbox;
use crate::metrics::Metrics;
use crate::msgid::{IdGen, format_id};
use crate::remote::{RemoteLink, RemoteOp};
use crate::snapshot::{BindSlot, Fill, Snapshot, VendorRt};
use crate::store::{Record, Shard, Wanted, canonical_id, shard_key, shard_of, vendor_key};

/// What a finished operation answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// submit_sm_resp.
    Submit,
    /// data_sm_resp.
    DataSm,
    /// One destination of a submit_multi.
    Multi(u16),
    /// cancel_sm_resp.
    Cancel,
    /// replace_sm_resp.
    Replace,
}

impl ReplyKind {
    /// What a cancel_sm or replace_sm that cannot be done is answered with.
    pub fn op_failure(self) -> CommandStatus {
        match self {
            ReplyKind::Replace => CommandStatus::ESME_RREPLACEFAIL,
            _ => CommandStatus::ESME_RCANCELFAIL,
        }
    }
}

/// Where an answer goes: a customer session on some core.
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
    /// What to answer with.
    pub kind: ReplyKind,
    /// Which request of that sequence number (0 for submits): a lookup, operation or
    /// submit_multi answered as lost may see its number reused, and a late answer for the old
    /// request must not be taken as the new one's.
    pub nonce: u32,
}

/// How long a message waits for a vendor of its route to be bound (binds being replaced by a
/// reload, a vendor reconnecting) before it is answered ESME_RSYSERR.
pub const NO_VENDOR_HOLD_MS: u64 = 1_000;
/// Messages waiting so, per core; beyond it they are answered at once.
pub const NO_VENDOR_HOLD_MAX: usize = 10_000;

/// Messages a second per bind below which a paced vendor's work is spread over all its binds by
/// load (a burst queued on one bind at such a pace would wait seconds); above it, this core's
/// bind first, as for unpaced vendors.
pub const SLOW_PACE_PER_BIND: u64 = 1_000;

/// `Job::route` of a job not routed yet.
pub const NOT_ROUTED: u32 = u32::MAX;

/// Most vendors one message may be offered to (failover depth).
pub const FAILOVER_MAX: usize = 8;
/// Times a message refused by a bind whose session the vendor lost (ESME_RINVBNDSTS and the
/// like: nothing about the message) is tried again on that vendor's other binds before the
/// vendor counts as tried.
pub const LOST_BIND_RETRY_MAX: u8 = 2;

/// Cross-core messages handled as one batch: the records among them are prefetched together.
/// A few dozen cache misses in flight is what a core can overlap; more buys nothing.
pub const CORE_MSG_BATCH: usize = 32;

/// A submit on its way to a vendor.
#[derive(Debug)]
pub struct Job {
    /// Our internal id for this vendor submit.
    pub msg_id: u64,
    /// The id the customer is given.
    pub shown_id: u64,
    /// Where the answer goes.
    pub reply: ReplyTo,
    /// Customer index.
    pub customer: u32,
    /// The message as it goes to the vendor.
    pub submit: SubmitSm,
    /// Route index, in the snapshot of `route_version`.
    pub route: u32,
    /// The snapshot version the route index belongs to: a reload may reorder routes.
    pub route_version: u64,
    /// Vendors already tried.
    pub tried: [u32; FAILOVER_MAX],
    /// How many of `tried` are set.
    pub tried_len: u8,
    /// The last temporary failure, answered if no vendor is left.
    pub last_status: Option<CommandStatus>,
    /// When the customer's submit arrived.
    pub received: Instant,
    /// Unix time of the submit, in milliseconds.
    pub submitted_unix_ms: u64,
    /// Which receipts the customer asked for.
    pub receipts: Wanted,
    /// Earlier parts of a long message whose receipts derive from this part's.
    pub siblings: Vec<crate::io::Sibling>,
    /// This is such an earlier part: its receipt will be derived from the last part's.
    pub receipt_derived: bool,
    /// What admitting it took from the customer's rate and its 10DLC campaign: given back when
    /// it is refused without having been sent.
    pub charge: Charge,
    /// A vendor may have it (its outcome there was unknown): what it took stays taken.
    pub maybe_sent: bool,
    /// When it was last sent to a vendor.
    pub sent_at: Option<Instant>,
    /// Until when it may wait for a vendor of its route to be bound ([`NO_VENDOR_HOLD_MS`]).
    pub hold_until: Option<Instant>,
    /// Times a bind whose session the vendor had lost handed it back, to be tried on the
    /// vendor's other binds (at most [`LOST_BIND_RETRY_MAX`]).
    pub lost_bind_retries: u8,
}

/// What a message's admission took from limits (see [`Job::charge`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Charge {
    /// Segments taken from the customer's rate (0: nothing).
    pub segments: u32,
    /// Its 10DLC campaign's index in the snapshot of `version`, which counted the segments.
    pub campaign: Option<u32>,
    /// The snapshot version the campaign index belongs to.
    pub version: u64,
    /// When it was admitted, Unix milliseconds (the windows it was counted in).
    pub at_ms: u64,
    /// The generations of the customer's, the campaign's and the brand's shared leases when it
    /// was admitted ([`crate::lease::Lease::generation`]): a refund goes back to a lease only
    /// within the window it was taken in.
    pub lease_gens: [u32; 3],
    /// The campaign's [`crate::campaign::CampaignTable::identity`].
    pub campaign_key: u64,
}

impl Job {
    /// A job not routed or sent yet.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        msg_id: u64,
        shown_id: u64,
        reply: ReplyTo,
        customer: u32,
        submit: SubmitSm,
        received: Instant,
        receipts: Wanted,
        siblings: Vec<crate::io::Sibling>,
    ) -> Box<Job> {
        Box::new(Job {
            msg_id,
            shown_id,
            reply,
            customer,
            submit,
            route: NOT_ROUTED,
            route_version: 0,
            tried: [0; FAILOVER_MAX],
            tried_len: 0,
            last_status: None,
            received,
            submitted_unix_ms: unix_ms_at(received),
            receipts,
            siblings,
            receipt_derived: false,
            charge: Charge::default(),
            maybe_sent: false,
            sent_at: None,
            hold_until: None,
            lost_bind_retries: 0,
        })
    }

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

/// cancel_sm or replace_sm for a message at a vendor.
#[derive(Debug)]
pub struct OpJob {
    /// Where the answer goes.
    pub reply: ReplyTo,
    /// The vendor that holds the message.
    pub vendor: u32,
    /// The request, with the vendor's id in it. Boxed: an `OpJob` rides in [`CoreMsg`],
    /// [`VendorMsg`] and vendor windows, which are as large as their largest variant, and a
    /// `Body` inline would make every submit's messages carry its 250 octets.
    pub pdu: Box<smppgw_codec::Body>,
    /// Shard holding the record, to record the outcome.
    pub shard: u16,
    /// The customer's id of the message.
    pub shown_id: u64,
}

/// A vendor receipt on its way to the shard that holds its message.
#[derive(Debug)]
pub struct VendorReceipt {
    /// Vendor index.
    pub vendor: u32,
    /// The receipt as parsed (TLVs merged).
    pub receipt: Receipt,
    /// network_error_code TLV value, passed through.
    pub network_error: Option<Bytes>,
    /// [`vendor_key`] of the receipt's id, computed where it was parsed: the shard prefetches
    /// and looks up by it.
    pub key: u64,
    /// The vendor sent it as an intermediate notification (esm_class 0x20): so does the
    /// customer's copy.
    pub intermediate: bool,
}

/// What the query scatter finds.
#[derive(Debug, Clone)]
pub struct Found {
    /// The core whose shard holds it.
    pub shard: u16,
    /// The record.
    pub record: Record,
    /// Found in the shared store (this node's may not hold it).
    pub shared: bool,
}

/// What moves between cores (and, through the local inbox, within one).
#[derive(Debug)]
pub enum CoreMsg {
    /// Run this job on a vendor slot owned by the receiving core.
    Job {
        /// The slot, as the sender chose it and counted the job in its load: a reload on the
        /// receiving core may have replaced it since (the job then goes elsewhere and the count
        /// comes off this slot, not off its successor).
        slot: Arc<BindSlot>,
        /// The job (boxed: it moves through queues and channels by pointer).
        job: Box<Job>,
    },
    /// Run this cancel/replace on vendor slot (vendor, slot).
    Op {
        /// Slot index.
        slot: u32,
        /// The operation.
        op: OpJob,
    },
    /// An operation finished: answer the customer.
    Done {
        /// Where.
        reply: ReplyTo,
        /// Our id or the status.
        result: Result<u64, CommandStatus>,
        /// The core to tell once the answer is written ([`Core::reply_confirmed`]).
        confirm: Option<u16>,
    },
    /// The answer that gave a customer this id has been written (or never will be): receipts
    /// held for it go now ([`crate::answers`]).
    Answered(u64),
    /// Store a message a vendor accepted (to its shard), with its key in the shard
    /// ([`crate::store::vendor_key`], computed where the record was made).
    Store(Box<Record>, u64),
    /// A receipt for the shard that holds its message.
    Receipt(Box<VendorReceipt>),
    /// Earlier parts of a long message whose last part was not sent after all, for their group
    /// on the customer's home core.
    PartsBack(Box<PartsBack>),
    /// A part of a long message under receipt_parts = "last", for its group on the customer's
    /// home core (which then routes it).
    GroupPart(Box<Job>),
    /// A receipt or MO for the customer homed on the receiving core.
    Deliver(Arc<Delivery>),
    /// A receipt derived for an earlier part of a long message, for the customer homed on the
    /// receiving core: delivered once that part's answer is in, unless it was refused
    /// ([`CoreMsg::PartSettled`]).
    DerivedReceipt {
        /// The receipt.
        delivery: Arc<Delivery>,
        /// The id the customer was given for the part.
        shown_id: u64,
    },
    /// The vendors' answer for an earlier part of a long message whose receipt is derived, for
    /// the customer's home core: a receipt derived for it waits for this, and is not delivered
    /// if the part was refused.
    PartSettled {
        /// The id the part has (or would have had).
        shown_id: u64,
        /// Refused (the customer got an error and no id).
        refused: bool,
    },
    /// Send this delivery on a session of the receiving core.
    DeliverOn {
        /// The session.
        session: SessionRef,
        /// The delivery (shared with the home core's in-flight table).
        delivery: Arc<Delivery>,
    },
    /// A session answered a delivery (to the customer's home core).
    DeliveryAck {
        /// Customer index.
        customer: u32,
        /// Delivery token.
        token: u64,
        /// The session the delivery was sent on: an answer from any other (a stale failure for
        /// a delivery that has since gone out again elsewhere) is not this delivery's.
        session: SessionRef,
        /// How it ended.
        answer: Answer,
    },
    /// A receiving session of a customer came up or went down (to its home core).
    Receiver {
        /// Customer index.
        customer: u32,
        /// The session.
        session: SessionRef,
        /// Up or down.
        up: bool,
    },
    /// A receiving session that stays open but takes no new deliveries (unbinding, closing, or
    /// its mailbox full): it gets nothing more, and what it has in flight stays its own until it
    /// answers or goes down (sent elsewhere now, a delivery it then accepted would go twice).
    ReceiverDraining {
        /// Customer index.
        customer: u32,
        /// The session.
        session: SessionRef,
    },
    /// Look for the message a customer knows by `shown_id` (sent to every core).
    Query {
        /// The customer's id.
        shown_id: u64,
        /// Only its owner may see it.
        customer: u32,
        /// Where the answer goes.
        reply: ReplyTo,
    },
    /// One core's answer to a query.
    QueryAnswer {
        /// Where.
        reply: ReplyTo,
        /// What it found.
        found: Option<Box<Found>>,
    },
    /// A replace_sm the vendor accepted asked for receipts of the message.
    WantsReceipt {
        /// The customer's id of the message.
        shown_id: u64,
        /// What the replace_sm's `registered_delivery` asks for.
        receipts: Wanted,
    },
    /// A cancel_sm the vendor accepted: the message is DELETED, and the vendor's own DELETED
    /// receipt, when it comes, is delivered (once).
    Cancelled {
        /// The customer's id.
        shown_id: u64,
    },
    /// A record found in the shared store for a cancel_sm or replace_sm sent from this node:
    /// kept in this shard (unless it already is), so that the outcome recorded here reaches the
    /// shared store and query_sm on every node.
    Adopt(Box<Record>),
    /// Record a new state for a message (a receipt derived for a part).
    SetState {
        /// The customer's id.
        shown_id: u64,
        /// New state (a final state is not taken back by one that is not).
        state: MessageState,
        /// The error code query_sm reports, when this state comes with one.
        error: Option<u16>,
    },
}

/// What a customer session's task receives.
#[derive(Debug)]
pub enum SessionMsg {
    /// One of its operations finished.
    Done {
        /// Its request.
        reply: ReplyTo,
        /// Our id or the status.
        result: Result<u64, CommandStatus>,
        /// The core to tell once the answer is written ([`Core::answer_written`]).
        confirm: Option<u16>,
    },
    /// A receipt or MO to send.
    Deliver(Arc<Delivery>),
    /// One core's answer to a query.
    QueryAnswer {
        /// Its request.
        reply: ReplyTo,
        /// What it found.
        found: Option<Box<Found>>,
    },
    /// The gateway is shutting down: unbind now.
    Shutdown,
    /// The gateway's shutdown begins: take no new requests, answer those outstanding, stay bound
    /// for receipts and MO until [`SessionMsg::Shutdown`].
    Settle,
    /// A new configuration: the session takes its settings now (its timer may be set far ahead).
    Reloaded,
}

/// What a vendor bind's task receives.
#[derive(Debug)]
pub enum VendorMsg {
    /// Send this submit.
    Job(Box<Job>),
    /// Send this cancel/replace.
    Op(OpJob),
    /// The gateway is shutting down.
    Shutdown,
    /// A reload replaced or removed this bind: send nothing new, finish what is in flight, unbind.
    /// A bind that is draining ([`VendorMsg::Drain`]) ends its drain and unbinds.
    Retire,
    /// A reload removed this bind's vendor: send nothing new and finish what is in flight, like
    /// [`VendorMsg::Retire`], but a bind that receives (a transceiver, or the receiver of a
    /// `transmitter_receiver` slot) stays bound until `until` for the receipts and MO the vendor
    /// still sends for the messages it accepted; then it unbinds. Lost meanwhile, it is not made
    /// again.
    Drain {
        /// When the drain ends (`server.removed_vendor_drain_ms` after the reload).
        until: Instant,
    },
    /// The node's shutdown ran out of time for this bind: close it now, answering what is in
    /// flight as unknown and sending what is queued elsewhere (read nothing more).
    Abort,
}

/// A vendor bind slot on a core: (vendor index, slot index).
pub type SlotKey = (u32, u32);

/// A bind of a vendor a reload removed, draining ([`VendorMsg::Drain`]): what tells it apart for
/// a later reload that brings the vendor back.
#[derive(Debug)]
struct DrainingBind {
    handle: BindHandle,
    /// Its vendor's name.
    name: String,
    /// Its vendor's account: (host, port, system_id).
    account: (String, u16, String),
}

/// A vendor bind's slot and its task's mailbox.
pub type BindHandle = (Arc<BindSlot>, Rc<Mailbox<VendorMsg>>);

/// Messages waiting for the channel to another core (or for this core's inbox task). Bounded by
/// everything in flight, which the windows bound; the pump task awaits channel space, so nothing
/// is dropped.
pub type Outbox = Mailbox<CoreMsg>;

// Messages are moved by value through mailboxes, outboxes and the cross-core channels, several
// times each: keep them a cache line at most (box what is large and rare).
const _: () = assert!(std::mem::size_of::<CoreMsg>() <= 64);
const _: () = assert!(std::mem::size_of::<VendorMsg>() <= 64);
const _: () = assert!(std::mem::size_of::<SessionMsg>() <= 64);

/// A vendor bind slot this core runs, with the mailbox of its task.
type LocalBind = (Arc<BindSlot>, Rc<Mailbox<VendorMsg>>);

struct SessionEntry {
    generation: u32,
    mailbox: Rc<Mailbox<SessionMsg>>,
    customer: Cell<Option<u32>>,
    /// Settling for shutdown, with nothing outstanding ([`SessionMsg::Settle`]).
    settled: Cell<bool>,
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
    vendor_binds: RefCell<FxHashMap<(u32, u32), LocalBind>>,
    /// Binds of vendors a reload removed, draining (out of `vendor_binds`: nothing is routed to
    /// them). At most the vendor binds this core ever had; the ended ones go at each reload.
    draining_binds: RefCell<Vec<DrainingBind>>,
    /// One outbox per core; this core's own is its local inbox.
    pub outboxes: Vec<Rc<Outbox>>,
    rng: Cell<u64>,
    /// Shared counters.
    pub metrics: Arc<Metrics>,
    /// Set when shutdown began.
    pub shutting_down: Cell<bool>,
    /// Whether shared state was up at the last tick (its return is acted on).
    remote_was_up: Cell<bool>,
    /// Unknown-outcome policy: fail over (true) or answer ESME_RSUBMITFAIL (false).
    pub failover_on_unknown: Cell<bool>,
    store: RefCell<Shard<Box<VendorReceipt>>>,
    dispatcher: RefCell<Dispatcher>,
    refused_parts: RefCell<crate::deliveries::RefusedParts>,
    /// Grouped parts of customers homed here whose answer has not come (see
    /// [`crate::deliveries::PartSettlements`]).
    part_settlements: RefCell<crate::deliveries::PartSettlements>,
    /// Receipts of messages stored here, waiting until their answer has been written.
    answer_wait: RefCell<crate::answers::AnswerWait<CoreMsg, Record>>,
    /// When `answer_wait` was last rotated.
    answer_rotated: Cell<Instant>,
    /// Derived states for records not stored here yet (see [`crate::deliveries::EarlyStates`]).
    early_states: RefCell<crate::deliveries::EarlyStates>,
    /// Set by the stop's sweep of the part groups: no part joins or goes back to a group after.
    pub parts_closed: Cell<bool>,
    /// When (on [`store_now`]'s clock) a passed-over receipt TLV may be logged again.
    tlv_warned_at: Cell<u64>,
    /// Lines a vendor can cause at its own rate, each logged at most once a second here.
    unreadable_receipt_log: crate::loglimit::LogLimit,
    mo_unroutable_log: crate::loglimit::LogLimit,
    pending_out: RefCell<Vec<(SessionRef, Arc<Delivery>)>>,
    remote: Option<RemoteLink>,
    held: RefCell<std::collections::VecDeque<Box<Job>>>,
    /// Cancel/replace operations waiting so, with until when ([`NO_VENDOR_HOLD_MAX`]).
    held_ops: RefCell<std::collections::VecDeque<(OpJob, Instant)>>,
    /// Long-message groups of the customer sessions here (receipt policy "last").
    pub part_groups: RefCell<crate::io::PartGroups>,
}

/// Outbox length above which another core is treated as congested for new jobs.
const OUTBOX_CONGESTED: usize = crate::limits::CROSS_CORE_CHANNEL_CAPACITY;
/// Outbox length above which vendor binds stop reading (see [`Core::backlogged`]).
const OUTBOX_BACKLOGGED: usize = 4 * OUTBOX_CONGESTED;
const _: () = assert!(OUTBOX_BACKLOGGED * 16 <= crate::limits::OUTBOX_MAX);

/// Tag of the vendor-specific TLV that marks a receipt the gateway derived for an earlier part of
/// a long message from the receipt of its last part (value 1). Documented in the README.
pub const TAG_DERIVED_RECEIPT: u16 = 0x1501;

/// Unix time in milliseconds.
pub fn unix_now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Unix time in milliseconds at `at`, an `Instant` read moments ago: each thread reads the wall
/// clock at most once a second and advances it by the monotonic clock in between, so that a
/// submit's timestamp costs no clock read of its own. A step of the wall clock shows within a
/// second.
pub fn unix_ms_at(at: Instant) -> u64 {
    thread_local! {
        static ANCHOR: std::cell::Cell<Option<(Instant, u64)>> = const { std::cell::Cell::new(None) };
        // The last answer: a session stamps every submit of one read with the same instant.
        static LAST: std::cell::Cell<Option<(Instant, u64)>> = const { std::cell::Cell::new(None) };
    }
    const REFRESH: std::time::Duration = std::time::Duration::from_secs(1);
    if let Some((last, ms)) = LAST.with(|l| l.get())
        && last == at
    {
        return ms;
    }
    let ms = ANCHOR.with(|anchor| {
        let (i, ms) = match anchor.get() {
            Some((i, ms))
                if at.saturating_duration_since(i) < REFRESH && i.saturating_duration_since(at) < REFRESH =>
            {
                (i, ms)
            }
            _ => {
                let fresh = (Instant::now(), unix_now_ms());
                anchor.set(Some(fresh));
                fresh
            }
        };
        if at >= i {
            ms + at.duration_since(i).as_millis() as u64
        } else {
            ms.saturating_sub(i.duration_since(at).as_millis() as u64)
        }
    });
    LAST.with(|l| l.set(Some((at, ms))));
    ms
}

/// Unix time in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Seconds on the monotonic clock (from the first call in the process): the receipt store's
/// TTL and the wait of early receipts are measured on it, so a wall clock stepped forward does
/// not expire them early, nor one stepped back keep them late. Dates shown to customers
/// (submit, done, final_date) stay on the wall clock.
pub fn store_now() -> u64 {
    static ANCHOR: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    STORE_CLOCK_START + ANCHOR.get_or_init(Instant::now).elapsed().as_secs()
}

/// Where [`store_now`] starts: above any receipt TTL (a `u32` of seconds), so that a record an
/// earlier run kept ([`Core::restore`]) gets its arrival time back, however old it is, on a
/// clock that started a moment ago.
pub const STORE_CLOCK_START: u64 = 1 << 32;

impl Core {
    /// A core with its outboxes (index `idx` is the local inbox).
    pub fn new(
        idx: usize,
        snapshot: Arc<Snapshot>,
        outboxes: Vec<Rc<Outbox>>,
        metrics: Arc<Metrics>,
        remote: Option<RemoteLink>,
    ) -> Core {
        let server = &snapshot.config.server;
        let node = server.node_id as u8;
        let failover_on_unknown = server.unknown_outcome_failover;
        let mut store = Shard::new(server.receipt_store_max as usize, u64::from(server.receipt_ttl_secs));
        store.set_vendor_radix(vendor_radix(&snapshot));
        if server.receipt_store_prealloc {
            let started = Instant::now();
            store.preallocate();
            tracing::info!(
                records = server.receipt_store_max,
                ms = started.elapsed().as_millis() as u64,
                "receipt store preallocated"
            );
        }
        let dispatcher = Dispatcher::new(server.receipt_queue_max as usize, idx);
        Core {
            idx,
            snapshot: RefCell::new(snapshot),
            ids: RefCell::new(IdGen::new(node, idx)),
            sessions: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
            generation: Cell::new(1),
            vendor_binds: RefCell::new(FxHashMap::default()),
            draining_binds: RefCell::new(Vec::new()),
            outboxes,
            // Seeded apart per core, process and start, so that nodes restarted together do not
            // draw the same weights and reconnect jitter.
            rng: Cell::new(
                (0x9E37_79B9_7F4A_7C15
                    ^ (idx as u64 + 1)
                    ^ SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
                    ^ u64::from(std::process::id()))
                    | 1,
            ),
            metrics,
            shutting_down: Cell::new(false),
            remote_was_up: Cell::new(false),
            failover_on_unknown: Cell::new(failover_on_unknown),
            store: RefCell::new(store),
            dispatcher: RefCell::new(dispatcher),
            refused_parts: RefCell::new(Default::default()),
            part_settlements: RefCell::new(Default::default()),
            answer_wait: RefCell::new(Default::default()),
            answer_rotated: Cell::new(Instant::now()),
            early_states: RefCell::new(Default::default()),
            parts_closed: Cell::new(false),
            tlv_warned_at: Cell::new(0),
            unreadable_receipt_log: Default::default(),
            mo_unroutable_log: Default::default(),
            pending_out: RefCell::new(Vec::new()),
            remote,
            held: RefCell::new(std::collections::VecDeque::new()),
            held_ops: RefCell::new(std::collections::VecDeque::new()),
            part_groups: RefCell::new(crate::io::PartGroups::new()),
        }
    }

    /// Receipts and MO this core still has for customers with a receiving session.
    pub fn deliverable(&self) -> usize {
        self.dispatcher.borrow().deliverable()
    }

    /// The node is draining: refused deliveries waiting for a retry go now, to customers still
    /// bound, rather than wait past the moment they are unbound.
    pub fn release_waiting_deliveries(&self) {
        self.dispatcher.borrow_mut().release_all();
        self.pump_deliveries();
    }

    /// With shared state up, the receipts and MO queued here for `customer` once it has no
    /// receiving bind on this node go to the shared queue, which every node where it binds
    /// takes from (this one too, should it bind here again): they no longer wait for it to come
    /// back to this node.
    pub fn hand_over_unreceived(&self, customer: u32) {
        if self.remote_up() {
            self.hand_over_queue(customer);
        }
    }

    fn hand_over_queue(&self, customer: u32) {
        if self.snap().customer_at(customer).is_none() {
            // Removed by a reload: no node can deliver to it, and the shared queue would skip
            // these unannounced. The tick's `drop_removed` drops and counts them.
            return;
        }
        let orphans = self.dispatcher.borrow_mut().take_unreceived(customer);
        if orphans.is_empty() {
            return;
        }
        self.metrics.remote_deliveries_out.fetch_add(orphans.len() as u64, Ordering::Relaxed);
        for d in orphans {
            self.remote_push(RemoteOp::Deliver(d));
        }
        self.flush_remote();
    }

    /// Drops (and counts) what is queued for customers a reload removed, once none of their
    /// sessions holds any of it.
    fn drop_removed_customers_queues(&self) {
        let gone = {
            let snap = self.snap();
            self.dispatcher.borrow_mut().drop_removed(|c| snap.customer_at(c).is_some())
        };
        if gone > 0 {
            tracing::warn!(core = self.idx, gone, "receipts and MO queued for removed customers dropped");
        }
    }

    /// Every customer's queue this node holds for customers with no receiving bind here, to the
    /// shared queue (when it is up).
    pub fn hand_over_all_unreceived(&self) {
        let customers = self.dispatcher.borrow().unreceived_customers();
        for c in customers {
            self.hand_over_unreceived(c);
        }
    }

    /// At shutdown, after the drain: every customer's queue this node still holds, for customers
    /// not bound here any more, to the control thread when shared state is configured, up or
    /// not: nothing else here outlives the cores, and the control thread keeps them (within its
    /// bound) for Redis until the process exits, waiting for a Redis that is down or reconnecting.
    pub fn hand_over_all_unreceived_at_exit(&self) {
        if self.remote.is_none() {
            return;
        }
        self.drop_removed_customers_queues();
        let customers = self.dispatcher.borrow().unreceived_customers();
        for c in customers {
            self.hand_over_queue(c);
        }
    }

    /// Shared state is reachable (again, or for the first time): what waited here while it was
    /// not goes through it now. Receipts parked during the outage were never looked up at the
    /// other nodes (their records may be there), and receipts kept here for customers bound
    /// elsewhere go to the shared queue instead of waiting for the customer to bind here.
    fn on_remote_back(&self) {
        // They did not age meanwhile, and each waits its full time again for these lookups.
        self.store.borrow_mut().resume_parked(store_now());
        let parked: Vec<(u32, Bytes)> =
            self.store.borrow().parked().map(|(v, id)| (v, Bytes::copy_from_slice(id))).collect();
        for (vendor, id) in parked {
            self.remote_push(RemoteOp::Miss { vendor, id });
        }
        self.hand_over_all_unreceived();
    }

    /// Notes whether shared state is reachable, and when it is again, looks up once more the
    /// receipts parked meanwhile (see [`Core::on_remote_back`]).
    pub fn follow_remote(&self) {
        let up = self.remote_up();
        if up && !self.remote_was_up.get() {
            self.on_remote_back();
        }
        self.remote_was_up.set(up);
        if self.remote.is_some() && !up {
            // Shared state is configured but cannot be asked: a receipt parked here may be for
            // another node's message, and its vendor was told ESME_ROK. It waits for Redis,
            // however long, instead of expiring unmatched (the bound on parked receipts holds).
            self.store.borrow_mut().pause_parked();
        }
    }

    /// Receipts parked here that another node's message may still match: those whose message
    /// is not stored here, while shared state is configured (without it, once the vendors are
    /// done nothing can match them any more).
    pub fn parked_for_lookup(&self) -> usize {
        if self.remote.is_none() { 0 } else { self.store.borrow().parked_len() }
    }

    /// At exit: the receipts still parked here, which vendors had from us an `ESME_ROK` for, are
    /// lost with the process; counted and logged, not dropped silently. Those another node's
    /// message may have matched (see [`Core::parked_for_lookup`]) count as lost at exit.
    pub fn count_parked_at_exit(&self) {
        let parked = self.store.borrow().parked_len();
        if parked > 0 {
            let lost = self.parked_for_lookup();
            tracing::warn!(
                core = self.idx,
                parked,
                shared = self.remote.is_some(),
                "receipts still parked at exit for a message not found (on another node not yet in Redis, or on none) are lost"
            );
            self.metrics.receipts_unmatched.fetch_add(parked as u64, Ordering::Relaxed);
            self.metrics.lost_at_exit.parked.fetch_add(lost as u64, Ordering::AcqRel);
        }
    }

    /// At exit: the customer sessions that are still open (unbinding too slowly) are taken as
    /// gone, so that what they have in flight is handed over or counted with the rest.
    pub fn end_sessions_at_exit(&self) {
        let back = self.dispatcher.borrow_mut().end_sessions();
        if back > 0 {
            tracing::warn!(
                core = self.idx,
                back,
                "receipts and MO unanswered by sessions still open at exit"
            );
        }
    }

    /// At exit: the receipts and MO still queued here (for customers not bound, or not drained
    /// in time) are lost with the process; they are counted as dropped and logged, not lost
    /// silently.
    pub fn count_undelivered_at_exit(&self) {
        let left = self.dispatcher.borrow().queued_total() as u64;
        if left > 0 {
            self.metrics.deliveries_dropped[self.idx].fetch_add(left, Ordering::Relaxed);
            self.metrics.lost_at_exit.undelivered.fetch_add(left, Ordering::AcqRel);
            tracing::warn!(core = self.idx, left, "receipts and MO still queued at exit are lost");
        }
    }

    /// At exit, after the drain and the hand-over to the shared queue: what this node alone
    /// still holds of receipts to come. Messages awaiting a vendor receipt are this node's alone
    /// when there is no shared store, or it is down (with it up, every message was written
    /// there); the receipts and MO still queued are whatever the shared queue did not take.
    /// With `keep` (a state file) both are taken out, to be written for the next start; without
    /// it the messages are only counted (the deliveries are counted as dropped by
    /// [`Core::count_undelivered_at_exit`]).
    pub fn take_left_at_exit(&self, keep: bool) -> crate::carryover::LeftAtExit {
        let mut left = crate::carryover::LeftAtExit { core: self.idx, ..Default::default() };
        let local_only = self.remote.is_none() || !self.remote_up();
        if local_only {
            let (now, unix) = (store_now(), unix_now());
            let records = self.store.borrow_mut().take_records(now, Record::receipt_outstanding);
            if keep {
                // Kept with the wall-clock time they were stored: the next run's store clock
                // starts anew.
                left.carried.records = records
                    .into_iter()
                    .map(|(at, rec)| (unix.saturating_sub(now.saturating_sub(at)), rec))
                    .collect();
            } else {
                left.forgotten_records = records.len() as u64;
            }
        }
        if keep {
            left.carried.deliveries = self.dispatcher.borrow_mut().take_all();
        }
        left
    }

    /// At start, before anything is accepted: what an earlier run of this node kept for this
    /// core ([`crate::carryover::Carried::split`]). Records past the receipt TTL are dropped;
    /// returns how many.
    pub fn restore(&self, carried: crate::carryover::Carried) -> usize {
        let ttl = u64::from(self.snap().config.server.receipt_ttl_secs);
        let (unix, now) = (unix_now(), store_now());
        let mut expired = 0;
        let mut restored_puts = Vec::new();
        {
            let mut store = self.store.borrow_mut();
            for (at_unix, rec) in carried.records {
                let age = unix.saturating_sub(at_unix);
                if age >= ttl {
                    expired += 1;
                    continue;
                }
                // Written to the shared store too: kept in the file because Redis was down at
                // the stop, so other nodes (where the vendor may send its receipt) lack it.
                if self.remote.is_some() {
                    restored_puts.push(rec.clone());
                }
                // Nothing is parked yet: no receipt waits for it.
                let _ = store.insert(rec, now.saturating_sub(age));
            }
        }
        for record in restored_puts {
            self.remote_push(RemoteOp::Put { record, new: true });
        }
        let mut d = self.dispatcher.borrow_mut();
        for mut x in carried.deliveries {
            Arc::make_mut(&mut x).token = 0;
            d.push(x);
        }
        expired
    }

    /// Offers the messages waiting for a vendor of their route again (called by the ticker).
    pub fn retry_held(&self) {
        let jobs: Vec<Box<Job>> = self.held.borrow_mut().drain(..).collect();
        for job in jobs {
            self.dispatch(job);
        }
        if self.held_ops.borrow().is_empty() {
            return;
        }
        let ops: Vec<(OpJob, Instant)> = self.held_ops.borrow_mut().drain(..).collect();
        for (op, until) in ops {
            self.dispatch_op_until(op, Some(until));
        }
    }

    /// How long a receipt waits parked for its message, in seconds (tests shorten it).
    pub fn set_early_receipt_ttl(&self, secs: u64) {
        self.store.borrow_mut().set_early_ttl(secs);
    }

    /// Whether shared state (Redis) is configured and reachable now.
    pub fn remote_up(&self) -> bool {
        self.remote.as_ref().is_some_and(RemoteLink::is_up)
    }

    /// Hands `op` to the control thread (when shared state is configured).
    fn remote_push(&self, op: RemoteOp) {
        let Some(link) = &self.remote else { return };
        for op in link.push(op) {
            self.remote_fallback(op);
        }
    }

    /// At exit, after the last [`Core::flush_remote`]: record writes and lookups still waiting
    /// for room in the channel to the control thread are given up, and counted as falling back.
    pub fn abandon_remote(&self) {
        let Some(link) = &self.remote else { return };
        let n = link.abandon();
        if n > 0 {
            self.metrics.remote_fallbacks.fetch_add(n as u64, Ordering::Relaxed);
            self.metrics.lost_at_exit.not_handed_over.fetch_add(n as u64, Ordering::AcqRel);
            tracing::warn!(core = self.idx, n, "shared-state writes and lookups not handed over at exit");
        }
    }

    /// Hands the gathered shared-state ops to the control thread (called by the ticker).
    pub fn flush_remote(&self) {
        let Some(link) = &self.remote else { return };
        for op in link.flush() {
            self.remote_fallback(op);
        }
    }

    /// The local behaviour for an op the control thread could not take.
    fn remote_fallback(&self, op: RemoteOp) {
        self.metrics.remote_fallbacks.fetch_add(1, Ordering::Relaxed);
        match op {
            // Still in the local store; other nodes just cannot see it.
            RemoteOp::Put { .. } | RemoteOp::Miss { .. } => {}
            RemoteOp::Query { reply, .. } => self.remote_query_answer(reply, None),
            // Unchecked, as without shared state: delivered.
            RemoteOp::DerivedCheck { delivery, .. } => self.deliver_home(delivery),
            RemoteOp::Deliver(mut d) => {
                let home = self.home_of(d.customer);
                if home == self.idx {
                    let customer = d.customer;
                    // Queued anew: its place follows the others' (tokens keep the queue's order).
                    Arc::make_mut(&mut d).token = 0;
                    self.dispatcher.borrow_mut().push(d);
                    self.pump_deliveries_for(customer);
                } else {
                    self.send(home, CoreMsg::Deliver(d));
                }
            }
        }
    }

    /// Writes `record` to the shared store, once the answer that gave the customer its id has
    /// been written (see [`crate::answers`]): until then other nodes cannot find it, so a
    /// receipt the vendor sends to one of their binds waits for it there too. A write held is
    /// the first (`new`) whatever the later state that replaces it.
    fn remote_put(&self, record: &Record, new: bool) {
        if self.remote.is_none() {
            return;
        }
        let msg_id = record.msg_id;
        let held =
            self.answer_wait.borrow_mut().hold_put(record.shown_id, record.clone(), |r| r.msg_id == msg_id);
        if let Err(record) = held {
            self.remote_push(RemoteOp::Put { record, new });
        }
    }

    /// Asks the shared store for a message when this node's cores found nothing final for a
    /// query; returns false when there is no shared store to ask.
    pub fn remote_query(&self, shown_id: u64, customer: u32, reply: ReplyTo) -> bool {
        if !self.remote_up() {
            return false;
        }
        self.remote_push(RemoteOp::Query { shown_id, customer, reply });
        true
    }

    /// The shared store's answer to [`Core::remote_query`], for a session on this core.
    pub fn remote_query_answer(&self, reply: ReplyTo, found: Option<Box<Found>>) {
        if let Some(mb) = self.session_mailbox(reply.session, reply.generation) {
            let _ = mb.push(SessionMsg::QueryAnswer { reply, found });
        }
    }

    /// A message another node stored, found for a receipt that arrived here: kept in this shard
    /// (unless it already is) so the parked receipt applies.
    pub fn remote_record(&self, rec: Record) {
        self.metrics.remote_found.fetch_add(1, Ordering::Relaxed);
        let early = {
            let mut store = self.store.borrow_mut();
            if store.find_vendor_mut(rec.vendor, &rec.vendor_id).is_some() {
                return;
            }
            store.insert(rec, store_now())
        };
        if let Some(r) = early {
            self.apply_receipt(r);
        }
    }

    /// A derived receipt checked against the shared store: delivered when its part was stored
    /// by the node that handled it, counted as refused otherwise.
    pub fn derived_checked(&self, delivery: Arc<Delivery>, stored: bool) {
        if stored {
            self.deliver_home(delivery);
        } else {
            self.metrics.derived_for_refused.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Receipts and MO from the shared queue for customers homed on this core.
    pub fn remote_deliveries(&self, batch: Vec<Delivery>) {
        self.metrics.remote_deliveries_in.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let mut customers: Vec<u32> = batch.iter().map(|d| d.customer).collect();
        customers.sort_unstable();
        customers.dedup();
        {
            let mut d = self.dispatcher.borrow_mut();
            for mut x in batch {
                x.token = 0;
                d.push(Arc::new(x));
            }
        }
        self.pump_deliveries();
        // Taken from the shared queue for a receiving bind that has gone meanwhile: back to the
        // shared queue, for where the customer is bound now (kept here, they waited for the
        // customer to bind on this node again).
        for c in customers {
            self.hand_over_unreceived(c);
        }
    }

    /// The current config snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// The current config snapshot, borrowed. The per-message path reads it through this: a
    /// clone of the `Arc` is an atomic increment and decrement of a count every core shares,
    /// several times a message. The borrow is not held across an await, and nothing a message
    /// does installs a snapshot (`set_snapshot` runs from the control mailbox only).
    pub(crate) fn snap(&self) -> std::cell::Ref<'_, Arc<Snapshot>> {
        self.snapshot.borrow()
    }

    /// Number of cores.
    pub fn cores(&self) -> usize {
        self.outboxes.len()
    }

    /// A new message id.
    pub fn next_msg_id(&self) -> u64 {
        self.ids.borrow_mut().next_id()
    }

    /// Issues ids above counter `floor` from now on (what an earlier run issued).
    pub fn ids_above(&self, floor: u64) {
        let node = self.snap().config.server.node_id as u8;
        let mut ids = self.ids.borrow_mut();
        if floor > ids.counter() {
            *ids = IdGen::above(node, self.idx, floor);
        }
    }

    /// The counter of the last id issued (see [`crate::msgid::IdWatermark`]).
    pub fn ids_issued(&self) -> u64 {
        self.ids.borrow().counter()
    }

    /// Sends refused deliveries whose wait is over, and those of customers whose throttling
    /// pause ended.
    pub fn pump_due_deliveries(&self) {
        let due = self.dispatcher.borrow().next_due();
        if due.is_some_and(|t| t <= Instant::now()) {
            self.pump_deliveries();
        }
    }

    /// Periodic work: ids tied to the clock, store expiry.
    pub fn tick(&self) {
        self.ids.borrow_mut().catch_up();
        self.release_held_derived(false);
        if self.answer_rotated.get().elapsed() >= Duration::from_millis(crate::answers::ANSWER_WAIT_ROTATE_MS)
        {
            self.answer_rotated.set(Instant::now());
            self.release_answer_wait(false);
        }
        {
            let w = self.answer_wait.borrow();
            self.metrics.receipt_order_given_up[self.idx].store(w.expired + w.untracked, Ordering::Relaxed);
        }
        // What stayed here for customers with no receiving bind here (a hand-over the control
        // thread could not take) goes to the shared queue.
        if self.remote_up() {
            self.hand_over_all_unreceived();
        }
        self.follow_remote();
        self.pump_due_deliveries();
        let expired = self.store.borrow_mut().expire(store_now());
        if !expired.is_empty() {
            self.metrics.receipts_unmatched.fetch_add(expired.len() as u64, Ordering::Relaxed);
        }
        self.drop_removed_customers_queues();
        let d = self.dispatcher.borrow();
        self.metrics.deliveries_dropped[self.idx].store(d.dropped + d.given_up, Ordering::Relaxed);
        self.metrics.delivery_queue_by_core[self.idx].store(d.queued_total() as u64, Ordering::Relaxed);
        let store = self.store.borrow();
        self.metrics.store_records_by_core[self.idx].store(store.len() as u64, Ordering::Relaxed);
        self.metrics.store_evicted[self.idx].store(store.evicted, Ordering::Relaxed);
        self.metrics.store_evicted_waiting[self.idx].store(store.evicted_waiting, Ordering::Relaxed);
    }

    /// The record this core's shard holds for a customer-visible id.
    pub fn lookup(&self, shown_id: u64) -> Option<Record> {
        self.store.borrow().find_shown(shown_id).cloned()
    }

    /// Records in this core's shard.
    pub fn store_len(&self) -> usize {
        self.store.borrow().len()
    }

    pub(crate) fn next_rand(&self) -> u64 {
        // xorshift64*: weights need spread, not secrecy.
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Whether another executor has fallen behind with what this one sends it (its outbox
    /// holds [`OUTBOX_BACKLOGGED`] messages): vendor binds then stop reading until it catches
    /// up, so that receipts a vendor pours in wait in its socket (TCP backpressure) rather than
    /// in an outbox that would reach its bound and drop them.
    pub fn backlogged(&self) -> bool {
        self.outboxes.iter().enumerate().any(|(i, o)| i != self.idx && o.len() >= OUTBOX_BACKLOGGED)
    }

    /// Sends `msg` to core `to` (this core's inbox when it is this one).
    pub fn send(&self, to: usize, msg: CoreMsg) {
        match self.outboxes.get(to) {
            Some(o) => {
                if let Err(msg) = o.push(msg) {
                    if o.is_closed() {
                        // The cores are stopping: after their last exchange, nothing is sent (a
                        // session's report of its last answers is of no use to anyone then).
                        if !matches!(msg, CoreMsg::Answered(_)) {
                            tracing::warn!(to, ?msg, "core stopped: message dropped at exit");
                        }
                    } else {
                        // Outboxes are sized far beyond what the windows allow in flight.
                        self.metrics.lost_answers.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(to, "outbox full: message lost");
                    }
                }
            }
            None => tracing::error!(to, "no such core"),
        }
    }

    /// Registers a customer session; returns its slot and generation.
    pub fn add_session(&self, mailbox: Rc<Mailbox<SessionMsg>>) -> (u32, u32) {
        let generation = self.generation.get().wrapping_add(1).max(1);
        self.generation.set(generation);
        let entry =
            SessionEntry { generation, mailbox, customer: Cell::new(None), settled: Cell::new(false) };
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

    fn session_mailbox(&self, slot: u32, generation: u32) -> Option<Rc<Mailbox<SessionMsg>>> {
        match self.sessions.borrow().get(slot as usize) {
            Some(Some(e)) if e.generation == generation => Some(e.mailbox.clone()),
            _ => None,
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

    /// Sessions with requests still outstanding after [`SessionMsg::Settle`].
    pub fn unsettled_count(&self) -> usize {
        self.sessions.borrow().iter().flatten().filter(|e| !e.settled.get()).count()
    }

    /// A settling session has nothing outstanding (or has again).
    pub fn set_settled(&self, slot: u32, settled: bool) {
        if let Some(Some(e)) = self.sessions.borrow().get(slot as usize) {
            e.settled.set(settled);
        }
    }

    /// Registers the mailbox of a local vendor bind slot; returns the slot and mailbox it replaces.
    pub fn add_vendor_bind(
        &self,
        slot: Arc<BindSlot>,
        mailbox: Rc<Mailbox<VendorMsg>>,
    ) -> Option<BindHandle> {
        self.vendor_binds.borrow_mut().insert((slot.vendor, slot.slot), (slot, mailbox))
    }

    /// Whether this exact slot (not a replacement) has its task on this core.
    pub fn has_vendor_bind(&self, slot: &Arc<BindSlot>) -> bool {
        self.vendor_binds.borrow().get(&(slot.vendor, slot.slot)).is_some_and(|(s, _)| Arc::ptr_eq(s, slot))
    }

    /// Removes the slots the new snapshot no longer has; returns their mailboxes.
    pub fn retain_vendor_binds(&self, snap: &Snapshot) -> Vec<(SlotKey, BindHandle)> {
        let mut gone = Vec::new();
        self.vendor_binds.borrow_mut().retain(|&(v, s), (slot, mb)| {
            let keep =
                snap.vendor(v).and_then(|x| x.slots.get(s as usize)).is_some_and(|n| Arc::ptr_eq(n, slot));
            if !keep {
                gone.push(((v, s), (slot.clone(), mb.clone())));
            }
            keep
        });
        gone
    }

    /// Mailboxes of the local vendor binds, draining ones included (for shutdown).
    pub fn vendor_mailboxes(&self) -> Vec<Rc<Mailbox<VendorMsg>>> {
        let binds = self.vendor_binds.borrow();
        let draining = self.draining_binds.borrow();
        binds.values().chain(draining.iter().map(|d| &d.handle)).map(|(_, m)| m.clone()).collect()
    }

    /// Keeps a bind of `vendor` (which a reload removed) as draining: it has been told
    /// [`VendorMsg::Drain`].
    pub fn add_draining_bind(&self, handle: BindHandle, vendor: &crate::config::VendorConfig) {
        let mut draining = self.draining_binds.borrow_mut();
        // Those whose task has ended (it closes its mailbox) go.
        draining.retain(|d| !d.handle.1.is_closed());
        draining.push(DrainingBind {
            handle,
            name: vendor.name.clone(),
            account: (vendor.host.clone(), vendor.port, vendor.system_id.clone()),
        });
    }

    /// Takes out the draining binds whose vendor `new` brings back after `old` did without it:
    /// the same name, or a vendor `old` did not have at the same account (host, port and
    /// system_id; a vendor renamed). Their drain ends (their vendor's binds take its receipts
    /// again); each is returned under the slot of the vendor that came back, whose new bind there
    /// is its successor. Draining binds whose task has ended go too.
    pub fn end_drains_for(&self, old: &Snapshot, new: &Snapshot) -> Vec<(SlotKey, BindHandle)> {
        let mut draining = self.draining_binds.borrow_mut();
        draining.retain(|d| !d.handle.1.is_closed());
        if draining.is_empty() {
            return Vec::new();
        }
        let added: Vec<&crate::snapshot::VendorRt> = new
            .vendors
            .iter()
            .flatten()
            .filter(|v| !old.vendors.iter().flatten().any(|o| o.cfg.name == v.cfg.name))
            .map(|v| &**v)
            .collect();
        let mut back = Vec::new();
        draining.retain(|d| {
            let returned = added.iter().find(|v| {
                v.cfg.name == d.name
                    || (&v.cfg.host, v.cfg.port, &v.cfg.system_id)
                        == (&d.account.0, d.account.1, &d.account.2)
            });
            match returned {
                Some(v) => {
                    back.push(((v.idx, d.handle.0.slot), d.handle.clone()));
                    false
                }
                None => true,
            }
        });
        back
    }

    /// Installs a new snapshot on this core, with the server settings a reload may change that
    /// the core keeps outside it.
    pub fn set_snapshot(&self, snap: Arc<Snapshot>) {
        let server = &snap.config.server;
        self.failover_on_unknown.set(server.unknown_outcome_failover);
        self.store.borrow_mut().set_ttl(u64::from(server.receipt_ttl_secs));
        self.store.borrow_mut().set_vendor_radix(vendor_radix(&snap));
        self.dispatcher.borrow_mut().set_queue_max(server.receipt_queue_max as usize);
        *self.snapshot.borrow_mut() = snap;
    }

    /// Tells the sessions of customers the snapshot no longer has to unbind, and wakes the others
    /// to take their new settings; each checks then that its customer still lets it in as it
    /// bound (password hash, source address, bind type), and unbinds if not (`io.rs`).
    pub fn unbind_removed_customers(&self, snap: &Snapshot) {
        for e in self.sessions.borrow().iter().flatten() {
            if let Some(c) = e.customer.get()
                && snap.customer_at(c).is_none()
            {
                let _ = e.mailbox.push(SessionMsg::Shutdown);
            } else {
                // A full mailbox means a busy session, which reads the new settings at once.
                let _ = e.mailbox.push(SessionMsg::Reloaded);
            }
        }
    }

    /// Records which customer a session bound as.
    pub fn set_session_customer(&self, slot: u32, customer: u32) {
        if let Some(Some(e)) = self.sessions.borrow().get(slot as usize) {
            e.customer.set(Some(customer));
        }
    }

    /// Home core of a customer: where its delivery queue lives.
    pub fn home_of(&self, customer: u32) -> usize {
        customer as usize % self.cores()
    }

    /// Routes a new part of a long message under receipt_parts = "last" through its group,
    /// kept on the customer's home core so that parts sent on sessions of different cores meet.
    pub fn submit_part(&self, job: Box<Job>) {
        let home = self.home_of(job.customer);
        match home == self.idx {
            true => self.group_part(job),
            false => self.send(home, CoreMsg::GroupPart(job)),
        }
    }

    /// On the customer's home core: a part before the last joins its group (its receipt will
    /// be derived from the last part's, so it asks the vendor for none); the last part takes
    /// the group's parts, and asks the vendor for their receipt whatever it asked for itself
    /// (the customer still gets only the receipts each part asked for). Then the part is routed.
    fn group_part(&self, mut job: Box<Job>) {
        if let Some((key, part)) =
            crate::io::part_key(job.customer, &job.submit).filter(|_| !self.parts_closed.get())
        {
            let now = Instant::now();
            let mut groups = self.part_groups.borrow_mut();
            if part < key.4 {
                let s = &job.submit;
                let meta = crate::io::PartMeta {
                    source: (s.source.ton, s.source.npi),
                    dest: (s.dest.ton, s.dest.npi),
                    submitted_unix_ms: job.submitted_unix_ms,
                };
                let part = crate::io::Sibling { shown_id: job.msg_id, wants: job.receipts };
                if groups.add(&key, part, meta, now) {
                    // Only the last part asks the vendor, for intermediate notifications too
                    // (0x10); a vendor that sends receipts unasked would otherwise give this
                    // part two.
                    job.submit.registered_delivery &= !0x13;
                    job.receipt_derived = true;
                    job.receipts = Wanted::NONE;
                    let released = self.part_settlements.borrow_mut().grouped(job.shown_id, now);
                    for d in released {
                        self.deliver_home(d);
                    }
                }
            } else if job.receipts.finals() || groups.holds(&key) {
                // A last part asking for no final receipt that finds no group leaves no closed
                // group behind: its earlier parts, asking for none either, never come to one.
                job.siblings = groups.take(&key, now);
                if !job.siblings.is_empty() {
                    // Each sibling asked for a final receipt: the vendor must report success
                    // and failure alike (registered_delivery 0x01) for their states to follow,
                    // and intermediate notifications (0x10) when one of them asked for those.
                    let intermediate = job.siblings.iter().fold(0, |a, s| a | s.wants.octet()) & 0x10;
                    let rd = &mut job.submit.registered_delivery;
                    *rd = (*rd & !0x03) | 0x01 | intermediate;
                }
            }
        }
        self.submit(job);
    }

    /// Routes a new submit: picks its route and hands it to a vendor.
    pub fn submit(&self, mut job: Box<Job>) {
        let route = {
            let snap = self.snap();
            job.route_version = snap.version;
            snap.routes.lookup(job.customer, &job.submit.source.addr, &job.submit.dest.addr).map(|(r, _)| r)
        };
        match route {
            Some(route) => {
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

    /// Whether `vendor` is still on the route `job` would take under the current configuration
    /// (a reload may have moved its destination to other vendors).
    pub fn still_routed_to(&self, job: &Job, vendor: u32) -> bool {
        let snap = self.snap();
        if job.route_version == snap.version {
            return true;
        }
        snap.routes
            .lookup(job.customer, &job.submit.source.addr, &job.submit.dest.addr)
            .and_then(|(r, _)| snap.routes.routes.get(r as usize))
            .is_some_and(|route| route.groups.iter().flatten().any(|&(v, _)| v == vendor))
    }

    /// Offers a job to the next vendor of its route that can take it, here or on another core;
    /// answers the customer when none can.
    pub fn dispatch(&self, mut job: Box<Job>) {
        let snap = self.snap();
        if job.route_version != snap.version {
            // Routed under an earlier configuration (a failover or a held message across a
            // reload): route indexes are positions in the route list, which a reload may change,
            // so the message is routed again, as a new one would be now. Vendors keep their
            // indexes: the ones it tried stay tried.
            job.route_version = snap.version;
            match snap.routes.lookup(job.customer, &job.submit.source.addr, &job.submit.dest.addr) {
                Some((r, _)) => job.route = r,
                None => return self.finish(&job, Err(CommandStatus::ESME_RINVDSTADR)),
            }
        }
        let Some(route) = snap.routes.routes.get(job.route as usize) else {
            return self.finish(&job, Err(CommandStatus::ESME_RSYSERR));
        };
        let mut any_up = false;
        // A vendor whose windows are full is passed over for the next one with room; only when
        // no vendor of the route has room does the message queue at a bind (the first vendor's
        // in route order), to go out when its window opens.
        for fill in [Fill::Window, Fill::Queue] {
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
                    let Some(vendor) = snap.vendor(v) else { continue };
                    match self.offer(vendor, job, fill) {
                        Ok(()) => return,
                        Err(j) => {
                            // Read only when the offer failed: the slots of other cores are cache
                            // misses on the path every message takes.
                            any_up |= vendor.slots.iter().any(|s| s.up.load(Ordering::Relaxed));
                            job = j;
                        }
                    }
                }
            }
            if !any_up {
                // Nothing is bound: no queue can take it either.
                break;
            }
        }
        if !any_up && job.last_status.is_none() && !self.shutting_down.get() {
            let until = *job
                .hold_until
                .get_or_insert_with(|| Instant::now() + std::time::Duration::from_millis(NO_VENDOR_HOLD_MS));
            let mut held = self.held.borrow_mut();
            if Instant::now() < until && held.len() < NO_VENDOR_HOLD_MAX {
                held.push_back(job);
                return;
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
        tracing::debug!(%status, "no vendor can take the message");
        self.finish(&job, Err(status));
    }

    /// The least loaded available slot of `vendor`, this core's first: another core's slots are
    /// looked at only when none of ours can take the job (their counters are written by their
    /// own core with every message, so reading them costs a cache miss), or when ours is paced
    /// (the vendor's `throughput`) and would hold the job for its pace while another slot, no
    /// busier, can send it now. Without that, a customer that waits for each answer would get
    /// one bind's share of a paced vendor's throughput. A slowly paced vendor's work is spread
    /// over all its binds by load.
    fn best_slot<'a>(&self, vendor: &'a VendorRt, fill: Fill) -> Option<&'a Arc<BindSlot>> {
        let cores = self.cores();
        let per_bind = u64::from(vendor.cfg.throughput) / (vendor.slots.len().max(1) as u64);
        if vendor.cfg.throughput > 0 && per_bind < SLOW_PACE_PER_BIND {
            // Each bind sends only its share of the vendor's rate, so a burst routed before the
            // local bind has sent (and said when it sends next) would all queue there at that
            // share while the others idle, for seconds at these paces. At them the cross-core
            // hop costs nothing that matters: the least loaded bind of all, one that can send
            // now among equals, this core's first.
            let now = unix_now_ms();
            return vendor
                .slots_on(self.idx, cores)
                .chain(vendor.slots_off(self.idx, cores))
                .filter(|s| s.available(fill))
                .min_by_key(|s| {
                    (s.load.load(Ordering::Relaxed), s.next_send_ms.load(Ordering::Relaxed) > now)
                });
        }
        let Some(local) = least_loaded(vendor.slots_on(self.idx, cores), fill) else {
            return least_loaded(vendor.slots_off(self.idx, cores), fill);
        };
        let next = local.next_send_ms.load(Ordering::Relaxed);
        if next == 0 {
            return Some(local);
        }
        let now = unix_now_ms();
        if next <= now {
            return Some(local);
        }
        let load = local.load.load(Ordering::Relaxed);
        let ready_now = vendor.slots.iter().filter(|s| {
            s.available(fill)
                && s.load.load(Ordering::Relaxed) <= load
                && s.next_send_ms.load(Ordering::Relaxed) <= now
        });
        least_loaded(ready_now, fill).or(Some(local))
    }

    /// Hands the job to the least loaded slot with room up to `fill`, preferring this core's.
    fn offer(&self, vendor: &VendorRt, job: Box<Job>, fill: Fill) -> Result<(), Box<Job>> {
        let Some(slot) = self.best_slot(vendor, fill) else { return Err(job) };
        if slot.core == self.idx {
            let mb = self.vendor_binds.borrow().get(&(slot.vendor, slot.slot)).map(|(_, m)| m.clone());
            let Some(mb) = mb else { return Err(job) };
            slot.load.fetch_add(1, Ordering::Relaxed);
            mb.push(VendorMsg::Job(job)).map_err(|m| {
                slot.load.fetch_sub(1, Ordering::Relaxed);
                match m {
                    VendorMsg::Job(j) => j,
                    _ => unreachable_job(),
                }
            })
        } else {
            let Some(outbox) = self.outboxes.get(slot.core) else { return Err(job) };
            if outbox.len() >= OUTBOX_CONGESTED {
                return Err(job);
            }
            slot.load.fetch_add(1, Ordering::Relaxed);
            outbox.push(CoreMsg::Job { slot: slot.clone(), job }).map_err(|m| {
                slot.load.fetch_sub(1, Ordering::Relaxed);
                match m {
                    CoreMsg::Job { job, .. } => job,
                    _ => unreachable_job(),
                }
            })
        }
    }

    /// Sends a cancel/replace to a bind of the vendor that holds the message.
    pub fn dispatch_op(&self, op: OpJob) {
        self.dispatch_op_until(op, None);
    }

    /// As [`Core::dispatch_op`]; while none of the vendor's binds is up (a reload replacing
    /// them, a reconnect) the operation waits for one until `hold_until` ([`NO_VENDOR_HOLD_MS`]
    /// from its first try), as a submit does, rather than failing at once.
    fn dispatch_op_until(&self, op: OpJob, hold_until: Option<Instant>) {
        let snap = self.snapshot();
        let vendor = snap.vendor(op.vendor);
        let slot = vendor.and_then(|v| self.best_slot(v, Fill::Queue)).cloned();
        let Some(slot) = slot else {
            let none_up = vendor.is_some_and(|v| !v.slots.iter().any(|s| s.up.load(Ordering::Relaxed)));
            if none_up && !self.shutting_down.get() {
                let until = hold_until
                    .unwrap_or_else(|| Instant::now() + std::time::Duration::from_millis(NO_VENDOR_HOLD_MS));
                let mut held = self.held_ops.borrow_mut();
                if Instant::now() < until && held.len() < NO_VENDOR_HOLD_MAX {
                    held.push_back((op, until));
                    return;
                }
            }
            return self.reply(op.reply, Err(op.reply.kind.op_failure()));
        };
        if slot.core == self.idx {
            let mb = self.vendor_binds.borrow().get(&(slot.vendor, slot.slot)).map(|(_, m)| m.clone());
            match mb {
                Some(mb) => {
                    if let Err(VendorMsg::Op(op)) = mb.push(VendorMsg::Op(op)) {
                        self.reply(op.reply, Err(CommandStatus::ESME_RSYSERR));
                    }
                }
                None => self.reply(op.reply, Err(CommandStatus::ESME_RSYSERR)),
            }
        } else {
            self.send(slot.core, CoreMsg::Op { slot: slot.slot, op });
        }
    }

    /// A job arrived from another core for one of our vendor slots: it goes to that slot if it
    /// is still the one the sender counted it on, else (replaced by a reload, gone) elsewhere.
    fn accept_remote_job(&self, slot: &Arc<BindSlot>, job: Box<Job>) {
        let mb = self
            .vendor_binds
            .borrow()
            .get(&(slot.vendor, slot.slot))
            .filter(|(s, _)| Arc::ptr_eq(s, slot))
            .map(|(_, m)| m.clone());
        let job = match mb {
            Some(mb) => match mb.push(VendorMsg::Job(job)) {
                Ok(()) => return,
                Err(VendorMsg::Job(job)) => job,
                Err(_) => return,
            },
            None => job,
        };
        slot.load.fetch_sub(1, Ordering::Relaxed);
        self.dispatch(job);
    }

    /// Answers the customer of `job`, on whichever core its session lives.
    pub fn finish(&self, job: &Job, result: Result<u64, CommandStatus>) {
        self.finish_at(job, result, Instant::now());
    }

    /// [`Core::finish`] with the time the outcome was read (a vendor session reads a batch of
    /// answers at one instant), saving a clock read per message.
    pub fn finish_at(&self, job: &Job, result: Result<u64, CommandStatus>, now: Instant) {
        self.finish_confirmed(job, result, now, None)
    }

    /// [`Core::finish_at`], with the core whose shard awaits the answer's writing
    /// ([`crate::answers`]) when the message was stored there.
    fn finish_confirmed(
        &self,
        job: &Job,
        result: Result<u64, CommandStatus>,
        now: Instant,
        confirm: Option<u16>,
    ) {
        match &result {
            Ok(_) => self.metrics.accepted.add(self.idx, 1),
            Err(_) => self.metrics.refused.add(self.idx, 1),
        };
        self.metrics.observe_submit(self.idx, now.saturating_duration_since(job.received));
        {
            let snap = self.snap();
            if let Some(c) = snap.customer_at(job.customer) {
                let counter = if result.is_ok() { &c.counters.accepted } else { &c.counters.refused };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            let route = if job.route_version == snap.version {
                snap.routes.routes.get(job.route as usize)
            } else {
                // A reload since it was routed: its route now, for the route's counters.
                snap.routes
                    .lookup(job.customer, &job.submit.source.addr, &job.submit.dest.addr)
                    .map(|(_, r)| r)
            };
            if let Some(r) = route {
                let counter = if result.is_ok() { &r.counters.accepted } else { &r.counters.refused };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.metrics.submit_results.add(
            self.idx,
            match &result {
                Ok(_) => 0,
                Err(st) => st.0,
            },
        );
        let mut answer_from_home = None;
        if let Err(st) = &result
            && !job.siblings.is_empty()
        {
            if st.is_temporary() || job.maybe_sent {
                // Not refused for good (the customer is told to try again) or perhaps sent: the
                // earlier parts wait in their group again, for the last part's retry (or expire
                // with stat UNKNOWN), rather than being reported undeliverable. The home core
                // answers the customer once they are back, so the retry cannot reach the group
                // before them.
                if let Some(mut back) = PartsBack::of(job) {
                    back.answer = Some((job.reply, *st));
                    answer_from_home = Some(back);
                }
            } else {
                self.derive_failed_siblings(job, *st);
            }
        }
        if job.receipt_derived {
            let refused = result.is_err();
            self.send(self.home_of(job.customer), CoreMsg::PartSettled { shown_id: job.shown_id, refused });
        }
        if result.is_err() && !job.maybe_sent {
            self.give_back_charge(job);
        }
        if let Some(sent) = job.sent_at {
            self.metrics.vendor_latency.observe(self.idx, now.saturating_duration_since(sent));
        }
        match answer_from_home {
            Some(back) => self.send(self.home_of(job.customer), CoreMsg::PartsBack(Box::new(back))),
            None => self.reply_confirmed(job.reply, result.map(|_| job.shown_id), confirm),
        }
    }

    /// Gives back what a message refused without having been sent took from the limits.
    fn give_back_charge(&self, job: &Job) {
        let ch = job.charge;
        if ch.segments == 0 {
            return;
        }
        let snap = self.snap();
        if let Some(c) = snap.customer_at(job.customer) {
            c.limiter.give_back(ch.segments);
            c.lease.give_back_from(ch.lease_gens[0], ch.segments);
        }
        if let Some(ci) = ch.campaign {
            // Indexes are those of the snapshot that admitted it; after a reload the source's
            // campaign is found again (a campaign kept by the reload keeps its window and lease,
            // so the refund lands where the charge was taken).
            let ci = if ch.version == snap.version {
                Some(ci)
            } else {
                // Only to the same campaign of the same brand: a reload may have moved the
                // source elsewhere, whose counts never had these segments.
                snap.campaigns
                    .lookup(&job.submit.source.addr)
                    .filter(|&now_ci| snap.campaigns.identity(now_ci) == ch.campaign_key)
            };
            if let Some(ci) = ci {
                snap.campaigns.give_back(ci, ch.segments, ch.at_ms, [ch.lease_gens[1], ch.lease_gens[2]]);
            }
        }
    }

    /// A vendor accepted `job` under `vendor_id`: answer the customer and store the message.
    pub fn accepted(&self, mut job: Box<Job>, vendor: u32, vendor_id: Bytes, now: Instant) {
        let canonical = canonical_id(&vendor_id);
        let rec = Record {
            msg_id: job.msg_id,
            shown_id: job.shown_id,
            customer: job.customer,
            vendor,
            vendor_id: crate::store::Small::new(&vendor_id),
            source: (
                job.submit.source.ton,
                job.submit.source.npi,
                crate::store::Small::new(&job.submit.source.addr),
            ),
            dest: (job.submit.dest.ton, job.submit.dest.npi, crate::store::Small::new(&job.submit.dest.addr)),
            submitted: job.submitted_unix_ms / 1000,
            submitted_ms: (job.submitted_unix_ms % 1000) as u16,
            state: MessageState::Enroute,
            final_at: 0,
            error: 0,
            receipts: job.receipts,
            // Only a refusal's handling reads them from the job.
            siblings: std::mem::take(&mut job.siblings),
        };
        let shard = shard_of(vendor, &shard_key(&canonical), self.cores());
        let key = vendor_key(vendor, &canonical);
        // Stored before the answer goes: the shard then awaits the answer's writing (a receipt
        // for the message waits for it), and the session reports it once written.
        let confirm = rec.receipts.any().then_some(shard as u16);
        self.send(shard, CoreMsg::Store(Box::new(rec), key));
        self.finish_confirmed(&job, Ok(job.shown_id), now, confirm);
    }

    /// Delivers an answer to a session here, or sends it to its core.
    pub fn reply(&self, reply: ReplyTo, result: Result<u64, CommandStatus>) {
        self.reply_confirmed(reply, result, None)
    }

    /// [`Core::reply`] for a stored message whose receipts wait for this answer to be written:
    /// `confirm` is the core whose shard is told ([`CoreMsg::Answered`]) once it is, or at once
    /// when it cannot be (the session is gone, its mailbox full).
    pub fn reply_confirmed(&self, reply: ReplyTo, result: Result<u64, CommandStatus>, confirm: Option<u16>) {
        if usize::from(reply.core) != self.idx {
            return self.send(usize::from(reply.core), CoreMsg::Done { reply, result, confirm });
        }
        match self.session_mailbox(reply.session, reply.generation) {
            Some(mb) => {
                if let Err(SessionMsg::Done { result, confirm, .. }) =
                    mb.push(SessionMsg::Done { reply, result, confirm })
                {
                    self.metrics.lost_answers.fetch_add(1, Ordering::Relaxed);
                    self.answer_written(confirm, result);
                }
            }
            None => {
                // The customer disconnected before its answer: the message went to the vendor
                // (its receipt will still find the customer), only the id cannot be given.
                self.metrics.orphan_answers.fetch_add(1, Ordering::Relaxed);
                self.answer_written(confirm, result);
            }
        }
    }

    /// Tells the shard `confirm` (if any) that the answer `result` gave the customer has been
    /// written (or never will be): its receipts need not wait any more.
    pub fn answer_written(&self, confirm: Option<u16>, result: Result<u64, CommandStatus>) {
        if let (Some(shard), Ok(id)) = (confirm, result) {
            self.send(usize::from(shard), CoreMsg::Answered(id));
        }
    }

    /// Sends `msg` (a receipt for the customer's home core) once the answer that gave the
    /// customer `shown_id` has been written, or now if it is not awaited here.
    fn deliver_after_answer(&self, shown_id: u64, msg: CoreMsg) {
        if let Err(msg) = self.answer_wait.borrow_mut().hold(shown_id, msg) {
            self.send_home(msg);
        }
    }

    /// Sends a receipt held by [`Core::deliver_after_answer`] to its customer's home core.
    fn send_home(&self, msg: CoreMsg) {
        let customer = match &msg {
            CoreMsg::Deliver(d) | CoreMsg::DerivedReceipt { delivery: d, .. } => d.customer,
            _ => return debug_assert!(false, "only receipts wait for answers"),
        };
        self.send(self.home_of(customer), msg);
    }

    /// Releases the receipts held for answers that were lost (see [`crate::answers`]), or all of
    /// them (a stopping node, whose customers have been written all they will be).
    pub fn release_answer_wait(&self, all: bool) -> usize {
        let out = match all {
            true => self.answer_wait.borrow_mut().take_all(),
            false => self.answer_wait.borrow_mut().rotate(),
        };
        let n = out.0.len();
        self.release(out);
        n
    }

    /// Sends on what waited for an answer: the shared-store writes, then the receipts.
    fn release(&self, (held, puts): crate::answers::Released<CoreMsg, Record>) {
        for record in puts {
            self.remote_push(RemoteOp::Put { record, new: true });
        }
        for m in held {
            self.send_home(m);
        }
    }

    /// A vendor sent a deliver_sm (receipt or MO) to a bind on this core.
    pub fn vendor_deliver(&self, vendor: u32, d: SubmitSm) {
        if is_receipt(d.esm_class) {
            self.metrics.receipts_in.fetch_add(1, Ordering::Relaxed);
            // A data_sm receipt (and some deliver_sm ones) carries its text in message_payload.
            let payload = if d.short_message.is_empty() { d.tlvs.message_payload() } else { None };
            let receipt = Receipt::parse_with_tlvs(
                payload.as_ref().unwrap_or(&d.short_message),
                d.tlvs.get_ref(tag::RECEIPTED_MESSAGE_ID),
                d.tlvs.message_state(),
                d.tlvs.get_ref(tag::NETWORK_ERROR_CODE),
            );
            let receipt = match receipt {
                Ok(p) => {
                    if let Some(e) = &p.ignored_tlv {
                        // The text stood in for it; the vendor should still hear of it. Counted
                        // each time, logged at most once a minute: a vendor that always sends it
                        // would otherwise log every receipt.
                        self.metrics.receipt_tlvs_ignored.fetch_add(1, Ordering::Relaxed);
                        let now = store_now();
                        if now >= self.tlv_warned_at.get() {
                            self.tlv_warned_at.set(now + 60);
                            tracing::warn!(vendor, "receipt TLV passed over, the text used instead: {e}");
                        }
                    }
                    p.receipt
                }
                Err(e) => {
                    self.metrics.receipts_unparsable.fetch_add(1, Ordering::Relaxed);
                    if let Some(skipped) = self.unreadable_receipt_log.allow(Instant::now()) {
                        tracing::warn!(vendor, skipped, "unreadable receipt: {e}");
                    }
                    return;
                }
            };
            let canonical = canonical_id(receipt.id.as_bytes());
            let shard = shard_of(vendor, &shard_key(&canonical), self.cores());
            // Passed on to the customer only when it is the 3 octets SMPP fixes: a deliver_sm may
            // carry one of another length (the receipt parser passes it over).
            let network_error = d.tlvs.get(tag::NETWORK_ERROR_CODE).filter(|nec| nec.len() == 3);
            let intermediate =
                esm_class_message_type(d.esm_class) == EsmMessageType::IntermediateNotification;
            let key = vendor_key(vendor, &canonical);
            self.send(
                shard,
                CoreMsg::Receipt(Box::new(VendorReceipt {
                    vendor,
                    receipt,
                    network_error,
                    key,
                    intermediate,
                })),
            );
        } else {
            self.metrics.mo_in.fetch_add(1, Ordering::Relaxed);
            let snap = self.snapshot();
            match snap.mo_owner(&d.dest.addr) {
                Some(customer) => {
                    // In a buffer of its own: an MO may wait hours for its customer to bind, and
                    // its fields are slices of the vendor's read buffer, which they would pin.
                    let body = owned_copy(d);
                    let delivery = Delivery { customer, token: 0, kind: Kind::Mo, body, attempts: 0 };
                    self.send(self.home_of(customer), CoreMsg::Deliver(Arc::new(delivery)));
                }
                None => {
                    self.metrics.mo_unroutable.fetch_add(1, Ordering::Relaxed);
                    if let Some(skipped) = self.mo_unroutable_log.allow(Instant::now()) {
                        let dest = String::from_utf8_lossy(&d.dest.addr);
                        tracing::warn!(vendor, %dest, skipped, "MO for a number no customer owns");
                    }
                }
            }
        }
    }

    fn apply_receipt(&self, r: Box<VendorReceipt>) {
        let now_ms = unix_now_ms();
        let now = now_ms / 1000;
        let mut store = self.store.borrow_mut();
        let Some(rec) = store.find_vendor_keyed_mut(r.vendor, r.receipt.id.as_bytes(), r.key) else {
            let (vendor, id) = (r.vendor, r.receipt.id.as_bytes().to_vec());
            // Parked for up to two minutes (of shared state answering, when configured): in
            // buffers of its own, not pinning the vendor's read buffer (after a restart without
            // Redis every receipt for older messages waits here).
            let r = Box::new(VendorReceipt {
                receipt: r.receipt.into_owned(),
                network_error: r.network_error.as_ref().map(|b| Bytes::copy_from_slice(b)),
                ..*r
            });
            // Two receipts before the submit_sm_resp (an intermediate one and the final one, in
            // either order): the final one waits, and an intermediate notification is not a final
            // one for carrying a final word (some vendors send ACCEPTD or DELIVRD as 0x20).
            let kept = store.park_unless(vendor, &id, r, store_now(), |old, new| {
                old.receipt.stat.is_final()
                    && !old.intermediate
                    && (new.intermediate || !new.receipt.stat.is_final())
            });
            if !kept {
                self.metrics.receipts_unmatched.fetch_add(1, Ordering::Relaxed);
                return;
            }
            drop(store);
            // Another node may have sent it (vendors deliver receipts on any bind).
            if self.remote_up() {
                self.remote_push(RemoteOp::Miss { vendor, id: Bytes::from(id) });
            }
            return;
        };
        let stat = r.receipt.stat;
        // A vendor repeating the final receipt (our deliver_sm_resp lost with its connection, so
        // it sends again after the reconnect): matched, counted, not delivered a second time.
        // The DELETED a cancel set ahead of the vendor's own receipt is not a repeat (once). A
        // plain UNKNOWN is not final (a final receipt may follow, and still goes), but the same
        // plain UNKNOWN again is a repeat too (not one after an intermediate UNKNOWN, which a
        // customer asking for final receipts only was not told).
        let repeated = rec.state == stat
            && !r.intermediate
            && ((rec.state.is_final() && !(stat == MessageState::Deleted && rec.receipts.take_cancelled()))
                || (stat == MessageState::Unknown && rec.receipts.plain_unknown()));
        // A late intermediate notification neither takes a final state back (query_sm would
        // then report the message as pending, and a cancel would go to the vendor again) nor
        // reaches the customer after its final receipt.
        let late = rec.state.is_final() && (r.intermediate || !stat.is_final());
        if repeated || late {
            self.metrics.receipts_matched.fetch_add(1, Ordering::Relaxed);
            self.metrics.receipts_repeated.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // An intermediate notification that carries a final word (ACCEPTD or DELIVRD as 0x20)
        // is not the message's outcome: the final receipt that follows is, and would otherwise
        // be taken for a repeat of it and never reach the customer.
        let outcome = !(r.intermediate && stat.is_final());
        if outcome {
            rec.state = stat;
            if stat.is_final() {
                rec.final_at = now;
            }
            rec.receipts.set_plain_unknown(stat == MessageState::Unknown && !r.intermediate);
        }
        // The error for query_sm: the network_error_code TLV's, else the receipt text's `err:`.
        if let Some(nec) = &r.network_error
            && nec.len() == 3
        {
            rec.error = u16::from_be_bytes([nec[1], nec[2]]);
        } else if let Some(smppgw_codec::receipt::ReceiptErr::Code(code)) = &r.receipt.err {
            rec.error = *code;
        }
        self.metrics.receipts_matched.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.metrics.receipts_by_state.0.get(usize::from(stat.as_u8())) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.remote_put(rec, false);
        if let Some(waited_ms) = rec.receipt_wait_ms(now_ms) {
            self.metrics.receipt_latency.observe(self.idx, std::time::Duration::from_millis(waited_ms));
        }
        let delivers = rec.receipts.delivers(stat, r.intermediate);
        if !delivers && rec.siblings.is_empty() {
            return;
        }
        let rec = rec.clone();
        drop(store);
        let snap = self.snapshot();
        let Some(c) = snap.customer_at(rec.customer) else { return };
        let mut r = r;
        complete_receipt(&mut r, &rec, now);
        let own = (rec.shown_id, rec.receipts, false);
        let ids = std::iter::once(own).chain(rec.siblings.iter().map(|s| (s.shown_id, s.wants, true)));
        for (shown, wants, derived) in ids {
            // The earlier parts take the last part's state whether or not the customer asked
            // to be told it (query_sm, the HTTP API and other nodes see it); each is told it as
            // its own registered_delivery asked.
            if wants.delivers(stat, r.intermediate) {
                let body = customer_receipt(&rec, &r, shown, c.id_style, derived);
                let delivery = Arc::new(Delivery {
                    customer: rec.customer,
                    token: 0,
                    kind: Kind::Receipt,
                    body,
                    attempts: 0,
                });
                // Not before the customer has been given the id it is for.
                self.deliver_after_answer(
                    rec.shown_id,
                    match derived {
                        true => CoreMsg::DerivedReceipt { delivery, shown_id: shown },
                        false => CoreMsg::Deliver(delivery),
                    },
                );
            }
            if derived && outcome {
                for core in 0..self.cores() {
                    self.send(
                        core,
                        CoreMsg::SetState { shown_id: shown, state: stat, error: Some(rec.error) },
                    );
                }
            }
        }
    }

    /// The earlier parts of a long message whose last part failed, under receipt_parts = "last"
    /// (only the last part asked the vendor for a receipt): each gets a derived receipt saying
    /// the message will not be delivered whole (UNDELIV, `err` the last part's status), so that
    /// no part the customer submitted waits forever for its receipt.
    fn derive_failed_siblings(&self, job: &Job, status: CommandStatus) {
        let parts = DerivedParts {
            customer: job.customer,
            source: &job.submit.source,
            dest: &job.submit.dest,
            submitted_unix_ms: job.submitted_unix_ms,
            shown_ids: &job.siblings,
        };
        // `err` has three digits: a status beyond (vendor-specific ones, 0x400 and up) is 999.
        self.derive_receipts(&parts, MessageState::Undeliverable, status.0.min(999) as u16);
    }

    /// Derived receipts (marked with [`TAG_DERIVED_RECEIPT`]) in `state` for parts of a long
    /// message that did not ask the vendor for their own, and their records set to it. Each
    /// part gets its receipt only if its registered_delivery asked for one in `state`, as for
    /// a vendor's receipt; its state is set either way (query_sm reads it).
    pub fn derive_receipts(&self, parts: &DerivedParts<'_>, state: MessageState, err: u16) {
        let snap = self.snapshot();
        let Some(c) = snap.customer_at(parts.customer) else { return };
        let now = unix_now();
        let submitted = parts.submitted_unix_ms / 1000;
        let small = crate::store::Small::new;
        let (src, dst) = (parts.source, parts.dest);
        let rec = Record {
            msg_id: 0,
            shown_id: 0,
            customer: parts.customer,
            vendor: 0,
            vendor_id: small(b""),
            source: (src.ton, src.npi, small(&src.addr)),
            dest: (dst.ton, dst.npi, small(&dst.addr)),
            submitted,
            submitted_ms: 0,
            state,
            final_at: now,
            error: 0,
            receipts: Wanted::FINAL,
            siblings: Vec::new(),
        };
        let Ok(placeholder) = smppgw_codec::receipt::ReceiptId::new(Bytes::from_static(b"0")) else { return };
        let date = |t: u64| smppgw_codec::receipt::ReceiptDate::parse(&crate::io::smpp_time(t)[..12]);
        let mut receipt = Receipt::new(placeholder, state);
        receipt.sub = Some(1);
        receipt.dlvrd = Some(u16::from(state == MessageState::Delivered));
        receipt.submit_date = date(submitted);
        receipt.done_date = date(now);
        receipt.err = Some(smppgw_codec::receipt::ReceiptErr::Code(err));
        // Every Appendix B field, an empty text included (as for the vendor's own receipts).
        receipt.text = Some(Bytes::new());
        let r = VendorReceipt { vendor: 0, receipt, network_error: None, key: 0, intermediate: false };
        let home = self.home_of(parts.customer);
        for part in parts.shown_ids {
            let shown = part.shown_id;
            if part.wants.delivers(state, false) {
                let body = customer_receipt(&rec, &r, shown, c.id_style, true);
                let delivery = Arc::new(Delivery {
                    customer: parts.customer,
                    token: 0,
                    kind: Kind::Receipt,
                    body,
                    attempts: 0,
                });
                self.send(home, CoreMsg::DerivedReceipt { delivery, shown_id: shown });
            }
            for core in 0..self.cores() {
                self.send(core, CoreMsg::SetState { shown_id: shown, state, error: Some(err) });
            }
        }
    }

    /// Releases the derived receipts held longer than their wait (all of them when `all`: the
    /// node stops): delivered as before that answer was awaited.
    pub fn release_held_derived(&self, all: bool) -> usize {
        let out = self.part_settlements.borrow_mut().expire(Instant::now(), all);
        let n = out.len();
        for d in out {
            self.deliver_home(d);
        }
        n
    }

    /// A receipt or MO for a customer homed here: queued for its receiving sessions.
    fn deliver_home(&self, d: Arc<Delivery>) {
        // No receiving bind here: a node where the customer has one takes it from Redis.
        if self.remote_up() && !self.dispatcher.borrow().has_receiver(d.customer) {
            self.metrics.remote_deliveries_out.fetch_add(1, Ordering::Relaxed);
            self.remote_push(RemoteOp::Deliver(d));
            return;
        }
        let customer = d.customer;
        self.dispatcher.borrow_mut().push(d);
        self.pump_deliveries_for(customer);
    }

    fn pump_deliveries(&self) {
        let mut out = self.pending_out.borrow_mut();
        self.dispatcher.borrow_mut().next(Instant::now(), &mut out);
        for (session, d) in out.drain(..) {
            self.send(usize::from(session.core), CoreMsg::DeliverOn { session, delivery: d });
        }
    }

    /// [`Core::pump_deliveries`] for one customer, after a change to its queue alone.
    fn pump_deliveries_for(&self, customer: u32) {
        let mut out = self.pending_out.borrow_mut();
        self.dispatcher.borrow_mut().next_for(customer, Instant::now(), &mut out);
        for (session, d) in out.drain(..) {
            self.send(usize::from(session.core), CoreMsg::DeliverOn { session, delivery: d });
        }
    }

    /// Handles a batch of messages from another core or the local inbox, leaving `batch` empty.
    /// The records to store are prefetched first: each is a cache miss in a table of millions,
    /// and started together they overlap instead of queueing one behind the other.
    pub fn on_core_msgs(&self, batch: &mut Vec<CoreMsg>) {
        let mut msgs = batch.drain(..);
        // One clock read per batch for the records' arrival times (seconds: the TTL's unit).
        let mut now = None;
        while !msgs.as_slice().is_empty() {
            {
                let store = self.store.borrow();
                let mut nth = 0;
                for m in msgs.as_slice().iter().take(CORE_MSG_BATCH) {
                    match m {
                        CoreMsg::Store(rec, key) => {
                            store.prefetch(rec, *key, nth);
                            nth += 1;
                        }
                        CoreMsg::Receipt(r) => store.prefetch_vendor(r.key),
                        _ => {}
                    }
                }
            }
            for m in msgs.by_ref().take(CORE_MSG_BATCH) {
                match m {
                    CoreMsg::Store(rec, key) => {
                        let now = *now.get_or_insert_with(store_now);
                        self.store_record(*rec, key, now)
                    }
                    m => self.on_core_msg(m),
                }
            }
        }
    }

    fn store_record(&self, rec: Record, key: u64, now: u64) {
        let shown_id = rec.shown_id;
        // Its answer carries a request to say when it is written (see `Core::accepted`).
        if rec.receipts.any() {
            self.answer_wait.borrow_mut().expect(shown_id);
        }
        self.remote_put(&rec, true);
        let early = self.store.borrow_mut().insert_keyed(rec, key, now);
        if let Some(r) = early {
            self.metrics.receipts_early.fetch_add(1, Ordering::Relaxed);
            self.apply_receipt(r);
        }
        // A state derived for it before it got here (an earlier part of a long message).
        let derived = self.early_states.borrow_mut().take(shown_id);
        if let Some((state, error)) = derived {
            self.set_state(shown_id, state, error);
        }
    }

    /// Sets the state of the record the customer knows by `shown_id`, if this core holds it; false
    /// when it does not.
    fn set_state(&self, shown_id: u64, state: MessageState, error: Option<u16>) -> bool {
        let mut store = self.store.borrow_mut();
        let Some(r) = store.find_shown_mut(shown_id) else { return false };
        // As for the message's own receipts: a late intermediate state derived from the last
        // part does not take an earlier part's final state back.
        if r.state.is_final() && !state.is_final() {
            return true;
        }
        r.state = state;
        if let Some(e) = error {
            r.error = e;
        }
        if state.is_final() && r.final_at == 0 {
            r.final_at = unix_now();
        }
        let r = r.clone();
        drop(store);
        self.remote_put(&r, false);
        true
    }

    /// Handles a message from another core or the local inbox.
    pub fn on_core_msg(&self, msg: CoreMsg) {
        match msg {
            CoreMsg::Job { slot, job } => self.accept_remote_job(&slot, job),
            CoreMsg::Op { slot, op } => {
                let mb = self.vendor_binds.borrow().get(&(op.vendor, slot)).map(|(_, m)| m.clone());
                match mb {
                    Some(mb) => {
                        if let Err(VendorMsg::Op(op)) = mb.push(VendorMsg::Op(op)) {
                            self.reply(op.reply, Err(CommandStatus::ESME_RSYSERR));
                        }
                    }
                    // The slot is gone here (a reload replaced the vendor's binds): another of
                    // the vendor's binds takes it, or it waits for one as at its first try.
                    None => self.dispatch_op(op),
                }
            }
            CoreMsg::Done { reply, result, confirm } => self.reply_confirmed(reply, result, confirm),
            CoreMsg::Answered(id) => {
                let out = self.answer_wait.borrow_mut().answered(id);
                self.release(out);
            }
            CoreMsg::Store(rec, key) => self.store_record(*rec, key, store_now()),
            CoreMsg::Receipt(r) => self.apply_receipt(r),
            CoreMsg::GroupPart(job) => self.group_part(job),
            CoreMsg::PartsBack(b) => {
                let PartsBack { key, ids, meta, answer } = *b;
                // After the stop's sweep of the groups nothing derives from them any more.
                let left = match self.parts_closed.get() {
                    true => ids,
                    false => self.part_groups.borrow_mut().put_back(&key, ids, meta, Instant::now()),
                };
                if !left.is_empty() {
                    // No room to wait for a retry: settled now, their state unknown.
                    let source = Address::new(meta.source.0, meta.source.1, key.1.clone());
                    let dest = Address::new(meta.dest.0, meta.dest.1, key.2.clone());
                    let parts = DerivedParts {
                        customer: key.0,
                        source: &source,
                        dest: &dest,
                        submitted_unix_ms: meta.submitted_unix_ms,
                        shown_ids: &left,
                    };
                    self.derive_receipts(&parts, MessageState::Unknown, 0);
                }
                if let Some((reply, st)) = answer {
                    self.reply(reply, Err(st));
                }
            }
            CoreMsg::Deliver(d) => self.deliver_home(d),
            CoreMsg::DerivedReceipt { delivery, shown_id } => {
                if self.refused_parts.borrow().contains(shown_id) {
                    self.metrics.derived_for_refused.fetch_add(1, Ordering::Relaxed);
                } else if crate::msgid::node_of(shown_id) != self.snap().config.server.node_id as u8
                    && self.remote_up()
                {
                    // Another node handled that part: only it knows whether it was refused.
                    self.remote_push(RemoteOp::DerivedCheck { delivery, shown_id });
                } else {
                    let now = self.part_settlements.borrow_mut().derived(shown_id, delivery);
                    if let Some(d) = now {
                        self.deliver_home(d);
                    }
                }
            }
            CoreMsg::PartSettled { shown_id, refused } => {
                if refused {
                    self.refused_parts.borrow_mut().insert(shown_id);
                }
                let settled = self.part_settlements.borrow_mut().settled(shown_id, refused);
                match settled {
                    crate::deliveries::Settled::Deliver(held) => {
                        for d in held {
                            self.deliver_home(d);
                        }
                    }
                    crate::deliveries::Settled::Dropped(n) => {
                        self.metrics.derived_for_refused.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    crate::deliveries::Settled::Nothing => {}
                }
            }
            CoreMsg::DeliverOn { session, delivery } => {
                let customer = delivery.customer;
                let token = delivery.token;
                match self.session_mailbox(session.session, session.generation) {
                    Some(mb) => {
                        if mb.push(SessionMsg::Deliver(delivery)).is_err() {
                            // Full: it stays open but takes nothing more.
                            let home = self.home_of(customer);
                            self.send(
                                home,
                                CoreMsg::DeliveryAck { customer, token, session, answer: Answer::NotSent },
                            );
                            self.send(home, CoreMsg::ReceiverDraining { customer, session });
                        }
                    }
                    // Gone: its Receiver down is on its way (or has been handled) and gives back
                    // what else it had.
                    None => {
                        let home = self.home_of(customer);
                        self.send(
                            home,
                            CoreMsg::DeliveryAck { customer, token, session, answer: Answer::NotSent },
                        );
                        self.send(home, CoreMsg::Receiver { customer, session, up: false });
                    }
                }
            }
            CoreMsg::DeliveryAck { customer, token, session, answer } => {
                match answer {
                    Answer::Ok => {
                        self.metrics.deliveries_ok.fetch_add(1, Ordering::Relaxed);
                    }
                    // Never reached the customer: no attempt, queued again.
                    Answer::NotSent => {}
                    _ => {
                        self.metrics.deliveries_failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                self.dispatcher.borrow_mut().ack(customer, token, session, answer, Instant::now());
                self.pump_deliveries_for(customer);
            }
            CoreMsg::Receiver { customer, session, up } => {
                {
                    let mut d = self.dispatcher.borrow_mut();
                    if up {
                        d.session_up(customer, session);
                    } else {
                        d.session_down(customer, session);
                    }
                }
                if !up {
                    self.hand_over_unreceived(customer);
                }
                self.pump_deliveries_for(customer);
            }
            CoreMsg::ReceiverDraining { customer, session } => {
                self.dispatcher.borrow_mut().session_draining(customer, session);
                self.hand_over_unreceived(customer);
                self.pump_deliveries_for(customer);
            }
            CoreMsg::Query { shown_id, customer, reply } => {
                let found =
                    self.store.borrow().find_shown(shown_id).filter(|r| r.customer == customer).map(|r| {
                        Box::new(Found { shard: self.idx as u16, record: r.clone(), shared: false })
                    });
                self.send(usize::from(reply.core), CoreMsg::QueryAnswer { reply, found });
            }
            CoreMsg::QueryAnswer { reply, found } => {
                if let Some(mb) = self.session_mailbox(reply.session, reply.generation) {
                    let _ = mb.push(SessionMsg::QueryAnswer { reply, found });
                }
            }
            CoreMsg::WantsReceipt { shown_id, receipts } => {
                let updated = self.store.borrow_mut().find_shown_mut(shown_id).map(|r| {
                    r.receipts = receipts;
                    r.clone()
                });
                if let Some(r) = updated {
                    self.remote_put(&r, false);
                }
            }
            CoreMsg::Adopt(rec) => {
                let mut store = self.store.borrow_mut();
                if store.find_shown(rec.shown_id).is_none() {
                    // A parked receipt for it (the vendor's id now known here) applies too.
                    let early = store.insert(*rec, store_now());
                    drop(store);
                    if let Some(r) = early {
                        self.apply_receipt(r);
                    }
                }
            }
            CoreMsg::Cancelled { shown_id } => {
                // Unless the vendor's DELETED (or another final receipt) got here first: then
                // any later one is a repeat.
                if let Some(r) = self.store.borrow_mut().find_shown_mut(shown_id)
                    && !r.state.is_final()
                {
                    r.receipts.cancelled();
                }
                if !self.set_state(shown_id, MessageState::Deleted, None) {
                    self.early_states.borrow_mut().put(shown_id, MessageState::Deleted, None, Instant::now());
                }
            }
            CoreMsg::SetState { shown_id, state, error } => {
                // Every core is told; the one whose store gets the record later keeps it briefly.
                if !self.set_state(shown_id, state, error) {
                    self.early_states.borrow_mut().put(shown_id, state, error, Instant::now());
                }
            }
        }
    }
}

/// The id spellings each vendor's receipts may use, by vendor index.
fn vendor_radix(snap: &Snapshot) -> Vec<crate::store::Radix> {
    snap.vendors
        .iter()
        .map(|v| {
            v.as_ref().map_or(crate::store::Radix::BOTH, |v| {
                crate::store::Radix::receipt_to_record(v.cfg.id_format)
            })
        })
        .collect()
}

/// Fills the Appendix B fields a vendor's receipt left out (one that carries only TLVs has
/// none) from what the gateway knows: one message submitted, delivered or not by its state,
/// the submit date, the done date (when the receipt came, whatever its state: ESME parsers such
/// as Cloudhopper's refuse a receipt without one, as derived receipts already have), the error
/// from the network_error_code TLV (at most 999: `err` has three digits; else 0), and an empty
/// text (the gateway keeps no message text). The vendor's own `err` stays.
fn complete_receipt(r: &mut VendorReceipt, rec: &Record, now: u64) {
    let x = &mut r.receipt;
    if x.sub.is_some()
        && x.dlvrd.is_some()
        && x.submit_date.is_some()
        && x.done_date.is_some()
        && x.err.is_some()
        && x.text.is_some()
    {
        return;
    }
    let date = |t: u64| smppgw_codec::receipt::ReceiptDate::parse(&crate::io::smpp_time(t)[..12]);
    x.sub.get_or_insert(1);
    x.dlvrd.get_or_insert(u16::from(x.stat == MessageState::Delivered));
    if x.submit_date.is_none() {
        x.submit_date = date(rec.submitted);
    }
    if x.done_date.is_none() {
        x.done_date = date(now);
    }
    if x.err.is_none() {
        let code = match r.network_error.as_deref() {
            Some([_, hi, lo]) => u16::from_be_bytes([*hi, *lo]).min(smppgw_codec::receipt::ERR_CODE_MAX),
            _ => 0,
        };
        x.err = Some(smppgw_codec::receipt::ReceiptErr::Code(code));
    }
    x.text.get_or_insert_with(Bytes::new);
}

/// The receipt a customer gets: the vendor's receipt with our id in the text and in
/// receipted_message_id, addressed back from the recipient to the originator.
fn customer_receipt(
    rec: &Record,
    r: &VendorReceipt,
    shown: u64,
    style: crate::msgid::IdStyle,
    derived: bool,
) -> SubmitSm {
    let mut idbuf = [0u8; 20];
    let id = format_id(shown, style, &mut idbuf);
    let (src, dst) = (rec.dest.2.as_bytes(), rec.source.2.as_bytes());
    // Both addresses, the text and the TLVs share one allocation (one free, on whichever core
    // the customer's answer comes back to).
    let tlv_room = 4 + id.len() + 1 + 5 + r.network_error.as_ref().map_or(0, |n| 4 + n.len()) + 5;
    let mut buf = BytesMut::with_capacity(160 + src.len() + dst.len() + tlv_room);
    buf.extend_from_slice(src);
    buf.extend_from_slice(dst);
    let dates = smppgw_codec::receipt::DateStyle::Standard;
    if r.receipt.format_with_id_into(id, &mut buf, dates).is_err() {
        // Our ids are always valid receipt ids; should one not be, the vendor's text goes as it was.
        r.receipt.format_into_as(&mut buf, dates);
    }
    let mut tlvs = TlvsBuilder::after(buf)
        .cstr(tag::RECEIPTED_MESSAGE_ID, id)
        .u8(tag::MESSAGE_STATE, r.receipt.stat.as_u8());
    if let Some(nec) = &r.network_error {
        tlvs = tlvs.bytes(tag::NETWORK_ERROR_CODE, nec);
    }
    if derived {
        tlvs = tlvs.u8(TAG_DERIVED_RECEIPT, 1);
    }
    let (mut text, tlvs) = tlvs.split();
    let source_addr = text.split_to(src.len());
    let dest_addr = text.split_to(dst.len());
    if text.len() > smppgw_codec::SHORT_MESSAGE_MAX {
        text = text.slice(..smppgw_codec::SHORT_MESSAGE_MAX);
    }
    SubmitSm {
        source: Address { ton: rec.dest.0, npi: rec.dest.1, addr: source_addr },
        dest: Address { ton: rec.source.0, npi: rec.source.1, addr: dest_addr },
        esm_class: if r.intermediate { 0x20 } else { 0x04 },
        short_message: text,
        tlvs,
        ..SubmitSm::default()
    }
}

/// Parts of one long message to derive receipts for ([`Core::derive_receipts`]).
#[derive(Debug)]
pub struct DerivedParts<'a> {
    /// Customer index.
    pub customer: u32,
    /// The message's originator.
    pub source: &'a Address,
    /// Its recipient.
    pub dest: &'a Address,
    /// When the first of them was submitted.
    pub submitted_unix_ms: u64,
    /// The parts.
    pub shown_ids: &'a [crate::io::Sibling],
}

/// See [`CoreMsg::PartsBack`].
#[derive(Debug)]
pub struct PartsBack {
    /// The group.
    pub key: crate::io::PartKey,
    /// The earlier parts.
    pub ids: Vec<crate::io::Sibling>,
    /// Addresses' TON/NPI and time, for receipts derived later.
    pub meta: crate::io::PartMeta,
    /// The last part's answer, given once the parts are back in their group.
    pub answer: Option<(ReplyTo, CommandStatus)>,
}

impl PartsBack {
    /// What the last part `job` had taken from its group (None when it is not a part).
    fn of(job: &Job) -> Option<PartsBack> {
        let (key, _) = crate::io::part_key(job.customer, &job.submit)?;
        let s = &job.submit;
        Some(PartsBack {
            key: crate::io::owned_key(&key),
            ids: job.siblings.clone(),
            meta: crate::io::PartMeta {
                source: (s.source.ton, s.source.npi),
                dest: (s.dest.ton, s.dest.npi),
                submitted_unix_ms: job.submitted_unix_ms,
            },
            answer: None,
        })
    }
}

/// `d` with every field copied out of the buffer it was decoded from.
fn owned_copy(d: SubmitSm) -> SubmitSm {
    let own = |b: &Bytes| if b.is_empty() { Bytes::new() } else { Bytes::copy_from_slice(b) };
    let addr = |a: &smppgw_codec::Address| smppgw_codec::Address::new(a.ton, a.npi, own(&a.addr));
    SubmitSm {
        service_type: own(&d.service_type),
        source: addr(&d.source),
        dest: addr(&d.dest),
        schedule_delivery_time: own(&d.schedule_delivery_time),
        validity_period: own(&d.validity_period),
        short_message: own(&d.short_message),
        // Fails only for a receipt TLV of a length its definition does not allow, which a
        // deliver_sm may carry: the customer is not sent that (it could refuse the MO for it).
        tlvs: smppgw_codec::Tlvs::decode(own(d.tlvs.raw())).unwrap_or_else(|_| d.tlvs.well_formed()),
        ..d
    }
}

/// The available slot with the fewest jobs (the first of equals).
fn least_loaded<'a>(slots: impl Iterator<Item = &'a Arc<BindSlot>>, fill: Fill) -> Option<&'a Arc<BindSlot>> {
    let mut best: Option<(&Arc<BindSlot>, u32)> = None;
    for s in slots.filter(|s| s.available(fill)) {
        let load = s.load.load(Ordering::Relaxed);
        if best.is_none_or(|(_, b)| load < b) {
            best = Some((s, load));
        }
    }
    best.map(|(s, _)| s)
}

fn unreachable_job() -> Box<Job> {
    // Only jobs are pushed where these conversions run; a job is returned in every branch above.
    // Kept as a function so the impossible branch does not panic the core.
    Box::new(Job {
        msg_id: 0,
        shown_id: 0,
        reply: ReplyTo {
            core: 0,
            session: u32::MAX,
            generation: 0,
            seq: 0,
            kind: ReplyKind::Submit,
            nonce: 0,
        },
        customer: 0,
        submit: SubmitSm::default(),
        route: NOT_ROUTED,
        route_version: 0,
        tried: [0; FAILOVER_MAX],
        tried_len: 0,
        last_status: None,
        received: Instant::now(),
        submitted_unix_ms: 0,
        receipts: Wanted::NONE,
        siblings: Vec::new(),
        receipt_derived: false,
        charge: Charge::default(),
        maybe_sent: false,
        sent_at: None,
        hold_until: None,
        lost_bind_retries: 0,
    })
}

/// Formats our id for a customer.
pub fn shown_text(id: u64, style: crate::msgid::IdStyle) -> Bytes {
    let mut buf = [0u8; 20];
    Bytes::copy_from_slice(format_id(id, style, &mut buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A one-core node's core with customer c1 and vendor v, driven by hand, and its inbox.
    fn hand_driven_core() -> (Core, Rc<Outbox>) {
        hand_driven_core_with(None)
    }

    fn hand_driven_core_with(remote: Option<crate::remote::RemoteLink>) -> (Core, Rc<Outbox>) {
        let mut cfg = crate::config::Config::default();
        cfg.server.cores = 1;
        cfg.server.receipt_store_max = 1_000;
        cfg.server.receipt_store_prealloc = false;
        cfg.customers.push(crate::config::CustomerConfig::new("c1", "unused"));
        cfg.vendors.push(crate::config::VendorConfig::new("v", "127.0.0.1", 1, "u", "p"));
        let snap = Arc::new(Snapshot::build(cfg, 1));
        let inbox = Rc::new(Mailbox::new(crate::limits::OUTBOX_MAX));
        (Core::new(0, snap, vec![inbox.clone()], Arc::new(Metrics::default()), remote), inbox)
    }

    /// Handles what the core sent itself; returns the receipts it sent on to the customer's
    /// home core instead of handling them (the customer's queue is not under test).
    fn run_inbox(core: &Core, inbox: &Outbox) -> Vec<Arc<Delivery>> {
        let mut out = Vec::new();
        loop {
            let mut batch = Vec::new();
            inbox.drain_into(&mut batch);
            if batch.is_empty() {
                return out;
            }
            let (deliveries, rest): (Vec<_>, Vec<_>) =
                batch.into_iter().partition(|m| matches!(m, CoreMsg::Deliver(_)));
            out.extend(deliveries.into_iter().filter_map(|m| match m {
                CoreMsg::Deliver(d) => Some(d),
                _ => None,
            }));
            core.on_core_msgs(&mut rest.into_iter().collect());
        }
    }

    fn accepted_then_receipted(core: &Core, inbox: &Outbox, reply: ReplyTo, vendor_id: &str) {
        let job = Job::new(1, 42, reply, 0, SubmitSm::default(), Instant::now(), Wanted::FINAL, Vec::new());
        core.accepted(job, 0, Bytes::copy_from_slice(vendor_id.as_bytes()), Instant::now());
        let text = format!(
            "id:{vendor_id} sub:001 dlvrd:001 submit date:2611271200 done date:2611271201 stat:DELIVRD err:000 text:x"
        );
        let d = SubmitSm { esm_class: 0x04, short_message: Bytes::from(text), ..SubmitSm::default() };
        core.vendor_deliver(0, d);
        assert!(run_inbox(core, inbox).is_empty(), "nothing for the customer before its answer");
    }

    #[test]
    fn a_receipt_waits_until_the_session_has_written_its_messages_answer() {
        // Goal: the vendor's receipt, matched before the customer's session has written the
        // submit_sm_resp that gives the id, reaches the customer only after that answer is
        // written (so a customer never gets a receipt for an id it was not given yet).
        let (core, inbox) = hand_driven_core();
        let session = Rc::new(Mailbox::new(16));
        let (slot, generation) = core.add_session(session.clone());
        let reply = ReplyTo { core: 0, session: slot, generation, seq: 7, kind: ReplyKind::Submit, nonce: 0 };
        accepted_then_receipted(&core, &inbox, reply, "abc123");
        // The session takes its answer, which asks to be confirmed once written ...
        let mut msgs = Vec::new();
        session.drain_into(&mut msgs);
        let Some(SessionMsg::Done { result: Ok(42), confirm: Some(shard), .. }) = msgs.pop() else {
            panic!("the session was not sent its answer: {msgs:?}")
        };
        assert!(run_inbox(&core, &inbox).is_empty(), "still held while the answer is unwritten");
        // ... and once written, says so: the receipt goes, rewritten to the id it was given.
        core.answer_written(Some(shard), Ok(42));
        let out = run_inbox(&core, &inbox);
        assert_eq!(out.len(), 1, "the held receipt goes once the answer is written");
        let r = Receipt::parse(&out[0].body.short_message).expect("Appendix B text");
        assert_eq!(r.id.as_str(), "2a");
        // A later receipt for the same message waits for nothing.
        let again = SubmitSm {
            esm_class: 0x04,
            short_message: Bytes::from_static(b"id:abc123 sub:001 dlvrd:000 submit date:2611271200 done date:2611271201 stat:ENROUTE err:000 text:x"),
            ..SubmitSm::default()
        };
        core.vendor_deliver(0, again);
        let _ = run_inbox(&core, &inbox);
        assert!(!core.answer_wait.borrow().is_waiting(42));
    }

    #[test]
    fn restored_messages_are_written_to_the_shared_store() {
        // Goal: a node that stopped while Redis was down kept its messages in the state file;
        // restored at the next start, they are written to Redis too, so that a receipt the
        // vendor sends to another node finds them (and the next clean stop, with Redis up,
        // does not skip them as being there already). They stayed local only.
        let (core, inbox) = hand_driven_core();
        let session = Rc::new(Mailbox::new(16));
        let (slot, generation) = core.add_session(session);
        let reply = ReplyTo { core: 0, session: slot, generation, seq: 7, kind: ReplyKind::Submit, nonce: 0 };
        let job = Job::new(1, 42, reply, 0, SubmitSm::default(), Instant::now(), Wanted::FINAL, Vec::new());
        core.accepted(job, 0, Bytes::from_static(b"abc123"), Instant::now());
        let _ = run_inbox(&core, &inbox);
        let left = core.take_left_at_exit(true);
        assert_eq!(left.carried.records.len(), 1, "kept: its receipt is still to come");

        let (end, links) = crate::remote::link();
        end.up.store(true, Ordering::Release);
        let (next, _inbox) = hand_driven_core_with(Some(links.make()));
        assert_eq!(next.restore(left.carried), 0, "none expired");
        next.flush_remote();
        let puts: Vec<(u64, bool)> = end
            .ops
            .try_iter()
            .flatten()
            .filter_map(|op| match op {
                RemoteOp::Put { record, new } => Some((record.shown_id, new)),
                _ => None,
            })
            .collect();
        assert_eq!(puts, vec![(42, true)], "the restored message is written as a first write");
    }

    #[test]
    fn other_nodes_see_a_message_only_once_its_answer_is_written() {
        // Goal: with shared state, the message's record reaches the shared store (where another
        // node finds it for a receipt the vendor sends there) only after the submit_sm_resp
        // that gives the customer its id has been written, so that receipt cannot overtake the
        // answer either; it goes as one first write with the state a receipt gave it meanwhile.
        let (end, links) = crate::remote::link();
        end.up.store(true, Ordering::Release);
        let (core, inbox) = hand_driven_core_with(Some(links.make()));
        let puts = |core: &Core| {
            core.flush_remote();
            let mut out = Vec::new();
            for batch in end.ops.try_iter() {
                for op in batch {
                    if let RemoteOp::Put { record, new } = op {
                        out.push((record.msg_id, record.state, new));
                    }
                }
            }
            out
        };
        let session = Rc::new(Mailbox::new(16));
        let (slot, generation) = core.add_session(session.clone());
        let reply = ReplyTo { core: 0, session: slot, generation, seq: 7, kind: ReplyKind::Submit, nonce: 0 };
        accepted_then_receipted(&core, &inbox, reply, "abc123");
        assert_eq!(puts(&core), vec![], "nothing shared before the answer is written");
        let mut msgs = Vec::new();
        session.drain_into(&mut msgs);
        let Some(SessionMsg::Done { confirm: Some(shard), .. }) = msgs.pop() else { panic!("{msgs:?}") };
        core.answer_written(Some(shard), Ok(42));
        assert_eq!(run_inbox(&core, &inbox).len(), 1, "the receipt goes");
        assert_eq!(
            puts(&core),
            vec![(1, MessageState::Delivered, true)],
            "one first write, with its receipt's state"
        );
    }

    #[test]
    fn a_receipt_whose_answer_will_never_be_written_goes_at_once_or_after_the_wait_runs_out() {
        // Goal: nothing waits for an answer that will not be written: a session gone goes at
        // once; one that never says (its answer lost) is given up after two rotations.
        let (core, inbox) = hand_driven_core();
        let gone = ReplyTo { core: 0, session: 99, generation: 1, seq: 7, kind: ReplyKind::Submit, nonce: 0 };
        let job = Job::new(1, 42, gone, 0, SubmitSm::default(), Instant::now(), Wanted::FINAL, Vec::new());
        core.accepted(job, 0, Bytes::from_static(b"abc123"), Instant::now());
        let text = "id:abc123 sub:001 dlvrd:001 submit date:2611271200 done date:2611271201 stat:DELIVRD err:000 text:x";
        core.vendor_deliver(
            0,
            SubmitSm { esm_class: 0x04, short_message: Bytes::from(text), ..SubmitSm::default() },
        );
        assert_eq!(run_inbox(&core, &inbox).len(), 1, "the customer's session is gone: delivered at once");

        let session = Rc::new(Mailbox::new(16));
        let (slot, generation) = core.add_session(session.clone());
        let reply = ReplyTo { core: 0, session: slot, generation, seq: 8, kind: ReplyKind::Submit, nonce: 0 };
        accepted_then_receipted(&core, &inbox, reply, "def456");
        assert_eq!(core.release_answer_wait(false), 0, "one rotation: still waiting");
        assert_eq!(core.release_answer_wait(false), 1, "two: given up");
        assert_eq!(run_inbox(&core, &inbox).len(), 1);
        assert_eq!(core.answer_wait.borrow().expired, 1);
    }

    #[test]
    fn an_intermediate_notification_with_a_final_word_does_not_stand_for_the_final_receipt() {
        // Goal: a vendor that sends an intermediate notification (esm_class 0x20) saying ACCEPTD
        // or DELIVRD, then its final receipt (0x04), has the final one reach a customer that asked
        // for final receipts only, whether both came after the message was stored or before its
        // submit_sm_resp. Before, the intermediate one set the final state and the real receipt
        // was taken for a repeat; or, parked first, the final one was replaced by it.
        let (core, inbox) = hand_driven_core();
        let gone = ReplyTo { core: 0, session: 99, generation: 1, seq: 7, kind: ReplyKind::Submit, nonce: 0 };
        let receipt = |id: &str, esm_class: u8, stat: &str| SubmitSm {
            esm_class,
            short_message: Bytes::from(format!(
                "id:{id} sub:001 dlvrd:001 submit date:2611271200 done date:2611271201 stat:{stat} err:000 text:x"
            )),
            ..SubmitSm::default()
        };
        for (i, before_resp) in [false, true].into_iter().enumerate() {
            let vendor_id = format!("v{i}");
            let shown = 42 + i as u64;
            let job = Job::new(
                shown,
                shown,
                gone,
                0,
                SubmitSm::default(),
                Instant::now(),
                Wanted::FINAL,
                Vec::new(),
            );
            let accept = |job| core.accepted(job, 0, Bytes::from(vendor_id.clone()), Instant::now());
            let mut job = Some(job);
            if !before_resp {
                accept(job.take().expect("job"));
                let _ = run_inbox(&core, &inbox);
            }
            let (first, then) = if before_resp { (0x04, 0x20) } else { (0x20, 0x04) };
            core.vendor_deliver(0, receipt(&vendor_id, first, "DELIVRD"));
            core.vendor_deliver(
                0,
                receipt(&vendor_id, then, if then == 0x20 { "ACCEPTD" } else { "DELIVRD" }),
            );
            if let Some(job) = job.take() {
                accept(job);
            }
            let out = run_inbox(&core, &inbox);
            let finals: Vec<u8> = out.iter().map(|d| d.body.esm_class).collect();
            assert_eq!(finals, vec![0x04], "before its submit_sm_resp: {before_resp}");
        }
    }

    #[test]
    fn a_receipt_with_good_text_and_a_bad_tlv_reaches_the_customer() {
        // Goal: a vendor receipt is not dropped as unreadable for one bad TLV when its text
        // gives the id and state (the deliver_sm was already answered ESME_ROK).
        use smppgw_codec::Tlvs;
        let (core, inbox) = hand_driven_core();
        let bad: [(&[u8], Tlvs); 2] = [
            (b"abc123", Tlvs::builder().u8(tag::MESSAGE_STATE, 10).build()),
            (b"def456", Tlvs::builder().cstr(tag::RECEIPTED_MESSAGE_ID, b"12 3").build()),
        ];
        for (i, (vendor_id, tlvs)) in bad.into_iter().enumerate() {
            let gone =
                ReplyTo { core: 0, session: 99, generation: 1, seq: 7, kind: ReplyKind::Submit, nonce: 0 };
            let shown = 42 + i as u64;
            let job =
                Job::new(1, shown, gone, 0, SubmitSm::default(), Instant::now(), Wanted::FINAL, Vec::new());
            core.accepted(job, 0, Bytes::copy_from_slice(vendor_id), Instant::now());
            let text = format!("id:{} stat:DELIVRD", std::str::from_utf8(vendor_id).unwrap_or_default());
            let d =
                SubmitSm { esm_class: 0x04, short_message: Bytes::from(text), tlvs, ..SubmitSm::default() };
            core.vendor_deliver(0, d);
            let out = run_inbox(&core, &inbox);
            assert_eq!(out.len(), 1, "receipt {i} delivered");
            let r = Receipt::parse(&out[0].body.short_message).expect("Appendix B text");
            assert_eq!((r.id.as_str(), r.stat), (format!("{shown:x}").as_str(), MessageState::Delivered));
        }
        assert_eq!(core.metrics.receipts_unparsable.load(Ordering::Relaxed), 0);
        assert_eq!(core.metrics.receipt_tlvs_ignored.load(Ordering::Relaxed), 2, "counted");
    }

    #[test]
    fn a_pending_or_unknown_receipt_without_a_done_date_reaches_the_customer_with_one() {
        // Goal: a receipt the vendor wrote without `done date:` reaches the customer with one
        // whatever its state (ENROUTE, and UNKNOWN, which is not final): ESME parsers such as
        // Cloudhopper's refuse a receipt without it.
        let (core, inbox) = hand_driven_core();
        for (i, stat) in ["ENROUTE", "UNKNOWN", "DELIVRD"].into_iter().enumerate() {
            let gone =
                ReplyTo { core: 0, session: 99, generation: 1, seq: 7, kind: ReplyKind::Submit, nonce: 0 };
            let (shown, vendor_id) = (42 + i as u64, format!("v{i}"));
            let job =
                Job::new(1, shown, gone, 0, SubmitSm::default(), Instant::now(), Wanted::FINAL, Vec::new());
            core.accepted(job, 0, Bytes::from(vendor_id.clone()), Instant::now());
            let text =
                format!("id:{vendor_id} sub:001 dlvrd:000 submit date:2611271200 stat:{stat} err:000 text:x");
            let d = SubmitSm { esm_class: 0x04, short_message: Bytes::from(text), ..SubmitSm::default() };
            core.vendor_deliver(0, d);
            let out = run_inbox(&core, &inbox);
            assert_eq!(out.len(), 1, "the {stat} receipt is delivered");
            let text = String::from_utf8_lossy(&out[0].body.short_message).into_owned();
            let r = Receipt::parse(&out[0].body.short_message).expect("Appendix B text");
            assert_eq!(r.stat.stat_word(), stat, "{text}");
            assert!(r.done_date.is_some(), "{stat}: no done date in {text}");
            assert!(text.contains(" submit date:2611271200 done date:"), "{text}");
        }
    }

    #[test]
    fn a_receipts_err_keeps_the_vendors_text_and_has_at_most_three_digits() {
        // Goal: the customer's receipt text has the vendor's own `err:` when it wrote one, not
        // the network_error_code TLV's error, and one filled from that TLV is at most 999:
        // Cloudhopper refuses an err of more than three characters. The TLV itself goes on.
        use smppgw_codec::Tlvs;
        let (core, inbox) = hand_driven_core();
        let nec: &[u8] = &[3, 0x04, 0x01]; // GSM, error 1025
        for (i, (err, want)) in [(" err:005", "err:005"), ("", "err:999")].into_iter().enumerate() {
            let gone =
                ReplyTo { core: 0, session: 99, generation: 1, seq: 7, kind: ReplyKind::Submit, nonce: 0 };
            let (shown, vendor_id) = (42 + i as u64, format!("v{i}"));
            let job =
                Job::new(1, shown, gone, 0, SubmitSm::default(), Instant::now(), Wanted::FINAL, Vec::new());
            core.accepted(job, 0, Bytes::from(vendor_id.clone()), Instant::now());
            let text = format!("id:{vendor_id} sub:001 dlvrd:000 stat:UNDELIV{err} text:x");
            let tlvs = Tlvs::builder().bytes(tag::NETWORK_ERROR_CODE, nec).build();
            let d =
                SubmitSm { esm_class: 0x04, short_message: Bytes::from(text), tlvs, ..SubmitSm::default() };
            core.vendor_deliver(0, d);
            let out = run_inbox(&core, &inbox);
            assert_eq!(out.len(), 1, "receipt {i} delivered");
            let text = String::from_utf8_lossy(&out[0].body.short_message).into_owned();
            assert!(text.contains(&format!("stat:UNDELIV {want} ")), "{want} in {text}");
            assert_eq!(
                out[0].body.tlvs.get(tag::NETWORK_ERROR_CODE).as_deref(),
                Some(nec),
                "the TLV goes on"
            );
        }
    }

    #[test]
    fn a_repeated_unknown_receipt_reaches_the_customer_once_and_a_final_one_still_goes() {
        // Goal: a vendor sending the same plain stat:UNKNOWN receipt twice (it missed our
        // deliver_sm_resp) gives the customer one deliver_sm, as a repeated final receipt does;
        // UNKNOWN is not final, so the DELIVRD that follows still reaches the customer. A plain
        // UNKNOWN after an intermediate UNKNOWN is not a repeat.
        let (core, inbox) = hand_driven_core();
        let gone = ReplyTo { core: 0, session: 99, generation: 1, seq: 7, kind: ReplyKind::Submit, nonce: 0 };
        let wanted = Wanted::from_registered_delivery(0x11);
        let job = Job::new(1, 42, gone, 0, SubmitSm::default(), Instant::now(), wanted, Vec::new());
        core.accepted(job, 0, Bytes::from_static(b"abc123"), Instant::now());
        let receipt = |esm_class: u8, stat: &str| SubmitSm {
            esm_class,
            short_message: Bytes::from(format!(
                "id:abc123 sub:001 dlvrd:000 submit date:2611271200 done date:2611271201 stat:{stat} err:000 text:x"
            )),
            ..SubmitSm::default()
        };
        let stats = |out: &[Arc<Delivery>]| -> Vec<(u8, MessageState)> {
            out.iter()
                .map(|d| {
                    (d.body.esm_class, Receipt::parse(&d.body.short_message).expect("Appendix B text").stat)
                })
                .collect()
        };
        core.vendor_deliver(0, receipt(0x20, "UNKNOWN"));
        core.vendor_deliver(0, receipt(0x04, "UNKNOWN"));
        core.vendor_deliver(0, receipt(0x04, "UNKNOWN"));
        let out = run_inbox(&core, &inbox);
        assert_eq!(
            stats(&out),
            vec![(0x20, MessageState::Unknown), (0x04, MessageState::Unknown)],
            "the intermediate UNKNOWN and the plain one, but not its repeat"
        );
        assert_eq!(core.metrics.receipts_repeated.load(Ordering::Relaxed), 1);
        core.vendor_deliver(0, receipt(0x04, "DELIVRD"));
        core.vendor_deliver(0, receipt(0x04, "DELIVRD"));
        let out = run_inbox(&core, &inbox);
        assert_eq!(
            stats(&out),
            vec![(0x04, MessageState::Delivered)],
            "the final receipt after UNKNOWN goes, once"
        );
    }

    #[test]
    fn a_receipt_tlv_of_a_wrong_length_is_not_passed_on_to_the_customer() {
        // Goal: a deliver_sm the codec took with a receipt TLV of a length SMPP does not allow
        // gives its receipt (from the text), and neither that receipt nor an MO passes the TLV
        // on to a customer, which could refuse the deliver_sm for it.
        use smppgw_codec::Tlvs;
        let (core, inbox) = hand_driven_core();
        let gone = ReplyTo { core: 0, session: 99, generation: 1, seq: 7, kind: ReplyKind::Submit, nonce: 0 };
        let job = Job::new(1, 42, gone, 0, SubmitSm::default(), Instant::now(), Wanted::FINAL, Vec::new());
        core.accepted(job, 0, Bytes::from_static(b"abc123"), Instant::now());
        let raw = Tlvs::builder().bytes(tag::NETWORK_ERROR_CODE, &[3, 0]).build();
        let d = SubmitSm {
            esm_class: 0x04,
            short_message: Bytes::from_static(b"id:abc123 stat:UNDELIV err:005"),
            tlvs: raw.clone(),
            ..SubmitSm::default()
        };
        core.vendor_deliver(0, d);
        let out = run_inbox(&core, &inbox);
        assert_eq!(out.len(), 1, "the receipt is delivered");
        let tlvs = &out[0].body.tlvs;
        assert!(Tlvs::decode(tlvs.raw().clone()).is_ok(), "{tlvs:?}");
        assert!(!tlvs.contains(tag::NETWORK_ERROR_CODE));
        let r = Receipt::parse(&out[0].body.short_message).expect("Appendix B text");
        assert_eq!(r.err, Some(smppgw_codec::receipt::ReceiptErr::Code(5)), "the text's err");
        // An MO keeps its other TLVs and loses that one.
        let mo_tlvs =
            Tlvs::builder().u8(tag::SAR_TOTAL_SEGMENTS, 2).bytes(tag::RECEIPTED_MESSAGE_ID, b"").build();
        let copy = owned_copy(SubmitSm { tlvs: mo_tlvs, ..SubmitSm::default() });
        assert!(Tlvs::decode(copy.tlvs.raw().clone()).is_ok());
        assert_eq!(copy.tlvs.sar_total_segments(), Some(2));
        assert!(!copy.tlvs.contains(tag::RECEIPTED_MESSAGE_ID));
    }

    #[test]
    fn an_owned_copy_is_equal_and_shares_nothing_with_its_read_buffer() {
        // Goal: a queued MO keeps its content but not the vendor's read buffer.
        let wire = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
        let d = SubmitSm {
            source: smppgw_codec::Address::new(1, 1, wire.slice(0..11)),
            dest: smppgw_codec::Address::new(1, 1, wire.slice(11..16)),
            short_message: wire.slice(100..120),
            ..SubmitSm::default()
        };
        let copy = owned_copy(d.clone());
        assert_eq!(copy, d);
        let inside = |b: &bytes::Bytes| wire.as_ptr_range().contains(&b.as_ptr());
        assert!(![&copy.source.addr, &copy.dest.addr, &copy.short_message].into_iter().any(inside));
        // A data_sm MO's 30-digit source, longer than deliver_sm allows, is copied too.
        let long = SubmitSm { source: smppgw_codec::Address::new(1, 1, wire.slice(0..30)), ..d };
        let copy = owned_copy(long.clone());
        assert_eq!(copy, long);
        assert!(!inside(&copy.source.addr));
    }

    #[test]
    fn the_least_loaded_available_slot_is_chosen_and_the_first_of_equals() {
        let slot = |n: u32, up: bool, load: u32| {
            Arc::new(BindSlot {
                vendor: 0,
                slot: n,
                core: 0,
                up: std::sync::atomic::AtomicBool::new(up),
                load: std::sync::atomic::AtomicU32::new(load),
                capacity: 10,
                window: 4,
                effective_capacity: std::sync::atomic::AtomicU32::new(10),
                sent: Default::default(),
                reconnects: Default::default(),
                slowed: Default::default(),
                pace_bits: Default::default(),
                next_send_ms: Default::default(),
                last_error: Default::default(),
                last_error_at: Default::default(),
            })
        };
        let slots =
            [slot(0, true, 5), slot(1, false, 0), slot(2, true, 3), slot(3, true, 3), slot(4, true, 10)];
        // Slot 1 is down and slot 4 full; of 2 and 3, equally loaded, the first.
        assert_eq!(least_loaded(slots.iter(), Fill::Queue).map(|s| s.slot), Some(2));
        assert!(least_loaded(slots[4..].iter(), Fill::Queue).is_none(), "a full slot is not available");
        assert!(least_loaded(std::iter::empty(), Fill::Queue).is_none());
        // Up to the window (4) only: slot 0 (5) is past it, 2 and 3 (3) are not.
        assert_eq!(least_loaded(slots[..1].iter(), Fill::Window).map(|s| s.slot), None);
        assert_eq!(least_loaded(slots.iter(), Fill::Window).map(|s| s.slot), Some(2));
    }

    #[test]
    fn unix_ms_at_follows_the_wall_clock_for_instants_before_and_after_its_anchor() {
        // The wall clock is read before and after, so a thread descheduled in between on a busy
        // machine widens the bracket instead of failing; a wrong sign or unit falls outside it.
        let w0 = unix_now_ms();
        let now = Instant::now();
        let at = unix_ms_at(now);
        let w1 = unix_now_ms();
        assert!((w0.saturating_sub(1)..=w1 + 1).contains(&at), "{at} not within {w0}..={w1}");
        // An instant before the anchor and one after it, inside the refresh interval: exact
        // offsets from the same anchor (up to rounding to whole milliseconds).
        let before = unix_ms_at(now - Duration::from_millis(300));
        assert!((299..=301).contains(&at.abs_diff(before)), "{at} vs {before}");
        let after = unix_ms_at(now + Duration::from_millis(700));
        assert!((699..=701).contains(&after.abs_diff(at)), "{at} vs {after}");
        // Far from the anchor: read afresh, still the wall clock's time at that instant.
        let w0 = unix_now_ms();
        let later = Instant::now();
        let fresh = unix_ms_at(later + Duration::from_secs(5));
        let w1 = unix_now_ms();
        assert!((w0 + 4_999..=w1 + 5_001).contains(&fresh), "{fresh} not within {w0}..={w1} + 5 s");
    }
}
