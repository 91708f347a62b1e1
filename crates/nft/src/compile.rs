//! Builds the ruleset of one node: per local pod an egress and an ingress chain dispatched by
//! the pod's host-side interface, per applying tier a chain linked with `goto`, every peer and
//! port list a shared set (dataplane.md §5.1).

use crate::ruleset::{
    Chain, Enforcement, Match, NamedSet, Rule, Ruleset, SetData, Side, Verdict, stable_hash,
};
use bulkhead_engine::{DirectionProgram, Engine, PortMatch, ProgramRule, RuleKey};
use bulkhead_model::{Action, AddrRanges, Direction, Protocol, TierDefault};
use std::collections::{BTreeMap, HashMap};

#[derive(Clone, Debug, Default)]
pub struct CompileOptions {
    pub node: String,
    /// Pod key (`ns/name`) -> host-side interface of the pod on this node. Local pods without
    /// an entry cannot be dispatched and are reported by [`compile`].
    pub interfaces: BTreeMap<String, String>,
    /// Namespaces whose pods' denies are only logged (audit one namespace at a time).
    pub audit_namespaces: std::collections::BTreeSet<String>,
    /// Interface name prefixes of pods (fail closed for a pod whose rules are not in place).
    pub pod_interface_prefixes: Vec<String>,
    /// This node's pod CIDRs: an address in them without rules yet is dropped (fail closed
    /// for pods behind a bridge).
    pub pod_cidrs: Vec<ipnet::IpNet>,
}

/// What compiling left out, so the agent can say it, and where each rule's address sets went
/// (what a later change of endpoints elsewhere needs to update them in place).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompileReport {
    pub pods: usize,
    pub pods_without_interface: Vec<String>,
    /// Every address part of every compiled rule, and the set that holds it.
    pub recipes: BTreeMap<SetRecipe, String>,
    /// Recipes that came out with two contents for two local pods (a rule's remote side
    /// depending on the pod it is compiled for): their sets are named by content instead,
    /// and cannot be updated in place.
    pub conflicts: usize,
}

/// What an address set of a rule holds: one family of a rule's remote side, of its excluded
/// part (Calico `notNets`/`notSelector`), or of its destination named ports. A function of the
/// rule and the cluster's endpoints only, so the set is named by it: an endpoint that comes or
/// goes elsewhere changes the set's elements, never its name or the rules that use it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SetRecipe {
    pub rule: RuleKey,
    pub part: RulePart,
    pub ipv4: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RulePart {
    Remote,
    RemoteNot,
    NamedPorts,
}

impl std::fmt::Display for SetRecipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:?} {}",
            self.rule,
            self.part,
            if self.ipv4 { "ipv4" } else { "ipv6" }
        )
    }
}

struct Builder {
    /// Set name -> contents. Address sets are named by their recipe, port sets by content (so
    /// equal port lists are shared).
    sets: BTreeMap<String, SetData>,
    chains: Vec<Chain>,
    recipes: BTreeMap<SetRecipe, String>,
    conflicts: usize,
}

impl Builder {
    /// The set of one recipe's contents, named by the recipe.
    fn recipe_set(&mut self, recipe: SetRecipe, data: SetData) -> String {
        let name = format!("s_{:016x}", stable_hash(recipe.to_string().as_bytes()));
        let name = match self.sets.get(&name) {
            // Never for the rules compiled today (the remote side does not depend on the
            // local pod); should it ever, the later content is named by content and the fast
            // path is refused (`conflicts`).
            Some(d) if *d != data => {
                self.conflicts += 1;
                return self.set(data);
            }
            _ => name,
        };
        self.sets.entry(name.clone()).or_insert(data);
        self.recipes.insert(recipe, name.clone());
        name
    }

    fn set(&mut self, data: SetData) -> String {
        let mut name = format!("s_{:016x}", stable_hash(format!("{data:?}").as_bytes()));
        // Two contents with one hash (never seen, but cheap to rule out): the later one gets
        // a longer name, still derived from its content only.
        while self.sets.get(&name).is_some_and(|d| *d != data) {
            name = format!("{name}_{:x}", stable_hash(name.as_bytes()));
        }
        self.sets.entry(name.clone()).or_insert(data);
        name
    }
    /// The set of one family's addresses of one recipe.
    fn addr_set(&mut self, recipe: SetRecipe, part: AddrRanges) -> String {
        let data = if recipe.ipv4 {
            SetData::Addr4(part)
        } else {
            SetData::Addr6(part)
        };
        self.recipe_set(recipe, data)
    }
}

