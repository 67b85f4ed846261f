//! Quotas leased from a limit shared by every node (kept in Redis by the control plane).
//!
//! The hot path never talks to Redis: it takes units from a [`Lease`], one atomic per limit,
//! which the control thread tops up with grants it obtained for the current window. While the
//! control plane has no shared backend (the embedded default, or Redis unreachable) a lease is
//! inactive and admits everything, leaving the node's local limiter as the only limit.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// Units of one shared limit that this node may still spend in the current window.
#[derive(Debug, Default)]
pub struct Lease {
    active: AtomicBool,
    tokens: AtomicI64,
    taken: AtomicU64,
    refused: AtomicU64,
}

impl Lease {
    /// An inactive lease (admits everything).
    pub fn new() -> Lease {
        Lease::default()
    }

    /// Takes `units` if the lease is inactive or holds that many; otherwise takes nothing.
    #[inline]
    pub fn try_take(&self, units: u32) -> bool {
        if !self.active.load(Ordering::Relaxed) {
            return true;
        }
        let n = i64::from(units);
        let before = self.tokens.fetch_sub(n, Ordering::AcqRel);
        if before >= n {
            self.taken.fetch_add(u64::from(units), Ordering::Relaxed);
            true
        } else {
            self.tokens.fetch_add(n, Ordering::AcqRel);
            self.refused.fetch_add(1, Ordering::Relaxed);
            false
        }
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

    /// Starts enforcing the shared limit with `tokens` units (a new window's first grant).
    pub fn activate(&self, tokens: i64) {
        self.tokens.store(tokens, Ordering::Release);
        self.active.store(true, Ordering::Release);
    }

    /// Stops enforcing it (the shared backend is unreachable): only local limits apply.
    pub fn deactivate(&self) {
        self.active.store(false, Ordering::Release);
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
    /// The lease the hot path takes from.
    pub lease: std::sync::Arc<Lease>,
}

#[cfg(test)]
mod tests {
    use super::*;

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
