// kdl's CUDA-graph shim: a narrow extern "C" API over at::cuda::CUDAGraph for
// src/engine/cuda_graph.rs, which is its only caller. tch 0.24 has no graph API.
//
// Every entry point catches C++ exceptions and returns an error code with a message
// (strdup'd; the caller frees it with free(), src/engine/shim.rs): without a GPU or driver, CUDAGraph's constructor throws
// ("CUDA driver version is insufficient..."), and a throw across the C boundary would
// abort the process instead of giving the user a line to read.
//
// Capture follows torch.cuda.graph(): synchronize, empty the caching allocator's cache,
// capture on a side stream (capture on the legacy default stream is illegal), into a
// private memory pool so replays reuse the same addresses.

#include <ATen/Context.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdlib>
#include <cstring>
#include <optional>

namespace {

char* copy_message(const char* what) { return strdup(what ? what : "unknown C++ exception"); }

template <typename F>
int guarded(char** err, F&& body) {
  try {
    body();
    return 0;
  } catch (const c10::Error& e) {
    if (err) *err = copy_message(e.what_without_backtrace());
  } catch (const std::exception& e) {
    if (err) *err = copy_message(e.what());
  } catch (...) {
    if (err) *err = copy_message(nullptr);
  }
  return -1;
}

struct Graph {
  at::cuda::CUDAGraph graph;
  // The side stream the capture runs on, current from capture_begin to capture_end.
  std::optional<c10::cuda::CUDAStreamGuard> stream;
};

}  // namespace

extern "C" {

// The CUDA runtime version libtorch registered (e.g. 13000; 0 when libtorch_cuda is not
// loaded) and the devices it sees. Never throws: without a driver there are 0 devices.
int kdl_cuda_probe(int* cudart, int* devices, char** err) {
  return guarded(err, [&] {
    bool linked = at::globalContext().hasCUDART();
    *cudart = linked ? static_cast<int>(at::globalContext().versionCUDART()) : 0;
    *devices = linked ? static_cast<int>(c10::cuda::device_count()) : 0;
  });
}

// A new graph, or null with *err set (always so without a GPU).
void* kdl_graph_new(char** err) {
  Graph* made = nullptr;
  guarded(err, [&] { made = new Graph(); });
  return made;
}

void kdl_graph_free(void* g) { delete static_cast<Graph*>(g); }

int kdl_graph_capture_begin(void* g, char** err) {
  auto* graph = static_cast<Graph*>(g);
  return guarded(err, [&] {
    c10::cuda::device_synchronize();
    c10::cuda::CUDACachingAllocator::emptyCache();
    graph->stream.emplace(c10::cuda::getStreamFromPool(/*isHighPriority=*/false));
    try {
      graph->graph.capture_begin();
    } catch (...) {
      graph->stream.reset();
      throw;
    }
  });
}

int kdl_graph_capture_end(void* g, char** err) {
  auto* graph = static_cast<Graph*>(g);
  return guarded(err, [&] {
    try {
      graph->graph.capture_end();
    } catch (...) {
      graph->stream.reset();
      throw;
    }
    graph->stream.reset();
  });
}

int kdl_graph_replay(void* g, char** err) {
  return guarded(err, [&] { static_cast<Graph*>(g)->graph.replay(); });
}

}  // extern "C"
