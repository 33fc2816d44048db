"""Attention, the attention decoder, Seq2Seq and search (rnnkit.layers.attention / attention_decoder /
seq2seq / seq2seq_search)."""

import math

import pytest
import torch

from _translate_helpers import padded_source
from rnnkit.layers.attention import AdditiveAttention, MultiplicativeAttention, make_attention, masked_softmax
from rnnkit.layers.seq2seq import Seq2Seq
from rnnkit.layers.seq2seq_search import beam_search, greedy_search, length_penalty

torch.set_num_threads(1)
KINDS = ("additive", "general", "dot")
BOS, EOS, PAD = 2, 3, 0


@pytest.mark.parametrize("kind", KINDS)
def test_padded_positions_get_zero_weight_and_change_nothing(kind):
    torch.manual_seed(0)
    att = make_attention(kind, 8, 8)
    q, keys = torch.randn(3, 8), torch.randn(3, 5, 8)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    ctx, w = att(q, keys, mask)
    assert ctx.shape == (3, 8) and w.shape == (3, 5)
    assert torch.all(w[~mask] == 0)
    torch.testing.assert_close(w.sum(-1), torch.ones(3))
    other = keys.clone()
    other[~mask] = torch.randn(int((~mask).sum()), 8) * 100  # anything at the padding
    ctx2, w2 = att(q, other, mask)
    torch.testing.assert_close(ctx2, ctx)
    torch.testing.assert_close(w2, w)


def test_equations():
    torch.manual_seed(0)
    q, k = torch.randn(2, 4), torch.randn(2, 3, 6)
    add = AdditiveAttention(4, 6, 5)
    e = add.v(torch.tanh(add.query_proj(q)[:, None] + add.key_proj(k))).squeeze(-1)
    torch.testing.assert_close(add(q, k)[1], torch.softmax(e, -1))
    gen = MultiplicativeAttention(4, 6, "general")
    e = torch.einsum("bq,bsq->bs", q, k @ gen.key_proj.weight.t())
    torch.testing.assert_close(gen(q, k)[1], torch.softmax(e, -1))
    dot = MultiplicativeAttention(6, 6, "dot")
    q6 = torch.randn(2, 6)
    torch.testing.assert_close(dot(q6, k)[0], (torch.softmax(torch.einsum("bq,bsq->bs", q6, k), -1)[..., None]
                                               * k).sum(1))
    with pytest.raises(ValueError, match="query_size == key_size"):
        MultiplicativeAttention(4, 6, "dot")


def test_empty_source_row_is_zero_not_nan():
    w = masked_softmax(torch.randn(2, 3), torch.tensor([[True, False, False], [False, False, False]]))
    assert torch.equal(w[1], torch.zeros(3)) and w[0, 0] == 1


@pytest.mark.parametrize("cell", ["lstm", "gru", "mingru"])
@pytest.mark.parametrize("kind", KINDS)
def test_seq2seq_ignores_padded_source_tokens(cell, kind):
    torch.manual_seed(0)
    m = Seq2Seq(20, 8, 8, cell=cell, attention=kind, dropout=0.0).eval()
    src, lengths = padded_source()
    tgt = torch.randint(4, 20, (5, 4))
    logits = m(src, lengths, tgt)
    assert logits.shape == (5, 4, 20)
    other = src.clone()
    pad = torch.arange(src.shape[0])[:, None] >= lengths[None, :]
    other[pad] = torch.randint(4, 20, (int(pad.sum()),))
    torch.testing.assert_close(m(other, lengths, tgt), logits)


def test_step_matches_teacher_forcing_and_trains_with_input_feeding():
    torch.manual_seed(0)
    m = Seq2Seq(20, 8, 8, dropout=0.0)
    src, lengths = padded_source()
    tgt = torch.randint(4, 20, (5, 4))
    logits = m(src, lengths, tgt)
    logits.sum().backward()  # the stepped decoder trains (Python steps carry autograd)
    assert m.decoder.combine.weight.grad is not None and m.encoder.cells is not None
    m.eval()
    with torch.no_grad():  # the fast streaming path
        memory, state = m.encode(src, lengths)
        steps = []
        for t in range(5):
            out, state, _ = m.decoder.step(tgt[t], state, memory)
            steps.append(out)
    torch.testing.assert_close(torch.stack(steps), m(src, lengths, tgt).detach(), atol=1e-5, rtol=1e-4)


def test_tied_and_shared_embeddings():
    m = Seq2Seq(20, 8, 8)
    assert m.decoder.out.weight is m.tgt_embedding.weight and m.src_embedding is m.tgt_embedding
    untied = Seq2Seq(20, 8, 8, tie_embeddings=False, share_embeddings=False)
    assert untied.decoder.out.weight is not untied.tgt_embedding.weight
    assert untied.src_embedding is not untied.tgt_embedding


