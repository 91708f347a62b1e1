//! `bulkhead`: the command-line face of the Bulkhead libraries. Glue only: parse flags, call a
//! library, render, choose the exit code (0 ok, 1 findings, 2 usage or input error).

mod cli;
mod commands;
mod references;
mod render;
mod snapshot;

use clap::Parser;
use std::process::ExitCode;

/// mimalloc: see `bulkhead-allocator` for why, and for its one tuning.
#[global_allocator]
static ALLOCATOR: bulkhead_allocator::MiMalloc = bulkhead_allocator::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(error) => {
            // A closed pipe (`bulkhead map | head`) is not an error worth a message.
            if error.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}
