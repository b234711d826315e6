/* The embedded host's lock: CPython's own thread lock behind a cheaper call.
 *
 * threading.Lock's acquire() parses (blocking=True, timeout=-1) with
 * PyArg_ParseTupleAndKeywords on every call, which costs more than the rest of
 * a compiled page call's wrapper.  This type holds the same PyThread lock and
 * takes acquire() without arguments by the fast-call convention; with
 * arguments, and when it must wait, it does what threading.Lock does: waits
 * with the interpreter's lock released, runs signal handlers when the wait is
 * interrupted, honours timeouts, refuses a timeout on a non-blocking call.
 * tmem.hostlock falls back to threading.Lock where this module was not built.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>
#include <time.h>

typedef struct {
    PyObject_HEAD
    PyThread_type_lock lock;
    char held;
} Lock;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* 1: acquired; 0: not within ``timeout`` seconds (-1: no limit); -1: error set. */
static int wait_for(Lock *self, double timeout) {
    PyLockStatus r = PyThread_acquire_lock_timed(self->lock, 0, 0);
    if (r == PY_LOCK_ACQUIRED) return 1;
    if (timeout == 0) return 0;
    double deadline = timeout > 0 ? now_seconds() + timeout : 0;
    PY_TIMEOUT_T us = timeout > 0 ? (PY_TIMEOUT_T)(timeout * 1e6) : -1;
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        r = PyThread_acquire_lock_timed(self->lock, us, 1);
        Py_END_ALLOW_THREADS
        if (r != PY_LOCK_INTR) break;
        if (Py_MakePendingCalls() < 0) return -1; /* a signal handler raised */
        if (timeout > 0) {
            double left = deadline - now_seconds();
            if (left <= 0) return PyThread_acquire_lock_timed(self->lock, 0, 0) == PY_LOCK_ACQUIRED;
            us = (PY_TIMEOUT_T)(left * 1e6);
        }
    }
    return r == PY_LOCK_ACQUIRED;
}

static PyObject *acquired(Lock *self, int got) {
    if (got < 0) return NULL;
    if (got) self->held = 1;
    return PyBool_FromLong(got);
}

static PyObject *lock_acquire(Lock *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames) {
    if (nargs == 0 && kwnames == NULL) { /* the host's every call */
        if (PyThread_acquire_lock_timed(self->lock, 0, 0) == PY_LOCK_ACQUIRED) {
            self->held = 1;
            Py_RETURN_TRUE;
        }
        return acquired(self, wait_for(self, -1));
    }
    PyObject *blocking_arg = NULL, *timeout_arg = NULL;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "acquire() takes at most 2 arguments");
        return NULL;
    }
    if (nargs > 0) blocking_arg = args[0];
    if (nargs > 1) timeout_arg = args[1];
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        PyObject **slot;
        if (PyUnicode_CompareWithASCIIString(name, "blocking") == 0) slot = &blocking_arg;
        else if (PyUnicode_CompareWithASCIIString(name, "timeout") == 0) slot = &timeout_arg;
        else {
            PyErr_Format(PyExc_TypeError, "acquire() got an unexpected keyword argument %R", name);
            return NULL;
        }
        if (*slot != NULL) {
            PyErr_Format(PyExc_TypeError, "acquire() got multiple values for argument %R", name);
            return NULL;
        }
        *slot = args[nargs + i];
    }
    int blocking = 1;
    if (blocking_arg != NULL && (blocking = PyObject_IsTrue(blocking_arg)) < 0) return NULL;
    double timeout = -1;
    if (timeout_arg != NULL) {
        timeout = PyFloat_AsDouble(timeout_arg);
        if (timeout == -1 && PyErr_Occurred()) return NULL;
    }
    if (!blocking && timeout != -1) {
        PyErr_SetString(PyExc_ValueError, "can't specify a timeout for a non-blocking call");
        return NULL;
    }
    if (timeout < 0 && timeout != -1) {
        PyErr_SetString(PyExc_ValueError, "timeout value must be a non-negative number");
        return NULL;
    }
    if (timeout > (double)PY_TIMEOUT_MAX / 1e6) {
        PyErr_SetString(PyExc_OverflowError, "timeout value is too large");
        return NULL;
    }
    return acquired(self, wait_for(self, blocking ? timeout : 0));
}

static PyObject *lock_release(Lock *self, PyObject *Py_UNUSED(ignored)) {
    if (!self->held) {
        PyErr_SetString(PyExc_RuntimeError, "release unlocked lock");
        return NULL;
    }
    self->held = 0;
    PyThread_release_lock(self->lock);
    Py_RETURN_NONE;
}

static PyObject *lock_enter(Lock *self, PyObject *Py_UNUSED(ignored)) {
    return lock_acquire(self, NULL, 0, NULL);
}

static PyObject *lock_exit(Lock *self, PyObject *const *args, Py_ssize_t nargs) {
    return lock_release(self, NULL);
}

static PyObject *lock_locked(Lock *self, PyObject *Py_UNUSED(ignored)) {
    return PyBool_FromLong(self->held);
}

static PyObject *lock_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    if (PyTuple_GET_SIZE(args) != 0 || (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0)) {
        PyErr_SetString(PyExc_TypeError, "Lock() takes no arguments");
        return NULL;
    }
    Lock *self = (Lock *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->lock = PyThread_allocate_lock();
    self->held = 0;
    if (self->lock == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

static void lock_dealloc(Lock *self) {
    if (self->lock != NULL) {
        if (self->held) PyThread_release_lock(self->lock);
        PyThread_free_lock(self->lock);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *lock_repr(Lock *self) {
    return PyUnicode_FromFormat("<%s tmem._hostlock.Lock object at %p>",
                                self->held ? "locked" : "unlocked", self);
}

static PyMethodDef lock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))lock_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire(blocking=True, timeout=-1) -> bool, as threading.Lock.acquire"},
    {"release", (PyCFunction)lock_release, METH_NOARGS, "Release the lock."},
    {"locked", (PyCFunction)lock_locked, METH_NOARGS, "Whether the lock is held."},
    {"__enter__", (PyCFunction)lock_enter, METH_NOARGS, "Acquire the lock."},
    {"__exit__", (PyCFunction)(void (*)(void))lock_exit, METH_FASTCALL, "Release the lock."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject LockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tmem._hostlock.Lock",
    .tp_basicsize = sizeof(Lock),
    .tp_dealloc = (destructor)lock_dealloc,
    .tp_repr = (reprfunc)lock_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A thread lock with threading.Lock's methods and a cheaper acquire().",
    .tp_methods = lock_methods,
    .tp_new = lock_new,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "tmem._hostlock",
    "The embedded host's lock (see tmem.hostlock).", -1, NULL,
};

PyMODINIT_FUNC PyInit__hostlock(void) {
    if (PyType_Ready(&LockType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&LockType);
    if (PyModule_AddObject(m, "Lock", (PyObject *)&LockType) < 0) {
        Py_DECREF(&LockType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
