//! GGUF export (issue 19) checked against the reference readers: a small student with a
//! BPE tokenizer is exported at every type kdl writes; gguf-py reads each file (metadata,
//! tensor names and shapes), re-quantizes the f32 export's tensors and must get kdl's
//! bytes; transformers loads each file and its logits must equal kdl's on the same file;
//! kdl loads its own exports back with the same tokenizer and the logits it wrote.

use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::process::Command;
use kdl::engine::gguf::dequant::GgmlType;
use kdl::engine::gguf::quant::quantize;
use tch::Tensor;

const TYPES: [&str; 5] = ["f32", "f16", "bf16", "q8_0", "q4_0"];
const IDS: [i64; 8] = [1, 5, 9, 33, 2, 7, 120, 299];

fn workdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kdl-gguf-export-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn kdl(dir: &Path, script: &str) -> (bool, String) {
    let path = dir.join("run.kd");
    std::fs::write(&path, script).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kdl")).args(["run", "--color", "never"]).arg(&path).env("KDL_CACHE", dir.join("cache")).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn logits(path: &Path) -> Tensor {
    Tensor::read_safetensors(path).unwrap().into_iter().find(|(n, _)| n == "logits").unwrap().1.squeeze_dim(0)
}

/// Logits rows `[[f32; vocab]; T]` from a fixture script's JSON as a `[T, vocab]` tensor.
fn rows(json: &Json, vocab: i64) -> Tensor {
    let rows: Vec<Vec<f32>> = serde_json::from_value(json.clone()).unwrap_or_else(|_| panic!("not logits rows: {json}"));
    Tensor::from_slice(&rows.concat()).view([-1, vocab])
}

