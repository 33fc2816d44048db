"""rnnkit.apps.text: models (step == forward) and generation (seed, greedy, top-k/top-p, streaming)."""

import pytest
import torch

from rnnkit.apps.text.generate import generate, generate_stream, sample_next
from rnnkit.apps.text.model import RecurrentLM, TransformerLM, param_count, transformer_width
from rnnkit.apps.text.tokenizer import CharTokenizer
from rnnkit.errors import UserError

torch.set_num_threads(1)

TOK = CharTokenizer.train("abcdefghijklmnopqrstuvwxyz .,\n")


def _rnn(cell="lstm", seed=0):
    torch.manual_seed(seed)
    return RecurrentLM(TOK.vocab_size, cell, 16, 24, 2, output_dropout=0.3, weight_drop=0.2,
                       embedding_dropout=0.1).eval()


def _transformer(seed=0):
    torch.manual_seed(seed)
    return TransformerLM(TOK.vocab_size, 16, 1, 2, context=8, dropout=0.1).eval()


@pytest.mark.parametrize("make", [_rnn, lambda: _rnn("gru"), _transformer])
def test_step_equals_forward(make):
    model = make()
    x = torch.randint(1, TOK.vocab_size, (6, 3))
    with torch.no_grad():
        full = model(x)[0]
        state, steps = None, []
        for t in range(6):
            logits, state = model.step(x[t], state)
            steps.append(logits)
    torch.testing.assert_close(torch.stack(steps), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make", [_rnn, _transformer])
def test_fixed_seed_reproduces_and_seeds_differ(make):
    model = make()
    a = generate(model, TOK, "hello", max_tokens=40, temperature=1.5, seed=7)
    b = generate(make(), TOK, "hello", max_tokens=40, temperature=1.5, seed=7)
    c = generate(model, TOK, "hello", max_tokens=40, temperature=1.5, seed=8)
    assert len(a) == 40 and a == b and a != c


@pytest.mark.parametrize("make", [_rnn, _transformer])
def test_top_k_one_and_tiny_top_p_equal_greedy(make):
    model = make()
    greedy = generate(model, TOK, "abc", max_tokens=30, temperature=0)
    assert generate(model, TOK, "abc", max_tokens=30, temperature=1.7, top_k=1, seed=3) == greedy
    assert generate(model, TOK, "abc", max_tokens=30, temperature=1.7, top_p=1e-6, seed=4) == greedy
    # greedy is the argmax of the model's own next-token distribution after the prompt
    with torch.no_grad():
        logits = model(torch.tensor(TOK.encode("abc"))[:, None])[0][-1, 0]
    logits[0] = -torch.inf
    assert greedy[0] == TOK.decode([int(logits.argmax())])


def test_top_k_and_top_p_restrict_the_support():
    logits = torch.tensor([0.0, 5.0, 4.0, 1.0, 0.5])  # id 0 is <unk>, never sampled
    gen = torch.Generator().manual_seed(0)
    assert {sample_next(logits, 1.0, 2, 1.0, gen) for _ in range(200)} == {1, 2}
    # p(1) = 0.71, p(2) = 0.26: top_p 0.8 keeps exactly those two
    assert {sample_next(logits, 1.0, 0, 0.8, gen) for _ in range(200)} == {1, 2}
    assert {sample_next(logits, 1.0, 0, 0.5, gen) for _ in range(50)} == {1}
    assert 0 not in {sample_next(torch.zeros(5), 1.0, 0, 1.0, gen) for _ in range(200)}


def test_streaming_matches_non_streaming():
    model = _rnn()
    pieces = list(generate_stream(model, TOK, "the ", max_tokens=25, temperature=0.9, seed=5))
    assert len(pieces) == 25  # one piece per character token, as produced
    assert "".join(pieces) == generate(model, TOK, "the ", max_tokens=25, temperature=0.9, seed=5)


def test_prompt_outside_vocabulary():
    model = _rnn()
    with pytest.raises(UserError, match="outside the model's vocabulary: 'Z'"):
        generate(model, TOK, "aZb", max_tokens=3)
    assert len(generate(model, TOK, "aZb", max_tokens=3, on_unknown="skip")) == 3


def test_bad_sampling_options():
    with pytest.raises(UserError, match="top_p"):
        generate(_rnn(), TOK, "a", max_tokens=3, top_p=0)
    with pytest.raises(UserError, match="temperature"):
        generate(_rnn(), TOK, "a", max_tokens=3, temperature=-1)


def test_transformer_width_matches_parameter_count():
    rnn = RecurrentLM(85, "lstm", 128, 512, 1)
    d = transformer_width(param_count(rnn), 85, 2, 128, 4)
    t = TransformerLM(85, d, 2, 4, 128)
    assert abs(param_count(t) - param_count(rnn)) / param_count(rnn) < 0.05
