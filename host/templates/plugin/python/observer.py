"""{{name}}: an observer that logs how many requests and tokens each batch held, and the
totals since it started. An observer keeps one instance across batches (the host starts a
fresh one only after a failed call), so totals may live in module variables."""

from typing import List

from wit_world import exports
from wit_world.imports.host import Level, log
from wit_world.imports.types import RequestEvent

total_requests = 0
total_tokens = 0


class Observe(exports.Observe):
    def configure(self, config: str) -> None:
        # `config` is the plugin's config from bitrouter.yaml as JSON text (`null` when
        # absent); raise componentize_py_types.Err("why") to refuse it.
        pass

    def observe(self, batch: List[RequestEvent]) -> None:
        # A batch of finished requests, oldest first. Each event also has the route, the
        # endpoint, the status, latency, cost and guardrail findings (wit/types.wit,
        # `request-event`); never the text of the request.
        global total_requests, total_tokens
        tokens = sum(e.usage.input_tokens + e.usage.output_tokens for e in batch)
        total_requests += len(batch)
        total_tokens += tokens
        log(
            Level.INFO,
            f"{len(batch)} requests, {tokens} tokens "
            f"(since start: {total_requests} requests, {total_tokens} tokens)",
        )
