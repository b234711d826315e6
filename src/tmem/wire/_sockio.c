/* The socket calls of the daemon's loop and of the remote client's single-page
 * round trips, without what the socket module wraps around each call.
 *
 * socket.recv_into and socket.send parse their arguments by keyword, take a
 * buffer, check the socket's timeout and release the interpreter's lock even
 * on a non-blocking socket; a single request costs the daemon two of them, and
 * the client two more besides packing the request and parsing the reply.
 *
 *   recv_into(fd, buffer, start) -> int   one recv into buffer[start:] that never
 *                                         waits (MSG_DONTWAIT), holding the lock
 *   send(fd, buffer, start, stop) -> int  one send of buffer[start:stop] that never
 *                                         waits, holding the lock
 *   put(fd, pool, oid, index, page, buffer) -> int
 *   get(fd, pool, oid, index, buffer) -> bytes | None | int
 *                                         on a blocking socket, without the lock
 *                                         while they wait: pack a PUT or GET frame,
 *                                         send it whole, receive into buffer until
 *                                         it holds a whole frame; the answer of a
 *                                         plain reply (put: 0 or 1; get: the page,
 *                                         None for a miss), else -1 - the bytes
 *                                         received, which the caller then reads as
 *                                         any reply (an error, a move, a protocol
 *                                         fault, the peer's end: all its own)
 *
 * Errors are the socket module's: OSError of errno (BlockingIOError,
 * ConnectionResetError, BrokenPipeError, ...).  An interrupted call runs the
 * signal handlers and goes on (an exception they raise propagates; then the
 * stream is out of step and the caller closes it).  Sends never raise SIGPIPE.
 * Bounds are checked before any system call: a range outside the buffer is a
 * ValueError, and a recv needs room for at least one byte (a recv of nothing
 * would read as the peer's end); a handle that does not fit its fields is an
 * OverflowError.  Buffers are held exported for the call, so a bytearray
 * cannot be resized under a recv that runs without the lock.
 * tmem.wire.sockio falls back to the socket module where this is not built.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <sys/socket.h>
#include <stdint.h>
#include <sys/uio.h>

static int as_fd(PyObject *arg, int *fd) {
    long value = PyLong_AsLong(arg);
    if (value == -1 && PyErr_Occurred()) return -1;
    if (value < 0 || value > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "a file descriptor must be a non-negative int");
        return -1;
    }
    *fd = (int)value;
    return 0;
}

static int as_offset(PyObject *arg, Py_ssize_t *out) {
    Py_ssize_t value = PyLong_AsSsize_t(arg);
    if (value == -1 && PyErr_Occurred()) return -1;
    *out = value;
    return 0;
}

static PyObject *sockio_recv_into(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    int fd;
    Py_ssize_t start;
    Py_buffer buf;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "recv_into(fd, buffer, start) takes 3 arguments");
        return NULL;
    }
    if (as_fd(args[0], &fd) < 0 || as_offset(args[2], &start) < 0) return NULL;
    if (PyObject_GetBuffer(args[1], &buf, PyBUF_WRITABLE) < 0) return NULL;
    if (start < 0 || start >= buf.len) {
        PyBuffer_Release(&buf);
        PyErr_Format(PyExc_ValueError, "no room to receive at %zd of a %zd-byte buffer", start,
                     buf.len);
        return NULL;
    }
    ssize_t n;
    for (;;) {
        n = recv(fd, (char *)buf.buf + start, (size_t)(buf.len - start), MSG_DONTWAIT);
        if (n >= 0 || errno != EINTR) break;
        if (PyErr_CheckSignals() < 0) {
            PyBuffer_Release(&buf);
            return NULL;
        }
    }
    PyBuffer_Release(&buf);
    if (n < 0) return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromSsize_t(n);
}

static PyObject *sockio_send(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    int fd;
    Py_ssize_t start, stop;
    Py_buffer buf;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "send(fd, buffer, start, stop) takes 4 arguments");
        return NULL;
    }
    if (as_fd(args[0], &fd) < 0 || as_offset(args[2], &start) < 0 ||
        as_offset(args[3], &stop) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[1], &buf, PyBUF_SIMPLE) < 0) return NULL;
    if (start < 0 || start > stop || stop > buf.len) {
        PyBuffer_Release(&buf);
        PyErr_Format(PyExc_ValueError, "bytes %zd to %zd are not within a %zd-byte buffer", start,
                     stop, buf.len);
        return NULL;
    }
    ssize_t n;
    for (;;) {
        n = send(fd, (char *)buf.buf + start, (size_t)(stop - start), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n >= 0 || errno != EINTR) break;
        if (PyErr_CheckSignals() < 0) {
            PyBuffer_Release(&buf);
            return NULL;
        }
    }
    PyBuffer_Release(&buf);
    if (n < 0) return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromSsize_t(n);
}

/* Send both buffers whole on a blocking socket; 0, or -1 with an exception set. */
static int send_all(int fd, Py_buffer *head, Py_buffer *body) {
    struct iovec iov[2] = {
        {.iov_base = head->buf, .iov_len = (size_t)head->len},
        {.iov_base = body->buf, .iov_len = (size_t)body->len},
    };
    struct iovec *at = iov;
    int left = body->len ? 2 : 1;
    struct msghdr message = {0};
    while (left) {
        message.msg_iov = at;
        message.msg_iovlen = (size_t)left;
        ssize_t n;
        Py_BEGIN_ALLOW_THREADS
        n = sendmsg(fd, &message, MSG_NOSIGNAL);
        Py_END_ALLOW_THREADS
        if (n < 0) {
            if (errno == EINTR) {
                if (PyErr_CheckSignals() < 0) return -1;
                continue;
            }
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        size_t sent = (size_t)n;
        while (left && sent >= at->iov_len) {
            sent -= at->iov_len;
            at++;
            left--;
        }
        if (left) {
            at->iov_base = (char *)at->iov_base + sent;
            at->iov_len -= sent;
        }
    }
    return 0;
}

/* The client's single-page requests (tmem.wire.messages: a PUT or GET frame is the
 * 8-byte header op:u8 status:u8 tag:u16 length:u32, then the handle pool:u32
 * oid:24 bytes index:u32, then a PUT's page; all little-endian). */
#define OP_PUT 4
#define OP_GET 5
#define HEADER_SIZE 8
#define HANDLE_SIZE 32

static void put_u32(unsigned char *at, uint32_t value) {
    for (int i = 0; i < 4; i++) at[i] = (unsigned char)(value >> (8 * i));
}

static uint32_t get_u32(const unsigned char *at) {
    return (uint32_t)at[0] | (uint32_t)at[1] << 8 | (uint32_t)at[2] << 16 | (uint32_t)at[3] << 24;
}

static int as_u32(PyObject *arg, uint32_t *out, const char *what) {
    unsigned long value = PyLong_AsUnsignedLong(arg);
    if (value == (unsigned long)-1 && PyErr_Occurred()) return -1;
    if (value > 0xFFFFFFFFUL) {
        PyErr_Format(PyExc_OverflowError, "%s does not fit 32 bits", what);
        return -1;
    }
    *out = (uint32_t)value;
    return 0;
}

/* A request's header and handle, packed into ``frame`` (HEADER_SIZE + HANDLE_SIZE bytes). */
static int pack_request(unsigned char *frame, int op, Py_ssize_t page, PyObject *const *args) {
    uint32_t pool, index;
    if (as_u32(args[1], &pool, "a pool id") < 0 || as_u32(args[3], &index, "an index") < 0)
        return -1;
    if (!PyLong_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "an object id must be an int");
        return -1;
    }
    if (HANDLE_SIZE + page > 0xFFFFFFFFLL) {
        PyErr_SetString(PyExc_OverflowError, "a page does not fit a frame");
        return -1;
    }
    frame[0] = (unsigned char)op;
    frame[1] = frame[2] = frame[3] = 0;
    put_u32(frame + 4, (uint32_t)(HANDLE_SIZE + page));
    put_u32(frame + 8, pool);
    if (_PyLong_AsByteArray((PyLongObject *)args[2], frame + 12, 24, 1, 0) < 0) return -1;
    put_u32(frame + 36, index);
    return 0;
}

