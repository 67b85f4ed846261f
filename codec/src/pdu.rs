//! PDU types and their body decode/encode pairs (SMPP 3.4 section 4).

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{Field, FramingError, PduError};
use crate::framing::DecodeError;
use crate::tlv::{self, Tlvs};
use crate::wire::{FrameWriter, SHORT_CSTR_MAX, find_nul, header_and_cstr};
use crate::{CommandId, CommandStatus};

/// Size of the PDU header: command_length, command_id, command_status, sequence_number.
pub const HEADER_LEN: usize = 16;
/// sm_length is one octet and SMPP 3.4 section 5.2.21 caps short_message at 254 octets.
pub const SHORT_MESSAGE_MAX: usize = 254;
/// submit_multi: "number_of_dests ... 255 maximum" (SMPP 3.4 section 4.5.1).
pub const DESTS_MAX: usize = 255;

/// Maximum sizes of C-octet strings, counting the NUL (SMPP 3.4 section 4).
#[allow(missing_docs)]
pub mod max {
    pub const SYSTEM_ID: usize = 16;
    pub const PASSWORD: usize = 9;
    pub const SYSTEM_TYPE: usize = 13;
    pub const ADDRESS_RANGE: usize = 41;
    pub const SERVICE_TYPE: usize = 6;
    pub const ADDR: usize = 21;
    /// data_sm and alert_notification allow 65-octet addresses.
    pub const ADDR_65: usize = 65;
    /// A time field (schedule_delivery_time, validity_period, final_date) counting its NUL: it is
    /// either empty or exactly [`TIME_LEN`] characters (SMPP 3.4 section 7.1.1).
    pub const TIME: usize = 17;
    /// Characters of a non-empty time field, `YYMMDDhhmmsstnnp`.
    pub const TIME_LEN: usize = 16;
    pub const MESSAGE_ID: usize = 65;
    /// message_id in a response, read leniently: SMSCs send 65-character ids (and their
    /// receipts quote them, which [`crate::receipt`] accepts), one more than SMPP 3.4's 65 octets
    /// with the NUL allow. Refusing the response would lose the id its receipts match by.
    pub const RESP_MESSAGE_ID: usize = 66;
    pub const DL_NAME: usize = 21;
}

/// The header of a framed PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Total PDU length, header included.
    pub command_length: u32,
    /// The command.
    pub command_id: CommandId,
    /// Status; zero in requests.
    pub command_status: CommandStatus,
    /// Correlates a response with its request.
    pub sequence_number: u32,
}

impl Header {
    /// Reads a header from the first 16 octets of `b` (the caller checked there are 16).
    #[inline]
    pub(crate) fn read(b: &[u8]) -> Header {
        let w = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Header {
            command_length: w(0),
            command_id: CommandId(w(4)),
            command_status: CommandStatus(w(8)),
            sequence_number: w(12),
        }
    }
}

/// A type of number, numbering plan and address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Address {
    /// Type of number.
    pub ton: u8,
    /// Numbering plan indicator.
    pub npi: u8,
    /// The address, without its NUL.
    pub addr: Bytes,
}

impl Address {
    /// An address from parts.
    pub fn new(ton: u8, npi: u8, addr: impl Into<Bytes>) -> Address {
        Address { ton, npi, addr: addr.into() }
    }
}

/// bind_transmitter, bind_receiver, bind_transceiver.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bind {
    /// Identifies the ESME.
    pub system_id: Bytes,
    /// Its password.
    pub password: Bytes,
    /// Type of ESME.
    pub system_type: Bytes,
    /// SMPP version supported (0x34 for 3.4).
    pub interface_version: u8,
    /// TON of address_range.
    pub addr_ton: u8,
    /// NPI of address_range.
    pub addr_npi: u8,
    /// Addresses served, as a regular expression.
    pub address_range: Bytes,
}

/// Responses to the three binds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BindResp {
    /// Identifies the SMSC.
    pub system_id: Bytes,
    /// Optional parameters (sc_interface_version).
    pub tlvs: Tlvs,
}

/// outbind.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outbind {
    /// Identifies the SMSC.
    pub system_id: Bytes,
    /// Password the ESME should check.
    pub password: Bytes,
}

/// submit_sm, and deliver_sm, which has the same layout (SMPP 3.4 sections 4.4.1 and 4.6.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubmitSm {
    /// service_type.
    pub service_type: Bytes,
    /// Originator.
    pub source: Address,
    /// Recipient.
    pub dest: Address,
    /// Message mode and type, UDHI and reply path bits.
    pub esm_class: u8,
    /// protocol_id.
    pub protocol_id: u8,
    /// priority_flag.
    pub priority_flag: u8,
    /// schedule_delivery_time (empty or 16 characters).
    pub schedule_delivery_time: Bytes,
    /// validity_period (empty or 16 characters).
    pub validity_period: Bytes,
    /// Receipt and acknowledgement requests.
    pub registered_delivery: u8,
    /// replace_if_present_flag.
    pub replace_if_present_flag: u8,
    /// Encoding of short_message.
    pub data_coding: u8,
    /// sm_default_msg_id.
    pub sm_default_msg_id: u8,
    /// Up to 254 octets of user data (UDH included when the UDHI bit is set).
    pub short_message: Bytes,
    /// Optional parameters.
    pub tlvs: Tlvs,
}

/// deliver_sm has the layout of submit_sm.
pub type DeliverSm = SubmitSm;

/// Responses that carry only a message_id: submit_sm_resp and deliver_sm_resp.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageIdResp {
    /// The id the SMSC gave the message (unused, empty, in deliver_sm_resp).
    pub message_id: Bytes,
    /// Optional parameters: SMPP 5.0 allows some in responses (additional_status_info_text,
    /// delivery_failure_reason, network_error_code, congestion_state); kept byte for byte.
    pub tlvs: Tlvs,
}

/// A destination of submit_multi.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestAddress {
    /// dest_flag 1: an SME address.
    Sme(Address),
    /// dest_flag 2: a distribution list name.
    DistributionList(Bytes),
}

/// submit_multi.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubmitMulti {
    /// service_type.
    pub service_type: Bytes,
    /// Originator.
    pub source: Address,
    /// Recipients (1..=255).
    pub dests: Vec<DestAddress>,
    /// esm_class.
    pub esm_class: u8,
    /// protocol_id.
    pub protocol_id: u8,
    /// priority_flag.
    pub priority_flag: u8,
    /// schedule_delivery_time.
    pub schedule_delivery_time: Bytes,
    /// validity_period.
    pub validity_period: Bytes,
    /// registered_delivery.
    pub registered_delivery: u8,
    /// replace_if_present_flag.
    pub replace_if_present_flag: u8,
    /// data_coding.
    pub data_coding: u8,
    /// sm_default_msg_id.
    pub sm_default_msg_id: u8,
    /// User data.
    pub short_message: Bytes,
    /// Optional parameters.
    pub tlvs: Tlvs,
}

/// A destination submit_multi could not deliver to, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsuccessSme {
    /// The destination.
    pub addr: Address,
    /// Why it failed.
    pub error_status: CommandStatus,
}

/// submit_multi_resp.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubmitMultiResp {
    /// The id of the message.
    pub message_id: Bytes,
    /// Destinations that failed.
    pub unsuccess: Vec<UnsuccessSme>,
    /// Optional parameters (SMPP 5.0), kept byte for byte.
    pub tlvs: Tlvs,
}

