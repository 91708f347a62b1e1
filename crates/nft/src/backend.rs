//! The one door to the kernel (house rule 7): every change is one atomic `nft -f` transaction
//! on Bulkhead's own table. A fake backend records scripts for tests without root.

use crate::counters::{self, TableState};
use crate::netlink::NfTables;
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
    /// Where the kernel's table stands, cheaply: the ruleset generation (moved by any
    /// process's transaction) and a fingerprint of the table (`None`: no table). Never lists
    /// the peer sets' elements.
    fn mark(&mut self) -> Result<KernelMark, BackendError>;
    /// The ruleset generation alone (one netlink request).
    fn generation(&mut self) -> Result<u32, BackendError>;
    /// Set elements deleted and added, nothing else, as one transaction (a delta made only of
    /// [`crate::delta::SetChange`]s). An error leaves the kernel as it was; the caller may
    /// then apply the same change as a script.
    fn write_elements(&mut self, changes: &[crate::delta::SetChange]) -> Result<(), BackendError>;
}

/// What [`Backend::mark`] reads: compare two to tell whether the table changed in between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelMark {
    pub generation: u32,
    /// Everything but the break-glass map; `None`: no table.
    pub fingerprint: Option<u64>,
    /// Whether the break-glass map is open: apart, so a flip by `agent break-glass` is told
    /// from any other change.
    pub break_glass: bool,
}

/// The audit map is small and decides every deny, so its elements are part of the
/// fingerprint; the peer sets' elements are not (`crate::netlink`).
const MODE_MAPS: [&str; 1] = ["deny_verdict"];

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

/// The real kernel through the `nft` command (nftables >= 1.0), and netlink for the cheap
/// reads of [`Backend::mark`].
#[derive(Debug)]
pub struct NftCli {
    pub binary: PathBuf,
    /// Opened at the first read, in the network namespace of the thread that reads.
    netlink: Option<NfTables>,
}

impl Default for NftCli {
    fn default() -> Self {
        Self {
            binary: PathBuf::from("nft"),
            netlink: None,
        }
    }
}

impl NftCli {
    fn netlink(&mut self) -> Result<&mut NfTables, BackendError> {
        if self.netlink.is_none() {
            self.netlink = Some(NfTables::open().map_err(netlink_error)?);
        }
        Ok(self.netlink.as_mut().expect("opened above"))
    }

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
    /// Over netlink: no process start, and no listing of the set first (what `nft add
    /// element` does for an interval set).
    fn write_elements(&mut self, changes: &[crate::delta::SetChange]) -> Result<(), BackendError> {
        self.netlink()?
            .write_elements(crate::ruleset::TABLE, changes)
            .map_err(|e| BackendError::Failed {
                command: "netlink set elements (nf_tables)".into(),
                status: "error".into(),
                stderr: e.to_string(),
            })
    }

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

    fn mark(&mut self) -> Result<KernelMark, BackendError> {
        let kernel = self.netlink()?;
        // Read the generation on both sides of the fingerprint: equal, nothing committed in
        // between, so the fingerprint belongs to that generation.
        loop {
            let generation = kernel.generation().map_err(netlink_error)?;
            let fingerprint = kernel
                .fingerprint(crate::ruleset::TABLE, &MODE_MAPS)
                .map_err(netlink_error)?;
            let break_glass = fingerprint.is_some()
                && kernel
                    .elements(crate::ruleset::TABLE, "break_glass")
                    .is_ok_and(|e| !e.is_empty());
            if kernel.generation().map_err(netlink_error)? == generation {
                return Ok(KernelMark {
                    generation,
                    fingerprint,
                    break_glass,
                });
            }
        }
    }

    fn generation(&mut self) -> Result<u32, BackendError> {
        self.netlink()?.generation().map_err(netlink_error)
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

fn netlink_error(e: crate::netlink::NetlinkError) -> BackendError {
    BackendError::Failed {
        command: "netlink (nf_tables)".into(),
        status: "error".into(),
        stderr: e.to_string(),
    }
}

/// Records what would be applied.
#[derive(Debug, Default, Clone)]
pub struct FakeBackend {
    pub applied: Vec<String>,
    pub present: bool,
    /// What [`Backend::state`] reports while the table is present.
    pub state: TableState,
    /// The generation: one more per apply, and per [`FakeBackend::foreign_change`].
    pub generation: u32,
    /// Changed by [`FakeBackend::foreign_change`], as another process editing the table.
    pub tampered: u64,
    /// Whether the last break-glass script opened the map.
    pub break_glass: bool,
}

impl FakeBackend {
    /// Another process edits the table (or, with `ours: false`, some other table).
    pub fn foreign_change(&mut self, ours: bool) {
        self.generation = self.generation.wrapping_add(1);
        if ours {
            self.tampered += 1;
        }
    }
}

impl Backend for FakeBackend {
    /// Recorded as the script that makes the same change.
    fn write_elements(&mut self, changes: &[crate::delta::SetChange]) -> Result<(), BackendError> {
        self.apply(&crate::delta::render_elements(changes))
    }

    fn apply(&mut self, script: &str) -> Result<(), BackendError> {
        self.present = !script
            .trim_end()
            .ends_with(&format!("delete table inet {}", crate::ruleset::TABLE));
        // The break-glass map as a flip or a whole table leaves it.
        if script.contains(&format!(
            "flush map inet {} break_glass",
            crate::ruleset::TABLE
        )) {
            self.break_glass = script.contains("add element");
        } else if let Some(line) = script.lines().find(|l| l.contains("map break_glass {")) {
            self.break_glass = line.contains("accept");
        }
        self.applied.push(script.to_string());
        self.generation = self.generation.wrapping_add(1);
        Ok(())
    }

    fn mark(&mut self) -> Result<KernelMark, BackendError> {
        let fingerprint = self.present.then(|| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            // Break-glass flips are not part of it, as with the kernel.
            let structural = self
                .applied
                .iter()
                .filter(|s| !s.starts_with("flush map inet bulkhead break_glass"))
                .count();
            std::hash::Hash::hash(&(structural, self.tampered), &mut h);
            std::hash::Hasher::finish(&h)
        });
        Ok(KernelMark {
            generation: self.generation,
            fingerprint,
            break_glass: self.present && self.break_glass,
        })
    }

    fn generation(&mut self) -> Result<u32, BackendError> {
        Ok(self.generation)
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
