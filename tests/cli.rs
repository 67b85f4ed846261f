//! The smppgw binary's commands: check-config explains errors with their line, hash-password
//! prints a hash the config accepts, and the gateway drains on SIGTERM or SIGINT and exits 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use smppgw_codec::CommandStatus;

fn smppgw() -> Command {
    Command::new(env!("CARGO_BIN_EXE_smppgw"))
}

#[test]
fn check_config_reports_errors_with_their_line() {
    let dir = std::env::temp_dir().join(format!("smppgw-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nwindow = 64\n\n[[vendor]]\nname = \"a\"\nhost = \"127.0.0.1\"\nport = 2776\nsystem_id = \"x\"\npassword = \"far-too-long\"\n\n[[route]]\nname = \"r\"\nvendors = [\"nope\"]\n",
    )
    .unwrap();
    let out = smppgw().arg("check-config").arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let name = bad.display().to_string();
    assert!(err.contains(&format!("{name}:9:")), "password error on line 9: {err}");
    assert!(err.contains(&format!("{name}:13:")), "unknown vendor on line 13: {err}");

    let ok = dir.join("ok.toml");
    std::fs::write(&ok, smppgw_engine::config::DEFAULT_CONFIG_TOML).unwrap();
    let out = smppgw().arg("check-config").arg(&ok).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/config/example.toml");
    assert!(smppgw().arg("check-config").arg(example).output().unwrap().status.success());
}

#[test]
fn hash_password_prints_a_hash_that_verifies() {
    let out = smppgw().args(["hash-password", "s3cret"]).output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(hash.starts_with("$argon2id$"));
    assert!(smppgw_engine::config::verify_password(&hash, b"s3cret"));
}

#[test]
fn hash_password_refuses_what_a_bind_cannot_carry() {
    // Goal: a password no customer could bind with (longer than the 8 characters of the bind's
    // password field, or empty stdin) gets an error, not a hash.
    let out = smppgw().args(["hash-password", "ninechars"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 to 8 octets"));
    assert!(out.stdout.is_empty());
    let out = smppgw().arg("hash-password").stdin(std::process::Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "empty stdin");
}

/// A free TCP port on loopback (the OS's choice, released for the child to take).
#[test]
fn a_database_or_redis_url_that_cannot_work_is_refused_at_start_with_status_2() {
    // Goal: a URL that can never connect stops the node at once with 2 (which supervisors do
    // not restart on), not 3 ("PostgreSQL down", restarted for ever) or a node that runs alone
    // with a green /ready.
    for (flag, url, why) in [
        ("--database-url", "postgres://x@127.0.0.1:1/db?sslmode=bogus", "invalid database URL"),
        // No host (an empty placeholder, a URL or key=value string without one): the driver has
        // no default host (libpq's Unix socket), so no attempt could ever connect.
        ("--database-url", "", "names no host"),
        ("--database-url", "postgres:///db", "names no host"),
        ("--database-url", "dbname=db", "names no host"),
        ("--redis-url", "notaurl://x", ""),
        ("--redis-url", "rediss://127.0.0.1:6379", ""),
    ] {
        let out = smppgw().args([flag, url]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {url:?}: {err}");
        assert!(err.contains("refused") && err.contains(why), "{flag} {url:?}: {err}");
    }
    // The placeholder of an environment file left empty.
    let out = smppgw().env("SMPPGW_DATABASE_URL", "").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "SMPPGW_DATABASE_URL=: {err}");
    assert!(err.contains("refused") && err.contains("names no host"), "SMPPGW_DATABASE_URL=: {err}");
}

#[test]
fn a_misspelt_log_level_is_warned_about_rather_than_silencing_every_log() {
    let out =
        smppgw().args(["--config", "/nonexistent/smppgw.toml"]).env("SMPPGW_LOG", "inof").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SMPPGW_LOG: 'inof'"), "{err}");
    let out = smppgw()
        .args(["--config", "/nonexistent/smppgw.toml"])
        .env("SMPPGW_LOG", "smppgw_engine=debug,warn")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning: SMPPGW_LOG"), "a valid filter");
}

#[test]
fn an_http_port_in_use_stops_the_start_before_the_engine_listens() {
    // Goal: found in use only after the engine was up, the node bound its vendors and took
    // customers for a moment at every restart (a supervisor restarts it every 2 s).
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = smppgw()
        .env("SMPPGW__SERVER__LISTEN", "127.0.0.1:0")
        .env("SMPPGW__SERVER__HTTP_LISTEN", taken.local_addr().unwrap().to_string())
        .env("SMPPGW_LOG", "info")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("HTTP API: cannot listen"), "{err}");
    assert!(!err.contains("smppgw listening"), "the engine never started: {err}");
}

#[test]
fn a_sigterm_while_the_first_configuration_loads_from_postgresql_stops_at_once_with_0() {
    // Goal: a database that accepts connections and never answers held the start for its whole
    // 30 s, the signal unnoticed, and then exited 3 ("PostgreSQL down"): an operator's stop
    // marked as a failure.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("postgres://x@{}/db?connect_timeout=60", silent.local_addr().unwrap());
    let mut child = smppgw()
        .args(["--database-url", &url])
        .env("SMPPGW__SERVER__LISTEN", "127.0.0.1:0")
        .env("SMPPGW__SERVER__HTTP_LISTEN", "127.0.0.1:0")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if started.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let status = status.expect("stopped well before the 30 s load timeout");
    assert_eq!(status.code(), Some(0));
    drop(silent);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs the smppgw binary against a simulator that answers after 1 s, submits 20 messages,
/// sends `signal` while they are in flight, and checks what a clean shutdown promises: `/ready`
/// says the node is shutting down while it drains (so a load balancer stops sending), every
/// submit answered ESME_ROK, the customer unbound, every acknowledged message at the vendor,
/// the vendor binds unbound, exit status 0.
fn signal_drains_and_exits_zero(signal: i32) {
    let v = common::sim(|s| {
        s.faults.resp_latency = smppgw_loadgen::sim::Delay::Fixed(Duration::from_millis(1_000))
    });
    let port = free_port();
    let http: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let dir = std::env::temp_dir().join(format!("smppgw-cli-sig{signal}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("gw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nhttp_listen = \"{http}\"\ncores = 1\n\n\
             [[customer]]\nsystem_id = \"c1\"\npassword_hash = \"{}\"\n\n\
             [[vendor]]\nname = \"v\"\nhost = \"127.0.0.1\"\nport = {}\nsystem_id = \"smppgw\"\npassword = \"secret\"\nbinds = 2\n\n\
             [[route]]\nname = \"all\"\nprefixes = [\"\"]\nvendors = [\"v\"]\n",
            common::pw_hash(),
            v.local_addr().port()
        ),
    )
    .unwrap();
    let mut child = smppgw().arg("--config").arg(&cfg).stderr(std::process::Stdio::null()).spawn().unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        common::wait_for(Duration::from_secs(10), || std::net::TcpStream::connect(addr).is_ok()
            && v.stats().binds_current >= 2),
        "the gateway serves and its vendor binds are up"
    );
    assert!(
        // The HTTP API starts after the SMPP listeners: wait until it listens.
        common::wait_for(Duration::from_secs(10), || std::net::TcpStream::connect(http).is_ok()
            && common::http_get(http, "/ready").0 == 200),
        "ready before the signal"
    );
    let mut c = common::Client::connect(addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    for i in 0..20 {
        let (_, p) = c.submit_pdu(&format!("15556660{i:03}"), "in flight");
        c.send(&p);
    }
    // Signalled once every submit is at the vendor (one read later would be refused as the
    // session is shutting down).
    assert!(common::wait_for(Duration::from_secs(10), || v.stats().submits >= 20), "all at the vendor");
    // A SIGHUP (a closed terminal) neither stops nor drains the node.
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "alive after SIGHUP");
    assert_eq!(common::http_get(http, "/ready").0, 200, "still ready after SIGHUP");
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, signal) };
    // The submits wait up to 1 s at the vendor: the node is draining, and says so.
    let mut draining = None;
    common::wait_for(Duration::from_millis(800), || {
        let (status, body) = common::http_get(http, "/ready");
        draining = Some((status, body));
        status != 200
    });
    let (status, body) = draining.unwrap();
    assert_eq!(status, 503, "a draining node is not ready: {body}");
    assert!(body.contains("shutting down"), "{body}");
    let (acked, unbound) = c.drain_until_closed();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(acked, 20, "every submit in flight was answered ESME_ROK");
    assert!(unbound, "the customer was unbound");
    assert_eq!(v.stats().submits_ok, 20, "every acknowledged message reached the vendor");
    // The simulator counts a closed bind in its own session task, after the process is gone.
    common::wait_for(Duration::from_secs(5), || v.stats().binds_current == 0);
    let s = v.stats();
    assert_eq!((s.unbinds, s.binds_current), (2, 0), "both vendor binds unbound and closed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_drains_and_exits_zero() {
    signal_drains_and_exits_zero(libc::SIGTERM);
}

#[test]
fn sigint_drains_and_exits_zero() {
    signal_drains_and_exits_zero(libc::SIGINT);
}

#[test]
fn executors_that_cannot_start_stop_the_process_with_an_error() {
    // Goal: without enough locked memory for io_uring the gateway exits non-zero and says why,
    // instead of running with dead cores.
    use std::os::unix::process::CommandExt;
    let mut cmd = smppgw();
    cmd.env("SMPPGW__SERVER__LISTEN", "127.0.0.1:0").env("SMPPGW__SERVER__HTTP_LISTEN", "127.0.0.1:0");
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 65_536, rlim_max: 65_536 };
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("executors started") && err.contains("RLIMIT_MEMLOCK"), "{err}");
}

