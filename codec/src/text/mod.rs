//! Text encodings and concatenation for SMS short messages.
//!
//! This module turns a `&str` into the octets that go in `short_message` or `message_payload` for a
//! given `data_coding` (GSM 03.38 7-bit, IA5/ASCII, Latin-1, UCS-2) and back; counts and splits long
//! texts into concatenated parts (UDH with IEI 0x00 or 0x08, SAR TLVs, or one `message_payload`);
//! parses the UDH of incoming parts; and reassembles them with a bounded [`Reassembler`]. It owns no
//! socket and reads no clock: the current time is a `now_ms` parameter. It never panics on any input:
//! undecodable octets become U+FFFD, malformed headers are a [`TextError`].

pub mod gsm;
pub mod latin;
mod reassembly;
mod segment;
pub mod ucs2;
mod udh;

use bytes::{Bytes, BytesMut};

pub use reassembly::{
    Progress, Pushed, REASSEMBLY_PART_OCTETS_MAX, REASSEMBLY_PENDING_CEILING, REASSEMBLY_TIMEOUT_CEILING_MS,
    Reassembler,
};
pub use segment::{
    Concat, Form, Part, RefWidth, count_encoded_segments, count_encoded_segments_after_header,
    count_segments, part_capacity, split, split_encoded,
};
pub use udh::{Ports, UdhConcat, UserData, parse_udh};

/// TP-User-Data octets in one SMS (3GPP TS 23.040 9.2.3.24): the UDH and the text share them.
pub const SMS_USER_DATA_OCTETS_MAX: usize = 140;
/// GSM 7-bit septets in one SMS without a UDH: 140 octets of 8 bits hold 160 septets of 7.
pub const SMS_USER_DATA_SEPTETS_MAX: usize = SMS_USER_DATA_OCTETS_MAX * 8 / 7;
/// Parts in one concatenated message: total and seqnum are one octet in the UDH and in SAR TLVs.
pub const PARTS_MAX: usize = 255;
/// Octets in a `message_payload` TLV (its length field is 16 bits); also the bound on any encoded text.
pub const MESSAGE_PAYLOAD_OCTETS_MAX: usize = 65_535;
/// Octets in `short_message` (SMPP 3.4 5.2.21: sm_length is 0 to 254).
pub const SHORT_MESSAGE_OCTETS_MAX: usize = 254;
/// The esm_class bit (UDHI) that says `short_message` starts with a UDH.
pub const ESM_CLASS_UDHI: u8 = 0x40;

// The longest part we build (unpacked GSM after a 16-bit-reference UDH, or a lone 160-septet message)
// must fit in short_message, and 255 full parts of any encoding must fit in one message_payload.
const _: () = assert!(SMS_USER_DATA_SEPTETS_MAX == 160);
const _: () = assert!(SMS_USER_DATA_SEPTETS_MAX <= SHORT_MESSAGE_OCTETS_MAX);
const _: () = assert!(7 + SMS_USER_DATA_SEPTETS_MAX <= SHORT_MESSAGE_OCTETS_MAX);
const _: () = assert!(PARTS_MAX * SMS_USER_DATA_SEPTETS_MAX <= MESSAGE_PAYLOAD_OCTETS_MAX);
const _: () = assert!(PARTS_MAX <= u8::MAX as usize);

/// A text encoding and its SMPP `data_coding` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// GSM 03.38 default alphabet, one septet per octet (the usual SMPP carriage of data_coding 0).
    Gsm7,
    /// GSM 03.38 default alphabet packed eight septets into seven octets (data_coding 0).
    Gsm7Packed,
    /// IA5 / ASCII (data_coding 1), one octet per character.
    Ascii,
    /// ISO-8859-1 (data_coding 3), one octet per character.
    Latin1,
    /// UCS-2 as UTF-16BE (data_coding 8): characters outside the BMP become surrogate pairs.
    Ucs2,
}

impl Encoding {
    /// The SMPP `data_coding` value for this encoding.
    pub const fn data_coding(self) -> u8 {
        match self {
            Encoding::Gsm7 | Encoding::Gsm7Packed => 0x00,
            Encoding::Ascii => 0x01,
            Encoding::Latin1 => 0x03,
            Encoding::Ucs2 => 0x08,
        }
    }

