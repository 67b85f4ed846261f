//! Hard limits of the data plane, in one place, each with why it has its value. Configurable limits
//! are validated against these ceilings once, when the config is loaded.

/// Capacity of each cross-core channel (messages). Large enough to absorb a burst of one
/// full customer window per session from the other core between two polls; a full channel is
/// backpressure (another bind, or ESME_RTHROTTLED), never a drop.
pub const CROSS_CORE_CHANNEL_CAPACITY: usize = 16 * 1024;

/// Jobs queued at one vendor bind beyond its in-flight window. Small: a queued job is a job not
/// yet at the vendor, so a long queue only hides a slow vendor from failover.
pub const VENDOR_BIND_QUEUE_MAX: usize = 1024;

/// A vendor bind paced to its `throughput` queues at most what its pace sends in this long
/// (beyond its submits in flight): a customer sending faster than the vendor's throughput gets
/// ESME_RTHROTTLED (or another vendor of the route) after about this wait, instead of waiting
/// for its answer longer than its own response timeout and sending the message again.
pub const PACED_QUEUE_WAIT_MS: u64 = 2_000;

/// Events queued for one customer session (submit results, receipts to send). A customer has at
/// most `window` submits outstanding, so results never exceed this; receipts beyond it wait in the
/// per-customer receipt queue.
pub const CUSTOMER_MAILBOX_MAX: usize = 4096;

/// Messages one executor holds for another while the channel between them is full. Jobs and
/// answers are bounded by the windows; vendor binds stop reading receipts and MO when an
/// outbox passes a sixteenth of this (`core::OUTBOX_BACKLOGGED`). Full, a message is dropped
/// and counted (`lost_answers`).
pub const OUTBOX_MAX: usize = 1 << 20;

/// Answers to a session's pending query_sm, cancel_sm and replace_sm that may be on their way at
/// once (each asks every executor, so a session may have this many divided by the executors
/// pending): with the window's submit answers and the receipts in flight, what the session's
/// mailbox holds. More are refused with ESME_RTHROTTLED.
pub const QUERY_ANSWERS_MAX: usize = 2048;

/// Bytes read from a socket per syscall, into the per-core scratch buffer.
pub const READ_SCRATCH_BYTES: usize = 256 * 1024;

/// Write buffer capacity a session keeps between wake-ups: a burst (or a flood of requests from
/// a peer that never binds) does not leave every idle session holding its largest write. A
/// session's read buffer keeps nothing but a partial frame, copied to a buffer of its own size.
pub const SESSION_WRITE_BUFFER_KEEP_BYTES: usize = 16 * 1024;

/// Least time a peer gets to take bytes from a socket that does not drain (its TCP window
/// stays shut) before its session is closed; the session's response timeout when longer. A
/// peer that has stopped reading is as gone as one that has stopped answering, and a write
/// waiting on it would hold the session's timers, window and receipts forever.
pub const WRITE_STALL_MIN_MS: u64 = 1_000;

/// The longest one write of a bound customer session's buffered answers and deliveries may take
/// in all (a session not bound yet has until its bind deadline). The write-stall timeout starts
/// again at every partial write, so a peer taking a few octets now and then would otherwise hold
/// its session, and everything the session has in flight, for as long as it likes.
pub const SESSION_WRITE_MAX_MS: u64 = 60_000;

/// A partial frame left in a session's read buffer after decoding is copied out of the read's
/// allocation up to this size (see `io::trim_read_buffer`); a longer one stays.
pub const PARTIAL_FRAME_COPY_MAX: usize = 4096;

/// Largest customer or vendor window accepted from the config.
pub const WINDOW_MAX: u32 = 10_000;

/// The longest PDU a customer connection may send before it is bound (a bind is about 100
/// octets): unauthenticated connections cannot make the node buffer `max_command_length`
/// (up to 1 MiB) each. A longer one is a framing error, which closes the connection.
pub const UNBOUND_COMMAND_LENGTH_MAX: u32 = 1024;

/// Octets read from a customer connection per read while it is not bound: with the partial PDU
/// left before it (shorter than [`UNBOUND_COMMAND_LENGTH_MAX`]), what an unauthenticated
/// connection makes the node buffer, also while its bind waits for its password check (what it
/// sent behind the bind stays in the socket, not in a [`READ_SCRATCH_BYTES`] read).
pub const UNBOUND_READ_BYTES: usize = UNBOUND_COMMAND_LENGTH_MAX as usize;

/// Most executor cores: message ids carry the core in 6 bits.
pub const CORES_MAX: usize = 64;

