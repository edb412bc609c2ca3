//! Adapters as Hugging Face peft writes them: `adapter_config.json` and
//! `adapter_model.safetensors`, whose keys are the model's own names under
//! `base_model.model.` (`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`,
//! A `[r, in]`, B `[out, r]`), so `PeftModel.from_pretrained` reads what kdl saves and
//! kdl reads what peft saves.

use super::{LoraConfig, Target};
use crate::engine::checkpoint::safetensors_bytes;
use crate::engine::llama::Llama;
use std::collections::BTreeMap;
use std::path::Path;
use tch::Tensor;

const PREFIX: &str = "base_model.model.";
pub const CONFIG_FILE: &str = "adapter_config.json";
const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// True when `dir` holds a peft adapter rather than a model.
pub fn is_adapter_dir(dir: &Path) -> bool {
    dir.join(CONFIG_FILE).is_file()
}

/// The adapter's tensors under peft's names.
pub fn adapter_tensors(model: &Llama) -> BTreeMap<String, Tensor> {
    model.vs.variables().into_iter().map(|(n, t)| (format!("{PREFIX}{n}"), t)).collect()
}

fn config_json(config: &LoraConfig, base: &str) -> serde_json::Value {
    let targets: Vec<&str> = config.targets.iter().map(|t| t.hf_name()).collect();
    serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base,
        "r": config.rank,
        "lora_alpha": config.alpha,
        "lora_dropout": config.dropout,
        "target_modules": targets,
        "use_rslora": config.rslora,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "modules_to_save": null,
        "use_dora": false,
    })
}

/// The files of an adapter folder, to write with `atomic::write_dir` (alone, or inside
/// a training checkpoint). `base` goes into `base_model_name_or_path`.
pub fn adapter_files(model: &Llama, base: &str) -> Result<Vec<(&'static str, Vec<u8>)>, String> {
    let config = model.lora.as_ref().ok_or("this model has no LoRA adapter")?;
    let tensors = adapter_tensors(model);
    let named: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let json = serde_json::to_vec_pretty(&config_json(config, base)).map_err(|e| e.to_string())?;
    Ok(vec![(CONFIG_FILE, json), (WEIGHTS_FILE, safetensors_bytes(&named)?)])
}

/// Reads `adapter_config.json`: what kdl can run, or a one-line reason it cannot.
pub fn read_config(dir: &Path) -> Result<(LoraConfig, String), String> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: not JSON ({e})", path.display()))?;
    let bad = |why: String| format!("{}: {why}", path.display());
    let kind = json["peft_type"].as_str().unwrap_or("LORA");
    if kind != "LORA" {
        return Err(bad(format!("a {kind} adapter; kdl reads LoRA adapters")));
    }
    if json["use_dora"].as_bool() == Some(true) {
        return Err(bad("a DoRA adapter; kdl reads plain LoRA (use_dora=false)".into()));
    }
    if json["fan_in_fan_out"].as_bool() == Some(true) {
        return Err(bad("fan_in_fan_out adapters are for GPT-2-style Conv1D layers; a llama adapter has fan_in_fan_out=false".into()));
    }
    for unsupported in ["modules_to_save", "layers_to_transform", "rank_pattern", "alpha_pattern"] {
        let v = &json[unsupported];
        if !(v.is_null() || v.as_object().is_some_and(|o| o.is_empty()) || v.as_array().is_some_and(|a| a.is_empty())) {
            return Err(bad(format!("{unsupported} is set; kdl reads adapters with one rank and alpha on every layer")));
        }
    }
    if json["bias"].as_str().is_some_and(|b| b != "none") {
        return Err(bad("the adapter trains biases (bias != \"none\"); kdl reads bias=\"none\" adapters".into()));
    }
    let rank = json["r"].as_u64().filter(|&r| r > 0).ok_or_else(|| bad("no rank r".into()))? as usize;
    let alpha = json["lora_alpha"].as_f64().unwrap_or(8.0);
    let modules: Vec<String> = match &json["target_modules"] {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(String::from)).collect(),
        _ => return Err(bad("no target_modules".into())),
    };
    let mut targets = Vec::new();
    for m in &modules {
        targets.extend(Target::parse(m).map_err(bad)?);
    }
    targets.sort();
    targets.dedup();
    let config = LoraConfig { rank, alpha, dropout: json["lora_dropout"].as_f64().unwrap_or(0.0), targets, rslora: json["use_rslora"].as_bool().unwrap_or(false) };
    Ok((config, json["base_model_name_or_path"].as_str().unwrap_or("").to_string()))
}

/// The A and B matrices of the adapter in `dir` (a peft folder or an adapter run's
/// checkpoint) under the model's own names.
pub fn read_pairs(dir: &Path) -> Result<BTreeMap<String, Tensor>, String> {
    let file = dir.join(WEIGHTS_FILE);
    let saved = Tensor::read_safetensors(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    // peft writes `base_model.model.X`; older versions kept the adapter name (`.default`).
    Ok(saved.into_iter().map(|(n, t)| (n.strip_prefix(PREFIX).unwrap_or(&n).replace(".default.weight", ".weight"), t)).collect())
}

/// The adapter in `dir` on `base`: `base` with the adapter's layers, its pairs read.
pub fn load_adapter(dir: &Path, base: &Llama) -> Result<Llama, String> {
    crate::checksum::verify(dir)?;
    let (config, _) = read_config(dir)?;
    let model = base.with_lora(&config, 0)?;
    let file = dir.join(WEIGHTS_FILE);
    if !file.is_file() {
        return Err(format!("{}: no {WEIGHTS_FILE} beside the config (kdl reads safetensors, never pickle .bin files)", dir.display()));
    }
    let saved = read_pairs(dir)?;
    let vars = model.vs.variables();
    for name in saved.keys() {
        if !vars.contains_key(name) {
            return Err(format!("{}: unexpected tensor {name} (the config targets {}; the base has {} layers)", file.display(), config.describe(), base.spec.layers));
        }
    }
    crate::engine::train::checkpoint::restore_into(&vars, &saved, dir)?;
    Ok(model)
}
