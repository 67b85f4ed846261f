//! Routing and vendors end to end: failover when a vendor is down, throttles or times out,
//! adaptive slow-down, customer throughput in segments, window overflow, and many binds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Client, config, sim, wait_for};
use smppgw_codec::{Body, CommandStatus, Pdu, Tlvs, tag};

/// An address on which nothing listens (a vendor that is down): a privileged port no test can
/// listen on (a port released by a listener of ours could be taken by another test's).
fn nobody_listens() -> std::net::SocketAddr {
    "127.0.0.1:1".parse().unwrap()
}

/// A port of 127.0.0.1 kept for a vendor that comes up later: a socket bound to it but not
/// listening, so that a connection to it is refused (nobody listens) while no other listener,
/// another test's included, can take the port until it is dropped.
struct HeldPort {
    _socket: socket2::Socket,
    addr: std::net::SocketAddr,
}

fn hold_a_port() -> HeldPort {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().expect("an IPv4 address");
    HeldPort { _socket: socket, addr }
}

#[test]
fn submits_reach_the_vendor_with_our_id_and_fail_over_when_the_first_vendor_is_down() {
    // Goal: with the first vendor unreachable, every message goes to the second, ids are ours.
    let dead_addr = nobody_listens();
    let v2 = sim(|_| {});
    let gw = smppgw_engine::start(config(&[("down", dead_addr), ("up", v2.local_addr())])).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(10), || v2.stats().binds_current >= 2));
    for i in 0..20 {
        let (st, id) = c.submit(&format!("1555000{i:04}"), "failover");
        assert_eq!(st, CommandStatus::ESME_ROK);
        assert!(!id.is_empty());
    }
    assert_eq!(v2.stats().submits, 20);
    // Operators see the route's traffic in /metrics; an unroutable destination counts nowhere.
    let scrape = smppgw_control::metrics::render(&gw.metrics, &gw.control().current());
    assert!(
        scrape.contains("smppgw_route_messages_total{route=\"default\",result=\"accepted\"} 20"),
        "{scrape}"
    );
    assert!(scrape.contains("smppgw_route_messages_total{route=\"default\",result=\"refused\"} 0"));
    gw.shutdown();
    gw.join();
}

#[test]
fn temporary_vendor_errors_fail_over_and_permanent_ones_come_back() {
    // Goal: ESME_RMSGQFUL and ESME_RSYSERR from the first vendor send the message to the next
    // one (the customer sees ESME_ROK), and so does ESME_RINVCMDLEN, which speaks of our PDU to
    // the vendor, not of the message; a permanent refusal (ESME_RINVDSTADR) is not retried
    // elsewhere and reaches the customer as the vendor gave it.
    for status in [
        CommandStatus::ESME_RMSGQFUL,
        CommandStatus::ESME_RSYSERR,
        CommandStatus::ESME_RINVCMDLEN,
        CommandStatus::ESME_RINVDSTADR,
    ] {
        let v1 = sim(|s| {
            s.faults.error_rate = 1.0;
            s.faults.error_status = status;
        });
        let v2 = sim(|_| {});
        let gw =
            smppgw_engine::start(config(&[("first", v1.local_addr()), ("second", v2.local_addr())])).unwrap();
        let mut c = Client::connect(gw.local_addr);
        assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
        assert!(wait_for(Duration::from_secs(10), || v1.stats().binds_current >= 2
            && v2.stats().binds_current >= 2));
        let permanent = status == CommandStatus::ESME_RINVDSTADR;
        for i in 0..10 {
            let (st, id) = c.submit(&format!("1555200{i:04}"), "temporary or not");
            if permanent {
                assert_eq!(st, status, "message {i}: the vendor's refusal");
                assert!(id.is_empty());
            } else {
                assert_eq!(st, CommandStatus::ESME_ROK, "message {i} after {status}");
                assert!(!id.is_empty());
            }
        }
        let (s1, s2) = (v1.stats(), v2.stats());
        assert_eq!(s1.injected_errors, 10, "{status}: every message was offered to the first vendor");
        if permanent {
            assert_eq!(s2.submits, 0, "a permanent refusal is not sent elsewhere");
        } else {
            assert_eq!(s2.submits_ok, 10, "{status}: the second vendor took every message");
        }
        gw.shutdown();
        gw.join();
    }
}

#[test]
fn a_throttling_vendor_is_passed_over_and_slowed_down() {
    // Goal: ESME_RTHROTTLED from the first vendor sends the message to the next one, and the
    // gateway stops hammering the throttling vendor.
    let v1 = sim(|s| s.faults.throttle_tps = Some(5));
    let v2 = sim(|_| {});
    let gw = smppgw_engine::start(config(&[("slow", v1.local_addr()), ("spare", v2.local_addr())])).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(
        wait_for(Duration::from_secs(10), || v1.stats().binds_current >= 2 && v2.stats().binds_current >= 2)
    );
    let n = 300;
    for i in 0..n {
        let (st, _) = c.submit(&format!("1555100{i:04}"), "burst");
        assert_eq!(st, CommandStatus::ESME_ROK, "message {i} is carried by one vendor or the other");
    }
    let (s1, s2) = (v1.stats(), v2.stats());
    assert_eq!(s1.submits_ok + s2.submits_ok, n, "every message accepted exactly once");
    assert!(s1.throttled > 0, "the first vendor throttled");
    assert!(s2.submits_ok > 0, "the spare vendor took the overflow");
    // Adaptive pacing: far fewer throttled answers than messages offered.
    assert!(s1.throttled < n / 2, "slowed down instead of hammering: {} throttled", s1.throttled);
    let m = &gw.metrics;
    assert!(m.failovers.load(std::sync::atomic::Ordering::Relaxed) >= s1.throttled);
    // Operators see it per vendor and per customer.
    let snap = gw.control().current();
    let slow = snap.vendors.iter().flatten().find(|v| v.cfg.name == "slow").unwrap();
    assert_eq!(slow.counters.throttled.load(std::sync::atomic::Ordering::Relaxed), s1.throttled);
    let last =
        slow.slots.iter().filter_map(|s| s.last_error()).map(|(e, _)| e.to_string()).collect::<Vec<_>>();
    assert!(last.iter().any(|e| e == "submit refused: ESME_RTHROTTLED"), "{last:?}");
    let c1 = snap.customer(b"c1").unwrap();
    assert_eq!(c1.counters.accepted.load(std::sync::atomic::Ordering::Relaxed), n);
    gw.shutdown();
    gw.join();
}

