//! "Did you mean": the existing label closest to what a selector asks for, so a finding about a
//! selector that matches nothing names the likely typo (`app == 'dbb'` -> `app == 'db'`).

use bulkhead_model::edit_distance::edit_distance;
use bulkhead_model::labels::Operator;
use bulkhead_model::{CalicoSelector, LabelSelector, Labels};

/// The (key, value) pairs a Calico selector requires (`has(k)` asks for the key only).
pub fn calico_wants(selector: &CalicoSelector) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut stack = vec![selector];
    while let Some(s) = stack.pop() {
        match s {
            CalicoSelector::Equal(k, v) => out.push((k.clone(), Some(v.clone()))),
            CalicoSelector::In(k, values) => {
                out.extend(values.iter().map(|v| (k.clone(), Some(v.clone()))));
            }
            CalicoSelector::Has(k) => out.push((k.clone(), None)),
            CalicoSelector::And(a, b) | CalicoSelector::Or(a, b) => {
                stack.push(a);
                stack.push(b);
            }
            // What a negation excludes is not what the author wants to match.
            _ => {}
        }
    }
    out
}

/// The (key, value) pairs a label selector requires.
pub fn label_wants(selector: &LabelSelector) -> Vec<(String, Option<String>)> {
    selector
        .requirements()
        .iter()
        .flat_map(|r| match &r.operator {
            Operator::In(values) => values
                .iter()
                .map(|v| (r.key.clone(), Some(v.clone())))
                .collect::<Vec<_>>(),
            Operator::Exists => vec![(r.key.clone(), None)],
            _ => Vec::new(),
        })
        .collect()
}

/// The existing label nearest to one of `wants`, if it is close enough to be a typo: the
/// pair `(key, value)` with the smallest combined edit distance, at most 2 or a third of the
/// wanted text, and not an exact match (which would have matched).
pub fn nearest<'l>(
    wants: &[(String, Option<String>)],
    existing: impl Iterator<Item = &'l Labels>,
) -> Option<(String, String)> {
    let mut pairs: Vec<(&String, &String)> = existing.flat_map(|l| l.iter()).collect();
    pairs.sort();
    pairs.dedup();
    let mut best: Option<(usize, String, String)> = None;
    for (key, value) in wants {
        for (k, v) in &pairs {
            let distance =
                edit_distance(key, k) + value.as_ref().map_or(0, |value| edit_distance(value, v));
            let budget = 2.max((key.len() + value.as_ref().map_or(0, String::len)) / 3);
            if distance == 0 || distance > budget {
                continue;
            }
            if best.as_ref().is_none_or(|(d, ..)| distance < *d) {
                best = Some((distance, (*k).clone(), (*v).clone()));
            }
        }
    }
    best.map(|(_, k, v)| (k, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_finds_the_label_it_meant() {
        let selector = CalicoSelector::parse("app == 'dbb' && tier == 'data'").expect("parses");
        let labels = [
            Labels::from_iter([("app".into(), "db".into()), ("tier".into(), "data".into())]),
            Labels::from_iter([("app".into(), "web".into())]),
        ];
        assert_eq!(
            nearest(&calico_wants(&selector), labels.iter()),
            Some(("app".into(), "db".into()))
        );
        let far = CalicoSelector::parse("app == 'payments'").expect("parses");
        assert_eq!(nearest(&calico_wants(&far), labels.iter()), None);
    }
}
