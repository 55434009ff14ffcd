/*
 * cartesian_irreps._fused: fused CPU kernel for the message-passing tensor product.
 *
 * Paths p = 0..P-1 each carry a (sparse) coupling tensor C_p[i, j, k] given as COO
 * lists, and read/write blocks of the arrays (all C-contiguous, one float format).  With
 * int64 senders s(e) and receivers r(e) of E edges between N nodes:
 *
 *     h   (N, C, DX)   node features; path p reads  h[s(e), c, ox_p + i],  i < dx_p
 *     y   (E, DY)      edge harmonics; path p reads y[e, oy_p + j],         j < dy_p
 *     w   (E, C, P)    weight                       w[e, c, p]
 *     g   (N, C, DZ)   node array; path p reads     g[r(e), c, oz_p + k],  k < dz_p
 *
 * and define the 4-linear form
 *
 *     PhiG(h, y, w, g) = sum_e sum_{c,p,i,j,k} w[e,c,p] C_p[i,j,k] h[s(e),c,ox_p+i] y[e,oy_p+j] g[r(e),c,oz_p+k],
 *
 * i.e. Phi(h[s], y, w, g[r]) with the per-edge form Phi(x, y, w, g) = sum w C_p x y g (the per-edge
 * product is the graph with s(e) = r(e) = e).  phi_grad_graph(mode, ...) writes ONE partial
 * gradient of PhiG into `out`, without forming the gathers or the per-edge outputs:
 *
 *     mode 0 ("z"): out (N, C, DZ)  out[n] = sum_{e: r(e)=n} z_e,  z_e[c,oz+k]  = w[e,c,p] sum_ij C_p[i,j,k] h[s(e),c,ox+i] y[e,oy+j]
 *     mode 1 ("x"): out (N, C, DX)  out[n] = sum_{e: s(e)=n} gx_e, gx_e[c,ox+i] = sum_p w[e,c,p] sum_jk C_p[i,j,k] y[e,oy+j] g[r(e),c,oz+k]
 *     mode 2 ("y"): out (E, DY)     gy[e,oy+j] = sum_{c,p} w[e,c,p] sum_ik C_p[i,j,k] h[s(e),c,ox+i] g[r(e),c,oz+k]
 *     mode 3 ("w"): out (E, C, P)   gw[e,c,p]  = sum_ijk C_p[i,j,k] h[s(e),c,ox+i] y[e,oy+j] g[r(e),c,oz+k]
 *
 * Paths may share blocks of h and y (their contributions to the gradients add up); their blocks
 * of g (and z) must be disjoint, as in the contiguous layout oz_p = sum_{q<p} dz_q (rows of g
 * that no path owns give zeros).  Only the output rows [start, stop) are processed (nodes for
 * modes z and x, edges for y and w) and overwritten; other rows are left untouched, so that
 * Python threads can split the rows: the GIL is released during the loop.
 *
 * Algorithm, per edge: fold y into the couplings, M_p[i,k] = sum_j C_p[i,j,k] y[e,oy+j],
 * kept only on the (i, k) pairs that occur in the COO lists; then, per block of up to 32
 * channels, transpose the channel rows into channel-innermost scratch (converted to
 * double; 8 x 8 tiles transposed in registers) so that every pair becomes a few SIMD
 * multiply-adds across channels, and transpose the result back (through a staging buffer
 * and non-temporal stores when the output of mode w is large).  Mode "y" instead accumulates
 * T_p[i,k] = sum_c w[e,c,p] h[s(e),c,ox+i] g[r(e),c,oz+k] over channels and then applies
 * gy[e,oy+j] += sum_ik C_p[i,j,k] T_p[i,k].  All arithmetic is done in double, for
 * float32 inputs too.  Every loop over pairs, COO entries or rows is flat (no short inner
 * loops of data-dependent length), so branches are predictable.
 *
 * Modes z and x process output rows that are nodes: mode z visits each node's edges in receiver
 * order (CSR pointers and a sorting permutation) and accumulates them in double scratch, writing
 * the node's row once; mode x visits the edges of its sender range in receiver order (so that
 * consecutive edges share the loaded rows of g) and accumulates into scratch rows of the range,
 * written once at the end.  Threads split the rows, so no row is written by two threads and
 * nothing needs atomics.  Every index read is validated.
 *
 * Only the buffer protocol is used (no NumPy C API).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__) || defined(_M_X64)
#include <immintrin.h>
#define FUSED_STREAM 1
#endif

#if defined(_MSC_VER) && !defined(__clang__)
#define restrict __restrict
#endif

#if defined(__GNUC__) || defined(__clang__)
#define FORCE_INLINE static inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define FORCE_INLINE static __forceinline
#else
#define FORCE_INLINE static inline
#endif

/* Channels are processed in groups of CB = 8 (the tile transposes below move 8 x 8 tiles);
 * a channel block holds NV = 1, 2 or 4 groups, i.e. up to WMAX = 32 channels. */
#define CB 8
#define NVMAX 4
#define WMAX (CB * NVMAX)

/* nvec: the native SIMD vector of VL doubles (GCC/Clang vector extensions; VL = 8 with
 * AVX-512, 4 with AVX, 2 with SSE2/NEON; a plain double elsewhere).  Scratch rows are 64-byte
 * aligned and a multiple of 8 doubles long, so aligned vector loads are always valid. */
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__AVX512F__))
#define VL 8
#elif (defined(__GNUC__) || defined(__clang__)) && defined(__AVX__)
#define VL 4
#elif (defined(__GNUC__) || defined(__clang__)) && (defined(__SSE2__) || defined(__ARM_NEON))
#define VL 2
#else
#define VL 1
#endif
#if VL > 1
typedef double nvec __attribute__((vector_size(VL * sizeof(double))));
#else
typedef double nvec;
#endif
#define VLOAD(p) (*(const nvec *)(p))
#if defined(__clang__)
#define UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define UNROLL _Pragma("GCC unroll 8")
#else
#define UNROLL
#endif
#define VSTORE(p, a) (*(nvec *)(p) = (a))

enum { MODE_Z = 0, MODE_X = 1, MODE_Y = 2, MODE_W = 3 };
enum { FMT_F64 = 0, FMT_F32 = 1 };

/* ------------------------------------------------------------------------- */
/* aligned scratch                                                            */

static void *aligned_calloc(size_t n_doubles, void **base) {
    size_t bytes = (n_doubles + 1) * sizeof(double) + 64;
    char *raw = (char *)calloc(1, bytes);
    *base = raw;
    if (raw == NULL) return NULL;
    uintptr_t a = ((uintptr_t)raw + 63u) & ~(uintptr_t)63u;
    return (void *)a;
}

/* ------------------------------------------------------------------------- */
/* plan: the (i, k) pairs of every path, as flat lists of scratch rows        */

/* All loops of the edge kernel are flat (one loop over all pairs, over all COO entries or over
 * all output rows), so that no short, data-dependent inner loop costs branch mispredictions.
 * Pairs are ordered round-robin over their destination row, so that consecutive
 * read-modify-write updates of the scratch rarely touch the same row. */
typedef struct {
    int P, DX, DY, DZ;
    int nnz, npairs;
    int32_t *pair_x;    /* (npairs,) row ox_p + i of x */
    int32_t *pair_z;    /* (npairs,) row oz_p + k of g / z */
    /* the COO entries, as (pair, row oy_p + j of y, value): the first entry of every pair t is
     * first_y[t], first_val[t]; the nrest others are rest_pair/rest_y/rest_val[n] */
    int32_t *first_y;
    double *first_val;
    int nrest;
    int32_t *rest_pair, *rest_y;
    double *rest_val;
    int32_t *coo_pair; /* (nnz,) scratch of plan_build */
    int32_t *coo_y;    /* (nnz,) scratch of plan_build */
    int32_t *zrow_path; /* (DZ,) path owning row r of g / z; P where none does */
    int nfirst;         /* pairs 0 .. nfirst-1 are the first of their destination row */
    int nzero;          /* destination rows that no pair touches ... */
    int32_t *zero_rows; /* (nzero,) ... (destination: rows of x in mode x, of g / z otherwise) */
} Plan;

static void plan_free(Plan *pl) {
    free(pl->pair_x);
    free(pl->pair_z);
    free(pl->first_y);
    free(pl->first_val);
    free(pl->rest_pair);
    free(pl->rest_y);
    free(pl->rest_val);
    free(pl->coo_pair);
    free(pl->coo_y);
    free(pl->zrow_path);
    free(pl->zero_rows);
}

/* Build the plan (no Python calls; may run without the GIL).  The output blocks of the paths
 * (rows oz_p .. oz_p + dz_p - 1) must be disjoint (checked by the caller).  Returns 0 on
 * success, -1 on OOM. */
