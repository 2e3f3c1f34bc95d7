"""Light corrections: one table per rule, every change recorded, the teacher's text never lost."""

from __future__ import annotations

import pytest

from asr_distill.normalise import NORMALISERS, format_insensitive, get_normaliser
from asr_distill.quality.correct import (
    Correction,
    CorrectionConfig,
    correct_text,
    drop_hallucination_phrases,
    find_loop,
    lexicon_correct,
    normalise_form,
    read_lexicon,
    trim_loops,
)

SPOKEN = [
    ("G-M-E-F 39.", "g m e f three nine"),  # AN4: spelled letters, digits as words
    ("Rubout GMEF39", "rubout g m e f three nine"),
    ("D.A.J.N.H. 96", "d a j n h nine six"),
    ("Erase A, B, F, N, Q, 57.", "erase a b f n q five seven"),
    ("Enter 9169", "enter nine one six nine"),
    ("555-0142", "five five five zero one four two"),
    ("May 2nd, 1965", "may second one nine six five"),
    ("the 45th floor", "the forty fifth floor"),
    ("June 30th", "june thirtieth"),
    ("1.5 more", "one point five more"),
    ("It's fine.", "it's fine"),
    ("'quoted' twenty nine", "quoted twenty nine"),
    ("", ""),
]


@pytest.mark.parametrize("written, spoken", SPOKEN)
def test_spoken_form(written, spoken):
    assert get_normaliser("spoken_form")(written) == spoken


@pytest.mark.parametrize("written, _", SPOKEN)
def test_spoken_form_keeps_what_was_said(written, _):
    # WER is scored format-insensitively: the spoken form must not change a label's WER.
    assert format_insensitive(get_normaliser("spoken_form")(written)) == format_insensitive(written)


@pytest.mark.parametrize(
    "written, spoken",
    [
        ("$5 and 50%", "five dollars and five zero percent"),
        ("A & B + C @ 3", "a and b plus c at three"),
    ],
)
def test_spoken_form_says_symbols(written, spoken):
    assert get_normaliser("spoken_form")(written) == spoken


def test_spoken_form_is_registered_beside_the_others():
    assert {"whisper_en", "whisper_basic", "format_insensitive", "spoken_form"} <= set(NORMALISERS)


LOOPS = [
    ("the the the the the cat", "the cat"),
    ("1, 2, 1, 2, 1, 2, 1, 2, 3", "1, 2, 3"),
    ("no, no, No. no no", "no,"),
    ("I am here I am here I am here I am here now", "I am here now"),
    ("five five five", None),  # three copies are speech (AN4 digit strings)
    ("l l", None),
    ("enter seven", None),
]


@pytest.mark.parametrize("text, expected", LOOPS)
def test_trim_loops(text, expected):
    new, c = trim_loops(text)
    if expected is None:
        assert (new, c) == (text, None)
    else:
        assert new == expected
        assert c == Correction("trim_loops", text, expected)


def test_find_loop_reports_start_ngram_and_copies():
    assert find_loop("a b c d c d c d c d e".split()) == (2, 2, 4)
    assert find_loop("a b c".split()) is None


HALLUCINATIONS = [
    # text, confidence, expected text (None: unchanged)
    ("Enter 7. Thank you for watching!", 0.3, "Enter 7."),
    ("Thanks for watching.", 0.2, ""),
    ("Yes. Subtitles by the Amara.org community", 0.5, "Yes."),
    ("Go. Subtitles by Bob Smith. Stop.", 0.5, "Go. Stop."),
    ("Please subscribe", 0.1, ""),
    ("Enter 7. Thank you for watching!", 0.95, None),  # confident: maybe said; the filter decides
    ("thank you", 0.1, None),  # not a stock phrase on its own
    ("enter seven", 0.1, None),
]


@pytest.mark.parametrize("text, confidence, expected", HALLUCINATIONS)
def test_drop_hallucination_phrases(text, confidence, expected):
    new, c = drop_hallucination_phrases(text, confidence)
    if expected is None:
        assert (new, c) == (text, None)
    else:
        assert new == expected
        assert c is not None and c.rule == "hallucination_phrase" and c.old == text and c.new == expected


LEXICON = ("Zendesk", "Salesforce", "New York", "Pittsburgh")
LEXICON_CASES = [
    ("I use Zendeskk daily.", "I use Zendesk daily."),
    ("call salesforse, please", "call Salesforce, please"),
    ("fly to new yorck now", "fly to New York now"),
    ("back in Pitsburgh.", "back in Pittsburgh."),
    ("I use Zendesk daily.", None),  # already right
    ("the zen desk", None),  # too far from any entry
    ("york", None),
]


@pytest.mark.parametrize("text, expected", LEXICON_CASES)
def test_lexicon_correct(text, expected):
    new, c = lexicon_correct(text, LEXICON)
    if expected is None:
        assert (new, c) == (text, None)
    else:
        assert new == expected
        assert c == Correction("lexicon", text, expected)


def test_lexicon_threshold_is_respected():
    assert lexicon_correct("Zendessk", ("Zendesk",), min_similarity=99.0)[1] is None
    assert lexicon_correct("Zendessk", ("Zendesk",), min_similarity=80.0)[0] == "Zendesk"


def test_normalise_form_records_the_normaliser():
    new, c = normalise_form("G-M-E-F", "spoken_form")
    assert new == "g m e f" and c == Correction("normalise:spoken_form", "G-M-E-F", "g m e f")
    assert normalise_form("G-M-E-F", "none") == ("G-M-E-F", None)
    assert normalise_form("g m e f", "spoken_form") == ("g m e f", None)


def test_correct_text_chains_rules_in_order_and_keeps_every_step():
    teacher = "Rubout Zendeskk Zendeskk Zendeskk Zendeskk 39. Thank you for watching."
    cfg = CorrectionConfig(lexicon=("Zendesk",))
    text, cs = correct_text(teacher, confidence=0.3, config=cfg)
    assert text == "rubout zendesk three nine"
    assert [c.rule for c in cs] == ["trim_loops", "hallucination_phrase", "lexicon", "normalise:spoken_form"]
    assert cs[0].old == teacher  # the first step starts from the teacher's text
    for before, after in zip(cs, cs[1:], strict=False):
        assert after.old == before.new  # an unbroken chain back to the teacher


def test_correction_config_rejects_unknown_normaliser():
    with pytest.raises(ValueError, match="known normalisers"):
        CorrectionConfig(normaliser="no_such")


def test_read_lexicon(tmp_path):
    p = tmp_path / "words.txt"
    p.write_text("# products\nZendesk\n\n New York \n")
    assert read_lexicon(p) == ("Zendesk", "New York")
    with pytest.raises(FileNotFoundError, match="one word or name per line"):
        read_lexicon(tmp_path / "missing.txt")
