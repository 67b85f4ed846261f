//! What a well-formed configuration must also mean: numbers within [`limits`], SMPP field sizes,
//! names that are unique and usable in environment variables, routes that name defined vendors and
//! customers, campaigns that name defined brands, prefixes that are prefixes. Works on the typed [`Config`] (so a configuration built
//! in code is checked the same way) and reports [`Path`]s that the loader turns into lines.

use std::collections::HashMap;

use super::error::ErrorKind;
use super::limits::{self, Limit};
use super::password::parse_phc;
use super::schema::{Path, Section};
use super::{BrandConfig, Config, CustomerConfig, RouteConfig, ServerConfig, VendorConfig};

/// One semantic problem.
#[derive(Debug)]
pub(crate) struct Issue {
    /// What it is about.
    pub(crate) path: Path,
    /// Where to point instead when `path` is not in the file (a defaulted field).
    pub(crate) also: Option<Path>,
    /// The earlier item it clashes with, for duplicates.
    pub(crate) first: Option<Path>,
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
}

#[derive(Default)]
struct Issues(Vec<Issue>);

impl Issues {
    fn push(&mut self, path: Path, kind: ErrorKind, message: String) {
        self.0.push(Issue { path, also: None, first: None, kind, message });
    }

    fn invalid(&mut self, path: Path, message: String) {
        self.push(path, ErrorKind::Invalid, message);
    }

    fn range(&mut self, path: Path, label: &str, value: u32, limit: &Limit) {
        let value = u64::from(value);
        if !limit.contains(value) {
            let field = path.field.unwrap_or_default();
            self.push(
                path,
                ErrorKind::OutOfRange { value, min: limit.min, max: limit.max },
                format!(
                    "{label}: {field} = {value} is out of range {}..={} ({})",
                    limit.min, limit.max, limit.why
                ),
            );
        }
    }

    fn count(&mut self, path: Path, label: &str, what: &str, len: usize, limit: &Limit) {
        let value = u64::try_from(len).unwrap_or(u64::MAX);
        if !limit.contains(value) {
            self.push(
                path,
                ErrorKind::OutOfRange { value, min: limit.min, max: limit.max },
                format!("{label}: {len} {what}; allowed {}..={} ({})", limit.min, limit.max, limit.why),
            );
        }
    }

    fn list_len(&mut self, path: Path, label: &str, len: usize, max: usize) {
        if len > max {
            let field = path.field.unwrap_or_default();
            self.push(
                path,
                ErrorKind::TooLong { len, max },
                format!("{label}: {field} has {len} entries; at most {max} are accepted"),
            );
        }
    }

    /// SMPP C-Octet String fields: printable ASCII, bounded length.
    fn smpp_string(&mut self, path: Path, label: &str, value: &str, max: usize, allow_empty: bool) {
        let field = path.field.unwrap_or_default();
        // A secret never goes into an error (logs, /ready, a reload's reasons): only its length.
        let shown = if field.contains("password") { String::new() } else { format!(" '{value}'") };
        if value.is_empty() && !allow_empty {
            self.invalid(path, format!("{label}: {field} must not be empty"));
        } else if value.len() > max {
            self.push(
                path,
                ErrorKind::TooLong { len: value.len(), max },
                format!("{label}: {field}{shown} is {} characters; SMPP allows at most {max}", value.len()),
            );
        } else if !value.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            self.invalid(path, format!("{label}: {field}{shown} must be printable ASCII"));
        }
    }

    /// A name or id (the field `path` names): 1..=64 of `[A-Za-z0-9_-]`.
    fn name(&mut self, path: Path, label: &str, name: &str) {
        let field = path.field.unwrap_or("name");
        if name.is_empty() || name.len() > limits::NAME_LEN_MAX {
            self.push(
                path,
                ErrorKind::TooLong { len: name.len(), max: limits::NAME_LEN_MAX },
                format!("{label}: {field} must be 1..={} characters", limits::NAME_LEN_MAX),
            );
        } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            self.invalid(
                path,
                format!(
                    "{label}: {field} '{name}' may only use letters, digits, '_' and '-' (it appears in logs, \
                     metrics and SMPPGW__ environment variables)"
                ),
            );
        }
    }
}

