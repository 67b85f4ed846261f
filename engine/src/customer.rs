//! The customer session (we are the SMSC): a sans-IO state machine.
//!
//! The driver feeds it decoded PDUs, decode errors, results from the router and the current time;
//! it writes the PDUs to send into the driver's output buffer and reports [`Event`]s the driver
//! must act on (authenticate a bind, route a submit, close). Nothing here touches a socket or reads
//! a clock, so every status path is unit-tested below.

use std::time::{Duration, Instant};

use bytes::Bytes;
use bytes::BytesMut;
use smppgw_codec::text::Alphabet;
use smppgw_codec::{Bind, BindResp, Body, CommandStatus, DecodeError, Pdu, SubmitSm, Tlvs};

use crate::deadlines::DeadlineQueue;
use crate::deliveries::Answer;
use crate::limits::BIND_FAILURES_MAX;
use crate::msgid::{IdStyle, format_id};

/// The three ways to bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BindKind {
    /// May submit only.
    Transmitter,
    /// May receive only.
    Receiver,
    /// Both.
    Transceiver,
}

impl BindKind {
    /// Whether this bind may submit.
    pub fn can_submit(self) -> bool {
        self != BindKind::Receiver
    }
    /// Whether this bind may receive receipts and MO.
    pub fn can_receive(self) -> bool {
        self != BindKind::Transmitter
    }
}

/// Timing and size settings of a customer session.
#[derive(Debug, Clone)]
pub struct CustomerSettings {
    /// Our system_id in bind responses.
    pub system_id: bytes::Bytes,
    /// Send enquire_link after this much silence.
    pub enquire_link_interval: Duration,
    /// Close after this much silence.
    pub session_timeout: Duration,
    /// A connection must bind within this.
    pub bind_timeout: Duration,
    /// Our requests (enquire_link, unbind) must be answered within this.
    pub response_timeout: Duration,
}

/// What the driver must do after feeding the machine.
#[derive(Debug)]
pub enum Event {
    /// Authenticate and answer with [`CustomerSession::bind_accepted`] or
    /// [`CustomerSession::bind_refused`].
    Bind {
        /// Requested bind type.
        kind: BindKind,
        /// The request.
        bind: Bind,
        /// Its sequence number.
        seq: u32,
    },
    /// Route this validated message and answer with [`CustomerSession::submit_done`].
    Submit {
        /// The customer's sequence number.
        seq: u32,
        /// The message as submitted.
        submit: SubmitSm,
        /// Segments it counts for against the throughput limit.
        segments: u32,
    },
    /// data_sm, routed like submit_sm and answered with data_sm_resp.
    DataSm {
        /// The customer's sequence number.
        seq: u32,
        /// The message in the submit_sm form it goes to vendors in (see `data_sm_as_submit`).
        submit: SubmitSm,
        /// Segments it counts for.
        segments: u32,
    },
    /// A delivery handed to [`CustomerSession::deliver`] finished: answered OK, or failed (error
    /// status, generic_nack, timeout).
    Delivered {
        /// The token it was handed in with.
        token: u64,
        /// How the customer answered it.
        answer: Answer,
    },
    /// Another request this machine does not answer itself (query_sm, cancel_sm, replace_sm,
    /// submit_multi): the driver answers it.
    Request(Pdu),
    /// A submit_sm or data_sm this machine refused before routing (past the window, or an
    /// invalid field) and already answered with `status`: for the driver's counters.
    Rejected {
        /// The status it was answered with.
        status: CommandStatus,
    },
    /// Close the connection (after flushing what was written).
    Close(CloseReason),
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The customer unbound and its outstanding submits were answered.
    Unbound,
    /// Our shutdown finished.
    Shutdown,
    /// No bind within the bind timeout.
    BindTimeout,
    /// Too many failed binds.
    BindFailures,
    /// Silence beyond the session timeout, or an unanswered enquire_link.
    Timeout,
    /// The byte stream could not be framed.
    Framing,
}

#[derive(Debug)]
enum State {
    Open {
        since: Instant,
        failures: u32,
    },
    Binding {
        since: Instant,
        /// Refused binds on this connection so far.
        failures: u32,
    },
    Bound {
        kind: BindKind,
        style: IdStyle,
    },
    /// The customer sent unbind; answered once outstanding submits are.
    Unbinding {
        kind: BindKind,
        style: IdStyle,
        seq: u32,
    },
    /// Our shutdown: new requests are refused, what is outstanding is answered, receipts and MO
    /// still go out (until our unbind); then we send unbind and wait for unbind_resp.
    Closing {
        since: Instant,
        unbind_sent: bool,
        /// The unbind waits for [`CustomerSession::begin_shutdown`] even once nothing is
        /// outstanding: the node still delivers what its vendors send before they are unbound.
        hold: bool,
        kind: BindKind,
        style: IdStyle,
    },
    /// The customer's stream broke its framing with requests still out: nothing more is read,
    /// and the answers of what was read before go out before the connection closes (a
    /// customer without them would send those messages again).
    Broken {
        since: Instant,
        style: IdStyle,
    },
    Closed,
}

/// The longest a session whose stream broke its framing waits for the answers to its requests
/// still out before it closes.
pub const BROKEN_WAIT_MAX: Duration = Duration::from_secs(30);

/// The longest a session being shut down waits for its outstanding requests before it unbinds
/// (each is answered within its vendor's timeouts, far sooner; this only bounds the wait).
pub const CLOSING_WAIT_MAX: Duration = Duration::from_secs(600);

/// One customer connection's protocol state.
#[derive(Debug)]
pub struct CustomerSession {
    settings: CustomerSettings,
    state: State,
    window: u32,
    outstanding: u32,
    /// query_sm, cancel_sm, replace_sm and submit_multi handed to the driver and not answered
    /// yet: an unbind waits for them as for submits.
    ops: u32,
    next_seq: u32,
    last_rx: Instant,
    enquire_sent: Option<Instant>,
    /// The sequence number of the enquire_link in `enquire_sent`.
    enquire_seq: u32,
    deliveries: crate::hash::FxHashMap<u32, (u64, Instant)>,
    delivery_deadlines: DeadlineQueue,
    /// The customer bound with an interface_version below 0x34 (SMPP 3.3 or earlier, 5.2.4):
    /// it is sent no optional parameters and no data_sm, which its version does not have.
    legacy: bool,
    /// Deliveries this session can never send (an MO whose addresses only a data_sm holds, to a
    /// legacy customer), with when they came: reported failed at the next tick, so that the
    /// dispatcher tries another of the customer's sessions (one of 3.4 may take it) and gives up
    /// after its attempts. At most the deliveries the dispatcher lets a session have in flight.
    refused: Vec<(u64, Instant)>,
}

/// Result of routing a submit: our id, or the status to answer with.
pub type SubmitResult = Result<u64, CommandStatus>;

impl CustomerSession {
    /// A new connection at `now`.
    pub fn new(settings: CustomerSettings, now: Instant) -> CustomerSession {
        CustomerSession {
            settings,
            state: State::Open { since: now, failures: 0 },
            window: 1,
            outstanding: 0,
            ops: 0,
            next_seq: 1,
            last_rx: now,
            enquire_sent: None,
            enquire_seq: 0,
            deliveries: crate::hash::FxHashMap::default(),
            delivery_deadlines: DeadlineQueue::default(),
            legacy: false,
            refused: Vec::new(),
        }
    }

    /// Sends a receipt or MO (in deliver_sm form) as deliver_sm, or as data_sm when `as_data_sm`
    /// (never to a legacy customer: a receipt goes as deliver_sm, and an MO whose addresses a
    /// deliver_sm cannot hold is not written, reported as [`Answer::Failed`] at the next tick:
    /// another session of the customer may take it, as one this session's customer refused).
    /// Returns false when this session cannot receive now (not bound as receiver/transceiver, or
    /// shutting down); the caller routes it elsewhere.
    pub fn deliver(
        &mut self,
        token: u64,
        body: &SubmitSm,
        as_data_sm: bool,
        now: Instant,
        out: &mut BytesMut,
    ) -> bool {
        if !self.takes_deliveries() {
            return false;
        }
        // deliver_sm addresses hold 20 characters and their NUL (SMPP 3.4 5.2.8, 5.2.10).
        let deliver_sm_max = smppgw_codec::pdu::max::ADDR - 1;
        if self.legacy && (body.source.addr.len() > deliver_sm_max || body.dest.addr.len() > deliver_sm_max) {
            self.refused.push((token, now));
            return true;
        }
        // Nor can an SMPP 3.3 session take a text only message_payload can carry (TLVs are
        // trailing garbage to a 3.3 parser): given up here, for a 3.4 session of the customer.
        let legacy_body = match self.legacy && !body.tlvs.is_empty() {
            true => match without_tlvs(body) {
                Some(b) => Some(b),
                None => {
                    self.refused.push((token, now));
                    return true;
                }
            },
            false => None,
        };
        let seq = self.next_sequence();
        if as_data_sm && !self.legacy {
            let mut tlvs = body.tlvs.clone();
            if !body.short_message.is_empty() {
                tlvs = tlvs.with(smppgw_codec::tag::MESSAGE_PAYLOAD, &body.short_message);
            }
            let d = smppgw_codec::DataSm {
                service_type: body.service_type.clone(),
                source: body.source.clone(),
                dest: body.dest.clone(),
                esm_class: body.esm_class,
                registered_delivery: body.registered_delivery,
                data_coding: body.data_coding,
                tlvs,
            };
            Pdu::new(seq, Body::DataSm(d)).encode(out);
        } else if let Some(b) = &legacy_body {
            smppgw_codec::encode_short_message(smppgw_codec::CommandId::DELIVER_SM, seq, b, out);
        } else if body.tlvs.iter().any(|t| NOT_IN_DELIVER_SM.contains(&t.tag)) {
            // A vendor's data_sm MO going on as a deliver_sm: what only data_sm allows is left out,
            // as a customer's data_sm going on as a submit_sm is (`data_sm_only`).
            let mut b = body.clone();
            b.tlvs = keep_tlvs(&body.tlvs, |tag| !NOT_IN_DELIVER_SM.contains(&tag));
            smppgw_codec::encode_short_message(smppgw_codec::CommandId::DELIVER_SM, seq, &b, out);
        } else {
            smppgw_codec::encode_short_message(smppgw_codec::CommandId::DELIVER_SM, seq, body, out);
        }
        let deadline = now + self.settings.response_timeout;
        self.deliveries.insert(seq, (token, deadline));
        // Answered deliveries leave stale entries, kept down by the queue (see DeadlineQueue).
        let deliveries = &self.deliveries;
        self.delivery_deadlines
            .push(deadline, seq, deliveries.len(), |d, s| deliveries.get(&s).is_some_and(|(_, x)| *x == d));
        true
    }

    /// Deliveries sent and not yet answered.
    pub fn deliveries_outstanding(&self) -> usize {
        self.deliveries.len()
    }

    fn delivery_answered(&mut self, seq: u32, answer: Answer, events: &mut Vec<Event>) {
        if let Some((token, _)) = self.deliveries.remove(&seq) {
            events.push(Event::Delivered { token, answer });
        }
    }

    /// The bind type, once bound.
    pub fn bound_kind(&self) -> Option<BindKind> {
        match self.state {
            State::Bound { kind, .. } | State::Unbinding { kind, .. } => Some(kind),
            _ => None,
        }
    }

    /// Submits routed and not yet answered.
    pub fn outstanding(&self) -> u32 {
        self.outstanding
    }

    /// The window: requests outstanding at most.
    pub fn window(&self) -> u32 {
        self.window
    }

    /// Counts `n` more requests against the window (a submit_multi's destinations, each routed
    /// as a submit); false, and nothing counted, when they do not fit.
    pub fn take_window(&mut self, n: u32) -> bool {
        if self.outstanding.saturating_add(n) > self.window {
            return false;
        }
        self.outstanding += n;
        true
    }

    /// Gives back `n` taken by [`CustomerSession::take_window`] (answered, or never sent). An
    /// unbind waiting for the window to drain goes on when it has.
    pub fn give_window(&mut self, n: u32, now: Instant, out: &mut BytesMut, events: &mut Vec<Event>) {
        self.outstanding = self.outstanding.saturating_sub(n);
        self.on_answered(now, out, events);
    }

