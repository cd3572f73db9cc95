"""read_attribute: the quick getattr for litellm's pydantic answers gives what getattr gives."""

from __future__ import annotations

import litellm
import pytest
from pydantic import BaseModel, ConfigDict, PrivateAttr

from fixedmodel._pydantic import read_attribute


class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")

    field: int = 1
    _private: str = PrivateAttr(default="hidden")


class Plain:
    def __init__(self) -> None:
        self.value = 3

    @property
    def computed(self) -> int:
        return self.value * 2


def test_reads_fields_extras_and_private_attributes_of_a_model() -> None:
    model = Loose(extra_field="x")
    assert read_attribute(model, "field") == 1
    assert read_attribute(model, "extra_field") == "x"
    assert read_attribute(model, "_private") == "hidden"
    assert read_attribute(model, "absent") is None
    assert read_attribute(model, "_absent") is None


def test_reads_plain_objects_and_properties_like_getattr() -> None:
    plain = Plain()
    assert read_attribute(plain, "value") == 3
    assert read_attribute(plain, "computed") == 6
    assert read_attribute(plain, "absent") is None
    assert read_attribute(None, "usage") is None


@pytest.mark.parametrize("name", ["usage", "_hidden_params", "choices", "id", "model"])
def test_agrees_with_getattr_on_a_litellm_answer(name: str) -> None:
    answer = litellm.ModelResponse(
        model="m",
        choices=[{"message": {"role": "assistant", "content": "Hi"}}],
        usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    )
    answer._hidden_params["response_cost"] = 0.5
    assert read_attribute(answer, name) is getattr(answer, name)
