// Fused activations for MindSpore's ops.Custom(func_type="aot") on CPU: Mish and LeakyReLU, forward and
// backward, one pass each.
//
// LeakyReLU: y = x > 0 ? x : a x, dx = y > 0 ? dy : a dy (a: the slope, a 1-element float32 input; the
// backward reads the output, so the input need not be kept). MindSpore
// 2.10 builds nn.LeakyReLU as Maximum(a * x, x), whose backward (MaximumGrad's two full-size outputs, the
// gradient of the broadcast slope, AddN) costs more CPU than Mish's and keeps ~2 activation-sized
// buffers per layer outside the memory pool (research/; docs/performance.md).
//
//   mish(x)   = x * tanh(softplus(x))
//   mish'(x)  = tanh(sp) + x * sigmoid(x) * (1 - tanh(sp)^2)
//
// Computed without softplus/tanh, from e = exp(x) only (n = e * (e + 2) = (1 + e)^2 - 1):
//   tanh(softplus(x)) = n / (n + 2)
//   mish'(x)          = n / (n + 2) + 4 x e (1 + e) / (n + 2)^2
// which is exact algebra and stable: nothing cancels for x << 0 (n ~ 2e), and the only overflow,
// e^2 above x ~ 44 (where MindSpore 2.10's own Mish kernel returns NaN), is avoided by returning
// mish(x) = x, mish'(x) = 1 for x > 20 (tanh(softplus(20)) = 1 - 8.5e-18: 1 in float32). For
// x < -20, tanh(softplus(x)) = e to float32 precision, so mish(x) = x e and mish'(x) = e (1 + x);
// below x = -60, e is computed as exp(x + 60) * exp(-60) so that results in the float32 denormal
// range (x down to about -98) stay accurate instead of flushing to zero.
//
// exp is a Cephes-style polynomial (|rel. error| < 2 ulp on [-88, 88]); the AVX2+FMA path and the
// scalar path compute the same formulas with fused multiply-adds, so results do not depend on the
// path taken. NaN in gives NaN out. float32 only: any other dtype returns 1 (MindSpore raises).
//
// Threads: the element range is cut into chunks run on std::threads (no OpenMP pool spinning next to
// MindSpore's own); mish_set_threads(n) sets their number (default 1), called by the Python side
// with MindSpore's kernel thread count. Each thread gets at least 256 Ki elements: smaller tensors run on the
// calling thread (at batch 1 a thread's start-up and the wait for a busy core cost more than it saves).
// MindSpore runs its CPU kernels with denormals flushed (FTZ/DAZ), and so do these on its threads.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MISH_X86 1
#endif

