"""The configuration store contract, run against every backend in `tests/backends.py`."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from gateway.config.base import ConfigStore
from gateway.core.errors import Conflict, NotFound
from gateway.core.models import ConsentDefault, Integration, IntegrationState, Source
from gateway.core.settings import Secret
from gateway.destinations.tiktok.config import TikTokConfig
from tests.backends import OpenStore

TOKEN = "tok_plaintext_never_on_disk_0123456789"


def source(source_id: str = "src_abc123", **changes: object) -> Source:
    base = Source(
        id=source_id,
        name="Shop",
        allowed_origins=("https://shop.example", "https://www.shop.example"),
        cookie_domain=".shop.example",
        consent_default=ConsentDefault.GRANT,
        default_phone_region="US",
        server_key_hash="ab" * 32,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]  # test helper


def integration(
    integration_id: str = "int_1", source_id: str = "src_abc123", **changes: object
) -> Integration:
    base = Integration(
        id=integration_id,
        source_id=source_id,
        name="TikTok Events API",
        config=TikTokConfig(
            pixel_code="CXXXXXXXXXXXXXXXXX",
            access_token=Secret(TOKEN),
            test_event_code="TEST123",
            rate_limit_rps=12.5,
            rate_limit_burst=25,
            use_current_event_names=True,
            event_mapping={"Order Completed": "Purchase", "Signed Up": "CompleteRegistration"},
            limited_data_use=True,
        ),
        consent_categories=("advertising", "analytics"),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]  # test helper


def without_times(record: Source | Integration) -> Source | Integration:
    return dataclasses.replace(record, created_at="", updated_at="")


def is_utc_iso(stamp: str) -> bool:
    parsed = dt.datetime.fromisoformat(stamp)
    return parsed.utcoffset() == dt.timedelta(0)


async def test_source_round_trip(config_store: ConfigStore) -> None:
    created = await config_store.create_source(source())

    assert without_times(created) == source()
    assert is_utc_iso(created.created_at)
    assert created.updated_at == created.created_at
    assert await config_store.get_source("src_abc123") == created
    assert await config_store.get_source("src_missing") is None


async def test_sources_listed_in_creation_order(config_store: ConfigStore) -> None:
    for source_id in ("src_c", "src_a", "src_b"):
        await config_store.create_source(source(source_id))
    assert [s.id for s in await config_store.list_sources()] == ["src_c", "src_a", "src_b"]


async def test_duplicate_source_conflicts(config_store: ConfigStore) -> None:
    await config_store.create_source(source())
    with pytest.raises(Conflict):
        await config_store.create_source(source(name="Other"))


async def test_update_source(config_store: ConfigStore) -> None:
    created = await config_store.create_source(source())
    updated = await config_store.update_source(
        source(name="Renamed", allowed_origins=(), cookie_domain=None)
    )

    assert (updated.name, updated.allowed_origins, updated.cookie_domain) == ("Renamed", (), None)
    assert updated.created_at == created.created_at
    assert updated.updated_at >= created.updated_at
    with pytest.raises(NotFound):
        await config_store.update_source(source("src_missing"))


async def test_delete_source_deletes_its_integrations(config_store: ConfigStore) -> None:
    await config_store.create_source(source("src_a"))
    await config_store.create_source(source("src_b"))
    await config_store.create_integration(integration("int_a", "src_a"))
    await config_store.create_integration(integration("int_b", "src_b"))

    assert await config_store.delete_source("src_a") is True
    assert await config_store.delete_source("src_a") is False
    assert await config_store.get_integration("int_a") is None
    assert [i.id for i in await config_store.list_integrations()] == ["int_b"]


async def test_integration_round_trip(config_store: ConfigStore) -> None:
    await config_store.create_source(source())
    created = await config_store.create_integration(integration())

    assert without_times(created) == integration()
    assert created.config.access_token.reveal() == TOKEN
    assert created.config.event_mapping == integration().config.event_mapping
    assert created.consent_categories == ("advertising", "analytics")
    assert created.state is IntegrationState.ACTIVE
    assert is_utc_iso(created.created_at)
    assert await config_store.get_integration("int_1") == created
    assert await config_store.get_integration("int_missing") is None


async def test_integration_defaults_round_trip(config_store: ConfigStore) -> None:
    await config_store.create_source(source())
    plain = Integration(
        id="int_plain",
        source_id="src_abc123",
        name="Plain",
        config=TikTokConfig(pixel_code="CP", access_token=Secret("t")),
        enabled=False,
    )
    created = await config_store.create_integration(plain)
    assert without_times(created) == plain
    assert created.state is IntegrationState.DISABLED


async def test_integration_conflict_and_not_found(config_store: ConfigStore) -> None:
    await config_store.create_source(source())
    await config_store.create_integration(integration())

    with pytest.raises(Conflict):
        await config_store.create_integration(integration(name="Again"))
    with pytest.raises(NotFound):
        await config_store.update_integration(integration("int_missing"))
    with pytest.raises(NotFound):  # an integration needs an existing source
        await config_store.create_integration(integration("int_2", "src_missing"))
    assert await config_store.delete_integration("int_1") is True
    assert await config_store.delete_integration("int_1") is False


async def test_update_integration(config_store: ConfigStore) -> None:
    await config_store.create_source(source())
    created = await config_store.create_integration(integration())
    new_config = dataclasses.replace(
        created.config, access_token=Secret("tok_rotated"), event_mapping={}
    )
    updated = await config_store.update_integration(
        dataclasses.replace(created, name="Renamed", config=new_config, consent_categories=())
    )

    assert (updated.name, updated.consent_categories) == ("Renamed", ())
    assert updated.config == new_config
    assert updated.created_at == created.created_at
    assert await config_store.get_integration("int_1") == updated


async def test_list_integrations_by_source(config_store: ConfigStore) -> None:
    await config_store.create_source(source("src_a"))
    await config_store.create_source(source("src_b"))
    for integration_id, source_id in (("int_3", "src_a"), ("int_1", "src_b"), ("int_2", "src_a")):
        await config_store.create_integration(integration(integration_id, source_id))

    assert [i.id for i in await config_store.list_integrations()] == ["int_3", "int_1", "int_2"]
    assert [i.id for i in await config_store.list_integrations("src_a")] == ["int_3", "int_2"]
    assert await config_store.list_integrations("src_missing") == []


async def test_set_paused_changes_only_the_reason(config_store: ConfigStore) -> None:
    await config_store.create_source(source())
    created = await config_store.create_integration(integration())

    await config_store.set_paused("int_1", "access token rejected (40001)")
    paused = await config_store.get_integration("int_1")
    assert paused == dataclasses.replace(created, paused_reason="access token rejected (40001)")
    assert paused.state is IntegrationState.PAUSED

    await config_store.set_paused("int_1", None)
    assert await config_store.get_integration("int_1") == created
    await config_store.set_paused("int_missing", "gone")  # deleted meanwhile: nothing happens


async def test_config_version_grows_with_every_write(config_store: ConfigStore) -> None:
    seen = [await config_store.config_version()]

    async def wrote() -> None:
        seen.append(await config_store.config_version())
        assert seen[-1] > seen[-2]

    await config_store.create_source(source())
    await wrote()
    await config_store.update_source(source(name="Renamed"))
    await wrote()
    await config_store.create_integration(integration())
    await wrote()
    await config_store.update_integration(integration(name="Renamed"))
    await wrote()
    await config_store.set_paused("int_1", "paused")
    await wrote()
    await config_store.delete_integration("int_1")
    await wrote()
    await config_store.delete_source("src_abc123")
    await wrote()

    await config_store.list_sources()
    assert await config_store.config_version() == seen[-1]  # reads change nothing


async def test_another_handle_sees_changes(config_store_factory: OpenStore) -> None:
    first, second = await config_store_factory(), await config_store_factory()
    before = await second.config_version()

    await first.create_source(source())
    assert await second.config_version() > before
    assert await second.get_source("src_abc123") == await first.get_source("src_abc123")


async def test_access_token_is_not_stored_in_plaintext(
    config_store: ConfigStore, tmp_path: Path
) -> None:
    if not hasattr(config_store, "path"):
        pytest.skip("this backend keeps no local file")
    await config_store.create_source(source())
    await config_store.create_integration(integration())
    await config_store.update_integration(integration(name="Renamed"))

    def read_files() -> bytes:
        # The main file and, while open, the WAL holding the latest writes.
        return b"".join(p.read_bytes() for p in sorted(tmp_path.glob("config.db*")))

    while_open = await asyncio.to_thread(read_files)
    await config_store.close()  # checkpoints the WAL into the main file
    after_close = await asyncio.to_thread(read_files)
    for raw in (while_open, after_close):
        assert b"CXXXXXXXXXXXXXXXXX" in raw  # these files do hold the configuration
        assert TOKEN.encode() not in raw
