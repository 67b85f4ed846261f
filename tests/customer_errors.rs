//! Every error status a customer can get from the gateway's SMSC side, over real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Client, config, pw_hash, sim, wait_for};
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
fn an_address_guessing_passwords_is_refused_without_more_checks_while_verified_customers_still_bind() {
    // Goal: after smppgw's budget of failed password checks per address (ten a minute on each
    // core), more binds with unverified credentials from that address get ESME_RBINDFAIL at
    // once instead of a slow password hash each; a customer whose credentials a core already
    // verified still binds there.
    let gw = start(config(&[]));
    let a = gw.local_addr;
    // Verified on every core (connections are spread over them).
    let mut verified = Vec::new();
    for _ in 0..4 {
        let mut c = Client::connect(a);
        assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
        verified.push(c);
    }
    drop(verified);
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let mut c = Client::connect(a);
        for _ in 0..3 {
            statuses.push(c.bind("trx", "c1", "guess"));
        }
    }
    let refused_at = statuses.iter().position(|s| *s == CommandStatus::ESME_RBINDFAIL);
    assert!(
        refused_at
            .is_some_and(|i| i >= 10 && statuses[..i].iter().all(|s| *s == CommandStatus::ESME_RINVPASWD)),
        "ten checks at least, then refused: {statuses:?}"
    );
    assert!(wait_for(Duration::from_secs(5), || Client::connect(a).bind("trx", "c1", "pw").is_ok()));
    gw.shutdown();
    gw.join();
}

/// A connection to `gw` from `source` (a loopback address of its own).
fn connect_from(source: [u8; 4], gw: std::net::SocketAddr) -> Option<std::net::TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    socket.bind(&std::net::SocketAddr::from((source, 0)).into()).ok()?;
    socket.connect(&gw.into()).ok()?;
    Some(socket.into())
}

/// Sends a bind of `system_id` with `password` on `c`; its sequence number.
fn send_bind(c: &mut Client, system_id: &str, password: &str) -> u32 {
    let seq = c.next_seq();
    let bind = smppgw_codec::Bind {
        system_id: system_id.to_owned().into(),
        password: password.to_owned().into(),
        interface_version: 0x34,
        ..Default::default()
    };
    let _ = std::io::Write::write_all(&mut c.stream, &Pdu::new(seq, Body::BindTransceiver(bind)).to_bytes());
    seq
}

/// The answer to the bind `seq` on `c`, or None when none came (closed, or nothing within its
/// read timeout).
fn bind_answer(c: &mut Client, seq: u32) -> Option<CommandStatus> {
    loop {
        let p = c.try_recv()?;
        if p.sequence_number == seq && p.command_id().is_response() {
            return Some(p.command_status);
        }
    }
}

