"""`make dev`: moto in server mode, the fake (or real) Segmind, and the local API Gateway serving the real handlers."""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .event_sources import ScheduledRule, SqsPoller, rate_seconds
from .fake_guardrail import FakeGuardrail
from .fake_segmind import FakeSegmind
from .gateway import ApiKeys, LocalGateway
from .lambda_runtime import LocalFunction
from .template import Stack, load_template

FAKE_SEGMIND_KEY = "sg_local_fake_segmind_key"


@dataclass
class LocalConfig:
    """Every knob of the local stack, from the environment (documented in docs/configuration.md)."""

    host: str = "127.0.0.1"
    port: int = 3000
    moto_port: int = 5510
    fake_segmind_port: int = 5520
    fake_guardrail_port: int = 5530
    stack_name: str = "segmind-proxy-local"
    stage: str = "prod"
    dev_api_key: str = "segmind-proxy-local-dev-key"
    segmind_api_key: str = ""
    segmind_base_url: str = ""
    fake_latency_ms: float = 0.0
    concurrency: int = 4
    allowed_origins: str = ""
    parameter_overrides: str = ""
    schedule_seconds: float | None = None  # every scheduled function this often instead of its rule's rate
    webhook_targets: str = "loopback"  # the receivers of the tests and of `make dev` listen on loopback
    template: str = ""  # another SAM template than template.yaml (its CodeUri paths relative to the repository)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> LocalConfig:
        env = dict(os.environ if env is None else env)
        return cls(
            host=env.get("HOST", cls.host),
            port=int(env.get("PORT", cls.port)),
            moto_port=int(env.get("MOTO_PORT", cls.moto_port)),
            fake_segmind_port=int(env.get("FAKE_SEGMIND_PORT", cls.fake_segmind_port)),
            fake_guardrail_port=int(env.get("FAKE_GUARDRAIL_PORT", cls.fake_guardrail_port)),
            stack_name=env.get("STACK_NAME", cls.stack_name),
            dev_api_key=env.get("DEV_API_KEY", cls.dev_api_key),
            segmind_api_key=env.get("SEGMIND_API_KEY", ""),
            segmind_base_url=env.get("SEGMIND_BASE_URL", ""),
            fake_latency_ms=float(env.get("FAKE_SEGMIND_LATENCY_MS", 0)),
            concurrency=int(env.get("LOCAL_LAMBDA_CONCURRENCY", cls.concurrency)),
            allowed_origins=env.get("ALLOWED_ORIGINS", ""),
            parameter_overrides=env.get("PARAMETER_OVERRIDES", ""),
            schedule_seconds=float(env["LOCAL_SCHEDULE_SECONDS"]) if env.get("LOCAL_SCHEDULE_SECONDS") else None,
            webhook_targets=_webhook_targets(env.get("ALLOW_PRIVATE_WEBHOOKS", cls.webhook_targets)),
            template=env.get("LOCAL_TEMPLATE", ""),
        )


def _webhook_targets(value: str) -> str:
    """ALLOW_PRIVATE_WEBHOOKS, checked at start: a value the functions refuse would fail every request instead."""
    from segmind_proxy.settings import WebhookTargets  # not at the top: see LocalStack.start

    try:
        return WebhookTargets(value.strip().lower()).value
    except ValueError:
        allowed = "'false' (https, public addresses only, as on AWS) or 'loopback' (http or https, loopback only)"
        raise SystemExit(f"ALLOW_PRIVATE_WEBHOOKS is '{value}': it must be {allowed}") from None


class GatewayAccessLog(WSGIRequestHandler):
    """One line per API request, like `sam local`; moto's and the fake's request lines stay quiet."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        print(f"{self.command} {self.path} -> {code} ({size} bytes)", flush=True)


def _serve(server: BaseWSGIServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


class MotoProcess:
    """moto (`local.moto_server`) in a process of its own, as AWS is not in API Gateway's: sharing the emulator's
    interpreter lock, moto's work on one request's S3 write held up another's answer by 10-30 ms. Nor does this
    process import moto."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.process = subprocess.Popen(
            [sys.executable, "-m", "local.moto_server", host, str(port), str(os.getpid())],
            cwd=Path(__file__).resolve().parents[1],  # where `local` is a package
        )

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto exited with status {self.process.returncode}")
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"moto did not start listening on {self.host}:{self.port}")

    def stop(self) -> None:
        # SIGKILL, as SIGTERM is blocked (see main); moto keeps nothing but memory.
        self.process.kill()
        self.process.wait()


