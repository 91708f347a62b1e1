//! Where the agent's objects come from, behind one seam ([`Source`]): today a directory of
//! manifests, watched with inotify (the `notify` crate); the Kubernetes watch implements the
//! same trait.
//!
//! The directory source re-reads a file only when it is complete: after the writer closed it
//! (close-after-write) or renamed it into place. A writer that pauses with the file open is
//! never read half-way; a writer that closes after each half is (write to a temporary name and
//! rename it into place, as `kubectl cp`, ConfigMap volumes and editors' safe-save do). A file
//! that does not load keeps its last good version, and says so. Everything that loads is
//! lowered together by the one loader (`bulkhead_k8s::load`), and the difference to the index
//! becomes object-level [`Event`]s.

use bulkhead_index::{Event, Index, Object, ObjectKey, into_objects};
use bulkhead_k8s::{Input, LoadOptions};
use bulkhead_model::Severity;
use notify::{EventKind, RecursiveMode, Watcher as _};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// What a source delivered: events for the index, and the problems it met (files kept at
/// their last good version, a loader error that stopped the update).
#[derive(Debug, Default)]
pub struct Delivery {
    pub events: Vec<Event>,
    pub rejected: Vec<String>,
    /// When the source first saw the change complete (what commit latency is measured from).
    pub seen: Option<Instant>,
}

pub trait Source: std::fmt::Debug {
    /// Everything the source has now, as the events that bring `index` there.
    fn resync(&mut self, index: &Index) -> Delivery;
    /// Waits up to `timeout` for changes; `None` when nothing changed.
    fn changes(&mut self, index: &Index, timeout: Duration) -> Option<Delivery>;
    /// Whether changes wake [`Source::changes`] at once (inotify, a watch) rather than being
    /// found by polling.
    fn is_watching(&self) -> bool {
        false
    }
    /// Whether the source can currently see its objects (a directory always can).
    fn health(&self) -> SourceHealth {
        SourceHealth {
            connected: true,
            ..SourceHealth::default()
        }
    }
    /// The cluster-wide break-glass, where the source has one (the Kubernetes API: a ConfigMap
    /// every agent watches); `None`: off. A change of it is delivered like any change.
    fn cluster_break_glass(&self) -> Option<ClusterBreakGlass> {
        None
    }
    /// What the source is, for `agent status` (`directory /path`, `kubernetes`).
    fn describe(&self) -> String;
    /// Tells the source's audience that this node rolled a namespace back (the Kubernetes
    /// API: an Event). A directory has no audience beyond the agent's log.
    fn announce_rollback(&self, _node: &str, _decision: &crate::rollback::Decision) {}
}

/// The cluster-wide break-glass: every packet accepted on every node, or the named
/// namespaces' pods taken out of enforcement (audit mode: their denials are logged, not
/// enforced). Beside the node-local break-glass, never instead of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterBreakGlass {
    /// Everything open (the ConfigMap names no namespaces, or `*`).
    pub all: bool,
    pub namespaces: std::collections::BTreeSet<String>,
    /// Where it comes from and the operator's reason, for the log.
    pub origin: String,
}

