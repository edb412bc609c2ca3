//! On-policy distillation (GKD, Agarwal et al. 2024, as TRL's GKDTrainer runs it): with
//! probability λ a step's chat rows are cut after their prompt — the tokens before the
//! first assistant target — and continued by the student itself, sampled at T under
//! no_grad with the KV cache; the loss then compares teacher and student on the sampled
//! tokens only (up to and including the end of turn). With `replay=N` the last N sampled
//! rows are kept and an on-policy step reuses them half the time (DistiLLM's buffer).
//! Rows keep their length, so a step's shapes never change; at λ = 0 nothing is touched.

use super::step::Micro;
use crate::engine::generate::{generate_batch, Request, Sampling, Stop};
use crate::engine::llama::Llama;
use crate::engine::rng::SplitMix64 as Rng;
use crate::spec::OnPolicy;
use std::collections::VecDeque;
use tch::{Device, Kind, Tensor};

/// One row of a micro-batch on the host: inputs, next-token targets, the mask of the
/// targets that count.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Row {
    pub input: Vec<i64>,
    pub target: Vec<i64>,
    pub mask: Vec<f32>,
}

impl Row {
    /// Where the prompt ends: the first position whose target starts an assistant turn
    /// (counts, after one that does not). A block that opens inside a reply has that
    /// reply's tail first; it is passed over unless it is all there is.
    fn prompt_end(&self) -> Option<usize> {
        (1..self.mask.len()).find(|&i| self.mask[i] > 0.0 && self.mask[i - 1] == 0.0).or_else(|| self.mask.iter().position(|&m| m > 0.0))
    }

    /// This row with everything after its prompt (`..=end`) replaced by `completion`,
    /// cut to the row's length; only the completion's targets count.
    pub fn continued(&self, end: usize, completion: &[i64]) -> Row {
        let seq = self.input.len();
        let mut tokens: Vec<i64> = self.input[..=end].to_vec();
        tokens.extend(completion.iter().take(seq - end));
        let (mut input, mut target, mut mask) = (vec![0i64; seq], vec![0i64; seq], vec![0f32; seq]);
        for j in 0..seq {
            input[j] = tokens.get(j).copied().unwrap_or(0);
            if let Some(&next) = tokens.get(j + 1) {
                target[j] = next;
                mask[j] = if j >= end { 1.0 } else { 0.0 };
            }
        }
        Row { input, target, mask }
    }
}

fn rows_of(micro: &Micro) -> Result<Vec<Row>, String> {
    let host = |t: &Tensor, what: &str| t.to_device(Device::Cpu).reshape([-1]).to_kind(Kind::Double).contiguous().try_into().map_err(|e: tch::TchError| format!("reading the batch's {what}: {e}"));
    let (b, seq) = (micro.input.size()[0] as usize, micro.input.size()[1] as usize);
    let (input, target, mask): (Vec<f64>, Vec<f64>, Vec<f64>) = (host(&micro.input, "inputs")?, host(&micro.target, "targets")?, host(&micro.mask, "mask")?);
    Ok((0..b)
        .map(|r| {
            let at = r * seq..(r + 1) * seq;
            Row {
                input: input[at.clone()].iter().map(|&x| x as i64).collect(),
                target: target[at.clone()].iter().map(|&x| x as i64).collect(),
                mask: mask[at].iter().map(|&x| x as f32).collect(),
            }
        })
        .collect())
}

fn micro_of(rows: &[Row], like: &Micro) -> Micro {
    let device = like.input.device();
    let shape = [rows.len() as i64, rows[0].input.len() as i64];
    let flat = |f: &dyn Fn(&Row) -> Vec<i64>| Tensor::from_slice(&rows.iter().flat_map(f).collect::<Vec<i64>>()).view(shape).to_device(device);
    let mask: Vec<f32> = rows.iter().flat_map(|r| r.mask.clone()).collect();
    Micro {
        input: flat(&|r| r.input.clone()),
        target: flat(&|r| r.target.clone()),
        mask: Tensor::from_slice(&mask).view(shape).to_device(device).to_kind(like.mask.kind()),
        blocks: like.blocks.clone(),
    }
}

pub(super) struct OnPolicyRun {
    spec: OnPolicy,
    seed: u64,
    buffer: VecDeque<Row>,
    /// Steps that ran on the student's samples, and the tokens it sampled.
    pub sampled_steps: u64,
    pub sampled_tokens: u64,
}

