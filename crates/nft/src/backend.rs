//! The one door to the kernel (house rule 7): every change is one atomic `nft -f` transaction
//! on Bulkhead's own table. A fake backend records scripts for tests without root.

use crate::counters::{self, TableState};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("running {command}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("reading {command} output: {source}")]
    Parse {
        command: String,
        source: serde_json::Error,
    },
}

pub trait Backend {
    /// Applies a whole script as one transaction.
    fn apply(&mut self, script: &str) -> Result<(), BackendError>;
    /// Whether Bulkhead's table exists (adopted at start-up, never flushed first).
    fn table_exists(&mut self) -> Result<bool, BackendError>;
    /// The table's mode and deny counters; `None` when there is no table.
    fn state(&mut self) -> Result<Option<TableState>, BackendError>;
    /// Packets and bytes per deny rule id now, to carry over into rules that replace them
    /// (one terse listing; empty when there is no table).
    fn deny_counts(&mut self) -> Result<BTreeMap<String, (u64, u64)>, BackendError>;
}

/// Per rule id, the sum over its rules (a rule split per address family shares its id).
pub fn counts_by_id(denies: &[counters::DenyCounter]) -> BTreeMap<String, (u64, u64)> {
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for d in denies {
        if let Some(id) = &d.id {
            let slot = out.entry(id.clone()).or_default();
            slot.0 += d.packets;
            slot.1 += d.bytes;
        }
    }
    out
}

/// The real kernel through the `nft` command (nftables >= 1.0).
#[derive(Debug, Clone)]
pub struct NftCli {
    pub binary: PathBuf,
}

impl Default for NftCli {
    fn default() -> Self {
        Self {
            binary: PathBuf::from("nft"),
        }
    }
}

impl NftCli {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, BackendError> {
        let command = format!("{} {}", self.binary.display(), args.join(" "));
        let mut child = Command::new(&self.binary)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| BackendError::Spawn {
                command: command.clone(),
                source,
            })?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())
                .map_err(|source| BackendError::Spawn {
                    command: command.clone(),
                    source,
                })?;
        }
        let output = child
            .wait_with_output()
            .map_err(|source| BackendError::Spawn {
                command: command.clone(),
                source,
            })?;
        if !output.status.success() {
            return Err(BackendError::Failed {
                command,
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

impl Backend for NftCli {
    fn apply(&mut self, script: &str) -> Result<(), BackendError> {
        self.run(&["-f", "-"], Some(script)).map(|_| ())
    }

    fn table_exists(&mut self) -> Result<bool, BackendError> {
        // `-t` (terse) keeps set elements out: listing stays fast however big the sets grow.
        let tables = self.run(&["-t", "list", "tables"], None)?;
        Ok(tables
            .lines()
            .any(|l| l.trim() == format!("table inet {}", crate::ruleset::TABLE)))
    }

    fn deny_counts(&mut self) -> Result<BTreeMap<String, (u64, u64)>, BackendError> {
        let table = crate::ruleset::TABLE;
        // No table (yet, or removed): nothing to carry over.
        let Ok(rules) = self.run(&["-j", "-t", "list", "table", "inet", table], None) else {
            return Ok(BTreeMap::new());
        };
        let denies = counters::deny_counters(&rules).map_err(|source| BackendError::Parse {
            command: "nft list table".into(),
            source,
        })?;
        Ok(counts_by_id(&denies))
    }

    fn state(&mut self) -> Result<Option<TableState>, BackendError> {
        if !self.table_exists()? {
            return Ok(None);
        }
        let table = crate::ruleset::TABLE;
        let parse = |command: &str, e| BackendError::Parse {
            command: command.to_string(),
            source: e,
        };
        let rules = self.run(&["-j", "-t", "list", "table", "inet", table], None)?;
        let denies = counters::deny_counters(&rules).map_err(|e| parse("nft list table", e))?;
        let unknown_interface_drops =
            counters::unknown_interface_drops(&rules).map_err(|e| parse("nft list table", e))?;
        let deny = self.run(&["-j", "list", "map", "inet", table, "deny_verdict"], None)?;
        let glass = self.run(&["-j", "list", "map", "inet", table, "break_glass"], None)?;
        Ok(Some(TableState {
            audit: counters::map_verdict_is(&deny, "return")
                .map_err(|e| parse("nft list map", e))?,
            break_glass: counters::map_verdict_is(&glass, "accept")
                .map_err(|e| parse("nft list map", e))?,
            denies,
            unknown_interface_drops,
        }))
    }
}

/// Records what would be applied.
#[derive(Debug, Default, Clone)]
pub struct FakeBackend {
    pub applied: Vec<String>,
    pub present: bool,
    /// What [`Backend::state`] reports while the table is present.
    pub state: TableState,
}

impl Backend for FakeBackend {
    fn apply(&mut self, script: &str) -> Result<(), BackendError> {
        self.present = !script
            .trim_end()
            .ends_with(&format!("delete table inet {}", crate::ruleset::TABLE));
        self.applied.push(script.to_string());
        Ok(())
    }

    fn table_exists(&mut self) -> Result<bool, BackendError> {
        Ok(self.present)
    }

    fn state(&mut self) -> Result<Option<TableState>, BackendError> {
        Ok(self.present.then(|| self.state.clone()))
    }

    fn deny_counts(&mut self) -> Result<BTreeMap<String, (u64, u64)>, BackendError> {
        Ok(if self.present {
            counts_by_id(&self.state.denies)
        } else {
            BTreeMap::new()
        })
    }
}
