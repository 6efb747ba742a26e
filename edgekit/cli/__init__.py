"""Command-line tools, installed as `edgekit-<verb>`; each is thin: flags -> config -> one call."""
