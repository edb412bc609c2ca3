//! GGUF loading against its references: every dequantizer against gguf-py, tiny llamas
//! (both tokenizer kinds) against transformers' logits and token ids, damaged files as
//! one-line errors, and the real SmolLM2-135M Q4_1 file answering " Paris". The
//! references come from tests/fixtures/gguf_reference.py, which ./setup.sh runs and
//! exports as KDL_FIXTURES_GGUF; the SmolLM2 file is KDL_SMOLLM2.

use kdl::engine::checkpoint::load_hf_dir;
use kdl::engine::gguf::dequant::dequantize;
use kdl::engine::gguf::reader::Gguf;
use kdl::engine::gguf::{load_gguf, GgufModel};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

const CASES: [&str; 2] = ["tiny_gpt2", "tiny_spm"];
const LOGIT_TOLERANCE: f64 = 1e-4;
/// SmolLM2's id for " Paris".
const PARIS: i64 = 7042;

fn fixtures() -> PathBuf {
    let dir = std::env::var_os("KDL_FIXTURES_GGUF").map(PathBuf::from).expect("KDL_FIXTURES_GGUF is unset: run ./setup.sh (it makes the GGUF reference files)");
    assert!(dir.join("dequant.gguf").is_file(), "{} has no GGUF fixtures: run ./setup.sh", dir.display());
    dir
}

