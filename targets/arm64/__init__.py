"""ARM artifacts on an arm64 userland under qemu-user: building the userland (`userland.py`), running
the on-board runner there and on the host (`emulated.py`), comparing outputs (`compare.py`), and
`edgepipe verify-arm` (`verify.py`).

May import core, config, calibration, formats and `edgepipe.boards.device_runner`.
"""
