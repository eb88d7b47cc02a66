"""Answer extraction from generated text.

Unextractable answers are ``None``; callers count them as wrong *and* as format failures. Nothing
here ever guesses.

Numbers (:func:`extract_number`): an explicit answer marker wins, in this priority order:
``#### X``, ``\\boxed{X}``, ``final answer is/: X``, ``answer is/: X`` (the last occurrence of the
highest-priority marker that is directly followed by a number, allowing ``$``, ``**``, ``(``,
``:`` and spaces in between). Otherwise the last number in the text. Numbers may carry a sign,
``$``, thousands commas (``1,000``), decimals and ``%``; they are normalised (``"18.0"`` -> ``"18"``,
``"1,000"`` -> ``"1000"``, ``"-0"`` -> ``"0"``, ``".5"`` -> ``"0.5"``, full-width ``"１８"`` -> ``"18"``).
A digit directly after kana, kanji or hangul starts a number (``"答えは１８です"`` -> 18,
``"合計１２３４個"`` -> 1234); after a Latin letter it does not (``"x2"``).

With ``language=`` (an MGSM language code), numbers are read the way that language writes them:
digits of any script (full-width ``１８``, Bengali, Thai, Devanagari, Telugu, ...) count as digits;
German, Spanish, ... (:data:`DECIMAL_COMMA_DOT`) group thousands with dots and write decimals
with a comma (``1.200`` = 1200, ``2,5`` = 2.5, ``1.000.000``); French and Russian
(:data:`DECIMAL_COMMA_SPACE`) group with spaces, no-break or narrow no-break spaces
(``1 200`` = 1200) and also write decimals with a comma; the others (English, Chinese, Japanese,
Thai, Swahili, Bengali, Telugu) as English (after the digits are mapped). Without a language,
English rules apply unchanged. Each language's own answer phrase (``Die Antwort lautet 11``)
counts as a marker beside the English ones.

Choices (:func:`extract_choice`, 0-based option index): ``answer is (C)`` / ``Answer: C`` markers
(last one with a valid letter), then a letter opening the text (``"C."``, ``"(C)"``, ``"C)"``,
``"C:"``, or the text being just ``"C"``), then a single distinct parenthesised letter ``(C)``
anywhere. Letters beyond ``n_options`` never count.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation

from linsteer.errors import LinsteerError

__all__ = ["DECIMAL_COMMA_DOT", "DECIMAL_COMMA_SPACE", "extract_choice", "extract_number",
           "normalise_number", "numbers_equal"]

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# A number token: optional sign (ASCII or Unicode minus), optional "$", digits with optional
# thousands groups and decimals (or a bare ".5"), optional "%". Not glued to a preceding word
# character or dot (so "x2" / "v1.5" fragments and the "3" of "8-3" as a sign are avoided).
# Kana, kanji and hangul are word characters to ``re`` but no part of a number: "合計１２３４個" and
# "答えは１８です" hold the numbers 1234 and 18, so a digit right after them starts a number.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f"
_GLUED = rf"[^\W{_CJK}]"  # a word character that would glue a digit to a word
_NUM = (
    rf"(?<!{_GLUED})(?<!\.)(?:(?P<sign>[-\u2212])(?=\$?[\d.]))?\$?\s?"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?!,\d{3})%?"
)
_NOT_GLUED = rf"(?<!{_GLUED})(?<!\.)"
_NUM_RE = re.compile(_NUM)
# Filler allowed between an answer marker and the number.
_GAP = r"(?:[\s:=*$(\[{]|\\\(|\\\[|\\boxed\{|\\text\{)*"
_NUMBER_MARKERS = (
    re.compile(r"####" + _GAP + r"(?P<rest>.*)"),
    re.compile(r"\\boxed\{" + _GAP + r"(?P<rest>.*)"),
    re.compile(r"final\s+answer\s*(?:is|was|:|=)" + _GAP + r"(?P<rest>.*)", re.IGNORECASE),
    re.compile(r"\banswer\s*(?:is|was|:|=)" + _GAP + r"(?P<rest>.*)", re.IGNORECASE),
)
# The rest after a marker must start with the number.
_LEADING_NUM_RE = re.compile(r"^" + _NUM.replace(_NOT_GLUED, ""))


def normalise_number(token: str) -> str | None:
    """Canonical string of a number token (``"$1,000.50"`` -> ``"1000.5"``, full-width or other
    scripts' digits ``"１８"`` -> ``"18"``), or None."""
    s = (token if token.isascii() else _ascii_digits(token)).strip().replace("\u2212", "-")
    s = s.replace("$", "").replace(",", "").replace(" ", "")
    s = s.rstrip("%").rstrip(".")
    if not s or s in {"-", "+"}:
        return None
    try:
        d = Decimal(s)
    except InvalidOperation:
        return None
    if not d.is_finite():
        return None
    if d == d.to_integral_value():
        return str(int(d))
    text = format(d.normalize(), "f")
    return text


def _token(m: re.Match[str]) -> str:
    return (m.group("sign") or "") + m.group("num")


def extract_number(text: str, language: str | None = None) -> str | None:
    """The final numeric answer in ``text`` as a normalised string, or None (``language``: read
    numbers the way that language writes them, :func:`extract_number_in`)."""
    if language is not None and language != "en":
        return extract_number_in(text, language)
    for marker in _NUMBER_MARKERS:
        found: str | None = None
        for m in marker.finditer(text):
            lead = _LEADING_NUM_RE.match(m.group("rest"))
            if lead is not None:
                found = _token(lead)
        if found is not None:
            return normalise_number(found)
    last: re.Match[str] | None = None
    for last in _NUM_RE.finditer(text):  # noqa: B007 - we want the final match
        pass
    return None if last is None else normalise_number(_token(last))


def numbers_equal(a: str | None, b: str | None, rel_tol: float = 1e-9) -> bool:
    """True when both parse as numbers (commas, ``$``, ``%`` allowed) and are equal.

    Equality is exact for integers and up to ``rel_tol`` relative difference otherwise.
    """
    if a is None or b is None:
        return False
    na, nb = normalise_number(a), normalise_number(b)
    if na is None or nb is None:
        return False
    da, db = Decimal(na), Decimal(nb)
    if da == db:
        return True
    if da == da.to_integral_value() and db == db.to_integral_value():
        return False
    return abs(da - db) <= Decimal(str(rel_tol)) * max(abs(da), abs(db))


_CHOICE_MARKER_RE = re.compile(
    r"\banswer\s*(?:is|was|would\s+be|:|=)?\s*(?:option\s+|choice\s+)?[:*\s]*"
    r"(?:\((?P<p>[A-Za-z])\)|\[(?P<s>[A-Za-z])\]|(?P<u>[A-Z])(?![\w']))",
    re.IGNORECASE,
)
_CHOICE_START_RE = re.compile(
    r"^\s*(?:\*\*)?(?:[(\[](?P<b>[A-Za-z])[)\]]|(?P<u>[A-Z])(?:[).:]|\s*$))(?![\w'])"
)
_CHOICE_PAREN_RE = re.compile(r"\((?P<l>[A-Z])\)")


def _letter_index(letter: str, n_options: int) -> int | None:
    idx = _LETTERS.find(letter.upper())
    return idx if 0 <= idx < n_options else None


def extract_choice(text: str, n_options: int) -> int | None:
    """0-based index of the option letter chosen in ``text``, or None if there is none."""
    if not 1 <= n_options <= len(_LETTERS):
        raise LinsteerError(f"n_options must be between 1 and 26, got {n_options}")
    found: int | None = None
    for m in _CHOICE_MARKER_RE.finditer(text):
        # a bare letter after the marker must be upper-case in the original text
        letter = m.group("p") or m.group("s") or m.group("u")
        if m.group("u") is not None and not letter.isupper():
            continue
        idx = _letter_index(letter, n_options)
        if idx is not None:
            found = idx
    if found is not None:
        return found
    start = _CHOICE_START_RE.match(text)
    if start is not None:
        idx = _letter_index(start.group("b") or start.group("u"), n_options)
        if idx is not None:
            return idx
    letters = {
        i for m in _CHOICE_PAREN_RE.finditer(text) if (i := _letter_index(m.group("l"), n_options))
        is not None
    }
    if len(letters) == 1:
        return letters.pop()
    return None


# --------------------------------------------------------------------------- languages

DECIMAL_COMMA_DOT = frozenset({"de", "es", "it", "pt", "nl", "id", "tr", "da"})
DECIMAL_COMMA_SPACE = frozenset({"fr", "ru", "pl", "cs", "sv", "fi", "uk", "nb"})
_LANG_MARKERS = {  # MGSM's own answer phrases ("The answer is" in each language)
    "de": r"Antwort\s*(?:lautet|ist|:)", "es": r"respuesta\s*(?:es|:)",
    "fr": r"r[ée]ponse\s*(?:est|:)", "ru": r"[Оо]твет\s*(?:[—:-]|будет)?",
    "sw": r"jibu\s*(?:ni|:)", "zh": r"答案(?:是|为|：|:)", "ja": r"答え(?:は|：|:)",
}


def _digits_table() -> dict[int, str]:
    """Every Unicode decimal digit (full-width, Bengali, Thai, ...) to its ASCII digit."""
    table: dict[int, str] = {}
    for code in range(0x110000):
        char = chr(code)
        if unicodedata.category(char) == "Nd" and not char.isascii():
            table[code] = str(unicodedata.digit(char))
    return table


_DIGITS: dict[int, str] | None = None


def _ascii_digits(text: str) -> str:
    """``text`` with compatibility forms folded (full-width ``，`` and ``．``, no-break and
    narrow no-break spaces become ``,``, ``.`` and a space) and every digit in ASCII."""
    global _DIGITS
    if _DIGITS is None:
        _DIGITS = _digits_table()
    return unicodedata.normalize("NFKC", text).translate(_DIGITS)


def _language_number(language: str) -> tuple[re.Pattern[str], re.Pattern[str], str, str]:
    """(number regex, leading-number regex, thousands separator, decimal mark) of a language."""
    if language in DECIMAL_COMMA_DOT:
        group, point = r"\.", ","
    elif language in DECIMAL_COMMA_SPACE:
        group, point = " ", ","
    else:
        group, point = ",", "."
    pt = re.escape(point)
    num = (rf"{_NOT_GLUED}(?<!,)(?:(?P<sign>[-\u2212])(?=\$?[\d{pt}]))?\$?\s?"
           rf"(?P<num>\d{{1,3}}(?:{group}\d{{3}})+(?:{pt}\d+)?|\d+(?:{pt}\d+)?)(?!{group}\d{{3}}|\d)%?")
    lead = num.replace(_NOT_GLUED + "(?<!,)", "")
    return re.compile(num), re.compile(r"^" + lead), group.replace("\\", ""), point


def _normalise_local(token: str, group: str, point: str) -> str | None:
    s = token.replace(group, "") if group != " " else token.replace(" ", "")
    return normalise_number(s.replace(point, ".") if point != "." else s)


def extract_number_in(text: str, language: str) -> str | None:
    """The final numeric answer in ``text`` read by ``language``'s number conventions (see the
    module docstring), as a normalised string, or None."""
    text = _ascii_digits(text)
    num_re, lead_re, group, point = _language_number(language)
    markers = list(_NUMBER_MARKERS)
    if language in _LANG_MARKERS:
        markers.insert(2, re.compile(_LANG_MARKERS[language] + _GAP + r"(?P<rest>.*)", re.IGNORECASE))
    for marker in markers:
        found: str | None = None
        for m in marker.finditer(text):
            lead = lead_re.match(m.group("rest"))
            if lead is not None:
                found = _token(lead)
        if found is not None:
            return _normalise_local(found, group, point)
    last: re.Match[str] | None = None
    for last in num_re.finditer(text):  # noqa: B007 - we want the final match
        pass
    return None if last is None else _normalise_local(_token(last), group, point)
