//! One simulator session as a sans-IO state machine: decoded PDUs and the time go in, encoded
//! PDUs come out in [`SimSession::output`], and [`SimSession::next_deadline`] says when it wants
//! to be polled again. The glommio driver around it only reads, writes and sleeps.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use smppgw_codec::receipt::MessageState;
use smppgw_codec::{
    Bind, BindResp, Body, CommandId, CommandStatus, DecodeError, HEADER_LEN, Header, Pdu, QuerySmResp,
    SubmitMultiResp, SubmitSm, Tlvs, tag,
};

use super::core::{BindKind, OutKind, Outbound, SessionId, SimCore};
use super::delayq::DelayQueue;
use super::receipt::{ReceiptData, put_mo, put_receipt};
use crate::limits::{SIM_DELAYED_RESP_MAX, WRITE_BUFFER_HIGH_BYTES};
use crate::msgid::IdText;
use crate::runtime::bump;
use crate::wire::{SubmitView, next_seq, peek_header, put_empty, put_id_resp};

/// Per-bind throughput limit: a token bucket refilled at `rate` per second that holds up to a
/// tenth of a second's worth (at least one), so bursts above the rate are refused at once.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    cap: f64,
    rate: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32, now: Instant) -> Bucket {
        let cap = (f64::from(rate) / 10.0).max(1.0);
        Bucket { tokens: cap, cap, rate: f64::from(rate), last: now }
    }

    fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.cap);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Connected, waiting for a bind.
    Open,
    /// Bound to an account.
    Bound { account: usize, kind: BindKind },
}

struct DelayedResp {
    seq: u32,
    id: IdText,
}

/// One connection of the simulator.
pub struct SimSession {
    id: SessionId,
    state: State,
    next_seq: u32,
    out: BytesMut,
    submits: u64,
    bucket: Option<Bucket>,
    delayed: DelayQueue<DelayedResp>,
    /// Bound of `delayed` (the limit; smaller in tests).
    delayed_max: usize,
    inflight: VecDeque<(u32, Instant)>,
    close: bool,
}

impl SimSession {
    /// A session for connection `id`, opened at `now`.
    pub fn new(id: SessionId, core: &SimCore, now: Instant) -> SimSession {
        SimSession {
            id,
            state: State::Open,
            next_seq: 0,
            out: BytesMut::with_capacity(64 * 1024),
            submits: 0,
            bucket: core.cfg.faults.throttle_tps.map(|r| Bucket::new(r, now)),
            delayed: DelayQueue::default(),
            delayed_max: SIM_DELAYED_RESP_MAX,
            inflight: VecDeque::new(),
            close: false,
        }
    }

    /// The bytes to write; the driver writes them all and clears the buffer.
    pub fn output(&mut self) -> &mut BytesMut {
        &mut self.out
    }

    /// Whether the session should be closed once its output is written.
    pub fn wants_close(&self) -> bool {
        self.close
    }

    /// The bind, if any: account index and kind.
    pub fn bound(&self) -> Option<(usize, BindKind)> {
        match self.state {
            State::Bound { account, kind } => Some((account, kind)),
            State::Open => None,
        }
    }

