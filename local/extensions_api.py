"""Lambda's Extensions API, the part an internal extension uses, for one local container.

As on Lambda: extensions register during init only (and, being internal, for INVOKE alone); `event/next` answers
with the next invocation; and a container takes its next invocation only once every extension has asked for it
again, which is where Lambda would freeze the environment. The previous response has gone back before that.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_PREFIX = "/2020-01-01/extension"


@dataclass
class _Extension:
    name: str
    idle: bool = False  # has asked for its next event: done with the previous invocation
    event: dict[str, Any] | None = None


class ExtensionsApi:
    def __init__(self, function_name: str, handler: str) -> None:
        self.function_name = function_name
        self.handler = handler
        self._changed = threading.Condition()
        self._extensions: dict[str, _Extension] = {}
        self._initialised = False
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:
                if self.path != f"{_PREFIX}/register":
                    return self._reply(404, {"errorType": "NotFound", "errorMessage": self.path})
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, answer, identifier = api.register(self.headers.get("Lambda-Extension-Name"), body)
                return self._reply(status, answer, {"Lambda-Extension-Identifier": identifier} if identifier else {})

            def do_GET(self) -> None:
                if self.path != f"{_PREFIX}/event/next":
                    return self._reply(404, {"errorType": "NotFound", "errorMessage": self.path})
                event = api.next_event(self.headers.get("Lambda-Extension-Identifier") or "")
                if event is None:
                    return self._reply(403, {"errorType": "Extension.Unknown", "errorMessage": "unknown identifier"})
                return self._reply(200, event)

            def _reply(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="extensions-api", daemon=True).start()

    @property
    def address(self) -> str:
        """The value of AWS_LAMBDA_RUNTIME_API."""
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def register(self, name: str | None, body: bytes) -> tuple[int, dict[str, Any], str | None]:
        try:
            events = json.loads(body or b"{}").get("events", [])
        except (ValueError, AttributeError):
            return 400, {"errorType": "InvalidRequest", "errorMessage": "body must be JSON"}, None
        if not name:
            return 400, {"errorType": "InvalidRequest", "errorMessage": "Lambda-Extension-Name is required"}, None
        if "SHUTDOWN" in events:
            return 400, {"errorType": "ShutdownEventNotSupportedForInternalExtension", "errorMessage": name}, None
        with self._changed:
            if self._initialised:
                return 403, {"errorType": "Extension.RegistrationAfterInit", "errorMessage": name}, None
            identifier = str(uuid.uuid4())
            self._extensions[identifier] = _Extension(name)
        return (
            200,
            {"functionName": self.function_name, "functionVersion": "$LATEST", "handler": self.handler},
            identifier,
        )

    def next_event(self, identifier: str) -> dict[str, Any] | None:
        with self._changed:
            extension = self._extensions.get(identifier)
            if extension is None:
                return None
            extension.idle, extension.event = True, None
            self._changed.notify_all()
            self._changed.wait_for(lambda: extension.event is not None)
            return extension.event

    def init_done(self, timeout: float = 10.0) -> bool:
        """The handler is imported: registration closes, and init ends once each extension has asked for work."""
        with self._changed:
            self._initialised = True
        return self.wait_idle(timeout)

    def invoke(self, request_id: str, deadline_ms: int, function_arn: str, timeout: float) -> bool:
        """Wait (up to `timeout` s) for every extension to finish the previous invocation, then give each this one.
        False if one was still busy: the invocation goes ahead, as the container would be replaced on Lambda."""
        with self._changed:
            ready = self._changed.wait_for(self._all_idle, timeout)
            event = {
                "eventType": "INVOKE",
                "requestId": request_id,
                "deadlineMs": deadline_ms,
                "invokedFunctionArn": function_arn,
                "tracing": {"type": "X-Amzn-Trace-Id", "value": ""},
            }
            for extension in self._extensions.values():
                extension.idle, extension.event = False, dict(event)
            self._changed.notify_all()
            return ready

    def wait_idle(self, timeout: float) -> bool:
        """Until every extension is done with the invocation under way (as Lambda would freeze the container)."""
        with self._changed:
            return self._changed.wait_for(self._all_idle, timeout)

    def _all_idle(self) -> bool:
        return all(extension.idle for extension in self._extensions.values())

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def deadline_ms(timeout_s: float) -> int:
    return int((time.time() + timeout_s) * 1000)
