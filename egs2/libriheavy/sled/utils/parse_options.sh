# shellcheck shell=bash
# Parse --name value / --name=value options into existing shell variables.
#
# Source this after defining the defaults and (optionally) $help_message:
#     stage=1; use_gpu=false
#     . utils/parse_options.sh
# Afterwards "$@" holds the positional arguments that followed the options.
#
# - dashes in names are turned into underscores (--stop-stage == --stop_stage);
# - an option must name a variable that is already set (typos fail loudly);
# - a variable whose default is true/false only accepts true/false;
# - --help / -h prints $help_message (if any) and the current values, then exits 0;
# - "--" ends option parsing.

_po_usage() {
    if [ -n "${help_message:-}" ]; then
        printf '%s\n' "${help_message}"
    fi
}

while [ $# -gt 0 ]; do
    case "$1" in
        --help|-h)
            _po_usage
            exit 0
            ;;
        --)
            shift
            break
            ;;
        --*=*)
            _po_name="${1%%=*}"
            _po_value="${1#*=}"
            shift
            ;;
        --*)
            if [ $# -lt 2 ]; then
                echo "$0: option '$1' needs a value" >&2
                exit 1
            fi
            _po_name="$1"
            _po_value="$2"
            shift 2
            ;;
        *)
            break
            ;;
    esac
    _po_name="${_po_name#--}"
    _po_name="${_po_name//-/_}"
    if ! [[ "${_po_name}" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
        echo "$0: invalid option name '--${_po_name}'" >&2
        exit 1
    fi
    if [ -z "${!_po_name+set}" ]; then
        echo "$0: unknown option '--${_po_name}' (no variable of that name has a default)" >&2
        _po_usage >&2
        exit 1
    fi
    _po_old="${!_po_name}"
    if [ "${_po_old}" = true ] || [ "${_po_old}" = false ]; then
        if [ "${_po_value}" != true ] && [ "${_po_value}" != false ]; then
            echo "$0: option '--${_po_name}' expects true or false, got '${_po_value}'" >&2
            exit 1
        fi
    fi
    printf -v "${_po_name}" '%s' "${_po_value}"
done
unset _po_name _po_value _po_old
true
