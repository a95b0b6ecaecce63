"""A white-box model inversion attack on text classifiers, in the spirit of ModIvA ("Canary
extraction in natural language understanding models", Parikh et al., ACL 2022).

The attacker knows the model's weights, the canary's template ("my pin code is {secret}"), the
label the model learnt for it, and the secret's format. Inputs are discrete, so the secret's tokens
are relaxed: each secret position holds a softmax over candidate tokens whose mixture of word
embeddings goes through the MiniLM encoder (the models' shared backbone); gradient ascent on the
log-probability of the canary's label moves the mixtures, and the argmax of each is the guess.
Tokens recovered: how many of the secret's symbols the guess gets right (chance: 1 / alphabet).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import InvalidInputError, explain
from .canaries import CanaryFormat

__all__ = ["secret_token_ids", "invert_secret"]


def secret_token_ids(tokenizer, fmt: CanaryFormat, vocabulary: str = "format") -> list[int]:
    """The candidate token of each symbol of the alphabet (``vocabulary="format"``: the attacker
    knows the format), or every token of the vocabulary (``"all"``)."""
    if vocabulary == "all":
        return list(range(tokenizer.vocab_size))
    ids = []
    for s in fmt.alphabet:
        pieces = tokenizer.tokenize(s)
        if len(pieces) != 1 or tokenizer.convert_tokens_to_ids(pieces[0]) == tokenizer.unk_token_id:
            raise InvalidInputError(explain(f"symbol {s!r}", "must be one token of the MiniLM tokenizer for the inversion attack",
                                            "use digits or lower-case letters as the alphabet"))
        ids.append(tokenizer.convert_tokens_to_ids(pieces[0]))
    return ids


def invert_secret(encoder, score: Callable, fmt: CanaryFormat, *, vocabulary: str = "format", steps: int = 150, lr: float = 0.3,
                  restarts: int = 2, top: int = 10, seed: int = 0) -> list[str]:
    """The secret's symbols the attack reads out of the model (one token per position). ``encoder`` is a :class:`SentenceEncoder` (the
    MiniLM the model's text path uses; ``normalise = False`` on it for a path that pools without
    normalising); ``score(vectors)`` maps its sentence vectors (torch, (n, 384)) to the
    log-probability of the canary's label under the model (differentiable)."""
    import torch

    from ..models.backbone import mean_pool

    tok, model = encoder.tokenizer, encoder.model
    unit = getattr(encoder, "normalise", True)  # a fine-tuned model's own text path may pool without normalising
    prefix, _, suffix = fmt.template.partition("{secret}")
    pre = tok(prefix.strip(), add_special_tokens=False)["input_ids"] if prefix.strip() else []
    suf = tok(suffix.strip(), add_special_tokens=False)["input_ids"] if suffix.strip() else []
    fixed_left = [tok.cls_token_id] + pre
    fixed_right = suf + [tok.sep_token_id]
    cand = torch.tensor(secret_token_ids(tok, fmt, vocabulary))
    table = model.get_input_embeddings().weight.detach()
    left, right, options = table[fixed_left], table[fixed_right], table[cand]
    n = len(fixed_left) + fmt.length + len(fixed_right)
    mask = torch.ones(1, n, dtype=torch.long)
    for p in model.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    names = tok.convert_ids_to_tokens(cand.tolist())
    best, best_score = None, -np.inf
    for _ in range(restarts):
        z = (0.01 * torch.randn(fmt.length, len(cand), generator=gen)).requires_grad_(True)
        opt = torch.optim.Adam([z], lr=lr)
        for step in range(steps):
            tau = max(0.1, 1.0 - step / steps)  # anneal towards one-hot
            soft = torch.softmax(z / tau, -1) @ options
            emb = torch.cat([left, soft, right])[None]
            v = mean_pool(model(inputs_embeds=emb, attention_mask=mask).last_hidden_state, mask, normalise=unit)
            loss = -score(v).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        # the relaxation only points the way: a discrete coordinate ascent among each position's
        # most likely tokens decides (each guess scored as the real sentence it is)
        short = z.detach().topk(min(top, len(cand)), -1).indices.tolist()
        guess = [row[0] for row in short]
        value = -np.inf
        for _round in range(3):  # single-token changes, then swaps of two positions, until neither helps
            before = value
            moves = [[guess[:pos] + [c] + guess[pos + 1 :] for c in short[pos]] for pos in range(fmt.length)]
            moves.append([_swapped(guess, a, b) for a in range(fmt.length) for b in range(a + 1, fmt.length)] or [guess])
            for options_here in moves:
                texts = [fmt.template.format(secret=" ".join(names[c] for c in g)) for g in options_here]
                with torch.no_grad():
                    sc = score(torch.from_numpy(encoder.encode(texts))).numpy()
                k = int(np.argmax(sc))
                if sc[k] > value:
                    guess, value = options_here[k], float(sc[k])
            if value <= before:
                break
        if value > best_score:
            best, best_score = [names[c] for c in guess], value
    return best


def _swapped(guess: list[int], a: int, b: int) -> list[int]:
    g = list(guess)
    g[a], g[b] = g[b], g[a]
    return g
