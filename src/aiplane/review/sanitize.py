"""Prompt-injection defence: user text must not be able to close or open our prompt sections.

Tags are found in a normalised view of the text (compatibility forms, invisible characters and combining marks
dropped, look-alike characters mapped to ASCII, character references decoded, case folded); only the original
characters behind a match are deleted, so the rest of the text stays byte-identical.
"""

from __future__ import annotations

import json
import re
import unicodedata
from bisect import bisect_right
from functools import cache
from html.entities import html5
from importlib import resources

BOUNDARY_TAGS = ("mr_input", "mr_body", "mr_details", "mr_comments", "changed_files", "previous_review",
                 "golden_comment", "review_finding", "reviewer_role")

# A tag name letter also matches its ASCII look-alikes: TR39 draws l, I (casefolded to i), 1 and | alike, O and 0,
# and m and rn.
_LETTER = {"i": "[il1|]", "l": "[il1|]", "o": "[o0]", "m": "(?:m|rn)"}


def _name(tag: str) -> str:
    words = ("".join(_LETTER.get(ch, ch) for ch in word) for word in tag.split("_"))
    # "mr_details", "mr-details", "mr.details", "mr:details", "mr—details" and "mrdetails" read alike.
    return r"[^a-z0-9<>]{0,8}".join(words)


# Opening or closing (also "<\/", as JSON writes it), then a whole tag name, then attributes up to a ">" within
# 200 characters, or no ">" at all: an unterminated tag still reads as one.
_TAG = re.compile(r"<[\s/\\]*(?:" + "|".join(_name(tag) for tag in BOUNDARY_TAGS) + r")(?![^\W_])(?:[^<>]{0,200}>|>?)")

# Numeric and named character references, with or without ";", behind any number of encoded ampersands
# ("&amp;lt;", "&#38;#60;") so double encoding decodes in one step.
_REFERENCE = re.compile(
    r"&(?:amp;?|#0*38;?|#x0*26;?)*(?:#0*([0-9]{1,8});?|#x0*([0-9a-f]{1,8});?|([a-z][a-z0-9]{0,31});?)"
)
_RAW_REFERENCE = re.compile(_REFERENCE.pattern, re.IGNORECASE | re.ASCII)

# Pure ASCII without these (invisible controls) folds to itself lowercased; anything else goes the slow way.
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1b\x7f]")

# The ASCII characters boundary tags are written with; homoglyphs of any other character do not matter here.
_TAG_ASCII = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789<>/\\_-= \"'|"

# Look-alikes the TR39 data does not map to ASCII: angle brackets, and lowercase Cyrillic and Greek letters shaped
# like Latin small capitals.
_EXTRA_HOMOGLYPHS = {
    **dict.fromkeys("\u2329\u3008\u27e8\u300a\u27ea\u276c\u2770\u29fc\u2991\u2993\u227a\u22d6\u25c1", "<"),
    **dict.fromkeys("\u232a\u3009\u27e9\u300b\u27eb\u276d\u2771\u29fd\u2992\u2994\u227b\u22d7\u25b7", ">"),
    "\u043c": "m",
    "\u0442": "t",
    "\u0432": "b",
    "\u043d": "h",
    "\u043a": "k",
    "\u03c4": "t",
    "\u03ba": "k",
}

# Invisible, yet neither format characters nor marks: the Hangul fillers.
_INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0")

_SMALL_CAPITAL = re.compile(r"SMALL CAPITAL ([A-Z])$")


@cache
def _homoglyphs() -> dict[str, str]:
    """Non-ASCII character -> the ASCII character it looks like, from the packaged Unicode TR39 confusables."""
    text = resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text(encoding="utf-8")
    data = json.loads(text)
    mapping: dict[str, str] = {}
    for ascii_char in _TAG_ASCII:
        for entry in data.get(ascii_char, ()):
            # Right-to-left glyphs are stored between U+200E marks; multi-character look-alikes ("rn") are left
            # to the tag pattern.
            glyph = entry["c"].replace("\u200e", "")
            if len(glyph) == 1 and not glyph.isascii():
                mapping.setdefault(glyph, ascii_char)
    mapping.update(_EXTRA_HOMOGLYPHS)
    return mapping


