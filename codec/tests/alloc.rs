//! The data path allocates nothing: decoding a submit_sm or a receipt deliver_sm out of a read
//! buffer, and encoding into a buffer with room, cost zero heap allocations per PDU.
//!
//! A counting global allocator (this test binary only) counts the allocations made by the current
//! thread, so tests running in parallel do not disturb each other.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::{Bytes, BytesMut};
use smppgw_codec::{Address, Body, Decoder, MessageIdResp, Pdu, SubmitSm, Tlvs, tag};

struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    // try_with: the allocator may run while this thread's locals are being torn down.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call is forwarded to the system allocator with the caller's arguments; counting
// only touches a thread-local Cell, which neither allocates nor unwinds.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: the caller upholds GlobalAlloc::alloc's contract, which we pass on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: as for alloc.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: ptr came from this allocator (hence from System) with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from this allocator (hence from System) with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Allocations made by this thread while `f` runs.
fn allocations<R>(f: impl FnOnce() -> R) -> (u64, R) {
    let before = ALLOCATIONS.with(Cell::get);
    let r = f();
    (ALLOCATIONS.with(Cell::get) - before, r)
}

const FRAMES: usize = 1000;

/// 160 characters of GSM 03.38 default-alphabet text, one octet each (unpacked).
fn gsm_text_160() -> Bytes {
    let text: Vec<u8> = b"The quick brown fox jumps over the lazy dog 0123456789. "
        .iter()
        .copied()
        .cycle()
        .take(160)
        .collect();
    Bytes::from(text)
}

fn submit_sm_160() -> Pdu {
    Pdu::new(
        1,
        Body::SubmitSm(SubmitSm {
            service_type: Bytes::from_static(b"CMT"),
            source: Address::new(5, 0, Bytes::from_static(b"ACME")),
            dest: Address::new(1, 1, Bytes::from_static(b"447700900123")),
            registered_delivery: 1,
            short_message: gsm_text_160(),
            ..SubmitSm::default()
        }),
    )
}

fn receipt_deliver_sm() -> Pdu {
    let text = b"id:0123456789 sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 \
stat:DELIVRD err:000 text:The quick brown fox";
    Pdu::new(
        2,
        Body::DeliverSm(SubmitSm {
            source: Address::new(1, 1, Bytes::from_static(b"447700900123")),
            dest: Address::new(5, 0, Bytes::from_static(b"ACME")),
            esm_class: 0x04,
            short_message: Bytes::from_static(text),
            tlvs: Tlvs::builder()
                .cstr(tag::RECEIPTED_MESSAGE_ID, b"0123456789")
                .u8(tag::MESSAGE_STATE, 2)
                .build(),
            ..SubmitSm::default()
        }),
    )
}

/// `FRAMES` copies of `pdu` (sequence numbers 1..) in one read buffer.
fn stream_of(pdu: &Pdu) -> BytesMut {
    let mut buf = BytesMut::new();
    let mut p = pdu.clone();
    for seq in 1..=FRAMES as u32 {
        p.sequence_number = seq;
        p.encode(&mut buf);
    }
    buf
}

/// Decodes every frame of `buf` and returns (allocations for frame 1, allocations for 2..=N).
fn decode_counting(mut buf: BytesMut, expected: &Pdu) -> (u64, u64) {
    let decoder = Decoder::default();
    let (first, pdu) = allocations(|| decoder.decode(&mut buf));
    let pdu = pdu.expect("valid").expect("whole frame");
    assert_eq!(pdu.body, expected.body);
    drop(pdu);
    let (rest, decoded) = allocations(|| {
        let mut n = 0usize;
        // The PDUs are dropped inside the loop, as a session would after handling each.
        while let Ok(Some(pdu)) = decoder.decode(&mut buf) {
            n += usize::from(pdu.command_id() == expected.command_id());
        }
        n
    });
    assert_eq!(decoded, FRAMES - 1);
    assert!(buf.is_empty());
    (first, rest)
}

#[test]
fn decoding_a_160_character_submit_sm_allocates_nothing() {
    let pdu = submit_sm_160();
    let (first, rest) = decode_counting(stream_of(&pdu), &pdu);
    // The first split of a BytesMut turns its Vec into a shared, reference-counted buffer: one
    // allocation for the shared header, once per read buffer, not per PDU.
    assert!(first <= 1, "first frame: {first} allocations");
    assert_eq!(rest, 0, "frames 2..={FRAMES}: {rest} allocations");
}

#[test]
fn decoding_a_receipt_deliver_sm_with_tlvs_allocates_nothing() {
    let pdu = receipt_deliver_sm();
    let (first, rest) = decode_counting(stream_of(&pdu), &pdu);
    assert!(first <= 1, "first frame: {first} allocations");
    assert_eq!(rest, 0, "frames 2..={FRAMES}: {rest} allocations");
}

#[test]
fn decoding_a_submit_sm_resp_allocates_nothing() {
    let pdu = Pdu::new(
        3,
        Body::SubmitSmResp(MessageIdResp {
            message_id: Bytes::from_static(b"5f3c9a1e"),
            tlvs: Default::default(),
        }),
    );
    let (first, rest) = decode_counting(stream_of(&pdu), &pdu);
    assert!(first <= 1, "first frame: {first} allocations");
    assert_eq!(rest, 0, "frames 2..={FRAMES}: {rest} allocations");
}

#[test]
fn encoding_into_a_reserved_buffer_allocates_nothing() {
    for pdu in [submit_sm_160(), receipt_deliver_sm()] {
        let frame_len = pdu.to_bytes().len();
        // Appending N frames to one buffer reserved for them all.
        let mut out = BytesMut::with_capacity(FRAMES * frame_len + 64);
        let (n, ()) = allocations(|| {
            for _ in 0..FRAMES {
                pdu.encode(&mut out);
            }
        });
        assert_eq!(n, 0, "{FRAMES} encodes appended: {n} allocations");
        assert_eq!(out.len(), FRAMES * frame_len);

        // Reusing one buffer, cleared between frames.
        let mut out = BytesMut::with_capacity(4096);
        let (n, ()) = allocations(|| {
            for _ in 0..FRAMES {
                out.clear();
                pdu.encode(&mut out);
            }
        });
        assert_eq!(n, 0, "{FRAMES} encodes into a reused buffer: {n} allocations");
        assert_eq!(out.len(), frame_len);
    }
}

#[test]
fn the_counter_sees_allocations() {
    // Guards the tests above against a counter that counts nothing.
    let (n, v) = allocations(|| vec![0u8; 100]);
    assert_eq!(v.len(), 100);
    assert!(n >= 1);
}
