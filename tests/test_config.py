"""A wrong or missing setting fails at start with one clear line naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.config import TOKEN_ENV, ConfigError, SyncConfig, load
from tests.support import run_cli


def _fails(tmp_path, text: str, *args: str) -> str:
    cfg = tmp_path / "config.toml"
    cfg.write_text(text)
    result = run_cli(*(args or ("serve",)), "--config", str(cfg))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("config error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[server]\nport = "http"\n', "[server] port"),
        ("[server]\nport = 70000\n", "[server] port"),
        ("[server]\nworkers = 0\n", "[server] workers"),
        ('[server]\nworkers = "2"\n', "[server] workers"),
        ("[server]\ncache_max_age = -1\n", "[server] cache_max_age"),
        ('[server]\naccess_log = "yes"\n', "[server] access_log"),
        ('[upstream]\nurl = "ftp://example.com"\n', "[upstream] url"),
        ("[upstream]\nconcurrency = 0\n", "[upstream] concurrency"),
        ('[storage]\npath = ""\n', "[storage] path"),
        ("[server]\nprot = 8080\n", "[server] prot"),
        ("[serverr]\nport = 8080\n", "[serverr]"),
        ('[logging]\nlevel = "loud"\n', "[logging] level"),
        ('[upstream]\nurl = "https://me:secret@pw.example.com"\n', "[upstream] url"),
        ('[server]\nallowed_hosts = "gw.example.com"\n', "[server] allowed_hosts"),
        ("[server\n", "not valid TOML"),
        ("[sync]\npoll_interval = 0\n", "[sync] poll_interval"),
        ('[sync]\nsweep_budget = "lots"\n', "[sync] sweep_budget"),
        ("[sync]\nevent_overlap = -1\n", "[sync] event_overlap"),
        ("[sync]\nwebhook_secret = 7\n", "[sync] webhook_secret"),
        ("[sync]\npoll = 10\n", "[sync] poll"),
    ],
)
def test_bad_setting_is_named_in_one_line(tmp_path, text, named):
    assert named in _fails(tmp_path, text)


def test_missing_file_is_named(tmp_path):
    result = run_cli("serve", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"config error: {tmp_path / 'nope.toml'}: no such file"


def test_sync_needs_an_upstream(tmp_path):
    assert "[upstream] url" in _fails(tmp_path, "[storage]\npath = 'm.sqlite3'\n", "sync", "--once")


def test_token_from_environment_wins(tmp_path, monkeypatch):
    cfg = tmp_path / "config.toml"
    cfg.write_text('[upstream]\nurl = "https://pw.example.com/"\ntoken = "from-file"\n')
    assert load(cfg).upstream.token == "from-file"
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    config = load(cfg)
    assert config.upstream.token == "from-env"
    assert config.upstream.url == "https://pw.example.com"


def test_relative_storage_is_next_to_the_config(tmp_path):
    cfg = tmp_path / "sub" / "config.toml"
    cfg.parent.mkdir()
    cfg.write_text('[storage]\npath = "m.sqlite3"\n')
    assert load(cfg).storage.path == cfg.parent.resolve() / "m.sqlite3"


def test_public_url_must_be_an_origin(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[server]\npublic_url = "https://gw.example.com/pw"\n')
    with pytest.raises(ConfigError, match=r"\[server\] public_url"):
        load(cfg)


def test_an_unusable_storage_path_is_named(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[storage]\npath = "{tmp_path}/no/such/dir/m.sqlite3"\n')
    result = run_cli("serve", "--config", str(cfg))
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"config error: {cfg}: [storage] path: folder")


def test_a_busy_port_is_one_clear_line(deployment, tmp_path):
    from urllib.parse import urlsplit

    busy = urlsplit(deployment.gateway).port
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[storage]\npath = "{tmp_path}/m.sqlite3"\n[server]\nport = {busy}\n'
        '[logging]\nlevel = "warning"\n'
    )
    result = run_cli("serve", "--config", str(cfg))
    assert result.returncode == 1
    assert f"cannot serve on 127.0.0.1:{busy}" in result.stderr
    assert "Traceback" not in result.stderr


def test_sync_and_run_need_an_upstream(tmp_path):
    for command in ("sync", "run"):
        assert "[upstream] url" in _fails(tmp_path, "[server]\nport = 8080\n", command)


def test_the_example_config_documents_every_sync_setting():
    example = load(Path(__file__).parent.parent / "config.example.toml")
    assert example.sync == SyncConfig()  # the documented values are the defaults


def test_default_hosts_are_the_listen_address_and_localhost_on_loopback():
    from cli.config import parse

    assert parse({}).server.allowed_hosts == ("127.0.0.1", "localhost", "::1")
    assert parse({"server": {"host": "10.0.0.5"}}).server.allowed_hosts == ("10.0.0.5",)
    assert parse({"server": {"host": "0.0.0.0"}}).server.allowed_hosts == (
        "localhost",
        "127.0.0.1",
        "::1",
    )
    explicit = {"host": "0.0.0.0", "allowed_hosts": ["pw.example.org"]}
    assert parse({"server": explicit}).server.allowed_hosts == ("pw.example.org",)
    public = {"host": "0.0.0.0", "public_url": "https://pw.example.org"}
    assert parse({"server": public}).server.allowed_hosts == ()


def _every_setting() -> list[tuple[str, str]]:
    from cli.config import _KNOWN

    return [(section, key) for section, keys in sorted(_KNOWN.items()) for key in sorted(keys)]


@pytest.mark.parametrize(("section", "key"), _every_setting())
def test_every_setting_names_itself_the_file_and_what_it_expects(
    tmp_path, capsys, monkeypatch, section, key
):
    from cli.main import main

    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.delenv("PATCHWORK_GATEWAY_WEBHOOK_SECRET", raising=False)
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f"[{section}]\n{key} = [{{}}]\n")  # no setting takes a list of tables
    assert main(["status", "--config", str(cfg)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"config error: {cfg}: [{section}] {key}: ")
    assert "expected" in lines[0] or "must" in lines[0]


def test_check_needs_an_upstream_and_names_the_file(tmp_path):
    line = _fails(tmp_path, "[storage]\npath = 'm.sqlite3'\n", "check")
    assert line == (
        f"config error: {tmp_path / 'config.toml'}: [upstream] url: not set, "
        "so there is nothing to compare with"
    )


@pytest.mark.parametrize(
    ("written", "origin", "dropped"),
    [
        ("https://pw.example.com/api/1.2/", "https://pw.example.com", "/api/1.2/"),
        ("https://pw.example.com/api/", "https://pw.example.com", "/api/"),
        ("https://pw.example.com/api", "https://pw.example.com", "/api"),
        ("http://127.0.0.1:8000/api/1.4", "http://127.0.0.1:8000", "/api/1.4"),
        ("https://example.com/patchwork/api/1.1/", "https://example.com/patchwork", "/api/1.1/"),
    ],
)
def test_an_api_url_is_the_instance_with_a_warning(written, origin, dropped):
    from cli.config import parse

    config = parse({"upstream": {"url": written}})
    assert config.upstream.url == origin
    (warning,) = config.warnings
    assert warning.startswith(f"[upstream] url: using {origin}, without {dropped!r}")


def test_an_origin_needs_no_warning():
    from cli.config import parse

    for url in ("https://pw.example.com", "https://pw.example.com/", "https://x.org/apis/"):
        assert parse({"upstream": {"url": url}}).warnings == ()


def test_command_line_settings_win_and_are_checked_alike(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[server]\nhost = "10.0.0.5"\nport = 8080\n')
    config = load(cfg, {"server": {"host": "127.0.0.1", "port": 9090}})
    assert (config.server.host, config.server.port) == ("127.0.0.1", 9090)
    # The Host names answered follow the address listened on.
    assert config.server.allowed_hosts == ("127.0.0.1", "localhost", "::1")
    assert load(None, {"server": {"port": 9091}}).server.port == 9091


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("[upstream]\ntoken = 1234567890\n", "1234567890"),
        ("[sync]\nwebhook_secret = 9876543210\n", "9876543210"),
        ('[upstream]\nurl = "ftp://me:hunter2@pw.example.com"\n', "hunter2"),
        ("[server]\nreplication_token = 123456789012345678\n", "123456789012345678"),
        ('[server]\nreplication_token = "too-short"\n', "too-short"),
    ],
)
def test_a_wrong_secret_is_named_not_shown(tmp_path, text, secret):
    line = _fails(tmp_path, text)
    assert secret not in line