#[test]
fn guesses_from_many_addresses_do_not_hold_up_a_customers_first_bind() {
    // Goal: a peer that knows a system_id and sends wrong passwords from many source addresses
    // (each with its own budget of failed checks) cannot make a customer that never bound
    // before wait behind its queue of password hashes: the customer's bind is answered
    // ESME_ROK within seconds. Before, every check on a core queued on one hashing thread
    // without bound, and the customer's bind waited behind all of them.
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    const ADDRESSES: u8 = 32;
    const CONNECTIONS_PER_ADDRESS: usize = 24;
    let mut cfg = config(&[]);
    cfg.server.max_binds = 2000;
    let gw = start(cfg);
    let a = gw.local_addr;
    let stop = Arc::new(AtomicBool::new(false));
    let wrong = Arc::new(AtomicUsize::new(0));
    let flood: Vec<_> = (1..=ADDRESSES)
        .map(|host| {
            let (stop, wrong) = (stop.clone(), wrong.clone());
            std::thread::spawn(move || {
                let mut guess = 0u32;
                let mut conns: Vec<Option<Client>> = (0..CONNECTIONS_PER_ADDRESS).map(|_| None).collect();
                while !stop.load(Ordering::Relaxed) {
                    for slot in conns.iter_mut() {
                        if slot.is_none() {
                            *slot = connect_from([127, 0, 1, host], a).map(|s| {
                                let c = Client::from_stream(s);
                                c.stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                                c
                            });
                        }
                    }
                    // One guess on each connection at once, then their answers.
                    // Every guess a different password (one password is checked once at a time),
                    // of at most 8 octets (the longest a bind carries).
                    let sent: Vec<Option<u32>> = conns
                        .iter_mut()
                        .map(|slot| {
                            guess += 1;
                            slot.as_mut()
                                .map(|c| send_bind(c, "c1", &format!("{host:03}{:05}", guess % 100_000)))
                        })
                        .collect();
                    let mut refused = false;
                    for (slot, seq) in conns.iter_mut().zip(sent) {
                        let (Some(c), Some(seq)) = (slot.as_mut(), seq) else { continue };
                        let st = bind_answer(c, seq);
                        match st {
                            Some(CommandStatus::ESME_RINVPASWD) => {
                                wrong.fetch_add(1, Ordering::Relaxed);
                            }
                            Some(_) => refused = true,
                            None => *slot = None,
                        }
                    }
                    if refused {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            })
        })
        .collect();
    // Every guessing address has failed about once on each core (hundreds of checks stay
    // queued on each core when nothing bounds them).
    assert!(wait_for(Duration::from_secs(60), || wrong.load(Ordering::Relaxed) >= 2 * usize::from(ADDRESSES)));
    let began = std::time::Instant::now();
    let (mut ok, mut refused, mut unanswered) = (0, 0, 0);
    while ok == 0 && began.elapsed() < Duration::from_secs(10) {
        let mut c = Client::connect(a);
        c.stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let seq = send_bind(&mut c, "c2", "pw");
        match bind_answer(&mut c, seq) {
            Some(CommandStatus::ESME_ROK) => ok += 1,
            Some(CommandStatus::ESME_RBINDFAIL) => {
                refused += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            other => {
                unanswered += 1;
                eprintln!("customer's bind: {other:?}");
            }
        }
    }
    let took = began.elapsed();
    let guesses = wrong.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    gw.shutdown();
    gw.join();
    for t in flood {
        let _ = t.join();
    }
    assert_eq!(
        (ok, unanswered),
        (1, 0),
        "the customer binds within 10 s, each try answered within 5 s ({took:?}, {refused} binds refused at once, {guesses} wrong passwords)"
    );
}

#[test]
fn query_sm_past_the_customers_throughput_is_throttled_without_taking_from_its_submits() {
    // Goal: a customer asking about messages faster than its throughput (each query_sm may ask
    // every executor and Redis) gets ESME_RTHROTTLED for the excess; its submits have a budget
    // of their own, untouched by the queries.
    let v = sim(|_| {});
    let mut cfg = config(&[("v", v.local_addr())]);
    cfg.customers[0].throughput = 10;
    let gw = start(cfg);
    assert!(wait_for(Duration::from_secs(10), || v.stats().binds_current >= 1));
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    let first = 100u32;
    for i in 0..20 {
        let q = smppgw_codec::QuerySm {
            message_id: "1a2b".into(),
            source: smppgw_codec::Address::new(1, 1, "15550001"),
        };
        c.send(&Pdu::new(first + i, Body::QuerySm(q)));
    }
    // Answered in any order: the throttled ones at once, the others after asking every executor.
    let mut statuses = Vec::new();
    while statuses.len() < 20 {
        let p = c.recv().expect("answered");
        if p.command_id() == CommandId::QUERY_SM_RESP {
            statuses.push(p.command_status);
        }
    }
    let throttled = statuses.iter().filter(|s| **s == CommandStatus::ESME_RTHROTTLED).count();
    assert!(throttled >= 5, "the excess is throttled: {statuses:?}");
    assert!(statuses.contains(&CommandStatus::ESME_RQUERYFAIL), "the rest answered: {statuses:?}");
    assert_eq!(
        c.submit("15551230001", "still sends").0,
        CommandStatus::ESME_ROK,
        "its submits' budget is whole"
    );
    gw.shutdown();
    gw.join();
}

#[test]
fn a_submit_refused_for_a_field_the_codec_cannot_read_is_counted_as_rejected() {
    // Goal: submits = accepted + refused + rejected holds for a submit whose field does not
    // even decode (a schedule_delivery_time of the wrong length): it is answered with the
    // field's status and counted, as one refused for an empty destination is.
    use std::sync::atomic::Ordering;
    let gw = start(config(&[]));
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    let (seq, mut p) = c.submit_pdu("15551230001", "x");
    if let Body::SubmitSm(s) = &mut p.body {
        s.schedule_delivery_time = "garbage".into();
    }
    c.send(&p);
    assert_eq!(c.recv_resp(seq).command_status, CommandStatus::ESME_RINVSCHED);
    assert!(wait_for(Duration::from_secs(2), || gw.metrics.rejected.load(Ordering::Relaxed) == 1));
    gw.shutdown();
    gw.join();
}

#[test]
fn a_second_gateway_on_the_listen_address_of_a_running_one_refuses_to_start() {
    // Goal: the cores share their port (SO_REUSEPORT), so a second node started by mistake on
    // the same address used to start too, and the kernel split the customers between the two.
    let first = start(config(&[]));
    let mut cfg = config(&[]);
    cfg.server.listen = first.local_addr;
    match smppgw_engine::start(cfg) {
        Err(e) => assert!(e.to_string().contains("already in use"), "{e}"),
        Ok(second) => {
            second.shutdown();
            second.join();
            panic!("a second gateway started on {}", first.local_addr);
        }
    }
    first.shutdown();
    first.join();
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
fn before_binding_a_connection_may_send_only_short_pdus() {
    // Goal: an unauthenticated connection cannot make the node hold a long frame (up to
    // max_command_length, 70,000 octets by default, for each of many connections): before its
    // bind a PDU over 1,024 octets closes it; once bound, the configured limit applies.
    let vendor = sim(|_| {});
    let gw = start(config(&[("v1", vendor.local_addr())]));
    common::wait_vendors_up(&gw);
    let long_submit = |seq: u32| {
        let mut raw = vec![0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0];
        raw.extend(seq.to_be_bytes());
        raw.extend(b"\0\x01\x0115550001\0\x01\x0115551234\0\0\0\0\0\0\0\0\0\0\0");
        // message_payload of 1,500 octets.
        raw.extend([0x04, 0x24, 0x05, 0xDC]);
        raw.extend([b'x'; 1500]);
        let len = raw.len() as u32;
        raw[..4].copy_from_slice(&len.to_be_bytes());
        raw
    };
    let mut c = Client::connect(gw.local_addr);
    c.send_raw(&long_submit(2));
    assert!(c.recv().is_none(), "closed unanswered before its bind");
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    c.send_raw(&long_submit(7));
    assert_eq!(c.recv_resp(7).command_status, CommandStatus::ESME_ROK, "bound: 1,500 octets of payload pass");
    // A long PDU right behind the bind, in the same write, is read once the bind is answered.
    let mut c = Client::connect(gw.local_addr);
    let bind = smppgw_codec::Bind {
        system_id: "c1".to_owned().into(),
        password: "pw".to_owned().into(),
        interface_version: 0x34,
        ..Default::default()
    };
    let mut both = Pdu::new(1, Body::BindTransceiver(bind)).to_bytes().to_vec();
    both.extend_from_slice(&long_submit(8));
    c.send_raw(&both);
    assert_eq!(c.recv_resp(1).command_status, CommandStatus::ESME_ROK);
    assert_eq!(c.recv_resp(8).command_status, CommandStatus::ESME_ROK, "pipelined behind the bind");
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

#[test]
fn field_checks_answer_over_the_wire_and_a_valid_data_sm_reaches_the_vendor() {
    // Goal: each field a customer can get wrong comes back with its own status (submit_sm and
    // data_sm alike), nothing refused reaches the vendor, and a valid data_sm is routed, sent
    // and answered with a gateway id.
    use smppgw_codec::{Address, DataSm, Tlvs, tag};
    let vendor = common::sim(|_| {});
    let gw = start(config(&[("v1", vendor.local_addr())]));
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(5), || vendor.stats().binds_current >= 2), "vendor binds up");

    type Tweak = Box<dyn Fn(&mut smppgw_codec::SubmitSm)>;
    let cases: Vec<(&str, Tweak, CommandStatus)> = vec![
        ("empty source", Box::new(|s| s.source.addr = Default::default()), CommandStatus::ESME_RINVSRCADR),
        ("receipt esm_class", Box::new(|s| s.esm_class = 0x04), CommandStatus::ESME_RINVESMCLASS),
        ("priority 7", Box::new(|s| s.priority_flag = 7), CommandStatus::ESME_RINVPRTFLG),
        (
            "registered_delivery 0x80",
            Box::new(|s| s.registered_delivery = 0x80),
            CommandStatus::ESME_RINVREGDLVFLG,
        ),
        (
            "replace_if_present 3",
            Box::new(|s| s.replace_if_present_flag = 3),
            CommandStatus::ESME_RINVREPFLAG,
        ),
        (
            "schedule of 3 characters",
            Box::new(|s| s.schedule_delivery_time = "123".into()),
            CommandStatus::ESME_RINVSCHED,
        ),
        ("reserved data_coding", Box::new(|s| s.data_coding = 0x0C), CommandStatus::ESME_RINVDCS),
        (
            "odd UCS-2",
            Box::new(|s| {
                s.data_coding = 8;
                s.short_message = vec![0, b'h', 0].into();
            }),
            CommandStatus::ESME_RINVMSGLEN,
        ),
        (
            "UDH part 0",
            Box::new(|s| {
                s.esm_class = 0x40;
                s.short_message = vec![5, 0x00, 3, 9, 2, 0, b'h'].into();
            }),
            CommandStatus::ESME_RINVMSGLEN,
        ),
        (
            "SAR without its total",
            Box::new(|s| {
                s.tlvs = Tlvs::builder().u16(tag::SAR_MSG_REF_NUM, 9).u8(tag::SAR_SEGMENT_SEQNUM, 1).build();
            }),
            CommandStatus::ESME_RMISSINGOPTPARAM,
        ),
        (
            "SAR part 4 of 3",
            Box::new(|s| {
                s.tlvs = Tlvs::builder()
                    .u16(tag::SAR_MSG_REF_NUM, 9)
                    .u8(tag::SAR_TOTAL_SEGMENTS, 3)
                    .u8(tag::SAR_SEGMENT_SEQNUM, 4)
                    .build();
            }),
            CommandStatus::ESME_RINVOPTPARAMVAL,
        ),
    ];
    for (what, tweak, status) in &cases {
        let (seq, mut p) = c.submit_pdu("15551234567", "hello");
        let Body::SubmitSm(s) = &mut p.body else { unreachable!() };
        tweak(s);
        c.send(&p);
        let r = c.recv_resp(seq);
        assert_eq!(
            (r.command_id(), r.command_status),
            (CommandId::SUBMIT_SM_RESP, *status),
            "submit_sm: {what}"
        );
    }

    // data_sm: the same checks, its own response.
    let data_sm = |dc: u8, payload: &[u8]| DataSm {
        source: Address::new(1, 1, "15550001"),
        dest: Address::new(1, 1, "15551234567"),
        data_coding: dc,
        tlvs: Tlvs::builder().bytes(tag::MESSAGE_PAYLOAD, payload).build(),
        ..Default::default()
    };
    let seq = c.next_seq();
    c.send(&Pdu::new(seq, Body::DataSm(data_sm(0x0B, b"hello"))));
    let r = c.recv_resp(seq);
    assert_eq!((r.command_id(), r.command_status), (CommandId::DATA_SM_RESP, CommandStatus::ESME_RINVDCS));
    let seq = c.next_seq();
    c.send(&Pdu::new(seq, Body::DataSm(data_sm(8, &[0, b'h', 0]))));
    assert_eq!(c.recv_resp(seq).command_status, CommandStatus::ESME_RINVMSGLEN, "odd UCS-2 data_sm");
    assert!(vendor.take_recorded().is_empty(), "nothing refused reached the vendor");

    let seq = c.next_seq();
    c.send(&Pdu::new(seq, Body::DataSm(data_sm(0, b"hello by data_sm"))));
    let r = c.recv_resp(seq);
    assert_eq!((r.command_id(), r.command_status), (CommandId::DATA_SM_RESP, CommandStatus::ESME_ROK));
    let Body::DataSmResp(m) = &r.body else { panic!("data_sm_resp with a body: {r:?}") };
    assert!(!m.message_id.is_empty() && m.message_id.len() <= 20, "a gateway id: {:?}", m.message_id);
    let recorded = vendor.take_recorded();
    assert_eq!(recorded.len(), 1, "the vendor got the message once");
    let sent = &recorded[0].pdu;
    assert_eq!(&sent.dest.addr[..], b"15551234567");
    let text = sent.tlvs.message_payload().unwrap_or_else(|| sent.short_message.clone());
    assert_eq!(&text[..], b"hello by data_sm");
    assert_ne!(
        recorded[0].message_id.as_bytes(),
        &m.message_id[..],
        "the customer gets our id, not the vendor's"
    );
    gw.shutdown();
    gw.join();
}

#[test]
fn a_data_sm_s_time_to_live_reaches_the_vendor_as_the_submit_s_validity_period() {
    // Goal: a data_sm with qos_time_to_live reaches the vendor as a submit_sm whose
    // validity_period says the same (300 s, relative form), without the data_sm-only parameters
    // a submit_sm may not carry.
    use smppgw_codec::{Address, DataSm, Tlvs, tag};
    let vendor = common::sim(|_| {});
    let gw = start(config(&[("v1", vendor.local_addr())]));
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(5), || vendor.stats().binds_current >= 2), "vendor binds up");
    let seq = c.next_seq();
    let d = DataSm {
        source: Address::new(1, 1, "15550001"),
        dest: Address::new(1, 1, "15551234567"),
        tlvs: Tlvs::builder()
            .bytes(tag::MESSAGE_PAYLOAD, b"code 1234")
            .bytes(tag::QOS_TIME_TO_LIVE, &300u32.to_be_bytes())
            .u8(tag::SOURCE_NETWORK_TYPE, 1)
            .u8(tag::SET_DPF, 1)
            .build(),
        ..Default::default()
    };
    c.send(&Pdu::new(seq, Body::DataSm(d)));
    assert_eq!(c.recv_resp(seq).command_status, CommandStatus::ESME_ROK);
    let recorded = vendor.take_recorded();
    assert_eq!(recorded.len(), 1, "the vendor got the message once");
    let sent = &recorded[0].pdu;
    assert_eq!(&sent.validity_period[..], b"000000000500000R");
    let tags: Vec<u16> = sent.tlvs.iter().map(|t| t.tag).collect();
    assert_eq!(tags, vec![tag::MESSAGE_PAYLOAD], "only what a submit_sm allows");
    gw.shutdown();
    gw.join();
}

#[test]
fn an_idle_customer_gets_enquire_link_and_is_closed_when_it_never_answers() {
    // Goal: a bound customer that sends nothing gets enquire_link after the configured interval;
    // one that answers stays bound; one that never answers is closed after the response timeout.
    let mut cfg = config(&[]);
    cfg.server.enquire_link_interval_ms = 200;
    cfg.server.response_timeout_ms = 300;
    cfg.server.session_timeout_ms = 5000;
    let gw = start(cfg);

    let mut silent = Client::connect(gw.local_addr);
    assert_eq!(silent.bind("trx", "c2", "pw"), CommandStatus::ESME_ROK);
    let p = silent.recv().expect("an enquire_link first");
    assert_eq!(p.command_id(), CommandId::ENQUIRE_LINK);
    let start = std::time::Instant::now();
    assert!(silent.recv().is_none(), "closed without an answer to its enquire_link");
    assert!(start.elapsed() < Duration::from_secs(4), "closed by the response timeout, not the read timeout");

    // One that answers stays bound through several intervals and is still served.
    let mut polite = Client::connect(gw.local_addr);
    assert_eq!(polite.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    for _ in 0..4 {
        let p = polite.recv().expect("an enquire_link, not a close");
        assert_eq!(p.command_id(), CommandId::ENQUIRE_LINK);
        polite.send(&Pdu::new(p.sequence_number, Body::EnquireLinkResp));
    }
    polite.send(&Pdu::new(900, Body::EnquireLink));
    loop {
        let p = polite.recv().expect("still bound");
        match p.body {
            Body::EnquireLink => polite.send(&Pdu::new(p.sequence_number, Body::EnquireLinkResp)),
            _ => {
                assert_eq!((p.command_id(), p.sequence_number), (CommandId::ENQUIRE_LINK_RESP, 900));
                break;
            }
        }
    }
    gw.shutdown();
    gw.join();
}

/// Submits for a destination no route covers, sequence numbers from `first`, written by a thread
/// (for at most `patience`) while nobody reads: each is answered at once (16 octets), and the
/// answers come to a megabyte more than the gateway's socket can buffer (its send buffer grows to
/// tcp_wmem's largest, 4 MB by default) on top of the client's small receive buffer.
fn flood_without_reading(c: &mut Client, first: u32, patience: Duration) -> std::thread::JoinHandle<()> {
    use std::io::Write;
    let wmem_max: usize = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2).and_then(|n| n.parse().ok()))
        .unwrap_or(4 << 20);
    let answers = ((wmem_max + (1 << 20)) / 16) as u32;
    let (_, mut p) = c.submit_pdu("1", "");
    let mut flood = bytes::BytesMut::new();
    for i in 0..answers {
        p.sequence_number = first + i;
        p.encode(&mut flood);
    }
    let mut writer = c.stream.try_clone().unwrap();
    writer.set_write_timeout(Some(patience)).unwrap();
    std::thread::spawn(move || {
        let _ = writer.write_all(&flood);
    })
}

