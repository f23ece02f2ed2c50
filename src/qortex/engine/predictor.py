"""The predictor: configuration in the constructor, learning in `fit`, learned state in `*_`.

Pipeline per batch (every stage vectorised over the batch, float32, seeded):
normalise (robustly scaled differences of the last `window` values) -> spike encoder ->
LIF reservoir -> pattern detectors, momentum statistics, every older move of the window and
the window's own seasonal period -> circuit feature map on the reservoir features ->
standardised logistic readout (one penalty for the reservoir and circuit columns, another for
the rest) -> calibration.

Choices worth knowing:
- A series shorter than `window` is left-padded with "no movement" (zero normalised moves).
- A series without any movement answers exactly 0.5 ("neutral", confidence 0.5).
- Calibration is fitted on the last `calibration_fraction` of the training windows (per series,
  in time order) using a readout fitted without them (nor the `horizon - 1` windows before them,
  whose targets reach into the held-out span); the readout is then refitted on all windows and
  the calibration map kept.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt

import qortex
from qortex.engine import artifact
from qortex.engine.config import EngineConfig
from qortex.engine.encoding import encode, n_channels
from qortex.engine.errors import ArtifactError
from qortex.engine.features import (
    MOMENTUM_COLUMNS,
    build_layout,
    momentum_features,
    seasonal_features,
    window_move_features,
)
from qortex.engine.normalise import last_windows, normalise_windows
from qortex.engine.patterns import PATTERN_TYPES, PatternScan, detect_patterns, spatial_signatures
from qortex.engine.quantum import QuantumFeatureMap
from qortex.engine.readout import CLIP_Z, Calibrator, LogisticReadout, fit_calibrator, fit_logistic
from qortex.engine.reservoir import ReservoirParams, ReservoirRun, make_weights, simulate, weight_grid
from qortex.engine.result import Direction, Factor, FactorGroup, Pattern, PredictionResult
from qortex.engine.validation import check_horizon, validate_batch
from qortex.engine.windows import sliding_windows

__all__ = ["STAGES", "Predictor"]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

# Keys of PredictionResult.timings_ms, in pipeline order.
STAGES = ("encoding", "neuromorphic", "patterns", "quantum", "readout")
MIN_TRAINING_WINDOWS = 20
# Rows per forward pass: at most CHUNK, fewer where one row's working set is large (see chunk_rows).
CHUNK = 1024
CHUNK_BYTES = 128 * 2**20


@dataclass
class _Forward:
    """Everything one batch produces on its way to the readout."""

    z: F32
    constant: npt.NDArray[np.bool_]
    scan: PatternScan
    run: ReservoirRun | None
    q_expectations: F32
    q_correlations: F32
    features: F32
    timings: dict[str, float] = field(default_factory=dict)


class Predictor:
    """Direction-of-change predictor: spikes, a LIF reservoir, patterns, a circuit, a readout."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config if config is not None else EngineConfig()
        self.layout = build_layout(self.config)
        # The factor roll-up depends only on the layout; building it per call cost as much as
        # the logit itself at batch 1,024.
        labels, groups, matrix = self.layout.factor_matrix()
        self._factor_labels = labels
        self._factor_groups = [cast(FactorGroup, g) for g in groups]
        owner = matrix.argmax(axis=1)  # every feature column belongs to one factor
        sizes = np.bincount(owner, minlength=len(labels))
        self._factor_columns = np.argsort(owner, kind="stable")
        self._factor_starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self._factor_sizes = sizes.astype(np.float64)
        self._metrics: dict[str, Any] = {}
        self._lineage: dict[str, Any] | None = None
        self._stored_metadata: dict[str, Any] = {}

    # ------------------------------------------------------------------ training
    def fit(
        self, series_list: Sequence[npt.ArrayLike], horizon: int = 1, lineage: dict[str, Any] | None = None
    ) -> Predictor:
        """Fits on every sliding window of every series; calibrates on each series' last windows."""
        check_horizon(horizon)
        lineage = _lineage_copy(lineage)
        xs: list[F64] = []
        ys: list[npt.NDArray[np.int8]] = []
        holdout: list[npt.NDArray[np.bool_]] = []
        calibration_train: list[npt.NDArray[np.bool_]] = []
        # Training series may be longer than a prediction input.
        for values in validate_batch(series_list, max_length=None):
            x, y = sliding_windows(values, self.config.window, horizon)
            held, learn = _calibration_split(x.shape[0], self.config.calibration_fraction, horizon)
            xs.append(x)
            ys.append(y)
            holdout.append(held)
            calibration_train.append(learn)
        if not xs:
            raise ValueError("fit needs at least one series")
        return self._fit(
            np.concatenate(xs),
            np.concatenate(ys),
            np.concatenate(holdout),
            np.concatenate(calibration_train),
            horizon,
            lineage,
        )

    def fit_windows(
        self,
        x: npt.ArrayLike,
        y: npt.ArrayLike,
        horizon: int = 1,
        lineage: dict[str, Any] | None = None,
    ) -> Predictor:
        """Fits on prepared windows (n, window) in time order; the last rows calibrate."""
        check_horizon(horizon)
        lineage = _lineage_copy(lineage)
        given_x = np.asarray(x)
        # A cast to float64 would drop an imaginary part with only a warning.
        if given_x.dtype.kind not in "iuf":
            raise ValueError(f"x must hold real numbers, got dtype {given_x.dtype}")
        windows = given_x.astype(np.float64, copy=False)
        given = np.asarray(y)
        if windows.ndim != 2 or windows.shape[1] != self.config.window:
            raise ValueError(f"x must have shape (n, {self.config.window}), got {windows.shape}")
        # Checked before the cast to int8, which would turn 256 into 0 and 1.5 into 1.
        if given.shape != (windows.shape[0],) or not np.isin(given, (0, 1)).all():
            raise ValueError("y must be a 1-D array of 0/1 labels, one per window")
        labels = given.astype(np.int8)
        if not np.isfinite(windows).all():
            raise ValueError("x contains NaN or infinite values")
        holdout, calibration_train = _calibration_split(windows.shape[0], self.config.calibration_fraction, horizon)
        return self._fit(windows, labels, holdout, calibration_train, horizon, lineage)

    def _fit(
        self,
        x: F64,
        y: npt.NDArray[np.int8],
        holdout: npt.NDArray[np.bool_],
        calibration_train: npt.NDArray[np.bool_],
        horizon: int,
        lineage: dict[str, Any] | None,
    ) -> Predictor:
        cfg = self.config
        if x.shape[0] < MIN_TRAINING_WINDOWS:
            raise ValueError(f"fit needs at least {MIN_TRAINING_WINDOWS} labelled windows, got {x.shape[0]}")
        if len(np.unique(y)) < 2:
            raise ValueError("fit needs both up and down labels among the training windows")
        self._init_structure()
        z, constant = normalise_windows(x)
        blocks = [
            self._forward_from_z(z[part], constant[part], None, record=False, with_quantum=False).features
            for part in _chunks(z.shape[0], chunk_rows(self.config))
        ]
        base = np.concatenate(blocks)
        overflowing = _non_finite_group(base, self.layout.groups)
        if overflowing is not None:
            # Weights scaled past float32 fit "successfully" into a model that answers NaN.
            raise ValueError(
                f"the {overflowing} features are not finite with this configuration (float32 overflow); "
                "lower spectral_radius or input_scale"
            )
        if cfg.use_quantum:
            q_in = self._quantum_input(base)
            std = q_in.std(axis=0)
            self.quantum_mean_ = q_in.mean(axis=0).astype(np.float32)
            self.quantum_scale_ = np.where(std > 1e-6, std, 1.0).astype(np.float32)
            quantum = [
                np.concatenate(self._quantum(q_in[part]), axis=1)
                for part in _chunks(z.shape[0], chunk_rows(self.config))
            ]
            base = np.concatenate([base, np.concatenate(quantum)], axis=1)
        features = base.astype(np.float64)
        deep = np.isin(np.asarray(self.layout.groups), ("reservoir", "quantum"))
        penalty = np.where(deep, cfg.reservoir_l2, cfg.l2)
        train = calibration_train
        if holdout.sum() >= 10 and len(np.unique(y[holdout])) == 2 and len(np.unique(y[train])) == 2:
            first = fit_logistic(features[train], y[train], l2=penalty, max_iter=cfg.max_iter)
            self.calibrator_ = fit_calibrator(cfg.calibration, first.decision(features[holdout]), y[holdout])
        else:
            # Too little held-out data to calibrate honestly: fall back to the plain sigmoid.
            self.calibrator_ = fit_calibrator("none", np.zeros(0), np.zeros(0, dtype=np.int8))
        # The calibration map is learned from out-of-sample logits of a model fitted without the
        # held-out fold; the final model is then refitted on all windows (like scikit-learn's
        # CalibratedClassifierCV(ensemble=False)) so the most recent data also shapes it.
        self.readout_ = fit_logistic(features, y, l2=penalty, max_iter=cfg.max_iter)
        self.horizon_ = int(horizon)
        self.n_training_windows_ = int(x.shape[0])
        self._lineage = lineage
        self._metrics = {}
        self._stored_metadata = {"created_at": _now()}
        self.model_hash_ = self._parameter_hash()
        return self

    def _init_structure(self) -> None:
        """Creates the seeded, untrained parts: reservoir weights and the circuit."""
        cfg = self.config
        n_in = n_channels(cfg.encoder, cfg.encoder_channels)
        self.w_in_, self.w_rec_ = make_weights(
            n_inputs=n_in,
            n_neurons=cfg.n_neurons,
            connectivity=cfg.connectivity,
            input_connectivity=cfg.input_connectivity,
            spectral_radius=cfg.spectral_radius,
            input_scale=cfg.input_scale,
            seed=cfg.seed,
        )
        self.quantum_map_ = QuantumFeatureMap.create(
            n_inputs=self._quantum_inputs(),
            n_qubits=cfg.n_qubits,
            n_layers=cfg.n_quantum_layers,
            seed=cfg.seed,
        )

    def _quantum_inputs(self) -> int:
        return 4 * self.config.n_neurons if self.config.use_reservoir else 16

    # ------------------------------------------------------------------ forward pass
    def _params(self) -> ReservoirParams:
        cfg = self.config
        return ReservoirParams(
            cfg.membrane_tau, cfg.threshold, cfg.reset, cfg.refractory, cfg.trace_tau, cfg.recent_steps
        )

    def _quantum_input(self, base: F32) -> F32:
        """Returns the circuit's input columns from features that do not yet include the circuit."""
        if self.config.use_reservoir:
            return base[:, base.shape[1] - 4 * self.config.n_neurons :]
        return base[:, :MOMENTUM_COLUMNS]

    def _quantum(self, q_in: F32) -> tuple[F32, F32]:
        return self.quantum_map_.run((q_in - self.quantum_mean_) / self.quantum_scale_)

    def _forward_from_z(
        self,
        z: F32,
        constant: npt.NDArray[np.bool_],
        used: npt.NDArray[np.int64] | None,
        *,
        record: bool,
        with_quantum: bool = True,
    ) -> _Forward:
        cfg = self.config
        timings: dict[str, float] = {}
        batch = z.shape[0]
        t0 = time.perf_counter()
        spikes = encode(z, cfg.encoder, cfg.encoder_channels, cfg.seed) if cfg.use_reservoir else None
        t1 = time.perf_counter()
        run = simulate(spikes, self.w_in_, self.w_rec_, self._params(), record=record) if spikes is not None else None
        t2 = time.perf_counter()
        scan = detect_patterns(z, None if used is None else used - 1)
        momentum = momentum_features(z)
        blocks: list[F32] = [momentum]
        if cfg.use_window_moves:
            blocks.append(window_move_features(z))
        if cfg.use_seasonal:
            blocks.append(seasonal_features(z))
        t3 = time.perf_counter()
        if cfg.use_patterns:
            blocks.append(scan.strengths)
        reservoir_block = run.features() if run is not None else None
        if reservoir_block is not None:
            blocks.append(reservoir_block)
        if cfg.use_quantum and with_quantum:
            q_exp, q_corr = self._quantum(reservoir_block if reservoir_block is not None else momentum)
            blocks.extend([q_exp, q_corr])
        else:
            q_exp = np.zeros((batch, 0), dtype=np.float32)
            q_corr = np.zeros((batch, 0), dtype=np.float32)
        features = np.concatenate(blocks, axis=1)
        t4 = time.perf_counter()
        timings["encoding"] = t1 - t0
        timings["neuromorphic"] = t2 - t1
        timings["patterns"] = t3 - t2
        timings["quantum"] = t4 - t3
        return _Forward(z, constant, scan, run, q_exp, q_corr, features, timings)

    def _probabilities(self, fwd: _Forward) -> F64:
        t0 = time.perf_counter()
        p = self.calibrator_(self.readout_.decision(fwd.features))
        p = np.clip(p, 0.0, 1.0)
        # A series that never moves carries no evidence either way.
        p[fwd.constant] = 0.5
        fwd.timings["readout"] = time.perf_counter() - t0
        return np.asarray(p, dtype=np.float64)

    def _check_fitted(self) -> None:
        if not hasattr(self, "readout_"):
            raise RuntimeError("this Predictor is not fitted; call fit, fit_windows or load first")

    # ------------------------------------------------------------------ prediction
    def predict_proba(self, series_list: Sequence[npt.ArrayLike]) -> F64:
        """Returns the calibrated probability that each series goes up, float64 (n,).

        Each series (8 to 4096 finite values) contributes its last `window` values; a shorter
        one is left-padded with "no movement".
        """
        self._check_fitted()
        values = validate_batch(series_list)
        if not values:
            return np.zeros(0, dtype=np.float64)
        raw, used, _ = last_windows(values, self.config.window)
        z, constant = normalise_windows(raw, used)
        return np.concatenate(
            [
                self._probabilities(self._forward_from_z(z[part], constant[part], used[part], record=False))
                for part in _chunks(z.shape[0], chunk_rows(self.config))
            ]
        )

    def predict_batch(self, series_list: Sequence[npt.ArrayLike], horizon: int | None = None) -> list[PredictionResult]:
        """Returns one PredictionResult per series, with factors, patterns and stage timings."""
        self._check_fitted()
        if horizon is not None:
            check_horizon(horizon)
            if horizon != self.horizon_:
                raise ValueError(f"this model predicts horizon {self.horizon_}, not {horizon}")
        values = validate_batch(series_list)
        if not values:
            return []
        t0 = time.perf_counter()
        raw, used, lengths = last_windows(values, self.config.window)
        z, constant = normalise_windows(raw, used)
        norm_s = (time.perf_counter() - t0) / z.shape[0]
        results: list[PredictionResult] = []
        for part in _chunks(z.shape[0], chunk_rows(self.config)):
            fwd = self._forward_from_z(z[part], constant[part], used[part], record=True)
            fwd.timings["encoding"] += norm_s * fwd.z.shape[0]
            results.extend(self._results(fwd, self._probabilities(fwd), lengths[part]))
        return results

    def _results(self, fwd: _Forward, p: F64, lengths: npt.NDArray[np.int64]) -> list[PredictionResult]:
        cfg = self.config
        t0 = time.perf_counter()
        contributions = self.readout_.standardise(fwd.features) * self.readout_.coef
        labels, groups_t = self._factor_labels, self._factor_groups
        weights = self._per_factor(contributions)
        values = self._per_factor(fwd.features.astype(np.float64)) / self._factor_sizes
        weights[fwd.constant] = 0.0
        top = np.argsort(-np.abs(weights), axis=1, kind="stable")[:, : cfg.top_factors]
        t_spatial = time.perf_counter()
        # Row-major, so each series' patterns come out in PATTERN_TYPES order (ties sort stably by it).
        rows, kinds = np.nonzero(fwd.scan.strengths.astype(np.float64) >= cfg.min_pattern_strength)
        found_spans = fwd.scan.spans[rows, kinds]
        if fwd.run is not None and fwd.run.cumulative is not None:
            spatial = spatial_signatures(fwd.run.cumulative, rows, found_spans, cfg.spatial_top_k)
        else:
            spatial = np.zeros((rows.size, 0), dtype=np.float32)
        # Signatures belong to the pattern stage, not to the readout.
        spatial_s = time.perf_counter() - t_spatial
        fwd.timings["patterns"] += spatial_s
        t0 += spatial_s
        patterns = self._patterns(fwd.scan, rows, kinds, found_spans, spatial, lengths - cfg.window)
        band = cfg.neutral_band
        timings_ms = {k: round(v * 1000.0, 4) for k, v in fwd.timings.items()}
        q_exp = fwd.q_expectations.tolist()
        q_corr = fwd.q_correlations.tolist()
        # Only the top factors become Python objects.
        weights_l = np.take_along_axis(weights, top, axis=1).tolist()
        values_l = np.take_along_axis(values, top, axis=1).tolist()
        top_l = top.tolist()
        version = self.model_version
        # The readout stage covers the logit, calibration and factor roll-up, not object building.
        timings_ms["readout"] = round((fwd.timings["readout"] + time.perf_counter() - t0) * 1000.0, 4)
        results: list[PredictionResult] = []
        for i, prob in enumerate(p.tolist()):
            direction: Direction = "neutral" if abs(prob - 0.5) <= band else ("up" if prob > 0.5 else "down")
            factors = [Factor(labels[j], groups_t[j], values_l[i][k], weights_l[i][k]) for k, j in enumerate(top_l[i])]
            found = patterns[i]
            found.sort(key=lambda pat: -pat.strength)
            results.append(
                PredictionResult(
                    direction=direction,
                    confidence=max(prob, 1.0 - prob),
                    probability_up=prob,
                    factors=factors,
                    patterns=found,
                    quantum={"expectations": q_exp[i], "correlations": q_corr[i]},
                    timings_ms=dict(timings_ms),
                    model_version=version,
                    horizon=self.horizon_,
                )
            )
        return results

    def _per_factor(self, columns: F64) -> F64:
        """Sums each factor's feature columns, row by row in one fixed order (unlike a BLAS product, whose
        order of summation depends on the batch), so a series' factors do not depend on its batch."""
        return np.add.reduceat(columns[:, self._factor_columns], self._factor_starts, axis=1)

    @staticmethod
    def _patterns(
        scan: PatternScan, rows: I64, kinds: I64, spans: I64, spatial: F32, offsets: I64
    ) -> list[list[Pattern]]:
        """The found patterns of each series; window index j maps to series index offset + j (>= 0)."""
        found: list[list[Pattern]] = [[] for _ in range(scan.strengths.shape[0])]
        periods = scan.periods.tolist()
        starts = np.maximum(spans[:, 0] + offsets[rows], 0).tolist()
        ends = np.maximum(spans[:, 1] + offsets[rows], 0).tolist()
        strengths = scan.strengths[rows, kinds].tolist()
        for row, kind, strength, start, end, signature in zip(
            rows.tolist(), kinds.tolist(), strengths, starts, ends, spatial.tolist(), strict=True
        ):
            name = PATTERN_TYPES[kind]
            period = periods[row] if name == "oscillation" else None
            found[row].append(Pattern(name, strength, start, end, period, signature))
        return found

    # ------------------------------------------------------------------ metadata and artifacts
    @property
    def model_version(self) -> str:
        """Returns "<qortex version>+<first 16 hex digits of the parameter hash>"."""
        self._check_fitted()
        return f"{qortex.__version__}+{self.model_hash_[:16]}"

    @property
    def metadata(self) -> dict[str, Any]:
        """Returns the model's description: config, features, lineage, metrics, versions, hashes."""
        self._check_fitted()
        meta: dict[str, Any] = {
            "format": artifact.FORMAT,
            "config": self.config.to_dict(),
            "feature_names": list(self.layout.names),
            "horizon": self.horizon_,
            "n_training_windows": self.n_training_windows_,
            "lineage": self._lineage,
            "metrics": dict(self._metrics),
            "qortex_version": qortex.__version__,
            "numpy_version": np.__version__,
            "model_hash": self.model_hash_,
            "model_version": self.model_version,
        }
        meta.update({k: v for k, v in self._stored_metadata.items() if k not in meta})
        return meta

    def set_metrics(self, metrics: dict[str, Any]) -> None:
        """Stores evaluation metrics (JSON-serialisable) in the metadata saved with the model."""
        self._check_fitted()
        self._metrics = _json_copy(metrics, "metrics")

    def _arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {
            "w_in": self.w_in_,
            "w_rec": self.w_rec_,
            "quantum_projection": self.quantum_map_.projection,
            "quantum_offsets": self.quantum_map_.offsets,
            "quantum_mean": getattr(self, "quantum_mean_", np.zeros(0, dtype=np.float32)),
            "quantum_scale": getattr(self, "quantum_scale_", np.zeros(0, dtype=np.float32)),
            "readout_mean": self.readout_.mean,
            "readout_scale": self.readout_.scale,
            "readout_coef": self.readout_.coef,
            "readout_intercept": np.array([self.readout_.intercept]),
            "calibration_params": self.calibrator_.params,
        }

    def _parameter_hash(self) -> str:
        digest = hashlib.sha256(json.dumps(self.config.to_dict(), sort_keys=True).encode())
        digest.update(str(self.horizon_).encode())
        for name, arr in sorted(self._arrays().items()):
            digest.update(name.encode())
            digest.update(str(arr.dtype).encode() + str(arr.shape).encode())
            digest.update(np.ascontiguousarray(arr).tobytes())
        return digest.hexdigest()

    def save(self, path: str | Path) -> Path:
        """Writes <path>.npz and <path>.json (never pickle); returns the .npz path."""
        meta = self.metadata
        meta["calibration_kind"] = self.calibrator_.kind
        return artifact.write(Path(path), self._arrays(), meta)

    @classmethod
    def load(cls, path: str | Path) -> Predictor:
        """Loads and verifies an artifact written by `save`; raises ArtifactError otherwise."""
        arrays, meta = artifact.read(Path(path))
        return cls._from_artifact(arrays, meta, str(path))

    @classmethod
    def load_default(cls) -> Predictor:
        """Loads the shipped default model from qortex/engine/artifacts/default.npz."""
        arrays, meta = artifact.read_default()
        return cls._from_artifact(arrays, meta, "default")

    @classmethod
    def _from_artifact(cls, arrays: dict[str, npt.NDArray[Any]], meta: dict[str, Any], where: str) -> Predictor:
        try:
            config = EngineConfig.from_dict(meta["config"])
            predictor = cls(config)
            if meta.get("feature_names") != predictor.layout.names:
                raise ArtifactError(f"artifact {where}: feature names do not match its configuration")
            predictor._init_structure()
            predictor.w_in_ = _expect(arrays, "w_in", predictor.w_in_.shape, np.float32, where)
            predictor.w_rec_ = _expect(arrays, "w_rec", predictor.w_rec_.shape, np.float32, where)
            qm = predictor.quantum_map_
            predictor.quantum_map_ = QuantumFeatureMap(
                qm.n_qubits,
                qm.n_layers,
                _expect(arrays, "quantum_projection", qm.projection.shape, np.float32, where),
                _expect(arrays, "quantum_offsets", qm.offsets.shape, np.float32, where),
            )
            n_q = predictor._quantum_inputs() if config.use_quantum else 0
            predictor.quantum_mean_ = _expect(arrays, "quantum_mean", (n_q,), np.float32, where)
            predictor.quantum_scale_ = _expect(arrays, "quantum_scale", (n_q,), np.float32, where)
            n_f = len(predictor.layout.names)
            predictor.readout_ = LogisticReadout(
                _expect(arrays, "readout_mean", (n_f,), np.float64, where),
                _expect(arrays, "readout_scale", (n_f,), np.float64, where),
                _expect(arrays, "readout_coef", (n_f,), np.float64, where),
                float(_expect(arrays, "readout_intercept", (1,), np.float64, where)[0]),
            )
            kind = str(meta["calibration_kind"])
            params = arrays.get("calibration_params")
            if params is None or params.dtype != np.float64 or params.ndim != 1:
                raise ArtifactError(f"artifact {where}: calibration_params missing or malformed")
            predictor.calibrator_ = Calibrator(kind, params)
            # The kind is not part of the parameter hash: it must be the configured one, or "none"
            # when the held-out fold was too small to calibrate on.
            if kind not in (config.calibration, "none"):
                raise ArtifactError(f"artifact {where}: calibration {kind!r} contradicts its configuration")
            check_horizon(meta["horizon"])
            predictor.horizon_ = meta["horizon"]
            _check_reported_facts(meta)
            predictor.n_training_windows_ = meta["n_training_windows"]
            predictor._lineage = meta.get("lineage")
            predictor._metrics = dict(meta.get("metrics") or {})
            predictor._stored_metadata = {k: meta[k] for k in ("created_at", "content_hash") if k in meta}
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"artifact {where}: metadata is incomplete or invalid ({exc})") from None
        predictor.model_hash_ = predictor._parameter_hash()
        if predictor.model_hash_ != meta.get("model_hash"):
            raise ArtifactError(f"artifact {where}: parameters do not match the recorded model hash")
        _check_values(predictor, set(arrays), where)
        return predictor