/// data_sm.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataSm {
    /// service_type.
    pub service_type: Bytes,
    /// Originator (up to 64 characters).
    pub source: Address,
    /// Recipient (up to 64 characters).
    pub dest: Address,
    /// esm_class.
    pub esm_class: u8,
    /// registered_delivery.
    pub registered_delivery: u8,
    /// data_coding.
    pub data_coding: u8,
    /// Optional parameters: the user data travels in message_payload.
    pub tlvs: Tlvs,
}

impl From<DataSm> for SubmitSm {
    /// A data_sm in submit_sm form: its fields where submit_sm has them, its text still in its
    /// message_payload TLV, its TLVs as they came (the caller drops those submit_sm does not
    /// allow, if it sends it on).
    fn from(d: DataSm) -> SubmitSm {
        SubmitSm {
            service_type: d.service_type,
            source: d.source,
            dest: d.dest,
            esm_class: d.esm_class,
            registered_delivery: d.registered_delivery,
            data_coding: d.data_coding,
            tlvs: d.tlvs,
            ..SubmitSm::default()
        }
    }
}

/// data_sm_resp.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataSmResp {
    /// The id of the message.
    pub message_id: Bytes,
    /// Optional parameters (delivery_failure_reason, network_error_code, ...).
    pub tlvs: Tlvs,
}

/// query_sm.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QuerySm {
    /// The id the SMSC gave the message.
    pub message_id: Bytes,
    /// The originator it was submitted with.
    pub source: Address,
}

/// query_sm_resp.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QuerySmResp {
    /// The id queried.
    pub message_id: Bytes,
    /// When the message reached its final state (empty when not final).
    pub final_date: Bytes,
    /// Its state (see [`crate::receipt::MessageState`]).
    pub message_state: u8,
    /// Network error code, when it failed.
    pub error_code: u8,
}

/// cancel_sm.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CancelSm {
    /// service_type.
    pub service_type: Bytes,
    /// The id to cancel (empty: every message from source to dest of service_type).
    pub message_id: Bytes,
    /// Originator.
    pub source: Address,
    /// Recipient.
    pub dest: Address,
}

/// replace_sm.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplaceSm {
    /// The id of the message to replace.
    pub message_id: Bytes,
    /// Its originator.
    pub source: Address,
    /// New schedule_delivery_time.
    pub schedule_delivery_time: Bytes,
    /// New validity_period.
    pub validity_period: Bytes,
    /// New registered_delivery.
    pub registered_delivery: u8,
    /// New sm_default_msg_id.
    pub sm_default_msg_id: u8,
    /// New user data.
    pub short_message: Bytes,
    /// Optional parameters (SMPP 5.0 allows message_payload).
    pub tlvs: Tlvs,
}

/// alert_notification.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AlertNotification {
    /// The mobile that became available.
    pub source: Address,
    /// The ESME address that asked to be alerted.
    pub esme: Address,
    /// Optional parameters (ms_availability_status).
    pub tlvs: Tlvs,
}

/// A PDU body, one variant per command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Body {
    BindTransmitter(Bind),
    BindTransmitterResp(BindResp),
    BindReceiver(Bind),
    BindReceiverResp(BindResp),
    BindTransceiver(Bind),
    BindTransceiverResp(BindResp),
    Outbind(Outbind),
    Unbind,
    UnbindResp,
    GenericNack,
    EnquireLink,
    EnquireLinkResp,
    SubmitSm(SubmitSm),
    SubmitSmResp(MessageIdResp),
    DeliverSm(DeliverSm),
    DeliverSmResp(MessageIdResp),
    SubmitMulti(SubmitMulti),
    SubmitMultiResp(SubmitMultiResp),
    DataSm(DataSm),
    DataSmResp(DataSmResp),
    QuerySm(QuerySm),
    QuerySmResp(QuerySmResp),
    CancelSm(CancelSm),
    CancelSmResp,
    ReplaceSm(ReplaceSm),
    ReplaceSmResp,
    AlertNotification(AlertNotification),
}

impl Body {
    /// The command_id of this body.
    pub const fn command_id(&self) -> CommandId {
        match self {
            Body::BindTransmitter(_) => CommandId::BIND_TRANSMITTER,
            Body::BindTransmitterResp(_) => CommandId::BIND_TRANSMITTER_RESP,
            Body::BindReceiver(_) => CommandId::BIND_RECEIVER,
            Body::BindReceiverResp(_) => CommandId::BIND_RECEIVER_RESP,
            Body::BindTransceiver(_) => CommandId::BIND_TRANSCEIVER,
            Body::BindTransceiverResp(_) => CommandId::BIND_TRANSCEIVER_RESP,
            Body::Outbind(_) => CommandId::OUTBIND,
            Body::Unbind => CommandId::UNBIND,
            Body::UnbindResp => CommandId::UNBIND_RESP,
            Body::GenericNack => CommandId::GENERIC_NACK,
            Body::EnquireLink => CommandId::ENQUIRE_LINK,
            Body::EnquireLinkResp => CommandId::ENQUIRE_LINK_RESP,
            Body::SubmitSm(_) => CommandId::SUBMIT_SM,
            Body::SubmitSmResp(_) => CommandId::SUBMIT_SM_RESP,
            Body::DeliverSm(_) => CommandId::DELIVER_SM,
            Body::DeliverSmResp(_) => CommandId::DELIVER_SM_RESP,
            Body::SubmitMulti(_) => CommandId::SUBMIT_MULTI,
            Body::SubmitMultiResp(_) => CommandId::SUBMIT_MULTI_RESP,
            Body::DataSm(_) => CommandId::DATA_SM,
            Body::DataSmResp(_) => CommandId::DATA_SM_RESP,
            Body::QuerySm(_) => CommandId::QUERY_SM,
            Body::QuerySmResp(_) => CommandId::QUERY_SM_RESP,
            Body::CancelSm(_) => CommandId::CANCEL_SM,
            Body::CancelSmResp => CommandId::CANCEL_SM_RESP,
            Body::ReplaceSm(_) => CommandId::REPLACE_SM,
            Body::ReplaceSmResp => CommandId::REPLACE_SM_RESP,
            Body::AlertNotification(_) => CommandId::ALERT_NOTIFICATION,
        }
    }

    /// An empty (error) response body for the request `id`: what a peer gets when its request
    /// fails. Unknown ids and requests without a response get generic_nack.
    pub fn empty_response(id: CommandId) -> Body {
        match id {
            CommandId::BIND_TRANSMITTER => Body::BindTransmitterResp(BindResp::default()),
            CommandId::BIND_RECEIVER => Body::BindReceiverResp(BindResp::default()),
            CommandId::BIND_TRANSCEIVER => Body::BindTransceiverResp(BindResp::default()),
            CommandId::UNBIND => Body::UnbindResp,
            CommandId::ENQUIRE_LINK => Body::EnquireLinkResp,
            CommandId::SUBMIT_SM => Body::SubmitSmResp(MessageIdResp::default()),
            CommandId::DELIVER_SM => Body::DeliverSmResp(MessageIdResp::default()),
            CommandId::SUBMIT_MULTI => Body::SubmitMultiResp(SubmitMultiResp::default()),
            CommandId::DATA_SM => Body::DataSmResp(DataSmResp::default()),
            CommandId::QUERY_SM => Body::QuerySmResp(QuerySmResp::default()),
            CommandId::CANCEL_SM => Body::CancelSmResp,
            CommandId::REPLACE_SM => Body::ReplaceSmResp,
            _ => Body::GenericNack,
        }
    }
}

