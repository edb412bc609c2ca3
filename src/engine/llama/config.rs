//! The architecture as Hugging Face writes it in `config.json`, and its translation to and
//! from kdl's `LlamaSpec`. Older configs put `rope_theta` at the top level; newer ones
//! (transformers 5) put it under `rope_parameters`; both are read.

use crate::spec::LlamaSpec;
use serde::Deserialize;
use serde_json::Value as Json;

#[derive(Debug, Clone, Deserialize)]
pub struct HfConfig {
    #[serde(default)]
    pub architectures: Vec<String>,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: Option<usize>,
    pub head_dim: Option<usize>,
    pub vocab_size: usize,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    pub rope_theta: Option<f64>,
    pub rope_parameters: Option<Json>,
    pub rope_scaling: Option<Json>,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    pub attention_bias: Option<bool>,
    #[serde(default = "default_max_seq")]
    pub max_position_embeddings: usize,
}

fn default_eps() -> f64 {
    1e-6
}

fn default_max_seq() -> usize {
    2048
}

/// Architectures whose checkpoints are llama-shaped.
pub const SUPPORTED: [&str; 3] = ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"];

impl HfConfig {
    pub fn from_json(text: &str) -> Result<HfConfig, String> {
        serde_json::from_str(text).map_err(|e| format!("config.json is not a llama-style config: {e}"))
    }

    pub fn architecture(&self) -> &str {
        self.architectures.first().map(|s| s.as_str()).unwrap_or("LlamaForCausalLM")
    }

    fn rope_field(&self, key: &str) -> Option<f64> {
        self.rope_parameters.as_ref().and_then(|p| p.get(key)).and_then(|v| v.as_f64())
    }

    pub fn theta(&self) -> f64 {
        self.rope_theta.or_else(|| self.rope_field("rope_theta")).unwrap_or(10000.0)
    }

    /// Llama-3 style frequency scaling, when the config asks for it.
    pub fn llama3_scaling(&self) -> Option<Llama3Scaling> {
        let p = self.rope_scaling.as_ref().or(self.rope_parameters.as_ref())?;
        let kind = p.get("rope_type").or_else(|| p.get("type")).and_then(|v| v.as_str())?;
        if kind != "llama3" {
            return None;
        }
        let f = |k: &str, d: f64| p.get(k).and_then(|v| v.as_f64()).unwrap_or(d);
        Some(Llama3Scaling {
            factor: f("factor", 8.0),
            low_freq_factor: f("low_freq_factor", 1.0),
            high_freq_factor: f("high_freq_factor", 4.0),
            original_max_position: f("original_max_position_embeddings", 8192.0),
        })
    }

    pub fn to_spec(&self) -> LlamaSpec {
        let heads = self.num_attention_heads;
        LlamaSpec {
            layers: self.num_hidden_layers,
            dim: self.hidden_size,
            heads,
            kv_heads: self.num_key_value_heads.unwrap_or(heads),
            ffn: self.intermediate_size,
            vocab: Some(self.vocab_size),
            tie: self.tie_word_embeddings,
            rope_theta: self.theta(),
            norm_eps: self.rms_norm_eps,
            max_seq: self.max_position_embeddings,
            // Qwen2 always has q/k/v bias and no output bias; llama/mistral's
            // attention_bias puts a bias on all four projections.
            qkv_bias: self.attention_bias.unwrap_or(false) || self.architecture() == "Qwen2ForCausalLM",
            o_bias: self.attention_bias.unwrap_or(false) && self.architecture() != "Qwen2ForCausalLM",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3Scaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position: f64,
}
