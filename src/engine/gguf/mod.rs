//! GGUF files (llama.cpp's format) as kdl models: `reader` parses the container,
//! `config` turns the metadata into a `LlamaSpec`, `dequant` decodes ggml's block
//! formats to f32, `llama` maps the tensors onto the llama of `engine::llama`, and
//! `tokenizer` rebuilds the tokenizer from the metadata. `load_gguf` is the entry point;
//! its errors are one line naming the file, like `checkpoint::load_hf_dir`'s. The other
//! way, `export` writes a llama as GGUF: `quant` encodes the blocks (`kquant` the K-quants), `writer` the
//! container, `vocab_out` the tokenizer metadata.

pub mod config;
pub mod dequant;
pub mod export;
pub(crate) mod kquant;
pub mod llama;
pub mod quant;
pub mod reader;
pub mod tokenizer;
mod vocab_out;
pub mod writer;

pub use export::{export, Exported, FileType};
pub use vocab_out::Specials;

use crate::engine::llama::Llama;
use dequant::GgmlType;
use reader::Gguf;
use std::collections::BTreeMap;
use std::path::Path;
use tch::Device;

/// A model read from a GGUF file, with what its metadata says about using it.
pub struct GgufModel {
    pub model: Llama,
    pub tokenizer: Option<tokenizers::Tokenizer>,
    pub chat_template: Option<String>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    /// `general.name`.
    pub name: Option<String>,
    /// Tensor count per ggml type, most common first: "210 Q4_1, 61 F32, 1 Q8_0".
    pub quant_summary: String,
    /// Why `tokenizer` is `None` (a sentencepiece or unknown vocabulary kdl could not
    /// rebuild), for the caller to show.
    pub notes: Vec<String>,
}

/// "210 Q4_1, 61 F32, 1 Q8_0": tensors per type, most common first.
pub fn type_summary(types: impl IntoIterator<Item = GgmlType>) -> String {
    let mut counts: BTreeMap<GgmlType, usize> = BTreeMap::new();
    for ty in types {
        *counts.entry(ty).or_default() += 1;
    }
    let mut counts: Vec<(GgmlType, usize)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    counts.iter().map(|(ty, n)| format!("{n} {}", ty.name())).collect::<Vec<_>>().join(", ")
}

/// The types of a file's tensors, as `type_summary` writes them.
pub fn quant_summary(g: &Gguf) -> String {
    type_summary(g.tensors.iter().map(|t| t.ty))
}

/// Loads a llama-architecture GGUF onto `device`, dequantizing every weight to the
/// model's dtype.
pub fn load_gguf(path: &Path, device: Device) -> Result<GgufModel, String> {
    let file = path.display().to_string();
    let g = Gguf::open(path)?;
    let arch = config::architecture(&g).map_err(|e| format!("{file}: {e}"))?;
    let (spec, scaling) = config::spec_of(&g, &arch, g.data().len() as u64).map_err(|e| format!("{file}: {e}"))?;
    let model = Llama::new(&spec, device, scaling).map_err(|e| format!("{file}: {e}"))?;
    llama::load_weights(&g, &model, &file)?;
    let tok = tokenizer::tokenizer_of(&g);
    Ok(GgufModel {
        model,
        tokenizer: tok.tokenizer,
        chat_template: tok.chat_template,
        bos: tok.bos,
        eos: tok.eos,
        name: g.get("general.name").and_then(|v| v.as_str()).map(String::from),
        quant_summary: quant_summary(&g),
        notes: tok.note.into_iter().map(|n| format!("{file}: {n}")).collect(),
    })
}
