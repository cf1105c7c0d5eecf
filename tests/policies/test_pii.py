"""PII detection, per-request redaction and (streamed) restore: policies/pii.py."""

from __future__ import annotations

import base64
import itertools
import json
import random
import string

import pytest

from policies.pii import ENTITIES, PiiScanner, Redaction
from tests.policies.pii_corpus import corpus, jwt, pem, span_errors, span_scores

ALL = PiiScanner(ENTITIES)
RNG_SEED = 20240115


def found(text: str, scanner: PiiScanner = ALL) -> list[tuple[str, str]]:
    return [(span.entity, span.value(text)) for span in scanner.find(text)]


# ------------------------------------------------------------------------------------------------ corpus


def test_corpus_recall_and_precision() -> None:
    samples = corpus()
    assert len(samples) >= 2000
    hits, misses, false_hits = span_errors(ALL, samples)
    recall, precision = span_scores(ALL, samples)
    print(f"\nPII corpus: {len(samples)} samples, {hits} spans found, recall={recall:.4f} precision={precision:.4f}")
    detail = "\n".join(
        [f"MISS  {label} {text[label[1] : label[2]]!r} in {text[:160]!r}" for text, label in misses[:10]]
        + [f"FALSE {label} {text[label[1] : label[2]]!r} in {text[:160]!r}" for text, label in false_hits[:10]]
    )
    assert recall >= 0.98, detail
    assert precision >= 0.98, detail


def test_corpus_is_seeded_labelled_and_covers_every_entity() -> None:
    assert corpus(7, 60) == corpus(7, 60)
    assert corpus(7, 60) != corpus(8, 60)
    samples = corpus()
    assert {entity for _, labels in samples for entity, _, _ in labels} == set(ENTITIES)
    assert sum(1 for _, labels in samples if not labels) >= 300  # look-alikes only
    for text, labels in samples:
        for _, start, end in labels:
            assert 0 <= start < end <= len(text)


# ------------------------------------------------------------------------------------------ entity tables

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
JWT = jwt(random.Random(1))
PEM = pem(random.Random(2))

