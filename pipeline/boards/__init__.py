"""Artifacts on boards: `bundle.py` (manifest + sha256 + signature), `signing.py` (Ed25519 keys),
`archive.py` (safe tar pack/unpack), `remote.py` (boards over the system OpenSSH client), `upload.py`
(one tar stream over ssh: progress, size-scaled timeout), `preflight.py` (read-only board checks), `lock.py`
(one ship/bench per board), `ship.py` (verify, upload, atomic switch, smoke test, rollback),
`board_ops.py` (`edgepipe board status|list|rollback`: read a board, roll `current` back), `trust.py`
(`edgepipe board trust`: rotate the trusted key with a statement signed by it),
`device_bench.py` (`edgepipe bench --device`), and `device_runner.py`: the one-file on-board runner
(Python >= 3.7, numpy + one runtime; it imports nothing from edgepipe and is uploaded as is).

May import `edgepipe.core` and `edgepipe.formats`.
"""
