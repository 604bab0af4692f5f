"""Progress bars for long work; quiet when EDGE_QUIET=1 or when no description is given."""

from __future__ import annotations

import os
import sys
from typing import Any


def bar(total: int | None = None, desc: str | None = None, **kw: Any) -> Any:
    from tqdm import tqdm

    disable = desc is None or os.environ.get("EDGE_QUIET") == "1"
    return tqdm(total=total, desc=desc, disable=disable, file=sys.stderr, leave=False, dynamic_ncols=True, **kw)


def say(msg: str) -> None:
    """A status line on stderr, so stdout stays for results."""
    if os.environ.get("EDGE_QUIET") != "1":
        print(msg, file=sys.stderr, flush=True)
