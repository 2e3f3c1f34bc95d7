"""One registry of text normalisers, shared by correction and WER.

A WER is only meaningful with the normaliser that produced it, and a correction
rule that compares texts must see them the way the scorer will. So every stage
looks normalisers up here by name, and reports carry that name.

Whisper's normalisers are imported lazily: ``import asr_distill.normalise`` stays
cheap, and a normaliser that is never used never loads its spelling tables.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache

Normaliser = Callable[[str], str]

NORMALISERS: dict[str, Normaliser] = {}

# format_insensitive, step 1: an all-caps token of letters and digits, 2-10 characters,
# with at least one letter ("GMEF", "CQQF7"); Whisper writes spelled letters that way.
# Longer tokens are more likely real acronyms or shouting than spelling.
MIN_SPELLED_LEN = 2
MAX_SPELLED_LEN = 10
_SPELLED_TOKEN = re.compile(
    rf"(?<![\w'])(?=[A-Z0-9]*[A-Z])[A-Z0-9]{{{MIN_SPELLED_LEN},{MAX_SPELLED_LEN}}}(?![\w'])"
)
# Step 3: every digit becomes its own token, so "122959", "12 29 59" and "1229 59" agree.
_DIGIT = re.compile(r"\d")
# Whisper's normaliser turns a lone "1" back into the word "one" (and leaves the word
# "one" alone when no other number word is beside it); step 3 makes it a digit again.
_LONE_ONE = re.compile(r"\bone\b")
# Step 4: AN4's control word is "rubout"; Whisper often hears two words.
_RUB_OUT = re.compile(r"\brub out\b")
_SPACES = re.compile(r"\s+")
# Whisper's number table spells the ordinal "nineth", so the real word "ninth" is left
# as a word ("twenty ninth" -> "20 ninth") while "29th" stays digits; fix it beforehand.
_NINTH = re.compile(r"\bninth\b", re.IGNORECASE)
# Whisper's normaliser reads a written digit string as a number and drops its leading
# zeros ("555-0142" -> "555 142", "09" -> "9") but keeps a spoken "oh"/"zero"; so the
# leading zeros of a digit run become their own tokens first ("0142" -> "0 142").
# Not after a decimal point or separator, where "1.05" must stay one number.
_LEADING_ZEROS = re.compile(r"(?<![\d.,])0+(?=\d)")
# Whisper writes dates as cardinals ("May 2, 1965") where AN4 and speakers say the
# ordinal ("may second"): after Whisper's normaliser both are digits, so drop the suffix.
_ORDINAL_SUFFIX = re.compile(r"(?<=\d)(?:st|nd|rd|th)\b")
# Whisper's normaliser keeps "." for decimals, and with it stray dots ("..." -> ".").
_STRAY_DOT = re.compile(r"(?<!\d)\.|\.(?!\d)")


def register_normaliser(name: str) -> Callable[[Normaliser], Normaliser]:
    """Add a normaliser to :data:`NORMALISERS` under ``name``.

    Raises:
        ValueError: if the name is taken, so two modules cannot silently shadow
            each other and change every WER reported under that name.
    """

    def decorator(fn: Normaliser) -> Normaliser:
        if name in NORMALISERS:
            raise ValueError(f"normaliser {name!r} is already registered")
        NORMALISERS[name] = fn
        return fn

    return decorator


def get_normaliser(name: str) -> Normaliser:
    """Return the normaliser registered as ``name``.

    Raises:
        ValueError: naming the known normalisers, so a typo in a config fails
            before any audio is decoded.
    """
    try:
        return NORMALISERS[name]
    except KeyError:
        known = ", ".join(sorted(NORMALISERS))
        raise ValueError(f"unknown normaliser {name!r}; known normalisers: {known}") from None


@cache
def _english() -> Normaliser:
    # Built once: it loads Whisper's English spelling table from JSON.
    from whisper.normalizers import EnglishTextNormalizer

    return EnglishTextNormalizer()


@cache
def _basic() -> Normaliser:
    from whisper.normalizers import BasicTextNormalizer

    return BasicTextNormalizer()


@register_normaliser("whisper_en")
def whisper_en(text: str) -> str:
    """Whisper's ``EnglishTextNormalizer``: the usual English WER convention."""
    return _english()(text)


@register_normaliser("whisper_basic")
def whisper_basic(text: str) -> str:
    """Whisper's ``BasicTextNormalizer``: lower-case, no punctuation, any language."""
    return _basic()(text).strip()


def split_spelled(text: str) -> str:
    """Split all-caps letter/digit tokens into characters ("CQQF7" -> "C Q Q F 7")."""
    return _SPELLED_TOKEN.sub(lambda m: " ".join(m.group(0)), text)


def _protect_leading_zeros(text: str) -> str:
    return _LEADING_ZEROS.sub(lambda m: " ".join(m.group(0)) + " ", text)


