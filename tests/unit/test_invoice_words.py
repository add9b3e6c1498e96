"""How the invoice document writes numbers, periods and its settings (invoicing.document): pure
functions, no services. The layout itself is checked on rendered PDFs in
tests/integration/test_invoice_document.py."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing_pipeline.core.errors import ConfigurationError
from billing_pipeline.invoicing.document import (
    InvoiceSettings,
    balance,
    charge,
    money_summary,
    period_text,
    price_text,
    quantity_text,
)


def test_charges_are_positive_and_credits_carry_a_minus_sign():
    # Ledger signs in, document signs out: a deduction is a charge, a top-up a credit.
    assert charge(Decimal("-88.889040")) == "88.889040"
    assert charge(Decimal("400")) == "\u2212400.000000"
    assert charge(Decimal("1234567.1234565")) == "\u22121,234,567.123456"  # half-even to six places
    assert charge(Decimal("0")) == "0.000000" and charge(Decimal("-0.0000004")) == "0.000000"


def test_balances_are_held_or_owed_never_signed():
    assert balance(Decimal("91.696607")) == "91.696607 held"
    assert balance(Decimal("-3")) == "3.000000 owed"
    assert balance(Decimal("0")) == "0.000000 held"


def test_quantities_have_four_places_and_prices_are_exact():
    assert quantity_text(Decimal("14.16666666")) == "14.1667" and quantity_text(None) == "0.0000"
    assert price_text(Decimal("0.0051234567")) == "0.0051234567"
    assert price_text(Decimal("0.85")) == "0.8500" and price_text(Decimal("2")) == "2.0000"


def test_the_period_is_written_as_people_write_it():
    assert period_text(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)) == "Nov 1 – Nov 30, 2026"
    assert period_text(datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)) == "Dec 1 – Dec 31, 2026"
    assert period_text(datetime(2028, 2, 1, tzinfo=UTC), datetime(2028, 3, 1, tzinfo=UTC)) == "Feb 1 – Feb 29, 2028"


def test_the_summary_states_opening_used_added_other_closing():
    lines = [
        {"type": "usage", "amount": Decimal("-100.5")},
        {"type": "usage", "amount": Decimal("0.5")},  # a reversal nets into usage
        {"type": "topup", "amount": Decimal("250")},
        {"type": "admin_adjustment", "amount": Decimal("-10")},
    ]
    summary = money_summary(Decimal("-3"), lines, Decimal("137"))
    assert (summary["opening"], summary["used"], summary["added"], summary["other"], summary["closing"]) == (
        "3.000000 owed",
        "100.000000",
        "\u2212250.000000",
        "10.000000",
        "137.000000 held",
    )
    assert money_summary(Decimal(0), lines[:3], Decimal("150"))["other"] is None


def test_settings_come_from_the_environment_with_defaults():
    default = InvoiceSettings.from_environ({})
    assert default.seller_name == "Satusky" and default.seller_address == ()
    assert default.credit_value_text == "credits, not currency" and default.worth(Decimal("5")) is None
    set_ = InvoiceSettings.from_environ(
        {"BILLING_SELLER_ADDRESS": "1 Example Street; 10115 Berlin ;", "BILLING_CREDIT_VALUE": "1 credit = 0.01 usd"}
    )
    assert set_.seller_address == ("1 Example Street", "10115 Berlin")
    assert set_.credit_value_text == "1 credit = 0.01 USD"
    assert set_.worth(Decimal("144.957468")) == "1.45 USD" and set_.worth(Decimal("-0.5")) == "0.00 USD"  # half-even
    assert set_.worth(Decimal("1.5")) == "0.02 USD"
    assert InvoiceSettings.from_environ({"BILLING_CREDIT_VALUE": "0.25 EUR"}).credit_value_text == "1 credit = 0.25 EUR"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("BILLING_CREDIT_VALUE", "lots", "BILLING_CREDIT_VALUE 'lots' is not the value of one credit"),
        ("BILLING_CREDIT_VALUE", "0 USD", "BILLING_CREDIT_VALUE '0 USD' is not the value of one credit"),
        ("BILLING_CREDIT_VALUE", "1e-2 USD", "write it as AMOUNT CURRENCY, e.g. 0.01 USD"),
        ("BILLING_SELLER_NAME", "Acme\x1b[31m", "BILLING_SELLER_NAME must be one line of printable text"),
        ("BILLING_SELLER_ADDRESS", "x" * 301, "at most 300 characters"),
    ],
)
def test_settings_that_cannot_be_printed_are_a_configuration_error(variable, value, message):
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(".", r"\.")):
        InvoiceSettings.from_environ({variable: value})
