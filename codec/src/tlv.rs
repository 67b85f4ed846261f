//! Optional parameters (TLVs).
//!
//! The TLV area of a PDU is kept as one validated [`Bytes`] slice of the input and read on demand,
//! so decoding allocates nothing and unknown or vendor-specific TLVs re-encode byte for byte.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::PduError;

/// TLV tags from SMPP 3.4 section 5.3.2 and the SMPP 5.0 additions.
#[allow(missing_docs)]
pub mod tag {
    pub const DEST_ADDR_SUBUNIT: u16 = 0x0005;
    pub const DEST_NETWORK_TYPE: u16 = 0x0006;
    pub const DEST_BEARER_TYPE: u16 = 0x0007;
    pub const DEST_TELEMATICS_ID: u16 = 0x0008;
    pub const SOURCE_ADDR_SUBUNIT: u16 = 0x000D;
    pub const SOURCE_NETWORK_TYPE: u16 = 0x000E;
    pub const SOURCE_BEARER_TYPE: u16 = 0x000F;
    pub const SOURCE_TELEMATICS_ID: u16 = 0x0010;
    pub const QOS_TIME_TO_LIVE: u16 = 0x0017;
    pub const PAYLOAD_TYPE: u16 = 0x0019;
    pub const ADDITIONAL_STATUS_INFO_TEXT: u16 = 0x001D;
    pub const RECEIPTED_MESSAGE_ID: u16 = 0x001E;
    pub const MS_MSG_WAIT_FACILITIES: u16 = 0x0030;
    pub const PRIVACY_INDICATOR: u16 = 0x0201;
    pub const SOURCE_SUBADDRESS: u16 = 0x0202;
    pub const DEST_SUBADDRESS: u16 = 0x0203;
    pub const USER_MESSAGE_REFERENCE: u16 = 0x0204;
    pub const USER_RESPONSE_CODE: u16 = 0x0205;
    pub const SOURCE_PORT: u16 = 0x020A;
    pub const DESTINATION_PORT: u16 = 0x020B;
    pub const SAR_MSG_REF_NUM: u16 = 0x020C;
    pub const LANGUAGE_INDICATOR: u16 = 0x020D;
    pub const SAR_TOTAL_SEGMENTS: u16 = 0x020E;
    pub const SAR_SEGMENT_SEQNUM: u16 = 0x020F;
    pub const SC_INTERFACE_VERSION: u16 = 0x0210;
    pub const CALLBACK_NUM_PRES_IND: u16 = 0x0302;
    pub const CALLBACK_NUM_ATAG: u16 = 0x0303;
    pub const NUMBER_OF_MESSAGES: u16 = 0x0304;
    pub const CALLBACK_NUM: u16 = 0x0381;
    pub const DPF_RESULT: u16 = 0x0420;
    pub const SET_DPF: u16 = 0x0421;
    pub const MS_AVAILABILITY_STATUS: u16 = 0x0422;
    pub const NETWORK_ERROR_CODE: u16 = 0x0423;
    pub const MESSAGE_PAYLOAD: u16 = 0x0424;
    pub const DELIVERY_FAILURE_REASON: u16 = 0x0425;
    pub const MORE_MESSAGES_TO_SEND: u16 = 0x0426;
    pub const MESSAGE_STATE: u16 = 0x0427;
    pub const CONGESTION_STATE: u16 = 0x0428;
    pub const USSD_SERVICE_OP: u16 = 0x0501;
    pub const BILLING_IDENTIFICATION: u16 = 0x060B;
    pub const DISPLAY_TIME: u16 = 0x1201;
    pub const SMS_SIGNAL: u16 = 0x1203;
    pub const MS_VALIDITY: u16 = 0x1204;
    pub const ALERT_ON_MESSAGE_DELIVERY: u16 = 0x130C;
    pub const ITS_REPLY_TYPE: u16 = 0x1380;
    pub const ITS_SESSION_INFO: u16 = 0x1383;
}

/// Most octets of a receipted_message_id value: [`crate::receipt::ID_LEN_MAX`] characters and the
/// NUL. One more than SMPP 3.4's 65, which SMSCs writing 65-character ids overrun. A value this
/// long without its NUL holds an id too long for [`crate::receipt`], which passes it over.
pub const RECEIPTED_MESSAGE_ID_LEN_MAX: usize = crate::receipt::ID_LEN_MAX + 1;

