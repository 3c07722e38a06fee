// {{name}}: a provider adapter for a small JSON API: `POST /v1/generate` with
// `{"model", "prompt", "max_tokens", "stream"}`, answered by
// `{"text", "input_tokens", "output_tokens"}` (or `{"error"}`), and streamed as one JSON
// object per line, `{"text": ...}`, then `{"done": true, "input_tokens", "output_tokens"}`.
// Pure translation: the host sends the request (adding the API key) and hands back the
// answer; the stream's unfinished line is the state the host keeps between chunks. Change
// the three functions below to speak your provider's API.
//
// WIT types in JavaScript: records are objects with camelCase fields, variants are
// `{ tag, val }`, enums are strings, `option<T>` is the value or `undefined`, u64 is a
// BigInt, list<u8> is a Uint8Array; return the ok value of a `result`, throw its error.

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const NEWLINE = 10;

export const adapter = {
  // `config` is the plugin's config from bitrouter.yaml as JSON text (`null` when absent).
  configure(config) {},

  // The canonical request (any caller's dialect) -> this API's HTTP request. `modelId` is
  // the endpoint's model. Throw a string for a request this API cannot express.
  encodeRequest(request, modelId) {
    let prompt = "";
    for (const message of request.messages) {
      for (const part of message.content) {
        if (part.tag === "text") {
          if (message.role !== "tool") prompt += part.val.text;
        } else if (part.tag !== "reasoning") {
          throw "this adapter takes text only";
        }
      }
      prompt += "\n";
    }
    const body = {
      model: modelId,
      prompt,
      max_tokens: request.maxTokens === undefined ? null : Number(request.maxTokens),
      stream: request.stream,
    };
    return {
      method: "POST",
      path: "/v1/generate",
      headers: [["content-type", "application/json"]],
      body: encoder.encode(JSON.stringify(body)),
    };
  },

  // A whole answer (any status) -> a canonical response, or throw an upstream error
  // (`retryable` lets the gateway fail over to the next endpoint).
  decodeResponse(response) {
    let v = null;
    try {
      v = JSON.parse(decoder.decode(response.body));
    } catch {}
    if (response.status < 200 || response.status >= 300) {
      throw {
        status: response.status,
        message: typeof v?.error === "string" ? v.error : "upstream error",
        retryable: response.status === 429 || response.status >= 500,
      };
    }
    return {
      id: "",
      model: "",
      content: [{ tag: "text", val: { text: typeof v?.text === "string" ? v.text : "", extra: undefined } }],
      finish: { tag: "stop" },
      usage: usage(v),
    };
  },

  // The next chunk of a streamed body -> events, plus the state to get back with the next
  // chunk: here the bytes of a line not finished yet. `end` is true once, after the last.
  decodeStream(state, chunk, end) {
    const buf = new Uint8Array(state.length + chunk.length);
    buf.set(state);
    buf.set(chunk, state.length);
    const cut = end ? buf.length : buf.lastIndexOf(NEWLINE) + 1;
    const events = [];
    for (const line of decoder.decode(buf.subarray(0, cut)).split("\n")) {
      if (line === "") continue;
      let v;
      try {
        v = JSON.parse(line);
      } catch (e) {
        throw { status: 502, message: `bad stream line: ${e}`, retryable: true };
      }
      if (typeof v?.text === "string") events.push({ tag: "text-delta", val: v.text });
      if (v?.done === true) {
        events.push({ tag: "usage", val: usage(v) });
        events.push({ tag: "finish", val: { tag: "stop" } });
      }
    }
    return { state: buf.slice(cut), events };
  },
};

function u64(x) {
  return BigInt(Number.isSafeInteger(x) && x >= 0 ? x : 0);
}

function usage(v) {
  return {
    inputTokens: u64(v?.input_tokens),
    cacheReadTokens: 0n,
    cacheWriteTokens: 0n,
    outputTokens: u64(v?.output_tokens),
    reasoningTokens: 0n,
  };
}
