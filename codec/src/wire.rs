//! Low-level octet helpers shared by decode and encode.
//!
//! - [`find_nul`] finds the NUL of a C-octet string a word at a time (no per-octet loop).
//! - [`FrameWriter`] appends a frame of known length to a `BytesMut`: one capacity check for the
//!   whole frame, the final command_length written with the header, and no per-field `BufMut`
//!   bookkeeping. It holds the only `unsafe` code of the codec.

use bytes::BytesMut;

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Index (in `b`) of the first NUL of `b[from..]` within its first `max` octets, or `None`.
///
/// The usual field (a short one) is found with one 16-octet read: the 16 octets from `from` when
/// `b` has them (octets past the window may be read but never match), else the last 16 octets of
/// `b`, shifted so that `from` comes first. Longer windows go on eight octets at a time.
#[inline(always)]
pub(crate) fn find_nul(b: &[u8], from: usize, max: usize) -> Option<usize> {
    let word = match b.get(from..).and_then(|rest| rest.first_chunk::<16>()) {
        Some(c) => u128::from_le_bytes(*c),
        None => match b.last_chunk::<16>() {
            // Fewer than 16 octets from `from` to the end of `b`: the shift brings in zero octets
            // above the last one of `b`, rejected below.
            Some(c) if from < b.len() => u128::from_le_bytes(*c) >> (8 * (from + 16 - b.len())),
            _ => return find_nul_from(b, from, from, max),
        },
    };
    let n = zeros(word as u64).or_else(|| zeros((word >> 64) as u64).map(|n| 8 + n));
    match n {
        Some(n) => (n < max && from + n < b.len()).then_some(from + n),
        // Without a NUL in the 16 octets, the window is exhausted or we go on past them.
        None if max <= 16 || from + 16 >= b.len() => None,
        None => find_nul_from(b, from + 16, from, max),
    }
}

/// Index of the first zero octet of a little-endian word, if any.
#[inline(always)]
fn zeros(x: u64) -> Option<usize> {
    // The classic "has a zero octet" test: the lowest flagged octet is always a true zero (a false
    // positive can only sit above a true zero, through the borrow).
    let z = x.wrapping_sub(LO) & !x & HI;
    (z != 0).then(|| (z.trailing_zeros() / 8) as usize)
}

/// [`find_nul`] for the window `b[from..from + max]`, searching from `i` on (`from <= i`, and
/// `b[from..i]` is known to hold no NUL).
#[inline]
fn find_nul_from(b: &[u8], mut i: usize, from: usize, max: usize) -> Option<usize> {
    let end = b.len().min(from.saturating_add(max));
    while i < end {
        let x = match b[i..].first_chunk::<8>() {
            Some(chunk) => u64::from_le_bytes(*chunk),
            None => match b.last_chunk::<8>() {
                // Fewer than eight octets from i to the end of b, but b has eight: read the last
                // eight and shift out those before i. The shift brings in zero octets above the
                // last one of b, which can only match past `end`.
                Some(last) => u64::from_le_bytes(*last) >> (8 * (i + 8 - b.len())),
                None => return b[i..end].iter().position(|&c| c == 0).map(|n| i + n),
            },
        };
        if let Some(n) = zeros(x) {
            return (i + n < end).then_some(i + n);
        }
        i += 8;
    }
    None
}

/// Appends one frame of a length known in advance to a `BytesMut`: [`FrameWriter::new`] reserves
/// the room once, the writes go front to back through a cursor (each checked against the room, a
/// compare and a branch, never a capacity check or a length update), and [`FrameWriter::finish`]
/// checks the room is exactly full before making it part of the buffer. If the writer is dropped
/// without `finish` (a panic), the buffer is left as it was.
///
/// This is the codec's one `unsafe` helper: it writes into the `BytesMut`'s uninitialised spare
/// capacity through a raw pointer and then extends its length over what was written.
pub(crate) struct FrameWriter<'a> {
    out: &'a mut BytesMut,
    /// Next octet to write, inside the spare capacity of `out`.
    pos: *mut u8,
    /// One past the last octet of the frame's room.
    end: *mut u8,
    len: usize,
}

