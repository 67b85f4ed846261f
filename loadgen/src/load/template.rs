//! Pre-built submit_sm: every message variant of the mix is encoded once, with the codec; the hot
//! path copies the bytes and patches the sequence number, the two addresses and the concatenation
//! reference in place.

use bytes::{Bytes, BytesMut};
use smppgw_codec::text::{self, Encoding, Form, RefWidth};
use smppgw_codec::{Address, Body, HEADER_LEN, Pdu, SubmitSm};

use super::config::MessageMix;
use crate::limits::TEMPLATE_VARIANTS_MAX;
use crate::rng::Rng;

/// Lengths drawn from a range are spread over this many pre-built lengths.
const LENGTH_STEPS: usize = 4;

/// One submit_sm, encoded, with where to patch it.
#[derive(Debug, Clone)]
pub struct PartTemplate {
    /// The whole PDU (sequence number, addresses and reference to be patched).
    pub bytes: Bytes,
    /// Offset of source_addr.
    pub src_off: usize,
    /// Offset of destination_addr.
    pub dst_off: usize,
    /// Offset of the 8-bit concatenation reference in the UDH, for parts of a long message.
    pub ref_off: Option<usize>,
}

/// One message of the mix: one or more parts.
#[derive(Debug, Clone)]
pub struct Variant {
    /// The parts, in order.
    pub parts: Vec<PartTemplate>,
    /// What it is, for the report (`gsm7 40 chars`, `ucs2 300 chars, 5 parts`).
    pub label: String,
}

/// The message variants of a mix and how often each is drawn.
#[derive(Debug, Clone)]
pub struct Templates {
    /// The variants.
    pub variants: Vec<Variant>,
    cumulative: Vec<f64>,
    /// Width of every source address.
    pub src_width: usize,
    /// Width of every destination address.
    pub dst_width: usize,
}

fn sample_text(encoding: Encoding, chars: usize) -> String {
    let base = match encoding {
        Encoding::Ucs2 => "Привет! Съешь же ещё этих мягких французских булок, да выпей чаю. ",
        _ => "The quick brown fox jumps over the lazy dog 0123456789. ",
    };
    base.chars().cycle().take(chars).collect()
}

fn lengths(min: usize, max: usize) -> Vec<usize> {
    if min == max {
        return vec![min];
    }
    let mut v: Vec<usize> = (0..LENGTH_STEPS).map(|i| min + (max - min) * i / (LENGTH_STEPS - 1)).collect();
    v.dedup();
    v
}

impl Templates {
    /// Builds the variants of `mix`.
    pub fn build(mix: &MessageMix) -> Result<Templates, String> {
        let mut variants = Vec::new();
        let mut weights = Vec::new();
        if let Some(t) = &mix.text {
            let enc = text::choose_encoding(t);
            variants.push(build_variant(mix, t, enc)?);
            weights.push(1.0);
        } else {
            for (long, p_len) in [(false, 1.0 - mix.long_share), (true, mix.long_share)] {
                for (enc, p_enc) in [(Encoding::Gsm7, 1.0 - mix.ucs2_share), (Encoding::Ucs2, mix.ucs2_share)]
                {
                    let p = p_len * p_enc;
                    if p <= 0.0 {
                        continue;
                    }
                    let range = if long { mix.long_len } else { mix.text_len };
                    let ls = lengths(range.min, range.max);
                    for &n in &ls {
                        variants.push(build_variant(mix, &sample_text(enc, n), enc)?);
                        weights.push(p / ls.len() as f64);
                    }
                }
            }
        }
        if variants.is_empty() || variants.len() > TEMPLATE_VARIANTS_MAX {
            return Err(format!("{} message variants, need 1..={TEMPLATE_VARIANTS_MAX}", variants.len()));
        }
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let cumulative = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        Ok(Templates { variants, cumulative, src_width: mix.source.width(), dst_width: mix.dest.width() })
    }

    /// Draws a variant.
    #[inline]
    pub fn pick(&self, rng: &mut Rng) -> usize {
        if self.variants.len() == 1 {
            return 0;
        }
        let x = rng.unit();
        self.cumulative.iter().position(|&c| x < c).unwrap_or(self.variants.len() - 1)
    }
}