impl OnPolicyRun {
    pub fn new(spec: OnPolicy, seed: u64) -> OnPolicyRun {
        OnPolicyRun { spec, seed, buffer: VecDeque::new(), sampled_steps: 0, sampled_tokens: 0 }
    }

    /// The micro-batches of step `step`: as the data made them, or (with probability λ,
    /// decided from the run's seed and the step, so a resumed run decides the same) on
    /// the student's own continuations.
    pub fn apply(&mut self, step: u64, student: &Llama, eos: &[u32], micro: Vec<Micro>) -> Result<Vec<Micro>, String> {
        let mut rng = Rng(self.seed ^ 0x676b_645f_706f_6c69 ^ step.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        if rng.uniform() >= self.spec.lambda {
            return Ok(micro);
        }
        self.sampled_steps += 1;
        let mut out = Vec::with_capacity(micro.len());
        for m in micro {
            let rows = rows_of(&m)?;
            let replay = self.spec.replay > 0 && self.buffer.len() >= rows.len() && rng.uniform() < 0.5;
            let rows = if replay {
                (0..rows.len()).map(|_| self.buffer[(rng.next_u64() % self.buffer.len() as u64) as usize].clone()).collect()
            } else {
                let fresh = self.sample(&mut rng, student, eos, &rows)?;
                for r in &fresh {
                    if self.spec.replay > 0 {
                        if self.buffer.len() == self.spec.replay {
                            self.buffer.pop_front();
                        }
                        self.buffer.push_back(r.clone());
                    }
                }
                fresh
            };
            out.push(micro_of(&rows, &m));
        }
        Ok(out)
    }

    /// Each row continued by the student from its prompt; rows without an assistant
    /// target stay as they are.
    fn sample(&mut self, rng: &mut Rng, student: &Llama, eos: &[u32], rows: &[Row]) -> Result<Vec<Row>, String> {
        let seq = rows.first().map_or(0, |r| r.input.len());
        let ends: Vec<Option<usize>> = rows.iter().map(Row::prompt_end).collect();
        let asked: Vec<usize> = (0..rows.len()).filter(|&i| ends[i].is_some()).collect();
        if asked.is_empty() {
            return Ok(rows.to_vec());
        }
        let requests: Vec<Request> = asked
            .iter()
            .map(|&i| Request { prompt: rows[i].input[..=ends[i].unwrap_or(0)].iter().map(|&t| t as u32).collect(), seed: rng.next_u64() })
            .collect();
        // Room for the longest continuation any row can hold.
        let room = asked.iter().map(|&i| seq - ends[i].unwrap_or(0)).max().unwrap_or(1);
        let sampling = Sampling { temperature: self.spec.temperature, top_k: None, top_p: None, seed: 0 };
        student.set_training(false);
        let answers = generate_batch(student, &requests, self.spec.max_new.min(room).max(1), &sampling, eos, |_| true);
        student.set_training(true);
        let mut out = rows.to_vec();
        for (&i, answer) in asked.iter().zip(answers?) {
            let mut completion: Vec<i64> = answer.tokens.iter().map(|&t| t as i64).collect();
            if answer.stop == Stop::Eos {
                // The end of turn is a target too: the student learns where to stop.
                completion.extend(eos.first().map(|&e| e as i64));
            }
            self.sampled_tokens += completion.len() as u64;
            out[i] = rows[i].continued(ends[i].unwrap_or(0), &completion);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_continued_row_counts_only_the_sampled_tokens() {
        // Prompt 10 11 12, the first assistant target at position 2 (token 13).
        let row = Row { input: vec![10, 11, 12, 13, 14, 15], target: vec![11, 12, 13, 14, 15, 16], mask: vec![0., 0., 1., 1., 1., 1.] };
        let c = row.continued(2, &[90, 91]);
        assert_eq!(c.input, [10, 11, 12, 90, 91, 0]);
        assert_eq!(c.target, [11, 12, 90, 91, 0, 0]);
        assert_eq!(c.mask, [0., 0., 1., 1., 0., 0.]);
        // A completion longer than the row is cut to fit.
        let long = row.continued(2, &[1, 2, 3, 4, 5, 6, 7]);
        assert_eq!((long.input, long.target, long.mask), (vec![10, 11, 12, 1, 2, 3], vec![11, 12, 1, 2, 3, 4], vec![0., 0., 1., 1., 1., 1.]));
    }
}
