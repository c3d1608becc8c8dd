"""Fix 12: a storage SCP reads the C-STOREs after the first off the socket itself.

An AE whose hooks have ``receive`` (``dcmtool move -o``'s storage SCP) answers a C-STORE
through pynetdicom and then reads the C-STOREs that follow (``net.receiving.receive_more``).
"""

from __future__ import annotations

from typing import Any

from dcmtool.net.links import ae_hooks
from dcmtool.net.patches._replace import replace


def apply() -> None:
    from pynetdicom.service_class import StorageServiceClass

    original: Any = None

    def SCP(self: Any, req: Any, context: Any) -> None:
        hooks = ae_hooks(self.ae)
        if hooks is None or hooks.receive is None:
            original(self, req, context)
        else:
            hooks.receive(self.assoc, lambda: original(self, req, context))

    original = replace(StorageServiceClass, "SCP", SCP, fix="storage receive",
                       params=("self", "req", "context"))
