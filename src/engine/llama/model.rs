//! The llama-family decoder on tch, read top-down: linear layers, RMSNorm, attention
//! (grouped-query, RoPE, optional q/k/v bias), SwiGLU MLP, a block, the model. Variable
//! names are the Hugging Face checkpoint names (`model.layers.0.self_attn.q_proj.weight`),
//! so loading and saving are lookups.

use super::cache::{KvCache, StaticKvCache};
use super::config::Llama3Scaling;
use super::int8::{Fused, Int8Weight};
use super::rope::Rope;
use crate::engine::lora::{LoraConfig, Target};
use crate::spec::LlamaSpec;
use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use tch::nn::{Init, Path, VarStore};
use tch::{Device, Kind, Tensor};

/// The usual llama recipe: N(0, 0.02) weights, residual projections scaled down by
/// √(2·layers) so the residual stream does not grow with depth.
const INIT_STD: f64 = 0.02;

/// Where a model's tensors come from while it is built: new variables of its own store,
/// or — for a model with a LoRA adapter — the base model's tensors, shared and frozen,
/// with only the adapter's matrices as variables of its own.
struct Source<'a> {
    base: Option<&'a HashMap<String, Tensor>>,
    lora: Option<&'a LoraConfig>,
    /// Dropout on the adapter's input applies only while training.
    training: Rc<Cell<bool>>,
}

impl Source<'_> {
    fn var(&self, p: &Path, name: &str, dims: &[i64], init: Init) -> Tensor {
        match self.base.and_then(|b| b.get(&p.path(name))) {
            // Detached: shares the base's storage but never collects gradients.
            Some(t) => t.detach(),
            None => p.var(name, dims, init),
        }
    }
}

/// A LoRA pair on one linear layer: y += scale · B(A(dropout(x))).
struct LoraPair {
    a: Tensor,
    b: Tensor,
    scale: f64,
    dropout: f64,
    training: Rc<Cell<bool>>,
}

struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
    lora: Option<LoraPair>,
    /// An int8 copy of `weight` for decoding a few rows at a time (`Llama::int8_copy`).
    int8: Option<Int8Weight>,
}

impl Linear {
    fn new(p: Path, src: &Source, target: Target, inputs: usize, outputs: usize, bias: bool) -> Linear {
        let weight = src.var(&p, "weight", &[outputs as i64, inputs as i64], Init::Const(0.0));
        let bias = bias.then(|| src.var(&p, "bias", &[outputs as i64], Init::Const(0.0)));
        // Variable names are PEFT's (`...q_proj.lora_A.weight`), so saving is a rename.
        let lora = src.lora.filter(|c| c.targets.contains(&target)).map(|c| LoraPair {
            a: (&p / "lora_A").var("weight", &[c.rank as i64, inputs as i64], Init::Const(0.0)),
            b: (&p / "lora_B").var("weight", &[outputs as i64, c.rank as i64], Init::Const(0.0)),
            scale: c.scale(),
            dropout: c.dropout,
            training: src.training.clone(),
        });
        Linear { weight, bias, lora, int8: None }
    }

    fn pack_int8(&mut self) -> Result<(), String> {
        self.int8 = Some(Int8Weight::pack(&self.weight)?);
        Ok(())
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let y = match self.int8.as_ref().and_then(|p| p.forward(x)) {
            Some(y) => match &self.bias {
                Some(b) => y + b,
                None => y,
            },
            None => x.linear(&self.weight, self.bias.as_ref()),
        };
        match &self.lora {
            None => y,
            Some(l) => {
                let train = l.training.get() && l.dropout > 0.0;
                let h = if train { x.dropout(l.dropout, true) } else { x.shallow_clone() };
                // The adapter stays f32 on a bf16/f16 base, as peft keeps it: the input is
                // cast up and the update cast back to the base's precision.
                let h = if h.kind() == l.a.kind() { h } else { h.to_kind(l.a.kind()) };
                let update = h.linear(&l.a, None::<Tensor>).linear(&l.b, None::<Tensor>) * l.scale;
                let update = if update.kind() == y.kind() { update } else { update.to_kind(y.kind()) };
                y + update
            }
        }
    }
}

struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn new(p: Path, src: &Source, dim: usize, eps: f64) -> RmsNorm {
        RmsNorm { weight: src.var(&p, "weight", &[dim as i64], Init::Const(1.0)), eps }
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
    /// q, k and v as one int8 matrix, in a copy made by `Llama::int8_copy`.
    qkv_int8: Option<Fused>,
    heads: i64,
    kv_heads: i64,
    head_dim: i64,
}

impl Attention {
    fn new(p: Path, src: &Source, s: &LlamaSpec) -> Attention {
        let hd = s.head_dim();
        Attention {
            q: Linear::new(&p / "q_proj", src, Target::Q, s.dim, s.heads * hd, s.qkv_bias),
            k: Linear::new(&p / "k_proj", src, Target::K, s.dim, s.kv_heads * hd, s.qkv_bias),
            v: Linear::new(&p / "v_proj", src, Target::V, s.dim, s.kv_heads * hd, s.qkv_bias),
            o: Linear::new(&p / "o_proj", src, Target::O, s.heads * hd, s.dim, s.o_bias),
            qkv_int8: None,
            heads: s.heads as i64,
            kv_heads: s.kv_heads as i64,
            head_dim: hd as i64,
        }
    }

    fn pack_int8(&mut self) -> Result<(), String> {
        let (q, k, v) = (&self.q, &self.k, &self.v);
        self.qkv_int8 = Some(Fused::pack(&[&q.weight, &k.weight, &v.weight], &[q.bias.as_ref(), k.bias.as_ref(), v.bias.as_ref()])?);
        self.o.pack_int8()
    }

    /// The q, k and v projections of `x`.
    fn qkv(&self, x: &Tensor) -> (Tensor, Tensor, Tensor) {
        if let Some(mut parts) = self.qkv_int8.as_ref().and_then(|f| f.forward(x)) {
            let v = parts.pop().unwrap();
            let k = parts.pop().unwrap();
            return (parts.pop().unwrap(), k, v);
        }
        (self.q.forward(x), self.k.forward(x), self.v.forward(x))
    }

    fn forward(&self, x: &Tensor, rope: &(Tensor, Tensor), past: Past) -> Tensor {
        // x: [B, T, D]
        let (b, t) = (x.size()[0], x.size()[1]);
        let split = |y: Tensor, h: i64| y.view([b, t, h, self.head_dim]).transpose(1, 2); // [B, h, T, hd]
        let (q, k, v) = self.qkv(x);
        let q = Rope::apply(&split(q, self.heads), rope);
        let k = Rope::apply(&split(k, self.kv_heads), rope);
        let v = split(v, self.kv_heads);
        // Grouped-query attention without copying keys and values per query head.
        let gqa = self.heads != self.kv_heads;
        let attend = |k: &Tensor, v: &Tensor, mask: Option<Tensor>, causal: bool| Tensor::scaled_dot_product_attention(&q, k, v, mask, 0.0, causal, None, gqa);
        let y = match past {
            Past::Nothing => attend(&k, &v, None, t > 1),
            Past::Growing(cache, layer) => {
                let offset = cache.offset;
                let (k, v) = cache.append(layer, k, v);
                if offset == 0 || t == 1 {
                    // A fresh block is causal; one new token sees every cached key.
                    attend(&k, &v, None, offset == 0 && t > 1)
                } else {
                    // A block after cached tokens: every cached key and the causal part of its own.
                    let total = k.size()[2];
                    attend(&k, &v, Some(Tensor::ones([t, total], (Kind::Bool, x.device())).tril(total - t)), false)
                }
            }
            Past::Static { cache, layer, positions, mask } => {
                let (k, v) = cache.write(layer, positions, &k, &v);
                attend(&k, &v, Some(mask.shallow_clone()), false)
            }
            Past::Rows { cache, layer, mask } => {
                let (k, v) = cache.append(layer, k, v);
                attend(&k, &v, Some(mask.shallow_clone()), false)
            }
        };
        self.o.forward(&y.transpose(1, 2).reshape([b, t, self.heads * self.head_dim]))
    }
}