#[test]
fn messages_queued_at_a_vendor_when_it_starts_throttling_go_to_the_next_one() {
    // Goal: a burst fills both vendors' windows and queues (four windows each); when the first
    // vendor then answers ESME_RTHROTTLED, its bind slows down and the messages still queued
    // for it go back to routing at once (to the next vendor, or to the customer as throttled
    // when none has room), instead of waiting out the slower pace (down to one a second) only
    // to be throttled and passed on one by one, minutes for a long queue.
    let v1 = sim(|s| {
        s.faults.error_rate = 1.0;
        s.faults.error_status = CommandStatus::ESME_RTHROTTLED;
        s.faults.resp_latency = smppgw_loadgen::sim::Delay::Fixed(Duration::from_millis(300));
    });
    let v2 = sim(|s| s.faults.resp_latency = smppgw_loadgen::sim::Delay::Fixed(Duration::from_millis(500)));
    let mut cfg = config(&[("slow", v1.local_addr()), ("spare", v2.local_addr())]);
    for v in &mut cfg.vendors {
        v.binds = 1;
        v.window = 4;
        // Far above the vendors' latency, on a loaded machine too: every answer is the vendor's.
        v.response_timeout_ms = 5_000;
    }
    cfg.customers[0].window = 100;
    let gw = smppgw_engine::start(cfg).unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || v1.stats().binds_current >= 1 && v2.stats().binds_current >= 1)
    );
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    // Four in each window, sixteen in each queue.
    let n = 40;
    let mut seqs = Vec::new();
    for i in 0..n {
        let (seq, p) = c.submit_pdu(&format!("1555830{i:04}"), "burst");
        c.send(&p);
        seqs.push(seq);
    }
    // Answers come in any order: the spare vendor's before the failed-over ones.
    let mut answered = std::collections::HashMap::new();
    while answered.len() < seqs.len() {
        let p = c.recv().expect("every message is answered");
        if p.command_id().is_response() {
            answered.insert(p.sequence_number, p.command_status);
        }
    }
    let ok = answered.values().filter(|s| s.is_ok()).count() as u64;
    assert!(
        answered.values().all(|s| s.is_ok() || *s == CommandStatus::ESME_RTHROTTLED),
        "accepted, or throttled for the customer to retry: {answered:?}"
    );
    assert_eq!(v2.stats().submits_ok, ok, "the spare vendor carried every accepted message");
    // The first ones went to the throttling vendor (up to its window of four: on a loaded
    // machine the burst may reach the gateway in pieces, and the spare vendor's window takes
    // some of the first), and at most a few more at its slowed pace: not the sixteen queued
    // behind them.
    let tried = v1.stats().submits;
    assert!((1..12).contains(&tried), "the throttling vendor was sent {tried}");
    gw.shutdown();
    gw.join();
}

#[test]
fn a_vendor_that_times_out_fails_over_when_configured_and_errors_otherwise() {
    // Goal: unknown outcome policy: default answers ESME_RSUBMITFAIL (never sends twice);
    // unknown_outcome_failover sends it to the next vendor, and a reload that turns it on
    // applies to the running cores at once (each keeps it outside the snapshot).
    let v1 = sim(|s| s.faults.drop_rate = 1.0);
    let v2 = sim(|_| {});
    let mut cfg = config(&[("mute", v1.local_addr()), ("spare", v2.local_addr())]);
    cfg.vendors[0].response_timeout_ms = 300;
    let gw = smppgw_engine::start(cfg.clone()).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(
        wait_for(Duration::from_secs(10), || v1.stats().binds_current >= 2 && v2.stats().binds_current >= 2)
    );
    assert_eq!(c.submit("15552220000", "lost?").0, CommandStatus::ESME_RSUBMITFAIL);
    assert_eq!(v2.stats().submits, 0, "not sent twice");

    cfg.server.unknown_outcome_failover = true;
    let version = gw.control().reload(cfg).unwrap();
    assert!(wait_for(Duration::from_secs(10), || gw.control().applied_everywhere(version)));
    assert_eq!(c.submit("15552220001", "retry elsewhere").0, CommandStatus::ESME_ROK);
    assert_eq!(v2.stats().submits, 1);
    assert_eq!(gw.metrics.possible_duplicates.load(std::sync::atomic::Ordering::Relaxed), 1);
    gw.shutdown();
    gw.join();
}

#[test]
fn customer_throughput_is_counted_in_segments() {
    // Goal: 10 segments/s; a 3-segment message_payload costs 3; the excess gets ESME_RTHROTTLED.
    let v = sim(|_| {});
    let mut cfg = config(&[("v", v.local_addr())]);
    cfg.customers[0].throughput = 10;
    let gw = smppgw_engine::start(cfg).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(10), || v.stats().binds_current >= 2));
    let long = |c: &mut Client| {
        let (seq, mut p) = c.submit_pdu("15553330000", "");
        if let Body::SubmitSm(s) = &mut p.body {
            s.tlvs = Tlvs::builder().bytes(tag::MESSAGE_PAYLOAD, &[b'x'; 400]).build();
        }
        c.send(&p);
        c.recv_resp(seq).command_status
    };
    // A second's worth (10 segments) may go at once: three 3-segment messages pass, and the
    // next within the same instant (12 segments) does not. Sent back to back (answers read
    // after): sent one at a time, a slow machine's round trips could space them out past the
    // rate.
    let mut seqs = Vec::new();
    for _ in 0..5 {
        let (seq, mut p) = c.submit_pdu("15553330000", "");
        if let Body::SubmitSm(s) = &mut p.body {
            s.tlvs = Tlvs::builder().bytes(tag::MESSAGE_PAYLOAD, &[b'x'; 400]).build();
        }
        c.send(&p);
        seqs.push(seq);
    }
    let mut by_seq = std::collections::HashMap::new();
    while by_seq.len() < seqs.len() {
        let p = c.recv().expect("answers");
        if p.command_id().is_response() {
            by_seq.insert(p.sequence_number, p.command_status);
        }
    }
    let statuses: Vec<CommandStatus> = seqs.iter().map(|s| by_seq[s]).collect();
    assert_eq!(statuses[..3], [CommandStatus::ESME_ROK; 3], "{statuses:?}");
    assert!(statuses.contains(&CommandStatus::ESME_RTHROTTLED), "{statuses:?}");
    // The nine segments taken are paid back at 10 a second: a tenth of a second after the burst
    // the limiter is one segment short of another 3-segment message, 300 ms after it has room.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(long(&mut c), CommandStatus::ESME_ROK, "allowed again after 300 ms");
    let snap = gw.control().current();
    let k = &snap.customer(b"c1").unwrap().counters;
    let ok = statuses.iter().filter(|s| s.is_ok()).count() as u64 + 1;
    assert_eq!(
        k.segments.load(std::sync::atomic::Ordering::Relaxed),
        3 * ok,
        "3 segments per accepted message"
    );
    assert_eq!(k.throttled.load(std::sync::atomic::Ordering::Relaxed), 6 - ok);
    gw.shutdown();
    gw.join();
}

