//! Gradient checkpointing (`train(checkpoint_layers=true)`): the forward keeps only each
//! block's output, not the activations inside the block; the backward recomputes one
//! block at a time and back-propagates through it. A step then holds one block's
//! activations instead of every block's, for about one more forward of compute.
//!
//! tch has no custom autograd functions, so the backward is written out: the loss is
//! back-propagated to the blocks' outputs, kept as leaves; then each block, last to
//! first, is recomputed from its input (the previous block's leaf, or the embedding) and
//! back-propagated with the gradient its output received, through `(out · g).sum()`,
//! whose gradient with respect to `out` is `g`. Gradients land on the variables as a
//! plain `loss.backward()` would leave them.

use super::model::{Llama, Past};
use crate::engine::autocast;
use tch::{Device, Kind, Tensor};

impl Llama {
    /// One batch's forward and backward with every block recomputed in the backward.
    /// `loss` gets the logits and, with `states`, each block's output (entry i is block
    /// i's), and returns the scalar to back-propagate and whatever else it wants back.
    /// `mixed` runs the forwards under bf16 autocast.
    pub fn backward_checkpointed<R>(&self, tokens: &Tensor, states: bool, mixed: bool, loss: impl FnOnce(&Tensor, Option<&[Tensor]>) -> (Tensor, R)) -> Result<R, String> {
        let device = self.device();
        let run = |f: &dyn Fn() -> Tensor| -> Result<Tensor, String> {
            if mixed {
                autocast::mixed(device, f)
            } else {
                Ok(f())
            }
        };
        let t = tokens.size()[1];
        let embed = || Tensor::embedding(&self.embed, tokens, -1, false, false);
        let rope = self.rope.tables(0, t, self.embed.kind());
        // Adapter dropout must draw the same mask when a block is recomputed: each block
        // gets a seed of its own, drawn once per step.
        let base = self.draws_random().then(|| Tensor::randint(i64::MAX / 2, [1], (Kind::Int64, Device::Cpu)).int64_value(&[0]));
        let reseed = |i: usize| {
            if let Some(b) = base {
                tch::manual_seed(b + i as i64);
            }
        };

        let mut outs: Vec<Tensor> = Vec::with_capacity(self.blocks.len());
        let mut x = tch::no_grad(embed);
        for (i, block) in self.blocks.iter().enumerate() {
            reseed(i);
            let y = run(&|| tch::no_grad(|| block.forward(&x, &rope, Past::Nothing)))?;
            outs.push(y.detach().set_requires_grad(true));
            x = y;
        }
        drop(x);
        let last = outs.last().ok_or("the model has no blocks")?;
        let logits = run(&|| self.logits_of(last))?;
        let (total, out) = loss(&logits, states.then_some(outs.as_slice()));
        drop(logits);
        if total.requires_grad() {
            total.backward();
        }
        for i in (0..self.blocks.len()).rev() {
            let g = outs[i].grad();
            if !g.defined() {
                continue; // nothing downstream used this block's output
            }
            let input = if i == 0 { embed() } else { outs[i - 1].shallow_clone() };
            reseed(i);
            let y = run(&|| self.blocks[i].forward(&input, &rope, Past::Nothing))?;
            let pulled = (y.to_kind(g.kind()) * &g).sum(Kind::Float);
            if pulled.requires_grad() {
                pulled.backward();
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Llama {
        Llama::tiny(3, 40, 32, 5)
    }

    /// A loss of the logits and, when given, a pull on every block's output (as a
    /// hidden-state term does).
    fn loss(logits: &Tensor, states: Option<&[Tensor]>, targets: &Tensor) -> Tensor {
        let ce = logits.view([-1, 40]).cross_entropy_for_logits(&targets.view([-1]));
        match states {
            Some(s) => s.iter().fold(ce, |acc, h| acc + h.square().mean(Kind::Float) * 0.1),
            None => ce,
        }
    }

    /// Every variable's gradient (copied, sorted by name), then zeroed for the next run.
    fn grads(m: &Llama) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = m.vs.variables().into_iter().map(|(n, t)| (n, t.grad().copy())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, t) in m.vs.variables() {
            let _ = t.grad().zero_();
        }
        assert!(v.iter().all(|(_, g)| g.abs().sum(Kind::Float).double_value(&[]) > 0.0), "every variable has a gradient");
        v
    }

    #[test]
    fn recomputed_blocks_give_the_plain_gradients() {
        let m = model();
        let tokens = Tensor::from_slice(&[1i64, 5, 9, 33, 2, 7, 7, 30, 11, 4]).view([2, 5]);
        let targets = tokens.roll([1], [1]);
        for states in [false, true] {
            let (logits, hidden) = m.forward_with_states(&tokens);
            let plain = loss(&logits, states.then_some(hidden.as_slice()), &targets);
            plain.backward();
            let want = grads(&m);
            let got_loss = m.backward_checkpointed(&tokens, states, false, |l, s| {
                let total = loss(l, s, &targets);
                (total.shallow_clone(), total.detach())
            });
            let got = grads(&m);
            assert!((got_loss.unwrap() - plain.detach()).abs().double_value(&[]) < 1e-6);
            for ((name, a), (_, b)) in want.iter().zip(&got) {
                let d = (a - b).abs().max().double_value(&[]);
                assert!(d < 1e-5, "{name} (states {states}): gradients differ by {d}");
            }
        }
    }
}
