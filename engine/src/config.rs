//! The gateway's configuration: a TOML file (or the embedded default) plus environment overrides,
//! turned into a validated [`Config`] once at start.
//!
//! This module owns the schema, its defaults, the hard ceilings of every configurable number
//! ([`limits`]), password hashing for customer credentials, and error reporting that points at the
//! line of the offending item (`FILE:LINE: message`, every error at once). It never reads the
//! process environment or the file system on its own except in [`check_config_file`],
//! [`check_node_config_file`] and [`process_env`], which the binary calls; everything else takes its inputs as arguments so that
//! tests stay hermetic. A `Config` that loaded is valid: the engine may rely on the limits without
//! checking them again.
//!
//! Loading goes: parse the TOML keeping the span of every key and value; apply `SMPPGW__...`
//! environment overrides to that document; check its structure against the schema (unknown or
//! missing fields, types, choices, addresses, CIDRs); deserialize; then validate the meaning
//! (limits, names, duplicates, references between routes, vendors and customers, and between
//! campaigns and brands).

mod cidr;
mod env;
mod error;
pub mod limits;
mod password;
mod schema;
mod validate;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};

pub use cidr::{Cidr, CidrError};
pub use error::{ConfigError, ConfigErrors, ErrorKind, Location};
pub use password::{HASH_M_COST_KIB, HASH_P_COST, HASH_T_COST, hash_password, verify_password};

/// The embedded default configuration, used when `smppgw` runs with no arguments.
///
/// It listens on loopback only (127.0.0.1:2775): its one customer, `demo`, has the password `demo`,
/// which is public. Its one vendor, `sim`, is `smppgw-sim` on 127.0.0.1:2776.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("config/default.toml");

/// Source name used in errors about [`DEFAULT_CONFIG_TOML`].
pub const DEFAULT_SOURCE_NAME: &str = "<embedded default>";

/// Prefix of the environment variables that override settings (`SMPPGW__SERVER__LISTEN`, ...).
pub const ENV_PREFIX: &str = "SMPPGW__";

/// Default values of every optional setting.
pub mod defaults {
    use super::{Ipv4Addr, SocketAddr, SocketAddrV4};
    use crate::config::limits;