impl ClusterBreakGlass {
    /// From a break-glass ConfigMap's data: `namespaces` (comma- or space-separated; absent,
    /// empty or `*`: all of them) and an optional `reason`.
    pub fn from_data(origin: &str, data: &BTreeMap<String, String>) -> Self {
        let namespaces: std::collections::BTreeSet<String> = data
            .get("namespaces")
            .map(|list| {
                list.split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|n| !n.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let all = namespaces.is_empty() || namespaces.contains("*");
        let reason = data
            .get("reason")
            .map(|r| format!(": {}", r.trim()))
            .unwrap_or_default();
        Self {
            all,
            namespaces: if all { Default::default() } else { namespaces },
            origin: format!("{origin}{reason}"),
        }
    }

    /// `all namespaces` or the list, for logs.
    pub fn scope(&self) -> String {
        if self.all {
            "every namespace (all traffic accepted)".to_string()
        } else {
            let names: Vec<&str> = self.namespaces.iter().map(String::as_str).collect();
            format!("namespace(s) {} (audit mode)", names.join(", "))
        }
    }
}

/// A remote source's state, for metrics and logs: while it is down the agent keeps the last
/// good ruleset, and says so.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceHealth {
    pub connected: bool,
    /// Errors seen since start (failed connects, broken watches).
    pub failures: u64,
    /// Complete lists received (the first one per kind, then relists after 410 or reconnects).
    pub relists: u64,
    pub last_error: Option<String>,
    pub down_since: Option<Instant>,
}

/// The manifest files of a directory, read when complete.
#[derive(Debug)]
pub struct DirectorySource {
    dir: PathBuf,
    options: LoadOptions,
    /// Path -> the last text of it that loaded without an error.
    good: BTreeMap<PathBuf, KeptText>,
    /// Path -> the keys of the objects that text lowers to on its own, and whether it holds
    /// workloads (whose pods depend on objects in other files). Keys, not objects: the index
    /// holds the objects, and a second copy of them doubled the agent's memory.
    lowered: BTreeMap<PathBuf, (Vec<ObjectKey>, bool)>,
    /// How many files hold each key (more than one: the loader decides between them).
    key_files: std::collections::HashMap<bulkhead_index::ObjectKey, usize>,
    /// Keys held by more than one file.
    duplicates: usize,
    /// `None` when inotify is not available: then the directory is compared every poll.
    watch: Option<(
        notify::RecommendedWatcher,
        Receiver<notify::Result<notify::Event>>,
    )>,
    /// For the polling fallback: size and modification time per file.
    seen: Vec<(PathBuf, u64, Option<std::time::SystemTime>)>,
    /// Directories under `dir` that are not manifests (the agent's own state directory).
    ignored: Vec<PathBuf>,
}

fn is_manifest(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'));
    !hidden
        && path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
}

impl DirectorySource {
    /// Watches `dir`; paths under `ignored` (the agent's state directory, when it lies inside
    /// the manifests) are never read as manifests.
    pub fn new(dir: PathBuf, options: LoadOptions, ignored: Vec<PathBuf>) -> Self {
        let watch = (|| {
            let (tx, rx) = channel();
            let mut watcher = notify::recommended_watcher(tx).ok()?;
            watcher.watch(&dir, RecursiveMode::Recursive).ok()?;
            Some((watcher, rx))
        })();
        Self {
            dir,
            options,
            good: BTreeMap::new(),
            lowered: BTreeMap::new(),
            key_files: std::collections::HashMap::new(),
            duplicates: 0,
            watch,
            seen: Vec::new(),
            ignored,
        }
    }

    fn wanted(&self, path: &Path) -> bool {
        is_manifest(path) && !self.ignored.iter().any(|i| path.starts_with(i))
    }

    /// Keeps `lowered` and the key counts in step: `path` now lowers to objects with `keys`
    /// (`None`: gone). Returns the keys of the old and the new version.
    fn set_lowered(&mut self, path: &Path, keys: Option<(Vec<ObjectKey>, bool)>) -> Vec<ObjectKey> {
        let mut touched = Vec::new();
        if let Some((old, _)) = self.lowered.remove(path) {
            for key in old {
                if let Some(n) = self.key_files.get_mut(&key) {
                    *n -= 1;
                    if *n == 1 {
                        self.duplicates -= 1;
                    }
                    if *n == 0 {
                        self.key_files.remove(&key);
                    }
                }
                touched.push(key);
            }
        }
        if let Some((new, workloads)) = keys {
            for key in &new {
                let n = self.key_files.entry(key.clone()).or_default();
                *n += 1;
                if *n == 2 {
                    self.duplicates += 1;
                }
                touched.push(key.clone());
            }
            self.lowered.insert(path.to_path_buf(), (new, workloads));
        }
        touched
    }

