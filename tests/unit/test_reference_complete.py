"""docs/reference.md names every public name: a new export without a line there fails here."""

from __future__ import annotations

import re
from pathlib import Path

from tests.unit.test_exports import EXPECTED

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference.md"


def test_every_public_name_is_in_the_reference() -> None:
    """Each name in a public module's ``__all__`` appears in code in docs/reference.md."""
    text = REFERENCE.read_text()
    code = " ".join(re.findall(r"`([^`\n]+)`", text))
    missing = [
        f"{module.__name__}.{name}"
        for module, names in EXPECTED.items()
        for name in sorted(names)
        if not re.search(rf"\b{re.escape(name)}\b", code)
    ]
    assert not missing, f"not in docs/reference.md: {missing}"
