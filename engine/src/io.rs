//! The glommio drivers: every task that touches a socket or a timer lives here. Each one reads,
//! hands what it read to a sans-IO machine, writes what the machine produced in one write, and
//! sleeps until the machine's next deadline.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd};
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

use crate::balance::{Balancer, Handoff};
use crate::core::{Core, CoreMsg, Found, Job, OpJob, ReplyKind, ReplyTo, SessionMsg, VendorMsg};
use crate::customer::{BindKind, CustomerSession, CustomerSettings, Event};
use crate::deliveries::{Answer, SessionRef};
use crate::limits;
use crate::loglimit::LogLimit;
use crate::mailbox::Mailbox;
use crate::rate::AdaptiveRate;
use crate::snapshot::{BoundWith, CustomerRt, Snapshot};
use crate::store::Wanted;
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
    /// Credentials being verified right now.
    pub auth_inflight: RefCell<std::collections::HashSet<(Bytes, Bytes)>>,
    /// Failed password checks by source address.
    failed_binds: RefCell<FailedBinds>,
    /// Password checks waiting for or running on this core's hashing thread
    /// ([`limits::PASSWORD_CHECKS_PENDING_MAX`]); each one's [`CheckSlot`] gives its place back
    /// on that thread once the hash is done (or dropped unrun).
    password_checks: Arc<std::sync::atomic::AtomicUsize>,
    /// Binds refused for a full password check queue or a check past the bind timeout (logged
    /// at most once a second).
    checks_refused: LogLimit,
    /// Connections not bound yet, by source address ([`limits::UNBOUND_PER_ADDRESS_MAX`]).
    unbound: RefCell<crate::hash::FxHashMap<std::net::IpAddr, u32>>,
    /// Lines a peer can cause at its own rate, each logged at most once a second here:
    /// connections closed at once for [`limits::UNBOUND_PER_ADDRESS_MAX`], refused binds, binds
    /// refused for their address or for too many failed password checks, bad PDUs from vendors.
    unbound_refused: LogLimit,
    bind_refused: LogLimit,
    bind_address_refused: LogLimit,
    bind_checks_exhausted: LogLimit,
    vendor_bad_pdu: LogLimit,
    /// Places customer connections evenly over the cores.
    pub balancer: Arc<Balancer>,
}

impl CoreIo {
    /// Buffers for one core.
    pub fn new(epoch: Instant, balancer: Arc<Balancer>) -> CoreIo {
        CoreIo {
            balancer,
            scratch: RefCell::new(vec![0; limits::READ_SCRATCH_BYTES]),
            auth_cache: RefCell::new(std::collections::HashMap::new()),
            epoch,
            auth_inflight: RefCell::new(std::collections::HashSet::new()),
            failed_binds: RefCell::new(FailedBinds::default()),
            password_checks: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            checks_refused: LogLimit::default(),
            unbound: RefCell::new(Default::default()),
            unbound_refused: LogLimit::default(),
            bind_refused: LogLimit::default(),
            bind_address_refused: LogLimit::default(),
            bind_checks_exhausted: LogLimit::default(),
            vendor_bad_pdu: LogLimit::default(),
        }
    }

    /// Counts a new connection from `ip` as unbound; false (and nothing counted) when the node
    /// is crowded (`Some(cap)`) and that address already holds `cap` unbound connections here.
    fn enter_unbound(&self, ip: std::net::IpAddr, crowded: Option<u32>) -> bool {
        let mut u = self.unbound.borrow_mut();
        let n = u.entry(ip).or_insert(0);
        if crowded.is_some_and(|cap| *n >= cap) {
            return false;
        }
        *n += 1;
        true
    }

    /// A connection from `ip` counted by [`CoreIo::enter_unbound`] bound or closed.
    fn leave_unbound(&self, ip: std::net::IpAddr) {
        let mut u = self.unbound.borrow_mut();
        if let Some(n) = u.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                u.remove(&ip);
            }
        }
    }

    fn nanos(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_nanos() as u64
    }
}

/// Failed password checks per source address on one core (see
/// [`limits::BIND_FAILURES_PER_PEER`]).
#[derive(Debug, Default)]
struct FailedBinds {
    /// Address ([`FailedBinds::key`]) -> (start of its window, failures in it).
    peers: std::collections::HashMap<IpAddr, (Instant, u32)>,
}

impl FailedBinds {
    const WINDOW: Duration = Duration::from_millis(limits::BIND_FAILURE_WINDOW_MS);

    /// What `peer` counts as: an IPv6 address by its /64 (one host usually holds a whole one),
    /// an IPv4-mapped one as its IPv4 address.
    fn key(peer: IpAddr) -> IpAddr {
        match peer {
            IpAddr::V4(_) => peer,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
            },
        }
    }

    /// Failures counted for `peer` in its current window.
    fn failures(&self, peer: IpAddr, now: Instant) -> u32 {
        match self.peers.get(&Self::key(peer)) {
            Some(&(since, n)) if now.saturating_duration_since(since) < Self::WINDOW => n,
            _ => 0,
        }
    }

    /// Whether `peer` has used up its failures for now.
    #[cfg(test)]
    fn exhausted(&self, peer: IpAddr, now: Instant) -> bool {
        self.failures(peer, now) >= limits::BIND_FAILURES_PER_PEER
    }

    /// A check from `peer` begins: counted as failed until it succeeds ([`FailedBinds::passed`]),
    /// so that checks run in parallel cannot exceed the budget together.
    fn begin(&mut self, peer: IpAddr, now: Instant) {
        self.failed(peer, now);
    }

    /// A check begun from `peer` succeeded: it does not count.
    fn passed(&mut self, peer: IpAddr) {
        if let Some(e) = self.peers.get_mut(&Self::key(peer)) {
            e.1 = e.1.saturating_sub(1);
        }
    }

    /// Counts a failed check from `peer`.
    fn failed(&mut self, peer: IpAddr, now: Instant) {
        let peer = Self::key(peer);
        if self.peers.len() >= limits::BIND_FAILURE_PEERS_MAX && !self.peers.contains_key(&peer) {
            self.peers.retain(|_, &mut (since, _)| now.saturating_duration_since(since) < Self::WINDOW);
            if self.peers.len() >= limits::BIND_FAILURE_PEERS_MAX {
                // The address with the fewest failures goes (the oldest of them): forgetting
                // all of them would free an address that used up its failures along with the
                // ones whose failures made room.
                let evict = self.peers.iter().min_by_key(|&(_, &(since, n))| (n, since)).map(|(ip, _)| *ip);
                if let Some(ip) = evict {
                    self.peers.remove(&ip);
                }
            }
        }
        let e = self.peers.entry(peer).or_insert((now, 0));
        if now.saturating_duration_since(e.0) >= Self::WINDOW {
            *e = (now, 0);
        }
        e.1 = e.1.saturating_add(1);
    }
}

enum Wake {
    Read,
    Eof,
    Mail,
    Timer,
}

/// Waits for bytes (at most `read_max` of them, appended to `rbuf`; none when it is 0), a
/// mailbox item, or the deadline.
async fn wait<M>(
    stream: &mut TcpStream,
    rbuf: &mut BytesMut,
    read_max: usize,
    io: &CoreIo,
    mailbox: &Mailbox<M>,
    timer: &mut Timer,
) -> Wake {
    poll_fn(|cx| {
        if mailbox.poll_ready(cx.waker()) {
            return Poll::Ready(Wake::Mail);
        }
        if read_max > 0 {
            let mut scratch = io.scratch.borrow_mut();
            let len = read_max.min(scratch.len());
            match Pin::new(&mut *stream).poll_read(cx, &mut scratch[..len]) {
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

/// `name` (host:port) resolved on a thread of its own, at most [`VENDOR_ADDRS_MAX`] addresses;
/// polled every [`RESOLVE_POLL_MS`] (lookups are rare: one per vendor reconnect).
async fn resolve(name: String) -> std::io::Result<Vec<SocketAddr>> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::Builder::new().name("smppgw-dns".into()).spawn(move || {
        use std::net::ToSocketAddrs;
        let _ = tx.send(name.to_socket_addrs().map(|it| it.take(VENDOR_ADDRS_MAX).collect::<Vec<_>>()));
    })?;
    loop {
        match rx.try_recv() {
            Ok(found) => return found,
            Err(crossbeam_channel::TryRecvError::Empty) => {
                Timer::new(Duration::from_millis(RESOLVE_POLL_MS)).await
            }
            Err(crossbeam_channel::TryRecvError::Disconnected) => {
                return Err(std::io::Error::other("the lookup thread ended without an answer"));
            }
        };
    }
}

/// How often a vendor host name's lookup is looked at, in milliseconds.
const RESOLVE_POLL_MS: u64 = 10;

/// Gives back what a burst left in a session's read buffer once it has been decoded: nothing is
/// kept when nothing is left, and a small partial frame moves to an allocation of its own
/// (decoded PDUs are slices of the read's allocation, which the session itself then no longer
/// pins). A large partial frame (a long PDU still arriving) stays where it is: copying it at
/// every read would cost its size squared over the read size.
fn trim_read_buffer(rbuf: &mut BytesMut) {
    if rbuf.is_empty() {
        *rbuf = BytesMut::new();
    } else if rbuf.len() <= limits::PARTIAL_FRAME_COPY_MAX {
        *rbuf = BytesMut::from(&rbuf[..]);
    }
}

/// Gives back a write buffer's capacity beyond [`limits::SESSION_WRITE_BUFFER_KEEP_BYTES`] once
/// it has been written.
fn trim_write_buffer(wbuf: &mut BytesMut) {
    if wbuf.is_empty() && wbuf.capacity() > limits::SESSION_WRITE_BUFFER_KEEP_BYTES {
        *wbuf = BytesMut::new();
    }
}

/// Takes `segments` from the customer's own rate and its share of the limit over all nodes, or
/// nothing: what one of them granted goes back when the other refuses.
fn take_customer_rate(c: &CustomerRt, segments: u32, now_ns: u64) -> bool {
    if !c.limiter.try_acquire(segments, now_ns) {
        return false;
    }
    if !c.lease.try_take(segments) {
        c.limiter.give_back(segments);
        return false;
    }
    true
}

/// Gives back what [`take_customer_rate`] took, for a message another limit (10DLC) refused.
/// Counts a submit (or a submit_multi destination) refused for a throughput limit.
fn count_throttled(core: &Core, c: &CustomerRt) {
    c.counters.throttled.fetch_add(1, Ordering::Relaxed);
    core.metrics.submit_results.add(core.idx, CommandStatus::ESME_RTHROTTLED.0);
    core.metrics.rejected.fetch_add(1, Ordering::Relaxed);
}

/// Counts `n` submits (submit_multi destinations, already counted received) refused before
/// routing with `status`: submits = accepted + refused + rejected.
fn count_rejected(core: &Core, c: &CustomerRt, n: u64, status: CommandStatus) {
    core.metrics.rejected.fetch_add(n, Ordering::Relaxed);
    for _ in 0..n {
        core.metrics.submit_results.add(core.idx, status.0);
    }
    c.counters.rejected.fetch_add(n, Ordering::Relaxed);
}

pub(crate) fn give_customer_rate_back(c: &CustomerRt, segments: u32) {
    c.limiter.give_back(segments);
    c.lease.give_back(segments);
}

/// How late a session's timer may be, while its socket stays readable, before the driver acts
/// on the deadline itself (the wait looks at the socket first).
const STARVED_TIMER: Duration = Duration::from_secs(1);

/// A timer for the next deadline of a session machine.
///
/// Re-armed only when the deadline moves earlier or the timer has fired: a later deadline (every
/// PDU pushes the keepalive out) keeps the armed timer, which then fires early, finds nothing to
/// do, and is re-armed once, instead of a new timer per PDU.
struct Deadline {
    at: Instant,
    timer: Timer,
    fired: bool,
}

impl Deadline {
    fn new(at: Instant) -> Deadline {
        Deadline { at, timer: Timer::new(at.saturating_duration_since(Instant::now())), fired: false }
    }
    fn set(&mut self, at: Instant) {
        if at < self.at || self.fired {
            *self = Deadline::new(at);
        }
    }
}

/// First pause after a failed accept.
const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(10);
/// Longest pause between accepts that keep failing.
const ACCEPT_PAUSE_MAX: Duration = Duration::from_millis(200);

/// Accepts customer connections on this core until shutdown.
pub async fn accept_loop(core: Rc<Core>, io: Rc<CoreIo>, listener: TcpListener) {
    // Out of descriptors, every accept fails until one frees: the pause grows (the connection
    // waits in the listen backlog meanwhile) and the log says so once a second, not a hundred
    // times.
    let mut pause = ACCEPT_PAUSE_MIN;
    let mut failed = 0u64;
    let mut last_warned: Option<Instant> = None;
    loop {
        let stream = match listener.accept().await {
            Ok(s) => {
                pause = ACCEPT_PAUSE_MIN;
                s
            }
            Err(e) => {
                failed += 1;
                if last_warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    warn!(
                        core = core.idx,
                        failed, "accept failed: {e} (connections wait in the listen backlog)"
                    );
                    last_warned = Some(Instant::now());
                    failed = 0;
                }
                Timer::new(pause).await;
                pause = (pause * 2).min(ACCEPT_PAUSE_MAX);
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
        let here = core.idx;
        let to = io.balancer.place(here);
        if to != here {
            // SAFETY: `stream` owns this descriptor and outlives the borrow, which only dups it.
            let dup = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) }.try_clone_to_owned();
            match dup {
                Ok(fd) => match io.balancer.hand(here, to, Handoff { fd, peer }) {
                    // The other core serves it through its own descriptor.
                    Ok(()) => continue,
                    Err(h) => drop(h),
                },
                Err(e) => {
                    debug!(core = here, "keeping a connection: dup failed: {e}");
                    io.balancer.keep(here, to);
                }
            }
        }
        serve(&core, &io, stream, peer);
    }
}

/// Unbound connections one address may hold per core on a crowded node: at most
/// [`limits::UNBOUND_PER_ADDRESS_MAX`], and at most an eighth of the node's `max_binds` over all
/// cores, so that on a node with a small `max_binds` one address cannot take the rest of the
/// budget either.
fn unbound_cap(max_binds: u32, cores: usize) -> u32 {
    let share = max_binds / 8 / (cores.max(1) as u32);
    share.clamp(1, limits::UNBOUND_PER_ADDRESS_MAX)
}

/// Serves a connection another core accepted and handed to this one.
pub fn adopt(core: &Rc<Core>, io: &Rc<CoreIo>, h: Handoff) {
    if core.shutting_down.get() {
        io.balancer.closed(core.idx);
        return;
    }
    // SAFETY: the handoff owned the descriptor; the stream takes that ownership over.
    let stream = unsafe { TcpStream::from_raw_fd(h.fd.into_raw_fd()) };
    serve(core, io, stream, h.peer);
}

fn serve(core: &Rc<Core>, io: &Rc<CoreIo>, stream: TcpStream, peer: SocketAddr) {
    // Only once the node holds `max_binds` connections (half its budget): a customer that
    // connects its many binds at once, each bind read a little after its accept, is not held
    // to the limit while there is room.
    let max_binds = core.snapshot().config.server.max_binds;
    let crowded = (core.metrics.sessions.load(Ordering::Relaxed) >= u64::from(max_binds))
        .then(|| unbound_cap(max_binds, core.cores()));
    if !io.enter_unbound(peer.ip(), crowded) {
        drop(stream);
        io.balancer.closed(core.idx);
        if let Some(held) = io.unbound_refused.allow(Instant::now()) {
            warn!(
                core = core.idx,
                %peer,
                refused = held + 1,
                "connection closed at once: its address already holds {} connections that have not bound",
                crowded.unwrap_or(limits::UNBOUND_PER_ADDRESS_MAX)
            );
        }
        return;
    }
    let span = info_span!("customer", core = core.idx, %peer, system_id = tracing::field::Empty);
    glommio::spawn_local(customer_session(core.clone(), io.clone(), stream, peer).instrument(span)).detach();
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

struct InflightGuard<'a> {
    io: &'a CoreIo,
    key: (Bytes, Bytes),
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.io.auth_inflight.borrow_mut().remove(&self.key);
    }
}

/// A password check's place among [`limits::PASSWORD_CHECKS_PENDING_MAX`], held by the hashing
/// closure: given back when the hash is done, or when the closure is dropped without running.
struct CheckSlot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for CheckSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a bind was refused without a password check (or without waiting for its end): warned at
/// most once a second, with how many were refused since.
fn warn_check_refused(io: &CoreIo, system_id: &str, peer: IpAddr, why: &str) {
    if let Some(skipped) = io.checks_refused.allow(Instant::now()) {
        warn!(%system_id, %peer, skipped, "bind refused: {why}");
    }
}

/// A bind whose password check did not end within the bind timeout: refused, said at most
/// once a second.
fn check_timed_out(io: &CoreIo, system_id: &str, peer: IpAddr) -> CommandStatus {
    warn_check_refused(io, system_id, peer, "its password check took longer than the bind timeout");
    CommandStatus::ESME_RBINDFAIL
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
    if !c.allows_ip(peer) {
        if let Some(skipped) = io.bind_address_refused.allow(Instant::now()) {
            warn!(system_id = %c.cfg.system_id, %peer, skipped, "bind refused: source address not allowed");
        }
        return Err(CommandStatus::ESME_RBINDFAIL);
    }
    // A bind waits for its password check at most the bind timeout, then is refused.
    let deadline = Instant::now() + Duration::from_millis(u64::from(snap.config.server.bind_timeout_ms));
    let key = (bind.system_id.clone(), bind.password.clone());
    // Single flight: a bind storm with the same credentials waits for one verification (polling
    // less often the longer it waits: hundreds of waiting binds must not wake 200 times a second
    // each).
    let mut pause = Duration::from_millis(5);
    while io.auth_inflight.borrow().contains(&key) {
        let now = Instant::now();
        if now >= deadline {
            return Err(check_timed_out(io, &c.cfg.system_id, peer));
        }
        Timer::new(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
    let cached = io.auth_cache.borrow().get(&key).is_some_and(|h| *h == c.cfg.password_hash);
    if !cached {
        let now = Instant::now();
        let failures = io.failed_binds.borrow().failures(peer, now);
        if failures >= limits::BIND_FAILURES_PER_PEER {
            if let Some(skipped) = io.bind_checks_exhausted.allow(now) {
                warn!(
                    system_id = %c.cfg.system_id,
                    %peer,
                    skipped,
                    "bind refused: too many failed password checks from this address"
                );
            }
            return Err(CommandStatus::ESME_RBINDFAIL);
        }
        let room = if failures == 0 {
            limits::PASSWORD_CHECKS_PENDING_MAX
        } else {
            limits::PASSWORD_CHECKS_FAILING_MAX
        };
        if io.password_checks.load(Ordering::Acquire) >= room {
            warn_check_refused(io, &c.cfg.system_id, peer, "too many password checks waiting on this core");
            return Err(CommandStatus::ESME_RBINDFAIL);
        }
        io.failed_binds.borrow_mut().begin(peer, now);
        io.auth_inflight.borrow_mut().insert(key.clone());
        let _guard = InflightGuard { io, key: key.clone() };
        io.password_checks.fetch_add(1, Ordering::AcqRel);
        let slot = CheckSlot(io.password_checks.clone());
        let (hash, pw) = (c.cfg.password_hash.clone(), bind.password.clone());
        // Password hashing is deliberately slow: keep it off the reactor.
        let check = glommio::executor().spawn_blocking(move || {
            let _slot = slot;
            crate::config::verify_password(&hash, &pw)
        });
        let ok = futures_lite::future::or(async { Some(check.await) }, async {
            Timer::new(deadline.saturating_duration_since(Instant::now())).await;
            None
        })
        .await;
        match ok {
            Some(true) => {}
            Some(false) => return Err(CommandStatus::ESME_RINVPASWD),
            // Still counted as failed: its outcome is not known.
            None => return Err(check_timed_out(io, &c.cfg.system_id, peer)),
        }
        io.failed_binds.borrow_mut().passed(peer);
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

/// A long message's group: (customer, source, destination, reference, parts in the message).
pub type PartKey = (u32, Bytes, Bytes, u16, u8);

/// The group of `submit` (a part of a long message of `customer`), its part number, or None for
/// a message in one part.
pub fn part_key(customer: u32, submit: &smppgw_codec::SubmitSm) -> Option<(PartKey, u8)> {
    let (reference, total, part) = part_info(submit).filter(|&(_, total, _)| total > 1)?;
    Some(((customer, submit.source.addr.clone(), submit.dest.addr.clone(), reference, total), part))
}

/// A part before the last of a long message, held in its group: the customer's id for it and
/// the receipts it asked for (parts of one message may ask for different ones; each derived
/// receipt follows its own part's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sibling {
    /// The customer's id of the part.
    pub shown_id: u64,
    /// What its `registered_delivery` asked for.
    pub wants: Wanted,
}

/// Parts of long messages seen on this core, for the "receipt for the last part only" policy:
/// each group's parts before the last, forgotten after [`PART_GROUP_TTL`], at most
/// [`PART_GROUPS_MAX`] groups. Sans-IO: the caller passes the time.
#[derive(Debug, Default)]
pub struct PartGroups {
    groups: std::collections::HashMap<PartKey, (Instant, Vec<Sibling>, PartMeta)>,
    /// Groups in the order they began, for expiry from the front; entries of groups taken since
    /// are skipped, and swept out when they reach twice the bound.
    order: std::collections::VecDeque<(Instant, PartKey)>,
    /// Groups that expired without their last part, for the caller to give derived receipts
    /// ([`PartGroups::take_expired`]); bounded by the table's bound.
    expired: Vec<ExpiredGroup>,
    /// Groups held per customer, at most [`PART_GROUPS_PER_CUSTOMER_MAX`] each.
    per_customer: std::collections::HashMap<u32, usize>,
    /// Groups whose last part came before some of their other parts (one refused for now and
    /// sent again, parts sent out of order): how many may still come. Each asks the vendor for
    /// its own receipt, as no last part will come to derive it from. Forgotten after
    /// [`PART_GROUP_TTL`], at most [`PART_GROUPS_MAX`] (beyond, such a part waits in a group of
    /// its own and gets stat UNKNOWN when that expires).
    closed: std::collections::HashMap<PartKey, (Instant, u8)>,
    closed_order: std::collections::VecDeque<(Instant, PartKey)>,
    /// Closed groups per customer, at most [`PART_GROUPS_PER_CUSTOMER_MAX`] each: a customer
    /// sending last parts alone cannot fill the table for the others.
    closed_per_customer: std::collections::HashMap<u32, usize>,
}

/// What a derived receipt needs of a group besides its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartMeta {
    /// source_addr_ton, source_addr_npi.
    pub source: (u8, u8),
    /// dest_addr_ton, dest_addr_npi.
    pub dest: (u8, u8),
    /// When its first part was submitted.
    pub submitted_unix_ms: u64,
}

/// A group whose last part did not come within [`PART_GROUP_TTL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredGroup {
    /// Its key.
    pub key: PartKey,
    /// Addresses' TON/NPI and time.
    pub meta: PartMeta,
    /// The parts that came.
    pub ids: Vec<Sibling>,
}

impl PartGroups {
    /// No groups.
    pub fn new() -> PartGroups {
        PartGroups::default()
    }

    /// Adds `part`, a part before the last, to its group. False when the group cannot hold it
    /// (the group is full, or so is the table, or its last part came already): that part then
    /// asks the vendor for its own receipt.
    pub fn add(&mut self, key: &PartKey, part: Sibling, meta: PartMeta, now: Instant) -> bool {
        self.expire(now);
        let total = key.4;
        if let Some((_, left)) = self.closed.get_mut(key) {
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.remove_closed(key);
            }
            return false;
        }
        if let Some((_, ids, _)) = self.groups.get_mut(key) {
            // A group holds at most its other parts: a customer repeating one does not grow it.
            if ids.len() + 1 >= usize::from(total) {
                return false;
            }
            ids.push(part);
            return true;
        }
        let mine = self.per_customer.get(&key.0).copied().unwrap_or(0);
        if self.groups.len() >= PART_GROUPS_MAX || mine >= PART_GROUPS_PER_CUSTOMER_MAX || total < 2 {
            return false;
        }
        self.per_customer.insert(key.0, mine + 1);
        if self.order.len() >= 2 * PART_GROUPS_MAX {
            let groups = &self.groups;
            self.order.retain(|(t, k)| groups.get(k).is_some_and(|(at, _, _)| at == t));
        }
        let key = owned_key(key);
        self.order.push_back((now, key.clone()));
        self.groups.insert(key, (now, vec![part], meta));
        true
    }

    /// Gives a group back the ids [`PartGroups::take`] took, when its last part was not sent
    /// after all (a temporary refusal, or an outcome unknown): the customer may send it again,
    /// and the retry takes them. Returns the ids it could not hold (the table is full), for
    /// the caller to settle otherwise.
    pub fn put_back(
        &mut self,
        key: &PartKey,
        ids: Vec<Sibling>,
        meta: PartMeta,
        now: Instant,
    ) -> Vec<Sibling> {
        // The last part's retry will take them: the parts its first try left to come are
        // expected in the group again.
        self.remove_closed(key);
        let mut left = Vec::new();
        for id in ids {
            if !self.add(key, id, meta, now) {
                left.push(id);
            }
        }
        left
    }

    /// The parts before the last, when the last part comes (none when none came).
    /// Parts that have not come yet are remembered, so that each asks the vendor for its own
    /// receipt when it comes.
    pub fn take(&mut self, key: &PartKey, now: Instant) -> Vec<Sibling> {
        self.expire(now);
        let ids = match self.groups.remove(key) {
            Some((_, ids, _)) => {
                self.forget_one(key.0);
                ids
            }
            None => Vec::new(),
        };
        let missing = usize::from(key.4).saturating_sub(1 + ids.len());
        let mine = self.closed_per_customer.get(&key.0).copied().unwrap_or(0);
        let known = self.closed.contains_key(key);
        if missing > 0
            && (known || (self.closed.len() < PART_GROUPS_MAX && mine < PART_GROUPS_PER_CUSTOMER_MAX))
        {
            if !known {
                self.closed_per_customer.insert(key.0, mine + 1);
            }
            if self.closed_order.len() >= 2 * PART_GROUPS_MAX {
                let closed = &self.closed;
                self.closed_order.retain(|(t, k)| closed.get(k).is_some_and(|(at, _)| at == t));
            }
            let key = owned_key(key);
            self.closed_order.push_back((now, key.clone()));
            self.closed.insert(key, (now, missing as u8));
        }
        ids
    }

    /// Whether `key`'s group holds parts (expired or not).
    pub fn holds(&self, key: &PartKey) -> bool {
        self.groups.contains_key(key)
    }

    /// Every group held, for derived receipts when the node stops: their last parts will not
    /// come here.
    pub fn take_all(&mut self) -> Vec<ExpiredGroup> {
        self.order.clear();
        self.per_customer.clear();
        let mut out = std::mem::take(&mut self.expired);
        out.extend(self.groups.drain().map(|(key, (_, ids, meta))| ExpiredGroup { key, meta, ids }));
        out
    }

    fn forget_one(&mut self, customer: u32) {
        count_down(&mut self.per_customer, customer);
    }

    fn remove_closed(&mut self, key: &PartKey) {
        if self.closed.remove(key).is_some() {
            count_down(&mut self.closed_per_customer, key.0);
        }
    }

    /// Forgets the groups older than [`PART_GROUP_TTL`] and hands back every group that expired
    /// so far (here or when parts were added).
    pub fn take_expired(&mut self, now: Instant) -> Vec<ExpiredGroup> {
        self.expire(now);
        std::mem::take(&mut self.expired)
    }

    /// Groups held.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether no group is held.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        while let Some((t, _)) = self.closed_order.front() {
            if now.saturating_duration_since(*t) < PART_GROUP_TTL {
                break;
            }
            if let Some((t, k)) = self.closed_order.pop_front()
                && self.closed.get(&k).is_some_and(|(at, _)| *at == t)
            {
                self.remove_closed(&k);
            }
        }
        while let Some((t, _)) = self.order.front() {
            if now.saturating_duration_since(*t) < PART_GROUP_TTL {
                break;
            }
            if let Some((t, k)) = self.order.pop_front()
                && self.groups.get(&k).is_some_and(|(at, _, _)| *at == t)
                && let Some((_, ids, meta)) = self.groups.remove(&k)
            {
                self.forget_one(k.0);
                self.expired.push(ExpiredGroup { key: k, meta, ids });
            }
        }
    }
}

