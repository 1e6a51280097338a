"""Device and rank ids of a local (non-ModelArts) run, read from the launcher's environment."""
import os


def get_device_id() -> int:
    return int(os.getenv("DEVICE_ID", "0"))


def get_device_num() -> int:
    return int(os.getenv("RANK_SIZE", os.getenv("MS_WORKER_NUM", "1")))


def get_rank_id() -> int:
    return int(os.getenv("RANK_ID", os.getenv("MS_NODE_ID", "0")))


def get_job_id() -> str:
    return "Local Job"
