//! The load generator against the simulator over real sockets on 127.0.0.1: counts, receipts,
//! injected faults and the open model's coordinated-omission correction, as a user would read
//! them in the report. Every run is bounded in messages and time; nothing asserts on speed.

use std::time::Duration;

use smppgw_codec::CommandStatus;
use smppgw_loadgen::load::{self, BindMode, Lengths, LoadConfig, MessageMix, Report};
use smppgw_loadgen::msgid::IdFormat;
use smppgw_loadgen::sim::{Delay, Faults, SimConfig, SimHandle, Simulator, Stall};

fn sim(cfg: SimConfig) -> SimHandle {
    Simulator::start(SimConfig { seed: Some(7), ..cfg }).expect("simulator starts")
}

fn load_cfg(sim: &SimHandle) -> LoadConfig {
    LoadConfig {
        target: sim.local_addr(),
        system_id: "smppgw".into(),
        password: "secret".into(),
        binds: 2,
        window: 32,
        count: Some(2_000),
        timeout: Duration::from_secs(5),
        receipt_wait: Duration::from_secs(5),
        seed: Some(11),
        ..LoadConfig::default()
    }
}

fn run(cfg: LoadConfig) -> Report {
    load::run(cfg).expect("load run")
}

fn receipts_on() -> MessageMix {
    MessageMix { registered_delivery: 1, ..MessageMix::default() }
}

#[test]
fn counts_match_and_every_receipt_is_matched() {
    // Goal: what the load generator sent is what the simulator received, all answered OK, and
    // every receipt came back on the transceivers and matched its message id.
    let s = sim(SimConfig::for_tests());
    let r = run(LoadConfig { count: Some(20_000), mix: receipts_on(), ..load_cfg(&s) });
    let st = s.stop();
    assert_eq!((r.messages_sent, r.submits_sent, r.submits_ok), (20_000, 20_000, 20_000));
    assert_eq!(st.submits, 20_000);
    assert_eq!(st.receipts_sent, 20_000);
    assert_eq!((r.receipts.expected, r.receipts.matched), (20_000, 20_000));
    assert_eq!((r.receipts.missing, r.receipts.unmatched, r.receipts.unparsable), (0, 0, 0));
    assert_eq!(r.receipts.states.get("DELIVRD"), Some(&20_000));
    assert_eq!(r.latency_us.submit_resp.count, 20_000);
    assert_eq!(r.latency_us.receipt.count, 20_000);
    assert!(r.is_clean(), "{}", r.to_table());
    assert_eq!(st.accounts[0].binds_total, 2);
}

#[test]
fn transmitter_receiver_pairs_get_delayed_receipts_on_their_receivers() {
    // Goal: with tx+rx pairs and receipts 0..20 ms after the response in a mix of final
    // states, every receipt reaches a receiver and matches; the states add up.
    let mut cfg = SimConfig::for_tests();
    cfg.receipts.delay = Delay::parse_ms("0..20").unwrap();
    cfg.receipts.mix =
        smppgw_loadgen::sim::StateMix::parse("DELIVRD=90,UNDELIV=5,EXPIRED=3,REJECTD=2").unwrap();
    let s = sim(cfg);
    let r =
        run(LoadConfig { bind_mode: BindMode::TxRx, count: Some(3_000), mix: receipts_on(), ..load_cfg(&s) });
    let st = s.stop();
    assert_eq!(r.submits_ok, 3_000);
    assert_eq!(r.receipts.matched, 3_000, "{}", r.to_table());
    assert_eq!(r.receipts.missing + r.receipts.unmatched, 0);
    assert_eq!(r.receipts.states.values().sum::<u64>(), 3_000);
    assert!(r.receipts.states.len() >= 3, "{:?}", r.receipts.states);
    assert_eq!(st.binds_total, 4);
    assert_eq!(r.sessions.binds_ok, 4);
}

