"""``patchwork-gateway check``: the drift check, against a fake Patchwork.

A mirror synced from the fake must show no difference; changed behind the
mirror's back (no sync runs again), every change is named by resource, id
and field, in text and in JSON; an unreachable upstream is one line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from cli.check.engine import diff
from cli.check.report import ABSENT, brief, field_of
from cli.check.run import ORDER
from mirror import schema
from tests.mirroring import TOKEN, fake_upstream, serve, worker
from tests.support import free_port, replay_upstream, run_cli, tokens, write_config


async def _synced(tmp_path: Path, url: str, token: str = TOKEN) -> Path:
    """A mirror of ``url`` brought up to date (then no sync runs again)."""
    mirror = tmp_path / "mirror.sqlite3"
    async with worker(mirror, url, token) as sync:
        await sync.once()
    return write_config(tmp_path / "config.toml", url, mirror, free_port(), token=token)


def _check(config: Path, *args: str) -> tuple[int, str, str]:
    result = run_cli("check", "--config", str(config), *args, timeout=120)
    return result.returncode, result.stdout, result.stderr


def _ids(entry: dict[str, Any]) -> set[int]:
    return {obj["id"] for obj in entry["objects"]}


def _differences(report: dict[str, Any], resource: str, path: str) -> dict[int, Any]:
    field = report["resources"][resource]["fields"].get(path, {"differences": []})
    return {
        d["id"]: (d.get("mirror", ABSENT), d.get("upstream", ABSENT)) for d in field["differences"]
    }


async def test_a_synced_mirror_shows_no_difference(tmp_path):
    fake = fake_upstream()
    with serve(fake) as url:
        config = await _synced(tmp_path, url)

        code, out, err = _check(config)
        assert code == 0, out + err
        assert out.rstrip().endswith("no differences")
        assert err == ""  # no progress bar off a terminal, nothing logged
        rows = {line.split()[0]: line.split()[1:5] for line in out.splitlines()[4:15]}
        assert list(rows) == list(ORDER)
        assert rows["patches"] == ["767", "0", "0", "0"]
        assert rows["events"] == ["2,769", "0", "0", "0"]
        assert rows["checks"] == ["80", "0", "0", "0"]

        code, out, err = _check(config, "--sample", "20")
        assert code == 0, out + err
        assert "sample of 20 per resource" in out and out.rstrip().endswith("no differences")

        code, out, err = _check(config, "--json", "--resource", "patches", "--resource", "users")
        assert code == 0, out + err
        report = json.loads(out)
        assert report["drift"] is False and report["differences"] == 0
        assert list(report["resources"]) == ["users", "patches"]
        assert report["resources"]["patches"]["checked"] == 767
        # A user's settings (its own alone see them) are not compared.
        assert report["resources"]["users"]["fields"] == {}


async def test_recorded_patchwork_shows_no_difference(tmp_path):
    """Upstream: the recorded answers of a real Patchwork 3.x, as the sync
    identity got them; every object compared, in detail too."""
    with replay_upstream() as upstream:
        config = await _synced(tmp_path, upstream.url, tokens()["cibot"])
        for args in ((), ("--sample", "5000")):
            code, out, err = _check(config, *args)
            assert code == 0, out + err
            assert out.rstrip().endswith("no differences")
        assert re.search(r"^patches +767 +0 +0 +0$", out, re.M)
        assert re.search(r"^people +56 +0 +0 +0$", out, re.M)


async def test_changes_behind_the_mirrors_back_are_named(tmp_path):
    fake = fake_upstream()
    with serve(fake) as url:
        config = await _synced(tmp_path, url)
        assert fake.get("patches", 28)["state"] == "new"
        assert fake.get("patches", 10)["archived"] is False
        check_state = fake.get("checks", 3)["state"]
        assert check_state != "fail"
        project = fake.get("projects", 2)["name"]

        fake.set_state(28, "accepted")  # with an event
        fake.rename("projects", 2, "Renamed project")  # no event, embedded everywhere
        fake.delete("patches", 40)
        new = fake.new_series(1, ("New Person", "new@example.org"), n_patches=1)["patches"][0]
        fake.update("checks", 3, state="fail")  # no event
        fake.set_archived(10, True)  # no event

        code, out, err = _check(config)
        assert code == 1, out + err
        lines = out.splitlines()
        for expected in (
            'patches 28 state: mirror "new" upstream "accepted" (pending)',
            f'projects 2 name: mirror "{project}" upstream "Renamed project"',
            "patches 40: gone upstream, still in the mirror",
            f"patches {new}: missing from the mirror (pending)",
            f'checks 3 state: mirror "{check_state}" upstream "fail"',
            "patches 10 archived: mirror false upstream true",
        ):
            assert f"  {expected}" in lines, expected
        # Embedded copies of the project differ too, grouped by field.
        assert re.search(r"^patches project\.name: [0-9,]+$", out, re.M)
        # The new patch's events are newer than the mirror: listed, not counted.
        assert re.search(
            r"^events newer than the mirror's cursor \(not counted\): [0-9]+$", out, re.M
        )
        assert not re.search(r"^events missing", out, re.M)
        assert re.search(r"^drift: [0-9,]+ differences in [0-9]+ resources$", lines[-1])

        code, out, err = _check(config, "--json")
        assert code == 1, err
        report = json.loads(out)
        assert report["drift"] is True
        resources = report["resources"]
        assert report["differences"] == sum(
            r["missing"]["count"] + r["extra"]["count"] + r["differing"] for r in resources.values()
        )
        assert _differences(report, "patches", "state")[28] == ("new", "accepted")
        assert _differences(report, "projects", "name")[2] == (project, "Renamed project")
        assert _differences(report, "checks", "state")[3] == (check_state, "fail")
        assert _differences(report, "patches", "archived")[10] == (False, True)
        assert 40 in _ids(resources["patches"]["extra"])
        assert _ids(resources["patches"]["missing"]) == {new}
        assert resources["patches"]["missing"]["objects"] == [{"id": new, "pending": True}]
        assert resources["events"]["missing"]["count"] == 0
        assert resources["events"]["newer"]["count"] > 0
        assert resources["patches"]["fields"]["project.name"]["count"] > 0

        # A sample reading every page names it all as well...
        code, out, err = _check(config, "--sample", "1000")
        assert code == 1, err
        for expected in ("patches 28 state:", "projects 2 name:", "patches 40:", "checks 3 state:"):
            assert f"  {expected}" in out, expected
        # ...and a small one still finds ids on one side only, in the pages it reads.
        code, out, err = _check(config, "--sample", "5", "--resource", "patches")
        assert code == 1, err
        assert "  patches 40: gone upstream, still in the mirror" in out.splitlines()

    # The fake is gone: upstream unreachable is an error, in one line.
    code, out, err = _check(config)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("check: upstream ") and "unreachable" in err


def test_errors_are_one_line_and_exit_2(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    mirror = tmp_path / "mirror.sqlite3"
    config = write_config(tmp_path / "config.toml", dead, mirror, free_port())
    code, out, err = _check(config)
    assert (code, out) == (2, "")
    assert err == f"check: {mirror}: no mirror yet (run `sync`)\n"

    schema.prepare(mirror)  # an empty mirror, upstream down
    code, out, err = _check(config, "--json")
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith(f"check: upstream {dead} unreachable")

    result = run_cli("check", "--config", str(config), "--sample", "0")
    assert result.returncode == 2 and "positive integer" in result.stderr


@pytest.mark.parametrize(
    ("mine", "theirs", "expected"),
    [
        ({"a": 1}, {"a": 1}, []),
        ({"a": 0}, {"a": False}, [("a", 0, False)]),
        ({"p": {"name": "x"}}, {"p": {"name": "y"}}, [("p.name", "x", "y")]),
        ({"s": [{"n": 1}]}, {"s": [{"n": 2}]}, [("s.0.n", 1, 2)]),
        ({"s": [1]}, {"s": [1, 2]}, [("s", [1], [1, 2])]),
        ({"a": 1}, {"b": 1}, [("b", ABSENT, 1), ("a", 1, ABSENT)]),
    ],
)
def test_differences_by_dotted_path(mine, theirs, expected):
    assert list(diff(mine, theirs)) == expected


def test_fields_group_list_items_and_large_values_are_kept_in_brief():
    assert field_of("series.0.name") == "series.*.name"
    assert field_of("tags.12") == "tags.*"
    patches = [{"id": i, "name": "x" * 100} for i in range(10)]
    assert brief(patches[:1], patches) == (
        {"brief": "a list of 1 objects", "ids": [0]},
        {"brief": "a list of 10 objects", "ids": list(range(10))},
    )
    assert brief("new", "accepted") == ("new", "accepted")
    mine, theirs = brief(None, "d" * 10_000)
    assert mine is None and theirs.endswith("… (10,000 characters)")
