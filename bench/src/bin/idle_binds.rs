//! Opens many idle customer binds to a running gateway and reports the gateway's memory per bind.
//!
//! `idle-binds --pid $(pgrep -x smppgw) --count 15000` binds COUNT transceivers (as the embedded
//! default's `demo` customer unless told otherwise), spreading the client side over 127.0.0.x
//! source addresses so the ephemeral port range is never the limit, waits for the gateway to
//! settle, and prints the growth of its resident memory divided by the number of binds.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use clap::Parser;
use smppgw_codec::{Bind, Body, Decoder, Pdu};

/// Idle-bind memory probe for smppgw.
#[derive(Parser, Debug)]
struct Args {
    /// Gateway SMPP address.
    #[arg(long, default_value = "127.0.0.1:2775")]
    target: SocketAddr,
    /// Gateway process id (its /proc/PID/status is read).
    #[arg(long)]
    pid: u32,
    /// Binds to open.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// system_id.
    #[arg(long, default_value = "demo")]
    system_id: String,
    /// password.
    #[arg(long, default_value = "demo")]
    password: String,
    /// Spread the binds over this many accounts named SYSTEM_ID0, SYSTEM_ID1, ... (customers
    /// may hold at most 1,024 binds each); 1 uses SYSTEM_ID as is.
    #[arg(long, default_value_t = 1)]
    accounts: usize,
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn connect(target: SocketAddr, i: usize) -> std::io::Result<TcpStream> {
    // 20,000 connections per source address keeps clear of the ephemeral port range.
    let src = Ipv4Addr::new(127, 0, 1 + (i / 20_000) as u8, 1);
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.bind(&SocketAddr::V4(SocketAddrV4::new(src, 0)).into())?;
    sock.connect(&target.into())?;
    Ok(sock.into())
}

/// The gateway's resident memory once it holds still: a node just started may still be
/// touching its preallocated receipt store (hundreds of MB), which a baseline taken then would
/// put on the binds. Waits until two readings a second apart agree within 1 MiB, at most 30 s.
fn settled_rss_kib(pid: u32) -> u64 {
    let mut last = rss_kib(pid);
    for _ in 0..30 {
        std::thread::sleep(Duration::from_secs(1));
        let now = rss_kib(pid);
        if now.abs_diff(last) <= 1024 {
            return now;
        }
        last = now;
    }
    last
}

fn main() {
    let a = Args::parse();
    let before = settled_rss_kib(a.pid);
    let t0 = Instant::now();
    let mut conns = Vec::with_capacity(a.count);
    let bind_for = |i: usize| {
        let id =
            if a.accounts > 1 { format!("{}{}", a.system_id, i % a.accounts) } else { a.system_id.clone() };
        Pdu::new(
            1,
            Body::BindTransceiver(Bind {
                system_id: id.into(),
                password: a.password.clone().into(),
                interface_version: 0x34,
                ..Default::default()
            }),
        )
        .to_bytes()
    };
    for i in 0..a.count {
        let bind = bind_for(i);
        match connect(a.target, i) {
            Ok(mut s) => {
                if s.write_all(&bind).is_err() {
                    eprintln!("write failed at {i}");
                    break;
                }
                conns.push(s);
            }
            Err(e) => {
                eprintln!("connect {i} failed: {e}");
                break;
            }
        }
    }
    let mut ok = 0usize;
    for s in &mut conns {
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        let mut buf = BytesMut::new();
        let mut tmp = [0u8; 256];
        loop {
            if let Ok(Some(p)) = Decoder::default().decode(&mut buf) {
                if p.command_status.is_ok() {
                    ok += 1;
                }
                break;
            }
            match s.read(&mut tmp) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
    }
    let bound_in = t0.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    let after = rss_kib(a.pid);
    let per = (after.saturating_sub(before)) as f64 / ok.max(1) as f64;
    println!(
        "{{\"binds_ok\":{ok},\"bound_in_s\":{:.2},\"rss_before_kib\":{before},\"rss_after_kib\":{after},\"kib_per_bind\":{per:.2}}}",
        bound_in.as_secs_f64()
    );
    println!("{ok} idle binds: gateway RSS {before} KiB -> {after} KiB = {per:.2} KiB per bind");
}
