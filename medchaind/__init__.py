"""medchaind: a permissioned proof-of-authority blockchain daemon for healthcare data."""

__version__ = "0.1.0"
