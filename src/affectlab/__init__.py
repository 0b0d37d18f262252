"""affectlab: the package the course's chapters grew (see notebooks/)."""
import warnings

# Library warnings that are not the reader's business: fastai still calls torch.jit.script (deprecated in
# recent torch), and tqdm.auto asks for ipywidgets in Jupyter (the course uses text progress bars).
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated", category=FutureWarning)
warnings.filterwarnings("ignore", message=r"IProgress not found")
# torch.from_numpy on pandas' read-only views: the course never writes through those tensors.
warnings.filterwarnings("ignore", message=r"The given NumPy array is not writable")

__version__ = "0.1.0"
