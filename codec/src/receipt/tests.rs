use proptest::prelude::*;

use super::*;

fn parse(text: &str) -> Receipt {
    Receipt::parse(text.as_bytes()).unwrap()
}

fn date(year: u16, month: u8, day: u8, hour: u8, minute: u8, second: Option<u8>) -> ReceiptDate {
    ReceiptDate { year, month, day, hour, minute, second, four_digit_year: false }
}

fn id(text: &str) -> ReceiptId {
    ReceiptId::from_slice(text.as_bytes()).unwrap()
}

fn formatted(receipt: &Receipt) -> String {
    String::from_utf8(receipt.to_bytes().to_vec()).unwrap()
}

const CANONICAL: &str = "id:0123456789 sub:001 dlvrd:001 submit date:0511261200 done date:0511261201 \
                         stat:DELIVRD err:000 text:Hello world";

#[test]
fn spec_example_reads_every_field() {
    // Appendix B's example, with its capital `Text:` key, filled in with real values.
    let r = parse(
        "id:0123456789 sub:001 dlvrd:001 submit date:0511261200 done date:0511261201 stat:DELIVRD \
         err:000 Text:Hello world",
    );
    assert_eq!(r.id.as_str(), "0123456789");
    assert_eq!(r.sub, Some(1));
    assert_eq!(r.dlvrd, Some(1));
    assert_eq!(r.submit_date, Some(date(2005, 11, 26, 12, 0, None)));
    assert_eq!(r.done_date, Some(date(2005, 11, 26, 12, 1, None)));
    assert_eq!(r.stat, MessageState::Delivered);
    assert_eq!(r.err, Some(ReceiptErr::Code(0)));
    assert_eq!(r.text.as_deref(), Some(&b"Hello world"[..]));
    assert!(r.extra.is_empty());
}

#[test]
fn smpplib_vector_reads_and_agrees_with_its_tlvs() {
    // Receipt encoded by python smpplib (shared/smpp-vectors): text, TLVs and esm_class agree.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/smpp-vectors/smpplib.jsonl");
    let vectors = std::fs::read_to_string(path).expect("shared/smpp-vectors beside the checkout");
    let vector: serde_json::Value = vectors
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|v| v["name"] == "deliver_sm_receipt")
        .expect("deliver_sm_receipt vector");
    let fields = &vector["fields"];
    assert!(is_receipt(u8::try_from(fields["esm_class"].as_u64().unwrap()).unwrap()));
    let short_message = Bytes::copy_from_slice(fields["short_message"].as_str().unwrap().as_bytes());
    let rmid = fields["receipted_message_id"].as_str().unwrap().as_bytes();
    let state = u8::try_from(fields["message_state"].as_u64().unwrap()).unwrap();

    let text_only = Receipt::parse_bytes(&short_message).unwrap();
    assert_eq!(text_only.id.as_bytes(), rmid);
    assert_eq!(text_only.stat.as_u8(), state);
    assert_eq!(text_only.submit_date, Some(date(2026, 11, 25, 18, 3, None)));
    assert_eq!(text_only.text.as_deref(), Some(&b"Hello from the gat"[..]));
    // Canonical input: formatting gives back the very bytes smpplib sent.
    assert_eq!(text_only.to_bytes(), short_message);

    let with_tlvs = Receipt::parse_with_tlvs(&short_message, Some(rmid), Some(state), None).unwrap().receipt;
    assert_eq!(with_tlvs, text_only);
}

#[test]
fn upper_case_keys_read_like_lower_case() {
    let r = parse(
        "ID:ABC123 SUB:001 DLVRD:000 SUBMIT DATE:2401011200 DONE DATE:2401011210 STAT:UNDELIV \
         ERR:001 TEXT:Hi",
    );
    assert_eq!(r.id.as_str(), "ABC123");
    assert_eq!(r.dlvrd, Some(0));
    assert_eq!(r.done_date, Some(date(2024, 1, 1, 12, 10, None)));
    assert_eq!(r.stat, MessageState::Undeliverable);
    assert_eq!(r.err, Some(ReceiptErr::Code(1)));
    assert_eq!(r.text.as_deref(), Some(&b"Hi"[..]));
    // Mixed case too.
    let r = parse("Id:x Stat:delivrd Submit Date:2401011200");
    assert_eq!((r.id.as_str(), r.stat), ("x", MessageState::Delivered));
    assert!(r.submit_date.is_some());
}

#[test]
fn kannel_style_uuid_id_and_mixed_date_lengths() {
    // As a Kannel-fronted SMSC sends it: UUID id, 10-digit submit date, 12-digit done date.
    let r = parse(
        "id:5516a151-4970-45b6-b73e-95aefdb11cbf sub:001 dlvrd:001 submit date:2302231414 \
         done date:230223194211 stat:DELIVRD err:000 text:Hello",
    );
    assert_eq!(r.id.as_str(), "5516a151-4970-45b6-b73e-95aefdb11cbf");
    assert_eq!(r.submit_date, Some(date(2023, 2, 23, 14, 14, None)));
    assert_eq!(r.done_date, Some(date(2023, 2, 23, 19, 42, Some(11))));
    assert_eq!(r.text.as_deref(), Some(&b"Hello"[..]));
}

#[test]
fn twelve_digit_dates_keep_seconds_and_format_as_ten() {
    let r = parse("id:1 submit date:240229235959 done date:240301000001 stat:DELIVRD");
    assert_eq!(r.submit_date, Some(date(2024, 2, 29, 23, 59, Some(59))));
    assert_eq!(formatted(&r), "id:1 submit date:2402292359 done date:2403010000 stat:DELIVRD");
    let mut out = BytesMut::new();
    r.format_into_as(&mut out, DateStyle::AsReceived);
    assert_eq!(&out[..], b"id:1 submit date:240229235959 done date:240301000001 stat:DELIVRD");
}

