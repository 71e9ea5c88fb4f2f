"""Calling a served Gradio app's events over raw HTTP, as an attacker would: no browser, no
gradio_client, any event number, any payload. Used by tests/test_security.py and bench/load.py.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field

import httpx


@dataclass
class Outcome:
    status: int  # of the join request: 401 when the gate refused the caller
    success: bool = False
    error: str = ""
    outputs: list = field(default_factory=list)  # every streamed output, in order
    logs: list[str] = field(default_factory=list)  # gr.Warning / gr.Info texts

    def text(self) -> str:
        """Everything the caller got back, as one string to search for leaks."""
        return json.dumps([self.outputs, self.error, self.logs], default=str)


def join(
    base: str,
    fn_index: int,
    data: list,
    headers: dict | None = None,
    session: str | None = None,
    event_data=None,
    trigger_id=None,
    timeout: float = 120,
) -> Outcome:
    """Queue event `fn_index` with `data` and read its stream to the end."""
    session = session or secrets.token_hex(6)
    body = {
        "data": data,
        "fn_index": fn_index,
        "session_hash": session,
        "event_data": event_data,
        "trigger_id": trigger_id,
    }
    with httpx.Client(base_url=base, headers=headers or {}, timeout=timeout) as http:
        joined = http.post("/gradio_api/queue/join", json=body)
        if joined.status_code != 200:
            return Outcome(joined.status_code, error=joined.text)
        event_id = joined.json()["event_id"]
        outcome = Outcome(200)
        url = f"/gradio_api/queue/data?session_hash={session}"
        with http.stream("GET", url) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("event_id") not in (None, event_id):
                    continue
                kind = message.get("msg")
                if kind == "log":
                    outcome.logs.append(str(message.get("log")))
                output = message.get("output") or {}
                if kind in ("process_generating", "process_completed") and "data" in output:
                    outcome.outputs.append(output["data"])
                if kind == "process_completed":
                    outcome.success = bool(message.get("success"))
                    outcome.error = str(output.get("error") or "")
                    return outcome
                if kind in ("queue_full", "unexpected_error"):
                    outcome.error = str(message.get("message") or kind)
                    return outcome
    return outcome
