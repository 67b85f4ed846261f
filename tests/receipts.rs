//! Receipts end to end: vendor receipts are matched whatever the vendor's id style and quirks,
//! rewritten to our id, and delivered to the customer (held while it has no receiving bind).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Client, config, receipt_of, sim, wait_for};
use smppgw_codec::receipt::MessageState;
use smppgw_codec::{Body, CommandStatus, Pdu};
use smppgw_loadgen::msgid::IdFormat;

fn run_receipt_round_trip(tweak: impl FnOnce(&mut smppgw_loadgen::sim::SimConfig)) {
    let vendor = sim(tweak);
    let gw = smppgw_engine::start(config(&[("v1", vendor.local_addr())])).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(5), || vendor.stats().binds_current >= 2), "vendor binds up");
    let (st, id) = c.submit_dlr("15551230001", "hello receipt");
    assert_eq!(st, CommandStatus::ESME_ROK);
    assert!(!id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_hexdigit()), "hex id {id}");
    let recorded = vendor.take_recorded();
    let vendor_id = recorded.last().expect("the vendor got the submit").message_id.clone();
    assert_ne!(vendor_id.to_lowercase(), id, "the vendor's id is not ours");
    let p = c.recv_deliver();
    let (tlv, r) = receipt_of(&p);
    assert_eq!(tlv, id, "receipted_message_id is our id");
    assert_eq!(r.id.as_str(), id, "the text's id is our id");
    assert_eq!(r.stat, MessageState::Delivered);
    // Every Appendix B field, with the values the vendor gave (the simulator: one part
    // submitted and delivered, err 000, the first 20 characters of the text, both dates today).
    assert_eq!((r.sub, r.dlvrd), (Some(1), Some(1)));
    assert_eq!(r.err, Some(smppgw_codec::receipt::ReceiptErr::Code(0)));
    assert_eq!(r.text.as_deref(), Some(&b"hello receipt"[..]));
    let (Some(sd), Some(dd)) = (r.submit_date, r.done_date) else { panic!("both dates: {r:?}") };
    let as_key = |d: smppgw_codec::receipt::ReceiptDate| (d.year, d.month, d.day, d.hour, d.minute);
    assert!(as_key(sd) <= as_key(dd), "submitted {sd:?} before done {dd:?}");
    assert!(sd.year >= 2025, "{sd:?}");
    let tlvs = match &p.body {
        Body::DeliverSm(s) => {
            assert_eq!(&s.source.addr[..], b"15551230001", "receipt comes from the recipient");
            assert_eq!(&s.dest.addr[..], b"15550001", "to the originator");
            &s.tlvs
        }
        Body::DataSm(d) => &d.tlvs,
        other => panic!("a receipt PDU: {other:?}"),
    };
    assert_eq!(tlvs.message_state(), Some(MessageState::Delivered.as_u8()), "message_state TLV");
    c.answer(&p, CommandStatus::ESME_ROK);
    assert_eq!(c.unbind(), CommandStatus::ESME_ROK);
    // What operators see: the receipt counted by state, its latency and the vendor's observed.
    let m = &gw.metrics;
    let delivered =
        m.receipts_by_state.0[usize::from(MessageState::Delivered.as_u8())].load(Ordering::Relaxed);
    assert_eq!(delivered, 1);
    assert_eq!(m.receipt_latency.read().2, 1);
    assert_eq!(m.vendor_latency.read().2, 1);
    let snap = gw.control().current();
    let v1 = snap.vendors.iter().flatten().find(|v| v.cfg.name == "v1").unwrap();
    assert_eq!(v1.counters.latency.read().2, 1, "observed at the vendor that took it");
    let scrape = smppgw_control::metrics::render(m, &snap);
    smppgw_control::metrics::check_exposition(&scrape).unwrap();
    assert!(scrape.contains("smppgw_vendor_latency_seconds_count{vendor=\"v1\"} 1"), "{scrape}");
    assert_eq!(m.submit_results.get(0), 1, "one ESME_ROK");
    gw.shutdown();
    gw.join();
}

