/* The ingress's fast lane for HTTP/1.1 messages: one call parses a whole, plain message.
 *
 * httptools (llhttp) calls back into Python once per part of a message: the URL, each header, the
 * body, the end. On the ingress's request path those calls cost more than the parsing itself. The
 * two functions here parse a complete message at the start of a buffer in one call and return its
 * parts, for the messages the ingress sees every time (a V2 inference request from a client, an
 * MLServer answer), and only those:
 *
 *   parse_request(data, offset, max_body) -> (method, path, headers, body, keep_alive, end) | None
 *   parse_response(data, offset) -> (status, content_type, body, keep_alive, end) | None
 *
 * and the Seldon-Puid of a request that comes without one (a random UUID, version 4, in its usual
 * text form, from 4 KiB of getrandom() at a time; a forked child starts a pool of its own):
 *
 *   new_puid() -> str
 *
 * None means "not here": the message is incomplete, or uses anything outside a strict subset of
 * HTTP/1.1 (chunked or other transfer codings, Expect, Upgrade, a Connection header other than
 * close / keep-alive, obs-fold, obs-text, bare LF, empty or padded header values, repeated
 * Content-Length or Connection, a method outside the common seven, a body over max_body, a bodiless
 * status). The caller then gives the bytes to httptools, which parses or rejects them as before. So
 * this code never has to reject anything: what it accepts is a subset of what llhttp accepts, and
 * it must return what llhttp would (a differential test holds it to that).
 *
 * Every read is bounds-checked against the buffer's length.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>

#define MAX_HEADERS 64
#define MAX_NAME 64
#define MAX_CONTENT_LENGTH_DIGITS 15

static unsigned char TCHAR[256];   /* RFC 9110 token characters */
static unsigned char PATHCHAR[256]; /* origin-form target characters accepted here (no '#') */
static unsigned char VCHAR[256];   /* header value characters accepted here: visible ASCII, SP, HTAB */

static void init_tables(void) {
    const char *specials = "!#$%&'*+-.^_`|~";
    const char *path_specials = "-._~!$&'()*+,;=:@/?%";
    for (int c = 0; c < 256; c++) {
        int alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        TCHAR[c] = alnum || (c != 0 && strchr(specials, c) != NULL);
        PATHCHAR[c] = alnum || (c != 0 && strchr(path_specials, c) != NULL);
        VCHAR[c] = (c >= 0x21 && c <= 0x7e) || c == ' ' || c == '\t';
    }
}

enum { CONN_NONE = 0, CONN_CLOSE = 1, CONN_KEEP_ALIVE = 2 };

typedef struct {
    Py_ssize_t content_length; /* -1: no Content-Length header */
    int connection;
    const char *content_type;  /* the last Content-Type value, when wanted */
    Py_ssize_t content_type_len;
} HeadInfo;

static int ascii_equal_nocase(const char *a, Py_ssize_t n, const char *lower) {
    if ((size_t)n != strlen(lower))
        return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = a[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != lower[i])
            return 0;
    }
    return 1;
}

/* Header lines from *pos to the empty line. Returns 1 and moves *pos past the empty line, 0 for
 * "not here", -1 with a Python error set. Adds lower-case name -> value to ``headers`` if given. */
