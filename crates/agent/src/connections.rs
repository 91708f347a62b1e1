//! Denied connections, counted from the deny records of every denied packet (NFLOG group
//! [`bulkhead_nft::ruleset::DENY_COUNT_GROUP`]): a connection is its 5-tuple, counted once
//! while it keeps being denied, so a client's SYN retransmits (1 s, 3 s, 7 s, ... later) or a
//! UDP sender's repeats are one connection, and alerts say how many connections were denied,
//! not how many packets. A 5-tuple seen again after [`ConnectionCounter::WINDOW`] of silence
//! is a new attempt.

use crate::flowlog::DenyRecord;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The labels of `bulkhead_denied_connections_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    /// The namespace of the pod whose policy denied it.
    pub namespace: String,
    /// `ingress` or `egress` of that pod.
    pub direction: String,
    /// `true`: would be denied, let through (audit).
    pub audit: String,
}

/// `bulkhead_denied_connections_total`, shared by the counter and the metrics.
pub type ConnectionCounts = Family<ConnectionLabels, Counter>;

/// One connection attempt: addresses, protocol, ports (none for ICMP), and which side's
/// policy denied it (the same packet may be denied on egress of one pod and ingress of
/// another: each is counted where it happened).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct ConnectionKey {
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    sport: Option<u16>,
    dport: Option<u16>,
    direction: String,
}

/// Counts distinct denied connections into a Prometheus family; pure (time is given).
#[derive(Debug, Clone)]
pub struct ConnectionCounter {
    counts: ConnectionCounts,
    /// When each connection was last seen denied.
    seen: HashMap<ConnectionKey, Instant>,
    /// When entries older than the window were last dropped.
    swept: Option<Instant>,
}

impl ConnectionCounter {
    /// A denied 5-tuple silent this long and seen again is a new connection (Linux gives up
    /// on a SYN after about 2 minutes of retransmits; between them it waits at most 64 s).
    pub const WINDOW: Duration = Duration::from_secs(120);
    /// At most this many connections are remembered; beyond it the oldest half is forgotten
    /// (a scan of many ports is then still counted, as many connections it is).
    pub const CAPACITY: usize = 200_000;

    pub fn new(counts: ConnectionCounts) -> Self {
        Self {
            counts,
            seen: HashMap::new(),
            swept: None,
        }
    }

    /// Takes one deny record seen at `now`; returns whether it started a new connection.
    pub fn observe(&mut self, record: &DenyRecord, now: Instant) -> bool {
        self.sweep(now);
        let key = ConnectionKey {
            src: record.src,
            dst: record.dst,
            protocol: record.protocol,
            sport: record.sport,
            dport: record.dport,
            direction: record.direction.clone(),
        };
        let new = match self.seen.insert(key, now) {
            Some(last) => now.saturating_duration_since(last) >= Self::WINDOW,
            None => true,
        };
        if new {
            self.counts
                .get_or_create(&ConnectionLabels {
                    namespace: record.namespace().to_string(),
                    direction: record.direction.clone(),
                    audit: record.audit.to_string(),
                })
                .inc();
        }
        new
    }

    /// Forgets connections silent for a whole window (every few seconds), and the oldest half
    /// when there are too many.
    fn sweep(&mut self, now: Instant) {
        let due = self
            .swept
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(5));
        if !due && self.seen.len() < Self::CAPACITY {
            return;
        }
        self.swept = Some(now);
        self.seen
            .retain(|_, last| now.saturating_duration_since(*last) < Self::WINDOW);
        if self.seen.len() >= Self::CAPACITY {
            let mut times: Vec<Instant> = self.seen.values().copied().collect();
            let middle = times.len() / 2;
            let (_, cut, _) = times.select_nth_unstable(middle);
            let cut = *cut;
            self.seen.retain(|_, last| *last > cut);
        }
    }

    /// How many connections are remembered (for tests).
    pub fn remembered(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sport: u16, direction: &str) -> DenyRecord {
        DenyRecord {
            audit: false,
            would: None,
            direction: direction.into(),
            pod: "shop/web-1".into(),
            rule: "end of tier default".into(),
            src: "10.0.0.1".parse().expect("ip"),
            dst: "10.0.0.2".parse().expect("ip"),
            protocol: 6,
            sport: Some(sport),
            dport: Some(80),
            time: std::time::SystemTime::UNIX_EPOCH,
        }
    }

    fn count(family: &Family<ConnectionLabels, Counter>, direction: &str) -> u64 {
        family
            .get_or_create(&ConnectionLabels {
                namespace: "shop".into(),
                direction: direction.into(),
                audit: "false".into(),
            })
            .get()
    }

    #[test]
    fn retransmits_are_one_connection_and_new_ports_new_ones() {
        let family = Family::default();
        let mut counter = ConnectionCounter::new(family.clone());
        let t0 = Instant::now();
        // A SYN and its retransmits after 1, 3, 7, 15, 31 and 63 s: one connection.
        for s in [0, 1, 3, 7, 15, 31, 63] {
            counter.observe(&record(40_000, "ingress"), t0 + Duration::from_secs(s));
        }
        assert_eq!(count(&family, "ingress"), 1);
        // Another source port is another connection; the same on egress of the client is
        // counted there.
        assert!(counter.observe(&record(40_001, "ingress"), t0 + Duration::from_secs(64)));
        assert!(counter.observe(&record(40_001, "egress"), t0 + Duration::from_secs(64)));
        assert_eq!(count(&family, "ingress"), 2);
        assert_eq!(count(&family, "egress"), 1);
        // The first port again after a silent window: a new attempt.
        assert!(counter.observe(
            &record(40_000, "ingress"),
            t0 + Duration::from_secs(63) + ConnectionCounter::WINDOW
        ));
        assert_eq!(count(&family, "ingress"), 3);
    }

    #[test]
    fn a_flood_of_new_ports_is_counted_and_memory_stays_bounded() {
        let family = Family::default();
        let mut counter = ConnectionCounter::new(family.clone());
        let t0 = Instant::now();
        let n = ConnectionCounter::CAPACITY + 50_000;
        for i in 0..n {
            let mut r = record((i % 60_000) as u16, "ingress");
            r.src = IpAddr::from([10, 1, (i / 60_000) as u8, 1]);
            counter.observe(&r, t0 + Duration::from_millis(i as u64 / 100));
        }
        assert_eq!(count(&family, "ingress"), n as u64);
        assert!(counter.remembered() <= ConnectionCounter::CAPACITY);
    }
}
