"""PII detection and reversible, per-request redaction. Pure: stdlib only, no I/O.

`PiiScanner` finds spans of the enabled entity types; `Redaction` replaces them with placeholders such as
`[EMAIL_1]` and restores them in the answer, whole (`restore`) or streamed (`StreamRestorer`).

Detection is cheap candidates plus validators: Luhn and IIN ranges for cards, mod-97 and per-country lengths
for IBANs, SSN ranges, `ipaddress` for IPv6, a JSON header with "alg" for JWTs, digit grouping and context
words for phones. Speed comes from never scanning the text with a character class (slow in `re`): the text is
translated once into a same-length class string (digits -> "0", letters -> "A"/"a") where numeric clusters,
IBAN shapes and dotted quads start with literals; secrets are gated on literal markers ("sk-", "AKIA", "eyJ")
and on the presence of a 20-character token run; emails start from each "@".

Overlaps: the longer span wins; on equal length the more specific entity wins
(secret > email > credit_card > iban > ssn > phone > ip_address).

Placeholder collisions: placeholders are `[TYPE_N]`. Only placeholders this request issued are ever restored,
and restore is a single pass, so restored values are never re-scanned. If an input text already contains a
placeholder-shaped token that was not issued, its number is reserved (never issued in this request) and the
token passes through unchanged. If it equals a placeholder already issued for another value (a later message
quoting `[EMAIL_1]`), the literal is itself replaced by a fresh placeholder that restores to the literal.
Either way `restore(redact(text)) == text`.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import ipaddress
import json
import re
import unicodedata
from collections.abc import Iterable

from policies.base import PiiSpan
from policies.memo import TextMemo

ENTITIES = ("email", "phone", "credit_card", "ssn", "iban", "ip_address", "secret")

# Tie-break between spans of equal length: lower is more specific.
_RANK = {"secret": 0, "email": 1, "credit_card": 2, "iban": 3, "ssn": 4, "phone": 5, "ip_address": 6}

_DIGITS = frozenset("0123456789")
_Cand = tuple[int, int, str]  # start, end, entity


def _wordish(ch: str) -> bool:
    """A word's character, which a value glued to it is part of ("id4111...", "user@host" in "xuser@host"). Not
    the characters of the scripts from U+2E80 on (Chinese, Japanese, Korean), written without spaces between
    words: "お問い合わせは090-1234-5678まで" holds a phone number."""
    return ch == "_" or (ch.isalnum() and ch < "\u2e80")


# ---------------------------------------------------------------------------------------------- email

_EMAIL_LOCAL = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_EMAIL_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,24})")
# "icon@2x.png" and "pkg@1.0.js" are not addresses: file extensions that are not TLDs.
_NOT_TLDS = frozenset(
    ("png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "tif", "tiff", "css", "js", "mjs", "ts", "tsx",
     "jsx", "json", "html", "htm", "txt", "pdf", "xml", "yaml", "yml", "lock", "log", "csv", "zip", "gz", "tar",
     "exe", "dll", "rb", "java")
)  # fmt: skip


def _emails(text: str, out: list[_Cand]) -> None:
    n = len(text)
    at = text.find("@")
    while at != -1:
        nxt = at + 1
        i = at
        lo = max(0, at - 64)
        while i > lo and text[i - 1] in _EMAIL_LOCAL:
            i -= 1
        ok = not (i == lo and lo > 0 and text[lo - 1] in _EMAIL_LOCAL)  # local part longer than 64
        while i < at and text[i] == ".":
            i += 1
        local = text[i:at]
        if ok and local and not local.endswith(".") and ".." not in local and not (i > 0 and _wordish(text[i - 1])):
            m = _EMAIL_DOMAIN.match(text, at + 1)
            if m is not None:
                end = m.end()
                if (
                    end - at - 1 <= 253
                    and m.group(1).lower() not in _NOT_TLDS
                    and not (end < n and (_wordish(text[end]) or text[end] in "-@"))
                    and not (
                        text.startswith(":", end) and end + 1 < n and (_wordish(text[end + 1]) or text[end + 1] == "/")
                    )
                ):  # "git@github.com:org/repo.git" is an SSH remote, not an address
                    out.append((i, end, "email"))
                    nxt = end
        at = text.find("@", nxt)


# ---------------------------------------------------------------------------------------------- phone

_SEP = r"(?:[-./]|[ \u00a0])"  # " - " separates list items, not the groups of one number
_PHONE_CHAIN = re.compile(
    rf"(\+[ \u00a0]?)?(?:\([0-9]{{1,5}}\)|[0-9]+)(?:{_SEP}?\([0-9]{{1,5}}\)|{_SEP}[0-9]+|(?<=\))[0-9]+)*"
)
_PHONE_GROUP = re.compile(r"\(([0-9]{1,5})\)|([0-9]+)")
# Context is read from the words just before a number (after the last digit or line break in that window).
_PUNCT = ".,;:!?()[]{}<>\"'`=*/\\|~^&%$#@+-–—…«»“”‘’"
_PHONE_WORDS = frozenset(("tel", "tél", "tlf", "ph", "mob", "cell", "fax", "sms", "text", "texts", "ring", "handy"))
_PHONE_PREFIXES = (
    "telef", "telep", "teléf", "télép", "phone", "call", "mobil", "móvil", "movil", "celular", "cellul",
    "cellphone", "whatsapp", "dial", "contact", "reach", "portable",
)  # fmt: skip
_NEGATIVE_WORDS = frozenset((
    "order", "invoice", "ticket", "tracking", "account", "acct", "case", "confirmation", "serial", "sku", "isbn",
    "booking", "transaction", "txn", "customer", "member", "policy", "claim", "parcel", "shipment", "reference",
    "ref", "id", "po", "bestellung", "bestellnummer", "rechnung", "rechnungsnummer", "auftrag", "kundennummer",
    "commande", "facture", "pedido", "factura", "ordine", "fattura", "zip", "postcode", "iban", "bic", "batch",
    "ssn", "vat", "tax", "isin", "imei", "lot", "version", "build",
))  # fmt: skip
_NUMBER_WORDS = frozenset(("number", "num", "no", "nr", "nummer", "numéro", "número", "n", "nº", "is", "was", ""))
_DATE_SIZES = frozenset({(4, 2, 2), (2, 2, 4), (1, 2, 4), (2, 1, 4), (1, 1, 4), (4, 1, 1), (4, 1, 2), (4, 2, 1)})

_Group = tuple[int, int, str, bool]  # start, end, digits, parenthesised

_INVALID, _VALID, _UNLESS_NEGATIVE, _IF_CONTEXT = range(4)


def _context_words(text: str, cls: bytes, pos: int, width: int) -> list[str]:
    lo = max(0, pos - width)
    cut = max(cls.rfind(b"0", lo, pos), cls.rfind(b"\n", lo, pos)) + 1
    words = text[max(cut, lo) : pos].lower().split()
    if words and cut <= lo and lo > 0 and _wordish(text[lo - 1]) and _wordish(text[lo]):
        words.pop(0)  # cut mid-word
    return [w.strip(_PUNCT) for w in words]


def _negative_context(text: str, cls: bytes, pos: int) -> bool:
    """'Order 415-555-0132', 'Ticket ID: ...', 'invoice no. ...': an identifier, not a phone."""
    if pos > 0 and text[pos - 1] == "#":
        return True
    words = _context_words(text, cls, pos, 30)
    while words and words[-1] in _NUMBER_WORDS:
        words.pop()
    if not words:
        return False
    last = words[-1]
    return last in _NEGATIVE_WORDS or (last.endswith("s") and last[:-1] in _NEGATIVE_WORDS)


def _phone_context(text: str, cls: bytes, pos: int) -> bool:
    return any(w in _PHONE_WORDS or w.startswith(_PHONE_PREFIXES) for w in _context_words(text, cls, pos, 40))


def _phone_groups(text: str, start: int, end: int) -> list[_Group]:
    """The first 9 groups of a chain (a phone has at most 8; the 9th tells whether the 8th may end it)."""
    groups: list[_Group] = []
    for g in _PHONE_GROUP.finditer(text, start, end):
        paren = g.group(1)
        groups.append((g.start(), g.end(), paren if paren is not None else g.group(2), paren is not None))
        if len(groups) == 9:
            break
    return groups


def _phone_kind(text: str, we: int, groups: list[_Group], plus: bool, n: int) -> int:
    """Whether groups (n digits, ending at `we`) form a phone number, and what context that depends on."""
    if we < len(text):
        q = text[we]
        if _wordish(q) or q in "@%$€£¥":
            return _INVALID
        if q in "-.,:/" and we + 1 < len(text) and text[we + 1] in _DIGITS:
            return _INVALID
    first = groups[0][2]
    if plus:
        return _VALID if n <= 15 and first[0] != "0" else _INVALID
    if len(groups) == 1:
        return _IF_CONTEXT if n <= 15 else _INVALID
    sizes = tuple(len(g[2]) for g in groups)
    parens = [i for i, g in enumerate(groups) if g[3]]
    if parens:  # (415) 555-0132, 1 (800) 555-0199; "+44 (0)20 ..." was handled with plus
        ok = parens == [0] or (parens == [1] and first == "1")
        return _VALID if ok and n <= 15 and not groups[-1][3] else _INVALID
    if first.startswith("00"):
        return _VALID if 3 <= sizes[0] <= 5 and first[2] != "0" and 9 <= n - 2 <= 15 else _INVALID
    if n > 15:
        return _INVALID
    seps = [text[groups[i][1] : groups[i + 1][0]].strip(" \u00a0") or " " for i in range(len(groups) - 1)]
    if len(seps) >= 2 and sizes[:3] in _DATE_SIZES and seps[0] == seps[1] and seps[0] in "-/.":
        return _INVALID
    if len(groups) == 4 and max(sizes) <= 3 and all(s == "." for s in seps):
        return _INVALID  # dotted quad: an IPv4 address or a version, never a phone
    uniform = len(set(seps)) == 1
    if uniform and (sizes == (3, 3, 4) or (sizes == (1, 3, 3, 4) and first == "1")):
        return _UNLESS_NEGATIVE  # North American: 415-555-0132, 415.555.0132, 1-800-555-0199
    if sizes == (3, 2, 4):
        return _INVALID  # the SSN shape (valid SSNs are found by the SSN detector)
    if uniform and first[0] == "0" and n <= 12 and min(sizes) >= 2 and (max(sizes) == 2 or sizes[-1] >= 3):
        return _UNLESS_NEGATIVE  # national with trunk prefix: 020 7946 0958, 030/901820, 06 12 34 56 78
    if min(sizes) >= 2 and sizes[-1] >= 3:
        return _IF_CONTEXT
    return _INVALID


def _phones(text: str, cls: bytes, start: int, end: int, out: list[_Cand]) -> None:
    """Phones in one numeric cluster [start, end); a leading "+" or "(" just before it belongs to it."""
    j = start
    while j > 0 and start - j < 3 and text[j - 1] in "+( \u00a0":
        j -= 1
    while j < start and text[j] in " \u00a0":
        j += 1
    for chain in _PHONE_CHAIN.finditer(text, j, end):
        ws = chain.start()
        if chain.end() - ws < 9:
            continue
        if ws > 0:
            p = text[ws - 1]
            if _wordish(p) or p in "+#$€£¥@/\\&%":
                continue
            if p in "-.,: \u00a0" and ws > 1 and text[ws - 2] in _DIGITS:
                continue
        groups = _phone_groups(text, ws, chain.end())
        plus = chain.group(1) is not None
        counts = []  # digits in groups[:k]
        total = 0
        for g in groups:
            total += len(g[2])
            counts.append(total)
        negative: bool | None = None
        context: bool | None = None
        for k in range(min(len(groups), 8), 0, -1):
            n = counts[k - 1]
            if n < 9:
                break
            if n > 17 or (k < len(groups) and not text[groups[k - 1][1] : groups[k][0]].isspace()):
                continue  # too long, or not at whitespace (trailing groups are only trimmed there)
            kind = _phone_kind(text, groups[k - 1][1], groups[:k], plus, n)
            if kind == _INVALID:
                continue
            if kind == _IF_CONTEXT:
                if context is None:
                    context = _phone_context(text, cls, ws)
                if not context:
                    continue
            if kind != _VALID:
                if negative is None:
                    negative = _negative_context(text, cls, ws)
                if negative:
                    continue
            out.append((ws, groups[k - 1][1], "phone"))
            break


# ------------------------------------------------------------------------------- credit card and SSN

_C_CHAIN = re.compile(rb"0+(?:[ -]0+)*")  # on the class string: digits joined by single spaces or dashes
_C_DIGITS = re.compile(rb"0+")
_C_SSN = re.compile(rb"000(?P<sep>[ -])00(?P=sep)0000")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_brand_ok(d: str) -> bool:
    n = len(d)
    if d[0] == "4":
        return n in (13, 16, 19)
    p2, p3, p4, p6 = int(d[:2]), int(d[:3]), int(d[:4]), int(d[:6])
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:
        return n == 16
    if p2 in (34, 37):
        return n == 15
    if p4 == 6011 or p2 == 65 or 644 <= p3 <= 649 or 622126 <= p6 <= 622925:
        return 16 <= n <= 19  # Discover
    if 3528 <= p4 <= 3589 or p2 == 62 or 2200 <= p4 <= 2204:
        return 16 <= n <= 19  # JCB, UnionPay, Mir
    if 300 <= p3 <= 305 or p2 in (36, 38, 39):
        return 14 <= n <= 19  # Diners
    if p4 in (5018, 5020, 5038, 5893, 6304, 6759, 6761, 6762, 6763):
        return 13 <= n <= 19  # Maestro
    return False


def _card_sizes_ok(sizes: tuple[int, ...]) -> bool:
    if len(sizes) == 1:
        return True
    if sizes in ((4, 6, 5), (4, 6, 4)):
        return True
    return all(s == 4 for s in sizes[:-1]) and 1 <= sizes[-1] <= 4


def _start_ok(text: str, start: int) -> bool:
    """A number's left edge: not glued to a word, not the tail of a longer dotted/dashed number."""
    if start == 0:
        return True
    p = text[start - 1]
    return not (_wordish(p) or (p in "-.,/:" and start > 1 and text[start - 2] in _DIGITS))


