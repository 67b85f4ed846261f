//! Every bound of the crate, in one place, each with why it has its value. Units come last in the
//! names. Configurable values are checked once, at start, against these ceilings.

/// Memory glommio registers with io_uring per executor. Its default (10 MiB) exceeds the 8 MiB
/// locked-memory limit of our machines; we use no DMA file IO, so a small pool is enough and lets
/// a simulator, a load generator and a gateway run side by side under that limit.
pub const IO_MEMORY_BYTES: usize = 512 * 1024;

/// Executors (cores) one binary may start: far above what a load test needs, low enough that a
/// typo cannot spawn thousands of threads.
pub const CORES_MAX: usize = 256;

/// Octets asked for per read: enough for about a thousand submit_sm_resp at once, so one read
/// drains a full window of every session on a core.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// A session stops producing (submits, receipts, MO) while this much is waiting to be written;
/// what a slow peer does not read stays bounded.
pub const WRITE_BUFFER_HIGH_BYTES: usize = 1024 * 1024;

/// Largest PDU accepted from a peer; the codec's default covers every legitimate PDU.
pub const MAX_COMMAND_LENGTH: u32 = smppgw_codec::DEFAULT_MAX_COMMAND_LENGTH;

/// Sessions (binds) of one load run.
pub const BINDS_MAX: usize = 10_000;

/// Longest open-model send quantum: beyond this the "fixed rate" would be bursts too coarse to
/// say anything about latency.
pub const SEND_QUANTUM_MAX: std::time::Duration = std::time::Duration::from_millis(10);

/// Outstanding submit_sm per session. SMPP windows in the wild are 1 to a few thousand.
pub const WINDOW_MAX: u32 = 65_536;

/// Outstanding deliver_sm (receipts, MO) per simulator session, default. Like a real SMSC, the
/// simulator waits for deliver_sm_resp before sending more.
pub const SIM_DELIVER_WINDOW_DEFAULT: u32 = 1024;

/// Receipts (and MO) waiting in one simulator core, due or not yet due, across its sessions.
/// Overflow policy: the new receipt is dropped and counted in `receipts_dropped`; the ones already
/// queued keep their order and timing. 4 Mi receipts are about 10 s at 400k/s with their ids.
pub const SIM_RECEIPT_QUEUE_DEFAULT: usize = 4 * 1024 * 1024;
/// Ceiling for `--receipt-queue-max`.
pub const SIM_RECEIPT_QUEUE_MAX: usize = 64 * 1024 * 1024;

/// Responses held back by `--resp-latency-ms` per session; above it the submit is refused at once
/// with ESME_RMSGQFUL, without id or receipt (a peer ignoring its window must not grow us without
/// bound).
pub const SIM_DELAYED_RESP_MAX: usize = 65_536;

/// Receipts forwarded between simulator cores (receipt for a transmitter whose receiver is bound
/// on another core); a full channel drops and counts.
pub const SIM_FORWARD_CHANNEL: usize = 64 * 1024;

/// submit_sm kept by the simulator's record mode, at most.
pub const RECORD_MAX: usize = 1_000_000;

/// Message ids awaiting their receipt in one load-generator core. Past it, new messages are sent
/// but not tracked (`receipts_untracked`), so memory stays bounded on endless runs.
pub const LOAD_AWAITING_RECEIPTS_MAX: usize = 16 * 1024 * 1024;

/// Receipts parked on a load-generator core because their id is not (yet) awaited there: arrived
/// before the submit_sm_resp, strays, duplicates. Past it they count as unmatched at once.
pub const LOAD_EARLY_RECEIPTS_MAX: usize = 1024 * 1024;

/// Ids and receipts on their way to the load-generator core that owns the id (each core's inbox,
/// emptied every control tick of 10 ms): 32 Ki is about 3 Mi a second per core, several times
/// what a core receives; an inbox allocates it up front (about 3 MiB). When it is full the item
/// stays on the core where it arrived and is matched when the report is merged.
pub const LOAD_ROUTE_CHANNEL: usize = 32 * 1024;

/// Latency histograms record 1 µs to one hour with 3 significant digits; slower is clamped.
pub const LATENCY_MAX_US: u64 = 3_600_000_000;

/// Distinct pre-built message variants per load core: enough for a mix of lengths and encodings,
/// small enough to stay in cache.
pub const TEMPLATE_VARIANTS_MAX: usize = 64;

/// Reconnections of one load session after the server closed it.
pub const RECONNECTS_MAX_DEFAULT: u32 = 100;

/// Progress messages queued from cores to the printer; a slow terminal drops lines, never blocks.
pub const PROGRESS_CHANNEL: usize = 256;

/// Size of the credentials file the simulator reads.
pub const CREDENTIALS_FILE_MAX_BYTES: u64 = 1024 * 1024;

/// Accounts in the simulator's credentials.
pub const ACCOUNTS_MAX: usize = 4096;

// Relationships the code relies on.
const _: () = assert!(READ_CHUNK_BYTES as u64 >= MAX_COMMAND_LENGTH as u64 / 2);
const _: () = assert!(WRITE_BUFFER_HIGH_BYTES > MAX_COMMAND_LENGTH as usize);
const _: () = assert!(WINDOW_MAX.is_power_of_two());
const _: () = assert!(SIM_RECEIPT_QUEUE_DEFAULT <= SIM_RECEIPT_QUEUE_MAX);