def _expect(
    arrays: dict[str, npt.NDArray[Any]], name: str, shape: tuple[int, ...], dtype: type, where: str
) -> npt.NDArray[Any]:
    arr = arrays.get(name)
    if arr is None:
        raise ArtifactError(f"artifact {where}: array {name!r} is missing")
    if arr.shape != shape or arr.dtype != dtype:
        raise ArtifactError(
            f"artifact {where}: array {name!r} has shape {arr.shape} and dtype {arr.dtype}, "
            f"expected {shape} and {np.dtype(dtype)}"
        )
    return arr


def _non_finite_group(features: npt.NDArray[np.floating], groups: list[str]) -> str | None:
    """Returns the group of the first feature column holding a NaN or infinity, or None."""
    bad = ~np.isfinite(features).all(axis=0)
    return groups[int(np.argmax(bad))] if bad.any() else None


def _json_copy(value: dict[str, Any], what: str) -> dict[str, Any]:
    """Returns a plain-JSON copy of `value`, or raises ValueError before anything is stored."""
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a dict, got {type(value).__name__}")
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be JSON-serialisable without NaN: {exc}") from None
    return cast(dict[str, Any], json.loads(text))


def _lineage_copy(lineage: dict[str, Any] | None) -> dict[str, Any] | None:
    """Checks lineage before fitting, so that a model is never fitted and then unsaveable."""
    return None if lineage is None else _json_copy(lineage, "lineage")


