//! Receipts held until their message's submit_sm_resp has been written to the customer.
//!
//! A vendor may send a receipt at once after accepting a message. The submit_sm_resp that gives
//! the customer the message's id travels one way (the vendor bind's core to the submitting
//! session), the receipt another (the store's shard, the customer's home core, one of its
//! receiving sessions, perhaps on another bind): without this, a customer with separate
//! transmitter and receiver binds could be sent a receipt for an id it has not been told yet.
//!
//! The shard that stores a message which wants receipts expects its answer
//! ([`AnswerWait::expect`]); the submitting session, once it has written the answer, says so
//! ([`AnswerWait::answered`]), which releases what was held for the id. An answer that is lost
//! (its session gone with it unsent, an outbox past its bound) is given up after one to two
//! rotation periods ([`AnswerWait::rotate`]), so nothing is held for ever.
//!
//! With several nodes, what another node can see of the message waits too (its shared-store
//! writes, `P`): a receipt the vendor sends to another node's bind finds the message only through
//! that write, so the write going after the answer keeps the order across nodes as well.

use crate::hash::{FxHashMap, FxHashSet};

/// Ids awaiting their answer per core, at most: beyond it a message's receipts are not held
/// (counted in [`AnswerWait::untracked`]). Entries leave within milliseconds (the time a
/// submit_sm_resp takes to be written), so this is many seconds of a core's peak.
pub const ANSWER_WAIT_MAX: usize = 200_000;

/// Period of [`AnswerWait::rotate`]: an answer not reported within one to two of these is taken
/// as lost, and what waited for it is released. Longer than the most a session may take to
/// write (`limits::SESSION_WRITE_MAX_MS`), after which it is closed and its answers reported.
pub const ANSWER_WAIT_ROTATE_MS: u64 = 65_000;

/// What waits for one id's answer.
#[derive(Debug)]
struct Entry<T, P> {
    /// Records stored under the id whose answer has not been reported: a submit_multi's
    /// destinations share one id (and one answer), and each reports it.
    expected: u32,
    /// Reported once: the answer is written, later receipts go at once.
    written: bool,
    held: Vec<T>,
    /// Shared-store writes held, the latest of each record (one per destination).
    puts: Vec<P>,
}

/// Ids awaiting their answer, with what is held for each, in two generations (an id lives in
/// one of them only).
#[derive(Debug)]
pub struct AnswerWait<T, P = ()> {
    current: FxHashMap<u64, Entry<T, P>>,
    previous: FxHashMap<u64, Entry<T, P>>,
    // Answers reported before their message reached the shard (they travel different channels).
    early: FxHashSet<u64>,
    early_previous: FxHashSet<u64>,
    /// Set by [`AnswerWait::take_all`]: nothing is awaited any more.
    closed: bool,
    /// Messages whose answer was not awaited because the bound was reached.
    pub untracked: u64,
    /// Ids given up by [`AnswerWait::rotate`] with something held for them.
    pub expired: u64,
}

impl<T, P> Default for AnswerWait<T, P> {
    fn default() -> Self {
        AnswerWait {
            current: FxHashMap::default(),
            previous: FxHashMap::default(),
            early: FxHashSet::default(),
            early_previous: FxHashSet::default(),
            closed: false,
            untracked: 0,
            expired: 0,
        }
    }
}

/// What an answer (or giving up on it) releases: the receipts held, in order, and the
/// shared-store writes held.
pub type Released<T, P> = (Vec<T>, Vec<P>);

impl<T, P> AnswerWait<T, P> {
    fn entry(&mut self, id: u64) -> Option<&mut Entry<T, P>> {
        match self.current.get_mut(&id) {
            Some(e) => Some(e),
            None => self.previous.get_mut(&id),
        }
    }

    /// A message for `id` reached the shard: what comes for it waits for its answer, unless that
    /// was already reported (or the bound is reached).
    pub fn expect(&mut self, id: u64) {
        if self.closed {
            return;
        }
        let early = !self.early.is_empty() || !self.early_previous.is_empty();
        if early && (self.early.remove(&id) || self.early_previous.remove(&id)) {
            return;
        }
        if let Some(e) = self.entry(id) {
            e.expected += 1;
            return;
        }
        if self.len() >= ANSWER_WAIT_MAX {
            self.untracked += 1;
            return;
        }
        self.current.insert(id, Entry { expected: 1, written: false, held: Vec::new(), puts: Vec::new() });
    }

