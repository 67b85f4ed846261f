//! One load-generator session as a sans-IO state machine: it binds, sends submit_sm from the
//! pre-built templates within its window (closed model) or on its schedule (open model), matches
//! responses by sequence number in O(1), answers deliver_sm, gives up on timeouts, and unbinds when
//! its core finishes. The driver connects, reads, writes and sleeps until [`LoadSession::next_deadline`].

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use smppgw_codec::{Bind, Body, CommandId, CommandStatus, DecodeError, DeliverSm, HEADER_LEN, Header, Pdu};

use super::core::LoadCore;
use super::template::emit;
use crate::limits::WRITE_BUFFER_HIGH_BYTES;
use crate::pattern::{ADDR_LEN_MAX, PatternGen};
use crate::sim::BindKind;
use crate::wire::{id_resp_body, next_seq, peek_header, put_empty, put_id_resp};

/// A bind without response after this long fails the connection.
pub const BIND_TIMEOUT: Duration = Duration::from_secs(10);
/// An unbind without response after this long: close anyway.
pub const UNBIND_TIMEOUT: Duration = Duration::from_secs(2);
/// How often outstanding submits are checked for timeouts, at most.
const TIMEOUT_SCAN: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not connected (before the first connect, or between reconnects).
    Disconnected,
    /// bind sent.
    Binding { seq: u32, since: Instant },
    /// Bound: traffic flows.
    Bound,
    /// unbind sent.
    Unbinding { since: Instant },
    /// Done for good.
    Closed,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// 0: free.
    seq: u32,
    receipt: bool,
    intended: Instant,
    sent: Instant,
}

struct Pending {
    variant: usize,
    next_part: usize,
    intended: Instant,
    src: [u8; ADDR_LEN_MAX],
    dst: [u8; ADDR_LEN_MAX],
    ref_num: u8,
}

/// One SMPP session of the load generator.
pub struct LoadSession {
    index: usize,
    kind: BindKind,
    state: State,
    seq: u32,
    out: BytesMut,
    slots: Box<[Slot]>,
    mask: u32,
    inflight: u32,
    window: u32,
    // Sending.
    sends: bool,
    quota: Option<u64>,
    k: u64,
    /// Open model: (first intended time, seconds between messages of this session).
    schedule: Option<(Instant, f64)>,
    pending: Option<Pending>,
    src_gen: PatternGen,
    dst_gen: PatternGen,
    ref_counter: u8,
    done: bool,
    /// Open model: no message of the schedule is left to send (quota used up, the next one due
    /// after the deadline, or the ones due before it given up as `due_unsent`).
    schedule_over: bool,
    next_scan: Instant,
    next_enquire: Option<Instant>,
    reconnects: u32,
    receipts: bool,
}

impl LoadSession {
    /// Session `index` of `sessions` senders (receivers of a tx+rx pair pass `quota` None and
    /// `kind` Receiver). `quota`: messages this session sends (None: until the deadline).
    pub fn new(
        index: usize,
        sessions: usize,
        kind: BindKind,
        quota: Option<u64>,
        core: &mut LoadCore,
        now: Instant,
    ) -> LoadSession {
        let cfg = &core.cfg;
        let window = cfg.window;
        let table = (window as usize * 2).next_power_of_two().max(2);
        let blank = Slot { seq: 0, receipt: false, intended: now, sent: now };
        let sends = kind.can_submit();
        LoadSession {
            index,
            kind,
            state: State::Disconnected,
            seq: 0,
            out: BytesMut::with_capacity(64 * 1024),
            slots: vec![blank; table].into_boxed_slice(),
            mask: (table - 1) as u32,
            inflight: 0,
            window,
            sends,
            quota,
            k: 0,
            schedule: None,
            pending: None,
            src_gen: cfg.mix.source.instance(index, sessions),
            dst_gen: cfg.mix.dest.instance(index, sessions),
            ref_counter: (index as u8).wrapping_mul(37),
            done: !sends,
            schedule_over: false,
            next_scan: now + TIMEOUT_SCAN,
            next_enquire: None,
            reconnects: 0,
            receipts: cfg.expects_receipts(),
        }
    }

    /// The bytes to write; the driver writes them all and clears the buffer.
    pub fn output(&mut self) -> &mut BytesMut {
        &mut self.out
    }

    /// Whether this session is finished for good (the driver closes and ends).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether the session wants a connection (it is not connected and not closed).
    pub fn wants_connection(&self) -> bool {
        self.state == State::Disconnected
    }

    /// Submits outstanding.
    pub fn inflight(&self) -> u32 {
        self.inflight
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = next_seq(self.seq);
        self.seq
    }

    /// Marks the session done sending (once), so that its core can tell when all are.
    fn mark_done(&mut self, core: &mut LoadCore) {
        if !self.done {
            self.done = true;
            core.senders_active = core.senders_active.saturating_sub(1);
        }
    }

    /// A TCP connection is up: send the bind.
    pub fn on_connected(&mut self, now: Instant, core: &mut LoadCore) {
        let cfg = &core.cfg;
        let bind = Bind {
            system_id: Bytes::copy_from_slice(cfg.system_id.as_bytes()),
            password: Bytes::copy_from_slice(cfg.password.as_bytes()),
            system_type: Bytes::copy_from_slice(cfg.system_type.as_bytes()),
            interface_version: 0x34,
            ..Bind::default()
        };
        let body = match self.kind {
            BindKind::Transmitter => Body::BindTransmitter(bind),
            BindKind::Receiver => Body::BindReceiver(bind),
            BindKind::Transceiver => Body::BindTransceiver(bind),
        };
        let seq = self.next_seq();
        self.out.clear();
        Pdu::new(seq, body).encode(&mut self.out);
        self.state = State::Binding { seq, since: now };
    }

