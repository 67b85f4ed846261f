//! Hostile and odd peers over real sockets: connections that never bind, PDUs at the length
//! limits or with no body, a customer that writes one octet at a time, and a vendor that answers
//! with the wrong commands, twice, or with garbage. No peer may stop the gateway, hang a session
//! or leave a request unanswered.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{Client, SmscConn as Conn, config, sim, wait_for};
use smppgw_codec::{Body, CommandId, CommandStatus, Decoder, MessageIdResp, Pdu, SubmitSm};

fn start(cfg: smppgw_engine::config::Config) -> smppgw_engine::Gateway {
    smppgw_engine::start(cfg).expect("gateway starts")
}

/// Whether the gateway closes `s` within `within` (reading, and dropping, what it sends).
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let end = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        s.set_read_timeout(Some(end.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn a_connection_that_never_binds_is_closed_at_its_bind_deadline_whatever_it_sends() {
    // Goal: silence, half a header, a bind dribbled in too slowly, or a stream of enquire_link
    // (answered) do not keep an unbound connection past its bind timeout.
    let mut cfg = config(&[]);
    cfg.server.bind_timeout_ms = 500;
    let gw = start(cfg.clone());
    let a = gw.local_addr;
    let bind = Pdu::new(
        1,
        Body::BindTransceiver(smppgw_codec::Bind {
            system_id: "c1".to_owned().into(),
            password: "pw".to_owned().into(),
            interface_version: 0x34,
            ..Default::default()
        }),
    )
    .to_bytes();
    let t0 = Instant::now();
    let mut silent = TcpStream::connect(a).unwrap();
    let mut half = TcpStream::connect(a).unwrap();
    half.write_all(&[0, 0, 0]).unwrap();
    let mut slow_bind = TcpStream::connect(a).unwrap();
    let mut chatty = TcpStream::connect(a).unwrap();
    // One octet of the bind, or one enquire_link, every 50 ms, for 2 s.
    let writer = {
        let (mut slow, mut chatty) = (slow_bind.try_clone().unwrap(), chatty.try_clone().unwrap());
        let bind = bind.clone();
        std::thread::spawn(move || {
            for i in 0..40u32 {
                if let Some(octet) = bind.get(i as usize..i as usize + 1) {
                    let _ = slow.write_all(octet);
                }
                let _ = chatty.write_all(&Pdu::new(i + 1, Body::EnquireLink).to_bytes());
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    for (what, s) in [("silent", &mut silent), ("half a header", &mut half), ("slow bind", &mut slow_bind)] {
        assert!(closed_within(s, Duration::from_secs(3)), "{what}: closed at its bind deadline");
    }
    assert!(closed_within(&mut chatty, Duration::from_secs(3)), "enquire_link does not bind");
    assert!(t0.elapsed() < Duration::from_secs(3), "all within the deadline: {:?}", t0.elapsed());
    writer.join().unwrap();
    // The listener serves on. With an ordinary bind timeout again: a bind waits for its password
    // check at most that long, and on a loaded test machine a check can take more than 500 ms.
    cfg.server.bind_timeout_ms = 10_000;
    let version = gw.control().reload(cfg).unwrap();
    assert!(wait_for(Duration::from_secs(5), || gw.control().applied_everywhere(version)));
    assert_eq!(Client::connect(a).bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    gw.shutdown();
    gw.join();
}

/// Every command id the codec knows, a few it does not, requests and responses alike.
const COMMAND_IDS: [u32; 30] = [
    0x0000_0001,
    0x8000_0001,
    0x0000_0002,
    0x8000_0002,
    0x0000_0003,
    0x8000_0003,
    0x0000_0004,
    0x8000_0004,
    0x0000_0005,
    0x8000_0005,
    0x8000_0006,
    0x0000_0007,
    0x8000_0007,
    0x0000_0008,
    0x8000_0008,
    0x0000_0009,
    0x8000_0009,
    0x0000_000B,
    0x8000_0000,
    0x8000_0015,
    0x0000_0021,
    0x8000_0021,
    0x0000_0102,
    0x0000_0103,
    0x8000_0103,
    0x0000_0000,
    0x0000_0010,
    0x7FFF_FFFF,
    0x8000_1234,
    0xFFFF_FFFF,
];

/// Sends a 16-octet PDU of every command id (sequence numbers from `first`), then an
/// enquire_link; returns the answers read before the enquire_link's, by sequence number.
fn header_only_round(c: &mut Client, first: u32) -> std::collections::HashMap<u32, Vec<Pdu>> {
    let mut raw = Vec::new();
    for (i, id) in COMMAND_IDS.iter().enumerate() {
        raw.extend_from_slice(&16u32.to_be_bytes());
        raw.extend_from_slice(&id.to_be_bytes());
        raw.extend_from_slice(&0u32.to_be_bytes());
        raw.extend_from_slice(&(first + i as u32).to_be_bytes());
    }
    let sentinel = first + 1000;
    raw.extend_from_slice(&Pdu::new(sentinel, Body::EnquireLink).to_bytes());
    c.send_raw(&raw);
    let mut got: std::collections::HashMap<u32, Vec<Pdu>> = Default::default();
    loop {
        let p = c.recv().expect("the session lives on after PDUs without a body");
        if p.sequence_number == sentinel && p.command_id() == CommandId::ENQUIRE_LINK_RESP {
            return got;
        }
        if p.command_id().is_response() {
            got.entry(p.sequence_number).or_default().push(p);
        }
    }
}

#[test]
fn pdus_with_a_command_length_of_16_get_one_answer_each_and_the_session_lives() {
    // Goal: a header with no body, for every command id (a request whose body is missing, a
    // response to nothing, an unknown id), is answered once if it is a request (its own
    // response with an error, or generic_nack) or of an unknown command (generic_nack, SMPP
    // 3.4 4.3), not at all if it is a known response, before and after the bind, and the
    // session goes on.
    let vendor = sim(|_| {});
    let gw = start(config(&[("v1", vendor.local_addr())]));
    let a = gw.local_addr;
    for bound in [false, true] {
        let mut c = Client::connect(a);
        if bound {
            assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
        }
        let got = header_only_round(&mut c, 100);
        for (i, &id) in COMMAND_IDS.iter().enumerate() {
            let id = CommandId(id);
            let seq = 100 + i as u32;
            let answers = got.get(&seq).map_or(&[][..], Vec::as_slice);
            if id.is_response() && id.name().is_some() {
                assert!(answers.is_empty(), "bound {bound}: {id} answered: {answers:?}");
                continue;
            }
            assert_eq!(answers.len(), 1, "bound {bound}: {id} answered once: {answers:?}");
            let p = &answers[0];
            assert!(!p.command_status.is_ok(), "bound {bound}: {id} refused: {p:?}");
            assert!(
                p.command_id() == id.response() || p.command_id() == CommandId::GENERIC_NACK,
                "bound {bound}: {id} answered with {p:?}"
            );
        }
        // And still served.
        c.send(&Pdu::new(5000, Body::EnquireLink));
        assert_eq!(c.recv_resp(5000).command_id(), CommandId::ENQUIRE_LINK_RESP);
        if bound {
            let (st, _) = c.submit("15551234567", "after the headers");
            assert_eq!(st, CommandStatus::ESME_ROK);
            assert_eq!(c.unbind(), CommandStatus::ESME_ROK);
        }
    }
    gw.shutdown();
    gw.join();
}

/// A submit_sm of exactly `len` octets (its message_payload padded to fit), with `seq`.
fn submit_of_length(len: usize, seq: u32) -> Vec<u8> {
    let mut raw = vec![0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0];
    raw.extend(seq.to_be_bytes());
    raw.extend(b"\0\x01\x0115550001\0\x01\x0115551234\0\0\0\0\0\0\0\0\0\0\0");
    let payload = len - raw.len() - 4;
    raw.extend([0x04, 0x24]);
    raw.extend((payload as u16).to_be_bytes());
    raw.extend(std::iter::repeat_n(b'x', payload));
    assert_eq!(raw.len(), len);
    raw[..4].copy_from_slice(&(len as u32).to_be_bytes());
    raw
}

#[test]
fn a_pdu_of_exactly_the_limit_is_read_and_one_octet_more_closes_only_that_session() {
    // Goal: command_length equal to the limit (1,024 before the bind, max_command_length
    // after) is a PDU like any other; one more octet closes that session, and no other.
    let vendor = sim(|_| {});
    let mut cfg = config(&[("v1", vendor.local_addr())]);
    cfg.server.max_command_length = 4096;
    let gw = start(cfg);
    common::wait_vendors_up(&gw);
    let a = gw.local_addr;
    let mut other = Client::connect(a);
    assert_eq!(other.bind("trx", "c2", "pw"), CommandStatus::ESME_ROK);

    let mut c = Client::connect(a);
    c.send_raw(&submit_of_length(1024, 7));
    assert_eq!(c.recv_resp(7).command_status, CommandStatus::ESME_RINVBNDSTS, "1,024 octets before the bind");
    c.send_raw(&submit_of_length(1025, 8));
    assert!(c.recv().is_none(), "1,025 octets before the bind: closed");

    let mut c = Client::connect(a);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    c.send_raw(&submit_of_length(4096, 9));
    assert_eq!(c.recv_resp(9).command_status, CommandStatus::ESME_ROK, "exactly max_command_length");
    // Only the header of the longer one: it is refused as soon as its length is read.
    c.send_raw(&submit_of_length(4097, 10)[..16]);
    assert!(c.recv().is_none(), "one octet past max_command_length: closed");

    let (st, _) = other.submit("15551234567", "the other session");
    assert_eq!(st, CommandStatus::ESME_ROK);
    gw.shutdown();
    gw.join();
}

#[test]
fn a_customer_that_writes_one_octet_at_a_time_is_served() {
    // Goal: a bind and submits that arrive one octet per write (each a read of its own at the
    // gateway) are framed and answered like whole ones.
    let vendor = sim(|_| {});
    let gw = start(config(&[("v1", vendor.local_addr())]));
    common::wait_vendors_up(&gw);
    let mut c = Client::connect(gw.local_addr);
    let bind = Pdu::new(
        c.next_seq(),
        Body::BindTransceiver(smppgw_codec::Bind {
            system_id: "c1".to_owned().into(),
            password: "pw".to_owned().into(),
            interface_version: 0x34,
            ..Default::default()
        }),
    );
    let mut raw = bind.to_bytes().to_vec();
    for i in 0..3 {
        let (_, p) = c.submit_pdu("15551234567", &format!("dribbled {i}"));
        raw.extend_from_slice(&p.to_bytes());
    }
    for (i, chunk) in raw.chunks(1).enumerate() {
        c.send_raw(chunk);
        if i % 8 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert_eq!(c.recv_resp(1).command_status, CommandStatus::ESME_ROK);
    for seq in [2, 3, 4] {
        assert_eq!(c.recv_resp(seq).command_status, CommandStatus::ESME_ROK, "submit {seq}");
    }
    gw.shutdown();
    gw.join();
}

/// A fake SMSC: each connection the gateway makes goes, with its number, to `script` on a
/// thread of its own.
fn fake_smsc(script: impl Fn(usize, Conn) + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let script = std::sync::Arc::new(script);
    std::thread::spawn(move || {
        for (n, s) in listener.incoming().enumerate() {
            let Ok(s) = s else { return };
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let script = script.clone();
            std::thread::spawn(move || script(n, Conn::new(s)));
        }
    });
    addr
}

fn receipt(seq: u32, text: &[u8]) -> Pdu {
    let d = SubmitSm {
        source: smppgw_codec::Address::new(1, 1, "15551234567"),
        dest: smppgw_codec::Address::new(1, 1, "15550001"),
        esm_class: 0x04,
        short_message: bytes::Bytes::copy_from_slice(text),
        ..Default::default()
    };
    Pdu::new(seq, Body::DeliverSm(d))
}

#[test]
fn a_vendor_that_answers_with_the_wrong_commands_twice_or_garbage_never_gets_a_customer_a_false_ok() {
    // Goal: a vendor that answers each submit in its own broken way (a response of another
    // command, two answers, an id of 64 octets, an empty or non-ASCII id, receipts before the
    // bind's answer, a second bind answer, receipts with a 60 KB payload or unreadable text,
    // unknown commands, a TLV running past its PDU, then an unframeable stream) gives each
    // customer submit exactly one answer, never ESME_ROK for one it did not accept, and the
    // gateway binds again and goes on.
    let addr = fake_smsc(|n, mut c| {
        let Some(bind) = c.recv() else { return };
        if n == 0 {
            // A receipt before the bind's answer, then the answer twice.
            c.send(&receipt(900, b"id:x stat:DELIVRD"));
        }
        c.send(&Pdu::new(bind.sequence_number, Body::BindTransceiverResp(Default::default())));
        if n == 0 {
            c.send(&Pdu::new(bind.sequence_number, Body::BindTransceiverResp(Default::default())));
        }
        let mut k = 0;
        while let Some(p) = c.recv() {
            let seq = p.sequence_number;
            let id = |s: &[u8]| MessageIdResp {
                message_id: bytes::Bytes::copy_from_slice(s),
                ..Default::default()
            };
            match p.body {
                Body::EnquireLink => c.send(&Pdu::new(seq, Body::EnquireLinkResp)),
                Body::Unbind => {
                    c.send(&Pdu::new(seq, Body::UnbindResp));
                    return;
                }
                Body::SubmitSm(_) if n > 0 => c.send(&Pdu::new(seq, Body::SubmitSmResp(id(b"OK1")))),
                Body::SubmitSm(_) => {
                    k += 1;
                    match k {
                        // Answered by a response of another command: not accepted.
                        1 => c.send(&Pdu::new(seq, Body::CancelSmResp)),
                        2 => c.send(&Pdu::new(seq, Body::QuerySmResp(Default::default()))),
                        // Answered twice.
                        3 => {
                            c.send(&Pdu::new(seq, Body::SubmitSmResp(id(b"TWICE"))));
                            c.send(&Pdu::with_status(
                                seq,
                                CommandStatus::ESME_RSYSERR,
                                Body::SubmitSmResp(Default::default()),
                            ));
                        }
                        4 => c.send(&Pdu::new(seq, Body::SubmitSmResp(id(&[b'L'; 64])))),
                        5 => c.send(&Pdu::new(seq, Body::SubmitSmResp(id(b"")))),
                        6 => c.send(&Pdu::new(seq, Body::SubmitSmResp(id(b"\xff\xfe\x80")))),
                        7 => {
                            // Receipts the gateway cannot match or read, a big one, an unknown
                            // command, a TLV past the end of its PDU; then the answer.
                            let mut big = b"id:LLLL stat:DELIVRD text:".to_vec();
                            big.extend(std::iter::repeat_n(0xFFu8, 200));
                            c.send(&receipt(901, &big));
                            let mut payload = receipt(902, b"");
                            if let Body::DeliverSm(d) = &mut payload.body {
                                let mut text = b"id:".to_vec();
                                text.extend(std::iter::repeat_n(b'9', 60_000));
                                d.tlvs = smppgw_codec::Tlvs::builder()
                                    .bytes(smppgw_codec::tag::MESSAGE_PAYLOAD, &text)
                                    .build();
                            }
                            c.send(&payload);
                            c.send(&receipt(903, b"\x00\x01\x02 stat: id:"));
                            c.send_raw(&[0, 0, 0, 16, 0, 0, 0x77, 0x77, 0, 0, 0, 0, 0, 0, 3, 136]);
                            let mut raw = receipt(905, b"id:1 stat:DELIVRD").to_bytes().to_vec();
                            raw.extend([0x04, 0x27, 0x00, 0x09, 1]);
                            let len = raw.len() as u32;
                            raw[..4].copy_from_slice(&len.to_be_bytes());
                            c.send_raw(&raw);
                            c.send(&Pdu::new(seq, Body::SubmitSmResp(id(b"SEVEN"))));
                        }
                        // Then a stream that cannot be framed: the bind is made again.
                        _ => {
                            c.send_raw(&[0, 0, 0, 3, 0, 0, 0, 0]);
                            std::thread::sleep(Duration::from_millis(500));
                            return;
                        }
                    }
                }
                _ => {}
            }
        }
    });
    let mut cfg = config(&[("hostile", addr)]);
    cfg.vendors[0].binds = 1;
    let gw = start(cfg);
    common::wait_vendors_up(&gw);
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    let mut statuses = Vec::new();
    for i in 1..=8 {
        let (seq, p) = c.submit_pdu("15551234567", &format!("message {i}"));
        c.send(&p);
        let r = c.recv_resp(seq);
        statuses.push(r.command_status);
    }
    assert!(!statuses[0].is_ok() && !statuses[1].is_ok(), "answered by the wrong command: {statuses:?}");
    assert!(statuses[2..7].iter().all(|s| s.is_ok()), "accepted ones: {statuses:?}");
    assert!(!statuses[7].is_ok(), "lost with the broken stream: {statuses:?}");
    // Nothing more came for them (the second answer to the third was not passed on).
    c.send(&Pdu::new(777, Body::EnquireLink));
    let next = c.recv_resp(777);
    assert_eq!(next.command_id(), CommandId::ENQUIRE_LINK_RESP);
    // Bound again, and working.
    assert!(
        wait_for(Duration::from_secs(10), || c.submit("15551234567", "after").0.is_ok()),
        "the vendor is bound again"
    );
    gw.shutdown();
    gw.join();
}

/// A small deterministic generator (xorshift64*), so that a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One PDU a chaotic customer may send: valid or not, in or out of turn.
fn chaos_pdu(r: &mut Rng, answer_to: &[u32]) -> Vec<u8> {
    use smppgw_codec::{Address, Bind, CancelSm, DataSm, DestAddress, QuerySm, ReplaceSm, SubmitMulti};
    let seq = match r.below(6) {
        0 => 0,
        1 => 0x7FFF_FFFF,
        2 => u32::MAX,
        _ => r.below(50) as u32 + 1,
    };
    let resp_seq = match answer_to.is_empty() {
        true => seq,
        false => answer_to[r.below(answer_to.len() as u64) as usize],
    };
    let submit = || SubmitSm {
        source: Address::new(1, 1, "15550001"),
        dest: Address::new(1, 1, "15551234567"),
        registered_delivery: 1,
        short_message: "chaos".into(),
        ..Default::default()
    };
    let version = if r.below(4) == 0 { 0x33 } else { 0x34 };
    let bind = |pw: &str| Bind {
        system_id: "c1".to_owned().into(),
        password: pw.to_owned().into(),
        interface_version: version,
        ..Default::default()
    };
    let status = |r: &mut Rng| CommandStatus([0, 0, 0x58, 0x64, 0x14, 0xFFFF][r.below(6) as usize]);
    let pdu = match r.below(24) {
        0..=5 => Pdu::new(seq, Body::SubmitSm(submit())),
        6 => Pdu::new(
            seq,
            Body::DataSm(DataSm {
                source: Address::new(1, 1, "15550001"),
                dest: Address::new(1, 1, "15551234567"),
                registered_delivery: 1,
                tlvs: smppgw_codec::Tlvs::builder()
                    .bytes(smppgw_codec::tag::MESSAGE_PAYLOAD, b"chaos")
                    .build(),
                ..Default::default()
            }),
        ),
        7 => Pdu::new(
            seq,
            Body::QuerySm(QuerySm { message_id: "1a".into(), source: Address::new(1, 1, "15550001") }),
        ),
        8 => Pdu::new(seq, Body::CancelSm(CancelSm { message_id: "1a".into(), ..Default::default() })),
        9 => Pdu::new(seq, Body::ReplaceSm(ReplaceSm { message_id: "".into(), ..Default::default() })),
        10 => Pdu::new(
            seq,
            Body::SubmitMulti(SubmitMulti {
                source: Address::new(1, 1, "15550001"),
                dests: (0..=r.below(3))
                    .map(|i| DestAddress::Sme(Address::new(1, 1, format!("1555123456{i}"))))
                    .collect(),
                short_message: "chaos".into(),
                ..Default::default()
            }),
        ),
        11 | 12 => Pdu::new(seq, Body::EnquireLink),
        13 => Pdu::new(seq, Body::Unbind),
        14 => Pdu::new(seq, Body::BindTransceiver(bind("pw"))),
        15 => Pdu::new(seq, Body::BindReceiver(bind(if r.below(2) == 0 { "pw" } else { "nope" }))),
        16 => Pdu::with_status(resp_seq, status(r), Body::DeliverSmResp(Default::default())),
        17 => Pdu::with_status(resp_seq, status(r), Body::DataSmResp(Default::default())),
        18 => Pdu::with_status(resp_seq, status(r), Body::GenericNack),
        19 => Pdu::with_status(resp_seq, status(r), Body::EnquireLinkResp),
        20 => Pdu::with_status(resp_seq, status(r), Body::SubmitSmResp(Default::default())),
        21 => Pdu::new(resp_seq, Body::UnbindResp),
        22 => {
            // A header alone, of any command id.
            let mut v = vec![0, 0, 0, 16];
            v.extend((r.next() as u32).to_be_bytes());
            v.extend([0; 4]);
            v.extend(seq.to_be_bytes());
            return v;
        }
        _ => {
            // A valid PDU cut short or with junk after it (command_length adjusted): malformed.
            let mut v = Pdu::new(seq, Body::SubmitSm(submit())).to_bytes().to_vec();
            let n = v.len();
            if r.below(2) == 0 {
                v.truncate(n - 1 - r.below(20) as usize);
            } else {
                v.extend([0x04, 0x27, 0x00, 0x09, 1]);
            }
            let len = v.len() as u32;
            v[..4].copy_from_slice(&len.to_be_bytes());
            return v;
        }
    };
    pdu.to_bytes().to_vec()
}

/// One chaotic customer connection: what it does is drawn from `r`; returns a socket to keep
/// open (unread) until the end of the test, or None.
fn chaos_connection(a: SocketAddr, r: &mut Rng) -> Option<TcpStream> {
    let mut c = Client::connect(a);
    match r.below(4) {
        0 => {}
        1 => drop(c.bind("tx", "c1", "pw")),
        2 => drop(c.bind("rx", "c2", "pw")),
        _ => drop(c.bind("trx", "c1", "pw")),
    }
    c.stream.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let reads = r.below(3) != 0;
    let mut delivered = Vec::new();
    for _ in 0..r.below(60) {
        let pdu = chaos_pdu(r, &delivered);
        match r.below(10) {
            // Dribbled in two writes.
            0 => {
                let cut = r.below(pdu.len() as u64) as usize;
                if c.stream.write_all(&pdu[..cut]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(r.below(5)));
                if c.stream.write_all(&pdu[cut..]).is_err() {
                    break;
                }
            }
            // Random octets: most likely a stream that cannot be framed.
            1 if r.below(8) == 0 => {
                let junk: Vec<u8> = (0..r.below(40)).map(|_| r.next() as u8).collect();
                let _ = c.stream.write_all(&junk);
            }
            _ => {
                if c.stream.write_all(&pdu).is_err() {
                    break;
                }
            }
        }
        if reads {
            let mut tmp = [0u8; 65536];
            if let Ok(n) = c.stream.read(&mut tmp) {
                if n == 0 {
                    break;
                }
                // Sequence numbers of the gateway's requests, crudely: any frame header at the
                // start of the read.
                if n >= 16 && tmp[4] & 0x80 == 0 {
                    delivered.push(u32::from_be_bytes([tmp[12], tmp[13], tmp[14], tmp[15]]));
                }
            }
        }
        if r.below(10) == 0 {
            std::thread::sleep(Duration::from_millis(r.below(30)));
        }
    }
    match r.below(5) {
        0 => Some(c.stream),
        1 => {
            let _ = c.stream.shutdown(std::net::Shutdown::Write);
            std::thread::sleep(Duration::from_millis(50));
            None
        }
        2 => {
            c.stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let seq = 0x7000_0000;
            let _ = c.stream.write_all(&Pdu::new(seq, Body::Unbind).to_bytes());
            None
        }
        _ => None,
    }
}

#[test]
fn chaotic_customers_leave_no_session_behind_and_the_gateway_serves_on() {
    // Goal: customers sending anything in any order (valid and malformed PDUs, answers to
    // nothing, binds, unbinds, junk, PDUs split over writes), reading or not, and leaving in
    // every way (closing, half-closing, unbinding, holding the socket open without reading)
    // neither stop the gateway nor leave a session, a bind slot or a receiver behind once they
    // are gone; a new customer is served as before.
    let vendor = sim(|_| {});
    let mut cfg = config(&[("v1", vendor.local_addr())]);
    cfg.server.bind_timeout_ms = 1000;
    cfg.server.enquire_link_interval_ms = 500;
    cfg.server.session_timeout_ms = 1500;
    cfg.server.response_timeout_ms = 1000;
    let gw = start(cfg);
    common::wait_vendors_up(&gw);
    let a = gw.local_addr;
    let seed = std::env::var("CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_u64);
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(t + 1) | 1);
                let mut held = Vec::new();
                let end = Instant::now() + Duration::from_secs(6);
                while Instant::now() < end {
                    held.extend(chaos_connection(a, &mut r));
                }
                held
            })
        })
        .collect();
    let held: Vec<TcpStream> = threads.into_iter().flat_map(|t| t.join().expect("a chaos thread")).collect();
    // A well-behaved customer is served meanwhile.
    let mut good = Client::connect(a);
    assert_eq!(good.bind("trx", "c2", "pw"), CommandStatus::ESME_ROK);
    assert_eq!(good.submit("15551234567", "still served").0, CommandStatus::ESME_ROK);
    assert_eq!(good.unbind(), CommandStatus::ESME_ROK);
    drop(good);
    drop(held);
    let m = gw.metrics.clone();
    let snap = gw.control().current();
    let counts = || {
        let c = |id: &[u8]| {
            let c = snap.customer(id).expect("configured");
            (
                c.binds.load(std::sync::atomic::Ordering::Relaxed),
                c.receivers.load(std::sync::atomic::Ordering::Relaxed),
            )
        };
        (
            m.sessions.load(std::sync::atomic::Ordering::Relaxed),
            m.sessions_bound.load(std::sync::atomic::Ordering::Relaxed),
            c(b"c1"),
            c(b"c2"),
        )
    };
    assert!(
        wait_for(Duration::from_secs(15), || counts() == (0, 0, (0, 0), (0, 0))),
        "sessions, bound sessions, (binds, receivers) of c1 and c2 once every customer left: {:?}",
        counts()
    );
    if std::env::var_os("CHAOS_STATS").is_some() {
        let l = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!(
            "binds {} bind_failures {} malformed {} framing {} rejected {} orphan {} lost {} receipts_in {} delivered ok {} failed {}",
            l(&m.binds),
            l(&m.bind_failures),
            l(&m.malformed),
            l(&m.framing_errors),
            l(&m.rejected),
            l(&m.orphan_answers),
            l(&m.lost_answers),
            l(&m.receipts_in),
            l(&m.deliveries_ok),
            l(&m.deliveries_failed)
        );
    }
    let mut c = Client::connect(a);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert_eq!(c.submit("15551234567", "after the chaos").0, CommandStatus::ESME_ROK);
    gw.shutdown();
    gw.join();
}

/// What a chaotic SMSC sends on its own, or in answer to `p` (a request of the gateway's).
fn chaos_vendor_pdus(r: &mut Rng, p: Option<&Pdu>, ids: &[String]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let id = |r: &mut Rng| match ids.is_empty() || r.below(3) == 0 {
        true => format!("{:x}", r.below(1000)),
        false => ids[r.below(ids.len() as u64) as usize].clone(),
    };
    let status = |r: &mut Rng| CommandStatus([0, 0, 0, 0x58, 0x04, 0x45, 0x14, 0x08][r.below(8) as usize]);
    if let Some(p) = p {
        let seq = p.sequence_number;
        let right = match &p.body {
            Body::SubmitSm(_) => {
                Body::SubmitSmResp(MessageIdResp { message_id: id(r).into(), ..Default::default() })
            }
            Body::EnquireLink => Body::EnquireLinkResp,
            Body::Unbind => Body::UnbindResp,
            Body::CancelSm(_) => Body::CancelSmResp,
            Body::ReplaceSm(_) => Body::ReplaceSmResp,
            Body::BindTransceiver(_) | Body::BindTransmitter(_) => {
                Body::BindTransceiverResp(Default::default())
            }
            _ => Body::GenericNack,
        };
        match r.below(12) {
            0 => {}
            1 => out.push(Pdu::new(seq, Body::CancelSmResp).to_bytes().to_vec()),
            2 => out.push(Pdu::with_status(seq, status(r), Body::GenericNack).to_bytes().to_vec()),
            3 => {
                out.push(Pdu::with_status(seq, status(r), right.clone()).to_bytes().to_vec());
                out.push(Pdu::with_status(seq, status(r), right).to_bytes().to_vec());
            }
            4 => out.push(Pdu::with_status(seq, status(r), right).to_bytes().to_vec()),
            5 => {
                // Malformed: junk after the body.
                let mut v = Pdu::with_status(seq, status(r), right).to_bytes().to_vec();
                v.extend([0x04, 0x27, 0, 9, 1]);
                let len = v.len() as u32;
                v[..4].copy_from_slice(&len.to_be_bytes());
                out.push(v);
            }
            _ => out.push(Pdu::new(seq, right).to_bytes().to_vec()),
        }
    }
    // Something of its own, now and then.
    let seq = r.below(100) as u32 + 1;
    match r.below(16) {
        0..=2 => {
            let stat = ["DELIVRD", "UNDELIV", "ACCEPTD", "EXPIRED", "??", ""][r.below(6) as usize];
            let text = format!(
                "id:{} sub:001 dlvrd:001 submit date:2501011200 done date:2501011201 stat:{stat} err:000 text:x",
                id(r)
            );
            out.push(receipt(seq, text.as_bytes()).to_bytes().to_vec());
        }
        3 => out.push(receipt(seq, b"\xff\xfe garbage").to_bytes().to_vec()),
        4 => out.push(Pdu::new(seq, Body::EnquireLink).to_bytes().to_vec()),
        5 => out.push(Pdu::with_status(seq, status(r), Body::GenericNack).to_bytes().to_vec()),
        6 => out.push(Pdu::new(seq, Body::SubmitSmResp(Default::default())).to_bytes().to_vec()),
        7 => {
            let mut v = vec![0, 0, 0, 16];
            v.extend((r.next() as u32).to_be_bytes());
            v.extend([0; 4]);
            v.extend(seq.to_be_bytes());
            out.push(v);
        }
        8 if r.below(4) == 0 => out.push(Pdu::new(seq, Body::Unbind).to_bytes().to_vec()),
        9 if r.below(8) == 0 => out.push(vec![0, 0, 0, 1]),
        _ => {}
    }
    out
}

#[test]
fn a_chaotic_vendor_never_costs_a_customer_its_one_answer_per_submit() {
    // Goal: an SMSC that answers in any way (right, wrong command, twice, not at all, malformed,
    // any status), sends receipts for ids real and made up, keepalives, unbinds, unknown
    // commands and now and then a stream that cannot be framed, never gets a customer's
    // submit answered twice or not at all, and the gateway binds again and goes on.
    let seed = std::env::var("CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_u64);
    let addr = fake_smsc(move |n, mut c| {
        let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(n as u64 + 1) | 1);
        c.s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut ids: Vec<String> = Vec::new();
        let mut bound = false;
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            let mut chunk = [0u8; 4096];
            let p = match Decoder::default().decode(&mut c.buf) {
                Ok(Some(p)) => Some(p),
                Ok(None) => match c.s.read(&mut chunk) {
                    Ok(0) => return,
                    Ok(k) => {
                        c.buf.extend_from_slice(&chunk[..k]);
                        continue;
                    }
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut =>
                    {
                        None
                    }
                    Err(_) => return,
                },
                Err(_) => return,
            };
            let Some(p) = p else {
                if bound && n < 6 {
                    for v in chaos_vendor_pdus(&mut r, None, &ids) {
                        c.send_raw(&v);
                    }
                }
                continue;
            };
            if !bound {
                // Binds are answered, after a receipt now and then.
                if r.below(4) == 0 {
                    c.send(&receipt(77, b"id:1 stat:DELIVRD"));
                }
                c.send(&Pdu::new(p.sequence_number, Body::BindTransceiverResp(Default::default())));
                bound = true;
                continue;
            }
            if n >= 6 {
                // Later connections behave.
                let seq = p.sequence_number;
                match p.body {
                    Body::SubmitSm(_) => c.send(&Pdu::new(
                        seq,
                        Body::SubmitSmResp(MessageIdResp {
                            message_id: format!("ok{seq}").into(),
                            ..Default::default()
                        }),
                    )),
                    Body::EnquireLink => c.send(&Pdu::new(seq, Body::EnquireLinkResp)),
                    Body::Unbind => {
                        c.send(&Pdu::new(seq, Body::UnbindResp));
                        return;
                    }
                    _ => {}
                }
                continue;
            }
            for v in chaos_vendor_pdus(&mut r, Some(&p), &ids) {
                if let Ok(Some(resp)) = Decoder::default().decode(&mut BytesMut::from(&v[..]))
                    && let Body::SubmitSmResp(m) = &resp.body
                    && !m.message_id.is_empty()
                {
                    ids.push(String::from_utf8_lossy(&m.message_id).into_owned());
                }
                c.send_raw(&v);
                if v == [0, 0, 0, 1] {
                    return;
                }
            }
            if matches!(p.body, Body::Unbind) {
                return;
            }
        }
    });
    let mut cfg = config(&[("chaos", addr)]);
    cfg.vendors[0].binds = 2;
    cfg.vendors[0].response_timeout_ms = 300;
    cfg.vendors[0].enquire_link_interval_ms = 200;
    let gw = start(cfg);
    common::wait_vendors_up(&gw);
    let a = gw.local_addr;
    let customers: Vec<_> = (0..3)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = Client::connect(a);
                assert_eq!(
                    c.bind("trx", if i % 2 == 0 { "c1" } else { "c2" }, "pw"),
                    CommandStatus::ESME_ROK
                );
                let mut answered = std::collections::HashMap::new();
                let mut ok = 0;
                let end = Instant::now() + Duration::from_secs(6);
                while Instant::now() < end {
                    let (seq, mut p) = c.submit_pdu("15551234567", "to a chaotic vendor");
                    if let Body::SubmitSm(s) = &mut p.body {
                        s.registered_delivery = 1;
                    }
                    c.send(&p);
                    // Every PDU until its answer: deliveries answered, answers counted.
                    loop {
                        let got = c.recv().expect("the session lives");
                        match &got.body {
                            Body::DeliverSm(_) | Body::DataSm(_) => c.answer(&got, CommandStatus::ESME_ROK),
                            Body::EnquireLink => {
                                c.send(&Pdu::new(got.sequence_number, Body::EnquireLinkResp))
                            }
                            Body::SubmitSmResp(_) => {
                                *answered.entry(got.sequence_number).or_insert(0) += 1;
                                ok += usize::from(got.command_status.is_ok());
                            }
                            _ => {}
                        }
                        if answered.contains_key(&seq) {
                            break;
                        }
                    }
                }
                // Anything still to come would be a second answer.
                c.send(&Pdu::new(0x7000_0000, Body::EnquireLink));
                loop {
                    let got = c.recv().expect("the session lives");
                    match &got.body {
                        Body::SubmitSmResp(_) => *answered.entry(got.sequence_number).or_insert(0) += 1,
                        Body::DeliverSm(_) | Body::DataSm(_) => c.answer(&got, CommandStatus::ESME_ROK),
                        Body::EnquireLinkResp if got.sequence_number == 0x7000_0000 => break,
                        _ => {}
                    }
                }
                let twice: Vec<_> = answered.iter().filter(|(_, n)| **n != 1).collect();
                assert!(twice.is_empty(), "submits answered more than once: {twice:?}");
                (answered.len(), ok)
            })
        })
        .collect();
    for t in customers {
        let (n, ok) = t.join().expect("a customer thread");
        assert!(n > 0, "submits answered: {n} ({ok} accepted)");
        if std::env::var_os("CHAOS_STATS").is_some() {
            let m = &gw.metrics;
            let l = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            eprintln!(
                "answered {n} ok {ok}; vendor reconnects {} timeouts {} receipts in {} unparsable {} matched {} delivered {}",
                l(&m.vendor_reconnects),
                l(&m.vendor_timeouts),
                l(&m.receipts_in),
                l(&m.receipts_unparsable),
                l(&m.receipts_matched),
                l(&m.deliveries_ok)
            );
        }
    }
    // The chaos ends after six connections: bound again, and working.
    let mut c = Client::connect(a);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(
        wait_for(Duration::from_secs(20), || c.submit("15551234567", "after").0.is_ok()),
        "the vendor is bound again and takes messages"
    );
    gw.shutdown();
    gw.join();
}