/// A whole PDU: header fields and typed body. command_length is computed when encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    /// command_status (zero in requests).
    pub command_status: CommandStatus,
    /// sequence_number.
    pub sequence_number: u32,
    /// The typed body, which also fixes command_id.
    pub body: Body,
}

impl Pdu {
    /// A request (or OK response) with the given sequence number.
    pub fn new(sequence_number: u32, body: Body) -> Pdu {
        Pdu { command_status: CommandStatus::ESME_ROK, sequence_number, body }
    }

    /// A response with a status.
    pub fn with_status(sequence_number: u32, command_status: CommandStatus, body: Body) -> Pdu {
        Pdu { command_status, sequence_number, body }
    }

    /// The error response to a request whose header is `h`: the request's own response with an
    /// empty body, or generic_nack for unknown commands and for an invalid command_length (a body
    /// too short or too long for its command, SMPP 3.4 section 4.3).
    pub fn error_response(h: &Header, status: CommandStatus) -> Pdu {
        let body = if status == CommandStatus::ESME_RINVCMDLEN {
            Body::GenericNack
        } else {
            Body::empty_response(h.command_id)
        };
        Pdu::with_status(h.sequence_number, status, body)
    }

    /// The command_id of the body.
    pub const fn command_id(&self) -> CommandId {
        self.body.command_id()
    }

    /// Decodes one whole frame (header included), as [`crate::Decoder`] does once it has framed
    /// one. A frame shorter than the header, or whose command_length is not its length, is a
    /// [`DecodeError::Framing`] error ([`FramingError::FrameTooShort`],
    /// [`FramingError::LengthMismatch`]); a malformed body is a [`DecodeError::Pdu`] error. Never
    /// panics, whatever the bytes.
    pub fn decode_frame(frame: Bytes) -> Result<Pdu, DecodeError> {
        if frame.len() < HEADER_LEN {
            return Err(FramingError::FrameTooShort { len: frame.len(), min: HEADER_LEN }.into());
        }
        let command_length = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        if usize::try_from(command_length).ok() != Some(frame.len()) {
            return Err(FramingError::LengthMismatch { command_length, frame_len: frame.len() }.into());
        }
        Pdu::decode_whole(frame).map_err(|(header, error)| DecodeError::Pdu { header, error })
    }

    /// Decodes one whole frame whose length the caller has checked: at least the header, and
    /// command_length octets (see [`crate::Decoder`]).
    // Inlined, with `decode_body`, so that the decoded body is built where the caller keeps it
    // rather than moved through each layer's `Result` (each move a 260-octet memcpy).
    #[inline]
    fn decode_whole(frame: Bytes) -> Result<Pdu, (Header, PduError)> {
        let h = Header::read(&frame);
        // The body is the frame past its header: advancing the view costs no reference count,
        // where a slice would take one and dropping the frame would give it back.
        let mut body = frame;
        body.advance(HEADER_LEN);
        match decode_body(h.command_id, h.command_status, body) {
            Ok(body) => {
                Ok(Pdu { command_status: h.command_status, sequence_number: h.sequence_number, body })
            }
            Err(e) => Err((h, e)),
        }
    }

    /// Appends the encoded PDU to `out`: the frame length is computed first, room for it reserved
    /// once, and the header (with its final command_length) and fields written in one pass.
    /// Inlined for the hot bodies (submit_sm, deliver_sm and their responses); the others go
    /// through one shared out-of-line path.
    #[inline]
    pub fn encode(&self, out: &mut BytesMut) {
        let (status, seq) = (self.command_status, self.sequence_number);
        match &self.body {
            Body::SubmitSm(s) => encode_submit(CommandId::SUBMIT_SM, status, seq, s, out),
            Body::DeliverSm(s) => encode_submit(CommandId::DELIVER_SM, status, seq, s, out),
            Body::SubmitSmResp(m) => {
                encode_id_resp(CommandId::SUBMIT_SM_RESP, status, seq, &m.message_id, m.tlvs.raw(), out)
            }
            Body::DeliverSmResp(m) => {
                encode_id_resp(CommandId::DELIVER_SM_RESP, status, seq, &m.message_id, m.tlvs.raw(), out)
            }
            _ => self.encode_other(out),
        }
    }

    #[inline(never)]
    fn encode_other(&self, out: &mut BytesMut) {
        let len = HEADER_LEN + other_body_len(&self.body, self.command_status);
        let mut w = FrameWriter::new(out, len);
        w.header(len as u32, self.command_id().0, self.command_status.0, self.sequence_number);
        write_other_body(&mut w, &self.body, self.command_status);
        w.finish();
    }

    /// The size of the encoded PDU, header included: what [`Pdu::encode`] appends.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + other_body_len(&self.body, self.command_status)
    }

    /// The PDU encoded into a new buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut b);
        b.freeze()
    }
}

/// Encodes a submit_sm (or, with `CommandId::DELIVER_SM`, a deliver_sm) from a borrowed body, so a
/// caller that keeps the message (a vendor window, a retry queue) need not clone it to send it.
#[inline]
pub fn encode_short_message(
    command_id: CommandId,
    sequence_number: u32,
    body: &SubmitSm,
    out: &mut BytesMut,
) {
    encode_submit(command_id, CommandStatus::ESME_ROK, sequence_number, body, out);
}

/// Encodes a response that carries only a message_id (submit_sm_resp, deliver_sm_resp,
/// data_sm_resp without TLVs) from a borrowed id, so the caller need not allocate one. An error
/// status with an empty id is sent with an empty body, as [`Pdu::encode`] does.
#[inline]
pub fn encode_message_id_resp(
    command_id: CommandId,
    command_status: CommandStatus,
    sequence_number: u32,
    message_id: &[u8],
    out: &mut BytesMut,
) {
    encode_id_resp(command_id, command_status, sequence_number, message_id, &[], out);
}