    /// The connection could not be made, or was lost at `now`: count, and decide whether to try
    /// again. Submits outstanding on it are lost: counted in `lost_in_flight` and recorded in the
    /// latency at `now` (see [`LoadCore::on_given_up`]).
    pub fn on_disconnected(&mut self, connected: bool, now: Instant, core: &mut LoadCore) {
        if connected {
            if matches!(self.state, State::Binding { .. } | State::Bound) {
                core.counters.disconnects += 1;
            }
        } else {
            core.counters.connect_failures += 1;
        }
        for s in self.slots.iter_mut() {
            if s.seq != 0 {
                core.counters.lost_in_flight += 1;
                core.on_given_up(now, s.intended, s.sent);
            }
            s.seq = 0;
        }
        self.inflight = 0;
        self.pending = None;
        self.out.clear();
        let was_leaving = matches!(self.state, State::Unbinding { .. } | State::Closed);
        let wanted = !self.done || (!self.sends && !core.finishing);
        if !was_leaving
            && !core.finishing
            && wanted
            && !self.past_send_deadline(now, core)
            && self.reconnects < core.cfg.max_reconnects
        {
            self.reconnects += 1;
            if connected {
                core.counters.reconnects += 1;
            }
            self.state = State::Disconnected;
        } else {
            self.close_for_good(now, core);
        }
    }

    /// A sender whose send deadline has passed: a new connection could carry nothing of this
    /// run, so it is not worth waiting for (a `-d` run against a crashed server must still end).
    fn past_send_deadline(&self, now: Instant, core: &LoadCore) -> bool {
        self.sends && core.send_deadline.is_some_and(|d| now >= d)
    }

    /// The session ends for good (retries used up, bind refused or timed out, deadline passed).
    /// In the open model the messages still due before the deadline are given up into
    /// `due_unsent` and the latency, as on a server unbind, not silently dropped; unless the run
    /// is ending anyway (finishing, or stopped on purpose).
    fn close_for_good(&mut self, now: Instant, core: &mut LoadCore) {
        let ending = core.finishing || core.shared.stop.load(std::sync::atomic::Ordering::Relaxed);
        if !ending && !self.sending_over(now, core) {
            self.give_up_unsent(now, core);
        }
        self.state = State::Closed;
        self.mark_done(core);
    }

    /// When the driver must stop waiting to connect: the send deadline of a sender (see
    /// [`LoadSession::poll`], which closes a waiting session once it has passed).
    pub fn connect_until(&self, core: &LoadCore) -> Option<Instant> {
        if self.sends { core.send_deadline } else { None }
    }

    /// Handles one decoded PDU.
    pub fn on_pdu(&mut self, pdu: Pdu, now: Instant, core: &mut LoadCore) {
        let seq = pdu.sequence_number;
        let status = pdu.command_status;
        match pdu.body {
            Body::SubmitSmResp(r) => self.on_submit_resp(seq, status, &r.message_id, now, core),
            Body::DeliverSm(d) => {
                core.on_deliver(&d, now);
                put_id_resp(&mut self.out, CommandId::DELIVER_SM_RESP, seq, CommandStatus::ESME_ROK, b"");
            }
            // A receipt or MO as data_sm (a gateway or SMSC set to send them so): the same
            // matching, its text taken from message_payload.
            Body::DataSm(d) => {
                let as_deliver = DeliverSm {
                    esm_class: d.esm_class,
                    short_message: d.tlvs.message_payload().unwrap_or_default(),
                    tlvs: d.tlvs,
                    ..DeliverSm::default()
                };
                core.on_deliver(&as_deliver, now);
                put_id_resp(&mut self.out, CommandId::DATA_SM_RESP, seq, CommandStatus::ESME_ROK, b"");
            }
            Body::BindTransmitterResp(_) | Body::BindReceiverResp(_) | Body::BindTransceiverResp(_) => {
                if let State::Binding { seq: want, .. } = self.state
                    && want == seq
                {
                    if status.is_ok() {
                        core.counters.binds_ok += 1;
                        self.state = State::Bound;
                        self.next_enquire = core.cfg.enquire_link.map(|d| now + d);
                        if self.schedule.is_none()
                            && let Some(rate) = core.cfg.rate
                        {
                            // Messages of all sessions interleave evenly: session i starts i/rate in.
                            let per_session = rate / core.cfg.binds as f64;
                            let phase = Duration::from_secs_f64(self.index as f64 / rate);
                            self.schedule = Some((now + phase, 1.0 / per_session));
                        }
                    } else {
                        *core.bind_failures.entry(status.0).or_insert(0) += 1;
                        self.close_for_good(now, core);
                    }
                }
            }
            Body::EnquireLink => {
                put_empty(&mut self.out, CommandId::ENQUIRE_LINK_RESP, CommandStatus::ESME_ROK, seq)
            }
            Body::Unbind => {
                put_empty(&mut self.out, CommandId::UNBIND_RESP, CommandStatus::ESME_ROK, seq);
                // The server ends the session before its share of the run is sent: counted (the
                // run covered less than asked), and in the open model the messages still due
                // before the deadline are given up (in the latency, not silently dropped).
                if !self.sending_over(now, core) && !core.finishing {
                    core.counters.server_unbinds += 1;
                    self.give_up_unsent(now, core);
                }
                // Like a disconnect, after this resp is written.
                self.state = State::Unbinding { since: now };
            }
            Body::UnbindResp => {
                if matches!(self.state, State::Unbinding { .. }) {
                    self.state = State::Closed;
                    self.mark_done(core);
                }
            }
            Body::GenericNack => {
                // A nack of one of our submits fails it; others (enquire_link, ...) are ignored.
                let s = self.slots[(seq & self.mask) as usize];
                if s.seq == seq && seq != 0 {
                    let st = if status.is_ok() { CommandStatus::ESME_RUNKNOWNERR } else { status };
                    self.resolve(seq, st, b"", now, core);
                }
            }
            body if body.command_id().is_response() => {}
            // A request we do not serve (alert_notification, ...).
            body => {
                let h = Header {
                    command_length: 0,
                    command_id: body.command_id(),
                    command_status: status,
                    sequence_number: seq,
                };
                Pdu::error_response(&h, CommandStatus::ESME_RINVCMDID).encode(&mut self.out);
            }
        }
    }

