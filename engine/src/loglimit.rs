//! Log lines a peer can cause at its own rate (a refused bind, an unreadable receipt, a bad
//! PDU), let through at most once per interval per core. The events are counted in their metrics
//! every time; the line that goes out says how many lines were held back before it. Sans-IO:
//! the caller passes the time. One per kind of line, so one kind never hides another.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// How often a line a peer can cause at its own rate is logged at most, per core and kind.
pub const PEER_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Lets one kind of log line through at most once per `interval`.
#[derive(Debug)]
pub struct LogLimit {
    interval: Duration,
    /// Lines held back since the last that went out, and when that one went out.
    state: Cell<(u64, Option<Instant>)>,
}

impl Default for LogLimit {
    fn default() -> Self {
        LogLimit::new(PEER_LOG_INTERVAL)
    }
}

impl LogLimit {
    /// At most one line per `interval`.
    pub const fn new(interval: Duration) -> LogLimit {
        LogLimit { interval, state: Cell::new((0, None)) }
    }

    /// `Some(held back)` when the line may go out at `now` (with the number of lines held back
    /// since the last that did), or `None` when it is held back (and counted).
    pub fn allow(&self, now: Instant) -> Option<u64> {
        let (held, last) = self.state.get();
        if last.is_none_or(|t| now.saturating_duration_since(t) >= self.interval) {
            self.state.set((0, Some(now)));
            Some(held)
        } else {
            self.state.set((held + 1, last));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_goes_out_once_per_interval_saying_how_many_were_held_back() {
        // Goal: the first line goes out, the next ones within the interval do not, and the
        // first after it says how many were held back.
        let t0 = Instant::now();
        let l = LogLimit::new(Duration::from_secs(1));
        assert_eq!(l.allow(t0), Some(0), "the first goes out");
        for _ in 0..1_000 {
            assert_eq!(l.allow(t0 + Duration::from_millis(999)), None, "held back");
        }
        assert_eq!(l.allow(t0 + Duration::from_secs(1)), Some(1_000), "then one, with the count");
        assert_eq!(l.allow(t0 + Duration::from_millis(1_500)), None);
        assert_eq!(l.allow(t0 + Duration::from_secs(5)), Some(1), "the count starts again");
        assert_eq!(l.allow(t0), None, "time going back holds lines back, it does not panic");
    }
}
