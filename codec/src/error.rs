//! Decoding errors and the one function that maps them to a command_status.

use crate::{CommandId, CommandStatus};

/// A mandatory field of a PDU body, named so that an error can say which one broke its bound and
/// so that the right command_status can be chosen for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum Field {
    SystemId,
    Password,
    SystemType,
    InterfaceVersion,
    AddrTon,
    AddrNpi,
    AddressRange,
    ServiceType,
    SourceAddrTon,
    SourceAddrNpi,
    SourceAddr,
    DestAddrTon,
    DestAddrNpi,
    DestinationAddr,
    EsmeAddr,
    EsmClass,
    ProtocolId,
    PriorityFlag,
    ScheduleDeliveryTime,
    ValidityPeriod,
    RegisteredDelivery,
    ReplaceIfPresentFlag,
    DataCoding,
    SmDefaultMsgId,
    SmLength,
    ShortMessage,
    MessageId,
    FinalDate,
    MessageState,
    ErrorCode,
    NumberOfDests,
    DestFlag,
    DlName,
    NoUnsuccess,
    ErrorStatusCode,
}

impl Field {
    /// The status a peer expects when this field is malformed.
    pub const fn status(self) -> CommandStatus {
        match self {
            Field::SystemId => CommandStatus::ESME_RINVSYSID,
            Field::Password => CommandStatus::ESME_RINVPASWD,
            Field::SystemType => CommandStatus::ESME_RINVSYSTYP,
            Field::ServiceType => CommandStatus::ESME_RINVSERTYP,
            Field::SourceAddr | Field::EsmeAddr => CommandStatus::ESME_RINVSRCADR,
            Field::DestinationAddr => CommandStatus::ESME_RINVDSTADR,
            Field::SourceAddrTon => CommandStatus::ESME_RINVSRCTON,
            Field::SourceAddrNpi => CommandStatus::ESME_RINVSRCNPI,
            Field::DestAddrTon => CommandStatus::ESME_RINVDSTTON,
            Field::DestAddrNpi => CommandStatus::ESME_RINVDSTNPI,
            Field::EsmClass => CommandStatus::ESME_RINVESMCLASS,
            Field::PriorityFlag => CommandStatus::ESME_RINVPRTFLG,
            Field::RegisteredDelivery => CommandStatus::ESME_RINVREGDLVFLG,
            Field::ReplaceIfPresentFlag => CommandStatus::ESME_RINVREPFLAG,
            Field::ScheduleDeliveryTime => CommandStatus::ESME_RINVSCHED,
            Field::ValidityPeriod => CommandStatus::ESME_RINVEXPIRY,
            Field::SmDefaultMsgId => CommandStatus::ESME_RINVDFTMSGID,
            Field::SmLength | Field::ShortMessage => CommandStatus::ESME_RINVMSGLEN,
            Field::MessageId => CommandStatus::ESME_RINVMSGID,
            Field::NumberOfDests => CommandStatus::ESME_RINVNUMDESTS,
            Field::DestFlag => CommandStatus::ESME_RINVDESTFLAG,
            Field::DlName => CommandStatus::ESME_RINVDLNAME,
            // SMPP has no status of its own for a bind's address_range or interface_version: a
            // bind that cannot be read is a failed bind, not a wrong command_length.
            Field::AddressRange | Field::InterfaceVersion => CommandStatus::ESME_RBINDFAIL,
            // The rest (query_sm_resp's final_date, message_state and error_code, the unsuccess
            // list, ...) are response fields or octets without a status of their own: a response
            // that cannot be read is answered with generic_nack, and a body that cannot be read
            // is a wrong command_length.
            _ => CommandStatus::ESME_RINVCMDLEN,
        }
    }
}

/// The stream cannot be framed any more: the caller must close the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    /// command_length is below the 16-byte header.
    #[error("command_length {len} is below the {min}-byte header")]
    TooShort { len: u32, min: u32 },
    /// command_length is above the configured maximum.
    #[error("command_length {len} exceeds the maximum of {max}")]
    TooLong { len: u32, max: u32 },
    /// A frame handed to [`crate::Pdu::decode_frame`] is shorter than the header. [`crate::Decoder`]
    /// never returns this: it frames by command_length.
    #[error("frame of {len} octets is shorter than the {min}-byte header")]
    FrameTooShort { len: usize, min: usize },
    /// A frame handed to [`crate::Pdu::decode_frame`] is not command_length octets long.
    /// [`crate::Decoder`] never returns this: it frames by command_length.
    #[error("command_length {command_length} does not match the frame's {frame_len} octets")]
    LengthMismatch { command_length: u32, frame_len: usize },
}

