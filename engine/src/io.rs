//! The glommio drivers: every task that touches a socket or a timer lives here. Each one reads,
//! hands what it read to a sans-IO machine, writes what the machine produced in one write, and
//! sleeps until the machine's next deadline.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncRead, AsyncWriteExt, Future};
use glommio::net::{TcpListener, TcpStream};
use glommio::timer::Timer;
use smppgw_codec::{CommandStatus, DecodeError, Decoder};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::core::{Core, FAILOVER_MAX, Job, ReplyTo, SessionMsg, VendorMsg};
use crate::customer::{BindKind, CustomerSession, CustomerSettings, Event};
use crate::limits;
use crate::mailbox::Mailbox;
use crate::rate::AdaptiveRate;
use crate::snapshot::{CustomerRt, Snapshot};
use crate::vendor::{Outcome, VendorBindKind, VendorEvent, VendorSession, VendorSettings};

/// Per-core buffers and caches shared by the drivers of that core.
pub struct CoreIo {
    /// Socket reads land here, then the unconsumed bytes move to the session's own buffer, so an
    /// idle session holds no read buffer.
    pub scratch: RefCell<Vec<u8>>,
    /// Verified (system_id, password) -> the hash they were verified against.
    pub auth_cache: RefCell<std::collections::HashMap<(Bytes, Bytes), String>>,
    /// Monotonic origin for rate limiters.
    pub epoch: Instant,
}

impl CoreIo {
    /// Buffers for one core.
    pub fn new(epoch: Instant) -> CoreIo {
        CoreIo {
            scratch: RefCell::new(vec![0; limits::READ_SCRATCH_BYTES]),
            auth_cache: RefCell::new(std::collections::HashMap::new()),
            epoch,
        }
    }

    fn nanos(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_nanos() as u64
    }
}

enum Wake {
    Read,
    Eof,
    Mail,
    Timer,
}

/// Waits for bytes (appended to `rbuf`), a mailbox item, or the deadline.
async fn wait<M>(stream: &mut TcpStream, rbuf: &mut BytesMut, io: &CoreIo, mailbox: &Mailbox<M>, timer: &mut Timer) -> Wake {
    poll_fn(|cx| {
        if mailbox.poll_ready(cx.waker()) {
            return Poll::Ready(Wake::Mail);
        }
        {
            let mut scratch = io.scratch.borrow_mut();
            match Pin::new(&mut *stream).poll_read(cx, &mut scratch[..]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Wake::Eof),
                Poll::Ready(Ok(n)) => {
                    rbuf.extend_from_slice(&scratch[..n]);
                    return Poll::Ready(Wake::Read);
                }
                Poll::Pending => {}
            }
        }
        if Pin::new(&mut *timer).poll(cx).is_ready() {
            return Poll::Ready(Wake::Timer);
        }
        Poll::Pending
    })
    .await
}

/// A timer re-armed only when the deadline moves.
struct Deadline {
    at: Instant,
    timer: Timer,
}

impl Deadline {
    fn new(at: Instant) -> Deadline {
        Deadline { at, timer: Timer::new(at.saturating_duration_since(Instant::now())) }
    }
    fn set(&mut self, at: Instant) {
        if at != self.at {
            *self = Deadline::new(at);
        }
    }
}

/// Accepts customer connections on this core until shutdown.
pub async fn accept_loop(core: Rc<Core>, io: Rc<CoreIo>, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(core = core.idx, "accept failed: {e}");
                Timer::new(Duration::from_millis(10)).await;
                continue;
            }
        };
        if core.shutting_down.get() {
            continue;
        }
        let peer = stream.peer_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let snap = core.snapshot();
        if core.metrics.sessions.load(Ordering::Relaxed) >= u64::from(snap.config.server.max_binds) * 2 {
            // Far past the bind limit: refuse at the door rather than hold sockets open.
            drop(stream);
            continue;
        }
        let span = info_span!("customer", core = core.idx, %peer, system_id = tracing::field::Empty);
        glommio::spawn_local(customer_session(core.clone(), io.clone(), stream, peer).instrument(span)).detach();
    }
}

