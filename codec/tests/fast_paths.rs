//! The hot paths against the general ones they shortcut.
//!
//! - Decoding: `Decoder::decode` scans submit_sm, deliver_sm and their responses on a fast path and
//!   falls back to the general decoder (`Pdu::decode_frame`) for anything else. Whatever the bytes
//!   (valid frames, mutated ones, random bodies), both must give the same PDU or the same error.
//! - Encoding: `Pdu::encode` writes through the codec's one `unsafe` helper (a cursor over the
//!   buffer's spare capacity). Its output must be octet for octet what a plain, safe `BufMut`
//!   encoder writes, for field lengths on every side of its copy strategies (0, 1..3, 4..7, 8..16,
//!   17..32, 33..256, more), appended after whatever the buffer already holds, and whatever the
//!   spare capacity held before (filled with poison octets, an unwritten octet would show).

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::frame;
use common::strategies::{pdu, status, submit_sm};
use proptest::collection::vec;
use proptest::prelude::*;
use smppgw_codec::{
    Address, Body, CommandId, CommandStatus, DecodeError, Decoder, MessageIdResp, Pdu, SHORT_MESSAGE_MAX,
    SubmitSm, Tlvs, encode_message_id_resp, encode_short_message,
};

/// What the general decoder makes of a whole frame, in the shape `Decoder::decode` returns.
fn general(frame: &[u8]) -> Result<Option<Pdu>, DecodeError> {
    Pdu::decode_frame(Bytes::copy_from_slice(frame)).map(Some)
}

/// Decodes `frame` both ways and checks they agree and that the whole frame is consumed.
fn same_both_ways(frame: &[u8]) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::from(frame);
    let fast = Decoder::default().decode(&mut buf);
    prop_assert!(buf.is_empty(), "the frame is consumed");
    prop_assert_eq!(fast, general(frame));
    Ok(())
}

const HOT: [u32; 4] = [
    CommandId::SUBMIT_SM.0,
    CommandId::DELIVER_SM.0,
    CommandId::SUBMIT_SM_RESP.0,
    CommandId::DELIVER_SM_RESP.0,
];

/// A hot PDU whose fields stay within what the decoder accepts.
fn hot_pdu() -> impl Strategy<Value = Pdu> {
    let resp_body = || {
        (common::strategies::cstr(65), common::strategies::tlvs())
            .prop_map(|(message_id, tlvs)| MessageIdResp { message_id, tlvs })
    };
    let body = prop_oneof![
        submit_sm().prop_map(Body::SubmitSm),
        submit_sm().prop_map(Body::DeliverSm),
        resp_body().prop_map(Body::SubmitSmResp),
        resp_body().prop_map(Body::DeliverSmResp),
    ];
    (status(), any::<u32>(), body).prop_map(|(s, seq, b)| Pdu::with_status(seq, s, b))
}

/// A byte string of `0..=max` octets, biased towards NULs (the delimiter the scan looks for).
fn octets(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(prop_oneof![3 => any::<u8>(), 1 => Just(0u8)], 0..=max)
}

/// A field for the encoder, of a length around one of the copy strategy's edges.
fn field() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        vec(any::<u8>(), 0..=40),
        vec(any::<u8>(), 250..=300),
        (0usize..=600).prop_map(|n| (0..n).map(|i| (i * 7 + 1) as u8).collect()),
    ]
    .prop_map(Bytes::from)
}

/// A submit_sm with fields of any length (the encoder does not validate; it cuts short_message to
/// 254 octets, as `sm_length` cannot say more).
fn wide_submit() -> impl Strategy<Value = SubmitSm> {
    (
        (field(), any::<(u8, u8)>(), field(), any::<(u8, u8)>(), field()),
        any::<[u8; 7]>(),
        (field(), field(), field(), field()),
    )
        .prop_map(|((st, (st1, sn1), src, (dt, dn), dst), f, (sched, valid, sm, tlvs))| SubmitSm {
            service_type: st,
            source: Address::new(st1, sn1, src),
            dest: Address::new(dt, dn, dst),
            esm_class: f[0],
            protocol_id: f[1],
            priority_flag: f[2],
            schedule_delivery_time: sched,
            validity_period: valid,
            registered_delivery: f[3],
            replace_if_present_flag: f[4],
            data_coding: f[5],
            sm_default_msg_id: f[6],
            short_message: sm,
            // Raw octets: the encoder writes the TLV area as is.
            tlvs: Tlvs::decode(tlvs.clone()).unwrap_or_else(|_| Tlvs::builder().bytes(0x1400, &tlvs).build()),
        })
}

