"""moto in server mode for the local stack, plus two behaviours of the real services that moto lacks:

- DynamoDB's per-item write atomicity: moto checks a ConditionExpression and then writes, with no lock between
  the two. Budgets rely on that atomicity, so DynamoDB calls are serialised here (microseconds in memory).
- S3's expiry of presigned URLs: moto serves them for ever; S3 answers 403 once X-Amz-Date + X-Amz-Expires passed.

It also caches moto's host-to-backend lookup, which otherwise reads moto's package directory on every call.
`python -m local.moto_server HOST PORT PARENT_PID` serves it in a process of its own, as the local stack runs it."""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


class CachedDispatch(DomainDispatcherApplication):
    """moto's dispatcher lists its own package directory on every request to map a host to a backend (about a
    millisecond a call); the mapping never changes while the server runs."""

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one dispatcher per server, kept for the server's life
    def get_backend_for_host(self, host: str | None) -> Any:
        return super().get_backend_for_host(host)


class AtomicDynamoDB:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            return self.app(environ, start_response)
        with self.lock:
            result = self.app(environ, start_response)
            try:
                return [b"".join(result)]  # the whole answer is produced inside the lock
            finally:
                if hasattr(result, "close"):
                    result.close()


class ExpiringPresignedUrls:
    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if "X-Amz-Expires" in query and "X-Amz-Date" in query:
            signed = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            if datetime.now(UTC) > signed + timedelta(seconds=int(query["X-Amz-Expires"][0])):
                start_response("403 Forbidden", [("Content-Type", "application/xml")])
                return [b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"]
        return self.app(environ, start_response)


class Quiet(WSGIRequestHandler):
    """No request log line per AWS call. werkzeug's server closes each connection after its answer whatever the
    protocol version, so every AWS call opens a new loopback connection (a fraction of a millisecond)."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def start_moto(host: str, port: int) -> BaseWSGIServer:
    """moto serving from a thread of this process (the unit tests' way; the local stack runs it in its own)."""
    app = ExpiringPresignedUrls(AtomicDynamoDB(CachedDispatch(create_backend_app)))
    server = make_server(host, port, app, threaded=True, request_handler=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _serve_until_parent_exits(host: str, port: int, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the whole group: the stack stops moto last
    start_moto(host, port)
    while os.getppid() == parent:  # the stack is gone, even killed outright: so is its moto
        time.sleep(1)


if __name__ == "__main__":
    # moto does not model the outputs stack's placeholder resource (local/aws_bootstrap.py), and says so at every
    # start; only the outputs matter, so that warning is expected, not a fault for a newcomer to chase.
    warnings.filterwarnings("ignore", message="Tried to parse AWS::CloudFormation::WaitConditionHandle")
    _serve_until_parent_exits(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
