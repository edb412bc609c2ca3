//! The llama-family decoder on tch, read top-down: linear layers, RMSNorm, attention
//! (grouped-query, RoPE, optional q/k/v bias), SwiGLU MLP, a block, the model. Variable
//! names are the Hugging Face checkpoint names (`model.layers.0.self_attn.q_proj.weight`),
//! so loading and saving are lookups.

use super::cache::KvCache;
use super::config::Llama3Scaling;
use super::rope::Rope;
use crate::spec::LlamaSpec;
use tch::nn::{Init, Path, VarStore};
use tch::{Device, Kind, Tensor};

/// The usual llama recipe: N(0, 0.02) weights, residual projections scaled down by
/// √(2·layers) so the residual stream does not grow with depth.
const INIT_STD: f64 = 0.02;

struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    fn new(p: Path, inputs: usize, outputs: usize, bias: bool) -> Linear {
        let weight = p.var("weight", &[outputs as i64, inputs as i64], Init::Const(0.0));
        let bias = bias.then(|| p.var("bias", &[outputs as i64], Init::Const(0.0)));
        Linear { weight, bias }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, self.bias.as_ref())
    }
}

struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn new(p: Path, dim: usize, eps: f64) -> RmsNorm {
        RmsNorm { weight: p.var("weight", &[dim as i64], Init::Const(1.0)), eps }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        // In f32 whatever the compute dtype, as transformers does.
        let kind = x.kind();
        if kind == Kind::Float {
            return x * (x.square().mean_dim(-1, true, Kind::Float) + self.eps).rsqrt() * &self.weight;
        }
        let xf = x.to_kind(Kind::Float);
        let normed = &xf * (xf.square().mean_dim(-1, true, Kind::Float) + self.eps).rsqrt();
        normed.to_kind(kind) * &self.weight
    }
}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    heads: i64,
    kv_heads: i64,
    head_dim: i64,
}

impl Attention {
    fn new(p: Path, s: &LlamaSpec) -> Attention {
        let hd = s.head_dim();
        Attention {
            q: Linear::new(&p / "q_proj", s.dim, s.heads * hd, s.qkv_bias),
            k: Linear::new(&p / "k_proj", s.dim, s.kv_heads * hd, s.qkv_bias),
            v: Linear::new(&p / "v_proj", s.dim, s.kv_heads * hd, s.qkv_bias),
            o: Linear::new(&p / "o_proj", s.heads * hd, s.dim, s.o_bias),
            heads: s.heads as i64,
            kv_heads: s.kv_heads as i64,
            head_dim: hd as i64,
        }
    }

    fn forward(&self, x: &Tensor, rope: &(Tensor, Tensor), cache: Option<(&mut KvCache, usize)>) -> Tensor {
        // x: [B, T, D]
        let (b, t) = (x.size()[0], x.size()[1]);
        let split = |y: Tensor, h: i64| y.view([b, t, h, self.head_dim]).transpose(1, 2); // [B, h, T, hd]
        let offset = cache.as_ref().map(|(c, _)| c.offset).unwrap_or(0);
        let q = Rope::apply(&split(self.q.forward(x), self.heads), rope);
        let mut k = Rope::apply(&split(self.k.forward(x), self.kv_heads), rope);
        let mut v = split(self.v.forward(x), self.kv_heads);
        if let Some((cache, layer)) = cache {
            (k, v) = cache.append(layer, k, v);
        }
        // Grouped-query attention without copying keys and values per query head.
        let gqa = self.heads != self.kv_heads;
        let y = if offset == 0 || t == 1 {
            // A fresh block is causal; one new token sees every cached key.
            Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, offset == 0 && t > 1, None, gqa)
        } else {
            // A block after cached tokens: every cached key and the causal part of its own.
            let total = k.size()[2];
            let mask = Tensor::ones([t, total], (Kind::Bool, x.device())).tril(total - t);
            Tensor::scaled_dot_product_attention(&q, &k, &v, Some(mask), 0.0, false, None, gqa)
        };
        self.o.forward(&y.transpose(1, 2).reshape([b, t, self.heads * self.head_dim]))
    }
}

struct Mlp {
    gate: Linear,
    up: Linear,
    down: Linear,
}

impl Mlp {
    fn new(p: Path, s: &LlamaSpec) -> Mlp {
        Mlp {
            gate: Linear::new(&p / "gate_proj", s.dim, s.ffn, false),
            up: Linear::new(&p / "up_proj", s.dim, s.ffn, false),
            down: Linear::new(&p / "down_proj", s.ffn, s.dim, false),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        self.down.forward(&(self.gate.forward(x).silu() * self.up.forward(x)))
    }
}

struct Block {
    attn_norm: RmsNorm,
    attn: Attention,
    mlp_norm: RmsNorm,
    mlp: Mlp,
}

impl Block {
    fn new(p: Path, s: &LlamaSpec) -> Block {
        Block {
            attn_norm: RmsNorm::new(&p / "input_layernorm", s.dim, s.norm_eps),
            attn: Attention::new(&p / "self_attn", s),
            mlp_norm: RmsNorm::new(&p / "post_attention_layernorm", s.dim, s.norm_eps),
            mlp: Mlp::new(&p / "mlp", s),
        }
    }

