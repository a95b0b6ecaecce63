"""Privacy primitives: keyed pseudonyms of ids, the PII scrubber and k-anonymity of shared
artefacts (docs/privacy.md). The operations over a store (scan, key rotation, forgetting a user)
are in :mod:`selflearn.governance`."""
