//! 10DLC campaigns: the rate limit of a campaign, found from a message's source number, and the
//! daily cap of its brand. `Config` has no field for them yet, so they travel beside it in
//! [`super::DbConfig`], validated here against [`limits`].

use std::collections::HashMap;

use smppgw_engine::config::ErrorKind;
use smppgw_engine::config::limits::Limit;

use super::Problem;

/// Hard ceilings of the campaign settings.
pub mod limits {
    use smppgw_engine::config::limits::Limit;

    /// Number of campaigns.
    pub const CAMPAIGNS: Limit = Limit {
        min: 0,
        max: 100_000,
        why: "every campaign and its numbers are held in memory on every node",
    };

    /// `segments_per_minute`; 0 = no campaign limit.
    pub const SEGMENTS_PER_MINUTE: Limit = Limit {
        min: 0,
        max: 60_000_000,
        why: "a million segments per second is the pacer's ceiling; above it use 0 (no limit)",
    };

    /// `smppgw_brands.daily_cap_segments`; 0 = no cap.
    pub const BRAND_DAILY_CAP_SEGMENTS: Limit = Limit {
        min: 0,
        max: 4_000_000_000,
        why: "a cap above 4 billion segments a day limits nothing a brand sends; use 0 (no cap)",
    };

    /// Source numbers or prefixes of one campaign.
    pub const SOURCES_PER_CAMPAIGN_MAX: usize = 10_000;

    /// Length of a campaign or brand id (The Campaign Registry's are 7 characters).
    pub const ID_LEN_MAX: usize = 64;

    /// A source prefix is a prefix of an SMPP source_addr: at most 20 characters.
    pub const SOURCE_PREFIX_LEN_MAX: usize = 20;
}

/// A 10DLC campaign, joined with its brand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Campaign {
    /// The Campaign Registry's id (`C...`), unique.
    pub campaign_id: String,
    /// Its brand's id (`B...`).
    pub brand_id: String,
    /// Source numbers (or prefixes of them) whose messages count against this campaign: digits
    /// after an optional '+'; each belongs to one campaign.
    pub source_prefixes: Vec<String>,
    /// Segments per minute over all nodes; 0 = no campaign limit.
    pub segments_per_minute: u32,
    /// Segments per day over all campaigns of the brand; 0 = no cap.
    pub brand_daily_cap_segments: u32,
}