    /// Reads `paths` (gone ones are dropped), keeping a file's last good text when the new
    /// one does not load on its own. Returns the keys of every object of those files, before
    /// and after, and the objects of each file that loaded.
    fn reread(&mut self, paths: &[PathBuf], rejected: &mut Vec<String>) -> (Vec<ObjectKey>, Fresh) {
        let mut touched = Vec::new();
        let mut fresh = Fresh::new();
        for path in paths {
            if !path.exists() {
                self.good.remove(path);
                touched.extend(self.set_lowered(path, None));
                continue;
            }
            if !self.wanted(path) {
                continue;
            }
            let (inputs, io) = bulkhead_k8s::read_paths(std::slice::from_ref(path));
            if let Some(problem) = io.iter().find(|d| d.severity == Severity::Error) {
                rejected.push(format!(
                    "{}: {}; keeping its last good version",
                    path.display(),
                    problem.message
                ));
                continue;
            }
            let Some(input) = inputs.into_iter().next() else {
                continue;
            };
            let alone = bulkhead_k8s::load(std::slice::from_ref(&input), &self.options);
            match alone
                .diagnostics
                .iter()
                .find(|d| d.severity == Severity::Error)
            {
                Some(first) => rejected.push(format!(
                    "{} has {} error(s); keeping its last good version (first: {})",
                    path.display(),
                    alone.error_count(),
                    located(first)
                )),
                None => {
                    let workloads = WORKLOAD_KINDS
                        .iter()
                        .any(|k| alone.object_counts.contains_key(*k));
                    let objects = into_objects(alone.cluster);
                    let keys = objects.iter().map(Object::key).collect();
                    touched.extend(self.set_lowered(path, Some((keys, workloads))));
                    fresh.insert(path.clone(), objects);
                    self.good.insert(path.clone(), KeptText::new(&input.text));
                }
            }
        }
        (touched, fresh)
    }

    /// The objects of `path`'s last good text, lowered on its own again (for a file not just
    /// read: its objects are not kept).
    fn lower_again(&self, path: &Path) -> Vec<Object> {
        let Some(text) = self.good.get(path) else {
            return Vec::new();
        };
        let input = Input::new(path.display().to_string(), text.text());
        into_objects(bulkhead_k8s::load(std::slice::from_ref(&input), &self.options).cluster)
    }

    /// Every manifest file under the directory now.
    fn all_files(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = fingerprint(&self.dir)
            .into_iter()
            .map(|(p, _, _)| p)
            .filter(|p| self.wanted(p))
            .collect();
        out.extend(self.good.keys().cloned());
        out.sort();
        out.dedup();
        out
    }

    /// The good texts, loaded together, as the events that bring `index` to them. A load
    /// that fails across files (a duplicate object, ...) changes nothing and is reported.
    /// `fresh`: the objects of the files just read.
    fn deliver(&self, index: &Index, mut rejected: Vec<String>, fresh: Fresh) -> Delivery {
        if let Some(objects) = self.files_apart(fresh) {
            return Delivery {
                events: index.events_towards(objects),
                rejected,
                seen: None,
            };
        }
        let inputs: Vec<Input> = self
            .good
            .iter()
            .map(|(p, t)| Input::new(p.display().to_string(), t.text()))
            .collect();
        let snapshot = bulkhead_k8s::load(&inputs, &self.options);
        if let Some(first) = snapshot
            .diagnostics
            .iter()
            .find(|d| d.severity == Severity::Error)
        {
            rejected.push(format!(
                "the manifests have {} error(s) together; keeping the last good objects (first: {})",
                snapshot.error_count(),
                located(first)
            ));
            return Delivery {
                events: Vec::new(),
                rejected,
                seen: None,
            };
        }
        Delivery {
            events: index.events_towards(into_objects(snapshot.cluster)),
            rejected,
            seen: None,
        }
    }
}

impl DirectorySource {
    /// Every file's objects, lowered file by file, when that is exactly what lowering them
    /// together gives: no file holds workloads (a template stands for its pods only while no
    /// live pod of it exists, and a ReplicaSet names its pods' Deployment, across files), and
    /// no object is in two files (the loader reports that). Then a change costs the changed
    /// file, not every file.
    /// `fresh`: the objects of the files just read; the others are lowered again. File by
    /// file, never all of them in one more vector.
    fn files_apart(&self, mut fresh: Fresh) -> Option<impl Iterator<Item = Object> + '_> {
        if !self.apart() {
            return None;
        }
        Some(
            self.lowered
                .keys()
                .flat_map(move |path| fresh.remove(path).unwrap_or_else(|| self.lower_again(path))),
        )
    }

