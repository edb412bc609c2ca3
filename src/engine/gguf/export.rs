//! A kdl llama as a GGUF file llama.cpp, transformers and kdl itself load: the tensors
//! under llama.cpp's names, q/k rows permuted as convert_hf_to_gguf.py permutes them,
//! each 2-D weight in the file type's block format (`quant`) and 1-D tensors in f32, the
//! llama metadata and the tokenizer (`vocab_out`). A tied output head is left out, as
//! llama.cpp expects. The file is written atomically: a failed export leaves nothing.

use super::dequant::GgmlType;
use super::llama::{gguf_name, permute, permuted_heads};
use super::reader::Value;
use super::vocab_out::{self, Specials};
use super::writer::{self, TensorOut};
use crate::engine::llama::rope::inverse_frequencies;
use crate::engine::llama::Llama;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// What a GGUF export's 2-D weights are stored as (llama.cpp's `--outtype` / ftype).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    /// llama-quantize's Q4_K_M: Q4_K, with Q6_K for the head and for attn_v and
    /// ffn_down on a third of the layers.
    Q4KM,
    Q6K,
}

impl FileType {
    pub const NAMES: &'static str = "f32, f16, bf16, q8_0, q6_k, q4_k_m, q4_0";

    pub fn parse(name: &str) -> Result<FileType, String> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "f32" => FileType::F32,
            "f16" => FileType::F16,
            "bf16" => FileType::BF16,
            "q8_0" => FileType::Q8_0,
            "q4_0" => FileType::Q4_0,
            "q4_k_m" => FileType::Q4KM,
            "q6_k" => FileType::Q6K,
            k if ["q2_k", "q3_k", "q4_k", "q5_k"].iter().any(|p| k.starts_with(p)) => {
                return Err(format!("kdl writes the K-quant mixes q4_k_m and q6_k, not {name}: export f16 and run llama.cpp's llama-quantize for the others"))
            }
            _ => return Err(format!("unknown GGUF type {name:?}: kdl writes {}", FileType::NAMES)),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            FileType::F32 => "f32",
            FileType::F16 => "f16",
            FileType::BF16 => "bf16",
            FileType::Q8_0 => "q8_0",
            FileType::Q4_0 => "q4_0",
            FileType::Q4KM => "q4_k_m",
            FileType::Q6K => "q6_k",
        }
    }

    /// `general.file_type` (llama_ftype: note Q8_0 is 7 there, 8 as a tensor type).
    fn llama_ftype(self) -> u32 {
        match self {
            FileType::F32 => 0,
            FileType::F16 => 1,
            FileType::Q4_0 => 2,
            FileType::Q8_0 => 7,
            FileType::BF16 => 32,
            FileType::Q4KM => 15,
            FileType::Q6K => 18,
        }
    }

    fn tensor_type(self) -> GgmlType {
        match self {
            FileType::F32 => GgmlType::F32,
            FileType::F16 => GgmlType::F16,
            FileType::BF16 => GgmlType::BF16,
            FileType::Q8_0 => GgmlType::Q8_0,
            FileType::Q4_0 => GgmlType::Q4_0,
            FileType::Q4KM => GgmlType::Q4_K,
            FileType::Q6K => GgmlType::Q6_K,
        }
    }

    /// Whether llama-quantize makes this type (rather than the converter): its rules
    /// for the head and the K-quant fallbacks apply.
    fn quantized(self) -> bool {
        matches!(self, FileType::Q4_0 | FileType::Q4KM | FileType::Q6K)
    }
}

