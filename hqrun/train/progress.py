"""An epoch progress bar for Lightning trainings (one bar per training, not per batch).

Lightning's own bar counts batches; hqrun's batches are chunks of in-memory mini-batches and a
jet-model epoch takes a fraction of a second, so its bar flickered past unseen (with
``trainer.progress_bar=true`` nothing readable appeared). What a person waits for is epochs and
the validation accuracy: this bar shows those, and on a log it leaves a few lines only.
"""

from __future__ import annotations

from typing import Any

from hqrun.progress import Bar


def epoch_bar(max_epochs: int, desc: str) -> Any:
    """A ``pytorch_lightning.Callback`` advancing one step per finished epoch."""
    import pytorch_lightning as pl

    class EpochBar(pl.Callback):
        def __init__(self) -> None:
            self.best: tuple[float, int] | None = None
            self.last: dict = {}
            self.bar: Bar | None = None

        def _describe(self) -> str:
            acc = self.last.get("val_acc")
            text = "" if acc is None else f"val acc {acc:.4f}"
            if self.best is not None:
                text += f", best {self.best[0]:.4f} (epoch {self.best[1]})"
            return text

        def on_train_start(self, trainer, module) -> None:
            self.bar = Bar(max_epochs, desc, True, unit="epoch", describe=self._describe)

        def on_train_epoch_end(self, trainer, module) -> None:
            history = getattr(module, "history", None)
            if not history or self.bar is None:
                return
            self.last = history[-1]
            acc = self.last.get("val_acc")
            if acc is not None and (self.best is None or acc > self.best[0]):
                self.best = (acc, int(self.last["epoch"]) + 1)
            self.bar.update()

        def on_train_end(self, trainer, module) -> None:
            if self.bar is not None:
                self.bar.close()

    return EpochBar()
