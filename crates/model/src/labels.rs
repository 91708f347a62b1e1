//! Kubernetes labels and `metav1.LabelSelector` semantics (semantics.md §1.5, K8S-SEL-*).

use std::fmt;

/// Labels of a pod, namespace, node or service account. Sorted so output is deterministic.
/// A sorted vector, not a `BTreeMap`: an object has a handful of labels, and a B-tree's first
/// node takes about 550 bytes however few it holds (55 MB per copy of 100k pods' labels).
pub type Labels = litemap::LiteMap<String, String>;

/// A validated label selector: the AND of its requirements. No requirement matches everything.
///
/// `matchLabels: {k: v}` is stored as `k In [v]` (K8S-SEL-2), so there is one matching path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Operator {
    /// Label present and its value in the set. The set is never empty (validation rejects it).
    In(ValueSet),
    /// Label absent, or present with a value outside the set.
    NotIn(ValueSet),
    Exists,
    DoesNotExist,
}

/// The values of an `In` or `NotIn` requirement: sorted, each once. A sorted slice, not a
/// `BTreeSet`: nearly every set holds the one value of a `matchLabels` entry, and a B-tree's
/// first node takes about 280 bytes however few it holds (a third of the memory of 300,000
/// loaded NetworkPolicies).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueSet(Box<[String]>);

impl ValueSet {
    pub fn contains(&self, value: &str) -> bool {
        self.0.binary_search_by(|v| v.as_str().cmp(value)).is_ok()
    }

    /// The values in order.
    pub fn iter(&self) -> std::slice::Iter<'_, String> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<String> for ValueSet {
    fn from_iter<I: IntoIterator<Item = String>>(values: I) -> Self {
        let mut values: Vec<String> = values.into_iter().collect();
        values.sort_unstable();
        values.dedup();
        Self(values.into_boxed_slice())
    }
}

impl<const N: usize> From<[String; N]> for ValueSet {
    fn from(values: [String; N]) -> Self {
        values.into_iter().collect()
    }
}

impl<'a> IntoIterator for &'a ValueSet {
    type Item = &'a String;
    type IntoIter = std::slice::Iter<'a, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl LabelSelector {
    /// The selector with no requirements: matches every object in its scope.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Builds a selector from already validated requirements (the loader checks syntax).
    pub fn from_requirements(requirements: Vec<Requirement>) -> Self {
        Self { requirements }
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// True when the selector has no requirement, i.e. it selects everything in scope.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl Requirement {
    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match &self.operator {
            Operator::In(values) => value.is_some_and(|v| values.contains(v)),
            Operator::NotIn(values) => value.is_none_or(|v| !values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

impl fmt::Display for LabelSelector {
    /// Prints the selector in kubectl's `-l` syntax; the empty selector prints as `{}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.requirements.is_empty() {
            return f.write_str("{}");
        }
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |values: &ValueSet| values.iter().cloned().collect::<Vec<_>>().join(",");
        match &self.operator {
            Operator::In(values) if values.len() == 1 => write!(f, "{}={}", self.key, join(values)),
            Operator::In(values) => write!(f, "{} in ({})", self.key, join(values)),
            Operator::NotIn(values) => write!(f, "{} notin ({})", self.key, join(values)),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, operator: Operator) -> Requirement {
        Requirement {
            key: key.into(),
            operator,
        }
    }

    fn set(values: &[&str]) -> ValueSet {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn a_value_set_is_sorted_holds_each_value_once_and_finds_them() {
        let values = set(&["b", "a", "c", "a", ""]);
        assert_eq!(values.iter().collect::<Vec<_>>(), ["", "a", "b", "c"]);
        assert_eq!(values.len(), 4);
        for present in ["", "a", "b", "c"] {
            assert!(values.contains(present), "{present:?}");
        }
        for absent in ["aa", "d", " ", "A"] {
            assert!(!values.contains(absent), "{absent:?}");
        }
        assert!(set(&[]).is_empty());
        assert_eq!(ValueSet::from(["x".to_string()]), set(&["x"]));
    }

    #[test]
    fn empty_selector_matches_everything() {
        assert!(LabelSelector::everything().matches(&labels(&[])));
        assert!(LabelSelector::everything().matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn not_in_is_satisfied_by_an_absent_label() {
        let s = LabelSelector::from_requirements(vec![req("env", Operator::NotIn(set(&["prod"])))]);
        assert!(s.matches(&labels(&[])));
        assert!(s.matches(&labels(&[("env", "dev")])));
        assert!(!s.matches(&labels(&[("env", "prod")])));
    }

    #[test]
    fn exists_matches_empty_values_and_requirements_are_anded() {
        let s = LabelSelector::from_requirements(vec![
            req("a", Operator::Exists),
            req("b", Operator::DoesNotExist),
            req("c", Operator::In(set(&["1", "2"]))),
        ]);
        assert!(s.matches(&labels(&[("a", ""), ("c", "2")])));
        assert!(!s.matches(&labels(&[("a", ""), ("b", "x"), ("c", "2")])));
        assert!(!s.matches(&labels(&[("a", ""), ("c", "3")])));
        assert_eq!(s.to_string(), "a,!b,c in (1,2)");
    }
}
