//! `smppgw-loadgen`: drives SMPP binds against a server and reports what it saw.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mimalloc::MiMalloc;
use smppgw_loadgen::cli::{parse_count, parse_duration, parse_rate, parse_share, stop_on_signal};
use smppgw_loadgen::load::{self, BindMode, Lengths, LoadConfig, MessageMix};
use smppgw_loadgen::pattern::Pattern;
use smppgw_loadgen::runtime::CpuPlacement;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

const EXAMPLES: &str = "\
Examples:
  # 1 million messages to the simulator, 4 transceivers, window 64 (closed model: as fast as it goes)
  smppgw-sim &
  smppgw-loadgen -t 127.0.0.1:2776 -u smppgw -p secret -n 1m

  # 30 s at a fixed 50,000 msg/s with receipts, latency from the intended send time
  smppgw-loadgen -t 127.0.0.1:2775 -u demo -p demo -d 30s -r 50k --registered-delivery 1

  # A realistic mix: 20% UCS-2, 10% long (concatenated) messages, varying numbers
  smppgw-loadgen -d 60s --ucs2-share 0.2 --long-share 0.1 --long-len 200..600 \\
      --source '1555{rand:7}' --dest '447700000000..447700099999'

  # Reports: JSON on stdout, HDR percentile file, a latency plot to open in a browser
  smppgw-loadgen -n 500k --json --hgrm run.hgrm --plot run.html > run.json

Model:
  Closed (default): every session keeps --window submit_sm outstanding; throughput is what the
  server sustains. Open (--rate): messages are scheduled at the rate whatever the server does;
  latency is measured from each message's intended send time, so a stalled server shows up in
  the percentiles instead of silently slowing the sender (coordinated omission). When the
  duration ends, the messages that fell due before it but were held back by a full window are
  reported as 'due, unsent' (due_unsent) and each is recorded in submit->resp at (end - its due
  time).

Measured:
  throughput (OK) / ok_per_s counts ESME_ROK responses only; responses / responses_per_s counts
  every submit_sm_resp, errors included (a server refusing with ESME_RTHROTTLED answers fast).
  submit->resp holds ESME_ROK responses, plus every submit never answered (timeout, lost with
  its connection, due but unsent) at the time it was given up, a lower bound; error responses
  have their own row, submit->error. service time is the same from the actual send.

Output:
  Progress once a second on stderr (unless --quiet), then a table on stdout (stderr with --json).
  Exit status: 0 when the run completed, 2 when no session could bind, 1 on bad arguments, a
  target that does not resolve, or a run that could not be carried out (the reason on stderr).";

