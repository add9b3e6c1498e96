"""dbt's own unit tests (YAML ``unit_tests:``) and data tests, run with ``dbt build`` on an empty
migrated database: mid-day price change, both bases, a 10:20-12:05 rental, coverage on own /
shared / another account's node, bad pricing rows, half-even rounding."""

from __future__ import annotations

import re

from tests.support.dbt import run_dbt

EXPECTED_UNIT_TESTS = {
    "price_change_mid_day_prices_each_hour_with_its_price",
    "basis_max_request_usage_is_taken_per_container",
    "basis_of_the_price_picks_the_quantity",
    "coverage_own_node_covered_shared_charged_other_exception",
    "rental_from_10_20_to_12_05_priced_per_machine_hour",
    "ongoing_rental_cut_short_by_now_is_an_estimate",
    "bad_pricing_rows_are_rejected_with_reasons",
    "ledger_bound_amounts_round_half_even_to_6_places",
    "priced_usage_keeps_streams_distinct_and_covered_usage_at_zero",
}


def test_dbt_unit_tests_pass(db_url, tmp_path):
    run = run_dbt(db_url, ["build"], tmp_path)
    passed = set(re.findall(r"PASS \w+::(\w+)", run.output))
    assert passed >= EXPECTED_UNIT_TESTS, run.output[-4000:]
    assert re.search(r"ERROR=0 ", run.output)
