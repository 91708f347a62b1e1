//! `bulkhead test`, `diff`, `audit`, `coverage` and `scaffold`: the CI analyses.

use crate::cli::{
    AuditArgs, AuditFormat, CoverageArgs, CoverageFormat, DiffArgs, DiffFormat, FlowFormat,
    GenerateArgs, ScaffoldArgs, TestArgs, TestFormat,
};
use crate::snapshot;
use anyhow::{Context as _, bail};
use bulkhead_analysis::expectations::{self, ExpectationFile};
use bulkhead_engine::Engine;
use bulkhead_k8s::{Input, LoadOptions, Snapshot};
use serde_json::json;
use std::path::Path;
use std::process::{Command, ExitCode};

pub fn test(args: &TestArgs) -> anyhow::Result<ExitCode> {
    let snapshot = snapshot::load(&args.input)?;
    snapshot::warn_about_errors(&snapshot);
    let engine = Engine::new(
        &snapshot.cluster,
        snapshot::engine_options(&args.semantics, &snapshot),
    );
    let text = std::fs::read_to_string(&args.expect)
        .with_context(|| format!("reading {}", args.expect.display()))?;
    let docs = bulkhead_k8s::yaml_tree::parse_documents(&text);
    let root = match docs.into_iter().next() {
        Some(Ok(doc)) => doc.root.context("the expectations file is empty")?,
        Some(Err(e)) => bail!(
            "{}:{}:{}: {}",
            args.expect.display(),
            e.span.line,
            e.span.column,
            e.message
        ),
        None => bail!("the expectations file is empty"),
    };
    let file: ExpectationFile = serde_json::from_value(root.to_json()).with_context(|| {
        format!(
            "{}: expected `expectations:` with {{from, to, port?, protocol?, expect: allow|deny}}",
            args.expect.display()
        )
    })?;
    let outcomes = expectations::run(&engine, &file);
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    match args.output {
        TestFormat::Human => {
            let mut out = String::new();
            for o in &outcomes {
                let got = o
                    .verdict
                    .as_ref()
                    .map_or("error", |v| if v.allowed { "allow" } else { "deny" });
                let expected = match o.expectation.expect {
                    expectations::Expect::Allow => "allow",
                    expectations::Expect::Deny => "deny",
                };
                out.push_str(&format!(
                    "{}  {:<60} expected {expected:<5} got {got}\n",
                    if o.passed { "PASS" } else { "FAIL" },
                    o.name
                ));
                if !o.passed {
                    if let Some(e) = &o.error {
                        out.push_str(&format!("      {e}\n"));
                    }
                    if let Some(v) = &o.verdict {
                        for half in [&v.egress, &v.ingress] {
                            out.push_str(&format!(
                                "      {}: {} [{}]",
                                half.direction,
                                half.reason.describe(),
                                half.reason.code()
                            ));
                            for r in &half.decided_by {
                                out.push_str(&format!(
                                    "; {} {}{} {}",
                                    r.kind,
                                    r.namespace
                                        .as_ref()
                                        .map(|n| format!("{n}/"))
                                        .unwrap_or_default(),
                                    r.name,
                                    r.rule.clone().unwrap_or_default()
                                ));
                            }
                            out.push('\n');
                        }
                    }
                }
            }
            out.push_str(&format!(
                "{} passed, {failed} failed\n",
                outcomes.len() - failed
            ));
            super::print(&out)?;
        }
        TestFormat::Json => {
            let rows: Vec<_> = outcomes
                .iter()
                .map(|o| {
                    let e = &o.expectation;
                    json!({
                        "name": o.name,
                        "from": e.from,
                        "to": e.to,
                        "protocol": e.protocol.clone().unwrap_or_else(|| "TCP".to_string()),
                        "port": e.port,
                        "expected": match e.expect {
                            expectations::Expect::Allow => "allow",
                            expectations::Expect::Deny => "deny",
                        },
                        "actual": o.verdict.as_ref().map(|v| if v.allowed { "allow" } else { "deny" }),
                        "passed": o.passed,
                        "error": o.error,
                    })
                })
                .collect();
            super::print(&format!(
                "{:#}\n",
                json!({"results": rows, "passed": outcomes.len() - failed, "failed": failed})
            ))?;
        }
        TestFormat::Junit => {
            use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
            let mut report = Report::new("bulkhead");
            let mut suite = TestSuite::new("bulkhead test");
            for o in &outcomes {
                let status = if o.passed {
                    TestCaseStatus::success()
                } else {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_message(
                        o.error
                            .clone()
                            .unwrap_or_else(|| "verdict differs from the expectation".into()),
                    );
                    s
                };
                suite.add_test_case(TestCase::new(o.name.clone(), status));
            }
            report.add_test_suite(suite);
            super::print(&report.to_string()?)?;
        }
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn load_paths(paths: &[std::path::PathBuf], namespace: &str) -> anyhow::Result<Snapshot> {
    let (inputs, io) = snapshot::read(paths)?;
    let mut s = bulkhead_k8s::load(
        &inputs,
        &LoadOptions {
            default_namespace: namespace.to_string(),
        },
    );
    s.diagnostics.extend(io);
    Ok(s)
}

/// Whether a side of `diff` is the live cluster (`--base live`).
fn is_live(paths: &[std::path::PathBuf]) -> bool {
    matches!(paths, [p] if p.as_os_str() == "live")
}

fn side_name(paths: &[std::path::PathBuf], fallback: &str) -> String {
    if is_live(paths) {
        "the live cluster".to_string()
    } else if paths.is_empty() {
        fallback.to_string()
    } else {
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// One side of `diff`: the live cluster or files.
fn load_side(args: &DiffArgs, paths: &[std::path::PathBuf]) -> anyhow::Result<Snapshot> {
    if !is_live(paths) {
        return load_paths(paths, &args.namespace);
    }
    let inputs = snapshot::read_live(&crate::cli::ClusterArgs {
        live: true,
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
    })?;
    Ok(bulkhead_k8s::load(
        &inputs,
        &LoadOptions {
            default_namespace: args.namespace.clone(),
        },
    ))
}

/// Every manifest file under `dir` at git revision `rev`, read with git itself.
fn load_revision(dir: &str, rev: &str, namespace: &str) -> anyhow::Result<Snapshot> {
    let listing = Command::new("git")
        .args(["-C", dir, "ls-tree", "-r", "--name-only", rev, "--", "."])
        .output()
        .context("running git ls-tree")?;
    if !listing.status.success() {
        bail!(
            "git ls-tree {rev}: {}",
            String::from_utf8_lossy(&listing.stderr).trim()
        );
    }
    let mut inputs = Vec::new();
    for file in String::from_utf8_lossy(&listing.stdout).lines() {
        if !(file.ends_with(".yaml") || file.ends_with(".yml") || file.ends_with(".json")) {
            continue;
        }
        let show = Command::new("git")
            .args(["-C", dir, "show", &format!("{rev}:./{file}")])
            .output()
            .context("running git show")?;
        if show.status.success() {
            inputs.push(Input::new(
                format!("{rev}:{}", Path::new(dir).join(file).display()),
                String::from_utf8_lossy(&show.stdout).into_owned(),
            ));
        }
    }
    Ok(bulkhead_k8s::load(
        &inputs,
        &LoadOptions {
            default_namespace: namespace.to_string(),
        },
    ))
}

pub fn diff(args: &DiffArgs) -> anyhow::Result<ExitCode> {
    let (base, head) = if let [range, dir] = args.git.as_slice() {
        let (a, b) = range.split_once("..").context("--git expects REV1..REV2")?;
        (
            load_revision(dir, a, &args.namespace)?,
            load_revision(dir, b, &args.namespace)?,
        )
    } else {
        (load_side(args, &args.base)?, load_side(args, &args.head)?)
    };
    for (label, s) in [("base", &base), ("head", &head)] {
        if s.error_count() > 0 {
            eprintln!(
                "warning: the {label} snapshot has {} error(s); objects with errors are left out",
                s.error_count()
            );
        }
        // An object defined twice: which definition counts explains a difference that
        // would otherwise look like drift (a cluster fed both files in order holds the later).
        for d in s
            .diagnostics
            .iter()
            .filter(|d| d.code == bulkhead_k8s::codes::DUPLICATE_OBJECT.code)
        {
            let at = d
                .location
                .as_ref()
                .map(|l| format!("{l}: "))
                .unwrap_or_default();
            eprintln!("warning: the {label} snapshot: {at}{} [BH010]", d.message);
        }
    }
    let (b, h) = (
        Engine::new(
            &base.cluster,
            snapshot::engine_options(&args.semantics, &base),
        ),
        Engine::new(
            &head.cluster,
            snapshot::engine_options(&args.semantics, &head),
        ),
    );
    let report = bulkhead_analysis::diff::diff(&b, &h);
    let radius = bulkhead_analysis::blast_radius::compare(&b, &h, usize::from(args.hops));
    let policies = bulkhead_analysis::diff::policy_changes(&base.cluster, &head.cluster, &report);
    match args.output {
        DiffFormat::Markdown => super::print(&format!(
            "{}{}{}",
            bulkhead_analysis::diff::markdown(&report),
            bulkhead_analysis::diff::policy_markdown(
                &policies,
                &side_name(&args.base, "the base"),
                &side_name(&args.head, "the head")
            ),
            bulkhead_analysis::blast_radius::markdown(&radius)
        ))?,
        DiffFormat::Json => {
            let rows = |changes: &[bulkhead_analysis::diff::Change]| -> Vec<serde_json::Value> {
                changes.iter().map(|c| json!({"from": c.from, "to": c.to, "protocol": c.protocol.to_string(), "ports": c.ports.to_string(), "policies": c.policies})).collect()
            };
            super::print(&format!(
                "{:#}\n",
                json!({"added": rows(&report.added), "removed": rows(&report.removed), "policies": policies, "blast_radius": radius})
            ))?;
        }
    }
    let drift = args.fail_on_drift && !policies.is_empty();
    Ok(
        if drift || (args.fail_on_new_access && !report.added.is_empty()) {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        },
    )
}

pub fn coverage(args: &CoverageArgs) -> anyhow::Result<ExitCode> {
    let snapshot = snapshot::load(&args.input)?;
    snapshot::warn_about_errors(&snapshot);
    let engine = Engine::new(
        &snapshot.cluster,
        snapshot::engine_options(&args.semantics, &snapshot),
    );
    let c = bulkhead_analysis::coverage::coverage(&engine);
    match args.output {
        CoverageFormat::Json => super::print(&format!("{:#}\n", serde_json::to_value(&c)?))?,
        CoverageFormat::Prometheus => super::print(&bulkhead_analysis::coverage::prometheus(&c))?,
        CoverageFormat::Table => {
            let mut out = format!(
                "{:<24} {:>5} {:>13} {:>12} {:>9} {:>9} {:>8}  EXPOSED\n",
                "NAMESPACE", "PODS", "DENY IN/OUT", "POLICIES", "ISO IN %", "ISO OUT %", ""
            );
            for n in &c.namespaces {
                let deny = format!(
                    "{}/{}",
                    if n.default_deny_ingress { "yes" } else { "no" },
                    if n.default_deny_egress { "yes" } else { "no" }
                );
                let percent = |p: Option<f64>| p.map_or("-".to_string(), |p| format!("{p:.0}%"));
                out.push_str(&format!(
                    "{:<24} {:>5} {:>13} {:>12} {:>9} {:>9} {:>8}  {}\n",
                    n.namespace,
                    n.pods,
                    deny,
                    n.policies,
                    percent(n.isolated_ingress_percent()),
                    percent(n.isolated_egress_percent()),
                    "",
                    n.ingress_exposed_workloads.join(", ")
                ));
            }
            out.push_str(&format!(
                "total: {} pods, {} isolated for ingress, {} for egress; {}/{} namespaces with default-deny ingress, {} with egress\n",
                c.pods, c.isolated_ingress, c.isolated_egress, c.namespaces_with_default_deny_ingress, c.namespaces.len(), c.namespaces_with_default_deny_egress
            ));
            super::print(&out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn scaffold(args: &ScaffoldArgs) -> anyhow::Result<ExitCode> {
    if !bulkhead_k8s::names::is_dns1123_label(&args.namespace) {
        bail!("{:?} is not a valid namespace name", args.namespace);
    }
    super::print(&bulkhead_analysis::scaffold::scaffold(
        &args.namespace,
        &args.dns_namespace,
    ))?;
    Ok(ExitCode::SUCCESS)
}

pub fn audit(args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let snapshot = snapshot::load(&args.input)?;
    snapshot::warn_about_errors(&snapshot);
    let engine = Engine::new(
        &snapshot.cluster,
        snapshot::engine_options(&args.semantics, &snapshot),
    );
    let (records, bad) = read_flows(&args.flows, args.format)?;
    if records.is_empty() {
        bail!("{}: no flow records", args.flows.display());
    }
    let report = bulkhead_analysis::flows::audit(&engine, &records);
    match args.output {
        AuditFormat::Json => {
            let mut value = serde_json::to_value(&report)?;
            value["bad_lines"] = serde_json::json!(bad.len());
            super::print(&format!("{value:#}\n"))?;
        }
        AuditFormat::Markdown => super::print(&audit_markdown(&report, bad.len()))?,
        AuditFormat::Human => {
            let mut out = String::new();
            for d in &report.denied {
                out.push_str(&format!(
                    "WOULD DENY  {} -> {} {}{}  ({} seen)\n",
                    d.from,
                    d.to,
                    d.protocol,
                    d.port.map(|p| format!("/{p}")).unwrap_or_default(),
                    d.seen
                ));
                for why in &d.denied_by {
                    out.push_str(&format!("            {why}\n"));
                }
            }
            for u in &report.unresolved {
                out.push_str(&format!(
                    "UNRESOLVED  {} ({} record(s))\n",
                    u.reason, u.records
                ));
            }
            for u in &report.unreadable {
                out.push_str(&format!("UNREADABLE  {u}\n"));
            }
            out.push_str(&format!(
                "\n{} flow record(s): {} allowed, {} would be denied ({} distinct flows), {} unresolved{}\n",
                report.flows,
                report.allowed,
                report.denied_records,
                report.denied.len(),
                report.unresolved_records,
                if bad.is_empty() {
                    String::new()
                } else {
                    format!("; {} unreadable line(s)", bad.len())
                }
            ));
            if !report.unused_rules.is_empty() {
                out.push_str(&format!(
                    "{} allow rule(s) decided no recorded flow: {}\n",
                    report.unused_rules.len(),
                    report.unused_rules.join(", ")
                ));
            }
            super::print(&out)?;
        }
    }
    let unresolved_fails = report.unresolved_records > 0 && !args.allow_unresolved;
    Ok(
        if args.fail_on_deny && (!report.denied.is_empty() || unresolved_fails) {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        },
    )
}

/// The audit for a pull request: what the proposed policies would break, grouped.
fn audit_markdown(report: &bulkhead_analysis::flows::AuditReport, bad_lines: usize) -> String {
    let mut out = format!(
        "### Bulkhead audit: recorded flows against the proposed policies\n\n{} record(s): {} allowed, **{} would be denied** ({} distinct flows), {} unresolved, {} unreadable line(s).\n",
        report.flows,
        report.allowed,
        report.denied_records,
        report.denied.len(),
        report.unresolved_records,
        bad_lines
    );
    if !report.denied.is_empty() {
        out.push_str("\n| from | to | protocol/port | records | first seen | last seen | denied by |\n|---|---|---|---|---|---|---|\n");
        for d in &report.denied {
            let time = |t: &Option<serde_json::Value>| {
                t.as_ref()
                    .map(|v| v.to_string().trim_matches('"').to_string())
                    .unwrap_or_default()
            };
            out.push_str(&format!(
                "| `{}` | `{}` | {}{} | {} | {} | {} | {} |\n",
                d.from,
                d.to,
                d.protocol,
                d.port.map(|p| format!("/{p}")).unwrap_or_default(),
                d.seen,
                time(&d.first_seen),
                time(&d.last_seen),
                d.denied_by.join("<br>")
            ));
        }
    }
    if !report.unresolved.is_empty() {
        out.push_str("\n**Unresolved** (not evaluated; the snapshot is stale or the log is from another cluster):\n\n");
        for u in &report.unresolved {
            out.push_str(&format!("- {} ({} record(s))\n", u.reason, u.records));
        }
    }
    if !report.unused_rules.is_empty() {
        out.push_str("\n**Allow rules that decided no recorded flow:**\n\n");
        for r in &report.unused_rules {
            out.push_str(&format!("- {r}\n"));
        }
    }
    out
}

/// The flow log at `path` (`-`: stdin), streamed: gzip is recognised by its magic bytes, the
/// format by `--format` or sniffed (`{` starts JSON lines, anything else is CSV with a
/// header), records of one flow are merged as they arrive (memory grows with distinct flows,
/// not records), bad lines are reported on stderr with file:line and counted. On a terminal,
/// progress every million records.
fn read_flows(
    path: &Path,
    format: FlowFormat,
) -> anyhow::Result<(
    Vec<bulkhead_analysis::flows::FlowRecord>,
    Vec<bulkhead_analysis::flows::BadLine>,
)> {
    use bulkhead_analysis::flows::{Aggregator, BadLine, parse_csv};
    use std::io::{BufRead as _, BufReader, IsTerminal as _, Read};
    let raw: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?)
    };
    let mut buffered = BufReader::with_capacity(1 << 20, raw);
    let gzip = buffered.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let mut reader: Box<dyn std::io::BufRead> = if gzip {
        Box::new(BufReader::with_capacity(
            1 << 20,
            flate2::read::MultiGzDecoder::new(buffered),
        ))
    } else {
        Box::new(buffered)
    };
    let json = match format {
        FlowFormat::Json => true,
        FlowFormat::Csv => false,
        FlowFormat::Auto => {
            let head = reader.fill_buf()?;
            let first = head.iter().find(|b| !b.is_ascii_whitespace());
            first.is_none_or(|b| *b == b'{' || *b == b'#')
        }
    };
    let interactive = std::io::stderr().is_terminal();
    let mut aggregator = Aggregator::default();
    let mut bad: Vec<BadLine> = Vec::new();
    let mut bad_count = 0usize;
    let name = path.display().to_string();
    let mut note_bad = |b: BadLine| {
        bad_count += 1;
        // The first hundred are named; the rest are counted.
        if bad_count <= 100 {
            eprintln!("{name}:{}: not a flow record: {}", b.line, b.message);
        }
        bad.push(b);
    };
    if json {
        let mut line = String::new();
        let mut number = 0usize;
        loop {
            line.clear();
            let n = reader
                .read_line(&mut line)
                .with_context(|| format!("reading {}", path.display()))?;
            if n == 0 {
                break;
            }
            number += 1;
            match aggregator.add_line(&line) {
                Ok(true) => {
                    if interactive && aggregator.records % 1_000_000 == 0 {
                        eprint!("\rread {} records...", aggregator.records);
                    }
                }
                Ok(false) => {}
                Err(message) => note_bad(BadLine {
                    line: number,
                    message,
                }),
            }
        }
    } else {
        parse_csv(reader, |r| aggregator.add(r), &mut note_bad);
    }
    if interactive && aggregator.records >= 1_000_000 {
        eprintln!("\rread {} records", aggregator.records);
    }
    if bad_count > 100 {
        eprintln!(
            "{}: {} more bad line(s) not shown",
            path.display(),
            bad_count - 100
        );
    }
    Ok((aggregator.into_records(), bad))
}

pub fn generate(args: &GenerateArgs) -> anyhow::Result<ExitCode> {
    let (snapshot, inputs) = snapshot::load_with_inputs(&args.input)?;
    snapshot::warn_about_input(&snapshot);
    snapshot::warn_about_errors(&snapshot);
    let options = snapshot::engine_options(&args.semantics, &snapshot);
    let engine = Engine::new(&snapshot.cluster, options);
    let (records, _) = read_flows(&args.flows, args.format)?;
    let generated = bulkhead_analysis::generate::generate(
        &engine,
        &records,
        &bulkhead_analysis::generate::GenerateOptions {
            cidr_prefix_v4: args.cidr_prefix,
            calico: args.output == crate::cli::GenerateFormat::Calico,
            ..Default::default()
        },
    );
    for why in &generated.skipped {
        eprintln!("left out: {why}");
    }
    // Built-in verification: the proposal with the snapshot, and alone, as a reviewer would
    // check it by hand.
    let load = |inputs: &[Input]| {
        bulkhead_k8s::load(
            inputs,
            &LoadOptions {
                default_namespace: args.input.namespace().to_string(),
            },
        )
    };
    let proposal = Input::new("generated.yaml", generated.yaml.clone());
    let mut all = inputs.clone();
    all.push(proposal.clone());
    let with = load(&all);
    let alone = load(std::slice::from_ref(&proposal)).cluster;
    // Calico output makes the combined cluster a Calico one: its own semantics decide.
    let verification = bulkhead_analysis::generate::check_proposal(
        &bulkhead_analysis::generate::Proposal {
            snapshot: &snapshot.cluster,
            with: &with.cluster,
            with_diagnostics: &with.diagnostics,
            with_options: snapshot::engine_options(&args.semantics, &with),
            alone: &alone,
            file: &proposal.name,
        },
        &records,
        &generated,
    );
    let mut summary = vec![format!(
        "verified against {} observed flow record(s):",
        verification.observed
    )];
    summary.push(format!(
        "  {} observed flow(s) denied by the snapshot's policies plus these{}",
        verification.denied.len(),
        list(&verification.denied)
    ));
    summary.push(format!(
        "  {} connection(s) allowed beyond the observed flows and DNS{}",
        verification.extra.len(),
        list(&verification.extra)
    ));
    summary.push(format!(
        "  {} pod(s) of a default-denied namespace without DNS{}",
        verification.without_dns.len(),
        list(&verification.without_dns)
    ));
    summary.push(format!(
        "  bulkhead check on these policies: {} error(s) or warning(s){}",
        verification.check.len(),
        list(&verification.check)
    ));
    let ok = verification.passed();
    for line in &summary {
        eprintln!("{line}");
    }
    eprintln!(
        "{} policies from {} flow record(s){}",
        generated.policies,
        records.len(),
        if ok {
            ""
        } else {
            ": verification FAILED, review before applying"
        }
    );
    let mut out = String::new();
    for line in &summary {
        out.push_str(&format!("# {line}\n"));
    }
    out.push_str(&generated.yaml);
    super::print(&out)?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        let shown: Vec<&str> = items.iter().take(10).map(String::as_str).collect();
        format!(
            ": {}{}",
            shown.join("; "),
            if items.len() > 10 { "; ..." } else { "" }
        )
    }
}