/// What an export wrote.
pub struct Exported {
    pub bytes: u64,
    /// Bits per weight over every tensor's data.
    pub bits_per_weight: f64,
    /// Tensors per type, most common first: "169 Q8_0, 61 F32".
    pub types: String,
    /// Tensors that fell back to another type, and why.
    pub notes: Vec<String>,
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers and every
/// third one between get the bigger type in the _M mixes.
fn use_more_bits(layer: usize, layers: usize) -> bool {
    layer < layers / 8 || layer >= 7 * layers / 8 || (layer as i64 - (layers / 8) as i64).rem_euclid(3) == 2
}

/// The tensor type of one weight, by llama-quantize's rules (llama-quant.cpp,
/// `llama_tensor_get_type`) for the quantized types: 1-D tensors stay f32; the output
/// head (or the tied embedding that serves as it) is Q6_K where its rows fit the file
/// type's blocks and Q8_0 where not; Q4_K_M gives attn_v and ffn_down Q6_K on the
/// `use_more_bits` layers; a K-quant whose rows are not whole 256-value super-blocks
/// falls back (Q4_K to Q5_0, Q6_K to Q8_0), and rows that fit no block are F16.
fn choose(ft: FileType, name: &str, shape: &[i64], tied: bool, layers: usize, fallbacks: &mut Vec<Fallback>) -> GgmlType {
    if shape.len() < 2 {
        return GgmlType::F32;
    }
    let row = shape[shape.len() - 1] as usize;
    let block = |ty: GgmlType| ty.block().map_or(1, |(b, _)| b);
    let head = name == "output.weight" || (tied && name == "token_embd.weight");
    let layer = name.strip_prefix("blk.").and_then(|r| r.split('.').next()).and_then(|l| l.parse::<usize>().ok());
    let mut ty = ft.tensor_type();
    if ft.quantized() && head {
        ty = if row % block(ty) != 0 { GgmlType::Q8_0 } else { GgmlType::Q6_K };
    } else if ft == FileType::Q4KM && (name.ends_with(".attn_v.weight") || name.ends_with(".ffn_down.weight")) && layer.is_some_and(|i| use_more_bits(i, layers)) {
        ty = GgmlType::Q6_K;
    }
    if matches!(ty, GgmlType::Q4_K | GgmlType::Q6_K) && row % block(ty) != 0 {
        let fallback = if ty == GgmlType::Q4_K { GgmlType::Q5_0 } else { GgmlType::Q8_0 };
        let fallback = if row % block(fallback) != 0 { GgmlType::F16 } else { fallback };
        fallbacks.push(Fallback { name: name.to_string(), row, from: ty, to: fallback });
        return fallback;
    }
    if row % block(ty) != 0 {
        fallbacks.push(Fallback { name: name.to_string(), row, from: ty, to: GgmlType::F16 });
        return GgmlType::F16;
    }
    ty
}

/// A tensor written in another type than the file's because its rows do not fit.
struct Fallback {
    name: String,
    row: usize,
    from: GgmlType,
    to: GgmlType,
}

/// One note per kind of fallback, naming the first tensors: a 30-layer model has a
/// hundred tensors of the same width, and one line says it.
fn fallback_notes(fallbacks: &[Fallback]) -> Vec<String> {
    let mut kinds: std::collections::BTreeMap<(usize, GgmlType, GgmlType), Vec<&str>> = Default::default();
    for f in fallbacks {
        kinds.entry((f.row, f.from, f.to)).or_default().push(f.name.as_str());
    }
    kinds
        .into_iter()
        .map(|((row, from, to), names)| {
            let shown = if names.len() > 3 { format!("{}, ...", names[..3].join(", ")) } else { names.join(", ") };
            let (block, _) = from.block().unwrap_or((1, 0));
            let unit = if block == super::kquant::QK_K { "super-blocks" } else { "blocks" };
            let how = if block == super::kquant::QK_K { " (as llama-quantize does)" } else { " (as llama.cpp's converter does)" };
            let count = if names.len() == 1 { "1 tensor".to_string() } else { format!("{} tensors", names.len()) };
            format!("{count} with {row}-value rows ({shown}): not whole {block}-value {unit} of {}, so {}{how}", from.name(), to.name())
        })
        .collect()
}

/// llama-3 rope scaling as llama.cpp stores it: each frequency's divisor.
fn rope_freqs(model: &Llama) -> Option<TensorOut> {
    let scaling = model.scaling()?;
    let hd = model.spec.head_dim();
    let plain = inverse_frequencies(hd, model.spec.rope_theta, None);
    let scaled = inverse_frequencies(hd, model.spec.rope_theta, Some(scaling));
    let divisors: Vec<f32> = plain.iter().zip(&scaled).map(|(p, s)| (p / s) as f32).collect();
    Some(TensorOut { name: "rope_freqs.weight".into(), shape: vec![divisors.len() as u64], ty: GgmlType::F32, data: divisors.iter().flat_map(|d| d.to_le_bytes()).collect() })
}

fn llama_metadata(model: &Llama, ft: FileType, name: &str) -> Vec<(String, Value)> {
    let s = &model.spec;
    let k = |key: &str| format!("llama.{key}");
    let mut out = vec![
        ("general.architecture".to_string(), Value::Str("llama".into())),
        ("general.name".to_string(), Value::Str(name.to_string())),
        ("general.file_type".to_string(), Value::U32(ft.llama_ftype())),
        ("general.quantization_version".to_string(), Value::U32(2)),
        (k("context_length"), Value::U32(s.max_seq as u32)),
        (k("embedding_length"), Value::U32(s.dim as u32)),
        (k("block_count"), Value::U32(s.layers as u32)),
        (k("feed_forward_length"), Value::U32(s.ffn as u32)),
        (k("attention.head_count"), Value::U32(s.heads as u32)),
        (k("attention.head_count_kv"), Value::U32(s.kv_heads as u32)),
        (k("rope.freq_base"), Value::F32(s.rope_theta as f32)),
        (k("attention.layer_norm_rms_epsilon"), Value::F32(s.norm_eps as f32)),
        (k("vocab_size"), Value::U32(s.vocab.unwrap_or(0) as u32)),
        (k("rope.dimension_count"), Value::U32(s.head_dim() as u32)),
    ];
    if let Some(sc) = model.scaling() {
        out.push((k("rope.scaling.factor"), Value::F32(sc.factor as f32)));
        out.push((k("rope.scaling.original_context_length"), Value::U32(sc.original_max_position as u32)));
    }
    out
}

/// The f32 values of a variable in llama.cpp's row order.
fn values(model: &Llama, gguf: &str, t: &Tensor) -> Result<Vec<f32>, String> {
    let mut t = t.to_kind(Kind::Float).to_device(Device::Cpu);
    if let Some(heads) = permuted_heads(gguf, model) {
        t = permute(&t, heads);
    }
    Vec::<f32>::try_from(&t.contiguous().view([-1])).map_err(|e| format!("{gguf}: cannot read its values: {e}"))
}

/// Writes `model` (with its tokenizer and special tokens) to `path` as `ft`.
pub fn export(model: &Llama, tokenizer: &tokenizers::Tokenizer, specials: &Specials, ft: FileType, name: &str, path: &Path) -> Result<Exported, String> {
    if model.lora.is_some() {
        return Err("a model with a LoRA adapter is exported merged: merge(base, adapter) first, then export the result".into());
    }
    let vocab = model.spec.vocab.ok_or("the model's vocabulary size is not known")?;
    let mut metadata = llama_metadata(model, ft, name);
    metadata.extend(vocab_out::metadata(tokenizer, vocab, specials)?);

    let vars = model.vs.variables();
    let mut ordered: Vec<(String, &Tensor)> = Vec::with_capacity(vars.len());
    for (hf, t) in &vars {
        let gguf = gguf_name(hf).ok_or_else(|| format!("the model has a tensor GGUF has no name for: {hf}"))?;
        ordered.push((gguf, t));
    }
    // The converter's order: the embedding, the blocks in order, then the final norm and head.
    let rank = |n: &str| match n {
        "token_embd.weight" => (0, 0, String::new()),
        "output_norm.weight" => (2, 0, String::new()),
        "output.weight" => (3, 0, String::new()),
        _ => {
            let layer = n.split('.').nth(1).and_then(|l| l.parse::<usize>().ok()).unwrap_or(0);
            (1, layer, n.to_string())
        }
    };
    ordered.sort_by_key(|(n, _)| rank(n));
    let mut fallbacks = Vec::new();
    let mut tensors: Vec<TensorOut> = rope_freqs(model).into_iter().collect();
    for (gguf, t) in ordered {
        let shape = t.size();
        let ty = choose(ft, &gguf, &shape, model.spec.tie, model.spec.layers, &mut fallbacks);
        let data = super::quant::quantize(ty, &values(model, &gguf, t)?).ok_or_else(|| format!("{gguf}: cannot be written as {}", ty.name()))?;
        tensors.push(TensorOut { name: gguf, shape: shape.iter().map(|&d| d as u64).collect(), ty, data });
    }

    let elements: u64 = tensors.iter().map(|t| t.shape.iter().product::<u64>()).sum();
    let data_bytes: u64 = tensors.iter().map(|t| t.data.len() as u64).sum();
    let mut bytes = Vec::with_capacity(data_bytes as usize + (1 << 20));
    writer::write(&mut bytes, &metadata, &tensors).map_err(|e| format!("cannot encode the GGUF: {e}"))?;
    crate::atomic::write_file(path, &bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(Exported {
        bytes: bytes.len() as u64,
        bits_per_weight: 8.0 * data_bytes as f64 / elements.max(1) as f64,
        types: super::type_summary(tensors.iter().map(|t| t.ty)),
        notes: fallback_notes(&fallbacks),
    })
}