    /// `server.listen`: loopback, since the embedded default's demo password is public.
    pub const LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 2775));
    /// `server.cores`: all available.
    pub const CORES: u32 = 0;
    /// `server.node_id`.
    pub const NODE_ID: u32 = 0;
    /// `server.system_id`.
    pub const SYSTEM_ID: &str = "smppgw";
    /// `server.max_binds`.
    pub const MAX_BINDS: u32 = 10_000;
    /// `server.window`.
    pub const WINDOW: u32 = 64;
    /// `server.max_command_length`: a submit_sm with a full message_payload fits.
    pub const MAX_COMMAND_LENGTH: u32 = 70_000;
    /// `server.enquire_link_interval_ms` and `vendor.enquire_link_interval_ms`.
    pub const ENQUIRE_LINK_INTERVAL_MS: u32 = 30_000;
    /// `server.session_timeout_ms`: three missed enquire_link intervals.
    pub const SESSION_TIMEOUT_MS: u32 = 90_000;
    /// `server.response_timeout_ms` and `vendor.response_timeout_ms`.
    pub const RESPONSE_TIMEOUT_MS: u32 = 10_000;
    /// `server.bind_timeout_ms`.
    pub const BIND_TIMEOUT_MS: u32 = 10_000;
    /// `server.shutdown_grace_ms`.
    pub const SHUTDOWN_GRACE_MS: u32 = 10_000;
    /// `server.receipt_ttl_secs`: 7 days.
    pub const RECEIPT_TTL_SECS: u32 = 604_800;
    /// `server.receipt_store_max`.
    pub const RECEIPT_STORE_MAX: u32 = 2_000_000;
    /// `server.receipt_queue_max`.
    pub const RECEIPT_QUEUE_MAX: u32 = 100_000;
    /// `server.http_listen`.
    pub const HTTP_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));
    /// `server.receipt_store_prealloc`: take the store's memory as messages arrive.
    pub const RECEIPT_STORE_PREALLOC: bool = false;
    /// `server.unknown_outcome_failover`: never risk sending a message twice.
    pub const UNKNOWN_OUTCOME_FAILOVER: bool = false;
    /// `server.removed_vendor_drain_ms`: 10 minutes, within which most receipts come.
    pub const REMOVED_VENDOR_DRAIN_MS: u32 = 600_000;
    /// `customer.max_binds`.
    pub const CUSTOMER_MAX_BINDS: u32 = 16;
    /// `vendor.binds`.
    pub const VENDOR_BINDS: u32 = 2;
    /// `vendor.window`.
    pub const VENDOR_WINDOW: u32 = 64;
    /// `vendor.reconnect_backoff_min_ms`.
    pub const RECONNECT_BACKOFF_MIN_MS: u32 = 500;
    /// `vendor.reconnect_backoff_max_ms`.
    pub const RECONNECT_BACKOFF_MAX_MS: u32 = 30_000;
    /// Weight of a route vendor given without one.
    pub const ROUTE_WEIGHT: u32 = 1;

    const fn within(value: u32, limit: limits::Limit) -> bool {
        limit.contains(value as u64)
    }

    // Every default lies within its limit.
    const _: () = assert!(within(CORES, limits::CORES));
    const _: () = assert!(within(NODE_ID, limits::NODE_ID));
    const _: () = assert!(within(MAX_BINDS, limits::SERVER_MAX_BINDS));
    const _: () = assert!(within(WINDOW, limits::CUSTOMER_WINDOW));
    const _: () = assert!(within(MAX_COMMAND_LENGTH, limits::MAX_COMMAND_LENGTH));
    const _: () = assert!(within(ENQUIRE_LINK_INTERVAL_MS, limits::ENQUIRE_LINK_INTERVAL_MS));
    const _: () = assert!(within(SESSION_TIMEOUT_MS, limits::SESSION_TIMEOUT_MS));
    const _: () = assert!(SESSION_TIMEOUT_MS > ENQUIRE_LINK_INTERVAL_MS);
    const _: () = assert!(within(RESPONSE_TIMEOUT_MS, limits::RESPONSE_TIMEOUT_MS));
    const _: () = assert!(within(BIND_TIMEOUT_MS, limits::BIND_TIMEOUT_MS));
    const _: () = assert!(within(SHUTDOWN_GRACE_MS, limits::SHUTDOWN_GRACE_MS));
    const _: () = assert!(within(RECEIPT_TTL_SECS, limits::RECEIPT_TTL_SECS));
    const _: () = assert!(within(RECEIPT_STORE_MAX, limits::RECEIPT_STORE_MAX));
    const _: () = assert!(within(RECEIPT_QUEUE_MAX, limits::RECEIPT_QUEUE_MAX));
    const _: () = assert!(within(REMOVED_VENDOR_DRAIN_MS, limits::REMOVED_VENDOR_DRAIN_MS));
    const _: () = assert!(within(CUSTOMER_MAX_BINDS, limits::CUSTOMER_MAX_BINDS));
    const _: () = assert!(within(VENDOR_BINDS, limits::VENDOR_BINDS));
    const _: () = assert!(within(VENDOR_WINDOW, limits::VENDOR_WINDOW));
    const _: () = assert!(within(RECONNECT_BACKOFF_MIN_MS, limits::RECONNECT_BACKOFF_MIN_MS));
    const _: () = assert!(within(RECONNECT_BACKOFF_MAX_MS, limits::RECONNECT_BACKOFF_MAX_MS));
    const _: () = assert!(RECONNECT_BACKOFF_MIN_MS <= RECONNECT_BACKOFF_MAX_MS);
    const _: () = assert!(within(ROUTE_WEIGHT, limits::ROUTE_WEIGHT));
}

