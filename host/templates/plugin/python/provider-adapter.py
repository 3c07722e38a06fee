"""{{name}}: a provider adapter for a small JSON API: ``POST /v1/generate`` with
``{"model", "prompt", "max_tokens", "stream"}``, answered by
``{"text", "input_tokens", "output_tokens"}`` (or ``{"error"}``), and streamed as one JSON
object per line, ``{"text": ...}``, then ``{"done": true, "input_tokens", "output_tokens"}``.
Pure translation: the host sends the request (adding the API key) and hands back the
answer; the stream's unfinished line is the state the host keeps between chunks. Change the
three methods below to speak your provider's API.

WIT types in Python: records are dataclasses, variants are one class per case
(``Part_Text(TextPart(...))``), enums are ``Enum``s, ``option<T>`` is the value or ``None``,
``list<u8>`` is ``bytes``; return the ok value of a ``result``, raise ``Err(error)`` for its
error."""

import json
from typing import Any

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.adapter import HttpRequest, HttpResponse, StreamStep, UpstreamError
from wit_world.imports.types import (
    FinishReason_Stop,
    Part_Reasoning,
    Part_Text,
    Request,
    Response,
    Role,
    StreamEvent_Finish,
    StreamEvent_TextDelta,
    StreamEvent_Usage,
    TextPart,
    Usage,
)


class Adapter(exports.Adapter):
    def configure(self, config: str) -> None:
        # `config` is the plugin's config from bitrouter.yaml as JSON text (`null` when absent).
        pass

    def encode_request(self, request: Request, model_id: str) -> HttpRequest:
        # The canonical request (any caller's dialect) -> this API's HTTP request. `model_id`
        # is the endpoint's model. Raise Err("why") for a request this API cannot express.
        prompt = ""
        for message in request.messages:
            for part in message.content:
                if isinstance(part, Part_Text):
                    if message.role != Role.TOOL:
                        prompt += part.value.text
                elif not isinstance(part, Part_Reasoning):
                    raise Err("this adapter takes text only")
            prompt += "\n"
        body = {
            "model": model_id,
            "prompt": prompt,
            "max_tokens": request.max_tokens,
            "stream": request.stream,
        }
        return HttpRequest(
            method="POST",
            path="/v1/generate",
            headers=[("content-type", "application/json")],
            body=json.dumps(body).encode(),
        )

    def decode_response(self, response: HttpResponse) -> Response:
        # A whole answer (any status) -> a canonical response, or raise Err(UpstreamError)
        # (`retryable` lets the gateway fail over to the next endpoint).
        try:
            v = json.loads(response.body)
        except ValueError:
            v = None
        if not 200 <= response.status < 300:
            error = v.get("error") if isinstance(v, dict) else None
            raise Err(
                UpstreamError(
                    status=response.status,
                    message=error if isinstance(error, str) else "upstream error",
                    retryable=response.status == 429 or response.status >= 500,
                )
            )
        text = v.get("text") if isinstance(v, dict) else None
        return Response(
            id="",
            model="",
            content=[Part_Text(TextPart(text=text if isinstance(text, str) else "", extra=None))],
            finish=FinishReason_Stop(),
            usage=usage(v),
        )

    def decode_stream(self, state: bytes, chunk: bytes, end: bool) -> StreamStep:
        # The next chunk of a streamed body -> events, plus the state to get back with the
        # next chunk: here the bytes of a line not finished yet. `end` is true once, after
        # the last chunk.
        lines = (state + chunk).split(b"\n")
        rest = b"" if end else lines.pop()
        events = []
        for line in lines:
            if not line:
                continue
            try:
                v = json.loads(line)
            except ValueError as e:
                raise Err(UpstreamError(status=502, message=f"bad stream line: {e}", retryable=True))
            if not isinstance(v, dict):
                continue
            if isinstance(v.get("text"), str):
                events.append(StreamEvent_TextDelta(v["text"]))
            if v.get("done") is True:
                events.append(StreamEvent_Usage(usage(v)))
                events.append(StreamEvent_Finish(FinishReason_Stop()))
        return StreamStep(state=rest, events=events)


def count(v: Any, key: str) -> int:
    n = v.get(key) if isinstance(v, dict) else None
    return n if isinstance(n, int) and not isinstance(n, bool) and n >= 0 else 0


def usage(v: Any) -> Usage:
    return Usage(
        input_tokens=count(v, "input_tokens"),
        cache_read_tokens=0,
        cache_write_tokens=0,
        output_tokens=count(v, "output_tokens"),
        reasoning_tokens=0,
    )
