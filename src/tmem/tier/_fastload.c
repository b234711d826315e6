/* The tail of a get from the SSD tier, compiled: what runs after the disk read.
 *
 * Python's interpreter runs slowly on caches that went cold while its thread slept
 * in an O_DIRECT read; this module does the read and everything after it (the
 * record's checks, its checksum, the page's decompression) in one call, holding
 * the GIL except while the read blocks.  It calls the lz4 and XXH3 code that the
 * lz4 and xxhash packages already loaded (found with dlsym through bind()), so
 * its checksum and decompression are theirs.  tmem.tier.fastload loads it where
 * it was built; elsewhere the same steps run in Python.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int (*lz4_decompress_fn)(const char *src, char *dst, int src_size, int dst_capacity);
typedef uint64_t (*xxh3_fn)(const void *data, size_t len);

static lz4_decompress_fn lz4_decompress = NULL;
static xxh3_fn xxh3 = NULL;
static PyObject *decode_error = NULL; /* tmem.errors.InvalidArgument, from bind() */

#define HEADER_SIZE 32
/* Buffers load_record takes when it is given none: page-aligned (O_DIRECT), each the
 * largest read a load makes (a 64 KiB page and its header: 17 blocks); the idle ones are
 * kept, up to POOL_MAX, and handed out and back holding the GIL. */
#define BLOCK 4096
#define POOL_BYTES (17 * BLOCK)
#define POOL_MAX 8
static unsigned char *pool[POOL_MAX];
static int pooled = 0;

static unsigned char *take_buffer(void) {
    if (pooled > 0)
        return pool[--pooled];
    void *made = NULL;
    if (posix_memalign(&made, BLOCK, POOL_BYTES) != 0) {
        PyErr_NoMemory();
        return NULL;
    }
    return made;
}

static void give_buffer(unsigned char *buf) {
    if (pooled < POOL_MAX)
        pool[pooled++] = buf;
    else
        free(buf);
}
#define CHECK_MASK 0xFFFFFFFFu
/* tmem.store.export: codec ids in bits 0-1 of the first byte, log2(page size) - 9 in 4-7. */
#define CODEC_MASK 3
#define CODEC_RAW 0
#define CODEC_LZ4 1
#define CODEC_SAME 3
#define ORDER_SHIFT 4

static uint64_t le64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v; /* x86-64 and aarch64 Linux: little-endian, as the records are */
}

static uint32_t le32(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static void *symbol(const char *path, const char *name) {
    void *lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (lib == NULL)
        return NULL;
    void *found = dlsym(lib, name);
    dlclose(lib); /* RTLD_NOLOAD took a reference to a library that stays loaded */
    return found;
}

PyDoc_STRVAR(bind_doc,
"bind(lz4_library, xxhash_library, error)\n\n"
"Find LZ4_decompress_safe and XXH3_64bits in those already loaded libraries\n"
"(the lz4.block and xxhash extension modules); ImportError if either is missing.\n"
"``error`` is the exception class a page that does not decode raises.");

static PyObject *bind(PyObject *self, PyObject *args) {
    const char *lz4_path, *xxhash_path;
    PyObject *error;
    if (!PyArg_ParseTuple(args, "ssO", &lz4_path, &xxhash_path, &error))
        return NULL;
    lz4_decompress_fn d = (lz4_decompress_fn)symbol(lz4_path, "LZ4_decompress_safe");
    xxh3_fn h = (xxh3_fn)symbol(xxhash_path, "XXH3_64bits");
    if (d == NULL || h == NULL) {
        PyErr_SetString(PyExc_ImportError, "LZ4_decompress_safe or XXH3_64bits not found");
        return NULL;
    }
    Py_INCREF(error);
    Py_XSETREF(decode_error, error);
    lz4_decompress = d;
    xxh3 = h;
    Py_RETURN_NONE;
}

/* Read ``size`` bytes at ``start`` into ``buf`` (the GIL released meanwhile) and check
 * the record at ``at``: its payload, copied; None if a check fails; NULL on a read error. */
/* ``found``, or RuntimeError and 0: whether bind() found the function a call needs. */
static int bound(int found) {
    if (!found) {
        PyErr_SetString(PyExc_RuntimeError, "tmem.tier._fastload is not bound");
        return 0;
    }
    return 1;
}

/* Whether a call of ``name`` with ``nargs`` arguments (both calls take 8) may go on:
 * TypeError or RuntimeError and 0 if not. */
static int callable_with(const char *name, Py_ssize_t nargs) {
    if (nargs != 8) {
        PyErr_Format(PyExc_TypeError, "%s takes 8 arguments", name);
        return 0;
    }
    return bound(xxh3 != NULL);
}

static PyObject *read_checked(int fd, unsigned char *buf, long long start, Py_ssize_t size,
                              Py_ssize_t at, Py_ssize_t end, unsigned long long tag,
                              unsigned long slot) {
    ssize_t got;
    Py_BEGIN_ALLOW_THREADS
    got = pread(fd, buf, (size_t)size, (off_t)start);
    Py_END_ALLOW_THREADS
    if (got < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    const unsigned char *rec = buf + at;
    Py_ssize_t length = end - at - HEADER_SIZE;
    if (got >= end && le64(rec) == tag && le32(rec + 16) == slot &&
        le32(rec + 20) == (uint32_t)length &&
        ((uint32_t)(xxh3(rec + HEADER_SIZE, (size_t)length) & CHECK_MASK)) == le32(rec + 24))
        return PyBytes_FromStringAndSize((const char *)rec + HEADER_SIZE, length);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(read_record_doc,
"read_record(fd, buffer, start, size, at, end, tag, slot) -> bytes | None\n\n"
"Read ``size`` bytes at file offset ``start`` into ``buffer`` (aligned, writable),\n"
"the GIL released only while the read blocks, then check the record at ``at``:\n"
"its version ``tag``, its ``slot``, its length (``end - at`` with the header) and\n"
"the checksum of its payload.  The payload, copied, if all hold; None if any\n"
"does not (a short read included); OSError if the read fails.");

static PyObject *read_record(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!callable_with("read_record", nargs))
        return NULL;
    int fd = PyLong_AsLong(args[0]);
    long long start = PyLong_AsLongLong(args[2]);
    Py_ssize_t size = PyLong_AsSsize_t(args[3]);
    Py_ssize_t at = PyLong_AsSsize_t(args[4]);
    Py_ssize_t end = PyLong_AsSsize_t(args[5]);
    unsigned long long tag = PyLong_AsUnsignedLongLong(args[6]);
    unsigned long slot = PyLong_AsUnsignedLong(args[7]);
    if (PyErr_Occurred())
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_WRITABLE) < 0)
        return NULL;
    if (size < 0 || size > view.len || at < 0 || end < at + HEADER_SIZE || end > size) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "read_record: sizes out of range");
        return NULL;
    }
    PyObject *out = read_checked(fd, view.buf, start, size, at, end, tag, slot);
    PyBuffer_Release(&view);
    return out;
}

