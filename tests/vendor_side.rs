//! The gateway as a vendor's ESME, against a scripted fake SMSC: the vendor's own unbind, a bind
//! still on its way when the gateway stops, a reload of a vendor's pace while its binds stay, and
//! the drain of a vendor a reload removes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{Client, SmscConn as Conn, config, sim, wait_for};
use smppgw_codec::receipt::MessageState;
use smppgw_codec::{Body, CommandStatus, Decoder, Pdu, SubmitSm};

/// A fake SMSC: each connection the gateway makes is handed, in order, to `script` on its own
/// thread (with its number); what the scripts return comes back on the channel.
fn fake_smsc<T: Send + 'static>(
    script: impl Fn(usize, Conn) -> T + Send + Sync + 'static,
) -> (SocketAddr, mpsc::Receiver<T>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Far more connections than any test makes.
    let (tx, rx) = mpsc::sync_channel(64);
    let script = std::sync::Arc::new(script);
    std::thread::spawn(move || {
        for (n, s) in listener.incoming().enumerate() {
            let Ok(s) = s else { return };
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let (tx, script) = (tx.clone(), script.clone());
            std::thread::spawn(move || {
                let _ = tx.try_send(script(n, Conn::new(s)));
            });
        }
    });
    (addr, rx)
}

/// Waits until the gateway's first vendor has a bind up: a submit sent earlier would depend on
/// the gateway holding it (1 s) while the bind is made.
fn wait_vendor_up(gw: &smppgw_engine::Gateway) {
    let up = || {
        gw.control().current().vendors[0]
            .as_ref()
            .is_some_and(|v| v.slots.iter().any(|s| s.up.load(std::sync::atomic::Ordering::Relaxed)))
    };
    assert!(wait_for(Duration::from_secs(10), up), "the vendor bind is up");
}

/// Answers the gateway's bind_transceiver with ESME_ROK.
fn accept_bind(c: &mut Conn) {
    let p = c.recv().expect("a bind");
    assert!(matches!(p.body, Body::BindTransceiver(_)), "{p:?}");
    c.send(&Pdu::new(p.sequence_number, Body::BindTransceiverResp(Default::default())));
}

/// Serves a bound connection of the fake SMSC until the gateway unbinds or closes it: answers
/// enquire_link and unbind, and hands every other PDU to `on` (which answers it, or not).
fn serve(c: &mut Conn, mut on: impl FnMut(&mut Conn, Pdu)) {
    while let Some(p) = c.recv() {
        match p.body {
            Body::EnquireLink => c.send(&Pdu::new(p.sequence_number, Body::EnquireLinkResp)),
            Body::Unbind => {
                c.send(&Pdu::new(p.sequence_number, Body::UnbindResp));
                return;
            }
            _ => on(c, p),
        }
    }
}

/// A submit_sm_resp accepting `p` under the vendor id `id`.
fn accepted_as(p: &Pdu, id: &str) -> Pdu {
    let resp = smppgw_codec::MessageIdResp { message_id: id.to_owned().into(), ..Default::default() };
    Pdu::new(p.sequence_number, Body::SubmitSmResp(resp))
}

#[test]
fn the_vendors_unbind_is_answered_with_the_receipts_read_before_it_and_the_bind_comes_back() {
    // Goal: an SMSC that unbinds (a restart, maintenance) gets its unbind_resp, and the
    // deliver_sm_resp for a receipt it sent just before, before the connection closes; the
    // gateway binds again. Without the answers the SMSC re-sends the receipt (a duplicate for
    // the customer) and logs an unclean unbind.
    let (addr, seen) = fake_smsc(|n, mut c| {
        accept_bind(&mut c);
        if n > 0 {
            return Vec::new();
        }
        let receipt = SubmitSm {
            esm_class: 0x04,
            short_message: "id:V1 sub:001 dlvrd:001 submit date:2611251200 done date:2611251201 stat:DELIVRD err:000 text:x"
                .into(),
            ..Default::default()
        };
        // One write: the receipt, then the unbind.
        let mut both = BytesMut::new();
        Pdu::new(6, Body::DeliverSm(receipt)).encode(&mut both);
        Pdu::new(7, Body::Unbind).encode(&mut both);
        c.s.write_all(&both).unwrap();
        let mut answers = Vec::new();
        while let Some(p) = c.recv() {
            answers.push((p.command_id(), p.sequence_number));
        }
        answers
    });
    let mut cfg = config(&[("smsc", addr)]);
    cfg.vendors[0].binds = 1;
    let gw = smppgw_engine::start(cfg).unwrap();
    let first = seen.recv_timeout(Duration::from_secs(10)).expect("the first connection ends");
    assert!(
        first.contains(&(smppgw_codec::CommandId::DELIVER_SM_RESP, 6)),
        "the receipt answered before the close: {first:?}"
    );
    assert!(first.contains(&(smppgw_codec::CommandId::UNBIND_RESP, 7)), "the unbind answered: {first:?}");
    let again = seen.recv_timeout(Duration::from_secs(10));
    assert!(again.is_ok(), "the gateway binds again");
    gw.shutdown();
    gw.join();
}

#[test]
fn a_submit_in_flight_when_the_vendor_unbinds_gets_the_vendors_answer() {
    // Goal: an SMSC that unbinds with our submit in flight, then answers that submit: the
    // customer gets ESME_ROK with an id (the vendor has the message), and the SMSC gets our
    // unbind_resp after its answer. The bind used to close at once, the submit answered as of
    // unknown outcome, though the vendor accepted it.
    let (addr, seen) = fake_smsc(|n, mut c| {
        accept_bind(&mut c);
        if n > 0 {
            serve(&mut c, |c, p| {
                if let Body::SubmitSm(_) = p.body {
                    c.send(&accepted_as(&p, "W2"));
                }
            });
            return Vec::new();
        }
        let mut order = Vec::new();
        while let Some(p) = c.recv() {
            order.push(p.command_id());
            match p.body {
                Body::SubmitSm(_) => {
                    c.send(&Pdu::new(9, Body::Unbind));
                    std::thread::sleep(Duration::from_millis(200));
                    c.send(&accepted_as(&p, "W1"));
                }
                Body::EnquireLink => c.send(&Pdu::new(p.sequence_number, Body::EnquireLinkResp)),
                _ => {}
            }
        }
        order
    });
    let (gw, mut c) = one_bind_gateway(addr);
    let (st, id) = c.submit("15557770001", "in flight at the unbind");
    assert_eq!(st, CommandStatus::ESME_ROK);
    assert!(!id.is_empty());
    let first = seen.recv_timeout(Duration::from_secs(10)).expect("the first connection ends");
    assert_eq!(
        first,
        vec![smppgw_codec::CommandId::SUBMIT_SM, smppgw_codec::CommandId::UNBIND_RESP],
        "nothing sent between the unbind and its answer"
    );
    assert_eq!(c.unbind(), CommandStatus::ESME_ROK);
    gw.shutdown();
    gw.join();
}

#[test]
fn a_bind_still_on_its_way_when_the_gateway_stops_is_not_left_up() {
    // Goal: shutdown while the SMSC has not answered the bind yet: the gateway does not wait for
    // it, nor keep the bind up (with keepalives) once the answer comes; it closes and exits.
    let (bind_seen, bind_arrived) = mpsc::sync_channel(1);
    let (addr, seen) = fake_smsc(move |_, mut c| {
        let p = c.recv().expect("a bind");
        let _ = bind_seen.try_send(());
        std::thread::sleep(Duration::from_millis(500));
        c.send(&Pdu::new(p.sequence_number, Body::BindTransceiverResp(Default::default())));
        let mut after = Vec::new();
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            match c.recv() {
                Some(p) => after.push(p.command_id()),
                None => return (after, true),
            }
        }
        (after, false)
    });
    let mut cfg = config(&[("smsc", addr)]);
    cfg.vendors[0].binds = 1;
    cfg.vendors[0].enquire_link_interval_ms = 200;
    let gw = smppgw_engine::start(cfg).unwrap();
    bind_arrived.recv_timeout(Duration::from_secs(10)).expect("the gateway sent its bind");
    let stopping = Instant::now();
    gw.shutdown();
    gw.join();
    let (after, closed) = seen.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(closed, "the connection was closed, not kept up: {after:?}");
    assert!(
        !after.contains(&smppgw_codec::CommandId::ENQUIRE_LINK),
        "no keepalive after shutdown: {after:?}"
    );
    assert!(stopping.elapsed() < Duration::from_secs(3), "stopped in {:?}", stopping.elapsed());
}

#[test]
fn a_reloaded_vendor_pace_applies_to_the_binds_it_keeps() {
    // Goal: changing a vendor's throughput (its binds stay up: host and credentials unchanged)
    // takes effect at once, not at the binds' next reconnect.
    let v = sim(|_| {});
    let mut cfg = config(&[("paced", v.local_addr())]);
    cfg.vendors[0].throughput = 5;
    let gw = smppgw_engine::start(cfg.clone()).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(5), || v.stats().binds_current >= 2));
    let run = |c: &mut Client, tag: &str| {
        let start = Instant::now();
        for i in 0..10 {
            assert_eq!(c.submit(&format!("1555600{i:04}"), tag).0, CommandStatus::ESME_ROK);
        }
        start.elapsed()
    };
    let slow = run(&mut c, "at 5/s");
    cfg.vendors[0].throughput = 1000;
    let version = gw.control().reload(cfg).unwrap();
    assert!(wait_for(Duration::from_secs(5), || gw.control().applied_everywhere(version)));
    let fast = run(&mut c, "at 1000/s");
    assert_eq!(v.stats().binds_total, 2, "the binds were kept");
    // 10 at 5/s take more than a second and a half; at 1000/s a few milliseconds each way.
    assert!(slow >= Duration::from_millis(1500), "{slow:?}");
    assert!(fast < slow / 3, "the new pace applies: {fast:?} against {slow:?}");
    gw.shutdown();
    gw.join();
}

