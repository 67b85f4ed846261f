//! Throughput limits.
//!
//! [`Gcra`] is the generic cell rate algorithm over one atomic (the theoretical arrival time), so a
//! customer bound on several cores shares one limit without a lock. [`AdaptiveRate`] paces one
//! vendor bind and backs off when the vendor answers ESME_RTHROTTLED.

use std::sync::atomic::{AtomicU64, Ordering};

/// Nanoseconds on the caller's monotonic clock (the engine counts from its start).
pub type Nanos = u64;

/// A GCRA limiter: `rate` units per second with a burst of `burst` units.
#[derive(Debug)]
pub struct Gcra {
    /// Nanoseconds per unit; 0 means unlimited.
    interval_ns: u64,
    /// How far ahead of `now` the theoretical arrival time may run.
    tolerance_ns: u64,
    tat: AtomicU64,
}

impl Gcra {
    /// `rate` units per second (0 = unlimited), absorbing bursts of `burst` units.
    pub fn new(rate: u32, burst: u32) -> Gcra {
        let interval_ns = if rate == 0 { 0 } else { 1_000_000_000 / u64::from(rate) };
        Gcra { interval_ns, tolerance_ns: interval_ns * u64::from(burst.max(1)), tat: AtomicU64::new(0) }
    }

    /// `rate` units per second that tolerates a whole second's worth at once: after a second
    /// with nothing taken, `rate` units pass together (a long message's parts sent back to
    /// back, a submit_multi's destinations), and over any stretch of time no more than `rate`
    /// a second on average, plus that one second's burst. A customer's `throughput` is
    /// documented as segments per second, and its shared lease (Redis) grants `rate` units per
    /// one-second window: both allow a second's worth at once.
    pub fn per_second(rate: u32) -> Gcra {
        Gcra::new(rate, rate)
    }

    /// Whether this limiter limits anything.
    pub fn is_unlimited(&self) -> bool {
        self.interval_ns == 0
    }

    /// Takes `units` at `now` if the rate allows; otherwise takes nothing and returns false.
    pub fn try_acquire(&self, units: u32, now: Nanos) -> bool {
        if self.interval_ns == 0 {
            return true;
        }
        let cost = self.interval_ns * u64::from(units);
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let start = tat.max(now);
            let new_tat = start + cost;
            if new_tat > now + self.tolerance_ns.max(cost) {
                return false;
            }
            match self.tat.compare_exchange_weak(tat, new_tat, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(actual) => tat = actual,
            }
        }
    }
}

impl Gcra {
    /// Gives back `units` taken by [`Gcra::try_acquire`] for a message refused after all (by
    /// another limit): it must not spend the customer's rate.
    pub fn give_back(&self, units: u32) {
        let cost = self.interval_ns * u64::from(units);
        if cost == 0 {
            return;
        }
        let _ = self.tat.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| Some(t.saturating_sub(cost)));
    }
}

/// Pacing of one vendor bind: a configured ceiling, halved on throttling, recovering by a quarter
/// per second without throttling.
#[derive(Debug, Clone)]
pub struct AdaptiveRate {
    /// Configured ceiling in messages per second (`f64::INFINITY` when unlimited).
    ceiling: f64,
    /// Current pace.
    current: f64,
    /// Earliest time the next message may go.
    next_ns: Nanos,
    last_throttle_ns: Nanos,
    last_recover_ns: Nanos,
    /// Messages sent in the current second, to know the observed rate when the ceiling is infinite.
    window_start_ns: Nanos,
    window_count: u32,
    observed: f64,
}

/// The most unused time a paced bind may bank, to make up for timers firing late.
const PACE_BANK_NS: Nanos = 1_000_000;

/// The slowest pace throttling can push a bind to, so that it keeps probing the vendor.
pub const ADAPTIVE_FLOOR_PER_SEC: f64 = 1.0;
const SECOND: Nanos = 1_000_000_000;

impl AdaptiveRate {
    /// A pace with `ceiling` messages per second (0 = unlimited).
    pub fn new(ceiling: f64) -> AdaptiveRate {
        let ceiling = if ceiling <= 0.0 { f64::INFINITY } else { ceiling };
        AdaptiveRate {
            ceiling,
            current: ceiling,
            next_ns: 0,
            last_throttle_ns: 0,
            last_recover_ns: 0,
            window_start_ns: 0,
            window_count: 0,
            observed: 0.0,
        }
    }

