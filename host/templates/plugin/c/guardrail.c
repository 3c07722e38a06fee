// {{name}}: a guardrail that flags sample ids, `SAMPLE-` and four digits. The host runs the
// declared regex natively and calls `check` with the candidates (UTF-8 byte spans); `scan` is
// for patterns a regex cannot express (this one has none). Bindings: bindings/guardrail.h,
// generated from wit/ by wit-bindgen's C generator (see build.sh to regenerate).
//
// Ownership: arguments belong to the callee (free them with the generated *_free
// functions); strings and lists returned to the host must be malloc'ed (the host's
// post-return functions free them). plugin.toml says `stateless`, so calls may share a warm
// instance: free what you are given, and keep nothing per request in globals.

#include <stdlib.h>
#include <string.h>

#include "guardrail.h"

static void set_string(guardrail_string_t *s, const char *text) {
  guardrail_string_dup(s, text);
}

// `config` is the plugin's config from bitrouter.yaml as JSON text (`null` when absent).
// Return false with `err` set (guardrail_string_dup) to refuse it.
bool exports_bitrouter_plugin_guard_configure(guardrail_string_t *config, guardrail_string_t *err) {
  (void)err;
  guardrail_string_free(config);
  return true;
}

void exports_bitrouter_plugin_guard_describe(exports_bitrouter_plugin_guard_list_pattern_t *ret) {
  ret->len = 1;
  ret->ptr = calloc(1, sizeof(exports_bitrouter_plugin_guard_pattern_t));
  exports_bitrouter_plugin_guard_pattern_t *p = &ret->ptr[0];
  set_string(&p->id, "sample-id");
  p->directions = BITROUTER_PLUGIN_TYPES_DIRECTIONS_REQUEST | BITROUTER_PLUGIN_TYPES_DIRECTIONS_RESPONSE;
  p->default_action = BITROUTER_PLUGIN_TYPES_ACTION_WARN;
  set_string(&p->description, "A sample id (SAMPLE-NNNN)");
  p->regex.is_some = true;
  set_string(&p->regex.val, "SAMPLE-\\d{4}");
  p->max_match_len = 11;
}

void exports_bitrouter_plugin_guard_check(guardrail_string_t *pattern_id, guardrail_string_t *text,
                                          exports_bitrouter_plugin_guard_list_span_t *candidates,
                                          exports_bitrouter_plugin_guard_list_finding_t *ret) {
  // Keep every candidate the regex found (drop or adjust some here).
  ret->len = candidates->len;
  ret->ptr = calloc(candidates->len ? candidates->len : 1, sizeof(exports_bitrouter_plugin_guard_finding_t));
  for (size_t i = 0; i < candidates->len; i++) {
    ret->ptr[i].pattern.ptr = malloc(pattern_id->len ? pattern_id->len : 1);
    memcpy(ret->ptr[i].pattern.ptr, pattern_id->ptr, pattern_id->len);
    ret->ptr[i].pattern.len = pattern_id->len;
    ret->ptr[i].span = candidates->ptr[i];
    ret->ptr[i].replacement.is_some = false;
  }
  guardrail_string_free(pattern_id);
  guardrail_string_free(text);
  exports_bitrouter_plugin_guard_list_span_free(candidates);
}

void exports_bitrouter_plugin_guard_scan(exports_bitrouter_plugin_guard_direction_t direction, guardrail_string_t *text,
                                         exports_bitrouter_plugin_guard_list_finding_t *ret) {
  (void)direction;
  guardrail_string_free(text);
  ret->len = 0;
  ret->ptr = NULL;
}
