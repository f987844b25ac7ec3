"""Answer parsing: the ways people and models write answers, and the cases that must not be guessed."""

import ast

import pytest

from linebench.answers import PARSERS, as_text, canonical, is_correct, parse_cell, parse_number

NUMBERS = [
    ("They do not intersect.", 0),
    ("The red and blue lines don't cross.", 0),
    ("The lines never intersect", 0),
    # plain and decorated
    ("3", 3),
    (" 3 \n", 3),
    ("{3}", 3),
    ("**3**", 3),
    ("`3`", 3),
    ('"3"', 3),
    ("'3'", 3),
    ("\\boxed{3}", 3),
    ("$\\boxed{3}$", 3),
    ("\\(\\boxed{\\text{3}}\\)", 3),
    ("**Answer:** $\\boxed{7}$", 7),
    ("3.", 3),
    ("(3)", 3),
    ("#3", 3),
    ("- 3", 3),
    ("３", 3),  # full-width digit
    ("3.0", 3),
    # sentences
    ("The answer is 3.", 3),
    ("the answer is: 3", 3),
    ("Answer: 3", 3),
    ("ANSWER = 3", 3),
    ("Final answer: 12", 12),
    ("My answer would be 5", 5),
    ("**Answer**: 5\n\nExplanation: line 2 crosses line 4 twice.", 5),
    ("3 intersections", 3),
    ("3 crossings.", 3),
    ("The lines cross at 2 points", 2),
    ("Line 1 and line 2 cross 3 times", 3),
    ("Lines 1, 2 and 4 meet 6 times in total.", 6),
    ("2 lines cross 3 times", 3),
    ("The line starting at A ends at 3.", 3),
    ("It ends at number 3", 3),
    ("A → 3", 3),
    ("The red one ends at 3", 3),
    ("One of the lines ends at 4.", 4),
    ("3 (three)", 3),
    # a trailing explanation after the answer
    ("3. The red line crosses the blue line twice before it ends.", 3),
    ("3, because the line from A passes 2 crossings.", 3),
    ("5\nThe line from A crosses lines 2 and 3.", 5),
    # ... or in a first sentence whose numbers agree
    ("It ends at 3. The line crosses line 2 twice.", 3),
    ("The line from A ends at 4. Lines B and C cross it 2 times.", 4),
    ("The line goes down.\nIt ends at 5.", 5),
    # marker wins over everything before it
    ("I first thought 2. Final answer: 4", 4),
    ("Following line 1 it passes 2 crossings. The answer is 6.", 6),
    # number words
    ("three", 3),
    ("Three.", 3),
    ("There are three crossings.", 3),
    ("zero", 0),
    ("eleven", 11),
    ("twenty", 20),
    ("twenty-one", 21),
    ("twenty one", 21),
    ("The answer is seven.", 7),
    ("Only one crossing.", 1),
    ("None", 0),
    ("There are no intersections.", 0),
    ("They cross twice.", 2),
    ("They cross once.", 1),
    ("Once the line passes B, it ends at 4.", 4),  # "once" opening a clause is not a number
    # integer predictions that are not strings
    (3, 3),
    (3.0, 3),
]

NUMBER_NONE = [
    "",
    "   ",
    "I don't know.",
    "no idea",
    "The answer is unclear.",
    "Answer: cannot tell",
    "I count 2 crossings on the left and 3 on the right",  # two different numbers, no marker
    "There are 3 crossings: 2 on the left and 1 on the right.",
    "3 or 4",
    "3 or maybe 4",
    "3/4",
    "3-4",
    "3 to 4",
    "between 3 and 4",
    "The answer is 3 or 4.",
    "(3) or (4)",
    "3,5",  # a pair, or a decimal comma: either way not a count
    "-3",
    "The answer is -1.",
    "2.5",
    "There are 2.5 crossings.",
    "1,000",
    "line 3",  # an identifier only
    "There are 3 lines.",
    None,
    True,
    {"answer": 3},
    [3, 5],
]

