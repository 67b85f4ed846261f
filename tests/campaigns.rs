//! US 10DLC campaign limits end to end: a campaign's segments per minute and a brand's daily cap,
//! counted in segments and answered with ESME_RTHROTTLED, over real sockets with the simulator as
//! the vendor.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Client, config, sim, wait_for};
use smppgw_codec::{Address, Body, CommandStatus, DestAddress, Pdu, SubmitMulti, Tlvs, tag};
use smppgw_engine::config::{BrandConfig, CampaignConfig, Config};

/// The campaign `id` of brand `brand` with `per_minute` segments and these source numbers.
fn campaign(id: &str, brand: &str, per_minute: u32, sources: &[&str]) -> CampaignConfig {
    CampaignConfig {
        segments_per_minute: per_minute,
        source_prefixes: sources.iter().map(|s| (*s).to_owned()).collect(),
        ..CampaignConfig::new(id, brand)
    }
}

/// Waits until at least `room_ms` remain in the current UTC window of `window_ms`, so that a test
/// that fills a window is not split across two.
fn wait_for_room_in_window(window_ms: u64, room_ms: u64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let left = window_ms - now % window_ms;
    if left < room_ms {
        std::thread::sleep(Duration::from_millis(left + 50));
    }
}

/// A gateway on `cfg` with one bound transmitter of customer c1 (vendor binds up).
fn start(cfg: impl FnOnce(&mut Config)) -> (smppgw_engine::Gateway, Client, smppgw_loadgen::sim::SimHandle) {
    let v = sim(|_| {});
    let mut c = config(&[("v", v.local_addr())]);
    cfg(&mut c);
    let gw = smppgw_engine::start(c).expect("gateway starts");
    let mut client = Client::connect(gw.local_addr);
    assert_eq!(client.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(10), || v.stats().binds_current >= 2));
    (gw, client, v)
}

/// Submits `text` (or, when `payload_len` is set, a message_payload of that many octets) from
/// `source`; returns the status.
fn submit_from(c: &mut Client, source: &str, text: &str, payload_len: Option<usize>) -> CommandStatus {
    let (seq, mut p) = c.submit_pdu("15553330000", text);
    if let Body::SubmitSm(s) = &mut p.body {
        s.source = Address::new(1, 1, source.to_owned());
        if let Some(len) = payload_len {
            s.short_message = Default::default();
            s.tlvs = Tlvs::builder().bytes(tag::MESSAGE_PAYLOAD, &vec![b'x'; len]).build();
        }
    }
    c.send(&p);
    c.recv_resp(seq).command_status
}

#[test]
fn a_campaign_admits_its_segments_per_minute_and_other_sources_pass() {
    // Goal: 5 segments per minute: five single-segment submits from a number of the campaign are
    // accepted, the sixth gets ESME_RTHROTTLED; a source in no campaign is still accepted.
    let (gw, mut c, v) = start(|cfg| {
        cfg.brands.push(BrandConfig::new("B1", 0));
        cfg.campaigns.push(campaign("C1", "B1", 5, &["+1555000"]));
    });
    // Checked once the gateway is up (its start may take seconds): the burst below must fall in one window.
    wait_for_room_in_window(60_000, 10_000);
    for i in 0..5 {
        assert_eq!(submit_from(&mut c, "15550001", "hi", None), CommandStatus::ESME_ROK, "message {i}");
    }
    assert_eq!(submit_from(&mut c, "+15550002", "hi", None), CommandStatus::ESME_RTHROTTLED);
    assert_eq!(submit_from(&mut c, "15559999", "not in a campaign", None), CommandStatus::ESME_ROK);
    assert_eq!(submit_from(&mut c, "ACME", "alphanumeric sender", None), CommandStatus::ESME_ROK);
    assert_eq!(v.stats().submits, 7, "the throttled message never reached the vendor");

    assert_eq!(gw.metrics.throttled_campaign.load(Ordering::Relaxed), 1);
    assert_eq!(gw.metrics.capped_brand.load(Ordering::Relaxed), 0);
    let snap = gw.control().current();
    let k = &snap.campaigns.campaigns[0].counters;
    assert_eq!((k.segments.load(Ordering::Relaxed), k.throttled.load(Ordering::Relaxed)), (5, 1));
    let customer = snap.customer(b"c1").unwrap();
    assert_eq!(customer.counters.throttled.load(Ordering::Relaxed), 1, "the customer saw a throttle");
    gw.shutdown();
    gw.join();
}

