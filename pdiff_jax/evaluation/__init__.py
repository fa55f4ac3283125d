"""How generated parameters are judged, against the zoo they came from.

``evaluator`` measures many parameter sets per compiled call (the frozen head computed
once); ``groups`` measures every group of a run (originals, generated, memorization
baselines from ``baselines``, fine-tuned members from ``finetune``) with ``protocol``'s
one selection rule (best by training accuracy) and ``novelty``'s distances; ``report``,
``plots`` and ``render`` turn the results into results.json, report.md and figures.
``batch_stats``, ``conditional`` and ``init_training`` serve the BatchNorm, conditional
and initialization experiments.
"""
