//! Delivery receipts (SMPP 3.4 Appendix B): the text an SMSC puts in a `deliver_sm` short_message
//! to report on an earlier `submit_sm`, the `receipted_message_id`, `message_state` and
//! `network_error_code` TLVs that carry the same facts in binary, and the `esm_class` bits that mark
//! a `deliver_sm` as a receipt. Appendix B calls its text format "vendor specific" and vendors take
//! it at its word: keys in any case and order, 10-, 12- or 14-digit dates, unpadded counts, long ids,
//! fields of their own. [`Receipt::parse`] takes all of that, needs only `id` and `stat`, and never
//! panics on any input; [`Receipt::format_into`] writes the one canonical form. Parsed ids, texts
//! and unknown fields are [`Bytes`] slices of the input. No clock and no IO here: dates are kept as
//! the digits said, never compared with "now".

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

#[cfg(test)]
mod tests;

/// Longest receipt id accepted, in bytes.
///
/// SMPP 3.4 sizes message_id at 65 octets counting the terminating NUL (64 characters), but SMSCs
/// are seen writing 65 characters into the receipt text, so the text parser allows 65.
pub const ID_LEN_MAX: usize = 65;

/// Most unknown fields kept from one receipt; later ones are dropped. Bounds what one vendor's
/// receipt can make us allocate.
pub const EXTRA_FIELDS_MAX: usize = 16;

/// Longest stat word the parser knows ("UNDELIVERABLE"), in bytes.
const STAT_WORD_IN_LEN_MAX: usize = 13;

/// Longest stat word the formatter writes, in bytes.
const STAT_WORD_OUT_LEN_MAX: usize = 7;

/// Longest known key once normalised ("submit date"), in bytes.
const KEY_LEN_MAX: usize = 11;

/// Longest date the formatter writes (YYYYMMDDhhmmss), in bytes.
const DATE_LEN_MAX: usize = 14;

/// Longest u16 in decimal, in bytes.
const U16_DIGITS_MAX: usize = 5;

/// Canonical output without id, err text, extra fields and text: the upper bound `format_into`
/// reserves for before writing.
const FIXED_LEN_MAX: usize = "id:".len()
    + " sub:".len()
    + U16_DIGITS_MAX
    + " dlvrd:".len()
    + U16_DIGITS_MAX
    + " submit date:".len()
    + DATE_LEN_MAX
    + " done date:".len()
    + DATE_LEN_MAX
    + " stat:".len()
    + STAT_WORD_OUT_LEN_MAX
    + " err:".len()
    + U16_DIGITS_MAX
    + " text:".len();

// Every word the formatter writes fits the reservation, and parses back.
const _: () = {
    let mut i = 0;
    while i < MessageState::ALL.len() {
        let word = MessageState::ALL[i].stat_word();
        assert!(word.len() <= STAT_WORD_OUT_LEN_MAX && word.len() <= STAT_WORD_IN_LEN_MAX);
        i += 1;
    }
};

/// Why a receipt could not be read. Receipts come from vendors, so every variant is a vendor fault
/// (or a caller's bad input to a constructor); none is worth retrying unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// Neither an `id:` field nor a `receipted_message_id` TLV.
    #[error("receipt has no id: neither an id: field nor a receipted_message_id TLV")]
    MissingId,
    /// Neither a `stat:` field nor a `message_state` TLV.
    #[error("receipt has no state: neither a stat: field nor a message_state TLV")]
    MissingStat,
    /// The id is empty.
    #[error("receipt id is empty")]
    EmptyId,
    /// The id is longer than [`ID_LEN_MAX`].
    #[error("receipt id is {len} bytes, more than {max}")]
    IdTooLong {
        /// Length seen.
        len: usize,
        /// The bound broken.
        max: usize,
    },
    /// The id holds a byte that is not visible ASCII (0x21..=0x7E).
    #[error("receipt id byte {byte:#04x} at offset {index} is not visible ASCII")]
    IdByteInvalid {
        /// The offending byte.
        byte: u8,
        /// Its offset in the id.
        index: usize,
    },
    /// The `stat:` word is none of those [`MessageState::from_stat_word`] knows.
    #[error("receipt stat word {0:?} is not a known message state")]
    UnknownStat(Bytes),
    /// The `message_state` TLV is outside 0..=9.
    #[error("message_state {0} is not a known message state")]
    UnknownMessageState(u8),
    /// The `network_error_code` TLV is not 3 octets.
    #[error("network_error_code is {len} octets, not {expected}")]
    NetworkErrorCodeLen {
        /// Length seen.
        len: usize,
        /// The length SMPP 3.4 section 5.3.2.31 fixes.
        expected: usize,
    },
}

/// SMPP message_state (3.4 section 5.2.28, with the 5.0 additions `Scheduled` and `Skipped`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageState {
    /// 0, SMPP 5.0: scheduled, delivery not yet started (3.4 SMSCs say `Enroute`).
    Scheduled = 0,
    /// 1: in the SMSC, possibly in retry.
    Enroute = 1,
    /// 2: delivered to the handset.
    Delivered = 2,
    /// 3: validity period expired before delivery.
    Expired = 3,
    /// 4: cancelled or deleted in the SMSC.
    Deleted = 4,
    /// 5: permanently undeliverable.
    Undeliverable = 5,
    /// 6: accepted by hand on the subscriber's behalf.
    Accepted = 6,
    /// 7: the SMSC does not know the state.
    Unknown = 7,
    /// 8: rejected by a delivery interface.
    Rejected = 8,
    /// 9, SMPP 5.0: accepted but deliberately not transmitted.
    Skipped = 9,
}