/// What attention sees besides the block's own positions.
pub(super) enum Past<'a> {
    /// Nothing: a training or scoring forward, causal over its own positions.
    Nothing,
    /// A growing cache (layer `usize`), extended by this block.
    Growing(&'a mut KvCache, usize),
    /// A fixed-length cache written at `positions: [T]`, read under `mask: [T, len]`.
    Static { cache: &'a mut StaticKvCache, layer: usize, positions: &'a Tensor, mask: &'a Tensor },
    /// A growing cache of a batch of sequences, each at its own positions, read under
    /// `mask: [B, 1, T, cached + T]` (which keys each row's queries see).
    Rows { cache: &'a mut KvCache, layer: usize, mask: &'a Tensor },
}

impl Past<'_> {
    fn growing(cache: Option<(&mut KvCache, usize)>) -> Past<'_> {
        match cache {
            Some((c, layer)) => Past::Growing(c, layer),
            None => Past::Nothing,
        }
    }
}

struct Mlp {
    gate: Linear,
    up: Linear,
    down: Linear,
    /// gate and up as one int8 matrix, in a copy made by `Llama::int8_copy`.
    gate_up_int8: Option<Fused>,
}

impl Mlp {
    fn new(p: Path, src: &Source, s: &LlamaSpec) -> Mlp {
        Mlp {
            gate: Linear::new(&p / "gate_proj", src, Target::Gate, s.dim, s.ffn, false),
            up: Linear::new(&p / "up_proj", src, Target::Up, s.dim, s.ffn, false),
            down: Linear::new(&p / "down_proj", src, Target::Down, s.ffn, s.dim, false),
            gate_up_int8: None,
        }
    }

    fn pack_int8(&mut self) -> Result<(), String> {
        self.gate_up_int8 = Some(Fused::pack(&[&self.gate.weight, &self.up.weight], &[None, None])?);
        self.down.pack_int8()
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        if let Some(parts) = self.gate_up_int8.as_ref().and_then(|f| f.forward(x)) {
            return self.down.forward(&(parts[0].silu() * &parts[1]));
        }
        self.down.forward(&(self.gate.forward(x).silu() * self.up.forward(x)))
    }
}

pub(super) struct Block {
    attn_norm: RmsNorm,
    attn: Attention,
    mlp_norm: RmsNorm,
    mlp: Mlp,
}

impl Block {
    fn new(p: Path, src: &Source, s: &LlamaSpec) -> Block {
        Block {
            attn_norm: RmsNorm::new(&p / "input_layernorm", src, s.dim, s.norm_eps),
            attn: Attention::new(&p / "self_attn", src, s),
            mlp_norm: RmsNorm::new(&p / "post_attention_layernorm", src, s.dim, s.norm_eps),
            mlp: Mlp::new(&p / "mlp", src, s),
        }
    }

    fn pack_int8(&mut self) -> Result<(), String> {
        self.attn.pack_int8()?;
        self.mlp.pack_int8()
    }

    pub(super) fn forward(&self, x: &Tensor, rope: &(Tensor, Tensor), past: Past) -> Tensor {
        let h = x + self.attn.forward(&self.attn_norm.forward(x), rope, past);
        &h + self.mlp.forward(&self.mlp_norm.forward(&h))
    }
}

