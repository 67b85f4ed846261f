//! The load generator's configuration.

use std::net::SocketAddr;
use std::time::Duration;

use crate::limits::{BINDS_MAX, CORES_MAX, SEND_QUANTUM_MAX, TEMPLATE_VARIANTS_MAX, WINDOW_MAX};
use crate::pattern::Pattern;
use crate::runtime::CpuPlacement;

/// How the load generator binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BindMode {
    /// `binds` bind_transmitter; receipts, if any, are not seen.
    Transmitter,
    /// `binds` bind_transceiver: submits out, receipts back on the same session.
    #[default]
    Transceiver,
    /// `binds` bind_transmitter plus as many bind_receiver for the receipts.
    TxRx,
}

impl std::str::FromStr for BindMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tx" | "transmitter" => Ok(BindMode::Transmitter),
            "trx" | "transceiver" => Ok(BindMode::Transceiver),
            "txrx" | "tx+rx" | "pair" => Ok(BindMode::TxRx),
            other => Err(format!("unknown bind mode {other:?} (tx, trx, txrx)")),
        }
    }
}

/// Message lengths: one length or a range, in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Lengths {
    /// Shortest.
    pub min: usize,
    /// Longest.
    pub max: usize,
}

impl Lengths {
    /// Parses `40` or `20..160`.
    pub fn parse(s: &str) -> Result<Lengths, String> {
        let n = |x: &str| x.trim().parse::<usize>().map_err(|_| format!("bad length {x:?}"));
        let (min, max) = match s.split_once("..") {
            Some((a, b)) => (n(a)?, n(b)?),
            None => (n(s)?, n(s)?),
        };
        if min == 0 || min > max || max > 10_000 {
            return Err(format!("lengths {s:?}: need 1 <= min <= max <= 10000"));
        }
        Ok(Lengths { min, max })
    }
}

/// What the messages look like.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MessageMix {
    /// Length of normal messages, in characters.
    pub text_len: Lengths,
    /// Share (0..=1) of long messages, sent as concatenated parts with a UDH.
    pub long_share: f64,
    /// Length of long messages, in characters.
    pub long_len: Lengths,
    /// Share (0..=1) of messages in UCS-2; the rest are GSM 7-bit.
    pub ucs2_share: f64,
    /// A fixed text for every message instead (encoding chosen from it, split when long).
    pub text: Option<String>,
    /// registered_delivery of every submit_sm. Bits 1..0: 1 asks for a receipt for every
    /// message (SMPP 3.4: on success or failure), 0 for none. 2 (on failure only) and 3
    /// (reserved in 3.4, on success only in SMPP 5.0 and in smppgw-sim) are refused by
    /// [`LoadConfig::validate`]: which messages get one is not known in advance, so receipts
    /// could not be counted as expected or missing. The higher bits (SME acknowledgement,
    /// intermediate notification) are sent as given.
    pub registered_delivery: u8,
    /// Originators.
    #[serde(serialize_with = "ser_pattern")]
    pub source: Pattern,
    /// Recipients.
    #[serde(serialize_with = "ser_pattern")]
    pub dest: Pattern,
    /// source_addr_ton / npi.
    pub source_ton_npi: (u8, u8),
    /// dest_addr_ton / npi.
    pub dest_ton_npi: (u8, u8),
    /// service_type.
    pub service_type: String,
}

fn ser_pattern<S: serde::Serializer>(p: &Pattern, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(p.as_str())
}

impl Default for MessageMix {
    fn default() -> Self {
        let pat = |s: &str| Pattern::parse(s).unwrap_or_else(|e| panic!("built-in pattern {s}: {e}"));
        MessageMix {
            text_len: Lengths { min: 40, max: 40 },
            long_share: 0.0,
            long_len: Lengths { min: 300, max: 300 },
            ucs2_share: 0.0,
            text: None,
            registered_delivery: 0,
            source: pat("1555{rand:7}"),
            dest: pat("4477{rand:8}"),
            source_ton_npi: (1, 1),
            dest_ton_npi: (1, 1),
            service_type: String::new(),
        }
    }
}

