//! Fuzzes the stream decoder: arbitrary bytes cut into arbitrary reads, every decoded PDU
//! re-encoded and decoded again. The input format and the checks are in
//! codec/tests/common/fuzz_logic.rs, shared with the corpus replay in codec/tests/fuzz_corpus.rs.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| decode_stream(data));

include!("../../tests/common/fuzz_logic.rs");
