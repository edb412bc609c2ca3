//! Bakes an rpath to libtorch's `lib/` into every binary, test and bench, so `kdl` runs
//! without LD_LIBRARY_PATH, and keeps libtorch's CUDA half linked. libtorch is found
//! through LIBTORCH, which ./setup.sh sets in .cargo/libtorch.toml.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=build.rs");
    let Some(dir) = std::env::var_os("LIBTORCH").map(PathBuf::from) else {
        fail("LIBTORCH is not set");
    };
    let lib = match dir.join("lib").canonicalize() {
        Ok(p) if p.join("libtorch_cpu.so").exists() => p,
        _ => fail(&format!("no libtorch at {}", dir.display())),
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
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
        println!("cargo:rustc-cfg=kdl_cuda_linked");
    }
    println!("cargo:rustc-check-cfg=cfg(kdl_cuda_linked)");
}

fn fail(why: &str) -> ! {
    eprintln!("\nkdl: {why}. Run ./setup.sh once (it installs torch 2.11.0 into ~/.cache/kdl), then build again.\n");
    std::process::exit(1);
}
