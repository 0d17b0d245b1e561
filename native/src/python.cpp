// Python binding (nanobind) of the fused head: module vpkl._native. The runtime's
// vpkl.runtime.scorer wraps it with input checks; call that, not this.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>

#include <cstring>
#include <stdexcept>
#include <string>

#include "vpkl/head.h"

namespace nb = nanobind;

namespace {

using Query = nb::ndarray<const float, nb::ndim<3>, nb::device::cpu>;
using Audio = nb::ndarray<const float, nb::ndim<2>, nb::device::cpu>;
using Out1 = nb::ndarray<nb::numpy, float, nb::ndim<1>>;
using Out2 = nb::ndarray<nb::numpy, float, nb::ndim<2>>;

vpkl_precision parse_precision(const std::string &p) {
  if (p == "fp32") return VPKL_FP32;
  if (p == "bf16") return VPKL_BF16;
  if (p == "int8") return VPKL_INT8;
  throw nb::value_error(("precision: '" + p + "', expected 'fp32', 'bf16' or 'int8'").c_str());
}

float *alloc(nb::object &owner, size_t n) {
  float *p = new float[n];
  owner = nb::capsule(p, [](void *v) noexcept { delete[] static_cast<float *>(v); });
  return p;
}

struct Outputs {
  nb::object o1, o2, o3;
  float *s, *aa, *ia;
  int64_t Q, M, N;
  Outputs(int64_t Q_, int64_t M_, int64_t N_) : Q(Q_), M(M_), N(N_) {
    try {
      s = alloc(o1, size_t(Q)), aa = alloc(o2, size_t(Q * N)), ia = alloc(o3, size_t(Q * M));
    } catch (const std::bad_alloc &) {
      throw std::runtime_error("out of memory for the outputs (" + std::to_string(Q) + " x " + std::to_string(N) +
                               " aud_att values)");
    }
  }
  void bind(vpkl_head_args &a) const {
    a.score = s, a.score_stride = 1;
    a.aud_att = aa, a.aud_att_stride[0] = N, a.aud_att_stride[1] = 1;
    a.im_att = ia, a.im_att_stride[0] = M, a.im_att_stride[1] = 1;
  }
  std::tuple<Out1, Out2, Out2> arrays() const {
    size_t sq[1] = {size_t(Q)}, sn[2] = {size_t(Q), size_t(N)}, sm[2] = {size_t(Q), size_t(M)};
    return {Out1(s, 1, sq, o1), Out2(aa, 2, sn, o2), Out2(ia, 2, sm, o3)};
  }
};

void raise(int rc, const char *err) {
  if (rc == VPKL_ERR_ARGUMENT) throw nb::value_error(err);
  if (rc != VPKL_OK) throw std::runtime_error(err);
}

vpkl_head_args audio_args(const Audio &audio, int64_t n_valid) {
  vpkl_head_args a{};
  a.audio = audio.data();
  for (int i = 0; i < 2; ++i) a.audio_stride[i] = audio.stride(i);
  a.N = int64_t(audio.shape(0)), a.D = int64_t(audio.shape(1)), a.n_valid = n_valid;
  return a;
}

// One call: query and audio in, S, aud_att, im_att out (CPU, or CUDA through host copies).
std::tuple<Out1, Out2, Out2> score(Query query, Audio audio, int64_t n_valid, const std::string &precision,
                                  int threads, bool cuda) {
  const vpkl_precision prec = parse_precision(precision);
  vpkl_head_args a = audio_args(audio, n_valid);
  a.query = query.data();
  for (int i = 0; i < 3; ++i) a.query_stride[i] = query.stride(i);
  a.Q = int64_t(query.shape(0)), a.M = int64_t(query.shape(1));
  if (a.D != int64_t(query.shape(2)))
    throw nb::value_error(("audio: " + std::to_string(a.D) + " values per frame, the queries have D = " +
                           std::to_string(query.shape(2))).c_str());
  Outputs out(a.Q, a.M, a.N);
  out.bind(a);
  char err[512] = {0};
  int rc;
  {
    nb::gil_scoped_release release;
    rc = cuda ? vpkl_head_cuda_host(&a, prec, err, sizeof err) : vpkl_head_cpu(&a, prec, threads, err, sizeof err);
  }
  raise(rc, err);
  return out.arrays();
}

// Enrolled queries (CPU): converted and laid out once, scored against many utterances.
class Queries {
 public:
  Queries(Query query, const std::string &precision, int threads) : query_(query), precision_(precision) {
    const int64_t stride[3] = {query.stride(0), query.stride(1), query.stride(2)};
    char err[512] = {0};
    int rc;
    {
      nb::gil_scoped_release release;
      rc = vpkl_head_cpu_prepare(query.data(), stride, int64_t(query.shape(0)), int64_t(query.shape(1)),
                                 int64_t(query.shape(2)), parse_precision(precision), threads, &h_, err, sizeof err);
    }
    raise(rc, err);
  }
  ~Queries() { vpkl_head_cpu_release(h_); }
  Queries(const Queries &) = delete;
  Queries &operator=(const Queries &) = delete;

  std::tuple<Out1, Out2, Out2> score(Audio audio, int64_t n_valid, int threads) const {
    vpkl_head_args a = audio_args(audio, n_valid);
    Outputs out(int64_t(query_.shape(0)), int64_t(query_.shape(1)), a.N);
    out.bind(a);
    char err[512] = {0};
    int rc;
    {
      nb::gil_scoped_release release;
      rc = vpkl_head_cpu_score(h_, &a, threads, err, sizeof err);
    }
    raise(rc, err);
    return out.arrays();
  }
  const std::string &precision() const { return precision_; }

 private:
  Query query_;  // keeps the fp32 queries alive (the contexts read them)
  std::string precision_;
  vpkl_head_queries *h_ = nullptr;
};

}  // namespace

NB_MODULE(_native, m) {
  m.doc() = "vpkl fused localising-attention head (C++/CUDA); use vpkl.runtime.scorer";
  m.def("score", &score, nb::arg("query"), nb::arg("audio"), nb::arg("n_valid"), nb::arg("precision") = "fp32",
        nb::arg("threads") = 0, nb::arg("cuda") = false,
        "(Q,M,D) float32, (N,D) float32, n_valid -> S (Q,), aud_att (Q,N), im_att (Q,M) float32");
  nb::class_<Queries>(m, "Queries",
                     "enrolled queries for the CPU kernel: Queries(query, precision, threads). It keeps reading the "
                     "fp32 query array (the contexts use it): that array must not change while this object is used.")
      .def(nb::init<Query, const std::string &, int>(), nb::arg("query"), nb::arg("precision") = "fp32",
           nb::arg("threads") = 0)
      .def("score", &Queries::score, nb::arg("audio"), nb::arg("n_valid"), nb::arg("threads") = 0,
           "(N,D) float32, n_valid -> S (Q,), aud_att (Q,N), im_att (Q,M) float32")
      .def_prop_ro("precision", &Queries::precision);
  m.def("cpu_kernel", [](const std::string &p) { return std::string(vpkl_head_cpu_kernel(parse_precision(p))); },
        "name of the CPU micro-kernel that runs for a precision on this machine");
  m.def("has_cuda", []() { return vpkl_head_has_cuda() != 0; }, "built with the CUDA kernel");
}
