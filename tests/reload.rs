//! Hot reload on the engine side: a new config reaches every core without dropping sessions;
//! changed vendors are rebound, removed customers unbound, routes apply to the next message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Client, config, http_post, sim, wait_for, wait_vendors_up};
use smppgw_codec::{Body, CommandStatus, Pdu};
use smppgw_engine::config::{BindType, Config, CustomerConfig, RouteConfig};

#[test]
fn reload_switches_routes_rebinds_changed_vendors_and_unbinds_removed_customers() {
    let a = sim(|_| {});
    let b = sim(|_| {});
    let cfg = config(&[("a", a.local_addr()), ("b", b.local_addr())]);
    let gw = smppgw_engine::start(cfg.clone()).unwrap();
    let ctl = gw.control();
    let mut c1 = Client::connect(gw.local_addr);
    assert_eq!(c1.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    let mut c2 = Client::connect(gw.local_addr);
    assert_eq!(c2.bind("trx", "c2", "pw"), CommandStatus::ESME_ROK);
    assert!(
        wait_for(Duration::from_secs(10), || a.stats().binds_current >= 2 && b.stats().binds_current >= 2)
    );
    assert!(c1.submit("15550000001", "to a").0.is_ok());
    assert_eq!(a.stats().submits, 1);

    // Route everything to b first, drop customer c2.
    let mut next = cfg.clone();
    next.routes = vec![RouteConfig::new("default", &["b", "a"])];
    next.customers.retain(|c| c.system_id != "c2");
    let v = ctl.reload(next.clone()).unwrap();
    assert!(wait_for(Duration::from_secs(10), || ctl.applied_everywhere(v)), "applied on every core");
    assert!(c1.submit("15550000002", "to b").0.is_ok(), "the bound session survived the reload");
    assert_eq!(b.stats().submits, 1);
    // c2 is unbound by the gateway.
    let mut unbound = false;
    while let Some(p) = c2.try_recv() {
        if let Body::Unbind = p.body {
            unbound = true;
            c2.send(&smppgw_codec::Pdu::new(p.sequence_number, Body::UnbindResp));
        }
    }
    assert!(unbound, "removed customer is unbound");

    // A changed vendor (its window) is rebound; unchanged b keeps its binds.
    let b_binds = b.stats().binds_total;
    let a_binds = a.stats().binds_total;
    next.vendors[0].window = 32;
    let v = ctl.reload(next.clone()).unwrap();
    assert!(wait_for(Duration::from_secs(10), || ctl.applied_everywhere(v)), "applied on every core");
    assert!(wait_for(Duration::from_secs(10), || a.stats().binds_total >= a_binds + 2), "a rebound");
    assert_eq!(b.stats().binds_total, b_binds, "b untouched");

    // A bad config is refused and the running one stays.
    let mut bad = next.clone();
    bad.routes = vec![RouteConfig::new("default", &["nope"])];
    assert!(ctl.reload(bad).is_err());
    assert!(c1.submit("15550000003", "still b").0.is_ok());
    assert_eq!(b.stats().submits, 2);
    gw.shutdown();
    gw.join();
}

#[test]
fn post_reload_of_the_toml_file_gives_one_reason_per_error_and_503_when_the_file_is_gone() {
    // Goal: the binary's TOML reload (POST /api/v1/config/reload) answers as control/API.md
    // says: 400 with one reason per validation error, each naming its line; 503 when the file
    // cannot be read (the source is unreachable: retry later); 200 with the new version.
    let v1 = sim(|_| {});
    let [smpp, http] = {
        let held: Vec<std::net::TcpListener> =
            (0..2).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        [held[0].local_addr().unwrap().port(), held[1].local_addr().unwrap().port()]
    };
    let dir = std::env::temp_dir().join(format!("smppgw-toml-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml = dir.join("gateway.toml");
    let good = |throughput: u32| {
        format!(
            "[server]\nlisten = \"127.0.0.1:{smpp}\"\nhttp_listen = \"127.0.0.1:{http}\"\ncores = 2\n\n\
             [[customer]]\nsystem_id = \"c1\"\npassword_hash = \"{}\"\nthroughput = {throughput}\n\n\
             [[vendor]]\nname = \"v1\"\nhost = \"127.0.0.1\"\nport = {}\nsystem_id = \"smppgw\"\npassword = \"secret\"\n\n\
             [[route]]\nname = \"default\"\nprefixes = [\"\"]\nvendors = [\"v1\"]\n",
            common::pw_hash(),
            v1.local_addr().port()
        )
    };
    std::fs::write(&toml, good(100)).unwrap();
    let mut gw = std::process::Command::new(env!("CARGO_BIN_EXE_smppgw"))
        .arg("--config")
        .arg(&toml)
        .env_remove("SMPPGW_DATABASE_URL")
        .env_remove("SMPPGW_REDIS_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let http_addr = std::net::SocketAddr::from(([127, 0, 0, 1], http));
    assert!(
        wait_for(Duration::from_secs(15), || std::net::TcpStream::connect(http_addr).is_ok()),
        "HTTP API up"
    );

    // Two validation errors, on two lines.
    std::fs::write(&toml, good(100) + "\n[[customer]]\nsystem_id = \"\"\npassword_hash = \"x\"\n\n[[route]]\nname = \"bad\"\nprefixes = [\"33\"]\nvendors = [\"nope\"]\n").unwrap();
    let (status, body) = http_post(http_addr, "/api/v1/config/reload");
    assert_eq!(status, 400, "refused: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "configuration refused", "{body}");
    let reasons: Vec<&str> = v["reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert!(reasons.len() >= 2, "one reason per error: {reasons:?}");
    assert!(reasons.iter().all(|r| !r.contains('\n')), "{reasons:?}");
    assert!(
        reasons.iter().all(|r| r.starts_with(&format!("{}:", toml.display()))),
        "each names its line: {reasons:?}"
    );

    // The file is gone: the source is unreachable, not the configuration wrong.
    std::fs::remove_file(&toml).unwrap();
    let (status, body) = http_post(http_addr, "/api/v1/config/reload");
    assert_eq!(status, 503, "unavailable: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "reload unavailable", "{body}");
    assert!(body.contains("gateway.toml"), "says which file: {body}");

    // Back, valid and changed: applied.
    std::fs::write(&toml, good(200)).unwrap();
    let (status, body) = http_post(http_addr, "/api/v1/config/reload");
    assert_eq!(status, 200, "applied: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["applied_everywhere"], true, "{body}");

    // SAFETY: a signal to our own child.
    unsafe { libc::kill(gw.id() as i32, libc::SIGTERM) };
    assert!(gw.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn vendor_binds_replaced_under_traffic_leave_no_load_behind() {
    // Goal: messages on their way from one core to a vendor bind on the other while a reload
    // replaces that vendor's binds are counted off the bind they were counted on; the new binds
    // start, and end, with nothing counted (a miscount once left a new bind "full" for good:
    // its load wrapped below zero, and every message of the route got ESME_RTHROTTLED).
    use std::sync::atomic::{AtomicBool, Ordering};
    let v = sim(|s| s.faults.resp_latency = smppgw_loadgen::sim::Delay::Fixed(Duration::from_millis(2)));
    let mut cfg = config(&[("v", v.local_addr())]);
    cfg.vendors[0].window = 2;
    cfg.vendors[0].binds = 2;
    let gw = smppgw_engine::start(cfg.clone()).unwrap();
    assert!(wait_for(Duration::from_secs(10), || v.stats().binds_current >= 2));
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let (stop, addr) = (stop.clone(), gw.local_addr);
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
                let mut i = 0u32;
                while !stop.load(Ordering::Acquire) {
                    // Eight at a time, more than the binds' windows, so that cores hand work
                    // to each other's binds.
                    for k in 0..8 {
                        let (_, p) = c.submit_pdu(&format!("15557{t}{i:05}{k}"), "x");
                        c.send(&p);
                    }
                    // In whatever order they come (a refusal overtakes a message at the vendor).
                    for _ in 0..8 {
                        let p = c.recv().expect("every submit answered");
                        assert!(matches!(p.body, Body::SubmitSmResp(_)), "{p:?}");
                    }
                    i += 1;
                }
            })
        })
        .collect();
    for round in 0..12u32 {
        std::thread::sleep(Duration::from_millis(100));
        // The window is part of a bind's connection settings: every reload replaces the binds.
        cfg.vendors[0].window = 2 + round % 2;
        let version = gw.control().reload(cfg.clone()).unwrap();
        assert!(
            wait_for(Duration::from_secs(10), || gw.control().applied_everywhere(version)),
            "round {round}"
        );
    }
    stop.store(true, Ordering::Release);
    for s in senders {
        s.join().unwrap();
    }
    let loads = || {
        let snap = gw.control().current();
        let v = snap.vendors.iter().flatten().find(|v| v.cfg.name == "v").unwrap().clone();
        v.slots.iter().map(|s| s.load.load(Ordering::Relaxed)).collect::<Vec<u32>>()
    };
    assert!(wait_for(Duration::from_secs(10), || loads().iter().all(|&l| l == 0)), "loads {:?}", loads());
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert_eq!(c.submit("15557999999", "after").0, CommandStatus::ESME_ROK);
    gw.shutdown();
    gw.join();
}

#[test]
fn a_reload_reaches_every_core_even_when_one_has_a_full_control_queue() {
    // Goal: a core whose control queue is full (lookups and receipts from the control plane
    // pile up) still switches to a new configuration, and the reload is never refused half
    // applied (it used to be refused with the cores before that one already switched).
    let v = sim(|_| {});
    let mut cfg = config(&[("v", v.local_addr())]);
    let gw = smppgw_engine::start(cfg.clone()).unwrap();
    let control = gw.control();
    let (tx, _rx) = crossbeam_channel::bounded(100_000);
    let mut queued = 0;
    while control
        .send_to_core(1, smppgw_engine::runtime::Control::Lookup { shown_id: 1, reply: tx.clone() })
        .is_ok()
    {
        queued += 1;
        assert!(queued < 100_000, "the control queue is bounded");
    }
    cfg.customers[0].throughput = 7;
    let version = control.reload(cfg).expect("not refused");
    assert!(wait_for(Duration::from_secs(10), || control.applied_everywhere(version)), "every core runs it");
    let snap = control.current();
    assert_eq!(snap.version, version);
    gw.shutdown();
    gw.join();
}

#[test]
fn a_reloaded_keepalive_interval_applies_to_the_sessions_already_bound() {
    // Goal: the server's session settings changed by a reload (here enquire_link_interval_ms,
    // from one hour to one second) apply to sessions already open, not only to new ones: the
    // bound customer gets its enquire_link within seconds, not after the old hour.
    let v = sim(|_| {});
    let mut cfg = config(&[("v", v.local_addr())]);
    cfg.server.enquire_link_interval_ms = 3_600_000;
    cfg.server.session_timeout_ms = 7_200_000;
    let gw = smppgw_engine::start(cfg.clone()).unwrap();
    let ctl = gw.control();
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    let mut next = cfg.clone();
    next.server.enquire_link_interval_ms = 1_000;
    next.server.session_timeout_ms = 60_000;
    let version = ctl.reload(next).unwrap();
    assert!(wait_for(Duration::from_secs(10), || ctl.applied_everywhere(version)), "applied");
    c.stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let enquire = std::iter::from_fn(|| c.try_recv()).find(|p| matches!(p.body, Body::EnquireLink));
    assert!(enquire.is_some(), "an enquire_link at the new interval");
    gw.shutdown();
    gw.join();
}

/// Whether the gateway unbinds `c` (its unbind is answered) or closes its connection within
/// `within`, answering enquire_link meanwhile. Leaves the read timeout at 10 s.
fn cut_within(c: &mut Client, within: Duration) -> bool {
    let end = Instant::now() + within;
    let cut = loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break false;
        }
        c.stream.set_read_timeout(Some(left)).unwrap();
        match c.try_recv().map(|p| (p.sequence_number, p.body)) {
            Some((seq, Body::Unbind)) => {
                c.send(&Pdu::new(seq, Body::UnbindResp));
                break true;
            }
            Some((seq, Body::EnquireLink)) => c.send(&Pdu::new(seq, Body::EnquireLinkResp)),
            Some(_) => {}
            // Closed, or the read timed out: a peek tells which without taking anything.
            None => {
                c.stream.set_nonblocking(true).unwrap();
                let closed = matches!(c.stream.peek(&mut [0u8; 1]), Ok(0));
                c.stream.set_nonblocking(false).unwrap();
                break closed;
            }
        }
    };
    c.stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    cut
}

#[test]
fn a_reload_that_revokes_a_customers_password_address_or_bind_type_unbinds_its_bound_sessions() {
    // Goal: once a reload gives a customer a new password hash, or allowed_ips or bind_types
    // that no longer let a bound session in, that session is unbound within a second or two (a
    // leaked password stops working for the binds already up, not only for the next ones),
    // even when the core jumps over the version that removed the customer; a reload that
    // changes only its throughput leaves its sessions bound and submitting.
    let v = sim(|_| {});
    let cfg = config(&[("v", v.local_addr())]);
    let gw = smppgw_engine::start(cfg.clone()).unwrap();
    let ctl = gw.control();
    wait_vendors_up(&gw);
    let apply = |next: &Config| {
        let version = ctl.reload(next.clone()).unwrap();
        assert!(wait_for(Duration::from_secs(10), || ctl.applied_everywhere(version)), "applied");
    };
    let bound = |id: &str, pw: &str, kind: &str| {
        let mut c = Client::connect(gw.local_addr);
        assert_eq!(c.bind(kind, id, pw), CommandStatus::ESME_ROK, "{id} binds");
        c
    };
    fn customer<'a>(cfg: &'a mut Config, id: &str) -> &'a mut CustomerConfig {
        cfg.customers.iter_mut().find(|c| c.system_id == id).unwrap()
    }
    let mut c1 = bound("c1", "pw", "trx");
    let mut c2 = bound("c2", "pw", "tx");

    // Throughput only: nothing the sessions bound with changed.
    let mut next = cfg.clone();
    customer(&mut next, "c1").throughput = 500;
    customer(&mut next, "c2").throughput = 500;
    apply(&next);
    assert!(!cut_within(&mut c1, Duration::from_secs(1)), "c1 still bound after a throughput change");
    assert!(c1.submit("15550000001", "after throughput").0.is_ok(), "c1 still submits");
    assert!(c2.submit("15550000002", "after throughput").0.is_ok(), "c2 still submits");

    // A new password hash for c1 (its old password leaked): its session is cut, c2's is not,
    // and only the new password binds.
    let pw2 = smppgw_engine::config::hash_password("pw2");
    customer(&mut next, "c1").password_hash = pw2.clone();
    apply(&next);
    assert!(cut_within(&mut c1, Duration::from_secs(2)), "c1 unbound after its password changed");
    assert!(c2.submit("15550000003", "c1's password changed").0.is_ok(), "c2 untouched");
    assert_eq!(Client::connect(gw.local_addr).bind("trx", "c1", "pw"), CommandStatus::ESME_RINVPASWD);
    let mut c1 = bound("c1", "pw2", "trx");

    // allowed_ips that no longer cover 127.0.0.1: c2's session is cut.
    customer(&mut next, "c2").allowed_ips = vec!["10.0.0.0/8".parse().unwrap()];
    apply(&next);
    assert!(cut_within(&mut c2, Duration::from_secs(2)), "c2 unbound once its address is not allowed");
    assert!(c1.submit("15550000004", "c2's address narrowed").0.is_ok(), "c1 untouched");

    // bind_types without transceiver: c1's transceiver session is cut.
    customer(&mut next, "c1").bind_types = vec![BindType::Transmitter];
    apply(&next);
    assert!(cut_within(&mut c1, Duration::from_secs(2)), "c1 unbound once transceiver is not allowed");

    // Deleted, then added back with a new password, in two reloads the cores most likely take
    // as one (they poll every 10 ms): never seen absent, the session is still cut.
    let mut c1 = bound("c1", "pw2", "tx");
    let mut gone = next.clone();
    gone.customers.retain(|c| c.system_id != "c1");
    customer(&mut next, "c1").password_hash = smppgw_engine::config::hash_password("pw3");
    ctl.reload(gone).unwrap();
    apply(&next);
    assert!(cut_within(&mut c1, Duration::from_secs(2)), "c1 unbound after a delete and re-insert");
    gw.shutdown();
    gw.join();
}

#[test]
fn binds_a_reload_replaces_at_a_vendor_that_limits_its_binds_take_over_once_the_old_ones_leave() {
    // Goal: at a vendor that allows the account only as many binds as the gateway keeps, a
    // reload that replaces them (a new window) does not leave the vendor without binds for the
    // reconnect backoff (here 10 s): the new binds, refused while the old ones are still bound,
    // bind again as soon as those have unbound, and the next message goes through.
    let v = sim(|s| {
        s.faults.max_binds = Some(2);
        s.faults.resp_latency = smppgw_loadgen::sim::Delay::Fixed(Duration::from_millis(300));
    });
    let mut cfg = config(&[("v", v.local_addr())]);
    cfg.vendors[0].binds = 2;
    cfg.vendors[0].reconnect_backoff_min_ms = 10_000;
    cfg.vendors[0].reconnect_backoff_max_ms = 20_000;
    let gw = smppgw_engine::start(cfg.clone()).unwrap();
    assert!(wait_for(Duration::from_secs(10), || v.stats().binds_current >= 2));
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert_eq!(c.submit("15557000001", "before").0, CommandStatus::ESME_ROK);
    // A message at the vendor when the reload comes: its bind unbinds only once it is answered,
    // and meanwhile the vendor refuses a third bind.
    let (seq, p) = c.submit_pdu("15557000002", "in flight");
    c.send(&p);
    assert!(wait_for(Duration::from_secs(5), || v.stats().submits >= 2));
    cfg.vendors[0].window = 7;
    let version = gw.control().reload(cfg).unwrap();
    assert!(wait_for(Duration::from_secs(10), || gw.control().applied_everywhere(version)));
    assert_eq!(c.recv_resp(seq).command_status, CommandStatus::ESME_ROK);
    assert!(
        wait_for(Duration::from_secs(5), || v.stats().binds_total >= 4 && v.stats().binds_current == 2),
        "the new binds took the old ones' places well within the backoff: {:?}",
        v.stats()
    );
    assert!(v.stats().bind_failures >= 1, "a new bind was refused while an old one was still bound");
    assert_eq!(c.submit("15557000003", "after").0, CommandStatus::ESME_ROK);
    gw.shutdown();
    gw.join();
}

#[test]
fn a_vendor_bind_a_reload_replaces_keeps_the_slow_down_its_vendors_throttling_asked_for() {
    // Goal: a vendor that throttled us (its binds slowed down) is not met at full speed again by
    // the binds a reload opens in place of the slowed ones: they start at the slowed pace.
    use std::sync::atomic::Ordering;
    let v = sim(|s| s.faults.throttle_tps = Some(10));
    let mut cfg = config(&[("v", v.local_addr())]);
    cfg.vendors[0].binds = 2;
    let gw = smppgw_engine::start(cfg.clone()).unwrap();
    assert!(wait_for(Duration::from_secs(10), || v.stats().binds_current >= 2));
    let slots = || {
        let snap = gw.control().current();
        let v = snap.vendors.iter().flatten().find(|v| v.cfg.name == "v").unwrap().clone();
        v.slots.clone()
    };
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    for i in 0..60 {
        let (_, p) = c.submit_pdu(&format!("155571{i:05}"), "burst");
        c.send(&p);
    }
    for _ in 0..60 {
        assert!(matches!(c.recv().expect("answered").body, Body::SubmitSmResp(_)));
    }
    assert!(v.stats().throttled > 0, "the vendor throttled");
    let before = slots();
    let slowed: Vec<usize> =
        (0..before.len()).filter(|&i| before[i].slowed.load(Ordering::Relaxed)).collect();
    assert!(!slowed.is_empty(), "throttling slowed a bind");
    cfg.vendors[0].window = 7;
    let version = gw.control().reload(cfg).unwrap();
    assert!(wait_for(Duration::from_secs(10), || gw.control().applied_everywhere(version)));
    let after = slots();
    assert!(
        slowed.iter().all(|&i| !std::sync::Arc::ptr_eq(&before[i], &after[i])),
        "the binds were replaced"
    );
    assert!(
        wait_for(Duration::from_secs(5), || slowed
            .iter()
            .all(|&i| after[i].up.load(Ordering::Relaxed) && after[i].slowed.load(Ordering::Relaxed))),
        "the new binds start slowed"
    );
    gw.shutdown();
    gw.join();
}

#[test]
fn two_reloads_in_a_row_at_a_vendor_that_limits_its_binds_leave_it_bound() {
    // Goal: a second reload that replaces a vendor's binds while the first one's are still
    // waiting for the original binds (a message in flight for 3 s) does not leave the newest
    // binds waiting their reconnect backoff: they bind once every older bind of their slot has
    // gone.
    let v = sim(|s| {
        s.faults.max_binds = Some(2);
        s.faults.resp_latency = smppgw_loadgen::sim::Delay::Fixed(Duration::from_secs(3));
    });
    let mut cfg = config(&[("v", v.local_addr())]);
    cfg.vendors[0].binds = 2;
    cfg.vendors[0].response_timeout_ms = 10_000;
    cfg.vendors[0].reconnect_backoff_min_ms = 20_000;
    cfg.vendors[0].reconnect_backoff_max_ms = 30_000;
    cfg.server.response_timeout_ms = 10_000;
    let gw = smppgw_engine::start(cfg.clone()).unwrap();
    assert!(wait_for(Duration::from_secs(10), || v.stats().binds_current >= 2));
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    let (seq, p) = c.submit_pdu("15557000011", "in flight");
    c.send(&p);
    assert!(wait_for(Duration::from_secs(5), || v.stats().submits >= 1));
    for window in [7, 8] {
        cfg.vendors[0].window = window;
        let version = gw.control().reload(cfg.clone()).unwrap();
        assert!(wait_for(Duration::from_secs(10), || gw.control().applied_everywhere(version)));
    }
    assert_eq!(c.recv_resp(seq).command_status, CommandStatus::ESME_ROK);
    assert!(
        wait_for(Duration::from_secs(5), || v.stats().binds_current == 2),
        "the newest binds are up within moments of the original ones leaving: {:?}",
        v.stats()
    );
    assert_eq!(c.submit("15557000012", "after").0, CommandStatus::ESME_ROK);
    gw.shutdown();
    gw.join();
}

#[test]
fn messages_waiting_at_a_vendor_a_reload_takes_off_their_route_go_to_the_new_one() {
    // Goal: a reload that routes a destination away from a vendor (slow, misbehaving) sends the
    // messages still waiting at that vendor's binds to the new route, not to the old vendor
    // once its window opens; the one already sent there gets that vendor's answer. Before, the
    // bind sent its whole queue to the vendor no longer on the route.
    let slow =
        sim(|s| s.faults.resp_latency = smppgw_loadgen::sim::Delay::Fixed(Duration::from_millis(2500)));
    let other = sim(|_| {});
    let mut cfg = config(&[("a", slow.local_addr()), ("b", other.local_addr())]);
    cfg.routes = vec![RouteConfig::new("default", &["a"])];
    cfg.vendors[0].binds = 1;
    cfg.vendors[0].window = 1;
    cfg.vendors[0].response_timeout_ms = 10_000;
    let gw = smppgw_engine::start(cfg.clone()).unwrap();
    assert!(wait_for(Duration::from_secs(10), || slow.stats().binds_current >= 1
        && other.stats().binds_current >= 2));
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    let mut seqs: std::collections::HashSet<u32> = (0..3)
        .map(|i| {
            let (seq, p) = c.submit_pdu(&format!("1555880{i:04}"), "rerouted");
            c.send(&p);
            seq
        })
        .collect();
    assert!(wait_for(Duration::from_secs(5), || slow.stats().submits == 1), "one in flight at a, two queued");
    cfg.routes = vec![RouteConfig::new("default", &["b"])];
    let version = gw.control().reload(cfg).unwrap();
    assert!(wait_for(Duration::from_secs(5), || gw.control().applied_everywhere(version)));
    while !seqs.is_empty() {
        let p = c.recv().expect("answers");
        if p.command_id().is_response() && seqs.remove(&p.sequence_number) {
            assert_eq!(p.command_status, CommandStatus::ESME_ROK, "message {}", p.sequence_number);
        }
    }
    assert_eq!(slow.stats().submits, 1, "a got only the one already sent");
    assert_eq!(other.stats().submits, 2, "b got the two that waited");
    gw.shutdown();
    gw.join();
}