    /// The text encoding a `data_coding` value names, or `None` for binary and unsupported ones.
    ///
    /// 0 (SMSC default alphabet) is taken as GSM 7-bit unpacked. Besides the SMPP values 0, 1, 3 and 8,
    /// the GSM 03.38 coding groups SMPP refers to are understood: 0xC0..=0xDF (message waiting, GSM
    /// alphabet), 0xE0..=0xEF (message waiting, UCS-2) and 0xF0..=0xFF (bit 2 clear: GSM alphabet, set:
    /// 8-bit data, so `None`).
    pub const fn from_data_coding(data_coding: u8) -> Option<Encoding> {
        match data_coding {
            0x00 | 0xC0..=0xDF => Some(Encoding::Gsm7),
            0x01 => Some(Encoding::Ascii),
            0x03 => Some(Encoding::Latin1),
            0x08 | 0xE0..=0xEF => Some(Encoding::Ucs2),
            0xF0..=0xFF if data_coding & 0x04 == 0 => Some(Encoding::Gsm7),
            _ => None,
        }
    }
}

/// How the user data of a `data_coding` value is counted and checked: what [`alphabet`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alphabet {
    /// GSM 03.38 default alphabet septets carried one to an octet: 160 to a segment, 153 with a
    /// concatenation header.
    Septets,
    /// IA5 / ASCII octets (data_coding 1), which the SMSC sends as GSM 7-bit: counted in the
    /// septets they become ([`gsm::ia5_septets`]: `{` is ESC and a code, two), 160 to a segment,
    /// 153 with a concatenation header.
    Ia5,
    /// Octets: 8-bit data and the one-octet (or variable-width, counted by octets) character sets:
    /// 140 to a segment, 134 with a concatenation header.
    Octets,
    /// UCS-2 (UTF-16BE) units of two octets: 70 to a segment, 67 with a concatenation header; an
    /// odd number of octets is not UCS-2.
    Ucs2,
}

/// What a `data_coding` value says of its user data, or `None` for a reserved value.
///
/// 0x00..=0x0E are SMPP 3.4's table (5.2.19), where 0x0B and 0x0C are reserved. From 0x10 on,
/// the GSM 03.38 coding groups that handsets and SMSCs act on: general data coding 0x10..=0x7F
/// (the alphabet in bits 3-2, where 11 is reserved; compressed text, bit 5, is octets), the
/// reserved groups 0x80..=0xBF, message waiting 0xC0..=0xDF (GSM alphabet) and 0xE0..=0xEF
/// (UCS-2), and data coding / message class 0xF0..=0xFF (bit 2: GSM alphabet or 8-bit data).
/// SMPP 3.4 calls everything from 0x0F to 0xBF reserved, but flash messages (0x10, 0x18) and the
/// other general-group values are in daily use, so they are taken as GSM defines them.
pub const fn alphabet(data_coding: u8) -> Option<Alphabet> {
    match data_coding {
        0x00 | 0xC0..=0xDF => Some(Alphabet::Septets),
        0x01 => Some(Alphabet::Ia5),
        0x08 | 0xE0..=0xEF => Some(Alphabet::Ucs2),
        0x02..=0x07 | 0x09 | 0x0A | 0x0D | 0x0E => Some(Alphabet::Octets),
        0x0B | 0x0C | 0x0F | 0x80..=0xBF => None,
        0x10..=0x7F => {
            if data_coding & 0x20 != 0 {
                // Compressed (23.042): octets whatever the alphabet, unless that is reserved.
                if data_coding & 0x0C == 0x0C { None } else { Some(Alphabet::Octets) }
            } else {
                match data_coding & 0x0C {
                    0x00 => Some(Alphabet::Septets),
                    0x04 => Some(Alphabet::Octets),
                    0x08 => Some(Alphabet::Ucs2),
                    _ => None,
                }
            }
        }
        0xF0..=0xFF => {
            if data_coding & 0x04 == 0 {
                Some(Alphabet::Septets)
            } else {
                Some(Alphabet::Octets)
            }
        }
    }
}

