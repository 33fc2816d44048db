"""``rnnkit classify`` data: the long CSV and .ts readers (variable length, multivariate, missing
values) and their one-line errors; the stratified validation split."""

from pathlib import Path

import numpy as np
import pytest

from rnnkit.apps.classify.cases import class_order, encode_labels, pad
from rnnkit.apps.classify.data import read_cases
from rnnkit.apps.classify.split import stratified_split
from rnnkit.errors import UserError

HEADER = "case_id,split,label,t,dim_0,dim_1\n"


def write(tmp_path: Path, text: str, name: str = "d.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_long_csv_variable_length_multivariate(tmp_path):
    # case 7 first, its rows out of order; case 3 is shorter; t need not start at 0
    text = HEADER + ("7,train,b,2,5,50\n7,train,b,0,3,30\n7,train,b,1,4,40\n"
                     "3,test,a,1,1,10\n3,test,a,2,2,20\n")
    cases = read_cases(write(tmp_path, text))
    assert cases.ids == ["7", "3"] and cases.labels == ["b", "a"] and cases.splits == ["train", "test"]
    assert cases.dim_names == ["dim_0", "dim_1"]
    np.testing.assert_array_equal(cases.values[0], [[3, 30], [4, 40], [5, 50]])
    np.testing.assert_array_equal(cases.lengths(), [3, 2])
    x, lengths = pad(cases)
    assert x.shape == (2, 3, 2) and x[1, 2].tolist() == [0, 0] and lengths.tolist() == [3, 2]
    assert read_cases(write(tmp_path, text)).split("test").ids == ["3"]


def test_missing_values_interpolated_or_refused(tmp_path):
    text = HEADER + "0,train,a,0,,1\n0,train,a,1,2,\n0,train,a,2,4,3\n0,train,a,3,?,5\n"
    cases = read_cases(write(tmp_path, text))
    np.testing.assert_allclose(cases.values[0], [[2, 1], [2, 2], [4, 3], [4, 5]])
    with pytest.raises(UserError, match=r"case '0', dim_0: missing value at step 0"):
        read_cases(write(tmp_path, text), missing="error")


@pytest.mark.parametrize(("text", "message"), [
    ("case_id,label,dim_0\n0,a,1\n", "no 't' column"),
    ("case_id,split,label,t\n0,train,a,0\n", "no value columns"),
    (HEADER, "no rows"),
    ("", "empty"),
    (HEADER + "0,train,a,0,1,x\n", r"line 2, column 'dim_1': not a number"),
    (HEADER + "0,train,a,0,1,2\n0,train,a,0,1,2\n", "appears twice"),
    (HEADER + "0,train,a,0,1,2\n0,train,a,2,1,2\n", "t jumps from 0 to 2"),
    (HEADER + "0,train,a,0,1,2\n0,train,b,1,1,2\n", "more than one label"),
    (HEADER + "0,valid,a,0,1,2\n", "split must be train or test"),
    (HEADER + "0,train,a,0,,\n0,train,a,1,,\n", "every value is missing"),
    (HEADER + "0,train,a,0.5,1,2\n", "not an integer step"),
    (HEADER + "0,train,a,0,inf,2\n", "infinite"),
])
def test_bad_csv_one_line_error(tmp_path, text, message):
    with pytest.raises(UserError, match=message) as err:
        read_cases(write(tmp_path, text))
    assert "\n" not in str(err.value)


TS = """# a comment
@problemName toy
@timeStamps false
@missing true
@univariate false
@dimensions 2
@equalLength false
@classLabel true up down
@data
1,2,3:4,5,6:up
1,?,3,4:5,6,7,8:down
"""


def test_ts_multivariate_variable_length_with_missing(tmp_path):
    cases = read_cases(write(tmp_path, TS, "toy_TRAIN.ts"))
    assert cases.labels == ["up", "down"] and cases.splits is None and cases.n_dims == 2
    np.testing.assert_array_equal(cases.lengths(), [3, 4])
    np.testing.assert_allclose(cases.values[1][:, 0], [1, 2, 3, 4])  # '?' interpolated
    np.testing.assert_allclose(cases.values[0][:, 1], [4, 5, 6])


@pytest.mark.parametrize(("text", "message"), [
    (TS.replace("@data\n", ""), "data before @data"),
    (TS.split("@data")[0], "no @data line"),
    (TS.replace("@timeStamps false", "@timeStamps true"), "not supported"),
    (TS.replace("@univariate false", "@univariate maybe"), "must be true or false"),
    (TS.replace("@classLabel true up down", "@classLabel true"), "lists no class labels"),
    (TS.replace("@dimensions 2", "@dimensions two"), "must be an integer"),
    (TS.replace("@problemName toy", "@colour blue"), "unknown header key"),
    (TS.replace(":up", ":sideways"), "not declared"),
    (TS + "1,2:up\n", "1 dimensions, earlier cases have 2"),
    (TS + "1,2:3:up\n", "different lengths"),
    (TS + "1,a,3:4,5,6:up\n", "value 2 is not a number"),
    (TS + "::up\n", "no values"),
    (TS.replace("@dimensions 2", "@dimensions 3"), "@dimensions 3"),
    ("1,2,3:up\n", "data before @data"),
])
def test_bad_ts_one_line_error(tmp_path, text, message):
    with pytest.raises(UserError, match=message) as err:
        read_cases(write(tmp_path, text, "bad.ts"))
    assert "\n" not in str(err.value)


def test_missing_file_and_unknown_policy(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_cases(tmp_path / "nope.csv")
    with pytest.raises(UserError, match="missing-value policy"):
        read_cases(write(tmp_path, HEADER + "0,train,a,0,1,2\n"), missing="zero")


def test_label_encoding_and_class_order():
    assert class_order(["10", "2", "1"]) == ["1", "2", "10"]  # numeric labels in numeric order
    assert class_order(["b", "a", "B"]) == ["B", "a", "b"]
    np.testing.assert_array_equal(encode_labels(["b", "a"], ["a", "b"], "f"), [1, 0])
    with pytest.raises(UserError, match=r"label.*'c'.*not among"):
        encode_labels(["c"], ["a", "b"], "f")


def test_stratified_split_keeps_every_class():
    y = np.array([0] * 10 + [1] * 5 + [2] * 2 + [3])
    tr, va = stratified_split(y, 0.2, seed=0)
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(len(y)))
    assert np.bincount(y[va], minlength=4).tolist() == [2, 1, 1, 0]  # a single-case class stays in training
    again = stratified_split(y, 0.2, seed=0)
    assert again[1].tolist() == va.tolist()
