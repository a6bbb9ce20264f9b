"""A per-token sparse autoencoder (SAE) and its files: ``cfg.json`` + ``sae_weights.safetensors``.

One activation vector per encoder token goes in (``d_in`` = ACT's ``dim_model``); ``d_sae``
features come out. Two architectures:

* ``topk`` (Gao et al. 2024): ``f = TopK(ReLU((x - b_dec) W_enc + b_enc))``; k sets L0 directly,
  so sparsity cannot be bought by shrinking activations as an L1 penalty can.
* ``batchtopk`` (Bussmann, Leask, Nanda 2024): in training the top ``k x batch`` ReLU
  pre-activations of the whole batch are kept (so hard tokens may use more features, easy ones
  fewer, L0 ~ k on average); at inference a single ``threshold`` estimated in training (running
  mean of the smallest kept activation) gates each token on its own:
  ``f = ReLU(pre) * (pre > threshold)``. The threshold is in cfg.json.
* ``relu`` (Anthropic 2023/24): ``f = ReLU((x - b_dec) W_enc + b_enc)``, trained with an L1
  penalty weighted by each feature's decoder norm (so shrinking codes while growing decoder
  rows does not lower the penalty).

Reconstruction is ``x_hat = f W_dec + b_dec`` (``b_dec`` is the pre-encoder bias, subtracted
before encoding and added back after decoding).

Inputs are scaled by one scalar (``scaling_factor`` in cfg.json) so that the mean squared norm
of a training token is ``d_in``; the weights act on scaled inputs, and :meth:`encode` /
:meth:`reconstruct` take raw activations and do the scaling themselves. The weight names and
shapes follow SAELens (``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_in]``, ``b_enc``, ``b_dec``)
so SAELens users can load them (multiplying their inputs by ``scaling_factor``).

Only JSON and safetensors are read from disk: no pickle.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import nn

from pai_ros.errors import UserError
from pai_ros.jsonfile import read_json, write_json_atomic
from pai_ros.path_args import expand_home
from pai_ros.sae.errors import SaeFileError, SaeMismatch
from pai_ros.sae.largest import largest_entries
from pai_ros.sae.sparse_encoder import bags_of, chosen_pre_activations
from pai_ros.staging import staged_file

if TYPE_CHECKING:
    from pai_ros.policy.runner import PolicyRunner

ARCHITECTURES = ("topk", "relu", "batchtopk")
K_ARCHITECTURES = ("topk", "batchtopk")  # those with a k and unit-norm decoder rows
CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
METRICS_FILE = "metrics.json"  # what `pai sae train` measured, and the episodes it trained on
WEIGHT_SHAPES = {"W_enc": ("d_in", "d_sae"), "W_dec": ("d_sae", "d_in"), "b_enc": ("d_sae",), "b_dec": ("d_in",)}
FORMAT_VERSION = 1


@dataclass
class SaeConfig:
    d_in: int
    d_sae: int
    architecture: str = "topk"
    k: int | None = 32  # TopK: active features per token; BatchTopK: per token on average in training
    scaling_factor: float = 1.0  # raw activation * scaling_factor = what the weights see
    # Mean of the raw training activations [d_in]: the reference for the fraction of variance
    # unexplained (FVU) that the live node reports per frame.
    input_mean: list[float] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)  # model, hook point, policy, dataset
    # BatchTopK only: inference gate on scaled-space pre-activations (set by training; None
    # before the first training step).
    threshold: float | None = None
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise UserError(f"unknown SAE architecture '{self.architecture}' (choose from {', '.join(ARCHITECTURES)})")
        if self.d_in < 1 or self.d_sae < 1:
            raise UserError(f"SAE sizes must be positive, got d_in={self.d_in}, d_sae={self.d_sae}")
        if self.architecture in K_ARCHITECTURES:
            if self.k is None or not 1 <= self.k <= self.d_sae:
                raise UserError(f"TopK needs 1 <= k <= d_sae ({self.d_sae}), got k={self.k}")
        if not (math.isfinite(self.scaling_factor) and self.scaling_factor > 0):
            raise UserError(f"scaling_factor must be a positive number, got {self.scaling_factor}")
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise UserError(f"BatchTopK threshold must be a finite number, got {self.threshold}")
        if self.input_mean and len(self.input_mean) != self.d_in:
            raise UserError(f"input_mean has {len(self.input_mean)} values, expected d_in={self.d_in}")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        # SAELens-style keys, so its tooling recognises the basics.
        out.update({"model_class": "pai_ros.sae.SparseAutoencoder", "apply_b_dec_to_input": True,
                    "normalize_activations": "expected_average_only_in", "dtype": "float32"})
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> SaeConfig:
        try:
            return cls(d_in=int(data["d_in"]), d_sae=int(data["d_sae"]),
                       architecture=str(data.get("architecture", "topk")),
                       k=None if data.get("k") is None else int(data["k"]),
                       scaling_factor=float(data.get("scaling_factor", 1.0)),
                       input_mean=[float(v) for v in data.get("input_mean") or []],
                       source=dict(data.get("source") or {}),
                       threshold=None if data.get("threshold") is None else float(data["threshold"]),
                       format_version=int(data.get("format_version", FORMAT_VERSION)))
        except (KeyError, TypeError, ValueError) as exc:
            raise SaeFileError(f"{where} is not a pai_ros SAE config ({type(exc).__name__}: {exc})") from None


class Picks(NamedTuple):
    """Active latents in sparse form, any number per row: ``values[i]`` of latent ``latents[i]`` in row ``rows[i]``.

    The values are the kept pre-activations, all positive (so equal to their ReLU).
    """

    values: torch.Tensor
    rows: torch.Tensor
    latents: torch.Tensor
    batch: int  # rows in the batch (some may have no pick)


class SparseAutoencoder(nn.Module):
    def __init__(self, cfg: SaeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.W_enc = nn.Parameter(torch.zeros(cfg.d_in, cfg.d_sae))
        self.W_dec = nn.Parameter(torch.zeros(cfg.d_sae, cfg.d_in))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in))
        mean = torch.tensor(cfg.input_mean, dtype=torch.float32) if cfg.input_mean else torch.zeros(cfg.d_in)
        self.register_buffer("input_mean", mean, persistent=False)

    @property
    def d_in(self) -> int:
        return self.cfg.d_in

    @property
    def d_sae(self) -> int:
        return self.cfg.d_sae

    # ---------------------------------------------------------------- scaled space (training)

    def pre_activations(self, x_scaled: torch.Tensor) -> torch.Tensor:
        # ``(x - b_dec) @ W_enc + b_enc`` with b_dec folded into the bias: the same value, but
        # b_dec's gradient is then a vector-matrix product instead of a [batch x d_sae] x
        # [d_sae x d_in] matmul, one of the three big matmuls of a training step.
        return x_scaled @ self.W_enc + (self.b_enc - self.b_dec @ self.W_enc)

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        """Feature activations from pre-activations: TopK of ReLU, ReLU, or (BatchTopK at
        inference) ReLU gated per token by the trained threshold."""
        if self.cfg.architecture == "relu":
            return torch.relu(pre)
        if self.cfg.architecture == "batchtopk":
            return self.threshold_gate(pre)
        values, indices = torch.topk(pre, self.cfg.k, dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter_(-1, indices, torch.relu(values))

    def threshold_gate(self, pre: torch.Tensor) -> torch.Tensor:
        """BatchTopK inference: keep each activation above the trained threshold (per token)."""
        if self.cfg.threshold is None:
            raise SaeFileError("this BatchTopK SAE has no threshold in cfg.json (it was never trained)")
        return torch.where(pre > self.cfg.threshold, torch.relu(pre), torch.zeros_like(pre))

    def batch_topk_for_training(self, x_scaled: torch.Tensor, pre: torch.Tensor) -> tuple[Picks, float]:
        """BatchTopK training: the top ``k x batch`` ReLU activations over the whole batch ``[B, F]``.

        ``pre`` are the pre-activations of ``x_scaled`` computed without autograd. Returns the
        kept activations as :class:`Picks` (only positive ones: a zero adds nothing), whose values
        carry gradients to the encoder through the picks alone (:mod:`pai_ros.sae.sparse_encoder`),
        and the smallest kept activation, the threshold estimate (NaN when nothing was positive).
        """
        values, where = largest_entries(pre.reshape(-1), self.cfg.k * pre.shape[0])
        positive = values > 0
        values, where = values[positive], where[positive]
        smallest = float(values.min()) if values.numel() else math.nan
        rows, latents = where // self.d_sae, where % self.d_sae
        values = chosen_pre_activations(x_scaled, self.W_enc, self.b_enc, self.b_dec, values, rows, latents)
        return Picks(values, rows, latents, pre.shape[0]), smallest

    def topk(self, pre: torch.Tensor, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """TopK as (values after ReLU, feature indices), each ``[..., k]``: the sparse form."""
        values, indices = torch.topk(pre, k or self.cfg.k, dim=-1, sorted=False)
        return torch.relu(values), indices

    def topk_for_training(self, x_scaled: torch.Tensor, pre: torch.Tensor, k: int | None = None,
                          columns: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """TopK as :meth:`topk` (optionally among ``columns`` only), with a backward pass through
        the chosen latents alone.

        ``pre`` are the pre-activations of ``x_scaled`` computed without autograd (under
        ``torch.no_grad()``: a gradient through them would bypass the point); the values
        returned still carry gradients to ``W_enc``, ``b_enc`` and ``b_dec``, equal to those of
        ranking ``pre`` under autograd, without its dense ``[batch, d_sae]`` gradient
        (:mod:`pai_ros.sae.sparse_encoder`).
        """
        ranked = pre if columns is None else pre.index_select(1, columns)
        values, picked = torch.topk(ranked, k or self.cfg.k, dim=-1, sorted=False)
        indices = picked if columns is None else columns[picked]
        rows = torch.arange(len(pre), device=pre.device).repeat_interleave(indices.shape[-1])
        values = chosen_pre_activations(x_scaled, self.W_enc, self.b_enc, self.b_dec, values.reshape(-1), rows,
                                        indices.reshape(-1))
        return torch.relu(values.view_as(indices)), indices

    def decode_scaled(self, codes: torch.Tensor) -> torch.Tensor:
        return codes @ self.W_dec + self.b_dec

    def decode_sparse_scaled(self, values: torch.Tensor, indices: torch.Tensor, bias: bool = True) -> torch.Tensor:
        """``sum_j values_j * W_dec[indices_j]`` (+ b_dec) without a dense ``[..., d_sae]`` code matrix.

        With k of thousands of features active, gathering k decoder rows is far cheaper than a
        dense matmul, forwards and backwards (embedding_bag fuses the gather and the sum).
        """
        k = values.shape[-1]
        out = torch.nn.functional.embedding_bag(indices.reshape(-1, k), self.W_dec,
                                                per_sample_weights=values.reshape(-1, k), mode="sum")
        out = out.reshape(*values.shape[:-1], self.d_in)
        return out + self.b_dec if bias else out

    def decode_picks_scaled(self, picks: Picks) -> torch.Tensor:
        """Reconstruction ``[batch, d_in]`` from a varying number of active latents per row
        (BatchTopK in training), without a dense code matrix."""
        order, offsets = bags_of(picks.rows, picks.batch)
        out = torch.nn.functional.embedding_bag(picks.latents[order], self.W_dec, offsets, mode="sum",
                                                per_sample_weights=picks.values[order])
        return out + self.b_dec

    def forward(self, x_scaled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction, codes), both in scaled space."""
        codes = self.activate(self.pre_activations(x_scaled))
        return self.decode_scaled(codes), codes

    # ------------------------------------------------------------------ raw space (users)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Feature activations ``[..., d_sae]`` of raw activations ``[..., d_in]``."""
        return self.activate(self.pre_activations(x * self.cfg.scaling_factor))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Raw-space reconstruction of feature activations."""
        return self.decode_scaled(codes) / self.cfg.scaling_factor

    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(raw-space reconstruction, dense codes) of raw activations."""
        codes = self.encode(x)
        return self.decode(codes), codes

    def reconstruct_sparse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(raw-space reconstruction, values, feature indices) of raw activations ``[N, d_in]``.

        The per-tick path: TopK stays sparse end to end; ReLU codes are made sparse after the fact.
        """
        pre = self.pre_activations(x * self.cfg.scaling_factor)
        if self.cfg.architecture == "topk":
            values, indices = self.topk(pre)
            return self.decode_sparse_scaled(values, indices) / self.cfg.scaling_factor, values, indices
        codes = self.activate(pre)  # ReLU, or BatchTopK's threshold gate: sparse after the fact
        width = max(1, int((codes > 0).sum(dim=-1).max()))
        values, indices = torch.topk(codes, width, dim=-1, sorted=False)
        return self.decode_scaled(codes) / self.cfg.scaling_factor, values, indices

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Unit-norm decoder rows (each feature's direction)."""
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))