def _end_ok(text: str, end: int) -> bool:
    if end >= len(text):
        return True
    q = text[end]
    return not (_wordish(q) or (q in "-.,/:" and end + 1 < len(text) and text[end + 1] in _DIGITS))


def _ssn_context(text: str, cls: bytes, pos: int) -> bool:
    words = _context_words(text, cls, pos, 40)
    return "ssn" in words or "ssns" in words or ("social" in words and "security" in words)


def _ssn_ok(area: str, group: str, serial: str) -> bool:
    a = int(area)
    return a != 0 and a != 666 and a < 900 and group != "00" and serial != "0000"


def _digit_chains(text: str, cls: bytes, start: int, end: int, cards: bool, ssns: bool, out: list[_Cand]) -> None:
    """Cards and SSNs in one numeric cluster [start, end)."""
    for chain in _C_CHAIN.finditer(cls, start, end):
        cs, ce = chain.start(), chain.end()
        if ce - cs < 9:
            continue
        digit_count = cls.count(b"0", cs, ce)
        want_cards = cards and digit_count >= 13
        want_ssn = ssns and (ce - cs == 9 or cls[cs + 9 : cs + 10] == b" " or _C_SSN.search(cls, cs, ce) is not None)
        if not (want_cards or want_ssn):
            continue
        runs = [(m.start(), m.end()) for m in _C_DIGITS.finditer(cls, cs, ce)]
        count = len(runs)
        if want_ssn:
            _ssn_windows(text, cls, runs, out)
        if not want_cards:
            continue
        cum = [0]
        for s, e in runs:
            cum.append(cum[-1] + e - s)
        i = 0
        while i < count:
            if i > 0 and (text[runs[i][0] - 1] != " " or runs[i - 1][1] - runs[i - 1][0] == 4):
                i += 1  # a card inside a longer chain starts after a space, not inside a 4-digit grouping
                continue
            found = 0
            for j in range(min(count, i + 7), i, -1):
                d = cum[j] - cum[i]
                if d < 13:
                    break
                if d > 19:
                    continue
                if j < count and (text[runs[j - 1][1]] != " " or runs[j][1] - runs[j][0] <= 4):
                    continue
                start, end = runs[i][0], runs[j - 1][1]
                if (i == 0 and not _start_ok(text, start)) or (j == count and not _end_ok(text, end)):
                    continue
                seps = {text[runs[t][1]] for t in range(i, j - 1)}
                if len(seps) > 1:
                    continue
                sizes = tuple(runs[t][1] - runs[t][0] for t in range(i, j))
                if not _card_sizes_ok(sizes):
                    continue
                digits = "".join(text[runs[t][0] : runs[t][1]] for t in range(i, j))
                if _card_brand_ok(digits) and _luhn(digits):
                    out.append((start, end, "credit_card"))
                    found = j
                    break
            i = found if found else i + 1