#[test]
fn fourteen_digit_dates_keep_the_century() {
    let r = parse("id:1 submit date:20231231235900 done date:19991231235959 stat:EXPIRED");
    let done = r.done_date.unwrap();
    assert_eq!((done.year, done.second, done.four_digit_year), (1999, Some(59), true));
    assert_eq!(formatted(&r), "id:1 submit date:2312312359 done date:9912312359 stat:EXPIRED");
    let mut out = BytesMut::new();
    r.format_into_as(&mut out, DateStyle::AsReceived);
    assert_eq!(&out[..], b"id:1 submit date:20231231235900 done date:19991231235959 stat:EXPIRED");
}

#[test]
fn unpadded_counts_read_and_format_padded() {
    let r = parse("id:77 sub:1 dlvrd:1 stat:DELIVRD err:0");
    assert_eq!((r.sub, r.dlvrd, r.err.clone()), (Some(1), Some(1), Some(ReceiptErr::Code(0))));
    assert_eq!(formatted(&r), "id:77 sub:001 dlvrd:001 stat:DELIVRD err:000");
    // Counts above 999 keep all their digits.
    let r = parse("id:77 sub:1234 stat:DELIVRD");
    assert_eq!(formatted(&r), "id:77 sub:1234 stat:DELIVRD");
}

#[test]
fn ids_up_to_65_chars_are_taken_and_longer_refused() {
    let long = "a".repeat(ID_LEN_MAX);
    let r = parse(&format!("id:{long} stat:DELIVRD"));
    assert_eq!(r.id.as_str(), long);
    let too_long = "b".repeat(ID_LEN_MAX + 1);
    assert_eq!(
        Receipt::parse(format!("id:{too_long} stat:DELIVRD").as_bytes()),
        Err(ReceiptError::IdTooLong { len: ID_LEN_MAX + 1, max: ID_LEN_MAX })
    );
    // Hex id.
    assert_eq!(parse("id:0A1B2C3D4E5F stat:DELIVRD").id.as_str(), "0A1B2C3D4E5F");
}

#[test]
fn missing_text_is_none_and_empty_text_is_empty() {
    let r = parse("id:1 sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 stat:DELIVRD err:000");
    assert_eq!(r.text, None);
    assert_eq!(r.err, Some(ReceiptErr::Code(0)));
    let r = parse("id:1 stat:DELIVRD err:000 text:");
    assert_eq!(r.text.as_deref(), Some(&b""[..]));
    assert_eq!(formatted(&r), "id:1 stat:DELIVRD err:000 text:");
}

#[test]
fn missing_optional_fields_are_none() {
    let r = parse("id:1 sub:001 dlvrd:001 done date:2401011201 stat:DELIVRD err:000 text:x");
    assert_eq!(r.submit_date, None);
    assert!(r.done_date.is_some());
    let r = parse("id:1 stat:ENROUTE");
    assert_eq!(r, Receipt::new(id("1"), MessageState::Enroute));
}

#[test]
fn unknown_fields_are_kept_in_order_and_bounded() {
    let r = parse("id:1 sub:001 dlvrd:001 stat:DELIVRD err:000 mcc:310 mnc:260 text:hi");
    let kept: Vec<(&[u8], &[u8])> = r.extra.iter().map(|f| (&f.key[..], &f.value[..])).collect();
    assert_eq!(kept, [(&b"mcc"[..], &b"310"[..]), (&b"mnc"[..], &b"260"[..])]);
    assert_eq!(formatted(&r), "id:1 sub:001 dlvrd:001 stat:DELIVRD err:000 mcc:310 mnc:260 text:hi");

    let many: String = (0..EXTRA_FIELDS_MAX + 5).map(|i| format!("x{i}:{i} ")).collect();
    let r = parse(&format!("id:1 {many}stat:DELIVRD"));
    assert_eq!(r.extra.len(), EXTRA_FIELDS_MAX);
    assert_eq!(r.stat, MessageState::Delivered, "fields after the bound are still read");
}

#[test]
fn keys_in_any_order() {
    let r = parse(
        "stat:REJECTD err:0AB done date:2401011201 id:xyz-1 dlvrd:000 submit date:2401011200 sub:002 \
         text:late",
    );
    assert_eq!(r.id.as_str(), "xyz-1");
    assert_eq!(r.stat, MessageState::Rejected);
    assert_eq!(r.sub, Some(2));
    assert_eq!(r.submit_date, Some(date(2024, 1, 1, 12, 0, None)));
    assert_eq!(
        formatted(&r),
        "id:xyz-1 sub:002 dlvrd:000 submit date:2401011200 done date:2401011201 stat:REJECTD err:0AB \
         text:late"
    );
}