/// Length bounds of the TLVs whose definition fixes them (value octets, inclusive). Unknown tags and
/// tags with free-form values are accepted at any length.
const fn length_bounds(t: u16) -> Option<(usize, usize)> {
    use tag::*;
    Some(match t {
        DEST_ADDR_SUBUNIT
        | DEST_NETWORK_TYPE
        | DEST_BEARER_TYPE
        | SOURCE_ADDR_SUBUNIT
        | SOURCE_NETWORK_TYPE
        | SOURCE_BEARER_TYPE
        | PAYLOAD_TYPE
        | MS_MSG_WAIT_FACILITIES
        | PRIVACY_INDICATOR
        | USER_RESPONSE_CODE
        | LANGUAGE_INDICATOR
        | SAR_TOTAL_SEGMENTS
        | SAR_SEGMENT_SEQNUM
        | SC_INTERFACE_VERSION
        | CALLBACK_NUM_PRES_IND
        | NUMBER_OF_MESSAGES
        | DPF_RESULT
        | SET_DPF
        | MS_AVAILABILITY_STATUS
        | DELIVERY_FAILURE_REASON
        | MORE_MESSAGES_TO_SEND
        | MESSAGE_STATE
        | CONGESTION_STATE
        | DISPLAY_TIME
        | ITS_REPLY_TYPE => (1, 1),
        // alert_on_message_delivery is zero length in 3.4 and one octet in 5.0: accept both.
        ALERT_ON_MESSAGE_DELIVERY => (0, 1),
        // ms_validity is one octet in 3.4; SMPP 5.0 appends an optional 3-octet behaviour spec.
        MS_VALIDITY => (1, 4),
        DEST_TELEMATICS_ID
        | USER_MESSAGE_REFERENCE
        | SOURCE_PORT
        | DESTINATION_PORT
        | SAR_MSG_REF_NUM
        | SMS_SIGNAL
        | ITS_SESSION_INFO => (2, 2),
        // One octet in SMPP 3.4 (5.3.2.9; Wireshark and jsmpp read it so), two in SMPP 5.0.
        SOURCE_TELEMATICS_ID => (1, 2),
        QOS_TIME_TO_LIVE => (4, 4),
        NETWORK_ERROR_CODE => (3, 3),
        // A C-octet string of 65 octets with its NUL in SMPP 3.4, but SMSCs send 65-character ids
        // (and [`crate::receipt`] accepts them): 65 characters and the NUL.
        RECEIPTED_MESSAGE_ID => (1, RECEIPTED_MESSAGE_ID_LEN_MAX),
        ADDITIONAL_STATUS_INFO_TEXT => (1, 256),
        SOURCE_SUBADDRESS | DEST_SUBADDRESS => (2, 23),
        CALLBACK_NUM => (4, 19),
        CALLBACK_NUM_ATAG => (0, 65),
        USSD_SERVICE_OP => (1, 1),
        _ => return None,
    })
}

/// One optional parameter: a tag and its value, a slice of the PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlv {
    /// The parameter tag.
    pub tag: u16,
    /// The value octets (without tag and length).
    pub value: Bytes,
}

/// network_error_code: the network type (1 ANSI-136, 2 IS-95, 3 GSM, ...) and its error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkErrorCode {
    /// Network type octet.
    pub network_type: u8,
    /// The network's error code.
    pub error_code: u16,
}

/// The TLV area of a PDU: a validated sequence of tag, length, value.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Tlvs {
    raw: Bytes,
}

impl std::fmt::Debug for Tlvs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter().map(|t| (t.tag, t.value))).finish()
    }
}

impl Tlvs {
    /// No optional parameters.
    pub const fn new() -> Tlvs {
        Tlvs { raw: Bytes::new() }
    }

    /// Validates the TLV area of a PDU: every header and value is inside the slice, and every known
    /// fixed-size TLV has its size. Unknown tags pass untouched.
    pub fn decode(raw: Bytes) -> Result<Tlvs, PduError> {
        validate(&raw)?;
        Ok(Tlvs { raw })
    }

    /// A TLV area that [`validate`] accepted.
    #[inline(always)]
    pub(crate) fn from_validated(raw: Bytes) -> Tlvs {
        Tlvs { raw }
    }

