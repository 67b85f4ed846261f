//! Helpers for the end-to-end tests: a gateway on an ephemeral port, the simulator as its vendor,
//! and a plain blocking SMPP client that shows exactly what a customer sees.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use smppgw_codec::{Address, Bind, Body, CommandStatus, Decoder, Pdu, SubmitSm};
use smppgw_engine::config::{Config, CustomerConfig, RouteConfig, VendorConfig};

/// A password hash for "pw", computed once per test binary.
pub fn pw_hash() -> String {
    use std::sync::OnceLock;
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| smppgw_engine::config::hash_password("pw")).clone()
}

/// A config with customers `c1`, `c2` (password "pw"), the given vendors, and one default route
/// through them in order.
pub fn config(vendors: &[(&str, SocketAddr)]) -> Config {
    let mut cfg = Config::default();
    cfg.server.listen = "127.0.0.1:0".parse().unwrap();
    cfg.server.cores = 2;
    cfg.server.shutdown_grace_ms = 3000;
    cfg.server.response_timeout_ms = 2000;
    for id in ["c1", "c2"] {
        cfg.customers.push(CustomerConfig::new(id, pw_hash()));
    }
    for (name, addr) in vendors {
        let mut v = VendorConfig::new(*name, addr.ip().to_string(), addr.port(), "smppgw", "secret");
        v.binds = 2;
        v.reconnect_backoff_min_ms = 50;
        v.reconnect_backoff_max_ms = 200;
        v.response_timeout_ms = 1000;
        cfg.vendors.push(v);
    }
    let names: Vec<&str> = vendors.iter().map(|(n, _)| *n).collect();
    if !names.is_empty() {
        cfg.routes.push(RouteConfig::new("default", &names));
    }
    cfg
}

/// A blocking SMPP client.
pub struct Client {
    pub stream: TcpStream,
    buf: BytesMut,
    seq: u32,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::from_stream(TcpStream::connect(addr).expect("connect"))
    }

    /// A client on a connection made otherwise (from a chosen source address, say).
    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.set_nodelay(true).unwrap();
        Client { stream, buf: BytesMut::new(), seq: 0 }
    }

    /// A client whose receive buffer is `rcvbuf` octets from the connect on (the window it
    /// advertises never exceeds it, as one set after the handshake may).
    pub fn connect_with_rcvbuf(addr: SocketAddr, rcvbuf: usize) -> Client {
        let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)
            .expect("socket");
        socket.set_recv_buffer_size(rcvbuf).expect("SO_RCVBUF");
        socket.connect(&addr.into()).expect("connect");
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.set_nodelay(true).unwrap();
        Client { stream, buf: BytesMut::new(), seq: 0 }
    }

    pub fn next_seq(&mut self) -> u32 {
        self.seq += 1;
        self.seq
    }

    pub fn send(&mut self, pdu: &Pdu) {
        self.stream.write_all(&pdu.to_bytes()).expect("write");
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// The next PDU, or None when the connection closed.
    pub fn recv(&mut self) -> Option<Pdu> {
        loop {
            match Decoder::default().decode(&mut self.buf) {
                Ok(Some(p)) => return Some(p),
                Ok(None) => {}
                Err(e) => panic!("gateway sent a malformed PDU: {e}"),
            }
            let mut tmp = [0u8; 65536];
            match self.stream.read(&mut tmp) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    panic!("no PDU from the gateway within the read timeout")
                }
                Err(_) => return None,
            }
        }
    }

    /// The next PDU, or None when nothing arrives within the read timeout or the peer closed.
    pub fn try_recv(&mut self) -> Option<Pdu> {
        loop {
            if let Ok(Some(p)) = Decoder::default().decode(&mut self.buf) {
                return Some(p);
            }
            let mut tmp = [0u8; 65536];
            match self.stream.read(&mut tmp) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
            }
        }
    }

    /// Receives until a response with `seq` arrives, answering enquire_link on the way.
    pub fn recv_resp(&mut self, seq: u32) -> Pdu {
        loop {
            let p = self.recv().expect("connection closed while waiting for a response");
            if p.sequence_number == seq && p.command_id().is_response() {
                return p;
            }
            if let Body::EnquireLink = p.body {
                self.send(&Pdu::new(p.sequence_number, Body::EnquireLinkResp));
            }
        }
    }

    pub fn bind(&mut self, kind: &str, system_id: &str, password: &str) -> CommandStatus {
        let seq = self.next_seq();
        let b = Bind {
            system_id: system_id.to_owned().into(),
            password: password.to_owned().into(),
            interface_version: 0x34,
            ..Default::default()
        };
        let body = match kind {
            "tx" => Body::BindTransmitter(b),
            "rx" => Body::BindReceiver(b),
            _ => Body::BindTransceiver(b),
        };
        self.send(&Pdu::new(seq, body));
        self.recv_resp(seq).command_status
    }

    pub fn submit_pdu(&mut self, dest: &str, text: &str) -> (u32, Pdu) {
        let seq = self.next_seq();
        let p = Pdu::new(
            seq,
            Body::SubmitSm(SubmitSm {
                source: Address::new(1, 1, "15550001"),
                dest: Address::new(1, 1, dest.to_owned()),
                short_message: text.to_owned().into(),
                ..Default::default()
            }),
        );
        (seq, p)
    }

    /// Submits one message and returns (status, message_id).
    pub fn submit(&mut self, dest: &str, text: &str) -> (CommandStatus, String) {
        let (seq, p) = self.submit_pdu(dest, text);
        self.send(&p);
        let r = self.recv_resp(seq);
        let id = match &r.body {
            Body::SubmitSmResp(m) => String::from_utf8_lossy(&m.message_id).into_owned(),
            _ => String::new(),
        };
        (r.command_status, id)
    }

    pub fn unbind(&mut self) -> CommandStatus {
        let seq = self.next_seq();
        self.send(&Pdu::new(seq, Body::Unbind));
        self.recv_resp(seq).command_status
    }
}