#[test]
fn receipts_match_across_two_load_cores() {
    // Goal: with two load cores and tx+rx pairs, receipts the simulator hands to a receiver on
    // the other core than the one that submitted still all match, none missing or unmatched,
    // and the run ends once they have (well before the 20 s receipt wait).
    let mut cfg = SimConfig::for_tests();
    cfg.receipts.delay = Delay::parse_ms("0..20").unwrap();
    let s = sim(cfg);
    let started = std::time::Instant::now();
    let r = run(LoadConfig {
        bind_mode: BindMode::TxRx,
        cores: 2,
        count: Some(5_000),
        mix: receipts_on(),
        receipt_wait: Duration::from_secs(20),
        ..load_cfg(&s)
    });
    let took = started.elapsed();
    s.stop();
    assert_eq!(r.cores, 2);
    assert_eq!((r.receipts.expected, r.receipts.matched), (5_000, 5_000), "{}", r.to_table());
    assert_eq!((r.receipts.missing, r.receipts.unmatched, r.receipts.untracked), (0, 0, 0));
    assert_eq!(r.latency_us.receipt.count, 5_000);
    assert!(r.is_clean(), "{}", r.to_table());
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

#[test]
fn vendor_receipt_quirks_are_still_matched() {
    // Goal: receipts without TLVs, with upper-case keys and 12-digit dates, sent before their
    // submit_sm_resp, with UUID ids, all still match.
    let mut cfg = SimConfig::for_tests();
    cfg.id_format = IdFormat::Uuid;
    cfg.receipts.tlvs = false;
    cfg.receipts.upper_case_keys = true;
    cfg.receipts.date_digits = 12;
    cfg.receipts.before_resp = true;
    let s = sim(cfg);
    let r = run(LoadConfig { mix: receipts_on(), ..load_cfg(&s) });
    drop(s);
    assert_eq!(r.submits_ok, 2_000);
    assert_eq!(r.receipts.matched, 2_000, "{}", r.to_table());
    assert_eq!(r.receipts.unmatched + r.receipts.missing + r.receipts.unparsable, 0);
}

#[test]
fn throttling_shows_as_esme_rthrottled() {
    // Goal: a vendor limit of 100 submit_sm/s per bind is seen by the load generator as
    // ESME_RTHROTTLED, exactly as many as the simulator refused.
    let mut cfg = SimConfig::for_tests();
    cfg.faults = Faults { throttle_tps: Some(100), ..Faults::default() };
    let s = sim(cfg);
    let r = run(LoadConfig { binds: 1, count: Some(2_000), ..load_cfg(&s) });
    let st = s.stop();
    let throttled = r.errors.get("ESME_RTHROTTLED").copied().unwrap_or(0);
    assert!(throttled > 0, "{}", r.to_table());
    assert_eq!(throttled, st.throttled);
    assert_eq!(r.submits_ok + throttled, 2_000);
    assert_eq!(r.receipts.expected, 0);
    // Refusals are not throughput, and their latency is kept apart from that of ESME_ROK.
    assert!(r.ok_per_s < r.responses_per_s, "{} vs {}", r.ok_per_s, r.responses_per_s);
    assert_eq!(r.latency_us.submit_resp.count, r.submits_ok);
    assert_eq!(r.latency_us.error_resp.count, throttled);
}

#[test]
fn injected_error_statuses_are_counted_by_name() {
    // Goal: --error-rate with a named status shows up under that name, about as often as asked.
    let mut cfg = SimConfig::for_tests();
    cfg.faults = Faults { error_rate: 0.2, error_status: CommandStatus::ESME_RSYSERR, ..Faults::default() };
    let s = sim(cfg);
    let r = run(load_cfg(&s));
    let st = s.stop();
    let n = r.errors.get("ESME_RSYSERR").copied().unwrap_or(0);
    assert_eq!(n, st.injected_errors);
    assert!((250..=550).contains(&n), "{n} of 2000");
    assert_eq!(r.submits_ok + n, 2_000);
}

#[test]
fn disconnects_are_counted_and_sessions_reconnect() {
    // Goal: a vendor closing every connection after 300 submits is seen as disconnects, the
    // session reconnects and finishes, and every message is either answered or counted lost.
    let mut cfg = SimConfig::for_tests();
    cfg.faults = Faults { disconnect_after: Some(300), ..Faults::default() };
    let s = sim(cfg);
    let r = run(LoadConfig { binds: 1, count: Some(2_000), ..load_cfg(&s) });
    let st = s.stop();
    assert!(r.sessions.disconnects >= 5, "{}", r.to_table());
    assert_eq!(r.sessions.reconnects, r.sessions.disconnects);
    assert_eq!(r.sessions.disconnects, st.disconnects_injected);
    assert_eq!(r.sessions.binds_ok, r.sessions.reconnects + 1);
    assert_eq!(r.submits_ok + r.lost_in_flight, r.submits_sent);
    assert_eq!(r.submits_sent, 2_000);
    assert_eq!(r.latency_us.submit_resp.count, r.submits_sent, "lost submits are in the latency too");
}

#[test]
fn a_timed_run_ends_at_its_deadline_when_the_server_goes_away() {
    // Goal: a `-d 1s` open-model run whose server stops at 300 ms (connections closed, new ones
    // refused) ends soon after its deadline instead of retrying for minutes, and the messages it
    // owed are reported as due but unsent, in the latency, not silently dropped.
    let s = sim(SimConfig::for_tests());
    let cfg = LoadConfig {
        rate: Some(1_000.0),
        count: None,
        duration: Some(Duration::from_secs(1)),
        max_reconnects: 20,
        ..load_cfg(&s)
    };
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        s.stop()
    });
    let started = std::time::Instant::now();
    let r = run(cfg);
    let took = started.elapsed();
    let _ = stopper.join();
    // Generous: retrying until the 20 reconnects are used up, with their backoff, takes 30 s.
    assert!(took < Duration::from_secs(15), "took {took:?}\n{}", r.to_table());
    assert!(r.due_unsent >= 500, "{}", r.to_table());
    assert!(!r.is_clean());
    assert_eq!(
        r.latency_us.submit_resp.count,
        r.submits_ok + r.timeouts + r.lost_in_flight + r.due_unsent,
        "{}",
        r.to_table()
    );
}

