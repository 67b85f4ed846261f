//! The vendor bind (we are the ESME): a sans-IO state machine over one SMPP connection.
//!
//! It binds, keeps a window of submits in flight with their deadlines, answers the vendor's
//! enquire_link and receipts, and hands back every job with its outcome exactly once: accepted,
//! refused with a status, or unknown (timeout, connection lost) so the caller can apply the
//! documented unknown-outcome policy. The job type is generic so tests use plain numbers.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use smppgw_codec::{
    Bind, Body, CommandId, CommandStatus, DecodeError, DeliverSm, MessageIdResp, Pdu, SubmitSm,
};

use crate::deadlines::DeadlineQueue;

/// Rounds of requests timing out in a row (those that time out together count once), no
/// answer to a request in between, after which the bind is made again: an SMSC that still
/// answers enquire_link but has stopped answering submits would otherwise take every message
/// sent to it into an unknown outcome for as long as it stays up.
pub const TIMEOUTS_IN_ROW_MAX: u32 = 8;

/// How a vendor bind binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VendorBindKind {
    /// bind_transmitter.
    Transmitter,
    /// bind_receiver (receipts only).
    Receiver,
    /// bind_transceiver.
    Transceiver,
}

/// Settings of one vendor bind.
#[derive(Debug, Clone)]
pub struct VendorSettings {
    /// Our credentials at the vendor.
    pub system_id: Bytes,
    /// Password.
    pub password: Bytes,
    /// system_type.
    pub system_type: Bytes,
    /// Bind type.
    pub kind: VendorBindKind,
    /// Submits in flight.
    pub window: u32,
    /// A submit, bind or enquire_link unanswered for this long has an unknown outcome.
    pub response_timeout: Duration,
    /// enquire_link after this much silence.
    pub enquire_link_interval: Duration,
}

/// What the outcome of a submit is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The vendor accepted it under this id.
    Accepted(Bytes),
    /// The vendor refused it.
    Refused(CommandStatus),
    /// No answer: timed out or the connection dropped with it in flight.
    Unknown,
}

/// What the driver must act on.
#[derive(Debug)]
pub enum VendorEvent<J> {
    /// Bound: jobs can flow.
    Bound,
    /// The vendor refused our bind.
    BindFailed(CommandStatus),
    /// A submit finished.
    Done {
        /// The job handed in with [`VendorSession::submit`].
        job: J,
        /// Its outcome.
        outcome: Outcome,
    },
    /// The vendor sent a deliver_sm (receipt or MO); it has been answered with ESME_ROK.
    Deliver(DeliverSm),
    /// Close the connection.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connected,
    BindSent { at: Instant, seq: u32 },
    Bound,
    Unbinding { at: Instant },
    Closed,
}

/// A multiplicative hasher for sequence numbers: SipHash is wasted on our own counters.
#[derive(Default)]
pub struct SeqHasher(u64);
impl Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}
type SeqMap<V> = HashMap<u32, V, BuildHasherDefault<SeqHasher>>;

/// One vendor connection's protocol state.
#[derive(Debug)]
pub struct VendorSession<J> {
    settings: VendorSettings,
    state: State,
    next_seq: u32,
    /// Requests in flight by sequence number: the job, its deadline and the request's command
    /// (only a response to that command, or a generic_nack, answers it).
    inflight: SeqMap<(J, Instant, CommandId)>,
    /// Send order of in-flight submits with their deadlines; stale entries are skipped.
    deadlines: DeadlineQueue,
    last_rx: Instant,
    enquire_sent: Option<Instant>,
    /// The sequence number of the enquire_link in `enquire_sent`.
    enquire_seq: u32,
    /// The vendor answered ESME_RINVBNDSTS: it no longer has this bind (it lost the session but
    /// still answers). Nothing more is sent; the bind closes (and is made again) once the
    /// submits in flight are answered.
    lost: bool,
    /// The sequence number of the vendor's unbind, answered once the submits in flight are
    /// (the bind is `lost` meanwhile: nothing more is sent on it).
    unbind_answer: Option<u32>,
    /// A request timed out with nothing heard from the vendor since it was sent: the link may
    /// be dead without a reset (a NAT or firewall dropped it). Nothing more is sent until the
    /// vendor is heard from; an enquire_link asks at once, and closes the bind if unanswered.
    suspect: bool,
    /// Rounds of timeouts since the vendor last answered a request (see [`TIMEOUTS_IN_ROW_MAX`]).
    timeouts_in_row: u32,
}

impl<J> VendorSession<J> {
    /// A connected socket at `now`: writes the bind request.
    pub fn new(settings: VendorSettings, now: Instant, out: &mut BytesMut) -> VendorSession<J> {
        let mut s = VendorSession {
            settings,
            state: State::Connected,
            next_seq: 1,
            inflight: SeqMap::default(),
            deadlines: DeadlineQueue::default(),
            last_rx: now,
            enquire_sent: None,
            enquire_seq: 0,
            lost: false,
            unbind_answer: None,
            suspect: false,
            timeouts_in_row: 0,
        };
        let seq = s.next_sequence();
        let b = Bind {
            system_id: s.settings.system_id.clone(),
            password: s.settings.password.clone(),
            system_type: s.settings.system_type.clone(),
            interface_version: 0x34,
            ..Bind::default()
        };
        let body = match s.settings.kind {
            VendorBindKind::Transmitter => Body::BindTransmitter(b),
            VendorBindKind::Receiver => Body::BindReceiver(b),
            VendorBindKind::Transceiver => Body::BindTransceiver(b),
        };
        Pdu::new(seq, body).encode(out);
        s.state = State::BindSent { at: now, seq };
        s
    }

    fn next_sequence(&mut self) -> u32 {
        let s = self.next_seq;
        self.next_seq = if s >= 0x7FFF_FFFF { 1 } else { s + 1 };
        s
    }

    /// Whether submits can be sent now.
    pub fn is_bound(&self) -> bool {
        self.state == State::Bound
    }

    /// Submits in flight.
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// The vendor said it lost our session (ESME_RINVBNDSTS), or stopped answering requests
    /// ([`TIMEOUTS_IN_ROW_MAX`]): nothing more is sent on this bind, which closes once nothing
    /// is in flight (and is made again).
    pub fn is_lost(&self) -> bool {
        self.lost
    }

    /// Whether another submit can be sent now (bound, heard from, and room in the window).
    pub fn has_room(&self) -> bool {
        self.is_bound()
            && !self.lost
            && !self.suspect
            && self.settings.kind != VendorBindKind::Receiver
            && (self.inflight.len() as u32) < self.settings.window
    }

    /// Sends `submit` for `job`, or hands the job back when not bound or the window is full.
    pub fn submit(
        &mut self,
        job: J,
        now: Instant,
        out: &mut BytesMut,
        body: impl Fn(&J) -> &SubmitSm,
    ) -> Result<(), J> {
        if !self.has_room() {
            return Err(job);
        }
        let mut seq = self.next_sequence();
        while self.inflight.contains_key(&seq) {
            seq = self.next_sequence();
        }
        smppgw_codec::encode_short_message(CommandId::SUBMIT_SM, seq, body(&job), out);
        let deadline = now + self.settings.response_timeout;
        self.inflight.insert(seq, (job, deadline, CommandId::SUBMIT_SM));
        self.push_deadline(deadline, seq);
        Ok(())
    }

    /// Sends any other request (cancel_sm, replace_sm, query_sm) for `job`; its response comes
    /// back as [`VendorEvent::Done`] like a submit's.
    pub fn request(&mut self, job: J, now: Instant, out: &mut BytesMut, body: Body) -> Result<(), J> {
        if !self.is_bound() || self.lost || self.suspect || self.settings.kind == VendorBindKind::Receiver {
            return Err(job);
        }
        let mut seq = self.next_sequence();
        while self.inflight.contains_key(&seq) {
            seq = self.next_sequence();
        }
        let command = body.command_id();
        Pdu::new(seq, body).encode(out);
        let deadline = now + self.settings.response_timeout;
        self.inflight.insert(seq, (job, deadline, command));
        self.push_deadline(deadline, seq);
        Ok(())
    }

    /// The job whose request in flight at `seq` a response `resp` answers: a response to that
    /// request's own command, or a generic_nack. A response of another command is not its
    /// answer (a vendor that mixes them up tells nothing of how the request ended): the request
    /// stays in flight, and times out with an unknown outcome if no answer of its own comes.
    fn take_answered(&mut self, seq: u32, resp: CommandId) -> Option<J> {
        match self.inflight.entry(seq) {
            std::collections::hash_map::Entry::Occupied(e)
                if resp == CommandId::GENERIC_NACK || resp.0 == e.get().2.0 | 0x8000_0000 =>
            {
                Some(e.remove().0)
            }
            _ => None,
        }
    }

    /// Whether a timeout with the vendor silent stopped this bind's sending until the vendor
    /// answers its enquire_link (see `suspect`).
    pub fn is_suspect(&self) -> bool {
        self.suspect
    }

