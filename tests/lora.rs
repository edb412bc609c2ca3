//! LoRA adapters against Hugging Face peft: tests/fixtures/peft_reference.py (run by
//! ./setup.sh, which exports KDL_FIXTURES_PEFT) saves a tiny llama, a peft adapter with
//! random A and B, and peft's logits before and after `merge_and_unload()`. kdl reads the
//! adapter, and its unmerged and merged logits agree with peft's to 1e-5; an adapter kdl
//! trains and saves loads in peft (tests/fixtures/peft_check.py) and merges to the same
//! logits as kdl's merge; training an adapter leaves the base untouched.

use kdl::engine::checkpoint::load_hf_dir;
use kdl::engine::lora::{self, peft, LoraConfig, Target};
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::{Device, Tensor};

const TOLERANCE: f64 = 1e-5;

fn fixtures() -> PathBuf {
    let dir = std::env::var_os("KDL_FIXTURES_PEFT").map(PathBuf::from).expect("KDL_FIXTURES_PEFT is unset: run ./setup.sh (it makes the peft fixtures)");
    assert!(dir.join("adapter").is_dir(), "{} has no fixtures: run ./setup.sh", dir.display());
    dir
}

fn reference(name: &str) -> Tensor {
    let tensors = Tensor::read_safetensors(fixtures().join("reference.safetensors")).expect("reference.safetensors");
    tensors.into_iter().find(|(k, _)| k == name).map(|(_, t)| t).unwrap_or_else(|| panic!("no {name} in the fixture"))
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

fn workdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kdl-lora-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn peft_adapters_give_peft_logits_unmerged_and_merged() {
    let base = load_hf_dir(&fixtures().join("base"), Device::Cpu).unwrap();
    let ids = reference("input_ids");
    let base_logits = tch::no_grad(|| base.forward(&ids, None));
    assert!(max_abs_diff(&base_logits, &reference("base_logits")) <= 1e-4);
    for (dir, unmerged, merged) in [("adapter", "adapter_logits", "merged_logits"), ("adapter_rslora", "rslora_adapter_logits", "rslora_merged_logits")] {
        let adapted = peft::load_adapter(&fixtures().join(dir), &base).unwrap_or_else(|e| panic!("{dir}: {e}"));
        let d = max_abs_diff(&tch::no_grad(|| adapted.forward(&ids, None)), &reference(unmerged));
        assert!(d <= TOLERANCE, "{dir} unmerged: max |Δlogit| = {d:e}");
        let folded = lora::merge(&base.base_tensors(), &adapted).unwrap();
        assert!(folded.lora.is_none());
        let d = max_abs_diff(&tch::no_grad(|| folded.forward(&ids, None)), &reference(merged));
        assert!(d <= TOLERANCE, "{dir} merged: max |Δlogit| = {d:e} against peft's merge_and_unload()");
    }
}

#[test]
fn a_fresh_adapter_starts_equal_to_its_base_and_merging_keeps_its_logits() {
    let base = load_hf_dir(&fixtures().join("base"), Device::Cpu).unwrap();
    let ids = reference("input_ids");
    let config = LoraConfig { rank: 8, alpha: 16.0, dropout: 0.1, targets: Target::ALL.to_vec(), rslora: false };
    let adapted = base.with_lora(&config, 3).unwrap();
    let base_logits = tch::no_grad(|| base.forward(&ids, None));
    // B starts at zero, so the adapter changes nothing until it is trained.
    assert_eq!(max_abs_diff(&tch::no_grad(|| adapted.forward(&ids, None)), &base_logits), 0.0);
    assert_eq!(adapted.vs.variables().len(), 2 * 7 * base.spec.layers, "only the adapter pairs are variables");
    assert_eq!(adapted.vs.variables().values().map(|t| t.numel() as u64).sum::<u64>(), config.params(&base.spec));
    // Give B values, as training would: fixed ones, not the global RNG's, whose state
    // depends on which tests ran before in this process.
    for (name, mut var) in adapted.vs.variables() {
        if name.contains("lora_B") {
            let n = var.numel() as i64;
            let fill = (Tensor::arange(n, (tch::Kind::Float, Device::Cpu)) * 0.7311).sin().reshape(var.size()) * 0.05;
            tch::no_grad(|| var.copy_(&fill));
        }
    }
    let unmerged = tch::no_grad(|| adapted.forward(&ids, None));
    assert!(max_abs_diff(&unmerged, &base_logits) > 0.01, "the adapter should move the logits");
    let folded = lora::merge(&base.base_tensors(), &adapted).unwrap();
    let d = max_abs_diff(&tch::no_grad(|| folded.forward(&ids, None)), &unmerged);
    assert!(d <= TOLERANCE, "merged vs unmerged: max |Δlogit| = {d:e}");
    // Dropout is on only in training mode.
    adapted.set_training(true);
    let noisy = tch::no_grad(|| adapted.forward(&ids, None));
    adapted.set_training(false);
    assert!(max_abs_diff(&noisy, &unmerged) > 0.0);
    assert_eq!(max_abs_diff(&tch::no_grad(|| adapted.forward(&ids, None)), &unmerged), 0.0);
}

fn kdl_run(dir: &Path, script: &str) -> String {
    let path = dir.join("run.kd");
    std::fs::write(&path, script).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kdl")).arg("run").arg(&path).env("KDL_CACHE", dir.join("cache")).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "kdl failed:\n{text}");
    text
}

fn python() -> String {
    std::env::var("KDL_PYTHON").expect("KDL_PYTHON is unset: run ./setup.sh")
}

/// A script trains an adapter on the fixture base from the bundled corpus, saves it, and
/// merges it; peft loads the saved adapter onto the same base and merges it too.
#[test]
fn an_adapter_trained_and_saved_by_kdl_loads_in_peft_with_the_same_merge() {
    let dir = workdir("peft-roundtrip");
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/moby_dick.txt");
    let base_dir = fixtures().join("base");
    let text = kdl_run(
        &dir,
        &format!(
            "tokenizer bpe(vocab=320, from={corpus:?})\n\
             let base = load({base:?})\n\
             let adapter = lora(base, rank=4, alpha=8, targets=[\"q\", \"v\", \"down\"])\n\
             train(adapter, on=text({corpus:?}).split(0.9), loss=ce, lr=1e-2, steps=6, batch=2, seq=32)\n\
             save adapter to \"adapter\"\n\
             let merged = merge(base, adapter)\n\
             save merged to \"merged\"\n\
             save base to \"base_after\"\n",
            corpus = corpus.display().to_string(),
            base = base_dir.display().to_string(),
        ),
    );
    assert!(text.contains("trainable params"), "{text}");
    assert!(dir.join("adapter/adapter_config.json").is_file() && dir.join("adapter/adapter_model.safetensors").is_file());
    // The checkpoint of an adapter run is a peft folder too.
    let ckpt = std::fs::read_dir(dir.join("runs/run")).unwrap().filter_map(|e| e.ok()).find(|e| e.file_name().to_string_lossy().starts_with("step-")).expect("a checkpoint");
    assert!(ckpt.path().join("adapter_model.safetensors").is_file() && !ckpt.path().join("model.safetensors").exists());

    // The base did not move.
    let base = load_hf_dir(&base_dir, Device::Cpu).unwrap();
    let after = load_hf_dir(&dir.join("base_after"), Device::Cpu).unwrap();
    let ids = reference("input_ids");
    let base_logits = tch::no_grad(|| base.forward(&ids, None));
    assert_eq!(max_abs_diff(&tch::no_grad(|| after.forward(&ids, None)), &base_logits), 0.0, "training the adapter changed the base");

    let merged = load_hf_dir(&dir.join("merged"), Device::Cpu).unwrap();
    let ours = tch::no_grad(|| merged.forward(&ids, None));
    assert!(max_abs_diff(&ours, &base_logits) > 1e-3, "training should have moved the adapter");
    let peft_out = dir.join("peft.safetensors");
    let status = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/peft_check.py"))
        .args([base_dir.as_os_str(), dir.join("adapter").as_os_str(), fixtures().join("reference.safetensors").as_os_str(), peft_out.as_os_str()])
        .status()
        .unwrap();
    assert!(status.success(), "peft could not load kdl's adapter");
    let theirs = Tensor::read_safetensors(&peft_out).unwrap().into_iter().find(|(k, _)| k == "logits").unwrap().1;
    let d = max_abs_diff(&ours, &theirs);
    assert!(d <= TOLERANCE, "kdl merge vs peft merge_and_unload of kdl's adapter: max |Δlogit| = {d:e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn adapter_errors_are_one_line_causes() {
    let dir = workdir("errors");
    let base = fixtures().join("base");
    let script = format!("let a = load({:?})\n", fixtures().join("adapter").display().to_string());
    std::fs::write(dir.join("bad.kd"), &script).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kdl")).arg("run").arg(dir.join("bad.kd")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    assert!(text.contains("is a LoRA adapter; kdl needs the model it adapts") && text.contains("base="), "{text}");
    // An adapter for another architecture.
    let script = format!(
        "let other = llama(layers=2, dim=32, heads=4, vocab=320)\nlet a = load({:?}, base=other)\n",
        fixtures().join("adapter").display().to_string()
    );
    std::fs::write(dir.join("shape.kd"), &script).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kdl")).arg("run").arg(dir.join("shape.kd")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success() && text.contains("shape") && !text.contains("panicked"), "{text}");
    let _ = base;
    let _ = std::fs::remove_dir_all(&dir);
}

/// On a bf16 base (CUDA's default precision) the adapter stays f32, as peft keeps it, and
/// the adapted model runs and trains through the casts.
#[test]
fn an_adapter_on_a_bf16_base_stays_f32() {
    let base = load_hf_dir(&fixtures().join("base"), Device::Cpu).unwrap();
    let half = base.converted(tch::Kind::BFloat16).unwrap();
    let ids = reference("input_ids");
    let config = LoraConfig { rank: 4, alpha: 8.0, dropout: 0.0, targets: Target::ALL.to_vec(), rslora: false };
    let adapted = peft::load_adapter(&fixtures().join("adapter"), &half).unwrap();
    assert!(adapted.vs.variables().values().all(|t| t.kind() == tch::Kind::Float));
    let logits = tch::no_grad(|| adapted.forward(&ids, None)).to_kind(tch::Kind::Float);
    let d = max_abs_diff(&logits, &reference("adapter_logits"));
    assert!(d < 0.5, "bf16 base + f32 adapter vs peft f32: max |Δlogit| = {d}");
    // Gradients reach the adapter through the bf16 layers.
    let fresh = half.with_lora(&config, 1).unwrap();
    let loss = fresh.forward(&ids, None).to_kind(tch::Kind::Float).square().mean(tch::Kind::Float);
    loss.backward();
    let grads: f64 = fresh.vs.variables().values().map(|t| t.grad().abs().sum(tch::Kind::Float).double_value(&[])).sum();
    assert!(grads > 0.0 && grads.is_finite());
}
