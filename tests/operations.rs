//! cancel_sm and replace_sm are forwarded to the vendor holding the message (ids translated),
//! or refused with ESME_RCANCELFAIL / ESME_RREPLACEFAIL; the outcome is recorded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Client, config, sim, wait_for};
use smppgw_codec::receipt::MessageState;
use smppgw_codec::{Address, Body, CancelSm, CommandId, CommandStatus, Pdu, QuerySm, ReplaceSm};

fn query(c: &mut Client, id: &str) -> Pdu {
    let seq = c.next_seq();
    let q = QuerySm { message_id: id.to_owned().into(), source: Address::new(1, 1, "15550001") };
    c.send(&Pdu::new(seq, Body::QuerySm(q)));
    c.recv_resp(seq)
}

#[test]
fn cancel_and_replace_reach_the_vendor_and_are_recorded() {
    let v = sim(|s| s.receipts.delay = smppgw_loadgen::sim::Delay::Fixed(Duration::from_secs(30)));
    let gw = smppgw_engine::start(config(&[("v", v.local_addr())])).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(5), || v.stats().binds_current >= 2));
    let (_, id) = c.submit_dlr("15551110000", "cancel me");
    let vendor_id = v.take_recorded().last().expect("the vendor got the submit").message_id.clone();
    assert_ne!(vendor_id, id, "the vendor's id is not ours");
    // The store is written asynchronously after the answer: wait until the message is known.
    assert!(wait_for(Duration::from_secs(5), || query(&mut c, &id).command_status.is_ok()));

    let seq = c.next_seq();
    let r = ReplaceSm {
        message_id: id.clone().into(),
        source: Address::new(1, 1, "15550001"),
        short_message: "new text".into(),
        ..Default::default()
    };
    c.send(&Pdu::new(seq, Body::ReplaceSm(r)));
    let resp = c.recv_resp(seq);
    assert_eq!(
        (resp.command_id(), resp.command_status),
        (CommandId::REPLACE_SM_RESP, CommandStatus::ESME_ROK)
    );

    let seq = c.next_seq();
    let x = CancelSm {
        message_id: id.clone().into(),
        source: Address::new(1, 1, "15550001"),
        dest: Address::new(1, 1, "15551110000"),
        ..Default::default()
    };
    c.send(&Pdu::new(seq, Body::CancelSm(x.clone())));
    let resp = c.recv_resp(seq);
    assert_eq!(
        (resp.command_id(), resp.command_status),
        (CommandId::CANCEL_SM_RESP, CommandStatus::ESME_ROK)
    );
    assert!(
        wait_for(Duration::from_secs(5), || {
            matches!(query(&mut c, &id).body, Body::QuerySmResp(q) if q.message_state == MessageState::Deleted.as_u8())
        }),
        "the cancel is recorded"
    );

    // Both reached the vendor, in order, under the vendor's id, the replacement with its text.
    let ops = v.take_recorded_ops();
    let seen: Vec<(CommandId, &str, &[u8])> =
        ops.iter().map(|o| (o.command_id, o.message_id.as_str(), &o.short_message[..])).collect();
    assert_eq!(
        seen,
        vec![
            (CommandId::REPLACE_SM, vendor_id.as_str(), &b"new text"[..]),
            (CommandId::CANCEL_SM, vendor_id.as_str(), &b""[..])
        ]
    );

    // A second cancel of a final message, and a cancel of an unknown id, fail.
    let seq = c.next_seq();
    c.send(&Pdu::new(seq, Body::CancelSm(x)));
    assert_eq!(c.recv_resp(seq).command_status, CommandStatus::ESME_RCANCELFAIL);
    let seq = c.next_seq();
    c.send(&Pdu::new(seq, Body::CancelSm(CancelSm { message_id: "abcdef".into(), ..Default::default() })));
    assert_eq!(c.recv_resp(seq).command_status, CommandStatus::ESME_RCANCELFAIL);
    let seq = c.next_seq();
    c.send(&Pdu::new(seq, Body::ReplaceSm(ReplaceSm { message_id: "abcdef".into(), ..Default::default() })));
    assert_eq!(c.recv_resp(seq).command_status, CommandStatus::ESME_RREPLACEFAIL);
    assert!(v.take_recorded_ops().is_empty(), "nothing the gateway refused itself went to the vendor");
    gw.shutdown();
    gw.join();
}

