"""The term screen (no I/O): whole words and phrases, whatever the case, spacing or invisible characters; the
operator's patterns; the gateway's default list; a verdict that names the refused field, never what matched. And the
policy itself: checked when it is set, stored and read back."""

from __future__ import annotations

import pytest

from segmind_proxy.domain.errors import Dependency, Outage
from segmind_proxy.domain.screening import (
    ALLOWED,
    OnScreenFailure,
    ScreeningPolicy,
    ScreenMode,
    TermScreen,
    Verdict,
    check_policy,
    default_terms,
    rules_of,
    words_of,
)

OWN = ScreeningPolicy(terms=("ass", "red fox"), default_terms=False)
DEFAULTS_ONLY = ScreeningPolicy()


def screened(prompt: str, policy: ScreeningPolicy = OWN, negative: str | None = None) -> Verdict:
    texts = {"prompt": prompt} if negative is None else {"prompt": prompt, "negative_prompt": negative}
    return TermScreen().screen(texts, policy, timeout=1.0)


# -- words and phrases ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("prompt", ["a class act", "assassin's creed", "bass guitar", "passage", "sassy"])
def test_a_term_matches_whole_words_never_part_of_one(prompt):
    assert screened(prompt) == ALLOWED


@pytest.mark.parametrize("prompt", ["kick ass", "ASS", "an Ass, drawn", "(ass)", "ass."])
def test_a_term_matches_as_a_word_whatever_its_case_or_punctuation(prompt):
    assert screened(prompt) == Verdict(False, "prompt", ("term",))


@pytest.mark.parametrize("prompt", ["a red fox", "RED  FOX", "red-fox", "red_fox", "red,\n fox!", "a Red…Fox"])
def test_a_phrase_matches_across_any_gap_between_its_words(prompt):
    assert not screened(prompt).allowed


@pytest.mark.parametrize("prompt", ["red foxes", "bored fox", "red, the fox? no: redfox"])
def test_a_phrase_matches_its_words_only(prompt):
    assert screened(prompt) == ALLOWED


@pytest.mark.parametrize(
    "prompt",
    [
        "a\u200bss",  # zero-width space
        "a\u200dss",  # zero-width joiner
        "a\u00adss",  # soft hyphen
        "\ufeffass",  # byte order mark
        "r\u2060ed fox",  # word joiner
        "\uff21\uff33\uff33",  # full-width letters (NFKC)
        "red\u00a0fox",  # no-break space
    ],
)
def test_invisible_characters_and_look_alike_forms_do_not_hide_a_word(prompt):
    assert not screened(prompt).allowed


def test_words_are_folded_and_normalised():
    assert words_of("Straße \ufb01ne \uff21\uff22\uff23 x_y name\u0301") == ["strasse", "fine", "abc", "x", "y", "namé"]


def test_a_combining_mark_belongs_to_its_word():
    # Devanagari's vowel signs are combining marks: splitting at them would match a term inside another word.
    assert words_of("नमस्ते दुनिया") == ["नमस्ते", "दुनिया"]
    assert screened("नमस्ते", ScreeningPolicy(terms=("नम",), default_terms=False)) == ALLOWED


def test_a_term_in_a_script_without_spaces_matches_inside_a_sentence():
    policy = ScreeningPolicy(terms=("色情",), default_terms=False)
    assert not screened("我想要色情图片", policy).allowed
    assert screened("我想要风景图片", policy) == ALLOWED


# -- patterns -------------------------------------------------------------------------------------------------------------
def test_a_pattern_matches_case_insensitively_on_the_text_as_written():
    policy = ScreeningPolicy(patterns=(r"\bcall \d{3}-\d{4}\b",), default_terms=False)
    assert screened("poster: CALL 555-1234 now", policy) == Verdict(False, "prompt", ("pattern",))
    assert screened("poster: call 5551234 now", policy) == ALLOWED


def test_a_pattern_sees_no_invisible_characters():
    policy = ScreeningPolicy(patterns=(r"secret\s+word",), default_terms=False)
    assert not screened("s\u200becret  word", policy).allowed


def test_every_kind_of_rule_that_matched_is_named():
    policy = ScreeningPolicy(terms=("fox",), patterns=("porn",))
    assert screened("fox child porn", policy).reasons == ("term", "pattern", "default-term")


def test_rules_are_compiled_once_per_distinct_policy():
    policy = ScreeningPolicy(terms=("only here",), patterns=(r"x\d",), default_terms=False)
    screened("one", policy)
    before = rules_of.cache_info()
    screened("two", policy)
    screened("three", ScreeningPolicy(**{**policy.__dict__, "on_failure": OnScreenFailure.OPEN}))
    after = rules_of.cache_info()
    assert (after.hits - before.hits, after.misses - before.misses) == (2, 0)


def test_a_stored_pattern_that_does_not_compile_leaves_the_screen_unable_to_answer():
    # Stored before check_policy existed: the policy's on_failure decides (503, or served and counted), not a 500.
    with pytest.raises(Outage) as failed:
        screened("anything", ScreeningPolicy(patterns=("[",)))
    assert failed.value.dependency is Dependency.SCREEN


# -- the default list -----------------------------------------------------------------------------------------------------
def test_the_default_list_is_on_unless_the_policy_turns_it_off():
    assert screened("child porn", DEFAULTS_ONLY) == Verdict(False, "prompt", ("default-term",))
    assert screened("Naked, Child", DEFAULTS_ONLY) == Verdict(False, "prompt", ("default-term",))
    assert screened("child porn", ScreeningPolicy(default_terms=False)) == ALLOWED


