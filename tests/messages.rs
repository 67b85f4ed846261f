//! Long messages (UDH, SAR, message_payload) with per-part receipts under both policies, MO,
//! submit_multi, data_sm receipts, and receipts that cross cores.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Client, config, receipt_of, sim, wait_for};
use smppgw_codec::receipt::MessageState;
use smppgw_codec::text::{Encoding, Form, RefWidth, split};
use smppgw_codec::{Address, Body, CommandStatus, DestAddress, Pdu, SubmitMulti, tag};
use smppgw_engine::config::{ReceiptParts, ReceiptPdu};

/// Submits `text` split in `form` with registered_delivery; returns the ids of the parts.
fn submit_long(c: &mut Client, dest: &str, text: &str, form: Form) -> Vec<String> {
    let parts = split(text, Encoding::Gsm7, form, 0x1234).expect("split");
    let mut ids = Vec::new();
    for part in parts {
        let (seq, mut p) = c.submit_pdu(dest, "");
        if let Body::SubmitSm(s) = &mut p.body {
            s.registered_delivery = 1;
            s.short_message = part.short_message.clone();
            if part.udhi {
                s.esm_class |= 0x40;
            }
            let mut t = smppgw_codec::Tlvs::builder();
            if let Some(sar) = part.sar {
                t = t
                    .u16(tag::SAR_MSG_REF_NUM, sar.ref_num)
                    .u8(tag::SAR_TOTAL_SEGMENTS, sar.total)
                    .u8(tag::SAR_SEGMENT_SEQNUM, sar.seq);
            }
            if let Some(pl) = &part.message_payload {
                t = t.bytes(tag::MESSAGE_PAYLOAD, pl);
            }
            s.tlvs = t.build();
        }
        c.send(&p);
        let r = c.recv_resp(seq);
        assert_eq!(r.command_status, CommandStatus::ESME_ROK);
        let Body::SubmitSmResp(m) = r.body else { panic!("submit_sm_resp") };
        ids.push(String::from_utf8_lossy(&m.message_id).into_owned());
    }
    ids
}

fn long_text() -> String {
    "The quick brown fox jumps over the lazy dog. ".repeat(8)
}

/// Collects `n` receipts: (id, derived).
fn receipts(c: &mut Client, n: usize) -> Vec<(String, bool)> {
    (0..n)
        .map(|_| {
            let p = c.recv_deliver();
            let (id, _) = receipt_of(&p);
            let derived = match &p.body {
                Body::DeliverSm(s) => s.tlvs.contains(smppgw_engine::core::TAG_DERIVED_RECEIPT),
                _ => false,
            };
            c.answer(&p, CommandStatus::ESME_ROK);
            (id, derived)
        })
        .collect()
}

fn run_long(form: Form, policy: ReceiptParts) {
    let v = sim(|_| {});
    let mut cfg = config(&[("v", v.local_addr())]);
    cfg.customers[0].receipt_parts = policy;
    let gw = smppgw_engine::start(cfg).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(5), || v.stats().binds_current >= 2));
    let ids = submit_long(&mut c, "15557770000", &long_text(), form);
    let expect_parts = if matches!(form, Form::Payload) { 1 } else { 3 };
    assert_eq!(ids.len(), expect_parts);
    let got = receipts(&mut c, ids.len());
    let got_ids: HashSet<String> = got.iter().map(|(i, _)| i.clone()).collect();
    assert_eq!(
        got_ids,
        ids.iter().cloned().collect::<HashSet<_>>(),
        "one receipt per part, each with its own id"
    );
    let recorded = v.take_recorded();
    let asked = recorded.iter().filter(|r| r.pdu.registered_delivery & 1 != 0).count();
    let derived = got.iter().filter(|(_, d)| *d).count();
    match (policy, expect_parts) {
        (ReceiptParts::Last, 3) => {
            assert_eq!(asked, 1, "only the last part asks the vendor for a receipt");
            assert_eq!(derived, 2, "the other two are derived and marked");
        }
        _ => {
            assert_eq!(asked, expect_parts, "every part asks");
            assert_eq!(derived, 0);
        }
    }
    gw.shutdown();
    gw.join();
}

#[test]
fn udh_parts_receipts_every_part() {
    run_long(Form::Udh(RefWidth::Bits8), ReceiptParts::All);
}

#[test]
fn udh_parts_receipt_for_last_part_only() {
    run_long(Form::Udh(RefWidth::Bits16), ReceiptParts::Last);
}

#[test]
fn sar_parts_receipts_both_policies() {
    run_long(Form::Sar(RefWidth::Bits8), ReceiptParts::All);
    run_long(Form::Sar(RefWidth::Bits8), ReceiptParts::Last);
}

#[test]
fn message_payload_is_one_message_with_one_receipt() {
    run_long(Form::Payload, ReceiptParts::Last);
}

#[test]
fn mo_reaches_the_customer_that_owns_the_number() {
    // Goal: a deliver_sm that is not a receipt goes to the customer owning the destination range.
    run_mo(false);
}

