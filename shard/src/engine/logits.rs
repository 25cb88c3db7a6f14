//! Reading a forward's logits back to the host. On the CPU every row is handed over as is. On
//! a GPU the log-softmax, argmax and the logprobs asked for are computed on the device, so a
//! plain-greedy row or a prompt-logprob row costs a few bytes instead of a vocabulary-wide
//! copy; only rows that need host-side sampling (penalties, warpers, watermark, top-n) come
//! back whole.

use crate::error::{Result, ShardError};
use candle_core::{DType, Tensor, D};

/// What a logits row is needed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RowNeed {
    /// Argmax and its logprob (greedy without logits processors, no top-n).
    Greedy,
    /// Logprob of this token id (a prompt token's logprob).
    Logprob(u32),
    /// The whole row, for sampling on the host.
    Full,
}

/// One row's result.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum RowResult {
    /// Argmax id and its logprob.
    Chosen(u32, f32),
    /// The asked token's logprob.
    Logprob(f32),
    /// The raw logits row.
    Full(Vec<f32>),
}

/// A forward's logits whose rows are being read: made by [`begin`], which only queues device
/// work, and read by [`PendingRows::read`], which waits for it. A step run ahead of its
/// Decode holds one of these between the two RPCs.
pub(super) enum PendingRows {
    /// The CPU path: every row is handed over whole.
    Host(Tensor),
    /// The device path.
    Device {
        /// `[R, vocab]` f32 logits.
        logits: Tensor,
        needs: Vec<RowNeed>,
        /// The reduced rows and their queued statistics (`[n, 4]`), if any.
        reduced: Option<(Vec<u32>, Tensor)>,
    },
}

/// Queues the reading of `logits` (`[R, vocab]`) as `needs` asks. On the CPU every row comes
/// back `Full` (the host path is then exactly the one the CPU always ran).
pub(super) fn begin(logits: Tensor, needs: Vec<RowNeed>) -> Result<PendingRows> {
    let r = logits.dims2()?.0;
    if r != needs.len() {
        return Err(ShardError::InvalidArgument(format!(
            "{r} logits rows for {} uses",
            needs.len()
        )));
    }
    if logits.device().is_cpu() {
        return Ok(PendingRows::Host(logits));
    }
    begin_on_device(logits, needs)
}

/// The device path of [`begin`]; usable on any device (tests run it on the CPU).
pub(super) fn begin_on_device(logits: Tensor, needs: Vec<RowNeed>) -> Result<PendingRows> {
    let logits = logits.to_dtype(DType::F32)?;
    let reduced: Vec<u32> = (0..needs.len() as u32)
        .filter(|&i| needs[i as usize] != RowNeed::Full)
        .collect();
    let reduced = if reduced.is_empty() {
        None
    } else {
        let asked: Vec<u32> = reduced
            .iter()
            .map(|&i| match needs[i as usize] {
                RowNeed::Logprob(id) => id,
                _ => 0,
            })
            .collect();
        let vocab = logits.dim(1)? as u32;
        if let Some(&id) = asked.iter().find(|&&id| id >= vocab) {
            return Err(ShardError::InvalidArgument(format!(
                "token id {id} is outside the vocabulary ({vocab})"
            )));
        }
        let stats = row_stats(&logits, &reduced, &asked)?;
        Some((reduced, stats))
    };
    Ok(PendingRows::Device {
        logits,
        needs,
        reduced,
    })
}

impl PendingRows {
    /// Whether some row is sampled on the host (a vocabulary-wide pass per such row).
    pub fn host_sampled(&self) -> bool {
        match self {
            Self::Host(_) => true,
            Self::Device { needs, .. } => needs.contains(&RowNeed::Full),
        }
    }

    /// Waits for the device and returns every row's result.
    pub fn read(self) -> Result<Vec<RowResult>> {
        let (logits, needs, reduced) = match self {
            Self::Host(logits) => {
                let vocab = logits.dim(1)?;
                let flat = logits.flatten_all()?.to_vec1::<f32>()?;
                return Ok(flat
                    .chunks(vocab.max(1))
                    .map(|row| RowResult::Full(row.to_vec()))
                    .collect());
            }
            Self::Device {
                logits,
                needs,
                reduced,
            } => (logits, needs, reduced),
        };
        let mut out: Vec<Option<RowResult>> = vec![None; needs.len()];
        if let Some((reduced, stats)) = reduced {
            let stats = stats.to_vec2::<f32>()?;
            for (&i, r) in reduced.iter().zip(&stats) {
                let i = i as usize;
                let &[id, lp_chosen, lp_asked, ties] = r.as_slice() else {
                    return Err(ShardError::InvalidArgument(format!(
                        "logits statistics have {} columns, not 4",
                        r.len()
                    )));
                };
                // NaN/inf logits: the host path knows how to treat (or reject) them.
                out[i] = match needs[i] {
                    RowNeed::Logprob(_) if lp_asked.is_finite() => {
                        Some(RowResult::Logprob(lp_asked))
                    }
                    RowNeed::Greedy if lp_chosen.is_finite() && ties <= 1.0 => {
                        Some(RowResult::Chosen(id as u32, lp_chosen))
                    }
                    _ => None,
                };
            }
        }
        // Rows asked whole, and reduced rows that need the host after all.
        let full: Vec<u32> = (0..needs.len() as u32)
            .filter(|&i| out[i as usize].is_none())
            .collect();
        if !full.is_empty() {
            let rows = logits
                .index_select(&Tensor::new(full.as_slice(), logits.device())?, 0)?
                .to_vec2::<f32>()?;
            for (&i, row) in full.iter().zip(rows) {
                out[i as usize] = Some(match needs[i as usize] {
                    RowNeed::Logprob(id) => RowResult::Logprob(host_logprob(row, id)),
                    _ => RowResult::Full(row),
                });
            }
        }
        out.into_iter()
            .map(|r| {
                r.ok_or_else(|| ShardError::InvalidArgument("a logits row was not read".into()))
            })
            .collect()
    }
}