#[test]
fn a_customer_may_send_a_second_of_its_throughput_at_once() {
    // Goal: at 10 segments/s, a 3-part UDH message sent as three submit_sm back to back is
    // accepted whole (the burst allowed was a tenth of a second, one segment: parts 2 and 3 got
    // ESME_RTHROTTLED), seven more segments in the same instant pass too, and the 11th segment
    // is refused.
    let v = sim(|_| {});
    let mut cfg = config(&[("v", v.local_addr())]);
    cfg.customers[0].throughput = 10;
    let gw = smppgw_engine::start(cfg).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(10), || v.stats().binds_current >= 2));
    // Eleven submit_sm in one write, so the gateway reads them in the same instant: the three
    // parts, seven single-segment messages, and one more.
    let mut wire = Vec::new();
    let mut seqs = Vec::new();
    for part in 1..=3u8 {
        let (seq, mut p) = c.submit_pdu("15553330001", "");
        let Body::SubmitSm(s) = &mut p.body else { unreachable!() };
        s.esm_class |= 0x40;
        s.short_message = [&[5u8, 0x00, 3, 0x77, 3, part][..], b"part of three"].concat().into();
        wire.extend_from_slice(&p.to_bytes());
        seqs.push(seq);
    }
    for i in 0..8 {
        let (seq, p) = c.submit_pdu(&format!("155533301{i:02}"), "one segment");
        wire.extend_from_slice(&p.to_bytes());
        seqs.push(seq);
    }
    c.send_raw(&wire);
    let mut by_seq = std::collections::HashMap::new();
    while by_seq.len() < seqs.len() {
        let p = c.recv().expect("answers");
        if p.command_id().is_response() {
            by_seq.insert(p.sequence_number, p.command_status);
        }
    }
    let statuses: Vec<CommandStatus> = seqs.iter().map(|s| by_seq[s]).collect();
    assert_eq!(statuses[..3], [CommandStatus::ESME_ROK; 3], "the three parts: {statuses:?}");
    assert_eq!(statuses[3..10], [CommandStatus::ESME_ROK; 7], "ten segments in all: {statuses:?}");
    assert_eq!(statuses[10], CommandStatus::ESME_RTHROTTLED, "the 11th segment");
    gw.shutdown();
    gw.join();
}

#[test]
fn submit_multi_destinations_are_counted_as_submits_however_they_end() {
    // Goal: submits = accepted + refused + rejected holds for submit_multi, whose destinations
    // each count as a submit: those refused for the customer's throughput or as a distribution
    // list were counted rejected but never received, and a submit_multi refused whole (more
    // destinations than the window, a full window, a sequence number still pending) was
    // counted nowhere.
    use smppgw_codec::{Address, DestAddress, SubmitMulti};
    use std::sync::atomic::Ordering;
    // The vendor holds its answers a second, so the window is still taken when the third
    // submit_multi is read.
    let v = sim(|s| s.faults.resp_latency = smppgw_loadgen::sim::Delay::Fixed(Duration::from_secs(1)));
    let mut cfg = config(&[("v", v.local_addr())]);
    cfg.vendors[0].response_timeout_ms = 10_000;
    cfg.customers[0].window = 4;
    cfg.customers[0].throughput = 3;
    let gw = smppgw_engine::start(cfg).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(10), || v.stats().binds_current >= 2));
    let multi = |c: &mut Client, smes: u32, list: bool| {
        let seq = c.next_seq();
        let mut dests: Vec<DestAddress> =
            (0..smes).map(|i| DestAddress::Sme(Address::new(1, 1, format!("155544450{i:02}")))).collect();
        if list {
            dests.push(DestAddress::DistributionList("friends".into()));
        }
        let m = SubmitMulti {
            source: Address::new(1, 1, "15550001"),
            dests,
            short_message: "to many".into(),
            ..Default::default()
        };
        c.send(&Pdu::new(seq, Body::SubmitMulti(m)));
        seq
    };
    // Five SME destinations and a list, the window 4: refused whole.
    let too_many = multi(&mut c, 5, true);
    assert_eq!(c.recv_resp(too_many).command_status, CommandStatus::ESME_RINVNUMDESTS);
    // Four and a list: three go (the customer's 3 segments a second), the fourth is throttled,
    // the list refused.
    let sent = multi(&mut c, 4, true);
    // Two more while three are in flight: the window is full, refused whole.
    let full = multi(&mut c, 2, false);
    assert_eq!(c.recv_resp(full).command_status, CommandStatus::ESME_RTHROTTLED);
    // One to a single destination reusing the sequence number of the one pending: refused.
    let m = SubmitMulti {
        source: Address::new(1, 1, "15550001"),
        dests: vec![DestAddress::Sme(Address::new(1, 1, "15554445099"))],
        short_message: "again".into(),
        ..Default::default()
    };
    c.send(&Pdu::new(sent, Body::SubmitMulti(m)));
    assert_eq!(c.recv_resp(sent).command_status, CommandStatus::ESME_RSYSERR, "the reused one, at once");
    let r = c.recv_resp(sent);
    assert_eq!(r.command_status, CommandStatus::ESME_ROK);
    let Body::SubmitMultiResp(resp) = r.body else { panic!("submit_multi_resp") };
    let failed: Vec<CommandStatus> = resp.unsuccess.iter().map(|u| u.error_status).collect();
    assert_eq!(failed, [CommandStatus::ESME_RTHROTTLED, CommandStatus::ESME_RINVDLNAME]);
    let m = &gw.metrics;
    assert!(wait_for(Duration::from_secs(5), || m.accepted.get() == 3), "three accepted");
    let rejected = m.rejected.load(Ordering::Relaxed);
    assert_eq!((m.submits.get(), rejected, m.refused.get()), (6 + 5 + 2 + 1, 6 + 2 + 2 + 1, 0));
    assert_eq!(m.submits.get(), m.accepted.get() + m.refused.get() + rejected, "the identity");
    let statuses = |st: CommandStatus| m.submit_results.get(st.0 as usize);
    assert_eq!(statuses(CommandStatus::ESME_RINVNUMDESTS), 6);
    assert_eq!(statuses(CommandStatus::ESME_RTHROTTLED), 1 + 2);
    assert_eq!(statuses(CommandStatus::ESME_RINVDLNAME), 1);
    assert_eq!(statuses(CommandStatus::ESME_RSYSERR), 1);
    gw.shutdown();
    gw.join();
}

#[test]
fn window_overflow_gets_throttled() {
    // Goal: more outstanding submits than the window get ESME_RTHROTTLED at once.
    // The vendor holds each answer long enough that the window is still full when the extra
    // submits are read, however slowly.
    let v = sim(|s| s.faults.resp_latency = smppgw_loadgen::sim::Delay::Fixed(Duration::from_secs(2)));
    let mut cfg = config(&[("v", v.local_addr())]);
    cfg.vendors[0].response_timeout_ms = 10_000;
    cfg.customers[0].window = 4;
    let gw = smppgw_engine::start(cfg).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(10), || v.stats().binds_current >= 2));
    let mut seqs = Vec::new();
    let mut send = |c: &mut Client, i: usize| {
        let (seq, p) = c.submit_pdu(&format!("155544400{i}"), "w");
        c.send(&p);
        seqs.push(seq);
    };
    // A full window: four at the vendor, unanswered.
    for i in 0..4 {
        send(&mut c, i);
    }
    assert!(wait_for(Duration::from_secs(10), || v.stats().submits >= 4), "{:?}", v.stats());
    for i in 4..6 {
        send(&mut c, i);
    }
    let mut by_seq = std::collections::HashMap::new();
    for _ in 0..6 {
        let p = c.recv().unwrap();
        by_seq.insert(p.sequence_number, p.command_status);
    }
    let throttled = by_seq.values().filter(|s| **s == CommandStatus::ESME_RTHROTTLED).count();
    let ok = by_seq.values().filter(|s| **s == CommandStatus::ESME_ROK).count();
    assert_eq!((ok, throttled), (4, 2), "{by_seq:?}");
    assert!(
        seqs[4..].iter().all(|s| by_seq[s] == CommandStatus::ESME_RTHROTTLED),
        "the two beyond: {by_seq:?}"
    );
    // An invalid submit (no destination) is refused before routing as well.
    let (seq, p) = c.submit_pdu("", "no destination");
    c.send(&p);
    assert_eq!(c.recv_resp(seq).command_status, CommandStatus::ESME_RINVDSTADR);
    // Operators see every refusal before routing: received = accepted + refused + rejected.
    let m = &gw.metrics;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(load(&m.rejected), 3, "two past the window, one invalid");
    assert_eq!(m.submits.get(), 7);
    assert_eq!(m.accepted.get(), 4);
    let snap = gw.control().current();
    assert_eq!(load(&snap.customer(b"c1").unwrap().counters.rejected), 3);
    gw.shutdown();
    gw.join();
}

