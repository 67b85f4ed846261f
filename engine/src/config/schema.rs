//! The shape of the configuration file, as data: which sections and fields exist, their types (with
//! the range of each integer, from [`limits`]), which are required. The structure check walks the parsed document with it (collecting every unknown
//! field, missing field and wrong type, with spans), the environment overrides use it to type their
//! values, and it records where every item, field and list element sits so that later errors can
//! point at their line.
//!
//! It must list exactly the fields of the serde types in `config.rs`: a unit test compares them.

use std::collections::HashMap;
use std::net::SocketAddr;

use toml::de::{DeTable, DeValue};

use super::error::ErrorKind;
use super::limits::{self, Limit};
use super::{BindType, Cidr, IdFormat, ReceiptParts, ReceiptPdu, VendorBindType, VendorIdFormat};

/// A top-level section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Section {
    Server,
    Customer,
    Vendor,
    Route,
    Brand,
    Campaign,
}

impl Section {
    pub(crate) const ALL: [Section; 6] = [
        Section::Server,
        Section::Customer,
        Section::Vendor,
        Section::Route,
        Section::Brand,
        Section::Campaign,
    ];

    /// Its key in the file.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Section::Server => "server",
            Section::Customer => "customer",
            Section::Vendor => "vendor",
            Section::Route => "route",
            Section::Brand => "brand",
            Section::Campaign => "campaign",
        }
    }

    /// Whether it is an array of tables (`[[vendor]]`) rather than one table (`[server]`).
    pub(crate) fn is_list(self) -> bool {
        self != Section::Server
    }

    /// The field that names an item of a list section.
    pub(crate) fn item_key(self) -> &'static str {
        match self {
            Section::Customer => "system_id",
            Section::Brand => "brand_id",
            Section::Campaign => "campaign_id",
            Section::Server | Section::Vendor | Section::Route => "name",
        }
    }

    pub(crate) fn fields(self) -> &'static [Field] {
        match self {
            Section::Server => SERVER,
            Section::Customer => CUSTOMER,
            Section::Vendor => VENDOR,
            Section::Route => ROUTE,
            Section::Brand => BRAND,
            Section::Campaign => CAMPAIGN,
        }
    }

    pub(crate) fn field(self, name: &str) -> Option<&'static Field> {
        self.fields().iter().find(|f| f.name == name)
    }
}

/// The type of a field's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Str,
    Bool,
    /// A non-negative integer: `max` is the largest its Rust type holds, `limit` the range the
    /// field accepts (the validator checks it again on the typed value; a value past `max`
    /// never gets there, so it is reported here, with `limit`).
    Int {
        max: u64,
        limit: Limit,
    },
    /// One of these strings.
    Choice(&'static [&'static str]),
    /// `IP:PORT`.
    Addr,
    StrList,
    ChoiceList(&'static [&'static str]),
    CidrList,
    /// `"name"` or `{ name = "a", priority = 0, weight = 3 }` entries.
    RouteVendors,
}

impl Kind {
    pub(crate) fn is_list(self) -> bool {
        matches!(self, Kind::StrList | Kind::ChoiceList(_) | Kind::CidrList | Kind::RouteVendors)
    }
}

/// A field of a section.
#[derive(Debug)]
pub(crate) struct Field {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) required: bool,
}

/// A `u16` field accepting `limit`.
const fn u16_in(limit: Limit) -> Kind {
    Kind::Int { max: u16::MAX as u64, limit }
}

/// A `u32` field accepting `limit`.
const fn u32_in(limit: Limit) -> Kind {
    Kind::Int { max: u32::MAX as u64, limit }
}

const fn opt(name: &'static str, kind: Kind) -> Field {
    Field { name, kind, required: false }
}

const fn req(name: &'static str, kind: Kind) -> Field {
    Field { name, kind, required: true }
}

