//! The architecture as llama.cpp writes it in GGUF metadata (`llama.block_count`, ...),
//! translated to kdl's `LlamaSpec` and rope scaling. Whatever kdl's llama cannot
//! reproduce (per-layer head counts, partial rotary, YaRN) is a one-line error here,
//! before any weight is touched. `llama` then fills the model this describes.

use super::reader::{shown, Gguf};
use crate::engine::llama::config::Llama3Scaling;
use crate::engine::llama::rope::inverse_frequencies;
use crate::spec::LlamaSpec;

/// `general.architecture` values whose tensors and metadata are llama's.
pub const ARCHITECTURES: [&str; 2] = ["llama", "mistral"];
/// llama.cpp's defaults for keys older converters left out.
const DEFAULT_THETA: f64 = 10000.0;
const DEFAULT_EPS: f64 = 1e-5;
const DEFAULT_CONTEXT: u64 = 2048;
/// Rotary tables (cos and sin, f32) are built for the whole context: 2^27 entries is a
/// million positions of 128-wide heads, 1 GB; more only a damaged file asks for.
const MAX_ROPE_ENTRIES: u64 = 1 << 27;
/// Tensors each llama block has at least (two norms, four attention, three MLP).
const TENSORS_PER_BLOCK: usize = 9;
/// Every type kdl reads spends more than half a byte per element (Q4_0 and Q4_K: 4.5
/// bits), so a file of N bytes holds fewer than 2N weights. Checked before allocating.
const MAX_ELEMENTS_PER_BYTE: u64 = 2;
/// Llama-3.1's published scaling, the only one llama.cpp bakes into `rope_freqs.weight`.
const LLAMA3_LOW_FREQ_FACTOR: f64 = 1.0;
const LLAMA3_HIGH_FREQ_FACTOR: f64 = 4.0;
const LLAMA3_ORIGINAL_CONTEXT: f64 = 8192.0;
/// How closely a `rope_freqs` table must match the llama-3 rule it is taken for.
const ROPE_FREQS_TOLERANCE: f64 = 1e-3;

/// Reads metadata under the architecture's prefix (`llama.` or `mistral.`).
struct Keys<'a> {
    g: &'a Gguf,
    arch: &'a str,
}

impl Keys<'_> {
    fn key(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.arch)
    }

    fn count(&self, suffix: &str, default: Option<u64>) -> Result<u64, String> {
        let key = self.key(suffix);
        match self.g.get(&key) {
            None => default.ok_or_else(|| format!("metadata {key} is missing")),
            Some(v) if v.as_array().is_some() => Err(format!("metadata {key} is a per-layer list, which kdl's llama does not support")),
            Some(v) => v.as_u64().ok_or_else(|| format!("metadata {key} is {}, not a count", v.brief())),
        }
    }

    fn float(&self, suffix: &str, default: f64) -> Result<f64, String> {
        let key = self.key(suffix);
        match self.g.get(&key) {
            None => Ok(default),
            Some(v) => v.as_f64().filter(|x| x.is_finite()).ok_or_else(|| format!("metadata {key} is {}, not a number", v.brief())),
        }
    }
}

/// The architecture name, checked to be one kdl reads.
pub fn architecture(g: &Gguf) -> Result<String, String> {
    let arch = g.get("general.architecture").and_then(|v| v.as_str()).ok_or("no general.architecture in the metadata")?;
    if !ARCHITECTURES.contains(&arch) {
        return Err(format!("architecture {} is not supported (kdl reads GGUF {})", shown(arch), ARCHITECTURES.join(", ")));
    }
    Ok(arch.to_string())
}

/// The model the metadata and tensor index describe, and its rope scaling.
pub fn spec_of(g: &Gguf, arch: &str, file_len: u64) -> Result<(LlamaSpec, Option<Llama3Scaling>), String> {
    let k = Keys { g, arch };
    let to_usize = |v: u64, what: &str| usize::try_from(v).map_err(|_| format!("{what} {v} is too large"));
    let layers = to_usize(k.count("block_count", None)?, "block_count")?;
    let dim = to_usize(k.count("embedding_length", None)?, "embedding_length")?;
    let heads = to_usize(k.count("attention.head_count", None)?, "head_count")?;
    let kv_heads = to_usize(k.count("attention.head_count_kv", Some(heads as u64))?, "head_count_kv")?;
    let ffn = to_usize(k.count("feed_forward_length", None)?, "feed_forward_length")?;
    let context = k.count("context_length", Some(DEFAULT_CONTEXT))?;
    if dim == 0 || heads == 0 || kv_heads == 0 || dim % heads != 0 || heads % kv_heads != 0 || (dim / heads) % 2 != 0 {
        return Err(format!("{dim} wide with {heads} heads and {kv_heads} key/value heads is not a llama attention layout"));
    }
    let head_dim = dim / heads;
    for key in ["attention.key_length", "attention.value_length", "rope.dimension_count"] {
        let given = k.count(key, Some(head_dim as u64))?;
        if given != head_dim as u64 {
            return Err(format!("metadata {} is {given}, but kdl's llama needs embedding_length / head_count = {head_dim}", k.key(key)));
        }
    }
    if context == 0 || context.saturating_mul(head_dim as u64) > MAX_ROPE_ENTRIES {
        return Err(format!("metadata {} is {context}; kdl's rotary tables hold at most {MAX_ROPE_ENTRIES} position x head-width entries", k.key("context_length")));
    }
    if layers.saturating_mul(TENSORS_PER_BLOCK) > g.tensors.len() {
        return Err(format!("metadata {} is {layers}, but the file holds only {} tensors", k.key("block_count"), g.tensors.len()));
    }
    let embed = g.tensor("token_embd.weight").ok_or("missing tensor token_embd.weight")?;
    let vocab = match embed.dims.as_slice() {
        [_, v] => to_usize(*v, "vocabulary")?,
        dims => return Err(format!("tensor token_embd.weight has dimensions {dims:?}, not [embedding_length, vocab]")),
    };
    let spec = LlamaSpec {
        layers,
        dim,
        heads,
        kv_heads,
        ffn,
        vocab: Some(vocab),
        tie: g.tensor("output.weight").is_none(),
        rope_theta: k.float("rope.freq_base", DEFAULT_THETA)?,
        norm_eps: k.float("attention.layer_norm_rms_epsilon", DEFAULT_EPS)?,
        max_seq: context as usize,
        qkv_bias: g.tensor("blk.0.attn_q.bias").is_some(),
        o_bias: g.tensor("blk.0.attn_output.bias").is_some(),
    };
    let params = spec.params().unwrap_or(u64::MAX);
    if params / MAX_ELEMENTS_PER_BYTE > file_len {
        return Err(format!("the metadata describes {params} weights, more than a {file_len}-byte file can hold"));
    }
    let scaling = scaling(g, &k, &spec)?;
    Ok((spec, scaling))
}