def _skeleton(ch: str) -> str:
    if ch.isascii():
        return ch
    found = _homoglyphs().get(ch)
    if found is not None:
        return found
    small_capital = _SMALL_CAPITAL.search(unicodedata.name(ch, ""))
    return small_capital.group(1) if small_capital else ch


def _fold_char(ch: str) -> str:
    """What one character contributes to the view: "" when invisible, ASCII when it looks like ASCII."""
    if ch.isascii():
        return ch.lower() if ch.isspace() or " " <= ch <= "~" else ""
    category = unicodedata.category(ch)
    if category == "Cf" or (category == "Cc" and not ch.isspace()) or ch in _INVISIBLE:
        return ""
    if 0xE0000 <= ord(ch) <= 0xE007F:  # tag characters, some of them unassigned
        return ""
    out = []
    for part in unicodedata.normalize("NFKD", ch):
        if unicodedata.category(part) in ("Mn", "Me", "Cf"):
            continue
        for folded in _skeleton(part).casefold():
            out.append(_skeleton(folded).lower())
    text = "".join(out)
    # A character that looks like no ASCII stands for itself: keeping it one character wide keeps the view aligned
    # with the text (Hangul syllables would otherwise decompose into jamo).
    return text if not text or any(c.isascii() for c in text) else ch


class _Table(dict):
    """A str.translate table filled on first use; bounded, since an attacker chooses how many characters we see."""

    def __init__(self, function) -> None:
        super().__init__()
        self.function = function

    def __missing__(self, codepoint: int) -> str:
        if len(self) > 100_000:
            self.clear()
        value = self[codepoint] = self.function(chr(codepoint))
        return value


_FOLD = _Table(_fold_char)
# "\x01" where a character does not become exactly one view character, "\x00" where it does.
_WIDTH = _Table(lambda ch: "\x00" if len(_FOLD[ord(ch)]) == 1 else "\x01")


class _Layer:
    """Maps each character of one view to the span of the text below it that it came from.

    Segment k starts at view position starts[k] and text position sources[k]; widths[k] is -1 for a run where
    view and text advance together, else the length of the text span behind every view character of the segment.
    """

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.sources: list[int] = []
        self.widths: list[int] = []

    def add(self, start: int, source: int, width: int) -> None:
        if width < 0 and self.widths and self.widths[-1] < 0 and start - self.starts[-1] == source - self.sources[-1]:
            return  # continues the previous run
        self.starts.append(start)
        self.sources.append(source)
        self.widths.append(width)

    def aligned(self) -> bool:
        return self.widths == [-1] and self.sources == [0]

    def span(self, index: int) -> tuple[int, int]:
        k = bisect_right(self.starts, index) - 1
        if self.widths[k] < 0:
            source = self.sources[k] + index - self.starts[k]
            return source, source + 1
        return self.sources[k], self.sources[k] + self.widths[k]


# Runs of characters that may fold to something other than themselves lowercased: non-ASCII and invisible controls.
_SPECIAL = re.compile(r"[^\t-\r\x1c-~]+")


def _fold(text: str) -> tuple[str, _Layer | None]:
    """The per-character view of text, and its layer (None when every character maps to one view character)."""
    if text.isascii() and not _ASCII_CONTROL.search(text):
        return text.lower(), None
    runs = [match.span() for match in _SPECIAL.finditer(text)]
    if len(runs) * 32 > len(text):
        runs = [(0, len(text))]  # dense: one translate beats a Python step per run
    layer = _Layer()
    pieces = []
    position = out = 0
    for run_start, run_end in runs:
        if run_start > position:
            pieces.append(text[position:run_start].lower())
            layer.add(out, position, -1)
            out += run_start - position
        run = text[run_start:run_end]
        pieces.append(run.translate(_FOLD))
        widths = run.translate(_WIDTH)
        position = run_start
        for match in re.finditer("\x01+", widths):
            start, end = match.start() + run_start, match.end() + run_start
            if start > position:
                layer.add(out, position, -1)
                out += start - position
            for index in range(start, end):
                folded = _FOLD[ord(text[index])]
                if folded:
                    layer.add(out, index, 1)
                    out += len(folded)
            position = end
        if run_end > position:
            layer.add(out, position, -1)
            out += run_end - position
        position = run_end
    if position < len(text):
        pieces.append(text[position:].lower())
        layer.add(out, position, -1)
    return "".join(pieces), None if layer.aligned() else layer


