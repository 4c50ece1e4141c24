"""Board URLs (`ssh://[user@]host[:port]/path[?python=PYTHON]`, pipeline/boards/remote.py `Device.parse`): what is
refused before any ssh runs, and how the destination reaches ssh. No board is needed: every refusal happens
while parsing."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from edgepipe.boards.remote import Device, Remote, SSHOptions
from edgepipe.cli.app import app
from edgepipe.core.errors import InputError


@pytest.mark.parametrize("url, said", [
    ("ssh://[::1/p", "Received: 'ssh://[::1/p'"),  # urlsplit's ValueError (an unclosed IPv6 bracket)
    ("ssh://h:0/p", "Received: 'ssh://h:0/p'"),  # port 0 would silently become ssh's default port
    ("ssh://h:99999/p", "Received: 'ssh://h:99999/p'"),
    ("ssh://-oProxyCommand=touch%20x@h/p", "its user not starting with '-'"),  # an ssh option, not a user
    ("ssh://-oProxyCommand=x/p", "Received: 'ssh://-oProxyCommand=x/p'"),
    ("ssh://h:1/%00x", "its path without control characters"),  # a NUL cannot reach ssh
    ("ssh://h/p?python=%00", "its python without control characters"),
    ("ssh://h/p%0Aq", "its path without control characters"),
    ("ssh://h/p\nq", "without control characters"),  # urlsplit drops the newline: 'pq' was used
    ("ssh://h/p\tq", "without control characters"),
])
def test_a_url_ssh_would_misread_is_refused_while_parsing(url, said):
    with pytest.raises(InputError, match="expected ssh://") as err:
        Device.parse(url)
    assert said in str(err.value)


def test_a_valid_url_still_parses():
    d = Device.parse("ssh://pi@[::1]:2222/~/edge?python=/opt/py/bin/python3")
    assert (d.user, d.host, d.port, d.path, d.python) == ("pi", "::1", 2222, "~/edge", "/opt/py/bin/python3")


def test_nothing_after_the_options_is_read_as_an_option():
    """`--` comes before the destination: ssh reads neither the destination nor the command as options."""
    argv = Remote(Device.parse("ssh://pi@h:22/opt/edge"), SSHOptions(multiplex=False)).argv("true")
    assert argv[-3:] == ["--", "pi@h", "true"] and argv.count("--") == 1


@pytest.mark.parametrize("args", [["board", "status", "ssh://[::1/p"], ["board", "list", "ssh://h:1/%00x", "--json"],
                                  ["board", "rollback", "ssh://h:0/p"]])
def test_board_commands_refuse_such_urls_with_exit_2_and_no_traceback(args):
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "expected ssh://" in res.output, res.output
    assert "Traceback" not in res.output and not isinstance(res.exception, ValueError)
