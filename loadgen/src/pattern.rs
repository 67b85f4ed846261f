//! Number patterns for source and destination addresses, so that routes and rate keys vary.
//!
//! A pattern is literal characters with placeholders, always of one fixed width so that pre-built
//! PDUs can be patched in place:
//!
//! - `{rand:N}`: N random digits, e.g. `1555{rand:7}`;
//! - `{seq:N}`: an N-digit counter, zero-padded, wrapping at 10^N, e.g. `4477{seq:8}`;
//! - `FIRST..LAST`: the whole pattern is a range of equal-width numbers walked in order and wrapped,
//!   e.g. `447700000000..447700009999`.
//!
//! With several sessions, counters and ranges are split between them so that they do not repeat
//! each other's numbers.

use crate::rng::Rng;

/// Longest address the patterns may produce: SMPP source_addr/destination_addr are 21 octets
/// counting the NUL.
pub const ADDR_LEN_MAX: usize = 20;
/// Digits in one placeholder (u64 arithmetic, wrapping at 10^N).
const PLACEHOLDER_DIGITS_MAX: usize = 18;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(Vec<u8>),
    Rand(usize),
    Seq(usize),
}

/// A parsed pattern; [`Pattern::instance`] gives the per-session generator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    pieces: Vec<Piece>,
    range: Option<(u64, u64)>,
    width: usize,
}

impl Pattern {
    /// Parses a pattern; errors say what is wrong and where.
    pub fn parse(s: &str) -> Result<Pattern, String> {
        if let Some((a, b)) = s.split_once("..") {
            let ok = |x: &str| !x.is_empty() && x.bytes().all(|c| c.is_ascii_digit());
            if !ok(a) || !ok(b) || a.len() != b.len() {
                return Err(format!("range {s:?}: both ends must be digits of the same width"));
            }
            if a.len() > PLACEHOLDER_DIGITS_MAX {
                return Err(format!("range {s:?}: at most {PLACEHOLDER_DIGITS_MAX} digits"));
            }
            let (lo, hi) =
                (a.parse::<u64>().map_err(|e| e.to_string())?, b.parse::<u64>().map_err(|e| e.to_string())?);
            if lo > hi {
                return Err(format!("range {s:?}: first is above last"));
            }
            return Ok(Pattern {
                text: s.to_string(),
                pieces: Vec::new(),
                range: Some((lo, hi)),
                width: a.len(),
            });
        }
        let mut pieces = Vec::new();
        let mut width = 0usize;
        let mut rest = s;
        while !rest.is_empty() {
            match rest.find('{') {
                Some(0) => {
                    let end = rest.find('}').ok_or_else(|| format!("pattern {s:?}: '{{' without '}}'"))?;
                    let inner = &rest[1..end];
                    let (kind, n) = inner
                        .split_once(':')
                        .ok_or_else(|| format!("pattern {s:?}: expected {{rand:N}} or {{seq:N}}"))?;
                    let n: usize =
                        n.trim().parse().map_err(|_| format!("pattern {s:?}: bad digit count {n:?}"))?;
                    if n == 0 || n > PLACEHOLDER_DIGITS_MAX {
                        return Err(format!(
                            "pattern {s:?}: digit count must be 1..={PLACEHOLDER_DIGITS_MAX}"
                        ));
                    }
                    pieces.push(match kind.trim() {
                        "rand" => Piece::Rand(n),
                        "seq" => Piece::Seq(n),
                        other => return Err(format!("pattern {s:?}: unknown placeholder {other:?}")),
                    });
                    width += n;
                    rest = &rest[end + 1..];
                }
                Some(i) => {
                    pieces.push(Piece::Lit(rest.as_bytes()[..i].to_vec()));
                    width += i;
                    rest = &rest[i..];
                }
                None => {
                    pieces.push(Piece::Lit(rest.as_bytes().to_vec()));
                    width += rest.len();
                    rest = "";
                }
            }
        }
        if width == 0 {
            return Err("empty address pattern".into());
        }
        if width > ADDR_LEN_MAX {
            return Err(format!("pattern {s:?} gives {width} characters, more than {ADDR_LEN_MAX}"));
        }
        if !s.is_ascii() {
            return Err(format!("pattern {s:?}: addresses are ASCII"));
        }
        Ok(Pattern { text: s.to_string(), pieces, range: None, width })
    }

