"""The networks and their runtimes: the BlazeFace detector, the 3DMM parameter regressor (torch and ONNX Runtime), the shipped weights, the 3DDFA-V2 baseline."""
