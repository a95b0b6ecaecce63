"""Data governance over a store and its models: what PII a store holds (scan), rotating the
pseudonym key, scrubbing an older store, and forgetting a user (docs/privacy.md). The primitives
they use (pseudonyms, the scrubber, k-anonymity) are in :mod:`selflearn.privacy`."""
