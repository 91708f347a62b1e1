//! Every lint rule has a fixture that triggers it and a near-identical one that does not, both
//! checked against `tests/rules/base.yaml`. The findings of the trigger are a snapshot
//! (`expected.txt`; regenerate with BULKHEAD_BLESS=1 after reviewing the change).

use bulkhead_analysis::{Config, lint};
use bulkhead_k8s::{Input, LoadOptions, load};
use libtest_mimic::{Arguments, Failed, Trial};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rules")
}

fn findings(dir: &Path, fixture: &str, code: &str) -> Result<Vec<String>, Failed> {
    let read = |p: PathBuf| -> Result<Input, Failed> {
        let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        Ok(Input::new(
            p.file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            text,
        ))
    };
    let snapshot = load(
        &[read(root().join("base.yaml"))?, read(dir.join(fixture))?],
        &LoadOptions::default(),
    );
    if snapshot.error_count() > 0 {
        return Err(format!("{fixture} does not load: {:?}", snapshot.diagnostics).into());
    }
    Ok(lint(&snapshot.cluster, &Config::default())
        .into_iter()
        .filter(|d| d.code == code)
        .map(|d| {
            format!(
                "{} {} {}: {}",
                d.code,
                d.name,
                d.location.map(|l| l.to_string()).unwrap_or_default(),
                d.message
            )
        })
        .collect())
}

fn main() {
    let args = Arguments::from_args();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root())
        .expect("fixtures")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut trials = Vec::new();
    let documented: Vec<&str> = bulkhead_analysis::rules::ALL
        .iter()
        .map(|r| r.info.code)
        .collect();
    for code in &documented {
        let has_fixture = dirs.iter().any(|d| {
            d.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(code))
        });
        let code = code.to_string();
        trials.push(Trial::test(
            format!("rules::{code}::has_fixtures"),
            move || {
                if has_fixture {
                    Ok(())
                } else {
                    Err(format!("{code} has no fixture directory").into())
                }
            },
        ));
    }
    for dir in dirs {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let code = name.split('-').next().unwrap_or_default().to_string();
        let (d1, c1) = (dir.clone(), code.clone());
        trials.push(Trial::test(format!("rules::{name}::trigger"), move || {
            let got = findings(&d1, "trigger.yaml", &c1)?;
            if got.is_empty() {
                return Err(format!("trigger.yaml raises no {c1}").into());
            }
            let text = got.join("\n") + "\n";
            let snapshot = d1.join("expected.txt");
            if std::env::var_os("BULKHEAD_BLESS").is_some() {
                std::fs::write(&snapshot, &text).map_err(|e| e.to_string())?;
            }
            let expected = std::fs::read_to_string(&snapshot)
                .map_err(|e| format!("{}: {e} (run with BULKHEAD_BLESS=1)", snapshot.display()))?;
            if expected != text {
                return Err(
                    format!("findings changed:\n--- expected\n{expected}--- got\n{text}").into(),
                );
            }
            Ok(())
        }));
        trials.push(Trial::test(format!("rules::{name}::clean"), move || {
            let got = findings(&dir, "clean.yaml", &code)?;
            if got.is_empty() {
                Ok(())
            } else {
                Err(format!("clean.yaml raises {got:#?}").into())
            }
        }));
    }
    libtest_mimic::run(&args, trials).exit();
}
