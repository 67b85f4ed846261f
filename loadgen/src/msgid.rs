//! Message ids: the simulator's id styles, and the load generator's normalised id keys.
//!
//! Real vendors differ: some give 16 hex digits, some decimal, some UUIDs, and many change the
//! case (or the style) between the submit_sm_resp and the receipt. The load generator matches on an
//! [`IdKey`], which ignores ASCII case and stores hex-like ids as integers (no allocation).

use std::fmt;

/// Longest id formatted here: a UUID.
pub const ID_TEXT_MAX: usize = 36;

/// How the simulator writes its message ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IdFormat {
    /// 16 lowercase hex digits, e.g. `0a1b2c3d4e5f6071`.
    #[default]
    Hex,
    /// Decimal, up to 20 digits, e.g. `1234567890123`.
    Decimal,
    /// UUID style, 8-4-4-4-12 lowercase hex.
    Uuid,
}

impl std::str::FromStr for IdFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "hex" => Ok(IdFormat::Hex),
            "decimal" | "dec" => Ok(IdFormat::Decimal),
            "uuid" => Ok(IdFormat::Uuid),
            other => Err(format!("unknown id format {other:?} (hex, decimal, uuid)")),
        }
    }
}

impl fmt::Display for IdFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdFormat::Hex => "hex",
            IdFormat::Decimal => "decimal",
            IdFormat::Uuid => "uuid",
        })
    }
}

/// How the simulator's receipts quote the id its submit_sm_resp gave (vendors are seen doing
/// each of these): as given, in upper case, with leading zeros, or a hex id as a decimal number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IdQuote {
    /// The same octets.
    #[default]
    Same,
    /// ASCII upper case.
    Upper,
    /// Four leading zeros more (as long as the id stays within [`ID_TEXT_MAX`]).
    Padded,
    /// A hex id (the `hex` format) as its decimal value; other ids as given.
    Decimal,
}

impl std::str::FromStr for IdQuote {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "same" => Ok(IdQuote::Same),
            "upper" => Ok(IdQuote::Upper),
            "padded" => Ok(IdQuote::Padded),
            "decimal" => Ok(IdQuote::Decimal),
            other => Err(format!("unknown id quoting {other:?} (same, upper, padded, decimal)")),
        }
    }
}

