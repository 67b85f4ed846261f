//! How messages and deliveries are written in Redis.
//!
//! Nodes may number customers and vendors differently (indexes follow each node's config
//! history), so what goes to Redis names them: a record read back on another node is mapped to
//! that node's indexes, and one naming a customer or vendor that node does not know is skipped.
//! The format is a versioned, length-prefixed binary layout; a value that does not parse is
//! treated as absent, never trusted.

use bytes::{BufMut, BytesMut};
use smppgw_codec::receipt::MessageState;
use smppgw_codec::{Body, Decoder, Pdu};
use smppgw_engine::deliveries::{Delivery, Kind};
use smppgw_engine::io::Sibling;
use smppgw_engine::snapshot::Snapshot;
use smppgw_engine::store::{Record, SUBMITTED_MS_UNKNOWN, Small, Wanted};

const RECORD_V1: u8 = 1;
const DELIVERY_V1: u8 = 1;
/// A delivery whose addresses do not fit a deliver_sm (an MO from a long address, 21 to 65
/// characters, which goes to the customer as data_sm): the PDU with empty addresses, then the
/// two addresses.
const DELIVERY_V2: u8 = 2;
/// The longest address a deliver_sm carries (SMPP 3.4 section 4.6.1: 21 octets with the NUL).
const DELIVER_SM_ADDR_MAX: usize = 20;
/// Most siblings a stored record may list (a long message has at most 255 parts).
const SIBLINGS_MAX: usize = 255;

/// Bounds-checked reading of the layout.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(u64::from_be_bytes(a))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let n = b.len().min(usize::from(u16::MAX));
    out.put_u16(n as u16);
    out.put_slice(&b[..n]);
}

/// The stored form of `rec`, or None when its customer or vendor is not in `snap`.
pub fn encode_record(rec: &Record, snap: &Snapshot) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(96 + rec.siblings.len() * 9);
    encode_record_into(rec, snap, &mut out).then_some(out)
}

/// Appends the stored form of `rec` to `out`; false (and nothing appended) when its customer or
/// vendor is not in `snap`.
pub fn encode_record_into(rec: &Record, snap: &Snapshot, out: &mut Vec<u8>) -> bool {
    let (Some(customer), Some(vendor)) = (snap.customer_at(rec.customer), snap.vendor(rec.vendor)) else {
        return false;
    };
    out.put_u8(RECORD_V1);
    out.put_u64(rec.msg_id);
    out.put_u64(rec.shown_id);
    out.put_u64(rec.submitted);
    out.put_u64(rec.final_at);
    out.put_u16(rec.error);
    out.put_u8(rec.state.as_u8());
    out.put_u8(rec.receipts.octet());
    put_bytes(out, customer.cfg.system_id.as_bytes());
    put_bytes(out, vendor.cfg.name.as_bytes());
    put_bytes(out, &rec.vendor_id);
    for (ton, npi, addr) in [&rec.source, &rec.dest] {
        out.put_u8(*ton);
        out.put_u8(*npi);
        put_bytes(out, addr.as_bytes());
    }
    let n = rec.siblings.len().min(SIBLINGS_MAX);
    out.put_u16(n as u16);
    for s in &rec.siblings[..n] {
        out.put_u64(s.shown_id);
    }
    // After the ids, so that a node of the earlier layout reads the record as before (it
    // ignores what follows them).
    for s in &rec.siblings[..n] {
        out.put_u8(s.wants.octet());
    }
    true
}