fn customer_settings(snap: &Snapshot) -> CustomerSettings {
    let s = &snap.config.server;
    CustomerSettings {
        system_id: Bytes::copy_from_slice(s.system_id.as_bytes()),
        enquire_link_interval: Duration::from_millis(u64::from(s.enquire_link_interval_ms)),
        session_timeout: Duration::from_millis(u64::from(s.session_timeout_ms)),
        bind_timeout: Duration::from_millis(u64::from(s.bind_timeout_ms)),
        response_timeout: Duration::from_millis(u64::from(s.response_timeout_ms)),
    }
}

async fn authenticate(
    core: &Core,
    io: &CoreIo,
    snap: &Snapshot,
    kind: BindKind,
    bind: &smppgw_codec::Bind,
    peer: IpAddr,
) -> Result<Arc<CustomerRt>, CommandStatus> {
    let Some(c) = snap.customer(&bind.system_id).cloned() else {
        return Err(CommandStatus::ESME_RINVSYSID);
    };
    if !c.cfg.allowed_ips.is_empty() && !c.cfg.allowed_ips.iter().any(|n| n.contains(peer)) {
        warn!(system_id = %c.cfg.system_id, %peer, "bind refused: source address not allowed");
        return Err(CommandStatus::ESME_RBINDFAIL);
    }
    let key = (bind.system_id.clone(), bind.password.clone());
    let cached = io.auth_cache.borrow().get(&key).is_some_and(|h| *h == c.cfg.password_hash);
    if !cached {
        let (hash, pw) = (c.cfg.password_hash.clone(), bind.password.clone());
        // Password hashing is deliberately slow: keep it off the reactor.
        let ok = glommio::executor().spawn_blocking(move || crate::config::verify_password(&hash, &pw)).await;
        if !ok {
            return Err(CommandStatus::ESME_RINVPASWD);
        }
        let mut cache = io.auth_cache.borrow_mut();
        if cache.len() >= limits::AUTH_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, c.cfg.password_hash.clone());
    }
    if !c.allows(kind) {
        return Err(CommandStatus::ESME_RBINDFAIL);
    }
    if core.metrics.sessions_bound.load(Ordering::Relaxed) >= u64::from(snap.config.server.max_binds) {
        return Err(CommandStatus::ESME_RBINDFAIL);
    }
    if !c.try_add_bind() {
        return Err(CommandStatus::ESME_RBINDFAIL);
    }
    Ok(c)
}

