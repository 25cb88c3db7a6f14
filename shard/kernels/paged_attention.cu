// Attention of new query tokens over the paged KV cache, reading K/V through each sequence's
// slot table (no gather copy). Flash-decoding style: a sequence's keys are cut into splits
// processed by separate blocks (enough of them to fill the GPU even at batch 1), whose partial
// softmax results a second kernel merges. GQA: query head h reads KV head h / (heads / kvh).
#include "common.cuh"

// Key (and value) rows each lane group loads before using them: one 16-byte load at a time
// left the kernel latency-bound (a few hundred keys per block, one round trip each). 8 rows
// in flight instead of 4 gave batch-32 decode +1.9% on an H100 (3,888 / 3,883 vs 3,817 /
// 3,804 tok/s, alternating runs in one call) and left batch 1 and 64 within noise.
#define PA_UNROLL 8

// Grid (splits, heads / gb, T), blockDim.x threads (a multiple of 32). Block y handles the gb
// query heads y*gb .. y*gb+gb-1, which share one KV head, so each K/V row is read once for
// all of them (GQA). Dynamic shared memory: gb * split_len floats (scores) + split_len u32
// (slots) + blockDim.x * VEC * gb floats (partial sums).
// q: [T, heads, d]; kc/vc: [slots, kvh, d]; token_seq/token_pos: [T]; seq_off: [seqs];
// slot_table: the slot of every position of every sequence, sequence s from seq_off[s].
// d / VEC (VEC = 16 bytes of T) must be a power of two <= 32: a group of that many lanes
// reads one key or value row with 16-byte loads. With one split the result goes straight to
// out [T, heads * d]; otherwise each split writes its max and sum (part_ml) and unnormalised
// output (part_acc) per head for paged_attention_reduce.
template <typename T, int GB>
__device__ void paged_attention(const T* q, const T* kc, const T* vc, const uint32_t* token_seq,
                                const uint32_t* token_pos, const uint32_t* seq_off,
                                const uint32_t* slot_table, T* out, float* part_ml,
                                float* part_acc, float scale, int window, int heads, int kvh,
                                int d, int num_splits, int split_len) {
  constexpr int gb = GB;
  constexpr int VEC = 16 / sizeof(T);
  extern __shared__ float smem[];
  __shared__ float head_m[GB], head_s[GB];
  pdl_wait();  // q and the cache come from the previous kernels
  pdl_launch_dependents();
  const int split = blockIdx.x, t = blockIdx.z;
  const int head0 = blockIdx.y * gb;
  const int kv_head = head0 / (heads / kvh);
  const int pos = (int)token_pos[t];
  const int lo = window > 0 ? max(0, pos + 1 - window) : 0;
  const int start = split * split_len;
  const int n = min(split_len, pos + 1 - lo - start);
  const size_t row0 = (size_t)t * heads + head0;
  if (n <= 0) {  // this split lies past the token's position: empty partial results
    for (int h = 0; h < gb; ++h) {
      const size_t part = (row0 + h) * num_splits + split;
      if (threadIdx.x == 0) {
        part_ml[part * 2] = -INFINITY;
        part_ml[part * 2 + 1] = 0.f;
      }
      for (int i = threadIdx.x; i < d; i += blockDim.x) part_acc[part * d + i] = 0.f;
    }
    return;
  }
  float* sc = smem;  // [gb][split_len]
  uint32_t* sl = reinterpret_cast<uint32_t*>(sc + gb * split_len);
  float* acc_s = reinterpret_cast<float*>(sl + split_len);
  const uint32_t* slots = slot_table + seq_off[token_seq[t]] + lo + start;
  for (int j = threadIdx.x; j < n; j += blockDim.x) sl[j] = slots[j];

  const int g = d / VEC;  // lanes per row
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  const int sub = lane / g, gl = lane % g, rows_per_warp = 32 / g;
  float qf[GB][VEC];
#pragma unroll
  for (int h = 0; h < GB; ++h) {
    if (h < gb) {
      const uint4 qv = *reinterpret_cast<const uint4*>(q + (row0 + h) * d + gl * VEC);
      const T* qe = reinterpret_cast<const T*>(&qv);
#pragma unroll
      for (int e = 0; e < VEC; ++e) qf[h][e] = to_f(qe[e]) * scale;
    }
  }
  __syncthreads();

  // Scores: each group of g lanes takes PA_UNROLL keys per pass, for all gb heads; the
  // loads of a pass are all issued before the first use, so several are in flight per thread.
  const int keys_per_pass = nwarps * rows_per_warp;
  for (int j0 = warp * rows_per_warp; j0 < n; j0 += keys_per_pass * PA_UNROLL) {
    uint4 kraw[PA_UNROLL];
#pragma unroll
    for (int u = 0; u < PA_UNROLL; ++u) {
      const int j = j0 + u * keys_per_pass + sub;
      kraw[u] = j < n ? *reinterpret_cast<const uint4*>(
                            kc + ((size_t)sl[j] * kvh + kv_head) * d + gl * VEC)
                      : make_uint4(0u, 0u, 0u, 0u);
    }
#pragma unroll
    for (int u = 0; u < PA_UNROLL; ++u) {
      const int j = j0 + u * keys_per_pass + sub;
      const T* ke = reinterpret_cast<const T*>(&kraw[u]);
      float kf[VEC];
#pragma unroll
      for (int e = 0; e < VEC; ++e) kf[e] = to_f(ke[e]);
#pragma unroll
      for (int h = 0; h < GB; ++h) {
        if (h < gb) {
          float dot = 0.f;
#pragma unroll
          for (int e = 0; e < VEC; ++e) dot += qf[h][e] * kf[e];
          for (int o = g >> 1; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffff, dot, o);
          if (gl == 0 && j < n) sc[h * split_len + j] = dot;
        }
      }
    }
  }
  __syncthreads();
  // Softmax statistics: warp w takes heads w, w + nwarps, ...
  for (int h = warp; h < gb; h += nwarps) {
    float m = -INFINITY;
    for (int j = lane; j < n; j += 32) m = fmaxf(m, sc[h * split_len + j]);
    m = warp_max(m);
    float s = 0.f;
    for (int j = lane; j < n; j += 32) {
      const float e = __expf(sc[h * split_len + j] - m);
      sc[h * split_len + j] = e;
      s += e;
    }
    s = warp_sum(s);
    if (lane == 0) {
      head_m[h] = m;
      head_s[h] = s;
    }
  }
  __syncthreads();

  // Values: thread (key group kg, lane gl) sums VEC dims over keys kg, kg + groups, ...
  const int groups = blockDim.x / g, kg = threadIdx.x / g;
  float acc[GB][VEC];
#pragma unroll
  for (int h = 0; h < GB; ++h)
#pragma unroll
    for (int e = 0; e < VEC; ++e) acc[h][e] = 0.f;
  for (int j0 = kg; j0 < n; j0 += groups * PA_UNROLL) {
    uint4 vraw[PA_UNROLL];
#pragma unroll
    for (int u = 0; u < PA_UNROLL; ++u) {
      const int j = j0 + u * groups;
      vraw[u] = j < n ? *reinterpret_cast<const uint4*>(
                            vc + ((size_t)sl[j] * kvh + kv_head) * d + gl * VEC)
                      : make_uint4(0u, 0u, 0u, 0u);
    }
#pragma unroll
    for (int u = 0; u < PA_UNROLL; ++u) {
      const int j = j0 + u * groups;
      if (j < n) {
        const T* ve = reinterpret_cast<const T*>(&vraw[u]);
        float vf[VEC];
#pragma unroll
        for (int e = 0; e < VEC; ++e) vf[e] = to_f(ve[e]);
#pragma unroll
        for (int h = 0; h < GB; ++h) {
          if (h < gb) {
            const float p = sc[h * split_len + j];
#pragma unroll
            for (int e = 0; e < VEC; ++e) acc[h][e] += p * vf[e];
          }
        }
      }
    }
  }
#pragma unroll
  for (int h = 0; h < GB; ++h) {
    if (h < gb) {
#pragma unroll
      for (int e = 0; e < VEC; ++e) acc_s[(kg * gb + h) * d + gl * VEC + e] = acc[h][e];
    }
  }
  __syncthreads();
  for (int o = threadIdx.x; o < gb * d; o += blockDim.x) {
    const int h = o / d, i = o % d;
    float total = 0.f;
    for (int k = 0; k < groups; ++k) total += acc_s[(k * gb + h) * d + i];
    const size_t row = row0 + h;
    if (num_splits == 1) {
      out[row * d + i] = from_f<T>(total / head_s[h]);
    } else {
      part_acc[(row * num_splits + split) * d + i] = total;
    }
  }
  if (num_splits > 1 && threadIdx.x < gb) {
    const size_t part = (row0 + threadIdx.x) * num_splits + split;
    part_ml[part * 2] = head_m[threadIdx.x];
    part_ml[part * 2 + 1] = head_s[threadIdx.x];
  }
}