/// Defines a string-choice enum: its serde spelling, `as_str`, `Display`, the list of spellings
/// (`NAMES`, which the schema check and error messages use) and its default.
macro_rules! choice {
    (
        $(#[$meta:meta])*
        $name:ident default $default:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant, )+
        }

        impl $name {
            /// Every accepted spelling, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The spelling used in the configuration.
            #[must_use]
            pub fn as_str(self) -> &'static str {
                match self { $( Self::$variant => $text, )+ }
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::$default
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

choice! {
    /// A bind type a customer may use.
    BindType default Transceiver {
        /// bind_transmitter: submits only.
        Transmitter = "transmitter",
        /// bind_receiver: receipts and MO only.
        Receiver = "receiver",
        /// bind_transceiver: both.
        Transceiver = "transceiver",
    }
}

choice! {
    /// How the gateway binds to a vendor.
    VendorBindType default Transceiver {
        /// Transmitter binds only (the vendor sends no receipts on them).
        Transmitter = "transmitter",
        /// Transceiver binds.
        Transceiver = "transceiver",
        /// A transmitter plus a receiver bind per bind slot.
        TransmitterReceiver = "transmitter_receiver",
    }
}

choice! {
    /// The format of the message ids the gateway gives a customer (at most 20 characters).
    IdFormat default Hex {
        /// Lower-case hexadecimal.
        Hex = "hex",
        /// Decimal digits.
        Decimal = "decimal",
    }
}

choice! {
    /// How a vendor's message ids look: a hint for matching its receipts to submits.
    VendorIdFormat default Auto {
        /// Accept any form; try the others in turn.
        Auto = "auto",
        /// Hexadecimal (receipts may carry it in decimal, as SMPP 3.4 appendix B allows).
        Hex = "hex",
        /// Decimal digits.
        Decimal = "decimal",
        /// A UUID.
        Uuid = "uuid",
    }
}

choice! {
    /// The PDU that carries a delivery receipt to a customer.
    ReceiptPdu default DeliverSm {
        /// deliver_sm with esm_class receipt bits.
        DeliverSm = "deliver_sm",
        /// data_sm.
        DataSm = "data_sm",
    }
}

choice! {
    /// For a long (multi-part) message, which parts ask the vendor for a receipt.
    ReceiptParts default All {
        /// Every part (the customer gets one receipt per part).
        All = "all",
        /// Only the last part.
        Last = "last",
    }
}

impl BindType {
    /// Every bind type: the default of `customer.bind_types`.
    pub const ALL: [BindType; 3] = [BindType::Transmitter, BindType::Receiver, BindType::Transceiver];
}

/// A whole gateway configuration. Only values that passed validation are handed out by the loaders.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`: this node.
    #[serde(default)]
    pub server: ServerConfig,
    /// `[[customer]]`: accounts that bind to us.
    #[serde(default, rename = "customer")]
    pub customers: Vec<CustomerConfig>,
    /// `[[vendor]]`: SMSCs we bind to.
    #[serde(default, rename = "vendor")]
    pub vendors: Vec<VendorConfig>,
    /// `[[route]]`: which vendors carry which destinations.
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    /// `[[brand]]`: US 10DLC brands and their daily caps.
    #[serde(default, rename = "brand")]
    pub brands: Vec<BrandConfig>,
    /// `[[campaign]]`: US 10DLC campaigns, found from a message's source number.
    #[serde(default, rename = "campaign")]
    pub campaigns: Vec<CampaignConfig>,
}

/// `[server]`: settings of this gateway node. Every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// SMPP listen address.
    pub listen: SocketAddr,
    /// Executor cores; 0 = all available (more than available is clamped at start; at most 64).
    pub cores: u32,
    /// 0..=127, unique per gateway node: it goes into message ids (whose top bit stays clear).
    pub node_id: u32,
    /// Our system_id in bind responses.
    pub system_id: String,
    /// All customer binds on this node.
    pub max_binds: u32,
    /// Default customer window (outstanding submits per session).
    pub window: u32,
    /// Framing limit in bytes (1_024..=1_048_576).
    pub max_command_length: u32,
    /// Idle time before we send enquire_link to a customer.
    pub enquire_link_interval_ms: u32,
    /// No traffic at all for this long: close the session.
    pub session_timeout_ms: u32,
    /// Our requests to customers (deliver_sm) time out after this.
    pub response_timeout_ms: u32,
    /// A connection must bind within this.
    pub bind_timeout_ms: u32,
    /// Drain deadline on SIGTERM.
    pub shutdown_grace_ms: u32,
    /// Receipt store and id map lifetime; message ids are not reused within it.
    pub receipt_ttl_secs: u32,
    /// Receipt store entries per core.
    pub receipt_store_max: u32,
    /// Allocate and touch each core's whole receipt store at start (`receipt_store_max` records,
    /// about 300 bytes each) instead of as messages arrive: no page faults or index rehashing on
    /// the submit path while the store fills, and a resident size that is known from the start.
    pub receipt_store_prealloc: bool,
    /// Receipts queued per customer while it has no receiving bind.
    pub receipt_queue_max: u32,
    /// Control-plane HTTP API listen address.
    pub http_listen: SocketAddr,
    /// When a vendor's outcome for a submit is unknown (response timeout, or the connection dropped
    /// with the submit in flight): `false` (default) answers the customer with an error and never
    /// retries elsewhere, so a message is never delivered twice; `true` fails over to the next
    /// vendor, trading possible duplicates for fewer failures.
    pub unknown_outcome_failover: bool,
    /// How long the receiving binds of a vendor a reload removed stay bound for the receipts and
    /// MO it still sends (taking nothing new), before they unbind; 0: they unbind once nothing
    /// is in flight.
    pub removed_vendor_drain_ms: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: defaults::LISTEN,
            cores: defaults::CORES,
            node_id: defaults::NODE_ID,
            system_id: defaults::SYSTEM_ID.to_owned(),
            max_binds: defaults::MAX_BINDS,
            window: defaults::WINDOW,
            max_command_length: defaults::MAX_COMMAND_LENGTH,
            enquire_link_interval_ms: defaults::ENQUIRE_LINK_INTERVAL_MS,
            session_timeout_ms: defaults::SESSION_TIMEOUT_MS,
            response_timeout_ms: defaults::RESPONSE_TIMEOUT_MS,
            bind_timeout_ms: defaults::BIND_TIMEOUT_MS,
            shutdown_grace_ms: defaults::SHUTDOWN_GRACE_MS,
            receipt_ttl_secs: defaults::RECEIPT_TTL_SECS,
            receipt_store_max: defaults::RECEIPT_STORE_MAX,
            receipt_store_prealloc: defaults::RECEIPT_STORE_PREALLOC,
            receipt_queue_max: defaults::RECEIPT_QUEUE_MAX,
            http_listen: defaults::HTTP_LISTEN,
            unknown_outcome_failover: defaults::UNKNOWN_OUTCOME_FAILOVER,
            removed_vendor_drain_ms: defaults::REMOVED_VENDOR_DRAIN_MS,
        }
    }
}