    /// Whether the files lower apart exactly (see [`DirectorySource::files_apart`]): an object
    /// in two files goes through the loader, which decides (and says) which one counts.
    fn apart(&self) -> bool {
        self.duplicates == 0 && !self.lowered.values().any(|(_, workloads)| *workloads)
    }

    /// The events for the objects of the files just read, when files lower apart: only those
    /// keys are compared with the index, so a change costs its own file.
    fn deliver_touched(
        &self,
        index: &Index,
        touched: Vec<ObjectKey>,
        fresh: Fresh,
        rejected: Vec<String>,
    ) -> Delivery {
        let wanted: std::collections::HashSet<&ObjectKey> = touched.iter().collect();
        let mut now: BTreeMap<ObjectKey, Object> = BTreeMap::new();
        let look_in = |objects: Vec<Object>, now: &mut BTreeMap<ObjectKey, Object>| {
            for object in objects {
                let key = object.key();
                if wanted.contains(&key) {
                    now.insert(key, object);
                }
            }
        };
        let read: Vec<PathBuf> = fresh.keys().cloned().collect();
        for objects in fresh.into_values() {
            look_in(objects, &mut now);
        }
        // A key the changed files no longer hold may still be in another file (it was in
        // two): then that file is lowered again.
        let elsewhere: Vec<&PathBuf> = self
            .lowered
            .iter()
            .filter(|(path, (keys, _))| {
                !read.contains(path)
                    && keys
                        .iter()
                        .any(|k| wanted.contains(k) && !now.contains_key(k))
            })
            .map(|(path, _)| path)
            .collect();
        for path in elsewhere {
            look_in(self.lower_again(path), &mut now);
        }
        let mut events = Vec::new();
        for key in wanted {
            match (now.remove(key), index.get(key)) {
                (Some(new), Some(old)) if new == *old => {}
                (Some(new), _) => events.push(Event::Apply(Box::new(new))),
                (None, Some(_)) => events.push(Event::Delete(key.clone())),
                (None, None) => {}
            }
        }
        Delivery {
            events,
            rejected,
            seen: None,
        }
    }
}

/// `file:line:column message`.
fn located(d: &bulkhead_model::Diagnostic) -> String {
    match &d.location {
        Some(at) => format!("{at} {}", d.message),
        None => d.message.clone(),
    }
}

/// A manifest's last good text, kept compressed: it is read again only when files are lowered
/// together or a file's objects are needed again, and kept as it is, the XL cluster's 57 MB of
/// YAML were a fifth of the agent's memory. LZ4 compresses it about 8x at a few hundred MB/s.
#[derive(Debug)]
struct KeptText(Vec<u8>);

impl KeptText {
    fn new(text: &str) -> Self {
        Self(lz4_flex::compress_prepend_size(text.as_bytes()))
    }

    fn text(&self) -> String {
        // Never an empty text in its place: that would delete the file's objects.
        let bytes = lz4_flex::decompress_size_prepended(&self.0)
            .expect("a kept text decompresses: this process compressed it");
        String::from_utf8(bytes).expect("a kept text is UTF-8: it was a str")
    }
}

/// The objects of each file just read, by path.
type Fresh = BTreeMap<PathBuf, Vec<Object>>;

/// The kinds whose pods depend on objects in other files.
const WORKLOAD_KINDS: [&str; 6] = [
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "CronJob",
];

