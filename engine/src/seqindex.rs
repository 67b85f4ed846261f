//! The receipt store's index: a 64-bit key to a record's sequence number.
//!
//! A general-purpose hash map reads its control bytes and then its entry, two cache misses per
//! operation in a table of millions; here key and value sit side by side in one 16-octet slot
//! (open addressing, linear probing, backward-shift deletion), so an operation touches one cache
//! line in the usual case, and [`SeqIndex::prefetch`] can start that one miss early. The table
//! is split in [`SEGMENTS`] segments that grow independently: a growing index rehashes one
//! segment's share at a time, never all of it (tens of milliseconds at millions of entries).

/// Segments of an index.
pub const SEGMENTS: usize = 64;

/// The smallest segment table, in slots.
const MIN_SLOTS: usize = 16;

/// A segment grows when it is more than this many eighths full: linear probing's probe
/// sequences stay within a cache line or two below that.
const MAX_LOAD_EIGHTHS: usize = 6;

/// One slot: `val` is the sequence number plus one, 0 for an empty slot (so any key, 0
/// included, can be stored).
#[derive(Clone, Copy, Default)]
struct Slot {
    key: u64,
    val: u64,
}

#[derive(Default)]
struct Seg {
    slots: Vec<Slot>,
    len: usize,
}

/// A map from u64 keys to u64 sequence numbers (below `u64::MAX`).
pub struct SeqIndex {
    segs: Vec<Seg>,
}

impl std::fmt::Debug for SeqIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeqIndex").field("len", &self.len()).finish()
    }
}

/// Mixes a key so that both its top bits (the segment) and its low bits (the slot) are spread
/// even when keys are sequential (our own ids). The murmur3 finaliser: a bijection.
#[inline]
fn mix(k: u64) -> u64 {
    let mut h = k;
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[inline]
fn seg_of(h: u64) -> usize {
    (h >> 58) as usize % SEGMENTS
}

impl Default for SeqIndex {
    fn default() -> Self {
        SeqIndex::new()
    }
}

impl SeqIndex {
    /// An empty index (no memory until the first insert in a segment).
    pub fn new() -> SeqIndex {
        SeqIndex { segs: (0..SEGMENTS).map(|_| Seg::default()).collect() }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.segs.iter().map(|s| s.len).sum()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.segs.iter().all(|s| s.len == 0)
    }

    /// Each segment's table size in slots.
    pub fn capacities(&self) -> Vec<usize> {
        self.segs.iter().map(|s| s.slots.len()).collect()
    }

    /// Sizes every segment for its share of `entries` (with room for uneven spread) and touches
    /// the memory, so that filling the index neither grows a table nor faults a page in.
    pub fn preallocate(&mut self, entries: usize) {
        let share = entries.div_ceil(SEGMENTS);
        let per = share + share / 16 + 64;
        let slots = (per * 8).div_ceil(MAX_LOAD_EIGHTHS).next_power_of_two().max(MIN_SLOTS);
        for seg in &mut self.segs {
            if seg.slots.len() < slots {
                seg.resize(slots);
            }
        }
    }

    /// Starts loading the cache line where `key`'s probe begins, for an insert or lookup that
    /// follows shortly: a batch of operations then waits for memory once, not once each.
    #[inline]
    pub fn prefetch(&self, key: u64) {
        let h = mix(key);
        let seg = &self.segs[seg_of(h)];
        if seg.slots.is_empty() {
            return;
        }
        let i = h as usize & (seg.slots.len() - 1);
        let p = std::ptr::from_ref(&seg.slots[i]).cast::<i8>();
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is a hint; it never faults, and `p` points into the table anyway.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p);
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = p;
    }

    /// The sequence number stored for `key`.
    #[inline]
    pub fn get(&self, key: u64) -> Option<u64> {
        let h = mix(key);
        let seg = &self.segs[seg_of(h)];
        seg.find(h, key).map(|i| seg.slots[i].val - 1)
    }

    /// Stores `seq` for `key`; returns the sequence number it replaced.
    #[inline]
    pub fn insert(&mut self, key: u64, seq: u64) -> Option<u64> {
        debug_assert!(seq < u64::MAX);
        let h = mix(key);
        let seg = &mut self.segs[seg_of(h)];
        if (seg.len + 1) * 8 > seg.slots.len() * MAX_LOAD_EIGHTHS {
            let want = (seg.slots.len() * 2).max(MIN_SLOTS);
            seg.resize(want);
        }
        let mask = seg.slots.len() - 1;
        let mut i = h as usize & mask;
        loop {
            let s = &mut seg.slots[i];
            if s.val == 0 {
                *s = Slot { key, val: seq + 1 };
                seg.len += 1;
                return None;
            }
            if s.key == key {
                let old = s.val - 1;
                s.val = seq + 1;
                return Some(old);
            }
            i = (i + 1) & mask;
        }
    }

    /// Removes `key`; returns its sequence number.
    #[inline]
    pub fn remove(&mut self, key: u64) -> Option<u64> {
        let h = mix(key);
        let seg = &mut self.segs[seg_of(h)];
        let i = seg.find(h, key)?;
        let old = seg.slots[i].val - 1;
        seg.delete_at(i);
        Some(old)
    }

    /// Removes `key` only if it maps to `seq` (a newer record may have taken the key over).
    #[inline]
    pub fn remove_if(&mut self, key: u64, seq: u64) -> bool {
        let h = mix(key);
        let seg = &mut self.segs[seg_of(h)];
        match seg.find(h, key) {
            Some(i) if seg.slots[i].val == seq + 1 => {
                seg.delete_at(i);
                true
            }
            _ => false,
        }
    }
}