static int plan_build(Plan *pl, int mode, const int32_t *meta, const int32_t *coo_ptr, const int32_t *coo_i,
                      const int32_t *coo_j, const int32_t *coo_k, const double *coo_val) {
    const int P = pl->P, nnz = pl->nnz;
    size_t max_cells = 1;
    for (int p = 0; p < P; p++) {
        const size_t cells = (size_t)meta[6 * p + 1] * (size_t)meta[6 * p + 5];
        if (cells > max_cells) max_cells = cells;
    }
    const size_t nz = (size_t)(nnz > 0 ? nnz : 1);
    const size_t ndst = (size_t)(pl->DX > pl->DZ ? pl->DX : pl->DZ) + 1;
    pl->pair_x = (int32_t *)malloc(nz * sizeof(int32_t));
    pl->pair_z = (int32_t *)malloc(nz * sizeof(int32_t));
    pl->coo_pair = (int32_t *)malloc(nz * sizeof(int32_t));
    pl->coo_y = (int32_t *)malloc(nz * sizeof(int32_t));
    pl->zrow_path = (int32_t *)malloc(((size_t)pl->DZ + 1) * sizeof(int32_t));
    int32_t *cell = (int32_t *)malloc(max_cells * sizeof(int32_t));
    int32_t *px = (int32_t *)malloc(nz * sizeof(int32_t)), *pz = (int32_t *)malloc(nz * sizeof(int32_t));
    int32_t *rank = (int32_t *)malloc(nz * sizeof(int32_t)), *newpos = (int32_t *)malloc(nz * sizeof(int32_t));
    int32_t *count = (int32_t *)calloc(ndst > nz + 1 ? ndst : nz + 1, sizeof(int32_t));
    pl->zero_rows = (int32_t *)malloc(ndst * sizeof(int32_t));
    pl->first_y = (int32_t *)malloc(nz * sizeof(int32_t));
    pl->first_val = (double *)malloc(nz * sizeof(double));
    pl->rest_pair = (int32_t *)malloc(nz * sizeof(int32_t));
    pl->rest_y = (int32_t *)malloc(nz * sizeof(int32_t));
    pl->rest_val = (double *)malloc(nz * sizeof(double));
    int rc = -1;
    if (!pl->pair_x || !pl->pair_z || !pl->coo_pair || !pl->coo_y || !pl->zrow_path || !cell || !px || !pz || !rank ||
        !newpos || !count || !pl->zero_rows || !pl->first_y || !pl->first_val || !pl->rest_pair || !pl->rest_y ||
        !pl->rest_val)
        goto out;

    for (int r = 0; r < pl->DZ; r++) pl->zrow_path[r] = P;
    /* pairs in natural order: per path, the distinct (i, k) of its COO entries */
    int q = 0;
    for (int p = 0; p < P; p++) {
        const int32_t *m = meta + 6 * p;
        const int dz = m[5];
        for (int k = 0; k < dz; k++) pl->zrow_path[m[4] + k] = p;
        for (size_t c = 0; c < (size_t)m[1] * (size_t)dz; c++) cell[c] = -1;
        for (int n = coo_ptr[p]; n < coo_ptr[p + 1]; n++) {
            const size_t c = (size_t)coo_i[n] * dz + coo_k[n];
            if (cell[c] < 0) {
                cell[c] = q;
                px[q] = m[0] + coo_i[n];
                pz[q] = m[4] + coo_k[n];
                q++;
            }
            pl->coo_pair[n] = cell[c];
            pl->coo_y[n] = m[2] + coo_j[n];
        }
    }
    pl->npairs = q;
    /* round-robin order over the destination row: stable counting sort by rank within it */
    const int32_t *dst = mode == MODE_X ? px : pz;
    const int Ddst = mode == MODE_X ? pl->DX : pl->DZ;
    int maxrank = 0;
    for (int t = 0; t < q; t++) {
        rank[t] = count[dst[t]]++;
        if (rank[t] + 1 > maxrank) maxrank = rank[t] + 1;
    }
    pl->nzero = 0;
    pl->nfirst = 0;
    for (int r = 0; r < Ddst; r++) {
        if (count[r] == 0)
            pl->zero_rows[pl->nzero++] = r;
        else
            pl->nfirst++;
    }
    memset(count, 0, ((size_t)maxrank + 1) * sizeof(int32_t));
    for (int t = 0; t < q; t++) count[rank[t] + 1]++;
    for (int r = 0; r < maxrank; r++) count[r + 1] += count[r];
    for (int t = 0; t < q; t++) newpos[t] = count[rank[t]]++;
    for (int t = 0; t < q; t++) {
        pl->pair_x[newpos[t]] = px[t];
        pl->pair_z[newpos[t]] = pz[t];
    }
    /* split the COO entries into the first of each pair (indexed by pair) and the rest */
    for (int t = 0; t < q; t++) rank[t] = 0; /* reused: pair already seen */
    pl->nrest = 0;
    for (int n = 0; n < nnz; n++) {
        const int t = newpos[pl->coo_pair[n]];
        if (!rank[t]) {
            rank[t] = 1;
            pl->first_y[t] = pl->coo_y[n];
            pl->first_val[t] = coo_val[n];
        } else {
            pl->rest_pair[pl->nrest] = t;
            pl->rest_y[pl->nrest] = pl->coo_y[n];
            pl->rest_val[pl->nrest] = coo_val[n];
            pl->nrest++;
        }
    }
    rc = 0;
out:
    free(cell);
    free(px);
    free(pz);
    free(rank);
    free(newpos);
    free(count);
    return rc;
}

/* ------------------------------------------------------------------------- */
/* transposes between rows of the arrays and channel-innermost scratch         */

/* With GCC >= 12 or Clang, full 8 x 8 tiles are transposed in registers as (8/TVL)^2 blocks of
 * TVL x TVL (two-vector shuffles); leftover rows, partial groups of channels and builds without
 * vector extensions use scalar loops. */
#if VL > 1 && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12))
#define FUSED_SIMD_TRANSPOSE 1
#define SHUF(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
/* transposes work on TVL x TVL blocks (TVL = VL unless overridden at compile time) */
#ifndef TVL
#define TVL VL
#endif
typedef double tvec __attribute__((vector_size(TVL * sizeof(double))));
#define TLOAD(p) (*(const tvec *)(p))
#define TSTORE(p, a) (*(tvec *)(p) = (a))
/* unaligned (and aliasing) TVL-element vectors of the array element types */
typedef double vu_f64 __attribute__((vector_size(TVL * sizeof(double)), aligned(sizeof(double)), may_alias));
typedef float vu_f32 __attribute__((vector_size(TVL * sizeof(float)), aligned(sizeof(float)), may_alias));

/* in place: a[r][c] -> a[c][r] for a TVL x TVL block */
static inline void transpose_block(tvec *a) {
#if TVL == 8
    const tvec t0 = SHUF(a[0], a[1], 0, 8, 2, 10, 4, 12, 6, 14), t1 = SHUF(a[0], a[1], 1, 9, 3, 11, 5, 13, 7, 15);
    const tvec t2 = SHUF(a[2], a[3], 0, 8, 2, 10, 4, 12, 6, 14), t3 = SHUF(a[2], a[3], 1, 9, 3, 11, 5, 13, 7, 15);
    const tvec t4 = SHUF(a[4], a[5], 0, 8, 2, 10, 4, 12, 6, 14), t5 = SHUF(a[4], a[5], 1, 9, 3, 11, 5, 13, 7, 15);
    const tvec t6 = SHUF(a[6], a[7], 0, 8, 2, 10, 4, 12, 6, 14), t7 = SHUF(a[6], a[7], 1, 9, 3, 11, 5, 13, 7, 15);
    const tvec u0 = SHUF(t0, t2, 0, 1, 8, 9, 4, 5, 12, 13), u2 = SHUF(t0, t2, 2, 3, 10, 11, 6, 7, 14, 15);
    const tvec u1 = SHUF(t1, t3, 0, 1, 8, 9, 4, 5, 12, 13), u3 = SHUF(t1, t3, 2, 3, 10, 11, 6, 7, 14, 15);
    const tvec u4 = SHUF(t4, t6, 0, 1, 8, 9, 4, 5, 12, 13), u6 = SHUF(t4, t6, 2, 3, 10, 11, 6, 7, 14, 15);
    const tvec u5 = SHUF(t5, t7, 0, 1, 8, 9, 4, 5, 12, 13), u7 = SHUF(t5, t7, 2, 3, 10, 11, 6, 7, 14, 15);
    a[0] = SHUF(u0, u4, 0, 1, 2, 3, 8, 9, 10, 11);
    a[4] = SHUF(u0, u4, 4, 5, 6, 7, 12, 13, 14, 15);
    a[1] = SHUF(u1, u5, 0, 1, 2, 3, 8, 9, 10, 11);
    a[5] = SHUF(u1, u5, 4, 5, 6, 7, 12, 13, 14, 15);
    a[2] = SHUF(u2, u6, 0, 1, 2, 3, 8, 9, 10, 11);
    a[6] = SHUF(u2, u6, 4, 5, 6, 7, 12, 13, 14, 15);
    a[3] = SHUF(u3, u7, 0, 1, 2, 3, 8, 9, 10, 11);
    a[7] = SHUF(u3, u7, 4, 5, 6, 7, 12, 13, 14, 15);
#elif TVL == 4
    const tvec t0 = SHUF(a[0], a[1], 0, 4, 2, 6), t1 = SHUF(a[0], a[1], 1, 5, 3, 7);
    const tvec t2 = SHUF(a[2], a[3], 0, 4, 2, 6), t3 = SHUF(a[2], a[3], 1, 5, 3, 7);
    a[0] = SHUF(t0, t2, 0, 1, 4, 5);
    a[2] = SHUF(t0, t2, 2, 3, 6, 7);
    a[1] = SHUF(t1, t3, 0, 1, 4, 5);
    a[3] = SHUF(t1, t3, 2, 3, 6, 7);
#else /* TVL == 2 */
    const tvec t0 = SHUF(a[0], a[1], 0, 2), t1 = SHUF(a[0], a[1], 1, 3);
    a[0] = t0;
    a[1] = t1;
#endif
}

/* tile rows r0 .. r0+7 of 8 channel rows (src row v at src + v*D) -> scratch rows of width W */
/* Full tiles cover rows 0 .. D - D % 8; when D >= 8 the leftover rows are covered by one more tile
 * at D - 8 that overlaps the previous one (rewriting equal values), so only D < 8 is left to the
 * scalar loops. */