/// How long an executor may go without running its ticker (every 10 ms when well) before
/// `/health` fails: a core that hangs without panicking stalls every session it owns, and only
/// a restart gets them back. Far above any pause a busy core takes between its tasks.
pub const CORE_STALL_MS: u64 = 10_000;

/// Bind attempts that failed authentication before a connection is closed.
pub const BIND_FAILURES_MAX: u32 = 3;

/// Failed password checks one source address may cause on one core within
/// [`BIND_FAILURE_WINDOW_MS`]: past them its binds whose credentials were not verified before are
/// refused (ESME_RBINDFAIL) without a password hash. Each check costs a deliberately slow hash
/// (tens of milliseconds of CPU), so a password-guessing peer would otherwise take CPU from the
/// node's traffic at will.
pub const BIND_FAILURES_PER_PEER: u32 = 10;

/// Connections from one address that have not bound yet, per core, while the node holds
/// `max_binds` connections or more (and at most an eighth of `max_binds` over the cores);
/// beyond, a new one is closed at once. A host holding idle
/// connections open (a flood, or a customer's reconnect loop gone wrong) would otherwise fill
/// the node's connection budget (twice `max_binds`, checked at accept) and lock every other
/// customer out. The per-core map this counts in holds only addresses with such connections, so
/// it is bounded by the connection budget.
pub const UNBOUND_PER_ADDRESS_MAX: u32 = 64;

/// The window of [`BIND_FAILURES_PER_PEER`].
pub const BIND_FAILURE_WINDOW_MS: u64 = 60_000;

/// Source addresses whose failed password checks one core remembers; full, the ones whose
/// window has passed are forgotten, and if none has, the one with the fewest failures (the
/// oldest of them): an address that used up its failures stays refused however many others
/// fail after it. IPv6 addresses count by their /64, which one host usually holds whole.
pub const BIND_FAILURE_PEERS_MAX: usize = 4096;

/// Password checks waiting for or running on one core's hashing thread. They run one after
/// another (tens of milliseconds each), so a bind needing one waits behind all of them: without
/// a bound, a peer guessing from many addresses (each with its own
/// [`BIND_FAILURES_PER_PEER`]) would queue minutes of hashing ahead of a customer's first bind.
/// Beyond it, a bind whose credentials the core has not verified before is refused at once
/// (ESME_RBINDFAIL, counted in bind_failures) and may be tried again.
pub const PASSWORD_CHECKS_PENDING_MAX: usize = 16;

/// Of [`PASSWORD_CHECKS_PENDING_MAX`], how many checks from addresses that already failed one in
/// their window may be waiting or running: the rest is kept for addresses with no failure (a
/// customer binding for the first time), so that guesses from addresses that keep failing never
/// fill the queue for them.
pub const PASSWORD_CHECKS_FAILING_MAX: usize = PASSWORD_CHECKS_PENDING_MAX / 2;

/// Verified (system_id, password) pairs cached per core, so that a bind storm costs one password
/// hash per customer per core instead of one per bind.
pub const AUTH_CACHE_MAX: usize = 4096;

/// glommio's io_uring buffer memory per executor. Kept small because it is locked memory; the
/// rings themselves lock more (measured: about 8 MiB for one core and 12 MiB for two on this
/// kernel), so run with RLIMIT_MEMLOCK of 64 MiB or unlimited (deploy/TUNING.md). With less,
/// glommio skips registering buffers and takes a slower IO path; with far less, the executors
/// fail and the gateway refuses to start.
pub const IO_MEMORY_BYTES: usize = 1024 * 1024;

/// io_uring submission queue depth per executor.
pub const RING_DEPTH: usize = 1024;

/// Listen backlog: a reconnect storm of thousands of customers must not be refused.
pub const LISTEN_BACKLOG: i32 = 8192;

const _: () = assert!(CUSTOMER_MAILBOX_MAX as u32 >= WINDOW_MAX / 4);
const _: () = assert!(CORES_MAX <= 64);
const _: () = assert!(
    UNBOUND_READ_BYTES >= UNBOUND_COMMAND_LENGTH_MAX as usize && UNBOUND_READ_BYTES <= READ_SCRATCH_BYTES
);
const _: () =
    assert!(0 < PASSWORD_CHECKS_FAILING_MAX && PASSWORD_CHECKS_FAILING_MAX < PASSWORD_CHECKS_PENDING_MAX);
// A session's mailbox holds, besides its window's submit answers, the query answers and the
// receipts in flight to it.
const _: () =
    assert!(QUERY_ANSWERS_MAX + crate::deliveries::SESSION_DELIVERY_WINDOW as usize <= CUSTOMER_MAILBOX_MAX);
