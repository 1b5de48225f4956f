"""Adapter versions of the tenants' students: their history (:mod:`.versions`), owned by a
tenant."""

from __future__ import annotations

from service.store.models import AdapterVersion
from service.store.repositories.versions import VersionHistory

ADAPTERS: VersionHistory[AdapterVersion] = VersionHistory(
    AdapterVersion,
    noun="adapter version",
    owner_noun="tenant",
    events={
        "promoted": "adapter.promoted",
        "rejected": "adapter.rejected",
        "rolled_back": "adapter.rolled_back",
    },
)

next_adapter_number = ADAPTERS.next_number
create_adapter_version = ADAPTERS.create
get_adapter_version = ADAPTERS.get
active_adapter = ADAPTERS.active
list_adapter_versions = ADAPTERS.listed
set_version_status = ADAPTERS.set_status
promote_version = ADAPTERS.promote
drop_weights = ADAPTERS.drop_weights
past_retention = ADAPTERS.past_retention
