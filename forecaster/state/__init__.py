"""Series state that outlives a process: which partitions this instance holds, and the
checkpoints that let another process resume them.

``partitions`` (the assign/revoke lifecycle), ``checkpoint`` (the checkpoint format and
the file store) and ``changelog`` (the Kafka changelog store).
"""