static SERVER: &[Field] = &[
    opt("listen", Kind::Addr),
    opt("cores", u32_in(limits::CORES)),
    opt("node_id", u32_in(limits::NODE_ID)),
    opt("system_id", Kind::Str),
    opt("max_binds", u32_in(limits::SERVER_MAX_BINDS)),
    opt("window", u32_in(limits::CUSTOMER_WINDOW)),
    opt("max_command_length", u32_in(limits::MAX_COMMAND_LENGTH)),
    opt("enquire_link_interval_ms", u32_in(limits::ENQUIRE_LINK_INTERVAL_MS)),
    opt("session_timeout_ms", u32_in(limits::SESSION_TIMEOUT_MS)),
    opt("response_timeout_ms", u32_in(limits::RESPONSE_TIMEOUT_MS)),
    opt("bind_timeout_ms", u32_in(limits::BIND_TIMEOUT_MS)),
    opt("shutdown_grace_ms", u32_in(limits::SHUTDOWN_GRACE_MS)),
    opt("receipt_ttl_secs", u32_in(limits::RECEIPT_TTL_SECS)),
    opt("receipt_store_max", u32_in(limits::RECEIPT_STORE_MAX)),
    opt("receipt_store_prealloc", Kind::Bool),
    opt("receipt_queue_max", u32_in(limits::RECEIPT_QUEUE_MAX)),
    opt("http_listen", Kind::Addr),
    opt("unknown_outcome_failover", Kind::Bool),
    opt("removed_vendor_drain_ms", u32_in(limits::REMOVED_VENDOR_DRAIN_MS)),
];

static CUSTOMER: &[Field] = &[
    req("system_id", Kind::Str),
    req("password_hash", Kind::Str),
    opt("bind_types", Kind::ChoiceList(BindType::NAMES)),
    opt("allowed_ips", Kind::CidrList),
    opt("max_binds", u32_in(limits::CUSTOMER_MAX_BINDS)),
    opt("throughput", u32_in(limits::THROUGHPUT_PER_SEC)),
    opt("window", u32_in(limits::CUSTOMER_WINDOW_OR_DEFAULT)),
    opt("id_format", Kind::Choice(IdFormat::NAMES)),
    opt("receipt_pdu", Kind::Choice(ReceiptPdu::NAMES)),
    opt("receipt_parts", Kind::Choice(ReceiptParts::NAMES)),
    opt("number_ranges", Kind::StrList),
];

static VENDOR: &[Field] = &[
    req("name", Kind::Str),
    req("host", Kind::Str),
    req("port", u16_in(limits::PORT)),
    req("system_id", Kind::Str),
    req("password", Kind::Str),
    opt("system_type", Kind::Str),
    opt("binds", u32_in(limits::VENDOR_BINDS)),
    opt("bind_type", Kind::Choice(VendorBindType::NAMES)),
    opt("window", u32_in(limits::VENDOR_WINDOW)),
    opt("throughput", u32_in(limits::THROUGHPUT_PER_SEC)),
    opt("enquire_link_interval_ms", u32_in(limits::ENQUIRE_LINK_INTERVAL_MS)),
    opt("response_timeout_ms", u32_in(limits::RESPONSE_TIMEOUT_MS)),
    opt("reconnect_backoff_min_ms", u32_in(limits::RECONNECT_BACKOFF_MIN_MS)),
    opt("reconnect_backoff_max_ms", u32_in(limits::RECONNECT_BACKOFF_MAX_MS)),
    opt("id_format", Kind::Choice(VendorIdFormat::NAMES)),
];

static ROUTE: &[Field] = &[
    req("name", Kind::Str),
    opt("prefixes", Kind::StrList),
    opt("customers", Kind::StrList),
    opt("source_prefixes", Kind::StrList),
    opt("vendors", Kind::RouteVendors),
];

static BRAND: &[Field] =
    &[req("brand_id", Kind::Str), opt("daily_cap_segments", u32_in(limits::BRAND_DAILY_CAP_SEGMENTS))];

static CAMPAIGN: &[Field] = &[
    req("campaign_id", Kind::Str),
    req("brand_id", Kind::Str),
    opt("segments_per_minute", u32_in(limits::CAMPAIGN_SEGMENTS_PER_MINUTE)),
    opt("source_prefixes", Kind::StrList),
];

/// Fields of a route vendor in table form.
static ROUTE_VENDOR: &[Field] = &[
    req("name", Kind::Str),
    opt("priority", u32_in(limits::ROUTE_PRIORITY)),
    opt("weight", u32_in(limits::ROUTE_WEIGHT)),
];

