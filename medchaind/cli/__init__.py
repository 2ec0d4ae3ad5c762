"""Command-line entry points: ``medchaind`` (operators) and ``medchain`` (clients)."""
