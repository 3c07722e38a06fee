// {{name}}: a provider adapter for a small JSON API: `POST /v1/generate` with
// `{"model", "prompt", "max_tokens", "stream"}`, answered by
// `{"text", "input_tokens", "output_tokens"}` (or `{"error"}`), and streamed as one JSON
// object per line, `{"text": ...}`, then `{"done": true, "input_tokens", "output_tokens"}`.
// Pure translation: the host sends the request (adding the API key) and hands back the
// answer; the stream's unfinished line is the state the host keeps between chunks. Change
// the three exports at the bottom to speak your provider's API. Bindings:
// bindings/provider_adapter.h, generated from wit/ by wit-bindgen's C generator (see build.sh).
//
// Ownership: arguments belong to the callee (free them with the generated *_free
// functions); strings and lists returned to the host must be malloc'ed (the host's
// post-return functions free them). Every call runs in a fresh instance.
//
// The JSON helpers below read and write only the flat objects of this API. For anything
// richer, compile a JSON library (cJSON, say) in with the plugin. They avoid snprintf, which
// pulls in libc's stdio and with it WASI imports; without them the plugin runs on the host's
// fast path.

#include <stdlib.h>
#include <string.h>

#include "provider_adapter.h"

typedef provider_adapter_string_t string_t;
typedef exports_bitrouter_plugin_adapter_stream_event_t event_t;

// ------------------------------------------------------------------ a growable byte buffer

typedef struct {
  uint8_t *ptr;
  size_t len, cap;
} buf_t;

static void put(buf_t *b, const void *s, size_t n) {
  if (n == 0) return;
  if (b->len + n > b->cap) {
    b->cap = (b->len + n) * 2 + 64;
    b->ptr = realloc(b->ptr, b->cap);
  }
  memcpy(b->ptr + b->len, s, n);
  b->len += n;
}

static void put_str(buf_t *b, const char *s) { put(b, s, strlen(s)); }

static void put_u64(buf_t *b, uint64_t n) {
  char digits[20];
  size_t i = 0;
  do digits[sizeof digits - ++i] = (char)('0' + n % 10);
  while (n /= 10);
  put(b, digits + sizeof digits - i, i);
}

// `s` as a JSON string, quotes included.
static void put_json_string(buf_t *b, const uint8_t *s, size_t n) {
  put_str(b, "\"");
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '"' || s[i] == '\\') {
      put_str(b, "\\");
      put(b, &s[i], 1);
    } else if (s[i] < 0x20) {
      char esc[] = {'\\', 'u', '0', '0', "0123456789abcdef"[s[i] >> 4], "0123456789abcdef"[s[i] & 15]};
      put(b, esc, sizeof esc);
    } else {
      put(b, &s[i], 1);
    }
  }
  put_str(b, "\"");
}

// ------------------------------------------------------------------ reading flat JSON objects

static const uint8_t *skip_ws(const uint8_t *p, const uint8_t *end) {
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
  return p;
}

// Past the string starting at `p` (a '"'), or NULL if it does not end.
static const uint8_t *skip_string(const uint8_t *p, const uint8_t *end) {
  for (p++; p < end; p++) {
    if (*p == '\\') p++;
    else if (*p == '"') return p + 1;
  }
  return NULL;
}

// Past the value starting at `p` (nested objects and arrays included), or NULL.
static const uint8_t *skip_value(const uint8_t *p, const uint8_t *end) {
  if (p < end && *p == '"') return skip_string(p, end);
  if (p < end && (*p == '{' || *p == '[')) {
    int depth = 0;
    while (p < end) {
      if (*p == '"') {
        if (!(p = skip_string(p, end))) return NULL;
        continue;
      }
      if (*p == '{' || *p == '[') depth++;
      if (*p == '}' || *p == ']') depth--;
      p++;
      if (depth == 0) return p;
    }
    return NULL;
  }
  const uint8_t *start = p;
  while (p < end && !strchr(",}] \t\r\n", *p)) p++;
  return p > start ? p : NULL;
}

