//! Mixed precision through kdl's autocast shim (csrc/autocast.cpp): inside `mixed`, ATen
//! runs matmuls and convolutions in bf16 and keeps reductions, softmax and losses in f32,
//! while the weights, their gradients and the optimizer state stay f32. tch's own
//! `autocast` switches only CUDA's, and nothing without a GPU.

use std::ffi::{c_char, c_int};

extern "C" {
    fn kdl_autocast_begin(cuda: c_int, err: *mut *mut c_char) -> c_int;
    fn kdl_autocast_end(cuda: c_int, was: c_int, err: *mut *mut c_char) -> c_int;
}

fn failed(err: *mut c_char) -> String {
    super::shim::take_message(err, "autocast")
}

/// Runs `f` with bf16 autocast on `device`, restoring the previous state afterwards.
pub fn mixed<T>(device: tch::Device, f: impl FnOnce() -> T) -> Result<T, String> {
    let cuda = c_int::from(device.is_cuda());
    let mut err: *mut c_char = std::ptr::null_mut();
    // Safety: plain calls; `err` is an out-parameter.
    let was = unsafe { kdl_autocast_begin(cuda, &mut err) };
    if was < 0 {
        return Err(failed(err));
    }
    let out = f();
    if unsafe { kdl_autocast_end(cuda, was, &mut err) } != 0 {
        return Err(failed(err));
    }
    Ok(out)
}
