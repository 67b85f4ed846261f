//! What a load run measured, and its four forms: a table for people, one JSON object, the HDR
//! percentile distribution (`.hgrm`), and a self-contained latency plot (SVG or HTML).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;

use crate::limits::LATENCY_MAX_US;

/// A latency histogram in microseconds, 1 µs to one hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // Constant bounds that hdrhistogram accepts (low >= 1, high >= 2 * low, sigfig <= 5).
    const _: () = assert!(LATENCY_MAX_US >= 2);
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("constant histogram bounds are valid")
}

/// Percentiles of one latency distribution, in microseconds.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// Samples.
    pub count: u64,
    /// Smallest.
    pub min: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// 99.99th percentile.
    pub p9999: u64,
    /// Largest.
    pub max: u64,
}

impl Summary {
    /// The summary of a histogram.
    pub fn of(h: &Histogram<u64>) -> Summary {
        if h.is_empty() {
            return Summary::default();
        }
        Summary {
            count: h.len(),
            min: h.min(),
            mean: (h.mean() * 10.0).round() / 10.0,
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            p9999: h.value_at_quantile(0.9999),
            max: h.max(),
        }
    }
}

/// The latencies measured.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Latencies {
    /// submit_sm to its ESME_ROK submit_sm_resp. Open model: from the intended send time, so that
    /// stalls of the server are not hidden by the sender waiting (coordinated omission
    /// corrected). Also holds every submit that got no answer, at the time it was given up (a
    /// lower bound): timeouts, submits lost with their connection and, in the open model,
    /// messages due but not sent by the end of the run (`due_unsent`, at the end). Error
    /// responses are not in it (see `error_resp`).
    pub submit_resp: Summary,
    /// The same from the actual send: the server's service time alone (ESME_ROK responses, and
    /// timeouts and lost submits when given up).
    pub service_time: Summary,
    /// submit_sm (intended time) to a submit_sm_resp with an error status (or generic_nack).
    pub error_resp: Summary,
    /// submit_sm (intended time) to the delivery receipt.
    pub receipt: Summary,
}

/// The raw histograms behind [`Latencies`].
#[derive(Debug, Clone)]
pub struct Histograms {
    /// See [`Latencies::submit_resp`].
    pub submit_resp: Histogram<u64>,
    /// See [`Latencies::service_time`].
    pub service_time: Histogram<u64>,
    /// See [`Latencies::error_resp`].
    pub error_resp: Histogram<u64>,
    /// See [`Latencies::receipt`].
    pub receipt: Histogram<u64>,
}

impl Default for Histograms {
    fn default() -> Self {
        Histograms {
            submit_resp: new_histogram(),
            service_time: new_histogram(),
            error_resp: new_histogram(),
            receipt: new_histogram(),
        }
    }
}

impl Histograms {
    /// Adds another set (same bounds, so this cannot fail; a failure is ignored).
    pub fn add(&mut self, o: &Histograms) {
        let _ = self.submit_resp.add(&o.submit_resp);
        let _ = self.service_time.add(&o.service_time);
        let _ = self.error_resp.add(&o.error_resp);
        let _ = self.receipt.add(&o.receipt);
    }
}

/// Sessions: connections, binds and what ended them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionCounts {
    /// Successful binds (reconnections included).
    pub binds_ok: u64,
    /// Bind responses with an error, by status name.
    pub bind_failures: BTreeMap<String, u64>,
    /// TCP connects that failed or timed out.
    pub connect_failures: u64,
    /// Connections closed by the server (or broken) before we unbound.
    pub disconnects: u64,
    /// Sessions the server unbound before their share of the run was sent (a stopping server):
    /// the run covered less than it was asked to.
    #[serde(default)]
    pub server_unbinds: u64,
    /// Reconnections made.
    pub reconnects: u64,
}

