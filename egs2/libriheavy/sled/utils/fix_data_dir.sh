#!/usr/bin/env bash
# Sort a Kaldi data dir, drop inconsistent entries, regenerate spk2utt (see fix_data_dir.py).
#   utils/fix_data_dir.sh DATA_DIR
set -euo pipefail
exec python3 "$(dirname "$0")/fix_data_dir.py" "$@"