/// Where something is in the configuration: a section, an item of it, a field, an element of a
/// list field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Path {
    pub(crate) section: Section,
    pub(crate) item: Option<usize>,
    pub(crate) field: Option<&'static str>,
    pub(crate) elem: Option<usize>,
}

impl Path {
    pub(crate) fn server(field: &'static str) -> Path {
        Path { section: Section::Server, item: None, field: Some(field), elem: None }
    }

    pub(crate) fn item(section: Section, item: usize) -> Path {
        Path { section, item: Some(item), field: None, elem: None }
    }

    pub(crate) fn field(section: Section, item: usize, field: &'static str) -> Path {
        Path { section, item: Some(item), field: Some(field), elem: None }
    }

    pub(crate) fn elem(section: Section, item: usize, field: &'static str, elem: usize) -> Path {
        Path { section, item: Some(item), field: Some(field), elem: Some(elem) }
    }

    fn parent(self) -> Option<Path> {
        if self.elem.is_some() {
            Some(Path { elem: None, ..self })
        } else if self.field.is_some() {
            Some(Path { field: None, ..self })
        } else if self.item.is_some() {
            Some(Path { item: None, ..self })
        } else {
            None
        }
    }
}

/// Where every section, item, field and list element starts (a byte offset into the document, or
/// past its end for a value that came from an environment override).
#[derive(Debug, Default)]
pub(crate) struct SpanIndex(HashMap<Path, usize>);

impl SpanIndex {
    fn record(&mut self, path: Path, span_start: usize) {
        self.0.entry(path).or_insert(span_start);
    }

    /// The offset of exactly `path`, if it is in the document.
    pub(crate) fn exact(&self, path: &Path) -> Option<usize> {
        self.0.get(path).copied()
    }

    /// The offset of `path`, or of its closest recorded parent (a defaulted field: its item).
    pub(crate) fn find(&self, path: &Path) -> Option<usize> {
        let mut path = Some(*path);
        while let Some(p) = path {
            if let Some(&span) = self.0.get(&p) {
                return Some(span);
            }
            path = p.parent();
        }
        None
    }
}

/// A structural problem, at a byte offset.
#[derive(Debug)]
pub(crate) struct Problem {
    pub(crate) span: usize,
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
    /// How loading can go on past it, to report the semantic errors of the rest of the file too.
    pub(crate) fix: Fix,
}

impl Problem {
    pub(crate) fn new(span: usize, kind: ErrorKind, message: String) -> Problem {
        Problem { span, kind, message, fix: Fix::Stop }
    }
}

/// How loading can go on past a structural problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fix {
    /// Nothing in the document needs changing (an environment override that was not applied).
    Nothing,
    /// Drop this field (a required one gets a placeholder) and leave it out of semantic checks.
    Drop { section: Section, item: Option<usize>, key: String },
    /// The shape of the document is wrong (a section, an item or its name): stop after this stage.
    Stop,
}

fn problem(out: &mut Vec<Problem>, span: usize, message: String) {
    out.push(Problem::new(span, ErrorKind::Schema, message));
}

pub(crate) fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Checks the document against the schema, collecting every problem, and returns where everything is.
pub(crate) fn check(doc: &DeTable<'_>, out: &mut Vec<Problem>) -> SpanIndex {
    let mut spans = SpanIndex::default();
    let section_keys: Vec<&str> = Section::ALL.iter().map(|s| s.key()).collect();
    for (key, value) in doc.iter() {
        let span = key.span().start;
        let Some(section) = Section::ALL.into_iter().find(|s| s.key() == key.get_ref().as_ref()) else {
            problem(
                out,
                span,
                format!(
                    "unknown section '{}'{}; the sections are [server], [[customer]], [[vendor]], [[route]], \
                     [[brand]] and [[campaign]]",
                    key.get_ref(),
                    did_you_mean(key.get_ref(), &section_keys)
                ),
            );
            continue;
        };
        let table_span = value.span().start;
        spans.record(Path { section, item: None, field: None, elem: None }, table_span);
        match (section.is_list(), value.get_ref()) {
            (false, DeValue::Table(table)) => {
                check_table(section, None, "[server]", table, table_span, &mut spans, out);
            }
            (true, DeValue::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let item_span = item.span().start;
                    spans.record(Path::item(section, i), item_span);
                    let DeValue::Table(table) = item.get_ref() else {
                        problem(
                            out,
                            item_span,
                            format!(
                                "each {} must be a table ([[{}]] followed by its fields), not {}",
                                section.key(),
                                section.key(),
                                type_name(item.get_ref())
                            ),
                        );
                        continue;
                    };
                    let label = item_label(section, i, table);
                    check_table(section, Some(i), &label, table, item_span, &mut spans, out);
                }
            }
            (true, DeValue::Table(_)) => problem(
                out,
                table_span,
                format!(
                    "write [[{0}]] (double brackets), not [{0}]: there can be several, each its own [[{0}]]",
                    section.key()
                ),
            ),
            (_, other) => problem(
                out,
                table_span,
                format!("'{}' must be a section, not {}", section.key(), type_name(other)),
            ),
        }
    }
    spans
}