#[test]
fn data_sm_mo_reaches_the_customer_that_owns_the_number() {
    // Goal: the same for an MO the vendor sends as data_sm (its text in message_payload).
    run_mo(true);
}

fn run_mo(data_sm: bool) {
    let v = sim(|s| {
        s.mo.rate_per_s = 20.0;
        s.mo.dest = smppgw_loadgen::pattern::Pattern::parse("12345").unwrap();
        s.mo.data_sm = data_sm;
        s.mo.text = "STOP".into();
    });
    let mut cfg = config(&[("v", v.local_addr())]);
    cfg.customers[1].number_ranges = vec!["123".into()];
    let gw = smppgw_engine::start(cfg).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("rx", "c2", "pw"), CommandStatus::ESME_ROK);
    for _ in 0..3 {
        let p = c.recv_deliver();
        let Body::DeliverSm(s) = &p.body else { panic!("deliver_sm") };
        assert!(!smppgw_codec::receipt::is_receipt(s.esm_class), "an MO, not a receipt");
        assert_eq!(&s.dest.addr[..], b"12345");
        let text = if s.short_message.is_empty() {
            s.tlvs.message_payload().unwrap_or_default()
        } else {
            s.short_message.clone()
        };
        assert_eq!(&text[..], b"STOP", "the handset's text");
        c.answer(&p, CommandStatus::ESME_ROK);
    }
    assert!(gw.metrics.mo_in.load(Ordering::Relaxed) >= 3);
    gw.shutdown();
    gw.join();
}

#[test]
fn a_submit_multi_all_of_whose_destinations_fail_alike_answers_with_that_status() {
    // Goal: when no destination goes out and all failed for one reason (a field of the message
    // itself, no route), the command_status is that reason, not ESME_RSUBMITFAIL, which many
    // clients take as final; different reasons still give ESME_RSUBMITFAIL.
    let v = sim(|_| {});
    let mut cfg = config(&[("v", v.local_addr())]);
    cfg.routes[0].prefixes = vec!["1555".into()];
    let gw = smppgw_engine::start(cfg).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    let sme = |d: &'static str| DestAddress::Sme(Address::new(1, 1, d));
    let send = |c: &mut Client, dests: Vec<DestAddress>, esm_class: u8| {
        let seq = c.next_seq();
        let m = SubmitMulti {
            source: Address::new(1, 1, "15550001"),
            dests,
            esm_class,
            short_message: "to many".into(),
            ..Default::default()
        };
        c.send(&Pdu::new(seq, Body::SubmitMulti(m)));
        let r = c.recv_resp(seq);
        let Body::SubmitMultiResp(resp) = &r.body else { panic!("submit_multi_resp: {r:?}") };
        (r.command_status, resp.unsuccess.len())
    };
    assert_eq!(
        send(&mut c, vec![sme("15558880001"), sme("15558880002")], 0x04),
        (CommandStatus::ESME_RINVESMCLASS, 2),
        "a receipt's esm_class, for every destination"
    );
    assert_eq!(
        send(&mut c, vec![sme("447700900001"), sme("447700900002")], 0),
        (CommandStatus::ESME_RINVDSTADR, 2),
        "no route for any"
    );
    assert_eq!(
        send(&mut c, vec![sme("447700900001"), DestAddress::DistributionList("friends".into())], 0),
        (CommandStatus::ESME_RSUBMITFAIL, 2),
        "two reasons"
    );
    assert_eq!(v.stats().submits, 0);
    gw.shutdown();
    gw.join();
}