/// Polls `f` until it is true or `timeout` passes.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// A TOML config for the `smppgw` binary: SMPP on `port`, one core, customer c1 (password
/// "pw"), one vendor `v` at `vendor_port` on a catch-all route; `server_extra` is added to the
/// `[server]` table (lines ending in a newline).
#[allow(dead_code)]
pub fn binary_config(port: u16, vendor_port: u16, server_extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nhttp_listen = \"127.0.0.1:0\"\ncores = 1\n{server_extra}\n\
         [[customer]]\nsystem_id = \"c1\"\npassword_hash = \"{}\"\n\n\
         [[vendor]]\nname = \"v\"\nhost = \"127.0.0.1\"\nport = {vendor_port}\nsystem_id = \"smppgw\"\npassword = \"secret\"\n\n\
         [[route]]\nname = \"all\"\nprefixes = [\"\"]\nvendors = [\"v\"]\n",
        pw_hash()
    )
}

/// A child process (a gateway binary) killed if the test ends before it stops it.
#[allow(dead_code)]
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The bits of a message id that are its counter (engine/src/msgid.rs).
#[allow(dead_code)]
pub const ID_COUNTER_MASK: u64 = (1 << 50) - 1;

/// The id counter the clock gives now: microseconds since 2025-01-01 (engine/src/msgid.rs).
#[allow(dead_code)]
pub fn id_counter_now() -> u64 {
    let us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64;
    us - 1_735_689_600_000_000
}

/// Waits until every configured vendor of `gw` has a bind up, so that a submit right after it
/// does not depend on the vendor binding within the gateway's short hold.
#[allow(dead_code)]
pub fn wait_vendors_up(gw: &smppgw_engine::Gateway) {
    let up = || {
        gw.control()
            .current()
            .vendors
            .iter()
            .flatten()
            .all(|v| v.slots.iter().any(|s| s.up.load(std::sync::atomic::Ordering::Relaxed)))
    };
    assert!(wait_for(Duration::from_secs(10), up), "every vendor has a bind up");
}

/// A simulator on an ephemeral port with the gateway's vendor credentials, recording submits.
pub fn sim(tweak: impl FnOnce(&mut smppgw_loadgen::sim::SimConfig)) -> smppgw_loadgen::sim::SimHandle {
    let mut cfg = smppgw_loadgen::sim::SimConfig::for_tests();
    cfg.record_max = 10_000;
    cfg.seed = Some(7);
    tweak(&mut cfg);
    smppgw_loadgen::sim::Simulator::start(cfg).expect("simulator starts")
}