/// Rope scaling kdl's rotary tables can express: linear (every frequency divided by the
/// factor) and llama-3's (which llama.cpp stores as the `rope_freqs.weight` divisors).
fn scaling(g: &Gguf, k: &Keys, spec: &LlamaSpec) -> Result<Option<Llama3Scaling>, String> {
    if let Some(table) = g.tensor("rope_freqs.weight") {
        let bytes = g.tensor_bytes(table).ok_or("tensor rope_freqs.weight is not a type kdl reads")?;
        let n = table.elements() as usize;
        let divisors = super::dequant::dequantize(table.ty, bytes, n).ok_or("tensor rope_freqs.weight is not a type kdl reads")?;
        let factor = k.g.get(&k.key("rope.scaling.factor")).and_then(|v| v.as_f64());
        let original = k.g.get(&k.key("rope.scaling.original_context_length")).and_then(|v| v.as_f64());
        return llama3_from_divisors(&divisors, spec, factor, original).map(Some);
    }
    let key = k.key("rope.scaling.type");
    match k.g.get(&key).map(|v| v.as_str()) {
        None | Some(Some("none")) => Ok(None),
        Some(Some("linear")) => {
            let factor = k.float("rope.scaling.factor", 1.0)?;
            // With an original context of 1 position every wavelength (at least 2π) counts
            // as long, so the llama-3 rule divides every frequency by the factor.
            Ok((factor != 1.0).then_some(Llama3Scaling { factor, low_freq_factor: 1.0, high_freq_factor: 2.0, original_max_position: 1.0 }))
        }
        Some(Some(other)) => Err(format!("metadata {key} is {}, which kdl's rotary embedding cannot reproduce (it reads none, linear and llama-3)", shown(other))),
        Some(None) => Err(format!("metadata {key} is not a string")),
    }
}

/// The llama-3 scaling whose frequency divisors are `divisors`, the factor and original
/// context taken from the metadata when it has them.
fn llama3_from_divisors(divisors: &[f32], spec: &LlamaSpec, factor: Option<f64>, original: Option<f64>) -> Result<Llama3Scaling, String> {
    let head_dim = spec.head_dim();
    if divisors.len() != head_dim / 2 {
        return Err(format!("tensor rope_freqs.weight has {} entries, the head width {head_dim} needs {}", divisors.len(), head_dim / 2));
    }
    let largest = divisors.iter().fold(1.0f64, |m, &d| m.max(d as f64));
    let scaling = Llama3Scaling {
        factor: factor.unwrap_or(largest),
        low_freq_factor: LLAMA3_LOW_FREQ_FACTOR,
        high_freq_factor: LLAMA3_HIGH_FREQ_FACTOR,
        original_max_position: original.unwrap_or(LLAMA3_ORIGINAL_CONTEXT),
    };
    let plain = inverse_frequencies(head_dim, spec.rope_theta, None);
    let scaled = inverse_frequencies(head_dim, spec.rope_theta, Some(scaling));
    let fits = plain.iter().zip(&scaled).zip(divisors).all(|((p, s), &d)| ((p / s) - d as f64).abs() <= ROPE_FREQS_TOLERANCE * d.abs() as f64);
    if !fits {
        return Err("tensor rope_freqs.weight is not llama-3.1's frequency scaling, the only one kdl reproduces".into());
    }
    Ok(scaling)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> LlamaSpec {
        LlamaSpec {
            layers: 1, dim: 2048, heads: 16, kv_heads: 4, ffn: 8192, vocab: Some(128), tie: true,
            rope_theta: 500000.0, norm_eps: 1e-5, max_seq: 8192, qkv_bias: false, o_bias: false,
        }
    }

    #[test]
    fn rope_freqs_table_of_llama_3_1_is_recognised() {
        let s = spec();
        let want = Llama3Scaling { factor: 32.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position: 8192.0 };
        let plain = inverse_frequencies(s.head_dim(), s.rope_theta, None);
        let scaled = inverse_frequencies(s.head_dim(), s.rope_theta, Some(want));
        let divisors: Vec<f32> = plain.iter().zip(&scaled).map(|(p, q)| (p / q) as f32).collect();
        assert_eq!(llama3_from_divisors(&divisors, &s, None, None), Ok(want));
        let mut off = divisors.clone();
        off[40] *= 1.5;
        assert!(llama3_from_divisors(&off, &s, None, None).is_err());
        assert!(llama3_from_divisors(&divisors[1..], &s, None, None).is_err());
    }
}