    /// The driver answered a request this machine handed it in [`Event::Request`] (or gave up on
    /// it). An unbind waits for every such answer: one read may carry a request and the unbind
    /// behind it, and the request's answer goes first.
    pub fn op_answered(&mut self, now: Instant, out: &mut BytesMut, events: &mut Vec<Event>) {
        self.ops = self.ops.saturating_sub(1);
        self.on_answered(now, out, events);
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// A fresh sequence number for a request we send (deliver_sm, enquire_link, unbind).
    pub fn next_sequence(&mut self) -> u32 {
        let s = self.next_seq;
        // sequence_number is 1..=0x7FFFFFFF (SMPP 3.4 section 3.2).
        self.next_seq = if s >= 0x7FFF_FFFF { 1 } else { s + 1 };
        s
    }

    /// Feeds one decoded PDU.
    pub fn on_pdu(&mut self, pdu: Pdu, now: Instant, out: &mut BytesMut, events: &mut Vec<Event>) {
        self.last_rx = now;
        let seq = pdu.sequence_number;
        let id = pdu.command_id();
        match (&self.state, pdu.body) {
            // Nothing after broken framing is a PDU of the customer's (the driver reads no more).
            (State::Closed | State::Broken { .. }, _) => {}
            (_, Body::EnquireLink) => Pdu::new(seq, Body::EnquireLinkResp).encode(out),
            (_, Body::EnquireLinkResp) => self.enquire_sent = None,
            // A customer that does not know enquire_link still answered it: it is alive.
            (_, Body::GenericNack) if self.enquire_sent.is_some() && seq == self.enquire_seq => {
                self.enquire_sent = None;
            }
            (_, Body::GenericNack) => self.delivery_answered(seq, Answer::Failed, events),
            (
                &State::Open { since, failures },
                body @ (Body::BindTransmitter(_) | Body::BindReceiver(_) | Body::BindTransceiver(_)),
            ) => {
                let (kind, bind) = match body {
                    Body::BindTransmitter(b) => (BindKind::Transmitter, b),
                    Body::BindReceiver(b) => (BindKind::Receiver, b),
                    Body::BindTransceiver(b) => (BindKind::Transceiver, b),
                    _ => return,
                };
                // The connection's bind timeout and its refusals so far carry on through the
                // attempt.
                self.state = State::Binding { since, failures };
                self.legacy = bind.interface_version < 0x34;
                events.push(Event::Bind { kind, bind, seq });
            }
            (_, Body::BindTransmitter(_) | Body::BindReceiver(_) | Body::BindTransceiver(_)) => {
                // SMPP 3.4 5.1.3: "ESME_RALYBND ... ESME already in bound state".
                Pdu::error_response(&header(id, seq), CommandStatus::ESME_RALYBND).encode(out);
            }
            (State::Bound { kind, style }, Body::Unbind) => {
                let (kind, style) = (*kind, *style);
                self.state = State::Unbinding { kind, style, seq };
                self.on_answered(now, out, events);
            }
            // The customer unbinds while we shut down: as in Bound, its answer waits for
            // everything outstanding (the submits at the vendor still get their responses).
            (&State::Closing { kind, style, .. }, Body::Unbind) => {
                self.state = State::Unbinding { kind, style, seq };
                self.on_answered(now, out, events);
            }
            (State::Closing { unbind_sent: true, .. }, Body::UnbindResp) => {
                self.state = State::Closed;
                events.push(Event::Close(CloseReason::Shutdown));
            }
            // Not ours to take: our unbind has not gone yet.
            (State::Closing { .. }, Body::UnbindResp) => {}
            (State::Bound { kind, .. }, Body::SubmitSm(s)) => {
                let kind = *kind;
                if !kind.can_submit() {
                    return refuse(out, id, seq, CommandStatus::ESME_RINVBNDSTS);
                }
                if self.outstanding >= self.window {
                    // Window overflow: documented as ESME_RTHROTTLED (slow down and retry).
                    return reject(out, events, id, seq, CommandStatus::ESME_RTHROTTLED);
                }
                match validate_submit(&s) {
                    Ok(segments) => {
                        self.outstanding += 1;
                        events.push(Event::Submit { seq, submit: s, segments });
                    }
                    Err(st) => reject(out, events, id, seq, st),
                }
            }
            (State::Bound { kind, .. }, Body::DataSm(d)) => {
                if !kind.can_submit() {
                    return refuse(out, id, seq, CommandStatus::ESME_RINVBNDSTS);
                }
                if self.outstanding >= self.window {
                    return reject(out, events, id, seq, CommandStatus::ESME_RTHROTTLED);
                }
                // data_sm allows 65-octet addresses; it goes on as a submit_sm, whose addresses
                // hold 20 characters (SMPP 3.4 5.2.8, 5.2.10).
                if d.source.addr.len() > smppgw_codec::pdu::max::ADDR - 1 {
                    return reject(out, events, id, seq, CommandStatus::ESME_RINVSRCADR);
                }
                if d.dest.addr.len() > smppgw_codec::pdu::max::ADDR - 1 {
                    return reject(out, events, id, seq, CommandStatus::ESME_RINVDSTADR);
                }
                let submit = data_sm_as_submit(d);
                match validate_submit(&submit) {
                    Ok(segments) => {
                        self.outstanding += 1;
                        events.push(Event::DataSm { seq, submit, segments });
                    }
                    Err(st) => reject(out, events, id, seq, st),
                }
            }
            (_, Body::DeliverSmResp(_) | Body::DataSmResp(_)) => {
                self.delivery_answered(seq, Answer::from_status(pdu.command_status), events);
            }
            (
                State::Bound { kind, .. },
                body @ (Body::QuerySm(_) | Body::CancelSm(_) | Body::ReplaceSm(_) | Body::SubmitMulti(_)),
            ) => {
                // SMPP 3.4 2.3: all four are issued by an ESME bound as transmitter or
                // transceiver, query_sm included.
                if !kind.can_submit() {
                    return refuse(out, id, seq, CommandStatus::ESME_RINVBNDSTS);
                }
                // Counted now, not when the driver gets to it: an unbind decoded from the same
                // read must wait for this answer.
                self.ops += 1;
                events.push(Event::Request(Pdu::with_status(seq, pdu.command_status, body)));
            }
            (_, body) if id.is_response() => {
                // A response to nothing we sent; SMPP says to ignore it rather than answer it.
                let _ = body;
            }
            (
                // Only an SMSC sends these (4.1.7, 4.12): an unknown command from an ESME, in
                // any state.
                State::Open { .. }
                | State::Binding { .. }
                | State::Bound { .. }
                | State::Unbinding { .. }
                | State::Closing { .. },
                Body::Outbind(_) | Body::AlertNotification(_),
            ) => {
                Pdu::with_status(seq, CommandStatus::ESME_RINVCMDID, Body::GenericNack).encode(out);
            }
            (State::Unbinding { .. }, _) => refuse(out, id, seq, CommandStatus::ESME_RINVBNDSTS),
            // The node is shutting down and the session is still bound: a temporary error, which
            // clients retry (on another node once they bind there); ESME_RINVBNDSTS tells many
            // of them the message failed for good.
            (State::Closing { .. }, _) => refuse(out, id, seq, CommandStatus::ESME_RSYSERR),
            (State::Open { .. } | State::Binding { .. }, _) => {
                // SMPP 3.4: any request before a successful bind gets ESME_RINVBNDSTS.
                refuse(out, id, seq, CommandStatus::ESME_RINVBNDSTS);
            }
            (State::Bound { .. }, _) => refuse(out, id, seq, CommandStatus::ESME_RINVCMDID),
        }
    }

    /// Feeds a decode error. A malformed PDU is answered; a framing error closes the session.
    pub fn on_decode_error(
        &mut self,
        err: &DecodeError,
        now: Instant,
        out: &mut BytesMut,
        events: &mut Vec<Event>,
    ) {
        self.last_rx = now;
        match err {
            DecodeError::Pdu { header, error } => {
                if header.command_id == smppgw_codec::CommandId::ENQUIRE_LINK_RESP {
                    // Malformed (a body where none belongs), but an answer: the customer is alive.
                    self.enquire_sent = None;
                    return;
                }
                if header.command_id.is_response() && header.command_id.name().is_some() {
                    // A malformed response: answered with nothing, and taken as on_pdu takes a
                    // well-formed one. An answer to our deliver_sm or data_sm is judged by its
                    // status; a generic_nack (which carries no body) fails the request it names,
                    // whatever its status, or answers our enquire_link; a response of another
                    // command answers nothing we sent.
                    let seq = header.sequence_number;
                    match header.command_id {
                        smppgw_codec::CommandId::DELIVER_SM_RESP | smppgw_codec::CommandId::DATA_SM_RESP => {
                            self.delivery_answered(seq, Answer::from_status(header.command_status), events)
                        }
                        smppgw_codec::CommandId::GENERIC_NACK
                            if self.enquire_sent.is_some() && seq == self.enquire_seq =>
                        {
                            self.enquire_sent = None;
                        }
                        smppgw_codec::CommandId::GENERIC_NACK => {
                            self.delivery_answered(seq, Answer::Failed, events)
                        }
                        _ => {}
                    }
                    return;
                }
                let bind = matches!(
                    header.command_id,
                    smppgw_codec::CommandId::BIND_TRANSMITTER
                        | smppgw_codec::CommandId::BIND_RECEIVER
                        | smppgw_codec::CommandId::BIND_TRANSCEIVER
                );
                let status = match self.state {
                    // SMPP 3.4: a request before a successful bind gets ESME_RINVBNDSTS,
                    // malformed or not, and a bind on a bound session ESME_RALYBND.
                    State::Open { .. } | State::Binding { .. }
                        if !bind && header.command_id.name().is_some() =>
                    {
                        CommandStatus::ESME_RINVBNDSTS
                    }
                    State::Bound { .. } | State::Unbinding { .. } | State::Closing { .. } if bind => {
                        CommandStatus::ESME_RALYBND
                    }
                    _ => error.command_status(),
                };
                if header.command_id.name().is_none() {
                    Pdu::with_status(header.sequence_number, status, Body::GenericNack).encode(out);
                } else {
                    Pdu::error_response(header, status).encode(out);
                }
                // A submit refused for a field the codec could not read counts as any refused
                // for a field does (submits = accepted + refused + rejected).
                let submit = matches!(
                    header.command_id,
                    smppgw_codec::CommandId::SUBMIT_SM
                        | smppgw_codec::CommandId::DATA_SM
                        | smppgw_codec::CommandId::SUBMIT_MULTI
                );
                if submit && matches!(self.state, State::Bound { .. }) {
                    events.push(Event::Rejected { status });
                }
            }
            _ => {
                let style = match self.state {
                    State::Bound { style, .. }
                    | State::Unbinding { style, .. }
                    | State::Closing { style, .. } => Some(style),
                    _ => None,
                };
                match style {
                    Some(style) if self.outstanding > 0 || self.ops > 0 => {
                        self.state = State::Broken { since: now, style };
                    }
                    _ => {
                        self.state = State::Closed;
                        events.push(Event::Close(CloseReason::Framing));
                    }
                }
            }
        }
    }

    /// Whether [`CustomerSession::deliver`] would send a delivery now: a receiving bind that is
    /// neither unbinding nor past our own unbind.
    pub fn takes_deliveries(&self) -> bool {
        match self.state {
            State::Bound { kind, .. } | State::Closing { unbind_sent: false, kind, .. } => kind.can_receive(),
            _ => false,
        }
    }

    /// Whether the driver must stop reading the customer's stream (its framing broke).
    pub fn reads_nothing_more(&self) -> bool {
        matches!(self.state, State::Broken { .. } | State::Closed)
    }

    /// A bind is being authenticated: what follows it is read once it is answered (under the
    /// framing limit of a bound session, or of one still unbound).
    pub fn is_binding(&self) -> bool {
        matches!(self.state, State::Binding { .. })
    }

    /// The driver authenticated the bind.
    pub fn bind_accepted(
        &mut self,
        kind: BindKind,
        seq: u32,
        style: IdStyle,
        window: u32,
        out: &mut BytesMut,
    ) {
        // sc_interface_version tells a 3.4 (or later) customer what we speak; 3.3 has no TLVs.
        let tlvs = if self.legacy { Tlvs::default() } else { sc_version() };
        let body = BindResp { system_id: self.settings.system_id.clone(), tlvs };
        let body = match kind {
            BindKind::Transmitter => Body::BindTransmitterResp(body),
            BindKind::Receiver => Body::BindReceiverResp(body),
            BindKind::Transceiver => Body::BindTransceiverResp(body),
        };
        Pdu::new(seq, body).encode(out);
        self.window = window.max(1);
        self.state = State::Bound { kind, style };
    }

    /// A reload changed the server's session settings (enquire_link interval, session, bind and
    /// response timeouts, our system_id): they apply from now. A shorter response timeout
    /// applies to the deliveries in flight too (each then times out at its send time plus the
    /// new timeout), as on the vendor side: kept, their later deadlines would sit ahead of the
    /// new deliveries' earlier ones in the send-ordered queue and hold those up to the old
    /// timeout.
    pub fn set_server_settings(&mut self, settings: CustomerSettings) {
        let shorter = self.settings.response_timeout.saturating_sub(settings.response_timeout);
        self.settings = settings;
        if shorter.is_zero() || self.deliveries.is_empty() {
            return;
        }
        self.delivery_deadlines.shorten(self.deliveries.iter_mut().map(|(&seq, (_, d))| (seq, d)), shorter);
    }

    /// A reload changed the bound customer's id format or window: they apply from the next
    /// request (submits already outstanding stay counted against the window).
    pub fn update_settings(&mut self, style: IdStyle, window: u32) {
        if let State::Bound { kind, .. } = self.state {
            self.state = State::Bound { kind, style };
            self.window = window.max(1);
        }
    }

    /// The driver refused the bind with `status`.
    pub fn bind_refused(
        &mut self,
        kind: BindKind,
        seq: u32,
        status: CommandStatus,
        now: Instant,
        out: &mut BytesMut,
        events: &mut Vec<Event>,
    ) {
        let id = match kind {
            BindKind::Transmitter => smppgw_codec::CommandId::BIND_TRANSMITTER,
            BindKind::Receiver => smppgw_codec::CommandId::BIND_RECEIVER,
            BindKind::Transceiver => smppgw_codec::CommandId::BIND_TRANSCEIVER,
        };
        Pdu::error_response(&header(id, seq), status).encode(out);
        let (since, failures) = match self.state {
            State::Open { since, failures } | State::Binding { since, failures } => (since, failures + 1),
            _ => (now, 1),
        };
        if failures >= BIND_FAILURES_MAX {
            self.state = State::Closed;
            events.push(Event::Close(CloseReason::BindFailures));
        } else {
            self.state = State::Open { since, failures };
        }
    }

    /// A routed submit finished: answer it with our id or the status.
    pub fn submit_done(
        &mut self,
        seq: u32,
        data_sm: bool,
        result: SubmitResult,
        now: Instant,
        out: &mut BytesMut,
        events: &mut Vec<Event>,
    ) {
        self.outstanding = self.outstanding.saturating_sub(1);
        let style = match self.state {
            State::Bound { style, .. }
            | State::Unbinding { style, .. }
            | State::Closing { style, .. }
            | State::Broken { style, .. } => style,
            _ => IdStyle::Hex,
        };
        let mut buf = [0u8; 20];
        let (status, id): (CommandStatus, &[u8]) = match result {
            Ok(id) => (CommandStatus::ESME_ROK, format_id(id, style, &mut buf)),
            Err(st) => (st, &[]),
        };
        let cmd = if data_sm {
            smppgw_codec::CommandId::DATA_SM_RESP
        } else {
            smppgw_codec::CommandId::SUBMIT_SM_RESP
        };
        smppgw_codec::encode_message_id_resp(cmd, status, seq, id, out);
        self.on_answered(now, out, events);
    }

    /// Something outstanding was answered: an unbind waiting for everything to be answered (the
    /// customer's, or ours at shutdown) goes on once it is.
    fn on_answered(&mut self, now: Instant, out: &mut BytesMut, events: &mut Vec<Event>) {
        if self.outstanding > 0 || self.ops > 0 {
            return;
        }
        match self.state {
            State::Unbinding { seq, .. } => {
                Pdu::new(seq, Body::UnbindResp).encode(out);
                self.state = State::Closed;
                events.push(Event::Close(CloseReason::Unbound));
            }
            State::Closing { unbind_sent: false, hold: false, .. } => self.send_unbind(now, out),
            State::Broken { .. } => {
                self.state = State::Closed;
                events.push(Event::Close(CloseReason::Framing));
            }
            _ => {}
        }
    }

    fn send_unbind(&mut self, now: Instant, out: &mut BytesMut) {
        let seq = self.next_sequence();
        Pdu::new(seq, Body::Unbind).encode(out);
        if let State::Closing { since, unbind_sent, .. } = &mut self.state {
            // The customer has its response timeout to answer the unbind, from now.
            *since = now;
            *unbind_sent = true;
        }
    }

    /// Our shutdown: refuse new work, answer what is outstanding, then unbind (at once if
    /// [`CustomerSession::begin_settle`] already held it).
    pub fn begin_shutdown(&mut self, now: Instant, out: &mut BytesMut, events: &mut Vec<Event>) {
        if let State::Closing { hold: hold @ true, .. } = &mut self.state {
            *hold = false;
            return self.on_answered(now, out, events);
        }
        self.close_down(false, now, out, events);
    }

    /// The first step of the node's shutdown: refuse new work and answer what is outstanding,
    /// but stay bound, still taking receipts and MO, until [`CustomerSession::begin_shutdown`].
    pub fn begin_settle(&mut self, now: Instant, out: &mut BytesMut, events: &mut Vec<Event>) {
        self.close_down(true, now, out, events);
    }

    /// Nothing of the customer's is outstanding (submits, lookups, operations).
    pub fn is_settled(&self) -> bool {
        self.outstanding == 0 && self.ops == 0
    }

    fn close_down(&mut self, hold: bool, now: Instant, out: &mut BytesMut, events: &mut Vec<Event>) {
        match self.state {
            State::Bound { kind, style } => {
                // Only a session that receives is kept bound for what vendors still send.
                let hold = hold && kind.can_receive();
                self.state = State::Closing { since: now, unbind_sent: false, hold, kind, style };
                self.on_answered(now, out, events);
            }
            State::Unbinding { .. } | State::Closing { .. } | State::Broken { .. } | State::Closed => {}
            State::Open { .. } | State::Binding { .. } => {
                self.state = State::Closed;
                events.push(Event::Close(CloseReason::Shutdown));
            }
        }
    }

    /// The earliest time [`CustomerSession::on_tick`] has something to do.
    pub fn next_deadline(&self) -> Instant {
        let own = match self.refused.first() {
            Some(&(_, at)) => at.min(self.own_deadline()),
            None => self.own_deadline(),
        };
        match self.delivery_deadlines.front() {
            Some((d, _)) => d.min(own),
            None => own,
        }
    }

    fn own_deadline(&self) -> Instant {
        let s = &self.settings;
        match self.state {
            State::Open { since, .. } | State::Binding { since, .. } => since + s.bind_timeout,
            // Waiting for what is outstanding has no deadline of its own (every submit is
            // answered within its vendor's timeouts; shutdown bounds the whole by its grace).
            State::Closing { since, unbind_sent: true, .. } => since + s.response_timeout,
            State::Closing { since, .. } => since + CLOSING_WAIT_MAX,
            State::Broken { since, .. } => since + BROKEN_WAIT_MAX,
            _ => match self.enquire_sent {
                Some(at) => at + s.response_timeout,
                None => (self.last_rx + s.enquire_link_interval).min(self.last_rx + s.session_timeout),
            },
        }
    }

    /// Time passed: keepalive, timeouts.
    pub fn on_tick(&mut self, now: Instant, out: &mut BytesMut, events: &mut Vec<Event>) {
        for (token, _) in self.refused.drain(..) {
            events.push(Event::Delivered { token, answer: Answer::Failed });
        }
        while let Some((deadline, seq)) = self.delivery_deadlines.pop_due(now) {
            if self.deliveries.get(&seq).is_some_and(|(_, d)| *d == deadline) {
                self.delivery_answered(seq, Answer::Failed, events);
            }
        }
        let s = &self.settings;
        let (bind_timeout, response_timeout, session_timeout, enquire_link_interval) =
            (s.bind_timeout, s.response_timeout, s.session_timeout, s.enquire_link_interval);
        match self.state {
            State::Closed => {}
            State::Open { since, .. } => {
                if now >= since + bind_timeout {
                    self.state = State::Closed;
                    events.push(Event::Close(CloseReason::BindTimeout));
                }
            }
            // Authentication is under way in the driver; it always answers.
            State::Binding { .. } => {}
            State::Closing { since, unbind_sent: true, .. } => {
                if now >= since + response_timeout {
                    self.state = State::Closed;
                    events.push(Event::Close(CloseReason::Shutdown));
                }
            }
            State::Closing { since, .. } => {
                if now >= since + CLOSING_WAIT_MAX {
                    self.state = State::Closed;
                    events.push(Event::Close(CloseReason::Shutdown));
                }
            }
            State::Broken { since, .. } => {
                if now >= since + BROKEN_WAIT_MAX {
                    self.state = State::Closed;
                    events.push(Event::Close(CloseReason::Framing));
                }
            }
            State::Bound { .. } | State::Unbinding { .. } => {
                if let Some(at) = self.enquire_sent {
                    if now >= at + response_timeout {
                        self.state = State::Closed;
                        events.push(Event::Close(CloseReason::Timeout));
                    }
                } else if now >= self.last_rx + session_timeout {
                    self.state = State::Closed;
                    events.push(Event::Close(CloseReason::Timeout));
                } else if now >= self.last_rx + enquire_link_interval {
                    let seq = self.next_sequence();
                    Pdu::new(seq, Body::EnquireLink).encode(out);
                    self.enquire_sent = Some(now);
                    self.enquire_seq = seq;
                }
            }
        }
    }
}

/// `body` as an SMPP 3.3 customer can read it: no TLVs (a receipt's text carries what its TLVs
/// say), and an MO's message_payload moved into short_message when it fits there; `None` when it
/// does not (nothing else can carry it).
fn without_tlvs(body: &SubmitSm) -> Option<SubmitSm> {
    let mut b = body.clone();
    match body.tlvs.message_payload() {
        Some(p) if b.short_message.is_empty() && p.len() <= smppgw_codec::SHORT_MESSAGE_MAX => {
            b.short_message = p;
        }
        Some(_) => return None,
        None => {}
    }
    b.tlvs = Tlvs::default();
    Some(b)
}

/// The optional parameters SMPP 3.4 allows in data_sm (4.7.1) and not in deliver_sm (4.6.1).
const NOT_IN_DELIVER_SM: [u16; 8] = {
    use smppgw_codec::tag::*;
    [
        SOURCE_NETWORK_TYPE,
        SOURCE_BEARER_TYPE,
        SOURCE_TELEMATICS_ID,
        DEST_NETWORK_TYPE,
        DEST_BEARER_TYPE,
        DEST_TELEMATICS_ID,
        QOS_TIME_TO_LIVE,
        SET_DPF,
    ]
};

/// The TLVs of `tlvs` whose tag `keep` accepts, in their order.
fn keep_tlvs(tlvs: &Tlvs, keep: impl Fn(u16) -> bool) -> Tlvs {
    let mut b = smppgw_codec::TlvsBuilder::with_capacity(tlvs.raw().len());
    for t in tlvs.iter().filter(|t| keep(t.tag)) {
        b = b.bytes(t.tag, &t.value);
    }
    b.build()
}

/// Whether SMPP 3.4 allows optional parameter `tag` in data_sm (4.7.1) and not in submit_sm
/// (4.4.1): those it allows in data_sm and not in deliver_sm, and the receipt ones. A data_sm
/// goes to the vendor as a submit_sm, where a strict SMSC refuses them (ESME_ROPTPARNOTALLWD)
/// and a lenient one ignores them.
fn data_sm_only(tag: u16) -> bool {
    use smppgw_codec::tag::*;
    NOT_IN_DELIVER_SM.contains(&tag)
        || matches!(tag, RECEIPTED_MESSAGE_ID | MESSAGE_STATE | NETWORK_ERROR_CODE)
}

/// A data_sm in the submit_sm form it goes to vendors in: its qos_time_to_live (seconds,
/// 5.3.2.9) becomes the relative validity_period that says the same in a submit_sm (a lenient
/// vendor would otherwise drop it and keep a short-lived message for its default days), and the
/// parameters a submit_sm does not allow are left out.
fn data_sm_as_submit(d: smppgw_codec::DataSm) -> SubmitSm {
    let validity_period = match d.tlvs.get_ref(smppgw_codec::tag::QOS_TIME_TO_LIVE) {
        // Its length is checked at decode (four octets); anything else sets no validity.
        Some(&[a, b, c, e]) => {
            Bytes::copy_from_slice(&smppgw_codec::time::relative_time(u32::from_be_bytes([a, b, c, e])))
        }
        _ => Bytes::new(),
    };
    let mut submit = SubmitSm::from(d);
    if submit.tlvs.iter().any(|t| data_sm_only(t.tag)) {
        submit.tlvs = keep_tlvs(&submit.tlvs, |tag| !data_sm_only(tag));
    }
    SubmitSm { validity_period, ..submit }
}

fn sc_version() -> Tlvs {
    Tlvs::builder().u8(smppgw_codec::tag::SC_INTERFACE_VERSION, 0x34).build()
}

fn header(id: smppgw_codec::CommandId, seq: u32) -> smppgw_codec::Header {
    smppgw_codec::Header {
        command_length: 16,
        command_id: id,
        command_status: CommandStatus::ESME_ROK,
        sequence_number: seq,
    }
}

fn refuse(out: &mut BytesMut, id: smppgw_codec::CommandId, seq: u32, status: CommandStatus) {
    Pdu::error_response(&header(id, seq), status).encode(out);
}

/// Refuses a submit_sm or data_sm before routing, and tells the driver (its counters).
fn reject(
    out: &mut BytesMut,
    events: &mut Vec<Event>,
    id: smppgw_codec::CommandId,
    seq: u32,
    status: CommandStatus,
) {
    refuse(out, id, seq, status);
    events.push(Event::Rejected { status });
}

/// Checks a submit (or a data_sm in submit form) against SMPP 3.4 and returns the segments it
/// counts for, or the status to refuse it with.
pub fn validate_submit(s: &SubmitSm) -> Result<u32, CommandStatus> {
    if s.dest.addr.is_empty() {
        return Err(CommandStatus::ESME_RINVDSTADR);
    }
    if s.source.addr.is_empty() {
        return Err(CommandStatus::ESME_RINVSRCADR);
    }
    // 5.2.12: an ESME submits a default message, a delivery acknowledgement or a manual/user
    // acknowledgement; the other message types (receipts, notifications) and the reserved
    // values are not its to send.
    if !matches!(s.esm_class & 0x3C, 0x00 | 0x08 | 0x10) {
        return Err(CommandStatus::ESME_RINVESMCLASS);
    }
    if s.priority_flag > 4 {
        return Err(CommandStatus::ESME_RINVPRTFLG);
    }
    if s.registered_delivery > 0x1F {
        return Err(CommandStatus::ESME_RINVREGDLVFLG);
    }
    if s.replace_if_present_flag > 1 {
        return Err(CommandStatus::ESME_RINVREPFLAG);
    }
    times_checked(&s.schedule_delivery_time, &s.validity_period)?;
    // A reserved data_coding cannot be delivered as the customer meant it (SMPP 5.0's status).
    let Some(alphabet) = smppgw_codec::text::alphabet(s.data_coding) else {
        return Err(CommandStatus::ESME_RINVDCS);
    };
    sar_checked(&s.tlvs)?;
    once_each(&s.tlvs)?;
    let payload = s.tlvs.message_payload();
    let body: &Bytes = match &payload {
        // 5.3.2.32: message_payload and short_message must not both carry data.
        Some(_) if !s.short_message.is_empty() => return Err(CommandStatus::ESME_RINVPARLEN),
        Some(p) => p,
        None => &s.short_message,
    };
    let text: &[u8] = if s.esm_class & 0x40 != 0 {
        // UDHI: the header must fit, and its concatenation or port element, if any, be well
        // formed (a part numbered 0 or past its total would reach the handset as a fragment).
        let Some(&udhl) = body.first() else {
            return Err(CommandStatus::ESME_RINVMSGLEN);
        };
        if usize::from(udhl) + 1 > body.len() || smppgw_codec::text::parse_udh(body).is_err() {
            return Err(CommandStatus::ESME_RINVMSGLEN);
        }
        let (header, text) = body.split_at(usize::from(udhl) + 1);
        // A part the customer split itself is one SMS: its header and text must fit the 140
        // octets of user data (in septets after the header for the seven-bit alphabets, IA5
        // as the GSM septets the SMSC makes of it), or the operator cuts it.
        if payload.is_none() {
            let septets_max = 140usize.saturating_sub(header.len()) * 8 / 7;
            let fits = match alphabet {
                Alphabet::Septets => text.len() <= septets_max,
                Alphabet::Ia5 => smppgw_codec::text::gsm::ia5_septet_count(text) <= septets_max,
                Alphabet::Octets | Alphabet::Ucs2 => body.len() <= 140,
            };
            if !fits {
                return Err(CommandStatus::ESME_RINVMSGLEN);
            }
        }
        text
    } else {
        body
    };
    if alphabet == Alphabet::Ucs2 && !text.len().is_multiple_of(2) {
        // Half a UCS-2 character: the handset would show the rest shifted by an octet.
        return Err(CommandStatus::ESME_RINVMSGLEN);
    }
    let header_len = body.len() - text.len();
    if payload.is_none()
        && s.esm_class & 0x40 == 0
        && s.tlvs.get_ref(smppgw_codec::tag::SAR_MSG_REF_NUM).is_some()
    {
        // A part the customer split itself, numbered in SAR parameters: one SMS, whose
        // concatenation header the operator adds, so its text must fit beside that header.
        if segments_after_header(alphabet, text, SAR_PART_HEADER_LEN) > 1 {
            return Err(CommandStatus::ESME_RINVMSGLEN);
        }
        return Ok(1);
    }
    if payload.is_some() || s.esm_class & 0x40 == 0 {
        // A whole text (not a part the customer already split): what it will cost at the
        // operator, its own header (in a message_payload) going in every part.
        if header_len > PAYLOAD_HEADER_MAX {
            // No room left for text beside the header and a concatenation element.
            return Err(CommandStatus::ESME_RINVMSGLEN);
        }
        Ok(segments_after_header(alphabet, text, header_len))
    } else {
        Ok(1)
    }
}

/// The header an operator adds to a part numbered in SAR parameters (UDHL and an 8-bit-reference
/// concatenation element).
const SAR_PART_HEADER_LEN: usize = 6;

/// The longest user data header a message_payload may carry before its text: with the
/// concatenation element its parts need, at least a UCS-2 surrogate pair still fits each part.
const PAYLOAD_HEADER_MAX: usize = 140 - 5 - 4;

/// The fields of a replace_sm that go to the vendor as they are, checked as a submit's are
/// (its new text is the vendor's to judge against the message it holds).
pub fn validate_replace(r: &smppgw_codec::ReplaceSm) -> Result<(), CommandStatus> {
    if r.registered_delivery > 0x1F {
        return Err(CommandStatus::ESME_RINVREGDLVFLG);
    }
    times_checked(&r.schedule_delivery_time, &r.validity_period)?;
    if !r.short_message.is_empty() && r.tlvs.message_payload().is_some() {
        return Err(CommandStatus::ESME_RINVPARLEN);
    }
    Ok(())
}

/// 7.1.1: a time is empty or in the absolute or relative form, a real date in the absolute one.
pub fn times_checked(schedule_delivery_time: &[u8], validity_period: &[u8]) -> Result<(), CommandStatus> {
    if !smppgw_codec::time::is_valid_time(schedule_delivery_time) {
        return Err(CommandStatus::ESME_RINVSCHED);
    }
    if !smppgw_codec::time::is_valid_time(validity_period) {
        return Err(CommandStatus::ESME_RINVEXPIRY);
    }
    Ok(())
}

/// The TLVs that carry or place the text come once: with two message_payloads the gateway
/// would check and bill the first while a vendor may send the last.
fn once_each(t: &smppgw_codec::Tlvs) -> Result<(), CommandStatus> {
    use smppgw_codec::tag;
    const ONCE: [u16; 4] =
        [tag::MESSAGE_PAYLOAD, tag::SAR_MSG_REF_NUM, tag::SAR_TOTAL_SEGMENTS, tag::SAR_SEGMENT_SEQNUM];
    let mut seen = [false; ONCE.len()];
    for tlv in t.iter() {
        if let Some(i) = ONCE.iter().position(|&x| x == tlv.tag) {
            if seen[i] {
                return Err(CommandStatus::ESME_RINVOPTPARSTREAM);
            }
            seen[i] = true;
        }
    }
    Ok(())
}

/// The SAR parameters (5.3.2.22-24) come all three or not at all, each of its own size, with a
/// part number from 1 to the total.
fn sar_checked(t: &smppgw_codec::Tlvs) -> Result<(), CommandStatus> {
    use smppgw_codec::tag;
    let (r, total, seq) = (
        t.get_ref(tag::SAR_MSG_REF_NUM),
        t.get_ref(tag::SAR_TOTAL_SEGMENTS),
        t.get_ref(tag::SAR_SEGMENT_SEQNUM),
    );
    match (r, total, seq) {
        (None, None, None) => Ok(()),
        (Some(r), Some(total), Some(seq)) => {
            if r.len() != 2 || total.len() != 1 || seq.len() != 1 {
                return Err(CommandStatus::ESME_RINVPARLEN);
            }
            if total[0] == 0 || seq[0] == 0 || seq[0] > total[0] {
                return Err(CommandStatus::ESME_RINVOPTPARAMVAL);
            }
            Ok(())
        }
        _ => Err(CommandStatus::ESME_RMISSINGOPTPARAM),
    }
}

/// Segments an encoded text occupies at the operator: 160/153 GSM septets (one per octet as
/// carried in SMPP; IA5 as the septets the SMSC converts it to, `{` two), 70/67 UCS-2 units,
/// 140/134 octets, with an escape sequence or a surrogate pair never cut between two (so
/// counted as the operator will bill it).
pub fn segments_of(alphabet: Alphabet, text: &[u8]) -> u32 {
    segments_after_header(alphabet, text, 0)
}

/// [`segments_of`] for a text after a header of the customer's own (`header_len` octets, UDHL
/// included), which goes in every part.
fn segments_after_header(alphabet: Alphabet, text: &[u8], header_len: usize) -> u32 {
    use smppgw_codec::text::Encoding;
    let encoding = match alphabet {
        Alphabet::Septets => Encoding::Gsm7,
        Alphabet::Ia5 => Encoding::Ascii,
        Alphabet::Ucs2 => Encoding::Ucs2,
        Alphabet::Octets => Encoding::Latin1,
    };
    let n = smppgw_codec::text::count_encoded_segments_after_header(text, encoding, header_len);
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use smppgw_codec::{Address, CommandId, Decoder, MessageIdResp, PduError};

    fn settings() -> CustomerSettings {
        CustomerSettings {
            system_id: "smppgw".into(),
            enquire_link_interval: Duration::from_secs(30),
            session_timeout: Duration::from_secs(90),
            bind_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(10),
        }
    }

    fn decode_all(out: &mut BytesMut) -> Vec<Pdu> {
        let mut v = Vec::new();
        while let Some(p) = Decoder::default().decode(out).unwrap() {
            v.push(p);
        }
        v
    }

    fn submit(seq: u32) -> Pdu {
        Pdu::new(
            seq,
            Body::SubmitSm(SubmitSm {
                source: Address::new(1, 1, "15550001"),
                dest: Address::new(1, 1, "15550002"),
                short_message: "hello".into(),
                ..Default::default()
            }),
        )
    }

    fn bound(kind: BindKind, window: u32) -> (CustomerSession, Instant) {
        let now = Instant::now();
        let mut s = CustomerSession::new(settings(), now);
        let mut out = BytesMut::new();
        let mut ev = Vec::new();
        let bind = Bind { interface_version: 0x34, ..Default::default() };
        s.on_pdu(Pdu::new(1, Body::BindTransceiver(bind)), now, &mut out, &mut ev);
        assert!(matches!(ev[0], Event::Bind { seq: 1, .. }));
        s.bind_accepted(kind, 1, IdStyle::Hex, window, &mut out);
        (s, now)
    }

    #[test]
    fn an_smpp_3_3_customer_gets_no_tlvs() {
        // Goal: a customer bound with interface_version 0x33 gets neither sc_interface_version
        // in its bind_resp nor TLVs in its receipts (their text says the same); an MO's
        // message_payload goes in short_message. A 3.4 customer gets them.
        let receipt = SubmitSm {
            esm_class: 0x04,
            short_message: "id:1 stat:DELIVRD".into(),
            tlvs: Tlvs::builder()
                .bytes(smppgw_codec::tag::RECEIPTED_MESSAGE_ID, b"1\0")
                .u8(smppgw_codec::tag::MESSAGE_STATE, 2)
                .build(),
            ..Default::default()
        };
        let mo = SubmitSm {
            tlvs: Tlvs::builder().bytes(smppgw_codec::tag::MESSAGE_PAYLOAD, b"hello").build(),
            ..Default::default()
        };
        // 255 octets do not fit short_message (254 at most): nothing a 3.3 session reads carries
        // them.
        let long = SubmitSm {
            tlvs: Tlvs::builder().bytes(smppgw_codec::tag::MESSAGE_PAYLOAD, &[b'x'; 255]).build(),
            ..Default::default()
        };
        assert_eq!(without_tlvs(&long), None);
        let fits = without_tlvs(&SubmitSm {
            tlvs: Tlvs::builder().bytes(smppgw_codec::tag::MESSAGE_PAYLOAD, &[b'x'; 254]).build(),
            ..Default::default()
        })
        .expect("254 octets fit short_message");
        assert_eq!((fits.short_message.len(), fits.tlvs.is_empty()), (254, true));
        for (version, tlvs) in [(0x33u8, false), (0x34, true)] {
            let now = Instant::now();
            let mut s = CustomerSession::new(settings(), now);
            let (mut out, mut ev) = (BytesMut::new(), Vec::new());
            let bind = Bind { interface_version: version, ..Default::default() };
            s.on_pdu(Pdu::new(1, Body::BindReceiver(bind)), now, &mut out, &mut ev);
            s.bind_accepted(BindKind::Receiver, 1, IdStyle::Hex, 10, &mut out);
            assert!(s.deliver(1, &receipt, false, now, &mut out));
            assert!(s.deliver(2, &mo, false, now, &mut out));
            let r = decode_all(&mut out);
            let Body::BindReceiverResp(b) = &r[0].body else { panic!("{:?}", r[0]) };
            assert_eq!(!b.tlvs.is_empty(), tlvs, "bind_resp of {version:#x}");
            let Body::DeliverSm(d) = &r[1].body else { panic!("{:?}", r[1]) };
            assert_eq!(!d.tlvs.is_empty(), tlvs, "receipt to {version:#x}");
            assert_eq!(&d.short_message[..], b"id:1 stat:DELIVRD");
            let Body::DeliverSm(d) = &r[2].body else { panic!("{:?}", r[2]) };
            if tlvs {
                assert_eq!(d.tlvs.message_payload().as_deref(), Some(&b"hello"[..]));
            } else {
                assert!(d.tlvs.is_empty());
                assert_eq!(&d.short_message[..], b"hello", "the payload in short_message");
            }
        }
    }

    #[test]
    fn an_smpp_3_3_customer_gets_receipts_as_deliver_sm_and_no_mo_only_data_sm_can_carry() {
        // Goal: a customer bound with interface_version 0x33 (no data_sm in its version) gets a
        // receipt as deliver_sm, its text intact and no TLVs, even when receipt_pdu asks for
        // data_sm; an MO from an address longer than a deliver_sm holds is not written to it
        // but reported failed at once (for another of the customer's sessions to take, or given up
        // after the dispatcher's attempts), never written as data_sm.
        let now = Instant::now();
        let mut s = CustomerSession::new(settings(), now);
        let (mut out, mut ev) = (BytesMut::new(), Vec::new());
        let bind = Bind { interface_version: 0x33, ..Default::default() };
        s.on_pdu(Pdu::new(1, Body::BindReceiver(bind)), now, &mut out, &mut ev);
        s.bind_accepted(BindKind::Receiver, 1, IdStyle::Hex, 10, &mut out);
        decode_all(&mut out);
        ev.clear();
        let text =
            "id:1 sub:001 dlvrd:001 submit date:2611271200 done date:2611271201 stat:DELIVRD err:000 text:";
        let receipt = SubmitSm {
            source: Address::new(1, 1, "15550002"),
            dest: Address::new(1, 1, "15550001"),
            esm_class: 0x04,
            short_message: text.into(),
            tlvs: Tlvs::builder()
                .bytes(smppgw_codec::tag::RECEIPTED_MESSAGE_ID, b"1\0")
                .u8(smppgw_codec::tag::MESSAGE_STATE, 2)
                .build(),
            ..Default::default()
        };
        assert!(s.deliver(1, &receipt, true, now, &mut out));
        let r = decode_all(&mut out);
        let [Pdu { body: Body::DeliverSm(d), .. }] = &r[..] else { panic!("one deliver_sm: {r:?}") };
        assert!(d.tlvs.is_empty(), "no TLVs: {:?}", d.tlvs);
        assert_eq!((d.esm_class, &d.short_message[..]), (0x04, text.as_bytes()));

        let mo = SubmitSm {
            source: Address::new(1, 1, "1".repeat(30)),
            dest: Address::new(1, 1, "15550001"),
            tlvs: Tlvs::builder().bytes(smppgw_codec::tag::MESSAGE_PAYLOAD, b"hello").build(),
            ..Default::default()
        };
        assert!(s.deliver(2, &mo, true, now, &mut out), "taken: the session answers for it");
        assert!(out.is_empty(), "nothing written");
        assert!(s.next_deadline() <= now, "reported at once");
        s.on_tick(now, &mut out, &mut ev);
        assert!(
            matches!(&ev[..], [Event::Delivered { token: 2, answer: Answer::Failed }]),
            "failed here: {ev:?}"
        );
        ev.clear();
        s.on_tick(now + Duration::from_secs(20), &mut out, &mut ev);
        assert!(!ev.iter().any(|e| matches!(e, Event::Delivered { token: 2, .. })), "reported once: {ev:?}");
    }

    #[test]
    fn an_smpp_3_3_customer_is_never_written_tlvs_and_a_3_4_one_no_data_sm_only_tlvs_in_a_deliver_sm() {
        // Goal: an MO whose message_payload does not fit short_message cannot be written to a 3.3
        // session (its TLVs would be trailing garbage there): it fails there at once, for a 3.4
        // session to take. A vendor's data_sm MO going to a customer as deliver_sm loses the
        // TLVs only data_sm allows (a strict ESME answers ESME_ROPTPARNOTALLWD), keeping the rest.
        let now = Instant::now();
        let long = SubmitSm {
            source: Address::new(1, 1, "15550002"),
            dest: Address::new(1, 1, "15550001"),
            tlvs: Tlvs::builder().bytes(smppgw_codec::tag::MESSAGE_PAYLOAD, &[b'x'; 300]).build(),
            ..Default::default()
        };
        let mut s = CustomerSession::new(settings(), now);
        let (mut out, mut ev) = (BytesMut::new(), Vec::new());
        let bind = Bind { interface_version: 0x33, ..Default::default() };
        s.on_pdu(Pdu::new(1, Body::BindReceiver(bind)), now, &mut out, &mut ev);
        s.bind_accepted(BindKind::Receiver, 1, IdStyle::Hex, 10, &mut out);
        decode_all(&mut out);
        ev.clear();
        assert!(s.deliver(1, &long, false, now, &mut out), "taken: the session answers for it");
        assert!(out.is_empty(), "nothing written to the 3.3 session");
        s.on_tick(now, &mut out, &mut ev);
        assert!(matches!(&ev[..], [Event::Delivered { token: 1, answer: Answer::Failed }]), "{ev:?}");

        let (mut s, now) = bound(BindKind::Transceiver, 10);
        let mo = SubmitSm {
            tlvs: Tlvs::builder()
                .u8(smppgw_codec::tag::SOURCE_NETWORK_TYPE, 1)
                .bytes(smppgw_codec::tag::MESSAGE_PAYLOAD, b"hello")
                .u8(smppgw_codec::tag::SET_DPF, 1)
                .build(),
            ..long
        };
        assert!(s.deliver(2, &mo, false, now, &mut out));
        let r = decode_all(&mut out);
        let [Pdu { body: Body::DeliverSm(d), .. }] = &r[..] else { panic!("one deliver_sm: {r:?}") };
        let tags: Vec<u16> = d.tlvs.iter().map(|t| t.tag).collect();
        assert_eq!(tags, vec![smppgw_codec::tag::MESSAGE_PAYLOAD], "only what deliver_sm allows");
        assert!(s.deliver(3, &mo, true, now, &mut out));
        let r = decode_all(&mut out);
        let [Pdu { body: Body::DataSm(d), .. }] = &r[..] else { panic!("one data_sm: {r:?}") };
        assert_eq!(d.tlvs.iter().count(), 3, "a data_sm keeps them");
    }

    fn cancel(seq: u32) -> Pdu {
        Pdu::new(seq, Body::CancelSm(smppgw_codec::CancelSm { message_id: "1".into(), ..Default::default() }))
    }

    #[test]
    fn a_framing_error_with_a_submit_out_answers_it_before_closing() {
        // Goal: a stream whose framing breaks right after a submit (same read) stops being read,
        // and the submit's response still goes out before the connection closes: without it the
        // customer would send a message the vendor already has again.
        let (mut s, now) = bound(BindKind::Transceiver, 10);
        let (mut out, mut ev) = (BytesMut::new(), Vec::new());
        s.on_pdu(submit(2), now, &mut out, &mut ev);
        let bad = DecodeError::Framing(smppgw_codec::FramingError::TooLong { len: u32::MAX, max: 70_000 });
        s.on_decode_error(&bad, now, &mut out, &mut ev);
        assert!(s.reads_nothing_more(), "nothing more is read");
        assert!(!s.is_closed(), "open for the answer");
        assert!(!ev.iter().any(|e| matches!(e, Event::Close(_))), "{ev:?}");
        s.submit_done(2, false, Ok(7), now, &mut out, &mut ev);
        let r = decode_all(&mut out);
        assert_eq!((r[0].command_id(), r[0].sequence_number), (CommandId::SUBMIT_SM_RESP, 2));
        assert!(s.is_closed() && matches!(ev.last(), Some(Event::Close(CloseReason::Framing))), "{ev:?}");
        // With nothing out, it closes at once; and a submit never answered ends it after the wait.
        let (mut s, now) = bound(BindKind::Transceiver, 10);
        s.on_decode_error(&bad, now, &mut out, &mut ev);
        assert!(s.is_closed());
        let (mut s, now) = bound(BindKind::Transceiver, 10);
        s.on_pdu(submit(2), now, &mut out, &mut ev);
        s.on_decode_error(&bad, now, &mut out, &mut ev);
        assert_eq!(s.next_deadline(), now + BROKEN_WAIT_MAX);
        s.on_tick(now + BROKEN_WAIT_MAX, &mut out, &mut ev);
        assert!(s.is_closed());
    }

    #[test]
    fn a_request_while_the_node_shuts_down_gets_a_temporary_error() {
        // Goal: the session is still bound while shutdown waits for its outstanding submits; a
        // submit arriving then gets ESME_RSYSERR, which clients retry, not ESME_RINVBNDSTS.
        let (mut s, now) = bound(BindKind::Transceiver, 10);
        let (mut out, mut ev) = (BytesMut::new(), Vec::new());
        s.on_pdu(submit(2), now, &mut out, &mut ev);
        s.begin_shutdown(now, &mut out, &mut ev);
        s.on_pdu(submit(3), now, &mut out, &mut ev);
        let r = decode_all(&mut out);
        assert_eq!((r[0].sequence_number, r[0].command_status), (3, CommandStatus::ESME_RSYSERR));
    }

    #[test]
    fn a_receiver_bind_may_not_query_cancel_replace_or_submit_multi() {
        // Goal: SMPP 3.4 2.3 allows these only on transmitter and transceiver binds.
        let (mut s, now) = bound(BindKind::Receiver, 10);
        let (mut out, mut ev) = (BytesMut::new(), Vec::new());
        let q = smppgw_codec::QuerySm { message_id: "1".into(), ..Default::default() };
        s.on_pdu(Pdu::new(2, Body::QuerySm(q)), now, &mut out, &mut ev);
        s.on_pdu(cancel(3), now, &mut out, &mut ev);
        assert!(ev.is_empty(), "nothing handed to the driver");
        let got: Vec<_> = decode_all(&mut out).iter().map(|p| (p.command_id(), p.command_status)).collect();
        assert_eq!(
            got,
            vec![
                (CommandId::QUERY_SM_RESP, CommandStatus::ESME_RINVBNDSTS),
                (CommandId::CANCEL_SM_RESP, CommandStatus::ESME_RINVBNDSTS)
            ]
        );
    }

    #[test]
    fn shutdown_waits_for_pending_operations_and_submits_then_gives_the_unbind_its_own_timeout() {
        // A cancel_sm in progress and a submit at a slow vendor: our unbind goes only once both
        // are answered, however long that takes within the wait's bound; then the customer has
        // its response timeout to answer the unbind.
        let (mut s, now) = bound(BindKind::Transceiver, 10);
        let (mut out, mut ev) = (BytesMut::new(), Vec::new());
        s.on_pdu(submit(2), now, &mut out, &mut ev);
        s.on_pdu(cancel(3), now, &mut out, &mut ev);
        s.begin_shutdown(now, &mut out, &mut ev);
        assert!(decode_all(&mut out).is_empty(), "nothing answered yet: no unbind");
        let later = now + Duration::from_secs(30);
        s.on_tick(later, &mut out, &mut ev);
        assert!(!s.is_closed(), "waiting past the response timeout for the vendor's answer");
        s.submit_done(2, false, Ok(1), later, &mut out, &mut ev);
        s.op_answered(later, &mut out, &mut ev);
        let sent = decode_all(&mut out);
        assert_eq!(
            sent.iter().map(|p| p.command_id()).collect::<Vec<_>>(),
            vec![CommandId::SUBMIT_SM_RESP, CommandId::UNBIND]
        );
        s.on_tick(later + Duration::from_secs(9), &mut out, &mut ev);
        assert!(!s.is_closed());
        s.on_tick(later + Duration::from_secs(10), &mut out, &mut ev);
        assert!(s.is_closed(), "the unbind unanswered for the response timeout");
        // The customer's own unbind waits for a pending operation too.
        // One read carrying a request and the unbind behind it: the unbind waits for the answer.
        let (mut s, now) = bound(BindKind::Transceiver, 10);
        let (mut out, mut ev) = (BytesMut::new(), Vec::new());
        s.on_pdu(cancel(8), now, &mut out, &mut ev);
        s.on_pdu(Pdu::new(9, Body::Unbind), now, &mut out, &mut ev);
        assert!(decode_all(&mut out).is_empty());
        assert!(matches!(ev[0], Event::Request(_)), "the request went to the driver");
        s.op_answered(now, &mut out, &mut ev);
        assert_eq!(decode_all(&mut out)[0].command_id(), CommandId::UNBIND_RESP);
    }

    #[test]
    fn the_third_refused_bind_closes_the_connection() {
        let now = Instant::now();
        let mut s = CustomerSession::new(settings(), now);
        let (mut out, mut ev) = (BytesMut::new(), Vec::new());
        for n in 1..=3u32 {
            assert!(!s.is_closed(), "open before refusal {n}");
            s.on_pdu(Pdu::new(n, Body::BindTransceiver(Bind::default())), now, &mut out, &mut ev);
            assert!(matches!(ev.pop(), Some(Event::Bind { .. })), "bind {n} goes to authentication");
            s.bind_refused(BindKind::Transceiver, n, CommandStatus::ESME_RINVPASWD, now, &mut out, &mut ev);
        }
        assert!(s.is_closed());
        assert!(matches!(ev.last(), Some(Event::Close(CloseReason::BindFailures))), "{ev:?}");
        assert_eq!(decode_all(&mut out).len(), 3, "each refusal answered");
    }

    /// A bound session's enquire_link after 30 s of silence, answered by `answer` (given its
    /// sequence number): whether the session is still open past the response timeout.
    fn open_after_enquire_answered(
        answer: impl FnOnce(&mut CustomerSession, u32, Instant, &mut BytesMut, &mut Vec<Event>),
    ) -> bool {
        let (mut s, now) = bound(BindKind::Transceiver, 10);
        let (mut out, mut ev) = (BytesMut::new(), Vec::new());
        let t = now + Duration::from_secs(30);
        s.on_tick(t, &mut out, &mut ev);
        let enquire = decode_all(&mut out);
        assert_eq!(enquire[0].command_id(), CommandId::ENQUIRE_LINK);
        answer(&mut s, enquire[0].sequence_number, t, &mut out, &mut ev);
        s.on_tick(t + Duration::from_secs(11), &mut out, &mut ev);
        !s.is_closed()
    }

    #[test]
    fn a_customer_that_nacks_enquire_link_stays_bound() {
        assert!(open_after_enquire_answered(|s, seq, t, out, ev| {
            let nack = Pdu::with_status(seq, CommandStatus::ESME_RINVCMDID, Body::GenericNack);
            s.on_pdu(nack, t, out, ev);
        }));
    }

    /// Feeds raw octets as the driver does: decoded PDUs and decode errors.
    fn feed(s: &mut CustomerSession, raw: &[u8], now: Instant, out: &mut BytesMut, ev: &mut Vec<Event>) {
        let mut buf = BytesMut::from(raw);
        loop {
            match smppgw_codec::Decoder::default().decode(&mut buf) {
                Ok(Some(p)) => s.on_pdu(p, now, out, ev),
                Ok(None) => return,
                Err(e) => s.on_decode_error(&e, now, out, ev),
            }
        }
    }

    /// A PDU of `command_id` with `body` octets after the header.
    fn raw_pdu(command_id: u32, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(16 + body.len() as u32).to_be_bytes());
        v.extend_from_slice(&command_id.to_be_bytes());
        v.extend_from_slice(&0u32.to_be_bytes());
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn a_malformed_enquire_link_resp_still_shows_the_customer_is_alive() {
        // Goal: an enquire_link_resp carrying octets it should not is still an answer: the
        // session is not closed as silent after the response timeout.
        assert!(open_after_enquire_answered(|s, seq, t, out, ev| {
            feed(s, &raw_pdu(0x8000_0015, seq, b"junk"), t, out, ev)
        }));
    }

    #[test]
    fn a_malformed_request_before_bind_or_a_malformed_second_bind_gets_the_state_error() {
        // Goal: SMPP 3.4 answers a request before a successful bind with ESME_RINVBNDSTS and a
        // bind on a bound session with ESME_RALYBND, whether or not its body decodes.
        let now = Instant::now();
        let mut s = CustomerSession::new(settings(), now);
        let (mut out, mut ev) = (BytesMut::new(), Vec::new());
        // submit_sm whose body ends in the middle of its fields.
        feed(&mut s, &raw_pdu(0x0000_0004, 2, b"\0\x01\x01155"), now, &mut out, &mut ev);
        let r = decode_all(&mut out);
        assert_eq!(
            (r[0].command_id(), r[0].command_status),
            (CommandId::SUBMIT_SM_RESP, CommandStatus::ESME_RINVBNDSTS)
        );
        let (mut s, now) = bound(BindKind::Transceiver, 10);
        // bind_transceiver whose system_id is not terminated.
        feed(&mut s, &raw_pdu(0x0000_0009, 3, b"abc"), now, &mut out, &mut ev);
        let r = decode_all(&mut out);
        assert_eq!(
            (r[0].command_id(), r[0].command_status),
            (CommandId::BIND_TRANSCEIVER_RESP, CommandStatus::ESME_RALYBND)
        );
    }

    #[test]
    fn a_data_sm_with_addresses_longer_than_a_submit_sm_holds_is_refused() {
        let (mut s, now) = bound(BindKind::Transceiver, 10);
        let (mut out, mut ev) = (BytesMut::new(), Vec::new());
        let data_sm = |src: &str, dst: &str| smppgw_codec::DataSm {
            source: Address::new(1, 1, src.to_owned()),
            dest: Address::new(1, 1, dst.to_owned()),
            tlvs: smppgw_codec::Tlvs::builder().bytes(smppgw_codec::tag::MESSAGE_PAYLOAD, b"hi").build(),
            ..Default::default()
        };
        let long = "1".repeat(30);
        s.on_pdu(Pdu::new(2, Body::DataSm(data_sm("1555", &long))), now, &mut out, &mut ev);
        s.on_pdu(Pdu::new(3, Body::DataSm(data_sm(&long, "1666"))), now, &mut out, &mut ev);
        s.on_pdu(Pdu::new(4, Body::DataSm(data_sm("1555", &"2".repeat(20)))), now, &mut out, &mut ev);
        let r = decode_all(&mut out);
        assert_eq!(
            r.iter().map(|p| p.command_status).collect::<Vec<_>>(),
            vec![CommandStatus::ESME_RINVDSTADR, CommandStatus::ESME_RINVSRCADR]
        );
        assert!(
            matches!(
                &ev[..],
                [
                    Event::Rejected { status: CommandStatus::ESME_RINVDSTADR },
                    Event::Rejected { status: CommandStatus::ESME_RINVSRCADR },
                    Event::DataSm { seq: 4, .. }
                ]
            ),
            "20 characters go through, the refusals are counted: {ev:?}"
        );
    }

    #[test]
    fn a_data_sm_s_time_to_live_becomes_the_submit_s_validity_and_data_sm_only_tlvs_go() {
        // Goal: a data_sm with qos_time_to_live (300 s) goes to the vendor as a submit_sm whose
        // validity_period says the same in relative form, without the parameters a submit_sm
        // does not allow (a strict SMSC would refuse them); the others stay, in their order.
        use smppgw_codec::tag;
        let (mut s, now) = bound(BindKind::Transceiver, 10);
        let (mut out, mut ev) = (BytesMut::new(), Vec::new());
        let data_sm = |tlvs: Tlvs| smppgw_codec::DataSm {
            source: Address::new(1, 1, "1555"),
            dest: Address::new(1, 1, "1666"),
            tlvs,
            ..Default::default()
        };
        let tlvs = Tlvs::builder()
            .u8(tag::SOURCE_NETWORK_TYPE, 1)
            .bytes(tag::MESSAGE_PAYLOAD, b"code 1234")
            .bytes(tag::QOS_TIME_TO_LIVE, &300u32.to_be_bytes())
            .u8(tag::DEST_BEARER_TYPE, 1)
            .u16(tag::USER_MESSAGE_REFERENCE, 7)
            .u8(tag::SET_DPF, 1)
            .u16(tag::DEST_TELEMATICS_ID, 1)
            .build();
        s.on_pdu(Pdu::new(2, Body::DataSm(data_sm(tlvs))), now, &mut out, &mut ev);
        let plain = Tlvs::builder().bytes(tag::MESSAGE_PAYLOAD, b"hi").build();
        s.on_pdu(Pdu::new(3, Body::DataSm(data_sm(plain.clone()))), now, &mut out, &mut ev);
        let [Event::DataSm { seq: 2, submit: a, .. }, Event::DataSm { seq: 3, submit: b, .. }] = &ev[..]
        else {
            panic!("both routed: {ev:?}")
        };
        assert_eq!(&a.validity_period[..], b"000000000500000R", "300 s from now");
        let want = Tlvs::builder()
            .bytes(tag::MESSAGE_PAYLOAD, b"code 1234")
            .u16(tag::USER_MESSAGE_REFERENCE, 7)
            .build();
        assert_eq!(a.tlvs, want, "only what a submit_sm allows");
        assert!(b.validity_period.is_empty(), "no time to live: the vendor's default");
        assert_eq!(b.tlvs, plain, "nothing to take out: as it came");
    }

    #[test]
    fn a_customer_unbinding_during_our_shutdown_gets_its_outstanding_answers_first() {
        let (mut s, now) = bound(BindKind::Transceiver, 10);
        let (mut out, mut ev) = (BytesMut::new(), Vec::new());
        s.on_pdu(submit(2), now, &mut out, &mut ev);
        s.begin_shutdown(now, &mut out, &mut ev);
        s.on_pdu(Pdu::new(3, Body::Unbind), now, &mut out, &mut ev);
        assert!(decode_all(&mut out).is_empty(), "the unbind waits for the submit");
        s.submit_done(2, false, Ok(1), now, &mut out, &mut ev);
        let r = decode_all(&mut out);
        assert_eq!(
            r.iter().map(|p| (p.command_id(), p.sequence_number)).collect::<Vec<_>>(),
            vec![(CommandId::SUBMIT_SM_RESP, 2), (CommandId::UNBIND_RESP, 3)]
        );
        assert!(s.is_closed());
    }

    #[test]
    fn a_request_before_bind_gets_invbndsts() {
        let now = Instant::now();
        let mut s = CustomerSession::new(settings(), now);
        let (mut out, mut ev) = (BytesMut::new(), Vec::new());
        s.on_pdu(submit(7), now, &mut out, &mut ev);
        let r = decode_all(&mut out);
        assert_eq!(r[0].command_id(), CommandId::SUBMIT_SM_RESP);
        assert_eq!(r[0].command_status, CommandStatus::ESME_RINVBNDSTS);
        assert!(ev.is_empty());
    }

    #[test]
    fn an_outbind_or_alert_notification_is_an_unknown_command_before_bind_too() {
        let now = Instant::now();
        let mut s = CustomerSession::new(settings(), now);
        let (mut out, mut ev) = (BytesMut::new(), Vec::new());
        s.on_pdu(Pdu::new(5, Body::Outbind(Default::default())), now, &mut out, &mut ev);
        s.on_pdu(Pdu::new(6, Body::AlertNotification(Default::default())), now, &mut out, &mut ev);
        let r = decode_all(&mut out);
        assert_eq!(r.len(), 2);
        for (p, seq) in r.iter().zip([5, 6]) {
            assert_eq!(p.command_id(), CommandId::GENERIC_NACK);
            assert_eq!(p.command_status, CommandStatus::ESME_RINVCMDID);
            assert_eq!(p.sequence_number, seq);
        }
        assert!(ev.is_empty());
    }

    #[test]
    fn a_second_bind_gets_alybnd() {
        let (mut s, now) = bound(BindKind::Transceiver, 10);
        let (mut out, mut ev) = (BytesMut::new(), Vec::new());
        s.on_pdu(Pdu::new(2, Body::BindTransmitter(Bind::default())), now, &mut out, &mut ev);
        assert_eq!(decode_all(&mut out)[0].command_status, CommandStatus::ESME_RALYBND);
    }

    #[test]
    fn a_receiver_cannot_submit() {
        let (mut s, now) = bound(BindKind::Receiver, 10);
        let (mut out, mut ev) = (BytesMut::new(), Vec::new());
        s.on_pdu(submit(2), now, &mut out, &mut ev);
        assert_eq!(decode_all(&mut out)[0].command_status, CommandStatus::ESME_RINVBNDSTS);
    }

    #[test]
    fn the_window_is_enforced_and_ids_are_formatted() {
        let (mut s, now) = bound(BindKind::Transmitter, 2);
        let (mut out, mut ev) = (BytesMut::new(), Vec::new());
        for seq in 2..5 {
            s.on_pdu(submit(seq), now, &mut out, &mut ev);
        }
        assert_eq!(ev.len(), 3, "two within the window, and the refusal for the driver's counters");
        assert!(matches!(ev[2], Event::Rejected { status: CommandStatus::ESME_RTHROTTLED }), "{ev:?}");
        ev.truncate(2);
        let r = decode_all(&mut out);
        assert_eq!(r.len(), 1, "only the third is answered at once");
        assert_eq!(r[0].command_status, CommandStatus::ESME_RTHROTTLED);
        s.submit_done(2, false, Ok(0xabc), now, &mut out, &mut ev);
        let r = decode_all(&mut out);
        assert_eq!(
            r[0].body,
            Body::SubmitSmResp(MessageIdResp { message_id: "abc".into(), tlvs: Default::default() })
        );
    }

    #[test]
    fn a_submit_multi_shares_the_window_and_unbind_waits_for_it() {
        // Goal: destinations taken by a submit_multi count against the window like submits,
        // all or nothing, and an unbind waits until they are given back.
        let (mut s, now) = bound(BindKind::Transceiver, 3);
        let (mut out, mut ev) = (BytesMut::new(), Vec::new());
        assert!(!s.take_window(4), "four destinations do not fit a window of 3");
        assert!(s.take_window(2));
        s.on_pdu(submit(2), now, &mut out, &mut ev);
        s.on_pdu(submit(3), now, &mut out, &mut ev);
        let r = decode_all(&mut out);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].sequence_number, r[0].command_status), (3, CommandStatus::ESME_RTHROTTLED));
        s.submit_done(2, false, Ok(1), now, &mut out, &mut ev);
        s.on_pdu(Pdu::new(4, Body::Unbind), now, &mut out, &mut ev);
        let _ = decode_all(&mut out);
        s.give_window(1, now, &mut out, &mut ev);
        assert!(decode_all(&mut out).is_empty(), "one destination still out: no unbind_resp yet");
        s.give_window(1, now, &mut out, &mut ev);
        let r = decode_all(&mut out);
        assert_eq!((r[0].command_id(), r[0].sequence_number), (CommandId::UNBIND_RESP, 4));
        assert!(matches!(ev.last(), Some(Event::Close(CloseReason::Unbound))));
    }

    #[test]
    fn unbind_waits_for_outstanding_submits() {
        let (mut s, now) = bound(BindKind::Transceiver, 10);
        let (mut out, mut ev) = (BytesMut::new(), Vec::new());
        s.on_pdu(submit(2), now, &mut out, &mut ev);
        s.on_pdu(Pdu::new(3, Body::Unbind), now, &mut out, &mut ev);
        let _ = decode_all(&mut out);
        assert!(!ev.iter().any(|e| matches!(e, Event::Close(_))));
        s.submit_done(2, false, Err(CommandStatus::ESME_RSYSERR), now, &mut out, &mut ev);
        let r = decode_all(&mut out);
        assert_eq!(r[0].command_status, CommandStatus::ESME_RSYSERR);
        assert_eq!(r[1].command_id(), CommandId::UNBIND_RESP);
        assert!(matches!(ev.last(), Some(Event::Close(CloseReason::Unbound))));
    }

    #[test]
    fn malformed_pdus_are_answered_and_framing_errors_close() {
        let (mut s, now) = bound(BindKind::Transceiver, 10);
        let (mut out, mut ev) = (BytesMut::new(), Vec::new());
        let h = smppgw_codec::Header {
            command_length: 16,
            command_id: CommandId(0x1234),
            command_status: CommandStatus::ESME_ROK,
            sequence_number: 9,
        };
        s.on_decode_error(
            &DecodeError::Pdu { header: h, error: PduError::UnknownCommand { command_id: 0x1234 } },
            now,
            &mut out,
            &mut ev,
        );
        let r = decode_all(&mut out);
        assert_eq!(r[0].command_id(), CommandId::GENERIC_NACK);
        assert_eq!(r[0].command_status, CommandStatus::ESME_RINVCMDID);
        assert_eq!(r[0].sequence_number, 9);
        let framing = DecodeError::Framing(smppgw_codec::FramingError::TooLong { len: 1 << 30, max: 70_000 });
        s.on_decode_error(&framing, now, &mut out, &mut ev);
        assert!(matches!(ev.last(), Some(Event::Close(CloseReason::Framing))));
    }

    #[test]
    fn idle_sessions_get_enquire_link_then_close() {
        let (mut s, now) = bound(BindKind::Transceiver, 10);
        let (mut out, mut ev) = (BytesMut::new(), Vec::new());
        s.on_tick(now + Duration::from_secs(31), &mut out, &mut ev);
        assert_eq!(decode_all(&mut out)[0].command_id(), CommandId::ENQUIRE_LINK);
        s.on_tick(now + Duration::from_secs(42), &mut out, &mut ev);
        assert!(matches!(ev.last(), Some(Event::Close(CloseReason::Timeout))));
    }

    #[test]
    fn validation_statuses() {
        let ok = SubmitSm {
            source: Address::new(1, 1, "1"),
            dest: Address::new(1, 1, "2"),
            short_message: "x".into(),
            ..Default::default()
        };
        assert_eq!(validate_submit(&ok), Ok(1));
        // A part the customer split itself must fit one SMS with its header: 153 septets after
        // a 6-octet concatenation header, 134 octets of 8-bit data.
        let part = |dcs: u8, text_len: usize| {
            let mut sm = vec![5, 0, 3, 7, 2, 1];
            sm.extend(std::iter::repeat_n(b'a', text_len));
            SubmitSm { esm_class: 0x40, data_coding: dcs, short_message: sm.into(), ..ok.clone() }
        };
        assert_eq!(validate_submit(&part(0, 153)), Ok(1));
        assert_eq!(validate_submit(&part(0, 154)), Err(CommandStatus::ESME_RINVMSGLEN));
        assert_eq!(validate_submit(&part(4, 134)), Ok(1));
        assert_eq!(validate_submit(&part(4, 135)), Err(CommandStatus::ESME_RINVMSGLEN));
        let mut s = ok.clone();
        s.dest.addr = Default::default();
        assert_eq!(validate_submit(&s), Err(CommandStatus::ESME_RINVDSTADR));
        let mut s = ok.clone();
        s.validity_period = "1".into();
        assert_eq!(validate_submit(&s), Err(CommandStatus::ESME_RINVEXPIRY));
        let mut s = ok.clone();
        s.esm_class = 0x40;
        s.short_message = vec![9u8, 0, 3].into();
        assert_eq!(validate_submit(&s), Err(CommandStatus::ESME_RINVMSGLEN));
        let mut s = ok.clone();
        s.short_message = Default::default();
        s.tlvs = Tlvs::builder().bytes(smppgw_codec::tag::MESSAGE_PAYLOAD, &[b'a'; 400]).build();
        assert_eq!(validate_submit(&s), Ok(3), "400 GSM septets are 3 segments of 153");
        let mut s2 = s.clone();
        s2.short_message = "x".into();
        assert_eq!(validate_submit(&s2), Err(CommandStatus::ESME_RINVPARLEN));
        assert_eq!(segments_of(Alphabet::Ucs2, &[0x04; 140]), 1);
        assert_eq!(segments_of(Alphabet::Ucs2, &[0x04; 142]), 2);
        assert_eq!(segments_of(Alphabet::Septets, &[b'a'; 160]), 1);
        assert_eq!(segments_of(Alphabet::Septets, &[b'a'; 161]), 2);
        // An escape sequence is never cut: 152 septets, '€' (ESC 0x65), 152 more are three
        // messages at the operator, billed as three (not 306 / 153 = 2).
        let mut gsm = vec![b'a'; 152];
        gsm.extend_from_slice(&[0x1B, 0x65]);
        gsm.extend_from_slice(&[b'a'; 152]);
        assert_eq!(segments_of(Alphabet::Septets, &gsm), 3);
        // Nor is a surrogate pair: 67 emoji are 33 + 33 + 1.
        let emoji: Vec<u8> = (0..67).flat_map(|_| [0xD8, 0x3D, 0xDE, 0x00]).collect();
        assert_eq!(segments_of(Alphabet::Ucs2, &emoji), 3);
    }

    #[test]
    fn ia5_is_counted_in_the_gsm_septets_the_operator_sends() {
        // Goal: data_coding 1 costs what the SMSC sends once it has converted IA5 to GSM 7-bit
        // (customer throughput and 10DLC limits count these segments): `{` is two septets, and
        // a plain letter one, 160 to a message and 153 to a part.
        let ok = SubmitSm {
            source: Address::new(1, 1, "1"),
            dest: Address::new(1, 1, "2"),
            data_coding: 1,
            ..Default::default()
        };
        let whole = |text: Vec<u8>| validate_submit(&SubmitSm { short_message: text.into(), ..ok.clone() });
        assert_eq!(whole(vec![b'{'; 160]), Ok(3), "320 septets");
        assert_eq!(whole(vec![b'a'; 150]), Ok(1));
        assert_eq!(whole(vec![b'a'; 161]), Ok(2));
        // A part the customer split itself must fit 153 septets after its 6-octet header.
        let part = |text: &[u8]| {
            let mut sm = vec![5, 0, 3, 7, 2, 1];
            sm.extend_from_slice(text);
            validate_submit(&SubmitSm { esm_class: 0x40, short_message: sm.into(), ..ok.clone() })
        };
        assert_eq!(part(&[b'{'; 150]), Err(CommandStatus::ESME_RINVMSGLEN), "300 septets");
        assert_eq!(part(&[b'{'; 76]), Ok(1));
        assert_eq!(part(&[b'{'; 77]), Err(CommandStatus::ESME_RINVMSGLEN));
        assert_eq!(part(&[b'a'; 153]), Ok(1));
        // So must a part numbered in SAR parameters, beside the header the operator adds.
        let sar = Tlvs::builder()
            .bytes(smppgw_codec::tag::SAR_MSG_REF_NUM, &[0, 7])
            .bytes(smppgw_codec::tag::SAR_TOTAL_SEGMENTS, &[2])
            .bytes(smppgw_codec::tag::SAR_SEGMENT_SEQNUM, &[1])
            .build();
        let sar_part = |n: usize| {
            validate_submit(&SubmitSm {
                short_message: vec![b'{'; n].into(),
                tlvs: sar.clone(),
                ..ok.clone()
            })
        };
        assert_eq!(sar_part(76), Ok(1));
        assert_eq!(sar_part(77), Err(CommandStatus::ESME_RINVMSGLEN));
    }

    #[test]
    fn a_replace_sm_s_fields_are_checked_as_a_submit_s() {
        let ok = smppgw_codec::ReplaceSm {
            message_id: "1".into(),
            short_message: "new".into(),
            validity_period: "000001000000000R".into(),
            ..Default::default()
        };
        assert_eq!(validate_replace(&ok), Ok(()));
        let mut r = ok.clone();
        r.registered_delivery = 0xFF;
        assert_eq!(validate_replace(&r), Err(CommandStatus::ESME_RINVREGDLVFLG));
        let mut r = ok.clone();
        r.schedule_delivery_time = "261326120000000+".into();
        assert_eq!(validate_replace(&r), Err(CommandStatus::ESME_RINVSCHED));
        let mut r = ok.clone();
        r.validity_period = "x".into();
        assert_eq!(validate_replace(&r), Err(CommandStatus::ESME_RINVEXPIRY));
        let mut r = ok.clone();
        r.tlvs = Tlvs::builder().bytes(smppgw_codec::tag::MESSAGE_PAYLOAD, b"also").build();
        assert_eq!(validate_replace(&r), Err(CommandStatus::ESME_RINVPARLEN));
    }

    #[test]
    fn every_field_check_has_its_status() {
        use smppgw_codec::tag;
        let ok = SubmitSm {
            source: Address::new(1, 1, "1"),
            dest: Address::new(1, 1, "2"),
            short_message: "x".into(),
            ..Default::default()
        };
        let with = |f: &dyn Fn(&mut SubmitSm)| {
            let mut s = ok.clone();
            f(&mut s);
            validate_submit(&s)
        };
        let sar = |r: &[u8], total: &[u8], seq: &[u8]| {
            Tlvs::builder()
                .bytes(tag::SAR_MSG_REF_NUM, r)
                .bytes(tag::SAR_TOTAL_SEGMENTS, total)
                .bytes(tag::SAR_SEGMENT_SEQNUM, seq)
                .build()
        };
        type Tweak<'a> = Box<dyn Fn(&mut SubmitSm) + 'a>;
        let cases: Vec<(&str, Tweak<'_>, CommandStatus)> = vec![
            ("no source", Box::new(|s| s.source.addr = Default::default()), CommandStatus::ESME_RINVSRCADR),
            ("a receipt's esm_class", Box::new(|s| s.esm_class = 0x04), CommandStatus::ESME_RINVESMCLASS),
            (
                "an notification's esm_class",
                Box::new(|s| s.esm_class = 0x20),
                CommandStatus::ESME_RINVESMCLASS,
            ),
            ("priority 5", Box::new(|s| s.priority_flag = 5), CommandStatus::ESME_RINVPRTFLG),
            (
                "registered_delivery 0x20",
                Box::new(|s| s.registered_delivery = 0x20),
                CommandStatus::ESME_RINVREGDLVFLG,
            ),
            (
                "replace_if_present 2",
                Box::new(|s| s.replace_if_present_flag = 2),
                CommandStatus::ESME_RINVREPFLAG,
            ),
            (
                "a 15-character schedule",
                Box::new(|s| s.schedule_delivery_time = "261126120000000".into()),
                CommandStatus::ESME_RINVSCHED,
            ),
            (
                "a schedule of letters",
                Box::new(|s| s.schedule_delivery_time = "ABCDEFGHIJKLMNOP".into()),
                CommandStatus::ESME_RINVSCHED,
            ),
            (
                "a validity period in month 13",
                Box::new(|s| s.validity_period = "261326120000000+".into()),
                CommandStatus::ESME_RINVEXPIRY,
            ),
            (
                "a validity period ending in neither +, - nor R",
                Box::new(|s| s.validity_period = "2611261200000001".into()),
                CommandStatus::ESME_RINVEXPIRY,
            ),
            (
                "a reserved message type 0x18",
                Box::new(|s| s.esm_class = 0x18),
                CommandStatus::ESME_RINVESMCLASS,
            ),
            (
                "a reserved message type 0x0C",
                Box::new(|s| s.esm_class = 0x0C),
                CommandStatus::ESME_RINVESMCLASS,
            ),
            ("reserved data_coding 0x0B", Box::new(|s| s.data_coding = 0x0B), CommandStatus::ESME_RINVDCS),
            ("reserved data_coding 0x9F", Box::new(|s| s.data_coding = 0x9F), CommandStatus::ESME_RINVDCS),
            (
                "UCS-2 of 3 octets",
                Box::new(|s| {
                    s.data_coding = 8;
                    s.short_message = vec![0, b'a', 0].into();
                }),
                CommandStatus::ESME_RINVMSGLEN,
            ),
            ("flash UCS-2 of 1 octet", Box::new(|s| s.data_coding = 0x18), CommandStatus::ESME_RINVMSGLEN),
            (
                "UDH part 3 of 2",
                Box::new(|s| {
                    s.esm_class = 0x40;
                    s.short_message = vec![5, 0x00, 3, 7, 2, 3, b'a'].into();
                }),
                CommandStatus::ESME_RINVMSGLEN,
            ),
            (
                "UDH concatenation of the wrong length",
                Box::new(|s| {
                    s.esm_class = 0x40;
                    s.short_message = vec![4, 0x00, 2, 7, 2, b'a'].into();
                }),
                CommandStatus::ESME_RINVMSGLEN,
            ),
            (
                "SAR without its seqnum",
                Box::new(|s| {
                    s.tlvs =
                        Tlvs::builder().u16(tag::SAR_MSG_REF_NUM, 7).u8(tag::SAR_TOTAL_SEGMENTS, 2).build();
                }),
                CommandStatus::ESME_RMISSINGOPTPARAM,
            ),
            (
                "SAR part 0",
                Box::new(|s| s.tlvs = sar(&[0, 7], &[2], &[0])),
                CommandStatus::ESME_RINVOPTPARAMVAL,
            ),
            (
                "SAR part 3 of 2",
                Box::new(|s| s.tlvs = sar(&[0, 7], &[2], &[3])),
                CommandStatus::ESME_RINVOPTPARAMVAL,
            ),
            (
                "SAR total 0",
                Box::new(|s| s.tlvs = sar(&[0, 7], &[0], &[0])),
                CommandStatus::ESME_RINVOPTPARAMVAL,
            ),
            (
                "SAR reference of one octet",
                Box::new(|s| s.tlvs = sar(&[7], &[2], &[1])),
                CommandStatus::ESME_RINVPARLEN,
            ),
            (
                "two message_payloads",
                Box::new(|s| {
                    s.short_message = Default::default();
                    s.tlvs = Tlvs::builder()
                        .bytes(tag::MESSAGE_PAYLOAD, b"A")
                        .bytes(tag::MESSAGE_PAYLOAD, b"ABCDE")
                        .build();
                }),
                CommandStatus::ESME_RINVOPTPARSTREAM,
            ),
            (
                // The operator adds a concatenation header to it: 153 septets remain.
                "SAR part of 154 septets",
                Box::new(|s| {
                    s.tlvs = sar(&[0, 7], &[2], &[1]);
                    s.short_message = vec![b'a'; 154].into();
                }),
                CommandStatus::ESME_RINVMSGLEN,
            ),
            (
                "SAR part of 68 UCS-2 characters",
                Box::new(|s| {
                    s.tlvs = sar(&[0, 7], &[2], &[1]);
                    s.data_coding = 8;
                    s.short_message = vec![0x04; 136].into();
                }),
                CommandStatus::ESME_RINVMSGLEN,
            ),
            (
                "a message_payload header that leaves no room for text",
                Box::new(|s| {
                    s.esm_class = 0x40;
                    s.data_coding = 4;
                    s.short_message = Default::default();
                    let mut p = vec![134, 0x70, 132];
                    p.extend([0; 132]);
                    p.push(1);
                    s.tlvs = Tlvs::builder().bytes(tag::MESSAGE_PAYLOAD, &p).build();
                }),
                CommandStatus::ESME_RINVMSGLEN,
            ),
        ];
        for (what, f, status) in &cases {
            assert_eq!(with(f.as_ref()), Err(*status), "{what}");
        }
        // What is valid stays valid: each check above, one step inside its bound.
        let good: Vec<(&str, Tweak<'_>, u32)> = vec![
            ("priority 4", Box::new(|s| s.priority_flag = 4), 1),
            ("a delivery acknowledgement", Box::new(|s| s.esm_class = 0x08), 1),
            ("a manual acknowledgement, store and forward", Box::new(|s| s.esm_class = 0x13), 1),
            ("an absolute schedule", Box::new(|s| s.schedule_delivery_time = "261231235959948-".into()), 1),
            ("a relative validity period", Box::new(|s| s.validity_period = "000001000000000R".into()), 1),
            ("registered_delivery 0x1F", Box::new(|s| s.registered_delivery = 0x1F), 1),
            ("flash GSM", Box::new(|s| s.data_coding = 0x10), 1),
            (
                "flash UCS-2 of 142 octets: 2 segments",
                Box::new(|s| {
                    s.data_coding = 0x18;
                    s.short_message = vec![0; 142].into();
                }),
                2,
            ),
            (
                "8-bit data of 141 octets: 2 segments",
                Box::new(|s| {
                    s.data_coding = 0x04;
                    s.short_message = vec![0; 141].into();
                }),
                2,
            ),
            (
                "UDH part 2 of 2, UCS-2 text after it",
                Box::new(|s| {
                    s.esm_class = 0x40;
                    s.data_coding = 8;
                    s.short_message = vec![5, 0x00, 3, 7, 2, 2, 0, b'a'].into();
                }),
                1,
            ),
            ("SAR part 2 of 2", Box::new(|s| s.tlvs = sar(&[0, 7], &[2], &[2])), 1),
            (
                "SAR part of 153 septets",
                Box::new(|s| {
                    s.tlvs = sar(&[0, 7], &[2], &[1]);
                    s.short_message = vec![b'a'; 153].into();
                }),
                1,
            ),
            (
                // A port-addressing header (as for WAP push) goes in every part: 133 octets
                // fit beside it alone, 128 in each part once a concatenation element joins it.
                "8-bit data of 134 octets after a 7-octet header in a message_payload",
                Box::new(|s| {
                    s.esm_class = 0x40;
                    s.data_coding = 4;
                    s.short_message = Default::default();
                    let mut p = vec![6, 0x05, 4, 0x0B, 0x84, 0x23, 0xF0];
                    p.extend([0; 134]);
                    s.tlvs = Tlvs::builder().bytes(tag::MESSAGE_PAYLOAD, &p).build();
                }),
                2,
            ),
            (
                "8-bit data of 260 octets after a 7-octet header in a message_payload",
                Box::new(|s| {
                    s.esm_class = 0x40;
                    s.data_coding = 4;
                    s.short_message = Default::default();
                    let mut p = vec![6, 0x05, 4, 0x0B, 0x84, 0x23, 0xF0];
                    p.extend([0; 260]);
                    s.tlvs = Tlvs::builder().bytes(tag::MESSAGE_PAYLOAD, &p).build();
                }),
                3,
            ),
        ];
        for (what, f, segments) in &good {
            assert_eq!(with(f.as_ref()), Ok(*segments), "{what}");
        }
    }
}