    fn forward(&self, x: &Tensor, rope: &(Tensor, Tensor), cache: Option<(&mut KvCache, usize)>) -> Tensor {
        let h = x + self.attn.forward(&self.attn_norm.forward(x), rope, cache);
        &h + self.mlp.forward(&self.mlp_norm.forward(&h))
    }
}

/// A llama-family decoder with its variables in `vs`.
pub struct Llama {
    pub spec: LlamaSpec,
    pub vs: VarStore,
    embed: Tensor,
    blocks: Vec<Block>,
    norm: RmsNorm,
    /// `None` when tied to the embedding.
    head: Option<Tensor>,
    rope: Rope,
    scaling: Option<Llama3Scaling>,
}

impl Llama {
    /// A model with zeroed weights, to be filled by `init` or a checkpoint. The spec must
    /// know its vocabulary size.
    pub fn new(spec: &LlamaSpec, device: Device, scaling: Option<Llama3Scaling>) -> Result<Llama, String> {
        let vocab = spec.vocab.ok_or("the model's vocabulary size is not known")? as i64;
        let vs = VarStore::new(device);
        let root = vs.root();
        let m = &root / "model";
        let embed = (&m / "embed_tokens").var("weight", &[vocab, spec.dim as i64], Init::Const(0.0));
        let blocks = (0..spec.layers).map(|i| Block::new(&m / "layers" / i, spec)).collect();
        let norm = RmsNorm::new(&m / "norm", spec.dim, spec.norm_eps);
        let head = (!spec.tie).then(|| (&root / "lm_head").var("weight", &[vocab, spec.dim as i64], Init::Const(0.0)));
        let rope = Rope::new(spec.head_dim(), spec.max_seq, spec.rope_theta, scaling, device);
        Ok(Llama { spec: spec.clone(), vs, embed, blocks, norm, head, rope, scaling })
    }

    /// A copy of this model with its weights in `kind` (a bf16 teacher for a run).
    pub fn converted(&self, kind: Kind) -> Result<Llama, String> {
        let mut copy = Llama::new(&self.spec, self.device(), self.scaling)?;
        let source = self.vs.variables();
        for (name, mut var) in copy.vs.variables() {
            let src = source.get(&name).ok_or_else(|| format!("the model has no {name}"))?;
            tch::no_grad(|| var.copy_(src));
        }
        copy.vs.set_kind(kind);
        copy.vs.freeze();
        Ok(copy)
    }

    /// Fills the weights by the llama recipe from `seed` alone: each variable draws from
    /// its own stream (seed, name), so the result does not depend on libtorch's global
    /// generator, on other threads, or on the device.
    pub fn init(&self, seed: u64) {
        let residual_std = INIT_STD / (2.0 * self.spec.layers as f64).sqrt();
        for (name, mut var) in self.vs.variables() {
            tch::no_grad(|| {
                if name.contains("norm") {
                    let _ = var.fill_(1.0);
                } else if name.ends_with("bias") {
                    let _ = var.fill_(0.0);
                } else {
                    let residual = name.ends_with("o_proj.weight") || name.ends_with("down_proj.weight");
                    let data = super::init::normal(seed, &name, var.numel(), if residual { residual_std } else { INIT_STD });
                    let t = Tensor::from_slice(&data).view(var.size().as_slice()).to_kind(var.kind()).to_device(var.device());
                    var.copy_(&t);
                }
            });
        }
    }

    /// The llama-3 rope scaling the model was loaded with, if any (saved with it).
    pub fn scaling(&self) -> Option<Llama3Scaling> {
        self.scaling
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// `tokens: [B, T]` (int64) -> logits `[B, T, vocab]`. With a cache, positions
    /// continue from what it holds and it is extended.
    pub fn forward(&self, tokens: &Tensor, cache: Option<&mut KvCache>) -> Tensor {
        self.head(&self.hidden(tokens, cache))
    }

    /// The final (normed) hidden states `[B, T, dim]`, before the output head.
    pub fn hidden(&self, tokens: &Tensor, mut cache: Option<&mut KvCache>) -> Tensor {
        let t = tokens.size()[1];
        let offset = cache.as_ref().map(|c| c.offset).unwrap_or(0);
        let mut x = Tensor::embedding(&self.embed, tokens, -1, false, false);
        let rope = self.rope.tables(offset, t, x.kind());
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(&x, &rope, cache.as_deref_mut().map(|c| (c, i)));
        }
        if let Some(c) = cache {
            c.offset += t;
        }
        self.norm.forward(&x)
    }

    /// Logits `[B, T, vocab]` and the output of every block `[B, T, dim]` (before the
    /// final norm), for hidden-state loss terms. Entry i is block i's output.
    pub fn forward_with_states(&self, tokens: &Tensor) -> (Tensor, Vec<Tensor>) {
        let t = tokens.size()[1];
        let mut x = Tensor::embedding(&self.embed, tokens, -1, false, false);
        let rope = self.rope.tables(0, t, x.kind());
        let mut states = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            x = block.forward(&x, &rope, None);
            states.push(x.shallow_clone());
        }
        (self.head(&self.norm.forward(&x)), states)
    }

    /// Logits of hidden states: `[.., dim] -> [.., vocab]`.
    pub fn head(&self, hidden: &Tensor) -> Tensor {
        hidden.linear(self.head.as_ref().unwrap_or(&self.embed), None::<Tensor>)
    }

    pub fn max_seq(&self) -> i64 {
        self.rope.max_seq()
    }
}
