// Helpers shared by the integration tests. Each test binary uses a part of them.
#![allow(dead_code)]

pub mod strategies;

use bytes::BytesMut;
use smppgw_codec::Pdu;

/// A frame with a correct command_length around `body`.
pub fn frame(command_id: u32, command_status: u32, sequence_number: u32, body: &[u8]) -> BytesMut {
    let mut b = BytesMut::with_capacity(16 + body.len());
    b.extend_from_slice(&((16 + body.len()) as u32).to_be_bytes());
    b.extend_from_slice(&command_id.to_be_bytes());
    b.extend_from_slice(&command_status.to_be_bytes());
    b.extend_from_slice(&sequence_number.to_be_bytes());
    b.extend_from_slice(body);
    b
}

/// The PDU encoded into a fresh buffer.
pub fn encode(pdu: &Pdu) -> BytesMut {
    let mut b = BytesMut::new();
    pdu.encode(&mut b);
    b
}

/// Decodes `bytes` hex (whitespace allowed) into octets.
pub fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).expect("ascii"), 16).expect("hex digit"))
        .collect()
}