impl ServerConfig {
    /// Executor cores to run on a machine with `available` cores: `cores`, or all when it is 0,
    /// never more than available and never fewer than one.
    #[must_use]
    pub fn effective_cores(&self, available: usize) -> usize {
        let available = available.max(1);
        match usize::try_from(self.cores) {
            Ok(0) | Err(_) => available,
            Ok(n) => n.min(available),
        }
    }

    /// The node id as the byte that goes into message ids (validation keeps it within 0..=127).
    #[must_use]
    pub fn node_id_byte(&self) -> u8 {
        u8::try_from(self.node_id).unwrap_or(u8::MAX)
    }
}

/// `[[customer]]`: an account that binds to the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerConfig {
    /// Required, 1..=15 printable ASCII characters, unique (ignoring case).
    pub system_id: String,
    /// Required: an argon2 PHC string, as printed by `smppgw hash-password`.
    pub password_hash: String,
    /// Allowed bind types (default: all).
    #[serde(default = "all_bind_types")]
    pub bind_types: Vec<BindType>,
    /// Source IPs allowed to bind; empty = any.
    #[serde(default)]
    pub allowed_ips: Vec<Cidr>,
    /// Concurrent binds of this customer.
    #[serde(default = "default_customer_max_binds")]
    pub max_binds: u32,
    /// Segments per second over all its binds; 0 = unlimited.
    #[serde(default)]
    pub throughput: u32,
    /// Window per session; 0 = `server.window`.
    #[serde(default)]
    pub window: u32,
    /// Format of the message ids we give it.
    #[serde(default)]
    pub id_format: IdFormat,
    /// PDU that carries its receipts.
    #[serde(default)]
    pub receipt_pdu: ReceiptPdu,
    /// For long messages, which parts ask the vendor for a receipt.
    #[serde(default)]
    pub receipt_parts: ReceiptParts,
    /// MO routing: destination prefixes that belong to this customer.
    #[serde(default)]
    pub number_ranges: Vec<String>,
}

fn all_bind_types() -> Vec<BindType> {
    BindType::ALL.to_vec()
}

fn default_customer_max_binds() -> u32 {
    defaults::CUSTOMER_MAX_BINDS
}

impl CustomerConfig {
    /// A customer with the given credentials and every other field at its default.
    #[must_use]
    pub fn new(system_id: impl Into<String>, password_hash: impl Into<String>) -> Self {
        Self {
            system_id: system_id.into(),
            password_hash: password_hash.into(),
            bind_types: all_bind_types(),
            allowed_ips: Vec::new(),
            max_binds: defaults::CUSTOMER_MAX_BINDS,
            throughput: 0,
            window: 0,
            id_format: IdFormat::default(),
            receipt_pdu: ReceiptPdu::default(),
            receipt_parts: ReceiptParts::default(),
            number_ranges: Vec::new(),
        }
    }

    /// The window of its sessions: its own, or `server_window` when it has none (0).
    #[must_use]
    pub fn effective_window(&self, server_window: u32) -> u32 {
        if self.window == 0 { server_window } else { self.window }
    }

    /// Whether it may bind as `bind_type`.
    #[must_use]
    pub fn allows_bind(&self, bind_type: BindType) -> bool {
        self.bind_types.contains(&bind_type)
    }

    /// Whether a connection from `peer` may bind as this customer (an empty list allows any).
    #[must_use]
    pub fn allows_ip(&self, peer: IpAddr) -> bool {
        self.allowed_ips.is_empty() || self.allowed_ips.iter().any(|net| net.contains(peer))
    }
}