static int parse_headers(const char *buf, Py_ssize_t len, Py_ssize_t *pos, PyObject *headers,
                         HeadInfo *info) {
    Py_ssize_t p = *pos;
    int count = 0;
    char name[MAX_NAME];
    info->content_length = -1;
    info->connection = CONN_NONE;
    info->content_type = NULL;
    info->content_type_len = 0;
    for (;;) {
        if (len - p < 2)
            return 0;
        if (buf[p] == '\r') {
            if (buf[p + 1] != '\n')
                return 0;
            *pos = p + 2;
            return 1;
        }
        if (++count > MAX_HEADERS)
            return 0;
        Py_ssize_t name_start = p;
        while (p < len && TCHAR[(unsigned char)buf[p]])
            p++;
        Py_ssize_t name_len = p - name_start;
        if (name_len == 0 || name_len > MAX_NAME || p >= len || buf[p] != ':')
            return 0;
        p++;
        while (p < len && (buf[p] == ' ' || buf[p] == '\t'))
            p++;
        Py_ssize_t value_start = p;
        while (p < len && VCHAR[(unsigned char)buf[p]])
            p++;
        if (len - p < 2 || buf[p] != '\r' || buf[p + 1] != '\n')
            return 0; /* incomplete, or a control character, obs-text or bare LF */
        Py_ssize_t value_len = p - value_start;
        if (value_len == 0 || buf[p - 1] == ' ' || buf[p - 1] == '\t')
            return 0; /* empty or padded values: left to llhttp */
        p += 2;
        if (p < len && (buf[p] == ' ' || buf[p] == '\t'))
            return 0; /* obs-fold */
        for (Py_ssize_t i = 0; i < name_len; i++) {
            char c = buf[name_start + i];
            name[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
        }
        const char *value = buf + value_start;
        if (name_len == 14 && memcmp(name, "content-length", 14) == 0) {
            if (info->content_length >= 0 || value_len > MAX_CONTENT_LENGTH_DIGITS)
                return 0;
            Py_ssize_t n = 0;
            for (Py_ssize_t i = 0; i < value_len; i++) {
                if (value[i] < '0' || value[i] > '9')
                    return 0;
                n = n * 10 + (value[i] - '0');
            }
            info->content_length = n;
        } else if (name_len == 10 && memcmp(name, "connection", 10) == 0) {
            if (info->connection != CONN_NONE)
                return 0;
            if (ascii_equal_nocase(value, value_len, "close"))
                info->connection = CONN_CLOSE;
            else if (ascii_equal_nocase(value, value_len, "keep-alive"))
                info->connection = CONN_KEEP_ALIVE;
            else
                return 0;
        } else if ((name_len == 17 && memcmp(name, "transfer-encoding", 17) == 0) ||
                   (name_len == 7 && memcmp(name, "upgrade", 7) == 0) ||
                   (name_len == 6 && memcmp(name, "expect", 6) == 0)) {
            return 0;
        } else if (name_len == 12 && memcmp(name, "content-type", 12) == 0) {
            info->content_type = value;
            info->content_type_len = value_len;
        }
        if (headers != NULL) {
            PyObject *key = PyUnicode_FromStringAndSize(name, name_len);
            if (key == NULL)
                return -1;
            PyObject *val = PyUnicode_DecodeLatin1(value, value_len, NULL);
            if (val == NULL) {
                Py_DECREF(key);
                return -1;
            }
            int failed = PyDict_SetItem(headers, key, val);
            Py_DECREF(key);
            Py_DECREF(val);
            if (failed)
                return -1;
        }
    }
}

/* "HTTP/1.1" or "HTTP/1.0" at buf[p]: the minor version, or -1. */
static int http_version(const char *buf, Py_ssize_t len, Py_ssize_t p) {
    if (len - p < 8 || memcmp(buf + p, "HTTP/1.", 7) != 0)
        return -1;
    if (buf[p + 7] == '1')
        return 1;
    if (buf[p + 7] == '0')
        return 0;
    return -1;
}

static int keeps_alive(int minor, int connection) {
    if (minor == 1)
        return connection != CONN_CLOSE;
    return connection == CONN_KEEP_ALIVE;
}

static const char *METHODS[] = {"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", NULL};

static int buffer_args(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want, const char *fn,
                       Py_buffer *view, Py_ssize_t *offset) {
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", fn, want, nargs);
        return -1;
    }
    if (!PyBytes_Check(args[0])) {
        PyErr_Format(PyExc_TypeError, "%s() takes bytes, not %.100s", fn, Py_TYPE(args[0])->tp_name);
        return -1;
    }
    *offset = PyLong_AsSsize_t(args[1]);
    if (*offset == -1 && PyErr_Occurred())
        return -1;
    if (*offset < 0 || *offset > PyBytes_GET_SIZE(args[0])) {
        PyErr_Format(PyExc_ValueError, "%s(): offset %zd outside the buffer", fn, *offset);
        return -1;
    }
    view->buf = PyBytes_AS_STRING(args[0]);
    view->len = PyBytes_GET_SIZE(args[0]);
    return 0;
}

