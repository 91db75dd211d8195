"""Event specs and seat layout: seat_map, seat_label, seat_positions, validate_event, decoding."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import InvalidRequest
from engine.events import (
    EventSpec,
    RowSpec,
    SeatLabel,
    SectionSpec,
    seat_label,
    seat_map,
    seat_positions,
    validate_event,
)

pytestmark = pytest.mark.once

OPENS = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)

row_layouts = st.lists(
    st.tuples(st.text(min_size=1, max_size=8), st.integers(min_value=1, max_value=40)),
    min_size=1,
    max_size=12,
    unique_by=lambda r: r[0],
)


def seated(*rows: tuple[str, int], section_id: str = "A") -> SectionSpec:
    """A seated section with these (label, seats) rows."""
    return SectionSpec(
        id=section_id, price_cents=1_000, rows=[RowSpec(label, n) for label, n in rows]
    )


def ga(capacity: int, section_id: str = "GA") -> SectionSpec:
    """A general-admission section of this capacity."""
    return SectionSpec(id=section_id, price_cents=500, capacity=capacity)


def event(*sections: SectionSpec, opens_at: datetime = OPENS) -> EventSpec:
    """An event with these sections."""
    return EventSpec(name="Show", opens_at=opens_at, sections=list(sections))


# --- seat_map -------------------------------------------------------------------------


def test_seat_map_of_rows_ends_each_row_with_a_bar() -> None:
    """A seated section's map is one '0' per seat with '|' closing every row, in row order."""
    assert seat_map(seated(("A", 3), ("B", 1), ("C", 5))) == "000|0|00000|"


@pytest.mark.parametrize("capacity", [1, 7, 100_000])
def test_seat_map_of_general_admission(capacity: int) -> None:
    """A GA section's map is capacity zeros followed by a single '|'."""
    assert seat_map(ga(capacity)) == "0" * capacity + "|"


@given(rows=row_layouts)
def test_seat_map_shape(rows: list[tuple[str, int]]) -> None:
    """The map has one '|' per row and the rows' seat counts between them."""
    section = seated(*rows)
    layout = seat_map(section)
    assert layout.endswith("|")
    assert [len(chunk) for chunk in layout.split("|")[:-1]] == [n for _, n in rows]
    assert set(layout) == {"0", "|"}
    assert layout.count("0") == section.seat_count


# --- seat_label / seat_positions ----------------------------------------------------------


def test_seat_label_examples() -> None:
    """Positions count through each row's seats and skip the row's '|'."""
    section = seated(("A", 3), ("B", 2))  # 000|00|
    assert seat_label(section, 1) == SeatLabel("A", 1)
    assert seat_label(section, 3) == SeatLabel("A", 3)
    assert seat_label(section, 5) == SeatLabel("B", 1)
    assert seat_label(section, 6) == SeatLabel("B", 2)


def test_seat_label_general_admission() -> None:
    """A GA place is labelled with an empty row and its position as number."""
    section = ga(10)
    assert seat_label(section, 1) == SeatLabel("", 1)
    assert seat_label(section, 10) == SeatLabel("", 10)


@given(rows=row_layouts)
def test_seat_label_inverts_seat_positions(rows: list[tuple[str, int]]) -> None:
    """For every seat, seat_label(position) gives back the label seat_positions paired it with."""
    section = seated(*rows)
    pairs = seat_positions(section)
    assert len(pairs) == section.seat_count
    for pos, label in pairs:
        assert seat_label(section, pos) == label


@given(rows=row_layouts)
def test_seat_positions_cover_exactly_the_seats_of_the_map(rows: list[tuple[str, int]]) -> None:
    """seat_positions lists exactly the '0' bytes of the map, best first, rows numbered 1..n."""
    section = seated(*rows)
    layout = seat_map(section)
    pairs = seat_positions(section)
    positions = [p for p, _ in pairs]
    assert positions == [i + 1 for i, ch in enumerate(layout) if ch == "0"]
    expected = [SeatLabel(label, n) for label, seats in rows for n in range(1, seats + 1)]
    assert [label for _, label in pairs] == expected


@given(capacity=st.integers(min_value=1, max_value=500))
def test_general_admission_positions_round_trip(capacity: int) -> None:
    """Every GA position maps to its own number and back."""
    section = ga(capacity)
    pairs = seat_positions(section)
    assert [p for p, _ in pairs] == list(range(1, capacity + 1))
    for pos, label in pairs:
        assert seat_label(section, pos) == label == SeatLabel("", pos)


