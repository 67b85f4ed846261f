//! cancel_sm and replace_sm are forwarded to the vendor holding the message (ids translated),
//! or refused with ESME_RCANCELFAIL / ESME_RREPLACEFAIL; the outcome is recorded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Client, config, sim, wait_for};
use smppgw_codec::receipt::MessageState;
use smppgw_codec::{Address, Body, CancelSm, CommandStatus, Pdu, QuerySm, ReplaceSm};

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
        (smppgw_codec::CommandId::REPLACE_SM_RESP, CommandStatus::ESME_ROK)
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
        (smppgw_codec::CommandId::CANCEL_SM_RESP, CommandStatus::ESME_ROK)
    );
    assert!(
        wait_for(Duration::from_secs(5), || {
            matches!(query(&mut c, &id).body, Body::QuerySmResp(q) if q.message_state == MessageState::Deleted.as_u8())
        }),
        "the cancel is recorded"
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
    gw.shutdown();
    gw.join();
}
