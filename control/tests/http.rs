//! End-to-end tests of the HTTP API: a real gateway (glommio cores) on an ephemeral port, the
//! simulator as its vendor, the control thread serving on 127.0.0.1:0, and a plain std TcpStream
//! HTTP/1.1 client that shows exactly what an operator or a scraper sees.

// Helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde_json::Value;
use smppgw_codec::{Address, Bind, Body, CommandStatus, Decoder, Pdu, SubmitSm};
use smppgw_control::http::{
    self, ApiState, Backend, CONNECTIONS_MAX, CONNECTIONS_PER_PEER_MAX, ControlThread, HttpConfig, HttpError,
    REQUEST_BODY_MAX_BYTES, ReloadFailure,
};
use smppgw_control::metrics::{METRIC_FAMILIES, check_exposition};
use smppgw_engine::config::{Config, CustomerConfig, IdFormat, RouteConfig, VendorConfig};

const TOKEN: &str = "t0ken-for-tests";

fn pw_hash() -> String {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| smppgw_engine::config::hash_password("pw")).clone()
}

/// One core; customers `c1` (hex ids) and `c2` (decimal ids), password "pw"; vendor `v1` at
/// `vendor` with two binds and a default route through it.
fn config(vendor: SocketAddr) -> Config {
    let mut cfg = Config::default();
    cfg.server.listen = "127.0.0.1:0".parse().unwrap();
    cfg.server.cores = 1;
    cfg.server.shutdown_grace_ms = 500;
    cfg.customers.push(CustomerConfig::new("c1", pw_hash()));
    let mut c2 = CustomerConfig::new("c2", pw_hash());
    c2.id_format = IdFormat::Decimal;
    cfg.customers.push(c2);
    let mut v = VendorConfig::new("v1", vendor.ip().to_string(), vendor.port(), "smppgw", "secret");
    v.binds = 2;
    v.reconnect_backoff_min_ms = 50;
    v.reconnect_backoff_max_ms = 200;
    cfg.vendors.push(v);
    cfg.routes.push(RouteConfig::new("default", &["v1"]));
    cfg
}

/// An HTTP answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Parses a whole HTTP/1.1 response (the connection was closed after it).
fn parse_reply(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no end of headers in {text:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Reply { status, headers, body: body.to_owned() }
}

/// One request on a fresh connection (`Connection: close`), read to the end.
fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect to the API");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the answer");
    parse_reply(&raw)
}

/// Reads one response from a kept-alive connection: the head, then `content-length` bytes.
fn read_one(s: &mut TcpStream) -> Reply {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "connection closed inside a response head");
        raw.push(byte[0]);
    }
    let head = parse_reply(&raw);
    let len: usize = head.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    Reply { body: String::from_utf8(body).unwrap(), ..head }
}

fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, &[], b"")
}

/// [`get`] with the admin token.
fn get_auth(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, &[("authorization", &format!("Bearer {TOKEN}"))], b"")
}

fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

fn start_api(cfg: HttpConfig, state: ApiState) -> ControlThread {
    http::spawn_control_thread(cfg, move || async move { Ok(state) }).expect("the control thread starts")
}

/// A blocking SMPP transmitter: binds, submits, reads the answers.
struct Smpp {
    stream: TcpStream,
    buf: BytesMut,
    seq: u32,
}

impl Smpp {
    fn bind_transmitter(addr: SocketAddr, system_id: &str, password: &str) -> Smpp {
        let stream = TcpStream::connect(addr).expect("connect to the gateway");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut c = Smpp { stream, buf: BytesMut::new(), seq: 0 };
        let bind = Bind {
            system_id: system_id.to_owned().into(),
            password: password.to_owned().into(),
            interface_version: 0x34,
            ..Default::default()
        };
        let r = c.call(Body::BindTransmitter(bind));
        assert_eq!(r.command_status, CommandStatus::ESME_ROK, "bind_transmitter as {system_id}");
        c
    }

