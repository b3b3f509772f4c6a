import pickle
import random

from operators.scoring import BinnedRocAuc, Example, PropensityModel


def brute_auc(pairs: list[tuple[bool, float]]) -> float:
    pos = [s for y, s in pairs if y]
    neg = [s for y, s in pairs if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_binned_auc_matches_exact_auc() -> None:
    rng = random.Random(3)
    pairs = [(y, min(0.999, max(0.0, rng.gauss(0.6 if y else 0.4, 0.15)))) for y in
             (rng.random() < 0.3 for _ in range(2000))]
    metric = BinnedRocAuc(bins=1000)
    for y, s in pairs:
        metric.update(y, s)
    assert abs(metric.get() - brute_auc(pairs)) < 0.002


def test_model_learns_a_real_signal_from_delayed_labels() -> None:
    """Buyers have recent purchases; the model must rank them above non-buyers."""
    rng = random.Random(11)
    model = PropensityModel(learning_rate=0.05)
    assert model.score({"purchases_30d": 3.0}) == 0.5  # honest prior before any label
    for i in range(3000):
        buys = rng.random() < 0.3
        x = {"purchases_30d": float(rng.randint(1, 4) if buys else rng.randint(0, 1)),
             "days_since_seen": rng.uniform(0, 5) if buys else rng.uniform(3, 60)}
        model.learn(Example(x, buys, i, i + 1))
    assert model.version == 3000
    assert model.roc_auc.get() > 0.85
    hot, cold = {"purchases_30d": 4.0, "days_since_seen": 1.0}, {"purchases_30d": 0.0, "days_since_seen": 50.0}
    assert model.score(hot) > 0.7 > 0.3 > model.score(cold)
    score, top = model.score_and_explain(hot)
    assert score == model.score(hot) and top[0] in ("purchases_30d", "days_since_seen")
    restored = pickle.loads(pickle.dumps(model))
    assert restored.score(hot) == model.score(hot) and restored.version == 3000
