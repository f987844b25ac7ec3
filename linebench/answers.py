"""Parse free-form answers the way people and models write them, and judge them.

Two answer kinds (a task names its kind in `Task.answer_kind`):

- ``"number"``: a non-negative integer (a count, or a numbered label). Canonical form ``"3"``.
- ``"cell"``: a (row, column) pair of non-negative integers. Canonical form ``"(3, 5)"``.

Every parser is pure and never guesses between two different answers. The rules, in order
(docs/scoring.md has examples of each):

1. **Clean-up.** Unicode NFKC, lower case; markdown (``**``, ``__``, backticks), quotes, ``$``,
   ``\\(`` ``\\)`` and ``\\text{..}`` are dropped; braces act as brackets. If the text has
   ``\\boxed{..}``, only the last box is read.
2. **Number words** zero..ninety-nine ("three", "twenty-one", "twenty one") read as digits; so
   do "none" / "no crossings" / "do not intersect" / "never cross" (0), "twice" (2), "thrice" (3) and "once" (1) where it ends a
   clause ("they cross once."). "one" used as a pronoun ("the red one", "one of", "one
   another") is not a number.
3. **Candidates.** number: every integer that is not an identifier: numbers naming lines or
   curves ("line 1", "lines 1 and 2", "2 lines") are skipped. cell: "row 3, column 5",
   "Row 3 Col 5", "r3c5", "column 5, row 3" (labels win over order) and bare or bracketed pairs
   "(3, 5)", "3,5", "[3; 5]", "(3 5)". A negative or fractional number ("-2", "2.5") is a
   candidate whose value is invalid: if it is chosen, the answer is unparseable. "3.0" reads as 3.
4. **Choice.**
   a. An explicit marker ("answer is", "answer:", "final answer =") wins: the first candidate
      after the last marker. A marker with nothing after it makes the text unparseable.
   b. Hedging makes the text unparseable: two different candidates joined by "or", "/", "-",
      "to", "," ("3 or 4", "3-4", "between 3 and 4", "(3, 5) or (3, 6)").
   c. A text that opens with a candidate answers with it ("3. The red line crosses line 2 ...",
      "3 intersections") — questions ask for the answer first.
   d. So does a first sentence whose candidates all agree ("It ends at 3. It crosses line 2
      twice."), when the text has more than one sentence.
   e. Otherwise, if every candidate has the same value, that value ("There are three crossings").
   f. Otherwise the text is ambiguous: unparseable (``None``). For chain-of-thought outputs ask
      the model to end with "Answer: N".

Unparseable answers are scored as wrong and counted separately (see linebench.score).
"""

from __future__ import annotations

import bisect
import itertools
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Callable, Iterable

__all__ = ["PARSERS", "parse_number", "parse_cell", "parse", "canonical", "is_correct", "as_text"]

Cell = tuple[int, int]

# --------------------------------------------------------------------------- clean-up

_TEXT_CMD = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{([^{}]*)\}")


MAX_TEXT = 8192  # characters of a prediction that are parsed: the first and last MAX_TEXT // 2


def as_text(prediction: Any) -> str | None:
    """A prediction as text: strings as they are, ints as digits, [r, c] pairs as "(r, c)".
    Anything else (None, bools, dicts, nested lists) has no text: unparseable. A text longer
    than MAX_TEXT keeps its first and last MAX_TEXT // 2 characters (an answer comes first or
    last; a model that rambles on must not stall a benchmark), joined by a paragraph break."""
    if isinstance(prediction, str):
        if len(prediction) > MAX_TEXT:
            half = MAX_TEXT // 2
            return prediction[:half] + "\n\n" + prediction[-half:]
        return prediction
    if isinstance(prediction, bool) or prediction is None:
        return None
    if isinstance(prediction, (int, float)):
        return repr(prediction)
    if isinstance(prediction, (list, tuple)) and len(prediction) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in prediction
    ):
        return f"({prediction[0]!r}, {prediction[1]!r})"
    return None


