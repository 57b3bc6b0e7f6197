"""The synthesis server: ``python -m espnet2_sled.bin.serve --model_file exp/sled/sled.zip``.

protocol.py   what clients send and get back: messages, options, close codes, 16-bit PCM
served_model.py  the model as the server sees it: sample rate, /info facts, stream, synthesize
scheduler.py  one model worker thread (started with the app); sessions advanced round-robin
app.py        the aiohttp routes: ``/`` (web page), ``/stream`` (WebSocket), ``/synthesize``
              (whole text -> WAV), ``/info`` (model, limits, active sessions)
openai_api.py OpenAI's ``/v1/audio/speech``, ``/v1/models``, ``/v1/audio/voices``
audio_formats.py  wav / pcm / mp3 / opus / flac, encoded a chunk at a time (libsndfile)
session.py    a scheduler stream seen from the event loop (OpenAI and Wyoming routes)
voices.py     ``--voices DIR``: named voice prompts, OpenAI's voice names
access.py     ``--api_key``, foreign web origins, loopback Host check
wyoming_server.py  the Wyoming protocol (Home Assistant), ``--wyoming_port``
static/       the web page (plays chunks as they arrive with Web Audio)
"""