#[test]
fn a_brand_daily_cap_is_shared_by_its_two_campaigns() {
    // Goal: a brand capped at 4 segments a day: two from each of its campaigns pass, then neither
    // campaign gets another one through, though their own minute limits have room.
    let (gw, mut c, _v) = start(|cfg| {
        cfg.brands.push(BrandConfig::new("B1", 4));
        cfg.campaigns.push(campaign("C1", "B1", 0, &["15550001"]));
        cfg.campaigns.push(campaign("C2", "B1", 100, &["15550002"]));
    });
    // Checked once the gateway is up (its start may take seconds): the burst below must fall in one window.
    wait_for_room_in_window(86_400_000, 10_000);
    for source in ["15550001", "15550002", "15550001", "15550002"] {
        assert_eq!(submit_from(&mut c, source, "hi", None), CommandStatus::ESME_ROK, "from {source}");
    }
    assert_eq!(submit_from(&mut c, "15550001", "hi", None), CommandStatus::ESME_RTHROTTLED);
    assert_eq!(submit_from(&mut c, "15550002", "hi", None), CommandStatus::ESME_RTHROTTLED);
    assert_eq!(submit_from(&mut c, "15550003", "hi", None), CommandStatus::ESME_ROK, "in no campaign");

    assert_eq!(gw.metrics.capped_brand.load(Ordering::Relaxed), 2);
    assert_eq!(gw.metrics.throttled_campaign.load(Ordering::Relaxed), 0);
    let snap = gw.control().current();
    let b = &snap.campaigns.brands[0].counters;
    assert_eq!((b.segments.load(Ordering::Relaxed), b.capped.load(Ordering::Relaxed)), (4, 2));
    let c2 = &snap.campaigns.campaigns[1];
    let minute = smppgw_engine::campaign::window_index(
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64,
        smppgw_engine::campaign::MINUTE_MS,
    );
    assert!(c2.window.count(minute) <= 2, "the capped message gave its campaign minute back");
    gw.shutdown();
    gw.join();
}

#[test]
fn a_long_message_counts_its_segments() {
    // Goal: a 3-segment message_payload costs 3 of the campaign's 5 segments a minute; a second
    // does not fit, two single-segment messages do, and then nothing more.
    let (gw, mut c, _v) = start(|cfg| {
        cfg.brands.push(BrandConfig::new("B1", 0));
        cfg.campaigns.push(campaign("C1", "B1", 5, &["1555000"]));
    });
    // Checked once the gateway is up (its start may take seconds): the burst below must fall in one window.
    wait_for_room_in_window(60_000, 10_000);
    assert_eq!(submit_from(&mut c, "15550001", "", Some(400)), CommandStatus::ESME_ROK);
    assert_eq!(submit_from(&mut c, "15550001", "", Some(400)), CommandStatus::ESME_RTHROTTLED);
    assert_eq!(submit_from(&mut c, "15550001", "one", None), CommandStatus::ESME_ROK);
    assert_eq!(submit_from(&mut c, "15550001", "two", None), CommandStatus::ESME_ROK);
    assert_eq!(submit_from(&mut c, "15550001", "three", None), CommandStatus::ESME_RTHROTTLED);
    let snap = gw.control().current();
    assert_eq!(snap.campaigns.campaigns[0].counters.segments.load(Ordering::Relaxed), 5);
    gw.shutdown();
    gw.join();
}

