"""``python -m affectlab.fit`` killed mid-epoch, for ``test_fit_distributed`` to launch under torchrun: every rank
raises KeyboardInterrupt (which fastai does not catch) as the second training batch of epoch 1 starts, after
epoch 0 was checkpointed. Arguments: the command's."""
import sys

from fastai.callback.core import Callback

from affectlab import fit


class KillMidEpoch(Callback):
    order = 99

    def before_batch(self):
        if self.training and self.epoch == 1 and self.iter == 1:
            raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(fit.run(sys.argv[1:], extra_cbs=[KillMidEpoch()]))