async fn customer_session(core: Rc<Core>, io: Rc<CoreIo>, mut stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    core.metrics.sessions.fetch_add(1, Ordering::Relaxed);
    let snap = core.snapshot();
    let mailbox = Rc::new(Mailbox::new(limits::WINDOW_MAX as usize + limits::CUSTOMER_MAILBOX_MAX));
    let (slot, generation) = core.add_session(mailbox.clone());
    let now = Instant::now();
    let mut machine = CustomerSession::new(customer_settings(&snap), now);
    let decoder = Decoder::new(snap.config.server.max_command_length);
    let (mut rbuf, mut wbuf) = (BytesMut::new(), BytesMut::new());
    let (mut events, mut msgs) = (Vec::new(), Vec::new());
    let mut customer: Option<Arc<CustomerRt>> = None;
    let mut deadline = Deadline::new(machine.next_deadline());
    if core.shutting_down.get() {
        let _ = mailbox.push(SessionMsg::Shutdown);
    }
    let mut closing = false;
    while !closing {
        deadline.set(machine.next_deadline());
        let wake = wait(&mut stream, &mut rbuf, &io, &mailbox, &mut deadline.timer).await;
        let now = Instant::now();
        match wake {
            Wake::Eof => break,
            Wake::Read => loop {
                match decoder.decode(&mut rbuf) {
                    Ok(Some(pdu)) => machine.on_pdu(pdu, now, &mut wbuf, &mut events),
                    Ok(None) => break,
                    Err(e) => {
                        match &e {
                            DecodeError::Pdu { .. } => core.metrics.malformed.fetch_add(1, Ordering::Relaxed),
                            _ => core.metrics.framing_errors.fetch_add(1, Ordering::Relaxed),
                        };
                        debug!("bad PDU: {e}");
                        machine.on_decode_error(&e, now, &mut wbuf, &mut events);
                        if !matches!(e, DecodeError::Pdu { .. }) {
                            break;
                        }
                    }
                }
            },
            Wake::Mail => {
                mailbox.drain_into(&mut msgs);
                for m in msgs.drain(..) {
                    match m {
                        SessionMsg::Done { seq, data_sm, result } => {
                            machine.submit_done(seq, data_sm, result, &mut wbuf, &mut events)
                        }
                        SessionMsg::Shutdown => machine.begin_shutdown(now, &mut wbuf, &mut events),
                    }
                }
            }
            Wake::Timer => machine.on_tick(now, &mut wbuf, &mut events),
        }
        for ev in events.drain(..) {
            match ev {
                Event::Bind { kind, bind, seq } => {
                    let snap = core.snapshot();
                    match authenticate(&core, &io, &snap, kind, &bind, peer.ip()).await {
                        Ok(c) => {
                            core.metrics.binds.fetch_add(1, Ordering::Relaxed);
                            core.metrics.sessions_bound.fetch_add(1, Ordering::Relaxed);
                            tracing::Span::current().record("system_id", c.cfg.system_id.as_str());
                            info!(?kind, "bound");
                            let window = if c.cfg.window == 0 { snap.config.server.window } else { c.cfg.window };
                            machine.bind_accepted(kind, seq, c.id_style, window, &mut wbuf);
                            customer = Some(c);
                        }
                        Err(st) => {
                            core.metrics.bind_failures.fetch_add(1, Ordering::Relaxed);
                            info!(system_id = %String::from_utf8_lossy(&bind.system_id), status = %st, "bind refused");
                            let mut more = Vec::new();
                            machine.bind_refused(kind, seq, st, Instant::now(), &mut wbuf, &mut more);
                            closing |= more.iter().any(|e| matches!(e, Event::Close(_)));
                        }
                    }
                }
                ev @ (Event::Submit { .. } | Event::DataSm { .. }) => {
                    let (seq, submit, segments, data_sm) = match ev {
                        Event::Submit { seq, submit, segments } => (seq, submit, segments, false),
                        Event::DataSm { seq, submit, segments } => (seq, submit, segments, true),
                        _ => continue,
                    };
                    core.metrics.submits.fetch_add(1, Ordering::Relaxed);
                    let Some(c) = &customer else { continue };
                    if !c.limiter.try_acquire(segments, io.nanos(now)) {
                        core.metrics.throttled_customer.fetch_add(1, Ordering::Relaxed);
                        core.metrics.rejected.fetch_add(1, Ordering::Relaxed);
                        machine.submit_done(seq, data_sm, Err(CommandStatus::ESME_RTHROTTLED), &mut wbuf, &mut events_sink());
                        continue;
                    }
                    let job = Job {
                        msg_id: core.next_msg_id(),
                        reply: ReplyTo { core: core.idx as u16, session: slot, generation, seq },
                        customer: c.idx,
                        data_sm,
                        submit,
                        route: 0,
                        tried: [0; FAILOVER_MAX],
                        tried_len: 0,
                        last_status: None,
                        received: now,
                    };
                    core.submit(job);
                }
                Event::DeliverResp { .. } => {}
                Event::Request(pdu) => {
                    // query_sm, cancel_sm, replace_sm and submit_multi arrive with the receipt
                    // store; until then they are refused with their own failure status.
                    let st = match pdu.command_id() {
                        smppgw_codec::CommandId::QUERY_SM => CommandStatus::ESME_RQUERYFAIL,
                        smppgw_codec::CommandId::CANCEL_SM => CommandStatus::ESME_RCANCELFAIL,
                        smppgw_codec::CommandId::REPLACE_SM => CommandStatus::ESME_RREPLACEFAIL,
                        _ => CommandStatus::ESME_RSUBMITFAIL,
                    };
                    let h = smppgw_codec::Header {
                        command_length: 16,
                        command_id: pdu.command_id(),
                        command_status: CommandStatus::ESME_ROK,
                        sequence_number: pdu.sequence_number,
                    };
                    smppgw_codec::Pdu::error_response(&h, st).encode(&mut wbuf);
                }
                Event::Close(reason) => {
                    debug!(?reason, "closing");
                    closing = true;
                }
            }
        }
        if !wbuf.is_empty() {
            if stream.write_all(&wbuf).await.is_err() {
                break;
            }
            wbuf.clear();
        }
        if machine.is_closed() {
            closing = true;
        }
    }
    mailbox.close();
    core.remove_session(slot);
    core.metrics.sessions.fetch_sub(1, Ordering::Relaxed);
    if let Some(c) = customer {
        c.remove_bind();
        core.metrics.sessions_bound.fetch_sub(1, Ordering::Relaxed);
        info!(outstanding = machine.outstanding(), "session closed");
    }
    let _ = stream.close().await;
}

