//! The simulator's configuration: accounts, receipts, faults, MO traffic, and their parsers.

use std::net::SocketAddr;
use std::time::Duration;

use smppgw_codec::CommandStatus;
use smppgw_codec::receipt::MessageState;

use crate::limits::{ACCOUNTS_MAX, CORES_MAX, CREDENTIALS_FILE_MAX_BYTES, RECORD_MAX, SIM_RECEIPT_QUEUE_MAX};
use crate::msgid::{IdFormat, IdQuote};
use crate::pattern::Pattern;
use crate::rng::Rng;
use crate::runtime::CpuPlacement;

/// The simulator's default port: the gateway's default vendor.
pub const DEFAULT_PORT: u16 = 2776;
/// Default account: what the gateway's default vendor configuration binds with.
pub const DEFAULT_SYSTEM_ID: &str = "smppgw";
/// Default password of [`DEFAULT_SYSTEM_ID`].
pub const DEFAULT_PASSWORD: &str = "secret";

/// One account the simulator accepts binds for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// system_id (at most 15 characters on the wire).
    pub system_id: String,
    /// password (at most 8 characters on the wire).
    pub password: String,
}

impl Account {
    /// An account from its credentials.
    pub fn new(system_id: &str, password: &str) -> Account {
        Account { system_id: system_id.to_string(), password: password.to_string() }
    }

    /// Parses `system_id:password`.
    pub fn parse(s: &str) -> Result<Account, String> {
        let (id, pw) =
            s.split_once(':').ok_or_else(|| format!("account {s:?}: expected SYSTEM_ID:PASSWORD"))?;
        let id = id.trim();
        if id.is_empty() || id.len() > 15 {
            return Err(format!("account {s:?}: system_id must be 1..=15 characters"));
        }
        if pw.len() > 8 {
            return Err(format!("account {s:?}: password must be at most 8 characters"));
        }
        Ok(Account::new(id, pw))
    }

    /// Reads a credentials file: one `system_id:password` per line; blank lines and `#` comments
    /// are skipped.
    pub fn read_file(path: &std::path::Path) -> Result<Vec<Account>, String> {
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.len() > CREDENTIALS_FILE_MAX_BYTES {
            return Err(format!("{}: larger than {CREDENTIALS_FILE_MAX_BYTES} bytes", path.display()));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            out.push(Account::parse(line).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))?);
        }
        Ok(out)
    }
}

/// A delay: fixed, or uniform between two bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delay {
    /// Always this long.
    Fixed(Duration),
    /// Uniform in `min..=max`.
    Uniform(Duration, Duration),
}

impl Default for Delay {
    fn default() -> Self {
        Delay::Fixed(Duration::ZERO)
    }
}

impl Delay {
    /// Parses milliseconds: `100`, `0.5`, or `50..200`.
    pub fn parse_ms(s: &str) -> Result<Delay, String> {
        let ms = |x: &str| -> Result<Duration, String> {
            let v: f64 = x.trim().parse().map_err(|_| format!("bad milliseconds {x:?}"))?;
            if !(0.0..=86_400_000.0).contains(&v) {
                return Err(format!("{v} ms is outside 0..=1 day"));
            }
            Ok(Duration::from_secs_f64(v / 1000.0))
        };
        match s.split_once("..") {
            Some((a, b)) => {
                let (a, b) = (ms(a)?, ms(b)?);
                if a > b {
                    return Err(format!("delay {s:?}: min above max"));
                }
                Ok(if a == b { Delay::Fixed(a) } else { Delay::Uniform(a, b) })
            }
            None => Ok(Delay::Fixed(ms(s)?)),
        }
    }

    /// Draws one delay.
    #[inline]
    pub fn sample(&self, rng: &mut Rng) -> Duration {
        match *self {
            Delay::Fixed(d) => d,
            Delay::Uniform(a, b) => a + (b - a).mul_f64(rng.unit()),
        }
    }

    /// Whether every draw is zero.
    pub fn is_zero(&self) -> bool {
        *self == Delay::Fixed(Duration::ZERO)
    }
}

/// Weighted final states of receipts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateMix {
    entries: Vec<(MessageState, u32)>,
    total: u32,
}

impl Default for StateMix {
    fn default() -> Self {
        StateMix { entries: vec![(MessageState::Delivered, 1)], total: 1 }
    }
}

