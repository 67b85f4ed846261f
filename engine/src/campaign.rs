//! US 10DLC campaign limits on the hot path: a submit's source number finds its campaign (longest
//! source prefix), which admits so many segments per UTC minute, and the campaign's brand, which
//! admits so many segments per UTC day over all its campaigns.
//!
//! Each limit is a local fixed-window counter on wall-clock time, one atomic shared by every core,
//! plus a [`Lease`] of the limit over all nodes (inactive, so admitting everything, until the
//! control plane activates it). A message is admitted only when the campaign and the brand both
//! admit it; what the campaign took is given back when the brand refuses, so a capped brand does
//! not also eat its campaigns' minutes. Messages from a source in no campaign are not limited here.
//! Nothing here reads the clock: the caller passes the time in.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use smppgw_codec::CommandStatus;

use crate::config::{BrandConfig, CampaignConfig};
use crate::hash::FxHashMap;
use crate::lease::{Lease, LeaseSpec};
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

/// A campaign's window: one UTC minute, in milliseconds.
pub const MINUTE_MS: u64 = 60_000;

/// A brand's window: one UTC day, in milliseconds (unix time has no leap seconds).
pub const DAY_MS: u64 = 86_400_000;

/// Units counted in fixed wall-clock windows, lock-free: the window's index (high 32 bits) and its
/// count (low 32 bits) share one atomic, so starting a new window and counting in it is one CAS.
#[derive(Debug, Default)]
pub struct FixedWindow {
    state: AtomicU64,
}

fn pack(window: u32, count: u32) -> u64 {
    (u64::from(window) << 32) | u64::from(count)
}

fn unpack(state: u64) -> (u32, u32) {
    ((state >> 32) as u32, state as u32)
}

/// The index of the window of `window_ms` that `unix_ms` falls in.
pub fn window_index(unix_ms: u64, window_ms: u64) -> u32 {
    u32::try_from(unix_ms / window_ms.max(1)).unwrap_or(u32::MAX)
}

impl FixedWindow {
    /// Counts `units` in window `window` if its count stays within `limit`; otherwise counts nothing.
    #[inline]
    pub fn try_add(&self, window: u32, units: u32, limit: u32) -> bool {
        self.state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                let (w, n) = unpack(s);
                // A core whose clock read is a little behind another's (one window at most)
                // counts in the newer window rather than reopening the old one; further behind,
                // the wall clock stepped back, and the count starts in the window it reads now
                // (else nothing would be admitted until the clock caught up again).
                let (w, n) = if window > w || w - window > 1 { (window, 0) } else { (w, n) };
                let total = n.checked_add(units)?;
                (total <= limit).then(|| pack(w, total))
            })
            .is_ok()
    }

    /// Takes back `units` counted in `window` (nothing once that window is over).
    pub fn give_back(&self, window: u32, units: u32) {
        let _ = self.state.fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
            let (w, n) = unpack(s);
            (w == window).then(|| pack(w, n.saturating_sub(units)))
        });
    }

    /// Units counted in `window` (0 when the counter is in another window).
    pub fn count(&self, window: u32) -> u32 {
        let (w, n) = unpack(self.state.load(Ordering::Acquire));
        if w == window { n } else { 0 }
    }
}

/// A campaign's counters, for /metrics (kept across reloads).
#[derive(Debug, Default)]
pub struct CampaignCounters {
    /// Segments admitted.
    pub segments: AtomicU64,
    /// Messages refused for the campaign's segments per minute.
    pub throttled: AtomicU64,
    /// Messages refused for its brand's daily cap.
    pub capped: AtomicU64,
}

/// A brand's counters, for /metrics (kept across reloads).
#[derive(Debug, Default)]
pub struct BrandCounters {
    /// Segments admitted over all its campaigns.
    pub segments: AtomicU64,
    /// Messages refused for its daily cap.
    pub capped: AtomicU64,
}

