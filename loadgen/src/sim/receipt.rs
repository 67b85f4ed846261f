//! What the simulator sends on its own: delivery receipts (Appendix B text plus TLVs, with the
//! real-world quirks) and MO messages, as deliver_sm written straight into a session's buffer.

use bytes::{BufMut, BytesMut};
use smppgw_codec::receipt::MessageState;
use smppgw_codec::{Address, CommandId, CommandStatus, tag};

use super::config::ReceiptOptions;
use crate::msgid::IdText;
use crate::wire::{SubmitView, begin, finish, put_cstr};

/// Octets of the original message quoted in `text:` (Appendix B: "the first 20 characters").
pub const RECEIPT_TEXT_LEN: usize = 20;
/// Longest address kept (SMPP addresses are 21 octets with the NUL).
const ADDR_MAX: usize = 20;
/// esm_class of an SMSC delivery receipt (SMPP 3.4 5.2.12).
pub const ESM_CLASS_RECEIPT: u8 = 0x04;

/// An address copied out of a PDU, so that queued receipts do not pin read buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr {
    /// Type of number.
    pub ton: u8,
    /// Numbering plan.
    pub npi: u8,
    len: u8,
    buf: [u8; ADDR_MAX],
}

impl Addr {
    /// Copies an address (cut at 20 octets).
    pub fn from_address(a: &Address) -> Addr {
        Addr::new(a.ton, a.npi, &a.addr)
    }

    /// An address from parts (cut at 20 octets).
    pub fn new(ton: u8, npi: u8, addr: &[u8]) -> Addr {
        let n = addr.len().min(ADDR_MAX);
        let mut buf = [0u8; ADDR_MAX];
        buf[..n].copy_from_slice(&addr[..n]);
        Addr { ton, npi, len: n as u8, buf }
    }

    /// The address digits.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    fn put(&self, out: &mut BytesMut) {
        out.put_u8(self.ton);
        out.put_u8(self.npi);
        put_cstr(out, self.as_bytes());
    }
}

/// A receipt waiting to be sent.
#[derive(Debug, Clone)]
pub struct ReceiptData {
    /// The id given in the submit_sm_resp.
    pub id: IdText,
    /// The receipt's originator: the submit's destination.
    pub source: Addr,
    /// The receipt's recipient: the submit's originator.
    pub dest: Addr,
    /// The final state.
    pub state: MessageState,
    /// Unix seconds of the submit.
    pub submit_unix: u64,
    text: [u8; RECEIPT_TEXT_LEN],
    text_len: u8,
}

impl ReceiptData {
    /// A receipt for the submit `sm`. The quoted text keeps printable ASCII of text codings only
    /// (binary and UCS-2 are not quoted).
    pub fn new(id: IdText, sm: &SubmitView<'_>, state: MessageState, submit_unix: u64) -> ReceiptData {
        let mut text = [0u8; RECEIPT_TEXT_LEN];
        let mut text_len = 0;
        if matches!(sm.data_coding, 0 | 1 | 3) {
            // Skip the UDH of a concatenated part.
            let body = if sm.esm_class & 0x40 != 0 {
                let udhl = sm.short_message.first().map_or(0, |&l| usize::from(l) + 1);
                sm.short_message.get(udhl..).unwrap_or_default()
            } else {
                sm.short_message
            };
            for (d, &s) in text.iter_mut().zip(body.iter()) {
                *d = if (0x20..0x7F).contains(&s) { s } else { b'.' };
                text_len += 1;
            }
        }
        ReceiptData {
            id,
            source: Addr::new(sm.dest.0, sm.dest.1, sm.dest.2),
            dest: Addr::new(sm.source.0, sm.source.1, sm.source.2),
            state,
            submit_unix,
            text,
            text_len,
        }
    }

    /// The quoted text.
    pub fn text(&self) -> &[u8] {
        &self.text[..usize::from(self.text_len)]
    }
}

/// The err: code and network_error_code the simulator reports for each state (GSM codes:
/// 1 unknown subscriber, 27 absent subscriber, 11 teleservice not provisioned).
pub const fn err_code(state: MessageState) -> u16 {
    match state {
        MessageState::Undeliverable => 1,
        MessageState::Expired => 27,
        MessageState::Rejected => 11,
        _ => 0,
    }
}

thread_local! {
    /// The last second formatted on this thread and its YYMMDDhhmmss digits: receipts of one
    /// second share them, so the calendar arithmetic runs once a second, not twice a receipt.
    static DATE_CACHE: std::cell::Cell<(u64, [u8; 12])> = const { std::cell::Cell::new((u64::MAX, [0; 12])) };
}

