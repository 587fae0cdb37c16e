"""The public interface of authentication/authorization hooks (issue 11).

A hook module, named by `auth_hook = "mycompany.mqtt_auth"` in the config
(or `flockmq serve --auth-hook`), defines one or both of:

    def authenticate(client_id, username, password, peer, cert) -> Allow | Deny
    def authorize(client_id, username, action, topic) -> bool

either as plain functions or as `async def`. `password` is the CONNECT's
password (bytes) or None, `peer` the client's "address:port", `cert` the
verified client certificate's identity (its CN) or None; an authenticate()
that also takes a `certificate` parameter (or `**kwargs`) is given the
certificate's fields as it, a dict (`subject`, `issuer`: {name: value};
`serial`, `not_before`, `not_after`: str, as ssl's getpeercert() gives
them), at most `auth_hook_cert_bytes` of them, or None; `action` is
"publish" or "subscribe" and `topic` a topic name or filter. They run in
the broker's `auth` processes (flockmq/auth/), never in an acceptor, under a
time budget (`auth_hook_timeout`): see the README's "Authentication hooks".

This module is what a hook imports (`from flockmq.hooks import Allow,
Deny`), and what flockmq uses to load one (`load_hook`).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from flockmq.mqtt.reason_codes import ReasonCode

CONNECT: Final = "connect"  # (an acceptor's name for an authenticate() call)
# (an acceptor's name for the authorize("publish") of a CONNECT's will topic)
WILL: Final = "will"
PUBLISH: Final = "publish"
SUBSCRIBE: Final = "subscribe"
ACTIONS: Final = (PUBLISH, SUBSCRIBE)


@dataclass(frozen=True, slots=True)
class Allow:
    """The client may connect."""


@dataclass(frozen=True, slots=True)
class Deny:
    """The client may not connect; `reason` is the MQTT 5 CONNACK reason
    code (one of DENY_REASONS; a 3.1.1 client gets the matching return
    code: 0x86 -> 4, 0x87 and 0x8A -> 5, 0x85 -> 2, the others -> 3)."""

    reason: int = ReasonCode.NOT_AUTHORIZED


# CONNACK reason codes a hook may deny with (MQTT 5 section 3.2.2.2).
DENY_REASONS: Final = frozenset(
    {
        ReasonCode.UNSPECIFIED_ERROR,
        ReasonCode.CLIENT_IDENTIFIER_NOT_VALID,
        ReasonCode.BAD_USER_NAME_OR_PASSWORD,
        ReasonCode.NOT_AUTHORIZED,
        ReasonCode.SERVER_UNAVAILABLE,
        ReasonCode.SERVER_BUSY,
        ReasonCode.BANNED,
        ReasonCode.QUOTA_EXCEEDED,
        ReasonCode.CONNECTION_RATE_EXCEEDED,
    }
)


def deny_reason(verdict: object) -> int:
    """What a hook's `authenticate` result means: 0 for Allow, a CONNACK
    reason code for Deny (an unknown one, or a result that is neither, is
    NOT_AUTHORIZED: a hook that returns something odd denies)."""
    if isinstance(verdict, Allow):
        return 0
    if isinstance(verdict, Deny) and verdict.reason in DENY_REASONS:
        return int(verdict.reason)
    return int(ReasonCode.NOT_AUTHORIZED)


class HookError(Exception):
    """A hook module that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class Hook:
    """A loaded hook module's functions (None: not defined);
    `wants_certificate`: authenticate() takes `certificate` (a keyword)."""

    name: str
    authenticate: Callable[..., Any] | None
    authorize: Callable[..., Any] | None
    wants_certificate: bool = False


def takes_certificate(fn: Callable[..., Any] | None) -> bool:
    """Whether `fn` takes a `certificate` keyword (by name, or **kwargs):
    hooks written before it was given keep the five arguments they take."""
    if fn is None:
        return False
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin or odd callable: not asked
        return False
    return any(
        (p.name == "certificate" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        or p.kind == p.VAR_KEYWORD
        for p in parameters
    )


def load_hook(name: str) -> Hook:
    """Import the module `name`; HookError if it does not import or defines
    neither `authenticate` nor `authorize`."""
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # user code: anything may fail on import
        raise HookError(f"cannot import {name!r}: {type(exc).__name__}: {exc}") from exc
    functions = {}
    for attr in ("authenticate", "authorize"):
        value = getattr(module, attr, None)
        if value is not None and not callable(value):
            raise HookError(f"{name}.{attr} is not a function")
        functions[attr] = value
    if functions["authenticate"] is None and functions["authorize"] is None:
        raise HookError(f"{name} defines neither authenticate() nor authorize()")
    authenticate = functions["authenticate"]
    return Hook(name, authenticate, functions["authorize"], takes_certificate(authenticate))
