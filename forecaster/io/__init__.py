"""Sources and sinks: where ticks come from and where forecasts and dead letters go.

A source hands over batches and is told to commit a batch once its results are
acknowledged by the sink; that order is what makes delivery at-least-once.
"""