/// One PDU was framed but its body is malformed. The frame has been consumed, the session can go
/// on, and the peer gets [`PduError::command_status`] in a response or generic_nack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PduError {
    /// command_id is not one this codec knows.
    #[error("unknown command_id 0x{command_id:08X}")]
    UnknownCommand { command_id: u32 },
    /// The body ended inside a mandatory field.
    #[error("body ends inside {field:?}")]
    Truncated { field: Field },
    /// A C-octet string has no NUL within its maximum length (which counts the NUL).
    #[error("{field:?} has no NUL within its maximum of {max} octets")]
    CStringTooLong { field: Field, max: usize },
    /// sm_length is above the 254 octets the specification allows.
    #[error("sm_length {len} exceeds the maximum of {max}")]
    ShortMessageTooLong { len: usize, max: usize },
    /// A mandatory field holds a value the specification does not allow.
    #[error("{field:?} has the invalid value {value}")]
    InvalidValue { field: Field, value: u32 },
    /// The TLV area ends inside a TLV header or value.
    #[error("optional parameter 0x{tag:04X} runs past the end of the body ({remaining} octets left)")]
    TlvTruncated { tag: u16, remaining: usize },
    /// A known TLV has a length its definition does not allow.
    #[error("optional parameter 0x{tag:04X} has length {len}, expected {min}..={max}")]
    TlvLength { tag: u16, len: usize, min: usize, max: usize },
    /// A PDU without a body (enquire_link, unbind, ...) carried one.
    #[error("{command} must have an empty body, found {len} octets")]
    UnexpectedBody { command: CommandId, len: usize },
    /// A TLV the request needs is missing.
    #[error("mandatory optional parameter 0x{tag:04X} is missing")]
    MissingTlv { tag: u16 },
    /// More destinations than number_of_dests said, or more entries than the 255 allowed.
    #[error("{field:?} count {count} exceeds {max}")]
    TooMany { field: Field, count: usize, max: usize },
}

impl PduError {
    /// The command_status to answer this error with: the one mapping for the whole codec.
    pub const fn command_status(&self) -> CommandStatus {
        match self {
            PduError::UnknownCommand { .. } => CommandStatus::ESME_RINVCMDID,
            PduError::Truncated { .. } | PduError::UnexpectedBody { .. } => CommandStatus::ESME_RINVCMDLEN,
            PduError::CStringTooLong { field, .. } | PduError::InvalidValue { field, .. } => field.status(),
            PduError::ShortMessageTooLong { .. } => CommandStatus::ESME_RINVMSGLEN,
            PduError::TlvTruncated { .. } => CommandStatus::ESME_RINVOPTPARSTREAM,
            PduError::TlvLength { .. } => CommandStatus::ESME_RINVPARLEN,
            PduError::MissingTlv { .. } => CommandStatus::ESME_RMISSINGOPTPARAM,
            PduError::TooMany { field: Field::NumberOfDests, .. } => CommandStatus::ESME_RINVNUMDESTS,
            PduError::TooMany { .. } => CommandStatus::ESME_RINVCMDLEN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bind_field_that_cannot_be_read_fails_the_bind_with_its_status() {
        // Goal: what a peer sees for each unreadable bind field; a body cut short is still a
        // wrong command_length.
        let too_long = |field| PduError::CStringTooLong { field, max: 1 }.command_status();
        assert_eq!(too_long(Field::SystemId), CommandStatus::ESME_RINVSYSID);
        assert_eq!(too_long(Field::Password), CommandStatus::ESME_RINVPASWD);
        assert_eq!(too_long(Field::SystemType), CommandStatus::ESME_RINVSYSTYP);
        assert_eq!(too_long(Field::AddressRange), CommandStatus::ESME_RBINDFAIL);
        assert_eq!(
            PduError::Truncated { field: Field::AddressRange }.command_status(),
            CommandStatus::ESME_RINVCMDLEN
        );
    }
}
