"""What the privacy audit needs of each model type, as one small interface with paired verbs:
``records`` (the training records a store gives, as the trainer builds them) / ``fit`` (a fresh
model of the same parameters on other records: the shadows), ``p_true`` (each record's probability
of the label it was trained with), and the text path for canaries (``with_text`` / ``text_scorer``:
the model's log-probability of a record's label as a function of the request's sentence vector).

Shadows are ``sklearn.base.clone`` of the audited model: the shared estimator base makes one
retraining path serve every model type, DP settings included."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import InvalidInputError, explain
from ..models.base import fingerprint

__all__ = ["Records", "AuditTarget", "FailurePointTarget", "LabelTarget", "RephraseTarget", "EncoderTarget", "RankerTarget", "target_for"]


@dataclass
class Records:
    items: list  # what the model's fit takes (turns, examples, ...)
    labels: list  # the label each was trained with
    users: list[str]  # whose record it is (pseudonym)
    texts: list[str]  # the request text (canaries are found by it)
    sampling: dict | None = None  # for a trainer that samples its records: the share of each kind it took

    def subset(self, idx) -> "Records":
        idx = list(idx)
        return Records([self.items[i] for i in idx], [self.labels[i] for i in idx], [self.users[i] for i in idx], [self.texts[i] for i in idx])

    def of_users(self, users: set[str]) -> "Records":
        return self.subset(i for i, u in enumerate(self.users) if u in users)


class AuditTarget:
    """Base: a model type the audit knows how to attack."""

    component = ""
    vector_path = True  # the request's sentence vector reaches the output (white-box inversion applies)

    def records(self, store, model=None) -> Records:
        raise NotImplementedError

    def reference_records(self, store, model, members: Records) -> Records:
        """The records of the reference users, drawn like the members' (a trainer that samples a
        fixed number of each kind takes different shares of logs of other sizes: the reference is
        sampled at the members' shares, else each user's mix of kinds would tell the sides apart)."""
        return self.records(store, model)

    def fit(self, model, records: Records, *, encoder=None):
        raise NotImplementedError

    def share_encoder(self, model, encoder) -> None:
        """Let ``model`` embed texts with ``encoder`` (a cache shared with the shadows)."""

    def p_true(self, model, records: Records) -> np.ndarray:
        raise NotImplementedError

    def with_text(self, item, text: str, old: str | None = None):
        raise NotImplementedError

    def canary_texts(self, records: Records, text: str) -> list[int]:
        """The records where the request is ``text``."""
        return [i for i, t in enumerate(records.texts) if t == text]

    def text_scorer(self, model, records: Records, text: str) -> Callable:
        """``f(vectors (n, 384) torch) -> (n,)``: the summed log-probability of each record's label
        when the sentence vector of its request ``text`` is replaced by each row (differentiable)."""
        raise NotImplementedError

    def text_encoder(self, model, encoder):
        """The sentence encoder whose vectors :meth:`text_scorer` takes (by default the frozen MiniLM)."""
        return encoder

    def check_trained_on(self, model, records: Records, store) -> None:
        """An error unless ``records`` are exactly the data ``model`` was trained on (its fingerprint)."""
        self._same_data(model, store, fingerprint(records.items, records.labels), "the data the model was trained on")

    @staticmethod
    def _same_data(model, store, got: str, what: str) -> None:
        want = getattr(model, "data_fingerprint_", None)
        if want is not None and want != got:
            raise InvalidInputError(explain(f"{store.path} (data {got[:19]}...)", f"must be {what} ({want[:19]}...)",
                                            "pass the store the model was trained on (after the same imports), or retrain the model on it"))


class FailurePointTarget(AuditTarget):
    """The failure-point classifier, trained on weak labels of the store's turns."""

    component = "failure-point-model"

    def records(self, store, model=None) -> Records:
        from ..fpi.turns import store_turns
        from ..fpi.weak import weak_failure_points

        turns = store_turns(store)
        return Records(turns, weak_failure_points(turns), [t.user_id for t in turns], [t.text for t in turns])

    def fit(self, model, records: Records, *, encoder=None):
        from sklearn.base import clone

        shadow = clone(model)
        self.share_encoder(shadow, encoder)
        return shadow.fit(records.items, records.labels)

    def share_encoder(self, model, encoder) -> None:
        if encoder is not None:
            model._encoder = encoder

    def p_true(self, model, records: Records) -> np.ndarray:
        from ..fpi.turns import CLASSES

        p = model.predict_proba(records.items)
        return p[np.arange(len(records.items)), [CLASSES.index(y) for y in records.labels]] if len(records.items) else np.zeros(0)

    def with_text(self, item, text: str, old: str | None = None):
        t = copy.copy(item)
        t.text = text
        return t

    def text_scorer(self, model, records: Records, text: str) -> Callable:
        import torch

        from ..fpi.turns import CLASSES

        model._check_fitted()
        emb, tr, cats = model._inputs(records.items)
        y = torch.tensor([CLASSES.index(v) for v in records.labels])
        net = model.net_.eval()

        def score(vectors):
            out = []
            for k in range(len(records.items)):  # each record: its context, the request's vector varied
                e = emb[k : k + 1].repeat(len(vectors), 1, 1)
                e = torch.cat([vectors[:, None, :].to(e.dtype), e[:, 1:]], 1)
                logp = torch.log_softmax(net(e, tr[k : k + 1].expand(len(vectors), -1), cats[k : k + 1].expand(len(vectors), -1)), -1)
                out.append(logp[:, y[k]])
            return torch.stack(out).sum(0)

        return score


