"""Device and rank ids of the process, read from the launcher's environment (local launchers and ModelArts set the
same variables)."""
from src.model_utils.local_adapter import get_device_id, get_device_num, get_job_id, get_rank_id

__all__ = ["get_device_id", "get_device_num", "get_rank_id", "get_job_id"]