#[test]
fn a_cancel_while_a_reload_replaces_the_vendor_s_binds_waits_for_the_new_one() {
    // Goal: a reload that changes a vendor's bind settings replaces its binds; a cancel_sm that
    // comes before the new one is bound waits for it (as a submit does, up to 1 s), instead of
    // failing at once with ESME_RCANCELFAIL for a message the vendor could still cancel.
    let (addr, seen) = fake_smsc(|n, mut c| {
        if n > 0 {
            // The replacing bind is answered half a second late.
            thread::sleep(Duration::from_millis(500));
        }
        accept_bind(&mut c);
        let mut got = Vec::new();
        serve(&mut c, |c, p| {
            got.push(p.command_id());
            match p.body {
                Body::SubmitSm(_) => c.send(&accepted_as(&p, "V1")),
                Body::CancelSm(_) => c.send(&Pdu::new(p.sequence_number, Body::CancelSmResp)),
                _ => {}
            }
        });
        got
    });
    let mut cfg = config(&[("v", addr)]);
    cfg.vendors[0].binds = 1;
    let gw = smppgw_engine::start(cfg.clone()).unwrap();
    wait_vendor_up(&gw);
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    let (st, id) = c.submit("15551110000", "cancel me");
    assert_eq!(st, CommandStatus::ESME_ROK);
    // The store is written just after the answer: wait until the message is known.
    let known = |c: &mut Client| {
        let seq = c.next_seq();
        let q = smppgw_codec::QuerySm {
            message_id: id.clone().into(),
            source: smppgw_codec::Address::new(1, 1, "15550001"),
        };
        c.send(&Pdu::new(seq, Body::QuerySm(q)));
        c.recv_resp(seq).command_status.is_ok()
    };
    assert!(wait_for(Duration::from_secs(5), || known(&mut c)));

    cfg.vendors[0].system_type = "changed".into();
    let version = gw.control().reload(cfg).unwrap();
    assert!(wait_for(Duration::from_secs(5), || gw.control().applied_everywhere(version)));
    let seq = c.next_seq();
    let x = smppgw_codec::CancelSm {
        message_id: id.clone().into(),
        source: smppgw_codec::Address::new(1, 1, "15550001"),
        dest: smppgw_codec::Address::new(1, 1, "15551110000"),
        ..Default::default()
    };
    c.send(&Pdu::new(seq, Body::CancelSm(x)));
    let resp = c.recv_resp(seq);
    assert_eq!(resp.command_status, CommandStatus::ESME_ROK, "forwarded once the new bind was up");
    gw.shutdown();
    gw.join();
    let mut all: Vec<smppgw_codec::CommandId> = Vec::new();
    while let Ok(got) = seen.recv_timeout(Duration::from_secs(5)) {
        all.extend(got);
        if all.contains(&smppgw_codec::CommandId::CANCEL_SM) {
            break;
        }
    }
    assert!(all.contains(&smppgw_codec::CommandId::CANCEL_SM), "the vendor got the cancel: {all:?}");
}

#[test]
fn a_vendor_s_throughput_is_shared_by_the_binds_that_are_up() {
    // Goal: `throughput` is the vendor account's: with 4 binds configured and an account that
    // takes only 2 sessions, the 2 that are up carry all of it (each paced at half), not half of
    // it (each at a quarter, as if the 2 refused still took their part).
    let v = sim(|c| c.faults.max_binds = Some(2));
    let mut cfg = config(&[("paced", v.local_addr())]);
    cfg.vendors[0].binds = 4;
    cfg.vendors[0].throughput = 10;
    let gw = smppgw_engine::start(cfg).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(5), || v.stats().binds_current == 2));
    // Each bind counts the binds up every 100 ms, and takes a larger share once fewer have
    // been up for a second.
    thread::sleep(Duration::from_millis(1500));
    let start = Instant::now();
    for i in 0..30 {
        assert_eq!(c.submit(&format!("1555601{i:04}"), "shared").0, CommandStatus::ESME_ROK);
    }
    let took = start.elapsed();
    // 30 at 10/s: about 3 s; at the 5/s of two quarter shares, about 6 s.
    assert!(took >= Duration::from_millis(2000), "still paced: {took:?}");
    assert!(took < Duration::from_millis(4500), "the whole throughput used: {took:?}");
    gw.shutdown();
    gw.join();
}

#[test]
fn submits_queued_at_a_vendor_whose_throughput_a_reload_lowers_do_not_wait_out_the_new_pace() {
    // Goal: a bind holds what its pace sends in 2 s beyond its submits in flight; a reload that
    // lowers the pace leaves it holding far more, which used to be sent at the new pace (here 1
    // a second: a minute for the last) after the customer had given up and sent them again.
    // What is beyond the new bound goes back to the customer as throttled at once.
    let v = sim(|_| {});
    let mut cfg = config(&[("paced", v.local_addr())]);
    cfg.vendors[0].binds = 1;
    cfg.vendors[0].throughput = 20;
    let gw = smppgw_engine::start(cfg.clone()).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(5), || v.stats().binds_current == 1));
    let mut seqs = Vec::new();
    for i in 0..40 {
        let (seq, p) = c.submit_pdu(&format!("1555602{i:04}"), "queued");
        c.send(&p);
        seqs.push(seq);
    }
    thread::sleep(Duration::from_millis(300));
    cfg.vendors[0].throughput = 1;
    let version = gw.control().reload(cfg).unwrap();
    assert!(wait_for(Duration::from_secs(5), || gw.control().applied_everywhere(version)));
    let reloaded = Instant::now();
    let (mut ok, mut throttled) = (0, 0);
    let mut waiting: std::collections::HashSet<u32> = seqs.into_iter().collect();
    while !waiting.is_empty() {
        // Answers come in any order: those sent at the pace after those sent back throttled.
        let p = c.recv().expect("every submit answered");
        if !waiting.remove(&p.sequence_number) {
            continue;
        }
        match p.command_status {
            CommandStatus::ESME_ROK => ok += 1,
            CommandStatus::ESME_RTHROTTLED => throttled += 1,
            st => panic!("unexpected {st:?}"),
        }
    }
    let took = reloaded.elapsed();
    assert!(throttled > 0, "{ok} sent, none throttled");
    assert!(took < Duration::from_secs(8), "every answer within the new bound (2 s of 1/s): {took:?}");
    gw.shutdown();
    gw.join();
}

#[test]
fn a_transmitter_receiver_vendor_gets_a_transmitter_and_a_receiver_bind_and_receipts_come_on_the_receiver() {
    // Goal: `bind_type = "transmitter_receiver"` opens, per slot, a bind_transmitter that carries
    // the submits and a bind_receiver on which the SMSC delivers receipts; an SMSC that refuses
    // transceivers is fully usable. (The slot used to open one transceiver.)
    let (addr, seen) = fake_smsc(|_, mut c| {
        let p = c.recv().expect("a bind");
        match p.body {
            Body::BindTransmitter(_) => {
                c.send(&Pdu::new(p.sequence_number, Body::BindTransmitterResp(Default::default())));
                // Accept one submit under vendor id V77, then keep answering keepalives.
                while let Some(p) = c.recv() {
                    match p.body {
                        Body::SubmitSm(_) => c.send(&Pdu::new(
                            p.sequence_number,
                            Body::SubmitSmResp(smppgw_codec::MessageIdResp {
                                message_id: "V77".into(),
                                tlvs: Default::default(),
                            }),
                        )),
                        Body::EnquireLink => c.send(&Pdu::new(p.sequence_number, Body::EnquireLinkResp)),
                        Body::Unbind => c.send(&Pdu::new(p.sequence_number, Body::UnbindResp)),
                        _ => {}
                    }
                }
                "transmitter"
            }
            Body::BindReceiver(_) => {
                c.send(&Pdu::new(p.sequence_number, Body::BindReceiverResp(Default::default())));
                // Wait for the message to have been accepted on the transmitter, then deliver
                // its receipt here.
                std::thread::sleep(Duration::from_millis(800));
                let receipt = SubmitSm {
                    esm_class: 0x04,
                    source: smppgw_codec::Address::new(1, 1, "15556000000"),
                    dest: smppgw_codec::Address::new(1, 1, "15550001"),
                    short_message: "id:V77 sub:001 dlvrd:001 submit date:2611251200 done date:2611251201 stat:DELIVRD err:000 text:x"
                        .into(),
                    ..Default::default()
                };
                c.send(&Pdu::new(5, Body::DeliverSm(receipt)));
                while let Some(p) = c.recv() {
                    match p.body {
                        Body::EnquireLink => c.send(&Pdu::new(p.sequence_number, Body::EnquireLinkResp)),
                        Body::Unbind => c.send(&Pdu::new(p.sequence_number, Body::UnbindResp)),
                        _ => {}
                    }
                }
                "receiver"
            }
            _ => {
                let refuse = Pdu::with_status(
                    p.sequence_number,
                    CommandStatus::ESME_RINVBNDSTS,
                    Body::BindTransceiverResp(Default::default()),
                );
                c.send(&refuse);
                "refused"
            }
        }
    });
    let mut cfg = config(&[("split", addr)]);
    cfg.vendors[0].binds = 1;
    cfg.vendors[0].bind_type = smppgw_engine::config::VendorBindType::TransmitterReceiver;
    let gw = smppgw_engine::start(cfg).unwrap();
    wait_vendor_up(&gw);
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    let (st, id) = c.submit_dlr("15556000000", "split binds");
    assert_eq!(st, CommandStatus::ESME_ROK, "sent on the transmitter");
    let p = c.recv_deliver();
    let (tlv, r) = common::receipt_of(&p);
    assert_eq!((tlv.as_str(), r.stat), (id.as_str(), smppgw_codec::receipt::MessageState::Delivered));
    c.answer(&p, CommandStatus::ESME_ROK);
    gw.shutdown();
    gw.join();
    let mut kinds: Vec<&str> = seen.try_iter().collect();
    kinds.sort_unstable();
    assert_eq!(kinds, vec!["receiver", "transmitter"], "one of each, nothing refused");
}