fn build_variant(mix: &MessageMix, t: &str, enc: Encoding) -> Result<Variant, String> {
    let parts =
        text::split(t, enc, Form::Udh(RefWidth::Bits8), 0).map_err(|e| format!("message text: {e}"))?;
    let src = vec![b'0'; mix.source.width()];
    let dst = vec![b'0'; mix.dest.width()];
    let mut out = Vec::with_capacity(parts.len());
    for p in &parts {
        let sm = SubmitSm {
            service_type: Bytes::copy_from_slice(mix.service_type.as_bytes()),
            source: Address::new(mix.source_ton_npi.0, mix.source_ton_npi.1, src.clone()),
            dest: Address::new(mix.dest_ton_npi.0, mix.dest_ton_npi.1, dst.clone()),
            esm_class: if p.udhi { text::ESM_CLASS_UDHI } else { 0 },
            registered_delivery: mix.registered_delivery,
            data_coding: enc.data_coding(),
            short_message: p.short_message.clone(),
            ..SubmitSm::default()
        };
        let mut b = BytesMut::new();
        Pdu::new(1, Body::SubmitSm(sm)).encode(&mut b);
        let src_off = HEADER_LEN + mix.service_type.len() + 1 + 2;
        let dst_off = src_off + src.len() + 1 + 2;
        let sm_off = b.len() - p.short_message.len();
        let ref_off = p.udhi.then_some(sm_off + 3);
        // The layout is SMPP 3.4 4.4.1's; check it rather than trust it.
        let ok = b.get(src_off..src_off + src.len()) == Some(&src[..])
            && b.get(dst_off..dst_off + dst.len()) == Some(&dst[..])
            && ref_off.is_none_or(|r| b.get(r - 3..r) == Some(&[5, 0, 3][..]));
        if !ok {
            return Err("internal: submit_sm template layout is not where expected".into());
        }
        out.push(PartTemplate { bytes: b.freeze(), src_off, dst_off, ref_off });
    }
    let label = format!(
        "{} {} chars{}",
        if enc == Encoding::Ucs2 { "ucs2" } else { "gsm7" },
        t.chars().count(),
        if out.len() > 1 { format!(", {} parts", out.len()) } else { String::new() }
    );
    Ok(Variant { parts: out, label })
}

/// Appends part `p` with its patches.
#[inline]
pub fn emit(out: &mut BytesMut, p: &PartTemplate, seq: u32, src: &[u8], dst: &[u8], ref_num: u8) {
    let start = out.len();
    out.extend_from_slice(&p.bytes);
    let pdu = &mut out[start..];
    pdu[12..16].copy_from_slice(&seq.to_be_bytes());
    pdu[p.src_off..p.src_off + src.len()].copy_from_slice(src);
    pdu[p.dst_off..p.dst_off + dst.len()].copy_from_slice(dst);
    if let Some(r) = p.ref_off {
        pdu[r] = ref_num;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::config::Lengths;
    use smppgw_codec::Decoder;

    #[test]
    fn patched_templates_decode_to_what_was_asked() {
        // Goal: a patched template is a valid submit_sm with our sequence number, addresses,
        // registered_delivery and text.
        let mix = MessageMix { registered_delivery: 1, ..MessageMix::default() };
        let t = Templates::build(&mix).unwrap();
        assert_eq!(t.variants.len(), 1);
        let mut out = BytesMut::new();
        emit(&mut out, &t.variants[0].parts[0], 77, b"15551234567", b"447712345678", 0);
        let pdu = Decoder::default().decode(&mut out).unwrap().unwrap();
        assert_eq!(pdu.sequence_number, 77);
        let Body::SubmitSm(sm) = pdu.body else { panic!() };
        assert_eq!(&sm.source.addr[..], b"15551234567");
        assert_eq!(&sm.dest.addr[..], b"447712345678");
        assert_eq!(sm.registered_delivery, 1);
        assert_eq!(sm.short_message.len(), 40);
    }

    #[test]
    fn long_messages_are_split_with_a_patched_udh_reference() {
        // Goal: long GSM and UCS-2 messages become several parts whose UDH carries our reference
        // and the right count, and the mix draws every variant.
        let mix = MessageMix {
            long_share: 0.5,
            ucs2_share: 0.5,
            long_len: Lengths { min: 300, max: 300 },
            ..MessageMix::default()
        };
        let t = Templates::build(&mix).unwrap();
        assert_eq!(t.variants.len(), 4);
        let ucs2_long = t.variants.iter().find(|v| v.label.starts_with("ucs2 300")).unwrap();
        assert_eq!(ucs2_long.parts.len(), 5, "{}", ucs2_long.label);
        let mut out = BytesMut::new();
        for (i, p) in ucs2_long.parts.iter().enumerate() {
            emit(&mut out, p, i as u32 + 1, b"15551234567", b"447712345678", 0xAB);
        }
        for i in 0..5u8 {
            let pdu = Decoder::default().decode(&mut out).unwrap().unwrap();
            let Body::SubmitSm(sm) = pdu.body else { panic!() };
            assert_eq!(sm.esm_class & 0x40, 0x40);
            assert_eq!(sm.data_coding, 8);
            assert_eq!(&sm.short_message[..6], &[5, 0, 3, 0xAB, 5, i + 1]);
        }
        let mut r = Rng::new(5);
        let mut seen = [0; 4];
        for _ in 0..4000 {
            seen[t.pick(&mut r)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
    }
}
