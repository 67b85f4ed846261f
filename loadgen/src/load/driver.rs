//! The glommio driver of the load generator: connect, bind, then read, decode, hand to the
//! machine, write its output in one go; a control task per core ends the run and reports progress.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use crossbeam_channel::Sender;
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use hdrhistogram::Histogram;
use smppgw_codec::Decoder;

use super::config::LoadConfig;
use super::core::{CoreResult, Counters, LoadCore, LoadShared};
use super::report::new_histogram;
use super::session::LoadSession;
use super::template::Templates;
use crate::limits::{MAX_COMMAND_LENGTH, READ_CHUNK_BYTES};
use crate::runtime::{Notify, Woke, read_or_wake};
use crate::sim::BindKind;

/// How often a core's control task looks at the run.
const CONTROL_TICK: Duration = Duration::from_millis(10);
/// Time allowed to set up a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Once the run finishes, sessions have this long to unbind before the core gives up on them.
const FINISH_GRACE: Duration = Duration::from_secs(5);
/// First and longest pause between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// One session to run on a core.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionPlan {
    pub index: usize,
    pub sessions: usize,
    pub kind: BindKind,
    pub quota: Option<u64>,
}

/// Progress from a core to the printing thread.
pub(crate) enum ProgressMsg {
    Sample { core: usize, counters: Counters, interval: Box<Histogram<u64>> },
    Done,
}

pub(crate) async fn run_core(
    cfg: Arc<LoadConfig>,
    shared: Arc<LoadShared>,
    index: usize,
    start: Instant,
    templates: Templates,
    plans: Vec<SessionPlan>,
    progress: Option<Sender<ProgressMsg>>,
) -> CoreResult {
    let core =
        Rc::new(RefCell::new(LoadCore::new(cfg.clone(), shared.clone(), index, start, Rc::new(templates))));
    let live = Rc::new(Cell::new(0usize));
    for plan in plans {
        live.set(live.get() + 1);
        let (core, live, shared) = (core.clone(), live.clone(), shared.clone());
        glommio::spawn_local(async move {
            session(plan, core).await;
            live.set(live.get() - 1);
            shared.live_sessions.fetch_sub(1, Ordering::AcqRel);
        })
        .detach();
    }
    let mut reported_done = false;
    let mut wait_until: Option<Instant> = None;
    let mut finished_at: Option<Instant> = None;
    let mut next_progress = start + Duration::from_secs(1);
    loop {
        glommio::timer::sleep(CONTROL_TICK).await;
        let now = Instant::now();
        let mut c = core.borrow_mut();
        c.take_routed();
        if !reported_done && c.senders_active == 0 {
            // Release: the ids this core awaits or sent to their owners are visible first.
            shared.sending_cores.fetch_sub(1, Ordering::AcqRel);
            reported_done = true;
        }
        let stop = shared.stop.load(Ordering::Relaxed);
        if shared.sending_cores.load(Ordering::Acquire) == 0 || stop {
            let until = *wait_until.get_or_insert(now + cfg.receipt_wait);
            // Ends once nothing is awaited on any core nor on its way to one (see
            // receipts_settled); stray or duplicate receipts never stand in for due ones.
            if stop || !cfg.expects_receipts() || shared.receipts_settled() || now >= until {
                c.finish();
                finished_at.get_or_insert(now);
            }
        }
        if now >= next_progress {
            next_progress += Duration::from_secs(1);
            if let Some(tx) = &progress {
                let interval = Box::new(std::mem::replace(&mut c.interval, new_histogram()));
                let _ = tx.try_send(ProgressMsg::Sample { core: index, counters: c.counters, interval });
            }
        }
        // A core whose sessions have ended still matches the ids it owns while sessions elsewhere
        // can bring their receipts. Sessions stuck on a peer that neither reads nor closes are
        // abandoned after a grace.
        let idle =
            live.get() == 0 && (finished_at.is_some() || shared.live_sessions.load(Ordering::Acquire) == 0);
        if idle || finished_at.is_some_and(|t| now >= t + FINISH_GRACE) {
            break;
        }
    }
    if let Some(tx) = &progress {
        let _ = tx.send(ProgressMsg::Done);
    }
    let mut c = core.borrow_mut();
    c.take_routed();
    c.take_result()
}