#[test]
fn stat_long_forms_and_vendor_words() {
    let cases: &[(&str, MessageState)] = &[
        ("DELIVERED", MessageState::Delivered),
        ("delivered", MessageState::Delivered),
        ("UNDELIVERABLE", MessageState::Undeliverable),
        ("UNDELIVERED", MessageState::Undeliverable),
        ("FAILED", MessageState::Undeliverable),
        ("Rejected", MessageState::Rejected),
        ("ACCEPTED", MessageState::Accepted),
        ("DELETED", MessageState::Deleted),
        ("EXPIRED", MessageState::Expired),
        ("SCHEDULED", MessageState::Scheduled),
        ("SCHEDLD", MessageState::Scheduled),
        ("skipped", MessageState::Skipped),
    ];
    for (word, state) in cases {
        assert_eq!(parse(&format!("id:1 stat:{word}")).stat, *state, "{word}");
    }
    // Written back in canonical form.
    assert_eq!(formatted(&parse("id:1 stat:DELIVERED")), "id:1 stat:DELIVRD");
    assert_eq!(
        Receipt::parse(b"id:1 stat:DONE"),
        Err(ReceiptError::UnknownStat(Bytes::from_static(b"DONE")))
    );
    assert_eq!(MessageState::from_stat_word(b"UNDELIVERABLEX"), None);
    assert_eq!(MessageState::from_stat_word(b""), None);
}

#[test]
fn trailing_nul_crlf_and_extra_whitespace_are_ignored() {
    let r = Receipt::parse(b"  id:1   sub:001\t dlvrd:001  stat:DELIVRD  err:000 text:ok\r\n\0\0").unwrap();
    assert_eq!(r.text.as_deref(), Some(&b"ok"[..]));
    assert_eq!(r.dlvrd, Some(1));
    let r = Receipt::parse(b"id:1 stat:DELIVRD\0").unwrap();
    assert_eq!(r.stat, MessageState::Delivered);
    // Vendors pad text with spaces; they are cut.
    let r = parse("id:0000058049 stat:DELIVRD err:000 text:none                ");
    assert_eq!(r.text.as_deref(), Some(&b"none"[..]));
}

#[test]
fn text_runs_to_the_end_and_its_keys_do_not_override() {
    let r = parse("id:1 stat:DELIVRD err:000 text:you stat:REJECTD id:666 err:9 ok: yes");
    assert_eq!(r.stat, MessageState::Delivered);
    assert_eq!(r.id.as_str(), "1");
    assert_eq!(r.err, Some(ReceiptErr::Code(0)));
    assert_eq!(r.text.as_deref(), Some(&b"you stat:REJECTD id:666 err:9 ok: yes"[..]));
    // A text key before stat used to swallow it (MissingStat). Keys come in any order (vendors
    // put text: anywhere), so when stat or id has not been seen by text:, the keys after it are
    // read and the text ends where they start.
    let r = parse("id:1 text:hello stat:DELIVRD");
    assert_eq!(r.stat, MessageState::Delivered);
    assert_eq!(r.text.as_deref(), Some(&b"hello"[..]));
}

#[test]
fn keys_after_text_are_read_when_id_or_stat_is_still_missing() {
    // Goal: any key order, text: included; the text stops at the first known key after it.
    let r = parse("id:1 text:hi stat:DELIVRD");
    assert_eq!((r.id.as_str(), r.stat, r.text.as_deref()), ("1", MessageState::Delivered, Some(&b"hi"[..])));
    // Keys in any case, after any whitespace; the keys between text and stat are read too.
    let r = parse("text:Hello world  err:005\tsub:001 ID:abc\r\nStat:undeliv done date:2401011201");
    assert_eq!(r.id.as_str(), "abc");
    assert_eq!(r.stat, MessageState::Undeliverable);
    assert_eq!(r.text.as_deref(), Some(&b"Hello world"[..]));
    assert_eq!((r.err, r.sub), (Some(ReceiptErr::Code(5)), Some(1)));
    assert!(r.done_date.is_some());
    // Two-word keys end the text as well.
    let r = parse("id:1 text:a b submit date:2401011200 stat:DELIVRD");
    assert_eq!(r.text.as_deref(), Some(&b"a b"[..]));
    assert!(r.submit_date.is_some());
    // Words with colons that are not keys stay in the text.
    let r = parse("id:1 text:see http://x.y/ at 10:30 stat:ACCEPTD");
    assert_eq!(r.text.as_deref(), Some(&b"see http://x.y/ at 10:30"[..]));
    assert_eq!(r.stat, MessageState::Accepted);
    // An empty text.
    let r = parse("id:1 text: stat:DELIVRD");
    assert_eq!(r.text.as_deref(), Some(&b""[..]));
    // stat glued to another word is not a key: still missing.
    assert_eq!(Receipt::parse(b"id:1 text:hello xstat:DELIVRD"), Err(ReceiptError::MissingStat));
    assert_eq!(Receipt::parse(b"stat:DELIVRD text:hello"), Err(ReceiptError::MissingId));
    // With id and stat before it, text still runs to the end, keys and all.
    let r = parse("id:1 stat:DELIVRD text:x stat:REJECTD");
    assert_eq!(r.text.as_deref(), Some(&b"x stat:REJECTD"[..]));
    // A TLV standing in for stat leaves the text whole.
    let text = Bytes::from_static(b"id:1 text:x stat:REJECTD");
    let r = Receipt::parse_with_tlvs(&text, None, Some(2), None).unwrap().receipt;
    assert_eq!(r.stat, MessageState::Delivered);
    assert_eq!(r.text.as_deref(), Some(&b"x stat:REJECTD"[..]));
    // The first text counts when a second one comes before stat.
    let r = parse("id:1 text:a text:b stat:DELIVRD");
    assert_eq!(r.text.as_deref(), Some(&b"a"[..]));
    // Formats canonically (text last) and reads back the same.
    let r = parse("text:late id:7 stat:ENROUTE");
    assert_eq!(formatted(&r), "id:7 stat:ENROUTE text:late");
    assert_eq!(parse(&formatted(&r)), r);
}