def _ssn_windows(text: str, cls: bytes, runs: list[tuple[int, int]], out: list[_Cand]) -> None:
    count = len(runs)
    if count == 1 or runs[0][1] - runs[0][0] == 9:
        s, e = runs[0]
        if (
            e - s == 9
            and (count == 1 or text[e] == " ")
            and _start_ok(text, s)
            and _end_ok(text, e)
            and _ssn_context(text, cls, s)
            and _ssn_ok(text[s : s + 3], text[s + 3 : s + 5], text[s + 5 : e])
        ):
            out.append((s, e, "ssn"))
        if count == 1:
            return
    for i in range(count - 2):
        (a0, a1), (g0, g1), (s0, s1) = runs[i], runs[i + 1], runs[i + 2]
        if a1 - a0 != 3 or g1 - g0 != 2 or s1 - s0 != 4:
            continue
        sep = text[a1]
        if text[g1] != sep:
            continue
        if i > 0 and (sep != "-" or text[a0 - 1] != " "):
            continue
        if i + 3 < count and (sep != "-" or text[s1] != " "):
            continue
        if (i == 0 and not _start_ok(text, a0)) or (i + 3 == count and not _end_ok(text, s1)):
            continue
        if _ssn_ok(text[a0:a1], text[g0:g1], text[s0:s1]):
            out.append((a0, s1, "ssn"))


