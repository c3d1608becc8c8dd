"""Fix 10: C-MOVE and C-GET SCP through dcmtool's own sub-operation loop.

An AE whose hooks have ``retrieve`` (dcmtool serve) runs it (``net.suboperations``) in place
of pynetdicom's loop; any other AE keeps pynetdicom's.
"""

from __future__ import annotations

from typing import Any

from dcmtool.net.links import ae_hooks
from dcmtool.net.patches._replace import replace


def apply() -> None:
    from pynetdicom.service_class import QueryRetrieveServiceClass

    for name, kind in (("_move_scp", "move"), ("_get_scp", "get")):

        def scp(self: Any, request: Any, context: Any, kind: str = kind) -> None:
            hooks = ae_hooks(self.ae)
            if hooks is None or hooks.retrieve is None:
                originals[kind](self, request, context)
            else:
                hooks.retrieve(self, request, context, kind)

        originals[kind] = replace(QueryRetrieveServiceClass, name, scp, fix="retrieve SCP",
                                  params=("self", "req", "context"))


originals: dict[str, Any] = {}