# ------------------------------------------------------------------------- files


@dataclass
class LoadedSae:
    sae: SparseAutoencoder
    directory: Path
    sae_id: str  # content hash of cfg.json + weights: names the dictionary in messages and tables

    @property
    def cfg(self) -> SaeConfig:
        return self.sae.cfg


def check_dimensions(runner: PolicyRunner, loaded: LoadedSae) -> None:
    """The SAE must be this policy's: its ``dim_model``, and the policy its tokens came from (one line otherwise).

    An SAE records the policy it was trained on (``source.policy_id``, a content hash; SAEs from
    before it was recorded are checked by width alone). Another policy of the same width passed
    the width check, and its features, OOD flags and calibration then meant nothing.
    """
    check_policy_of_tokens(runner, loaded.cfg.d_in, loaded.cfg.source, f"the SAE in {loaded.directory}")


def check_policy_of_tokens(runner: PolicyRunner, d_in: int, source: dict[str, Any] | None, sae: str) -> None:
    """``check_dimensions`` for an SAE given by its width and ``source`` (``sae`` names it in the line),
    also before it is saved: ``pai sae train`` checks the collection's policy against its record."""
    dim = int(runner.loaded.config.dim_model)
    if d_in != dim:
        raise SaeMismatch(f"{sae} reads {d_in}-dim activations but the policy's "
                          f"encoder outputs {dim}-dim tokens (dim_model): train the SAE on this policy's activations")
    trained_on = (source or {}).get("policy_id")
    if trained_on and trained_on != runner.loaded.fingerprint:
        raise SaeMismatch(f"{sae} was trained on another policy's tokens (policy "
                          f"{trained_on}, from {source.get('policy_path')}), not on {runner.loaded.path}: "
                          "its features would not mean the same here; train an SAE on this policy's activations")


