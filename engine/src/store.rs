//! The receipt store: what we know of each message, for matching vendor receipts, query_sm,
//! cancel_sm, replace_sm and the HTTP lookup. Sans-IO and per core: each core owns the shard of
//! vendor message ids that hash to it ([`shard_of`]), bounded in entries and in age.
//!
//! Vendor ids are matched whatever their style: case, leading zeros, and a receipt that quotes in
//! decimal an id the submit_sm_resp gave in hex (or the reverse) all find the message. A receipt
//! that arrives before the submit_sm_resp is parked (bounded, briefly) and applied when the
//! message is stored.

use std::collections::VecDeque;

use smppgw_codec::receipt::MessageState;

use crate::seqindex::SeqIndex;

/// How long a receipt may wait for its submit_sm_resp, in seconds (with shared state, for its
/// message to be found at another node: while that cannot be asked the wait is paused, see
/// [`Shard::pause_parked`]).
pub const EARLY_RECEIPT_TTL_SECS: u64 = 120;
/// Receipts parked waiting for their submit_sm_resp, per core; beyond it a receipt is refused
/// (counted unmatched).
pub const EARLY_RECEIPTS_MAX: usize = 100_000;
/// Of those, the most one vendor may hold: a vendor sending receipts for ids it never gave us
/// (or for another node's messages while Redis is away) leaves room for the others' receipts
/// that race their submit_sm_resp.
pub const EARLY_RECEIPTS_PER_VENDOR_MAX: usize = EARLY_RECEIPTS_MAX / 2;
const _: () =
    assert!(EARLY_RECEIPTS_PER_VENDOR_MAX > 0 && EARLY_RECEIPTS_PER_VENDOR_MAX < EARLY_RECEIPTS_MAX);

/// A vendor message id reduced to its canonical form: trimmed, lower case, no leading zeros.
/// Kept inline (no allocation) up to [`Small`]'s inline size, which covers the usual ids.
pub fn canonical_id(id: &[u8]) -> Small {
    let id = trim(id);
    let zeros = id.iter().take_while(|&&c| c == b'0').count();
    let id = match (zeros == id.len(), id.is_empty()) {
        (true, false) => b"0".as_slice(),
        (true, true) => id,
        (false, _) => &id[zeros..],
    };
    Small::lowercase(id)
}

/// Whether two spellings whose canonical forms are equal are still different ids: both mix
/// upper- and lower-case letters (base62 and the like, where case is part of the id) and differ
/// in case. A vendor that changes an id's case between its answer and its receipt changes all
/// of its letters; one whose ids mix cases would otherwise have one customer's receipt matched
/// to another customer's message whose id differs from it in case alone.
fn case_sensitive_and_different(a: &[u8], b: &[u8]) -> bool {
    let mixed = |s: &[u8]| s.iter().any(u8::is_ascii_uppercase) && s.iter().any(u8::is_ascii_lowercase);
    mixed(a) && mixed(b) && without_leading_zeros(a) != without_leading_zeros(b)
}

fn without_leading_zeros(id: &[u8]) -> &[u8] {
    let id = trim(id);
    &id[id.iter().take_while(|&&c| c == b'0').count()..]
}

fn trim(id: &[u8]) -> &[u8] {
    let start = id.iter().position(|c| !c.is_ascii_whitespace() && *c != 0).unwrap_or(id.len());
    let end = id.iter().rposition(|c| !c.is_ascii_whitespace() && *c != 0).map_or(start, |e| e + 1);
    &id[start..end.max(start)]
}

/// Which other radix spellings of a vendor's id to try (vendors are seen answering submit_sm
/// in hex and quoting receipts in decimal). Every alternate tried is also a chance to match
/// another message whose id happens to be that spelling, so a vendor whose `id_format` is known
/// gets only the conversion its receipts may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Radix {
    /// Read the id as decimal and try its hex spelling.
    pub dec_to_hex: bool,
    /// Read the id as hex and try its decimal spelling.
    pub hex_to_dec: bool,
}

impl Radix {
    /// Both ways (a vendor whose id format is `auto`).
    pub const BOTH: Radix = Radix { dec_to_hex: true, hex_to_dec: true };
    /// Neither (decimal or UUID ids: receipts quote them as they were given).
    pub const NONE: Radix = Radix { dec_to_hex: false, hex_to_dec: false };

    /// From the id a receipt quotes to the id the vendor answered the submit with: a hex
    /// vendor's receipt may quote the id in decimal (SMPP 3.4 appendix B's example does).
    pub fn receipt_to_record(f: crate::config::VendorIdFormat) -> Radix {
        use crate::config::VendorIdFormat as F;
        match f {
            F::Auto => Radix::BOTH,
            F::Hex => Radix { dec_to_hex: true, hex_to_dec: false },
            F::Decimal | F::Uuid => Radix::NONE,
        }
    }

    /// The other way: from a stored id to the spellings a parked receipt may quote.
    pub fn reversed(self) -> Radix {
        Radix { dec_to_hex: self.hex_to_dec, hex_to_dec: self.dec_to_hex }
    }
}

/// Other spellings of the same id, as `radix` allows: the decimal id in hex, the hex id in
/// decimal.
pub fn alternate_ids(canonical: &[u8], radix: Radix) -> Vec<Small> {
    let mut out = Vec::new();
    if canonical.is_empty() || canonical.len() > 32 || radix == Radix::NONE {
        return out;
    }
    let mut buf = [0u8; 40];
    if radix.dec_to_hex
        && let Some(n) = parse_radix(canonical, 10)
    {
        out.push(Small::new(write_radix(n, 16, &mut buf)));
    }
    if radix.hex_to_dec
        && let Some(n) = parse_radix(canonical, 16)
    {
        out.push(Small::new(write_radix(n, 10, &mut buf)));
    }
    out.retain(|a| a.as_bytes() != canonical);
    out
}

/// `s` as a number in `radix` (10 or 16, lower-case digits), if it is one that fits a u128.
fn parse_radix(s: &[u8], radix: u32) -> Option<u128> {
    // The usual ids fit a u64 whatever their digits (19 decimal, 16 hex): 64-bit arithmetic,
    // not 128-bit checked multiplications, on every accepted message and receipt.
    if s.len() <= if radix == 10 { 19 } else { 16 } {
        let mut n: u64 = 0;
        for &c in s {
            let d = char::from(c).to_digit(radix)?;
            if c.is_ascii_uppercase() {
                return None;
            }
            n = n * u64::from(radix) + u64::from(d);
        }
        return (!s.is_empty()).then_some(u128::from(n));
    }
    let mut n: u128 = 0;
    for &c in s {
        let d = char::from(c).to_digit(radix)?;
        if c.is_ascii_uppercase() {
            return None;
        }
        n = n.checked_mul(u128::from(radix))?.checked_add(u128::from(d))?;
    }
    (!s.is_empty()).then_some(n)
}

