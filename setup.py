"""espnet2_sled: SLED-TTS (continuous-latent AR TTS with an energy-distance loss) for ESPnet."""

from setuptools import find_packages, setup

# ESPnet 202511 imports torchaudio and matplotlib without declaring them, and pins
# setuptools<74, which rules out torch>=2.13 (needs setuptools>=77). torch 2.12.1 is the
# newest torch that resolves together with it; tools/constraints.txt pins the full set.
install_requires = [
    "espnet==202511",
    "torch==2.12.1",
    "torchaudio==2.11.0",
    "matplotlib",
    "setuptools<74",
    "encodec==0.1.1",
    "sentencepiece",
    "librosa",
    "soundfile",
    "kaldiio",
    "espnet_model_zoo",
    "tokenizers",
    "safetensors",
    "tqdm",
]
extras_require = {
    # offline scorers that carry their own weights (recipe stage 8)
    "score": ["pocketsphinx", "resemblyzer", "speechmos", "onnxruntime", "jiwer"],
    # phoneme token lists (recipe --token_type phn --g2p espeak_ng_*): espeak-ng through phonemizer
    "g2p": ["phonemizer"],
    # second Encodec implementation used by tests to cross-check ours; selenium drives
    # Debian's chromium (apt: chromium chromium-driver) in the web page's test; openai: the
    # official client, against the server's /v1/audio/speech
    "test": ["pytest", "transformers", "selenium", "openai"],
    # the synthesis server (python -m espnet2_sled.bin.serve); wyoming: its --wyoming_port
    "serve": ["aiohttp", "wyoming"],
    # the CPU decode engine (--decode_backend onnxruntime: espnet2_sled/engine): the runtime,
    # onnx for its quantizers, onnx_ir for its 4-bit quantizer
    "cpu_engine": ["onnxruntime", "onnx", "onnx_ir"],
    # `make lint` (ruff.toml; run by .ci/run before the tests)
    "lint": ["ruff"],
}
extras_require["all"] = sorted({p for ps in extras_require.values() for p in ps})

setup(
    name="espnet2_sled",
    version="0.1.0",
    description="SLED-TTS as an ESPnet2 TTS plugin",
    packages=find_packages(include=["espnet2_sled", "espnet2_sled.*"]),
    package_data={"espnet2_sled.serve": ["static/*"]},  # the server's web page
    python_requires=">=3.11,<3.12",
    install_requires=install_requires,
    extras_require=extras_require,
)
