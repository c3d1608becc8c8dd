"""Fix: a server stops within 50 ms.

socketserver checks for shutdown every 0.5 s by default, which every ``dcmtool move -o``
would pay when its storage SCP stops.
"""

from __future__ import annotations

from typing import Any

from dcmtool.net.patches._replace import replace


def apply() -> None:
    from pynetdicom.transport import AssociationServer

    original: Any = None

    def serve_forever(self: Any, poll_interval: float = 0.05) -> None:
        original(self, poll_interval)

    original = replace(AssociationServer, "serve_forever", serve_forever, fix="server poll",
                       params=("self", "poll_interval"))