/// Everything that can go wrong in this module; each variant carries the bound that was broken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TextError {
    /// A character has no code in the chosen encoding.
    #[error("{ch:?} at byte {offset} is not representable in {encoding:?}")]
    NotRepresentable { ch: char, offset: usize, encoding: Encoding },
    /// The encoded text is longer than any SMPP field can carry.
    #[error("encoded text is over {max} octets (at least {len})")]
    TooLong { len: usize, max: usize },
    /// The text needs more parts than a concatenated message can have.
    #[error("text needs {parts} parts, more than {max}")]
    TooManyParts { parts: usize, max: usize },
    /// UCS-2 octets must come in pairs.
    #[error("UCS-2 data has odd length {len}")]
    OddLength { len: usize },
    /// A septet to pack has its eighth bit set.
    #[error("septet {value:#04x} at {offset} is over 0x7f")]
    InvalidSeptet { offset: usize, value: u8 },
    /// Fill bits before packed septets are 0 to 6.
    #[error("{fill_bits} fill bits, more than {max}")]
    FillBits { fill_bits: u8, max: u8 },
    /// More septets were asked for than the packed octets hold.
    #[error("{septets} septets asked, only {available} in the data")]
    SeptetsExceedData { septets: usize, available: usize },
    /// The UDH length octet (UDHL) points past the end of the message.
    #[error("UDH needs {need} octets, message has {len}")]
    UdhTruncated { need: usize, len: usize },
    /// An information element runs past the end of the UDH.
    #[error("information element at UDH offset {offset} overruns the header")]
    IeTruncated { offset: usize },
    /// A concatenation or port information element has the wrong length.
    #[error("IE {iei:#04x} has length {len}, expected {expected}")]
    IeLength { iei: u8, len: u8, expected: u8 },
    /// total is 0, or seq is 0 or over total.
    #[error("concatenation seq {seq} of total {total} is invalid")]
    ConcatInvalid { total: u8, seq: u8 },
    /// A part of a message being reassembled disagrees on the number of parts. (The
    /// [`Reassembler`] itself no longer returns it: such a part starts a new message under a
    /// reused reference.)
    #[error("part says {got} parts, earlier parts said {expected}")]
    TotalMismatch { expected: u8, got: u8 },
    /// A part handed to the reassembler is longer than a short_message.
    #[error("part of {len} octets, more than {max}")]
    PartTooLong { len: usize, max: usize },
    /// A configured limit is outside its hard bounds.
    #[error("{name} = {value} outside {min}..={max}")]
    LimitOutOfRange { name: &'static str, value: u64, min: u64, max: u64 },
}

/// Picks GSM 7-bit (unpacked) if every character is in the GSM 03.38 default alphabet or its extension
/// table, else UCS-2.
///
/// Latin-1 is never chosen here although it would hold more text than UCS-2: many handsets, SMSCs and
/// operators mishandle data_coding 3 (transcode it lossily, or treat it as binary), so the safe choice
/// after GSM is UCS-2. Use [`choose_encoding_allow_latin1`] for routes known to carry Latin-1 well.
pub fn choose_encoding(text: &str) -> Encoding {
    if gsm::is_representable(text) { Encoding::Gsm7 } else { Encoding::Ucs2 }
}

/// Like [`choose_encoding`], but picks Latin-1 before UCS-2 when every character is in ISO-8859-1.
pub fn choose_encoding_allow_latin1(text: &str) -> Encoding {
    if gsm::is_representable(text) {
        Encoding::Gsm7
    } else if latin::is_latin1(text) {
        Encoding::Latin1
    } else {
        Encoding::Ucs2
    }
}

/// Encodes `text` in the carriage form of `encoding` (packed GSM starts with no fill bits).
pub fn encode(text: &str, encoding: Encoding) -> Result<Bytes, TextError> {
    let mut out = BytesMut::new();
    encode_into(text, encoding, &mut out)?;
    Ok(out.freeze())
}

/// Appends `text` encoded with `encoding` to `out`; on error `out` is left as it was.
pub fn encode_into(text: &str, encoding: Encoding, out: &mut BytesMut) -> Result<(), TextError> {
    match encoding {
        Encoding::Gsm7 => gsm::encode_into(text, out),
        Encoding::Gsm7Packed => {
            let mut septets = BytesMut::new();
            gsm::encode_into(text, &mut septets)?;
            gsm::pack_into(&septets, 0, out)
        }
        Encoding::Ascii => latin::encode_ascii_into(text, out),
        Encoding::Latin1 => latin::encode_latin1_into(text, out),
        Encoding::Ucs2 => ucs2::encode_into(text, out),
    }
}

/// Decodes octets carried with `encoding`; never fails, undecodable octets become U+FFFD.
///
/// For [`Encoding::Gsm7Packed`] the septet count is taken from the length, dropping a trailing CR
/// that only fills seven spare bits (see [`gsm::unpack`]).
pub fn decode_as(encoding: Encoding, bytes: &[u8]) -> String {
    match encoding {
        Encoding::Gsm7 => gsm::decode(bytes),
        Encoding::Gsm7Packed => match gsm::unpack(bytes, 0, None) {
            Ok(septets) => gsm::decode(&septets),
            // Unreachable with 0 fill bits and no count, but never panic.
            Err(_) => latin::decode_latin1(bytes),
        },
        Encoding::Ascii => latin::decode_ascii(bytes),
        Encoding::Latin1 => latin::decode_latin1(bytes),
        Encoding::Ucs2 => ucs2::decode(bytes),
    }
}

