"""Import (and export) the released SLED-TTS checkpoints (ICTNLP/SLED-TTS-*Libriheavy).

``checkpoint``: config.json -> tts_conf, the key map and its checks; ``tokenizer``: the
RoBERTa byte-level BPE as ESPnet token type ``byte_bpe``. The CLI is
``python -m espnet2_sled.bin.import_upstream``; see README.md in this folder.
"""
