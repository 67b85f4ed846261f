//! `e2e`: the one-command end-to-end benchmark of smppgw on this machine.
//!
//! It runs, in one go: (1) the direct baseline, smppgw-loadgen -> smppgw-sim, closed model
//! without and with receipts; (2) the same load through the gateway, smppgw-loadgen -> smppgw ->
//! smppgw-sim; (3) a fixed-rate run at half of the measured peak ESME_ROK rate, direct and through
//! the gateway, for the latency the gateway adds. Every run gets a fresh simulator (and gateway),
//! so that the simulator's counters are the run's. It prints the throughputs (ESME_ROK responses
//! per second: refusals such as ESME_RTHROTTLED are not throughput), their ratio (the number we
//! steer by), latency percentiles and the gateway's CPU over each run's sending interval and its
//! memory, and writes everything as JSON to bench/out/. Runs with error responses, timeouts,
//! submits lost or due but unsent, missing receipts, a failed load generator, or (fixed rate) an
//! achieved rate well below the target are flagged in the summary and the JSON, and make the
//! exit status 3. It only drives release binaries as separate processes (built first unless
//! `--no-build`); when the gateway binary is missing or does not come up, step (2) and the
//! gateway half of (3) are skipped with the reason.

use std::io::Read as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Value, json};

const EXAMPLES: &str = "\
Examples:
  # Everything, 10 s per throughput run (builds the release binaries first)
  cargo run --release -p smppgw-bench --bin e2e

  # Longer runs, binaries already built, gateway on one core
  cargo run --release -p smppgw-bench --bin e2e -- --duration 30s --no-build --gateway-cores 1

CPU placement on this 2-core machine: the load generator is pinned to --loadgen-cpu, the simulator
to --sim-cpu, the gateway runs its own executors (--gateway-cores, pinned from CPU 0 by itself).