/// Real llama.cpp's logits of `gguf` on the ids in `ids_json`, and its log.
fn llama_cpp_logits(llama_cpp: &Path, gguf: &Path, ids_json: &Path, vocab: i64) -> (Tensor, String) {
    let out = Command::new(std::env::var("KDL_PYTHON").expect("KDL_PYTHON is unset: run ./setup.sh"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama_cpp_logits.py"))
        .arg(gguf)
        .arg(ids_json)
        .env("PYTHONPATH", llama_cpp)
        .env("LLAMA_CPP_LIB", llama_cpp.join("llama_cpp_py_sync/libllama.so"))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "llama.cpp failed on {}: {log}", gguf.display());
    let report: Json = serde_json::from_slice(&out.stdout).unwrap();
    (rows(&report["logits"], vocab), log)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn exports_read_in_gguf_py_and_transformers_and_load_back_in_kdl() {
    let dir = workdir("all");
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/moby_dick.txt");
    let ids = format!("[{}]", IDS.map(|i| i.to_string()).join(", "));
    let mut script = format!(
        "tokenizer bpe(vocab=300, from={corpus:?})\n\
         student llama(layers=2, dim=64, heads=4, kv_heads=2, ffn=128, rope_theta=100000, seed=3)\n\
         save logits(student, {ids}) to \"kdl.safetensors\"\n\
         print encode(student, \"Call me Ishmael.\")\n",
        corpus = corpus.display().to_string()
    );
    for ty in TYPES {
        script.push_str(&format!(
            "export(student, \"s-{ty}.gguf\", quant=\"{ty}\")\nlet back_{ty} = load(\"s-{ty}.gguf\")\nsave logits(back_{ty}, {ids}) to \"back-{ty}.safetensors\"\nprint encode(back_{ty}, \"Call me Ishmael.\")\n"
        ));
    }
    let (ok, said) = kdl(&dir, &script);
    assert!(ok, "{said}");
    assert!(said.contains("as q8_0:") && said.contains("bits/weight"), "size and bits/weight are printed: {said}");
    // The tokenizer travels: every export encodes the text as the student does.
    let encodings: Vec<&str> = said.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(encodings.len(), 1 + TYPES.len(), "{said}");
    assert!(encodings.iter().all(|e| *e == encodings[0]), "{encodings:?}");

    // kdl reads back what it wrote: f32 exactly, the others within their rounding.
    let ours = logits(&dir.join("kdl.safetensors"));
    for (ty, tolerance) in [("f32", 1e-6), ("f16", 1e-3), ("bf16", 1e-2), ("q8_0", 1e-2), ("q4_0", 0.15)] {
        let d = max_diff(&logits(&dir.join(format!("back-{ty}.safetensors"))), &ours);
        eprintln!("{ty}: kdl's logits from its own export differ from the model's by {d:.2e}");
        assert!(d < tolerance, "{ty}: {d}");
    }

    std::fs::write(dir.join("ids.json"), serde_json::to_string(&IDS).unwrap()).unwrap();
    let python = std::env::var("KDL_PYTHON").expect("KDL_PYTHON is unset: run ./setup.sh");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf_export_check.py");
    let files: Vec<PathBuf> = TYPES.iter().map(|t| dir.join(format!("s-{t}.gguf"))).collect();
    let out = Command::new(python).arg(script).args(&files).arg("--hf").arg(dir.join("ids.json")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Json = serde_json::from_slice(&out.stdout).unwrap();

    for ty in TYPES {
        let file = &report["files"][format!("s-{ty}.gguf")];
        let meta = &file["metadata"];
        let want_ftype = match ty {
            "f32" => 0,
            "f16" => 1,
            "q4_0" => 2,
            "q8_0" => 7,
            _ => 32,
        };
        for (key, want) in [
            ("general.architecture", Json::from("llama")),
            ("general.file_type", Json::from(want_ftype)),
            ("llama.block_count", Json::from(2)),
            ("llama.embedding_length", Json::from(64)),
            ("llama.feed_forward_length", Json::from(128)),
            ("llama.attention.head_count", Json::from(4)),
            ("llama.attention.head_count_kv", Json::from(2)),
            ("llama.rope.freq_base", Json::from(100000.0)),
            ("llama.rope.dimension_count", Json::from(16)),
            ("llama.vocab_size", Json::from(300)),
            ("llama.context_length", Json::from(2048)),
            ("tokenizer.ggml.model", Json::from("gpt2")),
            ("tokenizer.ggml.pre", Json::from("smollm")),
        ] {
            assert_eq!(meta[key], want, "{ty}: {key}");
        }
        assert!((meta["llama.attention.layer_norm_rms_epsilon"].as_f64().unwrap() - 1e-5).abs() < 1e-9);
        assert_eq!(meta["tokenizer.ggml.tokens"]["len"], 300);
        assert!(meta["tokenizer.ggml.merges"]["len"].as_u64().unwrap() > 0);
        let tensors = &file["tensors"];
        assert_eq!(tensors.as_object().unwrap().len(), 2 + 2 * 9, "{ty}: tied, so no output.weight: {tensors}");
        assert!(tensors.get("output.weight").is_none());
        assert_eq!(tensors["token_embd.weight"]["shape"], serde_json::json!([64, 300]), "ne is fastest-first");
        assert_eq!(tensors["blk.1.attn_k.weight"]["shape"], serde_json::json!([64, 32]));
        assert_eq!(tensors["blk.0.ffn_down.weight"]["shape"], serde_json::json!([128, 64]));
        assert_eq!(tensors["output_norm.weight"]["type"], "F32", "1-D tensors stay f32");
        if ty != "f32" {
            let checks = report["bytes_equal"][format!("s-{ty}.gguf")].as_object().unwrap();
            assert!(!checks.is_empty());
            for (name, equal) in checks {
                assert_eq!(equal, &Json::Bool(true), "{ty}: {name}: kdl's bytes differ from gguf-py's");
            }
        }
        // transformers' loader (dequantized by gguf-py, q/k un-permuted) runs the same
        // model kdl reads from the file.
        let theirs = rows(&report["hf"][format!("s-{ty}.gguf")], 300);
        let d = max_diff(&theirs, &logits(&dir.join(format!("back-{ty}.safetensors"))));
        eprintln!("{ty}: transformers vs kdl on the same export: {d:.2e}");
        assert!(d < 1e-4, "{ty}: {d}");
    }
    assert_eq!(report["files"]["s-q4_0.gguf"]["tensors"]["token_embd.weight"]["type"], "Q8_0", "the tied head keeps 8 bits under q4_0");

    // Real llama.cpp runs every export. Its CPU matmuls take f16 activations against f16
    // and bf16 weights and Q8_0 activations against the quantized ones, so only f32
    // compares tightly; the rest are held to that extra rounding.
    let Some(llama_cpp) = llama_cpp() else { return };
    for (ty, tolerance) in [("f32", 1e-5), ("f16", 2e-3), ("bf16", 1e-2), ("q8_0", 2e-2), ("q4_0", 2e-2)] {
        let (theirs, _) = llama_cpp_logits(&llama_cpp, &dir.join(format!("s-{ty}.gguf")), &dir.join("ids.json"), 300);
        let kdl = logits(&dir.join(format!("back-{ty}.safetensors")));
        let d = max_diff(&theirs, &kdl);
        eprintln!("{ty}: llama.cpp vs kdl on the same export: {d:.2e}");
        assert!(d < tolerance, "{ty}: llama.cpp's logits differ from kdl's by {d}");
        assert_eq!(theirs.argmax(-1, false), kdl.argmax(-1, false), "{ty}: the same next token at every position");
    }
}

/// The llama.cpp that ./setup.sh installs (tests/fixtures/llama_cpp_install.py), or
/// `None` with the reason printed.
fn llama_cpp() -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("KDL_LLAMA_CPP").map(PathBuf::from) else {
        eprintln!("skipped llama.cpp: KDL_LLAMA_CPP is unset (run ./setup.sh)");
        return None;
    };
    if let Ok(why) = std::fs::read_to_string(dir.join("unavailable.txt")) {
        eprintln!("skipped llama.cpp: {why}");
        return None;
    }
    Some(dir)
}

#[test]
fn export_errors_name_the_cause() {
    let dir = workdir("errors");
    let (ok, said) = kdl(&dir, "let m = llama(layers=1, dim=32, heads=2, vocab=64)\nexport(m, \"m.gguf\")");
    assert!(!ok && said.contains("a GGUF file carries its tokenizer, and this model has none"), "{said}");
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/moby_dick.txt");
    let base = format!("tokenizer bpe(vocab=300, from={:?})\nstudent llama(layers=1, dim=32, heads=2)\n", corpus.display().to_string());
    let (ok, said) = kdl(&dir, &format!("{base}export(student, \"m.gguf\", quant=\"q3\")"));
    assert!(!ok && said.contains("unknown GGUF type \"q3\"") && said.contains("q8_0"), "{said}");
    let (ok, said) = kdl(&dir, &format!("{base}export(student, \"m.bin\")"));
    assert!(!ok && said.contains("does not end with .gguf"), "{said}");
    let (ok, said) = kdl(&dir, &format!("{base}export(lora(student, rank=2), \"m.gguf\")"));
    assert!(!ok && said.contains("merge(base, adapter) first"), "{said}");
    assert!(!said.contains("panicked"), "{said}");
    assert!(!dir.join("m.gguf").exists(), "a failed export leaves nothing");
}

/// `kdl export RUN OUT.gguf --quant q8_0` exports a run's newest checkpoint; a bad type
/// or a missing source is a one-line error with exit 2.
#[test]
fn kdl_export_writes_a_runs_newest_checkpoint() {
    let dir = workdir("cli");
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/moby_dick.txt");
    let (ok, said) = kdl(
        &dir,
        &format!(
            "tokenizer bpe(vocab=300, from={c:?})\nstudent llama(layers=1, dim=32, heads=2)\ndata text({c:?})\nloss ce\ntrain(steps=2, batch=2, seq=32, out=\"runs/r\", save_every=1)\n",
            c = corpus.display().to_string()
        ),
    );
    assert!(ok, "{said}");
    let export = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_kdl")).arg("export").args(args).current_dir(&dir).env("KDL_CACHE", dir.join("cache")).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (code, out, err) = export(&["runs/r", "r.gguf", "--quant", "q8_0"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("step-000002") && out.contains("as q8_0"), "the newest checkpoint: {out}");
    assert!(dir.join("r.gguf").is_file());
    let (code, _, err) = export(&["runs/r", "r.gguf", "--quant", "q9"]);
    assert_eq!((code, err.trim().lines().count()), (Some(2), 1), "{err}");
    assert!(err.contains("unknown GGUF type \"q9\""), "{err}");
    let (code, _, err) = export(&["nothere", "r.gguf"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("nothere: no such file or folder"), "{err}");
}

/// The real teacher, SmolLM2-135M-Instruct, exported to Q8_0: the same tokenizer ids and
/// greedy text from kdl's load of the export, and llama.cpp runs it with SmolLM2's
/// special tokens and the same next token at every position (its logits differ by its
/// own Q8_0 rounding of the activations through 30 layers).
#[test]
fn the_real_teacher_exports_to_q8_0_and_runs_in_llama_cpp() {
    if std::env::var_os("KDL_SMOLLM2").is_none() {
        eprintln!("skipped: KDL_SMOLLM2 is unset (./setup.sh fetches the teacher)");
        return;
    }
    let dir = workdir("smollm2");
    let ids = [504i64, 3575, 282, 4649, 314];
    let list = format!("[{}]", ids.map(|i| i.to_string()).join(", "));
    let (ok, said) = kdl(
        &dir,
        &format!(
            "let t = load(\"smollm2\")\nexport(t, \"smol.gguf\", quant=\"q8_0\")\nlet b = load(\"smol.gguf\")\nsave logits(b, {list}) to \"smol.safetensors\"\n\
             print encode(t, \"The capital of France is\")\nprint encode(b, \"The capital of France is\")\n\
             print generate(t, \"The capital of France is\", max=6, temp=0, stream=false)\nprint generate(b, \"The capital of France is\", max=6, temp=0, stream=false)\n"
        ),
    );
    assert!(ok, "{said}");
    let printed: Vec<&str> = said.lines().filter(|l| !l.starts_with("loaded") && !l.starts_with("exported") && !l.starts_with("saved")).collect();
    assert!(printed.len() >= 4 && printed[0] == printed[1], "the same ids: {printed:?}");
    assert!(said.contains("Paris"), "{said}");
    let Some(llama_cpp) = llama_cpp() else { return };
    std::fs::write(dir.join("ids.json"), serde_json::to_string(&ids).unwrap()).unwrap();
    let (theirs, log) = llama_cpp_logits(&llama_cpp, &dir.join("smol.gguf"), &dir.join("ids.json"), 49152);
    assert!(log.contains("tokenizer.ggml.pre str              = smollm") && log.contains("EOS token             = 2 '<|im_end|>'"), "{log}");
    assert!(log.contains("tokenizer.chat_template"), "the chat template travels");
    let kdl = logits(&dir.join("smol.safetensors"));
    let d = max_diff(&theirs, &kdl);
    eprintln!("SmolLM2 q8_0: llama.cpp vs kdl on the same export: {d:.2}");
    assert!(d < 1.5, "{d}");
    assert_eq!(theirs.argmax(-1, false), kdl.argmax(-1, false));
}

/// Rows that reach every branch of ggml's block searches, then plain Gaussian weights:
/// all zero, one outlier, all positive, all negative, below ggml's epsilon, constant,
/// a zero group among live ones, large values, a group whose scale rounds to zero, and
/// values on exact rounding ties.
fn probe_rows(n: usize, rows: usize) -> Vec<f32> {
    tch::manual_seed(19);
    let mut v: Vec<f32> = Vec::<f32>::try_from((Tensor::randn([(rows * n) as i64], (tch::Kind::Float, tch::Device::Cpu)) * 0.05).contiguous()).unwrap();
    let row = |r: usize| r * n..(r + 1) * n;
    let r = row(0);
    v[r].fill(0.0);
    let r = row(1);
    v[r.clone()].fill(0.0);
    v[r.start + 37] = 3.0;
    let r = row(2);
    v[r.clone()].iter_mut().for_each(|x| *x = x.abs());
    let r = row(3);
    v[r.clone()].iter_mut().for_each(|x| *x = -x.abs());
    let r = row(4);
    v[r.clone()].iter_mut().for_each(|x| *x *= 1e-20);
    let r = row(5);
    v[r].fill(0.7);
    let r = row(6);
    v[r.start..r.start + 32].fill(0.0);
    let r = row(7);
    v[r.clone()].iter_mut().for_each(|x| *x *= 2000.0);
    let r = row(8);
    v[r.start + 64..r.start + 96].iter_mut().for_each(|x| *x *= 1e-4);
    let r = row(9);
    v[r.clone()].iter_mut().enumerate().for_each(|(i, x)| *x = ((i % 17) as f32 - 8.0) / 8.0);
    v
}

/// kdl's block encoders against llama.cpp's `ggml_quantize_chunk` (the reference
/// encoders llama-quantize runs without an importance matrix), byte for byte, for the
/// K-quants gguf-py cannot make and the legacy types it can.
#[test]
fn block_encoders_match_ggml_quantize_chunk_byte_for_byte() {
    let Some(llama_cpp) = llama_cpp() else { return };
    let dir = workdir("chunk");
    let n = 512;
    let values = probe_rows(n, 24);
    std::fs::write(dir.join("values.f32"), values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    for (name, ty) in [("q4_k", GgmlType::Q4_K), ("q6_k", GgmlType::Q6_K), ("q8_0", GgmlType::Q8_0), ("q5_0", GgmlType::Q5_0), ("q4_0", GgmlType::Q4_0)] {
        let out = dir.join(format!("{name}.bin"));
        let run = Command::new(std::env::var("KDL_PYTHON").expect("KDL_PYTHON is unset: run ./setup.sh"))
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama_cpp_quantize.py"))
            .args(["chunk", dir.join("values.f32").to_str().unwrap(), &n.to_string(), name, out.to_str().unwrap()])
            .env("PYTHONPATH", &llama_cpp)
            .env("LLAMA_CPP_LIB", llama_cpp.join("llama_cpp_py_sync/libllama.so"))
            .output()
            .unwrap();
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        let theirs = std::fs::read(&out).unwrap();
        let ours = quantize(ty, &values).unwrap();
        assert_eq!(ours.len(), theirs.len(), "{name}");
        let (_, bytes) = ty.block().unwrap();
        let differing: Vec<usize> = ours.chunks(bytes).zip(theirs.chunks(bytes)).enumerate().filter(|(_, (a, b))| a != b).map(|(i, _)| i).collect();
        assert!(differing.is_empty(), "{name}: {} of {} blocks differ from ggml's, the first {:?}", differing.len(), ours.len() / bytes, &differing[..differing.len().min(8)]);
    }
}

/// llama_model_quantize run on kdl's f32 export, tensor by tensor against kdl's own
/// export at the same type: the same type for every tensor (Q4_K_M's Q6_K layers and
/// head, the K-quant fallbacks where rows are not whole super-blocks) and the same bytes.
fn same_as_llama_quantize(llama_cpp: &Path, dir: &Path, stem: &str, ty: &str, ftype: u32) {
    let run = Command::new(std::env::var("KDL_PYTHON").expect("KDL_PYTHON is unset: run ./setup.sh"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama_cpp_quantize.py"))
        .arg("model")
        .arg(dir.join(format!("{stem}-f32.gguf")))
        .arg(ftype.to_string())
        .arg(dir.join(format!("{stem}-{ty}-llama.gguf")))
        .arg(dir.join(format!("{stem}-{ty}.gguf")))
        .env("PYTHONPATH", llama_cpp)
        .env("LLAMA_CPP_LIB", llama_cpp.join("llama_cpp_py_sync/libllama.so"))
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let report: Json = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["file_type"], serde_json::json!([ftype, ftype]), "{stem} {ty}: general.file_type");
    let tensors = report["tensors"].as_object().unwrap();
    assert!(tensors.len() > 10, "{report}");
    for (name, t) in tensors {
        assert_eq!(t["ours"], t["theirs"], "{stem} {ty}: {name} has another type than llama-quantize gives it");
        assert_eq!(t["bytes_equal"], true, "{stem} {ty}: {name} ({}) differs from llama-quantize's bytes", t["ours"]);
    }
    let count = |want: &str| tensors.values().filter(|t| t["ours"] == want).count();
    eprintln!("{stem} {ty}: {} tensors as llama-quantize makes them: {} Q4_K, {} Q6_K, {} Q5_0, {} Q8_0", tensors.len(), count("Q4_K"), count("Q6_K"), count("Q5_0"), count("Q8_0"));
}

/// Q4_K_M, Q6_K, Q4_0 and Q8_0 exports equal llama-quantize's files made from kdl's f32
/// export, on a student whose rows are whole 256-value super-blocks (8 layers, so the
/// Q4_K_M mix has Q6_K layers) and one whose 64-wide rows make every K-quant fall back;
/// kdl and llama.cpp load the Q4_K_M export and agree on its logits.
#[test]
fn k_quant_exports_match_llama_quantize_tensor_by_tensor() {
    let Some(llama_cpp) = llama_cpp() else { return };
    let dir = workdir("kquant");
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/moby_dick.txt");
    let ids = format!("[{}]", IDS.map(|i| i.to_string()).join(", "));
    let mut script = format!("tokenizer bpe(vocab=300, from={:?})\n", corpus.display().to_string());
    script.push_str("let wide = llama(layers=8, dim=256, heads=4, kv_heads=2, ffn=512, seed=5)\nlet narrow = llama(layers=2, dim=64, heads=4, kv_heads=2, ffn=128, seed=3)\n");
    for (stem, types) in [("wide", &["f32", "q4_k_m", "q6_k", "q4_0", "q8_0"][..]), ("narrow", &["f32", "q4_k_m", "q6_k"][..])] {
        for ty in types {
            script.push_str(&format!("export({stem}, \"{stem}-{ty}.gguf\", quant=\"{ty}\")\n"));
        }
    }
    script.push_str(&format!("save logits(wide, {ids}) to \"wide.safetensors\"\n"));
    for ty in ["q4_k_m", "q6_k"] {
        script.push_str(&format!("let back_{ty} = load(\"wide-{ty}.gguf\")\nsave logits(back_{ty}, {ids}) to \"back-{ty}.safetensors\"\n"));
    }
    let (ok, said) = kdl(&dir, &script);
    assert!(ok, "{said}");
    assert!(said.contains("note: 1 tensor with 128-value rows (blk.1.ffn_down.weight): not whole 256-value super-blocks of Q6_K, so Q8_0 (as llama-quantize does)"), "the fallback is noted: {said}");
    for (stem, ty, ftype) in [("wide", "q4_k_m", 15), ("wide", "q6_k", 18), ("wide", "q4_0", 2), ("wide", "q8_0", 7), ("narrow", "q4_k_m", 15), ("narrow", "q6_k", 18)] {
        same_as_llama_quantize(&llama_cpp, &dir, stem, ty, ftype);
    }

    // kdl reads its K-quant files back within the quantization error, and llama.cpp
    // runs them to the same logits kdl gets from them.
    let model = logits(&dir.join("wide.safetensors"));
    std::fs::write(dir.join("ids.json"), serde_json::to_string(&IDS).unwrap()).unwrap();
    for (ty, tolerance) in [("q4_k_m", 0.2), ("q6_k", 0.08)] {
        let back = logits(&dir.join(format!("back-{ty}.safetensors")));
        let d = max_diff(&back, &model);
        eprintln!("{ty}: kdl's logits from its export differ from the model's by {d:.2e}");
        assert!(d < tolerance, "{ty} (measured: 0.14 q4_k_m, 0.053 q6_k): {d}");
        let (theirs, _) = llama_cpp_logits(&llama_cpp, &dir.join(format!("wide-{ty}.gguf")), &dir.join("ids.json"), 300);
        let d = max_diff(&theirs, &back);
        eprintln!("{ty}: llama.cpp vs kdl on the same export: {d:.2e}");
        assert!(d < 2e-2, "{ty}: {d}");
        assert_eq!(theirs.argmax(-1, false), back.argmax(-1, false), "{ty}");
    }
}
