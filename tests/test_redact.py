"""The URL redaction rule, case by case (the end-to-end proof is in test_hostile_input)."""

from __future__ import annotations

import pytest

from gateway.collect.redact import redact_url


@pytest.mark.parametrize(
    ("url", "region", "expected"),
    [
        pytest.param(
            "https://shop.example/p?a=1&b=two&utm_medium=email#top",
            None,
            "https://shop.example/p?a=1&b=two&utm_medium=email#top",
            id="nothing-to-redact-is-kept-byte-for-byte",
        ),
        pytest.param(
            "https://s.example/?q=shoes&Email=jane%40example.org&sort=price",
            None,
            "https://s.example/?q=shoes&Email=REDACTED&sort=price",
            id="named-email-keeps-order",
        ),
        pytest.param(
            "https://s.example/?e-mail=x&user_phone=1&Mobile_Number=2&tel=3&password=p&x=",
            None,
            "https://s.example/?e-mail=REDACTED&user_phone=REDACTED&Mobile_Number=REDACTED"
            "&tel=REDACTED&password=REDACTED&x=",
            id="sensitive-names",
        ),
        pytest.param(
            "https://s.example/?next=%252Faccount%253Fu%253Djane%2540example.org",
            None,
            "https://s.example/?next=REDACTED",
            id="email-encoded-twice-in-another-parameter",
        ),
        pytest.param(
            "https://s.example/?c=%2B44%2020%207946%200958&d=0044+20+7946+0958",
            None,
            "https://s.example/?c=REDACTED&d=REDACTED",
            id="international-phone-values",
        ),
        pytest.param(
            "https://s.example/?c=(415)%20555-0123&variant=39874523987&d=2026-11-30",
            "US",
            "https://s.example/?c=REDACTED&variant=39874523987&d=2026-11-30",
            id="national-phone-in-the-source-region-but-not-ids-or-dates",
        ),
        pytest.param(
            "https://s.example/?c=4155550123",
            None,
            "https://s.example/?c=4155550123",
            id="bare-number-without-a-region-is-an-id",
        ),
        pytest.param(
            "https://s.example/?ttclid=E.C.P.a%40b.example&email=a%40b.example",
            None,
            "https://s.example/?ttclid=E.C.P.a%40b.example&email=REDACTED",
            id="ttclid-is-never-redacted",
        ),
        pytest.param(
            "https://s.example/app#/signup?step=2&email=a%40b.example",
            None,
            "https://s.example/app#/signup?step=2&email=REDACTED",
            id="fragment-parameters",
        ),
        pytest.param(
            "https://s.example/users/jane@example.org/orders?x=1",
            None,
            "https://s.example/users/REDACTED/orders?x=1",
            id="email-in-the-path",
        ),
        pytest.param("not a url at all", None, "not a url at all", id="junk-is-kept"),
    ],
)
def test_redact_url(url: str, region: str | None, expected: str) -> None:
    assert redact_url(url, region) == expected


def test_phone_checks_are_bounded_per_url_and_fail_closed() -> None:
    # "+1 000 000 0000" has a phone's shape but no valid number: kept while checks last.
    shaped = "%2B1%20000%20000%200000"
    url = "https://s.example/?" + "&".join(f"p{i}={shaped}" for i in range(12))
    redacted = redact_url(url, None).split("?")[1].split("&")
    assert redacted[:8] == [f"p{i}={shaped}" for i in range(8)]
    assert redacted[8:] == [f"p{i}=REDACTED" for i in range(8, 12)]
