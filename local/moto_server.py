"""moto in server mode for the local stack, with DynamoDB's per-item write atomicity.

moto checks a ConditionExpression and then writes, with no lock between the two; DynamoDB does both atomically.
Budgets rely on that atomicity, so DynamoDB calls are serialised here (they take microseconds in memory)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server


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


def start_moto(host: str, port: int) -> BaseWSGIServer:
    server = make_server(host, port, AtomicDynamoDB(DomainDispatcherApplication(create_backend_app)), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
