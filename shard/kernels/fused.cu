// Fused element-wise kernels of the decoder layer: residual add + RMSNorm, SiLU(gate) * up,
// and rotary embedding of packed QKV with the K/V write into the paged cache. Each waits for
// the previous kernel (PDL) and at once lets the next one start, so that the next linear
// layer's blocks fetch their weights while this short kernel runs.
#include "common.cuh"

// sum = x + h (rounded to T, the residual stream's dtype), norm = rms_norm(sum) * w.
// One block per row.
template <typename T>
__device__ void add_rms_norm(const T* x, const T* h, const T* w, T* sum, T* norm, int cols,
                             float eps) {
  pdl_wait();  // inputs come from the previous kernel
  pdl_launch_dependents();
  __shared__ float red[33];
  const size_t base = (size_t)blockIdx.x * cols;
  float ss = 0.f;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) {
    const T v = from_f<T>(to_f(x[base + i]) + to_f(h[base + i]));
    sum[base + i] = v;
    const float f = to_f(v);
    ss += f * f;
  }
  const float inv = rsqrtf(block_sum(ss, red) / cols + eps);
  for (int i = threadIdx.x; i < cols; i += blockDim.x) {
    norm[base + i] = from_f<T>(to_f(sum[base + i]) * inv * to_f(w[i]));
  }
}

// The same with 16-byte loads: cols % VEC == 0 and 16-byte aligned rows. A thread keeps its
// first chunk of the sum in registers and loads its first chunk of the weight before waiting
// for the previous kernel, so at hidden sizes up to blockDim.x * VEC (the launcher's choice)
// the kernel is one round trip to memory and a block reduction.
template <typename T>
__device__ void add_rms_norm_vec(const T* x, const T* h, const T* w, T* sum, T* norm, int cols,
                                 float eps) {
  constexpr int VEC = 16 / sizeof(T);
  const int chunks = cols / VEC, c0 = threadIdx.x;
  const uint4* wv = reinterpret_cast<const uint4*>(w);
  const uint4 w0 = c0 < chunks ? __ldg(wv + c0) : make_uint4(0, 0, 0, 0);  // a weight
  pdl_wait();  // inputs come from the previous kernel
  pdl_launch_dependents();
  __shared__ float red[33];
  const size_t base = (size_t)blockIdx.x * chunks;
  const uint4* xv = reinterpret_cast<const uint4*>(x) + base;
  const uint4* hv = reinterpret_cast<const uint4*>(h) + base;
  uint4* sv = reinterpret_cast<uint4*>(sum) + base;
  uint4* nv = reinterpret_cast<uint4*>(norm) + base;
  float ss = 0.f;
  uint4 s0 = make_uint4(0, 0, 0, 0);
  for (int c = c0; c < chunks; c += blockDim.x) {
    const uint4 a = xv[c], b = hv[c];
    uint4 r;
    const T *ae = reinterpret_cast<const T*>(&a), *be = reinterpret_cast<const T*>(&b);
    T* re = reinterpret_cast<T*>(&r);
#pragma unroll
    for (int e = 0; e < VEC; ++e) {
      re[e] = from_f<T>(to_f(ae[e]) + to_f(be[e]));
      const float f = to_f(re[e]);
      ss += f * f;
    }
    sv[c] = r;
    if (c == c0) s0 = r;
  }
  const float inv = rsqrtf(block_sum(ss, red) / cols + eps);
  for (int c = c0; c < chunks; c += blockDim.x) {
    const uint4 r = c == c0 ? s0 : sv[c];
    const uint4 wc = c == c0 ? w0 : __ldg(wv + c);
    uint4 o;
    const T *re = reinterpret_cast<const T*>(&r), *we = reinterpret_cast<const T*>(&wc);
    T* oe = reinterpret_cast<T*>(&o);
#pragma unroll
    for (int e = 0; e < VEC; ++e) oe[e] = from_f<T>(to_f(re[e]) * inv * to_f(we[e]));
    nv[c] = o;
  }
}

// gu: [rows, 2n] (gate then up) -> out: [rows, n].
template <typename T>
__device__ void silu_mul(const T* gu, T* out, int rows, int n) {
  pdl_wait();  // inputs come from the previous kernel
  pdl_launch_dependents();
  const size_t total = (size_t)rows * n;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
       i += (size_t)gridDim.x * blockDim.x) {
    const size_t r = i / n, c = i % n;
    const float g = to_f(gu[r * 2 * n + c]);
    const float u = to_f(gu[r * 2 * n + n + c]);
    out[i] = from_f<T>(g / (1.f + __expf(-g)) * u);
  }
}

