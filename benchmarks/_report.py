"""What every benchmark script shares: writing its report as JSON."""

from __future__ import annotations

import json
import os
from typing import Any


def write_json(path: str | None, report: Any) -> None:
    """Write ``report`` to ``path`` (creating its folder) and say so; nothing when ``path`` is None."""
    if path is None:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print(f"# wrote {path}")
