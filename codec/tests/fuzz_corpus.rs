//! The fuzz target's checks, run by `cargo test`: every seed corpus file of the `decode_stream`
//! target is replayed through the same logic (included from tests/common/fuzz_logic.rs), and a
//! property test feeds it random and mutated inputs for machines without a fuzzer.
//!
//! The seed corpus is written by `write_seed_corpus` below (ignored; run it after changing it):
//! `cargo test -p smppgw-codec --test fuzz_corpus -- --ignored write_seed_corpus`.

mod common;

mod fuzz_logic {
    include!("common/fuzz_logic.rs");
}

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use common::frame;
use proptest::collection::vec;
use proptest::prelude::*;
use smppgw_codec::{
    Address, Bind, BindResp, Body, CancelSm, CommandStatus, DataSmResp, DestAddress, MessageIdResp, Outbind,
    Pdu, QuerySmResp, ReplaceSm, SubmitMulti, SubmitMultiResp, SubmitSm, Tlvs, UnsuccessSme, tag,
};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode_stream")
}

fn vectors() -> Vec<(String, Vec<u8>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/smpp-vectors/smpplib.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("one JSON object a line");
            let name = v["name"].as_str().expect("name").to_owned();
            (name, common::hex(v["hex"].as_str().expect("hex")))
        })
        .collect()
}

#[test]
fn seed_corpus_replays_clean() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("codec/fuzz/corpus/decode_stream exists")
        .map(|e| e.expect("directory entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 60, "seed corpus has {} files", files.len());
    for f in &files {
        let data = std::fs::read(f).expect("readable");
        let run = std::panic::catch_unwind(|| fuzz_logic::decode_stream(&data));
        assert!(run.is_ok(), "{} fails the fuzz checks", f.display());
    }
}

/// One fuzz input: a plan octet and a stream.
fn input(plan: u8, stream: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + stream.len());
    v.push(plan);
    v.extend_from_slice(stream);
    v
}

fn encoded(pdu: &Pdu) -> Vec<u8> {
    common::encode(pdu).to_vec()
}

/// PDUs the smpplib vectors do not cover, from our encoder.
fn extra_pdus() -> Vec<(&'static str, Pdu)> {
    let addr = |s: &'static str| Address::new(1, 1, Bytes::from_static(s.as_bytes()));
    vec![
        ("outbind", Pdu::new(1, Body::Outbind(Outbind { system_id: "smsc".into(), password: "pw".into() }))),
        (
            "bind_transmitter_resp_sc_interface_version",
            Pdu::new(
                2,
                Body::BindTransmitterResp(BindResp {
                    system_id: "smsc".into(),
                    tlvs: Tlvs::builder().u8(tag::SC_INTERFACE_VERSION, 0x34).build(),
                }),
            ),
        ),
        (
            "bind_receiver_resp_error",
            Pdu::with_status(3, CommandStatus::ESME_RBINDFAIL, Body::BindReceiverResp(BindResp::default())),
        ),
        (
            "bind_transceiver_v50",
            Pdu::new(
                4,
                Body::BindTransceiver(Bind {
                    system_id: "acme".into(),
                    password: "12345678".into(),
                    system_type: "VMA".into(),
                    interface_version: 0x50,
                    addr_ton: 1,
                    addr_npi: 1,
                    address_range: "^44.*".into(),
                }),
            ),
        ),
        (
            "submit_multi",
            Pdu::new(
                5,
                Body::SubmitMulti(SubmitMulti {
                    source: addr("ACME"),
                    dests: vec![
                        DestAddress::Sme(addr("447700900001")),
                        DestAddress::DistributionList("friends".into()),
                        DestAddress::Sme(addr("447700900002")),
                    ],
                    registered_delivery: 1,
                    short_message: "hello all".into(),
                    tlvs: Tlvs::builder().u16(tag::USER_MESSAGE_REFERENCE, 77).build(),
                    ..SubmitMulti::default()
                }),
            ),
        ),
        (
            "submit_multi_resp_unsuccess",
            Pdu::new(
                5,
                Body::SubmitMultiResp(SubmitMultiResp {
                    message_id: "m-1".into(),
                    unsuccess: vec![UnsuccessSme {
                        addr: addr("447700900002"),
                        error_status: CommandStatus::ESME_RINVDSTADR,
                    }],
                    tlvs: Default::default(),
                }),
            ),
        ),
        (
            "submit_multi_resp_error",
            Pdu::with_status(
                5,
                CommandStatus::ESME_RSUBMITFAIL,
                Body::SubmitMultiResp(SubmitMultiResp::default()),
            ),
        ),
        (
            "data_sm_resp_tlvs",
            Pdu::new(
                6,
                Body::DataSmResp(DataSmResp {
                    message_id: "d-9".into(),
                    tlvs: Tlvs::builder()
                        .u8(tag::DELIVERY_FAILURE_REASON, 1)
                        .bytes(tag::NETWORK_ERROR_CODE, &[3, 0, 27])
                        .cstr(tag::ADDITIONAL_STATUS_INFO_TEXT, b"absent subscriber")
                        .build(),
                }),
            ),
        ),
        (
            "query_sm_resp_error_code",
            Pdu::with_status(
                7,
                CommandStatus::ESME_RQUERYFAIL,
                Body::QuerySmResp(QuerySmResp { error_code: 9, ..QuerySmResp::default() }),
            ),
        ),
        (
            "cancel_sm",
            Pdu::new(
                8,
                Body::CancelSm(CancelSm {
                    service_type: "CMT".into(),
                    message_id: "abc".into(),
                    source: addr("ACME"),
                    dest: addr("447700900001"),
                }),
            ),
        ),
        ("cancel_sm_resp", Pdu::new(8, Body::CancelSmResp)),
        (
            "replace_sm",
            Pdu::new(
                9,
                Body::ReplaceSm(ReplaceSm {
                    message_id: "abc".into(),
                    source: addr("ACME"),
                    schedule_delivery_time: "000001000000000R".into(),
                    registered_delivery: 1,
                    short_message: "new text".into(),
                    ..ReplaceSm::default()
                }),
            ),
        ),
        ("replace_sm_resp", Pdu::new(9, Body::ReplaceSmResp)),
        (
            "deliver_sm_resp_error",
            Pdu::with_status(
                10,
                CommandStatus::ESME_RX_T_APPN,
                Body::DeliverSmResp(MessageIdResp::default()),
            ),
        ),
        (
            "vendor_tlvs_submit_sm",
            Pdu::new(
                11,
                Body::SubmitSm(SubmitSm {
                    source: addr("ACME"),
                    dest: addr("447700900001"),
                    data_coding: 8,
                    short_message: Bytes::from_static(&[0x04, 0x1F, 0x04, 0x40, 0x04, 0x38]),
                    tlvs: Tlvs::builder()
                        .bytes(0x1400, b"vendor")
                        .bytes(0x3FFF, &[])
                        .u16(tag::SAR_MSG_REF_NUM, 0xBEEF)
                        .u8(tag::SAR_TOTAL_SEGMENTS, 2)
                        .u8(tag::SAR_SEGMENT_SEQNUM, 1)
                        .build(),
                    ..SubmitSm::default()
                }),
            ),
        ),
    ]
}

