//! Codec micro-benchmarks: decode and encode of the three PDUs on the hot path, for smppgw-codec
//! and for rusmpp 0.4 in the same run.
//!
//! - `submit_sm`: a 160-character GSM 03.38 text (one octet a character), as customers send.
//! - `deliver_sm`: a delivery receipt, SMPP 3.4 Appendix B text plus the receipted_message_id and
//!   message_state TLVs, as vendors send.
//! - `submit_sm_resp`: a message_id, as vendors answer.
//!
//! Decoding is measured the way a session decodes: frames are split off one read buffer holding
//! many of them (`DECODE_BATCH`), and each decoded PDU is dropped before the next. rusmpp gets the
//! same treatment through its fastest public API, the sans-IO `Command::decode` over a `BytesMut`
//! that its tokio codec calls after reading command_length. Encoding appends frames to one
//! already-grown write buffer, emptied every `ENCODE_BATCH` frames as a session's is after each
//! write; for rusmpp that is its codec's encode (reserve, command_length, `Encode::encode`). Group ids are `decode/<pdu>/<implementation>`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use criterion::{Criterion, criterion_group, criterion_main};
use rusmpp::Command;
use rusmpp::decode::DecodeWithLength;
use rusmpp::encode::Length;
use rusmpp::encode::owned::Encode;
use smppgw_codec::{Address, Body, Decoder, MessageIdResp, Pdu, SubmitSm, Tlvs, tag};

/// Frames in one read buffer when decoding: a full 64 KiB socket read holds about this many
/// submit_sm, so the one-off cost of sharing the buffer is spread as it is in a session.
const DECODE_BATCH: u64 = 256;

/// Frames appended to one write buffer before it is emptied when encoding.
const ENCODE_BATCH: usize = 64;

fn submit_sm() -> Pdu {
    let text: Vec<u8> =
        b"Your verification code is 480213. It expires in 10 minutes. Do not share it with anyone. \
Reply STOP to opt out of messages from ACME Bank. "
            .iter()
            .copied()
            .cycle()
            .take(160)
            .collect();
    assert_eq!(text.len(), 160);
    Pdu::new(
        0x0001_0001,
        Body::SubmitSm(SubmitSm {
            service_type: Bytes::new(),
            source: Address::new(5, 0, Bytes::from_static(b"ACMEBANK")),
            dest: Address::new(1, 1, Bytes::from_static(b"447700900123")),
            registered_delivery: 1,
            data_coding: 0,
            short_message: Bytes::from(text),
            ..SubmitSm::default()
        }),
    )
}

fn deliver_sm_receipt() -> Pdu {
    let text = b"id:7f3a9c1e5b sub:001 dlvrd:001 submit date:2611251803 done date:2611251804 \
stat:DELIVRD err:000 text:Your verification co";
    Pdu::new(
        0x0002_0002,
        Body::DeliverSm(SubmitSm {
            source: Address::new(1, 1, Bytes::from_static(b"447700900123")),
            dest: Address::new(5, 0, Bytes::from_static(b"ACMEBANK")),
            esm_class: 0x04,
            short_message: Bytes::from_static(text),
            tlvs: Tlvs::builder()
                .cstr(tag::RECEIPTED_MESSAGE_ID, b"7f3a9c1e5b")
                .u8(tag::MESSAGE_STATE, 2)
                .build(),
            ..SubmitSm::default()
        }),
    )
}

fn submit_sm_resp() -> Pdu {
    Pdu::new(
        0x0001_0001,
        Body::SubmitSmResp(MessageIdResp {
            message_id: Bytes::from_static(b"7f3a9c1e5b"),
            tlvs: Default::default(),
        }),
    )
}

/// rusmpp's decode of the frame at the front of `src`, as its codec does it.
fn rusmpp_decode(src: &mut BytesMut) -> Command {
    let command_length = src.get_u32() as usize;
    let (command, _size) = Command::decode(src, command_length - 4).expect("rusmpp decodes the frame");
    command
}

