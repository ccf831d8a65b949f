"""Every fenced example of README.md and docs/*.md runs as written against a local stack.

Sybil reads the Markdown: its `CodeBlockParser`, subclassed per language, finds the fenced blocks, and its
`SkipParser` reads `<!-- skip: next "reason" -->` directives, so a block that cannot run here (one that needs AWS, or a
fragment of a webhook receiver) is reported as skipped, with its reason. Each block runs in a subprocess, in a fresh
temporary directory, as a reader would run it from the repository's root:

- `bash` with `bash -euo pipefail`;
- `python` with this virtualenv's interpreter;
- `js` and `javascript` with `node`, from a temporary `.mjs` file in `tests/integration/js/`, where `make test`
  installs the `openai` npm package, so that `import OpenAI from "openai"` resolves.

The local stack's URL, `http://127.0.0.1:3000`, is replaced by the test stack's before a block runs; the stack's demo
key is the docs' (`segmind-proxy-local-dev-key`). The subprocess gets a developer's environment: no AWS or Powertools
settings of the unit tests, `.venv/bin` first on `PATH`, and `MOTO_PORT` of this stack, so that
`.venv/bin/segmind-proxy --local` manages it. The temporary directory holds a `.venv` link to this virtualenv, so
that commands written for the repository's root (`.venv/bin/segmind-proxy`) run as written. A block fails its test on
a non-zero exit, with its output.

Sybil's own pytest integration (`pytest_collect_file` in a conftest.py) collects documents under the conftest's
directory, and pytest visits only `tests/` here; so this module parametrizes one test over the examples Sybil parses,
and evaluates them in document order (a skip directive right before its block).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import unittest
import uuid
from pathlib import Path

import pytest
from sybil import Document, Example, Sybil
from sybil.parsers.markdown import CodeBlockParser, SkipParser
from sybil.parsers.markdown.lexers import FencedCodeBlockLexer

from local.harness import RunningStack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LOCAL_URL = "http://127.0.0.1:3000"
VENV = Path(sys.executable).parent.parent
JS_DIR = ROOT / "tests" / "integration" / "js"
TIMEOUT_SECONDS = 120

RUN = {"bash", "python", "js", "javascript"}
NOT_RUN = {"json", "text", "yaml", "mermaid"}  # output samples, listings, configuration files and diagrams


def environment(stack: RunningStack) -> dict[str, str]:
    """A developer's shell, pointed at this stack."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env["PATH"] = os.pathsep.join([str(VENV / "bin"), env.get("PATH", "")])
    env["MOTO_PORT"] = str(stack.moto_port)
    return env


class RunParser(CodeBlockParser):
    """A fenced block of `language`, written to a file and run by `command` in the example's directory."""

    suffix: str

    def command(self, script: Path) -> list[str]:
        raise NotImplementedError

    def script_path(self, workdir: Path) -> Path:
        return workdir / f"example{self.suffix}"

    def evaluate(self, example: Example) -> None:
        stack: RunningStack = example.namespace["stack"]
        workdir: Path = example.namespace["workdir"]
        source = str(example.parsed).replace(LOCAL_URL, stack.base)
        script = self.script_path(workdir)
        script.write_text(source)
        try:
            done = subprocess.run(
                self.command(script),
                cwd=workdir,
                env=environment(stack),
                capture_output=True,
                text=True,
                timeout=TIMEOUT_SECONDS,
                check=False,
            )
        finally:
            if not script.is_relative_to(workdir):
                script.unlink(missing_ok=True)
        if done.returncode != 0:
            where = f"{Path(example.path).relative_to(ROOT)}, line {example.line}"
            pytest.fail(
                f"{self.language} example at {where} exited {done.returncode}\n"
                f"--- source\n{source}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}",
                pytrace=False,
            )


class BashParser(RunParser):
    language = "bash"
    suffix = ".sh"

    def command(self, script: Path) -> list[str]:
        return ["bash", "-euo", "pipefail", str(script)]


class PythonParser(RunParser):
    language = "python"
    suffix = ".py"

    def command(self, script: Path) -> list[str]:
        return [sys.executable, str(script)]


class JavaScriptParser(RunParser):
    """Placed beside `tests/integration/js/node_modules`, so that Node resolves `openai`."""

    suffix = ".mjs"

    def script_path(self, workdir: Path) -> Path:
        return JS_DIR / f"docs-example-{uuid.uuid4().hex}.mjs"

    def command(self, script: Path) -> list[str]:
        assert (JS_DIR / "node_modules" / "openai").is_dir(), (
            "the openai npm package: `make test` installs it (or `npm ci` in tests/integration/js)"
        )
        return ["node", str(script)]


SYBIL = Sybil(
    parsers=[BashParser(), PythonParser(), JavaScriptParser("js"), JavaScriptParser("javascript"), SkipParser()]
)


def is_skip(example: Example) -> bool:
    return isinstance(example.region.parsed, tuple)  # SkipParser's (action, reason)


def examples() -> list[tuple[Example, Example | None]]:
    """Each block to run, with the skip directive right before it, if any."""
    found: list[tuple[Example, Example | None]] = []
    for path in DOCUMENTS:
        skip: Example | None = None
        for example in SYBIL.parse(path).examples():
            if is_skip(example):
                skip = example
            else:
                found.append((example, skip))
                skip = None
    return found


EXAMPLES = examples()


@pytest.mark.parametrize(
    ("example", "skip"),
    [pytest.param(e, s, id=f"{Path(e.path).relative_to(ROOT)}:{e.line}") for e, s in EXAMPLES],
)
def test_example_runs(example: Example, skip: Example | None, docs_stack: RunningStack, tmp_path: Path):
    (tmp_path / ".venv").symlink_to(VENV)
    example.namespace.update(stack=docs_stack, workdir=tmp_path)
    if skip is not None:
        skip.evaluate()  # Sybil's skipper: the next example then raises SkipTest with the directive's reason
    try:
        example.evaluate()
    except unittest.SkipTest as skipped:
        pytest.skip(f"{Path(example.path).relative_to(ROOT)}:{example.line}: {skipped}")


def fences(document: Path) -> list[tuple[int, str]]:
    """(line, info string) of every fenced code block in a document."""
    text = document.read_text()
    lexer = FencedCodeBlockLexer(language=r"[^\n]*", mapping={"language": "language"})
    return [(text.count("\n", 0, r.start) + 1, r.lexemes["language"].strip()) for r in lexer(Document(text, "x"))]


def test_every_block_says_whether_it_runs():
    """A block in another language, or in none, would be silently left out: each is run, or a listing or sample."""
    unknown = [
        f"{path.relative_to(ROOT)}:{line} {language or '(no language)'}"
        for path in DOCUMENTS
        for line, language in fences(path)
        if language not in RUN | NOT_RUN
    ]
    assert unknown == []


def test_every_skip_is_of_the_next_block_and_gives_its_reason():
    skips = [e for path in DOCUMENTS for e in SYBIL.parse(path).examples() if is_skip(e)]
    assert skips, "the deployment and receiver fragments are skipped with a reason"
    for example in skips:
        action, reason = example.region.parsed
        where = f"{Path(example.path).relative_to(ROOT)}:{example.line}"
        assert action == "next", where
        assert reason and isinstance(ast.literal_eval(reason), str) and ast.literal_eval(reason).strip(), where
    assert len(skips) <= 12, "keep the skipped blocks few: a block that can run must run"