#[cfg(test)]
mod delivery_tests {
    use super::*;
    use smppgw_codec::{CommandId, Decoder};

    #[test]
    fn answered_deliveries_leave_no_deadlines_behind() {
        // Goal: a session that gets every delivery answered at once keeps a deadline queue the
        // size of its delivery window, however many it delivers within one response timeout,
        // and one still unanswered delivery at the front does not make it grow either.
        let now = Instant::now();
        let mut s = CustomerSession::new(
            CustomerSettings {
                system_id: "gw".into(),
                enquire_link_interval: Duration::from_secs(30),
                session_timeout: Duration::from_secs(90),
                bind_timeout: Duration::from_secs(10),
                response_timeout: Duration::from_secs(10),
            },
            now,
        );
        let (mut out, mut ev) = (BytesMut::new(), Vec::new());
        s.on_pdu(Pdu::new(1, Body::BindReceiver(Bind::default())), now, &mut out, &mut ev);
        s.bind_accepted(BindKind::Receiver, 1, IdStyle::Hex, 10, &mut out);
        out.clear();
        assert!(s.deliver(1, &SubmitSm::default(), false, now, &mut out), "one left unanswered");
        let _ = Decoder::default().decode(&mut out).unwrap();
        for token in 2..10_000u64 {
            assert!(s.deliver(token, &SubmitSm::default(), false, now, &mut out));
            let p = Decoder::default().decode(&mut out).unwrap().expect("a deliver_sm");
            s.on_pdu(
                Pdu::new(p.sequence_number, Body::DeliverSmResp(Default::default())),
                now,
                &mut out,
                &mut ev,
            );
        }
        assert_eq!(s.deliveries_outstanding(), 1);
        assert!(
            s.delivery_deadlines.len() <= crate::deadlines::DEADLINES_SLACK * 17,
            "{} deadlines",
            s.delivery_deadlines.len()
        );
        // The unanswered one still times out.
        ev.clear();
        s.on_tick(now + Duration::from_secs(11), &mut out, &mut ev);
        assert_eq!(s.deliveries_outstanding(), 0);
    }

