#!/usr/bin/env python3
"""The official OpenAI Python client against llamactl, as a user would point it at the server.

Driven by tests/e2e_openai.rs, which starts llamactl with the real llama-server and sets:
  OPENAI_BASE_URL       llamactl's /v1 URL (read by the client itself)
  OPENAI_API_KEY        an inference key (read by the client itself)
  LLAMACTL_CHAT_MODEL   an instance for chat and text completions
  LLAMACTL_EMBED_MODEL  an instance started with embeddings enabled
Runs every test_* function, prints one line per test, exits 1 if any failed.
"""
import os
import sys
import traceback

import openai
from openai import OpenAI

CLIENT = OpenAI(max_retries=0, timeout=120)
CHAT = os.environ["LLAMACTL_CHAT_MODEL"]
EMBED = os.environ["LLAMACTL_EMBED_MODEL"]
PROMPT = [{"role": "user", "content": "Count from 1 to 20, separated by spaces."}]


def test_lists_models():
    models = list(CLIENT.models.list())
    ids = [m.id for m in models]
    assert CHAT in ids and EMBED in ids, ids
    for m in models:
        assert m.object == "model" and m.owned_by == "llamactl", m
        assert m.created > 0, m


def test_chat_completion():
    r = CLIENT.chat.completions.create(
        model=CHAT, messages=PROMPT, max_tokens=16, temperature=0, seed=42
    )
    assert r.object == "chat.completion", r
    # The model is named as the client asked for it, not as the backend's model file.
    assert r.model == CHAT, r.model
    assert r.choices[0].message.role == "assistant", r
    assert r.choices[0].message.content, r
    assert r.usage.completion_tokens > 0, r.usage


def test_streamed_chat_completion():
    stream = CLIENT.chat.completions.create(
        model=CHAT, messages=PROMPT, max_tokens=16, temperature=0, seed=42, stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) >= 3, f"{len(chunks)} chunks"
    assert all(c.object == "chat.completion.chunk" for c in chunks), chunks
    assert all(c.model == CHAT for c in chunks), [c.model for c in chunks]
    assert text, chunks
    print(f"    {len(chunks)} chunks: {text!r}")


def test_text_completion():
    r = CLIENT.completions.create(
        model=CHAT, prompt="The capital of France is", max_tokens=8, temperature=0
    )
    assert r.object == "text_completion", r
    assert r.model == CHAT, r.model
    assert r.choices[0].text, r


def test_embedding():
    r = CLIENT.embeddings.create(model=EMBED, input=["hello world", "goodbye moon"])
    assert len(r.data) == 2, r
    vectors = [d.embedding for d in r.data]
    assert len(vectors[0]) == len(vectors[1]) > 0, [len(v) for v in vectors]
    assert all(isinstance(x, float) for x in vectors[0]), vectors[0][:5]
    assert vectors[0] != vectors[1]


def test_unknown_model_is_a_not_found_error():
    try:
        CLIENT.chat.completions.create(model="no-such-model", messages=PROMPT, max_tokens=1)
    except openai.NotFoundError as e:
        # llamactl's error body is {"error": "<message>"}; the client hands over the message.
        assert e.status_code == 404, e
        assert "no-such-model" in str(e.body), e.body
    else:
        raise AssertionError("no error for an unknown model")


def main():
    tests = [(n, f) for n, f in sorted(globals().items()) if n.startswith("test_") and callable(f)]
    failed = 0
    for name, test in tests:
        try:
            test()
            print(f"ok    {name}", flush=True)
        except Exception:
            failed += 1
            print(f"FAIL  {name}\n{traceback.format_exc()}", flush=True)
    print(f"{len(tests) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
