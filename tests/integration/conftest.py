"""Fixtures of the local integration tier (see saltssh_env.py)."""

import shutil
import tempfile
from pathlib import Path

import pytest

from saltssh_env import EnvError, SaltSSH


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def saltssh():
    base = tempfile.mkdtemp(prefix="gfs2clvm-it-", dir="/tmp")
    env = SaltSSH(base)
    try:
        try:
            env.start()
            env.warm_up()
        except EnvError as err:
            pytest.fail(str(err))
        yield env
    finally:
        env.stop()
        shutil.rmtree(base, ignore_errors=True)