impl Seg {
    #[inline]
    fn find(&self, h: u64, key: u64) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = h as usize & mask;
        loop {
            let s = &self.slots[i];
            if s.val == 0 {
                return None;
            }
            if s.key == key {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// Empties slot `i`, moving later entries of the probe run back so that every entry stays
    /// reachable from its home slot without tombstones.
    fn delete_at(&mut self, mut i: usize) {
        let mask = self.slots.len() - 1;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let s = self.slots[j];
            if s.val == 0 {
                break;
            }
            let home = mix(s.key) as usize & mask;
            // The entry at j may fill the hole at i when i lies on its probe path (home..=j).
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(i) & mask) {
                self.slots[i] = s;
                i = j;
            }
        }
        self.slots[i] = Slot::default();
        self.len -= 1;
    }

    fn resize(&mut self, slots: usize) {
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); slots]);
        let mask = slots - 1;
        for s in old.into_iter().filter(|s| s.val != 0) {
            let mut i = mix(s.key) as usize & mask;
            while self.slots[i].val != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn agrees_with_a_hash_map_under_random_inserts_and_removals() {
        // Small key space: many replacements, and removals that shift long probe runs.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut ix = SeqIndex::new();
        let mut model: HashMap<u64, u64> = HashMap::new();
        for step in 0..200_000u64 {
            let key = next() % 5_000;
            match next() % 3 {
                0 => assert_eq!(ix.remove(key), model.remove(&key), "remove {key} at {step}"),
                _ => assert_eq!(ix.insert(key, step), model.insert(key, step), "insert {key} at {step}"),
            }
        }
        assert_eq!(ix.len(), model.len());
        for k in 0..5_000 {
            assert_eq!(ix.get(k), model.get(&k).copied(), "key {k}");
        }
    }

    #[test]
    fn remove_if_leaves_a_key_that_moved_on() {
        let mut ix = SeqIndex::new();
        ix.insert(7, 1);
        ix.insert(7, 2);
        assert!(!ix.remove_if(7, 1), "the key now belongs to seq 2");
        assert_eq!(ix.get(7), Some(2));
        assert!(ix.remove_if(7, 2));
        assert_eq!(ix.get(7), None);
        assert!(ix.is_empty());
    }

    #[test]
    fn key_zero_and_sequence_zero_are_ordinary() {
        let mut ix = SeqIndex::new();
        assert_eq!(ix.insert(0, 0), None);
        assert_eq!(ix.get(0), Some(0));
        ix.prefetch(0);
        assert_eq!(ix.remove(0), Some(0));
        assert_eq!(ix.get(0), None);
    }

    #[test]
    fn preallocated_segments_hold_their_share_without_growing() {
        let mut ix = SeqIndex::new();
        ix.preallocate(100_000);
        let caps = ix.capacities();
        for k in 0..100_000u64 {
            ix.insert(k, k);
        }
        assert_eq!(ix.capacities(), caps, "no segment grew");
        assert_eq!(ix.len(), 100_000);
        assert!((0..100_000u64).all(|k| ix.get(k) == Some(k)));
    }
}
