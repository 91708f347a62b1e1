//! The netlink reads the agent's repair rests on, against the real kernel: the generation id
//! moves with every transaction of any process, and the fingerprint of Bulkhead's table moves
//! with every change to it (a rule added or replaced, a chain flushed, a mode map flipped) but
//! not with changes elsewhere. Runs as root in a network namespace of its own (the test re-runs
//! itself under `unshare --net`, so nothing outlives it); without root it prints SKIPPED, and
//! with BULKHEAD_REQUIRE_PRIVILEGED=1 (set by scripts/test.sh) it fails instead.

#[path = "support/own_netns.rs"]
mod own_netns;

use bulkhead_nft::netlink::NfTables;
use own_netns::inside_own_netns;
use std::process::Command;

const TABLE: &str = "table inet bulkhead {
  map break_glass { type nf_proto : verdict; }
  map deny_verdict { type nf_proto : verdict; elements = { ipv4 : drop, ipv6 : drop }; }
  set s_peers { type ipv4_addr; flags interval; elements = { 10.0.0.0/24 }; }
  chain input {
    type filter hook input priority filter; policy accept;
    counter
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    meta nfproto vmap @break_glass
    ip saddr @s_peers counter accept
    counter meta nfproto vmap @deny_verdict
  }
}
";

fn nft(script: &str) {
    use std::io::Write as _;
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("nft");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write");
    assert!(child.wait().expect("nft").success(), "nft -f: {script}");
}

fn handle_of_first_rule() -> String {
    let out = Command::new("nft")
        .args(["-a", "list", "chain", "inet", "bulkhead", "forward"])
        .output()
        .expect("nft list");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.contains("@s_peers"))
        .and_then(|l| l.rsplit("# handle ").next())
        .expect("a handle")
        .trim()
        .to_string()
}

fn listing(table: &str, set: &str) -> String {
    let out = Command::new("nft")
        .args(["list", "set", "inet", table, set])
        .output()
        .expect("nft list set");
    assert!(out.status.success(), "nft list set {table} {set}");
    String::from_utf8_lossy(&out.stdout).replace(&format!("table inet {table}"), "table")
}

