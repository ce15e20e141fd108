"""The agent HTTP API (SPEC §6) on aiohttp: handlers, problem+json middleware, OpenAPI."""
