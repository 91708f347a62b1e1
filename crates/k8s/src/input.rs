//! Reading manifests from files, directories and stdin: the only place this crate does I/O.
//!
//! Only regular files are read. A FIFO would block forever and a device such as `/dev/zero`
//! never ends, so both are refused by name, and directory walks skip (and name) every entry
//! that is not a regular file or a directory. Directory symlinks are followed, but a directory
//! already on the walk (a symlink to `.` or to an ancestor) is reported once and not entered
//! again, so a loop cannot make the walk run forever.

use crate::codes;
use bulkhead_model::{Diagnostic, SourceLocation};
use std::collections::HashSet;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

/// The text of one file, with the name diagnostics use for it. Treat the text as read-only
/// once lines have been asked for (their index is kept).
#[derive(Clone, Debug)]
pub struct Input {
    pub name: String,
    pub text: String,
    /// Byte offset where each line starts, built at the first [`Input::line`]: finding a line
    /// by scanning the text made thousands of diagnostics in a large file quadratic.
    line_starts: std::sync::OnceLock<Vec<usize>>,
    /// `name`, shared by the locations of everything read from this input.
    shared_name: std::sync::OnceLock<std::sync::Arc<str>>,
}

impl PartialEq for Input {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.text == other.text
    }
}

impl Eq for Input {}

impl Input {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
            line_starts: std::sync::OnceLock::new(),
            shared_name: std::sync::OnceLock::new(),
        }
    }

    /// [`Input::name`] for a [`SourceLocation`]: one allocation however many locations.
    pub fn shared_name(&self) -> std::sync::Arc<str> {
        self.shared_name
            .get_or_init(|| self.name.as_str().into())
            .clone()
    }

    /// The text of a 1-based line, without its line break.
    pub fn line(&self, line: usize) -> Option<&str> {
        let starts = self.line_starts.get_or_init(|| {
            std::iter::once(0)
                .chain(self.text.match_indices('\n').map(|(i, _)| i + 1))
                .collect()
        });
        let start = *starts.get(line.checked_sub(1)?)?;
        let end = starts.get(line).map_or(self.text.len(), |next| next - 1);
        self.text.get(start..end).map(|l| l.trim_end_matches('\r'))
    }
}

/// Reads each path: a file, a directory (recursively, `*.yaml`, `*.yml`, `*.json`, sorted), or
/// `-` for stdin. Unreadable paths become diagnostics (errors, `BH001`), skipped entries
/// warnings; never a panic, a hang or a silent skip.
pub fn read_paths(paths: &[PathBuf]) -> (Vec<Input>, Vec<Diagnostic>) {
    let mut inputs = Vec::new();
    let mut report = Report::default();
    for path in paths {
        if path.as_os_str() == "-" {
            match read_text(std::io::stdin().lock(), "standard input", 0) {
                Ok(text) => inputs.push(Input::new("<stdin>", text)),
                Err(message) => report
                    .diagnostics
                    .push(io_error(Path::new("<stdin>"), &message)),
            }
            continue;
        }
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                let mut files = Vec::new();
                let mut on_walk = HashSet::new();
                collect_manifest_files(path, &mut files, &mut report, &mut on_walk);
                files.sort();
                // Side by side: a repository of many small files waits on each one's open and
                // read otherwise. Kept in the sorted order, which the load follows.
                use rayon::prelude::*;
                let read: Vec<_> = files.par_iter().map(|file| read_file(file)).collect();
                for (file, read) in files.iter().zip(read) {
                    match read {
                        Ok(input) => inputs.push(input),
                        Err(message) => report.diagnostics.push(io_error(file, &message)),
                    }
                }
            }
            Ok(meta) if meta.is_file() => match read_file(path) {
                Ok(input) => inputs.push(input),
                Err(message) => report.diagnostics.push(io_error(path, &message)),
            },
            Ok(meta) => report.diagnostics.push(io_error(
                path,
                &format!(
                    "it is a {}, not a regular file; save the manifests to a file, or pipe them to `-`",
                    file_kind(&meta.file_type())
                ),
            )),
            Err(e) => report.diagnostics.push(io_error(path, &e.to_string())),
        }
    }
    (inputs, report.diagnostics)
}