/// One fewer for `customer` in a per-customer count (forgotten at zero).
fn count_down(counts: &mut std::collections::HashMap<u32, usize>, customer: u32) {
    if let std::collections::hash_map::Entry::Occupied(mut e) = counts.entry(customer) {
        *e.get_mut() -= 1;
        if *e.get() == 0 {
            e.remove();
        }
    }
}

/// `key` with its addresses copied out of the read buffer they were decoded from (a key kept
/// outlives it).
pub(crate) fn owned_key(key: &PartKey) -> PartKey {
    (key.0, Bytes::copy_from_slice(&key.1), Bytes::copy_from_slice(&key.2), key.3, key.4)
}

/// Parts of long messages whose last part did not come within [`PART_GROUP_TTL`] (or came on
/// another executor, which holds its own groups) get derived receipts in state UNKNOWN: they did
/// not ask the vendor for their own, and the message will not reach the handset whole.
pub fn derive_expired_parts(core: &Core, now: Instant) {
    let expired = core.part_groups.borrow_mut().take_expired(now);
    derive_unknown(core, expired);
}

/// The groups still open when the node stops (after its vendors have answered everything):
/// their last parts will not come here, and their parts did not ask the vendor for receipts,
/// so they get derived receipts in state UNKNOWN, delivered (or handed to Redis) by the stop's
/// drain, instead of none at all.
pub fn derive_open_parts_at_exit(core: &Core) -> usize {
    core.parts_closed.set(true);
    let open = core.part_groups.borrow_mut().take_all();
    let n = open.len();
    derive_unknown(core, open);
    n
}

fn derive_unknown(core: &Core, groups: Vec<ExpiredGroup>) {
    for g in groups {
        let source = smppgw_codec::Address::new(g.meta.source.0, g.meta.source.1, g.key.1.clone());
        let dest = smppgw_codec::Address::new(g.meta.dest.0, g.meta.dest.1, g.key.2.clone());
        let parts = crate::core::DerivedParts {
            customer: g.key.0,
            source: &source,
            dest: &dest,
            submitted_unix_ms: g.meta.submitted_unix_ms,
            shown_ids: &g.ids,
        };
        core.derive_receipts(&parts, smppgw_codec::receipt::MessageState::Unknown, 0);
    }
}

/// Long-message groups remembered per core; past this, new groups are not held (each of their
/// parts then simply asks the vendor for its own receipt) until old ones end or expire.
pub const PART_GROUPS_MAX: usize = 100_000;
/// Groups one customer may hold per core, so that one customer sending first parts without
/// last parts cannot fill the table for every other customer of the core.
pub const PART_GROUPS_PER_CUSTOMER_MAX: usize = PART_GROUPS_MAX / 10;
/// A group whose last part has not come within this is forgotten.
pub const PART_GROUP_TTL: Duration = Duration::from_secs(600);

/// The (reference, total, seq) of a part of a long message, from its UDH or SAR TLVs.
pub(crate) fn part_info(s: &smppgw_codec::SubmitSm) -> Option<(u16, u8, u8)> {
    if s.esm_class & 0x40 != 0 {
        // The user data is in short_message, or in message_payload when short_message is empty
        // (always so for data_sm).
        let payload;
        let ud = if s.short_message.is_empty() {
            payload = s.tlvs.message_payload()?;
            &payload
        } else {
            &s.short_message
        };
        let c = smppgw_codec::text::parse_udh(ud).ok()?.concat?.info;
        return Some((c.ref_num, c.total, c.seq));
    }
    let t = &s.tlvs;
    Some((t.sar_msg_ref_num()?, t.sar_total_segments()?, t.sar_segment_seqnum()?))
}

enum Pending {
    Query,
    Cancel(smppgw_codec::CancelSm),
    Replace(smppgw_codec::ReplaceSm),
}

impl Pending {
    /// The answer when the message is not found, not the customer's, or not changeable.
    fn failure(&self) -> (CommandStatus, smppgw_codec::Body) {
        match self {
            Pending::Query => {
                (CommandStatus::ESME_RQUERYFAIL, smppgw_codec::Body::QuerySmResp(Default::default()))
            }
            Pending::Cancel(_) => (CommandStatus::ESME_RCANCELFAIL, smppgw_codec::Body::CancelSmResp),
            Pending::Replace(_) => (CommandStatus::ESME_RREPLACEFAIL, smppgw_codec::Body::ReplaceSmResp),
        }
    }
}

/// Addresses of a vendor's host name tried, in the order the resolver gave them.
pub const VENDOR_ADDRS_MAX: usize = 8;

/// A query_sm, cancel_sm or replace_sm whose lookup has not been answered within this is
/// answered as failed (its answers were lost: a full queue on the way); the lookup takes
/// milliseconds, or up to about 1.5 s when it asks the shared store.
pub const QUERY_PENDING_TIMEOUT: Duration = Duration::from_secs(10);
/// A submit_multi whose destinations have not all been answered within this is answered with
/// what is known (each destination has its vendors' response timeouts well within it); a
/// cancel_sm or replace_sm at a vendor whose answer has not come back within it is answered as
/// failed (the vendor's response timeout ends it far sooner: only a lost answer gets here).
pub const MULTI_PENDING_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a submit_multi or a cancel/replace at a vendor may wait for its answers under
/// `snap`: [`MULTI_PENDING_TIMEOUT`], or longer when a vendor's response timeout (up to 300 s)
/// times every failover a message may take would not fit in it, so that only an answer that
/// was really lost is given up.
fn pending_timeout(snap: &crate::snapshot::Snapshot) -> Duration {
    let slowest = snap.config.vendors.iter().map(|v| v.response_timeout_ms).max().unwrap_or(0);
    let worst = Duration::from_millis(u64::from(slowest) * crate::core::FAILOVER_MAX as u64)
        + Duration::from_millis(crate::core::NO_VENDOR_HOLD_MS)
        + Duration::from_secs(10);
    MULTI_PENDING_TIMEOUT.max(worst)
}

struct PendingQuery {
    /// When it was asked.
    since: Instant,
    what: Pending,
    answers: usize,
    found: Option<Box<Found>>,
    /// The shared store was asked too (nothing final on this node): one more answer to wait for.
    remote: bool,
    /// The customer's id of the message.
    shown_id: u64,
    /// Answers carry it ([`ReplyTo::nonce`]).
    nonce: u32,
}

/// The command_status of a submit_multi none of whose destinations was accepted: the one status
/// they all failed with (a field of the message itself, the customer's throughput), which tells
/// the customer whether to retry; ESME_RSUBMITFAIL when they failed for different reasons.
fn multi_failure_status(unsuccess: &[smppgw_codec::UnsuccessSme]) -> CommandStatus {
    match unsuccess.split_first() {
        Some((first, rest)) if rest.iter().all(|u| u.error_status == first.error_status) => {
            first.error_status
        }
        _ => CommandStatus::ESME_RSUBMITFAIL,
    }
}

struct PendingMulti {
    /// When it was asked.
    since: Instant,
    remaining: usize,
    shown_id: u64,
    any_ok: bool,
    unsuccess: Vec<smppgw_codec::UnsuccessSme>,
    dests: Vec<smppgw_codec::Address>,
    /// The destinations sent to vendors and not answered yet (indexes into `dests`).
    waiting: Vec<u16>,
    /// Answers carry it ([`ReplyTo::nonce`]).
    nonce: u32,
    /// Destinations accepted whose receipts wait for this answer ([`CustomerDriver::confirms`]).
    confirms: Vec<(u16, u64)>,
}

impl PendingMulti {
    /// Answered with what is known: a destination not answered is not reported accepted (in
    /// `unsuccess_sme` with ESME_RSUBMITFAIL: its outcome is unknown).
    fn give_up_waiting(&mut self) {
        for i in std::mem::take(&mut self.waiting) {
            let addr = self.dests.get(usize::from(i)).cloned().unwrap_or_default();
            self.unsuccess
                .push(smppgw_codec::UnsuccessSme { addr, error_status: CommandStatus::ESME_RSUBMITFAIL });
        }
    }
}