    /// A new ceiling (a reload): the pace follows it, or stays below it while slowed.
    pub fn set_ceiling(&mut self, ceiling: f64) {
        let ceiling = if ceiling <= 0.0 { f64::INFINITY } else { ceiling };
        let slowed = self.is_slowed();
        let old_gap = Self::gap(self.current);
        self.ceiling = ceiling;
        self.current = if slowed { self.current.min(ceiling) } else { ceiling };
        // The next send was spaced at the old pace: a faster one applies to it too (a bind of a
        // vendor raised from 1/s to 10,000/s does not wait out its last second first).
        let new_gap = Self::gap(self.current);
        if new_gap < old_gap {
            self.next_ns = self.next_ns.saturating_sub(old_gap - new_gap);
        }
    }

    /// Nanoseconds between two sends at `per_sec` (0 when unlimited).
    fn gap(per_sec: f64) -> Nanos {
        if per_sec.is_finite() && per_sec > 0.0 { (SECOND as f64 / per_sec) as u64 } else { 0 }
    }

    /// Continues a slowed pace (a bind this one replaces was at `pace`): from there it recovers
    /// as usual, instead of meeting a throttling vendor at the full ceiling again.
    pub fn continue_from(&mut self, pace: f64, now: Nanos) {
        if pace < self.current {
            self.current = pace.max(ADAPTIVE_FLOOR_PER_SEC.min(self.ceiling));
            self.last_throttle_ns = now;
            self.last_recover_ns = now;
            // What the bind is taken to sustain: without a ceiling, pacing ends only well above
            // it (from nothing, the pace would be dropped at the first recovery step).
            self.observed = self.current;
            self.window_start_ns = now;
        }
    }

    /// The current pace in messages per second.
    pub fn current(&self) -> f64 {
        self.current
    }

    /// Whether throttling has slowed this bind below its ceiling.
    pub fn is_slowed(&self) -> bool {
        self.current < self.ceiling
    }

    /// When a message may be sent: `None` now, or the time to wait for.
    pub fn ready_at(&mut self, now: Nanos) -> Option<Nanos> {
        self.recover(now);
        if self.current.is_infinite() || now >= self.next_ns { None } else { Some(self.next_ns) }
    }

    /// Records a send at `now`.
    pub fn on_send(&mut self, now: Nanos) {
        if now.saturating_sub(self.window_start_ns) >= SECOND {
            self.observed =
                f64::from(self.window_count) * SECOND as f64 / (now - self.window_start_ns).max(1) as f64;
            self.window_start_ns = now;
            self.window_count = 0;
        }
        self.window_count += 1;
        if self.current.is_finite() {
            let gap = (SECOND as f64 / self.current) as u64;
            // Banked time makes up for timer lateness, at most PACE_BANK_NS (an interval at fast
            // paces): a quiet bind at a slow pace must not send two at once (four binds of a
            // 10/s account would send eight in the first instant).
            self.next_ns = self.next_ns.max(now.saturating_sub(gap.min(PACE_BANK_NS))) + gap;
        }
    }

    /// The vendor answered ESME_RTHROTTLED (or reported congestion).
    pub fn on_throttled(&mut self, now: Nanos) {
        // Halve at most once per 100 ms: a window of throttled answers is one signal, not 64.
        if now.saturating_sub(self.last_throttle_ns) < SECOND / 10 && self.last_throttle_ns != 0 {
            return;
        }
        let base = if self.current.is_finite() {
            self.current
        } else {
            // Unpaced: what the bind sends now. The last whole second alone says nothing after
            // a quiet spell (or in the bind's first second), so the current one counts too,
            // over at least 100 ms.
            let elapsed = now.saturating_sub(self.window_start_ns).max(SECOND / 10);
            let recent = f64::from(self.window_count) * SECOND as f64 / elapsed as f64;
            self.observed.max(recent).max(2.0 * ADAPTIVE_FLOOR_PER_SEC)
        };
        // Never above the ceiling: a bind paced below the floor (an account's throughput shared
        // by more binds than it has messages a second) stays at its own pace.
        self.current = (base / 2.0).max(ADAPTIVE_FLOOR_PER_SEC.min(self.ceiling));
        self.last_throttle_ns = now;
        self.last_recover_ns = now;
    }

