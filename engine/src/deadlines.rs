//! The deadlines of a session's requests in flight, in the order they were sent, for its timer.
//!
//! Answered requests are not removed from the middle (a deque has no cheap way to): their
//! entries go stale and are skipped when reached. So that a queue behind one slow request does
//! not grow with the rate times the timeout, stale entries are dropped from the front on every
//! push and swept out whenever the queue outgrows [`DEADLINES_SLACK`] times the requests in
//! flight. Sans-IO: the owner says which entries are live.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Entries per request in flight (plus a floor of 16 requests) a queue may hold before its
/// stale entries are swept out.
pub const DEADLINES_SLACK: usize = 4;

/// `(deadline, sequence number)` in send order.
#[derive(Debug, Default)]
pub struct DeadlineQueue(VecDeque<(Instant, u32)>);

impl DeadlineQueue {
    /// Records `seq`'s deadline; `in_flight` requests are outstanding and `live` says whether an
    /// entry still belongs to one of them.
    pub fn push(
        &mut self,
        deadline: Instant,
        seq: u32,
        in_flight: usize,
        live: impl Fn(Instant, u32) -> bool,
    ) {
        while let Some(&(d, s)) = self.0.front() {
            if live(d, s) {
                break;
            }
            self.0.pop_front();
        }
        if self.0.len() >= DEADLINES_SLACK * (in_flight + 16) {
            self.0.retain(|&(d, s)| live(d, s));
        }
        self.0.push_back((deadline, seq));
    }

    /// The earliest entry (possibly stale).
    pub fn front(&self) -> Option<(Instant, u32)> {
        self.0.front().copied()
    }

    /// The first entry whose deadline is at or before `now`, taken off the queue (the caller
    /// checks it is still live).
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, u32)> {
        if self.0.front().is_some_and(|&(d, _)| d <= now) { self.0.pop_front() } else { None }
    }

    /// Entries held, stale ones included.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Forgets every entry.
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// A shorter timeout (a reload) applies to what is in flight too: each of `deadlines` (every
    /// request in flight, by sequence number) moves `by` earlier, and the queue is rebuilt from
    /// them in deadline order, its stale entries dropped. Kept in send order, an older, later
    /// deadline would sit ahead of the new requests' earlier ones and hold them up to the old
    /// timeout.
    pub fn shorten<'a>(&mut self, deadlines: impl Iterator<Item = (u32, &'a mut Instant)>, by: Duration) {
        let mut order: Vec<(Instant, u32)> = deadlines
            .map(|(seq, d)| {
                *d = d.checked_sub(by).unwrap_or(*d);
                (*d, seq)
            })
            .collect();
        order.sort_unstable();
        self.0 = order.into();
    }
}
