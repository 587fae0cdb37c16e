"""examples/auth_hook.py loads as a hook and does what its docstring says."""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from typing import Any

import pytest

from flockmq.hooks import deny_reason, load_hook

EXAMPLES = Path(__file__).parents[3] / "examples"


def test_the_example_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    hook = load_hook("auth_hook")
    assert hook.authenticate is not None and hook.authorize is not None

    def connect(client_id: str, username: str | None, password: bytes | None) -> int:
        assert hook.authenticate is not None
        return deny_reason(hook.authenticate(client_id, username, password, "10.0.0.1:1", None))

    assert connect("device-42", "device-42", b"device-secret") == 0
    assert connect("other", "device-42", b"device-secret") == 0x87
    assert connect("x", "admin", b"wrong") == 0x86
    assert connect("x", "nobody", b"x") == 0x86
    assert connect("x", "mallory", b"x") == 0x8A
    assert connect("x", None, None) == 0x87

    def allowed(client_id: str, username: str, action: str, topic: str) -> bool:
        assert hook.authorize is not None
        return bool(asyncio.run(hook.authorize(client_id, username, action, topic)))

    assert allowed("device-42", "device-42", "publish", "devices/device-42/temp")
    assert not allowed("device-42", "device-42", "publish", "devices/device-43/temp")
    assert allowed("device-42", "device-42", "subscribe", "commands/device-42/#")
    assert not allowed("device-42", "device-42", "subscribe", "#")
    assert allowed("op", "operator", "publish", "commands/device-42/reboot")
    assert not allowed("op", "operator", "subscribe", "$SYS/#")
    assert allowed("adm", "admin", "subscribe", "$SYS/#")


def test_the_example_hook_takes_the_certificate_and_checks_a_devices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    hook = load_hook("auth_hook")
    assert hook.wants_certificate and hook.authenticate is not None
    module = importlib.import_module("auth_hook")
    ours = {"subject": {"commonName": "device-42", "organizationName": "Acme"}, "issuer": {}}
    theirs = {"subject": {"commonName": "device-42", "organizationName": "Evil"}, "issuer": {}}

    def connect(certificate: dict[str, Any] | None) -> int:
        assert hook.authenticate is not None
        verdict = hook.authenticate(
            "device-42", "device-42", b"device-secret", "10.0.0.1:1", "device-42", certificate
        )
        return deny_reason(verdict)

    assert connect(theirs) == 0  # no organization required: certificates not looked at
    monkeypatch.setattr(module, "DEVICE_CERT_ORGANIZATION", "Acme")
    assert connect(ours) == 0 and connect(None) == 0
    assert connect(theirs) == 0x87
    # called the old way, with five arguments, it still answers
    assert deny_reason(hook.authenticate("x", "admin", b"change-me", "10.0.0.1:1", None)) == 0
