//! The receipt state file (`smppgw --receipt-state FILE`): what a clean stop keeps for the next
//! start of the same node (see [`smppgw_engine::carryover`]), the messages whose vendor receipt
//! is still to come and the receipts and MO still queued for customers.
//!
//! Layout (all integers big-endian):
//!
//! ```text
//! header   "SMPPGWRS" (8 octets), version u16 (1), flags u16 (0), written at u64 (unix seconds)
//! entries  tag u8, length u32, payload (at most ENTRY_MAX octets)
//!            'R': stored at u64 (unix seconds), then the record as Redis keeps it
//!                 (redis::wire::encode_record, which names its customer and vendor)
//!            'D': customer system_id (u16 length, octets), then the delivery as the shared queue
//!                 keeps it (redis::wire::encode_delivery)
//! trailer  'E', records u64, deliveries u64, CRC-32 u32 of every octet before it
//! ```
//!
//! A file that is not exactly that (another program's, truncated by a crash, damaged) is refused
//! whole, never half applied: the node starts without it and says so. Entries naming a customer
//! or vendor the configuration no longer has are dropped and counted, as are records past the
//! receipt TTL and what goes beyond the stores' bounds.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use smppgw_engine::carryover::Carried;
use smppgw_engine::snapshot::Snapshot;

use crate::redis::wire;

const MAGIC: &[u8; 8] = b"SMPPGWRS";
const VERSION: u16 = 1;
const TAG_RECORD: u8 = b'R';
const TAG_DELIVERY: u8 = b'D';
const TAG_END: u8 = b'E';
/// The longest entry read: a record or a delivery is at most a few kilobytes.
pub const ENTRY_MAX: usize = 1 << 20;
/// Permissions of the file: it holds phone numbers and message texts.
pub const FILE_MODE: u32 = 0o600;

/// What [`save`] wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Saved {
    /// Records written.
    pub records: u64,
    /// Deliveries written.
    pub deliveries: u64,
    /// Entries left out: their customer or vendor is no longer configured.
    pub unknown: u64,
    /// Size of the file.
    pub bytes: u64,
}

/// What [`load`] read.
#[derive(Debug, Default)]
pub struct Loaded {
    /// What to hand to the cores ([`smppgw_engine::StartOptions::restore`]).
    pub carried: Carried,
    /// Entries dropped: their customer or vendor is no longer configured (or they do not parse).
    pub unknown: u64,
    /// Records dropped: past the receipt TTL.
    pub expired: u64,
    /// Entries dropped: beyond the bound of the store or of their customer's queue.
    pub over_bound: u64,
}

/// CRC-32 of everything written or read, and the count of octets.
struct Summing<T> {
    inner: T,
    crc: crc32fast::Hasher,
    bytes: u64,
}

impl<W: Write> Summing<W> {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.crc.update(b);
        self.bytes += b.len() as u64;
        self.inner.write_all(b)
    }
}

