//! SMPP 3.4 (with the 5.0 additions) codec for smppgw.
//!
//! Sans-IO: bytes in, typed PDUs out, and back. This crate never touches a socket, a clock or a
//! runtime; callers pass in what it needs (buffers, the current time) and act on what it returns.
//! Decoded strings and bodies are [`bytes::Bytes`] slices of the input buffer, never copies.
//!
//! - [`Decoder`] frames a byte stream: `Ok(None)` until a whole PDU is buffered, a
//!   [`FramingError`] when the stream must be closed, a [`PduError`] (with its command_status)
//!   when one PDU is malformed and the session can go on.
//! - [`Pdu::encode`] writes straight into a `BytesMut`: the frame length is computed first, so the
//!   room is reserved once and the header carries its final command_length (no back-patch).
//! - [`text`] holds the alphabets, segment counting, splitting and reassembly; [`receipt`] the
//!   Appendix B delivery receipt text.

pub mod command;
pub mod error;
pub mod framing;
pub mod pdu;
pub mod receipt;
pub mod status;
pub mod text;
pub mod time;
pub mod tlv;
mod wire;

pub use command::CommandId;
pub use error::{Field, FramingError, PduError};
pub use framing::{DEFAULT_MAX_COMMAND_LENGTH, DecodeError, Decoder, RESERVE_AHEAD_BYTES_MAX};
pub use pdu::*;
pub use status::CommandStatus;
pub use tlv::{NetworkErrorCode, Tlv, Tlvs, TlvsBuilder, tag};
