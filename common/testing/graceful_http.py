"""A task for load-balancer tests: serves its working directory (its sandbox) on 127.0.0.1,
like `python3 -m http.server`, but stops gracefully on SIGTERM — it closes its listening socket
at once (new connections go elsewhere) and finishes the requests it is serving before it exits,
as a service behind a load balancer should (Kubernetes and Marathon assume the same of theirs).

    python -m meseta.testing.graceful_http $PORT0
"""
from __future__ import annotations

import signal
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer


class Server(ThreadingHTTPServer):
    daemon_threads = False          # server_close() joins the requests in flight
    block_on_close = True


class Handler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def main() -> None:
    handler = partial(Handler, directory=".")
    server = Server(("127.0.0.1", int(sys.argv[1])), handler)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    # Polled: the kernel may run the handler on a request thread, and a wait without a timeout
    # would not wake for it (the main thread only sees the signal once it runs again).
    while not stop.wait(0.1):
        pass
    server.shutdown()               # no more accepts...
    server.socket.close()           # ...and the port closed, so new connections are refused
    server.server_close()           # ...then wait for the requests in flight


if __name__ == "__main__":
    main()
