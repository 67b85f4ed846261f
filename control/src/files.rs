//! Files the control plane keeps on the node's disk, replaced whole so that a crash never leaves
//! half of one.

use std::path::Path;

/// Writes `bytes` to `path` with permissions `mode`, replacing the file only once the new one is
/// complete and on disk (written beside it, synced, renamed, its directory synced), whatever
/// the umask and whatever mode a file already there had.
pub fn replace_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    // Created with its final mode, so a private file is never readable by others, not even for
    // a moment.
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
    // `mode` applies only to a file this call creates: a temp file left by a crash keeps its own.
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.write_all(bytes)?;
    // Complete on disk before it replaces the last one.
    file.sync_all()?;
    drop(file);
    // The rename replaces the old file, so its mode goes with it.
    std::fs::rename(&tmp, path)?;
    // The rename itself is durable only once its directory is: after a power loss the previous
    // file would come back.
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}
