/* engine_comfy.h: what the ComfyUI routes (routes_comfy.c) ask of the
 * engine: the WebSocket clients and their outboxes, the queue as ComfyUI
 * lists it, the history of finished prompts, the folders (output, input,
 * temp, and the model folders that /object_info and /models list), and the
 * catalog the workflow validator checks names against.
 *
 * A prompt runs as a job of kind SDW_JOB_COMFY in the engine's one queue
 * (behind and before the other dialects' jobs), on the generation thread
 * (engine_comfy.c's engine_comfy_run), which publishes ComfyUI's messages
 * into the outboxes of the sockets of the prompt's client_id; "status"
 * goes to every socket. Each socket's session thread (routes_comfy.c)
 * drains its outbox. The hub has its own mutex, never held together with
 * the engine's. */
#ifndef SDW_SERVER_ENGINE_COMFY_H
#define SDW_SERVER_ENGINE_COMFY_H
#include "server/engine.h"
#include "comfy/comfy.h"
#include <cjson/cJSON.h>

/* A client's outbox stops taking previews past this many bytes, and the
 * client is dropped past four times as many (it stopped reading). */
#define SDW_COMFY_OUTBOX_BYTES ((size_t)16 << 20)
/* Finished prompts kept for GET /history (oldest dropped first). */
#define SDW_COMFY_HISTORY_MAX 1000

/* ---------------------------------------------------------------- WebSocket clients */

typedef struct sdw_comfy_client sdw_comfy_client;
/* Registers a socket of client_id ("" = a new id is made) and queues the
 * "status" message with its sid. NULL when out of memory or when the
 * server is stopping. */
sdw_comfy_client *sdw_comfy_connect(sdw_engine *e, const char *client_id);
const char *sdw_comfy_client_id(const sdw_comfy_client *c);
/* An eventfd that turns readable when the outbox has something or the
 * session must end. */
int sdw_comfy_client_wake_fd(const sdw_comfy_client *c);
/* The next message (comfy_ws.h's sdw_ws_next_fn over a client). */
int sdw_comfy_client_next(void *client, uint8_t **data, size_t *n, bool *binary);
void sdw_comfy_disconnect(sdw_engine *e, sdw_comfy_client *c);
/* The server stops: every session is told to end (after what its outbox
 * holds), and this waits up to wait_s for them to go. */
void sdw_comfy_close_all(sdw_engine *e, double wait_s);
/* "status" with the queue's length to every socket. */
void sdw_comfy_broadcast_status(sdw_engine *e);

/* ---------------------------------------------------------------- queue and history */

/* POST /prompt's number: the request's, or the next of the counter
 * (negated for "front"), as ComfyUI numbers its queue. */
double sdw_comfy_take_number(sdw_engine *e, const cJSON *body);
/* {"exec_info": {"queue_remaining": N}}: every job queued or running. */
cJSON *sdw_comfy_queue_info(sdw_engine *e);
/* GET /queue: {"queue_running": [...], "queue_pending": [...]}, each item
 * [number, prompt_id, prompt, extra_data, outputs_to_execute]; the other
 * dialects' jobs show with an empty prompt. */
cJSON *sdw_comfy_queue(sdw_engine *e);
/* POST /queue: drops a queued prompt (id), or every queued prompt (id
 * NULL); a running one is left (POST /interrupt stops it). */
void sdw_comfy_queue_delete(sdw_engine *e, const char *id);
/* GET /history (id NULL: the last max_items, max_items < 0: all) or
 * /history/{id} ({} when unknown). */
cJSON *sdw_comfy_history(sdw_engine *e, const char *id, int max_items);
/* POST /history: clear (id NULL) or delete one. */
void sdw_comfy_history_delete(sdw_engine *e, const char *id);

/* ---------------------------------------------------------------- folders (engine_comfy_files.c) */

/* The folder of a /view or /upload "type": "output", "input" or "temp";
 * NULL for any other. */
const char *sdw_comfy_type_dir(sdw_engine *e, const char *type);
/* dir/sub/name checked to stay inside dir: no absolute path, no ".."
 * component, and (when the file exists) its real path under dir's. With
 * must_exist, a regular file that is not there fails with SDW_ERR_IO;
 * SDW_ERR_INVALID_ARG for a path that leaves dir. sub may be NULL or "". */
sdw_status sdw_comfy_path(const char *dir, const char *sub, const char *name, bool must_exist, char *out, size_t n);
/* Creates dir/sub (and dir) as needed, checked to stay inside dir. */
sdw_status sdw_comfy_mkdirs(const char *dir, const char *sub);
/* The catalog over the engine's folders (list and has), for the validator
 * and /object_info. */
sdw_comfy_catalog sdw_comfy_engine_catalog(sdw_engine *e);
/* A name from a folder (a validated COMBO value) to its path; names from
 * the input folder may carry ComfyUI's " [output]" / " [input]" / " [temp]"
 * annotation. */
sdw_status sdw_comfy_resolve(sdw_engine *e, sdw_comfy_folder f, const char *name, char *path, size_t n);
/* /models/{folder}: the folder by its ComfyUI name ("checkpoints", "loras",
 * "controlnet", "vae", "clip", "text_encoders", "unet", "diffusion_models");
 * false for another. */
bool sdw_comfy_folder_by_name(const char *name, sdw_comfy_folder *f);
/* Where SaveImage / PreviewImage write the next image with prefix
 * ("ComfyUI", "sub/name", with %width% / %height% / %year% ... filled in) in
 * dir: ComfyUI's get_save_image_path, the counter one past the highest of
 * "<name>_NNNNN_*" there. Fills out (filename, subfolder) and path. */
sdw_status sdw_comfy_save_path(const char *dir, const char *prefix, int w, int h, char *path, size_t n,
                               sdw_comfy_file *out);
#endif
