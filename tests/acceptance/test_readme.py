"""The README's quickstart is real code: it runs and prints what the README says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_quickstart_runs_and_completes(tmp_path: Path) -> None:
    """The first Python block of the README runs as a script and prints 'completed'."""
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    script = tmp_path / "quickstart.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "completed"


def test_quickstart_is_short() -> None:
    """The quickstart stays within 30 lines of code (blank lines aside), as promised."""
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    assert len([line for line in code.splitlines() if line.strip()]) <= 30


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run executes exactly the test command the README names."""
    root = README.parent
    assert "./scripts/test" in README.read_text()
    assert (root / ".ci" / "run").read_text().strip().endswith("exec ./scripts/test")
