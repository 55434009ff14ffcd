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
 * the table with O(T) scratch per row (nothing is shared between rows, so threads split rows):
 *
 *     forward(A)          -> M (R, T)      M[r] = m(A[r])
 *     vjp(A, G)           -> (R, D)        sum_t G[r,t] dm_t/da                        (reverse sweep)
 *     jvp(A, H)           -> (R, T)        sum_c H[r,c] dm_t/da_c                      (forward sweep)
 *     hvp(A, G, H)        -> (R, D)        sum_t G[r,t] sum_c H[r,c] d2m_t/(da da_c)   (forward over reverse)
 *
 * jvp and hvp are the two halves of the VJP of vjp (with respect to G and to A), which second
 * derivatives (training on forces) need.  Arrays are C-contiguous float64 or float32 (all one
 * dtype); accumulation is in double.  Every index is validated once per call.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const int32_t *parent, *last;
    Py_ssize_t T, D;
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
    return 0;
}

/* load row r of a (R, n) array into double scratch */
#define LOAD(dst, src, isf32, r, n)                                                                          \
    do {                                                                                                     \
        if (isf32) {                                                                                         \
            const float *s_ = (const float *)(src) + (size_t)(r) * (size_t)(n);                              \
            for (Py_ssize_t i_ = 0; i_ < (n); i_++) (dst)[i_] = s_[i_];                                      \
        } else {                                                                                             \
            memcpy((dst), (const double *)(src) + (size_t)(r) * (size_t)(n), sizeof(double) * (size_t)(n));  \
        }                                                                                                    \
    } while (0)

#define STORE(dst, src, isf32, r, n)                                                                         \
    do {                                                                                                     \
        if (isf32) {                                                                                         \
            float *d_ = (float *)(dst) + (size_t)(r) * (size_t)(n);                                          \
            for (Py_ssize_t i_ = 0; i_ < (n); i_++) d_[i_] = (float)(src)[i_];                               \
        } else {                                                                                             \
            memcpy((double *)(dst) + (size_t)(r) * (size_t)(n), (src), sizeof(double) * (size_t)(n));        \
        }                                                                                                    \
    } while (0)

static inline void mono_row(const Table *tb, const double *a, double *m) {
    const int32_t *p = tb->parent, *l = tb->last;
    for (Py_ssize_t t = 0; t < tb->T; t++) m[t] = (p[t] < 0 ? 1.0 : m[p[t]]) * a[l[t]];
}

/* dm = directional derivative of m along h (needs m) */
static inline void jvp_row(const Table *tb, const double *a, const double *h, const double *m, double *dm) {
    const int32_t *p = tb->parent, *l = tb->last;
    for (Py_ssize_t t = 0; t < tb->T; t++) {
        if (p[t] < 0)
            dm[t] = h[l[t]];
        else
            dm[t] = dm[p[t]] * a[l[t]] + m[p[t]] * h[l[t]];
    }
}

enum { OP_FORWARD = 0, OP_VJP = 1, OP_JVP = 2, OP_HVP = 3 };

/* rows [r0, r1) of one op; scratch holds 4 * T + 3 * D doubles */
static void run_rows(int op, const Table *tb, int f32, const void *A, const void *G, const void *H, void *out,
                     Py_ssize_t r0, Py_ssize_t r1, double *scratch) {
    const Py_ssize_t T = tb->T, D = tb->D;
    const int32_t *p = tb->parent, *l = tb->last;
    double *m = scratch, *gm = m + T, *dm = gm + T, *dgm = dm + T;
    double *a = dgm + T, *h = a + D, *ga = h + D;
    for (Py_ssize_t r = r0; r < r1; r++) {
        LOAD(a, A, f32, r, D);
        mono_row(tb, a, m);
        if (op == OP_FORWARD) {
            STORE(out, m, f32, r, T);
            continue;
        }
        if (op == OP_JVP) {
            LOAD(h, H, f32, r, D);
            jvp_row(tb, a, h, m, dm);
            STORE(out, dm, f32, r, T);
            continue;
        }
        LOAD(gm, G, f32, r, T);
        for (Py_ssize_t c = 0; c < D; c++) ga[c] = 0.0;
        if (op == OP_VJP) {
            for (Py_ssize_t t = T - 1; t >= 0; t--) {
                const double g = gm[t];
                if (p[t] < 0) {
                    ga[l[t]] += g;
                } else {
                    ga[l[t]] += g * m[p[t]];
                    gm[p[t]] += g * a[l[t]];
                }
            }
        } else { /* OP_HVP: d/da (vjp) along h, G fixed */
            LOAD(h, H, f32, r, D);
            jvp_row(tb, a, h, m, dm);
            for (Py_ssize_t t = 0; t < T; t++) dgm[t] = 0.0;
            for (Py_ssize_t t = T - 1; t >= 0; t--) {
                const double g = gm[t], dg = dgm[t];
                if (p[t] < 0) { /* ga[l] += g, and g depends on a through the children of t */
                    ga[l[t]] += dg;
                    continue;
                }
                ga[l[t]] += dg * m[p[t]] + g * dm[p[t]];
                gm[p[t]] += g * a[l[t]];
                dgm[p[t]] += dg * a[l[t]] + g * h[l[t]];
            }
        }
        STORE(out, ga, f32, r, D);
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
    "run(op, parent, last, a, g, h, out, r0, r1)\n\n"
    "Rows [r0, r1) of op 0 forward (out (R, T)), 1 vjp(a, g) (out (R, D)), 2 jvp(a, h) (out (R, T)),\n"
    "3 hvp(a, g, h) (out (R, D)); g and h may be None where the op does not read them.  parent, last:\n"
    "int32 (T,) monomial table (see the module docstring).  Releases the GIL.";

static PyObject *py_run(PyObject *self, PyObject *args) {
    int op;
    PyObject *op_parent, *op_last, *oa, *og, *oh, *oout;
    Py_ssize_t r0, r1;
    (void)self;
    if (!PyArg_ParseTuple(args, "iOOOOOOnn", &op, &op_parent, &op_last, &oa, &og, &oh, &oout, &r0, &r1)) return NULL;
    if (op < OP_FORWARD || op > OP_HVP) return PyErr_Format(PyExc_ValueError, "unknown op %d", op);
    Py_buffer bp = {0}, bl = {0}, ba = {0}, bg = {0}, bh = {0}, bo = {0};
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
    Table tb = {(const int32_t *)bp.buf, (const int32_t *)bl.buf, bp.shape[0], ba.shape[1]};
    const Py_ssize_t R = ba.shape[0], T = tb.T, D = tb.D;
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
        if (check_2d(&bg, "g", R, T, fmt) < 0) goto done;
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
    if (check_2d(&bo, "out", R, (op == OP_FORWARD || op == OP_JVP) ? T : D, fmt) < 0) goto done;
    scratch = (double *)malloc(sizeof(double) * (size_t)(4 * T + 3 * D + 1));
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
