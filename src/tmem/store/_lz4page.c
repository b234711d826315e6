/* lz4 for one page at a time, holding the GIL: the compressed store's codec.
 *
 * The lz4 package's block functions release the GIL around every call.  For a
 * page (a few µs of work, run inside the host's lock) that is a loss: each
 * release wakes a thread waiting for the GIL, which then blocks on the host's
 * lock, and the caller waits to get the GIL back.  These functions call the
 * same lz4 code, found with dlsym in the lz4 package's already loaded library
 * (bind()), the same way that package does (a freshly reset stream, then
 * LZ4_compress_fast_continue at acceleration 1), so they write the same bytes;
 * they only keep the GIL and take positional arguments.  The store falls back
 * to the lz4 package where this module was not built (tmem.store.codecs).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <string.h>

typedef void (*reset_fn)(void *stream);
typedef int (*compress_fn)(void *stream, const char *src, char *dst, int src_size,
                           int dst_capacity, int acceleration);
typedef int (*bound_fn)(int size);
typedef int (*decompress_fn)(const char *src, char *dst, int src_size, int dst_capacity);
typedef int (*size_fn)(void);

/* Inputs up to this size compress into the static buffer; larger ones into their own. */
#define STATIC_INPUT (1 << 16)

static reset_fn reset_stream = NULL;
static compress_fn compress_continue = NULL;
static decompress_fn decompress_safe = NULL;
static bound_fn compress_bound = NULL;
static void *stream = NULL;   /* LZ4_stream_t, LZ4_sizeofState() bytes */
static char *out = NULL;      /* LZ4_compressBound(STATIC_INPUT) bytes */
static PyObject *block_error = NULL; /* lz4.block.LZ4BlockError, from bind() */

static void *symbol(void *lib, const char *name, int *missing) {
    void *found = dlsym(lib, name);
    if (found == NULL)
        *missing = 1;
    return found;
}

PyDoc_STRVAR(bind_doc,
"bind(lz4_library, error)\n\n"
"Find lz4's stream compression and safe decompression in that already loaded\n"
"library (the lz4.block extension module); ImportError if it lacks them.\n"
"``error`` is the exception class a block that does not decode raises (the\n"
"lz4 package's own, LZ4BlockError).");

static PyObject *bind(PyObject *self, PyObject *args) {
    const char *path;
    PyObject *error;
    if (!PyArg_ParseTuple(args, "sO", &path, &error))
        return NULL;
    void *lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (lib == NULL) {
        PyErr_SetString(PyExc_ImportError, "the lz4 library is not loaded");
        return NULL;
    }
    int missing = 0;
    reset_fn r = (reset_fn)symbol(lib, "LZ4_resetStream", &missing);
    compress_fn c = (compress_fn)symbol(lib, "LZ4_compress_fast_continue", &missing);
    decompress_fn d = (decompress_fn)symbol(lib, "LZ4_decompress_safe", &missing);
    bound_fn b = (bound_fn)symbol(lib, "LZ4_compressBound", &missing);
    size_fn s = (size_fn)symbol(lib, "LZ4_sizeofState", &missing);
    dlclose(lib); /* RTLD_NOLOAD took a reference to a library that stays loaded */
    if (missing) {
        PyErr_SetString(PyExc_ImportError, "lz4's stream functions not found");
        return NULL;
    }
    if (stream == NULL) {
        stream = PyMem_RawMalloc((size_t)s());
        out = PyMem_RawMalloc((size_t)b(STATIC_INPUT));
        if (stream == NULL || out == NULL)
            return PyErr_NoMemory();
    }
    Py_INCREF(error);
    Py_XSETREF(block_error, error);
    reset_stream = r;
    compress_continue = c;
    decompress_safe = d;
    compress_bound = b;
    Py_RETURN_NONE;
}

static int bound(void) {
    if (compress_continue == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "tmem.store._lz4page is not bound");
        return 0;
    }
    return 1;
}

PyDoc_STRVAR(compress_doc,
"compress(data) -> bytes\n\n"
"``data`` (bytes, or any contiguous buffer) as an lz4 block with no size header:\n"
"what ``lz4.block.compress(data, store_size=False)`` returns.");

