//! Log-softmax, argmax and TGI's top-n token selection over one logits row.
//!
//! NaN is treated as `-inf` everywhere here (never chosen, never reported).

/// Replaces `row` by its log-softmax and returns the log-sum-exp, or `None` when the row has no
/// candidate (empty, or only NaN/`-inf`; the row is then left all `-inf`).
///
/// Accumulates in `f64` so a 128k-wide row loses no precision. If some entries are `+inf`, they share
/// the whole mass (`-ln(count)`) and every other entry gets `-inf`: the limit of the finite case.
pub fn log_softmax_in_place(row: &mut [f32]) -> Option<f32> {
    let max = row
        .iter()
        .copied()
        .filter(|x| !x.is_nan())
        .fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        row.fill(f32::NEG_INFINITY);
        return None;
    }
    if max == f32::INFINITY {
        let count = row.iter().filter(|&&x| x == f32::INFINITY).count();
        let share = -(count as f64).ln() as f32;
        for x in row.iter_mut() {
            *x = if *x == f32::INFINITY {
                share
            } else {
                f32::NEG_INFINITY
            };
        }
        return Some(f32::INFINITY);
    }
    // exp in f32 (each term is in [0, 1]), accumulated in f64.
    let sum: f64 = row
        .iter()
        .filter(|x| x.is_finite())
        .map(|&x| f64::from((x - max).exp()))
        .sum();
    let lse = f64::from(max) + sum.ln();
    for x in row.iter_mut() {
        *x = if x.is_nan() {
            f32::NEG_INFINITY
        } else {
            (f64::from(*x) - lse) as f32
        };
    }
    Some(lse as f32)
}

/// Index of the largest value; ties go to the lowest index (as `torch.argmax`).
/// `None` for an empty or all-NaN row.
pub fn argmax(row: &[f32]) -> Option<u32> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &x) in row.iter().enumerate() {
        if x.is_nan() {
            continue;
        }
        match best {
            Some((_, b)) if x <= b => {}
            _ => best = Some((i, x)),
        }
    }
    best.map(|(i, _)| i as u32)
}

/// TGI's `batch_top_tokens` for one request: the `n` highest logprobs, best first.
///
/// Like TGI, every token tied with the n-th value is returned too, so the result may be longer
/// than `n`; `n` is clamped to the row length, and `-inf`/NaN entries are never returned (TGI
/// replaces an `-inf` threshold by the dtype's minimum). Equal values are ordered by id.
pub fn top_n_logprobs(logprobs: &[f32], n: usize) -> Vec<(u32, f32)> {
    let n = n.min(logprobs.len());
    if n == 0 {
        return Vec::new();
    }
    let Some(nth) = nth_highest(logprobs, n) else {
        return Vec::new();
    };
    // The n-th value may be -inf when fewer than n tokens are finite: keep only finite ones.
    let threshold = if nth == f32::NEG_INFINITY {
        f32::MIN
    } else {
        nth
    };
    let mut top: Vec<(u32, f32)> = logprobs
        .iter()
        .enumerate()
        .filter(|(_, &v)| v >= threshold)
        .map(|(i, &v)| (i as u32, v))
        .collect();
    top.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    top
}

