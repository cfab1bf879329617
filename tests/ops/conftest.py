"""The tick file the pipeline and service runs of these tests replay."""

import pytest

from tests.support.replay_input import ReplayInput, write_replay_input


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> ReplayInput:
    return write_replay_input(tmp_path_factory.mktemp("metrics"), ticks_prefix=600)