impl IdText {
    /// This id as a receipt quotes it under `quote`.
    pub fn quoted(&self, quote: IdQuote) -> IdText {
        let mut t = *self;
        let n = usize::from(self.len);
        match quote {
            IdQuote::Same => {}
            IdQuote::Upper => t.buf[..n].make_ascii_uppercase(),
            IdQuote::Padded if n + 4 <= ID_TEXT_MAX => {
                t.buf[..4].copy_from_slice(b"0000");
                t.buf[4..n + 4].copy_from_slice(&self.buf[..n]);
                t.len = (n + 4) as u8;
            }
            IdQuote::Padded => {}
            IdQuote::Decimal => {
                let hex =
                    std::str::from_utf8(self.as_bytes()).ok().and_then(|s| u64::from_str_radix(s, 16).ok());
                if let Some(v) = hex.filter(|_| n == 16) {
                    t = format_id(IdFormat::Decimal, 0, v);
                }
            }
        }
        t
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A formatted id on the stack.
#[derive(Clone, Copy)]
pub struct IdText {
    buf: [u8; ID_TEXT_MAX],
    len: u8,
}

impl IdText {
    /// The id's octets.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

impl fmt::Debug for IdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

/// Formats id `v` of a run whose salt is `salt` (UUIDs show both; hex and decimal only `v`).
#[inline]
pub fn format_id(format: IdFormat, salt: u64, v: u64) -> IdText {
    let mut t = IdText { buf: [0; ID_TEXT_MAX], len: 0 };
    match format {
        IdFormat::Hex => {
            for i in 0..16 {
                t.buf[i] = HEX[((v >> (60 - 4 * i)) & 0xF) as usize];
            }
            t.len = 16;
        }
        IdFormat::Decimal => {
            let mut tmp = [0u8; 20];
            let mut n = 0;
            let mut x = v;
            loop {
                tmp[19 - n] = b'0' + (x % 10) as u8;
                n += 1;
                x /= 10;
                if x == 0 {
                    break;
                }
            }
            t.buf[..n].copy_from_slice(&tmp[20 - n..]);
            t.len = n as u8;
        }
        IdFormat::Uuid => {
            let all = (u128::from(salt) << 64) | u128::from(v);
            let mut at = 0;
            for i in 0..32 {
                if matches!(i, 8 | 12 | 16 | 20) {
                    t.buf[at] = b'-';
                    at += 1;
                }
                t.buf[at] = HEX[((all >> (124 - 4 * i)) & 0xF) as usize];
                at += 1;
            }
            t.len = 36;
        }
    }
    t
}

/// Reads back the `v` of an id written by [`format_id`] (case-insensitive); `None` if it is not one.
pub fn parse_id(format: IdFormat, salt: u64, s: &[u8]) -> Option<u64> {
    let hex = |s: &[u8]| -> Option<u128> {
        if s.is_empty() || s.len() > 32 {
            return None;
        }
        s.iter().try_fold(0u128, |acc, &c| Some(acc << 4 | u128::from((c as char).to_digit(16)?)))
    };
    match format {
        IdFormat::Hex if s.len() == 16 => hex(s).map(|v| v as u64),
        IdFormat::Decimal if !s.is_empty() && s.len() <= 20 && s.iter().all(u8::is_ascii_digit) => {
            std::str::from_utf8(s).ok()?.parse().ok()
        }
        IdFormat::Uuid if s.len() == 36 => {
            let digits: Vec<u8> = s.iter().copied().filter(|&c| c != b'-').collect();
            let all = hex(&digits)?;
            ((all >> 64) as u64 == salt).then_some(all as u64)
        }
        _ => None,
    }
}

/// A message id as the load generator keys it: ASCII case folded; ids of up to 32 hex digits
/// (dashes allowed, as in UUIDs) kept as an integer with their length and dash positions, so
/// that no two different ids (case aside) share a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IdKey {
    /// Hex digits (and dashes) only.
    Hex {
        /// The digits' value.
        value: u128,
        /// How many digits (leading zeros count).
        digits: u8,
        /// Bit i set: character i is a dash (ids of up to 64 characters).
        dashes: u64,
    },
    /// Anything else, lower-cased.
    Other(Box<[u8]>),
}

impl IdKey {
    /// The key of an id as it came from a peer.
    pub fn new(id: &[u8]) -> IdKey {
        if id.len() <= 64 {
            let mut value = 0u128;
            let mut digits = 0u8;
            let mut dashes = 0u64;
            let mut ok = true;
            for (i, &c) in id.iter().enumerate() {
                if c == b'-' {
                    dashes |= 1 << i;
                } else if let Some(d) = (c as char).to_digit(16) {
                    if digits == 32 {
                        ok = false;
                        break;
                    }
                    value = value << 4 | u128::from(d);
                    digits += 1;
                } else {
                    ok = false;
                    break;
                }
            }
            if ok {
                return IdKey::Hex { value, digits, dashes };
            }
        }
        IdKey::Other(id.to_ascii_lowercase().into_boxed_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip() {
        // Goal: every id style parses back to its value, whatever the case.
        for f in [IdFormat::Hex, IdFormat::Decimal, IdFormat::Uuid] {
            for v in [0u64, 1, 0xdead_beef, u64::MAX] {
                let t = format_id(f, 0x1234, v);
                assert_eq!(parse_id(f, 0x1234, t.as_bytes()), Some(v), "{f} {t:?}");
                assert_eq!(parse_id(f, 0x1234, &t.as_bytes().to_ascii_uppercase()), Some(v));
            }
        }
        assert_eq!(format_id(IdFormat::Hex, 0, 255).as_bytes(), b"00000000000000ff");
        assert_eq!(format_id(IdFormat::Decimal, 0, 1200).as_bytes(), b"1200");
        assert_eq!(format_id(IdFormat::Uuid, 1, 2).as_bytes(), b"00000000-0000-0001-0000-000000000002");
        assert_eq!(parse_id(IdFormat::Hex, 0, b"xyz"), None);
    }

    #[test]
    fn keys_fold_case_and_keep_distinct_ids_apart() {
        // Goal: case does not matter, leading zeros, dashes and odd characters do.
        assert_eq!(IdKey::new(b"AbC123"), IdKey::new(b"abc123"));
        assert_ne!(IdKey::new(b"0abc"), IdKey::new(b"abc"));
        assert_ne!(IdKey::new(b"ab-cd"), IdKey::new(b"abc-d"));
        assert_eq!(IdKey::new(b"MSG_1"), IdKey::new(b"msg_1"));
        assert!(matches!(IdKey::new(b"00000000-0000-0001-0000-000000000002"), IdKey::Hex { .. }));
        assert!(matches!(IdKey::new(&[b'a'; 40]), IdKey::Other(_)));
    }
}
