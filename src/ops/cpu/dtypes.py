"""Dtype checks for the custom ops' shape/dtype inference functions."""

from mindspore import dtype as mstype


def require_float32(op_name: str, names: str, dtypes) -> None:
    """Raise TypeError unless every dtype is float32 (plain or as the `tensor[float32]` inference passes)."""
    elements = [dtype.element_type() if isinstance(dtype, mstype.TensorType) else dtype for dtype in dtypes]
    if any(element != mstype.float32 for element in elements):
        raise TypeError(f"{op_name}: {names} must be float32, got {[str(e) for e in elements]}")
