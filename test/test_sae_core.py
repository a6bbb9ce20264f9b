"""The SAE core without ROS or a policy: training recovers known dictionaries, files round-trip,
bad files give one clear line, and the frame-level reduction the node publishes is exact."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from pai_ros.errors import UserError
from pai_ros.policy.layout import TokenLayout
from pai_ros.sae.activations import ActivationSet, TokenSelection
from pai_ros.sae.frame import encode_frame
from pai_ros.sae.model import SaeConfig, SparseAutoencoder, load_sae, save_sae
from pai_ros.sae.ood import auroc, fit_threshold
from pai_ros.sae.shards import read_activations
from pai_ros.sae.train import TrainSettings, split_rows, train_sae


def sparse_data(d: int = 32, f: int = 128, n: int = 30000, k: int = 4, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    dictionary = torch.randn(f, d, generator=gen)
    dictionary /= dictionary.norm(dim=1, keepdim=True)
    idx = torch.stack([torch.randperm(f, generator=gen)[:k] for _ in range(n)])
    codes = torch.zeros(n, f).scatter_(1, idx, torch.rand(n, k, generator=gen) + 0.5)
    return codes @ dictionary + 0.2, dictionary


def mean_max_cosine(learned: torch.Tensor, true: torch.Tensor) -> float:
    w = learned / learned.norm(dim=1, keepdim=True)
    return float((w @ true.T).max(dim=0).values.mean())


@pytest.fixture(scope="module")
def trained():
    x, dictionary = sparse_data()
    result = train_sae(ActivationSet(x), TrainSettings(k=4, num_features=128, steps=1500, batch_size=512),
                       progress=False)
    return result, dictionary


def test_topk_recovers_a_known_sparse_dictionary(trained) -> None:
    result, dictionary = trained
    assert mean_max_cosine(result.sae.W_dec.detach(), dictionary) >= 0.9
    m = result.metrics
    assert m["l0"] == pytest.approx(4.0)  # TopK: L0 is k exactly
    assert m["fvu"] < 0.3 and m["dead_fraction"] <= 0.05
    # Unit-norm decoder rows are kept through training.
    assert torch.allclose(result.sae.W_dec.norm(dim=1), torch.ones(128), atol=1e-4)


def test_a_random_dictionary_scores_far_below(trained) -> None:
    # The recovery metric itself can fail: random unit rows do not match the true dictionary.
    _, dictionary = trained
    assert mean_max_cosine(torch.randn(128, 32, generator=torch.Generator().manual_seed(3)), dictionary) < 0.6


def test_relu_variant_trades_reconstruction_for_sparsity() -> None:
    x, _ = sparse_data(n=8000)

    def run(l1: float) -> dict:
        return train_sae(ActivationSet(x), TrainSettings(architecture="relu", num_features=128, steps=600,
                                                         batch_size=512, l1_coeff=l1), progress=False).metrics

    weak, strong = run(0.3), run(2.0)
    assert strong["l0"] < 0.75 * weak["l0"]  # the L1 term buys sparsity...
    assert strong["fvu"] > weak["fvu"]  # ...with reconstruction
    assert weak["fvu"] < 0.2


def test_training_is_deterministic() -> None:
    x, _ = sparse_data(n=4000)
    s = TrainSettings(k=4, num_features=64, steps=50, batch_size=256)
    a = train_sae(ActivationSet(x), s, progress=False).sae
    b = train_sae(ActivationSet(x), s, progress=False).sae
    assert torch.equal(a.W_dec, b.W_dec)


def test_holdout_is_by_episode_when_rows_name_episodes() -> None:
    x = torch.randn(100, 4)
    episodes = np.repeat(np.arange(10), 10)
    split = split_rows(ActivationSet(x, {"episode_index": episodes}), 0.2, 0)
    assert split.by == "episode" and split.heldout_episodes == [8, 9]
    assert set(episodes[split.heldout.numpy()]) == {8, 9} and not set(episodes[split.train.numpy()]) & {8, 9}


def test_a_node_parameter_with_a_tilde_loads_from_home(tmp_path, trained, monkeypatch) -> None:
    # sae_path:=~/sae on a ros2 launch line or in a YAML file: no shell expands that ~.
    sae_id = save_sae(trained[0].sae, tmp_path / "sae")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_sae("~/sae").sae_id == sae_id
    # ~alice/sae from another machine's launch file: one line, not pathlib's RuntimeError.
    with pytest.raises(UserError, match="^~nosuchuser_pai/sae: ~nosuchuser_pai is no home directory"):
        load_sae("~nosuchuser_pai/sae")


def test_save_load_round_trip_with_saelens_names(tmp_path, trained) -> None:
    sae = trained[0].sae
    sae_id = save_sae(sae, tmp_path / "sae")
    from safetensors.torch import load_file

    tensors = load_file(str(tmp_path / "sae" / "sae_weights.safetensors"))
    assert {k: tuple(v.shape) for k, v in tensors.items()} == {"W_enc": (32, 128), "W_dec": (128, 32),
                                                               "b_enc": (128,), "b_dec": (32,)}
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert (cfg["d_in"], cfg["d_sae"], cfg["architecture"], cfg["k"]) == (32, 128, "topk", 4)
    loaded = load_sae(tmp_path / "sae")
    assert loaded.sae_id == sae_id
    x = torch.randn(5, 32)
    assert torch.allclose(loaded.sae.encode(x), sae.encode(x))


def _write_sae(path, tensors: dict, cfg: dict | None = None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "cfg.json").write_text(json.dumps(cfg or {"d_in": 4, "d_sae": 8, "architecture": "topk", "k": 2}))
    save_file(tensors, str(path / "sae_weights.safetensors"))


@pytest.mark.parametrize("case, message", [
    ("missing", "has no tensor 'b_dec'"),
    ("shape", "tensor 'W_enc' has shape"),
    ("corrupt", "not a readable safetensors"),
    ("cfg", "not valid JSON"),
    ("nan", "NaN or inf"),
])
def test_bad_sae_files_give_one_clear_line(tmp_path, case, message) -> None:
    good = {"W_enc": torch.zeros(4, 8), "W_dec": torch.zeros(8, 4), "b_enc": torch.zeros(8), "b_dec": torch.zeros(4)}
    d = tmp_path / case
    if case == "missing":
        _write_sae(d, {k: v for k, v in good.items() if k != "b_dec"})
    elif case == "shape":
        _write_sae(d, {**good, "W_enc": torch.zeros(8, 4)})
    elif case == "corrupt":
        _write_sae(d, good)
        (d / "sae_weights.safetensors").write_bytes(b"\x00" * 50)
    elif case == "cfg":
        _write_sae(d, good)
        (d / "cfg.json").write_text("{not json")
    else:
        _write_sae(d, {**good, "b_enc": torch.full((8,), float("nan"))})
    with pytest.raises(UserError, match=message) as info:
        load_sae(d)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("tensors, message", [
    ({"acts": torch.zeros(4, 3)}, "has no tensor 'activations'"),
    ({"activations": torch.zeros(12)}, r"must be \[N, d\]"),
    ({"activations": torch.zeros(4, 3, dtype=torch.int32)}, "floating point"),
    ({"activations": torch.full((4, 3), float("inf"))}, "NaN or inf"),
])
def test_bad_activation_files(tmp_path, tensors, message) -> None:
    path = tmp_path / "a.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(UserError, match=message):
        read_activations(path)


def test_empty_collection_directory_is_refused(tmp_path) -> None:
    with pytest.raises(UserError, match="not a `pai sae collect` directory"):
        read_activations(tmp_path)


def test_cell_stride_keeps_whole_grid_rows_and_columns() -> None:
    layout = TokenLayout.build(True, False, ["observation.images.front", "observation.images.wrist"], [(4, 6), (3, 3)])
    idx = TokenSelection(cell_stride=2).indices(layout)
    described = [layout.describe(int(i)) for i in idx]
    cams = [d for d in described if d["kind"] == "camera"]
    assert {(d["row"], d["col"]) for d in cams if d["camera"] == "front"} == {(r, c) for r in (0, 2) for c in (0, 2, 4)}
    assert {(d["row"], d["col"]) for d in cams if d["camera"] == "wrist"} == {(r, c) for r in (0, 2) for c in (0, 2)}
    assert [d["kind"] for d in described[:2]] == ["latent", "state"]
    only_cams = TokenSelection(kinds=("camera",)).indices(layout)
    assert len(only_cams) == 24 + 9


def test_frame_reduction_matches_brute_force() -> None:
    torch.manual_seed(0)
    cfg = SaeConfig(d_in=8, d_sae=16, k=3, input_mean=[0.0] * 8)
    sae = SparseAutoencoder(cfg)
    for p in sae.parameters():
        p.data.normal_()
    sae.requires_grad_(False)
    tokens = torch.randn(10, 8)
    ff = encode_frame(sae, tokens, top_n=None)
    codes = sae.encode(tokens)
    peak, counts = codes.max(dim=0).values, (codes > 0).sum(dim=0)
    expected = [int(i) for i in torch.argsort(peak, descending=True) if counts[i] > 0]
    assert ff.feature_indices.tolist() == expected
    assert np.allclose(ff.activations, peak[expected].numpy())
    assert ff.token_counts.tolist() == counts[expected].tolist()
    assert ff.mean_l0 == pytest.approx(float((codes > 0).sum(dim=1).float().mean()))
    recon = sae.decode(codes)
    assert ff.reconstruction_error == pytest.approx(float(((tokens - recon) ** 2).sum() / (tokens ** 2).sum()), rel=1e-5)
    assert encode_frame(sae, tokens, top_n=2).feature_indices.tolist() == expected[:2]
    tok, feat, act = ff.sparse_tokens()
    assert np.allclose(act, codes[tok.astype(np.int64), feat.astype(np.int64)].numpy())


def test_auroc_and_threshold() -> None:
    assert auroc(np.array([1, 2, 3.0]), np.array([4, 5.0])) == 1.0
    assert auroc(np.array([4, 5.0]), np.array([1, 2, 3.0])) == 0.0
    assert auroc(np.array([1, 1.0]), np.array([1, 1.0])) == 0.5
    fit = fit_threshold(np.arange(1, 101, dtype=float), "p99")
    assert fit["threshold"] == pytest.approx(np.percentile(np.arange(1, 101), 99))
    sigma = fit_threshold(np.arange(1, 101, dtype=float), "sigma", sigmas=2.0)
    assert sigma["threshold"] == pytest.approx(50.5 + 2 * np.std(np.arange(1, 101), ddof=1))
    with pytest.raises(UserError):
        fit_threshold(np.array([1.0]))


def test_auroc_leaves_non_finite_scores_out_of_both_sides() -> None:
    """As fit_threshold does: ranked, a NaN counted as the most OOD frame (this pair gave 0.6875)."""
    nan, inf = float("nan"), float("inf")
    neg = np.array([1, 2, 3, 4.0])
    assert auroc(neg, np.array([1.5, 2.5, nan, nan])) == auroc(neg, np.array([1.5, 2.5])) == 0.375
    assert auroc(np.array([1, 2, 3, 4, nan, inf, -inf]), np.array([1.5, 2.5])) == 0.375
    assert np.isnan(auroc(neg, np.array([nan, nan])))  # nothing left to compare


def test_calibration_summary_says_what_the_auroc_left_out_and_an_evaluation_the_sae_saw() -> None:
    from pai_ros.sae.calibrate import CalibrationResult, summary_lines

    note = "1 of the 1 evaluation episodes (0) are among those the SAE was trained on: ..."
    report = {"sae_training_note": note, "clean": {"frames": 5, "non_finite_frames": 2, "flagged_fraction": 0.0},
              "corruptions": {"noise": {"frames": 5, "auroc": 0.9, "flagged_fraction": 0.4}}}
    calibration = {"threshold": 0.1, "rule": "p99", "frames": 5}
    lines = summary_lines(CalibrationResult(calibration, report), [Path("ood.json")])
    assert f"note: {note}" in lines
    assert lines[-1].endswith("(2 clean and 0 corrupted frames with a non-finite error left out of the AUROC)")


def test_a_passs_error_statistics_are_over_the_frames_the_auroc_counts() -> None:
    # NaN frames were left out of the AUROC but made the mean error NaN (null) and counted as not flagged.
    from pai_ros.sae.calibrate import _error_stats

    stats = _error_stats(np.array([0.1, np.nan, 0.3, np.inf]), threshold=0.2)
    assert stats == {"frames": 4, "non_finite_frames": 2, "mean_error": pytest.approx(0.2), "flagged_fraction": 0.5}
    assert _error_stats(np.array([0.1, 0.3]), threshold=0.2) == {"frames": 2, "mean_error": pytest.approx(0.2),
                                                                 "flagged_fraction": 0.5}


@pytest.mark.parametrize("dead_fraction", [0.01, 0.2, 1.0])
def test_aux_loss_over_the_dead_columns_equals_masking_the_live_ones(dead_fraction: float) -> None:
    """AuxK ranks only the dead latents: the loss and every gradient must equal ranking all latents
    with the live ones masked to -inf (the definition), whatever share of latents is dead."""
    from pai_ros.sae.train import _aux_loss

    gen = torch.Generator().manual_seed(int(dead_fraction * 100))
    sae = SparseAutoencoder(SaeConfig(d_in=16, d_sae=200, k=4))
    with torch.no_grad():  # random weights: no ties between pre-activations
        sae.W_dec.copy_(torch.randn(200, 16, generator=gen))
        sae.W_enc.copy_(torch.randn(16, 200, generator=gen))
        sae.b_enc.copy_(torch.randn(200, generator=gen))
    x = torch.randn(64, 16, generator=gen)
    err = torch.randn(64, 16, generator=gen)
    dead = torch.rand(200, generator=gen) < dead_fraction
    dead[0] = True

    def by_definition() -> torch.Tensor:
        pre = sae.pre_activations(x)
        k = min(8, int(dead.sum()))
        values, indices = sae.topk(pre.masked_fill(~dead, float("-inf")), k)
        aux = sae.decode_sparse_scaled(values, indices, bias=False)
        denom = ((err - err.mean(dim=0)) ** 2).sum(dim=1).mean()
        return ((err - aux) ** 2).sum(dim=1).mean() / denom

    results = []
    for loss_of in (by_definition, lambda: _aux_loss(sae, x, sae.pre_activations(x).detach(), err, dead, 8)):
        sae.zero_grad(set_to_none=True)
        loss = loss_of()
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in sae.parameters()]))
    (want, want_grads), (got, got_grads) = results
    torch.testing.assert_close(got, want)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("batch, d_in, d_sae, k", [(64, 16, 200, 4), (5, 8, 12, 12), (1, 3, 7, 1)])
def test_topk_for_training_gives_the_gradients_of_autograd_through_the_dense_ranking(
        batch: int, d_in: int, d_sae: int, k: int) -> None:
    """The sparse backward must give the same values, indices and gradients (W_enc, b_enc, b_dec,
    W_dec) as autograd through the dense pre-activations and torch.topk, k < d_sae and k = d_sae."""
    gen = torch.Generator().manual_seed(batch * 1000 + d_sae)
    sae = SparseAutoencoder(SaeConfig(d_in=d_in, d_sae=d_sae, k=k))
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    x = torch.randn(batch, d_in, generator=gen)
    target = torch.randn(batch, d_in, generator=gen)

    def dense() -> tuple[torch.Tensor, torch.Tensor]:
        return sae.topk(sae.pre_activations(x))

    def sparse() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            pre = sae.pre_activations(x)
        return sae.topk_for_training(x, pre)

    results = []
    for path in (dense, sparse):
        sae.zero_grad(set_to_none=True)
        values, indices = path()
        loss = ((sae.decode_sparse_scaled(values, indices) - target) ** 2).sum()
        loss.backward()
        order = indices.argsort(dim=1)  # topk(sorted=False) may order the picks differently
        results.append((values.gather(1, order), indices.gather(1, order), [p.grad.clone() for p in sae.parameters()]))
    (want_v, want_i, want_g), (got_v, got_i, got_g) = results
    assert torch.equal(got_i, want_i)
    torch.testing.assert_close(got_v, want_v)
    for name, g, w in zip(("W_enc", "W_dec", "b_enc", "b_dec"), got_g, want_g):
        assert g.shape == w.shape and g.abs().sum() > 0, name
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4, msg=name)