/// A campaign and its live state.
#[derive(Debug)]
pub struct CampaignRt {
    /// Its configuration.
    pub cfg: CampaignConfig,
    /// Its brand's index in [`CampaignTable::brands`] (`None` only in a config that did not validate).
    pub brand: Option<u32>,
    /// Segments this node admitted in the current UTC minute (kept across reloads that keep the limit).
    pub window: Arc<FixedWindow>,
    /// Its share of `segments_per_minute` over all nodes (inactive without a shared backend).
    pub lease: Arc<Lease>,
    /// Its counters.
    pub counters: Arc<CampaignCounters>,
    /// A hash of its id and its brand's, naming it across reloads (see
    /// [`CampaignTable::identity`]).
    identity: u64,
}

/// A brand and its live state.
#[derive(Debug)]
pub struct BrandRt {
    /// Its configuration.
    pub cfg: BrandConfig,
    /// Segments this node admitted in the current UTC day (kept across reloads that keep the cap).
    pub window: Arc<FixedWindow>,
    /// Its share of `daily_cap_segments` over all nodes (inactive without a shared backend).
    pub lease: Arc<Lease>,
    /// Its counters.
    pub counters: Arc<BrandCounters>,
}

/// Why a message was refused; either way the customer gets ESME_RTHROTTLED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignRefusal {
    /// The campaign's segments for this minute are spent.
    Campaign {
        /// Index in [`CampaignTable::campaigns`].
        campaign: u32,
    },
    /// The brand's segments for this UTC day are spent.
    Brand {
        /// Index in [`CampaignTable::campaigns`].
        campaign: u32,
        /// Index in [`CampaignTable::brands`].
        brand: u32,
    },
    /// The message has more segments than its campaign's minute or its brand's day allows
    /// whole: no retry can send it (refused for good, not throttled).
    TooLong {
        /// Index in [`CampaignTable::campaigns`].
        campaign: u32,
    },
}

impl CampaignRefusal {
    /// The gateway-wide counter this refusal counts in.
    pub fn counter(self, metrics: &Metrics) -> &AtomicU64 {
        match self {
            CampaignRefusal::Campaign { .. } | CampaignRefusal::TooLong { .. } => &metrics.throttled_campaign,
            CampaignRefusal::Brand { .. } => &metrics.capped_brand,
        }
    }

    /// The status the customer gets: ESME_RTHROTTLED (retry later), or ESME_RINVMSGLEN for a
    /// message no window can hold.
    pub fn status(self) -> CommandStatus {
        match self {
            CampaignRefusal::TooLong { .. } => CommandStatus::ESME_RINVMSGLEN,
            _ => CommandStatus::ESME_RTHROTTLED,
        }
    }
}

/// Every campaign and brand, with source prefix -> campaign searched longest first.
#[derive(Debug, Default)]
pub struct CampaignTable {
    by_prefix: FxHashMap<Vec<u8>, u32>,
    longest: usize,
    /// Bit n set: some campaign has a source prefix of n digits (n < 64), so lookups skip the
    /// lengths no campaign uses.
    lengths: u64,
    /// Campaigns in config order.
    pub campaigns: Vec<CampaignRt>,
    /// Brands in config order.
    pub brands: Vec<BrandRt>,
}

fn strip_plus(s: &[u8]) -> &[u8] {
    s.strip_prefix(b"+").unwrap_or(s)
}

/// Gives back units taken from a lease. An inactive lease took nothing, so it gets nothing.
fn return_to(lease: &Lease, units: u32) {
    if lease.is_active() {
        lease.grant(i64::from(units));
    }
}

/// [`return_to`] of units taken under lease generation `generation`: nothing once the lease
/// is in another window.
fn return_from(lease: &Lease, generation: u32, units: u32) {
    if lease.generation() == generation {
        return_to(lease, units);
    }
}

