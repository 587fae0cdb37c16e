"""`flockmq check-config FILE`: the validation `serve` runs, then the settings
in effect, printed as TOML that loads back to the same configuration."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner

from flockmq.app.cli import main
from flockmq.config import load_config


def check(tmp_path: Path, text: str) -> tuple[int, str]:
    path = tmp_path / "flockmq.toml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["check-config", str(path)])
    return result.exit_code, result.output


def test_a_good_config_prints_the_settings_in_effect(tmp_path: Path) -> None:
    code, output = check(tmp_path, f'port = 18883\nacceptors = 2\ndata_dir = "{tmp_path}"\n')
    assert code == 0
    assert "OK" in output.splitlines()[0]
    assert "port = 18883" in output
    assert "max_inflight = 64" in output  # a default
    assert "[[listeners]]" in output
    # what it prints loads back to the same configuration
    printed = tmp_path / "printed.toml"
    printed.write_text(output.split("\n", 1)[1])
    again = load_config(str(printed), {})
    first = load_config(str(tmp_path / "flockmq.toml"), {})
    assert dataclasses.asdict(again) == dataclasses.asdict(first) | {"listeners": again.listeners}
    assert again.listener_list() == first.listener_list()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("port = true", "port: expected int, got True"),
        ('port = "1883"', "port: expected int"),
        ("queue_qos0 = 1", "queue_qos0: expected bool"),
        ("acl_file = 3", "acl_file: expected str"),
        ("allow_anonymous = 1", "allow_anonymous: expected bool"),
        ("listeners = 1", "listeners: expected a list of tables"),
        ("max_inflight = 0", "max_inflight: must be positive"),
        ("sys_interval = nan", "sys_interval: must be a positive number"),
        ("connect_timeout = -1", "connect_timeout: must be a positive number"),
        ("max_keepalive = 70000", "max_keepalive: 0-65535"),
        ("max_session_expiry = -1", "max_session_expiry"),
        ('transport = "tcp"\ntcp_base_port = 65530', "tcp_base_port: the bus needs ports"),
        ("routers = 0", "routers: 0 is outside 1-64"),
        ("nonsense = 1", "unknown key 'nonsense'"),
        ('acl_file = "/nonexistent/acl"', "acl_file: /nonexistent/acl does not exist"),
        ("port = ", "config file"),  # not TOML
    ],
)
def test_a_bad_config_is_refused_naming_the_key(tmp_path: Path, text: str, error: str) -> None:
    code, output = check(tmp_path, f'data_dir = "{tmp_path}"\n{text}\n')
    assert code == 2
    assert error in output
