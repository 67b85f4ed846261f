//! Reassembly of incoming concatenated parts, bounded in the number of pending messages and in time.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use bytes::{Bytes, BytesMut};

use super::segment::Concat;
use super::{SHORT_MESSAGE_OCTETS_MAX, TextError};

/// Hard ceiling on pending messages a reassembler may be configured to hold; each can pin up to
/// 255 parts of [`REASSEMBLY_PART_OCTETS_MAX`] octets.
pub const REASSEMBLY_PENDING_CEILING: usize = 1_000_000;
/// Hard ceiling on the reassembly timeout: a day; SMSCs give up on missing parts long before.
pub const REASSEMBLY_TIMEOUT_CEILING_MS: u64 = 24 * 60 * 60 * 1000;
/// Longest part payload accepted: a part arrives in one short_message.
pub const REASSEMBLY_PART_OCTETS_MAX: usize = SHORT_MESSAGE_OCTETS_MAX;

/// Where a pushed part left its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Stored; the message still misses parts.
    Incomplete {
        /// Distinct parts held so far.
        received: u8,
        /// Parts the message has.
        total: u8,
    },
    /// This seqnum was already held; the part was ignored.
    Duplicate,
    /// All parts arrived: their payloads joined in seqnum order.
    Complete(Bytes),
}

/// The outcome of [`Reassembler::push`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct Pushed<K> {
    /// Where the part left its message.
    pub progress: Progress,
    /// A pending message dropped, oldest first, to make room for this one: (key, reference).
    pub evicted: Option<(K, u16)>,
}

#[derive(Debug)]
struct Pending {
    /// Position in `by_age`: first arrival time, then arrival order.
    age: (u64, u64),
    total: u8,
    received: u8,
    octets: usize,
    parts: Box<[Option<Bytes>]>,
}

/// Collects the parts of concatenated messages until each is whole.
///
/// Messages are identified by the caller's key (say, source and destination address) together with the
/// concatenation reference. Payloads must be pushed in a form that joins by concatenation: unpacked
/// septets, octets or UCS-2 (unpack packed GSM first, each part with its own fill bits); joining before
/// decoding also mends an escape or surrogate pair a sender split across parts. A part's payload `Bytes`
/// is kept as given: copy it first if it is a slice that would pin a large read buffer. Incomplete
/// messages expire `timeout_ms` after their first part; call [`Reassembler::expire`] by
/// [`Reassembler::next_deadline_ms`]. A part arriving after its message completed or expired starts a
/// new pending message, which expires in turn.
#[derive(Debug)]
pub struct Reassembler<K> {
    pending: HashMap<(K, u16), Pending>,
    by_age: BTreeMap<(u64, u64), (K, u16)>,
    arrivals: u64,
    pending_max: usize,
    timeout_ms: u64,
}

impl<K: Hash + Eq + Clone> Reassembler<K> {
    /// A reassembler holding at most `pending_max` incomplete messages (1 to
    /// [`REASSEMBLY_PENDING_CEILING`]) for at most `timeout_ms` each (1 to
    /// [`REASSEMBLY_TIMEOUT_CEILING_MS`]).
    pub fn new(pending_max: usize, timeout_ms: u64) -> Result<Self, TextError> {
        if !(1..=REASSEMBLY_PENDING_CEILING).contains(&pending_max) {
            return Err(TextError::LimitOutOfRange {
                name: "reassembly_pending_max",
                value: pending_max as u64,
                min: 1,
                max: REASSEMBLY_PENDING_CEILING as u64,
            });
        }
        if !(1..=REASSEMBLY_TIMEOUT_CEILING_MS).contains(&timeout_ms) {
            return Err(TextError::LimitOutOfRange {
                name: "reassembly_timeout_ms",
                value: timeout_ms,
                min: 1,
                max: REASSEMBLY_TIMEOUT_CEILING_MS,
            });
        }
        Ok(Reassembler {
            pending: HashMap::new(),
            by_age: BTreeMap::new(),
            arrivals: 0,
            pending_max,
            timeout_ms,
        })
    }

