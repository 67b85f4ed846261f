//! Starting and stopping the gateway: one pinned glommio executor per core, the listeners (one
//! SO_REUSEPORT socket per core on the same port, connections then evened out by
//! [`crate::balance`]), the vendor bind slots spread over the cores, and the bounded channels
//! between every pair of cores.

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
/// The control plane's locks: reloads are serialised, and the published snapshot pointer is read
/// or swapped under one. A core takes the pointer's only when a new version was announced, once
/// per reload, for the time of a clone (never while a snapshot is being built), which is why
/// these locks are allowed outside the data plane's no-lock rule.
#[allow(clippy::disallowed_types)]
type ControlLock<T> = std::sync::Mutex<T>;
use std::time::{Duration, Instant};

use glommio::channels::shared_channel::{self, SharedReceiver, SharedSender};
use glommio::timer::Timer;
use glommio::{LocalExecutorBuilder, Placement};
use socket2::{Domain, Protocol, Socket, Type};
use tracing::{info, warn};

use crate::balance::{Balancer, Handoff};
use crate::carryover::{Carried, LeftAtExit};
use crate::config::Config;
use crate::core::{CORE_MSG_BATCH, Core, CoreMsg, Outbox, SessionMsg, VendorMsg};
use crate::io::{CoreIo, SlotBind, accept_loop, adopt, vendor_slot};
use crate::limits;
use crate::mailbox::Mailbox;
use crate::metrics::Metrics;
use crate::msgid::IdWatermark;
use crate::remote::{RemoteEnd, RemoteLinks};
use crate::snapshot::Snapshot;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The SMPP listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// An executor could not be created (io_uring missing, locked memory too small, ...).
    #[error("cannot start executor {core}: {message}")]
    Executor {
        /// Core index.
        core: usize,
        /// Why.
        message: String,
    },
}

/// A running gateway.
pub struct Gateway {
    /// The SMPP address customers connect to (the real port when the config said 0).
    pub local_addr: SocketAddr,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The config snapshot in force.
    pub snapshot: Arc<Snapshot>,
    /// The highest id counters issued, for the caller to persist (see [`IdWatermark`]).
    pub ids: Arc<IdWatermark>,
    shutdown: Arc<AtomicBool>,
    threads: Vec<glommio::ExecutorJoinHandle<()>>,
    control: Arc<GatewayControl>,
    left: crossbeam_channel::Receiver<LeftAtExit>,
}

/// A message lookup that could not ask every place the message could be, or not hear from each
/// in time: its "not found" is not known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupIncomplete;

/// The control plane's handle on the running cores: config reloads. Cloneable and `Send`, used
/// from the control thread only (its lock is never touched by a core).
pub struct GatewayControl {
    current: Arc<Published>,
    senders: Vec<crossbeam_channel::Sender<Control>>,
    applied: Vec<Arc<AtomicU64>>,
    shutdown: Arc<AtomicBool>,
    handing: Arc<AtomicU32>,
    ids: Arc<IdWatermark>,
}

/// Keeps the running value of a setting only a restart can change, noting `name` if the new
/// configuration changed it.
fn keep_running<T: PartialEq>(new: &mut T, running: T, name: &'static str, changed: &mut Vec<&'static str>) {
    if *new != running {
        changed.push(name);
        *new = running;
    }
}

/// The configuration the control plane published last. Every core switches to it on its next
/// control poll, whatever it ran before (it may skip versions published in between), so a
/// reload reaches every core and none is ever left on an older one.
#[derive(Debug)]
struct Published {
    /// Held only to read or swap the pointer: a core that polls while a reload builds its
    /// snapshot must not wait for the build.
    snapshot: ControlLock<Arc<Snapshot>>,
    version: AtomicU64,
    /// Serialises reloads (each builds on the one before); only the control plane takes it.
    reloads: ControlLock<()>,
    /// The restart-only settings the last reload changed (kept at their running values). A lock
    /// of its own, never held across a build: `/ready` reads it on the control thread.
    pending_restart: ControlLock<Vec<&'static str>>,
}

