//! The device path, on a machine with a GPU or without one: libtorch's CUDA half is linked
//! (so a GPU machine finds its GPU instead of quietly training on the CPU), `kdl info`
//! says what it finds and why, asking for a CUDA device that is not here is a one-line
//! error with exit 2, and the CUDA runs skip with a printed reason when there is no GPU.

use std::process::Command;

fn kdl(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kdl")).args(args).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn gpu() -> bool {
    tch::Cuda::is_available()
}

/// `--as-needed` used to drop libtorch_cuda.so, and then libtorch registers no CUDA
/// runtime at all: `has_cudart` is the link, not the hardware (it is true without a GPU).
#[test]
fn libtorch_cuda_is_linked_and_info_says_what_it_finds() {
    assert!(tch::utils::has_cudart(), "libtorch_cuda.so is not linked into the test binary: build.rs must keep it with --no-as-needed");
    let (code, out, err) = kdl(&["info"]);
    assert_eq!(code, Some(0), "{err}");
    let cuda = out.lines().find(|l| l.starts_with("cuda ")).unwrap_or_else(|| panic!("no cuda line in {out}"));
    assert!(cuda.contains("built in (CUDA runtime 13."), "{cuda}");
    let devices = tch::Cuda::device_count();
    assert!(cuda.contains(&format!("devices: {devices}")), "{cuda}");
    if devices == 0 {
        assert!(cuda.contains("so kdl runs on the CPU") && (cuda.contains("no NVIDIA driver") || cuda.contains("sees no GPU")), "says why: {cuda}");
    }
    let bf16 = out.lines().find(|l| l.starts_with("bf16 ")).unwrap_or_else(|| panic!("no bf16 line in {out}"));
    assert!(bf16.contains("× f32 on this CPU (measured)") && (bf16.ends_with("picks bf16 here") || bf16.ends_with("picks f32 here")), "{bf16}");
}

