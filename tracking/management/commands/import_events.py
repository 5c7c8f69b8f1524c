import gzip
import io
import os
import sys
import zlib

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from tracking.errors import IngestError
from tracking.imports import IMPORT_BATCH, ImportStats, ndjson_import
from tracking.models import Source
from tracking.selectors import source_get_by_write_key

HELP = """Backfill events from NDJSON files: one Segment-spec message per line, as Segment's
and RudderStack's exports write them, plain or gzipped (recognised by content, not by name;
`-` reads standard input). Every line goes through the /v1 door's parser and the same pipeline
as live traffic (erased guests, dedup, guests and merges, sessions, segments), keeping the
times the export recorded: `timestamp` as written (it is already clock-corrected), `receivedAt`
as the time it was first received (else the timestamp), so historic events are neither clamped
nor taken for fresh ones and land in the sessions of their own time.

Importing the same file again stores nothing twice, whatever the dedup window: a message whose
messageId is already stored as an event of the workspace (by an earlier import or live) is
skipped; a line without a messageId gets one made from its content (`import-` + its SHA-256,
`-N` for the N-th identical line); a bad line is kept once as a failed event with the file, the
line number and the reason. Batches of --batch-size lines are one transaction each: a run that
stops halfway keeps what it stored, and running it again finishes the rest.

The source is named by --source (its prop_id or its name; --workspace, by name or portal_id,
when several workspaces have a source of that name) or by --write-key."""


class Command(BaseCommand):
    help = HELP

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", metavar="FILE", help="NDJSON file, .gz or -")
        parser.add_argument("--source", help="the source's prop_id or name")
        parser.add_argument("--workspace", help="workspace name or portal_id, for --source")
        parser.add_argument("--write-key", help="the source's write key, instead of --source")
        parser.add_argument(
            "--batch-size",
            type=int,
            default=IMPORT_BATCH,
            help=f"lines per transaction (default {IMPORT_BATCH:,})",
        )
        parser.add_argument(
            "--threads",
            type=int,
            default=None,
            help="batches stored side by side on PostgreSQL (default FOOTPRINT_DRAIN_THREADS)",
        )
        parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def handle(
        self, *args, files, source, workspace, write_key, batch_size, threads, quiet, **options
    ):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        if threads is not None and threads < 1:
            raise CommandError("--threads must be at least 1")
        if files.count("-") > 1:
            raise CommandError("standard input (-) can be read only once")
        target = self._source(source, workspace, write_key)
        for name in files:
            if name != "-" and not os.path.isfile(name):
                raise CommandError(f"{name}: no such file")
            if name != "-" and not os.access(name, os.R_OK):
                raise CommandError(f"{name}: not readable")
        total = ImportStats()
        for name in files:
            stats = self._import(target, name, batch_size=batch_size, threads=threads, quiet=quiet)
            self._summary(f"{'standard input' if name == '-' else name}", target, stats)
            total.add(stats)
        if len(files) > 1:
            self._summary(f"{len(files)} files", target, total)

    def _source(self, name_or_id: str | None, workspace: str | None, write_key: str | None):
        if bool(name_or_id) == bool(write_key):
            raise CommandError("name the source to import into: --source or --write-key (one)")
        if write_key:
            if workspace:
                raise CommandError("--workspace goes with --source, not with --write-key")
            try:
                return source_get_by_write_key(write_key)
            except IngestError:
                raise CommandError("no active source has that write key") from None
        found = Source.objects.select_related("workspace")
        if workspace:
            found = found.filter(
                **(
                    {"workspace__portal_id": int(workspace)}
                    if workspace.isdigit()
                    else {"workspace__name": workspace}
                )
            )
        # A prop_id first (unique), else a name (unique within a workspace).
        matches = list(found.filter(prop_id=int(name_or_id))[:1]) if name_or_id.isdigit() else []
        matches = matches or list(found.filter(name=name_or_id)[:2])
        where = f" in workspace {workspace!r}" if workspace else ""
        if not matches:
            raise CommandError(f"no source with prop_id or name {name_or_id!r}{where}")
        if len(matches) > 1:
            raise CommandError(
                f"several workspaces have a source named {name_or_id!r}; give --workspace "
                "or the source's prop_id"
            )
        if not matches[0].is_active:
            raise CommandError(f"source {matches[0]} is inactive; activate it first")
        return matches[0]

    def _import(
        self, source: Source, name: str, *, batch_size: int, threads: int | None, quiet: bool
    ) -> ImportStats:
        raw = sys.stdin.buffer if name == "-" else open(name, "rb")  # noqa: SIM115
        try:
            buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)
            compressed = buffered.peek(2)[:2] == b"\x1f\x8b"
            stream = gzip.GzipFile(fileobj=buffered) if compressed else buffered
            size = os.fstat(raw.fileno()).st_size if name != "-" else None
            label = "stdin" if name == "-" else os.path.basename(name)
            with tqdm(
                total=size or None,
                unit="B" if size else " batches",
                unit_scale=bool(size),
                desc=label,
                disable=quiet,
            ) as bar:

                def on_batch(stats: ImportStats) -> None:
                    if size:
                        bar.update(min(raw.tell(), size) - bar.n)
                    else:
                        bar.update(1)
                    done.add(stats)
                    bar.set_postfix(lines=f"{done.lines:,}", stored=f"{done.stored:,}")

                done = ImportStats()
                try:
                    return ndjson_import(
                        source=source,
                        lines=stream,
                        file_name=name if name != "-" else "stdin",
                        batch_size=batch_size,
                        threads=threads,
                        on_batch=on_batch,
                    )
                except (OSError, EOFError, zlib.error) as error:
                    if done.lines:
                        self._summary(f"{name} (up to line {done.lines:,})", source, done)
                    raise CommandError(
                        f"{name}: cannot read past line {done.lines:,}: {error}. What came "
                        "before is stored; the same command again skips it and goes on."
                    ) from None
        finally:
            if name != "-":
                raw.close()

    def _summary(self, label: str, source: Source, stats: ImportStats) -> None:
        rate = stats.lines / stats.seconds if stats.seconds else 0.0
        skipped = stats.already_stored + stats.duplicates
        lines = [
            f"{label} into {source}: {stats.lines:,} line(s) in {stats.seconds:.2f} s "
            f"({rate:,.0f} lines/s)",
            f"  stored      {stats.stored:,} event(s)",
            f"  duplicates  {skipped:,} skipped (messageId already stored: "
            f"{stats.already_stored:,}, repeated within a batch: {stats.duplicates:,})",
        ]
        if stats.suppressed:
            lines.append(f"  erased      {stats.suppressed:,} dropped (erased guests' identifiers)")
        if stats.blank:
            lines.append(f"  blank       {stats.blank:,} line(s) ignored")
        lines.append(
            f"  failed      {stats.failed:,} line(s)"
            + (
                f" ({stats.failed - stats.failed_known:,} new failed event(s), "
                f"{stats.failed_known:,} recorded by an earlier run)"
                if stats.failed
                else ""
            )
        )
        for code, (count, reason, numbers) in sorted(
            stats.reasons.items(), key=lambda item: -item[1][0]
        ):
            more = ", …" if count > len(numbers) else ""
            where = ", ".join(str(n) for n in numbers)
            lines.append(f"    {code} x{count:,}: {reason} (line {where}{more})")
        self.stdout.write("\n".join(lines))