    /// Feeds one decoded PDU from the vendor.
    pub fn on_pdu(&mut self, pdu: Pdu, now: Instant, out: &mut BytesMut, events: &mut Vec<VendorEvent<J>>) {
        self.last_rx = now;
        self.suspect = false;
        let seq = pdu.sequence_number;
        let status = pdu.command_status;
        match pdu.body {
            Body::BindTransmitterResp(_) | Body::BindReceiverResp(_) | Body::BindTransceiverResp(_) => {
                self.bind_answered(seq, status, events)
            }
            Body::SubmitSmResp(MessageIdResp { message_id, .. }) => {
                // It answers submits, even one that had timed out here: it is taking them.
                self.timeouts_in_row = 0;
                if let Some(job) = self.take_answered(seq, CommandId::SUBMIT_SM_RESP) {
                    let outcome =
                        if status.is_ok() { Outcome::Accepted(message_id) } else { Outcome::Refused(status) };
                    events.push(VendorEvent::Done { job, outcome });
                }
                self.lost_bind(status);
            }
            ref body @ (Body::CancelSmResp | Body::ReplaceSmResp | Body::QuerySmResp(_)) => {
                self.timeouts_in_row = 0;
                if let Some(job) = self.take_answered(seq, body.command_id()) {
                    let outcome = if status.is_ok() {
                        Outcome::Accepted(Bytes::new())
                    } else {
                        Outcome::Refused(status)
                    };
                    events.push(VendorEvent::Done { job, outcome });
                }
                self.lost_bind(status);
            }
            Body::GenericNack => {
                if let Some(job) = self.take_answered(seq, CommandId::GENERIC_NACK) {
                    self.timeouts_in_row = 0;
                    // The vendor could not take our PDU (4.3: its length or command): nothing
                    // the customer can fix, and another vendor may take the message. A system
                    // error passes it on, and is what the customer gets when none does.
                    events.push(VendorEvent::Done {
                        job,
                        outcome: Outcome::Refused(CommandStatus::ESME_RSYSERR),
                    });
                    self.lost_bind(status);
                } else if let State::BindSent { seq: s, .. } = self.state
                    && s == seq
                {
                    self.state = State::Closed;
                    events.push(VendorEvent::BindFailed(status));
                    events.push(VendorEvent::Close);
                } else if self.enquire_sent.is_some() && seq == self.enquire_seq {
                    // An SMSC that does not know enquire_link still answered it: it is alive,
                    // unless it says it lost our session.
                    self.enquire_sent = None;
                    self.lost_bind(status);
                }
            }
            Body::EnquireLink => Pdu::new(seq, Body::EnquireLinkResp).encode(out),
            Body::EnquireLinkResp => {
                self.enquire_sent = None;
                // The vendor lost our session but keeps the connection: a receiver bind (or an
                // idle one) learns it only here, and would otherwise wait for ever.
                self.lost_bind(status);
            }
            Body::DeliverSm(d) => {
                Pdu::new(seq, Body::DeliverSmResp(MessageIdResp::default())).encode(out);
                events.push(VendorEvent::Deliver(d));
            }
            Body::DataSm(d) => {
                // A receipt or MO as data_sm: answered, then handled in deliver_sm form.
                Pdu::new(seq, Body::DataSmResp(Default::default())).encode(out);
                events.push(VendorEvent::Deliver(SubmitSm::from(d)));
            }
            // Nothing more is sent; the submits in flight get their answers, if the vendor
            // sends them, before our unbind_resp lets it close (SMPP 3.4 4.2: the unbind
            // deregisters the bind, its outstanding requests are still answered).
            Body::Unbind if !self.inflight.is_empty() && self.state == State::Bound => {
                self.lost = true;
                // A repeated unbind: the earlier one is answered now, this one at the close.
                if let Some(earlier) = self.unbind_answer.replace(seq) {
                    Pdu::new(earlier, Body::UnbindResp).encode(out);
                }
            }
            Body::Unbind => {
                Pdu::new(seq, Body::UnbindResp).encode(out);
                self.close(events);
            }
            // Only the answer to our unbind ends the bind; a stray one changes nothing.
            Body::UnbindResp if matches!(self.state, State::Unbinding { .. }) => self.close(events),
            Body::UnbindResp => {}
            // SMSC -> ESME, and has no response (SMPP 3.4 4.12): nothing to answer, nothing to
            // act on (the gateway keeps no per-handset retry lists).
            Body::AlertNotification(_) => {}
            body => {
                let id = body.command_id();
                if !id.is_response() {
                    let h = smppgw_codec::Header {
                        command_length: 16,
                        command_id: id,
                        command_status: status,
                        sequence_number: seq,
                    };
                    Pdu::error_response(&h, CommandStatus::ESME_RINVCMDID).encode(out);
                }
            }
        }
        self.close_if_lost(out, events);
    }

    fn bind_answered(&mut self, seq: u32, status: CommandStatus, events: &mut Vec<VendorEvent<J>>) {
        if let State::BindSent { seq: s, .. } = self.state
            && s == seq
        {
            if status.is_ok() {
                self.state = State::Bound;
                events.push(VendorEvent::Bound);
            } else {
                self.state = State::Closed;
                events.push(VendorEvent::BindFailed(status));
                events.push(VendorEvent::Close);
            }
        }
    }

    /// Feeds a decode error: malformed requests are answered, a malformed response is judged
    /// by its header (a submit's fails or succeeds by its status, a bind's binds or not, an
    /// enquire_link_resp shows the vendor alive), a framing error closes.
    pub fn on_decode_error(
        &mut self,
        err: &DecodeError,
        now: Instant,
        out: &mut BytesMut,
        events: &mut Vec<VendorEvent<J>>,
    ) {
        match err {
            DecodeError::Pdu { header, error } => {
                // Whatever it is, the vendor sent a whole PDU: the connection is alive.
                self.last_rx = now;
                self.suspect = false;
                if header.command_id == CommandId::ENQUIRE_LINK_RESP {
                    self.enquire_sent = None;
                } else if matches!(
                    header.command_id,
                    CommandId::BIND_TRANSMITTER_RESP
                        | CommandId::BIND_RECEIVER_RESP
                        | CommandId::BIND_TRANSCEIVER_RESP
                ) {
                    self.bind_answered(header.sequence_number, header.command_status, events);
                } else if header.command_id.is_response() {
                    if let Some(job) = self.take_answered(header.sequence_number, header.command_id) {
                        self.timeouts_in_row = 0;
                        // The vendor answered but we cannot read its id: it has the message
                        // (unless the answer is a generic_nack, which never accepts one).
                        // A generic_nack is about our PDU's framing, never the customer's
                        // business: a system error, passed to the next vendor, as in `on_pdu`.
                        let nack = header.command_id == CommandId::GENERIC_NACK;
                        let outcome = if nack {
                            Outcome::Refused(CommandStatus::ESME_RSYSERR)
                        } else if header.command_status.is_ok() {
                            Outcome::Accepted(Bytes::new())
                        } else {
                            Outcome::Refused(header.command_status)
                        };
                        events.push(VendorEvent::Done { job, outcome });
                        if header.command_status == CommandStatus::ESME_RINVBNDSTS && self.is_bound() {
                            self.lost = true;
                        }
                    }
                } else if header.command_id != CommandId::ALERT_NOTIFICATION {
                    Pdu::error_response(header, error.command_status()).encode(out);
                }
            }
            _ => self.close(events),
        }
        self.close_if_lost(out, events);
    }

    /// The earliest time [`VendorSession::on_tick`] has something to do.
    pub fn next_deadline(&self) -> Instant {
        let s = &self.settings;
        let keepalive = match self.enquire_sent {
            Some(at) => at + s.response_timeout,
            None => self.last_rx + s.enquire_link_interval,
        };
        let state = match self.state {
            State::BindSent { at, .. } | State::Unbinding { at } => at + s.response_timeout,
            _ => keepalive,
        };
        match self.deadlines.front() {
            Some((d, _)) => d.min(state),
            None => state,
        }
    }

    /// Whether the deadline entry `(deadline, seq)` still belongs to a request in flight.
    fn is_live(&self, deadline: Instant, seq: u32) -> bool {
        self.inflight.get(&seq).is_some_and(|(_, d, _)| *d == deadline)
    }

    /// Records a request's deadline (see [`DeadlineQueue`] for how stale entries are kept down).
    fn push_deadline(&mut self, deadline: Instant, seq: u32) {
        let inflight = &self.inflight;
        self.deadlines
            .push(deadline, seq, inflight.len(), |d, s| inflight.get(&s).is_some_and(|(_, x, _)| *x == d));
    }

    /// Time passed: expire submits, keepalive, bind and unbind timeouts.
    pub fn on_tick(&mut self, now: Instant, out: &mut BytesMut, events: &mut Vec<VendorEvent<J>>) {
        let (mut silent, mut expired) = (false, false);
        while let Some((deadline, seq)) = self.deadlines.pop_due(now) {
            // Only if this entry is still the live one for that sequence number.
            if self.is_live(deadline, seq)
                && let Some((job, _, _)) = self.inflight.remove(&seq)
            {
                events.push(VendorEvent::Done { job, outcome: Outcome::Unknown });
                expired = true;
                // Nothing at all came from the vendor since this one went out.
                let sent = deadline.checked_sub(self.settings.response_timeout);
                silent |= sent.is_some_and(|sent| self.last_rx < sent);
            }
        }
        // Requests that time out together (a window sent in one burst, a vendor that paused)
        // count once: a single stall must not make every bind of a vendor again at once.
        if expired {
            self.timeouts_in_row = self.timeouts_in_row.saturating_add(1);
        }
        if self.is_bound() && !self.lost {
            if self.timeouts_in_row >= TIMEOUTS_IN_ROW_MAX {
                // Alive (it answers enquire_link) but not taking submits: made again.
                self.lost = true;
            } else if silent {
                self.suspect = true;
            }
        }
        self.close_if_lost(out, events);
        let s = self.settings.clone();
        match self.state {
            State::BindSent { at, .. } if now >= at + s.response_timeout => {
                self.state = State::Closed;
                events.push(VendorEvent::BindFailed(CommandStatus::ESME_RSYSERR));
                events.push(VendorEvent::Close);
            }
            State::Unbinding { at } if now >= at + s.response_timeout => self.close(events),
            State::Bound => match self.enquire_sent {
                Some(at) if now >= at + s.response_timeout => self.close(events),
                // A lost bind sends nothing more (it closes once its answers are in).
                None if !self.lost && (self.suspect || now >= self.last_rx + s.enquire_link_interval) => {
                    let seq = self.next_sequence();
                    Pdu::new(seq, Body::EnquireLink).encode(out);
                    self.enquire_sent = Some(now);
                    self.enquire_seq = seq;
                }
                _ => {}
            },
            _ => {}
        }
    }