/// Splits the `len`-octet frame at the front of `buf` (its command_length already checked, see
/// [`crate::Decoder`]) and decodes it.
///
/// The hot commands (submit_sm, deliver_sm and their responses) are first scanned as a plain slice
/// of `buf`, finding where each field lies without taking a reference count; only a valid body is
/// then split off and cut into `Bytes` fields, with one reference count per non-empty field (the
/// last one takes over the frame's own) and the `Pdu` built in place in the caller's result.
/// Anything the scan does not accept, and every other command, goes through the general decoder,
/// which gives the same result or the typed error.
#[inline(always)]
pub(crate) fn decode_split(buf: &mut BytesMut, len: usize) -> Result<Option<Pdu>, DecodeError> {
    let frame = &buf[..len];
    let h = Header::read(frame);
    let body = &frame[HEADER_LEN..];
    match h.command_id {
        CommandId::SUBMIT_SM | CommandId::DELIVER_SM => {
            if let Some(l) = SubmitLayout::scan(body, h.command_id == CommandId::SUBMIT_SM) {
                let frame = buf.split_to(len);
                let (command_status, sequence_number) = (h.command_status, h.sequence_number);
                // One whole expression per variant, so the body is built in place.
                return Ok(Some(if h.command_id == CommandId::SUBMIT_SM {
                    Pdu { command_status, sequence_number, body: Body::SubmitSm(l.build(frame)) }
                } else {
                    Pdu { command_status, sequence_number, body: Body::DeliverSm(l.build(frame)) }
                }));
            }
        }
        CommandId::SUBMIT_SM_RESP | CommandId::DELIVER_SM_RESP => {
            // An error response with an empty body takes the general path (the empty response).
            // The search runs over the whole frame, so that a short body is read in one go.
            if (h.command_status.is_ok() || !body.is_empty())
                && let Some(id_end) =
                    find_nul(frame, HEADER_LEN, max::RESP_MESSAGE_ID).map(|n| n - HEADER_LEN)
                && (id_end + 1 == body.len() || tlv::validate(&body[id_end + 1..]).is_ok())
            {
                let tlvs_len = body.len() - (id_end + 1);
                let mut frame = buf.split_to(len).freeze();
                let resp = if tlvs_len == 0 {
                    // The usual response: message_id takes over the frame.
                    frame.advance(HEADER_LEN);
                    frame.truncate(id_end);
                    MessageIdResp { message_id: frame, tlvs: Tlvs::new() }
                } else {
                    let message_id = frame.slice(HEADER_LEN..HEADER_LEN + id_end);
                    frame.advance(HEADER_LEN + id_end + 1);
                    MessageIdResp { message_id, tlvs: Tlvs::from_validated(frame) }
                };
                let (command_status, sequence_number) = (h.command_status, h.sequence_number);
                let body = if h.command_id == CommandId::SUBMIT_SM_RESP {
                    Body::SubmitSmResp(resp)
                } else {
                    Body::DeliverSmResp(resp)
                };
                return Ok(Some(Pdu { command_status, sequence_number, body }));
            }
        }
        _ => {}
    }
    decode_general(buf, len)
}

#[inline(never)]
fn decode_general(buf: &mut BytesMut, len: usize) -> Result<Option<Pdu>, DecodeError> {
    let frame = buf.split_to(len).freeze();
    Pdu::decode_whole(frame).map(Some).map_err(|(header, error)| DecodeError::Pdu { header, error })
}

/// Whether a time field of `len` characters (its NUL not counted) has a length SMPP 3.4 allows.
#[inline(always)]
const fn is_time_len(len: usize) -> bool {
    len == 0 || len == max::TIME_LEN
}

/// Reads a body slice without creating any `Bytes`: fields come out as octets or as ranges.
struct Scan<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Scan<'_> {
    #[inline(always)]
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let a = *self.b.get(self.pos..)?.first_chunk::<N>()?;
        self.pos += N;
        Some(a)
    }

    /// A C-octet string of at most `max` octets counting its NUL, as the range of its octets.
    #[inline(always)]
    fn cstr(&mut self, max: usize) -> Option<(usize, usize)> {
        let start = self.pos;
        let end = find_nul(self.b, start, max)?;
        self.pos = end + 1;
        Some((start, end))
    }

    /// A time field: empty or exactly 16 characters when `strict` (anything else is left to
    /// the general decoder, which names the error), any length up to 16 otherwise.
    #[inline(always)]
    fn time(&mut self, strict: bool) -> Option<(usize, usize)> {
        let (start, end) = self.cstr(max::TIME)?;
        (!strict || is_time_len(end - start)).then_some((start, end))
    }
}

/// Where the fields of a valid submit_sm or deliver_sm body lie (ranges in the body).
struct SubmitLayout {
    service_type: (usize, usize),
    source: (u8, u8, (usize, usize)),
    dest: (u8, u8, (usize, usize)),
    /// esm_class, protocol_id, priority_flag.
    flags: [u8; 3],
    schedule_delivery_time: (usize, usize),
    validity_period: (usize, usize),
    /// registered_delivery, replace_if_present_flag, data_coding, sm_default_msg_id.
    flags2: [u8; 4],
    short_message: (usize, usize),
    tlvs: (usize, usize),
}

impl SubmitLayout {
    /// The layout of `b` if it is a body [`decode_submit`] accepts (with the same
    /// `strict`): the same fields, in the same order, with the same bounds; `None`
    /// otherwise.
    #[inline(always)]
    fn scan(b: &[u8], strict: bool) -> Option<SubmitLayout> {
        let mut s = Scan { b, pos: 0 };
        let service_type = s.cstr(max::SERVICE_TYPE)?;
        let [ton, npi] = s.array()?;
        let source = (ton, npi, s.cstr(max::ADDR)?);
        let [ton, npi] = s.array()?;
        let dest = (ton, npi, s.cstr(max::ADDR)?);
        let flags = s.array()?;
        let schedule_delivery_time = s.time(strict)?;
        let validity_period = s.time(strict)?;
        let [f0, f1, f2, f3, sm_len] = s.array()?;
        let sm_len = usize::from(sm_len);
        if sm_len > SHORT_MESSAGE_MAX || b.len() - s.pos < sm_len {
            return None;
        }
        let short_message = (s.pos, s.pos + sm_len);
        let tlvs = (short_message.1, b.len());
        if tlvs.0 < b.len() {
            tlv::validate_with(&b[tlvs.0..], !strict).ok()?;
        }
        Some(SubmitLayout {
            service_type,
            source,
            dest,
            flags,
            schedule_delivery_time,
            validity_period,
            flags2: [f0, f1, f2, f3],
            short_message,
            tlvs,
        })
    }

    /// The body, its fields cut out of `frame` (the whole frame, header included). Each
    /// non-empty field takes a reference count, except the last one, which takes over the
    /// frame's own: the TLVs when there are some, else short_message.
    #[inline(always)]
    fn build(self, frame: BytesMut) -> SubmitSm {
        let mut frame = frame.freeze();
        let slice = |(start, end): (usize, usize)| {
            if start == end { Bytes::new() } else { frame.slice(HEADER_LEN + start..HEADER_LEN + end) }
        };
        let service_type = slice(self.service_type);
        let source = slice(self.source.2);
        let dest = slice(self.dest.2);
        let schedule_delivery_time = slice(self.schedule_delivery_time);
        let validity_period = slice(self.validity_period);
        let (sm, tlvs) = (self.short_message, self.tlvs);
        let (short_message, tlvs) = if tlvs.0 != tlvs.1 {
            let short_message = slice(sm);
            frame.advance(HEADER_LEN + tlvs.0);
            (short_message, frame)
        } else if sm.0 != sm.1 {
            frame.advance(HEADER_LEN + sm.0);
            frame.truncate(sm.1 - sm.0);
            (frame, Bytes::new())
        } else {
            (Bytes::new(), Bytes::new())
        };
        let [esm_class, protocol_id, priority_flag] = self.flags;
        let [registered_delivery, replace_if_present_flag, data_coding, sm_default_msg_id] = self.flags2;
        SubmitSm {
            service_type,
            source: Address { ton: self.source.0, npi: self.source.1, addr: source },
            dest: Address { ton: self.dest.0, npi: self.dest.1, addr: dest },
            esm_class,
            protocol_id,
            priority_flag,
            schedule_delivery_time,
            validity_period,
            registered_delivery,
            replace_if_present_flag,
            data_coding,
            sm_default_msg_id,
            short_message,
            tlvs: Tlvs::from_validated(tlvs),
        }
    }
}

