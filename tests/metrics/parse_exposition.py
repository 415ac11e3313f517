#!/usr/bin/env python3
"""Reads llamactl's /metrics in both formats and parses each with the Prometheus project's own
Python parsers (prometheus_client): the classic text format and the stricter OpenMetrics one.

Usage: parse_exposition.py URL   (the key in LLAMACTL_KEY). Exits non-zero, saying why, if either
format does not parse or lacks the families every llamactl exposes.
"""
import os, sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families as parse_text
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

EXPECTED = {
    "llamactl_instance_requests", "llamactl_instance_request_duration_seconds",
    "llamactl_instance_prompt_tokens", "llamactl_instance_status", "llamactl_key_requests",
    "process_resident_memory_bytes", "llamactl_build",
}

def fetch(url, accept):
    req = urllib.request.Request(url, headers={
        "Authorization": "Bearer " + os.environ["LLAMACTL_KEY"], "Accept": accept})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.headers.get("Content-Type", ""), resp.read().decode()

def main(url):
    for accept, parse, want_type in [
        ("text/plain", parse_text, "text/plain"),
        ("application/openmetrics-text; version=1.0.0", parse_openmetrics, "application/openmetrics-text"),
    ]:
        content_type, text = fetch(url, accept)
        if not content_type.startswith(want_type):
            sys.exit(f"asked for {accept}, got {content_type}")
        families = {f.name: f for f in parse(text)}
        # The classic parser keeps counters' `_total` and info's `_info` in the family name.
        names = {n.removesuffix("_total").removesuffix("_info") for n in families}
        missing = EXPECTED - names
        if missing:
            sys.exit(f"{want_type}: missing families {sorted(missing)}; got {sorted(names)}")
        samples = sum(len(f.samples) for f in families.values())
        print(f"{want_type}: {len(families)} families, {samples} samples parsed")

if __name__ == "__main__":
    main(sys.argv[1])