/// Every semantic problem of `config`, in no particular order.
pub(crate) fn validate(config: &Config) -> Vec<Issue> {
    let mut issues = Issues::default();
    server(&config.server, &mut issues);
    customers(config, &mut issues);
    vendors(&config.vendors, &mut issues);
    routes(config, &mut issues);
    brands(&config.brands, &mut issues);
    campaigns(config, &mut issues);
    issues.0
}

/// The problems of `config` as the configuration of a node that is to run it, beyond its
/// contents: a node without an admin token (`admin_token` false) must keep its HTTP API on
/// loopback, since anyone who reaches it could change state.
pub(crate) fn node(config: &Config, admin_token: bool) -> Vec<Issue> {
    let mut issues = Issues::default();
    let addr = config.server.http_listen;
    if !admin_token && !addr.ip().is_loopback() {
        issues.invalid(
            Path::server("http_listen"),
            format!(
                "[server]: http_listen = {addr} is not a loopback address and no admin token is set: the \
                 HTTP API refuses to serve there (set SMPPGW_ADMIN_TOKEN or --admin-token, or listen on \
                 127.0.0.1)"
            ),
        );
    }
    issues.0
}

fn server(s: &ServerConfig, issues: &mut Issues) {
    let label = "[server]";
    let p = Path::server;
    issues.range(p("cores"), label, s.cores, &limits::CORES);
    issues.range(p("node_id"), label, s.node_id, &limits::NODE_ID);
    issues.smpp_string(p("system_id"), label, &s.system_id, limits::SYSTEM_ID_LEN_MAX, false);
    issues.range(p("max_binds"), label, s.max_binds, &limits::SERVER_MAX_BINDS);
    issues.range(p("window"), label, s.window, &limits::CUSTOMER_WINDOW);
    issues.range(p("max_command_length"), label, s.max_command_length, &limits::MAX_COMMAND_LENGTH);
    issues.range(
        p("enquire_link_interval_ms"),
        label,
        s.enquire_link_interval_ms,
        &limits::ENQUIRE_LINK_INTERVAL_MS,
    );
    issues.range(p("session_timeout_ms"), label, s.session_timeout_ms, &limits::SESSION_TIMEOUT_MS);
    issues.range(p("response_timeout_ms"), label, s.response_timeout_ms, &limits::RESPONSE_TIMEOUT_MS);
    issues.range(p("bind_timeout_ms"), label, s.bind_timeout_ms, &limits::BIND_TIMEOUT_MS);
    issues.range(p("shutdown_grace_ms"), label, s.shutdown_grace_ms, &limits::SHUTDOWN_GRACE_MS);
    issues.range(p("receipt_ttl_secs"), label, s.receipt_ttl_secs, &limits::RECEIPT_TTL_SECS);
    issues.range(p("receipt_store_max"), label, s.receipt_store_max, &limits::RECEIPT_STORE_MAX);
    issues.range(p("receipt_queue_max"), label, s.receipt_queue_max, &limits::RECEIPT_QUEUE_MAX);
    issues.range(
        p("removed_vendor_drain_ms"),
        label,
        s.removed_vendor_drain_ms,
        &limits::REMOVED_VENDOR_DRAIN_MS,
    );
    if s.session_timeout_ms <= s.enquire_link_interval_ms {
        issues.0.push(Issue {
            path: p("session_timeout_ms"),
            also: Some(p("enquire_link_interval_ms")),
            first: None,
            kind: ErrorKind::Invalid,
            message: format!(
                "{label}: session_timeout_ms ({}) must be longer than enquire_link_interval_ms ({}), or idle \
                 sessions are closed before they are probed",
                s.session_timeout_ms, s.enquire_link_interval_ms
            ),
        });
    }
    // The same port on overlapping addresses (equal, or either the wildcard) cannot both bind.
    let (a, b) = (s.listen, s.http_listen);
    let overlap = a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified();
    if a.port() != 0 && a.port() == b.port() && overlap {
        // At the line the file has: `http_listen` left at its default, the clash is `listen`'s.
        let at =
            if b == crate::config::ServerConfig::default().http_listen { "listen" } else { "http_listen" };
        issues.invalid(
            p(at),
            format!(
                "{label}: http_listen ({b}) and listen ({a}) take the same port on overlapping addresses; give the HTTP API its own port"
            ),
        );
    }
}

