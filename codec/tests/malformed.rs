//! Malformed input gets a typed error and the command_status a peer expects: framing errors when the
//! stream cannot go on, a consumed frame plus a `PduError` when only one PDU is bad.

mod common;

use bytes::BytesMut;
use common::{encode, frame};
use smppgw_codec::RESERVE_AHEAD_BYTES_MAX;
use smppgw_codec::pdu::{Header, max};
use smppgw_codec::{
    Body, CommandId, CommandStatus, DEFAULT_MAX_COMMAND_LENGTH, DecodeError, Decoder, Field, FramingError,
    MessageIdResp, Pdu, PduError,
};

/// Builds a body field by field.
#[derive(Default, Clone)]
struct BodyBytes(Vec<u8>);

impl BodyBytes {
    fn cstr(mut self, s: &[u8]) -> Self {
        self.0.extend_from_slice(s);
        self.0.push(0);
        self
    }
    /// Octets with no NUL after them.
    fn raw(mut self, s: &[u8]) -> Self {
        self.0.extend_from_slice(s);
        self
    }
    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    fn addr(self, s: &[u8]) -> Self {
        self.u8(1).u8(1).cstr(s)
    }
    fn sm(self, s: &[u8]) -> Self {
        self.u8(s.len() as u8).raw(s)
    }
    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// submit_sm up to (not including) sm_length.
fn submit_sm_head() -> BodyBytes {
    BodyBytes::default()
        .cstr(b"CMT")
        .addr(b"447700900001")
        .addr(b"447700900002")
        .u8(0) // esm_class
        .u8(0) // protocol_id
        .u8(0) // priority_flag
        .cstr(b"") // schedule_delivery_time
        .cstr(b"") // validity_period
        .u8(1) // registered_delivery
        .u8(0) // replace_if_present_flag
        .u8(0) // data_coding
        .u8(0) // sm_default_msg_id
}

fn submit_sm_body() -> BodyBytes {
    submit_sm_head().sm(b"hello")
}

fn decode_one(bytes: &[u8]) -> Result<Option<Pdu>, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    Decoder::default().decode(&mut buf)
}

/// The PduError for a single frame, checking that the frame was consumed whole.
fn pdu_error(command_id: u32, body: &[u8]) -> PduError {
    let f = frame(command_id, 0, 42, body);
    let mut buf = f.clone();
    buf.extend_from_slice(b"next");
    match Decoder::default().decode(&mut buf) {
        Err(DecodeError::Pdu { header, error }) => {
            assert_eq!(header.command_id, CommandId(command_id));
            assert_eq!(header.sequence_number, 42);
            assert_eq!(header.command_length as usize, f.len());
            assert_eq!(&buf[..], b"next", "the bad frame is consumed, nothing more");
            error
        }
        other => panic!("expected a PDU error for 0x{command_id:08X}, got {other:?}"),
    }
}

// ---- framing -------------------------------------------------------------------------------

#[test]
fn command_length_below_the_header_is_too_short_after_four_octets() {
    for len in [0u32, 1, 4, 15] {
        let mut buf = BytesMut::from(&len.to_be_bytes()[..]);
        assert_eq!(
            Decoder::default().decode(&mut buf),
            Err(DecodeError::Framing(FramingError::TooShort { len, min: 16 })),
            "command_length {len}"
        );
    }
}

#[test]
fn command_length_above_the_maximum_is_too_long_after_four_octets() {
    let mut buf = BytesMut::from(&(DEFAULT_MAX_COMMAND_LENGTH + 1).to_be_bytes()[..]);
    assert_eq!(
        Decoder::default().decode(&mut buf),
        Err(DecodeError::Framing(FramingError::TooLong {
            len: DEFAULT_MAX_COMMAND_LENGTH + 1,
            max: DEFAULT_MAX_COMMAND_LENGTH
        }))
    );
    let mut buf = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
    assert!(matches!(
        Decoder::new(1000).decode(&mut buf),
        Err(DecodeError::Framing(FramingError::TooLong { len: u32::MAX, max: 1000 }))
    ));
    // The limit itself is allowed; nothing is reserved for a frame that will be refused.
    let mut buf = BytesMut::from(&1000u32.to_be_bytes()[..]);
    assert_eq!(Decoder::new(1000).decode(&mut buf), Ok(None));
}

#[test]
fn fewer_than_four_octets_is_not_an_error_yet() {
    for n in 0..4 {
        let mut buf = BytesMut::from(&[0xFFu8; 4][..n]);
        assert_eq!(Decoder::default().decode(&mut buf), Ok(None));
        assert_eq!(buf.len(), n, "nothing consumed");
    }
}

#[test]
fn decoder_maximum_is_never_below_the_header() {
    assert_eq!(Decoder::new(3).max_command_length(), 16);
    let mut buf = frame(0x15, 0, 1, &[]);
    assert_eq!(Decoder::new(0).decode(&mut buf), Ok(Some(Pdu::new(1, Body::EnquireLink))));
}

#[test]
fn incomplete_frame_waits_and_consumes_nothing() {
    let f = frame(0x4, 0, 9, submit_sm_body().bytes());
    for n in 4..f.len() {
        let mut buf = BytesMut::from(&f[..n]);
        assert_eq!(Decoder::default().decode(&mut buf), Ok(None), "{n} of {} octets", f.len());
        assert_eq!(buf.len(), n);
        assert!(buf.capacity() >= f.len(), "room for the rest is reserved once the length is known");
    }
}