impl Published {
    fn get(&self) -> Arc<Snapshot> {
        #[allow(clippy::disallowed_methods)]
        self.snapshot.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// A hand-off to the cores announced by [`GatewayControl::begin_handoff`]; it ends when dropped.
#[derive(Debug)]
pub struct HandoffGuard(Arc<AtomicU32>);

impl Drop for HandoffGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The new config does not validate; the running one stays.
    #[error("{0}")]
    Invalid(#[from] crate::config::ConfigErrors),
}

impl GatewayControl {
    /// Validates `config` and publishes it to every core as the successor of the running
    /// snapshot. Returns the new version; [`GatewayControl::applied_everywhere`] tells when all
    /// cores run it (within a control poll, [`CONTROL_POLL_MS`]).
    pub fn reload(&self, mut config: Config) -> Result<u64, ReloadError> {
        config.validate()?;
        #[allow(clippy::disallowed_methods)]
        let _one_at_a_time = self.current.reloads.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.current.get();
        // Per-node settings that only a restart can change keep their running values; a change
        // to one is said, not silently dropped.
        let (new, old) = (&mut config.server, &current.config.server);
        let mut later = Vec::new();
        keep_running(&mut new.listen, old.listen, "listen", &mut later);
        keep_running(&mut new.http_listen, old.http_listen, "http_listen", &mut later);
        keep_running(&mut new.cores, old.cores, "cores", &mut later);
        keep_running(&mut new.node_id, old.node_id, "node_id", &mut later);
        keep_running(&mut new.receipt_store_max, old.receipt_store_max, "receipt_store_max", &mut later);
        keep_running(
            &mut new.receipt_store_prealloc,
            old.receipt_store_prealloc,
            "receipt_store_prealloc",
            &mut later,
        );
        if !later.is_empty() {
            warn!(settings = ?later, "changed settings take effect at the next restart; the running values stay");
        }
        let next = Arc::new(Snapshot::build_next(Some(&current), config, current.cores));
        let v = next.version;
        #[allow(clippy::disallowed_methods)]
        let mut published = self.current.snapshot.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *published = next;
        self.current.version.store(v, Ordering::Release);
        drop(published);
        #[allow(clippy::disallowed_methods)]
        let mut pending =
            self.current.pending_restart.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *pending = later;
        Ok(v)
    }

    /// The settings only a restart changes whose new values the last reload brought (their
    /// running values stay until then): `listen`, `cores`, `node_id`, ...
    pub fn pending_restart(&self) -> Vec<&'static str> {
        #[allow(clippy::disallowed_methods)]
        self.current.pending_restart.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The message a customer knows by `shown_id`, from whichever core's shard holds it. Blocks
    /// up to `timeout` (call it from a blocking task of the control plane).
    /// Incomplete when some core could not be asked (its control queue full) or did not answer
    /// in time, and none that did holds it: not knowing is not "no such message".
    pub fn lookup(
        &self,
        shown_id: u64,
        timeout: std::time::Duration,
    ) -> Result<Option<crate::store::Record>, LookupIncomplete> {
        let (tx, rx) = crossbeam_channel::bounded(self.senders.len());
        let mut asked = 0;
        for s in &self.senders {
            if s.try_send(Control::Lookup { shown_id, reply: tx.clone() }).is_ok() {
                asked += 1;
            }
        }
        let deadline = std::time::Instant::now() + timeout;
        for _ in 0..asked {
            match rx.recv_deadline(deadline) {
                Ok(Some(r)) => return Ok(Some(r)),
                Ok(None) => {}
                Err(_) => return Err(LookupIncomplete),
            }
        }
        if asked < self.senders.len() { Err(LookupIncomplete) } else { Ok(None) }
    }

    /// Hands `msg` to core `core`; gives it back when that core's control queue is full.
    pub fn send_to_core(&self, core: usize, msg: Control) -> Result<(), Control> {
        match self.senders.get(core) {
            Some(tx) => tx.try_send(msg).map_err(crossbeam_channel::TrySendError::into_inner),
            None => Err(msg),
        }
    }

    /// Whether shutdown has begun.
    pub fn shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// Announces a hand-off to the cores of deliveries taken from the shared queue, or `None`
    /// once shutdown has begun (the shared queue then keeps them for the node the customer binds
    /// to next). Take it before taking anything from the queue and hold it until the cores have
    /// it or it is back in the queue: a stopping core reads its control queue for the last time
    /// only after every announced hand-off ended, so none lands where nobody reads.
    pub fn begin_handoff(&self) -> Option<HandoffGuard> {
        // Announce, then look at the flag; a stopping core sets the flag, then waits for the
        // count (both sequentially consistent), so one of the two sees the other.
        self.handing.fetch_add(1, Ordering::SeqCst);
        let guard = HandoffGuard(self.handing.clone());
        if self.shutting_down() {
            return None;
        }
        Some(guard)
    }

    /// Number of cores.
    pub fn cores(&self) -> usize {
        self.senders.len()
    }

    /// Whether every core runs `version` (or later).
    pub fn applied_everywhere(&self, version: u64) -> bool {
        self.applied.iter().all(|a| a.load(Ordering::Acquire) >= version)
    }

    /// The snapshot most recently handed to the cores.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.get()
    }

    /// The highest id counters the cores issued (for the control plane to persist).
    pub fn ids(&self) -> Arc<IdWatermark> {
        self.ids.clone()
    }
}

impl Gateway {
    /// Begins a graceful shutdown: stop accepting, finish in-flight submits, unbind everyone.
    pub fn shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
    }

    /// A handle that can trigger shutdown from another thread (a signal handler loop).
    pub fn shutdown_flag(&self) -> Arc<AtomicBool> {
        self.shutdown.clone()
    }

    /// The handle for config reloads.
    pub fn control(&self) -> Arc<GatewayControl> {
        self.control.clone()
    }

    /// Waits until every core has stopped.
    pub fn join(self) {
        self.join_left();
    }

    /// Waits until every core has stopped; returns what each left at the end of its stop (see
    /// [`Core::take_left_at_exit`]: with [`StartOptions::keep_state`], what to keep for the next
    /// start), one per core that finished its stop.
    pub fn join_left(self) -> Vec<LeftAtExit> {
        for t in self.threads {
            if let Err(e) = t.join() {
                warn!("executor ended with an error: {e}");
            }
        }
        self.left.try_iter().collect()
    }
}

/// Whether `addr` is free of listeners: the cores' sockets share their port (SO_REUSEPORT), so
/// another process of the same user listening there with it too (a second smppgw started by
/// mistake) would share it with them, and the kernel would split the customers between two
/// nodes with one node id. A socket without SO_REUSEPORT cannot bind beside a listener.
fn port_is_free(addr: SocketAddr) -> std::io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Connections of an earlier run still in TIME_WAIT do not count.
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into()).map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => std::io::Error::new(
            e.kind(),
            "already in use: another process listens there (another smppgw with the same listen address?)",
        ),
        _ => e,
    })
}

fn listener_socket(addr: SocketAddr) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_port(true)?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(limits::LISTEN_BACKLOG)?;
    Ok(s)
}

/// What the names of the executors' threads start with (glommio names them `{name}-{id}`):
/// the binary's panic hook tells them by it.
pub const EXECUTOR_THREAD_PREFIX: &str = "smppgw-core-";