/// A date as YYMMDDhhmm or YYMMDDhhmmss (UTC) from Unix seconds.
#[inline]
pub fn put_date(out: &mut BytesMut, unix: u64, digits: u8) {
    let (secs, mut text) = DATE_CACHE.get();
    if secs != unix {
        let (y, mo, d, h, mi, s) = civil(unix);
        for (i, v) in [y % 100, mo, d, h, mi, s].into_iter().enumerate() {
            text[2 * i] = b'0' + (v / 10 % 10) as u8;
            text[2 * i + 1] = b'0' + (v % 10) as u8;
        }
        DATE_CACHE.set((unix, text));
    }
    out.put_slice(&text[..if digits >= 12 { 12 } else { 10 }]);
}

fn put2(out: &mut BytesMut, v: u32) {
    out.put_u8(b'0' + (v / 10 % 10) as u8);
    out.put_u8(b'0' + (v % 10) as u8);
}

/// UTC calendar fields of Unix seconds (H. Hinnant's days-to-civil).
pub fn civil(unix: u64) -> (u32, u32, u32, u32, u32, u32) {
    let days = (unix / 86_400) as i64;
    let rem = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as u32, m as u32, d as u32, (rem / 3600) as u32, (rem / 60 % 60) as u32, (rem % 60) as u32)
}

#[inline]
fn put_key(out: &mut BytesMut, key: &[u8], upper: bool) {
    if upper {
        out.extend(key.iter().map(u8::to_ascii_uppercase));
    } else {
        out.put_slice(key);
    }
}

/// Writes the Appendix B text of a receipt.
pub fn put_receipt_text(out: &mut BytesMut, r: &ReceiptData, opts: &ReceiptOptions, done_unix: u64) {
    let up = opts.upper_case_keys;
    let delivered = r.state == MessageState::Delivered;
    put_key(out, b"id:", up);
    out.put_slice(r.id.quoted(opts.id_quote).as_bytes());
    put_key(out, b" sub:", up);
    out.put_slice(b"001");
    put_key(out, b" dlvrd:", up);
    out.put_slice(if delivered { b"001" } else { b"000" });
    put_key(out, b" submit date:", up);
    put_date(out, r.submit_unix, opts.date_digits);
    put_key(out, b" done date:", up);
    put_date(out, done_unix, opts.date_digits);
    put_key(out, b" stat:", up);
    out.put_slice(r.state.stat_word().as_bytes());
    put_key(out, b" err:", up);
    let e = err_code(r.state);
    out.put_u8(b'0' + (e / 100 % 10) as u8);
    put2(out, u32::from(e % 100));
    put_key(out, b" text:", up);
    out.put_slice(r.text());
}

/// Writes a deliver_sm carrying the receipt `r` (esm_class 0x04), with the TLVs unless the
/// no-TLV quirk is on; or, with `opts.data_sm`, a data_sm with the TLVs and the text in
/// message_payload.
pub fn put_receipt(out: &mut BytesMut, seq: u32, r: &ReceiptData, opts: &ReceiptOptions, done_unix: u64) {
    if opts.data_sm {
        return put_receipt_data_sm(out, seq, r, opts, done_unix);
    }
    out.reserve(256);
    let start = begin(out, CommandId::DELIVER_SM, CommandStatus::ESME_ROK, seq);
    out.put_u8(0); // service_type ""
    r.source.put(out);
    r.dest.put(out);
    out.put_slice(&[ESM_CLASS_RECEIPT, 0, 0]); // esm_class, protocol_id, priority_flag
    out.put_u8(0); // schedule_delivery_time ""
    out.put_u8(0); // validity_period ""
    out.put_slice(&[0, 0, 0, 0]); // registered_delivery, replace_if_present, data_coding, sm_default_msg_id
    let len_at = out.len();
    out.put_u8(0);
    put_receipt_text(out, r, opts, done_unix);
    let sm_len = out.len() - len_at - 1;
    // The text is at most ~150 octets (36-character id, 12-digit dates, 20 quoted): always < 255.
    out[len_at] = sm_len.min(254) as u8;
    if opts.tlvs {
        put_receipt_tlvs(out, r, opts);
    }
    finish(out, start);
}

/// receipted_message_id, message_state and (for a failure) network_error_code.
fn put_receipt_tlvs(out: &mut BytesMut, r: &ReceiptData, opts: &ReceiptOptions) {
    let id = r.id.quoted(opts.id_quote);
    out.put_u16(tag::RECEIPTED_MESSAGE_ID);
    out.put_u16(id.as_bytes().len() as u16 + 1);
    put_cstr(out, id.as_bytes());
    out.put_u16(tag::MESSAGE_STATE);
    out.put_u16(1);
    out.put_u8(r.state.as_u8());
    let e = err_code(r.state);
    if e != 0 {
        out.put_u16(tag::NETWORK_ERROR_CODE);
        out.put_u16(3);
        out.put_u8(3); // GSM
        out.put_u16(e);
    }
}

