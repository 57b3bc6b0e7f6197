#!/usr/bin/env bash
# Merge per-job outputs DIR/<name-stem>.J.<ext> (J = 1..N) into DIR/<name>, sorted by key.
#   local/merge_parts.sh DIR N feats.scp speech_shape
# e.g. feats.scp <- feats.1.scp ... feats.N.scp; speech_shape <- speech_shape.1 ... .N
# A missing part is an error (that job failed); output goes via a temp name.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 DIR N NAME [NAME ...]" >&2
    exit 1
fi
dir=$1
n=$2
shift 2
for name in "$@"; do
    stem=${name%.*}
    ext=${name##*.}
    parts=()
    for j in $(seq "${n}"); do
        if [ "${stem}" != "${name}" ]; then part=${dir}/${stem}.${j}.${ext}; else part=${dir}/${name}.${j}; fi
        [ -f "${part}" ] || { echo "$0: ${part} is missing (job ${j} failed? see ${dir}/log)" >&2; exit 1; }
        parts+=("${part}")
    done
    LC_ALL=C sort -k1,1 -u "${parts[@]}" > "${dir}/${name}.tmp"
    mv "${dir}/${name}.tmp" "${dir}/${name}"
done
