//! The forward of each generation step, two ways. On the CPU a growing cache: attention
//! spans only the positions there are. On CUDA a fixed-length cache written in place at
//! a device-held position, so every decode step has the same shapes and addresses: after
//! a few eager steps it is captured once as a CUDA graph and replayed, one launch per
//! token instead of one per kernel.

use crate::engine::cuda_graph::{self, Graph};
use crate::engine::llama::{KvCache, Llama, StaticKvCache};
use crate::spec::GraphMode;
use tch::{Device, Kind, Tensor};

/// Eager decode steps before capture: they build every lazily-made kernel handle, so the
/// captured step allocates nothing new.
const WARMUP_STEPS: u32 = 2;

pub struct Decoder<'m> {
    model: &'m Llama,
    way: Way,
    /// Positions fed so far.
    position: i64,
    /// Why a capture that was asked for did not happen (said once, after generating).
    pub note: Option<String>,
}

enum Way {
    Growing(KvCache),
    Fixed(Box<Fixed>),
}

/// The static buffers of a fixed-cache decode step: what a graph reads and writes.
struct Fixed {
    cache: StaticKvCache,
    /// `[1, 1]`: the token fed at this step.
    token: Tensor,
    /// `[1]`: its position.
    position: Tensor,
    /// `[vocab]` f32: the step's next-token logits.
    logits: Tensor,
    capture: bool,
    eager_steps: u32,
    graph: Option<Graph>,
}

/// Why decode steps on `model` cannot be captured, or `None` when they can.
fn why_eager(model: &Llama) -> Option<String> {
    if !model.device().is_cuda() {
        return Some("the model is on the CPU, and CUDA graphs need a CUDA device (kdl run --device cuda)".into());
    }
    if !cuda_graph::built_in() {
        return Some(cuda_graph::NOT_BUILT.into());
    }
    None
}

/// Logits `[T, vocab]` of hidden states `[1, T, dim]`' last position, as f32 `[vocab]`.
fn last_logits(model: &Llama, hidden: &Tensor) -> Tensor {
    let t = hidden.size()[1];
    model.head(&hidden.select(1, t - 1).squeeze_dim(0)).to_kind(Kind::Float)
}

fn to_host(logits: &Tensor) -> Result<Vec<f32>, String> {
    Vec::<f32>::try_from(&logits.to_device(Device::Cpu)).map_err(|e| format!("reading the logits back failed: {e}"))
}

