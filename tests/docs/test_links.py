"""Every relative link of README.md and docs/*.md leads somewhere: to a file of the repository and, with a
`#fragment`, to a heading of that file (anchors as GitHub makes them)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)|<img src=\"([^\"]+)\"")
FENCE = re.compile(r"^ *```.*?^ *```", re.MULTILINE | re.DOTALL)


def anchors(document: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped (but `-` and `_`), spaces as hyphens."""
    text = FENCE.sub("", document.read_text())
    headings = re.findall(r"^#{1,6} +(.+?) *$", text, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def links(document: Path) -> list[str]:
    text = FENCE.sub("", document.read_text())
    return [a or b for a, b in LINK.findall(text)]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_somewhere(document: Path):
    broken = []
    for link in links(document):
        if re.match(r"^[a-z]+:", link):
            continue  # http(s), mailto: not checked here
        path, _, fragment = link.partition("#")
        target = (document.parent / path).resolve() if path else document
        if not target.exists() or (fragment and target.suffix == ".md" and fragment not in anchors(target)):
            broken.append(link)
    assert broken == []


def test_the_readme_links_every_page():
    readme = (ROOT / "README.md").read_text()
    missing = [p.name for p in DOCUMENTS[1:] if f"(docs/{p.name})" not in readme]
    assert missing == []
