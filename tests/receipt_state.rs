//! `--receipt-state FILE`: a clean stop keeps the messages still waiting for their vendor receipt
//! (and the receipts still queued for customers) for the next start, so that a vendor that sends
//! the receipts after a restart reaches the customer; a file that cannot be used is said and set
//! aside, and the node starts all the same.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use common::{Client, KillOnDrop, receipt_of, wait_for};
use smppgw_codec::{Body, CommandStatus, Decoder, MessageIdResp, Pdu, SubmitSm};

/// A fake SMSC that accepts every bind, answers each submit_sm with a vendor id of its own
/// (`V1`, `V2`, ...; said on `ids`), and sends, on whichever bind is up, a DELIVRD receipt for
/// every vendor id it is given on `receipts`: the test decides when the vendor's receipts come.
struct Smsc {
    addr: SocketAddr,
    binds: Arc<AtomicUsize>,
    /// deliver_sm_resp the gateway sent (receipts it has in hand).
    answered: Arc<AtomicUsize>,
    ids: crossbeam_channel::Receiver<String>,
    receipts: crossbeam_channel::Sender<String>,
}

fn smsc() -> Smsc {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let binds = Arc::new(AtomicUsize::new(0));
    let next_id = Arc::new(AtomicUsize::new(0));
    // Far more than a test submits.
    let (ids_tx, ids) = crossbeam_channel::bounded(1_000);
    let (receipts, receipts_rx) = crossbeam_channel::bounded::<String>(1_000);
    let answered = Arc::new(AtomicUsize::new(0));
    let (b, a) = (binds.clone(), answered.clone());
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { return };
            let (binds, answered, next_id, ids_tx, receipts_rx) =
                (b.clone(), a.clone(), next_id.clone(), ids_tx.clone(), receipts_rx.clone());
            std::thread::spawn(move || serve_conn(s, (&binds, &answered), &next_id, &ids_tx, &receipts_rx));
        }
    });
    Smsc { addr, binds, answered, ids, receipts }
}

