"""What the server needs of a model, in one typed interface: its sample rate, its fixed facts
(for /info) and option limits, a streaming session, a whole-text synthesis.

``ServedModel`` is the one place under ``serve/`` that knows ``SLEDText2Speech``'s insides
(``tts.tts.config``, the latent space); the scheduler, the routes, OpenAI's API and Wyoming
see only this interface. All its model work runs on the scheduler's worker thread.
"""

from typing import TYPE_CHECKING, Any, Dict

from espnet2_sled.serve.protocol import SynthesisOptions

if TYPE_CHECKING:  # the server imports ESPnet only through the model it is given
    from espnet2_sled.long_text import PiecewiseSession
    from espnet2_sled.text2speech import SLEDText2Speech


class ServedModel:
    """``ServedModel(tts, name)``: ``tts`` a ``SLEDText2Speech`` with a latent space."""

    def __init__(self, tts: "SLEDText2Speech", name: str):
        sled, latent = tts.tts, tts.tts.latent_space
        if latent is None:
            raise ValueError(f"model '{name}' has no latent space (tts_conf.latent), so it cannot make audio; "
                             "serve a model trained with latent: encodec or mel")
        self.tts, self.name = tts, name
        self.sample_rate = int(tts.fs)
        self.max_frames = int(sled.max_positions)  # frames one request may ask for, at most
        self.device = str(tts.device)
        self.latent = {"name": sled.config.latent, "latent_dim": int(latent.latent_dim),
                       "hop_length": int(latent.hop_length), "frame_rate": float(latent.frame_rate)}
        self.streaming = {"layout": sled.layout, "tokens_per_chunk": sled.tokens_per_chunk,
                          "frames_per_chunk": sled.frames_per_chunk,
                          "chunk_seconds": sled.frames_per_chunk / float(latent.frame_rate)}
        self.decode_defaults = {k: v for k, v in sled.decode_options(**tts.decode_conf).items()
                                if isinstance(v, (int, float, bool, str, type(None)))}

    def prepare_engine(self) -> None:
        """With ``--decode_backend onnxruntime``: export / load the decode engine's sessions now,
        before the first stream (which must not wait for them); nothing otherwise."""
        engine = getattr(self.tts.tts.lm, "decode_engine", None)
        if engine is not None:
            engine.prepare(cfg=True).prepare(cfg=False)

    def stream(self, options: SynthesisOptions) -> "PiecewiseSession":
        """A streaming session (``push_text`` / ``end_text`` give audio chunks) with these options."""
        return self.tts.stream(voice_prompt=options.prompt_audio, prompt_text=options.prompt_text,
                               prompt_sample_rate=options.prompt_sample_rate, **options.decode_kwargs())

    def synthesize(self, text: str, options: SynthesisOptions) -> Dict[str, Any]:
        """Whole-text offline decoding: ``SLEDText2Speech.__call__``'s dict (``wav [S]``, ``report``)."""
        return self.tts(text, prompt_text=options.prompt_text, prompt_audio=options.prompt_audio,
                        prompt_sample_rate=options.prompt_sample_rate, **options.decode_kwargs())
