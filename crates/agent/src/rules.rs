//! The rule id table: typed rule ids (what deny rules carry into the kernel: their comment
//! and log prefix) -> the pod, direction and rule they belong to. The agent writes it to
//! `--state-dir` after every commit, so `agent flows`, `agent metrics` and a restarted agent
//! name what the kernel reports by id, whatever the length of the names; ids of rules that
//! are gone stay in the table, so records still in flight are named too.

use bulkhead_nft::ruleset::RuleIdentity;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "rules.json";

/// How many ids the table keeps; above it, ids of rules no longer in force are dropped (in id
/// order, which says nothing of their age), never those in force.
const MAX_ENTRIES: usize = 1_000_000;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleTable {
    pub rules: BTreeMap<String, RuleIdentity>,
}

impl RuleTable {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(FILE_NAME)
    }

    /// The table in `state_dir`, or an empty one (no agent has written it yet).
    pub fn load(state_dir: &Path) -> RuleTable {
        let rules = std::fs::read(Self::path(state_dir))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        RuleTable { rules }
    }

    /// Adds `current` (the rules in force now) to the table.
    pub fn merge(&mut self, current: BTreeMap<String, RuleIdentity>) -> bool {
        let before = self.rules.len();
        let mut changed = false;
        let in_force: std::collections::BTreeSet<String> = current.keys().cloned().collect();
        for (id, identity) in current {
            if self.rules.get(&id) != Some(&identity) {
                self.rules.insert(id, identity);
                changed = true;
            }
        }
        if self.rules.len() > MAX_ENTRIES {
            let extra = self.rules.len() - MAX_ENTRIES;
            let drop: Vec<String> = self
                .rules
                .keys()
                .filter(|id| !in_force.contains(*id))
                .take(extra)
                .cloned()
                .collect();
            for id in drop {
                self.rules.remove(&id);
            }
        }
        changed || self.rules.len() != before
    }

    /// Writes the table to `state_dir` by rename (a reader never sees half a file). The
    /// temporary file is created new (never through an existing file or symlink).
    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(state_dir)?;
        let text = serde_json::to_vec(&self.rules).map_err(std::io::Error::other)?;
        crate::files::write_by_rename(&Self::path(state_dir), &text)
    }

    /// The identity behind a rule id.
    pub fn get(&self, id: &str) -> Option<&RuleIdentity> {
        self.rules.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_survives_a_round_trip_and_keeps_gone_rules() {
        let dir = std::env::temp_dir().join(format!("bulkhead-rules-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let identity = |rule: &str| RuleIdentity {
            direction: "ingress".into(),
            pod: "x/a".into(),
            rule: rule.into(),
        };
        let mut table = RuleTable::load(&dir);
        assert!(table.rules.is_empty());
        assert!(table.merge(BTreeMap::from([(
            "00000000000000aa".into(),
            identity("one")
        )])));
        table.save(&dir).expect("save");
        let mut again = RuleTable::load(&dir);
        assert_eq!(again, table);
        assert!(!again.merge(BTreeMap::from([(
            "00000000000000aa".into(),
            identity("one")
        )])));
        again.merge(BTreeMap::from([(
            "00000000000000bb".into(),
            identity("two"),
        )]));
        again.save(&dir).expect("save");
        let read = RuleTable::load(&dir);
        assert_eq!(
            read.get("00000000000000aa").map(|r| r.rule.as_str()),
            Some("one")
        );
        assert_eq!(
            read.get("00000000000000bb").map(|r| r.rule.as_str()),
            Some("two")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