CELLS = [
    ("(3, 5)", (3, 5)),
    ("(3,5)", (3, 5)),
    ("3,5", (3, 5)),
    ("3, 5", (3, 5)),
    ("[3, 5]", (3, 5)),
    ("{3, 5}", (3, 5)),
    ("(3 5)", (3, 5)),
    ("(3; 5)", (3, 5)),
    ("cell (3, 5)", (3, 5)),
    ("Cell (3, 5).", (3, 5)),
    ("**(3, 5)**", (3, 5)),
    ("\\boxed{(3, 5)}", (3, 5)),
    ("row 3, column 5", (3, 5)),
    ("Row 3 Col 5", (3, 5)),
    ("row=3, col=5", (3, 5)),
    ("Row: 3, Column: 5", (3, 5)),
    ("row 3 and column 5", (3, 5)),
    ("r3c5", (3, 5)),
    ("R3C5", (3, 5)),
    ("r3 c5", (3, 5)),
    ("column 5, row 3", (3, 5)),  # labels win over order
    ("The marker is in row three, column five.", (3, 5)),
    ("The answer is (3, 5).", (3, 5)),
    ("Answer: (3, 5)", (3, 5)),
    ("The answer is (2, 4). It is next to (1, 1).", (2, 4)),
    ("(3, 5). The marker sits left of the centre of the grid.", (3, 5)),
    ("The marker is in row 2, column 3. Row 1 is empty.", (2, 3)),
    ("(r, c) = (3, 5)", (3, 5)),
    ("The marker is in cell (0, 0).", (0, 0)),
    ("(10, 12)", (10, 12)),
    ([3, 5], (3, 5)),
    ((3, 5), (3, 5)),
]

CELL_NONE = [
    "",
    "3",
    "row 3",
    "I cannot see the marker.",
    "(3, 5) or (3, 6)",
    "(3, 5), (3, 6)",
    "It is in (1, 2) and also looks like (3, 4).",
    "1, 3, 5",
    "(-1, 2)",
    "(2.5, 3)",
    "Answer: somewhere in the middle",
    None,
    [3],
    [3, 5, 7],
]


@pytest.mark.parametrize("text,value", NUMBERS)
def test_parse_number(text, value):
    assert parse_number(text) == value


@pytest.mark.parametrize("text", NUMBER_NONE)
def test_parse_number_refuses_to_guess(text):
    assert parse_number(text) is None


@pytest.mark.parametrize("text,value", CELLS)
def test_parse_cell(text, value):
    assert parse_cell(text) == value


@pytest.mark.parametrize("text", CELL_NONE)
def test_parse_cell_refuses_to_guess(text):
    assert parse_cell(text) is None


def test_registry_and_canonical_forms():
    assert PARSERS == {"number": parse_number, "cell": parse_cell}
    assert canonical("number", "The answer is three.") == "3"
    assert canonical("cell", "row 3 col 5") == "(3, 5)"
    assert canonical("number", "3 or 4") is None
    assert canonical("cell", "nowhere") is None
    # the generators' own formats are fixed points
    for n in range(30):
        assert canonical("number", str(n)) == str(n)
    for r in range(12):
        for c in range(12):
            text = f"({r}, {c})"
            assert canonical("cell", text) == text and ast.literal_eval(text) == (r, c)


def test_is_correct():
    assert is_correct("number", "The answer is 3.", "3") is True
    assert is_correct("number", "three", "3") is True
    assert is_correct("number", "4", "3") is False
    assert is_correct("number", "3 or 4", "3") is None
    assert is_correct("number", None, "3") is None
    assert is_correct("cell", "row 3, column 5", "(3, 5)") is True
    assert is_correct("cell", "(5, 3)", "(3, 5)") is False
    assert is_correct("cell", "(3, 5) or (5, 3)", "(3, 5)") is None
    with pytest.raises(ValueError):
        is_correct("number", "3", "not a number")
    with pytest.raises(ValueError):
        is_correct("colour", "red", "red")


def test_as_text():
    assert as_text("x") == "x"
    assert as_text(3) == "3"
    assert as_text([3, 5]) == "(3, 5)"
    assert as_text(None) is None and as_text(False) is None and as_text({"a": 1}) is None


def test_answers_module_does_not_import_generators():
    import subprocess
    import sys

    code = "import sys, linebench.answers; sys.exit('generators' in sys.modules or 'linebench.dataset' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