    /// Holds `item` if `id`'s answer is awaited; otherwise gives it back (to be sent now).
    pub fn hold(&mut self, id: u64, item: T) -> Result<(), T> {
        match self.entry(id) {
            Some(e) if !e.written => {
                e.held.push(item);
                Ok(())
            }
            _ => Err(item),
        }
    }

    /// Holds the shared-store write `put` if `id`'s answer is awaited, in place of a held one
    /// that is `same` record (a later state of it replaces the earlier); otherwise gives it back
    /// (to be written now).
    pub fn hold_put(&mut self, id: u64, put: P, same: impl Fn(&P) -> bool) -> Result<(), P> {
        match self.entry(id) {
            Some(e) if !e.written => {
                match e.puts.iter_mut().find(|p| same(p)) {
                    Some(p) => *p = put,
                    None => e.puts.push(put),
                }
                Ok(())
            }
            _ => Err(put),
        }
    }

    /// Whether `id`'s answer is awaited.
    pub fn is_waiting(&self, id: u64) -> bool {
        let e = self.current.get(&id).or_else(|| self.previous.get(&id));
        e.is_some_and(|e| !e.written)
    }

    /// `id`'s answer has been written (or its customer is gone): what was held for it, in order.
    pub fn answered(&mut self, id: u64) -> Released<T, P> {
        let Some(e) = self.entry(id) else {
            // Its message has not reached the shard yet: it will not wait when it does.
            if self.len() < ANSWER_WAIT_MAX {
                self.early.insert(id);
            }
            return (Vec::new(), Vec::new());
        };
        e.written = true;
        e.expected = e.expected.saturating_sub(1);
        let out = (std::mem::take(&mut e.held), std::mem::take(&mut e.puts));
        if e.expected == 0 {
            self.current.remove(&id).or_else(|| self.previous.remove(&id));
        }
        out
    }

    /// Ends a period: ids awaited since before the last call are given up, and what was held
    /// for them is returned (to be sent now).
    pub fn rotate(&mut self) -> Released<T, P> {
        let gone = std::mem::replace(&mut self.previous, std::mem::take(&mut self.current));
        self.early_previous = std::mem::take(&mut self.early);
        let (mut out, mut puts) = (Vec::new(), Vec::new());
        for (_, e) in gone {
            if !e.held.is_empty() {
                self.expired += 1;
                out.extend(e.held);
            }
            puts.extend(e.puts);
        }
        (out, puts)
    }

    /// Everything held, for a node that stops (its sessions have written all they will): from
    /// now on nothing waits.
    pub fn take_all(&mut self) -> Released<T, P> {
        self.closed = true;
        let (previous, current) = (std::mem::take(&mut self.previous), std::mem::take(&mut self.current));
        self.early.clear();
        self.early_previous.clear();
        let (mut out, mut puts) = (Vec::new(), Vec::new());
        for e in previous.into_values().chain(current.into_values()) {
            out.extend(e.held);
            puts.extend(e.puts);
        }
        (out, puts)
    }

