"""The paper's experiments as named suites of runs: ``catalog`` names them, ``runner``
runs them resumably (``placement``: how many at once, on which devices or cores;
``shared_zoos``: one zoo per distinct zoo config), ``aggregate`` writes suite.md,
suite.json and plots, and ``paper_recipe`` holds the authors' generator recipe as config
overrides.
"""
