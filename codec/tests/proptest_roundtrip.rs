//! Property tests: every PDU type survives encode then decode unchanged, a stream of PDUs decodes to
//! the same PDUs however the bytes are split, and no input makes the decoder panic.

mod common;

use std::collections::BTreeSet;

use bytes::BytesMut;
use common::strategies::{body, empty_response_body, error_status, pdu};
use common::{encode, frame};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use smppgw_codec::pdu::Header;
use smppgw_codec::{Body, CommandId, CommandStatus, DecodeError, Decoder, HEADER_LEN, Pdu, QuerySmResp};

/// Decodes every PDU of `bytes` fed in chunks of the given sizes (cycled), stopping at a framing
/// error. Returns the outcomes in order and what was left undecoded.
fn decode_chunked(bytes: &[u8], chunks: &[usize]) -> (Vec<Result<Pdu, DecodeError>>, usize) {
    let decoder = Decoder::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut sizes = chunks.iter().copied().cycle();
    loop {
        loop {
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(Some(pdu)) => {
                    assert!(before - buf.len() >= HEADER_LEN, "a decoded PDU consumes its frame");
                    out.push(Ok(pdu));
                }
                Ok(None) => break,
                Err(e @ DecodeError::Framing(_)) => {
                    out.push(Err(e));
                    return (out, buf.len() + rest.len());
                }
                Err(e) => {
                    assert!(before - buf.len() >= HEADER_LEN, "a malformed PDU consumes its frame");
                    out.push(Err(e));
                }
            }
        }
        if rest.is_empty() {
            return (out, buf.len());
        }
        let n = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// decode(encode(pdu)) == pdu for every body, with any status and sequence number.
    #[test]
    fn every_pdu_round_trips(pdu in pdu()) {
        let mut buf = encode(&pdu);
        let len = buf.len();
        prop_assert_eq!(u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize, len);
        prop_assert_eq!(u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]), pdu.command_id().0);
        let decoded = Decoder::default().decode(&mut buf);
        prop_assert_eq!(decoded, Ok(Some(pdu)));
        prop_assert!(buf.is_empty(), "the whole frame is consumed");
    }

    /// Encoding appends: a PDU written after other bytes is the same frame.
    #[test]
    fn encode_appends_without_touching_what_is_there(prefix in vec(any::<u8>(), 0..40), pdu in pdu()) {
        let alone = encode(&pdu);
        let mut buf = BytesMut::from(&prefix[..]);
        pdu.encode(&mut buf);
        prop_assert_eq!(&buf[..prefix.len()], &prefix[..]);
        prop_assert_eq!(&buf[prefix.len()..], &alone[..]);
    }

    /// An error response whose fields are all empty is sent as the bare 16-octet header, and that
    /// header decodes back to the same value.
    #[test]
    fn empty_error_responses_are_bare_headers(status in error_status(), seq in any::<u32>(), body in empty_response_body()) {
        let pdu = Pdu::with_status(seq, status, body);
        let mut buf = encode(&pdu);
        prop_assert_eq!(buf.len(), HEADER_LEN);
        prop_assert_eq!(Decoder::default().decode(&mut buf), Ok(Some(pdu)));
    }

    /// An error response that carries something (a message_id, an error_code, TLVs) keeps it.
    #[test]
    fn error_responses_with_content_round_trip(status in error_status(), seq in any::<u32>(), body in body()) {
        let pdu = Pdu::with_status(seq, status, body);
        let mut buf = encode(&pdu);
        prop_assert_eq!(Decoder::default().decode(&mut buf), Ok(Some(pdu)));
    }

    /// A stream of PDUs decodes to the same PDUs, in order, whatever the read sizes.
    #[test]
    fn split_stream_decodes_the_same_pdus(
        pdus in vec(pdu(), 1..8),
        chunks in vec(1usize..=64, 1..16),
        one_byte_at_a_time in any::<bool>(),
    ) {
        let mut stream = BytesMut::new();
        for p in &pdus {
            p.encode(&mut stream);
        }
        let chunks = if one_byte_at_a_time { vec![1] } else { chunks };
        let (out, left) = decode_chunked(&stream, &chunks);
        prop_assert_eq!(left, 0);
        let expected: Vec<Result<Pdu, DecodeError>> = pdus.into_iter().map(Ok).collect();
        prop_assert_eq!(out, expected);
    }

    /// Arbitrary bytes never make the decoder panic, and a chunked feed gives the same outcomes as
    /// one read of everything.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..600), chunks in vec(1usize..=32, 1..8)) {
        let whole = decode_chunked(&bytes, &[bytes.len().max(1)]);
        let split = decode_chunked(&bytes, &chunks);
        prop_assert_eq!(whole, split);
    }

    /// Plausible garbage: valid frames with some octets overwritten and a lying length here and
    /// there. Errors are typed; malformed bodies are consumed and decoding goes on.
    #[test]
    fn mutated_frames_never_panic(
        pdus in vec(pdu(), 1..4),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        chunks in vec(1usize..=32, 1..8),
    ) {
        let mut stream = BytesMut::new();
        for p in &pdus {
            p.encode(&mut stream);
        }
        for (at, v) in &edits {
            let i = at.index(stream.len());
            stream[i] = *v;
        }
        let whole = decode_chunked(&stream, &[stream.len()]);
        let split = decode_chunked(&stream, &chunks);
        prop_assert_eq!(&whole, &split);
        for outcome in whole.0 {
            if let Err(DecodeError::Pdu { header, error }) = outcome {
                prop_assert_ne!(error.command_status(), CommandStatus::ESME_ROK);
                let resp = Pdu::error_response(&header, error.command_status());
                prop_assert_eq!(resp.sequence_number, header.sequence_number);
                // A body of the wrong length for its command gets generic_nack (4.3).
                let expected = if error.command_status() == CommandStatus::ESME_RINVCMDLEN {
                    CommandId::GENERIC_NACK
                } else {
                    header.command_id.response()
                };
                prop_assert_eq!(resp.command_id(), expected);
            }
        }
    }
}

