"""Encodec 24 kHz at 6 kbps as a continuous latent space (what SLED is trained on).

latent = sum of the first 8 RVQ codebook vectors chosen for the causal SEANet encoder's
output, ``[B, T, 128]`` at 75 Hz, ``T = ceil(S / 320)``. Decoding calls the SEANet decoder
directly (no scale, no chunking, no re-quantisation), as upstream does.

One deliberate difference from upstream: Encodec pads every decoder convolution on the
left by *reflecting* the first few samples, which peeks up to 6 frames ahead at the start
of an utterance. No causal stream can do that, so by default the decoder pads by
*replicating* the first sample (``decoder_padding="replicate"``); then one-shot and
streaming decoding agree to float rounding. The two paddings differ only in the first
few frames' worth of audio (plus what the LSTM carries on, which decays);
``decoder_padding="reflect"`` reproduces upstream/HF decoding bit for bit (one-shot only).
"""

from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F

from .audio import as_batch
from .base import LatentSpace, StreamingLatentDecoder
from .provenance import CodecWeights, mark_loaded_by_state_dict
from .quantizer import ResidualCodebooks
from .seanet import SEANetDecoder, SEANetEncoder
from .weights import assign_section, codebooks_from, find_cached_weights, group_section, randomize, read_weights

# Per-level std of the random codebooks: roughly the spread of a random encoder's output,
# shrinking like RVQ residuals, so that weights="random" latents depend on the input.
RANDOM_CODEBOOK_SCALES = [2.0 * 0.6 ** k for k in range(8)]
RANDOM_DECODER_GAIN = 0.005