impl MessageState {
    /// Every state, in value order.
    pub const ALL: [MessageState; 10] = [
        MessageState::Scheduled,
        MessageState::Enroute,
        MessageState::Delivered,
        MessageState::Expired,
        MessageState::Deleted,
        MessageState::Undeliverable,
        MessageState::Accepted,
        MessageState::Unknown,
        MessageState::Rejected,
        MessageState::Skipped,
    ];

    /// The state with this message_state value, if it is one of 0..=9.
    pub const fn from_u8(value: u8) -> Option<MessageState> {
        Some(match value {
            0 => MessageState::Scheduled,
            1 => MessageState::Enroute,
            2 => MessageState::Delivered,
            3 => MessageState::Expired,
            4 => MessageState::Deleted,
            5 => MessageState::Undeliverable,
            6 => MessageState::Accepted,
            7 => MessageState::Unknown,
            8 => MessageState::Rejected,
            9 => MessageState::Skipped,
            _ => return None,
        })
    }

    /// The message_state value.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// True when SMPP says no further delivery attempt follows.
    ///
    /// `Unknown` is not final: SMPP 5.0 says the problem behind it "may be intermediate or
    /// permanent", so a later receipt may still come.
    pub const fn is_final(self) -> bool {
        matches!(
            self,
            MessageState::Delivered
                | MessageState::Expired
                | MessageState::Deleted
                | MessageState::Undeliverable
                | MessageState::Accepted
                | MessageState::Rejected
                | MessageState::Skipped
        )
    }

    /// The canonical 7-letter receipt `stat:` word (Appendix B; `SCHEDLD` and `SKIPPED` for the
    /// SMPP 5.0 states).
    pub const fn stat_word(self) -> &'static str {
        match self {
            MessageState::Scheduled => "SCHEDLD",
            MessageState::Enroute => "ENROUTE",
            MessageState::Delivered => "DELIVRD",
            MessageState::Expired => "EXPIRED",
            MessageState::Deleted => "DELETED",
            MessageState::Undeliverable => "UNDELIV",
            MessageState::Accepted => "ACCEPTD",
            MessageState::Unknown => "UNKNOWN",
            MessageState::Rejected => "REJECTD",
            MessageState::Skipped => "SKIPPED",
        }
    }

    /// The state a receipt `stat:` word names, ignoring ASCII case; `None` for a word it does not
    /// know. Besides the canonical words it takes the spellings vendors use.
    pub fn from_stat_word(word: &[u8]) -> Option<MessageState> {
        let mut upper = [0u8; STAT_WORD_IN_LEN_MAX];
        let upper = upper.get_mut(..word.len())?;
        for (to, from) in upper.iter_mut().zip(word) {
            *to = from.to_ascii_uppercase();
        }
        Some(match &*upper {
            // SCHEDULED: the SMPP 5.0 state name spelt out.
            b"SCHEDLD" | b"SCHEDULED" => MessageState::Scheduled,
            b"ENROUTE" => MessageState::Enroute,
            // DELIVERED: the state name spelt out, sent by many aggregators.
            b"DELIVRD" | b"DELIVERED" => MessageState::Delivered,
            // EXPIRED and DELETED are already their own long forms.
            b"EXPIRED" => MessageState::Expired,
            b"DELETED" => MessageState::Deleted,
            // UNDELIVERABLE: the state name spelt out. UNDELIVERED: common aggregator spelling.
            // FAILED: what HTTP-first vendors send for a permanent failure; SMPP has no "failed"
            // state and UNDELIV is the one that means "will not be delivered".
            b"UNDELIV" | b"UNDELIVERABLE" | b"UNDELIVERED" | b"FAILED" => MessageState::Undeliverable,
            // ACCEPTED: the state name spelt out.
            b"ACCEPTD" | b"ACCEPTED" => MessageState::Accepted,
            b"UNKNOWN" => MessageState::Unknown,
            // REJECTED: the state name spelt out.
            b"REJECTD" | b"REJECTED" => MessageState::Rejected,
            b"SKIPPED" => MessageState::Skipped,
            _ => return None,
        })
    }
}

/// A receipt id: 1..=[`ID_LEN_MAX`] bytes of visible ASCII (decimal, hex, UUID with dashes, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReceiptId(Bytes);

impl ReceiptId {
    /// Checks `id` and wraps it without copying.
    pub fn new(id: Bytes) -> Result<ReceiptId, ReceiptError> {
        check_id(&id)?;
        Ok(ReceiptId(id))
    }

