"""The networks and their runtimes.

* :mod:`.detector`: MediaPipe BlazeFace (ONNX Runtime), the default face detector;
* :mod:`.regressor`: the project's 3DMM parameter regressor (network and torch runtime);
* :mod:`.regressor_onnx`: its ONNX Runtime export and runtime, and the runtime choice;
* :mod:`.weights`: where the shipped weights are, checksums, the missing-torch error;
* :mod:`.baseline_3ddfa`: the user-supplied 3DDFA-V2 MobileNet, for comparisons.
"""