thread_local! {
    /// Set on an executor's thread once its executor runs: a panic before that is glommio
    /// failing to set the executor up (io_uring refused, locked memory), which the start reports
    /// as an error naming the core, not a bug to abort on.
    static EXECUTOR_RUNNING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread runs one of the gateway's executors (set up and started), for the
/// binary's panic hook: a panic there takes a core down, one while the executor is being set up
/// only fails the start.
pub fn executor_running_here() -> bool {
    EXECUTOR_RUNNING.with(std::cell::Cell::get)
}

/// How long the executors have to come up.
const EXECUTOR_START_TIMEOUT: Duration = Duration::from_secs(10);

/// The CPUs this process may run on (its affinity mask), in order.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into the zeroed set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } == 0;
    let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if !ok {
        return (0..n).collect();
    }
    // SAFETY: CPU_ISSET reads the set initialised above.
    let cpus: Vec<usize> =
        (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect();
    if cpus.is_empty() { (0..n).collect() } else { cpus }
}

/// Number of cores to run on: the configured number, or all available, at most [`limits::CORES_MAX`].
/// A configured number above the CPUs this process may use is clamped to them (with a warning):
/// two executors on one CPU would only take turns, each with its own share of the sessions.
pub fn core_count(config: &Config) -> usize {
    let affinity = allowed_cpus().len();
    let parallelism = std::thread::available_parallelism().map_or(affinity, |n| n.get());
    let avail = usable_cpus(affinity, parallelism);
    if avail < affinity {
        tracing::warn!(
            affinity,
            quota = parallelism,
            "the CPU quota (cgroup) is below the CPUs this process may run on: executors limited to the quota"
        );
    }
    if config.server.cores as usize > avail {
        let configured = config.server.cores;
        tracing::warn!(
            configured,
            cpus = avail,
            "server.cores is more than the CPUs this process may use: clamped"
        );
    }
    config.server.effective_cores(avail).clamp(1, limits::CORES_MAX)
}

/// The CPUs executors can use: those the affinity mask allows, fewer when a CPU quota (a
/// container's `--cpus`, a pod's CPU limit without the static CPU manager) gives less time than
/// that; std's `available_parallelism` reads the quota. A 64-CPU host under a 2-CPU quota would
/// otherwise run 64 pinned executors that the quota throttles together.
fn usable_cpus(affinity: usize, parallelism: usize) -> usize {
    affinity.min(parallelism).max(1)
}

/// Starts the gateway on `config`, with all state local to this node.
pub fn start(config: Config) -> Result<Gateway, StartError> {
    start_with(config, None, StartOptions::default())
}

/// Starts the gateway on `config` with state shared between nodes: the cores hand their
/// shared-state ops to the returned [`RemoteEnd`], which the control plane serves (Redis).
pub fn start_shared(config: Config) -> Result<(Gateway, RemoteEnd), StartError> {
    let (end, links) = crate::remote::link();
    start_with(config, Some(links), StartOptions::default()).map(|g| (g, end))
}

/// How to start a gateway beyond its configuration.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// State shared between nodes (see [`start_shared`]).
    pub shared: bool,
    /// The highest id counter an earlier run of this node issued, as persisted from
    /// [`Gateway::ids`]: ids start above it (plus a margin) even with the clock stepped back.
    pub ids_issued: Option<u64>,
    /// The cores give up what they alone hold of receipts to come at the end of their stop, to
    /// be kept for the next start (see [`crate::carryover`]); without it, that is only counted.
    pub keep_state: bool,
    /// What an earlier run kept ([`Gateway::join_left`]): each core takes its share before it
    /// accepts anyone or binds any vendor.
    pub restore: Option<Carried>,
    /// Tests only: this executor ends before it is up, as one whose io_uring or thread could not
    /// be set up does.
    #[doc(hidden)]
    pub fail_core: Option<usize>,
    /// Tests only: how long a receipt waits parked for its message, in seconds, instead of
    /// [`crate::store::EARLY_RECEIPT_TTL_SECS`].
    #[doc(hidden)]
    pub early_receipt_ttl_secs: Option<u64>,
}

/// Starts the gateway with `options`; the [`RemoteEnd`] is there when `options.shared`.
pub fn start_with_options(
    config: Config,
    options: StartOptions,
) -> Result<(Gateway, Option<RemoteEnd>), StartError> {
    let (end, links) = match options.shared {
        true => {
            let (end, links) = crate::remote::link();
            (Some(end), Some(links))
        }
        false => (None, None),
    };
    start_with(config, links, options).map(|g| (g, end))
}

