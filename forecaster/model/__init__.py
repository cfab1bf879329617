"""Models: the architecture (spec), the NumPy serving step, Keras building, training and artifacts.

Only ``keras_model``, ``training`` and ``artifact`` import TensorFlow.
"""
