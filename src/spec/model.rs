//! The llama-family architecture spec: what `llama(...)` builds, with the usual rules for
//! whatever is left out, and its exact parameter count.

use super::{fmt_count, fmt_num};
use serde_json::json;

/// Width of one attention head when `heads` is not given.
pub const DEFAULT_HEAD_DIM: usize = 64;
/// SwiGLU hidden width is rounded up to a multiple of this.
pub const FFN_MULTIPLE: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub struct LlamaSpec {
    pub layers: usize,
    pub dim: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub ffn: usize,
    /// Unknown until a tokenizer or teacher supplies it.
    pub vocab: Option<usize>,
    pub tie: bool,
    pub rope_theta: f64,
    pub norm_eps: f64,
    pub max_seq: usize,
    pub qkv_bias: bool,
    /// Bias on the attention output too (llama's `attention_bias`; Qwen2 has none).
    pub o_bias: bool,
}

/// The SwiGLU rule: 2/3 of 4·dim, rounded up to a multiple of 64 (512 -> 1408).
pub fn swiglu_hidden(dim: usize) -> usize {
    let raw = dim.saturating_mul(8).div_ceil(3);
    raw.div_ceil(FFN_MULTIPLE).saturating_mul(FFN_MULTIPLE)
}

impl LlamaSpec {
    pub fn head_dim(&self) -> usize {
        self.dim / self.heads.max(1)
    }

    /// Parameters excluding the embedding and output head.
    pub fn body_params(&self) -> u64 {
        // u128: absurd sizes saturate instead of overflowing.
        let (d, hd) = (self.dim as u128, self.head_dim() as u128);
        let q = d * self.heads as u128 * hd;
        let kv = 2 * d * self.kv_heads as u128 * hd;
        let o = self.heads as u128 * hd * d;
        let bias = if self.qkv_bias { (self.heads as u128 + 2 * self.kv_heads as u128) * hd } else { 0 }
            + if self.o_bias { d } else { 0 };
        let mlp = 3 * d * self.ffn as u128;
        let norms = 2 * d;
        (self.layers as u128 * (q + kv + o + bias + mlp + norms) + d).min(u64::MAX as u128) as u64
    }

    /// Parameters of embedding + head per vocabulary entry.
    pub fn params_per_token(&self) -> u64 {
        if self.tie {
            self.dim as u64
        } else {
            2 * self.dim as u64
        }
    }

    pub fn params(&self) -> Option<u64> {
        self.vocab.map(|v| self.body_params().saturating_add((v as u64).saturating_mul(self.params_per_token())))
    }

    pub fn with_vocab(&self, vocab: usize) -> LlamaSpec {
        LlamaSpec { vocab: Some(vocab), ..self.clone() }
    }

    /// The Hugging Face `config.json` for LlamaForCausalLM.
    pub fn hf_config(&self) -> serde_json::Value {
        // q/k/v bias without an output bias is Qwen2's layout; llama biases all four.
        let qwen2 = self.qkv_bias && !self.o_bias;
        json!({
            "architectures": [if qwen2 { "Qwen2ForCausalLM" } else { "LlamaForCausalLM" }],
            "model_type": if qwen2 { "qwen2" } else { "llama" },
            "hidden_size": self.dim,
            "intermediate_size": self.ffn,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "head_dim": self.head_dim(),
            "vocab_size": self.vocab,
            "tie_word_embeddings": self.tie,
            "rope_theta": self.rope_theta,
            "rms_norm_eps": self.norm_eps,
            "max_position_embeddings": self.max_seq,
            "attention_bias": self.qkv_bias && self.o_bias,
            "hidden_act": "silu",
            "torch_dtype": "float32",
        })
    }

    pub fn one_line(&self) -> String {
        format!(
            "llama(layers={}, dim={}, heads={}, kv_heads={}, ffn={}, vocab={})",
            self.layers,
            self.dim,
            self.heads,
            self.kv_heads,
            self.ffn,
            self.vocab.map(|v| v.to_string()).unwrap_or_else(|| "?".into())
        )
    }

    /// The multi-line view `print student` shows.
    pub fn describe(&self) -> String {
        let params = match self.params() {
            Some(p) => format!("{} ({})", group_digits(p), fmt_count(p)),
            None => format!(
                "{} + {}·vocab (vocab not known yet: set a tokenizer or teacher, or pass vocab=)",
                group_digits(self.body_params()),
                self.params_per_token()
            ),
        };
        let rows = [
            ("layers", self.layers.to_string()),
            ("dim", self.dim.to_string()),
            ("heads", format!("{} (head_dim {})", self.heads, self.head_dim())),
            ("kv_heads", format!("{}{}", self.kv_heads, if self.kv_heads < self.heads { " (grouped-query)" } else { "" })),
            ("ffn", format!("{} (SwiGLU)", self.ffn)),
            ("vocab", self.vocab.map(|v| v.to_string()).unwrap_or_else(|| "? (from tokenizer or teacher)".into())),
            ("tied", self.tie.to_string()),
            ("rope_theta", fmt_num(self.rope_theta)),
            ("norm_eps", fmt_num(self.norm_eps)),
            ("max_seq", self.max_seq.to_string()),
            ("qkv_bias", self.qkv_bias.to_string()),
            ("params", params),
        ];
        let mut out = String::from("llama\n");
        for (k, v) in rows {
            out.push_str(&format!("  {k:<10} {v}\n"));
        }
        out.pop();
        out
    }
}

/// `52228608` -> `52,228,608`.
pub fn group_digits(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(layers: usize, dim: usize, ffn: usize, vocab: usize, tie: bool) -> LlamaSpec {
        LlamaSpec {
            layers,
            dim,
            heads: dim / 64,
            kv_heads: dim / 64,
            ffn,
            vocab: Some(vocab),
            tie,
            rope_theta: 10000.0,
            norm_eps: 1e-5,
            max_seq: 2048,
            qkv_bias: false,
            o_bias: false,
        }
    }

    #[test]
    fn swiglu_rule_matches_llama_recipe_rounded_to_64() {
        assert_eq!(swiglu_hidden(512), 1408);
        assert_eq!(swiglu_hidden(768), 2048);
        assert_eq!(swiglu_hidden(576), 1536);
    }

    #[test]
    fn smollm2_135m_parameter_count_is_exact() {
        let s = LlamaSpec { heads: 9, kv_heads: 3, ..spec(30, 576, 1536, 49152, true) };
        assert_eq!(s.params(), Some(134_515_008));
    }

    #[test]
    fn telugu_seed_sizes() {
        let teacher = spec(16, 1024, 2816, 51_800, false).params().unwrap();
        assert!((290_000_000..320_000_000).contains(&teacher), "{teacher}");
        let s50 = spec(8, 512, 1408, 51_800, true).params().unwrap();
        assert!((48_000_000..56_000_000).contains(&s50), "{s50}");
    }
}