impl CampaignTable {
    /// Compiles `brands` and `campaigns`. With `prev` (the table being replaced) every campaign and
    /// brand keeps its counters, window and lease: what the current window counted stays counted
    /// under a changed limit (a cap lowered below what was sent today admits nothing more today,
    /// one raised admits the difference).
    pub fn build(
        brands: &[BrandConfig],
        campaigns: &[CampaignConfig],
        prev: Option<&CampaignTable>,
    ) -> CampaignTable {
        let old_brands: HashMap<&str, &BrandRt> =
            prev.map(|p| p.brands.iter().map(|b| (b.cfg.brand_id.as_str(), b)).collect()).unwrap_or_default();
        let old_campaigns: HashMap<&str, &CampaignRt> = prev
            .map(|p| p.campaigns.iter().map(|c| (c.cfg.campaign_id.as_str(), c)).collect())
            .unwrap_or_default();
        let mut t = CampaignTable::default();
        let mut brand_index: HashMap<&str, u32> = HashMap::new();
        for b in brands {
            let old = old_brands.get(b.brand_id.as_str());
            brand_index.entry(b.brand_id.as_str()).or_insert(t.brands.len() as u32);
            t.brands.push(BrandRt {
                cfg: b.clone(),
                window: old.map_or_else(Arc::default, |o| o.window.clone()),
                lease: old.map_or_else(Arc::default, |o| o.lease.clone()),
                counters: old.map_or_else(Arc::default, |o| o.counters.clone()),
            });
        }
        for c in campaigns {
            let idx = t.campaigns.len() as u32;
            let old = old_campaigns.get(c.campaign_id.as_str());
            for p in &c.source_prefixes {
                let p = strip_plus(p.as_bytes());
                // Validation refuses an empty prefix; one built in code would match every source.
                if p.is_empty() {
                    continue;
                }
                t.longest = t.longest.max(p.len());
                t.lengths |= if p.len() < 64 { 1 << p.len() } else { 0 };
                t.by_prefix.entry(p.to_vec()).or_insert(idx);
            }
            t.campaigns.push(CampaignRt {
                cfg: c.clone(),
                brand: brand_index.get(c.brand_id.as_str()).copied(),
                window: old.map_or_else(Arc::default, |o| o.window.clone()),
                lease: old.map_or_else(Arc::default, |o| o.lease.clone()),
                counters: old.map_or_else(Arc::default, |o| o.counters.clone()),
                identity: {
                    use std::hash::{Hash, Hasher};
                    let mut h = crate::hash::FxHasher::default();
                    (&c.campaign_id, &c.brand_id).hash(&mut h);
                    h.finish()
                },
            });
        }
        t
    }

    /// Whether no campaign has a source prefix (then no message is limited here).
    pub fn is_empty(&self) -> bool {
        self.by_prefix.is_empty()
    }

    /// The campaign of `source` (a leading '+' ignored, and ten national digits of a North
    /// American number, without a '+', read with their country code 1): the one with the
    /// longest matching prefix.
    pub fn lookup(&self, source: &[u8]) -> Option<u32> {
        if self.by_prefix.is_empty() {
            return None;
        }
        let international = source.first() == Some(&b'+');
        let source = strip_plus(source);
        let mut with_cc = [b'1'; 11];
        // NANP: area codes start with 2 to 9, so ten digits not starting with 1 are national;
        // after a '+' they are another country's whole number (+47 91234567).
        let source = if !international
            && source.len() == 10
            && source.iter().all(u8::is_ascii_digit)
            && source[0] >= b'2'
        {
            with_cc[1..].copy_from_slice(source);
            &with_cc[..]
        } else {
            source
        };
        for len in (1..=source.len().min(self.longest)).rev() {
            if len < 64 && self.lengths & (1 << len) == 0 {
                continue;
            }
            if let Some(&i) = self.by_prefix.get(&source[..len]) {
                return Some(i);
            }
        }
        None
    }

