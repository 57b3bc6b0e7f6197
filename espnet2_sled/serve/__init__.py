"""The synthesis server: ``python -m espnet2_sled.bin.serve --model_file exp/sled/sled.zip``.

protocol.py   what clients send and get back: messages, options, close codes, 16-bit PCM
scheduler.py  one model worker thread; sessions advanced round-robin, a chunk at a time
app.py        the aiohttp routes: ``/`` (web page), ``/stream`` (WebSocket), ``/synthesize``
              (whole text -> WAV), ``/info`` (model, limits, active sessions)
static/       the web page (plays chunks as they arrive with Web Audio)
"""
