//! The load generator: binds sessions to any SMPP server, sends submit_sm in a closed or an open
//! model, and measures responses, errors, timeouts and receipts.
//!
//! [`run`] blocks until the run is over and returns its [`Report`]; it can be called from a test
//! on any thread. The protocol logic is in [`LoadSession`] and [`LoadCore`], both sans-IO.
//!
//! ```no_run
//! use smppgw_loadgen::load::{self, LoadConfig};
//! let cfg = LoadConfig {
//!     target: "127.0.0.1:2776".parse().unwrap(),
//!     system_id: "smppgw".into(),
//!     password: "secret".into(),
//!     count: Some(10_000),
//!     ..LoadConfig::default()
//! };
//! let report = load::run(cfg)?;
//! assert_eq!(report.submits_ok, 10_000);
//! # Ok::<(), smppgw_loadgen::Error>(())
//! ```

pub mod config;
pub mod core;
mod driver;
pub mod report;
pub mod session;
pub mod template;

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use smppgw_codec::CommandStatus;
use smppgw_codec::receipt::MessageState;

pub use self::config::{BindMode, Lengths, LoadConfig, MessageMix};
pub use self::core::{LoadCore, LoadShared};
use self::driver::{ProgressMsg, SessionPlan};
use self::report::new_histogram;
pub use self::report::{Histograms, Latencies, ReceiptCounts, Report, SessionCounts, Summary};
pub use self::session::LoadSession;
use self::template::Templates;
use crate::limits::PROGRESS_CHANNEL;
use crate::runtime::spawn_executor;
use crate::sim::BindKind;
use crate::{Error, Result};

/// Runs a load test to its end and returns the report. Progress goes to stderr once a second
/// when `cfg.progress` is set.
pub fn run(cfg: LoadConfig) -> Result<Report> {
    run_with_stop(cfg, Arc::new(AtomicBool::new(false)))
}

/// [`run`], ending early (sending stops, outstanding responses are awaited, sessions unbind)
/// once `stop` is set, e.g. from a signal handler or another thread.
pub fn run_with_stop(cfg: LoadConfig, stop: Arc<AtomicBool>) -> Result<Report> {
    cfg.validate().map_err(Error::Config)?;
    let templates = Templates::build(&cfg.mix).map_err(Error::Config)?;
    let cfg = Arc::new(cfg);
    let cores = cfg.cores.min(cfg.binds).max(1);
    let shared = Arc::new(LoadShared::new(cores, stop));
    let mut plans: Vec<Vec<SessionPlan>> = vec![Vec::new(); cores];
    let kind = match cfg.bind_mode {
        BindMode::Transmitter | BindMode::TxRx => BindKind::Transmitter,
        BindMode::Transceiver => BindKind::Transceiver,
    };
    for i in 0..cfg.binds {
        let quota = cfg.count.map(|n| n / cfg.binds as u64 + u64::from((i as u64) < n % cfg.binds as u64));
        plans[i % cores].push(SessionPlan { index: i, sessions: cfg.binds, kind, quota });
        if cfg.bind_mode == BindMode::TxRx {
            plans[i % cores].push(SessionPlan {
                index: i,
                sessions: cfg.binds,
                kind: BindKind::Receiver,
                quota: None,
            });
        }
    }
    shared.live_sessions.store(plans.iter().map(Vec::len).sum(), std::sync::atomic::Ordering::Release);
    let (tx, rx) = crossbeam_channel::bounded(PROGRESS_CHANNEL);
    let progress = cfg.progress.then_some(tx);
    let start = Instant::now();
    let mut handles = Vec::with_capacity(cores);
    for (index, plan) in plans.into_iter().enumerate() {
        let (c, s, t, p) = (cfg.clone(), shared.clone(), templates.clone(), progress.clone());
        handles.push(spawn_executor("smppgw-loadgen", index, &cfg.cpus, cfg.spin_before_park, move || {
            driver::run_core(c, s, index, start, t, plan, p)
        })?);
    }
    drop(progress);
    if cfg.progress {
        print_progress(&rx, cores, start);
    }
    let mut results = Vec::with_capacity(cores);
    for h in handles {
        results.push(h.join().map_err(|e| Error::Runtime(format!("load core failed: {e}")))?);
    }
    // Ids and receipts sent to a core after it took its last ones in: matched in the merge.
    let leftovers = shared.take_leftovers();
    Ok(merge(&cfg, cores, results, leftovers))
}

