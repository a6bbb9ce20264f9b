"""BatchTopK SAEs: the batch-level selection in training, the learnt threshold at inference
(per token, independent of what else is in the batch), and the files the live node loads."""

import json

import pytest
import torch

from pai_ros.errors import UserError
from pai_ros.sae.activations import ActivationSet
from pai_ros.sae.frame import encode_frame
from pai_ros.sae.model import SaeConfig, SparseAutoencoder, load_sae, save_sae
from pai_ros.sae.train import TrainSettings, train_sae

K = 4


def sparse_data(d: int = 32, f: int = 128, n: int = 12000, seed: int = 1) -> torch.Tensor:
    """Tokens built from 1..7 dictionary atoms (4 on average): a per-token budget of exactly k
    is wrong for most of them, which is what BatchTopK's batch-level budget is for."""
    gen = torch.Generator().manual_seed(seed)
    dictionary = torch.randn(f, d, generator=gen)
    dictionary /= dictionary.norm(dim=1, keepdim=True)
    counts = torch.randint(1, 2 * K, (n,), generator=gen)
    scores = torch.rand(n, f, generator=gen)
    keep = scores.argsort(dim=1).argsort(dim=1) < counts[:, None]  # `counts` random atoms per row
    codes = keep * (torch.rand(n, f, generator=gen) + 0.5)
    return codes @ dictionary + 0.2


@pytest.fixture(scope="module")
def trained():
    x = sparse_data()
    result = train_sae(ActivationSet(x), TrainSettings(architecture="batchtopk", k=K, num_features=128, steps=800,
                                                       batch_size=512), progress=False)
    return result, x


def test_batch_topk_keeps_k_times_batch_across_the_batch() -> None:
    sae = SparseAutoencoder(SaeConfig(d_in=2, d_sae=4, architecture="batchtopk", k=2))
    pre = torch.tensor([[9.0, 8.0, 7.0, 6.0],  # a "busy" token: keeps 3 of the batch's 4
                        [0.5, 6.5, -1.0, 0.1]])
    codes, smallest = sae.batch_topk(pre)
    assert torch.equal(codes, torch.tensor([[9.0, 8.0, 7.0, 0.0], [0.0, 6.5, 0.0, 0.0]]))
    assert smallest == 6.5
    # Negative pre-activations are never kept, even when the budget is not filled.
    codes, smallest = sae.batch_topk(torch.tensor([[-1.0, 2.0, -3.0, -4.0], [-1.0, -2.0, -3.0, -4.0]]))
    assert int((codes > 0).sum()) == 1 and smallest == 2.0


def test_inference_uses_the_threshold_per_token(trained) -> None:
    result, x = trained
    sae = result.sae
    theta = sae.cfg.threshold
    assert theta is not None and theta > 0
    xb = x[:64]
    pre = sae.pre_activations(xb * sae.cfg.scaling_factor)
    codes = sae.encode(xb)
    assert torch.equal(codes > 0, pre > theta)
    # Per token: a row's code does not depend on the other rows of the batch (unlike training).
    assert torch.allclose(sae.encode(xb[:1]), codes[:1])
    # The threshold is what sets L0: raising it lowers it.
    l0 = float((codes > 0).sum(dim=1).float().mean())
    sae.cfg.threshold = theta * 2
    try:
        assert float((sae.encode(xb) > 0).sum(dim=1).float().mean()) < l0
    finally:
        sae.cfg.threshold = theta


def test_held_out_l0_is_about_k_on_average_and_varies_per_token(trained) -> None:
    result, x = trained
    m = result.metrics
    assert 0.6 * K <= m["l0"] <= 1.5 * K, m["l0"]
    assert m["fvu"] < 0.5  # an untrained or broken SAE sits near 1
    per_token = (result.sae.encode(x[:2000]) > 0).sum(dim=1)
    assert int(per_token.max()) > int(per_token.min())  # not a fixed k per token
    assert torch.allclose(result.sae.W_dec.norm(dim=1), torch.ones(128), atol=1e-4)


def test_save_load_round_trip_and_live_encoding(tmp_path, trained) -> None:
    result, x = trained
    save_sae(result.sae, tmp_path / "sae")
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert (cfg["architecture"], cfg["k"]) == ("batchtopk", K)
    assert cfg["threshold"] == pytest.approx(result.sae.cfg.threshold)
    loaded = load_sae(tmp_path / "sae")
    assert loaded.cfg.threshold == cfg["threshold"]
    tokens = x[:42]
    assert torch.equal(loaded.sae.encode(tokens), result.sae.encode(tokens))
    # The live node's path: sparse reconstruction of one frame's tokens.
    frame = encode_frame(loaded.sae, tokens)
    recon, _ = loaded.sae.reconstruct(tokens)
    sparse_recon, values, _ = loaded.sae.reconstruct_sparse(tokens)
    assert torch.allclose(sparse_recon, recon, atol=1e-5)
    assert int((values > 0).sum()) == int((loaded.sae.encode(tokens) > 0).sum())
    assert frame.reconstruction_error < 0.5


def test_an_untrained_batchtopk_sae_refuses_to_encode(tmp_path) -> None:
    sae = SparseAutoencoder(SaeConfig(d_in=4, d_sae=8, architecture="batchtopk", k=2))
    with pytest.raises(UserError, match="no threshold"):
        sae.encode(torch.randn(3, 4))
    with pytest.raises(UserError, match="k"):
        SaeConfig(d_in=4, d_sae=8, architecture="batchtopk", k=None)
