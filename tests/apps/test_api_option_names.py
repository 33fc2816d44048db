"""Every app's Python API refuses an unknown option name when the model is made (issue #25: one schema,
"did you mean"), with the names the command line and config files take, training options included."""

from __future__ import annotations

import pytest

from rnnkit.apps.classify import ClassifyModel
from rnnkit.apps.forecast import ForecastModel
from rnnkit.apps.speech import SpeechModel
from rnnkit.apps.text import TextModel
from rnnkit.apps.translate import TranslateModel
from rnnkit.errors import UserError

APIS = [ClassifyModel, ForecastModel, SpeechModel, TextModel, TranslateModel]


@pytest.mark.parametrize("api", APIS, ids=lambda c: c.__name__)
def test_unknown_option_is_refused_at_construction(api):
    with pytest.raises(UserError, match=rf"^{api.__name__}\(\.\.\.\): unknown option 'hiden' \(did you mean hidden"):
        api(hiden=8)
    with pytest.raises(UserError, match="max_epoch"):
        api(max_epoch=3)
    model = api(hidden=8, max_epochs=1, seed=0, threads=1)  # an app option and training options
    assert model.options["hidden"] == 8
