/*
 * cartesian_irreps._monomials: products of the entries of each row of a matrix (monomials), with
 * their first and second derivatives, for the product basis of message-passing potentials.
 *
 * A monomial table is two int32 arrays of length T, ``parent`` and ``last``, in topological order
 * (parent[t] < t):
 *
 *     m[t] = a[last[t]]                  if parent[t] < 0   (degree 1)
 *     m[t] = m[parent[t]] * a[last[t]]   otherwise
 *
 * for each row ``a`` (length D) of A (R, D).  Four row-wise functions, every one a single pass over
 * the table with O(T) scratch per row (nothing is shared between rows, so threads split rows; rows
 * go in blocks of 8, one vector lane each):
 *
 *     forward(A)          -> M (R, T)      M[r] = m(A[r])
 *     vjp(A, G)           -> (R, D)        sum_t G[r,t] dm_t/da                        (reverse sweep)
 *     jvp(A, H)           -> (R, T)        sum_c H[r,c] dm_t/da_c                      (forward sweep)
 *     hvp(A, G, H)        -> (R, D)        sum_t G[r,t] sum_c H[r,c] d2m_t/(da da_c)   (forward over reverse)
 *
 * jvp and hvp are the two halves of the VJP of vjp (with respect to G and to A), which second
 * derivatives (training on forces) need.  Arrays are C-contiguous float64 or float32 (all one
 * dtype); accumulation is in double.  Every index is validated once per call.
 *
 * Optionally a sparse *basis* B (T, W), given as its nonzeros (bt[k], bj[k], bv[k]), is folded in:
 * forward and jvp then return M B and (J h) B (R, W), and vjp and hvp read G (R, W) as the cotangent
 * of M B (the monomials' cotangent is G B^T).  The product basis of a potential is such a matrix
 * with a few percent nonzeros, so this replaces a dense (R, T) x (T, W) product and the (R, T)
 * intermediate by a sparse sum in cache.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Rows are processed in blocks of L: the scratch holds entry-major, lane-minor arrays x[i * L + b]
 * (b = row within the block), so every step of the table is one L-wide vector operation. */
#define L 8

typedef struct {
    const int32_t *parent, *last;
    Py_ssize_t T, D;
    /* optional sparse basis (has_basis): nonzero k is B[bt[k], bj[k]] = bv[k]; W columns (T without) */
    const int32_t *bt, *bj;
    const double *bv;
    Py_ssize_t nnz, W;
    int has_basis;
} Table;

static int check_table(const Table *tb) {
    for (Py_ssize_t t = 0; t < tb->T; t++) {
        if (tb->parent[t] >= t) {
            PyErr_Format(PyExc_ValueError, "parent[%zd] = %d is not below %zd (table not in topological order)", t,
                         (int)tb->parent[t], t);
            return -1;
        }
        if (tb->last[t] < 0 || tb->last[t] >= tb->D) {
            PyErr_Format(PyExc_ValueError, "last[%zd] = %d is out of range for %zd columns", t, (int)tb->last[t],
                         tb->D);
            return -1;
        }
    }
    for (Py_ssize_t k = 0; k < tb->nnz; k++) {
        if (tb->bt[k] < 0 || tb->bt[k] >= tb->T || tb->bj[k] < 0 || tb->bj[k] >= tb->W) {
            PyErr_Format(PyExc_ValueError, "basis entry %zd at (%d, %d) is outside (%zd, %zd)", k, (int)tb->bt[k],
                         (int)tb->bj[k], tb->T, tb->W);
            return -1;
        }
    }
    return 0;
}

/* y[j] = sum_k bv[k] x[bt[k]] over the basis (x: T entries, y: W entries, L lanes each) */
static inline void basis_apply(const Table *tb, const double *restrict x, double *restrict y) {
    memset(y, 0, sizeof(double) * (size_t)(tb->W * L));
    for (Py_ssize_t k = 0; k < tb->nnz; k++) {
        const double v = tb->bv[k], *xs = x + (size_t)tb->bt[k] * L;
        double *yd = y + (size_t)tb->bj[k] * L;
        for (int b = 0; b < L; b++) yd[b] += v * xs[b];
    }
}

/* x[t] = sum_k bv[k] y[bj[k]] over the basis: the transpose */
static inline void basis_apply_t(const Table *tb, const double *restrict y, double *restrict x) {
    memset(x, 0, sizeof(double) * (size_t)(tb->T * L));
    for (Py_ssize_t k = 0; k < tb->nnz; k++) {
        const double v = tb->bv[k], *ys = y + (size_t)tb->bj[k] * L;
        double *xd = x + (size_t)tb->bt[k] * L;
        for (int b = 0; b < L; b++) xd[b] += v * ys[b];
    }
}


