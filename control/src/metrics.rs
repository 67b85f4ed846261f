//! `/metrics`: the engine's counters, gauges and latency histograms in the Prometheus text
//! exposition format, version 0.0.4.
//!
//! Everything is read from relaxed atomics that the cores update ([`Metrics`] and the live fields
//! of the [`Snapshot`]); rendering takes no lock of the data plane and never blocks a core. Names
//! start with `smppgw_`; counters end in `_total`; latencies are in seconds. Every family this
//! module can write is listed in [`METRIC_FAMILIES`].
//!
//! What is rendered is only what the engine counts: nothing here is estimated or invented. A
//! family with labels (vendor binds, customers, cores) has one sample per labelled thing that
//! exists in the snapshot, and none when there is none.
//!
//! [`check_exposition`] is a strict reader of the subset of the format written here, for tests
//! and dashboards that want to verify a scrape.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use smppgw_engine::metrics::{Histogram, Metrics};
use smppgw_engine::snapshot::Snapshot;

/// The `Content-Type` of what [`render`] returns.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric family [`render`] may write, in the order it writes them.
pub const METRIC_FAMILIES: &[&str] = &[
    "smppgw_config_version",
    "smppgw_submits_total",
    "smppgw_submits_accepted_total",
    "smppgw_submits_refused_total",
    "smppgw_submits_rejected_total",
    "smppgw_customer_throttled_total",
    "smppgw_no_route_total",
    "smppgw_no_vendor_total",
    "smppgw_failovers_total",
    "smppgw_possible_duplicates_total",
    "smppgw_vendor_throttled_total",
    "smppgw_vendor_timeouts_total",
    "smppgw_orphan_answers_total",
    "smppgw_lost_answers_total",
    "smppgw_binds_accepted_total",
    "smppgw_binds_refused_total",
    "smppgw_sessions_open",
    "smppgw_sessions_bound",
    "smppgw_core_sessions_bound",
    "smppgw_core_connections",
    "smppgw_core_tick_age_seconds",
    "smppgw_vendor_reconnects_total",
    "smppgw_malformed_pdus_total",
    "smppgw_framing_errors_total",
    "smppgw_receipts_received_total",
    "smppgw_receipts_matched_total",
    "smppgw_receipts_early_total",
    "smppgw_receipts_unmatched_total",
    "smppgw_shared_fallbacks_total",
    "smppgw_shared_found_total",
    "smppgw_shared_deliveries_out_total",
    "smppgw_shared_deliveries_in_total",
    "smppgw_receipts_unparsable_total",
    "smppgw_receipt_tlvs_ignored_total",
    "smppgw_mo_received_total",
    "smppgw_mo_unroutable_total",
    "smppgw_receipts_derived_refused_total",
    "smppgw_receipts_repeated_total",
    "smppgw_deliveries_ok_total",
    "smppgw_deliveries_failed_total",
    "smppgw_deliveries_dropped_total",
    "smppgw_store_evicted_total",
    "smppgw_store_evicted_waiting_total",
    "smppgw_receipt_order_given_up_total",
    "smppgw_submit_latency_seconds",
    "smppgw_vendor_submit_latency_seconds",
    "smppgw_vendor_latency_seconds",
    "smppgw_receipt_latency_seconds",
    "smppgw_submit_results_total",
    "smppgw_receipts_by_state_total",
    "smppgw_delivery_queue_depth",
    "smppgw_store_records",
    "smppgw_customer_binds",
    "smppgw_customer_max_binds",
    "smppgw_customer_series_omitted",
    "smppgw_customer_routed_total",
    "smppgw_customer_messages_total",
    "smppgw_customer_segments_total",
    "smppgw_route_messages_total",
    "smppgw_vendor_messages_total",
    "smppgw_vendor_bind_up",
    "smppgw_vendor_bind_load",
    "smppgw_vendor_bind_capacity",
    "smppgw_vendor_bind_effective_capacity",
    "smppgw_vendor_bind_slowed",
    "smppgw_vendor_bind_sent_total",
    "smppgw_vendor_bind_reconnects_total",
    "smppgw_campaign_segments_total",
    "smppgw_campaign_throttled_total",
    "smppgw_brand_capped_total",
];

/// What a family's `# TYPE` line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Writes families one after the other; each family's samples follow its HELP and TYPE lines.
/// A counter's current value, whichever way the engine keeps it.
trait Count {
    fn count(&self) -> u64;
}

impl Count for smppgw_engine::metrics::PerCore {
    fn count(&self) -> u64 {
        self.0.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

impl Count for AtomicU64 {
    fn count(&self) -> u64 {
        self.load(Ordering::Relaxed)
    }
}

impl Count for smppgw_engine::metrics::CoreCounter {
    fn count(&self) -> u64 {
        self.get()
    }
}

struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        debug_assert!(METRIC_FAMILIES.contains(&name), "{name} missing from METRIC_FAMILIES");
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with one unlabelled sample.
    fn single(&mut self, name: &str, kind: Kind, help: &str, value: u64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    fn counter(&mut self, name: &str, help: &str, c: &impl Count) {
        self.single(name, Kind::Counter, help, c.count());
    }

    fn gauge(&mut self, name: &str, help: &str, g: &AtomicU64) {
        self.single(name, Kind::Gauge, help, g.load(Ordering::Relaxed));
    }

    fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.family(name, Kind::Histogram, help);
        self.histogram_series(name, &[], h);
    }

    /// One series of a histogram family declared with [`Exposition::family`].
    fn histogram_series(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let (buckets, sum_us, _count) = h.read();
        // The bucket atomics and the count are updated one after the other; reading them is not
        // one snapshot. `_count` is the bucket total, so `+Inf == _count` holds in every scrape.
        let mut cumulative = 0u64;
        for (i, n) in buckets.iter().enumerate() {
            cumulative = cumulative.saturating_add(*n);
            let le = h.bounds().get(i).map_or_else(|| "+Inf".to_owned(), |&us| micros_as_seconds(us));
            let bucket = format!("{name}_bucket");
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, cumulative);
        }
        self.sample(&format!("{name}_sum"), labels, micros_as_seconds(sum_us));
        self.sample(&format!("{name}_count"), labels, cumulative);
    }
}

