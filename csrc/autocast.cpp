// kdl's autocast shim: mixed precision on any device. tch 0.24's `autocast` only
// switches CUDA's autocast (and does nothing without a GPU), so train(precision="bf16")
// on a CPU had no way to run its matmuls in bf16 over f32 weights. Only ATen's CPU
// headers are needed, so this is built wherever libtorch is.

#include <ATen/autocast_mode.h>

#include <cstdlib>
#include <cstring>
#include <exception>

extern "C" {

// Turns autocast on for `cuda` (1) or the CPU (0) in bf16, one nesting level deeper;
// returns whether it was on before (for kdl_autocast_end), or -1 with *err set.
int kdl_autocast_begin(int cuda, char** err) {
  try {
    auto device = cuda ? at::kCUDA : at::kCPU;
    bool was = at::autocast::is_autocast_enabled(device);
    at::autocast::set_autocast_dtype(device, at::kBFloat16);
    at::autocast::set_autocast_enabled(device, true);
    at::autocast::increment_nesting();
    return was ? 1 : 0;
  } catch (const std::exception& e) {
    if (err) *err = strdup(e.what());
    return -1;
  }
}

// Restores the state kdl_autocast_begin returned; clears the cast cache at the outermost level.
int kdl_autocast_end(int cuda, int was, char** err) {
  try {
    auto device = cuda ? at::kCUDA : at::kCPU;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(device, was != 0);
    return 0;
  } catch (const std::exception& e) {
    if (err) *err = strdup(e.what());
    return -1;
  }
}

}  // extern "C"