    /// Width of every address this pattern gives.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Whether every address is the same (no placeholder, no range).
    pub fn is_constant(&self) -> bool {
        self.range.is_none() && self.pieces.iter().all(|p| matches!(p, Piece::Lit(_)))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The generator of session `index` of `sessions`: its counters start at its share of the space.
    pub fn instance(&self, index: usize, sessions: usize) -> PatternGen {
        let sessions = sessions.max(1) as u64;
        let index = index as u64 % sessions;
        let (range, range_pos) = match self.range {
            Some((lo, hi)) => {
                let span = hi - lo + 1;
                (Some((lo, span)), span / sessions * index)
            }
            None => (None, 0),
        };
        let seq_span: u64 = self
            .pieces
            .iter()
            .filter_map(|p| if let Piece::Seq(n) = p { Some(10u64.pow(*n as u32)) } else { None })
            .next()
            .unwrap_or(1);
        PatternGen { pattern: self.clone(), range, pos: range_pos.max(seq_span / sessions * index) }
    }
}

/// Produces the addresses of one session.
#[derive(Debug, Clone)]
pub struct PatternGen {
    pattern: Pattern,
    range: Option<(u64, u64)>,
    pos: u64,
}

impl PatternGen {
    /// Width of every address.
    pub fn width(&self) -> usize {
        self.pattern.width
    }

    /// Writes the next address into `dst`, which is exactly [`PatternGen::width`] long.
    pub fn fill(&mut self, rng: &mut Rng, dst: &mut [u8]) {
        debug_assert_eq!(dst.len(), self.pattern.width);
        let pos = self.pos;
        self.pos = self.pos.wrapping_add(1);
        if let Some((lo, span)) = self.range {
            put_digits(dst, lo + pos % span);
            return;
        }
        let mut at = 0;
        for p in &self.pattern.pieces {
            match p {
                Piece::Lit(l) => {
                    dst[at..at + l.len()].copy_from_slice(l);
                    at += l.len();
                }
                Piece::Rand(n) => {
                    put_digits(&mut dst[at..at + n], rng.below(10u64.pow(*n as u32)));
                    at += n;
                }
                Piece::Seq(n) => {
                    put_digits(&mut dst[at..at + n], pos % 10u64.pow(*n as u32));
                    at += n;
                }
            }
        }
    }

    /// The next address as a string (for tests and display).
    pub fn next_string(&mut self, rng: &mut Rng) -> String {
        let mut b = vec![0u8; self.width()];
        self.fill(rng, &mut b);
        String::from_utf8_lossy(&b).into_owned()
    }
}

/// Writes `v` zero-padded into all of `dst` (keeping the low digits if it does not fit).
#[inline]
pub fn put_digits(dst: &mut [u8], mut v: u64) {
    for d in dst.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rand_placeholder_keeps_prefix_and_width() {
        // Goal: `1555{rand:7}` gives 11-digit numbers starting 1555.
        let p = Pattern::parse("1555{rand:7}").unwrap();
        assert_eq!(p.width(), 11);
        let mut g = p.instance(0, 1);
        let mut r = Rng::new(3);
        for _ in 0..100 {
            let s = g.next_string(&mut r);
            assert!(s.starts_with("1555") && s.len() == 11 && s.bytes().all(|c| c.is_ascii_digit()), "{s}");
        }
    }

    #[test]
    fn ranges_walk_in_order_and_wrap_split_between_sessions() {
        // Goal: a range is walked in order, wraps, and sessions start at their share.
        let p = Pattern::parse("100..103").unwrap();
        let mut r = Rng::new(0);
        let mut g = p.instance(0, 1);
        let got: Vec<String> = (0..6).map(|_| g.next_string(&mut r)).collect();
        assert_eq!(got, ["100", "101", "102", "103", "100", "101"]);
        let mut g1 = p.instance(1, 2);
        assert_eq!(g1.next_string(&mut r), "102");
    }

    #[test]
    fn seq_counts_zero_padded() {
        // Goal: `{seq:3}` counts 000, 001, ... after the literal.
        let p = Pattern::parse("44{seq:3}").unwrap();
        let mut g = p.instance(0, 1);
        let mut r = Rng::new(0);
        assert_eq!(g.next_string(&mut r), "44000");
        assert_eq!(g.next_string(&mut r), "44001");
    }

    #[test]
    fn bad_patterns_are_refused_with_a_reason() {
        // Goal: malformed or over-long patterns are errors, never panics.
        for bad in [
            "",
            "{rand:0}",
            "{rand:x}",
            "1{foo:2}",
            "12{rand:3",
            "1..22",
            "9..1",
            "123456789012345678901",
            "{rand:19}",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Pattern::parse("12345").unwrap().is_constant());
    }
}
