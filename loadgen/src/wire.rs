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

/// The fields of a submit_sm the simulator acts on, borrowed from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubmitView<'a> {
    /// source_addr_ton, source_addr_npi, source_addr.
    pub source: (u8, u8, &'a [u8]),
    /// dest_addr_ton, dest_addr_npi, destination_addr.
    pub dest: (u8, u8, &'a [u8]),
    /// esm_class.
    pub esm_class: u8,
    /// registered_delivery.
    pub registered_delivery: u8,
    /// data_coding.
    pub data_coding: u8,
    /// short_message.
    pub short_message: &'a [u8],
}

/// Reads a C-octet string of at most `max` octets counting its NUL.
fn cstr<'a>(b: &'a [u8], pos: &mut usize, max: usize) -> Option<&'a [u8]> {
    let rest = b.get(*pos..)?;
    let n = rest.iter().take(max).position(|&c| c == 0)?;
    *pos += n + 1;
    Some(&rest[..n])
}

fn octet(b: &[u8], pos: &mut usize) -> Option<u8> {
    let v = *b.get(*pos)?;
    *pos += 1;
    Some(v)
}

impl<'a> SubmitView<'a> {
    /// The fast path for the common submit_sm: parses a body without optional parameters under
    /// the codec's bounds (SMPP 3.4 4.4.1). `None` for anything else (TLVs, a field over its
    /// bound, a short body): the caller then hands the frame to the codec, which says precisely
    /// what is wrong, so the fast path never accepts what the codec refuses.
    pub fn parse(body: &'a [u8]) -> Option<SubmitView<'a>> {
        use smppgw_codec::max;
        let p = &mut 0usize;
        cstr(body, p, max::SERVICE_TYPE)?;
        let source = (octet(body, p)?, octet(body, p)?, cstr(body, p, max::ADDR)?);
        let dest = (octet(body, p)?, octet(body, p)?, cstr(body, p, max::ADDR)?);
        let esm_class = octet(body, p)?;
        let _protocol_id = octet(body, p)?;
        let _priority = octet(body, p)?;
        cstr(body, p, max::TIME)?;
        cstr(body, p, max::TIME)?;
        let registered_delivery = octet(body, p)?;
        let _replace = octet(body, p)?;
        let data_coding = octet(body, p)?;
        let _default_msg = octet(body, p)?;
        let len = usize::from(octet(body, p)?);
        if len > smppgw_codec::SHORT_MESSAGE_MAX || body.len() != *p + len {
            return None;
        }
        Some(SubmitView {
            source,
            dest,
            esm_class,
            registered_delivery,
            data_coding,
            short_message: &body[*p..],
        })
    }

    /// The same fields of a decoded submit_sm.
    pub fn of(sm: &'a smppgw_codec::SubmitSm) -> SubmitView<'a> {
        SubmitView {
            source: (sm.source.ton, sm.source.npi, &sm.source.addr),
            dest: (sm.dest.ton, sm.dest.npi, &sm.dest.addr),
            esm_class: sm.esm_class,
            registered_delivery: sm.registered_delivery,
            data_coding: sm.data_coding,
            short_message: &sm.short_message,
        }
    }
}

/// The message_id of a submit_sm_resp body, when it is exactly a C-octet string of at most 65
/// octets (or empty, as error responses are); `None` sends the frame to the codec.
#[inline]
pub fn id_resp_body(body: &[u8]) -> Option<&[u8]> {
    match body.split_last() {
        None => Some(body),
        Some((0, id)) if id.len() < smppgw_codec::max::MESSAGE_ID && !id.contains(&0) => Some(id),
        _ => None,
    }
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
            Body::SubmitSmResp(MessageIdResp {
                message_id: bytes::Bytes::from_static(b"abc123"),
                tlvs: Default::default(),
            }),
        );
        assert_eq!(&a[..], &p.to_bytes()[..]);
        let mut e = BytesMut::new();
        put_id_resp(&mut e, CommandId::SUBMIT_SM_RESP, 9, CommandStatus::ESME_RTHROTTLED, b"");
        let back = Decoder::default().decode(&mut e).unwrap().unwrap();
        assert_eq!(back.command_status, CommandStatus::ESME_RTHROTTLED);
        assert_eq!(back.sequence_number, 9);
    }

    #[test]
    fn submit_view_agrees_with_the_codec() {
        // Goal: the fast path reads the same fields as the codec, and declines (rather than
        // misreads) bodies with TLVs, fields over their bounds or trailing bytes.
        use smppgw_codec::{Address, SubmitSm, Tlvs};
        let sm = SubmitSm {
            service_type: bytes::Bytes::from_static(b"CMT"),
            source: Address::new(1, 1, &b"15550001111"[..]),
            dest: Address::new(2, 9, &b"447700900123"[..]),
            esm_class: 0x40,
            registered_delivery: 1,
            data_coding: 8,
            validity_period: bytes::Bytes::from_static(b"000001000000000R"),
            short_message: bytes::Bytes::from_static(b"\x05\x00\x03\x01\x02\x01hi"),
            ..SubmitSm::default()
        };
        let frame = Pdu::new(3, Body::SubmitSm(sm.clone())).to_bytes();
        assert_eq!(SubmitView::parse(&frame[16..]), Some(SubmitView::of(&sm)));
        let with_tlv = SubmitSm { tlvs: Tlvs::builder().u16(0x020C, 7).build(), ..sm.clone() };
        let frame = Pdu::new(3, Body::SubmitSm(with_tlv)).to_bytes();
        assert_eq!(SubmitView::parse(&frame[16..]), None);
        let long_addr = SubmitSm { source: Address::new(1, 1, vec![b'1'; 21]), ..sm };
        let frame = Pdu::new(3, Body::SubmitSm(long_addr)).to_bytes();
        assert_eq!(SubmitView::parse(&frame[16..]), None);
        assert!(Decoder::default().decode(&mut BytesMut::from(&frame[..])).is_err());
        // All zeros: 17 octets are the shortest valid submit_sm. Shorter is refused by both; longer
        // is a TLV area (the codec's business), which the fast path declines.
        for cut in 0..24 {
            let mut f = BytesMut::new();
            put_empty(&mut f, CommandId::SUBMIT_SM, CommandStatus::ESME_ROK, 1);
            f.extend_from_slice(&[0u8; 24][..cut]);
            let n = f.len() as u32;
            f[..4].copy_from_slice(&n.to_be_bytes());
            let codec_ok = Decoder::default().decode(&mut f.clone()).is_ok_and(|p| p.is_some());
            assert_eq!(SubmitView::parse(&f[16..]).is_some(), cut == 17, "cut {cut}");
            assert_eq!(codec_ok, cut == 17 || cut % 4 == 1 && cut > 17, "codec, cut {cut}");
        }
        assert_eq!(id_resp_body(b"abc\0"), Some(&b"abc"[..]));
        assert_eq!(id_resp_body(b""), Some(&b""[..]));
        assert_eq!(id_resp_body(b"abc"), None);
        assert_eq!(id_resp_body(b"a\0b\0"), None);
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