    /// Admits a message of `segments` from `source` at `unix_ms`: `Ok(Some(campaign))` when its
    /// campaign and brand both had room (they now count it), `Ok(None)` when the source is in no
    /// campaign, or why it was refused (then nothing stays counted).
    pub fn admit(&self, source: &[u8], segments: u32, unix_ms: u64) -> Result<Option<u32>, CampaignRefusal> {
        let Some(ci) = self.lookup(source) else { return Ok(None) };
        let Some(c) = self.campaigns.get(ci as usize) else { return Ok(None) };
        let per_minute = c.cfg.segments_per_minute;
        let minute = window_index(unix_ms, MINUTE_MS);
        let cap = c.brand.and_then(|bi| self.brands.get(bi as usize)).map_or(0, |b| b.cfg.daily_cap_segments);
        if (per_minute > 0 && segments > per_minute) || (cap > 0 && segments > cap) {
            c.counters.throttled.fetch_add(1, Ordering::Relaxed);
            return Err(CampaignRefusal::TooLong { campaign: ci });
        }
        if per_minute > 0 {
            if !c.window.try_add(minute, segments, per_minute) {
                c.counters.throttled.fetch_add(1, Ordering::Relaxed);
                return Err(CampaignRefusal::Campaign { campaign: ci });
            }
            if !c.lease.try_take(segments) {
                c.window.give_back(minute, segments);
                c.counters.throttled.fetch_add(1, Ordering::Relaxed);
                return Err(CampaignRefusal::Campaign { campaign: ci });
            }
        }
        if let Some(bi) = c.brand
            && let Some(b) = self.brands.get(bi as usize)
        {
            let cap = b.cfg.daily_cap_segments;
            if cap > 0 {
                let day = window_index(unix_ms, DAY_MS);
                let admitted = b.window.try_add(day, segments, cap)
                    && (b.lease.try_take(segments) || {
                        b.window.give_back(day, segments);
                        false
                    });
                if !admitted {
                    // The campaign's minute was not spent on a message that is not sent.
                    if per_minute > 0 {
                        c.window.give_back(minute, segments);
                        return_to(&c.lease, segments);
                    }
                    b.counters.capped.fetch_add(1, Ordering::Relaxed);
                    c.counters.capped.fetch_add(1, Ordering::Relaxed);
                    return Err(CampaignRefusal::Brand { campaign: ci, brand: bi });
                }
            }
            b.counters.segments.fetch_add(u64::from(segments), Ordering::Relaxed);
        }
        c.counters.segments.fetch_add(u64::from(segments), Ordering::Relaxed);
        Ok(Some(ci))
    }

    /// Takes back what [`CampaignTable::admit`] counted at `unix_ms` for a message of `segments`
    /// of campaign `ci` that was not sent after all (no route, no vendor, refused by them): a
    /// vendor outage must not spend a brand's daily cap on the customer's retries. Nothing goes
    /// back to a window that is over.
    pub fn give_back(&self, ci: u32, segments: u32, unix_ms: u64, lease_gens: [u32; 2]) {
        let Some(c) = self.campaigns.get(ci as usize) else { return };
        let now_ms = crate::core::unix_now_ms();
        // The window counter ignores an index that is over; the lease does not know windows.
        let still = |len| window_index(unix_ms, len) == window_index(now_ms, len);
        let uncount = |n: &std::sync::atomic::AtomicU64| {
            let _ = n.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(u64::from(segments)))
            });
        };
        if c.cfg.segments_per_minute > 0 && still(MINUTE_MS) {
            c.window.give_back(window_index(unix_ms, MINUTE_MS), segments);
            return_from(&c.lease, lease_gens[0], segments);
        }
        uncount(&c.counters.segments);
        if let Some(b) = c.brand.and_then(|bi| self.brands.get(bi as usize)) {
            if b.cfg.daily_cap_segments > 0 && still(DAY_MS) {
                b.window.give_back(window_index(unix_ms, DAY_MS), segments);
                return_from(&b.lease, lease_gens[1], segments);
            }
            uncount(&b.counters.segments);
        }
    }

    /// What names campaign `ci` and its brand across reloads (a hash of their ids): a refund
    /// after a reload goes to the campaign found for the source only when it is the same one.
    pub fn identity(&self, ci: u32) -> u64 {
        self.campaigns.get(ci as usize).map_or(0, |c| c.identity)
    }

    /// The generations of campaign `ci`'s lease and its brand's, for a later
    /// [`CampaignTable::give_back`].
    pub fn lease_gens(&self, ci: u32) -> [u32; 2] {
        let Some(c) = self.campaigns.get(ci as usize) else { return [0; 2] };
        let brand = c.brand.and_then(|bi| self.brands.get(bi as usize)).map_or(0, |b| b.lease.generation());
        [c.lease.generation(), brand]
    }

    /// The shared limits of the campaigns and brands that have one: `rate:campaign:{id}` (segments
    /// per minute) and `rate:brand:{id}` (segments per day).
    pub fn leases(&self) -> impl Iterator<Item = LeaseSpec> + '_ {
        let campaigns = self.campaigns.iter().filter(|c| c.cfg.segments_per_minute > 0).map(|c| LeaseSpec {
            key: format!("rate:campaign:{}", c.cfg.campaign_id),
            limit: u64::from(c.cfg.segments_per_minute),
            window_ms: MINUTE_MS,
            idle_burst: 1,
            lease: c.lease.clone(),
        });
        let brands = self.brands.iter().filter(|b| b.cfg.daily_cap_segments > 0).map(|b| LeaseSpec {
            key: format!("rate:brand:{}", b.cfg.brand_id),
            limit: u64::from(b.cfg.daily_cap_segments),
            window_ms: DAY_MS,
            idle_burst: 1,
            lease: b.lease.clone(),
        });
        campaigns.chain(brands)
    }
}