class LabelTarget(AuditTarget):
    """The contextual label model, trained on the store's sessions with weak labels (the dialogues
    `selflearn labels train` trains on: its validation share left out). A record is a dialogue; its
    probability is the geometric mean over its turns of the model's probability of the turn's weak
    defect label. Canaries go through the model's text path (:mod:`..labels.text_path`: the frozen
    MiniLM's vector of the request, or its own fine-tuned MiniLM's), as for the failure-point model."""

    component = "label-model"

    def text_encoder(self, model, encoder):
        from ..labels.text_path import text_encoder

        return text_encoder(model, encoder)

    def text_scorer(self, model, records: Records, text: str) -> Callable:
        from ..labels.text_path import defect_scorer

        return defect_scorer(model, records.items, text)

    def records(self, store, model=None) -> Records:
        from ..labels.training import held_out_for_validation
        from ..labels.weak import store_dialogues

        seed = int(getattr(model, "random_state", 0) or 0)
        return self.as_records([d for d in store_dialogues(store) if not held_out_for_validation(d.dialogue_id, seed)])

    def as_records(self, ds: list) -> Records:
        return Records(ds, [[e.labels.get("defect") for e in d.exchanges] for d in ds], [d.user for d in ds],
                       [" | ".join(e.user for e in d.exchanges) for d in ds])

    def fit(self, model, records: Records, *, encoder=None):
        from sklearn.base import clone

        return clone(model).fit(records.items)

    def p_true(self, model, records: Records) -> np.ndarray:
        out = []
        for rows, labels in zip(model.predict(records.items) if records.items else [], records.labels):
            logs = [np.log(max(1e-7, r["defect"] if y == 1 else 1 - r["defect"])) for r, y in zip(rows, labels) if y is not None]
            out.append(float(np.exp(np.mean(logs))) if logs else 0.5)
        return np.array(out)

    def canary_texts(self, records: Records, text: str) -> list[int]:
        return [i for i, d in enumerate(records.items) if any(e.user == text for e in d.exchanges)]

    def with_text(self, item, text: str, old: str | None = None):
        d = copy.deepcopy(item)
        for e in d.exchanges:
            if old is None or e.user == old:
                e.user = text
        return d

    def check_trained_on(self, model, records: Records, store) -> None:
        self._same_data(model, store, fingerprint(records.items), "the store the label model was trained on (its training dialogues)")


