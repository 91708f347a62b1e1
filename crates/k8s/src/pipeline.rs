//! Groups of documents read in parallel and merged in order, each group's merge running while
//! the next group is read.
//!
//! Why: reading (parse, type, validate, lower) is parallel, but merging (duplicates, counts,
//! the cluster's vectors) is one thread's work. Merged after its group, the merge left one of
//! two cores idle for an eighth of a 300,000-policy load; merged beside the next group's read,
//! it takes a share of the workers instead.

/// Hands `ready` (outcomes already read) and then the outcomes of `groups`, read in input order
/// with `read_group` (which reads its group in parallel), to `merge` in order. Outcomes are
/// merged while the next group is read. When a group's read returns `None`, the outcomes
/// before it are merged and `Err` gives its index; no group after it is read.
pub(crate) fn read_and_merge<G: Send, R: Send>(
    ready: Vec<R>,
    groups: impl IntoIterator<Item = G>,
    read_group: impl Fn(G) -> Option<Vec<R>> + Sync,
    merge: &mut (impl FnMut(R) + Send),
) -> Result<(), usize> {
    let mut pending = ready;
    for (index, group) in groups.into_iter().enumerate() {
        let (read, ()) = rayon::join(
            || read_group(group),
            || pending.drain(..).for_each(&mut *merge),
        );
        match read {
            Some(outcomes) => pending = outcomes,
            None => return Err(index),
        }
    }
    pending.into_iter().for_each(merge);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_is_merged_once_in_input_order() {
        let groups: Vec<Vec<u32>> = (0..50).map(|g| (g * 10..g * 10 + 10).collect()).collect();
        let mut merged = Vec::new();
        let result = read_and_merge(
            vec![1, 3],
            groups,
            |group| Some(group.into_iter().map(|n| n * 2).collect()),
            &mut |n| merged.push(n),
        );
        assert_eq!(result, Ok(()));
        let expected: Vec<u32> = [1, 3].into_iter().chain((0..500).map(|n| n * 2)).collect();
        assert_eq!(merged, expected);
    }

    #[test]
    fn a_failed_group_stops_after_the_groups_before_it_are_merged() {
        let groups: Vec<u32> = (0..10).collect();
        let mut merged = Vec::new();
        let result = read_and_merge(
            Vec::new(),
            groups,
            |group| (group != 4).then(|| vec![group]),
            &mut |n| merged.push(n),
        );
        assert_eq!(result, Err(4));
        assert_eq!(merged, vec![0, 1, 2, 3]);
    }
}