#[test]
fn a_vendor_that_drops_each_bind_at_once_is_reconnected_to_with_growing_backoff() {
    // Goal: an SMSC that accepts the bind and closes the connection straight away (restarting,
    // or over its login limit) sees the reconnect interval grow to the maximum, not a reconnect
    // at the minimum interval for ever (the backoff used to start again at every accepted bind).
    let (addr, seen) = fake_smsc(|_, mut c| {
        let at = Instant::now();
        accept_bind(&mut c);
        at
    });
    let mut cfg = config(&[("flappy", addr)]);
    cfg.vendors[0].binds = 1;
    cfg.vendors[0].reconnect_backoff_min_ms = 100;
    cfg.vendors[0].reconnect_backoff_max_ms = 400;
    let gw = smppgw_engine::start(cfg).unwrap();
    // Six connections: the reconnect intervals after the first two have grown.
    let mut at: Vec<Instant> =
        (0..6).map_while(|_| seen.recv_timeout(Duration::from_secs(10)).ok()).collect();
    gw.shutdown();
    gw.join();
    at.sort();
    let gaps: Vec<u128> = at.windows(2).map(|w| w[1].duration_since(w[0]).as_millis()).collect();
    assert_eq!(gaps.len(), 5, "{gaps:?}");
    assert!(gaps.iter().skip(2).all(|&g| g >= 200), "the backoff grew past its minimum: {gaps:?}");
}

/// A fake SMSC that accepts every submit as V9 and answers cancel_sm after 1 s; the receiver
/// hears of each cancel_sm as it arrives.
fn slow_cancel_smsc() -> (SocketAddr, mpsc::Receiver<()>) {
    let (cancel_seen, cancels) = mpsc::sync_channel(16);
    let (addr, _seen) = fake_smsc(move |_, mut c| {
        accept_bind(&mut c);
        while let Some(p) = c.recv() {
            match p.body {
                Body::SubmitSm(_) => c.send(&Pdu::new(
                    p.sequence_number,
                    Body::SubmitSmResp(smppgw_codec::MessageIdResp {
                        message_id: "V9".into(),
                        tlvs: Default::default(),
                    }),
                )),
                Body::CancelSm(_) => {
                    let _ = cancel_seen.try_send(());
                    std::thread::sleep(Duration::from_millis(1_000));
                    c.send(&Pdu::new(p.sequence_number, Body::CancelSmResp));
                }
                Body::EnquireLink => c.send(&Pdu::new(p.sequence_number, Body::EnquireLinkResp)),
                Body::Unbind => c.send(&Pdu::new(p.sequence_number, Body::UnbindResp)),
                _ => {}
            }
        }
    });
    (addr, cancels)
}

/// A gateway whose one vendor is [`slow_cancel_smsc`], a customer bound to it, and a message
/// it sent to `dest`: (gateway, customer, the message's id, the vendor's cancel_sm arrivals).
fn a_message_to_cancel(dest: &str) -> (smppgw_engine::Gateway, Client, String, mpsc::Receiver<()>) {
    let (addr, cancels) = slow_cancel_smsc();
    let (gw, mut c) = one_bind_gateway(addr);
    let (st, id) = c.submit(dest, "to cancel");
    assert_eq!(st, CommandStatus::ESME_ROK);
    (gw, c, id, cancels)
}

/// A gateway with one bind to the SMSC at `addr`, and customer c1 bound as a transceiver (a
/// submit waits for the vendor bind to come up).
fn one_bind_gateway(addr: SocketAddr) -> (smppgw_engine::Gateway, Client) {
    let mut cfg = config(&[("smsc", addr)]);
    cfg.vendors[0].binds = 1;
    // The fake answers some requests late on purpose: a loaded machine must not time them out.
    cfg.vendors[0].response_timeout_ms = 10_000;
    let gw = smppgw_engine::start(cfg).unwrap();
    wait_vendor_up(&gw);
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    (gw, c)
}

/// A vendor's receipt (deliver_sm, `esm_class`) for its message `id` in state `stat`.
fn vendor_receipt(seq: u32, esm_class: u8, id: &str, stat: &str) -> Pdu {
    let text = format!(
        "id:{id} sub:001 dlvrd:000 submit date:2611251200 done date:2611251201 stat:{stat} err:000 text:x"
    );
    Pdu::new(seq, Body::DeliverSm(SubmitSm { esm_class, short_message: text.into(), ..Default::default() }))
}

/// cancel_sm of message `id` sent to `dest`.
fn cancel_pdu(seq: u32, id: &str, dest: &str) -> Pdu {
    Pdu::new(
        seq,
        Body::CancelSm(smppgw_codec::CancelSm {
            message_id: id.to_owned().into(),
            source: smppgw_codec::Address::new(1, 1, "15550001"),
            dest: smppgw_codec::Address::new(1, 1, dest.to_owned()),
            ..Default::default()
        }),
    )
}

#[test]
fn a_cancel_in_progress_at_shutdown_is_answered_before_the_unbind() {
    // Goal: shutdown while a customer's cancel_sm waits for the vendor: the customer gets the
    // cancel_sm_resp, then the unbind (the unbind used to go at once, and the answer with it).
    let (gw, mut c, id, cancels) = a_message_to_cancel("15556100000");
    let seq = c.next_seq();
    c.send(&cancel_pdu(seq, &id, "15556100000"));
    cancels.recv_timeout(Duration::from_secs(10)).expect("the cancel reached the vendor");
    gw.shutdown();
    let mut seen = Vec::new();
    while let Some(p) = c.recv() {
        seen.push((p.command_id(), p.sequence_number, p.command_status));
        if let Body::Unbind = p.body {
            c.send(&Pdu::new(p.sequence_number, Body::UnbindResp));
        }
    }
    gw.join();
    let at = |id: smppgw_codec::CommandId| seen.iter().position(|(c, _, _)| *c == id);
    let cancel_at =
        at(smppgw_codec::CommandId::CANCEL_SM_RESP).unwrap_or_else(|| panic!("answered: {seen:?}"));
    assert_eq!(seen[cancel_at].1, seq);
    assert_eq!(seen[cancel_at].2, CommandStatus::ESME_ROK, "{seen:?}");
    assert!(at(smppgw_codec::CommandId::UNBIND).is_some_and(|u| u > cancel_at), "then the unbind: {seen:?}");
}

#[test]
fn a_cancel_reusing_the_sequence_number_of_one_at_the_vendor_is_refused() {
    // Goal: a second cancel_sm with the sequence number of one the vendor has not answered yet
    // gets ESME_RSYSERR (as for a pending lookup), and the first gets its own answer: not two
    // answers under one sequence number.
    let (gw, mut c, id, cancels) = a_message_to_cancel("15556200000");
    let seq = c.next_seq();
    let cancel = cancel_pdu(seq, &id, "15556200000");
    c.send(&cancel);
    // The second once the first waits at the vendor (which answers it a second later).
    cancels.recv_timeout(Duration::from_secs(10)).expect("the first cancel reached the vendor");
    c.send(&cancel);
    let answers: Vec<CommandStatus> = (0..2).map(|_| c.recv().expect("answered").command_status).collect();
    assert_eq!(answers, vec![CommandStatus::ESME_RSYSERR, CommandStatus::ESME_ROK]);
    c.stream.set_read_timeout(Some(Duration::from_millis(800))).unwrap();
    assert!(c.try_recv().is_none(), "no third answer");
    gw.shutdown();
    gw.join();
}

#[test]
fn an_intermediate_notification_reaches_the_customer_as_one_and_the_final_receipt_as_a_receipt() {
    // Goal: a vendor's intermediate delivery notification (esm_class 0x20, a non-final state)
    // goes to the customer with esm_class 0x20, the final receipt with 0x04: a customer that
    // tells them apart by esm_class must not take ENROUTE for the end of the message.
    let (addr, _seen) = fake_smsc(|_, mut c| {
        accept_bind(&mut c);
        while let Some(p) = c.recv() {
            match p.body {
                Body::SubmitSm(_) => {
                    let resp = smppgw_codec::MessageIdResp { message_id: "V9".into(), ..Default::default() };
                    c.send(&Pdu::new(p.sequence_number, Body::SubmitSmResp(resp)));
                    c.send(&vendor_receipt(20, 0x20, "V9", "ENROUTE"));
                    c.send(&vendor_receipt(21, 0x04, "V9", "DELIVRD"));
                }
                Body::EnquireLink => c.send(&Pdu::new(p.sequence_number, Body::EnquireLinkResp)),
                Body::Unbind => c.send(&Pdu::new(p.sequence_number, Body::UnbindResp)),
                _ => {}
            }
        }
    });
    let (gw, mut c) = one_bind_gateway(addr);
    let (seq, mut p) = c.submit_pdu("15557774444", "steps");
    if let Body::SubmitSm(s) = &mut p.body {
        s.registered_delivery = 0x11; // the final receipt and intermediate notifications
    }
    c.send(&p);
    let r = c.recv_resp(seq);
    assert_eq!(r.command_status, CommandStatus::ESME_ROK);
    let Body::SubmitSmResp(m) = r.body else { panic!("submit_sm_resp: {r:?}") };
    let id = String::from_utf8_lossy(&m.message_id).into_owned();
    let mut got = Vec::new();
    for _ in 0..2 {
        let p = c.recv_deliver();
        let (rid, r) = common::receipt_of(&p);
        let Body::DeliverSm(d) = &p.body else { panic!("deliver_sm") };
        got.push((rid, d.esm_class, r.stat));
        c.answer(&p, CommandStatus::ESME_ROK);
    }
    use smppgw_codec::receipt::MessageState;
    assert_eq!(
        got,
        vec![(id.clone(), 0x20, MessageState::Enroute), (id, 0x04, MessageState::Delivered)],
        "the notification, then the receipt"
    );
    assert_eq!(c.unbind(), CommandStatus::ESME_ROK);
    gw.shutdown();
    gw.join();
}

