//! Reading manifests from files, directories and stdin: the only place this crate does I/O.

use crate::codes;
use bulkhead_model::{Diagnostic, SourceLocation};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The text of one file, with the name diagnostics use for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    pub name: String,
    pub text: String,
}

impl Input {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
        }
    }

    /// The text of a 1-based line, without its line break.
    pub fn line(&self, line: usize) -> Option<&str> {
        self.text
            .split('\n')
            .nth(line.checked_sub(1)?)
            .map(|l| l.trim_end_matches('\r'))
    }
}

/// Reads each path: a file, a directory (recursively, `*.yaml`, `*.yml`, `*.json`, sorted), or
/// `-` for stdin. Unreadable paths become diagnostics, never a panic or a silent skip.
pub fn read_paths(paths: &[PathBuf]) -> (Vec<Input>, Vec<Diagnostic>) {
    let mut inputs = Vec::new();
    let mut diagnostics = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            match std::io::stdin().read_to_string(&mut text) {
                Ok(_) => inputs.push(Input::new("<stdin>", text)),
                Err(e) => diagnostics.push(io_error(path, &e.to_string())),
            }
            continue;
        }
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                let mut files = Vec::new();
                collect_manifest_files(path, &mut files, &mut diagnostics);
                files.sort();
                for file in files {
                    read_file(&file, &mut inputs, &mut diagnostics);
                }
            }
            Ok(_) => read_file(path, &mut inputs, &mut diagnostics),
            Err(e) => diagnostics.push(io_error(path, &e.to_string())),
        }
    }
    (inputs, diagnostics)
}

fn read_file(path: &Path, inputs: &mut Vec<Input>, diagnostics: &mut Vec<Diagnostic>) {
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => inputs.push(Input::new(path.display().to_string(), text)),
            Err(_) => diagnostics.push(io_error(path, "the file is not UTF-8 text")),
        },
        Err(e) => diagnostics.push(io_error(path, &e.to_string())),
    }
}

fn collect_manifest_files(dir: &Path, out: &mut Vec<PathBuf>, diagnostics: &mut Vec<Diagnostic>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            diagnostics.push(io_error(dir, &e.to_string()));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        // Hidden entries (.git, editor swap files) are never manifests.
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect_manifest_files(&path, out, diagnostics);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(path);
        }
    }
}

fn io_error(path: &Path, message: &str) -> Diagnostic {
    let mut d = Diagnostic::new(
        codes::IO_ERROR.code,
        codes::IO_ERROR.name,
        codes::IO_ERROR.severity,
        format!("cannot read {}: {message}", path.display()),
    );
    d.location = Some(SourceLocation {
        file: path.display().to_string(),
        line: 1,
        column: 1,
    });
    d
}