#define TILE_LOAD(SUF)                                                                                 \
    if (nb == CB && D >= CB) {                                                                         \
        for (int last = 0; !last;) {                                                                   \
            if (r0 + CB > D) r0 = D - CB;                                                              \
            last = r0 + CB >= D;                                                                       \
            for (int bi = 0; bi < CB; bi += TVL)     /* channels bi .. bi+VL-1 */                       \
                for (int bj = 0; bj < CB; bj += TVL) { /* rows r0+bj .. */                              \
                    tvec a[TVL];                                                                        \
                    for (int v = 0; v < TVL; v++)                                                       \
                        a[v] = __builtin_convertvector(*(const vu_##SUF *)(src + (size_t)(bi + v) * D + r0 + bj), \
                                                       tvec);                                          \
                    transpose_block(a);                                                                \
                    for (int t = 0; t < TVL; t++) TSTORE(dst + (size_t)(r0 + bj + t) * W + bi, a[t]);   \
                }                                                                                      \
            r0 += CB;                                                                                  \
        }                                                                                              \
        r0 = D;                                                                                        \
    }
#define TILE_STORE(SUF)                                                                                \
    if (nb == CB && D >= CB) {                                                                         \
        for (int last = 0; !last;) {                                                                   \
            if (r0 + CB > D) r0 = D - CB;                                                              \
            last = r0 + CB >= D;                                                                       \
            for (int bi = 0; bi < CB; bi += TVL)                                                        \
                for (int bj = 0; bj < CB; bj += TVL) {                                                  \
                    tvec a[TVL];                                                                        \
                    for (int t = 0; t < TVL; t++) {                                                     \
                        a[t] = TLOAD(src + (size_t)(r0 + bj + t) * W + bi);                            \
                    }                                                                                  \
                    transpose_block(a);                                                                \
                    for (int v = 0; v < TVL; v++)                                                       \
                        *(vu_##SUF *)(dst + (size_t)(bi + v) * D + r0 + bj) =                          \
                            __builtin_convertvector(a[v], vu_##SUF);                                   \
                }                                                                                      \
            r0 += CB;                                                                                  \
        }                                                                                              \
        r0 = D;                                                                                        \
    }
/* Rows fewer than a tile (D < 8, e.g. the P weights of a path table or the DX = (l+1)^2 node
 * features of low ranks): the 8 channel rows of a group are 8 * D contiguous elements.  They are
 * read as overlapping vectors (channel v starts at v * D; lanes past D hold the next channel and
 * are dropped) straight from the array when at least 8 more elements follow the group (avail, the
 * elements readable from src), else from a padded local copy; then transposed in registers, and
 * only the D valid rows are stored.  The store goes the other way through an aligned 8 x 8
 * staging tile and a local buffer (writing the channels in increasing order lets each overwrite
 * the spill of the previous one), copied to the array at the end: nothing past the group is
 * written. */
#define TILE_LOAD_SMALL(T, SUF)                                                                        \
    else if (nb == CB && D < CB) {                                                                     \
        T buf[CB * CB + CB];                                                                           \
        const T *sp = src;                                                                             \
        if (avail < (size_t)CB * (size_t)D + CB) { /* the vectors would read past the array */        \
            memcpy(buf, src, (size_t)CB * (size_t)D * sizeof(T));                                     \
            memset(buf + (size_t)CB * D, 0, CB * sizeof(T));                                           \
            sp = buf;                                                                                  \
        }                                                                                              \
        for (int bi = 0; bi < CB; bi += TVL)                                                           \
            for (int bj = 0; bj < D; bj += TVL) {                                                      \
                tvec a[TVL];                                                                           \
                for (int v = 0; v < TVL; v++)                                                          \
                    a[v] = __builtin_convertvector(*(const vu_##SUF *)(sp + (size_t)(bi + v) * D + bj), tvec); \
                transpose_block(a);                                                                    \
                for (int t = 0; t < TVL && bj + t < D; t++) TSTORE(dst + (size_t)(bj + t) * W + bi, a[t]); \
            }                                                                                          \
        r0 = D;                                                                                        \
    }
#define TILE_STORE_SMALL(T, SUF)                                                                       \
    else if (nb == CB && D < CB) {                                                                     \
        double tr[CB * CB] __attribute__((aligned(64)));                                               \
        for (int bi = 0; bi < CB; bi += TVL)                                                           \
            for (int bj = 0; bj < D; bj += TVL) {                                                      \
                tvec a[TVL];                                                                           \
                for (int t = 0; t < TVL; t++) {                                                        \
                    if (bj + t < D) {                                                                  \
                        a[t] = TLOAD(src + (size_t)(bj + t) * W + bi);                                 \
                    } else {                                                                           \
                        a[t] = (tvec){0};                                                              \
                    }                                                                                  \
                }                                                                                      \
                transpose_block(a);                                                                    \
                for (int v = 0; v < TVL; v++) TSTORE(tr + (size_t)(bi + v) * CB + bj, a[v]);           \
            }                                                                                          \
        T buf[CB * CB + CB];                                                                           \
        for (int v = 0; v < CB; v++)                                                                   \
            for (int q = 0; q < D; q += TVL)                                                           \
                *(vu_##SUF *)(buf + (size_t)v * D + q) =                                               \
                    __builtin_convertvector(TLOAD(tr + (size_t)v * CB + q), vu_##SUF);                 \
        memcpy(dst, buf, (size_t)CB * (size_t)D * sizeof(T));                                         \
        r0 = D;                                                                                        \
    }
#else
#define TILE_LOAD(SUF)
#define TILE_STORE(SUF)
#define TILE_LOAD_SMALL(T, SUF)
#define TILE_STORE_SMALL(T, SUF)
#endif

/* One group of up to CB channels.  load8: dst[r*W + v] = src[v*D + r] for v < nb, r < D, and
 * 0 for nb <= v < CB;  store8: dst[v*D + r] = src[r*W + v] for v < nb, r < D.  Array rows are
 * D long, scratch rows W doubles apart. */
#define DEFINE_IO(T, SUF)                                                                              \
    FORCE_INLINE void load8_##SUF(const T *src, size_t avail, int nb, int D, double *dst, int W) {    \
        int r0 = 0;                                                                                    \
        TILE_LOAD(SUF)                                                                                 \
        TILE_LOAD_SMALL(T, SUF)                                                                        \
        for (int v = 0; v < nb; v++) {                                                                 \
            const T *s = src + (size_t)v * D;                                                          \
            double *d = dst + v;                                                                       \
            for (size_t r = (size_t)r0; r < (size_t)D; r++) d[r * W] = (double)s[r];                   \
        }                                                                                              \
        for (int v = nb; v < CB; v++)                                                                  \
            for (size_t r = (size_t)r0; r < (size_t)D; r++) dst[r * W + v] = 0.0;                      \
    }                                                                                                  \
    FORCE_INLINE void store8_##SUF(const double *src, int nb, int D, T *dst, int W) {                  \
        int r0 = 0;                                                                                    \
        TILE_STORE(SUF)                                                                                \
        TILE_STORE_SMALL(T, SUF)                                                                       \
        for (int v = 0; v < nb; v++) {                                                                 \
            T *d = dst + (size_t)v * D;                                                                \
            const double *s = src + v;                                                                 \
            for (size_t r = (size_t)r0; r < (size_t)D; r++) d[r] = (T)s[r * W];                        \
        }                                                                                              \
    }

DEFINE_IO(double, f64)
DEFINE_IO(float, f32)

/* nb (<= W) channel rows of an array of len elements (element offset off) -> scratch rows of width W */
FORCE_INLINE void load_rows(int fmt, const void *base, size_t len, size_t off, int nb, int D, double *dst, int W) {
    for (int s = 0; s * CB < W; s++) {
        const int n = nb - s * CB < 0 ? 0 : nb - s * CB > CB ? CB : nb - s * CB;
        const size_t o = n ? off + (size_t)s * CB * (size_t)D : off;
        if (fmt == FMT_F64)
            load8_f64((const double *)base + o, len - o, n, D, dst + s * CB, W);
        else
            load8_f32((const float *)base + o, len - o, n, D, dst + s * CB, W);
    }
}

/* scratch rows of width W -> nb channel rows of an array (element offset off) */
FORCE_INLINE void store_rows(int fmt, const double *src, int nb, int D, void *base, size_t off, int W) {
    for (int s = 0; s * CB < nb; s++) {
        const int n = nb - s * CB > CB ? CB : nb - s * CB;
        const size_t o = off + (size_t)s * CB * (size_t)D;
        if (fmt == FMT_F64)
            store8_f64(src + s * CB, n, D, (double *)base + o, W);
        else
            store8_f32(src + s * CB, n, D, (float *)base + o, W);
    }
}

static inline double load_scalar(int fmt, const void *base, size_t off) {
    return fmt == FMT_F64 ? ((const double *)base)[off] : (double)((const float *)base)[off];
}

static inline void store_scalar(int fmt, void *base, size_t off, double v) {
    if (fmt == FMT_F64)
        ((double *)base)[off] = v;
    else
        ((float *)base)[off] = (float)v;
}

/* Copy n bytes with non-temporal stores where available: large outputs then skip the
 * read-for-ownership of every destination cache line and do not evict the inputs. */
static void stream_copy(void *dst, const void *src, size_t n) {
#ifdef FUSED_STREAM
    char *d = (char *)dst;
    const char *s = (const char *)src;
    size_t head = (64u - ((uintptr_t)d & 63u)) & 63u; /* align the destination to a cache line */
    if (head > n) head = n;
    memcpy(d, s, head);
    d += head;
    s += head;
    n -= head;
    for (; n >= 64; n -= 64, d += 64, s += 64) {
#if defined(__AVX512F__)
        _mm512_stream_si512((__m512i *)d, _mm512_loadu_si512((const void *)s));
#elif defined(__AVX__)
        _mm256_stream_si256((__m256i *)d, _mm256_loadu_si256((const __m256i *)s));
        _mm256_stream_si256((__m256i *)(d + 32), _mm256_loadu_si256((const __m256i *)(s + 32)));
#else
        _mm_stream_si128((__m128i *)d, _mm_loadu_si128((const __m128i *)s));
        _mm_stream_si128((__m128i *)(d + 16), _mm_loadu_si128((const __m128i *)(s + 16)));
        _mm_stream_si128((__m128i *)(d + 32), _mm_loadu_si128((const __m128i *)(s + 32)));
        _mm_stream_si128((__m128i *)(d + 48), _mm_loadu_si128((const __m128i *)(s + 48)));
#endif
    }
    memcpy(d, s, n);
#else
    memcpy(dst, src, n);
#endif
}

/* graph mode x accumulates the rows of at most this many bytes of nodes per pass over its edges */
#ifndef ACC_MAX_BYTES
#define ACC_MAX_BYTES ((size_t)32 << 20)
#endif

/* outputs larger than this (bytes per call) are written with non-temporal stores */
#ifndef STREAM_MIN_BYTES
#define STREAM_MIN_BYTES ((size_t)4 << 20)
#endif

/* ------------------------------------------------------------------------- */
/* the edge loop                                                              */

typedef struct {
    int mode, fmt;
    Py_ssize_t C;
    const void *x, *y, *w, *g;
    size_t x_len, w_len, g_len; /* elements of x, w, g */
    void *out;
    Py_ssize_t e_start, e_stop;
    /* the graph: x (h) and g are node arrays, read at rows senders[e] and
     * receivers[e], and in modes z and x [e_start, e_stop) are output rows (nodes).  Mode z
     * accumulates, for every node n, the edges order[ptr[n]] .. order[ptr[n+1] - 1] (order NULL:
     * ptr[n] .. ptr[n+1] - 1).  Mode x accumulates the nlist edges order[0 .. nlist-1] (order NULL:
     * 0 .. nlist-1), whose senders all lie in [e_start, e_stop), into scratch rows of all these
     * nodes (rows of g shared by consecutive edges are loaded once), then writes every node. */
    const int64_t *senders, *receivers, *order, *ptr;
    Py_ssize_t nlist;
} Job;

/* per-call state of run_edges: plan, job and scratch (rows of WMAX doubles unless noted) */
typedef struct {
    const Plan *pl;
    const Job *jb;
    double *xt;  /* (DX, W) */
    double *gt;  /* (DZ, W) */
    double *wt;  /* (P + 1, W); row P stays zero (rows of g that no path owns) */
    double *ot;  /* (max(DX, DZ, P + 1), W) output rows */
    double *tmp; /* (DZ, W) w * g (modes x, y) or u (mode w) */
    double *T;   /* (npairs, CB) mode y accumulators */
    double *M;   /* (npairs,) folded couplings of the current edge */
    void *dst_base;
    int stream;
    int reuse_g; /* gt already holds the rows of g this block needs (g is not reloaded) */
} Ctx;

/* dst[d[t]] = sum over pairs t of M[t] * src[a[t]] (rows of width W = S * VL): the first pair
 * of every destination row stores, later ones accumulate, rows without pairs are zeroed.  With
 * ACC (a literal 1) every pair accumulates (dst[d[t]] += ...) and no row is zeroed. */
FORCE_INLINE void pair_products(const Plan *pl, const double *restrict M, const int32_t *restrict d,
                                const int32_t *restrict a, const double *restrict src, double *restrict dst,
                                const int S, const int W, const int ACC) {
    const int nfirst = ACC ? 0 : pl->nfirst, npairs = pl->npairs;
    for (int t = 0; t < nfirst; t++) {
        double *o = dst + (size_t)d[t] * W;
        const double *x = src + (size_t)a[t] * W;
        const double m = M[t];
        UNROLL
        for (int s = 0; s < S; s++) VSTORE(o + s * VL, m * VLOAD(x + s * VL));
    }
    for (int t = nfirst; t < npairs; t++) {
        double *o = dst + (size_t)d[t] * W;
        const double *x = src + (size_t)a[t] * W;
        const double m = M[t];
        UNROLL
        for (int s = 0; s < S; s++) VSTORE(o + s * VL, VLOAD(o + s * VL) + m * VLOAD(x + s * VL));
    }
    if (!ACC)
        for (int z = 0; z < pl->nzero; z++) memset(dst + (size_t)pl->zero_rows[z] * W, 0, (size_t)W * sizeof(double));
}

/* One block of nb <= NV * CB channels starting at channel c0 of edge e; x and g are read at rows
 * xr = senders[e] and gr = receivers[e].  NV is a literal at every call site, so the loops over
 * the S = W / VL vectors of a row unroll.  Modes z and x add the edge's contribution to acc (scratch
 * rows of width W); modes y and w (acc NULL) write the output. */
FORCE_INLINE void block_body(const Ctx *cx, Py_ssize_t e, Py_ssize_t xr, Py_ssize_t gr, Py_ssize_t c0, int nb,
                             double *restrict acc, const int NV) {
    const Plan *pl = cx->pl;
    const Job *jb = cx->jb;
    const int W = NV * CB, S = NV * CB / VL, P = pl->P, DX = pl->DX, DZ = pl->DZ, npairs = pl->npairs;
    const int mode = jb->mode, fmt = jb->fmt;
    const int32_t *restrict pair_x = pl->pair_x, *restrict pair_z = pl->pair_z, *restrict zp = pl->zrow_path;
    const double *restrict M = cx->M;
    double *restrict xt = cx->xt, *restrict gt = cx->gt, *restrict wt = cx->wt, *restrict ot = cx->ot;
    double *restrict tmp = cx->tmp;
    const size_t C = (size_t)jb->C;
    const size_t row = (size_t)e * C + (size_t)c0;
    const size_t orow = cx->stream ? (size_t)c0 : row;

    if (mode != MODE_X) load_rows(fmt, jb->x, jb->x_len, ((size_t)xr * C + (size_t)c0) * DX, nb, DX, xt, W);
    if (mode != MODE_Z && !cx->reuse_g)
        load_rows(fmt, jb->g, jb->g_len, ((size_t)gr * C + (size_t)c0) * DZ, nb, DZ, gt, W);
    if (mode != MODE_W) load_rows(fmt, jb->w, jb->w_len, row * P, nb, P, wt, W);
    if (mode == MODE_X || mode == MODE_Y) /* tmp[r] = w[path(r)] * g[r] */
        for (int r = 0; r < DZ; r++) {
            double *d = tmp + (size_t)r * W;
            const double *a = wt + (size_t)zp[r] * W, *b = gt + (size_t)r * W;
            UNROLL
            for (int s = 0; s < S; s++) VSTORE(d + s * VL, VLOAD(a + s * VL) * VLOAD(b + s * VL));
        }

    if (mode == MODE_Z) {
        /* z[oz+k] = w_p * sum_i M[i,k] x[ox+i]  (w_p applied while accumulating) */
        pair_products(pl, M, pair_z, pair_x, xt, ot, S, W, 0);
        for (int r = 0; r < DZ; r++) {
            double *d = acc + (size_t)r * W;
            const double *a = ot + (size_t)r * W, *b = wt + (size_t)zp[r] * W;
            UNROLL
            for (int s = 0; s < S; s++) VSTORE(d + s * VL, VLOAD(d + s * VL) + VLOAD(a + s * VL) * VLOAD(b + s * VL));
        }
    } else if (mode == MODE_X) {
        /* gx[ox+i] = sum_{p,k} M[i,k] w_p g[oz+k] */
        pair_products(pl, M, pair_x, pair_z, tmp, acc, S, W, 1);
    } else if (mode == MODE_W) {
        /* u[oz+k] = sum_i M[i,k] x[ox+i];  gw[p] = sum_k u[oz+k] g[oz+k] */
        double *restrict u = cx->tmp;
        pair_products(pl, M, pair_z, pair_x, xt, u, S, W, 0);
        memset(ot, 0, (size_t)(P + 1) * W * sizeof(double));
        for (int r = 0; r < DZ; r++) {
            double *d = ot + (size_t)zp[r] * W;
            const double *a = u + (size_t)r * W, *b = gt + (size_t)r * W;
            UNROLL
            for (int s = 0; s < S; s++) VSTORE(d + s * VL, VLOAD(d + s * VL) + VLOAD(a + s * VL) * VLOAD(b + s * VL));
        }
        store_rows(fmt, ot, nb, P, cx->dst_base, orow * P, W);
    } else { /* MODE_Y: T[q] (CB lanes) += x[ox+i] w_p g[oz+k], folding the NV groups of the block */
        double *restrict T = cx->T;
        const int first = c0 == 0; /* the first block of the edge initialises T */
        for (int t = 0; t < npairs; t++) {
            const double *a = xt + (size_t)pair_x[t] * W, *b = tmp + (size_t)pair_z[t] * W;
            double *d = T + (size_t)t * CB;
            nvec lanes[CB / VL];
            UNROLL
            for (int l = 0; l < CB / VL; l++)
                lanes[l] = first ? VLOAD(a + l * VL) * VLOAD(b + l * VL) : VLOAD(d + l * VL);
            UNROLL
            for (int s = first ? CB / VL : 0; s < S; s++) lanes[s % (CB / VL)] += VLOAD(a + s * VL) * VLOAD(b + s * VL);
            UNROLL
            for (int l = 0; l < CB / VL; l++) VSTORE(d + l * VL, lanes[l]);
        }
    }
}

/* modes y, w (acc = NULL) */
static void block_nv1(const Ctx *cx, Py_ssize_t e, Py_ssize_t xr, Py_ssize_t gr, Py_ssize_t c0, int nb) {
    block_body(cx, e, xr, gr, c0, nb, NULL, 1);
}
static void block_nv2(const Ctx *cx, Py_ssize_t e, Py_ssize_t xr, Py_ssize_t gr, Py_ssize_t c0, int nb) {
    block_body(cx, e, xr, gr, c0, nb, NULL, 2);
}
static void block_nv4(const Ctx *cx, Py_ssize_t e, Py_ssize_t xr, Py_ssize_t gr, Py_ssize_t c0, int nb) {
    block_body(cx, e, xr, gr, c0, nb, NULL, 4);
}
/* modes z, x: accumulate into acc (which must not be NULL) */
static void acc_nv1(const Ctx *cx, Py_ssize_t e, Py_ssize_t xr, Py_ssize_t gr, Py_ssize_t c0, int nb, double *acc) {
    block_body(cx, e, xr, gr, c0, nb, acc, 1);
}
static void acc_nv2(const Ctx *cx, Py_ssize_t e, Py_ssize_t xr, Py_ssize_t gr, Py_ssize_t c0, int nb, double *acc) {
    block_body(cx, e, xr, gr, c0, nb, acc, 2);
}
static void acc_nv4(const Ctx *cx, Py_ssize_t e, Py_ssize_t xr, Py_ssize_t gr, Py_ssize_t c0, int nb, double *acc) {
    block_body(cx, e, xr, gr, c0, nb, acc, 4);
}

/* Ts[t] = sum of the CB lanes of row t of T, for t < n.  With SIMD transposes, TVL rows at a
 * time: transposing TVL x TVL blocks turns the lane sums into vertical vector adds (rows past
 * n, up to a multiple of TVL, must exist and are summed too). */
static void lane_sums(const double *T, int n, double *Ts) {
#ifdef FUSED_SIMD_TRANSPOSE
    for (int t0 = 0; t0 < n; t0 += TVL) {
        tvec acc = {0};
        for (int h = 0; h < CB; h += TVL) {
            tvec a[TVL];
            for (int i = 0; i < TVL; i++) a[i] = TLOAD(T + (size_t)(t0 + i) * CB + h);
            transpose_block(a);
            for (int j = 0; j < TVL; j++) acc += a[j];
        }
        TSTORE(Ts + t0, acc);
    }
#else
    for (int t = 0; t < n; t++) {
        double acc = 0.0;
        for (int v = 0; v < CB; v++) acc += T[(size_t)t * CB + v];
        Ts[t] = acc;
    }
#endif
}

/* fold y into the pair matrices: M[q] = sum over the COO entries n of pair q of val * y[e, oy + j] */
FORCE_INLINE void fold_y(const Plan *pl, int fmt, const void *y, Py_ssize_t e, double *restrict yrow,
                         double *restrict M) {
    const int DY = pl->DY, npairs = pl->npairs, nrest = pl->nrest;
    const int32_t *restrict first_y = pl->first_y, *restrict rest_pair = pl->rest_pair, *restrict rest_y = pl->rest_y;
    const double *restrict first_val = pl->first_val, *restrict rest_val = pl->rest_val;
    for (int r = 0; r < DY; r++) yrow[r] = load_scalar(fmt, y, (size_t)e * DY + r);
    for (int t = 0; t < npairs; t++) M[t] = first_val[t] * yrow[first_y[t]];
    for (int n = 0; n < nrest; n++) M[rest_pair[n]] += rest_val[n] * yrow[rest_y[n]];
}

/* All channel blocks of edge e (x and g read at rows xr and gr).  With acc (modes z, x) the
 * block starting at channel c0 accumulates into acc + c0 * Dacc (its rows are W = its width apart). */
static void edge_blocks(const Ctx *cx, Py_ssize_t e, Py_ssize_t xr, Py_ssize_t gr, double *acc, int Dacc) {
    const Py_ssize_t C = cx->jb->C;
    for (Py_ssize_t c0 = 0; c0 < C;) {
        const Py_ssize_t rem = C - c0;
        double *a = acc ? acc + (size_t)c0 * (size_t)Dacc : NULL;
        if (rem >= 4 * CB) {
            if (a)
                acc_nv4(cx, e, xr, gr, c0, 4 * CB, a);
            else
                block_nv4(cx, e, xr, gr, c0, 4 * CB);
            c0 += 4 * CB;
        } else if (rem >= 2 * CB) {
            if (a)
                acc_nv2(cx, e, xr, gr, c0, 2 * CB, a);
            else
                block_nv2(cx, e, xr, gr, c0, 2 * CB);
            c0 += 2 * CB;
        } else {
            const int nb = (int)(rem < CB ? rem : CB);
            if (a)
                acc_nv1(cx, e, xr, gr, c0, nb, a);
            else
                block_nv1(cx, e, xr, gr, c0, nb);
            c0 += CB;
        }
    }
}

/* number of channel blocks of edge_blocks */
static int count_blocks(Py_ssize_t C) {
    int n = 0;
    for (Py_ssize_t c0 = 0; c0 < C; n++) c0 += C - c0 >= 4 * CB ? 4 * CB : C - c0 >= 2 * CB ? 2 * CB : CB;
    return n;
}

/* Write the accumulated row (scratch of edge_blocks' acc layout, Dacc rows per channel) to output row n. */
static void store_acc(const Job *jb, const double *acc, int Dacc, Py_ssize_t n) {
    const Py_ssize_t C = jb->C;
    for (Py_ssize_t c0 = 0; c0 < C;) {
        const Py_ssize_t rem = C - c0;
        const int W = rem >= 4 * CB ? 4 * CB : rem >= 2 * CB ? 2 * CB : CB;
        const int nb = (int)(rem < W ? rem : W);
        const size_t off = ((size_t)n * (size_t)C + (size_t)c0) * (size_t)Dacc;
        store_rows(jb->fmt, acc + (size_t)c0 * (size_t)Dacc, nb, Dacc, jb->out, off, W);
        c0 += W;
    }
}

/* Process rows [e_start, e_stop) of the output: edges (modes y and w) or nodes
 * (modes z and x: the node's edges are accumulated in scratch and its row is written once;
 * a node without edges gets zeros; see Job).  Returns 0 on success, -1 on OOM. */
static int run_edges(const Plan *pl, const Job *jb) {
    const int P = pl->P, DX = pl->DX, DY = pl->DY, DZ = pl->DZ, npairs = pl->npairs;
    const int mode = jb->mode, fmt = jb->fmt;
    const Py_ssize_t C = jb->C;
    const int nrest = pl->nrest;
    const int32_t *restrict first_y = pl->first_y, *restrict rest_pair = pl->rest_pair, *restrict rest_y = pl->rest_y;
    const double *restrict first_val = pl->first_val, *restrict rest_val = pl->rest_val;
    const int rows = mode == MODE_Z || mode == MODE_X; /* output rows are nodes */
    const int Dacc = mode == MODE_Z ? DZ : DX;
    const size_t row_len = (size_t)((C + CB - 1) / CB) * CB * (size_t)Dacc; /* accumulator of one node */
    /* mode x accumulates up to pass_rows nodes at a time (about ACC_MAX_BYTES of scratch) */
    const Py_ssize_t nrows = jb->e_stop - jb->e_start;
    Py_ssize_t pass_rows = (Py_ssize_t)(ACC_MAX_BYTES / (row_len * sizeof(double) + 1));
    if (pass_rows < 1) pass_rows = 1;
    if (pass_rows > nrows) pass_rows = nrows;
    const size_t acc_len = !rows ? 0 : mode == MODE_Z ? row_len : row_len * (size_t)pass_rows;
    /* one channel block: g rows shared by consecutive edges are loaded once */
    const int may_reuse_g = mode != MODE_Z && count_blocks(C) == 1;

    /* rows per channel of the output (mode y writes one short row per edge directly) */
    const int Dout = mode == MODE_Z ? DZ : mode == MODE_X ? DX : P;
    const size_t itemsize = fmt == FMT_F64 ? sizeof(double) : sizeof(float);
    const size_t edge_bytes = (size_t)C * (size_t)Dout * itemsize;
    const int stream =
        !rows && mode != MODE_Y && edge_bytes * (size_t)(jb->e_stop - jb->e_start) >= STREAM_MIN_BYTES;

    int orows = DX > DZ ? DX : DZ;
    if (P + 1 > orows) orows = P + 1;
#define ROUND(n) ((((size_t)(n) + WMAX - 1) / WMAX) * WMAX)
    const size_t nstage = stream ? (edge_bytes + sizeof(double) - 1) / sizeof(double) : 0;
    const size_t sizes[] = {(size_t)DX * WMAX,
                            (size_t)DZ * WMAX,
                            (size_t)(P + 1) * WMAX,
                            (size_t)orows * WMAX,
                            (size_t)DZ * WMAX,
                            ROUND(((size_t)npairs + CB) * CB),
                            ROUND(npairs + CB),
                            ROUND(npairs + CB),
                            ROUND(DY),
                            ROUND(DY),
                            ROUND(nstage),
                            ROUND(acc_len)};
#undef ROUND
    size_t total = 0;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) total += sizes[i];
    void *base;
    double *mem = (double *)aligned_calloc(total, &base);
    if (mem == NULL) return -1;
    double *ptrs[sizeof(sizes) / sizeof(sizes[0])];
    for (size_t i = 0, o = 0; i < sizeof(sizes) / sizeof(sizes[0]); o += sizes[i], i++) ptrs[i] = mem + o;
    double *Ts = ptrs[7], *yrow = ptrs[8], *gyrow = ptrs[9], *stage = ptrs[10], *acc = ptrs[11];
    Ctx cx = {pl, jb, ptrs[0], ptrs[1], ptrs[2], ptrs[3], ptrs[4], ptrs[5], ptrs[6], stream ? (void *)stage : jb->out,
              stream, 0};

    if (rows && mode == MODE_Z) {
        const int64_t *restrict order = jb->order, *restrict ptr = jb->ptr, *restrict senders = jb->senders;
        for (Py_ssize_t n = jb->e_start; n < jb->e_stop; n++) {
            memset(acc, 0, acc_len * sizeof(double));
            for (int64_t i = ptr[n]; i < ptr[n + 1]; i++) {
                const Py_ssize_t e = order ? (Py_ssize_t)order[i] : (Py_ssize_t)i;
                fold_y(pl, fmt, jb->y, e, yrow, cx.M);
                edge_blocks(&cx, e, (Py_ssize_t)senders[e], 0, acc, Dacc);
            }
            store_acc(jb, acc, Dacc, n);
        }
        free(base);
        return 0;
    }
    if (rows) { /* MODE_X: passes over node ranges [a, b) of at most pass_rows nodes */
        const int64_t *restrict order = jb->order, *restrict senders = jb->senders, *restrict receivers = jb->receivers;
        for (Py_ssize_t a = jb->e_start; a < jb->e_stop; a += pass_rows) {
            const Py_ssize_t b = a + pass_rows < jb->e_stop ? a + pass_rows : jb->e_stop;
            if (a > jb->e_start) memset(acc, 0, acc_len * sizeof(double));
            int64_t prev_g = -1;
            for (Py_ssize_t i = 0; i < jb->nlist; i++) {
                const Py_ssize_t e = order ? (Py_ssize_t)order[i] : i;
                const Py_ssize_t n = (Py_ssize_t)senders[e];
                if (n < a || n >= b) continue;
                const Py_ssize_t gr = (Py_ssize_t)receivers[e];
                fold_y(pl, fmt, jb->y, e, yrow, cx.M);
                cx.reuse_g = may_reuse_g && gr == prev_g;
                prev_g = gr;
                edge_blocks(&cx, e, 0, gr, acc + (size_t)(n - a) * row_len, Dacc);
            }
            for (Py_ssize_t n = a; n < b; n++) store_acc(jb, acc + (size_t)(n - a) * row_len, Dacc, n);
        }
        free(base);
        return 0;
    }

    int64_t prev_g = -1;
    for (Py_ssize_t e = jb->e_start; e < jb->e_stop; e++) {
        if (mode != MODE_Y) fold_y(pl, fmt, jb->y, e, yrow, cx.M);
        const Py_ssize_t xr = (Py_ssize_t)jb->senders[e];
        const Py_ssize_t gr = (Py_ssize_t)jb->receivers[e];
        cx.reuse_g = may_reuse_g && gr == prev_g;
        prev_g = gr;
        edge_blocks(&cx, e, xr, gr, NULL, 0);

        if (stream) stream_copy((char *)jb->out + (size_t)e * edge_bytes, stage, edge_bytes);

        if (mode == MODE_Y) {
            /* gy[oy+j] = sum_n C_n T[pair(n)] summed over the channel lanes */
            lane_sums(cx.T, npairs, Ts);
            for (int r = 0; r < DY; r++) gyrow[r] = 0.0;
            for (int t = 0; t < npairs; t++) gyrow[first_y[t]] += first_val[t] * Ts[t];
            for (int n = 0; n < nrest; n++) gyrow[rest_y[n]] += rest_val[n] * Ts[rest_pair[n]];
            for (int r = 0; r < DY; r++) store_scalar(fmt, jb->out, (size_t)e * DY + r, gyrow[r]);
        }
    }
#ifdef FUSED_STREAM
    if (stream) _mm_sfence(); /* order the non-temporal stores before returning */
#endif
    free(base);
    return 0;
}

/* ------------------------------------------------------------------------- */
/* argument handling                                                          */

/* Classify a buffer format string: 'd' float64, 'f' float32, 'i' int32, 'q' int64; -1 otherwise. */
static int format_code(const Py_buffer *b) {
    const char *f = b->format ? b->format : "B";
    if (*f == '@' || *f == '=') f++;
#if PY_LITTLE_ENDIAN
    else if (*f == '<')
        f++;
#else
    else if (*f == '>' || *f == '!')
        f++;
#endif
    if (f[0] == '\0' || f[1] != '\0') return -1;
    if (f[0] == 'd' && b->itemsize == 8) return 'd';
    if (f[0] == 'f' && b->itemsize == 4) return 'f';
    if ((f[0] == 'i' || f[0] == 'l') && b->itemsize == 4) return 'i';
    if ((f[0] == 'q' || f[0] == 'l') && b->itemsize == 8) return 'q';
    return -1;
}

#define MAXBUF 16

typedef struct {
    Py_buffer views[MAXBUF];
    int n;
} Buffers;

static void release_all(Buffers *bs) {
    for (int i = 0; i < bs->n; i++) PyBuffer_Release(&bs->views[i]);
    bs->n = 0;
}

/* Acquire a C-contiguous buffer of `ndim` dimensions; on failure set ValueError/TypeError and return NULL. */
static Py_buffer *get_buffer(Buffers *bs, PyObject *obj, const char *name, int ndim, int writable) {
    Py_buffer *b = &bs->views[bs->n];
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, b, flags) != 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s must be a C-contiguous%s buffer (e.g. a NumPy array), got %.100s", name,
                     writable ? " writable" : "", Py_TYPE(obj)->tp_name);
        return NULL;
    }
    bs->n++;
    if (b->ndim != ndim) {
        PyErr_Format(PyExc_ValueError, "%s must have %d dimensions, got %d", name, ndim, b->ndim);
        return NULL;
    }
    return b;
}

static int check_dims(const Py_buffer *b, const char *name, int ndim, const Py_ssize_t *want) {
    for (int d = 0; d < ndim; d++) {
        if (b->shape[d] != want[d]) {
            char got[160], exp[160];
            int pg = 0, pe = 0;
            for (int t = 0; t < ndim; t++) {
                pg += snprintf(got + pg, sizeof(got) - (size_t)pg, "%s%zd", t ? ", " : "", b->shape[t]);
                pe += snprintf(exp + pe, sizeof(exp) - (size_t)pe, "%s%zd", t ? ", " : "", want[t]);
            }
            PyErr_Format(PyExc_ValueError, "%s has shape (%s), expected (%s)", name, got, exp);
            return -1;
        }
    }
    return 0;
}

/* The path table: meta rows (ox, dx, oy, dy, oz, dz) and the COO couplings. */
typedef struct {
    Py_ssize_t P, nnz;
    const int32_t *meta, *cptr, *ci, *cj, *ck;
    const Py_buffer *bval;
    int vfmt;
} Table;

/* Acquire and type-check the table buffers; on failure set an exception and return -1. */
static int get_table(Buffers *bs, PyObject *ometa, PyObject *optr, PyObject *oi, PyObject *oj, PyObject *ok,
                     PyObject *oval, Table *t) {
    Py_buffer *bmeta = get_buffer(bs, ometa, "meta", 2, 0);
    if (!bmeta) return -1;
    if (format_code(bmeta) != 'i' || bmeta->shape[1] != 6) {
        PyErr_SetString(PyExc_ValueError, "meta must be an int32 array of shape (P, 6)");
        return -1;
    }
    const Py_ssize_t P = bmeta->shape[0];
    Py_buffer *bptr = get_buffer(bs, optr, "coo_ptr", 1, 0);
    if (!bptr) return -1;
    if (format_code(bptr) != 'i' || bptr->shape[0] != P + 1) {
        PyErr_Format(PyExc_ValueError, "coo_ptr must be an int32 array of shape (%zd,)", P + 1);
        return -1;
    }
    Py_buffer *bi = get_buffer(bs, oi, "coo_i", 1, 0);
    if (!bi) return -1;
    const Py_ssize_t nnz = bi->shape[0];
    Py_buffer *bj = get_buffer(bs, oj, "coo_j", 1, 0);
    if (!bj) return -1;
    Py_buffer *bk = get_buffer(bs, ok, "coo_k", 1, 0);
    if (!bk) return -1;
    Py_buffer *bval = get_buffer(bs, oval, "coo_val", 1, 0);
    if (!bval) return -1;
    if (format_code(bi) != 'i' || format_code(bj) != 'i' || format_code(bk) != 'i' || bj->shape[0] != nnz ||
        bk->shape[0] != nnz) {
        PyErr_SetString(PyExc_ValueError, "coo_i, coo_j, coo_k must be int32 arrays of one length");
        return -1;
    }
    const int vfmt = format_code(bval);
    if ((vfmt != 'd' && vfmt != 'f') || bval->shape[0] != nnz) {
        PyErr_Format(PyExc_ValueError, "coo_val must be a float64 or float32 array of shape (%zd,)", nnz);
        return -1;
    }
    if (P > INT32_MAX / 8 || nnz > INT32_MAX / 8) {
        PyErr_SetString(PyExc_ValueError, "too many paths or coupling entries");
        return -1;
    }
    t->P = P;
    t->nnz = nnz;
    t->meta = (const int32_t *)bmeta->buf;
    t->cptr = (const int32_t *)bptr->buf;
    t->ci = (const int32_t *)bi->buf;
    t->cj = (const int32_t *)bj->buf;
    t->ck = (const int32_t *)bk->buf;
    t->bval = bval;
    t->vfmt = vfmt;
    return 0;
}

/* The table against the array sizes: blocks inside DX, DY, DZ, COO indices inside the blocks,
 * disjoint output blocks.  On failure set ValueError and return -1. */
static int check_table(const Table *t, Py_ssize_t DX, Py_ssize_t DY, Py_ssize_t DZ) {
    const Py_ssize_t P = t->P, nnz = t->nnz;
    const int32_t *meta = t->meta, *cptr = t->cptr, *ci = t->ci, *cj = t->cj, *ck = t->ck;
    if (DX > INT32_MAX / CB || DY > INT32_MAX || DZ > INT32_MAX / CB) {
        PyErr_SetString(PyExc_ValueError, "feature dimensions too large");
        return -1;
    }
    if (cptr[0] != 0 || cptr[P] != nnz) {
        PyErr_Format(PyExc_ValueError, "coo_ptr must start at 0 and end at nnz = %zd", nnz);
        return -1;
    }
    for (Py_ssize_t p = 0; p < P; p++) {
        if (cptr[p + 1] < cptr[p]) {
            PyErr_SetString(PyExc_ValueError, "coo_ptr must be non-decreasing");
            return -1;
        }
    }
    for (Py_ssize_t p = 0; p < P; p++) {
        const int32_t *m = meta + 6 * p;
        if (m[0] < 0 || m[1] < 1 || m[2] < 0 || m[3] < 1 || m[4] < 0 || m[5] < 1 || (Py_ssize_t)m[0] + m[1] > DX ||
            (Py_ssize_t)m[2] + m[3] > DY || (Py_ssize_t)m[4] + m[5] > DZ) {
            PyErr_Format(PyExc_ValueError,
                         "meta row %zd = (ox=%d, dx=%d, oy=%d, dy=%d, oz=%d, dz=%d) does not fit DX=%zd, DY=%zd, DZ=%zd",
                         p, m[0], m[1], m[2], m[3], m[4], m[5], DX, DY, DZ);
            return -1;
        }
        for (int n = cptr[p]; n < cptr[p + 1]; n++) {
            if (ci[n] < 0 || ci[n] >= m[1] || cj[n] < 0 || cj[n] >= m[3] || ck[n] < 0 || ck[n] >= m[5]) {
                PyErr_Format(PyExc_ValueError, "coupling entry %d (i=%d, j=%d, k=%d) of path %zd is out of range", n,
                             ci[n], cj[n], ck[n], p);
                return -1;
            }
        }
    }
    /* the output blocks (rows oz .. oz + dz - 1 of g / z) must be disjoint */
    unsigned char *owned = (unsigned char *)calloc((size_t)DZ + 1, 1);
    if (!owned) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t p = 0; p < P; p++) {
        const int32_t *m = meta + 6 * p;
        for (int k = 0; k < m[5]; k++) {
            if (owned[m[4] + k]) {
                free(owned);
                PyErr_Format(PyExc_ValueError,
                             "the output block of path %zd (oz=%d, dz=%d) overlaps that of an earlier path; "
                             "output blocks must be disjoint",
                             p, m[4], m[5]);
                return -1;
            }
            owned[m[4] + k] = 1;
        }
    }
    free(owned);
    return 0;
}

