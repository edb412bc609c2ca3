//! CUDA graphs through kdl's own shim (csrc/cuda_graph.cpp; tch has no graph API): a
//! captured sequence of kernels replayed with one launch, so a training or decode step
//! costs no per-op launch overhead. The shim catches every C++ exception, so a machine
//! without a GPU gets an error to report — never an abort.
//!
//! Built without the shim (./setup.sh found no CUDA headers), every call says so.

use std::ffi::c_void;
#[cfg(kdl_cuda_graphs)]
use std::ffi::{c_char, c_int};

#[cfg(kdl_cuda_graphs)]
extern "C" {
    fn kdl_cuda_probe(cudart: *mut c_int, devices: *mut c_int, err: *mut *mut c_char) -> c_int;
    fn kdl_graph_new(err: *mut *mut c_char) -> *mut c_void;
    fn kdl_graph_free(g: *mut c_void);
    fn kdl_graph_capture_begin(g: *mut c_void, err: *mut *mut c_char) -> c_int;
    fn kdl_graph_capture_end(g: *mut c_void, err: *mut *mut c_char) -> c_int;
    fn kdl_graph_replay(g: *mut c_void, err: *mut *mut c_char) -> c_int;
}

/// Why there are no graphs in a build without the shim.
pub const NOT_BUILT: &str = "this kdl was built without its CUDA-graph shim (./setup.sh installs the CUDA headers it needs; then cargo build again)";

/// Whether this build has the shim.
pub fn built_in() -> bool {
    cfg!(kdl_cuda_graphs)
}

/// The message of a failed shim call, freed.
#[cfg(kdl_cuda_graphs)]
fn take_error(err: *mut c_char) -> String {
    super::shim::take_message(err, "the CUDA-graph shim")
}

/// Runs one shim call that reports through `err`.
#[cfg(kdl_cuda_graphs)]
fn call(f: impl FnOnce(*mut *mut c_char) -> c_int) -> Result<(), String> {
    let mut err: *mut c_char = std::ptr::null_mut();
    match f(&mut err) {
        0 => Ok(()),
        _ => Err(take_error(err)),
    }
}

/// (CUDA runtime version, devices) as the shim sees them: the link and the hardware.
pub fn probe() -> Result<(i32, i32), String> {
    #[cfg(kdl_cuda_graphs)]
    {
        let (mut cudart, mut devices) = (0, 0);
        // Safety: plain out-parameters.
        call(|err| unsafe { kdl_cuda_probe(&mut cudart, &mut devices, err) })?;
        Ok((cudart, devices))
    }
    #[cfg(not(kdl_cuda_graphs))]
    Err(NOT_BUILT.into())
}

/// One CUDA graph: capture once, replay many times.
pub struct Graph {
    #[cfg_attr(not(kdl_cuda_graphs), allow(dead_code))]
    raw: *mut c_void,
}

impl Graph {
    /// A new, empty graph; an error without a GPU (the cause from CUDA itself).
    pub fn new() -> Result<Graph, String> {
        #[cfg(kdl_cuda_graphs)]
        {
            let mut err: *mut c_char = std::ptr::null_mut();
            // Safety: the shim returns an owned graph or null with `err` set.
            let raw = unsafe { kdl_graph_new(&mut err) };
            if raw.is_null() {
                return Err(take_error(err));
            }
            Ok(Graph { raw })
        }
        #[cfg(not(kdl_cuda_graphs))]
        Err(NOT_BUILT.into())
    }

    /// Captures the kernels `body` launches (on a side stream, into the graph's private
    /// memory pool). `body` must not synchronise with the host: no `.item()`, no copies
    /// to the CPU. The tensors it reads and writes are the graph's static inputs and
    /// outputs: refill inputs in place before each `replay`.
    pub fn capture<R>(&mut self, body: impl FnOnce() -> R) -> Result<R, String> {
        #[cfg(kdl_cuda_graphs)]
        {
            // Safety: `raw` is a live graph owned by self.
            call(|err| unsafe { kdl_graph_capture_begin(self.raw, err) })?;
            let out = body();
            call(|err| unsafe { kdl_graph_capture_end(self.raw, err) })?;
            Ok(out)
        }
        #[cfg(not(kdl_cuda_graphs))]
        {
            let _ = body;
            Err(NOT_BUILT.into())
        }
    }

    /// Launches the captured kernels again.
    pub fn replay(&self) -> Result<(), String> {
        #[cfg(kdl_cuda_graphs)]
        {
            // Safety: `raw` is a live graph owned by self.
            call(|err| unsafe { kdl_graph_replay(self.raw, err) })
        }
        #[cfg(not(kdl_cuda_graphs))]
        Err(NOT_BUILT.into())
    }
}

impl Drop for Graph {
    fn drop(&mut self) {
        #[cfg(kdl_cuda_graphs)]
        // Safety: `raw` came from kdl_graph_new and is freed once, here.
        unsafe {
            kdl_graph_free(self.raw)
        };
    }
}