#[test]
fn a_header_claiming_a_large_frame_reserves_little() {
    // Goal: a peer that sends only a header claiming the largest frame allowed makes the
    // buffer hold little; the frame still decodes once it has all come, in pieces.
    let decoder = Decoder::new(1 << 20);
    let mut buf = BytesMut::from(&(1u32 << 20).to_be_bytes()[..]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert!(buf.capacity() <= 2 * RESERVE_AHEAD_BYTES_MAX, "capacity {}", buf.capacity());
    let f = frame(0x4, 0, 9, submit_sm_body().bytes());
    let mut buf = BytesMut::new();
    for piece in f.chunks(3) {
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        buf.extend_from_slice(piece);
    }
    assert!(matches!(decoder.decode(&mut buf), Ok(Some(_))), "decoded once whole");
    assert!(buf.is_empty());
}

#[test]
fn command_length_shorter_than_the_body_cuts_the_pdu() {
    // submit_sm whose command_length stops inside destination_addr: the frame is consumed as
    // a truncated PDU, and what follows is read as the next header.
    let body = submit_sm_body();
    let cut = 4 + 3 + 2 + 13 + 2 + 5; // service_type, source, dest TON/NPI, 5 digits
    let mut f = frame(0x4, 0, 3, &body.bytes()[..cut]);
    f.extend_from_slice(&body.bytes()[cut..]);
    let mut buf = f;
    match Decoder::default().decode(&mut buf) {
        Err(DecodeError::Pdu { header, error }) => {
            assert_eq!(header.command_length as usize, 16 + cut);
            assert_eq!(error, PduError::Truncated { field: Field::DestinationAddr });
            assert_eq!(error.command_status(), CommandStatus::ESME_RINVCMDLEN);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(buf.len(), body.bytes().len() - cut);
}

#[test]
fn command_length_longer_than_the_body_is_an_unexpected_body() {
    // enquire_link claiming 20 octets swallows 4 octets of what follows.
    let mut bytes = frame(0x15, 0, 1, b"\0\0\0\x10");
    bytes.extend_from_slice(&frame(0x15, 0, 2, &[]));
    let mut buf = bytes;
    let d = Decoder::default();
    assert!(matches!(
        d.decode(&mut buf),
        Err(DecodeError::Pdu {
            error: PduError::UnexpectedBody { command: CommandId::ENQUIRE_LINK, len: 4 },
            ..
        })
    ));
    assert_eq!(d.decode(&mut buf), Ok(Some(Pdu::new(2, Body::EnquireLink))));
}

// ---- truncated bodies ----------------------------------------------------------------------

#[test]
fn every_cut_of_a_submit_sm_is_truncated_or_a_tlv_error() {
    // Goal: wherever a peer's body ends early, the answer is ESME_RINVCMDLEN (inside the
    // mandatory fields) or ESME_RINVTLVSTREAM (inside the TLVs), never a panic or a wrong PDU.
    let mandatory = submit_sm_body();
    let full = mandatory.clone().raw(&[0x02, 0x0C, 0x00, 0x02, 0x12, 0x34]); // sar_msg_ref_num
    for cut in 0..full.bytes().len() {
        let body = &full.bytes()[..cut];
        match decode_one(&frame(0x4, 0, 1, body)) {
            Ok(Some(Pdu { body: Body::SubmitSm(s), .. })) => {
                assert_eq!(cut, mandatory.bytes().len(), "only the cut before the TLVs is a whole PDU");
                assert!(s.tlvs.is_empty());
            }
            Err(DecodeError::Pdu { error, .. }) if cut < mandatory.bytes().len() => {
                assert!(matches!(error, PduError::Truncated { .. }), "cut {cut}: {error:?}");
                assert_eq!(error.command_status(), CommandStatus::ESME_RINVCMDLEN);
            }
            Err(DecodeError::Pdu { error, .. }) => {
                assert!(
                    matches!(error, PduError::TlvTruncated { tag: 0x020C | 0, .. }),
                    "cut {cut}: {error:?}"
                );
                assert_eq!(error.command_status(), CommandStatus::ESME_RINVTLVSTREAM);
            }
            other => panic!("cut {cut}: {other:?}"),
        }
    }
}

#[test]
fn truncation_names_the_field_it_stopped_in() {
    let head = submit_sm_head();
    let cases: &[(usize, Field)] = &[
        (0, Field::ServiceType),
        (4, Field::SourceAddrTon),
        (5, Field::SourceAddrNpi),
        (6, Field::SourceAddr),
        (4 + 15, Field::DestAddrTon),
        (4 + 15 + 2 + 13, Field::EsmClass),
        (4 + 15 + 2 + 13 + 1, Field::ProtocolId),
        (head.bytes().len() - 1, Field::SmDefaultMsgId),
        (head.bytes().len(), Field::SmLength),
    ];
    for &(cut, field) in cases {
        assert_eq!(pdu_error(0x4, &head.bytes()[..cut]), PduError::Truncated { field }, "cut at {cut}");
    }
    let bind = BodyBytes::default().cstr(b"acme").cstr(b"pw").cstr(b"").u8(0x34).u8(0);
    assert_eq!(pdu_error(0x9, bind.bytes()), PduError::Truncated { field: Field::AddrNpi });
    assert_eq!(pdu_error(0x8000_0004, b"12345"), PduError::Truncated { field: Field::MessageId });
    let qresp = BodyBytes::default().cstr(b"id").cstr(b"").u8(2);
    assert_eq!(pdu_error(0x8000_0003, qresp.bytes()), PduError::Truncated { field: Field::ErrorCode });
}

// ---- C-octet strings without their NUL -----------------------------------------------------

#[test]
fn missing_nul_is_cstring_too_long_with_the_fields_status() {
    // Goal: a string that runs past its maximum is reported with the field and the maximum, and
    // answered with the status the specification gives that field.
    let long = |n: usize| vec![b'7'; n];
    let bind = |sid: &[u8], pw: &[u8], st: &[u8]| {
        BodyBytes::default().raw(sid).raw(pw).raw(st).u8(0x34).u8(0).u8(0).cstr(b"")
    };
    let cases: Vec<(&str, u32, BodyBytes, Field, usize, CommandStatus)> = vec![
        (
            "bind system_id",
            0x9,
            bind(&long(16), b"", b""),
            Field::SystemId,
            max::SYSTEM_ID,
            CommandStatus::ESME_RINVSYSID,
        ),
        (
            "bind password",
            0x2,
            BodyBytes::default().cstr(b"acme").raw(&long(9)).cstr(b"").u8(0x34).u8(0).u8(0).cstr(b""),
            Field::Password,
            max::PASSWORD,
            CommandStatus::ESME_RINVPASWD,
        ),
        (
            "bind system_type",
            0x1,
            BodyBytes::default().cstr(b"acme").cstr(b"pw").raw(&long(13)).u8(0x34).u8(0).u8(0).cstr(b""),
            Field::SystemType,
            max::SYSTEM_TYPE,
            CommandStatus::ESME_RINVSYSTYP,
        ),
        (
            "submit_sm service_type",
            0x4,
            BodyBytes::default().raw(&long(6)).raw(&[0; 40]),
            Field::ServiceType,
            max::SERVICE_TYPE,
            CommandStatus::ESME_RINVSERTYP,
        ),
        (
            "submit_sm source_addr",
            0x4,
            BodyBytes::default().cstr(b"").u8(1).u8(1).raw(&long(21)).raw(&[0; 30]),
            Field::SourceAddr,
            max::ADDR,
            CommandStatus::ESME_RINVSRCADR,
        ),
        (
            "submit_sm destination_addr",
            0x4,
            BodyBytes::default().cstr(b"").addr(b"1").u8(1).u8(1).raw(&long(30)).raw(&[0; 30]),
            Field::DestinationAddr,
            max::ADDR,
            CommandStatus::ESME_RINVDSTADR,
        ),
        (
            "submit_sm schedule_delivery_time",
            0x4,
            BodyBytes::default()
                .cstr(b"")
                .addr(b"1")
                .addr(b"2")
                .u8(0)
                .u8(0)
                .u8(0)
                .raw(&long(17))
                .raw(&[0; 10]),
            Field::ScheduleDeliveryTime,
            max::TIME,
            CommandStatus::ESME_RINVSCHED,
        ),
        (
            "deliver_sm validity_period",
            0x5,
            BodyBytes::default()
                .cstr(b"")
                .addr(b"1")
                .addr(b"2")
                .u8(0)
                .u8(0)
                .u8(0)
                .cstr(b"")
                .raw(&long(20))
                .raw(&[0; 10]),
            Field::ValidityPeriod,
            max::TIME,
            CommandStatus::ESME_RINVEXPIRY,
        ),
        (
            "query_sm message_id",
            0x3,
            BodyBytes::default().raw(&long(65)).u8(0).addr(b"1"),
            Field::MessageId,
            max::MESSAGE_ID,
            CommandStatus::ESME_RINVMSGID,
        ),
        (
            "data_sm source_addr (65 allowed)",
            0x103,
            BodyBytes::default().cstr(b"").u8(1).u8(1).raw(&long(65)).raw(&[0; 10]),
            Field::SourceAddr,
            max::ADDR_65,
            CommandStatus::ESME_RINVSRCADR,
        ),
        (
            "submit_multi dl_name",
            0x21,
            BodyBytes::default().cstr(b"").addr(b"1").u8(1).u8(2).raw(&long(21)).raw(&[0; 20]),
            Field::DlName,
            max::DL_NAME,
            CommandStatus::ESME_RINVDLNAME,
        ),
        (
            "submit_sm_resp message_id",
            0x8000_0004,
            BodyBytes::default().raw(&long(70)),
            Field::MessageId,
            max::RESP_MESSAGE_ID,
            CommandStatus::ESME_RINVMSGID,
        ),
        (
            "bind_transceiver_resp system_id",
            0x8000_0009,
            BodyBytes::default().raw(&long(16)),
            Field::SystemId,
            max::SYSTEM_ID,
            CommandStatus::ESME_RINVSYSID,
        ),
    ];
    for (name, id, body, field, max, status) in cases {
        let err = pdu_error(id, body.bytes());
        assert_eq!(err, PduError::CStringTooLong { field, max }, "{name}");
        assert_eq!(err.command_status(), status, "{name}");
    }
}

#[test]
fn a_vendors_65_character_message_id_is_read() {
    // Goal: SMSCs send 65-character ids (one more than SMPP 3.4's 65 octets with the NUL allow)
    // and quote them in their receipts, which are read; refusing the submit_sm_resp lost the id
    // the receipts match by. 66 characters are still refused.
    let id65 = [b'a'; 65];
    let mut body = id65.to_vec();
    body.push(0);
    let mut frame = BytesMut::new();
    frame.extend_from_slice(&(16 + body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&0x8000_0004u32.to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 9]);
    frame.extend_from_slice(&body);
    let p = Decoder::default().decode(&mut frame).expect("decodes").expect("whole");
    let Body::SubmitSmResp(r) = p.body else { panic!("{p:?}") };
    assert_eq!(&r.message_id[..], &id65[..]);
    let err = pdu_error(0x8000_0004, BodyBytes::default().raw(&[b'7'; 67]).bytes());
    assert_eq!(err, PduError::CStringTooLong { field: Field::MessageId, max: max::RESP_MESSAGE_ID });
}

#[test]
fn cstring_at_its_maximum_is_accepted() {
    let twenty = [b'9'; 20];
    let body = BodyBytes::default()
        .cstr(b"")
        .addr(&twenty)
        .addr(&twenty)
        .raw(&[0, 0, 0])
        .cstr(b"")
        .cstr(b"")
        .raw(&[0, 0, 0, 0])
        .sm(b"");
    match decode_one(&frame(0x4, 0, 1, body.bytes())) {
        Ok(Some(Pdu { body: Body::SubmitSm(s), .. })) => {
            assert_eq!(&s.source.addr[..], &twenty[..]);
            assert_eq!(&s.dest.addr[..], &twenty[..]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_nul_at_the_end_of_the_body_is_truncated() {
    // Fewer octets than the maximum left and no NUL: the body ended, the string did not overflow.
    let body = BodyBytes::default().cstr(b"").u8(1).u8(1).raw(b"4477");
    let err = pdu_error(0x4, body.bytes());
    assert_eq!(err, PduError::Truncated { field: Field::SourceAddr });
    assert_eq!(err.command_status(), CommandStatus::ESME_RINVCMDLEN);
}

// ---- short_message -------------------------------------------------------------------------

#[test]
fn sm_length_above_254_is_invalid_message_length() {
    let body = submit_sm_head().u8(255).raw(&[b'a'; 255]);
    let err = pdu_error(0x4, body.bytes());
    assert_eq!(err, PduError::ShortMessageTooLong { len: 255, max: 254 });
    assert_eq!(err.command_status(), CommandStatus::ESME_RINVMSGLEN);
    // 254 is the most allowed.
    let body = submit_sm_head().sm(&[b'a'; 254]);
    assert!(matches!(decode_one(&frame(0x4, 0, 1, body.bytes())), Ok(Some(_))));
}

#[test]
fn sm_length_past_the_end_is_invalid_command_length() {
    let body = submit_sm_head().u8(160).raw(&[b'a'; 100]);
    let err = pdu_error(0x4, body.bytes());
    assert_eq!(err, PduError::Truncated { field: Field::ShortMessage });
    assert_eq!(err.command_status(), CommandStatus::ESME_RINVCMDLEN);
    // The same in deliver_sm and replace_sm.
    assert_eq!(pdu_error(0x5, body.bytes()), err);
    let replace =
        BodyBytes::default().cstr(b"id").addr(b"1").cstr(b"").cstr(b"").u8(0).u8(0).u8(10).raw(b"abc");
    assert_eq!(pdu_error(0x7, replace.bytes()), err);
}

// ---- TLVs ----------------------------------------------------------------------------------

#[test]
fn truncated_tlvs_are_an_invalid_tlv_stream() {
    let tails: &[(&[u8], u16)] = &[
        (&[0x04], 0),
        (&[0x04, 0x27], 0x0427),
        (&[0x04, 0x27, 0x00], 0x0427),
        (&[0x04, 0x24, 0x00, 0x0A, b'a', b'b', b'c'], 0x0424), // message_payload says 10, has 3
        (&[0x14, 0x00, 0x01, 0x00, 0xFF], 0x1400),             // vendor tag says 256
    ];
    for &(tail, tag) in tails {
        let err = pdu_error(0x4, submit_sm_body().raw(tail).bytes());
        assert!(matches!(err, PduError::TlvTruncated { tag: t, .. } if t == tag), "{tail:02X?}: {err:?}");
        assert_eq!(err.command_status(), CommandStatus::ESME_RINVTLVSTREAM);
        assert_eq!(err.command_status().0, 0xC0);
    }
}

#[test]
fn known_tlv_with_a_wrong_length_is_an_invalid_parameter_length() {
    let cases: &[(&[u8], u16, usize)] = &[
        (&[0x04, 0x27, 0x00, 0x02, 2, 2], 0x0427, 2), // message_state is 1 octet
        (&[0x02, 0x0C, 0x00, 0x01, 7], 0x020C, 1),    // sar_msg_ref_num is 2
        (&[0x04, 0x23, 0x00, 0x02, 3, 0], 0x0423, 2), // network_error_code is 3
        (&[0x00, 0x1E, 0x00, 0x00], 0x001E, 0),       // receipted_message_id is 1..=66
        (&[0x03, 0x81, 0x00, 0x02, 1, 1], 0x0381, 2), // callback_num is 4..=19
    ];
    // In a submit_sm; a deliver_sm leaves the receipt TLVs to the receipt parser (see below).
    for &(tlv, tag, len) in cases {
        let receipt_tag = matches!(tag, 0x0427 | 0x0423 | 0x001E);
        for command_id in if receipt_tag { &[0x4][..] } else { &[0x4, 0x5][..] } {
            let err = pdu_error(*command_id, submit_sm_body().raw(tlv).bytes());
            assert!(
                matches!(err, PduError::TlvLength { tag: t, len: l, .. } if t == tag && l == len),
                "{err:?}"
            );
            assert_eq!(err.command_status(), CommandStatus::ESME_RINVPARLEN);
            assert_eq!(err.command_status().0, 0xC2);
        }
    }
}

#[test]
fn a_deliver_sm_keeps_receipt_tlvs_of_a_wrong_length_for_the_receipt_parser() {
    // Goal: a vendor's receipt whose text is good is not refused with ESME_RINVPARLEN (to be
    // sent again and refused again) for a receipt TLV of the wrong length, which the receipt
    // parser passes over; a submit_sm or data_sm, which customers send, stays strict.
    use smppgw_codec::receipt::{MessageState, Receipt};
    use smppgw_codec::{Tlvs, tag};
    let cases: &[(&[u8], u16)] = &[
        (&[0x04, 0x23, 0x00, 0x02, 3, 0], tag::NETWORK_ERROR_CODE), // 2 octets, not 3
        (&[0x00, 0x1E, 0x00, 0x00], tag::RECEIPTED_MESSAGE_ID),     // empty
        (&[0x04, 0x27, 0x00, 0x02, 2, 2], tag::MESSAGE_STATE),      // 2 octets, not 1
    ];
    for &(tlv, t) in cases {
        let body = submit_sm_head().sm(b"id:123 stat:DELIVRD").raw(tlv);
        let wire = frame(0x5, 0, 1, body.bytes());
        let general = Pdu::decode_frame(wire.clone().freeze());
        for decoded in [decode_one(&wire).map(Option::unwrap), general] {
            let Ok(Pdu { body: Body::DeliverSm(d), .. }) = decoded else { panic!("{tlv:02X?}: {decoded:?}") };
            assert_eq!(d.tlvs.get_ref(t), Some(&tlv[4..]));
            let p = Receipt::parse_with_tlvs(
                &d.short_message,
                d.tlvs.get_ref(tag::RECEIPTED_MESSAGE_ID),
                d.tlvs.message_state(),
                d.tlvs.get_ref(tag::NETWORK_ERROR_CODE),
            )
            .unwrap();
            assert_eq!((p.receipt.id.as_str(), p.receipt.stat), ("123", MessageState::Delivered));
            // What is passed on to an ESME leaves it out.
            let kept = d.tlvs.well_formed();
            assert!(Tlvs::decode(kept.raw().clone()).is_ok() && !kept.contains(t), "{tlv:02X?}");
        }
        // Customers' submits stay strict.
        let err = pdu_error(0x4, submit_sm_body().raw(tlv).bytes());
        assert!(matches!(err, PduError::TlvLength { tag, .. } if tag == t), "{err:?}");
        let data_sm = BodyBytes::default()
            .cstr(b"")
            .addr(b"447700900001")
            .addr(b"447700900002")
            .u8(0x04)
            .u8(0)
            .u8(0)
            .raw(tlv);
        let err = pdu_error(0x103, data_sm.bytes());
        assert!(matches!(err, PduError::TlvLength { tag, .. } if tag == t), "{err:?}");
    }
}

#[test]
fn unknown_tlvs_of_any_length_pass() {
    let body = submit_sm_body().raw(&[0x14, 0x00, 0x00, 0x00]).raw(&[0x3F, 0xFF, 0x00, 0x03, 1, 2, 3]);
    match decode_one(&frame(0x4, 0, 1, body.bytes())) {
        Ok(Some(Pdu { body: Body::SubmitSm(s), .. })) => {
            assert_eq!(s.tlvs.get(0x1400).as_deref(), Some(&[][..]));
            assert_eq!(s.tlvs.get(0x3FFF).as_deref(), Some(&[1u8, 2, 3][..]));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn submit_multi_resp_keeps_smpp5_tlvs() {
    // Goal: SMPP 5.0 allows TLVs after the unsuccess list; an unknown one is kept, not refused.
    let body = BodyBytes::default().cstr(b"id").u8(0).raw(&[0x14, 0x00, 0x00, 0x01, 9]);
    let f = frame(0x8000_0021, 0, 42, body.bytes());
    let p = decode_one(&f).unwrap().unwrap();
    let Body::SubmitMultiResp(ref r) = p.body else { panic!("submit_multi_resp") };
    assert_eq!(r.tlvs.get(0x1400).as_deref(), Some(&[9u8][..]));
    assert_eq!(&p.to_bytes()[..], &f[..]);
}

// ---- commands ------------------------------------------------------------------------------

#[test]
fn unknown_command_id_is_answered_with_generic_nack() {
    // Goal: the header of an unknown command is still available, so the session can answer
    // generic_nack with ESME_RINVCMDID and the peer's sequence number.
    for id in [0x0000_0000u32, 0x0000_000A, 0x0000_0111, 0x0001_0004, 0x8000_000B, 0x8000_0102, 0xFFFF_FFFF] {
        let mut buf = frame(id, 0, 77, b"whatever");
        let Err(DecodeError::Pdu { header, error }) = Decoder::default().decode(&mut buf) else {
            panic!("0x{id:08X} must be a PDU error");
        };
        assert!(buf.is_empty());
        assert_eq!(error, PduError::UnknownCommand { command_id: id });
        assert_eq!(error.command_status(), CommandStatus::ESME_RINVCMDID);
        let nack = Pdu::error_response(&header, error.command_status());
        assert_eq!(nack, Pdu::with_status(77, CommandStatus::ESME_RINVCMDID, Body::GenericNack));
        assert_eq!(&encode(&nack)[..], &frame(0x8000_0000, 3, 77, &[])[..]);
    }
}

#[test]
fn bodiless_commands_with_a_body_are_refused_and_the_stream_goes_on() {
    for (id, command) in [
        (0x15u32, CommandId::ENQUIRE_LINK),
        (0x8000_0015, CommandId::ENQUIRE_LINK_RESP),
        (0x6, CommandId::UNBIND),
        (0x8000_0006, CommandId::UNBIND_RESP),
        (0x8000_0000, CommandId::GENERIC_NACK),
        (0x8000_0008, CommandId::CANCEL_SM_RESP),
    ] {
        let mut buf = frame(id, 0, 5, &[0]);
        buf.extend_from_slice(&frame(0x15, 0, 6, &[]));
        let d = Decoder::default();
        let err = match d.decode(&mut buf) {
            Err(DecodeError::Pdu { error, .. }) => error,
            other => panic!("{command}: {other:?}"),
        };
        assert_eq!(err, PduError::UnexpectedBody { command, len: 1 });
        assert_eq!(err.command_status(), CommandStatus::ESME_RINVCMDLEN);
        assert_eq!(d.decode(&mut buf), Ok(Some(Pdu::new(6, Body::EnquireLink))), "{command}");
    }
}

#[test]
fn submit_multi_invalid_counts_and_flags() {
    let zero = BodyBytes::default().cstr(b"").addr(b"1").u8(0);
    let err = pdu_error(0x21, zero.bytes());
    assert_eq!(err, PduError::InvalidValue { field: Field::NumberOfDests, value: 0 });
    assert_eq!(err.command_status(), CommandStatus::ESME_RINVNUMDESTS);
    let flag = BodyBytes::default().cstr(b"").addr(b"1").u8(1).u8(3).addr(b"2");
    let err = pdu_error(0x21, flag.bytes());
    assert_eq!(err, PduError::InvalidValue { field: Field::DestFlag, value: 3 });
    assert_eq!(err.command_status(), CommandStatus::ESME_RINVDESTFLAG);
    // number_of_dests promises more destinations than the body holds.
    let short = BodyBytes::default().cstr(b"").addr(b"1").u8(3).u8(1).addr(b"2");
    let err = pdu_error(0x21, short.bytes());
    assert_eq!(err, PduError::Truncated { field: Field::DestFlag });
}

#[test]
fn error_response_has_the_requests_response_id() {
    let header = |id: CommandId| Header {
        command_length: 16,
        command_id: id,
        command_status: CommandStatus::ESME_ROK,
        sequence_number: 1234,
    };
    let expected = [
        (CommandId::BIND_TRANSMITTER, CommandId::BIND_TRANSMITTER_RESP),
        (CommandId::BIND_RECEIVER, CommandId::BIND_RECEIVER_RESP),
        (CommandId::BIND_TRANSCEIVER, CommandId::BIND_TRANSCEIVER_RESP),
        (CommandId::UNBIND, CommandId::UNBIND_RESP),
        (CommandId::ENQUIRE_LINK, CommandId::ENQUIRE_LINK_RESP),
        (CommandId::SUBMIT_SM, CommandId::SUBMIT_SM_RESP),
        (CommandId::DELIVER_SM, CommandId::DELIVER_SM_RESP),
        (CommandId::SUBMIT_MULTI, CommandId::SUBMIT_MULTI_RESP),
        (CommandId::DATA_SM, CommandId::DATA_SM_RESP),
        (CommandId::QUERY_SM, CommandId::QUERY_SM_RESP),
        (CommandId::CANCEL_SM, CommandId::CANCEL_SM_RESP),
        (CommandId::REPLACE_SM, CommandId::REPLACE_SM_RESP),
        // No response of their own: generic_nack.
        (CommandId::OUTBIND, CommandId::GENERIC_NACK),
        (CommandId::ALERT_NOTIFICATION, CommandId::GENERIC_NACK),
        (CommandId(0x0000_0111), CommandId::GENERIC_NACK),
        // A malformed response is answered with generic_nack too.
        (CommandId::SUBMIT_SM_RESP, CommandId::GENERIC_NACK),
        (CommandId::GENERIC_NACK, CommandId::GENERIC_NACK),
    ];
    for (request, response) in expected {
        let pdu = Pdu::error_response(&header(request), CommandStatus::ESME_RSYSERR);
        assert_eq!(pdu.command_id(), response, "answer to {request}");
        assert_eq!(request.response(), response, "CommandId::response agrees for {request}");
        assert_eq!(pdu.sequence_number, 1234);
        assert_eq!(pdu.command_status, CommandStatus::ESME_RSYSERR);
        // It goes out as a bare header and decodes back to itself.
        let mut buf = encode(&pdu);
        assert_eq!(buf.len(), 16, "{response}");
        assert_eq!(Decoder::default().decode(&mut buf), Ok(Some(pdu)));
        // 4.3: a body too short or too long for its command (command_length invalid for it) is
        // answered with generic_nack, as an unknown command is.
        let nack = Pdu::error_response(&header(request), CommandStatus::ESME_RINVCMDLEN);
        assert_eq!(nack.command_id(), CommandId::GENERIC_NACK, "{request}");
        assert_eq!((nack.sequence_number, nack.command_status), (1234, CommandStatus::ESME_RINVCMDLEN));
    }
}

// ---- error responses: empty body or a lone NUL ---------------------------------------------

#[test]
fn error_responses_with_empty_body_or_lone_nul_decode_the_same() {
    // Goal: peers send failed responses either way (smpplib sends the lone NUL); both give the
    // same value, the one our encoder writes as a bare header.
    for id in [0x8000_0001u32, 0x8000_0002, 0x8000_0009, 0x8000_0004, 0x8000_0005, 0x8000_0103] {
        let empty = decode_one(&frame(id, 0x58, 9, &[]));
        let nul = decode_one(&frame(id, 0x58, 9, &[0]));
        let Ok(Some(pdu)) = &empty else { panic!("0x{id:08X} empty body: {empty:?}") };
        assert_eq!(empty, nul, "0x{id:08X}");
        assert_eq!(pdu.command_id(), CommandId(id));
        assert_eq!(pdu.command_status, CommandStatus::ESME_RTHROTTLED);
        assert_eq!(encode(pdu).len(), 16, "re-encoded as a bare header");
    }
    // submit_multi_resp: a NUL message_id and no_unsuccess 0 is its "empty" form.
    assert_eq!(
        decode_one(&frame(0x8000_0021, 0x45, 1, &[])),
        decode_one(&frame(0x8000_0021, 0x45, 1, &[0, 0]))
    );
    // query_sm_resp: every field empty or zero, and the lone NUL form too.
    assert_eq!(
        decode_one(&frame(0x8000_0003, 0x67, 1, &[])),
        decode_one(&frame(0x8000_0003, 0x67, 1, &[0, 0, 0, 0]))
    );
    assert_eq!(decode_one(&frame(0x8000_0003, 0x67, 1, &[])), decode_one(&frame(0x8000_0003, 0x67, 1, &[0])));
    // The bodiless responses (cancel_sm_resp, replace_sm_resp, unbind_resp) in the lone NUL form.
    for id in [0x8000_0008u32, 0x8000_0007, 0x8000_0006] {
        let nul = decode_one(&frame(id, 0x11, 2, &[0]));
        let Ok(Some(pdu)) = &nul else { panic!("0x{id:08X} lone NUL: {nul:?}") };
        assert_eq!((pdu.command_id(), pdu.command_status), (CommandId(id), CommandStatus(0x11)));
    }
    // A successful response must carry its body: an empty one is truncated.
    assert_eq!(
        decode_one(&frame(0x8000_0004, 0, 1, &[])),
        Err(DecodeError::Pdu {
            header: Header {
                command_length: 16,
                command_id: CommandId::SUBMIT_SM_RESP,
                command_status: CommandStatus::ESME_ROK,
                sequence_number: 1,
            },
            error: PduError::Truncated { field: Field::MessageId },
        })
    );
}

#[test]
fn error_response_keeps_a_message_id_it_carries() {
    let mut buf = frame(0x8000_0004, 0x45, 3, b"abc\0");
    assert_eq!(
        Decoder::default().decode(&mut buf),
        Ok(Some(Pdu::with_status(
            3,
            CommandStatus::ESME_RSUBMITFAIL,
            Body::SubmitSmResp(MessageIdResp { message_id: "abc".into(), tlvs: Default::default() })
        )))
    );
}

#[test]
fn a_bad_pdu_between_good_ones_costs_only_itself() {
    let mut stream = frame(0x15, 0, 1, &[]);
    stream.extend_from_slice(&frame(0x4, 0, 2, submit_sm_head().u8(255).bytes()));
    stream.extend_from_slice(&frame(0x0000_0777, 0, 3, &[]));
    stream.extend_from_slice(&frame(0x4, 0, 4, submit_sm_body().bytes()));
    let d = Decoder::default();
    let mut buf = stream;
    assert_eq!(d.decode(&mut buf), Ok(Some(Pdu::new(1, Body::EnquireLink))));
    assert!(matches!(
        d.decode(&mut buf),
        Err(DecodeError::Pdu { error: PduError::ShortMessageTooLong { .. }, .. })
    ));
    assert!(matches!(
        d.decode(&mut buf),
        Err(DecodeError::Pdu { error: PduError::UnknownCommand { .. }, .. })
    ));
    assert!(matches!(d.decode(&mut buf), Ok(Some(Pdu { sequence_number: 4, body: Body::SubmitSm(_), .. }))));
    assert_eq!(d.decode(&mut buf), Ok(None));
}

#[test]
fn failed_submit_multi_resp_with_a_lone_nul_decodes() {
    // Goal: the lone-NUL error form is accepted for submit_multi_resp like for the other responses.
    let mut b = bytes::BytesMut::from(&[0, 0, 0, 17, 0x80, 0, 0, 0x21, 0, 0, 0, 0x45, 0, 0, 0, 1, 0][..]);
    let p = smppgw_codec::Decoder::default().decode(&mut b).unwrap().unwrap();
    assert_eq!(p.command_status, smppgw_codec::CommandStatus::ESME_RSUBMITFAIL);
    assert!(matches!(p.body, smppgw_codec::Body::SubmitMultiResp(ref r) if r.unsuccess.is_empty()));
}

#[test]
fn failed_submit_multi_resp_with_an_id_but_no_count_is_truncated() {
    // Goal: only the lone NUL stands for "no body"; an id without the no_unsuccess count after it
    // is a truncated body (found by the fuzz property: accepting it made re-encoding add an octet).
    let mut b =
        bytes::BytesMut::from(&[0, 0, 0, 19, 0x80, 0, 0, 0x21, 0, 0, 0, 0x45, 0, 0, 0, 1, b'a', b'b', 0][..]);
    assert!(matches!(smppgw_codec::Decoder::default().decode(&mut b), Err(DecodeError::Pdu { .. })));
    assert!(b.is_empty(), "the bad frame is consumed");
}

#[test]
fn responses_with_smpp5_tlvs_keep_them() {
    // Goal: a submit_sm_resp carrying SMPP 5.0 TLVs keeps its message_id and the TLVs byte for byte.
    let wire = [
        0, 0, 0, 0x1D, 0x80, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 1, b'a', b'b', b'c', 0, 0x00, 0x1D, 0, 5, b'f',
        b'a', b'i', b'l', 0,
    ];
    let mut b = bytes::BytesMut::from(&wire[..]);
    let p = smppgw_codec::Decoder::default().decode(&mut b).unwrap().unwrap();
    let smppgw_codec::Body::SubmitSmResp(ref r) = p.body else { panic!("submit_sm_resp") };
    assert_eq!(&r.message_id[..], b"abc");
    assert_eq!(r.tlvs.additional_status_info_text().as_deref(), Some(&b"fail"[..]));
    assert_eq!(&p.to_bytes()[..], &wire[..]);
}

// ---- time fields ---------------------------------------------------------------------------

/// The time fields of every command that has one, each with the field it fills: (name,
/// command_id, the body with `time` in that field, the field).
fn time_field_bodies(time: &[u8]) -> Vec<(&'static str, u32, BodyBytes, Field)> {
    let head =
        || BodyBytes::default().cstr(b"").addr(b"447700900001").addr(b"447700900002").u8(0).u8(0).u8(0);
    let multi_head = || {
        BodyBytes::default()
            .cstr(b"")
            .addr(b"447700900001")
            .u8(1)
            .u8(1)
            .addr(b"447700900002")
            .u8(0)
            .u8(0)
            .u8(0)
    };
    let tail = |b: BodyBytes| b.u8(0).u8(0).u8(0).u8(0).sm(b"hi");
    let replace = || BodyBytes::default().cstr(b"m1").addr(b"447700900001");
    let replace_tail = |b: BodyBytes| b.u8(0).u8(0).sm(b"hi");
    vec![
        ("submit_sm schedule", 0x4, tail(head().cstr(time).cstr(b"")), Field::ScheduleDeliveryTime),
        ("submit_sm validity", 0x4, tail(head().cstr(b"").cstr(time)), Field::ValidityPeriod),
        ("deliver_sm schedule", 0x5, tail(head().cstr(time).cstr(b"")), Field::ScheduleDeliveryTime),
        ("deliver_sm validity", 0x5, tail(head().cstr(b"").cstr(time)), Field::ValidityPeriod),
        ("submit_multi schedule", 0x21, tail(multi_head().cstr(time).cstr(b"")), Field::ScheduleDeliveryTime),
        ("submit_multi validity", 0x21, tail(multi_head().cstr(b"").cstr(time)), Field::ValidityPeriod),
        (
            "replace_sm schedule",
            0x7,
            replace_tail(replace().cstr(time).cstr(b"")),
            Field::ScheduleDeliveryTime,
        ),
        ("replace_sm validity", 0x7, replace_tail(replace().cstr(b"").cstr(time)), Field::ValidityPeriod),
        (
            "query_sm_resp final_date",
            0x8000_0003,
            BodyBytes::default().cstr(b"m1").cstr(time).u8(2).u8(0),
            Field::FinalDate,
        ),
    ]
}

#[test]
fn time_fields_are_empty_or_sixteen_characters() {
    // Goal: SMPP 3.4 7.1.1: a time field is a lone NUL or 16 characters and a NUL. In a request
    // from an ESME (submit_sm, submit_multi, replace_sm) any other length is a typed error
    // naming the field, answered with the field's status (schedule: ESME_RINVSCHED, validity:
    // ESME_RINVEXPIRY). What a vendor sends us (deliver_sm, whose time fields should be empty,
    // and query_sm_resp's final_date) is taken at any length up to 16: refusing it would lose
    // the receipt it carries. The fast path and the general decoder agree.
    let full = b"260101120000000+";
    for len in 0..=full.len() {
        let time = &full[..len];
        for (name, id, body, field) in time_field_bodies(time) {
            let f = frame(id, 0, 42, body.bytes());
            let general = Pdu::decode_frame(f.clone().freeze());
            let lenient = id == CommandId::DELIVER_SM.0 || id == CommandId::QUERY_SM_RESP.0;
            if len == 0 || len == 16 || lenient {
                let pdu = match decode_one(&f) {
                    Ok(Some(pdu)) => pdu,
                    other => panic!("{name} of {len} characters: {other:?}"),
                };
                let got = match (&pdu.body, field) {
                    (Body::SubmitSm(s) | Body::DeliverSm(s), Field::ScheduleDeliveryTime) => {
                        &s.schedule_delivery_time
                    }
                    (Body::SubmitSm(s) | Body::DeliverSm(s), _) => &s.validity_period,
                    (Body::SubmitMulti(s), Field::ScheduleDeliveryTime) => &s.schedule_delivery_time,
                    (Body::SubmitMulti(s), _) => &s.validity_period,
                    (Body::ReplaceSm(r), Field::ScheduleDeliveryTime) => &r.schedule_delivery_time,
                    (Body::ReplaceSm(r), _) => &r.validity_period,
                    (Body::QuerySmResp(q), _) => &q.final_date,
                    other => panic!("{name}: {other:?}"),
                };
                assert_eq!(&got[..], time, "{name}");
                assert_eq!(general, Ok(pdu), "{name}: the general decoder agrees");
                continue;
            }
            let err = pdu_error(id, body.bytes());
            assert_eq!(
                err,
                PduError::InvalidValue { field, value: len as u32 },
                "{name} of {len} characters"
            );
            let status = match field {
                Field::ScheduleDeliveryTime => CommandStatus::ESME_RINVSCHED,
                _ => CommandStatus::ESME_RINVEXPIRY,
            };
            assert_eq!(err.command_status(), status, "{name}");
            assert!(
                matches!(&general, Err(DecodeError::Pdu { error, .. }) if *error == err),
                "{name}: the general decoder agrees: {general:?}"
            );
        }
    }
}

#[test]
fn ten_digit_schedule_time_is_refused_with_esme_rinvsched() {
    // Goal: a common mistake (a YYMMDDhhmm date, as in receipts) is refused, not carried on.
    let body = BodyBytes::default()
        .cstr(b"")
        .addr(b"1")
        .addr(b"2")
        .u8(0)
        .u8(0)
        .u8(0)
        .cstr(b"2601011200")
        .cstr(b"")
        .u8(0)
        .u8(0)
        .u8(0)
        .u8(0)
        .sm(b"x");
    let err = pdu_error(0x4, body.bytes());
    assert_eq!(err, PduError::InvalidValue { field: Field::ScheduleDeliveryTime, value: 10 });
    assert_eq!(err.command_status(), CommandStatus::ESME_RINVSCHED);
    assert_eq!(err.command_status().0, 0x61);
}

// ---- Pdu::decode_frame ---------------------------------------------------------------------

#[test]
fn decode_frame_refuses_short_frames_and_wrong_command_lengths() {
    // Goal: decode_frame is public and takes any bytes: a frame shorter than the header or whose
    // command_length is not its length is an error, never a panic or a PDU read past its frame.
    let good = frame(0x4, 0, 7, submit_sm_body().bytes()).freeze();
    assert!(matches!(Pdu::decode_frame(good.clone()), Ok(Pdu { sequence_number: 7, .. })));
    for n in 0..16 {
        assert_eq!(
            Pdu::decode_frame(good.slice(..n)),
            Err(DecodeError::Framing(FramingError::FrameTooShort { len: n, min: 16 })),
            "{n} octets"
        );
    }
    let len = good.len();
    // Cut short, with one octet too many, and command_lengths of 0, one off and u32::MAX.
    let mut longer = good.to_vec();
    longer.push(0);
    let relabel = |command_length: u32| {
        let mut f = good.to_vec();
        f[..4].copy_from_slice(&command_length.to_be_bytes());
        bytes::Bytes::from(f)
    };
    let cases = [
        (good.slice(..len - 1), len as u32),
        (bytes::Bytes::from(longer), len as u32),
        (relabel(0), 0),
        (relabel(15), 15),
        (relabel(len as u32 - 1), len as u32 - 1),
        (relabel(len as u32 + 1), len as u32 + 1),
        (relabel(u32::MAX), u32::MAX),
    ];
    for (f, command_length) in cases {
        let frame_len = f.len();
        assert_eq!(
            Pdu::decode_frame(f),
            Err(DecodeError::Framing(FramingError::LengthMismatch { command_length, frame_len })),
            "command_length {command_length}, {frame_len} octets"
        );
    }
    // A bare header whose command_length says 16 is a whole PDU.
    assert_eq!(Pdu::decode_frame(frame(0x15, 0, 3, &[]).freeze()), Ok(Pdu::new(3, Body::EnquireLink)));
}
