// Attention of new query tokens over the paged KV cache, reading K/V through each sequence's
// slot table (no gather copy). Flash-decoding style: a sequence's keys are cut into splits
// processed by separate blocks (enough of them to fill the GPU even at batch 1); the last
// block of a row to finish merges the splits' partial softmax results. GQA: query head h
// reads KV head h / (heads / kvh).
#include "common.cuh"

// Keys each lane group loads (their K and V rows both) before using them. One pass over the
// keys with an online softmax keeps K and V loads in flight together: the two-pass kernel
// (scores, then values) waited on memory twice per key range and reached ~1.1 TB/s at batch
// 32.
#define PA_UNROLL 4
// Threads a block. Launch bounds hold groups of up to 4 heads to 128 registers, so 4 blocks
// fit an SM and batch 32 at 256-token contexts runs in one wave on an H100; larger groups
// (8:1 GQA, MQA) need ~250 registers without spilling and take 2 keys a pass.
#define PA_THREADS 128
// Running max of a lane group before its first key: finite, far below any scaled score.
#define NO_KEY -1e30f

// Grid (splits, heads / gb, T), blockDim.x threads (a multiple of 32). Block y handles the gb
// query heads y*gb .. y*gb+gb-1, which share one KV head, so each K/V row is read once for
// all of them (GQA). A group of g = d / VEC lanes (VEC = 16 bytes of T) reads one key or value
// row with 16-byte loads and keeps a running max, sum and output for its keys; the groups of
// the block are merged in shared memory at the end.
// Dynamic shared memory: split_len u32 (slots) + groups * gb * (d + 2) floats (the groups'
// partial results) + gb * num_splits floats (split weights, for the merge).
// q: [T, heads, d]; kc/vc: [slots, kvh, d]; token_seq/token_pos: [T]; seq_off: [seqs];
// slot_table: the slot of every position of every sequence, sequence s from seq_off[s].
// d / VEC must be a power of two <= 32. With one split the result goes straight to
// out [T, heads * d]; otherwise each split writes its max and sum (part_ml) and unnormalised
// output (part_acc) per head, and counters[t * gridDim.y + y] (zero on entry, zero again on
// exit) tells the last of them to merge.
template <typename T, int GB>
__device__ void paged_attention(const T* __restrict__ q, const T* __restrict__ kc,
                                const T* __restrict__ vc, const uint32_t* token_seq,
                                const uint32_t* token_pos, const uint32_t* seq_off,
                                const uint32_t* slot_table, T* out, float* part_ml,
                                float* part_acc, uint32_t* counters, float scale, int window,
                                int heads, int kvh, int d, int num_splits, int split_len) {
  constexpr int VEC = 16 / sizeof(T);
  constexpr int U = GB > 4 ? 2 : PA_UNROLL;
  extern __shared__ float smem[];
  __shared__ int merge;
  const int split = blockIdx.x, t = blockIdx.z;
  const int head0 = blockIdx.y * GB;
  const int kv_head = head0 / (heads / kvh);
  const int pos = (int)token_pos[t];
  const int lo = window > 0 ? max(0, pos + 1 - window) : 0;
  const int start = split * split_len;
  const int n = min(split_len, pos + 1 - lo - start);
  const size_t row0 = (size_t)t * heads + head0;
  const int g = d / VEC;  // lanes per row
  const int groups = blockDim.x / g, kg = threadIdx.x / g, gl = threadIdx.x % g;
  uint32_t* sl = reinterpret_cast<uint32_t*>(smem);
  float* acc_s = smem + split_len;            // [groups][GB][d]
  float* ml_s = acc_s + groups * GB * d;      // [groups][GB][2]
  float* wt_s = ml_s + groups * GB * 2;       // [GB][num_splits]

  // The per-forward inputs (positions, slot tables) were written before the kernel ahead
  // of this one started, so with PDL their dependent loads overlap that kernel's tail.
  if (n > 0) {
    const uint32_t* slots = slot_table + seq_off[token_seq[t]] + lo + start;
    for (int j = threadIdx.x; j < n; j += blockDim.x) sl[j] = slots[j];
  }
  pdl_wait();  // q and the cache come from the previous kernels
  pdl_launch_dependents();
  if (n > 0) {
    float qf[GB][VEC];
#pragma unroll
    for (int h = 0; h < GB; ++h) {
      const uint4 qv = *reinterpret_cast<const uint4*>(q + (row0 + h) * d + gl * VEC);
      const T* qe = reinterpret_cast<const T*>(&qv);
#pragma unroll
      for (int e = 0; e < VEC; ++e) qf[h][e] = to_f(qe[e]) * scale;
    }
    __syncthreads();

    float m[GB], l[GB], acc[GB][VEC];
#pragma unroll
    for (int h = 0; h < GB; ++h) {
      m[h] = NO_KEY;
      l[h] = 0.f;
#pragma unroll
      for (int e = 0; e < VEC; ++e) acc[h][e] = 0.f;
    }
    // Group kg takes keys kg, kg + groups, ...: U of them per pass, all their K and
    // V loads issued before the first use. Every lane runs every pass (the trip count is
    // the block's, not the group's): the shuffles below need the whole warp.
    for (int j0 = 0; j0 < n; j0 += groups * U) {
      uint4 kraw[U], vraw[U];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int j = j0 + u * groups + kg;
        const size_t off = j < n ? ((size_t)sl[j] * kvh + kv_head) * d + gl * VEC : 0;
        kraw[u] = j < n ? __ldg(reinterpret_cast<const uint4*>(kc + off)) : make_uint4(0, 0, 0, 0);
        vraw[u] = j < n ? __ldg(reinterpret_cast<const uint4*>(vc + off)) : make_uint4(0, 0, 0, 0);
      }
      float s[U][GB];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const T* ke = reinterpret_cast<const T*>(&kraw[u]);
        float kf[VEC];
#pragma unroll
        for (int e = 0; e < VEC; ++e) kf[e] = to_f(ke[e]);
#pragma unroll
        for (int h = 0; h < GB; ++h) {
          float dot = 0.f;
#pragma unroll
          for (int e = 0; e < VEC; ++e) dot += qf[h][e] * kf[e];
          // Within the group: xor offsets below g stay inside it. Every lane takes part.
          for (int o = g >> 1; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffff, dot, o);
          s[u][h] = j0 + u * groups + kg < n ? dot : -INFINITY;
        }
      }
      // Online softmax, one rescale per pass. The running max starts at NO_KEY, not -inf, so
      // that a pass without a key of this group rescales by exp(0) instead of NaN.
#pragma unroll
      for (int h = 0; h < GB; ++h) {
        float mx = m[h];
#pragma unroll
        for (int u = 0; u < U; ++u) mx = fmaxf(mx, s[u][h]);
        const float corr = __expf(m[h] - mx);
        m[h] = mx;
        l[h] *= corr;
#pragma unroll
        for (int e = 0; e < VEC; ++e) acc[h][e] *= corr;
#pragma unroll
        for (int u = 0; u < U; ++u) s[u][h] = __expf(s[u][h] - mx);
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const T* ve = reinterpret_cast<const T*>(&vraw[u]);
        float vf[VEC];
#pragma unroll
        for (int e = 0; e < VEC; ++e) vf[e] = to_f(ve[e]);
#pragma unroll
        for (int h = 0; h < GB; ++h) {
          l[h] += s[u][h];
#pragma unroll
          for (int e = 0; e < VEC; ++e) acc[h][e] += s[u][h] * vf[e];
        }
      }
    }
    // Groups without keys (kg >= n) hold m = NO_KEY, l = 0, acc = 0 and weigh nothing below
    // (the block has a key, so the max over groups is a real score).