// Finds the member `key` (NULL: none, only check the object) of the JSON object in
// [json, end): sets *value to where its value starts (NULL when absent). False when the text
// is not a JSON object.
static bool member(const uint8_t *json, const uint8_t *end, const char *key, const uint8_t **value) {
  *value = NULL;
  const uint8_t *p = skip_ws(json, end);
  if (p == end || *p != '{') return false;
  p = skip_ws(p + 1, end);
  if (p < end && *p == '}') return skip_ws(p + 1, end) == end;
  while (p < end && *p == '"') {
    const uint8_t *k = p + 1, *k_end = skip_string(p, end);
    if (!k_end) return false;
    p = skip_ws(k_end, end);
    if (p == end || *p != ':') return false;
    const uint8_t *v = skip_ws(p + 1, end);
    if (!(p = skip_value(v, end))) return false;
    if (key && (size_t)(k_end - 1 - k) == strlen(key) && memcmp(k, key, strlen(key)) == 0 && !*value) *value = v;
    p = skip_ws(p, end);
    if (p < end && *p == ',') p = skip_ws(p + 1, end);
    else if (p < end && *p == '}') return skip_ws(p + 1, end) == end;
    else return false;
  }
  return false;
}

// The string value of `key` (escapes decoded, malloc'ed) into *out; false if it is not a string.
static bool get_string(const uint8_t *json, const uint8_t *end, const char *key, string_t *out) {
  const uint8_t *p;
  if (!member(json, end, key, &p) || !p || *p != '"') return false;
  buf_t b = {0};
  for (p++; p < end && *p != '"'; p++) {
    if (*p != '\\') {
      put(&b, p, 1);
      continue;
    }
    p++;
    const char *plain = *p ? strchr("\"\\/bfnrt", *p) : NULL;
    if (plain) {
      put(&b, &"\"\\/\b\f\n\r\t"[plain - "\"\\/bfnrt"], 1);
    } else if (*p == 'u' && end - p > 4) {
      unsigned cp = (unsigned)strtoul((char[5]){p[1], p[2], p[3], p[4], 0}, NULL, 16);
      p += 4;
      if (cp >= 0xd800 && cp < 0xdc00 && end - p > 6 && p[1] == '\\' && p[2] == 'u') {
        unsigned lo = (unsigned)strtoul((char[5]){p[3], p[4], p[5], p[6], 0}, NULL, 16);
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        p += 6;
      }
      uint8_t u[4];
      size_t n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
      if (n == 1) u[0] = (uint8_t)cp;
      if (n == 2) u[0] = 0xc0 | (cp >> 6), u[1] = 0x80 | (cp & 0x3f);
      if (n == 3) u[0] = 0xe0 | (cp >> 12), u[1] = 0x80 | ((cp >> 6) & 0x3f), u[2] = 0x80 | (cp & 0x3f);
      if (n == 4)
        u[0] = 0xf0 | (cp >> 18), u[1] = 0x80 | ((cp >> 12) & 0x3f), u[2] = 0x80 | ((cp >> 6) & 0x3f),
        u[3] = 0x80 | (cp & 0x3f);
      put(&b, u, n);
    }
  }
  out->ptr = b.ptr;
  out->len = b.len;
  return true;
}

// The non-negative integer value of `key`, else 0.
static uint64_t get_count(const uint8_t *json, const uint8_t *end, const char *key) {
  const uint8_t *p;
  uint64_t n = 0;
  if (!member(json, end, key, &p) || !p) return 0;
  for (; p < end && *p >= '0' && *p <= '9'; p++) n = n * 10 + (*p - '0');
  return p < end && (*p == '.' || *p == 'e' || *p == 'E') ? 0 : n;
}

static bool get_true(const uint8_t *json, const uint8_t *end, const char *key) {
  const uint8_t *p;
  return member(json, end, key, &p) && p && end - p >= 4 && memcmp(p, "true", 4) == 0;
}

