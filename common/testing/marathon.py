"""Test helpers for Marathon: a small JSON client of the REST API and a Marathon child process.

    api = MarathonApi(daemon.url)
    status, headers, body = api.call("POST", "/v2/apps", {...})
    api.wait_deployed()
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any, Sequence

from meseta.testing.processes import Daemon, free_port

__all__ = ["MarathonApi", "SERVE", "start_marathon"]

# An app command that records its environment and serves its sandbox on $PORT0.
SERVE = "env > env.txt && exec python3 -m http.server --bind 127.0.0.1 $PORT0"


class MarathonApi:
    def __init__(self, url: str) -> None:
        self.url = url

    def call(self, method: str, path: str, body: Any = None, timeout: float = 10.0
             ) -> tuple[int, dict[str, str], Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                text = resp.read()
                return resp.status, dict(resp.headers), json.loads(text) if text else None
        except urllib.error.HTTPError as err:
            text = err.read()
            return err.code, dict(err.headers), json.loads(text) if text else None

    def get(self, path: str) -> Any:
        status, _, body = self.call("GET", path)
        assert status == 200, (path, status, body)
        return body

    def wait_deployed(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.get("/v2/deployments") == []:
                return
            time.sleep(0.1)
        raise AssertionError(f"deployments still running: {self.get('/v2/deployments')}")

    def tasks(self, app_id: str) -> list[dict]:
        return self.get(f"/v2/apps{app_id}/tasks")["tasks"]


def start_marathon(master: str, log_path: str, args: Sequence[str] = ()) -> Daemon:
    """`meseta marathon` as a child process on a free port, ready when it returns."""
    port = free_port()
    return Daemon("marathon", [f"--master={master}", f"--http_port={port}", *args],
                  log_path, port).wait_ready()