    /// Checks `id` and copies it.
    pub fn from_slice(id: &[u8]) -> Result<ReceiptId, ReceiptError> {
        check_id(id)?;
        Ok(ReceiptId(Bytes::copy_from_slice(id)))
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The id as text (always ASCII).
    pub fn as_str(&self) -> &str {
        // Checked to be ASCII on construction, so this never falls back.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The id's bytes, without copying.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

fn check_id(id: &[u8]) -> Result<(), ReceiptError> {
    if id.is_empty() {
        return Err(ReceiptError::EmptyId);
    }
    if id.len() > ID_LEN_MAX {
        return Err(ReceiptError::IdTooLong { len: id.len(), max: ID_LEN_MAX });
    }
    match id.iter().position(|b| !b.is_ascii_graphic()) {
        Some(index) => Err(ReceiptError::IdByteInvalid { byte: id[index], index }),
        None => Ok(()),
    }
}

/// Which digits [`ReceiptDate::format_into`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DateStyle {
    /// Appendix B's YYMMDDhhmm, whatever form was parsed.
    #[default]
    Standard,
    /// The form the date was received in: YYMMDDhhmm, YYMMDDhhmmss or YYYYMMDDhhmmss.
    AsReceived,
}

/// A receipt `submit date:` or `done date:`, as the digits gave it.
///
/// Parsed from YYMMDDhhmm (10 digits, Appendix B), YYMMDDhhmmss (12) or YYYYMMDDhhmmss (14). Two-digit
/// years are taken as 20YY. Ranges are checked (month 1..=12, day 1..=31, hour ..=23, minute and
/// second ..=59) but not the day against the month. No time zone: SMPP leaves that to the SMSC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReceiptDate {
    /// Full year (2026, not 26).
    pub year: u16,
    /// 1..=12.
    pub month: u8,
    /// 1..=31.
    pub day: u8,
    /// 0..=23.
    pub hour: u8,
    /// 0..=59.
    pub minute: u8,
    /// 0..=59, when the date carried seconds (12 and 14 digits).
    pub second: Option<u8>,
    /// The date came with a four-digit year (14 digits).
    pub four_digit_year: bool,
}

impl ReceiptDate {
    /// Reads a 10-, 12- or 14-digit date; `None` for anything else or a value out of range.
    pub fn parse(digits: &[u8]) -> Option<ReceiptDate> {
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        // Digits checked above, so the subtractions cannot wrap.
        let two = |hi: u8, lo: u8| (hi - b'0') * 10 + (lo - b'0');
        let (year, four_digit_year, rest) = match digits {
            [c1, c2, y1, y2, rest @ ..] if digits.len() == 14 => {
                (u16::from(two(*c1, *c2)) * 100 + u16::from(two(*y1, *y2)), true, rest)
            }
            [y1, y2, rest @ ..] if digits.len() == 10 || digits.len() == 12 => {
                (2000 + u16::from(two(*y1, *y2)), false, rest)
            }
            _ => return None,
        };
        let (month, day, hour, minute, second) = match *rest {
            [m1, m2, d1, d2, h1, h2, i1, i2] => (two(m1, m2), two(d1, d2), two(h1, h2), two(i1, i2), None),
            [m1, m2, d1, d2, h1, h2, i1, i2, s1, s2] => {
                (two(m1, m2), two(d1, d2), two(h1, h2), two(i1, i2), Some(two(s1, s2)))
            }
            _ => return None,
        };
        let in_range = (1..=12).contains(&month)
            && (1..=31).contains(&day)
            && hour <= 23
            && minute <= 59
            && second.is_none_or(|s| s <= 59);
        in_range.then_some(ReceiptDate { year, month, day, hour, minute, second, four_digit_year })
    }

    /// Writes the date's digits. Fields out of range are written modulo their width, never longer.
    /// With [`DateStyle::AsReceived`], a four-digit year without seconds gets `00` seconds.
    pub fn format_into(&self, out: &mut BytesMut, style: DateStyle) {
        let as_received = style == DateStyle::AsReceived;
        let full_year = as_received && self.four_digit_year;
        if full_year {
            put_decimal(out, u32::from(self.year % 10_000), 4);
        } else {
            put_decimal(out, u32::from(self.year % 100), 2);
        }
        for part in [self.month, self.day, self.hour, self.minute] {
            put_decimal(out, u32::from(part % 100), 2);
        }
        if as_received && let Some(second) = self.second.or(full_year.then_some(0)) {
            put_decimal(out, u32::from(second % 100), 2);
        }
    }
}

/// The largest `err` taken from a `network_error_code` TLV: Appendix B gives `err` three
/// characters, and parsers such as Cloudhopper's refuse more; the TLV's error is a u16
/// (vendor-specific codes reach 0x400 and beyond).
pub const ERR_CODE_MAX: u16 = 999;

/// A receipt `err:` value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReceiptErr {
    /// A number (`000`, `1`, `0021`), written back zero-padded to 3 digits.
    Code(u16),
    /// Anything else a vendor put there (`ABC`, `0x1F`, a number too big for u16), kept verbatim.
    Text(Bytes),
}

impl ReceiptErr {
    /// Reads the value at `at` in `input`; `None` when it is empty.
    fn parse(input: &Bytes, at: Range<usize>) -> Option<ReceiptErr> {
        if at.is_empty() {
            return None;
        }
        Some(match parse_u16(&input[at.clone()]) {
            Some(code) => ReceiptErr::Code(code),
            None => ReceiptErr::Text(input.slice(at)),
        })
    }
}

/// A field the parser does not know (`mcc:310`), kept as sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExtraField {
    /// The key as sent, without the colon (may hold inner spaces: `foo bar:1` has key `foo bar`).
    pub key: Bytes,
    /// The value, up to the next whitespace.
    pub value: Bytes,
}

/// A delivery receipt (SMPP 3.4 Appendix B).
///
/// Only `id` and `stat` are required; every other field is `None` when absent or malformed, and the
/// formatter leaves out what is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// `id:`, the message id of the original submit.
    pub id: ReceiptId,
    /// `sub:`, number of messages submitted (Appendix B: for distribution lists).
    pub sub: Option<u16>,
    /// `dlvrd:`, number of messages delivered.
    pub dlvrd: Option<u16>,
    /// `submit date:`.
    pub submit_date: Option<ReceiptDate>,
    /// `done date:`.
    pub done_date: Option<ReceiptDate>,
    /// `stat:`.
    pub stat: MessageState,
    /// `err:`, network or SMSC error code.
    pub err: Option<ReceiptErr>,
    /// `text:`, everything after the key to the end of the input (Appendix B: the first 20
    /// characters of the original message), or to the next key when `id` or `stat` comes after it
    /// (see [`Receipt::parse_bytes`]). Kept as sent, whatever its length; only trailing whitespace
    /// and NULs are cut, so formatted text with trailing spaces comes back without them.
    pub text: Option<Bytes>,
    /// Fields the parser does not know, in input order, at most [`EXTRA_FIELDS_MAX`] of them.
    pub extra: Vec<ExtraField>,
}

