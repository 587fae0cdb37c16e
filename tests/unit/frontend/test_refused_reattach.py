"""A worker that refuses to re-attach a CONNECTED session (after its restart,
as a standby: workers/standby.py) answers with a CONNACK code; the acceptor
closes the session with a DISCONNECT code (frontend/connect.py
`disconnect_for_refusal`): always one a DISCONNECT may carry, the same code
where it can, 0x9C Use another server for the standby's 0x88."""

from __future__ import annotations

import pytest

from flockmq.frontend.codec import Disconnect, ReasonCode, encode
from flockmq.frontend.codec.allowed_reason_codes import V5
from flockmq.frontend.codec.packets import PacketType
from flockmq.frontend.connect import disconnect_for_refusal

REFUSALS = sorted(V5[PacketType.CONNACK] - {0})


@pytest.mark.parametrize("rc", REFUSALS, ids=[f"0x{rc:02x}" for rc in REFUSALS])
def test_every_connack_refusal_becomes_a_valid_disconnect(rc: int) -> None:
    code = disconnect_for_refusal(rc)
    assert code in V5[PacketType.DISCONNECT] and code != 0
    encode(Disconnect(code), 5)  # the codec accepts it
    if rc == ReasonCode.SERVER_UNAVAILABLE:
        assert code == ReasonCode.USE_ANOTHER_SERVER
    elif rc in V5[PacketType.DISCONNECT]:
        assert code == rc  # the client learns why: Server busy, Quota exceeded...
    else:
        assert code == ReasonCode.UNSPECIFIED_ERROR
