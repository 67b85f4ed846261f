//! Hard ceilings for every configurable number, in one place.
//!
//! A configuration is checked against these once, at load; the engine may then rely on them (a window
//! never exceeds [`CUSTOMER_WINDOW`]`.max`, a node id fits in a byte with its top bit clear, ...). Each limit says why it is
//! what it is. Names carry their unit last, as the configuration keys do.

/// An inclusive range a configured integer must lie in, with the reason shown to the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Smallest accepted value.
    pub min: u64,
    /// Largest accepted value.
    pub max: u64,
    /// Why the range is what it is: printed after an out-of-range error.
    pub why: &'static str,
}

impl Limit {
    /// Whether `value` lies in `min..=max`.
    #[must_use]
    pub const fn contains(&self, value: u64) -> bool {
        value >= self.min && value <= self.max
    }
}

// ---- [server] ---------------------------------------------------------------------------------------

/// `server.cores`: 0 means "all available"; more than the machine has is clamped at start.
pub const CORES: Limit =
    Limit { min: 0, max: 64, why: "one executor per core; the engine is built for at most 64 (0 = all)" };

/// `server.node_id`: goes into the top byte of every gateway message id, whose top bit stays clear so
/// that every id fits a signed 64-bit integer (Kannel, Cloudhopper and BIGINT columns need it).
pub const NODE_ID: Limit = Limit {
    min: 0,
    max: 127,
    why: "the node id is the top byte of every message id, whose top bit stays clear so that ids fit a \
          signed 64-bit integer (Kannel, Cloudhopper, BIGINT columns); give each node its own",
};

/// `server.max_binds`: every customer bind costs a socket and up to 16 KiB of memory between
/// PDUs; a PDU still arriving also holds what has come of it plus at most
/// `smppgw_codec::RESERVE_AHEAD_BYTES_MAX` (room is not reserved for a whole frame on its header).
pub const SERVER_MAX_BINDS: Limit =
    Limit { min: 1, max: 200_000, why: "each bind holds a socket and up to 16 KiB; 200,000 is ~3 GiB" };

/// `server.window` and `customer.window`: outstanding submits per customer session.
pub const CUSTOMER_WINDOW: Limit = Limit {
    min: 1,
    max: 1_024,
    why: "the in-flight table of every session is sized by it; SMPP clients rarely use more than 100",
};

/// `server.max_command_length`: framing limit for customer sessions.
pub const MAX_COMMAND_LENGTH: Limit = Limit {
    min: 1_024,
    max: 1_048_576,
    why: "a submit_sm with a full 254-octet short_message and common TLVs takes about 500 octets, so a \
          smaller limit closes ordinary sessions; larger frames than 1 MiB are refused to bound buffers",
};

/// `server.enquire_link_interval_ms` and `vendor.enquire_link_interval_ms`.
pub const ENQUIRE_LINK_INTERVAL_MS: Limit = Limit {
    min: 1_000,
    max: 3_600_000,
    why: "under 1 s floods the link with keepalives; NATs drop idle flows long before 1 hour",
};

/// `server.session_timeout_ms`: must also exceed the enquire_link interval (checked at load).
pub const SESSION_TIMEOUT_MS: Limit = Limit {
    min: 2_000,
    max: 86_400_000,
    why: "it must leave room for at least one enquire_link round trip; a day is the longest useful idle",
};

/// `server.response_timeout_ms` and `vendor.response_timeout_ms`.
pub const RESPONSE_TIMEOUT_MS: Limit = Limit {
    min: 100,
    max: 300_000,
    why: "a response faster than 100 ms cannot be relied on over a WAN; past 5 minutes the window stalls",
};

/// `server.bind_timeout_ms`: an unbound connection holds a socket and a slot.
pub const BIND_TIMEOUT_MS: Limit =
    Limit { min: 100, max: 300_000, why: "an unbound connection holds a socket; 5 minutes is plenty" };

/// `server.shutdown_grace_ms`: how long a SIGTERM waits for in-flight submits.
pub const SHUTDOWN_GRACE_MS: Limit =
    Limit { min: 0, max: 600_000, why: "orchestrators kill a process long before 10 minutes" };

/// `server.receipt_ttl_secs`: receipts and id mappings live this long; ids are not reused within it.
pub const RECEIPT_TTL_SECS: Limit = Limit {
    min: 60,
    max: 2_592_000,
    why: "vendors deliver receipts within the validity period (at most days); 30 days bounds the store",
};