impl StateMix {
    /// Parses `DELIVRD=90,UNDELIV=5,EXPIRED=3,REJECTD=2` (stat words, any case; weights are
    /// relative integers).
    pub fn parse(s: &str) -> Result<StateMix, String> {
        let mut entries = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (w, n) = part.split_once('=').ok_or_else(|| format!("mix {part:?}: expected STAT=WEIGHT"))?;
            let st = MessageState::from_stat_word(w.trim().as_bytes()).ok_or_else(|| {
                format!("mix {part:?}: unknown state {w:?} (DELIVRD, UNDELIV, EXPIRED, REJECTD, ...)")
            })?;
            let n: u32 = n.trim().parse().map_err(|_| format!("mix {part:?}: weight must be an integer"))?;
            if n > 1_000_000 {
                return Err(format!("mix {part:?}: weight above 1000000"));
            }
            if n > 0 {
                entries.push((st, n));
            }
        }
        let total = entries.iter().map(|e| e.1).sum();
        if total == 0 {
            return Err(format!("mix {s:?}: no positive weight"));
        }
        Ok(StateMix { entries, total })
    }

    /// The state for a draw `h` (any 64-bit value, e.g. a hash of the message id).
    #[inline]
    pub fn pick(&self, h: u64) -> MessageState {
        if self.entries.len() == 1 {
            return self.entries[0].0;
        }
        let mut x = (h % u64::from(self.total)) as u32;
        for &(st, w) in &self.entries {
            if x < w {
                return st;
            }
            x -= w;
        }
        MessageState::Delivered
    }
}

/// How receipts look and when they come.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiptOptions {
    /// Send receipts when registered_delivery asks for them.
    pub enabled: bool,
    /// Time from the submit_sm_resp to the receipt.
    pub delay: Delay,
    /// Final states.
    pub mix: StateMix,
    /// Add receipted_message_id, message_state and network_error_code TLVs (quirk off: text only).
    pub tlvs: bool,
    /// Quirk: `ID:... STAT:...` keys in upper case.
    pub upper_case_keys: bool,
    /// Digits of the dates: 10 (Appendix B, YYMMDDhhmm) or 12 (with seconds).
    pub date_digits: u8,
    /// Quirk: send the receipt before the submit_sm_resp that gives its id.
    pub before_resp: bool,
    /// Quirk: how the receipt (text and receipted_message_id) quotes the id.
    pub id_quote: IdQuote,
    /// Send receipts as data_sm (TLVs, the text in message_payload) instead of deliver_sm.
    pub data_sm: bool,
}

impl Default for ReceiptOptions {
    fn default() -> Self {
        ReceiptOptions {
            enabled: true,
            delay: Delay::default(),
            mix: StateMix::default(),
            tlvs: true,
            upper_case_keys: false,
            date_digits: 10,
            before_resp: false,
            id_quote: IdQuote::Same,
            data_sm: false,
        }
    }
}

/// A periodic stall of a whole simulator core (like a GC pause or a blocked disk): nothing is read,
/// answered or sent for `length`, every `every`, the first one `every` after start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    /// Period.
    pub every: Duration,
    /// Length of each stall.
    pub length: Duration,
}

/// Fault injection.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Delay before each response.
    pub resp_latency: Delay,
    /// Share (0..=1) of submit_sm answered with `error_status`.
    pub error_rate: f64,
    /// The status of injected errors.
    pub error_status: CommandStatus,
    /// submit_sm per second allowed per bind; above it ESME_RTHROTTLED.
    pub throttle_tps: Option<u32>,
    /// Share (0..=1) of submit_sm never answered.
    pub drop_rate: f64,
    /// Close the connection after this many submit_sm on it.
    pub disconnect_after: Option<u64>,
    /// Periodic stalls.
    pub stall: Option<Stall>,
    /// What cancel_sm and replace_sm are answered with: ESME_ROK (done), or a refusal such as
    /// ESME_RCANCELFAIL, as an SMSC answers for a message it cannot change any more.
    pub op_status: CommandStatus,
    /// A content filter: a submit_sm whose short_message contains these octets is answered
    /// with `error_status`.
    pub refuse_containing: Option<Vec<u8>>,
    /// Binds an account may hold at once (over every core); another bind is refused with
    /// ESME_RBINDFAIL, as SMSCs that limit an account's binds do.
    pub max_binds: Option<u32>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            resp_latency: Delay::default(),
            error_rate: 0.0,
            error_status: CommandStatus::ESME_RTHROTTLED,
            throttle_tps: None,
            drop_rate: 0.0,
            disconnect_after: None,
            stall: None,
            op_status: CommandStatus::ESME_ROK,
            refuse_containing: None,
            max_binds: None,
        }
    }
}