#[test]
fn err_keeps_alphanumeric_codes() {
    assert_eq!(parse("id:1 stat:UNDELIV err:ABC").err, Some(ReceiptErr::Text(Bytes::from_static(b"ABC"))));
    assert_eq!(parse("id:1 stat:UNDELIV err:0x1F").err, Some(ReceiptErr::Text(Bytes::from_static(b"0x1F"))));
    assert_eq!(parse("id:1 stat:UNDELIV err:65535").err, Some(ReceiptErr::Code(65535)));
    assert_eq!(
        parse("id:1 stat:UNDELIV err:65536").err,
        Some(ReceiptErr::Text(Bytes::from_static(b"65536")))
    );
    assert_eq!(parse("id:1 stat:UNDELIV err: text:x").err, None);
    assert_eq!(formatted(&parse("id:1 stat:UNDELIV err:ABC")), "id:1 stat:UNDELIV err:ABC");
}

#[test]
fn key_spellings_with_underscores_and_stray_words() {
    let r = parse("id:1 submit_date:2401011200 DONE_DATE:2401011201 stat:DELIVRD");
    assert!(r.submit_date.is_some() && r.done_date.is_some());
    let r = parse("id:1 submit   date:2401011200 done\tdate:2401011201 stat:DELIVRD");
    assert!(r.submit_date.is_some() && r.done_date.is_some());
    // A stray word before a key does not hide it; a key ending in `_id` is not `id`.
    let r = parse("msg_id:9 garbage id:1 junk words stat:DELIVRD");
    assert_eq!(r.id.as_str(), "1");
    assert_eq!(r.stat, MessageState::Delivered);
    assert_eq!(&r.extra[0].key[..], b"msg_id");
}

#[test]
fn an_exact_key_wins_over_one_found_after_stray_words() {
    // Goal: a stray word before a key does not make its value the receipt's: `msg id:999` is not
    // the id when an exact `id:` follows, for any key; without one it still counts.
    let r = parse("msg id:999 id:123 stat:DELIVRD");
    assert_eq!(r.id.as_str(), "123");
    let r = parse("garbage id:1 stat:DELIVRD");
    assert_eq!(r.id.as_str(), "1");
    let r = parse("id:1 final stat:REJECTD sub:2 x sub:3 stat:DELIVRD");
    assert_eq!((r.stat, r.sub), (MessageState::Delivered, Some(2)));
    // Two weak ones: the first counts, as for exact ones; an exact one first is never replaced.
    let r = parse("a id:7 b id:8 stat:DELIVRD");
    assert_eq!(r.id.as_str(), "7");
    let r = parse("id:5 msg id:6 stat:DELIVRD");
    assert_eq!(r.id.as_str(), "5");
}

#[test]
fn first_of_a_repeated_key_counts() {
    let r = parse("id:1 stat:DELIVRD id:2 stat:REJECTD sub:x sub:5");
    assert_eq!((r.id.as_str(), r.stat, r.sub), ("1", MessageState::Delivered, None));
    assert!(r.extra.is_empty());
}

#[test]
fn malformed_optional_values_read_as_absent() {
    let r = parse(
        "id:1 sub:abc dlvrd:-1 submit date:0000000000 done date:2413011200 stat:DELIVRD err:000 \
         text:x",
    );
    assert_eq!((r.sub, r.dlvrd, r.submit_date, r.done_date), (None, None, None, None));
    for bad in ["24010112", "240101120", "2401011260", "2401012400", "2401320000", "24010112000a"] {
        assert_eq!(ReceiptDate::parse(bad.as_bytes()), None, "{bad}");
    }
}

#[test]
fn a_space_after_a_colon_is_read_past() {
    // Some SMSCs write `key: value`; the value is the next word unless that is a key itself.
    let r = parse(
        "id: 123 sub: 001 dlvrd: 001 submit date: 2401011200 done date: 2401011201 stat: DELIVRD err: 000",
    );
    assert_eq!(r.id, id("123"));
    assert_eq!(r.sub, Some(1));
    assert_eq!(r.dlvrd, Some(1));
    assert_eq!(r.submit_date, Some(date(2024, 1, 1, 12, 0, None)));
    assert_eq!(r.done_date, Some(date(2024, 1, 1, 12, 1, None)));
    assert_eq!(r.stat, MessageState::Delivered);
    assert_eq!(r.err, Some(ReceiptErr::Code(0)));
    let r = parse("id:7 stat: UNDELIV err:  012 text: hello");
    assert_eq!((r.stat, r.err), (MessageState::Undeliverable, Some(ReceiptErr::Code(12))));
}

#[test]
fn missing_or_bad_required_fields_are_typed_errors() {
    assert_eq!(Receipt::parse(b""), Err(ReceiptError::MissingId));
    assert_eq!(Receipt::parse(b"\r\n\0"), Err(ReceiptError::MissingId));
    assert_eq!(Receipt::parse(b"sub:001 stat:DELIVRD"), Err(ReceiptError::MissingId));
    assert_eq!(Receipt::parse(b"id:1 sub:001"), Err(ReceiptError::MissingStat));
    assert_eq!(Receipt::parse(b"id: stat:DELIVRD"), Err(ReceiptError::EmptyId));
    assert_eq!(
        Receipt::parse(b"id:a\xffb stat:DELIVRD"),
        Err(ReceiptError::IdByteInvalid { byte: 0xff, index: 1 })
    );
    assert_eq!(Receipt::parse(b"no colon at all"), Err(ReceiptError::MissingId));
}

#[test]
fn non_utf8_text_is_kept_verbatim() {
    let r = Receipt::parse(b"id:1 stat:DELIVRD text:\xe9t\xe9 \x00\xff!").unwrap();
    assert_eq!(r.text.as_deref(), Some(&b"\xe9t\xe9 \x00\xff!"[..]));
}