/// A receipt as the customer got it: (our id, esm_class, state).
type Delivered = (String, u8, MessageState);

/// Every receipt and notification the gateway delivers to `c` until it has been quiet for
/// `quiet` (each answered): (our id, esm_class, state), sorted; and the submit_sm_resps read
/// meanwhile, by sequence number.
fn deliveries_until_quiet(c: &mut Client, quiet: Duration) -> (Vec<Delivered>, Vec<(u32, Pdu)>) {
    c.stream.set_read_timeout(Some(quiet)).unwrap();
    let (mut got, mut resps) = (Vec::new(), Vec::new());
    while let Some(p) = c.try_recv() {
        match &p.body {
            Body::DeliverSm(d) => {
                let esm = d.esm_class;
                let (id, r) = common::receipt_of(&p);
                got.push((id, esm, r.stat));
                c.answer(&p, CommandStatus::ESME_ROK);
            }
            Body::EnquireLink => c.send(&Pdu::new(p.sequence_number, Body::EnquireLinkResp)),
            Body::SubmitSmResp(_) => resps.push((p.sequence_number, p)),
            _ => {}
        }
    }
    c.stream.set_read_timeout(None).unwrap();
    got.sort_by_key(|(id, esm, state)| (id.clone(), *esm, state.as_u8()));
    resps.sort_by_key(|(seq, _)| *seq);
    (got, resps)
}

#[test]
fn receipts_reach_the_customer_as_its_registered_delivery_asks() {
    // Goal: the vendor sends an intermediate notification and a final receipt for every
    // message; the customer gets what each submit's registered_delivery asked for: 0x10 the
    // notification only (it used to get nothing), 0x02 the final receipt of a failure only (it
    // used to get a DELIVRD one too), 0x11 both, 0 none.
    let (addr, _seen) = fake_smsc(|_, mut c| {
        accept_bind(&mut c);
        let mut n = 0;
        serve(&mut c, |c, p| {
            if let Body::SubmitSm(s) = &p.body {
                n += 1;
                let id = format!("R{n}");
                let fin = if s.dest.addr.ends_with(b"2") { "UNDELIV" } else { "DELIVRD" };
                c.send(&accepted_as(&p, &id));
                c.send(&vendor_receipt(100 + 2 * n, 0x20, &id, "ENROUTE"));
                c.send(&vendor_receipt(101 + 2 * n, 0x04, &id, fin));
            }
        });
    });
    let (gw, mut c) = one_bind_gateway(addr);
    // Sent at once, and the answers read with the receipts (a receipt may come before the next
    // submit's answer).
    let asks = [
        ("15550000001", 0x10),
        ("15550000011", 0x02),
        ("15550000012", 0x02),
        ("15550000021", 0x11),
        ("15550000031", 0),
    ];
    for (dest, rd) in asks {
        let (_, mut p) = c.submit_pdu(dest, "asks");
        if let Body::SubmitSm(s) = &mut p.body {
            s.registered_delivery = rd;
        }
        c.send(&p);
    }
    let (got, resps) = deliveries_until_quiet(&mut c, Duration::from_millis(1_500));
    let ids: Vec<String> = resps
        .iter()
        .map(|(_, r)| {
            assert_eq!(r.command_status, CommandStatus::ESME_ROK);
            let Body::SubmitSmResp(m) = &r.body else { unreachable!() };
            String::from_utf8_lossy(&m.message_id).into_owned()
        })
        .collect();
    assert_eq!(ids.len(), asks.len(), "every submit answered");
    let mut want = vec![
        (ids[0].clone(), 0x20, MessageState::Enroute),
        (ids[2].clone(), 0x04, MessageState::Undeliverable),
        (ids[3].clone(), 0x20, MessageState::Enroute),
        (ids[3].clone(), 0x04, MessageState::Delivered),
    ];
    want.sort_by_key(|(id, esm, state)| (id.clone(), *esm, state.as_u8()));
    assert_eq!(got, want);
    assert_eq!(c.unbind(), CommandStatus::ESME_ROK);
    gw.shutdown();
    gw.join();
}

#[test]
fn a_vendors_deleted_receipt_after_a_cancel_reaches_the_customer_once() {
    // Goal: after a cancel_sm the vendor accepted, its DELETED receipt reaches the customer,
    // and a repeat of it (the vendor missed our deliver_sm_resp) does not: the DELETED the
    // cancel set let every repeat through.
    let (addr, _seen) = fake_smsc(|_, mut c| {
        accept_bind(&mut c);
        serve(&mut c, |c, p| match p.body {
            Body::SubmitSm(_) => c.send(&accepted_as(&p, "X1")),
            Body::CancelSm(_) => {
                c.send(&Pdu::new(p.sequence_number, Body::CancelSmResp));
                c.send(&vendor_receipt(40, 0x04, "X1", "DELETED"));
                c.send(&vendor_receipt(41, 0x04, "X1", "DELETED"));
            }
            _ => {}
        });
    });
    let (gw, mut c) = one_bind_gateway(addr);
    let (st, id) = c.submit_dlr("15557779999", "to cancel");
    assert_eq!(st, CommandStatus::ESME_ROK);
    // The record is stored just after the answer: the cancel may have to wait for it.
    assert!(wait_for(Duration::from_secs(5), || {
        let seq = c.next_seq();
        c.send(&cancel_pdu(seq, &id, "15557779999"));
        c.recv_resp(seq).command_status == CommandStatus::ESME_ROK
    }));
    let (got, _) = deliveries_until_quiet(&mut c, Duration::from_millis(1_500));
    assert_eq!(got, vec![(id, 0x04, MessageState::Deleted)]);
    assert_eq!(c.unbind(), CommandStatus::ESME_ROK);
    gw.shutdown();
    gw.join();
}

#[test]
fn a_replace_that_asks_for_a_receipt_gets_the_vendors_receipt_delivered() {
    // Goal: a message submitted without registered_delivery, then replaced (accepted by the
    // vendor) with registered_delivery 1: the vendor's receipt reaches the customer. The record
    // kept "no receipt wanted" and the receipt was dropped.
    let (addr, _seen) = fake_smsc(|_, mut c| {
        accept_bind(&mut c);
        while let Some(p) = c.recv() {
            match p.body {
                Body::SubmitSm(_) => {
                    let resp = smppgw_codec::MessageIdResp { message_id: "V5".into(), ..Default::default() };
                    c.send(&Pdu::new(p.sequence_number, Body::SubmitSmResp(resp)));
                }
                Body::ReplaceSm(r) => {
                    assert_eq!(&r.message_id[..], b"V5", "the vendor's id");
                    c.send(&Pdu::new(p.sequence_number, Body::ReplaceSmResp));
                    c.send(&vendor_receipt(30, 0x04, "V5", "DELIVRD"));
                }
                Body::EnquireLink => c.send(&Pdu::new(p.sequence_number, Body::EnquireLinkResp)),
                Body::Unbind => c.send(&Pdu::new(p.sequence_number, Body::UnbindResp)),
                _ => {}
            }
        }
    });
    let (gw, mut c) = one_bind_gateway(addr);
    let (st, id) = c.submit("15557775555", "no receipt asked");
    assert_eq!(st, CommandStatus::ESME_ROK);
    let mut replaced = CommandStatus::ESME_RSYSERR;
    // The record is stored just after the answer: the replace may have to wait for it.
    assert!(wait_for(Duration::from_secs(5), || {
        let seq = c.next_seq();
        let r = smppgw_codec::ReplaceSm {
            message_id: id.clone().into(),
            source: smppgw_codec::Address::new(1, 1, "15550001"),
            registered_delivery: 1,
            short_message: "now with a receipt".into(),
            ..Default::default()
        };
        c.send(&Pdu::new(seq, Body::ReplaceSm(r)));
        replaced = c.recv_resp(seq).command_status;
        replaced == CommandStatus::ESME_ROK
    }));
    let p = c.recv_deliver();
    let (rid, r) = common::receipt_of(&p);
    assert_eq!((rid, r.stat), (id, smppgw_codec::receipt::MessageState::Delivered));
    c.answer(&p, CommandStatus::ESME_ROK);
    assert_eq!(c.unbind(), CommandStatus::ESME_ROK);
    gw.shutdown();
    gw.join();
}

