//! The smppgw binary's commands: check-config explains errors with their line, hash-password
//! prints a hash the config accepts, and the gateway drains on SIGTERM and exits 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

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
fn sigterm_drains_and_exits_zero() {
    let mut child = smppgw()
        .env("SMPPGW__SERVER__LISTEN", "127.0.0.1:0")
        .env("SMPPGW__SERVER__CORES", "1")
        .env("SMPPGW__SERVER__HTTP_LISTEN", "127.0.0.1:0")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
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