#[test]
fn hex_vendor_ids_receipt_round_trip() {
    run_receipt_round_trip(|_| {});
}

#[test]
fn decimal_vendor_ids() {
    run_receipt_round_trip(|s| s.id_format = IdFormat::Decimal);
}

#[test]
fn uuid_vendor_ids() {
    run_receipt_round_trip(|s| s.id_format = IdFormat::Uuid);
}

#[test]
fn vendor_ids_quoted_in_upper_case() {
    // The submit_sm_resp gives lower-case hex, the receipt quotes it in upper case (the
    // vendor's receipt system is another one): the message is found.
    run_receipt_round_trip(|s| s.receipts.id_quote = smppgw_loadgen::msgid::IdQuote::Upper);
}

#[test]
fn vendor_ids_quoted_with_leading_zeros() {
    run_receipt_round_trip(|s| s.receipts.id_quote = smppgw_loadgen::msgid::IdQuote::Padded);
}

#[test]
fn hex_vendor_ids_quoted_in_decimal() {
    run_receipt_round_trip(|s| s.receipts.id_quote = smppgw_loadgen::msgid::IdQuote::Decimal);
}

/// Hex ids made only of digits (the simulator's ids are 0000SSSS then a counter: a salt whose
/// four hex digits are digits, and counts 1 to 9 and 0x10 to 0x19), quoted in decimal in the
/// receipts, through a gateway of two cores: the two spellings of such an id were sharded to
/// different cores and about half of these receipts were lost.
fn digit_only_hex_ids_quoted_in_decimal(before_resp: bool) {
    let seed = (0u64..)
        .find(|&s| {
            format!("{:04x}", smppgw_loadgen::sim::core::salt_of_seed(s) & 0xFFFF)
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .unwrap();
    let vendor = sim(|s| {
        s.cores = 1;
        s.seed = Some(seed);
        s.receipts.id_quote = smppgw_loadgen::msgid::IdQuote::Decimal;
        s.receipts.before_resp = before_resp;
        s.receipts.tlvs = false; // receipted_message_id would give the hex spelling
    });
    let mut cfg = config(&[("v1", vendor.local_addr())]);
    // The receipts are read once every submit is answered: on a loaded machine the first may
    // wait longer than a short response timeout, and would be sent again.
    cfg.server.response_timeout_ms = 30_000;
    let gw = smppgw_engine::start(cfg).unwrap();
    assert_eq!(gw.snapshot.cores, 2, "the spellings must be able to land on two cores");
    // Submits on a transmitter, receipts on a receiver (the client drops what it does not wait
    // for, and a receipt dropped would come back only after the response timeout).
    let mut tx = Client::connect(gw.local_addr);
    assert_eq!(tx.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    let mut rx = Client::connect(gw.local_addr);
    assert_eq!(rx.bind("rx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(5), || vendor.stats().binds_current >= 2), "vendor binds up");
    let mut ids = Vec::new();
    for i in 0..25 {
        let (st, id) = tx.submit_dlr(&format!("1555124{i:04}"), "digits");
        assert_eq!(st, CommandStatus::ESME_ROK);
        ids.push(id);
    }
    let recorded = vendor.take_recorded();
    let digit_only = recorded.iter().filter(|r| r.message_id.bytes().all(|b| b.is_ascii_digit())).count();
    assert!(digit_only >= 18, "the vendor's ids are mostly digits: {digit_only} of {}", recorded.len());
    let mut got = Vec::new();
    while got.len() < ids.len() {
        let p = rx.recv_deliver();
        got.push(receipt_of(&p).0);
        rx.answer(&p, CommandStatus::ESME_ROK);
    }
    got.sort();
    ids.sort();
    assert_eq!(got, ids, "one receipt per message, with our id");
    assert_eq!(gw.metrics.receipts_unmatched.load(Ordering::Relaxed), 0);
    assert_eq!((tx.unbind(), rx.unbind()), (CommandStatus::ESME_ROK, CommandStatus::ESME_ROK));
    gw.shutdown();
    gw.join();
}

#[test]
fn hex_vendor_ids_made_of_digits_quoted_in_decimal_on_two_cores() {
    digit_only_hex_ids_quoted_in_decimal(false);
}

#[test]
fn hex_vendor_ids_made_of_digits_quoted_in_decimal_before_the_resp() {
    digit_only_hex_ids_quoted_in_decimal(true);
}

#[test]
fn data_sm_receipts_from_the_vendor() {
    // The vendor sends its receipts as data_sm (TLVs, the text in message_payload); the customer
    // gets its usual deliver_sm, rewritten to our id.
    run_receipt_round_trip(|s| s.receipts.data_sm = true);
}

#[test]
fn receipts_without_tlvs_and_upper_case_keys() {
    run_receipt_round_trip(|s| {
        s.receipts.tlvs = false;
        s.receipts.upper_case_keys = true;
        s.receipts.date_digits = 12;
    });
}

#[test]
fn receipt_before_submit_resp() {
    run_receipt_round_trip(|s| s.receipts.before_resp = true);
}

#[test]
fn receipts_wait_for_a_receiving_bind_and_failed_deliveries_are_retried_once_each() {
    // Goal: a transmitter-only customer's receipts are held, delivered in order when it binds a
    // receiver; a refused deliver_sm is retried, and nothing is delivered twice once accepted.
    let vendor = sim(|_| {});
    let gw = smppgw_engine::start(config(&[("v1", vendor.local_addr())])).unwrap();
    let mut tx = Client::connect(gw.local_addr);
    assert_eq!(tx.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(5), || vendor.stats().binds_current >= 2));
    let mut ids = Vec::new();
    for i in 0..5 {
        let (st, id) = tx.submit_dlr(&format!("1555123{i:04}"), "held");
        assert_eq!(st, CommandStatus::ESME_ROK);
        ids.push(id);
    }
    assert!(wait_for(Duration::from_secs(5), || vendor.stats().receipts_sent >= 5));
    std::thread::sleep(Duration::from_millis(200));
    let mut rx = Client::connect(gw.local_addr);
    assert_eq!(rx.bind("rx", "c1", "pw"), CommandStatus::ESME_ROK);
    let first = rx.recv_deliver();
    let (first_id, _) = receipt_of(&first);
    rx.answer(&first, CommandStatus::ESME_RX_T_APPN);
    let mut got = Vec::new();
    while got.len() < 5 {
        let p = rx.recv_deliver();
        let (id, _) = receipt_of(&p);
        rx.answer(&p, CommandStatus::ESME_ROK);
        got.push(id);
    }
    assert!(got.contains(&first_id), "the refused receipt came again");
    let mut sorted = got.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 5, "each receipt accepted exactly once: {got:?}");
    let mut want = ids.clone();
    want.sort();
    assert_eq!(sorted, want);
    rx.stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut extra = Vec::new();
    let mut tmp = [0u8; 1024];
    use std::io::Read;
    if let Ok(n) = rx.stream.read(&mut tmp) {
        extra.extend_from_slice(&tmp[..n]);
    }
    assert!(extra.is_empty(), "no duplicate after acceptance");
    gw.shutdown();
    gw.join();
}

#[test]
fn a_customer_refusing_receipts_for_a_while_gets_them_later_not_a_burst_of_retries() {
    // Goal: a customer that refuses receipts for a moment (its database is down, say) is not
    // sent the same receipt again at once until the attempts run out and it is lost: each
    // refusal waits longer (0.5 s, then 1 s, ...) while the other receipts keep coming, and the
    // receipt arrives once the customer takes it.
    let vendor = sim(|_| {});
    let gw = smppgw_engine::start(config(&[("v1", vendor.local_addr())])).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(5), || vendor.stats().binds_current >= 2));
    let (st, refused_id) = c.submit_dlr("15551237001", "refused for a while");
    assert_eq!(st, CommandStatus::ESME_ROK);
    let first = c.recv_deliver();
    assert_eq!(receipt_of(&first).0, refused_id);
    c.answer(&first, CommandStatus::ESME_RX_T_APPN);
    let mut last = std::time::Instant::now();
    // Another message's receipt is not held up behind the refused one.
    let (_, other_id) = c.submit_dlr("15551237002", "flows meanwhile");
    let mut gaps = Vec::new();
    let mut other_seen = false;
    while gaps.len() < 2 {
        let p = c.recv_deliver();
        let (id, _) = receipt_of(&p);
        if id == other_id {
            other_seen = true;
            c.answer(&p, CommandStatus::ESME_ROK);
            continue;
        }
        assert_eq!(id, refused_id);
        gaps.push(last.elapsed());
        last = std::time::Instant::now();
        c.answer(&p, CommandStatus::ESME_RX_T_APPN);
    }
    assert!(other_seen, "the other receipt came while the refused one waited");
    assert!(gaps[0] >= Duration::from_millis(450), "first retry after about 0.5 s: {gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(950), "then after about 1 s: {gaps:?}");
    let p = c.recv_deliver();
    assert_eq!(receipt_of(&p).0, refused_id, "still not given up");
    c.answer(&p, CommandStatus::ESME_ROK);
    c.stream.set_read_timeout(Some(Duration::from_millis(2_500))).unwrap();
    assert!(c.try_recv().is_none_or(|p| !matches!(p.body, Body::DeliverSm(_))), "not sent again once taken");
    gw.shutdown();
    gw.join();
}

#[test]
fn query_sm_answers_from_the_store_for_its_owner_only() {
    // Goal: query_sm gives the state of the customer's own message; another customer's query fails.
    let vendor = sim(|_| {});
    let gw = smppgw_engine::start(config(&[("v1", vendor.local_addr())])).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(5), || vendor.stats().binds_current >= 2));
    let (_, id) = c.submit_dlr("15551230009", "query me");
    let p = c.recv_deliver();
    c.answer(&p, CommandStatus::ESME_ROK);
    let q = |c: &mut Client, id: &str| {
        let seq = c.next_seq();
        c.send(&Pdu::new(
            seq,
            Body::QuerySm(smppgw_codec::QuerySm {
                message_id: id.to_owned().into(),
                source: smppgw_codec::Address::new(1, 1, "15550001"),
            }),
        ));
        c.recv_resp(seq)
    };
    let r = q(&mut c, &id);
    assert_eq!(r.command_status, CommandStatus::ESME_ROK);
    let Body::QuerySmResp(qr) = r.body else { panic!("query_sm_resp") };
    assert_eq!(&qr.message_id[..], id.as_bytes());
    assert_eq!(qr.message_state, MessageState::Delivered.as_u8());
    assert!(!qr.final_date.is_empty());
    let mut other = Client::connect(gw.local_addr);
    assert_eq!(other.bind("trx", "c2", "pw"), CommandStatus::ESME_ROK);
    assert_eq!(q(&mut other, &id).command_status, CommandStatus::ESME_RQUERYFAIL);
    assert_eq!(q(&mut c, "ffffffff").command_status, CommandStatus::ESME_RQUERYFAIL);
    assert_eq!(qr.error_code, 0, "delivered: no error");
    gw.shutdown();
    gw.join();

    // A failed message: its state and the vendor's network error code (the simulator's
    // UNDELIV carries GSM error 1).
    let failing = sim(|s| s.receipts.mix = smppgw_loadgen::sim::StateMix::parse("UNDELIV=100").unwrap());
    let gw = smppgw_engine::start(config(&[("v1", failing.local_addr())])).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(5), || failing.stats().binds_current >= 2));
    let (_, id) = c.submit_dlr("15551230010", "will fail");
    let p = c.recv_deliver();
    c.answer(&p, CommandStatus::ESME_ROK);
    let r = q(&mut c, &id);
    let Body::QuerySmResp(qr) = r.body else { panic!("query_sm_resp: {r:?}") };
    assert_eq!((qr.message_state, qr.error_code), (MessageState::Undeliverable.as_u8(), 1));
    assert!(!qr.final_date.is_empty());
    gw.shutdown();
    gw.join();
}