/// `[[vendor]]`: an SMSC the gateway binds to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VendorConfig {
    /// Required, unique (ignoring case), 1..=64 of `[A-Za-z0-9_-]`.
    pub name: String,
    /// Required: host name or IP address.
    pub host: String,
    /// Required: TCP port.
    pub port: u16,
    /// Required: our system_id at the vendor.
    pub system_id: String,
    /// Required, at most 8 characters; plain text since we must send it.
    pub password: String,
    /// system_type sent in binds.
    #[serde(default)]
    pub system_type: String,
    /// Number of SMPP binds kept up (1..=256).
    #[serde(default = "default_vendor_binds")]
    pub binds: u32,
    /// How we bind.
    #[serde(default)]
    pub bind_type: VendorBindType,
    /// Outstanding submits per bind.
    #[serde(default = "default_vendor_window")]
    pub window: u32,
    /// Messages per second over all binds; 0 = unlimited.
    #[serde(default)]
    pub throughput: u32,
    /// Idle time before we send enquire_link.
    #[serde(default = "default_enquire_link_interval_ms")]
    pub enquire_link_interval_ms: u32,
    /// Our requests time out after this.
    #[serde(default = "default_response_timeout_ms")]
    pub response_timeout_ms: u32,
    /// First reconnect delay (doubled with jitter on each failure).
    #[serde(default = "default_reconnect_backoff_min_ms")]
    pub reconnect_backoff_min_ms: u32,
    /// Longest reconnect delay.
    #[serde(default = "default_reconnect_backoff_max_ms")]
    pub reconnect_backoff_max_ms: u32,
    /// How its message ids look.
    #[serde(default)]
    pub id_format: VendorIdFormat,
}

fn default_vendor_binds() -> u32 {
    defaults::VENDOR_BINDS
}
fn default_vendor_window() -> u32 {
    defaults::VENDOR_WINDOW
}
fn default_enquire_link_interval_ms() -> u32 {
    defaults::ENQUIRE_LINK_INTERVAL_MS
}
fn default_response_timeout_ms() -> u32 {
    defaults::RESPONSE_TIMEOUT_MS
}
fn default_reconnect_backoff_min_ms() -> u32 {
    defaults::RECONNECT_BACKOFF_MIN_MS
}
fn default_reconnect_backoff_max_ms() -> u32 {
    defaults::RECONNECT_BACKOFF_MAX_MS
}

impl VendorConfig {
    /// A vendor with the required fields and every other at its default.
    #[must_use]
    pub fn new(
        name: impl Into<String>,
        host: impl Into<String>,
        port: u16,
        system_id: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            host: host.into(),
            port,
            system_id: system_id.into(),
            password: password.into(),
            system_type: String::new(),
            binds: defaults::VENDOR_BINDS,
            bind_type: VendorBindType::default(),
            window: defaults::VENDOR_WINDOW,
            throughput: 0,
            enquire_link_interval_ms: defaults::ENQUIRE_LINK_INTERVAL_MS,
            response_timeout_ms: defaults::RESPONSE_TIMEOUT_MS,
            reconnect_backoff_min_ms: defaults::RECONNECT_BACKOFF_MIN_MS,
            reconnect_backoff_max_ms: defaults::RECONNECT_BACKOFF_MAX_MS,
            id_format: VendorIdFormat::default(),
        }
    }
}

/// `[[route]]`: destinations (optionally only for some customers or sources) and the vendors that
/// carry them, in failover order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Required, unique (ignoring case), 1..=64 of `[A-Za-z0-9_-]`.
    pub name: String,
    /// Destination prefixes: digits after an optional '+'; "" matches every destination.
    #[serde(default = "default_prefixes")]
    pub prefixes: Vec<String>,
    /// Only for these customers (system_ids); empty = all.
    #[serde(default)]
    pub customers: Vec<String>,
    /// Only for these source-address prefixes; empty = all.
    #[serde(default)]
    pub source_prefixes: Vec<String>,
    /// Vendors by priority (lowest first); equal priorities share traffic by weight.
    #[serde(default, deserialize_with = "deserialize_route_vendors")]
    pub vendors: Vec<RouteVendor>,
}

fn default_prefixes() -> Vec<String> {
    vec![String::new()]
}

impl RouteConfig {
    /// A route for every destination to `vendors` in failover order.
    #[must_use]
    pub fn new(name: impl Into<String>, vendors: &[&str]) -> Self {
        Self {
            name: name.into(),
            prefixes: default_prefixes(),
            customers: Vec::new(),
            source_prefixes: Vec::new(),
            vendors: vendors
                .iter()
                .enumerate()
                .map(|(i, name)| RouteVendor::at_position(name, i, None, None))
                .collect(),
        }
    }
}

/// One vendor of a route, normalised from either `"name"` (priority = its position in the list,
/// weight 1) or `{ name = "a", priority = 0, weight = 3 }` (missing parts default the same way).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteVendor {
    /// A vendor's name.
    pub name: String,
    /// Lower is tried first; vendors of equal priority share traffic by weight.
    pub priority: u32,
    /// Share of traffic among the vendors of its priority.
    pub weight: u32,
}

impl RouteVendor {
    fn at_position(name: &str, position: usize, priority: Option<u32>, weight: Option<u32>) -> Self {
        Self {
            name: name.to_owned(),
            priority: priority.unwrap_or_else(|| u32::try_from(position).unwrap_or(u32::MAX)),
            weight: weight.unwrap_or(defaults::ROUTE_WEIGHT),
        }
    }
}