/// `vendor 'sim'`, or `vendor #2` when it has no usable name.
pub(crate) fn item_label(section: Section, index: usize, table: &DeTable<'_>) -> String {
    match table.get(section.item_key()).map(|v| v.get_ref()) {
        Some(DeValue::String(name)) => format!("{} '{}'", section.key(), name),
        _ => format!("{} #{}", section.key(), index + 1),
    }
}

fn check_table(
    section: Section,
    item: Option<usize>,
    label: &str,
    table: &DeTable<'_>,
    table_span: usize,
    spans: &mut SpanIndex,
    out: &mut Vec<Problem>,
) {
    let names: Vec<&str> = section.fields().iter().map(|f| f.name).collect();
    // A bad field can be dropped (its default or a placeholder stands in) and loading go on,
    // except the item's name, which everything else refers to.
    let fix = |key: &str| {
        if section.is_list() && key == section.item_key() {
            Fix::Stop
        } else {
            Fix::Drop { section, item, key: key.to_owned() }
        }
    };
    for (key, value) in table.iter() {
        let key_span = key.span().start;
        let before = out.len();
        match section.field(key.get_ref()) {
            None => {
                let suggestion = did_you_mean(key.get_ref(), &names);
                let known = if suggestion.is_empty() {
                    format!("; the fields of {} are: {}", section.key(), names.join(", "))
                } else {
                    suggestion
                };
                problem(out, key_span, format!("{label}: unknown field '{}'{known}", key.get_ref()));
            }
            Some(field) => {
                let path = Path { section, item, field: Some(field.name), elem: None };
                spans.record(path, key_span);
                check_value(field.kind, label, field.name, value, path, spans, out);
            }
        }
        for p in &mut out[before..] {
            p.fix = fix(key.get_ref());
        }
    }
    for field in section.fields().iter().filter(|f| f.required) {
        if !table.contains_key(field.name) {
            problem(out, table_span, format!("{label} is missing the required field '{}'", field.name));
            if let Some(p) = out.last_mut() {
                p.fix = fix(field.name);
            }
        }
    }
}

/// Applies the [`Fix::Drop`]s of `problems` to `doc`: each named field is removed, and a required
/// one replaced by an empty placeholder so that its item still deserializes. Returns the fields
/// touched, whose semantic checks must then be skipped (they would only repeat the problem).
pub(crate) fn drop_fields(doc: &mut DeTable<'_>, problems: &[Problem]) -> Vec<Path> {
    let mut touched = Vec::new();
    for p in problems {
        let Fix::Drop { section, item, key } = &p.fix else { continue };
        let table = match (doc.get_mut(section.key()).map(|v| v.get_mut()), item) {
            (Some(DeValue::Table(t)), None) => t,
            (Some(DeValue::Array(items)), Some(i)) => match items.get_mut(*i).map(|v| v.get_mut()) {
                Some(DeValue::Table(t)) => t,
                _ => continue,
            },
            _ => continue,
        };
        table.remove(key.as_str());
        let Some(field) = section.field(key) else { continue };
        if field.required {
            let placeholder = match field.kind {
                Kind::Int { .. } => DeValue::parse("0").map(toml::Spanned::into_inner).ok(),
                _ => Some(DeValue::String(std::borrow::Cow::Borrowed(""))),
            };
            if let Some(value) = placeholder {
                table.insert(
                    toml::Spanned::new(p.span..p.span, std::borrow::Cow::Borrowed(field.name)),
                    toml::Spanned::new(p.span..p.span, value),
                );
            }
        }
        touched.push(Path { section: *section, item: *item, field: Some(field.name), elem: None });
    }
    touched
}

