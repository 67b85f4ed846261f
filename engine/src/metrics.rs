//! Counters and latency histograms shared by all cores: relaxed atomics only, read by the control
//! plane for /metrics and by the gateway's own reports.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Upper bounds (microseconds) of the latency buckets: fine enough below a millisecond to read a
/// p99, coarse above a second.
pub const LATENCY_BUCKETS_US: [u64; 24] = [
    25, 50, 75, 100, 150, 200, 250, 300, 400, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 7_500, 10_000,
    25_000, 50_000, 100_000, 250_000, 1_000_000, 5_000_000,
];

/// Upper bounds (microseconds) of the receipt latency buckets: a vendor's receipt comes seconds
/// to hours after the submit (a handset off), so from 100 ms to a day.
pub const RECEIPT_LATENCY_BUCKETS_US: [u64; 18] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    120_000_000,
    300_000_000,
    600_000_000,
    1_800_000_000,
    3_600_000_000,
    7_200_000_000,
    21_600_000_000,
    43_200_000_000,
    86_400_000_000,
];

/// Buckets a histogram row holds: at most this many bounds, and +Inf.
const BUCKETS_MAX: usize = 25;

/// One `T` per executor core, each on cache lines of its own and written only by that core's
/// thread, for what the executors count on every message: a plain load and store per update
/// (see [`bump`]) where a shared atomic needs a locked instruction. Readers add the rows up. A
/// caller that passed another core's index would only lose updates, never corrupt anything:
/// every cell is still an atomic.
#[derive(Debug)]
struct PerCoreRows<T>(Box<[Padded<T>; crate::limits::CORES_MAX]>);

#[derive(Debug)]
#[repr(align(64))]
struct Padded<T>(T);

impl<T> PerCoreRows<T> {
    fn new(row: impl Fn() -> T) -> Self {
        PerCoreRows(Box::new(std::array::from_fn(|_| Padded(row()))))
    }

    /// The row executor `core` writes.
    #[inline(always)]
    fn of(&self, core: usize) -> &T {
        &self.0[core % crate::limits::CORES_MAX].0
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter().map(|p| &p.0)
    }
}

/// Adds `by` to a cell only the calling thread writes.
#[inline(always)]
fn bump(cell: &AtomicU64, by: u64) {
    cell.store(cell.load(Ordering::Relaxed).wrapping_add(by), Ordering::Relaxed);
}

/// A latency histogram with a row per executor ([`PerCoreRows`]): observed several times a
/// message, where a shared one cost three locked instructions per observation.
#[derive(Debug)]
pub struct Histogram {
    rows: PerCoreRows<HistogramRow>,
    bounds: &'static [u64],
}

#[derive(Debug, Default)]
struct HistogramRow {
    buckets: [AtomicU64; BUCKETS_MAX],
    sum_us: AtomicU64,
}

impl Default for Histogram {
    /// Buckets for a latency of microseconds to seconds ([`LATENCY_BUCKETS_US`]).
    fn default() -> Self {
        Histogram::with_bounds(&LATENCY_BUCKETS_US)
    }
}

impl Histogram {
    /// A histogram of the given bucket bounds (microseconds, rising; at most 24 are kept).
    pub fn with_bounds(bounds: &'static [u64]) -> Self {
        let bounds = &bounds[..bounds.len().min(BUCKETS_MAX - 1)];
        Histogram { rows: PerCoreRows::new(HistogramRow::default), bounds }
    }

    /// Its bucket bounds, in microseconds (+Inf not included).
    pub fn bounds(&self) -> &'static [u64] {
        self.bounds
    }

    /// Records one observation made on executor `core`.
    pub fn observe(&self, core: usize, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = self.bounds.iter().position(|&b| us <= b).unwrap_or(self.bounds.len());
        let row = self.rows.of(core);
        bump(&row.buckets[i], 1);
        bump(&row.sum_us, us);
    }

    /// (bucket counts, not cumulative, one per bound and the last +Inf), sum in microseconds,
    /// count (the buckets' total, so that the +Inf bucket and the count always agree).
    pub fn read(&self) -> (Vec<u64>, u64, u64) {
        let mut buckets = vec![0u64; self.bounds.len() + 1];
        let mut sum_us = 0u64;
        for row in self.rows.iter() {
            for (total, b) in buckets.iter_mut().zip(&row.buckets) {
                *total = total.wrapping_add(b.load(Ordering::Relaxed));
            }
            sum_us = sum_us.wrapping_add(row.sum_us.load(Ordering::Relaxed));
        }
        let count = buckets.iter().fold(0u64, |a, b| a.wrapping_add(*b));
        (buckets, sum_us, count)
    }
}

