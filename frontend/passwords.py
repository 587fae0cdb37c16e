"""Mosquitto's password file, read and written as `mosquitto_passwd` does.

One entry per line, `username:hash`, where the hash is one of
- `$7$ITERATIONS$SALT$HASH`: PBKDF2-HMAC-SHA512 (what `mosquitto_passwd`
  writes since Mosquitto 2.0; 101 iterations by default there, 12-byte salt,
  64-byte hash);
- `$6$SALT$HASH`: SHA-512 of the password followed by the salt (Mosquitto 1.x).
SALT and HASH are standard base64. Blank lines and lines starting with `#` are
skipped. A file `mosquitto_passwd` wrote is read unchanged, and the entries
written here are ones Mosquitto accepts.

Invariants: a password is compared in constant time; an unknown username costs
the same work as a known one (no timing oracle for which users exist); neither
a password nor a hash is ever put in an exception message or a log line.

`VerifiedPasswords` spares a client that reconnects with the password it used
a moment ago the PBKDF2 work again (a fleet reconnecting after a network
blip): a password that matched is remembered for `ttl` seconds as its
HMAC-SHA256 under a key made at random in this process, never as the
password. Only a match is remembered; a password that is not the remembered
one goes through the full hash, so guessing costs what it always did.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import stat
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

PBKDF2 = "sha512-pbkdf2"
SHA512 = "sha512"
SCHEMES = (PBKDF2, SHA512)
# mosquitto_passwd 2.0's defaults, so our entries look like its own
DEFAULT_ITERATIONS = 101
SALT_BYTES = 12
HASH_BYTES = 64
# a hash whose iteration count would cost seconds per CONNECT is refused
MAX_ITERATIONS = 1_000_000


class PasswordFileError(ValueError):
    """A password file that cannot be used: the message names the line."""


@dataclass(frozen=True, slots=True)
class PasswordHash:
    """One user's stored hash."""

    scheme: str  # PBKDF2 or SHA512
    salt: bytes
    digest: bytes
    iterations: int = 0  # PBKDF2 only

    def matches(self, password: bytes) -> bool:
        return hmac.compare_digest(self.compute(password), self.digest)

    def compute(self, password: bytes) -> bytes:
        if self.scheme == PBKDF2:
            return hashlib.pbkdf2_hmac("sha512", password, self.salt, self.iterations)
        return hashlib.sha512(password + self.salt).digest()

    def encode(self) -> str:
        salt = base64.b64encode(self.salt).decode()
        digest = base64.b64encode(self.digest).decode()
        if self.scheme == PBKDF2:
            return f"$7${self.iterations}${salt}${digest}"
        return f"$6${salt}${digest}"


def hash_password(
    password: bytes,
    scheme: str = PBKDF2,
    iterations: int = DEFAULT_ITERATIONS,
    salt: bytes | None = None,
) -> PasswordHash:
    """A new hash of `password` with a random salt."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown hash scheme {scheme!r} (one of {', '.join(SCHEMES)})")
    if not 1 <= iterations <= MAX_ITERATIONS:
        raise ValueError(f"iterations must be 1..{MAX_ITERATIONS}")
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    empty = PasswordHash(scheme, salt, b"", iterations if scheme == PBKDF2 else 0)
    return PasswordHash(scheme, salt, empty.compute(password), empty.iterations)


def parse_hash(text: str) -> PasswordHash:
    """A stored hash from its text (`$7$...` or `$6$...`); ValueError if malformed."""
    parts = text.split("$")
    try:
        if len(parts) == 5 and parts[0] == "" and parts[1] == "7":
            iterations = int(parts[2])
            if not 1 <= iterations <= MAX_ITERATIONS:
                raise ValueError(f"iterations out of 1..{MAX_ITERATIONS}")
            salt, digest = _b64(parts[3]), _b64(parts[4])
            return PasswordHash(PBKDF2, salt, digest, iterations)
        if len(parts) == 4 and parts[0] == "" and parts[1] == "6":
            return PasswordHash(SHA512, _b64(parts[2]), _b64(parts[3]))
    except binascii.Error as exc:
        raise ValueError(f"bad base64 ({exc})") from None
    raise ValueError("not a $7$ (PBKDF2-SHA512) or $6$ (SHA-512) hash")


def _b64(text: str) -> bytes:
    value = base64.b64decode(text, validate=True)
    if not value:
        raise ValueError("empty salt or hash")
    return value


# What one remembered password costs, besides its username: the entry's
# tuple, the digest and the float, and the ordered dict's node and slot.
VERIFIED_ENTRY_BYTES = 256


class VerifiedPasswords:
    """Passwords that matched their user's hash in the last `ttl` seconds, as
    keyed digests, in at most `max_bytes` (the least recently verified go
    first). Sans-IO: time passed in."""

    __slots__ = ("_bytes", "_entries", "_keyed", "count", "max_bytes", "ttl")

    def __init__(
        self, ttl: float, max_bytes: int, count: Callable[[str], None] | None = None
    ) -> None:
        self.ttl = ttl
        self.max_bytes = max_bytes
        # the acceptor's counter: password_cache_hits, _misses, _evictions
        self.count = count
        # the HMAC keyed once, copied per digest: hmac.digest() looked the
        # hash up in OpenSSL and set the key again on every call (2.2 us,
        # against 1.4 us for a copy, per CONNECT checked)
        self._keyed = hmac.new(secrets.token_bytes(32), digestmod=hashlib.sha256)
        # username -> (digest, when it was verified); oldest first
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._bytes = 0

    def digest(self, password: bytes) -> bytes:
        """`password` as this cache keeps it (keyed: worthless outside this
        process). The caller computes it for every CONNECT checked, so a
        user with an entry costs what one without does."""
        keyed = self._keyed.copy()
        keyed.update(password)
        return keyed.digest()

    def known(self, username: str, digest: bytes, now: float) -> bool:
        """True if `digest` is that of the password `username` verified with
        in the last `ttl` seconds (compared in constant time)."""
        entry = self._entries.get(username)
        if entry is None:
            self._counted("password_cache_misses")
            return False
        remembered, verified = entry
        if now - verified >= self.ttl or now < verified:
            self._forget(username)
            self._counted("password_cache_misses")
            return False
        if hmac.compare_digest(remembered, digest):
            self._counted("password_cache_hits")
            return True
        self._counted("password_cache_misses")
        return False

    def verified(self, username: str, digest: bytes, now: float) -> None:
        """The password of `digest` matched `username`'s hash at `now`."""
        if self.ttl <= 0:
            return
        self._forget(username)
        self._entries[username] = (digest, now)
        self._bytes += VERIFIED_ENTRY_BYTES + len(username)
        while self._bytes > self.max_bytes and self._entries:
            self._forget(next(iter(self._entries)))
            self._counted("password_cache_evictions")

    def _counted(self, name: str) -> None:
        if self.count is not None:
            self.count(name)

    def _forget(self, username: str) -> None:
        if self._entries.pop(username, None) is not None:
            self._bytes -= VERIFIED_ENTRY_BYTES + len(username)

    def __len__(self) -> int:
        return len(self._entries)


