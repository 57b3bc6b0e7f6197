#!/usr/bin/env bash
# A smaller copy of a Kaldi data dir: N utterances spread evenly over SRC (every k-th of its
# sorted utterances), with every file reduced to match (utils/fix_data_dir.sh). For runs
# that test plumbing, not learning (the Encodec plumbing run in .ci/run).
#   local/subset_data_dir.sh SRC N DST
set -euo pipefail
if [ $# -ne 3 ]; then
    echo "usage: $0 SRC_DATA_DIR NUM_UTTS DST_DATA_DIR" >&2
    exit 1
fi
src=$1 num=$2 dst=$3
[ -f "${src}/text" ] || { echo "$0: ${src}/text not found (SRC must be a Kaldi data dir)" >&2; exit 1; }
[[ "${num}" =~ ^[1-9][0-9]*$ ]] || { echo "$0: NUM_UTTS must be a positive integer (got '${num}')" >&2; exit 1; }
total=$(wc -l < "${src}/text")
tmp="${dst}.tmp"
rm -rf "${tmp}"
mkdir -p "$(dirname "${dst}")"
cp -r "${src}" "${tmp}"
rm -rf "${tmp}/.backup"
step=$(( total > num ? total / num : 1 ))
LC_ALL=C sort "${src}/text" | awk -v step="${step}" -v num="${num}" '(NR - 1) % step == 0 && n < num { print; n++ }' > "${tmp}/text"
utils/fix_data_dir.sh "${tmp}" >/dev/null
rm -rf "${tmp}/.backup" "${dst}"
mv "${tmp}" "${dst}"
echo "$0: ${dst}: $(wc -l < "${dst}/text") of ${total} utterances of ${src}"