    /// Sends `body` and returns the response with its sequence number.
    fn call(&mut self, body: Body) -> Pdu {
        self.seq += 1;
        let seq = self.seq;
        self.stream.write_all(&Pdu::new(seq, body).to_bytes()).unwrap();
        loop {
            while let Some(p) = Decoder::default().decode(&mut self.buf).expect("well-formed PDUs") {
                if p.sequence_number == seq && p.command_id().is_response() {
                    return p;
                }
                if let Body::EnquireLink = p.body {
                    self.stream
                        .write_all(&Pdu::new(p.sequence_number, Body::EnquireLinkResp).to_bytes())
                        .unwrap();
                }
            }
            let mut tmp = [0u8; 4096];
            let n = self.stream.read(&mut tmp).expect("a response within the read timeout");
            assert!(n > 0, "the gateway closed the connection");
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }

    /// Submits one message; returns the id the gateway gave it.
    fn submit(&mut self, dest: &str) -> String {
        let r = self.call(Body::SubmitSm(SubmitSm {
            source: Address::new(1, 1, "15550001"),
            dest: Address::new(1, 1, dest.to_owned()),
            short_message: "hello".to_owned().into(),
            ..Default::default()
        }));
        assert_eq!(r.command_status, CommandStatus::ESME_ROK, "submit_sm accepted");
        match r.body {
            Body::SubmitSmResp(m) => String::from_utf8(m.message_id.to_vec()).unwrap(),
            other => panic!("expected submit_sm_resp, got {other:?}"),
        }
    }
}

fn sim() -> smppgw_loadgen::sim::SimHandle {
    let mut cfg = smppgw_loadgen::sim::SimConfig::for_tests();
    cfg.cores = 1;
    smppgw_loadgen::sim::Simulator::start(cfg).expect("the simulator starts")
}

/// The value of the one sample `name{labels}` in a scrape.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn every_endpoint_against_a_gateway_with_a_bound_vendor() {
    // An operator sees the gateway ready, its vendor binds, customers, a message and the metrics,
    // and only the admin token reloads the config.
    let vendor = sim();
    let cfg = config(vendor.local_addr());
    let gw = smppgw_engine::start(cfg.clone()).expect("the gateway starts");
    let db_ok = Arc::new(AtomicBool::new(true));
    let refuse_next = Arc::new(AtomicBool::new(false));
    let more_cores = Arc::new(AtomicBool::new(false));
    let state = {
        let (control, refuse_next, more_cores) = (gw.control(), refuse_next.clone(), more_cores.clone());
        ApiState::for_gateway(&gw).with_backend(Backend::flag("db", db_ok.clone())).with_reload(move || {
            let (control, refuse, mut next) =
                (control.clone(), refuse_next.load(Ordering::Relaxed), cfg.clone());
            if more_cores.load(Ordering::Relaxed) {
                next.server.cores += 1;
            }
            async move {
                if refuse {
                    next.customers.push(CustomerConfig::new("", "x"));
                }
                control.reload(next).map_err(ReloadFailure::from)
            }
        })
    };
    let api = start_api(HttpConfig::new("127.0.0.1:0".parse().unwrap()).with_admin_token(TOKEN), state);
    let addr = api.local_addr();

    // Liveness, then readiness once a vendor bind is up.
    let r = get(addr, "/health");
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    assert!(wait_for(Duration::from_secs(10), || get(addr, "/ready").status == 200), "ready once v1 binds");
    let ready = get(addr, "/ready").json();
    assert_eq!(ready["ready"], true);
    assert!(ready["vendor_binds_up"].as_u64().unwrap() >= 1);
    assert_eq!(ready["backends"][0]["name"], "db");
    db_ok.store(false, Ordering::Relaxed);
    let r = get(addr, "/ready");
    assert_eq!(r.status, 200, "a backend down is reported, the node still serves from local state");
    let body = r.json();
    assert_eq!(
        (body["backends"][0]["ok"].as_bool(), body["backends"][0]["error"].as_str()),
        (Some(false), Some("unreachable"))
    );
    db_ok.store(true, Ordering::Relaxed);

