"""Training of the potential: loss, Adam (AMSGrad), EMA, plateau scheduler, data preparation, checkpoints.

Units follow ASE: energies in eV, forces in eV/Å, stress in eV/Å³, lengths in Å, times in seconds
(``max_minutes`` in minutes); errors are reported in meV/atom and meV/Å.

**Loss** (summed over the structures b of a batch, as in the paper)::

    L = w_E Σ_b ω_b (ΔE_b / N_b)²  +  w_F Σ_b ω_b Σ_{i∈b} |ΔF_i|²  +  w_S Σ_b ω_b |Δσ_b|²

with ``ΔX = X_pred - X_ref``, ``N_b`` atoms, per-structure weights ``ω_b`` (``info["weight"]``, 1 by
default), ``|Δσ|²`` the squared Frobenius norm of the (3, 3) stress error; ``w_E : w_F = 1 : 10`` by
default and ``w_S = 0``. Reported losses (``train_loss``, ``valid_loss``) are this sum over a whole set
divided by its number of structures, so training and validation values are comparable.

**Optimiser.** Adam with AMSGrad (PyTorch semantics: ``v̂ = max(v̂, v)``, bias-corrected), learning rate
0.01, L2 weight decay 5e-7 added to the gradient of the product-basis weights and of the second
linear of each interaction only (parameter names containing ``.product.`` or ``.linear.``). An
exponential moving average of the weights (decay 0.99, warmed up as ``min(decay, (1 + n) / (10 + n))``
after ``n`` updates) is what is validated and kept. The learning rate is multiplied by 0.8 when the
validation loss has not improved for ``patience`` (50) epochs.

**Data.** Every structure's neighbour list is built once (:func:`mlip.data.batch_structures`, then
split per structure); a batch is a cheap concatenation of those graphs (:func:`collate`), reshuffled
every epoch by a seeded :class:`numpy.random.Generator` (the global RNG is never used). Per-species
energies ``mu_Z`` (:attr:`mlip.model.ModelConfig.atomic_energies`): isolated-atom energies used exactly
as given, or least squares on the training compositions (only when they determine it), or ``"average"``
(MACE's), optionally plus a ridge-fitted shift (:mod:`.energies`); ``avg_num_neighbors`` = edges / atoms of
the training set (an error when no two atoms are within the cutoff); ``energy_scale`` = RMS of the
training force components (eV/Å). A structure is named in errors by its position in its file.

**Stops.** Non-finite losses, gradients or optimiser state, and a diverging loss stop the run with a
message naming the epoch, the loss and what to do; the bad state is never saved (:mod:`.guards`).

**Modules**: :mod:`.config` (options, config files), :mod:`.sources` / :mod:`.prepare` / :mod:`.energies` /
:mod:`.collate` (data), :mod:`.loss`, :mod:`.optimisers`, :mod:`.parameters`, :mod:`.guards`,
:mod:`.checkpoint`, :mod:`.log`, :mod:`.control` (signals), :mod:`.rundir` (output folder),
:mod:`.testsets`, :mod:`.trainer` (the loop), :mod:`.run` (:func:`train`); this package re-exports their
public names.

**Files** written into ``output_dir``:

* ``checkpoint.npz``: everything needed to continue exactly (pickle-free ``.npz``: flat float arrays
  ``params``, ``ema``, ``adam_m``, ``adam_v``, ``adam_vmax``, the epoch's permutation ``order`` and a
  ``__meta__`` JSON with the configs, parameter layout, counters, learning-rate and scheduler state, the
  RNG's ``bit_generator.state``, the best metric and the history); written atomically (temporary
  file, fsync, :func:`os.replace`) after every epoch and when interrupted (Ctrl-C / SIGTERM finish the
  current batch first);
* ``best.npz``: the EMA weights of the best validation epoch (:func:`mlip.model.save_model`);
* ``log.csv``: ``epoch,time_s,lr,train_loss,valid_loss,valid_energy_rmse_mev_atom,valid_force_rmse_mev_A``;
* ``learning_curve.png`` (every ``plot_every`` epochs and at the end) and ``train_config.json``;
* with ``test_files``: ``test_metrics.json`` and ``test/<name>_predictions.{csv,extxyz}`` (:mod:`.testsets`);
* while running: the lock ``.mlip-train.lock`` (one run per folder; :mod:`.rundir`).

An interrupted run continued with ``resume=True`` gives the same parameters as an uninterrupted one.
"""

from __future__ import annotations

from .checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    DERIVED_MODEL_FIELDS,
    RESUMABLE_CHANGES,
    load_checkpoint,
    save_checkpoint,
)
from .collate import collate, split_batch
from .config import E0_MODES, TrainConfig, merge_config, read_config_file, read_json_config
from .energies import RIDGE_LAMBDA, reference_energies
from .errors import DataError, TrainingError
from .log import LOG_COLUMNS
from .loss import _loss_tensor, _loss_terms, _loss_value, _LossTerms
from .prepare import PreparedData, prepare_data
from .run import train
from .sources import load_isolated_energies, read_labelled
from .trainer import Callback, Trainer, TrainResult

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "DERIVED_MODEL_FIELDS",
    "E0_MODES",
    "LOG_COLUMNS",
    "RESUMABLE_CHANGES",
    "RIDGE_LAMBDA",
    "Callback",
    "DataError",
    "PreparedData",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingError",
    "_LossTerms",
    "_loss_tensor",
    "_loss_terms",
    "_loss_value",
    "collate",
    "load_checkpoint",
    "load_isolated_energies",
    "merge_config",
    "prepare_data",
    "read_config_file",
    "read_json_config",
    "read_labelled",
    "reference_energies",
    "save_checkpoint",
    "split_batch",
    "train",
]
