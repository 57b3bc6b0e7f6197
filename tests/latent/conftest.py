"""Shared fixtures for the latent-space tests: one random Encodec per session and test audio."""

import pytest

from espnet2_sled.latent import EncodecLatent
from latent_testutils import speech_like


@pytest.fixture(scope="session")
def encodec() -> EncodecLatent:
    return EncodecLatent(weights="random")


@pytest.fixture
def speech():
    return speech_like
