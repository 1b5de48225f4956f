"""The dispatcher thread the beat runs: an event committed on a real store reaches its
endpoint within seconds (the issue: the first attempt within 10 s of the commit), and the
thread stops when asked."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from alembic import command
from standardwebhooks.webhooks import Webhook

from migrations import alembic_config
from service.settings import Settings
from service.store.db import make_engine, make_sessionmaker, session_scope
from service.store.models import Tenant
from service.store.repositories import webhooks as webhook_repo
from tests.receiver import Receiver
from worker.webhooks import start_dispatcher


def test_an_event_reaches_its_endpoint_within_seconds_of_its_commit(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'seal.db'}"
    command.upgrade(alembic_config(url), "head")
    engine = make_engine(url)
    sessions = make_sessionmaker(engine, write=True)
    settings = Settings(_env_file=None, data_dir=tmp_path, webhook_poll_s=0.2)  # type: ignore[call-arg]
    receiver = Receiver()
    stop = threading.Event()
    thread = start_dispatcher(sessions, settings, stop)
    try:
        with session_scope(sessions) as session:
            tenant = Tenant(name="acme")
            session.add(tenant)
            session.flush()
            endpoint = webhook_repo.create_endpoint(
                session,
                tenant_id=tenant.id,
                url=receiver.url,
                events=None,
                description=None,
                secret="whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            )
            secret = endpoint.secret
            webhook_repo.add_event(
                session, tenant_id=tenant.id, event_type="job.succeeded", data={"job": {}}
            )
        committed = time.monotonic()
        while not receiver.requests and time.monotonic() - committed < 10:
            time.sleep(0.05)
        assert receiver.requests, "nothing arrived within 10 s of the commit"
        headers, body = receiver.requests[0]
        assert Webhook(secret).verify(body, headers)["type"] == "job.succeeded"
    finally:
        stop.set()
        thread.join(timeout=15)
        receiver.close()
        engine.dispose()
    assert not thread.is_alive()
