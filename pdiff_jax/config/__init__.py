"""Configs and everything that reads them before a run starts.

``defaults`` is the default config (every field a run may set); ``choices`` is the one
home of every allowed value, JAX-free; ``check`` validates a whole config (values and
relations) and ``inputs`` the data set and model it names, with ``fields`` wording each
problem; ``diff`` compares two configs across versions and ``workdir`` decides whether a
workdir's finished stages still belong to the config at hand; ``unknown_fields`` turns a
misspelt ``--config.x`` into one line.
"""