#[test]
fn two_thousand_concurrent_binds() {
    // Goal: 2,000 customer sessions bind at once, all stay served, and are spread evenly over
    // the cores.
    let mut cfg = config(&[]);
    cfg.customers[0].max_binds = 5000;
    let gw = smppgw_engine::start(cfg).unwrap();
    let mut clients = Vec::new();
    for _ in 0..2000 {
        let mut c = Client::connect(gw.local_addr);
        let seq = c.next_seq();
        c.send(&Pdu::new(
            seq,
            Body::BindTransceiver(smppgw_codec::Bind {
                system_id: "c1".into(),
                password: "pw".into(),
                interface_version: 0x34,
                ..Default::default()
            }),
        ));
        clients.push((c, seq));
    }
    for (c, seq) in &mut clients {
        assert_eq!(c.recv_resp(*seq).command_status, CommandStatus::ESME_ROK);
    }
    assert_eq!(gw.metrics.sessions_bound.load(std::sync::atomic::Ordering::Relaxed), 2000);
    // Whichever listening socket the kernel chose, the two cores serve about half each.
    let by_core = |c: usize| gw.metrics.sessions_by_core[c].load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(by_core(0) + by_core(1), 2000);
    assert!(by_core(0).abs_diff(by_core(1)) <= 2, "{} / {}", by_core(0), by_core(1));
    for (i, (c, _)) in clients.iter_mut().enumerate().step_by(97) {
        c.send(&Pdu::new(1000 + i as u32, Body::EnquireLink));
        assert_eq!(c.recv_resp(1000 + i as u32).command_id(), smppgw_codec::CommandId::ENQUIRE_LINK_RESP);
    }
    drop(clients);
    gw.shutdown();
    gw.join();
}

#[test]
fn one_address_holding_idle_connections_does_not_lock_other_customers_out() {
    // Goal: a host that opens connections and never binds (a flood, or a reconnect loop gone
    // wrong) cannot fill the node's connection budget (twice max_binds): once the node is
    // crowded its address gets no more unbound connections, and a customer from another
    // address still binds. Before, every connection past the budget was closed at accept,
    // whoever it came from.
    let mut cfg = config(&[]);
    cfg.server.max_binds = 16;
    let gw = smppgw_engine::start(cfg).unwrap();
    let idle: Vec<std::net::TcpStream> =
        (0..40).map(|_| std::net::TcpStream::connect(gw.local_addr).unwrap()).collect();
    // Every one of them is accepted or closed by now.
    assert!(wait_for(Duration::from_secs(5), || {
        let n = gw.metrics.sessions.load(std::sync::atomic::Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(200));
        n == gw.metrics.sessions.load(std::sync::atomic::Ordering::Relaxed) && n > 0
    }));
    let held = gw.metrics.sessions.load(std::sync::atomic::Ordering::Relaxed);
    assert!(held < 32, "the idle address holds {held} of the budget of 32");
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let other: std::net::SocketAddr = "127.0.0.2:0".parse().unwrap();
    socket.bind(&other.into()).unwrap();
    socket.connect(&gw.local_addr.into()).unwrap();
    let mut c = Client::from_stream(socket.into());
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK, "a customer from another address binds");
    drop(idle);
    gw.shutdown();
    gw.join();
}

#[test]
fn graceful_shutdown_answers_every_submit_in_flight() {
    // Goal: on shutdown, submits in flight are finished and every acknowledged message reached
    // the vendor; the customer is unbound.
    let v = sim(|s| s.faults.resp_latency = smppgw_loadgen::sim::Delay::Fixed(Duration::from_millis(200)));
    let gw = smppgw_engine::start(config(&[("v", v.local_addr())])).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(10), || v.stats().binds_current >= 2));
    for i in 0..20 {
        let (_, p) = c.submit_pdu(&format!("15556660{i:03}"), "in flight");
        c.send(&p);
    }
    // Every submit read by the gateway before the shutdown (one read after it began is refused
    // with ESME_RSYSERR): each has reached the vendor, which answers 200 ms later.
    assert!(wait_for(Duration::from_secs(10), || v.stats().submits >= 20), "{:?}", v.stats());
    gw.shutdown();
    let (acked, unbound) = c.drain_until_closed();
    gw.join();
    assert_eq!(acked, 20, "every submit in flight was answered OK");
    assert!(unbound, "the gateway unbound the customer");
    assert_eq!(v.stats().submits_ok, 20, "every acknowledged message reached the vendor");
}