fn start_with(
    config: Config,
    remote: Option<RemoteLinks>,
    options: StartOptions,
) -> Result<Gateway, StartError> {
    let StartOptions { ids_issued, fail_core, keep_state, restore, early_receipt_ttl_secs, .. } = options;
    let cores = core_count(&config);
    let mut restore: Vec<Carried> = match restore {
        Some(c) => c.split(cores),
        None => (0..cores).map(|_| Carried::default()).collect(),
    };
    let (left_tx, left) = crossbeam_channel::bounded::<LeftAtExit>(cores);
    let ids = Arc::new(IdWatermark::new(cores, ids_issued));
    let snapshot = Arc::new(Snapshot::build(config, cores));
    let metrics = Arc::new(Metrics::default());
    let shutdown = Arc::new(AtomicBool::new(false));
    let handing = Arc::new(AtomicU32::new(0));
    let published = Arc::new(Published {
        snapshot: ControlLock::new(snapshot.clone()),
        version: AtomicU64::new(snapshot.version),
        reloads: ControlLock::new(()),
        pending_restart: ControlLock::new(Vec::new()),
    });
    let epoch = Instant::now();

    // Bind every core's listener here, so that port 0 resolves once and all share it.
    let want = snapshot.config.server.listen;
    port_is_free(want).map_err(|source| StartError::Listen { addr: want, source })?;
    let first = listener_socket(want).map_err(|source| StartError::Listen { addr: want, source })?;
    let local_addr = first
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .ok_or(StartError::Listen { addr: want, source: std::io::Error::other("no local address") })?;
    let mut fds: Vec<RawFd> = vec![first.into_raw_fd()];
    for _ in 1..cores {
        let s =
            listener_socket(local_addr).map_err(|source| StartError::Listen { addr: local_addr, source })?;
        fds.push(s.into_raw_fd());
    }

    // channels[from][to]
    let mut senders: Vec<Vec<Option<SharedSender<CoreMsg>>>> =
        (0..cores).map(|_| (0..cores).map(|_| None).collect()).collect();
    let mut receivers: Vec<Vec<Option<SharedReceiver<CoreMsg>>>> =
        (0..cores).map(|_| (0..cores).map(|_| None).collect()).collect();
    for from in 0..cores {
        for to in 0..cores {
            if from != to {
                let (tx, rx) = shared_channel::new_bounded(limits::CROSS_CORE_CHANNEL_CAPACITY);
                senders[from][to] = Some(tx);
                receivers[to][from] = Some(rx);
            }
        }
    }

    // Deliveries each core still holds for bound customers when shutdown begins; 1 = not known
    // yet, so no core unbinds customers before every core has looked.
    let draining: Arc<Vec<AtomicU64>> = Arc::new((0..cores).map(|_| AtomicU64::new(1)).collect());
    let stages = Arc::new(StopStages::default());
    let (balancer, mut handoffs) = Balancer::new(cores, metrics.clone());
    handoffs.reverse();
    let allowed = allowed_cpus();
    let (ready_tx, ready_rx) = crossbeam_channel::bounded::<usize>(cores);
    let mut threads = Vec::new();
    let mut control_tx = Vec::new();
    let mut applied_per_core = Vec::new();
    for (core, fd) in fds.into_iter().enumerate() {
        let my_senders = std::mem::take(&mut senders[core]);
        let my_receivers = std::mem::take(&mut receivers[core]);
        let snap = snapshot.clone();
        let metrics = metrics.clone();
        let ids = ids.clone();
        let shutdown = shutdown.clone();
        let remote = remote.clone();
        let draining = draining.clone();
        let handing = handing.clone();
        let stages = stages.clone();
        let balancer = balancer.clone();
        let carried = std::mem::take(&mut restore[core]);
        let left_tx = left_tx.clone();
        let Some(handoff_rx) = handoffs.pop() else {
            return Err(StartError::Executor { core, message: "no handoff queue".into() });
        };
        let (ctl_tx, ctl_rx) = crossbeam_channel::bounded(CONTROL_CHANNEL_CAPACITY);
        control_tx.push(ctl_tx);
        let applied = Arc::new(AtomicU64::new(snapshot.version));
        applied_per_core.push(applied.clone());
        let published = published.clone();
        // Pin to the CPUs this process may use (a cgroup cpuset, systemd AllowedCPUs=, the
        // Kubernetes static CPU manager), not to CPU `core` of the machine.
        let placement =
            if cores <= allowed.len() { Placement::Fixed(allowed[core]) } else { Placement::Unbound };
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("{EXECUTOR_THREAD_PREFIX}{core}"))
            .io_memory(limits::IO_MEMORY_BYTES)
            .ring_depth(limits::RING_DEPTH)
            // Password hashes (slow on purpose) run on a thread the kernel may place on any
            // allowed CPU, not on the executor's own.
            .blocking_thread_pool_placement(glommio::PoolPlacement::Unbound(1))
            .spawn({
                let ready_tx = ready_tx.clone();
                move || async move {
                    if fail_core == Some(core) {
                        return;
                    }
                    EXECUTOR_RUNNING.with(|r| r.set(true));
                    let _ = ready_tx.send(core);
                    // Let go at once: the start must not wait out its timeout for a core that
                    // failed while the others, up and running, still held the channel open.
                    drop(ready_tx);
                    core_main(
                        core,
                        fd,
                        snap,
                        (metrics, ids),
                        shutdown,
                        my_senders,
                        my_receivers,
                        epoch,
                        ctl_rx,
                        (applied, published),
                        remote.map(|r| r.make()),
                        (draining, handing, stages),
                        (balancer, handoff_rx),
                        early_receipt_ttl_secs,
                        (carried, keep_state, left_tx),
                    )
                    .await;
                }
            })
            .map_err(|e| StartError::Executor { core, message: e.to_string() })?;
        threads.push(handle);
    }
    // Every executor must come up (io_uring and locked memory are checked there); a gateway with
    // a dead core would leave its share of the listening port unanswered.
    drop(ready_tx);
    let deadline = Instant::now() + EXECUTOR_START_TIMEOUT;
    let mut started = vec![false; cores];
    let mut up = 0;
    while up < cores {
        match ready_rx.recv_deadline(deadline) {
            Ok(c) => {
                if let Some(s) = started.get_mut(c) {
                    *s = true;
                }
                up += 1;
            }
            Err(_) => break,
        }
    }
    if up < cores {
        // The cores that did start stop at once: their stages of the stop count the missing
        // ones as arrived (else each stage would wait its whole deadline for them), and those
        // hold nothing to drain.
        let missing = cores - up;
        for stage in [&stages.customers_done, &stages.unbound, &stages.vendors_done] {
            stage.fetch_add(missing, Ordering::AcqRel);
        }
        for (c, up) in started.iter().enumerate() {
            if !up && let Some(d) = draining.get(c) {
                d.store(0, Ordering::Release);
            }
        }
        let failed = started.iter().position(|s| !s).unwrap_or(up);
        shutdown.store(true, Ordering::Release);
        let mut message = format!("{} of {cores} executors started", up);
        for t in threads {
            if let Err(e) = t.join() {
                message = format!(
                    "{message}; {e} (io_uring must be available and RLIMIT_MEMLOCK large enough: see deploy/TUNING.md)"
                );
            }
        }
        return Err(StartError::Executor { core: failed, message });
    }
    info!(%local_addr, cores, "smppgw listening");
    let control = Arc::new(GatewayControl {
        current: published,
        senders: control_tx,
        applied: applied_per_core,
        shutdown: shutdown.clone(),
        handing,
        ids: ids.clone(),
    });
    Ok(Gateway { local_addr, metrics, snapshot, ids, shutdown, threads, control, left })
}

