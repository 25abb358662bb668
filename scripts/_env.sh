# Shared setup for the project's commands: make sure uv and the locked environment exist.
# Sourced by scripts/demo and scripts/test; installs what is missing on first use.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export UV_PYTHON_DOWNLOADS=never        # use the machine's CPython 3.12 (pyenv), never a download
export UV_PYTHON="${UV_PYTHON:-3.12}"
export UV_LINK_MODE=copy

if ! uv --version >/dev/null 2>&1; then
    echo "==> installing uv" >&2
    python3 -m pip install --quiet --disable-pip-version-check uv >&2
    hash -r
fi

uv sync --frozen --quiet >&2 2>/dev/null || uv sync --quiet >&2
