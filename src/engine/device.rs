//! Which device and CPU features a run gets. CUDA when present, else the CPU. Whether
//! bf16 pays off on a CPU is measured, once per machine, not read off its feature flags:
//! AMX and AVX-512 bf16 make it 2–4× faster than f32, AVX2 alone makes it slower.

use std::sync::OnceLock;
use tch::{Device, Kind, Tensor};

/// What `device="auto"` means for this process: `kdl run --device` sets it once.
static CHOSEN: OnceLock<Device> = OnceLock::new();

/// The device `auto` resolves to: the one `--device` chose, else CUDA when present.
pub fn default_device() -> Device {
    CHOSEN.get().copied().unwrap_or_else(Device::cuda_if_available)
}

/// `kdl run --device NAME`: every `device="auto"` of the run (models, training) means NAME.
/// An unknown name or a CUDA device that is not here is an error.
pub fn choose_default_device(name: &str) -> Result<Device, String> {
    let device = parse_device(name)?;
    let _ = CHOSEN.set(device);
    Ok(device)
}

/// bf16 is chosen for a frozen model when its matmuls run at least this much faster.
const BF16_MIN_SPEEDUP: f64 = 1.3;

/// How much faster a bf16 matmul is than f32 on this CPU (f32 time / bf16 time), at the
/// shape that dominates a distillation step: a small model's output projection, 512
/// positions × 576 wide onto 8,192 of its vocabulary. Measured the first time a process
/// asks (about a fifth of a second) and kept in `<kdl cache>/cpu-bf16.json`, keyed by the
/// CPU, its features and the thread count, so later runs only read it.
pub fn cpu_bf16_speedup() -> f64 {
    static MEASURED: OnceLock<f64> = OnceLock::new();
    *MEASURED.get_or_init(|| {
        let key = format!("{} | {} | {} threads", cpu_model(), cpu_features().join(" "), tch::get_num_threads());
        let path = crate::engine::data::default_cache_root().join("cpu-bf16.json");
        let mut known: serde_json::Map<String, serde_json::Value> = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        if let Some(x) = known.get(&key).and_then(|v| v.as_f64()) {
            return x;
        }
        let x = measure_bf16_speedup();
        known.insert(key, serde_json::json!(x));
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = crate::atomic::write_file(&path, &serde_json::to_vec_pretty(&known).unwrap_or_default());
        x
    })
}

fn measure_bf16_speedup() -> f64 {
    tch::no_grad(|| {
        let a = Tensor::randn([512, 576], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([576, 8192], (Kind::Float, Device::Cpu));
        let best = |kind: Kind| {
            let (a, b) = (a.to_kind(kind), b.to_kind(kind));
            let _ = a.matmul(&b);
            (0..3)
                .map(|_| {
                    let t = std::time::Instant::now();
                    let _ = a.matmul(&b);
                    t.elapsed().as_secs_f64()
                })
                .fold(f64::INFINITY, f64::min)
        };
        best(Kind::Float) / best(Kind::BFloat16).max(1e-9)
    })
}

/// Whether a frozen model (a teacher) on `device` runs in bf16 under `teacher_dtype="auto"`:
/// always on CUDA; on a CPU when the measured speed-up reaches `BF16_MIN_SPEEDUP`.
pub fn bf16_pays_off(device: Device) -> bool {
    device.is_cuda() || cpu_bf16_speedup() >= BF16_MIN_SPEEDUP
}

fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    info.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_string()).unwrap_or_else(|| "unknown cpu".into())
}

/// One line for `kdl info`: whether libtorch's CUDA half is linked, its runtime version,
/// the devices it sees and, when none, why.
pub fn describe_cuda() -> String {
    if !tch::utils::has_cudart() {
        return "not built in: this libtorch has no CUDA runtime (a CPU-only torch), so kdl runs on the CPU".into();
    }
    let v = tch::utils::version_cudart();
    let n = tch::Cuda::device_count();
    let why = match n {
        0 if !std::path::Path::new("/proc/driver/nvidia/version").exists() => " (no NVIDIA driver is loaded on this machine, so kdl runs on the CPU)",
        0 => " (the NVIDIA driver sees no GPU, so kdl runs on the CPU)",
        _ => "",
    };
    format!("built in (CUDA runtime {}.{}), devices: {n}{why}", v / 1000, (v % 1000) / 10)
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
                Err("no CUDA device is available here (`kdl info` says why); use \"cpu\" or \"auto\"".into())
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