/// What [`Receipt::parse_with_tlvs`] read from a `deliver_sm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The receipt.
    pub receipt: Receipt,
    /// The first of `receipted_message_id`, `message_state` and `network_error_code` that failed
    /// its check and was passed over, the text giving that field (or nothing, for the error
    /// code): a vendor fault worth counting, not a reason to lose the receipt.
    pub ignored_tlv: Option<ReceiptError>,
}

impl Receipt {
    /// A receipt with only the required fields.
    pub fn new(id: ReceiptId, stat: MessageState) -> Receipt {
        Receipt {
            id,
            sub: None,
            dlvrd: None,
            submit_date: None,
            done_date: None,
            stat,
            err: None,
            text: None,
            extra: Vec::new(),
        }
    }

    /// This receipt with its fields copied out of the buffer they were parsed from, for one
    /// that is kept a while (a parsed receipt's fields are slices of that buffer, which they
    /// would keep whole).
    pub fn into_owned(self) -> Receipt {
        let own = |b: &Bytes| Bytes::copy_from_slice(b);
        Receipt {
            id: ReceiptId(own(&self.id.0)),
            err: self.err.map(|e| match e {
                ReceiptErr::Text(t) => ReceiptErr::Text(own(&t)),
                code => code,
            }),
            text: self.text.as_ref().map(own),
            extra: self.extra.iter().map(|f| ExtraField { key: own(&f.key), value: own(&f.value) }).collect(),
            ..self
        }
    }

    /// Parses receipt text, copying it once so that the fields can share it; see
    /// [`Receipt::parse_bytes`] for what is accepted.
    pub fn parse(text: &[u8]) -> Result<Receipt, ReceiptError> {
        Receipt::parse_bytes(&Bytes::copy_from_slice(text))
    }

    /// Parses receipt text without copying: id, text and unknown fields are slices of `text`.
    ///
    /// Accepted: `key:value` fields split by whitespace, in any order; keys in any ASCII case, with
    /// `submit date` / `done date` also spelt `submit_date`, `submitdate` (and with several spaces);
    /// stray words before a key are skipped (`xyz stat:DELIVRD` reads `stat`), but a key so found
    /// gives way to the same key written alone, even later (`msg id:9 id:1` has id 1). `text:`
    /// takes the rest of the input, spaces and colons included, so a `stat:` inside it is text,
    /// except when `id` or `stat` has not come before it (and no TLV gives it): then, if an `id:`
    /// or `stat:` key follows (after whitespace, in any case), the text ends before the first
    /// known key after it and the keys from there on are read too (`id:1 text:hi err:5
    /// stat:DELIVRD` has text `hi`, err 5 and stat DELIVRD). Leading and trailing whitespace,
    /// CR/LF and NULs are ignored. When a key repeats, the first one counts. Malformed optional
    /// values (a date `0000000000`, a count `abc`) read as absent rather than failing the
    /// receipt; only a missing or bad `id` or `stat` is an error.
    pub fn parse_bytes(text: &Bytes) -> Result<Receipt, ReceiptError> {
        let tlvs = TlvValues::default();
        Fields::scan(text, &tlvs).finish(tlvs)
    }

    /// Parses receipt text with the `deliver_sm` TLVs beside it; the TLVs win for id and state,
    /// the text's own `err` for the error (see [`Receipt::merge_tlvs`]). Succeeds on empty or garbled text when the TLVs give the id and
    /// state, and then ignores a bad `id:` or `stat:` in the text. A TLV that fails its check (an
    /// id not visible ASCII or over [`ID_LEN_MAX`], a state outside 0..=9, an error code not 3
    /// octets) is passed over and the text's value stands in: the receipt is lost only when
    /// neither gives an id or a state. What was passed over is in [`Parsed::ignored_tlv`].
    pub fn parse_with_tlvs(
        text: &Bytes,
        receipted_message_id: Option<&[u8]>,
        message_state: Option<u8>,
        network_error_code: Option<&[u8]>,
    ) -> Result<Parsed, ReceiptError> {
        let raw = RawTlvs { id: receipted_message_id, state: message_state, err: network_error_code };
        let tlvs = raw.read();
        let bad = tlvs.bad;
        match Fields::scan(text, &tlvs).finish(tlvs) {
            Ok(receipt) => Ok(Parsed { receipt, ignored_tlv: raw.error(bad) }),
            // Neither the text nor the TLV gave it: the TLV's fault says more than "missing".
            Err(ReceiptError::MissingId) if bad & BAD_ID != 0 => {
                Err(raw.error(BAD_ID).unwrap_or(ReceiptError::MissingId))
            }
            Err(ReceiptError::MissingStat) if bad & BAD_STAT != 0 => {
                Err(raw.error(BAD_STAT).unwrap_or(ReceiptError::MissingStat))
            }
            Err(e) => Err(e),
        }
    }