/// Set elements written over netlink (deleted and added in one transaction) leave the set
/// exactly as nft itself writes the same contents: single addresses, ranges, ranges that
/// merge with or split from their neighbours, ranges to the end of the address space, IPv6,
/// and address-protocol-port triples.
#[test]
fn set_elements_written_over_netlink_equal_what_nft_writes() {
    use bulkhead_model::{AddrRanges, Protocol};
    use bulkhead_nft::delta::SetChange;
    use bulkhead_nft::ruleset::{NamedSet, SetData};
    use std::net::IpAddr;
    if !inside_own_netns("set_elements_written_over_netlink_equal_what_nft_writes") {
        return;
    }
    let declare = |table: &str, sets: &[NamedSet]| {
        let mut script = format!("add table inet {table}\n");
        for set in sets {
            script.push_str(&format!(
                "add {}\n",
                bulkhead_nft::render::set_declaration(set, table)
            ));
        }
        script
    };
    let pool: Vec<IpAddr> = [
        "10.0.0.1",
        "10.0.0.2",
        "10.0.0.3",
        "10.0.0.4",
        "10.0.0.9",
        "10.0.1.0",
        "10.0.0.255",
        "192.168.1.1",
        "255.255.255.254",
        "255.255.255.255",
        "0.0.0.1",
    ]
    .iter()
    .map(|a| a.parse().expect("address"))
    .collect();
    let pool6: Vec<IpAddr> = [
        "2001:db8::1",
        "2001:db8::2",
        "2001:db8::3",
        "fd00::9",
        "::1",
    ]
    .iter()
    .map(|a| a.parse().expect("address"))
    .collect();
    let mut v4: Vec<IpAddr> = pool[..3].to_vec();
    let mut v6: Vec<IpAddr> = pool6[..1].to_vec();
    let mut named: Vec<(IpAddr, Protocol, u16)> = vec![(pool[0], Protocol::Tcp, 8080)];
    let sets = |v4: &[IpAddr], v6: &[IpAddr], named: &[(IpAddr, Protocol, u16)]| {
        let mut named = named.to_vec();
        named.sort();
        named.dedup();
        vec![
            NamedSet {
                name: "a4".into(),
                data: SetData::Addr4(AddrRanges::from_addrs(v4.iter().copied())),
            },
            NamedSet {
                name: "a6".into(),
                data: SetData::Addr6(AddrRanges::from_addrs(v6.iter().copied())),
            },
            NamedSet {
                name: "n4".into(),
                data: SetData::AddrProtoPort4(named),
            },
        ]
    };
    let mut held = sets(&v4, &v6, &named);
    nft(&declare("bulkhead", &held));
    let mut kernel = NfTables::open().expect("netlink socket");
    // A deterministic walk: each step adds or removes one address of each family and one
    // triple; the pool's neighbours make ranges merge and split.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    let mut written = 0;
    for step in 0..120 {
        let toggle = |list: &mut Vec<IpAddr>, ip: IpAddr| {
            if let Some(i) = list.iter().position(|a| *a == ip) {
                list.remove(i);
            } else {
                list.push(ip);
            }
        };
        toggle(&mut v4, pool[next(pool.len())]);
        toggle(&mut v6, pool6[next(pool6.len())]);
        let triple = (
            pool[next(4)],
            [Protocol::Tcp, Protocol::Udp][next(2)],
            80 + next(3) as u16,
        );
        if let Some(i) = named.iter().position(|t| *t == triple) {
            named.remove(i);
        } else {
            named.push(triple);
        }
        let wanted = sets(&v4, &v6, &named);
        let changes: Vec<SetChange> = held
            .iter()
            .zip(&wanted)
            .filter_map(|(old, new)| SetChange::between(&old.name, &old.data, &new.data))
            .collect();
        kernel
            .write_elements("bulkhead", &changes)
            .unwrap_or_else(|e| panic!("step {step}: {e}\n{changes:?}"));
        written += changes
            .iter()
            .map(|c| c.added.len() + c.removed.len())
            .sum::<usize>();
        held = wanted;
        if step % 10 == 9 {
            nft(&declare("expected", &held));
            for set in ["a4", "a6", "n4"] {
                assert_eq!(
                    listing("bulkhead", set),
                    listing("expected", set),
                    "step {step}: set {set} written over netlink differs from nft's"
                );
            }
            nft("delete table inet expected\n");
        }
    }
    assert!(written > 100, "the walk changed {written} elements");
    // A change the kernel refuses (a set that does not exist) is an error, and nothing of its
    // transaction is applied.
    let before = listing("bulkhead", "a4");
    let bad = vec![
        SetChange {
            name: "a4".into(),
            removed: Vec::new(),
            added: vec![bulkhead_nft::delta::Element::Addr(
                "172.16.0.1".parse().expect("ip"),
                "172.16.0.1".parse().expect("ip"),
            )],
        },
        SetChange {
            name: "missing".into(),
            removed: Vec::new(),
            added: vec![bulkhead_nft::delta::Element::Addr(
                "172.16.0.2".parse().expect("ip"),
                "172.16.0.2".parse().expect("ip"),
            )],
        },
    ];
    assert!(kernel.write_elements("bulkhead", &bad).is_err());
    assert_eq!(
        listing("bulkhead", "a4"),
        before,
        "a refused batch changes nothing"
    );
    // A change too large for one datagram is refused before anything is sent (the agent then
    // writes it with nft).
    let huge = vec![SetChange {
        name: "a4".into(),
        removed: Vec::new(),
        added: (0..20_000u32)
            .map(|i| {
                let ip = IpAddr::V4(std::net::Ipv4Addr::from(0xac10_0000 + 2 * i));
                bulkhead_nft::delta::Element::Addr(ip, ip)
            })
            .collect(),
    }];
    let refused = kernel.write_elements("bulkhead", &huge);
    assert!(
        matches!(
            refused,
            Err(bulkhead_nft::netlink::ElementsError::Unsupported(_))
        ),
        "{refused:?}"
    );
    assert_eq!(listing("bulkhead", "a4"), before);
    nft("delete table inet bulkhead\n");
}