/// Every problem of `campaigns`.
pub(crate) fn validate(campaigns: &[Campaign]) -> Vec<Problem> {
    const TABLE: &str = "smppgw_campaigns";
    let mut problems = Vec::new();
    let mut out_of_range = |table: &'static str, label: &str, field: &str, value: u64, limit: &Limit| {
        if !limit.contains(value) {
            problems.push(Problem::new(
                table,
                ErrorKind::OutOfRange { value, min: limit.min, max: limit.max },
                format!(
                    "{label}: {field} = {value} is out of range {}..={} ({})",
                    limit.min, limit.max, limit.why
                ),
            ));
        }
    };
    out_of_range(TABLE, "campaigns", "count", campaigns.len() as u64, &limits::CAMPAIGNS);
    for c in campaigns {
        let label = format!("campaign '{}'", c.campaign_id);
        out_of_range(
            TABLE,
            &label,
            "segments_per_minute",
            u64::from(c.segments_per_minute),
            &limits::SEGMENTS_PER_MINUTE,
        );
        out_of_range(
            "smppgw_brands",
            &format!("brand '{}'", c.brand_id),
            "daily_cap_segments",
            u64::from(c.brand_daily_cap_segments),
            &limits::BRAND_DAILY_CAP_SEGMENTS,
        );
    }
    let mut seen_ids: HashMap<String, &str> = HashMap::new();
    let mut sources: HashMap<&str, (&str, &str)> = HashMap::new();
    for c in campaigns {
        let label = format!("campaign '{}'", c.campaign_id);
        for (field, id) in [("campaign_id", &c.campaign_id), ("brand_id", &c.brand_id)] {
            if let Err(why) = check_id(id) {
                problems.push(Problem::new(TABLE, ErrorKind::Invalid, format!("{label}: {field} {why}")));
            }
        }
        if let Some(first) = seen_ids.insert(c.campaign_id.to_ascii_lowercase(), &c.campaign_id) {
            problems.push(Problem::new(
                TABLE,
                ErrorKind::Duplicate,
                format!("{label}: campaign_id differs only in case from campaign '{first}'"),
            ));
        }
        if c.source_prefixes.len() > limits::SOURCES_PER_CAMPAIGN_MAX {
            problems.push(Problem::new(
                "smppgw_campaign_numbers",
                ErrorKind::TooLong { len: c.source_prefixes.len(), max: limits::SOURCES_PER_CAMPAIGN_MAX },
                format!(
                    "{label} has {} source numbers; at most {} are accepted",
                    c.source_prefixes.len(),
                    limits::SOURCES_PER_CAMPAIGN_MAX
                ),
            ));
        }
        for source in &c.source_prefixes {
            if let Err(why) = check_source(source) {
                problems.push(Problem::new(
                    "smppgw_campaign_numbers",
                    ErrorKind::Invalid,
                    format!("{label}: source number '{source}' {why}"),
                ));
                continue;
            }
            let key = source.strip_prefix('+').unwrap_or(source);
            match sources.get(key) {
                Some(&(other, other_source)) if other != c.campaign_id => problems.push(Problem::new(
                    "smppgw_campaign_numbers",
                    ErrorKind::Duplicate,
                    format!(
                        "{label}: source number '{source}' also belongs to campaign '{other}' (as \
                         '{other_source}'); a number counts against one campaign only"
                    ),
                )),
                Some(_) => {}
                None => {
                    sources.insert(key, (&c.campaign_id, source));
                }
            }
        }
    }
    problems
}

fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > limits::ID_LEN_MAX {
        return Err(format!("must be 1..={} characters", limits::ID_LEN_MAX));
    }
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(format!("'{id}' may only use letters, digits, '_' and '-'"));
    }
    Ok(())
}

fn check_source(source: &str) -> Result<(), String> {
    let digits = source.strip_prefix('+').unwrap_or(source);
    if digits.is_empty() {
        return Err("is empty; a campaign is found from its source numbers".to_owned());
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("may only hold digits after an optional '+'".to_owned());
    }
    if source.len() > limits::SOURCE_PREFIX_LEN_MAX {
        return Err(format!(
            "is {} characters; an SMPP address has at most {}",
            source.len(),
            limits::SOURCE_PREFIX_LEN_MAX
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaign(id: &str, sources: &[&str]) -> Campaign {
        Campaign {
            campaign_id: id.to_owned(),
            brand_id: "B1".to_owned(),
            source_prefixes: sources.iter().map(|s| (*s).to_owned()).collect(),
            segments_per_minute: 600,
            brand_daily_cap_segments: 0,
        }
    }

    #[test]
    fn a_number_in_two_campaigns_is_refused_and_a_clean_list_passes() {
        assert!(
            validate(&[campaign("C1", &["15550001", "+1555002"]), campaign("C2", &["1555003"])]).is_empty()
        );
        let problems = validate(&[campaign("C1", &["15550001"]), campaign("C2", &["+15550001"])]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].kind, ErrorKind::Duplicate);
        assert!(problems[0].message.contains("also belongs to campaign 'C1'"), "{}", problems[0]);
    }

    #[test]
    fn bad_ids_sources_and_rates_are_each_reported() {
        let mut c = campaign("C 1", &["12a", ""]);
        c.segments_per_minute = u32::MAX;
        let problems = validate(&[c]);
        assert_eq!(problems.len(), 4, "{problems:?}");
    }
}