#[test]
fn graceful_shutdown_hands_over_the_receipts_it_holds_before_unbinding() {
    // Goal: receipts the gateway already has for a bound customer (more than its receiving
    // session's window, so most are queued) are delivered and answered before the customer is
    // unbound, so a clean shutdown loses none.
    let v = sim(|_| {});
    let mut cfg = config(&[("v", v.local_addr())]);
    // No deliver_sm times out (and is sent again) while the customer is not reading.
    cfg.server.response_timeout_ms = 30_000;
    cfg.server.shutdown_grace_ms = 10_000;
    let gw = smppgw_engine::start(cfg).unwrap();
    // The receiving session on core 1, away from the customer's queue on its home core 0: the
    // case where a core must not unbind its sessions while another still holds their receipts.
    let per = &gw.metrics.sessions_by_core;
    let mut rx = None;
    for _ in 0..64 {
        let before = per[1].load(std::sync::atomic::Ordering::Relaxed);
        let mut c = Client::connect(gw.local_addr);
        assert_eq!(c.bind("rx", "c1", "pw"), CommandStatus::ESME_ROK);
        if per[1].load(std::sync::atomic::Ordering::Relaxed) > before {
            rx = Some(c);
            break;
        }
        assert_eq!(c.unbind(), CommandStatus::ESME_ROK);
    }
    let mut rx = rx.expect("a session on core 1");
    let mut tx = Client::connect(gw.local_addr);
    assert_eq!(tx.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(10), || v.stats().binds_current >= 2));
    let n = 3 * smppgw_engine::deliveries::SESSION_DELIVERY_WINDOW as u64;
    for i in 0..n {
        let (st, _) = tx.submit_dlr(&format!("15557770{i:03}"), "receipt me");
        assert_eq!(st, CommandStatus::ESME_ROK);
    }
    assert_eq!(tx.unbind(), CommandStatus::ESME_ROK);
    drop(tx);
    let c = &mut rx;
    // Every receipt is at the gateway (sent or queued, none answered) when shutdown begins.
    let ok = wait_for(Duration::from_secs(10), || v.stats().receipts_sent >= n);
    assert!(ok, "{:?}", v.stats());
    std::thread::sleep(Duration::from_millis(200));
    gw.shutdown();
    let (mut receipts, mut unbind_after) = (std::collections::BTreeSet::new(), None);
    while let Some(p) = c.recv() {
        match p.body {
            Body::DeliverSm(_) => {
                assert!(unbind_after.is_none(), "a receipt after the unbind");
                receipts.insert(common::receipt_of(&p).0);
                c.answer(&p, CommandStatus::ESME_ROK);
            }
            Body::Unbind => {
                unbind_after = Some(receipts.len() as u64);
                c.send(&Pdu::new(p.sequence_number, Body::UnbindResp));
            }
            _ => {}
        }
    }
    gw.join();
    assert_eq!(receipts.len() as u64, n, "every receipt delivered");
    assert_eq!(unbind_after, Some(n), "unbound only after the last receipt");
}

#[test]
fn a_customer_and_its_vendor_bind_on_different_cores() {
    // Goal: with the vendor's one bind on core 0, customers bound on core 1 are served through the
    // cross-core channel, answered with ids, and nothing is lost.
    let v = sim(|_| {});
    let mut cfg = config(&[("v", v.local_addr())]);
    cfg.vendors[0].binds = 1;
    let gw = smppgw_engine::start(cfg).unwrap();
    assert!(wait_for(Duration::from_secs(10), || v.stats().binds_current >= 1));
    let per = &gw.metrics.sessions_by_core;
    let mut clients = Vec::new();
    while per[1].load(std::sync::atomic::Ordering::Relaxed) == 0 && clients.len() < 32 {
        let mut c = Client::connect(gw.local_addr);
        assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
        clients.push(c);
    }
    assert!(per[1].load(std::sync::atomic::Ordering::Relaxed) > 0, "a session landed on core 1");
    let mut ok = 0;
    for (i, c) in clients.iter_mut().enumerate() {
        for j in 0..10 {
            let (st, id) = c.submit(&format!("1555{i:03}{j:04}"), "cross-core");
            assert_eq!(st, CommandStatus::ESME_ROK);
            assert!(!id.is_empty());
            ok += 1;
        }
    }
    assert_eq!(v.stats().submits_ok, ok);
    gw.shutdown();
    gw.join();
}

#[test]
fn a_message_waits_briefly_for_its_vendor_to_be_bound_then_fails_with_rsyserr() {
    // Goal: a gap in the vendor's binds (a reload replacing them, a reconnect) does not refuse
    // messages; a vendor that stays away does, after NO_VENDOR_HOLD_MS.
    let held = hold_a_port();
    let addr = held.addr;
    let mut cfg = config(&[("late", addr)]);
    // Reconnects as often as allowed: the vendor's bind must come within the hold (1 s) after
    // it starts listening, on a loaded machine too.
    (cfg.vendors[0].reconnect_backoff_min_ms, cfg.vendors[0].reconnect_backoff_max_ms) = (10, 10);
    let gw = smppgw_engine::start(cfg).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    let started = std::time::Instant::now();
    let (st, _) = c.submit("15550009999", "nobody there");
    assert_eq!(st, CommandStatus::ESME_RSYSERR, "no vendor came");
    let waited = started.elapsed();
    let hold = Duration::from_millis(smppgw_engine::core::NO_VENDOR_HOLD_MS);
    assert!(waited >= hold, "answered after {waited:?}, before the hold");

    // The vendor comes up while the message waits.
    let (seq, p) = c.submit_pdu("15550009998", "just in time");
    c.send(&p);
    std::thread::sleep(Duration::from_millis(20));
    drop(held);
    let v = sim(|s| s.listen = addr);
    assert_eq!(c.recv_resp(seq).command_status, CommandStatus::ESME_ROK, "sent once the vendor bound");
    assert_eq!(v.stats().submits, 1);
    gw.shutdown();
    gw.join();
}