/// Everything a load run needs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LoadConfig {
    /// The SMPP server.
    pub target: SocketAddr,
    /// Sessions that submit (with `TxRx`, as many receivers again).
    pub binds: usize,
    /// How they bind.
    pub bind_mode: BindMode,
    /// system_id.
    pub system_id: String,
    /// password.
    #[serde(skip)]
    pub password: String,
    /// system_type.
    pub system_type: String,
    /// Executors.
    pub cores: usize,
    /// CPU placement.
    #[serde(skip)]
    pub cpus: CpuPlacement,
    /// Messages to send in all (a long message counts once); with `duration`, whichever ends first.
    pub count: Option<u64>,
    /// How long to send.
    pub duration: Option<Duration>,
    /// Outstanding submit_sm per session.
    pub window: u32,
    /// Open model: messages per second over all sessions, kept even when the server is slow.
    /// `None`: closed model, as fast as the window allows.
    pub rate: Option<f64>,
    /// Open model: messages fall due at their own times, but a session sends them only at the
    /// next multiple of this quantum (counted from the run's start), several in one write.
    /// Latency is still measured from each message's own due time, so the wait shows in the
    /// percentiles. Zero: each message is sent at its own time (one wake-up and one write each).
    pub send_quantum: Duration,
    /// What to send.
    pub mix: MessageMix,
    /// A submit_sm without response after this long counts as a timeout.
    pub timeout: Duration,
    /// After the last response, how long to wait for receipts still due.
    pub receipt_wait: Duration,
    /// enquire_link period (None: never).
    pub enquire_link: Option<Duration>,
    /// Reconnect after the server closes a session, at most this many times per session, and a
    /// sender not once its send deadline has passed.
    pub max_reconnects: u32,
    /// Print progress once a second on stderr.
    pub progress: bool,
    /// Seed of the random choices (None: from the clock).
    pub seed: Option<u64>,
    /// Executors poll this long before sleeping (zero: sleep at once); see
    /// [`crate::runtime::spawn_executor`].
    #[serde(skip)]
    pub spin_before_park: Duration,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            target: SocketAddr::from(([127, 0, 0, 1], 2775)),
            binds: 4,
            bind_mode: BindMode::Transceiver,
            system_id: "demo".to_string(),
            password: "demo".to_string(),
            system_type: String::new(),
            cores: 1,
            cpus: CpuPlacement::Unpinned,
            count: Some(100_000),
            duration: None,
            window: 64,
            rate: None,
            send_quantum: Duration::ZERO,
            mix: MessageMix::default(),
            timeout: Duration::from_secs(10),
            receipt_wait: Duration::from_secs(10),
            enquire_link: Some(Duration::from_secs(30)),
            max_reconnects: crate::limits::RECONNECTS_MAX_DEFAULT,
            progress: false,
            seed: None,
            spin_before_park: Duration::ZERO,
        }
    }
}

impl LoadConfig {
    /// Checks every value against its bounds.
    pub fn validate(&self) -> Result<(), String> {
        if self.binds == 0 || self.binds > BINDS_MAX {
            return Err(format!("binds = {} outside 1..={BINDS_MAX}", self.binds));
        }
        if self.cores == 0 || self.cores > CORES_MAX {
            return Err(format!("cores = {} outside 1..={CORES_MAX}", self.cores));
        }
        if self.window == 0 || self.window > WINDOW_MAX {
            return Err(format!("window = {} outside 1..={WINDOW_MAX}", self.window));
        }
        if self.count.is_none() && self.duration.is_none() {
            return Err("give a message count or a duration".into());
        }
        if let Some(r) = self.rate
            && !(r > 0.0 && r <= 100_000_000.0)
        {
            return Err(format!("rate = {r} outside (0, 100000000]"));
        }
        if self.send_quantum > SEND_QUANTUM_MAX {
            return Err(format!("send quantum {:?} above {SEND_QUANTUM_MAX:?}", self.send_quantum));
        }
        if self.system_id.len() > 15 || self.password.len() > 8 || self.system_type.len() > 12 {
            return Err("system_id, password and system_type are at most 15, 8 and 12 characters".into());
        }
        let m = &self.mix;
        for (name, v) in [("long share", m.long_share), ("UCS-2 share", m.ucs2_share)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} = {v} outside 0..=1"));
            }
        }
        match m.registered_delivery & 0x03 {
            0 | 1 => {}
            rd => {
                return Err(format!(
                    "registered_delivery {} asks for a receipt only on {} (bits 1..0 = {rd}): the load \
                     generator cannot tell which messages will get one, so it could not count receipts \
                     as expected or missing; use 1 (a receipt for every message) or 0 (none)",
                    m.registered_delivery,
                    if rd == 2 { "failure" } else { "success (SMPP 5.0; reserved in 3.4)" },
                ));
            }
        }
        if m.service_type.len() > 5 {
            return Err("service_type is at most 5 characters".into());
        }
        if self.timeout.is_zero() {
            return Err("timeout must be above zero".into());
        }
        const _: () = assert!(TEMPLATE_VARIANTS_MAX >= 8);
        Ok(())
    }

    /// Whether receipts are asked for (registered_delivery bits 1..0 = 1, the only other value
    /// [`LoadConfig::validate`] accepts being 0) and can come back: every OK submit awaits one.
    pub fn expects_receipts(&self) -> bool {
        self.mix.registered_delivery & 0x03 != 0 && self.bind_mode != BindMode::Transmitter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_delivery_the_receipt_count_cannot_follow_is_refused() {
        // Goal: registered_delivery 2 (receipt on failure only) and 3 (reserved in SMPP 3.4, on
        // success only in 5.0 and in the simulator) would make every OK submit await a receipt
        // that mostly never comes, reported missing: refused, whatever the higher bits.
        let with = |rd: u8| LoadConfig {
            mix: MessageMix { registered_delivery: rd, ..MessageMix::default() },
            ..LoadConfig::default()
        };
        for rd in [0u8, 1, 0x10, 0x11] {
            assert_eq!(with(rd).validate(), Ok(()), "{rd:#x}");
        }
        for rd in [2u8, 3, 0x12, 0x13] {
            let e = with(rd).validate().unwrap_err();
            assert!(e.contains("registered_delivery"), "{rd:#x}: {e}");
        }
        assert!(with(1).expects_receipts() && !with(0x10).expects_receipts());
    }
}