/// `us` microseconds as decimal seconds, exactly (no float rounding): 25 -> `0.000025`, 1_000_000
/// -> `1`.
fn micros_as_seconds(us: u64) -> String {
    let (s, frac) = (us / 1_000_000, us % 1_000_000);
    if frac == 0 {
        return s.to_string();
    }
    let f = format!("{frac:06}");
    format!("{s}.{}", f.trim_end_matches('0'))
}

/// HELP text escapes: backslash and line feed.
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Label value escapes: backslash, double quote and line feed.
fn escape_label(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Renders every counter of `metrics` and the live state of `snap` (customer binds, vendor bind
/// slots) in the Prometheus text format 0.0.4.
///
/// `snap` should be the snapshot the cores run ([`smppgw_engine::runtime::GatewayControl::current`]):
/// vendor and customer families list what it configures.
pub fn render(metrics: &Metrics, snap: &Snapshot) -> String {
    // Destructured without `..`: a counter added to the engine fails to compile here until it is
    // exported, so /metrics never silently misses one.
    let Metrics {
        submits,
        accepted,
        refused,
        rejected,
        throttled_customer,
        // Exported per campaign and per brand by `render_campaigns`.
        throttled_campaign: _,
        capped_brand: _,
        no_route,
        no_vendor,
        failovers,
        possible_duplicates,
        vendor_throttled,
        vendor_timeouts,
        orphan_answers,
        lost_answers,
        binds,
        bind_failures,
        sessions,
        sessions_bound,
        sessions_by_core,
        connections_by_core,
        vendor_reconnects,
        malformed,
        framing_errors,
        receipts_in,
        receipts_matched,
        receipts_early,
        receipts_unmatched,
        remote_fallbacks,
        remote_found,
        remote_deliveries_out,
        remote_deliveries_in,
        receipts_unparsable,
        receipt_tlvs_ignored,
        mo_in,
        mo_unroutable,
        derived_for_refused,
        receipts_repeated,
        deliveries_ok,
        deliveries_failed,
        deliveries_dropped,
        submit_results,
        receipts_by_state,
        delivery_queue_by_core,
        store_records_by_core,
        store_evicted,
        store_evicted_waiting,
        receipt_order_given_up,
        submit_latency,
        receipt_latency,
        vendor_latency,
        core_ticks,
        // Counted as the cores stop, after the last scrape: read by the binary for its exit status.
        lost_at_exit: _,
    } = metrics;

    let mut e = Exposition { out: String::with_capacity(16 * 1024) };
    e.single(
        "smppgw_config_version",
        Kind::Gauge,
        "Version of the configuration snapshot handed to the cores (increases with every reload).",
        snap.version,
    );

    e.counter(
        "smppgw_submits_total",
        "submit_sm and data_sm (and each submit_multi destination) received from bound customers (accepted + refused + rejected once answered).",
        submits,
    );
    e.counter("smppgw_submits_accepted_total", "Customer submits answered with a message id.", accepted);
    e.counter(
        "smppgw_submits_refused_total",
        "Customer submits answered with an error status after routing.",
        refused,
    );
    e.counter(
        "smppgw_submits_rejected_total",
        "Customer submits refused before routing: past the window, an invalid field, or a throughput limit.",
        rejected,
    );
    e.counter(
        "smppgw_customer_throttled_total",
        "Customer submits refused for the customer's throughput limit.",
        throttled_customer,
    );
    e.counter("smppgw_no_route_total", "Submits with no route for the destination.", no_route);
    e.counter("smppgw_no_vendor_total", "Submits that no vendor of their route could take.", no_vendor);
    e.counter(
        "smppgw_failovers_total",
        "Submits sent to the next vendor after a temporary error or a timeout.",
        failovers,
    );
    e.counter(
        "smppgw_possible_duplicates_total",
        "Submits sent again after an unknown outcome (possible duplicates at the handset).",
        possible_duplicates,
    );
    e.counter("smppgw_vendor_throttled_total", "ESME_RTHROTTLED answers from vendors.", vendor_throttled);
    e.counter("smppgw_vendor_timeouts_total", "Vendor submits that timed out.", vendor_timeouts);
    e.counter("smppgw_orphan_answers_total", "Answers for customer sessions that were gone.", orphan_answers);
    e.counter("smppgw_lost_answers_total", "Answers that could not be queued (must stay 0).", lost_answers);
    e.counter("smppgw_binds_accepted_total", "Customer binds accepted.", binds);
    e.counter("smppgw_binds_refused_total", "Customer binds refused.", bind_failures);
    e.gauge("smppgw_sessions_open", "Customer connections open now.", sessions);
    e.gauge("smppgw_sessions_bound", "Customer sessions bound now.", sessions_bound);

    e.family("smppgw_core_sessions_bound", Kind::Gauge, "Customer sessions bound now, by executor core.");
    let cores = snap.cores.min(sessions_by_core.0.len());
    for (core, n) in sessions_by_core.0.iter().take(cores).enumerate() {
        e.sample("smppgw_core_sessions_bound", &[("core", &core.to_string())], n.load(Ordering::Relaxed));
    }
    e.family(
        "smppgw_core_connections",
        Kind::Gauge,
        "Customer connections open now, by the executor core serving them (placed evenly).",
    );
    for (core, n) in connections_by_core.0.iter().take(cores).enumerate() {
        e.sample("smppgw_core_connections", &[("core", &core.to_string())], n.load(Ordering::Relaxed));
    }

    e.family(
        "smppgw_core_tick_age_seconds",
        Kind::Gauge,
        "Time since each executor core last ran its ticker (every 10 ms when well); /health fails past 10 s.",
    );
    for core in 0..cores {
        if let Some(age) = core_ticks.age(core) {
            e.sample("smppgw_core_tick_age_seconds", &[("core", &core.to_string())], age.as_secs_f64());
        }
    }

    e.counter("smppgw_vendor_reconnects_total", "Vendor bind reconnects, all vendors.", vendor_reconnects);
    e.counter("smppgw_malformed_pdus_total", "Malformed PDUs answered with an error.", malformed);
    e.counter("smppgw_framing_errors_total", "Sessions closed for framing errors.", framing_errors);
    e.counter("smppgw_receipts_received_total", "Delivery receipts received from vendors.", receipts_in);
    e.counter("smppgw_receipts_matched_total", "Receipts matched to a stored message.", receipts_matched);
    e.counter(
        "smppgw_receipts_early_total",
        "Receipts that arrived before their submit_sm_resp and were matched later.",
        receipts_early,
    );
    e.counter(
        "smppgw_receipts_unmatched_total",
        "Receipts that never matched a message.",
        receipts_unmatched,
    );
    e.counter(
        "smppgw_shared_fallbacks_total",
        "Shared-state (Redis) operations handled locally because the queue to the control thread was full.",
        remote_fallbacks,
    );
    e.counter(
        "smppgw_shared_found_total",
        "Messages stored by another node, found in Redis for a receipt that arrived here.",
        remote_found,
    );
    e.counter(
        "smppgw_shared_deliveries_out_total",
        "Receipts and MO handed to Redis for a customer with no receiving bind on this node.",
        remote_deliveries_out,
    );
    e.counter(
        "smppgw_shared_deliveries_in_total",
        "Receipts and MO taken from Redis for customers bound on this node.",
        remote_deliveries_in,
    );
    e.counter("smppgw_receipts_unparsable_total", "Receipts that could not be parsed.", receipts_unparsable);
    e.counter(
        "smppgw_receipt_tlvs_ignored_total",
        "Receipt TLVs that failed their check; the receipt text's value was used.",
        receipt_tlvs_ignored,
    );
    e.counter("smppgw_mo_received_total", "MO messages received from vendors.", mo_in);
    e.counter("smppgw_mo_unroutable_total", "MO messages for numbers no customer owns.", mo_unroutable);
    e.counter(
        "smppgw_receipts_derived_refused_total",
        "Receipts not derived for an earlier part of a long message because that part was refused.",
        derived_for_refused,
    );
    e.counter(
        "smppgw_receipts_repeated_total",
        "A vendor's repeats of a final receipt already delivered, and intermediate notifications after it (not delivered).",
        receipts_repeated,
    );
    e.counter(
        "smppgw_deliveries_ok_total",
        "Deliveries (receipts, MO) the customer accepted.",
        deliveries_ok,
    );
    e.counter(
        "smppgw_deliveries_failed_total",
        "Delivery attempts that failed (retried).",
        deliveries_failed,
    );
    e.counter(
        "smppgw_deliveries_dropped_total",
        "Deliveries dropped by the queue overflow policy or given up after the last attempt.",
        deliveries_dropped,
    );
    e.counter(
        "smppgw_store_evicted_total",
        "Records the receipt store evicted for its bound (receipt_store_max) before their TTL.",
        store_evicted,
    );
    e.counter(
        "smppgw_store_evicted_waiting_total",
        "Evicted records still waiting for the receipt their customer asked for: raise receipt_store_max.",
        store_evicted_waiting,
    );
    e.counter(
        "smppgw_receipt_order_given_up_total",
        "Messages whose receipts were not held until their submit_sm_resp was written (its answer lost, or too many awaited).",
        receipt_order_given_up,
    );

    e.histogram(
        "smppgw_submit_latency_seconds",
        "Customer submit to our submit_sm_resp, in seconds.",
        submit_latency,
    );
    e.histogram(
        "smppgw_vendor_submit_latency_seconds",
        "Our submit_sm to the vendor's submit_sm_resp, all vendors, in seconds.",
        vendor_latency,
    );
    e.family(
        "smppgw_vendor_latency_seconds",
        Kind::Histogram,
        "Our submit_sm to the vendor's submit_sm_resp at each vendor, in seconds.",
    );
    for v in snap.vendors.iter().flatten() {
        e.histogram_series("smppgw_vendor_latency_seconds", &[("vendor", &v.cfg.name)], &v.counters.latency);
    }
    e.histogram(
        "smppgw_receipt_latency_seconds",
        "Customer submit to the vendor's receipt reaching the gateway, in seconds.",
        receipt_latency,
    );

    e.family(
        "smppgw_submit_results_total",
        Kind::Counter,
        "Customer submits by the command_status answered (refusals before routing included).",
    );
    for code in 0..256 {
        let n = submit_results.get(code);
        if n > 0 || code == 0 {
            let name = if code == 255 {
                "other".to_owned()
            } else {
                smppgw_codec::CommandStatus(code as u32).name_or_hex().into_owned()
            };
            e.sample("smppgw_submit_results_total", &[("status", &name)], n);
        }
    }
    e.family("smppgw_receipts_by_state_total", Kind::Counter, "Receipts matched, by the state they report.");
    for st in smppgw_codec::receipt::MessageState::ALL {
        let n = receipts_by_state.0.get(usize::from(st.as_u8())).map_or(0, |c| c.load(Ordering::Relaxed));
        e.sample("smppgw_receipts_by_state_total", &[("state", st.stat_word())], n);
    }
    e.family(
        "smppgw_delivery_queue_depth",
        Kind::Gauge,
        "Receipts and MO waiting in the delivery queues of the customers homed on each core.",
    );
    for core in 0..snap.cores {
        let core_label = core.to_string();
        e.sample(
            "smppgw_delivery_queue_depth",
            &[("core", &core_label)],
            delivery_queue_by_core[core].load(Ordering::Relaxed),
        );
    }
    e.family("smppgw_store_records", Kind::Gauge, "Messages held in the receipt store, by core.");
    for core in 0..snap.cores {
        let core_label = core.to_string();
        e.sample(
            "smppgw_store_records",
            &[("core", &core_label)],
            store_records_by_core[core].load(Ordering::Relaxed),
        );
    }

    render_customers(&mut e, snap);
    render_vendor_binds(&mut e, snap);
    render_campaigns(&mut e, snap);
    e.out
}

/// 10DLC campaign and brand families: one sample per campaign or brand that has counted
/// something since start. A configuration may hold up to 100,000 of each, most of them idle on
/// any one node: a sample for every one would make each scrape megabytes, built on the control
/// thread that also answers /health. A series appears with its first count, so `increase()`
/// misses that first count (Prometheus takes a new series' first sample as its start): alert on
/// the series' presence as well (`> 0`), or on the gateway-wide totals.
fn render_campaigns(e: &mut Exposition, snap: &Snapshot) {
    let t = &snap.campaigns;
    type CampaignField = fn(&smppgw_engine::campaign::CampaignCounters) -> &AtomicU64;
    let families: [(&str, &str, CampaignField); 2] = [
        ("smppgw_campaign_segments_total", "Segments admitted for each 10DLC campaign.", |k| &k.segments),
        (
            "smppgw_campaign_throttled_total",
            "Submits refused (ESME_RTHROTTLED) for each 10DLC campaign's segments per minute.",
            |k| &k.throttled,
        ),
    ];
    for (name, help, field) in families {
        e.family(name, Kind::Counter, help);
        for c in &t.campaigns {
            let n = field(&c.counters).load(Ordering::Relaxed);
            if n > 0 {
                e.sample(name, &[("campaign", &c.cfg.campaign_id)], n);
            }
        }
    }
    e.family(
        "smppgw_brand_capped_total",
        Kind::Counter,
        "Submits refused (ESME_RTHROTTLED) for each 10DLC brand's daily cap.",
    );
    for b in &t.brands {
        let n = b.counters.capped.load(Ordering::Relaxed);
        if n > 0 {
            e.sample("smppgw_brand_capped_total", &[("brand", &b.cfg.brand_id)], n);
        }
    }
}

/// Customers given series of their own in one scrape: past it, the busiest (bound ones first,
/// then by messages) keep theirs and `smppgw_customer_series_omitted` counts the rest. Eight
/// series a customer: 50,000 active customers would make each scrape about 28 MB, built on the
/// control thread, and most scrapers refuse so many samples from one target.
pub const CUSTOMER_SERIES_MAX: usize = 2_000;

fn render_customers(e: &mut Exposition, snap: &Snapshot) {
    // Only customers bound here or with traffic since start: a config may hold tens of thousands
    // of customers, most of them idle on any one node.
    let messages = |c: &smppgw_engine::snapshot::CustomerRt| {
        let k = &c.counters;
        [&k.submitted, &k.throttled, &k.rejected].iter().map(|n| n.load(Ordering::Relaxed)).sum::<u64>()
    };
    let mut active: Vec<_> = snap
        .customers
        .iter()
        .flatten()
        .filter(|c| {
            let k = &c.counters;
            c.binds.load(Ordering::Relaxed) > 0
                || [&k.submitted, &k.accepted, &k.refused, &k.throttled, &k.rejected, &k.segments]
                    .iter()
                    .any(|n| n.load(Ordering::Relaxed) > 0)
        })
        .collect();
    let omitted = active.len().saturating_sub(CUSTOMER_SERIES_MAX);
    if omitted > 0 {
        // Each key read once (the cores keep writing the counters: keys read during the sort
        // would change under it), then the busiest chosen in linear time.
        let mut keyed: Vec<_> = active
            .iter()
            .map(|c| (std::cmp::Reverse((c.binds.load(Ordering::Relaxed) > 0, messages(c))), *c))
            .collect();
        keyed.select_nth_unstable_by_key(CUSTOMER_SERIES_MAX - 1, |(k, _)| *k);
        keyed.truncate(CUSTOMER_SERIES_MAX);
        active = keyed.into_iter().map(|(_, c)| c).collect();
        // Listed in configuration order, as without the cut.
        active.sort_unstable_by_key(|c| c.idx);
    }
    e.family(
        "smppgw_customer_series_omitted",
        Kind::Gauge,
        "Active customers left out of the customer families this scrape (past CUSTOMER_SERIES_MAX).",
    );
    e.sample("smppgw_customer_series_omitted", &[], omitted);
    e.family("smppgw_customer_binds", Kind::Gauge, "Bound sessions of each customer on this node.");
    for c in &active {
        e.sample("smppgw_customer_binds", &[("customer", &c.cfg.system_id)], c.binds.load(Ordering::Relaxed));
    }
    e.family("smppgw_customer_max_binds", Kind::Gauge, "Concurrent binds each customer is allowed.");
    for c in &active {
        e.sample("smppgw_customer_max_binds", &[("customer", &c.cfg.system_id)], c.cfg.max_binds);
    }
    e.family(
        "smppgw_customer_routed_total",
        Kind::Counter,
        "Messages of each customer routed to vendors (accepted + refused once answered).",
    );
    for c in &active {
        e.sample(
            "smppgw_customer_routed_total",
            &[("customer", &c.cfg.system_id)],
            c.counters.submitted.load(Ordering::Relaxed),
        );
    }
    // Results that do not overlap: summed over `result` they are the customer's messages.
    e.family(
        "smppgw_customer_messages_total",
        Kind::Counter,
        "Messages of each customer by result: accepted, refused (after routing), throttled, \
         rejected (past the window or an invalid field).",
    );
    for c in &active {
        let k = &c.counters;
        for (result, n) in [
            ("accepted", &k.accepted),
            ("refused", &k.refused),
            ("throttled", &k.throttled),
            ("rejected", &k.rejected),
        ] {
            e.sample(
                "smppgw_customer_messages_total",
                &[("customer", &c.cfg.system_id), ("result", result)],
                n.load(Ordering::Relaxed),
            );
        }
    }
    e.family("smppgw_customer_segments_total", Kind::Counter, "Segments each customer submitted.");
    for c in &active {
        e.sample(
            "smppgw_customer_segments_total",
            &[("customer", &c.cfg.system_id)],
            c.counters.segments.load(Ordering::Relaxed),
        );
    }
    e.family(
        "smppgw_route_messages_total",
        Kind::Counter,
        "Messages routed by each route by result: accepted, refused (routes that carried traffic).",
    );
    // Only routes that carried traffic: a config may hold tens of thousands of routes.
    for r in snap.routes.routes.iter() {
        let (a, f) =
            (r.counters.accepted.load(Ordering::Relaxed), r.counters.refused.load(Ordering::Relaxed));
        if a + f == 0 {
            continue;
        }
        for (result, n) in [("accepted", a), ("refused", f)] {
            e.sample("smppgw_route_messages_total", &[("route", &r.name), ("result", result)], n);
        }
    }
    e.family(
        "smppgw_vendor_messages_total",
        Kind::Counter,
        "Submits at each vendor by outcome: accepted, refused, throttled and temporary (passed on), unknown.",
    );
    for v in snap.vendors.iter().flatten() {
        let k = &v.counters;
        for (result, n) in [
            ("accepted", &k.accepted),
            ("refused", &k.refused),
            ("temporary", &k.temporary),
            ("throttled", &k.throttled),
            ("unknown", &k.unknown),
        ] {
            e.sample(
                "smppgw_vendor_messages_total",
                &[("vendor", &v.cfg.name), ("result", result)],
                n.load(Ordering::Relaxed),
            );
        }
    }
}

/// The vendor bind slot families, one sample per slot, labelled `vendor`, `slot`, `core`.
fn render_vendor_binds(e: &mut Exposition, snap: &Snapshot) {
    type Field = fn(&smppgw_engine::snapshot::BindSlot) -> u64;
    let families: [(&str, Kind, &str, Field); 7] = [
        ("smppgw_vendor_bind_up", Kind::Gauge, "1 while the vendor bind is bound and takes submits.", |s| {
            u64::from(s.up.load(Ordering::Relaxed))
        }),
        (
            "smppgw_vendor_bind_load",
            Kind::Gauge,
            "Submits in flight plus queued at the vendor bind (window occupancy).",
            |s| u64::from(s.load.load(Ordering::Relaxed)),
        ),
        (
            "smppgw_vendor_bind_capacity",
            Kind::Gauge,
            "Most submits the vendor bind holds: its window plus its queue.",
            |s| u64::from(s.capacity),
        ),
        (
            "smppgw_vendor_bind_effective_capacity",
            Kind::Gauge,
            "What the vendor bind takes now: its capacity, or less while throttling slows it.",
            |s| u64::from(s.effective_capacity.load(Ordering::Relaxed)),
        ),
        ("smppgw_vendor_bind_slowed", Kind::Gauge, "1 while vendor throttling slows the bind.", |s| {
            u64::from(s.slowed.load(Ordering::Relaxed))
        }),
        ("smppgw_vendor_bind_sent_total", Kind::Counter, "Submits sent on the vendor bind.", |s| {
            s.sent.load(Ordering::Relaxed)
        }),
        ("smppgw_vendor_bind_reconnects_total", Kind::Counter, "Reconnects of the vendor bind.", |s| {
            s.reconnects.load(Ordering::Relaxed)
        }),
    ];
    for (name, kind, help, field) in families {
        e.family(name, kind, help);
        for v in snap.vendors.iter().flatten() {
            for s in &v.slots {
                let (slot, core) = (s.slot.to_string(), s.core.to_string());
                e.sample(name, &[("vendor", &v.cfg.name), ("slot", &slot), ("core", &core)], field(s));
            }
        }
    }
}

/// Why a scrape is not well-formed, with the 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ExpositionError {
    /// Line number, from 1.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Checks a scrape strictly against the rules this module writes by, and returns the names of its
/// families.
///
/// Rules: every family has one `# HELP` then one `# TYPE` line before its samples and appears once;
/// every sample belongs to the family declared last (a histogram's `_bucket`, `_sum`, `_count`);
/// sample values are numbers; label values are quoted and escaped; counters end in `_total`;
/// histogram buckets are cumulative, end with `le="+Inf"`, and `+Inf` equals `_count`.
///
/// # Errors
/// The first rule broken.
pub fn check_exposition(text: &str) -> Result<BTreeSet<String>, ExpositionError> {
    let mut families = BTreeSet::new();
    let mut current: Option<(String, String)> = None;
    let mut help_for: Option<String> = None;
    // Histogram state of each series (its labels but `le`) of the current family.
    let mut hist = Histograms::default();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let err = |message: String| ExpositionError { line, message };
        if raw.is_empty() {
            continue;
        }
        if let Some(rest) = raw.strip_prefix("# HELP ") {
            if let Some((name, _)) = &current {
                hist.finish(name).map_err(err)?;
            }
            let name = rest.split(' ').next().unwrap_or_default();
            check_name(name).map_err(err)?;
            help_for = Some(name.to_owned());
            current = None;
            continue;
        }
        if let Some(rest) = raw.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let (name, kind) = (it.next().unwrap_or_default(), it.next().unwrap_or_default());
            if help_for.as_deref() != Some(name) {
                return Err(err(format!("TYPE for {name} without its HELP line just before")));
            }
            if !matches!(kind, "counter" | "gauge" | "histogram") {
                return Err(err(format!("unknown type {kind:?}")));
            }
            if kind == "counter" && !name.ends_with("_total") {
                return Err(err(format!("counter {name} does not end in _total")));
            }
            if !families.insert(name.to_owned()) {
                return Err(err(format!("family {name} declared twice")));
            }
            help_for = None;
            hist = Histograms::default();
            current = Some((name.to_owned(), kind.to_owned()));
            continue;
        }
        if raw.starts_with('#') {
            continue;
        }
        let (sample, labels, value) = parse_sample(raw).map_err(err)?;
        let Some((family, kind)) = &current else {
            return Err(err(format!("sample {sample} before any TYPE line")));
        };
        if kind == "histogram" {
            hist.sample(family, &sample, &labels, value).map_err(err)?;
        } else if sample != *family {
            return Err(err(format!("sample {sample} is not of family {family}")));
        }
    }
    if let Some((name, _)) = &current {
        hist.finish(name).map_err(|message| ExpositionError { line: text.lines().count(), message })?;
    }
    Ok(families)
}

