import pytest

from linebench.errors import UsageError
from linebench.tasks import Knob, get_task, levels_for, parse_overrides, parse_value, task_names


def test_registry_finds_tracing_through_entry_points():
    assert "tracing" in task_names()
    assert get_task("tracing").name == "tracing"
    with pytest.raises(UsageError, match="unknown task"):
        get_task("no-such-task")


def test_parse_values():
    k_int = Knob("n", int, 1, "")
    assert parse_value(k_int, "3") == 3 and parse_value(k_int, "2..5") == [2, 5]
    assert parse_value(Knob("b", bool, False, ""), "yes") is True
    assert parse_value(Knob("x", float, 0.5, ""), "0.25..0.75") == [0.25, 0.75]
    k_str = Knob("v", str, "a", "", choices=("a", "b"))
    assert parse_value(k_str, "b") == "b"
    with pytest.raises(UsageError, match="one of a, b"):
        parse_value(k_str, "c")
    with pytest.raises(UsageError):
        parse_value(k_int, "3..x")


def test_overrides_are_checked_against_bounds():
    task = get_task("tracing")
    assert parse_overrides(task, ["curves=4", "bends=1..2"]) == {"curves": 4, "bends": [1, 2]}
    from linebench.tasks import ParamSpec, resolve_params

    with pytest.raises(UsageError, match="lo <= hi"):
        resolve_params(task, "easy", ParamSpec(overrides={"bends": [3, 1]}))


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"bends": "2"}, "takes a int or a range"),  # a string where a number goes: a TypeError before
        ({"wiggle": None}, "takes a float"),
        ({"same_colour": 1}, "takes a bool"),
        ({"curves": True}, "takes a int"),
        ({"curves": [3, "4"]}, "takes a int"),
        ({"no_such_knob": 1}, "has no knob 'no_such_knob'"),  # a KeyError before
    ],
)
def test_api_overrides_of_the_wrong_type_are_one_usage_error(overrides, message):
    from linebench.tasks import ParamSpec, resolve_params

    with pytest.raises(UsageError, match=message):
        resolve_params(get_task("tracing"), "easy", ParamSpec(overrides=overrides))


def test_a_tuple_is_a_range_like_a_list():
    from linebench.tasks import ParamSpec, resolve_params

    task = get_task("tracing")
    as_tuple = resolve_params(task, "easy", ParamSpec(overrides={"bends": (1, 3), "wiggle": (0.1, 0.2)}))
    as_list = resolve_params(task, "easy", ParamSpec(overrides={"bends": [1, 3], "wiggle": [0.1, 0.2]}))
    assert as_tuple == as_list and as_tuple["knobs"]["bends"] == [1, 3]


class _Levels:
    levels = {"easy": {}, "hard": {}, "ood": {}}
    name = "fake"


def test_mixed_never_draws_the_ood_level():
    assert levels_for(_Levels(), "mixed") == ["easy", "hard"]
    assert levels_for(_Levels(), "ood") == ["ood"]
    with pytest.raises(UsageError):
        levels_for(_Levels(), "nightmare")
