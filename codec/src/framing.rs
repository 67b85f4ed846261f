//! Stream framing: whole PDUs out of a growing read buffer.

use bytes::BytesMut;

use crate::error::{FramingError, PduError};
use crate::pdu::{HEADER_LEN, Header, Pdu};

/// Default ceiling on command_length. The largest legitimate PDU is a submit_multi to 255
/// destinations or a data_sm carrying a 64 KiB message_payload; 70,000 octets covers both.
pub const DEFAULT_MAX_COMMAND_LENGTH: u32 = 70_000;

/// The most room reserved in the read buffer beyond what is buffered of a frame still arriving.
/// A frame up to this size gets its whole room at once; a larger one grows the buffer as its
/// octets come, so that a peer that sends a header claiming a large frame and then stops makes
/// the session hold no more than this beyond what it actually sent.
pub const RESERVE_AHEAD_BYTES_MAX: usize = 4096;

/// Why [`Decoder::decode`] returned no PDU.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The stream cannot be framed: close the session.
    #[error("framing: {0}")]
    Framing(#[from] FramingError),
    /// One PDU was malformed and consumed; answer it with `error.command_status()` and go on.
    #[error("{} seq {}: {error}", header.command_id, header.sequence_number)]
    Pdu {
        /// The header of the consumed frame.
        header: Header,
        /// What was wrong with its body.
        error: PduError,
    },
}

/// Splits PDUs off a read buffer. Holds only the configured limit: no state between frames.
#[derive(Debug, Clone, Copy)]
pub struct Decoder {
    max_command_length: u32,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder { max_command_length: DEFAULT_MAX_COMMAND_LENGTH }
    }
}

impl Decoder {
    /// A decoder refusing command_length above `max_command_length` (at least the header size).
    pub fn new(max_command_length: u32) -> Decoder {
        Decoder { max_command_length: max_command_length.max(HEADER_LEN as u32) }
    }

    /// The configured ceiling.
    pub fn max_command_length(&self) -> u32 {
        self.max_command_length
    }

    /// Returns `Ok(None)` until a whole PDU is buffered, then splits it off `buf` and decodes it.
    /// command_length is checked as soon as its four octets arrive, before any body is buffered.
    /// Decoded fields are slices of the split frame: no copy, no allocation. Inlined so that
    /// the PDU is decoded straight into the caller's result.
    #[inline]
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Pdu>, DecodeError> {
        let Some(len) = self.frame_len(buf)? else {
            return Ok(None);
        };
        crate::pdu::decode_split(buf, len)
    }

    /// The length of the frame at the front of `buf` once it is complete; `Ok(None)` while more is
    /// needed (and room for the rest of the frame is reserved, up to [`RESERVE_AHEAD_BYTES_MAX`]
    /// beyond what is buffered: a larger frame grows the buffer as it arrives).
    #[inline]
    pub fn frame_len(&self, buf: &mut BytesMut) -> Result<Option<usize>, FramingError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if len < HEADER_LEN as u32 {
            return Err(FramingError::TooShort { len, min: HEADER_LEN as u32 });
        }
        if len > self.max_command_length {
            return Err(FramingError::TooLong { len, max: self.max_command_length });
        }
        let len = len as usize;
        if buf.len() < len {
            // Room for the rest as it arrives, not at once: a header alone must not make the
            // session hold max_command_length (a small PDU gets all of its room here).
            buf.reserve((len - buf.len()).min(RESERVE_AHEAD_BYTES_MAX));
            return Ok(None);
        }
        Ok(Some(len))
    }
}
