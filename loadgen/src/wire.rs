//! Hand-written encoders for the PDUs on the hot paths, straight into the write buffer, and the
//! small helpers both tools share. Everything else goes through the codec's [`smppgw_codec::Pdu`].
//! The layouts follow SMPP 3.4 section 4 and are checked against the codec in the tests below.

use bytes::{BufMut, BytesMut};
use smppgw_codec::{CommandId, CommandStatus, HEADER_LEN};

/// The header fields of a frame, read without decoding its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawHeader {
    /// command_length.
    pub len: u32,
    /// command_id.
    pub id: CommandId,
    /// command_status.
    pub status: CommandStatus,
    /// sequence_number.
    pub seq: u32,
}

/// Reads the header of a frame of at least 16 octets (`None` if shorter).
#[inline]
pub fn peek_header(b: &[u8]) -> Option<RawHeader> {
    let h = b.get(..HEADER_LEN)?;
    let w = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    Some(RawHeader { len: w(0), id: CommandId(w(4)), status: CommandStatus(w(8)), seq: w(12) })
}

/// Appends a header with a placeholder length; returns where the PDU starts, for [`finish`].
#[inline]
pub fn begin(out: &mut BytesMut, id: CommandId, status: CommandStatus, seq: u32) -> usize {
    let start = out.len();
    out.put_u32(0);
    out.put_u32(id.0);
    out.put_u32(status.0);
    out.put_u32(seq);
    start
}

/// Back-patches command_length of the PDU that starts at `start`.
#[inline]
pub fn finish(out: &mut BytesMut, start: usize) {
    let len = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// submit_sm_resp (or deliver_sm_resp, data_sm_resp without TLVs) carrying `message_id`. With an
/// error status the body is left out, as SMPP 3.4 4.4.2 says.
#[inline]
pub fn put_id_resp(out: &mut BytesMut, id: CommandId, seq: u32, status: CommandStatus, message_id: &[u8]) {
    if status.is_ok() {
        let len = HEADER_LEN + message_id.len() + 1;
        out.reserve(len);
        out.put_u32(len as u32);
        out.put_u32(id.0);
        out.put_u32(0);
        out.put_u32(seq);
        out.put_slice(message_id);
        out.put_u8(0);
    } else {
        put_empty(out, id, status, seq);
    }
}

/// A PDU without body (enquire_link, enquire_link_resp, unbind, unbind_resp, generic_nack, and
/// error responses).
#[inline]
pub fn put_empty(out: &mut BytesMut, id: CommandId, status: CommandStatus, seq: u32) {
    out.reserve(HEADER_LEN);
    out.put_u32(HEADER_LEN as u32);
    out.put_u32(id.0);
    out.put_u32(status.0);
    out.put_u32(seq);
}

/// Appends a C-octet string.
#[inline]
pub fn put_cstr(out: &mut BytesMut, s: &[u8]) {
    out.put_slice(s);
    out.put_u8(0);
}

/// The next sequence number after `seq`: 1..=0x7FFFFFFF, wrapping (SMPP 3.4 5.1.4).
#[inline]
pub const fn next_seq(seq: u32) -> u32 {
    if seq >= 0x7FFF_FFFF { 1 } else { seq + 1 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smppgw_codec::{Body, Decoder, MessageIdResp, Pdu};

    #[test]
    fn id_resp_matches_the_codec_byte_for_byte() {
        // Goal: the hand-written submit_sm_resp is exactly what the codec encodes.
        let mut a = BytesMut::new();
        put_id_resp(&mut a, CommandId::SUBMIT_SM_RESP, 7, CommandStatus::ESME_ROK, b"abc123");
        let p = Pdu::new(
            7,
            Body::SubmitSmResp(MessageIdResp { message_id: bytes::Bytes::from_static(b"abc123") }),
        );
        assert_eq!(&a[..], &p.to_bytes()[..]);
        let mut e = BytesMut::new();
        put_id_resp(&mut e, CommandId::SUBMIT_SM_RESP, 9, CommandStatus::ESME_RTHROTTLED, b"");
        let back = Decoder::default().decode(&mut e).unwrap().unwrap();
        assert_eq!(back.command_status, CommandStatus::ESME_RTHROTTLED);
        assert_eq!(back.sequence_number, 9);
    }

    #[test]
    fn header_peek_and_seq_wrap() {
        // Goal: the header reads back, and sequence numbers stay in 1..=0x7FFFFFFF.
        let mut b = BytesMut::new();
        put_empty(&mut b, CommandId::ENQUIRE_LINK, CommandStatus::ESME_ROK, 42);
        let h = peek_header(&b).unwrap();
        assert_eq!((h.len, h.id, h.seq), (16, CommandId::ENQUIRE_LINK, 42));
        assert_eq!(peek_header(&b[..15]), None);
        assert_eq!(next_seq(0x7FFF_FFFF), 1);
        assert_eq!(next_seq(1), 2);
    }
}
