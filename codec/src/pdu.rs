//! PDU types and their body decode/encode pairs (SMPP 3.4 section 4).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{Field, PduError};
use crate::tlv::Tlvs;
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
    pub const TIME: usize = 17;
    pub const MESSAGE_ID: usize = 65;
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
    /// empty body, or generic_nack for unknown commands.
    pub fn error_response(h: &Header, status: CommandStatus) -> Pdu {
        Pdu::with_status(h.sequence_number, status, Body::empty_response(h.command_id))
    }

    /// The command_id of the body.
    pub const fn command_id(&self) -> CommandId {
        self.body.command_id()
    }

    /// Decodes one whole frame (header included). The caller has already checked command_length
    /// (see [`crate::Decoder`]); this checks the body.
    // Inlined, with `decode_body`, so that the decoded body is built where the caller keeps it
    // rather than moved through each layer's `Result` (each move a 260-octet memcpy).
    #[inline]
    pub fn decode_frame(frame: Bytes) -> Result<Pdu, (Header, PduError)> {
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

    /// Appends the encoded PDU to `out`: one pass, command_length back-patched once.
    pub fn encode(&self, out: &mut BytesMut) {
        let start = out.len();
        out.reserve(HEADER_LEN + 64);
        out.put_u32(0);
        out.put_u32(self.command_id().0);
        out.put_u32(self.command_status.0);
        out.put_u32(self.sequence_number);
        encode_body(&self.body, self.command_status, out);
        let len = (out.len() - start) as u32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// The PDU encoded into a new buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(128);
        self.encode(&mut b);
        b.freeze()
    }
}