    /// The raw TLV area, exactly as it will be encoded.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// `true` when there are no optional parameters.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Iterates the parameters in wire order.
    pub fn iter(&self) -> TlvIter<'_> {
        TlvIter { raw: &self.raw, pos: 0 }
    }

    /// The value of the first parameter with this tag.
    pub fn get(&self, t: u16) -> Option<Bytes> {
        self.find(t).map(|at| self.raw.slice(at))
    }

    /// The value of the first parameter with this tag, borrowed: no reference count is taken
    /// (each is an atomic increment and decrement on the read buffer the PDU came from).
    pub fn get_ref(&self, t: u16) -> Option<&[u8]> {
        self.find(t).and_then(|at| self.raw.get(at))
    }

    /// Where the value of the first parameter with this tag lies in the raw area.
    fn find(&self, t: u16) -> Option<std::ops::Range<usize>> {
        let raw: &[u8] = &self.raw;
        let mut pos = 0;
        while let Some(&[t0, t1, l0, l1]) = raw.get(pos..pos + 4) {
            let start = pos + 4;
            // Decode validated the area; the check keeps a hand-built value from panicking.
            let end =
                start.checked_add(usize::from(u16::from_be_bytes([l0, l1]))).filter(|&e| e <= raw.len())?;
            if u16::from_be_bytes([t0, t1]) == t {
                return Some(start..end);
            }
            pos = end;
        }
        None
    }

    /// Whether a parameter with this tag is present.
    pub fn contains(&self, t: u16) -> bool {
        self.find(t).is_some()
    }

    fn get_u8(&self, t: u16) -> Option<u8> {
        self.get_ref(t).and_then(|v| v.first().copied())
    }

    fn get_u16(&self, t: u16) -> Option<u16> {
        self.get_ref(t).and_then(|v| if v.len() == 2 { Some(u16::from_be_bytes([v[0], v[1]])) } else { None })
    }

    /// receipted_message_id, without the C-octet string's trailing NUL.
    pub fn receipted_message_id(&self) -> Option<Bytes> {
        self.get(tag::RECEIPTED_MESSAGE_ID).map(strip_nul)
    }
    /// message_state (see [`crate::receipt::MessageState`]); `None` for one that is not one octet
    /// (a deliver_sm may carry one: see [`Tlvs::well_formed`]).
    pub fn message_state(&self) -> Option<u8> {
        match self.get_ref(tag::MESSAGE_STATE) {
            Some(&[state]) => Some(state),
            _ => None,
        }
    }
    /// network_error_code.
    pub fn network_error_code(&self) -> Option<NetworkErrorCode> {
        self.get_ref(tag::NETWORK_ERROR_CODE).and_then(|v| {
            (v.len() == 3).then(|| NetworkErrorCode {
                network_type: v[0],
                error_code: u16::from_be_bytes([v[1], v[2]]),
            })
        })
    }
    /// sar_msg_ref_num.
    pub fn sar_msg_ref_num(&self) -> Option<u16> {
        self.get_u16(tag::SAR_MSG_REF_NUM)
    }
    /// sar_total_segments.
    pub fn sar_total_segments(&self) -> Option<u8> {
        self.get_u8(tag::SAR_TOTAL_SEGMENTS)
    }
    /// sar_segment_seqnum.
    pub fn sar_segment_seqnum(&self) -> Option<u8> {
        self.get_u8(tag::SAR_SEGMENT_SEQNUM)
    }
    /// message_payload.
    pub fn message_payload(&self) -> Option<Bytes> {
        self.get(tag::MESSAGE_PAYLOAD)
    }
    /// user_message_reference.
    pub fn user_message_reference(&self) -> Option<u16> {
        self.get_u16(tag::USER_MESSAGE_REFERENCE)
    }
    /// source_port.
    pub fn source_port(&self) -> Option<u16> {
        self.get_u16(tag::SOURCE_PORT)
    }
    /// destination_port.
    pub fn destination_port(&self) -> Option<u16> {
        self.get_u16(tag::DESTINATION_PORT)
    }
    /// payload_type.
    pub fn payload_type(&self) -> Option<u8> {
        self.get_u8(tag::PAYLOAD_TYPE)
    }
    /// more_messages_to_send.
    pub fn more_messages_to_send(&self) -> Option<u8> {
        self.get_u8(tag::MORE_MESSAGES_TO_SEND)
    }
    /// language_indicator.
    pub fn language_indicator(&self) -> Option<u8> {
        self.get_u8(tag::LANGUAGE_INDICATOR)
    }
    /// callback_num (digit mode, TON, NPI, then the digits).
    pub fn callback_num(&self) -> Option<Bytes> {
        self.get(tag::CALLBACK_NUM)
    }
    /// ms_validity (first octet: the validity behaviour).
    pub fn ms_validity(&self) -> Option<u8> {
        self.get_u8(tag::MS_VALIDITY)
    }
    /// sc_interface_version, carried in bind responses.
    pub fn sc_interface_version(&self) -> Option<u8> {
        self.get_u8(tag::SC_INTERFACE_VERSION)
    }
    /// ms_availability_status, carried in alert_notification.
    pub fn ms_availability_status(&self) -> Option<u8> {
        self.get_u8(tag::MS_AVAILABILITY_STATUS)
    }
    /// delivery_failure_reason, carried in data_sm_resp.
    pub fn delivery_failure_reason(&self) -> Option<u8> {
        self.get_u8(tag::DELIVERY_FAILURE_REASON)
    }
    /// additional_status_info_text, without the trailing NUL.
    pub fn additional_status_info_text(&self) -> Option<Bytes> {
        self.get(tag::ADDITIONAL_STATUS_INFO_TEXT).map(strip_nul)
    }
    /// congestion_state (SMPP 5.0): 0..=100, the peer's load.
    pub fn congestion_state(&self) -> Option<u8> {
        self.get_u8(tag::CONGESTION_STATE)
    }

    /// A copy with every parameter of tag `t` replaced by one holding `value` (appended when
    /// absent). Other parameters keep their order and bytes.
    pub fn with(&self, t: u16, value: &[u8]) -> Tlvs {
        let mut b = TlvsBuilder::with_capacity(self.raw.len() + 4 + value.len());
        let mut replaced = false;
        for tlv in self.iter() {
            if tlv.tag == t {
                if !replaced {
                    b = b.bytes(t, value);
                    replaced = true;
                }
            } else {
                b = b.bytes(tlv.tag, &tlv.value);
            }
        }
        if !replaced {
            b = b.bytes(t, value);
        }
        b.build()
    }

    /// A copy without the parameters whose length their definition does not allow: only a
    /// deliver_sm's receipt TLVs can have one (see [`crate::Decoder`]), and a deliver_sm passed
    /// on to an ESME must not carry them, which it could refuse.
    pub fn well_formed(&self) -> Tlvs {
        let mut b = TlvsBuilder::with_capacity(self.raw.len());
        for tlv in self.iter() {
            let fits = length_bounds(tlv.tag).is_none_or(|(min, max)| (min..=max).contains(&tlv.value.len()));
            if fits {
                b = b.bytes(tlv.tag, &tlv.value);
            }
        }
        b.build()
    }

    /// A copy without the parameters of tag `t`.
    pub fn without(&self, t: u16) -> Tlvs {
        let mut b = TlvsBuilder::with_capacity(self.raw.len());
        for tlv in self.iter().filter(|tlv| tlv.tag != t) {
            b = b.bytes(tlv.tag, &tlv.value);
        }
        b.build()
    }

    /// Starts building a TLV area.
    pub fn builder() -> TlvsBuilder {
        TlvsBuilder::with_capacity(32)
    }
}