/// Reads the fields of a body, each a slice of the frame.
struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn u8(&mut self, field: Field) -> Result<u8, PduError> {
        let v = *self.buf.get(self.pos).ok_or(PduError::Truncated { field })?;
        self.pos += 1;
        Ok(v)
    }

    fn u32(&mut self, field: Field) -> Result<u32, PduError> {
        let b = self.buf.get(self.pos..self.pos + 4).ok_or(PduError::Truncated { field })?;
        let v = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        self.pos += 4;
        Ok(v)
    }

    /// A C-octet string of at most `max` octets counting its NUL.
    fn cstr(&mut self, field: Field, max: usize) -> Result<Bytes, PduError> {
        let rest = &self.buf[self.pos..];
        let window = &rest[..rest.len().min(max)];
        match window.iter().position(|&c| c == 0) {
            Some(n) => {
                let s = self.buf.slice(self.pos..self.pos + n);
                self.pos += n + 1;
                Ok(s)
            }
            None if rest.len() < max => Err(PduError::Truncated { field }),
            None => Err(PduError::CStringTooLong { field, max }),
        }
    }

    /// A time field (SMPP 3.4 section 7.1.1): a lone NUL or 16 characters and a NUL. A string
    /// with no NUL within 17 octets is [`PduError::CStringTooLong`]; one of another length is
    /// [`PduError::InvalidValue`] with its length as the value.
    fn time(&mut self, field: Field) -> Result<Bytes, PduError> {
        let s = self.cstr(field, max::TIME)?;
        if is_time_len(s.len()) {
            Ok(s)
        } else {
            Err(PduError::InvalidValue { field, value: s.len() as u32 })
        }
    }

    fn octets(&mut self, n: usize, field: Field) -> Result<Bytes, PduError> {
        if self.remaining() < n {
            return Err(PduError::Truncated { field });
        }
        let s = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(s)
    }

    fn address(&mut self, ton: Field, npi: Field, addr: Field, max: usize) -> Result<Address, PduError> {
        Ok(Address { ton: self.u8(ton)?, npi: self.u8(npi)?, addr: self.cstr(addr, max)? })
    }

    fn short_message(&mut self) -> Result<Bytes, PduError> {
        let len = usize::from(self.u8(Field::SmLength)?);
        // SMPP 3.4 5.2.21: "sm_length ... 0 to 254".
        if len > SHORT_MESSAGE_MAX {
            return Err(PduError::ShortMessageTooLong { len, max: SHORT_MESSAGE_MAX });
        }
        self.octets(len, Field::ShortMessage)
    }

    fn tlvs(&mut self) -> Result<Tlvs, PduError> {
        self.tlvs_with(false)
    }

    /// The TLVs, with receipt TLVs of any length when `receipt_lengths_free` (see
    /// [`tlv::validate_with`]).
    fn tlvs_with(&mut self, receipt_lengths_free: bool) -> Result<Tlvs, PduError> {
        let raw = self.buf.slice(self.pos..);
        self.pos = self.buf.len();
        tlv::validate_with(&raw, receipt_lengths_free)?;
        Ok(Tlvs::from_validated(raw))
    }

    fn finish(&self, command: CommandId) -> Result<(), PduError> {
        match self.remaining() {
            0 => Ok(()),
            len => Err(PduError::UnexpectedBody { command, len }),
        }
    }
}

fn decode_bind(r: &mut Reader) -> Result<Bind, PduError> {
    Ok(Bind {
        system_id: r.cstr(Field::SystemId, max::SYSTEM_ID)?,
        password: r.cstr(Field::Password, max::PASSWORD)?,
        system_type: r.cstr(Field::SystemType, max::SYSTEM_TYPE)?,
        interface_version: r.u8(Field::InterfaceVersion)?,
        addr_ton: r.u8(Field::AddrTon)?,
        addr_npi: r.u8(Field::AddrNpi)?,
        address_range: r.cstr(Field::AddressRange, max::ADDRESS_RANGE)?,
    })
}

#[inline]
/// A submit_sm body, or with `strict` false a deliver_sm one, which only an SMSC sends: SMPP 3.4
/// wants its time fields empty, and one a vendor filled in anyway (of any length up to 16) is
/// taken rather than the receipt it carries refused; so is a receipt TLV of the wrong length,
/// which the receipt parser passes over (see [`tlv::validate_with`]).
fn decode_submit(r: &mut Reader, strict: bool) -> Result<SubmitSm, PduError> {
    let time = |r: &mut Reader, field| if strict { r.time(field) } else { r.cstr(field, max::TIME) };
    Ok(SubmitSm {
        service_type: r.cstr(Field::ServiceType, max::SERVICE_TYPE)?,
        source: r.address(Field::SourceAddrTon, Field::SourceAddrNpi, Field::SourceAddr, max::ADDR)?,
        dest: r.address(Field::DestAddrTon, Field::DestAddrNpi, Field::DestinationAddr, max::ADDR)?,
        esm_class: r.u8(Field::EsmClass)?,
        protocol_id: r.u8(Field::ProtocolId)?,
        priority_flag: r.u8(Field::PriorityFlag)?,
        schedule_delivery_time: time(r, Field::ScheduleDeliveryTime)?,
        validity_period: time(r, Field::ValidityPeriod)?,
        registered_delivery: r.u8(Field::RegisteredDelivery)?,
        replace_if_present_flag: r.u8(Field::ReplaceIfPresentFlag)?,
        data_coding: r.u8(Field::DataCoding)?,
        sm_default_msg_id: r.u8(Field::SmDefaultMsgId)?,
        short_message: r.short_message()?,
        tlvs: r.tlvs_with(!strict)?,
    })
}

fn decode_submit_multi(r: &mut Reader) -> Result<SubmitMulti, PduError> {
    let service_type = r.cstr(Field::ServiceType, max::SERVICE_TYPE)?;
    let source = r.address(Field::SourceAddrTon, Field::SourceAddrNpi, Field::SourceAddr, max::ADDR)?;
    let n = usize::from(r.u8(Field::NumberOfDests)?);
    if n == 0 {
        return Err(PduError::InvalidValue { field: Field::NumberOfDests, value: 0 });
    }
    let mut dests = Vec::with_capacity(n);
    for _ in 0..n {
        match r.u8(Field::DestFlag)? {
            1 => dests.push(DestAddress::Sme(r.address(
                Field::DestAddrTon,
                Field::DestAddrNpi,
                Field::DestinationAddr,
                max::ADDR,
            )?)),
            2 => dests.push(DestAddress::DistributionList(r.cstr(Field::DlName, max::DL_NAME)?)),
            other => return Err(PduError::InvalidValue { field: Field::DestFlag, value: other.into() }),
        }
    }
    Ok(SubmitMulti {
        service_type,
        source,
        dests,
        esm_class: r.u8(Field::EsmClass)?,
        protocol_id: r.u8(Field::ProtocolId)?,
        priority_flag: r.u8(Field::PriorityFlag)?,
        schedule_delivery_time: r.time(Field::ScheduleDeliveryTime)?,
        validity_period: r.time(Field::ValidityPeriod)?,
        registered_delivery: r.u8(Field::RegisteredDelivery)?,
        replace_if_present_flag: r.u8(Field::ReplaceIfPresentFlag)?,
        data_coding: r.u8(Field::DataCoding)?,
        sm_default_msg_id: r.u8(Field::SmDefaultMsgId)?,
        short_message: r.short_message()?,
        tlvs: r.tlvs()?,
    })
}