namespace {

int g_threads = 1;
constexpr int64_t kMinPerThread = 1 << 18;  // 1 MiB of floats per thread: smaller ops stay on the caller

constexpr float kHi = 20.0f;      // above: mish(x) = x
constexpr float kLo = -20.0f;     // below: tanh(softplus(x)) = e
constexpr float kShift = 60.0f;   // below -kShift: e = exp(x + 60) * exp(-60)
constexpr float kExpMinus60 = 8.75651076e-27f;  // exp(-60), a normal float
constexpr float kClamp = -120.0f; // below: mish(x) and mish'(x) underflow to (-)0 in float32

// ---- scalar exp, the same polynomial as the vector path ----------------------------------------
inline float exp_poly(float x) {
  // x in [-88, 88]; n = round(x / ln 2), r = x - n ln 2 (Cody-Waite), exp(r) by a degree-6 polynomial.
  const float log2e = 1.44269504088896341f;
  const float c1 = 0.693359375f, c2 = -2.12194440e-4f;
  float n = std::nearbyint(x * log2e);
  float r = std::fma(-n, c1, x);
  r = std::fma(-n, c2, r);
  float p = 1.9875691500e-4f;
  p = std::fma(p, r, 1.3981999507e-3f);
  p = std::fma(p, r, 8.3334519073e-3f);
  p = std::fma(p, r, 4.1665795894e-2f);
  p = std::fma(p, r, 1.6666665459e-1f);
  p = std::fma(p, r, 5.0000001201e-1f);
  float r2 = r * r;
  p = std::fma(p, r2, r);
  p = p + 1.0f;
  int32_t bits;
  std::memcpy(&bits, &p, 4);
  bits += static_cast<int32_t>(n) << 23;
  std::memcpy(&p, &bits, 4);
  return p;
}

// e = exp(x) for x <= kHi, with the shift for x < -kShift; returns 0 below -98 - 60 (result 0 anyway).
inline float exp_safe(float x, bool* shifted) {
  *shifted = x < -kShift;
  float xs = *shifted ? x + kShift : x;
  if (xs < -87.0f) xs = -87.0f;  // exp(-147) * exp(-60): far below the smallest denormal result
  return exp_poly(xs);
}

inline float mish_scalar(float x) {
  if (!(x <= kHi)) return x;  // also NaN -> NaN
  bool shifted;
  float e = exp_safe(x, &shifted);
  if (x < kLo) {
    float xc = x < kClamp ? kClamp : x;  // the result is 0 below -104 anyway; keeps -inf finite
    return shifted ? (xc * e) * kExpMinus60 : xc * e;
  }
  float n = e * (e + 2.0f);
  return x * (n / (n + 2.0f));
}

inline float mish_grad_scalar(float x, float dy) {
  if (x != x) return x;
  if (x > kHi) return dy;
  bool shifted;
  float e = exp_safe(x, &shifted);
  if (x < kLo) {
    float xc = x < kClamp ? kClamp : x;
    float g = e * (1.0f + xc);
    return shifted ? (dy * g) * kExpMinus60 : dy * g;
  }
  float n = e * (e + 2.0f);
  float d = n + 2.0f;
  float t = n / d;
  float g = t + (4.0f * x * e * (1.0f + e)) / (d * d);
  return dy * g;
}

#ifdef MISH_X86
// ---- AVX2 + FMA, 8 floats at a time --------------------------------------------------------------
__attribute__((target("avx2,fma"))) inline __m256 exp_poly8(__m256 x) {
  const __m256 log2e = _mm256_set1_ps(1.44269504088896341f);
  const __m256 c1 = _mm256_set1_ps(0.693359375f), c2 = _mm256_set1_ps(-2.12194440e-4f);
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, c1, x);
  r = _mm256_fnmadd_ps(n, c2, r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  __m256 r2 = _mm256_mul_ps(r, r);
  p = _mm256_fmadd_ps(p, r2, r);
  p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
  __m256i bits = _mm256_add_epi32(_mm256_castps_si256(p), _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23));
  return _mm256_castsi256_ps(bits);
}

// Returns the 8 lanes' e; *shift_mask: lanes where x < -kShift (e is exp(x + 60)).
__attribute__((target("avx2,fma"))) inline __m256 exp_safe8(__m256 x, __m256* shift_mask) {
  *shift_mask = _mm256_cmp_ps(x, _mm256_set1_ps(-kShift), _CMP_LT_OQ);
  __m256 xs = _mm256_add_ps(x, _mm256_and_ps(*shift_mask, _mm256_set1_ps(kShift)));
  xs = _mm256_max_ps(xs, _mm256_set1_ps(-87.0f));   // also NaN -> -87 (NaN is restored below)
  xs = _mm256_min_ps(xs, _mm256_set1_ps(kHi));
  return exp_poly8(xs);
}

__attribute__((target("avx2,fma"))) void mish_fwd_avx2(const float* x, float* y, int64_t n) {
  const __m256 two = _mm256_set1_ps(2.0f), hi = _mm256_set1_ps(kHi), lo = _mm256_set1_ps(kLo);
  const __m256 k60 = _mm256_set1_ps(kExpMinus60);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    __m256 sh;
    __m256 e = exp_safe8(v, &sh);
    __m256 m = _mm256_mul_ps(e, _mm256_add_ps(e, two));
    __m256 out = _mm256_mul_ps(v, _mm256_div_ps(m, _mm256_add_ps(m, two)));
    // x < -20: x e (scaled by exp(-60) where shifted)
    __m256 small = _mm256_mul_ps(_mm256_max_ps(v, _mm256_set1_ps(kClamp)), e);
    small = _mm256_blendv_ps(small, _mm256_mul_ps(small, k60), sh);
    out = _mm256_blendv_ps(out, small, _mm256_cmp_ps(v, lo, _CMP_LT_OQ));
    // x > 20 or NaN: x
    out = _mm256_blendv_ps(out, v, _mm256_cmp_ps(v, hi, _CMP_NLE_UQ));
    _mm256_storeu_ps(y + i, out);
  }
  for (; i < n; ++i) y[i] = mish_scalar(x[i]);
}