def _check_values(predictor: Predictor, stored: set[str], where: str) -> None:
    """Refuses parameters no fit produces: the hashes catch accidents, not a forger who recomputes them."""
    arrays = predictor._arrays()
    if stored != set(arrays):
        raise ArtifactError(f"artifact {where}: unexpected arrays {sorted(stored - set(arrays))}")
    not_finite = [name for name, values in arrays.items() if not np.isfinite(values).all()]
    if not_finite:
        raise ArtifactError(f"artifact {where}: {', '.join(sorted(not_finite))} must be finite")
    if (predictor.readout_.scale <= 0).any() or (arrays["quantum_scale"] <= 0).any():
        raise ArtifactError(f"artifact {where}: feature scales must be positive")
    # Forged values overflow below; each check refuses them, so numpy's warnings add nothing.
    with np.errstate(all="ignore"):
        # Off-grid weights would lose the exact sums that make a batch answer like its series alone.
        if any(not np.array_equal(weight_grid(arrays[name]), arrays[name]) for name in ("w_in", "w_rec")):
            raise ArtifactError(f"artifact {where}: reservoir weights are not on the dyadic grid")
        # Finite parameters can still overflow on the way to a probability, and predict would answer NaN.
        readout = predictor.readout_
        largest_logit = CLIP_Z * float(np.abs(readout.coef).sum()) + abs(readout.intercept)
        if not np.isfinite(largest_logit):
            raise ArtifactError(f"artifact {where}: readout coefficients are too large for a finite logit")
        if not np.isfinite(predictor.predict_proba(_probe_series(predictor.config.window))).all():
            raise ArtifactError(f"artifact {where}: parameters answer NaN for ordinary series")