PyDoc_STRVAR(load_record_doc,
"load_record(fd, buffer, offsets, lengths, tags, counts, slot, tag) -> bytes | None | False\n\n"
"The SSD tier's whole load in one call: look ``slot`` up in the tier's index (the\n"
"arrays ``offsets`` ('q'), ``lengths`` ('I') and ``tags`` ('q'), read holding the GIL),\n"
"add the load and the bytes it reads to ``counts`` ('q': loads, bytes read), then read\n"
"the record's blocks and check it as read_record does.  None if the index does not\n"
"hold version ``tag`` at ``slot``; the payload if the record holds; False if it does\n"
"not (the caller looks it up again under the tier's lock); OSError if the read fails.\n"
"``buffer`` None: an aligned buffer of this module's own (kept for the next loads), so\n"
"that loads at the same time each read into their own.");

static int array_view(PyObject *obj, Py_buffer *view, const char *format) {
    if (PyObject_GetBuffer(obj, view, PyBUF_FORMAT | PyBUF_WRITABLE) < 0)
        return -1;
    if (view->format == NULL || strcmp(view->format, format) != 0 || view->len % view->itemsize) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_TypeError, "load_record: an index array is not of type '%s'", format);
        return -1;
    }
    return 0;
}

/* The index row of ``slot`` if it holds version ``tag``: 1, and its offset and length;
 * 0 if it does not; -1 with an exception set. */
static int look_up(PyObject *const *arrays, Py_ssize_t slot, long long tag, long long *off,
                   uint32_t *length) {
    Py_buffer offs, lens, tags;
    if (array_view(arrays[0], &offs, "q") < 0)
        return -1;
    if (array_view(arrays[1], &lens, "I") < 0) {
        PyBuffer_Release(&offs);
        return -1;
    }
    if (array_view(arrays[2], &tags, "q") < 0) {
        PyBuffer_Release(&offs);
        PyBuffer_Release(&lens);
        return -1;
    }
    int held = slot >= 0 && tag > 0 && slot < tags.len / 8 && slot < offs.len / 8 &&
               slot < lens.len / 4 && ((const long long *)tags.buf)[slot] == tag;
    if (held) {
        *off = ((const long long *)offs.buf)[slot];
        *length = ((const uint32_t *)lens.buf)[slot];
    }
    PyBuffer_Release(&offs);
    PyBuffer_Release(&lens);
    PyBuffer_Release(&tags);
    return held;
}

