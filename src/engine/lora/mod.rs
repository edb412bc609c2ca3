//! LoRA adapters: low-rank pairs (A, B) beside a frozen base's linear layers, so training
//! touches a few million parameters instead of all of them (the Telugu seed's hard-set
//! replay). The adapted model itself lives in `llama::model` (`Llama::with_lora`); this
//! module holds the configuration, folding an adapter into its base (`merge`), and the
//! PEFT file layout (`peft`), so adapters travel to and from Hugging Face's peft.

pub mod peft;

use super::llama::Llama;
use std::collections::HashMap;
use tch::{Kind, Tensor};

/// The linear layers of a llama block an adapter can sit on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Target {
    pub const ALL: [Target; 7] = [Target::Q, Target::K, Target::V, Target::O, Target::Gate, Target::Up, Target::Down];

    /// The module name in Hugging Face checkpoints and in PEFT's `target_modules`.
    pub fn hf_name(self) -> &'static str {
        match self {
            Target::Q => "q_proj",
            Target::K => "k_proj",
            Target::V => "v_proj",
            Target::O => "o_proj",
            Target::Gate => "gate_proj",
            Target::Up => "up_proj",
            Target::Down => "down_proj",
        }
    }

    pub fn short(self) -> &'static str {
        self.hf_name().trim_end_matches("_proj")
    }

    /// `q`, `q_proj`; groups `all`, `attention` (q k v o) and `mlp` (gate up down).
    pub fn parse(s: &str) -> Result<Vec<Target>, String> {
        let group: &[Target] = match s {
            "all" | "all-linear" => &Target::ALL,
            "attention" | "attn" => &Target::ALL[..4],
            "mlp" => &Target::ALL[4..],
            _ => match Target::ALL.iter().find(|t| t.short() == s || t.hf_name() == s) {
                Some(t) => std::slice::from_ref(t),
                None => {
                    return Err(format!(
                        "unknown LoRA target {s:?}: use q, k, v, o, gate, up, down (or q_proj, ...), or the groups \"all\", \"attention\", \"mlp\""
                    ))
                }
            },
        };
        Ok(group.to_vec())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
    /// Sorted, without repeats.
    pub targets: Vec<Target>,
    /// rsLoRA scales by α/√r instead of α/r.
    pub rslora: bool,
}

impl LoraConfig {
    pub fn scale(&self) -> f64 {
        if self.rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }

    /// `r=16, alpha=16, targets=q,k,v,o,gate,up,down`
    pub fn describe(&self) -> String {
        let targets: Vec<&str> = self.targets.iter().map(|t| t.short()).collect();
        let mut out = format!("r={}, alpha={}", self.rank, crate::spec::fmt_num(self.alpha));
        if self.dropout > 0.0 {
            out.push_str(&format!(", dropout={}", crate::spec::fmt_num(self.dropout)));
        }
        if self.rslora {
            out.push_str(", rslora");
        }
        out.push_str(&format!(", targets={}", targets.join(",")));
        out
    }

    /// Trainable parameters the adapter adds to a model of `spec`.
    pub fn params(&self, spec: &crate::spec::LlamaSpec) -> u64 {
        let hd = spec.head_dim();
        let per_layer: usize = self
            .targets
            .iter()
            .map(|t| {
                let (inputs, outputs) = match t {
                    Target::Q => (spec.dim, spec.heads * hd),
                    Target::K | Target::V => (spec.dim, spec.kv_heads * hd),
                    Target::O => (spec.heads * hd, spec.dim),
                    Target::Gate | Target::Up => (spec.dim, spec.ffn),
                    Target::Down => (spec.ffn, spec.dim),
                };
                self.rank * (inputs + outputs)
            })
            .sum();
        (per_layer * spec.layers) as u64
    }
}

/// The base weight each adapter pair belongs to: `X.lora_A.weight` → `X.weight`.
fn base_name(lora_a: &str) -> Option<String> {
    lora_a.strip_suffix(".lora_A.weight").map(|p| format!("{p}.weight"))
}

/// A new plain model: `base`'s tensors with `adapter`'s pairs folded in,
/// W + scale·B·A, computed in f32. `base` may be the adapter's own base or another model
/// of the same architecture (an adapter loaded from disk).
pub fn merge(base: &HashMap<String, Tensor>, adapter: &Llama) -> Result<Llama, String> {
    let config = adapter.lora.as_ref().ok_or("this model has no LoRA adapter to merge")?;
    let merged = Llama::new(&adapter.spec, adapter.device(), adapter.scaling())?;
    let pairs = adapter.vs.variables();
    let mut folded = 0;
    for (name, mut var) in merged.vs.variables() {
        let src = base.get(&name).ok_or_else(|| format!("the base model has no {name}: the adapter was made for another architecture"))?;
        if src.size() != var.size() {
            return Err(format!("the base's {name} has shape {:?}, the adapter expects {:?}: the adapter was made for another model", src.size(), var.size()));
        }
        let mut w = src.to_kind(Kind::Float).to_device(var.device());
        if let Some(prefix) = name.strip_suffix(".weight") {
            if let (Some(a), Some(b)) = (pairs.get(&format!("{prefix}.lora_A.weight")), pairs.get(&format!("{prefix}.lora_B.weight"))) {
                w = w + b.to_kind(Kind::Float).matmul(&a.to_kind(Kind::Float)) * config.scale();
                folded += 1;
            }
        }
        tch::no_grad(|| var.copy_(&w));
    }
    let expected = pairs.keys().filter(|n| base_name(n).is_some()).count();
    if folded != expected {
        return Err(format!("only {folded} of the adapter's {expected} pairs found a layer to merge into"));
    }
    Ok(merged)
}
