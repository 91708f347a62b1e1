//! Reading the table's state back: per-rule deny counters and the two mode maps, from `nft -j`
//! output. A deny rule's comment carries its typed id and, for people, its names (`bh:<id>
//! ingress of x/a: NetworkPolicy x/web ingress[0]`, cut to fit); the agent's id table names a
//! counter whatever the length of the names.

use serde_json::Value;

/// Packets a deny rule dropped (or, in audit mode, let through as would-deny).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DenyCounter {
    /// The typed rule id, when the table carries one.
    pub id: Option<String>,
    /// `ingress` or `egress`.
    pub direction: String,
    /// `ns/name`.
    pub pod: String,
    pub rule: String,
    /// The pod's namespace is under audit: these packets were let through.
    pub audit: bool,
    pub packets: u64,
    pub bytes: u64,
}

/// What the table on this node is doing now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableState {
    pub audit: bool,
    pub break_glass: bool,
    pub denies: Vec<DenyCounter>,
    /// Packets dropped because they came from or went to a pod interface with no rules yet.
    pub unknown_interface_drops: u64,
}

/// The packets the fail-closed rules dropped (comment [`crate::ruleset::UNKNOWN_INTERFACE`]).
pub fn unknown_interface_drops(table_json: &str) -> Result<u64, serde_json::Error> {
    let v: Value = serde_json::from_str(table_json)?;
    Ok(v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item.get("rule"))
        .filter(|rule| rule["comment"].as_str() == Some(crate::ruleset::UNKNOWN_INTERFACE))
        .flat_map(|rule| rule["expr"].as_array().into_iter().flatten())
        .filter_map(|e| e.get("counter"))
        .map(|c| c["packets"].as_u64().unwrap_or(0))
        .sum())
}

/// The deny counters in `nft -j -t list table inet bulkhead` output (terse: no set elements,
/// so reading stays fast however large the sets are).
pub fn deny_counters(table_json: &str) -> Result<Vec<DenyCounter>, serde_json::Error> {
    let v: Value = serde_json::from_str(table_json)?;
    let mut out = Vec::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        let Some(rule) = item.get("rule") else {
            continue;
        };
        let exprs = rule["expr"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let denies = exprs
            .iter()
            .any(|e| e["vmap"]["data"].as_str() == Some("@deny_verdict"));
        // A deny in a namespace under audit counts, then returns.
        let audited = exprs.iter().any(|e| e.get("return").is_some());
        let Some(counter) = exprs.iter().find_map(|e| e.get("counter")) else {
            continue;
        };
        let Some((id, endpoint, name)) = rule["comment"]
            .as_str()
            .and_then(crate::render::parse_deny_comment)
        else {
            continue;
        };
        let Some((direction, pod)) = endpoint.split_once(" of ") else {
            continue;
        };
        if !denies && !audited {
            continue;
        }
        out.push(DenyCounter {
            id: id.map(str::to_string),
            direction: direction.to_string(),
            pod: pod.to_string(),
            rule: name.to_string(),
            audit: audited,
            packets: counter["packets"].as_u64().unwrap_or(0),
            bytes: counter["bytes"].as_u64().unwrap_or(0),
        });
    }
    Ok(out)
}

/// Whether a one-element verdict map (`nft -j list map inet bulkhead NAME`) maps IPv4 to
/// `verdict`.
pub fn map_verdict_is(map_json: &str, verdict: &str) -> Result<bool, serde_json::Error> {
    let v: Value = serde_json::from_str(map_json)?;
    let found = v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i.get("map"))
        .flat_map(|m| m["elem"].as_array().into_iter().flatten())
        .any(|pair| pair[0] == "ipv4" && pair[1].get(verdict).is_some());
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_counters_are_read_by_comment() {
        let json = r#"{"nftables": [
          {"metainfo": {"version": "1.0.6"}},
          {"rule": {"chain": "in_0_t1", "comment": "ingress of x/a: end of tier default",
            "expr": [{"counter": {"packets": 12, "bytes": 720}},
                     {"vmap": {"key": {"meta": {"key": "nfproto"}}, "data": "@deny_verdict"}}]}},
          {"rule": {"chain": "in_1_t0", "comment": "bh:00112233445566aa ingress of y/b: NetworkPolicy y/web ingress[0]",
            "expr": [{"counter": {"packets": 2, "bytes": 120}}, {"return": null}]}},
          {"rule": {"chain": "eg_0", "comment": "anti-spoofing x/a",
            "expr": [{"counter": {"packets": 3, "bytes": 180}}, {"drop": null}]}},
          {"rule": {"chain": "in_0_t1", "comment": "NetworkPolicy x/web ingress[0]",
            "expr": [{"return": null}]}}
        ]}"#;
        assert_eq!(
            deny_counters(json).expect("json"),
            vec![
                DenyCounter {
                    id: None,
                    direction: "ingress".into(),
                    pod: "x/a".into(),
                    rule: "end of tier default".into(),
                    audit: false,
                    packets: 12,
                    bytes: 720,
                },
                DenyCounter {
                    id: Some("00112233445566aa".into()),
                    direction: "ingress".into(),
                    pod: "y/b".into(),
                    rule: "NetworkPolicy y/web ingress[0]".into(),
                    audit: true,
                    packets: 2,
                    bytes: 120,
                }
            ]
        );
    }

    #[test]
    fn unknown_interface_drops_are_summed() {
        let json = r#"{"nftables": [
          {"rule": {"chain": "forward", "comment": "bh:unknown-pod-interface",
            "expr": [{"counter": {"packets": 5, "bytes": 300}}, {"drop": null}]}},
          {"rule": {"chain": "forward", "comment": "bh:unknown-pod-interface",
            "expr": [{"counter": {"packets": 2, "bytes": 120}}, {"drop": null}]}},
          {"rule": {"chain": "eg_0", "comment": "anti-spoofing x/a",
            "expr": [{"counter": {"packets": 3, "bytes": 180}}, {"drop": null}]}}
        ]}"#;
        assert_eq!(unknown_interface_drops(json).expect("json"), 7);
    }

    #[test]
    fn mode_maps_are_read() {
        let audit = r#"{"nftables": [{"map": {"name": "deny_verdict", "elem": [["ipv4", {"return": null}], ["ipv6", {"return": null}]]}}]}"#;
        assert!(map_verdict_is(audit, "return").expect("json"));
        let empty = r#"{"nftables": [{"map": {"name": "break_glass"}}]}"#;
        assert!(!map_verdict_is(empty, "accept").expect("json"));
    }
}