impl<'a> FrameWriter<'a> {
    /// Reserves room for exactly `len` octets at the end of `out`.
    #[inline(always)]
    pub(crate) fn new(out: &'a mut BytesMut, len: usize) -> FrameWriter<'a> {
        out.reserve(len);
        // Indexing panics if reserve left less than `len` octets of spare capacity.
        let room = &mut out.spare_capacity_mut()[..len];
        let pos = room.as_mut_ptr().cast::<u8>();
        // `len` octets past `pos` is the end of `room`: in bounds (one past the end at most).
        let end = pos.wrapping_add(len);
        FrameWriter { out, pos, end, len }
    }

    /// Octets of room left.
    #[inline(always)]
    fn left(&self) -> usize {
        self.end as usize - self.pos as usize
    }

    /// Writes a fixed number of octets.
    #[inline(always)]
    pub(crate) fn array<const N: usize>(&mut self, v: [u8; N]) {
        assert!(N <= self.left(), "frame longer than its computed length");
        // SAFETY: `pos..pos + N` lies inside the room (checked just above), which is spare capacity
        // of `out` that nothing else references while the writer lives; `[u8; N]` has alignment 1
        // and write_unaligned needs none anyway.
        unsafe {
            self.pos.cast::<[u8; N]>().write_unaligned(v);
            self.pos = self.pos.add(N);
        }
    }

    /// Writes one octet.
    #[inline(always)]
    pub(crate) fn u8(&mut self, v: u8) {
        self.array([v]);
    }

    /// Writes a big-endian u32.
    #[inline(always)]
    pub(crate) fn u32(&mut self, v: u32) {
        self.array(v.to_be_bytes());
    }

    /// Writes the 16-octet header.
    #[inline(always)]
    pub(crate) fn header(&mut self, len: u32, id: u32, status: u32, seq: u32) {
        assert!(16 <= self.left(), "frame longer than its computed length");
        // SAFETY: `pos..pos + 16` lies inside the room (checked just above), which nothing else
        // references while the writer lives.
        unsafe {
            put_header(self.pos, len, id, status, seq);
            self.pos = self.pos.add(16);
        }
    }

    /// Writes `s` as is.
    #[inline(always)]
    pub(crate) fn slice(&mut self, s: &[u8]) {
        let n = s.len();
        assert!(n <= self.left(), "frame longer than its computed length");
        // SAFETY: `pos..pos + n` lies inside the room (checked just above), which nothing else
        // references while the writer lives, and `s` (a shared slice) cannot overlap it.
        unsafe {
            copy_to(self.pos, s);
            self.pos = self.pos.add(n);
        }
    }

    /// Writes `s` and its NUL.
    #[inline(always)]
    pub(crate) fn cstr(&mut self, s: &[u8]) {
        let n = s.len();
        assert!(n < self.left(), "frame longer than its computed length");
        // SAFETY: `pos..pos + n + 1` lies inside the room (checked just above: n + 1 <= left), which
        // nothing else references while the writer lives, and `s` cannot overlap it.
        unsafe {
            copy_to(self.pos, s);
            self.pos.add(n).write(0);
            self.pos = self.pos.add(n + 1);
        }
    }

    /// Checks every octet of the room was written, then appends them to the buffer.
    #[inline(always)]
    pub(crate) fn finish(self) {
        assert!(self.pos == self.end, "frame shorter than its computed length");
        let new_len = self.out.len() + self.len;
        // SAFETY: the room is the `len` octets of spare capacity right after `out.len()`; the
        // cursor started at its first octet and only ever moved forward over octets it had just
        // written in full (`array` writes its N octets, `copy_to` all of its n, `cstr` its n and the
        // NUL), and it has reached the end, so all `len` octets are initialised.
        unsafe { self.out.set_len(new_len) };
    }
}

/// Writes the 16-octet header at `dst` as two big-endian words: written as four fields, the
/// compiler stores a command_length it knows to be small octet by octet.
///
/// # Safety
///
/// `dst..dst + 16` must be valid for writes.
#[inline(always)]
unsafe fn put_header(dst: *mut u8, len: u32, id: u32, status: u32, seq: u32) {
    let w0 = (u64::from(len) << 32 | u64::from(id)).to_be_bytes();
    let w1 = (u64::from(status) << 32 | u64::from(seq)).to_be_bytes();
    // SAFETY: the caller's guarantee; unaligned writes need no alignment.
    unsafe {
        dst.cast::<[u8; 8]>().write_unaligned(w0);
        dst.add(8).cast::<[u8; 8]>().write_unaligned(w1);
    }
}

/// Longest C-octet string [`header_and_cstr`] takes (without its NUL): message ids as vendors and
/// we issue them.
pub(crate) const SHORT_CSTR_MAX: usize = 32;

/// Appends a frame made of a header and, when `with_cstr`, `s` and its NUL (a submit_sm_resp or
/// deliver_sm_resp without TLVs, the commonest frame on the wire). The general [`FrameWriter`]
/// checks each field against the room; here the room is reserved for the longest such frame, so
/// the header, the string and its NUL are written unchecked and the length is extended once.
///
/// # Panics
///
/// If `s` is longer than [`SHORT_CSTR_MAX`], or not empty while `with_cstr` is false.
#[inline(always)]
pub(crate) fn header_and_cstr(out: &mut BytesMut, id: u32, status: u32, seq: u32, s: &[u8], with_cstr: bool) {
    let n = s.len();
    assert!(n <= SHORT_CSTR_MAX && (with_cstr || n == 0), "not a short frame");
    let len = 16 + if with_cstr { n + 1 } else { 0 };
    out.reserve(16 + SHORT_CSTR_MAX + 1);
    let p = out.spare_capacity_mut().as_mut_ptr().cast::<u8>();
    // SAFETY: the spare capacity holds at least 16 + SHORT_CSTR_MAX + 1 octets (reserved above)
    // and nothing else references it; the header takes 16, the string n <= SHORT_CSTR_MAX after
    // it, and its NUL one more (written even without the string: it is then left outside the
    // frame, in spare capacity). The length grows only over the `len` octets just written.
    unsafe {
        put_header(p, len as u32, id, status, seq);
        copy_to(p.add(16), s);
        p.add(16 + n).write(0);
        let new_len = out.len() + len;
        out.set_len(new_len);
    }
}

/// Copies all of `s` to `dst`. Fields of up to 32 octets, the usual case, are copied with two
/// overlapping fixed-size moves and fields up to 256 octets with 32-octet moves, instead of a call
/// to `memcpy`.
///
/// # Safety
///
/// `dst..dst + s.len()` must be valid for writes and must not overlap `s`.
#[inline(always)]
unsafe fn copy_to(dst: *mut u8, s: &[u8]) {
    let n = s.len();
    // SAFETY: each arm calls a helper within the length range it requires; the caller's guarantee
    // covers the rest (single octets are written at offsets below n).
    unsafe {
        if n == 0 {
        } else if n <= 16 {
            if n >= 8 {
                pair::<8>(dst, s);
            } else if n >= 4 {
                pair::<4>(dst, s);
            } else {
                dst.write(s[0]);
                dst.add(n / 2).write(s[n / 2]);
                dst.add(n - 1).write(s[n - 1]);
            }
        } else if n <= 32 {
            pair::<16>(dst, s);
        } else if n <= 128 {
            thirds(dst, s);
        } else if n <= 192 {
            three64(dst, s);
        } else if n <= 256 {
            chunks32(dst, s);
        } else {
            std::ptr::copy_nonoverlapping(s.as_ptr(), dst, n);
        }
    }
}

/// Copies `s` (of `K..=2K` octets) to `dst` with two overlapping `K`-octet moves, which together
/// write every octet of `dst..dst + s.len()`.
///
/// # Safety
///
/// As [`copy_to`], and `s` must have at most `2K` octets (fewer than `K` panics).
#[inline(always)]
unsafe fn pair<const K: usize>(dst: *mut u8, s: &[u8]) {
    let n = s.len();
    debug_assert!(n <= 2 * K, "two moves of K cover at most 2K octets");
    let (Some(head), Some(tail)) = (s.first_chunk::<K>(), s.last_chunk::<K>()) else {
        unreachable!("K <= n");
    };
    // SAFETY: K <= n, so offsets 0 and n - K with K octets each stay inside the n octets the
    // caller made valid; with n <= 2K they leave no gap.
    unsafe {
        dst.cast::<[u8; K]>().write_unaligned(*head);
        dst.add(n - K).cast::<[u8; K]>().write_unaligned(*tail);
    }
}

/// Copies `s` (of 33 to 192 octets) to `dst` with one to three pairs of 32-octet moves, one from
/// its start and one ending at its end, overlapping in the middle (no `memcpy` call).
///
/// # Safety
///
/// As [`copy_to`]; fewer than 33 or more than 192 octets panic.
#[inline(always)]
unsafe fn thirds(dst: *mut u8, s: &[u8]) {
    let n = s.len();
    assert!((33..=192).contains(&n), "thirds copies 33 to 192 octets");
    // Moves of 32 from the front and the back: k of each cover up to 64k octets.
    let k = n.div_ceil(64);
    for i in 0..k {
        let (Some(head), Some(tail)) = (
            s.get(32 * i..).and_then(|r| r.first_chunk::<32>()),
            s.get(..n - 32 * i).and_then(|r| r.last_chunk::<32>()),
        ) else {
            unreachable!("32 * i + 32 <= n for i < k");
        };
        // SAFETY: both moves lie inside the n octets the caller made valid (offsets 32i and
        // n - 32(i + 1), each with 32 octets, within 0..n since 32(i + 1) <= n).
        unsafe {
            dst.add(32 * i).cast::<[u8; 32]>().write_unaligned(*head);
            dst.add(n - 32 * (i + 1)).cast::<[u8; 32]>().write_unaligned(*tail);
        }
    }
}

/// Copies `s` (of 129 to 192 octets: a full short message of 160) to `dst` in three fixed
/// 64-octet moves, the third ending at its end: no loop and no length-dependent count, which
/// [`thirds`] has (about half a nanosecond a frame on a 160-octet submit_sm).
///
/// # Safety
///
/// As [`copy_to`]; fewer than 129 or more than 192 octets panic.
#[inline(always)]
unsafe fn three64(dst: *mut u8, s: &[u8]) {
    let n = s.len();
    assert!((129..=192).contains(&n), "three64 copies 129 to 192 octets");
    let (Some(a), Some(b), Some(c)) =
        (s.first_chunk::<64>(), s.get(64..).and_then(|r| r.first_chunk::<64>()), s.last_chunk::<64>())
    else {
        unreachable!("128 < n");
    };
    // SAFETY: offsets 0, 64 and n - 64 (between 65 and 128), 64 octets each, lie inside the n
    // octets the caller made valid, and together cover all of them (n - 64 <= 128).
    unsafe {
        dst.cast::<[u8; 64]>().write_unaligned(*a);
        dst.add(64).cast::<[u8; 64]>().write_unaligned(*b);
        dst.add(n - 64).cast::<[u8; 64]>().write_unaligned(*c);
    }
}

/// Copies `s` (of more than 32 octets) to `dst` in 32-octet moves: the first and the last at
/// `dst` and `dst + n - 32` as they fall, every one between at a 16-aligned address, so that none
/// of their 16-octet halves straddles a page (a store split across two pages costs more than the
/// rest of the field).
///
/// # Safety
///
/// As [`copy_to`]; 32 octets or fewer panic.
#[inline(always)]
unsafe fn chunks32(dst: *mut u8, s: &[u8]) {
    let n = s.len();
    let (Some(head), Some(tail)) = (s.first_chunk::<32>(), s.last_chunk::<32>()) else {
        panic!("chunks32 needs more than 32 octets");
    };
    // SAFETY: 32 <= n: offsets 0 and n - 32 with 32 octets each are inside the n octets.
    unsafe {
        dst.cast::<[u8; 32]>().write_unaligned(*head);
        dst.add(n - 32).cast::<[u8; 32]>().write_unaligned(*tail);
    }
    // The first 16-aligned address after dst: at most 16 octets in, inside what the head wrote.
    let mut at = 16 - (dst as usize & 15);
    while let Some(chunk) = s.get(at..).and_then(|rest| rest.first_chunk::<32>()) {
        // SAFETY: `at + 32 <= n` (the chunk exists), inside the n octets the caller made valid.
        unsafe { dst.add(at).cast::<[u8; 32]>().write_unaligned(*chunk) };
        at += 32;
    }
    // Whatever the loop left (fewer than 32 octets) the tail wrote.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_nul_matches_a_plain_search() {
        let mut b = Vec::new();
        for len in 0..40usize {
            for nul_at in 0..=len {
                b.clear();
                b.extend((0..len).map(|i| if i == nul_at { 0 } else { b'a' + (i % 26) as u8 }));
                for from in 0..=len {
                    for max in [0, 1, 2, 6, 7, 8, 9, 17, 21, 65, usize::MAX] {
                        let end = len.min(from.saturating_add(max));
                        let want = b[from..end].iter().position(|&c| c == 0).map(|n| from + n);
                        assert_eq!(
                            find_nul(&b, from, max),
                            want,
                            "len {len} nul {nul_at} from {from} max {max}"
                        );
                    }
                }
            }
        }
        // Bytes around 0x01 and 0x80 exercise the borrow of the word-at-a-time test.
        let b = [0x01, 0x80, 0x00, 0x01, 0x00, 0xFF, 0x01, 0x01, 0x00];
        assert_eq!(find_nul(&b, 0, 100), Some(2));
        assert_eq!(find_nul(&b, 3, 100), Some(4));
        assert_eq!(find_nul(&b, 5, 100), Some(8));
        assert_eq!(find_nul(&b, 5, 3), None);
    }