    // Vendors.
    assert!(wait_for(Duration::from_secs(10), || {
        get(addr, "/api/v1/vendors").json()["vendors"][0]["binds_up"] == 2
    }));
    let v = get(addr, "/api/v1/vendors").json();
    let v1 = &v["vendors"][0];
    assert_eq!(v1["name"], "v1");
    assert_eq!(v1["host"], "127.0.0.1");
    assert_eq!(v1["port"], vendor.local_addr().port());
    let binds = v1["binds"].as_array().unwrap();
    assert_eq!(binds.len(), 2);
    for (i, b) in binds.iter().enumerate() {
        assert_eq!(b["slot"], i);
        assert_eq!(b["core"], 0);
        assert_eq!(b["state"], "up");
        assert_eq!(b["window"], 64);
        for key in ["load", "capacity", "effective_capacity", "sent", "reconnects"] {
            assert!(b[key].is_u64(), "{key} in {b}");
        }
        assert_eq!(b["slowed"], false);
        assert!(b["last_error"].is_null());
    }

    // A customer binds and submits; the API shows the session and then the message.
    let mut smpp = Smpp::bind_transmitter(gw.local_addr, "c1", "pw");
    let c = get(addr, "/api/v1/customers").json();
    let c1 = c["customers"].as_array().unwrap().iter().find(|c| c["system_id"] == "c1").unwrap().clone();
    assert_eq!(c1["bound_sessions"], 1);
    assert_eq!(c1["bind_types"], serde_json::json!(["transmitter", "receiver", "transceiver"]));
    assert_eq!(c1["id_format"], "hex");
    assert!(c1["throughput_limit"].is_u64() && c1["max_binds"].is_u64());
    // Pages: bounded, with where the next one starts.
    let total = c["total"].as_u64().unwrap();
    assert!(total >= 2 && c.get("next_offset").is_none(), "one page holds them all: {c}");
    let first = get(addr, "/api/v1/customers?limit=1").json();
    assert_eq!((first["customers"].as_array().unwrap().len(), first["next_offset"].as_u64()), (1, Some(1)));
    let last = get(addr, &format!("/api/v1/customers?offset={}&limit=1", total - 1)).json();
    assert_eq!(last["customers"].as_array().unwrap().len(), 1);
    assert!(last.get("next_offset").is_none());
    assert_eq!(get(addr, "/api/v1/customers?limit=lots").status, 400);
    let id = smpp.submit("15559999");
    let path = format!("/api/v1/messages/{id}");
    // A message is a customer's data: with a token configured, reading it takes the token.
    assert_eq!(get(addr, &path).status, 401);
    assert!(
        wait_for(Duration::from_secs(5), || get_auth(addr, &path).status == 200),
        "the stored message is found (the store write is asynchronous)"
    );
    let m = get_auth(addr, &path).json();
    assert_eq!(m["id"], id.as_str());
    assert_eq!(m["customer"], "c1");
    assert_eq!(m["vendor"], "v1");
    assert!(!m["vendor_id"].as_str().unwrap().is_empty());
    assert!(m["state"].is_string() && m["final"].is_boolean());
    assert!(m["submitted_unix"].as_u64().unwrap() > 1_700_000_000);
    assert!(m["submitted_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(get_auth(addr, &format!("{path}?customer=c1")).status, 200);
    assert_ne!(get_auth(addr, &format!("{path}?customer=c2")).status, 200, "not c2's message");
    assert_eq!(get_auth(addr, "/api/v1/messages/ffffffffffffffff").status, 404);
    assert_eq!(get_auth(addr, "/api/v1/messages/not-an-id").status, 400);
    // A customer filter that cannot be decoded is refused, not read as "any customer".
    assert_eq!(get_auth(addr, &format!("{path}?customer=%zz")).status, 400);
    assert_eq!(get_auth(addr, &format!("{path}?customer=%ff")).status, 400, "not UTF-8");
    assert_eq!(
        get_auth(addr, "/api/v1/messages/fffffffffffffffffff").status,
        400,
        "19 hex digits: too large"
    );

    // Metrics.
    let r = get(addr, "/metrics");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    let families = check_exposition(&r.body).unwrap_or_else(|e| panic!("{e}\n{}", r.body));
    let declared: BTreeSet<String> = METRIC_FAMILIES.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(families, declared);
    assert!(sample(&r.body, "smppgw_submits_accepted_total").unwrap() >= 1.0);
    assert_eq!(sample(&r.body, "smppgw_vendor_bind_up{vendor=\"v1\",slot=\"0\",core=\"0\"}"), Some(1.0));
    assert_eq!(sample(&r.body, "smppgw_customer_binds{customer=\"c1\"}"), Some(1.0));
    assert!(sample(&r.body, "smppgw_submit_latency_seconds_count").unwrap() >= 1.0);
    drop(smpp);

    // Reload: the token rule, success, refusal with reasons.
    let reload = |auth: Option<&str>| {
        let h = auth.map(|t| ("authorization", format!("Bearer {t}")));
        let headers: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        request(addr, "POST", "/api/v1/config/reload", &headers, b"")
    };
    let before = get(addr, "/ready").json()["config_version"].as_u64().unwrap();
    let r = reload(None);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(reload(Some("wrong")).status, 401);
    let r = reload(Some(TOKEN));
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(j["version"].as_u64(), Some(before + 1));
    assert_eq!(j["applied_everywhere"], true);
    assert!(j.get("pending_restart").is_none(), "{j}");
    // A setting only a restart applies: kept at its running value, and said so.
    more_cores.store(true, Ordering::Relaxed);
    let j = reload(Some(TOKEN)).json();
    assert_eq!(j["pending_restart"], serde_json::json!(["cores"]), "{j}");
    assert_eq!(get(addr, "/ready").json()["pending_restart"], serde_json::json!(["cores"]));
    assert_eq!(get(addr, "/ready").status, 200, "not a reason to be unready");
    more_cores.store(false, Ordering::Relaxed);
    let j = reload(Some(TOKEN)).json();
    assert!(j.get("pending_restart").is_none(), "back to the running value: {j}");
    assert!(get(addr, "/ready").json().get("pending_restart").is_none());
    let before = before + 2;
    refuse_next.store(true, Ordering::Relaxed);
    let r = reload(Some(TOKEN));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(!r.json()["reasons"].as_array().unwrap().is_empty());
    assert_eq!(
        get(addr, "/ready").json()["config_version"].as_u64(),
        Some(before + 1),
        "the refused config is not applied"
    );
    let big = vec![b'x'; REQUEST_BODY_MAX_BYTES + 1];
    let auth = format!("Bearer {TOKEN}");
    assert_eq!(request(addr, "POST", "/api/v1/config/reload", &[("authorization", &auth)], &big).status, 413);
    let r = get(addr, "/api/v1/config/reload");
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    assert_eq!(get(addr, "/nope").status, 404);

    api.stop().expect("the control thread stops cleanly");
    assert!(TcpStream::connect(addr).is_err(), "nothing listens after stop");
    gw.shutdown();
    gw.join();
}

#[test]
fn a_core_that_stops_running_fails_the_liveness_probe() {
    // The cores of a running gateway tick: /health is 200 and each core's age is shown.
    let sim = sim();
    let gw = smppgw_engine::start(config(sim.local_addr())).expect("the gateway starts");
    let limit = Duration::from_millis(300);
    let api = start_api(
        HttpConfig::new("127.0.0.1:0".parse().unwrap()),
        ApiState::for_gateway(&gw).with_core_stall_limit(limit),
    );
    let addr = api.local_addr();
    thread::sleep(limit * 2);
    assert_eq!(get(addr, "/health").status, 200, "the real cores tick every 10 ms");
    let m = get(addr, "/metrics").body;
    let age = sample(&m, "smppgw_core_tick_age_seconds{core=\"0\"}");
    assert!(age.is_some_and(|a| a < 0.3), "{age:?}");
    assert_eq!(sample(&m, "smppgw_core_tick_age_seconds{core=\"1\"}"), None, "one core configured");

    // Counters whose core stopped ticking (a core hung without panicking): /health and /ready
    // fail, naming it, and recover when it ticks again.
    let metrics = Arc::new(smppgw_engine::metrics::Metrics::default());
    let stuck = start_api(
        HttpConfig::new("127.0.0.1:0".parse().unwrap()),
        ApiState::new(gw.control(), metrics.clone()).with_core_stall_limit(limit),
    );
    let stuck_addr = stuck.local_addr();
    assert_eq!(get(stuck_addr, "/health").status, 200, "a core not started yet is not judged");
    metrics.core_ticks.beat(0);
    assert_eq!(get(stuck_addr, "/health").status, 200);
    thread::sleep(limit * 2);
    let r = get(stuck_addr, "/health");
    assert_eq!(r.status, 503);
    assert!(r.body.starts_with("executor core 0 has not run for "), "{}", r.body);
    let r = get(stuck_addr, "/ready");
    assert_eq!(r.status, 503);
    let reasons = r.json()["reasons"].as_array().unwrap().clone();
    assert!(reasons.iter().any(|x| x.as_str().unwrap().starts_with("executor core 0")), "{reasons:?}");
    metrics.core_ticks.beat(0);
    assert_eq!(get(stuck_addr, "/health").status, 200, "ticking again");

    stuck.stop().unwrap();
    api.stop().unwrap();
    gw.shutdown();
    gw.join();
}

#[test]
fn unready_without_a_bound_vendor_and_bounded_connections() {
    // A gateway whose only vendor is unreachable is live but not ready, and says why; the API
    // serves at most CONNECTIONS_MAX connections; without a reload source reload answers 501.
    let dead: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let gw = smppgw_engine::start(config(dead)).expect("the gateway starts");
    let api = start_api(HttpConfig::new("127.0.0.1:0".parse().unwrap()), ApiState::for_gateway(&gw));
    let addr = api.local_addr();

    // Several requests on one kept-alive connection; HEAD answers without a body.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nhost: t\r\n\r\n").unwrap();
    let r = read_one(&mut s);
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    s.write_all(b"GET /api/v1/customers HTTP/1.1\r\nhost: t\r\n\r\n").unwrap();
    assert_eq!(read_one(&mut s).json()["customers"].as_array().unwrap().len(), 2);
    s.write_all(b"HEAD /health HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n").unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let r = parse_reply(&rest);
    assert_eq!((r.status, r.body.as_str()), (200, ""), "HEAD has no body");

    let r = get(addr, "/ready");
    assert_eq!(r.status, 503);
    let j = r.json();
    assert_eq!(j["ready"], false);
    assert_eq!(j["vendor_binds_up"], 0);
    assert_eq!(j["reasons"][0], "none of the 2 vendor binds is up");
    let v = get(addr, "/api/v1/vendors").json();
    assert!(v["vendors"][0]["binds"].as_array().unwrap().iter().all(|b| b["state"] == "down"));
    let m = get(addr, "/metrics").body;
    assert_eq!(sample(&m, "smppgw_vendor_bind_up{vendor=\"v1\",slot=\"1\",core=\"0\"}"), Some(0.0));
    // No token configured (loopback): POST is allowed, but there is nothing to reload from.
    assert_eq!(request(addr, "POST", "/api/v1/config/reload", &[], b"").status, 501);

    // One client holding idle connections: past its share it is refused with 503, and another
    // client (a probe) is still served.
    let from = |ip: [u8; 4]| {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&SocketAddr::from((ip, 0)).into()).unwrap();
        s.connect(&addr.into()).unwrap();
        TcpStream::from(s)
    };
    let hog: Vec<TcpStream> = (0..CONNECTIONS_PER_PEER_MAX).map(|_| from([127, 0, 0, 1])).collect();
    assert!(
        wait_for(Duration::from_secs(5), || get(addr, "/api/v1/vendors").status == 503),
        "the client holding its share is refused"
    );
    let r = get(addr, "/metrics");
    assert_eq!((r.status, r.json()["error"].as_str()), (503, Some("too many connections")));
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(get(addr, "/health").status, 200, "past its share, the probes are still answered");
    assert_eq!(get(addr, "/ready").json()["reasons"][0], "none of the 2 vendor binds is up");
    let mut probe = from([127, 0, 0, 2]);
    probe.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    probe.write_all(b"GET /health HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n").unwrap();
    let mut reply = Vec::new();
    probe.read_to_end(&mut reply).unwrap();
    assert_eq!(parse_reply(&reply).status, 200, "another client is served");
    // Every slot taken (by several clients): anyone's next connection is refused with 503.
    let others: Vec<TcpStream> = (CONNECTIONS_PER_PEER_MAX..CONNECTIONS_MAX)
        .map(|i| from([127, 0, 1, (i / CONNECTIONS_PER_PEER_MAX) as u8]))
        .collect();
    let late = |path: &str| {
        let mut late = from([127, 0, 2, 1]);
        late.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        late.write_all(format!("GET {path} HTTP/1.1\r\nhost: t\r\n\r\n").as_bytes()).unwrap();
        let mut reply = Vec::new();
        let _ = late.read_to_end(&mut reply);
        parse_reply(&reply)
    };
    assert_eq!(late("/metrics").status, 503, "all {CONNECTIONS_MAX} taken");
    // A liveness probe must not fail because clients hold every slot: the pod would be killed.
    let r = late("/health");
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "ok\n"),
        "all {CONNECTIONS_MAX} taken, the probe still answered"
    );
    assert_eq!(late("/ready").status, 503, "answered, unready for its own reason (no vendor bind)");
    assert_eq!(late("/ready").json()["ready"], false);
    drop((hog, others));
    assert!(wait_for(Duration::from_secs(5), || get(addr, "/health").status == 200), "slots come back");

    // serve() itself refuses a non-loopback address without a token, before binding.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let open = HttpConfig::new("0.0.0.0:0".parse().unwrap());
    let r = rt.block_on(http::serve(open, ApiState::for_gateway(&gw), std::future::pending()));
    assert!(matches!(r, Err(HttpError::TokenRequired { .. })), "{r:?}");

    api.stop().unwrap();
    gw.shutdown();
    gw.join();
}