/// The series of one histogram family, by their labels other than `le`.
#[derive(Default)]
struct Histograms(BTreeMap<String, HistState>);

impl Histograms {
    fn sample(
        &mut self,
        family: &str,
        sample: &str,
        labels: &BTreeMap<String, String>,
        v: f64,
    ) -> Result<(), String> {
        let series: Vec<String> =
            labels.iter().filter(|(k, _)| k.as_str() != "le").map(|(k, v)| format!("{k}={v:?}")).collect();
        self.0.entry(series.join(",")).or_default().sample(family, sample, labels, v)
    }

    fn finish(&self, family: &str) -> Result<(), String> {
        for (series, h) in &self.0 {
            h.finish(family).map_err(|e| if series.is_empty() { e } else { format!("{e} ({series})") })?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct HistState {
    last: Option<f64>,
    last_le: Option<f64>,
    inf: Option<f64>,
    count: Option<f64>,
    seen: bool,
}

impl HistState {
    fn sample(
        &mut self,
        family: &str,
        sample: &str,
        labels: &BTreeMap<String, String>,
        v: f64,
    ) -> Result<(), String> {
        self.seen = true;
        if sample == format!("{family}_bucket") {
            let le = labels.get("le").ok_or_else(|| format!("{sample} without le"))?;
            if self.inf.is_some() {
                return Err(format!("{sample} after le=\"+Inf\""));
            }
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse::<f64>().map_err(|_| format!("bad le {le:?}"))?
            };
            if self.last_le.is_some_and(|p| bound <= p) {
                return Err(format!("le {le} not increasing"));
            }
            if self.last.is_some_and(|p| v < p) {
                return Err(format!("bucket le={le} holds {v}, less than the one before: not cumulative"));
            }
            self.last = Some(v);
            self.last_le = Some(bound);
            if le == "+Inf" {
                self.inf = Some(v);
            }
            Ok(())
        } else if sample == format!("{family}_count") {
            self.count = Some(v);
            Ok(())
        } else if sample == format!("{family}_sum") {
            Ok(())
        } else {
            Err(format!("sample {sample} is not of histogram {family}"))
        }
    }

    fn finish(&self, family: &str) -> Result<(), String> {
        if !self.seen {
            return Ok(());
        }
        match (self.inf, self.count) {
            (Some(inf), Some(count)) if inf == count => Ok(()),
            (Some(inf), Some(count)) => {
                Err(format!("{family}: +Inf bucket {inf} differs from _count {count}"))
            }
            (None, _) => Err(format!("{family}: no le=\"+Inf\" bucket")),
            (_, None) => Err(format!("{family}: no _count")),
        }
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name
            .chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit()));
    if ok { Ok(()) } else { Err(format!("bad metric name {name:?}")) }
}

type Sample = (String, BTreeMap<String, String>, f64);

/// `name{k="v",...} value`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or_else(|| format!("no value in {line:?}"))?;
    let name = &line[..name_end];
    check_name(name)?;
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        let mut end = None;
        // Labels: key="value", each followed by ',' or '}'.
        while let Some(&(start, c)) = chars.peek() {
            if c == '}' {
                end = Some(start + 1);
                break;
            }
            let eq = r[start..].find('=').ok_or("label without '='")? + start;
            let key = &r[start..eq];
            check_name(key)?;
            if r.as_bytes().get(eq + 1) != Some(&b'"') {
                return Err(format!("label {key} value not quoted"));
            }
            while chars.peek().is_some_and(|&(i, _)| i <= eq + 1) {
                chars.next();
            }
            let mut value = String::new();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        _ => return Err(format!("bad escape in label {key}")),
                    },
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(format!("label {key} value not closed"));
            }
            if labels.insert(key.to_owned(), value).is_some() {
                return Err(format!("label {key} twice"));
            }
            match chars.next() {
                Some((_, ',')) => {}
                Some((i, '}')) => {
                    end = Some(i + 1);
                    break;
                }
                _ => return Err("expected ',' or '}' after a label".to_owned()),
            }
        }
        let end = end.ok_or("labels not closed")?;
        rest = &r[end..];
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let v = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse::<f64>().map_err(|_| format!("bad value {v:?}"))?,
    };
    Ok((name.to_owned(), labels, v))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use smppgw_engine::config::{BrandConfig, CampaignConfig, Config, CustomerConfig, VendorConfig};
    use smppgw_engine::metrics::LATENCY_BUCKETS_US;

    use super::*;

    #[test]
    fn api_md_documents_every_metric_family() {
        // Goal: an operator reading control/API.md finds every family a node exports, so a
        // dashboard or alert is never built on a guess.
        let doc = include_str!("../API.md");
        for f in METRIC_FAMILIES.iter().chain(crate::redis::METRIC_FAMILIES) {
            assert!(doc.contains(&format!("| `{f}` |")), "control/API.md has no row for {f}");
        }
    }

    fn snapshot() -> Snapshot {
        let mut cfg = Config::default();
        cfg.customers.push(CustomerConfig::new("c1", "x"));
        cfg.customers.push(CustomerConfig::new("we\"ird\\", "x"));
        cfg.customers.push(CustomerConfig::new("idle", "x"));
        let mut v = VendorConfig::new("v1", "127.0.0.1", 1, "a", "b");
        v.binds = 3;
        cfg.vendors.push(v);
        cfg.brands.push(BrandConfig::new("B1", 10));
        let mut c = CampaignConfig::new("C1", "B1");
        c.source_prefixes = vec!["1555".into()];
        cfg.campaigns.push(c);
        Snapshot::build(cfg, 2)
    }

    #[test]
    fn customer_series_are_bounded_the_busiest_kept_and_the_rest_counted() {
        // Goal: however many customers are active, a scrape carries at most
        // CUSTOMER_SERIES_MAX customers' series (bound ones first, then the busiest), and says
        // how many it left out.
        let mut cfg = Config::default();
        let n = CUSTOMER_SERIES_MAX + 3;
        for i in 0..n {
            cfg.customers.push(CustomerConfig::new(format!("c{i}"), "x"));
        }
        let snap = Snapshot::build(cfg, 1);
        for (i, c) in snap.customers.iter().flatten().enumerate() {
            // c0 idle but bound; c1..c3 the quietest of the rest.
            match i {
                0 => c.binds.store(1, Ordering::Relaxed),
                _ => c.counters.submitted.store(i as u64, Ordering::Relaxed),
            }
        }
        let text = render(&Metrics::default(), &snap);
        check_exposition(&text).unwrap_or_else(|e| panic!("{e}"));
        assert!(text.contains("smppgw_customer_series_omitted 3\n"));
        let series = text.lines().filter(|l| l.starts_with("smppgw_customer_binds{")).count();
        assert_eq!(series, CUSTOMER_SERIES_MAX);
        assert!(text.contains("smppgw_customer_binds{customer=\"c0\"} 1\n"), "bound: kept");
        for quiet in ["c1", "c2", "c3"] {
            assert!(!text.contains(&format!("customer=\"{quiet}\"")), "{quiet} left out");
        }
        assert!(text.contains(&format!("smppgw_customer_routed_total{{customer=\"c{}\"}}", n - 1)));
    }

    #[test]
    fn the_results_of_a_customer_or_a_vendor_add_up_to_its_messages() {
        // Goal: summed over `result` (what a dashboard does), each family counts every message
        // once: the routed total is a family of its own, and a vendor's throttled answers are
        // not temporary ones too.
        let snap = snapshot();
        let c = &snap.customers[0].as_ref().unwrap().counters;
        c.submitted.store(3, Ordering::Relaxed);
        c.accepted.store(2, Ordering::Relaxed);
        c.refused.store(1, Ordering::Relaxed);
        c.throttled.store(4, Ordering::Relaxed);
        let v = &snap.vendors[0].as_ref().unwrap().counters;
        v.accepted.store(5, Ordering::Relaxed);
        v.throttled.store(2, Ordering::Relaxed);
        let text = render(&Metrics::default(), &snap);
        let sum = |prefix: &str| -> u64 {
            text.lines()
                .filter(|l| l.starts_with(prefix))
                .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
                .sum()
        };
        assert_eq!(sum("smppgw_customer_messages_total{customer=\"c1\""), 7, "2 + 1 + 4\n{text}");
        assert!(text.contains("smppgw_customer_routed_total{customer=\"c1\"} 3\n"), "{text}");
        assert_eq!(sum("smppgw_vendor_messages_total{vendor=\"v1\""), 7, "5 + 2\n{text}");
    }

    #[test]
    fn every_family_is_declared_typed_and_well_formed() {
        let m = Metrics::default();
        m.submits.add(1, 7);
        m.sessions_by_core[1].store(3, Ordering::Relaxed);
        for us in [10, 30, 30, 120, 2_000_000, 9_000_000] {
            m.submit_latency.observe(0, Duration::from_micros(us));
        }
        m.vendor_latency.observe(1, Duration::from_millis(3));
        let snap = snapshot();
        snap.vendors[0].as_ref().unwrap().slots[1].up.store(true, Ordering::Relaxed);
        snap.customers[0].as_ref().unwrap().binds.store(2, Ordering::Relaxed);
        snap.customers[1].as_ref().unwrap().counters.throttled.store(1, Ordering::Relaxed);
        assert!(snap.campaign_admit(1, b"15550001", 4, 0).is_ok());
        assert!(snap.campaign_admit(1, b"15550001", 7, 0).is_err(), "over the brand's cap");

        let text = render(&m, &snap);
        let families = check_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let declared: BTreeSet<String> = METRIC_FAMILIES.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(families, declared, "METRIC_FAMILIES lists exactly what is rendered");

        assert!(text.contains("smppgw_submits_total 7\n"));
        assert!(text.contains("smppgw_core_sessions_bound{core=\"1\"} 3\n"));
        assert!(!text.contains("core=\"2\"}"), "only the snapshot's cores");
        assert!(text.contains("smppgw_vendor_bind_up{vendor=\"v1\",slot=\"1\",core=\"1\"} 1\n"));
        assert!(text.contains("smppgw_vendor_bind_up{vendor=\"v1\",slot=\"2\",core=\"0\"} 0\n"));
        assert!(text.contains("smppgw_customer_binds{customer=\"c1\"} 2\n"));
        assert!(text.contains("smppgw_customer_binds{customer=\"we\\\"ird\\\\\"} 0\n"), "label escaping");
        assert!(!text.contains("customer=\"idle\""), "no series for a customer neither bound nor active");
        assert!(text.contains("smppgw_campaign_segments_total{campaign=\"C1\"} 4\n"), "{text}");
        assert!(
            !text.contains("smppgw_campaign_throttled_total{"),
            "no sample for a count still at zero: a configuration may hold 100,000 idle campaigns"
        );
        assert!(text.contains("smppgw_brand_capped_total{brand=\"B1\"} 1\n"));
        // Buckets in seconds, cumulative, +Inf == count; the sum in seconds.
        assert!(text.contains("smppgw_submit_latency_seconds_bucket{le=\"0.000025\"} 1\n"));
        assert!(text.contains("smppgw_submit_latency_seconds_bucket{le=\"0.00005\"} 3\n"));
        assert!(text.contains("smppgw_submit_latency_seconds_bucket{le=\"5\"} 5\n"));
        assert!(text.contains("smppgw_submit_latency_seconds_bucket{le=\"+Inf\"} 6\n"));
        assert!(text.contains("smppgw_submit_latency_seconds_count 6\n"));
        assert!(text.contains("smppgw_submit_latency_seconds_sum 11.00019\n"));
        assert!(text.contains("smppgw_vendor_submit_latency_seconds_bucket{le=\"0.003\"} 1\n"));
    }

    #[test]
    fn bucket_bounds_are_the_engine_buckets_in_seconds() {
        assert_eq!(micros_as_seconds(25), "0.000025");
        assert_eq!(micros_as_seconds(1_500), "0.0015");
        assert_eq!(micros_as_seconds(1_000_000), "1");
        assert_eq!(micros_as_seconds(5_000_000), "5");
        assert_eq!(micros_as_seconds(0), "0");
        for &us in &LATENCY_BUCKETS_US {
            let s: f64 = micros_as_seconds(us).parse().unwrap();
            assert!((s * 1e6 - us as f64).abs() < 1e-6);
        }
    }

    #[test]
    fn the_checker_catches_what_a_scraper_would_choke_on() {
        let bad = [
            ("x_total 1\n", "before any TYPE"),
            ("# HELP a_total h\n# TYPE a_total counter\nb_total 1\n", "not of family"),
            ("# HELP a h\n# TYPE a counter\na 1\n", "does not end in _total"),
            ("# TYPE a gauge\na 1\n", "without its HELP"),
            ("# HELP a h\n# TYPE a gauge\na{l=\"x} 1\n", "not closed"),
            ("# HELP a h\n# TYPE a gauge\na one\n", "bad value"),
            (
                "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 0\nh_count 1\n",
                "not cumulative",
            ),
            ("# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_sum 0\nh_count 2\n", "no le=\"+Inf\""),
            (
                "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 0\nh_count 3\n",
                "differs from _count",
            ),
            ("# HELP a h\n# TYPE a gauge\n# HELP a h\n# TYPE a gauge\n", "declared twice"),
        ];
        for (text, why) in bad {
            let e = check_exposition(text).expect_err(why);
            assert!(e.message.contains(why), "{text:?}: {e} does not say {why:?}");
        }
        let good = "# HELP a h\n# TYPE a gauge\na{x=\"1\",y=\"a\\\"b\"} 1.5\n";
        assert_eq!(check_exposition(good).unwrap().len(), 1);
    }
}