#[test]
fn submit_multi_destinations_each_count_against_the_campaign() {
    // Goal: with 2 segments a minute left, a submit_multi to three numbers sends two and lists the
    // third as ESME_RTHROTTLED in unsuccess_sme.
    let (gw, mut c, v) = start(|cfg| {
        cfg.brands.push(BrandConfig::new("B1", 0));
        cfg.campaigns.push(campaign("C1", "B1", 2, &["15550001"]));
    });
    // Checked once the gateway is up (its start may take seconds): the burst below must fall in one window.
    wait_for_room_in_window(60_000, 10_000);
    let seq = c.next_seq();
    let m = SubmitMulti {
        source: Address::new(1, 1, "15550001"),
        dests: (1..=3).map(|i| DestAddress::Sme(Address::new(1, 1, format!("155588800{i:02}")))).collect(),
        short_message: "to many".into(),
        ..Default::default()
    };
    c.send(&Pdu::new(seq, Body::SubmitMulti(m)));
    let r = c.recv_resp(seq);
    assert_eq!(r.command_status, CommandStatus::ESME_ROK);
    let Body::SubmitMultiResp(resp) = r.body else { panic!("submit_multi_resp") };
    assert_eq!(resp.unsuccess.len(), 1);
    assert_eq!(resp.unsuccess[0].error_status, CommandStatus::ESME_RTHROTTLED);
    assert_eq!(&resp.unsuccess[0].addr.addr[..], b"15558880003");
    assert_eq!(v.stats().submits, 2);
    assert_eq!(gw.metrics.throttled_campaign.load(Ordering::Relaxed), 1);
    // Counted for the customer as a throttled submit would be (the destination was not).
    let snap = gw.control().current();
    assert_eq!(snap.customer(b"c1").unwrap().counters.throttled.load(Ordering::Relaxed), 1);
    assert_eq!(gw.metrics.submit_results.get(CommandStatus::ESME_RTHROTTLED.0 as usize), 1);
    gw.shutdown();
    gw.join();
}

#[test]
fn a_reload_keeps_the_count_of_the_current_window() {
    // Goal: a hot reload does not hand out a fresh minute: one that leaves the campaign's limit
    // alone keeps it spent, one that raises it from 2 to 3 admits one more (it started counting
    // afresh, and a lowered daily cap admitted a whole new cap on top of what was sent).
    let mut cfg = Config::default();
    let (gw, mut c, v) = start(|c| {
        c.brands.push(BrandConfig::new("B1", 0));
        c.campaigns.push(campaign("C1", "B1", 2, &["15550001"]));
        cfg = c.clone();
    });
    // Checked once the gateway is up (its start may take seconds): the burst below must fall in one window.
    wait_for_room_in_window(60_000, 10_000);
    for _ in 0..2 {
        assert_eq!(submit_from(&mut c, "15550001", "hi", None), CommandStatus::ESME_ROK);
    }
    let ctl = gw.control();
    // Another customer setting changes; the campaign does not.
    cfg.customers[1].max_binds = 3;
    let version = ctl.reload(cfg.clone()).unwrap();
    assert!(wait_for(Duration::from_secs(10), || ctl.applied_everywhere(version)));
    assert_eq!(submit_from(&mut c, "15550001", "hi", None), CommandStatus::ESME_RTHROTTLED);
    cfg.campaigns[0].segments_per_minute = 3;
    let version = ctl.reload(cfg).unwrap();
    assert!(wait_for(Duration::from_secs(10), || ctl.applied_everywhere(version)));
    assert_eq!(submit_from(&mut c, "15550001", "hi", None), CommandStatus::ESME_ROK);
    assert_eq!(
        submit_from(&mut c, "15550001", "hi", None),
        CommandStatus::ESME_RTHROTTLED,
        "3 in the minute"
    );
    assert_eq!(v.stats().submits, 3);
    gw.shutdown();
    gw.join();
}

#[test]
fn a_message_the_campaign_refuses_does_not_spend_the_customers_own_rate() {
    // Goal: the customer's rate (here 2 segments a second, a burst of 2) counts what it sends,
    // not what a 10DLC limit refused: after one message accepted and one refused by the campaign,
    // the second unit of the burst is still there for a message from another number.
    let (gw, mut c, _v) = start(|cfg| {
        cfg.customers[0].throughput = 2;
        cfg.brands.push(BrandConfig::new("B1", 0));
        cfg.campaigns.push(campaign("C1", "B1", 1, &["+1555000"]));
    });
    // Checked once the gateway is up (its start may take seconds): the burst below must fall in one window.
    wait_for_room_in_window(60_000, 10_000);
    assert_eq!(submit_from(&mut c, "15550001", "hi", None), CommandStatus::ESME_ROK);
    assert_eq!(
        submit_from(&mut c, "15550001", "hi", None),
        CommandStatus::ESME_RTHROTTLED,
        "the campaign's minute is spent"
    );
    assert_eq!(submit_from(&mut c, "15559999", "another number", None), CommandStatus::ESME_ROK);
    assert_eq!(
        gw.metrics.throttled_customer.load(Ordering::Relaxed),
        0,
        "never over the customer's own rate"
    );
    gw.shutdown();
    gw.join();
}

