//! Hugging Face checkpoints in and out: a folder with `config.json` and
//! `model.safetensors` (or shards listed in `model.safetensors.index.json`). Every
//! mismatch is one line naming the file, the tensor and the reason. Saving writes the
//! whole folder beside the target and renames it into place.

use super::llama::{HfConfig, Llama};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F64 => Kind::Double,
        _ => return None,
    })
}

fn shard_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index)
        .map_err(|_| format!("{}: no model.safetensors or model.safetensors.index.json (kdl reads safetensors, never pickle .bin files)", dir.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", index.display()))?;
    let map = json.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| format!("{}: no weight_map", index.display()))?;
    let mut files: Vec<String> = map.values().filter_map(|v| v.as_str().map(String::from)).collect();
    files.sort();
    files.dedup();
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

/// Loads an HF llama/mistral/qwen2 folder onto `device`.
pub fn load_hf_dir(dir: &Path, device: Device) -> Result<Llama, String> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(|_| format!("{}: no config.json here", dir.display()))?;
    let config = HfConfig::from_json(&text).map_err(|e| format!("{}: {e}", config_path.display()))?;
    if !super::llama::config::SUPPORTED.contains(&config.architecture()) {
        return Err(format!(
            "{}: architecture {} is not supported (kdl reads {})",
            config_path.display(),
            config.architecture(),
            super::llama::config::SUPPORTED.join(", ")
        ));
    }
    let model = Llama::new(&config.to_spec(), device, config.llama3_scaling())?;
    let mut vars = model.vs.variables();
    let mut seen = HashSet::new();
    for file in shard_files(dir)? {
        let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| format!("{}: not a safetensors file ({e})", file.display()))?;
        for (name, view) in st.tensors() {
            // Rotary tables are recomputed, never loaded.
            if name.ends_with("rotary_emb.inv_freq") || (name == "lm_head.weight" && model.spec.tie) {
                continue;
            }
            let var = vars.get_mut(&name).ok_or_else(|| format!("{}: unexpected tensor {name} (not part of a {} model)", file.display(), config.architecture()))?;
            copy_into(var, &name, &view, &file)?;
            seen.insert(name);
        }
    }
    let mut missing: Vec<&String> = vars.keys().filter(|k| !seen.contains(*k)).collect();
    missing.sort();
    if let Some(first) = missing.first() {
        return Err(format!("{}: missing tensor {first}{}", dir.display(), if missing.len() > 1 { format!(" (and {} more)", missing.len() - 1) } else { String::new() }));
    }
    Ok(model)
}

fn copy_into(var: &mut Tensor, name: &str, view: &TensorView, file: &Path) -> Result<(), String> {
    let kind = kind_of(view.dtype()).ok_or_else(|| format!("{}: tensor {name} has dtype {:?}, which kdl cannot load", file.display(), view.dtype()))?;
    let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
    if shape != var.size() {
        return Err(format!("{}: tensor {name} has shape {:?}, the config says {:?}", file.display(), shape, var.size()));
    }
    let src = Tensor::from_data_size(view.data(), &shape, kind);
    tch::no_grad(|| var.copy_(&src.to_kind(var.kind()).to_device(var.device())));
    Ok(())
}

/// A tensor's bytes in its own precision (f32, bf16 or f16; anything else as f32), so a
/// bf16 model is saved as bf16 and says so, not silently widened.
fn tensor_bytes(t: &Tensor) -> (Dtype, Vec<u8>) {
    let flat = |k: Kind| t.to_kind(k).to_device(Device::Cpu).contiguous().flatten(0, -1);
    match t.kind() {
        Kind::BFloat16 | Kind::Half => {
            let dtype = if t.kind() == Kind::BFloat16 { Dtype::BF16 } else { Dtype::F16 };
            // The 16-bit patterns, reinterpreted: no rounding on the way out.
            let bits: Vec<i16> = Vec::<i16>::try_from(&flat(t.kind()).view_dtype(Kind::Int16)).unwrap_or_default();
            (dtype, bits.iter().flat_map(|v| v.to_le_bytes()).collect())
        }
        _ => {
            let values: Vec<f32> = Vec::<f32>::try_from(&flat(Kind::Float)).unwrap_or_default();
            (Dtype::F32, values.iter().flat_map(|v| v.to_le_bytes()).collect())
        }
    }
}

