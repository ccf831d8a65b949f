"""LiteLLM's proxy as a peer of the gateway: one pass-through endpoint to the fake Segmind, started offline on a
free port from its own virtualenv (.venv-litellm, see bench/litellm-requirements.txt), and always stopped."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from local.harness import ROOT, SLUG, free_port, stop_stack
from local.stack import FAKE_SEGMIND_KEY

VENV = ROOT / ".venv-litellm"
# Without a database the master key is LiteLLM's only key; 1.106 refuses to start with none.
MASTER_KEY = "sk-bench-peers-local-only-0123456789"
ENVIRONMENT = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # otherwise it fetches its cost map from GitHub at import
    "LITELLM_MASTER_KEY": MASTER_KEY,
    "LITELLM_LOG": "ERROR",
    "LITELLM_DONT_SHOW_FEEDBACK_BOX": "True",
}


@dataclass
class Peer:
    url: str
    version: str
    config: str  # the YAML it was started with

    @property
    def txt2img(self) -> str:
        return f"{self.url}/v1/{SLUG}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {MASTER_KEY}"}


def config(fake_url: str) -> dict[str, Any]:
    """One pass-through route, on the gateway's path, to the fake's, adding the upstream key as the gateway does.
    `auth: true` checks the caller's key (here the master key); in 1.106 that is no longer enterprise-only."""
    route = {
        "path": f"/v1/{SLUG}",
        "target": f"{fake_url}/v1/{SLUG}",
        "headers": {"x-api-key": FAKE_SEGMIND_KEY},
        "auth": True,
    }
    return {"general_settings": {"pass_through_endpoints": [route]}}


def installed_version() -> str:
    done = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def _environment() -> dict[str, str]:
    """Ours, less PYTHONPATH (this checkout's packages are not LiteLLM's), plus its offline and quiet settings."""
    inherited = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**inherited, **ENVIRONMENT}


def _wait_ready(process: subprocess.Popen, url: str, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"LiteLLM exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(f"{url}/health/readiness", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"LiteLLM was not ready in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@contextmanager
def running_litellm(fake_url: str) -> Iterator[Peer]:
    """LiteLLM's proxy, one worker, on loopback; stopped (its whole process group) however the block ends."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-litellm-") as folder:
        text = yaml.safe_dump(config(fake_url), sort_keys=False)
        (Path(folder) / "config.yaml").write_text(text)
        log = Path(folder) / "litellm.log"
        command = [str(VENV / "bin" / "litellm"), "--config", "config.yaml", "--host", "127.0.0.1"]
        command += ["--port", str(port), "--num_workers", "1"]
        with log.open("w") as sink:
            process = subprocess.Popen(
                command,
                cwd=folder,
                env=_environment(),
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(process, url, log)
            yield Peer(url, installed_version(), text)
        finally:
            stop_stack(process)  # its whole process group, as the local stack's
