"""Precomputed rewrites: absorbing Markov chains over rephrase chains, the rewrite table."""