#[test]
fn a_customer_that_stops_reading_is_closed_and_the_gateway_serves_on() {
    // Goal: a customer that keeps submitting but never reads its responses (its TCP window
    // shuts) does not hold its session forever: once the gateway's writes stall for the response
    // timeout, that session is closed; everyone else is served.
    use std::sync::atomic::Ordering;
    let mut cfg = config(&[]);
    cfg.server.response_timeout_ms = 1000;
    let gw = start(cfg);
    // A small receive buffer from the handshake on: set later, the window already advertised
    // lets the kernel take in more, a little at a time, and the gateway's writes keep moving.
    let mut c = Client::connect_with_rcvbuf(gw.local_addr, 4096);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert_eq!(gw.metrics.sessions_bound.load(Ordering::Relaxed), 1);
    let flooder = flood_without_reading(&mut c, 1, Duration::from_secs(20));
    assert!(
        wait_for(Duration::from_secs(20), || gw.metrics.sessions_bound.load(Ordering::Relaxed) == 0),
        "the session that stopped reading was closed"
    );
    flooder.join().unwrap();
    let mut other = Client::connect(gw.local_addr);
    assert_eq!(other.bind("trx", "c2", "pw"), CommandStatus::ESME_ROK);
    other.send(&Pdu::new(7, Body::EnquireLink));
    assert_eq!(other.recv_resp(7).command_id(), CommandId::ENQUIRE_LINK_RESP);
    gw.shutdown();
    gw.join();
}

