//! The control plane's HTTP API (hyper, HTTP/1.1): liveness and readiness, Prometheus metrics, the
//! state of vendors, customers and messages, and config reload. See `control/API.md`.
//!
//! It runs on the control thread's current-thread tokio runtime ([`spawn_control_thread`]) and only
//! reads what the cores publish (atomics, snapshots); the one call that waits on the cores, the
//! message lookup, runs on a blocking thread with a deadline. Every resource is bounded by a named
//! constant below: connections, header bytes and time, body bytes and time, handler time.
//!
//! Requests that change state (`POST`), and message lookups (a customer's data), need
//! `Authorization: Bearer <token>` when an admin token is configured, and the server refuses to start on a non-loopback address without one
//! ([`HttpError::TokenRequired`]).

mod api;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tracing::{debug, info, warn};

pub use api::{
    ApiState, Backend, BoxFuture, ExtraMetricsFn, ReadyCheckFn, ReloadFailure, ReloadFn, RemoteLookupFn,
};

/// Largest request body accepted (bytes); larger gets 413. No endpoint needs a body today.
pub const REQUEST_BODY_MAX_BYTES: usize = 64 * 1024;
/// Time a client has to send a request's headers, from the first byte it may send (also how long
/// an idle keep-alive connection is kept), in milliseconds.
pub const HEADER_READ_TIMEOUT_MS: u64 = 5_000;
/// Bytes buffered for one request's head (hyper's floor is 8 KiB); a longer head is refused.
pub const HEADER_BUF_MAX_BYTES: usize = 16 * 1024;
/// Time a client has to send a request's body once its headers are in, in milliseconds.
pub const BODY_READ_TIMEOUT_MS: u64 = 5_000;
/// Connections served at once; more are answered 503 and closed. A scraper and a few operators
/// need a handful; the bound keeps a misbehaving client from tying up the control thread.
pub const CONNECTIONS_MAX: usize = 64;
/// Connections one client address may hold at once, so that one client holding idle
/// connections leaves the rest of [`CONNECTIONS_MAX`] to the others (the kubelet's probes, the
/// scraper); beyond it that client's new connections are answered 503.
pub const CONNECTIONS_PER_PEER_MAX: usize = 16;
/// A keep-alive connection is closed gracefully after this long, in milliseconds, so that no
/// client holds a connection slot for ever.
pub const CONNECTION_LIFETIME_MAX_MS: u64 = 60_000;
/// Longest a response write may wait for the client to take bytes, in milliseconds; then the
/// connection is closed: a client that sends requests and never reads the answers would
/// otherwise hold its slot until [`CONNECTION_LIFETIME_MAX_MS`] and [`REQUEST_TIMEOUT_MS`] ran out.
pub const WRITE_STALL_MS: u64 = 5_000;
/// Connections past the limits being answered at once (a probe served, anything else 503);
/// beyond, a connection is closed unanswered.
pub const REFUSALS_MAX: usize = 16;
/// How long a connection past the limits is kept to send its one request and take the answer,
/// in milliseconds.
pub const REFUSAL_LINGER_MS: u64 = 1_000;
/// Longest a handler may take, reload included, in milliseconds; then 503.
pub const REQUEST_TIMEOUT_MS: u64 = 20_000;
/// Longest the reload callback may take, in milliseconds.
pub const RELOAD_TIMEOUT_MS: u64 = 10_000;
/// After a reload is accepted, how long the answer waits for every core to apply it, in
/// milliseconds (cores poll every few milliseconds; the target is 100 ms).
pub const RELOAD_APPLY_WAIT_MS: u64 = 2_000;
/// Longest a message lookup waits for the cores' answers, in milliseconds.
pub const LOOKUP_TIMEOUT_MS: u64 = 1_000;
/// Blocking threads of the control runtime: message lookups wait on the cores there (at most
/// [`LOOKUPS_BLOCKING_MAX`] of them at once), and the engine's reloads, file writes and DNS
/// lookups run there too. A reload's build from PostgreSQL has threads of its own
/// (`db::load`).
pub const BLOCKING_THREADS_MAX: usize = 4;
/// Message lookups waiting on the cores at once; more are answered 503 with `retry-after` at
/// once. Each may wait [`LOOKUP_TIMEOUT_MS`] for a busy core: without this bound, a burst of
/// lookups would take every blocking thread, and a reload or a configuration from PostgreSQL
/// queued behind them would be answered "timed out" and applied later, unannounced.
pub const LOOKUPS_BLOCKING_MAX: usize = 2;
const _: () = assert!(LOOKUPS_BLOCKING_MAX < BLOCKING_THREADS_MAX);
/// On shutdown, how long open connections get to finish their request, in milliseconds.
pub const SHUTDOWN_DRAIN_MS: u64 = 2_000;
/// Pause after a failed accept (out of file descriptors, ...), in milliseconds.
pub const ACCEPT_ERROR_BACKOFF_MS: u64 = 100;
/// Longest admin token accepted (bytes).
pub const ADMIN_TOKEN_MAX_BYTES: usize = 256;

