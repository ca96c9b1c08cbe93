/* web_page.c: the page at GET / and its files. The page lives in web/ as
 * plain HTML, CSS and JavaScript modules (no build step, nothing fetched
 * from elsewhere); CMake compiles each web/NAME into the byte array
 * sdw_web_<NAME as a C identifier> (+ _len), and this file serves them:
 *
 *   GET /                 web/index.html
 *   GET /app.css, /app.js, /api.js, /editor.js, /lists.js   the rest
 *
 * They need no API key (the page asks for it and sends it on its calls, see
 * http.c's needs_auth). Every answer carries an ETag (a hash of the file,
 * so a new build changes it) with Cache-Control: no-cache: browsers keep the
 * files and revalidate them, a 304 when they did not change. The page gets
 * a Content-Security-Policy that allows only this origin's scripts, styles
 * and calls (images also as data: and blob: URLs, which the page makes). */
#include "server/http_internal.h"
#include <stdio.h>
#include <string.h>

#define WEB_FILE(sym)                          \
    extern const unsigned char sym[];          \
    extern const size_t sym##_len
WEB_FILE(sdw_web_index_html);
WEB_FILE(sdw_web_app_css);
WEB_FILE(sdw_web_app_js);
WEB_FILE(sdw_web_api_js);
WEB_FILE(sdw_web_editor_js);
WEB_FILE(sdw_web_lists_js);

typedef struct {
    const char *url, *type;
    const unsigned char *data;
    const size_t *len;
} web_file;

#define HTML "text/html; charset=utf-8"
#define JS "text/javascript; charset=utf-8"
#define CSS "text/css; charset=utf-8"

static const web_file files[] = {
    { "/", HTML, sdw_web_index_html, &sdw_web_index_html_len },
    { "/index.html", HTML, sdw_web_index_html, &sdw_web_index_html_len },
    { "/app.css", CSS, sdw_web_app_css, &sdw_web_app_css_len },
    { "/app.js", JS, sdw_web_app_js, &sdw_web_app_js_len },
    { "/api.js", JS, sdw_web_api_js, &sdw_web_api_js_len },
    { "/editor.js", JS, sdw_web_editor_js, &sdw_web_editor_js_len },
    { "/lists.js", JS, sdw_web_lists_js, &sdw_web_lists_js_len },
};

/* The page's own origin only; inline scripts and styles are not used. */
#define CSP                                                                                                  \
    "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; connect-src 'self'; " \
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

static const web_file *find(const char *url)
{
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (!strcmp(url, files[i].url)) return &files[i];
    return NULL;
}

bool sdw_web_is_file(const char *url)
{
    return find(url) != NULL;
}

/* FNV-1a over the bytes: the files change only with a new build. */
static void etag_of(const web_file *f, char out[24])
{
    unsigned long long h = 14695981039346656037ULL;
    for (size_t i = 0; i < *f->len; i++) h = (h ^ f->data[i]) * 1099511628211ULL;
    snprintf(out, 24, "\"%016llx\"", h);
}

/* If-None-Match holds our tag (alone, in a list, or as W/"..."). */
static bool unchanged(sdw_http_req *r, const char *etag)
{
    const char *inm = http_header(r, "If-None-Match");
    return inm && (strstr(inm, etag) || !strcmp(inm, "*"));
}

static enum MHD_Result serve(sdw_http_req *r, const web_file *f)
{
    char etag[24];
    etag_of(f, etag);
    bool same = unchanged(r, etag);
    struct MHD_Response *resp = MHD_create_response_from_buffer(same ? 0 : *f->len, (void *)f->data,
                                                                MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    if (!same) MHD_add_response_header(resp, "Content-Type", f->type);
    MHD_add_response_header(resp, "ETag", etag);
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    if (!strcmp(f->type, HTML)) MHD_add_response_header(resp, "Content-Security-Policy", CSP);
    return http_queue(r, same ? 304 : 200, resp);
}

bool routes_web(sdw_http_req *r, enum MHD_Result *ret)
{
    if (strcmp(r->method, "GET") && strcmp(r->method, "HEAD")) return false;
    const web_file *f = find(r->url);
    if (!f) return false;
    *ret = serve(r, f);
    return true;
}
