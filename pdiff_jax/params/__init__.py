"""Parameters as data: which leaves of a network's variables form the subset a zoo stores
(``spec``: ``ParamSpec`` and the selectors), and the round trip between those leaves and
flat vectors ``f32[D]`` (``subset``: ``flatten_subset`` / ``unflatten_subset`` / ``merge``).
"""