@given(rows=row_layouts)
def test_separator_and_out_of_range_positions_raise(rows: list[tuple[str, int]]) -> None:
    """Every '|' position, 0, negatives and positions past the map raise ValueError."""
    section = seated(*rows)
    layout = seat_map(section)
    bars = [i + 1 for i, ch in enumerate(layout) if ch == "|"]
    assert len(bars) == len(rows)
    for pos in [*bars, 0, -1, -len(layout), len(layout) + 1, len(layout) + 100]:
        with pytest.raises(ValueError, match="outside section"):
            seat_label(section, pos)


@pytest.mark.parametrize("pos", [0, -1, 11, 12, 1_000])
def test_general_admission_out_of_range_raises(pos: int) -> None:
    """GA positions outside 1..capacity (including the '|' at capacity + 1) raise ValueError."""
    with pytest.raises(ValueError, match="outside section"):
        seat_label(ga(10), pos)


# --- validate_event -------------------------------------------------------------------------


def test_valid_event_passes() -> None:
    """A spec with unique ids, rows or capacity, and a zoned opening time is accepted."""
    validate_event(event(seated(("A", 10), ("B", 10)), ga(100)))


def test_duplicate_section_ids_are_rejected() -> None:
    """Two sections with the same id make the spec invalid."""
    with pytest.raises(InvalidRequest, match="section ids must be unique"):
        validate_event(event(ga(10, "X"), seated(("A", 2), section_id="X")))


def test_rows_and_capacity_together_are_rejected() -> None:
    """A section may not have both rows and a capacity."""
    both = SectionSpec(id="A", price_cents=1, rows=[RowSpec("A", 5)], capacity=5)
    with pytest.raises(InvalidRequest, match="either rows or a capacity"):
        validate_event(event(both))


def test_neither_rows_nor_capacity_is_rejected() -> None:
    """A section needs rows or a capacity."""
    with pytest.raises(InvalidRequest, match="either rows or a capacity"):
        validate_event(event(SectionSpec(id="A", price_cents=1)))


def test_duplicate_row_labels_are_rejected() -> None:
    """Row labels must be unique within a section."""
    with pytest.raises(InvalidRequest, match="row labels"):
        validate_event(event(seated(("A", 3), ("B", 3), ("A", 1))))


def test_same_row_label_in_different_sections_is_fine() -> None:
    """Row labels only need to be unique within their own section."""
    validate_event(event(seated(("A", 3), section_id="S1"), seated(("A", 3), section_id="S2")))


def test_naive_opening_time_is_rejected() -> None:
    """opens_at without a time zone is refused."""
    with pytest.raises(InvalidRequest, match="time zone"):
        validate_event(event(ga(10), opens_at=datetime(2026, 12, 1, 10, 0)))


def test_non_utc_zone_is_accepted() -> None:
    """Any explicit time zone is fine, not only UTC."""
    validate_event(
        event(ga(10), opens_at=datetime(2026, 12, 1, 10, tzinfo=timezone(timedelta(hours=2))))
    )


def test_bad_section_id_is_rejected_for_constructed_specs() -> None:
    """A spec built in code (not decoded) is still checked against the id pattern."""
    with pytest.raises(InvalidRequest, match="must match"):
        validate_event(event(ga(10, "bad id")))


def test_exactly_200000_seats_is_allowed() -> None:
    """An event of exactly 200,000 seats is at the limit and accepted."""
    spec = event(ga(100_000, "G1"), ga(100_000, "G2"))
    assert spec.capacity == 200_000
    validate_event(spec)


def test_more_than_200000_seats_is_rejected() -> None:
    """An event of 200,001 seats is refused."""
    spec = event(ga(100_000, "G1"), ga(100_000, "G2"), seated(("A", 1)))
    assert spec.capacity == 200_001
    with pytest.raises(InvalidRequest, match="200,000"):
        validate_event(spec)


# --- decoding -----------------------------------------------------------------------------


