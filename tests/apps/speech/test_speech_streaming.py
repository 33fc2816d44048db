"""Streaming: chunks of any size give the emissions of the whole-utterance forward of the same
unidirectional model; padded batches equal single utterances; the Transformer baseline's size (issue #16)."""

import pytest
import torch

from rnnkit.apps.speech.model import RecurrentCTC
from rnnkit.apps.speech.streaming import StreamingRecognizer
from rnnkit.apps.speech.transformer import TransformerCTC, matched_width, param_count

torch.set_num_threads(1)


def _streaming_model(cell: str = "lstm", layers: int = 2) -> RecurrentCTC:
    torch.manual_seed(0)
    m = RecurrentCTC(cell, hidden=24, layers=layers, bidirectional=False, channels=6, n_mels=24, dropout=0.0).eval()
    m.set_statistics(torch.randn(24) - 5, torch.rand(24) + 0.5)
    with torch.no_grad():  # a peaky output layer, so that greedy emissions are not all blanks
        m.out.weight.mul_(20)
    return m


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("chunk", [1, 37, 160, 320, 999, 24000])
def test_stream_chunks_equal_whole_utterance(cell, chunk):
    m = _streaming_model(cell)
    g = torch.Generator().manual_seed(1)
    wave = torch.randn(12345, generator=g) * 0.1
    with torch.no_grad():
        whole = m.transcribe_logprobs(wave)
    rec = StreamingRecognizer(m)
    got = torch.cat([rec.accept(wave[i:i + chunk]) for i in range(0, wave.numel(), chunk)])
    assert got.shape == whole.shape
    torch.testing.assert_close(got, whole, atol=1e-5, rtol=1e-5)
    emitted = [t for t, _ in rec.tokens]
    from rnnkit.apps.speech.ctc_decode import greedy_with_frames

    assert rec.tokens == greedy_with_frames(whole)
    assert len(emitted) > 0  # the comparison covers emissions, not only blanks


def test_stream_reset_and_uneven_chunks():
    m = _streaming_model()
    wave = torch.randn(8000) * 0.1
    sizes = [1, 2, 399, 1, 160, 161, 3000, 5]
    rec = StreamingRecognizer(m)
    outs, i, k = [], 0, 0
    while i < wave.numel():
        n = sizes[k % len(sizes)]
        outs.append(rec.accept(wave[i:i + n]))
        i, k = i + n, k + 1
    with torch.no_grad():
        torch.testing.assert_close(torch.cat(outs), m.transcribe_logprobs(wave), atol=1e-5, rtol=1e-5)
    rec.reset()
    assert rec.frames == 0 and rec.partial() == ""


def test_offline_model_refuses_to_stream():
    m = RecurrentCTC(hidden=8, layers=1, bidirectional=True, channels=4, n_mels=16)
    with pytest.raises(ValueError, match="unidirectional"):
        StreamingRecognizer(m)
    with pytest.raises(ValueError, match="norm='global'"):
        RecurrentCTC(hidden=8, layers=1, bidirectional=False, norm="utterance")


@pytest.mark.parametrize("bidirectional", [True, False])
def test_padded_batch_equals_single_utterances(bidirectional):
    torch.manual_seed(0)
    m = RecurrentCTC("gru", hidden=16, layers=2, bidirectional=bidirectional, channels=4, n_mels=16,
                     dropout=0.0).eval()
    feats = torch.randn(3, 41, 16)
    lengths = torch.tensor([41, 30, 7])
    with torch.no_grad():
        out, out_len = m(feats, lengths)
        assert out_len.tolist() == [11, 8, 2]
        for b in range(3):
            alone, _ = m(feats[b:b + 1, :lengths[b]], lengths[b:b + 1])
            torch.testing.assert_close(out[b, :out_len[b]], alone[0], atol=1e-5, rtol=1e-5)


def test_transformer_baseline_matches_the_parameter_count():
    rnn = RecurrentCTC(hidden=64, layers=2, bidirectional=True, channels=8, n_mels=24)
    target = param_count(rnn)
    d, ff = matched_width(target, 4, 2, 8, 24)
    tr = TransformerCTC(d, 4, ff, 2, 8, 24)
    assert abs(param_count(tr) - target) / target < 0.05
    feats = torch.randn(2, 33, 24)
    out, lengths = tr.eval()(feats, torch.tensor([33, 20]))
    assert out.shape == (2, 9, 29) and lengths.tolist() == [9, 5]


@pytest.mark.parametrize("change", [{"layers": 10**6}, {"hidden": 0}, {"alphabet": "aa"}, {"norm": "x"},
                                    {"n_mels": True}, {"hop": 10**9}])
def test_untrusted_configs_are_refused(tmp_path, change):
    import json

    import rnnkit
    from rnnkit.errors import UserError

    m = RecurrentCTC(hidden=8, layers=1, bidirectional=False, channels=2, n_mels=16)
    rnnkit.save(m, tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["model"]["config"].update(change)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="cannot build model"):
        rnnkit.load(tmp_path)