const _: () = assert!(HEADER_BUF_MAX_BYTES >= 8192, "hyper refuses a smaller buffer");
const _: () = assert!(REQUEST_TIMEOUT_MS > RELOAD_TIMEOUT_MS + RELOAD_APPLY_WAIT_MS + BODY_READ_TIMEOUT_MS);
const _: () = assert!(REQUEST_TIMEOUT_MS > 2 * LOOKUP_TIMEOUT_MS, "a lookup may try two id styles");
const _: () = assert!(CONNECTION_LIFETIME_MAX_MS > REQUEST_TIMEOUT_MS);
const _: () = assert!(CONNECTIONS_MAX as u64 <= u32::MAX as u64);
const _: () = assert!(CONNECTIONS_PER_PEER_MAX < CONNECTIONS_MAX, "a peer leaves room for others");

/// Only the control thread's tasks touch it (never a core).
#[allow(clippy::disallowed_types)]
type Lock<T> = std::sync::Mutex<T>;

/// Connections open per client address (bounded by [`CONNECTIONS_MAX`] entries: only admitted
/// connections are counted).
#[derive(Default)]
struct PeerCounts(Lock<std::collections::HashMap<std::net::IpAddr, usize>>);

/// One admitted connection of `ip`; its count goes down when it is dropped.
struct PeerSlot {
    counts: Arc<PeerCounts>,
    ip: std::net::IpAddr,
}

