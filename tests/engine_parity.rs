//! Numeric parity of the llama engine with transformers: tiny random checkpoints made by
//! tests/fixtures/llama_reference.py (run by ./setup.sh, which exports KDL_FIXTURES)
//! load into kdl and give the same logits, within 1e-4 in f32.

use kdl::engine::checkpoint::{load_hf_dir, save_hf_dir};
use kdl::engine::llama::KvCache;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

const CASES: [&str; 3] = ["gqa_tied", "mha_untied", "gqa_bias"];
const TOLERANCE: f64 = 1e-4;

fn fixtures() -> PathBuf {
    let dir = std::env::var_os("KDL_FIXTURES").map(PathBuf::from).expect("KDL_FIXTURES is unset: run ./setup.sh (it makes the reference checkpoints)");
    assert!(dir.join(CASES[0]).is_dir(), "{} has no fixtures: run ./setup.sh", dir.display());
    dir
}

fn reference(case: &str) -> (Tensor, Tensor) {
    let tensors = Tensor::read_safetensors(fixtures().join(case).join("reference.safetensors")).expect("reference.safetensors");
    let get = |n: &str| tensors.iter().find(|(k, _)| k == n).map(|(_, t)| t.shallow_clone()).expect(n);
    (get("input_ids"), get("logits"))
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn llama_logits_match_transformers() {
    for case in CASES {
        let model = load_hf_dir(&fixtures().join(case), Device::Cpu).unwrap_or_else(|e| panic!("{case}: {e}"));
        let (ids, expected) = reference(case);
        let logits = tch::no_grad(|| model.forward(&ids, None));
        assert_eq!(logits.size(), expected.size(), "{case}");
        let d = max_abs_diff(&logits, &expected);
        assert!(d <= TOLERANCE, "{case}: max |Δlogit| = {d:e}");
    }
}

#[test]
fn cached_decoding_matches_the_full_forward() {
    let model = load_hf_dir(&fixtures().join("gqa_bias"), Device::Cpu).unwrap();
    let (ids, expected) = reference("gqa_bias");
    let mut cache = KvCache::new(model.spec.layers);
    let t = ids.size()[1];
    // A prefill of 5 tokens, then one token at a time.
    let mut parts = vec![tch::no_grad(|| model.forward(&ids.narrow(1, 0, 5), Some(&mut cache)))];
    for i in 5..t {
        parts.push(tch::no_grad(|| model.forward(&ids.narrow(1, i, 1), Some(&mut cache))));
    }
    let logits = Tensor::cat(&parts, 1);
    let d = max_abs_diff(&logits, &expected);
    assert!(d <= TOLERANCE, "cached decoding: max |Δlogit| = {d:e}");
}

#[test]
fn saved_checkpoints_load_back_with_the_same_logits() {
    let model = load_hf_dir(&fixtures().join("mha_untied"), Device::Cpu).unwrap();
    let out = std::env::temp_dir().join(format!("kdl-roundtrip-{}", std::process::id()));
    save_hf_dir(&model, &out, &Default::default(), &[]).unwrap();
    let again = load_hf_dir(&out, Device::Cpu).unwrap();
    let (ids, _) = reference("mha_untied");
    let (a, b) = tch::no_grad(|| (model.forward(&ids, None), again.forward(&ids, None)));
    assert_eq!(max_abs_diff(&a, &b), 0.0);
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn mismatches_are_one_line_errors_naming_file_and_tensor() {
    let src = fixtures().join("gqa_tied");
    let bad = std::env::temp_dir().join(format!("kdl-bad-{}", std::process::id()));
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(src.join("model.safetensors"), bad.join("model.safetensors")).unwrap();
    let config = std::fs::read_to_string(src.join("config.json")).unwrap().replace("\"intermediate_size\": 176", "\"intermediate_size\": 192");
    std::fs::write(bad.join("config.json"), config).unwrap();
    let err = load_hf_dir(&bad, Device::Cpu).err().expect("shape mismatch is an error");
    assert!(err.contains("model.safetensors") && err.contains("mlp") && err.contains("shape"), "{err}");
    assert!(!err.contains('\n'));
    let _ = std::fs::remove_dir_all(bad);
}

#[test]
fn fresh_models_are_seeded_and_reproducible() {
    let spec = kdl::spec::LlamaSpec {
        layers: 2, dim: 64, heads: 4, kv_heads: 2, ffn: 176, vocab: Some(100), tie: true,
        rope_theta: 10000.0, norm_eps: 1e-5, max_seq: 32, qkv_bias: false, o_bias: false,
    };
    let make = || {
        let m = kdl::engine::llama::Llama::new(&spec, Device::Cpu, None).unwrap();
        m.init(42);
        m
    };
    let (a, b) = (make(), make());
    for (name, t) in a.vs.variables() {
        let u = &b.vs.variables()[&name];
        assert_eq!(max_abs_diff(&t, u), 0.0, "{name}");
    }
    let ids = Tensor::arange(10, (Kind::Int64, Device::Cpu)).view([1, 10]);
    let (la, lb) = tch::no_grad(|| (a.forward(&ids, None), b.forward(&ids, None)));
    assert_eq!(max_abs_diff(&la, &lb), 0.0);
    assert_eq!(la.size(), vec![1, 10, 100]);
    // The recipe: N(0, 0.02), residual projections smaller, norms at one.
    let vars = a.vs.variables();
    let std = |n: &str| vars[n].std(true).double_value(&[]);
    assert!((std("model.embed_tokens.weight") - 0.02).abs() < 2e-3);
    assert!(std("model.layers.0.mlp.down_proj.weight") < 0.012);
    assert_eq!(vars["model.norm.weight"].mean(Kind::Float).double_value(&[]), 1.0);
}

/// kdl saves a fresh model from a script; transformers (tests/fixtures/hf_logits.py)
/// loads the folder and computes the same logits.
#[test]
fn transformers_loads_kdl_saved_models_with_the_same_logits() {
    let python = std::env::var("KDL_PYTHON").expect("KDL_PYTHON is unset: run ./setup.sh");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf_logits.py");
    let cases = [
        ("llama_untied_gqa", "llama(layers=2, dim=64, heads=4, kv_heads=2, vocab=300, tie=false, seed=5)", "LlamaForCausalLM"),
        ("llama_tied_mha", "llama(layers=3, dim=48, heads=3, vocab=257, seed=6)", "LlamaForCausalLM"),
        ("qwen2_bias", "llama(layers=2, dim=64, heads=4, kv_heads=1, vocab=300, qkv_bias=true, seed=7)", "Qwen2ForCausalLM"),
    ];
    let ids: Vec<i64> = vec![5, 17, 42, 1, 250, 99, 3, 0, 7, 128, 64, 2];
    for (name, model, architecture) in cases {
        let dir = std::env::temp_dir().join(format!("kdl-hf-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut s = kdl::Session::capture();
        s.eval_str(&format!("let m = {model}\nsave m to {:?}", dir.display().to_string())).unwrap();
        let Some(kdl::eval::Value::Model(m)) = s.get("m") else { panic!("a model") };
        let ours = tch::no_grad(|| m.weights().unwrap().forward(&Tensor::from_slice(&ids).view([1, -1]), None));
        let out = dir.with_extension("safetensors");
        let run = std::process::Command::new(&python)
            .arg(&script)
            .arg(&dir)
            .arg(serde_json::to_string(&[&ids]).unwrap())
            .arg(&out)
            .output()
            .expect("run the python of ./setup.sh");
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(run.status.success(), "{name}: hf_logits.py failed: {}", String::from_utf8_lossy(&run.stderr));
        assert!(stdout.contains(&format!("architecture={architecture}")), "{name}: {stdout}");
        let theirs = Tensor::read_safetensors(&out).unwrap().into_iter().find(|(n, _)| n == "logits").unwrap().1;
        let d = max_abs_diff(&ours, &theirs);
        assert!(d <= TOLERANCE, "{name}: max |Δlogit| = {d:e}");
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(&out);
    }
}

#[test]
fn llama3_rope_scaling_survives_a_save() {
    use kdl::engine::llama::config::Llama3Scaling;
    let spec = kdl::spec::LlamaSpec {
        layers: 1, dim: 64, heads: 4, kv_heads: 2, ffn: 176, vocab: Some(100), tie: true,
        rope_theta: 500000.0, norm_eps: 1e-5, max_seq: 64, qkv_bias: false, o_bias: false,
    };
    let scaling = Llama3Scaling { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position: 16.0 };
    let model = kdl::engine::llama::Llama::new(&spec, Device::Cpu, Some(scaling)).unwrap();
    model.init(3);
    let out = std::env::temp_dir().join(format!("kdl-rope-{}", std::process::id()));
    save_hf_dir(&model, &out, &Default::default(), &[]).unwrap();
    let again = load_hf_dir(&out, Device::Cpu).unwrap();
    assert_eq!(again.scaling(), Some(scaling));
    let ids = Tensor::arange(40, (Kind::Int64, Device::Cpu)).view([1, 40]);
    let (a, b) = tch::no_grad(|| (model.forward(&ids, None), again.forward(&ids, None)));
    assert_eq!(max_abs_diff(&a, &b), 0.0);
    let _ = std::fs::remove_dir_all(out);
}
