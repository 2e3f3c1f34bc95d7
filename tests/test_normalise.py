"""The normaliser registry, and format_insensitive on real AN4 reference/Whisper pairs."""

from __future__ import annotations

import pytest

from asr_distill.normalise import NORMALISERS, get_normaliser, register_normaliser

# (AN4-style reference, Whisper-style hypothesis): both must normalise to the same text.
SAME_UNDER_FORMAT_INSENSITIVE = [
    ("rubout g m e f three nine", "Rubout, G-M-E-F, 39."),
    ("enter nine one six nine", "Enter 9169."),
    ("erase c q q f seven", "Erase CQQF7."),
    ("twelve twenty nine fifty nine", "12 29 59"),
    ("twelve twenty nine fifty nine", "122959"),
    ("six two five", "625"),
    ("b a o z five three", "BAOZ53"),
    ("b a o z five three", "B-A-O-Z 5-3"),
    # "oh" for zero in a digit string: Whisper writes 0.
    ("six five five eight seven four oh", "655-8740"),
    ("two oh oh one", "2001"),
    ("nineteen oh five", "1905"),
    ("fifty eight oh nine", "58 09"),
    # spelled letters, hyphenated or with periods
    ("r u b o u t", "R-U-B-O-U-T"),
    ("g m e f", "G.M.E.F."),
    ("g m e f", "G. M. E. F."),
    ("p a t t e r s o n", "P-A-T-T-E-R-S-O-N."),
    # a lone one, which Whisper's normaliser leaves as a word (and turns "1" into)
    ("one", "1"),
    ("one", "One."),
    ("enter one", "Enter 1."),
    # the control word, heard as two words
    ("rubout", "Rub out."),
    # ordinals and dates; "ninth" is missing from Whisper's number table
    ("november ninth sixty five", "November 9th, 65"),
    ("may second nineteen sixty five", "May 2nd, 1965."),
    ("august twenty second nineteen sixty one", "August 22nd 1961"),
    # Whisper writes dates as cardinals
    ("june eighteenth nineteen sixty eight", "June 18, 1968."),
    ("may second nineteen sixty five", "May 2, 1965."),
    ("november ninth sixty five", "November 9, 65."),
    ("one hundred", "100"),
    ("zero", "0"),
    # dollars, and support-call transcripts in written form
    ("forty nine dollars and ninety nine cents", "$49.99"),
    ("$49.99", "$49.99."),
    ("order number four eight two seven one", "Order number 48271."),
    ("order number 48,271", "order number 48271"),
    ("call me at five five five oh one four two", "Call me at 555-0142."),
    ("five five five zero five five two", "555-0552"),
    ("agent double oh seven", "Agent 007."),
    ("order number oh four eight two seven one", "Order number 048271."),
    ("one point oh five", "1.05"),
    ("twenty dollars", "$20"),
]

DIFFERENT_UNDER_FORMAT_INSENSITIVE = [
    ("six two five", "626"),  # a real digit error
    ("g m e f", "GMEFG"),
    ("rubout", "Robot."),
]


@pytest.mark.parametrize(("ref", "hyp"), SAME_UNDER_FORMAT_INSENSITIVE)
def test_format_insensitive_agrees_on_format_only_differences(ref, hyp):
    norm = get_normaliser("format_insensitive")
    assert norm(ref) == norm(hyp)


@pytest.mark.parametrize(("ref", "hyp"), DIFFERENT_UNDER_FORMAT_INSENSITIVE)
def test_format_insensitive_keeps_real_differences(ref, hyp):
    norm = get_normaliser("format_insensitive")
    assert norm(ref) != norm(hyp)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Rubout, G-M-E-F, 39.", "rubout g m e f 3 9"),
        ("Erase CQQF7.", "erase c q q f 7"),
        ("twelve twenty nine fifty nine", "1 2 2 9 5 9"),
        ("six five five eight seven four oh", "6 5 5 8 7 4 0"),
        ("$49.99", "$ 4 9 . 9 9"),
        ("rub out", "rubout"),
        ("AeroLux fan", "aerolux fan"),  # mixed case is a word, not spelling
        ("ABCDEFGHIJK", "abcdefghijk"),  # over 10 characters: an acronym, not spelling
        ("555-0142", "5 5 5 0 1 4 2"),
        ("Wait... what?", "wait what"),
        ("...", ""),
        ("", ""),
    ],
)
def test_format_insensitive_output(text, expected):
    assert get_normaliser("format_insensitive")(text) == expected


def test_whisper_en_alone_does_not_split_digits():
    # Why format_insensitive exists: Whisper's own normaliser scores these as different.
    norm = get_normaliser("whisper_en")
    assert norm("twelve twenty nine fifty nine") != norm("12 29 59")
    assert norm("Hello, World!") == "hello world"


def test_whisper_basic_keeps_number_words():
    assert get_normaliser("whisper_basic")("Six, Two; FIVE!") == "six two five"


def test_registry_names():
    assert {"whisper_en", "whisper_basic", "format_insensitive"} <= set(NORMALISERS)


def test_unknown_normaliser_names_the_known_ones():
    with pytest.raises(ValueError, match="format_insensitive") as info:
        get_normaliser("no_such_normaliser")
    assert "whisper_en" in str(info.value)


def test_register_normaliser_adds_and_refuses_duplicates():
    name = "test_upper_only"
    try:

        @register_normaliser(name)
        def upper(text: str) -> str:
            return text.upper()

        assert get_normaliser(name)("ab") == "AB"
        with pytest.raises(ValueError, match="already registered"):
            register_normaliser(name)(str.lower)
    finally:
        NORMALISERS.pop(name, None)