/* The coupling values as doubles (malloc'ed; NULL with MemoryError set on failure). */
static double *table_values(const Table *t) {
    double *vals = (double *)malloc((size_t)(t->nnz > 0 ? t->nnz : 1) * sizeof(double));
    if (!vals) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t n = 0; n < t->nnz; n++)
        vals[n] = t->vfmt == 'd' ? ((const double *)t->bval->buf)[n] : (double)((const float *)t->bval->buf)[n];
    return vals;
}

/* Acquire the four float arrays (the one that `skip` replaces may be None) and out, and check that
 * they share one float format; returns 'd' or 'f', or -1 with an exception set. */
static int get_floats(Buffers *bs, PyObject *const objs[4], const char *const names[4], const int ndims[4], int skip,
                      PyObject *oout, Py_buffer *fb[4], Py_buffer **bout) {
    int fmt = -1;
    const char *fmt_from = NULL;
    for (int a = 0; a < 4; a++) {
        fb[a] = NULL;
        if (a == skip && objs[a] == Py_None) continue;
        fb[a] = get_buffer(bs, objs[a], names[a], ndims[a], 0);
        if (!fb[a]) return -1;
    }
    *bout = get_buffer(bs, oout, "out", ndims[skip], 1);
    if (!*bout) return -1;
    for (int a = 0; a < 5; a++) {
        Py_buffer *b = a < 4 ? fb[a] : *bout;
        const char *nm = a < 4 ? names[a] : "out";
        if (!b) continue;
        int c = format_code(b);
        if (c != 'd' && c != 'f') {
            PyErr_Format(PyExc_ValueError, "%s must hold float64 or float32, got buffer format '%s'", nm,
                         b->format ? b->format : "B");
            return -1;
        }
        if (fmt < 0) {
            fmt = c;
            fmt_from = nm;
        } else if (c != fmt) {
            PyErr_Format(PyExc_ValueError, "dtype mismatch: %s is %s but %s is %s", nm,
                         c == 'd' ? "float64" : "float32", fmt_from, fmt == 'd' ? "float64" : "float32");
            return -1;
        }
    }
    return fmt;
}