def test_the_default_list_reads_the_prompt_not_the_negative_prompt():
    # A negative prompt lists what must not be shown, often as comma-separated words a phrase could be read from.
    assert screened("a portrait", DEFAULTS_ONLY, negative="nsfw, child, nude, kids, watermark") == ALLOWED
    # The operator's own terms read every text.
    own = ScreeningPolicy(terms=("watermark",))
    assert screened("a portrait", own, negative="blurry, watermark") == Verdict(False, "negative_prompt", ("term",))


@pytest.mark.parametrize(
    "prompt",
    [
        "a teen girl shooting hoops in a gym",
        "young child playing in a park, golden hour",
        "kill the lights, dramatic film noir",
        "a naked mole rat in a burrow",
        "nude lipstick, beauty product shot",
        "food porn photography of a burger",
        "a baby in a bath, watercolor",
        "a kid with a toy rocket",
        "class photo of a school, 1950s",
        "poster for a campaign against child sexual abuse",
        "a minor chord on a piano, sheet music",
        "shooting star over a lake",
    ],
)
def test_the_default_list_lets_innocent_prompts_through(prompt):
    assert screened(prompt, DEFAULTS_ONLY) == ALLOWED


def test_the_default_list_has_no_ordinary_word_alone():
    ordinary = {
        "teen",
        "young",
        "girl",
        "boy",
        "child",
        "kid",
        "baby",
        "shoot",
        "kill",
        "nude",
        "naked",
        "porn",
        "nsfw",
    }
    single_words = {term for term in default_terms() if len(words_of(term)) == 1}
    assert single_words and not single_words & ordinary
    assert all(words_of(term) for term in default_terms())  # no entry that could never match


# -- the verdict ----------------------------------------------------------------------------------------------------------
def test_a_verdict_names_the_field_and_never_what_matched():
    verdict = screened("a calm lake", ScreeningPolicy(terms=("secret thing",)), negative="the Secret-Thing")
    assert verdict == Verdict(False, "negative_prompt", ("term",))
    assert "secret" not in repr(verdict).lower()


def test_the_first_refused_field_is_named():
    assert screened("red fox", negative="ass").field == "prompt"


def test_nothing_to_screen_is_allowed():
    assert TermScreen().screen({}, DEFAULTS_ONLY, timeout=1.0) == ALLOWED
    assert screened("", DEFAULTS_ONLY) == ALLOWED


# -- checking a policy when it is set -------------------------------------------------------------------------------------
def test_a_usable_policy_has_no_problems():
    assert check_policy(ScreeningPolicy()) == []
    assert check_policy(ScreeningPolicy(terms=(), patterns=())) == []  # no terms of its own: fine
    assert check_policy(ScreeningPolicy(terms=("", "  "), patterns=(r"\bx\b",))) == []  # blank terms are ignored
    arn = "arn:aws:bedrock:eu-west-1:123456789012:guardrail/abc123"
    assert check_policy(ScreeningPolicy(ScreenMode.GUARDRAIL, guardrail_id=arn, guardrail_version="DRAFT")) == []
    assert check_policy(ScreeningPolicy(ScreenMode.GUARDRAIL, guardrail_id="abc123", guardrail_version="12")) == []


def test_a_bad_pattern_is_named_by_its_number():
    problems = check_policy(ScreeningPolicy(patterns=("ok", "[unclosed", "(a")))
    assert len(problems) == 2
    assert problems[0].startswith("pattern 2 ('[unclosed') is not a valid regular expression")
    assert problems[1].startswith("pattern 3 ('(a') is not a valid regular expression")


def test_a_pattern_matching_an_empty_text_would_refuse_everything():
    assert check_policy(ScreeningPolicy(patterns=("x*",))) == [
        "pattern 1 ('x*') matches an empty text, so it would refuse every prompt"
    ]


def test_a_term_of_punctuation_alone_would_never_match():
    assert check_policy(ScreeningPolicy(terms=("fine", "!!!"))) == [
        "term 2 ('!!!') has no letter or digit, so it would never match"
    ]


def test_the_guardrail_mode_needs_an_id_and_a_version_bedrock_accepts():
    assert check_policy(ScreeningPolicy(ScreenMode.GUARDRAIL)) == [
        "mode guardrail needs a guardrail id",
        "mode guardrail needs a guardrail version (a number, or DRAFT)",
    ]
    problems = check_policy(ScreeningPolicy(ScreenMode.GUARDRAIL, guardrail_id="My-Guardrail", guardrail_version="v1"))
    assert len(problems) == 2 and "'My-Guardrail'" in problems[0] and "'v1'" in problems[1]


def test_guardrail_fields_are_not_asked_of_other_modes():
    assert check_policy(ScreeningPolicy(ScreenMode.TERMS, guardrail_id="")) == []
    assert check_policy(ScreeningPolicy(ScreenMode.OFF)) == []


# -- storing a policy -----------------------------------------------------------------------------------------------------
def test_a_policy_reads_back_as_it_was_stored():
    policy = ScreeningPolicy(
        ScreenMode.GUARDRAIL,
        terms=("a", "b c"),
        patterns=(r"\d+",),
        default_terms=False,
        guardrail_id="abc",
        guardrail_version="DRAFT",
        on_failure=OnScreenFailure.OPEN,
        record_prompt=True,
    )
    assert ScreeningPolicy.from_item(policy.to_item()) == policy
    assert ScreeningPolicy.from_item(ScreeningPolicy().to_item()) == ScreeningPolicy()


@pytest.mark.parametrize("item", [None, {}, {"mode": "terms"}])
def test_a_profile_from_before_screening_reads_as_the_default_policy(item):
    policy = ScreeningPolicy.from_item(item)
    assert policy == ScreeningPolicy()
    assert (policy.mode, policy.default_terms, policy.on_failure) == (
        ScreenMode.TERMS,
        True,
        OnScreenFailure.CLOSED,
    )