fn customers(config: &Config, issues: &mut Issues) {
    let list = &config.customers;
    let section_path = Path { section: Section::Customer, item: None, field: None, elem: None };
    issues.count(section_path, "[[customer]]", "customers", list.len(), &limits::CUSTOMERS);
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut ranges: HashMap<String, (usize, usize)> = HashMap::new();
    for (i, c) in list.iter().enumerate() {
        let label = format!("customer '{}'", c.system_id);
        let p = |field| Path::field(Section::Customer, i, field);
        issues.smpp_string(p("system_id"), &label, &c.system_id, limits::SYSTEM_ID_LEN_MAX, false);
        if c.system_id.contains(' ') {
            issues.invalid(p("system_id"), format!("{label}: system_id must not contain spaces"));
        }
        duplicate(
            issues,
            &mut seen,
            c.system_id.to_ascii_lowercase(),
            i,
            Section::Customer,
            "system_id",
            format!("{label}: system_id is defined twice (system_ids ignore case)"),
        );
        if let Err(why) = parse_phc(&c.password_hash) {
            issues.invalid(
                p("password_hash"),
                format!(
                    "{label}: password_hash is not usable: {why}; generate one with `smppgw hash-password`"
                ),
            );
        }
        if c.bind_types.is_empty() {
            issues.invalid(
                p("bind_types"),
                format!("{label}: bind_types is empty, so it could never bind; remove the line to allow all"),
            );
        }
        issues.list_len(p("allowed_ips"), &label, c.allowed_ips.len(), limits::ALLOWED_IPS_LEN_MAX);
        issues.range(p("max_binds"), &label, c.max_binds, &limits::CUSTOMER_MAX_BINDS);
        issues.range(p("throughput"), &label, c.throughput, &limits::THROUGHPUT_PER_SEC);
        issues.range(p("window"), &label, c.window, &limits::CUSTOMER_WINDOW_OR_DEFAULT);
        issues.list_len(p("number_ranges"), &label, c.number_ranges.len(), limits::NUMBER_RANGES_LEN_MAX);
        number_ranges(c, i, &label, &mut ranges, issues);
    }
}

fn number_ranges(
    c: &CustomerConfig,
    i: usize,
    label: &str,
    claimed: &mut HashMap<String, (usize, usize)>,
    issues: &mut Issues,
) {
    for (j, range) in c.number_ranges.iter().enumerate() {
        let path = Path::elem(Section::Customer, i, "number_ranges", j);
        if let Err(why) = check_prefix(range) {
            issues.invalid(path, format!("{label}: number range '{range}' {why}"));
            continue;
        }
        let key = range.trim_start_matches('+').to_owned();
        match claimed.get(&key) {
            Some(&(other, other_j)) if other != i => issues.0.push(Issue {
                path,
                also: None,
                first: Some(Path::elem(Section::Customer, other, "number_ranges", other_j)),
                kind: ErrorKind::Duplicate,
                message: format!(
                    "{label}: number range '{range}' is also claimed by another customer; MO messages to it \
                     could not be routed"
                ),
            }),
            _ => {
                claimed.insert(key, (i, j));
            }
        }
    }
}

