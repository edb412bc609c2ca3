//! Many prompts at once: left-padded into one batch, each row at its own positions, one
//! forward per new token for the whole batch, and the rows that finish dropped from it
//! (their cache rows too), so a long answer never makes the short ones wait in the
//! matmuls. On a CPU this turns decoding from memory-bound (every weight read per token)
//! into matmul-bound: the weights are read once per step for every row.

use super::sample::pick;
use super::{Sampling, Stop};
use crate::engine::llama::{KvCache, Llama};
use crate::engine::rng::SplitMix64 as Rng;
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

/// One sequence to continue: its prompt, and the seed of its own sampler (so a row's
/// sample does not depend on which rows share its batch).
#[derive(Debug, Clone)]
pub struct Request {
    pub prompt: Vec<u32>,
    pub seed: u64,
}

/// What a request produced: the new tokens (without an EOS) and why it stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub tokens: Vec<u32>,
    pub stop: Stop,
}

/// A sequence still being decoded: where it is in the request list, its sampler, its output.
struct Row {
    request: usize,
    rng: Rng,
    out: Vec<u32>,
    /// The position its next token goes to.
    position: i64,
}

/// Checks what `generate` checks, per request.
fn check(model: &Llama, requests: &[Request]) -> Result<(), String> {
    for (i, r) in requests.iter().enumerate() {
        super::check_prompt(model, &r.prompt).map_err(|e| format!("prompt {i}: {e}"))?;
    }
    Ok(())
}

/// Next-token logits of every row, `[B, vocab]` f32 on the host, one `Vec` per row.
fn rows_of(logits: &Tensor) -> Result<Vec<Vec<f32>>, String> {
    let logits = logits.to_kind(Kind::Float).to_device(Device::Cpu).contiguous();
    let (b, v) = (logits.size()[0] as usize, logits.size()[1] as usize);
    let flat = Vec::<f32>::try_from(&logits.reshape([-1])).map_err(|e| format!("reading the logits back failed: {e}"))?;
    Ok((0..b).map(|i| flat[i * v..(i + 1) * v].to_vec()).collect())
}

/// Continues every request by up to `max` tokens, all in one batch. `on_step` sees how
/// many tokens the step produced and returns false to stop (Ctrl-C); the requests not
/// finished then end `Interrupted`. Answers come back in request order.
pub fn generate_batch(
    model: &Llama,
    requests: &[Request],
    max: usize,
    sampling: &Sampling,
    eos: &[u32],
    mut on_step: impl FnMut(usize) -> bool,
) -> Result<Vec<Answer>, String> {
    check(model, requests)?;
    let device = model.device();
    let context = model.max_seq() as usize;
    let mut answers: Vec<Option<Answer>> = vec![None; requests.len()];
    if requests.is_empty() {
        return Ok(vec![]);
    }
    // Prefill: prompts right-aligned in a [B, L] block, padding in front.
    let longest = requests.iter().map(|r| r.prompt.len()).max().unwrap_or(0);
    let b = requests.len() as i64;
    let l = longest as i64;
    let mut ids = Vec::with_capacity(requests.len() * longest);
    let mut positions = Vec::with_capacity(ids.capacity());
    let mut valid = Vec::with_capacity(ids.capacity());
    for r in requests {
        let pad = longest - r.prompt.len();
        ids.extend(std::iter::repeat(0i64).take(pad).chain(r.prompt.iter().map(|&t| t as i64)));
        positions.extend(std::iter::repeat(0i64).take(pad).chain(0..r.prompt.len() as i64));
        valid.extend((0..longest).map(|j| j >= pad));
    }
    let to = |t: Tensor| t.to_device(device);
    // Which keys each row may attend to: its own prompt's, and from now on every new one.
    let mut keys = to(Tensor::from_slice(&valid).view([b, l]));
    let causal = to(Tensor::ones([l, l], (Kind::Bool, Device::Cpu)).tril(0));
    // A padding query sees only itself, so no softmax row is empty (an empty one is NaN,
    // and NaN values would leak through the zero weights of later rows).
    let itself = to(Tensor::eye(l, (Kind::Bool, Device::Cpu)));
    let mask = (causal.unsqueeze(0) * keys.unsqueeze(1)).logical_or(&itself.unsqueeze(0)).unsqueeze(1);
    let mut cache = KvCache::new(model.spec.layers);
    let hidden = tch::no_grad(|| {
        model.hidden_rows(&to(Tensor::from_slice(&ids).view([b, l])), &to(Tensor::from_slice(&positions).view([b, l])), &mut cache, &mask)
    });
    let mut logits = rows_of(&tch::no_grad(|| model.head(&hidden.select(1, l - 1))))?;
    let mut rows: Vec<Row> = requests
        .iter()
        .enumerate()
        .map(|(i, r)| Row { request: i, rng: Rng(r.seed ^ 0x6b64_6c5f_7361_6d70), out: Vec::new(), position: r.prompt.len() as i64 })
        .collect();
    loop {
        // Pick every row's next token (in parallel: sorting a 49k vocabulary per row adds up).
        let picks: Vec<u32> = rows.par_iter_mut().zip(logits.par_iter()).map(|(row, l)| pick(l, sampling, &mut row.rng)).collect();
        let mut keep = Vec::with_capacity(rows.len());
        let mut fed = Vec::with_capacity(rows.len());
        let mut produced = 0;
        let old_rows = std::mem::take(&mut rows);
        for (i, (mut row, next)) in old_rows.into_iter().zip(picks).enumerate() {
            let prompt = requests[row.request].prompt.len();
            let stop = if eos.contains(&next) {
                Some(Stop::Eos)
            } else {
                row.out.push(next);
                produced += 1;
                // The order `generate` decides in: a full context first.
                if prompt + row.out.len() >= context {
                    Some(Stop::Context)
                } else if row.out.len() >= max {
                    Some(Stop::Length)
                } else {
                    None
                }
            };
            match stop {
                Some(stop) => answers[row.request] = Some(Answer { tokens: std::mem::take(&mut row.out), stop }),
                None => {
                    keep.push(i as i64);
                    fed.push(next as i64);
                    rows.push(row);
                }
            }
        }
        let go_on = on_step(produced);
        if rows.is_empty() {
            break;
        }
        if !go_on {
            for row in rows.drain(..) {
                answers[row.request] = Some(Answer { tokens: row.out, stop: Stop::Interrupted });
            }
            break;
        }
        if keep.len() < keys.size()[0] as usize {
            let kept = to(Tensor::from_slice(&keep));
            cache.keep_rows(&kept);
            keys = keys.index_select(0, &kept);
        }
        let n = rows.len() as i64;
        keys = Tensor::cat(&[&keys, &to(Tensor::ones([n, 1], (Kind::Bool, Device::Cpu)))], 1);
        let step_positions: Vec<i64> = rows.iter().map(|r| r.position).collect();
        for r in rows.iter_mut() {
            r.position += 1;
        }
        let mask = keys.view([n, 1, 1, -1]);
        let hidden = tch::no_grad(|| {
            model.hidden_rows(&to(Tensor::from_slice(&fed).view([n, 1])), &to(Tensor::from_slice(&step_positions).view([n, 1])), &mut cache, &mask)
        });
        logits = rows_of(&tch::no_grad(|| model.head(&hidden.select(1, 0))))?;
    }
    Ok(answers.into_iter().map(|a| a.expect("every request is answered")).collect())
}