/// How often each core looks for control messages (reloads): the bound on reload latency.
pub const CONTROL_POLL_MS: u64 = 10;
/// Control messages queued per core.
pub const CONTROL_CHANNEL_CAPACITY: usize = 256;

/// What the control plane sends a core.
#[derive(Debug)]
pub enum Control {
    /// Look up a message by the id its customer was given; every core answers on `reply`.
    Lookup {
        /// The customer-visible id.
        shown_id: u64,
        /// Where each core sends what its shard holds.
        reply: crossbeam_channel::Sender<Option<crate::store::Record>>,
    },
    /// A message found in the shared store, for the shard that must hold it.
    Record(Box<crate::store::Record>),
    /// Receipts and MO from the shared queue, for customers homed on the receiving core.
    Deliveries(Vec<crate::deliveries::Delivery>),
    /// The answer to a [`crate::remote::RemoteOp::DerivedCheck`], for the customer's home core.
    Derived {
        /// The derived receipt.
        delivery: std::sync::Arc<crate::deliveries::Delivery>,
        /// Whether the part it is for was stored (not refused): then it is delivered.
        stored: bool,
    },
    /// The shared store's answer to a query of a session on the receiving core.
    QueryAnswer {
        /// The session's request.
        reply: crate::core::ReplyTo,
        /// What the shared store holds.
        found: Option<Box<crate::core::Found>>,
    },
}

fn spawn_vendor_slots(
    core: &Rc<Core>,
    io: &Rc<CoreIo>,
    snap: &Snapshot,
    tasks: &mut Vec<(glommio::task::JoinHandle<()>, Rc<Mailbox<VendorMsg>>)>,
    mut retired: std::collections::HashMap<crate::core::SlotKey, crate::core::BindHandle>,
) {
    for v in snap.vendors.iter().flatten() {
        for s in v.slots.iter().filter(|s| s.core == core.idx) {
            if core.has_vendor_bind(s) {
                continue;
            }
            let mailbox = Rc::new(Mailbox::new(limits::VENDOR_BIND_QUEUE_MAX + limits::WINDOW_MAX as usize));
            let replaced = core.add_vendor_bind(s.clone(), mailbox.clone());
            if let Some((_, old)) = &replaced {
                let _ = old.push(VendorMsg::Retire);
            }
            let predecessor = replaced.or_else(|| retired.remove(&(s.vendor, s.slot)));
            // A `transmitter_receiver` slot is two binds: the receiver's mailbox only ever gets
            // the sender's word to stop.
            let receiver =
                (v.cfg.bind_type == crate::config::VendorBindType::TransmitterReceiver).then(|| {
                    let rx_mailbox = Rc::new(Mailbox::new(RECEIVER_MAILBOX));
                    let task = glommio::spawn_local(vendor_slot(
                        core.clone(),
                        io.clone(),
                        s.clone(),
                        rx_mailbox.clone(),
                        (SlotBind::Receiver, None),
                        predecessor.clone(),
                    ));
                    tasks.push((task.detach(), rx_mailbox.clone()));
                    rx_mailbox
                });
            let task = glommio::spawn_local(vendor_slot(
                core.clone(),
                io.clone(),
                s.clone(),
                mailbox.clone(),
                (SlotBind::Sender, receiver),
                predecessor,
            ));
            tasks.push((task.detach(), mailbox));
        }
    }
}

/// A receiver bind's mailbox: its sender's stop, and room to spare.
const RECEIVER_MAILBOX: usize = 4;

/// Shutdown's steps that every core finishes before any goes on to the next.
#[derive(Debug, Default)]
struct StopStages {
    /// Cores whose customer sessions have nothing outstanding (or are out of grace).
    customers_done: AtomicUsize,
    /// Cores whose customer sessions are all closed (or out of grace).
    unbound: AtomicUsize,
    /// Cores whose vendor binds have stopped.
    vendors_done: AtomicUsize,
}

impl StopStages {
    /// Counts this core at `stage` and waits, still serving what the control plane hands it,
    /// until every core is there or `until`.
    async fn wait(
        &self,
        stage: &AtomicUsize,
        cores: usize,
        until: Instant,
        core: &Core,
        control: &crossbeam_channel::Receiver<Control>,
    ) {
        stage.fetch_add(1, Ordering::AcqRel);
        while stage.load(Ordering::Acquire) < cores && Instant::now() < until {
            Timer::new(Duration::from_millis(5)).await;
            serve_control(core, control);
        }
    }
}

/// The longest the last stage of a stop waits for customers to answer our unbind (nothing of
/// theirs is outstanding by then): a customer that does not answer is closed.
const UNBIND_WAIT_MAX: Duration = Duration::from_secs(2);
/// Polls in a row ([`CONTROL_POLL_MS`] apart) that must find no receipt or MO left to deliver on
/// any core before the drain at a stop ends.
const DRAIN_EMPTY_ROUNDS: u32 = 3;
/// How long a vendor bind told to stop at once ([`VendorMsg::Abort`]) has to close.
const VENDOR_ABORT_WAIT: Duration = Duration::from_millis(500);

/// Whether task `t` ends by `deadline` (it is left running otherwise). Meanwhile the control
/// plane is served: the records it found for receipts a vendor bind read while stopping, and
/// the hand-overs it gives back, would otherwise wait for this core in vain.
async fn ends_by<T>(
    t: &mut glommio::task::JoinHandle<T>,
    deadline: Instant,
    core: &Core,
    control: &crossbeam_channel::Receiver<Control>,
) -> bool {
    futures_lite::future::or(
        async {
            let _ = t.await;
            true
        },
        async {
            loop {
                let now = Instant::now();
                if now >= deadline {
                    return false;
                }
                Timer::new(
                    deadline.saturating_duration_since(now).min(Duration::from_millis(CONTROL_POLL_MS)),
                )
                .await;
                serve_control(core, control);
                core.flush_remote();
            }
        },
    )
    .await
}

