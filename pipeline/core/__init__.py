"""The ground floor: typed errors (with exit codes), content hashes, tool versions and host facts,
typed artifact records, the content-addressed stage cache, class labels, progress output, atomic JSON.

Imports nothing from edgepipe above it (only the standard library, numpy, pydantic, filelock, rich).
"""
