"""The paragraphs of a man page (roff with the man macros), read by a small reader of our own.

Why not `groff -T utf8` or `man`: groff is in a default Debian install only through man-db,
which minimal images and CI containers leave out, and its output is laid out for a terminal
(lines filled to 80 columns, hyphenated, indented), which would have to be taken apart again.
The man macros that translated pages use are few: this reads them directly into paragraphs.

What is kept: running text, the words of font macros (.B, .I, .BR ...), the tags of .TP/.IP
lists (each its own paragraph). What is left out: comments, the .TH title line, no-fill blocks
(.nf/.fi, .EX/.EE: commands and examples), tables (.TS/.TE), macro definitions (.de/.ig
... ..), link targets (.UR/.MT), and whole sections that are not prose about the command:
SYNOPSIS and the translators', authors', copyright and bug-report sections (SKIPPED_SECTIONS).
"""
import re
import unicodedata
from typing import List

# Section titles (upper-cased, accents removed) whose text is left out.
SKIPPED_SECTIONS = frozenset([
    "SINOPSIS", "SYNOPSIS", "SINTAXIS", "TRADUCCION", "TRANSLATION", "AUTOR", "AUTORES",
    "AUTHOR", "AUTHORS", "COPYRIGHT", "DERECHOS DE AUTOR", "DERECHOS DE COPIA", "COLOFON",
    "COLOPHON", "REPORTAR ERRORES", "INFORMAR DE ERRORES", "INFORMES DE ERRORES",
    "REPORTING BUGS", "VEASE TAMBIEN", "VEA TAMBIEN", "VER TAMBIEN", "SEE ALSO",
])
BREAKS = frozenset("PP LP P HP IP TP TQ RS RE sp br in ti PD SH SS bp ne fi".split())
FONT_MACROS = frozenset("B I SM SB".split())            # arguments joined with spaces
ALTERNATING = frozenset("BR BI IB IR RB RI".split())    # arguments joined without spaces
NO_FILL = {"nf": "fi", "EX": "EE", "TS": "TE", "de": "..", "de1": "..", "am": "..",
           "ig": "..", "EQ": "EN", "PS": "PE"}
# Named characters: \(xx, \[xx], and the strings \*(xx, \*[xx] that man pages use.
CHARACTERS = {
    "em": "—", "en": "–", "hy": "-", "mi": "-", "aq": "'", "dq": '"', "lq": "“", "rq": "”",
    "oq": "‘", "cq": "’", "Fo": "«", "Fc": "»", "fo": "‹", "fc": "›", "co": "©", "rg": "®",
    "tm": "™", "bu": "•", "de": "°", "r!": "¡", "r?": "¿", "ha": "^", "ti": "~", "rs": "\\",
    "sl": "/", "ba": "|", "ga": "`", "aa": "´", "pl": "+", "eq": "=", "mu": "×", "di": "÷",
    "<=": "≤", ">=": "≥", "!=": "≠", "->": "→", "<-": "←", "12": "½", "14": "¼", "34": "¾",
    "R": "®", "Tm": "™",
}
# One escape sequence: \X, \(xx, \[name], \fX, \f(xx, \f[..], \s..., \*..., \N'..', \h'..' ...
ESCAPE = re.compile(r"""\\(?:
      (?P<font>f(?:\(..|\[[^\]]*\]|.))
    | (?P<size>s(?:[+-]?\d|\(..|\[[^\]]*\]|'[^']*'))
    | (?P<string>\*(?:\(..|\[[^\]]*\]|.))
    | (?P<named>\(..|\[[^\]]*\])
    | (?P<number>N'(\d+)')
    | (?P<quoted>[hvwoDlLbxXSZAkBRC]'[^']*')
    | (?P<register>[nmgkY](?:\(..|\[[^\]]*\]|.))
    | (?P<other>.)
)""", re.X)
SIMPLE = {"-": "-", "e": "\\", "\\": "\\", " ": " ", "~": " ", "0": " ", "|": "", "^": "",
          "&": "", ")": "", "%": "", ":": "", "c": "", "/": "", ",": "", "'": "´", "`": "`",
          ".": ".", "t": " ", "p": "", "d": "", "u": "", "r": "", "z": "", "{": "", "}": ""}


def _name_of(code):
    return code[1:3] if code.startswith("(") else code[1:-1] if code.startswith("[") else code


def _escape(match):
    kind = match.lastgroup
    if kind in ("named", "string"):
        code = match.group(kind)
        return CHARACTERS.get(_name_of(code[1:] if kind == "string" else code), "")
    if kind == "number":
        try:
            return chr(int(match.group(6)))
        except (ValueError, OverflowError):
            return ""
    if kind == "other":
        return SIMPLE.get(match.group(kind), "")
    return ""


def text_of(line: str) -> str:
    """A roff text line without its escapes (fonts, sizes, named characters ...)."""
    if '\\"' in line:
        line = line[:line.index('\\"')]
    return ESCAPE.sub(_escape, line)


def _arguments(rest):
    """The arguments of a request: words, or "quoted words" ("" inside quotes is a quote)."""
    args, i = [], 0
    while i < len(rest):
        if rest[i] in " \t":
            i += 1
        elif rest[i] == '"':
            j, word = i + 1, []
            while j < len(rest):
                if rest[j] == '"' and rest[j + 1:j + 2] == '"':
                    word.append('"')
                    j += 2
                elif rest[j] == '"':
                    break
                else:
                    word.append(rest[j])
                    j += 1
            args.append("".join(word))
            i = j + 1
        else:
            j = i
            while j < len(rest) and rest[j] not in " \t":
                j += 1
            args.append(rest[i:j])
            i = j
    return args


def _section_key(title):
    plain = unicodedata.normalize("NFD", title.upper())
    return " ".join("".join(ch for ch in plain if not unicodedata.combining(ch)).split())


def paragraphs(source: str) -> List[str]:
    """The text paragraphs of one man page (its roff source, a str), in reading order."""
    found, current = [], []
    skip_section = False
    until = None                  # the request that ends a block being left out
    tag_next = False              # the next text line is a .TP tag: a paragraph of its own

    def flush():
        text = " ".join(" ".join(current).split())
        if text and not skip_section:
            found.append(text)
        del current[:]

    for raw in source.splitlines():
        if until is not None:
            words = raw.split()
            if words and words[0] == (".." if until == ".." else "." + until):
                until = None
            continue
        if raw[:1] in (".", "'"):
            rest = raw[1:].lstrip()
            if rest.startswith('\\"') or not rest:
                continue
            name = rest.split(None, 1)[0]
            args = _arguments(rest[len(name):])
            if name in NO_FILL:
                flush()
                until = NO_FILL[name]
                continue
            if name in ("SH", "SS"):
                flush()
                if name == "SH":
                    skip_section = _section_key(text_of(" ".join(args))) in SKIPPED_SECTIONS
                continue
            if name in BREAKS:
                flush()
                if name == "TP":
                    tag_next = True
                elif name == "IP" and args:
                    current.append(text_of(args[0]))
                    flush()
                continue
            if name in FONT_MACROS:
                current.append(text_of(" ".join(args)))
            elif name in ALTERNATING:
                current.append(text_of("".join(args)))
            else:                 # .TH, .UR, .MT, registers, strings ...: no text
                continue
        else:
            current.append(text_of(raw))
        if tag_next:
            flush()
            tag_next = False
    flush()
    return found
