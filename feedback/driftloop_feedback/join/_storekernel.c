/* The pending store's two per-row loops in C: ``take_many`` (probe the hash index, read the row back,
 * free its slot) and ``add_rows`` (fill a request's rows into free slots, the arena and the index).
 *
 * The store's state stays what store.py keeps and snapshots: ``array.array`` columns, one bytearray
 * arena, the hash index's key and slot arrays. These functions read and write those buffers in place
 * and do exactly what the Python loops beside them do (PendingStore._take_many_py and the Python loop of
 * add_rows, the reference), with every index bounds-checked: a state that does not hold together raises
 * ValueError instead of reading outside a buffer. The callers keep the counters (live, used, count,
 * dead bytes) and the cases these do not cover (growing the store, rehashing the index).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define INDEX_EMPTY (-1)
#define INDEX_TOMBSTONE (-2)
#define UUID_LEN 0xFFFF

/* The columns, in PendingStore._take_cols order. */
enum { C_KEY, C_RID_LEN, C_ROW, C_OFFSET, C_N, C_ASSET, C_PRED, C_EVENT, C_TARGET, C_ARRIVED, C_END, C_VER, N_COLS };
static const Py_ssize_t col_itemsize[N_COLS] = {8, 2, 4, 8, 2, 4, 8, 8, 8, 8, 2, 2};

typedef struct {
    Py_buffer col[N_COLS];
    int held;
    Py_ssize_t n_slots;
} columns;

static void release_columns(columns *c) {
    for (int i = 0; i < c->held; i++) {
        PyBuffer_Release(&c->col[i]);
    }
    c->held = 0;
}

static int get_columns(PyObject *tuple, columns *c) {
    c->held = 0;
    if (!PyTuple_Check(tuple) || PyTuple_GET_SIZE(tuple) != N_COLS) {
        PyErr_SetString(PyExc_TypeError, "cols must be the store's 12 columns, in _take_cols order");
        return -1;
    }
    for (int i = 0; i < N_COLS; i++) {
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(tuple, i), &c->col[i], PyBUF_WRITABLE) < 0) {
            release_columns(c);
            return -1;
        }
        c->held++;
        if (c->col[i].itemsize != col_itemsize[i] || c->col[i].len % col_itemsize[i]) {
            PyErr_Format(PyExc_TypeError, "column %d has items of %zd bytes, not %zd", i, c->col[i].itemsize,
                         col_itemsize[i]);
            release_columns(c);
            return -1;
        }
        Py_ssize_t n = c->col[i].len / col_itemsize[i];
        if (i == 0 || n < c->n_slots) {
            c->n_slots = n;
        }
    }
    return 0;
}

#define COL(c, i, type) ((type *)(c)->col[i].buf)

/* The request id as the arena holds it: a canonical UUID (lower-case hex, dashes at 8, 13, 18 and 23:
 * store._is_uuid) as its 16 bytes with the marker UUID_LEN, anything else as its UTF-8 bytes and
 * their length. `out` must hold 16 bytes; *raw points at them or at the UTF-8. */
static int pack_request_id(PyObject *request_id, unsigned char out[16], const unsigned char **raw,
                           Py_ssize_t *size, long *kind) {
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(request_id, &n);
    if (s == NULL) {
        return -1;
    }
    if (n == 36 && s[8] == '-' && s[13] == '-' && s[18] == '-' && s[23] == '-') {
        int k = 0, ok = 1;
        for (Py_ssize_t i = 0; i < 36 && ok; i++) {
            if (i == 8 || i == 13 || i == 18 || i == 23) {
                continue;
            }
            char ch = s[i];
            int v = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
            if (v < 0) {
                ok = 0;
                break;
            }
            if (k & 1) {
                out[k / 2] |= (unsigned char)v;
            } else {
                out[k / 2] = (unsigned char)(v << 4);
            }
            k++;
        }
        if (ok) {
            *raw = out;
            *size = 16;
            *kind = UUID_LEN;
            return 0;
        }
    }
    if (n >= UUID_LEN) {
        PyErr_SetString(PyExc_ValueError, "a request id must be shorter than 65535 bytes");
        return -1;
    }
    *raw = (const unsigned char *)s;
    *size = n;
    *kind = (long)n;
    return 0;
}

