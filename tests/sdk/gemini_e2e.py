#!/usr/bin/env python3
"""End-to-end check of BitRouter with Google's official Gen AI Python SDK (google-genai).

Run against the same gateway as sdk_e2e.py (routes via-openai, via-anthropic, via-gemini on
the mock upstream):

    python tests/sdk/gemini_e2e.py --base-url http://127.0.0.1:8787

For every route it checks, through the SDK's own client: plain generate_content (text, usage,
the x-bitrouter-upstream header), a stream that reassembles to the same text, a function call
(plain and streamed, arguments filled from the declared schema) and the function response
sent back, and an unknown model raising the SDK's 404 ClientError. One line per check; the
first failure raises (non-zero exit).
"""

from __future__ import annotations

import argparse

from google import genai
from google.genai import errors, types

ROUTES = {
    "via-openai": "mock-openai:mock-gpt",
    "via-anthropic": "mock-anthropic:mock-claude",
    "via-gemini": "mock-google:mock-gemini",
}
PROMPT = "Say hello in one short sentence."
WEATHER = "What is the weather in Paris right now?"

WEATHER_TOOL = types.Tool(
    function_declarations=[
        types.FunctionDeclaration(
            name="get_weather",
            description="Current weather for a city.",
            parameters_json_schema={
                "type": "object",
                "properties": {"city": {"type": "string", "description": "City name"}},
                "required": ["city"],
            },
        )
    ]
)
TOOL_CONFIG = types.GenerateContentConfig(
    tools=[WEATHER_TOOL],
    automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
)


def check(name: str, cond: bool, detail: object = "") -> None:
    if not cond:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok  {name}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    args = p.parse_args()
    client = genai.Client(
        api_key="test-key",
        http_options=types.HttpOptions(base_url=args.base_url, api_version="v1beta", timeout=30_000),
    )
    for route, upstream in ROUTES.items():
        r = client.models.generate_content(model=route, contents=PROMPT)
        check(f"{route}: text", bool(r.text), r)
        headers = r.sdk_http_response.headers if r.sdk_http_response else {}
        check(f"{route}: served by {upstream}", headers.get("x-bitrouter-upstream") == upstream, headers)
        u = r.usage_metadata
        check(
            f"{route}: usage",
            u is not None and (u.prompt_token_count or 0) > 0 and (u.candidates_token_count or 0) > 0,
            u,
        )

        chunks = list(client.models.generate_content_stream(model=route, contents=PROMPT))
        streamed = "".join(c.text or "" for c in chunks)
        check(f"{route}: stream reassembles to the same text", streamed == r.text, (streamed, r.text))
        last = chunks[-1]
        check(
            f"{route}: stream ends with a finish reason and usage",
            last.candidates and last.candidates[0].finish_reason is not None and last.usage_metadata is not None,
            last,
        )

        r = client.models.generate_content(model=route, contents=WEATHER, config=TOOL_CONFIG)
        calls = r.function_calls or []
        check(
            f"{route}: function call with arguments from the schema",
            len(calls) == 1 and calls[0].name == "get_weather" and isinstance((calls[0].args or {}).get("city"), str),
            calls,
        )
        history = [
            types.Content(role="user", parts=[types.Part(text=WEATHER)]),
            r.candidates[0].content,
            types.Content(
                role="user",
                parts=[types.Part.from_function_response(name="get_weather", response={"temperature_c": 21})],
            ),
        ]
        after = client.models.generate_content(model=route, contents=history, config=TOOL_CONFIG)
        check(f"{route}: text after the function response", bool(after.text) and not after.function_calls, after)

        streamed_calls = [
            fc
            for c in client.models.generate_content_stream(model=route, contents=WEATHER, config=TOOL_CONFIG)
            for fc in (c.function_calls or [])
        ]
        check(
            f"{route}: streamed function call arrives whole",
            len(streamed_calls) == 1 and streamed_calls[0].args == calls[0].args,
            streamed_calls,
        )

    try:
        client.models.generate_content(model="no-such-model-for-sdk-test", contents=PROMPT)
        raise AssertionError("an unknown model was accepted")
    except errors.ClientError as e:
        check("unknown model: 404 ClientError", e.code == 404 and e.status == "NOT_FOUND", e)
    print("gemini sdk ok")


if __name__ == "__main__":
    main()