POSITIVES = [
    # email
    ("email", "Mail john.doe@example.com today", "john.doe@example.com"),
    ("email", "Jane <Jane.Doe+news@mail.example.co.uk>", "Jane.Doe+news@mail.example.co.uk"),
    ("email", "mailto:o_k-1%x@sub.domain.travel", "o_k-1%x@sub.domain.travel"),
    ("email", "Email: JOHN@EXAMPLE.COM, thanks", "JOHN@EXAMPLE.COM"),
    ("email", "(support@uni-berlin.de).", "support@uni-berlin.de"),
    # phone: every format of the brief
    ("phone", "Call +44 20 7946 0958 now", "+44 20 7946 0958"),
    ("phone", "Call +1 (415) 555-0132.", "+1 (415) 555-0132"),
    ("phone", "Büro: +49 30 901820", "+49 30 901820"),
    ("phone", "Ring 0044 20 7946 0958 please", "0044 20 7946 0958"),
    ("phone", "at (415) 555-0132 today", "(415) 555-0132"),
    ("phone", "at 415-555-0132 today", "415-555-0132"),
    ("phone", "at 415.555.0132 today", "415.555.0132"),
    ("phone", "reach me on +14155550132", "+14155550132"),
    ("phone", "call 4155550132 after five", "4155550132"),
    ("phone", "Tel: 020 7946 0958", "020 7946 0958"),
    ("phone", "Mobile: 0171 2345678", "0171 2345678"),
    ("phone", "Appelez le 06 12 34 56 78 svp", "06 12 34 56 78"),
    ("phone", "toll free 1-800-555-0199", "1-800-555-0199"),
    ("phone", "UK +44 (0)20 7946 0958", "+44 (0)20 7946 0958"),
    ("phone", "FR +33 6 12 34 56 78", "+33 6 12 34 56 78"),
    ("phone", "Re order 1234: +1 415 555 0132", "+1 415 555 0132"),  # identifier context, but formatted with +
    ("phone", "ticket (415) 555-0132", "(415) 555-0132"),  # ... or with parentheses
    # credit card
    ("credit_card", "card 4111 1111 1111 1111 exp 12/27", "4111 1111 1111 1111"),
    ("credit_card", "card 4111-1111-1111-1111", "4111-1111-1111-1111"),
    ("credit_card", "card 4111111111111111.", "4111111111111111"),
    ("credit_card", "MC 5555 5555 5555 4444", "5555 5555 5555 4444"),
    ("credit_card", "MC 2223 0031 2200 3222", "2223 0031 2200 3222"),
    ("credit_card", "Amex 3782 822463 10005", "3782 822463 10005"),
    ("credit_card", "Amex 371449635398431", "371449635398431"),
    ("credit_card", "Discover 6011 1111 1111 1117", "6011 1111 1111 1117"),
    ("credit_card", "JCB 3530 1113 3330 0000", "3530 1113 3330 0000"),
    ("credit_card", "Diners 3056 930902 5904", "3056 930902 5904"),
    ("credit_card", "old Visa 4222222222222", "4222222222222"),
    ("credit_card", "Qty 2 4111 1111 1111 1111", "4111 1111 1111 1111"),
    # SSN
    ("ssn", "SSN 123-45-6789", "123-45-6789"),
    ("ssn", "number 219-09-9999 on file", "219-09-9999"),
    ("ssn", "SSN: 123 45 6789", "123 45 6789"),
    ("ssn", "ssn=123456789", "123456789"),
    ("ssn", "My social security number is 078051120.", "078051120"),
    # IBAN
    ("iban", "IBAN DE89 3704 0044 0532 0130 00.", "DE89 3704 0044 0532 0130 00"),
    ("iban", "IBAN DE89370400440532013000", "DE89370400440532013000"),
    ("iban", "to GB82 WEST 1234 5698 7654 32 please", "GB82 WEST 1234 5698 7654 32"),
    ("iban", "GB82WEST12345698765432", "GB82WEST12345698765432"),
    ("iban", "FR14 2004 1010 0505 0001 3M02 606", "FR14 2004 1010 0505 0001 3M02 606"),
    ("iban", "NL91 ABNA 0417 1643 00", "NL91 ABNA 0417 1643 00"),
    ("iban", "ES91 2100 0418 4502 0005 1332", "ES91 2100 0418 4502 0005 1332"),
    ("iban", "IT60 X054 2811 1010 0000 0123 456", "IT60 X054 2811 1010 0000 0123 456"),
    ("iban", "BE68 5390 0754 7034", "BE68 5390 0754 7034"),
    ("iban", "CH93 0076 2011 6238 5295 7", "CH93 0076 2011 6238 5295 7"),
    ("iban", "AT61 1904 3002 3457 3201", "AT61 1904 3002 3457 3201"),
    ("iban", "PL61 1090 1014 0000 0712 1981 2874", "PL61 1090 1014 0000 0712 1981 2874"),
    ("iban", "NO93 8601 1117 947", "NO93 8601 1117 947"),
    # IP
    ("ip_address", "host 192.168.1.1 is up", "192.168.1.1"),
    ("ip_address", "from 10.0.0.1.", "10.0.0.1"),
    ("ip_address", "dns 8.8.8.8, 255.255.255.255", "8.8.8.8"),
    ("ip_address", "1.2.3.4 is an address", "1.2.3.4"),
    ("ip_address", "v6 2001:0db8:85a3:0000:0000:8a2e:0370:7334 ok", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
    ("ip_address", "v6 2001:db8:85a3::8a2e:370:7334", "2001:db8:85a3::8a2e:370:7334"),
    ("ip_address", "link fe80::1ff:fe23:4567:890a", "fe80::1ff:fe23:4567:890a"),
    ("ip_address", "mapped ::ffff:192.0.2.128", "::ffff:192.0.2.128"),
    ("ip_address", "curl https://[2001:db8::1]:8443/", "2001:db8::1"),
    ("ip_address", "ssh root@203.0.113.7", "203.0.113.7"),
    # secrets
    ("secret", "key sk-" + "Ab3" * 16, "sk-" + "Ab3" * 16),
    ("secret", "OPENAI_API_KEY=sk-proj-" + "x7Y" * 20 + "-_" + "Qz9" * 10, "sk-proj-" + "x7Y" * 20 + "-_" + "Qz9" * 10),
    ("secret", "sk-ant-api03-" + "Kd8" * 30 + "AA", "sk-ant-api03-" + "Kd8" * 30 + "AA"),
    ("secret", "id AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
    ("secret", "ASIAY34FZKBOKMUTVV7A,", "ASIAY34FZKBOKMUTVV7A"),
    ("secret", f"aws_secret_access_key = {AWS_SECRET}", AWS_SECRET),
    ("secret", f'"aws_secret_access_key": "{AWS_SECRET}"', AWS_SECRET),
    ("secret", f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}", AWS_SECRET),
    ("secret", "ghp_" + "a1B2c3" * 6, "ghp_" + "a1B2c3" * 6),
    ("secret", "gho_" + "Z9y8X7" * 6, "gho_" + "Z9y8X7" * 6),
    ("secret", "ghu_" + "Z9y8X7" * 6, "ghu_" + "Z9y8X7" * 6),
    ("secret", "ghs_" + "Z9y8X7" * 6, "ghs_" + "Z9y8X7" * 6),
    ("secret", "ghr_" + "Z9y8X7" * 6, "ghr_" + "Z9y8X7" * 6),
    ("secret", "github_pat_11ABCDEFG0123456789abc_" + "Xy7" * 20, "github_pat_11ABCDEFG0123456789abc_" + "Xy7" * 20),
    ("secret", "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", None),
    ("secret", "xoxp-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", None),
    ("secret", "xoxa-2-123456789012-AbCdEfGhIjKl", None),
    ("secret", "xoxr-123456789012-AbCdEfGhIjKl", None),
    ("secret", "xoxs-123456789012-AbCdEfGhIjKl", None),
    (
        "secret",
        "hook https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX.",
        "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    ),
    ("secret", f"Authorization: Bearer {JWT}", JWT),
    ("secret", f"key:\n{PEM}\nthanks", PEM),
    ("secret", "AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW", "AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW"),
    ("secret", "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc", "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"),
]

UNICODE_FORMS = [  # values written with characters other than ASCII's, and values in text with no spaces
    ("phone", "お問い合わせは０９０－１２３４－５６７８まで。", "０９０－１２３４－５６７８"),  # a Japanese IME's
    ("phone", "お問い合わせは090-1234-5678まで", "090-1234-5678"),
    ("phone", "call 415\u2013555\u20130132 today", "415\u2013555\u20130132"),  # en dashes
    ("credit_card", "カードは４１１１　１１１１　１１１１　１１１１です", "４１１１　１１１１　１１１１　１１１１"),
    ("credit_card", "卡号4111111111111111。", "4111111111111111"),
    ("credit_card", "카드번호4111 1111 1111 1111입니다", "4111 1111 1111 1111"),
    ("credit_card", "card 4111\u00a01111\u00a01111\u00a01111", "4111\u00a01111\u00a01111\u00a01111"),  # no-break
    ("credit_card", "carte 4111\u202f1111\u202f1111\u202f1111", "4111\u202f1111\u202f1111\u202f1111"),  # narrow
    ("credit_card", "بطاقة ٤١١١١١١١١١١١١١١١", "٤١١١١١١١١١١١١١١١"),  # Arabic-Indic digits
    ("email", "メールはjane@example.comまで", "jane@example.com"),
    ("email", "mail ｊａｎｅ＠ｅｘａｍｐｌｅ．ｃｏｍ", "ｊａｎｅ＠ｅｘａｍｐｌｅ．ｃｏｍ"),
    ("email", "mail jane.doe＠example.com", "jane.doe＠example.com"),
    ("ssn", "SSN １２３－４５－６７８９", "１２３－４５－６７８９"),
    ("ip_address", "host\u00a010.0.0.12", "10.0.0.12"),
]


@pytest.mark.parametrize(("entity", "text", "value"), UNICODE_FORMS)
def test_values_in_other_characters_are_found_and_put_back_as_written(entity: str, text: str, value: str) -> None:
    """A value is what a reader takes it for: fullwidth or Arabic-Indic digits, no-break spaces and dashes
    between its groups, CJK text around it with no space; the provider sees a placeholder, the answer the value
    as the user wrote it."""
    assert found(text) == [(entity, value)]
    redaction = Redaction(ALL)
    redacted = redaction.redact(text)
    assert value not in redacted and f"[{entity.upper()}_1]" in redacted
    assert redaction.restore(redacted) == text


@pytest.mark.parametrize(("entity", "text", "value"), POSITIVES)
def test_positive(entity: str, text: str, value: str | None) -> None:
    expected = value if value is not None else text
    spans = found(text)
    assert (entity, expected) in spans
    assert {e for e, _ in spans} == {entity}


NEGATIVES = [
    # email look-alikes
    "user@localhost",
    "icon@2x.png and logo@3x.jpg",
    "ping @jane_doe on chat",
    "john@example",
    "a@b.c",
    "john..doe@example.com",
    "name at example dot com",
    "git clone git@github.com:org/repo.git",
    # phone look-alikes
    "Released on 2024-01-15.",
    "at 12:30:45 sharp",
    "version 10.2.33",
    "Order #123456789",
    "Order 415-555-0132",
    "Your order number is 415-555-0132.",
    "Invoice no. 020 7946 0958",
    "Ticket ID: 4155550132",
    "tracking 1Z999AA10123456784",
    "4155550132 is just a number",
    "2024-01-15 12:30:45",
    "15/01/2024 and 01.02.2024",
    "It cost $1,299,000 in 2023",
    "ISBN 978-3-16-148410-0",
    "call 555-0132",
    "Kundennummer 0301234567",
    "created_at=1705312245",
    "epoch 1705312245123",
    "Years 1999 2000 2001 2002",
    # card look-alikes
    "4111 1111 1111 1112",
    "1234 5678 9012 3456",
    "0000 0000 0000 0000",
    "4111 1111 1111 1111 1111",
    "41111111111111111",
    "Loyalty 7992 7398 7131 0000",
    # SSN look-alikes
    "000-12-3456",
    "666-12-3456",
    "900-12-3456",
    "123-00-4567",
    "123-45-0000",
    "123456789",
    "123-45-67890",
    "1234-56-7890",
    # IBAN look-alikes
    "DE88 3704 0044 0532 0130 00",
    "DE89 3704 0044 0532 0130",
    "XX89 3704 0044 0532 0130 00",
    "GB82 WEST 1234 5698 7654 3",
    # IP look-alikes
    "1.2.3.4.5",
    "256.1.1.1",
    "192.168.001.001",
    "v1.2.3.4",
    "1.2.3",
    "the :: operator",
    "std::vector<int> and a[::2]",
    "MAC 00:1A:2B:3C:4D:5E",
    # secret look-alikes
    "sk-test-acme-0001",
    "sk-learn-tutorial-notes-for-beginners",
    "AKIA1234 and ghp_short and xoxb-123",
    "header " + jwt(random.Random(3), {"nota": "jwt"}),
    "eyJhbGciOiJIUzI1NiJ9 alone",
    "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----",
    "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBa\n-----END CERTIFICATE-----",
    # never PII
    "Request 123e4567-e89b-12d3-a456-426614174000 failed",
    "commit 3f786850e387550fdab836ed7e6dc881de23001b",
    "color #ff00aa and #FFF",
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "Price: €4.500,00 or USD 12,345.67",
    "Coordinates 37.7749, -122.4194",
    "1920x1080 at 16:9",
]


@pytest.mark.parametrize("text", NEGATIVES)
def test_negative(text: str) -> None:
    assert found(text) == []


# -------------------------------------------------------------------------------------- scanner behaviour


def test_overlaps_prefer_the_longer_and_more_specific_span() -> None:
    assert found("4155550132@example.com") == [("email", "4155550132@example.com")]
    assert found("NL91 ABNA 0417 1643 00") == [("iban", "NL91 ABNA 0417 1643 00")]
    assert found("sk-4111111111111111abcdefghijkLMNOP") == [("secret", "sk-4111111111111111abcdefghijkLMNOP")]
    assert found("::ffff:192.0.2.128") == [("ip_address", "::ffff:192.0.2.128")]
    assert found("call 4111 1111 1111 1111") == [("credit_card", "4111 1111 1111 1111")]


def test_spans_are_sorted_and_disjoint() -> None:
    for text, _ in corpus(11, 300):
        spans = ALL.find(text)
        assert spans == sorted(spans, key=lambda s: s.start)
        assert all(a.end <= b.start for a, b in itertools.pairwise(spans))


def test_entity_subsets() -> None:
    text = "Mail john@example.com or call +1 (415) 555-0132 from 10.0.0.1"
    assert found(text, PiiScanner(["email"])) == [("email", "john@example.com")]
    assert found(text, PiiScanner(["phone", "ip_address"])) == [
        ("phone", "+1 (415) 555-0132"),
        ("ip_address", "10.0.0.1"),
    ]
    assert found(text, PiiScanner([])) == []
    with pytest.raises(ValueError, match="passport"):
        PiiScanner(["email", "passport"])


def test_huge_input() -> None:
    paragraph = (
        "Hello, write to jane.doe@example.com or call +44 20 7946 0958. Card 4111 1111 1111 1111, "
        "IBAN DE89 3704 0044 0532 0130 00, host 10.0.0.1, order #123456789 on 2024-01-15 at 12:30:45.\n"
    )
    text = paragraph * (1_000_000 // len(paragraph))
    spans = ALL.find(text)
    assert len(spans) == 5 * (len(text) // len(paragraph))
    redaction = Redaction(ALL)
    redacted = redaction.redact(text)
    assert redaction.restore(redacted) == text
    assert redaction.counts() == {"email": 1, "phone": 1, "credit_card": 1, "iban": 1, "ip_address": 1}


@pytest.mark.parametrize(
    "text",
    [
        "1 " * 500_000,
        "1" * 1_000_000,
        "1." * 500_000,
        "a@" * 500_000,
        "a." * 300_000 + "@" + "b." * 300_000,
        ":" * 1_000_000,
        "a:" * 500_000,
        "eyJ" * 300_000,
        "sk-" * 300_000,
        "-----BEGIN PRIVATE KEY-----" * 30_000,
        "DE89" * 250_000,
        "(1) " * 250_000,
        "+1 " * 300_000,
        "x" * 1_000_000,
    ],
    ids=lambda t: repr(t[:8]),
)
def test_pathological_megabyte_inputs(text: str) -> None:
    spans = ALL.find(text)  # must finish: no quadratic backtracking
    assert all(0 <= s.start < s.end <= len(text) for s in spans)


def test_jwt_with_a_deeply_nested_header_is_not_an_error() -> None:
    header = base64.urlsafe_b64encode(b'{"alg": ' + b"[" * 1400).rstrip(b"=").decode()
    assert found(f"{header}.eyJzdWIiOiIxIn0.c2lnbmF0dXJl") == []


def test_arbitrary_unicode() -> None:
    rng = random.Random(RNG_SEED)
    alphabets = [
        string.printable,
        "０１２３４５６７８９＠．－",  # full-width digits and punctuation
        "٠١٢٣٤٥٦٧٨٩۰۱۲۳",  # Arabic-Indic digits
        "éèàüößñçøå€£¥§°",
        "日本語中文한국어ไทยعربيעברית",
        "\u0301\u200b\u200d\u202e\ufeff\u00a0",
        "😀🎉👍🏽🇩🇪",
        "\ud800\udfff",  # lone surrogates
    ]
    redaction = Redaction(ALL)
    for _ in range(300):
        parts = [
            "".join(rng.choice(rng.choice(alphabets)) for _ in range(rng.randint(0, 40))),
            rng.choice(["", " jane@example.com ", " +1 (415) 555-0132 ", " 4111 1111 1111 1111 ", " [EMAIL_1] "]),
        ]
        text = "".join(rng.sample(parts, 2))
        spans = ALL.find(text)
        assert all(0 <= s.start < s.end <= len(text) for s in spans)
        assert redaction.restore(redaction.redact(text)) == text


# ----------------------------------------------------------------------------------------------- redaction

SECRET = "sk-" + "Ab3" * 16


def test_placeholders_are_consistent_within_a_request() -> None:
    redaction = Redaction(ALL)
    first = redaction.redact("Mail jane@example.com, then bob@example.org, then jane@example.com again.")
    assert first == "Mail [EMAIL_1], then [EMAIL_2], then [EMAIL_1] again."
    second = redaction.redact(f"Call +1 (415) 555-0132 or write to bob@example.org. Key {SECRET}")
    assert second == "Call [PHONE_1] or write to [EMAIL_2]. Key [SECRET_1]"
    assert redaction.counts() == {"email": 2, "phone": 1, "secret": 1}
    # a new request starts over
    assert Redaction(ALL).redact("bob@example.org") == "[EMAIL_1]"


def test_every_entity_has_its_placeholder() -> None:
    text = (
        f"a jane@example.com b +44 20 7946 0958 c 4111 1111 1111 1111 d 123-45-6789 "
        f"e DE89 3704 0044 0532 0130 00 f 10.0.0.1 g {SECRET}"
    )
    redaction = Redaction(ALL)
    assert redaction.redact(text) == (
        "a [EMAIL_1] b [PHONE_1] c [CREDIT_CARD_1] d [SSN_1] e [IBAN_1] f [IP_ADDRESS_1] g [SECRET_1]"
    )
    assert redaction.counts() == dict.fromkeys(ENTITIES, 1)


def test_restore_is_exact_on_the_corpus() -> None:
    for text, _ in corpus(5, 500):
        redaction = Redaction(ALL)
        redacted = redaction.redact(text)
        assert redaction.restore(redacted) == text


def test_counts_never_expose_values() -> None:
    redaction = Redaction(ALL)
    redaction.redact(f"jane@example.com +1 (415) 555-0132 {SECRET} jane@example.com")
    counts = redaction.counts()
    assert counts == {"email": 1, "phone": 1, "secret": 1}
    assert all(isinstance(k, str) and isinstance(v, int) for k, v in counts.items())
    dumped = repr(counts)
    assert "jane" not in dumped and "555" not in dumped and "Ab3" not in dumped
    counts["email"] = 99  # a copy: callers cannot corrupt the state
    assert redaction.counts()["email"] == 1


def test_entity_subset_redaction() -> None:
    redaction = Redaction(PiiScanner(["email"]))
    text = "jane@example.com or +1 (415) 555-0132"
    assert redaction.redact(text) == "[EMAIL_1] or +1 (415) 555-0132"


def test_literal_placeholder_in_input_is_reserved_and_round_trips() -> None:
    redaction = Redaction(ALL)
    text = "The template says [EMAIL_1]; my address is jane@example.com and [PHONE_7] stays."
    redacted = redaction.redact(text)
    assert redacted == "The template says [EMAIL_1]; my address is [EMAIL_2] and [PHONE_7] stays."
    assert redaction.restore(redacted) == text
    # the model echoes both: the literal stays literal, the issued placeholder is restored
    assert redaction.restore("[EMAIL_1] vs [EMAIL_2]") == "[EMAIL_1] vs jane@example.com"
    assert redaction.counts() == {"email": 1}


def test_literal_placeholder_colliding_with_an_issued_one_is_aliased() -> None:
    redaction = Redaction(ALL)
    first = redaction.redact("jane@example.com")
    assert first == "[EMAIL_1]"
    later = "You wrote [EMAIL_1] earlier; bob@example.org is new."
    second = redaction.redact(later)
    assert second == "You wrote [EMAIL_2] earlier; [EMAIL_3] is new."
    assert redaction.restore(first) == "jane@example.com"
    assert redaction.restore(second) == later
    assert redaction.restore(redaction.redact(later)) == later  # the same literal keeps its alias
    assert redaction.counts() == {"email": 2}


def test_unknown_or_malformed_placeholders_are_left_alone() -> None:
    redaction = Redaction(ALL)
    redaction.redact("jane@example.com")
    answer = "[EMAIL_1] [EMAIL_99] [email_1] [EMAIL_1 [EMAIL_] EMAIL_1] [[EMAIL_1]]"
    assert redaction.restore(answer) == (
        "jane@example.com [EMAIL_99] [email_1] [EMAIL_1 [EMAIL_] EMAIL_1] [jane@example.com]"
    )


def test_text_without_pii_is_returned_unchanged() -> None:
    redaction = Redaction(ALL)
    text = "Nothing to see here [1] [EMAIL] 2024-01-15"
    assert redaction.redact(text) == text
    assert redaction.restore(text) == text
    assert redaction.counts() == {}


# ----------------------------------------------------------------------------------------- stream restore


def _request() -> tuple[Redaction, str]:
    redaction = Redaction(ALL)
    redaction.redact(
        "I'm jane@example.com, phone +1 (415) 555-0132, card 4111 1111 1111 1111, "
        "IBAN DE89 3704 0044 0532 0130 00, host 10.0.0.1, SSN 123-45-6789 and mail bob@example.org. "
        "Literal [EMAIL_7] stays."
    )
    answer = (
        "Sure [EMAIL_1]! I'll call [PHONE_1] and charge [CREDIT_CARD_1] (IBAN [IBAN_1]).\n"
        "Adjacent: [EMAIL_2][PHONE_1], nested [[IP_ADDRESS_1]], brackets [ and [EMAIL and [SSN_1 and [EMAIL_7] "
        "and unicode 日本語 [SSN_1] 😀 [IP_ADDRESS_1]"
    )
    return redaction, answer


def _stream(redaction: Redaction, chunks: list[str]) -> str:
    restorer = redaction.stream_restorer()
    return "".join(restorer.feed(chunk) for chunk in chunks) + restorer.flush()


def test_stream_restore_at_every_single_split_point() -> None:
    redaction, answer = _request()
    expected = redaction.restore(answer)
    assert "jane@example.com" in expected and "[EMAIL_7]" in expected and "[SSN_1 and" in expected
    for i in range(len(answer) + 1):
        assert _stream(redaction, [answer[:i], answer[i:]]) == expected, i


def test_stream_restore_at_random_multi_splits() -> None:
    redaction, answer = _request()
    expected = redaction.restore(answer)
    rng = random.Random(RNG_SEED)
    for _ in range(500):
        cuts = sorted(rng.sample(range(len(answer) + 1), rng.randint(1, 30)))
        chunks = [answer[a:b] for a, b in zip([0, *cuts], [*cuts, len(answer)], strict=True)]
        assert _stream(redaction, chunks) == expected, cuts
    assert _stream(redaction, list(answer)) == expected  # one character at a time


def test_stream_never_holds_back_more_than_a_placeholder_prefix() -> None:
    redaction, _ = _request()
    longest = max(len(p) for p in ("[CREDIT_CARD_1]", "[IP_ADDRESS_1]", "[EMAIL_8]"))
    text = "Plain text with [brackets], [EMAIL lookalikes [CREDIT_CARD_ and a final [IP_ADDRESS_"
    restorer = redaction.stream_restorer()
    emitted = 0
    for sent, ch in enumerate(text, 1):
        emitted += len(restorer.feed(ch))
        assert sent - emitted <= longest - 1
    assert emitted + len(restorer.flush()) == len(text)
    # text without "[" is never held back at all
    restorer = redaction.stream_restorer()
    assert restorer.feed("no brackets here ") == "no brackets here "
    assert restorer.feed("EMAIL_1]") == "EMAIL_1]"


def test_lone_bracket_is_emitted_at_flush() -> None:
    redaction, _ = _request()
    restorer = redaction.stream_restorer()
    assert restorer.feed("total: 5 [") == "total: 5 "
    assert restorer.flush() == "["
    assert restorer.flush() == ""
    restorer = redaction.stream_restorer()
    assert restorer.feed("[EMA") == ""
    assert restorer.feed("IL_1") == ""
    assert restorer.feed("]!") == "jane@example.com!"
    # nothing issued: nothing to wait for
    assert Redaction(ALL).stream_restorer().feed("a [") == "a ["


def test_stream_restorers_are_independent() -> None:
    redaction, answer = _request()
    expected = redaction.restore(answer)
    first, second = redaction.stream_restorer(), redaction.stream_restorer()
    out1, out2 = [], []
    for i in range(0, len(answer), 6):  # interleaved, with different chunk boundaries
        out1.append(first.feed(answer[i : i + 6]))
        out2.append(second.feed(answer[i : i + 4]))
        out2.append(second.feed(answer[i + 4 : i + 6]))
    assert "".join(out1) + first.flush() == expected
    assert "".join(out2) + second.flush() == expected


def test_values_put_back_into_json_are_escaped_where_json_needs_it() -> None:
    """A value taken from plain text (a private key's line breaks) is escaped to sit in a JSON string; one taken
    from JSON text (a tool call's arguments in the history) already holds its escapes and is put back as it was."""
    redaction = Redaction(ALL)
    plain = f"key:\n{PEM}\nthanks"
    in_json = json.dumps({"to": "jane@example.com", "key": PEM})
    assert redaction.redact(plain) == "key:\n[SECRET_1]\nthanks"
    assert redaction.redact(in_json) == '{"to": "[EMAIL_1]", "key": "[SECRET_2]"}'
    arguments = '{"a": "[SECRET_1]", "b": "[SECRET_2]", "c": "[EMAIL_1]"}'
    expected = {"a": PEM, "b": PEM, "c": "jane@example.com"}
    assert json.loads(redaction.restore(arguments, in_json=True)) == expected
    assert redaction.restore("[SECRET_1]") == PEM  # plain text: as it was
    for i in range(len(arguments) + 1):  # streamed, cut anywhere
        restorer = redaction.stream_restorer(in_json=True)
        assert json.loads(restorer.feed(arguments[:i]) + restorer.feed(arguments[i:]) + restorer.flush()) == expected
