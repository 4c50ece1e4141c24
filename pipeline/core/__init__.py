"""The ground floor: typed errors (with exit codes), content hashes, tool versions and host facts,
typed artifact records, the content-addressed stage cache, class labels, progress output, atomic JSON;
and the hostile-input mechanisms every layer uses: `safeio` (every file read is a regular file within a
size limit), `tempdirs` (temporary folders marked as edgepipe's own, the only ones ever swept; `signals`
holds Ctrl-C and SIGTERM while one is made and marked),
`children` (foreign code run in limited child processes; SIGTERM always stops edgepipe), `bounds`
(numbers a config or command line may give); `telemetry` (the toolkits' usage reporting, off in edgepipe's
processes: edgepipe sends nothing over the network).

Imports nothing from edgepipe above it (only the standard library, numpy, pydantic, filelock, rich).
"""