impl Source for DirectorySource {
    fn describe(&self) -> String {
        format!("directory {}", self.dir.display())
    }

    /// Whether changes are seen through inotify (otherwise by polling).
    fn is_watching(&self) -> bool {
        self.watch.is_some()
    }

    fn resync(&mut self, index: &Index) -> Delivery {
        let mut rejected = Vec::new();
        let files = self.all_files();
        let (_, fresh) = self.reread(&files, &mut rejected);
        self.seen = fingerprint(&self.dir);
        self.deliver(index, rejected, fresh)
    }

    fn changes(&mut self, index: &Index, timeout: Duration) -> Option<Delivery> {
        let mut dirty: Vec<PathBuf> = Vec::new();
        let mut rescan = false;
        let mut seen: Option<Instant> = None;
        match &self.watch {
            Some((_, rx)) => {
                let mut wait = timeout;
                let started = Instant::now();
                loop {
                    match rx.recv_timeout(wait) {
                        Ok(Ok(event)) => {
                            classify(&event, &mut dirty, &mut rescan);
                            if (!dirty.is_empty() || rescan) && seen.is_none() {
                                seen = Some(Instant::now());
                            }
                        }
                        // The kernel's queue overflowed: compare everything.
                        Ok(Err(_)) => rescan = true,
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => return None,
                    }
                    // Events of one save arrive together: collect them for a few ms, then act.
                    if !dirty.is_empty() || rescan {
                        wait = Duration::from_millis(5);
                    } else {
                        wait = timeout.saturating_sub(started.elapsed());
                    }
                }
            }
            None => {
                std::thread::sleep(timeout);
                let now = fingerprint(&self.dir);
                if now != self.seen {
                    // Without inotify a write in progress cannot be told from a complete
                    // one: wait until the directory stays the same for one more poll.
                    loop {
                        std::thread::sleep(timeout);
                        let again = fingerprint(&self.dir);
                        if again == now {
                            break;
                        }
                    }
                    rescan = true;
                }
            }
        }
        if rescan {
            // Only files whose size or time changed are read again.
            let now = fingerprint(&self.dir);
            let before: BTreeMap<&PathBuf, (u64, Option<std::time::SystemTime>)> =
                self.seen.iter().map(|(p, s, t)| (p, (*s, *t))).collect();
            for (path, size, time) in &now {
                if before.get(path) != Some(&(*size, *time)) {
                    dirty.push(path.clone());
                }
            }
            dirty.extend(
                self.good
                    .keys()
                    .filter(|p| !now.iter().any(|(q, _, _)| q == *p))
                    .cloned(),
            );
            self.seen = now;
        }
        if dirty.is_empty() {
            return None;
        }
        dirty.sort();
        dirty.dedup();
        let mut rejected = Vec::new();
        let (touched, fresh) = self.reread(&dirty, &mut rejected);
        let mut delivery = if self.apart() {
            self.deliver_touched(index, touched, fresh, rejected)
        } else {
            self.deliver(index, rejected, fresh)
        };
        delivery.seen = seen;
        if delivery.events.is_empty() && delivery.rejected.is_empty() {
            return None;
        }
        Some(delivery)
    }
}

/// Which paths an inotify event makes worth reading: complete files only.
fn classify(event: &notify::Event, dirty: &mut Vec<PathBuf>, rescan: &mut bool) {
    use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind};
    match event.kind {
        // Closed after writing, renamed in or out, removed: complete.
        EventKind::Access(AccessKind::Close(AccessMode::Write))
        | EventKind::Modify(ModifyKind::Name(_))
        | EventKind::Remove(RemoveKind::File | RemoveKind::Any) => {
            for path in &event.paths {
                // ConfigMap volumes swap a `..data` symlink: everything may have changed.
                let dotted = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(".."));
                if dotted || path.is_dir() {
                    *rescan = true;
                } else {
                    dirty.push(path.clone());
                }
            }
        }
        EventKind::Create(CreateKind::Folder) | EventKind::Remove(RemoveKind::Folder) => {
            *rescan = true;
        }
        // Data written, a file created: wait for the close or the rename.
        _ => {}
    }
}