impl Client {
    /// Receives the next deliver_sm (answering enquire_link on the way) without answering it.
    pub fn recv_deliver(&mut self) -> Pdu {
        loop {
            let p = self.recv().expect("connection closed while waiting for deliver_sm");
            match p.body {
                Body::EnquireLink => self.send(&Pdu::new(p.sequence_number, Body::EnquireLinkResp)),
                Body::DeliverSm(_) | Body::DataSm(_) => return p,
                _ => {}
            }
        }
    }

    /// Answers a deliver_sm with `status`.
    pub fn answer(&mut self, p: &Pdu, status: CommandStatus) {
        let body = match p.body {
            Body::DataSm(_) => Body::DataSmResp(Default::default()),
            _ => Body::DeliverSmResp(Default::default()),
        };
        self.send(&Pdu::with_status(p.sequence_number, status, body));
    }

    /// Reads until the gateway closes the connection, answering its unbind; returns how many
    /// submit_sm_resp came with ESME_ROK and whether the gateway unbound this session.
    pub fn drain_until_closed(&mut self) -> (usize, bool) {
        let (mut acked, mut unbound) = (0, false);
        while let Some(p) = self.recv() {
            match p.body {
                Body::SubmitSmResp(_) if p.command_status.is_ok() => acked += 1,
                Body::Unbind => {
                    unbound = true;
                    self.send(&Pdu::new(p.sequence_number, Body::UnbindResp));
                }
                _ => {}
            }
        }
        (acked, unbound)
    }

    /// Submits with registered_delivery set; returns (status, id).
    pub fn submit_dlr(&mut self, dest: &str, text: &str) -> (CommandStatus, String) {
        let (seq, mut p) = self.submit_pdu(dest, text);
        if let Body::SubmitSm(s) = &mut p.body {
            s.registered_delivery = 1;
        }
        self.send(&p);
        let r = self.recv_resp(seq);
        let id = match &r.body {
            Body::SubmitSmResp(m) => String::from_utf8_lossy(&m.message_id).into_owned(),
            _ => String::new(),
        };
        (r.command_status, id)
    }
}

/// The receipt fields a customer sees: (receipted_message_id TLV, parsed text).
pub fn receipt_of(p: &Pdu) -> (String, smppgw_codec::receipt::Receipt) {
    let s = match &p.body {
        Body::DeliverSm(s) => s.clone(),
        Body::DataSm(d) => SubmitSm {
            short_message: d.tlvs.message_payload().unwrap_or_default(),
            tlvs: d.tlvs.clone(),
            esm_class: d.esm_class,
            ..Default::default()
        },
        _ => panic!("not a receipt: {p:?}"),
    };
    assert!(smppgw_codec::receipt::is_receipt(s.esm_class), "esm_class marks a receipt");
    let tlv =
        String::from_utf8_lossy(&s.tlvs.receipted_message_id().expect("receipted_message_id")).into_owned();
    let r = smppgw_codec::receipt::Receipt::parse(&s.short_message).expect("Appendix B text");
    (tlv, r)
}

/// POST `path` with an empty body, returning (status, body).
pub fn http_post(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the HTTP API");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("a status code");
    assert!(!head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "a sized body: {head}");
    (status, body.to_owned())
}

/// GET `path` from `addr`, returning (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the HTTP API");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("a status code");
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("chunk size line");
        let n = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
}

/// One connection the gateway made to a scripted fake SMSC (tests/vendor_side.rs,
/// tests/adversarial.rs).
pub struct SmscConn {
    /// The socket.
    pub s: std::net::TcpStream,
    /// What was read and not decoded yet.
    pub buf: bytes::BytesMut,
}

impl SmscConn {
    /// A connection with nothing read yet.
    pub fn new(s: std::net::TcpStream) -> SmscConn {
        SmscConn { s, buf: bytes::BytesMut::new() }
    }

    /// The next PDU; None when the gateway closed the connection or the socket's read timeout
    /// passed.
    pub fn recv(&mut self) -> Option<smppgw_codec::Pdu> {
        use std::io::Read;
        let mut chunk = [0u8; 4096];
        loop {
            if let Ok(Some(p)) = smppgw_codec::Decoder::default().decode(&mut self.buf) {
                return Some(p);
            }
            match self.s.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Sends `p`, ignoring a closed connection.
    pub fn send(&mut self, p: &smppgw_codec::Pdu) {
        self.send_raw(&p.to_bytes());
    }

    /// Sends octets as they are, ignoring a closed connection.
    pub fn send_raw(&mut self, b: &[u8]) {
        use std::io::Write;
        let _ = self.s.write_all(b);
    }
}