# ----------------------------------------------------------------------------------------------- IBAN

_C_IBAN = re.compile(rb"AA00(?:[A0]|\x20(?=[A0])){10,40}")
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


_IBAN_LETTERS = str.maketrans({chr(c): str(c - 55) for c in range(65, 91)})  # A -> "10" ... Z -> "35"


def _mod97(compact: str) -> bool:
    return int((compact[4:] + compact[:4]).translate(_IBAN_LETTERS)) % 97 == 1


def _ibans(text: str, cls: bytes, out: list[_Cand] | None, masks: list[tuple[int, int]]) -> None:
    """Valid IBANs go to `out`; every IBAN-shaped string becomes a mask for phone, card and SSN candidates."""
    n = len(text)
    for m in _C_IBAN.finditer(cls):
        start = m.start()
        if start > 0 and _wordish(text[start - 1]):
            continue
        raw = text[start : m.end()]
        length = _IBAN_LENGTHS.get(raw[:2])
        if length is None:
            continue
        count = 0
        cut = 0
        for idx, ch in enumerate(raw):
            if ch != " ":
                count += 1
                if count == length:
                    cut = idx + 1
                    break
        masks.append((start, start + cut if cut else m.end()))
        if out is None or not cut or (cut < len(raw) and raw[cut] != " "):
            continue
        end = start + cut
        if end < n and _wordish(text[end]):
            continue
        piece = raw[:cut]
        if " " in piece:
            parts = piece.split(" ")
            if any(len(p) != 4 for p in parts[:-1]) or not 1 <= len(parts[-1]) <= 4:
                continue
            compact = "".join(parts)
        else:
            compact = piece
        if _mod97(compact):
            out.append((start, end, "iban"))


# ------------------------------------------------------------------------------------------------- IP

