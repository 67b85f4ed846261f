//! Every error status a customer can get from the gateway's SMSC side, over real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Client, config, pw_hash, wait_for};
use smppgw_codec::{Body, CommandId, CommandStatus, Pdu};
use smppgw_engine::config::{BindType, Cidr};

fn start(cfg: smppgw_engine::config::Config) -> smppgw_engine::Gateway {
    smppgw_engine::start(cfg).expect("gateway starts")
}

#[test]
fn bind_statuses_are_the_ones_peers_expect() {
    // Goal: unknown system_id, wrong password, forbidden bind type, too many binds, already bound.
    let mut cfg = config(&[]);
    cfg.customers[1].bind_types = vec![BindType::Transmitter];
    cfg.customers[1].max_binds = 1;
    let gw = start(cfg);
    let a = gw.local_addr;

    assert_eq!(Client::connect(a).bind("trx", "nobody", "pw"), CommandStatus::ESME_RINVSYSID);
    assert_eq!(Client::connect(a).bind("trx", "c1", "wrong"), CommandStatus::ESME_RINVPASWD);
    assert_eq!(
        Client::connect(a).bind("rx", "c2", "pw"),
        CommandStatus::ESME_RBINDFAIL,
        "bind type not allowed"
    );

    let mut first = Client::connect(a);
    assert_eq!(first.bind("tx", "c2", "pw"), CommandStatus::ESME_ROK);
    assert_eq!(Client::connect(a).bind("tx", "c2", "pw"), CommandStatus::ESME_RBINDFAIL, "max_binds = 1");
    assert_eq!(first.bind("tx", "c2", "pw"), CommandStatus::ESME_RALYBND);
    assert_eq!(first.unbind(), CommandStatus::ESME_ROK);
    // The slot is free again once the first session is gone.
    assert!(wait_for(Duration::from_secs(5), || Client::connect(a).bind("tx", "c2", "pw").is_ok()));
    gw.shutdown();
    gw.join();
}

#[test]
fn source_ip_not_allowed_is_refused() {
    // Goal: a customer limited to another network cannot bind from loopback.
    let mut cfg = config(&[]);
    cfg.customers[0].allowed_ips = vec!["10.0.0.0/8".parse::<Cidr>().unwrap()];
    let gw = start(cfg);
    assert_eq!(Client::connect(gw.local_addr).bind("trx", "c1", "pw"), CommandStatus::ESME_RBINDFAIL);
    gw.shutdown();
    gw.join();
}

#[test]
fn requests_before_bind_and_on_a_receiver_get_invbndsts() {
    // Goal: a submit before bind, and a submit on a receiver bind, get ESME_RINVBNDSTS.
    let gw = start(config(&[]));
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.submit("15551234567", "hi").0, CommandStatus::ESME_RINVBNDSTS);
    assert_eq!(c.bind("rx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert_eq!(c.submit("15551234567", "hi").0, CommandStatus::ESME_RINVBNDSTS);
    gw.shutdown();
    gw.join();
}

#[test]
fn no_route_is_invdstadr_and_validation_statuses_come_back() {
    // Goal: a destination no route covers gets ESME_RINVDSTADR; malformed fields get their status.
    let gw = start(config(&[]));
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert_eq!(c.submit("15551234567", "hi").0, CommandStatus::ESME_RINVDSTADR);
    assert_eq!(c.submit("", "hi").0, CommandStatus::ESME_RINVDSTADR);
    let (seq, mut p) = c.submit_pdu("1555", "x");
    if let Body::SubmitSm(s) = &mut p.body {
        s.validity_period = "123".into();
    }
    c.send(&p);
    assert_eq!(c.recv_resp(seq).command_status, CommandStatus::ESME_RINVEXPIRY);
    gw.shutdown();
    gw.join();
}

#[test]
fn malformed_and_unknown_pdus_are_answered_and_oversize_closes_only_that_session() {
    // Goal: garbage gets generic_nack or the field's status; a lying length closes that session
    // and every other session keeps working.
    let gw = start(config(&[]));
    let a = gw.local_addr;
    let mut other = Client::connect(a);
    assert_eq!(other.bind("trx", "c2", "pw"), CommandStatus::ESME_ROK);

    let mut c = Client::connect(a);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    // Unknown command id.
    c.send_raw(&[0, 0, 0, 16, 0, 0, 0x12, 0x34, 0, 0, 0, 0, 0, 0, 0, 77]);
    let r = c.recv_resp(77);
    assert_eq!((r.command_id(), r.command_status), (CommandId::GENERIC_NACK, CommandStatus::ESME_RINVCMDID));
    // submit_sm whose source_addr has no NUL within 21 octets.
    let mut raw = vec![0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 78, 0, 1, 1];
    raw.extend([b'9'; 30]);
    raw.push(0);
    let len = raw.len() as u32;
    raw[..4].copy_from_slice(&len.to_be_bytes());
    c.send_raw(&raw);
    let r = c.recv_resp(78);
    assert_eq!(
        (r.command_id(), r.command_status),
        (CommandId::SUBMIT_SM_RESP, CommandStatus::ESME_RINVSRCADR)
    );
    // enquire_link still answered after the garbage.
    c.send(&Pdu::new(79, Body::EnquireLink));
    assert_eq!(c.recv_resp(79).command_id(), CommandId::ENQUIRE_LINK_RESP);
    // An oversize command_length closes this session.
    c.send_raw(&[0x7F, 0xFF, 0xFF, 0xFF, 0, 0, 0, 4]);
    assert!(c.recv().is_none(), "the session is closed");
    // The other session is untouched.
    other.send(&Pdu::new(5, Body::EnquireLink));
    assert_eq!(other.recv_resp(5).command_id(), CommandId::ENQUIRE_LINK_RESP);
    gw.shutdown();
    gw.join();
}

#[test]
fn hash_is_checked_not_the_plain_password() {
    // Goal: the stored hash verifies the password it was made from and nothing else.
    let h = pw_hash();
    assert!(smppgw_engine::config::verify_password(&h, b"pw"));
    assert!(!smppgw_engine::config::verify_password(&h, b"pw2"));
}