#[derive(Default)]
struct Report {
    diagnostics: Vec<Diagnostic>,
}

/// Reads text to its end; stops at the first NUL byte (no manifest contains one, and a
/// stream of them is `/dev/zero`) and at invalid UTF-8.
/// `expected`: the size the text probably has (a file's length), so a large file is read into
/// one allocation of its size instead of a doubled one (the agent keeps the text).
fn read_text(reader: impl Read, what: &str, expected: usize) -> Result<String, String> {
    read_rest(reader, Vec::with_capacity(expected), what)
}

/// [`read_text`] after `bytes`, already read and free of NUL bytes.
fn read_rest(mut reader: impl Read, mut bytes: Vec<u8>, what: &str) -> Result<String, String> {
    loop {
        // Straight into the text, a part at a time (an endless stream is stopped by its first
        // NUL): a copy through a buffer and a byte-at-a-time NUL search were a quarter of a
        // second on 100 MB before any parallel work could start.
        let from = bytes.len();
        match (&mut reader).take(1 << 20).read_to_end(&mut bytes) {
            Ok(0) => break,
            Ok(_) => {}
            // `read_to_end` retries an interrupted read itself.
            Err(e) => return Err(e.to_string()),
        }
        if let Some(at) = memchr::memchr(0, &bytes[from..]) {
            return Err(nul_at(what, from + at));
        }
    }
    bytes.shrink_to_fit();
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "{what} is not UTF-8 text (invalid byte at byte {})",
            e.utf8_error().valid_up_to()
        )
    })
}

fn nul_at(what: &str, at: usize) -> String {
    format!("{what} is not text: a NUL byte at byte {at}")
}

/// Files at least this long are read in parts side by side ([`read_parts`]).
const PARALLEL_READ_BYTES: usize = 8 << 20;

/// The first `len` bytes of `file` read in parts on every core, each searched for a NUL
/// byte there: read on one thread, the kernel's copy of 100 MB and its page faults were a
/// tenth of a second with the other core idle, before any parsing could start (BENCHMARKS.md,
/// eighteenth session). `Ok(None)` when the file is shorter than `len` by now: it changed
/// while read, and is read again from its start by one thread.
fn read_parts(file: &std::fs::File, len: usize, what: &str) -> Result<Option<Vec<u8>>, String> {
    use rayon::prelude::*;
    use std::os::unix::fs::FileExt as _;
    const PART: usize = 4 << 20;
    // Zeroed memory comes straight from the OS, untouched: each part faults its own pages in.
    let mut bytes = vec![0u8; len];
    let parts: Vec<Result<Option<usize>, std::io::Error>> = bytes
        .par_chunks_mut(PART)
        .enumerate()
        .map(|(i, part)| {
            file.read_exact_at(part, (i * PART) as u64)?;
            Ok(memchr::memchr(0, part).map(|at| i * PART + at))
        })
        .collect();
    let mut first_nul = None;
    for part in parts {
        match part {
            Ok(nul) => first_nul = first_nul.or(nul),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.to_string()),
        }
    }
    match first_nul {
        Some(at) => Err(nul_at(what, at)),
        None => Ok(Some(bytes)),
    }
}

/// The file at `path`, or what stops it being read (a message for [`io_error`]).
fn read_file(path: &Path) -> Result<Input, String> {
    let what = "the file";
    let read = || -> Result<String, String> {
        let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        // The length is a hint: the file may grow or shrink while it is read.
        let expected = file.metadata().map_or(0, |m| m.len()).min(1 << 30) as usize;
        if expected >= PARALLEL_READ_BYTES
            && let Some(bytes) = read_parts(&file, expected, what)?
        {
            // Whatever was appended since the length was taken is read after it.
            use std::io::Seek as _;
            file.seek(std::io::SeekFrom::Start(bytes.len() as u64))
                .map_err(|e| e.to_string())?;
            return read_rest(file, bytes, what);
        }
        read_text(file, what, expected)
    };
    read().map(|text| Input::new(path.display().to_string(), text))
}

