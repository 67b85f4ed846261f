//! `smppgw-sim`: a vendor SMSC simulator.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Parser;
use mimalloc::MiMalloc;
use smppgw_codec::CommandStatus;
use smppgw_loadgen::cli::{parse_duration, parse_rate, parse_share, stop_on_signal};
use smppgw_loadgen::msgid::{IdFormat, IdQuote};
use smppgw_loadgen::pattern::Pattern;
use smppgw_loadgen::runtime::CpuPlacement;
use smppgw_loadgen::sim::{
    Account, Delay, Faults, MoOptions, ReceiptOptions, SimConfig, SimStats, Simulator, Stall, StateMix,
    parse_status,
};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

const EXAMPLES: &str = "\
Examples:
  # The gateway's default vendor: 127.0.0.1:2776, system_id smppgw, password secret
  smppgw-sim

  # Receipts 1-3 s after the response, a realistic mix of final states, UUID ids
  smppgw-sim --receipt-delay-ms 1000..3000 --receipt-mix DELIVRD=90,UNDELIV=5,EXPIRED=3,REJECTD=2 \\
      --id-format uuid

  # A difficult vendor: 5% ESME_RTHROTTLED, 200 msg/s per bind, 20-80 ms responses, drops 1 link in
  # 10000 messages, and receipts in its own style
  smppgw-sim --error-rate 0.05 --error-status ESME_RTHROTTLED --throttle-tps 200 \\
      --resp-latency-ms 20..80 --disconnect-after 10000 --no-receipt-tlvs --upper-case-keys \\
      --date-digits 12 --receipt-before-resp

  # Two accounts, MO traffic at 100/s to their receivers
  smppgw-sim -a vendorA:pwA -a vendorB:pwB --mo-rate 100

Receipts go back on the session that submitted when it is a transceiver, else to a receiver (or
transceiver) bound with the same system_id, round-robin. They are sent only when the submit_sm
asks (registered_delivery 1: always, 2: on failure, 3: on success). Each core queues at most
--receipt-queue-max receipts and MO; when full, new ones are dropped and counted ('dropped').
Wrong passwords get ESME_RINVPASWD, unknown system_ids ESME_RINVSYSID; unknown commands get
generic_nack ESME_RINVCMDID. Rates are printed once a second on stderr unless --quiet.";