    #[test]
    fn a_shorter_response_timeout_from_a_reload_applies_to_the_deliveries_in_flight() {
        // Goal: lowering the response timeout from 60 s to 5 s times a delivery sent after the
        // reload out 5 s after it was sent, not held behind an older one's 60 s deadline, and
        // the older one times out 5 s after its own send time.
        let now = Instant::now();
        let with_timeout = |secs| CustomerSettings {
            system_id: "gw".into(),
            enquire_link_interval: Duration::from_secs(30),
            session_timeout: Duration::from_secs(90),
            bind_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(secs),
        };
        let mut s = CustomerSession::new(with_timeout(60), now);
        let (mut out, mut ev) = (BytesMut::new(), Vec::new());
        let bind = Bind { interface_version: 0x34, ..Default::default() };
        s.on_pdu(Pdu::new(1, Body::BindReceiver(bind)), now, &mut out, &mut ev);
        s.bind_accepted(BindKind::Receiver, 1, IdStyle::Hex, 10, &mut out);
        ev.clear();
        assert!(s.deliver(1, &SubmitSm::default(), false, now, &mut out), "A");
        s.set_server_settings(with_timeout(5));
        let later = now + Duration::from_secs(1);
        assert!(s.deliver(2, &SubmitSm::default(), false, later, &mut out), "B");
        assert!(s.next_deadline() <= now + Duration::from_secs(5), "the timer wakes for them");
        s.on_tick(later + Duration::from_secs(5), &mut out, &mut ev);
        let failed: Vec<u64> = ev
            .iter()
            .filter_map(|e| match e {
                Event::Delivered { token, answer: Answer::Failed } => Some(*token),
                _ => None,
            })
            .collect();
        assert_eq!(failed, vec![1, 2], "both timed out by their send time plus 5 s");
        assert_eq!(s.deliveries_outstanding(), 0);
    }