#[test]
fn submit_multi_routes_each_destination_and_lists_failures() {
    // Goal: each SME destination is routed and sent on its own; a distribution list and a
    // destination no route covers come back in unsuccess_sme with their own status; every
    // delivered destination's receipt carries the one id the customer got.
    let v = sim(|_| {});
    let mut cfg = config(&[("v", v.local_addr())]);
    cfg.routes[0].prefixes = vec!["1555".into()];
    let gw = smppgw_engine::start(cfg).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(5), || v.stats().binds_current >= 2));
    let seq = c.next_seq();
    let m = SubmitMulti {
        source: Address::new(1, 1, "15550001"),
        dests: vec![
            DestAddress::Sme(Address::new(1, 1, "15558880001")),
            DestAddress::Sme(Address::new(1, 1, "15558880002")),
            DestAddress::DistributionList("friends".into()),
            DestAddress::Sme(Address::new(1, 1, "447700900777")),
            DestAddress::Sme(Address::new(1, 1, "15558880003")),
        ],
        registered_delivery: 1,
        short_message: "to many".into(),
        ..Default::default()
    };
    c.send(&Pdu::new(seq, Body::SubmitMulti(m)));
    let r = c.recv_resp(seq);
    assert_eq!(r.command_status, CommandStatus::ESME_ROK);
    let Body::SubmitMultiResp(resp) = r.body else { panic!("submit_multi_resp") };
    let failed: Vec<(&[u8], CommandStatus)> =
        resp.unsuccess.iter().map(|u| (&u.addr.addr[..], u.error_status)).collect();
    assert_eq!(
        failed,
        vec![
            (&b"friends"[..], CommandStatus::ESME_RINVDLNAME),
            (&b"447700900777"[..], CommandStatus::ESME_RINVDSTADR)
        ]
    );
    let sent: HashSet<Vec<u8>> = v.take_recorded().iter().map(|r| r.pdu.dest.addr.to_vec()).collect();
    let want: HashSet<Vec<u8>> =
        ["15558880001", "15558880002", "15558880003"].iter().map(|d| d.as_bytes().to_vec()).collect();
    assert_eq!(sent, want, "each routable destination reached the vendor once, on its own");
    let id = String::from_utf8_lossy(&resp.message_id).into_owned();
    let mut from = HashSet::new();
    for _ in 0..3 {
        let p = c.recv_deliver();
        let (tlv, r) = receipt_of(&p);
        assert_eq!((tlv.as_str(), r.id.as_str()), (id.as_str(), id.as_str()), "the one id the customer got");
        let Body::DeliverSm(d) = &p.body else { panic!("deliver_sm") };
        from.insert(d.source.addr.to_vec());
        c.answer(&p, CommandStatus::ESME_ROK);
    }
    assert_eq!(from, want, "one receipt from each delivered destination");
    gw.shutdown();
    gw.join();
}

#[test]
fn data_sm_receipts_when_the_customer_prefers_them() {
    // Goal: receipt_pdu = data_sm delivers receipts as data_sm with the text in message_payload.
    let v = sim(|_| {});
    let mut cfg = config(&[("v", v.local_addr())]);
    cfg.customers[0].receipt_pdu = ReceiptPdu::DataSm;
    let gw = smppgw_engine::start(cfg).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(5), || v.stats().binds_current >= 2));
    let (_, id) = c.submit_dlr("15559990000", "data_sm please");
    let p = c.recv_deliver();
    assert!(matches!(p.body, Body::DataSm(_)));
    assert_eq!(receipt_of(&p).0, id);
    c.answer(&p, CommandStatus::ESME_ROK);
    gw.shutdown();
    gw.join();
}

#[test]
fn receipts_reach_receivers_on_every_core() {
    // Goal: with receiving sessions on both cores, every receipt arrives once, wherever its
    // submit, vendor bind, store shard and session live.
    let v = sim(|_| {});
    let mut cfg = config(&[("v", v.local_addr())]);
    // The receivers are read one after another once every submit is answered: a receipt on the
    // last may wait seconds on a loaded machine, and would be sent again after a short timeout.
    cfg.server.response_timeout_ms = 30_000;
    let gw = smppgw_engine::start(cfg).unwrap();
    let mut rxs = Vec::new();
    while rxs.len() < 16 {
        let mut r = Client::connect(gw.local_addr);
        assert_eq!(r.bind("rx", "c1", "pw"), CommandStatus::ESME_ROK);
        rxs.push(r);
        let per = &gw.metrics.sessions_by_core;
        if rxs.len() >= 4 && per[0].load(Ordering::Relaxed) > 0 && per[1].load(Ordering::Relaxed) > 0 {
            break;
        }
    }
    let per = &gw.metrics.sessions_by_core;
    assert!(
        per[0].load(Ordering::Relaxed) > 0 && per[1].load(Ordering::Relaxed) > 0,
        "sessions on both cores"
    );
    let mut tx = Client::connect(gw.local_addr);
    assert_eq!(tx.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(5), || v.stats().binds_current >= 2));
    let mut ids = HashSet::new();
    for i in 0..40 {
        ids.insert(tx.submit_dlr(&format!("1555444{i:04}"), "x-core").1);
    }
    let mut got = HashSet::new();
    let mut sessions_used = HashSet::new();
    for r in &mut rxs {
        r.stream.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while got.len() < 40 && std::time::Instant::now() < deadline {
        for (i, r) in rxs.iter_mut().enumerate() {
            while let Some(p) = r.try_recv() {
                if let Body::DeliverSm(_) = p.body {
                    assert!(got.insert(receipt_of(&p).0), "no duplicates");
                    r.answer(&p, CommandStatus::ESME_ROK);
                    sessions_used.insert(i);
                }
            }
        }
    }
    assert_eq!(got, ids);
    assert!(sessions_used.len() >= 2, "receipts spread over sessions: {sessions_used:?}");
    gw.shutdown();
    gw.join();
}