#[test]
fn an_unanswered_receipt_is_sent_again_after_the_response_timeout_and_only_until_answered() {
    // Goal: a deliver_sm the customer never answers is retried after server.response_timeout_ms;
    // once answered it is not sent again.
    let vendor = sim(|_| {});
    let mut cfg = config(&[("v1", vendor.local_addr())]);
    // Long enough for the answer to the second copy to arrive in time on a loaded machine.
    cfg.server.response_timeout_ms = 1_500;
    let gw = smppgw_engine::start(cfg).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(5), || vendor.stats().binds_current >= 2));
    let (_, id) = c.submit_dlr("15551239999", "time me out");
    let first = c.recv_deliver();
    assert_eq!(receipt_of(&first).0, id);
    // Not answered: the same receipt comes again after the timeout.
    let again = c.recv_deliver();
    assert_eq!(receipt_of(&again).0, id);
    assert_ne!(again.sequence_number, first.sequence_number);
    c.answer(&again, CommandStatus::ESME_ROK);
    // A third copy would come a timeout and a retry delay after the second.
    c.stream.set_read_timeout(Some(Duration::from_millis(3_000))).unwrap();
    let mut extra = 0;
    while let Some(p) = c.try_recv() {
        if matches!(p.body, Body::DeliverSm(_)) {
            extra += 1;
        }
    }
    assert_eq!(extra, 0, "accepted once, never again");
    gw.shutdown();
    gw.join();
}