/// The two spellings of a route vendor in the file.
#[derive(Deserialize)]
#[serde(untagged)]
enum RouteVendorEntry {
    Name(String),
    Table(RouteVendorTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteVendorTable {
    name: String,
    priority: Option<u32>,
    weight: Option<u32>,
}

fn deserialize_route_vendors<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<RouteVendor>, D::Error> {
    let entries = Vec::<RouteVendorEntry>::deserialize(d)?;
    Ok(entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| match entry {
            RouteVendorEntry::Name(name) => RouteVendor::at_position(&name, i, None, None),
            RouteVendorEntry::Table(t) => RouteVendor::at_position(&t.name, i, t.priority, t.weight),
        })
        .collect())
}

/// `[[brand]]`: a US 10DLC brand (as registered with The Campaign Registry). Its campaigns share
/// its daily cap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrandConfig {
    /// Required, unique (ignoring case), 1..=64 of `[A-Za-z0-9_-]`.
    pub brand_id: String,
    /// Segments per UTC day over all campaigns of the brand; 0 = no cap.
    #[serde(default)]
    pub daily_cap_segments: u32,
}

impl BrandConfig {
    /// A brand with this id and daily cap (0 = none).
    #[must_use]
    pub fn new(brand_id: impl Into<String>, daily_cap_segments: u32) -> Self {
        Self { brand_id: brand_id.into(), daily_cap_segments }
    }
}

/// `[[campaign]]`: a US 10DLC campaign. A submit whose source_addr starts with one of its source
/// prefixes (the longest match over all campaigns wins) counts against its rate and its brand's cap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignConfig {
    /// Required, unique (ignoring case), 1..=64 of `[A-Za-z0-9_-]`.
    pub campaign_id: String,
    /// Required: the `brand_id` of a `[[brand]]`.
    pub brand_id: String,
    /// Segments per UTC minute over all its numbers; 0 = no campaign limit.
    #[serde(default)]
    pub segments_per_minute: u32,
    /// Source numbers, or prefixes of them: digits after an optional '+'. Each belongs to one
    /// campaign.
    #[serde(default)]
    pub source_prefixes: Vec<String>,
}

impl CampaignConfig {
    /// A campaign of `brand_id` with no limit and no numbers.
    #[must_use]
    pub fn new(campaign_id: impl Into<String>, brand_id: impl Into<String>) -> Self {
        Self {
            campaign_id: campaign_id.into(),
            brand_id: brand_id.into(),
            segments_per_minute: 0,
            source_prefixes: Vec::new(),
        }
    }
}

impl Config {
    /// Parses and validates a TOML document, with no environment overrides.
    ///
    /// # Errors
    /// Every problem found, each with the line it is about (see [`ConfigErrors`]).
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<Config, ConfigErrors> {
        Self::load(text, source_name, std::iter::empty())
    }

    /// Parses a TOML document, applies environment overrides, and validates the result.
    ///
    /// `env` is a list of (name, value) pairs, normally [`process_env`]; only names starting with
    /// [`ENV_PREFIX`] (`SMPPGW__`, any case) are used, the rest ignored. Forms:
    /// `SMPPGW__SERVER__<FIELD>`, `SMPPGW__CUSTOMER__<SYSTEM_ID>__<FIELD>`,
    /// `SMPPGW__VENDOR__<NAME>__<FIELD>`, `SMPPGW__ROUTE__<NAME>__<FIELD>`,
    /// `SMPPGW__BRAND__<BRAND_ID>__<FIELD>`, `SMPPGW__CAMPAIGN__<CAMPAIGN_ID>__<FIELD>`. Names and fields are
    /// case-insensitive and a `_` in the variable also matches a `-` in an item's name. Numbers and
    /// booleans are parsed per the field's type; lists are comma-separated (`a,b`) or a TOML array
    /// (`[{ name = "a", weight = 3 }, "b"]`). A variable naming an unknown setting or item is an
    /// error naming the variable.
    ///
    /// # Errors
    /// Every problem found, each with its line or environment variable (see [`ConfigErrors`]).
    pub fn load(
        text: &str,
        source_name: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigErrors> {
        let mut env: Vec<(String, String)> =
            env.into_iter().filter(|(name, _)| env::is_override(name)).collect();
        env.sort();
        load_with(text, source_name, &env, None).map_err(|errors| ConfigErrors::new(source_name, errors))
    }

    /// Like [`Config::load`], for the node that is to run the configuration: also checks the rules
    /// that depend on how the node is started. Today one: without an admin token for the HTTP API
    /// (`admin_token` false), `server.http_listen` must be a loopback address. Its errors point at
    /// their line (or variable) and come with every other error, as the loader's own do.
    ///
    /// # Errors
    /// Every problem found, each with its line or environment variable (see [`ConfigErrors`]).
    pub fn load_for_node(
        text: &str,
        source_name: &str,
        env: impl IntoIterator<Item = (String, String)>,
        admin_token: bool,
    ) -> Result<Config, ConfigErrors> {
        let mut env: Vec<(String, String)> =
            env.into_iter().filter(|(name, _)| env::is_override(name)).collect();
        env.sort();
        load_with(text, source_name, &env, Some(admin_token))
            .map_err(|errors| ConfigErrors::new(source_name, errors))
    }

    /// The embedded default configuration ([`DEFAULT_CONFIG_TOML`]), without environment overrides.
    ///
    /// # Panics
    /// Never: the embedded default is checked by the tests.
    #[must_use]
    pub fn embedded_default() -> Config {
        Self::from_toml_str(DEFAULT_CONFIG_TOML, DEFAULT_SOURCE_NAME)
            .unwrap_or_else(|e| panic!("the embedded default config is invalid:\n{e}"))
    }

    /// Validates a configuration built in code (the loaders already do this). Errors carry no line.
    ///
    /// # Errors
    /// Every problem found.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let errors: Vec<ConfigError> = validate::validate(self)
            .into_iter()
            .map(|issue| ConfigError::new(Location::Whole, issue.kind, issue.message))
            .collect();
        if errors.is_empty() { Ok(()) } else { Err(ConfigErrors::new("<config>", errors)) }
    }

