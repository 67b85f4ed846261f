//! What a clean stop hands to the next start of the same node (`smppgw --receipt-state FILE`):
//! the messages whose vendor receipt is still to come, and the receipts and MO still queued for
//! customers. Without Redis they live only in the cores' memory: a vendor that sends the
//! receipts after a restart would find no message to match, and the customers would never get
//! them. The cores give them up at the end of their stop ([`LeftAtExit`]) and take them back
//! before they accept anyone ([`Carried`], through [`crate::StartOptions::restore`]), each on the
//! core that owns it. Writing and reading the file is the control plane's (its layout names
//! customers and vendors, as Redis's does).

use std::sync::Arc;

use crate::deliveries::Delivery;
use crate::store::{Record, canonical_id, shard_key, shard_of};

/// Records and deliveries carried from one run to the next.
#[derive(Debug, Default, Clone)]
pub struct Carried {
    /// Messages whose receipt is still to come, each with the unix time (seconds) it was stored:
    /// its receipt TTL counts from then, across the restart.
    pub records: Vec<(u64, Record)>,
    /// Receipts and MO still queued for customers, in queue order per customer.
    pub deliveries: Vec<Arc<Delivery>>,
}

impl Carried {
    /// Whether there is nothing.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.deliveries.is_empty()
    }

    /// Split by the core that owns each: a record by its vendor id's shard (as a receipt for it
    /// is looked up), a delivery by its customer's home core. Records come out oldest first.
    pub fn split(self, cores: usize) -> Vec<Carried> {
        let cores = cores.max(1);
        let mut out: Vec<Carried> = (0..cores).map(|_| Carried::default()).collect();
        let mut records = self.records;
        // The store evicts from its oldest end: arrival order, whatever order the file had.
        records.sort_by_key(|(at, _)| *at);
        for (at, rec) in records {
            let core = shard_of(rec.vendor, &shard_key(&canonical_id(&rec.vendor_id)), cores);
            if let Some(c) = out.get_mut(core) {
                c.records.push((at, rec));
            }
        }
        for d in self.deliveries {
            let home = d.customer as usize % cores;
            if let Some(c) = out.get_mut(home) {
                c.deliveries.push(d);
            }
        }
        out
    }
}

/// What one core left at the end of its stop.
#[derive(Debug, Default)]
pub struct LeftAtExit {
    /// The core.
    pub core: usize,
    /// What it gave up to be kept (when the node keeps a state file).
    pub carried: Carried,
    /// Messages whose receipt is still to come that nothing keeps (no state file, no shared
    /// store up): their receipts will match nothing after a restart.
    pub forgotten_records: u64,
}
