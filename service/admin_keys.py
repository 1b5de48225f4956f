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