def _doc(**overrides: Any) -> dict[str, Any]:
    """A valid event document, with top-level overrides."""
    doc: dict[str, Any] = {
        "name": "Show",
        "opens_at": "2026-12-01T10:00:00Z",
        "sections": [
            {"id": "A", "price_cents": 1_000, "rows": [{"label": "A", "seats": 10}]},
            {"id": "GA", "price_cents": 500, "capacity": 100},
        ],
    }
    doc.update(overrides)
    return doc


def _decode(doc: dict[str, Any]) -> EventSpec:
    return msgspec.json.decode(json.dumps(doc).encode(), type=EventSpec)


def test_decoding_a_valid_document() -> None:
    """A valid document decodes with defaults filled in and passes validation."""
    spec = _decode(_doc())
    assert spec.opens_at == OPENS
    assert (spec.max_per_order, spec.hold_seconds, spec.max_active_holds) == (4, 120, 500)
    assert spec.capacity == 110
    assert spec.section("GA") is not None
    assert spec.section("nope") is None
    validate_event(spec)


def test_decoded_naive_time_fails_validation() -> None:
    """A document's opens_at without offset decodes, but validate_event refuses it."""
    spec = _decode(_doc(opens_at="2026-12-01T10:00:00"))
    with pytest.raises(InvalidRequest, match="time zone"):
        validate_event(spec)


@pytest.mark.parametrize("where", ["event", "section", "row"])
def test_unknown_fields_are_rejected(where: str) -> None:
    """Unknown fields are refused at every level of the document."""
    doc = _doc()
    target = {
        "event": doc,
        "section": doc["sections"][0],
        "row": doc["sections"][0]["rows"][0],
    }[where]
    target["surprise"] = 1
    with pytest.raises(msgspec.ValidationError, match="unknown field `surprise`"):
        _decode(doc)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", ""),
        ("name", "x" * 201),
        ("sections", []),
        ("sections", [{"id": f"S{i}", "price_cents": 1, "capacity": 1} for i in range(51)]),
        ("max_per_order", 0),
        ("max_per_order", 21),
        ("hold_seconds", 0),
        ("hold_seconds", 3601),
        ("max_active_holds", 0),
        ("max_active_holds", 100_001),
        ("opens_at", "not a date"),
    ],
)
def test_out_of_range_event_fields_are_rejected(field: str, value: Any) -> None:
    """Event-level values outside their bounds fail decoding."""
    with pytest.raises(msgspec.ValidationError):
        _decode(_doc(**{field: value}))


@pytest.mark.parametrize(
    "section",
    [
        {"id": "", "price_cents": 1, "capacity": 1},
        {"id": "-A", "price_cents": 1, "capacity": 1},
        {"id": "has space", "price_cents": 1, "capacity": 1},
        {"id": "A.B", "price_cents": 1, "capacity": 1},
        {"id": "x" * 33, "price_cents": 1, "capacity": 1},
        {"id": "A", "price_cents": -1, "capacity": 1},
        {"id": "A", "price_cents": 10_000_001, "capacity": 1},
        {"id": "A", "price_cents": 1, "capacity": -1},
        {"id": "A", "price_cents": 1, "capacity": 100_001},
        {"id": "A", "price_cents": 1, "capacity": 1, "name": "n" * 81},
        {"id": "A", "price_cents": 1, "rows": [{"label": "", "seats": 1}]},
        {"id": "A", "price_cents": 1, "rows": [{"label": "123456789", "seats": 1}]},
        {"id": "A", "price_cents": 1, "rows": [{"label": "A", "seats": 0}]},
        {"id": "A", "price_cents": 1, "rows": [{"label": "A", "seats": 501}]},
        {"price_cents": 1, "capacity": 1},
    ],
)
def test_out_of_range_section_fields_are_rejected(section: dict[str, Any]) -> None:
    """Section and row values outside their bounds (or missing) fail decoding."""
    with pytest.raises(msgspec.ValidationError):
        _decode(_doc(sections=[section]))


@pytest.mark.parametrize(
    "section",
    [
        {"id": "A", "price_cents": 0, "capacity": 100_000},
        {"id": "x" * 32, "price_cents": 10_000_000, "capacity": 1},
        {"id": "a_b-C9", "price_cents": 1, "rows": [{"label": "12345678", "seats": 500}]},
    ],
)
def test_boundary_section_values_decode(section: dict[str, Any]) -> None:
    """Values exactly at their bounds are accepted."""
    spec = _decode(_doc(sections=[section]))
    validate_event(spec)
