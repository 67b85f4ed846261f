//! UCS-2 (data_coding 8) carried as UTF-16BE: characters outside the BMP are sent as surrogate pairs,
//! which is what handsets expect in practice. Decoding never fails: a lone or reversed surrogate and an
//! odd trailing octet each become U+FFFD.

use bytes::{BufMut, BytesMut};

use super::{MESSAGE_PAYLOAD_OCTETS_MAX, TextError};

/// UTF-16 code units `text` takes (2 for each character outside the BMP).
pub fn unit_count(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

/// Whether a 16-bit unit is a high (leading) surrogate.
#[inline]
pub const fn is_high_surrogate(unit: u16) -> bool {
    matches!(unit, 0xD800..=0xDBFF)
}

/// Whether a 16-bit unit is a low (trailing) surrogate.
#[inline]
pub const fn is_low_surrogate(unit: u16) -> bool {
    matches!(unit, 0xDC00..=0xDFFF)
}

/// Appends `text` as UTF-16BE to `out`; on error `out` is left as it was.
pub fn encode_into(text: &str, out: &mut BytesMut) -> Result<(), TextError> {
    let start = out.len();
    // UTF-8 takes at least as many octets as UTF-16 for every character but the ASCII ones.
    out.reserve(text.len().saturating_mul(2).min(MESSAGE_PAYLOAD_OCTETS_MAX + 1));
    let mut units = [0u16; 2];
    for c in text.chars() {
        for &unit in c.encode_utf16(&mut units).iter() {
            out.put_u16(unit);
        }
        let len = out.len() - start;
        if len > MESSAGE_PAYLOAD_OCTETS_MAX {
            out.truncate(start);
            return Err(TextError::TooLong { len, max: MESSAGE_PAYLOAD_OCTETS_MAX });
        }
    }
    Ok(())
}

/// Decodes UTF-16BE; never fails (see the module documentation for what becomes U+FFFD).
pub fn decode(bytes: &[u8]) -> String {
    let (pairs, rest) = bytes.as_chunks::<2>();
    let mut out = String::with_capacity(bytes.len());
    out.extend(
        char::decode_utf16(pairs.iter().map(|&pair| u16::from_be_bytes(pair)))
            .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER)),
    );
    if !rest.is_empty() {
        out.push(char::REPLACEMENT_CHARACTER);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(text: &str) -> BytesMut {
        let mut out = BytesMut::new();
        encode_into(text, &mut out).unwrap();
        out
    }

    #[test]
    fn encodes_bmp_and_surrogate_pairs() {
        // Goal: BMP characters are one big-endian unit, others a surrogate pair.
        assert_eq!(&encode("Aé€")[..], &[0x00, 0x41, 0x00, 0xE9, 0x20, 0xAC]);
        assert_eq!(&encode("😀")[..], &[0xD8, 0x3D, 0xDE, 0x00]);
        assert_eq!(unit_count("A😀€"), 4);
    }

    #[test]
    fn decodes_broken_input_with_replacement() {
        // Goal: lone surrogates, swapped pairs and odd lengths decode to U+FFFD, never panic.
        assert_eq!(decode(&[0xD8, 0x3D]), "\u{FFFD}");
        assert_eq!(decode(&[0xDE, 0x00, 0x00, 0x41]), "\u{FFFD}A");
        assert_eq!(decode(&[0xDE, 0x00, 0xD8, 0x3D]), "\u{FFFD}\u{FFFD}");
        assert_eq!(decode(&[0xD8, 0x3D, 0x00, 0x41]), "\u{FFFD}A");
        assert_eq!(decode(&[0x00, 0x41, 0x00]), "A\u{FFFD}");
        assert_eq!(decode(&[0x00]), "\u{FFFD}");
        assert_eq!(decode(&[]), "");
    }

    proptest! {
        #[test]
        fn any_unicode_round_trips(text in any::<String>()) {
            let encoded = encode(&text);
            prop_assert_eq!(encoded.len(), unit_count(&text) * 2);
            prop_assert_eq!(decode(&encoded), text);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
        }
    }
}
