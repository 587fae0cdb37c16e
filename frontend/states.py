"""The states of a client session (frontend/session.py), in the order it
goes through them: NEW until its CONNECT, CONNECTING until the CONNACK is
out, CONNECTED, CLOSED once nothing more of it is acted on."""

from __future__ import annotations

NEW, CONNECTING, CONNECTED, CLOSED = range(4)