    /// The customer with this system_id.
    #[must_use]
    pub fn customer(&self, system_id: &str) -> Option<&CustomerConfig> {
        self.customers.iter().find(|c| c.system_id == system_id)
    }

    /// The vendor with this name.
    #[must_use]
    pub fn vendor(&self, name: &str) -> Option<&VendorConfig> {
        self.vendors.iter().find(|v| v.name == name)
    }

    /// The route with this name.
    #[must_use]
    pub fn route(&self, name: &str) -> Option<&RouteConfig> {
        self.routes.iter().find(|r| r.name == name)
    }

    /// The brand with this id.
    #[must_use]
    pub fn brand(&self, brand_id: &str) -> Option<&BrandConfig> {
        self.brands.iter().find(|b| b.brand_id == brand_id)
    }

    /// The campaign with this id.
    #[must_use]
    pub fn campaign(&self, campaign_id: &str) -> Option<&CampaignConfig> {
        self.campaigns.iter().find(|c| c.campaign_id == campaign_id)
    }
}

/// Maps byte offsets of the document (and of the environment overrides spliced into it) to lines.
struct Locator<'a> {
    line_starts: Vec<usize>,
    text: &'a str,
    /// Spans at or past this offset belong to environment override `span - env_base`.
    env_base: usize,
    env: &'a [(String, String)],
}

impl<'a> Locator<'a> {
    fn new(text: &'a str, env: &'a [(String, String)]) -> Self {
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        Self { line_starts, text, env_base: env::span_base(text), env }
    }

    fn line_of(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= offset).max(1)
    }

    fn location(&self, offset: usize) -> Location {
        if offset >= self.env_base {
            return match self.env.get(offset - self.env_base) {
                Some((name, _)) => Location::Env(name.clone()),
                None => Location::Whole,
            };
        }
        Location::Line(self.line_of(offset))
    }

    fn line_column(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let line = self.line_of(offset);
        let start = self.line_starts.get(line - 1).copied().unwrap_or(0);
        let column = self.text.get(start..offset).map_or(1, |s| s.chars().count() + 1);
        Location::LineColumn { line, column }
    }
}