impl PeerCounts {
    /// A slot for a connection from `ip`, unless it holds [`CONNECTIONS_PER_PEER_MAX`] already.
    fn take(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<PeerSlot> {
        let mut m = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = m.entry(ip).or_insert(0);
        if *n >= CONNECTIONS_PER_PEER_MAX {
            return None;
        }
        *n += 1;
        Some(PeerSlot { counts: self.clone(), ip })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut m = self.counts.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Where and how the API listens.
#[derive(Clone)]
pub struct HttpConfig {
    /// Listen address; port 0 picks a free port (see [`Server::local_addr`]).
    pub listen: SocketAddr,
    /// The admin token `POST` requests must present as `Authorization: Bearer <token>`; `None`
    /// lets anyone who reaches the port change state, which is only allowed on loopback.
    pub admin_token: Option<String>,
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("listen", &self.listen)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl HttpConfig {
    /// Listen on `listen` with no admin token.
    pub fn new(listen: SocketAddr) -> Self {
        Self { listen, admin_token: None }
    }

    /// The same with an admin token.
    #[must_use]
    pub fn with_admin_token(mut self, token: impl Into<String>) -> Self {
        self.admin_token = Some(token.into());
        self
    }

    /// Checks the token rules: a token is 1..=[`ADMIN_TOKEN_MAX_BYTES`] visible ASCII characters
    /// (it travels in a header), and a non-loopback address needs one.
    ///
    /// # Errors
    /// [`HttpError::InvalidToken`] or [`HttpError::TokenRequired`].
    pub fn validate(&self) -> Result<(), HttpError> {
        match &self.admin_token {
            Some(t) if t.is_empty() => Err(HttpError::InvalidToken { reason: "it is empty" }),
            Some(t) if t.len() > ADMIN_TOKEN_MAX_BYTES => {
                Err(HttpError::InvalidToken { reason: "it is longer than ADMIN_TOKEN_MAX_BYTES" })
            }
            Some(t) if !t.bytes().all(|b| b.is_ascii_graphic()) => {
                Err(HttpError::InvalidToken { reason: "it must be visible ASCII without spaces" })
            }
            Some(_) => Ok(()),
            None if self.listen.ip().is_loopback() => Ok(()),
            None => Err(HttpError::TokenRequired { addr: self.listen }),
        }
    }
}

impl Default for HttpConfig {
    /// `127.0.0.1:8080` (the engine's `server.http_listen` default), no token.
    fn default() -> Self {
        Self::new(smppgw_engine::config::defaults::HTTP_LISTEN)
    }
}

/// Why the API could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// A non-loopback listen address without an admin token.
    #[error(
        "refusing to serve the HTTP API on {addr}: it is not a loopback address and no admin token is set"
    )]
    TokenRequired {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The admin token cannot be used.
    #[error("the admin token is unusable: {reason}")]
    InvalidToken {
        /// Why.
        reason: &'static str,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The control thread or its runtime could not be started.
    #[error("cannot start the control thread: {0}")]
    Runtime(std::io::Error),
    /// The caller's setup of the control thread (its `build` future) failed.
    #[error("control thread setup failed: {0}")]
    Setup(String),
    /// The control thread panicked.
    #[error("the control thread panicked")]
    Panicked,
}

/// A bound listener, not yet serving: lets the caller learn the port before requests arrive.
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    token: Option<Arc<str>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("admin_token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// Validates `cfg` and binds its address (on the current tokio runtime).
///
/// # Errors
/// The token rules ([`HttpConfig::validate`]) or the bind.
pub async fn bind(cfg: HttpConfig) -> Result<Server, HttpError> {
    cfg.validate()?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| HttpError::Listen { addr: cfg.listen, source })?;
    let local_addr =
        listener.local_addr().map_err(|source| HttpError::Listen { addr: cfg.listen, source })?;
    Ok(Server { listener, local_addr, token: cfg.admin_token.map(Arc::from) })
}

/// Binds `cfg.listen` and serves `state` until `shutdown` completes, then lets open connections
/// finish for up to [`SHUTDOWN_DRAIN_MS`].
///
/// # Errors
/// Only at start: the token rules or the bind. Errors of single connections are logged.
pub async fn serve(
    cfg: HttpConfig,
    state: ApiState,
    shutdown: impl Future<Output = ()>,
) -> Result<(), HttpError> {
    bind(cfg).await?.run(state, shutdown).await
}

impl Server {
    /// The address it listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes; see [`serve`].
    ///
    /// # Errors
    /// None today; the type leaves room for fatal listener errors.
    pub async fn run(self, state: ApiState, shutdown: impl Future<Output = ()>) -> Result<(), HttpError> {
        let shared = Arc::new(api::Shared { state, token: self.token });
        let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
        let peers = Arc::new(PeerCounts::default());
        let refusals = Arc::new(Semaphore::new(REFUSALS_MAX));
        let (drain_tx, drain_rx) = watch::channel(false);
        info!(addr = %self.local_addr, "HTTP API listening");
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let admitted = match peers.take(peer.ip()) {
                            None => Err(CONNECTIONS_PER_PEER_MAX),
                            Some(p) => slots.clone().try_acquire_owned().map(|s| (s, p)).map_err(|_| CONNECTIONS_MAX),
                        };
                        let permit = match admitted {
                            Ok(p) => p,
                            Err(open) => {
                                debug!(%peer, "HTTP connection refused: {open} open");
                                // Beyond REFUSALS_MAX refusals in progress, the connection is just closed.
                                if let Ok(slot) = refusals.clone().try_acquire_owned() {
                                    tokio::spawn(refuse(stream, shared.clone(), slot));
                                }
                                continue;
                            }
                        };
                        tokio::spawn(connection(stream, shared.clone(), permit, drain_rx.clone()));
                    }
                    Err(e) => {
                        warn!("HTTP accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await;
                    }
                },
            }
        }
        drop(self.listener);
        let _ = drain_tx.send(true);
        let all = u32::try_from(CONNECTIONS_MAX).unwrap_or(u32::MAX);
        let drained =
            tokio::time::timeout(Duration::from_millis(SHUTDOWN_DRAIN_MS), slots.acquire_many(all)).await;
        if drained.is_err() {
            warn!("HTTP connections still open after {SHUTDOWN_DRAIN_MS} ms; closing them");
        }
        info!("HTTP API stopped");
        Ok(())
    }
}