#[test]
fn a_bind_slowed_by_throttling_stays_slowed_across_a_reconnect() {
    // Goal: a vendor answers ESME_RTHROTTLED and then drops the connection (overloaded SMSCs do
    // both): the bind that comes back keeps the slowed pace and recovers from it, instead of
    // meeting the vendor at full speed again.
    let (addr, _seen) = fake_smsc(|n, mut c| {
        accept_bind(&mut c);
        while let Some(p) = c.recv() {
            match p.body {
                Body::SubmitSm(_) if n == 0 => {
                    let resp = Pdu::with_status(
                        p.sequence_number,
                        CommandStatus::ESME_RTHROTTLED,
                        Body::SubmitSmResp(Default::default()),
                    );
                    c.send(&resp);
                    return; // and the connection drops
                }
                Body::SubmitSm(_) => {
                    let resp = smppgw_codec::MessageIdResp { message_id: "V1".into(), ..Default::default() };
                    c.send(&Pdu::new(p.sequence_number, Body::SubmitSmResp(resp)));
                }
                Body::EnquireLink => c.send(&Pdu::new(p.sequence_number, Body::EnquireLinkResp)),
                Body::Unbind => c.send(&Pdu::new(p.sequence_number, Body::UnbindResp)),
                _ => {}
            }
        }
    });
    let mut cfg = config(&[("smsc", addr)]);
    cfg.vendors[0].binds = 1;
    cfg.vendors[0].throughput = 100;
    let gw = smppgw_engine::start(cfg).unwrap();
    wait_vendor_up(&gw);
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert_eq!(c.submit("15557776666", "throttled").0, CommandStatus::ESME_RTHROTTLED);
    let slot = || gw.control().current().vendors[0].as_ref().unwrap().slots[0].clone();
    assert!(
        wait_for(Duration::from_secs(5), || slot().reconnects.load(std::sync::atomic::Ordering::Relaxed)
            >= 1
            && slot().up.load(std::sync::atomic::Ordering::Relaxed)),
        "bound again"
    );
    assert_eq!(c.submit("15557776667", "after the reconnect").0, CommandStatus::ESME_ROK);
    assert!(slot().slowed.load(std::sync::atomic::Ordering::Relaxed), "still slowed after the reconnect");
    gw.shutdown();
    gw.join();
}

#[test]
fn a_message_the_vendor_accepted_without_an_id_cannot_be_cancelled_or_replaced_by_address() {
    // Goal: a vendor that accepts a submit with an empty message_id leaves the gateway nothing
    // to name the message by. A cancel_sm forwarded with an empty id would cancel every pending
    // message between those addresses (SMPP 3.4, 4.9.1), other customers' included: the customer
    // gets ESME_RCANCELFAIL / ESME_RREPLACEFAIL and the vendor sees neither operation.
    let (addr, seen) = fake_smsc(|_, mut c| {
        accept_bind(&mut c);
        let mut ops = Vec::new();
        serve(&mut c, |c, p| match p.body {
            Body::SubmitSm(_) => c.send(&accepted_as(&p, "")),
            Body::CancelSm(_) | Body::ReplaceSm(_) => ops.push(p.command_id()),
            _ => {}
        });
        ops
    });
    let (gw, mut c) = one_bind_gateway(addr);
    let (st, id) = c.submit_dlr("15557778888", "no vendor id");
    assert_eq!(st, CommandStatus::ESME_ROK);
    let src = smppgw_codec::Address::new(1, 1, "15550001");
    let query = |c: &mut Client| {
        let seq = c.next_seq();
        let q = smppgw_codec::QuerySm { message_id: id.clone().into(), source: src.clone() };
        c.send(&Pdu::new(seq, Body::QuerySm(q)));
        c.recv_resp(seq).command_status
    };
    assert!(wait_for(Duration::from_secs(5), || query(&mut c) == CommandStatus::ESME_ROK), "stored");
    let seq = c.next_seq();
    let x = smppgw_codec::CancelSm {
        message_id: id.clone().into(),
        source: src.clone(),
        dest: smppgw_codec::Address::new(1, 1, "15557778888"),
        ..Default::default()
    };
    c.send(&Pdu::new(seq, Body::CancelSm(x)));
    assert_eq!(c.recv_resp(seq).command_status, CommandStatus::ESME_RCANCELFAIL);
    let seq = c.next_seq();
    let r = smppgw_codec::ReplaceSm {
        message_id: id.clone().into(),
        source: src,
        short_message: "new".into(),
        ..Default::default()
    };
    c.send(&Pdu::new(seq, Body::ReplaceSm(r)));
    assert_eq!(c.recv_resp(seq).command_status, CommandStatus::ESME_RREPLACEFAIL);
    assert_eq!(c.unbind(), CommandStatus::ESME_ROK);
    gw.shutdown();
    gw.join();
    let ops = seen.recv_timeout(Duration::from_secs(5)).expect("the fake SMSC's connection ended");
    assert!(ops.is_empty(), "nothing reached the vendor: {ops:?}");
}

/// A gateway whose one vendor is the fake SMSC at `addr`, customer c1 (receipt_parts = "last")
/// bound as a transceiver, and a two-part message (UDH) it sent to `dest` with
/// `registered_delivery`: (gateway, customer, the parts' ids in order).
fn two_parts_sent_last_asking(
    addr: SocketAddr,
    dest: &str,
    registered_delivery: u8,
) -> (smppgw_engine::Gateway, Client, Vec<String>) {
    let mut cfg = config(&[("smsc", addr)]);
    cfg.vendors[0].binds = 1;
    cfg.customers[0].receipt_parts = smppgw_engine::config::ReceiptParts::Last;
    let gw = smppgw_engine::start(cfg).unwrap();
    wait_vendor_up(&gw);
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    let mut ids = Vec::new();
    for part in 1..=2u8 {
        let (seq, mut p) = c.submit_pdu(dest, "");
        let Body::SubmitSm(s) = &mut p.body else { unreachable!() };
        s.registered_delivery = registered_delivery;
        s.esm_class |= 0x40;
        s.short_message = [&[5u8, 0x00, 3, 0x51, 2, part][..], b"part"].concat().into();
        c.send(&p);
        let r = c.recv_resp(seq);
        let Body::SubmitSmResp(m) = r.body else { panic!("submit_sm_resp: {r:?}") };
        ids.push(String::from_utf8_lossy(&m.message_id).into_owned());
    }
    (gw, c, ids)
}

/// query_sm of our message `id`: (message_state, error_code).
fn query_state(c: &mut Client, id: &str) -> (u8, u8) {
    let seq = c.next_seq();
    let q = smppgw_codec::QuerySm {
        message_id: id.to_owned().into(),
        source: smppgw_codec::Address::new(1, 1, "15550001"),
    };
    c.send(&Pdu::new(seq, Body::QuerySm(q)));
    let r = c.recv_resp(seq);
    let Body::QuerySmResp(q) = r.body else { panic!("query_sm_resp: {r:?}") };
    (q.message_state, q.error_code)
}

#[test]
fn an_earlier_part_keeps_its_final_state_and_error_after_a_late_intermediate_for_the_last_part() {
    // Goal: under receipt_parts = "last" the earlier parts take their state from the last
    // part's receipt, with its error code (query_sm on part 1 of an undeliverable message says
    // UNDELIV and the network's error, as its derived receipt does), and a late intermediate
    // notification for the last part does not take that final state back.
    let (addr, _seen) = fake_smsc(|_, mut c| {
        accept_bind(&mut c);
        let mut n = 0;
        serve(&mut c, |c, p| {
            if let Body::SubmitSm(_) = p.body {
                n += 1;
                c.send(&accepted_as(&p, &format!("P{n}")));
                if n == 2 {
                    for (esm, stat) in [(0x04, "UNDELIV"), (0x20, "ENROUTE")] {
                        let text = format!(
                            "id:P2 sub:001 dlvrd:000 submit date:2611251200 done date:2611251201 stat:{stat} err:005 text:x"
                        );
                        let r = SubmitSm { esm_class: esm, short_message: text.into(), ..Default::default() };
                        c.send(&Pdu::new(1000 + n, Body::DeliverSm(r)));
                    }
                }
            }
        });
    });
    let (gw, mut c, ids) = two_parts_sent_last_asking(addr, "15557774444", 1);
    // The final receipts (part 2's own, part 1's derived); the late intermediate for part 2
    // is not delivered after them.
    let (got, _) = deliveries_until_quiet(&mut c, Duration::from_millis(1_000));
    let mut want = vec![(ids[0].as_str(), 0x04), (ids[1].as_str(), 0x04)];
    want.sort();
    assert_eq!(got.iter().map(|(id, esm, _)| (id.as_str(), *esm)).collect::<Vec<_>>(), want, "{got:?}");
    let query = query_state;
    let undeliv = (smppgw_codec::receipt::MessageState::Undeliverable.as_u8(), 5);
    assert!(wait_for(Duration::from_secs(2), || query(&mut c, &ids[1]) == undeliv), "the last part is final");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(query(&mut c, &ids[0]), undeliv, "part 1: the last part's final state and its error");
    assert_eq!(c.unbind(), CommandStatus::ESME_ROK);
    gw.shutdown();
    gw.join();
}

#[test]
fn earlier_parts_take_the_last_parts_state_when_the_customer_asked_not_to_be_told_it() {
    // Goal: under receipt_parts = "last", a customer asking for failure receipts only (0x02)
    // whose message is delivered gets no receipt, and query_sm on its first part says DELIVERED
    // as on its last part: the parts' states used to be updated only along with a delivery.
    let (addr, _seen) = fake_smsc(|_, mut c| {
        accept_bind(&mut c);
        let mut n = 0;
        serve(&mut c, |c, p| {
            if let Body::SubmitSm(_) = p.body {
                n += 1;
                c.send(&accepted_as(&p, &format!("Q{n}")));
                if n == 2 {
                    c.send(&vendor_receipt(500, 0x04, "Q2", "DELIVRD"));
                }
            }
        });
    });
    let (gw, mut c, ids) = two_parts_sent_last_asking(addr, "15557774445", 0x02);
    let query = |c: &mut Client, id: &str| query_state(c, id).0;
    let delivered = MessageState::Delivered.as_u8();
    assert!(wait_for(Duration::from_secs(3), || query(&mut c, &ids[1]) == delivered), "the last part");
    assert!(wait_for(Duration::from_secs(3), || query(&mut c, &ids[0]) == delivered), "and the first");
    let (got, _) = deliveries_until_quiet(&mut c, Duration::from_millis(500));
    assert!(got.is_empty(), "no receipt for a delivered message: {got:?}");
    assert_eq!(c.unbind(), CommandStatus::ESME_ROK);
    gw.shutdown();
    gw.join();
}