#[test]
fn a_peer_that_never_binds_and_reads_a_trickle_of_its_answers_is_closed_at_its_bind_deadline() {
    // Goal: a connection that floods enquire_links without binding and then reads a little
    // every moment (so that the gateway's write never stalls for long) is closed at its bind
    // deadline, not kept for as long as answering the whole flood takes at that pace (minutes).
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    let mut cfg = config(&[]);
    cfg.server.bind_timeout_ms = 1000;
    let gw = start(cfg);
    let c = Client::connect_with_rcvbuf(gw.local_addr, 4096);
    let mut flood = bytes::BytesMut::new();
    for i in 0..(1u32 << 18) {
        Pdu::new(i + 1, Body::EnquireLink).encode(&mut flood);
    }
    let mut writer = c.stream.try_clone().unwrap();
    writer.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    let flooder = std::thread::spawn(move || {
        let _ = writer.write_all(&flood);
    });
    let mut reader = c.stream.try_clone().unwrap();
    reader.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let start = std::time::Instant::now();
    let mut buf = [0u8; 1500];
    let closed = loop {
        if start.elapsed() > Duration::from_secs(15) {
            break false;
        }
        match reader.read(&mut buf) {
            Ok(0) => break true,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break true,
            Ok(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert!(closed, "closed well within 15 s");
    let _ = c.stream.shutdown(std::net::Shutdown::Both);
    flooder.join().unwrap();
    assert!(wait_for(Duration::from_secs(5), || gw.metrics.sessions.load(Ordering::Relaxed) == 0));
    gw.shutdown();
    gw.join();
}

#[test]
fn a_reloaded_response_timeout_applies_to_the_write_stall_of_a_session_already_open() {
    // Goal: a session bound under a 60 s response timeout, reloaded to 1 s, that stops reading
    // is closed once its writes stall for the new timeout, not the old one.
    use std::sync::atomic::Ordering;
    let mut cfg = config(&[]);
    cfg.server.response_timeout_ms = 60_000;
    let gw = start(cfg.clone());
    let mut c = Client::connect_with_rcvbuf(gw.local_addr, 4096);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    cfg.server.response_timeout_ms = 1000;
    let version = gw.control().reload(cfg).unwrap();
    assert!(wait_for(Duration::from_secs(10), || gw.control().applied_everywhere(version)));
    // The session sees the new settings when it next wakes: an enquire_link does that.
    c.send(&Pdu::new(1, Body::EnquireLink));
    assert_eq!(c.recv_resp(1).command_id(), CommandId::ENQUIRE_LINK_RESP);
    let flooder = flood_without_reading(&mut c, 2, Duration::from_secs(30));
    assert!(
        wait_for(Duration::from_secs(25), || gw.metrics.sessions_bound.load(Ordering::Relaxed) == 0),
        "closed after the reloaded 1 s, well before the 60 s it was bound under"
    );
    flooder.join().unwrap();
    gw.shutdown();
    gw.join();
}

#[test]
fn a_submit_read_with_broken_framing_behind_it_is_answered_before_the_session_closes() {
    // Goal: a customer whose write carries a submit and then bytes that cannot be framed gets
    // the submit's response (the vendor has the message) before the session is closed; the
    // session used to close at once, and the customer would send that message again.
    let v = sim(|s| s.faults.resp_latency = smppgw_loadgen::sim::Delay::Fixed(Duration::from_millis(300)));
    let gw = smppgw_engine::start(config(&[("v", v.local_addr())])).unwrap();
    assert!(wait_for(Duration::from_secs(10), || v.stats().binds_current >= 2));
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    let (seq, p) = c.submit_pdu("15551230101", "then garbage");
    let mut wire = p.to_bytes().to_vec();
    wire.extend_from_slice(&[0x7F, 0xFF, 0xFF, 0xFF, 0, 0, 0, 4]);
    c.send_raw(&wire);
    let mut got = Vec::new();
    while let Some(p) = c.recv() {
        got.push((p.command_id(), p.sequence_number, p.command_status));
    }
    assert_eq!(got, vec![(CommandId::SUBMIT_SM_RESP, seq, CommandStatus::ESME_ROK)], "answered, then closed");
    assert_eq!(v.stats().submits_ok, 1);
    gw.shutdown();
    gw.join();
}
