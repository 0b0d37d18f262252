"""affectlab: the package the course's chapters grew (see notebooks/)."""

__version__ = "0.1.0"
