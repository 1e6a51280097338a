#!/bin/bash
# Data-parallel training on DEVICE_NUM GPU workers of this machine through msrun (MindSpore's launcher); each rank
# reads its shard. Outputs in ./train_parallel: log (msrun), msrun_log/worker_<rank>.log, loss_<rank>.log,
# save_ckpt/ckpt_0/*.ckpt (rank 0 only unless --save_on_master=False).
# Across machines: start it on every node with the same DEVICE_NUM (workers on that node) and NODE_NUM=<nodes>
# NODE_RANK=<this node, 0..NODE_NUM-1> MASTER_ADDR=<node 0's address> (defaults: one node, 127.0.0.1); the data
# set and MINDRECORD_DIR at the same path on every node (ranks other than 0 wait for rank 0's MindRecord).
# Extra --key=value arguments go to train.py. MASTER_PORT (default 8118) is msrun's port on node 0.
# FOREGROUND=1 waits and returns msrun's exit status (default: background, as the original).
USAGE="Usage: bash run_distribute_train_gpu.sh [DEVICE_NUM] [PRETRAINED_MODEL|none] [COCO_ROOT] [MINDRECORD_DIR](option) [--key=value ...]"
source "$(dirname "$0")/train_common.sh"
split_args "$@"
check_count 3 4
check_pretrained "${ARGS[1]}"
check_data "${ARGS[2]}" "${ARGS[3]}"
check_device GPU
run_msrun_training GPU default_config_gpu.yaml
