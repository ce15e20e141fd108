"""signoff core: domain, policy, evidence, store, scheduler and the agent HTTP API.

Nothing in this package imports ``adapters`` or any chat SDK (enforced by import-linter).
"""

__version__ = "0.1.0"