/// A llama-family decoder with its variables in `vs`. A model with a LoRA adapter keeps
/// only the adapter's matrices in `vs` (what training updates and checkpoints save) and
/// its base's tensors, shared and frozen, in `frozen`.
pub struct Llama {
    pub spec: LlamaSpec,
    pub vs: VarStore,
    pub lora: Option<LoraConfig>,
    frozen: HashMap<String, Tensor>,
    training: Rc<Cell<bool>>,
    pub(super) embed: Tensor,
    pub(super) blocks: Vec<Block>,
    norm: RmsNorm,
    /// `None` when tied to the embedding.
    head: Option<Tensor>,
    /// The head (or tied embedding) as int8, in a copy made by `int8_copy`.
    head_int8: Option<Int8Weight>,
    pub(super) rope: Rope,
    scaling: Option<Llama3Scaling>,
}

impl Llama {
    /// A model with zeroed weights, to be filled by `init` or a checkpoint. The spec must
    /// know its vocabulary size.
    pub fn new(spec: &LlamaSpec, device: Device, scaling: Option<Llama3Scaling>) -> Result<Llama, String> {
        Llama::build(spec, device, scaling, None, None)
    }

    fn build(spec: &LlamaSpec, device: Device, scaling: Option<Llama3Scaling>, base: Option<&HashMap<String, Tensor>>, lora: Option<&LoraConfig>) -> Result<Llama, String> {
        let vocab = spec.vocab.ok_or("the model's vocabulary size is not known")? as i64;
        let src = Source { base, lora, training: Rc::new(Cell::new(false)) };
        let vs = VarStore::new(device);
        let root = vs.root();
        let m = &root / "model";
        let embed = src.var(&(&m / "embed_tokens"), "weight", &[vocab, spec.dim as i64], Init::Const(0.0));
        let blocks = (0..spec.layers).map(|i| Block::new(&m / "layers" / i, &src, spec)).collect();
        let norm = RmsNorm::new(&m / "norm", &src, spec.dim, spec.norm_eps);
        let head = (!spec.tie).then(|| src.var(&(&root / "lm_head"), "weight", &[vocab, spec.dim as i64], Init::Const(0.0)));
        let rope = Rope::new(spec.head_dim(), spec.max_seq, spec.rope_theta, scaling, device);
        let frozen = base.map(|b| b.iter().map(|(n, t)| (n.clone(), t.detach())).collect()).unwrap_or_default();
        Ok(Llama { spec: spec.clone(), vs, lora: lora.cloned(), frozen, training: src.training, embed, blocks, norm, head, head_int8: None, rope, scaling })
    }

    /// This model with a fresh LoRA adapter: the base's tensors shared and frozen, A
    /// drawn as PEFT does (uniform ±1/√fan_in, from `seed`), B zero, so the adapted
    /// model starts out equal to its base.
    pub fn with_lora(&self, config: &LoraConfig, seed: u64) -> Result<Llama, String> {
        if self.lora.is_some() {
            return Err("this model already has a LoRA adapter: merge it first with merge(base, adapter)".into());
        }
        let base = self.vs.variables();
        let model = Llama::build(&self.spec, self.device(), self.scaling, Some(&base), Some(config))?;
        for (name, mut var) in model.vs.variables() {
            tch::no_grad(|| {
                if name.contains("lora_A") {
                    let fan_in = var.size()[1] as f64;
                    let data = super::init::uniform(seed, &name, var.numel(), 1.0 / fan_in.sqrt());
                    let t = Tensor::from_slice(&data).view(var.size().as_slice()).to_kind(var.kind()).to_device(var.device());
                    var.copy_(&t);
                } else {
                    let _ = var.zero_();
                }
            });
        }
        Ok(model)
    }