def _clean(text: str) -> str:
    t = unicodedata.normalize("NFKC", text)
    t = t.replace("\u2212", "-").replace("\u2013", "-").replace("\u2014", " - ")
    for _ in range(3):  # \text{\textbf{3}}
        t = _TEXT_CMD.sub(r"\1", t)
    boxes = _BOXED.findall(t)
    if boxes:
        t = boxes[-1]
    t = re.sub(r"\\[()\[\]]", " ", t)
    t = re.sub(r"[$*_`#]+", " ", t)
    t = re.sub(r"[\"\u201c\u201d\u201e]", " ", t)
    t = re.sub(r"(?<![A-Za-z])['\u2018\u2019]|['\u2018\u2019](?![A-Za-z])", " ", t)
    t = t.replace("{", "(").replace("}", ")")
    return t.lower()


# --------------------------------------------------------------------------- number words

_UNITS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_WORD = re.compile(
    r"\b(?:(?P<tens>" + "|".join(_TENS) + r")(?:[\s-](?P<unit>" + "|".join(_UNITS[1:10]) + r"))?"
    r"|(?P<small>" + "|".join(_UNITS) + r"))\b"
)
# "one" as a pronoun: "the red one", "each one", "one of them", "one another"
_PRONOUN_BEFORE = re.compile(
    r"\b(?:the|this|that|which|each|every|any|another|other|no|same|red|blue|green|black|orange|purple|"
    r"yellow|brown|pink|grey|gray|cyan|magenta|dark|light|left|right|top|bottom|upper|lower|first|last|"
    r"thick|thin|correct|right|wrong|single)\s+$"
)
_PRONOUN_AFTER = re.compile(r"\s+(?:of|another)\b")  # used with .match(t, pos): anchored at pos
_LOOKBACK = 64  # characters before a match that context checks look at (keeps the parsers linear)


def _word_numbers(t: str, *, counts: bool) -> str:
    def sub(m: re.Match) -> str:
        if m.group("small"):
            if m.group("small") == "one" and (
                _PRONOUN_BEFORE.search(t, max(0, m.start() - _LOOKBACK), m.start()) or _PRONOUN_AFTER.match(t, m.end())
            ):
                return m.group(0)
            return str(_UNITS.index(m.group("small")))
        value = _TENS[m.group("tens")] + (_UNITS.index(m.group("unit")) if m.group("unit") else 0)
        return str(value)

    t = _WORD.sub(sub, t)
    t = re.sub(r"\bnone\b", "0", t)
    t = re.sub(r"\btwice\b", "2", t)
    t = re.sub(r"\bthrice\b", "3", t)
    t = re.sub(r"(?:(?<=\w\s)|^\s*)once(?=\s*(?:[.,;:!?)]|$))", "1", t)
    if counts:
        t = re.sub(r"\bno(?=\s+(?:\w+\s+)?(?:crossings?|intersections?|points?|times)\b)", "0", t)
        # "they do not intersect", "the lines never cross": a count of 0
        t = re.sub(r"\b(?:do|does|did)\s*(?:not|n't)\s+(?:\w+\s+)?(?:intersect|cross)\w*|\bnever\s+(?:intersect|cross)\w*", "meet 0 times", t)
    return t


# --------------------------------------------------------------------------- candidates


@dataclass(frozen=True)
class _Cand:
    start: int
    end: int
    value: Any  # int / (int, int), or None when malformed (negative, fractional)


_NUM = r"-?\d+(?:\.\d+)?"
_NUMBER = re.compile(r"(?P<neg>(?<![\w.])-)?(?<![\w.])(?P<num>\d+(?:\.\d+)?)(?!\w|\.\d)")
_IDENT_NOUN = r"(?:lines?|curves?|paths?)"
_IDENT_AFTER_NOUN = re.compile(
    _IDENT_NOUN + r"\s+(?:no\.?\s*)?\d+(?:\s*(?:,|and|&|\+|/)\s*(?:" + _IDENT_NOUN + r"\s+)?\d+)*"
)
_IDENT_BEFORE_NOUN = re.compile(r"(?<![\w.])\d+(?=\s+(?:other\s+|different\s+)?" + _IDENT_NOUN + r"\b)")


MAX_DIGITS = 18  # an answer with more digits than this is not a count or a cell: unparseable


