//! The thin glommio layer shared by both tools: executors with a small io_memory, CPU placement,
//! a local wake-up flag, and reading into a `BytesMut`. Nothing here knows SMPP.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::BytesMut;
use futures_lite::AsyncReadExt;
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use crate::limits::{CORES_MAX, IO_MEMORY_BYTES};

/// Where executors run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CpuPlacement {
    /// Let the kernel schedule them (what tests want).
    #[default]
    Unpinned,
    /// Executor `i` is pinned to CPU `cpus[i % cpus.len()]`.
    Pinned(Vec<usize>),
}

impl CpuPlacement {
    /// Parses `none`, a CPU (`1`), a list (`0,2`) or a range (`0-3`).
    pub fn parse(s: &str) -> Result<CpuPlacement, String> {
        let s = s.trim();
        if s.is_empty() || s == "none" {
            return Ok(CpuPlacement::Unpinned);
        }
        let mut cpus = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            let n = |x: &str| x.trim().parse::<usize>().map_err(|_| format!("bad CPU {x:?} in {s:?}"));
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (n(a)?, n(b)?);
                    if a > b || b - a >= CORES_MAX {
                        return Err(format!("bad CPU range {part:?}"));
                    }
                    cpus.extend(a..=b);
                }
                None => cpus.push(n(part)?),
            }
        }
        Ok(CpuPlacement::Pinned(cpus))
    }

    fn placement(&self, index: usize) -> Placement {
        match self {
            CpuPlacement::Unpinned => Placement::Unbound,
            CpuPlacement::Pinned(cpus) if cpus.is_empty() => Placement::Unbound,
            CpuPlacement::Pinned(cpus) => Placement::Fixed(cpus[index % cpus.len()]),
        }
    }
}

/// Starts executor `index` of a tool on its own thread, with our io_memory. With `spin` above
/// zero the executor polls for that long before it sleeps: on virtual machines a sleeping vCPU
/// takes long to wake, and polling keeps a ping-pong of small batches fast, at the price of a
/// busy core.
pub fn spawn_executor<G, F, T>(
    name: &str,
    index: usize,
    cpus: &CpuPlacement,
    spin: std::time::Duration,
    fut_gen: G,
) -> crate::Result<ExecutorJoinHandle<T>>
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let mut b = LocalExecutorBuilder::new(cpus.placement(index))
        .name(&format!("{name}-{index}"))
        .io_memory(IO_MEMORY_BYTES);
    if !spin.is_zero() {
        b = b.spin_before_park(spin);
    }
    b.spawn(fut_gen).map_err(|e| crate::Error::Runtime(format!("starting executor {index}: {e}")))
}

/// A one-shot wake-up flag for tasks of one executor: `notify` sets it and wakes the waiting
/// task; `notified` completes once it is set, and clears it.
#[derive(Debug, Default)]
pub struct Notify {
    set: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Notify {
    /// Sets the flag and wakes the waiter, if any.
    pub fn notify(&self) {
        self.set.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Whether the flag is set (without clearing it).
    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    /// Completes when the flag is set; clears it.
    pub fn notified(&self) -> Notified<'_> {
        Notified { n: self }
    }
}

/// Future of [`Notify::notified`].
#[derive(Debug)]
pub struct Notified<'a> {
    n: &'a Notify,
}

impl Future for Notified<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.n.set.replace(false) {
            return Poll::Ready(());
        }
        let mut w = self.n.waker.borrow_mut();
        match &*w {
            Some(old) if old.will_wake(cx.waker()) => {}
            _ => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// What ended a wait in [`read_or_wake`].
#[derive(Debug)]
pub enum Woke {
    /// This many octets were appended to the buffer (0: the peer closed).
    Read(usize),
    /// The notify flag was set.
    Notified,
    /// The deadline passed.
    Deadline,
    /// The read failed.
    Error(std::io::Error),
}

/// Reads once into `scratch` and appends what came to `buf`, unless `notify` is set or `deadline`
/// passes first. A deadline already past still tries the read once, without waiting, so that a
/// caller whose deadlines keep falling due never starves its socket. Dropping a pending read
/// loses nothing: glommio only polls for readiness.
pub async fn read_or_wake<S: futures_lite::AsyncRead + Unpin>(
    stream: &mut S,
    scratch: &mut [u8],
    buf: &mut BytesMut,
    notify: &Notify,
    deadline: Option<Instant>,
) -> Woke {
    let read = async {
        match stream.read(scratch).await {
            Ok(n) => {
                buf.extend_from_slice(&scratch[..n]);
                Woke::Read(n)
            }
            Err(e) => Woke::Error(e),
        }
    };
    let woken = async {
        notify.notified().await;
        Woke::Notified
    };
    match deadline {
        None => futures_lite::future::or(read, woken).await,
        Some(d) => {
            let now = Instant::now();
            if d <= now {
                return futures_lite::future::poll_once(read).await.unwrap_or(Woke::Deadline);
            }
            let timer = async {
                glommio::timer::Timer::new(d - now).await;
                Woke::Deadline
            };
            futures_lite::future::or(read, futures_lite::future::or(woken, timer)).await
        }
    }
}

/// Sleeps until `deadline` or until `notify` is set, whichever comes first.
pub async fn sleep_or_wake(notify: &Notify, deadline: Instant) -> bool {
    let now = Instant::now();
    if deadline <= now {
        return false;
    }
    let woken = async {
        notify.notified().await;
        true
    };
    let timer = async {
        glommio::timer::Timer::new(deadline - now).await;
        false
    };
    futures_lite::future::or(woken, timer).await
}

/// Single-writer counters: the owning core stores, any thread loads. No read-modify-write is
/// needed (and none is paid for) because one core only ever writes its own block.
#[inline]
pub fn bump(c: &std::sync::atomic::AtomicU64, n: u64) {
    use std::sync::atomic::Ordering::Relaxed;
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

/// A gauge owned by one core: set to a value.
#[inline]
pub fn set(c: &std::sync::atomic::AtomicU64, v: u64) {
    c.store(v, std::sync::atomic::Ordering::Relaxed);
}

/// Loads a counter.
#[inline]
pub fn get(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(std::sync::atomic::Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse() {
        // Goal: none, single CPUs, lists and ranges parse; garbage does not.
        assert_eq!(CpuPlacement::parse("none").unwrap(), CpuPlacement::Unpinned);
        assert_eq!(CpuPlacement::parse("1").unwrap(), CpuPlacement::Pinned(vec![1]));
        assert_eq!(CpuPlacement::parse("0,2-3").unwrap(), CpuPlacement::Pinned(vec![0, 2, 3]));
        assert!(CpuPlacement::parse("x").is_err());
        assert!(CpuPlacement::parse("3-1").is_err());
    }

    #[test]
    fn two_executors_fit_under_the_memlock_limit() {
        // Goal: with our io_memory, two executors start side by side (8 MiB memlock machines).
        let zero = std::time::Duration::ZERO;
        let a = spawn_executor("t", 0, &CpuPlacement::Unpinned, zero, || async { 1 }).unwrap();
        let b = spawn_executor("t", 1, &CpuPlacement::Unpinned, zero, || async { 2 }).unwrap();
        assert_eq!(a.join().unwrap() + b.join().unwrap(), 3);
    }
}