/// Compiles the ruleset for the pods of `options.node`.
pub fn compile(engine: &Engine<'_>, options: &CompileOptions) -> (Ruleset, CompileReport) {
    let cluster = engine.cluster();
    let mut b = Builder {
        sets: BTreeMap::new(),
        chains: Vec::new(),
        recipes: BTreeMap::new(),
        conflicts: 0,
    };
    let mut egress_dispatch = BTreeMap::new();
    let mut ingress_dispatch = BTreeMap::new();
    let mut egress_by_address = BTreeMap::new();
    let mut ingress_by_address = BTreeMap::new();
    // An interface several local pods share (a bridge) cannot tell them apart.
    let mut users: HashMap<&str, usize> = HashMap::new();
    for pod in &cluster.pods {
        if pod.node.as_deref() == Some(options.node.as_str())
            && pod.is_endpoint()
            && !pod.host_network
            && !pod.ips.is_empty()
            && let Some(interface) = options.interfaces.get(&pod.key())
        {
            *users.entry(interface.as_str()).or_default() += 1;
        }
    }
    let mut report = CompileReport::default();
    for (i, pod) in cluster.pods.iter().enumerate() {
        if pod.node.as_deref() != Some(options.node.as_str())
            || !pod.is_endpoint()
            || pod.host_network
            || pod.ips.is_empty()
        {
            continue;
        }
        let Some(interface) = options.interfaces.get(&pod.key()) else {
            report.pods_without_interface.push(pod.key());
            continue;
        };
        report.pods += 1;
        for direction in [Direction::Egress, Direction::Ingress] {
            let program = engine.program(i, direction);
            // Named by the pod, not by its position: adding a pod elsewhere renames nothing.
            let prefix = format!(
                "{}_{:016x}",
                if direction == Direction::Egress {
                    "eg"
                } else {
                    "in"
                },
                stable_hash(pod.key().as_bytes())
            );
            let endpoint = format!("{direction} of {}", pod.key());
            // Audited (and staged) policies that change this direction's program: the kernel
            // evaluates the program with them too, after the enforced decision, and logs
            // where it differs (would-deny, would-allow).
            let would = engine
                .staged_program(i, direction)
                .filter(|w| *w != program)
                .map(|w| {
                    let isolating = engine.staged_policies_applying(i, direction).join(", ");
                    WouldEntries {
                        on_allow: would_chains(
                            &mut b, &prefix, &endpoint, direction, &w, true, &isolating,
                        ),
                        on_deny: would_chains(
                            &mut b, &prefix, &endpoint, direction, &w, false, &isolating,
                        ),
                    }
                });
            let mut entry = Chain {
                name: prefix.clone(),
                comment: endpoint.clone(),
                endpoint: endpoint.clone(),
                rules: Vec::new(),
            };
            if direction == Direction::Egress {
                // A pod may only send from its own addresses.
                for ip in &pod.ips {
                    entry.rules.push(Rule {
                        matches: vec![
                            Match::Family { ipv4: ip.is_ipv4() },
                            Match::AddrNot {
                                side: Side::Source,
                                addr: *ip,
                            },
                        ],
                        verdict: Verdict::DropAlways,
                        comment: format!("anti-spoofing {}", pod.key()),
                    });
                }
            }
            if program.tiers.is_empty() {
                if direction == Direction::Ingress && would.is_none() {
                    continue;
                }
                let allow = Rule {
                    matches: vec![],
                    verdict: Verdict::Return,
                    comment: "no policy applies: allow".into(),
                };
                entry.rules.extend(with_would(vec![allow], would.as_ref()));
            } else {
                entry.rules.push(Rule {
                    matches: vec![],
                    verdict: Verdict::Goto(tier_chain(&prefix, &program.tiers[0].name)),
                    comment: String::new(),
                });
            }
            b.chains.push(entry);
            let deny = if options.audit_namespaces.contains(&pod.namespace) {
                Verdict::AuditDeny
            } else {
                Verdict::Drop
            };
            tier_chains(
                &mut b,
                &prefix,
                &endpoint,
                direction,
                &program,
                &deny,
                would.as_ref(),
            );
            if users.get(interface.as_str()).copied().unwrap_or(0) > 1 {
                let by_address = if direction == Direction::Egress {
                    &mut egress_by_address
                } else {
                    &mut ingress_by_address
                };
                for ip in &pod.ips {
                    by_address.insert(*ip, prefix.clone());
                }
            } else {
                let dispatch = if direction == Direction::Egress {
                    &mut egress_dispatch
                } else {
                    &mut ingress_dispatch
                };
                dispatch.insert(interface.clone(), prefix);
            }
        }
    }
    let mut chains = b.chains;
    chains.sort_by(|a, b| a.name.cmp(&b.name));
    report.recipes = b.recipes;
    report.conflicts = b.conflicts;
    (
        Ruleset {
            sets: b
                .sets
                .into_iter()
                .map(|(name, data)| NamedSet { name, data })
                .collect(),
            chains,
            egress_dispatch,
            ingress_dispatch,
            egress_by_address,
            ingress_by_address,
            enforcement: Enforcement::default(),
            pod_interface_prefixes: options.pod_interface_prefixes.clone(),
            pod_cidrs: options.pod_cidrs.clone(),
        },
        report,
    )
}

