"""Adapters around the signoff core: CLI, composition root, chat channels, console, pager,
agent-side integrations. Adapters import ``bot``; ``bot`` never imports adapters."""
