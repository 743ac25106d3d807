"""``status``: how big and how fresh the mirror is, as text for people or
one JSON document for scripts (JSON whatever happens)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

from cli.config import Config
from gateway.ops.status import SyncStatus, mirror_bytes
from mirror import schema
from mirror.control import Control, control_path
from mirror.reader import Reader
from sync.service import CURSOR


async def document(config: Config, mirror: Path) -> dict[str, Any]:
    """``status --json``: the mirror's size, counts, last sync, lag, cursor,
    last error, and whether a sync worker runs."""
    is_demo = not config.upstream.url
    reader = Reader(mirror, connections=1, cache_bytes=16 << 20)
    await reader.open(3600)
    # (Looking must not create a control file.)
    control = Control(mirror) if control_path(mirror).exists() else None
    try:
        status = SyncStatus(control, reader)
        found = await status.document(config.upstream.url, "demo" if is_demo else "mirror")
        found["cursor"] = reader.meta(CURSOR)
    finally:
        await reader.close()
        if control is not None:
            control.close()
    found["mirror"] = {"path": str(mirror), "exists": True, "bytes": mirror_bytes(mirror)}
    return found


def text(document: dict[str, Any]) -> str:
    """The status document for people, one line a thing."""
    mirror, sync = document["mirror"], document["sync"]
    error = sync.get("last_error")
    if isinstance(error, dict):
        error = "; ".join(f"{part}: {what}" for part, what in error.items())
    if document["mode"] == "demo":
        synced = f"none (a demo built {sync.get('last_success') or '?'} from a recording)"
        worker = "none (demo)"
    else:
        synced = (sync.get("last_success") or "never") + (
            f" ({sync['lag_seconds']:,.0f} s ago)" if sync.get("lag_seconds") is not None else ""
        )
        worker = (
            f"{sync.get('state') or 'running'} (pid {sync.get('pid', '?')})"
            if sync["running"]
            else "not running"
        )
    lines = [
        f"mirror      {mirror['path']} ({mirror['bytes'] / 2**20:,.1f} MiB)",
        f"upstream    {document['upstream'] or 'none (demo)'}",
        f"initial     {document['initial_sync']}",
        f"sync worker {worker}",
        f"last synced {synced}",
        f"cursor      {document['cursor'] or 'none'}",
        f"last error  {error or 'none'}",
        "objects     "
        + ", ".join(f"{name} {count:,}" for name, count in document["counts"].items()),
    ]
    return "\n".join(lines)


def show(config: Config, mirror: Path, as_json: bool) -> int:
    """Print the status; the exit status (1: no mirror, or not one we can read)."""
    is_demo = not config.upstream.url
    if not mirror.exists():
        problem = (
            "no demo mirror yet (`serve` builds it)" if is_demo else "no mirror yet (run `sync`)"
        )
    else:
        try:
            found = asyncio.run(document(config, mirror))
        except (schema.SchemaTooNew, schema.LayoutMismatch, sqlite3.DatabaseError) as exc:
            problem = str(exc)
        else:
            print(json.dumps(found, indent=2) if as_json else text(found))
            return 0
    if as_json:  # (scripts get JSON whatever happens)
        unknown = {
            "mirror": {"path": str(mirror), "exists": mirror.exists(), "problem": problem},
            "upstream": config.upstream.url or None,
            "mode": "demo" if is_demo else "mirror",
        }
        print(json.dumps(unknown, indent=2))
    else:
        print(f"{mirror}: {problem}", file=sys.stderr)
    return 1
