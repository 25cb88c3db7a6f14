// Skinny matrix product on tensor cores for batched decode: y[M, N] = x[M, K] . W[N, K]^T with
// 8 < M <= 64 (f16/bf16). Reading W dominates, so W goes straight from global memory into
// mma.sync A fragments (16-byte streamed loads, one chunk ahead in registers) and is read once;
// only x, which every block needs, is staged in shared memory (cp.async, two stages).
//
// The dot product over K does not care in which order K is summed, so the fragment layout
// is chosen to make every load 16 bytes: in each 32-wide K block, lane (g = lane / 4,
// t = lane % 4) loads elements [8t, 8t + 8) of W rows g and g + 8 and of x row g, and feeds
// elements 0-3 to the first m16n8k16 product and 4-7 to the second. The mma's k index maps to
// the same physical K for A and B, so the products sum the right pairs.
//
// A block owns 64 rows of W (4 warps of 16) and one K split; with several splits each block
// writes f32 partial sums and the last block of a row range to finish (a counter per range,
// reset by that block) adds them in split order, so the result is deterministic.
#include "common.cuh"

#define SG_WARPS 4
#define SG_ROWS (SG_WARPS * 16)  // W rows per block
#define SG_KC 128                // K elements per pipeline chunk
#define SG_LDX (SG_KC + 32)      // x row stride in shared memory: 320 B, conflict-free reads

template <typename T> __device__ __forceinline__ void mma16816(float* d, const uint32_t* a,
                                                              const uint32_t* b);
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float* d, const uint32_t* a,
                                                        const uint32_t* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
template <>
__device__ __forceinline__ void mma16816<__half>(float* d, const uint32_t* a, const uint32_t* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// NT: tiles of 8 x rows (M <= 8 * NT). `ks`: K elements per split (a multiple of SG_KC);
// gridDim = (ceil(N / SG_ROWS), K / ks). `part` holds splits * M * N floats and `counters`
// one zeroed u32 per row range when gridDim.y > 1.
template <typename T, int NT>
__device__ void skinny_gemm(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y,
                            float* __restrict__ part, unsigned* __restrict__ counters, int m,
                            int n, int k, int ks) {
  __shared__ __align__(16) T xs[2][NT * 8][SG_LDX];
  __shared__ bool last;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int r0 = blockIdx.x * SG_ROWS + warp * 16;
  const int kbeg = blockIdx.y * ks, chunks = ks / SG_KC;
  // Rows past N read the last row (their results are not stored).
  const uint4* wa = reinterpret_cast<const uint4*>(w + (size_t)min(r0 + g, n - 1) * k + kbeg) + t;
  const uint4* wb =
      reinterpret_cast<const uint4*>(w + (size_t)min(r0 + g + 8, n - 1) * k + kbeg) + t;

  auto load_x = [&](int c, int stage) {
    constexpr int VECS = NT * 8 * (SG_KC / 8);
    for (int v = threadIdx.x; v < VECS; v += SG_WARPS * 32) {
      const int row = v / (SG_KC / 8), col = (v % (SG_KC / 8)) * 8;
      const bool ok = row < m;  // rows past M are zero-filled
      cp_async16(&xs[stage][row][col], x + (size_t)(ok ? row : 0) * k + kbeg + c * SG_KC + col,
                 ok);
    }
    cp_async_commit();
  };

  float acc[NT][4];
#pragma unroll
  for (int i = 0; i < NT; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
  uint4 cur_a[4], cur_b[4], nxt_a[4], nxt_b[4];
  // Weights only before pdl_wait: this block may run while the previous kernel finishes.
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    cur_a[j] = __ldcs(wa + 4 * j);
    cur_b[j] = __ldcs(wb + 4 * j);
  }
  pdl_wait();
  load_x(0, 0);
  for (int c = 0; c < chunks; ++c) {
    const bool more = c + 1 < chunks;
    if (more) {
      load_x(c + 1, (c + 1) & 1);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        nxt_a[j] = __ldcs(wa + (c + 1) * (SG_KC / 8) + 4 * j);
        nxt_b[j] = __ldcs(wb + (c + 1) * (SG_KC / 8) + 4 * j);
      }
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const int stage = c & 1;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint32_t a0[4] = {cur_a[j].x, cur_b[j].x, cur_a[j].y, cur_b[j].y};
      const uint32_t a1[4] = {cur_a[j].z, cur_b[j].z, cur_a[j].w, cur_b[j].w};
#pragma unroll
      for (int i = 0; i < NT; ++i) {
        const uint4 xv = *reinterpret_cast<const uint4*>(&xs[stage][i * 8 + g][32 * j + 8 * t]);
        const uint32_t b0[2] = {xv.x, xv.y}, b1[2] = {xv.z, xv.w};
        mma16816<T>(acc[i], a0, b0);
        mma16816<T>(acc[i], a1, b1);
      }
    }
    __syncthreads();  // this stage is refilled by the next iteration's load_x
    if (more) {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        cur_a[j] = nxt_a[j];
        cur_b[j] = nxt_b[j];
      }
    }
  }

  pdl_launch_dependents();
  // Accumulator e of tile i: W row r0 + g (+8 for e >= 2), x row 8i + 2t + (e & 1).
  const int splits = gridDim.y;
  if (splits == 1) {
#pragma unroll
    for (int i = 0; i < NT; ++i)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int row = r0 + g + (e >> 1) * 8, mi = i * 8 + 2 * t + (e & 1);
        if (mi < m && row < n) y[(size_t)mi * n + row] = from_f<T>(acc[i][e]);
      }
    return;
  }
  float* p = part + (size_t)blockIdx.y * m * n;
#pragma unroll
  for (int i = 0; i < NT; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int row = r0 + g + (e >> 1) * 8, mi = i * 8 + 2 * t + (e & 1);
      if (mi < m && row < n) p[(size_t)mi * n + row] = acc[i][e];
    }
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(&counters[blockIdx.x], 1u) == (unsigned)splits - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();
  const int base = blockIdx.x * SG_ROWS, rows = min(SG_ROWS, n - base);
  for (int idx = threadIdx.x; idx < m * rows; idx += SG_WARPS * 32) {
    const int mi = idx / rows, row = base + idx % rows;
    float s = 0.f;
    for (int sp = 0; sp < splits; ++sp) s += __ldcg(part + ((size_t)sp * m + mi) * n + row);
    y[(size_t)mi * n + row] = from_f<T>(s);
  }
  if (threadIdx.x == 0) counters[blockIdx.x] = 0;  // ready for the next launch
}

#define SKINNY_NT(T, S, NT)                                                                    \
  extern "C" __global__ void __launch_bounds__(SG_WARPS * 32)                                  \
      skinny_gemm_##S##_n##NT(const T* x, const T* w, T* y, float* part, unsigned* counters,   \
                              int m, int n, int k, int ks) {                                   \
    skinny_gemm<T, NT>(x, w, y, part, counters, m, n, k, ks);                                  \
  }
#define SKINNY(T, S)                                                                           \
  SKINNY_NT(T, S, 2) SKINNY_NT(T, S, 3) SKINNY_NT(T, S, 4) SKINNY_NT(T, S, 5)                  \
  SKINNY_NT(T, S, 6) SKINNY_NT(T, S, 7) SKINNY_NT(T, S, 8)

SKINNY(__half, f16)
SKINNY(__nv_bfloat16, bf16)
