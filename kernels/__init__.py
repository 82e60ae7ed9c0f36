"""Hot loops (Numba kernels, the ONNX Runtime session wrapper); imports neither pipeline nor nodes."""
