"""Starting and stopping the local stack (`python -m local.stack`, what `make dev` runs) on free ports, for the
integration tests, `make bench` and `make load`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
SLUG = "stable-diffusion-3.5-turbo-txt2img"
DEV_KEY = "integration-test-tenant-key-0001"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningStack:
    base: str
    api_key: str
    fake: str | None
    process: subprocess.Popen
    output: list[str]
    moto_port: int
    guardrail: str = ""  # the fake Bedrock guardrail's URL

    @property
    def txt2img(self) -> str:
        return f"{self.base}/v1/{SLUG}"

    def post(self, body: object, headers: dict[str, str] | None = None, **kwargs: object) -> requests.Response:
        sent = {"x-api-key": self.api_key, **(headers or {})}
        return requests.post(self.txt2img, json=body, headers=sent, timeout=60, **kwargs)

    def cli(self, *args: str) -> dict | list:
        """`segmind-proxy --local --json ...` as an operator runs it; fails on a non-zero exit."""
        env = {**os.environ, "MOTO_PORT": str(self.moto_port)}
        env.pop("AWS_ENDPOINT_URL", None)
        done = subprocess.run(
            [sys.executable, "-m", "admin.cli", "--local", "--json", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def fake_stats(self) -> dict:
        assert self.fake, "this stack talks to an external upstream"
        return requests.get(f"{self.fake}/_fake/stats", timeout=5).json()

    def fake_config(self, **config: object) -> None:
        requests.post(f"{self.fake}/_fake/config", json=config, timeout=5).raise_for_status()

    def guardrail_config(self, **config: object) -> None:
        requests.post(f"{self.guardrail}/_fake/config", json=config, timeout=5).raise_for_status()


def start_stack(extra_env: dict[str, str] | None = None) -> RunningStack:
    port, moto_port, fake_port, guardrail_port = free_port(), free_port(), free_port(), free_port()
    # What a developer's shell has: none of the unit tests' AWS or Powertools settings.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env = {
        **inherited,
        "PORT": str(port),
        "MOTO_PORT": str(moto_port),
        "FAKE_SEGMIND_PORT": str(fake_port),
        "FAKE_GUARDRAIL_PORT": str(guardrail_port),
        "DEV_API_KEY": DEV_KEY,
        "LOCAL_LAMBDA_CONCURRENCY": "6",
        "PYTHONUNBUFFERED": "1",
        # This checkout's domain package, as the tests import it, whichever checkout the virtualenv was installed
        # from (worktrees can share one).
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "layers" / "core"), os.environ.get("PYTHONPATH")])),
        **(extra_env or {}),
    }
    for name in ("AWS_ENDPOINT_URL", "SEGMIND_API_KEY", "SEGMIND_BASE_URL"):
        if name not in (extra_env or {}):
            env.pop(name, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "local.stack"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(iter(process.stdout.readline, "")), daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("local stack exited:\n" + "".join(output))
        if any("Press Ctrl+C" in line for line in output):
            break
        time.sleep(0.2)
    else:
        stop_stack(process)
        raise RuntimeError("local stack did not start:\n" + "".join(output[-50:]))
    fake = None if "SEGMIND_API_KEY" in (extra_env or {}) else f"http://127.0.0.1:{fake_port}"
    return RunningStack(base, DEV_KEY, fake, process, output, moto_port, f"http://127.0.0.1:{guardrail_port}")


def stop_stack(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