fn check_value(
    kind: Kind,
    label: &str,
    name: &str,
    value: &toml::Spanned<DeValue<'_>>,
    path: Path,
    spans: &mut SpanIndex,
    out: &mut Vec<Problem>,
) {
    let span = value.span().start;
    let v = value.get_ref();
    match kind {
        Kind::Str => {
            if !matches!(v, DeValue::String(_)) {
                problem(out, span, format!("{label}: {name} must be a string, not {}", type_name(v)));
            }
        }
        Kind::Bool => {
            if !matches!(v, DeValue::Boolean(_)) {
                problem(out, span, format!("{label}: {name} must be true or false, not {}", type_name(v)));
            }
        }
        Kind::Int { max, limit } => check_int(max, &limit, label, name, v, span, out),
        Kind::Choice(choices) => check_choice(choices, label, name, v, span, out),
        Kind::Addr => match v {
            DeValue::String(s) if s.parse::<SocketAddr>().is_ok() => {}
            DeValue::String(s) => problem(
                out,
                span,
                format!(
                    "{label}: {name} = '{s}' is not an IP address with a port (e.g. '127.0.0.1:2775' or \
                     '[::]:2775'; host names are not accepted here)"
                ),
            ),
            other => problem(
                out,
                span,
                format!("{label}: {name} must be a string like '127.0.0.1:2775', not {}", type_name(other)),
            ),
        },
        Kind::StrList | Kind::ChoiceList(_) | Kind::CidrList | Kind::RouteVendors => {
            let DeValue::Array(elems) = v else {
                let hint = match v {
                    DeValue::String(s) => format!(" (write [\"{s}\"])"),
                    _ => String::new(),
                };
                problem(out, span, format!("{label}: {name} must be a list, not {}{hint}", type_name(v)));
                return;
            };
            for (i, elem) in elems.iter().enumerate() {
                let elem_span = elem.span().start;
                let elem_path = Path { elem: Some(i), ..path };
                spans.record(elem_path, elem_span);
                check_elem(kind, label, name, elem.get_ref(), elem_span, out);
            }
        }
    }
}

fn check_elem(kind: Kind, label: &str, name: &str, v: &DeValue<'_>, span: usize, out: &mut Vec<Problem>) {
    match (kind, v) {
        (Kind::StrList, DeValue::String(_)) => {}
        (Kind::ChoiceList(choices), _) => check_choice(choices, label, name, v, span, out),
        (Kind::CidrList, DeValue::String(s)) => {
            if let Err(e) = s.parse::<Cidr>() {
                problem(
                    out,
                    span,
                    format!("{label}: {name} entry '{s}' is not an IP address or CIDR block: {e}"),
                );
            }
        }
        (Kind::RouteVendors, DeValue::String(_)) => {}
        (Kind::RouteVendors, DeValue::Table(table)) => {
            let names: Vec<&str> = ROUTE_VENDOR.iter().map(|f| f.name).collect();
            for (key, value) in table.iter() {
                match ROUTE_VENDOR.iter().find(|f| f.name == key.get_ref().as_ref()) {
                    Some(field) => match field.kind {
                        Kind::Int { max, limit } => check_int(
                            max,
                            &limit,
                            label,
                            field.name,
                            value.get_ref(),
                            value.span().start,
                            out,
                        ),
                        _ => {
                            if !matches!(value.get_ref(), DeValue::String(_)) {
                                problem(
                                    out,
                                    value.span().start,
                                    format!(
                                        "{label}: vendors entry name must be a string, not {}",
                                        type_name(value.get_ref())
                                    ),
                                );
                            }
                        }
                    },
                    None => problem(
                        out,
                        key.span().start,
                        format!(
                            "{label}: unknown field '{}' in a vendors entry{}; an entry is \"name\" or \
                             {{ name = \"a\", priority = 0, weight = 1 }}",
                            key.get_ref(),
                            did_you_mean(key.get_ref(), &names)
                        ),
                    ),
                }
            }
            if !table.contains_key("name") {
                problem(
                    out,
                    span,
                    format!("{label}: a vendors entry has no name (write {{ name = \"a\", ... }})"),
                );
            }
        }
        (Kind::RouteVendors, other) => problem(
            out,
            span,
            format!(
                "{label}: a vendors entry must be a vendor name or a table {{ name = \"a\", priority = 0, \
                 weight = 1 }}, not {}",
                type_name(other)
            ),
        ),
        (_, other) => {
            problem(
                out,
                span,
                format!("{label}: every entry of {name} must be a string, not {}", type_name(other)),
            );
        }
    }
}