    /// A receipt from the TLVs alone, for a `deliver_sm` whose text is empty or unreadable. With
    /// nothing to stand in for it, every TLV given must pass its check.
    pub fn from_tlvs(
        receipted_message_id: &[u8],
        message_state: u8,
        network_error_code: Option<&[u8]>,
    ) -> Result<Receipt, ReceiptError> {
        let raw =
            RawTlvs { id: Some(receipted_message_id), state: Some(message_state), err: network_error_code };
        Fields::default().finish(raw.read_checked()?)
    }

    /// Lets the `deliver_sm` TLVs override the text, as SMPP 3.4 section 5.3.2 makes them the
    /// authoritative form: `receipted_message_id` replaces `id` (read up to its NUL; an empty one
    /// counts as absent) and `message_state` replaces `stat`. `network_error_code` (network type,
    /// then a big-endian u16 error) gives `err` its error part only when the text has no `err`:
    /// the vendor's own value is what its customers' parsers expect (three characters, Appendix
    /// B), where the TLV's can be any u16; one above [`ERR_CODE_MAX`] is written as that. All
    /// TLVs are checked before any is applied: on error the receipt is unchanged.
    pub fn merge_tlvs(
        &mut self,
        receipted_message_id: Option<&[u8]>,
        message_state: Option<u8>,
        network_error_code: Option<&[u8]>,
    ) -> Result<(), ReceiptError> {
        let raw = RawTlvs { id: receipted_message_id, state: message_state, err: network_error_code };
        let tlvs = raw.read_checked()?;
        if let Some(id) = tlvs.id {
            self.id = id;
        }
        if let Some(stat) = tlvs.stat {
            self.stat = stat;
        }
        if self.err.is_none() {
            self.err = tlvs.err;
        }
        Ok(())
    }

    /// A copy with another id: the gateway swaps a vendor's id for the one it gave its customer.
    pub fn with_id(&self, id: ReceiptId) -> Receipt {
        Receipt { id, ..self.clone() }
    }

    /// Writes the canonical Appendix B text with 10-digit dates:
    /// `id:I sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:WORD err:EEE text:T`.
    ///
    /// Appendix B spells the last key `Text:` in its example but `text:` in its field table; we
    /// write `text:`, which is what most ESME parsers match. Absent fields are left out; unknown
    /// fields go after `err`, before `text`, which must stay last. Writes only into `out`.
    pub fn format_into(&self, out: &mut BytesMut) {
        self.format_into_as(out, DateStyle::Standard);
    }

    /// [`Receipt::format_into`] with a choice of date form.
    pub fn format_into_as(&self, out: &mut BytesMut, dates: DateStyle) {
        self.format_fields(self.id.as_bytes(), out, dates);
    }

    /// [`Receipt::format_into_as`] with `id` in place of the receipt's own, without copying the
    /// receipt: how a gateway swaps a vendor's id for the one its customer was given. `id` is
    /// checked as [`ReceiptId::from_slice`] checks it; on error nothing is written.
    pub fn format_with_id_into(
        &self,
        id: &[u8],
        out: &mut BytesMut,
        dates: DateStyle,
    ) -> Result<(), ReceiptError> {
        check_id(id)?;
        self.format_fields(id, out, dates);
        Ok(())
    }

    fn format_fields(&self, id: &[u8], out: &mut BytesMut, dates: DateStyle) {
        out.reserve(self.formatted_len_max(id.len()));
        out.put_slice(b"id:");
        out.put_slice(id);
        if let Some(sub) = self.sub {
            out.put_slice(b" sub:");
            put_decimal(out, u32::from(sub), 3);
        }
        if let Some(dlvrd) = self.dlvrd {
            out.put_slice(b" dlvrd:");
            put_decimal(out, u32::from(dlvrd), 3);
        }
        if let Some(date) = &self.submit_date {
            out.put_slice(b" submit date:");
            date.format_into(out, dates);
        }
        if let Some(date) = &self.done_date {
            out.put_slice(b" done date:");
            date.format_into(out, dates);
        }
        out.put_slice(b" stat:");
        out.put_slice(self.stat.stat_word().as_bytes());
        match &self.err {
            Some(ReceiptErr::Code(code)) => {
                out.put_slice(b" err:");
                put_decimal(out, u32::from(*code), 3);
            }
            Some(ReceiptErr::Text(text)) => {
                out.put_slice(b" err:");
                out.put_slice(text);
            }
            None => {}
        }
        for field in &self.extra {
            out.put_u8(b' ');
            out.put_slice(&field.key);
            out.put_u8(b':');
            out.put_slice(&field.value);
        }
        if let Some(text) = &self.text {
            out.put_slice(b" text:");
            out.put_slice(text);
        }
    }

    /// The canonical text in a buffer of its own.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.format_into(&mut out);
        out.freeze()
    }

    /// An upper bound on what `format_into_as` writes, so that it reserves once.
    fn formatted_len_max(&self, id_len: usize) -> usize {
        let err = match &self.err {
            Some(ReceiptErr::Text(text)) => text.len(),
            _ => 0,
        };
        let extra: usize = self.extra.iter().map(|f| f.key.len() + f.value.len() + 2).sum();
        FIXED_LEN_MAX + id_len + err + extra + self.text.as_ref().map_or(0, Bytes::len)
    }
}

/// The three receipt TLVs as a `deliver_sm` gives them.
#[derive(Clone, Copy)]
struct RawTlvs<'a> {
    id: Option<&'a [u8]>,
    state: Option<u8>,
    err: Option<&'a [u8]>,
}