    /// `pdu` with four octets of junk after it: a body where none belongs, or one its fields
    /// do not account for; the decode error the driver hands the session.
    fn malformed(pdu: Pdu) -> DecodeError {
        let mut raw = BytesMut::from(&crate::test_util::malformed_octets(&pdu, true)[..]);
        Decoder::default().decode(&mut raw).expect_err("malformed")
    }

    #[test]
    fn a_malformed_response_counts_for_a_delivery_only_as_a_well_formed_one_would() {
        // Goal: a customer's malformed query_sm_resp (or submit_sm_resp, or any response but
        // deliver_sm_resp and data_sm_resp) with status 0 and our deliver_sm's sequence number
        // was taken as the deliver_sm's answer, ESME_ROK: the receipt counted as delivered and
        // never sent again. A well-formed one answers nothing, and neither does a malformed one.
        // A malformed generic_nack fails the delivery whatever its status, as a well-formed one
        // does (it used to count as delivered with status 0), and answers our enquire_link.
        let now = Instant::now();
        let settings = CustomerSettings {
            system_id: "gw".into(),
            enquire_link_interval: Duration::from_secs(30),
            session_timeout: Duration::from_secs(90),
            bind_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(5),
        };
        let mut s = CustomerSession::new(settings, now);
        let (mut out, mut ev) = (BytesMut::new(), Vec::new());
        let bind = Bind { interface_version: 0x34, ..Default::default() };
        s.on_pdu(Pdu::new(1, Body::BindReceiver(bind)), now, &mut out, &mut ev);
        s.bind_accepted(BindKind::Receiver, 1, IdStyle::Hex, 10, &mut out);
        out.clear();
        assert!(s.deliver(7, &SubmitSm::default(), false, now, &mut out));
        let seq = Decoder::default().decode(&mut out).unwrap().expect("a deliver_sm").sequence_number;
        ev.clear();
        for other in [
            Body::QuerySmResp(Default::default()),
            Body::SubmitSmResp(Default::default()),
            Body::BindReceiverResp(Default::default()),
        ] {
            s.on_pdu(Pdu::new(seq, other.clone()), now, &mut out, &mut ev);
            s.on_decode_error(&malformed(Pdu::new(seq, other)), now, &mut out, &mut ev);
        }
        assert!(ev.is_empty(), "answered by a response of another command: {ev:?}");
        assert_eq!(s.deliveries_outstanding(), 1);
        s.on_decode_error(&malformed(Pdu::new(seq, Body::GenericNack)), now, &mut out, &mut ev);
        assert!(
            matches!(&ev[..], [Event::Delivered { token: 7, answer: Answer::Failed }]),
            "a generic_nack with status 0 fails it: {ev:?}"
        );
        assert!(out.is_empty(), "no response is answered");
        // A malformed generic_nack answers our enquire_link: the customer is alive.
        let later = now + Duration::from_secs(31);
        s.on_tick(later, &mut out, &mut ev);
        let enquire = Decoder::default().decode(&mut out).unwrap().expect("an enquire_link");
        assert_eq!(enquire.command_id(), CommandId::ENQUIRE_LINK);
        let nack = malformed(Pdu::new(enquire.sequence_number, Body::GenericNack));
        s.on_decode_error(&nack, later, &mut out, &mut ev);
        s.on_tick(later + Duration::from_secs(6), &mut out, &mut ev);
        assert!(!s.is_closed(), "alive: {ev:?}");
    }