impl<'m> Decoder<'m> {
    /// The eager decoder with a growing cache (what the CPU wants).
    pub fn growing(model: &'m Llama) -> Decoder<'m> {
        Decoder { model, way: Way::Growing(KvCache::new(model.spec.layers)), position: 0, note: None }
    }

    /// A decoder over a fixed cache of `len` positions; with `capture`, its decode step is
    /// captured as a CUDA graph after `WARMUP_STEPS` eager ones.
    pub fn fixed(model: &'m Llama, len: i64, capture: bool) -> Decoder<'m> {
        let device = model.device();
        let vocab = model.spec.vocab.unwrap_or(0) as i64;
        let fixed = Fixed {
            cache: model.static_cache(len.min(model.max_seq())),
            token: Tensor::zeros([1, 1], (Kind::Int64, device)),
            position: Tensor::zeros([1], (Kind::Int64, device)),
            logits: Tensor::zeros([vocab], (Kind::Float, device)),
            capture,
            eager_steps: 0,
            graph: None,
        };
        Decoder { model, way: Way::Fixed(Box::new(fixed)), position: 0, note: None }
    }

    /// The decoder `generate(graph=mode)` runs for `len` positions, and the line that
    /// says why `graph="on"` runs eager, if it does.
    pub fn for_generation(model: &'m Llama, len: i64, mode: GraphMode) -> (Decoder<'m>, Option<String>) {
        match mode.decide(why_eager(model)) {
            (true, _) => (Decoder::fixed(model, len, true), None),
            (false, line) => (Decoder::growing(model), line),
        }
    }

    pub fn model(&self) -> &'m Llama {
        self.model
    }

    /// Whether decode steps are being replayed from a captured graph.
    pub fn graphed(&self) -> bool {
        matches!(&self.way, Way::Fixed(f) if f.graph.is_some())
    }

    /// Feeds the prompt (eagerly) and returns the next-token logits.
    pub fn prefill(&mut self, tokens: &[i64]) -> Result<Vec<f32>, String> {
        let model = self.model;
        let input = Tensor::from_slice(tokens).unsqueeze(0).to_device(model.device());
        let t = tokens.len() as i64;
        let logits = tch::no_grad(|| match &mut self.way {
            Way::Growing(cache) => Ok(last_logits(model, &model.hidden(&input, Some(cache)))),
            Way::Fixed(f) => {
                if self.position + t > f.cache.len() {
                    return Err(format!("the prompt needs {} positions but the decoder holds {}", self.position + t, f.cache.len()));
                }
                let positions = Tensor::arange_start(self.position, self.position + t, (Kind::Int64, model.device()));
                Ok(last_logits(model, &model.hidden_at(&input, &positions, &mut f.cache)))
            }
        })?;
        self.position += t;
        to_host(&logits)
    }

    /// Feeds one token and returns the next-token logits.
    pub fn step(&mut self, token: i64) -> Result<Vec<f32>, String> {
        let model = self.model;
        let logits = match &mut self.way {
            Way::Growing(cache) => {
                let input = Tensor::from_slice(&[token]).unsqueeze(0).to_device(model.device());
                tch::no_grad(|| last_logits(model, &model.hidden(&input, Some(cache))))
            }
            Way::Fixed(f) => {
                if self.position >= f.cache.len() {
                    return Err(format!("the decoder holds {} positions, all used", f.cache.len()));
                }
                let _ = f.token.fill_(token);
                let _ = f.position.fill_(self.position);
                if let Some(graph) = &f.graph {
                    graph.replay()?;
                } else if f.capture && f.eager_steps >= WARMUP_STEPS {
                    match Graph::new().and_then(|mut g| g.capture(|| f.run(model)).map(|_| g)) {
                        Ok(graph) => {
                            graph.replay()?;
                            f.graph = Some(graph);
                        }
                        Err(e) => {
                            // Capture failed: this and later steps run eager, and the run says why.
                            f.capture = false;
                            self.note = Some(format!("generate: the decode step could not be captured ({e}); decoding eager"));
                            f.run(model);
                        }
                    }
                } else {
                    f.run(model);
                    f.eager_steps += 1;
                }
                f.logits.shallow_clone()
            }
        };
        self.position += 1;
        to_host(&logits)
    }
}

impl Fixed {
    /// One decode step on the static buffers: what a graph captures.
    fn run(&mut self, model: &Llama) {
        tch::no_grad(|| {
            let hidden = model.hidden_at(&self.token, &self.position, &mut self.cache);
            let _ = self.logits.copy_(&last_logits(model, &hidden));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Llama {
        Llama::tiny(2, 50, 64, 3)
    }

    fn close(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn the_fixed_cache_decodes_what_the_growing_one_does() {
        let model = tiny();
        let (mut growing, mut fixed) = (Decoder::growing(&model), Decoder::fixed(&model, 24, false));
        let prompt = [3i64, 14, 15, 9, 2];
        let d = close(&growing.prefill(&prompt).unwrap(), &fixed.prefill(&prompt).unwrap());
        assert!(d < 1e-5, "prefill differs by {d}");
        for token in [7i64, 1, 48, 20, 20, 5] {
            let d = close(&growing.step(token).unwrap(), &fixed.step(token).unwrap());
            assert!(d < 1e-5, "step differs by {d}");
        }
        assert!(!fixed.graphed());
    }

    #[test]
    fn the_fixed_cache_says_when_it_is_full() {
        let model = tiny();
        let mut fixed = Decoder::fixed(&model, 4, false);
        fixed.prefill(&[1, 2, 3]).unwrap();
        fixed.step(4).unwrap();
        assert!(fixed.step(5).unwrap_err().contains("all used"));
    }

    #[test]
    fn graph_on_without_cuda_decodes_eager_and_says_why() {
        let model = tiny();
        let (decoder, line) = Decoder::for_generation(&model, 16, GraphMode::On);
        assert!(!decoder.graphed());
        assert!(line.unwrap().contains("CUDA graphs need a CUDA device"));
        assert!(Decoder::for_generation(&model, 16, GraphMode::Auto).1.is_none());
    }
}
