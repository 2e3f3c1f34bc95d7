"""The reviewer's edits file, read strictly: a wrong type or a doubled decision is an error, never a guess.

The review page saves ``{"reviewer": str, "time": str, "exported": {...}, "edits": [{"id",
"decision", "text"}, ...]}``; a spreadsheet saves the review TSV. Either is checked against
that schema before anything is applied: a ``null`` text would otherwise become the label
``'None'``, and a reject followed by an accept of the same id would silently keep the label.
Every error names the file and the edit (its index or TSV line, its id and the key).

Also here: how user text is shown on a terminal (:func:`printable`) and kept harmless in a
spreadsheet (:func:`spreadsheet_cell`), since both the TSV and the edits come from people.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DECISIONS = ("accept", "reject")
EDIT_KEYS = ("id", "decision", "text")
MAX_REVIEWER_CHARS = 200  # a name, not a document: longer is a mistake (or an attack on the terminal)
MAX_LISTED = 10  # conflicting ids named in one error
# C0/C1 controls (ANSI escapes start with \x1b), DEL, line/paragraph separators, bidi overrides.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# A spreadsheet runs a cell starting with one of these as a formula (tab/CR: split or hidden cells);
# a leading quote is escaped too, so that reading a cell back removes exactly one quote.
FORMULA_LEAD = ("=", "+", "-", "@", "\t", "\r", "'")


@dataclass(frozen=True)
class ReviewEdit:
    """One decision read back from the reviewer's file."""

    id: str
    decision: str
    text: str


def printable(text: str) -> str:
    r"""``text`` with control characters as escapes (``\x1b``, ``\n``): safe to print on a terminal."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def spreadsheet_cell(text: str) -> str:
    """A TSV cell a spreadsheet shows as text: formula-leading values get a quote in front."""
    return "'" + text if text.startswith(FORMULA_LEAD) else text


def from_spreadsheet_cell(text: str) -> str:
    """The value :func:`spreadsheet_cell` protected (one leading quote removed where it added one)."""
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_LEAD) else text


class _Where:
    """Names an edit in error messages: the file, the edit's place in it, and its id."""

    def __init__(self, path: Path, place: str, ident: Any = None):
        self.path, self.place, self.ident = path, place, ident

    def error(self, what: str) -> ValueError:
        ident = "" if self.ident is None else f" (id {printable(json.dumps(self.ident, ensure_ascii=False))})"
        return ValueError(f"{self.path}: {self.place}{ident}: {what}")


def _type_name(value: Any) -> str:
    return (
        "null"
        if value is None
        else {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
            type(value), "a number"
        )
    )


def _edit(row: Any, where: _Where) -> ReviewEdit:
    """One edit checked against the schema: an object with a string id, decision and text."""
    if not isinstance(row, dict):
        raise where.error(f"is {_type_name(row)}, not an object with {', '.join(EDIT_KEYS)}")
    where.ident = row.get("id")
    missing = [k for k in EDIT_KEYS if k not in row]
    if missing:
        raise where.error(f"lacks {', '.join(missing)}")
    ident = row["id"]
    if isinstance(ident, bool) or not isinstance(ident, (str, int)):  # a numeric id is read as the manifest's
        raise where.error(f"'id' must be a string, got {_type_name(ident)}")
    for key in ("decision", "text"):
        if not isinstance(row[key], str):
            raise where.error(f"'{key}' must be a string, got {_type_name(row[key])}")
    decision = row["decision"].strip().lower()
    if decision not in DECISIONS:
        raise where.error(f"has decision {printable(repr(row['decision']))}; use accept or reject")
    return ReviewEdit(str(ident), decision, row["text"].strip())


def _optional_string(d: dict, key: str, path: Path) -> str | None:
    value = d.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{path}: '{key}' must be a string, got {_type_name(value)}")
    return value


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte at offset {e.start}); save it as UTF-8") from None


def _json_rows(path: Path, text: str) -> tuple[list[tuple[Any, _Where]], str | None, str | None]:
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); give the "
            "review_edits.json the review page saved"
        ) from None
    if not isinstance(d, dict):
        raise ValueError(
            f"{path}: is {_type_name(d)}, not an object with an 'edits' list; give the "
            "review_edits.json the review page saved"
        )
    rows = d.get("edits")
    if not isinstance(rows, list):
        raise ValueError(f"{path}: no 'edits' list; give the review_edits.json the review page saved")
    reviewer, time = _optional_string(d, "reviewer", path), _optional_string(d, "time", path)
    return [(r, _Where(path, f"edits[{i}]")) for i, r in enumerate(rows)], reviewer, time


def _tsv_rows(path: Path, text: str) -> list[tuple[Any, _Where]]:
    reader = csv.DictReader(io.StringIO(text), delimiter="\t")
    rows = []
    for r in reader:
        # a short row leaves None in the missing columns: the schema names them as missing
        row = {k: from_spreadsheet_cell(v) for k, v in r.items() if k is not None and v is not None}
        rows.append((row, _Where(path, f"line {reader.line_num}")))
    return rows


def _one_per_id(edits: Sequence[ReviewEdit], path: Path) -> list[ReviewEdit]:
    """Repeated identical edits count once; different decisions (or texts) for one id are an error."""
    first: dict[str, ReviewEdit] = {}
    conflicts: list[str] = []
    for e in edits:
        seen = first.setdefault(e.id, e)
        if seen != e and e.id not in conflicts:
            conflicts.append(e.id)
    if conflicts:
        named = ", ".join(printable(i) for i in conflicts[:MAX_LISTED])
        more = f" and {len(conflicts) - MAX_LISTED} more" if len(conflicts) > MAX_LISTED else ""
        raise ValueError(
            f"{path}: {len(conflicts)} ids have conflicting decisions or texts ({named}{more}); "
            "keep one edit per id"
        )
    return list(first.values())


def check_reviewer(name: str | None, source: str) -> str | None:
    """A reviewer name as the audit stores it; refuses one that is not a short name."""
    if name is not None and len(name) > MAX_REVIEWER_CHARS:
        raise ValueError(
            f"{source}: reviewer is {len(name)} characters long; give a name of at most {MAX_REVIEWER_CHARS}"
        )
    return name


def read_edits(path: str | Path) -> tuple[list[ReviewEdit], str | None, str | None]:
    """Edits from the page's JSON or the TSV sheet: (edits, reviewer, time) (None when the file has none).

    Raises:
        ValueError: naming the file, the edit (index or line), its id and the key that is wrong.
    """
    p = Path(path)
    text = _read_text(p)
    if p.suffix.lower() == ".json":
        rows, reviewer, time = _json_rows(p, text)
    else:
        rows, reviewer, time = _tsv_rows(p, text), None, None
    edits = [_edit(row, where) for row, where in rows]
    return _one_per_id(edits, p), check_reviewer(reviewer, str(p)), time


def quoted_ids(ids: Iterable[str], limit: int = 5) -> str:
    """Ids for a terminal line: escaped, at most ``limit`` of them."""
    return ", ".join(printable(i) for i in list(ids)[:limit])


__all__ = [
    "DECISIONS",
    "FORMULA_LEAD",
    "MAX_REVIEWER_CHARS",
    "ReviewEdit",
    "check_reviewer",
    "from_spreadsheet_cell",
    "printable",
    "quoted_ids",
    "read_edits",
    "spreadsheet_cell",
]
