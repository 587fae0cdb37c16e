"""flockmq.frontend.authentication: the decision on a CONNECT's credentials,
and the growing delay for addresses that keep failing."""

from __future__ import annotations

import pytest

from flockmq.frontend.authentication import Authenticator, FailureThrottle, Refusal, Verdict
from flockmq.frontend.passwords import PasswordFile, hash_password
from flockmq.listeners import Listener
from flockmq.mqtt.reason_codes import V5_TO_V3_CONNACK, ReasonCode

USERS = PasswordFile({"alice": hash_password(b"secret"), "bob": hash_password(b"hunter2")})
LOOPBACK = Listener("127.0.0.1", 1883)
PUBLIC = Listener("0.0.0.0", 1883)


def test_refusals_carry_the_connack_codes_of_both_versions() -> None:
    assert Refusal.BAD_CREDENTIALS.value == ReasonCode.BAD_USER_NAME_OR_PASSWORD
    assert int(Refusal.BAD_CREDENTIALS.value) == 0x86
    assert Refusal.NOT_AUTHORIZED.value == ReasonCode.NOT_AUTHORIZED
    assert int(Refusal.NOT_AUTHORIZED.value) == 0x87
    assert V5_TO_V3_CONNACK[Refusal.BAD_CREDENTIALS.value] == 4
    assert V5_TO_V3_CONNACK[Refusal.NOT_AUTHORIZED.value] == 5


@pytest.mark.parametrize(
    ("username", "password", "verdict"),
    [
        ("alice", b"secret", Verdict("alice")),
        ("bob", b"hunter2", Verdict("bob")),
        ("alice", b"hunter2", Verdict(refusal=Refusal.BAD_CREDENTIALS)),
        ("alice", None, Verdict(refusal=Refusal.BAD_CREDENTIALS)),
        ("mallory", b"secret", Verdict(refusal=Refusal.BAD_CREDENTIALS)),
        ("admin", None, Verdict(refusal=Refusal.BAD_CREDENTIALS)),
        (None, None, Verdict(refusal=Refusal.NOT_AUTHORIZED)),
    ],
)
def test_with_a_password_file_usernames_need_their_password(
    username: str | None, password: bytes | None, verdict: Verdict
) -> None:
    for listener in (LOOPBACK, PUBLIC):
        assert Authenticator(listener, USERS, None).authenticate(username, password) == verdict


def test_anonymous_clients_where_allowed() -> None:
    # make run: loopback, no password file
    assert Authenticator(LOOPBACK, None, None).authenticate(None, None) == Verdict()
    # nothing set up to authenticate, but reachable from other hosts: only if said so
    assert not Authenticator(PUBLIC, None, None).authenticate(None, None).accepted
    assert Authenticator(PUBLIC, None, True).authenticate(None, None).accepted
    # a password file, and anonymous allowed too (per listener over top level)
    assert Authenticator(PUBLIC, USERS, True).authenticate(None, None).accepted
    assert (
        not Authenticator(Listener("::1", allow_anonymous=False), None, True)
        .authenticate(None, None)
        .accepted
    )
    with_anonymous = Listener("0.0.0.0", allow_anonymous=True)
    assert Authenticator(with_anonymous, USERS, False).authenticate(None, None).accepted


def test_without_a_password_file_a_username_is_taken_as_given() -> None:
    # Mosquitto's behaviour: nothing to check it against
    assert Authenticator(LOOPBACK, None, None).authenticate("admin", None) == Verdict("admin")


def test_the_certificate_identity_replaces_the_username() -> None:
    listener = Listener(
        "0.0.0.0",
        certfile="c",
        keyfile="k",
        cafile="ca",
        require_certificate=True,
        use_identity_as_username=True,
    )
    auth = Authenticator(listener, USERS, None)
    assert auth.authenticate("alice", b"wrong", identity="device-7") == Verdict("device-7")
    assert auth.authenticate("alice", b"secret", identity=None) == Verdict(
        refusal=Refusal.NOT_AUTHORIZED
    )


def test_failures_double_the_delay_of_the_next_refusal() -> None:
    throttle = FailureThrottle(first_delay=0.1, max_delay=1.0, forget_after=60, max_waiting=100)
    delays = []
    for i in range(6):
        delays.append(throttle.failed("10.0.0.1", now=float(i)))
        throttle.released("10.0.0.1")
    # the first at once (a typo), then doubling
    assert delays == pytest.approx([0.0, 0.1, 0.2, 0.4, 0.8, 1.0])
    # other addresses are not slowed down
    assert throttle.failed("10.0.0.2", now=6.0) == 0.0
    assert throttle.failed("10.0.0.2", now=6.0) == pytest.approx(0.1)
    # a quiet spell forgets the address
    throttle.released("10.0.0.1")
    assert throttle.failed("10.0.0.1", now=5.0 + 61) == 0.0


def test_an_address_may_have_only_a_few_refusals_waiting() -> None:
    throttle = FailureThrottle(max_waiting=3)
    for i in range(3):
        assert throttle.admits("10.0.0.1")
        throttle.failed("10.0.0.1", now=float(i))
    assert not throttle.admits("10.0.0.1")
    assert throttle.admits("10.0.0.2")
    throttle.released("10.0.0.1")
    assert throttle.admits("10.0.0.1")


def test_the_throttle_tracks_a_bounded_number_of_addresses() -> None:
    throttle = FailureThrottle(max_addresses=100)
    for i in range(10_000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}", now=float(i))
    assert len(throttle) == 100
    # the most recent failures are the ones kept
    assert throttle.failed("10.0.39.15", now=10_001.0) > 0  # i = 9999: its second failure
    assert throttle.failed("10.0.0.0", now=10_002.0) == 0  # i = 0: forgotten
