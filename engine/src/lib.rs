//! smppgw's data plane: one glommio executor per core.
//!
//! Each core owns the customer sessions it accepted and the vendor binds it opened; nothing on
//! the hot path takes a lock, and work crosses cores only through bounded channels. Protocol logic
//! lives in sans-IO machines ([`customer`], [`vendor`]) driven by thin glommio tasks ([`io`]).
//! This crate must never block a core: no blocking IO, no locks, no unbounded queues.

pub mod answers;
pub mod balance;
pub mod campaign;
pub mod carryover;
pub mod config;
pub mod core;
pub mod customer;
pub mod deadlines;
pub mod deliveries;
pub mod fdlimit;
pub mod hash;
pub mod io;
pub mod lease;
pub mod limits;
pub mod loglimit;
pub mod mailbox;
pub mod metrics;
pub mod msgid;
pub mod rate;
pub mod remote;
pub mod runtime;
pub mod seqindex;
pub mod snapshot;
pub mod store;
pub mod vendor;

#[cfg(test)]
mod test_util;

pub use runtime::{
    EXECUTOR_THREAD_PREFIX, Gateway, StartError, StartOptions, executor_running_here, start, start_shared,
    start_with_options,
};