/* load rows [r, r + nb) of an (R, n) array into x[i * L + b] (lanes past nb are zero) */
static void load_block(double *x, const void *src, int f32, Py_ssize_t r, int nb, Py_ssize_t n) {
    memset(x, 0, sizeof(double) * (size_t)(n * L));
    for (int b = 0; b < nb; b++) {
        if (f32) {
            const float *s_ = (const float *)src + (size_t)(r + b) * (size_t)n;
            for (Py_ssize_t i = 0; i < n; i++) x[i * L + b] = s_[i];
        } else {
            const double *s_ = (const double *)src + (size_t)(r + b) * (size_t)n;
            for (Py_ssize_t i = 0; i < n; i++) x[i * L + b] = s_[i];
        }
    }
}

static void store_block(void *dst, const double *x, int f32, Py_ssize_t r, int nb, Py_ssize_t n) {
    for (int b = 0; b < nb; b++) {
        if (f32) {
            float *d_ = (float *)dst + (size_t)(r + b) * (size_t)n;
            for (Py_ssize_t i = 0; i < n; i++) d_[i] = (float)x[i * L + b];
        } else {
            double *d_ = (double *)dst + (size_t)(r + b) * (size_t)n;
            for (Py_ssize_t i = 0; i < n; i++) d_[i] = x[i * L + b];
        }
    }
}

static inline void mono_block(const Table *tb, const double *restrict a, double *restrict m) {
    const int32_t *p = tb->parent, *l = tb->last;
    for (Py_ssize_t t = 0; t < tb->T; t++) {
        const double *al = a + (size_t)l[t] * L;
        double *mt = m + (size_t)t * L;
        if (p[t] < 0) {
            for (int b = 0; b < L; b++) mt[b] = al[b];
        } else {
            const double *mp = m + (size_t)p[t] * L;
            for (int b = 0; b < L; b++) mt[b] = mp[b] * al[b];
        }
    }
}

/* dm = directional derivative of m along h (needs m) */
static inline void jvp_block(const Table *tb, const double *restrict a, const double *restrict h,
                             const double *restrict m, double *restrict dm) {
    const int32_t *p = tb->parent, *l = tb->last;
    for (Py_ssize_t t = 0; t < tb->T; t++) {
        const double *al = a + (size_t)l[t] * L, *hl = h + (size_t)l[t] * L;
        double *dt = dm + (size_t)t * L;
        if (p[t] < 0) {
            for (int b = 0; b < L; b++) dt[b] = hl[b];
        } else {
            const double *dp = dm + (size_t)p[t] * L, *mp = m + (size_t)p[t] * L;
            for (int b = 0; b < L; b++) dt[b] = dp[b] * al[b] + mp[b] * hl[b];
        }
    }
}

enum { OP_FORWARD = 0, OP_VJP = 1, OP_JVP = 2, OP_HVP = 3 };

