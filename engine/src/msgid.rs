//! Gateway message ids: unique across cores, restarts and nodes, at most 20 characters.
//!
//! An id is a u64: `node (8 bits) | core (6 bits) | counter (50 bits)`, with the node at most
//! [`NODE_ID_MAX`] (127) so that the top bit stays clear and every id is at most `i64::MAX`: Kannel
//! reads ids with `strtoll`, Cloudhopper's `getMessageIdAsLong` and signed BIGINT columns hold
//! them, and all of them fail on a larger one (20 decimal digits, hex from `8000...`). Each core's counter starts
//! at the current time in microseconds since 2025-01-01 and never falls behind the clock, so ids
//! stay unique across restarts unless a core sustained more than one million ids per second for
//! its whole lifetime, and 2^50 microseconds (35 years) pass before the counter wraps. Formatted
//! in decimal an id has at most 20 digits; in hex at most 16.
//!
//! The clock alone does not keep ids unique across a restart with the clock stepped back: the
//! [`IdWatermark`] lets the caller persist the highest counter issued and start the next run
//! above it (`smppgw --id-state FILE`, and Redis when configured).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time of 2025-01-01T00:00:00Z, in microseconds.
const EPOCH_2025_US: u64 = 1_735_689_600_000_000;
const COUNTER_BITS: u32 = 50;
const CORE_BITS: u32 = 6;
const COUNTER_MASK: u64 = (1 << COUNTER_BITS) - 1;

/// The largest node id: with it, the highest id of any core and counter is still `i64::MAX`.
pub const NODE_ID_MAX: u8 = 127;
const _: () = assert!(
    (((NODE_ID_MAX as u64) << (COUNTER_BITS + CORE_BITS)) | ((1 << (COUNTER_BITS + CORE_BITS)) - 1))
        <= i64::MAX as u64
);

/// How the customer wants its ids written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdStyle {
    /// Lower-case hexadecimal.
    Hex,
    /// Decimal.
    Decimal,
}

/// A per-core id source. Not shared: each core owns one.
#[derive(Debug)]
pub struct IdGen {
    prefix: u64,
    counter: u64,
}

fn now_us() -> u64 {
    let us = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
    us.saturating_sub(EPOCH_2025_US) & COUNTER_MASK
}

impl IdGen {
    /// A generator for `node` (0..=[`NODE_ID_MAX`], which configuration validation ensures) and
    /// `core` (0..=63).
    pub fn new(node: u8, core: usize) -> IdGen {
        IdGen::above(node, core, 0)
    }

    /// A generator whose first id is above counter `floor` (what an earlier run issued) as well
    /// as the clock.
    pub fn above(node: u8, core: usize, floor: u64) -> IdGen {
        debug_assert!(node <= NODE_ID_MAX, "node id {node} above {NODE_ID_MAX}");
        let prefix = (u64::from(node) << (COUNTER_BITS + CORE_BITS)) | ((core as u64 & 0x3F) << COUNTER_BITS);
        IdGen { prefix, counter: now_us().max(floor & COUNTER_MASK) }
    }

    /// The counter of the last id issued (or of the clock, if later).
    pub fn counter(&self) -> u64 {
        self.counter
    }

    /// The next id.
    pub fn next_id(&mut self) -> u64 {
        self.counter = (self.counter + 1) & COUNTER_MASK;
        self.prefix | self.counter
    }

    /// Pulls the counter up to the clock; called from a timer, not per id.
    pub fn catch_up(&mut self) {
        let now = now_us();
        if now > self.counter {
            self.counter = now;
        }
    }
}

/// How far above the last persisted counter a restart starts: what a core may issue between two
/// writes of the watermark (the clock's microseconds plus ids issued faster than that) and in the
/// writes that failed in between. A minute covers a writer a minute late.
pub const ID_RESTART_MARGIN: u64 = 60_000_000;

/// The highest id counters this node's cores issued, published by each core at its periodic tick
/// (and at exit) for the caller to persist, and the floor this run started above.
#[derive(Debug)]
pub struct IdWatermark {
    floor: u64,
    issued: Vec<AtomicU64>,
}

/// Whether `counter`, read from where an earlier run persisted it, can be a floor: a value so
/// close to the counter's end that the margin would wrap it (a whole message id written instead
/// of its counter, a hand edit) is not.
pub fn valid_persisted_counter(counter: u64) -> bool {
    counter <= COUNTER_MASK - ID_RESTART_MARGIN
}