#[test]
fn io_uring_refused_by_seccomp_fails_the_start_with_the_reason_not_an_abort() {
    // Goal: under a seccomp profile that refuses io_uring (Docker 25+ and containerd 2.x
    // defaults) the gateway exits 1 saying which executor could not start and what it needs,
    // as deploy/README.md promises. Before, glommio's panic while setting up the executor went
    // to the panic hook meant for running executors: abort (status 134) with "an executor
    // panicked".
    use std::os::unix::process::CommandExt;
    let mut cmd = smppgw();
    cmd.env("SMPPGW__SERVER__LISTEN", "127.0.0.1:0").env("SMPPGW__SERVER__HTTP_LISTEN", "127.0.0.1:0");
    // SAFETY: prctl is async-signal-safe and the filter (io_uring_setup -> EPERM, as the
    // runtimes' default profiles answer) applies only to the child.
    unsafe {
        cmd.pre_exec(|| {
            let op = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter { code: code as u16, jt, jf, k };
            let filter = [
                // The syscall number (offset 0 of struct seccomp_data).
                op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0),
                op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, libc::SYS_io_uring_setup as u32, 0, 1),
                op(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32, 0, 0),
                op(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW, 0, 0),
            ];
            let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr().cast_mut() };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit status 1, not an abort: {err}");
    assert!(!err.contains("an executor panicked"), "{err}");
    assert!(err.contains("cannot start executor") && err.contains("io_uring must be available"), "{err}");
}

