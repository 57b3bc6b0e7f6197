"""The server's handle on the model (serve/served_model.py) and who owns what: the scheduler's
worker starts only when asked (or with the app), and build_app leaves the caller's Limits alone."""

import asyncio

import torch
from aiohttp import web

from espnet2_sled.serve.app import INFO, SCHEDULER, build_app
from espnet2_sled.serve.protocol import Limits, SynthesisOptions
from espnet2_sled.serve.scheduler import Scheduler
from espnet2_sled.serve.served_model import ServedModel

SPEAK = dict(seed=0, stop_threshold=2.0, max_frames=12)  # never stops early: 12 frames of audio


def test_scheduler_worker_starts_when_asked_and_synthesizes_as_the_api(synthesizer):
    model = ServedModel(synthesizer, "tiny")
    assert model.sample_rate == synthesizer.fs and model.max_frames == synthesizer.tts.max_positions
    scheduler = Scheduler(model, Limits())
    assert scheduler.thread is None  # constructing starts no thread
    with scheduler:
        assert scheduler.thread.is_alive()
        wav, _ = scheduler.synthesize("a short text.", SynthesisOptions(**SPEAK)).result(timeout=300)
        assert scheduler.active_sessions() == 0 and scheduler.sessions_served() == 1
    assert not scheduler.thread.is_alive()
    reference = synthesizer("a short text.", **SPEAK)["wav"]
    assert wav.shape[-1] > 0 and torch.equal(wav, reference)


def test_build_app_copies_limits_and_runs_the_worker_with_the_app(synthesizer):
    limits = Limits(max_sessions=2)
    app = build_app(ServedModel(synthesizer, "tiny"), limits)
    assert limits.max_frames is None  # the caller's object is unchanged
    assert app[SCHEDULER].limits.max_frames == synthesizer.tts.max_positions == app[INFO]["limits"]["max_frames"]
    assert app[SCHEDULER].limits.max_sessions == 2 and app[SCHEDULER].thread is None

    async def run_app():
        runner = web.AppRunner(app)
        await runner.setup()
        alive = app[SCHEDULER].thread.is_alive()
        await runner.cleanup()
        return alive

    assert asyncio.run(run_app()) is True
    assert not app[SCHEDULER].thread.is_alive()