    /// A copy of this model for decoding on the CPU: the same f32 tensors (shared, not
    /// copied) plus an int8 copy of every linear weight and the head, which blocks of
    /// up to `int8::MAX_ROWS` rows go through (`generate(weights="int8")`).
    pub fn int8_copy(&self) -> Result<Llama, String> {
        if self.lora.is_some() {
            return Err("a model with a LoRA adapter decodes with its own weights: merge the adapter first (merge(base, adapter)), then use int8 weights".into());
        }
        if self.device() != Device::Cpu {
            return Err("int8 weights are for decoding on the CPU; on CUDA use weights=\"bf16\"".into());
        }
        let base = self.vs.variables();
        let mut copy = Llama::build(&self.spec, self.device(), self.scaling, Some(&base), None)?;
        for block in &mut copy.blocks {
            block.pack_int8()?;
        }
        copy.head_int8 = Some(Int8Weight::pack(copy.head.as_ref().unwrap_or(&copy.embed))?);
        Ok(copy)
    }

    /// Changes whenever a weight does: each variable's storage and libtorch's count of
    /// the in-place writes to it (optimizer steps, loads, merges). A copy made for
    /// decoding is reused while this stays the same.
    pub fn weights_stamp(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut vars: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for (name, t) in &vars {
            name.hash(&mut h);
            (t.data_ptr() as usize).hash(&mut h);
            t.internal_version().hash(&mut h);
        }
        h.finish()
    }

    /// Bytes of the int8 weights of a copy made by `int8_copy` (0 otherwise).
    pub fn int8_bytes(&self) -> i64 {
        let linears: i64 = self.blocks.iter().flat_map(|b| [&b.attn.o, &b.mlp.down]).filter_map(|l| l.int8.as_ref()).map(|p| p.bytes()).sum();
        let fused: i64 = self.blocks.iter().flat_map(|b| [&b.attn.qkv_int8, &b.mlp.gate_up_int8]).filter_map(|f| f.as_ref()).map(|f| f.bytes()).sum();
        linears + fused + self.head_int8.as_ref().map_or(0, |p| p.bytes())
    }

    /// The base tensors of a model with an adapter or of an int8 copy (what it shares
    /// with the model it was made from); a model's own variables otherwise.
    pub fn base_tensors(&self) -> HashMap<String, Tensor> {
        if !self.frozen.is_empty() {
            self.frozen.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
        } else {
            self.vs.variables()
        }
    }

    /// Switches adapter dropout on for training and off for everything else.
    pub fn set_training(&self, on: bool) {
        self.training.set(on);
    }

    /// A frozen copy of this model with its weights in `kind` (a bf16 teacher for a run).
    pub fn converted(&self, kind: Kind) -> Result<Llama, String> {
        if self.lora.is_some() {
            return Err("a model with a LoRA adapter keeps its precision: merge the adapter first, then convert".into());
        }
        self.frozen_copy(self.device(), kind)
    }

    /// A frozen copy of this model on `device` (`generate(device=...)` elsewhere than
    /// the model lives).
    pub fn on_device(&self, device: Device) -> Result<Llama, String> {
        if self.lora.is_some() {
            return Err("a model with a LoRA adapter runs where its base lives: merge the adapter first (merge(base, adapter)), then move it".into());
        }
        self.frozen_copy(device, self.vs.kind())
    }