/// Queues (argmax id, its logprob, `asked[j]`'s logprob, count of the maximum) for each row
/// `rows[j]` of `logits` as an `[n, 4]` f32 tensor: one kernel on a GPU, candle reductions
/// elsewhere. Non-finite rows come out with a non-finite logprob.
fn row_stats(logits: &Tensor, rows: &[u32], asked: &[u32]) -> Result<Tensor> {
    let dev = logits.device();
    let all_rows = rows.iter().copied().eq(0..logits.dim(0)? as u32);
    let x = if all_rows {
        logits.clone()
    } else {
        logits.index_select(&Tensor::new(rows, dev)?, 0)?
    };
    // Greedy rows ask for no token: zeros made on the device spare a host upload per step.
    let asked = if asked.iter().all(|&id| id == 0) {
        Tensor::zeros(asked.len(), DType::U32, dev)?
    } else {
        Tensor::new(asked, dev)?
    };
    #[cfg(feature = "cuda")]
    if dev.is_cuda() {
        return crate::kernels::logits_stats(&x, &asked);
    }
    let max = x.max_keepdim(D::Minus1)?;
    let lse = (x
        .broadcast_sub(&max)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?
        + &max)?;
    let ids = x.argmax_keepdim(D::Minus1)?;
    let lp_chosen = x.gather(&ids, 1)?.broadcast_sub(&lse)?;
    let lp_asked = x.gather(&asked.unsqueeze(1)?, 1)?.broadcast_sub(&lse)?;
    // Rows whose maximum is shared: a GPU argmax does not promise the lowest index (the
    // host's and torch's choice), so those rows go to the host.
    let ties = x
        .broadcast_eq(&max)?
        .to_dtype(DType::F32)?
        .sum_keepdim(D::Minus1)?;
    let ids = ids.to_dtype(DType::F32)?;
    // One tensor (one copy, one sync when read) for the four per-row numbers.
    Ok(Tensor::cat(&[&ids, &lp_chosen, &lp_asked, &ties], 1)?)
}

/// The host's log-softmax value of `id` in `row` (NaN as -inf, +inf sharing the mass).
pub(super) fn host_logprob(mut row: Vec<f32>, id: u32) -> f32 {
    crate::sampling::log_softmax_in_place(&mut row);
    row.get(id as usize).copied().unwrap_or(f32::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::{argmax, log_softmax_in_place};
    use candle_core::Device;

    #[test]
    fn device_path_matches_the_host_computation() -> Result<()> {
        let (r, v) = (6, 3000);
        let logits = Tensor::randn(0f32, 3.0, (r, v), &Device::Cpu)?;
        let host = logits.to_vec2::<f32>()?;
        let needs = [
            RowNeed::Greedy,
            RowNeed::Full,
            RowNeed::Logprob(17),
            RowNeed::Greedy,
            RowNeed::Logprob(2999),
            RowNeed::Full,
        ];
        let got = begin_on_device(logits.clone(), needs.to_vec())?.read()?;
        for (i, (need, res)) in needs.iter().zip(&got).enumerate() {
            let mut row = host[i].clone();
            let best = argmax(&row);
            log_softmax_in_place(&mut row);
            match (need, res) {
                (RowNeed::Greedy, RowResult::Chosen(id, lp)) => {
                    assert_eq!(Some(*id), best);
                    assert!(
                        (lp - row[*id as usize]).abs() < 1e-5,
                        "{lp} vs {}",
                        row[*id as usize]
                    );
                }
                (RowNeed::Logprob(id), RowResult::Logprob(lp)) => {
                    assert!((lp - row[*id as usize]).abs() < 1e-5);
                }
                (RowNeed::Full, RowResult::Full(x)) => assert_eq!(x, &host[i]),
                other => panic!("row {i}: unexpected {other:?}"),
            }
        }
        // On the CPU, `read` hands every row over whole.
        assert!(begin(logits, needs.to_vec())?
            .read()?
            .iter()
            .zip(&host)
            .all(|(r, h)| r == &RowResult::Full(h.clone())));
        Ok(())
    }

    #[test]
    fn tied_maxima_and_non_finite_rows_take_the_host_path() -> Result<()> {
        let nan = f32::NAN;
        let rows = vec![
            vec![0.5f32, 3.0, 1.0, 3.0],
            vec![0.5, nan, 1.0, 2.0],
            vec![0.5, 1.0, f32::INFINITY, 2.0],
        ];
        let logits = Tensor::new(rows.clone(), &Device::Cpu)?;
        let needs = [RowNeed::Greedy, RowNeed::Greedy, RowNeed::Logprob(1)];
        let got = begin_on_device(logits, needs.to_vec())?.read()?;
        // A tie goes back whole, so the host picks the lowest index.
        assert_eq!(got[0], RowResult::Full(rows[0].clone()));
        assert!(matches!(&got[1], RowResult::Full(_)));
        // +inf takes all the mass on the host: the other tokens' logprob is -inf, not NaN.
        assert_eq!(got[2], RowResult::Logprob(f32::NEG_INFINITY));
        Ok(())
    }

    #[test]
    fn an_out_of_vocabulary_logprob_is_an_error() -> Result<()> {
        let logits = Tensor::zeros((1, 10), DType::F32, &Device::Cpu)?;
        assert!(begin_on_device(logits, vec![RowNeed::Logprob(10)]).is_err());
        Ok(())
    }
}