fn status_name(code: u32) -> String {
    if code == u32::MAX { "timeout".to_string() } else { CommandStatus(code).name_or_hex().into_owned() }
}

/// Wall-clock time of `t` (an instant of this process) as Unix epoch milliseconds.
fn unix_ms(t: Instant) -> u64 {
    let (now, wall) = (Instant::now(), std::time::SystemTime::now());
    let at = match now.checked_duration_since(t) {
        Some(ago) => wall.checked_sub(ago),
        None => wall.checked_add(t.duration_since(now)),
    };
    at.and_then(|w| w.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_millis() as u64)
}

fn merge(
    cfg: &LoadConfig,
    cores: usize,
    results: Vec<self::core::CoreResult>,
    leftovers: Vec<self::core::Routed>,
) -> Report {
    let mut c = self::core::Counters::default();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut bind_failures: BTreeMap<String, u64> = BTreeMap::new();
    let mut states = [0u64; 10];
    let mut hist = Histograms::default();
    let mut awaiting = HashMap::new();
    let mut early = Vec::new();
    let mut first: Option<Instant> = None;
    let mut last: Option<Instant> = None;
    let mut last_receipt: Option<Instant> = None;
    for r in results {
        let k = r.counters;
        for (dst, src) in [
            (&mut c.messages_sent, k.messages_sent),
            (&mut c.submits_sent, k.submits_sent),
            (&mut c.submits_ok, k.submits_ok),
            (&mut c.submits_failed, k.submits_failed),
            (&mut c.timeouts, k.timeouts),
            (&mut c.late_responses, k.late_responses),
            (&mut c.lost_in_flight, k.lost_in_flight),
            (&mut c.due_unsent, k.due_unsent),
            (&mut c.malformed, k.malformed),
            (&mut c.mo_received, k.mo_received),
            (&mut c.binds_ok, k.binds_ok),
            (&mut c.connect_failures, k.connect_failures),
            (&mut c.disconnects, k.disconnects),
            (&mut c.server_unbinds, k.server_unbinds),
            (&mut c.reconnects, k.reconnects),
            (&mut c.receipts_expected, k.receipts_expected),
            (&mut c.receipts_matched, k.receipts_matched),
            (&mut c.receipts_unparsable, k.receipts_unparsable),
            (&mut c.receipts_intermediate, k.receipts_intermediate),
            (&mut c.receipts_untracked, k.receipts_untracked),
            (&mut c.receipts_overflow, k.receipts_overflow),
            (&mut c.duplicate_ids, k.duplicate_ids),
            (&mut c.receipts_duplicate, k.receipts_duplicate),
        ] {
            *dst += src;
        }
        for (code, n) in r.errors {
            *errors.entry(status_name(code)).or_insert(0) += n;
        }
        for (code, n) in r.bind_failures {
            *bind_failures.entry(status_name(code)).or_insert(0) += n;
        }
        for (d, s) in states.iter_mut().zip(r.states) {
            *d += s;
        }
        hist.add(&r.hist);
        for (key, t_ref) in r.awaiting {
            // The same id awaited on two cores: given to two messages.
            if awaiting.insert(key, t_ref).is_some() {
                c.duplicate_ids += 1;
            }
        }
        early.extend(r.early);
        first = match (first, r.first_send) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        last = match (last, r.last_resp) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        last_receipt = match (last_receipt, r.last_receipt) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    for r in leftovers {
        match r.kind {
            self::core::RouteKind::Await => {
                c.receipts_expected += 1;
                if awaiting.insert(r.key, r.at).is_some() {
                    c.duplicate_ids += 1;
                }
            }
            self::core::RouteKind::Receipt => early.push((r.key, r.at)),
        }
    }
    // Receipts parked and never claimed (before a response that never came, strays, or kept on
    // another core than the owner of their id when its inbox was full): matched against every
    // core's table now.
    let mut unmatched = c.receipts_overflow + c.receipts_duplicate;
    for (key, arrived) in early {
        match awaiting.remove(&key) {
            Some(t_ref) => {
                c.receipts_matched += 1;
                let us = (arrived.saturating_duration_since(t_ref).as_micros() as u64).max(1);
                hist.receipt.saturating_record(us);
            }
            None => unmatched += 1,
        }
    }
    let elapsed = match (first, last) {
        (Some(a), Some(b)) => b.saturating_duration_since(a),
        _ => Duration::ZERO,
    };
    let secs = elapsed.as_secs_f64().max(1e-9);
    let answered = c.submits_ok + c.submits_failed;
    let per_s = |n: u64| if n > 0 { (n as f64 / secs).round() } else { 0.0 };
    Report {
        target: cfg.target.to_string(),
        binds: cfg.binds,
        bind_mode: match cfg.bind_mode {
            BindMode::Transmitter => "transmitter",
            BindMode::Transceiver => "transceiver",
            BindMode::TxRx => "transmitter+receiver",
        }
        .to_string(),
        window: cfg.window,
        model: if cfg.rate.is_some() { "open" } else { "closed" }.to_string(),
        rate_target: cfg.rate,
        cores,
        elapsed_s: (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        first_send_unix_ms: match (first, last) {
            (Some(a), Some(_)) => unix_ms(a),
            _ => 0,
        },
        last_resp_unix_ms: match (first, last) {
            (Some(_), Some(b)) => unix_ms(b),
            _ => 0,
        },
        last_receipt_unix_ms: last_receipt.map_or(0, unix_ms),
        messages_sent: c.messages_sent,
        submits_sent: c.submits_sent,
        submits_ok: c.submits_ok,
        submits_failed: c.submits_failed,
        ok_per_s: per_s(c.submits_ok),
        responses_per_s: per_s(answered),
        errors,
        timeouts: c.timeouts,
        late_responses: c.late_responses,
        lost_in_flight: c.lost_in_flight,
        due_unsent: c.due_unsent,
        malformed: c.malformed,
        mo_received: c.mo_received,
        sessions: SessionCounts {
            binds_ok: c.binds_ok,
            bind_failures,
            connect_failures: c.connect_failures,
            disconnects: c.disconnects,
            server_unbinds: c.server_unbinds,
            reconnects: c.reconnects,
        },
        receipts: ReceiptCounts {
            expected: c.receipts_expected,
            matched: c.receipts_matched,
            missing: awaiting.len() as u64,
            duplicate_ids: c.duplicate_ids,
            unmatched,
            unparsable: c.receipts_unparsable,
            intermediate: c.receipts_intermediate,
            untracked: c.receipts_untracked,
            states: states
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .filter_map(|(i, n)| MessageState::from_u8(i as u8).map(|s| (s.stat_word().to_string(), *n)))
                .collect(),
        },
        latency_us: Latencies {
            submit_resp: Summary::of(&hist.submit_resp),
            service_time: Summary::of(&hist.service_time),
            error_resp: Summary::of(&hist.error_resp),
            receipt: Summary::of(&hist.receipt),
        },
        histograms: hist,
    }
}

/// Prints one line a second on stderr until every core is done.
fn print_progress(rx: &crossbeam_channel::Receiver<ProgressMsg>, cores: usize, start: Instant) {
    let mut done = 0;
    let mut latest = vec![self::core::Counters::default(); cores];
    let mut interval = new_histogram();
    let mut last_ok = 0u64;
    let mut last_print = start;
    let mut next_print = start + Duration::from_secs(1) + Duration::from_millis(50);
    let mut err = std::io::stderr().lock();
    while done < cores {
        let timeout = next_print.saturating_duration_since(Instant::now());
        match rx.recv_timeout(timeout) {
            Ok(ProgressMsg::Sample { core, counters, interval: h }) => {
                if let Some(l) = latest.get_mut(core) {
                    *l = counters;
                }
                let _ = interval.add(&*h);
            }
            Ok(ProgressMsg::Done) => done += 1,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
        let now = Instant::now();
        if now >= next_print {
            next_print += Duration::from_secs(1);
            let sum = |f: fn(&self::core::Counters) -> u64| latest.iter().map(f).sum::<u64>();
            let ok = sum(|c| c.submits_ok);
            let rate = (ok - last_ok.min(ok)) as f64 / now.duration_since(last_print).as_secs_f64();
            last_ok = ok;
            last_print = now;
            let (p50, p99) = if interval.is_empty() {
                (0.0, 0.0)
            } else {
                (
                    interval.value_at_quantile(0.5) as f64 / 1000.0,
                    interval.value_at_quantile(0.99) as f64 / 1000.0,
                )
            };
            interval.reset();
            let _ = writeln!(
                err,
                "[{:>6.1}s] {:>9.0} ok/s  p50 {p50:.3} ms  p99 {p99:.3} ms  in flight {:>6}  ok {}  err {}  timeouts {}  receipts {}/{}",
                now.duration_since(start).as_secs_f64(),
                rate,
                sum(|c| c.inflight),
                sum(|c| c.submits_ok),
                sum(|c| c.submits_failed),
                sum(|c| c.timeouts),
                sum(|c| c.receipts_matched),
                sum(|c| c.receipts_expected),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::template::Templates;
    use std::rc::Rc;

    #[test]
    fn an_id_given_twice_and_a_receipt_come_twice_are_not_a_clean_run() {
        // Goal: a server that gives one id to two messages (one receipt can only match one of
        // them), and one that sends a receipt twice before its submit_sm_resp, are reported,
        // whether the duplicates meet on one core or on two.
        let t0 = Instant::now();
        let cfg = LoadConfig::default();
        let shared = Arc::new(LoadShared::new(2, Arc::new(AtomicBool::new(false))));
        let mk = |i: usize| {
            let templates = Rc::new(Templates::build(&cfg.mix).unwrap());
            LoadCore::new(Arc::new(cfg.clone()), shared.clone(), i, t0, templates)
        };
        let receipt = |id: &str| smppgw_codec::DeliverSm {
            esm_class: 0x04,
            short_message: bytes::Bytes::from(format!("id:{id} stat:DELIVRD")),
            ..Default::default()
        };
        let (mut a, mut b) = (mk(0), mk(1));
        a.await_receipt(b"X", t0);
        a.await_receipt(b"X", t0);
        a.on_deliver(&receipt("X"), t0);
        b.await_receipt(b"Y", t0);
        a.await_receipt(b"Y", t0);
        b.on_deliver(&receipt("Z"), t0);
        b.on_deliver(&receipt("Z"), t0);
        b.await_receipt(b"Z", t0);
        a.take_routed();
        b.take_routed();
        let r = merge(&cfg, 2, vec![a.take_result(), b.take_result()], shared.take_leftovers());
        assert_eq!(r.receipts.duplicate_ids, 2, "X twice on one core, Y on two");
        assert_eq!(r.receipts.unmatched, 1, "Z's second receipt");
        assert!(!r.is_clean());
        assert!(r.to_table().contains("receipts dup. ids"), "{}", r.to_table());
    }

    #[test]
    fn refusals_are_not_throughput_and_every_figure_is_labelled() {
        // Goal: a server answering 7 submits in 10 with ESME_RTHROTTLED has an OK throughput of
        // 3/s over a second, not 10/s: ok_per_s counts ESME_ROK only, responses_per_s every
        // response, and the table names both; error latency has its own row, and the messages
        // due but unsent are counted and make the run unclean.
        let t0 = Instant::now();
        let cfg = LoadConfig::default();
        let templates = Rc::new(Templates::build(&cfg.mix).unwrap());
        let shared = Arc::new(LoadShared::new(1, Arc::new(AtomicBool::new(false))));
        let mut c = LoadCore::new(Arc::new(cfg.clone()), shared, 0, t0, templates);
        let end = t0 + Duration::from_secs(1);
        for i in 0..10 {
            c.on_sent(t0);
            let status = if i < 3 { CommandStatus::ESME_ROK } else { CommandStatus::ESME_RTHROTTLED };
            c.on_resp(if i == 9 { end } else { t0 + Duration::from_millis(5) }, t0, t0, status);
        }
        c.on_due_unsent(end, t0 + Duration::from_millis(500), Duration::from_millis(1), 4);
        let r = merge(&cfg, 1, vec![c.take_result()], Vec::new());
        assert_eq!((r.ok_per_s, r.responses_per_s), (3.0, 10.0));
        assert_eq!(r.errors.get("ESME_RTHROTTLED"), Some(&7));
        assert_eq!(r.latency_us.error_resp.count, 7);
        assert_eq!(r.latency_us.submit_resp.count, 3 + 4, "OK responses and the due-unsent ones");
        assert_eq!(r.due_unsent, 4);
        assert!(!r.is_clean());
        assert!(r.first_send_unix_ms > 0 && r.last_resp_unix_ms >= r.first_send_unix_ms + 999);
        let t = r.to_table();
        for want in [
            "throughput (OK)                 3 ESME_ROK/s",
            "responses                      10",
            "submit->error",
            "due, unsent",
        ] {
            assert!(t.contains(want), "{want:?} in\n{t}");
        }
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(json["ok_per_s"], 3.0);
        assert_eq!(json["responses_per_s"], 10.0);
        assert_eq!(json["due_unsent"], 4);
        assert!(json.get("throughput_per_s").is_none(), "the ambiguous name is gone");
    }
}
