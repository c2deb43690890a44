"""``invertible train`` under torchrun, dumping every rank's final weights (a test helper).

Usage: ``torchrun ... tests/ddp_worker.py DUMP_DIR train ARGS...``. Rank r writes
``DUMP_DIR/rank<r>.safetensors`` with its model (``model.*``) and EMA (``ema.*``) weights
after ``fit``: the product has no such switch, the test patches it in here.
"""

import sys
from pathlib import Path

from safetensors.torch import save_file

from invertible.cli.main import main
from invertible.training import loop

_fit = loop.Trainer.fit


def _fit_and_dump(self):
    summary = _fit(self)
    state = {f"model.{k}": v for k, v in self.objective.state_dict().items()}
    if self.ema is not None:
        state.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
    state = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    save_file(state, str(Path(sys.argv[1]) / f"rank{self.dist.rank}.safetensors"))
    return summary


loop.Trainer.fit = _fit_and_dump
sys.exit(main(sys.argv[2:]))
