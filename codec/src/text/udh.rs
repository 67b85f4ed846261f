//! User Data Header parsing (3GPP TS 23.040 9.2.3.24) for a short_message sent with esm_class UDHI.

use bytes::Bytes;

use super::TextError;
use super::segment::{Concat, IEI_CONCAT_8, IEI_CONCAT_16, RefWidth};

/// IEI of application port addressing with 8-bit ports.
const IEI_PORTS_8: u8 = 0x04;
/// IEI of application port addressing with 16-bit ports.
const IEI_PORTS_16: u8 = 0x05;

/// The concatenation element of a UDH and the reference width it used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UdhConcat {
    /// Reference, total and sequence number (validated: 1 <= seq <= total).
    pub info: Concat,
    /// IEI 0x00 (8-bit reference) or 0x08 (16-bit reference).
    pub width: RefWidth,
}

/// Application port addressing (IEI 0x04 with 8-bit ports, 0x05 with 16-bit ports).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ports {
    /// Destination port.
    pub dst: u16,
    /// Originator port.
    pub src: u16,
    /// Whether the ports were sent as 16-bit (IEI 0x05).
    pub wide: bool,
}

/// A short_message split into its UDH and the payload after it, both zero-copy slices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserData {
    /// The whole header, UDHL octet included.
    pub udh: Bytes,
    /// The concatenation element, if the header has one.
    pub concat: Option<UdhConcat>,
    /// The port addressing element, if the header has one.
    pub ports: Option<Ports>,
    /// What follows the header. For packed GSM it starts with
    /// [`super::gsm::fill_bits_for_udh`]`(udh.len())` fill bits.
    pub payload: Bytes,
}

/// Parses the UDH at the start of `short_message` (call only when esm_class has UDHI, 0x40).
///
/// UDHL and every element length are bounds-checked. Unknown elements are skipped. A concatenation or
/// port element of the wrong length, or with seq 0, total 0 or seq over total, is an error; 23.040 would
/// have a handset ignore such an element, but a gateway that did so would deliver a fragment as a whole
/// message. When an element repeats, the last one counts (23.040 9.2.3.24).
pub fn parse_udh(short_message: &Bytes) -> Result<UserData, TextError> {
    let Some(&udhl) = short_message.first() else {
        return Err(TextError::UdhTruncated { need: 1, len: 0 });
    };
    let udh_len = 1 + usize::from(udhl);
    let Some(mut ies) = short_message.get(1..udh_len) else {
        return Err(TextError::UdhTruncated { need: udh_len, len: short_message.len() });
    };
    let (mut concat, mut ports) = (None, None);
    let mut offset = 1;
    while let [iei, iedl, rest @ ..] = ies {
        let Some(data) = rest.get(..usize::from(*iedl)) else {
            return Err(TextError::IeTruncated { offset });
        };
        let expect = |expected: u8| {
            if *iedl == expected {
                Ok(())
            } else {
                Err(TextError::IeLength { iei: *iei, len: *iedl, expected })
            }
        };
        match *iei {
            IEI_CONCAT_8 => {
                expect(3)?;
                if let &[ref_num, total, seq] = data {
                    let info = Concat { ref_num: u16::from(ref_num), total, seq }.validate()?;
                    concat = Some(UdhConcat { info, width: RefWidth::Bits8 });
                }
            }
            IEI_CONCAT_16 => {
                expect(4)?;
                if let &[hi, lo, total, seq] = data {
                    let info = Concat { ref_num: u16::from_be_bytes([hi, lo]), total, seq }.validate()?;
                    concat = Some(UdhConcat { info, width: RefWidth::Bits16 });
                }
            }
            IEI_PORTS_8 => {
                expect(2)?;
                if let &[dst, src] = data {
                    ports = Some(Ports { dst: u16::from(dst), src: u16::from(src), wide: false });
                }
            }
            IEI_PORTS_16 => {
                expect(4)?;
                if let &[d0, d1, s0, s1] = data {
                    let (dst, src) = (u16::from_be_bytes([d0, d1]), u16::from_be_bytes([s0, s1]));
                    ports = Some(Ports { dst, src, wide: true });
                }
            }
            _ => {}
        }
        ies = &rest[data.len()..];
        offset += 2 + data.len();
    }
    if !ies.is_empty() {
        // One octet left: an IEI without its length.
        return Err(TextError::IeTruncated { offset });
    }
    Ok(UserData {
        udh: short_message.slice(..udh_len),
        concat,
        ports,
        payload: short_message.slice(udh_len..),
    })
}

#[cfg(test)]
mod tests {
    use super::super::segment::put_concat_udh;
    use super::*;
    use bytes::BytesMut;
    use proptest::prelude::*;

    #[test]
    fn parses_8bit_reference() {
        // Goal: IEI 0x00 gives ref / total / seq and a zero-copy payload slice.
        let sm = Bytes::from_static(&[0x05, 0x00, 0x03, 0xAB, 0x03, 0x02, b'h', b'i']);
        let ud = parse_udh(&sm).unwrap();
        let info = Concat { ref_num: 0xAB, total: 3, seq: 2 };
        assert_eq!(ud.concat, Some(UdhConcat { info, width: RefWidth::Bits8 }));
        assert_eq!(&ud.payload[..], b"hi");
        assert_eq!(ud.udh.len(), 6);
        assert_eq!(ud.payload.as_ptr(), sm[6..].as_ptr());
    }

