"""How work runs, whatever is trained: the device mesh (``sharding``) and multi-host
start-up (``distributed``), per-backend throughput choices (``dispatch``), the one
resumable training loop with its NaN policy (``train_loop``), Orbax checkpoints and JSON
files (``checkpoint``), the optimizer factory (``optimizer``) and the metrics log.
"""