#[test]
fn mo_waits_for_a_receiving_bind_and_is_delivered_whole_when_it_binds() {
    // Goal: MO for a customer with no receiving bind is held (like receipts), not dropped, and
    // every held message is delivered once it binds.
    let v = sim(|s| {
        s.mo.rate_per_s = 50.0;
        s.mo.dest = smppgw_loadgen::pattern::Pattern::parse("12345").unwrap();
    });
    let mut cfg = config(&[("v", v.local_addr())]);
    cfg.customers[1].number_ranges = vec!["123".into()];
    let gw = smppgw_engine::start(cfg).unwrap();
    assert!(wait_for(Duration::from_secs(10), || gw.metrics.mo_in.load(Ordering::Relaxed) >= 10));
    // Stop the vendor so that nothing new arrives: what the customer gets is what was held.
    let sent = v.stop().mo_sent;
    assert!(wait_for(Duration::from_secs(5), || gw.metrics.mo_in.load(Ordering::Relaxed) == sent));
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("rx", "c2", "pw"), CommandStatus::ESME_ROK);
    for i in 0..sent {
        let p = c.recv_deliver();
        let Body::DeliverSm(s) = &p.body else { panic!("deliver_sm") };
        assert!(!smppgw_codec::receipt::is_receipt(s.esm_class), "MO {i}");
        c.answer(&p, CommandStatus::ESME_ROK);
    }
    c.stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    assert!(c.try_recv().is_none(), "each held MO delivered once");
    gw.shutdown();
    gw.join();
}

/// Submits one part (reference, total, number) of a long message in UDH form, asking for a
/// receipt; returns the submit_sm_resp.
fn submit_udh_part(c: &mut Client, dest: &str, part: (u8, u8, u8), text: &[u8]) -> Pdu {
    submit_udh_part_asking(c, dest, part, text, 1)
}

/// [`submit_udh_part`] with `registered_delivery`.
fn submit_udh_part_asking(c: &mut Client, dest: &str, part: (u8, u8, u8), text: &[u8], rd: u8) -> Pdu {
    let (seq, p) = udh_part(c, dest, part, text, rd);
    c.send(&p);
    c.recv_resp(seq)
}

/// The submit_sm of one part of a long message in UDH form, and its sequence number.
fn udh_part(c: &mut Client, dest: &str, (r, total, part): (u8, u8, u8), text: &[u8], rd: u8) -> (u32, Pdu) {
    let (seq, mut p) = c.submit_pdu(dest, "");
    let Body::SubmitSm(s) = &mut p.body else { unreachable!() };
    s.registered_delivery = rd;
    s.esm_class |= 0x40;
    s.short_message = [&[5u8, 0x00, 3, r, total, part][..], text].concat().into();
    (seq, p)
}

/// A simulator (`tweak`ed), a gateway whose customer c1 has receipt_parts = "last", and c1 bound
/// as a transceiver once the vendor binds are up.
fn last_part_policy(
    tweak: impl FnOnce(&mut smppgw_loadgen::sim::SimConfig),
) -> (smppgw_loadgen::sim::SimHandle, smppgw_engine::Gateway, Client) {
    let v = sim(tweak);
    let mut cfg = config(&[("v", v.local_addr())]);
    cfg.customers[0].receipt_parts = ReceiptParts::Last;
    let gw = smppgw_engine::start(cfg).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(5), || v.stats().binds_current >= 2));
    (v, gw, c)
}

#[test]
fn a_part_repeated_past_its_group_asks_the_vendor_for_its_own_receipt() {
    // Goal: under receipt_parts = last a group keeps at most its other parts; a customer that
    // repeats part 1 of 2 does not make it grow: the extra copies ask the vendor themselves, and
    // every submitted part still gets exactly one receipt.
    let (v, gw, mut c) = last_part_policy(|_| {});
    let mut ids = Vec::new();
    for seq_in_group in [1u8, 1, 1, 1, 2] {
        let r = submit_udh_part(&mut c, "15557771111", (0x42, 2, seq_in_group), b"part");
        assert_eq!(r.command_status, CommandStatus::ESME_ROK);
        let Body::SubmitSmResp(m) = r.body else { panic!("submit_sm_resp") };
        ids.push(String::from_utf8_lossy(&m.message_id).into_owned());
    }
    let asked = v.take_recorded().iter().filter(|r| r.pdu.registered_delivery & 1 != 0).count();
    assert_eq!(asked, 4, "the first part 1 waits for the last; the three repeats and the last ask");
    let got = receipts(&mut c, 5);
    let got_ids: HashSet<String> = got.iter().map(|(i, _)| i.clone()).collect();
    assert_eq!(got_ids, ids.iter().cloned().collect::<HashSet<_>>(), "one receipt per submitted part");
    assert_eq!(got.iter().filter(|(_, derived)| *derived).count(), 1, "one derived from the last part");
    gw.shutdown();
    gw.join();
}