/// The common head of a data_sm: service_type, addresses, esm_class, registered_delivery and
/// data_coding (0).
fn put_data_sm_head(out: &mut BytesMut, source: &Addr, dest: &Addr, esm_class: u8) {
    out.put_u8(0); // service_type ""
    source.put(out);
    dest.put(out);
    out.put_slice(&[esm_class, 0, 0]); // esm_class, registered_delivery, data_coding
}

/// A receipt as data_sm: the TLVs (always: a data_sm receipt has nothing else to match on) and
/// the Appendix B text in message_payload, as the vendors that send them do.
fn put_receipt_data_sm(out: &mut BytesMut, seq: u32, r: &ReceiptData, opts: &ReceiptOptions, done_unix: u64) {
    out.reserve(320);
    let start = begin(out, CommandId::DATA_SM, CommandStatus::ESME_ROK, seq);
    put_data_sm_head(out, &r.source, &r.dest, ESM_CLASS_RECEIPT);
    put_receipt_tlvs(out, r, opts);
    out.put_u16(tag::MESSAGE_PAYLOAD);
    let len_at = out.len();
    out.put_u16(0);
    put_receipt_text(out, r, opts, done_unix);
    let len = (out.len() - len_at - 2) as u16;
    out[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
    finish(out, start);
}

/// Writes a deliver_sm carrying an MO message (esm_class 0, GSM 7-bit), or with `data_sm` a
/// data_sm with the text in message_payload.
pub fn put_mo(out: &mut BytesMut, seq: u32, source: &Addr, dest: &Addr, text: &[u8], data_sm: bool) {
    if data_sm {
        let text = &text[..text.len().min(usize::from(u16::MAX))];
        out.reserve(64 + text.len());
        let start = begin(out, CommandId::DATA_SM, CommandStatus::ESME_ROK, seq);
        put_data_sm_head(out, source, dest, 0);
        out.put_u16(tag::MESSAGE_PAYLOAD);
        out.put_u16(text.len() as u16);
        out.put_slice(text);
        return finish(out, start);
    }
    out.reserve(64 + text.len());
    let start = begin(out, CommandId::DELIVER_SM, CommandStatus::ESME_ROK, seq);
    out.put_u8(0);
    source.put(out);
    dest.put(out);
    out.put_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let text = &text[..text.len().min(254)];
    out.put_u8(text.len() as u8);
    out.put_slice(text);
    finish(out, start);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgid::{IdFormat, IdQuote, format_id};
    use smppgw_codec::receipt::Receipt;
    use smppgw_codec::{Body, Decoder};

    fn sample(state: MessageState) -> ReceiptData {
        let id = format_id(IdFormat::Hex, 0, 0xabc);
        let sm = SubmitView {
            source: (1, 1, b"15550001111"),
            dest: (1, 1, b"447700900123"),
            esm_class: 0,
            registered_delivery: 1,
            data_coding: 0,
            short_message: b"Hello there, this is a test",
        };
        ReceiptData::new(id, &sm, state, 1_764_097_200)
    }

    #[test]
    fn civil_dates_are_right() {
        // Goal: the calendar arithmetic gives known dates.
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(civil(1_764_097_245), (2025, 11, 25, 19, 0, 45));
    }

    #[test]
    fn receipt_decodes_and_parses_back_with_the_codec() {
        // Goal: the deliver_sm is valid SMPP, a receipt by esm_class, and the codec reads id,
        // state and err from both its text and its TLVs.
        let r = sample(MessageState::Undeliverable);
        let mut out = BytesMut::new();
        put_receipt(&mut out, 5, &r, &ReceiptOptions::default(), 1_764_097_260);
        let pdu = Decoder::default().decode(&mut out).unwrap().unwrap();
        let Body::DeliverSm(d) = pdu.body else { panic!("not deliver_sm") };
        assert!(smppgw_codec::receipt::is_receipt(d.esm_class));
        assert_eq!(&d.source.addr[..], b"447700900123");
        assert_eq!(
            &d.short_message[..],
            &b"id:0000000000000abc sub:001 dlvrd:000 submit date:2511251900 done date:2511251901 stat:UNDELIV err:001 text:Hello there, this is"[..]
        );
        let parsed = Receipt::parse_bytes(&d.short_message).unwrap();
        assert_eq!(parsed.id.as_bytes(), b"0000000000000abc");
        assert_eq!(parsed.stat, MessageState::Undeliverable);
        assert_eq!(d.tlvs.receipted_message_id().unwrap().as_ref(), b"0000000000000abc");
        assert_eq!(d.tlvs.message_state(), Some(5));
        assert_eq!(d.tlvs.network_error_code().unwrap().error_code, 1);
    }

    #[test]
    fn quirks_still_parse() {
        // Goal: upper-case keys, 12-digit dates and no TLVs are what the switches say, and the
        // codec's lenient parser still reads them.
        let r = sample(MessageState::Delivered);
        let opts = ReceiptOptions {
            tlvs: false,
            upper_case_keys: true,
            date_digits: 12,
            ..ReceiptOptions::default()
        };
        let mut out = BytesMut::new();
        put_receipt(&mut out, 6, &r, &opts, 1_764_097_260);
        let pdu = Decoder::default().decode(&mut out).unwrap().unwrap();
        let Body::DeliverSm(d) = pdu.body else { panic!("not deliver_sm") };
        assert!(d.tlvs.is_empty());
        let text = String::from_utf8_lossy(&d.short_message).into_owned();
        assert!(
            text.starts_with("ID:0000000000000abc SUB:001 DLVRD:001 SUBMIT DATE:251125190000 "),
            "{text}"
        );
        let parsed = Receipt::parse_bytes(&d.short_message).unwrap();
        assert_eq!(parsed.stat, MessageState::Delivered);
        assert_eq!(parsed.done_date.unwrap().second, Some(0));
    }

    #[test]
    fn mo_is_a_plain_deliver_sm() {
        // Goal: MO messages decode as deliver_sm that are not receipts.
        let mut out = BytesMut::new();
        put_mo(&mut out, 9, &Addr::new(1, 1, b"15551234567"), &Addr::new(0, 0, b"12345"), b"hi", false);
        let pdu = Decoder::default().decode(&mut out).unwrap().unwrap();
        let Body::DeliverSm(d) = pdu.body else { panic!("not deliver_sm") };
        assert!(!smppgw_codec::receipt::is_receipt(d.esm_class));
        assert_eq!(&d.short_message[..], b"hi");
    }

    #[test]
    fn data_sm_receipts_and_mo_carry_tlvs_and_the_text_in_message_payload() {
        // Goal: with the data_sm switch, receipts are data_sm with esm_class 0x04, the TLVs and
        // the Appendix B text in message_payload; MO is a data_sm with its text there.
        let r = sample(MessageState::Delivered);
        let opts = ReceiptOptions { data_sm: true, ..ReceiptOptions::default() };
        let mut out = BytesMut::new();
        put_receipt(&mut out, 7, &r, &opts, 1_764_097_260);
        let pdu = Decoder::default().decode(&mut out).unwrap().unwrap();
        assert!(out.is_empty(), "one whole frame");
        let Body::DataSm(d) = pdu.body else { panic!("not data_sm: {pdu:?}") };
        assert!(smppgw_codec::receipt::is_receipt(d.esm_class));
        assert_eq!((&d.source.addr[..], &d.dest.addr[..]), (&b"447700900123"[..], &b"15550001111"[..]));
        assert_eq!(d.tlvs.receipted_message_id().unwrap().as_ref(), b"0000000000000abc");
        assert_eq!(d.tlvs.message_state(), Some(MessageState::Delivered.as_u8()));
        let text = d.tlvs.message_payload().unwrap();
        assert_eq!(Receipt::parse_bytes(&text).unwrap().id.as_bytes(), b"0000000000000abc");

        let mut out = BytesMut::new();
        put_mo(&mut out, 9, &Addr::new(1, 1, b"15551234567"), &Addr::new(0, 0, b"12345"), b"hi there", true);
        let pdu = Decoder::default().decode(&mut out).unwrap().unwrap();
        let Body::DataSm(d) = pdu.body else { panic!("not data_sm: {pdu:?}") };
        assert!(!smppgw_codec::receipt::is_receipt(d.esm_class));
        assert_eq!(&d.tlvs.message_payload().unwrap()[..], b"hi there");
    }

    #[test]
    fn receipts_quote_the_id_as_configured() {
        // Goal: each quoting quirk changes the id in both the text and receipted_message_id,
        // and only as it says.
        let r = sample(MessageState::Delivered);
        for (quote, want) in [
            (IdQuote::Same, &b"0000000000000abc"[..]),
            (IdQuote::Upper, b"0000000000000ABC"),
            (IdQuote::Padded, b"00000000000000000abc"),
            (IdQuote::Decimal, b"2748"),
        ] {
            let opts = ReceiptOptions { id_quote: quote, ..ReceiptOptions::default() };
            let mut out = BytesMut::new();
            put_receipt(&mut out, 8, &r, &opts, 1_764_097_260);
            let pdu = Decoder::default().decode(&mut out).unwrap().unwrap();
            let Body::DeliverSm(d) = pdu.body else { panic!("not deliver_sm") };
            assert_eq!(d.tlvs.receipted_message_id().unwrap().as_ref(), want, "{quote:?}");
            assert_eq!(Receipt::parse_bytes(&d.short_message).unwrap().id.as_bytes(), want, "{quote:?}");
        }
    }
}