fn file_kind(t: &std::fs::FileType) -> &'static str {
    if t.is_fifo() {
        "FIFO (named pipe)"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_socket() {
        "socket"
    } else if t.is_symlink() {
        "symbolic link"
    } else {
        "special file"
    }
}

fn collect_manifest_files(
    dir: &Path,
    out: &mut Vec<PathBuf>,
    report: &mut Report,
    on_walk: &mut HashSet<(u64, u64)>,
) {
    let identity = match std::fs::metadata(dir) {
        Ok(meta) => (meta.dev(), meta.ino()),
        Err(e) => {
            report.diagnostics.push(io_error(dir, &e.to_string()));
            return;
        }
    };
    if !on_walk.insert(identity) {
        report.diagnostics.push(skipped(
            dir,
            "this directory is already being read (a symlink loop, or a second link to it); not entered again",
        ));
        return;
    }
    let mut entries: Vec<std::fs::DirEntry> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.flatten().collect(),
        Err(e) => {
            report.diagnostics.push(io_error(dir, &e.to_string()));
            on_walk.remove(&identity);
            return;
        }
    };
    entries.sort_by_key(std::fs::DirEntry::file_name);
    if let Some(kustomization) = entries.iter().find(|e| {
        matches!(
            e.file_name().to_str(),
            Some("kustomization.yaml" | "kustomization.yml" | "Kustomization")
        )
    }) {
        // Kustomize sources are not objects: patches look like partial objects, bases are
        // changed by overlays. Only `kustomize build` knows what the cluster gets.
        report.diagnostics.push(located(
            Diagnostic::new(
                codes::KUSTOMIZE_SOURCE.code,
                codes::KUSTOMIZE_SOURCE.name,
                codes::KUSTOMIZE_SOURCE.severity,
                format!(
                    "{} is a Kustomize directory: its files are sources (bases, patches), not the objects the cluster gets, so none of them is read",
                    dir.display()
                ),
            )
            .with_help(format!(
                "render it first: kustomize build {} | bulkhead check -",
                dir.display()
            )),
            &kustomization.path(),
        ));
        on_walk.remove(&identity);
        return;
    }
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name();
        // Hidden entries (.git, editor swap files) are never manifests.
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        // Follows symlinks: a link to a file or a directory is read as what it points at.
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) => {
                report
                    .diagnostics
                    .push(skipped(&path, &format!("cannot follow it: {e}")));
                continue;
            }
        };
        let is_manifest_name = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        );
        if meta.is_dir() {
            collect_manifest_files(&path, out, report, on_walk);
        } else if meta.is_file() {
            if is_manifest_name {
                out.push(path);
            }
        } else {
            report.diagnostics.push(skipped(
                &path,
                &format!(
                    "it is a {}, not a regular file; not read",
                    file_kind(&meta.file_type())
                ),
            ));
        }
    }
    on_walk.remove(&identity);
}

fn io_error(path: &Path, message: &str) -> Diagnostic {
    located(
        Diagnostic::new(
            codes::IO_ERROR.code,
            codes::IO_ERROR.name,
            codes::IO_ERROR.severity,
            format!("cannot read {}: {message}", path.display()),
        ),
        path,
    )
}

fn skipped(path: &Path, message: &str) -> Diagnostic {
    located(
        Diagnostic::new(
            codes::SKIPPED_ENTRY.code,
            codes::SKIPPED_ENTRY.name,
            codes::SKIPPED_ENTRY.severity,
            format!("skipped {}: {message}", path.display()),
        ),
        path,
    )
}

fn located(mut d: Diagnostic, path: &Path) -> Diagnostic {
    d.location = Some(SourceLocation {
        file: path.display().to_string().into(),
        line: 1,
        column: 1,
    });
    d
}

#[cfg(test)]
mod line_tests {
    use super::Input;