#[test]
fn canonical_text_round_trips_both_ways() {
    let r = parse(CANONICAL);
    assert_eq!(formatted(&r), CANONICAL);
    assert_eq!(Receipt::parse(&r.to_bytes()).unwrap(), r);
}

#[test]
fn with_id_changes_only_the_id() {
    let vendor = parse(CANONICAL);
    let ours = vendor.with_id(id("GW-00000000000000000042"));
    assert_eq!(ours.id.as_str(), "GW-00000000000000000042");
    assert_eq!(Receipt { id: vendor.id.clone(), ..ours.clone() }, vendor);
    assert!(formatted(&ours).starts_with("id:GW-00000000000000000042 sub:001 "));
}

#[test]
fn formatting_with_another_id_writes_what_with_id_writes() {
    let vendor = parse(CANONICAL);
    let mut out = BytesMut::new();
    vendor.format_with_id_into(b"GW-00000000000000000042", &mut out, DateStyle::Standard).unwrap();
    assert_eq!(&out[..], formatted(&vendor.with_id(id("GW-00000000000000000042"))).as_bytes());
    let mut refused = BytesMut::new();
    assert!(vendor.format_with_id_into(b"has space", &mut refused, DateStyle::Standard).is_err());
    assert!(vendor.format_with_id_into(b"", &mut refused, DateStyle::Standard).is_err());
    assert!(refused.is_empty(), "nothing written for an id that is refused");
}

#[test]
fn format_appends_to_what_the_buffer_holds() {
    let mut out = BytesMut::from(&b"prefix|"[..]);
    parse(CANONICAL).format_into(&mut out);
    assert_eq!(&out[..7], b"prefix|");
    assert_eq!(&out[7..], CANONICAL.as_bytes());
}

#[test]
fn tlvs_override_the_text() {
    let mut r = parse(CANONICAL);
    r.merge_tlvs(Some(b"ABCDEF\0"), Some(5), Some(&[3, 0x01, 0x0B])).unwrap();
    assert_eq!(r.id.as_str(), "ABCDEF", "trailing NUL stripped");
    assert_eq!(r.stat, MessageState::Undeliverable);
    assert_eq!(r.err, Some(ReceiptErr::Code(0)), "the text's own err stays");
    assert_eq!(r.text.as_deref(), Some(&b"Hello world"[..]), "text untouched");
    let mut r = parse("id:1 stat:UNDELIV");
    r.merge_tlvs(None, None, Some(&[3, 0x01, 0x0B])).unwrap();
    assert_eq!(r.err, Some(ReceiptErr::Code(0x010B)), "a text without err takes the TLV's");
}

#[test]
fn err_keeps_the_vendors_text_and_takes_at_most_three_digits_from_the_tlv() {
    // Goal: a receipt's err is never longer than the three characters Appendix B gives it
    // because of the network_error_code TLV (Cloudhopper refuses more): the vendor's own err
    // stays when the text has one, and one filled from the TLV is at most 999.
    let nec: &[u8] = &[3, 0x04, 0x01]; // GSM, error 1025
    let with_err = Bytes::from_static(b"id:1 stat:UNDELIV err:005 text:x");
    let r = Receipt::parse_with_tlvs(&with_err, None, None, Some(nec)).unwrap().receipt;
    assert_eq!(r.err, Some(ReceiptErr::Code(5)), "the vendor's own err");
    assert_eq!(formatted(&r), "id:1 stat:UNDELIV err:005 text:x");
    let without = Bytes::from_static(b"id:1 stat:UNDELIV text:x");
    let r = Receipt::parse_with_tlvs(&without, None, None, Some(nec)).unwrap().receipt;
    assert_eq!(r.err, Some(ReceiptErr::Code(ERR_CODE_MAX)));
    assert_eq!(formatted(&r), "id:1 stat:UNDELIV err:999 text:x");
    let r = Receipt::from_tlvs(b"1", 5, Some(nec)).unwrap();
    assert_eq!(formatted(&r), "id:1 stat:UNDELIV err:999");
    let mut r = parse("id:1 stat:UNDELIV");
    r.merge_tlvs(None, None, Some(nec)).unwrap();
    assert_eq!(r.err, Some(ReceiptErr::Code(ERR_CODE_MAX)));
    let r = Receipt::parse_with_tlvs(&without, None, None, Some(&[3, 0x03, 0xE7])).unwrap().receipt;
    assert_eq!(r.err, Some(ReceiptErr::Code(999)), "999 itself is kept");
}

#[test]
fn absent_or_empty_tlvs_leave_the_text_alone() {
    let mut r = parse(CANONICAL);
    r.merge_tlvs(None, None, None).unwrap();
    assert_eq!(r, parse(CANONICAL));
    r.merge_tlvs(Some(b"\0"), None, None).unwrap();
    assert_eq!(r.id.as_str(), "0123456789");
}

#[test]
fn bad_tlvs_are_errors_and_change_nothing() {
    let mut r = parse(CANONICAL);
    assert_eq!(
        r.merge_tlvs(Some(b"NEW"), Some(2), Some(&[1, 2])),
        Err(ReceiptError::NetworkErrorCodeLen { len: 2, expected: 3 })
    );
    assert_eq!(r.merge_tlvs(Some(b"NEW"), Some(10), None), Err(ReceiptError::UnknownMessageState(10)));
    assert_eq!(
        r.merge_tlvs(Some(&[b'a'; ID_LEN_MAX + 1]), None, None),
        Err(ReceiptError::IdTooLong { len: ID_LEN_MAX + 1, max: ID_LEN_MAX })
    );
    assert_eq!(r, parse(CANONICAL));
}

