//! The last good configuration from PostgreSQL, kept in a file (`smppgw --config-cache FILE`), so
//! that a node can start while PostgreSQL is down: it runs on what the database last said and
//! follows the database again as soon as it answers.
//!
//! The file is JSON (the engine's [`Config`] as serde writes it), replaced atomically (written
//! beside it, then renamed), readable by its owner only (it holds vendor passwords), and
//! validated when read. The node's own settings
//! ([`super::NODE_SERVER_SETTINGS`]) always come from the node's TOML and environment, never from
//! the file: another node may have written it.

use std::path::Path;

use smppgw_engine::config::Config;

/// Permissions of the file: it holds vendor passwords, so only the node's own user may read it.
pub const FILE_MODE: u32 = 0o600;

/// Writes `config` to `path`, replacing the file only once the new one is complete. The file is
/// [`FILE_MODE`] (owner only), whatever the umask and whatever mode a file already there had.
pub fn save(path: &Path, config: &Config) -> std::io::Result<()> {
    let json = serde_json::to_vec(config).map_err(std::io::Error::other)?;
    crate::files::replace_file(path, &json, FILE_MODE)
}

/// The configuration saved at `path`, with this node's settings from `base`, validated.
pub fn load(path: &Path, base: &Config) -> Result<Config, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let cached: Config = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{}: not a saved configuration: {e}", path.display()))?;
    let config = with_node_settings(cached, base);
    config.validate().map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(config)
}

/// `config` with the settings that belong to this node ([`super::NODE_SERVER_SETTINGS`]) taken
/// from `base`.
pub fn with_node_settings(mut config: Config, base: &Config) -> Config {
    const _: () = assert!(super::NODE_SERVER_SETTINGS.len() == 10, "copy every per-node setting here");
    let (s, b) = (&mut config.server, &base.server);
    s.listen = b.listen;
    s.http_listen = b.http_listen;
    s.cores = b.cores;
    s.node_id = b.node_id;
    s.max_binds = b.max_binds;
    s.shutdown_grace_ms = b.shutdown_grace_ms;
    s.receipt_store_max = b.receipt_store_max;
    s.receipt_store_prealloc = b.receipt_store_prealloc;
    s.receipt_queue_max = b.receipt_queue_max;
    s.removed_vendor_drain_ms = b.removed_vendor_drain_ms;
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Config {
        Config::from_toml_str(include_str!("../../../deploy/config/example.toml"), "example.toml")
            .expect("the example is valid")
    }

    #[test]
    fn a_saved_configuration_loads_back_with_this_nodes_settings() {
        let dir = std::env::temp_dir().join(format!("smppgw-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("last-good.json");
        let saved = example();
        save(&path, &saved).expect("saved");
        let mut base = Config::default();
        base.server.node_id = 42;
        base.server.listen = "127.0.0.1:3775".parse().expect("addr");
        let loaded = load(&path, &base).expect("loads");
        assert_eq!(loaded.server.node_id, 42, "the node's own id, not the writer's");
        assert_eq!(loaded.server.listen, base.server.listen);
        assert_eq!(loaded.customers, saved.customers);
        assert_eq!(loaded.routes, saved.routes);
        assert_eq!(with_node_settings(saved.clone(), &saved), saved);

        std::fs::write(&path, b"{\"server\": 1}").expect("write");
        assert!(load(&path, &base).unwrap_err().contains("not a saved configuration"));
        assert!(load(&dir.join("missing.json"), &base).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_cache_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        // It holds vendor passwords.
        let dir = std::env::temp_dir().join(format!("smppgw-cache-mode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("last-good.json");
        let mode = |p: &Path| std::fs::metadata(p).expect("the cache exists").permissions().mode() & 0o777;

        save(&path, &example()).expect("saved");
        assert_eq!(mode(&path), 0o600, "a new file");

        // A file left readable by an earlier version (or by hand) is replaced by a private one.
        std::fs::write(&path, b"{}").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        save(&path, &example()).expect("saved again");
        assert_eq!(mode(&path), 0o600, "an existing file");
        assert!(load(&path, &Config::default()).is_ok(), "still loads");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
