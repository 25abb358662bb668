"""The ``hephaestus demo`` command, run as a user runs it: a subprocess on a fresh interpreter."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from typing import TYPE_CHECKING

import pytest

from hephaestus import Status
from hephaestus._cli import main
from hephaestus._demo import numbered, stored_runs

if TYPE_CHECKING:
    from pathlib import Path

    from hephaestus import Instance

TIMEOUT = 60
ANSI = "\x1b["
IN_FLIGHT = r"runs? in flight"
WAITING_FOR_COURIER = r"order::1002 +await_delivery +waiting for an event"


def _count(runs: list[str]) -> str:
    return "1 run" if len(runs) == 1 else f"{len(runs)} runs"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    return {**env, **extra}


def _hephaestus(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hephaestus", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=_env(),
        check=False,
    )


def _interrupted(database: Path, signum: int, marker: str) -> tuple[int, str]:
    """Run the durable demo on ``database`` and send it ``signum`` as soon as it prints a line
    matching ``marker``; its exit status and output."""
    lines: list[str] = []
    in_flight = threading.Event()
    with subprocess.Popen(
        [sys.executable, "-m", "hephaestus", "demo", "--durable", str(database), "--fast"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    ) as process:

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line)
                if re.search(marker, line):
                    in_flight.set()
            in_flight.set()  # the demo ended: do not wait any longer

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            assert in_flight.wait(TIMEOUT), "".join(lines)
            assert process.poll() is None, "".join(lines)
            process.send_signal(signum)
            returncode = process.wait(TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            reader.join(TIMEOUT)
    return returncode, "".join(lines)


def _runs(database: Path) -> list[Instance]:
    return asyncio.run(stored_runs(database))


def _check_finished(runs: list[Instance]) -> None:
    """Each run completed as its order expects, and its history records nothing twice: no
    step completed, waited, resumed or retried twice, no run started or ended twice."""
    for run in runs:
        order = numbered(int(run.context.initial["order"]))
        assert run.status is Status.COMPLETED, run.id
        assert order.expected_step in run.completed_steps, run.id
        entries = Counter((entry.kind, entry.step, entry.attempt) for entry in run.history)
        assert [entry for entry, seen in entries.items() if seen > 1] == [], run.id


def _lines(output: str, instance_id: str) -> list[str]:
    """The progress lines of one instance, without their time offsets."""
    return [
        line.split("  ", 1)[1].strip()
        for line in output.splitlines()
        if re.match(r"\+\d+\.\d{3}s  ", line) and f" {instance_id} " in line
    ]


def _index(lines: list[str], step: str, what: str) -> int:
    return next(i for i, line in enumerate(lines) if re.fullmatch(rf"\S+ +{step} +{what}", line))


@pytest.fixture(scope="module")
def demo() -> subprocess.CompletedProcess[str]:
    return _hephaestus("demo", "--fast")


def test_demo_exits_zero_with_every_run_completed(demo: subprocess.CompletedProcess[str]) -> None:
    """The fast demo exits 0 and its summary shows each order completed as expected."""
    assert demo.returncode == 0, demo.stdout + demo.stderr
    summary = [line for line in demo.stdout.splitlines() if line.startswith("order::")]
    assert len(summary) == 3
    assert all(re.search(r"completed +\d+ +\d+  ok ", line) for line in summary)
    assert "all 3 runs ended as expected" in demo.stdout


def test_demo_fans_out_payment_and_stock_and_joins_at_ship(
    demo: subprocess.CompletedProcess[str],
) -> None:
    """Payment and stock both start before either completes, and ship starts after both."""
    lines = _lines(demo.stdout, "order::1001")
    charge = _index(lines, "charge_payment", "started")
    reserve = _index(lines, "reserve_stock", "started")
    charged = _index(lines, "charge_payment", "completed -> charged")
    reserved = _index(lines, "reserve_stock", "completed -> reserved")
    assert max(charge, reserve) < min(charged, reserved)
    assert _index(lines, "ship", "started") > max(charged, reserved)


def test_demo_shows_the_retried_carrier_failure(demo: subprocess.CompletedProcess[str]) -> None:
    """The ship step fails on attempt 1, is retried, and completes on attempt 2."""
    lines = _lines(demo.stdout, "order::1001")
    failed = _index(lines, "ship", r"failed attempt 1, retrying: .*503")
    retried = _index(lines, "ship", r"started \(attempt 2\)")
    assert failed < retried < _index(lines, "ship", "completed -> shipped")


def test_demo_shows_the_timer_and_the_external_resume(
    demo: subprocess.CompletedProcess[str],
) -> None:
    """The timer waits and fires, then the courier resumes the waiting delivery step."""
    lines = _lines(demo.stdout, "order::1002")
    waiting = _index(lines, "in_transit", r"waiting \(timer 0\.1 s\)")
    fired = _index(lines, "in_transit", "timer fired -> timeout")
    parked = _index(lines, "await_delivery", "waiting for an event")
    courier = _index(lines, r"\(courier\)", r"OrderFlow\.resume\('1002', 'delivered', .*\)")
    resumed = _index(lines, "await_delivery", "resumed by event -> delivered")
    assert waiting < fired < parked < courier < resumed
    assert re.search(r"workflow completed in \d+ ms$", lines[-1])
    assert "signed by B. Jones" in demo.stdout


def test_demo_takes_the_rejection_branch_for_the_invalid_order(
    demo: subprocess.CompletedProcess[str],
) -> None:
    """The invalid order branches to rejection, never reaches payment, and still completes."""
    lines = _lines(demo.stdout, "order::1003")
    assert _index(lines, "validate_order", "completed -> invalid") < _index(
        lines, "reject_order", "completed -> rejected"
    )
    assert not any("charge_payment" in line or "ship" in line for line in lines)
    assert re.search(r"workflow completed in \d+ ms$", lines[-1])


@pytest.mark.parametrize(
    ("signum", "marker"),
    [
        (signal.SIGKILL, IN_FLIGHT),
        (signal.SIGKILL, WAITING_FOR_COURIER),
        (signal.SIGINT, IN_FLIGHT),
        (signal.SIGTERM, IN_FLIGHT),
    ],
    ids=["SIGKILL-in-flight", "SIGKILL-awaiting-delivery", "SIGINT", "SIGTERM"],
)
def test_durable_demo_finishes_the_runs_an_interrupted_invocation_left(
    tmp_path: Path, signum: signal.Signals, marker: str
) -> None:
    """Interrupted while its runs are in flight (``kill -9``, Ctrl-C, ``kill``), the durable
    demo leaves them in its file; the next invocation says it resumes them, and finishes each
    as expected (delivering the parcels still awaited), without recording any step twice."""
    database = tmp_path / "demo.db"
    returncode, first = _interrupted(database, signum, marker)
    left = [run.id for run in _runs(database) if not run.is_terminal]
    assert left, first
    if signum is signal.SIGKILL:
        assert returncode == -signal.SIGKILL, first
    else:  # a clean stop, which says what it left
        assert returncode == 128 + signum, first
        assert f"{signum.name}: stopped. {_count(left)} left in {database} " in first
        assert f"({', '.join(left)}); run the same command again to finish them" in first
        assert "Traceback" not in first

    second = _hephaestus("demo", "--durable", str(database), "--fast")
    assert second.returncode == 0, second.stdout + second.stderr
    said = f"resuming {_count(left)} left by an earlier invocation: {', '.join(left)}"
    assert said in second.stdout
    summary = [line for line in second.stdout.splitlines() if line.startswith("order::")]
    assert [line.split()[0] for line in summary] == ["order::1001", "order::1002", "order::1003"]
    resumed = [line.split()[0] for line in summary if line.endswith("(resumed)")]
    assert resumed == left
    runs = _runs(database)
    assert [run.id for run in runs] == ["order::1001", "order::1002", "order::1003"]
    _check_finished(runs)


def test_durable_demo_starts_what_an_interrupted_start_left_out(tmp_path: Path) -> None:
    """Stopped after starting only the first order of its batch, the demo's next invocation
    resumes that run and starts the two it had not reached."""
    from hephaestus import Hephaestus
    from hephaestus._demo import OrderFlow
    from hephaestus.storage.sqlite import SQLiteStorage

    database = tmp_path / "demo.db"

    async def start_one() -> None:
        async with Hephaestus(
            storage=SQLiteStorage(database), workflows=[OrderFlow], recover=False
        ):
            order = numbered(1001)
            await OrderFlow.start(order.value, order.context(1.5))

    asyncio.run(start_one())
    assert [run.id for run in _runs(database)] == ["order::1001"]
    second = _hephaestus("demo", "--durable", str(database), "--fast")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "resuming 1 run left by an earlier invocation: order::1001" in second.stdout
    runs = _runs(database)
    assert [run.id for run in runs] == ["order::1001", "order::1002", "order::1003"]
    _check_finished(runs)


def test_durable_demo_starts_a_fresh_batch_once_every_run_has_ended(tmp_path: Path) -> None:
    """On a file whose runs have all ended, the durable demo starts the next order numbers
    (an order's business key stays unique), and leaves the old runs in the file."""
    database = tmp_path / "demo.db"
    first = _hephaestus("demo", "--durable", str(database), "--fast")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "starting orders 1001 to 1003" in first.stdout
    second = _hephaestus("demo", "--durable", str(database), "--fast")
    assert second.returncode == 0, second.stdout + second.stderr
    fresh = f"all 3 runs in {database} have ended: starting a fresh batch, orders 1004 to 1006"
    assert fresh in second.stdout
    assert "resuming" not in second.stdout
    assert "all 3 runs ended as expected" in second.stdout
    runs = _runs(database)
    assert [run.id for run in runs] == [f"order::{number}" for number in range(1001, 1007)]
    _check_finished(runs)


def test_durable_demo_refuses_a_file_another_demo_runs_on(tmp_path: Path) -> None:
    """Two durable demos on one file would both play the courier for its runs: the second
    says which process runs the first, and exits 1 without touching the file."""
    import fcntl

    database = tmp_path / "demo.db"
    lock = tmp_path / "demo.db-demo.lock"
    lock.write_text("4242")
    with lock.open() as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = _hephaestus("demo", "--durable", str(database), "--fast")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"another demo (pid 4242) is running on {database}" in result.stdout
    assert not database.exists()


def test_piped_output_has_no_colour(demo: subprocess.CompletedProcess[str]) -> None:
    """When stdout is not a terminal the demo writes no ANSI escape codes."""
    assert ANSI not in demo.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX only")
@pytest.mark.parametrize(("no_color", "coloured"), [("", True), ("1", False)])
def test_terminal_output_is_coloured_unless_no_color(no_color: str, coloured: bool) -> None:
    """On a terminal the demo uses colour, unless NO_COLOR is set to a non-empty value."""
    import pty

    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "hephaestus", "demo", "--fast"],
            stdout=terminal,
            stderr=subprocess.DEVNULL,
            env=_env(NO_COLOR=no_color),
        )
    finally:
        os.close(terminal)
    chunks: list[bytes] = []
    try:
        while chunk := os.read(controller, 4096):
            chunks.append(chunk)
    except OSError:  # the terminal is gone once the demo exits (EIO on Linux)
        pass
    finally:
        os.close(controller)
    assert process.wait(timeout=TIMEOUT) == 0
    assert (ANSI in b"".join(chunks).decode()) is coloured


def test_help_lists_the_demo_command(capsys: pytest.CaptureFixture[str]) -> None:
    """``--help`` exits 0 and lists the demo command."""
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage: hephaestus" in out
    assert re.search(r"^  demo +Run an order workflow", out, re.M)


def test_unknown_command_exits_2_with_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown command is a usage error naming the command and pointing to ``--help``."""
    assert main(["bogus"]) == 2
    err = capsys.readouterr().err
    assert "No such command 'bogus'" in err
    assert "Try 'hephaestus --help' for help." in err


def test_missing_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Running without a command is a usage error."""
    assert main([]) == 2
    assert "Usage: hephaestus [OPTIONS] COMMAND" in capsys.readouterr().err


def test_module_entry_point_reports_usage_errors() -> None:
    """``python -m hephaestus`` with an unknown command exits 2 and prints usage to stderr."""
    result = _hephaestus("bogus")
    assert result.returncode == 2
    assert "Usage: hephaestus" in result.stderr
    assert result.stdout == ""