#[test]
fn an_enquire_link_storm_is_answered_in_full_while_another_customer_is_served() {
    // Goal: 100,000 enquire_link in one burst (1.6 MB, reads of 256 KiB at the gateway) each get
    // their enquire_link_resp, in order, and a customer on the same node submits meanwhile.
    let vendor = sim(|_| {});
    let gw = start(config(&[("v1", vendor.local_addr())]));
    common::wait_vendors_up(&gw);
    let a = gw.local_addr;
    let mut storm = Client::connect(a);
    assert_eq!(storm.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    const N: u32 = 100_000;
    let mut burst = Vec::with_capacity(16 * N as usize);
    for q in 0..N {
        burst.extend_from_slice(&Pdu::new(q + 10, Body::EnquireLink).to_bytes());
    }
    let mut w = storm.stream.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&burst).is_ok());
    let mut other = Client::connect(a);
    assert_eq!(other.bind("trx", "c2", "pw"), CommandStatus::ESME_ROK);
    let t0 = Instant::now();
    for i in 0..20 {
        assert_eq!(other.submit("15551234567", &format!("during the storm {i}")).0, CommandStatus::ESME_ROK);
    }
    let took = t0.elapsed();
    let mut next = 10;
    while next < N + 10 {
        let p = storm.recv().expect("the storm's session lives");
        if p.command_id() == CommandId::ENQUIRE_LINK_RESP {
            assert_eq!(p.sequence_number, next, "in order, none lost");
            next += 1;
        }
    }
    assert!(writer.join().unwrap(), "the burst was taken whole");
    assert!(took < Duration::from_secs(5), "20 submits took {took:?} during the storm");
    gw.shutdown();
    gw.join();
}
