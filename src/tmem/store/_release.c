/* MADV_DONTNEED over many ranges in one system call: the page stores' releases.
 *
 * A store gives freed memory back to the kernel in ranges of its maps.  One
 * madvise() per range costs a system call each (about 2 µs here, more than the
 * kernel's work of freeing one page); Linux's process_madvise() takes a whole
 * vector of ranges, and from 6.13 accepts MADV_DONTNEED for the calling
 * process (PIDFD_SELF_THREAD_GROUP names it from 6.15).  release() sends up to
 * IOV_MAX ranges a call; where the kernel refuses the call (older kernels:
 * EBADF for the self pidfd, EINVAL for the advice, ENOSYS, EPERM) it gives
 * the same ranges back with one madvise() each and reports the refusal, so
 * that tmem.store.release stops trying.  Either way exactly the ranges asked
 * for are released, nothing else.  The fallback for a build without this
 * module is tmem.store.release's mmap.madvise() per range.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef MADV_DONTNEED
#error "MADV_DONTNEED is needed"
#endif

/* Ranges per process_madvise() call: the kernel's UIO_MAXIOV. */
#define BATCH 1024

static long page_size = 0;

/* One range, resolved to an address in a held buffer. */
typedef struct {
    char *start;
    size_t length;
} span;

static int refused(int error) {
    return error == EBADF || error == EINVAL || error == ENOSYS || error == EPERM ||
           error == ESRCH || error == EACCES;
}

/* Give back spans[0..n) one madvise() each, counting calls; 0, or the errno of a
 * failed call.  Runs without the GIL: no Python calls here. */
static int one_by_one(span *spans, Py_ssize_t n, Py_ssize_t *calls) {
    for (Py_ssize_t i = 0; i < n; i++) {
        ++*calls;
        if (madvise(spans[i].start, spans[i].length, MADV_DONTNEED) != 0)
            return errno;
    }
    return 0;
}

/* Give back spans[0..n) with process_madvise() on ``pidfd``, BATCH at a time,
 * counting calls; 0, or the errno of a failed call.  *refusal gets the errno of a
 * refused call, after which the remaining spans go one madvise() each.  Runs
 * without the GIL. */
static int batched(span *spans, Py_ssize_t n, int pidfd, Py_ssize_t *calls, int *refusal) {
    struct iovec vec[BATCH];
    for (Py_ssize_t first = 0; first < n; first += BATCH) {
        Py_ssize_t count = n - first < BATCH ? n - first : BATCH;
        size_t total = 0;
        for (Py_ssize_t i = 0; i < count; i++) {
            vec[i].iov_base = spans[first + i].start;
            vec[i].iov_len = spans[first + i].length;
            total += spans[first + i].length;
        }
#ifdef SYS_process_madvise
        long done = syscall(SYS_process_madvise, pidfd, vec, (size_t)count, MADV_DONTNEED, 0);
        int why = done < 0 ? errno : 0;
#else
        long done = -1;
        int why = ENOSYS;
#endif
        if (done == (long)total) {
            ++*calls;
            continue;
        }
        if (done < 0 && refused(why))
            *refusal = why; /* refused: nothing was done, the kernel says why */
        else if (done < 0)
            return why;
        else
            ++*calls; /* stopped part way */
        /* the rest, one by one (a range given back twice is harmless: it holds
         * only freed slots) */
        return one_by_one(spans + first, n - first, calls);
    }
    return 0;
}

PyDoc_STRVAR(release_doc,
"release(chunks, ranges, pidfd) -> (calls, refused)\n\n"
"Release with MADV_DONTNEED the ranges ``ranges`` names, a flat list of\n"
"(chunk number, offset, length) triples into the buffers (memory maps) listed\n"
"in ``chunks``: each offset on an OS page boundary, each range inside its\n"
"buffer.  With ``pidfd`` an int (PIDFD_SELF_THREAD_GROUP), one process_madvise()\n"
"per 1024 ranges; with None, or where the kernel refuses that call, one\n"
"madvise() per range.  Returns the system calls made and the errno of a\n"
"refused process_madvise() (0 if none was refused).  ValueError for a range\n"
"outside its buffer or off a page boundary, OSError if the kernel fails a range.");

