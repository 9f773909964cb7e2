"""N2 metrics: f_vol, f_frag, the classifier score, and a digit classifier on CPM snapshots."""

import numpy as np
import pytest

from oncodyn.cpm.lattice import CPMState, Lattice
from oncodyn.cpm.sample_metrics import DigitClassifier, classifier_score, f_frag, f_vol, volume_range


def squares(side=4, n=4, split=False):
    sig = np.zeros((20, 20), np.int32)
    for c in range(n):
        y, x = 2 + 5 * (c // 3), 2 + 5 * (c % 3)
        sig[y:y + side, x:x + side] = c + 1
    if split:  # cell 1 loses a middle column: two pieces
        sig[2:2 + side, 3] = 0
    return CPMState(Lattice((20, 20)), sig, np.array([0] + [1] * n))


def test_classifier_score_bounds():
    assert classifier_score(np.full((50, 10), 0.1)) == pytest.approx(1.0)
    onehot = np.eye(10)[np.arange(100) % 10]
    assert classifier_score(onehot) == pytest.approx(10.0, rel=1e-6)
    assert classifier_score(np.eye(10)[np.zeros(100, int)]) == pytest.approx(1.0)  # always the same class


def test_f_vol_and_f_frag():
    train = [squares(4), squares(4)]
    vr = volume_range(train)
    assert vr == pytest.approx((16 - 1.6, 16 + 1.6))
    assert f_vol([squares(4), squares(5)], vr) == 0.5
    assert f_frag([squares(4), squares(4, split=True)], max_fragmented=0) == 0.5
    assert f_frag([squares(4, split=True)], max_fragmented=3) == 1.0


def test_f_frag_connectivity_order():
    """A cell whose two parts touch only at a corner is one piece in the Moore neighbourhood (the
    default, the CPM's own) and two in the von Neumann one."""
    st = squares(4)
    st.sigma[2:6, 2:6] = 0
    st.sigma[2:4, 2:4] = 1
    st.sigma[4:6, 4:6] = 1  # cell 1: two 2×2 blocks meeting at one corner
    assert f_frag([st], max_fragmented=0) == 1.0
    assert f_frag([st], max_fragmented=0, connectivity_order=1) == 0.0


def test_digit_classifier_learns_digits():
    from sklearn.datasets import load_digits

    from oncodyn.cpm.scenarios import digit_potential

    d = load_digits()
    states, labels = [], []
    for img, y in zip(d.images[:200], d.target[:200]):
        on = digit_potential(img, (40, 40), margin=4) == 0
        sig = np.where(on, 1, 0).astype(np.int32)
        states.append(CPMState(Lattice((40, 40)), sig, np.array([0, 2])))
        labels.append(int(y))
    clf = DigitClassifier(size=8).fit(states[:150], labels[:150])
    assert clf.accuracy(states[150:], labels[150:]) > 0.7
    assert classifier_score(clf.predict_proba(states[150:])) > 2.5  # 1 = uninformative, 10 = certain and balanced