#[test]
fn a_client_that_sends_requests_and_never_reads_the_answers_loses_its_connection() {
    // Goal: a client pipelining requests without reading holds its connection slot for about
    // WRITE_STALL_MS (the answers stall), not the 80 s of a connection's lifetime and its last
    // request's grace.
    let gw = smppgw_engine::start(config("127.0.0.1:1".parse().unwrap())).expect("the gateway starts");
    let api = start_api(HttpConfig::new("127.0.0.1:0".parse().unwrap()), ApiState::for_gateway(&gw));
    let addr = api.local_addr();
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.connect(&addr.into()).unwrap();
    let mut s = TcpStream::from(s);
    s.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    let started = Instant::now();
    let closed = loop {
        if started.elapsed() > Duration::from_secs(40) {
            break false;
        }
        // Each answer is a whole /metrics page: the client's window fills at once.
        match s.write_all(b"GET /metrics HTTP/1.1\r\nhost: t\r\n\r\n") {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break true,
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(closed, "closed well before the connection's lifetime ran out");
    api.stop().unwrap();
    gw.shutdown();
    gw.join();
}

#[test]
fn the_control_thread_refuses_unsafe_configurations() {
    // Non-loopback without a token, or with an unusable token, never starts; with a token it may.
    let never = || async { Err::<ApiState, String>("build must not run".to_owned()) };
    let open = HttpConfig::new("0.0.0.0:0".parse().unwrap());
    let r = http::spawn_control_thread(open.clone(), never);
    assert!(matches!(r, Err(HttpError::TokenRequired { .. })), "{r:?}");
    let r = http::spawn_control_thread(open.clone().with_admin_token(""), never);
    assert!(matches!(r, Err(HttpError::InvalidToken { .. })), "{r:?}");
    let r = http::spawn_control_thread(open.clone().with_admin_token("has space"), never);
    assert!(matches!(r, Err(HttpError::InvalidToken { .. })), "{r:?}");
    assert!(open.with_admin_token(TOKEN).validate().is_ok());
    assert!(format!("{:?}", HttpConfig::default().with_admin_token(TOKEN)).contains("<redacted>"));
    // A failing setup is reported by spawn, and nothing keeps listening.
    let r = http::spawn_control_thread(HttpConfig::new("127.0.0.1:0".parse().unwrap()), never);
    assert!(matches!(r, Err(HttpError::Setup(ref m)) if m == "build must not run"), "{r:?}");
}