static PyObject *release(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "release takes 3 arguments (chunks, ranges, pidfd)");
        return NULL;
    }
    PyObject *chunks = args[0], *ranges = args[1];
    if (!PyList_Check(chunks) || !PyList_Check(ranges)) {
        PyErr_SetString(PyExc_TypeError, "chunks and ranges must be lists");
        return NULL;
    }
    int pidfd = 0, batch = args[2] != Py_None;
    if (batch) {
        long value = PyLong_AsLong(args[2]);
        if (value == -1 && PyErr_Occurred())
            return NULL;
        pidfd = (int)value;
    }
    Py_ssize_t items = PyList_GET_SIZE(ranges), n = items / 3;
    if (items % 3) {
        PyErr_SetString(PyExc_ValueError, "ranges must hold (chunk, offset, length) triples");
        return NULL;
    }
    Py_ssize_t nchunks = PyList_GET_SIZE(chunks);
    span *spans = PyMem_Malloc(sizeof(span) * (size_t)(n ? n : 1));
    /* buffers held while the kernel works on them (so that no map can close meanwhile) */
    Py_buffer *views = PyMem_Malloc(sizeof(Py_buffer) * (size_t)(n ? n : 1));
    Py_ssize_t held = 0, last = -1, calls = -1;
    int error = 0;
    if (spans == NULL || views == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t chunk = PyLong_AsSsize_t(PyList_GET_ITEM(ranges, 3 * i));
        Py_ssize_t offset = PyLong_AsSsize_t(PyList_GET_ITEM(ranges, 3 * i + 1));
        Py_ssize_t length = PyLong_AsSsize_t(PyList_GET_ITEM(ranges, 3 * i + 2));
        if (PyErr_Occurred())
            goto done;
        if (chunk < 0 || chunk >= nchunks) {
            PyErr_Format(PyExc_ValueError, "chunk %zd out of range", chunk);
            goto done;
        }
        if (chunk != last) {
            if (PyObject_GetBuffer(PyList_GET_ITEM(chunks, chunk), &views[held], PyBUF_SIMPLE) < 0)
                goto done;
            held++;
            last = chunk;
        }
        Py_buffer *view = &views[held - 1];
        char *start = (char *)view->buf + offset;
        if (offset < 0 || length <= 0 || length > view->len - offset ||
            ((uintptr_t)start % (uintptr_t)page_size) != 0) {
            PyErr_Format(PyExc_ValueError, "range (%zd, %zd, %zd) is outside its chunk or off a page",
                         chunk, offset, length);
            goto done;
        }
        spans[i].start = start;
        spans[i].length = (size_t)length;
    }
    calls = 0;
    int failed;
    Py_BEGIN_ALLOW_THREADS
    failed = batch ? batched(spans, n, pidfd, &calls, &error) : one_by_one(spans, n, &calls);
    Py_END_ALLOW_THREADS
    if (failed) {
        errno = failed;
        PyErr_SetFromErrno(PyExc_OSError);
        calls = -1;
    }
done:
    for (Py_ssize_t i = 0; i < held; i++)
        PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    PyMem_Free(spans);
    if (calls < 0)
        return NULL;
    return Py_BuildValue("(ni)", calls, error);
}

static PyMethodDef methods[] = {
    {"release", (PyCFunction)(void (*)(void))release, METH_FASTCALL, release_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_release",
    "MADV_DONTNEED over many ranges in one system call (see tmem.store.release).", -1, methods,
};

PyMODINIT_FUNC PyInit__release(void) {
    page_size = sysconf(_SC_PAGESIZE);
    if (page_size <= 0)
        page_size = 4096;
    return PyModule_Create(&module);
}