fn safetensors(path: &Path) -> Vec<(String, Tensor)> {
    Tensor::read_safetensors(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn get(tensors: &[(String, Tensor)], name: &str) -> Tensor {
    tensors.iter().find(|(k, _)| k == name).map(|(_, t)| t.shallow_clone()).unwrap_or_else(|| panic!("no {name}"))
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

fn load(path: &Path) -> GgufModel {
    load_gguf(path, Device::Cpu).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_dequantizer_matches_gguf_py_exactly() {
    let dir = fixtures();
    let g = Gguf::open(&dir.join("dequant.gguf")).unwrap();
    let expected = safetensors(&dir.join("dequant.safetensors"));
    let mut checked = Vec::new();
    for info in &g.tensors {
        let values = dequantize(info.ty, g.tensor_bytes(info).unwrap(), info.elements() as usize).unwrap_or_else(|| panic!("{} ({})", info.name, info.ty.name()));
        let ours = Tensor::from_slice(&values).view(info.torch_shape().as_slice());
        let theirs = get(&expected, &info.name);
        assert_eq!(ours.size(), theirs.size(), "{}", info.name);
        // Bitwise: same values, same signed zeros.
        let same = ours.view_dtype(Kind::Int).equal(&theirs.view_dtype(Kind::Int));
        assert!(same, "{} ({}): max |Δ| = {:e}", info.name, info.ty.name(), max_abs_diff(&ours, &theirs));
        checked.push(info.ty.name());
    }
    for ty in ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K"] {
        assert!(checked.iter().any(|c| c == ty), "no {ty} tensor in the fixture");
    }
}

#[test]
fn gguf_logits_match_transformers_on_the_same_weights() {
    for case in CASES {
        let dir = fixtures().join(case);
        let m = load(&dir.join("model.gguf"));
        let reference = safetensors(&dir.join("reference.safetensors"));
        let (ids, expected) = (get(&reference, "input_ids"), get(&reference, "logits"));
        let logits = tch::no_grad(|| m.model.forward(&ids, None));
        let d = max_abs_diff(&logits, &expected);
        assert!(d <= LOGIT_TOLERANCE, "{case}: max |Δlogit| vs transformers = {d:e}");
        let hf = load_hf_dir(&dir.join("hf"), Device::Cpu).unwrap();
        let d = max_abs_diff(&logits, &tch::no_grad(|| hf.forward(&ids, None)));
        assert!(d <= 1e-5, "{case}: max |Δlogit| vs the same weights as an HF folder = {d:e}");
        assert_eq!(m.model.spec.hf_config(), hf.spec.hf_config(), "{case}: the spec read from metadata");
    }
}

#[test]
fn metadata_fills_name_special_ids_template_and_summary() {
    let m = load(&fixtures().join("tiny_gpt2/model.gguf"));
    assert_eq!(m.name.as_deref(), Some("tiny tiny_gpt2"));
    assert_eq!((m.bos, m.eos), (Some(1), Some(2)));
    assert!(m.chat_template.as_deref().is_some_and(|t| t.contains("<|im_start|>")));
    assert_eq!(m.quant_summary, "5 F32, 4 Q4_0, 4 Q4_1, 3 Q8_0, 2 F16, 2 BF16");
    assert!(m.model.spec.tie && m.notes.is_empty(), "{:?}", m.notes);
    let untied = load(&fixtures().join("tiny_spm/model.gguf"));
    assert!(!untied.model.spec.tie && untied.model.spec.kv_heads == 4);
}

#[test]
fn tokenizer_ids_match_transformers_from_the_same_gguf() {
    for case in CASES {
        let dir = fixtures().join(case);
        let tok = load(&dir.join("model.gguf")).tokenizer.unwrap_or_else(|| panic!("{case}: no tokenizer"));
        let text = std::fs::read_to_string(dir.join("tokens.json")).unwrap();
        let samples: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        for s in samples {
            let (text, want) = (s["text"].as_str().unwrap(), s["ids"].as_array().unwrap());
            let want: Vec<u32> = want.iter().map(|v| v.as_u64().unwrap() as u32).collect();
            let got = tok.encode(text, true).unwrap().get_ids().to_vec();
            assert_eq!(got, want, "{case}: {text:?}");
        }
    }
}

fn assert_one_line(err: &str, parts: &[&str]) {
    assert!(!err.contains('\n'), "not one line: {err}");
    for p in parts {
        assert!(err.contains(p), "{err:?} does not mention {p:?}");
    }
}

/// The fixture's one Q5_0 tensor (blk.1.attn_v, the rest as in tiny_gpt2) reads since
/// GGUF export falls back to Q5_0: every value is within a step (max|block| / 16) of the
/// plain model's (kdl's values equal gguf-py's dequantization, checked by hand), and the
/// model runs.
#[test]
fn a_q5_0_tensor_reads_within_a_step() {
    let tensor = |file: &str| {
        let g = Gguf::open(&fixtures().join(file)).unwrap();
        let t = g.tensors.iter().find(|t| t.name == "blk.1.attn_v.weight").unwrap();
        (t.ty.name(), dequantize(t.ty, g.tensor_bytes(t).unwrap(), t.elements() as usize).unwrap())
    };
    let ((q5_type, q5), (_, plain)) = (tensor("q5_0.gguf"), tensor("tiny_gpt2/model.gguf"));
    assert_eq!(q5_type, "Q5_0");
    for (a, b) in q5.chunks(32).zip(plain.chunks(32)) {
        let step = b.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 16.0;
        let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
        // Half a step, or a whole one at the end opposite the block's largest value, which
        // Q5_0's 32 levels (-16..15 steps) reach only to 15/16.
        assert!(worst <= step + 1e-3, "off by {worst}, a step is {step}");
    }
    let q5_model = load(&fixtures().join("q5_0.gguf")).model;
    let ids = Tensor::from_slice(&[1i64, 7, 30, 2, 11]).unsqueeze(0);
    assert!(bool::try_from(tch::no_grad(|| q5_model.forward(&ids, None)).isfinite().all()).unwrap());
}

/// A type kdl does not read (here Q5_1, written into the Q5_0 fixture's tensor) is a
/// one-line error naming the file, the tensor and what kdl reads.
#[test]
fn unsupported_tensor_types_are_one_line_errors() {
    use kdl::engine::gguf::dequant::GgmlType;
    use kdl::engine::gguf::writer::{write, TensorOut};
    let g = Gguf::open(&fixtures().join("q5_0.gguf")).unwrap();
    let metadata: Vec<(String, kdl::engine::gguf::reader::Value)> = g.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let tensors: Vec<TensorOut> = g
        .tensors
        .iter()
        .map(|t| {
            let ty = if t.name == "blk.1.attn_v.weight" { GgmlType(7) } else { t.ty };
            TensorOut { name: t.name.clone(), shape: t.dims.iter().rev().copied().collect(), ty, data: g.tensor_bytes(t).unwrap().to_vec() }
        })
        .collect();
    let path = scratch("q5_1.gguf");
    write(&mut std::fs::File::create(&path).unwrap(), &metadata, &tensors).unwrap();
    let err = load_gguf(&path, Device::Cpu).err().expect("Q5_1 is refused");
    let want = "tensor blk.1.attn_v.weight is Q5_1, which kdl cannot dequantize (kdl reads F32, F16, BF16, Q8_0, Q5_0, Q4_0, Q4_1, Q4_K, Q6_K)";
    assert_one_line(&err, &[&path.display().to_string(), want]);
    let _ = std::fs::remove_file(&path);
}

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("kdl-gguf-{}-{name}", std::process::id()))
}

/// The tiny model's bytes with `from` replaced by `to` (same length) at its first place.
fn patched(from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut bytes = std::fs::read(fixtures().join("tiny_gpt2/model.gguf")).unwrap();
    let at = bytes.windows(from.len()).position(|w| w == from).expect("the bytes to patch");
    bytes[at..at + to.len()].copy_from_slice(to);
    bytes
}

#[test]
fn unexpected_missing_and_misshapen_tensors_are_one_line_errors() {
    let path = scratch("patched.gguf");
    let file = path.display().to_string();
    std::fs::write(&path, patched(b"blk.1.ffn_up.weight", b"blk.7.ffn_up.weight")).unwrap();
    let err = load_gguf(&path, Device::Cpu).err().unwrap();
    assert_one_line(&err, &[&file, "unexpected tensor blk.7.ffn_up.weight"]);
    std::fs::write(&path, patched(b"output_norm.weight", b"output_norm.weighs")).unwrap();
    let err = load_gguf(&path, Device::Cpu).err().unwrap();
    assert_one_line(&err, &[&file, "unexpected tensor output_norm.weighs"]);
    // One tensor fewer in the header's count drops the last entry, output_norm.
    let mut bytes = std::fs::read(fixtures().join("tiny_gpt2/model.gguf")).unwrap();
    let count = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
    bytes[8..16].copy_from_slice(&(count - 1).to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let err = load_gguf(&path, Device::Cpu).err().unwrap();
    assert_one_line(&err, &[&file, "missing tensor model.norm.weight"]);
    // feed_forward_length: key, then type u32 (4), then the value 192 -> 128.
    let key = b"llama.feed_forward_length";
    let mut with_value = key.to_vec();
    with_value.extend(4u32.to_le_bytes());
    let mut changed = with_value.clone();
    with_value.extend(192u32.to_le_bytes());
    changed.extend(128u32.to_le_bytes());
    std::fs::write(&path, patched(&with_value, &changed)).unwrap();
    let err = load_gguf(&path, Device::Cpu).err().unwrap();
    assert_one_line(&err, &[&file, "mlp.", "has shape", "the metadata says"]);
    let _ = std::fs::remove_file(path);
}

#[test]
fn truncated_files_are_one_line_errors() {
    let bytes = std::fs::read(fixtures().join("tiny_gpt2/model.gguf")).unwrap();
    let path = scratch("truncated.gguf");
    for cut in [3, 10, 30, 200, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let err = load_gguf(&path, Device::Cpu).err().unwrap_or_else(|| panic!("cut at {cut} loaded"));
        let what = if cut < 4 { "not a GGUF" } else { "truncated file" };
        assert_one_line(&err, &[&path.display().to_string(), what]);
    }
    let _ = std::fs::remove_file(path);
}

#[test]
fn damaged_files_never_panic() {
    let bytes = std::fs::read(fixtures().join("tiny_gpt2/model.gguf")).unwrap();
    let path = scratch("damaged.gguf");
    // Damage falls where lengths, counts, types and dims live: the header with the model's
    // metadata, and the tensor index (which starts at the first tensor's name).
    let index = bytes.windows(17).position(|w| w == b"token_embd.weight").expect("a tensor index");
    let windows = [(0, 1024), (index - 8, index + 2048)];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..400 {
        let (from, to) = windows[round % 2];
        let mut damaged = bytes.clone();
        for _ in 0..1 + next() % 4 {
            let at = from + (next() % (to - from) as u64) as usize;
            damaged[at] = next() as u8;
        }
        std::fs::write(&path, &damaged).unwrap();
        if let Err(e) = load_gguf(&path, Device::Cpu) {
            assert!(!e.contains('\n') && e.starts_with(&path.display().to_string()), "{e}");
        }
    }
    let _ = std::fs::remove_file(path);
}

/// A GGUF v3 file with string metadata and no tensors.
fn gguf_with_strings(kvs: &[(&str, &str)]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend((kvs.len() as u64).to_le_bytes());
    for (k, v) in kvs {
        for s in [k, v] {
            b.extend((s.len() as u64).to_le_bytes());
            b.extend(s.as_bytes());
            if s == k {
                b.extend(8u32.to_le_bytes());
            }
        }
    }
    b
}

#[test]
fn other_files_and_architectures_are_one_line_errors() {
    let path = scratch("other.gguf");
    std::fs::write(&path, "{\"not\": \"a model\"}").unwrap();
    let err = load_gguf(&path, Device::Cpu).err().unwrap();
    assert_one_line(&err, &[&path.display().to_string(), "not a GGUF file"]);
    std::fs::write(&path, gguf_with_strings(&[("general.architecture", "gpt2")])).unwrap();
    let err = load_gguf(&path, Device::Cpu).err().unwrap();
    assert_one_line(&err, &[&path.display().to_string(), "architecture gpt2 is not supported"]);
    std::fs::write(&path, gguf_with_strings(&[("general.architecture", "llama")])).unwrap();
    let err = load_gguf(&path, Device::Cpu).err().unwrap();
    assert_one_line(&err, &[&path.display().to_string(), "llama.block_count is missing"]);
    let missing = scratch("missing.gguf");
    let err = load_gguf(&missing, Device::Cpu).err().unwrap();
    assert_one_line(&err, &[&missing.display().to_string()]);
    let _ = std::fs::remove_file(path);
}

#[test]
fn smollm2_q4_1_says_paris() {
    let path = std::env::var_os("KDL_SMOLLM2").map(PathBuf::from).expect("KDL_SMOLLM2 is unset: run ./setup.sh (it downloads SmolLM2-135M-Instruct.Q4_1.gguf)");
    let start = Instant::now();
    let m = load(&path);
    println!("loaded {} in {:.2} s ({})", path.display(), start.elapsed().as_secs_f64(), m.quant_summary);
    assert_eq!(m.quant_summary, "210 Q4_1, 61 F32, 1 Q8_0");
    let s = &m.model.spec;
    assert_eq!((s.layers, s.dim, s.heads, s.kv_heads, s.ffn, s.vocab, s.tie), (30, 576, 9, 3, 1536, Some(49152), true));
    assert_eq!((s.rope_theta, s.max_seq), (100000.0, 8192));
    let tok = m.tokenizer.as_ref().expect("SmolLM2's gpt2 tokenizer");
    let ids: Vec<i64> = tok.encode("The capital of France is", true).unwrap().get_ids().iter().map(|&i| i as i64).collect();
    let logits = tch::no_grad(|| m.model.forward(&Tensor::from_slice(&ids).unsqueeze(0), None));
    let last = logits.select(1, ids.len() as i64 - 1).squeeze().softmax(-1, Kind::Float);
    let (p, best) = (last.max().double_value(&[]), last.argmax(0, false).int64_value(&[]));
    assert_eq!(best, PARIS, "argmax is {best} ({:?}), p = {p:.3}", tok.decode(&[best as u32], false));
    assert_eq!(tok.decode(&[best as u32], false).unwrap(), " Paris");
    assert!(p > 0.5, "p(Paris) = {p:.3}");
}