static bitrouter_plugin_types_usage_t usage(const uint8_t *json, const uint8_t *end) {
  return (bitrouter_plugin_types_usage_t){
      .input_tokens = get_count(json, end, "input_tokens"),
      .output_tokens = get_count(json, end, "output_tokens"),
  };
}

static void upstream_error(exports_bitrouter_plugin_adapter_upstream_error_t *err, uint16_t status,
                           const char *message, bool retryable) {
  err->status = status;
  provider_adapter_string_dup(&err->message, message);
  err->retryable = retryable;
}

// ------------------------------------------------------------------ the adapter

// `config` is the plugin's config from bitrouter.yaml as JSON text (`null` when absent).
// Return false with `err` set (provider_adapter_string_dup) to refuse it.
bool exports_bitrouter_plugin_adapter_configure(string_t *config, string_t *err) {
  (void)err;
  provider_adapter_string_free(config);
  return true;
}

// The canonical request (any caller's dialect) -> this API's HTTP request. `model_id` is the
// endpoint's model. Return false with `err` set for a request this API cannot express.
bool exports_bitrouter_plugin_adapter_encode_request(exports_bitrouter_plugin_adapter_request_t *request,
                                                     string_t *model_id,
                                                     exports_bitrouter_plugin_adapter_http_request_t *ret,
                                                     string_t *err) {
  buf_t prompt = {0};
  bool ok = true;
  for (size_t m = 0; m < request->messages.len && ok; m++) {
    bitrouter_plugin_types_message_t *msg = &request->messages.ptr[m];
    for (size_t i = 0; i < msg->content.len; i++) {
      bitrouter_plugin_types_part_t *part = &msg->content.ptr[i];
      if (part->tag == BITROUTER_PLUGIN_TYPES_PART_TEXT) {
        if (msg->role != BITROUTER_PLUGIN_TYPES_ROLE_TOOL) put(&prompt, part->val.text.text.ptr, part->val.text.text.len);
      } else if (part->tag != BITROUTER_PLUGIN_TYPES_PART_REASONING) {
        provider_adapter_string_dup(err, "this adapter takes text only");
        ok = false;
        break;
      }
    }
    put_str(&prompt, "\n");
  }
  if (ok) {
    buf_t body = {0};
    put_str(&body, "{\"model\":");
    put_json_string(&body, model_id->ptr, model_id->len);
    put_str(&body, ",\"prompt\":");
    put_json_string(&body, prompt.ptr, prompt.len);
    put_str(&body, ",\"max_tokens\":");
    if (request->max_tokens.is_some) put_u64(&body, request->max_tokens.val);
    else put_str(&body, "null");
    put_str(&body, request->stream ? ",\"stream\":true}" : ",\"stream\":false}");

    provider_adapter_string_dup(&ret->method, "POST");
    provider_adapter_string_dup(&ret->path, "/v1/generate");
    ret->headers.len = 1;
    ret->headers.ptr = malloc(sizeof *ret->headers.ptr);
    provider_adapter_string_dup(&ret->headers.ptr[0].f0, "content-type");
    provider_adapter_string_dup(&ret->headers.ptr[0].f1, "application/json");
    ret->body.ptr = body.ptr;
    ret->body.len = body.len;
  }
  free(prompt.ptr);
  exports_bitrouter_plugin_adapter_request_free(request);
  provider_adapter_string_free(model_id);
  return ok;
}

