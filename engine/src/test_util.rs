//! Helpers shared by the session machines' tests.

use bytes::BytesMut;
use smppgw_codec::{DecodeError, Decoder, Pdu};

/// Feeds `chunks`, as a peer's socket would deliver them, through the stream decoder, handing
/// each PDU or decode error to `on` in order; a framing error drops what is buffered, as the
/// drivers close the session on one.
pub(crate) fn feed_chunks(chunks: Vec<Vec<u8>>, mut on: impl FnMut(Result<Pdu, DecodeError>)) {
    let decoder = Decoder::default();
    let mut buf = BytesMut::new();
    for c in chunks {
        buf.extend_from_slice(&c);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(p)) => on(Ok(p)),
                Ok(None) => break,
                Err(e) => {
                    let framing = !matches!(e, DecodeError::Pdu { .. });
                    on(Err(e));
                    if framing {
                        buf.clear();
                        break;
                    }
                }
            }
        }
    }
}

/// A PDU whose header says another command than its body is (a peer lying about command_id).
pub(crate) fn lying_header() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    (any::<u32>(), any::<u32>()).prop_map(|(q, id)| {
        let mut v = Pdu::new(q, smppgw_codec::Body::EnquireLink).to_bytes().to_vec();
        v[4..8].copy_from_slice(&id.to_be_bytes());
        v
    })
}

/// `pdu`'s octets made malformed but not a framing error: four octets of junk after a body
/// (`junk_after`, or a PDU with none), else its last octet cut, command_length following.
pub(crate) fn malformed_octets(pdu: &Pdu, junk_after: bool) -> Vec<u8> {
    let mut v = pdu.to_bytes().to_vec();
    if v.len() == 16 || junk_after {
        v.extend_from_slice(b"junk");
    } else {
        v.truncate(v.len() - 1);
    }
    let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
    v[..4].copy_from_slice(&len.to_be_bytes());
    v
}