    #[test]
    fn lines_are_those_of_splitting_at_line_feeds() {
        for text in ["", "a", "a\n", "a\nb", "a\r\nb\r\n", "\n\nc\n", "é\nü\n"] {
            let input = Input::new("t", text);
            for n in 0usize..6 {
                let expected = n
                    .checked_sub(1)
                    .and_then(|k| text.split('\n').nth(k))
                    .map(|l| l.trim_end_matches('\r'));
                assert_eq!(input.line(n), expected, "{text:?} line {n}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{PARALLEL_READ_BYTES, read_file, read_parts, read_rest, read_text};

    /// A temporary file holding `bytes`, removed when dropped (also when a test fails).
    fn temp_file(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
        std::io::Write::write_all(&mut file, bytes).expect("write it");
        file
    }

    /// Text over the parallel threshold, not a whole number of parts, with a two-byte
    /// character across the boundary of the second and third 4 MiB parts.
    fn large_text() -> Vec<u8> {
        let mut text = b"k: v\n".repeat((PARALLEL_READ_BYTES + (5 << 20) + 3) / 5);
        let boundary = 2 * (4 << 20);
        text[boundary - 1..boundary + 1].copy_from_slice("\u{e9}".as_bytes());
        text
    }

    #[test]
    fn a_large_file_read_in_parts_is_the_file() {
        let text = large_text();
        let file = temp_file(&text);
        let input = read_file(file.path()).expect("text");
        assert_eq!(input.text.as_bytes(), &text[..]);
    }

    #[test]
    fn a_large_file_places_its_nul_byte_and_its_invalid_byte_in_the_whole_text() {
        let mut text = large_text();
        let at = 2 * (4 << 20) + 17;
        // The first NUL of its part and of the text; another in a later part is not the one named.
        text[at] = 0;
        text[at + 40] = 0;
        text[at + (4 << 20)] = 0;
        let file = temp_file(&text);
        let error = read_file(file.path()).expect_err("a NUL byte");
        assert_eq!(
            error,
            format!("the file is not text: a NUL byte at byte {at}")
        );
        let mut text = large_text();
        text[at] = 0xff;
        let file = temp_file(&text);
        let error = read_file(file.path()).expect_err("invalid UTF-8");
        assert_eq!(
            error,
            format!("the file is not UTF-8 text (invalid byte at byte {at})")
        );
    }

    #[test]
    fn a_file_that_grew_is_read_to_its_new_end_and_one_that_shrank_again() {
        use std::io::Seek as _;
        let text = large_text();
        let file = temp_file(&text);
        // The length taken before the file grew: the rest is read after the parts.
        let short = PARALLEL_READ_BYTES + 11;
        let mut handle = std::fs::File::open(file.path()).expect("open");
        let parts = read_parts(&handle, short, "the file")
            .expect("read")
            .expect("the file is at least that long");
        assert_eq!(parts.len(), short);
        handle
            .seek(std::io::SeekFrom::Start(short as u64))
            .expect("seek");
        let whole = read_rest(handle, parts, "the file").expect("text");
        assert_eq!(whole.as_bytes(), &text[..]);
        // A length the file no longer has: read again from its start, by one thread.
        let handle = std::fs::File::open(file.path()).expect("open");
        assert!(
            read_parts(&handle, text.len() + (4 << 20), "the file")
                .expect("no I/O error")
                .is_none()
        );
    }

    #[test]
    fn a_nul_byte_is_placed_by_its_offset_in_the_whole_text_not_in_its_part() {
        // Past the first 1 MiB part, so the part's own offset must be added.
        let mut text = vec![b'a'; (1 << 20) + 5];
        text[(1 << 20) + 3] = 0;
        let error = read_text(&text[..], "stdin", 0).expect_err("a NUL byte");
        assert_eq!(error, "stdin is not text: a NUL byte at byte 1048579");
    }

    #[test]
    fn text_longer_than_one_part_and_its_expected_size_is_read_whole() {
        let text = "x".repeat(3 * (1 << 20) + 7);
        assert_eq!(read_text(text.as_bytes(), "stdin", 10).expect("text"), text);
    }
}
