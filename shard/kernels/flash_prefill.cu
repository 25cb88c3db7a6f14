// Causal prefill attention on tensor cores (flash-attention style), reading K/V through each
// sequence's slot table. A block takes one tile of up to 64 consecutive query tokens of one
// sequence and one head; its 4 warps own 16 query rows each. Key tiles of 32 positions are
// gathered by slot into shared memory with cp.async (two stages, so the next tile loads while
// this one is used); S = Q K^T and O += P V run as 16x16x16 WMMA products with f32
// accumulators; the online softmax runs on S staged in shared memory, two lanes per row.
// The matmul path this replaces materialised [queries, keys] scores per head in global memory
// and ran at ~31 TFLOP/s on an H100 for 2048-token prompts.
#include "common.cuh"
#include <mma.h>

using namespace nvcuda;

#define FP_ROWS 64   // query rows per block
#define FP_KEYS 32   // key positions per tile
#define FP_WARPS 4   // FP_ROWS / 16
#define FP_THREADS (FP_WARPS * 32)

// Shared memory layout (bytes, D = 128; D = 64 halves the K/V part):
//   kv_s: [2 stages][K, V][FP_KEYS][LDK] T          34,816 (also Q staging, then O staging)
//   s_all: [FP_WARPS][16][LDS] f32 scores, aliased by the warp's P ([16][LDP] T)  9,216
//   stat_all: [FP_WARPS][16] f32 (per-row rescale factor, then the row sum)         256
// Every WMMA pointer is 32-byte aligned: row strides and offsets are multiples of 32 bytes.
template <typename T, int D> struct FlashShape {
  static constexpr int LDK = D + 8;        // padded rows: fewer shared-memory bank conflicts
  static constexpr int LDS = FP_KEYS + 4;  // f32 scores
  static constexpr int LDP = FP_KEYS + 8;  // probabilities in T
  static constexpr int LDO = D + 4;        // f32 output staging
  static constexpr int KV_BYTES = 4 * FP_KEYS * LDK * (int)sizeof(T);
  static constexpr int S_BYTES = FP_WARPS * 16 * LDS * 4;
  static constexpr int BYTES = KV_BYTES + S_BYTES + FP_WARPS * 16 * 4;
  static_assert(FP_ROWS * LDK * (int)sizeof(T) <= KV_BYTES, "Q staging fits the K/V buffers");
  static_assert(FP_WARPS * 16 * LDO * 4 <= KV_BYTES, "O staging fits the K/V buffers");
  static_assert(16 * LDP * (int)sizeof(T) <= 16 * LDS * 4, "P fits in the warp's scores");
};