#[test]
fn dropped_responses_become_timeouts() {
    // Goal: submits the vendor never answers are counted as timeouts, one for one.
    let mut cfg = SimConfig::for_tests();
    cfg.faults = Faults { drop_rate: 0.1, ..Faults::default() };
    let s = sim(cfg);
    let r = run(LoadConfig { count: Some(1_000), timeout: Duration::from_secs(1), ..load_cfg(&s) });
    let st = s.stop();
    assert!(st.dropped > 0);
    assert_eq!(r.timeouts, st.dropped, "{}", r.to_table());
    assert_eq!(r.submits_ok + r.timeouts, 1_000);
    // The submits never answered are in the latency, at the 1 s they were given up after.
    assert_eq!(r.latency_us.submit_resp.count, 1_000);
    assert!(r.latency_us.submit_resp.max >= 1_000_000, "{}", r.to_table());
}

#[test]
fn wrong_credentials_are_refused_with_their_status() {
    // Goal: a wrong password gets ESME_RINVPASWD and an unknown system_id ESME_RINVSYSID, for
    // every bind, and nothing is sent.
    let s = sim(SimConfig::for_tests());
    let r = run(LoadConfig { password: "wrong".into(), ..load_cfg(&s) });
    assert_eq!(r.sessions.bind_failures.get("ESME_RINVPASWD"), Some(&2), "{}", r.to_table());
    assert_eq!((r.sessions.binds_ok, r.submits_sent), (0, 0));
    let r = run(LoadConfig { system_id: "nobody".into(), ..load_cfg(&s) });
    assert_eq!(r.sessions.bind_failures.get("ESME_RINVSYSID"), Some(&2));
    assert_eq!(s.stop().bind_failures, 4);
}