/// How long a stopping core waits for hand-offs from the shared queue that began before shutdown
/// (a Redis round trip, and the control plane's patience with a full control queue).
const HANDOFF_PATIENCE: Duration = Duration::from_secs(2);

/// What the control plane hands this core: lookups and answers are served, receipts and MO join
/// the customers' queues (at shutdown, going back to the shared queue with them). A new
/// configuration comes another way (see [`Published`]), so a stopping core no longer applies one.
fn serve_control(core: &Core, control: &crossbeam_channel::Receiver<Control>) {
    while let Ok(ctl) = control.try_recv() {
        match ctl {
            Control::Lookup { shown_id, reply } => {
                let _ = reply.try_send(core.lookup(shown_id));
            }
            Control::Record(rec) => core.remote_record(*rec),
            Control::Deliveries(batch) => core.remote_deliveries(batch),
            Control::Derived { delivery, stored } => core.derived_checked(delivery, stored),
            Control::QueryAnswer { reply, found } => core.remote_query_answer(reply, found),
        }
    }
}

async fn core_main(
    idx: usize,
    fd: RawFd,
    snap: Arc<Snapshot>,
    (metrics, ids): (Arc<Metrics>, Arc<IdWatermark>),
    shutdown: Arc<AtomicBool>,
    senders: Vec<Option<SharedSender<CoreMsg>>>,
    receivers: Vec<Option<SharedReceiver<CoreMsg>>>,
    epoch: Instant,
    control: crossbeam_channel::Receiver<Control>,
    (applied, published): (Arc<AtomicU64>, Arc<Published>),
    remote: Option<crate::remote::RemoteLink>,
    (draining, handing, stages): (Arc<Vec<AtomicU64>>, Arc<AtomicU32>, Arc<StopStages>),
    (balancer, handoffs): (Arc<Balancer>, crossbeam_channel::Receiver<Handoff>),
    early_receipt_ttl_secs: Option<u64>,
    (carried, keep_state, left_tx): (Carried, bool, crossbeam_channel::Sender<LeftAtExit>),
) {
    let cores = snap.cores;
    // Outboxes hold what waits for channel space: jobs and answers, which windows bound, and
    // receipts and MO, which vendor binds stop reading for well before the bound
    // (`Core::backlogged`).
    let outboxes: Vec<Rc<Outbox>> =
        (0..cores).map(|_| Rc::new(Mailbox::new(crate::limits::OUTBOX_MAX))).collect();
    let core = Rc::new(Core::new(idx, snap.clone(), outboxes.clone(), metrics, remote));
    if let Some(secs) = early_receipt_ttl_secs {
        core.set_early_receipt_ttl(secs);
    }
    core.ids_above(ids.floor());
    // What an earlier run kept, before any vendor can send a receipt for it or any customer
    // bind to take its deliveries.
    if !carried.is_empty() {
        let (records, deliveries) = (carried.records.len(), carried.deliveries.len());
        let expired = core.restore(carried);
        info!(core = idx, records = records - expired, expired, deliveries, "receipt state restored");
    }
    let io = Rc::new(CoreIo::new(epoch, balancer));

    // The local inbox: work this core sends itself runs after the current handler, never inside it.
    {
        let core = core.clone();
        let inbox = outboxes[idx].clone();
        glommio::spawn_local(async move {
            let mut batch = Vec::new();
            loop {
                std::future::poll_fn(|cx| {
                    if inbox.poll_ready(cx.waker()) {
                        std::task::Poll::Ready(())
                    } else {
                        std::task::Poll::Pending
                    }
                })
                .await;
                if inbox.is_closed() && inbox.is_empty() {
                    break;
                }
                inbox.drain_into(&mut batch);
                core.on_core_msgs(&mut batch);
            }
        })
        .detach();
    }
    // Pumps: outbox -> channel, and channel -> this core.
    for (to, tx) in senders.into_iter().enumerate() {
        let Some(tx) = tx else { continue };
        let outbox = outboxes[to].clone();
        glommio::spawn_local(async move {
            let tx = tx.connect().await;
            let mut batch = Vec::new();
            loop {
                std::future::poll_fn(|cx| {
                    if outbox.poll_ready(cx.waker()) {
                        std::task::Poll::Ready(())
                    } else {
                        std::task::Poll::Pending
                    }
                })
                .await;
                if outbox.is_closed() && outbox.is_empty() {
                    break;
                }
                outbox.drain_into(&mut batch);
                for m in batch.drain(..) {
                    if tx.send(m).await.is_err() {
                        return;
                    }
                }
            }
        })
        .detach();
    }
    for rx in receivers.into_iter().flatten() {
        let core = core.clone();
        glommio::spawn_local(async move {
            let rx = rx.connect().await;
            let mut batch = Vec::with_capacity(CORE_MSG_BATCH);
            while let Some(m) = rx.recv().await {
                batch.push(m);
                // Take what else is already there, without waiting, to handle it as a batch.
                let mut open = true;
                let mut registered = false;
                while batch.len() < CORE_MSG_BATCH {
                    match futures_lite::future::poll_once(rx.recv()).await {
                        Some(Some(m)) => batch.push(m),
                        Some(None) => {
                            open = false;
                            break;
                        }
                        None => {
                            registered = true;
                            break;
                        }
                    }
                }
                core.on_core_msgs(&mut batch);
                if !open {
                    break;
                }
                if registered {
                    // The empty poll above left this task's waker with the channel; it fires
                    // when the next message arrives. Wait for it rather than polling `recv`
                    // again: glommio keeps every waker registered on an empty channel and wakes
                    // one per arriving message, so two registrations per message would pile up
                    // wakers without bound while traffic is sparse.
                    let mut waited = false;
                    std::future::poll_fn(|_| {
                        if waited {
                            std::task::Poll::Ready(())
                        } else {
                            waited = true;
                            std::task::Poll::Pending
                        }
                    })
                    .await;
                } else {
                    // A full batch and more waiting: glommio runs a ready task on until it
                    // waits, so a peer core that keeps this channel busy would starve this
                    // core's sessions, vendor binds and ticker. Let them run between batches.
                    futures_lite::future::yield_now().await;
                }
            }
        })
        .detach();
    }

    // Vendor bind slots owned by this core.
    let mut vendor_tasks = Vec::new();
    spawn_vendor_slots(&core, &io, &snap, &mut vendor_tasks, Default::default());

    // SAFETY: `fd` is a listening socket created in `start` and handed to this core alone.
    let listener = unsafe { glommio::net::TcpListener::from_raw_fd(fd) };
    let acceptor = glommio::spawn_local(accept_loop(core.clone(), io.clone(), listener));

    // Ticker: reloads from the control plane, clock catch-up for ids, store expiry, shutdown.
    let mut last_tick = Instant::now();
    while !shutdown.load(Ordering::Acquire) {
        Timer::new(Duration::from_millis(CONTROL_POLL_MS)).await;
        core.metrics.core_ticks.beat(idx);
        if published.version.load(Ordering::Acquire) != core.snap().version {
            let new = published.get();
            let old = core.snapshot();
            core.set_snapshot(new.clone());
            let retired = core.retain_vendor_binds(&new);
            // A removed vendor's binds drain: the receipts it owes for the messages it accepted
            // have no other bind to come on.
            let drain_ms = new.config.server.removed_vendor_drain_ms;
            let until = Instant::now() + Duration::from_millis(u64::from(drain_ms));
            for ((vendor, _), handle) in &retired {
                match old.vendor(*vendor).filter(|_| new.vendor(*vendor).is_none() && drain_ms > 0) {
                    Some(gone) => {
                        let _ = handle.1.push(VendorMsg::Drain { until });
                        core.add_draining_bind(handle.clone(), &gone.cfg);
                    }
                    None => {
                        let _ = handle.1.push(VendorMsg::Retire);
                    }
                }
            }
            // Draining binds of a vendor this reload brings back: their drain ends, and each is
            // the predecessor of its slot's new bind, as a replaced bind is.
            let returned = core.end_drains_for(&old, &new);
            for (_, (_, mb)) in &returned {
                let _ = mb.push(VendorMsg::Retire);
            }
            // Binds retired by earlier reloads whose tasks have ended: their task owned the other
            // handle on their mailbox. Without this every replaced bind stayed here for good.
            vendor_tasks.retain(|(_, mailbox)| Rc::strong_count(mailbox) > 1);
            // A bind replaced (same vendor and slot, new settings) is its successor's predecessor.
            let predecessors = retired.into_iter().chain(returned).collect();
            spawn_vendor_slots(&core, &io, &new, &mut vendor_tasks, predecessors);
            core.unbind_removed_customers(&new);
            applied.fetch_max(new.version, Ordering::AcqRel);
            info!(core = idx, version = new.version, "config applied");
        }
        serve_control(&core, &control);
        // Connections other cores accepted for this one (at most one poll of connect delay).
        while let Ok(h) = handoffs.try_recv() {
            adopt(&core, &io, h);
        }
        core.flush_remote();
        core.retry_held();
        if last_tick.elapsed() >= Duration::from_millis(100) {
            last_tick = Instant::now();
            core.tick();
            ids.publish(idx, core.ids_issued());
            crate::io::derive_expired_parts(&core, last_tick);
        }
    }
    info!(core = idx, "shutting down");
    drop(acceptor.cancel());
    // Handed over but not served: closed (they never bound), and so are those another core
    // hands over before it sees the stop (within its next poll), for as long as this core runs.
    {
        let io = io.clone();
        glommio::spawn_local(async move {
            loop {
                while let Ok(h) = handoffs.try_recv() {
                    drop(h);
                    io.balancer.closed(idx);
                }
                Timer::new(Duration::from_millis(CONTROL_POLL_MS)).await;
            }
        })
        .detach();
    }
    // The grace period as configured now (a reload may have changed it).
    let grace = Duration::from_millis(u64::from(core.snap().config.server.shutdown_grace_ms));
    // First the customers stop sending: new requests are refused (ESME_RSYSERR), those in
    // flight are answered, and the sessions stay bound, still taking receipts and MO.
    core.shutting_down.set(true);
    // Messages waiting for a vendor of their route to bind go now or are answered
    // (ESME_RSYSERR): nothing waits any more once shutting down.
    core.retry_held();
    for mb in core.session_mailboxes() {
        let _ = mb.push(SessionMsg::Settle);
    }
    let deadline = Instant::now() + grace;
    while core.unsettled_count() > 0 && Instant::now() < deadline {
        Timer::new(Duration::from_millis(10)).await;
        serve_control(&core, &control);
        core.flush_remote();
        core.pump_due_deliveries();
    }
    // Every core's customers have nothing out (or are out of time) before any core's vendors
    // unbind: a customer on another core may still have a message for a bind of this one.
    stages.wait(&stages.customers_done, cores, deadline, &core, &control).await;
    for mb in core.vendor_mailboxes() {
        let _ = mb.push(VendorMsg::Shutdown);
    }
    let vendor_deadline = Instant::now() + grace.min(Duration::from_secs(5)).max(Duration::from_millis(500));
    let mut late = Vec::new();
    for (mut t, mailbox) in vendor_tasks {
        if !ends_by(&mut t, vendor_deadline, &core, &control).await {
            late.push((t, mailbox));
        }
    }
    if !late.is_empty() {
        // Out of time (a vendor that never answers our unbind, or a submit still out): the
        // binds close now, answering what is in flight as unknown (so every customer has its
        // answers before it is unbound), and read nothing more. What a vendor has not had read
        // stays with it, unacknowledged, for a bind that is up; what a bind read later could
        // reach no customer once the cores stop.
        // Each late task's own mailbox: a bind a reload retired is no longer among the core's.
        for (_, mailbox) in &late {
            let _ = mailbox.push(VendorMsg::Abort);
        }
        let abort_deadline = Instant::now() + VENDOR_ABORT_WAIT;
        for (mut t, _) in late {
            if !ends_by(&mut t, abort_deadline, &core, &control).await {
                // Stuck even so (a write the vendor does not read): stopped where it is.
                t.cancel();
            }
        }
    }
    // No core stops taking messages from the others while their vendor binds still read: a
    // receipt read there may belong to this core's store or customers.
    stages
        .wait(&stages.vendors_done, cores, vendor_deadline + Duration::from_millis(500), &core, &control)
        .await;
    // Nothing more comes from vendors: the receipts and MO here go out to the customers still
    // bound before they are unbound, the two within half the grace period (as the drain before
    // the customers' grace took, so the whole stop keeps its bound). Every core waits for all:
    // a customer's queue lives on its home core, its sessions on others.
    let unbind_deadline = Instant::now() + grace / 2;
    let drain_until = unbind_deadline - (grace / 4).min(UNBIND_WAIT_MAX);
    // No last part will come here any more: the parts still waiting for one get their receipts
    // (through this core's inbox, which runs before the drain below first counts).
    let derived = crate::io::derive_open_parts_at_exit(&core);
    // Every customer has been written its answers (or is out of time): no receipt waits for one.
    let held = core.release_answer_wait(true);
    if derived + held + core.release_held_derived(true) > 0 {
        Timer::new(Duration::from_millis(CONTROL_POLL_MS)).await;
    }
    core.release_waiting_deliveries();
    // Empty everywhere for a few rounds in a row: a receipt still on its way between cores (in
    // an outbox or a channel, from a store to a home core to a session's core) shows up in some
    // core's count within a round or two.
    // Receipts parked for a message another node stored (its record not in Redis yet when they
    // came) are waited for too: the control thread looks them up again every 100 ms while the
    // node stops, and a match here becomes a receipt to deliver or hand over like the rest.
    let mut empty_rounds = 0;
    loop {
        core.follow_remote();
        // Parked receipts are worth waiting for only while they can be looked up.
        let parked = if core.remote_up() { core.parked_for_lookup() } else { 0 };
        draining[idx].store((core.deliverable() + parked) as u64, Ordering::Release);
        let left: u64 = draining.iter().map(|d| d.load(Ordering::Acquire)).sum();
        empty_rounds = if left == 0 { empty_rounds + 1 } else { 0 };
        if empty_rounds >= DRAIN_EMPTY_ROUNDS || Instant::now() >= drain_until {
            break;
        }
        Timer::new(Duration::from_millis(CONTROL_POLL_MS)).await;
        serve_control(&core, &control);
        core.flush_remote();
        // Refusals during the drain wait their turn as usual (a refusing customer is not sent
        // its receipts ten times within a moment and then has them given up).
        core.pump_due_deliveries();
    }
    draining[idx].store(0, Ordering::Release);
    for mb in core.session_mailboxes() {
        let _ = mb.push(SessionMsg::Shutdown);
    }
    while core.session_count() > 0 && Instant::now() < unbind_deadline {
        Timer::new(Duration::from_millis(10)).await;
        serve_control(&core, &control);
    }
    stages.wait(&stages.unbound, cores, unbind_deadline, &core, &control).await;
    for o in &outboxes {
        o.close();
    }
    // The last hand-offs from the shared queue (announced before the flag was seen) land here,
    // not in a queue nobody reads; they go back with the customers' queues.
    let handoff_deadline = Instant::now() + HANDOFF_PATIENCE;
    while handing.load(Ordering::SeqCst) > 0 && Instant::now() < handoff_deadline {
        serve_control(&core, &control);
        Timer::new(Duration::from_millis(1)).await;
    }
    serve_control(&core, &control);
    core.end_sessions_at_exit();
    core.hand_over_all_unreceived_at_exit();
    // What is still gathered for the control thread (record writes since the drain's last
    // flush, receipts handed over) goes now: a delivery it cannot take comes back to the
    // queue here and is counted below.
    core.flush_remote();
    core.abandon_remote();
    // What this node alone still holds of receipts to come: kept for the next start (a state
    // file), or counted as forgotten.
    let _ = left_tx.try_send(core.take_left_at_exit(keep_state));
    core.count_undelivered_at_exit();
    core.count_parked_at_exit();
    // The caller persists the watermark after the cores stop: exactly what was issued.
    ids.publish(idx, core.ids_issued());
    info!(core = idx, "stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executor_threads_carry_the_prefix_the_panic_hook_looks_for() {
        // Goal: the binary stops the process when an executor panics, telling executor threads
        // by their name: glommio must name them after the builder's name.
        let name = LocalExecutorBuilder::new(Placement::Unbound)
            .name(&format!("{EXECUTOR_THREAD_PREFIX}0"))
            .io_memory(limits::IO_MEMORY_BYTES)
            .ring_depth(64)
            .spawn(|| async { std::thread::current().name().map(str::to_owned) })
            .expect("an executor")
            .join()
            .expect("it ran");
        assert!(name.as_deref().is_some_and(|n| n.starts_with(EXECUTOR_THREAD_PREFIX)), "{name:?}");
    }

    #[test]
    fn executors_follow_the_cpu_quota_when_it_is_below_the_affinity_mask() {
        // Goal: `cores = 0` on a 64-CPU host under a 2-CPU quota runs 2 executors, not 64
        // pinned ones throttled together; without a quota, the affinity mask decides.
        assert_eq!(usable_cpus(64, 2), 2);
        assert_eq!(usable_cpus(4, 64), 4, "pinned to 4 CPUs of a larger quota");
        assert_eq!(usable_cpus(2, 2), 2);
        assert_eq!(usable_cpus(0, 0), 1, "never none");
        let mut cfg = Config::default();
        cfg.server.cores = 0;
        assert_eq!(cfg.server.effective_cores(usable_cpus(64, 2)), 2);
    }
}
