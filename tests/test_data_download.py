"""Downloads from a local HTTP server (no network), checksums, and broken archives."""

import hashlib
import io
import zipfile

import pytest

from data_helpers import (
    LocalServer,
    make_enwik8_zip,
    make_lm1b_tgz,
    make_ptb_tgz,
    make_wikitext_zip,
    sample_text,
    zip_members,
)
from transformer_xl.cli import main
from transformer_xl.data import load_prepared
from transformer_xl.data.download import Remote, download


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def served(tmp_path):
    folder = tmp_path / "www"
    folder.mkdir()
    archive = make_enwik8_zip(folder / "enwik8.zip", sample_text(200_000).encode())
    return folder, archive


def test_cli_downloads_verifies_and_prepares(tmp_path, served, capsys):
    folder, archive = served
    with LocalServer(folder) as srv:
        rc = main(["prepare", "enwik8", "--url", srv.url("enwik8.zip"), "--sha256", sha(archive),
                   "--download-dir", str(tmp_path / "dl"), "--out", str(tmp_path / "out"),
                   "--valid-size", "1000", "--test-size", "1000"])  # fmt: skip
        assert srv.handler.log == [("/enwik8.zip", None)]
    assert rc == 0
    assert (tmp_path / "dl" / "enwik8.zip").read_bytes() == archive.read_bytes()
    assert not (tmp_path / "dl" / "enwik8.zip.part").exists()
    assert load_prepared(tmp_path / "out").num_tokens("test") > 900
    err = capsys.readouterr().err
    # the progress meter's closing line (line mode: stderr is not a terminal)
    assert "enwik8.zip: 100%" in err and "B/s" in err


def test_resume_with_range(tmp_path, served):
    folder, archive = served
    data = archive.read_bytes()
    dl = tmp_path / "dl"
    dl.mkdir()
    half = len(data) // 2
    (dl / "enwik8.zip.part").write_bytes(data[:half])
    remote = Remote("enwik8.zip", (), sha(archive))
    with LocalServer(folder) as srv:
        path = download(remote, dl, urls=[srv.url("enwik8.zip")], progress=False)
        assert srv.handler.log == [("/enwik8.zip", f"bytes={half}-")]
    assert path.read_bytes() == data and not (dl / "enwik8.zip.part").exists()


def test_server_without_range_starts_over(tmp_path, served):
    folder, archive = served
    dl = tmp_path / "dl"
    dl.mkdir()
    (dl / "enwik8.zip.part").write_bytes(b"stale bytes")
    with LocalServer(folder, honour_range=False) as srv:
        path = download(
            Remote("enwik8.zip", (), sha(archive)), dl, urls=[srv.url("enwik8.zip")], progress=False
        )
    assert path.read_bytes() == archive.read_bytes()


def test_complete_part_file_and_mirror_fallback(tmp_path, served):
    folder, archive = served
    dl = tmp_path / "dl"
    dl.mkdir()
    (dl / "enwik8.zip.part").write_bytes(archive.read_bytes())  # server answers 416: nothing left
    with LocalServer(folder) as srv:
        download(
            Remote("enwik8.zip", (), sha(archive)), dl, urls=[srv.url("enwik8.zip")], progress=False
        )
    (dl / "enwik8.zip").unlink()
    with LocalServer(folder) as srv:
        urls = [srv.url("missing.zip"), srv.url("enwik8.zip")]
        download(Remote("enwik8.zip", (), sha(archive)), dl, urls=urls, progress=False)
    assert (dl / "enwik8.zip").read_bytes() == archive.read_bytes()