class LocalStack:
    def __init__(self, config: LocalConfig) -> None:
        self.config = config
        self.stack = Stack(config.stack_name, load_template(Path(config.template)) if config.template else None)
        self._servers: list[Any] = []
        self.functions: dict[str, LocalFunction] = {}
        self.pollers: list[SqsPoller] = []
        self.schedules: list[ScheduledRule] = []
        self._own_run_dir = not os.environ.get("LOCAL_STACK_RUN_DIR")
        self.run_dir = os.environ.get("LOCAL_STACK_RUN_DIR") or tempfile.mkdtemp(prefix="segmind-proxy-local-")
        self.fake: FakeSegmind | None = None
        self.guardrail = FakeGuardrail()  # Bedrock's ApplyGuardrail, which moto does not implement
        self._moto: MotoProcess | None = None

    @property
    def moto_endpoint(self) -> str:
        return f"http://{self.config.host}:{self.config.moto_port}"

    @property
    def guardrail_endpoint(self) -> str:
        return f"http://{self.config.host}:{self.config.fake_guardrail_port}"

    def start(self) -> None:
        # Imported here, not at the top: spawned containers re-import this module first, and the domain package
        # (which bootstrap uses) must first be imported in a container after the function's environment is set.
        from .aws_bootstrap import bootstrap, local_session

        config = self.config
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._moto = MotoProcess(config.host, config.moto_port)  # loads while the fake starts

        if config.segmind_api_key:
            upstream_url = config.segmind_base_url or "https://api.segmind.com"
            upstream_key = config.segmind_api_key
        else:
            self.fake = FakeSegmind(FAKE_SEGMIND_KEY, latency_ms=config.fake_latency_ms)
            fake_server = make_server(config.host, config.fake_segmind_port, self.fake, threaded=True)
            _serve(fake_server)
            self._servers.append(fake_server)
            upstream_url = f"http://{config.host}:{config.fake_segmind_port}"
            upstream_key = FAKE_SEGMIND_KEY

        guardrail_server = make_server(config.host, config.fake_guardrail_port, self.guardrail, threaded=True)
        _serve(guardrail_server)
        self._servers.append(guardrail_server)

        self.stack.parameters["SegmindBaseUrl"] = upstream_url
        self.stack.parameters["StageName"] = config.stage
        self.stack.local_api_url = f"http://{config.host}:{config.port}"
        if config.allowed_origins:
            self.stack.parameters["AllowedOrigins"] = config.allowed_origins
        for override in config.parameter_overrides.split():  # as sam deploy --parameter-overrides Key=Value ...
            name, _, value = override.partition("=")
            if name not in self.stack.parameters:
                raise SystemExit(f"PARAMETER_OVERRIDES: template has no parameter '{name}'")
            self.stack.parameters[name] = value
        self._moto.wait_ready()
        self.created = bootstrap(
            self.stack, self.moto_endpoint, segmind_key=upstream_key, dev_api_key=config.dev_api_key
        )
        session = local_session(self.stack.region)

        aws_env = self.function_environment()
        sources = self.stack.sqs_sources()
        authorizers = {spec.function for spec in self.stack.authorizers().values()}
        for logical_id in {route.function for route in self.stack.routes()} | {f for f, _, _ in sources} | authorizers:
            spec = self.stack.function(logical_id)
            environment = {**spec.environment, **aws_env, "AWS_LAMBDA_FUNCTION_NAME": logical_id}
            function = LocalFunction(spec, environment, config.concurrency)
            self.functions[logical_id] = function
        for warming in [function.warm_up() for function in self.functions.values()]:
            warming.result(timeout=120)
        sqs = session.client("sqs", endpoint_url=self.moto_endpoint)
        for function_id, queue_id, batch_size in sources:
            for _ in range(config.concurrency):  # as Lambda scales pollers with the queue
                poller = SqsPoller(
                    sqs,
                    self.stack.physical[queue_id],
                    self.stack.arns[queue_id],
                    self.functions[function_id],
                    batch_size,
                    self.stack.region,
                )
                poller.start()
                self.pollers.append(poller)

        self._start_schedules(aws_env)

        apigw = session.client("apigateway", endpoint_url=self.moto_endpoint)
        gateway = LocalGateway(self.stack, self.functions, ApiKeys(apigw), config.stage)
        server = make_server(config.host, config.port, gateway, threaded=True, request_handler=GatewayAccessLog)
        _serve(server)
        self._servers.append(server)

    def _start_schedules(self, aws_env: dict[str, str]) -> None:
        """The template's scheduled functions (the reservation sweeper, the credits probe). Their containers start
        on their first invocation, not with the stack: nothing waits on them."""
        for function_id, expression in self.stack.schedule_sources():
            period = self.config.schedule_seconds or rate_seconds(expression)
            if period is None:
                print(f"{function_id}: schedule '{expression}' is not run locally (only rate() is)", flush=True)
                continue
            spec = self.stack.function(function_id)
            environment = {**spec.environment, **aws_env, "AWS_LAMBDA_FUNCTION_NAME": function_id}
            self.functions[function_id] = LocalFunction(spec, environment, 1)  # ReservedConcurrentExecutions: 1
            rule = ScheduledRule(self.functions[function_id], period, self.stack.region)
            rule.start()
            self.schedules.append(rule)

    def function_environment(self) -> dict[str, str]:
        """What every function's environment has on top of the template's."""
        from .aws_bootstrap import LOCAL_CREDENTIALS

        return {
            "AWS_ENDPOINT_URL": self.moto_endpoint,
            # botocore's per-service endpoint: Bedrock's runtime is the fake guardrail, every other service is moto.
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": self.guardrail_endpoint,
            "AWS_DEFAULT_REGION": self.stack.region,
            "AWS_REGION": self.stack.region,
            "AWS_ACCESS_KEY_ID": LOCAL_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": LOCAL_CREDENTIALS["aws_secret_access_key"],
            "POWERTOOLS_TRACE_DISABLED": "true",
            "ALLOW_PRIVATE_WEBHOOKS": self.config.webhook_targets,
            "LOCAL_STACK_RUN_DIR": self.run_dir,
            "POWERTOOLS_DEV": os.environ.get("POWERTOOLS_DEV", "false"),
        }

    def stop(self) -> None:
        for rule in self.schedules:
            rule.stopped.set()
        for poller in self.pollers:
            poller.stopped.set()
        for function in self.functions.values():
            function.shutdown()
        for server in reversed(self._servers):
            server.shutdown()
        _end_containers()  # before moto, which a container mid-invocation may still be calling
        if self._moto is not None:
            self._moto.stop()
        if self._own_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def banner(self) -> str:
        config = self.config
        base = f"http://{config.host}:{config.port}"
        upstream = (
            "the fake Segmind (set SEGMIND_API_KEY to use the real one)"
            if self.fake
            else self.stack.parameters["SegmindBaseUrl"]
        )
        return f"""
Segmind image gateway (local stack) is ready.
  API:        {base}   (stage '{config.stage}'; routes as in template.yaml)
  Upstream:   {upstream}
  AWS (moto): {self.moto_endpoint}   (Bedrock Guardrails: the fake at {self.guardrail_endpoint})
  API key:    {config.dev_api_key}   (demo tenant, from DEV_API_KEY)
  Playground: {base}/playground   (paste the key there)

Try Segmind's sample request:
  curl -sS -X POST {base}/v1/stable-diffusion-3.5-turbo-txt2img \\
    -H 'x-api-key: {config.dev_api_key}' -H 'Content-Type: application/json' \\
    -d '{{"prompt": "a cat in a spacesuit, studio photo", "negative_prompt": "low quality, blurry", "steps": 4, "guidance_scale": 1, "seed": 98552302, "sampler": "dpmpp_2m", "scheduler": "sgm_uniform", "width": 1024, "height": 1024, "aspect_ratio": "custom", "batch_size": 1, "image_format": "jpeg", "image_quality": 95, "base64": false}}' \\
    -D - -o image.jpg

Press Ctrl+C to stop.
"""


def _end_containers(timeout: float = 10.0) -> None:
    """Ends every container (SIGKILL, as SIGTERM is blocked, see main) and waits for it: one still busy (a worker
    mid-call) would take its pool's shutdown only after its call."""
    containers = multiprocessing.active_children()
    for container in containers:
        container.kill()
    for container in containers:
        container.join(timeout)


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def main() -> None:
    # Ctrl+C (or a SIGTERM to the group) reaches every process of the group: blocked before any thread or child
    # starts, so every child (moto's process, the containers) inherits the block and runs on until stopped in
    # order; only this thread takes the signals, in sigwait. multiprocessing's resource tracker is started first:
    # starting it unblocks both signals in the thread that does, which would hand them to later containers.
    resource_tracker.ensure_running()
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    local = LocalStack(LocalConfig.from_env())
    local.start()
    print(local.banner(), flush=True)
    signal.sigwait(STOP_SIGNALS)
    local.stop()
    print("Stopped.", flush=True)
    os._exit(0)  # not the interpreter's exit, which would wait for the executors' threads


if __name__ == "__main__":
    main()