/* Build the plan and run the job without the GIL; on failure set MemoryError and return -1. */
static int plan_and_run(Plan *pl, const Table *t, const double *vals, Job *jb) {
    int rc;
    Py_BEGIN_ALLOW_THREADS;
    rc = plan_build(pl, jb->mode, t->meta, t->cptr, t->ci, t->cj, t->ck, vals);
    if (rc == 0 && jb->e_stop > jb->e_start) rc = run_edges(pl, jb);
    Py_END_ALLOW_THREADS;
    if (rc != 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------- */
/* graph form                                                                 */

/* A C-contiguous int64 vector of length n (any length when n < 0; its length goes to *len when
 * len is not NULL), or None when `optional` (then *data is NULL).  Returns -1 with ValueError set
 * on failure. */
static int get_index(Buffers *bs, PyObject *obj, const char *name, Py_ssize_t n, int optional, const int64_t **data,
                     Py_ssize_t *len) {
    *data = NULL;
    if (optional && obj == Py_None) return 0;
    Py_buffer *b = get_buffer(bs, obj, name, 1, 0);
    if (!b) return -1;
    if (format_code(b) != 'q') {
        PyErr_Format(PyExc_ValueError, "%s must be an int64 array, got buffer format '%s'", name,
                     b->format ? b->format : "B");
        return -1;
    }
    if (n >= 0 && b->shape[0] != n) {
        PyErr_Format(PyExc_ValueError, "%s has length %zd, expected %zd", name, b->shape[0], n);
        return -1;
    }
    *data = (const int64_t *)b->buf;
    if (len) *len = b->shape[0];
    return 0;
}

/* Check the indices that rows [start, stop) read (GIL held; linear in E).  Mode z: ptr and order
 * list, for every node n, edges whose receiver is n.  Mode x: order lists nlist distinct edges, every
 * edge whose sender lies in [start, stop) (and no other).  Modes y, w: senders and receivers of the
 * edges are nodes.  On failure set ValueError (or MemoryError) and return -1. */
static int check_graph_rows(int mode, const int64_t *senders, const int64_t *receivers, const int64_t *order,
                            const int64_t *ptr, Py_ssize_t nlist, Py_ssize_t N, Py_ssize_t E, Py_ssize_t start,
                            Py_ssize_t stop) {
#define CHECK_NODE(arr, name, e)                                                                              \
    if ((arr)[e] < 0 || (arr)[e] >= N) {                                                                       \
        PyErr_Format(PyExc_ValueError, "%s[%lld] = %lld is out of range for %zd nodes", name, (long long)(e), \
                     (long long)(arr)[e], N);                                                                  \
        return -1;                                                                                             \
    }
    if (mode == MODE_Y || mode == MODE_W) {
        for (Py_ssize_t e = start; e < stop; e++) {
            CHECK_NODE(senders, "senders", e)
            CHECK_NODE(receivers, "receivers", e)
        }
        return 0;
    }
    if (mode == MODE_X) {
        Py_ssize_t count = 0;
        for (Py_ssize_t e = 0; e < E; e++) count += senders[e] >= start && senders[e] < stop;
        if (count != nlist) {
            PyErr_Format(PyExc_ValueError,
                         "order lists %zd edges but %zd edges have their sender in the node range [%zd, %zd)", nlist,
                         count, start, stop);
            return -1;
        }
        unsigned char *seen = (unsigned char *)calloc((size_t)E / 8 + 1, 1);
        if (!seen) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = 0; i < nlist; i++) {
            const int64_t e = order ? order[i] : i;
            const char *problem = NULL;
            if (e < 0 || e >= E)
                problem = "is not an edge index";
            else if (seen[e / 8] & (1u << (e % 8)))
                problem = "is listed twice";
            else if (senders[e] < start || senders[e] >= stop)
                problem = "has its sender outside the node range";
            if (problem) {
                PyErr_Format(PyExc_ValueError, "order[%zd] = %lld %s (E = %zd, nodes [%zd, %zd))", i, (long long)e,
                             problem, E, start, stop);
                free(seen);
                return -1;
            }
            seen[e / 8] |= (unsigned char)(1u << (e % 8));
            if (receivers[e] < 0 || receivers[e] >= N) {
                PyErr_Format(PyExc_ValueError, "receivers[%lld] = %lld is out of range for %zd nodes", (long long)e,
                             (long long)receivers[e], N);
                free(seen);
                return -1;
            }
        }
        free(seen);
        return 0;
    }
    /* MODE_Z */
    if (ptr[0] != 0 || ptr[N] != E) {
        PyErr_Format(PyExc_ValueError, "ptr must start at 0 and end at E = %zd, got ptr[0] = %lld, ptr[%zd] = %lld", E,
                     (long long)ptr[0], N, (long long)ptr[N]);
        return -1;
    }
    for (Py_ssize_t n = start; n < stop; n++) {
        if (ptr[n] > ptr[n + 1] || ptr[n] < 0 || ptr[n + 1] > E) {
            PyErr_Format(PyExc_ValueError,
                         "ptr must be non-decreasing within [0, %zd]: ptr[%zd] = %lld, ptr[%zd] = %lld", E, n,
                         (long long)ptr[n], n + 1, (long long)ptr[n + 1]);
            return -1;
        }
        for (int64_t i = ptr[n]; i < ptr[n + 1]; i++) {
            const int64_t e = order ? order[i] : i;
            if (e < 0 || e >= E) {
                PyErr_Format(PyExc_ValueError, "order[%lld] = %lld is not an edge index in [0, %zd)", (long long)i,
                             (long long)e, E);
                return -1;
            }
            if (receivers[e] != n) {
                PyErr_Format(PyExc_ValueError,
                             "edge %lld is listed under node %zd but receivers[%lld] = %lld: receivers must be sorted "
                             "(non-decreasing) with ptr their row pointers, or order must sort them",
                             (long long)e, n, (long long)e, (long long)receivers[e]);
                return -1;
            }
            CHECK_NODE(senders, "senders", e)
        }
    }
    return 0;
#undef CHECK_NODE
}

PyDoc_STRVAR(
    phi_grad_graph_doc,
    "phi_grad_graph(mode, h, y, w, g, out, senders, receivers, order, ptr, meta, coo_ptr, coo_i, coo_j, coo_k,\n"
    "               coo_val, start, stop)\n"
    "--\n\n"
    "Write one partial gradient of the graph form PhiG(h, y, w, g) into rows [start, stop) of out.\n\n"
    "PhiG = sum_e sum_{c,p,i,j,k} w[e,c,p] C_p[i,j,k] h[s(e),c,ox_p+i] y[e,oy_p+j] g[r(e),c,oz_p+k]\n"
    "with s = senders, r = receivers (int64 (E,)).  h (N, C, DX) and g (N, C, DZ) are node arrays,\n"
    "y (E, DY) and w (E, C, P) edge arrays (C-contiguous float64 or float32 of one format; the array\n"
    "that `mode` replaces may be None).\n"
    "mode 0 (z): out (N, C, DZ), out[n] = sum over the edges with r(e) = n; rows [start, stop) are\n"
    "    nodes, the edges of node n are order[ptr[n]:ptr[n+1]] (int64 (E,) and (N+1,); order None\n"
    "    means ptr[n]..ptr[n+1]-1, i.e. sorted receivers);\n"
    "mode 1 (x): out (N, C, DX), out[n] = sum over the edges with s(e) = n; rows [start, stop) are\n"
    "    nodes, order (int64) lists exactly the edges whose sender lies in [start, stop), best in\n"
    "    receiver order (None: all edges); ptr is ignored;\n"
    "    in both, every row in [start, stop) is written exactly once (zeros for a node without edges);\n"
    "mode 2 (y): out (E, DY);  mode 3 (w): out (E, C, P): rows are edges, order and ptr are ignored.\n"
    "meta: int32 (P, 6) rows (ox, dx, oy, dy, oz, dz); COO coupling lists: coo_ptr int32 (P+1,),\n"
    "coo_i/coo_j/coo_k int32 (nnz,), coo_val float64 or float32 (nnz,).\n"
    "The indices the call reads are validated (ValueError).\n"
    "Rows outside [start, stop) are not touched.  The GIL is released.");

static PyObject *py_phi_grad_graph(PyObject *self, PyObject *args) {
    (void)self;
    int mode;
    PyObject *oh, *oy_, *ow_, *og_, *oout, *osend, *orecv, *oorder, *orptr, *ometa, *optr, *oi, *oj, *ok, *oval;
    Py_ssize_t start, stop;
    if (!PyArg_ParseTuple(args, "iOOOOOOOOOOOOOOOnn:phi_grad_graph", &mode, &oh, &oy_, &ow_, &og_, &oout, &osend,
                          &orecv, &oorder, &orptr, &ometa, &optr, &oi, &oj, &ok, &oval, &start, &stop))
        return NULL;
    if (mode < 0 || mode > 3) {
        PyErr_Format(PyExc_ValueError, "mode must be 0 (z), 1 (x), 2 (y) or 3 (w), got %d", mode);
        return NULL;
    }
    Buffers bs;
    bs.n = 0;
    Plan pl;
    memset(&pl, 0, sizeof(pl));
    double *vals = NULL;
    PyObject *result = NULL;
    Table tb;
    if (get_table(&bs, ometa, optr, oi, oj, ok, oval, &tb) != 0) goto done;
    const Py_ssize_t P = tb.P;

    PyObject *const objs[4] = {oh, oy_, ow_, og_};
    static const char *const names[4] = {"h", "y", "w", "g"};
    static const int ndims[4] = {3, 2, 3, 3};
    const int skip = mode == MODE_Z ? 3 : mode == MODE_X ? 0 : mode == MODE_Y ? 1 : 2;
    Py_buffer *fb[4], *bout;
    const int fmt = get_floats(&bs, objs, names, ndims, skip, oout, fb, &bout);
    if (fmt < 0) goto done;

    const int64_t *senders, *receivers, *order = NULL, *rptr = NULL;
    Py_ssize_t E = 0;
    if (get_index(&bs, osend, "senders", -1, 0, &senders, &E) != 0) goto done;
    if (get_index(&bs, orecv, "receivers", E, 0, &receivers, NULL) != 0) goto done;
    /* N from out (modes z, x) or h (modes y, w: h is present), C and DX, DY, DZ from the arrays present */
    const int node_out = mode == MODE_Z || mode == MODE_X;
    const Py_ssize_t N = node_out ? bout->shape[0] : fb[0]->shape[0];
    Py_ssize_t C = -1;
    if (mode != MODE_Y) C = bout->shape[1];
    for (int a = 0; a < 4 && C < 0; a++)
        if (fb[a] && a != 1) C = fb[a]->shape[1];
    if (C < 0) {
        PyErr_SetString(PyExc_ValueError, "cannot determine the number of channels");
        goto done;
    }
    const Py_ssize_t DX = fb[0] ? fb[0]->shape[2] : bout->shape[2];
    const Py_ssize_t DY = fb[1] ? fb[1]->shape[1] : bout->shape[1];
    const Py_ssize_t DZ = fb[3] ? fb[3]->shape[2] : bout->shape[2];
    {
        const Py_ssize_t sh[3] = {N, C, DX}, sy[2] = {E, DY}, sw[3] = {E, C, P}, sg[3] = {N, C, DZ};
        const Py_ssize_t *want[4] = {sh, sy, sw, sg};
        for (int a = 0; a < 4; a++)
            if (fb[a] && check_dims(fb[a], names[a], ndims[a], want[a]) != 0) goto done;
        if (check_dims(bout, "out", ndims[skip], want[skip]) != 0) goto done;
    }
    if (check_table(&tb, DX, DY, DZ) != 0) goto done;
    const Py_ssize_t nrows = node_out ? N : E;
    if (start < 0 || stop < start || stop > nrows) {
        PyErr_Format(PyExc_ValueError, "row range [%zd, %zd) is not within [0, %zd] (%s)", start, stop, nrows,
                     node_out ? "nodes" : "edges");
        goto done;
    }
    Py_ssize_t nlist = E;
    if (mode == MODE_Z) {
        if (orptr == Py_None) {
            PyErr_SetString(PyExc_ValueError, "mode z needs ptr, the (N + 1,) row pointers of the sorted receivers");
            goto done;
        }
        if (get_index(&bs, oorder, "order", E, 1, &order, NULL) != 0) goto done;
        if (get_index(&bs, orptr, "ptr", N + 1, 0, &rptr, NULL) != 0) goto done;
    } else if (mode == MODE_X) {
        if (get_index(&bs, oorder, "order", -1, 1, &order, &nlist) != 0) goto done;
    }
    if (check_graph_rows(mode, senders, receivers, order, rptr, nlist, N, E, start, stop) != 0) goto done;

    pl.P = (int)P;
    pl.DX = (int)DX;
    pl.DY = (int)DY;
    pl.DZ = (int)DZ;
    pl.nnz = (int)tb.nnz;
    vals = table_values(&tb);
    if (!vals) goto done;

    Job jb;
    memset(&jb, 0, sizeof(jb));
    jb.mode = mode;
    jb.fmt = fmt == 'd' ? FMT_F64 : FMT_F32;
    jb.C = C;
    jb.x = fb[0] ? fb[0]->buf : NULL;
    jb.y = fb[1] ? fb[1]->buf : NULL;
    jb.w = fb[2] ? fb[2]->buf : NULL;
    jb.g = fb[3] ? fb[3]->buf : NULL;
    jb.x_len = fb[0] ? (size_t)(fb[0]->len / fb[0]->itemsize) : 0;
    jb.w_len = fb[2] ? (size_t)(fb[2]->len / fb[2]->itemsize) : 0;
    jb.g_len = fb[3] ? (size_t)(fb[3]->len / fb[3]->itemsize) : 0;
    jb.out = bout->buf;
    jb.e_start = start;
    jb.e_stop = stop;
    jb.senders = senders;
    jb.receivers = receivers;
    jb.order = order;
    jb.ptr = rptr;
    jb.nlist = nlist;
    if (plan_and_run(&pl, &tb, vals, &jb) != 0) goto done;
    Py_INCREF(oout);
    result = oout;

done:
    free(vals);
    plan_free(&pl);
    release_all(&bs);
    return result;
}

static PyMethodDef fused_methods[] = {
    {"phi_grad_graph", py_phi_grad_graph, METH_VARARGS, phi_grad_graph_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fused_module = {
    PyModuleDef_HEAD_INIT,
    "_fused",
    "Fused CPU kernel for the message-passing tensor product and its gradients (see phi_grad_graph).",
    -1,
    fused_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__fused(void) {
    PyObject *m = PyModule_Create(&fused_module);
    if (m == NULL) return NULL;
    if (PyModule_AddIntConstant(m, "CHANNEL_BLOCK", CB) != 0 || PyModule_AddIntConstant(m, "MODE_Z", MODE_Z) != 0 ||
        PyModule_AddIntConstant(m, "MODE_X", MODE_X) != 0 || PyModule_AddIntConstant(m, "MODE_Y", MODE_Y) != 0 ||
        PyModule_AddIntConstant(m, "MODE_W", MODE_W) != 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
