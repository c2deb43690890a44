"""Lossless compression with an integer discrete flow and an ANS entropy coder.

- ``integer_flow``: the model, a bijection from integer images to integer latents;
- ``prior``: the discretized logistic mixture over each latent symbol;
- ``coder``: latents <-> ANS words (constriction), the probabilities computed identically on
  both sides;
- ``container``: the ``.inv`` file format (header, independent chunks, checksums);
- ``images``: the inputs it reads and restores (IDX, .npy, PNG, a folder of PNGs);
- ``compressor``: the pieces together: pixels <-> a ``.inv`` stream.
"""

from .coder import CodingError, decode_images, encode_images
from .compressor import Compressor, StreamError
from .container import FormatError, Header
from .images import ImageInputError, SourceImages, read_images, write_images
from .integer_flow import IntegerCoupling, IntegerFlow, round_ste, squeeze2d, unsqueeze2d

__all__ = ["CodingError", "Compressor", "FormatError", "Header", "ImageInputError",
           "IntegerCoupling", "IntegerFlow", "SourceImages", "StreamError", "decode_images",
           "encode_images", "read_images", "round_ste", "squeeze2d", "unsqueeze2d",
           "write_images"]