impl IdWatermark {
    /// A watermark for `cores` cores whose ids start above `persisted` (the counter an earlier
    /// run issued; `None` when unknown, and ignored when not [`valid_persisted_counter`]) plus
    /// [`ID_RESTART_MARGIN`]. What it reports issued starts at the first counter the cores
    /// issue from, so that a crash within the first write's interval is covered too.
    pub fn new(cores: usize, persisted: Option<u64>) -> IdWatermark {
        let floor = Self::floor_above(persisted);
        let start = floor.max(now_us());
        IdWatermark { floor, issued: (0..cores).map(|_| AtomicU64::new(start)).collect() }
    }

    fn floor_above(persisted: Option<u64>) -> u64 {
        persisted.filter(|&p| valid_persisted_counter(p)).map_or(0, |p| p + ID_RESTART_MARGIN)
    }

    /// The counter a run started now above `persisted` issues from (at least the clock's): what
    /// to persist before it issues any.
    pub fn start_counter(persisted: Option<u64>) -> u64 {
        Self::floor_above(persisted).max(now_us())
    }

    /// The counter every core's first id is above.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Core `core` issued ids up to counter `counter`.
    pub fn publish(&self, core: usize, counter: u64) {
        if let Some(a) = self.issued.get(core) {
            a.fetch_max(counter, Ordering::Relaxed);
        }
    }

    /// The highest counter any core published (at least where they started): what to persist.
    pub fn issued(&self) -> u64 {
        self.issued.iter().map(|a| a.load(Ordering::Relaxed)).max().unwrap_or(self.floor)
    }
}

/// The node that handed out `id` (its `server.node_id`).
pub fn node_of(id: u64) -> u8 {
    (id >> (COUNTER_BITS + CORE_BITS)) as u8
}

