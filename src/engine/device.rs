//! Which device and CPU features a run gets. CUDA when present, else the CPU; the CPU's
//! vector extensions decide later which dtypes pay off (bf16 only with AMX/AVX-512 bf16).

use tch::Device;

pub fn default_device() -> Device {
    Device::cuda_if_available()
}

/// The vector extensions of this CPU that matter for kernels and dtypes.
pub fn cpu_features() -> Vec<&'static str> {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags: Vec<&str> = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    ["avx2", "avx512f", "avx512_bf16", "amx_bf16"].into_iter().filter(|f| flags.contains(f)).collect()
}

/// One line for banners: `cpu (2 threads; avx2, avx512f)` or `cuda:0 (1 GPU)`.
pub fn describe_device() -> String {
    match default_device() {
        Device::Cuda(i) => format!("cuda:{i} ({} GPU{})", tch::Cuda::device_count(), if tch::Cuda::device_count() == 1 { "" } else { "s" }),
        _ => {
            let feats = cpu_features();
            let feats = if feats.is_empty() { String::new() } else { format!("; {}", feats.join(", ")) };
            format!("cpu ({} threads{feats})", tch::get_num_threads())
        }
    }
}