@cache
def _named_references() -> dict[str, str]:
    """Casefolded reference name (no ";") -> its folded value; where case told two apart, the one a tag can use."""
    table: dict[str, str] = {}
    for name in sorted(html5):
        key = name.rstrip(";").lower()
        value = "".join(_FOLD[ord(ch)] for ch in html5[name])
        if key not in table or (_matters(value) and not _matters(table[key])):
            table[key] = value
    return table


def _matters(value: str) -> bool:
    return any(ch in "<>/\\&_-" or ch.isspace() for ch in value)


# Escapes a model reads as the character they stand for: JSON/JS ("\u003c", "\u{3c}"), "\x3c", URL ("%3C").
_ESCAPE = re.compile(r"\\u\{([0-9a-f]{1,6})\}|\\u([0-9a-f]{4})|\\x([0-9a-f]{2})|%([0-9a-f]{2})")


def _escaped_value(match: re.Match[str]) -> tuple[str, int] | None:
    codepoint = int(next(group for group in match.groups() if group is not None), 16)
    if codepoint > 0x10FFFF or 0xD800 <= codepoint <= 0xDFFF:
        return None
    return _FOLD[codepoint], match.end()


def _reference(match: re.Match[str]) -> tuple[str, int] | None:
    """The folded value of a character reference and where it ends, or None when it is no reference."""
    decimal, hexadecimal, name = match.groups()
    if name is None:
        codepoint = int(decimal) if decimal is not None else int(hexadecimal, 16)
        if 0x80 <= codepoint <= 0x9F:  # HTML reads these as windows-1252 ("&#139;" is "‹")
            value = bytes([codepoint]).decode("cp1252", errors="ignore")
        elif codepoint > 0x10FFFF or 0xD800 <= codepoint <= 0xDFFF:
            return None
        else:
            value = chr(codepoint)
        return "".join(_FOLD[ord(ch)] for ch in value), match.end()
    table = _named_references()
    name = name.lower()
    name_start = match.start(3)
    # Without ";" a browser decodes the longest known prefix ("&ltmr_body" is "<mr_body").
    for length in range(len(name), 0, -1):
        value = table.get(name[:length])
        if value is not None:
            end = name_start + length
            if length == len(name) and match.group(0).endswith(";"):
                end += 1
            return value, end
    return None


def _decode(view: str, pattern: re.Pattern[str] = _REFERENCE, value_of=_reference) -> tuple[str, _Layer] | None:  # noqa: ANN001
    """One round of decoding (character references, or escapes), or None when there is nothing to decode."""
    if "&" not in view and pattern is not _ESCAPE:
        return None
    layer = _Layer()
    pieces = []
    position = out = 0
    for match in pattern.finditer(view):
        found = value_of(match)
        if found is None:
            continue
        value, end = found
        start = match.start()
        if start > position:
            layer.add(out, position, -1)
            pieces.append(view[position:start])
            out += start - position
        if value:
            layer.add(out, start, end - start)
            pieces.append(value)
            out += len(value)
        position = end
    if not layer.starts and position == 0:
        return None
    if position < len(view):
        layer.add(out, position, -1)
        pieces.append(view[position:])
    return "".join(pieces), layer


def _view(text: str) -> tuple[str, list[_Layer]]:
    """The normalised view of text, and its layers: the first maps the folded text back to the text, each next
    one a round of decoded references back to the round before."""
    view, layer = _fold(text)
    layers = [layer] if layer else []
    # References inside references ("&&#108;t;") take more than one round; four is beyond any reader's patience.
    for _ in range(4):
        decoded = _decode(view)
        escaped = _decode(decoded[0] if decoded else view, _ESCAPE, _escaped_value) if ("\\" in view or "%" in view) else None
        if decoded is None and escaped is None:
            break
        for step in (decoded, escaped):
            if step is not None:
                view, layer = step
                layers.append(layer)
    return view, layers