def _probe_series(length: int) -> list[F64]:
    """A few fixed, ordinary series: ramps, a cycle and a random walk."""
    t = np.arange(length, dtype=np.float64)
    walk = np.cumsum(np.random.default_rng(0).standard_normal(length))
    return [t, -t, np.sin(2 * np.pi * t / 7), walk]


def _check_reported_facts(meta: dict[str, Any]) -> None:
    """The metadata a loaded model reports back must have the types a fit writes (int() would make 1.5 windows 1)."""
    windows = meta["n_training_windows"]
    if isinstance(windows, bool) or not isinstance(windows, int) or windows < MIN_TRAINING_WINDOWS:
        raise ValueError(f"n_training_windows must be an integer >= {MIN_TRAINING_WINDOWS}, got {windows!r}")
    for key in ("lineage", "metrics"):
        if not isinstance(meta.get(key), dict | None):
            raise ValueError(f"{key} must be a JSON object or null, got {type(meta[key]).__name__}")


def _calibration_split(
    n_windows: int, fraction: float, horizon: int
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """One series' held-out last windows, and the windows the calibrating readout may learn from.

    The ``horizon - 1`` windows right before the held-out ones are left out of that readout: their
    targets lie after the first held-out origin, inside the span the held-out windows forecast, so
    learning them would make its held-out logits look better than out-of-sample ones are.
    """
    n_hold = round(fraction * n_windows)
    holdout = np.zeros(n_windows, dtype=np.bool_)
    holdout[n_windows - n_hold :] = True
    calibration_train = ~holdout
    if n_hold:
        calibration_train[max(0, n_windows - n_hold - (horizon - 1)) :] = False
    return holdout, calibration_train


def chunk_rows(cfg: EngineConfig) -> int:
    """Rows per forward pass, so that one pass needs about CHUNK_BYTES whatever the configuration.

    A row holds float32 spike input, recurrent drive, spike history and running totals over its window,
    and a complex128 state vector with one gate's temporary copy. At the configuration maxima (window
    4,096, 4,096 neurons) a row alone is ~200 MB, and a full CHUNK of them would need ~200 GB.
    """
    channels = n_channels(cfg.encoder, cfg.encoder_channels)
    row_bytes = 4 * (cfg.window + 1) * (3 * cfg.n_neurons + channels) + 32 * 2**cfg.n_qubits
    return max(1, min(CHUNK, CHUNK_BYTES // int(row_bytes)))


def _chunks(n: int, rows: int) -> list[slice]:
    """Splits n rows into slices of at most `rows` rows."""
    return [slice(i, min(i + rows, n)) for i in range(0, n, rows)]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
