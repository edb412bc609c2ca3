//! Run checkpoints: `RUN/step-NNNNNN/` holds the student as a Hugging Face folder plus
//! what resuming needs — optimizer moments, learned loss projections, the data sampler's
//! position and the step. Each folder is written beside its target and renamed into
//! place, so a killed run leaves only whole checkpoints; resuming takes the newest one
//! whose checksums verify (crate::checksum), and only the newest `keep` are kept.

use crate::engine::checkpoint::{safetensors_bytes, save_hf_dir, SpecialTokens};
use crate::engine::data::Sampler;
use crate::engine::llama::Llama;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// What a checkpoint records besides tensors.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunState {
    /// Optimizer steps completed.
    pub step: u64,
    pub total_steps: u64,
    pub sampler: Sampler,
    pub seed: u64,
    /// The plan printed by `train(dry=true)`, to warn when a resume changes it.
    pub plan: String,
}

pub fn step_dir(run: &Path, step: u64) -> PathBuf {
    run.join(format!("step-{step:06}"))
}

/// Everything a checkpoint writes, borrowed from the loop.
pub struct Snapshot<'a> {
    pub student: &'a Llama,
    pub optimizer: Vec<(String, Tensor)>,
    pub aux: Vec<(String, Tensor)>,
    pub state: &'a RunState,
    pub special: &'a SpecialTokens,
    pub extra: &'a [(&'a str, Vec<u8>)],
}

pub fn save(run: &Path, snap: &Snapshot) -> Result<PathBuf, String> {
    let dir = step_dir(run, snap.state.step);
    let named = |v: &[(String, Tensor)]| -> Result<Vec<u8>, String> {
        let refs: Vec<(&str, &Tensor)> = v.iter().map(|(n, t)| (n.as_str(), t)).collect();
        safetensors_bytes(&refs)
    };
    let mut files: Vec<(&str, Vec<u8>)> = snap.extra.to_vec();
    files.push(("optimizer.safetensors", named(&snap.optimizer)?));
    if !snap.aux.is_empty() {
        files.push(("loss_params.safetensors", named(&snap.aux)?));
    }
    files.push(("run_state.json", serde_json::to_vec_pretty(snap.state).map_err(|e| e.to_string())?));
    if snap.student.lora.is_some() {
        // An adapter run keeps the adapter only, as a peft folder: the base is unchanged.
        files.extend(crate::engine::lora::peft::adapter_files(snap.student, "")?);
        crate::atomic::write_dir(&dir, &files).map_err(|e| format!("cannot write {}: {e}", dir.display()))?;
    } else {
        save_hf_dir(snap.student, &dir, snap.special, &files)?;
    }
    Ok(dir)
}

/// A run's checkpoint folders, oldest first.
fn step_dirs(run: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(run) else { return Vec::new() };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("step-") && !n.contains('.')))
        .filter(|p| p.join("run_state.json").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// The newest complete checkpoint of a run, if any.
pub fn latest(run: &Path) -> Option<PathBuf> {
    step_dirs(run).pop()
}

/// Whether `dir` is a checkpoint to trust: its manifest lists every file and each
/// matches. A checkpoint without one was not written whole by kdl.
pub fn verify(dir: &Path) -> Result<(), String> {
    match crate::checksum::verify(dir)? {
        crate::checksum::Integrity::Verified => Ok(()),
        crate::checksum::Integrity::Unchecked => Err(format!("{}: no {} (the checkpoint was not written whole)", dir.display(), crate::checksum::MANIFEST)),
    }
}

/// The newest checkpoint of `run` that verifies, and why each newer one was passed over.
pub fn latest_intact(run: &Path) -> (Option<PathBuf>, Vec<String>) {
    let mut skipped = Vec::new();
    for dir in step_dirs(run).into_iter().rev() {
        match verify(&dir) {
            Ok(()) => return (Some(dir), skipped),
            Err(e) => skipped.push(e),
        }
    }
    (None, skipped)
}

/// Removes all but the newest `keep` checkpoints (0 keeps every one). Only folders that
/// verify count towards `keep`, so a damaged newest checkpoint never costs the last good one.
pub fn prune(run: &Path, keep: usize) -> Result<(), String> {
    if keep == 0 {
        return Ok(());
    }
    let mut intact = 0;
    for dir in step_dirs(run).into_iter().rev() {
        if intact >= keep {
            std::fs::remove_dir_all(&dir).map_err(|e| format!("cannot remove the old checkpoint {}: {e}", dir.display()))?;
        } else if verify(&dir).is_ok() {
            intact += 1;
        }
    }
    Ok(())
}

pub fn read_state(dir: &Path) -> Result<RunState, String> {
    let path = dir.join("run_state.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not a kdl run state ({e})", path.display()))
}

pub fn read_tensors(path: &Path) -> Result<BTreeMap<String, Tensor>, String> {
    if !path.is_file() {
        return Ok(BTreeMap::new());
    }
    Tensor::read_safetensors(path).map(|v| v.into_iter().collect()).map_err(|e| format!("{}: {e}", path.display()))
}

/// Copies the checkpoint's weights into `student`'s variables.
pub fn restore_weights(student: &Llama, dir: &Path) -> Result<(), String> {
    if student.lora.is_some() {
        return restore_into(&student.vs.variables(), &crate::engine::lora::peft::read_pairs(dir)?, dir);
    }
    let saved = read_tensors(&dir.join("model.safetensors"))?;
    restore_into(&student.vs.variables(), &saved, dir)
}

/// Copies `saved` into same-named variables; every variable must be there.
pub fn restore_into(vars: &std::collections::HashMap<String, Tensor>, saved: &BTreeMap<String, Tensor>, dir: &Path) -> Result<(), String> {
    for (name, var) in vars {
        let src = saved.get(name).ok_or_else(|| format!("{}: the checkpoint has no {name}", dir.display()))?;
        if src.size() != var.size() {
            return Err(format!("{}: {name} has shape {:?}, the model needs {:?}", dir.display(), src.size(), var.size()));
        }
        let mut var = var.shallow_clone();
        tch::no_grad(|| var.copy_(src));
    }
    Ok(())
}
