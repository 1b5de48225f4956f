"""The admin keys of :class:`service.settings.Settings`: the one the operator set or, in
development, the one made and kept in ``DATA_DIR/admin_key``; the extra keys of a rotation;
the key that reads ``/metrics`` only. Every comparison is in constant time."""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr


class AdminKeys:
    """Methods of the settings object over its ``admin_key``, ``admin_extra_keys``,
    ``metrics_key`` and ``data_dir`` fields."""

    if TYPE_CHECKING:  # the fields are the settings' (declared here, pydantic would take them)
        admin_key: SecretStr | None
        admin_extra_keys: SecretStr | None
        metrics_key: SecretStr | None
        data_dir: Path

    def check_production_keys(self, placeholders: set[str]) -> None:
        """Refuse (ValueError) an admin key, extra key or metrics key that is a placeholder
        or shorter than 16 characters: the rule of ``SEAL_ENVIRONMENT=production``."""
        metrics = [self.metrics_key.get_secret_value()] if self.metrics_key else []
        for name, other in (
            ("SEAL_ADMIN_EXTRA_KEYS", self._extra_keys()),
            ("SEAL_METRICS_KEY", metrics),
        ):
            if any(k.lower() in placeholders or len(k) < 16 for k in other):
                raise ValueError(f"each key of {name} must be at least 16 characters")
        key = self.admin_key.get_secret_value() if self.admin_key else ""
        if key.strip().lower() in placeholders or len(key) < 16:
            raise ValueError(
                "SEAL_ADMIN_KEY must be set to a secret of at least 16 characters "
                "when SEAL_ENVIRONMENT=production"
            )

    @property
    def admin_key_file(self) -> Path:
        return self.data_dir / "admin_key"

    def ensure_admin_key(self) -> str:
        """The admin key; in development one is made and kept in DATA_DIR/admin_key."""
        if self.admin_key is not None:
            return self.admin_key.get_secret_value()
        path = self.admin_key_file
        if path.exists():
            key = path.read_text().strip()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            key = "seal-admin-" + secrets.token_urlsafe(24)
            path.write_text(key + "\n")
            path.chmod(0o600)
        self.admin_key = SecretStr(key)
        return key

    def _extra_keys(self) -> list[str]:
        raw = self.admin_extra_keys.get_secret_value() if self.admin_extra_keys else ""
        return [k.strip() for k in raw.split(",") if k.strip()]

    def admin_key_name(self, key: str) -> str | None:
        """Which admin key ``key`` is (``SEAL_ADMIN_KEY``, ``SEAL_ADMIN_EXTRA_KEYS[i]``), None
        for none; every key is compared, in constant time."""
        given = key.encode()
        keys = [self.ensure_admin_key(), *self._extra_keys()]
        matches = [hmac.compare_digest(given, k.encode()) for k in keys]
        if matches[0]:
            return "SEAL_ADMIN_KEY"
        return next((f"SEAL_ADMIN_EXTRA_KEYS[{i}]" for i, m in enumerate(matches[1:]) if m), None)

    def is_admin_key(self, key: str) -> bool:
        """Whether ``key`` is an admin key (SEAL_ADMIN_KEY or one of SEAL_ADMIN_EXTRA_KEYS)."""
        return self.admin_key_name(key) is not None

    def reads_metrics(self, key: str) -> bool:
        """Whether ``key`` may read GET /metrics: an admin key or SEAL_METRICS_KEY."""
        metrics = self.metrics_key.get_secret_value() if self.metrics_key else None
        own = metrics is not None and hmac.compare_digest(key.encode(), metrics.encode())
        return self.is_admin_key(key) or own
