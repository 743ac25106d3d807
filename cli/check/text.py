"""``check`` for people and scripts: its options, the report as text (a
summary table, then the differences) or as one JSON document, a progress
bar on a terminal, and the exit status."""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
from typing import Any

import orjson

from cli.check.engine import CheckError
from cli.check.report import ABSENT, CHILDREN, Report, ids_of
from cli.check.run import ORDER, check
from cli.config import Config
from mirror import schema
from sync.reading import Progress, SyncError, UpstreamError

#: Of the differences kept, how many the text report shows.
SHOWN = 10


def format_text(report: Report) -> str:
    """The report for people: a summary table, then the differences."""
    mode = "full check" if report.sample is None else f"sample of {report.sample} per resource"
    lines = [
        f"upstream  {report.upstream} ({mode}: {report.requests:,} requests, "
        f"{report.seconds:,.1f} s)",
        f"mirror    {report.mirror} (cursor {report.cursor or 'none'})",
    ]
    if not report.initial_sync_complete:
        lines.append("note      the mirror's initial sync has not completed: expect differences")
    lines += ["", f"{'resource':<16}{'checked':>9}{'missing':>9}{'extra':>9}{'differing':>11}"]
    for name, tally in report.resources.items():
        if tally.skipped:
            lines.append(f"{name:<16}  skipped: {tally.skipped}")
            continue
        row = (
            f"{name:<16}{tally.checked:>9,}{tally.missing.count:>9,}"
            f"{tally.extra.count:>9,}{tally.differing:>11,}"
        )
        notes = []
        if name in CHILDREN:
            notes.append(f"lists of {tally.parents:,} {CHILDREN[name].parent}")
        if tally.newer.count:
            notes.append(f"{tally.newer.count:,} newer than the mirror, not counted")
        lines.append(row + (f"   ({'; '.join(notes)})" if notes else ""))

    pending_seen = False

    def mark(name: str, obj_id: int) -> str:
        nonlocal pending_seen
        if report.is_pending(name, obj_id):
            pending_seen = True
            return " (pending)"
        return ""

    def group(title: str, count: int, entries: list[str]) -> None:
        lines.append(f"{title}: {count:,}")
        lines.extend(f"  {entry}" for entry in entries[:SHOWN])
        if count > min(len(entries), SHOWN):
            lines.append(f"  … and {count - min(len(entries), SHOWN):,} more")

    lines.append("")
    for name, tally in report.resources.items():
        if tally.missing.count:
            group(
                f"{name} missing from the mirror",
                tally.missing.count,
                [
                    f"{name} {i}: missing from the mirror{mark(name, i)}"
                    for i in tally.missing.items
                ],
            )
        if tally.extra.count:
            group(
                f"{name} extra in the mirror",
                tally.extra.count,
                [f"{name} {i}: gone upstream, still in the mirror" for i in tally.extra.items],
            )
        for path, capped in sorted(tally.fields.items()):
            entries = [
                f"{name} {d.obj_id} {d.path}: mirror {show(d.mirror)} upstream {show(d.upstream)}"
                + mark(name, d.obj_id)
                for d in capped.items
            ]
            group(f"{name} {path}", capped.count, entries)
        if tally.newer.count:
            group(
                f"{name} newer than the mirror's cursor (not counted)",
                tally.newer.count,
                [f"{name} {i}" for i in tally.newer.items],
            )
    if pending_seen:
        lines.append(
            "(pending): named by an event newer than the mirror's cursor; "
            "the sync applies it at its next poll"
        )
    if lines[-1]:
        lines.append("")
    total = report.differences
    if total:
        drifted = sum(1 for t in report.resources.values() if t.differences)
        lines.append(f"drift: {total:,} differences in {drifted} resources")
    else:
        lines.append("no differences")
    return "\n".join(lines)


def show(value: Any, width: int = 80) -> str:
    """A value as the text report shows it: JSON, lists of objects by id."""
    if value is ABSENT:
        return "(absent)"
    ids = ids_of(value)
    if isinstance(value, dict) and set(value) == {"brief", "ids"}:
        ids = value["ids"]  # a list kept in brief
    if ids is not None:
        head = ", ".join(str(i) for i in ids[:20])
        return f"[ids {head}{', …' if len(ids) > 20 else ''}]"
    text = orjson.dumps(value).decode()
    return text if len(text) <= width else text[: width - 1] + "…"


DESCRIPTION = """\
Compare the mirror with upstream, object by object, as clients would see
them: each mirrored object is rendered by the gateway's own code (with
upstream's origin) and compared with upstream's answer at API 1.4.

Without --sample, every page of every list is read (about the requests of
an initial sync); comments and checks are read for every patch or cover
that may have any, and 100 others.  With --sample N, N objects per resource
are chosen at random from both sides' ids and compared in detail, and
random list pages show objects on one side only; events, which have no
detail, are compared by whole pages.

Reported by resource: objects missing from the mirror, objects the mirror
still has that upstream no longer has, and each differing field by dotted
path (patches 12 state: mirror "new" upstream "accepted").

Rules: events newer than the mirror's cursor are listed as "newer than
the mirror" and not counted (the sync reads events up to its cursor); a
difference in an object such an event names is counted and marked
"(pending)": the sync applies it at its next poll, so run the check again
to tell lag from drift.  A user's "settings" (shown to that user alone,
and forwarded upstream by the gateway) are not compared.  Resources not
visible to the sync identity are skipped.

Exit status: 0 no differences, 1 differences, 2 error (configuration,
no mirror, upstream unreachable or refusing the token).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``check`` subcommand's arguments."""
    parser.add_argument("--config", required=True, help="TOML configuration file")
    parser.add_argument(
        "--sample",
        type=_positive,
        metavar="N",
        help="check N objects per resource, chosen at random (default: everything)",
    )
    parser.add_argument(
        "--resource",
        action="append",
        choices=ORDER,
        metavar="R",
        help=f"check only this resource (repeatable): {', '.join(ORDER)}",
    )
    parser.add_argument("--json", action="store_true", help="one JSON document, for scripts")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def main(config: Config, args: argparse.Namespace) -> int:
    """Run ``check``: print the report; the exit status (0, 1 or 2)."""
    progress = Progress(bar=sys.stderr.isatty())
    try:
        report = asyncio.run(
            check(config, sample=args.sample, resources=args.resource, progress=progress)
        )
    except (
        CheckError,
        UpstreamError,
        SyncError,
        schema.SchemaTooNew,
        schema.LayoutMismatch,
    ) as exc:
        print(f"check: {exc}", file=sys.stderr)
        return 2
    except sqlite3.DatabaseError as exc:
        print(f"check: {config.storage.path}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    if args.json:
        print(orjson.dumps(report.document(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(format_text(report))
    return 1 if report.drift else 0