/// `server.receipt_store_max`: entries per core in the receipt store.
pub const RECEIPT_STORE_MAX: Limit = Limit {
    min: 1_000,
    max: 100_000_000,
    why: "each entry costs about 0.6 KiB measured with receipts on (0.26 KiB of it preallocated, \
          more with long addresses or ids), per core: 100 million is about 60 GB for each core",
};

/// `server.receipt_queue_max`: receipts held per customer while it has no receiving bind.
pub const RECEIPT_QUEUE_MAX: Limit = Limit {
    min: 1,
    max: 10_000_000,
    why: "receipts queued for an absent customer are held in memory; at least one is kept",
};

/// `server.removed_vendor_drain_ms`: how long a removed vendor's receiving binds wait for its
/// receipts.
pub const REMOVED_VENDOR_DRAIN_MS: Limit = Limit {
    min: 0,
    max: 86_400_000,
    why: "most receipts come within minutes and nearly all within a day; to wait longer, keep the \
          vendor configured and take it off every route",
};

// ---- [[customer]] -----------------------------------------------------------------------------------

/// Number of `[[customer]]` entries in one file (more belong in the control-plane database).
pub const CUSTOMERS: Limit =
    Limit { min: 0, max: 100_000, why: "every customer is held in memory on every core" };

/// `customer.max_binds`.
pub const CUSTOMER_MAX_BINDS: Limit =
    Limit { min: 1, max: 1_024, why: "more binds than 1024 for one account is a misbehaving client" };

/// `customer.throughput` and `vendor.throughput`, per second; 0 = unlimited.
pub const THROUGHPUT_PER_SEC: Limit = Limit {
    min: 0,
    max: 1_000_000,
    why: "the pacer counts in whole messages per second; above a million use 0 (unlimited)",
};

/// `customer.window`: like [`CUSTOMER_WINDOW`] but 0 means "use server.window".
pub const CUSTOMER_WINDOW_OR_DEFAULT: Limit =
    Limit { min: 0, max: CUSTOMER_WINDOW.max, why: CUSTOMER_WINDOW.why };

/// Entries in `customer.allowed_ips`: checked on every bind.
pub const ALLOWED_IPS_LEN_MAX: usize = 1_024;

/// Entries in `customer.number_ranges`.
pub const NUMBER_RANGES_LEN_MAX: usize = 10_000;

/// Length of a `password_hash` string: an argon2 PHC string is about 100 characters.
pub const PASSWORD_HASH_LEN_MAX: usize = 512;

/// Argon2 memory cost accepted in a stored hash, KiB: every bind attempt pays it.
pub const ARGON2_M_COST_KIB_MAX: u32 = 262_144;

/// Argon2 time cost (passes) accepted in a stored hash: every bind attempt pays it.
pub const ARGON2_T_COST_MAX: u32 = 16;

/// Argon2 parallelism accepted in a stored hash: verification runs on the session's core.
pub const ARGON2_P_COST_MAX: u32 = 16;

// ---- [[vendor]] -------------------------------------------------------------------------------------

/// Number of `[[vendor]]` entries.
pub const VENDORS: Limit = Limit { min: 0, max: 1_024, why: "every vendor keeps binds open on this node" };

/// `vendor.binds`: SMPP binds kept up per vendor.
pub const VENDOR_BINDS: Limit =
    Limit { min: 1, max: 256, why: "vendors cap binds per account far below 256" };

/// `vendor.window`: outstanding submits per vendor bind.
pub const VENDOR_WINDOW: Limit = Limit {
    min: 1,
    max: 4_096,
    why: "the in-flight table of every vendor bind is sized by it; 4096 covers long round trips",
};

/// `vendor.reconnect_backoff_min_ms`.
pub const RECONNECT_BACKOFF_MIN_MS: Limit = Limit {
    min: 10,
    max: 600_000,
    why: "under 10 ms a dead vendor is hammered; over 10 minutes a recovered one stays unused",
};

/// `vendor.reconnect_backoff_max_ms`.
pub const RECONNECT_BACKOFF_MAX_MS: Limit = Limit {
    min: 10,
    max: 3_600_000,
    why: "a vendor back after an outage should be used again within the hour",
};

/// `vendor.port`: 0 is not a port one can connect to.
pub const PORT: Limit = Limit { min: 1, max: 65_535, why: "TCP ports are 1..=65535" };

/// `vendor.host`: DNS names are at most 253 characters.
pub const HOST_LEN_MAX: usize = 253;

