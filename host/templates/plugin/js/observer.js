// {{name}}: an observer that logs how many requests and tokens each batch held, and the
// totals since it started. An observer keeps one instance across batches (the host starts a
// fresh one only after a failed call), so totals may live in module variables.

import { log } from "bitrouter:plugin/host@0.1.0";

let totalRequests = 0;
let totalTokens = 0;

export const observe = {
  // `config` is the plugin's config from bitrouter.yaml as JSON text (`null` when absent);
  // throw a string to refuse it.
  configure(config) {},

  // A batch of finished requests, oldest first. Each event also has the route, the endpoint,
  // the status, latency, cost and guardrail findings (wit/types.wit, `request-event`, in
  // camelCase: `requestId`, `latencyUs`, `guardrailFindings`); never the text of the request.
  // u64 fields are BigInts.
  observe(batch) {
    let tokens = 0;
    for (const event of batch) {
      tokens += Number(event.usage.inputTokens + event.usage.outputTokens);
    }
    totalRequests += batch.length;
    totalTokens += tokens;
    log(
      "info",
      `${batch.length} requests, ${tokens} tokens (since start: ${totalRequests} requests, ${totalTokens} tokens)`,
    );
  },
};
