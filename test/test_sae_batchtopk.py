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


def dense_codes(sae: SparseAutoencoder, x: torch.Tensor, pre: torch.Tensor) -> tuple[torch.Tensor, float]:
    picks, smallest = sae.batch_topk_for_training(x, pre)
    codes = torch.zeros(picks.batch, sae.d_sae).index_put((picks.rows, picks.latents), picks.values)
    return codes, smallest


def test_batch_topk_keeps_k_times_batch_across_the_batch() -> None:
    sae = SparseAutoencoder(SaeConfig(d_in=2, d_sae=4, architecture="batchtopk", k=2))
    x = torch.zeros(2, 2)
    pre = torch.tensor([[9.0, 8.0, 7.0, 6.0],  # a "busy" token: keeps 3 of the batch's 4
                        [0.5, 6.5, -1.0, 0.1]])
    codes, smallest = dense_codes(sae, x, pre)
    assert torch.equal(codes, torch.tensor([[9.0, 8.0, 7.0, 0.0], [0.0, 6.5, 0.0, 0.0]]))
    assert smallest == 6.5
    # Negative pre-activations are never kept, even when the budget is not filled.
    codes, smallest = dense_codes(sae, x, torch.tensor([[-1.0, 2.0, -3.0, -4.0], [-1.0, -2.0, -3.0, -4.0]]))
    assert int((codes > 0).sum()) == 1 and smallest == 2.0


@pytest.mark.parametrize("batch, d_in, d_sae, k", [(64, 16, 200, 4), (6, 8, 12, 12), (3, 5, 9, 1)])
def test_sparse_training_gives_the_values_and_gradients_of_the_dense_batch_topk(
        batch: int, d_in: int, d_sae: int, k: int) -> None:
    """Picks and their decode must equal the dense definition (ReLU, TopK of k x batch over the
    flattened batch, scattered codes, codes @ W_dec), in value and in every gradient."""
    gen = torch.Generator().manual_seed(batch + d_sae)
    # float64: the gradients reach 1e5 here, where float32 sums in another order (another CPU's
    # kernels: AVX2 against AVX-512) differ by a few ulps, more than the tolerance of the small ones.
    sae = SparseAutoencoder(SaeConfig(d_in=d_in, d_sae=d_sae, architecture="batchtopk", k=k)).double()
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    x = torch.randn(batch, d_in, generator=gen, dtype=torch.float64)
    target = torch.randn(batch, d_in, generator=gen, dtype=torch.float64)

    def dense() -> tuple[torch.Tensor, float]:
        flat = torch.relu(sae.pre_activations(x)).reshape(-1)
        values, where = torch.topk(flat, min(flat.numel(), k * batch), sorted=False)
        codes = torch.zeros_like(flat).scatter(0, where, values).reshape(batch, d_sae)
        return sae.decode_scaled(codes), float(values[values > 0].min().detach())

    def sparse() -> tuple[torch.Tensor, float]:
        with torch.no_grad():
            pre = sae.pre_activations(x)
        picks, smallest = sae.batch_topk_for_training(x, pre)
        return sae.decode_picks_scaled(picks), smallest

    results = []
    for path in (dense, sparse):
        sae.zero_grad(set_to_none=True)
        recon, smallest = path()
        ((recon - target) ** 2).sum().backward()
        results.append((recon.detach(), smallest, [p.grad.clone() for p in sae.parameters()]))
    (want_r, want_s, want_g), (got_r, got_s, got_g) = results
    torch.testing.assert_close(got_r, want_r, rtol=1e-4, atol=1e-4)
    assert got_s == want_s
    for name, g, w in zip(("W_enc", "W_dec", "b_enc", "b_dec"), got_g, want_g):
        assert g.abs().sum() > 0, name
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4, msg=name)


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


@pytest.mark.parametrize("case", ["gaussian", "ties", "few_positive", "sample_misled"])
def test_largest_entries_are_exactly_topks(case: str) -> None:
    """The sampled-threshold prefilter must keep exactly torch.topk's entries, including when its
    sample misjudges the tail (it must then fall back, not return too few)."""
    from pai_ros.sae.largest import largest_entries

    gen = torch.Generator().manual_seed(3)
    n, count = 200_000, 1_500
    flat = torch.randn(n, generator=gen)
    if case == "ties":
        flat = torch.randint(0, 1000, (n,), generator=gen).float()  # many equal values
    elif case == "few_positive":
        flat = -flat.abs()
        flat[:10] = 1.0
    elif case == "sample_misled":
        stride = (n // 65_536) | 1
        # Only the entries the sample looks at are nonzero: its upper quantile then passes half
        # as many entries as are wanted, and the prefilter must give way to a full TopK.
        flat = torch.zeros(n)
        flat[::stride] = 1.0 + torch.rand(len(flat[::stride]), generator=gen)
    values, where = largest_entries(flat, count, min_size=1)
    want_values, want_where = torch.topk(flat, count, sorted=False)
    assert len(where) == count and len(set(where.tolist())) == count
    assert torch.equal(flat[where], values)
    assert torch.equal(torch.sort(values).values, torch.sort(want_values).values)
    if case != "ties":  # with ties at the boundary either of the equal entries may be kept
        assert torch.equal(torch.sort(where).values, torch.sort(want_where).values)