class PasswordFile:
    """The users of one password file and their hashes."""

    def __init__(self, entries: dict[str, PasswordHash] | None = None) -> None:
        self.entries: dict[str, PasswordHash] = dict(entries or {})
        # an unknown user is checked against this, so it costs what a known one does
        self._decoy = hash_password(b"", PBKDF2, DEFAULT_ITERATIONS)
        # set by the acceptor: matches of this file remembered (a reload
        # makes a new PasswordFile, so a changed password is hashed again)
        self.recent: VerifiedPasswords | None = None

    @classmethod
    def parse(cls, text: str, source: str = "password file") -> PasswordFile:
        entries: dict[str, PasswordHash] = {}
        for number, username, hashed in _lines(text, source, "hash", strip=True):
            try:
                entries[username] = parse_hash(hashed)
            except ValueError as exc:
                hint = " (a plain-text password? run `flockmq passwd -U FILE`)"
                plain = "" if hashed.startswith("$") else hint
                raise PasswordFileError(
                    f"{source}:{number}: user {username!r}: {exc}{plain}"
                ) from None
        return cls(entries)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PasswordFile:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PasswordFileError(f"cannot read password file {os.fspath(path)}: {exc}") from None
        return cls.parse(text, os.fspath(path))

    def check(self, username: str, password: bytes | None, now: float = 0.0) -> bool:
        """True if `username` is in the file and `password` is its password
        (`now`: for the remembered matches, `recent`)."""
        entry = self.entries.get(username)
        recent = self.recent
        # keyed for the cache whoever asks, so a remembered user, a known
        # one and an unknown one cost the same until the hash
        digest = recent.digest(password or b"") if recent is not None else b""
        if entry is None or password is None:
            self._decoy.matches(password or b"")
            return False
        if recent is not None and recent.known(username, digest, now):
            return True
        if not entry.matches(password):
            return False
        if recent is not None:
            recent.verified(username, digest, now)
        return True

    def __contains__(self, username: object) -> bool:
        return username in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def dump(self) -> str:
        return "".join(f"{user}:{entry.encode()}\n" for user, entry in self.entries.items())


def check_username(username: str) -> None:
    """A username the file can hold (mosquitto_passwd's rules)."""
    if not username:
        raise ValueError("the username is empty")
    if ":" in username:
        raise ValueError("a username cannot contain ':'")
    if any(ch in username for ch in "\r\n"):
        raise ValueError("a username cannot contain a line break")


def write_password_file(path: str | os.PathLike[str], passwords: PasswordFile) -> None:
    """Replace `path` atomically with `passwords`, keeping the file's mode
    (0600 for a new file: it holds hashes)."""
    target = Path(path)
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = 0o600
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(passwords.dump())
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def hash_plain_text_file(
    text: str, scheme: str, iterations: int, source: str = "password file"
) -> PasswordFile:
    """`mosquitto_passwd -U`: every `user:password` line whose password is not
    already a hash becomes `user:hash` (a password keeps its spaces)."""
    entries: dict[str, PasswordHash] = {}
    for _number, username, secret in _lines(text, source, "password", strip=False):
        try:
            entries[username] = parse_hash(secret)
        except ValueError:
            entries[username] = hash_password(secret.encode(), scheme, iterations)
    return PasswordFile(entries)


def _lines(text: str, source: str, what: str, strip: bool) -> Iterator[tuple[int, str, str]]:
    """(line number, username, what follows its ':') of each entry; blank
    lines and `#` comments skipped. `strip`: the whole line, which a hash
    allows and a plain-text password does not."""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip() if strip else raw
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        username, sep, rest = line.partition(":")
        if not sep or not username:
            raise PasswordFileError(f"{source}:{number}: expected username:{what}")
        yield number, username, rest
