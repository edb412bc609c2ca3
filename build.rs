//! Bakes an rpath to libtorch's `lib/` into every binary, test and bench, so `kdl` runs
//! without LD_LIBRARY_PATH. libtorch is found through LIBTORCH, which ./setup.sh sets
//! in .cargo/libtorch.toml.

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
}

fn fail(why: &str) -> ! {
    eprintln!("\nkdl: {why}. Run ./setup.sh once (it installs torch 2.11.0 into ~/.cache/kdl), then build again.\n");
    std::process::exit(1);
}