/// rusmpp's encode of one frame, as its codec does it.
fn rusmpp_encode(command: &Command, dst: &mut BytesMut) {
    let command_length = 4 + command.length();
    dst.reserve(command_length);
    dst.put_u32(command_length as u32);
    command.encode(dst);
}

/// Times `decode_one` over `iters` frames, `DECODE_BATCH` frames to a read buffer. Filling the
/// buffers is not timed; splitting frames off, decoding and dropping the PDUs is.
fn time_decode(frame: &[u8], iters: u64, mut decode_one: impl FnMut(&mut BytesMut)) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(DECODE_BATCH);
        let mut buf = BytesMut::with_capacity(frame.len() * n as usize);
        for _ in 0..n {
            buf.extend_from_slice(frame);
        }
        let start = Instant::now();
        for _ in 0..n {
            decode_one(&mut buf);
        }
        total += start.elapsed();
        assert!(buf.is_empty());
        left -= n;
    }
    total
}

fn bench_pdu(c: &mut Criterion, name: &str, pdu: &Pdu) {
    let frame = pdu.to_bytes();
    let decoder = Decoder::default();
    let mut probe = BytesMut::from(&frame[..]);
    let command = rusmpp_decode(&mut probe);
    // Both encoders write the same bytes, so both decoders read the same input.
    let mut theirs = BytesMut::new();
    rusmpp_encode(&command, &mut theirs);
    assert_eq!(&theirs[..], &frame[..], "rusmpp and smppgw encode {name} differently");

    let mut g = c.benchmark_group(format!("decode/{name}"));
    g.bench_function("smppgw", |b| {
        b.iter_custom(|iters| {
            time_decode(&frame, iters, |buf| {
                let pdu = decoder.decode(buf).expect("valid").expect("whole frame");
                black_box(pdu);
            })
        })
    });
    g.bench_function("rusmpp", |b| {
        b.iter_custom(|iters| {
            time_decode(&frame, iters, |buf| {
                black_box(rusmpp_decode(buf));
            })
        })
    });
    g.finish();

    let mut g = c.benchmark_group(format!("encode/{name}"));
    let mut out = BytesMut::with_capacity(frame.len() * ENCODE_BATCH);
    g.bench_function("smppgw", |b| {
        b.iter_custom(|iters| time_encode(iters, &mut out, |out| black_box(pdu).encode(out)))
    });
    g.bench_function("rusmpp", |b| {
        b.iter_custom(|iters| time_encode(iters, &mut out, |out| rusmpp_encode(black_box(&command), out)))
    });
    g.finish();
}

/// Times `encode_one` over `iters` frames, appended `ENCODE_BATCH` at a time to `out` (already
/// grown to hold a batch), which is emptied between batches as a session's write buffer is after
/// each write. Each frame lands at a different address, so neither encoder is measured at one
/// lucky or unlucky alignment between its source and destination (a single cleared buffer gave
/// run-to-run swings of a quarter, in both directions), and no per-frame test of the room is
/// timed with the encoders.
fn time_encode(iters: u64, out: &mut BytesMut, mut encode_one: impl FnMut(&mut BytesMut)) -> Duration {
    let mut left = iters;
    let start = Instant::now();
    while left > 0 {
        let n = left.min(ENCODE_BATCH as u64);
        out.clear();
        for _ in 0..n {
            encode_one(out);
        }
        black_box(&*out);
        left -= n;
    }
    start.elapsed()
}

fn codec(c: &mut Criterion) {
    bench_pdu(c, "submit_sm", &submit_sm());
    bench_pdu(c, "deliver_sm", &deliver_sm_receipt());
    bench_pdu(c, "submit_sm_resp", &submit_sm_resp());
}

criterion_group!(benches, codec);
criterion_main!(benches);
