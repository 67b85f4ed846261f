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

use crate::hash::{FxHashMap, FxHashSet};

/// Ids awaiting their answer per core, at most: beyond it a message's receipts are not held
/// (counted in [`AnswerWait::untracked`]). Entries leave within milliseconds (the time a
/// submit_sm_resp takes to be written), so this is many seconds of a core's peak.
pub const ANSWER_WAIT_MAX: usize = 200_000;

/// Period of [`AnswerWait::rotate`]: an answer not reported within one to two of these is taken
/// as lost, and what waited for it is released. Longer than the most a session may take to
/// write (`limits::SESSION_WRITE_MAX_MS`), after which it is closed and its answers reported.
pub const ANSWER_WAIT_ROTATE_MS: u64 = 65_000;

/// Ids awaiting their answer, with what is held for each, in two generations.
#[derive(Debug)]
pub struct AnswerWait<T> {
    current: FxHashMap<u64, Vec<T>>,
    previous: FxHashMap<u64, Vec<T>>,
    // Answers reported before their message reached the shard (they travel different channels).
    early: FxHashSet<u64>,
    early_previous: FxHashSet<u64>,
    /// Messages whose answer was not awaited because the bound was reached.
    pub untracked: u64,
    /// Ids given up by [`AnswerWait::rotate`] with something held for them.
    pub expired: u64,
}

impl<T> Default for AnswerWait<T> {
    fn default() -> Self {
        AnswerWait {
            current: FxHashMap::default(),
            previous: FxHashMap::default(),
            early: FxHashSet::default(),
            early_previous: FxHashSet::default(),
            untracked: 0,
            expired: 0,
        }
    }
}

impl<T> AnswerWait<T> {
    /// A message for `id` reached the shard: what comes for it waits for its answer, unless that
    /// was already reported (or the bound is reached).
    pub fn expect(&mut self, id: u64) {
        let early = !self.early.is_empty() || !self.early_previous.is_empty();
        if early && (self.early.remove(&id) || self.early_previous.remove(&id)) {
            return;
        }
        if self.len() >= ANSWER_WAIT_MAX {
            self.untracked += 1;
            return;
        }
        self.current.entry(id).or_default();
    }

    /// Holds `item` if `id`'s answer is awaited; otherwise gives it back (to be sent now).
    pub fn hold(&mut self, id: u64, item: T) -> Result<(), T> {
        match self.current.get_mut(&id).or_else(|| self.previous.get_mut(&id)) {
            Some(held) => {
                held.push(item);
                Ok(())
            }
            None => Err(item),
        }
    }

    /// Whether `id`'s answer is awaited.
    pub fn is_waiting(&self, id: u64) -> bool {
        self.current.contains_key(&id) || self.previous.contains_key(&id)
    }

    /// `id`'s answer has been written (or its customer is gone): what was held for it, in order.
    pub fn answered(&mut self, id: u64) -> Vec<T> {
        if let Some(held) = self.current.remove(&id).or_else(|| self.previous.remove(&id)) {
            return held;
        }
        // Its message has not reached the shard yet: it will not wait when it does.
        if self.len() < ANSWER_WAIT_MAX {
            self.early.insert(id);
        }
        Vec::new()
    }

    /// Ends a period: ids awaited since before the last call are given up, and what was held
    /// for them is returned (to be sent now).
    pub fn rotate(&mut self) -> Vec<T> {
        let gone = std::mem::replace(&mut self.previous, std::mem::take(&mut self.current));
        self.early_previous = std::mem::take(&mut self.early);
        let mut out = Vec::new();
        for (_, held) in gone {
            if !held.is_empty() {
                self.expired += 1;
                out.extend(held);
            }
        }
        out
    }

    /// Everything held, for a node that stops (its sessions have written all they will).
    pub fn take_all(&mut self) -> Vec<T> {
        let mut out = self.rotate();
        out.extend(self.rotate());
        out
    }

    /// Ids awaited, and early answers remembered.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len() + self.early.len() + self.early_previous.len()
    }

    /// Nothing awaited.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Items held, for the stop's count of what is still to deliver.
    pub fn held(&self) -> usize {
        self.current.values().chain(self.previous.values()).map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_until_the_answer_then_released_in_order() {
        let mut w = AnswerWait::default();
        w.expect(7);
        assert!(w.is_waiting(7));
        assert_eq!(w.hold(7, "enroute"), Ok(()));
        assert_eq!(w.hold(7, "delivered"), Ok(()));
        assert_eq!(w.hold(8, "other"), Err("other"), "not awaited: sent at once");
        assert_eq!(w.answered(7), vec!["enroute", "delivered"]);
        assert!(!w.is_waiting(7));
        assert_eq!(w.hold(7, "late"), Err("late"), "answered: no longer held");
        assert!(w.is_empty());
    }

    #[test]
    fn an_answer_reported_before_its_message_arrives_means_nothing_waits() {
        let mut w = AnswerWait::default();
        assert!(w.answered(9).is_empty());
        w.expect(9);
        assert!(!w.is_waiting(9));
        assert_eq!(w.hold(9, "receipt"), Err("receipt"));
        assert!(w.is_empty(), "the early answer was used up");
    }

    #[test]
    fn a_lost_answer_is_given_up_after_two_periods() {
        let mut w = AnswerWait::default();
        w.expect(1);
        assert_eq!(w.hold(1, "r"), Ok(()));
        assert!(w.rotate().is_empty(), "one period: still awaited");
        assert!(w.is_waiting(1));
        assert_eq!(w.hold(1, "r2"), Ok(()), "held in the older generation too");
        assert_eq!(w.rotate(), vec!["r", "r2"]);
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
        let mut w = AnswerWait::default();
        w.expect(3);
        assert_eq!(w.hold(3, "a"), Ok(()));
        w.rotate();
        assert_eq!(w.answered(3), vec!["a"]);
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
    fn take_all_releases_both_generations() {
        let mut w = AnswerWait::default();
        w.expect(1);
        assert_eq!(w.hold(1, "old"), Ok(()));
        w.rotate();
        w.expect(2);
        assert_eq!(w.hold(2, "new"), Ok(()));
        let mut all = w.take_all();
        all.sort();
        assert_eq!(all, vec!["new", "old"]);
        assert_eq!(w.held(), 0);
    }
}