#[test]
fn a_receipt_the_vendor_sent_as_tlvs_only_reaches_the_customer_with_every_appendix_b_field() {
    // Goal: a vendor whose receipts carry only receipted_message_id and message_state (no
    // text) still gives the customer an Appendix B text with every field: our id, sub, dlvrd,
    // submit date, done date, stat, err (from network_error_code) and text.
    let (addr, _seen) = fake_smsc(|_, mut c| {
        accept_bind(&mut c);
        serve(&mut c, |c, p| {
            if let Body::SubmitSm(_) = p.body {
                c.send(&accepted_as(&p, "T1"));
                let tlvs = smppgw_codec::Tlvs::builder()
                    .cstr(smppgw_codec::tag::RECEIPTED_MESSAGE_ID, b"T1")
                    .u8(smppgw_codec::tag::MESSAGE_STATE, 5)
                    .bytes(smppgw_codec::tag::NETWORK_ERROR_CODE, &[3, 0, 34])
                    .build();
                let r = SubmitSm { esm_class: 0x04, tlvs, ..Default::default() };
                c.send(&Pdu::new(900, Body::DeliverSm(r)));
            }
        });
    });
    let (gw, mut c) = one_bind_gateway(addr);
    let (st, id) = c.submit_dlr("15557776666", "tlv only");
    assert_eq!(st, CommandStatus::ESME_ROK);
    let p = c.recv_deliver();
    let Body::DeliverSm(d) = &p.body else { panic!("deliver_sm: {p:?}") };
    let text = String::from_utf8_lossy(&d.short_message).into_owned();
    let r = smppgw_codec::receipt::Receipt::parse_bytes(&d.short_message).expect("an Appendix B text");
    assert_eq!(r.id.as_str(), id, "{text}");
    assert_eq!((r.sub, r.dlvrd), (Some(1), Some(0)), "{text}");
    assert!(r.submit_date.is_some() && r.done_date.is_some(), "{text}");
    assert_eq!(r.stat, smppgw_codec::receipt::MessageState::Undeliverable, "{text}");
    assert_eq!(r.err, Some(smppgw_codec::receipt::ReceiptErr::Code(34)), "{text}");
    assert!(text.ends_with(" text:"), "{text}");
    c.answer(&p, CommandStatus::ESME_ROK);
    assert_eq!(c.unbind(), CommandStatus::ESME_ROK);
    gw.shutdown();
    gw.join();
}

#[test]
fn a_vendor_given_by_host_name_is_bound() {
    // Goal: a vendor configured by name (resolved off the executor, every address tried in
    // turn: localhost may give ::1 before 127.0.0.1) is bound and takes messages.
    let v = sim(|_| {});
    let mut cfg = config(&[("named", v.local_addr())]);
    cfg.vendors[0].host = "localhost".into();
    let gw = smppgw_engine::start(cfg).unwrap();
    assert!(wait_for(Duration::from_secs(10), || v.stats().binds_current >= 2), "bound by name");
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert_eq!(c.submit("15557770001", "by name").0, CommandStatus::ESME_ROK);
    gw.shutdown();
    gw.join();
}

#[test]
fn a_vendor_that_lost_the_bind_and_answers_not_bound_is_bound_again_and_the_message_goes() {
    // Goal: an SMSC that lost our session but still answers refuses a submit with
    // ESME_RINVBNDSTS: the gateway binds again and the message is delivered through the new
    // bind or another vendor; the customer never sees the vendor's "not bound" (which would
    // tell it that its own bind is wrong).
    let (addr, seen) = fake_smsc(|n, mut c| {
        accept_bind(&mut c);
        let mut accepted = 0;
        serve(&mut c, |c, p| match p.body {
            Body::SubmitSm(_) if n == 0 => {
                let status = CommandStatus::ESME_RINVBNDSTS;
                c.send(&Pdu::with_status(p.sequence_number, status, Body::SubmitSmResp(Default::default())));
            }
            Body::SubmitSm(_) => {
                accepted += 1;
                c.send(&accepted_as(&p, "B2"));
            }
            _ => {}
        });
        (n, accepted)
    });
    let mut cfg = config(&[("lost", addr)]);
    cfg.vendors[0].binds = 1;
    cfg.vendors[0].reconnect_backoff_min_ms = 50;
    let gw = smppgw_engine::start(cfg).unwrap();
    wait_vendor_up(&gw);
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    let (st, _) = c.submit("15557779999", "first, refused as not bound");
    assert_ne!(st, CommandStatus::ESME_RINVBNDSTS, "the vendor's status is not the customer's");
    assert!(
        wait_for(Duration::from_secs(10), || {
            let (st, _) = c.submit("15557779998", "after the rebind");
            st == CommandStatus::ESME_ROK
        }),
        "bound again and taking messages"
    );
    let first = seen.recv_timeout(Duration::from_secs(10)).expect("the lost bind was closed");
    assert_eq!(first, (0, 0), "the first connection, which took nothing, was given up");
    gw.shutdown();
    gw.join();
}

#[test]
fn a_final_receipt_the_vendor_sends_twice_reaches_the_customer_once() {
    // Goal: an SMSC that sends a final receipt again (it missed our deliver_sm_resp, say, and
    // resends after a reconnect) does not give the customer a duplicate: the repeat is matched
    // and counted, not delivered.
    let (addr, _seen) = fake_smsc(|_, mut c| {
        accept_bind(&mut c);
        serve(&mut c, |c, p| {
            if let Body::SubmitSm(_) = p.body {
                c.send(&accepted_as(&p, "R1"));
                c.send(&vendor_receipt(31, 0x04, "R1", "DELIVRD"));
                c.send(&vendor_receipt(32, 0x04, "R1", "DELIVRD"));
            }
        });
    });
    let (gw, mut c) = one_bind_gateway(addr);
    let (st, id) = c.submit_dlr("15557771212", "receipt sent twice");
    assert_eq!(st, CommandStatus::ESME_ROK);
    let p = c.recv_deliver();
    assert_eq!(common::receipt_of(&p).0, id);
    c.answer(&p, CommandStatus::ESME_ROK);
    assert!(
        wait_for(Duration::from_secs(5), || gw
            .metrics
            .receipts_repeated
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1),
        "the repeat was seen"
    );
    c.stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let extra = std::iter::from_fn(|| c.try_recv()).find(|p| matches!(p.body, Body::DeliverSm(_)));
    assert!(extra.is_none(), "delivered once: {extra:?}");
    assert_eq!(c.unbind(), CommandStatus::ESME_ROK);
    gw.shutdown();
    gw.join();
}

#[test]
fn a_data_sm_mo_from_a_long_address_reaches_the_customer_as_data_sm() {
    // Goal: an MO the vendor sends as data_sm from an address longer than a deliver_sm holds
    // (data_sm allows 65 characters, deliver_sm 20) reaches the customer whole, as data_sm:
    // written into a deliver_sm it broke that PDU's limit, and strict customers refused it.
    let long = "alerts.example.com.notify";
    let (addr, _done) = fake_smsc(move |_, mut c| {
        accept_bind(&mut c);
        let mo = smppgw_codec::DataSm {
            source: smppgw_codec::Address::new(5, 0, long),
            dest: smppgw_codec::Address::new(1, 1, "12345"),
            tlvs: smppgw_codec::Tlvs::builder().bytes(smppgw_codec::tag::MESSAGE_PAYLOAD, b"HELLO").build(),
            ..Default::default()
        };
        c.send(&Pdu::new(7, Body::DataSm(mo)));
        serve(&mut c, |_, _| {});
    });
    let mut cfg = config(&[("smsc", addr)]);
    cfg.vendors[0].binds = 1;
    cfg.customers[1].number_ranges = vec!["123".into()];
    let gw = smppgw_engine::start(cfg).unwrap();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("rx", "c2", "pw"), CommandStatus::ESME_ROK);
    let p = c.recv_deliver();
    let Body::DataSm(d) = &p.body else { panic!("data_sm: {p:?}") };
    assert_eq!(&d.source.addr[..], long.as_bytes());
    assert_eq!(&d.tlvs.message_payload().unwrap_or_default()[..], b"HELLO");
    c.answer(&p, CommandStatus::ESME_ROK);
    gw.shutdown();
    gw.join();
}

