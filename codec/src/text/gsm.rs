//! GSM 03.38 (3GPP TS 23.038 6.2.1) default alphabet with its basic extension table, and 7-bit packing.
//!
//! Septets are carried one per octet ("unpacked", the usual SMPP carriage of data_coding 0) or packed
//! eight into seven octets. The mapping is exact both ways: 0x09 is 'Ç' as the standard draws it, so
//! 'ç' is not representable (as in Android's table) and a text holding it goes out as UCS-2.

use bytes::{BufMut, Bytes, BytesMut};

use super::{Encoding, MESSAGE_PAYLOAD_OCTETS_MAX, TextError};

/// The escape septet that introduces an extension-table character.
pub const ESC: u8 = 0x1B;
/// Carriage return, which 23.038 6.1.2.3.1 uses to fill seven spare bits at the end of packed data.
pub const CR: u8 = 0x0D;
/// Fill bits before packed septets are fewer than one septet.
pub const FILL_BITS_MAX: u8 = 6;

/// The basic character set, indexed by septet. Index 0x1B is the escape; it never decodes through this
/// table, and the space stored there is what an escape followed by a second escape displays.
const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', ' ', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The basic-character-set extension table: (code after ESC, character).
pub const EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'), // form feed (page break)
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// Encoding of the 128 ASCII characters: 0 none, 0x100 | septet basic, 0x200 | code extension.
const ASCII_TO_GSM: [u16; 128] = ascii_table();

const fn ascii_table() -> [u16; 128] {
    let mut table = [0u16; 128];
    let mut septet = 0;
    while septet < BASIC.len() {
        let c = BASIC[septet] as u32;
        if c < 128 && septet != ESC as usize {
            table[c as usize] = 0x100 | septet as u16;
        }
        septet += 1;
    }
    let mut i = 0;
    while i < EXTENSION.len() {
        let (code, c) = EXTENSION[i];
        if (c as u32) < 128 {
            table[c as usize] = 0x200 | code as u16;
        }
        i += 1;
    }
    table
}

/// One character in GSM 7-bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GsmChar {
    /// A septet of the basic character set.
    Basic(u8),
    /// An extension-table code, sent as ESC then the code.
    Extended(u8),
}

impl GsmChar {
    /// Septets this character takes: 1, or 2 for an extension character.
    pub const fn septets(self) -> usize {
        match self {
            GsmChar::Basic(_) => 1,
            GsmChar::Extended(_) => 2,
        }
    }
}

/// The GSM encoding of `c`, or `None` if it is not in the default alphabet or its extension table.
#[inline]
pub fn encode_char(c: char) -> Option<GsmChar> {
    if let Some(&entry) = ASCII_TO_GSM.get(c as usize) {
        let code = (entry & 0x7F) as u8;
        return match entry >> 8 {
            1 => Some(GsmChar::Basic(code)),
            2 => Some(GsmChar::Extended(code)),
            _ => None,
        };
    }
    let septet = match c {
        '£' => 0x01,
        '¥' => 0x03,
        'è' => 0x04,
        'é' => 0x05,
        'ù' => 0x06,
        'ì' => 0x07,
        'ò' => 0x08,
        'Ç' => 0x09,
        'Ø' => 0x0B,
        'ø' => 0x0C,
        'Å' => 0x0E,
        'å' => 0x0F,
        'Δ' => 0x10,
        'Φ' => 0x12,
        'Γ' => 0x13,
        'Λ' => 0x14,
        'Ω' => 0x15,
        'Π' => 0x16,
        'Ψ' => 0x17,
        'Σ' => 0x18,
        'Θ' => 0x19,
        'Ξ' => 0x1A,
        'Æ' => 0x1C,
        'æ' => 0x1D,
        'ß' => 0x1E,
        'É' => 0x1F,
        '¤' => 0x24,
        '¡' => 0x40,
        'Ä' => 0x5B,
        'Ö' => 0x5C,
        'Ñ' => 0x5D,
        'Ü' => 0x5E,
        '§' => 0x5F,
        '¿' => 0x60,
        'ä' => 0x7B,
        'ö' => 0x7C,
        'ñ' => 0x7D,
        'ü' => 0x7E,
        'à' => 0x7F,
        '€' => return Some(GsmChar::Extended(0x65)),
        _ => return None,
    };
    Some(GsmChar::Basic(septet))
}