// Grid (heads, tiles). tiles: [n_tiles][4] u32 = first token index, rows (1..64), sequence,
// position of the first row; the rows are consecutive tokens at consecutive positions.
// q: [T, heads, D]; kc/vc: [slots, kvh, D]; out: [T, heads, D]. scale_log2 = scale * log2(e).
// Query row at position p attends to keys lo..p with lo = max(0, p + 1 - window) (window > 0)
// or 0.
template <typename T, int D>
__device__ void flash_prefill(const T* q, const T* kc, const T* vc, const uint32_t* tiles,
                              const uint32_t* seq_off, const uint32_t* slot_table, T* out,
                              float scale_log2, int window, int heads, int kvh) {
  using S = FlashShape<T, D>;
  constexpr int LDK = S::LDK, LDS = S::LDS, LDP = S::LDP, LDO = S::LDO;
  constexpr int DF = D / 16, KF = FP_KEYS / 16, VPR = D * (int)sizeof(T) / 16;
  constexpr int EPV = 16 / (int)sizeof(T);  // elements per 16-byte vector
  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* kv_s = reinterpret_cast<T*>(smem_raw);
  float* s_all = reinterpret_cast<float*>(smem_raw + S::KV_BYTES);
  float* stat_all = reinterpret_cast<float*>(smem_raw + S::KV_BYTES + S::S_BYTES);

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const uint32_t* tile = tiles + (size_t)blockIdx.y * 4;
  const int t0 = (int)tile[0], n = (int)tile[1], pos0 = (int)tile[3];
  const uint32_t* slots = slot_table + seq_off[tile[2]];
  const int head = blockIdx.x, kv_head = head / (heads / kvh);
  const int last = pos0 + n - 1;
  const int kv_lo = window > 0 ? max(0, pos0 + 1 - window) : 0;
  const int n_tiles = (last - kv_lo) / FP_KEYS + 1;
  float* s_w = s_all + warp * 16 * LDS;
  T* p_w = reinterpret_cast<T*>(s_w);
  float* stat_w = stat_all + warp * 16;

  // Q rows (zeros past n) through shared memory into fragments.
  for (int i = threadIdx.x; i < FP_ROWS * VPR; i += FP_THREADS) {
    const int r = i / VPR, c = i % VPR;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (r < n) {
      v = *reinterpret_cast<const uint4*>(q + ((size_t)(t0 + r) * heads + head) * D + c * EPV);
    }
    *reinterpret_cast<uint4*>(kv_s + r * LDK + c * EPV) = v;
  }
  __syncthreads();
  wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> qa[DF];
#pragma unroll
  for (int kk = 0; kk < DF; ++kk) wmma::load_matrix_sync(qa[kk], kv_s + warp * 16 * LDK + kk * 16, LDK);
  // The row of each accumulator element, learned by loading a matrix of row numbers (the
  // fragment layout is opaque), so the per-row rescale can run on the O fragments in place.
  using Acc = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;
  constexpr int NE = Acc::num_elements;
  Acc acc;
  for (int i = lane; i < 256; i += 32) s_w[(i / 16) * LDS + i % 16] = (float)(i / 16);
  __syncwarp();
  wmma::load_matrix_sync(acc, s_w, LDS, wmma::mem_row_major);
  int rowmap[NE];
#pragma unroll
  for (int i = 0; i < NE; ++i) rowmap[i] = (int)acc.x[i];
  __syncthreads();  // Q staging is read; the K/V tiles may overwrite it

  auto load_tile = [&](int kt) {
    T* ks = kv_s + (kt & 1) * 2 * FP_KEYS * LDK;
    T* vs = ks + FP_KEYS * LDK;
    const int base = kv_lo + kt * FP_KEYS;
    for (int i = threadIdx.x; i < FP_KEYS * VPR; i += FP_THREADS) {
      const int r = i / VPR, c = i % VPR, p = base + r;
      const bool ok = p <= last;
      const size_t off = ok ? ((size_t)slots[p] * kvh + kv_head) * D + c * EPV : 0;
      cp_async16(ks + r * LDK + c * EPV, kc + off, ok);
      cp_async16(vs + r * LDK + c * EPV, vc + off, ok);
    }
    cp_async_commit();
  };

  Acc o[DF];
#pragma unroll
  for (int f = 0; f < DF; ++f) wmma::fill_fragment(o[f], 0.f);
  const int r = lane >> 1, half = lane & 1;  // softmax: two lanes per row, 16 keys each
  const int row = warp * 16 + r;
  const int qpos = pos0 + row;
  const bool row_ok = row < n;
  // Last position among this warp's valid rows; -1 when it has none.
  const int warp_last = warp * 16 < n ? pos0 + min(warp * 16 + 15, n - 1) : -1;
  float m = -INFINITY, l = 0.f;

  load_tile(0);
  for (int kt = 0; kt < n_tiles; ++kt) {
    if (kt + 1 < n_tiles) {
      load_tile(kt + 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const T* ks = kv_s + (kt & 1) * 2 * FP_KEYS * LDK;
    const T* vs = ks + FP_KEYS * LDK;
    const int base = kv_lo + kt * FP_KEYS;
    // Warp-uniform: the tile holds keys some row of this warp attends to.
    const bool work = base <= warp_last && (window <= 0 || base + FP_KEYS > pos0 + warp * 16 + 1 - window);
    if (work) {
#pragma unroll
      for (int j = 0; j < KF; ++j) {
        wmma::fill_fragment(acc, 0.f);
#pragma unroll
        for (int kk = 0; kk < DF; ++kk) {
          wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> kb;
          wmma::load_matrix_sync(kb, ks + j * 16 * LDK + kk * 16, LDK);
          wmma::mma_sync(acc, qa[kk], kb, acc);
        }
        wmma::store_matrix_sync(s_w + j * 16, acc, LDS, wmma::mem_row_major);
      }
      __syncwarp();
      float sv[16];
      float mx = -INFINITY;
#pragma unroll
      for (int c = 0; c < 16; ++c) {
        const int p = base + half * 16 + c;
        const bool ok = row_ok && p <= qpos && (window <= 0 || p > qpos - window);
        sv[c] = ok ? s_w[r * LDS + half * 16 + c] * scale_log2 : -INFINITY;
        mx = fmaxf(mx, sv[c]);
      }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 1));
      const float m_new = fmaxf(m, mx);
      // A row with no key yet keeps m = -inf: its probabilities are 0 and O stays 0.
      const bool none = m_new == -INFINITY;
      const float alpha = none ? 1.f : exp2f(m - m_new);
      __syncwarp();  // every lane has read its scores before P overwrites them
      float sum = 0.f;
#pragma unroll
      for (int c = 0; c < 16; ++c) {
        const float pr = none ? 0.f : exp2f(sv[c] - m_new);
        sum += pr;
        p_w[r * LDP + half * 16 + c] = from_f<T>(pr);
      }
      sum += __shfl_xor_sync(0xffffffff, sum, 1);
      l = l * alpha + sum;
      m = m_new;
      if (half == 0) stat_w[r] = alpha;
      __syncwarp();
#pragma unroll
      for (int f = 0; f < DF; ++f) {
#pragma unroll
        for (int i = 0; i < NE; ++i) o[f].x[i] *= stat_w[rowmap[i]];
      }
#pragma unroll
      for (int kk = 0; kk < KF; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> pa;
        wmma::load_matrix_sync(pa, p_w + kk * 16, LDP);
#pragma unroll
        for (int f = 0; f < DF; ++f) {
          wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> vb;
          wmma::load_matrix_sync(vb, vs + kk * 16 * LDK + f * 16, LDK);
          wmma::mma_sync(o[f], pa, vb, o[f]);
        }
      }
      __syncwarp();  // P is read before the next tile's scores overwrite it
    }
    __syncthreads();  // this stage is read before it is loaded again
  }

  // Normalise by the row sums and write the valid rows through shared memory.
  if (half == 0) stat_w[r] = l;
  __syncwarp();
  if (warp * 16 >= n) return;
  float* o_w = reinterpret_cast<float*>(smem_raw) + warp * 16 * LDO;
#pragma unroll
  for (int f = 0; f < DF; ++f) {
#pragma unroll
    for (int i = 0; i < NE; ++i) {
      const float li = stat_w[rowmap[i]];
      o[f].x[i] = li > 0.f ? o[f].x[i] / li : 0.f;
    }
    wmma::store_matrix_sync(o_w + f * 16, o[f], LDO, wmma::mem_row_major);
  }
  __syncwarp();
  for (int i = lane; i < 16 * VPR; i += 32) {
    const int rr = i / VPR, c = i % VPR;
    if (warp * 16 + rr >= n) continue;
    uint4 packed;
    T* vals = reinterpret_cast<T*>(&packed);
#pragma unroll
    for (int e = 0; e < EPV; ++e) vals[e] = from_f<T>(o_w[rr * LDO + c * EPV + e]);
    *reinterpret_cast<uint4*>(out + ((size_t)(t0 + warp * 16 + rr) * heads + head) * D + c * EPV) =
        packed;
  }
}

#define FP_KERNEL(T, S, D)                                                                    \
  extern "C" __global__ void __launch_bounds__(FP_THREADS) flash_prefill_##S##_d##D(          \
      const T* q, const T* kc, const T* vc, const uint32_t* tiles, const uint32_t* seq_off,   \
      const uint32_t* slot_table, T* out, float scale_log2, int window, int heads, int kvh) {  \
    flash_prefill<T, D>(q, kc, vc, tiles, seq_off, slot_table, out, scale_log2, window, heads, \
                        kvh);                                                                 \
  }

FP_KERNEL(__half, f16, 64)
FP_KERNEL(__half, f16, 128)
FP_KERNEL(__nv_bfloat16, bf16, 64)
FP_KERNEL(__nv_bfloat16, bf16, 128)