#[test]
fn a_vendor_link_that_went_silent_is_found_by_its_first_timeout_and_bound_again() {
    // Goal: a vendor connection that a NAT or firewall dropped without a reset answers nothing.
    // Its first submit times out (ESME_RSUBMITFAIL, the documented unknown outcome); nothing
    // more is sent into it; an enquire_link asks at once (not after the 30 s keepalive
    // interval) and, unanswered, closes the bind, which is made again and takes messages.
    // Before, every submit the dead link took until the keepalive found it (here 30 s) was one
    // more ESME_RSUBMITFAIL.
    let (addr, seen) = fake_smsc(|n, mut c| {
        accept_bind(&mut c);
        if n > 0 {
            serve(&mut c, |c, p| {
                if matches!(p.body, Body::SubmitSm(_)) {
                    c.send(&accepted_as(&p, "OK1"));
                }
            });
            return (n, 0, 0);
        }
        // The dead link: reads everything, answers nothing, until the gateway closes it.
        let (mut submits, mut enquires, mut chunk) = (0, 0, [0u8; 4096]);
        let until = Instant::now() + Duration::from_secs(25);
        while Instant::now() < until {
            match c.s.read(&mut chunk) {
                Ok(0) => break,
                Ok(k) => c.buf.extend_from_slice(&chunk[..k]),
                Err(e)
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                {
                    continue;
                }
                Err(_) => break,
            }
            while let Ok(Some(p)) = Decoder::default().decode(&mut c.buf) {
                match p.body {
                    Body::SubmitSm(_) => submits += 1,
                    Body::EnquireLink => enquires += 1,
                    _ => {}
                }
            }
        }
        (n, submits, enquires)
    });
    let mut cfg = config(&[("silent", addr)]);
    cfg.vendors[0].binds = 1;
    cfg.vendors[0].response_timeout_ms = 500;
    cfg.vendors[0].enquire_link_interval_ms = 30_000;
    cfg.vendors[0].reconnect_backoff_min_ms = 50;
    let gw = smppgw_engine::start(cfg).unwrap();
    wait_vendor_up(&gw);
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert_eq!(c.submit("15557770000", "into the dead link").0, CommandStatus::ESME_RSUBMITFAIL);
    let mut failed = 0;
    assert!(
        wait_for(Duration::from_secs(8), || {
            let (st, _) = c.submit("15557770001", "after the rebind");
            failed += u32::from(st == CommandStatus::ESME_RSUBMITFAIL);
            st == CommandStatus::ESME_ROK
        }),
        "bound again and taking messages well before the keepalive interval"
    );
    assert_eq!(failed, 0, "no submit after the first went into the dead link");
    let (n, submits, enquires) =
        seen.recv_timeout(Duration::from_secs(10)).expect("the dead link was closed");
    assert_eq!((n, submits, enquires), (0, 1, 1), "one submit, then one enquire_link, then closed");
    gw.shutdown();
    gw.join();
}

#[test]
fn a_message_refused_by_a_bind_the_vendor_lost_goes_to_the_vendors_other_bind() {
    // Goal: on a route with one vendor, a bind whose session the vendor lost (it answers
    // ESME_RINVBNDSTS) hands its message to the vendor's other bind, which accepts it: the
    // customer gets ESME_ROK. Before, the vendor counted as tried and the customer got
    // ESME_RSYSERR although the vendor's healthy bind could take the message.
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    let (refused, accepted) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let (r, a) = (refused.clone(), accepted.clone());
    let (addr, _seen) = fake_smsc(move |n, mut c| {
        accept_bind(&mut c);
        serve(&mut c, |c, p| {
            if !matches!(p.body, Body::SubmitSm(_)) {
                return;
            }
            if n == 0 {
                r.fetch_add(1, Ordering::SeqCst);
                let status = CommandStatus::ESME_RINVBNDSTS;
                c.send(&Pdu::with_status(p.sequence_number, status, Body::SubmitSmResp(Default::default())));
            } else {
                a.fetch_add(1, Ordering::SeqCst);
                c.send(&accepted_as(&p, "B2"));
            }
        });
    });
    let mut cfg = config(&[("one", addr)]);
    cfg.vendors[0].binds = 2;
    // A small window: messages sent together spread over both binds (and the healthy bind's
    // queue, four windows, still holds all of them).
    cfg.vendors[0].window = 2;
    // The lost bind is made again only after the test: every message must find the other.
    cfg.vendors[0].reconnect_backoff_min_ms = 60_000;
    cfg.vendors[0].reconnect_backoff_max_ms = 60_000;
    let gw = smppgw_engine::start(cfg).unwrap();
    let both_up = || {
        let snap = gw.control().current();
        snap.vendors[0]
            .as_ref()
            .is_some_and(|v| v.slots.iter().all(|s| s.up.load(std::sync::atomic::Ordering::Relaxed)))
    };
    assert!(wait_for(Duration::from_secs(10), both_up), "both binds up");
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    let mut sent = 0;
    // Until the lost bind has been offered one (in the first batch, nearly always).
    for batch in 0..10 {
        let mut seqs: std::collections::HashSet<u32> = (0..6)
            .map(|i| {
                let (seq, p) = c.submit_pdu(&format!("15557779{batch}{i:02}"), "one vendor, two binds");
                c.send(&p);
                seq
            })
            .collect();
        sent += seqs.len() as u32;
        // Answered in any order: the one handed to the other bind comes last.
        while !seqs.is_empty() {
            let p = c.recv().expect("answers");
            if p.command_id().is_response() && seqs.remove(&p.sequence_number) {
                assert_eq!(p.command_status, CommandStatus::ESME_ROK, "message {}", p.sequence_number);
            }
        }
        if refused.load(Ordering::SeqCst) > 0 {
            break;
        }
    }
    assert!(refused.load(Ordering::SeqCst) > 0, "the lost bind was offered a message");
    assert_eq!(accepted.load(Ordering::SeqCst), sent, "the other bind took every one");
    gw.shutdown();
    gw.join();
}

/// What a connection of [`answering_smsc`] saw.
#[derive(Debug)]
enum Seen {
    /// A PDU the gateway sent (already answered when it asks for an answer).
    Pdu(Pdu),
    /// The gateway closed the connection.
    Closed,
}

/// What the connections of an [`answering_smsc`] read: the connection's number, what it saw and
/// when.
type SeenRx = mpsc::Receiver<(usize, Seen, Instant)>;

/// A fake SMSC that answers as SMSCs do, at once: every bind, enquire_link and unbind, and each
/// submit_sm accepted under the id `R<n>` (n counting from 1 over all its connections). Each
/// connection the gateway makes is served on a thread of its own; the first receiver hands the
/// test, in the order they are made, a sender for PDUs to send on each (a receipt); what each
/// reads comes back on the second with the connection's number and when it was read.
fn answering_smsc() -> (SocketAddr, mpsc::Receiver<mpsc::SyncSender<Pdu>>, SeenRx) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Far more than any test makes.
    let (conns_tx, conns) = mpsc::sync_channel(16);
    let (seen_tx, seen) = mpsc::sync_channel(1024);
    let ids = Arc::new(AtomicU32::new(0));
    std::thread::spawn(move || {
        for (n, s) in listener.incoming().enumerate() {
            let Ok(mut s) = s else { return };
            let (to_send, outbox) = mpsc::sync_channel::<Pdu>(16);
            let _ = conns_tx.try_send(to_send);
            let (seen_tx, ids) = (seen_tx.clone(), ids.clone());
            std::thread::spawn(move || {
                // Short reads, so that what the test hands it goes out within moments.
                s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
                let mut buf = BytesMut::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Ok(p) = outbox.try_recv() {
                        let _ = s.write_all(&p.to_bytes());
                    }
                    match s.read(&mut chunk) {
                        Ok(0) => break,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) =>
                        {
                            continue;
                        }
                        Err(_) => break,
                    }
                    while let Ok(Some(p)) = Decoder::default().decode(&mut buf) {
                        let seq = p.sequence_number;
                        let answer = match &p.body {
                            Body::BindTransceiver(_) => Some(Body::BindTransceiverResp(Default::default())),
                            Body::BindTransmitter(_) => Some(Body::BindTransmitterResp(Default::default())),
                            Body::BindReceiver(_) => Some(Body::BindReceiverResp(Default::default())),
                            Body::EnquireLink => Some(Body::EnquireLinkResp),
                            Body::Unbind => Some(Body::UnbindResp),
                            Body::SubmitSm(_) => {
                                let id = format!("R{}", ids.fetch_add(1, Ordering::SeqCst) + 1);
                                Some(accepted_as(&p, &id).body)
                            }
                            _ => None,
                        };
                        if let Some(body) = answer {
                            let _ = s.write_all(&Pdu::new(seq, body).to_bytes());
                        }
                        let _ = seen_tx.try_send((n, Seen::Pdu(p), Instant::now()));
                    }
                }
                let _ = seen_tx.try_send((n, Seen::Closed, Instant::now()));
            });
        }
    });
    (addr, conns, seen)
}

/// What the gateway sent on each connection of an [`answering_smsc`] so far, kept in order.
#[derive(Default)]
struct Log(Vec<(usize, Seen, Instant)>);

impl Log {
    /// Takes in what has come, waiting up to `wait` for `until` to hold.
    fn until(&mut self, seen: &SeenRx, wait: Duration, until: impl Fn(&Log) -> bool) -> bool {
        let end = Instant::now() + wait;
        loop {
            if until(self) {
                return true;
            }
            let left = end.saturating_duration_since(Instant::now());
            match seen.recv_timeout(left.min(Duration::from_millis(50))) {
                Ok(got) => self.0.push(got),
                Err(_) if left.is_zero() => return until(self),
                Err(_) => {}
            }
        }
    }

    /// The connection whose bind matched `is_bind`.
    fn conn(&self, is_bind: impl Fn(&Body) -> bool) -> Option<usize> {
        self.0.iter().find_map(|(n, s, _)| matches!(s, Seen::Pdu(p) if is_bind(&p.body)).then_some(*n))
    }

    /// How many PDUs matching `f` the connections saw, all together.
    fn count(&self, f: impl Fn(&Body) -> bool) -> usize {
        self.0.iter().filter(|(_, s, _)| matches!(s, Seen::Pdu(p) if f(&p.body))).count()
    }

    /// When connection `n` saw a PDU matching `f` (or closed, for `Seen::Closed`).
    fn when(&self, n: usize, f: impl Fn(&Seen) -> bool) -> Option<Instant> {
        self.0.iter().find_map(|(m, s, at)| (*m == n && f(s)).then_some(*at))
    }
}

fn is_unbind(s: &Seen) -> bool {
    matches!(s, Seen::Pdu(p) if matches!(p.body, Body::Unbind))
}

