// kdl's optimizer shim: ATen's fused AdamW (one kernel per tensor group instead of the
// eight elementwise ops an unfused step launches per parameter), which tch 0.24 does not
// bind because its arguments are tensor lists. With the learning rate and the step
// counts held as device tensors it is also capturable: a CUDA graph replays it with the
// rate and bias corrections read on the device, never baked in at capture time.
// Only ATen's CPU headers are needed, so this is built wherever libtorch is.

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <ATen/ops/_foreach_add.h>
#include <ATen/ops/_fused_adamw.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <vector>

namespace {

// tch's tensors are at::Tensor* behind an opaque pointer.
std::vector<at::Tensor> tensors(void* const* ptrs, int n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (int i = 0; i < n; i++) out.push_back(*static_cast<at::Tensor*>(ptrs[i]));
  return out;
}

}  // namespace

extern "C" {

// One AdamW step over n parameters of one device and dtype, in place: decoupled weight
// decay wd, bias corrections from each `steps` count, incremented here first. `lr` is a
// 0-dim f32 tensor; on CUDA it is read on the device (capturable), on the CPU once here.
int kdl_fused_adamw(void* const* params, void* const* grads, void* const* m, void* const* v, void* const* steps,
                    int n, void* lr, double beta1, double beta2, double wd, double eps, char** err) {
  try {
    c10::NoGradGuard no_grad;
    auto p = tensors(params, n), g = tensors(grads, n), a = tensors(m, n), b = tensors(v, n), s = tensors(steps, n);
    // The kernel reads the counts; like torch.optim's _fused_adamw, count this step first.
    at::_foreach_add_(s, 1);
    const at::Tensor& rate = *static_cast<at::Tensor*>(lr);
    if (rate.is_cuda()) {
      at::_fused_adamw_(p, g, a, b, {}, s, rate, beta1, beta2, wd, eps, /*amsgrad=*/false, /*maximize=*/false);
    } else {
      at::_fused_adamw_(p, g, a, b, {}, s, rate.item<double>(), beta1, beta2, wd, eps, false, false);
    }
    return 0;
  } catch (const c10::Error& e) {
    if (err) *err = strdup(e.what_without_backtrace());
  } catch (const std::exception& e) {
    if (err) *err = strdup(e.what());
  }
  return -1;
}

// Counts one write to each of n tensors in libtorch's version counters. The fused AdamW
// kernel writes the parameters without counting (torch.optim's own call does the same),
// and so does a replayed CUDA graph; kdl keeps decoding copies of a model's weights
// while those counts stand (Llama::weights_stamp), so every optimizer step counts here.
void kdl_bump_versions(void* const* ptrs, int n) {
  for (int i = 0; i < n; i++) {
    try {
      static_cast<at::Tensor*>(ptrs[i])->unsafeGetTensorImpl()->bump_version();
    } catch (...) {
      // An inference tensor has no counter to bump; nothing keys on it.
    }
  }
}

}  // extern "C"