fn vendors(list: &[VendorConfig], issues: &mut Issues) {
    let section_path = Path { section: Section::Vendor, item: None, field: None, elem: None };
    issues.count(section_path, "[[vendor]]", "vendors", list.len(), &limits::VENDORS);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, v) in list.iter().enumerate() {
        let label = format!("vendor '{}'", v.name);
        let p = |field| Path::field(Section::Vendor, i, field);
        issues.name(p("name"), &label, &v.name);
        duplicate(
            issues,
            &mut seen,
            v.name.to_ascii_lowercase().replace('-', "_"),
            i,
            Section::Vendor,
            "name",
            format!(
                "{label}: name is defined twice (names ignore case, and `-` and `_` are one, as in environment overrides)"
            ),
        );
        if v.host.len() > limits::HOST_LEN_MAX || !valid_host(&v.host) {
            issues.invalid(
                p("host"),
                format!(
                    "{label}: host '{}' must be a host name (letters, digits, '-', '.', '_') or an IP address, of 1..={} characters; the port goes in `port`",
                    v.host,
                    limits::HOST_LEN_MAX
                ),
            );
        }
        issues.range(p("port"), &label, u32::from(v.port), &limits::PORT);
        issues.smpp_string(p("system_id"), &label, &v.system_id, limits::SYSTEM_ID_LEN_MAX, false);
        issues.smpp_string(p("password"), &label, &v.password, limits::PASSWORD_LEN_MAX, true);
        issues.smpp_string(p("system_type"), &label, &v.system_type, limits::SYSTEM_TYPE_LEN_MAX, true);
        issues.range(p("binds"), &label, v.binds, &limits::VENDOR_BINDS);
        issues.range(p("window"), &label, v.window, &limits::VENDOR_WINDOW);
        issues.range(p("throughput"), &label, v.throughput, &limits::THROUGHPUT_PER_SEC);
        issues.range(
            p("enquire_link_interval_ms"),
            &label,
            v.enquire_link_interval_ms,
            &limits::ENQUIRE_LINK_INTERVAL_MS,
        );
        issues.range(p("response_timeout_ms"), &label, v.response_timeout_ms, &limits::RESPONSE_TIMEOUT_MS);
        issues.range(
            p("reconnect_backoff_min_ms"),
            &label,
            v.reconnect_backoff_min_ms,
            &limits::RECONNECT_BACKOFF_MIN_MS,
        );
        issues.range(
            p("reconnect_backoff_max_ms"),
            &label,
            v.reconnect_backoff_max_ms,
            &limits::RECONNECT_BACKOFF_MAX_MS,
        );
        if v.reconnect_backoff_min_ms > v.reconnect_backoff_max_ms {
            issues.0.push(Issue {
                path: p("reconnect_backoff_min_ms"),
                also: Some(p("reconnect_backoff_max_ms")),
                first: None,
                kind: ErrorKind::Invalid,
                message: format!(
                    "{label}: reconnect_backoff_min_ms ({}) is larger than reconnect_backoff_max_ms ({}); \
                     the backoff grows from min to max",
                    v.reconnect_backoff_min_ms, v.reconnect_backoff_max_ms
                ),
            });
        }
    }
}

