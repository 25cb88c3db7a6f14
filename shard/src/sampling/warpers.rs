//! Logits warpers: temperature, top-k, top-p (nucleus) and typical-p, as TGI's
//! `Heterogeneous*LogitsWarper`s (HF transformers semantics, `min_tokens_to_keep = 1`).
//!
//! Filtered tokens are set to `-inf`. Rows are expected free of NaN and `+inf` (the chooser
//! sanitises them first); `-inf` entries are treated as already filtered.

use std::cmp::Ordering;

/// Scratch space reused across steps so a 128k-wide row costs no allocation per token.
#[derive(Debug, Default, Clone)]
pub struct WarpScratch {
    values: Vec<f32>,
    by_score: Vec<(f32, u32)>,
    by_shift: Vec<(f64, u32)>,
    shifted: Vec<f64>,
}

/// `scores /= temperature`.
pub fn apply_temperature(scores: &mut [f32], temperature: f32) {
    for s in scores.iter_mut() {
        *s /= temperature;
    }
}

/// Keeps every score `>=` the k-th highest (ties with it included); `top_k == 0` disables and
/// a `top_k` above the row length keeps everything.
pub fn apply_top_k(scores: &mut [f32], top_k: u32, scratch: &mut WarpScratch) {
    let k = top_k as usize;
    if k == 0 || k >= scores.len() {
        return;
    }
    let values = &mut scratch.values;
    values.clear();
    values.extend_from_slice(scores);
    let (_, &mut kth, _) = values.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    for s in scores.iter_mut() {
        if *s < kth {
            *s = f32::NEG_INFINITY;
        }
    }
}

/// Nucleus filtering as TGI: sort ascending, cumulate the softmax, remove tokens whose
/// cumulative probability is `<= 1 - top_p`, always keeping the most probable one.
///
/// Computed best-first (a token is removed when the mass ranked above it is `>= top_p`), which
/// only sorts the head of the distribution. Equal scores rank the higher id first, as in TGI's
/// ascending sort where the lower id is removed first.
pub fn apply_top_p(scores: &mut [f32], top_p: f32, scratch: &mut WarpScratch) {
    if top_p >= 1.0 {
        return;
    }
    let ranked = &mut scratch.by_score;
    ranked.clear();
    // -inf tokens have probability 0 and are removed anyway: leave them out.
    ranked.extend(
        scores
            .iter()
            .enumerate()
            .filter(|(_, s)| **s > f32::NEG_INFINITY)
            .map(|(i, &s)| (s, i as u32)),
    );
    let Some(max) = ranked.iter().map(|r| r.0).reduce(f32::max) else {
        return;
    };
    let prob = |s: f32| f64::from((s - max).exp());
    let total: f64 = ranked.iter().map(|r| prob(r.0)).sum();
    let best_first = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1));

    let mut head = HEAD_START.min(ranked.len());
    let kept = loop {
        sort_head(ranked, head, best_first);
        let mut above = 0.0;
        let cut = ranked[..head].iter().position(|r| {
            let reached = above / total >= f64::from(top_p);
            above += prob(r.0);
            reached
        });
        match cut {
            Some(cut) => break cut.max(1),
            None if head == ranked.len() => break head,
            None => head = (head * 4).min(ranked.len()),
        }
    };
    let last_kept = ranked[kept - 1];
    for (i, s) in scores.iter_mut().enumerate() {
        if best_first(&(*s, i as u32), &last_kept).is_gt() {
            *s = f32::NEG_INFINITY;
        }
    }
}

