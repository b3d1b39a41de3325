"""What `python -m clients.score --data PATH` scores, with true labels when the input has them.

PATH is
  - a labelled set (scratchnet.datasets): an IDX folder of the four MNIST-named files, or an npz
    file; `--split` picks its test or training half. None: the bundled MNIST;
  - an image file: a .npy array, an IDX image file or a photo (clients.images.load_images);
  - a folder of image files, one image each (photos, .npy or IDX), read in name order with
    clients.images.load_images, so photos get the same preprocessing as in clients.predict.

Image ids are positions: in the split, in the file, or in the folder's sorted list of files.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from clients.client import ModelInfo
from clients.images import load_images
from scratchnet.datasets import Images, load_dataset
from scratchnet.errors import ScratchnetError

__all__ = ["DEFAULT_SPLIT", "Kind", "Source", "check_fits", "load_folder_images", "open_source"]

DEFAULT_SPLIT = "test"
# The stems of a labelled IDX folder's files: a folder holding any of them is a labelled set.
_IDX_SET_STEMS = ("train-images", "train-labels", "t10k-images", "t10k-labels")


Kind = Literal["set", "file", "folder"]


@dataclass(frozen=True)
class Source:
    """Images to score: a labelled set (read up front), an image file or a folder of them."""

    kind: Kind
    name: str
    """How reports name it: the data set's name, or the path."""
    split: str | None = None
    """test or train for a labelled set, else None."""
    checksum: str | None = None
    """The labelled set's checksum (scratchnet.datasets), else None."""
    images: Images | None = None
    """A labelled set's images [N, H, W]; files are read by `load`."""
    labels: NDArray[np.int64] | None = None
    """A labelled set's true labels, else None."""
    path: Path | None = None
    """The image file or folder."""
    files: tuple[Path, ...] = ()
    """A folder's image files, one image each, in name order (the image ids)."""
    preprocess: bool = True
    """Whether photos are put in MNIST's form (clients.images.mnist_form)."""

    def load(self, image_shape: tuple[int, int]) -> Images:
        """The images [N, H, W], reading a file or folder now, for a model of that H x W."""
        if self.images is not None:
            return self.images
        if self.kind == "folder":
            return load_folder_images(self.files, image_shape, self.preprocess)
        assert self.path is not None
        return load_images(self.path, image_shape, preprocess=self.preprocess)


def open_source(
    path: str | os.PathLike[str] | None, split: str | None, preprocess: bool = True
) -> Source:
    """The Source `path` names; a labelled set is read now, files and folders by Source.load."""
    try:
        return _open_source(path, split, preprocess)
    except OSError as error:
        # Looking into a folder that may not be listed or searched (its permissions): pathlib
        # raises PermissionError rather than answering "no such file".
        where = error.filename or path
        raise ScratchnetError(
            f"data {path}: cannot read {where} ({error.strerror or error}), expected a readable "
            "labelled set, image file or folder of image files"
        ) from None


def _open_source(
    path: str | os.PathLike[str] | None, split: str | None, preprocess: bool
) -> Source:
    if path is None or _is_labelled_set(Path(path)):
        dataset = load_dataset(path)
        split = split or DEFAULT_SPLIT
        images, labels = (
            (dataset.train_images, dataset.train_labels)
            if split == "train"
            else (dataset.test_images, dataset.test_labels)
        )
        return Source("set", dataset.name, split, dataset.checksum, images, labels)
    source = Path(path)
    if not source.exists():
        raise ScratchnetError(
            f"data {source} not found: expected an IDX folder or npz file (a labelled set), an "
            "image file or a folder of image files"
        )
    if split is not None:
        raise ScratchnetError(
            f"--split {split}: {source} holds images without labels, which have no split; "
            "--split applies to a labelled set (an IDX folder or an npz file)"
        )
    if source.is_file():
        return Source("file", str(source), path=source, preprocess=preprocess)
    files = tuple(sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith(".")))
    if not files:
        raise ScratchnetError(
            f"{source} is a folder without image files: expected photos, .npy or IDX files, "
            "or the IDX files of a labelled set"
        )
    return Source("folder", str(source), path=source, files=files, preprocess=preprocess)


def load_folder_images(
    files: tuple[Path, ...], image_shape: tuple[int, int], preprocess: bool = True
) -> Images:
    """One uint8 image [H, W] from each file, stacked [N, H, W]; photos in MNIST's form unless
    `preprocess` is False."""
    images = np.empty((len(files), *image_shape), dtype=np.uint8)
    for index, file in enumerate(files):
        image = load_images(file, image_shape, preprocess=preprocess)
        if len(image) != 1 or image.dtype != np.uint8:
            raise ScratchnetError(
                f"{file}: {len(image)} {image.dtype} images; in a folder each file must be one "
                "uint8 image (a photo, or a .npy or IDX file of one image); score a file of "
                "several images with --data FILE"
            )
        images[index] = image[0]
    return images


def check_fits(images: Images, labels: NDArray[np.int64] | None, info: ModelInfo) -> None:
    """Fail before any scoring if the images or labels do not fit the model."""
    if images.shape[1:] != info.image_shape:
        raise ScratchnetError(
            f"the images are {_size(images.shape[1:])}, but model '{info.name}' expects "
            f"{_size(info.image_shape)}"
        )
    if labels is not None and labels.max() >= info.num_classes:
        raise ScratchnetError(
            f"the labels go up to {labels.max()}, but model '{info.name}' has only "
            f"{info.num_classes} classes"
        )


def _is_labelled_set(path: Path) -> bool:
    if path.is_dir():
        return any(p.name.startswith(_IDX_SET_STEMS) for p in path.iterdir())
    # Any zip file, as scratchnet.datasets reads it: numpy writes npz files as zip archives.
    return path.suffix.lower() == ".npz" or (path.is_file() and zipfile.is_zipfile(path))


def _size(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))