class EncodecLatent(LatentSpace):
    """Encodec 24 kHz latent space: ``encode(audio) -> [B, T, 128]``, ``decode -> [B, T*320]``.

    Args:
        weights: Meta's ``encodec_24khz-d7cc33bc.th``, a Hugging Face ``facebook/encodec_24khz``
            directory, ``None`` (search the offline torch-hub / HF caches, error if absent),
            ``"random"`` (deterministic random weights, for tests and plumbing runs only), or
            ``"deferred"`` (zeros until ``load_state_dict`` fills them, e.g. from a SLED
            checkpoint; using it before that raises).
        defer: record ``weights`` in ``self.provenance`` but read them only at
            ``load_weights()`` (SLED builds its codec so: a checkpoint usually fills it).
        num_codebooks: RVQ levels summed into the latent (8 = 6 kbps, what SLED uses).
        decoder_padding: ``"replicate"`` (streamable, default) or ``"reflect"`` (upstream).
    """

    sample_rate = 24000
    hop_length = 320
    latent_dim = 128
    # The encoder's last convolution (kernel 7, at 75 Hz) reflect-pads its start with frames
    # 1..6, so an utterance of fewer than 7 frames sees whatever follows it: encode such
    # utterances alone (extract_latents does) to get batch-independent latents.
    min_batch_frames = 7

    def __init__(self, weights: Union[str, Path, None] = None, num_codebooks: int = 8,
                 decoder_padding: str = "replicate", defer: bool = False):
        super().__init__()
        if decoder_padding not in ("replicate", "reflect"):
            raise ValueError(f"decoder_padding={decoder_padding!r}; expected 'replicate' or 'reflect'")
        self.encoder = SEANetEncoder(self.latent_dim)
        self.quantizer = ResidualCodebooks(num_codebooks, 1024, self.latent_dim)
        self.decoder = SEANetDecoder(self.latent_dim, pad_mode=decoder_padding)
        self.requires_grad_(False)
        self.provenance = CodecWeights(source=None if weights is None else str(weights))
        if weights != "deferred" and not defer:
            self.load_weights()
        self.register_load_state_dict_post_hook(mark_loaded_by_state_dict)
        self.eval()

    # ------------------------------------------------------------------ weights
    def load_weights(self) -> None:
        """Fill the weights from ``provenance.source`` (a file, the caches, or random ones)."""
        self.provenance.loaded_from = self._read(self.provenance.source)

    def _read(self, weights: Optional[str]) -> str:
        if weights == "deferred":
            raise ValueError("latent_conf.weights is 'deferred': "
                             "this config can only load a checkpoint that holds the codec")
        if weights == "random":
            randomize(self, RANDOM_CODEBOOK_SCALES)
            with torch.no_grad():  # bring random "audio" to a waveform's scale (std ~0.1, not ~20)
                self.decoder.layers[-1].weight.mul_(RANDOM_DECODER_GAIN)
                self.decoder.layers[-1].bias.mul_(RANDOM_DECODER_GAIN)
            return "random"
        path = Path(weights) if weights is not None else find_cached_weights()
        state = read_weights(path)
        source = f"'{path}'"
        assign_section(self.encoder.weighted_modules(), group_section(state, "encoder."), "encoder", source)
        assign_section(self.decoder.weighted_modules(), group_section(state, "decoder."), "decoder", source)
        with torch.no_grad():
            self.quantizer.codebooks.copy_(codebooks_from(state, self.quantizer.codebooks.shape[0], source))
        return str(path)

    # ------------------------------------------------------------------ encode
    def encode_codes(self, audio: torch.Tensor, sample_rate: Optional[int] = None) -> torch.Tensor:
        """audio ``[S]`` / ``[B, S]`` / ``[B, C, S]`` -> RVQ codes ``LongTensor [B, K, T]``."""
        self.provenance.check_loaded()
        audio = as_batch(audio, sample_rate or self.sample_rate, self.sample_rate)
        # zero-pad to whole frames, as upstream's batched feature extractor effectively did:
        # the causal encoder then gives each utterance the same latents alone or in a batch
        audio = F.pad(audio, (0, -audio.shape[-1] % self.hop_length))
        with torch.autocast(audio.device.type, enabled=False), torch.no_grad():
            latent = self.encoder(audio[:, None]).transpose(1, 2)
            return self.quantizer.encode(latent)

    def encode(self, audio: torch.Tensor, sample_rate: Optional[int] = None) -> torch.Tensor:
        """audio ``[S]`` / ``[B, S]`` / ``[B, C, S]`` at ``sample_rate`` (default 24000; other
        rates are resampled, channels averaged) -> latents ``[B, ceil(S'/320), 128]`` fp32,
        computed in fp32 even inside an autocast region. The audio is zero-padded to whole
        frames first, so a batch of zero-padded utterances equals encoding each alone."""
        codes = self.encode_codes(audio, sample_rate)
        with torch.autocast(codes.device.type, enabled=False), torch.no_grad():
            return self.quantizer.decode(codes)

    # ------------------------------------------------------------------ decode
    def decode(self, frames: torch.Tensor) -> torch.Tensor:
        """frames ``[B, T, 128]`` -> audio ``[B, T * 320]`` fp32 at 24 kHz."""
        self.provenance.check_loaded()
        _check_frames(frames, self.latent_dim)
        with torch.autocast(frames.device.type, enabled=False), torch.no_grad():
            return self.decoder(frames.float().transpose(1, 2))[:, 0]

    def stream_decoder(self, batch_size: int = 1) -> "EncodecStreamingDecoder":
        """A stateful decoder: ``push(frames [B, t, 128]) -> audio [B, t * 320]``.

        It always pads the stream's start by replication, so its output equals ``decode``
        for ``decoder_padding="replicate"`` (the default), not for ``"reflect"``."""
        self.provenance.check_loaded()
        return EncodecStreamingDecoder(self, batch_size)


class EncodecStreamingDecoder(StreamingLatentDecoder):
    """Streams the causal decoder: each layer keeps its left context / overlap / LSTM state,
    so nothing is decoded twice. Concatenated outputs equal ``EncodecLatent.decode`` of all
    frames (replicate padding) to ~1e-6, whatever the chunk sizes."""

    def __init__(self, latent: EncodecLatent, batch_size: int = 1):
        self.latent = latent
        self.batch_size = batch_size
        self.cache: dict = {}
        self.frames_pushed = 0

    def push(self, frames: torch.Tensor) -> torch.Tensor:
        """frames ``[B, t, 128]`` (t >= 0) -> audio ``[B, t * 320]``."""
        _check_frames(frames, self.latent.latent_dim)
        if frames.shape[0] != self.batch_size:
            raise ValueError(f"pushed frames have batch {frames.shape[0]}; this stream was opened "
                             f"with batch_size={self.batch_size}")
        if frames.shape[1] == 0:
            return frames.new_zeros(self.batch_size, 0)
        with torch.autocast(frames.device.type, enabled=False), torch.no_grad():
            audio = self.latent.decoder.step(frames.float().transpose(1, 2), self.cache)
        self.frames_pushed += frames.shape[1]
        return audio[:, 0]


def _check_frames(frames: torch.Tensor, dim: int) -> None:
    if frames.dim() != 3 or frames.shape[-1] != dim:
        raise ValueError(f"frames have shape {tuple(frames.shape)}; expected [B, T, {dim}]")