struct CustomerDriver {
    core: Rc<Core>,
    io: Rc<CoreIo>,
    slot: u32,
    generation: u32,
    machine: CustomerSession,
    customer: Option<Arc<CustomerRt>>,
    /// What it bound with, from its bind until a reload revokes it (then it is unbinding).
    bound_with: Option<BoundWith>,
    receiving: bool,
    wbuf: BytesMut,
    queries: std::collections::HashMap<u32, PendingQuery>,
    /// cancel_sm and replace_sm at a vendor, by sequence number (their lookup is done): a
    /// request reusing one is refused like one reusing a pending lookup's.
    ops_out: std::collections::HashMap<u32, (Instant, ReplyKind, u32)>,
    /// The last request nonce given ([`ReplyTo::nonce`]).
    nonce: u32,
    /// [`pending_timeout`] under the current configuration.
    pending_timeout: Duration,
    multis: std::collections::HashMap<u32, PendingMulti>,
    /// Messages whose answers are in `wbuf` (or were dropped as stale): once written, the core
    /// holding each record is told, and the receipts it held for it go (see `crate::answers`).
    confirms: Vec<(u16, u64)>,
    /// Counted in its customer's `receivers` (which has the node take the customer's receipts
    /// from the shared queue): from its bind until it takes no more deliveries.
    counted: bool,
    closing: bool,
}

