"""The label model's text path, for a white-box attacker (the privacy audit's canary inversion).

The model reads each exchange's request as a sentence vector: the frozen MiniLM's (``encoder =
"frozen"``: the vectors are inputs) or the mean of its own fine-tuned MiniLM's token states. Here,
for a few dialogues that hold a request, the summed log-probability of their turns' defect labels
as a differentiable function of that request's vector: ``score(vectors (n, h)) -> (n,)``, every
other turn's vectors fixed. With :func:`text_encoder` (the sentence encoder whose vectors the
model reads) this is what :func:`selflearn.privacy.inversion.invert_secret` needs.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .batches import MAX_USER_TOKENS, collate
from .dialogues import Dialogue
from .feeding import Feed

__all__ = ["TunedTextEncoder", "text_encoder", "defect_scorer"]


class TunedTextEncoder:
    """A fine-tuned label model's own text encoder as a sentence encoder: the mean of its token
    states over the request's tokens, not normalised (as the network pools them)."""

    normalise = False

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer

    def encode(self, texts: list[str], *, batch_size: int = 256, max_length: int = MAX_USER_TOKENS) -> np.ndarray:
        import torch

        from ..models.backbone import mean_pool

        out = []
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                enc = self.tokenizer([t.split() for t in texts[i : i + batch_size]], is_split_into_words=True, padding=True,
                                     truncation=True, max_length=max_length, return_tensors="pt")
                out.append(mean_pool(self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state,
                                     enc["attention_mask"]).numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.model.config.hidden_size), np.float32)


def text_encoder(model, frozen):
    """The sentence encoder whose vectors ``model`` (a fitted LabelModel) reads: ``frozen`` (the
    off-the-shelf MiniLM, shared with the audit) or the model's own fine-tuned one."""
    return frozen if model.net_config_.encoder == "frozen" else TunedTextEncoder(model.net_.text, model.tokenizer_)


def defect_scorer(model, dialogues: list[Dialogue], text: str) -> Callable:
    """``score(vectors)``: per row, the summed log-probability of the defect labels of
    ``dialogues``' turns (the weak labels they were trained with) when every exchange whose request
    is ``text`` reads that row as its request's vector (a vector of :func:`text_encoder`'s)."""
    import torch

    from ..models.backbone import mean_pool

    model._check_fitted()
    net = model.net_.eval()
    b = collate(model._encode(Feed(dialogues, None), list(range(len(dialogues)))), model.tokenizer_.pad_token_id)
    flat = [e for d in dialogues for e in d.exchanges]
    with torch.no_grad():
        if "u_vec" not in b:  # the fine-tuned text path: every exchange's vectors as the network pools them
            pooled = {k: mean_pool(net.text(input_ids=b[f"{k}_ids"], attention_mask=b[f"{k}_mask"]).last_hidden_state, b[f"{k}_mask"])
                      for k in ("u", "r")}
            b = {**b, "u_vec": pooled["u"], "r_vec": pooled["r"]}
    hit = torch.tensor([e.user == text for e in flat])
    y, known = b["y_defect"], ~torch.isnan(b["y_defect"])
    n_turns, pos = len(flat), b["turn_pos"]

    def score(vectors):
        k = len(vectors)
        u = b["u_vec"].to(vectors.dtype).repeat(k, 1)
        rows = torch.arange(k).repeat_interleave(int(hit.sum()))
        u = u.index_put((torch.nonzero(hit.repeat(k)).squeeze(1),), vectors[rows])
        shifted = torch.where(pos < 0, pos, pos + (torch.arange(k) * n_turns)[:, None, None]).reshape(-1, pos.shape[1])  # copy c's turns
        batch = {"u_vec": u, "r_vec": b["r_vec"].to(vectors.dtype).repeat(k, 1), "cats": b["cats"].repeat(k, 1),
                 "nums": b["nums"].repeat(k, 1), "turn_pos": shifted}
        logit = net(batch)["defect"].view(k, n_turns)
        logp = torch.where(y.bool(), torch.nn.functional.logsigmoid(logit), torch.nn.functional.logsigmoid(-logit))
        return (logp * known).sum(1)

    return score