/// A removed vendor's drain, for a bind type: the receipt it sends 1.5 s after the reload on its
/// receiving bind reaches the customer, nothing new goes to it, and once the drain is over its
/// binds unbind and are not made again.
fn removed_vendor_drains(bind_type: smppgw_engine::config::VendorBindType) {
    use smppgw_engine::config::{RouteConfig, VendorBindType};
    const DRAIN_MS: u64 = 5_000;
    let (addr, conns, seen) = answering_smsc();
    let other = sim(|_| {});
    let mut cfg = config(&[("leaving", addr), ("other", other.local_addr())]);
    cfg.routes = vec![RouteConfig::new("default", &["leaving"])];
    cfg.vendors[0].binds = 1;
    cfg.vendors[0].bind_type = bind_type;
    cfg.server.removed_vendor_drain_ms = DRAIN_MS as u32;
    let gw = smppgw_engine::start(cfg.clone()).unwrap();
    let split = bind_type == VendorBindType::TransmitterReceiver;
    let smsc: Vec<mpsc::SyncSender<Pdu>> =
        (0..1 + usize::from(split)).map(|_| conns.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
    let mut log = Log::default();
    let bind =
        |b: &Body| matches!(b, Body::BindTransceiver(_) | Body::BindTransmitter(_) | Body::BindReceiver(_));
    assert!(log.until(&seen, Duration::from_secs(10), |l| l.count(bind) == smsc.len()), "bound");
    wait_vendor_up(&gw);
    let receiving = log
        .conn(|b| matches!(b, Body::BindTransceiver(_) | Body::BindReceiver(_)))
        .expect("a receiving bind");
    let mut c = Client::connect(gw.local_addr);
    c.stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    let (st, id) = c.submit_dlr("15557300001", "accepted before the vendor goes");
    assert_eq!(st, CommandStatus::ESME_ROK);

    // The operator moves the traffic to `other` and deletes `leaving`.
    let mut next = cfg.clone();
    next.vendors.retain(|v| v.name != "leaving");
    next.routes = vec![RouteConfig::new("default", &["other"])];
    let removed = Instant::now();
    let version = gw.control().reload(next).unwrap();
    assert!(wait_for(Duration::from_secs(10), || gw.control().applied_everywhere(version)));
    // Nothing new goes to the removed vendor.
    assert_eq!(c.submit("15557300002", "after the removal").0, CommandStatus::ESME_ROK);
    assert_eq!(other.stats().submits, 1, "the next message went to the other vendor");

    // The vendor's receipt comes on its still-open bind, seconds later.
    std::thread::sleep(Duration::from_millis(1_500));
    log.until(&seen, Duration::ZERO, |_| false);
    assert_eq!(log.when(receiving, is_unbind), None, "the receiving bind is still bound after the removal");
    smsc[receiving].send(vendor_receipt(9, 0x04, "R1", "DELIVRD")).expect("the connection is open");
    let delivered = std::iter::from_fn(|| c.try_recv()).find(|p| matches!(p.body, Body::DeliverSm(_)));
    let p = delivered.expect("the receipt reaches the customer");
    let (tlv, r) = common::receipt_of(&p);
    assert_eq!((tlv.as_str(), r.stat), (id.as_str(), MessageState::Delivered));
    c.answer(&p, CommandStatus::ESME_ROK);
    let answered = |l: &Log| {
        l.when(
            receiving,
            |s| matches!(s, Seen::Pdu(p) if p.command_id() == smppgw_codec::CommandId::DELIVER_SM_RESP),
        )
        .is_some()
    };
    assert!(log.until(&seen, Duration::from_secs(5), answered), "the vendor's receipt answered");
    if split {
        let transmitter = 1 - receiving;
        let unbound = log.when(transmitter, is_unbind).expect("the transmitter unbound at the removal");
        assert!(unbound < removed + Duration::from_millis(1_500), "at once: {:?}", unbound - removed);
    }

    // The drain over, the receiving bind unbinds cleanly and is not made again.
    let closed = |l: &Log| l.when(receiving, |s| matches!(s, Seen::Closed)).is_some();
    assert!(log.until(&seen, Duration::from_millis(DRAIN_MS + 5_000), closed), "unbound at the drain's end");
    let unbound = log.when(receiving, is_unbind).expect("an unbind, not a bare close");
    assert!(
        unbound >= removed + Duration::from_millis(DRAIN_MS - 500),
        "not before the drain's end: {:?}",
        unbound - removed
    );
    assert!(conns.recv_timeout(Duration::from_secs(1)).is_err(), "the removed vendor is not bound again");
    log.until(&seen, Duration::ZERO, |_| false);
    assert_eq!(log.count(|b| matches!(b, Body::SubmitSm(_))), 1, "nothing new went to the removed vendor");
    assert_eq!(c.unbind(), CommandStatus::ESME_ROK);
    gw.shutdown();
    gw.join();
}

#[test]
fn a_removed_vendors_receipt_reaches_the_customer_over_its_draining_transceiver() {
    // Goal: a vendor a reload removes keeps its transceiver bound for the drain
    // (`server.removed_vendor_drain_ms`), taking nothing new: the receipt it sends there for a
    // message it accepted before reaches the customer. The bind used to unbind as soon as nothing
    // was in flight, and the customer never got its receipt.
    removed_vendor_drains(smppgw_engine::config::VendorBindType::Transceiver);
}

#[test]
fn a_removed_transmitter_receiver_vendor_unbinds_its_transmitter_and_keeps_its_receiver_for_the_drain() {
    // Goal: of a removed `transmitter_receiver` vendor, the transmitter (never sent receipts)
    // unbinds at once and the receiver stays for the drain; the receipt it delivers there reaches
    // the customer.
    removed_vendor_drains(smppgw_engine::config::VendorBindType::TransmitterReceiver);
}

#[test]
fn a_node_that_stops_ends_a_removed_vendors_drain_with_an_unbind() {
    // Goal: a stop does not wait for a removed vendor's drain (10 minutes by default), nor
    // close its bind without a word: the bind unbinds at once, as every vendor bind at a stop.
    use smppgw_engine::config::RouteConfig;
    let (addr, conns, seen) = answering_smsc();
    let other = sim(|_| {});
    let mut cfg = config(&[("leaving", addr), ("other", other.local_addr())]);
    cfg.vendors[0].binds = 1;
    let gw = smppgw_engine::start(cfg.clone()).unwrap();
    let _smsc = conns.recv_timeout(Duration::from_secs(10)).unwrap();
    wait_vendor_up(&gw);
    let mut next = cfg.clone();
    next.vendors.retain(|v| v.name != "leaving");
    next.routes = vec![RouteConfig::new("default", &["other"])];
    let version = gw.control().reload(next).unwrap();
    assert!(wait_for(Duration::from_secs(10), || gw.control().applied_everywhere(version)));
    let mut log = Log::default();
    assert!(!log.until(&seen, Duration::from_millis(500), |l| l.when(0, is_unbind).is_some()), "draining");
    let stopping = Instant::now();
    gw.shutdown();
    gw.join();
    assert!(stopping.elapsed() < Duration::from_secs(3), "stopped in {:?}", stopping.elapsed());
    assert!(
        log.until(&seen, Duration::from_secs(2), |l| l.when(0, is_unbind).is_some()),
        "unbound at the stop"
    );
}

/// A vendor removed, then added back (under its name or, `renamed`, another at the same account)
/// while its binds drain, at a vendor that allows the account no more binds than the gateway
/// keeps: the draining binds unbind and the new ones take their place at once, and the next
/// message goes to it.
fn vendor_back_during_its_drain(renamed: bool) {
    use smppgw_engine::config::RouteConfig;
    let v = sim(|s| s.faults.max_binds = Some(2));
    let other = sim(|_| {});
    let mut cfg = config(&[("back", v.local_addr()), ("other", other.local_addr())]);
    cfg.routes = vec![RouteConfig::new("default", &["back"])];
    cfg.vendors[0].binds = 2;
    // A new bind refused while the old ones are up waits for their end, not for this.
    cfg.vendors[0].reconnect_backoff_min_ms = 20_000;
    cfg.vendors[0].reconnect_backoff_max_ms = 30_000;
    let gw = smppgw_engine::start(cfg.clone()).unwrap();
    assert!(wait_for(Duration::from_secs(10), || v.stats().binds_current == 2));
    let mut gone = cfg.clone();
    gone.vendors.retain(|x| x.name != "back");
    gone.routes = vec![RouteConfig::new("default", &["other"])];
    let version = gw.control().reload(gone).unwrap();
    assert!(wait_for(Duration::from_secs(10), || gw.control().applied_everywhere(version)));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!((v.stats().binds_current, v.stats().unbinds), (2, 0), "draining");
    if renamed {
        cfg.vendors[0].name = "renamed".to_owned();
        cfg.routes = vec![RouteConfig::new("default", &["renamed"])];
    }
    let version = gw.control().reload(cfg).unwrap();
    assert!(wait_for(Duration::from_secs(10), || gw.control().applied_everywhere(version)));
    assert!(
        wait_for(Duration::from_secs(5), || {
            let s = v.stats();
            s.unbinds >= 2 && s.binds_total >= 4 && s.binds_current == 2
        }),
        "the new binds took the draining ones' places: {:?}",
        v.stats()
    );
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert_eq!(c.submit("15557400001", "to the vendor added back").0, CommandStatus::ESME_ROK);
    assert_eq!(v.stats().submits, 1);
    gw.shutdown();
    gw.join();
}

#[test]
fn a_vendor_added_back_during_its_drain_binds_in_place_of_its_draining_binds() {
    // Goal: a vendor removed and added back (same name) while its binds drain does not keep
    // them beside its new binds: at an account limited to the binds the gateway keeps, the new
    // binds would be refused for the whole drain. They take over at once, as a replaced bind's
    // successor does.
    vendor_back_during_its_drain(false);
}

#[test]
fn a_vendor_renamed_during_its_drain_binds_in_place_of_its_draining_binds() {
    // Goal: the same for a vendor added back under another name at the same account (host, port
    // and system_id): the old name's draining binds give it their places.
    vendor_back_during_its_drain(true);
}