#[test]
fn a_vendor_bind_is_made_with_its_settings_retried_with_growing_backoff_and_kept_alive() {
    // Goal: the vendor bind carries the configured credentials, system_type and bind type; a
    // refused bind is retried after 100, 200, then 400 ms (+-25% jitter), never in a tight loop
    // and never beyond the maximum; once bound, enquire_link keeps the bind alive.
    use std::io::{Read, Write};
    use std::time::Instant;
    // Waits of about 100, 200, then 400 ms: nine attempts take about 3 s, or 26 s if the waits
    // doubled on past the maximum.
    const ATTEMPTS: usize = 9;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = std::thread::spawn(move || {
        let mut seen = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let until = Instant::now() + Duration::from_secs(60);
        while seen.len() < ATTEMPTS && Instant::now() < until {
            let Ok((mut s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            };
            let at = Instant::now();
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = bytes::BytesMut::new();
            let mut chunk = [0u8; 512];
            let pdu = loop {
                if let Ok(Some(p)) = smppgw_codec::Decoder::default().decode(&mut buf) {
                    break Some(p);
                }
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break None,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let Some(pdu) = pdu else { continue };
            let Body::BindTransceiver(b) = &pdu.body else { panic!("a transceiver bind: {pdu:?}") };
            seen.push((at, b.system_id.clone(), b.password.clone(), b.system_type.clone()));
            let resp = Pdu::with_status(
                pdu.sequence_number,
                CommandStatus::ESME_RBINDFAIL,
                Body::BindTransceiverResp(Default::default()),
            );
            let _ = s.write_all(&resp.to_bytes());
        }
        seen
    });
    let mut cfg = config(&[("picky", addr)]);
    let v = &mut cfg.vendors[0];
    v.binds = 1;
    v.system_type = "VMA".into();
    v.reconnect_backoff_min_ms = 100;
    v.reconnect_backoff_max_ms = 400;
    let gw = smppgw_engine::start(cfg).unwrap();
    let attempts = fake.join().unwrap();
    gw.shutdown();
    gw.join();
    assert_eq!(attempts.len(), ATTEMPTS, "the bind is retried");
    for (_, system_id, password, system_type) in attempts.iter() {
        assert_eq!(
            (&system_id[..], &password[..], &system_type[..]),
            (&b"smppgw"[..], &b"secret"[..], &b"VMA"[..])
        );
    }
    // Timers fire late on a busy machine, never early: the lower bounds are exact.
    let gaps: Vec<u128> = attempts.windows(2).map(|w| w[1].0.duration_since(w[0].0).as_millis()).collect();
    assert!(gaps.iter().all(|&g| g >= 70), "never sooner than 75% of the minimum: {gaps:?}");
    assert!(gaps.iter().any(|&g| g >= 290), "the backoff grew to the maximum: {gaps:?}");
    // Capped: the waits after the third are 400 ms +-25% (at most 500); had they doubled on,
    // every one would be 600 ms or more. Only if all five timers fired 100 ms late or more would
    // a capped backoff look otherwise.
    let shortest_later = gaps[3..].iter().min().copied().unwrap_or_default();
    assert!(shortest_later < 600, "capped at the maximum, not doubling on: {gaps:?}");

    // Bound: enquire_link at the configured interval.
    let sim = sim(|_| {});
    let mut cfg = config(&[("alive", sim.local_addr())]);
    cfg.vendors[0].enquire_link_interval_ms = 100;
    let gw = smppgw_engine::start(cfg).unwrap();
    assert!(wait_for(Duration::from_secs(10), || sim.stats().enquire_links >= 6), "keepalive on both binds");
    assert_eq!(sim.stats().binds_total, 2, "the binds stayed up");
    gw.shutdown();
    gw.join();
}

#[test]
fn equal_priority_vendors_share_traffic_by_weight_and_cover_for_each_other() {
    // Goal: two vendors of one priority, weights 3 and 1, take about three quarters and one
    // quarter of the traffic; with the heavier one down, the lighter one takes everything.
    let heavy = sim(|_| {});
    let light = sim(|_| {});
    let mut cfg = config(&[("heavy", heavy.local_addr()), ("light", light.local_addr())]);
    for (rv, w) in cfg.routes[0].vendors.iter_mut().zip([3, 1]) {
        rv.priority = 0;
        rv.weight = w;
    }
    let gw = smppgw_engine::start(cfg).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(10), || heavy.stats().binds_current >= 2
        && light.stats().binds_current >= 2));
    let n = 400;
    for i in 0..n {
        assert_eq!(c.submit(&format!("1555300{i:04}"), "weighted").0, CommandStatus::ESME_ROK);
    }
    let (h, l) = (heavy.stats().submits_ok, light.stats().submits_ok);
    assert_eq!(h + l, n);
    // 3:1 of 400 is 300:100; a binomial spread of about 9 either way, so 250..350 is far outside
    // chance and far from an even split (200) or one vendor taking all.
    assert!((250..=350).contains(&h), "heavy took {h} of {n}, light {l}");
    drop(c);
    gw.shutdown();
    gw.join();

    // The light vendor alone when the heavy one is down: equal priority still fails over.
    let dead_addr = nobody_listens();
    let mut cfg = config(&[("heavy", dead_addr), ("light", light.local_addr())]);
    for (rv, w) in cfg.routes[0].vendors.iter_mut().zip([3, 1]) {
        rv.priority = 0;
        rv.weight = w;
    }
    let before = light.stats().submits_ok;
    let gw = smppgw_engine::start(cfg).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(10), || light.stats().binds_current >= 2));
    for i in 0..20 {
        assert_eq!(c.submit(&format!("1555301{i:04}"), "weighted").0, CommandStatus::ESME_ROK);
    }
    assert_eq!(light.stats().submits_ok - before, 20);
    gw.shutdown();
    gw.join();
}

#[test]
fn a_vendor_is_paced_to_its_throughput_without_redis() {
    // Goal: a vendor configured for 20 messages a second gets no more than that (plus its short
    // burst) on the embedded default, and the messages wait for their turn instead of failing.
    let v = sim(|_| {});
    let mut cfg = config(&[("slow", v.local_addr())]);
    cfg.vendors[0].throughput = 20;
    let gw = smppgw_engine::start(cfg).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(10), || v.stats().binds_current >= 2));
    // All 30 at once (within the window of 64), answers read after: the pace, not the client's
    // round trips, decides when and on which bind each goes.
    let start = std::time::Instant::now();
    let mut seqs = std::collections::HashSet::new();
    for i in 0..30 {
        let (seq, p) = c.submit_pdu(&format!("1555400{i:04}"), "paced");
        c.send(&p);
        seqs.insert(seq);
    }
    while !seqs.is_empty() {
        let p = c.recv().expect("answers");
        if p.command_id().is_response() && seqs.remove(&p.sequence_number) {
            assert_eq!(p.command_status, CommandStatus::ESME_ROK, "message {}", p.sequence_number);
        }
    }
    let took = start.elapsed();
    assert_eq!(v.stats().submits_ok, 30);
    // 30 at 20/s is 1.5 s; even with the whole burst allowance up front, more than 1 s.
    assert!(took >= Duration::from_millis(1000), "30 messages in {took:?}: not paced to 20/s");
    // Each bind paces its share (10/s here): a customer that waits for every answer still gets
    // the vendor's whole rate only if both binds carry its messages.
    let snap = gw.control().current();
    let slow = snap.vendors.iter().flatten().find(|v| v.cfg.name == "slow").unwrap();
    let sent: Vec<u64> =
        slow.slots.iter().map(|s| s.sent.load(std::sync::atomic::Ordering::Relaxed)).collect();
    assert!(sent.iter().all(|&n| n >= 5), "both binds carry the traffic: {sent:?}");
    gw.shutdown();
    gw.join();
}

#[test]
fn a_customer_faster_than_a_paced_vendor_is_throttled_instead_of_waiting_past_its_timeout() {
    // Goal: a vendor paced to 4 messages a second (one bind, window 8: a queue of four windows,
    // 40 in all) queues only what its pace sends in about 2 s; a customer that sends 40 at once
    // gets the rest back as ESME_RTHROTTLED within a few seconds. Before, all 40 waited at the
    // bind and the last answer came after 10 s (at 1/s, 40 s: past most clients' response
    // timeouts, which then send the message again while the gateway still sends the first).
    let v = sim(|_| {});
    let mut cfg = config(&[("paced", v.local_addr())]);
    cfg.vendors[0].throughput = 4;
    cfg.vendors[0].binds = 1;
    cfg.vendors[0].window = 8;
    let gw = smppgw_engine::start(cfg).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(10), || v.stats().binds_current >= 1));
    let start = std::time::Instant::now();
    let mut seqs = std::collections::HashSet::new();
    for i in 0..40 {
        let (seq, p) = c.submit_pdu(&format!("1555410{i:04}"), "faster than the vendor");
        c.send(&p);
        seqs.insert(seq);
    }
    let (mut ok, mut throttled) = (0u64, 0);
    while !seqs.is_empty() {
        let p = c.recv().expect("answers");
        if p.command_id().is_response() && seqs.remove(&p.sequence_number) {
            match p.command_status {
                CommandStatus::ESME_ROK => ok += 1,
                CommandStatus::ESME_RTHROTTLED => throttled += 1,
                st => panic!("message {}: {st}", p.sequence_number),
            }
        }
    }
    let took = start.elapsed();
    assert!(throttled > 0 && ok >= 8, "{ok} accepted, {throttled} throttled");
    assert_eq!(v.stats().submits_ok, ok, "what was throttled never reached the vendor");
    assert!(took < Duration::from_secs(6), "every answer within a few seconds, not 10 s: {took:?}");
    gw.shutdown();
    gw.join();
}