/// The chain of one tier of a pod's direction, named by the tier (not its position: a tier
/// that starts to apply before it renames nothing).
fn tier_chain(prefix: &str, tier: &str) -> String {
    format!("{prefix}_t{:08x}", stable_hash(tier.as_bytes()) as u32)
}

/// The entry chains of one endpoint direction's would-be program: one run after the
/// enforced program allowed, one after it denied.
struct WouldEntries {
    on_allow: String,
    on_deny: String,
}

/// Precedes each allowing or denying rule with a jump, on the same matches, to the would-be
/// program that logs where it decides otherwise. The would-be chains only return, so the
/// enforced rule after the jump still decides (and logs its own deny).
fn with_would(rules: Vec<Rule>, would: Option<&WouldEntries>) -> Vec<Rule> {
    let Some(would) = would else { return rules };
    let mut out = Vec::with_capacity(rules.len() * 2);
    for rule in rules {
        let entry = match rule.verdict {
            Verdict::Return => Some(&would.on_allow),
            Verdict::Drop | Verdict::AuditDeny => Some(&would.on_deny),
            _ => None,
        };
        if let Some(entry) = entry {
            out.push(Rule {
                matches: rule.matches.clone(),
                verdict: Verdict::Jump(entry.clone()),
                comment: String::new(),
            });
        }
        out.push(rule);
    }
    out
}