/// Error responses come both with an empty body and with a lone NUL message_id: either, with a
/// non-zero status, decodes to the empty response (for query_sm_resp too, whose lone NUL would
/// otherwise lack its final_date, state and error code).
fn empty_error_body(status: CommandStatus, r: &Reader) -> bool {
    !status.is_ok() && (r.remaining() == 0 || r.buf.get(r.pos..) == Some(&[0u8][..]))
}

#[inline]
pub(crate) fn decode_body(id: CommandId, status: CommandStatus, body: Bytes) -> Result<Body, PduError> {
    let mut r = Reader { buf: body, pos: 0 };
    let r = &mut r;
    if id.is_response() && id != CommandId::GENERIC_NACK && id.name().is_some() && empty_error_body(status, r)
    {
        return Ok(Body::empty_response(CommandId(id.0 & !crate::command::RESPONSE_BIT)));
    }
    let body = match id {
        CommandId::BIND_TRANSMITTER => Body::BindTransmitter(decode_bind(r)?),
        CommandId::BIND_RECEIVER => Body::BindReceiver(decode_bind(r)?),
        CommandId::BIND_TRANSCEIVER => Body::BindTransceiver(decode_bind(r)?),
        CommandId::BIND_TRANSMITTER_RESP
        | CommandId::BIND_RECEIVER_RESP
        | CommandId::BIND_TRANSCEIVER_RESP => {
            let resp = BindResp { system_id: r.cstr(Field::SystemId, max::SYSTEM_ID)?, tlvs: r.tlvs()? };
            match id {
                CommandId::BIND_TRANSMITTER_RESP => Body::BindTransmitterResp(resp),
                CommandId::BIND_RECEIVER_RESP => Body::BindReceiverResp(resp),
                _ => Body::BindTransceiverResp(resp),
            }
        }
        CommandId::OUTBIND => Body::Outbind(Outbind {
            system_id: r.cstr(Field::SystemId, max::SYSTEM_ID)?,
            password: r.cstr(Field::Password, max::PASSWORD)?,
        }),
        CommandId::UNBIND => Body::Unbind,
        CommandId::UNBIND_RESP => Body::UnbindResp,
        CommandId::GENERIC_NACK => Body::GenericNack,
        CommandId::ENQUIRE_LINK => Body::EnquireLink,
        CommandId::ENQUIRE_LINK_RESP => Body::EnquireLinkResp,
        CommandId::CANCEL_SM_RESP => Body::CancelSmResp,
        CommandId::REPLACE_SM_RESP => Body::ReplaceSmResp,
        CommandId::SUBMIT_SM => Body::SubmitSm(decode_submit(r, true)?),
        CommandId::DELIVER_SM => Body::DeliverSm(decode_submit(r, false)?),
        CommandId::SUBMIT_SM_RESP => Body::SubmitSmResp(MessageIdResp {
            message_id: r.cstr(Field::MessageId, max::RESP_MESSAGE_ID)?,
            tlvs: r.tlvs()?,
        }),
        CommandId::DELIVER_SM_RESP => Body::DeliverSmResp(MessageIdResp {
            message_id: r.cstr(Field::MessageId, max::RESP_MESSAGE_ID)?,
            tlvs: r.tlvs()?,
        }),
        CommandId::SUBMIT_MULTI => Body::SubmitMulti(decode_submit_multi(r)?),
        CommandId::SUBMIT_MULTI_RESP => {
            let message_id = r.cstr(Field::MessageId, max::RESP_MESSAGE_ID)?;
            // A failed submit_multi_resp with a lone NUL message_id and nothing after it is seen
            // in the wild, like the other error responses: no unsuccess list. With an id, the
            // list's count is required (re-encoding would otherwise add the octet it lacked).
            if !status.is_ok() && message_id.is_empty() && r.remaining() == 0 {
                return Ok(Body::SubmitMultiResp(SubmitMultiResp {
                    message_id,
                    unsuccess: Vec::new(),
                    tlvs: Tlvs::new(),
                }));
            }
            let n = usize::from(r.u8(Field::NoUnsuccess)?);
            let mut unsuccess = Vec::with_capacity(n);
            for _ in 0..n {
                let addr =
                    r.address(Field::DestAddrTon, Field::DestAddrNpi, Field::DestinationAddr, max::ADDR)?;
                let error_status = CommandStatus(r.u32(Field::ErrorStatusCode)?);
                unsuccess.push(UnsuccessSme { addr, error_status });
            }
            // SMPP 5.0 allows TLVs here; 3.4 peers send none. Kept byte for byte.
            let tlvs = r.tlvs()?;
            Body::SubmitMultiResp(SubmitMultiResp { message_id, unsuccess, tlvs })
        }
        CommandId::DATA_SM => Body::DataSm(DataSm {
            service_type: r.cstr(Field::ServiceType, max::SERVICE_TYPE)?,
            source: r.address(Field::SourceAddrTon, Field::SourceAddrNpi, Field::SourceAddr, max::ADDR_65)?,
            dest: r.address(Field::DestAddrTon, Field::DestAddrNpi, Field::DestinationAddr, max::ADDR_65)?,
            esm_class: r.u8(Field::EsmClass)?,
            registered_delivery: r.u8(Field::RegisteredDelivery)?,
            data_coding: r.u8(Field::DataCoding)?,
            tlvs: r.tlvs()?,
        }),
        CommandId::DATA_SM_RESP => Body::DataSmResp(DataSmResp {
            message_id: r.cstr(Field::MessageId, max::RESP_MESSAGE_ID)?,
            tlvs: r.tlvs()?,
        }),
        CommandId::QUERY_SM => Body::QuerySm(QuerySm {
            message_id: r.cstr(Field::MessageId, max::MESSAGE_ID)?,
            source: r.address(Field::SourceAddrTon, Field::SourceAddrNpi, Field::SourceAddr, max::ADDR)?,
        }),
        CommandId::QUERY_SM_RESP => Body::QuerySmResp(QuerySmResp {
            message_id: r.cstr(Field::MessageId, max::RESP_MESSAGE_ID)?,
            final_date: r.cstr(Field::FinalDate, max::TIME)?, // an answer: taken as it comes
            message_state: r.u8(Field::MessageState)?,
            error_code: r.u8(Field::ErrorCode)?,
        }),
        CommandId::CANCEL_SM => Body::CancelSm(CancelSm {
            service_type: r.cstr(Field::ServiceType, max::SERVICE_TYPE)?,
            message_id: r.cstr(Field::MessageId, max::MESSAGE_ID)?,
            source: r.address(Field::SourceAddrTon, Field::SourceAddrNpi, Field::SourceAddr, max::ADDR)?,
            dest: r.address(Field::DestAddrTon, Field::DestAddrNpi, Field::DestinationAddr, max::ADDR)?,
        }),
        CommandId::REPLACE_SM => Body::ReplaceSm(ReplaceSm {
            message_id: r.cstr(Field::MessageId, max::MESSAGE_ID)?,
            source: r.address(Field::SourceAddrTon, Field::SourceAddrNpi, Field::SourceAddr, max::ADDR)?,
            schedule_delivery_time: r.time(Field::ScheduleDeliveryTime)?,
            validity_period: r.time(Field::ValidityPeriod)?,
            registered_delivery: r.u8(Field::RegisteredDelivery)?,
            sm_default_msg_id: r.u8(Field::SmDefaultMsgId)?,
            short_message: r.short_message()?,
            tlvs: r.tlvs()?,
        }),
        CommandId::ALERT_NOTIFICATION => Body::AlertNotification(AlertNotification {
            source: r.address(Field::SourceAddrTon, Field::SourceAddrNpi, Field::SourceAddr, max::ADDR_65)?,
            esme: r.address(Field::AddrTon, Field::AddrNpi, Field::EsmeAddr, max::ADDR_65)?,
            tlvs: r.tlvs()?,
        }),
        other => return Err(PduError::UnknownCommand { command_id: other.0 }),
    };
    r.finish(id)?;
    Ok(body)
}

