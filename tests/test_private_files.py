"""Everything the gateway writes to its data directory is its user's alone, from the start:
the directory 0700, every file (databases, their -wal/-shm, locks, keys, the admin token) 0600.

The attack: another account on the host reads the data directory (sealed tokens, hashed PII,
the admin token) because the files were created world-readable.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.processes import gateway_env, running_gateway
from tests.tiktok_double import TikTokDouble

pytestmark = pytest.mark.slow


def modes(directory: Path) -> dict[str, int]:
    return {
        str(path.relative_to(directory)): stat.S_IMODE(path.stat().st_mode)
        for path in sorted(directory.rglob("*"))
    }


async def test_fresh_data_dir_is_private_from_the_first_start(
    tmp_path: Path, tiktok: TikTokDouble
) -> None:
    data_dir = tmp_path / "fresh" / "data"
    env = gateway_env(data_dir, tiktok.url)
    # No token or key in the environment: the gateway makes both and keeps them in the data dir.
    del env["GATEWAY_ADMIN_TOKEN"]
    assert "GATEWAY_SECRET_KEY" not in env
    async with running_gateway(env, tmp_path / "gateway.log"):
        found = modes(data_dir)  # while running: the -wal and -shm files exist

    expected = {"admin_token", "secret_key", "config.db", "hitlog.db", "ledger.db"}
    assert expected <= set(found), found
    assert any(name.endswith("-wal") for name in found), found
    assert any(name.endswith("-shm") for name in found), found
    assert {name: oct(mode) for name, mode in found.items() if mode != 0o600} == {}
    assert oct(stat.S_IMODE(data_dir.stat().st_mode)) == oct(0o700)