/// Decodes a `short_message` / `message_payload` body (without its UDH) for display or logging.
///
/// Text codings go through [`Encoding::from_data_coding`] (0 is GSM unpacked), and GSM 03.38's
/// coding groups (0x10 and above) through their [`alphabet`]. The rest are lossy but never fail: 8-bit binary (2, 4, and 0xF4..=0xF7) becomes lowercase hex, since it is usually not
/// text (WAP push, SIM data) and hex keeps every octet visible; anything else (JIS, Cyrillic, Hebrew,
/// KS C 5601, reserved values) is read as Latin-1, which maps each octet to one character and so
/// loses nothing, although non-Latin text will look wrong.
pub fn decode(data_coding: u8, bytes: &[u8]) -> String {
    match Encoding::from_data_coding(data_coding) {
        Some(encoding) => decode_as(encoding, bytes),
        None if matches!(data_coding, 0x02 | 0x04 | 0xF4..=0xF7) => hex(bytes),
        // GSM 03.38's coding groups (flash, message waiting, message class): their alphabet.
        None if data_coding >= 0x10 => match alphabet(data_coding) {
            Some(Alphabet::Septets) => gsm::decode(bytes),
            Some(Alphabet::Ia5) => latin::decode_ascii(bytes),
            Some(Alphabet::Ucs2) => ucs2::decode(bytes),
            // 8-bit data or compressed: not text.
            Some(Alphabet::Octets) => hex(bytes),
            None => latin::decode_latin1(bytes),
        },
        None => latin::decode_latin1(bytes),
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0F)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabet_follows_smpp_for_its_table_and_gsm_above_it() {
        // Goal: the SMPP 3.4 values, the GSM 03.38 groups customers use (flash, message
        // waiting, message class) and the reserved values are told apart.
        assert_eq!(alphabet(0x00), Some(Alphabet::Septets));
        assert_eq!(alphabet(0x01), Some(Alphabet::Ia5));
        assert_eq!(alphabet(0x03), Some(Alphabet::Octets));
        assert_eq!(alphabet(0x04), Some(Alphabet::Octets));
        assert_eq!(alphabet(0x08), Some(Alphabet::Ucs2));
        assert_eq!(alphabet(0x0E), Some(Alphabet::Octets));
        for reserved in [0x0B, 0x0C, 0x0F, 0x1C, 0x3C, 0x4C, 0x80, 0x9F, 0xBF] {
            assert_eq!(alphabet(reserved), None, "{reserved:#04x}");
        }
        assert_eq!(alphabet(0x10), Some(Alphabet::Septets), "flash, GSM alphabet");
        assert_eq!(alphabet(0x18), Some(Alphabet::Ucs2), "flash, UCS-2");
        assert_eq!(alphabet(0x14), Some(Alphabet::Octets));
        assert_eq!(alphabet(0x38), Some(Alphabet::Octets), "compressed UCS-2 is octets");
        assert_eq!(alphabet(0x48), Some(Alphabet::Ucs2), "marked for deletion, UCS-2");
        assert_eq!(alphabet(0xC8), Some(Alphabet::Septets));
        assert_eq!(alphabet(0xE8), Some(Alphabet::Ucs2));
        assert_eq!(alphabet(0xF0), Some(Alphabet::Septets));
        assert_eq!(alphabet(0xF4), Some(Alphabet::Octets));
        // Every text encoding's own value agrees with it.
        for (e, a) in [(Encoding::Gsm7, Alphabet::Septets), (Encoding::Ascii, Alphabet::Ia5)]
            .into_iter()
            .chain([(Encoding::Latin1, Alphabet::Octets), (Encoding::Ucs2, Alphabet::Ucs2)])
        {
            assert_eq!(alphabet(e.data_coding()), Some(a), "{e:?}");
        }
    }

    #[test]
    fn data_coding_values_match_smpp() {
        // Goal: each encoding reports the SMPP 3.4 data_coding value and maps back.
        assert_eq!(Encoding::Gsm7.data_coding(), 0);
        assert_eq!(Encoding::Gsm7Packed.data_coding(), 0);
        assert_eq!(Encoding::Ascii.data_coding(), 1);
        assert_eq!(Encoding::Latin1.data_coding(), 3);
        assert_eq!(Encoding::Ucs2.data_coding(), 8);
        for e in [Encoding::Gsm7, Encoding::Ascii, Encoding::Latin1, Encoding::Ucs2] {
            assert_eq!(Encoding::from_data_coding(e.data_coding()), Some(e));
        }
        assert_eq!(Encoding::from_data_coding(0x04), None);
        assert_eq!(Encoding::from_data_coding(0xF0), Some(Encoding::Gsm7));
        assert_eq!(Encoding::from_data_coding(0xF5), None);
        assert_eq!(Encoding::from_data_coding(0xE3), Some(Encoding::Ucs2));
    }

    #[test]
    fn choose_prefers_gsm_then_ucs2() {
        // Goal: GSM when it fits, UCS-2 otherwise, Latin-1 only on request.
        assert_eq!(choose_encoding("Hello {world} €5"), Encoding::Gsm7);
        assert_eq!(choose_encoding("ça va"), Encoding::Ucs2);
        assert_eq!(choose_encoding("Привет"), Encoding::Ucs2);
        assert_eq!(choose_encoding(""), Encoding::Gsm7);
        assert_eq!(choose_encoding_allow_latin1("ça va"), Encoding::Latin1);
        assert_eq!(choose_encoding_allow_latin1("Hello"), Encoding::Gsm7);
        assert_eq!(choose_encoding_allow_latin1("ça € va"), Encoding::Ucs2);
    }

    #[test]
    fn decode_covers_text_and_fallbacks() {
        // Goal: the convenience decoder handles each data_coding without failing.
        assert_eq!(decode(0, &[0x00, 0x1B, 0x65, 0x02]), "@€$");
        assert_eq!(decode(1, b"plain"), "plain");
        assert_eq!(decode(3, &[0x63, 0xE9]), "cé");
        assert_eq!(decode(8, &[0x04, 0x1F, 0xD8, 0x3D, 0xDE, 0x00]), "П😀");
        assert_eq!(decode(4, &[0x0A, 0xFF]), "0aff");
        assert_eq!(decode(0xF6, &[0x01]), "01");
        assert_eq!(decode(6, &[0x41, 0xE9]), "Aé");
        // GSM 03.38's coding groups: flash UCS-2, flash GSM, message class 8-bit data.
        assert_eq!(decode(0x18, &[0x04, 0x1F]), "П");
        assert_eq!(decode(0x10, &[0x00, 0x1B, 0x65]), "@€");
        assert_eq!(decode(0x14, &[0x0A]), "0a");
        let packed = encode("hellohello", Encoding::Gsm7Packed).unwrap();
        assert_eq!(decode_as(Encoding::Gsm7Packed, &packed), "hellohello");
    }

    #[test]
    fn encode_dispatches_and_reports_unrepresentable() {
        // Goal: encode errors name the character, its offset and the encoding.
        assert_eq!(&encode("A€", Encoding::Gsm7).unwrap()[..], &[0x41, 0x1B, 0x65]);
        assert_eq!(&encode("é", Encoding::Latin1).unwrap()[..], &[0xE9]);
        assert_eq!(&encode("é", Encoding::Ucs2).unwrap()[..], &[0x00, 0xE9]);
        assert_eq!(
            encode("ab€", Encoding::Ascii),
            Err(TextError::NotRepresentable { ch: '€', offset: 2, encoding: Encoding::Ascii })
        );
        assert_eq!(
            encode("a`", Encoding::Gsm7Packed),
            Err(TextError::NotRepresentable { ch: '`', offset: 1, encoding: Encoding::Gsm7 })
        );
        let mut out = BytesMut::from(&b"keep"[..]);
        assert!(encode_into("x\u{1F600}", Encoding::Latin1, &mut out).is_err());
        assert_eq!(&out[..], b"keep");
    }

    #[test]
    fn encode_refuses_text_over_payload_bound() {
        // Goal: no encoder builds more than MESSAGE_PAYLOAD_OCTETS_MAX octets.
        let text = "a".repeat(MESSAGE_PAYLOAD_OCTETS_MAX + 1);
        for e in [Encoding::Gsm7, Encoding::Gsm7Packed, Encoding::Ascii, Encoding::Latin1, Encoding::Ucs2] {
            assert!(matches!(encode(&text, e), Err(TextError::TooLong { .. })), "{e:?}");
        }
        assert!(encode(&"a".repeat(MESSAGE_PAYLOAD_OCTETS_MAX), Encoding::Gsm7).is_ok());
    }
}
