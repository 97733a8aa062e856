"""The row filter and the file-pruning predicate of a Delta read (:func:`dresscode.core.delta.read`).

pyarrow tests a range (``>=``/``<=``) against a row group's statistics but not an ``in`` list,
and delta-rs prunes files by a predicate over the partitions and the files' column ranges. So an
``in`` filter also carries its values' min-max range — per ``user_bucket`` for a user filter on
a table partitioned by it, since a batch planned bucket by bucket holds a narrow id range of
each bucket — both in the row filter and in the SQL predicate handed to delta-rs.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from dresscode.core.delta_layout import BUCKET, PARTITION, sql, user_bucket

_MAX_RANGES = 8  # more buckets than this in one read: prune by partition only


def conditions(
    days: Iterable[date | str] | None,
    filters: list[tuple[str, str, Any]],
    names: set[str],
) -> tuple[list[Any], list[str]]:
    """The row filter's terms (pyarrow expressions) and the file-pruning conjuncts (SQL).

    Rows already in memory (a kept table's) have no row-group statistics to skip by: they are
    filtered by the exact terms alone, :func:`rows_matching`."""
    import pyarrow.compute as pc

    terms: list[Any] = []
    pruning: list[str] = []
    if days is not None:
        wanted = day_strings(days)
        terms.append(pc.field(PARTITION).isin(wanted))
        if wanted:
            pruning.append(f"{PARTITION} IN ({', '.join(sql(d) for d in wanted)})")
        else:
            pruning.append("false")
    for column, op, value in filters:
        terms.append(term(column, op, value))
        if op != "in" or column not in names:
            continue
        values = sorted({str(v) for v in value})
        if not values or not all(isinstance(v, str) for v in value):
            continue
        if column == "user_id" and BUCKET in names:
            by_bucket: dict[str, list[str]] = {}
            for v in values:
                by_bucket.setdefault(user_bucket(v), []).append(v)
            if len(by_bucket) > _MAX_RANGES:
                # Users of many buckets (a style interval's active users): each bucket's range
                # spans most of it, so the partitions are all there is to prune by.
                pruning.append(f"{BUCKET} IN ({', '.join(sql(b) for b in sorted(by_bucket))})")
                continue
            ranges = [(b, vs[0], vs[-1]) for b, vs in sorted(by_bucket.items())]
        else:
            ranges = [("", values[0], values[-1])]
        terms.append(any_range(column, ranges))
        pruning.append(
            "("
            + " OR ".join(
                (f"{BUCKET} = {sql(b)} AND " if b else "")
                + f"{column} >= {sql(lo)} AND {column} <= {sql(hi)}"
                for b, lo, hi in ranges
            )
            + ")"
        )
    return terms, pruning


def partition_terms(
    days: Iterable[date | str] | None,
    filters: list[tuple[str, str, Any]],
    partition: str,
) -> list[Any]:
    """The terms on the table's partition column alone (the day, or the users' buckets):
    what a dataset listed without a predicate (:mod:`dresscode.core.delta_kept`) prunes its
    files by cheaply — pyarrow tests the whole filter against every file's ranges otherwise,
    ~6 ms for ten users over 64 files."""
    import pyarrow.compute as pc

    terms: list[Any] = []
    if partition == PARTITION and days is not None:
        terms.append(pc.field(PARTITION).isin(day_strings(days)))
    for column, op, value in filters:
        if column == partition:
            terms.append(term(column, op, value))
        elif partition == BUCKET and column == "user_id" and op == "in":
            terms.append(pc.field(BUCKET).isin(sorted({user_bucket(str(v)) for v in value})))
    return terms


def rows_matching(
    rows: Any, days: Iterable[date | str] | None, filters: list[tuple[str, str, Any]]
) -> Any:
    """The ``rows`` (a pyarrow.Table in memory) the terms keep: the rows
    ``rows.filter(all_of(conditions(days, filters, ...)[0]))`` keeps, without the ranges.

    A mask computed with pyarrow.compute on the calling thread, then one filter: ``filter`` of
    an expression builds an Acero plan and runs it on pyarrow's thread pool, which for the few
    thousand rows of a kept read costs more than the filtering (~0.17 -> ~0.05 ms a call alone,
    and under load every hand-off to the pool's threads is a wait for a core).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    def column(name: str) -> Any:
        if name not in rows.column_names:  # as Acero says it
            raise pa.ArrowInvalid(f"No match for FieldRef.Name({name}) in {rows.schema}")
        return rows[name]

    def among(name: str, wanted: list[Any]) -> Any:
        values = column(name)
        try:  # the column's type (an empty list has none of its own)
            value_set = pa.array(wanted, type=values.type)
        except (pa.ArrowException, TypeError, ValueError):
            value_set = pa.array(wanted)  # let is_in say what does not match
        return pc.is_in(values, value_set=value_set)

    masks = []
    if days is not None:
        masks.append(among(PARTITION, day_strings(days)))
    for name, op, value in filters:
        if op in ("in", "not in"):
            found = among(name, list(value))
            masks.append(found if op == "in" else pc.invert(found))
        elif op in _COMPARISONS:
            masks.append(getattr(pc, _COMPARISONS[op])(column(name), value))
        else:
            raise ValueError(f"unsupported filter operator {op!r}")
    if not masks:
        return rows
    mask = masks[0]
    for more in masks[1:]:
        mask = pc.and_kleene(mask, more)  # as an expression's ``&``: null and false is false
    return rows.filter(mask)


def day_strings(days: Iterable[date | str]) -> list[str]:
    """The days as sorted, distinct ISO strings (the ``date`` partition's values)."""
    return sorted({d.isoformat() if isinstance(d, date) else str(d) for d in days})


def all_of(terms: list[Any]) -> Any:
    """The terms joined with AND (a pyarrow expression), or None for none."""
    found = None
    for term in terms:
        found = term if found is None else found & term
    return found


def any_range(column: str, ranges: list[tuple[str, str, str]]) -> Any:
    """``column`` within one of the ranges (and its bucket, when given): what pyarrow tests
    against row-group statistics."""
    import pyarrow.compute as pc

    field, found = pc.field(column), None
    for bucket, lo, hi in ranges:
        term = (field >= lo) & (field <= hi)
        if bucket:
            term = term & (pc.field(BUCKET) == bucket)
        found = term if found is None else found | term
    return found


def term(column: str, op: str, value: Any) -> Any:
    import pyarrow.compute as pc

    field = pc.field(column)
    if op == "in":
        return field.isin(list(value))
    if op == "not in":
        return ~field.isin(list(value))
    compare = _COMPARISONS.get(op)
    if compare is None:
        raise ValueError(f"unsupported filter operator {op!r}")
    return getattr(pc, compare)(field, value)


# pyarrow.compute's comparisons by filter operator: each takes an expression (the files' row
# filter) or a column in memory (a kept table's rows) alike.
_COMPARISONS = {
    "=": "equal",
    "==": "equal",
    "!=": "not_equal",
    "<": "less",
    "<=": "less_equal",
    ">": "greater",
    ">=": "greater_equal",
}