    #[test]
    fn udh_round_trips_for_both_widths() {
        // Goal: what put_concat_udh writes, parse_udh reads back, for both IEIs.
        for width in [RefWidth::Bits8, RefWidth::Bits16] {
            for info in
                [Concat { ref_num: 0xA5, total: 1, seq: 1 }, Concat { ref_num: 0x00FF, total: 255, seq: 255 }]
            {
                let mut buf = BytesMut::new();
                put_concat_udh(&mut buf, width, info);
                assert_eq!(buf.len(), width.udh_len());
                buf.extend_from_slice(b"payload");
                let ud = parse_udh(&buf.freeze()).unwrap();
                assert_eq!(ud.concat, Some(UdhConcat { info, width }));
                assert_eq!(&ud.payload[..], b"payload");
            }
        }
        let mut buf = BytesMut::new();
        put_concat_udh(&mut buf, RefWidth::Bits16, Concat { ref_num: 0xBEEF, total: 2, seq: 1 });
        assert_eq!(&buf[..], &[0x06, 0x08, 0x04, 0xBE, 0xEF, 0x02, 0x01]);
        assert_eq!(parse_udh(&buf.freeze()).unwrap().concat.map(|c| c.info.ref_num), Some(0xBEEF));
    }

    #[test]
    fn skips_and_exposes_other_elements() {
        // Goal: port addressing is exposed, unknown elements are skipped, the last concat element counts.
        let sm = Bytes::from_static(&[
            0x11, // UDHL 17
            0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0, // ports 16-bit: 2948 <- 9200
            0x70, 0x01, 0xFF, // unknown IE
            0x00, 0x03, 0x01, 0x02, 0x01, // concat 8-bit, replaced by the next
            0x08, 0x04, 0x01, // start of...
        ]);
        assert_eq!(parse_udh(&sm), Err(TextError::IeTruncated { offset: 15 }));
        let sm = Bytes::from_static(&[
            0x14, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0, 0x70, 0x01, 0xFF, 0x00, 0x03, 0x01, 0x02, 0x01, 0x08,
            0x04, 0x01, 0x02, 0x03, 0x02, b'x',
        ]);
        let ud = parse_udh(&sm).unwrap();
        assert_eq!(ud.ports, Some(Ports { dst: 2948, src: 9200, wide: true }));
        let info = Concat { ref_num: 0x0102, total: 3, seq: 2 };
        assert_eq!(ud.concat, Some(UdhConcat { info, width: RefWidth::Bits16 }));
        assert_eq!(&ud.payload[..], b"x");
        let sm = Bytes::from_static(&[0x04, 0x04, 0x02, 0x10, 0x20]);
        assert_eq!(parse_udh(&sm).unwrap().ports, Some(Ports { dst: 0x10, src: 0x20, wide: false }));
        assert!(parse_udh(&sm).unwrap().payload.is_empty());
    }

    #[test]
    fn refuses_malformed_headers() {
        // Goal: every bound a peer can break is an error, never a panic or an out-of-range slice.
        let err = |bytes: &'static [u8]| parse_udh(&Bytes::from_static(bytes)).unwrap_err();
        assert_eq!(err(&[]), TextError::UdhTruncated { need: 1, len: 0 });
        assert_eq!(err(&[0x05, 0x00, 0x03, 0x01]), TextError::UdhTruncated { need: 6, len: 4 });
        assert_eq!(err(&[0x03, 0x00, 0x03, 0x01]), TextError::IeTruncated { offset: 1 });
        assert_eq!(err(&[0x01, 0x00]), TextError::IeTruncated { offset: 1 });
        assert_eq!(err(&[0x04, 0x00, 0x02, 0x01, 0x02]), TextError::IeLength { iei: 0, len: 2, expected: 3 });
        assert_eq!(err(&[0x05, 0x00, 0x03, 0x01, 0x00, 0x01]), TextError::ConcatInvalid { total: 0, seq: 1 });
        assert_eq!(err(&[0x05, 0x00, 0x03, 0x01, 0x02, 0x00]), TextError::ConcatInvalid { total: 2, seq: 0 });
        assert_eq!(err(&[0x05, 0x00, 0x03, 0x01, 0x02, 0x03]), TextError::ConcatInvalid { total: 2, seq: 3 });
        // UDHL 0 is an empty header.
        let ud = parse_udh(&Bytes::from_static(&[0x00, b'a'])).unwrap();
        assert_eq!((ud.concat, ud.ports, &ud.payload[..]), (None, None, &b"a"[..]));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(ud) = parse_udh(&Bytes::from(bytes.clone())) {
                prop_assert_eq!(ud.udh.len() + ud.payload.len(), bytes.len());
            }
        }
    }
}