__attribute__((target("avx2,fma"))) void mish_bwd_avx2(const float* x, const float* dy, float* dx, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f), two = _mm256_set1_ps(2.0f), four = _mm256_set1_ps(4.0f);
  const __m256 hi = _mm256_set1_ps(kHi), lo = _mm256_set1_ps(kLo), k60 = _mm256_set1_ps(kExpMinus60);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    __m256 g_in = _mm256_loadu_ps(dy + i);
    __m256 sh;
    __m256 e = exp_safe8(v, &sh);
    __m256 m = _mm256_mul_ps(e, _mm256_add_ps(e, two));
    __m256 d = _mm256_add_ps(m, two);
    __m256 t = _mm256_div_ps(m, d);
    __m256 num = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(four, v), e), _mm256_add_ps(one, e));
    __m256 g = _mm256_add_ps(t, _mm256_div_ps(num, _mm256_mul_ps(d, d)));
    __m256 out = _mm256_mul_ps(g_in, g);
    __m256 small = _mm256_mul_ps(g_in, _mm256_mul_ps(e, _mm256_add_ps(one, _mm256_max_ps(v, _mm256_set1_ps(kClamp)))));
    small = _mm256_blendv_ps(small, _mm256_mul_ps(small, k60), sh);
    out = _mm256_blendv_ps(out, small, _mm256_cmp_ps(v, lo, _CMP_LT_OQ));
    out = _mm256_blendv_ps(out, g_in, _mm256_cmp_ps(v, hi, _CMP_GT_OQ));
    out = _mm256_blendv_ps(out, v, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));  // NaN in -> NaN out
    _mm256_storeu_ps(dx + i, out);
  }
  for (; i < n; ++i) dx[i] = mish_grad_scalar(x[i], dy[i]);
}

__attribute__((target("avx2,fma"))) void leaky_fwd_avx2(const float* x, float a, float* y, int64_t n) {
  const __m256 zero = _mm256_setzero_ps(), va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    _mm256_storeu_ps(y + i, _mm256_blendv_ps(_mm256_mul_ps(v, va), v, _mm256_cmp_ps(v, zero, _CMP_GT_OQ)));
  }
  for (; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : a * x[i];
}

__attribute__((target("avx2,fma"))) void leaky_bwd_avx2(const float* x, float a, const float* dy, float* dx,
                                                         int64_t n) {
  const __m256 zero = _mm256_setzero_ps(), va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    __m256 g = _mm256_loadu_ps(dy + i);
    _mm256_storeu_ps(dx + i, _mm256_blendv_ps(_mm256_mul_ps(g, va), g, _mm256_cmp_ps(v, zero, _CMP_GT_OQ)));
  }
  for (; i < n; ++i) dx[i] = x[i] > 0.0f ? dy[i] : a * dy[i];
}

bool has_avx2_fma() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}
#endif

void fwd_range(const float* x, float* y, int64_t n) {
#ifdef MISH_X86
  if (has_avx2_fma()) return mish_fwd_avx2(x, y, n);
#endif
  for (int64_t i = 0; i < n; ++i) y[i] = mish_scalar(x[i]);
}

// Branch-free scalar LeakyReLU (random signs would mispredict a branch half of the time).
inline float leaky_scalar(float x, float a) {
  float m = x > 0.0f ? 1.0f : a;
  return x * m;
}

void leaky_fwd_range(const float* x, float a, float* y, int64_t n) {
#ifdef MISH_X86
  if (has_avx2_fma()) return leaky_fwd_avx2(x, a, y, n);
#endif
  for (int64_t i = 0; i < n; ++i) y[i] = leaky_scalar(x[i], a);
}

void leaky_bwd_range(const float* x, float a, const float* dy, float* dx, int64_t n) {
#ifdef MISH_X86
  if (has_avx2_fma()) return leaky_bwd_avx2(x, a, dy, dx, n);
#endif
  for (int64_t i = 0; i < n; ++i) dx[i] = x[i] > 0.0f ? dy[i] : a * dy[i];
}

void bwd_range(const float* x, const float* dy, float* dx, int64_t n) {
#ifdef MISH_X86
  if (has_avx2_fma()) return mish_bwd_avx2(x, dy, dx, n);
#endif
  for (int64_t i = 0; i < n; ++i) dx[i] = mish_grad_scalar(x[i], dy[i]);
}

// Runs f(begin, count) over [0, n) in up to g_threads chunks (multiples of 64 elements).
template <typename F>
void parallel_for(int64_t n, F f) {
  int64_t threads = g_threads;
  if (threads > n / kMinPerThread) threads = n / kMinPerThread;
  if (threads <= 1) return f(0, n);
  int64_t chunk = ((n + threads - 1) / threads + 63) / 64 * 64;
  std::vector<std::thread> pool;
  pool.reserve(threads - 1);
  for (int64_t t = 1; t < threads; ++t) {
    int64_t b = t * chunk;
    if (b >= n) break;
    int64_t c = n - b < chunk ? n - b : chunk;
    pool.emplace_back([=] { f(b, c); });
  }
  f(0, chunk < n ? chunk : n);
  for (auto& th : pool) th.join();
}