    #[test]
    fn writer_copies_every_length_exactly() {
        let src: Vec<u8> = (0..300u32).map(|i| (i % 251 + 1) as u8).collect();
        for n in 0..300 {
            let mut out = BytesMut::from(&b"xy"[..]);
            let mut w = FrameWriter::new(&mut out, n + 5);
            w.u8(7);
            w.slice(&src[..n]);
            w.u32(0xDEAD_BEEF);
            w.finish();
            let mut want = b"xy\x07".to_vec();
            want.extend_from_slice(&src[..n]);
            want.extend_from_slice(&[0xDE, 0xAD, 0xBE, 0xEF]);
            assert_eq!(&out[..], &want[..]);
        }
    }

    #[test]
    fn header_and_cstr_appends_exactly_the_frame() {
        let src: Vec<u8> = (1..=SHORT_CSTR_MAX as u8).collect();
        let (id, status, seq) = (0x8000_0004, 0x0000_0045, 0x1234_5678);
        for n in 0..=SHORT_CSTR_MAX {
            for with_cstr in [true, false] {
                if !with_cstr && n > 0 {
                    continue;
                }
                // A buffer with content and no spare room, then one with room to spare.
                for mut out in [BytesMut::from(&b"xyz"[..]), BytesMut::with_capacity(200)] {
                    let before = out.to_vec();
                    header_and_cstr(&mut out, id, status, seq, &src[..n], with_cstr);
                    let mut want = before;
                    let len = 16 + if with_cstr { n as u32 + 1 } else { 0 };
                    for w in [len, id, status, seq] {
                        want.extend_from_slice(&w.to_be_bytes());
                    }
                    if with_cstr {
                        want.extend_from_slice(&src[..n]);
                        want.push(0);
                    }
                    assert_eq!(&out[..], &want[..], "n {n} with_cstr {with_cstr}");
                }
            }
        }
    }

    #[test]
    fn header_and_cstr_refuses_a_long_string() {
        let mut out = BytesMut::new();
        let long = [b'a'; SHORT_CSTR_MAX + 1];
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            header_and_cstr(&mut out, 4, 0, 1, &long, true)
        }));
        assert!(r.is_err());
        assert!(out.is_empty());
    }

    /// Runs `write` on a writer with `len` octets of room; it must panic and leave `out` empty.
    fn assert_panics_leaving_nothing(len: usize, write: impl FnOnce(&mut FrameWriter<'_>)) {
        let mut out = BytesMut::new();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut w = FrameWriter::new(&mut out, len);
            write(&mut w);
            w.finish();
        }));
        assert!(r.is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn a_short_write_panics_without_exposing_the_room() {
        assert_panics_leaving_nothing(4, |w| w.u8(1));
    }

    #[test]
    fn a_long_write_panics() {
        assert_panics_leaving_nothing(2, |w| w.u32(1));
    }
}