/// An integer of a field whose type holds up to `max` and that accepts `limit`. One past what the
/// type holds (or negative) is reported with the field's own range: it never reaches the validator,
/// which reports the rest of `limit` on the typed value.
fn check_int(
    max: u64,
    limit: &Limit,
    label: &str,
    name: &str,
    v: &DeValue<'_>,
    span: usize,
    out: &mut Vec<Problem>,
) {
    let range = format!("{}..={} ({})", limit.min, limit.max, limit.why);
    match v {
        DeValue::Integer(int) => {
            let text = int.as_str();
            if text.starts_with('-') {
                out.push(Problem::new(
                    span,
                    ErrorKind::OutOfRange { value: 0, min: limit.min, max: limit.max },
                    format!("{label}: {name} = {int} must not be negative: the range is {range}"),
                ));
                return;
            }
            match u64::from_str_radix(text.trim_start_matches('+'), int.radix()) {
                Ok(n) if n <= max => {}
                parsed => out.push(Problem::new(
                    span,
                    ErrorKind::OutOfRange {
                        value: parsed.unwrap_or(u64::MAX),
                        min: limit.min,
                        max: limit.max,
                    },
                    format!("{label}: {name} = {int} is out of range {range}"),
                )),
            }
        }
        DeValue::String(s) if s.trim().parse::<u64>().is_ok() => problem(
            out,
            span,
            format!("{label}: {name} must be an integer, not a string (write {} without quotes)", s.trim()),
        ),
        DeValue::Float(f) => problem(out, span, format!("{label}: {name} = {f} must be a whole number")),
        other => problem(out, span, format!("{label}: {name} must be an integer, not {}", type_name(other))),
    }
}

fn check_choice(
    choices: &[&str],
    label: &str,
    name: &str,
    v: &DeValue<'_>,
    span: usize,
    out: &mut Vec<Problem>,
) {
    match v {
        DeValue::String(s) if choices.contains(&s.as_ref()) => {}
        DeValue::String(s) => problem(
            out,
            span,
            format!(
                "{label}: {name} '{s}' is not one of: {}{}",
                quoted_list(choices),
                did_you_mean(s, choices)
            ),
        ),
        other => problem(
            out,
            span,
            format!("{label}: {name} must be one of {}, not {}", quoted_list(choices), type_name(other)),
        ),
    }
}

fn quoted_list(items: &[&str]) -> String {
    items.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ")
}