fn routes(config: &Config, issues: &mut Issues) {
    let list = &config.routes;
    let section_path = Path { section: Section::Route, item: None, field: None, elem: None };
    issues.count(section_path, "[[route]]", "routes", list.len(), &limits::ROUTES);
    let mut seen: HashMap<String, usize> = HashMap::new();
    // (destination prefix, customers, source prefixes) -> first route and prefix index.
    type MatchKey = (String, Vec<String>, Vec<String>);
    let mut matches: HashMap<MatchKey, (usize, usize)> = HashMap::new();
    // Built once: a route's references are checked against these sets, not by scanning the lists
    // (10,000 routes x 10,000 customers must stay fast for hot reloads).
    let customer_ids: std::collections::HashSet<&str> =
        config.customers.iter().map(|c| c.system_id.as_str()).collect();
    let vendor_names: std::collections::HashSet<&str> =
        config.vendors.iter().map(|v| v.name.as_str()).collect();
    for (i, r) in list.iter().enumerate() {
        let label = format!("route '{}'", r.name);
        let p = |field| Path::field(Section::Route, i, field);
        issues.name(p("name"), &label, &r.name);
        duplicate(
            issues,
            &mut seen,
            r.name.to_ascii_lowercase().replace('-', "_"),
            i,
            Section::Route,
            "name",
            format!(
                "{label}: name is defined twice (names ignore case, and `-` and `_` are one, as in environment overrides)"
            ),
        );
        for (field, len) in [
            ("prefixes", r.prefixes.len()),
            ("customers", r.customers.len()),
            ("source_prefixes", r.source_prefixes.len()),
        ] {
            issues.list_len(p(field), &label, len, limits::ROUTE_LIST_LEN_MAX);
        }
        if r.prefixes.is_empty() {
            issues.invalid(
                p("prefixes"),
                format!(
                    "{label}: prefixes is empty, so it matches nothing; use [\"\"] to match every destination"
                ),
            );
        }
        for (j, prefix) in r.prefixes.iter().enumerate() {
            if let Err(why) = check_prefix(prefix) {
                issues.invalid(
                    Path::elem(Section::Route, i, "prefixes", j),
                    format!("{label}: prefix '{prefix}' {why}"),
                );
            }
        }
        route_customers(config, &customer_ids, r, i, &label, issues);
        for (j, source) in r.source_prefixes.iter().enumerate() {
            let path = Path::elem(Section::Route, i, "source_prefixes", j);
            if source.is_empty() || source.len() > limits::ADDRESS_PREFIX_LEN_MAX {
                issues.invalid(
                    path,
                    format!(
                        "{label}: source prefix '{source}' must be 1..={} characters (leave source_prefixes \
                         empty to match every source)",
                        limits::ADDRESS_PREFIX_LEN_MAX
                    ),
                );
            } else if !source.bytes().all(|b| b.is_ascii_graphic()) {
                issues.invalid(path, format!("{label}: source prefix '{source}' must be printable ASCII"));
            } else if source.trim_start_matches('+').is_empty() {
                issues.invalid(
                    path,
                    format!(
                        "{label}: source prefix '{source}' matches every source; leave source_prefixes empty for that"
                    ),
                );
            }
        }
        route_vendors(config, &vendor_names, r, i, &label, issues);
        // As sets: a name or prefix listed twice is the same filter.
        let mut customers = r.customers.clone();
        customers.sort();
        customers.dedup();
        let mut sources: Vec<String> =
            r.source_prefixes.iter().map(|s| s.trim_start_matches('+').to_owned()).collect();
        sources.sort();
        sources.dedup();
        for (j, prefix) in r.prefixes.iter().enumerate() {
            let key = (prefix.trim_start_matches('+').to_owned(), customers.clone(), sources.clone());
            match matches.get(&key) {
                Some(&(other, other_j)) if other != i => issues.0.push(Issue {
                    path: Path::elem(Section::Route, i, "prefixes", j),
                    also: None,
                    first: Some(Path::elem(Section::Route, other, "prefixes", other_j)),
                    kind: ErrorKind::Duplicate,
                    message: format!(
                        "{label}: prefix '{prefix}' with the same customers and source_prefixes is already \
                         routed by route '{}'; merge the two or tell them apart",
                        list[other].name
                    ),
                }),
                Some(_) => {}
                None => {
                    matches.insert(key, (i, j));
                }
            }
        }
    }
}

fn route_customers(
    config: &Config,
    ids: &std::collections::HashSet<&str>,
    r: &RouteConfig,
    i: usize,
    label: &str,
    issues: &mut Issues,
) {
    for (j, customer) in r.customers.iter().enumerate() {
        if ids.contains(customer.as_str()) {
            continue;
        }
        let defined: Vec<&str> = config.customers.iter().map(|c| c.system_id.as_str()).collect();
        issues.push(
            Path::elem(Section::Route, i, "customers", j),
            ErrorKind::UnknownReference,
            format!(
                "{label} names customer '{customer}', which is not defined{}; defined customers: {}",
                case_hint(customer, &defined),
                name_list(&defined)
            ),
        );
    }
}

