"""Test tooling shipped with the package: named validators and the consensus simulator."""