/// `"; did you mean 'x'?"` for the closest candidate within a small edit distance, else "".
pub(crate) fn did_you_mean(given: &str, candidates: &[&str]) -> String {
    let given_lower = given.to_ascii_lowercase();
    let best = candidates
        .iter()
        .map(|c| (edit_distance(&given_lower, &c.to_ascii_lowercase()), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((_, c)) => format!("; did you mean '{c}'?"),
        None => String::new(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb { prev } else { 1 + prev.min(cur).min(row[j]) };
            prev = cur;
        }
    }
    row[b.len()]
}

// The limit of a u16 field is the port's: keep them in step.
const _: () = assert!(limits::PORT.max == u16::MAX as u64);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BrandConfig, CampaignConfig, Config, CustomerConfig, RouteConfig, VendorConfig};

    fn keys_of<T: serde::Serialize>(value: &T) -> Vec<String> {
        let table = toml::Table::try_from(value).expect("serializes to a table");
        let mut keys: Vec<String> = table.keys().cloned().collect();
        keys.sort();
        keys
    }

    fn schema_keys(section: Section) -> Vec<String> {
        let mut keys: Vec<String> = section.fields().iter().map(|f| f.name.to_owned()).collect();
        keys.sort();
        keys
    }

    #[test]
    fn schema_lists_exactly_the_serde_fields() {
        let config = Config::embedded_default();
        assert_eq!(keys_of(&config.server), schema_keys(Section::Server));
        assert_eq!(keys_of(&CustomerConfig::new("a", "b")), schema_keys(Section::Customer));
        assert_eq!(keys_of(&VendorConfig::new("a", "h", 1, "s", "p")), schema_keys(Section::Vendor));
        assert_eq!(keys_of(&RouteConfig::new("r", &["a"])), schema_keys(Section::Route));
        assert_eq!(keys_of(&BrandConfig::new("B1", 0)), schema_keys(Section::Brand));
        assert_eq!(keys_of(&CampaignConfig::new("C1", "B1")), schema_keys(Section::Campaign));
        let sections: Vec<String> = Section::ALL.iter().map(|s| s.key().to_owned()).collect();
        let mut sections_sorted = sections.clone();
        sections_sorted.sort();
        assert_eq!(keys_of(&config), sections_sorted);
    }

    #[test]
    fn every_integer_field_names_the_limit_the_validator_checks() {
        // The schema reports a value past its type with the field's limit; the validator reports
        // the rest of the range. One value past each limit, set by an override, must come back
        // with the same range from the validator: the two lists name the same limits.
        let hash = Config::embedded_default().customers[0].password_hash.clone();
        let base = format!(
            "[server]\n[[customer]]\nsystem_id = \"c\"\npassword_hash = \"{hash}\"\n\
             [[vendor]]\nname = \"v\"\nhost = \"h\"\nport = 1\nsystem_id = \"s\"\npassword = \"p\"\n\
             [[route]]\nname = \"r\"\nvendors = [\"v\"]\n[[brand]]\nbrand_id = \"b\"\n\
             [[campaign]]\ncampaign_id = \"k\"\nbrand_id = \"b\"\n"
        );
        Config::from_toml_str(&base, "base.toml").unwrap_or_else(|e| panic!("{e}"));
        let item = |section: Section| match section {
            Section::Server => "",
            Section::Customer => "C__",
            Section::Vendor => "V__",
            Section::Route => "R__",
            Section::Brand => "B__",
            Section::Campaign => "K__",
        };
        let mut cases = Vec::new();
        for section in Section::ALL {
            for field in section.fields() {
                if let Kind::Int { max, limit } = field.kind {
                    let var = format!(
                        "SMPPGW__{}__{}{}",
                        section.key().to_ascii_uppercase(),
                        item(section),
                        field.name.to_ascii_uppercase()
                    );
                    cases.push((var, field.name, max, limit, None));
                }
            }
        }
        for field in ROUTE_VENDOR {
            if let Kind::Int { max, limit } = field.kind {
                cases.push((
                    "SMPPGW__ROUTE__R__VENDORS".to_owned(),
                    field.name,
                    max,
                    limit,
                    Some(field.name),
                ));
            }
        }
        assert!(cases.len() > 25, "{}", cases.len());
        for (var, name, max, limit, in_entry) in cases {
            let value = if limit.max < max {
                limit.max + 1
            } else if limit.min > 0 {
                limit.min - 1
            } else {
                continue;
            };
            let set = match in_entry {
                Some(key) => format!("[{{ name = \"v\", {key} = {value} }}]"),
                None => value.to_string(),
            };
            let errors = Config::load(&base, "base.toml", [(var.clone(), set)])
                .expect_err(&format!("{var}: {name} = {value} is out of range"));
            let expected = ErrorKind::OutOfRange { value, min: limit.min, max: limit.max };
            assert!(
                errors.errors().iter().any(|e| e.kind == expected),
                "{var} = {value}: the schema says {}..={}, the validator: {errors}",
                limit.min,
                limit.max
            );
        }
    }

    #[test]
    fn suggestions_are_close_names_only() {
        assert_eq!(did_you_mean("passwrd", &["password", "port"]), "; did you mean 'password'?");
        assert_eq!(did_you_mean("zzz", &["password", "port"]), "");
    }
}
