"""Who may connect: the decision on a CONNECT's credentials, and the brake on
guessing them (issue 11). Sans-IO: no sockets, time passed in.

The rules, Mosquitto's:
- a listener with `use_identity_as_username` takes the username from the
  client certificate's CN (the CONNECT's username and password are ignored);
- otherwise, with a password file, a client that sends a username must send
  that user's password ("bad user name or password": 3.1.1 return code 4,
  5.0 reason code 0x86, whether the user is unknown or the password wrong);
  without a password file a username is taken as given;
- a client with no username is anonymous, accepted only where the listener
  allows it (`Listener.anonymous_allowed`); otherwise "not authorized" (5 /
  0x87).

The brake (`FailureThrottle`): an address's first refusal for bad credentials
is answered at once (a typo), each next one only after a delay that doubles
with each failure from that address (1 s, 2 s, 4 s, ... up to 10 s), and an
address may have only a few such refusals waiting at once: past that, its new
CONNECTs with credentials are closed before any password is checked. Guessing
then costs the guesser time, while a client with the right password is
answered at once, even behind the same NAT. A few quiet minutes forget an
address; at most `max_addresses` are tracked, the least recently failing
forgotten first.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass

from flockmq.frontend.passwords import PasswordFile
from flockmq.listeners import Listener
from flockmq.mqtt.reason_codes import ReasonCode


class Refusal(enum.Enum):
    """Why a CONNECT was refused, as the v5 reason code of its CONNACK (the
    connection maps it to a 3.1.1 return code with V5_TO_V3_CONNACK: 4 and 5)."""

    BAD_CREDENTIALS = ReasonCode.BAD_USER_NAME_OR_PASSWORD
    NOT_AUTHORIZED = ReasonCode.NOT_AUTHORIZED


@dataclass(frozen=True, slots=True)
class PendingRefusal:
    """A refusal held until `due` (the throttle's delay) for a session."""

    due: float
    reason_code: ReasonCode
    why: str
    address: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """An accepted client's username (None: anonymous), or why it was refused."""

    username: str | None = None
    refusal: Refusal | None = None

    @property
    def accepted(self) -> bool:
        return self.refusal is None


class Authenticator:
    """Decides CONNECTs for one listener."""

    def __init__(
        self,
        listener: Listener,
        passwords: PasswordFile | None,
        allow_anonymous: bool | None,
    ) -> None:
        self.listener = listener
        self.passwords = passwords
        self.anonymous = listener.anonymous_allowed(allow_anonymous, passwords is not None)

    def authenticate(
        self,
        username: str | None,
        password: bytes | None,
        identity: str | None = None,
        now: float = 0.0,
    ) -> Verdict:
        """`identity`: the verified client certificate's CN, if any; `now`:
        for the password file's remembered matches."""
        if self.listener.use_identity_as_username:
            if identity:
                return Verdict(identity)
            return Verdict(refusal=Refusal.NOT_AUTHORIZED)
        if username is None:
            return Verdict() if self.anonymous else Verdict(refusal=Refusal.NOT_AUTHORIZED)
        if self.passwords is None:
            return Verdict(username)
        if self.passwords.check(username, password, now):
            return Verdict(username)
        return Verdict(refusal=Refusal.BAD_CREDENTIALS)


@dataclass(slots=True)
class _Failures:
    count: int
    last: float
    waiting: int = 0


class FailureThrottle:
    """Growing delays for the refusals of addresses that keep failing."""

    def __init__(
        self,
        first_delay: float = 1.0,
        max_delay: float = 10.0,
        forget_after: float = 300.0,
        max_waiting: int = 8,
        max_addresses: int = 65_536,
    ) -> None:
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.forget_after = forget_after
        self.max_waiting = max_waiting
        self.max_addresses = max_addresses
        self._failures: OrderedDict[str, _Failures] = OrderedDict()

    def admits(self, address: str) -> bool:
        """False while `address` has `max_waiting` refusals waiting: close its
        new attempt unchecked."""
        entry = self._failures.get(address)
        return entry is None or entry.waiting < self.max_waiting

    def failed(self, address: str, now: float) -> float:
        """Record a failed attempt; returns how long to hold its refusal. The
        caller calls `released(address)` when the refusal has been sent."""
        entry = self._failures.pop(address, None)
        if entry is None or (now - entry.last > self.forget_after and not entry.waiting):
            entry = _Failures(0, now)
        entry.count += 1
        entry.last = now
        entry.waiting += 1
        self._failures[address] = entry  # the most recent last
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)
        if entry.count == 1:
            return 0.0
        return min(self.max_delay, self.first_delay * 2.0 ** min(entry.count - 2, 32))

    def released(self, address: str) -> None:
        entry = self._failures.get(address)
        if entry is not None and entry.waiting:
            entry.waiting -= 1

    def __len__(self) -> int:
        return len(self._failures)