def _value(text: str, neg: bool = False) -> int | None:
    """An integer >= 0 ("3", "3.0"), or None (negative, fractional, or over MAX_DIGITS digits)."""
    neg = neg or text.startswith("-")
    whole, _, frac = text.lstrip("-").partition(".")
    whole = whole.lstrip("0") or "0"
    if neg or frac.strip("0") or len(whole) > MAX_DIGITS:
        return None
    return int(whole)


def _number_candidates(t: str) -> list[_Cand]:
    ident = sorted([m.span() for m in _IDENT_AFTER_NOUN.finditer(t)] + [m.span() for m in _IDENT_BEFORE_NOUN.finditer(t)])
    starts = [a for a, _ in ident]
    reach = list(itertools.accumulate((b for _, b in ident), max))  # furthest end among spans starting so far
    out = []
    for m in _NUMBER.finditer(t):
        s, e = m.span("num")
        k = bisect.bisect_right(starts, s)
        if k and reach[k - 1] >= e:  # inside a line name ("line 3", "lines 1 and 2")
            continue
        out.append(_Cand(m.start(), m.end(), _value(m.group("num"), bool(m.group("neg")))))
    return out


_LBL = r"\s*(?:[:=#]|no\.?|number)?\s*"
_ROW = r"(?<![a-z])(?:row|r)" + _LBL + r"(?P<{g}>" + _NUM + r")(?!\d|\.\d)"
_COL = r"(?<![a-z])(?:column|col|c)" + _LBL + r"(?P<{g}>" + _NUM + r")(?!\d|\.\d)"
_JOIN = r"\s*(?:,|;|and|&|/|-)?\s*"
_ROW_COL = re.compile(_ROW.format(g="r") + _JOIN + _COL.format(g="c") + r"(?!\w)")
_COL_ROW = re.compile(_COL.format(g="c") + _JOIN + _ROW.format(g="r") + r"(?!\w)")
_PAIR = re.compile(
    r"(?<![\w.])(?P<r>" + _NUM + r")\s*[,;]\s*(?P<c>" + _NUM + r")(?![\w]|\.\d|\s*[,;]\s*-?\d)"
    r"|\(\s*(?P<r2>" + _NUM + r")\s+(?P<c2>" + _NUM + r")\s*\)"
    r"|\[\s*(?P<r3>" + _NUM + r")\s+(?P<c3>" + _NUM + r")\s*\]"
)


def _pair_value(r: str, c: str) -> Cell | None:
    rv, cv = _value(r), _value(c)
    if rv is None or cv is None:
        return None
    return (rv, cv)


def _list_tail(t: str, i: int) -> bool:
    """Whether t[:i] ends in "<digit> , " (so what starts at i continues a list: 1, 3, 5)."""
    j = i - 1
    while j >= 0 and t[j].isspace():
        j -= 1
    if j < 0 or t[j] not in ",;":
        return False
    j -= 1
    while j >= 0 and t[j].isspace():
        j -= 1
    return j >= 0 and t[j].isdigit()