fn route_vendors(
    config: &Config,
    names: &std::collections::HashSet<&str>,
    r: &RouteConfig,
    i: usize,
    label: &str,
    issues: &mut Issues,
) {
    let path = Path::field(Section::Route, i, "vendors");
    if r.vendors.is_empty() {
        issues.push(
            path,
            ErrorKind::OutOfRange {
                value: 0,
                min: limits::ROUTE_VENDORS.min,
                max: limits::ROUTE_VENDORS.max,
            },
            format!("{label} has no vendors; add vendors = [\"name\", ...] in failover order"),
        );
        return;
    }
    issues.count(path, label, "vendors", r.vendors.len(), &limits::ROUTE_VENDORS);
    for (j, rv) in r.vendors.iter().enumerate() {
        let elem = Path::elem(Section::Route, i, "vendors", j);
        if !names.contains(rv.name.as_str()) {
            let defined: Vec<&str> = config.vendors.iter().map(|v| v.name.as_str()).collect();
            issues.push(
                elem,
                ErrorKind::UnknownReference,
                format!(
                    "{label} names vendor '{}', which is not defined{}; defined vendors: {}",
                    rv.name,
                    case_hint(&rv.name, &defined),
                    name_list(&defined)
                ),
            );
        }
        if let Some(first) = r.vendors[..j].iter().position(|other| other.name == rv.name) {
            issues.0.push(Issue {
                path: elem,
                also: None,
                first: Some(Path::elem(Section::Route, i, "vendors", first)),
                kind: ErrorKind::Duplicate,
                message: format!("{label} lists vendor '{}' twice", rv.name),
            });
        }
        let entry_label = format!("{label}, vendor '{}'", rv.name);
        for (field, value, limit) in
            [("priority", rv.priority, &limits::ROUTE_PRIORITY), ("weight", rv.weight, &limits::ROUTE_WEIGHT)]
        {
            let value64 = u64::from(value);
            if !limit.contains(value64) {
                issues.push(
                    elem,
                    ErrorKind::OutOfRange { value: value64, min: limit.min, max: limit.max },
                    format!(
                        "{entry_label}: {field} = {value} is out of range {}..={} ({})",
                        limit.min, limit.max, limit.why
                    ),
                );
            }
        }
    }
}

fn brands(list: &[BrandConfig], issues: &mut Issues) {
    let section_path = Path { section: Section::Brand, item: None, field: None, elem: None };
    issues.count(section_path, "[[brand]]", "brands", list.len(), &limits::BRANDS);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, b) in list.iter().enumerate() {
        let label = format!("brand '{}'", b.brand_id);
        let p = |field| Path::field(Section::Brand, i, field);
        issues.name(p("brand_id"), &label, &b.brand_id);
        duplicate(
            issues,
            &mut seen,
            b.brand_id.to_ascii_lowercase(),
            i,
            Section::Brand,
            "brand_id",
            format!("{label}: brand_id is defined twice (ids ignore case)"),
        );
        issues.range(
            p("daily_cap_segments"),
            &label,
            b.daily_cap_segments,
            &limits::BRAND_DAILY_CAP_SEGMENTS,
        );
    }
}

fn campaigns(config: &Config, issues: &mut Issues) {
    let list = &config.campaigns;
    let section_path = Path { section: Section::Campaign, item: None, field: None, elem: None };
    issues.count(section_path, "[[campaign]]", "campaigns", list.len(), &limits::CAMPAIGNS);
    let brand_ids: std::collections::HashSet<&str> =
        config.brands.iter().map(|b| b.brand_id.as_str()).collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    // Source prefix without '+' -> (campaign, element) that claimed it first.
    let mut claimed: HashMap<&str, (usize, usize)> = HashMap::new();
    for (i, c) in list.iter().enumerate() {
        let label = format!("campaign '{}'", c.campaign_id);
        let p = |field| Path::field(Section::Campaign, i, field);
        issues.name(p("campaign_id"), &label, &c.campaign_id);
        duplicate(
            issues,
            &mut seen,
            c.campaign_id.to_ascii_lowercase(),
            i,
            Section::Campaign,
            "campaign_id",
            format!("{label}: campaign_id is defined twice (ids ignore case)"),
        );
        if !brand_ids.contains(c.brand_id.as_str()) {
            let defined: Vec<&str> = config.brands.iter().map(|b| b.brand_id.as_str()).collect();
            issues.push(
                p("brand_id"),
                ErrorKind::UnknownReference,
                format!(
                    "{label} names brand '{}', which is not defined{}; defined brands: {} (add a [[brand]] \
                     with this brand_id)",
                    c.brand_id,
                    case_hint(&c.brand_id, &defined),
                    name_list(&defined)
                ),
            );
        }
        issues.range(
            p("segments_per_minute"),
            &label,
            c.segments_per_minute,
            &limits::CAMPAIGN_SEGMENTS_PER_MINUTE,
        );
        issues.list_len(
            p("source_prefixes"),
            &label,
            c.source_prefixes.len(),
            limits::CAMPAIGN_SOURCES_LEN_MAX,
        );
        for (j, source) in c.source_prefixes.iter().enumerate() {
            let path = Path::elem(Section::Campaign, i, "source_prefixes", j);
            if let Err(why) = check_source(source) {
                issues.invalid(path, format!("{label}: source prefix '{source}' {why}"));
                continue;
            }
            let key = source.strip_prefix('+').unwrap_or(source);
            match claimed.get(key) {
                Some(&(other, other_j)) if other != i => issues.0.push(Issue {
                    path,
                    also: None,
                    first: Some(Path::elem(Section::Campaign, other, "source_prefixes", other_j)),
                    kind: ErrorKind::Duplicate,
                    message: format!(
                        "{label}: source prefix '{source}' also belongs to campaign '{}'; a number counts \
                         against one campaign only",
                        list[other].campaign_id
                    ),
                }),
                Some(_) => {}
                None => {
                    claimed.insert(key, (i, j));
                }
            }
        }
    }
}

