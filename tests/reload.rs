//! Hot reload on the engine side: a new config reaches every core without dropping sessions;
//! changed vendors are rebound, removed customers unbound, routes apply to the next message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Client, config, sim, wait_for};
use smppgw_codec::{Body, CommandStatus};
use smppgw_engine::config::RouteConfig;

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
    assert!(wait_for(Duration::from_secs(5), || a.stats().binds_current >= 2 && b.stats().binds_current >= 2));
    assert!(c1.submit("15550000001", "to a").0.is_ok());
    assert_eq!(a.stats().submits, 1);

    // Route everything to b first, drop customer c2.
    let mut next = cfg.clone();
    next.routes = vec![RouteConfig::new("default", &["b", "a"])];
    next.customers.retain(|c| c.system_id != "c2");
    let t0 = Instant::now();
    let v = ctl.reload(next.clone()).unwrap();
    assert!(wait_for(Duration::from_secs(1), || ctl.applied_everywhere(v)), "applied within a second");
    eprintln!("reload applied on all cores in {:?}", t0.elapsed());
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
    assert!(wait_for(Duration::from_secs(1), || ctl.applied_everywhere(v)));
    assert!(wait_for(Duration::from_secs(5), || a.stats().binds_total >= a_binds + 2), "a rebound");
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
