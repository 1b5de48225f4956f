"""The beat: a small process of its own that runs the schedule check (:mod:`worker.schedule`)
every ``schedule_check_s``, in process, so that it runs while every worker is busy or dead,
and the webhook dispatcher (:mod:`worker.webhooks`) in a thread beside it. It needs no model;
several beats may run (every step of the check is a conditional write, every delivery attempt
is claimed).

``python -m worker.beat`` (``seal process beat``)."""

from __future__ import annotations

import logging
import signal
import threading

from service.enqueue import CeleryTaskSender
from service.settings import Settings, get_settings
from worker.runtime import get_runtime
from worker.schedule import run_schedule
from worker.webhooks import start_dispatcher

log = logging.getLogger(__name__)


def run_beat(settings: Settings, stop: threading.Event) -> None:
    """Check until ``stop`` is set; a check that fails is logged and tried again next time."""
    runtime = get_runtime()
    sender = CeleryTaskSender(settings.resolved_broker_url)
    log.info("beat: checking schedules and jobs every %d s", settings.schedule_check_s)
    dispatcher = start_dispatcher(runtime.sessions, settings, stop)
    try:
        while True:
            try:
                run_schedule(runtime, sender.send)
            except Exception:
                log.exception("beat: the check failed; trying again next time")
            if stop.wait(settings.schedule_check_s):
                return
    finally:
        stop.set()
        dispatcher.join(timeout=settings.webhook_timeout_s + 5)
        sender.close()


def main() -> None:
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s [beat] %(name)s: %(message)s",
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    run_beat(settings, stop)


if __name__ == "__main__":
    main()
