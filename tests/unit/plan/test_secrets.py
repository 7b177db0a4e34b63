from __future__ import annotations

import pytest
from pydantic import BaseModel

from drplan.errors import SecretMissingError
from drplan.plan.secrets import Secret, SecretRef, find_refs, missing


class Holder(BaseModel):
    token: Secret


def test_reference_prints_as_itself_never_its_value() -> None:
    holder = Holder(token="${API_TOKEN}")
    assert str(holder.token) == repr(holder.token) == "${API_TOKEN}"
    assert holder.model_dump(mode="json") == {"token": "${API_TOKEN}"}
    assert "s3cr3t" not in repr(holder)


def test_resolves_from_the_environment() -> None:
    assert SecretRef("API_TOKEN").resolve({"API_TOKEN": "s3cr3t"}) == "s3cr3t"


def test_unset_variable_is_named_in_the_error() -> None:
    with pytest.raises(SecretMissingError, match="API_TOKEN is not set"):
        SecretRef("API_TOKEN").resolve({})


def test_a_literal_secret_is_refused_and_not_echoed() -> None:
    with pytest.raises(ValueError, match="use a reference") as info:
        Holder(token="xoxb-literal-token")
    assert "xoxb-literal-token" not in str(info.value).split("input_value")[0]


def test_find_and_check_every_reference() -> None:
    data = {"a": [Holder(token="${ONE}"), Holder(token="${TWO}")]}
    refs = list(find_refs(data))
    assert [(path, str(ref)) for path, ref in refs] == [
        (("a", 0, "token"), "${ONE}"),
        (("a", 1, "token"), "${TWO}"),
    ]
    assert missing([r for _, r in refs], {"ONE": "x", "TWO": ""}) == ["TWO"]