impl<R: Read> Summing<R> {
    fn take(&mut self, buf: &mut [u8]) -> Result<(), String> {
        self.inner.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "truncated".to_owned(),
            _ => e.to_string(),
        })?;
        self.crc.update(buf);
        Ok(())
    }
    fn u8(&mut self) -> Result<u8, String> {
        let mut b = [0u8; 1];
        self.take(&mut b)?;
        Ok(b[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let mut b = [0u8; 2];
        self.take(&mut b)?;
        Ok(u16::from_be_bytes(b))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let mut b = [0u8; 4];
        self.take(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let mut b = [0u8; 8];
        self.take(&mut b)?;
        Ok(u64::from_be_bytes(b))
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    PathBuf::from(tmp)
}

/// Writes `parts` to `path`, names as `snap` has them, replacing the file only once the new one
/// is complete and on disk (written beside it, synced, renamed, its directory synced).
pub fn save<'a>(
    path: &Path,
    snap: &Snapshot,
    parts: impl IntoIterator<Item = &'a Carried>,
) -> std::io::Result<Saved> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let tmp = tmp_path(path);
    let file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(FILE_MODE).open(&tmp)?;
    file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    let mut w =
        Summing { inner: BufWriter::with_capacity(1 << 20, file), crc: crc32fast::Hasher::new(), bytes: 0 };
    let mut saved = Saved::default();
    w.put(MAGIC)?;
    w.put(&VERSION.to_be_bytes())?;
    w.put(&0u16.to_be_bytes())?;
    w.put(&unix_now().to_be_bytes())?;
    let mut entry = Vec::with_capacity(512);
    let put_entry =
        |w: &mut Summing<BufWriter<std::fs::File>>, tag: u8, entry: &[u8]| -> std::io::Result<()> {
            w.put(&[tag])?;
            w.put(&(entry.len() as u32).to_be_bytes())?;
            w.put(entry)
        };
    for part in parts {
        for (at, rec) in &part.records {
            entry.clear();
            entry.extend_from_slice(&at.to_be_bytes());
            if !wire::encode_record_into(rec, snap, &mut entry) || entry.len() > ENTRY_MAX {
                saved.unknown += 1;
                continue;
            }
            put_entry(&mut w, TAG_RECORD, &entry)?;
            saved.records += 1;
        }
        for d in &part.deliveries {
            let Some(customer) = snap.customer_at(d.customer) else {
                saved.unknown += 1;
                continue;
            };
            entry.clear();
            let name = customer.cfg.system_id.as_bytes();
            let n = name.len().min(usize::from(u16::MAX));
            entry.extend_from_slice(&(n as u16).to_be_bytes());
            entry.extend_from_slice(&name[..n]);
            entry.extend_from_slice(&wire::encode_delivery(d));
            if entry.len() > ENTRY_MAX {
                saved.unknown += 1;
                continue;
            }
            put_entry(&mut w, TAG_DELIVERY, &entry)?;
            saved.deliveries += 1;
        }
    }
    w.put(&[TAG_END])?;
    w.put(&saved.records.to_be_bytes())?;
    w.put(&saved.deliveries.to_be_bytes())?;
    let crc = std::mem::take(&mut w.crc).finalize();
    w.inner.write_all(&crc.to_be_bytes())?;
    saved.bytes = w.bytes + 4;
    let file = w.inner.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()?;
    Ok(saved)
}

/// Reads the file at `path` for the configuration `snap`: `None` when there is none. Keeps at
/// most `records_max` records (the stores' bound: `receipt_store_max` times the cores), the
/// youngest, and per customer at most what its queue holds. An error says why the file was
/// refused whole.
pub fn load(path: &Path, snap: &Snapshot, records_max: usize) -> Result<Option<Loaded>, String> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let mut r =
        Summing { inner: BufReader::with_capacity(1 << 20, file), crc: crc32fast::Hasher::new(), bytes: 0 };
    let mut magic = [0u8; 8];
    r.take(&mut magic).map_err(|e| format!("not a receipt state file ({e})"))?;
    if &magic != MAGIC {
        return Err("not a receipt state file".into());
    }
    let version = r.u16()?;
    if version != VERSION {
        return Err(format!("version {version} (this build reads {VERSION})"));
    }
    let _flags = r.u16()?;
    let _written = r.u64()?;
    let ttl = u64::from(snap.config.server.receipt_ttl_secs);
    // What a customer's queue holds while it has no receiving session, as at a start: the
    // dispatcher would drop the oldest beyond it.
    let queue_max = (snap.config.server.receipt_queue_max as usize).max(1);
    let now = unix_now();
    let mut out = Loaded::default();
    let mut per_customer: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    let (mut records, mut deliveries) = (0u64, 0u64);
    let mut entry = Vec::new();
    loop {
        let tag = r.u8()?;
        if tag == TAG_END {
            break;
        }
        let n = r.u32()? as usize;
        if n > ENTRY_MAX {
            return Err(format!("an entry of {n} octets (at most {ENTRY_MAX})"));
        }
        entry.resize(n, 0);
        r.take(&mut entry)?;
        match tag {
            TAG_RECORD => {
                records += 1;
                let (Some(at), Some(rec)) = (
                    entry.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes),
                    entry.get(8..).and_then(|b| wire::decode_record(b, snap)),
                ) else {
                    out.unknown += 1;
                    continue;
                };
                if now.saturating_sub(at) >= ttl {
                    out.expired += 1;
                    continue;
                }
                out.carried.records.push((at, rec));
            }
            TAG_DELIVERY => {
                deliveries += 1;
                let name_len =
                    entry.get(..2).map_or(usize::MAX, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
                let decoded = entry.get(2..2usize.saturating_add(name_len)).and_then(|name| {
                    let customer = snap.customer(name)?.idx;
                    wire::decode_delivery(entry.get(2 + name_len..)?, customer)
                });
                let Some(d) = decoded else {
                    out.unknown += 1;
                    continue;
                };
                *per_customer.entry(d.customer).or_default() += 1;
                out.carried.deliveries.push(Arc::new(d));
            }
            other => return Err(format!("an entry of unknown kind {other:#04x}")),
        }
    }
    let (want_records, want_deliveries) = (r.u64()?, r.u64()?);
    let crc = std::mem::take(&mut r.crc).finalize();
    let mut stored = [0u8; 4];
    r.inner.read_exact(&mut stored).map_err(|_| "truncated".to_owned())?;
    if u32::from_be_bytes(stored) != crc {
        return Err("checksum mismatch (damaged)".into());
    }
    if (want_records, want_deliveries) != (records, deliveries) {
        return Err(format!(
            "{records} records and {deliveries} deliveries where the trailer says {want_records} and {want_deliveries}"
        ));
    }
    let mut rest = [0u8; 1];
    if r.inner.read(&mut rest).map_err(|e| e.to_string())? != 0 {
        return Err("octets after the trailer".into());
    }
    // Each customer's youngest deliveries within its queue's bound, in order: the dispatcher
    // would have dropped the oldest.
    let mut skip: std::collections::HashMap<u32, usize> =
        per_customer.into_iter().filter(|&(_, n)| n > queue_max).map(|(c, n)| (c, n - queue_max)).collect();
    if !skip.is_empty() {
        out.carried.deliveries.retain(|d| match skip.get_mut(&d.customer) {
            Some(n) if *n > 0 => {
                *n -= 1;
                out.over_bound += 1;
                false
            }
            _ => true,
        });
    }
    // The youngest within the bound: the store would have evicted the oldest.
    if out.carried.records.len() > records_max {
        out.carried.records.sort_by_key(|(at, _)| *at);
        let over = out.carried.records.len() - records_max;
        out.carried.records.drain(..over);
        out.over_bound += over as u64;
    }
    Ok(Some(out))
}