    #[test]
    fn deliveries_are_answered_failed_or_timed_out_exactly_once() {
        let now = Instant::now();
        let settings = CustomerSettings {
            system_id: "gw".into(),
            enquire_link_interval: Duration::from_secs(30),
            session_timeout: Duration::from_secs(90),
            bind_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(5),
        };
        let mut s = CustomerSession::new(settings, now);
        let (mut out, mut ev) = (BytesMut::new(), Vec::new());
        assert!(!s.deliver(1, &SubmitSm::default(), false, now, &mut out), "not bound");
        // SMPP 3.4, which has data_sm.
        let bind = Bind { interface_version: 0x34, ..Default::default() };
        s.on_pdu(Pdu::new(1, Body::BindReceiver(bind)), now, &mut out, &mut ev);
        s.bind_accepted(BindKind::Receiver, 1, IdStyle::Hex, 10, &mut out);
        out.clear();
        assert!(s.deliver(11, &SubmitSm::default(), false, now, &mut out));
        assert!(s.deliver(12, &SubmitSm::default(), true, now, &mut out));
        assert!(s.deliver(13, &SubmitSm::default(), false, now, &mut out));
        let mut sent = Vec::new();
        while let Some(p) = Decoder::default().decode(&mut out).unwrap() {
            sent.push(p);
        }
        assert_eq!(sent[1].command_id(), CommandId::DATA_SM);
        ev.clear();
        s.on_pdu(
            Pdu::new(sent[0].sequence_number, Body::DeliverSmResp(Default::default())),
            now,
            &mut out,
            &mut ev,
        );
        s.on_pdu(
            Pdu::with_status(
                sent[1].sequence_number,
                CommandStatus::ESME_RX_T_APPN,
                Body::DataSmResp(Default::default()),
            ),
            now,
            &mut out,
            &mut ev,
        );
        s.on_tick(now + Duration::from_secs(6), &mut out, &mut ev);
        let got: Vec<(u64, Answer)> = ev
            .iter()
            .filter_map(|e| match e {
                Event::Delivered { token, answer } => Some((*token, *answer)),
                _ => None,
            })
            .collect();
        assert_eq!(got, vec![(11, Answer::Ok), (12, Answer::Failed), (13, Answer::Failed)]);
        assert_eq!(s.deliveries_outstanding(), 0);
    }
}

