/* comfy_pyval.c: JSON values as Python sees them: str(), repr(), int(),
 * float() and bool() as ComfyUI's validate_inputs applies them to widget
 * values, so that comfy_graph.c accepts what ComfyUI accepts ("5" for an
 * INT, 7.9 truncated to 7) and words its errors the same way. */
#include "comfy/comfy_pyval.h"
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* repr() of nested values stops here (cJSON allows 1000 levels). */
#define REPR_MAX_DEPTH 32

/* ---------------------------------------------------------------- the string builder */

static void pystr_append(sdw_pystr *b, const char *s, size_t n)
{
    if (b->failed || b->len >= SDW_PYSTR_MAX) return;
    if (n > SDW_PYSTR_MAX - b->len) n = SDW_PYSTR_MAX - b->len;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

void sdw_pystr_cat(sdw_pystr *b, const char *s) { pystr_append(b, s, strlen(s)); }

void sdw_pystr_catf(sdw_pystr *b, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    pystr_append(b, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

const char *sdw_pystr_get(const sdw_pystr *b) { return b->s ? b->s : ""; }

void sdw_pystr_free(sdw_pystr *b)
{
    free(b->s);
    *b = (sdw_pystr){0};
}

/* ---------------------------------------------------------------- numbers */

static bool is_int_like(double x) { return isfinite(x) && x == trunc(x) && fabs(x) < 9007199254740992.0; }

void sdw_py_int(sdw_pystr *b, double x)
{
    if (!isfinite(x)) {
        sdw_py_float(b, x);
        return;
    }
    sdw_pystr_catf(b, "%.0f", x == 0 ? 0.0 : x);
}

/* repr(float): the shortest digits that read back the same, fixed-point
 * for decimal exponents in [-4, 16), else d.ddde+XX. */
void sdw_py_float(sdw_pystr *b, double x)
{
    if (isnan(x)) return sdw_pystr_cat(b, "nan");
    if (isinf(x)) return sdw_pystr_cat(b, x > 0 ? "inf" : "-inf");
    char e[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, x);
        if (strtod(e, NULL) == x) break;
    }
    /* e: [-]d[.ddd]e[+-]XX */
    const char *s = e;
    bool neg = *s == '-';
    if (neg) s++;
    char digits[24];
    int nd = 0;
    for (; *s && *s != 'e'; s++)
        if (isdigit((unsigned char)*s) && nd < 23) digits[nd++] = *s;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    int exp10 = *s == 'e' ? atoi(s + 1) : 0;
    char out[64];
    int o = 0;
    if (neg) out[o++] = '-';
    if (exp10 >= -4 && exp10 < 16) {
        if (exp10 < 0) {
            out[o++] = '0';
            out[o++] = '.';
            for (int i = 0; i < -exp10 - 1; i++) out[o++] = '0';
            for (int i = 0; i < nd; i++) out[o++] = digits[i];
        } else {
            for (int i = 0; i <= exp10; i++) out[o++] = i < nd ? digits[i] : '0';
            out[o++] = '.';
            if (nd > exp10 + 1)
                for (int i = exp10 + 1; i < nd; i++) out[o++] = digits[i];
            else
                out[o++] = '0';
        }
        out[o] = 0;
    } else {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            for (int i = 1; i < nd; i++) out[o++] = digits[i];
        }
        snprintf(out + o, sizeof out - (size_t)o, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
    }
    sdw_pystr_cat(b, out);
}

/* ---------------------------------------------------------------- str() and repr() */

const char *sdw_py_type_name(const cJSON *v)
{
    if (cJSON_IsBool(v)) return "bool";
    if (cJSON_IsNumber(v)) return is_int_like(v->valuedouble) ? "int" : "float";
    if (cJSON_IsString(v)) return "str";
    if (cJSON_IsArray(v)) return "list";
    if (cJSON_IsObject(v)) return "dict";
    return "NoneType";
}

void sdw_py_repr_cstr(sdw_pystr *b, const char *s)
{
    /* Python quotes with ' unless the text holds ' and no ". */
    char q = strchr(s, '\'') && !strchr(s, '"') ? '"' : '\'';
    char qs[2] = {q, 0};
    sdw_pystr_cat(b, qs);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char buf[8];
        if (*p == '\\' || *p == (unsigned char)q) snprintf(buf, sizeof buf, "\\%c", *p);
        else if (*p == '\n') snprintf(buf, sizeof buf, "\\n");
        else if (*p == '\r') snprintf(buf, sizeof buf, "\\r");
        else if (*p == '\t') snprintf(buf, sizeof buf, "\\t");
        else if (*p < 0x20 || *p == 0x7f) snprintf(buf, sizeof buf, "\\x%02x", *p);
        else snprintf(buf, sizeof buf, "%c", *p);
        sdw_pystr_cat(b, buf);
    }
    sdw_pystr_cat(b, qs);
}

static void repr_at(sdw_pystr *b, const cJSON *v, int depth)
{
    if (cJSON_IsString(v)) return sdw_py_repr_cstr(b, v->valuestring);
    if (!cJSON_IsArray(v) && !cJSON_IsObject(v)) return sdw_py_str(b, v);
    bool obj = cJSON_IsObject(v);
    sdw_pystr_cat(b, obj ? "{" : "[");
    if (depth >= REPR_MAX_DEPTH) sdw_pystr_cat(b, "...");
    else
        for (const cJSON *c = v->child; c; c = c->next) {
            if (c != v->child) sdw_pystr_cat(b, ", ");
            if (obj) {
                sdw_py_repr_cstr(b, c->string ? c->string : "");
                sdw_pystr_cat(b, ": ");
            }
            repr_at(b, c, depth + 1);
            if (b->len >= SDW_PYSTR_MAX) break;
        }
    sdw_pystr_cat(b, obj ? "}" : "]");
}

void sdw_py_repr(sdw_pystr *b, const cJSON *v) { repr_at(b, v, 0); }

void sdw_py_str(sdw_pystr *b, const cJSON *v)
{
    if (cJSON_IsString(v)) sdw_pystr_cat(b, v->valuestring);
    else if (cJSON_IsBool(v)) sdw_pystr_cat(b, cJSON_IsTrue(v) ? "True" : "False");
    else if (cJSON_IsNumber(v)) {
        if (is_int_like(v->valuedouble)) sdw_py_int(b, v->valuedouble);
        else sdw_py_float(b, v->valuedouble);
    } else if (cJSON_IsArray(v) || cJSON_IsObject(v)) repr_at(b, v, 0);
    else sdw_pystr_cat(b, "None");
}

/* ---------------------------------------------------------------- int(), float(), bool() */

/* str.strip()'s ASCII whitespace: [*s, *e) of text. */
static void strip(const char *text, const char **s, const char **e)
{
    *s = text;
    *e = text + strlen(text);
    while (*s < *e && isspace((unsigned char)**s)) (*s)++;
    while (*e > *s && isspace((unsigned char)(*e)[-1])) (*e)--;
}

/* Digits with single underscores between them (Python's digitpart) at *p;
 * copies the digits to out. */
static bool digitpart(const char **p, const char *e, char *out, size_t *o, size_t cap)
{
    if (*p >= e || !isdigit((unsigned char)**p)) return false;
    while (*p < e) {
        if (isdigit((unsigned char)**p)) {
            if (*o + 1 < cap) out[(*o)++] = **p;
            (*p)++;
        } else if (**p == '_' && *p + 1 < e && isdigit((unsigned char)(*p)[1])) (*p)++;
        else break;
    }
    return true;
}

static bool ieq(const char *s, const char *e, const char *word)
{
    size_t n = strlen(word);
    return (size_t)(e - s) == n && strncasecmp(s, word, n) == 0;
}

/* float()'s grammar on [s, e): sign, digits, point, exponent, or inf /
 * infinity / nan; the cleaned text (no underscores) into out. */
static bool parse_float_text(const char *s, const char *e, char *out, size_t cap)
{
    size_t o = 0;
    if (s < e && (*s == '+' || *s == '-')) out[o++] = *s++;
    if (ieq(s, e, "inf") || ieq(s, e, "infinity") || ieq(s, e, "nan")) {
        snprintf(out + o, cap - o, "%.*s", (int)(e - s), s);
        return true;
    }
    bool whole = digitpart(&s, e, out, &o, cap), frac = false;
    if (s < e && *s == '.') {
        if (o + 1 < cap) out[o++] = '.';
        s++;
        frac = digitpart(&s, e, out, &o, cap);
    }
    if (!whole && !frac) return false;
    if (s < e && (*s == 'e' || *s == 'E')) {
        if (o + 1 < cap) out[o++] = 'e';
        s++;
        if (s < e && (*s == '+' || *s == '-')) {
            if (o + 1 < cap) out[o++] = *s;
            s++;
        }
        if (!digitpart(&s, e, out, &o, cap)) return false;
    }
    out[o] = 0;
    return s == e;
}

bool sdw_py_to_int(const cJSON *v, double *out, const char **exc, sdw_pystr *msg)
{
    if (cJSON_IsBool(v)) {
        *out = cJSON_IsTrue(v) ? 1 : 0;
        return true;
    }
    if (cJSON_IsNumber(v)) {
        double x = v->valuedouble;
        if (isnan(x)) {
            *exc = "ValueError";
            sdw_pystr_cat(msg, "cannot convert float NaN to integer");
            return false;
        }
        if (isinf(x)) {
            *exc = "OverflowError";
            sdw_pystr_cat(msg, "cannot convert float infinity to integer");
            return false;
        }
        *out = trunc(x);
        return true;
    }
    if (cJSON_IsString(v)) {
        const char *s, *e;
        strip(v->valuestring, &s, &e);
        size_t cap = (size_t)(e - s) + 2, o = 0;
        char *text = malloc(cap);
        if (!text) {
            *exc = "MemoryError";
            return false;
        }
        if (s < e && (*s == '+' || *s == '-')) text[o++] = *s++;
        bool ok = digitpart(&s, e, text, &o, cap) && s == e;
        text[o] = 0;
        if (ok) *out = strtod(text, NULL) + 0.0;   /* + 0.0: int("-0") is 0 */
        free(text);
        if (ok) return true;
        *exc = "ValueError";
        sdw_pystr_cat(msg, "invalid literal for int() with base 10: ");
        sdw_py_repr_cstr(msg, v->valuestring);
        return false;
    }
    *exc = "TypeError";
    sdw_pystr_catf(msg, "int() argument must be a string, a bytes-like object or a real number, not '%s'",
                   sdw_py_type_name(v));
    return false;
}

bool sdw_py_to_float(const cJSON *v, double *out, const char **exc, sdw_pystr *msg)
{
    if (cJSON_IsBool(v)) {
        *out = cJSON_IsTrue(v) ? 1 : 0;
        return true;
    }
    if (cJSON_IsNumber(v)) {
        *out = v->valuedouble;
        return true;
    }
    if (cJSON_IsString(v)) {
        const char *s, *e;
        strip(v->valuestring, &s, &e);
        size_t cap = (size_t)(e - s) + 2;
        char *text = malloc(cap);
        if (!text) {
            *exc = "MemoryError";
            return false;
        }
        bool ok = parse_float_text(s, e, text, cap);
        if (ok) *out = strtod(text, NULL);
        free(text);
        if (ok) return true;
        *exc = "ValueError";
        sdw_pystr_cat(msg, "could not convert string to float: ");
        sdw_py_repr_cstr(msg, v->valuestring);
        return false;
    }
    *exc = "TypeError";
    sdw_pystr_catf(msg, "float() argument must be a string or a real number, not '%s'", sdw_py_type_name(v));
    return false;
}

bool sdw_py_truth(const cJSON *v)
{
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    if (cJSON_IsNumber(v)) return v->valuedouble != 0;
    if (cJSON_IsString(v)) return v->valuestring[0] != 0;
    if (cJSON_IsArray(v) || cJSON_IsObject(v)) return v->child != NULL;
    return false;
}