    /// Ids awaited, and early answers remembered.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len() + self.early.len() + self.early_previous.len()
    }

    /// Nothing awaited.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Items held.
    pub fn held(&self) -> usize {
        self.current.values().chain(self.previous.values()).map(|e| e.held.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Receipts as text, writes as (record, state).
    type W = AnswerWait<&'static str, (u32, u8)>;

    #[test]
    fn held_until_the_answer_then_released_in_order() {
        let mut w: W = AnswerWait::default();
        w.expect(7);
        assert!(w.is_waiting(7));
        assert_eq!(w.hold(7, "enroute"), Ok(()));
        assert_eq!(w.hold(7, "delivered"), Ok(()));
        assert_eq!(w.hold(8, "other"), Err("other"), "not awaited: sent at once");
        assert_eq!(w.answered(7).0, vec!["enroute", "delivered"]);
        assert!(!w.is_waiting(7));
        assert_eq!(w.hold(7, "late"), Err("late"), "answered: no longer held");
        assert!(w.is_empty());
    }

    #[test]
    fn an_answer_reported_before_its_message_arrives_means_nothing_waits() {
        let mut w: W = AnswerWait::default();
        assert!(w.answered(9).0.is_empty());
        w.expect(9);
        assert!(!w.is_waiting(9));
        assert_eq!(w.hold(9, "receipt"), Err("receipt"));
        assert!(w.is_empty(), "the early answer was used up");
    }

    #[test]
    fn a_lost_answer_is_given_up_after_two_periods() {
        let mut w: W = AnswerWait::default();
        w.expect(1);
        assert_eq!(w.hold(1, "r"), Ok(()));
        assert!(w.rotate().0.is_empty(), "one period: still awaited");
        assert!(w.is_waiting(1));
        assert_eq!(w.hold(1, "r2"), Ok(()), "held in the older generation too");
        assert_eq!(w.rotate().0, vec!["r", "r2"]);
        assert_eq!(w.expired, 1);
        assert!(w.is_empty());
        // An early answer is forgotten the same way.
        w.answered(2);
        w.rotate();
        w.rotate();
        w.expect(2);
        assert!(w.is_waiting(2));
    }

    #[test]
    fn an_answer_in_the_older_generation_still_releases() {
        let mut w: W = AnswerWait::default();
        w.expect(3);
        assert_eq!(w.hold(3, "a"), Ok(()));
        w.rotate();
        assert_eq!(w.answered(3).0, vec!["a"]);
        assert_eq!(w.held(), 0);
    }

    #[test]
    fn past_the_bound_nothing_more_is_awaited() {
        let mut w = AnswerWait::<u8>::default();
        for id in 0..ANSWER_WAIT_MAX as u64 {
            w.expect(id);
        }
        w.expect(u64::MAX);
        assert_eq!(w.untracked, 1);
        assert!(!w.is_waiting(u64::MAX));
        assert_eq!(w.hold(u64::MAX, 1), Err(1));
    }

    #[test]
    fn one_answer_for_several_records_of_one_id_releases_them_and_leaves_nothing_behind() {
        // A submit_multi's destinations share its id: each record is expected, each destination
        // reports the one answer; the first report releases, the last forgets the id.
        let mut w: W = AnswerWait::default();
        w.expect(5);
        w.expect(5);
        assert_eq!(w.hold(5, "a"), Ok(()));
        assert_eq!(w.answered(5).0, vec!["a"]);
        assert_eq!(w.hold(5, "b"), Err("b"), "the answer is written: no more waiting");
        assert!(w.answered(5).0.is_empty());
        assert!(w.is_empty(), "no early answer left behind to fill the bound");
        // Expected again across a rotation: still one entry.
        w.expect(6);
        w.rotate();
        w.expect(6);
        assert_eq!(w.len(), 1);
        w.answered(6);
        w.answered(6);
        assert!(w.is_empty());
    }

    #[test]
    fn take_all_releases_both_generations() {
        let mut w: W = AnswerWait::default();
        w.expect(1);
        assert_eq!(w.hold(1, "old"), Ok(()));
        w.rotate();
        w.expect(2);
        assert_eq!(w.hold(2, "new"), Ok(()));
        let mut all = w.take_all().0;
        all.sort();
        assert_eq!(all, vec!["new", "old"]);
        assert_eq!(w.held(), 0);
        assert_eq!(w.expired, 0, "released at a stop, not given up");
        w.expect(3);
        assert!(!w.is_waiting(3), "a stopped node holds nothing more");
    }

    #[test]
    fn shared_writes_wait_for_the_answer_the_latest_of_each_record() {
        // Goal: what other nodes see of a message (its shared-store writes) goes only once the
        // answer is written, one write per record with its latest state; a submit_multi's
        // records (one id) each keep theirs. Not awaited, a write goes at once.
        let mut w: W = AnswerWait::default();
        let same = |rec: u32| move |p: &(u32, u8)| p.0 == rec;
        assert_eq!(w.hold_put(1, (10, 0), same(10)), Err((10, 0)), "not awaited: written now");
        w.expect(1);
        w.expect(1);
        assert_eq!(w.hold_put(1, (10, 0), same(10)), Ok(()));
        assert_eq!(w.hold_put(1, (11, 0), same(11)), Ok(()));
        assert_eq!(w.hold_put(1, (10, 2), same(10)), Ok(()), "a receipt's state replaces the first");
        let (held, mut puts) = w.answered(1);
        assert!(held.is_empty());
        puts.sort();
        assert_eq!(puts, vec![(10, 2), (11, 0)]);
        assert_eq!(w.hold_put(1, (11, 2), same(11)), Err((11, 2)), "answered: written now");
        // Given up, or a node that stops: released too, without counting as a receipt given up.
        w.expect(2);
        assert_eq!(w.hold_put(2, (20, 0), same(20)), Ok(()));
        w.rotate();
        assert_eq!(w.rotate(), (vec![], vec![(20, 0)]));
        assert_eq!(w.expired, 0, "no receipt was held");
        w.expect(3);
        assert_eq!(w.hold_put(3, (30, 0), same(30)), Ok(()));
        assert_eq!(w.take_all(), (vec![], vec![(30, 0)]));
    }
}