/* Receive on a blocking socket into ``into`` until it holds a whole frame (or is
 * full, or the peer closed); the bytes received, or -1 with an exception set. */
static Py_ssize_t recv_frame(int fd, Py_buffer *into) {
    unsigned char *buf = into->buf;
    Py_ssize_t got = 0;
    for (;;) {
        if (got >= HEADER_SIZE && got >= HEADER_SIZE + (Py_ssize_t)get_u32(buf + 4)) break;
        if (got == into->len) break; /* a frame larger than the buffer: the caller's */
        ssize_t n;
        Py_BEGIN_ALLOW_THREADS
        n = recv(fd, buf + got, (size_t)(into->len - got), 0);
        Py_END_ALLOW_THREADS
        if (n == 0) break;
        if (n < 0) {
            if (errno == EINTR) {
                if (PyErr_CheckSignals() < 0) return -1;
                continue;
            }
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        got += n;
    }
    return got;
}

/* The body length of the one whole reply to ``op`` of status 0 that ``buf`` holds
 * exactly, or -1 (anything else: an error reply, another op, a partial frame). */
static Py_ssize_t plain_reply(const unsigned char *buf, Py_ssize_t got, int op) {
    if (got < HEADER_SIZE || buf[0] != op || buf[1] != 0) return -1;
    Py_ssize_t length = (Py_ssize_t)get_u32(buf + 4);
    return got == HEADER_SIZE + length ? length : -1;
}

static PyObject *sockio_put(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    int fd;
    Py_buffer page, into;
    unsigned char frame[HEADER_SIZE + HANDLE_SIZE];
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "put(fd, pool, oid, index, page, buffer) takes 6 arguments");
        return NULL;
    }
    if (as_fd(args[0], &fd) < 0) return NULL;
    if (PyObject_GetBuffer(args[4], &page, PyBUF_SIMPLE) < 0) return NULL;
    if (PyObject_GetBuffer(args[5], &into, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&page);
        return NULL;
    }
    PyObject *result = NULL;
    if (into.len < HEADER_SIZE + 1) {
        PyErr_SetString(PyExc_ValueError, "no room to receive the reply");
        goto done;
    }
    if (pack_request(frame, OP_PUT, page.len, args) < 0) goto done;
    Py_buffer head = {.buf = frame, .len = sizeof frame};
    if (send_all(fd, &head, &page) < 0) goto done;
    Py_ssize_t got = recv_frame(fd, &into);
    if (got < 0) goto done;
    const unsigned char *buf = into.buf;
    if (plain_reply(buf, got, OP_PUT) == 1 && buf[HEADER_SIZE] <= 1)
        result = PyLong_FromLong(buf[HEADER_SIZE]);
    else
        result = PyLong_FromSsize_t(-1 - got);