/// Septets `c` takes (1 or 2), or `None` if it is not representable.
#[inline]
pub fn char_septets(c: char) -> Option<usize> {
    encode_char(c).map(GsmChar::septets)
}

/// Septets `text` takes (extension characters count 2), or `None` if a character is not representable.
pub fn septet_count(text: &str) -> Option<usize> {
    text.chars().try_fold(0usize, |n, c| Some(n + char_septets(c)?))
}

/// Septets an IA5 (data_coding 1) octet becomes at the SMSC, which sends IA5 text as GSM 7-bit:
/// 2 for an extension character (`{ } [ ] \ ^ ~ |` and form feed, sent as ESC and a code), 1
/// for any other, one with no GSM code included (the SMSC puts a character of its own in its
/// place).
#[inline]
pub const fn ia5_septets(octet: u8) -> usize {
    if octet < 0x80 && ASCII_TO_GSM[octet as usize] & 0x200 != 0 { 2 } else { 1 }
}

/// Septets IA5 octets become at the SMSC (see [`ia5_septets`]).
pub fn ia5_septet_count(octets: &[u8]) -> usize {
    octets.iter().map(|&b| ia5_septets(b)).sum()
}

/// Whether every character of `text` is in the default alphabet or its extension table.
pub fn is_representable(text: &str) -> bool {
    text.chars().all(|c| encode_char(c).is_some())
}

/// Encodes `text` to unpacked septets, one per octet.
pub fn encode(text: &str) -> Result<Bytes, TextError> {
    let mut out = BytesMut::new();
    encode_into(text, &mut out)?;
    Ok(out.freeze())
}

/// Appends `text` as unpacked septets to `out`; on error `out` is left as it was.
pub fn encode_into(text: &str, out: &mut BytesMut) -> Result<(), TextError> {
    let start = out.len();
    out.reserve(text.len().min(MESSAGE_PAYLOAD_OCTETS_MAX));
    for (offset, c) in text.char_indices() {
        match encode_char(c) {
            Some(GsmChar::Basic(septet)) => out.put_u8(septet),
            Some(GsmChar::Extended(code)) => out.put_slice(&[ESC, code]),
            None => {
                out.truncate(start);
                return Err(TextError::NotRepresentable { ch: c, offset, encoding: Encoding::Gsm7 });
            }
        }
        let len = out.len() - start;
        if len > MESSAGE_PAYLOAD_OCTETS_MAX {
            out.truncate(start);
            return Err(TextError::TooLong { len, max: MESSAGE_PAYLOAD_OCTETS_MAX });
        }
    }
    Ok(())
}

/// Decodes unpacked septets (one per octet); never fails.
///
/// Per 23.038 6.2.1.1, an escape followed by a code the extension table does not define displays as the
/// basic character of that code (ESC 0x41 is 'A'), and ESC ESC (reserved for a further extension table)
/// displays as a space. A lone escape at the very end also decodes as a space. Octets over 0x7F are not
/// septets and decode as U+FFFD.
pub fn decode(septets: &[u8]) -> String {
    let mut out = String::with_capacity(septets.len());
    let mut iter = septets.iter();
    while let Some(&septet) = iter.next() {
        if septet == ESC {
            out.push(match iter.next() {
                Some(&code) => decode_escaped(code),
                None => ' ',
            });
        } else {
            out.push(basic(septet));
        }
    }
    out
}

#[inline]
fn basic(septet: u8) -> char {
    BASIC.get(usize::from(septet)).copied().unwrap_or(char::REPLACEMENT_CHARACTER)
}

fn decode_escaped(code: u8) -> char {
    match code {
        0x0A => '\u{0C}',
        0x14 => '^',
        0x28 => '{',
        0x29 => '}',
        0x2F => '\\',
        0x3C => '[',
        0x3D => '~',
        0x3E => ']',
        0x40 => '|',
        0x65 => '€',
        ESC => ' ',
        other => basic(other),
    }
}