/// Mobile-originated traffic: deliver_sm (not receipts) to bound receivers.
#[derive(Debug, Clone, PartialEq)]
pub struct MoOptions {
    /// Messages per second over the whole simulator (0: none).
    pub rate_per_s: f64,
    /// Originators (the handsets).
    pub source: Pattern,
    /// Recipients (short codes).
    pub dest: Pattern,
    /// The text, GSM 7-bit.
    pub text: String,
    /// Send MO as data_sm (the text in message_payload) instead of deliver_sm.
    pub data_sm: bool,
}

impl Default for MoOptions {
    fn default() -> Self {
        MoOptions {
            rate_per_s: 0.0,
            source: Pattern::parse("1555{rand:7}").unwrap_or_else(|_| unreachable_pattern()),
            dest: Pattern::parse("12345").unwrap_or_else(|_| unreachable_pattern()),
            text: "MO test message".to_string(),
            data_sm: false,
        }
    }
}

fn unreachable_pattern() -> Pattern {
    // The literals above are valid; a pattern that cannot fail stands in if they ever are not.
    Pattern::parse("0").unwrap_or_else(|e| panic!("built-in pattern: {e}"))
}

/// Everything the simulator needs to start.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Where to listen (port 0: an ephemeral port, see `SimHandle::local_addr`).
    pub listen: SocketAddr,
    /// Executors, each accepting on the same port with SO_REUSEPORT.
    pub cores: usize,
    /// CPU placement of the executors.
    pub cpus: CpuPlacement,
    /// Accepted credentials.
    pub accounts: Vec<Account>,
    /// system_id in bind responses.
    pub system_id: String,
    /// Style of message ids.
    pub id_format: IdFormat,
    /// Receipts.
    pub receipts: ReceiptOptions,
    /// Faults.
    pub faults: Faults,
    /// MO traffic.
    pub mo: MoOptions,
    /// Outstanding deliver_sm per session.
    pub deliver_window: u32,
    /// deliver_sm without response after this long are given up (window slot freed, counted).
    pub deliver_timeout: Duration,
    /// Receipts and MO queued per core, at most (overflow: new ones dropped and counted).
    pub receipt_queue_max: usize,
    /// Keep the last this many submit_sm for `SimHandle::take_recorded` (0: off).
    pub record_max: usize,
    /// Seed of the random choices (None: from the clock).
    pub seed: Option<u64>,
    /// Executors poll this long before sleeping (zero: sleep at once); see
    /// [`crate::runtime::spawn_executor`].
    pub spin_before_park: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            cores: 1,
            cpus: CpuPlacement::Unpinned,
            accounts: vec![Account::new(DEFAULT_SYSTEM_ID, DEFAULT_PASSWORD)],
            system_id: "smppgw-sim".to_string(),
            id_format: IdFormat::Hex,
            receipts: ReceiptOptions::default(),
            faults: Faults::default(),
            mo: MoOptions::default(),
            deliver_window: crate::limits::SIM_DELIVER_WINDOW_DEFAULT,
            deliver_timeout: Duration::from_secs(30),
            receipt_queue_max: crate::limits::SIM_RECEIPT_QUEUE_DEFAULT,
            record_max: 0,
            seed: None,
            spin_before_park: Duration::ZERO,
        }
    }
}

impl SimConfig {
    /// A configuration for tests: 127.0.0.1 on an ephemeral port, one core, default account.
    pub fn for_tests() -> SimConfig {
        SimConfig { listen: SocketAddr::from(([127, 0, 0, 1], 0)), ..SimConfig::default() }
    }

    /// Checks every value against its bounds.
    pub fn validate(&self) -> Result<(), String> {
        if self.cores == 0 || self.cores > CORES_MAX {
            return Err(format!("cores = {} outside 1..={CORES_MAX}", self.cores));
        }
        if self.accounts.is_empty() || self.accounts.len() > ACCOUNTS_MAX {
            return Err(format!("{} accounts, need 1..={ACCOUNTS_MAX}", self.accounts.len()));
        }
        let rate = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) { Ok(()) } else { Err(format!("{name} = {v} outside 0..=1")) }
        };
        rate("error rate", self.faults.error_rate)?;
        rate("drop rate", self.faults.drop_rate)?;
        if !matches!(self.receipts.date_digits, 10 | 12) {
            return Err(format!("date digits = {}, must be 10 or 12", self.receipts.date_digits));
        }
        if self.deliver_window == 0 || self.deliver_window > crate::limits::WINDOW_MAX {
            return Err(format!(
                "deliver window = {} outside 1..={}",
                self.deliver_window,
                crate::limits::WINDOW_MAX
            ));
        }
        if self.receipt_queue_max == 0 || self.receipt_queue_max > SIM_RECEIPT_QUEUE_MAX {
            return Err(format!(
                "receipt queue = {} outside 1..={SIM_RECEIPT_QUEUE_MAX}",
                self.receipt_queue_max
            ));
        }
        if self.record_max > RECORD_MAX {
            return Err(format!("record = {} above {RECORD_MAX}", self.record_max));
        }
        if !(0.0..=10_000_000.0).contains(&self.mo.rate_per_s) {
            return Err(format!("MO rate = {} outside 0..=10000000", self.mo.rate_per_s));
        }
        if self.mo.text.len() > 160 || !smppgw_codec::text::gsm::is_representable(&self.mo.text) {
            return Err("MO text must be at most 160 GSM 7-bit characters".into());
        }
        if let Some(0) = self.faults.throttle_tps {
            return Err("throttle must be at least 1 per second".into());
        }
        if let Some(s) = self.faults.stall
            && (s.every.is_zero() || s.length >= s.every)
        {
            return Err("stall length must be shorter than its period".into());
        }
        Ok(())
    }
}