#[test]
fn a_vendor_refusing_cancel_or_replace_is_cancelfail_or_replacefail_and_changes_nothing() {
    // Goal: when the vendor refuses (its message is past changing), the customer gets
    // ESME_RCANCELFAIL / ESME_RREPLACEFAIL and the message is not recorded as deleted.
    let v = sim(|s| {
        s.receipts.delay = smppgw_loadgen::sim::Delay::Fixed(Duration::from_secs(30));
        s.faults.op_status = CommandStatus::ESME_RSYSERR;
    });
    let gw = smppgw_engine::start(config(&[("v", v.local_addr())])).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(5), || v.stats().binds_current >= 2));
    let (_, id) = c.submit_dlr("15551110001", "keep me");
    assert!(wait_for(Duration::from_secs(5), || query(&mut c, &id).command_status.is_ok()));

    let seq = c.next_seq();
    let r = ReplaceSm { message_id: id.clone().into(), short_message: "other".into(), ..Default::default() };
    c.send(&Pdu::new(seq, Body::ReplaceSm(r)));
    assert_eq!(c.recv_resp(seq).command_status, CommandStatus::ESME_RREPLACEFAIL);
    let seq = c.next_seq();
    c.send(&Pdu::new(seq, Body::CancelSm(CancelSm { message_id: id.clone().into(), ..Default::default() })));
    assert_eq!(c.recv_resp(seq).command_status, CommandStatus::ESME_RCANCELFAIL);
    assert_eq!(v.take_recorded_ops().len(), 2, "both were asked of the vendor");
    match query(&mut c, &id).body {
        Body::QuerySmResp(q) => assert_eq!(q.message_state, MessageState::Enroute.as_u8(), "still en route"),
        other => panic!("query_sm_resp: {other:?}"),
    }
    gw.shutdown();
    gw.join();
}

#[test]
fn a_customer_with_decimal_ids_gets_them_everywhere() {
    // Goal: a customer set to decimal ids gets a decimal id in submit_sm_resp, the same id in its
    // receipt (text and TLV), and can query and cancel the message by it.
    let v = sim(|s| s.receipts.delay = smppgw_loadgen::sim::Delay::Fixed(Duration::from_millis(3000)));
    let mut cfg = config(&[("v", v.local_addr())]);
    cfg.customers[0].id_format = smppgw_engine::config::IdFormat::Decimal;
    let gw = smppgw_engine::start(cfg).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(5), || v.stats().binds_current >= 2));

    let (st, id) = c.submit_dlr("15551110002", "decimal please");
    assert_eq!(st, CommandStatus::ESME_ROK);
    assert!(!id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit()), "decimal id {id}");
    let p = c.recv_deliver();
    let (tlv, r) = common::receipt_of(&p);
    assert_eq!((tlv.as_str(), r.id.as_str()), (id.as_str(), id.as_str()), "the receipt quotes the same id");
    c.answer(&p, CommandStatus::ESME_ROK);
    match query(&mut c, &id).body {
        Body::QuerySmResp(q) => {
            assert_eq!(&q.message_id[..], id.as_bytes());
            assert_eq!(q.message_state, MessageState::Delivered.as_u8());
        }
        other => panic!("query_sm_resp: {other:?}"),
    }

    // A second message, cancelled by its decimal id before its receipt.
    let (_, id2) = c.submit_dlr("15551110003", "cancel me");
    let vendor_id = v.take_recorded().last().expect("submitted").message_id.clone();
    assert!(wait_for(Duration::from_secs(5), || query(&mut c, &id2).command_status.is_ok()));
    let seq = c.next_seq();
    c.send(&Pdu::new(seq, Body::CancelSm(CancelSm { message_id: id2.clone().into(), ..Default::default() })));
    assert_eq!(c.recv_resp(seq).command_status, CommandStatus::ESME_ROK);
    let ops = v.take_recorded_ops();
    assert_eq!(ops.len(), 1);
    assert_eq!((ops[0].command_id, ops[0].message_id.as_str()), (CommandId::CANCEL_SM, vendor_id.as_str()));
    gw.shutdown();
    gw.join();
}

