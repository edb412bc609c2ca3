//! Which device and CPU features a run gets. CUDA when present, else the CPU; the CPU's
//! vector extensions decide later which dtypes pay off (bf16 only with AMX/AVX-512 bf16).

use tch::{Device, Kind};

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

/// `device="cpu" | "cuda" | "cuda:N" | "auto"`.
pub fn parse_device(name: &str) -> Result<Device, String> {
    match name {
        "auto" => Ok(default_device()),
        "cpu" => Ok(Device::Cpu),
        "cuda" | "gpu" => {
            if tch::Cuda::is_available() {
                Ok(Device::Cuda(0))
            } else {
                Err("no CUDA device is available here; use device=\"cpu\" (or leave device out)".into())
            }
        }
        other => match other.strip_prefix("cuda:").and_then(|n| n.parse::<usize>().ok()) {
            Some(i) if (i as i64) < tch::Cuda::device_count() => Ok(Device::Cuda(i)),
            Some(i) => Err(format!("there is no cuda:{i} here ({} CUDA devices)", tch::Cuda::device_count())),
            None => Err(format!("unknown device {other:?}: use \"cpu\", \"cuda\", \"cuda:N\" or \"auto\"")),
        },
    }
}

/// `dtype="f32" | "bf16" | "f16" | "auto"`; auto is f32 on the CPU and bf16 on CUDA.
pub fn parse_dtype(name: &str, device: Device) -> Result<Kind, String> {
    match name {
        "auto" => Ok(if device.is_cuda() { Kind::BFloat16 } else { Kind::Float }),
        "f32" | "float32" => Ok(Kind::Float),
        "bf16" | "bfloat16" => Ok(Kind::BFloat16),
        "f16" | "float16" | "half" => Ok(Kind::Half),
        other => Err(format!("unknown dtype {other:?}: use \"f32\", \"bf16\", \"f16\" or \"auto\"")),
    }
}

/// How a dtype is written in kdl.
pub fn dtype_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Float => "f32",
        Kind::BFloat16 => "bf16",
        Kind::Half => "f16",
        Kind::Double => "f64",
        Kind::Int64 => "i64",
        Kind::Int => "i32",
        Kind::Bool => "bool",
        _ => "other",
    }
}

/// `cpu` or `cuda:0`.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}
