"""The enforcement catalogue: 10 categories, 147 items, consistent codes and names."""

from __future__ import annotations

import re
from collections import Counter
from typing import get_args

import pytest

from spatial.catalogue import (
    CATEGORIES,
    ITEMS,
    PkTheme,
    ResponsibleRole,
    TimeUnit,
    category,
    item,
)

EXPECTED_ITEMS_PER_CATEGORY = {
    "01": 15,
    "02": 15,
    "03": 15,
    "04": 15,
    "05": 15,
    "06": 15,
    "07": 14,
    "08": 14,
    "09": 14,
    "10": 15,
}


def test_ten_categories_coded_01_to_10() -> None:
    assert len(CATEGORIES) == 10
    assert [c.code for c in CATEGORIES] == [f"{n:02d}" for n in range(1, 11)]


def test_147_items() -> None:
    assert len(ITEMS) == 147


def test_item_codes_unique_ordered_and_prefixed_by_their_category() -> None:
    codes = [i.code for i in ITEMS]
    assert len(set(codes)) == 147
    assert codes == sorted(codes)
    category_codes = {c.code for c in CATEGORIES}
    for i in ITEMS:
        assert re.fullmatch(r"\d{4}", i.code), i.code
        assert i.category_code == i.code[:2], i.code
        assert i.category_code in category_codes, i.code


def test_item_serials_run_from_01_without_gaps() -> None:
    for c in CATEGORIES:
        serials = [int(i.code[2:]) for i in ITEMS if i.category_code == c.code]
        assert serials == list(range(1, len(serials) + 1)), c.code


def test_items_per_category() -> None:
    counts = Counter(i.category_code for i in ITEMS)
    assert dict(counts) == EXPECTED_ITEMS_PER_CATEGORY
    assert min(counts.values()) >= 12


def test_names_unique_and_non_empty() -> None:
    for names in (
        [c.name_zh for c in CATEGORIES],
        [c.name_en for c in CATEGORIES],
        [i.name_zh for i in ITEMS],
        [i.name_en for i in ITEMS],
    ):
        assert all(n.strip() for n in names)
        assert len(set(names)) == len(names), [n for n, k in Counter(names).items() if k > 1]


def test_every_pk_theme_fed_by_a_category() -> None:
    themes = {c.pk_theme for c in CATEGORIES if c.pk_theme is not None}
    assert themes == set(get_args(PkTheme))
    assert category("06").pk_theme == "demolition"


def test_time_units_roles_and_limits_allowed() -> None:
    for i in ITEMS:
        assert i.time_unit in get_args(TimeUnit), i.code
        assert i.responsible_role in get_args(ResponsibleRole), i.code
        assert i.time_limit > 0, i.code


def test_emergencies_within_two_working_hours() -> None:
    emergencies = [i for i in ITEMS if i.category_code == "04"]
    assert {i.time_unit for i in emergencies} == {"working_hours"}
    assert max(i.time_limit for i in emergencies) <= 2


def test_illegal_construction_within_5_to_15_working_days() -> None:
    demolition = [i for i in ITEMS if i.category_code == "06"]
    assert {i.time_unit for i in demolition} == {"working_days"}
    assert all(5 <= i.time_limit <= 15 for i in demolition)


def test_national_items_only_in_national_classes_except_makeshift_structures() -> None:
    national = {i.code for i in ITEMS if i.national}
    assert {code[:2] for code in national} == {"01", "02", "03", "04", "05", "06"}
    assert [code for code in national if code[:2] >= "06"] == ["0601"]


def test_lookup_by_code() -> None:
    assert item("0102").name_zh == "积存垃圾渣土"
    assert item("0102").category_code == "01"
    assert category("07").name_zh == "河道管理"


def test_unknown_item_code_raises_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match="9999"):
        item("9999")


def test_unknown_category_code_raises_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match="'11'"):
        category("11")
