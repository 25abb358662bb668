"""Running ``hephaestus`` as a user does: a subprocess on a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without HEPHAESTUS_* settings or colour overrides, plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("HEPHAESTUS_") and key not in ("NO_COLOR", "FORCE_COLOR")
    }
    return {**env, "COLUMNS": "100", **extra}


def hephaestus(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m hephaestus ARGS`` in ``cwd`` (the repository root by default)."""
    return subprocess.run(
        [sys.executable, "-m", "hephaestus", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
        env=env if env is not None else clean_env(),
        check=False,
    )