// Merges the splits of one (token, head) row: grid T * heads blocks.
template <typename T>
__device__ void paged_attention_reduce(const float* part_ml, const float* part_acc, T* out,
                                       int num_splits, int d) {
  pdl_wait();
  pdl_launch_dependents();
  const size_t row = blockIdx.x;
  const float* ml = part_ml + row * num_splits * 2;
  float big = -INFINITY;
  for (int s = 0; s < num_splits; ++s) big = fmaxf(big, ml[s * 2]);
  float total = 0.f;
  for (int s = 0; s < num_splits; ++s) total += ml[s * 2 + 1] * __expf(ml[s * 2] - big);
  for (int i = threadIdx.x; i < d; i += blockDim.x) {
    float acc = 0.f;
    for (int s = 0; s < num_splits; ++s) {
      acc += part_acc[(row * num_splits + s) * d + i] * __expf(ml[s * 2] - big);
    }
    out[row * d + i] = from_f<T>(acc / total);
  }
}

#define PA_KERNEL(T, S, G)                                                                     \
  extern "C" __global__ void paged_attention_##S##_g##G(                                       \
      const T* q, const T* kc, const T* vc, const uint32_t* token_seq,                         \
      const uint32_t* token_pos, const uint32_t* seq_off, const uint32_t* slot_table, T* out,  \
      float* part_ml, float* part_acc, float scale, int window, int heads, int kvh, int d,     \
      int num_splits, int split_len) {                                                         \
    paged_attention<T, G>(q, kc, vc, token_seq, token_pos, seq_off, slot_table, out, part_ml,  \
                          part_acc, scale, window, heads, kvh, d, num_splits, split_len);      \
  }

// The group size is a template parameter so that the per-head arrays are sized to it: sized
// for the largest group they cost ~110 registers a thread, which capped residency at 4 blocks
// an SM and with it the loads in flight.
#define PA_KERNELS(T, S)                                                                       \
  PA_KERNEL(T, S, 1)                                                                           \
  PA_KERNEL(T, S, 2)                                                                           \
  PA_KERNEL(T, S, 3)                                                                           \
  PA_KERNEL(T, S, 4)                                                                           \
  PA_KERNEL(T, S, 5)                                                                           \
  PA_KERNEL(T, S, 6)                                                                           \
  PA_KERNEL(T, S, 7)                                                                           \
  PA_KERNEL(T, S, 8)                                                                           \
  extern "C" __global__ void paged_attention_reduce_##S(const float* part_ml,                  \
                                                        const float* part_acc, T* out,         \
                                                        int num_splits, int d) {               \
    paged_attention_reduce<T>(part_ml, part_acc, out, num_splits, d);                          \
  }

PA_KERNELS(float, f32)
PA_KERNELS(__half, f16)
PA_KERNELS(__nv_bfloat16, bf16)
