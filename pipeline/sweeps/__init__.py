"""`edgepipe sweep`: `config.py` (sweep.yaml: models x recipes x targets x boards over a base
pipeline config), `runner.py` (every cell on an executor), `leaderboard.py` (Pareto fronts, best
candidate under the gates).

May import core, config, engine, executors and reports.
"""
