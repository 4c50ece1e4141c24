"""Where independent tasks run: `base.py` (Task, Failure, Executor, spec parsing), `local.py` (in this
process, one task after another, or a pool of worker processes), `ray_executor.py` (Ray tasks),
`factory.py` (`make_executor(spec)`), `board_resources.py` (boards as executor resources).

May import `edgepipe.core` only; Ray is imported only when a Ray executor is made.
"""
