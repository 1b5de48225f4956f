"""`seal run`'s supervisor with real child processes."""

from __future__ import annotations

import sys
import time

from sealctl.supervise import Child, Supervisor


def test_a_child_that_dies_is_restarted_with_a_growing_pause_and_all_stop() -> None:
    lines: list[str] = []
    supervisor = Supervisor(
        {
            "crashes": [sys.executable, "-c", "import sys; sys.exit(3)"],
            "lives": [sys.executable, "-c", "import time; time.sleep(60)"],
        },
        first_pause_s=0.2,
        max_pause_s=0.8,
        log=lines.append,
    )
    supervisor.start()
    try:
        deadline = time.monotonic() + 20
        while supervisor.children["crashes"].restarts < 4 and time.monotonic() < deadline:
            supervisor.poll()
            time.sleep(0.05)
    finally:
        lives = supervisor.children["lives"].proc
        supervisor.stop(timeout_s=10)

    crashes = supervisor.children["crashes"]
    assert crashes.restarts >= 4
    exits = [line for line in lines if line.startswith("crashes exited with code 3")]
    assert len(exits) >= 4
    pauses = [float(line.rsplit("in ", 1)[1].split(" s")[0]) for line in exits[:4]]
    assert pauses == [0.2, 0.4, 0.8, 0.8]  # doubling, capped
    assert any(line.startswith("crashes: starting again") for line in lines)
    assert not any(line.startswith("lives") for line in lines), "a live child is left alone"
    assert lives is not None and lives.poll() is not None, "stop() ended every child"


def test_a_child_that_ran_a_while_starts_its_pauses_over() -> None:
    supervisor = Supervisor({}, first_pause_s=1.0, max_pause_s=30.0)
    child = Child("api", ["true"], restarts=5)
    assert supervisor.pause_after(child) == 16.0
    child.restarts = 1
    assert supervisor.pause_after(child) == 1.0
