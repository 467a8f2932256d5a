"""Command-line entry points: they parse arguments, call the service and print."""