/// A stored record mapped to `snap`'s indexes; None when it does not parse or names a customer
/// or vendor `snap` lacks.
pub fn decode_record(b: &[u8], snap: &Snapshot) -> Option<Record> {
    let mut r = Reader(b);
    if r.u8()? != RECORD_V1 {
        return None;
    }
    let msg_id = r.u64()?;
    let shown_id = r.u64()?;
    let submitted = r.u64()?;
    let final_at = r.u64()?;
    let error = r.u16()?;
    let state = MessageState::from_u8(r.u8()?)?;
    let receipts = Wanted::from_octet(r.u8()?);
    let customer = snap.customer(r.bytes()?)?.idx;
    let vendor_name = std::str::from_utf8(r.bytes()?).ok()?;
    let vendor = snap.vendors.iter().flatten().find(|v| v.cfg.name == vendor_name)?.idx;
    let vendor_id = Small::new(r.bytes()?);
    let source = (r.u8()?, r.u8()?, Small::new(r.bytes()?));
    let dest = (r.u8()?, r.u8()?, Small::new(r.bytes()?));
    let n = usize::from(r.u16()?);
    if n > SIBLINGS_MAX {
        return None;
    }
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(r.u64()?);
    }
    // What each sibling asked for; a record of the earlier layout has none, and its siblings'
    // receipts then follow the last part's, as that layout's nodes did.
    let wants = match r.0.len() {
        0 => None,
        _ => Some(r.take(n)?),
    };
    let siblings = ids
        .into_iter()
        .enumerate()
        .map(|(i, shown_id)| Sibling {
            shown_id,
            wants: wants.and_then(|w| w.get(i)).map_or(receipts, |&o| Wanted::from_octet(o)),
        })
        .collect();
    Some(Record {
        msg_id,
        shown_id,
        customer,
        vendor,
        vendor_id,
        source,
        dest,
        submitted,
        // Whole seconds only: a record from another node is not timed in the receipt histogram.
        submitted_ms: SUBMITTED_MS_UNKNOWN,
        state,
        final_at,
        error,
        receipts,
        siblings,
    })
}

/// Appends one entry of a group blob: our id, the record's length, the record. A group key holds
/// the entries of a run of consecutive ids, appended as they are written; a later entry for the
/// same id is a newer state of that message.
pub fn push_entry(out: &mut Vec<u8>, shown_id: u64, record: &[u8]) {
    let n = record.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&shown_id.to_be_bytes());
    out.extend_from_slice(&(n as u16).to_be_bytes());
    out.extend_from_slice(&record[..n]);
}

/// Appends an entry for `rec` under id `id` to a group blob, encoding it in place; false (and
/// nothing appended) when its customer or vendor is not in `snap`.
pub fn push_record(out: &mut Vec<u8>, id: u64, rec: &Record, snap: &Snapshot) -> bool {
    let start = out.len();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    if !encode_record_into(rec, snap, out) {
        out.truncate(start);
        return false;
    }
    let n = out.len() - start - 10;
    if n > usize::from(u16::MAX) {
        out.truncate(start);
        return false;
    }
    out[start + 8..start + 10].copy_from_slice(&(n as u16).to_be_bytes());
    true
}

/// The newest record of `shown_id` in a group blob. A damaged tail ends the search; what was
/// read before it still counts.
pub fn find_entry(blob: &[u8], shown_id: u64) -> Option<&[u8]> {
    let mut r = Reader(blob);
    let mut found = None;
    while !r.0.is_empty() {
        let Some(id) = r.u64() else { break };
        let Some(rec) = r.bytes() else { break };
        if id == shown_id {
            found = Some(rec);
        }
    }
    found
}

/// The queued form of a delivery: its kind and attempts, then the deliver_sm as a PDU (with its
/// addresses after it when they are longer than a deliver_sm carries: [`DELIVERY_V2`]).
pub fn encode_delivery(d: &Delivery) -> Vec<u8> {
    let long = d.body.source.addr.len() > DELIVER_SM_ADDR_MAX || d.body.dest.addr.len() > DELIVER_SM_ADDR_MAX;
    let mut out = BytesMut::with_capacity(64 + d.body.short_message.len());
    out.put_u8(if long { DELIVERY_V2 } else { DELIVERY_V1 });
    out.put_u8(match d.kind {
        Kind::Receipt => 0,
        Kind::Mo => 1,
    });
    out.put_u8(d.attempts);
    let mut body = d.body.clone();
    if long {
        body.source.addr = bytes::Bytes::new();
        body.dest.addr = bytes::Bytes::new();
    }
    let mut pdu = BytesMut::new();
    Pdu::new(0, Body::DeliverSm(body)).encode(&mut pdu);
    if long {
        out.put_u32(pdu.len() as u32);
    }
    out.extend_from_slice(&pdu);
    let mut out = out.to_vec();
    if long {
        put_bytes(&mut out, &d.body.source.addr);
        put_bytes(&mut out, &d.body.dest.addr);
    }
    out
}