def content_id(directory: Path) -> str:
    h = hashlib.sha256()
    for name in (CFG_FILE, WEIGHTS_FILE):
        h.update((directory / name).read_bytes())
    return h.hexdigest()[:16]


def save_sae(sae: SparseAutoencoder, directory: Path) -> str:
    """Write cfg.json and the weights (each via a temporary file + rename); returns the sae_id."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: getattr(sae, name).detach().to("cpu", torch.float32).contiguous() for name in WEIGHT_SHAPES}
    with staged_file(directory / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "producer": "pai_ros"})
    write_json_atomic(directory / CFG_FILE, sae.cfg.to_json())
    return content_id(directory)


def load_sae(directory: str | Path, device: str = "cpu") -> LoadedSae:
    """Load an SAE directory written by ``pai sae train`` (or SAELens-compatible with our cfg keys)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = expand_home(directory)  # a node's sae_path:=~/sae: no shell expands it there
    if not directory.is_dir():
        raise SaeFileError(f"{directory} is a file, not an SAE directory (the directory `pai sae train` writes)"
                           if directory.exists() else f"SAE directory not found: {directory} (train one with "
                           "`pai sae train`)")
    cfg = SaeConfig.from_json(read_json(directory / CFG_FILE, "SAE config cfg.json"), str(directory / CFG_FILE))
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise SaeFileError(f"SAE weights not found: {weights}")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise SaeFileError(f"{weights} is not a readable safetensors file ({exc})") from None
    sizes = {"d_in": cfg.d_in, "d_sae": cfg.d_sae}
    # Every tensor is checked before the model is built: cfg.json sizes are allocated as given,
    # so a damaged cfg.json must fail here, not in a multi-gigabyte allocation.
    for name, dims in WEIGHT_SHAPES.items():
        if name not in tensors:
            raise SaeFileError(f"{weights} has no tensor '{name}' (has: {', '.join(sorted(tensors)) or 'none'})")
        want = tuple(sizes[d] for d in dims)
        got = tuple(tensors[name].shape)
        if got != want:
            raise SaeFileError(f"{weights}: tensor '{name}' has shape {list(got)}, cfg.json says {list(want)}")
        if not (tensors[name].is_floating_point() and torch.isfinite(tensors[name]).all()):
            raise SaeFileError(f"{weights}: tensor '{name}' must hold finite floating-point numbers "
                               f"(dtype {tensors[name].dtype}; NaN or inf are refused)")
    sae = SparseAutoencoder(cfg)
    for name in WEIGHT_SHAPES:
        getattr(sae, name).data.copy_(tensors[name].to(torch.float32))
    sae.eval().requires_grad_(False)
    return LoadedSae(sae.to(device), directory, content_id(directory))