#[test]
fn the_receipt_store_is_bounded_per_core_and_forgets_its_oldest_first() {
    // Goal: with `receipt_store_max` records per core, the oldest messages are forgotten first
    // (query_sm no longer finds them) while the newest are still known.
    let vendor = sim(|s| s.receipts.enabled = false);
    let mut cfg = config(&[("v1", vendor.local_addr())]);
    cfg.server.cores = 1;
    cfg.server.receipt_store_max = 1_000;
    let gw = smppgw_engine::start(cfg).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(5), || vendor.stats().binds_current >= 2));
    let ids: Vec<String> = (0..1_100)
        .map(|i| {
            let (st, id) = c.submit_dlr(&format!("1555124{i:04}"), "kept or not");
            assert_eq!(st, CommandStatus::ESME_ROK);
            id
        })
        .collect();
    let q = |c: &mut Client, id: &str| {
        let seq = c.next_seq();
        let q = smppgw_codec::QuerySm {
            message_id: id.to_owned().into(),
            source: smppgw_codec::Address::new(1, 1, "15550001"),
        };
        c.send(&Pdu::new(seq, Body::QuerySm(q)));
        c.recv_resp(seq).command_status
    };
    let last = ids.last().unwrap().clone();
    assert!(
        wait_for(Duration::from_secs(5), || q(&mut c, &last) == CommandStatus::ESME_ROK),
        "the newest is known"
    );
    assert_eq!(q(&mut c, &ids[0]), CommandStatus::ESME_RQUERYFAIL, "the oldest was forgotten");
    assert_eq!(q(&mut c, &ids[99]), CommandStatus::ESME_RQUERYFAIL);
    assert_eq!(q(&mut c, &ids[100]), CommandStatus::ESME_ROK, "exactly the 1,000 newest are kept");
    let stored = || gw.metrics.store_records_by_core.0.iter().map(|n| n.load(Ordering::Relaxed)).sum::<u64>();
    assert!(wait_for(Duration::from_secs(5), || stored() == 1_000), "{} records: the bound, full", stored());
    gw.shutdown();
    gw.join();
}
