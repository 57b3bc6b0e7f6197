# shellcheck shell=bash
# Sourced by every recipe script: environment for the SLED LibriHeavy recipe.
MAIN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
export MAIN_ROOT

# The repository's virtualenv (tools/install.sh makes it); otherwise use whatever
# python3 is first on PATH.
if [ -f "${MAIN_ROOT}/.venv/bin/activate" ] && [ "${VIRTUAL_ENV:-}" != "${MAIN_ROOT}/.venv" ]; then
    # shellcheck disable=SC1091
    . "${MAIN_ROOT}/.venv/bin/activate"
fi

_recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PATH="${_recipe_dir}/utils:${PATH}"
export PYTHONPATH="${MAIN_ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
export LC_ALL=C
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export PYTHONIOENCODING=UTF-8
# Where NLTK data would be looked for if a config used --g2p g2p_en. Nothing needs it
# otherwise: espnet2_sled defers g2p_en's import, so no stage tries nltk.download.
export NLTK_DATA="${NLTK_DATA:-${_recipe_dir}/downloads/nltk_data}"
export NCCL_SOCKET_IFNAME="^lo,docker,virbr,vmnet,vboxnet"
unset _recipe_dir