    /// Handles a PDU the decoder refused. A broken submit_sm_resp still resolves its submit (as
    /// malformed); a framing error means the connection must be closed (returns false).
    pub fn on_decode_error(&mut self, e: DecodeError, now: Instant, core: &mut LoadCore) -> bool {
        core.counters.malformed += 1;
        match e {
            DecodeError::Pdu { header, error } => {
                if header.command_id == CommandId::SUBMIT_SM_RESP
                    || header.command_id == CommandId::GENERIC_NACK
                {
                    let st = if header.command_status.is_ok() {
                        error.command_status()
                    } else {
                        header.command_status
                    };
                    let s = self.slots[(header.sequence_number & self.mask) as usize];
                    if s.seq == header.sequence_number && s.seq != 0 {
                        self.resolve(header.sequence_number, st, b"", now, core);
                    }
                } else if !header.command_id.is_response() {
                    Pdu::error_response(&header, error.command_status()).encode(&mut self.out);
                }
                true
            }
            _ => false,
        }
    }

    /// The fast path for the frame that dominates a load test: a well-formed submit_sm_resp is
    /// handled straight from the read buffer. Returns false for anything else, which the caller
    /// decodes with the codec and hands to [`LoadSession::on_pdu`].
    #[inline]
    pub fn on_raw_frame(&mut self, frame: &[u8], now: Instant, core: &mut LoadCore) -> bool {
        let Some(h) = peek_header(frame) else { return false };
        if h.id != CommandId::SUBMIT_SM_RESP {
            return false;
        }
        let body = &frame[HEADER_LEN..];
        if h.status.is_ok() && body.is_empty() {
            return false;
        }
        match id_resp_body(body) {
            Some(id) => {
                self.on_submit_resp(h.seq, h.status, id, now, core);
                true
            }
            None => false,
        }
    }

    #[inline]
    fn on_submit_resp(
        &mut self,
        seq: u32,
        status: CommandStatus,
        id: &[u8],
        now: Instant,
        core: &mut LoadCore,
    ) {
        let s = self.slots[(seq & self.mask) as usize];
        if s.seq != seq || seq == 0 {
            core.counters.late_responses += 1;
            return;
        }
        self.resolve(seq, status, id, now, core);
    }

    #[inline]
    fn resolve(&mut self, seq: u32, status: CommandStatus, id: &[u8], now: Instant, core: &mut LoadCore) {
        let slot = &mut self.slots[(seq & self.mask) as usize];
        slot.seq = 0;
        let s = *slot;
        self.inflight -= 1;
        core.on_resp(now, s.intended, s.sent, status);
        if status.is_ok() && s.receipt && !id.is_empty() {
            core.await_receipt(id, s.intended);
        }
    }

    /// Does what is due at `now`: bind and unbind timeouts, submit timeouts, enquire_link, the
    /// end of the run, and sending within the window and the schedule.
    pub fn poll(&mut self, now: Instant, core: &mut LoadCore) {
        match self.state {
            State::Binding { since, .. } if now >= since + BIND_TIMEOUT => {
                *core.bind_failures.entry(u32::MAX).or_insert(0) += 1;
                self.close_for_good(now, core);
                return;
            }
            // Waiting to reconnect: no new connection once the run ends or the deadline passed.
            State::Disconnected => {
                let stop = core.shared.stop.load(std::sync::atomic::Ordering::Relaxed);
                if core.finishing || stop || self.past_send_deadline(now, core) {
                    self.close_for_good(now, core);
                }
                return;
            }
            State::Unbinding { since } if now >= since + UNBIND_TIMEOUT => {
                self.state = State::Closed;
                self.mark_done(core);
                return;
            }
            State::Bound => {}
            _ => return,
        }
        if self.inflight > 0 && now >= self.next_scan {
            self.scan_timeouts(now, core);
        }
        if let Some(at) = self.next_enquire
            && now >= at
        {
            let seq = self.next_seq();
            put_empty(&mut self.out, CommandId::ENQUIRE_LINK, CommandStatus::ESME_ROK, seq);
            self.next_enquire = core.cfg.enquire_link.map(|d| now + d);
        }
        if core.finishing || core.shared.stop.load(std::sync::atomic::Ordering::Relaxed) {
            self.pending = None;
            if self.inflight == 0 {
                let seq = self.next_seq();
                put_empty(&mut self.out, CommandId::UNBIND, CommandStatus::ESME_ROK, seq);
                self.state = State::Unbinding { since: now };
            }
            return;
        }
        if !self.done {
            self.send(now, core);
        }
    }

    fn scan_timeouts(&mut self, now: Instant, core: &mut LoadCore) {
        let timeout = core.cfg.timeout;
        let mut n = 0;
        for s in self.slots.iter_mut() {
            if s.seq != 0 && now.saturating_duration_since(s.sent) >= timeout {
                s.seq = 0;
                n += 1;
                // In the latency at the time it is given up, not only in a counter.
                core.on_given_up(now, s.intended, s.sent);
            }
        }
        self.inflight -= n;
        core.counters.timeouts += u64::from(n);
        self.next_scan = now + TIMEOUT_SCAN.min(timeout / 4);
        if self.done_sending(now, core) {
            self.mark_done(core);
        }
    }

    fn done_sending(&self, now: Instant, core: &LoadCore) -> bool {
        self.pending.is_none() && self.inflight == 0 && self.sending_over(now, core)
    }