    fn frozen_copy(&self, device: Device, kind: Kind) -> Result<Llama, String> {
        let mut copy = Llama::new(&self.spec, device, self.scaling)?;
        copy.vs.set_kind(kind);
        let source = self.vs.variables();
        for (name, mut var) in copy.vs.variables() {
            let src = source.get(&name).ok_or_else(|| format!("the model has no {name}"))?;
            tch::no_grad(|| var.copy_(src));
        }
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
            x = block.forward(&x, &rope, Past::growing(cache.as_deref_mut().map(|c| (c, i))));
        }
        if let Some(c) = cache {
            c.offset += t;
        }
        self.norm.forward(&x)
    }

    /// The final hidden states `[1, T, dim]` of `tokens: [1, T]` at `positions: [T]`
    /// (device int64), reading and writing a fixed-length cache. No shape depends on the
    /// position, so a decode step through here can be captured as a CUDA graph.
    pub fn hidden_at(&self, tokens: &Tensor, positions: &Tensor, cache: &mut StaticKvCache) -> Tensor {
        let mut x = Tensor::embedding(&self.embed, tokens, -1, false, false);
        let rope = self.rope.tables_at(positions, x.kind());
        let mask = cache.mask(positions);
        for (layer, block) in self.blocks.iter().enumerate() {
            x = block.forward(&x, &rope, Past::Static { cache: &mut *cache, layer, positions, mask: &mask });
        }
        self.norm.forward(&x)
    }

    /// The final hidden states `[B, T, dim]` of a batch of sequences `tokens: [B, T]`,
    /// row b at `positions[b]`, extending `cache`; `mask: [B, 1, T, cached + T]` says
    /// which keys each query sees (so left padding is never attended to).
    pub fn hidden_rows(&self, tokens: &Tensor, positions: &Tensor, cache: &mut KvCache, mask: &Tensor) -> Tensor {
        let mut x = Tensor::embedding(&self.embed, tokens, -1, false, false);
        let rope = self.rope.tables_rows(positions, x.kind());
        for (layer, block) in self.blocks.iter().enumerate() {
            x = block.forward(&x, &rope, Past::Rows { cache: &mut *cache, layer, mask });
        }
        cache.offset += tokens.size()[1];
        self.norm.forward(&x)
    }

    /// A fixed-length cache of `len` positions for this model, in its compute dtype.
    pub fn static_cache(&self, len: i64) -> StaticKvCache {
        StaticKvCache::new(self.spec.layers, self.spec.kv_heads as i64, self.spec.head_dim() as i64, len, self.embed.kind(), self.device())
    }

    /// Logits `[B, T, vocab]` and the output of every block `[B, T, dim]` (before the
    /// final norm), for hidden-state loss terms. Entry i is block i's output.
    pub fn forward_with_states(&self, tokens: &Tensor) -> (Tensor, Vec<Tensor>) {
        let t = tokens.size()[1];
        let mut x = Tensor::embedding(&self.embed, tokens, -1, false, false);
        let rope = self.rope.tables(0, t, x.kind());
        let mut states = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            x = block.forward(&x, &rope, Past::Nothing);
            states.push(x.shallow_clone());
        }
        (self.logits_of(&x), states)
    }

    /// Logits of the last block's output `[B, T, dim]`: the final norm, then the head.
    pub(super) fn logits_of(&self, x: &Tensor) -> Tensor {
        self.head(&self.norm.forward(x))
    }

    /// Whether a training forward draws random numbers (adapter dropout).
    pub fn draws_random(&self) -> bool {
        self.lora.as_ref().is_some_and(|c| c.dropout > 0.0)
    }

    /// Logits of hidden states: `[.., dim] -> [.., vocab]`.
    pub fn head(&self, hidden: &Tensor) -> Tensor {
        if let Some(y) = self.head_int8.as_ref().and_then(|p| p.forward(hidden)) {
            return y;
        }
        hidden.linear(self.head.as_ref().unwrap_or(&self.embed), None::<Tensor>)
    }

    pub fn max_seq(&self) -> i64 {
        self.rope.max_seq()
    }
}

#[cfg(test)]
impl Llama {
    /// A tiny initialised model on the CPU for unit tests: width 32, 4 query heads over 2
    /// key/value heads, a tied head.
    pub(crate) fn tiny(layers: usize, vocab: usize, max_seq: usize, seed: u64) -> Llama {
        let spec = LlamaSpec { layers, dim: 32, heads: 4, kv_heads: 2, ffn: 64, vocab: Some(vocab), tie: true, rope_theta: 10000.0, norm_eps: 1e-5, max_seq, qkv_bias: false, o_bias: false };
        let model = Llama::new(&spec, Device::Cpu, None).expect("a tiny model");
        model.init(seed);
        model
    }
}