fn put_cstr(out: &mut BytesMut, s: &[u8]) {
    out.put_slice(s);
    out.put_u8(0);
}

/// The reference encoding of a submit_sm or deliver_sm: plain `BufMut` calls and a back-patched
/// command_length.
fn reference_submit(id: CommandId, status: CommandStatus, seq: u32, s: &SubmitSm, out: &mut BytesMut) {
    let start = out.len();
    out.put_u32(0);
    out.put_u32(id.0);
    out.put_u32(status.0);
    out.put_u32(seq);
    put_cstr(out, &s.service_type);
    out.put_u8(s.source.ton);
    out.put_u8(s.source.npi);
    put_cstr(out, &s.source.addr);
    out.put_u8(s.dest.ton);
    out.put_u8(s.dest.npi);
    put_cstr(out, &s.dest.addr);
    out.put_u8(s.esm_class);
    out.put_u8(s.protocol_id);
    out.put_u8(s.priority_flag);
    put_cstr(out, &s.schedule_delivery_time);
    put_cstr(out, &s.validity_period);
    out.put_u8(s.registered_delivery);
    out.put_u8(s.replace_if_present_flag);
    out.put_u8(s.data_coding);
    out.put_u8(s.sm_default_msg_id);
    let sm = &s.short_message[..s.short_message.len().min(SHORT_MESSAGE_MAX)];
    out.put_u8(sm.len() as u8);
    out.put_slice(sm);
    out.put_slice(s.tlvs.raw());
    let len = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// The reference encoding of a response carrying a message_id.
fn reference_id_resp(id: CommandId, status: CommandStatus, seq: u32, m: &MessageIdResp, out: &mut BytesMut) {
    let start = out.len();
    out.put_u32(0);
    out.put_u32(id.0);
    out.put_u32(status.0);
    out.put_u32(seq);
    if status.is_ok() || !m.message_id.is_empty() || !m.tlvs.is_empty() {
        put_cstr(out, &m.message_id);
        out.put_slice(m.tlvs.raw());
    }
    let len = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Valid hot frames decode the same on both paths.
    #[test]
    fn valid_hot_frames_decode_alike(p in hot_pdu()) {
        same_both_ways(&p.to_bytes())?;
    }

    /// Valid frames with octets overwritten, and with the body cut or extended (command_length
    /// following), decode alike: the same PDU or the same error.
    #[test]
    fn mutated_hot_frames_decode_alike(
        p in hot_pdu(),
        edits in vec((any::<prop::sample::Index>(), prop_oneof![3 => any::<u8>(), 1 => Just(0u8)]), 0..4),
        cut in prop_oneof![2 => Just(None), 1 => any::<prop::sample::Index>().prop_map(Some)],
        extra in octets(20),
    ) {
        let f = p.to_bytes();
        let mut body = f[16..].to_vec();
        if !body.is_empty() {
            for (at, v) in &edits {
                let i = at.index(body.len());
                body[i] = *v;
            }
        }
        if let Some(at) = cut {
            body.truncate(at.index(body.len() + 1));
        }
        body.extend_from_slice(&extra);
        let id = u32::from_be_bytes([f[4], f[5], f[6], f[7]]);
        let status = u32::from_be_bytes([f[8], f[9], f[10], f[11]]);
        same_both_ways(&frame(id, status, 7, &body))?;
    }

    /// Random bodies under the hot command ids decode alike.
    #[test]
    fn random_hot_bodies_decode_alike(
        id in prop::sample::select(&HOT[..]),
        status in prop_oneof![3 => Just(0u32), 1 => any::<u32>()],
        body in octets(300),
    ) {
        same_both_ways(&frame(id, status, 1, &body))?;
    }

    /// Every PDU, of every type, still decodes alike (the fast path only ever takes the hot ones),
    /// and encodes to the same octets whatever the spare capacity held.
    #[test]
    fn every_pdu_decodes_alike(p in pdu()) {
        let f = p.to_bytes();
        same_both_ways(&f)?;
        prop_assert_eq!(p.encoded_len(), f.len());
        for poison in [0x00, 0xFF] {
            prop_assert_eq!(&encode_over_poison(&p, b"", poison)[..], &f[..]);
        }
    }

    /// The cursor writes what the `BufMut` reference writes, after any prefix.
    #[test]
    fn submit_encoding_matches_the_reference(
        s in wide_submit(),
        deliver in any::<bool>(),
        st in status(),
        seq in any::<u32>(),
        prefix in vec(any::<u8>(), 0..50),
    ) {
        let id = if deliver { CommandId::DELIVER_SM } else { CommandId::SUBMIT_SM };
        let body = if deliver { Body::DeliverSm(s.clone()) } else { Body::SubmitSm(s.clone()) };
        let pdu = Pdu::with_status(seq, st, body);
        let mut want = BytesMut::from(&prefix[..]);
        reference_submit(id, st, seq, &s, &mut want);

        let mut got = BytesMut::from(&prefix[..]);
        pdu.encode(&mut got);
        prop_assert_eq!(&got[..], &want[..]);
        prop_assert_eq!(pdu.encoded_len(), want.len() - prefix.len());
        for poison in [0x00, 0xFF] {
            prop_assert_eq!(&encode_over_poison(&pdu, &prefix, poison)[..], &want[..]);
        }

        if st.is_ok() {
            let mut got = BytesMut::from(&prefix[..]);
            encode_short_message(id, seq, &s, &mut got);
            prop_assert_eq!(&got[..], &want[..]);
        }
    }

    /// The same for the message_id responses, including the bare-header error form.
    #[test]
    fn id_resp_encoding_matches_the_reference(
        message_id in field(),
        tlvs in prop_oneof![Just(Tlvs::new()), field().prop_map(|v| Tlvs::builder().bytes(0x1400, &v).build())],
        deliver in any::<bool>(),
        st in status(),
        seq in any::<u32>(),
        prefix in vec(any::<u8>(), 0..50),
    ) {
        let m = MessageIdResp { message_id, tlvs };
        let id = if deliver { CommandId::DELIVER_SM_RESP } else { CommandId::SUBMIT_SM_RESP };
        let body = if deliver { Body::DeliverSmResp(m.clone()) } else { Body::SubmitSmResp(m.clone()) };
        let pdu = Pdu::with_status(seq, st, body);
        let mut want = BytesMut::from(&prefix[..]);
        reference_id_resp(id, st, seq, &m, &mut want);

        let mut got = BytesMut::from(&prefix[..]);
        pdu.encode(&mut got);
        prop_assert_eq!(&got[..], &want[..]);
        for poison in [0x00, 0xFF] {
            prop_assert_eq!(&encode_over_poison(&pdu, &prefix, poison)[..], &want[..]);
        }

        if m.tlvs.is_empty() {
            let mut got = BytesMut::from(&prefix[..]);
            encode_message_id_resp(id, st, seq, &m.message_id, &mut got);
            prop_assert_eq!(&got[..], &want[..]);
        }
    }
}

/// `pdu` encoded after `prefix` into a buffer whose spare capacity was first filled with `poison`:
/// an octet the cursor failed to write would show up as the poison.
fn encode_over_poison(pdu: &Pdu, prefix: &[u8], poison: u8) -> BytesMut {
    let mut b = BytesMut::with_capacity(prefix.len() + pdu.encoded_len() + 64);
    let cap = b.capacity();
    b.resize(cap, poison);
    b.clear();
    b.extend_from_slice(prefix);
    pdu.encode(&mut b);
    assert!(b.capacity() == cap, "encoding into a buffer with room must not reallocate");
    b
}

/// Every length of each kind of field, one at a time, through the cursor's copy strategies, into
/// spare capacity filled with two different poisons.
#[test]
fn every_field_length_encodes_like_the_reference() {
    let text: Vec<u8> = (0..600u32).map(|i| (i % 251 + 1) as u8).collect();
    for n in (0..=300).chain([400, 511, 512, 600]) {
        let f = Bytes::copy_from_slice(&text[..n]);
        let cases = [
            SubmitSm { service_type: f.clone(), ..SubmitSm::default() },
            SubmitSm { source: Address::new(1, 2, f.clone()), ..SubmitSm::default() },
            SubmitSm { dest: Address::new(1, 2, f.clone()), ..SubmitSm::default() },
            SubmitSm { schedule_delivery_time: f.clone(), ..SubmitSm::default() },
            SubmitSm { validity_period: f.clone(), ..SubmitSm::default() },
            SubmitSm { short_message: f.clone(), ..SubmitSm::default() },
            SubmitSm { tlvs: Tlvs::builder().bytes(0x1400, &f).build(), ..SubmitSm::default() },
        ];
        for s in cases {
            let mut want = BytesMut::new();
            reference_submit(CommandId::SUBMIT_SM, CommandStatus::ESME_ROK, 9, &s, &mut want);
            let pdu = Pdu::new(9, Body::SubmitSm(s));
            assert_eq!(&pdu.to_bytes()[..], &want[..], "field of {n} octets");
            for poison in [0x00, 0xFF] {
                let got = encode_over_poison(&pdu, b"xyz", poison);
                assert_eq!(&got[3..], &want[..], "field of {n} octets over {poison:#04x}");
            }
        }
    }
}
