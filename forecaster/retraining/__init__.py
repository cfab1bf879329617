"""Keeping the model fresh: when to retrain, on what history, where the run executes,
whether its candidate may serve, and the registry every instance serves from."""