    /// Fills the window: continues a long message, or starts the next message if its time has come.
    ///
    /// Open model: the run is the messages due before the deadline. Once it has passed, those
    /// still unsent go out at once (whatever the send quantum) as far as the window allows; if
    /// the window is full, the rest are given up as `due_unsent` (see [`LoadCore::on_due_unsent`]).
    fn send(&mut self, now: Instant, core: &mut LoadCore) {
        let templates = core.templates.clone();
        let (sw, dw) = (templates.src_width, templates.dst_width);
        let past_deadline = core.send_deadline.is_some_and(|d| now >= d);
        while self.inflight < self.window && self.out.len() < WRITE_BUFFER_HIGH_BYTES {
            if self.pending.is_none() {
                let intended = match self.schedule {
                    Some((origin, interval)) => {
                        let t = due_at(origin, interval, self.k);
                        if self.schedule_over
                            || self.quota == Some(0)
                            || core.send_deadline.is_some_and(|d| t >= d)
                        {
                            self.schedule_over = true;
                            if self.inflight == 0 {
                                self.mark_done(core);
                            }
                            return;
                        }
                        if !past_deadline && t > core.send_point(now) {
                            return;
                        }
                        t
                    }
                    None => {
                        if self.sending_over(now, core) {
                            if self.inflight == 0 {
                                self.mark_done(core);
                            }
                            return;
                        }
                        now
                    }
                };
                let mut p = Pending {
                    variant: templates.pick(&mut core.rng),
                    next_part: 0,
                    intended,
                    src: [0; ADDR_LEN_MAX],
                    dst: [0; ADDR_LEN_MAX],
                    ref_num: self.ref_counter,
                };
                self.ref_counter = self.ref_counter.wrapping_add(1);
                self.src_gen.fill(&mut core.rng, &mut p.src[..sw]);
                self.dst_gen.fill(&mut core.rng, &mut p.dst[..dw]);
                self.pending = Some(p);
                self.k += 1;
                if let Some(q) = &mut self.quota {
                    *q -= 1;
                }
                core.counters.messages_sent += 1;
            }
            let Some(p) = &mut self.pending else { return };
            let variant = &templates.variants[p.variant];
            let part = &variant.parts[p.next_part];
            // A free slot: at most `window` of the (2 x window) slots are taken.
            let mut seq = self.seq;
            loop {
                seq = next_seq(seq);
                if self.slots[(seq & self.mask) as usize].seq == 0 {
                    break;
                }
            }
            self.seq = seq;
            emit(&mut self.out, part, seq, &p.src[..sw], &p.dst[..dw], p.ref_num);
            // Open model: every part is late from its message's due time. Closed model: a part is
            // timed from its own send, not from the window slots the earlier parts waited for.
            let intended = if self.schedule.is_some() { p.intended } else { now };
            self.slots[(seq & self.mask) as usize] =
                Slot { seq, receipt: self.receipts, intended, sent: now };
            self.inflight += 1;
            core.on_sent(now);
            p.next_part += 1;
            if p.next_part == variant.parts.len() {
                self.pending = None;
            }
        }
        if past_deadline && self.inflight >= self.window && !self.schedule_over {
            self.give_up_unsent(now, core);
        }
    }

    /// Open model, deadline passed with the window full, or the session ended early: the
    /// messages of the schedule due before the deadline and not sent are counted and recorded,
    /// once, and the schedule ends. Each is recorded as given up at the deadline at the earliest:
    /// a message that was not yet due when the session died never went out either, and must not
    /// show as answered at once.
    fn give_up_unsent(&mut self, now: Instant, core: &mut LoadCore) {
        let (Some((origin, interval)), Some(deadline)) = (self.schedule, core.send_deadline) else {
            return;
        };
        let now = now.max(deadline);
        self.schedule_over = true;
        let left = self.quota.unwrap_or(u64::MAX);
        // Messages k.. due before the deadline: estimated, then made exact against due_at.
        let span = deadline.saturating_duration_since(origin).as_secs_f64() / interval;
        let mut n = ((span.ceil() - self.k as f64).max(0.0) as u64).min(left);
        while n > 0 && due_at(origin, interval, self.k + n - 1) >= deadline {
            n -= 1;
        }
        while n < left && due_at(origin, interval, self.k + n) < deadline {
            n += 1;
        }
        if n > 0 {
            let first = due_at(origin, interval, self.k);
            core.on_due_unsent(now, first, Duration::from_secs_f64(interval), n);
            self.k += n;
            if let Some(q) = &mut self.quota {
                *q -= n;
            }
        }
    }

    /// Whether this session's share of the run is sent: quota used up, or the duration over
    /// (open model: every message due before it sent or given up).
    fn sending_over(&self, now: Instant, core: &LoadCore) -> bool {
        self.quota == Some(0)
            || match self.schedule {
                Some(_) => self.schedule_over,
                None => core.send_deadline.is_some_and(|d| now >= d),
            }
    }

    /// When [`LoadSession::poll`] must run again if nothing arrives before.
    pub fn next_deadline(&self, now: Instant, core: &LoadCore) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        match self.state {
            State::Binding { since, .. } => at(since + BIND_TIMEOUT),
            State::Unbinding { since } => at(since + UNBIND_TIMEOUT),
            State::Bound => {
                if self.inflight > 0 {
                    at(self.next_scan);
                }
                if let Some(e) = self.next_enquire {
                    at(e);
                }
                let can_send = !self.done
                    && !core.finishing
                    && self.inflight < self.window
                    && self.pending.is_none()
                    && !self.sending_over(now, core);
                if can_send {
                    if let Some((origin, interval)) = self.schedule {
                        at(core.send_point_for(due_at(origin, interval, self.k)));
                    }
                    if let Some(d) = core.send_deadline {
                        at(d);
                    }
                }
            }
            State::Disconnected | State::Closed => {}
        }
        next
    }
}

