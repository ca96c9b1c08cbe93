/* prompt_parse.c: A1111 prompt syntax (see prompt_parse.h). The three regexes
 * are A1111's, translated to PCRE2 (UTF + UCP); where Python's `\s` differs
 * from PCRE2's it is spelled out as Python's str.isspace() set. Weights are
 * multiplied in double, as Python does, and only rounded to float at the end,
 * so the merge of adjacent spans compares the same numbers A1111 compares. */
#include "text/prompt_parse.h"
#include "core/error.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <float.h>
#include <locale.h>
#include <math.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Python's \s (str.isspace) as a PCRE2 class. */
#define PY_SPACE "[\\t-\\r\\x1c-\\x20\\x85\\x{2028}\\x{2029}\\p{Zs}]"

/* modules/extra_networks.py re_extra_net */
static const char EXTRA_NET_PATTERN[] = "<(\\w+):([^>]+)>";
/* modules/prompt_parser.py re_attention; `\d` is narrowed to ASCII digits
 * because the weight is parsed with strtod. */
static const char ATTENTION_PATTERN[] =
    "\\\\\\(|\\\\\\)|\\\\\\[|\\\\]|\\\\\\\\|\\\\|\\(|\\[|"
    ":" PY_SPACE "*([+-]?[.0-9]+)" PY_SPACE "*\\)|"
    "\\)|]|[^\\\\()\\[\\]:]+|:";
/* modules/prompt_parser.py re_break */
static const char BREAK_PATTERN[] = PY_SPACE "*\\bBREAK\\b" PY_SPACE "*";

static struct {
    pcre2_code *extra_net, *attention, *brk;
    locale_t c_locale;
    bool ok;
} R;
static pthread_once_t init_once_flag = PTHREAD_ONCE_INIT;

static pcre2_code *compile(const char *pattern)
{
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &off, NULL);
    if (re) pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    return re;
}

static void init_once(void)
{
    R.extra_net = compile(EXTRA_NET_PATTERN);
    R.attention = compile(ATTENTION_PATTERN);
    R.brk = compile(BREAK_PATTERN);
    R.c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    R.ok = R.extra_net && R.attention && R.brk && R.c_locale;
}

/* ---- working list of (text, weight) pairs, A1111's `res` ---- */

typedef struct {
    char *s;      /* NUL-terminated */
    size_t n;
    double w;
} entry;

typedef struct {
    entry *v;
    size_t n, cap;
} entry_list;

static void entries_free(entry_list *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->v[i].s);
    free(l->v);
    *l = (entry_list){0};
}

static sdw_status nomem(void) { return sdw_fail(SDW_ERR_NOMEM, "prompt parser: out of memory"); }

static sdw_status entries_push(entry_list *l, const char *s, size_t n, double w)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        entry *v = realloc(l->v, cap * sizeof *v);
        if (!v) return nomem();
        l->v = v;
        l->cap = cap;
    }
    char *t = malloc(n + 1);
    if (!t) return nomem();
    memcpy(t, s, n);
    t[n] = 0;
    l->v[l->n++] = (entry){ t, n, w };
    return SDW_OK;
}

typedef struct {
    size_t *v;
    size_t n, cap;
} pos_stack;

static sdw_status stack_push(pos_stack *s, size_t x)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 16;
        size_t *v = realloc(s->v, cap * sizeof *v);
        if (!v) return nomem();
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = x;
    return SDW_OK;
}

static void multiply_range(entry_list *l, size_t start, double m)
{
    for (size_t p = start; p < l->n; p++) l->v[p].w *= m;
}

/* Python float() on a short ASCII string, restricted to finite decimal numbers. */
static bool parse_number(const char *s, size_t n, double *out)
{
    while (n && (*s == ' ' || (*s >= '\t' && *s <= '\r'))) s++, n--;
    while (n && (s[n - 1] == ' ' || (s[n - 1] >= '\t' && s[n - 1] <= '\r'))) n--;
    char buf[64];
    if (n == 0 || n >= sizeof buf) return false;
    memcpy(buf, s, n);
    buf[n] = 0;
    for (size_t i = 0; i < n; i++)
        if (!strchr("+-.0123456789eE", buf[i])) return false;   /* no hex, inf, nan */
    char *end;
    double v = strtod_l(buf, &end, R.c_locale);
    if (end != buf + n || !isfinite(v)) return false;
    *out = v;
    return true;
}

