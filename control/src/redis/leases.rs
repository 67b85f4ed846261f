//! When a node asks Redis for units of a shared limit, and what it does with the answer: the
//! decisions of the lease loop, without Redis or a clock, so that window changes can be driven
//! in a unit test.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use smppgw_engine::lease::LeaseSpec;

/// A failed-short ask (Redis granted less than asked) is not repeated within this long: the
/// window is (nearly) used up.
const SHORT_RETRY_MS: u64 = 50;
/// Leases of windows at least this long (a 10DLC brand's day) start idle: a node asks for
/// units when a request needs them, not at start, so that nodes without that traffic do not
/// hold a share of a day's cap they will never send.
const IDLE_START_WINDOW_MS: u64 = 3_600_000;

/// The states of this node's leases, by limit key. The lease loop goes over every limit every
/// tick and a reload may bring tens of thousands of them, so each step is linear in the number
/// of limits (one hash lookup per limit) and the tick copies no key of a state it already has.
#[derive(Debug, Default)]
pub(crate) struct LeaseStates(HashMap<String, LeaseState>);

impl LeaseStates {
    /// After a reload: keeps the state of each limit still configured with the same lease, and
    /// drops the others (a limit removed, or whose value changed: its new lease asks at once).
    /// One lookup per state in a map of the specs' keys: comparing every state with every spec
    /// was quadratic (50,000 limited customers: 2.5 billion comparisons, seconds during which
    /// the single control thread wrote nothing to Redis, topped up no lease and answered no
    /// /health).
    pub(crate) fn retain_configured(&mut self, specs: &[LeaseSpec]) {
        let by_key: HashMap<&str, &LeaseSpec> = specs.iter().map(|s| (s.key.as_str(), s)).collect();
        self.0.retain(|k, st| {
            by_key.get(k.as_str()).is_some_and(|s| {
                // A lease kept across a reload (a campaign's, a brand's) may have a new limit:
                // what a whole window holds is the new one.
                let kept = st.is_for(s);
                if kept {
                    s.lease.set_window_limit(s.limit);
                }
                kept
            })
        });
    }

    /// The state of `s`'s lease, if it has one.
    pub(crate) fn get(&self, s: &LeaseSpec) -> Option<&LeaseState> {
        self.0.get(s.key.as_str())
    }

    /// The state of `s`'s lease, if it has one.
    pub(crate) fn get_mut(&mut self, s: &LeaseSpec) -> Option<&mut LeaseState> {
        self.0.get_mut(s.key.as_str())
    }

    /// Runs `f` on the state of `s`'s lease at a tick. A lease seen for the first time gets a
    /// state if `first_asks` allows (each new one takes one; otherwise `f` does not run): its
    /// key is copied then, once, not at every tick for every limit.
    pub(crate) fn at_tick(
        &mut self,
        s: &LeaseSpec,
        now: Instant,
        first_asks: &mut usize,
        f: impl FnOnce(&mut LeaseState),
    ) {
        let st = match self.0.get_mut(s.key.as_str()) {
            Some(st) => st,
            None if *first_asks == 0 => return,
            None => {
                *first_asks -= 1;
                self.0.entry(s.key.clone()).or_insert_with(|| LeaseState::new(s, now))
            }
        };
        f(st);
    }

    /// How many leases have a state.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

/// A lease's state on this node.
#[derive(Debug)]
pub(crate) struct LeaseState {
    window: i64,
    end: Instant,
    last_taken: u64,
    /// Units taken per tick, smoothed.
    rate: f64,
    /// Redis granted less than asked: the window is (nearly) used up; ask again only slowly.
    short_at: Option<Instant>,
    /// Units taken and requests refused when the current window began: a node that did
    /// neither in a window holds nothing in the next.
    taken_at_start: u64,
    refused_at_start: u64,
    /// The current window was idle-started (`Lease::idle_window`): no ask until a request
    /// needs units.
    idle: bool,
    /// The address of the lease this state is for, only compared: a reload that changes the
    /// limit makes a new lease, whose state starts again.
    lease: usize,
}

impl LeaseState {
    /// A lease seen for the first time: it asks at the next tick, or, for a long window, when a
    /// request needs units (one is admitted ahead of that ask).
    pub(crate) fn new(s: &LeaseSpec, now: Instant) -> LeaseState {
        s.lease.set_window_limit(s.limit);
        let idle = s.window_ms >= IDLE_START_WINDOW_MS;
        if idle {
            s.lease.idle_window(s.idle_burst);
        }
        LeaseState {
            window: -1,
            end: now,
            last_taken: s.lease.taken(),
            rate: 0.0,
            short_at: None,
            taken_at_start: s.lease.taken(),
            refused_at_start: s.lease.refused(),
            idle,
            lease: std::sync::Arc::as_ptr(&s.lease) as usize,
        }
    }