class RephraseTarget(AuditTarget):
    """The contextual rephrase model, trained on the weakly labelled examples `train_rephrase_model`
    samples from the store (rebuilt here with the model's seed and its number of examples, and
    checked against its fingerprint). A record is an example (a turn and the turns after it); its
    probability is the model's probability of the example's weak label (no rephrase, or which turn).
    Canaries are scored by substitution (the anchor turn's text); no inversion (MiniLM is fine-tuned
    end to end, the anchor is tokens, not a sentence vector)."""

    component = "rephrase-detector"
    vector_path = False

    def records(self, store, model=None) -> Records:
        from ..rewrites.mining import rephrase_training_set

        seed = int(getattr(model, "random_state", 0) or 0)
        n = int(getattr(model, "n_train_", 0) or 0)
        x, y, stats = rephrase_training_set(store, examples=n if n >= 2 else 4000, seed=seed)
        if model is not None and getattr(model, "data_fingerprint_", None) not in (None, fingerprint(x, y)):
            x, y, stats = rephrase_training_set(store, seed=seed)  # the default number of examples
        return Records(x, y, [e.user_id for e in x], [e.text for e in x], sampling=stats["rates"])

    def reference_records(self, store, model, members: Records) -> Records:
        from ..rewrites.mining import rephrase_training_set

        x, y, _ = rephrase_training_set(store, seed=int(getattr(model, "random_state", 0) or 0), rates=members.sampling)
        return Records(x, y, [e.user_id for e in x], [e.text for e in x])

    def fit(self, model, records: Records, *, encoder=None):
        from sklearn.base import clone

        return clone(model).fit(records.items, records.labels)

    def p_true(self, model, records: Records) -> np.ndarray:
        probs = model.predict_proba(records.items) if records.items else []
        return np.array([float(p[y + 1]) if 0 <= y + 1 < len(p) else 1e-7 for p, y in zip(probs, records.labels)])

    def with_text(self, item, text: str, old: str | None = None):
        import dataclasses

        return dataclasses.replace(item, text=text)


class EncoderTarget(AuditTarget):
    """The online model's retrieval encoder, fine-tuned on (failing request, the request that fixed
    it) pairs of the training users outside its validation share (rebuilt from the store with the
    online model's seed and share, checked against the encoder's fingerprint). A record is a pair;
    its confidence is the pair's cosine under the encoder, as a probability ((1 + cos) / 2): what the
    fine-tuning pulls up for the pairs it saw. Shadows are fine-tuned like the encoder, DP included:
    a private run draws its negatives from ``negatives``, the released model's global index (as the
    product does; an attacker has it), or else from the shadow's own pairs' fixes. Canaries are
    scored by substitution (the request's text)."""

    component = "biencoder"
    vector_path = False

    def __init__(self, validation_share: float = 0.2, seed: int = 0, negatives: list[str] | None = None):
        self.validation_share = validation_share
        self.seed = seed
        self.negatives = negatives

    def records(self, store, model=None) -> Records:
        from ..online.train import encoder_pairs, load_history

        pairs, users = encoder_pairs(load_history(store), self.validation_share, self.seed)
        return Records(pairs, [None] * len(pairs), users, [a for a, _ in pairs])

    def fit(self, model, records: Records, *, encoder=None):
        from sklearn.base import clone

        shadow = clone(model)
        if getattr(model, "dp_epsilon", None) is not None:
            return shadow.fit(records.items, users=records.users, negatives=self.negatives or sorted({b for _, b in records.items}))
        return shadow.fit(records.items)

    def p_true(self, model, records: Records) -> np.ndarray:
        if not records.items:
            return np.zeros(0)
        texts = sorted({t for pair in records.items for t in pair})
        vec = dict(zip(texts, model.encode(texts)))
        cos = np.array([float(vec[a] @ vec[b]) for a, b in records.items])
        return np.clip((1.0 + cos) / 2.0, 0.0, 1.0)

    def with_text(self, item, text: str, old: str | None = None):
        return (text, item[1])

    def check_trained_on(self, model, records: Records, store) -> None:
        self._same_data(model, store, fingerprint(records.items), "the store the online model was trained on (its encoder's training pairs)")