static PyObject *compress(PyObject *self, PyObject *arg) {
    if (!bound())
        return NULL;
    Py_buffer view;
    const char *src;
    Py_ssize_t n;
    if (PyBytes_CheckExact(arg)) {
        src = PyBytes_AS_STRING(arg);
        n = PyBytes_GET_SIZE(arg);
        view.obj = NULL;
    } else {
        if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
            return NULL;
        src = view.buf;
        n = view.len;
    }
    PyObject *result = NULL;
    if (n > STATIC_INPUT) {
        if (n > INT_MAX / 2) {
            PyErr_SetString(PyExc_OverflowError, "input too large for lz4");
            goto done;
        }
        int capacity = compress_bound((int)n);
        char *dst = PyMem_Malloc((size_t)capacity);
        if (dst == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        reset_stream(stream);
        int size = compress_continue(stream, src, dst, (int)n, capacity, 1);
        if (size > 0)
            result = PyBytes_FromStringAndSize(dst, size);
        else
            PyErr_SetString(block_error, "lz4 compression failed");
        PyMem_Free(dst);
        goto done;
    }
    reset_stream(stream);
    int size = compress_continue(stream, src, out, (int)n, compress_bound(STATIC_INPUT), 1);
    if (size > 0)
        result = PyBytes_FromStringAndSize(out, size);
    else
        PyErr_SetString(block_error, "lz4 compression failed");
done:
    if (view.obj != NULL)
        PyBuffer_Release(&view);
    return result;
}

PyDoc_STRVAR(decompress_doc,
"decompress(block, size) -> bytes\n\n"
"The ``size`` bytes an lz4 block (no size header) holds; the bound error class if\n"
"the block is corrupt or does not hold exactly ``size`` bytes.");

static PyObject *decompress(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "decompress takes 2 arguments (block, size)");
        return NULL;
    }
    if (!bound())
        return NULL;
    Py_ssize_t size = PyLong_AsSsize_t(args[1]);
    if (size == -1 && PyErr_Occurred())
        return NULL;
    if (size < 0 || size > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "size out of range");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *result = NULL;
    if (view.len > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "input too large for lz4");
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, size);
    if (result == NULL)
        goto done;
    int got = decompress_safe(view.buf, PyBytes_AS_STRING(result), (int)view.len, (int)size);
    if (got != size) {
        Py_CLEAR(result);
        PyErr_Format(block_error, "corrupt lz4 block (%d bytes out of %zd)", got, size);
    }
done:
    PyBuffer_Release(&view);
    return result;
}

PyDoc_STRVAR(incompressible_doc,
"incompressible(page) -> bool\n\n"
"The store's guess that lz4 cannot compress ``page`` (bytes, or any contiguous\n"
"buffer) to three quarters of its size: 64 bytes at a stride of len // 64 take\n"
"at least 40 distinct values, and 256 bytes at a stride of len // 256 are spread\n"
"almost evenly over the byte values (sum of the squared counts of each value,\n"
"times 96, under 256 * 256: a collision entropy above log2(96), about 6.6 bits\n"
"a byte).  False for pages under 256 bytes.  The same rule as\n"
"tmem.store.codecs.looks_incompressible.");

static PyObject *incompressible(PyObject *self, PyObject *arg) {
    Py_buffer view;
    const unsigned char *src;
    Py_ssize_t n;
    if (PyBytes_CheckExact(arg)) {
        src = (const unsigned char *)PyBytes_AS_STRING(arg);
        n = PyBytes_GET_SIZE(arg);
        view.obj = NULL;
    } else {
        if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
            return NULL;
        src = view.buf;
        n = view.len;
    }
    int poor = 0;
    if (n >= 256) {
        /* First 64 bytes at a stride of n / 64: most compressible pages show few
         * distinct values here and stop at this cheap test. */
        unsigned long long seen[4] = {0, 0, 0, 0};
        Py_ssize_t wide = n >> 6;
        for (int i = 0; i < 64; i++) {
            unsigned char b = src[i * wide];
            seen[b >> 6] |= 1ULL << (b & 63);
        }
        int distinct = __builtin_popcountll(seen[0]) + __builtin_popcountll(seen[1]) +
                       __builtin_popcountll(seen[2]) + __builtin_popcountll(seen[3]);
        if (distinct < 40)
            goto done;
        unsigned int counts[256] = {0};
        Py_ssize_t step = n >> 8;
        for (int i = 0; i < 256; i++)
            counts[src[i * step]]++;
        unsigned long squares = 0;
        for (int v = 0; v < 256; v++)
            squares += (unsigned long)counts[v] * counts[v];
        poor = squares * 96 < 256 * 256;
    }
done:
    if (view.obj != NULL)
        PyBuffer_Release(&view);
    return PyBool_FromLong(poor);
}

static PyMethodDef methods[] = {
    {"bind", bind, METH_VARARGS, bind_doc},
    {"incompressible", incompressible, METH_O, incompressible_doc},
    {"compress", compress, METH_O, compress_doc},
    {"decompress", (PyCFunction)(void (*)(void))decompress, METH_FASTCALL, decompress_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_lz4page",
    "lz4 for one page, holding the GIL (see tmem.store.codecs).", -1, methods,
};

PyMODINIT_FUNC PyInit__lz4page(void) { return PyModule_Create(&module); }
