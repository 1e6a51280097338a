"""Inference outside MindSpore: the network as an ONNX model (onnx_export.py) and running it with onnxruntime
(onnx_infer.py)."""