def _views(text: str) -> list[tuple[str, list[_Layer]]]:
    """The view of text, and where the text has both references and characters that fold, a second view.

    Which one a reader sees is unclear: in "&#x3C" + "\u2ca5" (Coptic, read as "c") the folded view continues the
    hexadecimal number ("&#x3cc" is "ό"), a reader ends it before the look-alike ("<c"). The second view decodes
    the references of the text as written, then folds.
    """
    views = [_view(text)]
    if "&" in text and not (text.isascii() and not _ASCII_CONTROL.search(text)):
        decoded = _decode(text, _RAW_REFERENCE)
        if decoded is not None:
            view, layers = _view(decoded[0])
            views.append((view, [decoded[1], *layers]))
    return views


def _spans(text: str) -> list[tuple[int, int]]:
    """The spans of text behind every tag found in its views."""
    spans = []
    for view, layers in _views(text):
        for match in _TAG.finditer(view):
            start, end = match.span()
            for layer in reversed(layers):
                start, end = layer.span(start)[0], layer.span(end - 1)[1]
            spans.append((start, end))
    return sorted(spans)


def _delete(text: str, spans: list[tuple[int, int]]) -> tuple[str, list[int]]:
    """Text without the spans, and the positions in it where two remaining pieces now meet."""
    pieces = []
    joins = []
    position = length = 0
    for start, end in sorted(spans):
        if start > position:
            pieces.append(text[position:start])
            length += start - position
        if not joins or joins[-1] != length:
            joins.append(length)
        position = max(position, end)
    pieces.append(text[position:])
    return "".join(pieces), joins


# A tag that a deletion joined together reaches across the join; looking this far around each join finds it
# unless it is padded with hundreds of invisible characters, and then the next full pass finds it.
_REACH = 1024
# Each round removes one level of nesting ("<mr_<mr_body>body>"); no honest text nests at all.
_MAX_ROUNDS = 64


def _joined_spans(text: str, joins: list[int]) -> list[tuple[int, int]]:
    """Tags that reach across a join, looking only near the joins."""
    windows: list[list[int]] = []
    for join in joins:
        if windows and join - _REACH <= windows[-1][1]:
            windows[-1][1] = min(len(text), join + _REACH)
        else:
            windows.append([max(0, join - _REACH), min(len(text), join + _REACH)])
    spans = []
    index = 0
    for window_start, window_end in windows:
        for start, end in _spans(text[window_start:window_end]):
            start, end = start + window_start, end + window_start
            # Only a tag across a join is new; one cut short by the window's edge is no tag.
            while index < len(joins) and joins[index] < start:
                index += 1
            if index < len(joins) and joins[index] <= end:
                spans.append((start, end))
    return spans


def strip_boundary_tags(text: str) -> str:
    """Remove every opening or closing boundary tag, however disguised, until none is left.

    Nothing else changes, unless tags nest deeper than any honest text does (see _without_openers).
    """
    rounds = 0
    spans = _spans(text)
    while spans:
        while spans:
            if rounds == _MAX_ROUNDS:
                return _without_openers(text)
            rounds += 1
            text, joins = _delete(text, spans)
            spans = _joined_spans(text, joins)
        spans = _spans(text)
    return text


def _without_openers(text: str) -> str:
    """Text without any character that reads as "<" or "&": no tag and no character reference can form again."""
    view, layer = _fold(text)
    spans = [match.span() for match in re.finditer("[<&]", view)]
    if layer:
        spans = [(layer.span(start)[0], layer.span(end - 1)[1]) for start, end in spans]
    return _delete(text, spans)[0]


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group(0)
    return _ESCAPES.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")


def safe_path(path: str) -> str:
    """A file path as shown in a prompt: no boundary tag, and line breaks and other controls as visible escapes."""
    path = strip_boundary_tags(path)
    if _CONTROL.search(path):
        # Again after escaping: "<\rnr_input>" becomes "<\\rnr_input>", which reads as "<\mr_input>".
        path = strip_boundary_tags(_CONTROL.sub(_escape, path))
    return path