Figures: throughput is ESME_ROK submit_sm_resp per second (the load generator's ok_per_s); with
receipts it runs to the last receipt when receipts still came after the last response (the load
generator's own figure is kept as ok_per_s_to_last_resp, the difference as receipts_tail_ms). The
ratio and the fixed rate (half the peak) use it. The gateway's CPU is its CPU time over the same
interval (first submit_sm to the last response or receipt; sampled from /proc every 50 ms), not
over the load generator's whole life (connect, bind, receipt wait).

Exit status: 0 when every run was clean, 3 when some run was flagged (error responses, timeouts,
submits lost or due but unsent, missing or unmatched receipts, refused binds, the load generator
failing, a fixed rate achieving under 90% of its target; listed under PROBLEMS and in
\"flagged_runs\" of the JSON),
1 when the benchmark could not run.";

/// End-to-end benchmark: direct baseline vs through the gateway.
#[derive(Parser, Debug)]
#[command(name = "e2e", after_long_help = EXAMPLES)]
struct Args {
    /// Length of each throughput run.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Length of each fixed-rate run.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    rate_duration: Duration,
    /// Sessions of the load generator.
    #[arg(long, default_value_t = 4)]
    binds: usize,
    /// Window per session.
    #[arg(long, default_value_t = 64)]
    window: u32,
    /// CPU the load generator is pinned to.
    #[arg(long, default_value_t = 0)]
    loadgen_cpu: usize,
    /// CPU the simulator is pinned to.
    #[arg(long, default_value_t = 1)]
    sim_cpu: usize,
    /// Executors of the gateway.
    #[arg(long, default_value_t = 2)]
    gateway_cores: u32,
    /// Vendor binds the gateway opens to the simulator.
    #[arg(long, default_value_t = 4)]
    gateway_vendor_binds: u32,
    /// How long the gateway has to start accepting connections and to be ready (vendor binds up,
    /// store preallocated).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    gateway_wait: Duration,
    /// Do not run cargo build first.
    #[arg(long)]
    no_build: bool,
    /// Only the direct baseline.
    #[arg(long)]
    skip_gateway: bool,
    /// Run the gateway with `receipt_store_prealloc = false` (the embedded default) instead of
    /// the setting recommended for dedicated nodes (`true`, as in deploy/k8s/configmap.yaml).
    #[arg(long)]
    no_store_prealloc: bool,
    /// The fixed rate (messages per second) of the latency runs, instead of half the gateway's
    /// peak: to compare latencies at a load the gateway sustains in the open model.
    #[arg(long)]
    fixed_rate: Option<u32>,
    /// The load generator's send quantum in the fixed-rate runs (its --send-quantum): messages
    /// that fall due within it go out together, as they do from a customer's batching client,
    /// instead of one wake-up and one write per message. Latency still counts from each
    /// message's own due time, direct and through the gateway alike. With 0 the load generator
    /// and simulator alone take most of both CPUs at a couple of hundred thousand messages a
    /// second on this VM (each sleep and wake-up costs tens of microseconds), leaving the
    /// gateway too little to measure.
    #[arg(long, default_value = "1ms", value_parser = parse_duration)]
    send_quantum: Duration,
    /// Also run the gateway with Redis as its shared state (a throwaway `redis-server` on a free
    /// port, or the one at --redis-url) and compare it with the embedded default in this run.
    #[arg(long)]
    redis: bool,
    /// Redis to use with --redis (default: start a throwaway redis-server).
    #[arg(long)]
    redis_url: Option<String>,
    /// Where the binaries are (default: the workspace's target/release).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where the JSON results go (default: the workspace's bench/out).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (n, mul) = if let Some(v) = t.strip_suffix("us") {
        (v, 0.000_001)
    } else if let Some(v) = t.strip_suffix("ms") {
        (v, 0.001)
    } else if let Some(v) = t.strip_suffix('s') {
        (v, 1.0)
    } else if let Some(v) = t.strip_suffix('m') {
        (v, 60.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = n.trim().parse().map_err(|_| format!("bad duration {s:?}"))?;
    if !(0.0..=86_400.0).contains(&(v * mul)) {
        return Err(format!("duration {s:?} out of range"));
    }
    Ok(Duration::from_secs_f64(v * mul))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_accepting(addr: SocketAddr, within: Duration, child: &mut Child) -> Result<(), String> {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited with {status} before accepting connections"));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("did not accept connections on {addr} within {within:?}"))
}

/// A child process killed (SIGTERM, then SIGKILL) when dropped.
struct Proc {
    name: &'static str,
    child: Child,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Proc {
    /// SIGTERM, then SIGKILL after 5 s.
    fn terminate(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SAFETY: kill(2) on our own child's pid with a valid signal number.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("e2e: {} did not stop on SIGTERM, killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the process and returns what it printed on stdout (the simulator's final counters).
    fn finish(mut self) -> String {
        self.terminate();
        let mut out = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        out
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// The simulator's final counters, as it printed them.
fn sim_totals(sim: Proc) -> Value {
    let out = sim.finish();
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    if v.is_null() {
        return v;
    }
    json!({
        "submits": v["submits"], "receipts_sent": v["receipts_sent"], "receipts_dropped": v["receipts_dropped"],
        "receipts_queued": v["receipts_queued"], "deliver_timeouts": v["deliver_timeouts"], "binds_total": v["binds_total"],
    })
}

/// CPU time (user + system) of a process and its memory, from /proc.
#[derive(Debug, Clone, Copy, Default)]
struct ProcSample {
    cpu: Duration,
    rss_kb: u64,
    hwm_kb: u64,
}

fn sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (u64, u64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Some(ProcSample {
        cpu: Duration::from_secs_f64((utime + stime) as f64 / hz),
        rss_kb: kb("VmRSS:"),
        hwm_kb: kb("VmHWM:"),
    })
}

struct Bins {
    loadgen: PathBuf,
    sim: PathBuf,
    gateway: PathBuf,
}

fn build(root: &Path) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("e2e: cargo build --release -p smppgw-loadgen --bins");
    let ok = Command::new(&cargo)
        .current_dir(root)
        .args(["build", "--release", "-p", "smppgw-loadgen", "--bins"])
        .status()
        .map_err(|e| format!("running cargo: {e}"))?;
    if !ok.success() {
        return Err("building smppgw-loadgen failed".into());
    }
    eprintln!("e2e: cargo build --release -p smppgw --bin smppgw");
    match Command::new(&cargo)
        .current_dir(root)
        .args(["build", "--release", "-p", "smppgw", "--bin", "smppgw"])
        .status()
    {
        Ok(s) if s.success() => {}
        _ => eprintln!("e2e: building the gateway failed; the runs through it will be skipped"),
    }
    Ok(())
}

/// Runs smppgw-loadgen with `extra` flags and returns its JSON report and exit code (None: killed
/// by a signal).
fn loadgen(
    bins: &Bins,
    target: SocketAddr,
    user: &str,
    password: &str,
    a: &Args,
    extra: &[String],
) -> Result<(Value, Option<i32>), String> {
    let mut cmd = Command::new(&bins.loadgen);
    cmd.args(["-t", &target.to_string(), "-u", user, "-p", password])
        .args(["-b", &a.binds.to_string(), "-w", &a.window.to_string()])
        .args([
            "--cpus",
            &a.loadgen_cpu.to_string(),
            "--json",
            "-q",
            "--timeout",
            "5s",
            "--receipt-wait",
            "30s",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().map_err(|e| format!("starting {}: {e}", bins.loadgen.display()))?;
    let mut out = String::new();
    if let Some(mut so) = child.stdout.take() {
        so.read_to_string(&mut out).map_err(|e| format!("reading the report: {e}"))?;
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    let v: Value =
        serde_json::from_str(&out).map_err(|e| format!("loadgen ({status}) gave no JSON report: {e}"))?;
    Ok((v, status.code()))
}

fn start_sim(bins: &Bins, port: u16, a: &Args) -> Result<Proc, String> {
    let child = Command::new(&bins.sim)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--cpus",
            &a.sim_cpu.to_string(),
            "--quiet",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bins.sim.display()))?;
    let mut p = Proc { name: "smppgw-sim", child };
    wait_accepting(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(5), &mut p.child)
        .map_err(|e| format!("smppgw-sim {e}"))?;
    Ok(p)
}

/// GATEWAY CONFIG: the TOML the gateway is started with (`smppgw --config FILE`). It follows the
/// engine's schema (engine/src/config.rs and its embedded default.toml): one customer `demo`
/// (password `demo`, hashed by `smppgw hash-password`), one vendor `sim` at the simulator, one
/// catch-all route. Change it here when the schema changes.
fn write_gateway_config(
    path: &Path,
    bins: &Bins,
    gw_port: u16,
    http_port: u16,
    sim_port: u16,
    a: &Args,
) -> Result<(), String> {
    let out = Command::new(&bins.gateway)
        .args(["hash-password", "demo"])
        .output()
        .map_err(|e| format!("smppgw hash-password: {e}"))?;
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || hash.is_empty() {
        return Err("smppgw hash-password demo gave no hash".into());
    }
    let toml = format!(
        r#"# Written by the e2e benchmark (bench/src/bin/e2e.rs, write_gateway_config).
[server]
listen = "127.0.0.1:{gw_port}"
http_listen = "127.0.0.1:{http_port}"
cores = {cores}
window = {window}
receipt_store_prealloc = {prealloc}

[[customer]]
system_id = "demo"
password_hash = "{hash}"
throughput = 0

[[vendor]]
name = "sim"
host = "127.0.0.1"
port = {sim_port}
system_id = "smppgw"
password = "secret"
binds = {vbinds}
bind_type = "transceiver"
window = {window}

[[route]]
name = "default"
prefixes = [""]
vendors = ["sim"]
"#,
        cores = a.gateway_cores,
        window = a.window.max(64),
        vbinds = a.gateway_vendor_binds,
        prealloc = !a.no_store_prealloc,
    );
    std::fs::write(path, toml).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// A throwaway redis-server on `port` (no persistence).
fn start_redis(port: u16) -> Result<Proc, String> {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting redis-server: {e}"))?;
    let mut p = Proc { name: "redis-server", child };
    wait_accepting(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(5), &mut p.child)
        .map_err(|e| format!("redis-server {e}"))?;
    Ok(p)
}

fn start_gateway_with(
    bins: &Bins,
    config: &Path,
    gw_port: u16,
    http_port: u16,
    a: &Args,
    extra: &[String],
) -> Result<Proc, String> {
    let v = Command::new(&bins.gateway).arg("--version").output();
    match v {
        Ok(o) if o.status.success() => {}
        Ok(o) => return Err(format!("`smppgw --version` failed ({})", o.status)),
        Err(e) => return Err(format!("{} is not usable: {e}", bins.gateway.display())),
    }
    let child = Command::new(&bins.gateway)
        .arg("--config")
        .arg(config)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting smppgw: {e}"))?;
    let mut p = Proc { name: "smppgw", child };
    wait_accepting(SocketAddr::from(([127, 0, 0, 1], gw_port)), a.gateway_wait, &mut p.child)
        .map_err(|e| format!("smppgw {e}"))?;
    // Accepting is not serving: the vendor binds (and a preallocated store) come up after the
    // listener; /ready says when.
    let http = SocketAddr::from(([127, 0, 0, 1], http_port));
    wait_ready(http, a.gateway_wait, &mut p.child).map_err(|e| format!("smppgw {e}"))?;
    Ok(p)
}

/// Waits until `GET /ready` on `addr` answers 200.
fn wait_ready(addr: SocketAddr, within: Duration, child: &mut Child) -> Result<(), String> {
    use std::io::Write;
    let end = Instant::now() + within;
    while Instant::now() < end {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited with {status} before it was ready"));
        }
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let mut answer = String::new();
            if s.write_all(b"GET /ready HTTP/1.0\r\nHost: gateway\r\n\r\n").is_ok()
                && s.read_to_string(&mut answer).is_ok()
                && answer.lines().next().is_some_and(|l| l.contains(" 200"))
            {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("was not ready (GET /ready on {addr}) within {within:?}"))
}

fn num(v: &Value, path: &[&str]) -> f64 {
    let mut x = v;
    for k in path {
        x = &x[*k];
    }
    x.as_f64().unwrap_or(0.0)
}

/// A fixed-rate run is flagged when the ESME_ROK rate it achieved is below this share of the rate
/// asked for.
const RATE_SHORTFALL: f64 = 0.9;
/// How often the gateway's CPU time is read from /proc during a run.
const CPU_SAMPLE_PERIOD: Duration = Duration::from_millis(50);
/// Exit status when every run completed but some were flagged (see [`problems`]).
const EXIT_FLAGGED: u8 = 3;

/// The figures of one run that the summary and the JSON keep.
fn digest(r: &Value) -> Value {
    json!({
        "ok_per_s": r["ok_per_s"],
        "responses_per_s": r["responses_per_s"],
        "rate_target": r["rate_target"],
        "messages_sent": r["messages_sent"],
        "submits_ok": r["submits_ok"],
        "submits_failed": r["submits_failed"],
        "errors": r["errors"],
        "timeouts": r["timeouts"],
        "lost_in_flight": r["lost_in_flight"],
        "due_unsent": r["due_unsent"],
        "receipts": r["receipts"],
        "latency_us": r["latency_us"],
        "elapsed_s": r["elapsed_s"],
        "binds_ok": r["sessions"]["binds_ok"],
        "bind_failures": r["sessions"]["bind_failures"],
    })
}

/// Messages due but unsent at a fixed-rate run's end that flag it: more than this share of what
/// it sent, and more than [`DUE_UNSENT_MIN`].
const DUE_UNSENT_SHARE: f64 = 1e-4;
/// See [`DUE_UNSENT_SHARE`]: at least the run's windows' worth (binds x window, from its
/// report), this when the report does not say (the default 4 binds of 64).
const DUE_UNSENT_MIN: f64 = 256.0;

/// What makes the figures of a run unreliable, one phrase each; empty for a clean run. `r` is the
/// load generator's JSON report, `exit` its exit code (None: killed by a signal).
fn problems(r: &Value, exit: Option<i32>) -> Vec<String> {
    let mut p = Vec::new();
    if exit != Some(0) {
        p.push(match exit {
            Some(c) => format!("the load generator exited with status {c}"),
            None => "the load generator was killed by a signal".to_string(),
        });
    }
    for (path, what) in [
        (&["submits_failed"][..], "error responses"),
        (&["timeouts"], "timeouts"),
        (&["lost_in_flight"], "submits lost in flight"),
        (&["receipts", "missing"], "receipts missing"),
        (&["receipts", "unmatched"], "receipts unmatched (duplicates or unknown ids)"),
        (&["receipts", "duplicate_ids"], "message ids given to more than one message"),
    ] {
        let n = num(r, path);
        if n > 0.0 {
            p.push(format!("{n} {what}"));
        }
    }
    // A session that could not bind leaves the run with less concurrency than its baseline.
    let refused: f64 = r["sessions"]["bind_failures"]
        .as_object()
        .map_or(0.0, |m| m.values().filter_map(Value::as_f64).sum());
    if refused > 0.0 {
        p.push(format!("{refused} binds refused"));
    }
    // A session the server closed or unbound before the end: the run covered less than asked
    // (its rate over a shorter time would otherwise pass for the whole run's).
    for (path, what) in [
        (&["sessions", "disconnects"][..], "connections closed by the server"),
        (&["sessions", "server_unbinds"], "sessions unbound by the server before the end"),
    ] {
        let n = num(r, path);
        if n > 0.0 {
            p.push(format!("{n} {what}"));
        }
    }
    // A fixed-rate run that ends with its window full leaves the last burst due but unsent (a
    // few messages in millions, recorded in the latency all the same): only more than that is a
    // stall worth flagging.
    let due_unsent = num(r, &["due_unsent"]);
    let burst = num(r, &["binds"]) * num(r, &["window"]);
    let burst = if burst > 0.0 { burst } else { DUE_UNSENT_MIN };
    if due_unsent > (num(r, &["messages_sent"]) * DUE_UNSENT_SHARE).max(burst) {
        p.push(format!("{due_unsent} messages due but unsent"));
    }
    if let Some(target) = r["rate_target"].as_f64() {
        let achieved = num(r, &["ok_per_s"]);
        if achieved < target * RATE_SHORTFALL {
            p.push(format!(
                "achieved {achieved:.0} ESME_ROK/s, {:.0}% of the {target:.0}/s asked",
                achieved / target.max(1e-9) * 100.0
            ));
        }
    }
    p
}

/// The fixed rate of the latency runs: half the ESME_ROK rate of the gateway's closed-model run
/// when it ran (so that neither side is overloaded and the two latencies compare at the same
/// load), else of the direct one. Refusals (ESME_RTHROTTLED, ...) are not capacity.
fn half_peak(gateway: &Value, direct: &Value) -> f64 {
    let peak = num(if gateway.is_null() { direct } else { gateway }, &["ok_per_s"]);
    (peak / 2.0).max(1.0).round()
}

/// What the gateway adds to the p99 of `histogram` at the fixed rate, in ms (null when it did
/// not run).
fn p99_added(g: &Value, d: &Value, histogram: &str) -> Value {
    if g.is_null() || d.is_null() || g["latency_us"].is_null() {
        return Value::Null;
    }
    let p99 = |v: &Value| num(v, &["latency_us", histogram, "p99"]) / 1000.0;
    json!(((p99(g) - p99(d)) * 1000.0).round() / 1000.0)
}

/// The ratio of two runs' ESME_ROK rates (null when `g` did not run).
fn ratio(g: &Value, d: &Value) -> Value {
    if g.is_null() {
        Value::Null
    } else {
        json!((num(g, &["ok_per_s"]) / num(d, &["ok_per_s"]).max(1.0) * 1000.0).round() / 1000.0)
    }
}

fn unix_ms_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// Reads a process's CPU time every [`CPU_SAMPLE_PERIOD`] on a thread of its own, so that the CPU
/// it used over the load generator's sending interval can be told from what it used connecting,
/// binding and waiting.
struct CpuSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(f64, f64)>>,
}

impl CpuSampler {
    fn start(pid: u32) -> CpuSampler {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            loop {
                let last = flag.load(Ordering::Relaxed);
                if let Some(s) = sample(pid) {
                    samples.push((unix_ms_now(), s.cpu.as_secs_f64()));
                }
                if last {
                    return samples;
                }
                std::thread::sleep(CPU_SAMPLE_PERIOD);
            }
        });
        CpuSampler { stop, thread }
    }

    /// Stops sampling (after one last sample) and returns the samples: (Unix ms, CPU seconds).
    fn finish(self) -> Vec<(f64, f64)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// CPU seconds used by time `t` (Unix ms), interpolated between the samples around it.
fn cpu_at(samples: &[(f64, f64)], t: f64) -> Option<f64> {
    let (first, last) = (samples.first()?, samples.last()?);
    if t <= first.0 {
        return Some(first.1);
    }
    if t >= last.0 {
        return Some(last.1);
    }
    let i = samples.partition_point(|s| s.0 <= t);
    let (a, b) = (samples[i - 1], samples[i]);
    Some(a.1 + (b.1 - a.1) * (t - a.0) / (b.0 - a.0).max(1e-9))
}

/// The end of a run's work (Unix ms): its last response, or its last receipt when receipts came
/// after it (they are work the target did for the run: a gateway that answers submits at once and
/// delivers the receipts late must not look as fast as one that keeps up).
fn run_end_ms(report: &Value) -> f64 {
    num(report, &["last_resp_unix_ms"]).max(num(report, &["last_receipt_unix_ms"]))
}

/// ESME_ROK per second over the run's whole work, first submit_sm to [`run_end_ms`].
fn ok_per_s_to_end(report: &Value) -> f64 {
    let secs = (run_end_ms(report) - num(report, &["first_send_unix_ms"])) / 1000.0;
    if secs > 0.0 { (num(report, &["submits_ok"]) / secs).round() } else { 0.0 }
}

/// The gateway's CPU over the load generator's run (its first submit_sm to [`run_end_ms`]:
/// `first_send_unix_ms`..the last response or receipt) and its memory after the run.
fn gateway_process(samples: &[(f64, f64)], report: &Value, after: Option<ProcSample>) -> Value {
    let (from, to) = (num(report, &["first_send_unix_ms"]), run_end_ms(report));
    let covered = samples.first().is_some_and(|f| f.0 <= from) && samples.last().is_some_and(|l| l.0 >= to);
    let cpu = match (cpu_at(samples, from), cpu_at(samples, to)) {
        (Some(a), Some(b)) if to > from && covered => Some(b - a),
        _ => None,
    };
    let Some(after) = after else { return Value::Null };
    let interval_s = (to - from) / 1000.0;
    json!({
        "cpu_percent": cpu.map(|c| (c / interval_s * 1000.0).round() / 10.0),
        // What the target compares with the tools' own cost: CPU per ESME_ROK message.
        "cpu_us_per_msg": cpu
            .filter(|_| num(report, &["submits_ok"]) > 0.0)
            .map(|c| (c * 1e6 / num(report, &["submits_ok"]) * 100.0).round() / 100.0),
        "cpu_s": cpu.map(|c| (c * 1000.0).round() / 1000.0),
        "cpu_interval_s": (interval_s * 1000.0).round() / 1000.0,
        "rss_kb": after.rss_kb,
        "peak_rss_kb": after.hwm_kb,
    })
}

struct Step<'a> {
    name: &'a str,
    target: SocketAddr,
    user: &'a str,
    password: &'a str,
    watch: Option<u32>,
}

fn run_step(bins: &Bins, a: &Args, s: &Step<'_>, extra: &[String]) -> Result<Value, String> {
    eprintln!("e2e: {} ...", s.name);
    let sampler = s.watch.map(CpuSampler::start);
    let outcome = loadgen(bins, s.target, s.user, s.password, a, extra);
    let samples = sampler.map(CpuSampler::finish);
    let (r, exit) = match outcome {
        Ok(o) => o,
        // A failed run is a result, flagged: not a reason to skip the comparison quietly.
        Err(e) => {
            eprintln!("e2e: WARNING: {}: the load generator failed: {e}", s.name);
            return Ok(json!({ "ok_per_s": 0.0, "problems": [format!("the load generator failed: {e}")] }));
        }
    };
    let mut d = digest(&r);
    if num(&r, &["receipts", "expected"]) > 0.0 {
        // With receipts the throughput runs to the last receipt; the load generator's own figure
        // (to the last response) is kept beside it.
        d["ok_per_s_to_last_resp"] = r["ok_per_s"].clone();
        d["ok_per_s"] = json!(ok_per_s_to_end(&r));
        d["receipts_tail_ms"] = json!((run_end_ms(&r) - num(&r, &["last_resp_unix_ms"])).round());
    }
    if let (Some(pid), Some(samples)) = (s.watch, &samples) {
        d["gateway_process"] = gateway_process(samples, &r, sample(pid));
    }
    let mut flagged = problems(&r, exit);
    if num(&r, &["sessions", "binds_ok"]) == 0.0 {
        flagged.insert(0, format!("no session could bind: {}", r["sessions"]["bind_failures"]));
    }
    d["loadgen_exit"] = json!(exit);
    d["problems"] = json!(flagged);
    eprintln!(
        "e2e: {}: {:.0} ESME_ROK/s, p50 {:.3} ms, p99 {:.3} ms",
        s.name,
        num(&r, &["ok_per_s"]),
        num(&r, &["latency_us", "submit_resp", "p50"]) / 1000.0,
        num(&r, &["latency_us", "submit_resp", "p99"]) / 1000.0
    );
    if !flagged.is_empty() {
        eprintln!("e2e: WARNING: {}: {}", s.name, flagged.join("; "));
    }
    Ok(d)
}

/// Where the gateway runs: its SMPP and HTTP ports, the simulator's port, its config file.
struct GatewayCtx {
    gw_port: u16,
    http_port: u16,
    sim_port: u16,
    config: PathBuf,
}

/// One run through a fresh simulator and a fresh gateway (started with `gateway_extra`), so that
/// the simulator's counters in `sim` are this run's alone, as on the direct side.
fn gateway_run(
    bins: &Bins,
    a: &Args,
    ctx: &GatewayCtx,
    name: &str,
    gateway_extra: &[String],
    extra: &[String],
) -> Result<Value, String> {
    write_gateway_config(&ctx.config, bins, ctx.gw_port, ctx.http_port, ctx.sim_port, a)?;
    let sim = start_sim(bins, ctx.sim_port, a)?;
    let g = start_gateway_with(bins, &ctx.config, ctx.gw_port, ctx.http_port, a, gateway_extra)?;
    // Give the gateway a moment to bind its vendor sessions.
    std::thread::sleep(Duration::from_millis(500));
    let step = Step {
        name,
        target: SocketAddr::from(([127, 0, 0, 1], ctx.gw_port)),
        user: "demo",
        password: "demo",
        watch: Some(g.pid()),
    };
    let mut v = run_step(bins, a, &step, extra)?;
    drop(g);
    v["sim"] = sim_totals(sim);
    Ok(v)
}

fn main() -> ExitCode {
    let a = Args::parse();
    let root = workspace_root();
    if !a.no_build
        && let Err(e) = build(&root)
    {
        eprintln!("e2e: {e}");
        return ExitCode::from(1);
    }
    let dir = a.bin_dir.clone().unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"))
            .join("release")
    });
    let bins = Bins {
        loadgen: dir.join("smppgw-loadgen"),
        sim: dir.join("smppgw-sim"),
        gateway: dir.join("smppgw"),
    };
    for b in [&bins.loadgen, &bins.sim] {
        if !b.exists() {
            eprintln!("e2e: {} is missing (build with cargo build --release -p smppgw-loadgen)", b.display());
            return ExitCode::from(1);
        }
    }
    match run(&a, &bins, &root) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(n) => {
            eprintln!("e2e: {n} run(s) flagged (see \"problems\" above and in the JSON)");
            ExitCode::from(EXIT_FLAGGED)
        }
        Err(e) => {
            eprintln!("e2e: {e}");
            ExitCode::from(1)
        }
    }
}

/// Runs everything, prints the summary, writes the JSON; returns how many runs were flagged.
fn run(a: &Args, bins: &Bins, root: &Path) -> Result<usize, String> {
    let secs = format!("{}ms", a.duration.as_millis());
    let rate_secs = format!("{}ms", a.rate_duration.as_millis());
    let closed = |receipts: bool| -> Vec<String> {
        let mut v = vec!["-d".to_string(), secs.clone()];
        if receipts {
            v.extend(["--registered-delivery".to_string(), "1".to_string()]);
        }
        v
    };
    let port = |what: &str| free_port().map_err(|e| format!("no free port for {what}: {e}"));

    // (1) Direct baseline.
    let sim_port = port("the simulator")?;
    let direct = Step {
        name: "direct, no receipts",
        target: SocketAddr::from(([127, 0, 0, 1], sim_port)),
        user: "smppgw",
        password: "secret",
        watch: None,
    };
    // A fresh simulator per run, so that its counters are the run's.
    let direct_run = |step: &Step<'_>, extra: &[String]| -> Result<Value, String> {
        let sim = start_sim(bins, sim_port, a)?;
        let mut v = run_step(bins, a, step, extra)?;
        v["sim"] = sim_totals(sim);
        Ok(v)
    };
    let d_plain = direct_run(&direct, &closed(false))?;
    let d_rcpt = direct_run(&Step { name: "direct, with receipts", ..direct }, &closed(true))?;

    // (2) Through the gateway: a fresh simulator and gateway per run, like the direct side.
    let mut gw: Value = json!({ "status": "skipped" });
    let mut g_plain = Value::Null;
    let mut g_rcpt = Value::Null;
    let mut gw_ctx: Option<GatewayCtx> = None;
    if a.skip_gateway {
        gw["status"] = json!("skipped: --skip-gateway");
    } else if !bins.gateway.exists() {
        gw["status"] = json!(format!("skipped: {} is not built", bins.gateway.display()));
    } else {
        let out_dir = a.out.clone().unwrap_or_else(|| root.join("bench").join("out"));
        std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
        let ctx = GatewayCtx {
            gw_port: port("the gateway")?,
            http_port: port("the gateway's HTTP API")?,
            sim_port: port("the simulator")?,
            config: out_dir.join("e2e-gateway.toml"),
        };
        let attempt = (|| -> Result<(Value, Value), String> {
            let plain = gateway_run(bins, a, &ctx, "through the gateway, no receipts", &[], &closed(false))?;
            let rcpt = gateway_run(bins, a, &ctx, "through the gateway, with receipts", &[], &closed(true))?;
            Ok((plain, rcpt))
        })();
        match attempt {
            Ok((p, r)) => {
                gw = json!({ "status": "ok", "config": ctx.config.display().to_string() });
                g_plain = p;
                g_rcpt = r;
                gw_ctx = Some(ctx);
            }
            Err(e) => {
                eprintln!("e2e: SKIPPING the runs through the gateway: {e}");
                gw["status"] = json!(format!("skipped: {e}"));
            }
        }
    }

    // (3) Fixed rate at half the peak ESME_ROK rate (see half_peak). Once without receipts
    // (submit -> resp) and once with every receipt at half the peak with receipts
    // (submit -> receipt).
    let rate = a.fixed_rate.map_or_else(|| half_peak(&g_plain, &d_plain), f64::from);
    let rate_rcpt = a.fixed_rate.map_or_else(|| half_peak(&g_rcpt, &d_rcpt), f64::from);
    let quantum = format!("{}us", a.send_quantum.as_micros());
    let fixed_args = |rate: f64, receipts: bool| {
        let mut v = vec![
            "-d".to_string(),
            rate_secs.clone(),
            "-r".to_string(),
            format!("{rate}"),
            "--send-quantum".into(),
            quantum.clone(),
        ];
        if receipts {
            v.extend(["--registered-delivery".to_string(), "1".to_string()]);
        }
        v
    };
    let fixed_pair = |label: &'static str, extra: &[String]| -> Result<(Value, Value), String> {
        let d = direct_run(&Step { name: label, ..direct }, extra)?;
        let Some(ctx) = &gw_ctx else { return Ok((d, Value::Null)) };
        let g = gateway_run(bins, a, ctx, label, &[], extra).unwrap_or_else(|e| {
            eprintln!("e2e: gateway {label} run failed: {e}");
            json!({ "ok_per_s": 0.0, "problems": [format!("the gateway run failed: {e}")] })
        });
        Ok((d, g))
    };
    let (d_fixed, g_fixed) = fixed_pair("fixed rate", &fixed_args(rate, false))?;
    let (d_fixed_rcpt, g_fixed_rcpt) = fixed_pair("fixed rate with receipts", &fixed_args(rate_rcpt, true))?;

    // (4) Through the gateway with Redis as the shared state, compared with (2).
    let mut r_plain = Value::Null;
    let mut r_rcpt = Value::Null;
    let mut redis_run: Value = json!({ "status": "skipped: no --redis" });
    if let (true, Some(ctx)) = (a.redis, &gw_ctx) {
        let attempt = (|| -> Result<(Value, Value, Value), String> {
            let (url, server) = match &a.redis_url {
                Some(u) => (u.clone(), None),
                None => {
                    let rp = port("redis-server")?;
                    (format!("redis://127.0.0.1:{rp}/"), Some(start_redis(rp)?))
                }
            };
            let extra =
                ["--redis-url".to_string(), url.clone(), "--redis-prefix".to_string(), "e2e".to_string()];
            let label = "through the gateway with Redis";
            let plain = gateway_run(bins, a, ctx, &format!("{label}, no receipts"), &extra, &closed(false))?;
            let rcpt = gateway_run(bins, a, ctx, &format!("{label}, with receipts"), &extra, &closed(true))?;
            let redis_mem =
                server.as_ref().and_then(|s| sample(s.pid())).map(|s| json!({"rss_kb": s.rss_kb}));
            drop(server);
            Ok((plain, rcpt, json!({ "status": "ok", "url": url, "redis_process": redis_mem })))
        })();
        match attempt {
            Ok((p, r, info)) => {
                r_plain = p;
                r_rcpt = r;
                redis_run = info;
            }
            Err(e) => {
                eprintln!("e2e: SKIPPING the runs with Redis: {e}");
                redis_run = json!({ "status": format!("skipped: {e}") });
            }
        }
    }

    let mut result = json!({
        "machine": {
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        },
        "params": {
            "binds": a.binds, "window": a.window, "duration_s": a.duration.as_secs_f64(),
            "rate_duration_s": a.rate_duration.as_secs_f64(), "fixed_rate_per_s": rate,
            "fixed_rate_receipts_per_s": rate_rcpt, "send_quantum_us": a.send_quantum.as_micros() as u64,
            "loadgen_cpu": a.loadgen_cpu, "sim_cpu": a.sim_cpu, "gateway_cores": a.gateway_cores, "receipt_store_prealloc": !a.no_store_prealloc,
        },
        "direct": { "no_receipts": d_plain, "receipts": d_rcpt, "fixed_rate": d_fixed, "fixed_rate_receipts": d_fixed_rcpt },
        "gateway": {
            "run": gw, "no_receipts": g_plain, "receipts": g_rcpt, "fixed_rate": g_fixed,
            "fixed_rate_receipts": g_fixed_rcpt,
        },
        "ratio_gateway_to_direct": { "no_receipts": ratio(&g_plain, &d_plain), "receipts": ratio(&g_rcpt, &d_rcpt) },
        "gateway_redis": { "run": redis_run, "no_receipts": r_plain, "receipts": r_rcpt },
        "ratio_redis_to_embedded": { "no_receipts": ratio(&r_plain, &g_plain), "receipts": ratio(&r_rcpt, &g_rcpt) },
        "p99_added_ms": {
            "submit_resp": p99_added(&g_fixed, &d_fixed, "submit_resp"),
            "submit_receipt": p99_added(&g_fixed_rcpt, &d_fixed_rcpt, "receipt"),
        },
    });
    let flagged = flagged_runs(&result);
    result["flagged_runs"] =
        json!(flagged.iter().map(|(k, p)| json!({ "run": k, "problems": p })).collect::<Vec<_>>());
    print_summary(&result);
    let out_dir = a.out.clone().unwrap_or_else(|| root.join("bench").join("out"));
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let stamp =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let text = serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?;
    for name in [format!("e2e-{stamp}.json"), "e2e-latest.json".to_string()] {
        let p = out_dir.join(name);
        std::fs::write(&p, &text).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    println!("\nresults: {}", out_dir.join("e2e-latest.json").display());
    Ok(flagged.len())
}

/// Every run of the result whose `problems` are not empty, as ("side.run", problems).
fn flagged_runs(r: &Value) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for side in ["direct", "gateway", "gateway_redis"] {
        for run in ["no_receipts", "receipts", "fixed_rate", "fixed_rate_receipts"] {
            if let Some(p) = r[side][run]["problems"].as_array()
                && !p.is_empty()
            {
                let p = p.iter().map(|x| x.as_str().unwrap_or_default().to_string()).collect();
                out.push((format!("{side}.{run}"), p));
            }
        }
    }
    out
}

fn print_summary(r: &Value) {
    let ms = |v: &Value, k: &str| num(v, &["latency_us", "submit_resp", k]) / 1000.0;
    let tput = |v: &Value| {
        if v.is_null() { "skipped".to_string() } else { format!("{:.0}/s", num(v, &["ok_per_s"])) }
    };
    println!(
        "\nsmppgw end-to-end benchmark ({} binds, window {})",
        r["params"]["binds"], r["params"]["window"]
    );
    println!("{:<34} {:>14} {:>14} {:>8}", "closed model, ESME_ROK/s", "direct", "via gateway", "ratio");
    for (label, key) in [("no receipts", "no_receipts"), ("with receipts (all matched?)", "receipts")] {
        let d = &r["direct"][key];
        let g = &r["gateway"][key];
        let ratio = r["ratio_gateway_to_direct"][key]
            .as_f64()
            .map(|x| format!("{x:.3}"))
            .unwrap_or_else(|| "-".into());
        println!("{label:<34} {:>14} {:>14} {ratio:>8}", tput(d), tput(g));
    }
    let f =
        |x: &Value| if x.is_null() { "-".to_string() } else { format!("{}/{}", x["matched"], x["expected"]) };
    let (d, g) = (&r["direct"]["receipts"]["receipts"], &r["gateway"]["receipts"]["receipts"]);
    println!("{:<34} {:>14} {:>14}", "receipts matched/expected", f(d), f(g));
    let sent = |x: &Value| if x.is_null() { "-".to_string() } else { x["receipts_sent"].to_string() };
    let (d, g) = (&r["direct"]["receipts"]["sim"], &r["gateway"]["receipts"]["sim"]);
    println!("{:<34} {:>14} {:>14}", "receipts sent by the simulator", sent(d), sent(g));
    let achieved = |v: &Value| format!("{:.0}", num(v, &["ok_per_s"]));
    let columns = || println!("  {:<38} {:>10} {:>8} {:>8} {:>8}", "", "ESME_ROK/s", "p50", "p99", "p99.9");
    println!(
        "\nfixed rate {} msg/s (send quantum {} us), achieved rate and submit->resp (ms)",
        r["params"]["fixed_rate_per_s"], r["params"]["send_quantum_us"]
    );
    columns();
    for (label, v) in [("direct", &r["direct"]["fixed_rate"]), ("via gateway", &r["gateway"]["fixed_rate"])] {
        if v.is_null() {
            println!("  {label:<38} skipped");
        } else {
            println!(
                "  {label:<38} {:>10} {:>8.3} {:>8.3} {:>8.3}",
                achieved(v),
                ms(v, "p50"),
                ms(v, "p99"),
                ms(v, "p999")
            );
        }
    }
    let added = |k: &str| {
        r["p99_added_ms"][k].as_f64().map(|x| println!("  {:<38} {x:>+28.3}", "added by the gateway at p99"))
    };
    added("submit_resp");
    println!(
        "\nfixed rate {} msg/s with receipts, achieved rate and submit->receipt (ms)",
        r["params"]["fixed_rate_receipts_per_s"]
    );
    columns();
    let rms = |v: &Value, k: &str| num(v, &["latency_us", "receipt", k]) / 1000.0;
    for (label, v) in [
        ("direct", &r["direct"]["fixed_rate_receipts"]),
        ("via gateway", &r["gateway"]["fixed_rate_receipts"]),
    ] {
        if v.is_null() {
            println!("  {label:<38} skipped");
        } else {
            println!(
                "  {label:<38} {:>10} {:>8.3} {:>8.3} {:>8.3}  ({}/{} matched)",
                achieved(v),
                rms(v, "p50"),
                rms(v, "p99"),
                rms(v, "p999"),
                v["receipts"]["matched"],
                v["receipts"]["expected"]
            );
        }
    }
    added("submit_receipt");
    if !r["gateway_redis"]["no_receipts"].is_null() {
        println!("\n{:<34} {:>14} {:>14} {:>8}", "gateway, ESME_ROK/s", "embedded", "with Redis", "ratio");
        for (label, key) in [("no receipts", "no_receipts"), ("with receipts", "receipts")] {
            let ratio = r["ratio_redis_to_embedded"][key]
                .as_f64()
                .map(|x| format!("{x:.3}"))
                .unwrap_or_else(|| "-".into());
            println!(
                "{label:<34} {:>14} {:>14} {ratio:>8}",
                tput(&r["gateway"][key]),
                tput(&r["gateway_redis"][key])
            );
        }
        let g = &r["gateway_redis"]["receipts"]["receipts"];
        println!("{:<34} {:>14} {:>14}", "receipts matched/expected", "", f(g));
    }
    let g = &r["gateway"];
    println!(
        "\ngateway: {} (CPU over each run's sending interval, first submit_sm to last response)",
        g["run"]["status"].as_str().unwrap_or("?")
    );
    for key in ["no_receipts", "receipts", "fixed_rate", "fixed_rate_receipts"] {
        let p = &g[key]["gateway_process"];
        if !p.is_null() {
            let cpu = p["cpu_percent"].as_f64().map_or_else(|| "-".to_string(), |c| format!("{c:.1}%"));
            let per =
                p["cpu_us_per_msg"].as_f64().map_or_else(|| "-".to_string(), |c| format!("{c:.2} us/msg"));
            println!(
                "  {key:<20} CPU {cpu:>7} ({per}) over {:>6.1} s  RSS {:>8} kB  peak RSS {:>8} kB",
                num(p, &["cpu_interval_s"]),
                p["rss_kb"],
                p["peak_rss_kb"]
            );
        }
    }
    let flagged = r["flagged_runs"].as_array().cloned().unwrap_or_default();
    if !flagged.is_empty() {
        println!("\nPROBLEMS: the figures of these runs are not clean:");
        for x in &flagged {
            let p: Vec<&str> = x["problems"]
                .as_array()
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            println!("  {:<28} {}", x["run"].as_str().unwrap_or("?"), p.join("; "));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(ok_per_s: f64, responses_per_s: f64) -> Value {
        json!({
            "ok_per_s": ok_per_s, "responses_per_s": responses_per_s, "rate_target": null,
            "submits_failed": 0, "timeouts": 0, "lost_in_flight": 0, "due_unsent": 0,
            "receipts": { "missing": 0 },
        })
    }

    #[test]
    fn the_ratio_and_the_fixed_rate_follow_esme_rok_not_refusals() {
        // Goal: a gateway that answers 100k submit_sm/s but refuses half of them with
        // ESME_RTHROTTLED has 50k/s of capacity: the ratio to the direct run and the half-peak
        // rate of the fixed-rate runs come from the ESME_ROK rate.
        let direct = report(200_000.0, 200_000.0);
        let gateway = report(50_000.0, 100_000.0);
        assert_eq!(ratio(&gateway, &direct), json!(0.25));
        assert_eq!(ratio(&Value::Null, &direct), Value::Null);
        assert_eq!(half_peak(&gateway, &direct), 25_000.0);
        assert_eq!(half_peak(&Value::Null, &direct), 100_000.0, "no gateway run: the direct one");
    }

    #[test]
    fn unclean_runs_are_flagged_with_what_went_wrong() {
        // Goal: timeouts, errors, losses, messages due but unsent, missing receipts, a fixed rate
        // well below its target and a failed load generator each flag the run; a clean one is not.
        let clean = report(100_000.0, 100_000.0);
        assert!(problems(&clean, Some(0)).is_empty());
        let mut bad = clean.clone();
        bad["submits_failed"] = json!(5);
        bad["timeouts"] = json!(2);
        bad["lost_in_flight"] = json!(1);
        bad["due_unsent"] = json!(700);
        bad["receipts"]["missing"] = json!(3);
        let p = problems(&bad, Some(0));
        assert_eq!(p.len(), 5, "{p:?}");
        let mut edge = clean.clone();
        edge["due_unsent"] = json!(14);
        assert!(problems(&edge, Some(0)).is_empty(), "the last burst at the deadline is no stall");
        // The burst is the run's own windows' worth: 250 unsent is a stall for 1 bind of 8, and
        // 3,000 is not for 16 binds of 1,024.
        let mut small = clean.clone();
        small["binds"] = json!(1);
        small["window"] = json!(8);
        small["due_unsent"] = json!(250);
        assert_eq!(problems(&small, Some(0)).len(), 1);
        let mut large = clean.clone();
        large["binds"] = json!(16);
        large["window"] = json!(1024);
        large["due_unsent"] = json!(3000);
        assert!(problems(&large, Some(0)).is_empty());
        // A server that unbinds or drops the sessions before the end.
        let mut cut = clean.clone();
        cut["sessions"] = json!({ "server_unbinds": 4, "disconnects": 1 });
        assert_eq!(problems(&cut, Some(0)).len(), 2, "{:?}", problems(&cut, Some(0)));
        assert!(p.iter().any(|x| x.contains("receipts missing")), "{p:?}");
        let mut slow = clean.clone();
        slow["rate_target"] = json!(200_000.0);
        let p = problems(&slow, Some(0));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("achieved 100000 ESME_ROK/s, 50%"), "{p:?}");
        slow["rate_target"] = json!(105_000.0);
        assert!(problems(&slow, Some(0)).is_empty(), "within the shortfall allowed");
        assert_eq!(problems(&clean, Some(1)), ["the load generator exited with status 1"]);
        assert_eq!(problems(&clean, None).len(), 1);
        let result = json!({ "direct": { "receipts": { "problems": ["3 receipts missing"] },
                                         "no_receipts": { "problems": [] } } });
        assert_eq!(
            flagged_runs(&result),
            [("direct.receipts".to_string(), vec!["3 receipts missing".to_string()])]
        );
    }

    #[test]
    fn the_summary_prints_a_partial_result_with_its_problems() {
        // Goal: the summary copes with skipped runs (null) and lists flagged ones.
        let mut run = report(1000.0, 1000.0);
        run["rate_target"] = json!(2000.0);
        run["problems"] = json!(["achieved 1000 ESME_ROK/s, 50% of the 2000/s asked"]);
        let mut r = json!({
            "params": { "binds": 4, "window": 64, "fixed_rate_per_s": 2000.0 },
            "direct": { "no_receipts": report(1.0, 1.0), "fixed_rate": run },
            "gateway": { "run": { "status": "skipped" } },
            "gateway_redis": {},
        });
        r["flagged_runs"] = json!(
            flagged_runs(&r).iter().map(|(k, p)| json!({ "run": k, "problems": p })).collect::<Vec<_>>()
        );
        assert_eq!(r["flagged_runs"][0]["run"], "direct.fixed_rate");
        print_summary(&r);
    }

    #[test]
    fn gateway_cpu_is_taken_over_the_sending_interval_only() {
        // Goal: the gateway burns 0.5 s of CPU binding (argon2) before the load generator sends,
        // then 1 CPU for 2 s while it sends, then idles 1 s waiting: its CPU is 100% of the
        // sending interval, not 2.5 s over the 4 s the load generator process lived.
        let t = 1_000_000.0;
        let samples: Vec<(f64, f64)> = (0..=80)
            .map(|i| {
                let at = t + f64::from(i) * 50.0;
                let cpu = match at - t {
                    x if x < 1000.0 => 0.5 * x / 1000.0,
                    x if x < 3000.0 => 0.5 + (x - 1000.0) / 1000.0,
                    _ => 2.5,
                };
                (at, cpu)
            })
            .collect();
        let report = json!({ "first_send_unix_ms": t + 1000.0, "last_resp_unix_ms": t + 3000.0, "submits_ok": 1_000_000 });
        let after = Some(ProcSample { cpu: Duration::from_millis(2500), rss_kb: 10, hwm_kb: 20 });
        let p = gateway_process(&samples, &report, after);
        assert_eq!(p["cpu_percent"], json!(100.0), "{p}");
        assert_eq!(p["cpu_us_per_msg"], json!(2.0), "2 s of CPU for a million messages");
        // And what it adds to the p99 at the fixed rate.
        let run = |p99: f64| json!({ "latency_us": { "submit_resp": { "p99": p99 } } });
        assert_eq!(p99_added(&run(1_750.0), &run(1_500.0), "submit_resp"), json!(0.25));
        assert_eq!(p99_added(&Value::Null, &run(1_500.0), "submit_resp"), Value::Null);
        assert_eq!(p["cpu_interval_s"], json!(2.0));
        assert_eq!((p["rss_kb"].clone(), p["peak_rss_kb"].clone()), (json!(10), json!(20)));
        // Interpolated between samples; outside them, no figure rather than a wrong one.
        assert!((cpu_at(&samples, t + 1025.0).unwrap() - 0.525).abs() < 1e-9);
        let early = json!({ "first_send_unix_ms": t - 10.0, "last_resp_unix_ms": t + 3000.0 });
        assert_eq!(gateway_process(&samples, &early, after)["cpu_percent"], Value::Null);
        assert_eq!(gateway_process(&samples, &report, None), Value::Null);
        // Receipts still coming after the last response: the run (its CPU and its throughput)
        // lasts until the last of them.
        let tail = json!({
            "first_send_unix_ms": t + 1000.0, "last_resp_unix_ms": t + 2000.0,
            "last_receipt_unix_ms": t + 3000.0, "submits_ok": 1000.0,
        });
        assert_eq!(gateway_process(&samples, &tail, after)["cpu_interval_s"], json!(2.0));
        assert_eq!(ok_per_s_to_end(&tail), 500.0, "1,000 over 2 s, not over the 1 s to the last response");
    }
}
