//! `bulkhead test`: expected allow/deny flows, checked against the engine.

use bulkhead_engine::{Engine, Flow, Verdict};
use bulkhead_model::Protocol;
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExpectationFile {
    pub expectations: Vec<Expectation>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    #[serde(default)]
    pub name: Option<String>,
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub protocol: Option<String>,
    pub expect: Expect,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Allow,
    Deny,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub name: String,
    pub expectation: Expectation,
    /// `None` when the expectation could not be evaluated (`error` says why).
    pub verdict: Option<Verdict>,
    pub error: Option<String>,
    pub passed: bool,
}

impl Expectation {
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            format!(
                "{} -> {} {}/{}",
                self.from,
                self.to,
                self.protocol.as_deref().unwrap_or("TCP"),
                self.port.map(|p| p.to_string()).unwrap_or_default()
            )
        })
    }
}

pub fn run(engine: &Engine<'_>, file: &ExpectationFile) -> Vec<Outcome> {
    file.expectations
        .iter()
        .map(|e| {
            let evaluated = (|| -> Result<Verdict, String> {
                let src = engine.resolve(&e.from).map_err(|x| x.to_string())?;
                let dst = engine.resolve(&e.to).map_err(|x| x.to_string())?;
                let protocol: Protocol = e
                    .protocol
                    .as_deref()
                    .unwrap_or("TCP")
                    .parse()
                    .map_err(|x: bulkhead_model::ports::UnknownProtocol| x.to_string())?;
                if protocol.has_ports() && e.port.is_none() {
                    return Err(format!("a port is required for {protocol}"));
                }
                Ok(engine.evaluate(&Flow {
                    src: src.endpoint,
                    dst: dst.endpoint,
                    protocol,
                    port: e.port,
                    icmp: None,
                }))
            })();
            match evaluated {
                Ok(v) => Outcome {
                    name: e.label(),
                    passed: v.allowed == (e.expect == Expect::Allow),
                    expectation: e.clone(),
                    verdict: Some(v),
                    error: None,
                },
                Err(err) => Outcome {
                    name: e.label(),
                    passed: false,
                    expectation: e.clone(),
                    verdict: None,
                    error: Some(err),
                },
            }
        })
        .collect()
}