#[test]
fn tlvs_alone_make_a_receipt() {
    let r = Receipt::from_tlvs(b"5F2A\0", 2, Some(&[1, 0, 0])).unwrap();
    assert_eq!(r.id.as_str(), "5F2A");
    assert_eq!(r.stat, MessageState::Delivered);
    assert_eq!(r.err, Some(ReceiptErr::Code(0)));
    assert_eq!(formatted(&r), "id:5F2A stat:DELIVRD err:000");
    assert_eq!(Receipt::from_tlvs(b"\0", 2, None), Err(ReceiptError::MissingId));
}

#[test]
fn parse_with_tlvs_survives_empty_or_garbled_text() {
    let empty = Bytes::new();
    let r = Receipt::parse_with_tlvs(&empty, Some(b"77\0"), Some(3), None).unwrap().receipt;
    assert_eq!((r.id.as_str(), r.stat), ("77", MessageState::Expired));

    // Garbled id and stat in the text, good TLVs: the TLVs stand in, the rest of the text is kept.
    let text = Bytes::from_static(b"id:\xff\xfe stat:WHATEVER sub:1 dlvrd:0 err:12 text:hi");
    let r = Receipt::parse_with_tlvs(&text, Some(b"77"), Some(8), None).unwrap().receipt;
    assert_eq!((r.id.as_str(), r.stat, r.sub), ("77", MessageState::Rejected, Some(1)));
    assert_eq!(r.err, Some(ReceiptErr::Code(12)));

    // Without TLVs for them, the same text fails.
    assert!(Receipt::parse_with_tlvs(&text, None, Some(8), None).is_err());
    assert_eq!(
        Receipt::parse_with_tlvs(&text, Some(b"77"), None, None),
        Err(ReceiptError::UnknownStat(Bytes::from_static(b"WHATEVER")))
    );
}

#[test]
fn a_bad_tlv_is_passed_over_for_the_text_value() {
    // Goal: a receipt whose Appendix B text is good is not lost to one bad TLV: the text's id,
    // state or error stands in, and the bad TLV is reported.
    let text = Bytes::from_static(b"id:123 stat:DELIVRD err:005");
    let check = |rmid: Option<&[u8]>, state: Option<u8>, nec: Option<&[u8]>, why: ReceiptError| {
        let p = Receipt::parse_with_tlvs(&text, rmid, state, nec).unwrap();
        assert_eq!((p.receipt.id.as_str(), p.receipt.stat), ("123", MessageState::Delivered), "{why}");
        assert_eq!(p.receipt.err, Some(ReceiptErr::Code(5)), "{why}");
        assert_eq!(p.ignored_tlv, Some(why));
    };
    check(None, Some(10), None, ReceiptError::UnknownMessageState(10));
    check(Some(b"12 3\0"), None, None, ReceiptError::IdByteInvalid { byte: b' ', index: 2 });
    // 66 octets fit the TLV's bound, which counts a NUL; without one they are an id too long.
    let long = [b'7'; crate::tlv::RECEIPTED_MESSAGE_ID_LEN_MAX];
    check(Some(&long), None, None, ReceiptError::IdTooLong { len: ID_LEN_MAX + 1, max: ID_LEN_MAX });
    check(None, None, Some(&[3, 0]), ReceiptError::NetworkErrorCodeLen { len: 2, expected: 3 });
    // The call the review names: text and an unknown message_state alone.
    let p =
        Receipt::parse_with_tlvs(&Bytes::from_static(b"id:123 stat:DELIVRD"), None, Some(10), None).unwrap();
    assert_eq!((p.receipt.id.as_str(), p.receipt.stat), ("123", MessageState::Delivered));
    // Good TLVs report nothing.
    let p = Receipt::parse_with_tlvs(&text, Some(b"9\0"), Some(5), Some(&[3, 0, 7])).unwrap();
    assert_eq!(
        (p.receipt.id.as_str(), p.receipt.stat, p.ignored_tlv),
        ("9", MessageState::Undeliverable, None)
    );
}

#[test]
fn a_bad_tlv_with_nothing_in_the_text_is_the_error() {
    // Goal: when the text gives no id or state either, the bad TLV's error says why.
    let text = Bytes::from_static(b"sub:001");
    assert_eq!(
        Receipt::parse_with_tlvs(&text, Some(b"12 3"), Some(2), None),
        Err(ReceiptError::IdByteInvalid { byte: b' ', index: 2 })
    );
    assert_eq!(
        Receipt::parse_with_tlvs(&text, Some(b"1"), Some(10), None),
        Err(ReceiptError::UnknownMessageState(10))
    );
    // A bad text id with a bad TLV id: the text's error.
    let text = Bytes::from_static(b"id:\xff stat:DELIVRD");
    assert_eq!(
        Receipt::parse_with_tlvs(&text, Some(b"12 3"), None, None),
        Err(ReceiptError::IdByteInvalid { byte: 0xff, index: 0 })
    );
    // from_tlvs has no text to fall back on: every TLV must pass.
    assert_eq!(
        Receipt::from_tlvs(b"1", 2, Some(&[1, 2])),
        Err(ReceiptError::NetworkErrorCodeLen { len: 2, expected: 3 })
    );
}

