//! The cores' side of state shared between nodes (Redis, run by the control plane).
//!
//! A core never waits on Redis. What other nodes must see (every stored message and each change
//! of its state, receipts for customers bound elsewhere) and what this node must ask others
//! (a receipt or query_sm for a message this node does not hold) is batched into [`RemoteOp`]s
//! and handed to the control thread over one bounded channel per node. Answers come back through
//! the cores' control channels ([`crate::runtime::Control`]).
//!
//! When the channel is full, record writes and receipt lookups wait at the core (at most
//! [`REMOTE_RETRY_BATCHES`] batches, offered again before anything newer) for the control thread
//! to catch up; everything else, and what that bound cannot hold, falls back to local
//! behaviour, so nothing the node acknowledged is lost: stored messages stay in the local store
//! (other nodes just do not see them), receipts stay in the local per-customer queue, lookups
//! answer "not found".

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

use crate::core::ReplyTo;
use crate::deliveries::Delivery;
use crate::store::Record;

/// Ops a core gathers before handing them to the control thread in one batch.
pub const REMOTE_BATCH_MAX: usize = 512;
/// Batches queued from all cores to the control thread; a full queue makes ops wait or fall back
/// to local behaviour (see the module doc).
pub const REMOTE_CHANNEL_CAPACITY: usize = 1024;
/// Batches of record writes and lookups one core keeps while the channel is full (at most
/// [`REMOTE_BATCH_MAX`] ops each); beyond, the oldest fall back to local behaviour.
pub const REMOTE_RETRY_BATCHES: usize = 64;

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
    /// Record writes and lookups the full channel did not take, oldest first.
    retry: RefCell<std::collections::VecDeque<Vec<RemoteOp>>>,
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
            retry: RefCell::new(std::collections::VecDeque::new()),
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

    /// Hands the gathered ops over, after the ones waiting from earlier flushes; returns what
    /// the channel, full, could not take and cannot wait (see the module doc).
    pub fn flush(&self) -> Vec<RemoteOp> {
        // The next batch starts at full size: growing it push by push costs a dozen copies.
        let batch = std::mem::replace(&mut *self.buf.borrow_mut(), Vec::with_capacity(REMOTE_BATCH_MAX));
        let mut retry = self.retry.borrow_mut();
        // In order: a record's later write never overtakes its first.
        while let Some(waiting) = retry.pop_front() {
            if let Err(e) = self.tx.try_send(waiting) {
                retry.push_front(e.into_inner());
                break;
            }
        }
        if batch.is_empty() {
            return batch;
        }
        let batch = match retry.is_empty() {
            true => match self.tx.try_send(batch) {
                Ok(()) => return Vec::new(),
                Err(e) => e.into_inner(),
            },
            false => batch,
        };
        let (wait, mut local): (Vec<RemoteOp>, Vec<RemoteOp>) =
            batch.into_iter().partition(|op| matches!(op, RemoteOp::Put { .. } | RemoteOp::Miss { .. }));
        if !wait.is_empty() {
            if retry.len() >= REMOTE_RETRY_BATCHES
                && let Some(oldest) = retry.pop_front()
            {
                local.extend(oldest);
            }
            retry.push_back(wait);
        }
        local
    }

    /// At exit: the ops still waiting for room in the channel are given up; returns how many.
    pub fn abandon(&self) -> usize {
        let n = self.waiting();
        self.retry.borrow_mut().clear();
        n
    }

    /// Ops waiting for room in the channel.
    pub fn waiting(&self) -> usize {
        self.retry.borrow().iter().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn miss(n: u8) -> RemoteOp {
        RemoteOp::Miss { vendor: 0, id: Bytes::from(vec![n]) }
    }

    fn ids(batch: &[RemoteOp]) -> Vec<u8> {
        batch
            .iter()
            .map(|op| match op {
                RemoteOp::Miss { id, .. } => id[0],
                _ => u8::MAX,
            })
            .collect()
    }

    #[test]
    fn lookups_the_full_channel_did_not_take_go_later_in_order_and_within_their_bound() {
        // Goal: a control thread that falls behind (the channel full) does not make this node
        // forget receipt lookups and record writes: they go, oldest first, once it catches up;
        // only past the bound do the oldest fall back to local behaviour.
        let (end, links) = link();
        let l = links.make();
        for _ in 0..REMOTE_CHANNEL_CAPACITY {
            assert!(l.push(miss(0)).is_empty());
            assert!(l.flush().is_empty());
        }
        assert!(l.push(miss(1)).is_empty());
        assert!(l.flush().is_empty(), "kept, not fallen back");
        assert!(l.push(miss(2)).is_empty());
        assert!(l.flush().is_empty());
        assert_eq!(l.waiting(), 2);
        // The control thread takes one batch: the oldest waiting one goes first.
        let _ = end.ops.try_recv();
        assert!(l.flush().is_empty());
        assert_eq!(l.waiting(), 1);
        while end.ops.len() > 1 {
            let _ = end.ops.try_recv();
        }
        assert!(l.flush().is_empty());
        assert_eq!(l.waiting(), 0);
        let last: Vec<Vec<RemoteOp>> = end.ops.try_iter().collect();
        assert_eq!(last.iter().map(|b| ids(b)).collect::<Vec<_>>(), vec![vec![1], vec![2]]);

        // Full again, for longer than the bound holds: the oldest come back for local handling.
        for _ in 0..REMOTE_CHANNEL_CAPACITY {
            assert!(l.push(miss(0)).is_empty());
            assert!(l.flush().is_empty());
        }
        let mut fell_back = Vec::new();
        for n in 0..=REMOTE_RETRY_BATCHES {
            assert!(l.push(miss(n as u8)).is_empty());
            fell_back.extend(l.flush());
        }
        assert_eq!(ids(&fell_back), vec![0], "the oldest, once the bound is passed");
        assert_eq!(l.waiting(), REMOTE_RETRY_BATCHES);
    }

    #[test]
    fn deliveries_and_queries_do_not_wait_for_a_full_channel() {
        // Goal: what has a local answer (a query answered "not found", a receipt queued here)
        // gets it at once rather than waiting behind a control thread that fell behind.
        let (_end, links) = link();
        let l = links.make();
        for _ in 0..REMOTE_CHANNEL_CAPACITY {
            assert!(l.push(miss(0)).is_empty());
            assert!(l.flush().is_empty());
        }
        let d = Delivery {
            customer: 0,
            token: 0,
            kind: crate::deliveries::Kind::Mo,
            body: Default::default(),
            attempts: 0,
        };
        assert!(l.push(RemoteOp::Deliver(Arc::new(d))).is_empty());
        assert!(l.push(miss(9)).is_empty());
        let back = l.flush();
        assert!(matches!(back[..], [RemoteOp::Deliver(_)]), "{back:?}");
        assert_eq!(l.waiting(), 1, "the lookup waits");
    }
}