/// Open model: when message `k` of a schedule starting at `origin`, `interval` seconds apart, is due.
fn due_at(origin: Instant, interval: f64, k: u64) -> Instant {
    origin + Duration::from_secs_f64(interval * k as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::config::{Lengths, LoadConfig, MessageMix};
    use crate::load::core::LoadShared;
    use crate::load::template::Templates;
    use smppgw_codec::{Address, BindResp, Decoder, DeliverSm, MessageIdResp, Tlvs, tag};
    use std::rc::Rc;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    fn core(cfg: LoadConfig, t0: Instant) -> LoadCore {
        let templates = Rc::new(Templates::build(&cfg.mix).unwrap());
        let shared = Arc::new(LoadShared::new(1, Arc::new(AtomicBool::new(false))));
        LoadCore::new(Arc::new(cfg), shared, 0, t0, templates)
    }

    fn drain(s: &mut LoadSession) -> Vec<Pdu> {
        let mut out = std::mem::take(s.output());
        let mut v = Vec::new();
        while let Some(p) = Decoder::default().decode(&mut out).unwrap() {
            v.push(p);
        }
        v
    }

    /// A session bound at `t0`.
    fn bound(c: &mut LoadCore, t0: Instant, quota: Option<u64>) -> LoadSession {
        let mut s = LoadSession::new(0, 1, BindKind::Transceiver, quota, c, t0);
        s.on_connected(t0, c);
        let bind = drain(&mut s).remove(0);
        assert_eq!(bind.body.command_id(), CommandId::BIND_TRANSCEIVER);
        s.on_pdu(Pdu::new(bind.sequence_number, Body::BindTransceiverResp(BindResp::default())), t0, c);
        s
    }

    fn resp(seq: u32, id: &str) -> Pdu {
        Pdu::new(
            seq,
            Body::SubmitSmResp(MessageIdResp {
                message_id: bytes::Bytes::copy_from_slice(id.as_bytes()),
                tlvs: Default::default(),
            }),
        )
    }

    #[test]
    fn closed_model_keeps_the_window_full_and_matches_responses() {
        // Goal: the window is filled at once, each response frees one slot which is refilled,
        // and a response for a sequence number not outstanding counts as late.
        let t0 = Instant::now();
        let mut c = core(LoadConfig { window: 8, count: Some(20), ..LoadConfig::default() }, t0);
        let mut s = bound(&mut c, t0, Some(20));
        s.poll(t0, &mut c);
        let sent = drain(&mut s);
        assert_eq!(sent.len(), 8);
        assert!(sent.iter().all(|p| p.body.command_id() == CommandId::SUBMIT_SM));
        s.on_pdu(resp(sent[3].sequence_number, "a1"), t0, &mut c);
        s.on_pdu(resp(sent[3].sequence_number, "a1"), t0, &mut c);
        assert_eq!((c.counters.submits_ok, c.counters.late_responses), (1, 1));
        s.poll(t0, &mut c);
        assert_eq!(drain(&mut s).len(), 1, "one slot freed, one submit");
        assert_eq!(s.inflight(), 8);
    }

    #[test]
    fn fast_path_and_codec_path_agree() {
        // Goal: a submit_sm_resp handled from raw bytes counts exactly like a decoded one.
        let t0 = Instant::now();
        let mut c = core(LoadConfig { window: 4, ..LoadConfig::default() }, t0);
        let mut s = bound(&mut c, t0, Some(4));
        s.poll(t0, &mut c);
        let sent = drain(&mut s);
        let raw = resp(sent[0].sequence_number, "abc").to_bytes();
        assert!(s.on_raw_frame(&raw, t0, &mut c));
        let err = Pdu::with_status(
            sent[1].sequence_number,
            CommandStatus::ESME_RTHROTTLED,
            Body::SubmitSmResp(MessageIdResp::default()),
        )
        .to_bytes();
        assert!(s.on_raw_frame(&err, t0, &mut c));
        let nack = Pdu::new(1, Body::EnquireLinkResp).to_bytes();
        assert!(!s.on_raw_frame(&nack, t0, &mut c), "other commands go to the codec");
        assert_eq!((c.counters.submits_ok, c.counters.submits_failed), (1, 1));
        assert_eq!(c.errors.get(&CommandStatus::ESME_RTHROTTLED.0), Some(&1));
    }

    #[test]
    fn closed_model_times_each_part_of_a_long_message_from_its_own_send() {
        // Goal: with -w 1 and a server taking 50 ms per answer, each part of a 3-part message
        // shows 50 ms in submit->resp: parts 2 and 3 do not add the round trips of the parts
        // before them (the client's own wait for a window slot, not the server's latency).
        let t0 = Instant::now();
        let mix = MessageMix {
            long_share: 1.0,
            long_len: Lengths { min: 400, max: 400 },
            ucs2_share: 0.0,
            ..MessageMix::default()
        };
        let mut c = core(LoadConfig { window: 1, count: Some(1), mix, ..LoadConfig::default() }, t0);
        let mut s = bound(&mut c, t0, Some(1));
        let mut t = t0;
        for part in 0..3 {
            s.poll(t, &mut c);
            let sent = drain(&mut s);
            assert_eq!(sent.len(), 1, "part {part}: one at a time in a window of 1");
            t += Duration::from_millis(50);
            s.on_pdu(resp(sent[0].sequence_number, "id"), t, &mut c);
        }
        s.poll(t, &mut c);
        assert!(drain(&mut s).iter().all(|p| p.body.command_id() != CommandId::SUBMIT_SM));
        assert_eq!((c.counters.messages_sent, c.counters.submits_sent), (1, 3));
        let h = &c.hist.submit_resp;
        assert_eq!(h.len(), 3);
        assert!(h.max() <= 51_000, "a part counted the earlier parts' round trips: {} us", h.max());
        assert!(h.min() >= 49_000, "{}", h.min());
    }

    #[test]
    fn timeouts_free_the_window_and_late_answers_are_counted() {
        // Goal: submits without response within the timeout are given up and counted.
        let t0 = Instant::now();
        let cfg = LoadConfig { window: 2, timeout: Duration::from_millis(100), ..LoadConfig::default() };
        let mut c = core(cfg, t0);
        let mut s = bound(&mut c, t0, Some(2));
        s.poll(t0, &mut c);
        let sent = drain(&mut s);
        s.poll(t0 + Duration::from_millis(150), &mut c);
        assert_eq!((c.counters.timeouts, s.inflight()), (2, 0));
        s.on_pdu(resp(sent[0].sequence_number, "x"), t0 + Duration::from_millis(160), &mut c);
        assert_eq!(c.counters.late_responses, 1);
    }

    #[test]
    fn error_responses_stay_out_of_the_submit_resp_latency() {
        // Goal: a refusal answered at once (ESME_RTHROTTLED) does not pull submit->resp and the
        // service time down: only ESME_ROK responses are in them; errors have their own histogram.
        let t0 = Instant::now();
        let mut c = core(LoadConfig { window: 2, ..LoadConfig::default() }, t0);
        let mut s = bound(&mut c, t0, Some(2));
        s.poll(t0, &mut c);
        let sent = drain(&mut s);
        let refused = Pdu::with_status(
            sent[0].sequence_number,
            CommandStatus::ESME_RTHROTTLED,
            Body::SubmitSmResp(MessageIdResp::default()),
        );
        s.on_pdu(refused, t0 + Duration::from_millis(1), &mut c);
        s.on_pdu(resp(sent[1].sequence_number, "ok"), t0 + Duration::from_millis(40), &mut c);
        assert_eq!((c.counters.submits_ok, c.counters.submits_failed), (1, 1));
        assert_eq!((c.hist.submit_resp.len(), c.hist.service_time.len()), (1, 1));
        assert!(c.hist.submit_resp.min() >= 39_000, "{}", c.hist.submit_resp.min());
        assert_eq!(c.hist.error_resp.len(), 1);
        assert!(c.hist.error_resp.max() < 2_000);
    }

    #[test]
    fn timed_out_and_lost_submits_are_in_the_latency() {
        // Goal: a server that never answers 1 submit in 100 shows it in the submit->resp tail:
        // a timed-out submit is recorded when given up (here 150 ms), and so is each submit lost
        // with its connection, not only counted.
        let t0 = Instant::now();
        let cfg = LoadConfig { window: 100, timeout: Duration::from_millis(100), ..LoadConfig::default() };
        let mut c = core(cfg, t0);
        let mut s = bound(&mut c, t0, Some(100));
        s.poll(t0, &mut c);
        let sent = drain(&mut s);
        assert_eq!(sent.len(), 100);
        for p in &sent[..99] {
            s.on_pdu(resp(p.sequence_number, "id"), t0 + Duration::from_millis(1), &mut c);
        }
        s.poll(t0 + Duration::from_millis(150), &mut c);
        assert_eq!(c.counters.timeouts, 1);
        assert_eq!(c.hist.submit_resp.len(), 100);
        assert!(c.hist.submit_resp.max() >= 149_000, "{}", c.hist.submit_resp.max());
        assert!(c.hist.submit_resp.value_at_quantile(0.995) >= 149_000);
        assert_eq!(c.hist.service_time.len(), 100);

        // Lost with the connection: 3 outstanding when it drops at 300 ms.
        let t1 = t0 + Duration::from_millis(200);
        let mut c = core(LoadConfig { window: 3, ..LoadConfig::default() }, t1);
        let mut s = bound(&mut c, t1, Some(3));
        s.poll(t1, &mut c);
        assert_eq!(drain(&mut s).len(), 3);
        s.on_disconnected(true, t1 + Duration::from_millis(100), &mut c);
        assert_eq!(c.counters.lost_in_flight, 3);
        assert_eq!(c.hist.submit_resp.len(), 3);
        assert!(c.hist.submit_resp.min() >= 99_000, "{}", c.hist.submit_resp.min());
    }

    #[test]
    fn open_model_counts_and_records_messages_due_but_unsent_at_the_end() {
        // Goal: at 1000 msg/s for 1 s with a window of 2 and a server that never answers, the
        // 998 messages that fell due while the window was full are not silently forgotten when
        // the deadline passes: they are counted, and each is recorded in submit->resp at (end -
        // its due time), so the stall shows in the percentiles.
        let t0 = Instant::now();
        let cfg = LoadConfig {
            binds: 1,
            window: 2,
            rate: Some(1000.0),
            count: None,
            duration: Some(Duration::from_secs(1)),
            ..LoadConfig::default()
        };
        let mut c = core(cfg, t0);
        let mut s = bound(&mut c, t0, None);
        s.poll(t0, &mut c);
        s.poll(t0 + Duration::from_millis(1), &mut c);
        let sent = drain(&mut s);
        assert_eq!(sent.len(), 2);
        let end = t0 + Duration::from_millis(1010);
        s.poll(end, &mut c);
        assert!(drain(&mut s).is_empty());
        assert_eq!(c.counters.due_unsent, 998, "messages 2..=999 were due before the deadline");
        assert_eq!(c.counters.messages_sent, 2);
        let h = &c.hist.submit_resp;
        assert_eq!(h.len(), 998);
        assert!((10_900..=11_100).contains(&h.min()), "due at 999 ms, ended at 1010 ms: {}", h.min());
        assert!((1_007_000..=1_009_000).contains(&h.max()), "due at 2 ms: {}", h.max());
        // Counted once: later polls add nothing, and the answers still count.
        s.on_pdu(resp(sent[0].sequence_number, "a"), end, &mut c);
        s.on_pdu(resp(sent[1].sequence_number, "b"), end, &mut c);
        s.poll(end + Duration::from_millis(50), &mut c);
        assert_eq!((c.counters.due_unsent, c.hist.submit_resp.len()), (998, 1000));
        assert!(c.senders_active == 0, "the session is done");
    }

    #[test]
    fn a_server_unbind_before_the_end_is_counted_and_the_rest_of_the_schedule_given_up() {
        // Goal: a server that unbinds the session 200 ms into a 1 s run at 1000 msg/s (a
        // stopping gateway) does not leave a short clean run behind: the unbind is counted and
        // the messages due until the deadline are given up, in the latency.
        let t0 = Instant::now();
        let (mut c, mut s, sent) = sent_for_200ms(t0);
        let at = t0 + Duration::from_millis(200);
        s.on_pdu(Pdu::new(77, Body::Unbind), at, &mut c);
        assert_eq!(c.counters.server_unbinds, 1);
        assert_eq!(
            c.counters.due_unsent + sent,
            1000,
            "every message due before the deadline: sent or given up"
        );
        s.on_disconnected(true, at, &mut c);
        assert_eq!(c.counters.server_unbinds, 1, "counted once");
    }

    /// A 1 s run at 1000 msg/s, one session bound at `t0` with a window of 1000 and a server that
    /// never answers, polled at 200 ms. Returns the messages sent.
    fn sent_for_200ms(t0: Instant) -> (LoadCore, LoadSession, u64) {
        let cfg = LoadConfig {
            binds: 1,
            window: 1000,
            rate: Some(1000.0),
            count: None,
            duration: Some(Duration::from_secs(1)),
            ..LoadConfig::default()
        };
        let mut c = core(cfg, t0);
        let mut s = bound(&mut c, t0, None);
        s.poll(t0 + Duration::from_millis(200), &mut c);
        let sent = drain(&mut s).len() as u64;
        assert!((199..=201).contains(&sent), "{sent}");
        (c, s, sent)
    }

    /// [`sent_for_200ms`], then the connection drops at 250 ms.
    fn lost_after_200ms(t0: Instant) -> (LoadCore, LoadSession, u64) {
        let (mut c, mut s, sent) = sent_for_200ms(t0);
        let at = t0 + Duration::from_millis(200);
        s.on_disconnected(true, at + Duration::from_millis(50), &mut c);
        assert!(s.wants_connection(), "before the deadline the session reconnects");
        assert_eq!(c.counters.lost_in_flight, sent);
        (c, s, sent)
    }

    #[test]
    fn a_server_lost_for_good_ends_a_timed_run_and_its_schedule_is_given_up() {
        // Goal: a `-d 1s` run at 1000 msg/s whose server crashes at 250 ms ends at the deadline
        // instead of reconnecting for minutes, and every message due before the deadline is
        // either sent (lost in flight) or given up as due_unsent, all in submit->resp.
        let t0 = Instant::now();
        let (mut c, mut s, sent) = lost_after_200ms(t0);
        s.on_disconnected(false, t0 + Duration::from_millis(1100), &mut c);
        assert!(s.is_closed() && !s.wants_connection(), "no reconnect after the deadline");
        assert_eq!(c.senders_active, 0, "the core can end the run");
        assert_eq!(sent + c.counters.due_unsent, 1000, "every message due: sent or given up");
        assert_eq!(c.hist.submit_resp.len(), 1000, "each one in the latency");

        // Waiting to reconnect when the deadline passes: the next poll closes it the same way.
        let (mut c, mut s, sent) = lost_after_200ms(t0);
        s.poll(t0 + Duration::from_millis(1000), &mut c);
        assert!(s.is_closed() && c.senders_active == 0);
        assert_eq!((sent + c.counters.due_unsent, c.hist.submit_resp.len()), (1000, 1000));
    }

    #[test]
    fn a_refused_rebind_gives_up_the_rest_of_the_schedule() {
        // Goal: a session whose rebind is refused (ESME_RBINDFAIL at 300 ms of a 1 s run at
        // 1000 msg/s) does not silently drop the messages it owed: they are due_unsent and in
        // submit->resp, given up at the deadline at the earliest (not at ~0 ms).
        let t0 = Instant::now();
        let (mut c, mut s, sent) = lost_after_200ms(t0);
        let at = t0 + Duration::from_millis(300);
        s.on_connected(at, &mut c);
        let bind = drain(&mut s).remove(0);
        let refused = Pdu::with_status(
            bind.sequence_number,
            CommandStatus::ESME_RBINDFAIL,
            Body::BindTransceiverResp(BindResp::default()),
        );
        s.on_pdu(refused, at, &mut c);
        assert!(s.is_closed());
        assert_eq!(c.senders_active, 0);
        assert_eq!(c.bind_failures.get(&CommandStatus::ESME_RBINDFAIL.0), Some(&1));
        assert_eq!(sent + c.counters.due_unsent, 1000);
        assert_eq!(c.hist.submit_resp.len(), 1000);
        assert!(
            c.hist.submit_resp.min() >= 900,
            "due at 999 ms, given up at 1 s: {}",
            c.hist.submit_resp.min()
        );
    }

    #[test]
    fn open_model_sends_what_fell_due_before_the_deadline_at_the_last_send_point() {
        // Goal: with a 1 ms send quantum and a deadline at 1.5 ms, the messages due between the
        // 1 ms mark and the deadline go out at the next poll (the window has room), not dropped.
        let t0 = Instant::now();
        let cfg = LoadConfig {
            binds: 1,
            window: 100,
            rate: Some(10_000.0),
            send_quantum: Duration::from_millis(1),
            count: None,
            duration: Some(Duration::from_micros(1500)),
            ..LoadConfig::default()
        };
        let mut c = core(cfg, t0);
        let mut s = bound(&mut c, t0, None);
        s.poll(t0, &mut c);
        assert_eq!(drain(&mut s).len(), 1);
        s.poll(t0 + Duration::from_millis(1), &mut c);
        assert_eq!(drain(&mut s).len(), 10, "due 0.1 to 1.0 ms");
        s.poll(t0 + Duration::from_millis(2), &mut c);
        assert_eq!(drain(&mut s).len(), 4, "due 1.1 to 1.4 ms, before the deadline");
        s.poll(t0 + Duration::from_millis(3), &mut c);
        assert!(drain(&mut s).is_empty());
        assert_eq!((c.counters.messages_sent, c.counters.due_unsent), (15, 0));
    }

    /// One session bound at `t0` in the open model at `rate`, polled once at `t0`.
    fn open_model(rate: f64, send_quantum: Duration, t0: Instant) -> (LoadCore, LoadSession) {
        let cfg = LoadConfig {
            binds: 1,
            window: 100,
            rate: Some(rate),
            send_quantum,
            count: None,
            duration: Some(Duration::from_secs(1)),
            ..LoadConfig::default()
        };
        let mut c = core(cfg, t0);
        let mut s = bound(&mut c, t0, None);
        s.poll(t0, &mut c);
        (c, s)
    }

    #[test]
    fn open_model_sends_on_schedule_and_measures_from_the_intended_time() {
        // Goal: at 1000 msg/s a message is due every millisecond; nothing is sent early, a late
        // poll catches up, and latency counts from each message's intended time.
        let t0 = Instant::now();
        let (mut c, mut s) = open_model(1000.0, Duration::ZERO, t0);
        assert_eq!(drain(&mut s).len(), 1, "message 0 is due at bind time");
        assert_eq!(s.next_deadline(t0, &c), Some(t0 + Duration::from_millis(1)));
        s.poll(t0 + Duration::from_micros(500), &mut c);
        assert!(drain(&mut s).is_empty(), "message 1 is not due yet");
        let late = t0 + Duration::from_millis(10);
        s.poll(late, &mut c);
        let burst = drain(&mut s);
        assert_eq!(burst.len(), 10, "messages 1..=10 were due by 10 ms");
        // The first of the burst was due at 1 ms: answered at 10 ms, it took 9 ms, not ~0.
        s.on_pdu(resp(burst[0].sequence_number, "id"), late, &mut c);
        let us = c.hist.submit_resp.max();
        assert!((8_900..=9_100).contains(&us), "{us}");
        assert!(c.hist.service_time.max() < 100);
    }

    #[test]
    fn send_quantum_batches_due_messages_and_still_measures_from_their_own_time() {
        // Goal: at 10,000 msg/s with a 1 ms quantum, the messages due within a millisecond go
        // out together at the next millisecond mark, not one by one, and each one's latency
        // counts from its own due time.
        let t0 = Instant::now();
        let (mut c, mut s) = open_model(10_000.0, Duration::from_millis(1), t0);
        assert_eq!(drain(&mut s).len(), 1, "message 0 is due at bind time, a send point");
        let mark = t0 + Duration::from_millis(1);
        assert_eq!(s.next_deadline(t0, &c), Some(mark), "message 1 (due at 0.1 ms) waits for the mark");
        s.poll(t0 + Duration::from_micros(500), &mut c);
        assert!(drain(&mut s).is_empty(), "nothing goes out between marks");
        s.poll(mark + Duration::from_micros(50), &mut c);
        let batch = drain(&mut s);
        assert_eq!(batch.len(), 10, "messages 1..=10 (due 0.1 to 1.0 ms) go out at the mark");
        assert_eq!(s.next_deadline(mark, &c), Some(t0 + Duration::from_millis(2)));
        // Message 1 was due at 0.1 ms: answered at 1.05 ms, it took 950 us.
        s.on_pdu(resp(batch[0].sequence_number, "id"), mark + Duration::from_micros(50), &mut c);
        let us = c.hist.submit_resp.max();
        assert!((940..=960).contains(&us), "{us}");
    }

    #[test]
    fn receipts_match_by_id_whatever_the_order_and_case() {
        // Goal: a receipt matches the id of its submit_sm_resp, in any case, also when it comes
        // first; one for an unknown id is parked and never counted as matched.
        let t0 = Instant::now();
        let mix = MessageMix { registered_delivery: 1, ..MessageMix::default() };
        let mut c = core(LoadConfig { window: 2, mix, ..LoadConfig::default() }, t0);
        let mut s = bound(&mut c, t0, Some(2));
        s.poll(t0, &mut c);
        let sent = drain(&mut s);
        let receipt = |id: &str| {
            Body::DeliverSm(DeliverSm {
                esm_class: 0x04,
                source: Address::default(),
                tlvs: Tlvs::builder()
                    .cstr(tag::RECEIPTED_MESSAGE_ID, id.as_bytes())
                    .u8(tag::MESSAGE_STATE, 2)
                    .build(),
                ..DeliverSm::default()
            })
        };
        s.on_pdu(resp(sent[0].sequence_number, "abcdef01"), t0, &mut c);
        s.on_pdu(Pdu::new(77, receipt("ABCDEF01")), t0, &mut c);
        // Receipt before its response.
        s.on_pdu(Pdu::new(78, receipt("0123")), t0, &mut c);
        s.on_pdu(resp(sent[1].sequence_number, "0123"), t0, &mut c);
        s.on_pdu(Pdu::new(79, receipt("ffff")), t0, &mut c);
        assert_eq!((c.counters.receipts_expected, c.counters.receipts_matched), (2, 2));
        let answers = drain(&mut s);
        assert_eq!(answers.len(), 3);
        assert!(answers.iter().all(|p| p.body.command_id() == CommandId::DELIVER_SM_RESP));
        let r = c.take_result();
        assert_eq!((r.awaiting.len(), r.early.len()), (0, 1), "the unknown id stays unmatched");
    }

    #[test]
    fn data_sm_receipts_match_and_are_answered_with_data_sm_resp() {
        // Goal: a receipt sent as data_sm (TLVs, or only its text in message_payload) matches
        // like a deliver_sm one and gets data_sm_resp; an MO data_sm is counted as MO.
        let t0 = Instant::now();
        let mix = MessageMix { registered_delivery: 1, ..MessageMix::default() };
        let mut c = core(LoadConfig { window: 2, mix, ..LoadConfig::default() }, t0);
        let mut s = bound(&mut c, t0, Some(2));
        s.poll(t0, &mut c);
        let sent = drain(&mut s);
        s.on_pdu(resp(sent[0].sequence_number, "a1"), t0, &mut c);
        s.on_pdu(resp(sent[1].sequence_number, "b2"), t0, &mut c);
        let data_sm = |esm_class: u8, tlvs: Tlvs| {
            Body::DataSm(smppgw_codec::DataSm { esm_class, tlvs, ..Default::default() })
        };
        let by_tlv = Tlvs::builder().cstr(tag::RECEIPTED_MESSAGE_ID, b"a1").u8(tag::MESSAGE_STATE, 2).build();
        s.on_pdu(Pdu::new(80, data_sm(0x04, by_tlv)), t0, &mut c);
        let text =
            b"id:b2 sub:001 dlvrd:001 submit date:2611261200 done date:2611261201 stat:DELIVRD err:000";
        let by_text = Tlvs::builder().bytes(tag::MESSAGE_PAYLOAD, text).build();
        s.on_pdu(Pdu::new(81, data_sm(0x04, by_text)), t0, &mut c);
        let mo = Tlvs::builder().bytes(tag::MESSAGE_PAYLOAD, b"hello").build();
        s.on_pdu(Pdu::new(82, data_sm(0, mo)), t0, &mut c);
        assert_eq!((c.counters.receipts_expected, c.counters.receipts_matched), (2, 2));
        assert_eq!(c.counters.mo_received, 1);
        let answers = drain(&mut s);
        let ids: Vec<(CommandId, u32)> =
            answers.iter().map(|p| (p.command_id(), p.sequence_number)).collect();
        assert_eq!(
            ids,
            vec![(CommandId::DATA_SM_RESP, 80), (CommandId::DATA_SM_RESP, 81), (CommandId::DATA_SM_RESP, 82)]
        );
        assert!(answers.iter().all(|p| p.command_status.is_ok()));
    }
}
