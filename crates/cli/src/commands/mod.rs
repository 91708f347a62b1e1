//! One module per subcommand; each returns the process exit code.

mod agent;
mod agent_http;
mod analysis;
mod blast_radius;
mod check;
mod demo;
pub(crate) mod explain;
pub(crate) mod map;
mod report;
mod serve;

use crate::cli::{Cli, Command};
pub use check::rule_markdown;
use std::process::ExitCode;

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Explain(args) => explain::run(&args),
        Command::Map(args) => map::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Compile(args) => agent::compile(&args),
        Command::Agent(args) => agent::run(&args),
        Command::Rules { output } => {
            print(&check::list_rules(output))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Rule { code } => match check::rule_doc(&code) {
            Some(doc) => {
                print(&doc)?;
                Ok(ExitCode::SUCCESS)
            }
            None => anyhow::bail!("no rule {code:?}; `bulkhead rules` lists them"),
        },
        Command::Test(args) => analysis::test(&args),
        Command::BlastRadius(args) => blast_radius::run(&args),
        Command::Report(args) => report::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Diff(args) => analysis::diff(&args),
        Command::Audit(args) => analysis::audit(&args),
        Command::Generate(args) => analysis::generate(&args),
        Command::Coverage(args) => analysis::coverage(&args),
        Command::Scaffold(args) => analysis::scaffold(&args),
        Command::Codes { output } => {
            print(&check::list_codes(output))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completion { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut command, "bulkhead", &mut out);
            print(&String::from_utf8_lossy(&out))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir } => {
            let command = <Cli as clap::CommandFactory>::command();
            match dir {
                Some(dir) => {
                    std::fs::create_dir_all(&dir)?;
                    clap_mangen::generate_to(command, &dir)?;
                    eprintln!("wrote the man pages to {}", dir.display());
                }
                None => {
                    let mut out = Vec::new();
                    clap_mangen::Man::new(command).render(&mut out)?;
                    print(&String::from_utf8_lossy(&out))?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes to stdout, turning a closed pipe into an error `main` recognises and ignores.
/// Ends a command's use of a large value without freeing it: the process exits next and the
/// kernel takes the pages back at once, where freeing 300,000 policies one allocation at a
/// time kept the user waiting a third of a second.
pub fn keep_until_exit<T>(value: T) {
    std::mem::forget(value);
}

pub fn print(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