/* rows [r0, r1) of one op; scratch holds L * (4 * T + 3 * D + W) doubles */
static void run_rows(int op, const Table *tb, int f32, const void *A, const void *G, const void *H, void *out,
                     Py_ssize_t r0, Py_ssize_t r1, double *scratch) {
    const Py_ssize_t T = tb->T, D = tb->D, W = tb->W;
    const int32_t *p = tb->parent, *l = tb->last;
    double *m = scratch, *gm = m + T * L, *dm = gm + T * L, *dgm = dm + T * L;
    double *a = dgm + T * L, *h = a + D * L, *ga = h + D * L, *y = ga + D * L;
    const int basis = tb->has_basis;
    for (Py_ssize_t r = r0; r < r1; r += L) {
        const int nb = (int)(r1 - r < L ? r1 - r : L);
        load_block(a, A, f32, r, nb, D);
        mono_block(tb, a, m);
        if (op == OP_FORWARD) {
            if (basis) {
                basis_apply(tb, m, y);
                store_block(out, y, f32, r, nb, W);
            } else {
                store_block(out, m, f32, r, nb, T);
            }
            continue;
        }
        if (op == OP_JVP || op == OP_HVP) {
            load_block(h, H, f32, r, nb, D);
            jvp_block(tb, a, h, m, dm);
        }
        if (op == OP_JVP) {
            if (basis) {
                basis_apply(tb, dm, y);
                store_block(out, y, f32, r, nb, W);
            } else {
                store_block(out, dm, f32, r, nb, T);
            }
            continue;
        }
        if (basis) {
            load_block(y, G, f32, r, nb, W);
            basis_apply_t(tb, y, gm);
        } else {
            load_block(gm, G, f32, r, nb, T);
        }
        memset(ga, 0, sizeof(double) * (size_t)(D * L));
        if (op == OP_VJP) {
            for (Py_ssize_t t = T - 1; t >= 0; t--) {
                const double *g = gm + (size_t)t * L, *al = a + (size_t)l[t] * L;
                double *gl = ga + (size_t)l[t] * L;
                if (p[t] < 0) {
                    for (int b = 0; b < L; b++) gl[b] += g[b];
                } else {
                    const double *mp = m + (size_t)p[t] * L;
                    double *gp = gm + (size_t)p[t] * L;
                    for (int b = 0; b < L; b++) {
                        gl[b] += g[b] * mp[b];
                        gp[b] += g[b] * al[b];
                    }
                }
            }
        } else { /* OP_HVP: d/da (vjp) along h, G fixed */
            memset(dgm, 0, sizeof(double) * (size_t)(T * L));
            for (Py_ssize_t t = T - 1; t >= 0; t--) {
                const double *g = gm + (size_t)t * L, *dg = dgm + (size_t)t * L;
                double *gl = ga + (size_t)l[t] * L;
                if (p[t] < 0) { /* ga[l] += g, and g depends on a through the children of t */
                    for (int b = 0; b < L; b++) gl[b] += dg[b];
                    continue;
                }
                const double *al = a + (size_t)l[t] * L, *hl = h + (size_t)l[t] * L;
                const double *mp = m + (size_t)p[t] * L, *dp = dm + (size_t)p[t] * L;
                double *gp = gm + (size_t)p[t] * L, *dgp = dgm + (size_t)p[t] * L;
                for (int b = 0; b < L; b++) {
                    gl[b] += dg[b] * mp[b] + g[b] * dp[b];
                    gp[b] += g[b] * al[b];
                    dgp[b] += dg[b] * al[b] + g[b] * hl[b];
                }
            }
        }
        store_block(out, ga, f32, r, nb, D);
    }
}

/* ---------------------------------------------------------------- argument handling */

static int get_buf(PyObject *o, Py_buffer *b, const char *name, int writable) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(o, b, flags) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous%s array", name, writable ? " writable" : "");
        return -1;
    }
    return 0;
}

static int fmt_of(const Py_buffer *b) {
    const char *f = b->format ? b->format : "B";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    if (strcmp(f, "d") == 0 && b->itemsize == 8) return 0;
    if (strcmp(f, "f") == 0 && b->itemsize == 4) return 1;
    return -1;
}

static int check_2d(const Py_buffer *b, const char *name, Py_ssize_t rows, Py_ssize_t cols, int fmt) {
    if (b->ndim != 2 || b->shape[0] != rows || b->shape[1] != cols) {
        PyErr_Format(PyExc_ValueError, "%s must have shape (%zd, %zd)", name, rows, cols);
        return -1;
    }
    if (fmt_of(b) != fmt) {
        PyErr_Format(PyExc_TypeError, "%s must have the dtype of a (float64 or float32)", name);
        return -1;
    }
    return 0;
}

static const char run_doc[] =
    "run(op, parent, last, a, g, h, out, r0, r1, bt=None, bj=None, bv=None, width=-1)\n\n"
    "Rows [r0, r1) of op 0 forward (out (R, W)), 1 vjp(a, g) (out (R, D)), 2 jvp(a, h) (out (R, W)),\n"
    "3 hvp(a, g, h) (out (R, D)); g (R, W) and h (R, D) may be None where the op does not read them.\n"
    "parent, last: int32 (T,) monomial table (see the module docstring).  bt, bj (int32) and bv\n"
    "(float64), all (nnz,): the optional sparse basis with ``width`` columns (W = T without one).\n"
    "Releases the GIL.";