/// Vendor SMSC simulator: accepts binds, answers submit_sm, sends receipts and MO, injects faults.
#[derive(Parser, Debug)]
#[command(name = "smppgw-sim", version, after_long_help = EXAMPLES)]
struct Args {
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(short, long, default_value = "127.0.0.1:2776")]
    listen: SocketAddr,
    /// Executors (one per core), all accepting on the port (SO_REUSEPORT).
    #[arg(long, default_value_t = 1)]
    cores: usize,
    /// Pin executors to CPUs: "1", "0,1", "2-3" (default: not pinned).
    #[arg(long, default_value = "none", value_parser = CpuPlacement::parse)]
    cpus: CpuPlacement,
    /// An accepted account, SYSTEM_ID:PASSWORD (repeat for more). Default: smppgw:secret.
    #[arg(short, long = "account", value_parser = Account::parse)]
    accounts: Vec<Account>,
    /// A file of accounts, one SYSTEM_ID:PASSWORD per line (# comments).
    #[arg(long)]
    accounts_file: Option<PathBuf>,
    /// system_id the simulator gives in bind responses.
    #[arg(long, default_value = "smppgw-sim")]
    system_id: String,
    /// Message id style: hex (16 digits), decimal, uuid.
    #[arg(long, default_value = "hex")]
    id_format: IdFormat,
    /// Never send receipts.
    #[arg(long)]
    no_receipts: bool,
    /// Receipt delay after the response, ms: fixed (500) or uniform (100..2000).
    #[arg(long, default_value = "0", value_parser = Delay::parse_ms)]
    receipt_delay_ms: Delay,
    /// Final states of receipts with relative weights.
    #[arg(long, default_value = "DELIVRD=100", value_parser = StateMix::parse)]
    receipt_mix: StateMix,
    /// Quirk: receipts without receipted_message_id / message_state / network_error_code TLVs.
    #[arg(long)]
    no_receipt_tlvs: bool,
    /// Quirk: receipt keys in upper case (ID:, STAT:, ...).
    #[arg(long)]
    upper_case_keys: bool,
    /// Quirk: 12-digit dates (YYMMDDhhmmss) instead of Appendix B's 10.
    #[arg(long, default_value_t = 10)]
    date_digits: u8,
    /// Quirk: send the receipt before the submit_sm_resp. Only when it can be written at once on
    /// the submitting session; otherwise (transmitter binds, deliver window full, receipts queued)
    /// it follows the response and is counted in before_resp_missed.
    #[arg(long)]
    receipt_before_resp: bool,
    /// Quirk: how receipts quote the id: same, upper (upper case), padded (leading zeros),
    /// decimal (a hex id's value in decimal).
    #[arg(long, default_value = "same")]
    receipt_id_quote: IdQuote,
    /// Send receipts and MO as data_sm (TLVs, text in message_payload) instead of deliver_sm.
    #[arg(long)]
    data_sm: bool,
    /// Response latency, ms: fixed or MIN..MAX.
    #[arg(long, default_value = "0", value_parser = Delay::parse_ms)]
    resp_latency_ms: Delay,
    /// Share of submit_sm answered with --error-status (0.05 or 5%).
    #[arg(long, default_value = "0", value_parser = parse_share)]
    error_rate: f64,
    /// Status of injected errors: a name (ESME_RTHROTTLED, RSYSERR) or a number (0x58).
    #[arg(long, default_value = "ESME_RTHROTTLED", value_parser = parse_status)]
    error_status: CommandStatus,
    /// Status cancel_sm and replace_sm are answered with (ESME_ROK: done; ESME_RCANCELFAIL, say,
    /// for an SMSC that refuses them).
    #[arg(long, default_value = "ESME_ROK", value_parser = parse_status)]
    op_status: CommandStatus,
    /// A content filter: submit_sm whose short_message contains this text get --error-status.
    #[arg(long)]
    refuse_containing: Option<String>,
    /// submit_sm per second allowed per bind; above it ESME_RTHROTTLED (bursts of 100 ms allowed).
    #[arg(long)]
    throttle_tps: Option<u32>,
    /// Share of submit_sm never answered.
    #[arg(long, default_value = "0", value_parser = parse_share)]
    drop_rate: f64,
    /// Close each connection after this many submit_sm.
    #[arg(long)]
    disconnect_after: Option<u64>,
    /// Binds an account may hold at once; more are refused with ESME_RBINDFAIL.
    #[arg(long)]
    max_binds: Option<u32>,
    /// Stall each core (no reads, no answers) for this long, every --stall-every-ms.
    #[arg(long)]
    stall_ms: Option<u64>,
    /// Period of the stalls.
    #[arg(long, default_value_t = 10_000)]
    stall_every_ms: u64,
    /// MO messages (deliver_sm, not receipts) per second to bound receivers, over all cores.
    #[arg(long, default_value = "0", value_parser = parse_rate)]
    mo_rate: f64,
    /// MO originators (pattern: 1555{rand:7}, 100..199).
    #[arg(long, default_value = "1555{rand:7}", value_parser = Pattern::parse)]
    mo_source: Pattern,
    /// MO recipients.
    #[arg(long, default_value = "12345", value_parser = Pattern::parse)]
    mo_dest: Pattern,
    /// MO text (GSM 7-bit, at most 160 characters).
    #[arg(long, default_value = "MO test message")]
    mo_text: String,
    /// Outstanding deliver_sm per session before waiting for deliver_sm_resp.
    #[arg(long, default_value_t = 1024)]
    deliver_window: u32,
    /// Receipts and MO queued per core at most; new ones are dropped beyond it.
    #[arg(long, default_value_t = smppgw_loadgen::limits::SIM_RECEIPT_QUEUE_DEFAULT)]
    receipt_queue_max: usize,
    /// Seed of the random choices (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Stop after this long (default: until SIGINT/SIGTERM).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Print the final counters as JSON on stdout at exit.
    #[arg(long)]
    json: bool,
    /// No per-second lines.
    #[arg(short, long)]
    quiet: bool,
    /// Poll this many microseconds before sleeping when idle. On virtual machines a sleeping
    /// vCPU is slow to wake; spinning trades a busy core for throughput and latency.
    #[arg(long, default_value_t = 0)]
    spin_us: u64,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let mut accounts = a.accounts;
    if let Some(f) = &a.accounts_file {
        match Account::read_file(f) {
            Ok(mut v) => accounts.append(&mut v),
            Err(e) => {
                eprintln!("smppgw-sim: {e}");
                return ExitCode::from(1);
            }
        }
    }
    if accounts.is_empty() {
        accounts = SimConfig::default().accounts;
    }
    let cfg = SimConfig {
        listen: a.listen,
        cores: a.cores,
        cpus: a.cpus,
        accounts,
        system_id: a.system_id,
        id_format: a.id_format,
        receipts: ReceiptOptions {
            enabled: !a.no_receipts,
            delay: a.receipt_delay_ms,
            mix: a.receipt_mix,
            tlvs: !a.no_receipt_tlvs,
            upper_case_keys: a.upper_case_keys,
            date_digits: a.date_digits,
            before_resp: a.receipt_before_resp,
            id_quote: a.receipt_id_quote,
            data_sm: a.data_sm,
        },
        faults: Faults {
            resp_latency: a.resp_latency_ms,
            error_rate: a.error_rate,
            error_status: a.error_status,
            throttle_tps: a.throttle_tps,
            drop_rate: a.drop_rate,
            disconnect_after: a.disconnect_after,
            op_status: a.op_status,
            refuse_containing: a.refuse_containing.map(String::into_bytes),
            max_binds: a.max_binds,
            stall: a.stall_ms.map(|ms| Stall {
                every: Duration::from_millis(a.stall_every_ms),
                length: Duration::from_millis(ms),
            }),
        },
        mo: MoOptions {
            rate_per_s: a.mo_rate,
            source: a.mo_source,
            dest: a.mo_dest,
            text: a.mo_text,
            data_sm: a.data_sm,
        },
        deliver_window: a.deliver_window,
        receipt_queue_max: a.receipt_queue_max,
        seed: a.seed,
        spin_before_park: Duration::from_micros(a.spin_us),
        ..SimConfig::default()
    };
    let stop = stop_on_signal();
    let sim = match Simulator::start(cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("smppgw-sim: {e}");
            return ExitCode::from(1);
        }
    };
    eprintln!("smppgw-sim listening on {}", sim.local_addr());
    let started = Instant::now();
    let mut last = SimStats::default();
    let mut last_at = started;
    let mut next = started + Duration::from_secs(1);
    loop {
        if stop.load(Ordering::Relaxed) || a.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        let now = Instant::now();
        if now < next {
            continue;
        }
        next += Duration::from_secs(1);
        if a.quiet {
            continue;
        }
        let s = sim.stats();
        let dt = now.duration_since(last_at).as_secs_f64();
        let r = |a: u64, b: u64| (a.saturating_sub(b)) as f64 / dt;
        let _ = writeln!(
            std::io::stderr(),
            "[{:>6.1}s] submit {:>9.0}/s  receipts {:>9.0}/s  mo {:>6.0}/s  errors {:>7.0}/s  binds {}  queued {}  dropped {}",
            now.duration_since(started).as_secs_f64(),
            r(s.submits, last.submits),
            r(s.receipts_sent, last.receipts_sent),
            r(s.mo_sent, last.mo_sent),
            r(s.throttled + s.injected_errors, last.throttled + last.injected_errors),
            s.binds_current,
            s.receipts_queued,
            s.receipts_dropped,
        );
        last = s;
        last_at = now;
    }
    let s = sim.stop();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
    } else if !a.quiet {
        eprintln!(
            "smppgw-sim: {} submits, {} receipts, {} MO, {} binds in all",
            s.submits, s.receipts_sent, s.mo_sent, s.binds_total
        );
        if s.before_resp_missed > 0 {
            eprintln!(
                "smppgw-sim: --receipt-before-resp could not apply to {} receipts (sent after their response)",
                s.before_resp_missed
            );
        }
    }
    ExitCode::SUCCESS
}
