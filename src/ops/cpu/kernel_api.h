// What every kernel of this package shares with MindSpore's Custom op (func_type="aot"): the entry point's
// signature and how an entry point reports bad arguments.
#ifndef SRC_OPS_CPU_KERNEL_API_H_
#define SRC_OPS_CPU_KERNEL_API_H_

#include <cstdint>
#include <cstdio>
#include <cstring>

// Defines the C entry point `name` that ops.Custom("lib.so:name", func_type="aot") calls: nparam tensors (the
// inputs, then the outputs) given by their data pointers, ranks, shapes and dtype names ("float32", "int32");
// stream and extra are unused on CPU. The body returns 0, or kernel_api::Fail(...) on bad arguments.
#define AOT_KERNEL(name)                                                                            \
  extern "C" int name(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, \
                      void * /*stream*/, void * /*extra*/)

namespace kernel_api {

// Prints "[kernel] what" to stderr (MindSpore only reports a nonzero code) and returns that code, 1.
inline int Fail(const char *kernel, const char *what) {
  std::fprintf(stderr, "[%s] %s\n", kernel, what);
  return 1;
}

inline bool IsDtype(const char *dtype, const char *want) { return std::strcmp(dtype, want) == 0; }

inline bool IsFloat32(const char *dtype) { return IsDtype(dtype, "float32"); }

}  // namespace kernel_api

#endif  // SRC_OPS_CPU_KERNEL_API_H_
