// Stubs of the CUDA entry points for builds without CUDA (VPKL_CUDA=OFF or no nvcc found).
#include <cstdio>

#include "vpkl/head.h"

extern "C" int vpkl_head_has_cuda(void) { return 0; }

static int no_cuda(char *err, size_t err_len) {
  if (err && err_len) std::snprintf(err, err_len, "no CUDA device: this vpkl was built without CUDA");
  return VPKL_ERR_UNSUPPORTED;
}

extern "C" int vpkl_head_cuda(const vpkl_head_args *, vpkl_precision, void *, char *err, size_t err_len) {
  return no_cuda(err, err_len);
}

extern "C" int vpkl_head_cuda_host(const vpkl_head_args *, vpkl_precision, char *err, size_t err_len) {
  return no_cuda(err, err_len);
}
