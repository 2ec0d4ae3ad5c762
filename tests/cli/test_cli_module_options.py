"""Module CLI options with a closed vocabulary are checked by click before anything is
loaded or sent: a typo is a usage error (exit 2) that names the valid values, not a
node-side refusal after a passphrase prompt."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from medchaind.cli.client import main
from medchaind.modules.claims.machine import STATUSES
from medchaind.modules.consent.machine import ACTIONS


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["consent", "grant", "--key", "k", "--actor", "a", "--actions", "reed"],
         "reed is not an action; use a comma-separated subset of: read, write"),
        (["consent", "grant", "--key", "k", "--actor", "a", "--actions", "read,wrte"],
         "wrte is not an action"),
        (["consent", "grant", "--key", "k", "--actor", "a", "--actions", ","],
         "nothing is not an action"),
        (["claims", "list", "--provider", "p", "--status", "bogus"],
         "'bogus' is not one of"),
    ],
)
def test_closed_vocabularies_are_usage_errors(tmp_path, args, message):
    res = CliRunner().invoke(main, ["--home", str(tmp_path), *args])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert not any(tmp_path.iterdir()), "nothing is created for a usage error"


def test_every_valid_value_passes_the_option_check(tmp_path):
    # each valid value gets past click (the command then fails later: no key, no node)
    for action in ACTIONS:
        res = CliRunner().invoke(main, ["--home", str(tmp_path), "consent", "grant", "--key", "k",
                                        "--actor", "a", "--actions", action])
        assert "is not an action" not in res.output
    for status in STATUSES:
        res = CliRunner().invoke(main, ["--home", str(tmp_path), "claims", "list", "--provider", "p",
                                        "--status", status])
        assert "is not one of" not in res.output
