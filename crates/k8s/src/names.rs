//! Name and label syntax of the API server (apimachinery validation), for K8S-VAL-8/9 and
//! K8S-VAL-3.

/// DNS-1123 subdomain: at most 253 characters of lower-case alphanumerics, `-` and `.`, starting
/// and ending with an alphanumeric.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label_part)
}

/// DNS-1123 label: at most 63 characters of lower-case alphanumerics and `-`.
pub fn is_dns1123_label(s: &str) -> bool {
    s.len() <= 63 && is_dns1123_label_part(s)
}

fn is_dns1123_label_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A label key: `[prefix/]name`, the prefix a DNS subdomain, the name at most 63 characters of
/// `[A-Za-z0-9_.-]` starting and ending with an alphanumeric.
pub fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if prefix.is_some_and(|p| !is_dns1123_subdomain(p)) {
        return false;
    }
    !name.is_empty() && name.len() <= 63 && is_label_value_body(name)
}

/// A label value: empty, or at most 63 characters of `[A-Za-z0-9_.-]` starting and ending with an
/// alphanumeric.
pub fn is_label_value(s: &str) -> bool {
    s.is_empty() || (s.len() <= 63 && is_label_value_body(s))
}

fn is_label_value_body(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// IANA service name (`IsValidPortName`): 1-15 characters of `[a-z0-9-]`, at least one letter,
/// no leading or trailing `-`, no `--`.
pub fn is_valid_port_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 15
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.iter().any(|c| c.is_ascii_lowercase())
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && !s.contains("--")
}

pub use bulkhead_model::edit_distance::edit_distance;

/// The message for a string that is not a CIDR, with a hint for the two mistakes seen in
/// published manifests: a bare address, and a comment that lost its `#`
/// (`- 10.0.0.1/32  Cluster IP A`), which YAML reads as part of the string.
pub fn invalid_cidr_message(text: &str) -> String {
    let first = text.split_whitespace().next().unwrap_or("");
    let hint = if first != text.trim() && first.parse::<ipnet::IpNet>().is_ok() {
        format!(" (the text after {first:?} is part of the value: a YAML comment needs `#`)")
    } else if text.parse::<std::net::IpAddr>().is_ok() {
        " (a CIDR needs a prefix length, e.g. /32)".to_string()
    } else {
        String::new()
    };
    format!("{text:?} is not a valid CIDR{hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_cidr_messages_name_the_likely_mistake() {
        assert!(
            invalid_cidr_message("10.0.0.1/32  Cluster IP").contains("a YAML comment needs `#`")
        );
        assert!(invalid_cidr_message("10.0.0.1").contains("prefix length"));
        assert_eq!(invalid_cidr_message("nope"), "\"nope\" is not a valid CIDR");
    }

    #[test]
    fn port_names_follow_iana_rules() {
        for ok in ["http", "dns-tcp", "a1", "serve-80-tcp"] {
            assert!(is_valid_port_name(ok), "{ok}");
        }
        for bad in ["HTTP", "80", "a--b", "-a", "a-", "abcdefghijklmnop", ""] {
            assert!(!is_valid_port_name(bad), "{bad}");
        }
    }

    #[test]
    fn label_keys_and_values() {
        assert!(is_qualified_name("kubernetes.io/metadata.name"));
        assert!(is_qualified_name("app"));
        assert!(!is_qualified_name("my key"));
        assert!(!is_qualified_name("Bad_Prefix/x"));
        assert!(is_label_value(""));
        assert!(!is_label_value(&"a".repeat(64)));
        assert!(!is_label_value("-a"));
    }

    #[test]
    fn names_and_distance() {
        assert!(is_dns1123_subdomain("allow-dns.v2"));
        assert!(!is_dns1123_subdomain("Allow_DNS"));
        assert_eq!(edit_distance("podSelecter", "podSelector"), 1);
    }
}
