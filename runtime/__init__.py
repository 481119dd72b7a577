"""Runtimes below latency measurement and export: model -> ONNX, ONNX -> TensorRT engine, optional imports.

``latency`` (timing blocks through a runtime) and ``export`` (deploying a
model through one) both build on these; neither imports the other.
"""
