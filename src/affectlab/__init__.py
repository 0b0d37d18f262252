"""affectlab: the package the course's chapters grew (see notebooks/)."""
import warnings

# fastai still calls torch.jit.script, deprecated in recent torch; the warning is theirs, not the reader's.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated", category=FutureWarning)

__version__ = "0.1.0"
