#!/usr/bin/env python3
"""The official OpenAI Python client against a llamactl key with a token quota.

Driven by tests/e2e_quota.rs, which starts llamactl with the real llama-server and sets
OPENAI_BASE_URL, OPENAI_API_KEY (a key with limits) and LLAMACTL_CHAT_MODEL. Sends chat requests,
plain and streamed in turn, until the client raises openai.RateLimitError, and prints one JSON
object: the tokens each answer's usage reported, and the 429's status and headers.
"""
import json
import os
import time
import urllib.request

import openai
from openai import OpenAI

CLIENT = OpenAI(max_retries=0, timeout=120)
CHAT = os.environ["LLAMACTL_CHAT_MODEL"]
PROMPT = [{"role": "user", "content": "Count from 1 to 20, separated by spaces."}]


def plain():
    r = CLIENT.chat.completions.create(model=CHAT, messages=PROMPT, max_tokens=12, temperature=0)
    return r.usage.total_tokens


def streamed():
    usage = None
    stream = CLIENT.chat.completions.create(
        model=CHAT, messages=PROMPT, max_tokens=12, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage.total_tokens
    assert usage is not None, "the stream reported no usage"
    return usage


def charged():
    """The tokens the key has been charged today, as GET /api/v1/auth/whoami tells it."""
    url = os.environ["OPENAI_BASE_URL"].removesuffix("/v1") + "/api/v1/auth/whoami"
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"]})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)["usage"]["tokens_per_day"]["used"]


def wait_charged(total):
    """Wait for the last answer's charge, so each request is sent knowing what the last one cost.
    llamactl charges an answer as its end passes (a stream at its [DONE]), before the client reads
    it; the wait keeps this test from depending on that timing."""
    deadline = time.monotonic() + 30
    while charged() != total:
        assert time.monotonic() < deadline, f"not charged {total} tokens within 30 s"
        time.sleep(0.02)


def main():
    answered = []
    for i in range(40):
        try:
            answered.append((streamed if i % 2 else plain)())
            wait_charged(sum(answered))
        except openai.RateLimitError as e:
            headers = {k.lower(): v for k, v in e.response.headers.items()
                       if k.lower() == "retry-after" or k.lower().startswith("x-ratelimit-")}
            print(json.dumps({"answered": answered, "status": e.status_code,
                              "headers": headers, "error": e.body}))
            return
    print(json.dumps({"answered": answered, "status": None}))


if __name__ == "__main__":
    main()
