//! The highest message id counter this node issued, kept across restarts, so that a node whose
//! clock is behind its last ids when it starts again (a clock stepped back, a pod moved to a
//! host whose clock is behind) does not issue them again within the receipt TTL.
//!
//! Two places, either or both: a file on the node's disk (`smppgw --id-state FILE`, written every
//! [`ID_STATE_WRITE_MS`] and at a clean stop) and, with Redis, the key `{prefix}:ids:{node id}`
//! (written every [`ID_STATE_WRITE_MS`], kept for the receipt TTL and a day). A node starts above
//! the highest it finds, plus [`smppgw_engine::msgid::ID_RESTART_MARGIN`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use smppgw_engine::msgid::IdWatermark;
use tracing::warn;

/// How often the watermark is written.
pub const ID_STATE_WRITE_MS: u64 = 1_000;
/// Permissions of the file (nothing secret in it).
pub const FILE_MODE: u32 = 0o644;

/// Reads the counter saved at `path`: `None` when there is no file yet.
pub fn load(path: &Path) -> Result<Option<u64>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    counter(text.trim()).map(Some).map_err(|e| format!("{}: {e}", path.display()))
}

/// A persisted counter: a decimal number the margin cannot wrap.
fn counter(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(n) if smppgw_engine::msgid::valid_persisted_counter(n) => Ok(n),
        Ok(n) => Err(format!("{n} is beyond the id counter's range (a whole message id?)")),
        Err(_) => Err(format!("not an id counter (a decimal number): {text:?}")),
    }
}

/// Saves `counter` at `path`, replacing the file whole.
pub fn save(path: &Path, counter: u64) -> std::io::Result<()> {
    crate::files::replace_file(path, format!("{counter}\n").as_bytes(), FILE_MODE)
}

/// Writes `ids.issued()` to `path` every [`ID_STATE_WRITE_MS`] while it changes (on a blocking
/// thread of the runtime), warning once when a write fails and once when they work again.
pub async fn keep_file(path: PathBuf, ids: Arc<IdWatermark>) {
    let mut tick = tokio::time::interval(Duration::from_millis(ID_STATE_WRITE_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut saved, mut failing) = (None, false);
    loop {
        tick.tick().await;
        let now = ids.issued();
        if saved == Some(now) {
            continue;
        }
        let p = path.clone();
        match tokio::task::spawn_blocking(move || save(&p, now)).await {
            Ok(Ok(())) => {
                if failing {
                    warn!("message id state written to {} again", path.display());
                }
                (saved, failing) = (Some(now), false);
            }
            Ok(Err(e)) => {
                if !failing {
                    warn!(
                        "cannot write the message id state to {}: {e} (a restart with the clock stepped back could issue ids again)",
                        path.display()
                    );
                }
                failing = true;
            }
            Err(_) => return,
        }
    }
}

/// The Redis key of node `node`'s watermark under `prefix`.
pub fn redis_key(prefix: &str, node: u32) -> String {
    format!("{prefix}:ids:{node}")
}

/// Sets the key to the counter unless it holds a higher one (another process with the same node
/// id) and renews its TTL; a value that is not a number, or a key of another type, is replaced.
pub const REDIS_SAVE_SCRIPT: &str = r"
local v = redis.pcall('GET', KEYS[1])
if type(v) == 'table' and v.err then redis.call('DEL', KEYS[1]) v = false end
v = tonumber(v or '0') or 0
if tonumber(ARGV[1]) > v then redis.call('SET', KEYS[1], ARGV[1]) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
";

/// Reads node `node`'s watermark from Redis at `url` (at start, before the cores run), waiting
/// at most `timeout` for Redis: `None` when the key is absent.
pub fn load_redis(url: &str, prefix: &str, node: u32, timeout: Duration) -> Result<Option<u64>, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut conn = client.get_connection_with_timeout(timeout).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let v: Option<String> =
        redis::cmd("GET").arg(redis_key(prefix, node)).query(&mut conn).map_err(|e| e.to_string())?;
    match v {
        None => Ok(None),
        Some(s) => counter(s.trim()).map(Some).map_err(|e| format!("{}: {e}", redis_key(prefix, node))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_saved_counter_reads_back_and_a_missing_file_is_no_counter() {
        let dir = std::env::temp_dir().join(format!("smppgw-ids-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("ids");
        assert_eq!(load(&path), Ok(None), "no file yet");
        save(&path, 123_456_789).expect("saved");
        assert_eq!(load(&path), Ok(Some(123_456_789)));
        save(&path, 5).expect("saved again");
        assert_eq!(load(&path), Ok(Some(5)), "replaced whole");
        std::fs::write(&path, "garbage").expect("written");
        assert!(load(&path).is_err_and(|e| e.contains("not an id counter")));
        std::fs::write(&path, format!("{}", u64::MAX >> 8)).expect("written");
        assert!(load(&path).is_err_and(|e| e.contains("beyond")), "a whole id, not a counter");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
