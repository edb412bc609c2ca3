#!/usr/bin/env python3
"""Build examples/data/telugu.txt: a small Telugu corpus made only from
Debian packages (UI strings and help text, not prose).

Sources (see SOURCES.md for versions, sizes and licences):

1. firefox-esr-l10n-te (MPL-2.0): the Fluent (.ftl) files inside the Telugu
   language pack (usr/lib/firefox-esr/browser/extensions/langpack-te@*.xpi,
   a zip). For every message (not terms, not attributes) the value is taken,
   placeables ``{ ... }`` (including whole select expressions) and HTML tags
   are removed, whitespace is collapsed, what the removed placeables leave
   behind is tidied (empty quotes/brackets, a space before punctuation,
   punctuation opening the line), and the value is kept if it has at least 20
   Telugu-script letters. Files are visited in sorted path order,
   messages in file order.
2. gnome-user-docs (CC-BY-SA-3.0): the ``<p>`` elements (outside ``<info>``)
   of usr/share/help/te/gnome-help/*.page, text only, kept if at least 50 % of
   their letters are Telugu-script letters. Pages in sorted name order,
   paragraphs in document order. (The Telugu translation is partial: many
   paragraphs are still English and are dropped.)

A "letter" is a code point of Unicode general category L* or M* (so Telugu
vowel signs and viramas count); a "Telugu-script letter" is such a code point
in U+0C00..U+0C7F. Lines are deduplicated across both sources (first wins),
the Firefox strings come first, and the output is cut at the last whole line
that fits in MAX_BYTES. Output is one string/paragraph per line, UTF-8, "\\n"
line ends; the same inputs always give the same bytes.

Fetch and unpack (Debian bookworm; any root on a Debian machine with apt):

    mkdir -p /tmp/tedata && cd /tmp/tedata
    apt-get update          # only if apt-get download cannot find the packages
    apt-get download firefox-esr-l10n-te gnome-user-docs
    dpkg-deb -f firefox-esr-l10n-te_*_all.deb Version   # 140.10.2esr-1~deb12u1
    dpkg-deb -f gnome-user-docs_*_all.deb Version       # 43.0-2
    dpkg-deb -x firefox-esr-l10n-te_*_all.deb ff
    dpkg-deb -x gnome-user-docs_*_all.deb gud

Then, from the repository root:

    python3 examples/data/make_telugu.py /tmp/tedata/ff /tmp/tedata/gud \\
        -o examples/data/telugu.txt

Python 3 standard library only.
"""

import argparse
import html
import re
import sys
import unicodedata
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

MAX_BYTES = 250_000
MIN_TELUGU_LETTERS_FTL = 20
MIN_TELUGU_SHARE_HELP = 0.5

MALLARD = "{http://projectmallard.org/1.0/}"

MESSAGE_RE = re.compile(r"^(-?)[A-Za-z][A-Za-z0-9_-]*[ \t]*=[ \t]?(.*)$")
ATTRIBUTE_RE = re.compile(r"^[ \t]+\.[A-Za-z][A-Za-z0-9_-]*[ \t]*=")
TAG_RE = re.compile(r"<[^<>]*>")
SPACE_RE = re.compile(r"\s+")
# Zero-width (non-)joiners left dangling next to a space or line edge once a
# placeable or tag beside them is removed.
DANGLING_ZW_RE = re.compile(r"(?:(?<=\s)|^)[\u200c\u200d]+|[\u200c\u200d]+(?=\s|$)")
# Leftovers of a removed placeable in a Firefox string: empty quotes or
# brackets, a space before punctuation, punctuation opening the line.
# PLACEABLE marks where a placeable was, so that only pairs left empty by it
# are dropped, not empty pairs of the source text.
PLACEABLE = "\ue000"
EMPTY_PAIR_RE = re.compile(
    r"""\(\s*\ue000\s*\)|\[\s*\ue000\s*\]|"\s*\ue000\s*"|“\s*\ue000\s*”|‘\s*\ue000\s*’|'\s*\ue000\s*'"""
)
SPACE_BEFORE_PUNCT_RE = re.compile(r"\s+([.,;:!?])(?=\s|$)")
LEADING_PUNCT_RE = re.compile(r"^[\s.,;:!?]+")


def is_letter(ch):
    return unicodedata.category(ch)[0] in "LM"


def is_telugu(ch):
    return "\u0c00" <= ch <= "\u0c7f"


def letter_counts(text):
    """(Telugu-script letters, all letters) in text."""
    te = total = 0
    for ch in text:
        if is_letter(ch):
            total += 1
            if is_telugu(ch):
                te += 1
    return te, total