#[test]
fn submit_multi_shares_the_window_and_a_reused_sequence_number_is_refused() {
    // Goal: a submit_multi's destinations count against the customer's window (all or
    // nothing; more than the whole window could ever hold is ESME_RINVNUMDESTS, not a
    // throttling the customer would retry for ever); a query_sm reusing the sequence number of one
    // still pending is refused with ESME_RSYSERR and the pending one is answered as usual.
    let v = sim(|s| s.receipts.delay = smppgw_loadgen::sim::Delay::Fixed(Duration::from_secs(30)));
    let mut cfg = config(&[("v", v.local_addr())]);
    cfg.customers[0].window = 2;
    let gw = smppgw_engine::start(cfg).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(5), || v.stats().binds_current >= 2));
    let multi = |n: usize| {
        Body::SubmitMulti(smppgw_codec::SubmitMulti {
            source: Address::new(1, 1, "15550001"),
            dests: (0..n)
                .map(|i| smppgw_codec::DestAddress::Sme(Address::new(1, 1, format!("155588800{i:02}"))))
                .collect(),
            short_message: "to many".into(),
            ..Default::default()
        })
    };
    let seq = c.next_seq();
    c.send(&Pdu::new(seq, multi(3)));
    let r = c.recv_resp(seq);
    assert_eq!(
        (r.command_id(), r.command_status),
        (CommandId::SUBMIT_MULTI_RESP, CommandStatus::ESME_RINVNUMDESTS)
    );
    assert_eq!(v.stats().submits, 0, "none of the three was sent");
    let seq = c.next_seq();
    c.send(&Pdu::new(seq, multi(2)));
    assert_eq!(c.recv_resp(seq).command_status, CommandStatus::ESME_ROK);
    assert_eq!(v.stats().submits, 2);

    let (_, id) = c.submit_dlr("15551110004", "query me twice");
    assert!(wait_for(Duration::from_secs(5), || query(&mut c, &id).command_status.is_ok()));
    let q = Pdu::new(
        500,
        Body::QuerySm(QuerySm { message_id: id.clone().into(), source: Address::new(1, 1, "15550001") }),
    );
    let mut both = q.to_bytes().to_vec();
    both.extend_from_slice(&q.to_bytes());
    c.send_raw(&both);
    let mut statuses = vec![c.recv_resp(500).command_status, c.recv_resp(500).command_status];
    statuses.sort_by_key(|s| s.0);
    assert_eq!(statuses, vec![CommandStatus::ESME_ROK, CommandStatus::ESME_RSYSERR]);
    gw.shutdown();
    gw.join();
}

