//! Files the agent writes as root: the break-glass marker, the metrics file, the rule id
//! table, and the lock that keeps one agent per node. Written by rename in the same
//! directory from a temporary file created new, so a symlink planted at either name is
//! replaced, never followed; directories others can write are refused.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically (a reader never sees half a file) without following a
/// symlink at `path` or at the temporary name.
pub fn write_by_rename(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    // Removing a symlink removes the link, not what it points to.
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

/// `Err` with the reason when others may write `dir` (a world-writable directory lets any
/// local user plant manifests, markers or symlinks for a root process).
pub fn refuse_writable_by_others(dir: &Path, what: &str) -> Result<(), String> {
    let Ok(meta) = std::fs::metadata(dir) else {
        return Ok(());
    };
    let mode = meta.permissions().mode();
    if mode & 0o002 != 0 {
        return Err(format!(
            "{what} {} can be written by any user (mode {:o}); the agent runs as root and will not trust it: `chmod o-w {}`",
            dir.display(),
            mode & 0o7777,
            dir.display()
        ));
    }
    Ok(())
}

/// The lock that keeps one agent per node: held while the returned file is open.
#[derive(Debug)]
pub struct AgentLock {
    _file: std::fs::File,
    pub path: PathBuf,
}

/// Takes `<state_dir>/agent.lock`, or says which agent holds it.
pub fn lock(state_dir: &Path) -> Result<AgentLock, String> {
    std::fs::create_dir_all(state_dir).map_err(|e| format!("{}: {e}", state_dir.display()))?;
    let path = state_dir.join("agent.lock");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            let _ = file.set_len(0);
            let _ = (&file).write_all(format!("{}\n", std::process::id()).as_bytes());
            Ok(AgentLock { _file: file, path })
        }
        Err(_) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            Err(format!(
                "another bulkhead agent (pid {}) holds {}; one agent per node: stop it first",
                holder.trim(),
                path.display()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("bulkhead-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    #[test]
    fn a_symlink_at_the_name_or_the_temporary_name_is_replaced_not_followed() {
        let dir = temp("symlink");
        let target = dir.join("precious");
        std::fs::write(&target, b"keep me").expect("target");
        let marker = dir.join("break-glass");
        std::os::unix::fs::symlink(&target, &marker).expect("symlink");
        let tmp = dir.join(format!(".break-glass.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&target, &tmp).expect("symlink");
        write_by_rename(&marker, b"on\n").expect("write");
        assert_eq!(std::fs::read(&target).expect("read"), b"keep me");
        assert_eq!(std::fs::read(&marker).expect("read"), b"on\n");
        assert!(
            !std::fs::symlink_metadata(&marker)
                .expect("meta")
                .file_type()
                .is_symlink()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_second_lock_is_refused_while_the_first_is_held() {
        let dir = temp("lock");
        let first = lock(&dir).expect("first");
        let second = lock(&dir).expect_err("second");
        assert!(second.contains("another bulkhead agent"), "{second}");
        assert!(second.contains(&std::process::id().to_string()), "{second}");
        drop(first);
        assert!(lock(&dir).is_ok(), "free again once the first is gone");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_world_writable_directory_is_refused_with_the_reason() {
        let dir = temp("mode");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = refuse_writable_by_others(&dir, "manifest directory").expect_err("refused");
        assert!(
            err.contains("can be written by any user (mode 777)"),
            "{err}"
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert!(refuse_writable_by_others(&dir, "manifest directory").is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