/// A campaign's source number or prefix: 1..=20 digits after an optional '+'.
fn check_source(source: &str) -> Result<(), String> {
    let digits = source.strip_prefix('+').unwrap_or(source);
    if digits.is_empty() {
        return Err("is empty; a campaign is found from the source numbers it lists".to_owned());
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("may only hold digits after an optional '+'".to_owned());
    }
    if !digits.starts_with('1') {
        return Err(format!(
            "does not start with the country code 1: 10DLC numbers are North American, written \
             1 and ten digits (a source sent as ten national digits is matched as 1 and them); \
             write '1{digits}' if that is what you mean"
        ));
    }
    if source.len() > limits::ADDRESS_PREFIX_LEN_MAX {
        return Err(format!(
            "is {} characters; an SMPP address has at most {}",
            source.len(),
            limits::ADDRESS_PREFIX_LEN_MAX
        ));
    }
    Ok(())
}

/// A destination prefix: digits only after an optional '+', at most 20 characters; "" matches all.
fn check_prefix(prefix: &str) -> Result<(), String> {
    let digits = prefix.strip_prefix('+').unwrap_or(prefix);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("may only hold digits after an optional '+' (\"\" matches every number)".to_owned());
    }
    if prefix.len() > limits::ADDRESS_PREFIX_LEN_MAX {
        return Err(format!(
            "is {} characters; an SMPP address has at most {}",
            prefix.len(),
            limits::ADDRESS_PREFIX_LEN_MAX
        ));
    }
    Ok(())
}

fn duplicate(
    issues: &mut Issues,
    seen: &mut HashMap<String, usize>,
    key: String,
    i: usize,
    section: Section,
    field: &'static str,
    message: String,
) {
    match seen.get(&key) {
        Some(&first) => issues.0.push(Issue {
            path: Path::field(section, i, field),
            also: None,
            first: Some(Path::field(section, first, field)),
            kind: ErrorKind::Duplicate,
            message,
        }),
        None => {
            seen.insert(key, i);
        }
    }
}

/// `" (did you mean 'Sim'? names are case-sensitive here)"` when only the case differs.
fn case_hint(name: &str, defined: &[&str]) -> String {
    match defined.iter().find(|d| d.eq_ignore_ascii_case(name)) {
        Some(d) => format!(" (did you mean '{d}'? references are case-sensitive)"),
        None => String::new(),
    }
}

/// At most 10 names, comma-separated, or "(none)".
fn name_list(names: &[&str]) -> String {
    const SHOWN: usize = 10;
    if names.is_empty() {
        return "(none)".to_owned();
    }
    let mut list = names.iter().take(SHOWN).copied().collect::<Vec<_>>().join(", ");
    if names.len() > SHOWN {
        list.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    list
}

/// Whether `host` is an IP address (IPv6 bare or in brackets) or a host name: a `host:port`, a
/// URL or a path is none (the port has its own setting).
fn valid_host(host: &str) -> bool {
    use std::net::{Ipv4Addr, Ipv6Addr};
    if host.parse::<Ipv4Addr>().is_ok() || host.parse::<Ipv6Addr>().is_ok() {
        return true;
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().is_ok();
    }
    !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}
