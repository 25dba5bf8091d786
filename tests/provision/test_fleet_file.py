"""The fleet batch file: CSV or TOML, Wi-Fi profiles whose passwords never sit in the batch file,
and an error that names the file, the row and the field for each mistake; the summary table."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.provision import fleet
from coordinator.provision.errors import ProvisionError


def test_toml_and_csv_batches_with_wifi_profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIFI_VILLAGE", "s3cret-pw")
    t = tmp_path / "f.toml"
    t.write_text(
        '[defaults]\nboard = "esp32-devkitc-pzem004t"\nwifi = "village"\n'
        '[wifi.village]\nssid = "village-net"\npassword_env = "WIFI_VILLAGE"\n'
        '[[boards]]\nid = "m-a"\nmember = "alice"\n'
        '[[boards]]\nid = "m-b"\nmember = "bob"\nboard = "esp32-dsmr-p1"\n'
    )
    f = fleet.load(t)
    assert [(e.id, e.member, e.board, e.wifi) for e in f.entries] == [
        ("m-a", "alice", "esp32-devkitc-pzem004t", "village"),
        ("m-b", "bob", "esp32-dsmr-p1", "village"),
    ]
    assert f.wifi == {"village": fleet.Wifi("village-net", "s3cret-pw")}
    c = tmp_path / "f.csv"
    c.write_text("id,member,board,wifi\nm-a,alice,esp32-dsmr-p1,village\nm-b,bob,esp32-dsmr-p1,\n")
    prof = tmp_path / "wifi.toml"
    (tmp_path / "pw").write_text("from-file\n")
    prof.write_text(f'[wifi.village]\nssid = "v"\npassword_file = "{tmp_path / "pw"}"\n')
    f = fleet.load(c, prof)
    assert [e.wifi for e in f.entries] == ["village", None] and f.wifi["village"].password == "from-file"


@pytest.mark.parametrize(
    ("name", "text", "error"),
    [
        (
            "a.csv",
            "id,member\nm1,alice\n",
            r"a\.csv: the header needs id,member,board\[,wifi\]; missing board",
        ),
        ("b.csv", "id,member,board\nm1,,x\n", r"b\.csv line 2: member is required"),
        ("c.csv", "id,member,board\nBad Id,alice,x\n", r"c\.csv line 2: id 'Bad Id' is not a board id"),
        ("d.csv", "id,member,board\nm1,a,x\nm1,b,x\n", r"d\.csv: board id 'm1' appears twice"),
        ("e.csv", "id,member,board,wifi\nm1,a,x,home\n", r"e\.csv: board m1: no Wi-Fi profile 'home'"),
        (
            "f.toml",
            'wifi.home = { ssid = "h", password = "pw" }\n[[boards]]\nid="m1"\nmember="a"\nboard="x"\n',
            r"f\.toml: wifi\.home\.password: no passwords in the batch file",
        ),
        (
            "g.toml",
            '[wifi.home]\nssid = "h"\npassword_env = "PEERGRID_NOT_SET_ANYWHERE"\n',
            r"g\.toml: wifi\.home: the environment variable PEERGRID_NOT_SET_ANYWHERE is not set",
        ),
        (
            "h.toml",
            "[[boards]]\nid = 7\nmember = 'a'\nboard = 'x'\n",
            r"h\.toml boards #1: id must be text, got 7",
        ),
    ],
)
def test_every_mistake_names_file_row_and_field(tmp_path: Path, name: str, text: str, error: str) -> None:
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(ProvisionError, match=error):
        fleet.load(p)


def test_summary_table() -> None:
    e = [fleet.Entry("m1", "alice", "x", None), fleet.Entry("m22", "bob", "x", None)]
    t = fleet.table(
        [
            fleet.Result(e[0], "ok", "key ab..., first reading seq 1"),
            fleet.Result(e[1], "failed", "x" * 200, "k"),
        ]
    )
    lines = t.splitlines()
    assert lines[0].split() == ["board", "member", "result", "detail"]
    assert lines[1].split()[:3] == ["m1", "alice", "ok"] and lines[2].endswith("x" * 117 + "...")
    assert lines[-1] == "1 ok, 1 failed, 0 skipped"
