"""Compile a (valid) segment rule to one SQL condition over guests; see ``profiles.rules``.

The whole rule becomes a single boolean expression on the guest row: value conditions read the
guest's JSON traits, and event, revenue, session, experience and segment conditions are
``IN (SELECT guest_id … GROUP BY guest_id HAVING …)`` semi-joins that the database evaluates
once per query, not once per guest. Every condition is two-valued (``COALESCE(…, FALSE)``), so
``not`` is plain negation. PostgreSQL and SQLite get their own JSON functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL

from config.lib.db import on_postgres
from tracking.models import Event

from .models import Guest, Segment, SegmentMembership, Session
from .rules import is_number, moment_parse

SQL_OPS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
COMPARE = {
    "eq": lambda a, b: a == b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


@dataclass
class Compiled:
    sql: str
    params: list[Any] = field(default_factory=list)


def members_query(
    rule: dict, *, workspace_id: int, now: datetime, guest_ids: list[int] | None = None
) -> QuerySet[Guest]:
    """The live guests of the workspace that the rule selects, as one query.

    With ``guest_ids`` only those guests are looked at, and on PostgreSQL the event, session
    and membership subqueries read only their rows (an incremental run stays small).
    """
    compiled = Compiler(workspace_id=workspace_id, now=now, guest_ids=guest_ids).node(rule)
    guests = Guest.objects.filter(workspace_id=workspace_id, merged_into__isnull=True)
    if guest_ids is not None:
        guests = guests.filter(pk__in=guest_ids)
    return guests.filter(
        RawSQL(compiled.sql, compiled.params, output_field=BooleanField())  # noqa: S611
    )


class Compiler:
    def __init__(self, *, workspace_id: int, now: datetime, guest_ids: list[int] | None = None):
        self.workspace_id = workspace_id
        self.now = now
        self.postgres = on_postgres()
        self.guest_ids = list(guest_ids) if guest_ids is not None and self.postgres else None
        quote = connection.ops.quote_name
        self.guest_table = quote(Guest._meta.db_table)
        self.event_table = quote(Event._meta.db_table)
        self.session_table = quote(Session._meta.db_table)
        self.membership_table = quote(SegmentMembership._meta.db_table)
        self.segment_table = quote(Segment._meta.db_table)

    # --- logic -----------------------------------------------------------------------------

    def node(self, node: dict) -> Compiled:
        ((kind, body),) = node.items()
        if kind in ("all", "any"):
            parts = [self.node(child) for child in body]
            joiner = " AND " if kind == "all" else " OR "
            return Compiled(
                "(" + joiner.join(part.sql for part in parts) + ")",
                [param for part in parts for param in part.params],
            )
        if kind == "not":
            inner = self.node(body)
            return Compiled(f"(NOT {inner.sql})", inner.params)
        return getattr(self, kind)(body)

    @staticmethod
    def _sure(compiled: Compiled) -> Compiled:
        """Two-valued: NULL (unknown) counts as false."""
        return Compiled(f"COALESCE(({compiled.sql}), FALSE)", compiled.params)

    # --- JSON values -------------------------------------------------------------------------

    def _json(self, column: str, key: str) -> tuple[str, str, str, list, list, list]:
        """SQL for the JSON kind, text and number of ``column[key]``, with their params."""
        if self.postgres:
            kind = f"jsonb_typeof({column} -> %s)"
            text = f"({column} ->> %s)"
            number = (
                f"(CASE WHEN jsonb_typeof({column} -> %s) = 'number' "
                f"THEN ({column} ->> %s)::double precision END)"
            )
            return kind, text, number, [key], [key], [key, key]
        path = f'$."{key}"'
        kind = (
            f"(CASE json_type({column}, %s) WHEN 'integer' THEN 'number' WHEN 'real' THEN "
            f"'number' WHEN 'text' THEN 'string' WHEN 'true' THEN 'boolean' WHEN 'false' THEN "
            f"'boolean' ELSE json_type({column}, %s) END)"
        )
        text = f"json_extract({column}, %s)"
        number = (
            f"(CASE WHEN json_type({column}, %s) IN ('integer', 'real') "
            f"THEN json_extract({column}, %s) END)"
        )
        return kind, text, number, [path, path], [path], [path, path]

    def number(self, column: str, key: str) -> Compiled:
        """``column[key]`` as a number, NULL when it is not one."""
        _, _, number, _, _, number_p = self._json(column, key)
        return Compiled(number, number_p)

    def value_condition(self, column: str, key: str, op: str, value: Any) -> Compiled:
        kind, text, number, kind_p, text_p, number_p = self._json(column, key)
        if op == "exists":
            sql = f"COALESCE({kind}, 'null') <> 'null'"
            return Compiled(sql if value else f"NOT ({sql})", kind_p)
        if op == "in":
            parts = [self.value_condition(column, key, "eq", item) for item in value]
            return Compiled(
                "(" + " OR ".join(part.sql for part in parts) + ")",
                [param for part in parts for param in part.params],
            )
        if op == "neq":
            eq = self.value_condition(column, key, "eq", value)
            return Compiled(f"(NOT {eq.sql})", eq.params)
        if op == "contains":
            position = "strpos" if self.postgres else "instr"
            return self._sure(
                Compiled(
                    f"(CASE WHEN {kind} = 'string' THEN {position}({text}, %s) END) > 0",
                    [*kind_p, *text_p, value],
                )
            )
        symbol = SQL_OPS[op]
        if isinstance(value, bool):
            if self.postgres:
                sql = f"{kind} = 'boolean' AND {text} = %s"
                return self._sure(Compiled(sql, [*kind_p, *text_p, "true" if value else "false"]))
            path = kind_p[0]
            return self._sure(
                Compiled(f"json_type({column}, %s) = %s", [path, "true" if value else "false"])
            )
        if is_number(value):
            return self._sure(Compiled(f"{number} {symbol} %s", [*number_p, float(value)]))
        # By code point whatever the database's collation (SQLite's BINARY already does so).
        collate = ' COLLATE "C"' if self.postgres else ""
        return self._sure(
            Compiled(
                f"(CASE WHEN {kind} = 'string' THEN {text} END){collate} {symbol} %s",
                [*kind_p, *text_p, value],
            )
        )

    # --- conditions --------------------------------------------------------------------------

    def trait(self, body: dict) -> Compiled:
        return self.value_condition(
            f"{self.guest_table}.{connection.ops.quote_name('traits')}",
            body["key"],
            body["op"],
            body["value"],
        )

    def field(self, body: dict) -> Compiled:
        name, op, value = body["name"], body["op"], body["value"]
        if name in ("first_seen", "last_seen"):
            moment = self._datetime(moment_parse(value, "value", now=self.now))
            return self._sure(Compiled(f"{self.guest_table}.{name} {SQL_OPS[op]} %s", [moment]))
        if name == "guest_type":
            column = f"{self.guest_table}.guest_type"
        else:
            position = "strpos" if self.postgres else "instr"
            email = f"{self.guest_table}.email"
            # After the last '@': rtrim strips every character but '@' off the end, leaving
            # the prefix up to that '@' (portable: SQLite has no reverse or split_part).
            last_at = f"length(rtrim({email}, replace({email}, '@', '')))"
            column = (
                f"(CASE WHEN {position}({email}, '@') > 0 THEN "
                f"lower(substr({email}, {last_at} + 1)) END)"
            )
        values = value if op == "in" else [value]
        if name == "email_domain":
            values = [v.lower() for v in values]
        placeholders = ", ".join(["%s"] * len(values))
        sql = f"{column} IN ({placeholders})"
        if op == "neq":
            return Compiled(f"(NOT COALESCE(({sql}), FALSE))", values)
        return self._sure(Compiled(sql, values))

    @staticmethod
    def _datetime(moment: datetime) -> Any:
        """A raw parameter as the column stores it (SQLite: UTC text without an offset)."""
        return connection.ops.adapt_datetimefield_value(moment)

    def _since(self, days: int | None) -> Any:
        return None if days is None else self._datetime(self.now - timedelta(days=days))

    def _counted(
        self, *, select: str, params: list, aggregate: str, op: str, value: float
    ) -> Compiled:
        """Guests whose aggregate over ``select``'s rows satisfies ``op value``.

        Guests with no rows have an aggregate of 0: they are members when ``0 op value``.
        """
        select, params = self._scoped(select, params, "guest_id")
        having = f"{aggregate} {SQL_OPS[op]} %s"
        sql = (
            f"{self.guest_table}.id IN (SELECT guest_id {select} GROUP BY guest_id HAVING {having})"
        )
        all_params = [*params, value]
        if COMPARE[op](0, value):
            sql = f"({sql} OR {self.guest_table}.id NOT IN (SELECT guest_id {select}))"
            all_params += params
        return Compiled(sql, all_params)

    def _scoped(self, select: str, params: list, column: str) -> tuple[str, list]:
        """Restrict a subquery to the run's guests, when it has some (PostgreSQL)."""
        if self.guest_ids is None:
            return select, params
        return f"{select} AND {column} = ANY(%s)", [*params, self.guest_ids]

    def event(self, body: dict) -> Compiled:
        conditions = ["e.workspace_id = %s", "e.name = %s"]
        params: list[Any] = [self.workspace_id, body["name"]]
        since = self._since(body.get("within_days"))
        if since is not None:
            conditions.append("e.timestamp >= %s")
            params.append(since)
        for item in body.get("where", []):
            condition = self.value_condition(
                "e.properties", item["property"], item["op"], item["value"]
            )
            conditions.append(condition.sql)
            params += condition.params
        select = f"FROM {self.event_table} e WHERE " + " AND ".join(conditions)
        count = body.get("count", {"op": "gte", "value": 1})
        return self._counted(
            select=select, params=params, aggregate="COUNT(*)", op=count["op"], value=count["value"]
        )

    def revenue(self, body: dict) -> Compiled:
        conditions = ["e.workspace_id = %s", "e.revenue IS NOT NULL"]
        params: list[Any] = [self.workspace_id]
        since = self._since(body.get("within_days"))
        if since is not None:
            conditions.append("e.timestamp >= %s")
            params.append(since)
        select = f"FROM {self.event_table} e WHERE " + " AND ".join(conditions)
        # SQLite stores decimals as floats: round the float sum back to the column's places so
        # 0.1 + 0.2 equals 0.3 as it does in PostgreSQL's exact numeric.
        places = Event._meta.get_field("revenue").decimal_places
        aggregate = (
            "SUM(e.revenue)" if self.postgres else f"ROUND(SUM(CAST(e.revenue AS REAL)), {places})"
        )
        return self._counted(
            select=select, params=params, aggregate=aggregate, op=body["op"], value=body["value"]
        )

    def sessions(self, body: dict) -> Compiled:
        conditions = ["s.workspace_id = %s"]
        params: list[Any] = [self.workspace_id]
        since = self._since(body.get("within_days"))
        if since is not None:
            conditions.append("s.started_at >= %s")
            params.append(since)
        select = f"FROM {self.session_table} s WHERE " + " AND ".join(conditions)
        return self._counted(
            select=select, params=params, aggregate="COUNT(*)", op=body["op"], value=body["value"]
        )

    def experience(self, body: dict) -> Compiled:
        conditions = ["e.workspace_id = %s", "e.type = 'TRACKING'", "e.name = %s"]
        params: list[Any] = [self.workspace_id, body["friendly_id"]]
        if "variant" in body:
            variant = self.value_condition("e.properties", "variant", "eq", body["variant"])
            conditions.append(variant.sql)
            params += variant.params
        select, params = self._scoped(
            f"FROM {self.event_table} e WHERE " + " AND ".join(conditions), params, "e.guest_id"
        )
        return Compiled(f"{self.guest_table}.id IN (SELECT guest_id {select})", params)

    def segment(self, body: dict) -> Compiled:
        select, params = self._scoped(
            f"FROM {self.membership_table} m JOIN {self.segment_table} s ON s.id = m.segment_id "
            "WHERE s.workspace_id = %s AND s.slug = %s AND m.exited_at IS NULL",
            [self.workspace_id, body["slug"]],
            "m.guest_id",
        )
        return Compiled(f"{self.guest_table}.id IN (SELECT m.guest_id {select})", params)