#[test]
fn when_the_last_part_fails_the_earlier_parts_get_derived_undeliverable_receipts() {
    // Goal: under receipt_parts = last only the last part asks the vendor for a receipt; when
    // the vendor refuses that part, the parts it already accepted still get one receipt each
    // (UNDELIV, derived, err the last part's status) instead of waiting forever.
    let (_v, gw, mut c) = last_part_policy(|s| {
        s.faults.refuse_containing = Some(b"BLOCKED".to_vec());
        s.faults.error_status = CommandStatus::ESME_RINVDSTADR;
    });
    let mut ids = Vec::new();
    for (part, text) in [(1u8, &b"first part "[..]), (2, b"second part "), (3, b"BLOCKED end")] {
        let r = submit_udh_part(&mut c, "15557772222", (0x43, 3, part), text);
        if part < 3 {
            assert_eq!(r.command_status, CommandStatus::ESME_ROK, "part {part}");
            let Body::SubmitSmResp(m) = r.body else { panic!("submit_sm_resp") };
            ids.push(String::from_utf8_lossy(&m.message_id).into_owned());
        } else {
            assert_eq!(r.command_status, CommandStatus::ESME_RINVDSTADR, "the vendor refused the last part");
        }
    }
    let mut got = HashSet::new();
    for _ in 0..2 {
        let p = c.recv_deliver();
        let (id, r) = receipt_of(&p);
        assert_eq!(r.stat, smppgw_codec::receipt::MessageState::Undeliverable);
        assert_eq!(r.err, Some(smppgw_codec::receipt::ReceiptErr::Code(0x0B)));
        // Every Appendix B field, the (empty) text too.
        assert_eq!((r.sub, r.dlvrd), (Some(1), Some(0)));
        assert!(r.submit_date.is_some() && r.done_date.is_some());
        assert_eq!(r.text.as_deref(), Some(&b""[..]), "an empty text:");
        let Body::DeliverSm(d) = &p.body else { panic!("deliver_sm") };
        assert!(d.tlvs.contains(smppgw_engine::core::TAG_DERIVED_RECEIPT), "marked derived");
        got.insert(id);
        c.answer(&p, CommandStatus::ESME_ROK);
    }
    assert_eq!(got, ids.iter().cloned().collect::<HashSet<_>>(), "one receipt for each accepted part");
    gw.shutdown();
    gw.join();
}

#[test]
fn a_last_part_refused_for_now_and_sent_again_gives_every_part_its_real_receipt() {
    // Goal: under receipt_parts = last, a last part refused with a temporary error (the
    // customer is told to retry) does not settle the earlier parts as undeliverable: they wait
    // for the retry, and when it is delivered every part gets a DELIVRD receipt. (They got
    // UNDELIV at once, and the handset then received the whole message.)
    let (_v, gw, mut c) = last_part_policy(|s| {
        s.faults.refuse_containing = Some(b"BUSY".to_vec());
        s.faults.error_status = CommandStatus::ESME_RTHROTTLED;
    });
    let mut ids = Vec::new();
    for (part, text) in [(1u8, &b"first part "[..]), (2, b"second part ")] {
        let r = submit_udh_part(&mut c, "15557774444", (0x45, 3, part), text);
        assert_eq!(r.command_status, CommandStatus::ESME_ROK, "part {part}");
        let Body::SubmitSmResp(m) = r.body else { panic!("submit_sm_resp") };
        ids.push(String::from_utf8_lossy(&m.message_id).into_owned());
    }
    let r = submit_udh_part(&mut c, "15557774444", (0x45, 3, 3), b"BUSY end");
    assert_eq!(r.command_status, CommandStatus::ESME_RTHROTTLED, "refused for now");
    // The retry (the vendor takes it this time).
    let r = submit_udh_part(&mut c, "15557774444", (0x45, 3, 3), b"the end");
    assert_eq!(r.command_status, CommandStatus::ESME_ROK, "the retry");
    let Body::SubmitSmResp(m) = r.body else { panic!("submit_sm_resp") };
    ids.push(String::from_utf8_lossy(&m.message_id).into_owned());
    let mut got = HashSet::new();
    for _ in 0..3 {
        let p = c.recv_deliver();
        let (id, r) = receipt_of(&p);
        assert_eq!(r.stat, smppgw_codec::receipt::MessageState::Delivered, "part {id}: {r:?}");
        got.insert(id);
        c.answer(&p, CommandStatus::ESME_ROK);
    }
    assert_eq!(got, ids.iter().cloned().collect::<HashSet<_>>(), "one receipt per part, all delivered");
    gw.shutdown();
    gw.join();
}