class RankerTarget(AuditTarget):
    """The online model's ranker, trained on the candidates of a sample of the training users'
    requests (outside its validation share), each with the features known just before it. The
    examples are rebuilt by replaying a store through the released model's encoder and global
    layer with a fresh personal memory under the model's retry rule (the trainer's sample, its seed; checked against the
    ranker's fingerprint). A record is a request with its candidates; its probability is the
    geometric mean over the candidates of the ranker's probability of each one's label (right
    rewrite or not). An attacker with logs of other users can replay them the same way: the
    reference store's users are replayed through the same model."""

    component = "ranker"
    vector_path = False

    def __init__(self, model_dir, config: dict):
        self.model_dir = model_dir
        self.config = config

    def _replayer(self):
        from ..online.encoder import OnnxEncoder
        from ..online.memory import GlobalMemory, PersonalMemory
        from ..online.online_rewriter import OnlineRewriter
        from ..online.ranker import Ranker

        d = self.model_dir
        onnx = OnnxEncoder(d / "encoder.onnx", d / "encoder" / "tokenizer")
        g = GlobalMemory.load(d / "global")
        c = self.config
        # a fresh memory with the released model's retry rule (learned at training): the same replay as the trainer's
        return OnlineRewriter(onnx, g, PersonalMemory.empty_like(d / "personal", onnx, known=g.has_vector), Ranker(), None, layers=("global", "personal"),
                              k_global=c.k_global, k_personal=c.k_personal, k_phonetic=c.k_phonetic, threshold=1.0)

    def records(self, store, model=None, *, rates: dict | None = None) -> Records:
        from ..online.replay import ranking_examples, ranking_labels
        from ..online.train import held_out, load_history

        h = load_history(store)
        rw = self._replayer()
        examples, _, weight_of, _ = ranking_examples(rw, h, self.config, rates=rates)
        items, users, texts = [], [], []
        for i, cands, x, _, _, meanings in examples:
            user = h.rows[i]["user_id"]
            if cands and not held_out(user, self.config.validation_share, self.config.seed):
                items.append((x, ranking_labels(h, i, meanings)))
                users.append(user)
                texts.append(h.rows[i]["text"])
        return Records(items, [y for _, y in items], users, texts, sampling={k: 1.0 / w if w > 0 else 1.0 for k, w in weight_of.items()})

    def reference_records(self, store, model, members: Records) -> Records:
        return self.records(store, model, rates=members.sampling)

    def _rows(self, records: Records) -> tuple[np.ndarray, np.ndarray, list[str]]:
        x = np.vstack([it[0] for it in records.items])
        return x, np.concatenate([it[1] for it in records.items]), [u for it, u in zip(records.items, records.users) for _ in range(len(it[1]))]

    def fit(self, model, records: Records, *, encoder=None):
        from sklearn.base import clone

        x, y, users = self._rows(records)
        return clone(model).fit(x, y, users=users)

    def p_true(self, model, records: Records) -> np.ndarray:
        out = []
        for x, y in records.items:
            s = np.clip(model.score(x), 1e-7, 1 - 1e-7)
            out.append(float(np.exp(np.mean(np.log(np.where(y == 1, s, 1 - s))))))
        return np.array(out)

    def with_text(self, item, text: str, old: str | None = None):
        raise InvalidInputError(explain("a canary", "the ranker sees features of a request, not its words", "audit the encoder for canaries"))

    def canary_texts(self, records: Records, text: str) -> list[int]:
        return []  # no text reaches the ranker: its canary rows say so

    def check_trained_on(self, model, records: Records, store) -> None:
        x, y, _ = self._rows(records) if records.items else (np.zeros((0, 0)), np.zeros(0), [])
        x = np.asarray(x, np.float64) * model._mask() if records.items else x
        self._same_data(model, store, fingerprint(map(tuple, x), np.asarray(y, int).tolist()),
                        "the store the online model was trained on (its ranker's training rows)")


TARGETS = {t.component: t for t in (FailurePointTarget(), LabelTarget(), RephraseTarget(), EncoderTarget())}  # the ranker's needs its model


def target_for(model) -> AuditTarget:
    t = TARGETS.get(getattr(model, "component", None))
    if t is None:
        raise InvalidInputError(explain(f"component {getattr(model, 'component', type(model).__name__)!r}",
                                        f"the membership and canary audit covers {sorted(TARGETS)}",
                                        "audit one of these (the online model's personal memory has its own check)"))
    return t