/// [`TlvValues::bad`]: the receipted_message_id failed its check.
const BAD_ID: u8 = 1;
/// [`TlvValues::bad`]: the message_state failed its check.
const BAD_STAT: u8 = 2;
/// [`TlvValues::bad`]: the network_error_code failed its check.
const BAD_ERR: u8 = 4;

impl RawTlvs<'_> {
    /// receipted_message_id's id: a C-Octet String, so up to its first NUL; `None` when absent or
    /// empty. Its TLV bound ([`crate::tlv::RECEIPTED_MESSAGE_ID_LEN_MAX`]) counts that NUL, so 66
    /// octets without one are an id too long here, like any other.
    fn id(&self) -> Option<&[u8]> {
        self.id.map(|id| id.split(|&b| b == 0).next().unwrap_or_default()).filter(|id| !id.is_empty())
    }

    /// The values that pass their checks; [`TlvValues::bad`] marks the others.
    fn read(self) -> TlvValues {
        let mut tlvs = TlvValues::default();
        if let Some(id) = self.id() {
            match ReceiptId::from_slice(id) {
                Ok(id) => tlvs.id = Some(id),
                Err(_) => tlvs.bad |= BAD_ID,
            }
        }
        if let Some(value) = self.state {
            match MessageState::from_u8(value) {
                Some(stat) => tlvs.stat = Some(stat),
                None => tlvs.bad |= BAD_STAT,
            }
        }
        match self.err {
            // SMPP 3.4 section 5.3.2.31: network type (1 octet), then error code (2 octets).
            Some(&[_network_type, hi, lo]) => {
                tlvs.err = Some(ReceiptErr::Code(u16::from_be_bytes([hi, lo]).min(ERR_CODE_MAX)));
            }
            Some(_) => tlvs.bad |= BAD_ERR,
            None => {}
        }
        tlvs
    }

    /// [`RawTlvs::read`], or the first TLV's error, for callers with no text to fall back on.
    fn read_checked(self) -> Result<TlvValues, ReceiptError> {
        let tlvs = self.read();
        match self.error(tlvs.bad) {
            Some(e) => Err(e),
            None => Ok(tlvs),
        }
    }

    /// Why the first of the TLVs `bad` marks failed its check (found again, as it is rarely
    /// wanted); `None` when `bad` marks none.
    fn error(self, bad: u8) -> Option<ReceiptError> {
        if bad & BAD_ID != 0
            && let Err(e) = check_id(self.id().unwrap_or_default())
        {
            return Some(e);
        }
        if bad & BAD_STAT != 0 {
            return self.state.map(ReceiptError::UnknownMessageState);
        }
        if bad & BAD_ERR != 0 {
            return self.err.map(|err| ReceiptError::NetworkErrorCodeLen { len: err.len(), expected: 3 });
        }
        None
    }
}

/// The TLV values that passed their checks. One that failed is left out, so that the text's value
/// for its field stands in.
#[derive(Default)]
struct TlvValues {
    id: Option<ReceiptId>,
    stat: Option<MessageState>,
    err: Option<ReceiptErr>,
    /// Which TLVs failed their checks (`BAD_*` bits); [`RawTlvs::error`] says why. Kept this
    /// small since every parse moves this struct.
    bad: u8,
}

/// A key the parser knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Id,
    Sub,
    Dlvrd,
    SubmitDate,
    DoneDate,
    Stat,
    Err,
    Text,
    Other,
}

impl Key {
    /// This key's bit in [`Fields::seen`].
    const fn bit(self) -> u16 {
        1u16 << (self as u8)
    }

    /// Classifies a key, and says whether the whole key matched; when it is unknown, tries it
    /// without its leading words, so that stray words before a key do not hide it. Such a match
    /// (`false`) is weaker: `msg id:999 id:123` is a stray `msg` or a vendor's own `msg id`, and
    /// the exact `id:` after it is the one to take.
    fn classify(key: &[u8]) -> (Key, bool) {
        // The spellings of Appendix B (and "Text", seen as often as "text"), matched as they are
        // before the general path normalises case and gaps.
        let exact = match key {
            b"id" => Key::Id,
            b"sub" => Key::Sub,
            b"dlvrd" => Key::Dlvrd,
            b"submit date" => Key::SubmitDate,
            b"done date" => Key::DoneDate,
            b"stat" => Key::Stat,
            b"err" => Key::Err,
            b"text" | b"Text" => Key::Text,
            _ => Key::known(key),
        };
        if exact != Key::Other {
            return (exact, true);
        }
        let mut rest = key;
        loop {
            let Some(gap) = rest.iter().position(|&b| is_sep(b)) else { return (Key::Other, true) };
            let (_, after) = rest.split_at(gap);
            let Some(word) = after.iter().position(|&b| !is_sep(b)) else { return (Key::Other, true) };
            rest = after.split_at(word).1;
            let found = Key::known(rest);
            if found != Key::Other {
                return (found, false);
            }
        }
    }

    /// Matches a key in any ASCII case, with runs of whitespace or `_` read as one space.
    fn known(key: &[u8]) -> Key {
        let mut normal = [0u8; KEY_LEN_MAX];
        let mut len = 0;
        let mut in_gap = false;
        for &b in key {
            let c = if is_sep(b) || b == b'_' {
                if in_gap {
                    continue;
                }
                in_gap = true;
                b' '
            } else {
                in_gap = false;
                b.to_ascii_lowercase()
            };
            let Some(slot) = normal.get_mut(len) else { return Key::Other };
            *slot = c;
            len += 1;
        }
        match normal.get(..len).unwrap_or_default() {
            b"id" => Key::Id,
            b"sub" => Key::Sub,
            b"dlvrd" => Key::Dlvrd,
            b"submit date" | b"submitdate" => Key::SubmitDate,
            b"done date" | b"donedate" => Key::DoneDate,
            b"stat" => Key::Stat,
            b"err" => Key::Err,
            b"text" => Key::Text,
            _ => Key::Other,
        }
    }
}

