//! Quotas leased from a limit shared by every node (kept in Redis by the control plane).
//!
//! The hot path never talks to Redis: it takes units from a [`Lease`], one atomic per limit,
//! which the control thread tops up with grants it obtained for the current window. While the
//! control plane has no shared backend (the embedded default, or Redis unreachable) a lease is
//! inactive and admits everything, leaving the node's local limiter as the only limit.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};

/// Units of one shared limit that this node may still spend in the current window.
#[derive(Debug, Default)]
pub struct Lease {
    active: AtomicBool,
    tokens: AtomicI64,
    taken: AtomicU64,
    refused: AtomicU64,
    /// The most units one refused request wanted since the control plane last looked: it
    /// asks for at least that much (a message of more segments than its usual grant would
    /// otherwise be refused for good).
    need: AtomicU32,
    /// Units that may still be admitted ahead of the grant in a window after an idle one (see
    /// [`Lease::idle_window`]), and how many that window started with: the first request passes
    /// whatever its size, the next ones while they fit.
    lend_left: AtomicU64,
    lend_max: AtomicU64,
    /// The limit's units per window (0 until the control plane says): a request of more units
    /// than that is admitted when the lease holds a whole window (see [`Lease::try_take`]).
    window_limit: AtomicI64,
    /// Bumped by every [`Lease::activate`] (a new window's units): a refund of units taken
    /// under another generation belongs to a window that is over (see [`Lease::give_back_from`]).
    generation: AtomicU32,
}

impl Lease {
    /// An inactive lease (admits everything).
    pub fn new() -> Lease {
        Lease::default()
    }

