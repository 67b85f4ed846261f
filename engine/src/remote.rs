//! The cores' side of state shared between nodes (Redis, run by the control plane).
//!
//! A core never waits on Redis. What other nodes must see (every stored message and each change
//! of its state, receipts for customers bound elsewhere) and what this node must ask others
//! (a receipt or query_sm for a message this node does not hold) is batched into [`RemoteOp`]s
//! and handed to the control thread over one bounded channel per node. Answers come back through
//! the cores' control channels ([`crate::runtime::Control`]).
//!
//! When the channel is full or Redis is down, each op falls back to local behaviour, so nothing
//! the node acknowledged is lost: stored messages stay in the local store (other nodes just do not
//! see them), receipts stay in the local per-customer queue, lookups answer "not found".

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

use crate::core::ReplyTo;
use crate::deliveries::Delivery;
use crate::store::Record;

/// Ops a core gathers before handing them to the control thread in one batch.
pub const REMOTE_BATCH_MAX: usize = 512;
/// Batches queued from all cores to the control thread; a full queue makes ops fall back to
/// local behaviour (see the module doc).
pub const REMOTE_CHANNEL_CAPACITY: usize = 1024;

/// What a core asks of the shared state.
#[derive(Debug)]
pub enum RemoteOp {
    /// Store (first time: `new`) or update a message's record.
    Put {
        /// The record as this node holds it (by value: no allocation per message).
        record: Record,
        /// First write: also index it by the customer's id.
        new: bool,
    },
    /// A vendor receipt matched no local message: find the message another node stored.
    Miss {
        /// Vendor index.
        vendor: u32,
        /// The id the vendor quoted.
        id: Bytes,
    },
    /// query_sm / cancel_sm / replace_sm found nothing final here: ask the shared store.
    Query {
        /// The customer's id of the message.
        shown_id: u64,
        /// Customer index (only its owner may see it).
        customer: u32,
        /// Where the answer goes.
        reply: ReplyTo,
    },
    /// A receipt or MO for a customer with no receiving bind on this node.
    Deliver(std::sync::Arc<Delivery>),
    /// A receipt derived for an earlier part of a long message that another node handled:
    /// delivered (to the customer's home core here) only if that node stored the part, that is
    /// if the vendor did not refuse it (a refused part has no record, and the customer no id
    /// for it).
    DerivedCheck {
        /// The derived receipt.
        delivery: std::sync::Arc<Delivery>,
        /// The part's id.
        shown_id: u64,
    },
}

/// The control thread's end of the link: every core's batches, and the flag it raises while
/// Redis answers.
#[derive(Debug, Clone)]
pub struct RemoteEnd {
    /// Batches of ops from the cores.
    pub ops: crossbeam_channel::Receiver<Vec<RemoteOp>>,
    /// Set by the control plane while the shared backend is reachable.
    pub up: Arc<AtomicBool>,
}

/// A core's end of the link.
#[derive(Debug)]
pub struct RemoteLink {
    tx: crossbeam_channel::Sender<Vec<RemoteOp>>,
    up: Arc<AtomicBool>,
    buf: RefCell<Vec<RemoteOp>>,
}

/// What makes the cores' ends of a link (one per core).
#[derive(Debug, Clone)]
pub struct RemoteLinks {
    tx: crossbeam_channel::Sender<Vec<RemoteOp>>,
    up: Arc<AtomicBool>,
}

impl RemoteLinks {
    /// One core's end.
    pub fn make(&self) -> RemoteLink {
        RemoteLink {
            tx: self.tx.clone(),
            up: self.up.clone(),
            buf: RefCell::new(Vec::with_capacity(REMOTE_BATCH_MAX)),
        }
    }
}

/// A new link: the control thread's end and the factory of the cores' ends.
pub fn link() -> (RemoteEnd, RemoteLinks) {
    let (tx, rx) = crossbeam_channel::bounded(REMOTE_CHANNEL_CAPACITY);
    let up = Arc::new(AtomicBool::new(false));
    (RemoteEnd { ops: rx, up: up.clone() }, RemoteLinks { tx, up })
}

impl RemoteLink {
    /// Whether the shared backend is reachable now.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Queues `op`; returns the ops that could not be handed over (channel full), which the
    /// caller handles locally.
    pub fn push(&self, op: RemoteOp) -> Vec<RemoteOp> {
        let full = {
            let mut b = self.buf.borrow_mut();
            b.push(op);
            b.len() >= REMOTE_BATCH_MAX
        };
        if full { self.flush() } else { Vec::new() }
    }

    /// Hands the gathered ops over; returns them when the channel is full.
    pub fn flush(&self) -> Vec<RemoteOp> {
        // The next batch starts at full size: growing it push by push costs a dozen copies.
        let batch = std::mem::replace(&mut *self.buf.borrow_mut(), Vec::with_capacity(REMOTE_BATCH_MAX));
        if batch.is_empty() {
            return batch;
        }
        match self.tx.try_send(batch) {
            Ok(()) => Vec::new(),
            Err(e) => e.into_inner(),
        }
    }
}
