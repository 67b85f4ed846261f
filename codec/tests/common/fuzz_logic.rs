// The stream decoder's fuzz property. One copy of the logic, used twice through include!: by the
// cargo-fuzz target (codec/fuzz/fuzz_targets/decode_stream.rs) and by codec/tests/fuzz_corpus.rs,
// which replays the seed corpus in every `cargo test` so CI runs the same checks.
//
// An input is one plan octet followed by the byte stream. The plan chooses how the stream is cut
// into reads (see `read_sizes`). The stream is decoded twice, in one read and in the planned
// reads, and both must give the same outcomes. Along the way:
// - a decoded PDU consumed its whole frame, re-encodes to a frame with a correct command_length,
//   and that frame decodes to the same PDU; with command_status 0 the re-encoding is byte for
//   byte the frame that was read (error responses may shrink: a lone NUL becomes an empty body);
// - a malformed PDU consumed exactly command_length octets and has a non-zero command_status,
//   and its error response (the request's own response or generic_nack) round-trips too;
// - a framing error consumed nothing and only comes from a command_length outside 16..=max;
// - `Ok(None)` consumed nothing and only comes while the frame is incomplete.

use bytes::BytesMut;
use smppgw_codec::{CommandId, CommandStatus, DecodeError, Decoder, FramingError, HEADER_LEN, Pdu};

/// Largest read, chosen by the low three bits of the plan octet (`usize::MAX`: everything at once).
const FUZZ_READ_SIZES_MAX: [usize; 8] = [1, 2, 3, 7, 16, 61, 512, usize::MAX];

/// Checks the decoder on one fuzz input: see the comment at the top of this file.
pub fn decode_stream(data: &[u8]) {
    let Some((&plan, stream)) = data.split_first() else {
        return;
    };
    let whole = fuzz_decode_all(stream, std::iter::repeat(usize::MAX));
    let planned = fuzz_decode_all(stream, fuzz_read_sizes(plan));
    assert_eq!(whole, planned, "the outcomes depend on how the stream was cut into reads (plan {plan:#04x})");
}

/// Read sizes in 1..=max from a xorshift generator seeded by the plan octet.
fn fuzz_read_sizes(plan: u8) -> impl Iterator<Item = usize> {
    let max = FUZZ_READ_SIZES_MAX[usize::from(plan & 7)];
    let mut state = u32::from(plan).wrapping_mul(0x9E37_79B9) | 1;
    std::iter::repeat_with(move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        1 + (state as usize) % max
    })
}

/// Feeds `stream` to a decoder in reads of the given sizes and returns every outcome, checking
/// each as it comes. Stops at the first framing error, as a session would.
fn fuzz_decode_all(stream: &[u8], mut sizes: impl Iterator<Item = usize>) -> Vec<Result<Pdu, DecodeError>> {
    let decoder = Decoder::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = stream;
    loop {
        loop {
            let before = buf.len();
            let frame = match decoder.frame_len(&mut buf) {
                Ok(Some(len)) => Some(buf[..len].to_vec()),
                _ => None,
            };
            let outcome = decoder.decode(&mut buf);
            let consumed = before - buf.len();
            match &outcome {
                Ok(Some(pdu)) => {
                    let frame = frame.expect("a PDU comes only from a whole frame");
                    assert_eq!(consumed, frame.len(), "a PDU consumes its whole frame");
                    fuzz_check_pdu(pdu, &frame);
                }
                Ok(None) => {
                    assert_eq!(consumed, 0, "Ok(None) consumes nothing");
                    assert!(frame.is_none(), "Ok(None) only while the frame is incomplete");
                }
                Err(DecodeError::Framing(e)) => {
                    assert_eq!(consumed, 0, "a framing error consumes nothing");
                    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
                    match e {
                        FramingError::TooShort { len: l, .. } => {
                            assert!(*l == len && len < HEADER_LEN as u32)
                        }
                        FramingError::TooLong { len: l, max } => {
                            assert!(*l == len && len > *max && *max == decoder.max_command_length())
                        }
                        other => panic!("unexpected framing error {other:?}"),
                    }
                }
                Err(DecodeError::Pdu { header, error }) => {
                    assert_eq!(
                        consumed, header.command_length as usize,
                        "a malformed PDU consumes its frame"
                    );
                    assert!(frame.is_some());
                    let status = error.command_status();
                    assert!(!status.is_ok(), "{error:?} maps to ESME_ROK");
                    let resp = Pdu::error_response(header, status);
                    // A body of the wrong length for its command gets generic_nack (4.3).
                    let expected = if status == CommandStatus::ESME_RINVCMDLEN {
                        CommandId::GENERIC_NACK
                    } else {
                        header.command_id.response()
                    };
                    assert_eq!(resp.command_id(), expected);
                    assert_eq!(resp.sequence_number, header.sequence_number);
                    let mut enc = BytesMut::new();
                    resp.encode(&mut enc);
                    assert_eq!(
                        Decoder::default().decode(&mut enc),
                        Ok(Some(resp)),
                        "error response round trip"
                    );
                }
                Err(other) => panic!("unexpected decode error {other:?}"),
            }
            match outcome {
                Ok(Some(pdu)) => out.push(Ok(pdu)),
                Ok(None) => break,
                Err(e @ DecodeError::Framing(_)) => {
                    out.push(Err(e));
                    return out;
                }
                Err(e) => out.push(Err(e)),
            }
        }
        if rest.is_empty() {
            return out;
        }
        let n = sizes.next().unwrap_or(usize::MAX).clamp(1, rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
}

/// A decoded PDU re-encodes to a frame that decodes to the same PDU.
fn fuzz_check_pdu(pdu: &Pdu, frame: &[u8]) {
    let mut enc = BytesMut::new();
    pdu.encode(&mut enc);
    let len = enc.len();
    assert_eq!(u32::from_be_bytes([enc[0], enc[1], enc[2], enc[3]]) as usize, len, "command_length");
    if pdu.command_status.is_ok() {
        assert_eq!(&enc[..], frame, "re-encoding {:?} changed its bytes", pdu.command_id());
    } else {
        assert!(len <= frame.len(), "re-encoding an error response never grows it");
    }
    let again = Decoder::default().decode(&mut enc);
    assert_eq!(again.as_ref(), Ok(&Some(pdu.clone())), "decode(encode(pdu)) != pdu");
    assert!(enc.is_empty());
}
