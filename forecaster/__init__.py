"""forecaster: a streaming per-series LSTM/GRU price forecaster.

Each tick steps the series' recurrent state once and yields a forecast of the
series' next price. The data path reads top to bottom:

    source -> ticks (parse) -> state -> model step (engine) -> sink -> commit

TensorFlow is imported only by the modules that train or load Keras models, so
`import forecaster` and the CLI's help stay fast.
"""

__version__ = "0.1.0"
