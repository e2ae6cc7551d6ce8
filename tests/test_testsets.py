"""The CSV test-set parser: the seed's files, tolerated variations, and every rejection."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledgerpaxos.testsets.parser import TestSetError, load_test_sets, parse_test_sets

ACCOUNTS = "ABCDEFGHIJ"
NODES = ["n1", "n2", "n3", "n4", "n5"]
TESTDATA = Path(__file__).resolve().parent.parent / "testdata"


def parse(text: str):
    return parse_test_sets(text, path="t.csv", accounts=ACCOUNTS, node_ids=NODES)


def test_seed_test_csv_has_ten_sets_with_legs_and_live_nodes() -> None:
    sets = load_test_sets(TESTDATA / "test.csv", accounts=ACCOUNTS, node_ids=NODES)
    assert [s.number for s in sets] == list(range(1, 11))
    assert sets[1].live_nodes == ("n1", "n2", "n3", "n4")
    assert [len(leg) for leg in sets[5].legs] == [1, 2]  # set 6: one LF
    assert [len(leg) for leg in sets[8].legs] == [1, 2, 1]  # set 9: two LFs
    first = sets[0].legs[0][0]
    assert (first.sender, first.receiver, first.amount, first.line) == ("A", "J", 3, 2)


@pytest.mark.parametrize("name", ["concurrent.csv", "single.csv", "test.csv"])
def test_every_seed_file_parses(name: str) -> None:
    assert load_test_sets(TESTDATA / name, accounts=ACCOUNTS, node_ids=NODES)


def test_bom_crlf_missing_newline_and_spaces_are_accepted() -> None:
    text = '\ufeffSet Number,Transactions,Live Nodes\r\n 1 ,"( A , J , 1 )","[n1,n2 , n3]"\r\n,LF,\r\n,"(B,C,2)",'
    (s,) = parse(text)
    assert s.live_nodes == ("n1", "n2", "n3")
    assert [[str(t) for t in leg] for leg in s.legs] == [["(A, J, 1)"], ["(B, C, 2)"]]


def test_amounts_the_ledger_rejects_still_parse() -> None:
    (s,) = parse('Set Number,Transactions,Live Nodes\n1,"(A, A, 0)","[n1]"\n,"(A, B, -2)",\n')
    assert [t.amount for t in s.transfers] == [0, -2]


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        (',"(A, B, 1)",\n', 2, "must start a set"),
        ('1,,"[n1]"\n', 2, "empty transaction cell"),
        ('1,"(A, B)","[n1]"\n', 2, "has 2 parts"),
        ('1,"(A, B, 1, 2)","[n1]"\n', 2, "has 4 parts"),
        ('1,"(A, B, x)","[n1]"\n', 2, "not an integer"),
        ('1,"(A, B, 1.5)","[n1]"\n', 2, "not an integer"),
        ('1,"(A, B, 1)","[n1, n9]"\n', 2, "unknown node 'n9'"),
        ('1,"(A, B, 1)","[n1]"\n,"(A, Z, 1)",\n', 3, "unknown receiver account 'Z'"),
        ('1,"(Q, B, 1)","[n1]"\n', 2, "unknown sender account 'Q'"),
        ('1,"(A, B, 1)",\n', 2, "without its Live Nodes"),
        ('1,"A, B, 1","[n1]"\n', 2, "not of the form"),
        ('x,"(A, B, 1)","[n1]"\n', 2, "set number 'x'"),
        ('2,"(A, B, 1)","[n1]"\n1,"(A, B, 1)","[n1]"\n', 3, "must increase"),
        ('1,"(A, B, 1)","[n1]",extra\n', 2, "expected 3 columns"),
        ('1,"(A, B, 1)","[n1]"\n,"(A, B, 1)","[n2]"\n', 3, "only be given on the row that starts"),
        ('1,"(A, B, 1)","n1, n2"\n', 2, "are not of the form [n1, n2, ...]"),
        ('1,"(A, B, 1)","[n1, n2, n1]"\n', 2, "a node is listed twice"),
        # A quoted cell may hold a line break: lines are counted in the file, not in rows.
        ('1,"(A,\nB, 1)","[n1]"\n,"(A, Z, 1)",\n', 4, "unknown receiver account 'Z'"),
        ('1,"(A, B, 1)","[n1,\nn2]"\n\n,"(A, B, x)",\n', 5, "not an integer"),
    ],
)
def test_malformed_rows_are_rejected_with_their_line(body: str, line: int, words: str) -> None:
    with pytest.raises(TestSetError) as e:
        parse("Set Number,Transactions,Live Nodes\n" + body)
    assert e.value.line == line and words in str(e.value)
    assert str(e.value).startswith(f"t.csv: line {line}: ")


def test_a_file_with_only_its_header_holds_no_set() -> None:
    with pytest.raises(
        TestSetError, match=r"^t\.csv: the file holds no test set, only its header$"
    ):
        parse("Set Number,Transactions,Live Nodes\n\n")


def test_a_cell_too_long_for_the_csv_reader_is_rejected_with_its_line() -> None:
    huge = "x" * 200_000  # over csv.field_size_limit(), 131,072 by default
    with pytest.raises(TestSetError, match=r"^t\.csv: line 3: not valid CSV: field larger"):
        parse(f'Set Number,Transactions,Live Nodes\n1,"(A, B, 1)","[n1]"\n,"{huge}",\n')


def test_wrong_header_is_rejected() -> None:
    with pytest.raises(TestSetError, match="line 1: the first line must be the header"):
        parse("Set,Tx,Nodes\n")


def test_missing_file_and_bad_encoding_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(TestSetError, match="cannot read"):
        load_test_sets(tmp_path / "nope.csv", accounts=ACCOUNTS, node_ids=NODES)
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b'Set Number,Transactions,Live Nodes\n1,"(A, B, 1)","[n1]"\n\xff\n')
    with pytest.raises(TestSetError, match="line 3: not UTF-8"):
        load_test_sets(bad, accounts=ACCOUNTS, node_ids=NODES)
