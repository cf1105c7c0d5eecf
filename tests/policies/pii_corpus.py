"""A seeded, labelled PII corpus: valid values of every entity type in varied templates, plus look-alikes.

`corpus(seed, size)` returns `Sample(text, labels)` with labels `(entity, start, end)`; look-alikes that are
not PII (order numbers, UUIDs, dates, invalid-Luhn digit runs, invalid SSN ranges, IBANs with wrong check
digits, versions, timestamps, hashes, prices, ...) carry no labels. `span_scores` measures a scanner on it by
exact span match. Used by tests/policies/test_pii.py and by benchmark scripts.
"""

from __future__ import annotations

import base64
import json
import random
import string
import uuid
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

Label = tuple[str, int, int]


class Sample(NamedTuple):
    text: str
    labels: list[Label]


class _Span(Protocol):
    @property
    def entity(self) -> str: ...
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...


class Scanner(Protocol):
    def find(self, text: str) -> Sequence[_Span]: ...


# A generated value: text before the labelled part, the labelled part, text after; and whether the value
# needs a context word before it (bare phone digits need "call"/"tel", bare SSN digits need "SSN").
class Value(NamedTuple):
    before: str
    value: str
    after: str
    needs_context: bool = False


R = random.Random
ALNUM = string.ascii_letters + string.digits
UPPER_ALNUM = string.ascii_uppercase + string.digits
B64URL = ALNUM + "-_"