/// Length of a vendor or route name, and of a brand or campaign id (The Campaign Registry's are 7
/// characters): names go into logs, metrics labels and environment keys.
pub const NAME_LEN_MAX: usize = 64;

// ---- [[route]] --------------------------------------------------------------------------------------

/// Number of `[[route]]` entries.
pub const ROUTES: Limit =
    Limit { min: 0, max: 100_000, why: "every route is held in the routing table of every core" };

/// Entries in `route.vendors`: failover walks this list for every message.
pub const ROUTE_VENDORS: Limit =
    Limit { min: 1, max: 16, why: "a route needs a vendor; failover walks the list per message" };

/// `route.vendors[].priority`.
pub const ROUTE_PRIORITY: Limit =
    Limit { min: 0, max: 1_000, why: "priorities only order vendors; 1000 levels is more than enough" };

/// `route.vendors[].weight`.
pub const ROUTE_WEIGHT: Limit = Limit {
    min: 1,
    max: 1_000,
    why: "a weight is a share among equal-priority vendors; 0 would never be chosen (remove it)",
};

/// Entries in `route.prefixes`, `route.source_prefixes` and `route.customers`.
pub const ROUTE_LIST_LEN_MAX: usize = 10_000;

// ---- [[brand]] and [[campaign]] (US 10DLC) ----------------------------------------------------------

/// Number of `[[brand]]` entries.
pub const BRANDS: Limit =
    Limit { min: 0, max: 100_000, why: "every brand and its daily counter are held in memory on every node" };

/// Number of `[[campaign]]` entries.
pub const CAMPAIGNS: Limit =
    Limit { min: 0, max: 100_000, why: "every campaign and its numbers are held in memory on every node" };

/// `campaign.segments_per_minute`; 0 = no campaign limit.
pub const CAMPAIGN_SEGMENTS_PER_MINUTE: Limit = Limit {
    min: 0,
    max: 60_000_000,
    why: "a million segments per second is the pacer's ceiling; above it use 0 (no limit)",
};

/// `brand.daily_cap_segments`; 0 = no cap.
pub const BRAND_DAILY_CAP_SEGMENTS: Limit = Limit {
    min: 0,
    max: 4_000_000_000,
    why: "a cap above 4 billion segments a day limits nothing a brand sends; use 0 (no cap)",
};

/// Entries in `campaign.source_prefixes`.
pub const CAMPAIGN_SOURCES_LEN_MAX: usize = 10_000;

// ---- SMPP 3.4 field sizes ---------------------------------------------------------------------------

/// system_id: C-Octet String of at most 16 octets including the NUL (SMPP 3.4, 4.1.1).
pub const SYSTEM_ID_LEN_MAX: usize = 15;

/// password: C-Octet String of at most 9 octets including the NUL (SMPP 3.4, 4.1.1).
pub const PASSWORD_LEN_MAX: usize = 8;

/// system_type: C-Octet String of at most 13 octets including the NUL (SMPP 3.4, 4.1.1).
pub const SYSTEM_TYPE_LEN_MAX: usize = 12;

/// destination_addr / source_addr: at most 21 octets including the NUL (SMPP 3.4, 4.4.1), so a
/// prefix of either is at most 20 characters.
pub const ADDRESS_PREFIX_LEN_MAX: usize = 20;

// Relationships between limits, checked when the crate compiles.
const _: () = assert!(SESSION_TIMEOUT_MS.min > ENQUIRE_LINK_INTERVAL_MS.min);
const _: () = assert!(RECONNECT_BACKOFF_MIN_MS.min >= RECONNECT_BACKOFF_MAX_MS.min);
const _: () = assert!(RECONNECT_BACKOFF_MIN_MS.max <= RECONNECT_BACKOFF_MAX_MS.max);
const _: () = assert!(CUSTOMER_MAX_BINDS.max <= SERVER_MAX_BINDS.max);
const _: () = assert!(NODE_ID.max == crate::msgid::NODE_ID_MAX as u64);
const _: () = assert!(PORT.max == u16::MAX as u64);
const _: () = assert!(PASSWORD_LEN_MAX < SYSTEM_ID_LEN_MAX);
// The engine's fixed-window counters hold a window's count in 32 bits.
const _: () = assert!(CAMPAIGN_SEGMENTS_PER_MINUTE.max <= u32::MAX as u64);
const _: () = assert!(BRAND_DAILY_CAP_SEGMENTS.max <= u32::MAX as u64);
const _: () = assert!(CAMPAIGN_SEGMENTS_PER_MINUTE.max == THROUGHPUT_PER_SEC.max * 60);