#[test]
fn a_message_held_across_a_reload_keeps_its_destinations_route() {
    // Goal: a message waiting for a vendor of its route (44... -> "uk", down) stays on that
    // route when a reload puts another route first; it used to be sent down whatever route took
    // its place in the list ("fr", whose vendor is up).
    let down = nobody_listens();
    let up = sim(|_| {});
    let mut cfg = config(&[("uk-vendor", down), ("other", up.local_addr())]);
    cfg.routes.clear();
    let mut uk = smppgw_engine::config::RouteConfig::new("uk", &["uk-vendor"]);
    uk.prefixes = vec!["44".into()];
    let mut rest = smppgw_engine::config::RouteConfig::new("rest", &["other"]);
    rest.prefixes = vec!["1".into()];
    cfg.routes = vec![uk, rest];
    let gw = smppgw_engine::start(cfg.clone()).unwrap();
    assert!(wait_for(Duration::from_secs(10), || up.stats().binds_current >= 2));
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    let (seq, p) = c.submit_pdu("447700900123", "to the uk");
    c.send(&p);
    std::thread::sleep(Duration::from_millis(100));
    let mut fr = smppgw_engine::config::RouteConfig::new("fr", &["other"]);
    fr.prefixes = vec!["33".into()];
    cfg.routes.insert(0, fr);
    let version = gw.control().reload(cfg).unwrap();
    assert!(wait_for(Duration::from_secs(10), || gw.control().applied_everywhere(version)));
    assert_eq!(
        c.recv_resp(seq).command_status,
        CommandStatus::ESME_RSYSERR,
        "its route's vendor stayed down"
    );
    assert_eq!(up.stats().submits, 0, "not sent down another route");
    gw.shutdown();
    gw.join();
}

#[test]
fn a_message_waiting_for_its_vendor_at_shutdown_is_answered() {
    // Goal: shutdown while a message waits for its route's vendor to bind: the customer gets
    // ESME_RSYSERR before its session is unbound, not silence.
    let addr = nobody_listens();
    let gw = smppgw_engine::start(config(&[("late", addr)])).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    let (seq, p) = c.submit_pdu("15550009997", "waiting");
    c.send(&p);
    std::thread::sleep(Duration::from_millis(100));
    gw.shutdown();
    let mut answer = None;
    while let Some(p) = c.recv() {
        match p.body {
            Body::SubmitSmResp(_) if p.sequence_number == seq => answer = Some(p.command_status),
            Body::Unbind => {
                assert!(answer.is_some(), "answered before the unbind");
                c.send(&Pdu::new(p.sequence_number, Body::UnbindResp));
            }
            _ => {}
        }
    }
    assert_eq!(answer, Some(CommandStatus::ESME_RSYSERR));
    gw.join();
}

#[test]
fn a_vendor_whose_window_is_full_is_passed_over_for_the_next() {
    // Goal: messages beyond the first vendor's window go to the next vendor of the route while
    // it has room, rather than queueing behind the first (its queue is a last resort, when no
    // vendor has room).
    // The first vendor holds its answers long enough that its window is still full when the
    // rest are read, however slowly.
    let slow = sim(|s| s.faults.resp_latency = smppgw_loadgen::sim::Delay::Fixed(Duration::from_secs(2)));
    let spare = sim(|_| {});
    let mut cfg = config(&[("slow", slow.local_addr()), ("spare", spare.local_addr())]);
    cfg.vendors[0].binds = 1;
    cfg.vendors[0].window = 2;
    cfg.vendors[0].response_timeout_ms = 10_000;
    let gw = smppgw_engine::start(cfg).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(10), || slow.stats().binds_current >= 1
        && spare.stats().binds_current >= 2));
    let send = |c: &mut Client, i: usize| {
        let (_, p) = c.submit_pdu(&format!("155544500{i}"), "w");
        c.send(&p);
    };
    // The first vendor's window fills...
    for i in 0..2 {
        send(&mut c, i);
    }
    assert!(wait_for(Duration::from_secs(10), || slow.stats().submits >= 2), "{:?}", slow.stats());
    // ... and what comes while it is full goes on.
    for i in 2..10 {
        send(&mut c, i);
    }
    for _ in 0..10 {
        assert_eq!(c.recv().unwrap().command_status, CommandStatus::ESME_ROK);
    }
    assert_eq!(slow.stats().submits, 2, "the first vendor's window");
    assert_eq!(spare.stats().submits, 8, "the rest to the next vendor, not queued behind the first");
    gw.shutdown();
    gw.join();
}

#[test]
fn a_reloaded_customer_window_and_id_format_apply_to_its_bound_sessions() {
    // Goal: a bound customer's new window and id format (a reload) apply from its next
    // submits, not only to its next bind.
    // The vendor holds each answer long enough that the window is still full when the extra
    // submits are read, however slowly.
    let v = sim(|s| s.faults.resp_latency = smppgw_loadgen::sim::Delay::Fixed(Duration::from_secs(2)));
    let mut cfg = config(&[("v", v.local_addr())]);
    cfg.vendors[0].response_timeout_ms = 10_000;
    cfg.customers[0].window = 4;
    let gw = smppgw_engine::start(cfg.clone()).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(10), || v.stats().binds_current >= 2));
    let (st, id) = c.submit("15554460000", "hex");
    assert_eq!(st, CommandStatus::ESME_ROK);
    assert!(!id.is_empty() && id.len() <= 16, "hex by default: {id}");
    cfg.customers[0].window = 2;
    cfg.customers[0].id_format = smppgw_engine::config::IdFormat::Decimal;
    let version = gw.control().reload(cfg).unwrap();
    assert!(wait_for(Duration::from_secs(10), || gw.control().applied_everywhere(version)));
    std::thread::sleep(Duration::from_millis(50));
    let send = |c: &mut Client, i: usize| {
        let (_, p) = c.submit_pdu(&format!("155544600{i}"), "w");
        c.send(&p);
    };
    // The new window of 2, full: both at the vendor, unanswered (after the first message).
    for i in 0..2 {
        send(&mut c, i);
    }
    assert!(wait_for(Duration::from_secs(10), || v.stats().submits >= 3), "{:?}", v.stats());
    for i in 2..4 {
        send(&mut c, i);
    }
    let mut got = Vec::new();
    for _ in 0..4 {
        let p = c.recv().unwrap();
        let id = match &p.body {
            Body::SubmitSmResp(m) => String::from_utf8_lossy(&m.message_id).into_owned(),
            _ => String::new(),
        };
        got.push((p.command_status, id));
    }
    let ok: Vec<&String> =
        got.iter().filter(|(s, _)| *s == CommandStatus::ESME_ROK).map(|(_, id)| id).collect();
    assert_eq!(ok.len(), 2, "the new window of 2: {got:?}");
    assert!(ok.iter().all(|id| id.bytes().all(|b| b.is_ascii_digit())), "decimal ids: {ok:?}");
    gw.shutdown();
    gw.join();
}