#[cfg(test)]
mod tests {
    use super::super::{generate, Decoder};
    use super::*;

    fn tiny() -> Llama {
        Llama::tiny(2, 50, 64, 3)
    }

    fn one_at_a_time(model: &Llama, r: &Request, max: usize, s: &Sampling, eos: &[u32]) -> Answer {
        let mut d = Decoder::growing(model);
        let (tokens, stop) = generate(&mut d, &r.prompt, max, &Sampling { seed: r.seed, ..s.clone() }, eos, |_| true).unwrap();
        Answer { tokens, stop }
    }

    #[test]
    fn a_batch_decodes_what_each_prompt_decodes_alone() {
        let model = tiny();
        let requests: Vec<Request> = [vec![3u32, 14, 15, 9, 2], vec![7], vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], vec![40, 41]]
            .into_iter()
            .enumerate()
            .map(|(i, prompt)| Request { prompt, seed: 100 + i as u64 })
            .collect();
        for s in [Sampling::greedy(), Sampling { temperature: 0.9, top_k: None, top_p: Some(0.9), seed: 0 }] {
            let batch = generate_batch(&model, &requests, 12, &s, &[], |_| true).unwrap();
            for (r, got) in requests.iter().zip(&batch) {
                assert_eq!(got, &one_at_a_time(&model, r, 12, &s, &[]), "prompt {:?} under {s:?}", r.prompt);
            }
        }
    }

    #[test]
    fn rows_stop_at_their_own_eos_and_the_rest_go_on() {
        let model = tiny();
        let requests: Vec<Request> = (0..6).map(|i| Request { prompt: vec![i as u32 + 1, 9], seed: i }).collect();
        let free = generate_batch(&model, &requests, 10, &Sampling::greedy(), &[], |_| true).unwrap();
        // Make one row's third token its end: it stops there, the others are unchanged.
        let eos = free[2].tokens[2];
        let stopped = generate_batch(&model, &requests, 10, &Sampling::greedy(), &[eos], |_| true).unwrap();
        for (f, s) in free.iter().zip(&stopped) {
            let cut = f.tokens.iter().position(|&t| t == eos);
            match cut {
                Some(c) => assert_eq!((s.tokens.as_slice(), s.stop), (&f.tokens[..c], Stop::Eos)),
                None => assert_eq!(s, f),
            }
        }
    }

    #[test]
    fn an_interrupt_ends_every_unfinished_row() {
        let model = tiny();
        let requests: Vec<Request> = (0..3).map(|i| Request { prompt: vec![5, i as u32], seed: i }).collect();
        let mut steps = 0;
        let out = generate_batch(&model, &requests, 20, &Sampling::greedy(), &[], |_| {
            steps += 1;
            steps < 4
        })
        .unwrap();
        assert!(out.iter().all(|a| a.stop == Stop::Interrupted && a.tokens.len() == 4), "{out:?}");
    }
}