    /// When [`SimSession::poll`] must run again, if nothing arrives before.
    pub fn next_deadline(&self, core: &SimCore) -> Option<Instant> {
        let resp = self.delayed.next_due();
        let dl = self.inflight.front().map(|f| f.1 + core.cfg.deliver_timeout);
        match (resp, dl) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn seq(&mut self) -> u32 {
        self.next_seq = next_seq(self.next_seq);
        self.next_seq
    }

    fn error(&mut self, h: &Pdu, status: CommandStatus, core: &SimCore) {
        let header = Header {
            command_length: 0,
            command_id: h.body.command_id(),
            command_status: h.command_status,
            sequence_number: h.sequence_number,
        };
        let resp = Pdu::error_response(&header, status);
        if resp.body.command_id() == CommandId::GENERIC_NACK {
            bump(&core.counters().generic_nacks, 1);
        }
        resp.encode(&mut self.out);
    }

    /// Handles one decoded PDU. After the session asked to close, PDUs are ignored.
    pub fn on_pdu(&mut self, pdu: Pdu, now: Instant, core: &mut SimCore) {
        if self.close {
            return;
        }
        let seq = pdu.sequence_number;
        match (&self.state, &pdu.body) {
            (_, Body::EnquireLink) => {
                bump(&core.counters().enquire_links, 1);
                put_empty(&mut self.out, CommandId::ENQUIRE_LINK_RESP, CommandStatus::ESME_ROK, seq);
            }
            (_, Body::EnquireLinkResp) => {}
            (State::Open, Body::BindTransmitter(b)) => self.bind(b, BindKind::Transmitter, seq, now, core),
            (State::Open, Body::BindReceiver(b)) => self.bind(b, BindKind::Receiver, seq, now, core),
            (State::Open, Body::BindTransceiver(b)) => self.bind(b, BindKind::Transceiver, seq, now, core),
            (
                State::Bound { .. },
                Body::BindTransmitter(_) | Body::BindReceiver(_) | Body::BindTransceiver(_),
            ) => {
                self.error(&pdu, CommandStatus::ESME_RALYBND, core);
            }
            (_, Body::Unbind) => {
                bump(&core.counters().unbinds, 1);
                put_empty(&mut self.out, CommandId::UNBIND_RESP, CommandStatus::ESME_ROK, seq);
                self.close = true;
            }
            (_, Body::UnbindResp) => self.close = true,
            (&State::Bound { account, kind }, Body::SubmitSm(sm)) if kind.can_submit() => {
                self.submit(seq, &SubmitView::of(sm), Some(sm), account, now, core);
            }
            (State::Bound { .. }, Body::DeliverSmResp(_) | Body::DataSmResp(_)) => {
                self.deliver_resp(seq, pdu.command_status, core)
            }
            (State::Bound { .. }, Body::GenericNack) => {
                self.deliver_resp(seq, CommandStatus::ESME_RUNKNOWNERR, core)
            }
            (&State::Bound { kind, .. }, Body::QuerySm(q)) if kind.can_submit() => {
                bump(&core.counters().queries, 1);
                match core.issued_id(&q.message_id) {
                    Some(v) => {
                        let state = core.final_state(v);
                        let mut date = BytesMut::with_capacity(16);
                        super::receipt::put_date(&mut date, core.unix_secs(now), 12);
                        date.extend_from_slice(b"000+");
                        Pdu::new(
                            seq,
                            Body::QuerySmResp(QuerySmResp {
                                message_id: q.message_id.clone(),
                                final_date: date.freeze(),
                                message_state: state.as_u8(),
                                error_code: super::receipt::err_code(state).min(255) as u8,
                            }),
                        )
                        .encode(&mut self.out);
                    }
                    None => self.error(&pdu, CommandStatus::ESME_RQUERYFAIL, core),
                }
            }
            (&State::Bound { kind, .. }, Body::DataSm(_)) if kind.can_submit() => {
                let (_, id) = core.new_message_id();
                put_id_resp(
                    &mut self.out,
                    CommandId::DATA_SM_RESP,
                    seq,
                    CommandStatus::ESME_ROK,
                    id.as_bytes(),
                );
            }
            (&State::Bound { kind, .. }, Body::SubmitMulti(_)) if kind.can_submit() => {
                let (_, id) = core.new_message_id();
                let body = SubmitMultiResp {
                    message_id: Bytes::copy_from_slice(id.as_bytes()),
                    unsuccess: Vec::new(),
                    tlvs: Default::default(),
                };
                Pdu::new(seq, Body::SubmitMultiResp(body)).encode(&mut self.out);
            }
            (&State::Bound { account, kind }, Body::CancelSm(x)) if kind.can_submit() => {
                let status = core.cfg.faults.op_status;
                core.record_op(account, CommandId::CANCEL_SM, &x.message_id, b"", status);
                put_empty(&mut self.out, CommandId::CANCEL_SM_RESP, status, seq);
            }
            (&State::Bound { account, kind }, Body::ReplaceSm(r)) if kind.can_submit() => {
                let status = core.cfg.faults.op_status;
                core.record_op(account, CommandId::REPLACE_SM, &r.message_id, &r.short_message, status);
                put_empty(&mut self.out, CommandId::REPLACE_SM_RESP, status, seq);
            }
            (_, Body::Outbind(_) | Body::AlertNotification(_)) => {
                self.error(&pdu, CommandStatus::ESME_RINVCMDID, core)
            }
            // A response we did not ask for: nothing to answer.
            (_, body) if body.command_id().is_response() => {}
            // Anything else is a request in the wrong state (before bind, submit on a receiver).
            _ => self.error(&pdu, CommandStatus::ESME_RINVBNDSTS, core),
        }
    }

    /// Handles a PDU the decoder refused: its error response, or generic_nack and close when the
    /// stream cannot be framed any more.
    pub fn on_decode_error(&mut self, e: DecodeError, core: &mut SimCore) {
        bump(&core.counters().malformed, 1);
        match e {
            DecodeError::Pdu { header, error } => {
                if !header.command_id.is_response() {
                    let resp = Pdu::error_response(&header, error.command_status());
                    if resp.body.command_id() == CommandId::GENERIC_NACK {
                        bump(&core.counters().generic_nacks, 1);
                    }
                    resp.encode(&mut self.out);
                }
            }
            _ => {
                bump(&core.counters().generic_nacks, 1);
                put_empty(&mut self.out, CommandId::GENERIC_NACK, CommandStatus::ESME_RINVCMDLEN, 0);
                self.close = true;
            }
        }
    }

    fn bind(&mut self, b: &Bind, kind: BindKind, seq: u32, now: Instant, core: &mut SimCore) {
        let resp_body = |system_id: Bytes, tlvs: Tlvs| {
            let r = BindResp { system_id, tlvs };
            match kind {
                BindKind::Transmitter => Body::BindTransmitterResp(r),
                BindKind::Receiver => Body::BindReceiverResp(r),
                BindKind::Transceiver => Body::BindTransceiverResp(r),
            }
        };
        match core.check_bind(&b.system_id, &b.password) {
            Ok(account) => {
                self.state = State::Bound { account, kind };
                core.bound(self.id, account, kind);
                let tlvs = Tlvs::builder().u8(tag::SC_INTERFACE_VERSION, 0x34).build();
                let body = resp_body(Bytes::copy_from_slice(core.cfg.system_id.as_bytes()), tlvs);
                Pdu::new(seq, body).encode(&mut self.out);
                if let Some(bucket) = &mut self.bucket {
                    *bucket = Bucket::new(core.cfg.faults.throttle_tps.unwrap_or(1), now);
                }
            }
            Err(status) => {
                bump(&core.counters().bind_failures, 1);
                Pdu::with_status(seq, status, resp_body(Bytes::new(), Tlvs::new())).encode(&mut self.out);
                self.close = true;
            }
        }
    }

    /// The fast path: handles the frames that dominate a load test straight from the read buffer,
    /// without building a [`Pdu`]: a submit_sm without optional parameters (unless record mode
    /// wants the whole PDU) and a deliver_sm_resp. Returns false for anything else, which the
    /// caller then decodes with the codec and hands to [`SimSession::on_pdu`].
    pub fn on_raw_frame(&mut self, frame: &[u8], now: Instant, core: &mut SimCore) -> bool {
        let Some(h) = peek_header(frame) else { return false };
        if self.close {
            return true;
        }
        let body = &frame[HEADER_LEN..];
        match (self.state, h.id) {
            (State::Bound { account, kind }, CommandId::SUBMIT_SM)
                if kind.can_submit() && core.cfg.record_max == 0 && h.status.is_ok() =>
            {
                match SubmitView::parse(body) {
                    Some(view) => {
                        self.submit(h.seq, &view, None, account, now, core);
                        true
                    }
                    None => false,
                }
            }
            (State::Bound { .. }, CommandId::DELIVER_SM_RESP) if body.len() <= 1 => {
                self.deliver_resp(h.seq, h.status, core);
                true
            }
            _ => false,
        }
    }

    fn submit(
        &mut self,
        seq: u32,
        sm: &SubmitView<'_>,
        pdu: Option<&SubmitSm>,
        account: usize,
        now: Instant,
        core: &mut SimCore,
    ) {
        let c = core.counters();
        bump(&c.submits, 1);
        bump(&c.accounts[account].submits, 1);
        self.submits += 1;
        if core.cfg.faults.disconnect_after.is_some_and(|n| self.submits == n) {
            bump(&core.counters().disconnects_injected, 1);
            self.close = true;
        }
        let faults = &core.cfg.faults;
        if faults.drop_rate > 0.0 && core.rng.chance(faults.drop_rate) {
            bump(&core.counters().dropped, 1);
            return;
        }
        let mut status = if self.bucket.as_mut().is_some_and(|b| !b.take(now)) {
            bump(&core.counters().throttled, 1);
            CommandStatus::ESME_RTHROTTLED
        } else if (faults.error_rate > 0.0 && core.rng.chance(faults.error_rate))
            || faults
                .refuse_containing
                .as_deref()
                .is_some_and(|p| !p.is_empty() && sm.short_message.windows(p.len()).any(|w| w == p))
        {
            bump(&core.counters().injected_errors, 1);
            faults.error_status
        } else {
            CommandStatus::ESME_ROK
        };
        // The answer is settled before the message gets an id, a record or a receipt: a response
        // held back by --resp-latency-ms needs room, and without it the submit is refused with
        // ESME_RMSGQFUL, not confirmed by a receipt.
        let mut resp_delay = Duration::ZERO;
        if status.is_ok() && !core.cfg.faults.resp_latency.is_zero() {
            if self.delayed.len() < self.delayed_max {
                resp_delay = core.cfg.faults.resp_latency.sample(&mut core.rng);
            } else {
                status = CommandStatus::ESME_RMSGQFUL;
            }
        }
        if !status.is_ok() {
            if let Some(pdu) = pdu
                && core.cfg.record_max > 0
            {
                core.record(account, b"", status, pdu);
            }
            put_id_resp(&mut self.out, CommandId::SUBMIT_SM_RESP, seq, status, b"");
            return;
        }
        bump(&core.counters().submits_ok, 1);
        let (v, id) = core.new_message_id();
        if let Some(pdu) = pdu
            && core.cfg.record_max > 0
        {
            core.record(account, id.as_bytes(), status, pdu);
        }
        let receipt = self.receipt_for(&id, v, sm, account, now, core);
        if core.cfg.receipts.before_resp
            && let Some(r) = receipt
        {
            // The quirk holds only when the receipt can be written now, ahead of the response, on
            // this session. Otherwise (a transmitter's receiver, the deliver window full, receipts
            // queued ahead of it) the receipt is queued as usual and follows the response: counted
            // in `before_resp_missed`, so that a test relying on the quirk can see it did not apply.
            if !self.send_or_queue(r, now, now, core) {
                bump(&core.counters().before_resp_missed, 1);
            }
            self.respond(seq, id, resp_delay, now);
            return;
        }
        self.respond(seq, id, resp_delay, now);
        if let Some(r) = receipt {
            let delay = core.cfg.receipts.delay;
            let due =
                now + resp_delay + if delay.is_zero() { Duration::ZERO } else { delay.sample(&mut core.rng) };
            let _ = self.send_or_queue(r, due, now, core);
        }
    }

    /// The receipt a submit asks for (registered_delivery bits 1..0: 01 always, 10 on failure,
    /// 11 on success as in SMPP 5.0), if receipts are on.
    fn receipt_for(
        &self,
        id: &IdText,
        v: u64,
        sm: &SubmitView<'_>,
        account: usize,
        now: Instant,
        core: &SimCore,
    ) -> Option<Outbound> {
        let rd = sm.registered_delivery & 0x03;
        if !core.cfg.receipts.enabled || rd == 0 {
            return None;
        }
        let state = core.final_state(v);
        let wanted = match rd {
            1 => true,
            2 => state != MessageState::Delivered,
            _ => state == MessageState::Delivered,
        };
        wanted.then(|| Outbound {
            kind: OutKind::Receipt(Box::new(ReceiptData::new(*id, sm, state, core.unix_secs(now)))),
            account: account as u16,
            origin: Some(self.id),
        })
    }

    /// Answers an accepted submit, now or after `delay` (the caller checked the queue has room).
    fn respond(&mut self, seq: u32, id: IdText, delay: Duration, now: Instant) {
        if delay.is_zero() {
            put_id_resp(
                &mut self.out,
                CommandId::SUBMIT_SM_RESP,
                seq,
                CommandStatus::ESME_ROK,
                id.as_bytes(),
            );
        } else {
            self.delayed.push(now + delay, DelayedResp { seq, id });
        }
    }

    /// Sends a due receipt at once when this session is its receiver and nothing is queued ahead
    /// of it (returns true); otherwise queues it on the core (false).
    fn send_or_queue(&mut self, o: Outbound, due: Instant, now: Instant, core: &mut SimCore) -> bool {
        let mine = self.bound().is_some_and(|(_, k)| k.can_receive());
        if due <= now
            && mine
            && (self.inflight.len() as u32) < core.cfg.deliver_window
            && self.out.len() < WRITE_BUFFER_HIGH_BYTES
            && !core.has_ready(self.id)
        {
            self.send_outbound(o, now, core);
            true
        } else {
            core.enqueue(o, due, now);
            false
        }
    }

    fn send_outbound(&mut self, o: Outbound, now: Instant, core: &SimCore) {
        let seq = self.seq();
        let c = core.counters();
        let account = usize::from(o.account).min(c.accounts.len().saturating_sub(1));
        match &o.kind {
            OutKind::Receipt(r) => {
                put_receipt(&mut self.out, seq, r, &core.cfg.receipts, core.unix_secs(now));
                bump(&c.receipts_sent, 1);
                if let Some(a) = c.accounts.get(account) {
                    bump(&a.receipts_sent, 1);
                }
            }
            OutKind::Mo { source, dest } => {
                put_mo(&mut self.out, seq, source, dest, core.cfg.mo.text.as_bytes(), core.cfg.mo.data_sm);
                bump(&c.mo_sent, 1);
                if let Some(a) = c.accounts.get(account) {
                    bump(&a.mo_sent, 1);
                }
            }
        }
        self.inflight.push_back((seq, now));
    }

    fn deliver_resp(&mut self, seq: u32, status: CommandStatus, core: &SimCore) {
        let found = if self.inflight.front().is_some_and(|f| f.0 == seq) {
            self.inflight.pop_front().is_some()
        } else if let Some(i) = self.inflight.iter().position(|f| f.0 == seq) {
            self.inflight.remove(i).is_some()
        } else {
            false
        };
        if found {
            let c = core.counters();
            bump(if status.is_ok() { &c.deliver_resp_ok } else { &c.deliver_resp_errors }, 1);
        }
    }

    /// Writes what is due at `now`: delayed responses, then deliver_sm waiting for this session
    /// while its window and write buffer allow; gives up deliver_sm unanswered for too long.
    pub fn poll(&mut self, now: Instant, core: &mut SimCore) {
        while let Some(r) = self.delayed.pop_due(now) {
            put_id_resp(
                &mut self.out,
                CommandId::SUBMIT_SM_RESP,
                r.seq,
                CommandStatus::ESME_ROK,
                r.id.as_bytes(),
            );
        }
        let timeout = core.cfg.deliver_timeout;
        while self.inflight.front().is_some_and(|f| f.1 + timeout <= now) {
            self.inflight.pop_front();
            bump(&core.counters().deliver_timeouts, 1);
        }
        // Nothing new goes out on a session that is closing (after unbind or a fault).
        if self.close || self.bound().is_none_or(|(_, k)| !k.can_receive()) {
            return;
        }
        let window = core.cfg.deliver_window as usize;
        while self.inflight.len() < window && self.out.len() < WRITE_BUFFER_HIGH_BYTES {
            let Some(o) = core.take_ready(self.id) else { break };
            self.send_outbound(o, now, core);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgid::IdFormat;
    use crate::sim::config::{Faults, SimConfig};
    use crate::sim::core::Shared;
    use smppgw_codec::{Address, Decoder, MessageIdResp, QuerySm};
    use std::rc::Rc;
    use std::sync::Arc;

    fn core_with(cfg: SimConfig) -> SimCore {
        let cfg = Arc::new(cfg);
        let shared = Arc::new(Shared::new(&cfg));
        SimCore::new(cfg, shared, 0, Instant::now(), Duration::from_secs(1_764_097_200))
    }

    fn bind(kind: fn(Bind) -> Body, id: &str, pw: &str) -> Pdu {
        Pdu::new(
            1,
            kind(Bind {
                system_id: Bytes::copy_from_slice(id.as_bytes()),
                password: Bytes::copy_from_slice(pw.as_bytes()),
                interface_version: 0x34,
                ..Bind::default()
            }),
        )
    }

    fn submit(seq: u32, rd: u8) -> Pdu {
        Pdu::new(
            seq,
            Body::SubmitSm(SubmitSm {
                source: Address::new(1, 1, &b"15550001111"[..]),
                dest: Address::new(1, 1, &b"447700900123"[..]),
                registered_delivery: rd,
                short_message: Bytes::from_static(b"hello"),
                ..SubmitSm::default()
            }),
        )
    }

    fn drain(s: &mut SimSession) -> Vec<Pdu> {
        let mut out = std::mem::take(s.output());
        let mut v = Vec::new();
        while let Some(p) = Decoder::default().decode(&mut out).unwrap() {
            v.push(p);
        }
        v
    }

    fn open(core: &mut SimCore, now: Instant) -> SimSession {
        let id = core.open_session(Rc::new(crate::runtime::Notify::default()));
        SimSession::new(id, core, now)
    }

    #[test]
    fn bind_checks_system_id_then_password() {
        // Goal: unknown system_id gets ESME_RINVSYSID, a wrong password ESME_RINVPASWD, and both
        // close the session; the right ones bind.
        let mut core = core_with(SimConfig::for_tests());
        let t = Instant::now();
        for (id, pw, want) in [
            ("nobody", "secret", CommandStatus::ESME_RINVSYSID),
            ("smppgw", "wrong", CommandStatus::ESME_RINVPASWD),
            ("smppgw", "secret", CommandStatus::ESME_ROK),
        ] {
            let mut s = open(&mut core, t);
            s.on_pdu(bind(Body::BindTransceiver, id, pw), t, &mut core);
            let out = drain(&mut s);
            assert_eq!(out[0].command_status, want, "{id}/{pw}");
            assert_eq!(out[0].body.command_id(), CommandId::BIND_TRANSCEIVER_RESP);
            assert_eq!(s.wants_close(), !want.is_ok());
        }
        assert_eq!(core.shared.stats().bind_failures, 2);
    }

    #[test]
    fn an_account_past_its_bind_limit_is_refused_until_one_of_its_binds_ends() {
        // Goal: with max_binds, the simulator refuses a bind beyond the account's limit with
        // ESME_RBINDFAIL (as SMSCs that limit binds per account do), and takes one again once a
        // bind of the account has ended.
        let mut cfg = SimConfig::for_tests();
        cfg.faults = Faults { max_binds: Some(2), ..Faults::default() };
        let mut core = core_with(cfg);
        let t = Instant::now();
        let mut bound = Vec::new();
        for want in [CommandStatus::ESME_ROK, CommandStatus::ESME_ROK, CommandStatus::ESME_RBINDFAIL] {
            let mut s = open(&mut core, t);
            s.on_pdu(bind(Body::BindTransceiver, "smppgw", "secret"), t, &mut core);
            assert_eq!(drain(&mut s)[0].command_status, want);
            bound.push(s);
        }
        let first = bound.remove(0);
        core.close_session(first.id);
        let mut s = open(&mut core, t);
        s.on_pdu(bind(Body::BindTransceiver, "smppgw", "secret"), t, &mut core);
        assert_eq!(drain(&mut s)[0].command_status, CommandStatus::ESME_ROK, "a place is free again");
    }

    #[test]
    fn submit_before_bind_and_unknown_commands_are_refused() {
        // Goal: requests before bind get ESME_RINVBNDSTS; unknown command ids get generic_nack
        // ESME_RINVCMDID; a broken length closes.
        let mut core = core_with(SimConfig::for_tests());
        let t = Instant::now();
        let mut s = open(&mut core, t);
        s.on_pdu(submit(2, 0), t, &mut core);
        assert_eq!(drain(&mut s)[0].command_status, CommandStatus::ESME_RINVBNDSTS);
        let mut raw = BytesMut::from(&[0u8, 0, 0, 16, 0, 0, 0x12, 0x34, 0, 0, 0, 0, 0, 0, 0, 9][..]);
        let e = Decoder::default().decode(&mut raw).unwrap_err();
        s.on_decode_error(e, &mut core);
        let nack = &drain(&mut s)[0];
        assert_eq!(
            (nack.body.command_id(), nack.command_status, nack.sequence_number),
            (CommandId::GENERIC_NACK, CommandStatus::ESME_RINVCMDID, 9)
        );
        assert!(!s.wants_close());
        let mut bad = BytesMut::from(&[0u8, 0, 0, 3, 0, 0, 0, 4][..]);
        let e = Decoder::default().decode(&mut bad).unwrap_err();
        s.on_decode_error(e, &mut core);
        assert!(s.wants_close());
    }

    /// Submits `n` messages asking for a receipt on a bound transceiver: each id given and the
    /// state its receipt carries.
    fn ids_and_receipt_states(core: &mut SimCore, n: u32, t: Instant) -> Vec<(Bytes, u8)> {
        let mut s = open(core, t);
        s.on_pdu(bind(Body::BindTransceiver, "smppgw", "secret"), t, core);
        drain(&mut s);
        let mut v = Vec::new();
        for seq in 2..2 + n {
            s.on_pdu(submit(seq, 1), t, core);
            s.poll(t, core);
            let out = drain(&mut s);
            let Body::SubmitSmResp(r) = &out[0].body else { panic!("{:?}", out[0]) };
            let Body::DeliverSm(d) = &out[1].body else { panic!("{:?}", out[1]) };
            v.push((r.message_id.clone(), d.tlvs.message_state().unwrap()));
        }
        v
    }

    /// The answer to a query_sm for `id` on a new transceiver of `core`.
    fn query(core: &mut SimCore, id: &[u8], t: Instant) -> Pdu {
        let mut s = open(core, t);
        s.on_pdu(bind(Body::BindTransceiver, "smppgw", "secret"), t, core);
        drain(&mut s);
        let q = QuerySm { message_id: Bytes::copy_from_slice(id), source: Address::default() };
        s.on_pdu(Pdu::new(99, Body::QuerySm(q)), t, core);
        drain(&mut s).remove(0)
    }

    fn queried_state(p: &Pdu) -> Option<u8> {
        match &p.body {
            Body::QuerySmResp(r) if p.command_status.is_ok() => Some(r.message_state),
            _ => None,
        }
    }

    #[test]
    fn query_sm_gives_the_state_of_the_receipt_however_the_id_is_spelled() {
        // Goal: with a mix of final states, query_sm answers the state the message's receipt
        // carries, whether the id is quoted as given, in upper case, or (decimal ids) with leading
        // zeros; an id the simulator never gave gets ESME_RQUERYFAIL.
        let t = Instant::now();
        for format in [IdFormat::Hex, IdFormat::Decimal, IdFormat::Uuid] {
            let mut cfg = SimConfig::for_tests();
            cfg.id_format = format;
            cfg.receipts.mix =
                crate::sim::StateMix::parse("DELIVRD=40,UNDELIV=30,EXPIRED=20,REJECTD=10").unwrap();
            let mut core = core_with(cfg);
            let given = ids_and_receipt_states(&mut core, 40, t);
            for (id, state) in &given {
                let mut spellings = vec![id.to_vec(), id.to_ascii_uppercase()];
                if format == IdFormat::Decimal {
                    spellings.push([b"00".as_slice(), id].concat());
                }
                for q in spellings {
                    let got = queried_state(&query(&mut core, &q, t));
                    assert_eq!(got, Some(*state), "{format} {}", String::from_utf8_lossy(&q));
                }
            }
            // The next id, not given yet, and one from a core the run does not have.
            let (last, _) = given.last().unwrap();
            let next = core.issued_id(last).unwrap() + 1;
            for v in [next, next | 0x7F << 56] {
                let never = crate::msgid::format_id(format, core.salt(), v);
                let p = query(&mut core, never.as_bytes(), t);
                assert_eq!(p.command_status, CommandStatus::ESME_RQUERYFAIL, "{format} {never:?}");
            }
        }
    }

    #[test]
    fn query_sm_on_another_core_finds_a_uuid_id() {
        // Goal: with UUID ids and two simulator cores, a query_sm for a message submitted on
        // one core succeeds on a connection the other core holds, with the receipt's state.
        let t = Instant::now();
        let mut cfg = SimConfig::for_tests();
        cfg.cores = 2;
        cfg.id_format = IdFormat::Uuid;
        cfg.receipts.mix = crate::sim::StateMix::parse("DELIVRD=50,UNDELIV=50").unwrap();
        let cfg = Arc::new(cfg);
        let shared = Arc::new(Shared::new(&cfg));
        let wall = Duration::from_secs(1_764_097_200);
        let mut a = SimCore::new(cfg.clone(), shared.clone(), 0, t, wall);
        let mut b = SimCore::new(cfg, shared, 1, t, wall);
        for (id, state) in ids_and_receipt_states(&mut a, 20, t) {
            let p = query(&mut b, &id, t);
            assert_eq!(p.command_status, CommandStatus::ESME_ROK, "{}", String::from_utf8_lossy(&id));
            assert_eq!(queried_state(&p), Some(state));
        }
    }

    #[test]
    fn transceiver_gets_resp_then_receipt_in_one_write() {
        // Goal: with no receipt delay, a transceiver's submit_sm_resp and its receipt go out in
        // the same buffer, and the receipt carries the id of the resp.
        let mut core = core_with(SimConfig::for_tests());
        let t = Instant::now();
        let mut s = open(&mut core, t);
        s.on_pdu(bind(Body::BindTransceiver, "smppgw", "secret"), t, &mut core);
        drain(&mut s);
        s.on_pdu(submit(7, 1), t, &mut core);
        s.poll(t, &mut core);
        let out = drain(&mut s);
        assert_eq!(out.len(), 2);
        let Body::SubmitSmResp(r) = &out[0].body else { panic!("{:?}", out[0]) };
        let Body::DeliverSm(d) = &out[1].body else { panic!("{:?}", out[1]) };
        assert_eq!(d.tlvs.receipted_message_id().unwrap(), r.message_id);
        // Its deliver_sm_resp frees the window.
        s.on_pdu(
            Pdu::new(out[1].sequence_number, Body::DeliverSmResp(MessageIdResp::default())),
            t,
            &mut core,
        );
        assert_eq!(core.shared.stats().deliver_resp_ok, 1);
    }

    #[test]
    fn receipt_before_resp_quirk_reverses_the_order() {
        // Goal: --receipt-before-resp puts the receipt ahead of the submit_sm_resp.
        let mut cfg = SimConfig::for_tests();
        cfg.receipts.before_resp = true;
        let mut core = core_with(cfg);
        let t = Instant::now();
        let mut s = open(&mut core, t);
        s.on_pdu(bind(Body::BindTransceiver, "smppgw", "secret"), t, &mut core);
        drain(&mut s);
        s.on_pdu(submit(7, 1), t, &mut core);
        let out = drain(&mut s);
        assert_eq!(out[0].body.command_id(), CommandId::DELIVER_SM);
        assert_eq!(out[1].body.command_id(), CommandId::SUBMIT_SM_RESP);
    }

    #[test]
    fn receipt_before_resp_quirk_that_cannot_apply_is_counted() {
        // Goal: when the receipt cannot be written ahead of the response (deliver window full,
        // or the submit came on a transmitter), it follows the response as usual, and the
        // simulator counts that the quirk did not apply instead of silently dropping it.
        let mut cfg = SimConfig::for_tests();
        cfg.receipts.before_resp = true;
        cfg.deliver_window = 1;
        let mut core = core_with(cfg);
        let t = Instant::now();
        let mut s = open(&mut core, t);
        s.on_pdu(bind(Body::BindTransceiver, "smppgw", "secret"), t, &mut core);
        drain(&mut s);
        s.on_pdu(submit(7, 1), t, &mut core);
        let first: Vec<CommandId> = drain(&mut s).iter().map(|p| p.body.command_id()).collect();
        assert_eq!(first, [CommandId::DELIVER_SM, CommandId::SUBMIT_SM_RESP]);
        assert_eq!(core.shared.stats().before_resp_missed, 0);
        // The first receipt is not acknowledged: the window of one is full.
        s.on_pdu(submit(8, 1), t, &mut core);
        let second: Vec<CommandId> = drain(&mut s).iter().map(|p| p.body.command_id()).collect();
        assert_eq!(second, [CommandId::SUBMIT_SM_RESP]);
        assert_eq!(core.shared.stats().before_resp_missed, 1);
        // A transmitter's receipts go to a receiver: never ahead of its response.
        let mut tx = open(&mut core, t);
        let mut rx = open(&mut core, t);
        tx.on_pdu(bind(Body::BindTransmitter, "smppgw", "secret"), t, &mut core);
        rx.on_pdu(bind(Body::BindReceiver, "smppgw", "secret"), t, &mut core);
        drain(&mut tx);
        drain(&mut rx);
        tx.on_pdu(submit(9, 1), t, &mut core);
        assert_eq!(drain(&mut tx)[0].body.command_id(), CommandId::SUBMIT_SM_RESP);
        assert_eq!(core.shared.stats().before_resp_missed, 2);
    }

    #[test]
    fn delayed_receipts_go_to_the_receiver_of_a_transmitter() {
        // Goal: a transmitter's receipt waits its delay in the core, then goes to a receiver
        // bind of the same account.
        let mut cfg = SimConfig::for_tests();
        cfg.receipts.delay = crate::sim::config::Delay::Fixed(Duration::from_millis(100));
        let mut core = core_with(cfg);
        let t = Instant::now();
        let mut tx = open(&mut core, t);
        let mut rx = open(&mut core, t);
        tx.on_pdu(bind(Body::BindTransmitter, "smppgw", "secret"), t, &mut core);
        rx.on_pdu(bind(Body::BindReceiver, "smppgw", "secret"), t, &mut core);
        drain(&mut tx);
        drain(&mut rx);
        tx.on_pdu(submit(3, 1), t, &mut core);
        assert_eq!(drain(&mut tx).len(), 1);
        core.poll(t + Duration::from_millis(50));
        rx.poll(t + Duration::from_millis(50), &mut core);
        assert!(drain(&mut rx).is_empty());
        core.poll(t + Duration::from_millis(100));
        rx.poll(t + Duration::from_millis(100), &mut core);
        let got = drain(&mut rx);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body.command_id(), CommandId::DELIVER_SM);
    }

    #[test]
    fn throttle_errors_and_disconnect_faults() {
        // Goal: above the per-bind rate submits get ESME_RTHROTTLED, and the session asks to
        // close after --disconnect-after submits.
        let mut cfg = SimConfig::for_tests();
        cfg.faults = Faults { throttle_tps: Some(10), disconnect_after: Some(5), ..Faults::default() };
        let mut core = core_with(cfg);
        let t = Instant::now();
        let mut s = open(&mut core, t);
        s.on_pdu(bind(Body::BindTransmitter, "smppgw", "secret"), t, &mut core);
        drain(&mut s);
        for i in 0..5 {
            s.on_pdu(submit(10 + i, 0), t, &mut core);
        }
        let st: Vec<CommandStatus> = drain(&mut s).iter().map(|p| p.command_status).collect();
        assert_eq!(st[0], CommandStatus::ESME_ROK);
        assert!(st[1..].iter().all(|&x| x == CommandStatus::ESME_RTHROTTLED), "{st:?}");
        assert!(s.wants_close());
        let stats = core.shared.stats();
        assert_eq!((stats.throttled, stats.disconnects_injected), (4, 1));
    }

    #[test]
    fn resp_latency_holds_responses_until_due() {
        // Goal: --resp-latency-ms keeps the response back until its time.
        let mut cfg = SimConfig::for_tests();
        cfg.faults.resp_latency = crate::sim::config::Delay::Fixed(Duration::from_millis(20));
        let mut core = core_with(cfg);
        let t = Instant::now();
        let mut s = open(&mut core, t);
        s.on_pdu(bind(Body::BindTransmitter, "smppgw", "secret"), t, &mut core);
        drain(&mut s);
        s.on_pdu(submit(4, 0), t, &mut core);
        assert!(drain(&mut s).is_empty());
        assert_eq!(s.next_deadline(&core), Some(t + Duration::from_millis(20)));
        s.poll(t + Duration::from_millis(20), &mut core);
        assert_eq!(drain(&mut s)[0].sequence_number, 4);
    }

    #[test]
    fn a_submit_refused_for_a_full_response_queue_gets_no_receipt() {
        // Goal: with --resp-latency-ms and the queue of held responses full (1 here, 64 Ki in a
        // run), the next submit is answered ESME_RMSGQFUL and is not counted OK, given an id, or
        // confirmed by a receipt: two submits, one OK response, one receipt.
        let mut cfg = SimConfig::for_tests();
        cfg.faults.resp_latency = crate::sim::config::Delay::Fixed(Duration::from_millis(20));
        let mut core = core_with(cfg);
        let t = Instant::now();
        let mut s = open(&mut core, t);
        s.delayed_max = 1;
        s.on_pdu(bind(Body::BindTransceiver, "smppgw", "secret"), t, &mut core);
        drain(&mut s);
        s.on_pdu(submit(4, 1), t, &mut core);
        s.on_pdu(submit(5, 1), t, &mut core);
        let later = t + Duration::from_millis(20);
        core.poll(later);
        s.poll(later, &mut core);
        let out = drain(&mut s);
        let seen: Vec<(CommandId, u32, CommandStatus)> =
            out.iter().map(|p| (p.command_id(), p.sequence_number, p.command_status)).collect();
        let resps: Vec<_> = seen.iter().filter(|p| p.0 == CommandId::SUBMIT_SM_RESP).collect();
        assert_eq!(
            resps,
            [
                &(CommandId::SUBMIT_SM_RESP, 5, CommandStatus::ESME_RMSGQFUL),
                &(CommandId::SUBMIT_SM_RESP, 4, CommandStatus::ESME_ROK)
            ],
            "{seen:?}"
        );
        let receipts = out.iter().filter(|p| p.command_id() == CommandId::DELIVER_SM).count();
        assert_eq!(receipts, 1, "{seen:?}");
        let st = core.shared.stats();
        assert_eq!((st.submits, st.submits_ok), (2, 1));
        assert_eq!(st.receipts_sent, 1);
    }
}
