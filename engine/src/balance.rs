//! Even placement of customer connections over the cores.
//!
//! Every core accepts on its own SO_REUSEPORT socket, and the kernel picks the socket by a hash
//! of the peer's address and port: with a handful of binds, one core often gets most of them
//! (3 of 4 is common), and a session never moves once bound. An accepting core that holds more
//! connections than the least loaded one hands the new socket over, so the cores end up within
//! one connection of each other whatever the hash did.
//!
//! Counts are relaxed atomics read and written only when a connection opens or closes, never on
//! the message path. The socket crosses cores as an owned file descriptor over a bounded
//! crossbeam channel per core ([`HANDOFF_QUEUE_MAX`]); when that queue is full the accepting
//! core keeps the connection (placement is an optimisation, never a reason to refuse a bind).

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::metrics::Metrics;

/// Connections waiting to be taken up by each core. A core takes its queue up every control
/// poll (`runtime::CONTROL_POLL_MS`), so this bounds a connection storm, not steady traffic.
pub const HANDOFF_QUEUE_MAX: usize = 1024;

/// A connection accepted on one core for another.
#[derive(Debug)]
pub struct Handoff {
    /// The connected socket (closed if the handoff is dropped).
    pub fd: OwnedFd,
    /// The peer, as the accepting core saw it.
    pub peer: SocketAddr,
}

/// Shared by all cores: open connections per core (in [`Metrics::connections_by_core`]) and each
/// core's handoff queue.
#[derive(Debug)]
pub struct Balancer {
    metrics: Arc<Metrics>,
    queues: Vec<Sender<Handoff>>,
}

impl Balancer {
    /// A balancer over `cores` cores, and the receiving end of each core's queue.
    pub fn new(cores: usize, metrics: Arc<Metrics>) -> (Arc<Balancer>, Vec<Receiver<Handoff>>) {
        let (queues, receivers): (Vec<_>, Vec<_>) =
            (0..cores).map(|_| crossbeam_channel::bounded(HANDOFF_QUEUE_MAX)).unzip();
        (Arc::new(Balancer { metrics, queues }), receivers)
    }

    /// The core a connection accepted on `here` should live on, counted there from now on:
    /// `here` unless another core has fewer connections (ties stay, so that a balanced gateway
    /// moves nothing).
    pub fn place(&self, here: usize) -> usize {
        let count = |c: usize| self.metrics.connections_by_core[c].load(Ordering::Relaxed);
        let mut best = here;
        for c in 0..self.queues.len() {
            if count(c) < count(best) {
                best = c;
            }
        }
        self.metrics.connections_by_core[best].fetch_add(1, Ordering::Relaxed);
        best
    }

    /// Sends a connection placed on core `to` by [`Balancer::place`]. On failure (queue full,
    /// core gone) the connection is given back, and counted again on `here`, which must keep it.
    pub fn hand(&self, here: usize, to: usize, h: Handoff) -> Result<(), Handoff> {
        let Some(q) = self.queues.get(to) else {
            return Err(self.take_back(here, to, h));
        };
        match q.try_send(h) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(h) | TrySendError::Disconnected(h)) => Err(self.take_back(here, to, h)),
        }
    }

    fn take_back(&self, here: usize, to: usize, h: Handoff) -> Handoff {
        self.keep(here, to);
        h
    }

    /// Undoes a [`Balancer::place`] on `to`: the connection stays on `here` after all.
    pub fn keep(&self, here: usize, to: usize) {
        if let Some(c) = self.metrics.connections_by_core.0.get(to) {
            c.fetch_sub(1, Ordering::Relaxed);
        }
        self.metrics.connections_by_core[here].fetch_add(1, Ordering::Relaxed);
    }

    /// A connection living on `core` closed.
    pub fn closed(&self, core: usize) {
        self.metrics.connections_by_core[core].fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handoff() -> Handoff {
        let f = std::fs::File::open("/dev/null").expect("a descriptor to stand for a connection");
        Handoff { fd: OwnedFd::from(f), peer: SocketAddr::from(([127, 0, 0, 1], 9)) }
    }

    fn counts(b: &Balancer) -> Vec<u64> {
        (0..b.queues.len()).map(|c| b.metrics.connections_by_core[c].load(Ordering::Relaxed)).collect()
    }

    #[test]
    fn connections_accepted_on_one_core_spread_evenly() {
        // Goal: whatever core the kernel hands four connections to, each of two cores ends up
        // with two; a tie keeps the connection where it was accepted.
        let (b, _rx) = Balancer::new(2, Arc::new(Metrics::default()));
        let placed: Vec<usize> = (0..4).map(|_| b.place(1)).collect();
        assert_eq!(placed, vec![1, 0, 1, 0]);
        assert_eq!(counts(&b), vec![2, 2]);
        b.closed(0);
        assert_eq!(b.place(1), 0, "the core that lost a connection gets the next one");
        assert_eq!(b.place(0), 0, "a tie stays where it was accepted");
        assert_eq!(counts(&b), vec![3, 2]);
    }

    #[test]
    fn a_full_queue_leaves_the_connection_on_the_accepting_core() {
        // Goal: when the target core's queue is full the accepting core gets the connection
        // back and the counts say where it really lives; nothing is dropped.
        let (b, rx) = Balancer::new(2, Arc::new(Metrics::default()));
        let busy = 10 * HANDOFF_QUEUE_MAX as u64;
        b.metrics.connections_by_core[1].store(busy, Ordering::Relaxed);
        for _ in 0..HANDOFF_QUEUE_MAX {
            assert_eq!(b.place(1), 0);
            assert!(b.hand(1, 0, handoff()).is_ok());
        }
        assert_eq!(counts(&b), vec![HANDOFF_QUEUE_MAX as u64, busy]);
        assert_eq!(b.place(1), 0);
        assert!(b.hand(1, 0, handoff()).is_err(), "the queue holds {HANDOFF_QUEUE_MAX}");
        assert_eq!(counts(&b), vec![HANDOFF_QUEUE_MAX as u64, busy + 1]);
        assert_eq!(rx[0].len(), HANDOFF_QUEUE_MAX);
    }
}
