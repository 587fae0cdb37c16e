"""An example authentication/authorization hook for flockmq (issue 11).

Run it with:

    PYTHONPATH=examples flockmq serve --auth-hook auth_hook

or, in the TOML config, `auth_hook = "auth_hook"` (the module must be
importable by the broker: on PYTHONPATH, or installed as a package).

The rules it enforces:

- **Users** come from the dict `USERS` below, extended by the environment
  variable `FLOCKMQ_USERS` ("alice:secret,bob:hunter2"). A client whose
  username is not known, or whose password is wrong, is refused with 0x86
  "bad user name or password" (3.1.1: return code 4). A client with no
  username is refused with 0x87 "not authorized" (3.1.1: 5). A client whose
  username is in `BANNED` gets 0x8A "banned".
- **Devices** are the users whose name starts with `device-`: a device may
  connect only with a client id equal to its username, may publish only
  under `devices/<client id>/#`, and may subscribe only to
  `commands/<client id>/#`.
- **Operators** (the other users) may publish under `commands/#` and
  subscribe to anything but `$SYS/#`, which only `admin` may read.
- **Device certificates** (mTLS listeners): with `DEVICE_CERT_ORGANIZATION`
  set (environment variable `FLOCKMQ_DEVICE_CERT_ORG`), a device that
  presents a client certificate must present one whose subject's
  organizationName is that; unset (the default), certificates are not looked
  at beyond what the listener verified.

`authenticate` takes the optional `certificate` keyword: flockmq gives the
verified client certificate's fields to a hook whose authenticate() has
that parameter (`subject` and `issuer`, dicts of names such as
"commonName" and "organizationName"; `serial`, `not_before`, `not_after`,
strings as Python's ssl gives them; None without a certificate), bounded
to `auth_hook_cert_bytes` (4096) bytes: a field past that is left out. A
hook written with the five arguments only keeps working unchanged: it is
called as before, and `cert` is still the certificate's CN.

How flockmq runs it (see the README, "Authentication hooks"): in its own
`auth` processes, never in the processes that serve clients; each call has a
budget (`auth_hook_timeout`, 200 ms by default): a call that takes longer,
or raises, refuses that client's CONNECT with 0x88 "server unavailable"
(3.1.1: 3), or that topic with 0x80, and is logged and counted. Nothing else
waits for it. `authorize()` decisions are cached by the broker for
`auth_cache_ttl` seconds (5 by default): a rule changed here applies to a
topic a client already used within that time.

`authenticate` is a plain function here (flockmq runs it on a small thread
pool); `authorize` is `async` (flockmq runs it on the auth process's event
loop, calls overlapping). Either may be either: a hook that waits for a
database or an HTTP service should be `async`, so that its calls overlap
without a thread each.
"""

from __future__ import annotations

import hmac
import os
from typing import Any

from flockmq.hooks import Allow, Deny

USERS: dict[str, str] = {
    "admin": "change-me",
    "operator": "change-me-too",
    "device-42": "device-secret",
}
BANNED: set[str] = {"mallory"}
# the organizationName a device's client certificate must carry (None: any)
DEVICE_CERT_ORGANIZATION: str | None = os.environ.get("FLOCKMQ_DEVICE_CERT_ORG") or None

BAD_USER_NAME_OR_PASSWORD = 0x86
BANNED_CODE = 0x8A


def _users() -> dict[str, str]:
    """USERS, with FLOCKMQ_USERS ("name:password,...") added."""
    users = dict(USERS)
    for entry in os.environ.get("FLOCKMQ_USERS", "").split(","):
        name, sep, password = entry.partition(":")
        if sep and name:
            users[name.strip()] = password
    return users


USERS_IN_EFFECT = _users()  # read once, when the auth process imports this module


def authenticate(
    client_id: str,
    username: str | None,
    password: bytes | None,
    peer: str,
    cert: str | None,
    certificate: dict[str, Any] | None = None,
) -> Allow | Deny:
    """Called once per CONNECT that the password file (if any) let through.

    client_id: the client's id (assigned by the broker if it sent none);
    username: the CONNECT's username, or the certificate's CN with
    `use_identity_as_username`, or None; password: the CONNECT's password
    as bytes, or None; peer: "address:port"; cert: the verified client
    certificate's CN, or None (plain TCP, or no certificate); certificate:
    that certificate's fields (see the module docstring), or None."""
    if username is None:
        return Deny()  # 0x87 not authorized
    if username in BANNED:
        return Deny(BANNED_CODE)
    expected = USERS_IN_EFFECT.get(username)
    if expected is None or password is None:
        return Deny(BAD_USER_NAME_OR_PASSWORD)
    # constant time, so the time taken does not say how much of it matched
    if not hmac.compare_digest(password, expected.encode()):
        return Deny(BAD_USER_NAME_OR_PASSWORD)
    if username.startswith("device-") and (
        client_id != username or not _device_certificate_ok(certificate)
    ):
        return Deny()  # a device connects as itself (and with one of our certificates)
    return Allow()


def _device_certificate_ok(certificate: dict[str, Any] | None) -> bool:
    """A device's client certificate, if it presented one, is one of ours
    (when DEVICE_CERT_ORGANIZATION says what ours are)."""
    if certificate is None or DEVICE_CERT_ORGANIZATION is None:
        return True
    subject = certificate.get("subject") or {}
    return bool(subject.get("organizationName") == DEVICE_CERT_ORGANIZATION)


async def authorize(client_id: str, username: str | None, action: str, topic: str) -> bool:
    """Called for each PUBLISH topic and SUBSCRIBE filter the ACL file (if
    any) allowed, unless the broker has the decision cached. action is
    "publish" or "subscribe"; for "subscribe", `topic` is a filter (it may
    hold `+` and `#`). Return True to allow; anything else denies."""
    if username is None:
        return False
    if username.startswith("device-"):
        if action == "publish":
            return topic.startswith(f"devices/{client_id}/")
        return topic == f"commands/{client_id}/#" or topic.startswith(f"commands/{client_id}/")
    if topic.startswith("$SYS"):
        return action == "subscribe" and username == "admin"
    if action == "publish":
        return topic.startswith("commands/")
    return True
