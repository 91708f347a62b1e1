//! What the agent on this node is doing, for `bulkhead agent status`: written by the running
//! agent to `status.json` in its state directory (atomically, after each commit and as
//! denied connections come), read by the command. Root reads it; nothing in it is secret.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file's name in the state directory.
pub const FILE: &str = "status.json";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node: String,
    /// Seconds since the Unix epoch when the agent wrote this.
    pub written_at: f64,
    /// The process that wrote it (a stale file outlives its agent).
    pub pid: u32,
    /// `directory /path` or `kubernetes`.
    pub source: String,
    /// The index revision the kernel has.
    pub last_applied_revision: u64,
    /// `enforce`, or `audit` for the whole node (`--audit`).
    pub node_mode: String,
    pub break_glass: BreakGlass,
    /// Every namespace of the cluster that is not simply enforced, or has denied connections.
    pub namespaces: BTreeMap<String, NamespaceStatus>,
    /// Policies annotated `bulkhead.io/mode: audit` (`Kind ns/name`).
    pub audited_policies: Vec<String>,
    /// Automated rollback: `None` when off.
    pub rollback: Option<RollbackSettings>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BreakGlass {
    /// `bulkhead agent break-glass on` on this node.
    pub node: bool,
    /// The cluster-wide ConfigMap, when it is in force: its scope and origin.
    pub cluster: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NamespaceStatus {
    /// `enforce`, `audit` (`--audit-namespace` or the cluster break-glass) or `rolled-back`.
    pub mode: String,
    /// Why it is not enforced, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Connections denied since the agent started (each counted once).
    pub denied_connections: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RollbackSettings {
    pub threshold: u64,
    pub window_seconds: f64,
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

impl NodeStatus {
    /// Writes the file atomically (a reader never sees half of it).
    pub fn write(&self, state_dir: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        let target = path(state_dir);
        let temporary = state_dir.join(format!(".{FILE}.tmp"));
        std::fs::write(&temporary, text + "\n")?;
        std::fs::rename(&temporary, &target)
    }

    /// The file of `state_dir`: `Ok(None)` when no agent has written one.
    pub fn read(state_dir: &Path) -> Result<Option<NodeStatus>, String> {
        let target = path(state_dir);
        match std::fs::read_to_string(&target) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| format!("{}: {e}", target.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", target.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_reads_back_as_written() {
        let dir = std::env::temp_dir().join(format!("bulkhead-status-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        assert_eq!(NodeStatus::read(&dir), Ok(None));
        let status = NodeStatus {
            node: "n1".into(),
            last_applied_revision: 7,
            node_mode: "enforce".into(),
            namespaces: BTreeMap::from([(
                "shop".to_string(),
                NamespaceStatus {
                    mode: "rolled-back".into(),
                    reason: Some("12 connection(s) ...".into()),
                    denied_connections: 12,
                },
            )]),
            audited_policies: vec!["NetworkPolicy shop/db".into()],
            ..NodeStatus::default()
        };
        status.write(&dir).expect("write");
        assert_eq!(NodeStatus::read(&dir), Ok(Some(status)));
        std::fs::write(path(&dir), "{").expect("write");
        assert!(NodeStatus::read(&dir).is_err_and(|e| e.contains("status.json")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
