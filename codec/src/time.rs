//! SMPP time fields (SMPP 3.4 section 7.1.1): `schedule_delivery_time`, `validity_period` and
//! the dates of query_sm_resp, in their absolute and relative forms.

/// Whether `t` (without its NUL) is a time SMPP allows: empty (none given), the absolute form
/// `YYMMDDhhmmsstnnp` (a real date and time, tenths `t`, a quarter-hour offset `nn` of at most
/// 48, `p` '+' or '-'), or the relative form `YYMMDDhhmmss000R` (an amount of each unit, so no
/// calendar ranges apply; section 7.1.1.2 gives `tnn` as 000, and we accept any digits there, as
/// ESMEs send them).
pub fn is_valid_time(t: &[u8]) -> bool {
    if t.is_empty() {
        return true;
    }
    let Ok(&[ref digits @ .., p]) = <&[u8; 16]>::try_from(t) else { return false };
    if !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let n = |i: usize| u32::from(digits[i] - b'0') * 10 + u32::from(digits[i + 1] - b'0');
    match p {
        b'R' => true,
        b'+' | b'-' => {
            let (month, day, hour, minute, second, quarters) = (n(2), n(4), n(6), n(8), n(10), n(13));
            (1..=12).contains(&month)
                && (1..=days_in_month(n(0), month)).contains(&day)
                && hour <= 23
                && minute <= 59
                && second <= 59
                && quarters <= 48
        }
        _ => false,
    }
}

/// The longest span [`relative_time`] spells exactly: 99 days, 23:59:59. Years and months are
/// left at 00 because their length in seconds depends on the calendar the SMSC counts in.
pub const RELATIVE_SECS_MAX: u32 = 99 * 86_400 + 86_399;

/// `secs` from now in SMPP's relative form `YYMMDDhhmmss000R` (7.1.1.2), in days, hours,
/// minutes and seconds; a longer span is cut to [`RELATIVE_SECS_MAX`]. 300 s is
/// `000000000500000R`.
pub fn relative_time(secs: u32) -> [u8; 16] {
    let s = secs.min(RELATIVE_SECS_MAX);
    let fields = [0, 0, s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60];
    let mut t = *b"000000000000000R";
    for (i, v) in fields.into_iter().enumerate() {
        // Each field is below 100 (days at most 99).
        t[2 * i] = b'0' + (v / 10) as u8;
        t[2 * i + 1] = b'0' + (v % 10) as u8;
    }
    t
}

/// Days in `month` of the two-digit year `yy` (taken as 20yy: every year divisible by 4 in
/// 2000-2099 is a leap year).
fn days_in_month(yy: u32, month: u32) -> u32 {
    match month {
        2 if yy.is_multiple_of(4) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_and_relative_times_are_told_from_malformed_ones() {
        for ok in [
            "",
            "261127120000000+",
            "261127235959948-",
            "280229000000000+",
            "000000010000000R",
            "991231235959000R",
            "000000000030004R",
        ] {
            assert!(is_valid_time(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "ABCDEFGHIJKLMNOP",
            "261327120000000+",
            "261100120000000+",
            "270229000000000+",
            "260431000000000+",
            "261127240000000+",
            "261127126000000+",
            "261127120060000+",
            "261127120000049+",
            "2611271200000001",
            "26112712000000+",
            "261127120000000+0",
            "2611271200000 0R",
        ] {
            assert!(!is_valid_time(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn relative_times_spell_days_hours_minutes_and_seconds_and_are_capped() {
        for (secs, want) in [
            (0, "000000000000000R"),
            (300, "000000000500000R"),
            (86_399, "000000235959000R"),
            (90_061, "000001010101000R"),
            (RELATIVE_SECS_MAX, "000099235959000R"),
            (RELATIVE_SECS_MAX + 1, "000099235959000R"),
            (u32::MAX, "000099235959000R"),
        ] {
            let t = relative_time(secs);
            assert_eq!(std::str::from_utf8(&t), Ok(want), "{secs} s");
            assert!(is_valid_time(&t));
        }
    }
}
