"""``SequenceTask``: the LightningModule every application's task subclasses.

A subclass provides the model and one method::

    def compute_loss(self, batch, state) -> tuple[Tensor | None, state]

the mean loss of ``batch`` (a whole batch, or one TBPTT chunk of it) starting from recurrent
``state`` (``None``: zeros), and the state after it (``self.chunk_index`` of ``self.n_chunks`` says
which TBPTT chunk it is; validation passes whole sequences, chunk 0 of 1). Returning ``None`` as
the loss carries the state without an update (e.g. a chunk with no targets). Everything else is shared and driven by
:class:`~rnnkit.training.config.TrainConfig`: the optimiser and schedule, gradient clipping by norm or
value, truncated BPTT (``tbptt_steps``, and ``stateful = True`` for stateful batching), the NaN/Inf
guard, NT-ASGD, an exponential moving average of the weights (``ema_decay``,
:mod:`~rnnkit.training.weight_average`), per-epoch seeding and DDP-correct data loading (:meth:`loader`).

With ``ema_decay`` the averages replace the weights for each validation (from ``on_validation_start``
to ``on_validation_end``, so a subclass's ``on_validation_epoch_end`` that keeps a best epoch keeps
the averages), in ``model.safetensors`` and, from ``on_train_end`` on, in the model itself; the
checkpoint holds the raw weights and the averages, so ``--resume`` continues both.

Optimisation is manual (``automatic_optimization = False``) because TBPTT steps the optimiser
several times per batch; under DDP Lightning's ``manual_backward`` all-reduces the gradients of
every chunk.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from rnnkit.errors import UserError
from rnnkit.training.config import TrainConfig
from rnnkit.training.divergence import Diverged, advice, diverged
from rnnkit.training.optim import (
    averaged_parameters,
    build_optimizer,
    build_scheduler,
    ntasgd_should_switch,
    schedule_interval,
)
from rnnkit.training.tbptt import detach_state, map_state, split_time
from rnnkit.training.weight_average import WeightAverage


class NonFiniteLoss(UserError):
    """Training met a NaN/Inf loss or gradient and ``nan_policy`` says stop (or too many skips)."""

    status = "stopped_nonfinite"

    def __init__(self, message: str, step: int, epoch: int) -> None:
        super().__init__(message)
        self.step = step
        self.epoch = epoch


class SequenceTask(pl.LightningModule):
    """Shared training logic for sequence models (see the module docstring)."""

    #: carry the recurrent state from one batch to the next (stateful batching, StatefulStreams)
    stateful: bool = False
    #: which dimension of the batch tensors is time (for TBPTT chunking)
    time_dim: int = 0
    #: the carried state flows on from one epoch into the next (the text app's stream): it is saved in
    #: the checkpoint (``rnnkit.carry``, one state per process) and restored by ``--resume``
    epoch_carry: bool = False

    def __init__(self, model: nn.Module, train_config: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.cfg = train_config
        self.automatic_optimization = False
        self._carry: Any = None
        self._val_carry: Any = None
        self.val_history: list[float] = []
        self.ntasgd_switched = False
        self.skipped_steps = 0
        self._consecutive_skips = 0
        self._train_sum = torch.zeros(2, dtype=torch.float64)  # loss sum, count this epoch
        self._val_sum = torch.zeros(2, dtype=torch.float64)
        self.last_train_loss = math.nan  # the last batch's mean loss
        self.epoch_train_loss = math.nan
        self.epoch_val_loss = math.nan
        self.val_epoch = -1  # the epoch epoch_val_loss belongs to
        self._backup: list[Tensor] | None = None
        self.chunk_index, self.n_chunks = 0, 1  # which TBPTT chunk compute_loss is looking at
        self._best_loss = math.inf  # the lowest training loss of this session (divergence.py)
        self._average: WeightAverage | None = None  # ema_decay: built at the first batch (on the device)
        self._average_loaded: dict[str, Any] | None = None  # its state from a checkpoint, until then
        self._average_in_model = False  # the parameters hold the averages (validation)

    # ---- to implement -------------------------------------------------------------------------
    def diagnostic_inputs(self, batch: Any) -> tuple[Tensor, Callable[[Any], Tensor]]:
        """For the gradient-flow diagnostics (``diagnostics_every``, ``rnnkit diagnose``): the input
        ``x`` to call ``self.model(x)`` with for ``batch``, and the loss of that call's output."""
        raise UserError(f"{type(self).__name__} does not define diagnostic_inputs(batch): "
                        "gradient-flow diagnostics are not available for this task")

    def compute_loss(self, batch: Any, state: Any) -> tuple[Tensor | None, Any]:
        raise NotImplementedError

    def carry_template(self, rows: int) -> Any:
        """For an ``epoch_carry`` task: a state of the structure and shapes the training leaves for a batch
        of ``rows`` rows (``checkpoint_state`` checks a checkpoint's carried state against it)."""
        raise NotImplementedError

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    # ---- data ---------------------------------------------------------------------------------
    @property
    def world(self) -> tuple[int, int]:
        """(rank, world size) of this process."""
        trainer = self._trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def loader(self, dataset: Dataset, train: bool, **kwargs) -> DataLoader:
        """A DataLoader of ``dataset`` for this process: ``cfg.batch_size`` is the global batch.

        The permutation depends only on ``(seed, epoch)`` and process ``r`` of ``W`` takes rows
        ``r, r+W, ...`` of each global batch, so one process with batch ``B`` and ``W`` processes
        with ``B/W`` each see the same global batches (and a resumed run the same ones as an
        uninterrupted run).
        """
        rank, world = self.world
        if self.cfg.batch_size % world:
            raise UserError(f"batch_size {self.cfg.batch_size} is not divisible by the {world} processes")
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=train,
                                     seed=self.cfg.seed, drop_last=train)
        return DataLoader(dataset, batch_size=self.cfg.batch_size // world, sampler=sampler,
                          drop_last=train, **kwargs)

    # ---- optimisation -------------------------------------------------------------------------
    def configure_optimizers(self):
        opt = build_optimizer(self.model.parameters(), self.cfg, averaged=self.ntasgd_switched)
        total = self.trainer.estimated_stepping_batches if self._trainer is not None else 1
        sched = build_scheduler(opt, self.cfg, int(total) if math.isfinite(total) else 10**9,
                                time_progress=self.budget_progress)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched}}  # stepped by hand (manual optimisation)

    def budget_progress(self) -> float:
        """The fraction of a wall-clock training budget spent (0 without one; apps with one override)."""
        return 0.0

    def _params(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def _any_rank(self, flag: bool) -> bool:
        """Whether ``flag`` holds on any process (all processes must take the same branch)."""
        if self._trainer is None or self.trainer.world_size == 1:
            return flag
        t = torch.tensor(float(flag), device=self.device)
        return bool(self.trainer.strategy.reduce(t, reduce_op="sum") > 0)

    def _nonfinite(self, what: str, value: float, batch_idx: int) -> None:
        """Apply ``nan_policy`` to a non-finite loss or gradient (raises for 'stop')."""
        where = f"step {self.global_step} (epoch {self.current_epoch}, batch {batch_idx})"
        if self.cfg.nan_policy == "skip":
            self.skipped_steps += 1
            self._consecutive_skips += 1
            if self._consecutive_skips <= self.cfg.nan_max_skips:
                return
            raise NonFiniteLoss(
                f"{what} was {value} for {self._consecutive_skips} steps in a row up to {where}: "
                "training stopped; lower the learning rate or clip gradients (--clip-norm)",
                self.global_step, self.current_epoch)
        raise NonFiniteLoss(
            f"{what} is {value} at {where}: training stopped before the update, the last checkpoint is "
            "intact; lower the learning rate, clip gradients (--clip-norm) or pass --nan-policy skip",
            self.global_step, self.current_epoch)

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        opt = self.optimizers()
        sched = self.lr_schedulers()
        k = self.cfg.tbptt_steps
        chunks = split_time(batch, k, self.time_dim) if k else [batch]
        state = self._carry if self.stateful else None
        losses: list[Tensor] = []
        self.n_chunks = len(chunks)
        for i, chunk in enumerate(chunks):
            self.chunk_index = i
            loss, state = self.compute_loss(chunk, state)
            if loss is None:
                state = detach_state(state)
                continue
            if self._any_rank(not bool(torch.isfinite(loss.detach()))):
                self._nonfinite("the loss", float(loss.detach()), batch_idx)
                state = None  # a non-finite state must not flow on
                continue
            value = float(loss.detach())
            if self._any_rank(diverged(value, self._best_loss)):
                where = f"step {self.global_step} (epoch {self.current_epoch}, batch {batch_idx})"
                raise Diverged(advice("the training loss", value, self._best_loss, where),
                               self.global_step, self.current_epoch)
            self._best_loss = min(self._best_loss, value)
            opt.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            params = self._params()
            norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.clip_norm or math.inf)
            if not bool(torch.isfinite(norm)):  # gradients are all-reduced: every rank agrees
                opt.zero_grad(set_to_none=True)
                self._nonfinite("the gradient norm", float(norm), batch_idx)
                state = None
                continue
            if self.cfg.clip_value is not None:
                torch.nn.utils.clip_grad_value_(params, self.cfg.clip_value)
            opt.step()
            if self.cfg.ema_decay:
                self.weight_average().update()
            self._consecutive_skips = 0
            state = detach_state(state)
            losses.append(loss.detach())
        if self.stateful:
            self._carry = state
        if sched is not None and schedule_interval(self.cfg) == "step":
            sched.step()
        if not losses:
            return {}
        mean = torch.stack(losses).mean()
        self.last_train_loss = float(mean)
        self._train_sum += torch.tensor([float(mean), 1.0], dtype=torch.float64)
        self.log("train_loss", mean, prog_bar=True, on_step=True, on_epoch=False, logger=self._has_logger())
        return {"loss": mean}

    # ---- epochs -------------------------------------------------------------------------------
    def epoch_seed(self) -> int:
        rank = self.world[0]
        return (self.cfg.seed * 1_000_003 + self.current_epoch * 1009 + rank) % (2**63)

    def on_train_start(self) -> None:
        if self._carry is not None:  # restored from the checkpoint on the CPU, before the model moved
            self._carry = map_state(self._carry, lambda t: t.to(self.device))

    def on_train_epoch_start(self) -> None:
        # every epoch's randomness (dropout masks, ...) depends only on (seed, epoch, rank): a
        # resumed run draws exactly what the uninterrupted run drew (reseeded again at the first batch)
        torch.manual_seed(self.epoch_seed())
        self._carry = None
        self._train_sum.zero_()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if batch_idx == 0:
            # reseed here as well: the DataLoader's iterator draws its base seed from torch's global
            # generator when the epoch's iteration begins, which Lightning does *before*
            # on_train_epoch_start in a session's first epoch and *after* it in the others; a resumed
            # run's first epoch would otherwise draw other dropout masks (final losses were off by 3e-6
            # to 8e-4 relative: speech, text, translate with dropout)
            torch.manual_seed(self.epoch_seed())

    def on_train_epoch_end(self) -> None:
        total = self._reduce(self._train_sum)
        self.epoch_train_loss = float(total[0] / total[1]) if total[1] > 0 else math.nan
        sched = self.lr_schedulers()
        if sched is not None and schedule_interval(self.cfg) == "epoch":
            sched.step()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.chunk_index, self.n_chunks = 0, 1
        loss, state = self.compute_loss(batch, self._val_carry if self.stateful else None)
        if self.stateful:
            self._val_carry = detach_state(state)
        if loss is not None:
            self._val_sum += torch.tensor([float(loss), 1.0], dtype=torch.float64)

    def weight_average(self) -> WeightAverage:
        """The moving average of the parameters (``ema_decay``), from the checkpoint if one was loaded."""
        if self._average is None:
            self._average = WeightAverage(self._params(), float(self.cfg.ema_decay))
            if self._average_loaded is not None:
                saved = self._average_loaded
                self._average.load(int(saved["steps"]), [t.to(self.device) for t in saved["shadows"]])
                self._average_loaded = None
        return self._average

    def on_validation_start(self) -> None:
        if self.cfg.ema_decay and not self.trainer.sanity_checking and self.trainer.state.fn == "fit":
            self.weight_average().swap()
            self._average_in_model = True

    def on_validation_end(self) -> None:
        if self._average_in_model:
            self.weight_average().swap()
            self._average_in_model = False

    def on_train_end(self) -> None:
        if self.cfg.ema_decay and self.global_step > 0:
            # training is over: the model keeps the averages (what validation measured and the run saves)
            self.weight_average().apply()
            self._average_in_model = False
            self._average = None

    def on_validation_epoch_start(self) -> None:
        self._val_carry = None
        self._val_sum.zero_()
        if self.ntasgd_switched:  # evaluate the averaged weights (Merity et al.)
            pairs = averaged_parameters(self.optimizers().optimizer)
            if pairs:
                self._backup = [p.detach().clone() for p, _ in pairs]
                with torch.no_grad():
                    for p, ax in pairs:
                        p.copy_(ax)

    def on_validation_epoch_end(self) -> None:
        if self._backup is not None:
            with torch.no_grad():
                for (p, _), saved in zip(averaged_parameters(self.optimizers().optimizer), self._backup, strict=True):
                    p.copy_(saved)
            self._backup = None
        total = self._reduce(self._val_sum)
        if total[1] == 0 or self.trainer.sanity_checking:
            return
        val = float(total[0] / total[1])
        best = min(self.val_history, default=math.inf)
        if self._any_rank(diverged(val, best)):
            where = f"the validation of epoch {self.current_epoch} (step {self.global_step})"
            raise Diverged(advice("the validation loss", val, best, where), self.global_step, self.current_epoch)
        self.epoch_val_loss = val
        self.val_epoch = self.current_epoch
        self.log("val_loss", val, prog_bar=True, logger=self._has_logger(), sync_dist=True)
        self.val_history.append(val)
        sched = self.lr_schedulers()
        if sched is not None and schedule_interval(self.cfg) == "validation":
            sched.step(val)
        if (self.cfg.optimizer == "ntasgd" and not self.ntasgd_switched
                and ntasgd_should_switch(self.val_history, self.cfg.ntasgd_patience)):
            self.switch_to_asgd()

    def switch_to_asgd(self) -> None:
        self.ntasgd_switched = True
        opt = build_optimizer(self.model.parameters(), self.cfg, averaged=True)
        self.trainer.strategy.optimizers = [opt]
        sched = build_scheduler(opt, self.cfg, 1)
        for config in self.trainer.strategy.lr_scheduler_configs:
            config.scheduler = sched
        if not self.cfg.quiet:
            self.print(f"NT-ASGD: validation stopped improving at epoch {self.current_epoch}: "
                       "switched to averaged SGD")

    def averaged_state(self) -> dict[str, Tensor] | None:
        """The model's state with the averaged weights (NT-ASGD's once it has switched, ``ema_decay``'s),
        or None when the model's own state is the one to save."""
        if self._average is not None and not self._average_in_model:
            pairs = zip(self._average.params, self._average.shadows, strict=True)
        elif self.ntasgd_switched and self._trainer is not None:
            pairs = averaged_parameters(self.optimizers().optimizer)
        else:
            return None
        average = {id(p): a for p, a in pairs}
        state = dict(self.model.state_dict())
        # every name of a tied parameter (shared embeddings) gets its average, not only the first
        for name, p in self.model.named_parameters(remove_duplicate=False):
            if id(p) in average:
                state[name] = average[id(p)]
        return state

    def _has_logger(self) -> bool:
        return self._trainer is not None and bool(self.trainer.loggers)

    def _reduce(self, t: Tensor) -> Tensor:
        if self._trainer is None or self.trainer.world_size == 1:
            return t.clone()
        return self.trainer.strategy.reduce(t.to(self.device), reduce_op="sum").cpu()

    # ---- checkpoint extras ----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rnnkit"] = {"val_history": list(self.val_history), "ntasgd_switched": self.ntasgd_switched,
                                "skipped_steps": self.skipped_steps}
        if self.cfg.ema_decay and (self._average is not None or self._average_loaded is not None):
            checkpoint["rnnkit"]["ema"] = (self._average.state() if self._average is not None
                                           else self._average_loaded)
        if self.epoch_carry and self.stateful and self._carry is not None:
            # every process's state (each owns its rows of the streams): all of them take part
            checkpoint["rnnkit"]["carry"] = self._gather_carry()

    def _gather_carry(self) -> list[Any]:
        """``[state of rank 0, state of rank 1, ...]``, on the CPU."""
        world = self.world[1]
        if world == 1:
            return [map_state(self._carry, lambda t: t.detach().cpu())]
        gathered = map_state(self._carry, lambda t: self.trainer.strategy.all_gather(t.detach()).cpu())
        return [map_state(gathered, lambda t, r=r: t[r].clone()) for r in range(world)]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        extra = checkpoint.get("rnnkit", {})
        self.val_history = list(extra.get("val_history", []))
        self.ntasgd_switched = bool(extra.get("ntasgd_switched", False))
        self.skipped_steps = int(extra.get("skipped_steps", 0))
        self._average, self._average_loaded = None, extra.get("ema")  # checked by checkpoint_state
        carry = extra.get("carry")  # checked by checkpoint_state: one state per process of this run, or None
        rank, world = self.world
        self._carry = carry[rank] if self.epoch_carry and carry is not None and len(carry) == world else None
