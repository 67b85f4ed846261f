//! Configuration loading: the embedded default and the example file load; every kind of mistake is
//! reported with the line (or environment variable) it is about; overrides apply; passwords hash.

use std::net::SocketAddr;
use std::path::PathBuf;

use smppgw_engine::config::{
    self, BindType, Cidr, Config, ConfigErrors, ErrorKind, IdFormat, Location, ReceiptParts, RouteVendor,
    VendorBindType, VendorIdFormat,
};

/// The demo customer's hash from the embedded default (password "demo").
fn demo_hash() -> String {
    Config::embedded_default().customers[0].password_hash.clone()
}

/// A small valid file; `HASH` stands for a valid password hash.
const BASE: &str = r#"[server]
listen = "127.0.0.1:2775"

[[customer]]
system_id = "demo"
password_hash = "HASH"

[[vendor]]
name = "sim"
host = "127.0.0.1"
port = 2776
system_id = "smppgw"
password = "secret"

[[route]]
name = "default"
vendors = ["sim"]
"#;

fn with_hash(text: &str) -> String {
    text.replace("HASH", &demo_hash())
}

fn load(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_toml_str(&with_hash(text), "f.toml")
}

fn load_env(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
    Config::load(&with_hash(text), "f.toml", env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

/// The printed error lines of a file that must fail.
fn errors(text: &str) -> Vec<String> {
    match load(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.to_string().lines().map(str::to_owned).collect(),
    }
}

/// Asserts that loading fails with exactly one error, starting with `prefix` and containing `words`.
#[track_caller]
fn assert_one_error(text: &str, prefix: &str, words: &str) {
    let lines = errors(text);
    assert_eq!(lines.len(), 1, "expected one error, got: {lines:#?}");
    assert!(lines[0].starts_with(prefix), "expected prefix {prefix:?} in {:?}", lines[0]);
    assert!(lines[0].contains(words), "expected {words:?} in {:?}", lines[0]);
}

#[test]
fn embedded_default_loads_and_validates() {
    let config = Config::embedded_default();
    assert_eq!(config.validate(), Ok(()));
    assert_eq!(config.server.listen, "127.0.0.1:2775".parse::<SocketAddr>().unwrap());
    assert!(config.server.listen.ip().is_loopback(), "the demo password is public: loopback only");
    assert_eq!(config.customers.len(), 1);
    let demo = &config.customers[0];
    assert_eq!(demo.system_id, "demo");
    assert_eq!(demo.throughput, 0);
    assert!(config::verify_password(&demo.password_hash, b"demo"));
    assert_eq!(demo.bind_types, BindType::ALL.to_vec());
    let sim = config.vendor("sim").expect("vendor sim");
    assert_eq!((sim.host.as_str(), sim.port), ("127.0.0.1", 2776));
    assert_eq!((sim.system_id.as_str(), sim.password.as_str()), ("smppgw", "secret"));
    assert_eq!((sim.binds, sim.bind_type, sim.window), (2, VendorBindType::Transceiver, 64));
    let route = config.route("default").expect("route default");
    assert_eq!(route.prefixes, vec![String::new()]);
    assert_eq!(route.vendors, vec![RouteVendor { name: "sim".into(), priority: 0, weight: 1 }]);
}

#[test]
fn embedded_default_text_is_the_constant() {
    let parsed = Config::from_toml_str(config::DEFAULT_CONFIG_TOML, config::DEFAULT_SOURCE_NAME).unwrap();
    assert_eq!(parsed, Config::embedded_default());
}

fn example_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/example.toml")
}

#[test]
fn example_file_loads() {
    let text = std::fs::read_to_string(example_path()).unwrap();
    let config = Config::from_toml_str(&text, "example.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.customers.len(), 2);
    assert_eq!(config.vendors.len(), 2);
    assert!(config.routes.len() >= 3);
    let us = config.route("us").unwrap();
    assert_eq!(
        us.vendors,
        vec![
            RouteVendor { name: "carrier-a".into(), priority: 0, weight: 3 },
            RouteVendor { name: "carrier-b".into(), priority: 0, weight: 1 },
        ]
    );
    let acme = config.customer("acme").unwrap();
    assert!(acme.allows_ip("198.51.100.20".parse().unwrap()));
    assert!(!acme.allows_ip("198.51.101.20".parse().unwrap()));
    assert!(config::verify_password(&acme.password_hash, b"acme-pw"));
    assert_eq!(config.customer("shop").unwrap().id_format, IdFormat::Decimal);
    assert_eq!(config.customer("shop").unwrap().receipt_parts, ReceiptParts::Last);
    assert_eq!(config.vendor("carrier-b").unwrap().id_format, VendorIdFormat::Uuid);
    assert_eq!(config.brands.len(), 1);
    assert_eq!(config.campaigns.len(), 2);
    assert!(config.campaigns.iter().all(|c| c.brand_id == config.brands[0].brand_id));
    // check-config on the same file (the test process sets no SMPPGW__ variables).
    assert_eq!(config::check_config_file(example_path()), Ok(config));
}

#[test]
fn check_config_file_reports_read_errors() {
    let err = config::check_config_file("/nonexistent/smppgw.toml").unwrap_err();
    assert!(err.starts_with("/nonexistent/smppgw.toml: cannot read the file"), "{err}");
}

#[test]
fn config_survives_a_serialize_round_trip() {
    let text = std::fs::read_to_string(example_path()).unwrap();
    let config = Config::from_toml_str(&text, "example.toml").unwrap();
    let written = toml::to_string(&config).unwrap();
    assert_eq!(Config::from_toml_str(&written, "written.toml"), Ok(config));
}

// ---- syntax and structure ----------------------------------------------------------------------

#[test]
fn syntax_errors_carry_line_and_column() {
    let lines = errors("[server]\nlisten = \"127.0.0.1:2775\"\ncores = = 2\n");
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(line.starts_with("f.toml:3:"), "{line}");
        let column: usize = line.split(':').nth(2).unwrap().parse().unwrap();
        assert!(column >= 7, "the column points into the line: {line}");
    }
    // Several broken lines: each is reported.
    let lines = errors("[server]\ncores = = 2\n[[vendor]\nname = 'x\n");
    let at: Vec<&str> = lines.iter().map(|l| l.split(": ").next().unwrap()).collect();
    assert!(at.iter().any(|l| l.starts_with("f.toml:2:")), "{lines:?}");
    assert!(at.iter().any(|l| l.starts_with("f.toml:3:")), "{lines:?}");
}

#[test]
fn unknown_field_is_reported_at_its_line_with_a_suggestion() {
    let text = BASE.replace("password = \"secret\"", "passwrd = \"secret\"");
    let lines = errors(&text);
    assert!(
        lines.contains(
            &"f.toml:13: vendor 'sim': unknown field 'passwrd'; did you mean 'password'?".to_owned()
        )
    );
    // The required field is then missing: reported at the [[vendor]] header.
    assert!(lines.contains(&"f.toml:8: vendor 'sim' is missing the required field 'password'".to_owned()));
}

#[test]
fn missing_required_field_points_at_the_table() {
    let text = BASE.replace("host = \"127.0.0.1\"\n", "");
    assert_one_error(&text, "f.toml:8: ", "vendor 'sim' is missing the required field 'host'");
}

#[test]
fn wrong_types_are_reported_at_the_value() {
    let text = BASE.replace("port = 2776", "port = \"2776\"");
    assert_one_error(
        &text,
        "f.toml:11: ",
        "port must be an integer, not a string (write 2776 without quotes)",
    );
    let text = BASE.replace("[[route]]", "[[route]]\nprefixes = \"1\"");
    assert_one_error(&text, "f.toml:16: ", "prefixes must be a list");
    let text = format!("{BASE}[server.extra]\n");
    assert!(errors(&text)[0].starts_with("f.toml:"));
}

#[test]
fn unknown_choice_and_bad_address_are_reported() {
    let text = BASE.replace("password = \"secret\"", "password = \"secret\"\nbind_type = \"transciever\"");
    assert_one_error(&text, "f.toml:14: ", "bind_type 'transciever' is not one of");
    let text = BASE.replace("listen = \"127.0.0.1:2775\"", "listen = \"localhost\"");
    assert_one_error(&text, "f.toml:2: ", "[server]: listen = 'localhost' is not an IP address with a port");
}

#[test]
fn bad_cidr_points_at_its_element_line() {
    let text = BASE.replace(
        "password_hash = \"HASH\"",
        "password_hash = \"HASH\"\nallowed_ips = [\n  \"10.0.0.0/8\",\n  \"10.0.0.1/8\",\n]",
    );
    assert_one_error(&text, "f.toml:9: ", "'10.0.0.1/8' has host bits set; did you mean '10.0.0.0/8'?");
}

#[test]
fn unknown_section_and_single_bracket_list_are_reported() {
    let text = format!("{BASE}\n[vendors]\nname = \"x\"\n");
    assert_one_error(&text, "f.toml:19: ", "unknown section 'vendors'; did you mean 'vendor'?");
    let text = "[vendor]\nname = \"sim\"\n";
    assert_one_error(text, "f.toml:1: ", "write [[vendor]] (double brackets)");
}

// ---- meaning -----------------------------------------------------------------------------------

#[test]
fn duplicate_names_point_at_the_second_and_name_the_first() {
    let text = format!("{BASE}\n[[customer]]\nsystem_id = \"DEMO\"\npassword_hash = \"HASH\"\n");
    assert_one_error(
        &text,
        "f.toml:20: ",
        "system_id is defined twice (system_ids ignore case); the first is at line 5",
    );
    let text = format!(
        "{BASE}\n[[vendor]]\nname = \"sim\"\nhost = \"h\"\nport = 1\nsystem_id = \"s\"\npassword = \"p\"\n"
    );
    assert_one_error(
        &text,
        "f.toml:20: ",
        "vendor 'sim': name is defined twice (names ignore case, and `-` and `_` are one, as in environment overrides); the first is at line 9",
    );
    let text = format!("{BASE}\n[[route]]\nname = \"default\"\nprefixes = [\"1\"]\nvendors = [\"sim\"]\n");
    assert_one_error(&text, "f.toml:20: ", "route 'default': name is defined twice");
    // `carrier-a` and `carrier_a` are one name to SMPPGW__VENDOR__CARRIER_A__*: neither could be
    // overridden from the environment.
    let two = |a: &str, b: &str| {
        format!(
            "{BASE}\n[[vendor]]\nname = \"{a}\"\nhost = \"h\"\nport = 1\nsystem_id = \"s\"\npassword = \"p\"\n\n[[vendor]]\nname = \"{b}\"\nhost = \"h\"\nport = 1\nsystem_id = \"s\"\npassword = \"p\"\n"
        )
    };
    assert_one_error(
        &two("carrier-a", "carrier_a"),
        "f.toml:27: ",
        "vendor 'carrier_a': name is defined twice",
    );
}

#[test]
fn route_naming_an_unknown_vendor_explains_the_fix() {
    let text = BASE.replace("vendors = [\"sim\"]", "vendors = [\n  \"sim\",\n  \"twilio\",\n]");
    let lines = errors(&text);
    assert_eq!(
        lines,
        vec!["f.toml:19: route 'default' names vendor 'twilio', which is not defined; defined vendors: sim"]
    );
    let text = BASE.replace("vendors = [\"sim\"]", "vendors = [\"SIM\"]");
    assert_one_error(&text, "f.toml:17: ", "(did you mean 'sim'? references are case-sensitive)");
}

#[test]
fn route_naming_an_unknown_customer_is_reported() {
    let text = BASE
        .replace("[[route]]\nname = \"default\"", "[[route]]\nname = \"default\"\ncustomers = [\"acme\"]");
    assert_one_error(
        &text,
        "f.toml:17: ",
        "route 'default' names customer 'acme', which is not defined; defined customers: demo",
    );
}

#[test]
fn numbers_out_of_range_are_reported_with_their_limit() {
    let text = BASE.replace("listen = \"127.0.0.1:2775\"", "listen = \"127.0.0.1:2775\"\nnode_id = 300");
    assert_one_error(&text, "f.toml:3: ", "[server]: node_id = 300 is out of range 0..=127");
    let text = BASE.replace("listen = \"127.0.0.1:2775\"", "listen = \"127.0.0.1:2775\"\nnode_id = 128");
    assert_one_error(&text, "f.toml:3: ", "[server]: node_id = 128 is out of range 0..=127");
    let text = BASE.replace("listen = \"127.0.0.1:2775\"", "listen = \"127.0.0.1:2775\"\nnode_id = 127");
    assert!(load(&text).is_ok(), "127 is the largest node id");
    let text = BASE.replace("listen = \"127.0.0.1:2775\"", "listen = \"127.0.0.1:2775\"\ncores = 65");
    assert_one_error(&text, "f.toml:3: ", "cores = 65 is out of range 0..=64");
    let text = BASE.replace("listen = \"127.0.0.1:2775\"", "listen = \"127.0.0.1:2775\"\ncores = 2");
    assert!(load(&text).is_ok(), "a core count the machine may not have is clamped later, not an error");
    let text =
        BASE.replace("listen = \"127.0.0.1:2775\"", "listen = \"127.0.0.1:2775\"\nmax_command_length = 8");
    assert_one_error(&text, "f.toml:3: ", "max_command_length = 8 is out of range 1024..=1048576");
    let text =
        BASE.replace("listen = \"127.0.0.1:2775\"", "listen = \"127.0.0.1:2775\"\nmax_command_length = 200");
    assert_one_error(&text, "f.toml:3: ", "max_command_length = 200 is out of range 1024..=1048576");
    let text =
        BASE.replace("listen = \"127.0.0.1:2775\"", "listen = \"127.0.0.1:2775\"\nreceipt_queue_max = 0");
    assert_one_error(&text, "f.toml:3: ", "receipt_queue_max = 0 is out of range 1..=10000000");
    let text = BASE.replace("port = 2776", "port = 2776\nbinds = 0");
    assert_one_error(&text, "f.toml:12: ", "vendor 'sim': binds = 0 is out of range 1..=256");
    // Past what the field's type holds too: the field's own range, not the type's.
    let text = BASE
        .replace("listen = \"127.0.0.1:2775\"", "listen = \"127.0.0.1:2775\"\nbind_timeout_ms = 99999999999");
    assert_one_error(&text, "f.toml:3: ", "bind_timeout_ms = 99999999999 is out of range 100..=300000");
    let err = load(&text).unwrap_err();
    assert_eq!(err.errors()[0].kind, ErrorKind::OutOfRange { value: 99_999_999_999, min: 100, max: 300_000 });
    let text = BASE.replace("port = 2776", "port = 70000");
    assert_one_error(&text, "f.toml:11: ", "port = 70000 is out of range 1..=65535");
    let text = BASE.replace("port = 2776", "port = -1");
    assert_one_error(&text, "f.toml:11: ", "port = -1 must not be negative");
    let err = load(&BASE.replace("port = 2776", "port = 2776\nwindow = 5000")).unwrap_err();
    assert_eq!(err.errors()[0].kind, ErrorKind::OutOfRange { value: 5000, min: 1, max: 4096 });
    assert_eq!(err.errors()[0].location, Location::Line(12));
}

#[test]
fn smpp_string_sizes_are_enforced() {
    let text = BASE.replace("password = \"secret\"", "password = \"much-too-long\"");
    assert_one_error(
        &text,
        "f.toml:13: ",
        // The password itself is never shown (logs, /ready, a reload's reasons): its length is.
        "vendor 'sim': password is 13 characters; SMPP allows at most 8",
    );
    let text = BASE.replace("system_id = \"demo\"", "system_id = \"a-very-long-system-id\"");
    assert_one_error(
        &text,
        "f.toml:5: ",
        "system_id 'a-very-long-system-id' is 21 characters; SMPP allows at most 15",
    );
}

#[test]
fn bad_prefixes_point_at_their_element() {
    let text = BASE.replace("name = \"default\"", "name = \"default\"\nprefixes = [\"1555\",\n  \"12a\"]");
    assert_one_error(
        &text,
        "f.toml:18: ",
        "route 'default': prefix '12a' may only hold digits after an optional '+'",
    );
    let text = BASE.replace("name = \"default\"", "name = \"default\"\nprefixes = []");
    assert_one_error(&text, "f.toml:17: ", "prefixes is empty, so it matches nothing");
}

#[test]
fn backoff_min_above_max_points_at_the_field_set() {
    let text = BASE.replace("port = 2776", "port = 2776\nreconnect_backoff_min_ms = 40000");
    assert_one_error(
        &text,
        "f.toml:12: ",
        "reconnect_backoff_min_ms (40000) is larger than reconnect_backoff_max_ms (30000)",
    );
    // Only max set: the error points at max, the field that is in the file.
    let text = BASE.replace("port = 2776", "port = 2776\nreconnect_backoff_max_ms = 100");
    assert_one_error(&text, "f.toml:12: ", "is larger than reconnect_backoff_max_ms (100)");
}

#[test]
fn route_without_vendors_is_reported() {
    let text = BASE.replace("vendors = [\"sim\"]", "vendors = []");
    assert_one_error(&text, "f.toml:17: ", "route 'default' has no vendors; add vendors = [\"name\", ...]");
    let text = BASE.replace("vendors = [\"sim\"]\n", "");
    assert_one_error(&text, "f.toml:15: ", "route 'default' has no vendors");
}

#[test]
fn unusable_password_hash_is_reported_at_load() {
    let text = BASE.replace("password_hash = \"HASH\"", "password_hash = \"demo\"");
    assert_one_error(
        &text,
        "f.toml:6: ",
        "password_hash is not usable: it is not a PHC string (it looks like a plain-text password)",
    );
    let text = BASE.replace("password_hash = \"HASH\"", "password_hash = \"$argon2id$v=19$garbage\"");
    assert_one_error(&text, "f.toml:6: ", "generate one with `smppgw hash-password`");
}

#[test]
fn session_timeout_must_exceed_enquire_link_interval() {
    let text = BASE.replace(
        "listen = \"127.0.0.1:2775\"",
        "listen = \"127.0.0.1:2775\"\nenquire_link_interval_ms = 100000",
    );
    assert_one_error(
        &text,
        "f.toml:3: ",
        "session_timeout_ms (90000) must be longer than enquire_link_interval_ms (100000)",
    );
}

#[test]
fn ambiguous_routes_and_shared_number_ranges_are_reported() {
    let text = format!("{BASE}\n[[route]]\nname = \"again\"\nprefixes = [\"\"]\nvendors = [\"sim\"]\n");
    assert_one_error(&text, "f.toml:21: ", "is already routed by route 'default'");
    let text = BASE
        .replace("password_hash = \"HASH\"", "password_hash = \"HASH\"\nnumber_ranges = [\"1555\"]")
        + "\n[[customer]]\nsystem_id = \"other\"\npassword_hash = \"HASH\"\nnumber_ranges = [\"+1555\"]\n";
    assert_one_error(&text, "f.toml:23: ", "number range '+1555' is also claimed by another customer");
}

#[test]
fn multiple_errors_are_all_reported_in_file_order() {
    let text = r#"[server]
node_id = 256
cores = 100

[[customer]]
system_id = "demo"
password_hash = "HASH"
allowed_ips = ["10.0.0.0/8"]

[[vendor]]
name = "sim"
host = "127.0.0.1"
port = 2776
system_id = "smppgw"
password = "123456789"

[[route]]
name = "us"
prefixes = ["1"]
vendors = ["sim", "twilio"]
"#;
    let err = load(text).unwrap_err();
    assert_eq!(
        err.to_string(),
        "f.toml:2: [server]: node_id = 256 is out of range 0..=127 (the node id is the top byte of every message \
         id, whose top bit stays clear so that ids fit a signed 64-bit integer (Kannel, Cloudhopper, BIGINT \
         columns); give each node its own)\n\
         f.toml:3: [server]: cores = 100 is out of range 0..=64 (one executor per core; the engine is built for \
         at most 64 (0 = all))\n\
         f.toml:15: vendor 'sim': password is 9 characters; SMPP allows at most 8\n\
         f.toml:20: route 'us' names vendor 'twilio', which is not defined; defined vendors: sim"
    );
    assert_eq!(err.len(), 4);
    assert_eq!(err.source_name(), "f.toml");
    let lines: Vec<Option<usize>> = err.errors().iter().map(|e| e.location.line()).collect();
    assert_eq!(lines, vec![Some(2), Some(3), Some(15), Some(20)]);
}

#[test]
fn multiple_structural_errors_are_all_reported() {
    let text = BASE
        .replace("listen = \"127.0.0.1:2775\"", "listen = \"127.0.0.1:2775\"\ncoresz = 1")
        .replace("port = 2776", "port = true")
        .replace("vendors = [\"sim\"]", "vendors = [\"sim\", 3]");
    let lines = errors(&text);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(lines[0].starts_with("f.toml:3: [server]: unknown field 'coresz'; did you mean 'cores'?"));
    assert!(lines[1].starts_with("f.toml:12: vendor 'sim': port must be an integer, not a boolean"));
    assert!(
        lines[2].starts_with("f.toml:18: route 'default': a vendors entry must be a vendor name or a table")
    );
}

#[test]
fn a_bad_field_does_not_hide_the_errors_of_the_rest_of_the_file() {
    let text = r#"[server]
node_id = 300
http_listen = "nowhere"

[[customer]]
system_id = "demo"
password_hash = "HASH"
allowed_ips = ["192.168.1.1/24"]
max_binds = 0

[[vendor]]
name = "sim"
port = 2776
system_id = "smppgw"
password = "secret"
reconnect_backoff_min_ms = "fast"

[[route]]
name = "us"
vendors = ["sim", "twilio"]
"#;
    let lines = errors(text);
    let at: Vec<&str> = lines.iter().map(|l| l.split(": ").next().unwrap()).collect();
    assert_eq!(
        at,
        vec!["f.toml:2", "f.toml:3", "f.toml:8", "f.toml:9", "f.toml:11", "f.toml:16", "f.toml:20"],
        "{lines:#?}"
    );
    assert!(lines[4].ends_with("vendor 'sim' is missing the required field 'host'"), "{}", lines[4]);
    assert!(lines[6].contains("names vendor 'twilio'"), "{}", lines[6]);
}

#[test]
fn a_dropped_field_is_not_blamed_on_the_item_it_seems_to_clash_with() {
    // Goal: route 'default' with `prefixes = [44]` (not strings: the field is dropped, and its
    // default [""] stands in) is one error; route 'second' with `prefixes = [""]` is valid and
    // must not get a duplicate-prefix error "first at line 17" for a value the file never set.
    let text = format!(
        "{}\n[[route]]\nname = \"second\"\nprefixes = [\"\"]\nvendors = [\"sim\"]\n",
        BASE.replace("name = \"default\"\n", "name = \"default\"\nprefixes = [44]\n")
    );
    assert_one_error(&text, "f.toml:17: ", "route 'default': every entry of prefixes must be a string");
}

// ---- route vendors -----------------------------------------------------------------------------

#[test]
fn route_vendor_tables_and_names_are_normalised() {
    let text = format!(
        "{}\n[[vendor]]\nname = \"b\"\nhost = \"h\"\nport = 1\nsystem_id = \"s\"\npassword = \"p\"\n\
         [[vendor]]\nname = \"c\"\nhost = \"h\"\nport = 1\nsystem_id = \"s\"\npassword = \"p\"\n",
        BASE.replace(
            "vendors = [\"sim\"]",
            "vendors = [\"sim\", { name = \"b\", priority = 0, weight = 3 }, { name = \"c\" }]"
        )
    );
    let config = load(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.routes[0].vendors,
        vec![
            RouteVendor { name: "sim".into(), priority: 0, weight: 1 },
            RouteVendor { name: "b".into(), priority: 0, weight: 3 },
            RouteVendor { name: "c".into(), priority: 2, weight: 1 },
        ]
    );
    let bad = BASE.replace("vendors = [\"sim\"]", "vendors = [{ name = \"sim\", weight = 0 }]");
    assert_one_error(
        &bad,
        "f.toml:17: ",
        "route 'default', vendor 'sim': weight = 0 is out of range 1..=1000",
    );
    let bad = BASE.replace("vendors = [\"sim\"]", "vendors = [{ name = \"sim\", wieght = 2 }]");
    assert_one_error(
        &bad,
        "f.toml:17: ",
        "unknown field 'wieght' in a vendors entry; did you mean 'weight'?",
    );
}

// ---- environment overrides ---------------------------------------------------------------------

#[test]
fn env_overrides_a_server_field() {
    let config =
        load_env(BASE, &[("SMPPGW__SERVER__LISTEN", "0.0.0.0:2775"), ("SMPPGW__SERVER__CORES", "2")])
            .unwrap();
    assert_eq!(config.server.listen, "0.0.0.0:2775".parse::<SocketAddr>().unwrap());
    assert_eq!(config.server.cores, 2);
    // A boolean, and a [server] section the file does not have.
    let config = load_env(
        &BASE.replace("[server]\nlisten = \"127.0.0.1:2775\"\n", ""),
        &[("smppgw__server__unknown_outcome_failover", "TRUE"), ("PATH", "/bin"), ("SMPPGW_LOG", "debug")],
    )
    .unwrap();
    assert!(config.server.unknown_outcome_failover);
}

#[test]
fn env_overrides_a_vendor_password_by_name() {
    let config = load_env(BASE, &[("SMPPGW__VENDOR__SIM__PASSWORD", "s3cret")]).unwrap();
    assert_eq!(config.vendors[0].password, "s3cret");
    // A '-' in a name is written '_' in the variable.
    let text = BASE.replace("name = \"sim\"", "name = \"sim-eu\"").replace("[\"sim\"]", "[\"sim-eu\"]");
    let config = load_env(&text, &[("SMPPGW__VENDOR__SIM_EU__PASSWORD", "other")]).unwrap();
    assert_eq!(config.vendors[0].password, "other");
    // Names may begin or end with '_' or '-': the name is all between the section and the field.
    for name in ["sim_", "sim-", "_sim", "-sim"] {
        let text = BASE
            .replace("name = \"sim\"", &format!("name = \"{name}\""))
            .replace("[\"sim\"]", &format!("[\"{name}\"]"));
        let var = format!("SMPPGW__VENDOR__{}__PASSWORD", name.to_ascii_uppercase().replace('-', "_"));
        let config = load_env(&text, &[(var.as_str(), "edge")]).unwrap_or_else(|e| panic!("{var}: {e}"));
        assert_eq!(config.vendors[0].password, "edge", "{var}");
    }
    assert!(load_env(BASE, &[("SMPPGW__VENDOR____PASSWORD", "x")]).is_err(), "no name");
    assert!(load_env(BASE, &[("SMPPGW__VENDOR__PASSWORD", "x")]).is_err(), "which vendor");
    let hash = config::hash_password("new");
    let config = load_env(BASE, &[("SMPPGW__CUSTOMER__DEMO__PASSWORD_HASH", &hash)]).unwrap();
    assert!(config::verify_password(&config.customers[0].password_hash, b"new"));
}

#[test]
fn an_override_naming_one_of_two_customers_spelt_apart_only_by_dash_and_underscore_reaches_it() {
    // Goal: customers `acme-eu` and `acme_eu` are two system_ids; the variable spelt with '_'
    // names `acme_eu` (it used to be refused as matching both), and the other stays as it was.
    let two = BASE.replace(
        "[[customer]]\nsystem_id = \"demo\"\npassword_hash = \"HASH\"\n",
        "[[customer]]\nsystem_id = \"acme-eu\"\npassword_hash = \"HASH\"\n\n[[customer]]\nsystem_id = \"acme_eu\"\npassword_hash = \"HASH\"\n",
    );
    let config = load_env(&two, &[("SMPPGW__CUSTOMER__ACME_EU__THROUGHPUT", "5")]).unwrap();
    let by = |id: &str| config.customers.iter().find(|c| c.system_id == id).map(|c| c.throughput);
    assert_eq!(by("acme_eu"), Some(5));
    assert_ne!(by("acme-eu"), Some(5));
}

#[test]
fn a_listen_port_taken_by_the_default_http_port_is_reported_at_listens_line() {
    // Goal: the line named is the one the operator wrote (`listen`), not `[server]`, when
    // `http_listen` is left at its default (127.0.0.1:8080).
    let text = BASE.replace("listen = \"127.0.0.1:2775\"", "cores = 2\nlisten = \"0.0.0.0:8080\"");
    assert_one_error(&text, "f.toml:3: ", "take the same port");
}

#[test]
fn two_overrides_of_one_setting_differing_only_in_case_are_an_error() {
    // Goal: `SMPPGW__SERVER__CORES=70 smppgw__server__cores=2` used to pass, one of them
    // silently winning (and 70, out of range, never checked).
    let err = load_env(BASE, &[("SMPPGW__SERVER__CORES", "70"), ("smppgw__server__cores", "2")])
        .expect_err("ambiguous");
    let text = err.to_string();
    assert!(text.contains("sets the same setting"), "{text}");
}

#[test]
fn two_overrides_of_one_item_spelt_with_dash_and_underscore_are_an_error() {
    // Goal: for vendor `carrier-a`, SMPPGW__VENDOR__CARRIER-A__WINDOW=0 and
    // SMPPGW__VENDOR__CARRIER_A__WINDOW=5 name the same setting: they passed, the `_` one
    // winning by byte order and the invalid 0 never checked.
    let text = BASE.replace("name = \"sim\"", "name = \"carrier-a\"").replace("[\"sim\"]", "[\"carrier-a\"]");
    assert!(load_env(&text, &[("SMPPGW__VENDOR__CARRIER_A__WINDOW", "5")]).is_ok());
    let err = load_env(
        &text,
        &[("SMPPGW__VENDOR__CARRIER-A__WINDOW", "0"), ("SMPPGW__VENDOR__CARRIER_A__WINDOW", "5")],
    )
    .expect_err("ambiguous");
    let text = err.to_string();
    assert!(text.contains("sets the same setting"), "{text}");
}

#[test]
fn env_overrides_a_route_vendor_list() {
    let text = format!(
        "{BASE}\n[[vendor]]\nname = \"b\"\nhost = \"h\"\nport = 1\nsystem_id = \"s\"\npassword = \"p\"\n"
    );
    let config = load_env(&text, &[("SMPPGW__ROUTE__DEFAULT__VENDORS", "b, sim")]).unwrap();
    assert_eq!(
        config.routes[0].vendors,
        vec![
            RouteVendor { name: "b".into(), priority: 0, weight: 1 },
            RouteVendor { name: "sim".into(), priority: 1, weight: 1 },
        ]
    );
    let config = load_env(
        &text,
        &[(
            "SMPPGW__ROUTE__DEFAULT__VENDORS",
            "[{ name = \"b\", weight = 2 }, { name = \"sim\", priority = 0 }]",
        )],
    )
    .unwrap();
    assert_eq!(
        config.routes[0].vendors,
        vec![
            RouteVendor { name: "b".into(), priority: 0, weight: 2 },
            RouteVendor { name: "sim".into(), priority: 0, weight: 1 },
        ]
    );
    let config = load_env(&text, &[("SMPPGW__CUSTOMER__DEMO__ALLOWED_IPS", "10.0.0.0/8,::1")]).unwrap();
    assert_eq!(
        config.customers[0].allowed_ips,
        vec!["10.0.0.0/8".parse::<Cidr>().unwrap(), "::1".parse().unwrap()]
    );
}

#[test]
fn env_naming_an_unknown_setting_or_item_is_an_error() {
    let err = load_env(BASE, &[("SMPPGW__SERVER__LISTN", "0.0.0.0:1")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "env:SMPPGW__SERVER__LISTN: server has no field 'listn'; did you mean 'listen'?"
    );
    assert_eq!(err.errors()[0].kind, ErrorKind::Environment);
    let err = load_env(BASE, &[("SMPPGW__VENDOR__TWILIO__PASSWORD", "x")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "env:SMPPGW__VENDOR__TWILIO__PASSWORD: there is no vendor named 'TWILIO' (names ignore case); defined: sim"
    );
    let err = load_env(BASE, &[("SMPPGW__VENDORS__SIM__PASSWORD", "x"), ("SMPPGW__SERVER__CORES", "two")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("env:SMPPGW__SERVER__CORES: cores expects a whole number, not 'two'"), "{err}");
    assert!(
        err.contains("env:SMPPGW__VENDORS__SIM__PASSWORD: unknown section 'VENDORS'; did you mean 'vendor'?"),
        "{err}"
    );
    let err = load_env(BASE, &[("SMPPGW__VENDOR__PASSWORD", "x")]).unwrap_err().to_string();
    assert!(err.contains("does not say which vendor"), "{err}");
}

#[test]
fn env_values_are_checked_like_file_values_and_blamed_on_the_variable() {
    let err = load_env(BASE, &[("SMPPGW__SERVER__CORES", "100")]).unwrap_err();
    assert_eq!(err.errors()[0].location, Location::Env("SMPPGW__SERVER__CORES".into()));
    assert!(err.to_string().starts_with("env:SMPPGW__SERVER__CORES: [server]: cores = 100 is out of range"));
    let err = load_env(BASE, &[("SMPPGW__VENDOR__SIM__BIND_TYPE", "rx")]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("env:SMPPGW__VENDOR__SIM__BIND_TYPE: vendor 'sim': bind_type 'rx' is not one of")
    );
    let err = load_env(BASE, &[("SMPPGW__ROUTE__DEFAULT__VENDORS", "sim,twilio")]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("env:SMPPGW__ROUTE__DEFAULT__VENDORS: route 'default' names vendor 'twilio'")
    );
}

#[test]
fn a_vendor_host_with_a_port_or_a_scheme_is_refused_and_ip_literals_pass() {
    // Goal: `host = "10.0.0.1:2775"` passed and the vendor was reconnected to for ever at
    // "10.0.0.1:2775:2776"; the port has its own setting.
    for bad in ["10.0.0.1:2775", "smpp://smsc.example", "smsc/1", "a b", ""] {
        let err = load_env(BASE, &[("SMPPGW__VENDOR__SIM__HOST", bad)]).unwrap_err();
        assert!(err.to_string().contains("must be a host name"), "{bad:?}: {err}");
    }
    for good in ["10.0.0.1", "::1", "[::1]", "smsc-1.example.com", "smsc_a"] {
        assert!(load_env(BASE, &[("SMPPGW__VENDOR__SIM__HOST", good)]).is_ok(), "{good:?}");
    }
}

#[test]
fn the_http_api_and_smpp_may_not_take_one_port_on_overlapping_addresses() {
    // Goal: check-config says what the start would fail on (the second bind of the port).
    for (smpp, http) in [("127.0.0.1:8080", "127.0.0.1:8080"), ("0.0.0.0:8080", "127.0.0.1:8080")] {
        let env = [("SMPPGW__SERVER__LISTEN", smpp), ("SMPPGW__SERVER__HTTP_LISTEN", http)];
        let err = load_env(BASE, &env).unwrap_err();
        assert!(err.to_string().contains("give the HTTP API its own port"), "{smpp} {http}: {err}");
    }
    let env =
        [("SMPPGW__SERVER__LISTEN", "127.0.0.1:8080"), ("SMPPGW__SERVER__HTTP_LISTEN", "127.0.0.2:8080")];
    assert!(load_env(BASE, &env).is_ok(), "distinct addresses may share a port number");
}

#[test]
fn overlapping_routes_are_found_whatever_the_order_or_repeats_of_their_filters() {
    // Goal: a route listing a customer twice is the same filter as one listing it once: the
    // second route could never be chosen, and is reported; a source prefix "+" (every source)
    // is refused.
    let text = format!(
        "{BASE}\n[[route]]\nname = \"r1\"\nprefixes = [\"44\"]\ncustomers = [\"demo\", \"demo\"]\nvendors = [\"sim\"]\n\n[[route]]\nname = \"r2\"\nprefixes = [\"44\"]\ncustomers = [\"demo\"]\nvendors = [\"sim\"]\n"
    );
    let lines = errors(&text);
    assert!(lines.iter().any(|l| l.contains("route 'r2'")), "{lines:?}");
    let text = format!(
        "{BASE}\n[[route]]\nname = \"r1\"\nprefixes = [\"44\"]\nsource_prefixes = [\"+\"]\nvendors = [\"sim\"]\n"
    );
    let lines = errors(&text);
    assert!(lines.iter().any(|l| l.contains("matches every source")), "{lines:?}");
}

#[test]
fn an_empty_item_in_a_comma_list_override_is_an_error_not_a_catch_all() {
    // Goal: `SMPPGW__ROUTE__X__PREFIXES=49,` (a trailing comma) must not add "", a prefix every
    // number has: it would route everything through that route. Only a TOML array may say "".
    for value in ["49,", "49,,44", ",49"] {
        let err = load_env(BASE, &[("SMPPGW__ROUTE__DEFAULT__PREFIXES", value)]).unwrap_err();
        assert!(err.to_string().contains("empty item"), "{value}: {err}");
    }
    let config = load_env(BASE, &[("SMPPGW__ROUTE__DEFAULT__PREFIXES", "49, 44")]).unwrap();
    assert_eq!(config.routes[0].prefixes, vec!["49".to_owned(), "44".to_owned()]);
    let config = load_env(BASE, &[("SMPPGW__ROUTE__DEFAULT__PREFIXES", "[\"\"]")]).unwrap();
    assert_eq!(config.routes[0].prefixes, vec![String::new()], "the TOML form may say every number");
}

// ---- passwords ---------------------------------------------------------------------------------

#[test]
fn hash_and_verify_round_trip() {
    let phc = config::hash_password("hunter2");
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    assert!(config::verify_password(&phc, b"hunter2"));
    assert!(!config::verify_password(&phc, b"hunter3"));
    assert_ne!(config::hash_password("hunter2"), phc, "every hash has its own salt");
}

#[test]
fn verify_fails_on_garbage_hashes_without_panicking() {
    for garbage in [
        "",
        "demo",
        "$",
        "$argon2id$",
        "$argon2id$v=19$m=19456,t=2,p=1$",
        "$md5$abc$def",
        "$argon2id$v=19$m=x,t=2,p=1$c2FsdA$aGFzaA",
    ] {
        assert!(!config::verify_password(garbage, b"demo"), "{garbage:?}");
    }
}

#[test]
fn allowed_ips_and_bind_types_answer_the_session_questions() {
    let text = BASE.replace(
        "password_hash = \"HASH\"",
        "password_hash = \"HASH\"\nallowed_ips = [\"192.0.2.0/24\", \"2001:db8::/32\"]\nbind_types = [\"receiver\"]",
    );
    let config = load(&text).unwrap();
    let demo = &config.customers[0];
    assert!(demo.allows_ip("192.0.2.9".parse().unwrap()));
    assert!(demo.allows_ip("::ffff:192.0.2.9".parse().unwrap()));
    assert!(demo.allows_ip("2001:db8::5".parse().unwrap()));
    assert!(!demo.allows_ip("198.51.100.1".parse().unwrap()));
    assert!(demo.allows_bind(BindType::Receiver));
    assert!(!demo.allows_bind(BindType::Transmitter));
    assert_eq!(demo.effective_window(config.server.window), 64);
    assert_eq!(config.server.effective_cores(8), 8);
}

// ---- 10DLC brands and campaigns ----------------------------------------------------------------

/// BASE plus a brand and a campaign: `[[brand]]` is line 19, `[[campaign]]` line 23.
const TEN_DLC: &str = r#"
[[brand]]
brand_id = "B1"
daily_cap_segments = 1000

[[campaign]]
campaign_id = "C1"
brand_id = "B1"
segments_per_minute = 60
source_prefixes = [
  "+15550001",
  "1555002",
]
"#;

fn with_10dlc() -> String {
    format!("{BASE}{TEN_DLC}")
}

#[test]
fn brands_and_campaigns_load_and_default_to_none() {
    // Goal: [[brand]] and [[campaign]] parse into the config; without them there are none.
    let config = load(&with_10dlc()).unwrap();
    assert_eq!(config.brands, vec![config::BrandConfig::new("B1", 1000)]);
    let c = config.campaign("C1").unwrap();
    assert_eq!((c.brand_id.as_str(), c.segments_per_minute), ("B1", 60));
    assert_eq!(c.source_prefixes, ["+15550001", "1555002"]);
    assert_eq!(config.brand("B1").unwrap().daily_cap_segments, 1000);
    // Only the required fields: no limit, no cap, no numbers.
    let minimal = format!(
        "{BASE}\n[[brand]]\nbrand_id = \"B\"\n\n[[campaign]]\ncampaign_id = \"C\"\nbrand_id = \"B\"\n"
    );
    let config = load(&minimal).unwrap();
    assert_eq!(config.brands, vec![config::BrandConfig::new("B", 0)]);
    assert_eq!(config.campaigns, vec![config::CampaignConfig::new("C", "B")]);
    assert!(load(BASE).unwrap().campaigns.is_empty());
    assert!(Config::embedded_default().brands.is_empty());
    // And back through TOML.
    let config = load(&with_10dlc()).unwrap();
    let written = toml::to_string(&config).unwrap();
    assert_eq!(Config::from_toml_str(&written, "written.toml"), Ok(config));
}

#[test]
fn a_campaign_naming_an_unknown_brand_points_at_its_brand_id() {
    let text = with_10dlc()
        .replace("campaign_id = \"C1\"\nbrand_id = \"B1\"", "campaign_id = \"C1\"\nbrand_id = \"b1\"");
    assert_one_error(
        &text,
        "f.toml:25: ",
        "campaign 'C1' names brand 'b1', which is not defined (did you mean 'B1'? references are \
         case-sensitive); defined brands: B1",
    );
}

#[test]
fn bad_and_shared_source_prefixes_point_at_their_element() {
    let text = with_10dlc().replace("\"1555002\"", "\"1555-002\"");
    assert_one_error(&text, "f.toml:29: ", "campaign 'C1': source prefix '1555-002' may only hold digits");
    let text = with_10dlc().replace("\"1555002\"", "\"+\"");
    assert_one_error(&text, "f.toml:29: ", "source prefix '+' is empty");
    let text = with_10dlc().replace("\"1555002\"", "\"155500200000000000000\"");
    assert_one_error(&text, "f.toml:29: ", "is 21 characters; an SMPP address has at most 20");
    // 10DLC numbers are North American: a prefix without the country code would never match.
    let text = with_10dlc().replace("\"1555002\"", "\"+5550020\"");
    assert_one_error(&text, "f.toml:29: ", "source prefix '+5550020' does not start with the country code 1");
    // The same number in another campaign, spelled with a '+': points at the second, names the first.
    let text = format!(
        "{}\n[[campaign]]\ncampaign_id = \"C2\"\nbrand_id = \"B1\"\nsource_prefixes = [\"+1555002\"]\n",
        with_10dlc()
    );
    assert_one_error(
        &text,
        "f.toml:35: ",
        "campaign 'C2': source prefix '+1555002' also belongs to campaign 'C1'; a number counts against one \
         campaign only; the first is at line 29",
    );
    // A longer prefix inside another campaign's shorter one is allowed: the longest match wins.
    let text = format!(
        "{}\n[[campaign]]\ncampaign_id = \"C2\"\nbrand_id = \"B1\"\nsource_prefixes = [\"15550029\"]\n",
        with_10dlc()
    );
    assert!(load(&text).is_ok());
}

#[test]
fn campaign_and_brand_ids_limits_and_fields_are_checked() {
    let text = format!("{}\n[[campaign]]\ncampaign_id = \"c1\"\nbrand_id = \"B1\"\n", with_10dlc());
    assert_one_error(
        &text,
        "f.toml:33: ",
        "campaign 'c1': campaign_id is defined twice (ids ignore case); the first is at line 24",
    );
    let text = format!("{}\n[[brand]]\nbrand_id = \"B1\"\n", with_10dlc());
    assert_one_error(&text, "f.toml:33: ", "brand 'B1': brand_id is defined twice");
    let text = with_10dlc().replace("campaign_id = \"C1\"", "campaign_id = \"C 1\"");
    assert_one_error(&text, "f.toml:24: ", "campaign 'C 1': campaign_id 'C 1' may only use letters, digits");
    let text = with_10dlc().replace("segments_per_minute = 60", "segments_per_minute = 70000000");
    assert_one_error(&text, "f.toml:26: ", "segments_per_minute = 70000000 is out of range 0..=60000000");
    let text = with_10dlc().replace("daily_cap_segments = 1000", "daily_cap_segments = 4100000000");
    assert_one_error(&text, "f.toml:21: ", "brand 'B1': daily_cap_segments = 4100000000 is out of range");
    let text = with_10dlc().replace("daily_cap_segments = 1000", "daily_cap_segments = -1");
    assert_one_error(&text, "f.toml:21: ", "daily_cap_segments = -1 must not be negative");
    let text = with_10dlc().replace("segments_per_minute = 60", "segments_per_min = 60");
    assert_one_error(
        &text,
        "f.toml:26: ",
        "campaign 'C1': unknown field 'segments_per_min'; did you mean 'segments_per_minute'?",
    );
    let text = with_10dlc().replace("campaign_id = \"C1\"\nbrand_id = \"B1\"\n", "campaign_id = \"C1\"\n");
    assert_one_error(&text, "f.toml:23: ", "campaign 'C1' is missing the required field 'brand_id'");
    let text = with_10dlc().replace("source_prefixes = [", "source_prefixes = \"1555\"\nx = [");
    assert!(
        errors(&text)
            .iter()
            .any(|l| l.starts_with("f.toml:27: campaign 'C1': source_prefixes must be a list"))
    );
    let text = format!("{BASE}\n[campaign]\ncampaign_id = \"C\"\n");
    assert_one_error(&text, "f.toml:19: ", "write [[campaign]] (double brackets)");
    let text = format!("{BASE}\n[[campaigns]]\ncampaign_id = \"C\"\n");
    assert_one_error(&text, "f.toml:19: ", "unknown section 'campaigns'; did you mean 'campaign'?");
}

#[test]
fn env_overrides_campaign_and_brand_settings() {
    let config = load_env(
        &with_10dlc(),
        &[
            ("SMPPGW__CAMPAIGN__C1__SEGMENTS_PER_MINUTE", "5"),
            ("SMPPGW__CAMPAIGN__C1__SOURCE_PREFIXES", "1666,+1777"),
            ("SMPPGW__BRAND__B1__DAILY_CAP_SEGMENTS", "0"),
        ],
    )
    .unwrap();
    let c = config.campaign("C1").unwrap();
    assert_eq!((c.segments_per_minute, c.source_prefixes.clone()), (5, vec!["1666".into(), "+1777".into()]));
    assert_eq!(config.brand("B1").unwrap().daily_cap_segments, 0);
    let err = load_env(&with_10dlc(), &[("SMPPGW__CAMPAIGN__C1__BRAND_ID", "B9")]).unwrap_err();
    assert!(
        err.to_string().starts_with("env:SMPPGW__CAMPAIGN__C1__BRAND_ID: campaign 'C1' names brand 'B9'"),
        "{err}"
    );
    let err = load_env(&with_10dlc(), &[("SMPPGW__CAMPAIGN__C9__SEGMENTS_PER_MINUTE", "1")]).unwrap_err();
    assert!(err.to_string().contains("there is no campaign named 'C9'"), "{err}");
}
