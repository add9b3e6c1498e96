"""The batch path's faster spellings give exactly what the reference ones give (issue 24, point 4):
the keyed hasher (HMAC pads hashed once per batch) equals ``entry_hash``, six-place amounts spell
the same by ``str()`` as by ``entry_hash``'s format, and the COPY text line escapes what COPY's
text format needs escaped."""

from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from billing_pipeline.ledger.entries import entry_hash, keyed_entry_hasher
from billing_pipeline.ledger.posting import _copy_text

text = st.text(min_size=1, max_size=30)
amounts = st.decimals(min_value=Decimal("-1000000000"), max_value=Decimal("1000000000"), places=6)


@given(
    key=st.binary(min_size=32, max_size=150),
    key_id=st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True),
    prev_hash=st.sampled_from(["0" * 64, hashlib.sha256(b"x").hexdigest()]),
    account=text,
    seq=st.integers(min_value=1, max_value=10**12),
    type_=st.sampled_from(["topup", "usage_deduction", "reversal"]),
    amount=amounts,
    balance=amounts,
    idempotency_key=text,
    reference_json=st.sampled_from(["{}", '{"hour":"2026-11-03T04:00:00+00:00","note":"a \\"q\\" \\\\ é"}']),
    reason=st.none() | text,
    actor=st.none() | text,
)
def test_the_keyed_hasher_equals_entry_hash(
    key, key_id, prev_hash, account, seq, type_, amount, balance, idempotency_key, reference_json, reason, actor
):
    created_at = "2026-11-03T06:30:00.123456+00:00"
    expected = entry_hash(
        prev_hash=prev_hash,
        account_id=account,
        account_seq=seq,
        type=type_,
        amount=amount,
        balance_after=balance,
        idempotency_key=idempotency_key,
        reference_json=reference_json,
        reason=reason,
        actor=actor,
        created_at=created_at,
        key_id=key_id,
        key=key,
    )
    hasher = keyed_entry_hasher(key_id, key)
    got = hasher(
        prev_hash,
        account,
        seq,
        type_,
        f"{amount:.6f}",
        f"{balance:.6f}",
        idempotency_key,
        reference_json,
        reason,
        actor,
        created_at,
    )
    assert got == expected


def test_the_keyed_hasher_is_hmac_sha256_for_keys_shorter_and_longer_than_a_block():
    for key in (b"k" * 32, b"k" * 64, b"k" * 65, bytes(range(200))):
        hasher = keyed_entry_hasher("k1", key)
        content = ("0" * 64, "acme", 1, "topup", "1.000000", "1.000000", "t-1", "{}", None, None, "t")
        message = '["k1","' + "0" * 64 + '","acme",1,"topup","1.000000","1.000000","t-1","{}",null,null,"t"]'
        assert hasher(*content) == hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def test_copy_text_escapes_backslash_and_line_controls_only():
    assert _copy_text("acme") == "acme"
    assert _copy_text('{"a":"b\\"c"}') == '{"a":"b\\\\"c"}'
    assert _copy_text("a\tb\nc\rd\\e") == "a\\tb\\nc\\rd\\\\e"
    assert _copy_text("é ✓ \\N") == "é ✓ \\\\N"


@given(amount=amounts, balance=amounts)
def test_six_place_amounts_and_their_sums_spell_the_same_by_str_as_by_format(amount, balance):
    # The batch path spells amounts and running balances with str() (posting._chained_rows);
    # entry_hash, which verify uses, with f"{:.6f}". Rounded to micro-credits (as validation
    # and the heads give them), and summed as the running balance is, both spell the same.
    micro = Decimal("0.000001")
    amount, balance = amount.quantize(micro), balance.quantize(micro)
    for value in (amount, balance, balance + amount, -amount):
        assert str(value) == f"{value:.6f}"