/// Writes `id` in `style` into `out` (at most 20 octets) and returns the used slice.
pub fn format_id(id: u64, style: IdStyle, out: &mut [u8; 20]) -> &[u8] {
    let mut n = id;
    let mut i = out.len();
    match style {
        IdStyle::Decimal => loop {
            i -= 1;
            out[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        },
        IdStyle::Hex => loop {
            i -= 1;
            out[i] = b"0123456789abcdef"[(n & 0xF) as usize];
            n >>= 4;
            if n == 0 {
                break;
            }
        },
    }
    &out[i..]
}

/// Parses an id a customer quotes back (query_sm, cancel_sm) in its style.
pub fn parse_id(s: &[u8], style: IdStyle) -> Option<u64> {
    let s = std::str::from_utf8(s).ok()?;
    match style {
        IdStyle::Decimal => s.parse().ok(),
        IdStyle::Hex => u64::from_str_radix(s, 16).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_across_cores_and_nodes_and_fit_20_chars() {
        let mut a = IdGen::new(NODE_ID_MAX, 63);
        let mut b = IdGen::new(NODE_ID_MAX, 62);
        let (x, y) = (a.next_id(), b.next_id());
        assert_ne!(x, y);
        let mut buf = [0u8; 20];
        let d = format_id(u64::MAX, IdStyle::Decimal, &mut buf).to_vec();
        assert_eq!(d.len(), 20);
        assert_eq!(parse_id(&d, IdStyle::Decimal), Some(u64::MAX));
        let h = format_id(x, IdStyle::Hex, &mut buf).to_vec();
        assert!(h.len() <= 16);
        assert_eq!(parse_id(&h, IdStyle::Hex), Some(x));
    }

    #[test]
    fn ids_of_different_nodes_and_cores_never_meet() {
        // Goal: every (node, core) pair issues from its own range, whatever the clocks, so two
        // nodes (or two cores) can never hand out the same id.
        let pairs = [(0u8, 0usize), (0, 1), (1, 0), (1, 1), (126, 63), (127, 62), (127, 63)];
        let mut all = std::collections::HashSet::new();
        for (node, core) in pairs {
            let mut g = IdGen::new(node, core);
            for _ in 0..10_000 {
                let id = g.next_id();
                assert_eq!((id >> 56, (id >> 50) & 0x3F), (u64::from(node), core as u64), "{id:#x}");
                assert!(all.insert(id), "{id:#x} issued twice");
            }
        }
        // Even with the same counter (clocks that agree to the microsecond), the ids differ.
        let (mut a, mut b) = (IdGen::new(3, 0), IdGen::new(4, 0));
        b.counter = a.counter;
        assert_ne!(a.next_id(), b.next_id());
    }

    #[test]
    fn ids_of_the_largest_allowed_node_fit_a_signed_64_bit_integer() {
        // Goal: whatever node id the configuration accepts, every id we issue is at most
        // i64::MAX, so that Kannel (strtoll), Cloudhopper (getMessageIdAsLong) and signed BIGINT
        // columns can hold it, even on the last core with the counter about to wrap.
        let node = u8::try_from(crate::config::limits::NODE_ID.max).expect("a node id is a byte");
        let mut g = IdGen::new(node, 63);
        g.counter = COUNTER_MASK - 1;
        let highest = g.next_id();
        assert_eq!(highest & COUNTER_MASK, COUNTER_MASK, "the highest counter");
        assert_eq!(node_of(highest), node);
        assert!(i64::try_from(highest).is_ok(), "{highest:#x} is above i64::MAX");
        let mut buf = [0u8; 20];
        let d = std::str::from_utf8(format_id(highest, IdStyle::Decimal, &mut buf)).unwrap().to_owned();
        assert!(d.parse::<i64>().is_ok(), "{d} parses as a signed 64-bit integer");
        let h = std::str::from_utf8(format_id(highest, IdStyle::Hex, &mut buf)).unwrap().to_owned();
        assert!(i64::from_str_radix(&h, 16).is_ok(), "{h} parses as a signed 64-bit integer");
    }

    #[test]
    fn a_restarted_core_does_not_reuse_ids() {
        let mut first = IdGen::new(1, 0);
        let last = (0..1000).map(|_| first.next_id()).max().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let mut restarted = IdGen::new(1, 0);
        assert!(restarted.next_id() > last);
    }

    #[test]
    fn a_restart_with_the_clock_stepped_back_starts_above_what_was_persisted() {
        // Goal: ids issued before a restart are not issued again when the clock is behind them
        // at start, as long as the watermark was persisted: the floor is the persisted counter
        // plus the margin that covers what was issued after the last write.
        let mut first = IdGen::new(1, 0);
        // An earlier run whose clock was an hour ahead of this one's.
        first.counter += 3_600_000_000;
        let persisted_then = first.counter();
        let issued_after_write: Vec<u64> = (0..1000).map(|_| first.next_id()).collect();
        let wm = IdWatermark::new(2, Some(persisted_then));
        assert_eq!(wm.floor(), persisted_then + ID_RESTART_MARGIN);
        let mut restarted = IdGen::above(1, 0, wm.floor());
        let next = restarted.next_id();
        assert!(issued_after_write.iter().all(|&id| id < next), "no id issued again");
        // Without a persisted value the floor is the clock's.
        assert_eq!(IdWatermark::new(1, None).floor(), 0);
        assert!(IdGen::above(1, 0, 0).next_id() < next);
    }

    #[test]
    fn the_watermark_is_the_highest_counter_any_core_published() {
        let ahead = now_us() + 3_600_000_000;
        let wm = IdWatermark::new(2, Some(ahead));
        assert_eq!(wm.issued(), ahead + ID_RESTART_MARGIN, "nothing issued yet: where they start");
        wm.publish(1, ahead + ID_RESTART_MARGIN + 500);
        wm.publish(0, ahead + ID_RESTART_MARGIN + 300);
        wm.publish(1, ahead + ID_RESTART_MARGIN + 400);
        assert_eq!(wm.issued(), ahead + ID_RESTART_MARGIN + 500, "never lowered");
        wm.publish(7, u64::MAX);
        assert_eq!(wm.issued(), ahead + ID_RESTART_MARGIN + 500, "an unknown core is ignored");
        // A first start: what the cores start from is the clock, not 0, so a crash before the
        // first tick still leaves the next start above the ids issued.
        let before = now_us();
        assert!(IdWatermark::new(1, None).issued() >= before);
    }

    #[test]
    fn a_persisted_value_the_margin_would_wrap_is_ignored() {
        // Goal: a persisted counter near the end of the counter's range (a whole id written
        // instead of its counter) must not make the cores start at the end and wrap to 0, issuing
        // the same low ids at every start.
        let whole_id = (5u64 << 56) | 12_345;
        assert!(!valid_persisted_counter(whole_id));
        let wm = IdWatermark::new(1, Some(whole_id));
        assert_eq!(wm.floor(), 0, "ignored: the ids start from the clock");
        assert!(valid_persisted_counter(now_us()));
    }
}
