"""Loading a hook module (flockmq.hooks) and the configuration that names it:
`auth_hook`, `auth_processes` (1 with a hook, 0 without), and `flockmq
check-config` refusing a module that does not import or defines neither
function."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from flockmq.app.cli import main
from flockmq.config import Config, ConfigError, load_config
from flockmq.hooks import Allow, Deny, HookError, deny_reason, load_hook, takes_certificate


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on sys.path for the test's hook modules."""
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "hook_both.py").write_text(
        "from flockmq.hooks import Allow\n"
        "def authenticate(client_id, username, password, peer, cert):\n"
        "    return Allow()\n"
        "async def authorize(client_id, username, action, topic):\n"
        "    return True\n"
    )
    (tmp_path / "hook_authorize.py").write_text("def authorize(*args):\n    return False\n")
    (tmp_path / "hook_none.py").write_text("x = 1\n")
    (tmp_path / "hook_broken.py").write_text("import no_such_module_anywhere\n")
    (tmp_path / "hook_not_callable.py").write_text("authenticate = 3\n")
    return tmp_path


def test_load_hook_finds_the_functions(modules: Path) -> None:
    hook = load_hook("hook_both")
    assert hook.authenticate is not None and hook.authorize is not None
    hook = load_hook("hook_authorize")
    assert hook.authenticate is None and hook.authorize is not None


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("hook_none", "defines neither"),
        ("hook_broken", "cannot import 'hook_broken': ModuleNotFoundError"),
        ("hook_not_callable", "is not a function"),
        ("hook_that_does_not_exist", "cannot import"),
    ],
)
def test_load_hook_refuses_a_module_it_cannot_use(modules: Path, name: str, why: str) -> None:
    with pytest.raises(HookError, match=why):
        load_hook(name)


def test_deny_reasons() -> None:
    assert deny_reason(Allow()) == 0
    assert deny_reason(Deny()) == 0x87
    assert deny_reason(Deny(0x86)) == 0x86
    assert deny_reason(Deny(0x10)) == 0x87  # not a CONNACK refusal
    assert deny_reason(True) == 0x87  # neither Allow nor Deny


def test_auth_processes_default_to_one_with_a_hook_and_none_without(modules: Path) -> None:
    assert Config(data_dir="/tmp/x").resolved().auth_processes == 0
    config = Config(data_dir="/tmp/x", auth_hook="hook_authorize").resolved()
    assert config.auth_processes == 1 and config.auth_hook_functions == ["authorize"]
    config = Config(data_dir="/tmp/x", auth_hook="hook_both", auth_processes=3).resolved()
    assert config.auth_processes == 3
    assert config.auth_hook_functions == ["authenticate", "authorize"]
    with pytest.raises(ConfigError, match="auth_processes: 0, but auth_hook"):
        Config(data_dir="/tmp/x", auth_hook="hook_both", auth_processes=0).resolved()
    with pytest.raises(ConfigError, match="auth_hook_timeout"):
        Config(data_dir="/tmp/x", auth_hook="hook_both", auth_hook_timeout=0).resolved()
    for bad in (-1, 2 * 1024 * 1024):
        with pytest.raises(ConfigError, match="auth_hook_cert_bytes"):
            Config(data_dir="/tmp/x", auth_hook="hook_both", auth_hook_cert_bytes=bad).resolved()
    assert Config(data_dir="/tmp/x", auth_hook="hook_both", auth_hook_cert_bytes=0).resolved()


def test_endpoints_and_ids_of_auth_processes_follow_the_others() -> None:
    config = Config(workers=2, acceptors=3, auth_processes=2, transport="tcp", tcp_base_port=20000)
    ports = {
        config.router_endpoint(),
        config.router_work_endpoint(),
        *(config.worker_endpoint(i) for i in range(2)),
        *(config.worker_work_endpoint(i) for i in range(2)),
        *(config.acceptor_endpoint(i) for i in range(3)),
        *(config.auth_endpoint(i) for i in range(2)),
    }
    assert len(ports) == 1 + 1 + 2 + 2 + 3 + 2  # all distinct
    ids = {0, *(config.worker_id(i) for i in range(2)), *(config.acceptor_id(i) for i in range(3))}
    assert {config.auth_id(0), config.auth_id(1)}.isdisjoint(ids)


def test_check_config_imports_the_hook(modules: Path) -> None:
    good = modules / "good.toml"
    good.write_text('auth_hook = "hook_both"\nauth_cache_ttl = 2\n')
    result = CliRunner().invoke(main, ["check-config", str(good)])
    assert result.exit_code == 0, result.output
    assert 'auth_hook = "hook_both"' in result.output and "auth_processes = 1" in result.output
    assert "auth_hook_functions" not in result.output  # found, not a setting
    bad = modules / "bad.toml"
    bad.write_text('auth_hook = "hook_none"\n')
    result = CliRunner().invoke(main, ["check-config", str(bad)])
    assert result.exit_code == 2 and "auth_hook: hook_none defines neither" in result.output
    assert load_config(str(good), {}).auth_cache_ttl == 2.0
    with pytest.raises(ConfigError, match="unknown key"):
        (modules / "derived.toml").write_text('auth_hook_functions = ["authorize"]\n')
        load_config(str(modules / "derived.toml"), {})


def test_an_authenticate_that_takes_certificate_is_given_it() -> None:
    def five(client_id: str, username: str, password: bytes, peer: str, cert: str) -> None: ...

    def named(
        client_id: str,
        username: str,
        password: bytes,
        peer: str,
        cert: str,
        certificate: dict[str, object] | None = None,
    ) -> None: ...

    def keyword_only(*args: object, certificate: object = None) -> None: ...

    def any_keywords(*args: object, **kwargs: object) -> None: ...

    def positional_only(
        a: object, b: object, c: object, d: object, e: object, certificate: object, /
    ) -> None: ...

    assert not takes_certificate(five) and not takes_certificate(None)
    assert takes_certificate(named) and takes_certificate(keyword_only)
    assert takes_certificate(any_keywords)
    assert not takes_certificate(positional_only)  # it could not be given by name
    assert not takes_certificate(print)  # no signature to read: the old call
