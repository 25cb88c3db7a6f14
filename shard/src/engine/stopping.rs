//! TGI's StoppingCriteria: max_new_tokens first, then EOS, then stop sequences matched at the
//! end of the generated text.

/// Why a request finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// `max_new_tokens` reached (or the model's context is full).
    Length,
    /// An EOS token was generated.
    EosToken,
    /// The output ends with a stop sequence.
    StopSequence,
}

/// Stopping parameters of one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoppingParams {
    /// Maximum generated tokens.
    pub max_new_tokens: u32,
    /// Strings that end generation when the output ends with them.
    pub stop_sequences: Vec<String>,
    /// Keep generating through EOS (benchmarks).
    pub ignore_eos_token: bool,
}

/// Per-request stopping state.
#[derive(Debug, Clone)]
pub struct StoppingCriteria {
    params: StoppingParams,
    eos_token_ids: Vec<u32>,
    current_tokens: u32,
    current_output: String,
}

impl StoppingCriteria {
    /// New criteria for a request.
    pub fn new(params: StoppingParams, eos_token_ids: Vec<u32>) -> Self {
        Self {
            params,
            eos_token_ids,
            current_tokens: 0,
            current_output: String::new(),
        }
    }

    /// Tokens generated so far.
    pub fn current_tokens(&self) -> u32 {
        self.current_tokens
    }

    /// Records one generated token and its text; says whether (and why) to stop.
    pub fn step(&mut self, last_token: u32, last_text: &str) -> Option<FinishReason> {
        self.current_tokens += 1;
        if self.current_tokens >= self.params.max_new_tokens {
            return Some(FinishReason::Length);
        }
        if !self.params.ignore_eos_token && self.eos_token_ids.contains(&last_token) {
            return Some(FinishReason::EosToken);
        }
        if !self.params.stop_sequences.is_empty() {
            self.current_output.push_str(last_text);
            // Only the tail can match; keep it bounded as TGI does (300 -> last 200 chars).
            if self.current_output.chars().count() > 300 {
                let skip = self.current_output.chars().count() - 200;
                self.current_output = self.current_output.chars().skip(skip).collect();
            }
            if self
                .params
                .stop_sequences
                .iter()
                .any(|s| !s.is_empty() && self.current_output.ends_with(s.as_str()))
            {
                return Some(FinishReason::StopSequence);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn criteria(max: u32, stops: &[&str], ignore_eos: bool) -> StoppingCriteria {
        StoppingCriteria::new(
            StoppingParams {
                max_new_tokens: max,
                stop_sequences: stops.iter().map(|s| s.to_string()).collect(),
                ignore_eos_token: ignore_eos,
            },
            vec![2, 7],
        )
    }

    #[test]
    fn length_is_checked_before_eos() {
        let mut c = criteria(1, &[], false);
        assert_eq!(c.step(2, ""), Some(FinishReason::Length));
    }

    #[test]
    fn any_eos_id_stops_unless_ignored() {
        let mut c = criteria(10, &[], false);
        assert_eq!(c.step(5, "a"), None);
        assert_eq!(c.step(7, ""), Some(FinishReason::EosToken));
        let mut c = criteria(10, &[], true);
        assert_eq!(c.step(7, ""), None);
    }

    #[test]
    fn stop_sequence_spanning_tokens() {
        let mut c = criteria(10, &["world!"], false);
        assert_eq!(c.step(1, "hello wor"), None);
        assert_eq!(c.step(1, "ld"), None);
        assert_eq!(c.step(1, "!"), Some(FinishReason::StopSequence));
    }

    #[test]
    fn long_outputs_keep_only_the_tail() {
        let mut c = criteria(1000, &["END"], false);
        for _ in 0..100 {
            assert_eq!(c.step(1, "ééééé"), None);
        }
        assert!(c.current_output.chars().count() <= 300);
        assert_eq!(c.step(1, "EN"), None);
        assert_eq!(c.step(1, "D"), Some(FinishReason::StopSequence));
    }
}