/// Takes the file out of the way once its contents are in the cores (or refused): a file is
/// never applied twice. A refused file is kept beside it as `FILE.bad` for a look.
pub fn set_aside(path: &Path, refused: bool) -> std::io::Result<()> {
    if refused {
        let mut bad = path.as_os_str().to_owned();
        bad.push(".bad");
        std::fs::rename(path, PathBuf::from(bad))
    } else {
        std::fs::remove_file(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smppgw_codec::receipt::MessageState;
    use smppgw_codec::{Address, SubmitSm};
    use smppgw_engine::config::{Config, CustomerConfig, VendorConfig};
    use smppgw_engine::deliveries::{Delivery, Kind};
    use smppgw_engine::store::{Record, SUBMITTED_MS_UNKNOWN, Small, Wanted};

    fn snap(customers: &[&str]) -> Snapshot {
        let mut cfg = Config::default();
        for c in customers {
            cfg.customers.push(CustomerConfig::new(*c, "x"));
        }
        cfg.vendors.push(VendorConfig::new("v1", "127.0.0.1", 1, "a", "b"));
        Snapshot::build(cfg, 2)
    }

    fn record(n: u64, customer: u32) -> Record {
        Record {
            msg_id: n,
            shown_id: n,
            customer,
            vendor: 0,
            vendor_id: Small::new(format!("V{n:08}").as_bytes()),
            source: (1, 1, Small::from("15550001")),
            dest: (1, 1, Small::from("15550002")),
            submitted: 1_764_000_000,
            submitted_ms: SUBMITTED_MS_UNKNOWN,
            state: MessageState::Enroute,
            final_at: 0,
            error: 0,
            receipts: Wanted::FINAL,
            siblings: Vec::new(),
        }
    }

    fn delivery(customer: u32, text: &str) -> Arc<Delivery> {
        let body = SubmitSm {
            source: Address::new(1, 1, "15550002"),
            dest: Address::new(1, 1, "15550001"),
            esm_class: 0x04,
            short_message: text.to_owned().into(),
            ..SubmitSm::default()
        };
        Arc::new(Delivery { customer, token: 5, kind: Kind::Receipt, body, attempts: 1 })
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("smppgw-rstate-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    #[test]
    fn the_state_round_trips_across_configurations_that_number_customers_differently() {
        // Goal: what a stop writes is what the next start reads, mapped by name to the new
        // configuration's indexes; entries of customers it no longer has are dropped and
        // counted, as are records past the TTL; the file is refused whole when damaged.
        let d = dir("round-trip");
        let path = d.join("state");
        let before = snap(&["acme", "beta", "gone"]);
        let now = unix_now();
        let part = Carried {
            records: vec![(now - 5, record(1, 0)), (now - 1, record(2, 1)), (now - 2, record(3, 2))],
            deliveries: vec![
                delivery(1, "first"),
                delivery(0, "other"),
                delivery(1, "second"),
                delivery(2, "x"),
            ],
        };
        let old = Carried { records: vec![(now - 700_000, record(4, 0))], deliveries: Vec::new() };
        let saved = save(&path, &before, [&part, &old]).expect("saved");
        assert_eq!((saved.records, saved.deliveries, saved.unknown), (4, 4, 0));
        assert_eq!(saved.bytes, std::fs::metadata(&path).expect("file").len());
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&path).expect("file").permissions().mode() & 0o777, FILE_MODE);

        let after = snap(&["beta", "acme"]);
        let loaded = load(&path, &after, 100).expect("reads").expect("a file");
        assert_eq!((loaded.unknown, loaded.expired, loaded.over_bound), (2, 1, 0));
        let recs = &loaded.carried.records;
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0], (now - 5, Record { customer: 1, ..record(1, 0) }), "acme is index 1 now");
        assert_eq!(recs[1], (now - 1, Record { customer: 0, ..record(2, 1) }));
        let ds: Vec<(u32, String, u8)> = loaded
            .carried
            .deliveries
            .iter()
            .map(|d| (d.customer, String::from_utf8_lossy(&d.body.short_message).into_owned(), d.attempts))
            .collect();
        assert_eq!(
            ds,
            [(0, "first".into(), 1), (1, "other".into(), 1), (0, "second".into(), 1)],
            "in order, beta's at index 0"
        );

        // The bound keeps the youngest records.
        let bounded = load(&path, &after, 1).expect("reads").expect("a file");
        assert_eq!(bounded.carried.records.len(), 1);
        assert_eq!(bounded.carried.records[0].1.msg_id, 2);
        assert_eq!(bounded.over_bound, 1);

        // Damaged anywhere, cut anywhere, or extended: refused whole, never a panic.
        let bytes = std::fs::read(&path).expect("read");
        let bad = d.join("bad");
        for cut in 0..bytes.len() {
            std::fs::write(&bad, &bytes[..cut]).expect("write");
            assert!(load(&bad, &after, 100).is_err(), "truncated at {cut}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x41;
            std::fs::write(&bad, &b).expect("write");
            assert!(load(&bad, &after, 100).is_err(), "flipped at {i}");
        }
        let mut b = bytes.clone();
        b.push(0);
        std::fs::write(&bad, &b).expect("write");
        assert!(load(&bad, &after, 100).is_err(), "trailing octets");
        std::fs::write(&bad, b"id-state 12345\n").expect("write");
        assert!(load(&bad, &after, 100).is_err_and(|e| e.contains("not a receipt state file")));
        assert!(load(&d.join("none"), &after, 100).expect("no file is no error").is_none());

        set_aside(&path, false).expect("removed");
        assert!(!path.exists());
        set_aside(&bad, true).expect("renamed");
        assert!(d.join("bad.bad").exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_customer_s_deliveries_are_restored_up_to_its_queue_bound_the_youngest_kept() {
        // Goal: at a start the customer has no receiving session, so its queue holds
        // `receipt_queue_max` and the dispatcher drops the oldest beyond it; the loader keeps
        // the same ones and counts the rest, so the start's log says what was restored. It kept
        // up to eight times as many, the oldest, and the dispatcher dropped them unannounced.
        let d = dir("queue-bound");
        let path = d.join("state");
        let mut cfg = Config::default();
        cfg.customers.push(CustomerConfig::new("acme", "x"));
        cfg.customers.push(CustomerConfig::new("beta", "x"));
        cfg.vendors.push(VendorConfig::new("v1", "127.0.0.1", 1, "a", "b"));
        cfg.server.receipt_queue_max = 2;
        let s = Snapshot::build(cfg, 2);
        let part = Carried {
            records: Vec::new(),
            deliveries: vec![
                delivery(0, "a1"),
                delivery(1, "b1"),
                delivery(0, "a2"),
                delivery(0, "a3"),
                delivery(0, "a4"),
                delivery(1, "b2"),
            ],
        };
        save(&path, &s, [&part]).expect("saved");
        let loaded = load(&path, &s, 100).expect("reads").expect("a file");
        let texts: Vec<String> = loaded
            .carried
            .deliveries
            .iter()
            .map(|d| String::from_utf8_lossy(&d.body.short_message).into_owned())
            .collect();
        assert_eq!(texts, ["b1", "a3", "a4", "b2"], "each customer's youngest two, in order");
        assert_eq!(loaded.over_bound, 2);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    #[ignore = "a measurement: cargo test --release -p smppgw-control -- --ignored --nocapture million"]
    fn time_to_write_and_read_a_million_records() {
        let d = dir("million");
        let path = d.join("state");
        let s = snap(&["acme"]);
        let now = unix_now();
        let part = Carried {
            records: (0..1_000_000).map(|n| (now, record(n, 0))).collect(),
            deliveries: Vec::new(),
        };
        let started = std::time::Instant::now();
        let saved = save(&path, &s, [&part]).expect("saved");
        let wrote = started.elapsed();
        let started = std::time::Instant::now();
        let loaded = load(&path, &s, 2_000_000).expect("reads").expect("a file");
        let read = started.elapsed();
        assert_eq!(loaded.carried.records.len(), 1_000_000);
        println!(
            "1,000,000 records, {} octets: written (with fsync) in {wrote:?}, read in {read:?}",
            saved.bytes
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