    fn recover(&mut self, now: Nanos) {
        if self.current >= self.ceiling || now.saturating_sub(self.last_recover_ns) < SECOND {
            return;
        }
        // A quarter per whole second since the last step, however long the bind was quiet (a
        // bind slowed to 1/s that idles for minutes comes back at its ceiling, not at 1.25/s).
        let steps = (now.saturating_sub(self.last_recover_ns) / SECOND).min(64);
        self.last_recover_ns += steps * SECOND;
        let next = self.current * 1.25f64.powi(steps as i32);
        // With no ceiling, pacing ends once the pace is well above what the bind last sustained.
        self.current = if self.ceiling.is_infinite() && next > 4.0 * self.observed.max(1.0) {
            f64::INFINITY
        } else {
            next.min(self.ceiling)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raised_ceiling_applies_to_the_next_send_at_once() {
        // Goal: a bind paced at 0.5/s (a 2 s gap) that just sent, raised to 1,000/s by a reload,
        // sends its next message within a millisecond, not 2 s later; lowered, it keeps its gap.
        let mut r = AdaptiveRate::new(0.5);
        r.on_send(0);
        assert_eq!(r.ready_at(10_000_000), Some(2 * SECOND));
        r.set_ceiling(1000.0);
        assert!(r.ready_at(10_000_000).is_none());
        let mut r = AdaptiveRate::new(1000.0);
        r.on_send(0);
        r.set_ceiling(0.5);
        assert_eq!(r.ready_at(0), Some(1_000_000), "the message already spaced keeps its time");
    }

    #[test]
    fn throttling_never_paces_a_bind_above_its_ceiling() {
        // Goal: a vendor whose throughput is below its number of binds (0.5/s a bind) that
        // throttles us is not then sent to at the 1/s floor, twice its own limit.
        let mut r = AdaptiveRate::new(0.5);
        r.on_send(0);
        r.on_throttled(SECOND);
        assert!(r.current() <= 0.5, "{}", r.current());
        let mut r = AdaptiveRate::new(100.0);
        r.on_throttled(SECOND);
        assert_eq!(r.current(), 50.0, "halved as before");
        assert!(r.is_slowed());
    }

    #[test]
    fn a_pace_continued_from_a_slowed_bind_starts_slowed_and_recovers_from_there() {
        // Goal: the bind that replaces a slowed one (a reload) starts at its predecessor's pace,
        // below its own ceiling, and recovers a quarter a second from there; a predecessor that
        // was faster, or unslowed, changes nothing.
        let mut r = AdaptiveRate::new(100.0);
        r.continue_from(25.0, 10 * SECOND);
        assert_eq!(r.current(), 25.0);
        assert!(r.is_slowed());
        assert!(r.ready_at(11 * SECOND).is_none());
        assert_eq!(r.current(), 31.25, "a quarter more after a second");
        let mut r = AdaptiveRate::new(100.0);
        r.continue_from(f64::INFINITY, 0);
        assert!(!r.is_slowed());
        let mut r = AdaptiveRate::new(10.0);
        r.continue_from(50.0, 0);
        assert_eq!(r.current(), 10.0, "never above its own ceiling");
        // Without a ceiling (an unlimited vendor) the slow-down holds until the pace is well
        // above what the predecessor sustained, as it would have for the predecessor itself.
        let mut r = AdaptiveRate::new(0.0);
        r.continue_from(20.0, 10 * SECOND);
        let _ = r.ready_at(11 * SECOND);
        assert_eq!(r.current(), 25.0, "still paced after a second");
        assert!(r.ready_at(20 * SECOND).is_none());
        assert!(!r.is_slowed(), "and free once well above it");
    }

    #[test]
    fn gcra_allows_the_rate_and_refuses_above_it() {
        let g = Gcra::new(10, 1);
        let mut ok = 0;
        // 100 attempts within one second at 10/s with a burst of 1: about 10 pass.
        for i in 0..100u64 {
            if g.try_acquire(1, i * 10_000_000) {
                ok += 1;
            }
        }
        assert!((10..=11).contains(&ok), "{ok}");
        assert!(Gcra::new(0, 0).try_acquire(1000, 0));
    }

    #[test]
    fn a_per_second_limit_takes_a_whole_second_at_once_and_no_more_on_average() {
        // Goal: at 10 a second, a quiet customer may send 10 segments at once (a 3-part
        // message sent part after part, then seven more) and the 11th is refused; the tolerance
        // was a tenth of a second (one segment), which refused parts 2 and 3 of the message.
        // Sustained, it never passes more than 10 a second beyond that first second's burst.
        let g = Gcra::per_second(10);
        let t = 5 * SECOND;
        for i in 0..3 {
            assert!(g.try_acquire(1, t), "part {} of 3", i + 1);
        }
        assert!(g.try_acquire(7, t), "seven more: ten in the same instant");
        assert!(!g.try_acquire(1, t), "the 11th");
        assert!(g.try_acquire(1, t + SECOND / 10), "a tenth of a second later, one more");
        assert!(!g.try_acquire(1, t + SECOND / 10));
        // Quiet for a second (or longer): a whole second's worth again, not more.
        let t = t + 3 * SECOND;
        assert!(g.try_acquire(10, t));
        assert!(!g.try_acquire(1, t));
        // Attempts every millisecond for 10 s: 10 a second, plus the one burst at most.
        let g = Gcra::per_second(10);
        let ok = (0..10_000u64).filter(|ms| g.try_acquire(1, t + ms * 1_000_000)).count();
        assert!((100..=110).contains(&ok), "{ok} in 10 s");
        // Rates that do not divide a second keep their whole second too.
        let g = Gcra::per_second(3);
        assert!(g.try_acquire(3, t) && !g.try_acquire(1, t));
    }

    #[test]
    fn gcra_counts_segments() {
        let g = Gcra::new(100, 10);
        assert!(g.try_acquire(10, 0));
        assert!(!g.try_acquire(3, 0), "a burst of 10 segments is spent");
        assert!(g.try_acquire(3, 30_000_000));
    }

    #[test]
    fn throttling_halves_the_pace_and_it_recovers() {
        let mut r = AdaptiveRate::new(1000.0);
        r.on_throttled(1);
        assert_eq!(r.current(), 500.0);
        r.on_throttled(2);
        assert_eq!(r.current(), 500.0, "one halving per 100 ms");
        assert!(r.ready_at(SECOND / 2).is_none());
        // At most 1 ms (an interval here is 2 ms) of unused time may be banked: the second send
        // in a row is already ahead of the pace, the third must wait.
        r.on_send(SECOND / 2);
        r.on_send(SECOND / 2);
        assert!(r.ready_at(SECOND / 2 + 1).is_some(), "paced at 500/s");
        let _ = r.ready_at(3 * SECOND);
        assert!(r.current() > 500.0);
        for s in 4..40 {
            let _ = r.ready_at(s * SECOND);
        }
        assert_eq!(r.current(), 1000.0);
    }

    #[test]
    fn a_quiet_bind_at_a_slow_pace_does_not_send_two_at_once() {
        // Goal: a bind paced at 2.5/s (a 10/s vendor over four binds), quiet for a while, sends
        // one message and then waits its interval (it sent two at once: eight in the first
        // instant over four binds, against a vendor counting ten a second).
        let mut r = AdaptiveRate::new(2.5);
        let t = 100 * SECOND;
        assert!(r.ready_at(t).is_none());
        r.on_send(t);
        let next = r.ready_at(t).expect("the second waits");
        assert!(next >= t + 2 * SECOND / 5 - PACE_BANK_NS, "{} ms on", (next - t) / 1_000_000);
    }

    #[test]
    fn a_slowed_bind_that_was_quiet_recovers_a_quarter_for_every_second_it_was() {
        // Goal: slowed from 1,000/s to 500/s, then nothing sent for 3.5 s: the next send sees
        // 500 * 1.25^3, not one step; a quiet minute brings it back to its ceiling.
        let mut r = AdaptiveRate::new(1000.0);
        r.on_throttled(1);
        let _ = r.ready_at(1 + 3 * SECOND + SECOND / 2);
        assert!((r.current() - 500.0 * 1.25f64.powi(3)).abs() < 1e-6, "{}", r.current());
        let _ = r.ready_at(70 * SECOND);
        assert_eq!(r.current(), 1000.0);
    }

    #[test]
    fn an_unpaced_bind_throttled_after_a_quiet_spell_halves_what_it_sends_now() {
        let mut r = AdaptiveRate::new(0.0);
        // Quiet for 100 s, then 1,000 sends in half a second, then ESME_RTHROTTLED.
        let start = 100 * SECOND;
        for i in 0..1000u64 {
            r.on_send(start + i * SECOND / 2000);
        }
        r.on_throttled(start + SECOND / 2);
        assert!((900.0..=1100.0).contains(&r.current()), "halved from 2,000/s: {}", r.current());
    }

    #[test]
    fn a_new_ceiling_applies_at_once_and_a_slowed_pace_stays_below_it() {
        let mut r = AdaptiveRate::new(100.0);
        r.set_ceiling(200.0);
        assert_eq!(r.current(), 200.0);
        r.on_throttled(1);
        assert_eq!(r.current(), 100.0);
        r.set_ceiling(0.0);
        assert_eq!(r.current(), 100.0, "still slowed; recovers from there");
        assert!(r.is_slowed());
        r.set_ceiling(50.0);
        assert_eq!(r.current(), 50.0);
        r.set_ceiling(0.0);
        assert!(r.current().is_infinite(), "at its ceiling, not slowed: unpaced");
    }

    #[test]
    fn units_given_back_can_be_taken_again() {
        let g = Gcra::new(10, 2);
        assert!(g.try_acquire(2, 0));
        assert!(!g.try_acquire(1, 0), "the burst of 2 is spent");
        g.give_back(1);
        assert!(g.try_acquire(1, 0), "the unit given back");
        assert!(!g.try_acquire(1, 0));
    }
}