#[test]
fn an_earlier_part_the_vendor_refused_gets_no_derived_receipt() {
    // Goal: under receipt_parts = last, a middle part the vendor refused (the customer got an
    // error and no id for it) gets no receipt derived from the last part's; the parts accepted
    // get one each.
    let (_v, gw, mut c) = last_part_policy(|s| {
        s.faults.refuse_containing = Some(b"BLOCKED".to_vec());
        s.faults.error_status = CommandStatus::ESME_RINVDSTADR;
    });
    let mut ids = Vec::new();
    for (part, text) in [(1u8, &b"first part "[..]), (2, b"BLOCKED middle "), (3, b"last part")] {
        let r = submit_udh_part(&mut c, "15557773333", (0x44, 3, part), text);
        if part == 2 {
            assert_eq!(r.command_status, CommandStatus::ESME_RINVDSTADR, "the vendor refused part 2");
        } else {
            assert_eq!(r.command_status, CommandStatus::ESME_ROK, "part {part}");
            let Body::SubmitSmResp(m) = r.body else { panic!("submit_sm_resp") };
            ids.push(String::from_utf8_lossy(&m.message_id).into_owned());
        }
    }
    let got = receipts(&mut c, 2);
    let got_ids: HashSet<String> = got.iter().map(|(i, _)| i.clone()).collect();
    assert_eq!(got_ids, ids.iter().cloned().collect::<HashSet<_>>(), "parts 1 and 3");
    assert_eq!(got.iter().filter(|(_, derived)| *derived).count(), 1, "part 1's, derived");
    c.stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let extra = std::iter::from_fn(|| c.try_recv()).find(|p| matches!(p.body, Body::DeliverSm(_)));
    assert!(extra.is_none(), "no receipt for the refused part: {extra:?}");
    assert_eq!(gw.metrics.derived_for_refused.load(Ordering::Relaxed), 1);
    gw.shutdown();
    gw.join();
}

#[test]
fn an_unbind_right_behind_a_submit_multi_or_a_query_waits_for_their_answers() {
    // Goal: a customer that writes a request and its unbind in one go (many libraries do at
    // shutdown) gets the request's answer first, then unbind_resp: the submit_multi's message id
    // (its receipts will carry it) and the query's state are not lost behind the unbind.
    let v = sim(|s| s.faults.resp_latency = smppgw_loadgen::sim::Delay::Fixed(Duration::from_millis(100)));
    let gw = smppgw_engine::start(config(&[("v", v.local_addr())])).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(5), || v.stats().binds_current >= 2));
    let (st, id) = c.submit("15558880009", "to query");
    assert_eq!(st, CommandStatus::ESME_ROK);
    let m = SubmitMulti {
        source: Address::new(1, 1, "15550001"),
        dests: vec![
            DestAddress::Sme(Address::new(1, 1, "15558880011")),
            DestAddress::Sme(Address::new(1, 1, "15558880012")),
        ],
        short_message: "to two".into(),
        ..Default::default()
    };
    let q = smppgw_codec::QuerySm { message_id: id.into(), source: Address::new(1, 1, "15550001") };
    let (multi_seq, query_seq, unbind_seq) = (c.next_seq(), c.next_seq(), c.next_seq());
    let mut wire = Pdu::new(multi_seq, Body::SubmitMulti(m)).to_bytes().to_vec();
    wire.extend_from_slice(&Pdu::new(query_seq, Body::QuerySm(q)).to_bytes());
    wire.extend_from_slice(&Pdu::new(unbind_seq, Body::Unbind).to_bytes());
    c.send_raw(&wire);
    let mut got = Vec::new();
    while let Some(p) = c.recv() {
        got.push((p.command_id(), p.sequence_number, p.command_status));
    }
    let last = got.last().copied();
    assert_eq!(
        last,
        Some((smppgw_codec::CommandId::UNBIND_RESP, unbind_seq, CommandStatus::ESME_ROK)),
        "{got:?}"
    );
    assert!(
        got.contains(&(smppgw_codec::CommandId::SUBMIT_MULTI_RESP, multi_seq, CommandStatus::ESME_ROK)),
        "{got:?}"
    );
    assert!(got.iter().any(|g| g.0 == smppgw_codec::CommandId::QUERY_SM_RESP && g.1 == query_seq), "{got:?}");
    gw.shutdown();
    gw.join();
}

/// The id in a submit_sm_resp.
fn id_of(r: &Pdu) -> String {
    let Body::SubmitSmResp(m) = &r.body else { panic!("submit_sm_resp: {r:?}") };
    String::from_utf8_lossy(&m.message_id).into_owned()
}

