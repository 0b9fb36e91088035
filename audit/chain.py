"""The audit hash chain: one sealer links committed events in order; anyone can verify.

Writers never wait for each other: ``audit_record`` inserts an unsealed row in
the caller's transaction. ``chain_seal`` (a beat task every few seconds) takes a
transaction-scoped advisory lock so only one sealer runs, reads the committed
unsealed rows in id order and gives each the next ``seq`` and
``hash = sha256(prev_hash + canonical row)``. A row whose transaction commits
late simply gets a later seq: the chain order is seq order, not id order.

The canonical content is computed from the row as stored (read back from the
database), so sealer and verifier hash identical values.
"""

import hashlib
import json
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import QuerySet

from .models import AuditEvent

GENESIS = "0" * 64
SEAL_LOCK = 0x436F72656C6162  # advisory lock key: one sealer at a time
CONTENT_FIELDS = ["id", "occurred_at", "actor_id", "actor_label", "actor_role", "action", "target_type",
                  "target_id", "target_label", "trial_id", "site_id", "subject_id", "subject_code", "details",
                  "reason", "ip_address"]
_SELECT = ", ".join(CONTENT_FIELDS)


def canonical(row: dict) -> str:
    """The row's content as one deterministic string: sorted keys, UTC ISO timestamps, compact JSON."""
    content = {name: row[name] for name in CONTENT_FIELDS}
    content["occurred_at"] = row["occurred_at"].isoformat(timespec="microseconds")
    content["seq"] = row["seq"]
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def link_hash(*, prev_hash: str, row: dict) -> str:
    return hashlib.sha256((prev_hash + canonical(row)).encode()).hexdigest()


def _rows(cursor) -> list[dict]:
    names = [column.name for column in cursor.description]
    return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


def chain_seal(*, batch: int = 5000, max_batches: int = 100) -> int:
    """Seal committed unsealed events into the chain; returns how many. Idempotent, safe to run concurrently
    (a second sealer finds the lock taken and returns 0)."""
    sealed = 0
    for _ in range(max_batches):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [SEAL_LOCK])
            if not cursor.fetchone()[0]:
                return sealed
            cursor.execute("SELECT seq, hash FROM audit_auditevent WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1")
            head = cursor.fetchone()
            seq, prev = (head[0], head[1]) if head else (0, GENESIS)
            cursor.execute(f"SELECT {_SELECT} FROM audit_auditevent WHERE seq IS NULL ORDER BY id LIMIT %s",  # noqa: S608
                           [batch])
            rows = _rows(cursor)
            if not rows:
                return sealed
            values = []
            for row in rows:
                seq += 1
                row["seq"] = seq
                digest = link_hash(prev_hash=prev, row=row)
                values.append((row["id"], seq, prev, digest))
                prev = digest
            cursor.execute(
                "UPDATE audit_auditevent AS e SET seq = v.seq, prev_hash = v.prev_hash, hash = v.hash, "
                "sealed_at = now() FROM (SELECT unnest(%s::bigint[]) AS id, unnest(%s::bigint[]) AS seq, "
                "unnest(%s::text[]) AS prev_hash, unnest(%s::text[]) AS hash) AS v WHERE e.id = v.id",
                [[v[0] for v in values], [v[1] for v in values], [v[2] for v in values], [v[3] for v in values]])
            sealed += len(rows)
            if len(rows) < batch:
                return sealed
    return sealed


@dataclass(frozen=True)
class Verification:
    ok: bool
    count: int
    head_seq: int
    head_hash: str
    unsealed: int
    broken_seq: int | None = None
    broken_id: int | None = None
    problem: str = ""

    def summary(self) -> str:
        if self.ok:
            return f"OK: {self.count} events, head {self.head_hash} (seq {self.head_seq}), {self.unsealed} unsealed"
        return f"BROKEN at seq {self.broken_seq} (event id {self.broken_id}): {self.problem}"


def verify_chain(*, chunk: int = 5000) -> Verification:
    """Walk the whole chain in seq order in constant memory; report the first broken link."""
    prev, expected_seq, count = GENESIS, 1, 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM audit_auditevent WHERE seq IS NULL")
        unsealed = cursor.fetchone()[0]
        last_seq = 0
        while True:
            cursor.execute(f"SELECT {_SELECT}, seq, prev_hash, hash FROM audit_auditevent "  # noqa: S608
                           "WHERE seq > %s ORDER BY seq LIMIT %s", [last_seq, chunk])
            rows = _rows(cursor)
            if not rows:
                break
            for row in rows:
                problem = ""
                if row["seq"] != expected_seq:
                    problem = f"seq {expected_seq} is missing (next is {row['seq']}): an event was removed"
                elif row["prev_hash"] != prev:
                    problem = "prev_hash does not match the previous event's hash"
                elif link_hash(prev_hash=prev, row=row) != row["hash"]:
                    problem = "content does not match its hash: the event was altered"
                if problem:
                    return Verification(ok=False, count=count, head_seq=expected_seq - 1, head_hash=prev,
                                        unsealed=unsealed, broken_seq=row["seq"], broken_id=row["id"],
                                        problem=problem)
                prev, expected_seq, count = row["hash"], expected_seq + 1, count + 1
            last_seq = rows[-1]["seq"]
    return Verification(ok=True, count=count, head_seq=expected_seq - 1, head_hash=prev, unsealed=unsealed)


def chain_head() -> tuple[int, str]:
    """(seq, hash) of the newest sealed event; (0, GENESIS) for an empty chain."""
    row = AuditEvent.objects.filter(seq__isnull=False).order_by("-seq").values_list("seq", "hash").first()
    return row if row else (0, GENESIS)


def verify_events(*, events: QuerySet[AuditEvent]) -> list[int]:
    """Recompute the hash of each sealed event in ``events`` (e.g. one subject's); returns the ids that fail.

    This checks each row against its own seal, not the links between rows: a removed event is found by
    ``verify_chain``. Unsealed events in the set are skipped.
    """
    # the queryset's own WHERE on a raw SELECT: an ``id IN (subquery)`` was planned as a hash join over
    # the whole table
    if len(events.query.alias_map) <= 1:  # no joins: the WHERE reads the audit table alone
        where_sql, params = events.query.get_compiler(using=events.db).compile(events.query.where)
        where_sql = where_sql or "TRUE"
    else:
        ids_sql, params = events.order_by().values("id").query.sql_with_params()
        where_sql = f"id IN ({ids_sql})"
    failed = []
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {_SELECT}, seq, prev_hash, hash FROM audit_auditevent "  # noqa: S608
                       f"WHERE ({where_sql}) AND seq IS NOT NULL", params)
        for row in _rows(cursor):
            if link_hash(prev_hash=row["prev_hash"], row=row) != row["hash"]:
                failed.append(row["id"])
    return sorted(failed)
