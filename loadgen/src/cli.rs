//! Small parsers and the signal hook shared by the two binaries.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Parses a duration: `30s`, `500ms`, `2m`, `1h`, or plain seconds (`1.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let v: f64 =
        num.trim().parse().map_err(|_| format!("bad duration {s:?} (e.g. 30s, 500ms, 100us, 2m)"))?;
    let secs = match unit {
        "us" | "µs" => v / 1_000_000.0,
        "ms" => v / 1000.0,
        "s" => v,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("bad duration unit in {s:?} (us, ms, s, m, h)")),
    };
    if !(0.0..=366.0 * 86_400.0).contains(&secs) {
        return Err(format!("duration {s:?} outside 0..=1 year"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a count with an optional `k` (thousand) or `m` (million) suffix: `5000`, `100k`, `2m`.
pub fn parse_count(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase().replace('_', "");
    let (num, mul) = if let Some(n) = t.strip_suffix('k') {
        (n, 1_000.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 1_000_000.0)
    } else {
        (t.as_str(), 1.0)
    };
    let v: f64 = num.parse().map_err(|_| format!("bad count {s:?} (e.g. 5000, 100k, 2m)"))?;
    let v = v * mul;
    if !(0.0..=1e15).contains(&v) {
        return Err(format!("count {s:?} out of range"));
    }
    Ok(v.round() as u64)
}

/// Parses a rate like [`parse_count`], as a float (`250k` is 250000.0 per second).
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mul) = if let Some(n) = t.strip_suffix('k') {
        (n, 1_000.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 1_000_000.0)
    } else {
        (t.as_str(), 1.0)
    };
    let v: f64 = num.parse().map_err(|_| format!("bad rate {s:?} (e.g. 2000, 250k)"))?;
    Ok(v * mul)
}

/// Parses a share: `0.05` or `5%`.
pub fn parse_share(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| format!("bad share {s:?} (e.g. 0.05 or 5%)"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("share {s:?} outside 0..=1"));
    }
    Ok(v)
}

static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::Relaxed);
}

/// Makes SIGINT and SIGTERM set a flag instead of killing the process, and returns a flag that
/// follows it (polled by a small thread), so that a run can end cleanly and print its report.
/// A second signal kills the process as usual.
pub fn stop_on_signal() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    // SAFETY: `on_signal` only stores to an atomic, which is async-signal-safe; the handlers are
    // installed once, before any executor thread starts.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let f = flag.clone();
    std::thread::spawn(move || {
        while !SIGNALLED.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
        f.store(true, Ordering::Relaxed);
        // Second signal: default action.
        // SAFETY: restoring the default disposition is always valid.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
        }
    });
    flag
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_parse() {
        // Goal: durations, counts, rates and shares parse in the forms the help shows.
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("5x").is_err());
        assert_eq!(parse_count("100k").unwrap(), 100_000);
        assert_eq!(parse_count("2m").unwrap(), 2_000_000);
        assert_eq!(parse_count("1_000").unwrap(), 1000);
        assert_eq!(parse_rate("2.5k").unwrap(), 2500.0);
        assert_eq!(parse_share("5%").unwrap(), 0.05);
        assert!(parse_share("1.5").is_err());
    }
}