    /// Adds one part received at `now_ms`.
    ///
    /// A message of one part completes at once and is never stored. An error (invalid total / seq, an
    /// oversized payload) leaves the reassembler unchanged. A part that disagrees with the message
    /// pending under its reference (another total, or another payload for a part already held) is
    /// the first of a new message under a reused reference (an 8-bit reference wraps after 256
    /// messages): the stale one is dropped, reported in [`Pushed::evicted`], and this one starts;
    /// the same payload again is a [`Progress::Duplicate`] (a resend).
    pub fn push(
        &mut self,
        key: K,
        concat: Concat,
        payload: Bytes,
        now_ms: u64,
    ) -> Result<Pushed<K>, TextError> {
        let Concat { ref_num, total, seq } = concat.validate()?;
        if payload.len() > REASSEMBLY_PART_OCTETS_MAX {
            return Err(TextError::PartTooLong { len: payload.len(), max: REASSEMBLY_PART_OCTETS_MAX });
        }
        let index = usize::from(seq - 1);
        let map_key = (key, ref_num);
        let reused = self.pending.get(&map_key).is_some_and(|p| {
            p.total != total
                || p.parts.get(index).and_then(Option::as_ref).is_some_and(|held| *held != payload)
        });
        let mut stale = None;
        if reused && let Some(old) = self.pending.remove(&map_key) {
            self.by_age.remove(&old.age);
            stale = Some(map_key.clone());
        }
        if let Some(pending) = self.pending.get_mut(&map_key) {
            let Some(slot @ None) = pending.parts.get_mut(index) else {
                return Ok(Pushed { progress: Progress::Duplicate, evicted: None });
            };
            pending.octets += payload.len();
            *slot = Some(payload);
            pending.received += 1;
            if pending.received < total {
                let progress = Progress::Incomplete { received: pending.received, total };
                return Ok(Pushed { progress, evicted: None });
            }
            let progress = match self.pending.remove(&map_key) {
                Some(done) => {
                    self.by_age.remove(&done.age);
                    Progress::Complete(join(&done))
                }
                None => Progress::Duplicate, // Unreachable: the entry was just found.
            };
            return Ok(Pushed { progress, evicted: None });
        }
        if total == 1 {
            return Ok(Pushed { progress: Progress::Complete(payload), evicted: stale });
        }
        let evicted = match stale {
            Some(stale) => Some(stale),
            None if self.pending.len() >= self.pending_max => self.pop_oldest(),
            None => None,
        };
        let age = (now_ms, self.arrivals);
        self.arrivals = self.arrivals.wrapping_add(1);
        let mut parts = vec![None; usize::from(total)].into_boxed_slice();
        let octets = payload.len();
        if let Some(slot) = parts.get_mut(index) {
            *slot = Some(payload);
        }
        self.by_age.insert(age, map_key.clone());
        self.pending.insert(map_key, Pending { age, total, received: 1, octets, parts });
        Ok(Pushed { progress: Progress::Incomplete { received: 1, total }, evicted })
    }

    /// Drops every incomplete message whose first part is `timeout_ms` or more older than `now_ms`,
    /// and returns their (key, reference), oldest first.
    pub fn expire(&mut self, now_ms: u64) -> Vec<(K, u16)> {
        let mut expired = Vec::new();
        while let Some((&(first_ms, _), _)) = self.by_age.first_key_value() {
            if first_ms.saturating_add(self.timeout_ms) > now_ms {
                break;
            }
            match self.pop_oldest() {
                Some(key) => expired.push(key),
                None => break,
            }
        }
        expired
    }

    /// When the oldest incomplete message expires, if there is one.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.by_age.first_key_value().map(|(&(first_ms, _), _)| first_ms.saturating_add(self.timeout_ms))
    }

    /// Incomplete messages held.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no incomplete message is held.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    fn pop_oldest(&mut self) -> Option<(K, u16)> {
        let (_, key) = self.by_age.pop_first()?;
        self.pending.remove(&key);
        Some(key)
    }
}