def clean(text):
    text = SPACE_RE.sub(" ", text).strip()
    text = DANGLING_ZW_RE.sub("", text)
    return SPACE_RE.sub(" ", text).strip()


def strip_placeables(text):
    """Replace every top-level { ... } by PLACEABLE (nested braces and string
    literals inside placeables are honoured)."""
    out = []
    depth = 0
    in_string = False
    i = 0
    while i < len(text):
        ch = text[i]
        if depth == 0:
            if ch == "{":
                depth = 1
                out.append(PLACEABLE)
            else:
                out.append(ch)
        elif in_string:
            if ch == "\\":
                i += 1  # skip the escaped character
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        i += 1
    return "".join(out)


def ftl_message_values(source):
    """Yield the raw value text of each message (not term) in file order."""
    ident_is_term = None
    value_lines = None  # None while not inside a message value
    in_attributes = False

    def flush():
        if value_lines is not None and not ident_is_term:
            return "\n".join(value_lines)
        return None

    for line in source.splitlines():
        m = MESSAGE_RE.match(line)
        if m:
            v = flush()
            if v is not None:
                yield v
            ident_is_term = m.group(1) == "-"
            value_lines = [m.group(2)]
            in_attributes = False
            continue
        if line[:1] not in (" ", "\t", ""):
            # comment or other column-0 line: ends the current entry
            v = flush()
            if v is not None:
                yield v
            value_lines = None
            continue
        if value_lines is None or in_attributes:
            continue
        if ATTRIBUTE_RE.match(line):
            in_attributes = True
            continue
        value_lines.append(line)
    v = flush()
    if v is not None:
        yield v


def firefox_lines(root):
    xpis = sorted(Path(root).rglob("langpack-te@*.xpi"))
    if not xpis:
        sys.exit(f"no langpack-te@*.xpi under {root}")
    lines = []
    with zipfile.ZipFile(xpis[0]) as z:
        for name in sorted(n for n in z.namelist() if n.endswith(".ftl")):
            source = z.read(name).decode("utf-8")
            for value in ftl_message_values(source):
                text = strip_placeables(value)
                text = EMPTY_PAIR_RE.sub(" ", text).replace(PLACEABLE, " ")
                text = TAG_RE.sub(" ", text)
                text = clean(html.unescape(text))
                text = SPACE_BEFORE_PUNCT_RE.sub(r"\1", clean(text))
                text = clean(LEADING_PUNCT_RE.sub("", text))
                if letter_counts(text)[0] >= MIN_TELUGU_LETTERS_FTL:
                    lines.append(text)
    return lines


def help_lines(root):
    pages_dir = Path(root) / "usr/share/help/te/gnome-help"
    pages = sorted(pages_dir.glob("*.page"))
    if not pages:
        sys.exit(f"no *.page under {pages_dir}")
    lines = []
    for page in pages:
        tree = ET.parse(page)
        skip = set()
        for info in tree.iter(MALLARD + "info"):
            skip.update(id(e) for e in info.iter())
        for p in tree.iter(MALLARD + "p"):
            if id(p) in skip:
                continue
            text = clean("".join(p.itertext()))
            te, total = letter_counts(text)
            if total and te >= MIN_TELUGU_SHARE_HELP * total:
                lines.append(text)
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("firefox_root", help="dpkg-deb -x of firefox-esr-l10n-te")
    ap.add_argument("gnome_docs_root", help="dpkg-deb -x of gnome-user-docs")
    ap.add_argument("-o", "--output", default=str(Path(__file__).with_name("telugu.txt")))
    args = ap.parse_args()

    ff = firefox_lines(args.firefox_root)
    gh = help_lines(args.gnome_docs_root)

    seen = set()
    out = []
    size = 0
    counts = {"firefox": 0, "gnome-help": 0}
    for src, lines in (("firefox", ff), ("gnome-help", gh)):
        for line in lines:
            if line in seen:
                continue
            seen.add(line)
            n = len(line.encode("utf-8")) + 1
            if size + n > MAX_BYTES:
                break
            out.append(line)
            size += n
            counts[src] += 1
        else:
            continue
        break

    with open(args.output, "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(line + "\n" for line in out))

    te, total = letter_counts("".join(out))
    print(
        f"{args.output}: {size} bytes, {len(out)} lines "
        f"(firefox {counts['firefox']} of {len(set(ff))} unique, "
        f"gnome-help {counts['gnome-help']} of {len(set(gh))} unique); "
        f"Telugu letters {te}/{total} = {100 * te / max(total, 1):.1f}%",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