static PyObject *string_at(PyObject *list, Py_ssize_t i) {
    if (!PyList_Check(list) || i < 0 || i >= PyList_GET_SIZE(list)) {
        PyErr_SetString(PyExc_ValueError, "the store's interned value is missing");
        return NULL;
    }
    return Py_NewRef(PyList_GET_ITEM(list, i));
}

/* take_many(wanted, index_keys, index_slots, cols, arena, endpoints, versions, assets, record_type)
 *   -> (found, freed slots as int64 bytes, dead arena bytes) */
static PyObject *take_many(PyObject *module, PyObject *args) {
    PyObject *wanted, *cols_obj, *endpoints, *versions, *assets;
    PyTypeObject *record_type;
    Py_buffer keys_buf, slots_buf, arena;
    if (!PyArg_ParseTuple(args, "Ow*w*Oy*OOOO!:take_many", &wanted, &keys_buf, &slots_buf, &cols_obj, &arena,
                          &endpoints, &versions, &assets, &PyType_Type, &record_type)) {
        return NULL;
    }
    PyObject *seq = NULL, *out = NULL, *freed = NULL, *result = NULL;
    columns c;
    c.held = 0;
    if (!PyType_IsSubtype(record_type, &PyTuple_Type) || record_type->tp_dictoffset != 0 ||
        record_type->tp_basicsize != PyTuple_Type.tp_basicsize) {
        PyErr_SetString(PyExc_TypeError, "record_type must be a NamedTuple class");
        goto done;
    }
    Py_ssize_t size_index = keys_buf.len / 8;
    if (keys_buf.itemsize != 8 || slots_buf.itemsize != 4 || slots_buf.len / 4 != size_index || size_index == 0 ||
        (size_index & (size_index - 1))) {
        PyErr_SetString(PyExc_ValueError, "the index arrays must be uint64 keys and int32 slots of one power-of-two size");
        goto done;
    }
    if (get_columns(cols_obj, &c) < 0) {
        goto done;
    }
    seq = PySequence_Fast(wanted, "wanted must be a sequence of (request_id, row, key)");
    if (seq == NULL) {
        goto done;
    }
    Py_ssize_t n_wanted = PySequence_Fast_GET_SIZE(seq);
    out = PyList_New(n_wanted);
    freed = PyBytes_FromStringAndSize(NULL, n_wanted * 8);
    if (out == NULL || freed == NULL) {
        goto done;
    }
    int64_t *freed_slots = (int64_t *)PyBytes_AS_STRING(freed);
    Py_ssize_t n_freed = 0;
    long long dead = 0;
    uint64_t *keys = keys_buf.buf;
    int32_t *slots = slots_buf.buf;
    uint64_t mask = (uint64_t)size_index - 1;
    const unsigned char *bytes = arena.buf;
    for (Py_ssize_t w = 0; w < n_wanted; w++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, w);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) < 3) {
            PyErr_SetString(PyExc_TypeError, "each wanted item must be a (request_id, row, key) tuple");
            goto done;
        }
        PyObject *request_id = PyTuple_GET_ITEM(item, 0), *row_obj = PyTuple_GET_ITEM(item, 1);
        uint64_t key = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(item, 2));
        long long row = PyLong_AsLongLong(row_obj);
        if (PyErr_Occurred()) {
            goto done;
        }
        unsigned char uuid[16];
        const unsigned char *packed;
        Py_ssize_t size;
        long kind;
        if (pack_request_id(request_id, uuid, &packed, &size, &kind) < 0) {
            goto done;
        }
        uint64_t pos = key & mask;
        int32_t slot;
        uint64_t start = 0;
        Py_ssize_t probes = 0;
        for (;;) {
            slot = slots[pos];
            if (slot == INDEX_EMPTY) {
                break;
            }
            if (slot >= 0 && keys[pos] == key) {
                if (slot >= c.n_slots) {
                    PyErr_SetString(PyExc_ValueError, "the index files a slot past the store's columns");
                    goto done;
                }
                start = COL(&c, C_OFFSET, uint64_t)[slot];
                if ((long)COL(&c, C_RID_LEN, uint16_t)[slot] == kind && (long long)COL(&c, C_ROW, uint32_t)[slot] == row &&
                    start <= (uint64_t)arena.len && (uint64_t)size <= (uint64_t)arena.len - start &&
                    memcmp(bytes + start, packed, (size_t)size) == 0) {
                    break;
                }
            }
            pos = (pos + 1) & mask;
            if (++probes > size_index) {
                PyErr_SetString(PyExc_ValueError, "the index has no empty position");
                goto done;
            }
        }
        if (slot == INDEX_EMPTY) {
            PyList_SET_ITEM(out, w, Py_NewRef(Py_None));
            continue;
        }
        uint64_t n = COL(&c, C_N, uint16_t)[slot];
        uint64_t at = start + (uint64_t)size;
        if (8 * n > (uint64_t)arena.len - at) {
            PyErr_SetString(PyExc_ValueError, "a pending prediction's features run past the arena");
            goto done;
        }
        PyObject *features = PyTuple_New((Py_ssize_t)n);
        if (features == NULL) {
            goto done;
        }
        for (uint64_t f = 0; f < n; f++) {
            double value;
            memcpy(&value, bytes + at + 8 * f, 8); /* little-endian, as struct "<d" (x86-64) */
            PyObject *number = PyFloat_FromDouble(value);
            if (number == NULL) {
                Py_DECREF(features);
                goto done;
            }
            PyTuple_SET_ITEM(features, (Py_ssize_t)f, number);
        }
        int32_t asset = COL(&c, C_ASSET, int32_t)[slot];
        PyObject *items[10] = {
            Py_NewRef(request_id),
            Py_NewRef(row_obj),
            features,
            PyFloat_FromDouble(COL(&c, C_PRED, double)[slot]),
            PyFloat_FromDouble(COL(&c, C_EVENT, double)[slot]),
            PyFloat_FromDouble(COL(&c, C_TARGET, double)[slot]),
            PyFloat_FromDouble(COL(&c, C_ARRIVED, double)[slot]),
            string_at(endpoints, COL(&c, C_END, uint16_t)[slot]),
            string_at(versions, COL(&c, C_VER, uint16_t)[slot]),
            asset < 0 ? Py_NewRef(Py_None) : string_at(assets, asset),
        };
        PyObject *record = NULL;
        int complete = 1;
        for (int i = 0; i < 10; i++) {
            complete &= items[i] != NULL;
        }
        if (complete) {
            record = record_type->tp_alloc(record_type, 10);
        }
        if (record == NULL) {
            for (int i = 0; i < 10; i++) {
                Py_XDECREF(items[i]);
            }
            goto done;
        }
        for (int i = 0; i < 10; i++) {
            PyTuple_SET_ITEM(record, i, items[i]);
        }
        PyList_SET_ITEM(out, w, record);
        slots[pos] = INDEX_TOMBSTONE;
        COL(&c, C_KEY, uint64_t)[slot] = 0;
        dead += size + 8 * (long long)n;
        freed_slots[n_freed++] = slot;
    }
    if (_PyBytes_Resize(&freed, n_freed * 8) < 0) {
        goto done;
    }
    result = Py_BuildValue("(OOL)", out, freed, dead);
