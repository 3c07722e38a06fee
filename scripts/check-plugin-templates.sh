#!/usr/bin/env bash
# Scaffolds a plugin of every world in every language with `bitrouter plugin new`, builds
# each with the build.sh the scaffold ships, and runs the result through `bitrouter plugin
# test`, checking that it does what its template says: the templates a user starts from must
# build and work, not only exist.
#
#   guardrail         flags SAMPLE-1234 at its byte span, and nothing in a text without one
#   observer          logs the requests and tokens of a sample batch, and the totals across
#                     two batches (its instance is kept between batches)
#   provider-adapter  encodes a chat request as `POST /v1/generate`, decodes an answer, an
#                     upstream error (retryable 503) and a stream cut in the middle of a line
#
# Also checks that the C templates' committed bindings are what wit-bindgen-c generates from
# wit/ today (scripts/build-polyglot-plugins.sh writes a fresh copy to
# target/polyglot/c-bindings/), and installs the JavaScript template's package-lock.json with
# `npm ci` (from npm's cache, which the example's install filled).
#
# Needs the toolchains of scripts/build-plugins.sh and scripts/install-polyglot-toolchains.sh,
# python3, and a built bitrouter binary.
# Usage: scripts/check-plugin-templates.sh [BITROUTER_BIN] [LANG | LANG:WORLD ...]
#   LANG: rust js python c; WORLD: guardrail observer provider-adapter (default: all of them)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=${1:-target/debug/bitrouter}
shift || true
BIN=$(realpath "$BIN")
WORLDS=(guardrail observer provider-adapter)
cases=()
for arg in "${@:-rust js python c}"; do
  for a in $arg; do
    case $a in
      *:*) cases+=("$a") ;;
      *) for w in "${WORLDS[@]}"; do cases+=("$a:$w"); done ;;
    esac
  done
done
export PATH="$ROOT/.venv/bin:$PATH"
say() { echo "check-plugin-templates: $*"; }
fail() {
  echo "check-plugin-templates: $*" >&2
  exit 1
}
now() { date +%s.%N; }
since() { awk "BEGIN{printf \"%.1f\", $(now) - $1}"; }