fn join(pending: &Pending) -> Bytes {
    let mut out = BytesMut::with_capacity(pending.octets);
    for part in pending.parts.iter().flatten() {
        out.extend_from_slice(part);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(ref_num: u16, total: u8, seq: u8) -> Concat {
        Concat { ref_num, total, seq }
    }

    fn complete<K>(pushed: Pushed<K>) -> Bytes {
        match pushed.progress {
            Progress::Complete(bytes) => bytes,
            other => panic!("expected a complete message, got {other:?}"),
        }
    }

    #[test]
    fn reassembles_out_of_order_with_duplicates() {
        // Goal: parts arriving 3, 1, 1 again, 2 give the text in seqnum order, the duplicate ignored.
        let mut r = Reassembler::new(8, 60_000).unwrap();
        let p = r.push("a", part(7, 3, 3), Bytes::from_static(b"baz"), 0).unwrap();
        assert_eq!(p, Pushed { progress: Progress::Incomplete { received: 1, total: 3 }, evicted: None });
        let p = r.push("a", part(7, 3, 1), Bytes::from_static(b"foo"), 1).unwrap();
        assert_eq!(p.progress, Progress::Incomplete { received: 2, total: 3 });
        let p = r.push("a", part(7, 3, 1), Bytes::from_static(b"foo"), 2).unwrap();
        assert_eq!(p.progress, Progress::Duplicate);
        assert_eq!(
            &complete(r.push("a", part(7, 3, 2), Bytes::from_static(b"bar"), 3).unwrap())[..],
            b"foobarbaz"
        );
        assert!(r.is_empty());
        assert_eq!(r.next_deadline_ms(), None);
    }

    #[test]
    fn a_reused_reference_starts_a_new_message_and_drops_the_stale_one() {
        // Goal: an 8-bit reference wraps after 256 messages. A message whose part was lost
        // stays pending; the next message under the same reference, with another total or
        // another text for a part held, drops it (reported) and is reassembled whole, instead of
        // being refused part by part or mixed with the stale one's parts.
        let mut r = Reassembler::new(8, 60_000).unwrap();
        let _ = r.push("k", part(7, 3, 1), Bytes::from_static(b"A1"), 0).unwrap();
        let p = r.push("k", part(7, 2, 1), Bytes::from_static(b"B1"), 1).unwrap();
        assert_eq!(
            p,
            Pushed { progress: Progress::Incomplete { received: 1, total: 2 }, evicted: Some(("k", 7)) }
        );
        assert_eq!(&complete(r.push("k", part(7, 2, 2), Bytes::from_static(b"B2"), 2).unwrap())[..], b"B1B2");
        // Same total, another text for the part held: a new message too.
        let _ = r.push("k", part(9, 2, 1), Bytes::from_static(b"C1"), 3).unwrap();
        let p = r.push("k", part(9, 2, 1), Bytes::from_static(b"D1"), 4).unwrap();
        assert_eq!(p.evicted, Some(("k", 9)));
        assert_eq!(&complete(r.push("k", part(9, 2, 2), Bytes::from_static(b"D2"), 5).unwrap())[..], b"D1D2");
        assert!(r.is_empty());
    }

    #[test]
    fn keys_and_references_are_separate_messages() {
        // Goal: the same reference from two keys, or two references from one key, do not mix.
        let mut r = Reassembler::new(8, 60_000).unwrap();
        let _ = r.push(("A", "B"), part(1, 2, 1), Bytes::from_static(b"a1"), 0).unwrap();
        let _ = r.push(("C", "B"), part(1, 2, 1), Bytes::from_static(b"c1"), 0).unwrap();
        let _ = r.push(("A", "B"), part(2, 2, 1), Bytes::from_static(b"x1"), 0).unwrap();
        assert_eq!(r.len(), 3);
        let done = complete(r.push(("C", "B"), part(1, 2, 2), Bytes::from_static(b"c2"), 1).unwrap());
        assert_eq!(&done[..], b"c1c2");
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn single_part_completes_without_state() {
        // Goal: total 1 is delivered at once and zero-copy.
        let mut r = Reassembler::new(1, 10).unwrap();
        let payload = Bytes::from_static(b"whole");
        let done = complete(r.push(0u8, part(1, 1, 1), payload.clone(), 0).unwrap());
        assert_eq!(done.as_ptr(), payload.as_ptr());
        assert!(r.is_empty());
    }

    #[test]
    fn rejects_invalid_parts_without_changing_state() {
        // Goal: total 0, seq 0, seq > total and oversized parts are errors.
        let mut r = Reassembler::new(4, 1_000).unwrap();
        let b = || Bytes::from_static(b"x");
        assert_eq!(r.push(1, part(1, 0, 0), b(), 0), Err(TextError::ConcatInvalid { total: 0, seq: 0 }));
        assert_eq!(r.push(1, part(1, 2, 0), b(), 0), Err(TextError::ConcatInvalid { total: 2, seq: 0 }));
        assert_eq!(r.push(1, part(1, 2, 3), b(), 0), Err(TextError::ConcatInvalid { total: 2, seq: 3 }));
        assert!(r.is_empty());
        let _ = r.push(1, part(1, 2, 1), b(), 0).unwrap();
        let big = Bytes::from(vec![0u8; REASSEMBLY_PART_OCTETS_MAX + 1]);
        assert_eq!(r.push(1, part(1, 2, 2), big, 0), Err(TextError::PartTooLong { len: 255, max: 254 }));
        assert_eq!(&complete(r.push(1, part(1, 2, 2), b(), 0).unwrap())[..], b"xx");
    }

    #[test]
    fn expires_incomplete_messages_after_timeout() {
        // Goal: a message expires timeout_ms after its first part, not before, and is reported once.
        let mut r = Reassembler::new(8, 1_000).unwrap();
        let _ = r.push("old", part(1, 2, 1), Bytes::from_static(b"o"), 100).unwrap();
        let _ = r.push("new", part(1, 2, 1), Bytes::from_static(b"n"), 600).unwrap();
        // A later part does not extend the deadline.
        let _ = r.push("old", part(1, 2, 1), Bytes::from_static(b"o"), 1_000).unwrap();
        assert_eq!(r.next_deadline_ms(), Some(1_100));
        assert!(r.expire(1_099).is_empty());
        assert_eq!(r.expire(1_100), [("old", 1)]);
        assert_eq!(r.next_deadline_ms(), Some(1_600));
        assert!(r.expire(1_100).is_empty());
        assert_eq!(r.expire(u64::MAX), [("new", 1)]);
        assert!(r.is_empty());
        // A part after expiry starts afresh.
        let p = r.push("old", part(1, 2, 2), Bytes::from_static(b"2"), 2_000).unwrap();
        assert_eq!(p.progress, Progress::Incomplete { received: 1, total: 2 });
    }

    #[test]
    fn evicts_oldest_when_full() {
        // Goal: at the bound, a new message evicts the oldest pending one and reports it.
        let mut r = Reassembler::new(2, 60_000).unwrap();
        assert_eq!(r.push('a', part(1, 2, 1), Bytes::new(), 10).unwrap().evicted, None);
        assert_eq!(r.push('b', part(1, 2, 1), Bytes::new(), 5).unwrap().evicted, None);
        // Parts for held messages never evict another message.
        assert_eq!(r.push('a', part(1, 2, 2), Bytes::new(), 20).unwrap().evicted, None);
        let _ = r.push('a', part(1, 2, 1), Bytes::new(), 20).unwrap();
        let p = r.push('c', part(1, 2, 1), Bytes::new(), 30).unwrap();
        assert_eq!(p.evicted, Some(('b', 1)), "b's first part is the oldest by time");
        assert_eq!(r.len(), 2);
        let p = r.push('d', part(1, 2, 1), Bytes::new(), 30).unwrap();
        assert_eq!(p.evicted, Some(('a', 1)));
        let p = r.push('e', part(1, 2, 1), Bytes::new(), 30).unwrap();
        assert_eq!(p.evicted, Some(('c', 1)), "same time: arrival order decides");
        assert_eq!(r.len(), 2);
        assert_eq!(r.by_age.len(), 2);
    }

    #[test]
    fn limits_are_validated() {
        // Goal: a zero or out-of-ceiling bound is refused at construction.
        assert!(matches!(Reassembler::<u8>::new(0, 1), Err(TextError::LimitOutOfRange { .. })));
        assert!(matches!(
            Reassembler::<u8>::new(REASSEMBLY_PENDING_CEILING + 1, 1),
            Err(TextError::LimitOutOfRange { .. })
        ));
        assert!(matches!(Reassembler::<u8>::new(1, 0), Err(TextError::LimitOutOfRange { .. })));
        assert!(Reassembler::<u8>::new(REASSEMBLY_PENDING_CEILING, REASSEMBLY_TIMEOUT_CEILING_MS).is_ok());
    }
}