/// Checks a TLV area: every header and value is inside `b`, and every known fixed-size TLV has its
/// size. Unknown tags pass untouched.
#[inline]
pub(crate) fn validate(b: &[u8]) -> Result<(), PduError> {
    validate_with(b, false)
}

/// The TLVs a receipt reads, whose values [`crate::receipt::Receipt::parse_with_tlvs`] checks.
const fn is_receipt_tag(t: u16) -> bool {
    matches!(t, tag::RECEIPTED_MESSAGE_ID | tag::MESSAGE_STATE | tag::NETWORK_ERROR_CODE)
}

/// [`validate`], but with `receipt_lengths_free` a receipt TLV (receipted_message_id,
/// message_state, network_error_code) of any length: for a deliver_sm, which only an SMSC sends
/// and which is answered before it is used, so that a receipt whose text is good is not refused
/// for a TLV the receipt parser would pass over anyway. Every header must still lie inside `b`.
#[inline]
pub(crate) fn validate_with(b: &[u8], receipt_lengths_free: bool) -> Result<(), PduError> {
    let mut pos = 0;
    while pos < b.len() {
        let rest = &b[pos..];
        if rest.len() < 4 {
            let tag = if rest.len() >= 2 { u16::from_be_bytes([rest[0], rest[1]]) } else { 0 };
            return Err(PduError::TlvTruncated { tag, remaining: rest.len() });
        }
        let t = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        if rest.len() - 4 < len {
            return Err(PduError::TlvTruncated { tag: t, remaining: rest.len() - 4 });
        }
        if let Some((min, max)) = length_bounds(t)
            && (len < min || len > max)
            && !(receipt_lengths_free && is_receipt_tag(t))
        {
            return Err(PduError::TlvLength { tag: t, len, min, max });
        }
        pos += 4 + len;
    }
    Ok(())
}