_C_IPV4 = re.compile(rb"0(?<!00)0?0?\.00?0?\.00?0?\.00?0?")  # starts at the first digit of a run
_IPV6_HINT = re.compile(r":(?::|[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:)")  # "::" or 4+ colons
_IPV6_TOKEN = re.compile(r"[0-9A-Fa-f:.]{2,60}")
_HEX_COLON_DOT = frozenset("0123456789abcdefABCDEF:.")
_HAS_DIGIT = re.compile(r"[0-9]")


def _ipv4(text: str, cls: bytes, start: int, end: int, out: list[_Cand]) -> None:
    n = len(text)
    for m in _C_IPV4.finditer(cls, start, end):
        s, e = m.start(), m.end()
        if s > 0 and (_wordish(text[s - 1]) or text[s - 1] == "."):
            continue
        if e < n and (_wordish(text[e]) or (text[e] == "." and e + 1 < n and text[e + 1] in _DIGITS)):
            continue
        if all(len(o) == 1 or (o[0] != "0" and int(o) <= 255) for o in text[s:e].split(".")):
            out.append((s, e, "ip_address"))


def _ipv6(text: str, out: list[_Cand]) -> None:
    n = len(text)
    done = 0
    for hint in _IPV6_HINT.finditer(text):
        s = hint.start()
        if s < done:
            continue
        while s > 0 and hint.start() - s < 40 and text[s - 1] in _HEX_COLON_DOT:
            s -= 1
        m = _IPV6_TOKEN.match(text, s)
        if m is None:
            continue
        e = done = m.end()
        if s > 0 and (_wordish(text[s - 1]) or text[s - 1] in ":."):
            continue
        cand = m.group()
        while cand and cand[-1] in ".:" and not cand.endswith("::"):
            cand = cand[:-1]
            e -= 1
        if e < n and (_wordish(text[e]) or text[e] == ":"):
            continue
        if cand.startswith("::") and cand.count(":") == 2:
            continue  # "::" and "::1"-like slices
        if len(cand) > 45 or ("::" not in cand and cand.count(":") < 6) or not _HAS_DIGIT.search(cand):
            continue
        try:
            ipaddress.IPv6Address(cand)
        except ValueError:
            continue
        out.append((s, e, "ip_address"))


# --------------------------------------------------------------------------------------------- secret