/// A vendor answering after `latency_ms` (each answer followed by its receipt), a gateway with
/// a response timeout and a grace far above it, customer c1 bound as `kind`, and `n` submits
/// asking for receipts (to `prefix` and a number) sent and at the vendor, unanswered yet.
fn submits_at_a_slow_vendor(
    latency_ms: u64,
    kind: &str,
    n: usize,
    prefix: &str,
) -> (smppgw_loadgen::sim::SimHandle, smppgw_engine::Gateway, Client) {
    let v =
        sim(|s| s.faults.resp_latency = smppgw_loadgen::sim::Delay::Fixed(Duration::from_millis(latency_ms)));
    let mut cfg = config(&[("v", v.local_addr())]);
    // Far above the vendor's latency, on a loaded machine too: every answer is the vendor's.
    cfg.vendors[0].response_timeout_ms = 5_000;
    cfg.server.shutdown_grace_ms = 6_000;
    let gw = smppgw_engine::start(cfg).unwrap();
    assert!(wait_for(Duration::from_secs(10), || v.stats().binds_current >= 2));
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind(kind, "c1", "pw"), CommandStatus::ESME_ROK);
    for i in 0..n {
        let (_, mut p) = c.submit_pdu(&format!("{prefix}{i:04}"), "receipt at shutdown");
        if let Body::SubmitSm(s) = &mut p.body {
            s.registered_delivery = 1;
        }
        c.send(&p);
    }
    assert!(wait_for(Duration::from_secs(10), || v.stats().submits >= n as u64), "{:?}", v.stats());
    (v, gw, c)
}

#[test]
fn receipts_that_arrive_while_another_core_still_drains_are_all_accounted_for() {
    // Goal: shutdown with one customer on one core slow to leave (its submits still at the
    // vendor, and it never answers our unbind) and none on the other: the other core keeps its
    // vendor bind and keeps serving its share of the receipt store until every core's customers
    // are settled, so each receipt the vendor sends meanwhile (right behind its answers) is
    // matched (and then held, delivered or counted), never dropped on the way between cores.
    // (That core used to unbind its vendor and exit at once; receipts for its shard then arrived
    // on the other core's bind and vanished.)
    use std::sync::atomic::Ordering;
    // A transmitter: its receipts are held for it, not delivered.
    let (v, gw, mut c) = submits_at_a_slow_vendor(800, "tx", 40, "1555800");
    // The customer reads everything and answers nothing, not even the unbind.
    let reader = std::thread::spawn(move || while c.try_recv().is_some() {});
    let metrics = gw.metrics.clone();
    gw.shutdown();
    gw.join();
    let _ = reader.join();
    let m = &metrics;
    let arrived = m.receipts_in.load(Ordering::Relaxed);
    let accounted = m.receipts_matched.load(Ordering::Relaxed)
        + m.receipts_early.load(Ordering::Relaxed)
        + m.receipts_unmatched.load(Ordering::Relaxed)
        + m.receipts_unparsable.load(Ordering::Relaxed);
    assert_eq!(v.stats().receipts_sent, 40, "the vendor sent every receipt while the gateway drained");
    assert_eq!(arrived, 40);
    assert_eq!(accounted, arrived, "every receipt that arrived was matched or counted");
}

#[test]
fn receipts_a_vendor_sends_while_the_node_shuts_down_reach_the_customers_still_bound() {
    // Goal: a clean shutdown loses no receipt it took from a vendor. The customer stops being
    // given new work first, but stays bound, receiving, until the vendors are unbound and what
    // they sent has gone out; only then is it unbound. (Customers used to be unbound as soon as
    // their submits were answered, so the receipts the vendor sent right behind its answers were
    // acknowledged to the vendor and then dropped at exit.)
    use std::sync::atomic::Ordering;
    let (v, gw, mut c) = submits_at_a_slow_vendor(600, "trx", 20, "1555810");
    // The customer answers everything, the receipts and our unbind included.
    let reader = std::thread::spawn(move || {
        let (mut acked, mut receipts, mut unbound) = (0, 0, false);
        while let Some(p) = c.recv() {
            match p.body {
                Body::SubmitSmResp(_) if p.command_status.is_ok() => acked += 1,
                Body::DeliverSm(_) => {
                    receipts += 1;
                    c.answer(&p, CommandStatus::ESME_ROK);
                }
                Body::Unbind => {
                    unbound = true;
                    c.send(&Pdu::new(p.sequence_number, Body::UnbindResp));
                }
                _ => {}
            }
        }
        (acked, receipts, unbound)
    });
    let metrics = gw.metrics.clone();
    gw.shutdown();
    gw.join();
    let (acked, receipts, unbound) = reader.join().unwrap();
    assert_eq!(acked, 20, "every submit in flight was answered");
    assert!(unbound, "the customer was unbound");
    let arrived = metrics.receipts_in.load(Ordering::Relaxed);
    assert_eq!(v.stats().receipts_sent, arrived, "the vendor's receipts were all read before its unbind");
    assert_eq!(arrived, 20, "the vendor sent a receipt behind each answer");
    assert_eq!(receipts, 20, "every receipt taken from the vendor reached the customer");
}

#[test]
fn a_submit_still_at_a_vendor_when_the_stop_runs_out_of_time_is_answered_before_the_unbind() {
    // Goal: a vendor that keeps a submit past the whole grace period does not leave the
    // customer without an answer: the bind is closed, the submit answered as of unknown outcome
    // (ESME_RSUBMITFAIL, never sent twice), and only then is the customer unbound.
    let v = sim(|s| s.faults.resp_latency = smppgw_loadgen::sim::Delay::Fixed(Duration::from_secs(20)));
    let mut cfg = config(&[("v", v.local_addr())]);
    cfg.vendors[0].response_timeout_ms = 60_000;
    cfg.server.shutdown_grace_ms = 1_000;
    let gw = smppgw_engine::start(cfg.clone()).unwrap();
    assert!(wait_for(Duration::from_secs(10), || v.stats().binds_current >= 2));
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    let (seq, p) = c.submit_pdu("15558400000", "slow vendor");
    c.send(&p);
    assert!(wait_for(Duration::from_secs(10), || v.stats().submits >= 1));
    // A reload replaces the vendor's binds: the one holding the submit is retired, still
    // waiting for its answer, when the node stops.
    cfg.vendors[0].system_type = "new".into();
    let version = gw.control().reload(cfg).unwrap();
    assert!(wait_for(Duration::from_secs(10), || gw.control().applied_everywhere(version)));
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        while let Some(p) = c.recv() {
            match p.body {
                Body::SubmitSmResp(_) if p.sequence_number == seq => seen.push(Some(p.command_status)),
                Body::Unbind => {
                    seen.push(None);
                    c.send(&Pdu::new(p.sequence_number, Body::UnbindResp));
                }
                _ => {}
            }
        }
        seen
    });
    gw.shutdown();
    gw.join();
    let seen = reader.join().unwrap();
    assert_eq!(seen, vec![Some(CommandStatus::ESME_RSUBMITFAIL), None], "the answer, then the unbind");
}