/// The chains of the would-be program (the staged and audited policies enforced too) of one
/// endpoint direction, run after the enforced program decided: `after_allow` logs its denies
/// (would-deny), otherwise its allows (would-allow). Every chain only logs and returns; the
/// entry chain's name is returned. `isolating` names the staged and audited policies that
/// select the pod, to whom a would-be default deny is due.
fn would_chains(
    b: &mut Builder,
    prefix: &str,
    endpoint: &str,
    direction: Direction,
    would: &DirectionProgram,
    after_allow: bool,
    isolating: &str,
) -> String {
    let prefix = format!("{prefix}_w{}", if after_allow { 'a' } else { 'd' });
    let logged = |rules: Vec<Rule>, denies: bool| -> Vec<Rule> {
        // After an allow the would-be denies are news, after a deny the would-be allows.
        if denies != after_allow {
            return rules;
        }
        let mut out = Vec::with_capacity(rules.len() * 2);
        for rule in rules {
            out.push(Rule {
                matches: rule.matches.clone(),
                verdict: Verdict::WouldLog { deny: denies },
                comment: rule.comment.clone(),
            });
            out.push(rule);
        }
        out
    };
    let returning = |comment: String| Rule {
        matches: vec![],
        verdict: Verdict::Return,
        comment,
    };
    if would.tiers.is_empty() {
        b.chains.push(Chain {
            name: prefix.clone(),
            comment: format!("would-be verdict, {endpoint}"),
            endpoint: endpoint.to_string(),
            rules: logged(
                vec![returning(format!("no policy would apply ({isolating})"))],
                false,
            ),
        });
        return prefix;
    }
    for (k, tier) in would.tiers.iter().enumerate() {
        let next = (k + 1 < would.tiers.len())
            .then(|| Verdict::Goto(tier_chain(&prefix, &would.tiers[k + 1].name)));
        let mut chain = Chain {
            name: tier_chain(&prefix, &tier.name),
            comment: format!("would-be tier {}", tier.name),
            endpoint: endpoint.to_string(),
            rules: Vec::new(),
        };
        for rule in &tier.rules {
            match rule.action {
                Action::Allow => {
                    let rules = translate(b, direction, rule, &Verdict::Return);
                    chain.rules.extend(logged(rules, false));
                }
                Action::Deny => {
                    let rules = translate(b, direction, rule, &Verdict::Return);
                    chain.rules.extend(logged(rules, true));
                }
                Action::Pass => {
                    let verdict = next.clone().unwrap_or(Verdict::Return);
                    let rules = translate(b, direction, rule, &verdict);
                    // A pass out of the last tier ends in the profile: allowed.
                    chain.rules.extend(if next.is_some() {
                        rules
                    } else {
                        logged(rules, false)
                    });
                }
                // Calico Log rules are logged once, by the enforced program.
                Action::Log => {}
            }
        }
        if reaches_own_node(direction, tier) {
            chain.rules.extend(logged(vec![node_local_rule()], false));
        }
        let end = format!("end of tier {} ({isolating})", tier.name);
        match (tier.end, &next) {
            (TierDefault::Pass, Some(next)) => chain.rules.push(Rule {
                matches: vec![],
                verdict: next.clone(),
                comment: end,
            }),
            (TierDefault::Pass, None) => chain.rules.extend(logged(vec![returning(end)], false)),
            (TierDefault::Deny, _) => chain.rules.extend(logged(vec![returning(end)], true)),
        }
        b.chains.push(chain);
    }
    tier_chain(&prefix, &would.tiers[0].name)
}

fn tier_chains(
    b: &mut Builder,
    prefix: &str,
    endpoint: &str,
    direction: Direction,
    program: &DirectionProgram,
    deny: &Verdict,
    would: Option<&WouldEntries>,
) {
    for (k, tier) in program.tiers.iter().enumerate() {
        let next = if k + 1 < program.tiers.len() {
            Verdict::Goto(tier_chain(prefix, &program.tiers[k + 1].name))
        } else {
            Verdict::Return
        };
        let mut chain = Chain {
            name: tier_chain(prefix, &tier.name),
            comment: format!("tier {}", tier.name),
            endpoint: endpoint.to_string(),
            rules: Vec::new(),
        };
        for rule in &tier.rules {
            let verdict = match rule.action {
                Action::Allow => Verdict::Return,
                Action::Deny => deny.clone(),
                Action::Pass => next.clone(),
                Action::Log => Verdict::Log(rule.id.clone()),
            };
            let rules = translate(b, direction, rule, &verdict);
            chain.rules.extend(with_would(rules, would));
        }
        if reaches_own_node(direction, tier) {
            chain
                .rules
                .extend(with_would(vec![node_local_rule()], would));
        }
        let end = Rule {
            matches: vec![],
            verdict: match tier.end {
                TierDefault::Deny => deny.clone(),
                TierDefault::Pass => next.clone(),
            },
            comment: format!("end of tier {}", tier.name),
        };
        chain.rules.extend(with_would(vec![end], would));
        b.chains.push(chain);
    }
}

/// K8S-ISO-6 (engine choice): a pod's egress to its own node is allowed where the
/// NetworkPolicy (default) tier would deny for want of a matching rule; explicit rules and
/// other tiers still decide.
fn reaches_own_node(direction: Direction, tier: &bulkhead_engine::TierProgram) -> bool {
    direction == Direction::Egress
        && tier.name == bulkhead_model::Tier::DEFAULT
        && tier.end == TierDefault::Deny
}

/// The allow of [`reaches_own_node`]: only input-hook packets are for a local address.
fn node_local_rule() -> Rule {
    Rule {
        matches: vec![Match::DestinationIsLocal],
        verdict: Verdict::Return,
        comment: "a pod may always reach its own node (NODE_LOCAL)".to_string(),
    }
}