fn strip_nul(v: Bytes) -> Bytes {
    match v.iter().position(|&c| c == 0) {
        Some(n) => v.slice(..n),
        None => v,
    }
}

/// Iterator over [`Tlvs`], in wire order.
pub struct TlvIter<'a> {
    raw: &'a Bytes,
    pos: usize,
}

impl Iterator for TlvIter<'_> {
    type Item = Tlv;

    fn next(&mut self) -> Option<Tlv> {
        let b = &self.raw[self.pos..];
        if b.len() < 4 {
            return None;
        }
        let t = u16::from_be_bytes([b[0], b[1]]);
        let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
        // Decode validated the area; the check keeps a hand-built value from panicking.
        let end = (self.pos + 4).checked_add(len).filter(|&e| e <= self.raw.len())?;
        let value = self.raw.slice(self.pos + 4..end);
        self.pos = end;
        Some(Tlv { tag: t, value })
    }
}

/// Builds a TLV area in one buffer.
#[derive(Debug)]
pub struct TlvsBuilder {
    buf: BytesMut,
    /// Where the TLV area starts in `buf` (what precedes it belongs to the caller).
    start: usize,
}

impl TlvsBuilder {
    /// A builder with room for `cap` octets.
    pub fn with_capacity(cap: usize) -> TlvsBuilder {
        TlvsBuilder { buf: BytesMut::with_capacity(cap), start: 0 }
    }
    /// A builder that appends the TLV area to `buf`, after what it already holds; [`Self::split`]
    /// gives both back, sharing one allocation (a PDU's text and its TLVs, say).
    pub fn after(buf: BytesMut) -> TlvsBuilder {
        TlvsBuilder { start: buf.len(), buf }
    }
    /// Appends a parameter with raw octets. Values longer than 65535 octets are cut to 65535, the
    /// most a TLV length can say.
    pub fn bytes(mut self, t: u16, value: &[u8]) -> Self {
        let value = &value[..value.len().min(usize::from(u16::MAX))];
        self.buf.put_u16(t);
        self.buf.put_u16(value.len() as u16);
        self.buf.put_slice(value);
        self
    }
    /// Appends a one-octet parameter.
    pub fn u8(self, t: u16, v: u8) -> Self {
        self.bytes(t, &[v])
    }
    /// Appends a two-octet parameter.
    pub fn u16(self, t: u16, v: u16) -> Self {
        self.bytes(t, &v.to_be_bytes())
    }
    /// Appends a C-octet string parameter (the NUL is added).
    pub fn cstr(mut self, t: u16, v: &[u8]) -> Self {
        let v = &v[..v.len().min(usize::from(u16::MAX) - 1)];
        self.buf.put_u16(t);
        self.buf.put_u16(v.len() as u16 + 1);
        self.buf.put_slice(v);
        self.buf.put_u8(0);
        self
    }
    /// Finishes the area.
    pub fn build(self) -> Tlvs {
        self.split().1
    }
    /// Finishes the area: what `buf` held before it (see [`Self::after`]), and the area.
    pub fn split(self) -> (Bytes, Tlvs) {
        let mut all = self.buf.freeze();
        let raw = all.split_off(self.start);
        (all, Tlvs { raw })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_builder_after_other_content_gives_both_back_in_one_buffer() {
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(b"receipt text");
        let (text, tlvs) = TlvsBuilder::after(buf)
            .cstr(tag::RECEIPTED_MESSAGE_ID, b"ab12")
            .u8(tag::MESSAGE_STATE, 2)
            .split();
        assert_eq!(&text[..], b"receipt text");
        let alone =
            Tlvs::builder().cstr(tag::RECEIPTED_MESSAGE_ID, b"ab12").u8(tag::MESSAGE_STATE, 2).build();
        assert_eq!(tlvs, alone);
        assert_eq!(tlvs.message_state(), Some(2));
        assert_eq!(tlvs.receipted_message_id().as_deref(), Some(&b"ab12"[..]));
        // One allocation: the TLV area starts where the text ends.
        assert_eq!(tlvs.raw().as_ptr(), text.as_ptr().wrapping_add(text.len()));
    }

    #[test]
    fn unknown_vendor_tlv_is_kept_byte_for_byte() {
        let raw = Bytes::from_static(&[0x14, 0x00, 0x00, 0x03, 1, 2, 3, 0x04, 0x27, 0x00, 0x01, 2]);
        let t = Tlvs::decode(raw.clone()).unwrap();
        assert_eq!(t.raw(), &raw);
        assert_eq!(t.get(0x1400).unwrap().as_ref(), &[1, 2, 3]);
        assert_eq!(t.message_state(), Some(2));
    }

    #[test]
    fn lookups_by_tag_agree_with_iteration_and_find_the_first() {
        let raw = Bytes::from_static(&[
            0x14, 0x00, 0x00, 0x03, 1, 2, 3, // vendor-specific
            0x04, 0x27, 0x00, 0x01, 2, // message_state
            0x00, 0x1E, 0x00, 0x01, 0, // receipted_message_id, empty (its NUL only)
            0x14, 0x00, 0x00, 0x01, 9, // the vendor tag again
        ]);
        let t = Tlvs::decode(raw).unwrap();
        for tag in [0x1400, tag::MESSAGE_STATE, tag::RECEIPTED_MESSAGE_ID, tag::NETWORK_ERROR_CODE] {
            let first = t.iter().find(|x| x.tag == tag).map(|x| x.value);
            assert_eq!(t.get(tag), first, "tag {tag:#06x}");
            assert_eq!(t.get_ref(tag), first.as_deref(), "tag {tag:#06x}");
            assert_eq!(t.contains(tag), first.is_some());
        }
        assert_eq!(t.get_ref(0x1400), Some(&[1u8, 2, 3][..]), "the first of two");
        assert_eq!(t.get_ref(tag::RECEIPTED_MESSAGE_ID), Some(&[0u8][..]), "present, NUL only");
        assert_eq!(t.message_state(), Some(2));
    }

    #[test]
    fn bad_lengths_are_typed_errors() {
        let truncated = Bytes::from_static(&[0x04, 0x27, 0x00, 0x05, 1]);
        assert!(matches!(Tlvs::decode(truncated), Err(PduError::TlvTruncated { tag: 0x0427, .. })));
        let wrong = Bytes::from_static(&[0x04, 0x27, 0x00, 0x02, 1, 2]);
        let err = Tlvs::decode(wrong).unwrap_err();
        assert_eq!(err, PduError::TlvLength { tag: 0x0427, len: 2, min: 1, max: 1 });
        assert_eq!(err.command_status(), crate::CommandStatus::ESME_RINVPARLEN);
        let stub = Bytes::from_static(&[0x04]);
        assert!(matches!(Tlvs::decode(stub), Err(PduError::TlvTruncated { .. })));
    }

    #[test]
    fn source_telematics_id_is_accepted_in_both_versions() {
        // SMPP 3.4 (5.3.2.9) defines it with one octet, SMPP 5.0 with two: a PDU carrying the
        // 3.4 form was refused whole (a customer's submit, a vendor's receipt or MO).
        assert!(Tlvs::decode(Bytes::from_static(&[0x00, 0x10, 0, 1, 7])).is_ok());
        assert!(Tlvs::decode(Bytes::from_static(&[0x00, 0x10, 0, 2, 0, 7])).is_ok());
        assert!(Tlvs::decode(Bytes::from_static(&[0x00, 0x10, 0, 3, 0, 0, 7])).is_err());
    }

    #[test]
    fn alert_on_message_delivery_is_accepted_in_both_versions() {
        // SMPP 3.4 defines it with no value, SMPP 5.0 with one octet.
        assert!(Tlvs::decode(Bytes::from_static(&[0x13, 0x0C, 0, 0])).is_ok());
        assert!(Tlvs::decode(Bytes::from_static(&[0x13, 0x0C, 0, 1, 2])).is_ok());
    }

    #[test]
    fn with_replaces_in_place_and_keeps_order() {
        let t = Tlvs::builder()
            .u8(tag::MESSAGE_STATE, 2)
            .cstr(tag::RECEIPTED_MESSAGE_ID, b"abc")
            .u16(0x1401, 7)
            .build();
        let t2 = t.with(tag::RECEIPTED_MESSAGE_ID, b"xyz12\0");
        let tags: Vec<u16> = t2.iter().map(|x| x.tag).collect();
        assert_eq!(tags, vec![tag::MESSAGE_STATE, tag::RECEIPTED_MESSAGE_ID, 0x1401]);
        assert_eq!(t2.receipted_message_id().unwrap().as_ref(), b"xyz12");
        assert_eq!(t2.without(0x1401).iter().count(), 2);
    }
}