done:
    Py_XDECREF(seq);
    Py_XDECREF(out);
    Py_XDECREF(freed);
    release_columns(&c);
    PyBuffer_Release(&keys_buf);
    PyBuffer_Release(&slots_buf);
    PyBuffer_Release(&arena);
    return result;
}

static int as_fast_list(PyObject *seq, Py_ssize_t n, const char *what, PyObject **fast) {
    *fast = PySequence_Fast(seq, what);
    if (*fast == NULL) {
        return -1;
    }
    if (PySequence_Fast_GET_SIZE(*fast) < n) {
        PyErr_Format(PyExc_ValueError, "%s: fewer values than rows", what);
        return -1;
    }
    return 0;
}

/* add_rows(slots, packed_rid, rid_len, rows, keys, features, predictions, event_times, arrived,
 *          endpoint, version, cols, arena, index_keys, index_slots) -> index positions newly used
 * `slots`: the free slots to fill, in order (int64 bytes); `features`: the rows' float64 values,
 * little-endian, row after row (F per row). The caller has made sure the index has room for all. */
static PyObject *add_rows(PyObject *module, PyObject *args) {
    Py_buffer slots_in, rid, feats, keys_buf, index_slots_buf;
    PyObject *rows, *keys, *predictions, *event_times, *cols_obj, *arena;
    long rid_len, endpoint, version;
    double arrived;
    if (!PyArg_ParseTuple(args, "y*y*lOOy*OOdllOO!w*w*:add_rows", &slots_in, &rid, &rid_len, &rows, &keys, &feats,
                          &predictions, &event_times, &arrived, &endpoint, &version, &cols_obj, &PyByteArray_Type,
                          &arena, &keys_buf, &index_slots_buf)) {
        return NULL;
    }
    PyObject *rows_f = NULL, *keys_f = NULL, *pred_f = NULL, *times_f = NULL, *result = NULL;
    columns c;
    c.held = 0;
    Py_ssize_t k = slots_in.len / 8;
    Py_ssize_t size_index = keys_buf.len / 8;
    if (keys_buf.itemsize != 8 || index_slots_buf.itemsize != 4 || index_slots_buf.len / 4 != size_index ||
        size_index == 0 || (size_index & (size_index - 1))) {
        PyErr_SetString(PyExc_ValueError, "the index arrays must be uint64 keys and int32 slots of one power-of-two size");
        goto done;
    }
    if (k == 0 || feats.len % (8 * k) || endpoint < 0 || endpoint > 0xFFFF || version < 0 || version > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "features must hold the same number of float64 values for each row");
        goto done;
    }
    Py_ssize_t n_features = feats.len / (8 * k);
    if (n_features > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "at most 65535 features per row");
        goto done;
    }
    if (as_fast_list(rows, k, "rows", &rows_f) < 0 || as_fast_list(keys, k, "keys", &keys_f) < 0 ||
        as_fast_list(predictions, k, "predictions", &pred_f) < 0 ||
        as_fast_list(event_times, k, "event_times", &times_f) < 0) {
        goto done;
    }
    if (get_columns(cols_obj, &c) < 0) {
        goto done;
    }
    const int64_t *slots = slots_in.buf;
    Py_ssize_t stride = rid.len + 8 * n_features;
    Py_ssize_t first = PyByteArray_GET_SIZE(arena);
    /* Every value is read and checked before anything is written. */
    uint64_t *key_values = PyMem_Malloc(sizeof(uint64_t) * (size_t)k);
    double *numbers = PyMem_Malloc(sizeof(double) * 2 * (size_t)k);
    uint32_t *row_values = PyMem_Malloc(sizeof(uint32_t) * (size_t)k);
    if (key_values == NULL || numbers == NULL || row_values == NULL) {
        PyErr_NoMemory();
        goto free_scratch;
    }
    for (Py_ssize_t j = 0; j < k; j++) {
        if (slots[j] < 0 || slots[j] >= c.n_slots) {
            PyErr_SetString(PyExc_ValueError, "a free slot lies outside the store's columns");
            goto free_scratch;
        }
        key_values[j] = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(keys_f, j));
        long long row = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(rows_f, j));
        numbers[2 * j] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(pred_f, j));
        numbers[2 * j + 1] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(times_f, j));
        if (PyErr_Occurred()) {
            goto free_scratch;
        }
        if (row < 0 || row > 0xFFFFFFFFLL) {
            PyErr_SetString(PyExc_OverflowError, "a row number must fit in 32 bits");
            goto free_scratch;
        }
        row_values[j] = (uint32_t)row;
    }
    if (PyByteArray_Resize(arena, first + k * stride) < 0) {
        goto free_scratch;
    }
    unsigned char *w = (unsigned char *)PyByteArray_AS_STRING(arena) + first;
    const unsigned char *f = feats.buf;
    uint64_t *index_keys = keys_buf.buf;
    int32_t *index_slots = index_slots_buf.buf;
    uint64_t mask = (uint64_t)size_index - 1;
    long used = 0;
    for (Py_ssize_t j = 0; j < k; j++) {
        int64_t slot = slots[j];
        memcpy(w, rid.buf, (size_t)rid.len);
        memcpy(w + rid.len, f + 8 * n_features * j, (size_t)(8 * n_features));
        w += stride;
        COL(&c, C_KEY, uint64_t)[slot] = key_values[j];
        COL(&c, C_EVENT, double)[slot] = numbers[2 * j + 1];
        COL(&c, C_TARGET, double)[slot] = 0.0;
        COL(&c, C_ARRIVED, double)[slot] = arrived;
        COL(&c, C_PRED, double)[slot] = numbers[2 * j];
        COL(&c, C_ASSET, int32_t)[slot] = -1;
        COL(&c, C_END, uint16_t)[slot] = (uint16_t)endpoint;
        COL(&c, C_VER, uint16_t)[slot] = (uint16_t)version;
        COL(&c, C_ROW, uint32_t)[slot] = row_values[j];
        COL(&c, C_OFFSET, uint64_t)[slot] = (uint64_t)(first + j * stride);
        COL(&c, C_RID_LEN, uint16_t)[slot] = (uint16_t)rid_len;
        COL(&c, C_N, uint16_t)[slot] = (uint16_t)n_features;
        uint64_t pos = key_values[j] & mask;
        Py_ssize_t probes = 0;
        while (index_slots[pos] >= 0) { /* the caller leaves the index at most half full */
            pos = (pos + 1) & mask;
            if (++probes > size_index) { /* never, unless the index was broken before this call */
                PyErr_SetString(PyExc_ValueError, "the index has no free position");
                goto free_scratch;
            }
        }
        if (index_slots[pos] == INDEX_EMPTY) {
            used++;
        }
        index_keys[pos] = key_values[j];
        index_slots[pos] = (int32_t)slot;
    }
    result = PyLong_FromLong(used);
free_scratch:
    PyMem_Free(key_values);
    PyMem_Free(numbers);
    PyMem_Free(row_values);
done:
    Py_XDECREF(rows_f);
    Py_XDECREF(keys_f);
    Py_XDECREF(pred_f);
    Py_XDECREF(times_f);
    release_columns(&c);
    PyBuffer_Release(&slots_in);
    PyBuffer_Release(&rid);
    PyBuffer_Release(&feats);
    PyBuffer_Release(&keys_buf);
    PyBuffer_Release(&index_slots_buf);
    return result;
}

static PyMethodDef methods[] = {
    {"take_many", take_many, METH_VARARGS,
     "take_many(wanted, index_keys, index_slots, cols, arena, endpoints, versions, assets, record_type)"
     " -> (found, freed slots as int64 bytes, dead arena bytes)"},
    {"add_rows", add_rows, METH_VARARGS,
     "add_rows(slots, packed_rid, rid_len, rows, keys, features, predictions, event_times, arrived, "
     "endpoint, version, cols, arena, index_keys, index_slots) -> index positions newly used"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "driftloop_feedback.join._storekernel",
    "The pending store's take and add loops in C (see store.py).", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__storekernel(void) { return PyModule_Create(&module_def); }