#[test]
fn generation_and_fingerprint_follow_changes_to_the_table_only() {
    if !inside_own_netns("generation_and_fingerprint_follow_changes_to_the_table_only") {
        return;
    }

    let mut kernel = NfTables::open().expect("netlink socket");
    let small = ["break_glass", "deny_verdict"];
    assert_eq!(kernel.fingerprint("bulkhead", &small).expect("read"), None);

    let before = kernel.generation().expect("generation");
    nft(TABLE);
    let loaded = kernel.generation().expect("generation");
    assert_eq!(
        loaded,
        before.wrapping_add(1),
        "one nft -f is one transaction"
    );
    let print = kernel.fingerprint("bulkhead", &small).expect("read");
    assert!(print.is_some());
    assert_eq!(
        kernel.fingerprint("bulkhead", &small).expect("read"),
        print,
        "reading twice gives the same fingerprint"
    );
    assert_eq!(
        kernel.generation().expect("generation"),
        loaded,
        "reads commit nothing"
    );

    // Traffic moves the counters, not the fingerprint.
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status();
    assert!(up.is_ok_and(|s| s.success()), "ip link set lo up");
    let ping = Command::new("ping")
        .args(["-c", "2", "-i", "0.2", "-W", "1", "127.0.0.1"])
        .output()
        .expect("ping");
    assert!(ping.status.success(), "ping over lo");
    let counted = Command::new("nft")
        .args(["list", "chain", "inet", "bulkhead", "input"])
        .output()
        .expect("nft list");
    assert!(
        !String::from_utf8_lossy(&counted.stdout).contains("packets 0 "),
        "the input counter saw the pings"
    );
    assert_eq!(kernel.fingerprint("bulkhead", &small).expect("read"), print);

    // Another table: the generation moves, Bulkhead's fingerprint does not.
    nft("table inet other { chain c { type filter hook forward priority 10; policy accept; }; }\n");
    assert_ne!(kernel.generation().expect("generation"), loaded);
    assert_eq!(kernel.fingerprint("bulkhead", &small).expect("read"), print);

    // Every kind of change to Bulkhead's table moves the fingerprint.
    let mut seen = vec![print];
    let mut changed = |what: &str, script: String| {
        nft(&script);
        let now = kernel.fingerprint("bulkhead", &small).expect("read");
        assert!(
            !seen.contains(&now),
            "{what} did not change the fingerprint"
        );
        seen.push(now);
    };
    changed(
        "a rule inserted",
        "insert rule inet bulkhead forward accept\n".into(),
    );
    changed(
        "a rule replaced in place",
        format!(
            "replace rule inet bulkhead forward handle {} ip saddr @s_peers counter drop\n",
            handle_of_first_rule()
        ),
    );
    changed(
        "break-glass flipped",
        "add element inet bulkhead break_glass { ipv4 : accept }\n".into(),
    );
    changed(
        "audit flipped",
        "flush map inet bulkhead deny_verdict\nadd element inet bulkhead deny_verdict { ipv4 : return, ipv6 : return }\n".into(),
    );
    changed(
        "a chain flushed",
        "flush chain inet bulkhead forward\n".into(),
    );
    changed("a chain added", "add chain inet bulkhead extra\n".into());
    nft("delete table inet bulkhead\n");
    assert_eq!(kernel.fingerprint("bulkhead", &small).expect("read"), None);
}
