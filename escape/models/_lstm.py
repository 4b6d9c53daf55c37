"""The LSTM language model of the Adai paper's Penn TreeBank experiment (App. D.2): an embedding, stacked LSTM
layers and a linear decoder, with dropout as the PyTorch ``word_language_model`` example has it."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray


class LSTMLanguageModel(eqx.Module):
    """``tokens (T,) -> logits (T, vocab)`` for one stream, carrying the LSTM state ``(h, c)`` of every layer.

    Dropout of rate ``dropout`` on the embeddings, between the LSTM layers and on the last layer's outputs (the
    PyTorch example's ``drop(encoder(x))``, ``nn.LSTM(dropout=...)``, ``drop(output)``). Initialisation: the
    embedding and decoder weights uniform in ``[-0.1, 0.1]``, decoder bias 0 (the example's ``init_weights``);
    the LSTM cells Equinox's default, uniform in ``[-1/sqrt(H), 1/sqrt(H)]`` (PyTorch's ``nn.LSTM`` default).

    Parameters: ``V E + sum_l 4H (in_l + H + 1) + H V + V`` with ``in_1 = E``, ``in_l = H`` above: one bias per
    gate where PyTorch keeps two (``b_ih + b_hh``, the same function with ``4H`` more parameters per layer). The
    paper's model (``V = 10000``, ``E = H = 512``, two layers) has 14,448,400 (PyTorch: 14,452,496).
    """

    embedding: eqx.nn.Embedding
    cells: tuple[eqx.nn.LSTMCell, ...]
    decoder: eqx.nn.Linear
    dropout: float = eqx.field(static=True)

    def __init__(self, vocab_size: int, *, key: PRNGKeyArray, embed: int = 512, hidden: int = 512,
                 layers: int = 2, dropout: float = 0.5):
        for name, value, low in (("vocab_size", vocab_size, 2), ("embed", embed, 1), ("hidden", hidden, 1),
                                 ("layers", layers, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"lstm: {name} must be an integer >= {low}, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"lstm: dropout must be in [0, 1), got {dropout!r}")
        ke, kd, *kc = jax.random.split(key, 2 + layers)
        weight = jax.random.uniform(ke, (vocab_size, embed), minval=-0.1, maxval=0.1)
        self.embedding = eqx.nn.Embedding(weight=weight)
        self.cells = tuple(eqx.nn.LSTMCell(embed if i == 0 else hidden, hidden, key=k) for i, k in enumerate(kc))
        decoder = eqx.nn.Linear(hidden, vocab_size, key=kd)
        decoder = eqx.tree_at(lambda d: d.weight, decoder,
                              jax.random.uniform(kd, (vocab_size, hidden), minval=-0.1, maxval=0.1))
        self.decoder = eqx.tree_at(lambda d: d.bias, decoder, jnp.zeros(vocab_size))
        self.dropout = float(dropout)

    def initial_state(self) -> tuple[tuple[Array, Array], ...]:
        """Zero ``(h, c)`` for every layer."""
        h = self.cells[0].hidden_size
        return tuple((jnp.zeros(h), jnp.zeros(h)) for _ in self.cells)

    def _drop(self, x, key, inference):
        if inference or self.dropout == 0.0:
            return x
        keep = jax.random.bernoulli(key, 1.0 - self.dropout, x.shape)
        return jnp.where(keep, x / (1.0 - self.dropout), 0.0)

    def __call__(self, tokens: Int[Array, " T"], state, *, key: PRNGKeyArray | None = None,
                 inference: bool = False) -> tuple[Float[Array, "T vocab"], tuple]:
        """Logits of the next token after each of ``tokens``, and the state after the last one."""
        if not inference and self.dropout > 0 and key is None:
            raise ValueError("lstm: training mode with dropout needs a key (or inference=True)")
        keys = jax.random.split(key, len(self.cells) + 1) if key is not None else [None] * (len(self.cells) + 1)
        x = jax.vmap(self.embedding)(tokens)
        new_state = []
        for i, (cell, carry) in enumerate(zip(self.cells, state)):
            x = self._drop(x, keys[i], inference)  # the embeddings, then between layers

            def step(c, xt, cell=cell):
                h, cc = cell(xt, c)
                return (h, cc), h

            carry, x = jax.lax.scan(step, carry, x)
            new_state.append(carry)
        x = self._drop(x, keys[-1], inference)
        return jax.vmap(self.decoder)(x), tuple(new_state)


def lstm_parameter_count(vocab_size: int, embed: int, hidden: int, layers: int) -> int:
    """The formula of [`escape.models.LSTMLanguageModel`][]'s docstring."""
    cells = sum(4 * hidden * ((embed if i == 0 else hidden) + hidden + 1) for i in range(layers))
    return vocab_size * embed + cells + hidden * vocab_size + vocab_size
