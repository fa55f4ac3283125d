"""The zoo: the trained parameter sets a generator learns from.

``collect`` builds one (snapshots of a subset of one network, or K seeded networks),
``training`` and ``stacked_training`` are the classifier loops it runs, ``alignment``
(with ``permutation_spec`` and ``resnet_permutations``) puts seed zoos in one mode by
permuting hidden units, ``settings`` is the collection recipe as a dataclass, and
``store`` is the ``Zoo`` artifact (vectors ``f32[K, D]``, spec, accuracies) on disk;
``estimate`` times a few training steps to say how long ``collect`` will take.
"""
