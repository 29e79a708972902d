"""The paragraphs of an HTML page, read with Python's html.parser (no regex over markup).

What is left out, with everything inside it: the <head>, scripts and styles, navigation
(<nav>, <header>, <footer>, <aside>, and elements whose class or id names a navigation bar,
menu, table of contents, breadcrumb or footer: DocBook's navheader/navfooter, Texinfo's
header/menu, LibreOffice's help chrome), and code (<pre>, and blocks whose class says they hold
a program listing, a screen, a synopsis or an example of code). Inline markup (<code>, <em>,
<a> inside a sentence) keeps its text: it is part of the sentence.

A paragraph ends at every block element (p, div, li, headings, table cells, br ...), so menus
and tables that survive give short fragments, which the sentence filter drops.
"""
import html.parser
from typing import List

SKIPPED_TAGS = frozenset("""
    head script style noscript template nav header footer aside pre svg math button select
    textarea form iframe object
""".split())
VOID_TAGS = frozenset("area base br col embed hr img input link meta param source track wbr"
                      .split())
BLOCK_TAGS = frozenset("""
    address article blockquote body br caption center dd details dialog dir div dl dt
    fieldset figcaption figure h1 h2 h3 h4 h5 h6 hr html li main menu ol p section summary
    table tbody td tfoot th thead title tr ul
""".split())
# The page itself: never left out, whatever its class says (asciidoc's <body class="toc2">).
PAGE_TAGS = frozenset(["html", "body", "main"])
# Words in a class or id that mark navigation or code (compared with every class/id word,
# case-insensitively: "navheader" holds "nav", "bascode" holds "code").
SKIPPED_NAME_PARTS = ("nav", "menu", "breadcrumb", "footer", "header", "sidebar", "toc",
                      "programlisting", "screen", "synopsis", "code", "verbatim",
                      "literallayout", "legalnotice", "copyright", "example")


def _skipped_by_name(attrs):
    for name, value in attrs:
        if name in ("class", "id") and value:
            for word in value.lower().split():
                if any(part in word for part in SKIPPED_NAME_PARTS):
                    return True
    return False


class _Paragraphs(html.parser.HTMLParser):
    def __init__(self):
        html.parser.HTMLParser.__init__(self, convert_charrefs=True)
        self.paragraphs = []
        self.pieces = []         # text of the paragraph being read, as it came
        self.skip_tag = None     # the outermost element being left out, and how deep in it
        self.skip_depth = 0

    def flush(self):
        text = " ".join("".join(self.pieces).split())
        if text:
            self.paragraphs.append(text)
        self.pieces = []

    def handle_starttag(self, tag, attrs):
        if self.skip_tag is not None:
            if tag == self.skip_tag:
                self.skip_depth += 1
            return
        if tag in BLOCK_TAGS:
            self.flush()
        if tag in VOID_TAGS:
            return
        if tag in SKIPPED_TAGS or (tag not in PAGE_TAGS and _skipped_by_name(attrs)):
            self.skip_tag, self.skip_depth = tag, 1

    def handle_startendtag(self, tag, attrs):
        if self.skip_tag is None and tag in BLOCK_TAGS:
            self.flush()

    def handle_endtag(self, tag):
        if self.skip_tag is not None:
            if tag == self.skip_tag:
                self.skip_depth -= 1
                if self.skip_depth == 0:
                    self.skip_tag = None
            return
        if tag in BLOCK_TAGS:
            self.flush()

    def handle_data(self, data):
        if self.skip_tag is None:
            self.pieces.append(data)


def paragraphs(markup: str) -> List[str]:
    """The text paragraphs of one HTML document (a str), in reading order."""
    parser = _Paragraphs()
    parser.feed(markup)
    parser.close()
    parser.flush()
    return parser.paragraphs