fn serve_conn(
    mut s: TcpStream,
    (binds, answered): (&AtomicUsize, &AtomicUsize),
    next_id: &AtomicUsize,
    ids: &crossbeam_channel::Sender<String>,
    receipts: &crossbeam_channel::Receiver<String>,
) {
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = BytesMut::new();
    let mut bound = false;
    let mut seq = 1000;
    let send = |s: &mut TcpStream, p: Pdu| {
        let _ = s.write_all(&p.to_bytes());
    };
    loop {
        while let Ok(Some(p)) = Decoder::default().decode(&mut buf) {
            let n = p.sequence_number;
            match p.body {
                Body::BindTransceiver(_) => {
                    send(&mut s, Pdu::new(n, Body::BindTransceiverResp(Default::default())));
                    bound = true;
                    binds.fetch_add(1, Ordering::SeqCst);
                }
                Body::BindTransmitter(_) => {
                    send(&mut s, Pdu::new(n, Body::BindTransmitterResp(Default::default())));
                    bound = true;
                    binds.fetch_add(1, Ordering::SeqCst);
                }
                Body::BindReceiver(_) => {
                    send(&mut s, Pdu::new(n, Body::BindReceiverResp(Default::default())));
                    bound = true;
                    binds.fetch_add(1, Ordering::SeqCst);
                }
                Body::EnquireLink => send(&mut s, Pdu::new(n, Body::EnquireLinkResp)),
                Body::DeliverSmResp(_) => {
                    answered.fetch_add(1, Ordering::SeqCst);
                }
                Body::Unbind => {
                    send(&mut s, Pdu::new(n, Body::UnbindResp));
                    return;
                }
                Body::SubmitSm(_) => {
                    let id = format!("V{}", next_id.fetch_add(1, Ordering::SeqCst) + 1);
                    let resp = MessageIdResp { message_id: id.clone().into(), ..Default::default() };
                    send(&mut s, Pdu::new(n, Body::SubmitSmResp(resp)));
                    let _ = ids.send(id);
                }
                _ => {}
            }
        }
        if bound {
            while let Ok(id) = receipts.try_recv() {
                seq += 1;
                let receipt = SubmitSm {
                    esm_class: 0x04,
                    short_message: format!(
                        "id:{id} sub:001 dlvrd:001 submit date:2611251200 done date:2611251201 stat:DELIVRD err:000 text:x"
                    )
                    .into(),
                    ..Default::default()
                };
                send(&mut s, Pdu::new(seq, Body::DeliverSm(receipt)));
            }
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("smppgw-rstate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Two cores (records and queues spread over both), customer c1, vendor `v` at `vendor`.
fn write_config(dir: &Path, port: u16, vendor: SocketAddr) -> PathBuf {
    let cfg = dir.join("gw.toml");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nhttp_listen = \"127.0.0.1:0\"\ncores = 2\nshutdown_grace_ms = 2000\n\n\
         [[customer]]\nsystem_id = \"c1\"\npassword_hash = \"{}\"\n\n\
         [[vendor]]\nname = \"v\"\nhost = \"127.0.0.1\"\nport = {}\nsystem_id = \"smppgw\"\npassword = \"secret\"\n\
         reconnect_backoff_min_ms = 50\nreconnect_backoff_max_ms = 200\n\n\
         [[route]]\nname = \"all\"\nprefixes = [\"\"]\nvendors = [\"v\"]\n",
        common::pw_hash(),
        vendor.port()
    );
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// The gateway binary on `cfg`, with `--receipt-state state` when given; its log goes to `log`.
fn gateway(cfg: &Path, state: Option<&Path>, log: &Path) -> KillOnDrop {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_smppgw"));
    cmd.arg("--config").arg(cfg).env("SMPPGW_LOG", "info").stdout(Stdio::null());
    cmd.stderr(std::fs::File::create(log).unwrap());
    if let Some(s) = state {
        cmd.arg("--receipt-state").arg(s);
    }
    KillOnDrop(cmd.spawn().unwrap())
}

/// SIGTERM, and the clean exit (status 0).
fn stop(mut gw: KillOnDrop) {
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(gw.0.id() as i32, libc::SIGTERM) };
    let status = gw.0.wait().unwrap();
    assert!(status.success(), "exit 0 after SIGTERM: {status:?}");
}

/// Whether one line of `log` says `what` with the field `field` exactly (`records=4`, not
/// `records=40`).
fn logged(log: &str, what: &str, field: &str) -> bool {
    log.lines().any(|l| l.contains(what) && l.split_whitespace().any(|w| w == field))
}

fn serving(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Submits `n` messages asking for a receipt; returns our ids and the vendor's.
fn submit_with_receipts(port: u16, smsc: &Smsc, n: usize) -> (Vec<String>, Vec<String>) {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut c = Client::connect(addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    let mut ours = Vec::new();
    for i in 0..n {
        let (st, id) = c.submit_dlr(&format!("1555123000{i}"), "kept across the restart");
        assert_eq!(st, CommandStatus::ESME_ROK);
        ours.push(id);
    }
    let theirs: Vec<String> =
        (0..n).map(|_| smsc.ids.recv_timeout(Duration::from_secs(5)).unwrap()).collect();
    assert_eq!(c.unbind(), CommandStatus::ESME_ROK);
    (ours, theirs)
}

#[test]
fn receipts_the_vendor_sends_after_a_restart_reach_the_customer() {
    // Goal: the clean-shutdown promise without Redis. Messages acknowledged to the
    // customer with registered_delivery, then SIGTERM (the vendor unbound, so its receipts stay
    // with it), then a restart: the receipts the vendor sends to the new run match the messages
    // the stop kept in the state file, and reach the customer with the ids it was given. Without
    // the file the store started empty and none matched.
    let smsc = smsc();
    let dir = temp_dir("restart");
    let port = free_port();
    let cfg = write_config(&dir, port, smsc.addr);
    let state = dir.join("receipt-state");

    let gw = gateway(&cfg, Some(&state), &dir.join("first.log"));
    assert!(wait_for(Duration::from_secs(10), || serving(port) && smsc.binds.load(Ordering::SeqCst) >= 2));
    let (ours, theirs) = submit_with_receipts(port, &smsc, 4);
    stop(gw);
    let log = std::fs::read_to_string(dir.join("first.log")).unwrap();
    assert!(logged(&log, "receipt state written", "records=4"), "{log}");
    assert!(state.exists(), "the stop kept the state");

    let binds_before = smsc.binds.load(Ordering::SeqCst);
    let gw = gateway(&cfg, Some(&state), &dir.join("second.log"));
    assert!(wait_for(Duration::from_secs(10), || serving(port)
        && smsc.binds.load(Ordering::SeqCst) >= binds_before + 2));
    assert!(!state.exists(), "read and removed: never applied twice");
    // The vendor delivers its receipts to the new run, then the customer binds to take them.
    for id in &theirs {
        smsc.receipts.send(id.clone()).unwrap();
    }
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut rx = Client::connect(addr);
    assert_eq!(rx.bind("rx", "c1", "pw"), CommandStatus::ESME_ROK);
    let mut got = Vec::new();
    for _ in 0..ours.len() {
        let p = rx.recv_deliver();
        let (tlv, r) = receipt_of(&p);
        assert_eq!(r.id.as_str(), tlv, "the text quotes our id too");
        assert_eq!(r.stat, smppgw_codec::receipt::MessageState::Delivered);
        got.push(tlv);
        rx.answer(&p, CommandStatus::ESME_ROK);
    }
    got.sort();
    let mut want = ours.clone();
    want.sort();
    assert_eq!(got, want, "every receipt, with the id the customer was given");
    assert_eq!(rx.unbind(), CommandStatus::ESME_ROK);
    stop(gw);
    let log = std::fs::read_to_string(dir.join("second.log")).unwrap();
    assert!(logged(&log, "receipt state read", "records=4"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn receipts_queued_for_a_customer_not_bound_at_the_stop_reach_it_after_the_restart() {
    // Goal: receipts the gateway had in hand (answered to the vendor) for a customer with no
    // receiving bind when the node stops are kept too, and delivered once it binds to the
    // next run: without the file they were lost with the process.
    let smsc = smsc();
    let dir = temp_dir("queued");
    let port = free_port();
    let cfg = write_config(&dir, port, smsc.addr);
    let state = dir.join("receipt-state");
    let gw = gateway(&cfg, Some(&state), &dir.join("first.log"));
    assert!(wait_for(Duration::from_secs(10), || serving(port) && smsc.binds.load(Ordering::SeqCst) >= 2));
    let (ours, theirs) = submit_with_receipts(port, &smsc, 3);
    for id in &theirs {
        smsc.receipts.send(id.clone()).unwrap();
    }
    assert!(
        wait_for(Duration::from_secs(10), || smsc.answered.load(Ordering::SeqCst) >= theirs.len()),
        "the gateway took the receipts"
    );
    stop(gw);
    let log = std::fs::read_to_string(dir.join("first.log")).unwrap();
    assert!(log.contains("receipt state written") && log.contains("deliveries=3"), "{log}");

    let gw = gateway(&cfg, Some(&state), &dir.join("second.log"));
    assert!(wait_for(Duration::from_secs(10), || serving(port)));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut rx = Client::connect(addr);
    assert_eq!(rx.bind("rx", "c1", "pw"), CommandStatus::ESME_ROK);
    let mut got = Vec::new();
    for _ in 0..ours.len() {
        let p = rx.recv_deliver();
        got.push(receipt_of(&p).0);
        rx.answer(&p, CommandStatus::ESME_ROK);
    }
    // (Their order may differ: each was matched on the core that owns its message.)
    got.sort();
    let mut want = ours.clone();
    want.sort();
    assert_eq!(got, want, "every receipt, with the id the customer was given");
    assert_eq!(rx.unbind(), CommandStatus::ESME_ROK);
    stop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_a_state_file_the_forgotten_messages_are_counted_at_stop() {
    // Goal: a node that keeps nothing says, once, how many messages waiting for their receipt
    // it forgets at a clean stop (it was silent).
    let smsc = smsc();
    let dir = temp_dir("forgotten");
    let port = free_port();
    let cfg = write_config(&dir, port, smsc.addr);
    let gw = gateway(&cfg, None, &dir.join("gw.log"));
    assert!(wait_for(Duration::from_secs(10), || serving(port) && smsc.binds.load(Ordering::SeqCst) >= 2));
    submit_with_receipts(port, &smsc, 3);
    stop(gw);
    let log = std::fs::read_to_string(dir.join("gw.log")).unwrap();
    let warned: Vec<&str> = log.lines().filter(|l| l.contains("forgotten=")).collect();
    assert_eq!(warned.len(), 1, "said once: {log}");
    assert!(warned[0].contains("WARN") && warned[0].contains("forgotten=3"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_damaged_state_file_is_set_aside_and_the_node_starts_without_it() {
    // Goal: a file that is not a whole receipt state (truncated by a crash, another program's,
    // damaged) never stops the node nor is half applied: it is said, kept as FILE.bad for a
    // look, the node serves, and its next clean stop writes a good one.
    let smsc = smsc();
    let dir = temp_dir("damaged");
    let port = free_port();
    let cfg = write_config(&dir, port, smsc.addr);
    let state = dir.join("receipt-state");
    std::fs::write(&state, b"SMPPGWRS\x00\x01\x00\x00garbage that ends too soon").unwrap();
    let gw = gateway(&cfg, Some(&state), &dir.join("gw.log"));
    assert!(wait_for(Duration::from_secs(10), || serving(port) && smsc.binds.load(Ordering::SeqCst) >= 2));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut c = Client::connect(addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK, "the node serves");
    assert_eq!(c.unbind(), CommandStatus::ESME_ROK);
    stop(gw);
    let log = std::fs::read_to_string(dir.join("gw.log")).unwrap();
    assert!(log.lines().any(|l| l.contains("WARN") && l.contains("not used, starting without it")), "{log}");
    assert!(dir.join("receipt-state.bad").exists(), "set aside");
    let mut written = Vec::new();
    std::fs::File::open(&state).unwrap().read_to_end(&mut written).unwrap();
    assert!(written.starts_with(b"SMPPGWRS"), "the stop wrote a good one");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_state_file_that_cannot_be_written_makes_the_stop_exit_4() {
    // Goal: the cores give what they hold up for the file; when it cannot be written (a missing
    // directory, a full disk) those messages are lost, and the stop says so with exit status 4
    // like any stop that lost what it had acknowledged. It exited 0 after an error line.
    let smsc = smsc();
    let dir = temp_dir("unwritable");
    let port = free_port();
    let cfg = write_config(&dir, port, smsc.addr);
    let state = dir.join("no-such-directory").join("receipt-state");
    let log = dir.join("gw.log");
    let mut gw = gateway(&cfg, Some(&state), &log);
    assert!(wait_for(Duration::from_secs(10), || serving(port) && smsc.binds.load(Ordering::SeqCst) >= 2));
    let _ = submit_with_receipts(port, &smsc, 3);
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(gw.0.id() as i32, libc::SIGTERM) };
    let status = gw.0.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(4), "{text}");
    assert!(text.contains("cannot write the receipt state"), "{text}");
    assert!(text.contains("stopped, but lost") && text.contains("state_file_not_written=3"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
