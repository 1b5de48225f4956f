"""SQLAlchemy models, engine/session helpers and repositories, shared by the API and the worker.

Repositories only add and flush; the one commit point is the request dependency
(:func:`service.deps.get_session`) or, in a task, :func:`service.store.db.session_scope`.
"""