/// SMPP load generator: binds sessions, sends submit_sm, measures responses, errors and receipts.
#[derive(Parser, Debug)]
#[command(name = "smppgw-loadgen", version, after_long_help = EXAMPLES)]
struct Args {
    /// SMPP server, HOST:PORT.
    #[arg(short, long, default_value = "127.0.0.1:2775")]
    target: String,
    /// Sessions that submit.
    #[arg(short, long, default_value_t = 4)]
    binds: usize,
    /// How to bind: trx (transceivers; receipts on the same session), tx (transmitters only),
    /// txrx (a transmitter plus a receiver per bind).
    #[arg(long, default_value = "trx")]
    bind_mode: BindMode,
    /// system_id.
    #[arg(short = 'u', long, default_value = "demo")]
    system_id: String,
    /// password.
    #[arg(short, long, default_value = "demo")]
    password: String,
    /// system_type.
    #[arg(long, default_value = "")]
    system_type: String,
    /// Messages to send (100k, 2m...). Without --count or --duration: 100k.
    #[arg(short = 'n', long, value_parser = parse_count)]
    count: Option<u64>,
    /// How long to send (30s, 2m...). With --count, whichever comes first.
    #[arg(short, long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Outstanding submit_sm per session.
    #[arg(short, long, default_value_t = 64)]
    window: u32,
    /// Open model: messages per second over all sessions (50000, 50k). Default: closed model.
    #[arg(short, long, value_parser = parse_rate)]
    rate: Option<f64>,
    /// Open model: send the messages that fell due only at multiples of this quantum (100us,
    /// 1ms), several per write, instead of one wake-up and one write per message. Latency still
    /// counts from each message's own due time. Default 0: every message at its own time.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    send_quantum: Duration,
    /// Executors (one per core).
    #[arg(long, default_value_t = 1)]
    cores: usize,
    /// Pin executors to CPUs: "0", "0,1", "2-3" (default: not pinned).
    #[arg(long, default_value = "none", value_parser = CpuPlacement::parse)]
    cpus: CpuPlacement,
    /// Message length in characters: 40, or a range 20..160 (spread over a few lengths).
    #[arg(long, default_value = "40", value_parser = Lengths::parse)]
    text_len: Lengths,
    /// Share of long messages, sent as concatenated parts with a UDH (0.1 or 10%).
    #[arg(long, default_value = "0", value_parser = parse_share)]
    long_share: f64,
    /// Length of long messages in characters, or a range.
    #[arg(long, default_value = "300", value_parser = Lengths::parse)]
    long_len: Lengths,
    /// Share of messages in UCS-2 (the rest GSM 7-bit).
    #[arg(long, default_value = "0", value_parser = parse_share)]
    ucs2_share: f64,
    /// Send this text in every message instead (encoding from its characters, split if long).
    #[arg(long)]
    text: Option<String>,
    /// registered_delivery: 1 asks for a receipt for every message, 0 for none. 2 (on failure
    /// only) and 3 (on success only, SMPP 5.0) are refused: the receipts expected could not be
    /// counted. Higher bits (0x10 intermediate notification, ...) are sent as given.
    #[arg(long, default_value_t = 0)]
    registered_delivery: u8,
    /// Source addresses: literal with {rand:N} or {seq:N}, or a range FIRST..LAST.
    #[arg(long, default_value = "1555{rand:7}", value_parser = Pattern::parse)]
    source: Pattern,
    /// Destination addresses, same syntax.
    #[arg(long, default_value = "4477{rand:8}", value_parser = Pattern::parse)]
    dest: Pattern,
    /// source_addr_ton.
    #[arg(long, default_value_t = 1)]
    source_ton: u8,
    /// source_addr_npi.
    #[arg(long, default_value_t = 1)]
    source_npi: u8,
    /// dest_addr_ton.
    #[arg(long, default_value_t = 1)]
    dest_ton: u8,
    /// dest_addr_npi.
    #[arg(long, default_value_t = 1)]
    dest_npi: u8,
    /// service_type.
    #[arg(long, default_value = "")]
    service_type: String,
    /// A submit_sm without response after this long is a timeout (counted, and recorded in
    /// submit->resp at the time it is given up).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// After the last response, wait this long at most for receipts still due.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    receipt_wait: Duration,
    /// enquire_link period (0: never).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    enquire_link: Duration,
    /// Reconnections per session after the server closes it (a sender: none after the -d deadline).
    #[arg(long, default_value_t = 100)]
    max_reconnects: u32,
    /// Seed of the random choices (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Print the report as one JSON object on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
    /// Write the HDR percentile distribution of submit->resp here (and NAME.receipt.hgrm).
    #[arg(long)]
    hgrm: Option<PathBuf>,
    /// Write a latency plot: .svg, or a self-contained .html page.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// No progress lines.
    #[arg(short, long)]
    quiet: bool,
    /// Poll this many microseconds before sleeping when idle. On virtual machines a sleeping
    /// vCPU is slow to wake; spinning trades a busy core for throughput and latency.
    #[arg(long, default_value_t = 0)]
    spin_us: u64,
}

fn resolve(target: &str) -> Result<SocketAddr, String> {
    target
        .to_socket_addrs()
        .map_err(|e| format!("target {target:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("target {target:?}: no address"))
}

fn main() -> ExitCode {
    // Bad arguments exit 1, as documented: clap's own code (2) is the code for "no session
    // could bind", which scripts test for.
    let a = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let target = match resolve(&a.target) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("smppgw-loadgen: {e}");
            return ExitCode::from(1);
        }
    };
    let count = match (a.count, a.duration) {
        (None, None) => Some(100_000),
        (c, _) => c,
    };
    let cfg = LoadConfig {
        target,
        binds: a.binds,
        bind_mode: a.bind_mode,
        system_id: a.system_id,
        password: a.password,
        system_type: a.system_type,
        cores: a.cores,
        cpus: a.cpus,
        count,
        duration: a.duration,
        window: a.window,
        rate: a.rate,
        send_quantum: a.send_quantum,
        mix: MessageMix {
            text_len: a.text_len,
            long_share: a.long_share,
            long_len: a.long_len,
            ucs2_share: a.ucs2_share,
            text: a.text,
            registered_delivery: a.registered_delivery,
            source: a.source,
            dest: a.dest,
            source_ton_npi: (a.source_ton, a.source_npi),
            dest_ton_npi: (a.dest_ton, a.dest_npi),
            service_type: a.service_type,
        },
        timeout: a.timeout,
        receipt_wait: a.receipt_wait,
        enquire_link: (!a.enquire_link.is_zero()).then_some(a.enquire_link),
        max_reconnects: a.max_reconnects,
        progress: !a.quiet,
        seed: a.seed,
        spin_before_park: Duration::from_micros(a.spin_us),
    };
    let report = match load::run_with_stop(cfg, stop_on_signal()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("smppgw-loadgen: {e}");
            return ExitCode::from(1);
        }
    };
    if a.json {
        eprint!("{}", report.to_table());
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    if let Some(p) = &a.hgrm
        && let Err(e) = report.write_hgrm(p)
    {
        eprintln!("smppgw-loadgen: writing {}: {e}", p.display());
    }
    if let Some(p) = &a.plot
        && let Err(e) = report.write_plot(p)
    {
        eprintln!("smppgw-loadgen: writing {}: {e}", p.display());
    }
    if report.sessions.binds_ok == 0 {
        eprintln!("smppgw-loadgen: no session could bind");
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}
