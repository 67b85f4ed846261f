//! IA5/ASCII (data_coding 1) and ISO-8859-1 Latin-1 (data_coding 3): one octet per character.

use bytes::{BufMut, BytesMut};

use super::{Encoding, MESSAGE_PAYLOAD_OCTETS_MAX, TextError};

/// Whether every character of `text` is in ISO-8859-1 (U+0000..=U+00FF).
pub fn is_latin1(text: &str) -> bool {
    text.chars().all(|c| u32::from(c) <= 0xFF)
}

/// Appends `text` as ASCII to `out`; on error `out` is left as it was.
pub fn encode_ascii_into(text: &str, out: &mut BytesMut) -> Result<(), TextError> {
    if let Some((offset, ch)) = text.char_indices().find(|(_, c)| !c.is_ascii()) {
        return Err(TextError::NotRepresentable { ch, offset, encoding: Encoding::Ascii });
    }
    // ASCII text is its own encoding: one octet per character.
    if text.len() > MESSAGE_PAYLOAD_OCTETS_MAX {
        return Err(TextError::TooLong { len: text.len(), max: MESSAGE_PAYLOAD_OCTETS_MAX });
    }
    out.put_slice(text.as_bytes());
    Ok(())
}

/// Appends `text` as Latin-1 to `out`; on error `out` is left as it was.
pub fn encode_latin1_into(text: &str, out: &mut BytesMut) -> Result<(), TextError> {
    let start = out.len();
    out.reserve(text.len().min(MESSAGE_PAYLOAD_OCTETS_MAX));
    for (offset, ch) in text.char_indices() {
        let Ok(octet) = u8::try_from(ch) else {
            out.truncate(start);
            return Err(TextError::NotRepresentable { ch, offset, encoding: Encoding::Latin1 });
        };
        if out.len() - start == MESSAGE_PAYLOAD_OCTETS_MAX {
            out.truncate(start);
            return Err(TextError::TooLong {
                len: MESSAGE_PAYLOAD_OCTETS_MAX + 1,
                max: MESSAGE_PAYLOAD_OCTETS_MAX,
            });
        }
        out.put_u8(octet);
    }
    Ok(())
}

/// Decodes ASCII; octets over 0x7F become U+FFFD.
pub fn decode_ascii(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| if b.is_ascii() { char::from(b) } else { char::REPLACEMENT_CHARACTER }).collect()
}

/// Decodes Latin-1: each octet is the character of the same code point, so nothing is lost.
pub fn decode_latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ascii_and_latin1_round_trip() {
        // Goal: each encoding keeps its own range and refuses the rest.
        let mut out = BytesMut::new();
        encode_ascii_into("Hi {x}~", &mut out).unwrap();
        assert_eq!(&out[..], b"Hi {x}~");
        assert_eq!(decode_ascii(&out), "Hi {x}~");
        assert_eq!(
            encode_ascii_into("é", &mut out),
            Err(TextError::NotRepresentable { ch: 'é', offset: 0, encoding: Encoding::Ascii })
        );
        let mut out = BytesMut::new();
        encode_latin1_into("çà ÿ\u{80}", &mut out).unwrap();
        assert_eq!(&out[..], &[0xE7, 0xE0, 0x20, 0xFF, 0x80]);
        assert_eq!(decode_latin1(&out), "çà ÿ\u{80}");
        assert_eq!(
            encode_latin1_into("aĀ", &mut out),
            Err(TextError::NotRepresentable { ch: 'Ā', offset: 1, encoding: Encoding::Latin1 })
        );
        assert_eq!(out.len(), 5);
        assert_eq!(decode_ascii(&[0x41, 0xC3]), "A\u{FFFD}");
    }

    proptest! {
        #[test]
        fn latin1_round_trips(text in "[\u{0}-\u{ff}]{0,300}") {
            let mut out = BytesMut::new();
            encode_latin1_into(&text, &mut out).unwrap();
            prop_assert_eq!(out.len(), text.chars().count());
            prop_assert_eq!(decode_latin1(&out), text);
        }
    }
}