    /// Applies a reloaded vendor's timing to this live bind. A shorter response timeout applies
    /// to the submits in flight too (each then times out at its send time plus the new timeout):
    /// kept, their later deadlines would sit ahead of the new submits' earlier ones in the
    /// send-ordered queue, and hold those (and their window places) up to the old timeout.
    pub fn set_timing(&mut self, response_timeout: Duration, enquire_link_interval: Duration) {
        let shorter = self.settings.response_timeout.saturating_sub(response_timeout);
        self.settings.response_timeout = response_timeout;
        self.settings.enquire_link_interval = enquire_link_interval;
        if shorter.is_zero() || self.inflight.is_empty() {
            return;
        }
        self.deadlines.shorten(self.inflight.iter_mut().map(|(&seq, (_, d, _))| (seq, d)), shorter);
    }

    /// Starts a graceful unbind once nothing is in flight (the driver waits for that).
    pub fn unbind(&mut self, now: Instant, out: &mut BytesMut) {
        if self.state == State::Bound {
            let seq = self.next_sequence();
            Pdu::new(seq, Body::Unbind).encode(out);
            self.state = State::Unbinding { at: now };
        }
    }

    /// After an answer with `status`: a vendor that says we are not bound has lost this bind;
    /// once nothing it holds is in flight, the bind closes and the driver makes it again.
    /// (Closed by [`VendorSession::close_if_lost`], which every caller's path reaches.)
    fn lost_bind(&mut self, status: CommandStatus) {
        if status == CommandStatus::ESME_RINVBNDSTS && self.is_bound() {
            self.lost = true;
        }
    }

    /// Closes a lost bind once nothing it holds is in flight, however the last request left
    /// (answered, timed out, an operation's answer, an answer that did not decode), answering
    /// the vendor's unbind first if that is what ended it.
    fn close_if_lost(&mut self, out: &mut BytesMut, events: &mut Vec<VendorEvent<J>>) {
        if self.lost && self.inflight.is_empty() && self.state != State::Closed {
            if let Some(seq) = self.unbind_answer.take() {
                Pdu::new(seq, Body::UnbindResp).encode(out);
            }
            self.close(events);
        }
    }