/// Fill bits needed after a UDH of `udh_len` octets (UDHL included) so the text starts on a septet
/// boundary (23.040 9.2.3.24): 1 after the 6-octet concatenation UDH, 0 after the 7-octet one.
pub const fn fill_bits_for_udh(udh_len: usize) -> u8 {
    // 8 is 1 modulo 7, so udh_len * 8 % 7 == udh_len % 7, with no overflow.
    ((7 - udh_len % 7) % 7) as u8
}

/// Octets that `septets` septets take when packed after `fill_bits` fill bits (0 for no septets).
pub const fn packed_len(septets: usize, fill_bits: u8) -> usize {
    if septets == 0 { 0 } else { (fill_bits as usize + septets * 7).div_ceil(8) }
}

/// Whether packing `septets` after `fill_bits` fill bits adds a CR (23.038 6.1.2.3.1): the last
/// septet is a CR that ends exactly on an octet boundary. A receiver that counts septets from the
/// length drops such a final CR as padding, so the sender adds another (with one zero padding bit);
/// the receiver then shows CR CR, which 23.038 6.1.1 defines to mean the same as CR.
pub fn needs_cr_pad(septets: &[u8], fill_bits: u8) -> bool {
    septets.last() == Some(&CR) && (usize::from(fill_bits) + septets.len() * 7).is_multiple_of(8)
}

/// Septets [`pack`] writes for `septets` after `fill_bits` fill bits: one more than given when it
/// adds a CR (see [`needs_cr_pad`]).
pub fn packed_septets(septets: &[u8], fill_bits: u8) -> usize {
    septets.len() + usize::from(needs_cr_pad(septets, fill_bits))
}

/// Octets [`pack`] writes for `septets` after `fill_bits` fill bits, the CR it may add included.
pub fn packed_len_of(septets: &[u8], fill_bits: u8) -> usize {
    packed_len(packed_septets(septets, fill_bits), fill_bits)
}

/// Packs septets eight into seven octets, least significant bit first, after `fill_bits` zero bits.
///
/// When seven bits are left over in the last octet they hold CR rather than zeros (23.038 6.1.2.3.1),
/// so a receiver that counts septets from the length does not read a spurious '@'. When the last
/// septet is itself a CR ending on an octet boundary, another CR is added (see [`needs_cr_pad`]), so
/// that the receiver does not drop the wanted one as padding.
pub fn pack(septets: &[u8], fill_bits: u8) -> Result<Bytes, TextError> {
    let mut out = BytesMut::new();
    pack_into(septets, fill_bits, &mut out)?;
    Ok(out.freeze())
}