/* re.split(re_break, text): parts joined by ["BREAK", -1] entries. */
static sdw_status push_text(entry_list *res, pcre2_match_data *md, const char *s, size_t n)
{
    size_t start = 0, off = 0;
    while (off < n) {
        int rc = pcre2_match(R.brk, (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) return sdw_fail(SDW_ERR_INVALID_ARG, "prompt parser: regex error %d", rc);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        SDW_TRY(entries_push(res, s + start, ov[0] - start, 1.0));
        SDW_TRY(entries_push(res, "BREAK", 5, -1.0));
        start = off = ov[1];
    }
    return entries_push(res, s + start, n - start, 1.0);
}

/* parse_prompt_attention(text), before the merge of equal weights. */
static sdw_status parse_attention(const char *s, size_t n, pcre2_match_data *md, entry_list *res)
{
    const double round_mult = 1.1, square_mult = 1 / 1.1;
    pos_stack round = {0}, square = {0};
    sdw_status st = SDW_OK;
    for (size_t off = 0; off < n && st == SDW_OK;) {
        int rc = pcre2_match(R.attention, (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc < 0) {
            /* every character is matched by some alternative */
            st = sdw_fail(SDW_ERR_INVALID_ARG, "prompt parser: regex error %d", rc);
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        const char *m = s + ov[0];
        size_t mlen = ov[1] - ov[0];
        bool has_weight = rc >= 2 && ov[2] != PCRE2_UNSET;
        off = ov[1];
        if (mlen == 0) break;   /* defensive: no alternative matches empty */

        if (m[0] == '\\') {
            st = entries_push(res, m + 1, mlen - 1, 1.0);
        } else if (mlen == 1 && m[0] == '(') {
            st = stack_push(&round, res->n);
        } else if (mlen == 1 && m[0] == '[') {
            st = stack_push(&square, res->n);
        } else if (has_weight && round.n) {
            double w;
            if (!parse_number(s + ov[2], ov[3] - ov[2], &w))
                st = sdw_fail(SDW_ERR_INVALID_ARG, "prompt: attention weight '%.*s' is not a number",
                              (int)(ov[3] - ov[2]), s + ov[2]);
            else
                multiply_range(res, round.v[--round.n], w);
        } else if (mlen == 1 && m[0] == ')' && round.n) {
            multiply_range(res, round.v[--round.n], round_mult);
        } else if (mlen == 1 && m[0] == ']' && square.n) {
            multiply_range(res, square.v[--square.n], square_mult);
        } else {
            st = push_text(res, md, m, mlen);
        }
    }
    if (st == SDW_OK) {
        for (size_t i = 0; i < round.n; i++) multiply_range(res, round.v[i], round_mult);
        for (size_t i = 0; i < square.n; i++) multiply_range(res, square.v[i], square_mult);
        if (res->n == 0) st = entries_push(res, "", 0, 1.0);
    }
    free(round.v);
    free(square.v);
    return st;
}

/* ---- extra networks ---- */

static sdw_status push_lora(sdw_parsed_prompt *out, const char *args, size_t n)
{
    /* args.split(":"); an item with exactly one '=' is named, others positional */
    const char *pos[3] = {0}, *te_s = NULL, *unet_s = NULL;
    size_t pos_n[3] = {0}, te_n = 0, unet_n = 0;
    int n_pos = 0;
    for (size_t i = 0; i <= n;) {
        size_t j = i;
        while (j < n && args[j] != ':') j++;
        const char *item = args + i, *eq = memchr(item, '=', j - i);
        size_t len = j - i;
        if (eq && !memchr(eq + 1, '=', (size_t)(item + len - eq - 1))) {
            size_t klen = (size_t)(eq - item);
            if (klen == 2 && !memcmp(item, "te", 2)) te_s = eq + 1, te_n = len - klen - 1;
            else if (klen == 4 && !memcmp(item, "unet", 4)) unet_s = eq + 1, unet_n = len - klen - 1;
        } else {
            if (n_pos < 3) pos[n_pos] = item, pos_n[n_pos] = len;
            n_pos++;
        }
        i = j + 1;
    }
    if (n_pos == 0 || pos_n[0] == 0) return sdw_fail(SDW_ERR_INVALID_ARG, "prompt: LoRA tag <lora:%.*s> has no name", (int)n, args);
    double te = 1.0, unet;
    bool ok = (n_pos < 2 || parse_number(pos[1], pos_n[1], &te)) && (!te_s || parse_number(te_s, te_n, &te));
    unet = te;
    ok = ok && (n_pos < 3 || parse_number(pos[2], pos_n[2], &unet)) && (!unet_s || parse_number(unet_s, unet_n, &unet));
    /* kept as float: a weight past FLT_MAX would scale the model by inf */
    ok = ok && fabs(te) <= FLT_MAX && fabs(unet) <= FLT_MAX;
    if (!ok) return sdw_fail(SDW_ERR_INVALID_ARG, "prompt: LoRA tag <lora:%.*s> has a weight that is not a finite number", (int)n, args);

    sdw_prompt_lora *v = realloc(out->loras, ((size_t)out->n_loras + 1) * sizeof *v);
    if (!v) return nomem();
    out->loras = v;
    char *name = malloc(pos_n[0] + 1);
    if (!name) return nomem();
    memcpy(name, pos[0], pos_n[0]);
    name[pos_n[0]] = 0;
    out->loras[out->n_loras++] = (sdw_prompt_lora){ name, (float)te, (float)unet };
    return SDW_OK;
}

/* re.sub(re_extra_net, ...): the prompt without tags into *text (malloc'd). */
static sdw_status strip_extra_networks(const char *s, size_t n, pcre2_match_data *md, sdw_parsed_prompt *out, char **text)
{
    char *t = malloc(n + 1);
    if (!t) return nomem();
    size_t tn = 0, off = 0;
    for (;;) {
        int rc = pcre2_match(R.extra_net, (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc < 0) break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        memcpy(t + tn, s + off, ov[0] - off);
        tn += ov[0] - off;
        size_t type_n = ov[3] - ov[2];
        const char *type = s + ov[2];
        if ((type_n == 4 && !memcmp(type, "lora", 4)) || (type_n == 4 && !memcmp(type, "lyco", 4))) {
            sdw_status st = push_lora(out, s + ov[4], ov[5] - ov[4]);
            if (st != SDW_OK) {
                free(t);
                return st;
            }
        }
        off = ov[1];
    }
    memcpy(t + tn, s + off, n - off);
    tn += n - off;
    t[tn] = 0;
    *text = t;
    return SDW_OK;
}

/* ---- public ---- */

void sdw_parsed_prompt_free(sdw_parsed_prompt *p)
{
    if (!p) return;
    for (int i = 0; i < p->n_spans; i++) free(p->spans[i].text);
    for (int i = 0; i < p->n_loras; i++) free(p->loras[i].name);
    free(p->spans);
    free(p->loras);
    *p = (sdw_parsed_prompt){0};
}

/* Checked once here so that the matches can skip PCRE2's own check. */
static bool valid_utf8(const char *s, size_t n, size_t *bad)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = u[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!len || i + len > n) { *bad = i; return false; }
        uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
        for (size_t k = 1; k < len; k++) {
            if ((u[i + k] & 0xC0) != 0x80) { *bad = i; return false; }
            cp = (cp << 6) | (u[i + k] & 0x3F);
        }
        static const uint32_t min_cp[5] = { 0, 0, 0x80, 0x800, 0x10000 };
        if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) { *bad = i; return false; }
        i += len;
    }
    return true;
}

sdw_status sdw_prompt_parse(const char *prompt, sdw_parsed_prompt *out)
{
    if (!prompt || !out) return sdw_fail(SDW_ERR_INVALID_ARG, "sdw_prompt_parse: NULL argument");
    *out = (sdw_parsed_prompt){0};
    pthread_once(&init_once_flag, init_once);
    if (!R.ok) return sdw_fail(SDW_ERR_UNSUPPORTED, "prompt parser: could not compile its regexes");
    size_t n = strlen(prompt), bad;
    if (!valid_utf8(prompt, n, &bad)) return sdw_fail(SDW_ERR_INVALID_ARG, "prompt is not valid UTF-8 (at byte %zu)", bad);

    pcre2_match_data *md = pcre2_match_data_create(8, NULL);
    if (!md) return nomem();
    char *text = NULL;
    entry_list res = {0};
    sdw_status st = strip_extra_networks(prompt, n, md, out, &text);
    if (st == SDW_OK) st = parse_attention(text, strlen(text), md, &res);
    pcre2_match_data_free(md);
    free(text);

    /* merge runs of identical weights */
    size_t m = 0;
    for (size_t i = 0; st == SDW_OK && i < res.n; i++) {
        if (m > 0 && res.v[m - 1].w == res.v[i].w) {
            entry *a = &res.v[m - 1];
            char *s = realloc(a->s, a->n + res.v[i].n + 1);
            if (!s) {
                st = nomem();
                break;
            }
            memcpy(s + a->n, res.v[i].s, res.v[i].n + 1);
            a->s = s;
            a->n += res.v[i].n;
            free(res.v[i].s);
            res.v[i].s = NULL;
        } else {
            res.v[m++] = res.v[i];
            if (m - 1 != i) res.v[i].s = NULL;
        }
    }
    if (st == SDW_OK) {
        res.n = m;
        out->spans = malloc(m * sizeof *out->spans);
        if (!out->spans) st = nomem();
    }
    if (st != SDW_OK) {
        entries_free(&res);
        sdw_parsed_prompt_free(out);
        return st;
    }
    for (size_t i = 0; i < m; i++) {
        entry *e = &res.v[i];
        out->spans[i] = (sdw_prompt_span){ e->s, (float)e->w, e->w == -1.0 && !strcmp(e->s, "BREAK") };
        e->s = NULL;
    }
    out->n_spans = (int)m;
    entries_free(&res);
    return SDW_OK;
}