/// One session: connect, run until the connection ends, reconnect while the machine wants it.
async fn session(plan: SessionPlan, core: Rc<RefCell<LoadCore>>) {
    let notify = Rc::new(Notify::default());
    let mut sess = {
        let mut c = core.borrow_mut();
        c.add_session(notify.clone(), plan.kind.can_submit());
        LoadSession::new(plan.index, plan.sessions, plan.kind, plan.quota, &mut c, Instant::now())
    };
    let target = core.borrow().cfg.target;
    let decoder = Decoder::new(MAX_COMMAND_LENGTH);
    let mut scratch = vec![0u8; READ_CHUNK_BYTES];
    let mut backoff = BACKOFF_MIN;
    loop {
        // The machine closes a session that waits to reconnect past the end of its sending.
        let until = {
            let mut c = core.borrow_mut();
            sess.poll(Instant::now(), &mut c);
            sess.connect_until(&c)
        };
        if !sess.wants_connection() {
            break;
        }
        let mut stream = match TcpStream::connect_timeout(target, bounded(CONNECT_TIMEOUT, until)).await {
            Ok(s) => s,
            Err(_) => {
                sess.on_disconnected(false, Instant::now(), &mut core.borrow_mut());
                if sess.wants_connection() {
                    glommio::timer::sleep(bounded(backoff, until)).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(core.borrow().cfg.timeout));
        sess.on_connected(Instant::now(), &mut core.borrow_mut());
        let mut rbuf = BytesMut::with_capacity(READ_CHUNK_BYTES);
        drive(&mut stream, &mut sess, &core, &notify, &decoder, &mut scratch, &mut rbuf).await;
        let _ = stream.close().await;
        if !sess.is_closed() {
            sess.on_disconnected(true, Instant::now(), &mut core.borrow_mut());
            if sess.wants_connection() {
                let until = sess.connect_until(&core.borrow());
                glommio::timer::sleep(bounded(backoff, until)).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// `wait`, cut short at `until` if that is still to come, so that a session waiting to reconnect
/// notices its send deadline in time (at least 1 ms: a zero connect timeout is an error, not a
/// short wait).
fn bounded(wait: Duration, until: Option<Instant>) -> Duration {
    match until.map(|t| t.saturating_duration_since(Instant::now())) {
        Some(left) if !left.is_zero() => wait.min(left).max(Duration::from_millis(1)),
        _ => wait,
    }
}

/// Runs one connection until it ends.
async fn drive(
    stream: &mut TcpStream,
    sess: &mut LoadSession,
    core: &Rc<RefCell<LoadCore>>,
    notify: &Notify,
    decoder: &Decoder,
    scratch: &mut [u8],
    rbuf: &mut BytesMut,
) {
    loop {
        let deadline = {
            let mut c = core.borrow_mut();
            let now = Instant::now();
            sess.poll(now, &mut c);
            sess.next_deadline(now, &c)
        };
        if !sess.output().is_empty() {
            if stream.write_all(sess.output()).await.is_err() {
                return;
            }
            sess.output().clear();
        }
        if sess.is_closed() {
            return;
        }
        match read_or_wake(stream, scratch, rbuf, notify, deadline).await {
            Woke::Read(0) | Woke::Error(_) => return,
            Woke::Read(_) => {
                let now = Instant::now();
                let mut c = core.borrow_mut();
                loop {
                    if let Ok(Some(len)) = decoder.frame_len(rbuf)
                        && sess.on_raw_frame(&rbuf[..len], now, &mut c)
                    {
                        rbuf.advance(len);
                        continue;
                    }
                    match decoder.decode(rbuf) {
                        Ok(Some(pdu)) => sess.on_pdu(pdu, now, &mut c),
                        Ok(None) => break,
                        Err(e) => {
                            if !sess.on_decode_error(e, now, &mut c) {
                                return;
                            }
                        }
                    }
                }
            }
            Woke::Notified | Woke::Deadline => {}
        }
    }
}