class _Spans:
    """Non-overlapping spans kept sorted, with an O(log n) overlap test."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def overlaps(self, s: int, e: int) -> bool:
        k = bisect.bisect_left(self.starts, e)  # spans starting before e
        return k > 0 and self.ends[k - 1] > s

    def add(self, s: int, e: int) -> None:
        k = bisect.bisect_left(self.starts, s)
        self.starts.insert(k, s)
        self.ends.insert(k, e)


def _cell_candidates(t: str) -> list[_Cand]:
    out: list[_Cand] = []
    taken = _Spans()
    for rx in (_ROW_COL, _COL_ROW):
        for m in rx.finditer(t):
            if not taken.overlaps(m.start(), m.end()):
                taken.add(m.start(), m.end())
                out.append(_Cand(m.start(), m.end(), _pair_value(m.group("r"), m.group("c"))))
    for m in _PAIR.finditer(t):
        if taken.overlaps(m.start(), m.end()):
            continue
        if _list_tail(t, m.start()):  # the tail of a longer list: 1, 3, 5
            continue
        r = m.group("r") or m.group("r2") or m.group("r3")
        c = m.group("c") or m.group("c2") or m.group("c3")
        out.append(_Cand(m.start(), m.end(), _pair_value(r, c)))
    return sorted(out, key=lambda c: c.start)


# --------------------------------------------------------------------------- choice

_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n")
_MARKER = re.compile(r"\banswer\b\s*(?:is\b|was\b|would be\b|should be\b|will be\b|[:=]|-(?=\s))\s*:?")
_BETWEEN = re.compile(r"\bbetween\s*\(?\s*$")
_HEDGE = re.compile(r"^[\s()\[\]]*(?:,|/|-|~|or(?:\s+(?:maybe|perhaps|possibly|even|rather))?|to|vs\.?|and)[\s()\[\]]*$")


def _hedged(t: str, a: _Cand, b: _Cand) -> bool:
    if a.value == b.value:
        return False
    between = t[a.end:b.start]
    if not _HEDGE.match(between):
        return False
    if between.strip(" ()[]") == "and":  # "3 and 4" is a hedge only as "between 3 and 4"
        return bool(_BETWEEN.search(t, max(0, a.start - _LOOKBACK), a.start))
    return True


def _choose(t: str, cands: list[_Cand]) -> Any:
    markers = list(_MARKER.finditer(t))
    if markers:
        after = [c for c in cands if c.start >= markers[-1].end()]
        if not after:
            return None
        if len(after) > 1 and _hedged(t, after[0], after[1]):
            return None
        return after[0].value
    if not cands:
        return None
    if any(_hedged(t, a, b) for a, b in zip(cands, cands[1:])):
        return None
    if not re.search(r"[a-z0-9]", t[: cands[0].start]):
        return cands[0].value
    end = _SENTENCE_END.search(t)
    head = {c.value for c in cands if end and c.end <= end.start()}
    if len(head) == 1:  # the first sentence answers; the rest explains
        return head.pop()
    values = {c.value for c in cands}
    return values.pop() if len(values) == 1 else None


def parse_number(text: Any) -> int | None:
    """A non-negative integer answer from free-form text, or None if there is none or it is
    ambiguous. "3", "**3**", "\\boxed{3}", "The answer is 3.", "three", "3 intersections" -> 3."""
    text = as_text(text)
    if text is None:
        return None
    t = _word_numbers(_clean(text), counts=True)
    return _choose(t, _number_candidates(t))


def parse_cell(text: Any) -> Cell | None:
    """A (row, column) answer from free-form text, or None if there is none or it is ambiguous.
    "(3, 5)", "3,5", "[3, 5]", "row 3, column 5", "Row 3 Col 5", "r3c5", "cell (3, 5)" -> (3, 5)."""
    text = as_text(text)
    if text is None:
        return None
    t = _word_numbers(_clean(text), counts=False)
    return _choose(t, _cell_candidates(t))


PARSERS: dict[str, Callable[[Any], Any]] = {"number": parse_number, "cell": parse_cell}


def _parser(kind: str) -> Callable[[Any], Any]:
    try:
        return PARSERS[kind]
    except KeyError:
        raise ValueError(f"unknown answer kind {kind!r}; known: {', '.join(PARSERS)}") from None


def parse(kind: str, text: Any) -> Any:
    return _parser(kind)(text)


def format_value(kind: str, value: Any) -> str:
    """The canonical text of a parsed value: "3" or "(3, 5)"."""
    if kind == "cell":
        return f"({value[0]}, {value[1]})"
    _parser(kind)
    return str(value)


def canonical(kind: str, text: Any) -> str | None:
    """Free-form text -> the generators' answer format ("3", "(3, 5)"), or None if unparseable."""
    value = parse(kind, text)
    return None if value is None else format_value(kind, value)


def is_correct(kind: str, prediction: Any, answer: str) -> bool | None:
    """Whether `prediction` gives `answer` (the dataset's exact answer); None if unparseable.
    Raises ValueError if `answer` itself does not parse (a dataset that is not of this kind)."""
    truth = parse(kind, answer)
    if truth is None:
        raise ValueError(f"answer {answer!r} is not a {kind}")
    got = parse(kind, prediction)
    return None if got is None else got == truth


def parse_many(kind: str, texts: Iterable[Any]) -> list[Any]:
    """Parse many texts, each distinct string once."""
    fn = _parser(kind)
    cache: dict[str, Any] = {}
    out = []
    for x in texts:
        if isinstance(x, str):
            if x not in cache:
                cache[x] = fn(x)
            out.append(cache[x])
        else:
            out.append(fn(x))
    return out
