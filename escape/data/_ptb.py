"""Word-level Penn TreeBank (Mikolov's preprocessed ``ptb.{train,valid,test}.txt``) read from a user's directory,
and the column batches and BPTT windows of language modelling.

Each line's words followed by an ``<eos>`` token, as the PyTorch ``word_language_model`` example reads the
corpus; the vocabulary is the training file's, numbered in order of first appearance. The preprocessed PTB
marks rare words ``<unk>``, so every word of the validation and test files is in the training vocabulary; a
word that is not is an error naming the file and line (the files are not the standard ones).
"""

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

SPLITS = ("train", "valid", "test")
EOS = "<eos>"


class Corpus(NamedTuple):
    """A tokenised corpus.

    Attributes:
        vocabulary: the words, index = token id (``<eos>`` among them).
        train, valid, test: ``int32`` token ids of each split, in file order.
    """

    vocabulary: tuple[str, ...]
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray


def _read_lines(path: Path) -> list[list[str]]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"ptb: {path} not found (the directory must hold ptb.train.txt, ptb.valid.txt and "
                         "ptb.test.txt)") from None
    except OSError as e:
        raise ValueError(f"ptb: cannot read {path}: {e.strerror or type(e).__name__}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ValueError(f"ptb: {path} is not UTF-8 text (line {line}, byte {e.start})") from None
    lines = [line.split() + [EOS] for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"ptb: {path} holds no words")
    return lines


def load_ptb(data_dir) -> Corpus:
    """Read ``ptb.train.txt``, ``ptb.valid.txt`` and ``ptb.test.txt`` from ``data_dir``.

    Raises:
        ValueError: one line naming the directory or the file: missing, unreadable, not UTF-8, empty, or (valid
            and test) a word absent from the training vocabulary, with its line number.
    """
    if data_dir is None:
        raise ValueError("ptb: give the directory of ptb.train.txt, ptb.valid.txt and ptb.test.txt (data_dir)")
    root = Path(os.path.expanduser(str(data_dir)))
    if not root.is_dir():
        raise ValueError(f"ptb: data_dir {root} is not a directory")
    index: dict[str, int] = {}
    splits = {}
    for split in SPLITS:
        path = root / f"ptb.{split}.txt"
        lines = _read_lines(path)
        ids = []
        for number, words in enumerate(lines, start=1):
            for w in words:
                if split == "train":
                    ids.append(index.setdefault(w, len(index)))
                elif w in index:
                    ids.append(index[w])
                else:
                    raise ValueError(f"ptb: {path} line {number}: word {w!r} is not in the training vocabulary "
                                     "(the standard files mark rare words <unk>)")
        splits[split] = np.asarray(ids, np.int32)
    return Corpus(tuple(index), splits["train"], splits["valid"], splits["test"])


def batchify(tokens: np.ndarray, batch_size: int) -> np.ndarray:
    """``(batch_size, T)``: the stream cut into ``batch_size`` consecutive columns of equal length ``T``, the
    remainder dropped (row ``b`` continues where row ``b`` of the previous window stopped)."""
    n = len(tokens) // batch_size
    if n < 2:
        raise ValueError(f"ptb: {len(tokens)} tokens make no two steps of {batch_size} streams")
    return np.asarray(tokens[: n * batch_size], np.int32).reshape(batch_size, n)


def bptt_windows(streams: np.ndarray, bptt: int) -> list[tuple[int, int]]:
    """``(start, length)`` of each BPTT window over ``(batch, T)`` streams: inputs ``[start, start + length)``,
    targets shifted by one; the last window may be shorter."""
    T = streams.shape[1] - 1
    return [(s, min(bptt, T - s)) for s in range(0, T, bptt)]