/// Malformed streams: each exercises one error path of the decoder.
fn malformed(vectors: &[(String, Vec<u8>)]) -> Vec<(&'static str, Vec<u8>)> {
    let v = |name: &str| vectors.iter().find(|(n, _)| n == name).map(|(_, b)| b.clone()).expect(name);
    let submit = v("submit_sm_gsm_default");
    let receipt = v("deliver_sm_receipt");
    let bind = v("bind_transceiver");
    let enquire = v("enquire_link");
    let with_len = |mut b: Vec<u8>, len: u32| {
        b[..4].copy_from_slice(&len.to_be_bytes());
        b
    };
    let body_of = |b: &[u8]| b[16..].to_vec();
    let submit_body = body_of(&submit);
    // Offsets inside submit_sm_gsm_default's body: service_type "" (1), source 5,0,"ACME\0" (7),
    // dest 1,1,"15551234567\0" (14), esm..priority (3), two empty times (2), 4 octets, sm_length.
    let sm_length_at = 1 + 7 + 14 + 3 + 2 + 4;
    let mut sm255 = submit_body.clone();
    sm255[sm_length_at] = 255;
    let mut sm_past = submit_body.clone();
    sm_past[sm_length_at] = 200;
    let mut src_no_nul = submit_body[..1].to_vec();
    src_no_nul.extend_from_slice(&[5, 0]);
    src_no_nul.extend_from_slice(&[b'A'; 30]);
    let mut sid_no_nul = vec![b'x'; 20];
    sid_no_nul.extend_from_slice(&body_of(&bind));
    let cat = |parts: &[&[u8]]| parts.concat();
    let mut tlv_trunc = receipt.clone();
    let n = tlv_trunc.len();
    tlv_trunc.truncate(n - 3);
    let tlv_trunc = with_len(tlv_trunc, (n - 3) as u32);
    let mut tlv_bad_len = submit.clone();
    tlv_bad_len.extend_from_slice(&[0x04, 0x27, 0x00, 0x02, 0x02, 0x02]);
    let tlv_bad_len = with_len(tlv_bad_len.clone(), tlv_bad_len.len() as u32);
    vec![
        ("bad-length-zero", with_len(enquire.clone(), 0)),
        ("bad-length-15", with_len(enquire.clone(), 15)),
        ("bad-length-too-long", with_len(submit.clone(), 70_001)),
        ("bad-length-max-u32", with_len(submit.clone(), u32::MAX)),
        ("bad-length-only-four-octets", vec![0x00, 0x10, 0x00, 0x00]),
        ("incomplete-submit_sm", submit[..submit.len() - 5].to_vec()),
        ("incomplete-header", submit[..10].to_vec()),
        ("bad-length-cuts-submit_sm", cat(&[&with_len(submit[..40].to_vec(), 40), &submit[40..]])),
        ("bad-length-swallows-next", cat(&[&with_len(enquire.clone(), 20), &enquire, &enquire])),
        ("bad-sm_length-255", frame(4, 0, 1, &sm255).to_vec()),
        ("bad-sm_length-past-end", frame(4, 0, 1, &sm_past).to_vec()),
        ("bad-source_addr-no-nul", frame(4, 0, 1, &src_no_nul).to_vec()),
        ("bad-system_id-no-nul", frame(9, 0, 1, &sid_no_nul).to_vec()),
        ("bad-tlv-truncated", tlv_trunc),
        ("bad-tlv-wrong-length", tlv_bad_len),
        ("bad-tlv-stub", cat(&[&with_len(submit.clone(), submit.len() as u32 + 1), &[0x04]])),
        ("bad-unknown-command", frame(0x0000_0777, 0, 5, b"abc").to_vec()),
        ("bad-unknown-response", frame(0x8000_000B, 0, 5, &[]).to_vec()),
        ("bad-enquire_link-with-body", frame(0x15, 0, 6, &[0]).to_vec()),
        ("bad-generic_nack-with-body", frame(0x8000_0000, 3, 6, &[1, 2, 3, 4]).to_vec()),
        ("bad-submit_multi-zero-dests", frame(0x21, 0, 7, &[0, 1, 1, b'1', 0, 0]).to_vec()),
        ("bad-submit_multi-dest_flag", frame(0x21, 0, 7, &[0, 1, 1, b'1', 0, 1, 3, 1, 1, b'2', 0]).to_vec()),
        ("bad-submit_multi_resp-tlvs", frame(0x8000_0021, 0, 7, &[b'i', 0, 0, 0x14, 0, 0, 1, 9]).to_vec()),
        ("err-submit_sm_resp-empty", frame(0x8000_0004, 0x58, 8, &[]).to_vec()),
        ("err-submit_sm_resp-lone-nul", frame(0x8000_0004, 0x58, 8, &[0]).to_vec()),
        ("err-bind_transceiver_resp-lone-nul", frame(0x8000_0009, 0x0E, 8, &[0]).to_vec()),
        ("err-query_sm_resp-error-code", frame(0x8000_0003, 0x67, 8, &[0, 0, 0, 9]).to_vec()),
        ("ok-submit_sm_resp-empty-is-truncated", frame(0x8000_0004, 0, 8, &[]).to_vec()),
        (
            "bad-between-good",
            cat(&[&enquire, &frame(4, 0, 2, &sm255), &frame(0x777, 0, 3, &[]), &submit, &receipt]),
        ),
    ]
}

