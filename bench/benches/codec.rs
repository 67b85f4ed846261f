//! Codec micro-benchmarks: decode and encode of the three PDUs on the hot path, for smppgw-codec
//! and for rusmpp 0.4 in the same run.
//!
//! - `submit_sm`: a 160-character GSM 03.38 text (one octet a character), as customers send.
//! - `deliver_sm`: a delivery receipt, SMPP 3.4 Appendix B text plus the receipted_message_id and
//!   message_state TLVs, as vendors send.
//! - `submit_sm_resp`: a message_id, as vendors answer.
//!
//! Decoding is measured the way a session decodes: frames are split off one read buffer holding
//! many of them (`DECODE_BATCH`), and each decode's result is dropped where it was returned, before
//! the next. It is not moved out of its `Result` first: both results are 264-280 octets, and the
//! two copies that unwrapping and passing them by value made (about 10 ns a frame, a quarter of a
//! submit_sm_resp decode) are the harness's, not the decoder's. The read buffer being empty at
//! the end shows every frame decoded. rusmpp gets
//! the same treatment through its fastest public API, the sans-IO `Command::decode` over a
//! `BytesMut` that its tokio codec calls after reading command_length. Encoding appends frames to
//! one already-grown write buffer, emptied every `ENCODE_BATCH` frames as a session's is after
//! each write; for rusmpp that is its codec's encode (reserve, command_length, `Encode::encode`).
//! Group ids are `decode/<pdu>/<implementation>`. After criterion, a paired comparison of the same
//! operations prints the ratios measured in alternating rounds (see [`paired`]).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use criterion::Criterion;
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

/// The receipt text of the deliver_sm case: SMPP 3.4 Appendix B, as vendors send it.
const RECEIPT_TEXT: &[u8] = b"id:7f3a9c1e5b sub:001 dlvrd:001 submit date:2611251803 done date:2611251804 \
stat:DELIVRD err:000 text:Your verification co";

fn deliver_sm_receipt() -> Pdu {
    let text = RECEIPT_TEXT;
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

/// One measured operation: `ours(iters)` and `theirs(iters)` run it `iters` times, by smppgw and
/// by rusmpp, and say how long that took.
struct Op<'a> {
    name: String,
    ours: Box<dyn FnMut(u64) -> Duration + 'a>,
    theirs: Box<dyn FnMut(u64) -> Duration + 'a>,
}

/// Decode and encode of `pdu`, by both implementations.
fn ops<'a>(name: &str, pdu: &'a Pdu) -> Vec<Op<'a>> {
    let frame = pdu.to_bytes();
    let mut probe = BytesMut::from(&frame[..]);
    let command = rusmpp_decode(&mut probe);
    // Both encoders write the same bytes, so both decoders read the same input.
    let mut theirs = BytesMut::new();
    rusmpp_encode(&command, &mut theirs);
    assert_eq!(&theirs[..], &frame[..], "rusmpp and smppgw encode {name} differently");

    let decoder = Decoder::default();
    let f1 = frame.clone();
    let f2 = frame.clone();
    let mut out1 = BytesMut::with_capacity(frame.len() * ENCODE_BATCH);
    let mut out2 = BytesMut::with_capacity(frame.len() * ENCODE_BATCH);
    let command2 = command.clone();
    vec![
        Op {
            name: format!("decode/{name}"),
            ours: Box::new(move |iters| {
                time_decode(&f1, iters, |buf| {
                    let decoded = decoder.decode(buf);
                    black_box(&decoded);
                })
            }),
            theirs: Box::new(move |iters| {
                time_decode(&f2, iters, |buf| {
                    let command_length = buf.get_u32() as usize;
                    let decoded = Command::decode(buf, command_length - 4);
                    black_box(&decoded);
                })
            }),
        },
        Op {
            name: format!("encode/{name}"),
            ours: Box::new(move |iters| time_encode(iters, &mut out1, |out| black_box(pdu).encode(out))),
            theirs: Box::new(move |iters| {
                time_encode(iters, &mut out2, |out| rusmpp_encode(black_box(&command2), out))
            }),
        },
    ]
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

fn cases() -> Vec<(&'static str, Pdu)> {
    vec![
        ("submit_sm", submit_sm()),
        ("deliver_sm", deliver_sm_receipt()),
        ("submit_sm_resp", submit_sm_resp()),
    ]
}

