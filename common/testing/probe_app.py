"""A task for health and readiness tests: an HTTP server on $PORT0 (argv[1]) whose answers
follow files in its sandbox (its working directory).

    GET /health   200 while ./healthy exists, else 503
    GET /ready    200 while ./ready exists, else 503
    GET /sick     removes ./healthy        GET /make-ready   creates ./ready

    python -m meseta.testing.probe_app $PORT0 [--healthy] [--ready]
"""
from __future__ import annotations

import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FILES = {"/health": "healthy", "/ready": "ready"}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path in FILES:
            self._answer(200 if os.path.exists(FILES[self.path]) else 503)
        elif self.path == "/sick":
            if os.path.exists("healthy"):
                os.remove("healthy")
            self._answer(200)
        elif self.path == "/make-ready":
            open("ready", "w").close()
            self._answer(200)
        else:
            self._answer(404)

    def _answer(self, status: int) -> None:
        body = f"{status}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def main(argv: list[str]) -> None:
    for flag, name in (("--healthy", "healthy"), ("--ready", "ready")):
        if flag in argv:
            open(name, "w").close()
    ThreadingHTTPServer(("127.0.0.1", int(argv[1])), Handler).serve_forever()


if __name__ == "__main__":
    main(sys.argv)