// The same with 16-byte loads: n % VEC == 0 and gu 16-byte aligned.
template <typename T>
__device__ void silu_mul_vec(const T* gu, T* out, int rows, int n) {
  constexpr int VEC = 16 / sizeof(T);
  pdl_wait();  // inputs come from the previous kernel
  pdl_launch_dependents();
  const int per_row = n / VEC;
  const size_t total = (size_t)rows * per_row;
  const uint4* g4 = reinterpret_cast<const uint4*>(gu);
  uint4* o4 = reinterpret_cast<uint4*>(out);
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
       i += (size_t)gridDim.x * blockDim.x) {
    const size_t r = i / per_row, c = i % per_row;
    const uint4 gv = g4[r * 2 * per_row + c], uv = g4[r * 2 * per_row + per_row + c];
    uint4 o;
    const T *ge = reinterpret_cast<const T*>(&gv), *ue = reinterpret_cast<const T*>(&uv);
    T* oe = reinterpret_cast<T*>(&o);
#pragma unroll
    for (int e = 0; e < VEC; ++e) {
      const float g = to_f(ge[e]);
      oe[e] = from_f<T>(g / (1.f + __expf(-g)) * to_f(ue[e]));
    }
    o4[i] = o;
  }
}

// qkv: [T, (heads + 2 kvh) * d]; cos/sin: [T, d/2] for each token's position. Writes the
// rotated queries to q_out [T, heads, d] and the rotated keys and the values to the caches
// ([slots, kvh, d]) at each token's slot. Grid (T, heads + 2 kvh): one block per head row.
template <typename T>
__device__ void rope_qkv(const T* qkv, const T* cos, const T* sin, const uint32_t* slots,
                         T* q_out, T* kc, T* vc, int heads, int kvh, int d, int interleaved) {
  pdl_wait();  // inputs come from the previous kernel
  pdl_launch_dependents();
  const int t = blockIdx.x, head = blockIdx.y, half = d / 2;
  const T* src = qkv + ((size_t)t * (heads + 2 * kvh) + head) * d;
  const size_t slot = slots[t];
  if (head >= heads + kvh) {  // a value row: copied as is
    T* dst = vc + (slot * kvh + (head - heads - kvh)) * d;
    for (int e = threadIdx.x; e < d; e += blockDim.x) dst[e] = src[e];
    return;
  }
  T* dst = head < heads ? q_out + ((size_t)t * heads + head) * d
                        : kc + (slot * kvh + (head - heads)) * d;
  const T* c = cos + (size_t)t * half;
  const T* s = sin + (size_t)t * half;
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const int i0 = interleaved ? 2 * i : i;
    const int i1 = interleaved ? 2 * i + 1 : i + half;
    const float x0 = to_f(src[i0]), x1 = to_f(src[i1]);
    const float cc = to_f(c[i]), ss = to_f(s[i]);
    dst[i0] = from_f<T>(x0 * cc - x1 * ss);
    dst[i1] = from_f<T>(x1 * cc + x0 * ss);
  }
}

// K/V rows of T tokens written at their slots (no rotary): the unfused cache write.
template <typename T>
__device__ void write_kv(const T* k, const T* v, const uint32_t* slots, T* kc, T* vc, int width) {
  pdl_wait();  // inputs come from the previous kernel
  pdl_launch_dependents();
  const size_t slot = slots[blockIdx.x];
  const size_t src = (size_t)blockIdx.x * width;
  for (int e = threadIdx.x; e < width; e += blockDim.x) {
    kc[slot * width + e] = k[src + e];
    vc[slot * width + e] = v[src + e];
  }
}

#define FUSED_KERNELS(T, S)                                                                   \
  extern "C" __global__ void add_rms_norm_##S(const T* x, const T* h, const T* w, T* sum,      \
                                              T* norm, int cols, float eps) {                  \
    add_rms_norm<T>(x, h, w, sum, norm, cols, eps);                                            \
  }                                                                                            \
  extern "C" __global__ void add_rms_norm_vec_##S(const T* x, const T* h, const T* w, T* sum,  \
                                                  T* norm, int cols, float eps) {              \
    add_rms_norm_vec<T>(x, h, w, sum, norm, cols, eps);                                        \
  }                                                                                            \
  extern "C" __global__ void silu_mul_##S(const T* gu, T* out, int rows, int n) {              \
    silu_mul<T>(gu, out, rows, n);                                                             \
  }                                                                                            \
  extern "C" __global__ void silu_mul_vec_##S(const T* gu, T* out, int rows, int n) {          \
    silu_mul_vec<T>(gu, out, rows, n);                                                         \
  }                                                                                            \
  extern "C" __global__ void rope_qkv_##S(const T* qkv, const T* cos, const T* sin,            \
                                          const uint32_t* slots, T* q_out, T* kc, T* vc,       \
                                          int heads, int kvh, int d, int interleaved) {        \
    rope_qkv<T>(qkv, cos, sin, slots, q_out, kc, vc, heads, kvh, d, interleaved);              \
  }                                                                                            \
  extern "C" __global__ void write_kv_##S(const T* k, const T* v, const uint32_t* slots,       \
                                          T* kc, T* vc, int width) {                           \
    write_kv<T>(k, v, slots, kc, vc, width);                                                   \
  }

FUSED_KERNELS(float, f32)
FUSED_KERNELS(__half, f16)
FUSED_KERNELS(__nv_bfloat16, bf16)