#[test]
fn open_model_latency_includes_a_vendor_stall() {
    // Goal: at a fixed rate, a 500 ms stall of the vendor shows in submit->resp percentiles
    // measured from the intended send time (coordinated omission corrected), while the service
    // time of the same run, measured from the actual send, hides it.
    let mut cfg = SimConfig::for_tests();
    cfg.faults.stall =
        Some(Stall { every: Duration::from_millis(1_000), length: Duration::from_millis(500) });
    let s = sim(cfg);
    let r = run(LoadConfig {
        binds: 1,
        window: 1,
        rate: Some(1_000.0),
        count: None,
        duration: Some(Duration::from_millis(1_900)),
        ..load_cfg(&s)
    });
    let st = s.stop();
    assert!(st.stalls >= 1);
    let corrected = &r.latency_us.submit_resp;
    let service = &r.latency_us.service_time;
    // About 500 of the ~1900 messages were due during the stall: the top percentiles are stall.
    assert!(corrected.p99 >= 300_000, "corrected p99 {} us\n{}", corrected.p99, r.to_table());
    assert!(corrected.p90 >= 50_000, "corrected p90 {} us", corrected.p90);
    // Only the one submit in flight when the stall began waited for it.
    assert!(service.p99 < 250_000, "service p99 {} us\n{}", service.p99, r.to_table());
    assert!(service.max >= 300_000, "the request in flight during the stall waited");
    assert_eq!(r.submits_ok, r.submits_sent);
}

#[test]
fn long_messages_go_as_parts_and_mo_reaches_receivers() {
    // Goal: long UCS-2 messages are sent as concatenated parts (one submit_sm each), and the
    // simulator's MO traffic reaches the transceivers as deliver_sm that are not receipts.
    let mut cfg = SimConfig::for_tests();
    cfg.mo.rate_per_s = 500.0;
    cfg.record_max = 100;
    let s = sim(cfg);
    let mix = MessageMix {
        long_share: 1.0,
        ucs2_share: 1.0,
        long_len: Lengths { min: 150, max: 150 },
        ..MessageMix::default()
    };
    let r = run(LoadConfig { count: Some(200), mix, rate: Some(500.0), ..load_cfg(&s) });
    let rec = s.take_recorded();
    let st = s.stop();
    assert_eq!(r.messages_sent, 200);
    assert_eq!(r.submits_sent, 600, "150 UCS-2 characters take 3 parts");
    assert_eq!(st.submits, 600);
    assert!(r.mo_received > 0 && r.mo_received == st.mo_sent, "{} vs {}", r.mo_received, st.mo_sent);
    assert_eq!(rec.len(), 100, "record keeps the last 100");
    assert!(
        rec.iter().all(|x| x.system_id == "smppgw" && x.pdu.esm_class & 0x40 != 0 && x.pdu.data_coding == 8)
    );
    assert!(rec.iter().all(|x| x.message_id.len() == 16 && x.status == CommandStatus::ESME_ROK));
}

#[test]
fn bad_arguments_exit_1_and_a_target_nobody_binds_on_exits_2() {
    // Goal: scripts can tell a typo in the command line (1) from a target that refused every
    // bind (2), as the README documents; clap's own code for bad arguments is 2.
    let bin = env!("CARGO_BIN_EXE_smppgw-loadgen");
    let code =
        |args: &[&str]| std::process::Command::new(bin).args(args).output().expect("runs").status.code();
    assert_eq!(code(&["--no-such-flag"]), Some(1));
    assert_eq!(code(&["-t", "127.0.0.1:1", "-n", "many"]), Some(1));
    assert_eq!(code(&["--help"]), Some(0));
    let s = sim(SimConfig::for_tests());
    let target = s.local_addr().to_string();
    assert_eq!(
        code(&["-t", &target, "-u", "nobody", "-p", "wrong", "-n", "1", "-q", "--max-reconnects", "0"]),
        Some(2)
    );
}