/// A counter with a cell per executor ([`PerCoreRows`]), for counts taken on every message.
#[derive(Debug)]
pub struct CoreCounter {
    cells: PerCoreRows<AtomicU64>,
}

impl Default for CoreCounter {
    fn default() -> Self {
        CoreCounter { cells: PerCoreRows::new(AtomicU64::default) }
    }
}

impl CoreCounter {
    /// Adds `n` on executor `core`.
    #[inline]
    pub fn add(&self, core: usize, n: u64) {
        bump(self.cells.of(core), n);
    }

    /// The total over every core.
    pub fn get(&self) -> u64 {
        self.cells.iter().fold(0u64, |a, c| a.wrapping_add(c.load(Ordering::Relaxed)))
    }
}

/// One gauge per core.
#[derive(Debug)]
pub struct PerCore(pub [AtomicU64; crate::limits::CORES_MAX]);

impl Default for PerCore {
    fn default() -> Self {
        PerCore(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl std::ops::Index<usize> for PerCore {
    type Output = AtomicU64;
    fn index(&self, i: usize) -> &AtomicU64 {
        &self.0[i]
    }
}

/// One counter per command_status code below 255; index 255 counts every other code. Counted
/// once a message, so with a row per executor ([`PerCoreRows`]).
#[derive(Debug)]
pub struct StatusCounts {
    rows: PerCoreRows<[AtomicU64; 256]>,
}

impl Default for StatusCounts {
    fn default() -> Self {
        StatusCounts { rows: PerCoreRows::new(|| std::array::from_fn(|_| AtomicU64::new(0))) }
    }
}

impl StatusCounts {
    /// Counts one answer with `status`, given on executor `core`.
    pub fn add(&self, core: usize, status: u32) {
        bump(&self.rows.of(core)[status.min(255) as usize], 1);
    }

    /// Answers counted with status index `i` (0..=255) over every core.
    pub fn get(&self, i: usize) -> u64 {
        self.rows
            .iter()
            .fold(0u64, |a, row| a.wrapping_add(row.get(i).map_or(0, |c| c.load(Ordering::Relaxed))))
    }
}

/// One counter per message_state value (0..=9).
#[derive(Debug, Default)]
pub struct StateCounts(pub [AtomicU64; 10]);

/// What the cores dropped at their stop of what the node had acknowledged (all 0 after a stop
/// that lost nothing): the binary exits with a status of its own when any is not.
#[derive(Debug, Default)]
pub struct ExitLosses {
    /// Receipts and MO still queued at exit, that nothing else holds.
    pub undelivered: AtomicU64,
    /// Record writes and receipt lookups the control thread's channel never took.
    pub not_handed_over: AtomicU64,
    /// Receipts parked for a message that another node may have stored, not found by the exit.
    pub parked: AtomicU64,
}

impl ExitLosses {
    /// All of them.
    pub fn total(&self) -> u64 {
        self.undelivered.load(Ordering::Acquire)
            + self.not_handed_over.load(Ordering::Acquire)
            + self.parked.load(Ordering::Acquire)
    }
}

/// Gateway-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// What the cores dropped at their stop (not rendered: read by the binary as it exits).
    pub lost_at_exit: ExitLosses,
    /// submit_sm/data_sm (and submit_multi destinations) received from bound customers:
    /// accepted + refused + rejected, once answered.
    pub submits: CoreCounter,
    /// Answered with our id.
    pub accepted: CoreCounter,
    /// Answered with an error status after routing.
    pub refused: CoreCounter,
    /// submit_sm/data_sm (and submit_multi destinations) refused before routing: past the
    /// window, an invalid field, or a throughput limit (the customer's or 10DLC); every
    /// destination of a submit_multi refused whole.
    pub rejected: AtomicU64,
    /// Refused for the customer's throughput.
    pub throttled_customer: AtomicU64,
    /// Refused for a 10DLC campaign's segments per minute.
    pub throttled_campaign: AtomicU64,
    /// Refused for a 10DLC brand's daily cap.
    pub capped_brand: AtomicU64,
    /// No route for the destination.
    pub no_route: AtomicU64,
    /// No vendor could take the message.
    pub no_vendor: AtomicU64,
    /// A vendor answered a temporary error or timed out and the message went to the next one.
    pub failovers: AtomicU64,
    /// Messages sent again after an unknown outcome (possible duplicates at the handset).
    pub possible_duplicates: AtomicU64,
    /// ESME_RTHROTTLED from vendors.
    pub vendor_throttled: AtomicU64,
    /// Vendor submits that timed out.
    pub vendor_timeouts: AtomicU64,
    /// Answers for sessions that were gone.
    pub orphan_answers: AtomicU64,
    /// Answers that could not be queued (must stay 0).
    pub lost_answers: AtomicU64,
    /// Customer binds accepted.
    pub binds: AtomicU64,
    /// Customer binds refused.
    pub bind_failures: AtomicU64,
    /// Customer connections open now.
    pub sessions: AtomicU64,
    /// Customer sessions bound now.
    pub sessions_bound: AtomicU64,
    /// Customer sessions bound now, by core.
    pub sessions_by_core: PerCore,
    /// Customer connections open now, by the core that serves them (see [`crate::balance`]).
    pub connections_by_core: PerCore,
    /// Vendor reconnects.
    pub vendor_reconnects: AtomicU64,
    /// Malformed PDUs answered with an error.
    pub malformed: AtomicU64,
    /// Sessions closed for framing errors.
    pub framing_errors: AtomicU64,
    /// Receipts received from vendors.
    pub receipts_in: AtomicU64,
    /// Receipts matched to a stored message.
    pub receipts_matched: AtomicU64,
    /// Receipts that arrived before their submit_sm_resp (and were matched later).
    pub receipts_early: AtomicU64,
    /// Receipts that never matched a message.
    pub receipts_unmatched: AtomicU64,
    /// Ops for the shared state handled locally because the queue to the control thread was full.
    pub remote_fallbacks: AtomicU64,
    /// Messages another node stored, found in the shared store for a receipt or query here.
    pub remote_found: AtomicU64,
    /// Receipts and MO handed to the shared queue for a customer bound on another node.
    pub remote_deliveries_out: AtomicU64,
    /// Receipts and MO taken from the shared queue for a customer bound here.
    pub remote_deliveries_in: AtomicU64,
    /// Receipts that could not be parsed.
    pub receipts_unparsable: AtomicU64,
    /// Receipt TLVs that failed their check and were passed over for the receipt text's value.
    pub receipt_tlvs_ignored: AtomicU64,
    /// MO messages received from vendors.
    pub mo_in: AtomicU64,
    /// MO messages for numbers no customer owns.
    pub mo_unroutable: AtomicU64,
    /// Receipts not derived for an earlier part of a long message because that part was refused.
    pub derived_for_refused: AtomicU64,
    /// A vendor's repeat of the final receipt a message already had (matched, not delivered again).
    pub receipts_repeated: AtomicU64,
    /// Deliveries (receipts, MO) the customer accepted.
    pub deliveries_ok: AtomicU64,
    /// Delivery attempts that failed (retried).
    pub deliveries_failed: AtomicU64,
    /// Deliveries dropped: by the queue overflow policy, or given up after the last attempt.
    /// A row per core, each its core's running total; the exporter sums them.
    pub deliveries_dropped: PerCore,
    /// Routed submits by the status the customer got (ESME_ROK included).
    pub submit_results: StatusCounts,
    /// Receipts matched, by the state they reported.
    pub receipts_by_state: StateCounts,
    /// Deliveries (receipts, MO) queued per customer home core, by core.
    pub delivery_queue_by_core: PerCore,
    /// Messages in the receipt store, by core.
    pub store_records_by_core: PerCore,
    /// Records the store evicted for its bound before their TTL, a running total per core.
    pub store_evicted: PerCore,
    /// Among them, records still waiting for their receipt, a running total per core.
    pub store_evicted_waiting: PerCore,
    /// Messages whose receipts were not held until their submit_sm_resp was written (the
    /// answer lost, or the bound of awaited answers reached), a running total per core.
    pub receipt_order_given_up: PerCore,
    /// Customer submit -> our submit_sm_resp.
    pub submit_latency: Histogram,
    /// Customer submit -> the vendor's receipt reaching us.
    pub receipt_latency: ReceiptLatency,
    /// Our submit_sm -> the vendor's submit_sm_resp.
    pub vendor_latency: Histogram,
    /// When each executor last ran its ticker (the liveness probe's view of the cores).
    pub core_ticks: CoreTicks,
}

/// When each executor's ticker last ran. A core that hangs without panicking (a loop that never
/// yields, a blocking call) stops ticking while the control thread and every other core carry
/// on, so its sessions stall with nothing else noticing: `/health` reads this to fail, and the
/// orchestrator restarts the node.
#[derive(Debug)]
pub struct CoreTicks {
    epoch: Instant,
    /// Milliseconds after `epoch`, plus one; 0 before the core's first tick.
    last: PerCore,
}

impl Default for CoreTicks {
    fn default() -> Self {
        CoreTicks { epoch: Instant::now(), last: PerCore::default() }
    }
}

impl CoreTicks {
    /// Executor `core` is running its ticker now.
    pub fn beat(&self, core: usize) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        if let Some(cell) = self.last.0.get(core) {
            cell.store(ms + 1, Ordering::Relaxed);
        }
    }

    /// How long ago executor `core` last ticked; `None` before its first tick.
    pub fn age(&self, core: usize) -> Option<Duration> {
        let last = self.last.0.get(core)?.load(Ordering::Relaxed).checked_sub(1)?;
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        Some(Duration::from_millis(now.saturating_sub(last)))
    }

    /// The first of the first `cores` executors that has not ticked for longer than `limit`,
    /// with its age.
    pub fn stalled(&self, cores: usize, limit: Duration) -> Option<(usize, Duration)> {
        (0..cores).find_map(|c| self.age(c).filter(|a| *a > limit).map(|a| (c, a)))
    }
}

/// The receipt latency histogram: [`RECEIPT_LATENCY_BUCKETS_US`].
#[derive(Debug)]
pub struct ReceiptLatency(pub Histogram);

impl Default for ReceiptLatency {
    fn default() -> Self {
        ReceiptLatency(Histogram::with_bounds(&RECEIPT_LATENCY_BUCKETS_US))
    }
}

impl std::ops::Deref for ReceiptLatency {
    type Target = Histogram;
    fn deref(&self) -> &Histogram {
        &self.0
    }
}

impl Metrics {
    /// Records the customer-side latency of one submit answered on executor `core`.
    pub fn observe_submit(&self, core: usize, d: Duration) {
        self.submit_latency.observe(core, d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_core_that_stops_ticking_is_reported_stalled_and_one_never_started_is_not() {
        let t = CoreTicks::default();
        assert_eq!(t.age(0), None, "no tick yet");
        t.beat(0);
        t.beat(1);
        let limit = Duration::from_millis(40);
        assert_eq!(t.stalled(3, limit), None, "both just ticked; core 2 has not started");
        std::thread::sleep(Duration::from_millis(60));
        t.beat(1);
        let (core, age) = t.stalled(3, limit).expect("core 0 stopped ticking");
        assert_eq!(core, 0);
        assert!(age >= Duration::from_millis(60), "{age:?}");
        t.beat(0);
        assert_eq!(t.stalled(3, limit), None, "ticking again");
        t.beat(crate::limits::CORES_MAX + 5); // out of range: ignored, no panic
    }

    #[test]
    fn rows_written_on_different_cores_add_up() {
        let h = Histogram::default();
        h.observe(0, Duration::from_micros(10));
        h.observe(1, Duration::from_micros(10));
        h.observe(1, Duration::from_millis(2));
        h.observe(crate::limits::CORES_MAX - 1, Duration::from_secs(9));
        let (buckets, sum_us, count) = h.read();
        assert_eq!(count, 4);
        assert_eq!(buckets[0], 2, "two observations of 10 us, on two cores");
        assert_eq!(buckets[13], 1, "2 ms: in the 2,000 us bucket");
        assert_eq!(buckets[24], 1, "9 s: +Inf");
        assert_eq!(sum_us, 10 + 10 + 2_000 + 9_000_000);

        // Receipts come seconds to hours after the submit: a 30 s and a 2 h one land in
        // buckets of their own, not in +Inf.
        let m = Metrics::default();
        m.receipt_latency.observe(0, Duration::from_secs(30));
        m.receipt_latency.observe(0, Duration::from_secs(2 * 3600));
        m.receipt_latency.observe(0, Duration::from_secs(3 * 86_400));
        let (buckets, _, count) = m.receipt_latency.read();
        assert_eq!((buckets.len(), count), (RECEIPT_LATENCY_BUCKETS_US.len() + 1, 3));
        assert_eq!(buckets[7], 1, "30 s");
        assert_eq!(buckets[14], 1, "2 h");
        assert_eq!(buckets[18], 1, "3 days: +Inf");

        let c = CoreCounter::default();
        c.add(0, 3);
        c.add(1, 4);
        c.add(1, 1);
        assert_eq!(c.get(), 8);

        let s = StatusCounts::default();
        s.add(0, 0);
        s.add(1, 0);
        s.add(1, 0x58);
        s.add(0, 0x1_0000);
        assert_eq!((s.get(0), s.get(0x58), s.get(255), s.get(1)), (2, 1, 1, 0));
    }
}