    /// The connection is gone: every job in flight comes back with an unknown outcome.
    pub fn close(&mut self, events: &mut Vec<VendorEvent<J>>) {
        if self.state == State::Closed && self.inflight.is_empty() {
            return;
        }
        let was_closed = self.state == State::Closed;
        self.state = State::Closed;
        self.deadlines.clear();
        for (_, (job, _, _)) in self.inflight.drain() {
            events.push(VendorEvent::Done { job, outcome: Outcome::Unknown });
        }
        if !was_closed {
            events.push(VendorEvent::Close);
        }
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smppgw_codec::{Address, CommandId, Decoder};

    fn settings() -> VendorSettings {
        VendorSettings {
            system_id: "gw".into(),
            password: "pw".into(),
            system_type: Bytes::new(),
            kind: VendorBindKind::Transceiver,
            window: 2,
            response_timeout: Duration::from_secs(5),
            enquire_link_interval: Duration::from_secs(30),
        }
    }

    fn pdus(out: &mut BytesMut) -> Vec<Pdu> {
        let mut v = Vec::new();
        while let Some(p) = Decoder::default().decode(out).unwrap() {
            v.push(p);
        }
        v
    }

    fn bound() -> (VendorSession<(u32, SubmitSm)>, Instant, BytesMut) {
        bound_with(settings())
    }

    fn bound_with(settings: VendorSettings) -> (VendorSession<(u32, SubmitSm)>, Instant, BytesMut) {
        let now = Instant::now();
        let mut out = BytesMut::new();
        let mut s = VendorSession::new(settings, now, &mut out);
        let bind = pdus(&mut out);
        assert_eq!(bind[0].command_id(), CommandId::BIND_TRANSCEIVER);
        let mut ev = Vec::new();
        s.on_pdu(
            Pdu::new(bind[0].sequence_number, Body::BindTransceiverResp(Default::default())),
            now,
            &mut out,
            &mut ev,
        );
        assert!(matches!(ev[0], VendorEvent::Bound));
        (s, now, out)
    }

    fn msg() -> SubmitSm {
        SubmitSm { source: Address::new(1, 1, "1"), dest: Address::new(1, 1, "2"), ..Default::default() }
    }

    #[test]
    fn window_accepts_then_hands_back() {
        let m = msg();
        let (mut s, now, mut out) = bound();
        assert!(s.submit((1, m.clone()), now, &mut out, |j| &j.1).is_ok());
        assert!(s.submit((2, m.clone()), now, &mut out, |j| &j.1).is_ok());
        assert_eq!(s.submit((3, m.clone()), now, &mut out, |j| &j.1).map_err(|j| j.0), Err(3));
        let sent = pdus(&mut out);
        let mut ev = Vec::new();
        let resp = Pdu::new(
            sent[1].sequence_number,
            Body::SubmitSmResp(MessageIdResp { message_id: "V2".into(), tlvs: Default::default() }),
        );
        s.on_pdu(resp, now, &mut out, &mut ev);
        assert!(
            matches!(&ev[0], VendorEvent::Done { job: (2, _), outcome: Outcome::Accepted(id) } if id == "V2")
        );
        let nack = Pdu::with_status(
            sent[0].sequence_number,
            CommandStatus::ESME_RTHROTTLED,
            Body::SubmitSmResp(Default::default()),
        );
        s.on_pdu(nack, now, &mut out, &mut ev);
        assert!(matches!(
            &ev[1],
            VendorEvent::Done { job: (1, _), outcome: Outcome::Refused(CommandStatus::ESME_RTHROTTLED) }
        ));
    }

    #[test]
    fn a_shorter_response_timeout_from_a_reload_applies_to_the_submits_in_flight() {
        // Goal: lowering a vendor's response timeout from 60 s to 5 s ends a submit sent before
        // the reload 5 s after it was sent, and one sent after it is not held behind the first.
        let m = msg();
        let (mut s, now, mut out) = bound();
        s.set_timing(Duration::from_secs(60), Duration::from_secs(30));
        s.submit((1, m.clone()), now, &mut out, |j| &j.1).unwrap();
        s.set_timing(Duration::from_secs(5), Duration::from_secs(30));
        s.submit((2, m.clone()), now + Duration::from_secs(1), &mut out, |j| &j.1).unwrap();
        let mut ev = Vec::new();
        s.on_tick(now + Duration::from_secs(6), &mut out, &mut ev);
        let done: Vec<u32> = ev
            .iter()
            .filter_map(|e| match e {
                VendorEvent::Done { job, outcome: Outcome::Unknown } => Some(job.0),
                _ => None,
            })
            .collect();
        assert_eq!(done, vec![1, 2], "both timed out by their send time plus 5 s");
        assert_eq!(s.inflight(), 0, "their window places are free");
    }

    fn done_unknown(ev: &[VendorEvent<(u32, SubmitSm)>]) -> Vec<u32> {
        ev.iter()
            .filter_map(|e| match e {
                VendorEvent::Done { job, outcome: Outcome::Unknown } => Some(job.0),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_timeout_with_the_vendor_silent_stops_sending_and_asks_at_once_whether_the_link_lives() {
        // Goal: a link dropped without a reset (NAT, firewall) is found by the first submit that
        // times out with nothing heard since it went: nothing more is sent into it (each would
        // be one more unknown outcome), an enquire_link goes at once rather than after the
        // 30 s keepalive interval, and the bind closes when that goes unanswered too. A vendor
        // that answers the enquire_link takes submits again.
        let m = msg();
        for answers in [false, true] {
            let (mut s, now, mut out) = bound();
            let sent_at = now + Duration::from_secs(1);
            s.submit((1, m.clone()), sent_at, &mut out, |j| &j.1).unwrap();
            pdus(&mut out);
            let mut ev = Vec::new();
            let t = sent_at + Duration::from_secs(5);
            s.on_tick(t, &mut out, &mut ev);
            assert_eq!(done_unknown(&ev), vec![1]);
            assert!(s.is_suspect() && !s.has_room(), "nothing more goes into a link that may be dead");
            assert_eq!(s.submit((2, m.clone()), t, &mut out, |j| &j.1).map_err(|j| j.0), Err(2));
            let probe = pdus(&mut out);
            assert_eq!(probe.len(), 1);
            assert_eq!(probe[0].command_id(), CommandId::ENQUIRE_LINK, "asked at once");
            ev.clear();
            if answers {
                let resp = Pdu::new(probe[0].sequence_number, Body::EnquireLinkResp);
                s.on_pdu(resp, t + Duration::from_millis(20), &mut out, &mut ev);
                assert!(!s.is_suspect() && s.has_room(), "alive: it takes submits again");
                s.on_tick(t + Duration::from_secs(6), &mut out, &mut ev);
                assert!(!s.is_closed());
            } else {
                s.on_tick(t + Duration::from_secs(5), &mut out, &mut ev);
                assert!(s.is_closed(), "no answer to the enquire_link either: closed, to be made again");
                assert!(matches!(&ev[..], [VendorEvent::Close]), "{ev:?}");
            }
        }
    }

    #[test]
    fn a_timeout_while_the_vendor_talks_does_not_stop_the_bind() {
        // Goal: a submit the vendor left unanswered while it answered others is one lost
        // message, not a sign of a dead link: the bind goes on sending.
        let m = msg();
        let (mut s, now, mut out) = bound();
        let t0 = now + Duration::from_secs(1);
        s.submit((1, m.clone()), t0, &mut out, |j| &j.1).unwrap();
        s.submit((2, m.clone()), t0, &mut out, |j| &j.1).unwrap();
        let sent = pdus(&mut out);
        let mut ev = Vec::new();
        let ok = Pdu::new(sent[1].sequence_number, Body::SubmitSmResp(MessageIdResp::default()));
        s.on_pdu(ok, t0 + Duration::from_millis(10), &mut out, &mut ev);
        ev.clear();
        s.on_tick(t0 + Duration::from_secs(5), &mut out, &mut ev);
        assert_eq!(done_unknown(&ev), vec![1]);
        assert!(!s.is_suspect() && s.has_room());
        assert!(pdus(&mut out).is_empty(), "no enquire_link before its interval");
    }

    #[test]
    fn a_vendor_that_answers_enquire_link_but_never_a_submit_is_bound_again() {
        // Goal: a half-dead SMSC (it answers enquire_link, never a submit) would take every
        // message sent to it into an unknown outcome for as long as it stays up: after
        // TIMEOUTS_IN_ROW_MAX timeouts in a row the bind takes nothing more and is made again.
        // One answered submit in between starts the count again.
        let m = msg();
        let (mut s, now, mut out) = bound();
        let mut t = now;
        let mut ev = Vec::new();
        let mut timeout_one = |s: &mut VendorSession<(u32, SubmitSm)>, id: u32, answered: bool| {
            t += Duration::from_secs(1);
            s.submit((id, m.clone()), t, &mut out, |j| &j.1).unwrap();
            let sent = pdus(&mut out);
            if answered {
                let ok = Pdu::new(sent[0].sequence_number, Body::SubmitSmResp(MessageIdResp::default()));
                s.on_pdu(ok, t, &mut out, &mut ev);
                return;
            }
            t += Duration::from_secs(5);
            s.on_tick(t, &mut out, &mut ev);
            // The vendor answers the enquire_link the silence asked for.
            for p in pdus(&mut out) {
                if p.command_id() == CommandId::ENQUIRE_LINK {
                    s.on_pdu(Pdu::new(p.sequence_number, Body::EnquireLinkResp), t, &mut out, &mut ev);
                }
            }
        };
        for id in 0..TIMEOUTS_IN_ROW_MAX - 1 {
            timeout_one(&mut s, id, false);
        }
        timeout_one(&mut s, 100, true);
        for id in 0..TIMEOUTS_IN_ROW_MAX - 1 {
            timeout_one(&mut s, 200 + id, false);
        }
        assert!(!s.is_lost() && !s.is_closed(), "an answer in between restarted the count");
        timeout_one(&mut s, 300, false);
        assert!(s.is_lost(), "{} timeouts in a row: nothing more is sent", TIMEOUTS_IN_ROW_MAX);
        assert!(s.is_closed(), "made again");
        assert!(matches!(ev.last(), Some(VendorEvent::Close)), "{ev:?}");
    }

    #[test]
    fn a_window_timing_out_together_is_one_round_and_a_late_answer_starts_the_count_again() {
        // Goal: a vendor that pauses longer than the response timeout (a whole window of 10
        // times out in one tick) does not have the bind made again (every bind of the vendor
        // would be, at once); and an answer that comes after its request timed out shows the
        // vendor takes submits, so the count of rounds starts again.
        let m = msg();
        let (mut s, now, mut out) = bound_with(VendorSettings { window: 10, ..settings() });
        let mut ev = Vec::new();
        let mut t = now;
        let mut round = |s: &mut VendorSession<(u32, SubmitSm)>, n: u32, answer_late: bool| {
            t += Duration::from_secs(1);
            for i in 0..n {
                s.submit((i, m.clone()), t, &mut out, |j| &j.1).unwrap();
            }
            let sent = pdus(&mut out);
            t += Duration::from_secs(5);
            s.on_tick(t, &mut out, &mut ev);
            for p in pdus(&mut out) {
                if p.command_id() == CommandId::ENQUIRE_LINK {
                    s.on_pdu(Pdu::new(p.sequence_number, Body::EnquireLinkResp), t, &mut out, &mut ev);
                }
            }
            if answer_late {
                let resp = Pdu::new(sent[0].sequence_number, Body::SubmitSmResp(MessageIdResp::default()));
                s.on_pdu(resp, t, &mut out, &mut ev);
            }
        };
        round(&mut s, 10, false);
        assert!(!s.is_lost() && s.has_room(), "ten timeouts at once are one round");
        // Rounds 2 to 7, the seventh answered late.
        for _ in 0..TIMEOUTS_IN_ROW_MAX - 3 {
            round(&mut s, 1, false);
        }
        round(&mut s, 1, true);
        for _ in 0..TIMEOUTS_IN_ROW_MAX - 1 {
            round(&mut s, 1, false);
        }
        assert!(!s.is_lost(), "the late answer started the count again");
        round(&mut s, 1, false);
        assert!(s.is_lost(), "then {TIMEOUTS_IN_ROW_MAX} rounds in a row");
    }

    #[test]
    fn a_vendor_that_answers_not_bound_gets_nothing_more_and_the_bind_is_made_again() {
        // Goal: an SMSC that lost our session but still answers says ESME_RINVBNDSTS: that
        // submit is refused (the driver passes it to another vendor), no new submit goes to this
        // bind, and once the submits in flight are answered the bind closes, to be made again.
        let m = msg();
        let (mut s, now, mut out) = bound();
        s.submit((1, m.clone()), now, &mut out, |j| &j.1).unwrap();
        s.submit((2, m.clone()), now, &mut out, |j| &j.1).unwrap();
        let sent = pdus(&mut out);
        let mut ev = Vec::new();
        let not_bound = |seq: u32| {
            Pdu::with_status(seq, CommandStatus::ESME_RINVBNDSTS, Body::SubmitSmResp(Default::default()))
        };
        s.on_pdu(not_bound(sent[0].sequence_number), now, &mut out, &mut ev);
        assert!(matches!(
            &ev[..],
            [VendorEvent::Done { job: (1, _), outcome: Outcome::Refused(CommandStatus::ESME_RINVBNDSTS) }]
        ));
        assert!(!s.has_room(), "nothing more is sent to it");
        assert_eq!(s.submit((3, m.clone()), now, &mut out, |j| &j.1).map_err(|j| j.0), Err(3));
        s.on_pdu(not_bound(sent[1].sequence_number), now, &mut out, &mut ev);
        assert!(matches!(&ev[1], VendorEvent::Done { job: (2, _), outcome: Outcome::Refused(_) }));
        assert!(matches!(&ev[2], VendorEvent::Close), "closed once nothing is in flight: {ev:?}");
    }

    #[test]
    fn a_lost_bind_closes_whichever_way_its_last_request_leaves() {
        // Goal: once the vendor said ESME_RINVBNDSTS, the bind closes when nothing is in flight
        // any more, also when the last request timed out or its answer did not decode: it stayed
        // up, taking no submit and holding those queued at it, for as long as the vendor
        // answered enquire_link.
        let m = msg();
        let not_bound = |seq: u32| {
            Pdu::with_status(seq, CommandStatus::ESME_RINVBNDSTS, Body::SubmitSmResp(Default::default()))
        };
        // Two submits out, the first answered "not bound": lost, one still in flight.
        let lost_with_one_left = || {
            let (mut s, now, mut out) = bound();
            s.submit((1, m.clone()), now, &mut out, |j| &j.1).unwrap();
            s.submit((2, m.clone()), now, &mut out, |j| &j.1).unwrap();
            let sent = pdus(&mut out);
            let mut ev = Vec::new();
            s.on_pdu(not_bound(sent[0].sequence_number), now, &mut out, &mut ev);
            assert!(!ev.iter().any(|e| matches!(e, VendorEvent::Close)), "one still in flight");
            (s, now, out, sent[1].sequence_number, ev)
        };
        // The last one times out.
        let (mut s, now, mut out, _, mut ev) = lost_with_one_left();
        s.on_tick(now + Duration::from_secs(60), &mut out, &mut ev);
        assert!(matches!(&ev[1], VendorEvent::Done { job: (2, _), outcome: Outcome::Unknown }));
        assert!(ev.iter().any(|e| matches!(e, VendorEvent::Close)), "closed after the timeout: {ev:?}");
        // The last answer does not decode.
        let (mut s, now, mut out, second, mut ev) = lost_with_one_left();
        let err = with_junk_body(0x8000_0004, 0, second);
        s.on_decode_error(&err, now, &mut out, &mut ev);
        assert!(ev.iter().any(|e| matches!(e, VendorEvent::Close)), "closed after the last answer: {ev:?}");
        // A not-bound answer that does not decode makes the bind lost too.
        let (mut s, now, mut out) = bound();
        s.submit((1, m.clone()), now, &mut out, |j| &j.1).unwrap();
        let sent = pdus(&mut out);
        let mut ev = Vec::new();
        let err = with_junk_body(0x8000_0004, CommandStatus::ESME_RINVBNDSTS.0, sent[0].sequence_number);
        s.on_decode_error(&err, now, &mut out, &mut ev);
        assert!(ev.iter().any(|e| matches!(e, VendorEvent::Close)), "lost and closed: {ev:?}");
    }

    #[test]
    fn a_vendor_that_answers_a_keepalive_with_not_bound_has_its_bind_made_again() {
        // Goal: a receiver bind sends no submits: an SMSC that lost our session but keeps the
        // connection tells it only in its enquire_link_resp (or a generic_nack to it). The bind
        // closes, to be made again, instead of staying "bound" with no receipts coming for ever.
        for answer in [Body::EnquireLinkResp, Body::GenericNack] {
            let (mut s, now, mut out) = bound();
            let _ = pdus(&mut out);
            let mut ev = Vec::new();
            s.on_tick(now + Duration::from_secs(31), &mut out, &mut ev);
            let enquire = pdus(&mut out).into_iter().find(|p| p.command_id() == CommandId::ENQUIRE_LINK);
            let seq = enquire.expect("an enquire_link after the interval").sequence_number;
            s.on_pdu(Pdu::with_status(seq, CommandStatus::ESME_RINVBNDSTS, answer), now, &mut out, &mut ev);
            assert!(ev.iter().any(|e| matches!(e, VendorEvent::Close)), "closed: {ev:?}");
            assert!(!s.is_bound());
        }
        // An ordinary answer keeps it.
        let (mut s, now, mut out) = bound();
        let _ = pdus(&mut out);
        let mut ev = Vec::new();
        s.on_tick(now + Duration::from_secs(31), &mut out, &mut ev);
        let seq = pdus(&mut out)[0].sequence_number;
        s.on_pdu(Pdu::new(seq, Body::EnquireLinkResp), now, &mut out, &mut ev);
        assert!(s.is_bound());
    }

    #[test]
    fn a_generic_nack_to_a_submit_is_a_system_error_passed_to_another_vendor() {
        // Goal: the vendor could not take our PDU (generic_nack ESME_RINVCMDLEN): that is not
        // the customer's to fix, so it is ESME_RSYSERR (temporary: the next vendor of the route
        // is tried), never the framing status a client would take as its own malformed PDU.
        let (mut s, now, mut out) = bound();
        s.submit((1, msg()), now, &mut out, |j| &j.1).unwrap();
        let seq = pdus(&mut out)[0].sequence_number;
        let mut ev = Vec::new();
        s.on_pdu(
            Pdu::with_status(seq, CommandStatus::ESME_RINVCMDLEN, Body::GenericNack),
            now,
            &mut out,
            &mut ev,
        );
        assert!(matches!(
            &ev[..],
            [VendorEvent::Done { job: (1, _), outcome: Outcome::Refused(CommandStatus::ESME_RSYSERR) }]
        ));
        assert!(CommandStatus::ESME_RSYSERR.is_temporary(), "passed over to the next vendor");
    }

    #[test]
    fn a_malformed_generic_nack_never_counts_as_an_acceptance() {
        // Goal: a generic_nack with a body where none belongs (status 0) for a submit in flight
        // refuses that submit (ESME_RSYSERR: passed to the next vendor); it used to be read as an
        // undecodable submit_sm_resp with status 0, an acceptance without an id. With a framing
        // status (ESME_RINVCMDLEN, about our PDU, not the customer's) it is still a system error:
        // the customer never sees the vendor's framing status, and the next vendor is tried.
        for status in [0, 0x02] {
            let (mut s, now, mut out) = bound();
            s.submit((1, msg()), now, &mut out, |j| &j.1).unwrap();
            let sent = pdus(&mut out);
            let err = with_junk_body(0x8000_0000, status, sent[0].sequence_number);
            let mut ev = Vec::new();
            s.on_decode_error(&err, now, &mut out, &mut ev);
            assert!(
                matches!(
                    &ev[..],
                    [VendorEvent::Done {
                        job: (1, _),
                        outcome: Outcome::Refused(CommandStatus::ESME_RSYSERR)
                    }]
                ),
                "status {status:#x}: {ev:?}"
            );
        }
    }

    #[test]
    fn a_response_of_another_command_does_not_end_a_request() {
        // Goal: a vendor that answers our submit_sm's sequence number with a cancel_sm_resp or a
        // query_sm_resp (status 0) has said nothing about the message: it was taken as accepted
        // without an id, and the customer told ESME_ROK for a message the vendor may never have
        // taken (and a cancel answered by a submit_sm_resp as done). Only the request's own
        // answer, or a generic_nack, ends it; other responses, well-formed or not, leave it in
        // flight (timed out as unknown if no answer of its own comes).
        let (mut s, now, mut out) = bound();
        s.submit((1, msg()), now, &mut out, |j| &j.1).unwrap();
        s.request((2, msg()), now, &mut out, Body::CancelSm(Default::default())).unwrap();
        let sent = pdus(&mut out);
        let (submit, cancel) = (sent[0].sequence_number, sent[1].sequence_number);
        assert_eq!(sent[1].command_id(), CommandId::CANCEL_SM);
        let mut ev = Vec::new();
        for body in [Body::CancelSmResp, Body::QuerySmResp(Default::default()), Body::ReplaceSmResp] {
            s.on_pdu(Pdu::new(submit, body), now, &mut out, &mut ev);
        }
        let id = MessageIdResp { message_id: "X".into(), tlvs: Default::default() };
        s.on_pdu(Pdu::new(cancel, Body::SubmitSmResp(id)), now, &mut out, &mut ev);
        s.on_decode_error(&with_junk_body(0x8000_0004, 0, cancel), now, &mut out, &mut ev);
        s.on_decode_error(&with_junk_body(0x8000_0008, 0, submit), now, &mut out, &mut ev);
        assert!(ev.is_empty(), "nothing ended: {ev:?}");
        assert_eq!(s.inflight(), 2);
        // Their own answers end them.
        let id = MessageIdResp { message_id: "V1".into(), tlvs: Default::default() };
        s.on_pdu(Pdu::new(submit, Body::SubmitSmResp(id)), now, &mut out, &mut ev);
        s.on_pdu(Pdu::new(cancel, Body::CancelSmResp), now, &mut out, &mut ev);
        assert!(
            matches!(
                &ev[..],
                [
                    VendorEvent::Done { job: (1, _), outcome: Outcome::Accepted(id) },
                    VendorEvent::Done { job: (2, _), outcome: Outcome::Accepted(empty) },
                ] if id == "V1" && empty.is_empty()
            ),
            "{ev:?}"
        );
        // A generic_nack answers any request.
        s.request((3, msg()), now, &mut out, Body::CancelSm(Default::default())).unwrap();
        let seq = pdus(&mut out)[0].sequence_number;
        ev.clear();
        s.on_pdu(Pdu::new(seq, Body::GenericNack), now, &mut out, &mut ev);
        assert!(
            matches!(&ev[..], [VendorEvent::Done { job: (3, _), outcome: Outcome::Refused(_) }]),
            "{ev:?}"
        );
    }

    /// A PDU with four octets of junk after its header, which no header-only PDU may have.
    fn with_junk_body(command_id: u32, status: u32, seq: u32) -> DecodeError {
        let mut raw = BytesMut::new();
        raw.extend_from_slice(&20u32.to_be_bytes());
        raw.extend_from_slice(&command_id.to_be_bytes());
        raw.extend_from_slice(&status.to_be_bytes());
        raw.extend_from_slice(&seq.to_be_bytes());
        raw.extend_from_slice(b"junk");
        Decoder::default().decode(&mut raw).expect_err("malformed")
    }

    #[test]
    fn a_malformed_enquire_link_resp_or_bind_resp_is_still_an_answer() {
        // Goal: an SMSC whose enquire_link_resp carries a body (or whose bind response the codec
        // cannot read) is still answering: the bind is not closed as silent at every keepalive,
        // and a bind it answered OK is bound (it used to reconnect for ever).
        let (mut s, now, mut out) = bound();
        let mut ev = Vec::new();
        let later = now + Duration::from_secs(31);
        s.on_tick(later, &mut out, &mut ev);
        let enquire = pdus(&mut out);
        assert_eq!(enquire[0].command_id(), CommandId::ENQUIRE_LINK);
        let err = with_junk_body(0x8000_0015, 0, enquire[0].sequence_number);
        s.on_decode_error(&err, later, &mut out, &mut ev);
        s.on_tick(later + Duration::from_secs(6), &mut out, &mut ev);
        assert!(ev.iter().all(|e| !matches!(e, VendorEvent::Close)), "{ev:?}");
        assert!(pdus(&mut out).is_empty(), "no generic_nack for a response");

        let mut s = VendorSession::<(u32, SubmitSm)>::new(settings(), now, &mut out);
        let bind = pdus(&mut out);
        let err = with_junk_body(0x8000_0009, 0, bind[0].sequence_number);
        let mut ev = Vec::new();
        s.on_decode_error(&err, now, &mut out, &mut ev);
        assert!(matches!(&ev[..], [VendorEvent::Bound]), "{ev:?}");
        let mut s = VendorSession::<(u32, SubmitSm)>::new(settings(), now, &mut out);
        let bind = pdus(&mut out);
        let err = with_junk_body(0x8000_0009, 0x0d, bind[0].sequence_number);
        let mut ev = Vec::new();
        s.on_decode_error(&err, now, &mut out, &mut ev);
        assert!(
            matches!(&ev[..], [VendorEvent::BindFailed(CommandStatus::ESME_RBINDFAIL), VendorEvent::Close]),
            "{ev:?}"
        );
    }

    #[test]
    fn a_vendors_alert_notification_gets_no_answer() {
        // Goal: alert_notification is a valid SMSC -> ESME PDU without a response (SMPP 3.4
        // 4.12): it was answered with generic_nack ESME_RINVCMDID, which strict SMSCs log or
        // unbind for.
        let (mut s, now, mut out) = bound();
        let mut ev = Vec::new();
        let alert = smppgw_codec::AlertNotification {
            source: Address::new(1, 1, "15551234567"),
            esme: Address::new(1, 1, "gw"),
            ..Default::default()
        };
        s.on_pdu(Pdu::new(77, Body::AlertNotification(alert)), now, &mut out, &mut ev);
        assert!(pdus(&mut out).is_empty(), "nothing sent");
        assert!(ev.is_empty());
    }

    #[test]
    fn timeouts_and_disconnects_give_unknown_outcomes_once() {
        let m = msg();
        let (mut s, now, mut out) = bound();
        s.submit((1, m.clone()), now, &mut out, |j| &j.1).unwrap();
        s.submit((2, m.clone()), now + Duration::from_secs(1), &mut out, |j| &j.1).unwrap();
        let mut ev = Vec::new();
        s.on_tick(now + Duration::from_secs(5), &mut out, &mut ev);
        assert!(matches!(&ev[..], [VendorEvent::Done { job: (1, _), outcome: Outcome::Unknown }]));
        s.close(&mut ev);
        assert!(matches!(&ev[1], VendorEvent::Done { job: (2, _), outcome: Outcome::Unknown }));
        assert!(matches!(&ev[2], VendorEvent::Close));
        s.close(&mut ev);
        assert_eq!(ev.len(), 3, "nothing twice");
    }

    #[test]
    fn answered_submits_do_not_pile_up_deadlines() {
        let m = msg();
        let (mut s, now, mut out) = bound();
        // One submit never answered holds the front; a long stream of answered ones follows.
        s.submit((0, m.clone()), now, &mut out, |j| &j.1).unwrap();
        let stuck = pdus(&mut out)[0].sequence_number;
        let mut ev = Vec::new();
        for i in 1..10_000u32 {
            s.submit((i, m.clone()), now, &mut out, |j| &j.1).unwrap();
            let seq = pdus(&mut out)[0].sequence_number;
            let resp = Pdu::new(
                seq,
                Body::SubmitSmResp(MessageIdResp { message_id: "V".into(), tlvs: Default::default() }),
            );
            s.on_pdu(resp, now, &mut out, &mut ev);
            // The window is 2: the queue never holds more than the slack allows for it.
            assert!(
                s.deadlines.len() <= crate::deadlines::DEADLINES_SLACK * (2 + 16) + 1,
                "{} at {i}",
                s.deadlines.len()
            );
        }
        assert_eq!(ev.len(), 9_999);
        // The stuck one still times out, exactly once.
        ev.clear();
        s.on_tick(now + Duration::from_secs(5), &mut out, &mut ev);
        assert!(matches!(&ev[..], [VendorEvent::Done { job: (0, _), outcome: Outcome::Unknown }]));
        assert!(!s.inflight.contains_key(&stuck));
    }

    #[test]
    fn bind_refusal_and_receipts() {
        let now = Instant::now();
        let mut out = BytesMut::new();
        let mut s: VendorSession<(u32, SubmitSm)> = VendorSession::new(settings(), now, &mut out);
        let seq = pdus(&mut out)[0].sequence_number;
        let mut ev = Vec::new();
        s.on_pdu(
            Pdu::with_status(
                seq,
                CommandStatus::ESME_RINVPASWD,
                Body::BindTransceiverResp(Default::default()),
            ),
            now,
            &mut out,
            &mut ev,
        );
        assert!(matches!(ev[0], VendorEvent::BindFailed(CommandStatus::ESME_RINVPASWD)));

        let (mut s, now, mut out) = bound();
        let mut ev = Vec::new();
        s.on_pdu(Pdu::new(77, Body::DeliverSm(msg())), now, &mut out, &mut ev);
        let r = pdus(&mut out);
        assert_eq!((r[0].command_id(), r[0].sequence_number), (CommandId::DELIVER_SM_RESP, 77));
        assert!(matches!(ev[0], VendorEvent::Deliver(_)));
    }

    #[test]
    fn a_vendor_that_nacks_enquire_link_stays_bound_and_a_stray_unbind_resp_is_ignored() {
        let (mut s, now, mut out) = bound();
        let mut ev = Vec::new();
        let t = now + Duration::from_secs(30);
        s.on_tick(t, &mut out, &mut ev);
        let enquire = pdus(&mut out);
        assert_eq!(enquire[0].command_id(), CommandId::ENQUIRE_LINK);
        // The SMSC does not know enquire_link: generic_nack ESME_RINVCMDID, with its sequence.
        let nack =
            Pdu::with_status(enquire[0].sequence_number, CommandStatus::ESME_RINVCMDID, Body::GenericNack);
        s.on_pdu(nack, t, &mut out, &mut ev);
        s.on_pdu(Pdu::new(999, Body::UnbindResp), t, &mut out, &mut ev);
        s.on_tick(t + Duration::from_secs(6), &mut out, &mut ev);
        assert!(s.is_bound(), "still bound past the response timeout: {ev:?}");
        assert!(ev.is_empty(), "{ev:?}");
    }

    #[test]
    fn the_vendors_unbind_is_answered_and_ends_the_bind() {
        let (mut s, now, mut out) = bound();
        let mut ev = Vec::new();
        s.on_pdu(Pdu::new(7, Body::Unbind), now, &mut out, &mut ev);
        let r = pdus(&mut out);
        assert_eq!((r[0].command_id(), r[0].sequence_number), (CommandId::UNBIND_RESP, 7));
        assert!(matches!(ev.last(), Some(VendorEvent::Close)));
        assert!(s.is_closed());
    }

    #[test]
    fn the_vendors_unbind_waits_for_the_answers_to_the_submits_in_flight() {
        // Goal: a vendor that unbinds while our submits are in flight still answers them before
        // it closes, if we let it: nothing more is sent, each answer is taken, and our
        // unbind_resp goes once the last one came. Closing at once made every such submit of
        // unknown outcome (the customer told to try again, the vendor perhaps sending it).
        let (mut s, now, mut out) = bound();
        s.submit((1, msg()), now, &mut out, |j| &j.1).unwrap();
        s.submit((2, msg()), now, &mut out, |j| &j.1).unwrap();
        let sent = pdus(&mut out);
        let mut ev = Vec::new();
        s.on_pdu(Pdu::new(7, Body::Unbind), now, &mut out, &mut ev);
        assert!(pdus(&mut out).is_empty(), "not answered yet");
        assert!(ev.is_empty(), "{ev:?}");
        assert!(!s.has_room() && s.is_lost(), "nothing more is sent on it");
        assert!(s.submit((3, msg()), now, &mut out, |j| &j.1).is_err());
        let accepted = |seq: u32| {
            let r = MessageIdResp { message_id: format!("V{seq}").into(), ..Default::default() };
            Pdu::new(seq, Body::SubmitSmResp(r))
        };
        s.on_pdu(accepted(sent[0].sequence_number), now, &mut out, &mut ev);
        assert!(matches!(&ev[..], [VendorEvent::Done { job: (1, _), outcome: Outcome::Accepted(_) }]));
        assert!(pdus(&mut out).is_empty(), "one still in flight");
        ev.clear();
        s.on_pdu(accepted(sent[1].sequence_number), now, &mut out, &mut ev);
        assert!(matches!(&ev[0], VendorEvent::Done { job: (2, _), outcome: Outcome::Accepted(_) }));
        assert!(matches!(ev.last(), Some(VendorEvent::Close)));
        let r = pdus(&mut out);
        assert_eq!((r[0].command_id(), r[0].sequence_number), (CommandId::UNBIND_RESP, 7));
        assert!(s.is_closed());
    }

    #[test]
    fn a_bind_waiting_to_answer_the_vendors_unbind_sends_no_keepalive_and_answers_a_repeat() {
        let quick = VendorSettings { enquire_link_interval: Duration::from_secs(1), ..settings() };
        let (mut s, now, mut out) = bound_with(quick.clone());
        s.submit((1, msg()), now, &mut out, |j| &j.1).unwrap();
        let _ = pdus(&mut out);
        let mut ev = Vec::new();
        s.on_pdu(Pdu::new(7, Body::Unbind), now, &mut out, &mut ev);
        s.on_pdu(Pdu::new(8, Body::Unbind), now, &mut out, &mut ev);
        let r = pdus(&mut out);
        assert_eq!(
            r.iter().map(|p| (p.command_id(), p.sequence_number)).collect::<Vec<_>>(),
            vec![(CommandId::UNBIND_RESP, 7)]
        );
        // Past the keepalive interval, within the submit's response timeout.
        let later = now + quick.enquire_link_interval + Duration::from_millis(1);
        assert!(later < now + quick.response_timeout, "the test's settings allow it");
        s.on_tick(later, &mut out, &mut ev);
        assert!(pdus(&mut out).is_empty(), "no enquire_link on a bind that is ending");
    }

    #[test]
    fn the_vendors_unbind_is_answered_when_the_submits_in_flight_time_out() {
        let (mut s, now, mut out) = bound();
        s.submit((1, msg()), now, &mut out, |j| &j.1).unwrap();
        let _ = pdus(&mut out);
        let mut ev = Vec::new();
        s.on_pdu(Pdu::new(7, Body::Unbind), now, &mut out, &mut ev);
        let later = now + settings().response_timeout + Duration::from_millis(1);
        assert!(s.next_deadline() <= later);
        s.on_tick(later, &mut out, &mut ev);
        assert!(matches!(&ev[0], VendorEvent::Done { job: (1, _), outcome: Outcome::Unknown }));
        assert!(matches!(ev.last(), Some(VendorEvent::Close)));
        let r = pdus(&mut out);
        assert_eq!((r[0].command_id(), r[0].sequence_number), (CommandId::UNBIND_RESP, 7));
    }
}

#[cfg(test)]
mod fuzz_tests {
    use super::*;
    use proptest::prelude::*;
    use smppgw_codec::{Address, Decoder, MessageIdResp};

    /// Random bytes, or a PDU a vendor might send (answers to any sequence number, receipts,
    /// keepalives, unbinds, nacks), possibly cut short or with a lying header.
    fn chunk() -> impl Strategy<Value = Vec<u8>> {
        let resp = |seq: u32, st: u32| {
            Pdu::with_status(
                seq,
                CommandStatus(st),
                Body::SubmitSmResp(MessageIdResp { message_id: "V1".into(), tlvs: Default::default() }),
            )
        };
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..48),
            (0..8u32, prop_oneof![Just(0u32), Just(0x58u32), Just(0x14u32), any::<u32>()])
                .prop_map(move |(q, st)| resp(q, st).to_bytes().to_vec()),
            any::<u32>().prop_map(|q| {
                let d = SubmitSm { esm_class: 0x04, source: Address::new(1, 1, "1"), ..Default::default() };
                Pdu::new(q, Body::DeliverSm(d)).to_bytes().to_vec()
            }),
            any::<u32>().prop_map(|q| Pdu::new(q, Body::EnquireLink).to_bytes().to_vec()),
            (0..8u32).prop_map(|q| Pdu::new(q, Body::EnquireLinkResp).to_bytes().to_vec()),
            (0..8u32)
                .prop_map(|q| Pdu::with_status(q, CommandStatus(3), Body::GenericNack).to_bytes().to_vec()),
            (0..8u32).prop_map(|q| Pdu::new(q, Body::UnbindResp).to_bytes().to_vec()),
            any::<u32>().prop_map(|q| Pdu::new(q, Body::Unbind).to_bytes().to_vec()),
            (0..8u32)
                .prop_map(|q| Pdu::new(q, Body::BindTransceiverResp(Default::default())).to_bytes().to_vec()),
            crate::test_util::lying_header(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Whatever a vendor sends, the bind never panics, writes only PDUs that decode, and
        /// hands every submit back exactly once (answered, refused or unknown) by the time the
        /// connection is gone.
        #[test]
        fn arbitrary_vendor_input_never_breaks_the_bind(chunks in proptest::collection::vec(chunk(), 0..24), submits in 0..6u32) {
            let now = Instant::now();
            let settings = VendorSettings {
                system_id: "gw".into(),
                password: "pw".into(),
                system_type: Bytes::new(),
                kind: VendorBindKind::Transceiver,
                window: 4,
                response_timeout: Duration::from_secs(5),
                enquire_link_interval: Duration::from_secs(30),
            };
            let mut out = BytesMut::new();
            let mut s: VendorSession<(u32, SubmitSm)> = VendorSession::new(settings, now, &mut out);
            let mut ev = Vec::new();
            let bind_seq = Decoder::default().decode(&mut out.clone()).ok().flatten().map_or(1, |p| p.sequence_number);
            s.on_pdu(Pdu::new(bind_seq, Body::BindTransceiverResp(Default::default())), now, &mut out, &mut ev);
            let body = SubmitSm { source: Address::new(1, 1, "1"), dest: Address::new(1, 1, "2"), ..Default::default() };
            let mut sent = 0;
            for j in 0..submits {
                if s.submit((j, body.clone()), now, &mut out, |j| &j.1).is_ok() {
                    sent += 1;
                }
            }
            crate::test_util::feed_chunks(chunks, |item| match item {
                Ok(p) => s.on_pdu(p, now, &mut out, &mut ev),
                Err(e) => s.on_decode_error(&e, now, &mut out, &mut ev),
            });
            s.on_tick(now + Duration::from_secs(60), &mut out, &mut ev);
            s.close(&mut ev);
            let mut done = std::collections::HashSet::new();
            for e in &ev {
                if let VendorEvent::Done { job, .. } = e {
                    prop_assert!(done.insert(job.0), "job {} handed back twice", job.0);
                }
            }
            prop_assert_eq!(done.len(), sent, "every submit handed back once");
            loop {
                match Decoder::default().decode(&mut out) {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => prop_assert!(false, "wrote a PDU that does not decode: {}", e),
                }
            }
            prop_assert!(out.is_empty(), "only whole PDUs written");
        }
    }
}

#[cfg(test)]
mod adversarial_tests {
    //! A vendor that answers in any order: responses to requests never sent, to the wrong
    //! request, twice, with empty or long ids, bind responses twice, unbinds mid-window,
    //! receipts before the bind is answered, keepalive storms, malformed PDUs; interleaved with
    //! our submits, operations, timing changes and the passing of time. The bind's promises:
    //! every job handed in comes back exactly once, only an answer to that job's own request
    //! says how it ended, every request of the vendor's is answered at most once (exactly once
    //! while the bind lives), the bind closes at most once, and it writes only PDUs that decode.
    use super::*;
    use proptest::prelude::*;
    use smppgw_codec::{Address, CommandId, DataSm, Decoder};

    #[derive(Debug, Clone)]
    enum Step {
        /// The vendor sends a response of `kind` to the `pick`th request we sent (or a random
        /// sequence number), with this status.
        Resp {
            kind: u8,
            pick: u16,
            random: Option<u32>,
            status: u32,
            malformed: bool,
        },
        /// The vendor sends a request of `kind`.
        Req {
            kind: u8,
            malformed: bool,
        },
        /// We send a submit (or another request) for a new job.
        Submit,
        Op,
        Tick(u32),
        Unbind,
        Timing(u8),
    }

    fn step() -> impl Strategy<Value = Step> {
        let status =
            prop_oneof![Just(0u32), Just(0x58u32), Just(0x04u32), Just(0x45u32), Just(0x03u32), any::<u32>()];
        prop_oneof![
            8 => (any::<u8>(), any::<u16>(), proptest::option::weighted(0.2, prop_oneof![Just(0u32), Just(0x7FFF_FFFF), Just(u32::MAX), 1..20u32]), status, proptest::bool::weighted(0.1))
                .prop_map(|(kind, pick, random, status, malformed)| Step::Resp { kind, pick, random, status, malformed }),
            4 => (any::<u8>(), proptest::bool::weighted(0.1)).prop_map(|(kind, malformed)| Step::Req { kind, malformed }),
            5 => Just(Step::Submit),
            1 => Just(Step::Op),
            2 => prop_oneof![0..100u32, 1000..40_000u32].prop_map(Step::Tick),
            1 => Just(Step::Unbind),
            1 => any::<u8>().prop_map(Step::Timing),
        ]
    }

    fn resp_body(kind: u8, id: &[u8]) -> Body {
        let m = MessageIdResp { message_id: Bytes::copy_from_slice(id), tlvs: Default::default() };
        match kind % 12 {
            0..=3 => Body::SubmitSmResp(m),
            4 => Body::BindTransceiverResp(Default::default()),
            5 => Body::BindTransmitterResp(Default::default()),
            6 => Body::GenericNack,
            7 => Body::EnquireLinkResp,
            8 => Body::UnbindResp,
            9 => Body::CancelSmResp,
            10 => Body::DeliverSmResp(Default::default()),
            _ => Body::QuerySmResp(Default::default()),
        }
    }

    fn req_body(kind: u8) -> Body {
        let receipt = SubmitSm {
            source: Address::new(1, 1, "1666"),
            dest: Address::new(1, 1, "1555"),
            esm_class: 0x04,
            short_message: Bytes::from_static(b"id:\xff\xfe stat:DELIVRD \x00 err:000"),
            ..Default::default()
        };
        match kind % 9 {
            0 | 1 => Body::DeliverSm(receipt),
            2 => Body::DataSm(DataSm { source: Address::new(1, 1, "1"), ..Default::default() }),
            3 | 4 => Body::EnquireLink,
            5 => Body::Unbind,
            6 => Body::SubmitSm(receipt),
            7 => Body::AlertNotification(Default::default()),
            _ => Body::BindTransceiver(Default::default()),
        }
    }

    fn wire(p: Pdu, malformed: bool) -> BytesMut {
        if malformed {
            BytesMut::from(&crate::test_util::malformed_octets(&p, false)[..])
        } else {
            BytesMut::from(&p.to_bytes()[..])
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        #[test]
        fn any_order_of_vendor_pdus_keeps_the_bind_s_promises(
            steps in proptest::collection::vec(step(), 0..80),
            window in 1..5u32,
            bind_answered in any::<bool>(),
        ) {
            let mut now = Instant::now();
            let settings = VendorSettings {
                system_id: "gw".into(),
                password: "pw".into(),
                system_type: Bytes::new(),
                kind: VendorBindKind::Transceiver,
                window,
                response_timeout: Duration::from_secs(5),
                enquire_link_interval: Duration::from_secs(30),
            };
            let mut out = BytesMut::new();
            let mut s: VendorSession<(u32, SubmitSm)> = VendorSession::new(settings, now, &mut out);
            let mut ev: Vec<VendorEvent<(u32, SubmitSm)>> = Vec::new();
            // Our requests written, in order: (seq, command, job).
            let mut sent: Vec<(u32, CommandId, Option<u32>)> = Vec::new();
            // Jobs in flight by sequence number (what the machine should hold).
            let mut job_seq: std::collections::HashMap<u32, (u32, CommandId)> = Default::default();
            // The vendor's requests fed while the bind was open, and our answers to them.
            let mut asked: Vec<u32> = Vec::new();
            let mut answered: std::collections::HashMap<u32, u32> = Default::default();
            let mut vendor_seq = 1000u32;
            let mut next_job = 0u32;
            let mut handed = 0u32;
            let mut done: std::collections::HashMap<u32, u32> = Default::default();
            let mut closes = 0u32;
            let body = SubmitSm { source: Address::new(1, 1, "1"), dest: Address::new(1, 1, "2"), ..Default::default() };
            let mut pending_job: Option<(u32, CommandId)> = None;
            let drain = |out: &mut BytesMut,
                             ev: &mut Vec<VendorEvent<(u32, SubmitSm)>>,
                             pending_job: &mut Option<(u32, CommandId)>,
                             sent: &mut Vec<(u32, CommandId, Option<u32>)>,
                             job_seq: &mut std::collections::HashMap<u32, (u32, CommandId)>,
                             answered: &mut std::collections::HashMap<u32, u32>,
                             done: &mut std::collections::HashMap<u32, u32>,
                             closes: &mut u32|
             -> Result<(), TestCaseError> {
                loop {
                    match Decoder::default().decode(out) {
                        Ok(Some(p)) => {
                            if p.command_id().is_response() {
                                *answered.entry(p.sequence_number).or_default() += 1;
                            } else {
                                let job = match p.command_id() {
                                    CommandId::SUBMIT_SM | CommandId::CANCEL_SM => pending_job.take(),
                                    _ => None,
                                };
                                if let Some((j, id)) = job {
                                    prop_assert_eq!(id, p.command_id());
                                    prop_assert!(job_seq.insert(p.sequence_number, (j, id)).is_none(), "seq {} reused while in flight", p.sequence_number);
                                }
                                sent.push((p.sequence_number, p.command_id(), job.map(|j| j.0)));
                            }
                        }
                        Ok(None) => break,
                        Err(e) => prop_assert!(false, "wrote a PDU that does not decode: {}", e),
                    }
                }
                for e in ev.drain(..) {
                    match e {
                        VendorEvent::Done { job, outcome } => {
                            *done.entry(job.0).or_default() += 1;
                            let at = job_seq.iter().find(|(_, (j, _))| *j == job.0).map(|(q, v)| (*q, *v));
                            if let Some((q, _)) = at {
                                job_seq.remove(&q);
                            }
                            let _ = outcome;
                        }
                        VendorEvent::Close => *closes += 1,
                        _ => {}
                    }
                }
                Ok(())
            };
            if bind_answered {
                let bind_seq = Decoder::default().decode(&mut out.clone()).ok().flatten().map_or(1, |p| p.sequence_number);
                s.on_pdu(Pdu::new(bind_seq, Body::BindTransceiverResp(Default::default())), now, &mut out, &mut ev);
            }
            drain(&mut out, &mut ev, &mut pending_job, &mut sent, &mut job_seq, &mut answered, &mut done, &mut closes)?;
            for st in steps {
                match st {
                    Step::Resp { kind, pick, random, status, malformed } => {
                        let seq = match (random, sent.is_empty()) {
                            (Some(q), _) => q,
                            (None, true) => 1,
                            (None, false) => sent[sent.len() - 1 - usize::from(pick) % sent.len().min(6)].0,
                        };
                        let id: &[u8] = match pick % 4 {
                            0 => b"",
                            1 => &[b'x'; 64],
                            2 => b"\xff\xfe\x00",
                            _ => b"V1",
                        };
                        let resp = resp_body(kind, id).command_id();
                        let mut b = wire(Pdu::with_status(seq, CommandStatus(status), resp_body(kind, id)), malformed);
                        match Decoder::default().decode(&mut b) {
                            Ok(Some(p)) => s.on_pdu(p, now, &mut out, &mut ev),
                            Err(e) => s.on_decode_error(&e, now, &mut out, &mut ev),
                            Ok(None) => {}
                        }
                        // An outcome other than unknown comes from an answer to the job's own
                        // request (or a generic_nack, which answers any).
                        for e in &ev {
                            if let VendorEvent::Done { job, outcome } = e
                                && *outcome != Outcome::Unknown
                                && let Some((_, (_, req))) = job_seq.iter().find(|(_, (j, _))| *j == job.0)
                            {
                                let fits = resp == CommandId::GENERIC_NACK || resp.0 == req.0 | 0x8000_0000;
                                prop_assert!(fits, "{} answered by a {} ({:?})", req, resp, outcome);
                            }
                        }
                    }
                    Step::Req { kind, malformed } => {
                        vendor_seq += 1;
                        let body = req_body(kind);
                        let alert = matches!(body, Body::AlertNotification(_));
                        if !s.is_closed() && !alert {
                            asked.push(vendor_seq);
                        }
                        let mut b = wire(Pdu::new(vendor_seq, body), malformed);
                        match Decoder::default().decode(&mut b) {
                            Ok(Some(p)) => s.on_pdu(p, now, &mut out, &mut ev),
                            Err(e) => s.on_decode_error(&e, now, &mut out, &mut ev),
                            Ok(None) => {}
                        }
                    }
                    Step::Submit => {
                        next_job += 1;
                        pending_job = Some((next_job, CommandId::SUBMIT_SM));
                        if s.submit((next_job, body.clone()), now, &mut out, |j| &j.1).is_ok() {
                            handed += 1;
                        } else {
                            pending_job = None;
                        }
                    }
                    Step::Op => {
                        next_job += 1;
                        pending_job = Some((next_job, CommandId::CANCEL_SM));
                        let r = s.request((next_job, body.clone()), now, &mut out, Body::CancelSm(Default::default()));
                        if r.is_ok() {
                            handed += 1;
                        } else {
                            pending_job = None;
                        }
                    }
                    Step::Tick(ms) => {
                        now += Duration::from_millis(u64::from(ms));
                        s.on_tick(now, &mut out, &mut ev);
                    }
                    Step::Unbind => {
                        if s.inflight() == 0 {
                            s.unbind(now, &mut out);
                        }
                    }
                    Step::Timing(t) => {
                        s.set_timing(Duration::from_millis(500 + 100 * u64::from(t)), Duration::from_secs(u64::from(t % 40) + 1));
                    }
                }
                drain(&mut out, &mut ev, &mut pending_job, &mut sent, &mut job_seq, &mut answered, &mut done, &mut closes)?;
                prop_assert!(closes <= 1, "closed {} times", closes);
                prop_assert_eq!(s.inflight(), job_seq.len(), "the jobs in flight are the ones not handed back");
                if s.is_closed() {
                    prop_assert!(!s.has_room());
                }
            }
            // Time for every timeout, then the connection goes.
            now += Duration::from_secs(600);
            s.on_tick(now, &mut out, &mut ev);
            drain(&mut out, &mut ev, &mut pending_job, &mut sent, &mut job_seq, &mut answered, &mut done, &mut closes)?;
            let open = !s.is_closed();
            for q in &asked {
                let n = answered.get(q).copied().unwrap_or(0);
                if open {
                    prop_assert_eq!(n, 1, "vendor request {} answered {} times", q, n);
                } else {
                    prop_assert!(n <= 1, "vendor request {} answered {} times", q, n);
                }
            }
            s.close(&mut ev);
            drain(&mut out, &mut ev, &mut pending_job, &mut sent, &mut job_seq, &mut answered, &mut done, &mut closes)?;
            prop_assert!(closes <= 1);
            prop_assert_eq!(done.len() as u32, handed, "every job handed back");
            prop_assert!(done.values().all(|&n| n == 1), "a job handed back twice: {:?}", done);
        }
    }
}