/// short_message as it is encoded: longer than 254 octets cannot be expressed in sm_length, so
/// encoding cuts it to 254 rather than writing a PDU that lies. Builders validate before they get
/// here.
#[inline(always)]
fn sm_wire(sm: &[u8]) -> &[u8] {
    &sm[..sm.len().min(SHORT_MESSAGE_MAX)]
}

/// Encoded size of an address: TON, NPI, the address and its NUL.
#[inline(always)]
fn addr_len(a: &Address) -> usize {
    3 + a.addr.len()
}

#[inline(always)]
fn write_addr(w: &mut FrameWriter<'_>, a: &Address) {
    w.array([a.ton, a.npi]);
    w.cstr(&a.addr);
}

/// Encoded size of a submit_sm or deliver_sm body.
#[inline(always)]
fn submit_len(s: &SubmitSm) -> usize {
    // Each address counts its own TON, NPI and NUL.
    s.service_type.len()
        + addr_len(&s.source)
        + addr_len(&s.dest)
        + s.schedule_delivery_time.len()
        + s.validity_period.len()
        + sm_wire(&s.short_message).len()
        + s.tlvs.raw().len()
        + 3 // the NULs of service_type, schedule_delivery_time and validity_period
        + 3 // esm_class, protocol_id, priority_flag
        + 5 // registered_delivery .. sm_default_msg_id, sm_length
}

#[inline(always)]
fn write_submit(w: &mut FrameWriter<'_>, s: &SubmitSm) {
    if s.service_type.is_empty() {
        // The usual case: the empty service_type's NUL and the source's TON and NPI in one write.
        w.array([0, s.source.ton, s.source.npi]);
        w.cstr(&s.source.addr);
    } else {
        w.cstr(&s.service_type);
        write_addr(w, &s.source);
    }
    write_addr(w, &s.dest);
    write_message_tail(
        w,
        [s.esm_class, s.protocol_id, s.priority_flag],
        &s.schedule_delivery_time,
        &s.validity_period,
        [s.registered_delivery, s.replace_if_present_flag, s.data_coding, s.sm_default_msg_id],
        &s.short_message,
        s.tlvs.raw(),
    );
}

/// What submit_sm, deliver_sm and submit_multi share after their destination(s): esm_class ..
/// sm_default_msg_id, short_message and the TLVs.
#[inline(always)]
fn write_message_tail(
    w: &mut FrameWriter<'_>,
    flags: [u8; 3],
    schedule_delivery_time: &[u8],
    validity_period: &[u8],
    flags2: [u8; 4],
    short_message: &[u8],
    tlvs: &[u8],
) {
    let sm = sm_wire(short_message);
    let [a, b, c, d] = flags2;
    let [e, f, g] = flags;
    if schedule_delivery_time.is_empty() && validity_period.is_empty() {
        // The usual case (deliver now, the SMSC's default validity): the ten fixed octets from
        // esm_class to sm_length, both empty times' NULs among them, in one write.
        w.array([e, f, g, 0, 0, a, b, c, d, sm.len() as u8]);
    } else {
        w.array(flags);
        w.cstr(schedule_delivery_time);
        w.cstr(validity_period);
        w.array([a, b, c, d, sm.len() as u8]);
    }
    w.slice(sm);
    w.slice(tlvs);
}

/// One submit_sm or deliver_sm frame: length computed first, header written with it, one pass.
#[inline(always)]
fn encode_submit(id: CommandId, status: CommandStatus, seq: u32, s: &SubmitSm, out: &mut BytesMut) {
    let len = HEADER_LEN + submit_len(s);
    let mut w = FrameWriter::new(out, len);
    w.header(len as u32, id.0, status.0, seq);
    write_submit(&mut w, s);
    w.finish();
}

/// One frame of a response carrying a message_id and TLVs.
#[inline(always)]
fn encode_id_resp(
    id: CommandId,
    status: CommandStatus,
    seq: u32,
    message_id: &[u8],
    tlvs: &[u8],
    out: &mut BytesMut,
) {
    let empty = omit_error_body(status, message_id) && tlvs.is_empty();
    if tlvs.is_empty() && message_id.len() <= SHORT_CSTR_MAX {
        return header_and_cstr(out, id.0, status.0, seq, message_id, !empty);
    }
    let len = HEADER_LEN + if empty { 0 } else { message_id.len() + 1 + tlvs.len() };
    let mut w = FrameWriter::new(out, len);
    w.header(len as u32, id.0, status.0, seq);
    if !empty {
        w.cstr(message_id);
        w.slice(tlvs);
    }
    w.finish();
}

fn bind_len(b: &Bind) -> usize {
    b.system_id.len() + b.password.len() + b.system_type.len() + b.address_range.len() + 4 + 3
}

fn write_bind(w: &mut FrameWriter<'_>, b: &Bind) {
    w.cstr(&b.system_id);
    w.cstr(&b.password);
    w.cstr(&b.system_type);
    w.array([b.interface_version, b.addr_ton, b.addr_npi]);
    w.cstr(&b.address_range);
}

/// An error response whose fields are all empty is sent with an empty body: SMPP 3.4 says of
/// submit_sm_resp "the body is not returned if the command_status field contains a non-zero value".
#[inline(always)]
fn omit_error_body(status: CommandStatus, id_field: &[u8]) -> bool {
    !status.is_ok() && id_field.is_empty()
}

fn omit_bind_resp(status: CommandStatus, b: &BindResp) -> bool {
    omit_error_body(status, &b.system_id) && b.tlvs.is_empty()
}

fn omit_submit_multi_resp(status: CommandStatus, m: &SubmitMultiResp) -> bool {
    omit_error_body(status, &m.message_id) && m.unsuccess.is_empty() && m.tlvs.is_empty()
}

fn omit_query_sm_resp(status: CommandStatus, q: &QuerySmResp) -> bool {
    omit_error_body(status, &q.message_id)
        && q.final_date.is_empty()
        && q.message_state == 0
        && q.error_code == 0
}

fn dests(s: &SubmitMulti) -> &[DestAddress] {
    &s.dests[..s.dests.len().min(DESTS_MAX)]
}

fn unsuccess(m: &SubmitMultiResp) -> &[UnsuccessSme] {
    &m.unsuccess[..m.unsuccess.len().min(DESTS_MAX)]
}