    /// Whether this state belongs to `s`'s lease (not to the one a reload replaced).
    pub(crate) fn is_for(&self, s: &LeaseSpec) -> bool {
        self.lease == std::sync::Arc::as_ptr(&s.lease) as usize
    }

    /// The number of the window Redis last granted units of (-1 before any).
    pub(crate) fn window(&self) -> i64 {
        self.window
    }

    /// Whether the window Redis last granted units of is still running at `now`.
    pub(crate) fn in_window(&self, now: Instant) -> bool {
        self.window >= 0 && now < self.end
    }

    /// One tick of the lease loop: how many units to ask Redis for now, if any.
    pub(crate) fn plan(&mut self, s: &LeaseSpec, now: Instant) -> Option<u64> {
        if self.idle && self.window < 0 && !s.lease.is_active() {
            // Idle-started and never granted, and Redis was away meanwhile (which deactivated
            // it): an inactive lease admits everything and so never records the need that would
            // make it ask. Redis answers again (this runs only then): idle-started again.
            s.lease.idle_window(s.idle_burst);
        }
        let taken = s.lease.taken();
        self.rate = 0.7 * self.rate + 0.3 * (taken.saturating_sub(self.last_taken)) as f64;
        self.last_taken = taken;
        let need = u64::from(s.lease.take_need());
        let limit = s.limit.max(1);
        // A window's units are spent until the next window's grant replaces them: at most a
        // tick and a round trip past its end (README, "Worst-case overshoot").
        let mut expired = self.window < 0 || now >= self.end;
        if expired && self.window >= 0 {
            let used = taken != self.taken_at_start || s.lease.refused() != self.refused_at_start || need > 0;
            (self.taken_at_start, self.refused_at_start) = (taken, s.lease.refused());
            if !used {
                // Idle for a whole window: hold nothing in this one (the other nodes' traffic
                // may use it), and ask when a request comes. Its end follows from the last one
                // Redis gave (windows are aligned to Redis's clock).
                let window_ms = s.window_ms.max(1);
                let behind = now.duration_since(self.end).as_millis() as u64 / window_ms + 1;
                self.window += behind as i64;
                self.end += Duration::from_millis(behind * window_ms);
                s.lease.idle_window(s.idle_burst);
                self.idle = true;
                expired = false;
            }
            // A node with traffic asks now and keeps what it held until the answer replaces it
            // (one round trip): emptied at once, it refused the requests of that round trip at
            // every window change, below the limit.
        }
        // What a request refused for lack of units wanted, and what was borrowed, at least.
        let owed = (-s.lease.tokens()).max(0) as u64;
        let want = ((limit / 50).max((self.rate * 10.0) as u64)).max(need + owed).clamp(1, limit);
        let low = s.lease.tokens() < (want / 2).max(need).max(1) as i64;
        let may_retry =
            self.short_at.is_none_or(|t| now.duration_since(t) >= Duration::from_millis(SHORT_RETRY_MS));
        let ask = match self.idle {
            true => need > 0 || owed > 0,
            false => expired || (low && may_retry),
        };
        if ask {
            self.idle = false;
        }
        ask.then_some(want)
    }

