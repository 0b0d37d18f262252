"""affectlab: the package the course's chapters grew (see notebooks/)."""
import warnings

# Library warnings that are not the reader's business: fastai still calls torch.jit.script (deprecated in
# recent torch), and tqdm.auto asks for ipywidgets in Jupyter (the course uses text progress bars).
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated", category=FutureWarning)
warnings.filterwarnings("ignore", message=r"IProgress not found")

__version__ = "0.1.0"