fn events_sink() -> Vec<Event> {
    Vec::new()
}

fn vendor_settings(v: &crate::config::VendorConfig, kind: VendorBindKind) -> VendorSettings {
    VendorSettings {
        system_id: Bytes::copy_from_slice(v.system_id.as_bytes()),
        password: Bytes::copy_from_slice(v.password.as_bytes()),
        system_type: Bytes::copy_from_slice(v.system_type.as_bytes()),
        kind,
        window: v.window,
        response_timeout: Duration::from_millis(u64::from(v.response_timeout_ms)),
        enquire_link_interval: Duration::from_millis(u64::from(v.enquire_link_interval_ms)),
    }
}

/// Keeps one vendor bind slot connected and bound, and feeds it the jobs routed to it.
pub async fn vendor_slot(core: Rc<Core>, io: Rc<CoreIo>, vendor: u32, slot: u32, mailbox: Rc<Mailbox<VendorMsg>>) {
    let mut backoff_ms = 0u64;
    let mut queue: VecDeque<Job> = VecDeque::new();
    let mut shutting = false;
    let mut msgs = Vec::new();
    loop {
        let snap = core.snapshot();
        let Some(v) = snap.vendors.get(vendor as usize).cloned() else { return };
        let Some(slot_rt) = v.slots.get(slot as usize).cloned() else { return };
        let cfg = &v.cfg;
        if shutting || core.shutting_down.get() && mailbox.is_closed() {
            break;
        }
        if backoff_ms > 0 {
            // Jitter: +-25%, so a vendor restart is not met by every bind at the same instant.
            let jitter = (core.next_msg_id() % (backoff_ms / 2 + 1)) as i64 - (backoff_ms / 4) as i64;
            let wait_ms = (backoff_ms as i64 + jitter).max(1) as u64;
            let until = Instant::now() + Duration::from_millis(u64::from(wait_ms));
            // While down, jobs that raced into the mailbox go elsewhere.
            while Instant::now() < until {
                let mut t = Timer::new(until.saturating_duration_since(Instant::now()));
                let got = poll_fn(|cx| {
                    if mailbox.poll_ready(cx.waker()) {
                        return Poll::Ready(true);
                    }
                    Pin::new(&mut t).poll(cx).map(|_| false)
                })
                .await;
                if got {
                    redispatch_mail(&core, &mailbox, &slot_rt, &mut msgs, &mut shutting);
                    if shutting {
                        return;
                    }
                    if mailbox.is_closed() {
                        return;
                    }
                }
            }
        }
        backoff_ms = (backoff_ms * 2).clamp(u64::from(cfg.reconnect_backoff_min_ms), u64::from(cfg.reconnect_backoff_max_ms));
        let addr = format!("{}:{}", cfg.host, cfg.port);
        let connected = TcpStream::connect_timeout(addr.as_str(), Duration::from_millis(u64::from(cfg.response_timeout_ms))).await;
        let mut stream = match connected {
            Ok(s) => s,
            Err(e) => {
                warn!(vendor = %cfg.name, slot, "connect to {addr} failed: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let kind = match cfg.bind_type {
            crate::config::VendorBindType::Transmitter => VendorBindKind::Transmitter,
            _ => VendorBindKind::Transceiver,
        };
        let (mut rbuf, mut wbuf) = (BytesMut::new(), BytesMut::new());
        let mut machine: VendorSession<Job> = VendorSession::new(vendor_settings(cfg, kind), Instant::now(), &mut wbuf);
        let per_bind = if cfg.throughput == 0 { 0.0 } else { f64::from(cfg.throughput) / f64::from(cfg.binds.max(1)) };
        let mut rate = AdaptiveRate::new(per_bind);
        let decoder = Decoder::default();
        let mut events: Vec<VendorEvent<Job>> = Vec::new();
        let mut deadline = Deadline::new(machine.next_deadline());
        let mut unbinding = false;
        'session: loop {
            if stream.write_all(&wbuf).await.is_err() {
                break 'session;
            }
            wbuf.clear();
            let now = Instant::now();
            let mut next = machine.next_deadline();
            if !queue.is_empty() && machine.has_room() {
                if let Some(at) = rate.ready_at(io.nanos(now)) {
                    next = next.min(io.epoch + Duration::from_nanos(at));
                }
            }
            deadline.set(next);
            let wake = wait(&mut stream, &mut rbuf, &io, &mailbox, &mut deadline.timer).await;
            let now = Instant::now();
            match wake {
                Wake::Eof => break 'session,
                Wake::Read => loop {
                    match decoder.decode(&mut rbuf) {
                        Ok(Some(pdu)) => machine.on_pdu(pdu, now, &mut wbuf, &mut events),
                        Ok(None) => break,
                        Err(e) => {
                            warn!(vendor = %cfg.name, slot, "bad PDU from vendor: {e}");
                            machine.on_decode_error(&e, &mut wbuf, &mut events);
                            if !matches!(e, DecodeError::Pdu { .. }) {
                                break;
                            }
                        }
                    }
                },
                Wake::Mail => {
                    mailbox.drain_into(&mut msgs);
                    for m in msgs.drain(..) {
                        match m {
                            VendorMsg::Job(j) => queue.push_back(j),
                            VendorMsg::Shutdown => shutting = true,
                        }
                    }
                }
                Wake::Timer => machine.on_tick(now, &mut wbuf, &mut events),
            }
            for ev in events.drain(..) {
                match ev {
                    VendorEvent::Bound => {
                        info!(vendor = %cfg.name, slot, "vendor bound");
                        slot_rt.up.store(true, Ordering::Relaxed);
                        backoff_ms = 0;
                    }
                    VendorEvent::BindFailed(st) => warn!(vendor = %cfg.name, slot, status = %st, "vendor refused bind"),
                    VendorEvent::Done { job, outcome } => {
                        slot_rt.load.fetch_sub(1, Ordering::Relaxed);
                        on_outcome(&core, &io, vendor, &mut rate, job, outcome, now);
                    }
                    VendorEvent::Deliver(_d) => {
                        // Receipts and MO are routed by the receipt store (next issue).
                    }
                    VendorEvent::Close => break 'session,
                }
            }
            // Send what the window and the pace allow.
            while machine.has_room() {
                let Some(job) = queue.pop_front() else { break };
                let t = io.nanos(now);
                if rate.ready_at(t).is_some() {
                    queue.push_front(job);
                    break;
                }
                match machine.submit(job, now, &mut wbuf, |j| &j.submit) {
                    Ok(()) => {
                        rate.on_send(t);
                        slot_rt.sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(job) => {
                        queue.push_front(job);
                        break;
                    }
                }
            }
            slot_rt.slowed.store(rate.is_slowed(), Ordering::Relaxed);
            if shutting && queue.is_empty() && machine.inflight() == 0 && !unbinding {
                machine.unbind(now, &mut wbuf);
                unbinding = true;
            }
            if machine.is_closed() {
                let _ = stream.write_all(&wbuf).await;
                break 'session;
            }
        }
        // The connection is gone.
        slot_rt.up.store(false, Ordering::Relaxed);
        machine.close(&mut events);
        let now = Instant::now();
        for ev in events.drain(..) {
            if let VendorEvent::Done { job, outcome } = ev {
                slot_rt.load.fetch_sub(1, Ordering::Relaxed);
                on_outcome(&core, &io, vendor, &mut rate, job, outcome, now);
            }
        }
        // Jobs never sent are safe to send elsewhere.
        for job in queue.drain(..) {
            slot_rt.load.fetch_sub(1, Ordering::Relaxed);
            core.dispatch(job);
        }
        let _ = stream.close().await;
        if shutting {
            break;
        }
        slot_rt.reconnects.fetch_add(1, Ordering::Relaxed);
        core.metrics.vendor_reconnects.fetch_add(1, Ordering::Relaxed);
        if backoff_ms == 0 {
            backoff_ms = u64::from(cfg.reconnect_backoff_min_ms);
        }
    }
    mailbox.close();
    // Anything that raced in after close goes elsewhere.
    let snap = core.snapshot();
    if let Some(slot_rt) = snap.vendors.get(vendor as usize).and_then(|v| v.slots.get(slot as usize)) {
        slot_rt.up.store(false, Ordering::Relaxed);
        redispatch_mail(&core, &mailbox, slot_rt, &mut msgs, &mut shutting);
    }
}

fn redispatch_mail(core: &Core, mailbox: &Mailbox<VendorMsg>, slot_rt: &crate::snapshot::BindSlot, msgs: &mut Vec<VendorMsg>, shutting: &mut bool) {
    mailbox.drain_into(msgs);
    for m in msgs.drain(..) {
        match m {
            VendorMsg::Job(j) => {
                slot_rt.load.fetch_sub(1, Ordering::Relaxed);
                core.dispatch(j);
            }
            VendorMsg::Shutdown => *shutting = true,
        }
    }
}

fn on_outcome(core: &Core, io: &CoreIo, vendor: u32, rate: &mut AdaptiveRate, mut job: Job, outcome: Outcome, now: Instant) {
    match outcome {
        Outcome::Accepted(_vendor_id) => core.finish(&job, Ok(job.msg_id)),
        Outcome::Refused(st) if st.is_temporary() => {
            if st == CommandStatus::ESME_RTHROTTLED {
                core.metrics.vendor_throttled.fetch_add(1, Ordering::Relaxed);
                rate.on_throttled(io.nanos(now));
            }
            job.last_status = Some(st);
            if job.mark_tried(vendor) {
                core.metrics.failovers.fetch_add(1, Ordering::Relaxed);
                core.dispatch(job);
            } else {
                core.finish(&job, Err(st));
            }
        }
        Outcome::Refused(st) => core.finish(&job, Err(st)),
        Outcome::Unknown => {
            core.metrics.vendor_timeouts.fetch_add(1, Ordering::Relaxed);
            if core.failover_on_unknown && job.mark_tried(vendor) {
                // Documented: the first vendor may have delivered it; counted as a possible duplicate.
                core.metrics.possible_duplicates.fetch_add(1, Ordering::Relaxed);
                core.metrics.failovers.fetch_add(1, Ordering::Relaxed);
                job.last_status = Some(CommandStatus::ESME_RSYSERR);
                core.dispatch(job);
            } else {
                core.finish(&job, Err(CommandStatus::ESME_RSUBMITFAIL));
            }
        }
    }
}