// A whole answer (any status) -> a canonical response, or false with `err` set (`retryable`
// lets the gateway fail over to the next endpoint).
bool exports_bitrouter_plugin_adapter_decode_response(exports_bitrouter_plugin_adapter_http_response_t *response,
                                                      exports_bitrouter_plugin_adapter_response_t *ret,
                                                      exports_bitrouter_plugin_adapter_upstream_error_t *err) {
  const uint8_t *json = response->body.ptr, *end = json + response->body.len;
  uint16_t status = response->status;
  bool ok = status >= 200 && status < 300;
  if (!ok) {
    err->status = status;
    err->retryable = status == 429 || status >= 500;
    if (!get_string(json, end, "error", &err->message)) provider_adapter_string_dup(&err->message, "upstream error");
  } else {
    memset(ret, 0, sizeof *ret); // empty id and model: the gateway fills in the endpoint's
    ret->content.len = 1;
    ret->content.ptr = calloc(1, sizeof *ret->content.ptr);
    ret->content.ptr[0].tag = BITROUTER_PLUGIN_TYPES_PART_TEXT;
    get_string(json, end, "text", &ret->content.ptr[0].val.text.text);
    ret->finish.tag = BITROUTER_PLUGIN_TYPES_FINISH_REASON_STOP;
    ret->usage = usage(json, end);
  }
  exports_bitrouter_plugin_adapter_http_response_free(response);
  return ok;
}

// The next chunk of a streamed body -> events, plus the state to get back with the next
// chunk: here the bytes of a line not finished yet. `end` is true once, after the last chunk.
bool exports_bitrouter_plugin_adapter_decode_stream(provider_adapter_list_u8_t *state, provider_adapter_list_u8_t *chunk,
                                                    bool end, exports_bitrouter_plugin_adapter_stream_step_t *ret,
                                                    exports_bitrouter_plugin_adapter_upstream_error_t *err) {
  buf_t all = {0};
  put(&all, state->ptr, state->len);
  put(&all, chunk->ptr, chunk->len);
  provider_adapter_list_u8_free(state);
  provider_adapter_list_u8_free(chunk);

  // Whole lines end at the last newline (everything, at the end of the body).
  size_t cut = all.len;
  if (!end)
    while (cut > 0 && all.ptr[cut - 1] != '\n') cut--;
  buf_t events = {0}; // of event_t
  bool ok = true;
  for (size_t start = 0; start < cut && ok;) {
    size_t stop = start;
    while (stop < cut && all.ptr[stop] != '\n') stop++;
    const uint8_t *line = all.ptr + start, *line_end = all.ptr + stop;
    const uint8_t *unused;
    if (skip_ws(line, line_end) == line_end) {
      // an empty line
    } else if (!member(line, line_end, NULL, &unused)) {
      upstream_error(err, 502, "bad stream line: not a JSON object", true);
      ok = false;
    } else {
      event_t e = {0};
      if (get_string(line, line_end, "text", &e.val.text_delta)) {
        e.tag = BITROUTER_PLUGIN_TYPES_STREAM_EVENT_TEXT_DELTA;
        put(&events, &e, sizeof e);
      }
      if (get_true(line, line_end, "done")) {
        e = (event_t){.tag = BITROUTER_PLUGIN_TYPES_STREAM_EVENT_USAGE, .val.usage = usage(line, line_end)};
        put(&events, &e, sizeof e);
        e = (event_t){.tag = BITROUTER_PLUGIN_TYPES_STREAM_EVENT_FINISH};
        e.val.finish.tag = BITROUTER_PLUGIN_TYPES_FINISH_REASON_STOP;
        put(&events, &e, sizeof e);
      }
    }
    start = stop + 1;
  }
  if (ok) {
    ret->events.ptr = (event_t *)events.ptr;
    ret->events.len = events.len / sizeof(event_t);
    ret->state.len = all.len - cut;
    ret->state.ptr = malloc(ret->state.len ? ret->state.len : 1);
    memcpy(ret->state.ptr, all.ptr + cut, ret->state.len);
  } else {
    exports_bitrouter_plugin_adapter_list_stream_event_t list = {(event_t *)events.ptr, events.len / sizeof(event_t)};
    exports_bitrouter_plugin_adapter_list_stream_event_free(&list);
  }
  free(all.ptr);
  return ok;
}