int64_t numel(int ndim, const int64_t* shape) {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  return n;
}

bool is_f32(const char* dtype) { return std::strcmp(dtype, "float32") == 0 || std::strcmp(dtype, "float") == 0; }

}  // namespace

extern "C" {

// MindSpore aot signature: params = [x, y]
int mish_fwd(int nparam, void** params, int* ndims, int64_t** shapes, const char** dtypes, void* stream,
             void* extra) {
  (void)stream;
  (void)extra;
  if (nparam != 2 || !is_f32(dtypes[0]) || !is_f32(dtypes[1])) return 1;
  const float* x = static_cast<const float*>(params[0]);
  float* y = static_cast<float*>(params[1]);
  int64_t n = numel(ndims[0], shapes[0]);
  parallel_for(n, [=](int64_t b, int64_t c) { fwd_range(x + b, y + b, c); });
  return 0;
}

// params = [x, dy, dx]
int mish_bwd(int nparam, void** params, int* ndims, int64_t** shapes, const char** dtypes, void* stream,
             void* extra) {
  (void)stream;
  (void)extra;
  if (nparam != 3 || !is_f32(dtypes[0]) || !is_f32(dtypes[1]) || !is_f32(dtypes[2])) return 1;
  const float* x = static_cast<const float*>(params[0]);
  const float* dy = static_cast<const float*>(params[1]);
  float* dx = static_cast<float*>(params[2]);
  int64_t n = numel(ndims[0], shapes[0]);
  parallel_for(n, [=](int64_t b, int64_t c) { bwd_range(x + b, dy + b, dx + b, c); });
  return 0;
}

// params = [x, alpha (1 element), y]
int leaky_fwd(int nparam, void** params, int* ndims, int64_t** shapes, const char** dtypes, void* stream,
              void* extra) {
  (void)stream;
  (void)extra;
  if (nparam != 3 || !is_f32(dtypes[0]) || !is_f32(dtypes[1]) || !is_f32(dtypes[2])) return 1;
  const float* x = static_cast<const float*>(params[0]);
  const float a = *static_cast<const float*>(params[1]);
  float* y = static_cast<float*>(params[2]);
  int64_t n = numel(ndims[0], shapes[0]);
  parallel_for(n, [=](int64_t b, int64_t c) { leaky_fwd_range(x + b, a, y + b, c); });
  return 0;
}

// params = [y or x, alpha, dy, dx]: the sign test works on the output as well (y > 0 iff x > 0, 0 <= a <= 1)
int leaky_bwd(int nparam, void** params, int* ndims, int64_t** shapes, const char** dtypes, void* stream,
              void* extra) {
  (void)stream;
  (void)extra;
  if (nparam != 4 || !is_f32(dtypes[0]) || !is_f32(dtypes[1]) || !is_f32(dtypes[2]) || !is_f32(dtypes[3])) return 1;
  const float* x = static_cast<const float*>(params[0]);
  const float a = *static_cast<const float*>(params[1]);
  const float* dy = static_cast<const float*>(params[2]);
  float* dx = static_cast<float*>(params[3]);
  int64_t n = numel(ndims[0], shapes[0]);
  parallel_for(n, [=](int64_t b, int64_t c) { leaky_bwd_range(x + b, a, dy + b, dx + b, c); });
  return 0;
}

void mish_set_threads(int threads) { g_threads = threads < 1 ? 1 : threads; }
int mish_get_threads() { return g_threads; }

// Plain entry points for tests and probes (no MindSpore): y = mish(x), dx = dy * mish'(x).
void mish_forward_f32(const float* x, float* y, int64_t n) {
  parallel_for(n, [=](int64_t b, int64_t c) { fwd_range(x + b, y + b, c); });
}
void mish_backward_f32(const float* x, const float* dy, float* dx, int64_t n) {
  parallel_for(n, [=](int64_t b, int64_t c) { bwd_range(x + b, dy + b, dx + b, c); });
}
// The scalar path alone (to check that both paths agree).
void mish_forward_f32_scalar(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = mish_scalar(x[i]);
}
void mish_backward_f32_scalar(const float* x, const float* dy, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = mish_grad_scalar(x[i], dy[i]);
}
}