/// What the scan found; `id` and `stat` are checked only in `finish`, so that TLVs can stand in
/// for bad ones.
#[derive(Default)]
struct Fields {
    /// Keys seen, one bit per `Key`, for "first one counts".
    seen: u16,
    /// Keys of `seen` matched only after dropping leading words (see [`Key::classify`]): a later
    /// exact key replaces their value.
    weak: u16,
    id: Option<Bytes>,
    stat: Option<Bytes>,
    sub: Option<u16>,
    dlvrd: Option<u16>,
    submit_date: Option<ReceiptDate>,
    done_date: Option<ReceiptDate>,
    err: Option<ReceiptErr>,
    text: Option<Bytes>,
    extra: Vec<ExtraField>,
}

impl Fields {
    /// One pass over the input; never fails, never panics. `tlvs` says which of id and stat the
    /// TLVs give, so that the text need not (see [`Fields::after_text`]).
    fn scan(input: &Bytes, tlvs: &TlvValues) -> Fields {
        let s: &[u8] = input;
        let end = s.iter().rposition(|&b| !is_sep(b)).map_or(0, |i| i + 1);
        let mut fields = Fields::default();
        let mut pos = 0;
        loop {
            pos = find(s, pos, end, |b| !is_sep(b)).unwrap_or(end);
            // No colon left: what remains is stray words, dropped.
            let Some(colon) = find(s, pos, end, |b| b == b':') else { break };
            let key_end = s[pos..colon].iter().rposition(|&b| !is_sep(b)).map_or(pos, |i| pos + i + 1);
            let (key, exact) = Key::classify(&s[pos..key_end]);
            let value_start = colon + 1;
            if key == Key::Text {
                // Appendix B puts text last; it runs to the end of the input, keys and all. Only
                // when id or stat is still missing are the keys after it looked at.
                let want_id = tlvs.id.is_none() && !fields.has(Key::Id);
                let want_stat = tlvs.stat.is_none() && !fields.has(Key::Stat);
                let next = if want_id || want_stat {
                    Fields::after_text(s, value_start, end, want_id, want_stat)
                } else {
                    None
                };
                let text_end = next.map_or(end, |next| {
                    s[value_start..next]
                        .iter()
                        .rposition(|&b| !is_sep(b))
                        .map_or(value_start, |i| value_start + i + 1)
                });
                if fields.claim(Key::Text, exact) {
                    fields.text = Some(input.slice(value_start..text_end));
                }
                match next {
                    Some(next) => {
                        pos = next;
                        continue;
                    }
                    None => break,
                }
            }
            // `id: 123`: some SMSCs put a space after the colon. The next word is the value
            // unless it is a key of its own (`id: stat:DELIVRD` has an empty id).
            let value_start = match find(s, value_start, end, |b| !is_sep(b)) {
                Some(word) if word > value_start => {
                    let word_end = find(s, word, end, is_sep).unwrap_or(end);
                    if s[word..word_end].contains(&b':') { value_start } else { word }
                }
                _ => value_start,
            };
            let value_end = find(s, value_start, end, is_sep).unwrap_or(end);
            fields.set(key, exact, input, pos..key_end, value_start..value_end);
            pos = value_end;
        }
        fields
    }

    /// Where the text value starting at `from` ends, for a receipt whose `id` (`want_id`) or
    /// `stat` (`want_stat`) did not come before its `text:` key: at the first known key after a
    /// separator (`err:`, `stat:`, `submit date:`, ...), provided a wanted key follows it (at it or
    /// later). `None` when no wanted key follows: the text runs to the end, keys and all.
    ///
    /// Each word is looked at once, with a bounded look-ahead for its colon, so this is linear in
    /// the length of the text.
    fn after_text(s: &[u8], from: usize, end: usize, want_id: bool, want_stat: bool) -> Option<usize> {
        /// Longest key span looked at, from its first word to its colon: a known key with a few
        /// extra gaps (`submit   date`).
        const KEY_SPAN_MAX: usize = 2 * KEY_LEN_MAX;
        let mut first_key = None;
        let mut at = from;
        loop {
            // The next word after a separator.
            let gap = find(s, at, end, is_sep)?;
            let word = find(s, gap, end, |b| !is_sep(b))?;
            at = word;
            let window_end = end.min(word.saturating_add(KEY_SPAN_MAX + 1));
            let Some(colon) = find(s, word, window_end, |b| b == b':') else { continue };
            let key_end = s[word..colon].iter().rposition(|&b| !is_sep(b)).map_or(word, |i| word + i + 1);
            let key = Key::known(&s[word..key_end]);
            if key == Key::Other {
                continue;
            }
            let first = *first_key.get_or_insert(word);
            if (want_id && key == Key::Id) || (want_stat && key == Key::Stat) {
                return Some(first);
            }
        }
    }

    /// Whether `key` was seen.
    fn has(&self, key: Key) -> bool {
        self.seen & key.bit() != 0
    }