impl CustomerDriver {
    /// Gives back this session's place in its customer's `receivers`, once.
    fn uncount_receiver(&mut self) {
        if std::mem::take(&mut self.counted)
            && let Some(c) = &self.customer
        {
            let _ = c.receivers.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }

    fn me(&self) -> SessionRef {
        SessionRef { core: self.core.idx as u16, session: self.slot, generation: self.generation }
    }

    fn reply_to(&self, seq: u32, kind: ReplyKind) -> ReplyTo {
        self.reply_to_request(seq, kind, 0)
    }

    fn reply_to_request(&self, seq: u32, kind: ReplyKind, nonce: u32) -> ReplyTo {
        ReplyTo {
            core: self.core.idx as u16,
            session: self.slot,
            generation: self.generation,
            seq,
            kind,
            nonce,
        }
    }

    /// A number for a request whose answer may come after it was given up (see
    /// [`ReplyTo::nonce`]); never 0, which submits use.
    fn new_nonce(&mut self) -> u32 {
        self.nonce = self.nonce.wrapping_add(1).max(1);
        self.nonce
    }

    fn on_events(&mut self, events: &mut Vec<Event>, now: Instant, peer: SocketAddr) -> Vec<Event> {
        let mut later = Vec::new();
        for ev in events.drain(..) {
            match ev {
                Event::Bind { .. } => later.push(ev),
                Event::Submit { seq, submit, segments } => {
                    self.submit(seq, submit, segments, ReplyKind::Submit, now)
                }
                Event::DataSm { seq, submit, segments } => {
                    self.submit(seq, submit, segments, ReplyKind::DataSm, now)
                }
                Event::Delivered { token, answer } => {
                    if let Some(c) = &self.customer {
                        let home = self.core.home_of(c.idx);
                        let session = self.me();
                        self.core
                            .send(home, CoreMsg::DeliveryAck { customer: c.idx, token, session, answer });
                    }
                }
                Event::Request(pdu) => self.request(pdu, now),
                Event::Rejected { status } => {
                    // Received, and refused at once: submits = accepted + refused + rejected.
                    self.core.metrics.submits.add(self.core.idx, 1);
                    self.core.metrics.rejected.fetch_add(1, Ordering::Relaxed);
                    self.core.metrics.submit_results.add(self.core.idx, status.0);
                    if let Some(c) = &self.customer {
                        c.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Event::Close(reason) => {
                    debug!(?reason, %peer, "closing");
                    self.closing = true;
                }
            }
        }
        later
    }

    /// Answers a submit refused for a throughput limit (the customer's, or a 10DLC one).
    fn throttled(&mut self, seq: u32, data_sm: bool, c: &CustomerRt, now: Instant) {
        count_throttled(&self.core, c);
        let mut sink = Vec::new();
        self.machine.submit_done(
            seq,
            data_sm,
            Err(CommandStatus::ESME_RTHROTTLED),
            now,
            &mut self.wbuf,
            &mut sink,
        );
    }

    fn submit(
        &mut self,
        seq: u32,
        submit: smppgw_codec::SubmitSm,
        segments: u32,
        kind: ReplyKind,
        now: Instant,
    ) {
        let data_sm = kind == ReplyKind::DataSm;
        self.core.metrics.submits.add(self.core.idx, 1);
        // Borrowed, not cloned: a clone is two atomic operations on a count every core shares.
        let Some(c) = self.customer.as_ref() else { return };
        // Read before the take: a new window arriving in between loses this refund rather than
        // putting it into the new window.
        let lease_gen = c.lease.generation();
        if !take_customer_rate(c, segments, self.io.nanos(now)) {
            self.core.metrics.throttled_customer.fetch_add(1, Ordering::Relaxed);
            let c = Arc::clone(c);
            return self.throttled(seq, data_sm, &c, now);
        }
        // 10DLC: the campaign of the source number and its brand (a source in none is not limited).
        let mut charge = crate::core::Charge { segments, ..Default::default() };
        charge.lease_gens[0] = lease_gen;
        let admitted = {
            // Borrowed, not cloned (see above).
            let snap = self.core.snap();
            if snap.campaigns.is_empty() {
                Ok(None)
            } else {
                charge.at_ms = crate::core::unix_now_ms();
                charge.version = snap.version;
                let admitted =
                    snap.campaign_admit(submit.source.ton, &submit.source.addr, segments, charge.at_ms);
                if let Ok(Some(ci)) = admitted {
                    let [g1, g2] = snap.campaigns.lease_gens(ci);
                    charge.lease_gens[1..].copy_from_slice(&[g1, g2]);
                    charge.campaign_key = snap.campaigns.identity(ci);
                }
                admitted
            }
        };
        match admitted {
            Ok(campaign) => charge.campaign = campaign,
            Err(refusal) => {
                refusal.counter(&self.core.metrics).fetch_add(1, Ordering::Relaxed);
                give_customer_rate_back(c, segments);
                let c = Arc::clone(c);
                if refusal.status() != CommandStatus::ESME_RTHROTTLED {
                    // No retry could send it: refused for good, counted before routing.
                    self.core.metrics.rejected.fetch_add(1, Ordering::Relaxed);
                    self.core.metrics.submit_results.add(self.core.idx, refusal.status().0);
                    c.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    let mut sink = Vec::new();
                    let st = Err(refusal.status());
                    return self.machine.submit_done(seq, data_sm, st, now, &mut self.wbuf, &mut sink);
                }
                return self.throttled(seq, data_sm, &c, now);
            }
        }
        c.counters.submitted.fetch_add(1, Ordering::Relaxed);
        c.counters.segments.fetch_add(u64::from(segments), Ordering::Relaxed);
        let msg_id = self.core.next_msg_id();
        let receipts = Wanted::from_registered_delivery(submit.registered_delivery);
        // Under receipt_parts = "last" a part's receipt may be derived from its last part's: the
        // parts meet in a group on the customer's home core, wherever its sessions are. An
        // earlier part asking for intermediate notifications only, or for nothing, has each
        // part ask for its own (a derived final receipt is not its to get). The last part goes
        // to its group whatever it asked for: earlier parts may want the receipt it brings.
        let grouped = c.cfg.receipt_parts == crate::config::ReceiptParts::Last
            && part_info(&submit)
                .is_some_and(|(_, total, part)| total > 1 && (receipts.finals() || part >= total));
        let mut job =
            Job::new(msg_id, msg_id, self.reply_to(seq, kind), c.idx, submit, now, receipts, Vec::new());
        job.charge = charge;
        match grouped {
            true => self.core.submit_part(job),
            false => self.core.submit(job),
        }
    }

    fn refuse(&mut self, pdu: &smppgw_codec::Pdu, st: CommandStatus) {
        let h = smppgw_codec::Header {
            command_length: 16,
            command_id: pdu.command_id(),
            command_status: CommandStatus::ESME_ROK,
            sequence_number: pdu.sequence_number,
        };
        smppgw_codec::Pdu::error_response(&h, st).encode(&mut self.wbuf);
    }

    /// A request the machine handed over ([`Event::Request`]): started, or answered at once,
    /// and then the machine is told (an unbind behind it waits for that).
    fn request(&mut self, pdu: smppgw_codec::Pdu, now: Instant) {
        if !self.start_request(pdu, now) {
            // Closing events need no handling here: a closed machine is seen after the batch.
            let mut sink = Vec::new();
            self.machine.op_answered(now, &mut self.wbuf, &mut sink);
        }
    }

    /// Starts a query_sm, cancel_sm, replace_sm or submit_multi; false when it was answered at
    /// once (refused, or a submit_multi none of whose destinations went to a vendor).
    fn start_request(&mut self, pdu: smppgw_codec::Pdu, now: Instant) -> bool {
        let Some(c) = self.customer.clone() else {
            self.refuse(&pdu, CommandStatus::ESME_RINVBNDSTS);
            return false;
        };
        let seq = pdu.sequence_number;
        let (id, what, fail) = match &pdu.body {
            smppgw_codec::Body::QuerySm(q) => {
                (q.message_id.clone(), Pending::Query, CommandStatus::ESME_RQUERYFAIL)
            }
            smppgw_codec::Body::CancelSm(x) => {
                (x.message_id.clone(), Pending::Cancel(x.clone()), CommandStatus::ESME_RCANCELFAIL)
            }
            smppgw_codec::Body::ReplaceSm(x) => {
                if let Err(st) = crate::customer::validate_replace(x) {
                    self.refuse(&pdu, st);
                    return false;
                }
                (x.message_id.clone(), Pending::Replace(x.clone()), CommandStatus::ESME_RREPLACEFAIL)
            }
            smppgw_codec::Body::SubmitMulti(m) if self.multis.contains_key(&seq) => {
                // Its answer would be mixed with the pending one's (the customer reused a
                // sequence number still in flight): refused, the pending one goes on. Its
                // destinations were received and refused before routing.
                let dests = m.dests.len() as u64;
                self.core.metrics.submits.add(self.core.idx, dests);
                count_rejected(&self.core, &c, dests, CommandStatus::ESME_RSYSERR);
                self.refuse(&pdu, CommandStatus::ESME_RSYSERR);
                return false;
            }
            smppgw_codec::Body::SubmitMulti(m) => return self.submit_multi(seq, m.clone(), &c, now),
            _ => {
                self.refuse(&pdu, CommandStatus::ESME_RINVCMDID);
                return false;
            }
        };
        if self.queries.contains_key(&seq) || self.ops_out.contains_key(&seq) {
            // As above: a sequence number still in flight.
            {
                self.refuse(&pdu, CommandStatus::ESME_RSYSERR);
                return false;
            }
        }
        if self.queries.len() + self.ops_out.len()
            >= (limits::QUERY_ANSWERS_MAX / self.core.cores().max(1)).max(1)
        {
            {
                self.refuse(&pdu, CommandStatus::ESME_RTHROTTLED);
                return false;
            }
        }
        let Some(shown_id) = crate::msgid::parse_id(&id, c.id_style) else {
            // cancel_sm with an empty id (cancel by addresses) is not supported: refused as failed.
            {
                self.refuse(&pdu, if id.is_empty() { fail } else { CommandStatus::ESME_RINVMSGID });
                return false;
            }
        };
        if !c.ops_limiter.try_acquire(1, self.io.nanos(now)) {
            c.counters.throttled.fetch_add(1, Ordering::Relaxed);
            self.refuse(&pdu, CommandStatus::ESME_RTHROTTLED);
            return false;
        }
        let nonce = self.new_nonce();
        self.queries.insert(
            seq,
            PendingQuery { since: now, what, answers: 0, found: None, remote: false, shown_id, nonce },
        );
        let reply = self.reply_to_request(seq, ReplyKind::Submit, nonce);
        for core in 0..self.core.cores() {
            self.core.send(core, CoreMsg::Query { shown_id, customer: c.idx, reply });
        }
        true
    }

    /// Routes a submit_multi's destinations; false when it was answered at once.
    fn submit_multi(
        &mut self,
        seq: u32,
        m: smppgw_codec::SubmitMulti,
        c: &Arc<CustomerRt>,
        now: Instant,
    ) -> bool {
        use smppgw_codec::{DestAddress, UnsuccessSme};
        // Each destination is a submit in flight: the window bounds them as it bounds submit_sm
        // (and so the answers coming back to this session), all or nothing.
        let smes = m.dests.iter().filter(|d| matches!(d, DestAddress::Sme(_))).count() as u32;
        let h = smppgw_codec::Header {
            command_length: 16,
            command_id: smppgw_codec::CommandId::SUBMIT_MULTI,
            command_status: CommandStatus::ESME_ROK,
            sequence_number: seq,
        };
        // Every destination is a submit received (submits = accepted + refused + rejected):
        // counted here, and each is counted once more as it ends, refused here (rejected) or
        // answered after routing (accepted or refused).
        let dests = m.dests.len() as u64;
        self.core.metrics.submits.add(self.core.idx, dests);
        if smes > self.machine.window() {
            // More than the window could ever hold: retrying would never help.
            count_rejected(&self.core, c, dests, CommandStatus::ESME_RINVNUMDESTS);
            smppgw_codec::Pdu::error_response(&h, CommandStatus::ESME_RINVNUMDESTS).encode(&mut self.wbuf);
            return false;
        }
        if !self.machine.take_window(smes) {
            count_rejected(&self.core, c, dests, CommandStatus::ESME_RTHROTTLED);
            smppgw_codec::Pdu::error_response(&h, CommandStatus::ESME_RTHROTTLED).encode(&mut self.wbuf);
            return false;
        }
        let shown_id = self.core.next_msg_id();
        let mut pm = PendingMulti {
            since: now,
            remaining: 0,
            shown_id,
            any_ok: false,
            unsuccess: Vec::new(),
            dests: Vec::new(),
            waiting: Vec::new(),
            nonce: self.new_nonce(),
            confirms: Vec::new(),
        };
        // One destination's submit: everything but the destination is the multi's.
        let submit_to = |dest: smppgw_codec::Address| smppgw_codec::SubmitSm {
            service_type: m.service_type.clone(),
            source: m.source.clone(),
            dest,
            esm_class: m.esm_class,
            protocol_id: m.protocol_id,
            priority_flag: m.priority_flag,
            schedule_delivery_time: m.schedule_delivery_time.clone(),
            validity_period: m.validity_period.clone(),
            registered_delivery: m.registered_delivery,
            replace_if_present_flag: m.replace_if_present_flag,
            data_coding: m.data_coding,
            sm_default_msg_id: m.sm_default_msg_id,
            short_message: m.short_message.clone(),
            tlvs: m.tlvs.clone(),
        };
        // So the destinations' shared fields are checked once (the TLVs and text may be long,
        // and there may be hundreds of destinations).
        let shared = crate::customer::validate_submit(&submit_to(smppgw_codec::Address::new(
            0,
            0,
            Bytes::from_static(b"0"),
        )));
        let mut jobs = Vec::new();
        for (i, d) in m.dests.iter().enumerate() {
            // Every destination keeps its place, refused here or not: a vendor's answer names
            // its destination by that index.
            pm.dests.push(match d {
                DestAddress::Sme(a) => a.clone(),
                DestAddress::DistributionList(n) => smppgw_codec::Address::new(0, 0, n.clone()),
            });
            match d {
                DestAddress::DistributionList(name) => {
                    count_rejected(&self.core, c, 1, CommandStatus::ESME_RINVDLNAME);
                    pm.unsuccess.push(UnsuccessSme {
                        addr: smppgw_codec::Address::new(0, 0, name.clone()),
                        error_status: CommandStatus::ESME_RINVDLNAME,
                    })
                }
                DestAddress::Sme(addr) => {
                    let submit = submit_to(addr.clone());
                    let valid = match addr.addr.is_empty() {
                        true => Err(CommandStatus::ESME_RINVDSTADR),
                        false => shared,
                    };
                    match valid {
                        Err(st) => {
                            count_rejected(&self.core, c, 1, st);
                            pm.unsuccess.push(UnsuccessSme { addr: addr.clone(), error_status: st })
                        }
                        Ok(segments) => {
                            let lease_gen = c.lease.generation();
                            if !take_customer_rate(c, segments, self.io.nanos(now)) {
                                self.core.metrics.throttled_customer.fetch_add(1, Ordering::Relaxed);
                                count_throttled(&self.core, c);
                                pm.unsuccess.push(UnsuccessSme {
                                    addr: addr.clone(),
                                    error_status: CommandStatus::ESME_RTHROTTLED,
                                });
                                continue;
                            }
                            // 10DLC: the campaign of the source number and its brand.
                            let snap = self.core.snapshot();
                            let at_ms = crate::core::unix_now_ms();
                            let campaign = match snap.campaign_admit(
                                submit.source.ton,
                                &submit.source.addr,
                                segments,
                                at_ms,
                            ) {
                                Ok(campaign) => campaign,
                                Err(refusal) => {
                                    refusal.counter(&self.core.metrics).fetch_add(1, Ordering::Relaxed);
                                    give_customer_rate_back(c, segments);
                                    if refusal.status() == CommandStatus::ESME_RTHROTTLED {
                                        count_throttled(&self.core, c);
                                    } else {
                                        count_rejected(&self.core, c, 1, refusal.status());
                                    }
                                    pm.unsuccess.push(UnsuccessSme {
                                        addr: addr.clone(),
                                        error_status: refusal.status(),
                                    });
                                    continue;
                                }
                            };
                            c.counters.submitted.fetch_add(1, Ordering::Relaxed);
                            c.counters.segments.fetch_add(u64::from(segments), Ordering::Relaxed);
                            let charge = crate::core::Charge {
                                segments,
                                campaign,
                                version: snap.version,
                                at_ms,
                                lease_gens: {
                                    let [g1, g2] =
                                        campaign.map_or([0; 2], |ci| snap.campaigns.lease_gens(ci));
                                    [lease_gen, g1, g2]
                                },
                                campaign_key: campaign.map_or(0, |ci| snap.campaigns.identity(ci)),
                            };
                            jobs.push((i as u16, submit, charge));
                        }
                    }
                }
            }
        }
        pm.remaining = jobs.len();
        pm.waiting = jobs.iter().map(|(i, _, _)| *i).collect();
        // Destinations refused here are answered already: their share of the window goes back.
        let mut sink = Vec::new();
        self.machine.give_window(smes - jobs.len() as u32, now, &mut self.wbuf, &mut sink);
        let empty = jobs.is_empty();
        let nonce = pm.nonce;
        self.multis.insert(seq, pm);
        if empty {
            self.finish_multi(seq);
            return false;
        }
        // One message sent: it is the submission, and keeps the id the customer is given (so that
        // a cancel_sm or replace_sm of that id, refused for several, applies to it).
        let single = jobs.len() == 1;
        for (i, submit, charge) in jobs {
            let receipts = Wanted::from_registered_delivery(submit.registered_delivery);
            let reply = self.reply_to_request(seq, ReplyKind::Multi(i), nonce);
            let msg_id = if single { shown_id } else { self.core.next_msg_id() };
            let mut job = Job::new(msg_id, shown_id, reply, c.idx, submit, now, receipts, Vec::new());
            job.charge = charge;
            self.core.submit(job);
        }
        true
    }

    fn finish_multi(&mut self, seq: u32) {
        let Some(mut pm) = self.multis.remove(&seq) else { return };
        self.confirms.append(&mut pm.confirms);
        let style = self.customer.as_ref().map_or(crate::msgid::IdStyle::Hex, |c| c.id_style);
        let (status, message_id) = if pm.any_ok {
            (CommandStatus::ESME_ROK, crate::core::shown_text(pm.shown_id, style))
        } else {
            (multi_failure_status(&pm.unsuccess), Bytes::new())
        };
        let body = smppgw_codec::Body::SubmitMultiResp(smppgw_codec::SubmitMultiResp {
            message_id,
            unsuccess: pm.unsuccess,
            tlvs: Default::default(),
        });
        smppgw_codec::Pdu::with_status(seq, status, body).encode(&mut self.wbuf);
    }

    fn on_done(
        &mut self,
        reply: ReplyTo,
        result: Result<u64, CommandStatus>,
        confirm: Option<u16>,
        now: Instant,
        events: &mut Vec<Event>,
    ) {
        let seq = reply.seq;
        let confirm = match (confirm, result) {
            (Some(shard), Ok(id)) => Some((shard, id)),
            _ => None,
        };
        match reply.kind {
            ReplyKind::Submit | ReplyKind::DataSm => {
                let data_sm = reply.kind == ReplyKind::DataSm;
                self.machine.submit_done(seq, data_sm, result, now, &mut self.wbuf, events);
                self.confirms.extend(confirm);
            }
            ReplyKind::Multi(i) => {
                let Some(pm) = self.multis.get_mut(&seq).filter(|pm| pm.nonce == reply.nonce) else {
                    // Answered already (given up waiting): nothing more to write for it.
                    self.confirms.extend(confirm);
                    return;
                };
                pm.confirms.extend(confirm);
                pm.remaining = pm.remaining.saturating_sub(1);
                self.machine.give_window(1, now, &mut self.wbuf, events);
                let Some(pm) = self.multis.get_mut(&seq) else { return };
                pm.waiting.retain(|&w| w != i);
                match result {
                    Ok(_) => pm.any_ok = true,
                    Err(st) => {
                        let addr = pm.dests.get(usize::from(i)).cloned().unwrap_or_default();
                        pm.unsuccess.push(smppgw_codec::UnsuccessSme { addr, error_status: st });
                    }
                }
                if pm.remaining == 0 {
                    self.finish_multi(seq);
                    self.machine.op_answered(now, &mut self.wbuf, events);
                }
            }
            ReplyKind::Cancel | ReplyKind::Replace => {
                if self
                    .ops_out
                    .get(&seq)
                    .is_none_or(|&(_, kind, nonce)| kind != reply.kind || nonce != reply.nonce)
                {
                    return;
                }
                if self.ops_out.remove(&seq).is_none() {
                    return;
                }
                let body = if reply.kind == ReplyKind::Cancel {
                    smppgw_codec::Body::CancelSmResp
                } else {
                    smppgw_codec::Body::ReplaceSmResp
                };
                let st = result.err().unwrap_or(CommandStatus::ESME_ROK);
                smppgw_codec::Pdu::with_status(seq, st, body).encode(&mut self.wbuf);
                self.machine.op_answered(now, &mut self.wbuf, events);
            }
        }
    }

    /// When the oldest pending lookup or submit_multi is due to be answered by
    /// [`CustomerDriver::expire_pending`], if any: the session wakes for it even when the
    /// customer is silent.
    fn pending_deadline(&self) -> Option<Instant> {
        let queries = self.queries.values().map(|q| q.since + QUERY_PENDING_TIMEOUT);
        let wait = self.pending_timeout;
        let multis = self.multis.values().map(|m| m.since + wait);
        let ops = self.ops_out.values().map(|(since, _, _)| *since + wait);
        queries.chain(multis).chain(ops).min()
    }

    /// Answers the requests whose answers have not all come back in time (lost on the way), so
    /// that no customer waits forever: a lookup as failed, a submit_multi with what is known
    /// (the destinations still out give their share of the window back).
    fn expire_pending(&mut self, now: Instant, events: &mut Vec<Event>) {
        let late: Vec<u32> = self
            .queries
            .iter()
            .filter(|(_, q)| now.saturating_duration_since(q.since) >= QUERY_PENDING_TIMEOUT)
            .map(|(&seq, _)| seq)
            .collect();
        for seq in late {
            let Some(q) = self.queries.remove(&seq) else { continue };
            let (st, body) = q.what.failure();
            warn!(seq, "request's lookup not answered in time: answered {st}");
            smppgw_codec::Pdu::with_status(seq, st, body).encode(&mut self.wbuf);
            self.machine.op_answered(now, &mut self.wbuf, events);
        }
        let late: Vec<u32> = self
            .multis
            .iter()
            .filter(|(_, m)| now.saturating_duration_since(m.since) >= self.pending_timeout)
            .map(|(&seq, _)| seq)
            .collect();
        for seq in late {
            let Some(remaining) = self.multis.get(&seq).map(|m| m.remaining) else { continue };
            warn!(
                seq,
                remaining, "submit_multi destinations not answered in time: answered with what is known"
            );
            self.machine.give_window(remaining as u32, now, &mut self.wbuf, events);
            if let Some(pm) = self.multis.get_mut(&seq) {
                pm.give_up_waiting();
            }
            self.finish_multi(seq);
            self.machine.op_answered(now, &mut self.wbuf, events);
        }
        let late: Vec<(u32, ReplyKind)> = self
            .ops_out
            .iter()
            .filter(|(_, (since, _, _))| now.saturating_duration_since(*since) >= self.pending_timeout)
            .map(|(&seq, &(_, kind, _))| (seq, kind))
            .collect();
        for (seq, kind) in late {
            self.ops_out.remove(&seq);
            let (st, body) = match kind {
                ReplyKind::Cancel => (CommandStatus::ESME_RCANCELFAIL, smppgw_codec::Body::CancelSmResp),
                _ => (CommandStatus::ESME_RREPLACEFAIL, smppgw_codec::Body::ReplaceSmResp),
            };
            warn!(seq, "the vendor's answer to a cancel or replace was lost: answered {st}");
            smppgw_codec::Pdu::with_status(seq, st, body).encode(&mut self.wbuf);
            self.machine.op_answered(now, &mut self.wbuf, events);
        }
    }

    fn on_query_answer(
        &mut self,
        reply: ReplyTo,
        found: Option<Box<Found>>,
        now: Instant,
        events: &mut Vec<Event>,
    ) {
        let seq = reply.seq;
        let cores = self.core.cores();
        let Some(q) = self.queries.get_mut(&seq).filter(|q| q.nonce == reply.nonce) else { return };
        q.answers += 1;
        // The shared store's copy wins over a local one that is not final: the receipt may have
        // reached another node.
        if let Some(f) = found
            && q.found.as_ref().is_none_or(|old| !old.record.state.is_final())
        {
            q.found = Some(f);
        }
        if q.answers < cores + usize::from(q.remote) {
            return;
        }
        if !q.remote
            && q.found.as_ref().is_none_or(|f| !f.record.state.is_final())
            && let Some(c) = &self.customer
            && self.core.remote_query(q.shown_id, c.idx, reply)
        {
            q.remote = true;
            return;
        }
        let Some(q) = self.queries.remove(&seq) else { return };
        let style = self.customer.as_ref().map_or(crate::msgid::IdStyle::Hex, |c| c.id_style);
        match (q.what, q.found) {
            (Pending::Query, Some(f)) => {
                let r = &f.record;
                let body = smppgw_codec::QuerySmResp {
                    message_id: crate::core::shown_text(r.shown_id, style),
                    final_date: if r.final_at > 0 { smpp_time(r.final_at) } else { Bytes::new() },
                    message_state: r.state.as_u8(),
                    error_code: r.error.min(255) as u8,
                };
                smppgw_codec::Pdu::new(seq, smppgw_codec::Body::QuerySmResp(body)).encode(&mut self.wbuf);
                self.machine.op_answered(now, &mut self.wbuf, events);
            }
            // A record without the vendor's id (the vendor accepted with an empty message_id)
            // cannot name the message at the vendor: forwarded with an empty id, a cancel_sm
            // would cancel every pending message of those addresses (SMPP 3.4, 4.9.1), other
            // customers' too, on the shared bind. It falls through to the failure below.
            //
            // Nor can a submit_multi's id, which names one message per destination, perhaps at
            // several vendors: the record found is one of them, and changing it alone while
            // answering ESME_ROK would tell the customer they all were.
            (Pending::Cancel(mut x), Some(f))
                if !f.record.state.is_final() && !f.record.vendor_id.is_empty() && !f.record.of_multi() =>
            {
                x.message_id = Bytes::copy_from_slice(&f.record.vendor_id);
                let nonce = self.new_nonce();
                let op = OpJob {
                    reply: self.reply_to_request(seq, ReplyKind::Cancel, nonce),
                    vendor: f.record.vendor,
                    pdu: Box::new(smppgw_codec::Body::CancelSm(x)),
                    shard: f.shard,
                    shown_id: f.record.shown_id,
                };
                // Found in the shared store, it may not be in this node's: its outcome must be.
                if f.shared {
                    self.core.send(usize::from(f.shard), CoreMsg::Adopt(Box::new(f.record.clone())));
                }
                self.ops_out.insert(seq, (now, ReplyKind::Cancel, nonce));
                self.core.dispatch_op(op);
            }
            (Pending::Replace(mut x), Some(f))
                if !f.record.state.is_final() && !f.record.vendor_id.is_empty() && !f.record.of_multi() =>
            {
                x.message_id = Bytes::copy_from_slice(&f.record.vendor_id);
                let nonce = self.new_nonce();
                let op = OpJob {
                    reply: self.reply_to_request(seq, ReplyKind::Replace, nonce),
                    vendor: f.record.vendor,
                    pdu: Box::new(smppgw_codec::Body::ReplaceSm(x)),
                    shard: f.shard,
                    shown_id: f.record.shown_id,
                };
                // Found in the shared store, it may not be in this node's: its outcome must be.
                if f.shared {
                    self.core.send(usize::from(f.shard), CoreMsg::Adopt(Box::new(f.record.clone())));
                }
                self.ops_out.insert(seq, (now, ReplyKind::Replace, nonce));
                self.core.dispatch_op(op);
            }
            (what, _) => {
                let (st, body) = what.failure();
                smppgw_codec::Pdu::with_status(seq, st, body).encode(&mut self.wbuf);
                self.machine.op_answered(now, &mut self.wbuf, events);
            }
        }
    }

    fn on_deliver(&mut self, d: Arc<crate::deliveries::Delivery>, now: Instant) {
        // An MO a vendor sent as data_sm may have addresses of up to 65 characters, which a
        // deliver_sm cannot carry (20): it goes on as data_sm, as it came.
        let deliver_sm_max = smppgw_codec::pdu::max::ADDR - 1;
        let long_addr = d.body.source.addr.len() > deliver_sm_max || d.body.dest.addr.len() > deliver_sm_max;
        let as_data_sm = long_addr
            || (d.kind == crate::deliveries::Kind::Receipt
                && self
                    .customer
                    .as_ref()
                    .is_some_and(|c| c.cfg.receipt_pdu == crate::config::ReceiptPdu::DataSm));
        if !self.machine.deliver(d.token, &d.body, as_data_sm, now, &mut self.wbuf) {
            let home = self.core.home_of(d.customer);
            let session = self.me();
            self.core.send(
                home,
                CoreMsg::DeliveryAck {
                    customer: d.customer,
                    token: d.token,
                    session,
                    answer: Answer::NotSent,
                },
            );
            // Open still (unbinding or closing) and answering what it has: it takes nothing more.
            self.core.send(home, CoreMsg::ReceiverDraining { customer: d.customer, session: self.me() });
        }
    }
}

/// An SMPP absolute time (YYMMDDhhmmss000+) for unix seconds, in UTC.
pub(crate) fn smpp_time(unix: u64) -> Bytes {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    Bytes::from(format!(
        "{:02}{:02}{:02}{:02}{:02}{:02}000+",
        y % 100,
        m,
        d,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    ))
}

/// A write that makes no progress for the response timeout (at least
/// [`limits::WRITE_STALL_MIN_MS`]) fails: the peer stopped reading, and its session is closed.
fn set_write_stall(stream: &TcpStream, response_timeout_ms: u32) {
    let stall = u64::from(response_timeout_ms).max(limits::WRITE_STALL_MIN_MS);
    let _ = stream.set_write_timeout(Some(Duration::from_millis(stall)));
}

async fn customer_session(core: Rc<Core>, io: Rc<CoreIo>, mut stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    core.metrics.sessions.fetch_add(1, Ordering::Relaxed);
    let snap = core.snapshot();
    set_write_stall(&stream, snap.config.server.response_timeout_ms);
    let mailbox = Rc::new(Mailbox::new(limits::WINDOW_MAX as usize + limits::CUSTOMER_MAILBOX_MAX));
    let (slot, generation) = core.add_session(mailbox.clone());
    let now = Instant::now();
    let mut decoder =
        Decoder::new(snap.config.server.max_command_length.min(limits::UNBOUND_COMMAND_LENGTH_MAX));
    let mut d = CustomerDriver {
        core: core.clone(),
        io: io.clone(),
        slot,
        generation,
        machine: CustomerSession::new(customer_settings(&snap), now),
        customer: None,
        bound_with: None,
        receiving: false,
        wbuf: BytesMut::new(),
        queries: std::collections::HashMap::new(),
        ops_out: std::collections::HashMap::new(),
        nonce: 0,
        pending_timeout: pending_timeout(&snap),
        multis: std::collections::HashMap::new(),
        confirms: Vec::new(),
        counted: false,
        closing: false,
    };
    drop(snap);
    let mut rbuf = BytesMut::new();
    let (mut events, mut msgs) = (Vec::new(), Vec::new());
    let mut deadline = Deadline::new(d.machine.next_deadline());
    // Sessions that were handed over while the node began shutting down: unbound at once.
    let mut settling = false;
    if core.shutting_down.get() {
        let _ = mailbox.push(SessionMsg::Shutdown);
    }
    let mut version = core.snapshot().version;
    // PDUs read behind a bind, decoded once the bind is answered.
    let mut behind_bind = false;
    // Counted among its address's unbound connections (see `serve`) until it binds.
    let mut unbound = true;
    while !d.closing {
        let next = d.machine.next_deadline();
        deadline.set(d.pending_deadline().map_or(next, |p| p.min(next)));
        let wake = if std::mem::take(&mut behind_bind) {
            Wake::Read
        } else {
            // Not bound yet, a read takes no more than an unbound PDU may be long: what a peer
            // sends behind its bind waits in the socket, not here, while the bind is checked.
            let read_max = if d.machine.reads_nothing_more() {
                0
            } else if d.customer.is_none() {
                limits::UNBOUND_READ_BYTES
            } else {
                usize::MAX
            };
            wait(&mut stream, &mut rbuf, read_max, &io, &mailbox, &mut deadline.timer).await
        };
        let now = Instant::now();
        // A reload gives the session its new settings (the server's timers and framing limit, the
        // customer's rate, window, formats) before what woke it is handled; a session whose
        // customer is removed, or no longer lets it in as it bound (password hash, source
        // address, bind type), is unbound.
        // Borrowed, not cloned (a count both cores write, on every wake), in a block that ends
        // before any await.
        {
            let snap = core.snap();
            if snap.version != version {
                version = snap.version;
                // The server's session settings apply to the sessions already open too, the
                // write-stall timeout (from the response timeout) included.
                d.machine.set_server_settings(customer_settings(&snap));
                d.pending_timeout = pending_timeout(&snap);
                set_write_stall(&stream, snap.config.server.response_timeout_ms);
                let max = snap.config.server.max_command_length;
                decoder = Decoder::new(if d.customer.is_some() {
                    max
                } else {
                    max.min(limits::UNBOUND_COMMAND_LENGTH_MAX)
                });
                if let Some(c) = d.customer.take() {
                    let current = snap.customer_at(c.idx);
                    // Against what it bound with, not the configuration before: this core may
                    // have skipped versions (one where the customer was gone, say).
                    if let Some(why) =
                        d.bound_with.as_ref().and_then(|b| b.revoked_by(current.map(Arc::as_ref)))
                    {
                        d.bound_with = None;
                        info!(reason = %why, "unbinding: a reload revoked what the session bound with");
                        // Answers what is outstanding, then unbinds.
                        d.machine.begin_shutdown(Instant::now(), &mut d.wbuf, &mut events);
                    }
                    match current {
                        Some(n) => {
                            let window =
                                if n.cfg.window == 0 { snap.config.server.window } else { n.cfg.window };
                            d.machine.update_settings(n.id_style, window);
                            d.customer = Some(n.clone());
                        }
                        // Unbinding (above): its counts are the removed customer's.
                        None => d.customer = Some(c),
                    }
                }
            }
        }
        let timer_woke = matches!(wake, Wake::Timer);
        let read = matches!(wake, Wake::Read);
        match wake {
            Wake::Eof => break,
            Wake::Read => loop {
                match decoder.decode(&mut rbuf) {
                    Ok(Some(pdu)) => {
                        d.machine.on_pdu(pdu, now, &mut d.wbuf, &mut events);
                        if d.machine.is_binding() {
                            // The rest waits for the bind's answer, which sets the framing limit.
                            behind_bind = !rbuf.is_empty();
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        match &e {
                            DecodeError::Pdu { .. } => core.metrics.malformed.fetch_add(1, Ordering::Relaxed),
                            _ => core.metrics.framing_errors.fetch_add(1, Ordering::Relaxed),
                        };
                        debug!("bad PDU: {e}");
                        d.machine.on_decode_error(&e, now, &mut d.wbuf, &mut events);
                        if !matches!(e, DecodeError::Pdu { .. }) {
                            // Nothing after it can be framed: the rest is dropped unread.
                            rbuf.clear();
                            break;
                        }
                    }
                }
            },
            Wake::Mail => {
                mailbox.drain_into(&mut msgs);
                for m in msgs.drain(..) {
                    match m {
                        SessionMsg::Done { reply, result, confirm } => {
                            d.on_done(reply, result, confirm, now, &mut events)
                        }
                        SessionMsg::Deliver(del) => d.on_deliver(del, now),
                        SessionMsg::QueryAnswer { reply, found } => {
                            d.on_query_answer(reply, found, now, &mut events)
                        }
                        SessionMsg::Shutdown => d.machine.begin_shutdown(now, &mut d.wbuf, &mut events),
                        SessionMsg::Settle => {
                            settling = true;
                            d.machine.begin_settle(now, &mut d.wbuf, &mut events)
                        }
                        // Taken above, before this batch: nothing more to do.
                        SessionMsg::Reloaded => {}
                    }
                }
            }
            Wake::Timer => {
                deadline.fired = true;
                d.machine.on_tick(now, &mut d.wbuf, &mut events)
            }
        }
        if !timer_woke && now >= deadline.at + STARVED_TIMER {
            // A peer that keeps the socket readable is read before the timer is looked at:
            // deadlines it kept from firing are acted on here.
            d.machine.on_tick(now, &mut d.wbuf, &mut events);
        }
        if !d.queries.is_empty() || !d.multis.is_empty() || !d.ops_out.is_empty() {
            d.expire_pending(now, &mut events);
        }
        for ev in d.on_events(&mut events, now, peer) {
            let Event::Bind { kind, bind, seq } = ev else { continue };
            let snap = core.snapshot();
            match authenticate(&core, &io, &snap, kind, &bind, peer.ip()).await {
                Ok(c) => {
                    if std::mem::take(&mut unbound) {
                        io.leave_unbound(peer.ip());
                    }
                    core.metrics.binds.fetch_add(1, Ordering::Relaxed);
                    core.metrics.sessions_bound.fetch_add(1, Ordering::Relaxed);
                    core.metrics.sessions_by_core[core.idx].fetch_add(1, Ordering::Relaxed);
                    tracing::Span::current().record("system_id", c.cfg.system_id.as_str());
                    info!(?kind, "bound");
                    let window = if c.cfg.window == 0 { snap.config.server.window } else { c.cfg.window };
                    d.machine.bind_accepted(kind, seq, c.id_style, window, &mut d.wbuf);
                    if kind.can_receive() {
                        d.receiving = true;
                        d.counted = true;
                        c.receivers.fetch_add(1, Ordering::AcqRel);
                        core.send(
                            core.home_of(c.idx),
                            CoreMsg::Receiver { customer: c.idx, session: d.me(), up: true },
                        );
                    }
                    core.set_session_customer(d.slot, c.idx);
                    d.bound_with = Some(BoundWith::new(&c, peer.ip(), kind));
                    d.customer = Some(c);
                    // Bound: the configured framing limit applies from now on.
                    decoder = Decoder::new(snap.config.server.max_command_length);
                }
                Err(st) => {
                    core.metrics.bind_failures.fetch_add(1, Ordering::Relaxed);
                    // Counted every time; logged at most once a second here (an unknown
                    // system_id costs the peer nothing to send again).
                    if let Some(skipped) = io.bind_refused.allow(Instant::now()) {
                        info!(system_id = %String::from_utf8_lossy(&bind.system_id), status = %st, skipped, "bind refused");
                    }
                    let mut more = Vec::new();
                    d.machine.bind_refused(kind, seq, st, Instant::now(), &mut d.wbuf, &mut more);
                    d.closing |= more.iter().any(|e| matches!(e, Event::Close(_)));
                }
            }
        }
        if !d.wbuf.is_empty() {
            let now = Instant::now();
            let write_by = match d.customer {
                // Its bind deadline (a moment more to say why it closes, if it is already past).
                None => d.machine.next_deadline().max(now + Duration::from_millis(100)),
                Some(_) => now + Duration::from_millis(limits::SESSION_WRITE_MAX_MS),
            };
            let mut write = std::pin::pin!(stream.write_all(&d.wbuf));
            // Nearly always written at once (the socket's send buffer has room): no timer then.
            let written = match futures_lite::future::poll_once(&mut write).await {
                Some(r) => r.is_ok(),
                None => {
                    futures_lite::future::or(async { write.await.is_ok() }, async {
                        Timer::new(write_by.saturating_duration_since(now)).await;
                        false
                    })
                    .await
                }
            };
            if !written {
                debug!("write failed or too slow: closing");
                break;
            }
            d.wbuf.clear();
        }
        // Written (or nothing to write for them): their receipts may go.
        for (shard, id) in d.confirms.drain(..) {
            core.send(usize::from(shard), CoreMsg::Answered(id));
        }
        if read && !behind_bind {
            trim_read_buffer(&mut rbuf);
        }
        trim_write_buffer(&mut d.wbuf);
        if d.machine.is_closed() {
            d.closing = true;
        }
        if d.counted && !d.machine.takes_deliveries() {
            // Unbinding (behind submits still out) or closing: the node stops taking the
            // customer's receipts from the shared queue for it (they would only go back), and
            // its home core stops choosing it.
            d.uncount_receiver();
            if let Some(c) = &d.customer {
                core.send(
                    core.home_of(c.idx),
                    CoreMsg::ReceiverDraining { customer: c.idx, session: d.me() },
                );
            }
        }
        if settling {
            core.set_settled(slot, d.machine.is_settled());
        }
    }
    mailbox.close();
    // Answers this session will never write: the receipts held for them need not wait.
    msgs.clear();
    mailbox.drain_into(&mut msgs);
    for m in msgs.drain(..) {
        if let SessionMsg::Done { result, confirm, .. } = m {
            core.answer_written(confirm, result);
        }
    }
    for (_, mut pm) in d.multis.drain() {
        d.confirms.append(&mut pm.confirms);
    }
    for (shard, id) in d.confirms.drain(..) {
        core.send(usize::from(shard), CoreMsg::Answered(id));
    }
    core.remove_session(slot);
    core.metrics.sessions.fetch_sub(1, Ordering::Relaxed);
    io.balancer.closed(core.idx);
    if unbound {
        io.leave_unbound(peer.ip());
    }
    d.uncount_receiver();
    if let Some(c) = &d.customer {
        if d.receiving {
            core.send(core.home_of(c.idx), CoreMsg::Receiver { customer: c.idx, session: d.me(), up: false });
        }
        c.remove_bind();
        core.metrics.sessions_bound.fetch_sub(1, Ordering::Relaxed);
        core.metrics.sessions_by_core[core.idx].fetch_sub(1, Ordering::Relaxed);
        info!(outstanding = d.machine.outstanding(), "session closed");
    }
    // Anything that raced into the mailbox after it closed is answered by the home core's
    // session_down (deliveries) or counted as orphaned (submit answers).
    let _ = stream.close().await;
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

/// How long a vendor bind must have held for its reconnect backoff to start again from the
/// minimum.
const BIND_STABLE_MS: u64 = 10_000;

/// One bind's share of its vendor's `throughput` (0: unlimited) when `up` of its binds can
/// send: the limit is the vendor account's, so the binds that are up share all of it (a bind
/// down, or one the vendor refuses because the account allows fewer sessions than configured,
/// does not take its part of the throughput with it).
fn per_bind_pace(v: &crate::config::VendorConfig, up: u32) -> f64 {
    if v.throughput == 0 { 0.0 } else { f64::from(v.throughput) / f64::from(up.clamp(1, v.binds.max(1))) }
}

/// How often a paced vendor bind counts its vendor's binds that are up, to take its share of the
/// vendor's throughput (see [`per_bind_pace`]).
const PACE_SHARE_CHECK_MS: u64 = 100;

/// How long fewer binds must have been up before a bind takes the larger share (a bind coming
/// up makes the others take a smaller one at once): binds starting together, or one
/// reconnecting at once, do not briefly send the vendor more than its throughput.
const PACE_SHARE_SETTLE_MS: u64 = 1_000;

/// How many of vendor `vendor`'s binds can send now.
fn vendor_binds_up(core: &Core, vendor: u32) -> u32 {
    core.snap().vendor(vendor).map_or(0, |v| {
        v.slots.iter().filter(|s| s.up.load(Ordering::Relaxed)).count().try_into().unwrap_or(u32::MAX)
    })
}

/// How soon a vendor bind that ran out of its share of the vendor's limit over all nodes tries
/// again (the control plane tops shares up about this often).
const LEASE_RETRY_MS: u64 = 5;

/// Which bind of a slot a task keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotBind {
    /// The bind that sends (a transmitter or a transceiver): the slot's jobs go to it, and it
    /// says whether the slot is up.
    Sender,
    /// The receiver of a `transmitter_receiver` slot: receipts and MO only.
    Receiver,
}

/// How often a bind waiting for its predecessor's end looks.
const PREDECESSOR_POLL_MS: u64 = 5;
/// After its predecessor's end, a bind refused again retries within this window at short
/// intervals (doubling from the first to the second figure), then with its reconnect backoff.
const QUICK_RETRY_WINDOW_MS: u64 = 2_000;
const QUICK_RETRY_MIN_MS: u64 = 20;
const QUICK_RETRY_MAX_MS: u64 = 400;

/// Counts a vendor bind task out of its vendor's `bind_tasks` when it ends, however it ends.
struct TaskCount(Arc<std::sync::atomic::AtomicU32>);

impl Drop for TaskCount {
    fn drop(&mut self) {
        let _ = self.0.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}

/// Stops a slot's receiver bind when the slot's sender task ends, however it ends.
struct StopsReceiver(Option<Rc<Mailbox<VendorMsg>>>);

impl Drop for StopsReceiver {
    fn drop(&mut self) {
        if let Some(m) = &self.0 {
            let _ = m.push(VendorMsg::Shutdown);
        }
    }
}

/// The longest a bind that replaces another (a reload) waits for the vendor's older binds to
/// end before binding again, when the vendor refused it while they were still bound.
pub const PREDECESSOR_WAIT_MAX_MS: u64 = 30_000;

/// How often the sender task of a removed vendor's `transmitter_receiver` slot, holding its
/// receiver for the drain, looks whether that receiver has ended on its own (its connection lost).
const DRAIN_RECEIVER_POLL_MS: u64 = 1_000;

/// A removed vendor's bind kept for the receipts and MO the vendor still sends
/// ([`VendorMsg::Drain`]).
#[derive(Debug)]
struct Drain {
    /// When it ends.
    until: Instant,
    /// Said at `info` that it began (a bind was up to take them).
    announced: bool,
    /// Ended before its time: the node stops, or a reload brought the vendor back.
    cut: bool,
}

impl Drain {
    /// Told to stop (the node stops, or a reload brought the vendor back): over now.
    fn cut(drain: &mut Option<Drain>) {
        if let Some(d) = drain
            && Instant::now() < d.until
        {
            d.until = Instant::now();
            d.cut = true;
        }
    }

    /// Whether it still holds its bind at `now`.
    fn holds(drain: &Option<Drain>, now: Instant) -> bool {
        drain.as_ref().is_some_and(|d| now < d.until)
    }

    /// Says at `info` that it began, once (a bind was up to take them).
    fn announce(&mut self, vendor: &str, slot: u32, what: &str) {
        if !self.announced {
            self.announced = true;
            let drain_ms = self.until.saturating_duration_since(Instant::now()).as_millis() as u64;
            info!(
                vendor = %vendor,
                slot,
                drain_ms,
                "vendor removed: its {what} stays bound for the receipts and MO it still sends"
            );
        }
    }

    /// Ends it (`lost`: its bind's connection closed), saying so when it had begun.
    fn end(drain: &mut Option<Drain>, vendor: &str, slot: u32, lost: bool) {
        if let Some(d) = drain.take()
            && d.announced
        {
            let why = match (lost, d.cut) {
                (true, _) => "the connection closed (not made again)",
                (false, true) => "cut short: the node stops, or a reload brought the vendor back",
                (false, false) => "its time is up",
            };
            info!(vendor = %vendor, slot, "removed vendor's bind: drain over, {why}");
        }
    }
}

/// Keeps one bind of a vendor slot connected and bound and, for its sender, feeds it the jobs
/// routed to the slot. A `transmitter_receiver` slot has two such tasks: the sender's `receiver`
/// is the other's mailbox, told to unbind when the sender stops (shutdown, retired slot).
///
/// `predecessor` is the bind this one replaces (a reload changed its settings): its slow-down
/// carries over. The new bind binds at once; if the vendor refuses it while older binds of the
/// vendor are still running (counted in the vendor's `bind_tasks`; a vendor that allows the
/// account only so many binds), it binds again as soon as they are gone, not after its
/// reconnect backoff.
///
/// A bind whose vendor a reload removed ([`VendorMsg::Drain`]) takes nothing new; a receiving
/// one stays bound for the drain, and a `transmitter_receiver` sender, its transmitter unbound,
/// keeps its receiver running as long.
pub async fn vendor_slot(
    core: Rc<Core>,
    io: Rc<CoreIo>,
    slot_rt: Arc<crate::snapshot::BindSlot>,
    mailbox: Rc<Mailbox<VendorMsg>>,
    (role, receiver): (SlotBind, Option<Rc<Mailbox<VendorMsg>>>),
    predecessor: Option<crate::core::BindHandle>,
) {
    // (A vendor gone already gets a counter of its own: the task ends at its first round.)
    let tasks = core.snapshot().vendor(slot_rt.vendor).map(|v| v.bind_tasks.clone()).unwrap_or_default();
    tasks.fetch_add(1, Ordering::AcqRel);
    let _counted = TaskCount(tasks.clone());
    // Older binds of the vendor still running (a reload replaced them; they finish what they
    // have in flight): the account may have no place for this one until they are gone.
    // (The predecessor's own task too: a draining bind of a renamed vendor counts under its
    // old name.)
    let older_running = || {
        let snap = core.snapshot();
        predecessor.as_ref().is_some_and(|(_, mb)| !mb.is_closed())
            || snap
                .vendor(slot_rt.vendor)
                .is_some_and(|v| tasks.load(Ordering::Acquire) > v.bind_tasks_wanted())
    };
    // A slowed pace carries over to the bind that replaces a slowed one.
    let inherited =
        predecessor.as_ref().filter(|(old, _)| old.slowed.load(Ordering::Relaxed)).and_then(|(old, _)| {
            let snap = core.snapshot();
            let cfg = &snap.vendor(slot_rt.vendor)?.cfg;
            let mut r = AdaptiveRate::new(per_bind_pace(cfg, cfg.binds));
            r.continue_from(f64::from_bits(old.pace_bits.load(Ordering::Relaxed)), io.nanos(Instant::now()));
            Some(r)
        });
    // An older bind of the vendor may still be at the vendor (finishing what it has in flight):
    // until this one is bound, a refusal waits for every older one's end.
    let mut predecessor_pending = predecessor.is_some() || older_running();
    let stops_receiver = StopsReceiver(receiver);
    let sender = role == SlotBind::Sender;
    let (vendor, slot) = (slot_rt.vendor, slot_rt.slot);
    // For the log once a reload has removed the vendor.
    let name = core.snapshot().vendor(vendor).map(|v| v.cfg.name.clone()).unwrap_or_default();
    let mut backoff_ms = 0u64;
    let mut queue: VecDeque<VJob> = VecDeque::new();
    let mut shutting = false;
    // Its vendor removed: the receipts and MO it still sends are waited for until then.
    let mut drain: Option<Drain> = None;
    let mut msgs = Vec::new();
    // The pace outlives a connection: a vendor that throttled and then dropped the bind is not
    // met at full speed again by the next one (it recovers a quarter a second meanwhile).
    let mut pace: Option<AdaptiveRate> = inherited;
    // Refused while older binds were still up: the next attempt waits for their end.
    let mut behind_predecessor = false;
    let (mut quick_until, mut quick_ms): (Option<Instant>, u64) = (None, QUICK_RETRY_MIN_MS);
    'slot: loop {
        // Mail a failed write had taken: jobs go elsewhere while this bind is down.
        if !msgs.is_empty() {
            redispatch_mail(&core, &mailbox, &slot_rt, &mut msgs, (&mut shutting, &mut drain));
        }
        let snap = core.snapshot();
        let Some(v) = snap.vendor(vendor).cloned() else { break };
        // A reload that replaced this slot retires this task (the new slot has its own).
        if !v.slots.get(slot as usize).is_some_and(|s| Arc::ptr_eq(s, &slot_rt)) {
            break;
        }
        let cfg = &v.cfg;
        if shutting || core.shutting_down.get() && mailbox.is_closed() {
            break;
        }
        // Refused while older binds were up: it waits for their end (if it has not come
        // already), then binds at once.
        let after_predecessor = std::mem::take(&mut behind_predecessor);
        // Just after the predecessor's end the vendor may not have let its bind go yet: a few
        // quick attempts first, then the configured backoff.
        let quick = !after_predecessor && quick_until.is_some_and(|t| Instant::now() < t);
        if backoff_ms > 0 || after_predecessor {
            // Jitter: +-25%, so a vendor restart is not met by every bind at the same instant.
            let jitter = (core.next_rand() % (backoff_ms / 2 + 1)) as i64 - (backoff_ms / 4) as i64;
            let wait_ms = match (after_predecessor, quick) {
                (true, _) => PREDECESSOR_WAIT_MAX_MS,
                (false, true) => quick_ms,
                (false, false) => (backoff_ms as i64 + jitter).max(1) as u64,
            };
            let until = Instant::now() + Duration::from_millis(wait_ms);
            // While down, jobs that raced into the mailbox go elsewhere.
            while Instant::now() < until {
                if after_predecessor && !older_running() {
                    // Gone: bind now (and quickly again for a moment if refused; after that, it
                    // is this bind's own backoff).
                    predecessor_pending = false;
                    backoff_ms = 0;
                    quick_until = Some(Instant::now() + Duration::from_millis(QUICK_RETRY_WINDOW_MS));
                    quick_ms = QUICK_RETRY_MIN_MS;
                    break;
                }
                let step = match after_predecessor {
                    true => Duration::from_millis(PREDECESSOR_POLL_MS),
                    false => until.saturating_duration_since(Instant::now()),
                };
                if mail_within(&mailbox, step.min(until.saturating_duration_since(Instant::now()))).await {
                    redispatch_mail(&core, &mailbox, &slot_rt, &mut msgs, (&mut shutting, &mut drain));
                    if shutting || mailbox.is_closed() {
                        // Through the common exit: the mailbox closed, and anything that raced
                        // into it sent elsewhere.
                        break 'slot;
                    }
                }
            }
        }
        if quick {
            quick_ms = (quick_ms * 2).min(QUICK_RETRY_MAX_MS);
        } else {
            backoff_ms = (backoff_ms * 2)
                .clamp(u64::from(cfg.reconnect_backoff_min_ms), u64::from(cfg.reconnect_backoff_max_ms));
        }
        // A bare IPv6 address is bracketed before its port.
        let addr = match cfg.host.parse::<std::net::Ipv6Addr>() {
            Ok(_) => format!("[{}]:{}", cfg.host, cfg.port),
            Err(_) => format!("{}:{}", cfg.host, cfg.port),
        };
        // A host name is resolved on a thread of its own: getaddrinfo on the executor would stop
        // every session of this core for as long as DNS takes to answer (or time out), and on
        // the executor's blocking thread it would hold up the customers' password checks queued
        // behind it. One lookup at a time per bind slot.
        let resolved = match addr.parse::<SocketAddr>() {
            Ok(a) => Ok(vec![a]),
            Err(_) => {
                let name = addr.clone();
                let lookup = async { Some(resolve(name).await) };
                // A stop's abort does not wait for DNS either (the lookup ends on its thread).
                let aborted = async {
                    abort_requested(&mailbox, &mut msgs).await;
                    None
                };
                let Some(found) = futures_lite::future::or(lookup, aborted).await else {
                    break 'slot;
                };
                found
            }
        };
        let timeout = Duration::from_millis(u64::from(cfg.response_timeout_ms));
        // Each address in turn, as the name gave them (localhost: ::1 and 127.0.0.1).
        let mut connected = Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no address"));
        match resolved {
            Ok(addrs) => {
                for a in addrs {
                    // A stop's abort does not wait for a connect that takes its whole timeout.
                    let attempt = async { Some(TcpStream::connect_timeout(a, timeout).await) };
                    let aborted = async {
                        abort_requested(&mailbox, &mut msgs).await;
                        None
                    };
                    let Some(attempt) = futures_lite::future::or(attempt, aborted).await else {
                        // The mail taken (the abort, jobs that raced in) goes through the exit.
                        break 'slot;
                    };
                    connected = attempt.map_err(std::io::Error::from);
                    if connected.is_ok() {
                        break;
                    }
                }
            }
            Err(e) => connected = Err(e),
        }
        let mut stream = match connected {
            Ok(s) => s,
            Err(e) => {
                slot_rt.set_error(crate::snapshot::BindError::Connect, crate::core::unix_now());
                warn!(vendor = %cfg.name, slot, "connect to {addr} failed: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        set_write_stall(&stream, cfg.response_timeout_ms);
        let kind = match (role, cfg.bind_type) {
            (SlotBind::Receiver, _) => VendorBindKind::Receiver,
            (
                SlotBind::Sender,
                crate::config::VendorBindType::Transmitter
                | crate::config::VendorBindType::TransmitterReceiver,
            ) => VendorBindKind::Transmitter,
            (SlotBind::Sender, _) => VendorBindKind::Transceiver,
        };
        // A transmitter is sent no receipts: it does not drain (a `transmitter_receiver` slot's
        // receiver does, held by this task once its transmitter has unbound).
        let receives = kind != VendorBindKind::Transmitter;
        let (mut rbuf, mut wbuf) = (BytesMut::new(), BytesMut::new());
        let mut machine: VendorSession<VJob> =
            VendorSession::new(vendor_settings(cfg, kind), Instant::now(), &mut wbuf);
        // Its share of the vendor's throughput: a part as if every bind were up, until fewer have
        // been for a while.
        let mut share = cfg.binds.max(1);
        let mut share_checked = Instant::now();
        let mut fewer_since: Option<Instant> = None;
        let rate = match &mut pace {
            Some(r) => {
                r.set_ceiling(per_bind_pace(cfg, share));
                r
            }
            None => pace.insert(AdaptiveRate::new(per_bind_pace(cfg, share))),
        };
        // The vendor account's limit over all nodes (inactive without Redis).
        let mut lease = v.lease.clone();
        let mut seen_version = core.snap().version;
        // Looked at once at the start: jobs queued under an earlier session may predate a reload.
        let mut routes_seen = 0;
        let mut lease_starved = false;
        let decoder = Decoder::default();
        let mut events: Vec<VendorEvent<VJob>> = Vec::new();
        let mut deadline = Deadline::new(machine.next_deadline());
        let mut unbinding = false;
        let mut bound_at: Option<Instant> = None;
        'session: loop {
            let version = core.snap().version;
            if version != seen_version {
                seen_version = version;
                // A reload that kept this bind (same connection settings) may have changed its
                // pace, timing or the vendor's shared limit (a new lease): they apply now.
                if let Some(nv) = core.snap().vendor(vendor) {
                    let fresh = vendor_settings(&nv.cfg, kind);
                    rate.set_ceiling(per_bind_pace(&nv.cfg, share));
                    machine.set_timing(fresh.response_timeout, fresh.enquire_link_interval);
                    set_write_stall(&stream, nv.cfg.response_timeout_ms);
                    lease = nv.lease.clone();
                }
            }
            match write_unless_aborted(&mut stream, &wbuf, &mailbox, &mut msgs).await {
                Written::Done => {}
                // Aborted: the mail below says so, and the session closes.
                Written::Aborted => {}
                Written::Failed => break 'session,
            }
            wbuf.clear();
            let now = Instant::now();
            let mut next = machine.next_deadline();
            let sendable = !queue.is_empty() && machine.has_room();
            if sendable || rate.is_slowed() {
                match rate.ready_at(io.nanos(now)) {
                    Some(at) => next = next.min(io.epoch + Duration::from_nanos(at)),
                    // Work queued that the pace lets go now (a reload just raised it, after the
                    // send below held the work back at the old pace): round again at once,
                    // rather than leave it until the next mail or read.
                    None if sendable && !lease_starved => next = now,
                    None => {}
                }
            }
            if lease_starved {
                next = next.min(now + Duration::from_millis(LEASE_RETRY_MS));
            }
            if let Some(d) = drain.as_ref().filter(|_| receives) {
                next = next.min(d.until);
            }
            // Backpressure: while another executor is behind with what this one sends it, read
            // nothing more from the vendor (see `Core::backlogged`).
            while core.backlogged() && !core.shutting_down.get() {
                Timer::new(Duration::from_millis(1)).await;
            }
            deadline.set(next);
            // Mail taken while writing is handled before anything else.
            let wake = match msgs.is_empty() {
                true => wait(&mut stream, &mut rbuf, usize::MAX, &io, &mailbox, &mut deadline.timer).await,
                false => Wake::Mail,
            };
            let now = Instant::now();
            let timer_woke = matches!(wake, Wake::Timer);
            match wake {
                Wake::Eof => break 'session,
                Wake::Read => loop {
                    match decoder.decode(&mut rbuf) {
                        Ok(Some(pdu)) => machine.on_pdu(pdu, now, &mut wbuf, &mut events),
                        Ok(None) => break,
                        Err(e) => {
                            // Logged at most once a second here, with how many were not.
                            if let Some(skipped) = io.vendor_bad_pdu.allow(now) {
                                warn!(vendor = %cfg.name, slot, skipped, "bad PDU from vendor: {e}");
                            }
                            machine.on_decode_error(&e, now, &mut wbuf, &mut events);
                            if !matches!(e, DecodeError::Pdu { .. }) {
                                break;
                            }
                        }
                    }
                },
                Wake::Mail => {
                    mailbox.drain_into(&mut msgs);
                    let mut abort = false;
                    for m in msgs.drain(..) {
                        match m {
                            // Its vendor removed: what raced in goes elsewhere (none of it is
                            // routed here any more).
                            VendorMsg::Job(j) if drain.is_some() => {
                                slot_rt.load.fetch_sub(1, Ordering::Relaxed);
                                core.dispatch(j);
                            }
                            VendorMsg::Op(o) if drain.is_some() => core.dispatch_op(o),
                            VendorMsg::Job(j) => queue.push_back(VJob::Submit(j)),
                            // Submits are bounded by the slot's capacity before they get here;
                            // cancel_sm and replace_sm are bounded here, by the same figure.
                            VendorMsg::Op(o) if queue.len() >= slot_rt.capacity as usize => {
                                core.reply(o.reply, Err(o.reply.kind.op_failure()));
                            }
                            VendorMsg::Op(o) => queue.push_back(VJob::Op(o)),
                            VendorMsg::Shutdown if !sender => {
                                shutting = true;
                                Drain::cut(&mut drain);
                            }
                            VendorMsg::Shutdown => {
                                shutting = true;
                                Drain::cut(&mut drain);
                                // Unbinding: route nothing more here.
                                slot_rt.up.store(false, Ordering::Relaxed);
                            }
                            VendorMsg::Retire => {
                                shutting = true;
                                Drain::cut(&mut drain);
                                if sender {
                                    slot_rt.up.store(false, Ordering::Relaxed);
                                }
                                // Not sent yet: safe to send elsewhere right away.
                                send_elsewhere(&core, &slot_rt, &mut queue);
                            }
                            // As retired, and a bind that receives stays for the drain.
                            VendorMsg::Drain { until } => {
                                begin_drain(until, &mut shutting, &mut drain);
                                if sender {
                                    slot_rt.up.store(false, Ordering::Relaxed);
                                }
                                send_elsewhere(&core, &slot_rt, &mut queue);
                            }
                            VendorMsg::Abort => {
                                shutting = true;
                                abort = true;
                                Drain::cut(&mut drain);
                                slot_rt.up.store(false, Ordering::Relaxed);
                            }
                        }
                    }
                    if abort {
                        // Closed below like a lost connection: in flight answered as unknown,
                        // the queue sent elsewhere (answered, the node shutting down).
                        break 'session;
                    }
                    // (Not one over before it began: the vendor came back in the same reload.)
                    if receives
                        && machine.is_bound()
                        && Drain::holds(&drain, now)
                        && let Some(d) = &mut drain
                    {
                        d.announce(&name, slot, "bind");
                    }
                }
                Wake::Timer => {
                    deadline.fired = true;
                    machine.on_tick(now, &mut wbuf, &mut events)
                }
            }
            if !timer_woke && now >= deadline.at + STARVED_TIMER {
                // A vendor that keeps the socket readable is read before the timer is looked
                // at: deadlines it kept from firing (submit timeouts, keepalive) are acted on
                // here. Not at once: after a pause in reading (a backlogged executor) answers
                // may still wait in the socket, and the timer's own wake reads them first.
                machine.on_tick(now, &mut wbuf, &mut events);
            }
            let mut close = false;
            for ev in events.drain(..) {
                match ev {
                    VendorEvent::Bound => {
                        info!(vendor = %cfg.name, slot, ?kind, "vendor bound");
                        if sender {
                            slot_rt.up.store(!shutting, Ordering::Relaxed);
                        }
                        bound_at = Some(now);
                        // Bound: nothing more to wait for.
                        predecessor_pending = false;
                        quick_until = None;
                    }
                    VendorEvent::BindFailed(st) => {
                        slot_rt.set_error(
                            crate::snapshot::BindError::BindRefused(st.0),
                            crate::core::unix_now(),
                        );
                        // Still bound, or gone here but perhaps not yet at the vendor.
                        behind_predecessor = predecessor_pending;
                        warn!(vendor = %cfg.name, slot, status = %st, "vendor refused bind")
                    }
                    VendorEvent::Done { job, outcome } => {
                        on_vjob(&core, &io, vendor, &slot_rt, rate, job, outcome, now)
                    }
                    VendorEvent::Deliver(d) => core.vendor_deliver(vendor, d),
                    VendorEvent::Close => close = true,
                }
            }
            if close {
                // What the session wrote last goes out first: the unbind_resp to the vendor's
                // unbind, and the deliver_sm_resp to receipts read with it (else re-sent to us).
                let _ = write_unless_aborted(&mut stream, &wbuf, &mailbox, &mut msgs).await;
                break 'session;
            }
            // Messages waiting here whose destination a reload routed to other vendors go there
            // (those already sent stay with this vendor's answer). Looked at here, just before
            // sending: a reload while this bind waited for its vendor shows only now.
            if core.snap().version != routes_seen {
                routes_seen = core.snap().version;
                let moved = |j: &VJob| matches!(j, VJob::Submit(j) if !core.still_routed_to(j, vendor));
                if queue.iter().any(moved) {
                    let (mut elsewhere, kept): (VecDeque<VJob>, VecDeque<VJob>) =
                        std::mem::take(&mut queue).into_iter().partition(moved);
                    queue = kept;
                    send_elsewhere(&core, &slot_rt, &mut elsewhere);
                }
            }
            // The vendor's throughput shared by its binds up now (looked at every 100 ms).
            if sender && now >= share_checked + Duration::from_millis(PACE_SHARE_CHECK_MS) {
                share_checked = now;
                if let Some(nv) = core.snap().vendor(vendor) {
                    let up = vendor_binds_up(&core, vendor).clamp(1, nv.cfg.binds.max(1));
                    let settled = |since: Instant| now >= since + Duration::from_millis(PACE_SHARE_SETTLE_MS);
                    if up > share || (up < share && fewer_since.is_some_and(settled)) {
                        share = up;
                        fewer_since = None;
                        rate.set_ceiling(per_bind_pace(&nv.cfg, share));
                    } else if up < share {
                        fewer_since.get_or_insert(now);
                    } else {
                        fewer_since = None;
                    }
                }
            }
            // Send what the window, the pace and the shared limit allow.
            lease_starved = false;
            while machine.has_room() {
                let Some(job) = queue.pop_front() else { break };
                let t = io.nanos(now);
                if rate.ready_at(t).is_some() {
                    queue.push_front(job);
                    break;
                }
                if matches!(job, VJob::Submit(_)) && !lease.try_take(1) {
                    queue.push_front(job);
                    lease_starved = true;
                    break;
                }
                let mut job = job;
                if let VJob::Submit(j) = &mut job {
                    j.sent_at = Some(now);
                }
                let sent = match job {
                    VJob::Submit(_) => machine.submit(job, now, &mut wbuf, |j| match j {
                        VJob::Submit(j) => &j.submit,
                        VJob::Op(_) => &EMPTY_SUBMIT,
                    }),
                    VJob::Op(ref op) => {
                        let body = (*op.pdu).clone();
                        machine.request(job, now, &mut wbuf, body)
                    }
                };
                match sent {
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
            // What the slot publishes for the dispatcher is its sender's: a `transmitter_receiver`
            // slot's receiver bind (never paced) would overwrite it at every receipt it reads.
            if sender {
                let slowed = rate.is_slowed();
                slot_rt.slowed.store(slowed, Ordering::Relaxed);
                slot_rt.pace_bits.store(rate.current().to_bits(), Ordering::Relaxed);
                // While slowed, take only what the pace can send within about 100 ms (and nothing while
                // the next send is further off), so work goes to other vendors instead of queueing.
                // A bind the vendor lost takes nothing more (it closes once its last answer is in),
                // and what waits at it goes elsewhere now, not after that answer or its timeout;
                // so does one whose link may be dead, until the vendor answers its enquire_link.
                let lost = machine.is_lost() || machine.is_suspect();
                if lost && !queue.is_empty() {
                    slot_rt.effective_capacity.store(0, Ordering::Relaxed);
                    send_elsewhere(&core, &slot_rt, &mut queue);
                }
                let cap = if lost {
                    0
                } else if !slowed {
                    paced_capacity(rate.current(), machine.inflight(), slot_rt.capacity)
                } else if rate.ready_at(io.nanos(now)).is_none() {
                    ((rate.current() / 10.0) as u32).clamp(1, slot_rt.capacity)
                } else {
                    0
                };
                slot_rt.effective_capacity.store(cap, Ordering::Relaxed);
                // Jobs queued here before the pace fell (the vendor throttled, a reload lowered its
                // throughput, more of its binds came up to share it) would wait out the slower
                // pace (at 1/s, minutes for a queue of four windows) and reach the vendor after
                // their customer gave up and sent them again: those beyond what it now takes go
                // to the route's other binds and vendors, or back to their customers as
                // throttled. Counted as the dispatcher counts (the slot's load: its submits in
                // flight and queued), so that what goes does not come straight back.
                // (Not an unpaced bind's: its cap is its whole capacity, which two cores choosing
                // it at once may pass by a job or two; those wait for the window as before.)
                if !shutting && rate.current().is_finite() && slot_rt.load.load(Ordering::Relaxed) > cap {
                    // Submits from the back of the queue; cancel/replace stay (they do not count in
                    // the load, and the vendor that holds the message is the only one to ask).
                    let mut excess = slot_rt.load.load(Ordering::Relaxed) - cap;
                    let (mut extra, mut kept) = (VecDeque::new(), VecDeque::with_capacity(queue.len()));
                    while let Some(job) = queue.pop_back() {
                        if excess > 0 && matches!(job, VJob::Submit(_)) {
                            excess -= 1;
                            extra.push_front(job);
                        } else {
                            kept.push_front(job);
                        }
                    }
                    queue = kept;
                    send_elsewhere(&core, &slot_rt, &mut extra);
                }
                // When the pace next lets this slot send (0: now), for the dispatcher's choice.
                let next_send_ms = match rate.ready_at(io.nanos(now)) {
                    Some(at) => {
                        crate::core::unix_now_ms() + at.saturating_sub(io.nanos(now)).div_ceil(1_000_000)
                    }
                    None => 0,
                };
                if slot_rt.next_send_ms.load(Ordering::Relaxed) != next_send_ms {
                    slot_rt.next_send_ms.store(next_send_ms, Ordering::Relaxed);
                }
            }
            if shutting && !unbinding && !machine.is_bound() {
                // Not bound yet (the bind is on its way): nothing is in flight and there is
                // nothing to unbind; what waits for this bind goes elsewhere below.
                break 'session;
            }
            if shutting
                && queue.is_empty()
                && machine.inflight() == 0
                && !unbinding
                && !(receives && Drain::holds(&drain, now))
            {
                if receives {
                    Drain::end(&mut drain, &name, slot, false);
                }
                machine.unbind(now, &mut wbuf);
                unbinding = true;
            }
            if machine.is_closed() {
                let _ = write_unless_aborted(&mut stream, &wbuf, &mailbox, &mut msgs).await;
                break 'session;
            }
        }
        // The connection is gone.
        if !shutting {
            slot_rt.set_error(crate::snapshot::BindError::Disconnected, crate::core::unix_now());
        }
        if receives {
            // Not made again: the vendor is no longer configured.
            Drain::end(&mut drain, &name, slot, true);
        }
        if sender {
            slot_rt.up.store(false, Ordering::Relaxed);
        }
        machine.close(&mut events);
        let now = Instant::now();
        for ev in events.drain(..) {
            if let VendorEvent::Done { job, outcome } = ev {
                on_vjob(&core, &io, vendor, &slot_rt, rate, job, outcome, now);
            }
        }
        // Jobs never sent are safe to send elsewhere.
        send_elsewhere(&core, &slot_rt, &mut queue);
        let _ = stream.close().await;
        if shutting {
            break;
        }
        slot_rt.reconnects.fetch_add(1, Ordering::Relaxed);
        core.metrics.vendor_reconnects.fetch_add(1, Ordering::Relaxed);
        // A bind that held starts the backoff again from its minimum; one the vendor dropped
        // soon after accepting it (an SMSC restarting, a login limit) keeps it growing, so a
        // flapping vendor is not reconnected to at the minimum interval for ever.
        if bound_at.is_some_and(|t| t.elapsed() >= Duration::from_millis(BIND_STABLE_MS)) {
            backoff_ms = 0;
        }
        if backoff_ms == 0 {
            backoff_ms = u64::from(cfg.reconnect_backoff_min_ms);
        }
    }
    // A removed vendor's `transmitter_receiver` slot: the transmitter has unbound, and the
    // receiver, which this task stops when it ends, stays bound for the drain.
    if let Some(rx) = stops_receiver.0.clone()
        && !rx.is_closed()
        && Drain::holds(&drain, Instant::now())
        && let Some(d) = &mut drain
    {
        d.announce(&name, slot, "receiver bind");
        while Drain::holds(&drain, Instant::now()) && !rx.is_closed() {
            let left =
                drain.as_ref().map_or(Duration::ZERO, |d| d.until.saturating_duration_since(Instant::now()));
            if mail_within(&mailbox, left.min(Duration::from_millis(DRAIN_RECEIVER_POLL_MS))).await {
                redispatch_mail(&core, &mailbox, &slot_rt, &mut msgs, (&mut shutting, &mut drain));
            }
        }
        Drain::end(&mut drain, &name, slot, rx.is_closed());
    }
    mailbox.close();
    // Anything that raced in after close goes elsewhere.
    if sender {
        slot_rt.up.store(false, Ordering::Relaxed);
    }
    redispatch_mail(&core, &mailbox, &slot_rt, &mut msgs, (&mut shutting, &mut drain));
}

/// What a vendor bind carries: submits and message operations.
#[derive(Debug)]
enum VJob {
    Submit(Box<Job>),
    Op(OpJob),
}

static EMPTY_SUBMIT: smppgw_codec::SubmitSm = smppgw_codec::SubmitSm {
    service_type: Bytes::new(),
    source: smppgw_codec::Address { ton: 0, npi: 0, addr: Bytes::new() },
    dest: smppgw_codec::Address { ton: 0, npi: 0, addr: Bytes::new() },
    esm_class: 0,
    protocol_id: 0,
    priority_flag: 0,
    schedule_delivery_time: Bytes::new(),
    validity_period: Bytes::new(),
    registered_delivery: 0,
    replace_if_present_flag: 0,
    data_coding: 0,
    sm_default_msg_id: 0,
    short_message: Bytes::new(),
    tlvs: smppgw_codec::Tlvs::new(),
};

fn on_vjob(
    core: &Core,
    io: &CoreIo,
    vendor: u32,
    slot_rt: &crate::snapshot::BindSlot,
    rate: &mut AdaptiveRate,
    job: VJob,
    outcome: Outcome,
    now: Instant,
) {
    match job {
        VJob::Submit(job) => {
            slot_rt.load.fetch_sub(1, Ordering::Relaxed);
            // A bind the vendor lost (or whose link may be dead) takes nothing more from now on,
            // not from when it next publishes its capacity: the message it hands back, routed
            // again below, must not come straight back to it.
            if matches!(outcome, Outcome::Refused(CommandStatus::ESME_RINVBNDSTS) | Outcome::Unknown) {
                slot_rt.effective_capacity.store(0, Ordering::Relaxed);
            }
            match &outcome {
                Outcome::Refused(st) => slot_rt
                    .set_error(crate::snapshot::BindError::SubmitRefused(st.0), crate::core::unix_now()),
                Outcome::Unknown => {
                    slot_rt.set_error(crate::snapshot::BindError::Timeout, crate::core::unix_now())
                }
                Outcome::Accepted(_) => {}
            }
            on_outcome(core, io, vendor, rate, job, outcome, now);
        }
        VJob::Op(op) => {
            let cancel = op.reply.kind == ReplyKind::Cancel;
            match outcome {
                Outcome::Accepted(_) => {
                    if cancel {
                        core.send(usize::from(op.shard), CoreMsg::Cancelled { shown_id: op.shown_id });
                    } else if let smppgw_codec::Body::ReplaceSm(r) = &*op.pdu
                        && let receipts = Wanted::from_registered_delivery(r.registered_delivery)
                        && receipts.any()
                    {
                        // The replaced message asks for receipts: the vendor's are delivered as it
                        // now asks. One that no longer asks changes nothing here (a receipt the
                        // vendor sends anyway still goes to the customer rather than being lost).
                        core.send(
                            usize::from(op.shard),
                            CoreMsg::WantsReceipt { shown_id: op.shown_id, receipts },
                        );
                    }
                    core.reply(op.reply, Ok(op.shown_id));
                }
                Outcome::Refused(st) => {
                    debug!(status = %st, "vendor refused the operation");
                    core.reply(op.reply, Err(op.reply.kind.op_failure()));
                }
                Outcome::Unknown => core.reply(op.reply, Err(op.reply.kind.op_failure())),
            }
        }
    }
}

/// Jobs queued at a bind but never sent: safe to send elsewhere.
fn send_elsewhere(core: &Core, slot_rt: &crate::snapshot::BindSlot, queue: &mut VecDeque<VJob>) {
    for job in queue.drain(..) {
        match job {
            VJob::Submit(job) => {
                slot_rt.load.fetch_sub(1, Ordering::Relaxed);
                core.dispatch(job);
            }
            VJob::Op(op) => core.dispatch_op(op),
        }
    }
}

/// How a vendor bind's write ended.
#[derive(Debug, PartialEq, Eq)]
enum Written {
    /// All of it.
    Done,
    /// The connection failed (or stalled past its write timeout).
    Failed,
    /// The bind was told to close at once ([`VendorMsg::Abort`]) before the write ended.
    Aborted,
}

/// Writes `buf` whole to a vendor, unless the bind is told to close at once first: a vendor that
/// stops reading must not keep a stopping node's bind in a write past the stop's abort wait (it
/// would be cancelled there, its submits unanswered). What the mailbox receives meanwhile is
/// moved to `held`, for the caller to handle as mail.
async fn write_unless_aborted(
    stream: &mut TcpStream,
    buf: &[u8],
    mailbox: &Mailbox<VendorMsg>,
    held: &mut Vec<VendorMsg>,
) -> Written {
    let write = async {
        match stream.write_all(buf).await {
            Ok(()) => Written::Done,
            Err(_) => Written::Failed,
        }
    };
    let aborted = async {
        abort_requested(mailbox, held).await;
        Written::Aborted
    };
    futures_lite::future::or(write, aborted).await
}

/// Waits until mail comes (true) or `wait` passes (false).
async fn mail_within(mailbox: &Mailbox<VendorMsg>, wait: Duration) -> bool {
    let mut t = Timer::new(wait);
    poll_fn(|cx| {
        if mailbox.poll_ready(cx.waker()) {
            return Poll::Ready(true);
        }
        Pin::new(&mut t).poll(cx).map(|_| false)
    })
    .await
}

/// Ends when the mailbox is told to abort ([`VendorMsg::Abort`]); what it receives meanwhile
/// is moved to `held`.
async fn abort_requested(mailbox: &Mailbox<VendorMsg>, held: &mut Vec<VendorMsg>) {
    poll_fn(|cx| {
        loop {
            // Registers the waker when empty; a closed mailbox receives nothing more.
            if !mailbox.poll_ready(cx.waker()) || mailbox.is_empty() {
                return Poll::Pending;
            }
            mailbox.drain_into(held);
            if held.iter().any(|m| matches!(m, VendorMsg::Abort)) {
                return Poll::Ready(());
            }
        }
    })
    .await
}

fn redispatch_mail(
    core: &Core,
    mailbox: &Mailbox<VendorMsg>,
    slot_rt: &crate::snapshot::BindSlot,
    msgs: &mut Vec<VendorMsg>,
    (shutting, drain): (&mut bool, &mut Option<Drain>),
) {
    mailbox.drain_into(msgs);
    for m in msgs.drain(..) {
        match m {
            VendorMsg::Job(j) => {
                slot_rt.load.fetch_sub(1, Ordering::Relaxed);
                core.dispatch(j);
            }
            VendorMsg::Op(op) => core.dispatch_op(op),
            VendorMsg::Drain { until } => begin_drain(until, shutting, drain),
            VendorMsg::Shutdown | VendorMsg::Retire | VendorMsg::Abort => {
                *shutting = true;
                Drain::cut(drain);
            }
        }
    }
}

/// A reload removed the bind's vendor: it stops like a retired one, and drains unless it was
/// stopping already.
fn begin_drain(until: Instant, shutting: &mut bool, drain: &mut Option<Drain>) {
    if !*shutting {
        *drain = Some(Drain { until, announced: false, cut: false });
    }
    *shutting = true;
}

fn on_outcome(
    core: &Core,
    io: &CoreIo,
    vendor: u32,
    rate: &mut AdaptiveRate,
    mut job: Box<Job>,
    outcome: Outcome,
    now: Instant,
) {
    if let Some(v) = core.snap().vendor(vendor) {
        let c = &v.counters;
        if let Some(sent) = job.sent_at
            && !matches!(outcome, Outcome::Unknown)
        {
            c.latency.observe(core.idx, now.saturating_duration_since(sent));
        }
        match &outcome {
            Outcome::Accepted(_) => c.accepted.fetch_add(1, Ordering::Relaxed),
            // One result each, so that they add up to the vendor's submits.
            Outcome::Refused(st) if *st == CommandStatus::ESME_RTHROTTLED => {
                c.throttled.fetch_add(1, Ordering::Relaxed)
            }
            Outcome::Refused(st) if st.is_temporary() => c.temporary.fetch_add(1, Ordering::Relaxed),
            Outcome::Refused(_) => c.refused.fetch_add(1, Ordering::Relaxed),
            Outcome::Unknown => c.unknown.fetch_add(1, Ordering::Relaxed),
        };
    }
    // A status about our session with the vendor, not about the message: "not bound" (it lost
    // the bind, which is being made again), "already bound", or a PDU it could not frame or
    // does not know. The message was not taken; it goes to the next vendor like one refused for
    // a temporary reason, and the customer, whose own session is fine, sees a system error.
    let about_our_session = |st: CommandStatus| {
        matches!(
            st,
            CommandStatus::ESME_RINVBNDSTS
                | CommandStatus::ESME_RALYBND
                | CommandStatus::ESME_RINVCMDLEN
                | CommandStatus::ESME_RINVCMDID
        )
    };
    let passed_over = |st: CommandStatus| st.is_temporary() || about_our_session(st);
    match outcome {
        Outcome::Accepted(vendor_id) => core.accepted(job, vendor, vendor_id, now),
        // Only this bind is gone at the vendor, which still has the message's other binds: they
        // may take it (or, none up, it waits for the binds being made again, as a new message
        // does), rather than the vendor counting as tried, which ends a one-vendor route.
        Outcome::Refused(CommandStatus::ESME_RINVBNDSTS)
            if job.lost_bind_retries < crate::core::LOST_BIND_RETRY_MAX =>
        {
            job.lost_bind_retries += 1;
            core.metrics.failovers.fetch_add(1, Ordering::Relaxed);
            core.dispatch(job);
        }
        Outcome::Refused(st) if passed_over(st) => {
            let st = if about_our_session(st) { CommandStatus::ESME_RSYSERR } else { st };
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
            job.maybe_sent = true;
            if core.failover_on_unknown.get() && job.mark_tried(vendor) {
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

/// What a bind at `pace` messages a second (infinite when unpaced) takes: its submits in flight
/// and what its pace sends within [`limits::PACED_QUEUE_WAIT_MS`], within its `capacity`.
fn paced_capacity(pace: f64, inflight: usize, capacity: u32) -> u32 {
    if !pace.is_finite() {
        return capacity;
    }
    let queue = (pace * limits::PACED_QUEUE_WAIT_MS as f64 / 1000.0).ceil().max(1.0);
    (inflight as f64 + queue).min(f64::from(capacity)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_that_used_up_its_failures_stays_refused_however_many_others_fail_after_it() {
        // Goal: a peer guessing passwords cannot free its own address by failing from
        // BIND_FAILURE_PEERS_MAX other addresses: the table forgets the addresses with the
        // fewest failures, not every one (it used to clear itself).
        let mut f = FailedBinds::default();
        let t0 = Instant::now();
        let guesser = IpAddr::from([10, 0, 0, 1]);
        for _ in 0..limits::BIND_FAILURES_PER_PEER {
            f.failed(guesser, t0);
        }
        assert!(f.exhausted(guesser, t0));
        let later = t0 + Duration::from_secs(1);
        for i in 0..2 * limits::BIND_FAILURE_PEERS_MAX as u32 {
            f.failed(IpAddr::from((0x0b00_0000u32 + i).to_be_bytes()), later);
        }
        assert!(
            f.exhausted(guesser, later),
            "still refused after {} others failed",
            2 * limits::BIND_FAILURE_PEERS_MAX
        );
        assert!(f.peers.len() <= limits::BIND_FAILURE_PEERS_MAX);
        // Its window still ends.
        assert!(!f.exhausted(guesser, t0 + FailedBinds::WINDOW));
    }

    #[test]
    fn ipv6_peers_count_by_their_64() {
        // Goal: a host holding a /64 cannot get a budget of failures per address in it.
        let mut f = FailedBinds::default();
        let now = Instant::now();
        for i in 0..limits::BIND_FAILURES_PER_PEER {
            f.failed(IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, i as u16 + 1]), now);
        }
        assert!(f.exhausted(IpAddr::from([0x2001, 0xdb8, 0, 1, 0xffff, 1, 2, 3]), now));
        assert!(!f.exhausted(IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1]), now), "another /64");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap_or(IpAddr::from([0u8; 16]));
        for _ in 0..limits::BIND_FAILURES_PER_PEER {
            f.failed(mapped, now);
        }
        assert!(f.exhausted(IpAddr::from([192, 0, 2, 7]), now), "an IPv4-mapped address is its IPv4 one");
    }

    #[test]
    fn a_paced_bind_queues_what_its_pace_sends_within_the_wait_bound() {
        // Goal: at 10 messages a second a bind holds its submits in flight and 20 more (2 s of
        // its pace), not four windows (320 with a window of 64: 32 s for the last one).
        assert_eq!(paced_capacity(10.0, 3, 320), 23);
        assert_eq!(paced_capacity(0.2, 0, 320), 1, "a very slow pace still takes one");
        assert_eq!(paced_capacity(10_000.0, 64, 320), 320, "never beyond the bind's capacity");
        assert_eq!(paced_capacity(f64::INFINITY, 0, 320), 320, "unpaced: the whole capacity");
    }

    #[test]
    fn an_address_that_keeps_failing_password_checks_is_refused_for_the_rest_of_its_window() {
        // Goal: a password-guessing peer gets BIND_FAILURES_PER_PEER slow checks a window, not
        // one per bind; other addresses are not affected, and the next window starts afresh.
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let t0 = Instant::now();
        let mut f = FailedBinds::default();
        for _ in 0..limits::BIND_FAILURES_PER_PEER {
            assert!(!f.exhausted(a, t0));
            f.begin(a, t0);
        }
        assert!(f.exhausted(a, t0));
        assert!(!f.exhausted(b, t0), "another address");
        let later = t0 + FailedBinds::WINDOW;
        assert!(!f.exhausted(a, later), "a new window");
        f.failed(a, later);
        assert!(!f.exhausted(a, later), "counted from one again");
    }

    #[test]
    fn checks_in_progress_count_against_the_budget_until_they_pass() {
        // Goal: binds from one address checked in parallel (each with another wrong password)
        // cannot run more slow checks than the budget; a check that passes gives its place back.
        let a: IpAddr = [10, 0, 0, 1].into();
        let t0 = Instant::now();
        let mut f = FailedBinds::default();
        for _ in 0..limits::BIND_FAILURES_PER_PEER {
            assert!(!f.exhausted(a, t0));
            f.begin(a, t0);
        }
        assert!(f.exhausted(a, t0), "none has finished, and the budget is taken");
        f.passed(a);
        assert!(!f.exhausted(a, t0), "one passed: room for one more");
    }

    #[test]
    fn a_connection_not_bound_yet_is_read_no_more_than_an_unbound_pdu_at_a_time() {
        // Goal: a peer that sends a bind and about 250 KiB behind it in one write does not make
        // its session hold a whole scratch read while the bind is checked: a read of a
        // connection not bound yet takes at most UNBOUND_READ_BYTES, the rest stays in the
        // socket. A bound session still reads the whole scratch buffer's worth.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let addr = listener.local_addr().expect("address");
        let sent = 250 * 1024;
        let peer = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accepted");
            // Ends when the reader closes, or after the timeout, whatever the buffers held.
            let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
            let _ = std::io::Write::write_all(&mut s, &vec![0u8; sent]);
        });
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(crate::limits::IO_MEMORY_BYTES)
            .spawn(move || async move {
                let mut stream = TcpStream::connect(addr).await.expect("connected");
                // Far more than one unbound read waits in this socket before the first read.
                let want = 4 * limits::UNBOUND_READ_BYTES;
                let mut available = 0;
                for _ in 0..500 {
                    let mut n: libc::c_int = 0;
                    // SAFETY: FIONREAD writes one c_int to a pointer to one.
                    if unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONREAD, &mut n) } == 0 {
                        available = n as usize;
                    }
                    if available >= want {
                        break;
                    }
                    Timer::new(Duration::from_millis(10)).await;
                }
                assert!(available >= want, "only {available} octets arrived");
                let (balancer, _rx) = Balancer::new(1, Arc::new(crate::metrics::Metrics::default()));
                let io = CoreIo::new(Instant::now(), balancer);
                let mailbox: Mailbox<SessionMsg> = Mailbox::new(1);
                let mut timer = Timer::new(Duration::from_secs(10));
                let mut rbuf = BytesMut::new();
                let wake =
                    wait(&mut stream, &mut rbuf, limits::UNBOUND_READ_BYTES, &io, &mailbox, &mut timer).await;
                let unbound = (matches!(wake, Wake::Read), rbuf.len());
                rbuf.clear();
                let wake = wait(&mut stream, &mut rbuf, usize::MAX, &io, &mailbox, &mut timer).await;
                (unbound, (matches!(wake, Wake::Read), rbuf.len()))
            })
            .expect("executor");
        let ((read, unbound), (read_bound, bound)) = ex.join().expect("joined");
        peer.join().expect("the peer ended");
        assert!(read && read_bound);
        assert_eq!(unbound, limits::UNBOUND_READ_BYTES, "one read of a connection not bound yet");
        assert!(bound > limits::UNBOUND_READ_BYTES, "a bound session reads more at once: {bound}");
    }

    #[test]
    fn the_failed_bind_table_stays_within_its_bound() {
        let t0 = Instant::now();
        let mut f = FailedBinds::default();
        for i in 0..(limits::BIND_FAILURE_PEERS_MAX as u32 + 10) {
            f.failed(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert!(f.peers.len() <= limits::BIND_FAILURE_PEERS_MAX);
    }

    #[test]
    fn a_session_keeps_neither_a_large_read_nor_a_large_write_between_wake_ups() {
        // Goal: a peer that sends one large read (a burst, or a flood before it binds) does not
        // leave its session holding that read's allocation, through the partial frame at its
        // end, nor the write buffer its answers took.
        let mut rbuf = BytesMut::new();
        rbuf.extend_from_slice(&vec![7u8; 200_000]);
        let decoded = rbuf.split_to(199_990).freeze();
        let big = decoded.as_ptr() as usize..decoded.as_ptr() as usize + 200_000;
        drop(decoded);
        trim_read_buffer(&mut rbuf);
        assert_eq!(&rbuf[..], &[7u8; 10][..], "the partial frame is kept");
        assert!(!big.contains(&(rbuf.as_ptr() as usize)), "in an allocation of its own");
        rbuf.clear();
        trim_read_buffer(&mut rbuf);
        assert_eq!(rbuf.capacity(), 0, "nothing held when nothing is left");
        // A long PDU still arriving is not copied at every read.
        rbuf.extend_from_slice(&vec![7u8; 60_000]);
        let at = rbuf.as_ptr();
        trim_read_buffer(&mut rbuf);
        assert_eq!((rbuf.as_ptr(), rbuf.len()), (at, 60_000), "left where it is");
        let mut wbuf = BytesMut::with_capacity(1 << 20);
        trim_write_buffer(&mut wbuf);
        assert!(wbuf.capacity() <= limits::SESSION_WRITE_BUFFER_KEEP_BYTES);
        let mut small = BytesMut::with_capacity(4096);
        trim_write_buffer(&mut small);
        assert_eq!(small.capacity(), 4096, "a small one is kept for the next write");
    }

    #[test]
    fn a_udh_in_message_payload_marks_a_part_as_one_in_short_message_does() {
        // Goal: a long message whose parts carry their UDH in message_payload (data_sm always
        // does) is grouped for receipt_parts = "last" like one with the UDH in short_message.
        let udh_part = b"\x05\x00\x03\x2a\x03\x02part two".to_vec();
        let in_sm = smppgw_codec::SubmitSm {
            esm_class: 0x40,
            short_message: Bytes::from(udh_part.clone()),
            ..Default::default()
        };
        let in_payload = smppgw_codec::SubmitSm {
            esm_class: 0x40,
            tlvs: smppgw_codec::Tlvs::default().with(smppgw_codec::tag::MESSAGE_PAYLOAD, &udh_part),
            ..Default::default()
        };
        assert_eq!(part_info(&in_sm), Some((0x2a, 3, 2)));
        assert_eq!(part_info(&in_payload), Some((0x2a, 3, 2)));
        let no_udh = smppgw_codec::SubmitSm { esm_class: 0x40, ..Default::default() };
        assert_eq!(part_info(&no_udh), None);
    }

    #[test]
    fn an_operation_waits_for_every_failover_its_vendors_timeouts_allow_before_it_is_given_up() {
        // Goal: a cancel/replace or submit_multi is answered as lost only when its answer
        // really was: with vendors allowed 300 s to answer, 120 s would give up on answers still
        // to come (a cancel answered failed that then succeeds).
        use crate::config::{Config, VendorConfig};
        let mut cfg = Config::default();
        cfg.vendors.push(VendorConfig::new("v", "127.0.0.1", 2776, "u", "p"));
        cfg.vendors[0].response_timeout_ms = 10_000;
        let snap = crate::snapshot::Snapshot::build(cfg.clone(), 1);
        assert_eq!(pending_timeout(&snap), MULTI_PENDING_TIMEOUT, "the usual timeouts fit in 120 s");
        cfg.vendors[0].response_timeout_ms = 300_000;
        let snap = crate::snapshot::Snapshot::build(cfg, 1);
        let wait = pending_timeout(&snap);
        assert!(wait >= Duration::from_secs(300 * crate::core::FAILOVER_MAX as u64), "{wait:?}");
    }

    #[test]
    fn a_write_to_a_vendor_that_stops_reading_ends_when_the_bind_is_told_to_abort() {
        // Goal: a stopping node tells a bind that is still busy to close (VendorMsg::Abort); a
        // bind blocked writing to a vendor that reads nothing must see it and close (answering
        // its submits), not stay in the write until the stop cancels it with its submits
        // unanswered. Mail that arrives meanwhile is kept.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let addr = listener.local_addr().expect("address");
        // Accepted and never read.
        let vendor = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(crate::limits::IO_MEMORY_BYTES)
            .spawn(move || async move {
                let mut stream = TcpStream::connect(addr).await.expect("connected");
                // Without the abort the write fails only after this.
                stream.set_write_timeout(Some(Duration::from_secs(3))).expect("timeout set");
                let mailbox: Rc<Mailbox<VendorMsg>> = Rc::new(Mailbox::new(16));
                let mb = mailbox.clone();
                glommio::spawn_local(async move {
                    glommio::timer::Timer::new(Duration::from_millis(100)).await;
                    let _ = mb.push(VendorMsg::Shutdown);
                    glommio::timer::Timer::new(Duration::from_millis(100)).await;
                    let _ = mb.push(VendorMsg::Abort);
                })
                .detach();
                // Far more than the socket buffers hold.
                let big = vec![0u8; 64 << 20];
                let mut held = Vec::new();
                let r = write_unless_aborted(&mut stream, &big, &mailbox, &mut held).await;
                (r, held.len())
            })
            .expect("executor");
        let (r, held) = ex.join().expect("joined");
        drop(vendor.join());
        assert_eq!(r, Written::Aborted);
        // Ended by the abort (Aborted), not by the write timeout (Failed).
        assert_eq!(held, 2, "the mail taken meanwhile is kept");
    }

    #[test]
    fn a_submit_multi_given_up_lists_the_destinations_still_unanswered_as_failed() {
        // Goal: a submit_multi answered after its wait ran out reports what is known: the
        // destinations whose answers never came are in unsuccess_sme (ESME_RSUBMITFAIL), not
        // silently taken as accepted.
        let addr = |a: &str| smppgw_codec::Address::new(1, 1, a.to_owned());
        let mut pm = PendingMulti {
            since: Instant::now(),
            remaining: 1,
            shown_id: 7,
            any_ok: true,
            unsuccess: vec![smppgw_codec::UnsuccessSme {
                addr: addr("1"),
                error_status: CommandStatus::ESME_RINVDSTADR,
            }],
            dests: vec![addr("1"), addr("2"), addr("3")],
            waiting: vec![2],
            nonce: 1,
            confirms: Vec::new(),
        };
        pm.give_up_waiting();
        let listed: Vec<(Bytes, CommandStatus)> =
            pm.unsuccess.iter().map(|u| (u.addr.addr.clone(), u.error_status)).collect();
        assert_eq!(
            listed,
            vec![
                (Bytes::from_static(b"1"), CommandStatus::ESME_RINVDSTADR),
                (Bytes::from_static(b"3"), CommandStatus::ESME_RSUBMITFAIL)
            ]
        );
        assert!(pm.waiting.is_empty());
    }

    fn key(r: u16, total: u8) -> PartKey {
        (0, Bytes::from_static(b"15550001"), Bytes::from_static(b"15557770000"), r, total)
    }

    #[test]
    fn a_group_holds_its_other_parts_until_the_last_takes_them() {
        // Goal: parts before the last gather under their group, at most total - 1 of them,
        // and the last part takes them all (once).
        let now = Instant::now();
        let mut g = PartGroups::new();
        let m = PartMeta::default();
        assert!(g.add(&key(1, 3), p(10), m, now));
        assert!(g.add(&key(1, 3), p(11), m, now));
        assert!(!g.add(&key(1, 3), p(12), m, now), "a third part before the last of three: not held");
        assert!(g.add(&key(2, 2), p(20), m, now), "another reference, another group");
        assert!(g.add(&key(1, 4), p(30), m, now), "the same reference in a message of another length");
        assert_eq!(ids(g.take(&key(1, 3), now)), vec![10, 11]);
        assert_eq!(ids(g.take(&key(1, 3), now)), Vec::<u64>::new());
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn a_part_that_comes_after_its_last_part_asks_the_vendor_for_its_own_receipt() {
        // Goal: a part refused for now and sent again after the last part (or sent after it
        // on another session) finds no last part to come: it is not held in a group (whose
        // parts would get stat UNKNOWN ten minutes later), so it asks the vendor itself; once
        // the parts the last one missed have come, the same reference groups again.
        let now = Instant::now();
        let mut g = PartGroups::new();
        let m = PartMeta::default();
        assert!(g.add(&key(5, 3), p(10), m, now), "part 1");
        // Part 2 was refused for now; part 3 (the last) comes and takes part 1.
        assert_eq!(ids(g.take(&key(5, 3), now)), vec![10]);
        assert!(!g.add(&key(5, 3), p(11), m, now), "part 2 again, after the last: its own receipt");
        assert!(g.add(&key(5, 3), p(12), m, now), "the next message with that reference groups again");
        // The last part came first: both earlier parts ask for their own.
        assert!(g.take(&key(6, 3), now).is_empty());
        assert!(!g.add(&key(6, 3), p(20), m, now));
        assert!(!g.add(&key(6, 3), p(21), m, now));
        // Remembered for the TTL only.
        assert!(g.take(&key(7, 2), now).is_empty());
        assert!(g.add(&key(7, 2), p(30), m, now + PART_GROUP_TTL), "forgotten after the TTL");
        // A last part refused for now gives its parts back, and the retry takes them again.
        assert!(g.add(&key(8, 2), p(40), m, now));
        let taken = g.take(&key(8, 2), now);
        assert!(g.put_back(&key(8, 2), taken, m, now).is_empty());
        assert_eq!(ids(g.take(&key(8, 2), now)), vec![40]);
    }

    #[test]
    fn at_a_stop_every_open_group_is_handed_back() {
        let now = Instant::now();
        let mut g = PartGroups::new();
        let m = PartMeta::default();
        assert!(g.add(&key(1, 3), p(10), m, now));
        assert!(g.add(&key(2, 2), p(20), m, now));
        let mut all: Vec<Vec<u64>> = g.take_all().into_iter().map(|e| ids(e.ids)).collect();
        all.sort();
        assert_eq!(all, vec![vec![10], vec![20]]);
        assert!(g.is_empty());
        assert!(g.take_expired(now + PART_GROUP_TTL).is_empty(), "nothing handed back twice");
        assert!(g.add(&key(1, 3), p(11), m, now), "and the table works on");
    }

    #[test]
    fn groups_expire_in_order_and_the_table_is_bounded_without_scanning() {
        // Goal: groups older than the TTL are forgotten from the front; a full table refuses new
        // groups (their parts ask the vendor) until the old ones expire; groups taken since
        // leave no entries that expire a later group of the same key early.
        let t0 = Instant::now();
        let m = PartMeta::default();
        let mut g = PartGroups::new();
        assert!(g.add(&key(1, 2), p(1), m, t0));
        assert_eq!(ids(g.take(&key(1, 2), t0)), vec![1]);
        let later = t0 + PART_GROUP_TTL / 2;
        assert!(g.add(&key(1, 2), p(2), m, later), "the same key begins again");
        // The first entry's time passes: the group that began later is kept.
        assert!(g.add(&key(9, 2), p(9), m, t0 + PART_GROUP_TTL));
        assert_eq!(ids(g.take(&key(1, 2), t0 + PART_GROUP_TTL)), vec![2]);

        let mut g = PartGroups::new();
        for r in 0..PART_GROUPS_MAX {
            assert!(g.add(&nth_key(r), p(r as u64), m, t0));
        }
        assert!(!g.add(&key(7, 2), p(7), m, t0 + Duration::from_secs(1)), "full: refused");
        assert!(g.add(&key(7, 2), p(7), m, t0 + PART_GROUP_TTL), "room again once the old ones expire");
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn expired_groups_are_handed_back_once_for_derived_receipts() {
        // Goal: a group whose last part never came is handed back (once) with the ids of the
        // parts that did, so that they get receipts; a group taken by its last part is not.
        let t0 = Instant::now();
        let mut g = PartGroups::new();
        let meta = PartMeta { source: (5, 0), dest: (1, 1), submitted_unix_ms: 42 };
        assert!(g.add(&key(1, 3), p(10), meta, t0));
        assert!(g.add(&key(1, 3), p(11), meta, t0));
        assert!(g.add(&key(2, 2), p(20), meta, t0));
        assert_eq!(ids(g.take(&key(2, 2), t0)), vec![20]);
        assert!(g.take_expired(t0 + PART_GROUP_TTL / 2).is_empty(), "not yet");
        let expired = g.take_expired(t0 + PART_GROUP_TTL);
        assert_eq!(expired, vec![ExpiredGroup { key: key(1, 3), meta, ids: vec![p(10), p(11)] }]);
        assert!(g.take_expired(t0 + PART_GROUP_TTL * 2).is_empty(), "handed back once");
        assert!(g.is_empty());
    }

    /// A part asking for final receipts.
    fn p(shown_id: u64) -> Sibling {
        Sibling { shown_id, wants: Wanted::FINAL }
    }

    /// The ids of `parts`.
    fn ids(parts: Vec<Sibling>) -> Vec<u64> {
        parts.into_iter().map(|s| s.shown_id).collect()
    }

    /// A distinct key per `n` (the reference holds 16 bits, the customer the rest).
    fn nth_key(n: usize) -> PartKey {
        // Spread over customers, each within its share of the table.
        ((n % 16) as u32, Bytes::new(), Bytes::new(), (n / 16) as u16, 2)
    }

    #[test]
    fn one_customer_cannot_take_the_whole_group_table() {
        // Goal: a customer sending first parts without last parts fills its own share of the
        // core's groups, not everyone's: another customer's long messages still get one receipt
        // request, for the last part.
        let t0 = Instant::now();
        let m = PartMeta::default();
        let mut g = PartGroups::new();
        let of = |c: u32, r: usize| (c, Bytes::from(format!("{}", r / 65536)), Bytes::new(), r as u16, 2);
        for r in 0..PART_GROUPS_PER_CUSTOMER_MAX {
            assert!(g.add(&of(1, r), p(r as u64), m, t0));
        }
        assert!(!g.add(&of(1, usize::MAX / 2), p(1), m, t0), "customer 1's share is full");
        assert!(g.add(&of(2, 0), p(2), m, t0), "customer 2 still has room");
        assert_eq!(ids(g.take(&of(1, 0), t0)), vec![0]);
        assert!(g.add(&of(1, usize::MAX / 2), p(1), m, t0), "room again once one ends");
    }

    #[test]
    fn one_customer_sending_last_parts_alone_cannot_take_the_closed_table() {
        // Goal: last parts whose earlier parts never come are remembered (so that those parts,
        // if they come, ask the vendor for their own receipts) within the customer's share:
        // another customer's earlier part that comes after its last part still goes to the
        // vendor with its own receipt request, rather than wait for a group that will never end.
        let t0 = Instant::now();
        let m = PartMeta::default();
        let mut g = PartGroups::new();
        let of = |c: u32, r: usize| (c, Bytes::from(format!("{}", r / 65536)), Bytes::new(), r as u16, 2);
        for r in 0..PART_GROUPS_MAX {
            assert!(g.take(&of(1, r), t0).is_empty());
        }
        assert!(g.take(&of(2, 0), t0).is_empty(), "customer 2's last part first");
        assert!(!g.add(&of(2, 0), p(5), m, t0), "its earlier part is not held: it asks for its own receipt");
        assert!(g.closed_per_customer.get(&1).is_some_and(|&n| n <= PART_GROUPS_PER_CUSTOMER_MAX));
        assert!(!g.closed_per_customer.contains_key(&2), "forgotten once its part came");
    }
}
