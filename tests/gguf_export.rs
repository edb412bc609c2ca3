//! GGUF export (issue 19) checked against the reference readers: a small student with a
//! BPE tokenizer is exported at every type kdl writes; gguf-py reads each file (metadata,
//! tensor names and shapes), re-quantizes the f32 export's tensors and must get kdl's
//! bytes; transformers loads each file and its logits must equal kdl's on the same file;
//! kdl loads its own exports back with the same tokenizer and the logits it wrote.

use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::process::Command;
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
