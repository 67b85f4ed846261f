//! The load generator and the vendor SMSC simulator of smppgw, as a library and two binaries.
//!
//! [`load`] drives binds against any SMPP server and measures what it sees (`smppgw-loadgen`);
//! [`sim`] plays the vendor SMSC the gateway talks to in every test and benchmark (`smppgw-sim`).
//! Both follow the engine's shape: one glommio executor per core, protocol logic in sans-IO state
//! machines that take decoded PDUs and the current time and hand back bytes to write and their
//! next deadline ([`sim::SimSession`], [`load::LoadSession`]), and a thin IO driver around them that
//! reads whole buffers, decodes every PDU in them and answers with one coalesced write.
//!
//! Everything is bounded by a named limit in [`limits`]. Nothing a peer sends may panic this crate:
//! malformed PDUs get their error response or generic_nack, broken framing closes the session.
//! This crate must never become the bottleneck of what it measures, and never lie in a report:
//! unmatched, missing and late things are counted, not dropped.

pub mod cli;
pub mod limits;
pub mod load;
pub mod msgid;
pub mod pattern;
pub mod rng;
pub mod runtime;
pub mod sim;
pub mod wire;

/// Errors of the library's entry points: configuration and start-up. Once running, protocol and
/// network failures are counted in the reports, never returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is outside its bounds or cannot be parsed.
    #[error("configuration: {0}")]
    Config(String),
    /// Starting an executor, binding or connecting failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The glommio runtime refused to start (often: locked-memory limit too low for io_memory).
    #[error("runtime: {0}")]
    Runtime(String),
}

/// Result of the library's entry points.
pub type Result<T> = std::result::Result<T, Error>;
