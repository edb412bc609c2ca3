//! Bakes an rpath to libtorch's `lib/` into every binary, test and bench, so `kdl` runs
//! without LD_LIBRARY_PATH, keeps libtorch's CUDA half linked, and compiles the
//! CUDA-graph shim (csrc/) against the same wheel's headers. libtorch is found through
//! LIBTORCH and the CUDA headers the shim needs through KDL_CUDA_HEADERS, which
//! ./setup.sh sets in .cargo/libtorch.toml.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=KDL_CUDA_HEADERS");
    println!("cargo:rerun-if-changed=csrc/cuda_graph.cpp");
    let Some(dir) = std::env::var_os("LIBTORCH").map(PathBuf::from) else {
        fail("LIBTORCH is not set");
    };
    let lib = match dir.join("lib").canonicalize() {
        Ok(p) if p.join("libtorch_cpu.so").exists() => p,
        _ => fail(&format!("no libtorch at {}", dir.display())),
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    build_cpu_shims(&dir);
    // Nothing in kdl calls libtorch_cuda directly (its kernels register themselves when it
    // loads), so rustc's default `--as-needed` drops it and tch then finds no CUDA even on
    // a GPU machine (tch-rs #907, #980). Keep it, and c10_cuda, whenever the wheel has
    // them; without a GPU they load and report zero devices.
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-search=native={}", lib.display());
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        for name in ["torch_cuda", "c10_cuda"] {
            println!("cargo:rustc-link-arg=-l{name}");
        }
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
        if let Some(headers) = cuda_headers(&lib) {
            build_graph_shim(&dir, &lib, &headers);
        }
    }
    println!("cargo:rustc-check-cfg=cfg(kdl_cuda_graphs)");
}

/// csrc/autocast.cpp (CPU and CUDA autocast) and csrc/optim.cpp (ATen's fused AdamW):
/// both need only ATen's own headers.
fn build_cpu_shims(torch: &std::path::Path) {
    for (file, name) in [("csrc/autocast.cpp", "kdl_autocast"), ("csrc/optim.cpp", "kdl_optim")] {
        println!("cargo:rerun-if-changed={file}");
        let mut build = cc::Build::new();
        build.cpp(true).file(file).flag("-std=c++17").define("_GLIBCXX_USE_CXX11_ABI", "1").warnings(false);
        for include in [torch.join("include"), torch.join("include/torch/csrc/api/include")] {
            build.flag("-isystem").flag(include.display().to_string());
        }
        build.compile(name);
    }
}

/// The include folders the shim needs besides torch's own: the wheel's CUDA runtime
/// headers and the header-only `nvidia-cuda-crt` / `nvidia-cuda-cccl` wheels that
/// ./setup.sh unpacks (torch does not depend on them). None when they are missing: kdl
/// then builds without graphs and says so when asked for one.
fn cuda_headers(lib: &std::path::Path) -> Option<Vec<PathBuf>> {
    let runtime = lib.join("../../nvidia/cu13/include");
    let extra = PathBuf::from(std::env::var_os("KDL_CUDA_HEADERS")?);
    let dirs = vec![runtime, extra.clone(), extra.join("cccl")];
    let found = |f: &str| dirs.iter().any(|d| d.join(f).exists());
    (found("cuda_runtime_api.h") && found("crt/host_config.h")).then_some(dirs)
}

fn build_graph_shim(torch: &std::path::Path, lib: &std::path::Path, headers: &[PathBuf]) {
    let mut build = cc::Build::new();
    build.cpp(true).file("csrc/cuda_graph.cpp").flag("-std=c++17").define("_GLIBCXX_USE_CXX11_ABI", "1").warnings(false);
    for include in [torch.join("include"), torch.join("include/torch/csrc/api/include")].iter().chain(headers) {
        build.flag("-isystem").flag(include.display().to_string());
    }
    build.compile("kdl_cuda_graph");
    // Header-inline code in the shim calls cudart directly (cudaGetLastError, ...).
    let cudart = lib.join("../../nvidia/cu13/lib");
    println!("cargo:rustc-link-search=native={}", cudart.display());
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    for name in ["-ltorch_cuda", "-lc10_cuda", "-ltorch_cpu", "-lc10", "-l:libcudart.so.13"] {
        println!("cargo:rustc-link-arg={name}");
    }
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", cudart.display());
    println!("cargo:rustc-cfg=kdl_cuda_graphs");
}

fn fail(why: &str) -> ! {
    eprintln!("\nkdl: {why}. Run ./setup.sh once (it installs torch 2.11.0 into ~/.cache/kdl), then build again.\n");
    std::process::exit(1);
}