_OPENAI = re.compile(r"sk-[A-Za-z0-9_-]{20,400}")
_STRIPE = re.compile(r"k_(?:live|test)_[A-Za-z0-9]{16,247}")  # after "s" (secret) or "r" (restricted)
_AWS_ID = re.compile(r"A[KS]IA[A-Z0-9]{16}")
_AWS_SECRET_LABEL = re.compile(rb"secret_?(?:access_?)?key")  # on the ASCII-lower-cased text
_AWS_SECRET_VALUE = re.compile(r"[\"']?[ \t]*(?:=>|[:=]|[ \t])[ \t]*[\"']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])")
_GITHUB = re.compile(r"gh[pousr]_[A-Za-z0-9]{36,255}")
_GITHUB_PAT = re.compile(r"github_pat_[A-Za-z0-9_]{22,255}")
_SLACK = re.compile(r"xox[abposr]-[A-Za-z0-9-]{10,250}")
_SLACK_HOOK = re.compile(r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]{8,300}")
_GOOGLE = re.compile(r"AIza[0-9A-Za-z_-]{35}")
_JWT = re.compile(r"eyJ(?<![A-Za-z0-9_-]eyJ)[A-Za-z0-9_-]{5,2000}\.[A-Za-z0-9_-]{2,16000}\.[A-Za-z0-9_-]{0,4000}")
_PEM_BEGIN = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
_PEM_END = re.compile(r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----")
_PEM_BODY = re.compile(r"(?:[ \t]*\r?\n[ \t]*[A-Za-z0-9+/=]{4,200})+")
_PEM_MAX = 65536
MEMO_ENTRIES = 4096  # texts per generation whose spans are remembered (by digest; see policies/memo.py)...
MEMO_MAX_SPANS = 16  # ... when they have at most this many
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_SPLIT_TOKEN = re.compile(r"[-_]")


def _prev_ok(text: str, start: int, chars: frozenset[str] = _TOKEN_CHARS) -> bool:
    return start == 0 or text[start - 1] not in chars


def _jwt_header_ok(segment: str) -> bool:
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        return False
    return isinstance(header, dict) and "alg" in header


# Every token-shaped secret contains a run of at least 20 characters from [A-Za-z0-9_/+=-].
_TOKEN_TABLE = bytes(0x74 if chr(c) in "Aa0_-/+=" else 0x20 for c in range(256))  # on the class string
_LONG_TOKEN = b"t" * 20


def _secrets(text: str, cls: bytes, out: list[_Cand]) -> None:
    if "PRIVATE KEY-----" in text:
        _pem(text, out)
    if _LONG_TOKEN not in cls.translate(_TOKEN_TABLE):
        return
    if "sk-" in text:
        for m in _OPENAI.finditer(text):
            body = m.group()[3:]
            if (
                _prev_ok(text, m.start())
                and _HAS_DIGIT.search(body)
                and any(c.isalpha() for c in body)
                and max(len(p) for p in _SPLIT_TOKEN.split(body)) >= 12
            ):
                out.append((m.start(), m.end(), "secret"))
    if "k_live_" in text or "k_test_" in text:
        for m in _STRIPE.finditer(text):
            start = m.start() - 1
            if start >= 0 and text[start] in "sr" and _prev_ok(text, start):
                out.append((start, m.end(), "secret"))
    if "AKIA" in text or "ASIA" in text:
        for m in _AWS_ID.finditer(text):
            e = m.end()
            if _prev_ok(text, m.start()) and (e == len(text) or not text[e].isalnum()):
                out.append((m.start(), e, "secret"))
    if "ecret" in text or "ECRET" in text:  # aws_secret_access_key = ..., SECRET_ACCESS_KEY: ..., secret_key=...
        lowered = text.encode("latin-1", "replace").lower()  # same offsets as text
        for label in _AWS_SECRET_LABEL.finditer(lowered):
            if b"access" not in label.group() and b"aws" not in lowered[max(0, label.start() - 4) : label.start()]:
                continue  # a bare "secret_key" is too generic
            value = _AWS_SECRET_VALUE.match(text, label.end())
            if value is not None:
                out.append((value.start(1), value.end(1), "secret"))
    if "_" in text:
        for rx in (_GITHUB, _GITHUB_PAT):
            out.extend((m.start(), m.end(), "secret") for m in rx.finditer(text) if _prev_ok(text, m.start()))
    if "xox" in text:
        for m in _SLACK.finditer(text):
            if _prev_ok(text, m.start()) and _HAS_DIGIT.search(m.group()):
                out.append((m.start(), m.end(), "secret"))
    if "hooks.slack.com" in text:
        out.extend((m.start(), m.end(), "secret") for m in _SLACK_HOOK.finditer(text))
    if "AIza" in text:
        out.extend((m.start(), m.end(), "secret") for m in _GOOGLE.finditer(text) if _prev_ok(text, m.start()))
    if "eyJ" in text:
        for m in _JWT.finditer(text):
            e = m.end()
            if e < len(text) and text[e] == "." and e + 1 < len(text) and text[e + 1] in _TOKEN_CHARS:
                continue  # a fourth segment: not a JWS
            if _jwt_header_ok(m.group().split(".", 1)[0]):
                out.append((m.start(), e, "secret"))


def _pem(text: str, out: list[_Cand]) -> None:
    consumed = 0
    end_match: re.Match[str] | None = None
    no_more_ends = False
    for b in _PEM_BEGIN.finditer(text):
        if b.start() < consumed:
            continue
        if not no_more_ends and (end_match is None or end_match.start() < b.end()):
            end_match = _PEM_END.search(text, b.end())
            no_more_ends = end_match is None
        if end_match is not None and end_match.start() >= b.end() and end_match.start() - b.end() <= _PEM_MAX:
            end = end_match.end()
        else:  # unterminated (truncated paste): the BEGIN line and the base64 lines after it
            body = _PEM_BODY.match(text, b.end())
            end = body.end() if body is not None else b.end()
        out.append((b.start(), end, "secret"))
        consumed = end


# -------------------------------------------------------------------------------------------- scanner


def _resolve(cands: list[_Cand]) -> list[PiiSpan]:
    """Sweep groups of mutually overlapping candidates; in each, keep the longest, then most specific."""
    cands.sort()
    spans: list[PiiSpan] = []
    group: list[_Cand] = []
    group_end = -1
    for cand in [*cands, (1 << 62, 1 << 62, "")]:  # sentinel flushes the last group
        if cand[0] < group_end:
            group.append(cand)
            group_end = max(group_end, cand[1])
            continue
        if len(group) == 1:
            spans.append(PiiSpan(group[0][2], group[0][0], group[0][1]))
        elif group:
            chosen: list[_Cand] = []
            for s, e, entity in sorted(group, key=lambda c: (c[0] - c[1], _RANK[c[2]], c[0])):
                if all(e <= cs or ce <= s for cs, ce, _ in chosen):
                    chosen.append((s, e, entity))
            spans.extend(PiiSpan(entity, s, e) for s, e, entity in sorted(chosen))
        group = [cand]
        group_end = cand[1]
    return spans


def _outside(cands: list[_Cand], masks: list[tuple[int, int]]) -> list[_Cand]:
    """Candidates that overlap none of the masks (both lists sorted by start, masks disjoint)."""
    kept: list[_Cand] = []
    k = 0
    for cand in sorted(cands):
        while k < len(masks) and masks[k][1] <= cand[0]:
            k += 1
        if k < len(masks) and masks[k][0] < cand[1]:
            continue
        kept.append(cand)
    return kept


# Character classes with offsets unchanged: ASCII digits -> "0", A-Z -> "A", a-z -> "a", anything outside
# Latin-1 -> "?". Patterns over this string start with a literal, which `re` finds far faster than a class.
_CLASSES = bytes.maketrans(
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", b"0" * 10 + b"A" * 26 + b"a" * 26
)
# A numeric cluster: starts at the first digit of a run, at least 7 characters of digits and separators.
_C_CLUSTER = re.compile(rb"0(?<!00)[0 ()./\xa0-]{6,}")


def _fold_table() -> dict[int, str]:
    """Characters written for ASCII ones in a value, one for one (offsets unchanged): every script's decimal
    digits, fullwidth letters, digits and the punctuation of addresses and numbers (a Japanese IME writes
    `０９０－１２３４－５６７８`), spaces that group digits (no-break, narrow, figure, thin, ideographic) and dashes."""
    table: dict[int, str] = {}
    for cp in range(0x80, 0x10000):
        category = unicodedata.category(chr(cp))
        if category == "Nd":
            table[cp] = str(unicodedata.digit(chr(cp)))
        elif category == "Zs":
            table[cp] = " "
    for ch in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz@.-+()_/:":
        table[ord(ch) + 0xFEE0] = ch  # its fullwidth form
    table.update(dict.fromkeys((0x2010, 0x2011, 0x2012, 0x2013, 0x2212, 0xFE63), "-"))
    return table


_FOLD = _fold_table()
# Folding is needed only when one of these occurs (checked with `in`, far faster than a character class; CJK text
# is full of fullwidth punctuation, which never needs folding): a digit other than ASCII (fullwidth, Arabic-Indic,
# Persian, Devanagari), a fullwidth @, hyphen or full stop, a space that groups digits, a dash.
_FOLD_TRIGGERS = (
    *(chr(cp) for first in (0xFF10, 0x0660, 0x06F0, 0x0966) for cp in range(first, first + 10)),
    *"\uff20\uff0d\uff0e\u00a0\u2007\u2009\u202f\u3000\u2010\u2011\u2012\u2013\u2212",
)


def _folded(text: str) -> str:
    """`text` with what `_FOLD` maps written as ASCII, offsets unchanged (spans found in it are the text's)."""
    if text.isascii() or not any(ch in text for ch in _FOLD_TRIGGERS):
        return text
    return text.translate(_FOLD)


class PiiScanner:
    """Detects the enabled entity types. Built once per tenant policy; `find` is thread-safe."""

    def __init__(self, entities: Iterable[str]) -> None:
        wanted = frozenset(entities)
        unknown = wanted - set(ENTITIES)
        if unknown:
            raise ValueError(f"unknown PII entities: {', '.join(sorted(unknown))}; known: {', '.join(ENTITIES)}")
        self.entities: tuple[str, ...] = tuple(e for e in ENTITIES if e in wanted)
        self._email = "email" in wanted
        self._phone = "phone" in wanted
        self._card = "credit_card" in wanted
        self._ssn = "ssn" in wanted
        self._iban = "iban" in wanted
        self._ip = "ip_address" in wanted
        self._secret = "secret" in wanted
        self._digits = self._phone or self._card or self._ssn or self._iban or self._ip
        self._memo: TextMemo[tuple[PiiSpan, ...]] = TextMemo(
            MEMO_ENTRIES, keep=lambda spans: len(spans) <= MEMO_MAX_SPANS
        )

    def _numeric(self, text: str, cls: bytes, cands: list[_Cand]) -> None:
        masks: list[tuple[int, int]] = []
        if self._iban or self._phone or self._card or self._ssn:
            _ibans(text, cls, cands if self._iban else None, masks)
        found: list[_Cand] = []
        mask_ends = [e for _, e in masks]
        for cluster in _C_CLUSTER.finditer(cls):
            start, end = cluster.span()
            if masks:
                k = bisect.bisect_right(mask_ends, start)
                if k < len(masks) and masks[k][0] <= start:
                    start = masks[k][1]  # skip the part inside an IBAN-shaped string
                    if end - start < 7:
                        continue
            if start > 0:
                p = text[start - 1]
                if _wordish(p) or (p in "-.,/:" and start > 1 and text[start - 2] in _DIGITS):
                    # glued to an identifier (UUID, hash, version): only a later space-separated part may count
                    start = cls.find(b" ", start, end) + 1
                    if not start:
                        continue
            digits = cls.count(b"0", start, end)
            if digits >= 9:
                if self._phone:
                    _phones(text, cls, start, end, found)
                if self._card or self._ssn:
                    _digit_chains(text, cls, start, end, self._card, self._ssn, found)
            if self._ip and digits >= 4 and cls.count(b".", start, end) >= 3:
                _ipv4(text, cls, start, end, cands)
        cands.extend(_outside(found, masks) if masks else found)

    def find(self, text: str) -> list[PiiSpan]:
        """Non-overlapping spans, sorted by start."""
        if not text:
            return []
        return list(self._memo.get(text, self._scan))

    def _scan(self, text: str) -> tuple[PiiSpan, ...]:
        text = _folded(text)
        cands: list[_Cand] = []
        if self._secret or self._digits:
            cls = text.encode("latin-1", "replace").translate(_CLASSES)  # one byte per character
            if self._secret:
                _secrets(text, cls, cands)
            if self._digits and cls.find(b"0") >= 0:  # (find: `in` on bytes raises and clears a TypeError)
                self._numeric(text, cls, cands)
        if self._email and "@" in text:
            _emails(text, cands)
        if self._ip and ":" in text:
            _ipv6(text, cands)
        return tuple(_resolve(cands))


# ------------------------------------------------------------------------------------------ redaction

_LABELS = {entity: entity.upper() for entity in ENTITIES}
_PLACEHOLDER = re.compile(r"\[(?:EMAIL|PHONE|CREDIT_CARD|SSN|IBAN|IP_ADDRESS|SECRET)_[0-9]+\]")
_CONTROL = re.compile(r"[\x00-\x1f]")


def _json_escaped(value: str) -> str:
    """`value` as it may sit inside a JSON string: control characters escaped. Nothing else: a value taken from
    JSON text (a tool call's arguments in the history) already holds its escapes (`\\n`), kept as they are."""
    return _CONTROL.sub(lambda m: json.dumps(m.group())[1:-1], value)


class Redaction:
    """One request's redaction state: the same value always gets the same placeholder in a request."""

    def __init__(self, scanner: PiiScanner) -> None:
        self._scanner = scanner
        self._by_value: dict[tuple[str, str], str] = {}  # (entity, value) -> placeholder
        self._by_literal: dict[str, str] = {}  # colliding literal placeholder -> its alias placeholder
        self._values: dict[str, str] = {}  # issued placeholder -> original text
        self._reserved: set[str] = set()  # placeholder-shaped literals seen in input, never issued
        self._next: dict[str, int] = {}
        self._counts: dict[str, int] = {}

    def _issue(self, label: str) -> str:
        n = self._next.get(label, 1)
        while True:
            placeholder = f"[{label}_{n}]"
            n += 1
            if placeholder not in self._reserved and placeholder not in self._values:
                self._next[label] = n
                return placeholder

    def _placeholder(self, entity: str, value: str) -> str:
        key = (entity, value)
        placeholder = self._by_value.get(key)
        if placeholder is None:
            placeholder = self._issue(_LABELS[entity])
            self._by_value[key] = placeholder
            self._values[placeholder] = value
            self._counts[entity] = self._counts.get(entity, 0) + 1
        return placeholder

    def _alias(self, literal: str) -> str:
        placeholder = self._by_literal.get(literal)
        if placeholder is None:
            placeholder = self._issue(literal[1 : literal.rindex("_")])
            self._by_literal[literal] = placeholder
            self._values[placeholder] = literal
        return placeholder

    def redact(self, text: str) -> str:
        replacements: list[tuple[int, int, str]] = []
        literals: list[tuple[int, int]] = []
        if "[" in text:
            for m in _PLACEHOLDER.finditer(text):
                literal = m.group()
                literals.append((m.start(), m.end()))
                if literal in self._values:  # collides with a placeholder issued earlier in this request
                    replacements.append((m.start(), m.end(), self._alias(literal)))
                else:
                    self._reserved.add(literal)
        spans = [(span.start, span.end, span.entity) for span in self._scanner.find(text)]
        for start, end, entity in _outside(spans, literals) if literals else spans:
            replacements.append((start, end, self._placeholder(entity, text[start:end])))
        if not replacements:
            return text
        replacements.sort()
        parts: list[str] = []
        pos = 0
        for start, end, placeholder in replacements:
            parts.append(text[pos:start])
            parts.append(placeholder)
            pos = end
        parts.append(text[pos:])
        return "".join(parts)

    def counts(self) -> dict[str, int]:
        """Entity type -> number of distinct values redacted in this request (never the values)."""
        return dict(self._counts)

    def restore(self, text: str, in_json: bool = False) -> str:
        """Placeholders issued by this request -> original values; anything else is left as is. `in_json`: `text`
        is JSON (a tool call's arguments), where a value sits inside a string: its control characters (a private
        key's line breaks) are written escaped, as raw ones would make the JSON invalid."""
        if not self._values or "[" not in text:
            return text
        values = self._values
        if in_json:
            return _PLACEHOLDER.sub(lambda m: _json_escaped(values.get(m.group(), m.group())), text)
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(), m.group()), text)

    def _prefixes(self) -> frozenset[str]:
        return frozenset(p[:i] for p in self._values for i in range(1, len(p)))

    def stream_restorer(self, in_json: bool = False) -> StreamRestorer:
        return StreamRestorer(self, in_json)


class StreamRestorer:
    """Restores placeholders in streamed text split at arbitrary chunk boundaries.

    Holds back only a suffix that is a proper prefix of a placeholder this request issued ("[EMA", "[EMAIL_"),
    so text without placeholders passes through with at most len(longest placeholder) - 1 characters delayed.
    """

    def __init__(self, redaction: Redaction, in_json: bool = False) -> None:
        self._redaction = redaction
        self._in_json = in_json
        self._held = ""
        self._prefixes: frozenset[str] = frozenset()
        self._known = -1

    def feed(self, delta: str) -> str:
        buffer = self._held + delta if self._held else delta
        self._held = ""
        cut = buffer.rfind("[")
        if cut != -1:
            issued = len(self._redaction._values)
            if issued != self._known:
                self._prefixes = self._redaction._prefixes()
                self._known = issued
            if buffer[cut:] in self._prefixes:
                self._held = buffer[cut:]
                buffer = buffer[:cut]
        return self._redaction.restore(buffer, self._in_json)

    def flush(self) -> str:
        held, self._held = self._held, ""
        return self._redaction.restore(held, self._in_json)
