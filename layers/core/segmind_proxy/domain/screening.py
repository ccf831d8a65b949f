"""Screening a prompt before it costs anything: a tenant's policy (off, a term and pattern list, or Amazon Bedrock
Guardrails), the verdict a screen gives, and the term screen itself, which needs no I/O. The guardrail screen is an
adapter (adapters/bedrock_guardrail.py); the flow that applies a policy is flows/screening.py."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from importlib import resources
from typing import Any

from segmind_proxy.domain.errors import Dependency, Outage


class ScreenMode(StrEnum):
    OFF = "off"  # nothing screened
    TERMS = "terms"  # the operator's terms and patterns, plus (unless turned off) the gateway's default list
    GUARDRAIL = "guardrail"  # Amazon Bedrock Guardrails' ApplyGuardrail, with the policy's guardrail id and version


class OnScreenFailure(StrEnum):
    """What a request does when its screen cannot answer in time (the guardrail service down or slow)."""

    CLOSED = "closed"  # refused, 503 naming the screen: nothing is generated unscreened (the default)
    OPEN = "open"  # generated unscreened, logged and counted


@dataclass(frozen=True)
class ScreeningPolicy:
    mode: ScreenMode = ScreenMode.TERMS
    terms: tuple[str, ...] = ()  # whole words or phrases, matched case-insensitively
    patterns: tuple[str, ...] = ()  # regular expressions (Python's `re`), matched case-insensitively
    default_terms: bool = True  # the gateway's own list (data/screening/default-terms.txt) besides the operator's
    guardrail_id: str = ""
    guardrail_version: str = ""
    on_failure: OnScreenFailure = OnScreenFailure.CLOSED
    record_prompt: bool = False  # whether a refusal's log line may hold the prompt (never by default)

    def to_item(self) -> dict[str, Any]:
        return {
            "mode": self.mode.value,
            "terms": list(self.terms),
            "patterns": list(self.patterns),
            "default_terms": self.default_terms,
            "guardrail_id": self.guardrail_id,
            "guardrail_version": self.guardrail_version,
            "on_failure": self.on_failure.value,
            "record_prompt": self.record_prompt,
        }

    @classmethod
    def from_item(cls, item: Mapping[str, Any] | None) -> ScreeningPolicy:
        """From a stored profile; a profile stored before screening existed reads as the default policy."""
        if not item:
            return cls()
        return cls(
            mode=ScreenMode(item.get("mode", ScreenMode.TERMS)),
            terms=tuple(item.get("terms") or ()),
            patterns=tuple(item.get("patterns") or ()),
            default_terms=bool(item.get("default_terms", True)),
            guardrail_id=str(item.get("guardrail_id", "")),
            guardrail_version=str(item.get("guardrail_version", "")),
            on_failure=OnScreenFailure(item.get("on_failure", OnScreenFailure.CLOSED)),
            record_prompt=bool(item.get("record_prompt", False)),
        )


@dataclass(frozen=True)
class Verdict:
    """A screen's answer. `field`: the request field refused (its role's name: `prompt` or `negative_prompt`);
    `reasons`: what kind of rule matched (`term`, `pattern`, a guardrail's filter types), never the matched text."""

    allowed: bool
    field: str | None = None
    reasons: tuple[str, ...] = ()


ALLOWED = Verdict(True)


# -- the term screen -------------------------------------------------------------------------------------------------------
DEFAULT_TERMS_FILE = "data/screening/default-terms.txt"
NEGATIVE_PROMPT = "negative_prompt"  # the texts' key for it, as the flow names them (catalog.Role's value)

# Scripts written without spaces between words (Thai, Lao, Myanmar, Khmer, Japanese kana, CJK ideographs): a term in
# one of them is matched within a run of letters, as the text has no gaps to find it between.
_UNSPACED = re.compile("[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# What Bedrock accepts in ApplyGuardrail's path (botocore's service model): checked when the policy is set, so a
# typing mistake is told to the operator, not found by the first request.
_GUARDRAIL_ID = re.compile(r"[a-z0-9]+|arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:guardrail/[a-z0-9]+")
_GUARDRAIL_VERSION = re.compile(r"[1-9][0-9]{0,7}|DRAFT")


def normalised(text: str) -> str:
    """The text as a pattern reads it: format characters (zero-width spaces and joiners, soft hyphens, direction
    marks) removed, so none can split a word unseen; then NFKC, so look-alike forms (full-width letters, ligatures)
    read as their plain letters."""
    return unicodedata.normalize("NFKC", "".join(ch for ch in text if unicodedata.category(ch) != "Cf"))


def words_of(text: str) -> list[str]:
    """The text's words as a term is matched against them: normalised, case-folded (NFKC again after folding, as
    Unicode's NFKC_Casefold does), split at every run of characters that are not letters, digits or combining marks
    (spaces, punctuation, underscores: any run is one gap)."""
    folded = unicodedata.normalize("NFKC", normalised(text).casefold())
    words: list[str] = []
    start = None
    for index, char in enumerate(folded):
        # Combining marks belong to their word: the vowel signs of Indic scripts are marks, not letters.
        if char.isalnum() or unicodedata.category(char).startswith("M"):
            start = index if start is None else start
        elif start is not None:
            words.append(folded[start:index])
            start = None
    if start is not None:
        words.append(folded[start:])
    return words


@dataclass(frozen=True)
class WordList:
    """Terms as sequences of words, matched as whole words: "ass" never matches "class", "a b" matches "a-b"."""

    phrases: frozenset[tuple[str, ...]]
    lengths: tuple[int, ...]  # the distinct phrase lengths, in words
    unspaced: tuple[str, ...]  # terms in a script without spaces, matched within words (gaps removed)

    @classmethod
    def of(cls, terms: Iterable[str]) -> WordList:
        phrases: set[tuple[str, ...]] = set()
        unspaced: set[str] = set()
        for term in terms:
            words = tuple(words_of(term))
            if words and _UNSPACED.search("".join(words)):
                unspaced.add("".join(words))
            elif words:
                phrases.add(words)
        return cls(frozenset(phrases), tuple(sorted({len(p) for p in phrases})), tuple(sorted(unspaced)))

    def found_in(self, words: list[str]) -> bool:
        for length in self.lengths:
            if any(tuple(words[start : start + length]) in self.phrases for start in range(len(words) - length + 1)):
                return True
        joined = "".join(words) if self.unspaced else ""
        return any(term in joined for term in self.unspaced)


@dataclass(frozen=True)
class Rules:
    """A policy's terms, patterns and (where it keeps it) the default list, ready to match."""

    terms: WordList
    patterns: tuple[re.Pattern[str], ...]
    defaults: WordList | None

    def reasons(self, text: str, *, with_defaults: bool = True) -> tuple[str, ...]:
        """What kinds of rule the text breaks (`term`, `pattern`, `default-term`); never what matched."""
        words = words_of(text)
        found: list[str] = []
        if self.terms.found_in(words):
            found.append("term")
        if self.patterns:
            plain = normalised(text)
            if any(pattern.search(plain) for pattern in self.patterns):
                found.append("pattern")
        if with_defaults and self.defaults is not None and self.defaults.found_in(words):
            found.append("default-term")
        return tuple(found)


@lru_cache(maxsize=1)
def default_terms() -> tuple[str, ...]:
    """The gateway's default list (data/screening/default-terms.txt): one term or phrase a line, `#` comments."""
    text = resources.files("segmind_proxy").joinpath(DEFAULT_TERMS_FILE).read_text("utf-8")
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return tuple(line for line in lines if line)


@lru_cache(maxsize=1)
def _default_list() -> WordList:
    return WordList.of(default_terms())


@lru_cache(maxsize=256)
def rules_of(terms: tuple[str, ...], patterns: tuple[str, ...], with_defaults: bool) -> Rules:
    """Compiled once per distinct list (most tenants share the default policy). Raises re.error for a bad pattern."""
    compiled = tuple(re.compile(pattern, re.IGNORECASE) for pattern in patterns)
    return Rules(WordList.of(terms), compiled, _default_list() if with_defaults else None)


class TermScreen:
    """The `terms` mode: the policy's words and phrases, its regular expressions, and the gateway's default list, with
    no I/O. The default list reads the prompt only (`defaults_skip`): a negative prompt lists what an image must not
    show, as words a phrase of the list could be read from ("nsfw, child")."""

    name = "content policy"

    def __init__(self, defaults_skip: frozenset[str] = frozenset({NEGATIVE_PROMPT})) -> None:
        self.defaults_skip = defaults_skip

    def screen(self, texts: Mapping[str, str], policy: ScreeningPolicy, *, timeout: float) -> Verdict:
        try:
            rules = rules_of(policy.terms, policy.patterns, policy.default_terms)
        except re.error as exc:
            # A pattern stored before check_policy caught it: this screen cannot answer, and the policy's on_failure
            # says what that means (refuse with 503, or serve unscreened and count it), as for a guardrail down.
            raise Outage(Dependency.SCREEN) from exc
        for field, text in texts.items():
            reasons = rules.reasons(text, with_defaults=field not in self.defaults_skip)
            if reasons:
                return Verdict(False, field, reasons)
        return ALLOWED


def check_policy(policy: ScreeningPolicy) -> list[str]:
    """What makes a policy unusable, for the operator setting it (empty: none). Patterns are numbered from 1."""
    problems = [*_pattern_problems(policy.patterns), *_term_problems(policy.terms)]
    if policy.mode is ScreenMode.GUARDRAIL:
        problems += _guardrail_problems(policy.guardrail_id, policy.guardrail_version)
    return problems


def _pattern_problems(patterns: tuple[str, ...]) -> list[str]:
    problems: list[str] = []
    for number, pattern in enumerate(patterns, 1):
        try:
            compiled = re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            problems.append(f"pattern {number} ({pattern!r}) is not a valid regular expression: {exc}")
            continue
        if compiled.search(""):
            problems.append(f"pattern {number} ({pattern!r}) matches an empty text, so it would refuse every prompt")
    return problems


def _term_problems(terms: tuple[str, ...]) -> list[str]:
    # An empty term is ignored; one of punctuation alone is a mistake: it would never match anything.
    return [
        f"term {number} ({term!r}) has no letter or digit, so it would never match"
        for number, term in enumerate(terms, 1)
        if term.strip() and not words_of(term)
    ]


def _guardrail_problems(guardrail_id: str, version: str) -> list[str]:
    problems: list[str] = []
    if not guardrail_id:
        problems.append("mode guardrail needs a guardrail id")
    elif not _GUARDRAIL_ID.fullmatch(guardrail_id):
        problems.append(f"{guardrail_id!r} is neither a guardrail id (lower-case letters and digits) nor its ARN")
    if not version:
        problems.append("mode guardrail needs a guardrail version (a number, or DRAFT)")
    elif not _GUARDRAIL_VERSION.fullmatch(version):
        problems.append(f"{version!r} is not a guardrail version (a number from 1, or DRAFT)")
    return problems