# ------------------------------------------------------------------ committed C bindings
fresh="$ROOT/target/polyglot/c-bindings"
committed="$ROOT/host/templates/plugin/c/bindings"
if [ -d "$fresh" ]; then
  for f in "$committed"/* "$fresh"/*; do
    name=$(basename "$f")
    if ! cmp -s "$committed/$name" "$fresh/$name"; then
      fail "host/templates/plugin/c/bindings/$name differs from a fresh wit-bindgen-c output (or one of them is missing);
  copy them: cp $fresh/* $committed/"
    fi
  done
  say "the C templates' bindings match a fresh generation"
else
  say "no $fresh (run scripts/build-polyglot-plugins.sh c): C bindings not compared"
fi

# ------------------------------------------------------------------ what each world must do
# check WORLD FILE...: reads the JSON lines `plugin test` printed, exits 1 saying what is wrong.
check() {
  python3 - "$@" <<'PY'
import json, sys

world, files = sys.argv[1], sys.argv[2:]
runs = [[json.loads(l) for l in open(f) if l.strip()] for f in files]


def expect(ok, what, got):
    if not ok:
        sys.exit(f"{what}; got:\n" + "\n".join(json.dumps(g) for g in got))


if world == "guardrail":
    hit, clean = runs
    spans = {(f["pattern"], f["start"], f["end"]) for f in hit}
    expect(spans == {("sample-id", 6, 17)} and len(hit) == 2,
           "expected sample-id at bytes 6..17 of 'order SAMPLE-1234 shipped', both directions", hit)
    expect(clean == [], "expected no finding in 'nothing to see here'", clean)
elif world == "observer":
    (logs,) = runs
    want = [
        {"batch": 1, "level": "info", "message": "3 requests, 55 tokens (since start: 3 requests, 55 tokens)"},
        {"batch": 2, "level": "info", "message": "3 requests, 55 tokens (since start: 6 requests, 110 tokens)"},
    ]
    expect(logs == want, "expected one log line per batch with the batch's and the running totals", logs)
else:
    ok, failed = runs
    calls = {}
    for line in ok:
        calls.setdefault(line["call"], []).append(line)
    (enc,) = calls.get("encode-request", [None])
    expect(enc and enc["method"] == "POST" and enc["path"] == "/v1/generate"
           and ["content-type", "application/json"] in enc["headers"]
           and enc["body"] == {"model": "gen-1", "prompt": "Hello there\n", "max_tokens": None, "stream": True},
           "expected POST /v1/generate with the model, the prompt and stream: true", ok)
    (dec,) = calls.get("decode-response", [None])
    answer = dec and dec.get("openai")
    expect(answer and answer["choices"][0]["message"]["content"] == "Hi!" and answer["model"] == "gen-1"
           and answer["usage"]["prompt_tokens"] == 3 and answer["usage"]["completion_tokens"] == 2,
           "expected the answer 'Hi!' from gen-1, 3 + 2 tokens", ok)
    steps = calls.get("decode-stream", [])
    events = [e for s in steps for e in s.get("events", [])]
    expect(len(steps) == 3 and events == [
        {"text_delta": "Hel"}, {"text_delta": "lo, wörld"},
        {"usage": {"input_tokens": 4, "cache_read_tokens": 0, "cache_write_tokens": 0,
                   "output_tokens": 3, "reasoning_tokens": 0}},
        {"finish": "stop"},
    ], "expected the deltas 'Hel' and 'lo, wörld', usage 4 + 3, finish", steps)
    err = [l for l in failed if l["call"] == "decode-response"]
    expect(len(err) == 1 and err[0].get("upstream_error") == {"status": 503, "message": "overloaded", "retryable": True},
           "expected a retryable upstream error 503 'overloaded'", failed)
PY
}

# ------------------------------------------------------------------ scaffold, build, run
# test_case LANG WORLD BUILT-SECONDS: runs the built plugin through `plugin test` and checks
# what it printed. It runs in the background while the next template builds: the first load
# of a JavaScript or Python component compiles it (~20 s in a debug binary), which overlaps
# with componentize's mostly single-threaded build on a 2-core machine.
test_case() {
  local lang=$1 world=$2 built=$3 started
  started=$(now)
  local name="tmpl-$lang-$world"
  local wasm="$WORK/$name/target/plugin/$name.wasm" out="$WORK/$name.out"
  # The gateway's default 10 ms call deadline fits the interpreted runtimes in a release
  # build; this is a debug binary on a shared CI machine.
  local deadline=()
  case $lang in js | python) deadline=(--call-deadline 2s) ;; esac
  test_plugin() { # test_plugin N ARGS...: runs `plugin test`, its JSON lines into $out.N
    local n=$1
    shift
    if ! "$BIN" plugin test "$wasm" "${deadline[@]}" "$@" >"$out.$n" 2>"$out.$n.err"; then
      cat "$out.$n" "$out.$n.err" >&2
      fail "bitrouter plugin test failed on the $lang $world template"
    fi
  }
  case $world in
    guardrail)
      test_plugin 1 --text "order SAMPLE-1234 shipped"
      test_plugin 2 --text "nothing to see here"
      ;;
    observer)
      test_plugin 1
      ;;
    provider-adapter)
      test_plugin 1 --text "Hello there" --model gen-1 --stream \
        --response '{"text":"Hi!","input_tokens":3,"output_tokens":2}' \
        --stream-response $'{"text":"Hel"}\n{"text":"lo, wörld"}\n{"done":true,"input_tokens":4,"output_tokens":3}\n'
      test_plugin 2 --text "Hello there" --model gen-1 --status 503 --response '{"error":"overloaded"}'
      ;;
  esac
  local files=("$out".[0-9]) msg
  if ! msg=$(check "$world" "${files[@]}" 2>&1); then
    fail "the $lang $world template built but does not do what it says: $msg"
  fi
  printf '%-6s %-16s build %5ss  test %5ss\n' "$lang" "$world" "$built" "$(since "$started")" >"$WORK/$name.timing"
  say "$lang $world: builds, loads and works (build ${built}s, test $(since "$started")s)"
}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
js_modules=""
testing="" # the background test_case, if any
wait_test() {
  if [ -n "$testing" ]; then
    wait "$testing" || exit 1
    testing=""
  fi
}
started_all=$(now)
for c in "${cases[@]}"; do
  lang=${c%%:*} world=${c#*:}
  name="tmpl-$lang-$world"
  dir="$WORK/$name"
  "$BIN" plugin new --lang "$lang" --world "$world" --dir "$WORK" "$name" >/dev/null
  if [ "$lang" = js ]; then
    # The first JavaScript project installs its package-lock.json (from npm's cache: the
    # example pins the same packages); the others share that node_modules.
    if [ -z "$js_modules" ]; then
      started=$(now)
      (cd "$dir" && npm ci --prefer-offline --no-audit --no-fund --loglevel=error >"$WORK/npm.log" 2>&1) ||
        { cat "$WORK/npm.log" >&2; fail "npm ci failed on the JavaScript template's package-lock.json"; }
      js_modules="$dir/node_modules"
      say "js: npm ci of the template's package-lock.json ($(since "$started")s)"
    else
      ln -s "$js_modules" "$dir/node_modules"
    fi
  fi
  if [ "$lang" = rust ]; then
    # The target dir and RUSTFLAGS of scripts/build-plugins.sh: the standard library it
    # built for wasm32 (-Zbuild-std, a minute or more) is reused instead of built again.
    export CARGO_TARGET_DIR="$ROOT/target/guests"
    export RUSTFLAGS="--remap-path-prefix=$ROOT=/bitrouter --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo"
    # build.sh copies from the crate's own target/; point it at the shared one.
    ln -s "$CARGO_TARGET_DIR" "$dir/target"
    mkdir -p "$CARGO_TARGET_DIR"
  fi
  started=$(now)
  if ! (cd "$dir" && ./build.sh >"$WORK/$name.log" 2>&1); then
    cat "$WORK/$name.log" >&2
    fail "the $lang $world template did not build"
  fi
  built=$(since "$started")
  unset CARGO_TARGET_DIR RUSTFLAGS
  wait_test
  test_case "$lang" "$world" "$built" &
  testing=$!
done
wait_test
say "all ${#cases[@]} templates build and work ($(since "$started_all")s):"
for c in "${cases[@]}"; do
  sed 's/^/  /' "$WORK/tmpl-${c%%:*}-${c#*:}.timing"
done