/// The answer to a connection over [`CONNECTIONS_MAX`] or [`CONNECTIONS_PER_PEER_MAX`]: a 503, then the write side is closed and
/// what the client sent is read and dropped until it closes (closing a socket with unread bytes
/// would reset it and lose the answer), for at most [`REFUSAL_LINGER_MS`].
/// A connection past the limits: its one request is answered within [`REFUSAL_LINGER_MS`] by
/// [`api::handle_overflow`] (probes served, anything else 503), then the connection is closed.
async fn refuse(stream: TcpStream, shared: Arc<api::Shared>, _slot: OwnedSemaphorePermit) {
    let _ = stream.set_nodelay(true);
    let svc = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(api::handle_overflow(req, &shared).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(false)
        .header_read_timeout(Duration::from_millis(REFUSAL_LINGER_MS))
        .max_buf_size(HEADER_BUF_MAX_BYTES);
    let conn = builder.serve_connection(TokioIo::new(StallGuard { inner: stream, stalled: None }), svc);
    let _ = tokio::time::timeout(Duration::from_millis(REFUSAL_LINGER_MS), conn).await;
}

/// A connection whose writes fail once one has waited [`WRITE_STALL_MS`] for the client to take
/// bytes (the wait starts again whenever a write moves).
struct StallGuard {
    inner: TcpStream,
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl StallGuard {
    /// The inner write returned `poll`: passed on, unless it has waited too long.
    fn guard<T>(&mut self, cx: &mut Context<'_>, poll: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        match poll {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let sleep = self.stalled.get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep(Duration::from_millis(WRITE_STALL_MS)))
                });
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client does not read its answers",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl tokio::io::AsyncRead for StallGuard {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for StallGuard {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.guard(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.guard(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.guard(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn connection(
    stream: TcpStream,
    shared: Arc<api::Shared>,
    permit: (OwnedSemaphorePermit, PeerSlot),
    mut drain: watch::Receiver<bool>,
) {
    let _permit = permit;
    let _ = stream.set_nodelay(true);
    let svc = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(api::handle(req, &shared).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(HEADER_READ_TIMEOUT_MS))
        .max_buf_size(HEADER_BUF_MAX_BYTES);
    let conn = builder.serve_connection(TokioIo::new(StallGuard { inner: stream, stalled: None }), svc);
    tokio::pin!(conn);
    let lifetime = tokio::time::sleep(Duration::from_millis(CONNECTION_LIFETIME_MAX_MS));
    tokio::pin!(lifetime);
    let draining = async {
        while !*drain.borrow_and_update() {
            if drain.changed().await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                debug!("HTTP connection ended: {e}");
            }
            return;
        }
        () = &mut lifetime => {
            // Old, not stopping: the request in progress (a reload against a slow database)
            // gets all the time a request has.
            conn.as_mut().graceful_shutdown();
            if let Ok(Err(e)) = tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), conn).await {
                debug!("HTTP connection ended: {e}");
            }
            return;
        }
        () = draining => {}
    }
    // Stopping: finish the request in progress, if any, within the drain, then close.
    conn.as_mut().graceful_shutdown();
    if let Ok(Err(e)) = tokio::time::timeout(Duration::from_millis(SHUTDOWN_DRAIN_MS), conn).await {
        debug!("HTTP connection ended: {e}");
    }
}