#[test]
fn one_executor_that_cannot_start_fails_the_start_at_once_naming_it() {
    // Goal: when one executor of two cannot start (its io_uring or thread could not be set up)
    // while the other runs, the start fails at once, naming the one that failed, and the one
    // that ran stops without waiting out every stage of a graceful stop for the missing one.
    // Before, the start waited out its 10 s timeout (the running core held the readiness
    // channel open) and then the stop's stages their deadlines: about 30 s, binding and
    // unbinding every vendor meanwhile.
    let v = common::sim(|_| {});
    let mut cfg = common::config(&[("v", v.local_addr())]);
    cfg.server.cores = 2;
    let started = std::time::Instant::now();
    let options = smppgw_engine::StartOptions { fail_core: Some(1), ..Default::default() };
    let err = match smppgw_engine::start_with_options(cfg, options) {
        Ok(_) => panic!("started with a dead executor"),
        Err(e) => e.to_string(),
    };
    let took = started.elapsed();
    assert!(err.contains("cannot start executor 1") && err.contains("1 of 2 executors started"), "{err}");
    assert!(took < Duration::from_secs(8), "failed after {took:?}");
}

#[test]
fn the_gateway_raises_its_open_file_limit_to_the_hard_limit() {
    // Goal: started at a soft limit of 1,024 open files (as container runtimes start processes)
    // with a higher hard limit, the gateway raises its soft limit to the hard one, and says so
    // when even that is below what its max_binds may need.
    use std::os::unix::process::CommandExt;
    let http: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut cmd = smppgw();
    cmd.env("SMPPGW__SERVER__LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("SMPPGW__SERVER__HTTP_LISTEN", http.to_string())
        .env("SMPPGW__SERVER__CORES", "1")
        .env("SMPPGW__SERVER__MAX_BINDS", "5000")
        .stderr(std::process::Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 1_024, rlim_max: 4_096 };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    assert!(
        common::wait_for(Duration::from_secs(10), || std::net::TcpStream::connect(http).is_ok()),
        "the gateway is up"
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap_or_default().to_owned();
    let soft: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(soft.get(3..5), Some(&["4096", "4096"][..]), "{line}");
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("open-file limit is below"), "4,096 < 5,000 binds: said\n{err}");
}

#[test]
fn the_embedded_default_is_what_the_readme_says() {
    // Goal: `smppgw` with no arguments serves SMPP on loopback 2775 (the demo password is
    // public), with customer demo/demo and one vendor at the simulator's 127.0.0.1:2776 on a
    // catch-all route.
    let cfg = smppgw_engine::config::Config::embedded_default();
    assert_eq!(cfg.server.listen, "127.0.0.1:2775".parse().unwrap());
    let demo = cfg.customer("demo").expect("the demo customer");
    assert!(smppgw_engine::config::verify_password(&demo.password_hash, b"demo"));
    assert_eq!(cfg.vendors.len(), 1);
    let v = &cfg.vendors[0];
    assert_eq!((v.host.as_str(), v.port), ("127.0.0.1", 2776));
    assert_eq!(cfg.routes.len(), 1);
    assert_eq!(cfg.routes[0].prefixes, vec![String::new()], "a catch-all route");
    let names: Vec<&str> = cfg.routes[0].vendors.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, vec![v.name.as_str()]);
}

