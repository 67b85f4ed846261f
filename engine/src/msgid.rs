//! Gateway message ids: unique across cores, restarts and nodes, at most 20 characters.
//!
//! An id is a u64: `node (8 bits) | core (6 bits) | counter (50 bits)`. Each core's counter starts
//! at the current time in microseconds since 2025-01-01 and never falls behind the clock, so ids
//! stay unique across restarts unless a core sustained more than one million ids per second for
//! its whole lifetime, and 2^50 microseconds (35 years) pass before the counter wraps. Formatted
//! in decimal an id has at most 20 digits; in hex at most 16.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time of 2025-01-01T00:00:00Z, in microseconds.
const EPOCH_2025_US: u64 = 1_735_689_600_000_000;
const COUNTER_BITS: u32 = 50;
const CORE_BITS: u32 = 6;
const COUNTER_MASK: u64 = (1 << COUNTER_BITS) - 1;

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
    /// A generator for `node` (0..=255) and `core` (0..=63).
    pub fn new(node: u8, core: usize) -> IdGen {
        let prefix = (u64::from(node) << (COUNTER_BITS + CORE_BITS)) | ((core as u64 & 0x3F) << COUNTER_BITS);
        IdGen { prefix, counter: now_us() }
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
        let mut a = IdGen::new(255, 63);
        let mut b = IdGen::new(255, 62);
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
        let pairs = [(0u8, 0usize), (0, 1), (1, 0), (1, 1), (254, 63), (255, 62), (255, 63)];
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
    fn a_restarted_core_does_not_reuse_ids() {
        let mut first = IdGen::new(1, 0);
        let last = (0..1000).map(|_| first.next_id()).max().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let mut restarted = IdGen::new(1, 0);
        assert!(restarted.next_id() > last);
    }
}
