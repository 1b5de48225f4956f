"""Repository functions, one module per domain.

They take a :class:`~sqlalchemy.orm.Session` and keyword-only arguments, add and flush, and
never commit: the caller's request dependency or ``session_scope`` is the one commit point.
"""