/// Parses a command_status given by name (`ESME_RTHROTTLED`, also without the `ESME_` prefix) or
/// number (`0x58`, `88`).
pub fn parse_status(s: &str) -> Result<CommandStatus, String> {
    let t = s.trim();
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u32::from_str_radix(hex, 16).map(CommandStatus).map_err(|_| format!("bad status {s:?}"));
    }
    if let Ok(n) = t.parse::<u32>() {
        return Ok(CommandStatus(n));
    }
    let up = t.to_ascii_uppercase();
    let want = if up.starts_with("ESME_") { up } else { format!("ESME_{up}") };
    CommandStatus::ALL
        .iter()
        .copied()
        .find(|c| c.name() == Some(want.as_str()))
        .ok_or_else(|| format!("unknown status {s:?} (a name like ESME_RTHROTTLED, or a number like 0x58)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_parse_fixed_and_uniform() {
        // Goal: "100" is fixed, "50..200" uniform and draws stay inside.
        assert_eq!(Delay::parse_ms("100").unwrap(), Delay::Fixed(Duration::from_millis(100)));
        let d = Delay::parse_ms("50..200").unwrap();
        let mut r = Rng::new(1);
        for _ in 0..1000 {
            let x = d.sample(&mut r);
            assert!(x >= Duration::from_millis(50) && x <= Duration::from_millis(200));
        }
        assert!(Delay::parse_ms("5..1").is_err());
        assert!(Delay::parse_ms("-1").is_err());
        assert!(Delay::parse_ms("abc").is_err());
    }

    #[test]
    fn state_mix_follows_weights() {
        // Goal: the mix picks states in proportion to their weights.
        let m = StateMix::parse("DELIVRD=90,UNDELIV=5,EXPIRED=3,REJECTD=2").unwrap();
        let mut counts = std::collections::HashMap::new();
        for h in 0..10_000u64 {
            *counts.entry(m.pick(crate::rng::mix64(h))).or_insert(0) += 1;
        }
        let d = counts[&MessageState::Delivered];
        assert!((8700..9300).contains(&d), "{d}");
        assert!(counts[&MessageState::Rejected] > 100);
        assert!(StateMix::parse("FOO=1").is_err());
        assert!(StateMix::parse("DELIVRD=0").is_err());
    }

    #[test]
    fn statuses_parse_by_name_and_number() {
        // Goal: error statuses can be named as the spec does, or given as numbers.
        assert_eq!(parse_status("ESME_RTHROTTLED").unwrap(), CommandStatus::ESME_RTHROTTLED);
        assert_eq!(parse_status("rthrottled").unwrap(), CommandStatus::ESME_RTHROTTLED);
        assert_eq!(parse_status("0x58").unwrap(), CommandStatus::ESME_RTHROTTLED);
        assert_eq!(parse_status("20").unwrap(), CommandStatus::ESME_RMSGQFUL);
        assert!(parse_status("ESME_NOPE").is_err());
    }

    #[test]
    fn accounts_parse_and_validate() {
        // Goal: credentials parse from flags and files, with their SMPP length limits.
        assert_eq!(Account::parse("a:b").unwrap(), Account::new("a", "b"));
        assert!(Account::parse("nopassword").is_err());
        assert!(Account::parse("a:123456789").is_err());
        let dir = std::env::temp_dir().join(format!("simcreds-{}", std::process::id()));
        std::fs::write(&dir, "# vendors\nsmppgw:secret\n\nother:pw\n").unwrap();
        let accts = Account::read_file(&dir).unwrap();
        std::fs::remove_file(&dir).ok();
        assert_eq!(accts, vec![Account::new("smppgw", "secret"), Account::new("other", "pw")]);
        assert!(SimConfig::default().validate().is_ok());
    }
}
