"""The label model's network: a MiniLM turn encoder over each exchange's user utterance and system
reply, categorical and numerical turn features, a dialogue-level Transformer encoder over the turns
of a dialogue, and one head per task (the keynote's "Label generation model", RoBERTa → MiniLM).

``context=False`` replaces the dialogue Transformer by a per-turn layer of the same width: the
context-free baseline (the keynote's RoBERTa-without-context). ``causal=True`` (the online mode)
lets turn t attend to turns up to t only. ``encoder="frozen"`` takes precomputed sentence vectors
of the user turn and the reply instead of fine-tuning MiniLM (no slot tagging then: it needs the
tokens)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["NetConfig", "build_net", "N_NUMERIC"]

N_NUMERIC = 13  # log tokens, then asr confidence, nlu confidence, log gap, barge-in, next request's similarity, log gap to it: each with a missing flag
MAX_TURNS = 32  # turn positions embedded; later turns share the last position


@dataclass
class NetConfig:
    text_layers: int = 6  # MiniLM layers kept (of 6): fewer is faster and weaker
    d_model: int = 256
    dialogue_layers: int = 2
    heads: int = 4
    dropout: float = 0.1
    context: bool = True
    causal: bool = False
    encoder: str = "finetune"  # or "frozen"
    categories: tuple[int, ...] = ()  # vocabulary size of each categorical feature (with <unk>)
    n_intents: int = 1
    n_tags: int = 1
    n_satisfaction: int = 0
    n_dialogue_labels: int = 0

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def build_net(cfg: NetConfig, *, pretrained: bool):
    import torch
    from torch import nn

    from ..models.backbone import DIM, build_encoder, mean_pool

    class LabelNet(nn.Module):
        def __init__(self):
            super().__init__()
            if cfg.encoder == "frozen":
                self.text, h = None, DIM
            else:
                self.text = build_encoder(pretrained=pretrained, layers=cfg.text_layers)  # the first text_layers of MiniLM's six
                h = self.text.config.hidden_size
            d = cfg.d_model
            self.cat_emb = nn.ModuleList(nn.Embedding(n, 16) for n in cfg.categories)
            self.turn_in = nn.Sequential(nn.Linear(4 * h + 16 * len(cfg.categories) + N_NUMERIC, d), nn.GELU(), nn.LayerNorm(d))
            self.position = nn.Embedding(MAX_TURNS, d)
            if cfg.context:
                layer = nn.TransformerEncoderLayer(d, cfg.heads, 2 * d, cfg.dropout, batch_first=True, norm_first=True)
                self.dialogue = nn.TransformerEncoder(layer, cfg.dialogue_layers, enable_nested_tensor=False)
            else:
                self.dialogue = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.LayerNorm(d))
            self.drop = nn.Dropout(cfg.dropout)
            self.binary = nn.Linear(d, 3)  # defect, goal success, corrupted (pretraining)
            self.same_goal = nn.Linear(2 * d, 1)
            self.intent = nn.Linear(d, cfg.n_intents)
            self.slots = nn.Linear(h + d, cfg.n_tags)
            self.satisfaction = nn.Linear(d, max(cfg.n_satisfaction, 1))
            self.dialogue_label = nn.Linear(d, max(cfg.n_dialogue_labels, 1))

        def forward(self, b: dict) -> dict:
            if "u_vec" in b:  # sentence vectors given: a frozen encoder's, or an attack varying the request's vector
                hu, u, r = None, b["u_vec"], b["r_vec"]
            else:
                hu = self.text(input_ids=b["u_ids"], attention_mask=b["u_mask"]).last_hidden_state
                hr = self.text(input_ids=b["r_ids"], attention_mask=b["r_mask"]).last_hidden_state
                u, r = mean_pool(hu, b["u_mask"]), mean_pool(hr, b["r_mask"])
            parts = [u, r, (u - r).abs(), u * r]  # the pair as sentence-pair models see it: does the reply fit the request?
            parts += [emb(b["cats"][:, k]) for k, emb in enumerate(self.cat_emb)]
            parts.append(b["nums"])
            x = self.turn_in(torch.cat(parts, -1))  # (N, d)
            pos = b["turn_pos"]  # (B, T) indices into the N turns, -1 where padded
            pad = pos < 0
            seq = x[pos.clamp(min=0)] + self.position(torch.arange(pos.shape[1]).clamp(max=MAX_TURNS - 1)).unsqueeze(0)
            seq = seq.masked_fill(pad.unsqueeze(-1), 0.0)
            if cfg.context and cfg.causal:
                causal = torch.triu(torch.ones(pos.shape[1], pos.shape[1], dtype=torch.bool), 1)
                seq = self.dialogue(seq, mask=causal, src_key_padding_mask=pad)
            elif cfg.context:
                seq = self.dialogue(seq, src_key_padding_mask=pad)
            else:
                seq = self.dialogue(seq)
            seq = self.drop(seq)
            h = seq[~pad]  # (N, d), turns in the order of turn_pos, which is the order of N
            prev = torch.cat([torch.zeros_like(seq[:, :1]), seq[:, :-1]], 1)[~pad]
            binary = self.binary(h)
            dl = self.dialogue_label(seq.masked_fill(pad.unsqueeze(-1), 0.0).sum(1) / (~pad).sum(1, keepdim=True).clamp(min=1))
            slots = None if hu is None else self.slots(self.drop(torch.cat([hu, h.unsqueeze(1).expand(-1, hu.shape[1], -1)], -1)))
            return {"defect": binary[:, 0], "goal_success": binary[:, 1], "corrupted": binary[:, 2],
                    "same_goal": self.same_goal(torch.cat([h, prev], -1)).squeeze(-1), "intent": self.intent(h),
                    "slots": slots, "satisfaction": self.satisfaction(h), "dialogue_label": dl}

    return LabelNet()