#[cfg(test)]
mod fuzz_tests {
    use super::*;
    use proptest::prelude::*;
    use smppgw_codec::{Address, Decoder};

    /// Random bytes, or a valid PDU a customer might send (possibly cut short).
    fn chunk() -> impl Strategy<Value = Vec<u8>> {
        let submit = |seq: u32, esm: u8| {
            Pdu::new(
                seq,
                Body::SubmitSm(SubmitSm {
                    source: Address::new(1, 1, "1555"),
                    dest: Address::new(1, 1, "1666"),
                    esm_class: esm,
                    short_message: "hi".into(),
                    ..Default::default()
                }),
            )
        };
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..48),
            (any::<u32>(), any::<u8>()).prop_map(move |(q, e)| submit(q, e).to_bytes().to_vec()),
            any::<u32>().prop_map(|q| Pdu::new(q, Body::EnquireLink).to_bytes().to_vec()),
            any::<u32>().prop_map(|q| Pdu::new(q, Body::Unbind).to_bytes().to_vec()),
            any::<u32>()
                .prop_map(|q| Pdu::new(q, Body::BindTransmitter(Bind::default())).to_bytes().to_vec()),
            any::<u32>()
                .prop_map(|q| Pdu::new(q, Body::DeliverSmResp(Default::default())).to_bytes().to_vec()),
            crate::test_util::lying_header(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Whatever bytes a peer sends, the session machine never panics, answers only with PDUs
        /// that decode, and keeps its outstanding count consistent.
        #[test]
        fn arbitrary_input_never_breaks_the_session(chunks in proptest::collection::vec(chunk(), 0..24), bind_first in any::<bool>()) {
            let now = Instant::now();
            let settings = CustomerSettings {
                system_id: "gw".into(),
                enquire_link_interval: Duration::from_secs(30),
                session_timeout: Duration::from_secs(90),
                bind_timeout: Duration::from_secs(10),
                response_timeout: Duration::from_secs(5),
            };
            let mut s = CustomerSession::new(settings, now);
            let (mut out, mut ev) = (BytesMut::new(), Vec::new());
            if bind_first {
                s.on_pdu(Pdu::new(1, Body::BindTransceiver(Bind::default())), now, &mut out, &mut ev);
                s.bind_accepted(BindKind::Transceiver, 1, IdStyle::Hex, 8, &mut out);
            }
            crate::test_util::feed_chunks(chunks, |item| match item {
                Ok(p) => s.on_pdu(p, now, &mut out, &mut ev),
                Err(e) => s.on_decode_error(&e, now, &mut out, &mut ev),
            });
            // Everything routed is answered.
            for e in ev.drain(..) {
                if let Event::Submit { seq, .. } | Event::DataSm { seq, .. } = e {
                    s.submit_done(seq, false, Err(CommandStatus::ESME_RSYSERR), now, &mut out, &mut Vec::new());
                }
            }
            prop_assert_eq!(s.outstanding(), 0);
            s.on_tick(now + Duration::from_secs(120), &mut out, &mut ev);
            while !out.is_empty() {
                match Decoder::default().decode(&mut out) {
                    Ok(Some(_)) => {}
                    other => prop_assert!(false, "the session wrote something undecodable: {:?}", other),
                }
            }
        }
    }
}

#[cfg(test)]
mod adversarial_tests {
    //! Long random sequences of well-formed (and some malformed) PDUs in any order, interleaved
    //! with deliveries, answers from the driver and the passing of time, against the
    //! session's promises: every request read while the session is open is answered exactly
    //! once (at most once once it has closed), every delivery handed in ends exactly once, the
    //! session closes at most once, and it never writes what does not decode.
    use super::*;
    use proptest::prelude::*;
    use smppgw_codec::{
        Address, CancelSm, CommandId, DataSm, Decoder, DestAddress, QuerySm, ReplaceSm, SubmitMulti,
    };

    #[derive(Debug, Clone)]
    enum Step {
        /// The customer sends these octets.
        Feed(Vec<u8>),
        /// A delivery for this session (as data_sm or not).
        Deliver(bool),
        /// Time passes (milliseconds).
        Tick(u32),
        /// The driver answers the oldest of the routed submits and operations.
        Answer(u8),
        /// The node's shutdown steps.
        Settle,
        Shutdown,
        /// A reload: the customer's window, and the server's timeouts (seconds).
        Reload(u8, u8),
    }

    fn submit_body(esm: u8, dest: &'static str) -> SubmitSm {
        SubmitSm {
            source: Address::new(1, 1, "1555"),
            dest: Address::new(1, 1, dest),
            esm_class: esm,
            short_message: "hi".into(),
            ..Default::default()
        }
    }

    fn request(kind: u8, seq: u32) -> Pdu {
        let bind = |v: u8| Bind {
            system_id: "c1".into(),
            password: "pw".into(),
            interface_version: v,
            ..Default::default()
        };
        let body = match kind % 16 {
            0 => Body::BindTransmitter(bind(0x34)),
            1 => Body::BindReceiver(bind(0x33)),
            2 => Body::BindTransceiver(bind(0x34)),
            3 => Body::Unbind,
            4 => Body::EnquireLink,
            5 => Body::SubmitSm(submit_body(0, "1666")),
            6 => Body::SubmitSm(submit_body(0x04, "")),
            7 => Body::DataSm(DataSm {
                source: Address::new(1, 1, "1555"),
                dest: Address::new(1, 1, "1666"),
                tlvs: Tlvs::builder().bytes(smppgw_codec::tag::MESSAGE_PAYLOAD, b"hello").build(),
                ..Default::default()
            }),
            8 => Body::QuerySm(QuerySm { message_id: "1".into(), source: Address::new(1, 1, "1555") }),
            9 => Body::CancelSm(CancelSm { message_id: "1".into(), ..Default::default() }),
            10 => Body::ReplaceSm(ReplaceSm { message_id: "1".into(), ..Default::default() }),
            11 => Body::SubmitMulti(SubmitMulti {
                source: Address::new(1, 1, "1555"),
                dests: vec![DestAddress::Sme(Address::new(1, 1, "1666"))],
                ..Default::default()
            }),
            12 => Body::DeliverSm(submit_body(0x04, "1666")),
            13 => Body::Outbind(Default::default()),
            14 => Body::AlertNotification(Default::default()),
            _ => Body::DataSm(DataSm {
                source: Address::new(1, 1, "1555"),
                dest: Address::new(1, 1, "1666"),
                ..Default::default()
            }),
        };
        Pdu::new(seq, body)
    }