def _rand(rng: R, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _digits(rng: R, n: int) -> str:
    return _rand(rng, string.digits, n)


def _mixed(rng: R, alphabet: str, n: int) -> str:
    """Random token guaranteed to hold a digit and a letter (real keys always do)."""
    while True:
        token = _rand(rng, alphabet, n)
        if any(c.isdigit() for c in token) and any(c.isalpha() for c in token):
            return token


# ------------------------------------------------------------------------------------------------ values


def email(rng: R) -> Value:
    first = rng.choice(["john", "jane", "maria", "li", "ahmed", "olga", "pierre", "sofia", "kenji", "ana"])
    last = rng.choice(["doe", "smith", "garcia", "muller", "wang", "rossi", "dupont", "kowalski", "silva"])
    local = rng.choice(
        [
            f"{first}.{last}",
            f"{first}_{last}",
            f"{first[0]}{last}",
            f"{first}+{rng.choice(['news', 'work', 'spam'])}",
            f"{first}.{last}{rng.randint(1, 99)}",
            f"{first.capitalize()}.{last.capitalize()}",
            f"{last}-{first}",
        ]
    )
    domain = rng.choice(
        [
            "example.com",
            "mail.example.org",
            "company.co.uk",
            "uni-berlin.de",
            "firma.de",
            "correo.es",
            "posteo.fr",
            "web.it",
            "startup.io",
            "mailbox.net",
            "Example.COM",
            "sub.domain.example.travel",
        ]
    )
    return Value("", f"{local}@{domain}", "")


def _nanp(rng: R) -> tuple[str, str, str]:
    return str(rng.randint(201, 989)), str(rng.randint(200, 999)), _digits(rng, 4)


def phone(rng: R) -> Value:
    a, b, c = _nanp(rng)
    formats: list[tuple[str, bool]] = [
        (f"+44 (0)20 {_digits(rng, 4)} {_digits(rng, 4)}", False),
        (f"+353 1 {_digits(rng, 3)} {_digits(rng, 4)}", False),
        (f"+81 3-{_digits(rng, 4)}-{_digits(rng, 4)}", False),
        (f"+61 2 {_digits(rng, 4)} {_digits(rng, 4)}", False),
        (f"+91 9{_digits(rng, 4)} {_digits(rng, 5)}", False),
        (f"+86 138 {_digits(rng, 4)} {_digits(rng, 4)}", False),
        (f"+7 495 {_digits(rng, 3)}-{_digits(rng, 2)}-{_digits(rng, 2)}", False),
        (f"1 ({a}) {b}-{c}", False),
        (f"030 {_digits(rng, 8)}", False),
        (f"0171 {_digits(rng, 7)}", False),
        (f"+44 20 {_digits(rng, 4)} {_digits(rng, 4)}", False),
        (f"+44 7{_digits(rng, 3)} {_digits(rng, 6)}", False),
        (f"+1 ({a}) {b}-{c}", False),
        (f"+1 {a} {b} {c}", False),
        (f"+1-{a}-{b}-{c}", False),
        (f"+49 30 {_digits(rng, rng.choice([6, 7, 8]))}", False),
        (f"+49 (0)30 {_digits(rng, 7)}", False),
        (f"+33 {rng.randint(1, 7)} {_digits(rng, 2)} {_digits(rng, 2)} {_digits(rng, 2)} {_digits(rng, 2)}", False),
        (f"+34 6{_digits(rng, 2)} {_digits(rng, 3)} {_digits(rng, 3)}", False),
        (f"+39 06 {_digits(rng, 4)} {_digits(rng, 4)}", False),
        (f"+31 20 {_digits(rng, 3)} {_digits(rng, 4)}", False),
        (f"+1{a}{b}{c}", False),
        (f"0044 20 {_digits(rng, 4)} {_digits(rng, 4)}", False),
        (f"({a}) {b}-{c}", False),
        (f"{a}-{b}-{c}", False),
        (f"{a}.{b}.{c}", False),
        (f"{a} {b} {c}", False),
        (f"1-800-{b}-{c}", False),
        (f"020 {_digits(rng, 4)} {_digits(rng, 4)}", False),
        (f"06 {_digits(rng, 2)} {_digits(rng, 2)} {_digits(rng, 2)} {_digits(rng, 2)}", False),
        (f"{a}{b}{c}", True),
        (f"06{_digits(rng, 8)}", True),
    ]
    text, needs = rng.choice(formats)
    return Value("", text, "", needs)


def luhn_complete(partial: str) -> str:
    """Append the Luhn check digit."""
    total = 0
    for i, ch in enumerate(reversed(partial)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return partial + str((10 - total % 10) % 10)


def luhn_valid(digits: str) -> bool:
    return luhn_complete(digits[:-1]) == digits


CARD_BRANDS: list[tuple[Callable[[R], str], int]] = [
    (lambda r: "4", 16),
    (lambda r: "4", 13),
    (lambda r: "4", 19),
    (lambda r: str(r.randint(51, 55)), 16),
    (lambda r: str(r.randint(2221, 2720)), 16),
    (lambda r: r.choice(["34", "37"]), 15),
    (lambda r: r.choice(["6011", "65", str(r.randint(644, 649))]), 16),
    (lambda r: str(r.randint(3528, 3589)), 16),
    (lambda r: r.choice(["36", "38", str(r.randint(300, 305))]), 14),
    (lambda r: "62", 16),
]


def card_number(rng: R) -> str:
    prefix_of, length = rng.choice(CARD_BRANDS)
    prefix = prefix_of(rng)
    return luhn_complete(prefix + _digits(rng, length - len(prefix) - 1))


def _group(digits: str, sizes: Sequence[int], sep: str) -> str:
    parts, pos = [], 0
    for size in sizes:
        parts.append(digits[pos : pos + size])
        pos += size
    return sep.join(parts)


def format_card(rng: R, digits: str) -> str:
    n = len(digits)
    style = rng.randrange(3)
    if style == 0:
        return digits
    sep = " " if style == 1 else "-"
    if n == 15:
        return _group(digits, (4, 6, 5), sep)
    if n == 14:
        return _group(digits, (4, 6, 4), sep)
    return _group(digits, [4] * (n // 4) + ([n % 4] if n % 4 else []), sep)


def credit_card(rng: R) -> Value:
    return Value("", format_card(rng, card_number(rng)), "")


def ssn_parts(rng: R) -> tuple[str, str, str]:
    while True:
        area = rng.randint(1, 899)
        if area != 666:
            return f"{area:03d}", f"{rng.randint(1, 99):02d}", f"{rng.randint(1, 9999):04d}"


def ssn(rng: R) -> Value:
    a, g, s = ssn_parts(rng)
    style = rng.randrange(4)
    if style == 3:
        return Value("", f"{a}{g}{s}", "", True)
    sep = " " if style == 2 else "-"
    return Value("", f"{a}{sep}{g}{sep}{s}", "")


# BBAN layouts: n = digit, a = upper-case letter, c = letter or digit.
IBAN_LAYOUTS = {
    "DE": "n" * 18,
    "GB": "aaaa" + "n" * 14,
    "FR": "n" * 10 + "c" * 11 + "nn",
    "ES": "n" * 20,
    "IT": "a" + "n" * 10 + "c" * 12,
    "NL": "aaaa" + "n" * 10,
    "BE": "n" * 12,
    "AT": "n" * 16,
    "CH": "n" * 5 + "c" * 12,
    "PL": "n" * 24,
    "PT": "n" * 21,
    "IE": "aaaa" + "n" * 14,
    "SE": "n" * 20,
    "DK": "n" * 14,
    "NO": "n" * 11,
    "FI": "n" * 14,
    "LU": "nnn" + "c" * 13,
}


def iban_check_digits(country: str, bban: str) -> str:
    rearranged = bban + country + "00"
    number = int("".join(str(int(ch, 36)) for ch in rearranged))
    return f"{98 - number % 97:02d}"


def iban_compact(rng: R) -> str:
    country = rng.choice(sorted(IBAN_LAYOUTS))
    alphabet = {"n": string.digits, "a": string.ascii_uppercase, "c": UPPER_ALNUM}
    bban = "".join(rng.choice(alphabet[k]) for k in IBAN_LAYOUTS[country])
    return country + iban_check_digits(country, bban) + bban


def format_iban(rng: R, compact: str) -> str:
    if rng.random() < 0.4:
        return compact
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


def iban(rng: R) -> Value:
    return Value("", format_iban(rng, iban_compact(rng)), "")


def ipv4(rng: R) -> str:
    first = rng.choice([10, 172, 192, 203, 8, 34, 52, rng.randint(1, 223)])
    return ".".join(str(x) for x in (first, rng.randint(0, 255), rng.randint(0, 255), rng.randint(1, 254)))


def ipv6(rng: R) -> str:
    import ipaddress

    head = rng.choice(["2001:db8", "fe80:0", "2a00:1450", "2607:f8b0", "2001:0db8"])
    groups = head.split(":")
    while len(groups) < 8:
        groups.append(rng.choice(["0", "0", f"{rng.randint(0, 0xFFFF):x}", f"{rng.randint(0, 0xFFFF):04x}"]))
    address = ipaddress.IPv6Address(":".join(groups))
    return address.exploded if rng.random() < 0.3 else address.compressed


def ip_address(rng: R) -> Value:
    return Value("", ipv4(rng) if rng.random() < 0.6 else ipv6(rng), "")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(rng: R, header: dict[str, str] | None = None) -> str:
    header = header or rng.choice(
        [{"alg": "HS256", "typ": "JWT"}, {"alg": "RS256", "typ": "JWT", "kid": _rand(rng, ALNUM, 8)}, {"alg": "ES256"}]
    )
    payload = {
        "sub": _digits(rng, 10),
        "name": rng.choice(["Jane Doe", "John Roe"]),
        "iat": rng.randint(10**9, 2 * 10**9),
    }
    signature = _rand(rng, B64URL, rng.choice([43, 86]))
    return f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(payload).encode())}.{signature}"


def pem(rng: R) -> str:
    label = rng.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"])
    alphabet = ALNUM + "+/"
    lines = [_rand(rng, alphabet, 64) for _ in range(rng.randint(3, 8))] + [_rand(rng, alphabet, 20) + "=="]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----"


def secret(rng: R) -> Value:
    kind = rng.randrange(14)
    if kind == 0:
        return Value("", "sk-" + _mixed(rng, ALNUM, 48), "")
    if kind == 1:
        return Value("", "sk-proj-" + _mixed(rng, ALNUM, 40) + "-" + _mixed(rng, B64URL, 60), "")
    if kind == 2:
        return Value("", "sk-ant-api03-" + _mixed(rng, ALNUM, 50) + "_" + _mixed(rng, B64URL, 43) + "AA", "")
    if kind == 3:
        return Value("", rng.choice(["AKIA", "ASIA"]) + _rand(rng, string.ascii_uppercase + "234567", 16), "")
    if kind == 4:
        before = rng.choice(
            ["aws_secret_access_key = ", "AWS_SECRET_ACCESS_KEY=", '"aws_secret_access_key": "', "secret_access_key: "]
        )
        after = '"' if before.endswith('"') else ""
        return Value(before, _mixed(rng, ALNUM + "/+", 40), after)
    if kind == 5:
        return Value("", rng.choice(["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]) + _mixed(rng, ALNUM, 36), "")
    if kind == 6:
        return Value("", "github_pat_" + _mixed(rng, ALNUM, 22) + "_" + _mixed(rng, ALNUM, 59), "")
    if kind == 7:
        prefix = rng.choice(["xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-"])
        return Value("", prefix + f"{_digits(rng, 12)}-{_digits(rng, 13)}-{_mixed(rng, ALNUM, 24)}", "")
    if kind == 8:
        return Value(
            "",
            f"https://hooks.slack.com/services/T{_rand(rng, UPPER_ALNUM, 8)}/B{_rand(rng, UPPER_ALNUM, 10)}/"
            + _mixed(rng, ALNUM, 24),
            "",
        )
    if kind in (9, 10):
        return Value("", jwt(rng), "")
    if kind == 11:
        return Value("", pem(rng), "")
    if kind == 12:
        return Value("", "AIza" + _mixed(rng, B64URL, 35), "")
    return Value("", rng.choice(["sk_live_", "rk_live_", "sk_test_"]) + _mixed(rng, ALNUM, 24), "")


GENERATORS: dict[str, Callable[[R], Value]] = {
    "email": email,
    "phone": phone,
    "credit_card": credit_card,
    "ssn": ssn,
    "iban": iban,
    "ip_address": ip_address,
    "secret": secret,
}

# --------------------------------------------------------------------------------------------- templates

# Neutral sentences: no phone/SSN context words and no identifier words ("order", "id") before the slot.
GENERIC_TEMPLATES = [
    "Please get in touch via {v}.",
    "My details: {v}",
    "{v} is the one I gave you last week.",
    "Forwarding from {v}; see the thread below.",
    "Here it is: {v}",
    "Can you update the record to {v}?",
    'The customer wrote: "{v}"',
    "Noted ({v}) in the CRM.",
    "user={v} action=login result=ok",
    '{"field": "{v}", "verified": true}',
    "- {v}\n- (second entry removed)",
    "Hi team,\n\nPlease use {v} from now on.\n\nThanks,\nSam",
    "<td>{v}</td>",
    "Updated: {v}; the previous value was removed.",
    "Can you check whether {v} appears in the export?",
    "I think it was {v}, but I'm not sure.",
    "Value: {v}\nStatus: pending",
    "Please keep {v} confidential.",
    "| name | value |\n|---|---|\n| Jane | {v} |",
    "Copy this exactly -> {v} <- and paste it in the form",
    "Bitte verwenden Sie ab sofort {v}.",
    "Meine Angaben lauten: {v}",
    "Hier ist der Wert: {v} – danke!",
    "Voici mes coordonnées : {v}.",
    "Merci d'utiliser {v} à partir de demain.",
    "Pouvez-vous vérifier « {v} » ?",
    "Mis datos son: {v}.",
    "¿Puedes confirmar {v} antes del viernes?",
    "I miei dati: {v}, grazie.",
    "Mijn gegevens zijn {v}.",
    "Os meus dados: {v}.",
    "Moje dane: {v}.",
    "Мои данные: {v}.",
    "連絡先： {v} 。",
]

SPECIFIC_TEMPLATES: dict[str, list[str]] = {
    "email": [
        "Email me at {v}",
        "E-Mail: {v}",
        "Courriel : {v}",
        "Send the invoice to {v} please.",
        "mailto:{v}",
        "From: Jane <{v}>",
    ],
    "phone": [
        "Call me at {v}.",
        "Tel: {v}",
        "Phone: {v}",
        "Mobile: {v}",
        "Telefon: {v}",
        "Téléphone : {v}",
        "Mi teléfono es {v}",
        "WhatsApp {v}",
        "You can text me on {v} anytime.",
        "Fax {v}",
        "Tel.: {v} (office)",
        "Cell {v}, evenings only",
    ],
    "credit_card": [
        "Card number {v}, exp 12/27.",
        "Please charge {v}.",
        "Kartennummer: {v}",
        "Numéro de carte : {v}",
        "Tarjeta {v}",
        "cc={v}",
    ],
    "ssn": [
        "SSN: {v}",
        "My social security number is {v}.",
        "ssn={v}",
        "SSN {v} (primary applicant)",
    ],
    "iban": [
        "IBAN: {v}",
        "Überweisung an {v} (Sparkasse)",
        "Virement sur le compte {v}.",
        "Pay to IBAN {v} by Friday.",
        "Cuenta: {v}",
    ],
    "ip_address": [
        "Server at {v} is down.",
        "Connection from {v} refused",
        "ssh root@{v}",
        "ping {v}",
        "Client IP: {v}",
        "allow {v} in the firewall",
        "curl -k https://[{v}]:8443/health",
        "Host {v} (primary)",
    ],
    "secret": [
        "export OPENAI_API_KEY={v}",
        "Authorization: Bearer {v}",
        "token: {v}",
        'api_key = "{v}"',
        "Here is the key:\n{v}\nThanks",
        "SLACK_WEBHOOK={v}",
    ],
}


def _fill(template: str, v: Value, entity: str) -> Sample:
    head, tail = template.split("{v}")
    start = len(head) + len(v.before)
    text = head + v.before + v.value + v.after + tail
    return Sample(text, [(entity, start, start + len(v.value))])


def positive(rng: R, entity: str | None = None) -> Sample:
    entity = entity or rng.choice(sorted(GENERATORS))
    v = GENERATORS[entity](rng)
    if v.needs_context or v.before or rng.random() < 0.4:
        template = rng.choice(SPECIFIC_TEMPLATES[entity])
    else:
        template = rng.choice(GENERIC_TEMPLATES)
    return _fill(template, v, entity)


# ------------------------------------------------------------------------------------------- look-alikes


def _invalid_luhn(rng: R) -> str:
    digits = card_number(rng)
    return digits[:-1] + str((int(digits[-1]) + rng.randint(1, 9)) % 10)


def _invalid_ssn(rng: R) -> str:
    a, g, s = ssn_parts(rng)
    broken = rng.randrange(5)
    if broken == 0:
        a = "000"
    elif broken == 1:
        a = "666"
    elif broken == 2:
        a = str(rng.randint(900, 999))
    elif broken == 3:
        g = "00"
    else:
        s = "0000"
    return f"{a}-{g}-{s}"


def _wrong_iban(rng: R) -> str:
    compact = iban_compact(rng)
    check = int(compact[2:4])
    wrong = f"{(check + rng.randint(1, 96)) % 97 + 2:02d}"
    if wrong == compact[2:4]:
        wrong = f"{(check + 1) % 97 + 2:02d}"
    return format_iban(rng, compact[:2] + wrong + compact[4:])


def _date(rng: R) -> str:
    y, m, d = rng.randint(1990, 2030), rng.randint(1, 12), rng.randint(1, 28)
    return rng.choice([f"{y}-{m:02d}-{d:02d}", f"{d:02d}/{m:02d}/{y}", f"{d:02d}.{m:02d}.{y}", f"{m:02d}/{d:02d}/{y}"])


def _time(rng: R) -> str:
    return f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"


def _version(rng: R) -> str:
    return rng.choice(
        [
            f"v{rng.randint(0, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 99)}",
            f"{rng.randint(1, 20)}.{rng.randint(0, 9)}.{rng.randint(10, 99)}",
            f"{rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}",
            f"{rng.randint(1, 4)}.{rng.randint(0, 12)}.{rng.randint(0, 9)}-beta",
        ]
    )


def _price(rng: R) -> str:
    return rng.choice(
        [
            f"${rng.randint(1, 9)},{rng.randint(100, 999)}.{rng.randint(10, 99)}",
            f"€{rng.randint(1, 99)}.{rng.randint(100, 999)},00",
            f"USD {rng.randint(10, 99)},{rng.randint(100, 999)}.{rng.randint(10, 99)}",
            f"£ {rng.randint(5, 999)}",
            f"{rng.randint(1, 9)} {rng.randint(100, 999)} {rng.randint(100, 999)} €",
        ]
    )


def _hex(rng: R, n: int) -> str:
    return _rand(rng, "0123456789abcdef", n)


def _valid_luhn_unknown_prefix(rng: R) -> str:
    return luhn_complete(rng.choice("1789") + _digits(rng, 14))


LOOKALIKES: list[Callable[[R], str]] = [
    lambda r: f"Order #{_digits(r, r.randint(6, 10))} has shipped.",
    lambda r: f"Invoice {r.randint(1, 9)}{_digits(r, 9)} is overdue.",
    lambda r: "Ticket ID {}-{}-{} was closed.".format(*_nanp(r)),
    lambda r: "Your order number is {}-{}-{}.".format(*_nanp(r)),
    lambda r: f"Tracking number: 1Z{_rand(r, UPPER_ALNUM, 6)}{_digits(r, 10)}",
    lambda r: f"Ref: 020 {_digits(r, 4)} {_digits(r, 4)}",
    lambda r: f"Request {uuid.UUID(int=r.getrandbits(128), version=4)} failed with status 502.",
    lambda r: f"Released on {_date(r)} after review.",
    lambda r: f"The job ran at {_time(r)} and took {r.randint(2, 59)} s.",
    lambda r: f"Timestamp {_date(r).replace('/', '-')}T{_time(r)}Z",
    lambda r: f"created_at={r.randint(1_500_000_000, 1_800_000_000)}",
    lambda r: f"epoch_ms {r.randint(1_500_000_000_000, 1_800_000_000_000)}",
    lambda r: f"Test number {format_card(r, _invalid_luhn(r))} is rejected.",
    lambda r: f"Loyalty number {_group(_valid_luhn_unknown_prefix(r), (4, 4, 4, 3), ' ')} printed on the card.",
    lambda r: f"SSN {_invalid_ssn(r)} is not a valid number.",
    lambda r: f"IBAN {_wrong_iban(r)} failed the checksum.",
    lambda r: f"Upgrade to {_version(r)} before Friday.",
    lambda r: f"Python {r.randint(2, 3)}.{r.randint(6, 13)}.{r.randint(0, 12)} is installed.",
    lambda r: f"commit {_hex(r, 40)}",
    lambda r: f"Fixed in {_hex(r, 7)}.",
    lambda r: f"sha256:{_hex(r, 64)}",
    lambda r: f"Use color #{_hex(r, 6)} for the header.",
    lambda r: f"The total is {_price(r)} including VAT.",
    lambda r: "ISBN 978-3-16-148410-0 and ISBN 0-306-40615-2",
    lambda r: f"Bad address {r.randint(256, 999)}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(0, 255)}",
    lambda r: "Use std::vector<int> and a[::2]; the :: operator.",
    lambda r: "MAC " + ":".join(_rand(r, "0123456789ABCDEF", 2) for _ in range(6)),
    lambda r: "Write to user@localhost or use icon@2x.png, ping @jane_doe.",
    lambda r: "name at example dot com",
    lambda r: "Our key sk-test-acme-0001 is a fake; so is ghp_short and AKIA1234.",
    lambda r: "header " + jwt(r, {"nota": "jwt"}),
    lambda r: f"call ext. {r.randint(100, 999)}-{r.randint(1000, 9999)}",
    lambda r: f"Population 1 {r.randint(100, 999)} {r.randint(100, 999)} in {r.randint(1990, 2020)}.",
    lambda r: f"Coordinates {r.uniform(-90, 90):.4f}, {r.uniform(-180, 180):.4f}",
    lambda r: f"Resolution {r.choice(['1920x1080', '2560x1440'])}, ratio 16:9, score {r.randint(50, 99)}.5%",
    lambda r: f"Years {r.randint(1990, 1999)} {r.randint(2000, 2009)} {r.randint(2010, 2019)} {r.randint(2020, 2029)}",
    lambda r: f"Room {r.randint(1, 40)}, floor {r.randint(1, 9)}, desk {r.randint(100, 999)}.",
    lambda r: f"Account {_digits(r, 10)} was merged into account {_digits(r, 10)}.",
    lambda r: "Order ref 1-800-{}-{} is pending.".format(*_nanp(r)[1:]),
    lambda r: f"Invoice no. 020 {_digits(r, 4)} {_digits(r, 4)}",
    lambda r: "PO {}{}{} approved".format(*_nanp(r)),
    lambda r: f"Kundennummer 030{_digits(r, 7)}",
    lambda r: f"ZIP {_digits(r, 5)}-{_digits(r, 4)}",
    lambda r: f"Serial: {format_card(r, _invalid_luhn(r))}",
    lambda r: f"Tel. 555-{_digits(r, 4)} (internal)",
    lambda r: f"Batch {_digits(r, 3)}-{_digits(r, 3)}-{_digits(r, 4)} passed QA.",
    lambda r: f"Build {r.randint(1, 9)}.{r.randint(0, 9)}.{r.randint(100, 999)}.{r.randint(1000, 9999)} is out",
]


def lookalike(rng: R) -> Sample:
    return Sample(rng.choice(LOOKALIKES)(rng), [])


def _join(rng: R, parts: list[Sample]) -> Sample:
    text, labels = "", []
    for i, part in enumerate(parts):
        if i:
            text += rng.choice([" ", "\n", "\n\n", " Also, "])
        labels.extend((entity, start + len(text), end + len(text)) for entity, start, end in part.labels)
        text += part.text
    return Sample(text, labels)


def corpus(seed: int = 7, size: int = 2000) -> list[Sample]:
    """`size` samples: ~55 % one value, ~25 % values mixed with look-alikes or other values, ~20 % look-alikes."""
    rng = random.Random(seed)
    entities = sorted(GENERATORS)
    samples: list[Sample] = []
    for i in range(size):
        r = rng.random()
        if r < 0.55:
            samples.append(positive(rng, entities[i % len(entities)]))
        elif r < 0.70:
            parts = [positive(rng), lookalike(rng)]
            rng.shuffle(parts)
            samples.append(_join(rng, parts))
        elif r < 0.80:
            samples.append(_join(rng, [positive(rng) for _ in range(rng.randint(2, 3))]))
        else:
            samples.append(_join(rng, [lookalike(rng) for _ in range(rng.randint(1, 2))]))
    return samples


# ------------------------------------------------------------------------------------------------ scoring


def span_errors(
    scanner: Scanner, samples: Sequence[Sample]
) -> tuple[int, list[tuple[str, Label]], list[tuple[str, Label]]]:
    """(true positives, misses, false hits), exact match on entity and offsets."""
    hits = 0
    misses: list[tuple[str, Label]] = []
    false_hits: list[tuple[str, Label]] = []
    for text, labels in samples:
        found = {(s.entity, s.start, s.end) for s in scanner.find(text)}
        gold = set(labels)
        hits += len(found & gold)
        misses.extend((text, label) for label in sorted(gold - found))
        false_hits.extend((text, label) for label in sorted(found - gold))
    return hits, misses, false_hits


def span_scores(scanner: Scanner, samples: Sequence[Sample]) -> tuple[float, float]:
    """(recall, precision) on exact span match."""
    hits, misses, false_hits = span_errors(scanner, samples)
    recall = hits / (hits + len(misses)) if hits + len(misses) else 1.0
    precision = hits / (hits + len(false_hits)) if hits + len(false_hits) else 1.0
    return recall, precision