impl Snapshot {
    /// Admits a message of `segments` from `source` (of type of number `ton`) at `unix_ms`
    /// against its 10DLC campaign and brand (see [`CampaignTable::admit`]): the campaign's index,
    /// `None` for a source in no campaign, or why it must be answered ESME_RTHROTTLED. A source
    /// of TON 1 (international) is a whole number with its country code even without a '+': ten
    /// digits are not read as a North American national number then (4791234567 is +47).
    #[inline]
    pub fn campaign_admit(
        &self,
        ton: u8,
        source: &[u8],
        segments: u32,
        unix_ms: u64,
    ) -> Result<Option<u32>, CampaignRefusal> {
        if self.campaigns.is_empty() {
            return Ok(None);
        }
        let mut international = [b'+'; 1 + smppgw_codec::pdu::max::ADDR];
        let source = match source.first() {
            Some(&c) if ton == 1 && c != b'+' && source.len() < international.len() => {
                international[1..=source.len()].copy_from_slice(source);
                &international[..=source.len()]
            }
            _ => source,
        };
        self.campaigns.admit(source, segments, unix_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-01-01T00:00:00Z, a minute and a day boundary.
    const T0: u64 = 1_704_067_200_000;

    fn brand(id: &str, cap: u32) -> BrandConfig {
        BrandConfig::new(id, cap)
    }

    fn campaign(id: &str, brand: &str, per_minute: u32, sources: &[&str]) -> CampaignConfig {
        CampaignConfig {
            segments_per_minute: per_minute,
            source_prefixes: sources.iter().map(|s| (*s).to_owned()).collect(),
            ..CampaignConfig::new(id, brand)
        }
    }

    fn table(brands: &[BrandConfig], campaigns: &[CampaignConfig]) -> CampaignTable {
        CampaignTable::build(brands, campaigns, None)
    }

    #[test]
    fn the_longest_source_prefix_wins_and_plus_is_ignored() {
        let t = table(
            &[brand("B1", 0)],
            &[
                campaign("C1", "B1", 0, &["1555"]),
                campaign("C2", "B1", 0, &["+155501"]),
                campaign("C3", "B1", 0, &["15550123"]),
            ],
        );
        assert_eq!(t.lookup(b"15559999"), Some(0));
        assert_eq!(t.lookup(b"+15550100"), Some(1));
        assert_eq!(t.lookup(b"15550123"), Some(2), "a whole number is the longest prefix");
        assert_eq!(t.lookup(b"1555012"), Some(1));
        assert_eq!(t.lookup(b"1666"), None);
        assert_eq!(t.lookup(b"155"), None, "shorter than every prefix");
        assert_eq!(t.lookup(b""), None);
        assert_eq!(t.lookup(b"ACME"), None, "alphanumeric senders are in no campaign");
        // Ten digits after a '+' are another country's number, not a national US one.
        assert_eq!(t.lookup(b"5550100123"), Some(1), "national: +1 555 010 0123");
        assert_eq!(t.lookup(b"+5550100123"), None, "+55: Brazil");
        assert!(table(&[], &[]).is_empty());
    }

    #[test]
    fn ten_digits_of_type_international_are_not_read_as_a_us_number() {
        // Goal: 4791234567 with TON 1 (international, the usual SMPP form, no '+') is a whole
        // Norwegian number (+47 91234567): it is in no campaign, not throttled against a US
        // campaign of prefix 1479; with TON 0 (unknown) or 2 (national) it is a US number.
        let mut cfg = crate::config::Config::default();
        cfg.brands.push(brand("B1", 0));
        cfg.campaigns.push(campaign("C1", "B1", 5, &["1479"]));
        let snap = crate::snapshot::Snapshot::build(cfg, 1);
        assert_eq!(snap.campaign_admit(1, b"4791234567", 1, T0), Ok(None), "international");
        assert_eq!(snap.campaign_admit(1, b"+4791234567", 1, T0), Ok(None));
        assert_eq!(snap.campaign_admit(0, b"4791234567", 1, T0), Ok(Some(0)), "unknown: national US");
        assert_eq!(snap.campaign_admit(2, b"4791234567", 1, T0), Ok(Some(0)), "national");
        assert_eq!(snap.campaign_admit(1, b"14791234567", 1, T0), Ok(Some(0)), "a whole US number");
    }

    #[test]
    fn a_north_american_number_sent_as_ten_national_digits_finds_its_campaign() {
        // Goal: a customer sending 5550200123 (no country code) is counted against the campaign
        // of +15550200123 rather than escaping its limits.
        let t = table(&[brand("B1", 0)], &[campaign("C1", "B1", 0, &["+15550200"])]);
        for source in [&b"+15550200123"[..], b"15550200123", b"5550200123"] {
            assert_eq!(t.lookup(source), Some(0), "{}", String::from_utf8_lossy(source));
        }
        assert_eq!(t.lookup(b"5550300123"), None, "another national number");
        assert_eq!(t.lookup(b"555020012"), None, "nine digits");
    }

    #[test]
    fn a_source_in_no_campaign_is_admitted_and_counted_nowhere() {
        let t = table(&[brand("B1", 1)], &[campaign("C1", "B1", 1, &["1555"])]);
        for _ in 0..10 {
            assert_eq!(t.admit(b"4477001", 1, T0), Ok(None));
        }
        assert_eq!(t.campaigns[0].counters.segments.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_message_longer_than_a_whole_window_is_refused_for_good() {
        // Goal: a message of more segments than the campaign's minute (or the brand's day) can
        // never be admitted: it gets a permanent status, not ESME_RTHROTTLED, which the
        // customer would retry for ever; a message that fits a window still passes.
        let t = table(&[brand("B1", 8)], &[campaign("C1", "B1", 5, &["1555"])]);
        let too_long = t.admit(b"15550001", 6, T0);
        assert_eq!(too_long, Err(CampaignRefusal::TooLong { campaign: 0 }));
        assert_eq!(too_long.unwrap_err().status(), CommandStatus::ESME_RINVMSGLEN);
        assert_eq!(t.admit(b"15550001", 5, T0), Ok(Some(0)), "the whole minute, in one message");
        let t = table(&[brand("B1", 4)], &[campaign("C1", "B1", 0, &["1555"])]);
        assert_eq!(
            t.admit(b"15550001", 5, T0),
            Err(CampaignRefusal::TooLong { campaign: 0 }),
            "over the day"
        );
        assert_eq!(CampaignRefusal::Campaign { campaign: 0 }.status(), CommandStatus::ESME_RTHROTTLED);
    }

    #[test]
    fn the_campaign_window_rolls_over_each_utc_minute() {
        let t = table(&[brand("B1", 0)], &[campaign("C1", "B1", 5, &["1555"])]);
        for i in 0..5 {
            assert_eq!(t.admit(b"15550001", 1, T0 + i * 1000), Ok(Some(0)));
        }
        assert_eq!(t.admit(b"15550002", 1, T0 + 59_999), Err(CampaignRefusal::Campaign { campaign: 0 }));
        // The next minute starts at :00, not 60 s after the first message.
        assert_eq!(t.admit(b"15550001", 1, T0 + 60_000), Ok(Some(0)));
        assert_eq!(t.admit(b"15550001", 4, T0 + 60_001), Ok(Some(0)));
        assert!(t.admit(b"15550001", 1, T0 + 119_999).is_err());
        let k = &t.campaigns[0].counters;
        assert_eq!(k.segments.load(Ordering::Relaxed), 10);
        assert_eq!(k.throttled.load(Ordering::Relaxed), 2);
        // A read one minute behind (a core's clock a little late) counts in the newer minute;
        // ten minutes behind, the clock stepped back: the minute it reads now starts empty,
        // rather than nothing being admitted until the clock catches up.
        assert!(t.admit(b"15550001", 1, T0 + 59_000).is_err(), "the full minute after it");
        assert_eq!(t.admit(b"15550001", 5, T0 - 600_000), Ok(Some(0)));
    }

    #[test]
    fn segments_are_counted_and_a_message_larger_than_the_rest_is_refused_whole() {
        let t = table(&[brand("B1", 0)], &[campaign("C1", "B1", 5, &["1555"])]);
        assert_eq!(t.admit(b"15550001", 3, T0), Ok(Some(0)));
        assert!(t.admit(b"15550001", 3, T0).is_err(), "2 left, 3 asked");
        assert_eq!(t.admit(b"15550001", 2, T0), Ok(Some(0)));
        assert_eq!(t.campaigns[0].window.count(window_index(T0, MINUTE_MS)), 5);
    }

    #[test]
    fn a_brand_cap_is_shared_by_its_campaigns_and_resets_each_utc_day() {
        let t = table(
            &[brand("B1", 5), brand("B2", 0)],
            &[
                campaign("C1", "B1", 0, &["1555"]),
                campaign("C2", "B1", 100, &["1666"]),
                campaign("C3", "B2", 0, &["1777"]),
            ],
        );
        assert_eq!(t.admit(b"15550001", 2, T0), Ok(Some(0)));
        assert_eq!(t.admit(b"16660001", 3, T0 + 3_600_000), Ok(Some(1)));
        assert_eq!(
            t.admit(b"15550001", 1, T0 + 7_200_000),
            Err(CampaignRefusal::Brand { campaign: 0, brand: 0 })
        );
        assert_eq!(
            t.admit(b"16660001", 1, T0 + 7_200_000),
            Err(CampaignRefusal::Brand { campaign: 1, brand: 0 })
        );
        assert_eq!(t.admit(b"17770001", 50, T0), Ok(Some(2)), "another brand, no cap");
        assert_eq!(
            t.admit(b"16660001", 1, T0 + DAY_MS - 1),
            Err(CampaignRefusal::Brand { campaign: 1, brand: 0 })
        );
        assert_eq!(t.admit(b"16660001", 1, T0 + DAY_MS), Ok(Some(1)), "a new UTC day");
        let b = &t.brands[0].counters;
        assert_eq!((b.segments.load(Ordering::Relaxed), b.capped.load(Ordering::Relaxed)), (6, 3));
        assert_eq!(t.campaigns[1].counters.capped.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_brand_refusal_gives_the_campaign_its_units_back() {
        let t = table(&[brand("B1", 4)], &[campaign("C1", "B1", 10, &["1555"])]);
        t.campaigns[0].lease.activate(100);
        let minute = window_index(T0, MINUTE_MS);
        assert_eq!(t.admit(b"15550001", 4, T0), Ok(Some(0)));
        assert_eq!((t.campaigns[0].window.count(minute), t.campaigns[0].lease.tokens()), (4, 96));
        assert!(matches!(t.admit(b"15550001", 3, T0), Err(CampaignRefusal::Brand { .. })));
        assert_eq!(
            (t.campaigns[0].window.count(minute), t.campaigns[0].lease.tokens()),
            (4, 96),
            "the refused message left nothing counted against the campaign"
        );
        assert_eq!(t.brands[0].window.count(window_index(T0, DAY_MS)), 4);
    }

    #[test]
    fn an_inactive_lease_leaves_the_local_limit_and_an_active_one_adds_the_shared_limit() {
        let t = table(&[brand("B1", 1000)], &[campaign("C1", "B1", 10, &["1555"])]);
        let (c, b) = (&t.campaigns[0], &t.brands[0]);
        // Inactive: the local 10 per minute is the only campaign limit.
        for _ in 0..10 {
            assert!(t.admit(b"15550001", 1, T0).is_ok());
        }
        assert!(t.admit(b"15550001", 1, T0).is_err());
        // Active with 3 units for this node: 3 more in the next minute, though the local limit allows 10.
        c.lease.activate(3);
        let next = T0 + MINUTE_MS;
        for _ in 0..3 {
            assert!(t.admit(b"15550001", 1, next).is_ok());
        }
        assert_eq!(t.admit(b"15550001", 1, next), Err(CampaignRefusal::Campaign { campaign: 0 }));
        assert_eq!(
            c.window.count(window_index(next, MINUTE_MS)),
            3,
            "the lease's refusal was not counted locally"
        );
        c.lease.grant(1);
        assert!(t.admit(b"15550001", 1, next).is_ok(), "a top-up from the control plane admits again");
        // The brand's lease refuses: its local count and the campaign's units are given back.
        b.lease.activate(0);
        let before =
            (c.window.count(window_index(next, MINUTE_MS)), b.window.count(window_index(next, DAY_MS)));
        c.lease.grant(1);
        assert!(matches!(t.admit(b"15550001", 1, next), Err(CampaignRefusal::Brand { .. })));
        assert_eq!(
            (c.window.count(window_index(next, MINUTE_MS)), b.window.count(window_index(next, DAY_MS))),
            before
        );
        assert_eq!(c.lease.tokens(), 1, "the campaign's lease units came back");
        b.lease.deactivate();
        assert!(t.admit(b"15550001", 1, next).is_ok());
    }

    #[test]
    fn concurrent_admissions_never_exceed_the_limit() {
        let t = Arc::new(table(&[brand("B1", 0)], &[campaign("C1", "B1", 10_000, &["1555"])]));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || {
                    (0..10_000).filter(|_| t.admit(b"15550001", 1, T0).is_ok()).count()
                })
            })
            .collect();
        let total: usize = threads.into_iter().map(|h| h.join().unwrap_or(0)).sum();
        assert_eq!(total, 10_000);
    }

    #[test]
    fn a_reload_keeps_every_window_and_lease_under_a_changed_limit_too() {
        let brands = [brand("B1", 100)];
        let old = table(&brands, &[campaign("C1", "B1", 5, &["1555"]), campaign("C2", "B1", 5, &["1666"])]);
        assert!(old.admit(b"15550001", 5, T0).is_ok());
        assert!(old.admit(b"16660001", 5, T0).is_ok());
        let new = CampaignTable::build(
            &[brand("B1", 12)],
            &[campaign("C1", "B1", 5, &["1555"]), campaign("C2", "B1", 6, &["1666"])],
            Some(&old),
        );
        assert!(new.admit(b"15550001", 1, T0).is_err(), "C1 unchanged: its minute is still spent");
        assert!(new.admit(b"16660001", 2, T0).is_err(), "C2 raised to 6 with 5 counted: one left");
        assert!(new.admit(b"16660001", 1, T0).is_ok());
        assert!(new.admit(b"17770001", 1, T0).is_ok(), "in no campaign");
        for (o, n) in old.campaigns.iter().zip(&new.campaigns) {
            assert!(Arc::ptr_eq(&o.lease, &n.lease) && Arc::ptr_eq(&o.window, &n.window));
            assert!(Arc::ptr_eq(&o.counters, &n.counters), "counters always carry over");
        }
        assert!(Arc::ptr_eq(&old.brands[0].window, &new.brands[0].window));
        assert_eq!(new.brands[0].window.count(window_index(T0, DAY_MS)), 11, "the cap lowered to 12");
        let lowered =
            CampaignTable::build(&[brand("B1", 10)], &[campaign("C2", "B1", 60, &["1666"])], Some(&new));
        assert!(
            lowered.admit(b"16660001", 1, T0).is_err(),
            "a cap lowered below today's count admits nothing"
        );
    }

    #[test]
    fn every_limited_campaign_and_capped_brand_has_a_lease_spec() {
        let t = table(
            &[brand("B1", 1000), brand("B2", 0)],
            &[campaign("C1", "B1", 60, &["1555"]), campaign("C2", "B2", 0, &["1666"])],
        );
        let specs: Vec<(String, u64, u64)> = t.leases().map(|s| (s.key, s.limit, s.window_ms)).collect();
        assert_eq!(
            specs,
            vec![("rate:campaign:C1".to_owned(), 60, 60_000), ("rate:brand:B1".to_owned(), 1000, 86_400_000)]
        );
    }
}