/// Encodes a submit_sm (or, with `CommandId::DELIVER_SM`, a deliver_sm) from a borrowed body, so a
/// caller that keeps the message (a vendor window, a retry queue) need not clone it to send it.
pub fn encode_short_message(
    command_id: CommandId,
    sequence_number: u32,
    body: &SubmitSm,
    out: &mut BytesMut,
) {
    let start = out.len();
    out.reserve(HEADER_LEN + 64);
    out.put_u32(0);
    out.put_u32(command_id.0);
    out.put_u32(CommandStatus::ESME_ROK.0);
    out.put_u32(sequence_number);
    put_submit(out, body);
    let len = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Encodes a response that carries only a message_id (submit_sm_resp, deliver_sm_resp,
/// data_sm_resp without TLVs) from a borrowed id, so the caller need not allocate one. An error
/// status with an empty id is sent with an empty body, as [`Pdu::encode`] does.
pub fn encode_message_id_resp(
    command_id: CommandId,
    command_status: CommandStatus,
    sequence_number: u32,
    message_id: &[u8],
    out: &mut BytesMut,
) {
    let empty = !command_status.is_ok() && message_id.is_empty();
    let len = HEADER_LEN + if empty { 0 } else { message_id.len() + 1 };
    out.reserve(len);
    out.put_u32(len as u32);
    out.put_u32(command_id.0);
    out.put_u32(command_status.0);
    out.put_u32(sequence_number);
    if !empty {
        put_cstr(out, message_id);
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
        let raw = self.buf.slice(self.pos..);
        self.pos = self.buf.len();
        Tlvs::decode(raw)
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
fn decode_submit(r: &mut Reader) -> Result<SubmitSm, PduError> {
    Ok(SubmitSm {
        service_type: r.cstr(Field::ServiceType, max::SERVICE_TYPE)?,
        source: r.address(Field::SourceAddrTon, Field::SourceAddrNpi, Field::SourceAddr, max::ADDR)?,
        dest: r.address(Field::DestAddrTon, Field::DestAddrNpi, Field::DestinationAddr, max::ADDR)?,
        esm_class: r.u8(Field::EsmClass)?,
        protocol_id: r.u8(Field::ProtocolId)?,
        priority_flag: r.u8(Field::PriorityFlag)?,
        schedule_delivery_time: r.cstr(Field::ScheduleDeliveryTime, max::TIME)?,
        validity_period: r.cstr(Field::ValidityPeriod, max::TIME)?,
        registered_delivery: r.u8(Field::RegisteredDelivery)?,
        replace_if_present_flag: r.u8(Field::ReplaceIfPresentFlag)?,
        data_coding: r.u8(Field::DataCoding)?,
        sm_default_msg_id: r.u8(Field::SmDefaultMsgId)?,
        short_message: r.short_message()?,
        tlvs: r.tlvs()?,
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
        schedule_delivery_time: r.cstr(Field::ScheduleDeliveryTime, max::TIME)?,
        validity_period: r.cstr(Field::ValidityPeriod, max::TIME)?,
        registered_delivery: r.u8(Field::RegisteredDelivery)?,
        replace_if_present_flag: r.u8(Field::ReplaceIfPresentFlag)?,
        data_coding: r.u8(Field::DataCoding)?,
        sm_default_msg_id: r.u8(Field::SmDefaultMsgId)?,
        short_message: r.short_message()?,
        tlvs: r.tlvs()?,
    })
}

/// Error responses come both with an empty body and with a lone NUL message_id: an empty body
/// with a non-zero status decodes to the empty response.
fn empty_error_body(status: CommandStatus, r: &Reader) -> bool {
    !status.is_ok() && r.remaining() == 0
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
        CommandId::SUBMIT_SM => Body::SubmitSm(decode_submit(r)?),
        CommandId::DELIVER_SM => Body::DeliverSm(decode_submit(r)?),
        CommandId::SUBMIT_SM_RESP => Body::SubmitSmResp(MessageIdResp {
            message_id: r.cstr(Field::MessageId, max::MESSAGE_ID)?,
            tlvs: r.tlvs()?,
        }),
        CommandId::DELIVER_SM_RESP => Body::DeliverSmResp(MessageIdResp {
            message_id: r.cstr(Field::MessageId, max::MESSAGE_ID)?,
            tlvs: r.tlvs()?,
        }),
        CommandId::SUBMIT_MULTI => Body::SubmitMulti(decode_submit_multi(r)?),
        CommandId::SUBMIT_MULTI_RESP => {
            let message_id = r.cstr(Field::MessageId, max::MESSAGE_ID)?;
            // A failed submit_multi_resp with a lone NUL message_id and nothing after it is seen
            // in the wild, like the other error responses: no unsuccess list.
            if !status.is_ok() && r.remaining() == 0 {
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
            message_id: r.cstr(Field::MessageId, max::MESSAGE_ID)?,
            tlvs: r.tlvs()?,
        }),
        CommandId::QUERY_SM => Body::QuerySm(QuerySm {
            message_id: r.cstr(Field::MessageId, max::MESSAGE_ID)?,
            source: r.address(Field::SourceAddrTon, Field::SourceAddrNpi, Field::SourceAddr, max::ADDR)?,
        }),
        CommandId::QUERY_SM_RESP => Body::QuerySmResp(QuerySmResp {
            message_id: r.cstr(Field::MessageId, max::MESSAGE_ID)?,
            final_date: r.cstr(Field::FinalDate, max::TIME)?,
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
            schedule_delivery_time: r.cstr(Field::ScheduleDeliveryTime, max::TIME)?,
            validity_period: r.cstr(Field::ValidityPeriod, max::TIME)?,
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

fn put_cstr(out: &mut BytesMut, s: &[u8]) {
    out.put_slice(s);
    out.put_u8(0);
}

fn put_addr(out: &mut BytesMut, a: &Address) {
    out.put_u8(a.ton);
    out.put_u8(a.npi);
    put_cstr(out, &a.addr);
}

/// short_message longer than 254 octets cannot be expressed in sm_length; encoding cuts it to
/// 254 rather than writing a PDU that lies. Builders validate before they get here.
fn put_sm(out: &mut BytesMut, sm: &[u8]) {
    let sm = &sm[..sm.len().min(SHORT_MESSAGE_MAX)];
    out.put_u8(sm.len() as u8);
    out.put_slice(sm);
}

fn put_submit(out: &mut BytesMut, s: &SubmitSm) {
    out.reserve(40 + s.source.addr.len() + s.dest.addr.len() + s.short_message.len() + s.tlvs.raw().len());
    put_cstr(out, &s.service_type);
    put_addr(out, &s.source);
    put_addr(out, &s.dest);
    out.put_u8(s.esm_class);
    out.put_u8(s.protocol_id);
    out.put_u8(s.priority_flag);
    put_cstr(out, &s.schedule_delivery_time);
    put_cstr(out, &s.validity_period);
    out.put_u8(s.registered_delivery);
    out.put_u8(s.replace_if_present_flag);
    out.put_u8(s.data_coding);
    out.put_u8(s.sm_default_msg_id);
    put_sm(out, &s.short_message);
    out.put_slice(s.tlvs.raw());
}

fn put_bind(out: &mut BytesMut, b: &Bind) {
    put_cstr(out, &b.system_id);
    put_cstr(out, &b.password);
    put_cstr(out, &b.system_type);
    out.put_u8(b.interface_version);
    out.put_u8(b.addr_ton);
    out.put_u8(b.addr_npi);
    put_cstr(out, &b.address_range);
}

/// An error response whose fields are all empty is sent with an empty body: SMPP 3.4 says of
/// submit_sm_resp "the body is not returned if the command_status field contains a non-zero value".
fn omit_error_body(status: CommandStatus, id_field: &[u8]) -> bool {
    !status.is_ok() && id_field.is_empty()
}

fn encode_body(body: &Body, status: CommandStatus, out: &mut BytesMut) {
    match body {
        Body::BindTransmitter(b) | Body::BindReceiver(b) | Body::BindTransceiver(b) => put_bind(out, b),
        Body::BindTransmitterResp(b) | Body::BindReceiverResp(b) | Body::BindTransceiverResp(b) => {
            if !(omit_error_body(status, &b.system_id) && b.tlvs.is_empty()) {
                put_cstr(out, &b.system_id);
                out.put_slice(b.tlvs.raw());
            }
        }
        Body::Outbind(o) => {
            put_cstr(out, &o.system_id);
            put_cstr(out, &o.password);
        }
        Body::Unbind
        | Body::UnbindResp
        | Body::GenericNack
        | Body::EnquireLink
        | Body::EnquireLinkResp
        | Body::CancelSmResp
        | Body::ReplaceSmResp => {}
        Body::SubmitSm(s) | Body::DeliverSm(s) => put_submit(out, s),
        Body::SubmitSmResp(m) | Body::DeliverSmResp(m) => {
            if !(omit_error_body(status, &m.message_id) && m.tlvs.is_empty()) {
                put_cstr(out, &m.message_id);
                out.put_slice(m.tlvs.raw());
            }
        }
        Body::SubmitMulti(s) => {
            put_cstr(out, &s.service_type);
            put_addr(out, &s.source);
            let dests = &s.dests[..s.dests.len().min(DESTS_MAX)];
            out.put_u8(dests.len() as u8);
            for d in dests {
                match d {
                    DestAddress::Sme(a) => {
                        out.put_u8(1);
                        put_addr(out, a);
                    }
                    DestAddress::DistributionList(n) => {
                        out.put_u8(2);
                        put_cstr(out, n);
                    }
                }
            }
            out.put_u8(s.esm_class);
            out.put_u8(s.protocol_id);
            out.put_u8(s.priority_flag);
            put_cstr(out, &s.schedule_delivery_time);
            put_cstr(out, &s.validity_period);
            out.put_u8(s.registered_delivery);
            out.put_u8(s.replace_if_present_flag);
            out.put_u8(s.data_coding);
            out.put_u8(s.sm_default_msg_id);
            put_sm(out, &s.short_message);
            out.put_slice(s.tlvs.raw());
        }
        Body::SubmitMultiResp(m) => {
            if !(omit_error_body(status, &m.message_id) && m.unsuccess.is_empty() && m.tlvs.is_empty()) {
                put_cstr(out, &m.message_id);
                let list = &m.unsuccess[..m.unsuccess.len().min(DESTS_MAX)];
                out.put_u8(list.len() as u8);
                for u in list {
                    put_addr(out, &u.addr);
                    out.put_u32(u.error_status.0);
                }
                out.put_slice(m.tlvs.raw());
            }
        }
        Body::DataSm(d) => {
            put_cstr(out, &d.service_type);
            put_addr(out, &d.source);
            put_addr(out, &d.dest);
            out.put_u8(d.esm_class);
            out.put_u8(d.registered_delivery);
            out.put_u8(d.data_coding);
            out.put_slice(d.tlvs.raw());
        }
        Body::DataSmResp(d) => {
            if !(omit_error_body(status, &d.message_id) && d.tlvs.is_empty()) {
                put_cstr(out, &d.message_id);
                out.put_slice(d.tlvs.raw());
            }
        }
        Body::QuerySm(q) => {
            put_cstr(out, &q.message_id);
            put_addr(out, &q.source);
        }
        Body::QuerySmResp(q) => {
            if !(omit_error_body(status, &q.message_id)
                && q.final_date.is_empty()
                && q.message_state == 0
                && q.error_code == 0)
            {
                put_cstr(out, &q.message_id);
                put_cstr(out, &q.final_date);
                out.put_u8(q.message_state);
                out.put_u8(q.error_code);
            }
        }
        Body::CancelSm(c) => {
            put_cstr(out, &c.service_type);
            put_cstr(out, &c.message_id);
            put_addr(out, &c.source);
            put_addr(out, &c.dest);
        }
        Body::ReplaceSm(r) => {
            put_cstr(out, &r.message_id);
            put_addr(out, &r.source);
            put_cstr(out, &r.schedule_delivery_time);
            put_cstr(out, &r.validity_period);
            out.put_u8(r.registered_delivery);
            out.put_u8(r.sm_default_msg_id);
            put_sm(out, &r.short_message);
            out.put_slice(r.tlvs.raw());
        }
        Body::AlertNotification(a) => {
            put_addr(out, &a.source);
            put_addr(out, &a.esme);
            out.put_slice(a.tlvs.raw());
        }
    }
}
