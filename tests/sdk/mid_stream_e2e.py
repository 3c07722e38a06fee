#!/usr/bin/env python3
"""Mid-stream failover through the official OpenAI (chat and Responses), Anthropic and Google
Gen AI Python SDKs.

Run against a gateway with `routing.mid_stream_failover: continue` whose routes are named
`<fault>-<upstream>`: the first endpoint speaks <upstream> (openai, anthropic, google) and
breaks after four words of its answer (fault: cut = the connection drops, error = an error
event, stall = silence past `stream_idle_timeout`); the second continues the partial answer
it is given. tests/e2e/sdk_clients.rs starts the mocks and the gateway and runs

    python tests/sdk/mid_stream_e2e.py --base-url http://127.0.0.1:8787 --routes cut-openai,...

Each SDK streams through each route and must receive one well-formed stream, without an
exception, whose text is exactly the mock's answer: the first endpoint's words followed by the
second's continuation, with no repeat. One line per check; the first failure raises.
"""

from __future__ import annotations

import argparse

import anthropic
import openai
from google import genai
from google.genai import types

TEXT = "Alpha bravo charlie delta echo foxtrot golf hotel india juliet."
PROMPT = "Spell the alphabet."


def check(name: str, cond: bool, detail: object = "") -> None:
    if not cond:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok  {name}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--routes", required=True)
    args = p.parse_args()
    base = args.base_url
    oa = openai.OpenAI(base_url=f"{base}/v1", api_key="test-key", max_retries=0, timeout=30)
    an = anthropic.Anthropic(base_url=base, api_key="test-key", max_retries=0, timeout=30)
    gg = genai.Client(
        api_key="test-key",
        http_options=types.HttpOptions(base_url=base, api_version="v1beta", timeout=30_000),
    )
    for route in args.routes.split(","):
        # OpenAI chat: the text, one finish, the summed usage in the last chunk.
        chunks = list(
            oa.chat.completions.create(
                model=route,
                messages=[{"role": "user", "content": PROMPT}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        check(f"{route}: openai chat text", text == TEXT, text)
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        check(f"{route}: openai chat one finish", finishes == ["stop"], finishes)
        check(f"{route}: openai chat usage", chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0, chunks[-1])

        # OpenAI Responses: deltas, then one response.completed whose output is the text.
        events = list(oa.responses.create(model=route, input=PROMPT, stream=True))
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        check(f"{route}: responses text", text == TEXT, text)
        done = [e for e in events if e.type == "response.completed"]
        check(f"{route}: responses completed once", len(done) == 1 and done[0].response.output_text == TEXT, done)

        # Anthropic: the SDK's own stream helper assembles the final message.
        with an.messages.stream(
            model=route, max_tokens=200, messages=[{"role": "user", "content": PROMPT}]
        ) as s:
            streamed = "".join(s.text_stream)
            final = s.get_final_message()
        check(f"{route}: anthropic text", streamed == TEXT, streamed)
        check(
            f"{route}: anthropic final message",
            final.stop_reason == "end_turn" and "".join(b.text for b in final.content if b.type == "text") == TEXT,
            final,
        )

        # Google Gen AI.
        chunks = list(gg.models.generate_content_stream(model=route, contents=PROMPT))
        text = "".join(c.text or "" for c in chunks)
        check(f"{route}: google-genai text", text == TEXT, text)
        last = chunks[-1]
        check(
            f"{route}: google-genai finish",
            last.candidates and last.candidates[0].finish_reason is not None,
            last,
        )


if __name__ == "__main__":
    main()
