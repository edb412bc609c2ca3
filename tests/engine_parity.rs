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
    save_hf_dir(&model, &out, &[]).unwrap();
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
