"""The auth hook the e2e tests run (tests/e2e/test_auth_hooks.py puts this
directory on PYTHONPATH): decides by username and topic, and misbehaves on
purpose for the users and topics named "slow..." and "boom...".

authenticate() is a plain function (run on the auth process's threads),
authorize() an async one (run on its event loop), so both kinds are tested.
"""

from __future__ import annotations

import asyncio
import time

from flockmq.hooks import Allow, Deny


def authenticate(
    client_id: str, username: str | None, password: bytes | None, peer: str, cert: str | None
) -> Allow | Deny:
    if username is None or username.startswith("good"):
        return Allow()
    if username.startswith("slow"):
        time.sleep(2.0)  # past its budget (0.2 s by default, 1 s in test_auth_hooks)
        return Allow()
    if username.startswith("boom"):
        raise RuntimeError("the hook's database is down")
    if username.startswith("banned"):
        return Deny(0x8A)
    if username.startswith("pw") and password != b"open sesame":
        return Deny(0x86)
    if username.startswith("pw"):
        return Allow()
    return Deny()


async def authorize(client_id: str, username: str | None, action: str, topic: str) -> bool:
    if topic.startswith("slowtopic/"):
        await asyncio.sleep(2.0)
    if topic.startswith("boomtopic/"):
        raise ValueError("no such rule")
    if topic.startswith("secret/"):
        return False
    return not (action == "publish" and topic.startswith("readonly/"))