/// Writes the seed corpus. Names say what each file exercises; the first octet of each file is
/// the read plan (see tests/common/fuzz_logic.rs).
#[test]
#[ignore = "writes codec/fuzz/corpus/decode_stream; run by hand after changing the seeds"]
fn write_seed_corpus() {
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).expect("create the corpus directory");
    let vectors = vectors();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    // Plans cycle through every read-size class: 1, 2, 3, 7, 16, 61, 512 octets and one read.
    for (i, (name, bytes)) in vectors.iter().enumerate() {
        files.push((format!("vector-{name}"), input(i as u8 * 9, bytes)));
    }
    let all: Vec<u8> = vectors.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    for plan in [0u8, 3, 5, 7] {
        files.push((format!("stream-all-vectors-plan{plan}"), input(plan, &all)));
    }
    for (i, (name, pdu)) in extra_pdus().iter().enumerate() {
        files.push((format!("pdu-{name}"), input(i as u8 * 5 + 1, &encoded(pdu))));
    }
    for (i, (name, bytes)) in malformed(&vectors).into_iter().enumerate() {
        files.push((name.to_owned(), input(i as u8 * 3 + 2, &bytes)));
    }
    for (name, data) in &files {
        fuzz_logic::decode_stream(data);
        std::fs::write(dir.join(format!("{name}.bin")), data).expect("write a seed");
    }
    eprintln!("wrote {} seeds to {}", files.len(), dir.display());
}

/// A stream of valid PDUs with some octets overwritten, prefixed with a plan.
fn mutated_stream() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u8>(),
        vec(common::strategies::pdu(), 1..4),
        vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        any::<Option<prop::sample::Index>>(),
    )
        .prop_map(|(plan, pdus, edits, cut)| {
            let mut stream = BytesMut::new();
            for p in &pdus {
                p.encode(&mut stream);
            }
            for (at, v) in &edits {
                let i = at.index(stream.len());
                stream[i] = *v;
            }
            if let Some(cut) = cut {
                stream.truncate(cut.index(stream.len() + 1));
            }
            input(plan, &stream)
        })
}

/// Cases for the property below: `FUZZ_LOGIC_CASES` (default 2000), so that a machine without
/// a fuzzer can run millions in release mode.
fn fuzz_logic_cases() -> u32 {
    std::env::var("FUZZ_LOGIC_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: fuzz_logic_cases(), ..ProptestConfig::default() })]

    /// Random octets and mutated valid streams pass every check of the fuzz target.
    #[test]
    fn random_inputs_pass_the_fuzz_checks(
        data in prop_oneof![vec(any::<u8>(), 0..300), mutated_stream()],
    ) {
        fuzz_logic::decode_stream(&data);
    }
}