def test_checksum_mismatch_deletes_and_names_both(tmp_path, served, capsys):
    folder, archive = served
    dl = tmp_path / "dl"
    remote = Remote("enwik8.zip", (), "0" * 64)  # a "published" checksum the file does not have
    with LocalServer(folder) as srv, pytest.raises(ValueError, match="0000000000") as e:
        download(remote, dl, urls=[srv.url("enwik8.zip")], progress=False)
    assert sha(archive) in str(e.value)
    assert list(dl.iterdir()) == []
    with LocalServer(folder) as srv:
        rc = main(["prepare", "enwik8", "--url", srv.url("enwik8.zip"), "--sha256", "ab" * 32,
                   "--download-dir", str(dl), "--out", str(tmp_path / "out"),
                   "--quiet"])  # fmt: skip
    assert rc == 2 and "abababab" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unreachable_names_the_file(tmp_path, served, capsys):
    folder, _ = served
    with LocalServer(folder) as srv:
        rc = main(["prepare", "text8", "--url", srv.url("nothing-here.zip"), "--download-dir",
                   str(tmp_path / "dl"), "--out", str(tmp_path / "out"), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "could not download text8.zip" in err and "404" in err


def test_existing_download_with_wrong_checksum(tmp_path):
    dl = tmp_path / "dl"
    dl.mkdir()
    (dl / "enwik8.zip").write_bytes(b"not it")
    with pytest.raises(ValueError, match="delete the file"):
        download(Remote("enwik8.zip", (), "1" * 64), dl, progress=False)


# ------------------------------------------------------------------ broken inputs
def prep(*argv):
    return main(["prepare", *map(str, argv), "--quiet"])


def test_missing_archive(tmp_path, capsys):
    assert prep("enwik8", "--source", tmp_path / "enwik8.zip", "--out", tmp_path / "o") == 2
    assert "enwik8.zip: no such file" in capsys.readouterr().err


def test_truncated_and_bad_crc_zip(tmp_path, capsys):
    good = make_enwik8_zip(tmp_path / "good.zip", sample_text(50_000).encode())
    data = good.read_bytes()
    (tmp_path / "trunc.zip").write_bytes(data[: len(data) // 2])
    assert prep("enwik8", "--source", tmp_path / "trunc.zip", "--out", tmp_path / "o1") == 2
    assert "trunc.zip" in capsys.readouterr().err
    # flip a byte inside the compressed data: the zip directory is fine, the CRC check is not
    raw = bytearray(data)
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo("enwik8")
    raw[info.header_offset + 30 + len("enwik8") + 500] ^= 0xFF
    (tmp_path / "crc.zip").write_bytes(bytes(raw))
    assert prep("enwik8", "--source", tmp_path / "crc.zip", "--out", tmp_path / "o2",
                "--valid-size", 10, "--test-size", 10) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "crc.zip" in err and "corrupt" in err
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_wrong_member_and_strict_checksum(tmp_path, capsys):
    z = make_wikitext_zip(
        tmp_path / "wikitext-103-v1.zip", "2", {"train": "a\n", "valid": "a\n", "test": "a\n"}
    )
    assert prep("wikitext-103", "--source", z, "--out", tmp_path / "o") == 2
    assert "has no member 'wikitext-103/wiki.train.tokens'" in capsys.readouterr().err
    assert prep("wikitext-2", "--source", z, "--out", tmp_path / "o", "--strict-checksum") == 2
    err = capsys.readouterr().err
    assert "92675f1d63015c1c8b51f1656a52d5bdbc33aafa60cc47a218a66e7ee817488c" in err  # published
    assert prep("wikitext-2", "--source", z, "--out", tmp_path / "o", "--sha256", "f" * 64) == 2
    assert "ffffffff" in capsys.readouterr().err


def test_undecodable_bytes_and_nul_in_word_corpus(tmp_path, capsys):
    z = zip_members(tmp_path / "w.zip", {
        "wikitext-2/wiki.train.tokens": b"ok\n", "wikitext-2/wiki.valid.tokens": b"ok\n",
        "wikitext-2/wiki.test.tokens": b"fine\nbad \xff\xfe here\n",
    })  # fmt: skip
    assert prep("wikitext-2", "--source", z, "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert "wiki.test.tokens" in err and "not UTF-8" in err and "offset 9" in err
    z2 = make_wikitext_zip(
        tmp_path / "w2.zip", "2", {"train": "ok\x00\n", "valid": "ok\n", "test": "ok\n"}
    )
    assert prep("wikitext-2", "--source", z2, "--out", tmp_path / "o") == 2
    assert "NUL byte" in capsys.readouterr().err


def test_truncated_tgz_and_bad_lm1b_vocab(tmp_path, capsys):
    t = make_ptb_tgz(
        tmp_path / "simple-examples.tgz", {s: " a b\n" * 50 for s in ("train", "valid", "test")}, {}
    )
    data = t.read_bytes()
    (tmp_path / "cut.tgz").write_bytes(data[: len(data) - 40])
    assert prep("ptb", "--source", tmp_path / "cut.tgz", "--out", tmp_path / "o") == 2
    assert "cut.tgz" in capsys.readouterr().err
    lm = make_lm1b_tgz(tmp_path / "lm1b.tar.gz", ["a b\n"], ["a\n"])
    (tmp_path / "v.txt").write_text("<S>\na\n")
    assert (
        prep("lm1b", "--source", lm, "--vocab-file", tmp_path / "v.txt", "--out", tmp_path / "o")
        == 2
    )
    assert "<UNK>" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_failed_rerun_keeps_the_previous_output(tmp_path, capsys):
    z = make_enwik8_zip(tmp_path / "enwik8.zip", sample_text(30_000).encode())
    assert (
        prep(
            "enwik8",
            "--source",
            z,
            "--out",
            tmp_path / "o",
            "--valid-size",
            100,
            "--test-size",
            100,
        )
        == 0
    )
    before = (tmp_path / "o" / "train.bin").read_bytes()
    assert prep("enwik8", "--source", z, "--out", tmp_path / "o") == 2  # exists, no --force
    assert "--force" in capsys.readouterr().err
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 garbage")
    assert prep("enwik8", "--source", tmp_path / "bad.zip", "--out", tmp_path / "o", "--force") == 2
    assert (tmp_path / "o" / "train.bin").read_bytes() == before
    assert (
        prep(
            "enwik8",
            "--source",
            z,
            "--out",
            tmp_path / "o2",
            "--valid-size",
            20_000,
            "--test-size",
            20_000,
        )
        == 2
    )
    assert "nothing would be left to train on" in capsys.readouterr().err