#[test]
fn a_device_that_is_not_here_is_a_one_line_error_with_exit_2() {
    let (code, _, err) = kdl(&["run", "--device", "tpu", "-e", "print 1"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("unknown device \"tpu\"") && err.contains("\"cuda:N\""), "{err}");
    let (code, _, err) = kdl(&["run", "--device", "cuda:7", "-e", "print 1"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("there is no cuda:7 here"), "{err}");
    if gpu() {
        eprintln!("a GPU is present: --device cuda runs instead of failing");
        let (code, out, err) = kdl(&["run", "--device", "cuda", "-e", "print llama(layers=1, dim=32, heads=2, vocab=64)"]);
        assert_eq!(code, Some(0), "{err}");
        assert!(out.contains("cuda"), "{out}");
        return;
    }
    let (code, _, err) = kdl(&["run", "--device", "cuda", "-e", "print 1"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("--device cuda: no CUDA device is available here") && err.contains("kdl info"), "{err}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
    // In a script the same cause is an error at the argument, not a panic.
    let (code, _, err) = kdl(&["run", "--color", "never", "-e", "let m = llama(layers=1, dim=32, heads=2, vocab=64, device=\"cuda\")"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("no CUDA device is available here") && err.contains("device="), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// `--device cpu` is what `auto` means for the run: a model built with the default device
/// lands on the CPU even where a GPU is present.
#[test]
fn device_cpu_makes_auto_mean_the_cpu() {
    let (code, out, err) = kdl(&["run", "--device", "cpu", "-e", "print llama(layers=1, dim=32, heads=2, vocab=64)"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.contains("cuda"), "{out}");
}

/// kdl's CUDA-graph shim (csrc/cuda_graph.cpp) is compiled and linked wherever
/// ./setup.sh found its headers; without a GPU, making a graph is an error with CUDA's
/// own cause — a C++ exception caught in the shim, not an abort. With a GPU, a captured
/// computation replays on refilled inputs.
#[test]
fn the_graph_shim_is_built_and_without_a_gpu_a_graph_is_an_error_not_an_abort() {
    use kdl::engine::cuda_graph::{self, Graph};
    if !cuda_graph::built_in() {
        assert!(option_env!("KDL_CUDA_HEADERS").is_none(), "./setup.sh set KDL_CUDA_HEADERS but the shim was not built");
        eprintln!("skipped: {}", cuda_graph::NOT_BUILT);
        return;
    }
    let (cudart, devices) = cuda_graph::probe().expect("the probe never fails");
    assert!(cudart >= 13000, "CUDA runtime {cudart}");
    assert_eq!(devices as i64, tch::Cuda::device_count());
    if devices == 0 {
        let err = Graph::new().err().expect("no GPU, so no graph");
        eprintln!("without a GPU, Graph::new says: {err}");
        assert!(err.contains("CUDA") && !err.contains('\n'), "{err}");
        return;
    }
    let device = tch::Device::Cuda(0);
    let input = tch::Tensor::ones([1024], (tch::Kind::Float, device));
    // Warm up eagerly first, as torch.cuda.graph asks.
    let _ = (&input * 2.0 + 1.0).sum(tch::Kind::Float);
    let mut graph = Graph::new().expect("a graph on a GPU");
    let output = graph.capture(|| (&input * 2.0 + 1.0).sum(tch::Kind::Float)).expect("capture");
    let _ = input.shallow_clone().fill_(3.0);
    graph.replay().expect("replay");
    assert_eq!(output.double_value(&[]), 1024.0 * 7.0, "the replay read the refilled input");
}

/// `device=` on `generate` runs a copy of the model there for the call ("auto": where the
/// model lives); on `train` it must be where the student lives, since the student trains
/// in place. A device that is not here is an error at the argument.
#[test]
fn generate_and_train_take_a_device() {
    let model = "let m = llama(layers=1, dim=32, heads=2, vocab=64, seed=4, device=\"cpu\")";
    let gen = |device: &str| kdl(&["run", "--color", "never", "-e", &format!("{model}\nprint generate(m, [1, 2, 3], max=6, temp=0, stream=false, device=\"{device}\")")]);
    let (code, here, err) = gen("auto");
    assert_eq!(code, Some(0), "{err}");
    let (code, cpu, err) = gen("cpu");
    assert_eq!((code, &cpu), (Some(0), &here), "{err}");
    let (code, _, err) = gen("cuda:9");
    assert_ne!(code, Some(0));
    assert!(err.contains("there is no cuda:9 here") && err.contains("device=\"cuda:9\""), "at the argument: {err}");
    assert!(!err.contains("panicked"), "{err}");

    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/moby_dick.txt");
    let train = |built: &str, device: &str| {
        let script = format!(
            "tokenizer bpe(vocab=300, from={corpus:?})\nstudent llama(layers=1, dim=32, heads=2, device=\"{built}\")\ndata text({corpus:?})\nloss ce\ntrain(steps=1, dry=true, device=\"{device}\")",
            corpus = corpus.display().to_string()
        );
        kdl(&["run", "--color", "never", "-e", &script])
    };
    let (code, out, err) = train("cpu", "cpu");
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("train plan"), "{out}");
    if !gpu() {
        let (code, _, err) = train("cpu", "cuda");
        assert_ne!(code, Some(0));
        assert!(err.contains("no CUDA device is available here"), "{err}");
        eprintln!("no CUDA device here: generate(device=\"cuda\") and a CUDA student are checked on a GPU machine only");
        return;
    }
    let (code, _, err) = train("cpu", "cuda");
    assert_ne!(code, Some(0));
    assert!(err.contains("the student lives on cpu, so it trains there, not on cuda:0") && err.contains("llama(..., device=\"cuda:0\")"), "{err}");
    let (code, out, err) = train("cuda", "cuda");
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("train plan"), "{out}");
    let (code, on_gpu, err) = gen("cuda");
    assert_eq!((code, &on_gpu), (Some(0), &here), "greedy tokens of an f32 copy on the GPU: {err}");
}