/// Typical decoding as TGI: rank tokens by `|-log p - H|` (H the entropy), keep the smallest
/// prefix of that ranking whose mass reaches `typical_p`, plus every token ranked equal to its
/// last member.
pub fn apply_typical_p(scores: &mut [f32], typical_p: f32, scratch: &mut WarpScratch) {
    if typical_p >= 1.0 {
        return;
    }
    let Some(max) = scores.iter().copied().reduce(f32::max) else {
        return;
    };
    if max == f32::NEG_INFINITY {
        return;
    }
    let sum: f64 = scores.iter().map(|&s| f64::from((s - max).exp())).sum();
    let lse = f64::from(max) + sum.ln();
    let logp = |s: f32| f64::from(s) - lse;
    let prob = |s: f32| f64::from((logp(s) as f32).exp());
    // Entropy over tokens with p > 0 (TGI's nansum drops the 0 * -inf terms).
    let entropy: f64 = -scores
        .iter()
        .filter(|s| s.is_finite())
        .map(|&s| prob(s) * logp(s))
        .sum::<f64>();

    let shifted = &mut scratch.shifted;
    shifted.clear();
    shifted.extend(scores.iter().map(|&s| (-logp(s) - entropy).abs()));
    let ranked = &mut scratch.by_shift;
    ranked.clear();
    ranked.extend(
        scores
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_finite())
            .map(|(i, _)| (shifted[i], i as u32)),
    );
    let most_typical_first =
        |a: &(f64, u32), b: &(f64, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));

    // TGI's last_ind: the first rank at which the cumulative mass reaches typical_p.
    let mut head = HEAD_START.min(ranked.len());
    let cutoff = loop {
        sort_head(ranked, head, most_typical_first);
        let mut cumulative = 0.0;
        let last = ranked[..head].iter().position(|r| {
            cumulative += prob(scores[r.1 as usize]);
            cumulative >= f64::from(typical_p)
        });
        match last {
            Some(last) => break ranked[last].0,
            // Rounding kept the total below typical_p: TGI keeps everything then too.
            None if head == ranked.len() => return,
            None => head = (head * 4).min(ranked.len()),
        }
    };
    for (s, &shift) in scores.iter_mut().zip(shifted.iter()) {
        if shift > cutoff {
            *s = f32::NEG_INFINITY;
        }
    }
}

/// First `head` entries the filters start by ranking; most requests need far fewer.
const HEAD_START: usize = 1024;

