#!/usr/bin/env bash
# Check a Kaldi data dir without changing it; exit 1 listing the problems.
#   utils/validate_data_dir.sh DATA_DIR
set -euo pipefail
exec python3 "$(dirname "$0")/fix_data_dir.py" --validate-only "$@"