static PyObject *py_run(PyObject *self, PyObject *args) {
    int op;
    PyObject *op_parent, *op_last, *oa, *og, *oh, *oout, *obt = Py_None, *obj = Py_None, *obv = Py_None;
    Py_ssize_t r0, r1, width = -1;
    (void)self;
    if (!PyArg_ParseTuple(args, "iOOOOOOnn|OOOn", &op, &op_parent, &op_last, &oa, &og, &oh, &oout, &r0, &r1, &obt,
                          &obj, &obv, &width))
        return NULL;
    if (op < OP_FORWARD || op > OP_HVP) return PyErr_Format(PyExc_ValueError, "unknown op %d", op);
    Py_buffer bp = {0}, bl = {0}, ba = {0}, bg = {0}, bh = {0}, bo = {0}, bbt = {0}, bbj = {0}, bbv = {0};
    PyObject *result = NULL;
    double *scratch = NULL;
    int have_g = 0, have_h = 0;
    if (get_buf(op_parent, &bp, "parent", 0) < 0) goto done;
    if (get_buf(op_last, &bl, "last", 0) < 0) goto done;
    if (get_buf(oa, &ba, "a", 0) < 0) goto done;
    if (get_buf(oout, &bo, "out", 1) < 0) goto done;
    if (bp.ndim != 1 || bl.ndim != 1 || bp.itemsize != 4 || bl.itemsize != 4 || bp.shape[0] != bl.shape[0]) {
        PyErr_SetString(PyExc_ValueError, "parent and last must be int32 arrays of one length");
        goto done;
    }
    int fmt = fmt_of(&ba);
    if (ba.ndim != 2 || fmt < 0) {
        PyErr_SetString(PyExc_TypeError, "a must be a 2-D float64 or float32 array");
        goto done;
    }
    Table tb = {(const int32_t *)bp.buf, (const int32_t *)bl.buf, bp.shape[0], ba.shape[1], NULL, NULL, NULL, 0, 0, 0};
    tb.W = tb.T;
    if (obt != Py_None || obj != Py_None || obv != Py_None) {
        if (get_buf(obt, &bbt, "bt", 0) < 0 || get_buf(obj, &bbj, "bj", 0) < 0 || get_buf(obv, &bbv, "bv", 0) < 0)
            goto done;
        if (bbt.ndim != 1 || bbj.ndim != 1 || bbv.ndim != 1 || bbt.itemsize != 4 || bbj.itemsize != 4 ||
            fmt_of(&bbv) != 0 || bbt.shape[0] != bbj.shape[0] || bbt.shape[0] != bbv.shape[0] || width < 0) {
            PyErr_SetString(PyExc_ValueError,
                            "basis: bt, bj (int32) and bv (float64) must be 1-D of one length, with width >= 0");
            goto done;
        }
        tb.bt = (const int32_t *)bbt.buf;
        tb.bj = (const int32_t *)bbj.buf;
        tb.bv = (const double *)bbv.buf;
        tb.nnz = bbt.shape[0];
        tb.W = width;
        tb.has_basis = 1;
    }
    const Py_ssize_t R = ba.shape[0], T = tb.T, D = tb.D, W = tb.W;
    if (r0 < 0 || r1 < r0 || r1 > R) {
        PyErr_Format(PyExc_ValueError, "row range [%zd, %zd) is not inside [0, %zd)", r0, r1, R);
        goto done;
    }
    if (check_table(&tb) < 0) goto done;
    if (op == OP_VJP || op == OP_HVP) {
        if (og == Py_None) {
            PyErr_SetString(PyExc_ValueError, "this op needs g");
            goto done;
        }
        if (get_buf(og, &bg, "g", 0) < 0) goto done;
        have_g = 1;
        if (check_2d(&bg, "g", R, W, fmt) < 0) goto done;
    }
    if (op == OP_JVP || op == OP_HVP) {
        if (oh == Py_None) {
            PyErr_SetString(PyExc_ValueError, "this op needs h");
            goto done;
        }
        if (get_buf(oh, &bh, "h", 0) < 0) goto done;
        have_h = 1;
        if (check_2d(&bh, "h", R, D, fmt) < 0) goto done;
    }
    if (check_2d(&bo, "out", R, (op == OP_FORWARD || op == OP_JVP) ? W : D, fmt) < 0) goto done;
    scratch = (double *)malloc(sizeof(double) * (size_t)(L * (4 * T + 3 * D + W) + 1));
    if (!scratch) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS;
    run_rows(op, &tb, fmt, ba.buf, have_g ? bg.buf : NULL, have_h ? bh.buf : NULL, bo.buf, r0, r1, scratch);
    Py_END_ALLOW_THREADS;
    result = Py_None;
    Py_INCREF(result);
done:
    free(scratch);
    if (bp.obj) PyBuffer_Release(&bp);
    if (bl.obj) PyBuffer_Release(&bl);
    if (ba.obj) PyBuffer_Release(&ba);
    if (have_g) PyBuffer_Release(&bg);
    if (have_h) PyBuffer_Release(&bh);
    if (bo.obj) PyBuffer_Release(&bo);
    if (bbt.obj) PyBuffer_Release(&bbt);
    if (bbj.obj) PyBuffer_Release(&bbj);
    if (bbv.obj) PyBuffer_Release(&bbv);
    return result;
}

static PyMethodDef methods[] = {
    {"run", py_run, METH_VARARGS, run_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_monomials", "Row-wise monomials and their derivatives (see monomials.c).", -1, methods,
};

PyMODINIT_FUNC PyInit__monomials(void) { return PyModule_Create(&module); }
