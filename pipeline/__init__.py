"""edgepipe: trained Keras Xception -> validated edge artifacts.

Heavy toolkits (TensorFlow, OpenVINO, NNCF, ONNX) are imported lazily inside the
functions that need them, so importing this package and `edgepipe --help` stay fast.
"""

__version__ = "0.1.0"