#[test]
fn a_cancel_or_replace_of_a_submit_multi_id_is_refused_and_reaches_no_vendor() {
    // Goal: a submit_multi's id names one message per destination; a cancel_sm or replace_sm of
    // it is refused (ESME_RCANCELFAIL / ESME_RREPLACEFAIL) and nothing reaches the vendor. It
    // used to change one destination's message (the one the store found) and answer ESME_ROK,
    // so the customer believed every destination cancelled while the others were delivered.
    let v = sim(|s| s.receipts.delay = smppgw_loadgen::sim::Delay::Fixed(Duration::from_secs(30)));
    let gw = smppgw_engine::start(config(&[("v", v.local_addr())])).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(5), || v.stats().binds_current >= 2));
    let seq = c.next_seq();
    let multi = smppgw_codec::SubmitMulti {
        source: Address::new(1, 1, "15550001"),
        dests: (0..3)
            .map(|i| smppgw_codec::DestAddress::Sme(Address::new(1, 1, format!("155588810{i:02}"))))
            .collect(),
        short_message: "scheduled for three".into(),
        ..Default::default()
    };
    c.send(&Pdu::new(seq, Body::SubmitMulti(multi)));
    let r = c.recv_resp(seq);
    assert_eq!(r.command_status, CommandStatus::ESME_ROK);
    let Body::SubmitMultiResp(m) = r.body else { panic!("submit_multi_resp: {r:?}") };
    let id = String::from_utf8(m.message_id.to_vec()).unwrap();
    assert!(wait_for(Duration::from_secs(5), || query(&mut c, &id).command_status.is_ok()));

    let seq = c.next_seq();
    c.send(&Pdu::new(seq, Body::CancelSm(CancelSm { message_id: id.clone().into(), ..Default::default() })));
    assert_eq!(c.recv_resp(seq).command_status, CommandStatus::ESME_RCANCELFAIL);
    let seq = c.next_seq();
    let r = ReplaceSm { message_id: id.clone().into(), short_message: "other".into(), ..Default::default() };
    c.send(&Pdu::new(seq, Body::ReplaceSm(r)));
    assert_eq!(c.recv_resp(seq).command_status, CommandStatus::ESME_RREPLACEFAIL);
    assert!(v.take_recorded_ops().is_empty(), "no destination was changed at the vendor");
    match query(&mut c, &id).body {
        Body::QuerySmResp(q) => assert_eq!(q.message_state, MessageState::Enroute.as_u8(), "still en route"),
        other => panic!("query_sm_resp: {other:?}"),
    }
    // A submit_multi that sent one message (clients that always use submit_multi) names that
    // message alone: it can be cancelled.
    let seq = c.next_seq();
    let one = smppgw_codec::SubmitMulti {
        source: Address::new(1, 1, "15550001"),
        dests: vec![smppgw_codec::DestAddress::Sme(Address::new(1, 1, "15558881100"))],
        short_message: "scheduled for one".into(),
        ..Default::default()
    };
    c.send(&Pdu::new(seq, Body::SubmitMulti(one)));
    let r = c.recv_resp(seq);
    let Body::SubmitMultiResp(m) = r.body else { panic!("submit_multi_resp: {r:?}") };
    let id = String::from_utf8(m.message_id.to_vec()).unwrap();
    assert!(wait_for(Duration::from_secs(5), || query(&mut c, &id).command_status.is_ok()));
    let seq = c.next_seq();
    c.send(&Pdu::new(seq, Body::CancelSm(CancelSm { message_id: id.clone().into(), ..Default::default() })));
    assert_eq!(c.recv_resp(seq).command_status, CommandStatus::ESME_ROK, "one destination: cancelled");
    assert_eq!(v.take_recorded_ops().len(), 1, "the cancel reached the vendor");
    gw.shutdown();
    gw.join();
}

#[test]
fn query_sm_gives_the_error_code_of_a_receipt_without_tlvs() {
    // Goal: a vendor whose receipts carry the error only in their text (`err:001`, no
    // network_error_code TLV) still has it reported by query_sm's error_code.
    let v = sim(|s| {
        s.receipts.tlvs = false;
        s.receipts.mix = smppgw_loadgen::sim::StateMix::parse("UNDELIV=1").unwrap();
    });
    let gw = smppgw_engine::start(config(&[("v", v.local_addr())])).unwrap();
    common::wait_vendors_up(&gw);
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    let (st, id) = c.submit_dlr("15557100000", "undeliverable");
    assert_eq!(st, CommandStatus::ESME_ROK);
    let p = c.recv_deliver();
    c.answer(&p, CommandStatus::ESME_ROK);
    let r = query(&mut c, &id);
    let Body::QuerySmResp(q) = &r.body else { panic!("{r:?}") };
    assert_eq!(q.message_state, MessageState::Undeliverable.as_u8());
    assert_eq!(q.error_code, 1, "the err: of the receipt text");
    gw.shutdown();
    gw.join();
}