static PyObject *parse_request(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    Py_buffer view;
    Py_ssize_t p;
    if (buffer_args(args, nargs, 3, "parse_request", &view, &p) < 0)
        return NULL;
    Py_ssize_t max_body = PyLong_AsSsize_t(args[2]);
    if (max_body == -1 && PyErr_Occurred())
        return NULL;
    const char *buf = view.buf;
    Py_ssize_t len = view.len;

    Py_ssize_t method_start = p;
    while (p < len && buf[p] >= 'A' && buf[p] <= 'Z' && p - method_start < 8)
        p++;
    Py_ssize_t method_len = p - method_start;
    if (p >= len || buf[p] != ' ')
        Py_RETURN_NONE;
    const char *method = NULL;
    for (int i = 0; METHODS[i] != NULL; i++) {
        if ((size_t)method_len == strlen(METHODS[i]) &&
            memcmp(buf + method_start, METHODS[i], (size_t)method_len) == 0) {
            method = METHODS[i];
            break;
        }
    }
    if (method == NULL)
        Py_RETURN_NONE;
    p++;
    if (p >= len || buf[p] != '/')
        Py_RETURN_NONE;
    Py_ssize_t target_start = p, path_end = -1;
    while (p < len && PATHCHAR[(unsigned char)buf[p]]) {
        if (buf[p] == '?' && path_end < 0)
            path_end = p;
        p++;
    }
    if (path_end < 0)
        path_end = p;
    if (p >= len || buf[p] != ' ')
        Py_RETURN_NONE;
    p++;
    int minor = http_version(buf, len, p);
    if (minor < 0 || len - p < 10 || buf[p + 8] != '\r' || buf[p + 9] != '\n')
        Py_RETURN_NONE;
    p += 10;

    PyObject *headers = PyDict_New();
    if (headers == NULL)
        return NULL;
    HeadInfo info;
    int parsed = parse_headers(buf, len, &p, headers, &info);
    if (parsed <= 0) {
        Py_DECREF(headers);
        if (parsed < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    Py_ssize_t body_len = info.content_length < 0 ? 0 : info.content_length;
    if (body_len > max_body || body_len > len - p) {
        Py_DECREF(headers);
        Py_RETURN_NONE; /* too large (httptools' path answers 413) or not all here yet */
    }
    PyObject *result = Py_BuildValue(
        "(ss#Ny#Nn)", method, buf + target_start, path_end - target_start, headers, buf + p, body_len,
        PyBool_FromLong(keeps_alive(minor, info.connection)), p + body_len);
    return result;
}

static PyObject *parse_response(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    Py_buffer view;
    Py_ssize_t p;
    if (buffer_args(args, nargs, 2, "parse_response", &view, &p) < 0)
        return NULL;
    const char *buf = view.buf;
    Py_ssize_t len = view.len;

    int minor = http_version(buf, len, p);
    if (minor < 0 || len - p < 13 || buf[p + 8] != ' ')
        Py_RETURN_NONE;
    p += 9;
    int status = 0;
    for (int i = 0; i < 3; i++) {
        if (buf[p + i] < '0' || buf[p + i] > '9')
            Py_RETURN_NONE;
        status = status * 10 + (buf[p + i] - '0');
    }
    if (status < 200 || status > 599 || status == 204 || status == 304)
        Py_RETURN_NONE; /* 1xx and bodiless statuses: left to llhttp */
    p += 3;
    if (buf[p] != ' ')
        Py_RETURN_NONE;
    p++;
    while (p < len && ((buf[p] >= 0x20 && buf[p] <= 0x7e) || buf[p] == '\t'))
        p++;
    if (len - p < 2 || buf[p] != '\r' || buf[p + 1] != '\n')
        Py_RETURN_NONE;
    p += 2;

    HeadInfo info;
    int parsed = parse_headers(buf, len, &p, NULL, &info);
    if (parsed < 0)
        return NULL;
    if (parsed == 0 || info.content_length < 0 || info.content_length > len - p)
        Py_RETURN_NONE; /* a body read to the close, or not all here yet */
    PyObject *content_type;
    if (info.content_type != NULL) {
        content_type = PyUnicode_DecodeLatin1(info.content_type, info.content_type_len, NULL);
        if (content_type == NULL)
            return NULL;
    } else {
        content_type = Py_NewRef(Py_None);
    }
    return Py_BuildValue("(iNy#Nn)", status, content_type, buf + p, info.content_length,
                         PyBool_FromLong(keeps_alive(minor, info.connection)), p + info.content_length);
}

static unsigned char puid_pool[4096];
static size_t puid_pos = sizeof(puid_pool); /* the GIL guards both */

static void forget_puid_pool(void) { puid_pos = sizeof(puid_pool); }

static PyObject *new_puid(PyObject *module, PyObject *unused) {
    static const char HEX[] = "0123456789abcdef";
    if (puid_pos + 16 > sizeof(puid_pool)) {
        size_t got = 0;
        while (got < sizeof(puid_pool)) {
            ssize_t n = getrandom(puid_pool + got, sizeof(puid_pool) - got, 0);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                return PyErr_SetFromErrno(PyExc_OSError);
            }
            got += (size_t)n;
        }
        puid_pos = 0;
    }
    unsigned char b[16];
    memcpy(b, puid_pool + puid_pos, 16);
    memset(puid_pool + puid_pos, 0, 16); /* an id is never handed out twice */
    puid_pos += 16;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    char out[36];
    int o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = HEX[b[i] >> 4];
        out[o++] = HEX[b[i] & 15];
    }
    return PyUnicode_FromStringAndSize(out, 36);
}

static PyMethodDef METHODS_TABLE[] = {
    {"parse_request", (PyCFunction)(void (*)(void))parse_request, METH_FASTCALL,
     "parse_request(data, offset, max_body) -> (method, path, headers, body, keep_alive, end) or None"},
    {"parse_response", (PyCFunction)(void (*)(void))parse_response, METH_FASTCALL,
     "parse_response(data, offset) -> (status, content_type, body, keep_alive, end) or None"},
    {"new_puid", new_puid, METH_NOARGS, "new_puid() -> a random (version 4) UUID in its text form"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {
    PyModuleDef_HEAD_INIT, "driftloop_graphs._httpfast",
    "One-call parsing of complete, plain HTTP/1.1 messages; None leaves a message to httptools.", -1,
    METHODS_TABLE, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__httpfast(void) {
    init_tables();
    if (pthread_atfork(NULL, NULL, forget_puid_pool) != 0) {
        PyErr_SetString(PyExc_OSError, "pthread_atfork failed");
        return NULL;
    }
    return PyModule_Create(&MODULE);
}
