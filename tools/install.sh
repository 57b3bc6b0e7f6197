#!/usr/bin/env bash
# Creates ./.venv (when missing) with espnet2_sled and everything its tests and the mini
# recipe need, pinned by tools/constraints.txt so that every machine resolves the same set.
# Idempotent: a second run with an up-to-date venv takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
venv=.venv
stamp=$venv/.installed-$(cat setup.py tools/constraints.txt | sha1sum | cut -c1-12)
if [ -f "$stamp" ]; then exit 0; fi
[ -x $venv/bin/python ] || "$PY" -m venv $venv
# pip>=26 refuses ci_sdr's direct-URL extra (an ESPnet core dependency).
$venv/bin/python -m pip install -q "pip<26"
$venv/bin/python -m pip install -c tools/constraints.txt -e ".[all]"
$venv/bin/python -m pip check
# Debian speech synthesizers for the mini corpus, and five real LibriVox utterances
# (pocketsphinx-testdata) as an extra real-speech test set (recipe only; tests need none);
# chromium + its driver for the server's web-page test (tests/server/test_browser.py).
if ! command -v flite >/dev/null || ! command -v espeak-ng >/dev/null || ! command -v sox >/dev/null \
   || [ ! -d /usr/share/pocketsphinx/test/data/librivox ] \
   || [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq flite espeak-ng sox pocketsphinx-testdata \
      chromium chromium-driver >/dev/null
  else
    echo "install.sh: the mini recipe needs flite, espeak-ng, sox (and optionally pocketsphinx-testdata), the server's browser test chromium and chromium-driver; install them with your package manager" >&2
  fi
fi
rm -f $venv/.installed-* && touch "$stamp"