#[test]
fn message_state_values_words_and_finality() {
    for value in 0..=u8::MAX {
        match MessageState::from_u8(value) {
            Some(state) => {
                assert_eq!(state.as_u8(), value);
                assert_eq!(MessageState::from_stat_word(state.stat_word().as_bytes()), Some(state));
            }
            None => assert!(value > 9),
        }
    }
    // Values from shared/smpp-reference.md.
    let table = [(1, "ENROUTE"), (2, "DELIVRD"), (3, "EXPIRED"), (4, "DELETED")];
    let table2 = [(5, "UNDELIV"), (6, "ACCEPTD"), (7, "UNKNOWN"), (8, "REJECTD")];
    for (value, word) in table.into_iter().chain(table2) {
        assert_eq!(MessageState::from_u8(value).map(MessageState::stat_word), Some(word));
    }
    let finals: Vec<u8> = MessageState::ALL.iter().filter(|s| s.is_final()).map(|s| s.as_u8()).collect();
    assert_eq!(finals, [2, 3, 4, 5, 6, 8, 9]);
}

#[test]
fn esm_class_message_type_ignores_mode_udhi_and_reply_path() {
    assert_eq!(esm_class_message_type(0x00), EsmMessageType::Normal);
    assert_eq!(esm_class_message_type(0x04), EsmMessageType::SmscDeliveryReceipt);
    assert_eq!(esm_class_message_type(0x08), EsmMessageType::SmeDeliveryAck);
    assert_eq!(esm_class_message_type(0x10), EsmMessageType::SmeManualAck);
    assert_eq!(esm_class_message_type(0x18), EsmMessageType::ConversationAbort);
    assert_eq!(esm_class_message_type(0x20), EsmMessageType::IntermediateNotification);
    assert_eq!(esm_class_message_type(0x0C), EsmMessageType::Reserved(0x0C));
    // UDHI (0x40), reply path (0x80) and messaging-mode bits (0x03) do not change the type.
    for extra in [0x40, 0x80, 0xC0, 0x03, 0xC3] {
        assert_eq!(esm_class_message_type(0x04 | extra), EsmMessageType::SmscDeliveryReceipt);
        assert_eq!(esm_class_message_type(extra), EsmMessageType::Normal);
        assert!(is_receipt(0x04 | extra) && is_receipt(0x20 | extra));
        assert!(!is_receipt(0x08 | extra) && !is_receipt(0x10 | extra) && !is_receipt(extra));
    }
}

/// Valid ReceiptDates in each of the three forms, as parsing would produce them.
fn any_date() -> impl Strategy<Value = ReceiptDate> {
    (0u8..3, 0u16..=9999, 1u8..=12, 1u8..=31, 0u8..=23, 0u8..=59, 0u8..=59).prop_map(
        |(form, year, month, day, hour, minute, second)| match form {
            0 => date(2000 + year % 100, month, day, hour, minute, None),
            1 => date(2000 + year % 100, month, day, hour, minute, Some(second)),
            _ => ReceiptDate { four_digit_year: true, ..date(year, month, day, hour, minute, Some(second)) },
        },
    )
}

fn any_receipt() -> impl Strategy<Value = Receipt> {
    let err = prop_oneof![
        any::<u16>().prop_map(ReceiptErr::Code),
        "[A-Za-z][A-Za-z0-9]{0,7}".prop_map(|s| ReceiptErr::Text(Bytes::from(s))),
    ];
    // Keys starting with x are never known keys.
    let extra = ("x[a-z0-9_]{0,6}", "[A-Za-z0-9:]{0,8}")
        .prop_map(|(k, v)| ExtraField { key: Bytes::from(k), value: Bytes::from(v) });
    let text = proptest::collection::vec(any::<u8>(), 0..40).prop_map(|mut text| {
        while text.last().is_some_and(|&b| is_sep(b)) {
            text.pop();
        }
        Bytes::from(text)
    });
    (
        "[0-9A-Za-z-]{1,65}",
        proptest::option::of(any::<u16>()),
        proptest::option::of(any::<u16>()),
        proptest::option::of(any_date()),
        proptest::option::of(any_date()),
        proptest::sample::select(&MessageState::ALL[..]),
        proptest::option::of(err),
        proptest::option::of(text),
        proptest::collection::vec(extra, 0..=EXTRA_FIELDS_MAX),
    )
        .prop_map(|(id, sub, dlvrd, submit_date, done_date, stat, err, text, extra)| Receipt {
            id: ReceiptId::new(Bytes::from(id)).unwrap(),
            sub,
            dlvrd,
            submit_date,
            done_date,
            stat,
            err,
            text,
            extra,
        })
}

/// Receipt-shaped noise: known and unknown keys, odd separators, digits and junk, in any order.
fn receipt_soup() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"id:".to_vec()),
        Just(b"ID:".to_vec()),
        Just(b"stat:".to_vec()),
        Just(b"submit date:".to_vec()),
        Just(b"done_date:".to_vec()),
        Just(b"text:".to_vec()),
        Just(b"err:".to_vec()),
        Just(b"sub:".to_vec()),
        Just(b" ".to_vec()),
        Just(b":".to_vec()),
        Just(b"\0".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"DELIVRD".to_vec()),
        "[0-9]{0,16}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

