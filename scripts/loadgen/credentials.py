"""What the TLS and password rows of `make bench` give both brokers and the
load generator: certificates and a password file, made at bench time in a
directory of the run, never committed.

Certificates come from `trustme` (a CA, and a server certificate for
127.0.0.1 and localhost signed by it); both brokers serve the same ones and
the generator trusts only that CA. The password file is in Mosquitto's format
(`$7$` PBKDF2-SHA512 entries, what `mosquitto_passwd` and `flockmq passwd -b`
write), and the generator reads the plain-text twin `user:password` lines.
Invariants: every file is written inside `directory`; the password file holds
exactly the users of the plain-text file.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from flockmq.frontend.passwords import PasswordFile, hash_password, write_password_file

SERVER_IDENTITIES = ("127.0.0.1", "localhost")
BENCH_USERS = 5


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cafile: Path  # what clients trust
    certfile: Path  # the server's certificate chain
    keyfile: Path  # the server's private key


@dataclass(frozen=True, slots=True)
class PasswordFiles:
    password_file: Path  # Mosquitto's format, for the brokers
    credentials: Path  # user:password lines, for the generator
    users: tuple[tuple[str, str], ...]


def make_certificates(directory: Path) -> TlsFiles:
    """A fresh CA and a server certificate for 127.0.0.1 and localhost."""
    import trustme  # the test extras, which `make bench` installs

    ca = trustme.CA()
    server = ca.issue_cert(*SERVER_IDENTITIES)
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    ca.cert_pem.write_to_path(str(files.cafile))
    server.private_key_pem.write_to_path(str(files.keyfile))
    with open(files.certfile, "wb") as fh:
        for blob in server.cert_chain_pems:
            fh.write(blob.bytes())
    files.keyfile.chmod(0o600)
    return files


def make_password_files(directory: Path, users: int = BENCH_USERS) -> PasswordFiles:
    """`users` users with random passwords, hashed as mosquitto_passwd does."""
    pairs = tuple((f"bench{i}", secrets.token_urlsafe(12)) for i in range(users))
    passwords = PasswordFile(
        {name: hash_password(secret.encode(), "sha512-pbkdf2") for name, secret in pairs}
    )
    files = PasswordFiles(directory / "passwords", directory / "credentials", pairs)
    write_password_file(files.password_file, passwords)
    files.credentials.write_text("".join(f"{name}:{secret}\n" for name, secret in pairs))
    files.credentials.chmod(0o600)
    return files


def read_credentials(path: Path) -> tuple[tuple[str, str], ...]:
    """The `user:password` lines of `path` (the password may contain ':')."""
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        name, sep, secret = line.partition(":")
        if not sep or not name:
            raise ValueError(f"{path}:{number}: expected user:password")
        pairs.append((name, secret))
    if not pairs:
        raise ValueError(f"{path}: no credentials")
    return tuple(pairs)