#[test]
fn messages_the_vendor_refuses_do_not_spend_the_brands_daily_cap() {
    // Goal: a brand capped at 3 segments a day; five messages the vendor refuses (a content
    // filter: ESME_RINVDSTADR, so not sent) leave the cap and the customer's rate whole: three
    // others then pass and the fourth is capped. The refused ones spent both, and a vendor
    // outage with customers retrying could use up a brand's day.
    wait_for_room_in_window(86_400_000, 10_000);
    let v = sim(|s| {
        s.faults.refuse_containing = Some(b"BLOCKED".to_vec());
        s.faults.error_status = CommandStatus::ESME_RINVDSTADR;
    });
    let mut cfg = config(&[("v", v.local_addr())]);
    cfg.brands.push(BrandConfig::new("B1", 3));
    cfg.campaigns.push(campaign("C1", "B1", 0, &["15550001"]));
    // A burst of 4 segments (a second's worth), of which the last message takes the last: the
    // refused messages must not spend the customer's rate either.
    cfg.customers[0].throughput = 4;
    let gw = smppgw_engine::start(cfg).expect("gateway starts");
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(10), || v.stats().binds_current >= 2));
    for i in 0..5 {
        let st = submit_from(&mut c, "15550001", "BLOCKED", None);
        assert_eq!(st, CommandStatus::ESME_RINVDSTADR, "refused by the vendor, {i}");
    }
    for i in 0..3 {
        assert_eq!(submit_from(&mut c, "15550001", "hi", None), CommandStatus::ESME_ROK, "message {i}");
    }
    assert_eq!(submit_from(&mut c, "15550001", "hi", None), CommandStatus::ESME_RTHROTTLED, "the cap");
    let snap = gw.control().current();
    assert_eq!(snap.campaigns.brands[0].counters.segments.load(Ordering::Relaxed), 3, "three sent");
    assert_eq!(gw.metrics.capped_brand.load(Ordering::Relaxed), 1, "the brand's cap refused the last");
    assert_eq!(gw.metrics.throttled_customer.load(Ordering::Relaxed), 0);
    gw.shutdown();
    gw.join();
}

#[test]
fn a_refusal_after_a_reload_still_gives_the_brands_cap_back() {
    // Goal: a message admitted under one configuration and refused after a reload (any
    // reload: here an unrelated customer's window) gives its segments back to its campaign and
    // brand, as without the reload (the refund was dropped: the snapshot it was counted in had
    // changed). The vendor is down: the message waits for a bind (1 s), then is refused.
    wait_for_room_in_window(86_400_000, 10_000);
    // A port bound but not listening, held for the whole test: connecting is refused, and no
    // simulator of a test running alongside can take it.
    let down = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    down.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    let addr = down.local_addr().unwrap().as_socket().unwrap();
    let mut cfg = config(&[("v", addr)]);
    cfg.brands.push(BrandConfig::new("B1", 1));
    cfg.campaigns.push(campaign("C1", "B1", 0, &["15550001"]));
    let gw = smppgw_engine::start(cfg.clone()).expect("gateway starts");
    let mut c = Client::connect(gw.local_addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    let day = || {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        smppgw_engine::campaign::window_index(now_ms, 86_400_000)
    };
    let counted = || gw.control().current().campaigns.brands[0].window.count(day());
    let (seq, mut p) = c.submit_pdu("15551230000", "held");
    if let Body::SubmitSm(s) = &mut p.body {
        s.source = Address::new(1, 1, "15550001");
    }
    c.send(&p);
    assert!(wait_for(Duration::from_secs(5), || counted() == 1), "admitted, waiting for a vendor");
    cfg.customers[1].window = 7;
    let version = gw.control().reload(cfg).unwrap();
    assert!(wait_for(Duration::from_secs(10), || gw.control().applied_everywhere(version)));
    assert_eq!(c.recv_resp(seq).command_status, CommandStatus::ESME_RSYSERR, "no vendor came");
    assert_eq!(counted(), 0, "the brand's segment is back");
    gw.shutdown();
    gw.join();
}
