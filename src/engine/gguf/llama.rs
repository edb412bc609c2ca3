//! GGUF tensors into kdl's llama: llama.cpp's names mapped to the Hugging Face names the
//! model's variables carry, ggml's fastest-first dims turned into torch shapes, blocks
//! dequantized (`dequant`), and llama.cpp's q/k row permutation undone. Every mismatch is
//! one line naming the file and the tensor, as `checkpoint::load_hf_dir` reports them.

use super::dequant::{dequantize, GgmlType};
use super::reader::{shown, Gguf, TensorInfo};
use crate::engine::llama::Llama;
use std::collections::HashSet;
use tch::Tensor;

/// Per-block GGUF names and their Hugging Face counterparts under `model.layers.N.`.
const BLOCK_PARTS: [(&str, &str); 9] = [
    ("attn_norm", "input_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_norm", "post_attention_layernorm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

/// Whole-model tensors: GGUF names and their Hugging Face counterparts.
const MODEL_PARTS: [(&str, &str); 3] = [("token_embd.weight", "model.embed_tokens.weight"), ("output_norm.weight", "model.norm.weight"), ("output.weight", "lm_head.weight")];

/// Rotary tables and frequency factors: recomputed from the metadata, never loaded.
fn is_rope_table(name: &str) -> bool {
    let last = name.rsplit_once("blk.").map_or(name, |(_, rest)| rest.split_once('.').map_or(rest, |(_, r)| r));
    last.starts_with("rope_") || last.starts_with("attn_rot_embd")
}

/// The Hugging Face name of a llama.cpp tensor, if it is one llama has.
pub fn hf_name(gguf: &str) -> Option<String> {
    if let Some((_, hf)) = MODEL_PARTS.iter().find(|(g, _)| *g == gguf) {
        return Some(hf.to_string());
    }
    let (layer, rest) = gguf.strip_prefix("blk.")?.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (part, kind) = rest.split_once('.')?;
    if kind != "weight" && kind != "bias" {
        return None;
    }
    let (_, hf) = BLOCK_PARTS.iter().find(|(g, _)| *g == part)?;
    Some(format!("model.layers.{layer}.{hf}.{kind}"))
}

/// The llama.cpp name of a Hugging Face tensor name, the inverse of `hf_name`.
pub fn gguf_name(hf: &str) -> Option<String> {
    if let Some((g, _)) = MODEL_PARTS.iter().find(|(_, h)| *h == hf) {
        return Some(g.to_string());
    }
    let (layer, rest) = hf.strip_prefix("model.layers.")?.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (part, kind) = rest.rsplit_once('.')?;
    let (g, _) = BLOCK_PARTS.iter().find(|(_, h)| *h == part)?;
    Some(format!("blk.{layer}.{g}.{kind}"))
}

/// llama.cpp's converter interleaves each head's rows so its rotary pairs are adjacent
/// (`reshape(h, 2, r/h/2, c).swapaxes(1, 2)`); this puts the halves back for HF's
/// rotate-half. A bias is the one-column case.
fn unpermute(t: &Tensor, heads: i64) -> Tensor {
    let shape = t.size();
    let rows = shape[0];
    let cols: i64 = shape[1..].iter().product();
    t.reshape([heads, rows / heads / 2, 2, cols]).transpose(1, 2).reshape(shape.as_slice())
}

/// llama.cpp's permutation of q/k rows, as convert_hf_to_gguf.py applies it, for writing.
pub fn permute(t: &Tensor, heads: i64) -> Tensor {
    let shape = t.size();
    let rows = shape[0];
    let cols: i64 = shape[1..].iter().product();
    t.reshape([heads, 2, rows / heads / 2, cols]).transpose(1, 2).reshape(shape.as_slice())
}

/// How many heads a tensor's rows were permuted over, for q and k.
pub fn permuted_heads(gguf: &str, model: &Llama) -> Option<i64> {
    let part = gguf.split('.').nth(2)?;
    match part {
        "attn_q" => Some(model.spec.heads as i64),
        "attn_k" => Some(model.spec.kv_heads as i64),
        _ => None,
    }
}

/// The tensor as f32 values, or the one-line reason it cannot be read.
fn read_values(g: &Gguf, info: &TensorInfo, file: &str) -> Result<Vec<f32>, String> {
    let unreadable = || {
        format!("{file}: tensor {} is {}, which kdl cannot dequantize (kdl reads {})", shown(&info.name), info.ty.name(), GgmlType::READABLE)
    };
    let bytes = g.tensor_bytes(info).ok_or_else(unreadable)?;
    dequantize(info.ty, bytes, info.elements() as usize).ok_or_else(unreadable)
}

/// Copies every tensor of `g` into `model`'s variables.
pub fn load_weights(g: &Gguf, model: &Llama, file: &str) -> Result<(), String> {
    let mut vars = model.vs.variables();
    let mut seen = HashSet::new();
    for info in &g.tensors {
        if is_rope_table(&info.name) {
            continue;
        }
        let unexpected = || format!("{file}: unexpected tensor {} (not part of a llama model of this shape)", shown(&info.name));
        let name = hf_name(&info.name).ok_or_else(unexpected)?;
        let var = vars.get_mut(&name).ok_or_else(unexpected)?;
        let shape = info.torch_shape();
        if shape != var.size() {
            return Err(format!("{file}: tensor {} ({name}) has shape {shape:?}, the metadata says {:?}", shown(&info.name), var.size()));
        }
        let values = read_values(g, info, file)?;
        let mut t = Tensor::from_slice(&values).view(shape.as_slice());
        drop(values);
        if let Some(heads) = permuted_heads(&info.name, model) {
            t = unpermute(&t, heads);
        }
        tch::no_grad(|| var.copy_(&t.to_kind(var.kind()).to_device(var.device())));
        seen.insert(name);
    }
    let mut missing: Vec<&String> = vars.keys().filter(|k| !seen.contains(*k)).collect();
    missing.sort();
    if let Some(first) = missing.first() {
        let more = if missing.len() > 1 { format!(" (and {} more)", missing.len() - 1) } else { String::new() };
        return Err(format!("{file}: missing tensor {first}{more}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn llama_cpp_names_map_to_hugging_face_names() {
        assert_eq!(hf_name("blk.12.attn_q.weight").as_deref(), Some("model.layers.12.self_attn.q_proj.weight"));
        assert_eq!(hf_name("blk.0.ffn_norm.weight").as_deref(), Some("model.layers.0.post_attention_layernorm.weight"));
        assert_eq!(hf_name("blk.3.attn_k.bias").as_deref(), Some("model.layers.3.self_attn.k_proj.bias"));
        assert_eq!(hf_name("output.weight").as_deref(), Some("lm_head.weight"));
        assert_eq!(hf_name("blk.x.attn_q.weight"), None);
        assert_eq!(hf_name("blk.0.attn_q.scale"), None);
        for name in ["blk.12.attn_q.weight", "blk.0.ffn_norm.weight", "blk.3.attn_k.bias", "output.weight", "token_embd.weight", "output_norm.weight"] {
            assert_eq!(gguf_name(&hf_name(name).unwrap()).as_deref(), Some(name));
        }
        assert_eq!(gguf_name("model.layers.0.self_attn.q_proj.lora_A.weight"), None);
        assert!(is_rope_table("rope_freqs.weight") && is_rope_table("blk.0.attn_rot_embd") && !is_rope_table("blk.0.attn_q.weight"));
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // llama.cpp: w.reshape(h, 2, r/h/2, c).swapaxes(1, 2).reshape(r, c)
        let (h, r, c) = (3, 12, 5);
        let hf = Tensor::arange(r * c, (Kind::Float, tch::Device::Cpu)).view([r, c]);
        let permuted = hf.reshape([h, 2, r / h / 2, c]).transpose(1, 2).reshape([r, c]);
        assert!(permute(&hf, h).equal(&permuted));
        assert!(unpermute(&permuted, h).equal(&hf));
        let bias = Tensor::arange(r, (Kind::Float, tch::Device::Cpu));
        let permuted = bias.reshape([h, 2, r / h / 2]).transpose(1, 2).reshape([r]);
        assert!(unpermute(&permuted, h).equal(&bias));
    }
}
