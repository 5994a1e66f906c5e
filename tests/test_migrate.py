"""`gateway migrate-config`: the embedded configuration copied into PostgreSQL, by the real CLI."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from pathlib import Path

import pytest

from gateway.config.postgres import PostgresConfigStore
from gateway.config.sqlite import SQLiteConfigStore
from gateway.core.crypto import SecretBox
from gateway.core.settings import Secret
from tests.backends import (
    POSTGRES_URL,
    drop_postgres_schema,
    require_service,
    unique_name,
)
from tests.test_store import TOKEN, integration, source

SECRET = "migrate-secret-key-0123456789-abcdefghij"


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def schema() -> object:
    require_service("PostgreSQL", POSTGRES_URL)
    name = unique_name("s")
    yield name
    await drop_postgres_schema(name)


async def test_migrate_config_from_sqlite_to_postgresql(tmp_path: Path, schema: str) -> None:
    box = SecretBox([Secret(SECRET)], purpose="access-token")
    sqlite_path = tmp_path / "config.db"
    old = SQLiteConfigStore(sqlite_path, box)
    await old.open()
    await old.create_source(source("src_a"))
    await old.create_source(source("src_b", name="Second shop"))
    await old.create_integration(integration("int_1", "src_a"))
    await old.create_integration(integration("int_2", "src_b", paused_reason="token rejected"))
    expected_sources = await old.list_sources()
    expected_integrations = await old.list_integrations()
    await old.close()

    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update({"GATEWAY_DATA_DIR": str(tmp_path / "data"), "GATEWAY_SECRET_KEY": SECRET})
    target = f"{POSTGRES_URL}?schema={schema}"
    args = ("migrate-config", "--from", f"sqlite://{sqlite_path}", "--to", target)
    code, out, err = await run_cli(*args, env=env)
    assert code == 0, err
    assert "copied 2 sources and 2 integrations (0 already there" in out
    assert TOKEN not in out + err

    new = PostgresConfigStore(target, box)
    await new.open()
    try:

        def same(records: list) -> list:  # type: ignore[type-arg]
            return [dataclasses.replace(r, created_at="", updated_at="") for r in records]

        assert same(await new.list_sources()) == same(expected_sources)
        assert same(await new.list_integrations()) == same(expected_integrations)
        moved = await new.get_integration("int_1")
        assert moved is not None and moved.config.access_token.reveal() == TOKEN
    finally:
        await new.close()

    # Run again: everything is already there and left alone.
    code, out, _ = await run_cli(*args, env=env)
    assert code == 0
    assert "copied 0 sources and 0 integrations (4 already there" in out


async def test_migrate_config_without_the_key_says_so(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_DATA_DIR"] = str(tmp_path / "empty")
    code, _, err = await run_cli(
        "migrate-config", "--to", "postgresql://nobody@127.0.0.1:9/none", env=env
    )
    assert code == 2
    assert "GATEWAY_SECRET_KEY" in err and "Traceback" not in err
    code, _, err = await run_cli("migrate-config", "--to", "mysql://x/y", env=env)
    assert code == 2 and "GATEWAY_DATABASE_URL" in err
