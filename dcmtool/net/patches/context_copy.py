"""Fix 4: accepting an association without deep-copying every supported context.

pynetdicom deep-copies every supported presentation context for each association, re-validating
each UID: with every storage class x every syntax (serve) that is ~30 ms per association. A
context's mutable state is its transfer syntax list; copying just that is enough.
"""

from __future__ import annotations

import copy
from typing import Any

from dcmtool.net.patches._replace import replace


def apply() -> None:
    from pynetdicom import transport
    from pynetdicom.presentation import PresentationContext

    def copy_contexts(value: Any, memo: Any = None) -> Any:
        if isinstance(value, list) and all(isinstance(v, PresentationContext) for v in value):
            copies = []
            for context in value:
                # copy.copy goes through __reduce_ex__: several times slower, per context,
                # per association (serve supports hundreds).
                clone = object.__new__(PresentationContext)
                clone.__dict__.update(context.__dict__)
                clone._transfer_syntax = list(context._transfer_syntax)
                copies.append(clone)
            return copies
        return copy.deepcopy(value, memo)

    replace(transport, "deepcopy", copy_contexts, fix="context copy")