/// `n` written in `radix` (10 or 16, lower case) at the end of `buf`.
fn write_radix(mut n: u128, radix: u128, buf: &mut [u8; 40]) -> &[u8] {
    let mut i = buf.len();
    if radix == 16 {
        // Shifts, not 128-bit divisions (a library call each): decimal ids are sharded by their
        // hex spelling, on every receipt and every accepted message of a decimal-id vendor.
        loop {
            i -= 1;
            buf[i] = b"0123456789abcdef"[(n & 0xf) as usize];
            n >>= 4;
            if n == 0 {
                return &buf[i..];
            }
        }
    }
    loop {
        i -= 1;
        buf[i] = b"0123456789abcdef"[(n % radix) as usize];
        n /= radix;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// The key of a vendor's id in the store: a 64-bit hash of the vendor and the canonical id. A
/// lookup checks the record's own id, so a collision can only hide a receipt, never misroute one.
pub fn vendor_key(vendor: u32, canonical: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    h.write_u32(vendor);
    h.write(canonical);
    h.finish()
}

/// The core that owns the record of `canonical` id at `vendor`.
pub fn shard_of(vendor: u32, canonical: &[u8], cores: usize) -> usize {
    // FNV-1a: stable across processes and nodes, cheap. Its low bits are weak (the lowest is
    // the parity of the odd octets), so it is mixed and the core taken from the high bits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(vendor);
    for &b in canonical {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    ((u128::from(h) * cores.max(1) as u128) >> 64) as usize
}

/// The shard for a vendor id: the same for every spelling [`alternate_ids`] may match, so a
/// record and any receipt quoting its id in the other radix (or parked before it) meet on one
/// core.
///
/// Spellings form chains: a digit string read as decimal has a hex spelling one step down, and
/// any hex string read as hex has a decimal spelling one step up. Walking down while the string
/// is all digits ends at the same spelling from every member of a chain (each step makes the
/// number smaller), so that end is the key: a hex id made only of digits and its decimal
/// spelling shard alike (one step hid it: "12345678" in hex is "305419896" in decimal, which
/// steps down to it, while "12345678" itself stepped down to "bc614e").
pub fn shard_key(canonical: &[u8]) -> Small {
    let mut key = Small::new(canonical);
    let mut buf = [0u8; 40];
    // Past u128 (39 digits and up) there are no alternates, so the walk stops.
    while let Some(n) = parse_radix(&key, 10) {
        let down = write_radix(n, 16, &mut buf);
        if down == key.as_bytes() {
            break; // 0 to 9: both spellings alike
        }
        key = Small::new(down);
    }
    key
}

/// A short byte string kept inline (addresses: 20 digits in SMPP 3.4), on the heap only when
/// longer: a stored message costs no allocation for its addresses.
#[derive(Clone, PartialEq, Eq)]
pub enum Small {
    /// Up to 22 octets, with their length.
    Inline(u8, [u8; 22]),
    /// Longer.
    Heap(Box<[u8]>),
}

impl Small {
    /// Copies `b`.
    pub fn new(b: &[u8]) -> Small {
        if b.len() <= 22 {
            let mut a = [0u8; 22];
            a[..b.len()].copy_from_slice(b);
            Small::Inline(b.len() as u8, a)
        } else {
            Small::Heap(b.into())
        }
    }

    /// Copies `b` in lower case.
    pub fn lowercase(b: &[u8]) -> Small {
        let mut s = Small::new(b);
        match &mut s {
            Small::Inline(n, a) => a[..usize::from(*n)].make_ascii_lowercase(),
            Small::Heap(h) => h.make_ascii_lowercase(),
        }
        s
    }

    /// The octets.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Small::Inline(n, a) => &a[..usize::from(*n)],
            Small::Heap(b) => b,
        }
    }
}

impl std::fmt::Debug for Small {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

impl From<&str> for Small {
    fn from(s: &str) -> Small {
        Small::new(s.as_bytes())
    }
}

impl std::ops::Deref for Small {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// Everything kept about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Our internal id (unique per vendor submit).
    pub msg_id: u64,
    /// The id the customer was given (differs for submit_multi destinations).
    pub shown_id: u64,
    /// Customer index.
    pub customer: u32,
    /// Vendor index.
    pub vendor: u32,
    /// The vendor's id, as it sent it (inline up to 22 octets: most ids cost no allocation).
    pub vendor_id: Small,
    /// Originator, TON, NPI.
    pub source: (u8, u8, Small),
    /// Recipient, TON, NPI.
    pub dest: (u8, u8, Small),
    /// Unix seconds when the customer submitted it.
    pub submitted: u64,
    /// Milliseconds past `submitted` (0-999), or [`SUBMITTED_MS_UNKNOWN`] for a record another
    /// node stored (the shared form keeps whole seconds).
    pub submitted_ms: u16,
    /// Last known state.
    pub state: MessageState,
    /// Unix seconds of the final state (0 while not final).
    pub final_at: u64,
    /// Network error code from the receipt.
    pub error: u16,
    /// Which receipts the customer asked for.
    pub receipts: Wanted,
    /// Other parts of the same long message whose receipts derive from this one's.
    pub siblings: Vec<crate::io::Sibling>,
}

/// Which receipts a customer asked for with a message's `registered_delivery` (its SMSC receipt
/// bits, 0x03, and its intermediate notification bit, 0x10), whether a cancel has set the
/// message DELETED ahead of the vendor's own DELETED receipt, which is still to be delivered,
/// and whether the message's UNKNOWN state came from a plain (not intermediate) vendor receipt,
/// so that a repeat of it is not delivered again. One octet, shared with other nodes as it is:
/// an older node's `1` reads as [`Wanted::FINAL`], and an older node drops the UNKNOWN mark
/// (it then delivers a repeated UNKNOWN, as it did).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Wanted(u8);

impl Wanted {
    /// No receipt.
    pub const NONE: Wanted = Wanted(0);
    /// The final outcome, success or failure (registered_delivery 0x01).
    pub const FINAL: Wanted = Wanted(0x01);
    const ASKED: u8 = 0x13;
    const CANCELLED: u8 = 0x80;
    const PLAIN_UNKNOWN: u8 = 0x40;

    /// What a submit's `registered_delivery` asks for (the SME acknowledgement bits are the
    /// recipient's business, not the gateway's).
    pub const fn from_registered_delivery(rd: u8) -> Wanted {
        Wanted(rd & Self::ASKED)
    }

    /// Read back from [`Wanted::octet`].
    pub const fn from_octet(o: u8) -> Wanted {
        Wanted(o & (Self::ASKED | Self::CANCELLED | Self::PLAIN_UNKNOWN))
    }

    /// The shared form.
    pub const fn octet(self) -> u8 {
        self.0
    }

    /// Some receipt may be delivered.
    pub const fn any(self) -> bool {
        self.0 & Self::ASKED != 0
    }

    /// A final receipt is asked for (on success and failure, or on failure only).
    pub const fn finals(self) -> bool {
        self.0 & 0x03 != 0
    }

    /// Whether a receipt in `state` is the customer's to get. An intermediate notification
    /// (esm_class 0x20) needs bit 0x10. Otherwise a final state needs 0x01, 0x02 for a failure
    /// or 0x03 for a success (SMPP 5.0; DELIVRD or ACCEPTD); a receipt in a pending state the
    /// vendor did not mark as intermediate (ENROUTE, UNKNOWN) goes to a customer that asked for
    /// either kind, except that a failure-only customer is not told ENROUTE, SCHEDLD or ACCEPTD
    /// and a success-only one is told none.
    pub fn delivers(self, state: MessageState, intermediate: bool) -> bool {
        if intermediate {
            return self.0 & 0x10 != 0;
        }
        let success = matches!(state, MessageState::Delivered | MessageState::Accepted);
        match self.0 & 0x03 {
            0 => !state.is_final() && self.0 & 0x10 != 0,
            0x01 => true,
            0x02 => !success && !matches!(state, MessageState::Enroute | MessageState::Scheduled),
            _ => success,
        }
    }

    /// Marks a cancel's DELETED as set ahead of the vendor's receipt (when a receipt is wanted).
    pub fn cancelled(&mut self) {
        if self.any() {
            self.0 |= Self::CANCELLED;
        }
    }

    /// Whether a cancel's DELETED is still waiting for the vendor's receipt (without clearing it).
    pub const fn cancel_pending(self) -> bool {
        self.0 & Self::CANCELLED != 0
    }

    /// Marks whether the message's state was last set by a plain (not intermediate) UNKNOWN
    /// receipt from the vendor.
    pub fn set_plain_unknown(&mut self, yes: bool) {
        if yes {
            self.0 |= Self::PLAIN_UNKNOWN;
        } else {
            self.0 &= !Self::PLAIN_UNKNOWN;
        }
    }

    /// Whether the message's UNKNOWN state came from a plain vendor receipt: another plain
    /// UNKNOWN is a repeat of it.
    pub const fn plain_unknown(self) -> bool {
        self.0 & Self::PLAIN_UNKNOWN != 0
    }

    /// Whether a cancel's DELETED is still waiting for the vendor's receipt; clears it.
    pub fn take_cancelled(&mut self) -> bool {
        let was = self.0 & Self::CANCELLED != 0;
        self.0 &= !Self::CANCELLED;
        was
    }
}

/// [`Record::submitted_ms`] of a record whose submit time is known to the second only.
pub const SUBMITTED_MS_UNKNOWN: u16 = u16::MAX;

impl Record {
    /// One destination of a submit_multi: the customer knows it by the id of the whole
    /// submission, which its other destinations share (a submit_sm's own id is its shown one).
    pub fn of_multi(&self) -> bool {
        self.msg_id != self.shown_id
    }

    /// Whether a receipt from the vendor is awaited for it: its customer asked for one, or it is
    /// the last part of a long message whose earlier parts' receipts derive from its (under
    /// `receipt_parts = "last"` it asks the vendor for one even when its customer did not).
    pub fn awaits_vendor_receipt(&self) -> bool {
        self.receipts.any() || !self.siblings.is_empty()
    }

    /// Whether a receipt the vendor has yet to send would still reach its customer: one is
    /// awaited ([`Record::awaits_vendor_receipt`]) and the message is not final, or a cancel set
    /// it DELETED ahead of the vendor's own receipt. What a clean stop keeps for the next start.
    pub fn receipt_outstanding(&self) -> bool {
        self.awaits_vendor_receipt() && (!self.state.is_final() || self.receipts.cancel_pending())
    }

    /// Milliseconds from the submit to `now_ms` (unix milliseconds), for the receipt latency
    /// histogram; None when the submit time is not known to the millisecond.
    pub fn receipt_wait_ms(&self, now_ms: u64) -> Option<u64> {
        if self.submitted == 0 || self.submitted_ms >= 1000 {
            return None;
        }
        Some(
            now_ms.saturating_sub(
                self.submitted.saturating_mul(1000).saturating_add(u64::from(self.submitted_ms)),
            ),
        )
    }
}

/// A receipt waiting for its message.
#[derive(Debug)]
struct Early<R> {
    at: u64,
    receipt: R,
}

/// Records per chunk of the [`Ring`].
pub const RING_CHUNK: usize = 4096;

/// The records in arrival order, each known by a sequence number. Records leave only from the
/// oldest end (the bound and the TTL both evict the oldest), so they live in fixed-size chunks:
/// a growing store never moves or rehashes a record, and memory is taken a chunk at a time.
#[derive(Debug, Default)]
struct Ring {
    chunks: VecDeque<Vec<Option<Entry>>>,
    /// Sequence number of `chunks[0][0]`.
    base: u64,
    /// Entries of `chunks[0]` already removed.
    head: usize,
    /// Sequence number the next record gets.
    next: u64,
    /// Emptied (or preallocated) chunks kept for the next ones needed: a full store turns
    /// chunks over without returning memory to the allocator and faulting it back in.
    spare: Vec<Vec<Option<Entry>>>,
}

/// A record in the [`Ring`], with its arrival time and its [`vendor_key`]: evicting it takes its
/// index entry out without hashing the id again.
#[derive(Debug)]
struct Entry {
    at: u64,
    key: u64,
    rec: Record,
}

impl Ring {
    fn push(&mut self, at: u64, key: u64, rec: Record) -> u64 {
        if self.chunks.back().is_none_or(|c| c.len() == RING_CHUNK) {
            let chunk = self.spare.pop().unwrap_or_else(|| Vec::with_capacity(RING_CHUNK));
            self.chunks.push_back(chunk);
        }
        if let Some(c) = self.chunks.back_mut() {
            c.push(Some(Entry { at, key, rec }));
        }
        self.next += 1;
        self.next - 1
    }

    fn slot(&self, seq: u64) -> Option<(usize, usize)> {
        if seq < self.base + self.head as u64 || seq >= self.next {
            return None;
        }
        let rel = (seq - self.base) as usize;
        Some((rel / RING_CHUNK, rel % RING_CHUNK))
    }

    fn get(&self, seq: u64) -> Option<&Record> {
        let (c, i) = self.slot(seq)?;
        self.chunks.get(c)?.get(i)?.as_ref().map(|e| &e.rec)
    }

    /// The `n`th oldest entry (0: the oldest).
    fn nth_oldest(&self, n: usize) -> Option<&Entry> {
        let rel = self.head + n;
        if (self.base + rel as u64) >= self.next {
            return None;
        }
        self.chunks.get(rel / RING_CHUNK)?.get(rel % RING_CHUNK)?.as_ref()
    }

    fn get_mut(&mut self, seq: u64) -> Option<&mut Record> {
        let (c, i) = self.slot(seq)?;
        self.chunks.get_mut(c)?.get_mut(i)?.as_mut().map(|e| &mut e.rec)
    }

    /// Allocates and touches the chunks for `records` records ahead of time.
    fn preallocate(&mut self, records: usize) {
        let want = records.div_ceil(RING_CHUNK).saturating_sub(self.chunks.len() + self.spare.len());
        for _ in 0..want {
            let mut c: Vec<Option<Entry>> = Vec::with_capacity(RING_CHUNK);
            c.resize_with(RING_CHUNK, || None);
            c.clear();
            self.spare.push(c);
        }
    }

    /// The oldest record's arrival time.
    fn front_at(&self) -> Option<u64> {
        if self.base + (self.head as u64) >= self.next {
            return None;
        }
        self.chunks.front()?.get(self.head)?.as_ref().map(|e| e.at)
    }

    /// Removes the oldest record: its sequence number and entry.
    fn pop(&mut self) -> Option<(u64, Entry)> {
        let seq = self.base + self.head as u64;
        if seq >= self.next {
            return None;
        }
        let taken = self.chunks.front_mut()?.get_mut(self.head)?.take();
        self.head += 1;
        if self.head == RING_CHUNK {
            if let Some(mut done) = self.chunks.pop_front() {
                done.clear();
                self.spare.push(done);
            }
            self.base += RING_CHUNK as u64;
            self.head = 0;
        }
        taken.map(|e| (seq, e))
    }
}

/// One core's shard. `R` is the parked receipt type.
#[derive(Debug)]
pub struct Shard<R> {
    records: Ring,
    // Vendor ids are byte strings that differ in a few characters: a strong hash keeps probes
    // short; our own ids (u64) use the fast one. Both map to a sequence number in `records`.
    by_vendor: SeqIndex,
    by_shown: SeqIndex,
    early: std::collections::HashMap<(u32, Box<[u8]>), Early<R>>,
    early_order: VecDeque<(u64, u32, Box<[u8]>)>,
    /// Receipts parked, by vendor ([`EARLY_RECEIPTS_PER_VENDOR_MAX`]); a vendor holding none
    /// has no entry.
    early_by_vendor: crate::hash::FxHashMap<u32, usize>,
    /// Per vendor index, the spellings its receipts may use ([`Radix::BOTH`] when unknown).
    radix: Vec<Radix>,
    max: usize,
    ttl_secs: u64,
    /// How long a parked receipt waits ([`EARLY_RECEIPT_TTL_SECS`] unless set).
    early_ttl_secs: u64,
    /// Parked receipts do not age ([`Shard::pause_parked`]).
    parked_paused: bool,
    /// Records evicted for the bound before their TTL.
    pub evicted: u64,
    /// Among them, records still waiting for the receipt their customer asked for: that
    /// receipt will not be matched here (a sign `receipt_store_max` is too small for the rate).
    pub evicted_waiting: u64,
    /// Early receipts that never found their message.
    pub early_expired: u64,
    len: usize,
}

impl<R> Shard<R> {
    /// A shard holding at most `max` records for `ttl_secs`.
    pub fn new(max: usize, ttl_secs: u64) -> Shard<R> {
        Shard {
            records: Ring::default(),
            by_vendor: SeqIndex::new(),
            by_shown: SeqIndex::new(),
            early: std::collections::HashMap::new(),
            early_order: VecDeque::new(),
            early_by_vendor: Default::default(),
            radix: Vec::new(),
            max: max.max(1),
            ttl_secs,
            early_ttl_secs: EARLY_RECEIPT_TTL_SECS,
            parked_paused: false,
            evicted: 0,
            evicted_waiting: 0,
            early_expired: 0,
            len: 0,
        }
    }

    /// The spellings each vendor's receipts may use, by vendor index (a start or a reload).
    pub fn set_vendor_radix(&mut self, radix: Vec<Radix>) {
        self.radix = radix;
    }

    fn radix_of(&self, vendor: u32) -> Radix {
        self.radix.get(vendor as usize).copied().unwrap_or(Radix::BOTH)
    }

    /// How long a parked receipt waits for its message, in seconds (tests shorten it).
    pub fn set_early_ttl(&mut self, secs: u64) {
        self.early_ttl_secs = secs;
    }

    /// Parked receipts stop aging: where else their message may be (another node, through
    /// shared state) cannot be asked now, and they would expire unmatched however long that
    /// lasts. Their number stays bounded ([`EARLY_RECEIPTS_MAX`]).
    pub fn pause_parked(&mut self) {
        self.parked_paused = true;
    }

    /// Ends [`Shard::pause_parked`]: every receipt parked then waits its full time again from
    /// `now`, while it is looked up elsewhere once more.
    pub fn resume_parked(&mut self, now: u64) {
        if !std::mem::replace(&mut self.parked_paused, false) {
            return;
        }
        self.early_order.clear();
        for ((v, id), e) in &mut self.early {
            e.at = now;
            self.early_order.push_back((now, *v, id.clone()));
        }
    }

    /// A new TTL (a reload): records older than it go at the next expiry sweep.
    pub fn set_ttl(&mut self, ttl_secs: u64) {
        self.ttl_secs = ttl_secs;
    }

    /// Allocates the memory for `max` records now rather than as they arrive: no rehash and no
    /// page faults on the submit path while the store fills, at the price of its full size in
    /// memory from the start.
    pub fn preallocate(&mut self) {
        self.records.preallocate(self.max);
        self.by_vendor.preallocate(self.max);
        self.by_shown.preallocate(self.max);
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the shard is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Starts loading the index entries that inserting `rec` under `key` ([`vendor_key`]) will
    /// write: a core that prefetches a batch of records before inserting them waits for memory
    /// about once per batch instead of twice per record.
    ///
    /// `nth` is the record's place among those inserted next (0: the next one): when the store
    /// is full, the index entries of the record it will evict are loaded too.
    pub fn prefetch(&self, rec: &Record, key: u64, nth: usize) {
        self.by_vendor.prefetch(key);
        self.by_shown.prefetch(rec.shown_id);
        let evictions = (self.len + nth + 1).saturating_sub(self.max);
        if evictions > 0
            && let Some(victim) = self.records.nth_oldest(evictions - 1)
        {
            self.by_vendor.prefetch(victim.key);
            self.by_shown.prefetch(victim.rec.shown_id);
        }
    }

    /// Stores a message the vendor accepted; returns a receipt that was waiting for it.
    pub fn insert(&mut self, rec: Record, now: u64) -> Option<R> {
        let key = vendor_key(rec.vendor, &canonical_id(&rec.vendor_id));
        self.insert_keyed(rec, key, now)
    }

    /// [`Shard::insert`] with `rec`'s [`vendor_key`], computed beforehand.
    pub fn insert_keyed(&mut self, rec: Record, key: u64, now: u64) -> Option<R> {
        debug_assert_eq!(key, vendor_key(rec.vendor, &canonical_id(&rec.vendor_id)));
        // Receipts rarely arrive before the submit_sm_resp: build the parking key only when
        // something is parked.
        let early_key = (!self.early.is_empty())
            .then(|| (rec.vendor, Box::<[u8]>::from(canonical_id(&rec.vendor_id).as_bytes())));
        while self.len >= self.max {
            if !self.pop_oldest() {
                break;
            }
            self.evicted += 1;
        }
        let shown = rec.shown_id;
        let seq = self.records.push(now, key, rec);
        self.len += 1;
        self.by_shown.insert(shown, seq);
        self.by_vendor.insert(key, seq);
        self.take_early(&early_key?)
    }

    fn take_early(&mut self, key: &(u32, Box<[u8]>)) -> Option<R> {
        if self.early.is_empty() {
            return None;
        }
        if let Some(e) = self.early_remove(key) {
            return Some(e.receipt);
        }
        for alt in alternate_ids(&key.1, self.radix_of(key.0).reversed()) {
            if let Some(e) = self.early_remove(&(key.0, Box::<[u8]>::from(alt.as_bytes()))) {
                return Some(e.receipt);
            }
        }
        None
    }

    /// Unparks a receipt (its entry in `early_order` goes stale).
    fn early_remove(&mut self, key: &(u32, Box<[u8]>)) -> Option<Early<R>> {
        let e = self.early.remove(key)?;
        if let Some(n) = self.early_by_vendor.get_mut(&key.0) {
            *n -= 1;
            if *n == 0 {
                self.early_by_vendor.remove(&key.0);
            }
        }
        Some(e)
    }

    fn pop_oldest(&mut self) -> bool {
        let Some((seq, e)) = self.records.pop() else { return false };
        self.len -= 1;
        if e.rec.awaits_vendor_receipt() && !e.rec.state.is_final() {
            self.evicted_waiting += 1;
        }
        self.by_shown.remove_if(e.rec.shown_id, seq);
        self.by_vendor.remove_if(e.key, seq);
        true
    }

    /// Starts loading the index entry a lookup of `key` ([`vendor_key`]) reads.
    pub fn prefetch_vendor(&self, key: u64) {
        self.by_vendor.prefetch(key);
    }

    /// The record for a vendor's id, however the vendor spelled it.
    pub fn find_vendor_mut(&mut self, vendor: u32, id: &[u8]) -> Option<&mut Record> {
        let key = vendor_key(vendor, &canonical_id(id));
        self.find_vendor_keyed_mut(vendor, id, key)
    }

    /// [`Shard::find_vendor_mut`] with the [`vendor_key`] of `id`, computed beforehand.
    pub fn find_vendor_keyed_mut(&mut self, vendor: u32, id: &[u8], key: u64) -> Option<&mut Record> {
        debug_assert_eq!(key, vendor_key(vendor, &canonical_id(id)));
        // The usual case: the vendor quotes the id exactly as it answered the submit, and equal
        // octets need no canonical form (the caller computed the key from it already).
        let exact = self.by_vendor.get(key).filter(|&m| {
            self.records.get(m).is_some_and(|r| r.vendor == vendor && r.vendor_id.as_bytes() == id)
        });
        let found = exact.or_else(|| {
            // Another case, leading zeros or another radix: compare canonical forms.
            let c = canonical_id(id);
            let lookup = |key: u64, cand: &[u8]| {
                self.by_vendor.get(key).filter(|&m| {
                    self.records.get(m).is_some_and(|r| {
                        r.vendor == vendor
                            && canonical_id(&r.vendor_id).as_bytes() == cand
                            && !case_sensitive_and_different(&r.vendor_id, id)
                    })
                })
            };
            let radix = self.radix_of(vendor);
            lookup(key, &c).or_else(|| {
                alternate_ids(&c, radix).iter().find_map(|alt| lookup(vendor_key(vendor, alt), alt))
            })
        });
        self.records.get_mut(found?)
    }

    /// Parks a receipt whose message is not stored yet. Returns false when the bound, or the
    /// vendor's share of it ([`EARLY_RECEIPTS_PER_VENDOR_MAX`]), refuses it.
    pub fn park(&mut self, vendor: u32, id: &[u8], receipt: R, now: u64) -> bool {
        self.park_unless(vendor, id, receipt, now, |_, _| false)
    }

    /// [`Shard::park`], except that a receipt already parked for the id stays when
    /// `keep_old(parked, new)` says so (a final state over a later intermediate one).
    pub fn park_unless(
        &mut self,
        vendor: u32,
        id: &[u8],
        receipt: R,
        now: u64,
        keep_old: impl FnOnce(&R, &R) -> bool,
    ) -> bool {
        let key = (vendor, Box::<[u8]>::from(canonical_id(id).as_bytes()));
        if let Some(e) = self.early.get_mut(&key) {
            // A vendor repeating a receipt: one waits, in the first one's place (and no second
            // entry in the expiry order, which the map's bound would not count).
            if !keep_old(&e.receipt, &receipt) {
                e.receipt = receipt;
            }
            return true;
        }
        let held = self.early_by_vendor.get(&vendor).copied().unwrap_or(0);
        if self.early.len() >= EARLY_RECEIPTS_MAX || held >= EARLY_RECEIPTS_PER_VENDOR_MAX {
            return false;
        }
        if self.early_order.len() >= 2 * EARLY_RECEIPTS_MAX {
            // Entries of receipts matched since they were parked: drop them.
            let early = &self.early;
            self.early_order.retain(|(at, v, id)| early.get(&(*v, id.clone())).is_some_and(|e| e.at == *at));
        }
        self.early_order.push_back((now, key.0, key.1.clone()));
        self.early.insert(key, Early { at: now, receipt });
        *self.early_by_vendor.entry(vendor).or_insert(0) += 1;
        true
    }

    /// Receipts parked now.
    pub fn parked_len(&self) -> usize {
        self.early.len()
    }

    /// Vendor and id of every parked receipt (to look each up elsewhere once more).
    pub fn parked(&self) -> impl Iterator<Item = (u32, &[u8])> {
        self.early.keys().map(|(v, id)| (*v, &id[..]))
    }

    /// The record the customer knows by `shown_id`.
    pub fn find_shown(&self, shown_id: u64) -> Option<&Record> {
        self.by_shown.get(shown_id).and_then(|m| self.records.get(m)).filter(|r| r.shown_id == shown_id)
    }

    /// Mutable access by the customer's id.
    pub fn find_shown_mut(&mut self, shown_id: u64) -> Option<&mut Record> {
        let m = self.by_shown.get(shown_id)?;
        self.records.get_mut(m).filter(|r| r.shown_id == shown_id)
    }

    /// Takes every record out, oldest first, keeping (with its arrival time) those `keep` wants
    /// and younger than the TTL at `now`: the store is empty afterwards. A clean stop hands them
    /// to the next start this way.
    pub fn take_records(&mut self, now: u64, mut keep: impl FnMut(&Record) -> bool) -> Vec<(u64, Record)> {
        let mut out = Vec::new();
        while let Some((_, e)) = self.records.pop() {
            if now.saturating_sub(e.at) < self.ttl_secs && keep(&e.rec) {
                out.push((e.at, e.rec));
            }
        }
        self.by_vendor = SeqIndex::new();
        self.by_shown = SeqIndex::new();
        self.len = 0;
        out
    }

    /// Drops records older than the TTL and early receipts older than theirs (unless paused,
    /// [`Shard::pause_parked`]); returns the early receipts that expired unmatched.
    pub fn expire(&mut self, now: u64) -> Vec<R> {
        while let Some(at) = self.records.front_at() {
            if now.saturating_sub(at) < self.ttl_secs {
                break;
            }
            self.pop_oldest();
        }
        let mut out = Vec::new();
        while let Some(&(at, _, _)) = self.early_order.front() {
            if self.parked_paused || now.saturating_sub(at) < self.early_ttl_secs {
                break;
            }
            // An entry whose receipt was matched, and the same id parked again since, is not
            // that receipt's: it expires by its own entry.
            if let Some((at, v, id)) = self.early_order.pop_front() {
                let key = (v, id);
                if self.early.get(&key).is_some_and(|e| e.at == at)
                    && let Some(e) = self.early_remove(&key)
                {
                    self.early_expired += 1;
                    out.push(e.receipt);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_receipts_a_customer_gets_follow_its_registered_delivery() {
        // Goal: SMPP 3.4 5.2.17 (and 5.0's success-only value): what reaches the customer is
        // what it asked for, whatever the vendor sends.
        use MessageState::*;
        let w = Wanted::from_registered_delivery;
        let cases: [(u8, MessageState, bool, bool); 16] = [
            (0x01, Delivered, false, true),
            (0x01, Undeliverable, false, true),
            (0x01, Enroute, true, false),
            (0x11, Enroute, true, true),
            (0x10, Enroute, true, true),
            (0x10, Delivered, false, false),
            (0x10, Unknown, false, true),
            (0x02, Delivered, false, false),
            (0x02, Accepted, false, false),
            (0x02, Expired, false, true),
            (0x02, Unknown, false, true),
            (0x02, Enroute, false, false),
            (0x03, Delivered, false, true),
            (0x03, Undeliverable, false, false),
            (0x00, Delivered, false, false),
            (0x0C, Delivered, false, false),
        ];
        for (rd, state, intermediate, want) in cases {
            assert_eq!(
                w(rd).delivers(state, intermediate),
                want,
                "rd {rd:#04x}, {state:?}, intermediate {intermediate}"
            );
        }
        // The shared form: an older node's 1 and 0 read as before; the cancel mark travels.
        assert_eq!(Wanted::from_octet(1), Wanted::FINAL);
        assert_eq!(Wanted::from_octet(0), Wanted::NONE);
        let mut c = w(0x01);
        c.cancelled();
        let mut back = Wanted::from_octet(c.octet());
        assert!(back.take_cancelled() && !back.take_cancelled());
        // So does the mark of a plain UNKNOWN, which leaves what is asked for alone.
        let mut u = w(0x01);
        u.set_plain_unknown(true);
        let back = Wanted::from_octet(u.octet());
        assert!(back.plain_unknown() && back.finals() && !back.cancel_pending());
        u.set_plain_unknown(false);
        assert_eq!(u, w(0x01));
        let mut quiet = Wanted::NONE;
        quiet.cancelled();
        assert_eq!(quiet, Wanted::NONE, "no mark where no receipt is wanted");
    }
    use crate::seqindex::SEGMENTS;

    fn rec(msg: u64, vid: &str) -> Record {
        Record {
            msg_id: msg,
            shown_id: msg,
            customer: 0,
            vendor: 1,
            vendor_id: Small::new(vid.as_bytes()),
            source: (1, 1, "1".into()),
            dest: (1, 1, "2".into()),
            submitted: 0,
            submitted_ms: 0,
            state: MessageState::Enroute,
            final_at: 0,
            error: 0,
            receipts: Wanted::FINAL,
            siblings: Vec::new(),
        }
    }

    #[test]
    fn canonical_ids_and_their_other_spellings() {
        // Goal: the spellings vendors use reduce to one form, without allocating for the usual
        // ids, and the hex/decimal alternates are exact (no overflow, no false alternates).
        let c = |s: &[u8]| canonical_id(s).as_bytes().to_vec();
        assert_eq!(c(b" 000A1B2\0"), b"a1b2");
        assert_eq!(c(b"0000"), b"0");
        assert_eq!(c(b""), b"");
        assert_eq!(c(b"8F14E45F-CEEA-467A-9575-2A1F6F2E4A11"), b"8f14e45f-ceea-467a-9575-2a1f6f2e4a11");
        assert!(matches!(canonical_id(b"00ABCDEF0123456789ABCD"), Small::Inline(..)));
        let alts = |s: &[u8]| {
            alternate_ids(s, Radix::BOTH).iter().map(|a| a.as_bytes().to_vec()).collect::<Vec<_>>()
        };
        assert_eq!(alts(b"41394"), vec![b"a1b2".to_vec(), b"267156".to_vec()], "decimal digits are hex too");
        assert_eq!(alts(b"a1b2"), vec![b"41394".to_vec()]);
        assert_eq!(alts(b"10"), vec![b"a".to_vec(), b"16".to_vec()]);
        assert_eq!(alts(b"0"), Vec::<Vec<u8>>::new(), "0 is 0 in both");
        assert_eq!(alts(b"ffffffffffffffffffffffffffffffff"), vec![u128::MAX.to_string().into_bytes()]);
        assert!(alts(b"340282366920938463463374607431768211456").is_empty(), "past u128, longer than 32");
        assert!(alts(b"8f14e45f-ceea").is_empty());
        assert_eq!(shard_key(b"123456789").as_bytes(), b"75bcd15");
        for n in [0u128, 1, 15, 16, 255, 4096, u128::from(u64::MAX), u128::MAX - 1, u128::MAX] {
            let mut buf = [0u8; 40];
            assert_eq!(write_radix(n, 16, &mut buf), format!("{n:x}").as_bytes());
            assert_eq!(write_radix(n, 10, &mut buf), n.to_string().as_bytes());
        }
        assert_eq!(shard_key(b"a1b2").as_bytes(), b"a1b2");
    }

    #[test]
    fn vendor_id_styles_all_match() {
        let mut s: Shard<()> = Shard::new(10, 100);
        s.insert(rec(1, "00A1B2"), 0);
        assert!(s.find_vendor_mut(1, b"a1b2").is_some(), "case and leading zeros");
        assert!(s.find_vendor_mut(1, b"41394").is_some(), "decimal spelling of hex a1b2");
        assert!(s.find_vendor_mut(2, b"a1b2").is_none(), "other vendor");
        s.insert(rec(2, "123456789"), 0);
        assert!(s.find_vendor_mut(1, b"75BCD15").is_some(), "hex spelling of a decimal id");
        s.insert(rec(3, "8F14E45F-CEEA-467A-9575-2A1F6F2E4A11"), 0);
        assert!(s.find_vendor_mut(1, b"8f14e45f-ceea-467a-9575-2a1f6f2e4a11").is_some());
        assert_eq!(shard_of(1, &shard_key(b"41394"), 7), shard_of(1, &shard_key(b"a1b2"), 7));
    }

    #[test]
    fn mixed_case_ids_that_differ_in_case_are_different_messages() {
        // Goal: a vendor whose ids mix cases (base62) gives "aB3x9Q" to customer 0's message and
        // "Ab3X9q" to customer 1's: a receipt for "aB3x9Q" is never matched to customer 1's
        // message (it was, by the case-folded form, and went to the wrong customer). Ids in one
        // case still match in the other ("ABC123" for "abc123"), leading zeros aside.
        let mut s: Shard<&str> = Shard::new(10, 100);
        s.insert(Record { customer: 0, ..rec(1, "aB3x9Q") }, 0);
        s.insert(Record { customer: 1, ..rec(2, "Ab3X9q") }, 0);
        // Never customer 1's message; not customer 0's either: the index holds one record per
        // case-folded id, the newer (README, Known gaps).
        assert!(s.find_vendor_mut(1, b"aB3x9Q").is_none(), "never customer 1's message");
        assert_eq!(s.find_vendor_mut(1, b"Ab3X9q").map(|r| r.msg_id), Some(2));
        s.insert(rec(3, "abc123"), 0);
        assert_eq!(s.find_vendor_mut(1, b"ABC123").map(|r| r.msg_id), Some(3), "one case for another");
        s.insert(rec(4, "00xY7"), 0);
        assert_eq!(s.find_vendor_mut(1, b"xY7").map(|r| r.msg_id), Some(4), "leading zeros");
    }

    #[test]
    fn a_vendor_of_known_id_format_is_matched_only_in_the_spellings_its_receipts_use() {
        // Goal: under `auto` a receipt for decimal id 16 that comes before its submit_sm_resp
        // (or after its record went) takes the record of id 10 (hex 10 is 16): a wrong message
        // gets the state and its customer the receipt. A vendor configured as decimal is matched
        // exactly; one configured as hex still finds a receipt quoting its id in decimal.
        use crate::config::VendorIdFormat as F;
        let of = |vendor: u32, msg: u64, vid: &str| Record { vendor, ..rec(msg, vid) };
        let mut s: Shard<&str> = Shard::new(10, 100);
        s.insert(of(0, 1, "10"), 0);
        assert!(s.find_vendor_mut(0, b"16").is_some(), "auto: the ambiguous match");
        s.set_vendor_radix(vec![Radix::receipt_to_record(F::Decimal), Radix::receipt_to_record(F::Hex)]);
        assert!(s.find_vendor_mut(0, b"16").is_none(), "decimal vendor: 16 is not 10");
        assert!(s.park(0, b"16", "sixteen", 0));
        assert_eq!(s.insert(of(0, 2, "10"), 1), None, "nor is a parked 16 taken by another record of id 10");
        s.insert(of(1, 3, "1f"), 0);
        assert!(s.find_vendor_mut(1, b"31").is_some(), "hex vendor: its receipt in decimal matches");
        assert!(s.find_vendor_mut(1, b"1F").is_some());
        s.insert(of(1, 4, "25"), 0);
        assert!(s.find_vendor_mut(1, b"19").is_none(), "hex vendor: a hex receipt id is not read as decimal");
        assert!(s.park(1, b"4095", "early in decimal", 0));
        assert_eq!(s.insert(of(1, 5, "fff"), 2), Some("early in decimal"), "parked in decimal, found");
    }

    #[test]
    fn a_hex_id_made_of_digits_and_its_decimal_spelling_share_a_shard() {
        // Goal: the record of a hex id like 12345678 (all digits) and a receipt quoting it in
        // decimal (305419896), or parked before it, are on one core: they were on two, and the
        // receipt was lost.
        assert_eq!(shard_key(b"12345678").as_bytes(), shard_key(b"305419896").as_bytes());
        assert_eq!(shard_key(b"305419896").as_bytes(), b"bc614e");
        let mut s: Shard<&str> = Shard::new(10, 100);
        assert!(s.park(1, b"305419896", "early", 0));
        assert_eq!(s.insert(rec(1, "0000000012345678"), 1), Some("early"), "parked in decimal, found");
        assert!(s.find_vendor_mut(1, b"305419896").is_some());
    }

    proptest::proptest! {
        #[test]
        fn every_spelling_a_receipt_may_match_is_on_the_records_shard(
            hi in proptest::prelude::any::<u64>(),
            lo in proptest::prelude::any::<u64>(),
            bits in 1u32..=128,
        ) {
            let n = ((u128::from(hi) << 64) | u128::from(lo)) >> (128 - bits);
            for id in [format!("{n:x}"), n.to_string()] {
                let key = shard_key(id.as_bytes());
                for alt in alternate_ids(id.as_bytes(), Radix::BOTH) {
                    let alt_key = shard_key(&alt);
                    proptest::prop_assert_eq!(alt_key.as_bytes(), key.as_bytes(), "{} and {:?}", id, alt);
                }
            }
        }
    }

    #[test]
    fn a_shorter_ttl_from_a_reload_expires_records_at_the_next_sweep() {
        let mut s: Shard<()> = Shard::new(10, 7 * 86_400);
        s.insert(rec(1, "A1"), 1_000);
        s.expire(1_000 + 3_600);
        assert!(s.find_shown(1).is_some(), "within a week");
        s.set_ttl(600);
        s.expire(1_000 + 3_600);
        assert!(s.find_shown(1).is_none(), "past the new TTL of 10 minutes");
    }

    #[test]
    fn early_receipts_wait_for_their_message_then_expire() {
        let mut s: Shard<&str> = Shard::new(10, 100);
        assert!(s.park(1, b"77", "r", 0));
        assert_eq!(s.insert(rec(1, "077"), 1), Some("r"));
        assert!(s.park(1, b"88", "late", 0));
        assert_eq!(s.expire(EARLY_RECEIPT_TTL_SECS + 1), vec!["late"]);
        assert_eq!(s.early_expired, 1);
    }

    #[test]
    fn a_parked_receipt_can_be_kept_over_a_later_one() {
        // Goal: the caller decides which of two early receipts for one id waits (the gateway
        // keeps a final state over a later intermediate one).
        let mut s: Shard<&str> = Shard::new(10, 100);
        let keep_final = |old: &&str, new: &&str| *old == "DELIVRD" && *new == "ENROUTE";
        assert!(s.park_unless(1, b"5", "DELIVRD", 0, keep_final));
        assert!(s.park_unless(1, b"5", "ENROUTE", 0, keep_final));
        assert_eq!(s.insert(rec(1, "5"), 1), Some("DELIVRD"));
        assert!(s.park_unless(1, b"6", "ENROUTE", 0, keep_final));
        assert!(s.park_unless(1, b"6", "DELIVRD", 0, keep_final));
        assert_eq!(s.insert(rec(2, "6"), 1), Some("DELIVRD"));
    }

    #[test]
    fn parked_receipts_do_not_age_while_paused_and_wait_their_full_time_again_after() {
        // Goal: a receipt parked while its message cannot be looked up elsewhere (Redis down)
        // does not expire however long that lasts; once it can, it waits its full time again;
        // the bound still refuses beyond it.
        let mut s: Shard<&str> = Shard::new(10, 100);
        assert!(s.park(1, b"1", "before", 0));
        s.pause_parked();
        assert!(s.park(1, b"2", "during", 50));
        assert!(s.expire(10 * EARLY_RECEIPT_TTL_SECS).is_empty(), "none ages while paused");
        s.resume_parked(1_000);
        assert!(s.expire(1_000 + EARLY_RECEIPT_TTL_SECS - 1).is_empty(), "a full wait from the resume");
        let mut out = s.expire(1_000 + EARLY_RECEIPT_TTL_SECS);
        out.sort_unstable();
        assert_eq!(out, vec!["before", "during"]);
        s.resume_parked(5_000);
        assert!(s.park(1, b"3", "not paused", 5_000));
        s.resume_parked(9_000);
        assert_eq!(
            s.expire(5_000 + EARLY_RECEIPT_TTL_SECS),
            vec!["not paused"],
            "a resume unpaused is nothing"
        );
        s.pause_parked();
        for i in 0..EARLY_RECEIPTS_MAX as u64 {
            assert!(s.park(1 + (i % 2) as u32, i.to_string().as_bytes(), "bound", 0));
        }
        assert!(!s.park(1, b"x", "over", 0), "the bound holds while paused");
    }

    #[test]
    fn one_vendor_cannot_take_every_place_for_early_receipts() {
        // Goal: a vendor sending receipts for ids it never gave fills at most its share of the
        // parked receipts; another vendor's receipt racing its submit_sm_resp is still parked,
        // and the share comes back as that vendor's receipts are matched or expire.
        let mut s: Shard<&str> = Shard::new(10, 100);
        let refused =
            (0..EARLY_RECEIPTS_MAX as u64).filter(|i| !s.park(1, i.to_string().as_bytes(), "junk", 0));
        assert_eq!(refused.count(), EARLY_RECEIPTS_MAX - EARLY_RECEIPTS_PER_VENDOR_MAX, "beyond its share");
        assert!(s.park(2, b"42", "racing", 0), "another vendor's receipt is parked");
        assert_eq!(s.insert(Record { vendor: 2, ..rec(2, "42") }, 1), Some("racing"), "applied when known");
        assert!(s.park(1, b"7", "repeat", 0), "a repeat takes no new place");
        assert!(s.insert(rec(1, "7"), 1).is_some());
        assert!(s.park(1, b"x", "room again", 0), "a matched receipt gives its place back");
        assert_eq!(s.expire(EARLY_RECEIPT_TTL_SECS).len(), EARLY_RECEIPTS_PER_VENDOR_MAX);
        assert!(s.early_by_vendor.is_empty(), "expired receipts give their places back");
    }

    #[test]
    fn a_repeated_early_receipt_takes_one_place_and_a_reparked_one_keeps_its_own_time() {
        // Goal: a vendor repeating a receipt for an unknown id holds one entry (the latest
        // receipt), not one per copy; an id parked, matched and parked again expires at the
        // second parking's time, counted, not at the first one's.
        let mut s: Shard<&str> = Shard::new(10, 100);
        for copy in ["a", "b", "c"] {
            assert!(s.park(1, b"99", copy, 5));
        }
        assert_eq!((s.early.len(), s.early_order.len()), (1, 1));
        assert_eq!(s.expire(5 + EARLY_RECEIPT_TTL_SECS), vec!["c"], "the latest copy");

        assert!(s.park(1, b"77", "first", 0));
        assert_eq!(s.insert(rec(1, "77"), 1), Some("first"));
        assert!(s.park(1, b"77", "again", 100));
        assert!(
            s.expire(EARLY_RECEIPT_TTL_SECS + 1).is_empty(),
            "the first parking's entry is not this one's"
        );
        assert_eq!(s.early.len(), 1, "still waiting");
        assert_eq!(s.expire(100 + EARLY_RECEIPT_TTL_SECS), vec!["again"]);
        assert_eq!(s.early_expired, 2);
    }

    #[test]
    fn a_preallocated_store_fills_and_turns_over_without_new_memory() {
        let max = RING_CHUNK * 2 + 5;
        let mut s: Shard<()> = Shard::new(max, 100);
        s.preallocate();
        assert!(s.is_empty(), "preallocating stores nothing");
        assert_eq!(s.records.spare.len(), 3, "chunks for every record the bound allows");
        let caps = s.by_shown.capacities();
        assert!(caps.iter().all(|&c| c >= max / SEGMENTS), "every segment holds its share");
        let n = max as u64 * 3;
        for i in 0..n {
            s.insert(rec(i, &format!("{i:x}")), 0);
        }
        assert_eq!(s.len(), max);
        assert_eq!(s.evicted, n - max as u64);
        assert!(s.find_shown(n - max as u64 - 1).is_none(), "evicted");
        assert!(s.find_shown(n - max as u64).is_some());
        assert_eq!(s.find_vendor_mut(1, format!("{:x}", n - 1).as_bytes()).map(|r| r.shown_id), Some(n - 1));
        // Chunks were recycled: never more allocated than the bound needs (plus the one filling).
        assert!(s.records.chunks.len() + s.records.spare.len() <= 4);
        // The few segments that outgrew their share grew; the rest kept their tables.
        let same = s.by_shown.capacities().iter().zip(&caps).filter(|(m, c)| m == c).count();
        assert!(same >= SEGMENTS * 3 / 4, "{same} of {SEGMENTS} segments kept their table");
    }

    #[test]
    fn records_across_chunks_stay_findable_and_leave_oldest_first() {
        let n = RING_CHUNK as u64 * 2 + 10;
        let mut s: Shard<()> = Shard::new(RING_CHUNK * 2, 100);
        for i in 0..n {
            s.insert(rec(i, &format!("{i:x}")), i / 1000);
        }
        assert_eq!(s.len(), RING_CHUNK * 2);
        assert_eq!(s.evicted, 10);
        // The eviction order the prefetch pass reads ahead: oldest first, across chunks.
        for k in [0, 1, RING_CHUNK - 11, RING_CHUNK - 10, RING_CHUNK * 2 - 1] {
            let e = s.records.nth_oldest(k).map(|e| (e.rec.shown_id, e.key));
            let id = 10 + k as u64;
            assert_eq!(e, Some((id, vendor_key(1, format!("{id:x}").as_bytes()))), "{k}th oldest");
        }
        assert!(s.records.nth_oldest(RING_CHUNK * 2).is_none(), "past the newest");
        assert!(s.find_shown(9).is_none(), "evicted");
        assert!(s.find_shown(10).is_some());
        let last = n - 1;
        assert_eq!(s.find_vendor_mut(1, format!("{last:x}").as_bytes()).map(|r| r.shown_id), Some(last));
        if let Some(r) = s.find_shown_mut(RING_CHUNK as u64 + 3) {
            r.state = MessageState::Delivered;
        }
        assert_eq!(s.find_shown(RING_CHUNK as u64 + 3).map(|r| r.state), Some(MessageState::Delivered));
        // Arrival times 0..=8: at 104 everything that arrived at 0..=4 is 100 or more old.
        s.expire(104);
        assert!(s.find_shown(4999).is_none() && s.find_shown(5000).is_some());
        assert_eq!(s.len() as u64, n - 5000);
        s.expire(1_000);
        assert!(s.is_empty());
        assert!(s.find_shown(last).is_none());
        s.insert(rec(n, "zz"), 1_000);
        assert!(s.find_shown(n).is_some(), "the ring works after emptying");
    }

    #[test]
    fn bounded_and_expiring() {
        let mut s: Shard<()> = Shard::new(2, 100);
        s.insert(rec(1, "a"), 0);
        s.insert(rec(2, "b"), 1);
        s.insert(rec(3, "c"), 2);
        assert_eq!(s.len(), 2);
        assert_eq!(s.evicted, 1);
        assert!(s.find_shown(1).is_none(), "oldest evicted");
        assert!(s.find_shown(3).is_some());
        assert_eq!(s.evicted_waiting, 1, "it was still waiting for its receipt");
        s.expire(101);
        assert_eq!(s.len(), 1, "b is past its TTL");
        s.expire(103);
        assert!(s.is_empty());
    }

    #[test]
    fn only_evicted_records_still_waiting_for_a_receipt_count_as_such() {
        // Goal: operators see how many receipts the store's bound will make unmatched: a record
        // with its final state, or whose customer wants no receipt, waits for nothing.
        let mut s: Shard<()> = Shard::new(2, 100);
        s.insert(rec(1, "a"), 0);
        let mut quiet = rec(2, "b");
        quiet.receipts = Wanted::NONE;
        s.insert(quiet, 0);
        if let Some(r) = s.find_shown_mut(1) {
            r.state = MessageState::Delivered;
        }
        s.insert(rec(3, "c"), 0);
        s.insert(rec(4, "d"), 0);
        assert_eq!((s.evicted, s.evicted_waiting), (2, 0));
        s.insert(rec(5, "e"), 0);
        assert_eq!((s.evicted, s.evicted_waiting), (3, 1), "3 was enroute and wanted its receipt");
    }

    #[test]
    fn receipt_wait_counts_from_the_submit_millisecond() {
        let mut r = rec(1, "a");
        r.submitted = 1_764_000_000;
        r.submitted_ms = 750;
        // A receipt 250 ms after a submit at .750 s: 250 ms, not the 1,000 ms a whole-second
        // submit time gives.
        assert_eq!(r.receipt_wait_ms(1_764_000_001_000), Some(250));
        assert_eq!(r.receipt_wait_ms(1_764_000_000_700), Some(0), "clock stepped back: zero, not a wrap");
        r.submitted_ms = SUBMITTED_MS_UNKNOWN;
        assert_eq!(r.receipt_wait_ms(1_764_000_001_000), None, "known to the second only: not observed");
        r.submitted_ms = 0;
        r.submitted = 0;
        assert_eq!(r.receipt_wait_ms(1_764_000_001_000), None, "no submit time");
    }
}