/// Delivery receipts.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReceiptCounts {
    /// Receipts asked for and awaited: OK submit_sm_resp with registered_delivery set.
    pub expected: u64,
    /// Receipts whose id matched a message id from a submit_sm_resp.
    pub matched: u64,
    /// Expected receipts that never came (within the receipt wait).
    pub missing: u64,
    /// Receipts whose id matched nothing we were given (or came twice).
    pub unmatched: u64,
    /// Receipts without a readable id.
    pub unparsable: u64,
    /// Receipts with a non-final state (ENROUTE, ...): counted, not matched.
    pub intermediate: u64,
    /// Messages not tracked because the tracking table was full.
    pub untracked: u64,
    /// Message ids the server gave to more than one accepted message (each such message's
    /// receipt cannot be told apart).
    #[serde(default)]
    pub duplicate_ids: u64,
    /// Final states of the receipts received, by stat word.
    pub states: BTreeMap<String, u64>,
}

/// The result of a load run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// Server address.
    pub target: String,
    /// Submitting sessions.
    pub binds: usize,
    /// How they bound.
    pub bind_mode: String,
    /// Window per session.
    pub window: u32,
    /// `closed` (as fast as the window allows) or `open` (fixed rate).
    pub model: String,
    /// Target rate of the open model, messages per second.
    pub rate_target: Option<f64>,
    /// Executors used.
    pub cores: usize,
    /// Seconds from the first submit_sm to the last response.
    pub elapsed_s: f64,
    /// Wall-clock time (Unix epoch, milliseconds) of the first submit_sm and of the last
    /// response: the interval `elapsed_s`, `ok_per_s` and `responses_per_s` cover, for lining
    /// the run up with other processes' measurements. 0 when nothing was sent.
    pub first_send_unix_ms: u64,
    /// See `first_send_unix_ms`.
    pub last_resp_unix_ms: u64,
    /// Wall-clock time (Unix epoch, milliseconds) of the last final receipt received; 0 when
    /// none came. Receipts still arriving after the last response are work the target did for
    /// the run: a throughput with receipts counts up to here.
    pub last_receipt_unix_ms: u64,
    /// Messages started (a long message counts once).
    pub messages_sent: u64,
    /// submit_sm sent (one per part).
    pub submits_sent: u64,
    /// submit_sm_resp with ESME_ROK.
    pub submits_ok: u64,
    /// submit_sm_resp (or generic_nack) with an error.
    pub submits_failed: u64,
    /// ESME_ROK submit_sm_resp per second over `elapsed_s`: the throughput.
    pub ok_per_s: f64,
    /// Every submit_sm_resp per second over `elapsed_s`, ESME_ROK and errors alike (a server
    /// refusing with ESME_RTHROTTLED answers fast; this is not its throughput).
    pub responses_per_s: f64,
    /// Non-OK command_status, by name.
    pub errors: BTreeMap<String, u64>,
    /// submit_sm without response within the timeout.
    pub timeouts: u64,
    /// Responses that came after their timeout, or for a sequence number not outstanding.
    pub late_responses: u64,
    /// submit_sm outstanding when a connection was lost, or still outstanding when the run ended.
    pub lost_in_flight: u64,
    /// Open model: messages that fell due before the end of the run but were never sent, held
    /// back by a full window when the deadline passed. Each is in `latency_us.submit_resp` at
    /// (end of sending - its due time).
    pub due_unsent: u64,
    /// Malformed PDUs received.
    pub malformed: u64,
    /// MO messages (deliver_sm that are not receipts) received.
    pub mo_received: u64,
    /// Sessions.
    pub sessions: SessionCounts,
    /// Receipts.
    pub receipts: ReceiptCounts,
    /// Latency percentiles, microseconds.
    pub latency_us: Latencies,
    /// The histograms themselves (not serialised).
    #[serde(skip)]
    pub histograms: Histograms,
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

impl Report {
    /// The JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// Whether the run saw no errors, timeouts, losses or missing receipts, and every receipt due
    /// could be checked (none untracked).
    pub fn is_clean(&self) -> bool {
        self.submits_failed == 0
            && self.timeouts == 0
            && self.lost_in_flight == 0
            && self.due_unsent == 0
            && self.receipts.missing == 0
            && self.receipts.unmatched == 0
            && self.receipts.duplicate_ids == 0
            && self.receipts.untracked == 0
            && self.sessions.bind_failures.is_empty()
            && self.sessions.server_unbinds == 0
    }

