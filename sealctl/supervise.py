"""`seal run`'s supervisor: it starts the children (api, worker, beat), restarts one that dies
with a growing pause (reset once a child has run a while), logs each restart, and stops them
all on request (Ctrl+C, SIGTERM)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

#: A child that ran this long before it died is restarted after the first pause again.
STABLE_S = 60.0


@dataclass
class Child:
    name: str
    command: Sequence[str]
    proc: subprocess.Popen | None = None
    started: float = 0.0
    restarts: int = 0
    """Restarts in a row, each after a child that died before running ``STABLE_S``."""
    due: float | None = None
    """When a dead child is started again."""


@dataclass
class Supervisor:
    commands: Mapping[str, Sequence[str]]
    env: Mapping[str, str] | None = None
    first_pause_s: float = 1.0
    max_pause_s: float = 30.0
    log: Callable[[str], None] = print
    output: Callable[[str], IO[str]] | None = None
    """Where a child's output goes, by its name (default: this process's own)."""
    children: dict[str, Child] = field(default_factory=dict)

    def start(self) -> None:
        for name, command in self.commands.items():
            self.children[name] = child = Child(name, command)
            self._spawn(child)

    def _spawn(self, child: Child) -> None:
        out = self.output(child.name) if self.output else None
        child.proc = subprocess.Popen(
            list(child.command),
            env=dict(self.env) if self.env else None,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
        )
        if out is not None:
            out.close()  # the child holds its own copy
        child.started, child.due = time.monotonic(), None

    def pause_after(self, child: Child) -> float:
        return min(self.max_pause_s, self.first_pause_s * 2 ** max(child.restarts - 1, 0))

    def poll(self) -> None:
        """Restart the children that died, each after its pause."""
        now = time.monotonic()
        for child in self.children.values():
            if child.proc is None:
                if child.due is not None and now >= child.due:
                    self.log(f"{child.name}: starting again (restart {child.restarts})")
                    self._spawn(child)
                continue
            code = child.proc.poll()
            if code is None:
                continue
            ran = now - child.started
            child.restarts = 1 if ran >= STABLE_S else child.restarts + 1
            pause = self.pause_after(child)
            self.log(
                f"{child.name} exited with code {code} after {ran:.1f} s; "
                f"restarting it in {pause:.1f} s"
            )
            child.proc, child.due = None, now + pause

    def stop(self, timeout_s: float = 20.0) -> None:
        """Stop every child: SIGTERM, then SIGKILL for one that does not end in time."""
        running = [c.proc for c in self.children.values() if c.proc and c.proc.poll() is None]
        for proc in running:
            proc.terminate()
        deadline = time.monotonic() + timeout_s
        for proc in running:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for child in self.children.values():
            child.proc, child.due = None, None