/// The running control thread: its HTTP address and a way to stop it. The thread also stops
/// (without anyone waiting for it) once this and every [`StopHandle`] are dropped.
#[derive(Debug)]
pub struct ControlThread {
    local_addr: SocketAddr,
    stop: StopHandle,
    handle: std::thread::JoinHandle<Result<(), HttpError>>,
}

/// Stops the control thread from anywhere (a signal handler loop, the engine's shutdown path).
#[derive(Debug, Clone)]
pub struct StopHandle(Arc<watch::Sender<bool>>);

impl StopHandle {
    /// Asks the control thread to stop serving and return.
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

impl ControlThread {
    /// The HTTP API's address (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that stops the thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Stops the thread and waits for it.
    ///
    /// # Errors
    /// What the thread returned, or [`HttpError::Panicked`].
    pub fn stop(self) -> Result<(), HttpError> {
        self.stop.stop();
        self.join()
    }

    /// Waits for the thread to end (after a [`StopHandle::stop`]).
    ///
    /// # Errors
    /// What the thread returned, or [`HttpError::Panicked`].
    pub fn join(self) -> Result<(), HttpError> {
        self.handle.join().unwrap_or(Err(HttpError::Panicked))
    }
}

/// Starts the control thread `smppgw-control`: a current-thread tokio runtime (with at most
/// [`BLOCKING_THREADS_MAX`] blocking threads) that binds the API, runs `build` — where the caller
/// connects its backends, spawns its own tasks (config watcher, Redis batches) on this runtime and
/// returns the [`ApiState`] — then serves until stopped.
///
/// Returns once the API listens, with its address; a failed bind or `build` is returned here and
/// the thread ends.
///
/// # Errors
/// The token rules, the bind, `build`'s error as [`HttpError::Setup`], or a failure to start the
/// thread or runtime.
pub fn spawn_control_thread<B, Fut>(cfg: HttpConfig, build: B) -> Result<ControlThread, HttpError>
where
    B: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<ApiState, String>> + 'static,
{
    cfg.validate()?;
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<SocketAddr, HttpError>>(1);
    let handle = std::thread::Builder::new()
        .name("smppgw-control".to_owned())
        .spawn(move || -> Result<(), HttpError> {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .max_blocking_threads(BLOCKING_THREADS_MAX)
                .thread_name("smppgw-control-blocking")
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(HttpError::Runtime(e)));
                    return Ok(());
                }
            };
            rt.block_on(async move {
                let server = match bind(cfg).await {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return Ok(());
                    }
                };
                let state = match build().await {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(HttpError::Setup(e)));
                        return Ok(());
                    }
                };
                if ready_tx.send(Ok(server.local_addr())).is_err() {
                    return Ok(());
                }
                let stopped = async move {
                    while !*stop_rx.borrow_and_update() {
                        if stop_rx.changed().await.is_err() {
                            break;
                        }
                    }
                };
                server.run(state, stopped).await
            })
        })
        .map_err(HttpError::Runtime)?;
    match ready_rx.recv() {
        Ok(Ok(local_addr)) => Ok(ControlThread { local_addr, stop: StopHandle(Arc::new(stop_tx)), handle }),
        Ok(Err(e)) => {
            let _ = handle.join();
            Err(e)
        }
        Err(_) => Err(handle
            .join()
            .err()
            .map_or(HttpError::Setup("the control thread ended".to_owned()), |_| HttpError::Panicked)),
    }
}