#[test]
fn parts_sent_on_sessions_of_different_cores_meet_in_one_group() {
    // Goal: under receipt_parts = last, a customer that sends one message's parts on binds
    // served by different executors (a pool of connections, each part on the next) still gets
    // the earlier parts' receipts derived from the last part's at once; their groups were per
    // executor, and such parts got stat UNKNOWN ten minutes later.
    let v = sim(|_| {});
    let mut cfg = config(&[("v", v.local_addr())]);
    cfg.customers[0].receipt_parts = ReceiptParts::Last;
    let gw = smppgw_engine::start(cfg).unwrap();
    assert!(wait_for(Duration::from_secs(5), || v.stats().binds_current >= 2));
    // Binds until two of them are on different cores.
    let mut by_core: [Option<Client>; 2] = [None, None];
    for _ in 0..16 {
        let per = &gw.metrics.sessions_by_core;
        let before: Vec<u64> = (0..2).map(|i| per[i].load(Ordering::Relaxed)).collect();
        let mut c = Client::connect(gw.local_addr);
        assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
        let after: Vec<u64> = (0..2).map(|i| per[i].load(Ordering::Relaxed)).collect();
        let core = (0..2).find(|&i| after[i] > before[i]).expect("the session is counted on its core");
        if by_core[core].is_none() {
            by_core[core] = Some(c);
        }
        if by_core.iter().all(Option::is_some) {
            break;
        }
    }
    let [Some(mut a), Some(mut b)] = by_core else { panic!("sessions on both cores") };
    let mut ids = vec![id_of(&submit_udh_part(&mut a, "15557772222", (0x17, 3, 1), b"one"))];
    ids.push(id_of(&submit_udh_part(&mut b, "15557772222", (0x17, 3, 2), b"two")));
    ids.push(id_of(&submit_udh_part(&mut a, "15557772222", (0x17, 3, 3), b"three")));
    let asked = v.take_recorded().iter().filter(|r| r.pdu.registered_delivery & 1 != 0).count();
    assert_eq!(asked, 1, "only the last part asked the vendor for a receipt");
    // The receipts go to whichever of the customer's receiving sessions: read both.
    let mut got = Vec::new();
    for c in [&mut a, &mut b] {
        c.stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while got.len() < 3 && std::time::Instant::now() < deadline {
        for c in [&mut a, &mut b] {
            while let Some(p) = c.try_recv() {
                if let Body::DeliverSm(s) = &p.body {
                    let derived = s.tlvs.contains(smppgw_engine::core::TAG_DERIVED_RECEIPT);
                    got.push((receipt_of(&p).0, derived, receipt_of(&p).1.stat.as_u8()));
                    c.answer(&p, CommandStatus::ESME_ROK);
                }
            }
        }
    }
    got.sort();
    let delivered = MessageState::Delivered.as_u8();
    let mut want: Vec<(String, bool, u8)> =
        ids.iter().enumerate().map(|(i, id)| (id.clone(), i < 2, delivered)).collect();
    want.sort();
    assert_eq!(got, want, "every part's receipt at once, the first two derived from the last");
    gw.shutdown();
    gw.join();
}

#[test]
fn parts_sent_after_their_last_part_ask_the_vendor_for_their_own_receipts() {
    // Goal: under receipt_parts = last, parts that come after their message's last part (a
    // part refused for now and sent again, parts sent out of order) are not held for a last
    // part that has come already: they ask the vendor, and every part gets its real receipt at
    // once (they waited in a group and got stat UNKNOWN ten minutes later).
    let (v, gw, mut c) = last_part_policy(|_| {});
    let mut ids = Vec::new();
    for part in [3u8, 1, 2] {
        let r = submit_udh_part(&mut c, "15557773333", (0x29, 3, part), b"out of order");
        assert_eq!(r.command_status, CommandStatus::ESME_ROK);
        ids.push(id_of(&r));
    }
    let asked = v.take_recorded().iter().filter(|r| r.pdu.registered_delivery & 1 != 0).count();
    assert_eq!(asked, 3, "each part asked the vendor");
    let got = receipts(&mut c, 3);
    let got_ids: HashSet<String> = got.iter().map(|(i, _)| i.clone()).collect();
    assert_eq!(got_ids, ids.into_iter().collect::<HashSet<_>>());
    assert!(got.iter().all(|(_, derived)| !derived), "the vendor's own receipts");
    gw.shutdown();
    gw.join();
}

#[test]
fn parts_still_waiting_for_their_last_part_when_the_node_stops_get_their_receipts() {
    // Goal: under receipt_parts = last, earlier parts asked the vendor for no receipt; when the
    // node stops before their last part came (it may go to another node in a rolling restart),
    // they get derived receipts (stat UNKNOWN) before the customer is unbound, instead of none.
    let (_v, gw, mut c) = last_part_policy(|_| {});
    let r = submit_udh_part(&mut c, "15557774444", (0x33, 2, 1), b"first of two");
    assert_eq!(r.command_status, CommandStatus::ESME_ROK);
    let id = id_of(&r);
    gw.shutdown();
    let mut got = Vec::new();
    while let Some(p) = c.recv() {
        match &p.body {
            Body::DeliverSm(s) => {
                let derived = s.tlvs.contains(smppgw_engine::core::TAG_DERIVED_RECEIPT);
                let (rid, receipt) = receipt_of(&p);
                got.push((rid, derived, receipt.stat.as_u8()));
                c.answer(&p, CommandStatus::ESME_ROK);
            }
            Body::Unbind => c.send(&Pdu::new(p.sequence_number, Body::UnbindResp)),
            _ => {}
        }
    }
    gw.join();
    assert_eq!(got, vec![(id, true, MessageState::Unknown.as_u8())], "its receipt before the unbind");
}

#[test]
fn a_last_part_asking_for_no_receipt_still_brings_the_earlier_parts_theirs() {
    // Goal: under receipt_parts = last, a customer asking for a receipt on the first part only
    // (part 1 registered_delivery 1, part 2 0) gets part 1's DELIVRD receipt within seconds and
    // none for part 2. Nothing asked the vendor for a receipt, and part 1 got stat UNKNOWN ten
    // minutes later.
    let (v, gw, mut c) = last_part_policy(|_| {});
    let r = submit_udh_part_asking(&mut c, "15557775555", (0x47, 2, 1), b"first part ", 1);
    assert_eq!(r.command_status, CommandStatus::ESME_ROK);
    let first = id_of(&r);
    let r = submit_udh_part_asking(&mut c, "15557775555", (0x47, 2, 2), b"last part", 0);
    assert_eq!(r.command_status, CommandStatus::ESME_ROK);
    c.stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let p = c.recv_deliver();
    let (id, receipt) = receipt_of(&p);
    assert_eq!((id.as_str(), receipt.stat), (first.as_str(), MessageState::Delivered), "part 1's receipt");
    let Body::DeliverSm(d) = &p.body else { panic!("deliver_sm") };
    assert!(d.tlvs.contains(smppgw_engine::core::TAG_DERIVED_RECEIPT), "derived from the last part's");
    c.answer(&p, CommandStatus::ESME_ROK);
    let asked = v.take_recorded().iter().filter(|r| r.pdu.registered_delivery & 0x03 == 1).count();
    assert_eq!(asked, 1, "the last part asked the vendor, for part 1");
    c.stream.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
    assert!(c.try_recv().is_none(), "no receipt for part 2, which asked for none");
    gw.shutdown();
    gw.join();
}

/// query_sm of our message `id`: its message_state.
fn query_state(c: &mut Client, id: &str) -> u8 {
    let seq = c.next_seq();
    let q =
        smppgw_codec::QuerySm { message_id: id.to_owned().into(), source: Address::new(1, 1, "15550001") };
    c.send(&Pdu::new(seq, Body::QuerySm(q)));
    let r = c.recv_resp(seq);
    let Body::QuerySmResp(q) = r.body else { panic!("query_sm_resp: {r:?}") };
    q.message_state
}

#[test]
fn derived_failure_and_unknown_receipts_follow_each_parts_registered_delivery() {
    // Goal: under receipt_parts = last, a customer asking for success receipts only (0x03) gets
    // no derived UNDELIV receipt when its last part is refused for good, nor a derived UNKNOWN
    // one for a part still waiting when the node stops; query_sm still reads UNDELIV. (Both
    // were delivered whatever the part asked for.)
    let (_v, gw, mut c) = last_part_policy(|s| {
        s.faults.refuse_containing = Some(b"BLOCKED".to_vec());
        s.faults.error_status = CommandStatus::ESME_RINVDSTADR;
    });
    let r = submit_udh_part_asking(&mut c, "15557776666", (0x48, 2, 1), b"first part ", 0x03);
    assert_eq!(r.command_status, CommandStatus::ESME_ROK);
    let first = id_of(&r);
    // Read by hand: a receipt may come before the answer (recv_resp passes receipts over).
    let (seq, p) = udh_part(&mut c, "15557776666", (0x48, 2, 2), b"BLOCKED end", 0x03);
    c.send(&p);
    c.stream.set_read_timeout(Some(Duration::from_millis(1_000))).unwrap();
    let got: Vec<Pdu> = std::iter::from_fn(|| c.try_recv()).collect();
    c.stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let resp = got.iter().find(|p| p.sequence_number == seq && p.command_id().is_response());
    let refused = resp.map(|p| p.command_status);
    assert_eq!(refused, Some(CommandStatus::ESME_RINVDSTADR), "the vendor refused the last part: {got:?}");
    let receipts: Vec<_> =
        got.iter().filter(|p| matches!(p.body, Body::DeliverSm(_))).map(receipt_of).collect();
    assert!(receipts.is_empty(), "no UNDELIV receipt for a part asking for successes only: {receipts:?}");
    let undeliv = MessageState::Undeliverable.as_u8();
    assert!(wait_for(Duration::from_secs(3), || query_state(&mut c, &first) == undeliv), "part 1 is UNDELIV");
    // A part whose last part will not come before the stop.
    let r = submit_udh_part_asking(&mut c, "15557776666", (0x49, 2, 1), b"first of two", 0x03);
    assert_eq!(r.command_status, CommandStatus::ESME_ROK);
    gw.shutdown();
    let mut got = Vec::new();
    while let Some(p) = c.recv() {
        match &p.body {
            Body::DeliverSm(_) => {
                got.push(receipt_of(&p));
                c.answer(&p, CommandStatus::ESME_ROK);
            }
            Body::Unbind => c.send(&Pdu::new(p.sequence_number, Body::UnbindResp)),
            _ => {}
        }
    }
    gw.join();
    assert!(got.is_empty(), "no receipt the customer did not ask for: {got:?}");
}