done:
    PyBuffer_Release(&into);
    PyBuffer_Release(&page);
    return result;
}

static PyObject *sockio_get(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    int fd;
    Py_buffer into;
    unsigned char frame[HEADER_SIZE + HANDLE_SIZE];
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "get(fd, pool, oid, index, buffer) takes 5 arguments");
        return NULL;
    }
    if (as_fd(args[0], &fd) < 0) return NULL;
    if (PyObject_GetBuffer(args[4], &into, PyBUF_WRITABLE) < 0) return NULL;
    PyObject *result = NULL;
    if (into.len < HEADER_SIZE) {
        PyErr_SetString(PyExc_ValueError, "no room to receive the reply");
        goto done;
    }
    if (pack_request(frame, OP_GET, 0, args) < 0) goto done;
    Py_buffer head = {.buf = frame, .len = sizeof frame}, none = {.buf = NULL, .len = 0};
    if (send_all(fd, &head, &none) < 0) goto done;
    Py_ssize_t got = recv_frame(fd, &into);
    if (got < 0) goto done;
    Py_ssize_t length = plain_reply(into.buf, got, OP_GET);
    if (length > 0)
        result = PyBytes_FromStringAndSize((const char *)into.buf + HEADER_SIZE, length);
    else if (length == 0)
        result = Py_NewRef(Py_None);
    else
        result = PyLong_FromSsize_t(-1 - got);
done:
    PyBuffer_Release(&into);
    return result;
}

static PyMethodDef methods[] = {
    {"recv_into", (PyCFunction)(void (*)(void))sockio_recv_into, METH_FASTCALL,
     "recv_into(fd, buffer, start) -> int: one recv into buffer[start:] that never waits."},
    {"send", (PyCFunction)(void (*)(void))sockio_send, METH_FASTCALL,
     "send(fd, buffer, start, stop) -> int: one send of buffer[start:stop] that never waits."},
    {"put", (PyCFunction)(void (*)(void))sockio_put, METH_FASTCALL,
     "put(fd, pool, oid, index, page, buffer) -> int: a PUT sent whole on a blocking socket"
     " and its reply received into buffer: the answer (0 or 1) of a plain reply, else"
     " -1 - the bytes received (an error reply, say: the caller reads them)."},
    {"get", (PyCFunction)(void (*)(void))sockio_get, METH_FASTCALL,
     "get(fd, pool, oid, index, buffer) -> bytes | None | int: a GET and its reply, as put:"
     " the page, None for a miss, else -1 - the bytes received."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "tmem.wire._sockio",
    "The daemon's and the remote client's socket calls (see tmem.wire.sockio).", -1, methods,
};

PyMODINIT_FUNC PyInit__sockio(void) { return PyModule_Create(&module); }
