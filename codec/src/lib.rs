//! SMPP 3.4 (with the 5.0 additions) codec for smppgw.
//!
//! Sans-IO: bytes in, typed PDUs out, and back. This crate never touches a socket, a clock or a
//! runtime; callers pass in what it needs (buffers, the current time) and act on what it returns.
//! Decoded strings and bodies are [`bytes::Bytes`] slices of the input buffer, never copies.

pub mod receipt;
pub mod text;
