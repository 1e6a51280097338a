#!/bin/bash
# Data-parallel training on the Ascend devices listed in RANK_TABLE_FILE (HCCL), one process per device, as the
# original. Outputs in ./train_parallel/rank_<i>: log, env.log, loss_<i>.log, save_ckpt/ckpt_<i>/*.ckpt
# (rank 0 only unless --save_on_master=False). Extra --key=value arguments go to train.py.
# FOREGROUND=1 waits for every rank and fails if any failed (default: background, as the original).
USAGE="Usage: bash run_distribute_train_ascend.sh [RANK_TABLE_FILE] [PRETRAINED_MODEL|none] [COCO_ROOT] [MINDRECORD_DIR](option) [--key=value ...]"
source "$(dirname "$0")/train_common.sh"
split_args "$@"
check_count 3 4
RANK_TABLE_FILE=$(get_real_path "${ARGS[0]}")
[ -f "$RANK_TABLE_FILE" ] || die "RANK_TABLE_FILE=$RANK_TABLE_FILE is not a file"
check_pretrained "${ARGS[1]}"
check_data "${ARGS[2]}" "${ARGS[3]}"
# The number of devices is the rank table's (the original assumed 8).
DEVICE_NUM=$("$PYTHON" -c "
import json, sys
table = json.load(open(sys.argv[1]))
print(sum(len(server.get('device', [])) for server in table.get('server_list', [])))
" "$RANK_TABLE_FILE" 2> /dev/null)
[[ "$DEVICE_NUM" =~ ^[0-9]+$ ]] && [ "$DEVICE_NUM" -gt 0 ] || die "RANK_TABLE_FILE=$RANK_TABLE_FILE lists no devices (server_list[].device[])"

check_device Ascend
ulimit -u unlimited 2> /dev/null || true  # as the original, where the system allows it
export HCCL_CONNECT_TIMEOUT=600 DEVICE_NUM RANK_SIZE=$DEVICE_NUM RANK_TABLE_FILE
mkdir -p train_parallel || exit 1
PIDS=()
for ((i = 0; i < DEVICE_NUM; i++)); do
    export DEVICE_ID=$i RANK_ID=$i
    mkdir -p "train_parallel/rank_$i"
    (
        cd "train_parallel/rank_$i" || exit 1
        env > env.log
        echo "start training for rank $i, device $DEVICE_ID"
        "$PYTHON" "$ROOT/train.py" --config_path="$ROOT/default_config.yaml" --device_target=Ascend \
            --coco_root="$COCO_ROOT" --mindrecord_dir="$MINDRECORD_DIR" --device_id="$i" --rank_id="$i" \
            --run_distribute=True --device_num="$DEVICE_NUM" --pre_trained="$PRETRAINED" "${OPTIONS[@]}" > log 2>&1
    ) &
    PIDS+=($!)
done
if [ "${FOREGROUND:-0}" == "1" ]; then
    status=0
    for pid in "${PIDS[@]}"; do wait "$pid" || status=1; done
    exit $status
fi
echo "started ${DEVICE_NUM} ranks in the background: logs in $PWD/train_parallel/rank_<i>/log"