/// Names, sizes and modification times of every file under `dir` (symlinks followed).
pub fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut visited = std::collections::HashSet::new();
    while let Some(d) = stack.pop() {
        // A symlink loop is entered once.
        if let Ok(canonical) = std::fs::canonicalize(&d)
            && !visited.insert(canonical)
        {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => stack.push(path),
                Ok(m) => out.push((path, m.len(), m.modified().ok())),
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("bulkhead-source-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n";
    const DENY: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: x}\nspec: {podSelector: {}}\n";

    fn apply(index: &mut Index, delivery: Delivery) -> usize {
        delivery.events.into_iter().map(|e| index.handle(e)).sum()
    }

    #[test]
    fn a_file_open_for_writing_is_not_read_until_closed_and_a_broken_one_keeps_its_last_version() {
        let dir = temp("watch");
        std::fs::write(dir.join("ns.yaml"), NS).expect("write");
        let mut source = DirectorySource::new(dir.clone(), LoadOptions::default(), Vec::new());
        assert!(source.is_watching(), "inotify is available here");
        let mut index = Index::new();
        let first = source.resync(&index);
        assert!(first.rejected.is_empty());
        assert_eq!(apply(&mut index, first), 1);
        // Half a file, still open: nothing is read.
        let mut file = std::fs::File::create(dir.join("deny.yaml")).expect("create");
        file.write_all(&DENY.as_bytes()[..40]).expect("half");
        file.flush().expect("flush");
        assert!(
            source
                .changes(&index, Duration::from_millis(300))
                .is_none_or(|d| d.events.is_empty()),
            "a file still being written is not read"
        );
        file.write_all(&DENY.as_bytes()[40..]).expect("rest");
        drop(file);
        let delivery = source
            .changes(&index, Duration::from_secs(5))
            .expect("the close is seen");
        assert_eq!(apply(&mut index, delivery), 1, "the policy arrives whole");
        assert_eq!(index.cluster().policies.len(), 1);
        // A broken save keeps the last good version, loudly.
        std::fs::write(dir.join("deny.yaml"), "kind: NetworkPolicy\napiVersion: networking.k8s.io/v1\nmetadata: {name: deny, namespace: x}\nspec: {policyTypes: [Sideways]}\n").expect("write");
        let delivery = source
            .changes(&index, Duration::from_secs(5))
            .expect("the change is seen");
        assert!(
            delivery
                .rejected
                .iter()
                .any(|r| r.contains("keeping its last good version")),
            "{:?}",
            delivery.rejected
        );
        assert_eq!(apply(&mut index, delivery), 0);
        assert_eq!(
            index.cluster().policies.len(),
            1,
            "the last good policy stays"
        );
        // A file renamed into place is read; a removed one's objects go.
        std::fs::write(
            dir.join(".tmp-ns2"),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: y}\n",
        )
        .expect("write");
        std::fs::rename(dir.join(".tmp-ns2"), dir.join("ns2.yaml")).expect("rename");
        let delivery = source
            .changes(&index, Duration::from_secs(5))
            .expect("rename seen");
        assert_eq!(apply(&mut index, delivery), 1);
        std::fs::remove_file(dir.join("ns2.yaml")).expect("remove");
        let delivery = source
            .changes(&index, Duration::from_secs(5))
            .expect("removal seen");
        assert_eq!(apply(&mut index, delivery), 1);
        assert!(index.cluster().namespace("y").is_none_or(|n| !n.defined));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod apart {
    use super::*;
    use bulkhead_index::objects_of;

    const FILES: [(&str, &str); 4] = [
        (
            "ns.yaml",
            "apiVersion: v1\nkind: NamespaceList\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: shop, labels: {team: a}}\n",
        ),
        (
            "pods.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-5d8f7c-x1\n  namespace: shop\n  labels: {app: web, pod-template-hash: 5d8f7c}\n  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-5d8f7c, uid: u1, controller: true}]\nspec: {nodeName: n1, containers: [{name: c, image: i, ports: [{name: http, containerPort: 8080}]}]}\nstatus: {podIP: 10.0.0.5}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: db-0, namespace: other, labels: {app: db}}\nspec: {nodeName: n2, containers: [{name: c, image: i}]}\nstatus: {podIP: 10.0.0.6}\n",
        ),
        (
            "np.yaml",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {team: a}}}], ports: [{port: http}]}]\n",
        ),
        (
            "calico.yaml",
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: deny-db}\nspec:\n  order: 10\n  selector: app == 'db'\n  types: [Ingress]\n  ingress: [{action: Deny, source: {selector: app == 'web'}}]\n",
        ),
    ];

    fn sorted(mut objects: Vec<bulkhead_index::Object>) -> Vec<String> {
        objects.sort_by_key(bulkhead_index::Object::key);
        objects.iter().map(|o| format!("{o:?}")).collect()
    }

    #[test]
    fn files_lowered_apart_give_what_the_loader_gives_together() {
        let dir = std::env::temp_dir().join(format!("bulkhead-apart-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        for (name, text) in FILES {
            std::fs::write(dir.join(name), text).expect("write");
        }
        let mut source = DirectorySource::new(dir.clone(), LoadOptions::default(), Vec::new());
        let delivery = source.resync(&Index::new());
        assert!(delivery.rejected.is_empty(), "{:?}", delivery.rejected);
        let apart: Vec<Object> = source
            .files_apart(Fresh::new())
            .expect("no workloads, no duplicates")
            .collect();
        let inputs: Vec<Input> = FILES
            .iter()
            .map(|(n, t)| Input::new(dir.join(n).display().to_string(), *t))
            .collect();
        let together = bulkhead_k8s::load(&inputs, &LoadOptions::default());
        assert_eq!(together.error_count(), 0);
        assert_eq!(sorted(apart), sorted(objects_of(&together.cluster)));
        // Changes delivered file by file keep the index equal to a whole load.
        let mut index = Index::new();
        for e in source.resync(&index).events {
            index.handle(e);
        }
        let whole = |dir: &Path| -> Vec<String> {
            let (inputs, _) = bulkhead_k8s::read_paths(&[dir.to_path_buf()]);
            sorted(objects_of(
                &bulkhead_k8s::load(&inputs, &LoadOptions::default()).cluster,
            ))
        };
        std::fs::write(
            dir.join("pods.yaml"),
            FILES[1].1.replace("10.0.0.5", "10.0.0.9"),
        )
        .expect("readdress");
        std::fs::remove_file(dir.join("np.yaml")).expect("delete a policy file");
        std::fs::write(
            dir.join("ns2.yaml"),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: other, labels: {team: b}}\n",
        )
        .expect("add");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match source.changes(&index, Duration::from_millis(300)) {
                Some(d) => {
                    for e in d.events {
                        index.handle(e);
                    }
                }
                None if sorted(objects_of(&index.cluster())) == whole(&dir) => break,
                None => {}
            }
            if std::time::Instant::now() > deadline {
                break;
            }
        }
        assert_eq!(sorted(objects_of(&index.cluster())), whole(&dir));
        // A workload anywhere: the files are lowered together again.
        std::fs::write(
            dir.join("deploy.yaml"),
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: api, namespace: shop}\nspec:\n  selector: {matchLabels: {app: api}}\n  template:\n    metadata: {labels: {app: api}}\n    spec: {containers: [{name: c, image: i}]}\n",
        )
        .expect("write");
        source.resync(&index);
        assert!(source.files_apart(Fresh::new()).is_none());
        // The same object in two files: the loader decides.
        std::fs::remove_file(dir.join("deploy.yaml")).expect("rm");
        std::fs::write(dir.join("calico-copy.yaml"), FILES[3].1).expect("write");
        source.resync(&index);
        assert!(source.files_apart(Fresh::new()).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
