"""The text Python API (issue #25): ``TextModel`` behaves as ``rnnkit text`` with the same defaults, so the
same model trained through the CLI and through Python has the same weights and samples the same text."""

import pytest
from safetensors.torch import load_file

from rnnkit.apps.text import TextModel
from rnnkit.cli import main
from rnnkit.errors import UserError

SENTENCE = "the cat sat on the mat. "
#: tiny and short, identical on both sides; everything else is the app's default
OPTIONS = {"hidden": 16, "embedding_size": 8, "bptt": 16, "batch_size": 4, "max_steps": 30, "seed": 2,
           "tensorboard": False, "plots": False}
FLAGS = ["--hidden", "16", "--embedding-size", "8", "--bptt", "16", "--batch-size", "4", "--max-steps", "30",
         "--seed", "2", "--set", "tensorboard=false", "--set", "plots=false", "-q"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    for i in range(3):
        (folder / f"part{i}.txt").write_text(f"part {i}.\n" + SENTENCE * (40 + i))
    return folder


def test_cli_and_python_train_the_same_model(tmp_path, corpus):
    assert main(["text", "train", str(corpus), "--out", str(tmp_path / "cli"), *FLAGS]) == 0
    model = TextModel(**OPTIONS).fit(corpus, run_dir=tmp_path / "py")
    cli_weights = load_file(tmp_path / "cli" / "model.safetensors")
    py_weights = load_file(tmp_path / "py" / "model.safetensors")
    assert cli_weights.keys() == py_weights.keys()
    for name, tensor in cli_weights.items():
        assert (py_weights[name] == tensor).all(), name

    cli_model = TextModel.load(tmp_path / "cli")
    assert model.generate("the cat", max_tokens=40, seed=3) == cli_model.generate("the cat", max_tokens=40, seed=3)
    report = model.evaluate()  # the corpus lies outside the run directory: fit() remembers it
    assert report["source"] == "test split" and report["bits_per_char"] > 0


def test_fit_on_a_string_and_save(tmp_path):
    model = TextModel(**{**OPTIONS, "max_steps": 5}).fit(text=SENTENCE * 120, run_dir=tmp_path / "s")
    assert isinstance(model.generate(max_tokens=10), str)
    copy = TextModel.load(model.save(tmp_path / "copy"))  # the text inside the run dir travels with it
    assert copy.evaluate(split="valid")["tokens"] > 0


def test_mistakes_are_one_line_user_errors(tmp_path, corpus):
    with pytest.raises(UserError, match="not trained"):
        TextModel().generate()
    with pytest.raises(UserError, match="not both"):
        TextModel().fit(corpus, text="x")
    with pytest.raises(UserError, match="hiden"):
        TextModel(hiden=8).fit(corpus, run_dir=tmp_path / "typo")
    model = TextModel(**{**OPTIONS, "max_steps": 2}).fit(corpus, run_dir=tmp_path / "ok")
    with pytest.raises(UserError, match="temperature"):
        model.generate(temperature=float("nan"))
