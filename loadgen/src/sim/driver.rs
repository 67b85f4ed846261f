//! The glommio driver of the simulator: accept, read, decode, hand to the machines, write once.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BytesMut};
use futures_lite::AsyncWriteExt;
use glommio::net::{TcpListener, TcpStream};
use smppgw_codec::Decoder;

use super::config::SimConfig;
use super::core::{Shared, SimCore};
use super::session::SimSession;
use crate::limits::{MAX_COMMAND_LENGTH, READ_CHUNK_BYTES};
use crate::runtime::{Notify, Woke, read_or_wake, sleep_or_wake};

/// How long a stopping core waits for its sessions to close.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// A peer that reads nothing for this long while we have data for it is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs core `index`: binds `listen` (SO_REUSEPORT), reports the bound address, serves until stop.
pub(crate) async fn run_core(
    cfg: Arc<SimConfig>,
    shared: Arc<Shared>,
    index: usize,
    listen: SocketAddr,
    bound: std::sync::mpsc::SyncSender<std::io::Result<SocketAddr>>,
) {
    let listener = match TcpListener::bind(listen) {
        Ok(l) => l,
        Err(e) => {
            let _ = bound.send(Err(std::io::Error::other(e.to_string())));
            return;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            let _ = bound.send(Err(std::io::Error::other(e.to_string())));
            return;
        }
    };
    let _ = bound.send(Ok(addr));
    drop(bound);

    let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let core = Rc::new(RefCell::new(SimCore::new(cfg, shared.clone(), index, Instant::now(), wall)));
    let stop = Rc::new(Notify::default());
    let live = Rc::new(Cell::new(0usize));

    let pump = glommio::spawn_local(pump(core.clone(), stop.clone()));

    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            stop.notified().await;
            None
        })
        .await;
        match accepted {
            Some(Ok(stream)) => {
                live.set(live.get() + 1);
                let (core, live) = (core.clone(), live.clone());
                glommio::spawn_local(async move {
                    session(stream, core).await;
                    live.set(live.get() - 1);
                })
                .detach();
            }
            // Out of descriptors or a reset before accept: back off a little and go on.
            Some(Err(_)) => glommio::timer::sleep(Duration::from_millis(10)).await,
            None => break,
        }
    }
    drop(listener);
    let give_up = Instant::now() + STOP_GRACE;
    while live.get() > 0 && Instant::now() < give_up {
        core.borrow().notify_all();
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    pump.cancel().await;
}

/// Moves due receipts to their sessions, makes MO, does stalls, and watches for stop.
async fn pump(core: Rc<RefCell<SimCore>>, stop: Rc<Notify>) {
    let (shared, wake) = {
        let c = core.borrow();
        (c.shared.clone(), c.pump.clone())
    };
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            stop.notify();
            core.borrow().notify_all();
            return;
        }
        let now = Instant::now();
        let stall = core.borrow_mut().stall_due(now);
        if let Some(d) = stall {
            // A stall blocks the whole core on purpose: nothing is read, answered or sent.
            std::thread::sleep(d);
            continue;
        }
        let next = core.borrow_mut().poll(now);
        sleep_or_wake(&wake, next).await;
    }
}

/// One connection, until it closes, fails, or the simulator stops.
async fn session(mut stream: TcpStream, core: Rc<RefCell<SimCore>>) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let notify = Rc::new(Notify::default());
    let (id, shared) = {
        let mut c = core.borrow_mut();
        (c.open_session(notify.clone()), c.shared.clone())
    };
    let mut sess = SimSession::new(id, &core.borrow(), Instant::now());
    let decoder = Decoder::new(MAX_COMMAND_LENGTH);
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut scratch = vec![0u8; READ_CHUNK_BYTES];
    loop {
        let deadline = {
            let mut c = core.borrow_mut();
            sess.poll(Instant::now(), &mut c);
            sess.next_deadline(&c)
        };
        if !sess.output().is_empty() {
            if stream.write_all(sess.output()).await.is_err() {
                break;
            }
            sess.output().clear();
        }
        if sess.wants_close() || shared.stop.load(Ordering::Relaxed) {
            break;
        }
        match read_or_wake(&mut stream, &mut scratch, &mut rbuf, &notify, deadline).await {
            Woke::Read(0) | Woke::Error(_) => break,
            Woke::Read(_) => {
                let now = Instant::now();
                let mut c = core.borrow_mut();
                loop {
                    // Frames the session handles in place are skipped without a decode.
                    if let Ok(Some(len)) = decoder.frame_len(&mut rbuf)
                        && sess.on_raw_frame(&rbuf[..len], now, &mut c)
                    {
                        rbuf.advance(len);
                        if sess.wants_close() {
                            break;
                        }
                        continue;
                    }
                    match decoder.decode(&mut rbuf) {
                        Ok(Some(pdu)) => {
                            sess.on_pdu(pdu, now, &mut c);
                            if sess.wants_close() {
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            sess.on_decode_error(e, &mut c);
                            if sess.wants_close() {
                                break;
                            }
                        }
                    }
                }
            }
            Woke::Notified | Woke::Deadline => {}
        }
    }
    if !sess.output().is_empty() {
        let _ = stream.write_all(sess.output()).await;
    }
    let _ = stream.close().await;
    core.borrow_mut().close_session(id);
}