    /// The human table.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let model = match self.rate_target {
            Some(r) => format!("open model, {} msg/s target", thousands(r as u64)),
            None => "closed model".to_string(),
        };
        let _ = writeln!(s, "smppgw-loadgen -> {}", self.target);
        let _ = writeln!(
            s,
            "  {} {} binds, window {}, {model}, {} core(s)",
            self.binds, self.bind_mode, self.window, self.cores
        );
        let _ = writeln!(s);
        let _ = writeln!(s, "  elapsed            {:>14.3} s", self.elapsed_s);
        let _ = writeln!(s, "  throughput (OK)    {:>14} ESME_ROK/s", thousands(self.ok_per_s as u64));
        let _ = writeln!(
            s,
            "  responses          {:>14} submit_sm_resp/s (OK and errors)",
            thousands(self.responses_per_s as u64)
        );
        let _ = writeln!(s, "  messages sent      {:>14}", thousands(self.messages_sent));
        let _ = writeln!(s, "  submit_sm sent     {:>14}", thousands(self.submits_sent));
        let _ = writeln!(s, "  ESME_ROK           {:>14}", thousands(self.submits_ok));
        if self.submits_failed > 0 {
            let _ = writeln!(s, "  errors (all)       {:>14}", thousands(self.submits_failed));
        }
        for (name, n) in &self.errors {
            let _ = writeln!(s, "  {name:<18} {:>14}", thousands(*n));
        }
        for (label, n) in [
            ("timeouts", self.timeouts),
            ("late responses", self.late_responses),
            ("lost in flight", self.lost_in_flight),
            ("due, unsent", self.due_unsent),
            ("malformed PDUs", self.malformed),
            ("MO received", self.mo_received),
        ] {
            if n > 0 {
                let _ = writeln!(s, "  {label:<18} {:>14}", thousands(n));
            }
        }
        let ss = &self.sessions;
        let _ = writeln!(s, "  binds ok           {:>14}", thousands(ss.binds_ok));
        for (name, n) in &ss.bind_failures {
            let _ = writeln!(s, "  bind {name:<13} {:>14}", thousands(*n));
        }
        for (label, n) in [
            ("connect failures", ss.connect_failures),
            ("disconnects", ss.disconnects),
            ("server unbinds", ss.server_unbinds),
            ("reconnects", ss.reconnects),
        ] {
            if n > 0 {
                let _ = writeln!(s, "  {label:<18} {:>14}", thousands(n));
            }
        }
        let r = &self.receipts;
        if r.expected + r.matched + r.unmatched + r.unparsable > 0 {
            let _ = writeln!(s);
            let _ = writeln!(s, "  receipts expected  {:>14}", thousands(r.expected));
            let _ = writeln!(s, "  receipts matched   {:>14}", thousands(r.matched));
            for (label, n) in [
                ("missing", r.missing),
                ("unmatched", r.unmatched),
                ("unparsable", r.unparsable),
                ("intermediate", r.intermediate),
                ("untracked", r.untracked),
                ("dup. ids", r.duplicate_ids),
            ] {
                if n > 0 {
                    let _ = writeln!(s, "  receipts {label:<9} {:>14}", thousands(n));
                }
            }
            for (st, n) in &r.states {
                let _ = writeln!(s, "    stat:{st:<12} {:>13}", thousands(*n));
            }
        }
        let _ = writeln!(s);
        let _ =
            writeln!(s, "  latency (ms)          p50      p90      p99    p99.9   p99.99      max    count");
        let rows = [
            (
                if self.rate_target.is_some() { "submit->resp*" } else { "submit->resp" },
                &self.latency_us.submit_resp,
            ),
            ("service time", &self.latency_us.service_time),
            ("submit->error", &self.latency_us.error_resp),
            ("submit->receipt", &self.latency_us.receipt),
        ];
        for (name, l) in rows {
            if l.count == 0 {
                continue;
            }
            let _ = writeln!(
                s,
                "  {name:<16} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
                ms(l.p50),
                ms(l.p90),
                ms(l.p99),
                ms(l.p999),
                ms(l.p9999),
                ms(l.max),
                thousands(l.count)
            );
        }
        if self.rate_target.is_some() {
            let _ = writeln!(s, "  * from the intended send time (coordinated omission corrected)");
        }
        if self.timeouts + self.lost_in_flight + self.due_unsent > 0 {
            let _ = writeln!(
                s,
                "  submit->resp also holds each submit never answered (timeout, lost in flight, due\n  \
                 but unsent) at the time it was given up; error responses are in submit->error"
            );
        }
        s
    }

    /// Writes the HDR percentile distribution of submit->resp to `path`, and, when receipts were
    /// measured, that of submit->receipt next to it (`NAME.receipt.hgrm`). Values in milliseconds,
    /// as HdrHistogram's plotter expects.
    pub fn write_hgrm(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, hgrm(&self.histograms.submit_resp))?;
        if !self.histograms.receipt.is_empty() {
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            std::fs::write(
                path.with_file_name(format!("{stem}.receipt.hgrm")),
                hgrm(&self.histograms.receipt),
            )?;
        }
        Ok(())
    }

    /// Writes the latency plot: SVG for a `.svg` path, a self-contained HTML page otherwise.
    pub fn write_plot(&self, path: &Path) -> std::io::Result<()> {
        let svg = self.plot_svg();
        let is_svg = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("svg"));
        if is_svg {
            return std::fs::write(path, svg);
        }
        let mut html = String::new();
        let _ = write!(
            html,
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>smppgw-loadgen latency</title>\
             <style>body{{font-family:sans-serif;margin:2em;color:#222}}pre{{background:#f6f6f6;padding:1em}}</style>\
             </head><body><h1>smppgw-loadgen latency</h1>\n{svg}\n<pre>{}</pre>\n</body></html>\n",
            html_escape(&self.to_table())
        );
        std::fs::write(path, html)
    }

    /// The percentile curves as an SVG document.
    pub fn plot_svg(&self) -> String {
        let mut series: Vec<(&str, &str, &Histogram<u64>)> = Vec::new();
        let resp_name =
            if self.rate_target.is_some() { "submit->resp (from intended time)" } else { "submit->resp" };
        series.push((resp_name, "#1f77b4", &self.histograms.submit_resp));
        if self.rate_target.is_some() {
            series.push(("service time", "#2ca02c", &self.histograms.service_time));
        }
        if !self.histograms.error_resp.is_empty() {
            series.push(("submit->error", "#ff7f0e", &self.histograms.error_resp));
        }
        if !self.histograms.receipt.is_empty() {
            series.push(("submit->receipt", "#d62728", &self.histograms.receipt));
        }
        plot(&format!("Latency by percentile, {}", self.target), &series)
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// HdrHistogram's percentile distribution text, values in milliseconds.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut s = String::new();
    let _ =
        writeln!(s, "{:>12} {:>14} {:>10} {:>14}\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let value = v.value_iterated_to() as f64 / 1000.0;
            if q < 1.0 {
                let _ = writeln!(s, "{value:>12.3} {q:>14.12} {total:>10} {:>14.2}", 1.0 / (1.0 - q));
            } else {
                let _ = writeln!(s, "{value:>12.3} {q:>14.12} {total:>10}");
            }
        }
    }
    let mean = h.mean() / 1000.0;
    let sd = h.stdev() / 1000.0;
    let _ = writeln!(s, "#[Mean    = {mean:>12.3}, StdDeviation   = {sd:>12.3}]");
    let _ = writeln!(s, "#[Max     = {:>12.3}, Total count    = {:>12}]", h.max() as f64 / 1000.0, h.len());
    let _ = writeln!(s, "#[Buckets = {:>12}, SubBuckets     = {:>12}]", h.buckets(), h.distinct_values());
    s
}