static PyObject *load_record(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!callable_with("load_record", nargs))
        return NULL;
    int fd = PyLong_AsLong(args[0]);
    Py_ssize_t slot = PyLong_AsSsize_t(args[6]);
    long long tag = PyLong_AsLongLong(args[7]);
    if (PyErr_Occurred())
        return NULL;
    long long off = 0;
    uint32_t length = 0;
    int held = look_up(args + 2, slot, tag, &off, &length);
    if (held <= 0)
        return held < 0 ? NULL : Py_NewRef(Py_None);
    Py_ssize_t at = (Py_ssize_t)(off % 4096), end = at + (Py_ssize_t)length;
    Py_ssize_t size = (end + 4095) / 4096 * 4096;
    Py_buffer counts;
    if (array_view(args[5], &counts, "q") < 0)
        return NULL;
    if (counts.len >= 16) {
        ((long long *)counts.buf)[0] += 1;
        ((long long *)counts.buf)[1] += size;
    }
    PyBuffer_Release(&counts);
    PyObject *out;
    if (args[1] == Py_None) {
        if (off < 0 || size > POOL_BYTES || end < at + HEADER_SIZE) {
            PyErr_SetString(PyExc_ValueError, "load_record: the record does not fit the buffer");
            return NULL;
        }
        unsigned char *buf = take_buffer();
        if (buf == NULL)
            return NULL;
        out = read_checked(fd, buf, off - at, size, at, end, (unsigned long long)tag,
                           (unsigned long)slot);
        give_buffer(buf);
    } else {
        Py_buffer view;
        if (PyObject_GetBuffer(args[1], &view, PyBUF_WRITABLE) < 0)
            return NULL;
        if (off < 0 || size > view.len || end < at + HEADER_SIZE) {
            PyBuffer_Release(&view);
            PyErr_SetString(PyExc_ValueError, "load_record: the record does not fit the buffer");
            return NULL;
        }
        out = read_checked(fd, view.buf, off - at, size, at, end, (unsigned long long)tag,
                           (unsigned long)slot);
        PyBuffer_Release(&view);
    }
    if (out == Py_None) {
        Py_DECREF(out);
        out = Py_NewRef(Py_False);
    }
    return out;
}

PyDoc_STRVAR(decode_doc,
"decode_export(blob) -> bytes | None\n\n"
"The page an exported page (tmem.store.export) holds, for the raw, same-filled and\n"
"lz4 codecs, without releasing the GIL; None for another codec (the caller decodes\n"
"it); bind()'s ``error`` if it does not decode to a whole page.");

static PyObject *decode_export(PyObject *self, PyObject *blob) {
    if (!bound(lz4_decompress != NULL))
        return NULL;
    if (!PyBytes_Check(blob)) {
        PyErr_SetString(PyExc_TypeError, "decode_export takes bytes");
        return NULL;
    }
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(blob);
    Py_ssize_t len = PyBytes_GET_SIZE(blob);
    if (len < 1) {
        PyErr_SetString(decode_error, "an exported page is empty");
        return NULL;
    }
    int codec = p[0] & CODEC_MASK;
    Py_ssize_t n = (Py_ssize_t)512 << (p[0] >> ORDER_SHIFT);
    if (codec == CODEC_RAW) {
        if (len - 1 != n)
            goto bad;
        return PyBytes_FromStringAndSize((const char *)p + 1, n);
    }
    if (codec == CODEC_SAME) {
        if (len < 9)
            goto bad;
        PyObject *page = PyBytes_FromStringAndSize(NULL, n);
        if (page == NULL)
            return NULL;
        char *dst = PyBytes_AS_STRING(page);
        for (Py_ssize_t i = 0; i < n; i += 8)
            memcpy(dst + i, p + 1, 8);
        return page;
    }
    if (codec != CODEC_LZ4)
        Py_RETURN_NONE;
    PyObject *page = PyBytes_FromStringAndSize(NULL, n);
    if (page == NULL)
        return NULL;
    int done = lz4_decompress((const char *)p + 1, PyBytes_AS_STRING(page), (int)(len - 1), (int)n);
    if (done != n) {
        Py_DECREF(page);
        goto bad;
    }
    return page;
bad:
    PyErr_SetString(decode_error, "an exported page does not decode to a whole page");
    return NULL;
}

static PyMethodDef methods[] = {
    {"bind", bind, METH_VARARGS, bind_doc},
    {"read_record", (PyCFunction)(void (*)(void))read_record, METH_FASTCALL, read_record_doc},
    {"load_record", (PyCFunction)(void (*)(void))load_record, METH_FASTCALL, load_record_doc},
    {"decode_export", decode_export, METH_O, decode_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "tmem.tier._fastload",
    "The SSD tier's read, checks and decompression after the disk read, compiled.", -1, methods,
};

PyMODINIT_FUNC PyInit__fastload(void) { return PyModule_Create(&module); }