/// The body strategy reaches every command: a property over "every PDU type" needs all of them.
#[test]
fn body_strategy_covers_every_command() {
    let mut runner = TestRunner::deterministic();
    let strategy = body();
    let mut seen = BTreeSet::new();
    for _ in 0..4000 {
        let b = strategy.new_tree(&mut runner).expect("a value").current();
        seen.insert(b.command_id().0);
    }
    assert_eq!(seen.len(), 27, "commands generated: {seen:08X?}");
}

/// The example the brief calls out: a submit_sm_resp with a non-zero status and an empty
/// message_id goes out as a bare header and comes back as the same value.
#[test]
fn throttled_submit_sm_resp_is_a_bare_header() {
    let pdu = Pdu::error_response(
        &Header {
            command_length: 0,
            command_id: CommandId::SUBMIT_SM,
            command_status: CommandStatus::ESME_ROK,
            sequence_number: 7,
        },
        CommandStatus::ESME_RTHROTTLED,
    );
    let mut buf = encode(&pdu);
    assert_eq!(&buf[..], &frame(0x8000_0004, 0x58, 7, &[])[..]);
    assert_eq!(Decoder::default().decode(&mut buf), Ok(Some(pdu)));
}

/// Regression (found by `split_stream_decodes_the_same_pdus`): a failed query_sm_resp whose only
/// content is its error_code was sent as a bare header, and the error_code was lost.
#[test]
fn query_sm_resp_error_code_survives_an_error_status() {
    let pdu = Pdu::with_status(
        0,
        CommandStatus::ESME_RINVMSGLEN,
        Body::QuerySmResp(QuerySmResp { error_code: 1, ..Default::default() }),
    );
    let mut buf = encode(&pdu);
    assert_eq!(&buf[16..], &[0, 0, 0, 1], "message_id, final_date, message_state, error_code");
    assert_eq!(Decoder::default().decode(&mut buf), Ok(Some(pdu)));
}
