"""Reading a typed answer: one rule for `cnnlesson.exercises.check` and the page's answer boxes.

docs/javascripts/exercises.js reads answers by this same rule, step by step
(tests/answer_cases.json holds the cases both sides are tested on). The rule:

- An answer is at most `MAX_CHARS` characters, counted as UTF-16 code units,
  as the box's ``maxlength`` counts them; a longer one is not read at all.
- It may start with spaces and ``torch.Size`` (any case).
- A number is ASCII digits with an optional decimal point and an optional
  exponent of one or two digits (``5.76e2``), with an optional ``-`` or
  ``−`` (U+2212) right before it. For a key of one number, its thousands may
  be grouped by one separator used throughout: ``3,136``, ``3 136``,
  ``3_136``, ``3'136`` (1 to 3 digits, then groups of exactly 3).
- Numbers are separated by ``,`` or ``;`` (one at a time; one more may close
  the answer, as in ``(24,)``), by spaces, or by brackets ``()[]{}``.
  A space is U+0020, a tab, a no-break space (U+00A0), a narrow no-break
  space (U+202F) or a thin space (U+2009).
- ``×``, ``x``, ``X``, ``*``, ``·`` and ``⋅`` multiply; ``+`` adds. Brackets
  do not group: an operator next to a bracket makes the answer unreadable,
  rather than read ``128 × (576 + 1)`` as ``128 × 576 + 1``.
- Nothing else: letters, other scripts' and full-width digits, control
  characters, a byte-order mark or markup make the answer unreadable.
  Nothing is normalised first, so both sides see the same characters.

The result is a list of items, each a sum of products: ``64×3×3 + 1, 7``
is ``[[[64, 3, 3], [1]], [[7]]]``. Values are exact fractions, so a count is
compared exactly and no number becomes infinite.
"""

from __future__ import annotations

from fractions import Fraction

MAX_CHARS = 100

Item = list[list[Fraction]]  # a sum of products

SPACES = " \t\u00a0\u202f\u2009"
GROUP_SEPARATORS = ",_' \u00a0\u202f\u2009"
TIMES = "×xX*·⋅"
MINUS = "-\u2212"
BRACKETS = "()[]{}"
DIGITS = "0123456789"
PREFIX = "torch.size"


def units(text: str) -> int:
    """The length of `text` in UTF-16 code units, as a browser counts it."""
    return len(text.encode("utf-16-le")) // 2


def _digits(s: str, i: int) -> int:
    """The end of the run of ASCII digits that starts at `i`."""
    while i < len(s) and s[i] in DIGITS:
        i += 1
    return i


def _number(s: str, i: int, grouped: bool) -> tuple[Fraction, int] | None:
    """The number that starts at `i` and where it ends, or None if it is malformed."""
    negative = s[i] in MINUS
    if negative:
        i += 1
    end = _digits(s, i)
    whole = s[i:end]
    if grouped and 1 <= len(whole) <= 3 and end < len(s) and s[end] in GROUP_SEPARATORS:
        separator = s[end]
        while end + 3 < len(s) and s[end] == separator and _digits(s, end + 1) == end + 4:
            whole += s[end + 1 : end + 4]
            end += 4
    fraction = ""
    if end < len(s) and s[end] == ".":
        stop = _digits(s, end + 1)
        fraction = s[end + 1 : stop]
        end = stop
    if not whole and not fraction:
        return None
    exponent = 0
    if end < len(s) and s[end] in "eE":
        end += 1
        sign = 1
        if end < len(s) and (s[end] == "+" or s[end] in MINUS):
            sign = -1 if s[end] in MINUS else 1
            end += 1
        stop = _digits(s, end)
        if not 1 <= stop - end <= 2:
            return None
        exponent = sign * int(s[end:stop])
        end = stop
    value = Fraction(int(whole + fraction or "0")) * Fraction(10) ** (exponent - len(fraction))
    return (-value if negative else value), end


def read(text: str, grouped: bool) -> list[Item] | None:
    """The items of a typed answer, or None if it breaks the rule above.

    Args:
        text: What was typed, at most `MAX_CHARS` long (the caller checks).
        grouped: Whether thousands may be grouped (the key is one number).
    """
    s, i = text, 0
    while i < len(s) and s[i] in SPACES:
        i += 1
    head = s[i : i + len(PREFIX)]
    if head.isascii() and head.lower() == PREFIX:
        i += len(PREFIX)
    items: list[Item] = []
    after_number = False  # the last thing read was a number
    operator = ""  # "×" or "+" waiting for its right-hand number
    separators = 0  # commas and semicolons since the last number
    gap = False  # a space or bracket since the last number
    bracket = False  # a bracket since the last number: brackets separate, they do not group a sum
    while i < len(s):
        c = s[i]
        if c in DIGITS or c == "." or (c in MINUS and i + 1 < len(s) and (s[i + 1] in DIGITS or s[i + 1] == ".")):
            found = _number(s, i, grouped)
            if found is None:
                return None
            value, i = found
            if operator == "×":
                items[-1][-1].append(value)
            elif operator == "+":
                items[-1].append([value])
            elif after_number and not gap and not separators:
                return None  # two numbers with nothing between them, as in 5-3
            elif separators > 1 or (not items and separators):
                return None  # ",," or a leading comma
            else:
                items.append([[value]])
            after_number, operator, separators, gap, bracket = True, "", 0, False, False
        elif c in TIMES or c == "+":
            if not after_number or operator or separators or bracket:
                return None
            operator = "+" if c == "+" else "×"
            i += 1
        elif c in ",;":
            if operator:
                return None
            separators += 1
            after_number = False
            i += 1
        elif c in SPACES:
            gap = True
            i += 1
        elif c in BRACKETS:
            if operator:
                return None  # 128 × (576 + 1) would read as 128 × 576 + 1
            gap = bracket = True
            i += 1
        else:
            return None
    if operator or not items or separators > 1:
        return None
    return items


def plain(items: list[Item]) -> bool:
    """Whether every item is a single number (no × and no +)."""
    return all(len(item) == 1 and len(item[0]) == 1 for item in items)


def evaluate(item: Item) -> Fraction:
    """The value of one item: its products, added up."""
    total = Fraction(0)
    for term in item:
        product = Fraction(1)
        for factor in term:
            product *= factor
        total += product
    return total