@pytest.mark.parametrize("cell", ["lstm", "gru", "mingru", "rnn_tanh"])
@pytest.mark.parametrize("kind", KINDS)
def test_beam_one_equals_greedy(cell, kind):
    torch.manual_seed(1)
    m = Seq2Seq(12, 8, 8, cell=cell, attention=kind).eval()
    src, lengths = padded_source(V=12)
    greedy = greedy_search(m, src, lengths, BOS, EOS, max_len_ratio=1.5)
    beam = beam_search(m, src, lengths, BOS, EOS, beam=1, max_len_ratio=1.5)
    assert [h[0].tokens for h in beam] == greedy


def test_beam_n_best_sorted_and_bounded():
    torch.manual_seed(2)
    m = Seq2Seq(12, 8, 8).eval()
    src, lengths = padded_source(V=12)
    out = beam_search(m, src, lengths, BOS, EOS, beam=4, n_best=4, alpha=0.6, max_len_ratio=2.0)
    assert len(out) == 4
    for b, hyps in enumerate(out):
        assert 1 <= len(hyps) <= 4
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        for h in hyps:
            assert len(h.tokens) <= math.ceil(2.0 * int(lengths[b])) + 5
            assert EOS not in h.tokens and BOS not in h.tokens
    # the best beam-4 hypothesis scores at least as well as greedy's (same length normalisation)
    g = beam_search(m, src, lengths, BOS, EOS, beam=1, alpha=0.6)
    for hb, hg in zip(out, g, strict=True):
        assert hb[0].score >= hg[0].score - 1e-5


def test_length_penalty_is_gnmt():
    assert length_penalty(1, 0.0) == 1.0
    assert length_penalty(7, 1.0) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        beam_search(Seq2Seq(12, 8, 8).eval(), *padded_source(V=12), BOS, EOS, beam=2, n_best=3)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_executors_translate_like_the_reference(cell):
    """The fast streaming step and fused encoder give the reference executor's translations."""
    torch.manual_seed(3)
    ref = Seq2Seq(12, 8, 8, cell=cell, backend="reference").eval()
    fast = Seq2Seq(12, 8, 8, cell=cell, backend="auto").eval()
    fast.load_state_dict(ref.state_dict())
    src, lengths = padded_source(V=12)
    assert greedy_search(fast, src, lengths, BOS, EOS) == greedy_search(ref, src, lengths, BOS, EOS)
    a = beam_search(fast, src, lengths, BOS, EOS, beam=3, n_best=3)
    b = beam_search(ref, src, lengths, BOS, EOS, beam=3, n_best=3)
    assert [[h.tokens for h in x] for x in a] == [[h.tokens for h in x] for x in b]


@pytest.mark.parametrize("kind", KINDS)
def test_many_queries_attend_as_one_query_each(kind):
    """Queries (B, T, Q): position t's context and weights are those of query t alone (same mask)."""
    torch.manual_seed(0)
    att = make_attention(kind, 8, 8)
    queries, keys = torch.randn(3, 4, 8), torch.randn(3, 5, 8)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    ctx, w = att(queries, keys, mask)
    assert ctx.shape == (3, 4, 8) and w.shape == (3, 4, 5) and torch.all(w[2] == 0)
    for t in range(4):
        c1, w1 = att(queries[:, t], keys, mask)
        torch.testing.assert_close(ctx[:, t], c1)
        torch.testing.assert_close(w[:, t], w1)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cell", ["lstm", "gru", "mingru"])
def test_without_input_feeding_one_call_equals_the_steps(cell, kind):
    """input_feeding=False: teacher forcing in one recurrent call gives the logits of stepping, and the
    gradients of the step loop (scheduled sampling keeps the loop)."""
    torch.manual_seed(0)
    m = Seq2Seq(20, 8, 8, cell=cell, attention=kind, dropout=0.0, decoder_layers=2, input_feeding=False)
    assert m.decoder.rnn.input_size == 8 and m.get_config()["input_feeding"] is False
    src, lengths = padded_source()
    tgt = torch.randint(4, 20, (5, 4))
    memory, state = m.encode(src, lengths)
    full, final = m.decoder(tgt, state, memory)
    steps, s = [], state
    for t in range(5):
        out, s, _ = m.decoder.step(tgt[t], s, memory)
        steps.append(out)
    torch.testing.assert_close(full, torch.stack(steps), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(final.feed, s.feed, atol=1e-6, rtol=1e-5)
    g_full = torch.autograd.grad(full.square().sum(), list(m.parameters()), allow_unused=True, retain_graph=True)
    g_step = torch.autograd.grad(torch.stack(steps).square().sum(), list(m.parameters()), allow_unused=True)
    for a, b in zip(g_full, g_step, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    m.eval()
    with torch.no_grad():  # the fast streaming path decodes the same model
        memory, s = m.encode(src, lengths)
        fast = []
        for t in range(5):
            out, s, _ = m.decoder.step(tgt[t], s, memory)
            fast.append(out)
    torch.testing.assert_close(torch.stack(fast), full.detach(), atol=1e-5, rtol=1e-4)
