//! `ipBlock`: a CIDR with holes (K8S-IPB-*). Excepts are guaranteed to lie inside the CIDR.

use ipnet::IpNet;
use std::fmt;
use std::net::IpAddr;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IpBlock {
    cidr: IpNet,
    except: Vec<IpNet>,
}

/// Why an `ipBlock` could not be built; the loader turns this into a diagnostic.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IpBlockError {
    #[error("except {except} is not a strict subset of cidr {cidr}")]
    ExceptOutsideCidr { cidr: IpNet, except: IpNet },
}

impl IpBlock {
    /// CIDRs are normalised to their network address (K8S-IPB-5: `10.0.0.1/24` is `10.0.0.0/24`).
    pub fn new(cidr: IpNet, except: Vec<IpNet>) -> Result<Self, IpBlockError> {
        let cidr = cidr.trunc();
        let mut normalised = Vec::with_capacity(except.len());
        for e in except {
            let e = e.trunc();
            let same_family = matches!(
                (cidr, e),
                (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_))
            );
            if !same_family || e.prefix_len() <= cidr.prefix_len() || !cidr.contains(&e.network()) {
                return Err(IpBlockError::ExceptOutsideCidr { cidr, except: e });
            }
            normalised.push(e);
        }
        Ok(Self {
            cidr,
            except: normalised,
        })
    }

    pub fn cidr(&self) -> IpNet {
        self.cidr
    }

    pub fn except(&self) -> &[IpNet] {
        &self.except
    }

    /// True for `0.0.0.0/0` or `::/0` without excepts: the only blocks certain to hold an
    /// address nobody knows yet (semantics.md §0.3). An except may hold it, so a block with
    /// one is not certain to.
    pub fn covers_whole_family(&self) -> bool {
        self.cidr.prefix_len() == 0 && self.except.is_empty()
    }

    /// K8S-IPB-1: inside the CIDR, outside every except, same family.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.cidr.contains(&ip) && !self.except.iter().any(|e| e.contains(&ip))
    }
}

impl fmt::Display for IpBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.cidr)?;
        if !self.except.is_empty() {
            let except: Vec<String> = self.except.iter().map(ToString::to_string).collect();
            write!(f, " except {}", except.join(","))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test CIDR")
    }

    #[test]
    fn except_carves_a_hole_and_families_never_mix() {
        let b = IpBlock::new(net("0.0.0.0/0"), vec![net("169.254.169.254/32")]).expect("valid");
        assert!(b.contains("8.8.8.8".parse().expect("ip")));
        assert!(!b.contains("169.254.169.254".parse().expect("ip")));
        assert!(!b.contains("::1".parse().expect("ip")));
    }

    #[test]
    fn except_equal_to_cidr_or_outside_is_rejected() {
        assert!(IpBlock::new(net("10.0.0.0/8"), vec![net("10.0.0.0/8")]).is_err());
        assert!(IpBlock::new(net("10.0.0.0/8"), vec![net("11.0.0.0/16")]).is_err());
        assert!(IpBlock::new(net("10.0.0.0/8"), vec![net("::/64")]).is_err());
    }

    #[test]
    fn host_bits_are_normalised() {
        let b = IpBlock::new(net("10.0.0.1/24"), vec![]).expect("valid");
        assert_eq!(b.cidr(), net("10.0.0.0/24"));
    }
}
