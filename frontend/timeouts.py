"""The timeouts of one client session (sans-IO, time passed in): no
CONNECT/CONNACK within connect_timeout, a client that reads nothing for
write_timeout (a slow consumer), and keepalive [MQTT-3.1.2-24]. The
acceptor calls them on its tick (ClientSession.check_timers)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flockmq.frontend.codec import ReasonCode

from .connect import refuse_pending
from .states import CONNECTING, NEW

if TYPE_CHECKING:
    from .session import ClientSession

log = logging.getLogger("flockmq.acceptor")


def check_timeouts(session: ClientSession, now: float, write_paused_at: float | None) -> None:
    """Connect timeout; a client that has read nothing since
    `write_paused_at` for write_timeout (a slow consumer); keepalive
    [MQTT-3.1.2-24]: 1.5 x keepalive."""
    config = session.host.config
    if refuse_pending(session, now):
        return  # a refusal held by the throttle: it is answered, then closed
    if session.state in (NEW, CONNECTING):
        if now - session.created > config.connect_timeout:
            session.host.count("connect_timeouts")
            log.info(
                "%s: no CONNECT/CONNACK within %.0fs: closing",
                session.link.peer(),
                config.connect_timeout,
            )
            session.close()
    elif write_paused_at is not None and now - write_paused_at > config.write_timeout:
        # A client that reads nothing is disconnected on time, so neither
        # its buffer nor its session's window is held for ever.
        session.host.count("slow_consumers_disconnected")
        session.host.client_log.log(
            logging.INFO,
            "client %s read nothing for %.0fs: closing",
            session.client_id,
            config.write_timeout,
        )
        session.close()
    elif session.keepalive and now - session.last_rx > 1.5 * session.keepalive:
        session.host.count("keepalive_timeouts")
        log.info(
            "client %s: keepalive of %ds expired: closing", session.client_id, session.keepalive
        )
        session.close(ReasonCode.KEEP_ALIVE_TIMEOUT)