    fn response(kind: u8, seq: u32, status: u32) -> Pdu {
        let body = match kind % 9 {
            0 => Body::DeliverSmResp(Default::default()),
            1 => Body::DataSmResp(Default::default()),
            2 => Body::EnquireLinkResp,
            3 => Body::UnbindResp,
            4 => Body::GenericNack,
            5 => Body::SubmitSmResp(Default::default()),
            6 => Body::BindTransceiverResp(Default::default()),
            7 => Body::QuerySmResp(Default::default()),
            _ => Body::CancelSmResp,
        };
        Pdu::with_status(seq, CommandStatus(status), body)
    }

    /// A request of `kind` with a body where none belongs or cut short: malformed, not a
    /// framing error.
    fn malformed(kind: u8, seq: u32) -> Vec<u8> {
        crate::test_util::malformed_octets(&request(kind, seq), false)
    }

    /// A response of `kind` with a body where none belongs, or one cut short.
    fn malformed_response(kind: u8, seq: u32, status: u32) -> Vec<u8> {
        crate::test_util::malformed_octets(&response(kind, seq, status), kind & 0x80 != 0)
    }

    /// What one step feeds: (octets, the request sequence numbers in them, in order).
    fn step() -> impl Strategy<Value = Step> {
        let seq =
            prop_oneof![1..12u32, Just(0u32), Just(0x7FFF_FFFFu32), Just(0x8000_0000u32), Just(u32::MAX)];
        let status = prop_oneof![Just(0u32), Just(0x58u32), Just(0x64u32), Just(0x14u32), any::<u32>()];
        prop_oneof![
            6 => any::<u8>().prop_map(|k| Step::Feed(request(k, 0).to_bytes().to_vec())),
            4 => (any::<u8>(), seq.clone(), status.clone()).prop_map(|(k, q, st)| Step::Feed(response(k, q, st).to_bytes().to_vec())),
            1 => (any::<u8>(), seq, status).prop_map(|(k, q, st)| Step::Feed(malformed_response(k, q, st))),
            1 => any::<u8>().prop_map(|k| Step::Feed(malformed(k, 0))),
            // A command_length below the header's: the stream cannot be framed.
            1 => Just(Step::Feed(vec![0, 0, 0, 5, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 1])),
            2 => any::<bool>().prop_map(Step::Deliver),
            2 => prop_oneof![0..50u32, 1000..40_000u32].prop_map(Step::Tick),
            3 => any::<u8>().prop_map(Step::Answer),
            1 => Just(Step::Settle),
            1 => Just(Step::Shutdown),
            1 => (any::<u8>(), any::<u8>()).prop_map(|(w, t)| Step::Reload(w, t)),
        ]
    }

    struct Harness {
        s: CustomerSession,
        now: Instant,
        out: BytesMut,
        /// Submits and operations the driver has not answered yet: (seq, command, is an op).
        routed: std::collections::VecDeque<(u32, CommandId)>,
        /// Request sequence numbers read while the session was open, and their command.
        asked: Vec<(u32, CommandId)>,
        /// Responses written, by sequence number.
        answered: std::collections::HashMap<u32, Vec<CommandId>>,
        /// Delivery tokens handed in (and taken), and those that ended.
        delivered: Vec<u64>,
        ended: std::collections::HashMap<u64, u32>,
        closes: u32,
        next_req: u32,
        accept_binds: bool,
        /// The bind accepted last was of SMPP 3.3 or earlier.
        legacy: bool,
        /// The window given at the bind.
        window: u32,
    }

    impl Harness {
        fn events(&mut self, events: Vec<Event>) {
            for e in events {
                match e {
                    Event::Bind { kind, seq, bind } => {
                        let mut more = Vec::new();
                        if self.accept_binds {
                            self.legacy = bind.interface_version < 0x34;
                            self.s.bind_accepted(kind, seq, IdStyle::Hex, 3, &mut self.out);
                        } else {
                            self.s.bind_refused(
                                kind,
                                seq,
                                CommandStatus::ESME_RINVPASWD,
                                self.now,
                                &mut self.out,
                                &mut more,
                            );
                        }
                        self.events(more);
                    }
                    Event::Submit { seq, .. } => self.routed.push_back((seq, CommandId::SUBMIT_SM)),
                    Event::DataSm { seq, .. } => self.routed.push_back((seq, CommandId::DATA_SM)),
                    Event::Request(p) => self.routed.push_back((p.sequence_number, p.command_id())),
                    Event::Delivered { token, .. } => *self.ended.entry(token).or_default() += 1,
                    Event::Rejected { .. } => {}
                    Event::Close(_) => self.closes += 1,
                }
            }
        }

        fn answer_one(&mut self) {
            let Some((seq, id)) = self.routed.pop_front() else { return };
            let mut ev = Vec::new();
            match id {
                CommandId::SUBMIT_SM | CommandId::DATA_SM => {
                    let data_sm = id == CommandId::DATA_SM;
                    self.s.submit_done(seq, data_sm, Ok(7), self.now, &mut self.out, &mut ev);
                }
                _ => {
                    refuse(&mut self.out, id, seq, CommandStatus::ESME_RQUERYFAIL);
                    self.s.op_answered(self.now, &mut self.out, &mut ev);
                }
            }
            self.events(ev);
        }

        fn feed(&mut self, bytes: Vec<u8>) {
            let mut buf = BytesMut::from(&bytes[..]);
            // Every request gets a sequence number of its own, so that answers can be counted.
            if buf.len() >= 16 && buf[..4] != [0, 0, 0, 5] {
                let id = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
                if id & 0x8000_0000 == 0 {
                    self.next_req = self.next_req.wrapping_add(1);
                    let q = self.next_req;
                    buf[12..16].copy_from_slice(&q.to_be_bytes());
                    if !self.s.reads_nothing_more() && !self.s.is_closed() {
                        self.asked.push((q, CommandId(id)));
                    }
                }
            }
            let mut ev = Vec::new();
            let (id, status) = match buf.len() >= 16 {
                true => (
                    CommandId(u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]])),
                    u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
                ),
                false => (CommandId(0), 0),
            };
            match Decoder::default().decode(&mut buf) {
                Ok(Some(p)) if !self.s.reads_nothing_more() => {
                    self.s.on_pdu(p, self.now, &mut self.out, &mut ev)
                }
                Err(e) if !self.s.reads_nothing_more() => {
                    self.s.on_decode_error(&e, self.now, &mut self.out, &mut ev)
                }
                _ => {}
            }
            for e in &ev {
                if let Event::Delivered { answer: Answer::Ok, .. } = e {
                    let answers = matches!(id, CommandId::DELIVER_SM_RESP | CommandId::DATA_SM_RESP);
                    assert!(
                        answers && status == 0,
                        "a delivery taken as answered OK by a {id} with status {status:#x}"
                    );
                }
            }
            self.events(ev);
        }

        fn collect(&mut self) -> Result<(), TestCaseError> {
            loop {
                match Decoder::default().decode(&mut self.out) {
                    Ok(Some(p)) => {
                        let id = p.command_id();
                        if id.is_response() {
                            self.answered.entry(p.sequence_number).or_default().push(id);
                        }
                        // An unbind (the customer's answered, or ours) goes once nothing the
                        // customer sent before it is waiting for its answer (a second unbind
                        // meanwhile is refused at once).
                        if id == CommandId::UNBIND
                            || (id == CommandId::UNBIND_RESP && p.command_status.is_ok())
                        {
                            prop_assert!(self.routed.is_empty(), "{} with {:?} unanswered", id, self.routed);
                        }
                        if self.legacy {
                            prop_assert!(id != CommandId::DATA_SM, "a data_sm to an SMPP 3.3 customer");
                            match &p.body {
                                Body::DeliverSm(d) => {
                                    prop_assert!(d.tlvs.is_empty(), "TLVs to an SMPP 3.3 customer")
                                }
                                Body::BindReceiverResp(b)
                                | Body::BindTransmitterResp(b)
                                | Body::BindTransceiverResp(b) => {
                                    prop_assert!(b.tlvs.is_empty(), "TLVs to an SMPP 3.3 customer")
                                }
                                _ => {}
                            }
                        }
                        prop_assert!(
                            self.s.outstanding() <= self.window,
                            "{} outstanding in a window of {}",
                            self.s.outstanding(),
                            self.window
                        );
                    }
                    Ok(None) => return Ok(()),
                    Err(e) => prop_assert!(false, "the session wrote something undecodable: {e}"),
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        #[test]
        fn any_order_of_pdus_keeps_the_session_s_promises(
            steps in proptest::collection::vec(step(), 0..80),
            accept_binds in any::<bool>(),
            first_req in prop_oneof![Just(0u32), Just(0x7FFF_FFF0u32), Just(0xFFFF_FFF0u32)],
        ) {
            let now = Instant::now();
            let settings = CustomerSettings {
                system_id: "gw".into(),
                enquire_link_interval: Duration::from_secs(30),
                session_timeout: Duration::from_secs(90),
                bind_timeout: Duration::from_secs(10),
                response_timeout: Duration::from_secs(5),
            };
            let mut h = Harness {
                s: CustomerSession::new(settings, now),
                now,
                out: BytesMut::new(),
                routed: Default::default(),
                asked: Vec::new(),
                answered: Default::default(),
                delivered: Vec::new(),
                ended: Default::default(),
                closes: 0,
                next_req: first_req,
                accept_binds,
                legacy: false,
                window: 3,
            };
            let mut token = 0u64;
            for st in steps {
                match st {
                    Step::Feed(b) => h.feed(b),
                    Step::Deliver(as_data_sm) => {
                        token += 1;
                        let mut body = submit_body(0x04, "1666");
                        body.tlvs = Tlvs::builder().bytes(smppgw_codec::tag::RECEIPTED_MESSAGE_ID, b"abc").build();
                        if h.s.deliver(token, &body, as_data_sm, h.now, &mut h.out) {
                            h.delivered.push(token);
                        }
                    }
                    Step::Tick(ms) => {
                        h.now += Duration::from_millis(u64::from(ms));
                        let mut ev = Vec::new();
                        h.s.on_tick(h.now, &mut h.out, &mut ev);
                        h.events(ev);
                    }
                    Step::Answer(n) => {
                        for _ in 0..=(n % 3) {
                            h.answer_one();
                        }
                    }
                    Step::Settle => {
                        let mut ev = Vec::new();
                        h.s.begin_settle(h.now, &mut h.out, &mut ev);
                        h.events(ev);
                    }
                    Step::Shutdown => {
                        let mut ev = Vec::new();
                        h.s.begin_shutdown(h.now, &mut h.out, &mut ev);
                        h.events(ev);
                    }
                    Step::Reload(w, t) => {
                        let window = u32::from(w % 5);
                        h.s.update_settings(IdStyle::Hex, window);
                        // Submits already outstanding stay counted against the window.
                        h.window = h.window.max(window);
                        let secs = |n: u8| Duration::from_secs(u64::from(n % 60) + 1);
                        h.s.set_server_settings(CustomerSettings {
                            system_id: "gw".into(),
                            enquire_link_interval: secs(t),
                            session_timeout: secs(t.wrapping_mul(3)),
                            bind_timeout: secs(t / 2),
                            response_timeout: secs(t / 4),
                        });
                    }
                }
                h.collect()?;
                prop_assert!(h.closes <= 1, "closed {} times", h.closes);
                prop_assert_eq!(h.closes == 1, h.s.is_closed(), "a Close event iff closed");
            }
            while !h.routed.is_empty() {
                h.answer_one();
            }
            prop_assert_eq!(h.s.outstanding(), 0);
            h.collect()?;
            let closed = h.s.is_closed() || h.s.reads_nothing_more();
            for (q, id) in &h.asked {
                let n = h.answered.get(q).map_or(0, Vec::len);
                if closed {
                    prop_assert!(n <= 1, "request {id} seq {q} answered {n} times");
                } else {
                    prop_assert_eq!(n, 1, "request {} seq {} answered {} times: {:?}", id, q, n, h.answered.get(q));
                }
            }
            // Every delivery ends, once.
            h.now += Duration::from_secs(3600);
            let mut ev = Vec::new();
            h.s.on_tick(h.now, &mut h.out, &mut ev);
            h.events(ev);
            for t in &h.delivered {
                prop_assert_eq!(h.ended.get(t).copied().unwrap_or(0), 1, "delivery {} ended once", t);
            }
            prop_assert!(h.ended.keys().all(|t| h.delivered.contains(t)));
        }
    }
}

#[cfg(test)]
mod validate_fuzz {
    //! Whatever fields a bound customer's submit_sm or data_sm carries (any esm_class,
    //! data_coding, user data header, SAR and other TLVs, message_payload up to 64 KiB), checking
    //! it, turning a data_sm into its submit form, and finding its part of a long message never
    //! panic, and what is accepted counts for at least one segment.
    use super::*;
    use proptest::prelude::*;
    use smppgw_codec::{Address, DataSm, tag};

    fn tlvs() -> impl Strategy<Value = Tlvs> {
        let tag = prop_oneof![
            Just(tag::MESSAGE_PAYLOAD),
            Just(tag::SAR_MSG_REF_NUM),
            Just(tag::SAR_TOTAL_SEGMENTS),
            Just(tag::SAR_SEGMENT_SEQNUM),
            Just(tag::QOS_TIME_TO_LIVE),
            Just(tag::RECEIPTED_MESSAGE_ID),
            any::<u16>(),
        ];
        let value = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..6),
            proptest::collection::vec(any::<u8>(), 0..400),
            // A user data header with a concatenation element, then text.
            (any::<u8>(), any::<u8>(), 0..300usize).prop_map(|(total, part, n)| {
                let mut v = vec![5, 0, 3, 7, total, part];
                v.extend(std::iter::repeat_n(b'a', n));
                v
            }),
            (0..65_535usize).prop_map(|n| vec![0x41; n]),
        ];
        proptest::collection::vec((tag, value), 0..4).prop_map(|ts| {
            let mut b = Tlvs::builder();
            for (t, v) in ts {
                b = b.bytes(t, &v);
            }
            b.build()
        })
    }

    fn short_message() -> impl Strategy<Value = Bytes> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..255),
            (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..200)).prop_map(|(udhl, rest)| {
                let mut v = vec![udhl];
                v.extend(rest);
                v.truncate(254);
                v
            }),
        ]
        .prop_map(Bytes::from)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        #[test]
        fn any_fields_are_checked_without_a_panic(
            esm_class in any::<u8>(),
            data_coding in any::<u8>(),
            flags in any::<[u8; 4]>(),
            short_message in short_message(),
            tlvs in tlvs(),
            source in "[0-9+a-z]{0,20}",
            dest in "[0-9]{0,20}",
            times in (prop_oneof![Just(String::new()), "[0-9]{12}[0-9][0-9]{2}[-+R]"], prop_oneof![Just(String::new()), "[0-9]{15}[-+R]"]),
        ) {
            let s = SubmitSm {
                source: Address::new(1, 1, source.clone()),
                dest: Address::new(1, 1, dest.clone()),
                esm_class,
                data_coding,
                priority_flag: flags[0],
                registered_delivery: flags[1],
                replace_if_present_flag: flags[2],
                protocol_id: flags[3],
                schedule_delivery_time: times.0.clone().into(),
                validity_period: times.1.clone().into(),
                short_message: short_message.clone(),
                tlvs: tlvs.clone(),
                ..Default::default()
            };
            if let Ok(segments) = validate_submit(&s) {
                prop_assert!(segments >= 1);
            }
            let _ = crate::io::part_info(&s);
            let d = DataSm {
                source: Address::new(1, 1, source),
                dest: Address::new(1, 1, dest),
                esm_class,
                data_coding,
                registered_delivery: flags[1],
                tlvs,
                ..Default::default()
            };
            let as_submit = data_sm_as_submit(d);
            if let Ok(segments) = validate_submit(&as_submit) {
                prop_assert!(segments >= 1);
                // What goes to the vendor encodes and decodes whole.
                let mut out = BytesMut::new();
                smppgw_codec::encode_short_message(smppgw_codec::CommandId::SUBMIT_SM, 9, &as_submit, &mut out);
                let back = smppgw_codec::Decoder::new(1 << 20).decode(&mut out);
                prop_assert!(matches!(back, Ok(Some(_))), "{:?}", back);
            }
            let _ = crate::io::part_info(&as_submit);
        }
    }
}
