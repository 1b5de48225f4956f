"""The version history of adapters, skills and teachers, written once: a new version is
numbered after its owner's last, at most one is active per owner, a promotion retires the
version active before it and never activates one whose weights are gone, and the weights of
versions no one uses can be dropped while the rows stay.

An owner is named by the model's ``OWNER`` columns as keywords (``tenant_id=...`` for an
adapter, ``skill_id=...`` for a skill, ``tenant_id=..., domain=...`` for a teacher, where
``tenant_id=None`` is the shared teacher)."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, and_, func, select, update
from sqlalchemy.orm import Session, aliased

from service.domain.errors import Gone, VersionIsActive
from service.store.base import utcnow
from service.store.models import VersionMixin, VersionStatus
from service.store.repositories import webhooks as webhook_repo

V = TypeVar("V", bound=VersionMixin)


def version_data(version: VersionMixin | None) -> dict[str, Any] | None:
    """A version as a webhook event shows it."""
    if version is None:
        return None
    return {
        "version": version.number,
        "status": version.status.value,
        "checksum": version.checksum,
        "metrics": version.metrics or {},
        "created_at": version.created_at.isoformat(),
        "promoted_at": version.promoted_at.isoformat() if version.promoted_at else None,
    }


class VersionHistory(Generic[V]):
    """The rules of one version table; ``noun`` names its versions and ``owner_noun`` their
    owners in messages; ``defaults`` fill owner columns a caller leaves out (a teacher's
    ``domain``: documents); ``events`` name the webhook events its changes send."""

    def __init__(
        self,
        model: type[V],
        *,
        noun: str,
        owner_noun: str,
        defaults: dict[str, Any] | None = None,
        events: dict[str, str] | None = None,
    ) -> None:
        self.model = model
        self.noun = noun
        self.owner_noun = owner_noun
        #: The webhook event of each change (``promoted``, ``rejected``, ``rolled_back``) that
        #: the owner's tenant is sent; none where absent.
        self.events = dict(events or {})
        self.defaults = dict(defaults or {})

    # --- owners ---------------------------------------------------------------------------
    def owner(self, given: dict[str, Any]) -> dict[str, Any]:
        """The owner named by ``given`` with the defaults filled in; a missing or unknown
        owner column is a programming error."""
        unknown = set(given) - set(self.model.OWNER)
        if unknown:
            raise TypeError(f"{self.model.__name__} has no owner column {sorted(unknown)[0]!r}")
        owner = {**self.defaults, **given}
        missing = [name for name in self.model.OWNER if name not in owner]
        if missing:
            raise TypeError(f"{self.model.__name__} needs its owner: {', '.join(missing)}")
        return owner

    def owner_of(self, version: V) -> dict[str, Any]:
        return {name: getattr(version, name) for name in self.model.OWNER}

    def where_owner(self, **given: Any) -> ColumnElement[bool]:
        conditions = []
        for name, value in self.owner(given).items():
            column = getattr(self.model, name)
            conditions.append(column.is_(None) if value is None else column == value)
        return and_(*conditions)

    # --- reading --------------------------------------------------------------------------
    def next_number(self, session: Session, **owner: Any) -> int:
        """1 for an owner's first version, then one more than the highest so far."""
        stmt = select(func.max(self.model.number)).where(self.where_owner(**owner))
        return (session.scalar(stmt) or 0) + 1

    def get(self, session: Session, *, number: int, **owner: Any) -> V | None:
        stmt = select(self.model).where(self.where_owner(**owner), self.model.number == number)
        return session.scalar(stmt)

    def active(self, session: Session, **owner: Any) -> V | None:
        """The owner's active version; None: the owner has none."""
        stmt = select(self.model).where(
            self.where_owner(**owner), self.model.status == VersionStatus.active
        )
        return session.scalar(stmt)

    def with_parents(self, session: Session, stmt: Select[Any]) -> list[tuple[V, int | None]]:
        """The versions ``stmt`` (a ``select`` of the model, filtered and ordered by the
        caller) finds, each with its parent's number."""
        parent = aliased(self.model)
        joined = stmt.add_columns(parent.number).outerjoin(
            parent, parent.id == self.model.parent_id
        )
        return [(version, number) for version, number in session.execute(joined)]

    def listed(self, session: Session, **owner: Any) -> list[tuple[V, int | None]]:
        """The owner's versions, newest first, each with its parent's number."""
        stmt = select(self.model).where(self.where_owner(**owner))
        return self.with_parents(session, stmt.order_by(self.model.number.desc()))

    def past_retention(
        self, session: Session, *, status: VersionStatus, keep: int, **owner: Any
    ) -> list[V]:
        """The owner's versions of ``status`` that still have weights, but for the newest
        ``keep`` of them: those whose weights the retention deletes."""
        stmt = (
            select(self.model)
            .where(
                self.where_owner(**owner),
                self.model.status == status,
                self.model.artifact_uri.is_not(None),
            )
            .order_by(self.model.number.desc())
            .offset(keep)
        )
        return list(session.scalars(stmt))

    # --- writing --------------------------------------------------------------------------
    def create(
        self,
        session: Session,
        *,
        parent_id: str | None,
        artifact_uri: str | None = None,
        checksum: str | None = None,
        metrics: dict[str, Any] | None = None,
        status: VersionStatus = VersionStatus.candidate,
        number: int | None = None,
        **fields: Any,
    ) -> V:
        """A new version (a candidate unless told) numbered after the owner's last, unless
        ``number`` says; ``fields`` name the owner and the table's own columns. Use
        :meth:`promote` to make it active."""
        if status == VersionStatus.active:
            raise ValueError("create the version as a candidate, then promote it")
        owner = self.owner({k: v for k, v in fields.items() if k in self.model.OWNER})
        columns: dict[str, Any] = {
            **fields,
            **owner,
            "number": number if number is not None else self.next_number(session, **owner),
            "parent_id": parent_id,
            "status": status,
            "artifact_uri": artifact_uri,
            "checksum": checksum,
            "metrics": dict(metrics or {}),
        }
        version = self.model(**columns)
        session.add(version)
        session.flush()
        return version

    def set_status(self, session: Session, *, version: V, status: VersionStatus) -> V:
        """Set a non-active status (reject a candidate, retire a version)."""
        if status == VersionStatus.active:
            raise ValueError("promote a version to make it active")
        version.status = status
        session.flush()
        if status == VersionStatus.rejected:
            self._send(session, "rejected", version, None, self.owner_of(version))
        return version

    def promote(
        self, session: Session, *, version: V | None, event: str = "promoted", **owner: Any
    ) -> V | None:
        """Make ``version`` its owner's active one (the owner defaults to the version's);
        the version active before is retired and returned. ``None`` retires the active one,
        so the owner falls back (a tenant to the base model, a skill to none, a tenant's
        teacher to the shared one). The owner's tenant is sent the webhook ``event``
        (``promoted``; a rollback: ``rolled_back``) where this history has one.

        The demotion is flushed before the promotion because of the one-active index. The
        promotion is one conditional UPDATE on the version still having its weights, so a
        rollback that races a deletion of its weights (:meth:`drop_weights`) fails
        (:class:`Gone`) instead of leaving an active version without weights."""
        if not owner and version is not None:
            owner = self.owner_of(version)
        owner = self.owner(owner)
        if version is not None and self.owner_of(version) != owner:
            raise ValueError(f"the version belongs to another {self.owner_noun}")
        previous = self.active(session, **owner)
        if previous is not None and version is not None and previous.id == version.id:
            return previous
        if previous is not None:
            previous.status = VersionStatus.retired
            session.flush()
        if version is not None:
            result = session.execute(
                update(self.model)
                .where(self.model.id == version.id, self.model.artifact_uri.is_not(None))
                .values(status=VersionStatus.active, promoted_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                raise Gone(
                    f"version {version.number} has no artifact: its weights were deleted; "
                    "choose a newer version"
                )
            session.refresh(version, ["status", "promoted_at"])
        if version is not None or event != "promoted":
            self._send(session, event, version, previous, owner)
        return previous

    def _send(
        self, session: Session, change: str, version: V | None, previous: V | None, owner: dict
    ) -> None:
        event_type = self.events.get(change)
        tenant_id = getattr(version or previous, "tenant_id", None) or owner.get("tenant_id")
        if event_type is None or tenant_id is None:
            return
        data = {
            **{k: v for k, v in owner.items() if k != "tenant_id"},
            "version": version_data(version),
            "previous": version_data(previous),
        }
        webhook_repo.add_event(session, tenant_id=tenant_id, event_type=event_type, data=data)

    def drop_weights(self, session: Session, *, version: V) -> str | None:
        """Forget where a version's weights are (and their checksum), unless it is active;
        returns the folder they were in, for the caller to remove once this is committed. One
        conditional UPDATE, so a version made active meanwhile keeps its weights
        (:class:`VersionIsActive`)."""
        folder = version.artifact_uri
        result = session.execute(
            update(self.model)
            .where(self.model.id == version.id, self.model.status != VersionStatus.active)
            .values(artifact_uri=None, checksum=None)
            .execution_options(synchronize_session="fetch")
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            raise VersionIsActive(
                f"version {version.number} is active: make another version active first "
                "(rollback, or a rebuild)"
            )
        return folder
