//! What kdl's C++ shims (csrc/) share on the Rust side: their error messages. Every shim
//! entry point catches C++ exceptions and hands back a `strdup`'d message through an
//! `char** err` out-parameter; this reads it and frees it with the C library's `free`.

use std::ffi::{c_char, c_void, CStr};

extern "C" {
    fn free(p: *mut c_void);
}

/// The first line of a shim's error message (c10 messages go on with hints such as
/// CUDA_LAUNCH_BLOCKING; the first line is the cause), freed. `what` names the shim
/// for a failure that left no message.
pub fn take_message(err: *mut c_char, what: &str) -> String {
    if err.is_null() {
        return format!("{what} failed without a message");
    }
    // Safety: the shims set `err` to a NUL-terminated strdup'd string or leave it null,
    // and it is freed once, here.
    let text = unsafe { CStr::from_ptr(err) }.to_string_lossy().trim().lines().next().unwrap_or("").to_string();
    unsafe { free(err.cast()) };
    text
}