/// Appends the packed form of `septets` to `out` (see [`pack`]); on error `out` is untouched.
pub fn pack_into(septets: &[u8], fill_bits: u8, out: &mut BytesMut) -> Result<(), TextError> {
    if fill_bits > FILL_BITS_MAX {
        return Err(TextError::FillBits { fill_bits, max: FILL_BITS_MAX });
    }
    if let Some(offset) = septets.iter().position(|&s| s > 0x7F) {
        return Err(TextError::InvalidSeptet { offset, value: septets[offset] });
    }
    if septets.is_empty() {
        return Ok(());
    }
    let pad = needs_cr_pad(septets, fill_bits).then_some(&CR);
    out.reserve(packed_len_of(septets, fill_bits));
    let mut acc = 0u32;
    let mut bits = u32::from(fill_bits);
    for &septet in septets.iter().chain(pad) {
        acc |= u32::from(septet) << bits;
        bits += 7;
        if bits >= 8 {
            out.put_u8(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
    if bits > 0 {
        if bits == 1 {
            acc |= u32::from(CR) << 1;
        }
        out.put_u8(acc as u8);
    }
    Ok(())
}

/// Unpacks septets from packed octets that start with `fill_bits` fill bits.
///
/// With `septets: Some(n)` exactly `n` septets are read (an error if the octets hold fewer). With
/// `None` the count is what the octets hold; when that leaves no spare bit, the last septet may only
/// fill seven spare bits: it is dropped if it is CR, as 23.038 6.1.2.3.1 prescribes for padding. A
/// zero-padded '@' cannot be told from a real one and is kept. A wanted final CR that [`pack`]
/// followed with another (see [`needs_cr_pad`]) comes back as CR CR.
pub fn unpack(packed: &[u8], fill_bits: u8, septets: Option<usize>) -> Result<Vec<u8>, TextError> {
    if fill_bits > FILL_BITS_MAX {
        return Err(TextError::FillBits { fill_bits, max: FILL_BITS_MAX });
    }
    let fill = usize::from(fill_bits);
    let usable_bits = packed.len().saturating_mul(8).saturating_sub(fill);
    let available = usable_bits / 7;
    let count = match septets {
        Some(n) if n > available => return Err(TextError::SeptetsExceedData { septets: n, available }),
        Some(n) => n,
        None => available,
    };
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let bit = fill + i * 7;
        let (index, shift) = (bit / 8, bit % 8);
        let low = packed.get(index).copied().unwrap_or(0);
        let high = packed.get(index + 1).copied().unwrap_or(0);
        let pair = u16::from(low) | (u16::from(high) << 8);
        out.push(((pair >> shift) & 0x7F) as u8);
    }
    if septets.is_none() && usable_bits.is_multiple_of(7) && out.last() == Some(&CR) {
        out.pop();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn every_basic_septet_round_trips() {
        // Goal: each of the 127 basic septets decodes to its character and encodes back.
        for septet in 0u8..128 {
            if septet == ESC {
                continue;
            }
            let c = basic(septet);
            assert_eq!(encode_char(c), Some(GsmChar::Basic(septet)), "septet {septet:#04x} {c:?}");
            assert_eq!(decode(&[septet]), c.to_string());
        }
        assert_eq!(decode(b"\x00\x02\x11\x24\x40\x60"), "@$_¤¡¿");
    }

    #[test]
    fn every_extension_character_round_trips() {
        // Goal: each extension character encodes as ESC + code, counts 2 septets and decodes back.
        for (code, c) in EXTENSION {
            let encoded = encode(&c.to_string()).unwrap();
            assert_eq!(&encoded[..], &[ESC, code], "{c:?}");
            assert_eq!(char_septets(c), Some(2));
            assert_eq!(decode(&encoded), c.to_string());
        }
        let all: String = EXTENSION.iter().map(|&(_, c)| c).collect();
        assert_eq!(septet_count(&all), Some(20));
        assert_eq!(decode(&encode(&all).unwrap()), all);
    }

    #[test]
    fn encoder_agrees_with_tables_for_every_char() {
        // Goal: the encoder maps exactly the table characters, and each to the code that decodes back.
        let mut mapped = 0;
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            match encode_char(c) {
                Some(GsmChar::Basic(s)) => {
                    assert_eq!(decode(&[s]), c.to_string());
                    mapped += 1;
                }
                Some(GsmChar::Extended(code)) => {
                    assert_eq!(decode(&[ESC, code]), c.to_string());
                    mapped += 1;
                }
                None => {}
            }
        }
        assert_eq!(mapped, 127 + EXTENSION.len());
    }

    #[test]
    fn unrepresentable_characters_are_reported() {
        // Goal: characters outside GSM are refused with their offset, not replaced.
        for c in ['`', 'ç', '\u{1B}', '\t', 'Ā', '😀'] {
            assert_eq!(encode_char(c), None, "{c:?}");
        }
        assert_eq!(septet_count("ab`"), None);
        assert_eq!(
            encode("añ`"),
            Err(TextError::NotRepresentable { ch: '`', offset: 3, encoding: Encoding::Gsm7 })
        );
    }

    #[test]
    fn unknown_escapes_decode_as_basic_character() {
        // Goal: 23.038 fallbacks: ESC + undefined code shows the basic char, ESC ESC and a lone ESC a space.
        assert_eq!(decode(&[ESC, 0x41]), "A");
        assert_eq!(decode(&[ESC, 0x00]), "@");
        assert_eq!(decode(&[ESC, ESC, 0x41]), " A");
        assert_eq!(decode(&[0x41, ESC]), "A ");
        assert_eq!(decode(&[0x80, 0xFF, ESC, 0x90]), "\u{FFFD}\u{FFFD}\u{FFFD}");
    }

    #[test]
    fn septet_counts() {
        // Goal: extension characters count two septets.
        assert_eq!(septet_count(""), Some(0));
        assert_eq!(septet_count("hello"), Some(5));
        assert_eq!(septet_count("€[]"), Some(6));
        assert_eq!(septet_count("ΔΩ"), Some(2));
    }

    #[test]
    fn packs_known_vectors() {
        // Goal: packing matches published 23.038 vectors.
        let hello = encode("hellohello").unwrap();
        assert_eq!(&pack(&hello, 0).unwrap()[..], &hex("e8329bfd4697d9ec37")[..]);
        // 8 septets fill 7 octets exactly.
        assert_eq!(&pack(&encode("12345678").unwrap(), 0).unwrap()[..], &hex("31d98c56b3dd70")[..]);
        // 7 septets leave 7 spare bits: they carry CR (0x0D << 1), not '@'.
        assert_eq!(&pack(&encode("1234567").unwrap(), 0).unwrap()[..], &hex("31d98c56b3dd1a")[..]);
        assert_eq!(&pack(&encode("123456789").unwrap(), 0).unwrap()[..], &hex("31d98c56b3dd7039")[..]);
        assert!(pack(&[], 3).unwrap().is_empty());
    }

    #[test]
    fn unpacks_boundary_lengths() {
        // Goal: 7, 8 and 9 septets come back exactly, with and without a given count.
        for text in ["1234567", "12345678", "123456789", "hellohello", "", "a"] {
            let septets = encode(text).unwrap();
            for fill in 0..=FILL_BITS_MAX {
                let packed = pack(&septets, fill).unwrap();
                assert_eq!(packed.len(), packed_len(septets.len(), fill));
                assert_eq!(unpack(&packed, fill, Some(septets.len())).unwrap(), &septets[..]);
                assert_eq!(unpack(&packed, fill, None).unwrap(), &septets[..], "{text:?} fill {fill}");
            }
        }
        // Zero padding (as some senders do) shows as a trailing '@' when the count is unknown.
        assert_eq!(decode(&unpack(&hex("31d98c56b3dd00"), 0, None).unwrap()), "1234567@");
        assert_eq!(unpack(&hex("31d98c56b3dd00"), 0, Some(7)).unwrap(), b"1234567");
    }

    #[test]
    fn a_final_cr_on_an_octet_boundary_is_followed_by_another() {
        // Goal: 23.038 6.1.2.3.1: a wanted CR ending exactly on an octet boundary reads as the CR
        // that pads seven spare bits, so the sender adds another; the receiver keeps CR CR.
        // "1234567\r" used to pack like "1234567" (31d98c56b3dd1a) and lose its CR.
        let septets = encode("1234567\r").unwrap();
        assert!(needs_cr_pad(&septets, 0));
        let packed = pack(&septets, 0).unwrap();
        assert_eq!(&packed[..], &hex("31d98c56b3dd1a0d")[..]);
        assert_eq!(packed.len(), packed_len_of(&septets, 0));
        assert_eq!(unpack(&packed, 0, Some(8)).unwrap(), &septets[..]);
        assert_eq!(decode(&unpack(&packed, 0, None).unwrap()), "1234567\r\r");
        assert_ne!(&packed[..], &pack(&encode("1234567").unwrap(), 0).unwrap()[..]);
        // Every length and fill: a final CR survives unpacking without a count, doubled exactly
        // when it ends on an octet boundary; otherwise it comes back as it was.
        for fill in 0..=FILL_BITS_MAX {
            for n in 1..=40usize {
                let mut septets = vec![0x41; n - 1];
                septets.push(CR);
                let boundary = (usize::from(fill) + n * 7) % 8 == 0;
                assert_eq!(needs_cr_pad(&septets, fill), boundary);
                let packed = pack(&septets, fill).unwrap();
                assert_eq!(packed.len(), packed_len(n + usize::from(boundary), fill), "n {n} fill {fill}");
                assert_eq!(unpack(&packed, fill, Some(n)).unwrap(), septets);
                let mut want = septets.clone();
                if boundary {
                    want.push(CR);
                }
                assert_eq!(unpack(&packed, fill, None).unwrap(), want, "n {n} fill {fill}");
            }
        }
        // A CR that is not last, or not on a boundary, adds nothing.
        assert!(!needs_cr_pad(&encode("123456\r8").unwrap(), 0));
        assert!(!needs_cr_pad(&encode("123456\r").unwrap(), 0));
        assert!(!needs_cr_pad(&[], 0));
    }

    #[test]
    fn fill_bits_follow_udh_length() {
        // Goal: the text after a UDH starts on a septet boundary.
        assert_eq!(fill_bits_for_udh(0), 0);
        assert_eq!(fill_bits_for_udh(6), 1);
        assert_eq!(fill_bits_for_udh(7), 0);
        assert_eq!(fill_bits_for_udh(12), 2);
        for udh in 0..140 {
            assert_eq!((udh * 8 + usize::from(fill_bits_for_udh(udh))) % 7, 0);
        }
        // After a 6-octet UDH, "hello" shifted by one fill bit.
        let packed = pack(&encode("hello").unwrap(), 1).unwrap();
        assert_eq!(&packed[..], &hex("d06536fb0d")[..]);
    }

    #[test]
    fn pack_and_unpack_refuse_bad_input() {
        // Goal: invalid septets, fill bits and counts are errors, not panics.
        assert_eq!(pack(&[0x41, 0x80], 0), Err(TextError::InvalidSeptet { offset: 1, value: 0x80 }));
        assert_eq!(pack(b"a", 7), Err(TextError::FillBits { fill_bits: 7, max: FILL_BITS_MAX }));
        assert_eq!(unpack(b"a", 7, None), Err(TextError::FillBits { fill_bits: 7, max: FILL_BITS_MAX }));
        assert_eq!(
            unpack(&[0xFF; 7], 0, Some(9)),
            Err(TextError::SeptetsExceedData { septets: 9, available: 8 })
        );
        assert_eq!(unpack(&[], 6, None).unwrap(), b"");
        assert_eq!(unpack(&[0xFF], 6, None).unwrap(), b"");
    }

    fn gsm_string() -> impl Strategy<Value = String> {
        let chars: Vec<char> = BASIC
            .iter()
            .enumerate()
            .filter(|&(s, _)| s != usize::from(ESC))
            .map(|(_, &c)| c)
            .chain(EXTENSION.iter().map(|&(_, c)| c))
            .collect();
        proptest::collection::vec(proptest::sample::select(chars), 0..400)
            .prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        #[test]
        fn gsm_text_round_trips(text in gsm_string(), final_cr in any::<bool>()) {
            // A final CR one time in two: with the 7 fill bit counts, some length ends on an octet
            // boundary (the case 23.038 6.1.2.3.1 pads).
            let text = if final_cr { text + "\r" } else { text };
            let septets = encode(&text).unwrap();
            prop_assert_eq!(septets.len(), septet_count(&text).unwrap());
            prop_assert_eq!(decode(&septets), text.clone());
            for fill in 0..=FILL_BITS_MAX {
                let packed = pack(&septets, fill).unwrap();
                prop_assert_eq!(packed.len(), packed_len_of(&septets, fill));
                prop_assert_eq!(unpack(&packed, fill, Some(septets.len())).unwrap(), septets.to_vec());
                // Without a count, the text comes back whole, a final CR on an octet boundary
                // doubled (23.038 6.1.2.3.1), never lost.
                let mut want = septets.to_vec();
                if needs_cr_pad(&septets, fill) {
                    want.push(CR);
                }
                prop_assert_eq!(unpack(&packed, fill, None).unwrap(), want);
            }
        }

        #[test]
        fn decode_and_unpack_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), fill in 0u8..10) {
            let _ = decode(&bytes);
            let _ = unpack(&bytes, fill, None);
            let _ = unpack(&bytes, fill, Some(bytes.len()));
        }
    }
}
