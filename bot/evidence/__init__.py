"""Evidence: canonical digests, DSSE attestations, the RFC 6962 Merkle log, checkpoints,
keys and grants. Pure functions and small classes; no store, no HTTP, no adapters."""