/// Sorts just `items[..head]` so it holds the `head` first items in `order`, in order.
fn sort_head<T>(items: &mut [T], head: usize, order: impl Fn(&T, &T) -> Ordering + Copy) {
    if head == 0 {
        return;
    }
    if head < items.len() {
        items.select_nth_unstable_by(head - 1, order);
    }
    items[..head].sort_unstable_by(order);
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEG: f32 = f32::NEG_INFINITY;

    fn ln(probs: &[f32]) -> Vec<f32> {
        probs.iter().map(|p| p.ln()).collect()
    }

    fn kept(scores: &[f32]) -> Vec<usize> {
        (0..scores.len()).filter(|&i| scores[i] > NEG).collect()
    }

    #[test]
    fn temperature_divides_every_score() {
        let mut s = [1.0, -2.0, 4.0, NEG];
        apply_temperature(&mut s, 0.5);
        assert_eq!(s, [2.0, -4.0, 8.0, NEG]);
        apply_temperature(&mut s, 2.0);
        assert_eq!(s, [1.0, -2.0, 4.0, NEG]);
    }

    #[test]
    fn top_k_keeps_the_k_highest_and_ties_with_the_kth() {
        let mut scratch = WarpScratch::default();
        let mut s = [1.0, 5.0, 3.0, 4.0, 2.0];
        apply_top_k(&mut s, 2, &mut scratch);
        assert_eq!(s, [NEG, 5.0, NEG, 4.0, NEG]);

        // Two tokens tie at the 2nd value: both survive (scores < kth are removed, not >= k).
        let mut s = [4.0, 3.0, 3.0, 1.0];
        apply_top_k(&mut s, 2, &mut scratch);
        assert_eq!(s, [4.0, 3.0, 3.0, NEG]);

        let mut s = [1.0, 5.0, 5.0, 2.0];
        apply_top_k(&mut s, 1, &mut scratch);
        assert_eq!(s, [NEG, 5.0, 5.0, NEG]);
    }

    #[test]
    fn top_k_zero_or_beyond_vocab_keeps_everything() {
        let mut scratch = WarpScratch::default();
        let mut s = [1.0, 2.0, 3.0];
        apply_top_k(&mut s, 0, &mut scratch);
        apply_top_k(&mut s, 3, &mut scratch);
        apply_top_k(&mut s, 1_000_000, &mut scratch);
        assert_eq!(s, [1.0, 2.0, 3.0]);
        apply_top_k(&mut [], 5, &mut scratch);
    }

    #[test]
    fn top_p_keeps_the_smallest_nucleus_reaching_p() {
        let mut scratch = WarpScratch::default();
        // probs 0.1 0.2 0.3 0.4: ascending cumsum 0.1 0.3 0.6 1.0.
        let probs = [0.1, 0.2, 0.3, 0.4];
        // p = 0.5: remove cumsum <= 0.5 -> tokens 0, 1.
        let mut s = ln(&probs);
        apply_top_p(&mut s, 0.5, &mut scratch);
        assert_eq!(kept(&s), vec![2, 3]);
        // p = 0.75: remove cumsum <= 0.25 -> token 0.
        let mut s = ln(&probs);
        apply_top_p(&mut s, 0.75, &mut scratch);
        assert_eq!(kept(&s), vec![1, 2, 3]);
        // p = 0.95: remove cumsum <= 0.05 -> nothing.
        let mut s = ln(&probs);
        apply_top_p(&mut s, 0.95, &mut scratch);
        assert_eq!(kept(&s), vec![0, 1, 2, 3]);
        // Surviving scores are untouched.
        assert_eq!(s, ln(&probs));
    }

    #[test]
    fn top_p_tiny_keeps_only_the_best_token() {
        let mut scratch = WarpScratch::default();
        let mut s = ln(&[0.3, 0.1, 0.35, 0.25]);
        apply_top_p(&mut s, 1e-6, &mut scratch);
        assert_eq!(kept(&s), vec![2]);
    }

    #[test]
    fn top_p_ignores_already_filtered_tokens_and_empty_rows() {
        let mut scratch = WarpScratch::default();
        let mut s = [NEG, 0.4f32.ln(), NEG, 0.6f32.ln()];
        apply_top_p(&mut s, 0.5, &mut scratch);
        assert_eq!(kept(&s), vec![3]);
        let mut s = [NEG, NEG];
        apply_top_p(&mut s, 0.5, &mut scratch);
        assert_eq!(s, [NEG, NEG]);
        apply_top_p(&mut [], 0.5, &mut scratch);
    }

    #[test]
    fn top_p_removes_the_lower_id_first_among_ties() {
        // probs .25 .25 .5, p = 0.6: ascending (id order among ties) cumsum .25 .5 1;
        // remove cumsum <= 0.4 -> only id 0.
        let mut scratch = WarpScratch::default();
        let mut s = ln(&[0.25, 0.25, 0.5]);
        apply_top_p(&mut s, 0.6, &mut scratch);
        assert_eq!(kept(&s), vec![1, 2]);
    }

    #[test]
    fn top_p_and_typical_p_handle_nuclei_wider_than_the_first_sorted_head() {
        let mut scratch = WarpScratch::default();
        // 5000 equal tokens: the nucleus for p = 0.5 is half of them, the highest ids first.
        let mut s = vec![0.0f32; 5000];
        apply_top_p(&mut s, 0.5, &mut scratch);
        let k = kept(&s);
        assert!((2500..=2501).contains(&k.len()), "{}", k.len());
        assert_eq!(*k.last().unwrap(), 4999);
        // Equal tokens are all exactly as typical as each other: typical-p keeps them all.
        let mut s = vec![0.0f32; 5000];
        apply_typical_p(&mut s, 0.5, &mut scratch);
        assert_eq!(kept(&s).len(), 5000);
    }

    #[test]
    fn typical_p_ranks_by_distance_to_entropy() {
        // probs 1/2 1/4 1/8 1/8: H = 1.75 ln2; |-log p - H| = 0.75, 0.25, 1.25, 1.25 (x ln2).
        // Ranking: token 1 (p .25), token 0 (p .5), tokens 2, 3; cumsum .25 .75 .875 1.
        let mut scratch = WarpScratch::default();
        let probs = [0.5, 0.25, 0.125, 0.125];
        // mass 0.2: last_ind 0 -> only token 1 survives (not the argmax).
        let mut s = ln(&probs);
        apply_typical_p(&mut s, 0.2, &mut scratch);
        assert_eq!(kept(&s), vec![1]);
        // mass 0.5: last_ind 1 -> tokens 1 and 0.
        let mut s = ln(&probs);
        apply_typical_p(&mut s, 0.5, &mut scratch);
        assert_eq!(kept(&s), vec![0, 1]);
        // mass 0.8: last_ind 2 -> cutoff 1.25 ln2 keeps both tied tokens 2 and 3.
        let mut s = ln(&probs);
        apply_typical_p(&mut s, 0.8, &mut scratch);
        assert_eq!(kept(&s), vec![0, 1, 2, 3]);
        assert_eq!(s, ln(&probs));
    }

    #[test]
    fn typical_p_handles_filtered_and_degenerate_rows() {
        let mut scratch = WarpScratch::default();
        let mut s = [NEG, 0.0, NEG];
        apply_typical_p(&mut s, 0.5, &mut scratch);
        assert_eq!(s, [NEG, 0.0, NEG]);
        let mut s = [NEG, NEG];
        apply_typical_p(&mut s, 0.5, &mut scratch);
        assert_eq!(s, [NEG, NEG]);
        apply_typical_p(&mut [], 0.5, &mut scratch);
    }
}