proptest! {
    #[test]
    fn parse_never_panics_on_arbitrary_bytes(input in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Receipt::parse(&input);
    }

    #[test]
    fn parse_never_panics_on_receipt_soup(input in receipt_soup(), state in any::<u8>()) {
        if let Ok(r) = Receipt::parse(&input) {
            // Whatever parses formats and parses again to a receipt with the same id and state.
            let again = Receipt::parse(&r.to_bytes()).unwrap();
            prop_assert_eq!((&again.id, again.stat), (&r.id, r.stat));
        }
        let input = Bytes::from(input);
        let _ = Receipt::parse_with_tlvs(&input, Some(&input), Some(state), Some(&input));
    }

    #[test]
    fn format_then_parse_gives_the_receipt_back(receipt in any_receipt()) {
        let mut out = BytesMut::new();
        receipt.format_into_as(&mut out, DateStyle::AsReceived);
        prop_assert!(out.len() <= receipt.formatted_len_max(receipt.id.as_bytes().len()));
        prop_assert_eq!(Receipt::parse(&out).unwrap(), receipt);
    }

    #[test]
    fn standard_format_is_stable_after_one_pass(receipt in any_receipt()) {
        // Standard dates drop seconds and century once; after that the text is a fixed point.
        let first = receipt.to_bytes();
        prop_assert!(first.len() <= receipt.formatted_len_max(receipt.id.as_bytes().len()));
        let reparsed = Receipt::parse(&first).unwrap();
        prop_assert_eq!(&reparsed.to_bytes(), &first);
        prop_assert_eq!((&reparsed.id, reparsed.stat, &reparsed.text), (&receipt.id, receipt.stat, &receipt.text));
    }
}

#[test]
fn keys_matched_as_written_classify_as_the_general_path_does() {
    // classify() matches the usual spellings before normalising; both paths must agree, for those
    // spellings and for every variant of case and gap the general path accepts.
    for key in [
        "id",
        "sub",
        "dlvrd",
        "submit date",
        "done date",
        "stat",
        "err",
        "text",
        "Text",
        "ID",
        "Sub",
        "submit_date",
        "Submit  Date",
        "donedate",
        "STAT",
        "Err",
        "TEXT",
        "msgid",
        "x id",
        "",
    ] {
        let mut general = (Key::known(key.as_bytes()), true);
        if general.0 == Key::Other {
            // classify() also tries the key without its leading words, a weaker match.
            if let Some((_, last)) = key.rsplit_once(' ') {
                let found = Key::known(last.as_bytes());
                general = (found, found == Key::Other);
            }
        }
        assert_eq!(Key::classify(key.as_bytes()), general, "key {key:?}");
    }
    assert_eq!(Key::classify(b"Text"), (Key::Text, true));
    assert_eq!(Key::classify(b"submit date"), (Key::SubmitDate, true));
    assert_eq!(Key::classify(b"msg id"), (Key::Id, false));
}

#[test]
fn an_owned_receipt_is_equal_and_outside_the_text_it_was_parsed_from() {
    // Goal: a receipt kept a while holds its own copies, not slices of the vendor's buffer.
    let text = Bytes::from_static(
        b"id:ABC123 sub:001 dlvrd:001 submit date:2611261200 done date:2611261201 stat:DELIVRD err:X1 mcc:310 text:hello",
    );
    let r = Receipt::parse_bytes(&text).unwrap();
    let owned = r.clone().into_owned();
    assert_eq!(owned, r);
    let inside = |b: &[u8]| text.as_ptr_range().contains(&b.as_ptr());
    assert!(!inside(owned.id.as_bytes()));
    assert!(!inside(owned.text.as_deref().unwrap()));
    let Some(ReceiptErr::Text(err)) = &owned.err else { panic!("a text err: {:?}", owned.err) };
    assert!(!inside(err));
    assert!(owned.extra.iter().all(|f| !inside(&f.key) && !inside(&f.value)));
    assert!(inside(r.id.as_bytes()), "the parsed one was a slice");
}

#[test]
fn a_deliver_sm_with_a_65_character_receipted_message_id_decodes_and_parses() {
    // Goal: SMSCs send 65-character ids, which this module accepts; in receipted_message_id that is
    // 66 octets with the NUL, and the deliver_sm must not be refused with ESME_RINVPARLEN for it.
    use crate::{Body, Decoder, Pdu, PduError, SubmitSm, Tlvs, tag};
    let long = "7".repeat(ID_LEN_MAX);
    let text = Bytes::from(format!("id:{long} stat:DELIVRD"));
    let tlvs =
        Tlvs::builder().cstr(tag::RECEIPTED_MESSAGE_ID, long.as_bytes()).u8(tag::MESSAGE_STATE, 2).build();
    let deliver = SubmitSm { esm_class: 0x04, short_message: text, tlvs, ..SubmitSm::default() };
    let mut wire = BytesMut::new();
    Pdu::new(5, Body::DeliverSm(deliver)).encode(&mut wire);
    let pdu = Decoder::default().decode(&mut wire).unwrap().unwrap();
    let Body::DeliverSm(d) = pdu.body else { panic!("deliver_sm: {pdu:?}") };
    let rmid = d.tlvs.get(tag::RECEIPTED_MESSAGE_ID).unwrap();
    assert_eq!(rmid.len(), ID_LEN_MAX + 1, "65 characters and the NUL");
    let r = Receipt::parse_with_tlvs(&d.short_message, Some(&rmid), d.tlvs.message_state(), None)
        .unwrap()
        .receipt;
    assert_eq!(r.id.as_str(), long);
    assert_eq!(r.stat, MessageState::Delivered);
    // The TLV alone (the text without an id) gives the same id.
    let r = Receipt::from_tlvs(&rmid, 2, None).unwrap();
    assert_eq!(r.id.as_str(), long);
    // One octet more is still refused.
    let over = Bytes::from(vec![b'7'; ID_LEN_MAX + 2]);
    let raw = Tlvs::builder().bytes(tag::RECEIPTED_MESSAGE_ID, &over).build().raw().clone();
    assert_eq!(
        Tlvs::decode(raw),
        Err(PduError::TlvLength { tag: tag::RECEIPTED_MESSAGE_ID, len: ID_LEN_MAX + 2, min: 1, max: 66 })
    );
}