/// The n-th highest non-NaN value (1-based; NaN counts as `-inf`), for `1 <= n <= len`.
fn nth_highest(row: &[f32], n: usize) -> Option<f32> {
    let key = |x: f32| if x.is_nan() { f32::NEG_INFINITY } else { x };
    // top_n is small in practice (the router caps it): keep a sorted buffer of the n best
    // instead of copying the whole row.
    if n <= 256 {
        let mut best: Vec<f32> = Vec::with_capacity(n + 1);
        for &x in row {
            let x = key(x);
            if best.len() == n && x <= best[n - 1] {
                continue;
            }
            let pos = best.partition_point(|&b| b >= x);
            best.insert(pos, x);
            best.truncate(n);
        }
        return best.get(n - 1).copied();
    }
    let mut values: Vec<f32> = row.iter().map(|&x| key(x)).collect();
    let (_, nth, _) = values.select_nth_unstable_by(n - 1, |a, b| b.total_cmp(a));
    Some(*nth)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-5 || a == b
    }

    #[test]
    fn log_softmax_matches_hand_computed_values() {
        // logits [0, ln 2, ln 5]: softmax = [1/8, 2/8, 5/8].
        let mut row = [0.0, 2f32.ln(), 5f32.ln()];
        let lse = log_softmax_in_place(&mut row).unwrap();
        assert!(close(lse, 8f32.ln()));
        assert!(close(row[0], (1.0f32 / 8.0).ln()));
        assert!(close(row[1], (2.0f32 / 8.0).ln()));
        assert!(close(row[2], (5.0f32 / 8.0).ln()));
    }

    #[test]
    fn log_softmax_treats_nan_and_neg_inf_as_impossible() {
        let mut row = [f32::NAN, 1.0, f32::NEG_INFINITY, 1.0];
        log_softmax_in_place(&mut row).unwrap();
        assert_eq!(row[0], f32::NEG_INFINITY);
        assert_eq!(row[2], f32::NEG_INFINITY);
        assert!(close(row[1], 0.5f32.ln()) && close(row[3], 0.5f32.ln()));

        let mut all_bad = [f32::NAN, f32::NEG_INFINITY];
        assert_eq!(log_softmax_in_place(&mut all_bad), None);
        assert_eq!(all_bad, [f32::NEG_INFINITY; 2]);
        assert_eq!(log_softmax_in_place(&mut []), None);
    }

    #[test]
    fn log_softmax_with_pos_inf_splits_mass_among_infinities() {
        let mut row = [f32::INFINITY, 3.0, f32::INFINITY];
        log_softmax_in_place(&mut row).unwrap();
        assert!(close(row[0], 0.5f32.ln()) && close(row[2], 0.5f32.ln()));
        assert_eq!(row[1], f32::NEG_INFINITY);
    }

    #[test]
    fn log_softmax_is_stable_for_huge_logits() {
        let mut row = [1e30, 1e30 - 1e24, -1e30];
        log_softmax_in_place(&mut row).unwrap();
        assert!(row.iter().all(|x| !x.is_nan()));
        assert!(close(row[0], 0.0));
    }

    #[test]
    fn argmax_picks_lowest_index_on_ties_and_skips_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), Some(1));
        assert_eq!(argmax(&[f32::NAN, 0.5, f32::NAN]), Some(1));
        assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NEG_INFINITY]), Some(0));
        assert_eq!(argmax(&[f32::NAN]), None);
        assert_eq!(argmax(&[]), None);
    }

    #[test]
    fn top_n_is_sorted_best_first() {
        let lp = [-3.0, -0.5, -2.0, -1.0, -4.0];
        assert_eq!(
            top_n_logprobs(&lp, 3),
            vec![(1, -0.5), (3, -1.0), (2, -2.0)]
        );
        assert_eq!(top_n_logprobs(&lp, 0), vec![]);
    }

    #[test]
    fn top_n_includes_every_tie_with_the_nth_value() {
        let lp = [-1.0, -2.0, -2.0, -2.0, -3.0];
        assert_eq!(
            top_n_logprobs(&lp, 2),
            vec![(0, -1.0), (1, -2.0), (2, -2.0), (3, -2.0)]
        );
    }

    #[test]
    fn top_n_clamps_to_vocab_and_skips_impossible_tokens() {
        let lp = [-0.1, f32::NEG_INFINITY, f32::NAN, -2.5];
        assert_eq!(top_n_logprobs(&lp, 10), vec![(0, -0.1), (3, -2.5)]);
        assert_eq!(top_n_logprobs(&[f32::NEG_INFINITY; 3], 2), vec![]);
        assert_eq!(top_n_logprobs(&[], 2), vec![]);
    }

    #[test]
    fn top_n_large_n_takes_the_select_path() {
        let lp: Vec<f32> = (0..1000).map(|i| -(i as f32)).collect();
        let top = top_n_logprobs(&lp, 300);
        assert_eq!(top.len(), 300);
        assert_eq!(top[0], (0, 0.0));
        assert_eq!(top[299], (299, -299.0));
    }
}