/// The name transformers gives a precision in `config.json`'s `torch_dtype`.
pub fn torch_dtype_name(kind: Kind) -> &'static str {
    match kind {
        Kind::BFloat16 => "bfloat16",
        Kind::Half => "float16",
        _ => "float32",
    }
}

/// A safetensors file of the tensors, each in its own precision, in memory.
pub fn safetensors_bytes(tensors: &[(&str, &Tensor)]) -> Result<Vec<u8>, String> {
    let data: Vec<(String, Vec<i64>, (Dtype, Vec<u8>))> = tensors.iter().map(|(n, t)| (n.to_string(), t.size(), tensor_bytes(t))).collect();
    let views: Vec<(String, TensorView)> = data
        .iter()
        .map(|(n, shape, (dtype, bytes))| {
            let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
            TensorView::new(*dtype, shape, bytes).map(|v| (n.clone(), v)).map_err(|e| format!("tensor {n}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let mut metadata = std::collections::HashMap::new();
    metadata.insert("format".to_string(), "pt".to_string());
    safetensors::serialize(views, Some(metadata)).map_err(|e| format!("cannot serialise tensors: {e}"))
}

/// Special token ids written into `config.json` and `generation_config.json`.
#[derive(Debug, Clone, Default)]
pub struct SpecialTokens {
    pub bos: Option<u32>,
    pub eos: Vec<u32>,
}

/// Writes `model` as an HF folder (weights in the model's precision) that transformers loads as
/// LlamaForCausalLM; `extra` files (tokenizer.json, ...) go in too.
pub fn save_hf_dir(model: &Llama, dir: &Path, special: &SpecialTokens, extra: &[(&str, Vec<u8>)]) -> Result<(), String> {
    let vars: BTreeMap<String, Tensor> = model.vs.variables().into_iter().collect();
    let named: Vec<(&str, &Tensor)> = vars.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let weights = safetensors_bytes(&named)?;
    let mut config = model.spec.hf_config();
    // The precision the weights are written in, which is the model's own.
    if let Some(t) = vars.values().next() {
        config["torch_dtype"] = torch_dtype_name(t.kind()).into();
    }
    if let Some(s) = model.scaling() {
        config["rope_scaling"] = serde_json::json!({
            "rope_type": "llama3",
            "factor": s.factor,
            "low_freq_factor": s.low_freq_factor,
            "high_freq_factor": s.high_freq_factor,
            "original_max_position_embeddings": s.original_max_position,
        });
    }
    let mut generation = serde_json::json!({"_from_model_config": true});
    for target in [&mut config, &mut generation] {
        if let Some(b) = special.bos {
            target["bos_token_id"] = b.into();
        }
        match special.eos.as_slice() {
            [] => {}
            [one] => target["eos_token_id"] = (*one).into(),
            many => target["eos_token_id"] = many.to_vec().into(),
        }
    }
    let config = serde_json::to_vec_pretty(&config).map_err(|e| e.to_string())?;
    let generation = serde_json::to_vec_pretty(&generation).map_err(|e| e.to_string())?;
    let mut files: Vec<(&str, Vec<u8>)> = vec![("config.json", config), ("model.safetensors", weights), ("generation_config.json", generation)];
    files.extend(extra.iter().map(|(n, b)| (*n, b.clone())));
    crate::atomic::write_dir(dir, &files).map_err(|e| format!("cannot write {}: {e}", dir.display()))
}