fn codec(c: &mut Criterion, cases: &[(&'static str, Pdu)]) {
    for (name, pdu) in cases {
        for mut op in ops(name, pdu) {
            let mut g = c.benchmark_group(op.name.clone());
            g.bench_function("smppgw", |b| b.iter_custom(|iters| (op.ours)(iters)));
            g.bench_function("rusmpp", |b| b.iter_custom(|iters| (op.theirs)(iters)));
            g.finish();
        }
    }
}

/// Parsing a receipt's text, as the gateway reads every receipt a vendor sends (ours only: rusmpp
/// has no receipt parser). The text alone, without the TLVs, so that every field is read from it.
fn receipt_parse(c: &mut Criterion) {
    let text = Bytes::from_static(RECEIPT_TEXT);
    c.bench_function("receipt/parse", |b| {
        b.iter(|| smppgw_codec::receipt::Receipt::parse_with_tlvs(black_box(&text), None, None, None))
    });
}

/// Alternating rounds of the paired comparison.
const PAIRED_ROUNDS: usize = 101;
/// Time each side of a round takes, about.
const PAIRED_SLICE: Duration = Duration::from_millis(2);

/// The ratio rusmpp / smppgw of each operation, measured in alternating rounds: each round times
/// both implementations over the same number of frames, back to back (which goes first
/// alternates), and the median of the rounds' ratios is reported with the spread of the middle
/// half, and each implementation's median ns per frame. On a shared VM the machine's speed drifts
/// by a fifth from one second to the next (its two vCPUs can be one core's two hyperthreads), and
/// criterion measures the two implementations seconds apart; within a round both see the same
/// machine, so the ratio holds still where the two criterion figures do not.
fn paired(cases: &[(&'static str, Pdu)]) {
    println!(
        "\npaired ratios, rusmpp / smppgw ({PAIRED_ROUNDS} alternating rounds of ~{PAIRED_SLICE:?} each side):"
    );
    println!(
        "{:<26} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "operation", "median", "q1", "q3", "ns ours", "ns rusmpp"
    );
    for (name, pdu) in cases {
        for mut op in ops(name, pdu) {
            // Warm up, then size a round so each side takes about PAIRED_SLICE.
            (op.ours)(10_000);
            (op.theirs)(10_000);
            let probe = (op.ours)(100_000).as_secs_f64() / 100_000.0;
            let iters = ((PAIRED_SLICE.as_secs_f64() / probe.max(1e-9)) as u64).max(1_000);
            let mut per_op: Vec<(f64, f64)> = Vec::with_capacity(PAIRED_ROUNDS);
            let mut ratios: Vec<f64> = (0..PAIRED_ROUNDS)
                .map(|round| {
                    let (ours, theirs) = if round % 2 == 0 {
                        let o = (op.ours)(iters);
                        (o, (op.theirs)(iters))
                    } else {
                        let t = (op.theirs)(iters);
                        ((op.ours)(iters), t)
                    };
                    per_op.push((
                        ours.as_secs_f64() * 1e9 / iters as f64,
                        theirs.as_secs_f64() * 1e9 / iters as f64,
                    ));
                    theirs.as_secs_f64() / ours.as_secs_f64().max(1e-12)
                })
                .collect();
            ratios.sort_by(f64::total_cmp);
            let at = |q: usize| ratios[(ratios.len() - 1) * q / 4];
            let mut o: Vec<f64> = per_op.iter().map(|p| p.0).collect();
            let mut t: Vec<f64> = per_op.iter().map(|p| p.1).collect();
            o.sort_by(f64::total_cmp);
            t.sort_by(f64::total_cmp);
            println!(
                "{:<26} {:>7.2}x {:>7.2}x {:>7.2}x {:>9.2} {:>9.2}",
                op.name,
                at(2),
                at(1),
                at(3),
                o[o.len() / 2],
                t[t.len() / 2]
            );
        }
    }
}

fn main() {
    let cases = cases();
    let mut c = Criterion::default().configure_from_args();
    codec(&mut c, &cases);
    receipt_parse(&mut c);
    c.final_summary();
    // `cargo test --benches` runs each benchmark once as a test; the comparison is for `cargo bench`
    // (and can be left out, for profiling one benchmark: SMPPGW_CODEC_PAIRED=0).
    if std::env::args().any(|a| a == "--bench")
        && std::env::var_os("SMPPGW_CODEC_PAIRED").is_none_or(|v| v != "0")
    {
        paired(&cases);
    }
}
