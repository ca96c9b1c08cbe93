/* comfy_pyval.h: JSON values as Python sees them (private to src/comfy).
 * ComfyUI validates a workflow in Python: widget values go through int(),
 * float(), str() and bool(), and its error messages print values with str()
 * and repr(). comfy_graph.c repeats those conversions and messages; this is
 * where they live. A JSON number is an int when it is integral and below
 * 2^53 (cJSON keeps no "5" / "5.0" distinction), a float otherwise. */
#ifndef SDW_COMFY_PYVAL_H
#define SDW_COMFY_PYVAL_H
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

/* A growing string, truncated past SDW_PYSTR_MAX (messages stay bounded
 * whatever the workflow holds). failed: out of memory (s may be NULL). */
#define SDW_PYSTR_MAX 65536
typedef struct {
    char *s;
    size_t len, cap;
    bool failed;
} sdw_pystr;
void sdw_pystr_cat(sdw_pystr *b, const char *s);
void sdw_pystr_catf(sdw_pystr *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The text so far ("" when empty); stays owned by b. */
const char *sdw_pystr_get(const sdw_pystr *b);
void sdw_pystr_free(sdw_pystr *b);

/* str(v), repr(v), repr(s) of a Python str, repr(x) of a float, and an
 * integral value as Python prints an int. */
void sdw_py_str(sdw_pystr *b, const cJSON *v);
void sdw_py_repr(sdw_pystr *b, const cJSON *v);
void sdw_py_repr_cstr(sdw_pystr *b, const char *s);
void sdw_py_float(sdw_pystr *b, double x);
void sdw_py_int(sdw_pystr *b, double x);
/* type(v).__name__: "NoneType", "bool", "int", "float", "str", "list", "dict". */
const char *sdw_py_type_name(const cJSON *v);

/* int(v) (truncating floats) and float(v): true with the value, or false
 * with Python's exception: its class name ("ValueError", ...) in *exc and
 * str(exception) appended to msg. */
bool sdw_py_to_int(const cJSON *v, double *out, const char **exc, sdw_pystr *msg);
bool sdw_py_to_float(const cJSON *v, double *out, const char **exc, sdw_pystr *msg);
/* bool(v). */
bool sdw_py_truth(const cJSON *v);
#endif