/// One program rule as nft rules: per address family where the remote set needs it, and one
/// rule per port alternative (numeric ranges, destination named ports).
fn translate(
    b: &mut Builder,
    direction: Direction,
    rule: &ProgramRule,
    verdict: &Verdict,
) -> Vec<Rule> {
    let side = if direction == Direction::Egress {
        Side::Destination
    } else {
        Side::Source
    };
    let mut families: Vec<Option<bool>> = Vec::new();
    let split = rule.remote.is_some()
        || rule.remote_not.is_some()
        || matches!(&rule.ports, PortMatch::Some { named, .. } if !named.is_empty());
    if split {
        families.extend([Some(true), Some(false)]);
    } else {
        families.push(None);
    }
    let mut out = Vec::new();
    for family in families {
        let mut base = Vec::new();
        if let Some(ipv4) = family {
            base.push(Match::Family { ipv4 });
            let recipe = |part| SetRecipe {
                rule: rule.key.clone(),
                part,
                ipv4,
            };
            // A set even when it holds nothing (the rule matches nothing yet) or everything:
            // the rule stays the same whoever comes and goes, only the set's elements follow.
            if let Some(remote) = &rule.remote {
                let set = b.addr_set(recipe(RulePart::Remote), remote.family(ipv4));
                base.push(Match::Addr {
                    side,
                    set,
                    negate: false,
                });
            }
            if let Some(not) = &rule.remote_not {
                let set = b.addr_set(recipe(RulePart::RemoteNot), not.family(ipv4));
                base.push(Match::Addr {
                    side,
                    set,
                    negate: true,
                });
            }
        }
        if let Some(p) = rule.protocol {
            base.push(Match::L4Proto {
                protocol: p.canonical(),
                negate: false,
            });
        }
        if let Some(p) = rule.not_protocol {
            base.push(Match::L4Proto {
                protocol: p.canonical(),
                negate: true,
            });
        }
        for (icmp, negate) in [(rule.icmp, false), (rule.not_icmp, true)] {
            if let Some(m) = icmp {
                let v6 = rule
                    .protocol
                    .is_some_and(|p| p.canonical() == Protocol::Icmpv6);
                base.push(Match::Icmp {
                    v6,
                    icmp_type: m.icmp_type,
                    code: m.code,
                    negate,
                });
            }
        }
        match &rule.ports {
            PortMatch::Any => out.push(Rule {
                matches: base,
                verdict: verdict.clone(),
                comment: rule.id.clone(),
            }),
            PortMatch::Some {
                ranges,
                named,
                not_ranges,
            } => {
                let mut tail = Vec::new();
                if !not_ranges.is_empty() {
                    let set = b.set(SetData::ProtoPort(not_ranges.clone()));
                    tail.push(Match::ProtoPort { set, negate: true });
                }
                if !ranges.is_empty() {
                    let set = b.set(SetData::ProtoPort(ranges.clone()));
                    let mut m = base.clone();
                    m.push(Match::ProtoPort { set, negate: false });
                    m.extend(tail.clone());
                    out.push(Rule {
                        matches: m,
                        verdict: verdict.clone(),
                        comment: rule.id.clone(),
                    });
                }
                if let Some(ipv4) = family {
                    // Sorted: the contents are a set, whatever order pods were found in.
                    let mut mine: Vec<_> = named
                        .iter()
                        .filter(|(ip, _, _)| ip.is_ipv4() == ipv4)
                        .copied()
                        .collect();
                    mine.sort();
                    mine.dedup();
                    let recipe = SetRecipe {
                        rule: rule.key.clone(),
                        part: RulePart::NamedPorts,
                        ipv4,
                    };
                    {
                        let set = b.recipe_set(
                            recipe,
                            if ipv4 {
                                SetData::AddrProtoPort4(mine)
                            } else {
                                SetData::AddrProtoPort6(mine)
                            },
                        );
                        let mut m = base.clone();
                        m.push(Match::AddrProtoPort { set });
                        m.extend(tail);
                        out.push(Rule {
                            matches: m,
                            verdict: verdict.clone(),
                            comment: format!("{} (named port)", rule.id),
                        });
                    }
                }
            }
        }
    }
    out
}