/// Percentile curves on a "nines" axis (0%, 90%, 99%, ...) against milliseconds.
fn plot(title: &str, series: &[(&str, &str, &Histogram<u64>)]) -> String {
    const W: f64 = 900.0;
    const H: f64 = 480.0;
    const L: f64 = 80.0;
    const R: f64 = 30.0;
    const T: f64 = 50.0;
    const B: f64 = 60.0;
    const NINES_MAX: f64 = 5.0;
    let nines = |q: f64| -> f64 { (-(1.0 - q).max(1e-12).log10()).min(NINES_MAX) };
    let top = series.iter().map(|s| s.2.max() as f64 / 1000.0).fold(0.0f64, f64::max).max(0.001);
    // A round step (1, 2 or 5 times a power of ten) giving at most 6 intervals.
    let raw = top / 5.0;
    let pow = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * pow).find(|s| *s >= raw).unwrap_or(10.0 * pow);
    let ticks = (top / step).ceil().max(1.0) as u32;
    let max_ms = step * f64::from(ticks);
    let x = |n: f64| L + (W - L - R) * n / NINES_MAX;
    let y = |v: f64| H - B - (H - T - B) * (v / max_ms);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" \
         font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(s, "<rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>");
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"28\" font-size=\"16\" text-anchor=\"middle\">{}</text>",
        W / 2.0,
        html_escape(title)
    );
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"].iter().enumerate() {
        let xi = x(i as f64);
        let _ = writeln!(
            s,
            "<line x1=\"{xi:.1}\" y1=\"{T}\" x2=\"{xi:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{xi:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            H - B,
            H - B + 18.0
        );
    }
    let decimals = if step >= 1.0 { 0 } else { (-step.log10().floor()) as usize };
    for i in 0..=ticks {
        let v = step * f64::from(i);
        let yi = y(v);
        let _ = writeln!(
            s,
            "<line x1=\"{L}\" y1=\"{yi:.1}\" x2=\"{:.1}\" y2=\"{yi:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v:.decimals$}</text>",
            W - R,
            L - 6.0,
            yi + 4.0
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">percentile</text>",
        (L + W - R) / 2.0,
        H - 18.0
    );
    let _ = writeln!(
        s,
        "<text x=\"18\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {})\">latency (ms)</text>",
        (T + H - B) / 2.0,
        (T + H - B) / 2.0
    );
    for (k, (name, color, h)) in series.iter().enumerate() {
        if h.is_empty() {
            continue;
        }
        let mut pts = String::new();
        for v in h.iter_quantiles(5) {
            let q = v.quantile_iterated_to();
            let _ = write!(pts, "{:.1},{:.1} ", x(nines(q)), y(v.value_iterated_to() as f64 / 1000.0));
        }
        let _ =
            writeln!(s, "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{pts}\"/>");
        let ly = T + 16.0 + 18.0 * k as f64;
        let _ = writeln!(
            s,
            "<line x1=\"{}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"3\"/>\
             <text x=\"{}\" y=\"{}\">{}</text>",
            L + 14.0,
            L + 40.0,
            L + 46.0,
            ly + 4.0,
            html_escape(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_hgrm_and_plot_reflect_the_data() {
        // Goal: percentiles, the .hgrm text and the plot all come from the recorded values.
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.saturating_record(v * 10);
        }
        let s = Summary::of(&h);
        assert_eq!(s.count, 1000);
        assert!((4990..=5010).contains(&s.p50), "{}", s.p50);
        assert!((9890..=9910).contains(&s.p99), "{}", s.p99);
        let text = hgrm(&h);
        assert!(text.contains("Percentile") && text.contains("Total count    =         1000"), "{text}");
        assert!(text.contains("#[Max     =       10.0"), "{text}");
        let svg = plot("t", &[("a", "#000", &h)]);
        assert!(svg.starts_with("<svg") && svg.contains("<polyline"));
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(12), "12");
    }
}