/// Encoded size of the bodies [`write_other_body`] writes. The two must agree octet for octet (a
/// disagreement panics in [`append_frame`]; the round-trip property tests cover every body).
fn other_body_len(body: &Body, status: CommandStatus) -> usize {
    match body {
        Body::BindTransmitter(b) | Body::BindReceiver(b) | Body::BindTransceiver(b) => bind_len(b),
        Body::BindTransmitterResp(b) | Body::BindReceiverResp(b) | Body::BindTransceiverResp(b) => {
            if omit_bind_resp(status, b) {
                0
            } else {
                b.system_id.len() + 1 + b.tlvs.raw().len()
            }
        }
        Body::Outbind(o) => o.system_id.len() + 1 + o.password.len() + 1,
        Body::Unbind
        | Body::UnbindResp
        | Body::GenericNack
        | Body::EnquireLink
        | Body::EnquireLinkResp
        | Body::CancelSmResp
        | Body::ReplaceSmResp => 0,
        Body::SubmitSm(s) | Body::DeliverSm(s) => submit_len(s),
        Body::SubmitSmResp(m) | Body::DeliverSmResp(m) => {
            if omit_error_body(status, &m.message_id) && m.tlvs.is_empty() {
                0
            } else {
                m.message_id.len() + 1 + m.tlvs.raw().len()
            }
        }
        Body::SubmitMulti(s) => {
            let dests: usize = dests(s)
                .iter()
                .map(|d| match d {
                    DestAddress::Sme(a) => 1 + addr_len(a),
                    DestAddress::DistributionList(n) => 1 + n.len() + 1,
                })
                .sum();
            s.service_type.len()
                + 1
                + addr_len(&s.source)
                + 1
                + dests
                + 3
                + s.schedule_delivery_time.len()
                + 1
                + s.validity_period.len()
                + 1
                + 5
                + sm_wire(&s.short_message).len()
                + s.tlvs.raw().len()
        }
        Body::SubmitMultiResp(m) => {
            if omit_submit_multi_resp(status, m) {
                0
            } else {
                let list: usize = unsuccess(m).iter().map(|u| addr_len(&u.addr) + 4).sum();
                m.message_id.len() + 1 + 1 + list + m.tlvs.raw().len()
            }
        }
        Body::DataSm(d) => {
            d.service_type.len() + 1 + addr_len(&d.source) + addr_len(&d.dest) + 3 + d.tlvs.raw().len()
        }
        Body::DataSmResp(d) => {
            if omit_error_body(status, &d.message_id) && d.tlvs.is_empty() {
                0
            } else {
                d.message_id.len() + 1 + d.tlvs.raw().len()
            }
        }
        Body::QuerySm(q) => q.message_id.len() + 1 + addr_len(&q.source),
        Body::QuerySmResp(q) => {
            if omit_query_sm_resp(status, q) {
                0
            } else {
                q.message_id.len() + 1 + q.final_date.len() + 1 + 2
            }
        }
        Body::CancelSm(c) => {
            c.service_type.len() + 1 + c.message_id.len() + 1 + addr_len(&c.source) + addr_len(&c.dest)
        }
        Body::ReplaceSm(r) => {
            r.message_id.len()
                + 1
                + addr_len(&r.source)
                + r.schedule_delivery_time.len()
                + 1
                + r.validity_period.len()
                + 1
                + 3
                + sm_wire(&r.short_message).len()
                + r.tlvs.raw().len()
        }
        Body::AlertNotification(a) => addr_len(&a.source) + addr_len(&a.esme) + a.tlvs.raw().len(),
    }
}

/// Writes any body; [`Pdu::encode`] has its own inlined paths for the hot ones.
fn write_other_body(w: &mut FrameWriter<'_>, body: &Body, status: CommandStatus) {
    match body {
        Body::BindTransmitter(b) | Body::BindReceiver(b) | Body::BindTransceiver(b) => write_bind(w, b),
        Body::BindTransmitterResp(b) | Body::BindReceiverResp(b) | Body::BindTransceiverResp(b) => {
            if !omit_bind_resp(status, b) {
                w.cstr(&b.system_id);
                w.slice(b.tlvs.raw());
            }
        }
        Body::Outbind(o) => {
            w.cstr(&o.system_id);
            w.cstr(&o.password);
        }
        Body::Unbind
        | Body::UnbindResp
        | Body::GenericNack
        | Body::EnquireLink
        | Body::EnquireLinkResp
        | Body::CancelSmResp
        | Body::ReplaceSmResp => {}
        Body::SubmitSm(s) | Body::DeliverSm(s) => write_submit(w, s),
        Body::SubmitSmResp(m) | Body::DeliverSmResp(m) => {
            if !(omit_error_body(status, &m.message_id) && m.tlvs.is_empty()) {
                w.cstr(&m.message_id);
                w.slice(m.tlvs.raw());
            }
        }
        Body::SubmitMulti(s) => {
            w.cstr(&s.service_type);
            write_addr(w, &s.source);
            let dests = dests(s);
            w.u8(dests.len() as u8);
            for d in dests {
                match d {
                    DestAddress::Sme(a) => {
                        w.u8(1);
                        write_addr(w, a);
                    }
                    DestAddress::DistributionList(n) => {
                        w.u8(2);
                        w.cstr(n);
                    }
                }
            }
            write_message_tail(
                w,
                [s.esm_class, s.protocol_id, s.priority_flag],
                &s.schedule_delivery_time,
                &s.validity_period,
                [s.registered_delivery, s.replace_if_present_flag, s.data_coding, s.sm_default_msg_id],
                &s.short_message,
                s.tlvs.raw(),
            );
        }
        Body::SubmitMultiResp(m) => {
            if !omit_submit_multi_resp(status, m) {
                w.cstr(&m.message_id);
                let list = unsuccess(m);
                w.u8(list.len() as u8);
                for u in list {
                    write_addr(w, &u.addr);
                    w.u32(u.error_status.0);
                }
                w.slice(m.tlvs.raw());
            }
        }
        Body::DataSm(d) => {
            w.cstr(&d.service_type);
            write_addr(w, &d.source);
            write_addr(w, &d.dest);
            w.array([d.esm_class, d.registered_delivery, d.data_coding]);
            w.slice(d.tlvs.raw());
        }
        Body::DataSmResp(d) => {
            if !(omit_error_body(status, &d.message_id) && d.tlvs.is_empty()) {
                w.cstr(&d.message_id);
                w.slice(d.tlvs.raw());
            }
        }
        Body::QuerySm(q) => {
            w.cstr(&q.message_id);
            write_addr(w, &q.source);
        }
        Body::QuerySmResp(q) => {
            if !omit_query_sm_resp(status, q) {
                w.cstr(&q.message_id);
                w.cstr(&q.final_date);
                w.array([q.message_state, q.error_code]);
            }
        }
        Body::CancelSm(c) => {
            w.cstr(&c.service_type);
            w.cstr(&c.message_id);
            write_addr(w, &c.source);
            write_addr(w, &c.dest);
        }
        Body::ReplaceSm(r) => {
            w.cstr(&r.message_id);
            write_addr(w, &r.source);
            w.cstr(&r.schedule_delivery_time);
            w.cstr(&r.validity_period);
            let sm = sm_wire(&r.short_message);
            w.array([r.registered_delivery, r.sm_default_msg_id, sm.len() as u8]);
            w.slice(sm);
            w.slice(r.tlvs.raw());
        }
        Body::AlertNotification(a) => {
            write_addr(w, &a.source);
            write_addr(w, &a.esme);
            w.slice(a.tlvs.raw());
        }
    }
}