#[test]
fn check_config_refuses_a_public_http_api_without_an_admin_token_as_the_start_does() {
    // Goal: an HTTP API on a non-loopback address needs SMPPGW_ADMIN_TOKEN: check-config says so
    // (it said ok, and the node then failed only after its listeners and vendor binds had
    // started), and so does the start, before anything listens, with the configuration-error
    // exit status 2.
    let dir = std::env::temp_dir().join(format!("smppgw-cli-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("public.toml");
    let text = smppgw_engine::config::DEFAULT_CONFIG_TOML
        .replace("http_listen = \"127.0.0.1:8080\"", "http_listen = \"0.0.0.0:0\"");
    assert_ne!(text, smppgw_engine::config::DEFAULT_CONFIG_TOML, "the default sets http_listen");
    std::fs::write(&cfg, text).unwrap();
    let out = smppgw().arg("check-config").arg(&cfg).env_remove("SMPPGW_ADMIN_TOKEN").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("http_listen"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = smppgw()
        .arg("check-config")
        .arg(&cfg)
        .env("SMPPGW_ADMIN_TOKEN", "a-long-enough-admin-token-0123456789")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = smppgw()
        .arg("--config")
        .arg(&cfg)
        .env_remove("SMPPGW_ADMIN_TOKEN")
        .env("SMPPGW__SERVER__LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_config_reports_a_public_http_api_without_a_token_at_its_line_with_the_other_errors() {
    // Goal: the admin-token rule is reported as every other error is, `FILE:LINE:` (or the
    // variable that set the address), and together with them. It was printed without a line,
    // only once every other error was fixed, and naming server.http_listen when an
    // SMPPGW__SERVER__HTTP_LISTEN set the address.
    let dir = std::env::temp_dir().join(format!("smppgw-cli-token-line-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("http.toml");
    std::fs::write(
        &cfg,
        "[server]\nlisten = \"127.0.0.1:2775\"\nhttp_listen = \"0.0.0.0:8080\"\nwindow = 0\n",
    )
    .unwrap();
    let name = cfg.display().to_string();
    let out = smppgw().arg("check-config").arg(&cfg).env_remove("SMPPGW_ADMIN_TOKEN").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("{name}:3: ")) && err.contains("admin token"),
        "http_listen on line 3: {err}"
    );
    assert!(err.contains(&format!("{name}:4: ")) && err.contains("window"), "window on line 4: {err}");

    // The address from an override: the variable is named.
    std::fs::write(&cfg, "[server]\nlisten = \"127.0.0.1:2775\"\n").unwrap();
    let out = smppgw()
        .arg("check-config")
        .arg(&cfg)
        .env_remove("SMPPGW_ADMIN_TOKEN")
        .env("SMPPGW__SERVER__HTTP_LISTEN", "0.0.0.0:8080")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("env:SMPPGW__SERVER__HTTP_LISTEN: ") && err.contains("admin token"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_config_file_that_is_not_utf8_is_refused_at_its_line_and_its_reload_is_invalid_not_unavailable() {
    // Goal: a file saved as Latin-1 (an accent in a comment on line 18) is an error of its
    // contents at its line, as a syntax error is: check-config printed `cannot read the file:
    // stream did not contain valid UTF-8` without a line, and a reload answered 503 (the source
    // unavailable, retry) rather than 400 (refused, with the reason).
    let dir = std::env::temp_dir().join(format!("smppgw-cli-latin1-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (port, http_port) = (free_port(), free_port());
    let http: std::net::SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
    let good = smppgw_engine::config::DEFAULT_CONFIG_TOML
        .replace("listen = \"127.0.0.1:2775\"", &format!("listen = \"127.0.0.1:{port}\""))
        .replace("http_listen = \"127.0.0.1:8080\"", &format!("http_listen = \"{http}\""));
    let mut lines: Vec<Vec<u8>> = good.lines().map(|l| l.as_bytes().to_vec()).collect();
    assert!(lines.len() > 18, "the default has more than 18 lines");
    lines.insert(17, b"# caf\xe9 (Latin-1)".to_vec());
    let latin1 = lines.join(&b'\n');
    let file = dir.join("latin1.toml");
    std::fs::write(&file, &latin1).unwrap();
    let name = file.display().to_string();
    let out = smppgw().arg("check-config").arg(&file).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("{name}:18:6: ")) && err.contains("not UTF-8"), "{err}");

    // A reload of it: refused with the reason (400), the running configuration kept.
    std::fs::write(&file, &good).unwrap();
    let mut child = common::KillOnDrop(
        smppgw().arg("--config").arg(&file).stderr(std::process::Stdio::null()).spawn().unwrap(),
    );
    assert!(
        common::wait_for(Duration::from_secs(10), || std::net::TcpStream::connect(http).is_ok()),
        "the HTTP API is up"
    );
    std::fs::write(&file, &latin1).unwrap();
    let (status, body) = common::http_post(http, "/api/v1/config/reload");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("latin1.toml:18") && body.contains("not UTF-8"), "{body}");
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    assert!(child.0.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_node_restarted_with_its_clock_behind_its_last_ids_does_not_issue_them_again() {
    // Goal: with `--id-state FILE`, ids start above what the last run issued even when the clock
    // is behind it (here the last run's counter is an hour ahead of the clock, as after the
    // clock was stepped back an hour), and a clean stop leaves the last id issued in the file.
    let v = common::sim(|_| {});
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("smppgw-cli-ids-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("gw.toml");
    std::fs::write(&cfg, common::binary_config(port, v.local_addr().port(), "")).unwrap();
    let last_run = common::id_counter_now() + 3_600_000_000;
    let state = dir.join("ids");
    std::fs::write(&state, format!("{last_run}\n")).unwrap();
    let mut child = common::KillOnDrop(
        smppgw()
            .arg("--config")
            .arg(&cfg)
            .arg("--id-state")
            .arg(&state)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        common::wait_for(Duration::from_secs(10), || std::net::TcpStream::connect(addr).is_ok()
            && v.stats().binds_current >= 1),
        "the gateway serves and its vendor bind is up"
    );
    let mut c = common::Client::connect(addr);
    assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
    let mut counters = Vec::new();
    for i in 0..3 {
        let (st, id) = c.submit(&format!("1555888000{i}"), "after the restart");
        assert_eq!(st, CommandStatus::ESME_ROK);
        counters.push(u64::from_str_radix(&id, 16).unwrap() & common::ID_COUNTER_MASK);
    }
    assert!(
        counters.iter().all(|&n| n > last_run),
        "every id above the last run's: {counters:?} <= {last_run}"
    );
    drop(c);
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    assert!(child.0.wait().unwrap().success());
    let saved: u64 = std::fs::read_to_string(&state).unwrap().trim().parse().unwrap();
    assert_eq!(saved, *counters.iter().max().unwrap(), "the last id issued, kept for the next start");
    let _ = std::fs::remove_dir_all(&dir);
}
