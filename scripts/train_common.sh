#!/bin/bash
# Shared by the run_*_train_*.sh launchers (sourced, not run): argument splitting and checks.
# The caller sets USAGE before sourcing and calls the functions below.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python

# Positional arguments go to ARGS, `--key=value` arguments (passed on to train.py) to OPTIONS.
split_args() {
    ARGS=(); OPTIONS=()
    local arg
    for arg in "$@"; do
        if [[ "$arg" == --* ]]; then OPTIONS+=("$arg"); else ARGS+=("$arg"); fi
    done
}

die() {
    echo "error: $1"
    echo "$USAGE"
    exit 1
}

check_count() {  # check_count MIN MAX
    if [ ${#ARGS[@]} -lt "$1" ] || [ ${#ARGS[@]} -gt "$2" ]; then echo "$USAGE"; exit 1; fi
}

get_real_path() {
    if [ "${1:0:1}" == "/" ]; then echo "$1"; else realpath -m "$PWD/$1"; fi
}

check_positive_int() {  # check_positive_int NAME VALUE
    [[ "$2" =~ ^[0-9]+$ ]] && [ "$2" -gt 0 ] || die "$1=$2 is not a positive integer"
}

check_device_id() {
    [[ "$1" =~ ^[0-9]+$ ]] || die "DEVICE_ID=$1 is not a non-negative integer"
}

# Sets PRETRAINED: an absolute file path, or `none` (train from scratch).
check_pretrained() {
    if [ "${1,,}" == "none" ]; then
        PRETRAINED=none
    else
        PRETRAINED=$(get_real_path "$1")
        [ -f "$PRETRAINED" ] || die "PRETRAINED_MODEL=$PRETRAINED is not a file (or 'none' to train from scratch)"
    fi
}

# Sets COCO_ROOT and MINDRECORD_DIR (default <COCO_ROOT>/FASTERRCNN_MINDRECORD/, created on the first run).
check_data() {  # check_data COCO_ROOT [MINDRECORD_DIR]
    COCO_ROOT=$(get_real_path "$1")
    [ -d "$COCO_ROOT" ] || die "COCO_ROOT=$COCO_ROOT is not a directory"
    MINDRECORD_DIR=$COCO_ROOT/FASTERRCNN_MINDRECORD/
    if [ -n "$2" ]; then
        MINDRECORD_DIR=$(get_real_path "$2")
        [ -d "$MINDRECORD_DIR" ] || die "MINDRECORD_DIR=$MINDRECORD_DIR is not a directory"
    fi
}

# run_logged LOGFILE CMD...: in the background (the original's way), or waiting when FOREGROUND=1.
run_logged() {
    local log=$1; shift
    if [ "${FOREGROUND:-0}" == "1" ]; then
        "$@" > "$log" 2>&1
        return $?
    fi
    "$@" > "$log" 2>&1 &
    echo "started in the background (pid $!): tail -f $PWD/$log"
}
