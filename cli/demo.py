"""The demo mirror: what the gateway serves when no upstream is configured.

It is built by the real sync code from the recorded crawl shipped with the
package (``gateway/demo_data``: the crawl the tests replay, and the
recorded instance's 404 page), with no network needed, so a newcomer sees
a working API on a fresh machine, from a source tree or an installed
wheel alike.  Responses say so in the ``X-Patchwork-Gateway``
header, and the log says so at start-up.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import orjson

from mirror import schema, store
from sync.service import Recording, mirror_recording, read_records

log = logging.getLogger(__name__)

DEMO_ORIGIN = "http://demo.invalid"
FIXTURE_ENV = "PATCHWORK_GATEWAY_FIXTURES"


class DemoMissing(RuntimeError):
    """The demo's recorded data is not where it should be."""


def fixtures_dir() -> Path:
    configured = os.environ.get(FIXTURE_ENV)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent / "demo_data"


def demo_path(storage: Path) -> Path:
    return storage.with_name(storage.stem + "-demo.sqlite3")


def _recorded_404(fixtures: Path) -> tuple[str, str] | None:
    """Split a recorded 404 page around the path it names."""
    shipped = fixtures / "not-found.json"
    if shipped.exists():
        before, after = orjson.loads(shipped.read_bytes())
        return str(before), str(after)
    conformance = fixtures / "conformance.jsonl.xz"
    if not conformance.exists():
        return None
    for rec in read_records(conformance):
        body = rec.get("body")
        if rec["status"] == 404 and isinstance(body, str) and "<code>" in body:
            path = rec["path"].split("?")[0]
            if f"<code>{path}</code>" in body:
                before, _, after = body.partition(path)
                return before, after
    return None


async def build(storage: Path) -> Path:
    """Build (once) and return the demo mirror next to ``storage``."""
    path = demo_path(storage)
    fixtures = fixtures_dir()
    crawl = fixtures / "crawl.jsonl.xz"
    if not crawl.exists() and not path.exists():
        # (Before opening: no empty mirror file is left behind.)
        raise DemoMissing(
            f"the demo's recorded data is missing ({crawl}); reinstall patchwork-gateway, "
            f"or set [upstream] url to mirror a real instance"
        )
    try:
        db = await schema.connect(path)
    except (schema.LayoutMismatch, schema.SchemaTooNew):
        log.info("the demo mirror %s is from another build: building it anew", path)
        for stale in path.parent.glob(path.name + "*"):
            stale.unlink()
        db = await schema.connect(path)
    try:
        if await store.get_meta(db, "sync.state") == "complete":
            return path
        if not crawl.exists():
            raise DemoMissing(f"the demo's recorded data is missing ({crawl})")
        log.info("building the demo mirror at %s from %s", path, crawl)
        recording = Recording.from_file(crawl, DEMO_ORIGIN)
        report = await mirror_recording(db, recording, DEMO_ORIGIN, _recorded_404(fixtures))
        log.info("demo mirror built: %d objects in %.1fs", report.objects, report.seconds)
        await store.set_meta(db, "demo", orjson.dumps(True).decode())
    finally:
        await db.close()
    return path
