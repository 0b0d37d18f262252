"""Data: the synthetic world (``synth``), readers of the real formats (``abaw``, ``static``, ``hume``),
cleaning and balancing (``clean``) and fastai DataLoaders (``loaders``). Import the submodules directly;
this package imports nothing heavy on its own."""
