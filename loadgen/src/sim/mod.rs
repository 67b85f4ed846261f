//! The vendor SMSC simulator: what the gateway's vendors look like in every test and benchmark.
//!
//! [`Simulator::start`] runs it on its own executor threads and returns a [`SimHandle`] with the
//! bound address, live counters ([`SimStats`]), the recorded submits and `stop`. The protocol
//! logic is in [`SimSession`] (one connection) and [`SimCore`] (what a core's sessions share),
//! both sans-IO; `driver` is the thin glommio layer.
//!
//! ```no_run
//! use smppgw_loadgen::sim::{SimConfig, Simulator};
//! let sim = Simulator::start(SimConfig { record_max: 100, ..SimConfig::for_tests() })?;
//! println!("vendor at {}", sim.local_addr());
//! // ... point the gateway (or the load generator) at it ...
//! let stats = sim.stop();
//! println!("{} submits, {} receipts", stats.submits, stats.receipts_sent);
//! # Ok::<(), smppgw_loadgen::Error>(())
//! ```

pub mod config;
pub mod core;
mod delayq;
mod driver;
pub mod receipt;
pub mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use glommio::ExecutorJoinHandle;

pub use self::config::{
    Account, Delay, Faults, MoOptions, ReceiptOptions, SimConfig, Stall, StateMix, parse_status,
};
pub use self::core::{AccountStats, BindKind, RecordedOp, RecordedSubmit, SimCore, SimStats};
pub use self::session::SimSession;
use crate::runtime::spawn_executor;
use crate::{Error, Result};

/// How long start waits for a core to bind its port.
const BIND_WAIT: Duration = Duration::from_secs(10);

/// Starts simulators.
#[derive(Debug)]
pub struct Simulator;

impl Simulator {
    /// Validates `cfg`, starts its cores and returns once every core listens.
    pub fn start(cfg: SimConfig) -> Result<SimHandle> {
        cfg.validate().map_err(Error::Config)?;
        let cfg = Arc::new(cfg);
        let shared = Arc::new(self::core::Shared::new(&cfg));
        let mut handle = SimHandle { addr: cfg.listen, shared: shared.clone(), threads: Vec::new() };
        let mut listen = cfg.listen;
        for index in 0..cfg.cores {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            let (c, s) = (cfg.clone(), shared.clone());
            let t = spawn_executor("smppgw-sim", index, &cfg.cpus, cfg.spin_before_park, move || {
                driver::run_core(c, s, index, listen, tx)
            })?;
            handle.threads.push(t);
            match rx.recv_timeout(BIND_WAIT) {
                Ok(Ok(addr)) => {
                    // Later cores bind the same port (ephemeral port: the one core 0 got).
                    listen = addr;
                    handle.addr = addr;
                }
                Ok(Err(e)) => return Err(Error::Io(e)),
                Err(_) => return Err(Error::Runtime(format!("core {index} did not start listening"))),
            }
        }
        Ok(handle)
    }
}

/// A running simulator. Dropping it stops it.
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    shared: Arc<self::core::Shared>,
    threads: Vec<ExecutorJoinHandle<()>>,
}

impl SimHandle {
    /// The address it listens on (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counters now.
    pub fn stats(&self) -> SimStats {
        self.shared.stats()
    }

    /// Takes the submit_sm recorded so far (record mode, `record_max` > 0), oldest first.
    pub fn take_recorded(&self) -> Vec<RecordedSubmit> {
        self.shared.take_recorded()
    }

    /// Takes the cancel_sm and replace_sm recorded so far (record mode), oldest first.
    pub fn take_recorded_ops(&self) -> Vec<RecordedOp> {
        self.shared.take_recorded_ops()
    }

    /// Stops every core, waits for them, and returns the final counters.
    pub fn stop(mut self) -> SimStats {
        self.shutdown();
        self.shared.stats()
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}