#pragma unroll
    for (int h = 0; h < GB; ++h) {
#pragma unroll
      for (int e = 0; e < VEC; ++e) acc_s[(kg * GB + h) * d + gl * VEC + e] = acc[h][e];
      if (gl == 0) {
        ml_s[(kg * GB + h) * 2] = m[h];
        ml_s[(kg * GB + h) * 2 + 1] = l[h];
      }
    }
    __syncthreads();
    for (int o = threadIdx.x; o < GB * d; o += blockDim.x) {
      const int h = o / d, i = o % d;
      float big = -INFINITY;
      for (int k = 0; k < groups; ++k) big = fmaxf(big, ml_s[(k * GB + h) * 2]);
      float total = 0.f, sum = 0.f;
      for (int k = 0; k < groups; ++k) {
        const float w = __expf(ml_s[(k * GB + h) * 2] - big);
        total += acc_s[(k * GB + h) * d + i] * w;
        sum += ml_s[(k * GB + h) * 2 + 1] * w;
      }
      const size_t row = row0 + h;
      if (num_splits == 1) {
        out[row * d + i] = from_f<T>(total / sum);
      } else {
        part_acc[(row * num_splits + split) * d + i] = total;
        if (i == 0) {
          part_ml[(row * num_splits + split) * 2] = big;
          part_ml[(row * num_splits + split) * 2 + 1] = sum;
        }
      }
    }
  } else {  // this split lies past the token's position: empty partial results
    for (int o = threadIdx.x; o < GB * d; o += blockDim.x) {
      const size_t part = (row0 + o / d) * num_splits + split;
      part_acc[part * d + o % d] = 0.f;
      if (o % d == 0) {
        part_ml[part * 2] = -INFINITY;
        part_ml[part * 2 + 1] = 0.f;
      }
    }
  }
  if (num_splits == 1) return;

  // The last split of this (token, head group) to finish merges all of them.
  __threadfence();  // this block's partials are visible before its count is
  __syncthreads();
  uint32_t* counter = counters + (size_t)t * gridDim.y + blockIdx.y;
  if (threadIdx.x == 0) merge = atomicAdd(counter, 1u) == (uint32_t)num_splits - 1;
  __syncthreads();
  if (!merge) return;
  __threadfence();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  for (int h = warp; h < GB; h += nwarps) {  // each split's weight exp(m_s - max) / sum
    const float* ml = part_ml + (row0 + h) * num_splits * 2;
    float big = -INFINITY;
    for (int s = lane; s < num_splits; s += 32) big = fmaxf(big, __ldcg(ml + s * 2));
    big = warp_max(big);
    float sum = 0.f;
    for (int s = lane; s < num_splits; s += 32) {
      const float w = __expf(__ldcg(ml + s * 2) - big);
      wt_s[h * num_splits + s] = w;
      sum += __ldcg(ml + s * 2 + 1) * w;
    }
    sum = warp_sum(sum);
    for (int s = lane; s < num_splits; s += 32) wt_s[h * num_splits + s] /= sum;
  }
  __syncthreads();
  for (int o = threadIdx.x; o < GB * d; o += blockDim.x) {
    const int h = o / d, i = o % d;
    const float* pa = part_acc + (row0 + h) * num_splits * d + i;
    float total = 0.f;
#pragma unroll 4
    for (int s = 0; s < num_splits; ++s) total += __ldcg(pa + (size_t)s * d) * wt_s[h * num_splits + s];
    out[(row0 + h) * d + i] = from_f<T>(total);
  }
  if (threadIdx.x == 0) *counter = 0;  // ready for the next launch
}

#define PA_KERNEL(T, S, G)                                                                     \
  extern "C" __global__ void __launch_bounds__(PA_THREADS, (G) > 4 ? 2 : 4) paged_attention_##S##_g##G(                                       \
      const T* q, const T* kc, const T* vc, const uint32_t* token_seq,                         \
      const uint32_t* token_pos, const uint32_t* seq_off, const uint32_t* slot_table, T* out,  \
      float* part_ml, float* part_acc, uint32_t* counters, float scale, int window, int heads, \
      int kvh, int d, int num_splits, int split_len) {                                         \
    paged_attention<T, G>(q, kc, vc, token_seq, token_pos, seq_off, slot_table, out, part_ml,  \
                          part_acc, counters, scale, window, heads, kvh, d, num_splits,        \
                          split_len);                                                          \
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
  PA_KERNEL(T, S, 8)

PA_KERNELS(float, f32)
PA_KERNELS(__half, f16)
PA_KERNELS(__nv_bfloat16, bf16)
