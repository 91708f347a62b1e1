//! Running the built `bulkhead` binary, shared by the CLI test files.
#![allow(dead_code, reason = "each test file uses a different part")]

use assert_cmd::Command;
use std::path::PathBuf;
use std::time::Duration;

/// What one run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Standard output as JSON; the panic message shows both streams.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}{}", self.stdout, self.stderr))
    }
}

/// The binary under test.
pub fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("bulkhead")
}

/// A command for the binary, to add arguments, a directory or stdin to.
pub fn bulkhead() -> Command {
    Command::new(bin())
}

/// Runs a prepared command. A generous hang guard: a hang fails the test, not the whole run.
pub fn output(mut command: Command) -> Run {
    let output = command
        .timeout(Duration::from_secs(120))
        .output()
        .expect("runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

pub fn run(args: &[&str]) -> Run {
    let mut command = bulkhead();
    command.args(args);
    output(command)
}

/// A path below the CLI crate (`tests/...`, `../../examples/...`), as a string argument.
pub fn crate_path(relative: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(relative)
        .to_string_lossy()
        .into_owned()
}
