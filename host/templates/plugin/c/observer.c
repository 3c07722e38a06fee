// {{name}}: an observer that logs how many requests and tokens each batch held, and the
// totals since it started. An observer keeps one instance across batches (the host starts a
// fresh one only after a failed call), so totals may live in globals. Bindings:
// bindings/observer.h, generated from wit/ by wit-bindgen's C generator (see build.sh).
//
// Ownership: arguments belong to the callee (free them with the generated *_free
// functions); strings and lists returned to the host must be malloc'ed.

#include "observer.h"

static uint64_t total_requests = 0;
static uint64_t total_tokens = 0;

// Text helpers that write at `p` and return the new end. (snprintf would do, but it pulls in
// libc's stdio and with it WASI imports; without them the plugin runs on the host's fast path.)
static char *put_text(char *p, const char *s) {
  while (*s) *p++ = *s++;
  return p;
}

static char *put_u64(char *p, uint64_t n) {
  char digits[20];
  int i = 0;
  do digits[i++] = (char)('0' + n % 10);
  while (n /= 10);
  while (i) *p++ = digits[--i];
  return p;
}

// `config` is the plugin's config from bitrouter.yaml as JSON text (`null` when absent).
// Return false with `err` set (observer_string_dup) to refuse it.
bool exports_bitrouter_plugin_observe_configure(observer_string_t *config, observer_string_t *err) {
  (void)err;
  observer_string_free(config);
  return true;
}

// A batch of finished requests, oldest first. Each event also has the route, the endpoint,
// the status, latency, cost and guardrail findings (bitrouter_plugin_types_request_event_t);
// never the text of the request.
void exports_bitrouter_plugin_observe_observe(exports_bitrouter_plugin_observe_list_request_event_t *batch) {
  uint64_t tokens = 0;
  for (size_t i = 0; i < batch->len; i++) {
    tokens += batch->ptr[i].usage.input_tokens + batch->ptr[i].usage.output_tokens;
  }
  total_requests += batch->len;
  total_tokens += tokens;

  // "2 requests, 30 tokens (since start: 6 requests, 90 tokens)"
  char line[160], *p = line;
  p = put_u64(p, batch->len);
  p = put_text(p, " requests, ");
  p = put_u64(p, tokens);
  p = put_text(p, " tokens (since start: ");
  p = put_u64(p, total_requests);
  p = put_text(p, " requests, ");
  p = put_u64(p, total_tokens);
  p = put_text(p, " tokens)");
  observer_string_t message = {(uint8_t *)line, (size_t)(p - line)}; // the host copies it
  bitrouter_plugin_host_log(BITROUTER_PLUGIN_HOST_LEVEL_INFO, &message);

  // This instance lives on: free the batch, or memory grows with every call.
  exports_bitrouter_plugin_observe_list_request_event_free(batch);
}