/// Loads `text`; with `admin_token` (whether the node has one), also checks the node's rules
/// ([`validate::node`]).
fn load_with(
    text: &str,
    source_name: &str,
    env: &[(String, String)],
    admin_token: Option<bool>,
) -> Result<Config, Vec<ConfigError>> {
    let locator = Locator::new(text, env);

    // Stage 1: syntax. Nothing else can be trusted in a document that does not parse.
    let (mut doc, syntax) = toml::de::DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        return Err(syntax
            .iter()
            .map(|e| {
                let location = e.span().map_or(Location::Whole, |span| locator.line_column(span.start));
                ConfigError::new(location, ErrorKind::Syntax, e.message().trim_end())
            })
            .collect());
    }

    // Stage 2: environment overrides and structure. A problem confined to one field drops that
    // field and loading goes on, so that one typo does not hide every other mistake.
    let mut problems = Vec::new();
    env::apply(&mut doc, env, locator.env_base, &mut problems);
    let spans = schema::check(doc.get_ref(), &mut problems);
    let mut errors: Vec<ConfigError> = problems
        .iter()
        .map(|p| ConfigError::new(locator.location(p.span), p.kind.clone(), p.message.clone()))
        .collect();
    if problems.iter().any(|p| p.fix == schema::Fix::Stop) {
        return Err(errors);
    }
    let dropped = schema::drop_fields(doc.get_mut(), &problems);
    let config = match Config::deserialize(toml::de::Deserializer::from(doc)) {
        Ok(config) => config,
        Err(e) => {
            // The structure check should have caught it; report serde's own words.
            let location = e.span().map_or(Location::Whole, |span| locator.location(span.start));
            let message = format!("{} (while reading {source_name})", e.message().trim_end());
            errors.push(ConfigError::new(location, ErrorKind::Schema, message));
            return Err(errors);
        }
    };

    // Stage 3: meaning.
    let field_of = |path: &schema::Path| schema::Path { elem: None, ..*path };
    let node_issues = admin_token.map(|token| validate::node(&config, token)).unwrap_or_default();
    let issues: Vec<validate::Issue> = validate::validate(&config)
        .into_iter()
        .chain(node_issues)
        .filter(|issue| {
            // About a dropped field, or a clash with one (its stand-in is no value the file set).
            let about_dropped = |path: &schema::Path| dropped.contains(&field_of(path));
            !about_dropped(&issue.path)
                && !issue.also.as_ref().is_some_and(about_dropped)
                && !issue.first.as_ref().is_some_and(about_dropped)
        })
        .collect();
    if issues.is_empty() && errors.is_empty() {
        return Ok(config);
    }
    let at = |span: Option<usize>| span.map_or(Location::Whole, |span| locator.location(span));
    errors.extend(issues.into_iter().map(|issue| {
        // The field itself; else the related field the user did set; else the enclosing item.
        let span = spans
            .exact(&issue.path)
            .or_else(|| issue.also.as_ref().and_then(|also| spans.exact(also)))
            .or_else(|| spans.find(&issue.path));
        let location = at(span);
        let mut message = issue.message;
        if let Some(first) = &issue.first {
            match at(spans.find(first)) {
                Location::Line(line) | Location::LineColumn { line, .. } => {
                    message.push_str(&format!("; the first is at line {line}"));
                }
                Location::Env(var) => message.push_str(&format!("; the first is set by {var}")),
                Location::Whole => {}
            }
        }
        ConfigError::new(location, issue.kind, message)
    }));
    Err(errors)
}

/// Reads, parses and validates a configuration file with the process's `SMPPGW__` overrides, for
/// `smppgw import-config FILE` (its contents only: see [`check_node_config_file`] for a node's).
///
/// # Errors
/// The text to print: a read error, or every problem as `FILE:LINE: message`, one per line.
pub fn check_config_file(path: impl AsRef<Path>) -> Result<Config, String> {
    check_file(path.as_ref(), None)
}

/// Like [`check_config_file`], as [`Config::load_for_node`] checks it: for
/// `smppgw check-config FILE`, which answers for the node that is to run it (`admin_token`: it
/// has one).
///
/// # Errors
/// The text to print: a read error, or every problem as `FILE:LINE: message`, one per line.
pub fn check_node_config_file(path: impl AsRef<Path>, admin_token: bool) -> Result<Config, String> {
    check_file(path.as_ref(), Some(admin_token))
}

fn check_file(path: &Path, admin_token: Option<bool>) -> Result<Config, String> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| format!("{name}: cannot read the file: {e}"))?;
    let text = text_of(bytes, &name).map_err(|e| e.to_string())?;
    let result = match admin_token {
        Some(token) => Config::load_for_node(&text, &name, process_env(), token),
        None => Config::load(&text, &name, process_env()),
    };
    result.map_err(|e| e.to_string())
}

/// A configuration file's contents as text. Contents that are not UTF-8 (a file saved as Latin-1,
/// say) are an error of the contents, at the line and column of the first byte that is not, as a
/// syntax error is: not a file that could not be read.
///
/// # Errors
/// One error, `FILE:LINE:COL: ... not UTF-8 ...`.
pub fn text_of(bytes: Vec<u8>, source_name: &str) -> Result<String, ConfigErrors> {
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let at = e.utf8_error().valid_up_to();
        // Everything before `at` is UTF-8, by definition of valid_up_to.
        let valid = bytes.get(..at).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or_default();
        let line = valid.matches('\n').count() + 1;
        let column = valid.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        let byte = bytes.get(at).map_or_else(String::new, |b| format!(" (byte 0x{b:02X})"));
        let message = format!("not UTF-8{byte}: re-save the file as UTF-8");
        ConfigErrors::new(
            source_name,
            vec![ConfigError::new(Location::LineColumn { line, column }, ErrorKind::Syntax, message)],
        )
    })
}

/// The process's `SMPPGW__` environment variables (non-UTF-8 text is converted lossily, so that a
/// mangled override is reported rather than silently skipped).
#[must_use]
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
        .filter(|(k, _)| env::is_override(k))
        .collect()
}