    /// Redis's answer to an ask of `want` units: `grant` units of window number `window`, which
    /// ends `ms_left` milliseconds after `now`. A new window's grant replaces what the lease
    /// held (the last window's units are no longer this node's); within one window it adds.
    pub(crate) fn apply(
        &mut self,
        s: &LeaseSpec,
        want: u64,
        (grant, window, ms_left): (i64, i64, i64),
        now: Instant,
    ) {
        if window != self.window || !s.lease.is_active() {
            // A new window's grant replaces the last window's units, less what is still owed:
            // units admitted ahead of a grant that Redis never counted (a grant too short to
            // pay them back in their own window) are paid from the next, so that a burst
            // borrowed after an idle window keeps the average within the limit.
            let debt = s.lease.tokens().min(0);
            s.lease.activate(grant + debt);
            self.window = window;
        } else {
            s.lease.grant(grant);
        }
        self.end = now + Duration::from_millis(ms_left.max(0) as u64);
        self.short_at = ((grant.max(0) as u64) < want).then_some(now);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use smppgw_engine::lease::Lease;

    use super::*;

    fn spec(limit: u64) -> LeaseSpec {
        LeaseSpec {
            key: "rate:customer:c".into(),
            limit,
            window_ms: 1_000,
            idle_burst: limit,
            lease: Arc::new(Lease::new()),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A tick of the lease loop over `specs` with Redis granting `grant` of window `window`
    /// to every lease that asks.
    fn tick(states: &mut LeaseStates, specs: &[LeaseSpec], now: Instant, first_asks: usize, window: i64) {
        let mut first_asks = first_asks;
        for s in specs {
            states.at_tick(s, now, &mut first_asks, |st| {
                if let Some(want) = st.plan(s, now) {
                    st.apply(s, want, (5, window, 1_000), now);
                }
            });
        }
    }

    fn keyed(key: &str) -> LeaseSpec {
        LeaseSpec { key: key.into(), ..spec(100) }
    }

    #[test]
    fn a_reload_drops_the_states_of_removed_or_changed_limits_and_keeps_the_others() {
        // Goal: after a reload the lease loop forgets the state of a limit removed, and of one
        // whose value changed (a new lease, which must ask at once), and keeps the others with
        // the window and units they were granted.
        let (a, b, c) = (keyed("rate:customer:a"), keyed("rate:customer:b"), keyed("rate:vendor:c"));
        let t0 = Instant::now();
        let mut states = LeaseStates::default();
        tick(&mut states, &[a.clone(), b.clone(), c.clone()], t0, 10, 7);
        assert_eq!(states.len(), 3);
        assert_eq!(a.lease.tokens(), 5);
        // The reload: a unchanged (the same lease), b's limit changed (a new lease), c removed,
        // d added.
        let b2 = keyed("rate:customer:b");
        let d = keyed("rate:customer:d");
        let specs = [a.clone(), b2.clone(), d.clone()];
        states.retain_configured(&specs);
        assert_eq!(states.len(), 1, "only a's state is left");
        assert_eq!(states.get(&a).map(LeaseState::window), Some(7), "a keeps its window");
        assert!(states.get(&b2).is_none() && states.get(&c).is_none() && states.get(&d).is_none());
        // The next tick: b and d start again and ask at once; a has its grant and asks nothing.
        let mut planned = Vec::new();
        let mut first_asks = 10;
        for s in &specs {
            states.at_tick(s, t0 + ms(10), &mut first_asks, |st| {
                planned.push((s.key.clone(), st.plan(s, t0 + ms(10))))
            });
        }
        assert_eq!(first_asks, 8, "two new states, a's was there");
        assert_eq!(planned[0], ("rate:customer:a".to_owned(), None), "a holds its units: no ask");
        assert!(planned[1].1.is_some() && planned[2].1.is_some(), "b and d ask: {planned:?}");
        assert_eq!(a.lease.tokens(), 5, "a's lease untouched");
    }

    #[test]
    fn a_lease_kept_across_a_reload_takes_its_new_limit_as_a_whole_window() {
        // Goal: a campaign's or a brand's lease stays the same across a reload that changes its
        // limit (its units and window are kept); a message larger than the new limit is still
        // admitted once the node holds a whole window of the new limit, not held to the old.
        let a = LeaseSpec { limit: 100, ..keyed("rate:campaign:a") };
        let t0 = Instant::now();
        let mut states = LeaseStates::default();
        tick(&mut states, std::slice::from_ref(&a), t0, 10, 7);
        let lowered = LeaseSpec { limit: 5, ..a.clone() };
        states.retain_configured(std::slice::from_ref(&lowered));
        assert_eq!(states.len(), 1, "the same lease: its state kept");
        a.lease.activate(5);
        assert!(a.lease.try_take(6), "a whole window of the new limit (5) admits 6 segments");
    }

    #[test]
    fn new_lease_states_wait_for_their_turn_and_existing_ones_take_none() {
        // Goal: at most `first_asks` leases get a state (and ask) in one tick; a lease that has
        // one is looked at every tick without taking from that allowance.
        let specs: Vec<LeaseSpec> = (0..5).map(|i| keyed(&format!("rate:customer:c{i}"))).collect();
        let t0 = Instant::now();
        let mut states = LeaseStates::default();
        let mut seen = 0;
        let mut first_asks = 2;
        for s in &specs {
            states.at_tick(s, t0, &mut first_asks, |_| seen += 1);
        }
        assert_eq!((seen, states.len(), first_asks), (2, 2, 0), "two new ones this tick");
        let (mut seen, mut first_asks) = (0, 2);
        for s in &specs {
            states.at_tick(s, t0 + ms(10), &mut first_asks, |_| seen += 1);
        }
        assert_eq!((seen, states.len(), first_asks), (4, 4, 0), "the first two again, two more");
    }

    #[test]
    fn a_day_lease_never_granted_is_enforced_again_after_redis_was_away() {
        // Goal: a brand's day cap, idle-started on a node that had no traffic for it yet, is not
        // left off for good by a Redis blip: once Redis answers, the first request is admitted
        // (borrowed) and makes the node ask, the next ones wait for the grant.
        let s = LeaseSpec { window_ms: 86_400_000, idle_burst: 1, ..spec(10_000) };
        let t0 = Instant::now();
        let mut st = LeaseState::new(&s, t0);
        assert!(st.plan(&s, t0).is_none(), "idle: no ask before a request");
        // Redis away: the lease loop deactivates every lease.
        s.lease.deactivate();
        assert!(!st.in_window(t0), "never granted: not resumed by the loop");
        // Redis back: the next tick.
        assert!(st.plan(&s, t0 + ms(10)).is_none());
        assert!(s.lease.is_active(), "enforced again");
        assert!(s.lease.try_take(20), "the first request borrows");
        assert!(!s.lease.try_take(1), "the next waits for the grant");
        assert!(st.plan(&s, t0 + ms(20)).is_some(), "and the node asks");
    }

    #[test]
    fn a_busy_node_keeps_its_units_across_a_window_change_until_the_new_grant() {
        // Goal: at a window change a node with traffic goes on admitting from what it held until
        // Redis's answer for the new window arrives, so requests below the limit are never
        // refused in that round trip; the answer then replaces (not adds to) the old units.
        let s = spec(1_000);
        let t0 = Instant::now();
        let mut st = LeaseState::new(&s, t0);
        let want = st.plan(&s, t0).expect("a new lease asks at once");
        st.apply(&s, want, (100, 7, 1_000), t0);
        assert_eq!(s.lease.tokens(), 100);
        for _ in 0..30 {
            assert!(s.lease.try_take(1));
        }
        // The window ends: the tick asks for the next one, and the lease still admits.
        let t1 = t0 + ms(1_000);
        let want = st.plan(&s, t1).expect("a busy node asks at the window change");
        assert_eq!(s.lease.tokens(), 70, "nothing taken away before the answer");
        assert!(s.lease.try_take(1), "a request in the round trip is admitted");
        st.apply(&s, want, (80, 8, 1_000), t1 + ms(1));
        assert_eq!(s.lease.tokens(), 80, "the new window's grant replaces the last window's units");
        assert!(st.plan(&s, t1 + ms(10)).is_none(), "nothing to ask with the grant in hand");
    }

    #[test]
    fn a_node_idle_for_a_window_holds_nothing_then_asks_when_a_request_comes() {
        // Goal: a node that neither admitted nor refused anything in a window gives the next
        // one's units to the nodes with traffic, admits one request ahead of its ask (a limit
        // that lends one request: a vendor's, a campaign's), and asks for at least what that
        // request took.
        let s = LeaseSpec { idle_burst: 1, ..spec(1_000) };
        let t0 = Instant::now();
        let mut st = LeaseState::new(&s, t0);
        let want = st.plan(&s, t0).expect("first ask");
        st.apply(&s, want, (20, 3, 500), t0);
        let t1 = t0 + ms(500);
        assert!(st.plan(&s, t1).is_none(), "idle: no ask");
        assert_eq!(s.lease.tokens(), 0, "and nothing held");
        assert!(st.plan(&s, t1 + ms(100)).is_none(), "still idle");
        assert!(s.lease.try_take(2), "one request admitted ahead of the grant");
        assert!(!s.lease.try_take(1), "and only one");
        let want = st.plan(&s, t1 + ms(110)).expect("the borrowed units make it ask");
        assert!(want >= 2, "at least the units owed: {want}");
        st.apply(&s, want, (want as i64, 4, 390), t1 + ms(111));
        assert_eq!(s.lease.tokens(), want as i64 - 2, "the grant pays back the borrowed units");
        // The next window change finds it used: it asks like a busy node.
        assert!(st.plan(&s, t1 + ms(510)).is_some());
    }

    #[test]
    fn a_burst_lent_after_an_idle_window_is_paid_from_the_next_window_when_redis_grants_too_little() {
        // Goal: a customer's lease (10 a second) on a node idle for a window admits a second's
        // worth ahead of its grant, as the local limiter does after a quiet second; when the
        // other nodes have used that window and Redis grants too little to pay it back, what is
        // still owed comes out of the node's next window (it was forgotten there, so the burst
        // went uncounted) and the node asks for it.
        let s = spec(10);
        let t0 = Instant::now();
        let mut st = LeaseState::new(&s, t0);
        let want = st.plan(&s, t0).expect("first ask");
        st.apply(&s, want, (1, 3, 500), t0);
        let t1 = t0 + ms(500);
        assert!(st.plan(&s, t1).is_none(), "idle for a window: nothing held, no ask");
        for i in 0..10 {
            assert!(s.lease.try_take(1), "segment {} of the burst", i + 1);
        }
        assert!(!s.lease.try_take(1), "the 11th");
        let want = st.plan(&s, t1 + ms(10)).expect("the units owed make it ask");
        assert_eq!(want, 10, "all it owes");
        st.apply(&s, want, (4, 4, 490), t1 + ms(11));
        assert_eq!(s.lease.tokens(), -6, "the other nodes had the rest of the window");
        // The next window: the node asks as a busy one, and its grant pays the rest first.
        let want = st.plan(&s, t1 + ms(500)).expect("a new window");
        assert!(want >= 6, "at least what it owes: {want}");
        st.apply(&s, want, (10, 5, 1_000), t1 + ms(501));
        assert_eq!(s.lease.tokens(), 4, "ten granted, six of them owed");
    }

    #[test]
    fn a_day_long_lease_is_not_asked_for_until_a_request_needs_it() {
        // Goal: a brand's daily cap is not spread over every node at start (each asking a
        // fiftieth of it, traffic or not): a node asks when a request comes, admitting that one
        // ahead of the grant, which then pays it back.
        let s = LeaseSpec {
            key: "rate:brand:b".into(),
            limit: 10_000,
            window_ms: 86_400_000,
            idle_burst: 1,
            lease: Arc::new(Lease::new()),
        };
        let t0 = Instant::now();
        let mut st = LeaseState::new(&s, t0);
        assert!(st.plan(&s, t0).is_none(), "no traffic, no ask");
        assert!(st.plan(&s, t0 + ms(1_000)).is_none());
        assert!(s.lease.try_take(3), "the first request is admitted ahead of the ask");
        let want = st.plan(&s, t0 + ms(1_010)).expect("then it asks");
        assert!(want >= 3, "{want}");
        st.apply(&s, want, (200, 20_000, 3_600_000), t0 + ms(1_011));
        assert_eq!(s.lease.tokens(), 197, "the grant, less what was borrowed");
    }

    #[test]
    fn units_held_when_redis_went_away_are_kept_when_it_returns_in_the_same_window() {
        // Goal: a Redis blip does not strand what a node held (Redis counted it as the node's):
        // back within the window, the lease resumes with those units and asks nothing; after
        // the window, it asks for the new one.
        let s = spec(1_000);
        let t0 = Instant::now();
        let mut st = LeaseState::new(&s, t0);
        let want = st.plan(&s, t0).expect("first ask");
        st.apply(&s, want, (100, 7, 1_000), t0);
        assert!(s.lease.try_take(10));
        s.lease.deactivate();
        assert!(st.in_window(t0 + ms(500)), "Redis back within the window");
        s.lease.resume();
        assert_eq!(s.lease.tokens(), 90, "what it held");
        assert!(st.plan(&s, t0 + ms(510)).is_none(), "nothing to ask");
        assert!(!st.in_window(t0 + ms(1_000)), "the window is over");
    }

    #[test]
    fn a_short_grant_is_not_asked_again_at_every_tick() {
        // Goal: once Redis grants less than asked (the shared window is nearly used up), the
        // node asks again only after SHORT_RETRY_MS, not every tick.
        let s = spec(1_000);
        let t0 = Instant::now();
        let mut st = LeaseState::new(&s, t0);
        let want = st.plan(&s, t0).expect("first ask");
        st.apply(&s, want, (0, 1, 1_000), t0);
        assert!(st.plan(&s, t0 + ms(10)).is_none(), "short: wait");
        assert!(st.plan(&s, t0 + ms(SHORT_RETRY_MS)).is_some(), "then ask again");
    }
}