@register_normaliser("format_insensitive")
def format_insensitive(text: str) -> str:
    """Score what was said, not how it was written (AN4-style spelled letters and digits).

    AN4 references spell letters as words and numbers as digit words ("g m e f",
    "six two five", "oh" for zero); Whisper writes "GMEF", "G-M-E-F", "625". Whisper's
    English normaliser alone leaves most of AN4's WER as formatting. Steps:

    1. split all-caps letter/digit tokens of 2-10 characters into characters. Two
       repairs to Whisper's normaliser go here too: leading zeros of a digit run
       become tokens of their own ("555-0142" would lose its 0, "oh one four two"
       would not), and "ninth" is respelled "nineth" as Whisper's number table has
       it, so it becomes "9th" like the other ordinals;
    2. Whisper's ``EnglishTextNormalizer`` (number words to digits; it also splits
       "G-M-E-F" and "G.M.E.F." into letters and reads every lone "o"/"oh" as 0,
       so the letter O and the digit zero are the same token on both sides);
    3. every digit its own token ("39" -> "3 9", "$49.99" -> "$ 4 9 . 9 9"), a word
       "one" left by step 2 becomes "1", and a "." that is not a decimal point goes;
       ordinal suffixes go too ("may second" and "May 2" both give "may 2"): Whisper
       writes dates as cardinals, so "eighteen"/"eighteenth" is a format difference
       more often than a recognition error (measured on AN4 test: 4 of 130 utterances);
    4. "rub out" -> "rubout".

    Applied identically to references and hypotheses.
    """
    text = _protect_leading_zeros(_NINTH.sub("nineth", split_spelled(text)))
    text = _ORDINAL_SUFFIX.sub("", _STRAY_DOT.sub(" ", _english()(text)))
    text = _DIGIT.sub(r" \g<0> ", text)
    text = _LONE_ONE.sub("1", text)
    text = _SPACES.sub(" ", text).strip()
    return _RUB_OUT.sub("rubout", text)


# spoken_form: written forms a student should learn as the words a speaker says.
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# Ordinals below 100 are read as words ("29th" -> "twenty ninth"); longer ones as digits.
ORDINAL_WORDS = (
    "",
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
)
SYMBOL_WORDS = {"%": "percent", "&": "and", "+": "plus", "@": "at", "#": "number", "=": "equals"}
# "G-M-E-F", "G.M.E.F.", "g-m-e-f": single letters or digits joined by hyphens or dots.
# At least one letter: "1.5" is a decimal, not a chain.
_LETTER_CHAIN = re.compile(r"(?<![\w'])(?=[\w.-]*[A-Za-z])[A-Za-z0-9](?:[-.][A-Za-z0-9])+\.?(?![\w'])")
_ORDINAL = re.compile(r"\b(\d+)(?:st|nd|rd|th)\b", re.IGNORECASE)
_CURRENCY = re.compile(r"\$\s?(\d+(?:\.\d+)?)")
_DECIMAL = re.compile(r"(?<=\d)\.(?=\d)")
_SYMBOL = re.compile("[" + re.escape("".join(SYMBOL_WORDS)) + "]")
_NOT_WORD = re.compile(r"[^\w' ]+|_")
_EDGE_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")


TENS_WORDS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def _ordinal_words(m: re.Match) -> str:
    n = int(m.group(1))
    if 0 < n < 20:
        return f" {ORDINAL_WORDS[n]} "
    if 20 <= n < 100:
        tens, unit = divmod(n, 10)
        if unit:
            return f" {TENS_WORDS[tens]} {ORDINAL_WORDS[unit]} "
        return f" {TENS_WORDS[tens][:-1]}ieth "  # twentieth, fortieth
    return f" {m.group(1)} "  # a longer ordinal: its digits (rare in speech)


@register_normaliser("spoken_form")
def spoken_form(text: str) -> str:
    """Write a label the way it is spoken, so a student learns words, not formatting.

    AN4-style conventions (the references of /work/shared/data/an4 and the practice of
    spoken-form ASR training data): spelled letters are separate lower-case words
    ("G-M-E-F", "GMEF", "G.M.E.F." -> "g m e f"); every digit is its own word ("39" ->
    "three nine"; AN4 speakers read digit strings, and a digit-by-digit label is never
    wrong about which digits were said, while "thirty nine" vs "three nine" cannot be
    decided from text); zero is written "zero" (AN4 says "oh" and "zero"; "oh" would be
    confused with the letter "o"); ordinals below 100 become words ("2nd" -> "second");
    "$5" -> "five dollars", "%" -> "percent", "&" -> "and", a decimal point -> "point";
    other punctuation goes, apostrophes inside words stay ("it's").

    Number words already in the text ("ninety six") are left as they are.
    """
    text = _LETTER_CHAIN.sub(lambda m: " " + " ".join(re.findall(r"[A-Za-z0-9]", m.group(0))) + " ", text)
    text = split_spelled(text)
    text = _CURRENCY.sub(r" \1 dollars ", text)
    text = _ORDINAL.sub(_ordinal_words, text)
    text = _DECIMAL.sub(" point ", text)
    text = _SYMBOL.sub(lambda m: f" {SYMBOL_WORDS[m.group(0)]} ", text)
    text = _DIGIT.sub(lambda m: f" {DIGIT_WORDS[int(m.group(0))]} ", text)
    text = _NOT_WORD.sub(" ", text.lower())
    text = _EDGE_APOSTROPHE.sub(" ", text)
    return _SPACES.sub(" ", text).strip()