/// A queued delivery for customer index `customer`; None when it does not parse.
pub fn decode_delivery(b: &[u8], customer: u32) -> Option<Delivery> {
    let mut r = Reader(b);
    let version = r.u8()?;
    if version != DELIVERY_V1 && version != DELIVERY_V2 {
        return None;
    }
    let kind = match r.u8()? {
        0 => Kind::Receipt,
        1 => Kind::Mo,
        _ => return None,
    };
    // Another version or a hand edit may have written any count: at most the engine's limit.
    let attempts = r.u8()?.min(smppgw_engine::deliveries::DELIVERY_ATTEMPTS_MAX);
    let pdu = match version {
        DELIVERY_V1 => std::mem::take(&mut r.0),
        _ => {
            let n = u32::from_be_bytes(r.take(4)?.try_into().ok()?) as usize;
            r.take(n)?
        }
    };
    let mut buf = BytesMut::from(pdu);
    let mut body = match Decoder::default().decode(&mut buf) {
        Ok(Some(Pdu { body: Body::DeliverSm(body), .. })) if buf.is_empty() => body,
        _ => return None,
    };
    if version == DELIVERY_V2 {
        // At most what a data_sm carries (65 octets), as the vendor's was.
        let addr =
            |r: &mut Reader<'_>| r.bytes().filter(|a| a.len() <= 65).map(bytes::Bytes::copy_from_slice);
        body.source.addr = addr(&mut r)?;
        body.dest.addr = addr(&mut r)?;
        if !r.0.is_empty() {
            return None;
        }
    }
    Some(Delivery { customer, token: 0, kind, body, attempts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use smppgw_codec::{Address, SubmitSm};
    use smppgw_engine::config::{Config, CustomerConfig, VendorConfig};

    fn snap(order: &[&str]) -> Snapshot {
        let mut cfg = Config::default();
        for c in order {
            cfg.customers.push(CustomerConfig::new(*c, "x"));
        }
        cfg.vendors.push(VendorConfig::new("v1", "127.0.0.1", 1, "a", "b"));
        cfg.vendors.push(VendorConfig::new("v2", "127.0.0.1", 2, "a", "b"));
        Snapshot::build(cfg, 2)
    }

    fn record(customer: u32) -> Record {
        Record {
            msg_id: 7,
            shown_id: 0xdead_beef,
            customer,
            vendor: 1,
            vendor_id: Small::from("ABC-123"),
            source: (1, 1, Small::from("15550001")),
            dest: (1, 1, Small::from("15550002")),
            submitted: 1_764_000_000,
            // The shared form keeps whole seconds: a record read back has no millisecond.
            submitted_ms: SUBMITTED_MS_UNKNOWN,
            state: MessageState::Delivered,
            final_at: 1_764_000_009,
            error: 3,
            receipts: Wanted::FINAL,
            siblings: vec![
                Sibling { shown_id: 5, wants: Wanted::FINAL },
                Sibling { shown_id: 6, wants: Wanted::from_registered_delivery(0x03) },
            ],
        }
    }

    #[test]
    fn a_record_crosses_nodes_that_number_customers_differently() {
        let a = snap(&["acme", "beta"]);
        let b = snap(&["beta", "acme"]);
        let bytes = encode_record(&record(0), &a).expect("acme is known");
        let back = decode_record(&bytes, &b).expect("parses");
        assert_eq!(back.customer, 1, "acme is index 1 on node b");
        assert_eq!(Record { customer: 0, ..back }, record(0));
    }

    #[test]
    fn unknown_names_and_damaged_values_are_absent() {
        let a = snap(&["acme"]);
        let other = snap(&["zeta"]);
        let bytes = encode_record(&record(0), &a).expect("known");
        assert!(decode_record(&bytes, &other).is_none(), "customer unknown there");
        // The earlier layout ends with the siblings' ids: their receipts follow the record's.
        let earlier = bytes.len() - 2;
        let old = decode_record(&bytes[..earlier], &a).expect("the earlier layout");
        assert!(old.siblings.iter().all(|s| s.wants == Wanted::FINAL), "{:?}", old.siblings);
        for cut in (0..bytes.len()).filter(|&cut| cut != earlier) {
            assert!(decode_record(&bytes[..cut], &a).is_none(), "truncated at {cut}");
        }
        assert!(encode_record(&record(9), &a).is_none(), "no customer 9");
        assert!(decode_record(b"\x02garbage", &a).is_none());
    }

    #[test]
    fn records_pushed_into_a_group_are_found_by_id() {
        let a = snap(&["acme"]);
        let mut blob = Vec::new();
        let mut first = record(0);
        first.state = MessageState::Enroute;
        assert!(push_record(&mut blob, first.shown_id, &first, &a));
        assert!(!push_record(&mut blob, 9, &record(9), &a), "unknown customer: nothing appended");
        let mut other = record(0);
        other.shown_id += 1;
        assert!(push_record(&mut blob, other.shown_id, &other, &a));
        assert!(push_record(&mut blob, record(0).shown_id, &record(0), &a));
        let found =
            decode_record(find_entry(&blob, record(0).shown_id).expect("present"), &a).expect("parses");
        assert_eq!(found, record(0), "the newest state");
        let found = decode_record(find_entry(&blob, other.shown_id).expect("present"), &a).expect("parses");
        assert_eq!(found, other);
    }

    #[test]
    fn the_newest_entry_of_an_id_wins_and_a_damaged_tail_is_ignored() {
        let mut blob = Vec::new();
        push_entry(&mut blob, 1, b"first");
        push_entry(&mut blob, 2, b"other");
        push_entry(&mut blob, 1, b"newer");
        assert_eq!(find_entry(&blob, 1), Some(&b"newer"[..]));
        assert_eq!(find_entry(&blob, 2), Some(&b"other"[..]));
        assert_eq!(find_entry(&blob, 3), None);
        let whole = blob.len();
        blob.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 0xff]);
        assert_eq!(find_entry(&blob, 1), Some(&b"newer"[..]), "a torn entry is skipped");
        for cut in 0..whole {
            let _ = find_entry(&blob[..cut], 1);
        }
    }

    #[test]
    fn a_delivery_round_trips() {
        let body = SubmitSm {
            source: Address::new(1, 1, "15550002"),
            dest: Address::new(1, 1, "15550001"),
            esm_class: 0x04,
            short_message: Bytes::from_static(b"id:1 sub:001 dlvrd:001 submit date:2511251200 done date:2511251201 stat:DELIVRD err:000 text:"),
            ..SubmitSm::default()
        };
        let d = Delivery { customer: 3, token: 99, kind: Kind::Receipt, body, attempts: 2 };
        let bytes = encode_delivery(&d);
        let back = decode_delivery(&bytes, 5).expect("parses");
        assert_eq!((back.customer, back.token, back.kind, back.attempts), (5, 0, Kind::Receipt, 2));
        assert_eq!(back.body, d.body);
        for cut in 0..bytes.len() {
            assert!(decode_delivery(&bytes[..cut], 5).is_none(), "truncated at {cut}");
        }
    }

    #[test]
    fn an_mo_from_a_long_address_round_trips() {
        // Goal: an MO a vendor sent as data_sm from an address longer than a deliver_sm carries
        // (it goes to the customer as data_sm) survives the shared queue; the queue's decoder
        // refused it and the MO was dropped when the customer was bound on another node.
        let long = "alphanumeric-sender-name-longer-than-twenty";
        let body = SubmitSm {
            source: Address::new(5, 0, long),
            dest: Address::new(1, 1, "15550001"),
            short_message: Bytes::from_static(b"hello"),
            ..SubmitSm::default()
        };
        let d = Delivery { customer: 1, token: 7, kind: Kind::Mo, body, attempts: 0 };
        let bytes = encode_delivery(&d);
        let back = decode_delivery(&bytes, 1).expect("parses");
        assert_eq!(back.kind, Kind::Mo);
        assert_eq!(back.body, d.body, "the long address kept");
        for cut in 0..bytes.len() {
            assert!(decode_delivery(&bytes[..cut], 1).is_none(), "truncated at {cut}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(decode_delivery(&extra, 1).is_none(), "trailing bytes");
    }
}