    /// Whether a value for `key` is to be taken: the first one, or an exact key's after a weak
    /// one (see [`Fields::weak`]).
    fn claim(&mut self, key: Key, exact: bool) -> bool {
        let bit = key.bit();
        if self.seen & bit != 0 && !(exact && self.weak & bit != 0) {
            return false;
        }
        self.seen |= bit;
        if exact {
            self.weak &= !bit;
        } else {
            self.weak |= bit;
        }
        true
    }

    fn set(&mut self, key: Key, exact: bool, input: &Bytes, key_at: Range<usize>, value_at: Range<usize>) {
        if key == Key::Other {
            if self.extra.len() < EXTRA_FIELDS_MAX {
                self.extra.push(ExtraField { key: input.slice(key_at), value: input.slice(value_at) });
            }
            return;
        }
        if !self.claim(key, exact) {
            return;
        }
        // Numbers and dates read the bytes in place; only what is kept takes a slice of `input`.
        let value = &input[value_at.clone()];
        match key {
            Key::Id => self.id = Some(input.slice(value_at)),
            Key::Stat => self.stat = Some(input.slice(value_at)),
            Key::Sub => self.sub = parse_u16(value),
            Key::Dlvrd => self.dlvrd = parse_u16(value),
            Key::SubmitDate => self.submit_date = ReceiptDate::parse(value),
            Key::DoneDate => self.done_date = ReceiptDate::parse(value),
            Key::Err => self.err = ReceiptErr::parse(input, value_at),
            Key::Text | Key::Other => {}
        }
    }

    /// The receipt, each of id and stat from its TLV when that passed its check, else from the
    /// text; err from the text, else from its TLV. Without id or stat, the error is the text's,
    /// else `Missing*`.
    fn finish(self, tlvs: TlvValues) -> Result<Receipt, ReceiptError> {
        let id = match (tlvs.id, self.id) {
            (Some(id), _) => id,
            (None, Some(id)) => ReceiptId::new(id)?,
            (None, None) => return Err(ReceiptError::MissingId),
        };
        let stat = match (tlvs.stat, self.stat) {
            (Some(stat), _) => stat,
            (None, Some(word)) => {
                MessageState::from_stat_word(&word).ok_or(ReceiptError::UnknownStat(word))?
            }
            (None, None) => return Err(ReceiptError::MissingStat),
        };
        Ok(Receipt {
            id,
            sub: self.sub,
            dlvrd: self.dlvrd,
            submit_date: self.submit_date,
            done_date: self.done_date,
            stat,
            err: self.err.or(tlvs.err),
            text: self.text,
            extra: self.extra,
        })
    }
}

/// Field separators: ASCII whitespace and NUL (some SMSCs pad with NULs).
fn is_sep(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c | 0)
}

/// Offset of the first byte in `s[from..end]` matching `pred`.
fn find(s: &[u8], from: usize, end: usize, pred: impl Fn(u8) -> bool) -> Option<usize> {
    s.get(from..end)?.iter().position(|&b| pred(b)).map(|i| from + i)
}

/// An unsigned decimal that fits a u16, leading zeros allowed.
fn parse_u16(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u16, |n, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(u16::from(digit))
    })
}

/// Writes `n` in decimal, zero-padded to at least `width` digits (at most 10).
fn put_decimal(out: &mut BytesMut, mut n: u32, width: usize) {
    let mut digits = [b'0'; 10];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let start = start.min(digits.len().saturating_sub(width));
    out.put_slice(&digits[start..]);
}

/// What an `esm_class` says a `deliver_sm` carries (SMPP 3.4 section 5.2.12, bits 5..2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EsmMessageType {
    /// 0x00: a normal (mobile-originated) message.
    Normal,
    /// 0x04: SMSC delivery receipt.
    SmscDeliveryReceipt,
    /// 0x08: SME delivery acknowledgement, sent by the handset's application, not the SMSC.
    SmeDeliveryAck,
    /// 0x10: SME manual/user acknowledgement: the user's reply, not a delivery report.
    SmeManualAck,
    /// 0x18: conversation abort (Korean CDMA).
    ConversationAbort,
    /// 0x20: intermediate delivery notification (a receipt for a non-final state).
    IntermediateNotification,
    /// A bit pattern SMPP 3.4 reserves; holds the masked bits.
    Reserved(u8),
}

/// The bits of esm_class that give the message type (bits 5..2).
const ESM_MESSAGE_TYPE_MASK: u8 = 0b0011_1100;

/// The message type in an `esm_class`, ignoring the messaging mode (bits 1..0), UDHI (0x40) and
/// reply path (0x80).
pub const fn esm_class_message_type(esm_class: u8) -> EsmMessageType {
    match esm_class & ESM_MESSAGE_TYPE_MASK {
        0x00 => EsmMessageType::Normal,
        0x04 => EsmMessageType::SmscDeliveryReceipt,
        0x08 => EsmMessageType::SmeDeliveryAck,
        0x10 => EsmMessageType::SmeManualAck,
        0x18 => EsmMessageType::ConversationAbort,
        0x20 => EsmMessageType::IntermediateNotification,
        other => EsmMessageType::Reserved(other),
    }
}

/// True when a `deliver_sm` with this `esm_class` carries a receipt: an SMSC delivery receipt
/// (0x04) or an intermediate delivery notification (0x20). SME acknowledgements (0x08, 0x10) come
/// from the recipient's handset or user, carry no Appendix B text, and are not receipts.
pub const fn is_receipt(esm_class: u8) -> bool {
    matches!(
        esm_class_message_type(esm_class),
        EsmMessageType::SmscDeliveryReceipt | EsmMessageType::IntermediateNotification
    )
}