    /// Takes `units` if the lease is inactive or holds that many; otherwise takes nothing.
    ///
    /// A request of more units than the whole window's limit can never be held: it is admitted
    /// when the lease holds a whole window (nothing else taken from it), the units beyond it
    /// owed and paid from the next grants, as the local limiter admits such a message after a
    /// quiet second and charges the time after it. It was refused for ever with Redis.
    #[inline]
    pub fn try_take(&self, units: u32) -> bool {
        if !self.active.load(Ordering::Relaxed) {
            return true;
        }
        let n = i64::from(units);
        let whole = self.window_limit.load(Ordering::Relaxed);
        let fits = |t: i64| t >= n || (whole > 0 && n > whole && t >= whole);
        // Taken only when there are enough (or they may be borrowed), never taken and put back:
        // a put-back landing after the control thread stored a new window's grant would add to
        // it.
        let took =
            self.tokens.fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| fits(t).then_some(t - n));
        if took.is_ok() || self.lend(units) {
            self.taken.fetch_add(u64::from(units), Ordering::Relaxed);
            true
        } else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            self.need.fetch_max(units, Ordering::Relaxed);
            false
        }
    }

    /// Admits `units` ahead of the grant if the window after an idle one still lends that many
    /// (or lent nothing yet): they stay owed (the tokens go negative), and the next grant pays
    /// them back. A grant landing in between pays them back as well; a new window's first
    /// grant (which ends the lending) is charged with them.
    fn lend(&self, units: u32) -> bool {
        let n = u64::from(units);
        let max = self.lend_max.load(Ordering::Acquire);
        let lent = self.lend_left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
            (left > 0 && (left >= n || left == max)).then(|| left.saturating_sub(n))
        });
        if lent.is_ok() {
            self.tokens.fetch_sub(i64::from(units), Ordering::AcqRel);
        }
        lent.is_ok()
    }

    /// Gives back `units` taken by [`Lease::try_take`] for a message refused after all (by
    /// another limit).
    pub fn give_back(&self, units: u32) {
        if self.active.load(Ordering::Relaxed) {
            self.tokens.fetch_add(i64::from(units), Ordering::AcqRel);
            let _ = self.taken.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_sub(u64::from(units)))
            });
        }
    }

    /// Whether the shared limit is being enforced.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// The current generation, to pass to [`Lease::give_back_from`] with units taken now.
    pub fn generation(&self) -> u32 {
        self.generation.load(Ordering::Acquire)
    }

    /// [`Lease::give_back`] of units taken under `generation`: nothing when the window they
    /// were counted in (in Redis too) is over, so a refund never adds to a later window.
    pub fn give_back_from(&self, generation: u32, units: u32) {
        if self.generation() == generation {
            self.give_back(units);
        }
    }

    /// Starts enforcing the shared limit with `tokens` units (a new window's first grant).
    pub fn activate(&self, tokens: i64) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.lend_left.store(0, Ordering::Release);
        self.tokens.store(tokens, Ordering::Release);
        self.active.store(true, Ordering::Release);
    }

    /// A new window for a node that was idle in the last one: it holds no units (it asks when
    /// it needs some, leaving the limit to the nodes with traffic), and up to `burst` units are
    /// admitted ahead of that ask (the first request whatever its size), so that a customer's
    /// occasional message, or a second's worth sent at once after a quiet second, is not
    /// refused for it. Units still owed (borrowed before, not yet granted) stay owed, and
    /// nothing more is lent until they are paid.
    pub fn idle_window(&self, burst: u64) {
        let owed = self.tokens().min(0);
        self.activate(owed);
        if owed == 0 {
            self.lend_max.store(burst.max(1), Ordering::Release);
            self.lend_left.store(burst.max(1), Ordering::Release);
        }
    }

    /// Sets the limit's units per window (see [`Lease::try_take`]).
    pub fn set_window_limit(&self, limit: u64) {
        self.window_limit.store(i64::try_from(limit).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    /// The most units a refused request wanted since the last call.
    pub fn take_need(&self) -> u32 {
        self.need.swap(0, Ordering::Relaxed)
    }

    /// Stops enforcing it (the shared backend is unreachable): only local limits apply.
    pub fn deactivate(&self) {
        // What is admitted from now on takes nothing from the lease: no refund may add to it.
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.active.store(false, Ordering::Release);
    }

    /// Enforces the shared limit again with the units held when it was deactivated (Redis is
    /// back within the same window, which counted them as this node's).
    pub fn resume(&self) {
        // Messages admitted while it was inactive took nothing: their refunds add nothing.
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.active.store(true, Ordering::Release);
    }

    /// Adds a grant to the current window's units.
    pub fn grant(&self, tokens: i64) {
        self.tokens.fetch_add(tokens, Ordering::AcqRel);
    }

    /// Units left in the current window.
    pub fn tokens(&self) -> i64 {
        self.tokens.load(Ordering::Acquire)
    }

    /// Units taken since start (the control plane sizes its next request from the rate of this).
    pub fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    /// Requests refused for lack of units since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// One shared limit the control plane keeps leases for: `limit` units per `window_ms` over all
/// nodes, under the Redis key `key` (relative to the configured prefix).
#[derive(Debug, Clone)]
pub struct LeaseSpec {
    /// Redis key (without prefix), e.g. `rate:customer:acme`.
    pub key: String,
    /// Units per window over all nodes.
    pub limit: u64,
    /// Window length in milliseconds (aligned to Redis's clock).
    pub window_ms: u64,
    /// Units a node may admit ahead of its grant in a window after one without traffic (see
    /// [`Lease::idle_window`]): a customer's throughput (a second's worth, as its local limiter
    /// allows after a quiet second), 1 for the others (one request, whatever its size).
    pub idle_burst: u64,
    /// The lease the hot path takes from.
    pub lease: std::sync::Arc<Lease>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refund_goes_back_only_into_the_window_it_was_taken_from() {
        // Goal: units taken in one window and refunded after the next window's grant (a message
        // held for a vendor across the change, then refused) do not add to the new window:
        // Redis counted them in the old one, and the new one would admit more than its share.
        let l = Lease::new();
        l.activate(10);
        assert!(l.try_take(4));
        let taken_in = l.generation();
        l.give_back_from(taken_in, 2);
        assert_eq!(l.tokens(), 8, "same window: back");
        l.activate(10);
        l.give_back_from(taken_in, 2);
        assert_eq!(l.tokens(), 10, "the window is over: nothing added");
        // Admitted while Redis was away (nothing taken from the lease), refused after it came
        // back within the window: the refund adds nothing either.
        l.deactivate();
        let while_away = l.generation();
        assert!(l.try_take(3), "inactive: admitted");
        l.resume();
        l.give_back_from(while_away, 3);
        assert_eq!(l.tokens(), 10, "units never taken are not given back");
    }

    #[test]
    fn a_request_larger_than_the_grant_is_remembered_for_the_next_ask() {
        let l = Lease::new();
        l.activate(1);
        assert!(!l.try_take(3), "three units, one held");
        assert!(!l.try_take(2));
        assert_eq!(l.take_need(), 3, "the largest refused");
        assert_eq!(l.take_need(), 0, "read once");
        assert_eq!(l.tokens(), 1, "nothing taken");
    }

    #[test]
    fn an_idle_window_admits_one_request_ahead_of_its_grant() {
        let l = Lease::new();
        l.idle_window(1);
        assert!(l.try_take(2), "the first, borrowed");
        assert_eq!(l.tokens(), -2, "owed");
        assert!(!l.try_take(1), "one only");
        l.grant(5);
        assert_eq!(l.tokens(), 3, "the grant pays the debt first");
        l.activate(0);
        assert!(!l.try_take(1), "a window with traffic borrows nothing");
    }

    #[test]
    fn an_idle_window_lends_its_burst_ahead_of_the_grant_and_no_more() {
        // Goal: a customer lease (a burst of a second's worth, here 10) of a node idle for a
        // window admits 10 units ahead of its grant in any number of requests, the first
        // whatever its size, and refuses the 11th; the grant pays the units back, and what is
        // still owed at the next window (Redis granted too little) is charged to it.
        let l = Lease::new();
        l.idle_window(10);
        for part in 0..3 {
            assert!(l.try_take(1), "part {part} of a 3-part message");
        }
        assert!(l.try_take(7), "seven more: ten in all");
        assert!(!l.try_take(1), "the 11th");
        assert_eq!(l.tokens(), -10, "owed");
        l.grant(4);
        assert!(!l.try_take(1), "still owed: nothing to take, nothing more lent");
        l.idle_window(10);
        assert_eq!(l.tokens(), -6, "owed across windows");
        assert!(!l.try_take(1), "nothing lent while owing");
        // The first request passes whatever its size; then only what fits.
        let l = Lease::new();
        l.idle_window(10);
        assert!(l.try_take(12), "one request larger than the burst");
        assert!(!l.try_take(1));
        let l = Lease::new();
        l.idle_window(10);
        assert!(l.try_take(8));
        assert!(!l.try_take(3), "8 lent, 3 more would pass 10");
        assert!(l.try_take(2));
    }

    #[test]
    fn a_request_larger_than_the_whole_limit_is_admitted_when_the_lease_holds_a_whole_window() {
        // Goal: at a limit of 10 a window, a 12-unit request passes once the lease holds all 10
        // (the 2 beyond owed), as the local limiter passes it after a quiet second; with less
        // held it waits, and a request within the limit still needs its units.
        let l = Lease::new();
        l.set_window_limit(10);
        l.activate(9);
        assert!(!l.try_take(12), "9 of the window's 10 held");
        assert_eq!(l.take_need(), 12, "remembered for the next ask");
        l.grant(1);
        assert!(l.try_take(12), "the whole window held");
        assert_eq!(l.tokens(), -2, "the rest owed");
        assert!(!l.try_take(1), "nothing more until it is paid");
        let l = Lease::new();
        l.set_window_limit(10);
        l.activate(10);
        assert!(l.try_take(4));
        assert!(!l.try_take(12), "not with part of the window spent");
        assert!(!l.try_take(7), "within the limit, the units are needed");
        assert!(l.try_take(6));
    }

    #[test]
    fn inactive_admits_everything() {
        let l = Lease::new();
        assert!(l.try_take(1_000_000));
        assert_eq!(l.taken(), 0);
    }

    #[test]
    fn active_admits_only_what_was_granted() {
        let l = Lease::new();
        l.activate(5);
        assert!(l.try_take(3));
        assert!(!l.try_take(3), "2 left, 3 asked");
        assert!(l.try_take(2));
        assert!(!l.try_take(1));
        assert_eq!(l.tokens(), 0);
        l.grant(4);
        assert!(l.try_take(4));
        assert_eq!(l.taken(), 9);
        assert_eq!(l.refused(), 2);
        l.deactivate();
        assert!(l.try_take(100));
    }

    #[test]
    fn concurrent_takers_never_exceed_the_grant() {
        let l = std::sync::Arc::new(Lease::new());
        l.activate(10_000);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || (0..10_000).filter(|_| l.try_take(1)).count())
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
        assert_eq!(total, 10_000);
    }
}
