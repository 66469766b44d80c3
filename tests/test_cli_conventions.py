"""The conventions of the tools users know: -o - for standard output, --format, H x W everywhere."""

from __future__ import annotations

import csv
import io
import json

from click.testing import CliRunner
from infer_helpers import write_mnist_pngs

from convtool.cli.main import cli


def test_results_to_stdout_as_json_lines_or_csv(tmp_path):
    files, labels = write_mnist_pngs(tmp_path / "digits", 6)
    runner = CliRunner()
    result = runner.invoke(cli, ["classify", str(tmp_path / "digits"), "-m", "lenet5-mnist", "-o", "-", "--top-k", "2"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]  # nothing but JSON lines on stdout
    assert [r["file"] for r in records] == [str(f) for f in sorted(files)]
    assert all(len(r["top_k"]) == 2 for r in records)
    assert "wrote 6 results to stdout" in result.stderr
    assert not (tmp_path / "-").exists()
    as_csv = runner.invoke(cli, ["classify", str(tmp_path / "digits"), "-m", "lenet5-mnist", "-o", "-", "--format", "csv"])
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [row["file"] for row in rows] == [r["file"] for r in records]
    assert [row["label_1"] for row in rows] == [r["top_k"][0]["label"] for r in records]


def test_names_with_brackets_come_out_as_written_in_tables(tmp_path):
    files, _ = write_mnist_pngs(tmp_path / "digits", 1)
    odd = files[0].with_name("scan [bold]1[red].png")  # rich would read this as markup
    files[0].rename(odd)
    result = CliRunner().invoke(cli, ["classify", str(odd), "-m", "lenet5-mnist"])
    assert result.exit_code == 0, result.output
    assert str(odd) in result.stdout


def test_format_overrides_the_suffix(tmp_path):
    write_mnist_pngs(tmp_path / "digits", 2)
    out = tmp_path / "results.txt"
    result = CliRunner().invoke(cli, ["classify", str(tmp_path / "digits"), "-m", "lenet5-mnist", "-o", str(out),
                                      "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    assert len([json.loads(line) for line in out.read_text().splitlines()]) == 2


def test_a_warning_when_images_are_enlarged_a_lot_to_fit_the_model(tmp_path):
    write_mnist_pngs(tmp_path / "digits", 3)
    runner = CliRunner()
    stretched = runner.invoke(cli, ["segment", str(tmp_path / "digits"), "-m", "unet-digits", "-o", str(tmp_path / "m")])
    assert stretched.exit_code == 0, stretched.output
    assert ("warning: every image was scaled up more than 1.5x to fit the model's 48x48 input "
            "(the smallest was 28x28)") in stretched.stderr
    fitting = runner.invoke(cli, ["classify", str(tmp_path / "digits"), "-m", "lenet5-mnist"])
    assert fitting.exit_code == 0 and "scaled up" not in fitting.stderr


def test_quoted_globs_expand_and_a_pattern_matching_nothing_says_so(tmp_path):
    files, _ = write_mnist_pngs(tmp_path / "digits", 4)
    (tmp_path / "digits" / "notes.txt").write_text("not an image")
    runner = CliRunner()
    pattern = str(tmp_path / "digits" / "*.png")
    result = runner.invoke(cli, ["classify", pattern, "-m", "lenet5-mnist", "-o", "-"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["file"] for line in result.stdout.splitlines()] == sorted(str(f) for f in files)
    out = tmp_path / "out"
    nothing = runner.invoke(cli, ["filter", str(tmp_path / "digits" / "*.jpg"), "-k", "sobel", "-o", str(out)])
    assert nothing.exit_code != 0 and "*.jpg: no files match this pattern" in nothing.output
    assert not out.exists()  # no empty output folder left behind


def test_dash_reads_one_image_from_stdin(tmp_path):
    files, _ = write_mnist_pngs(tmp_path / "digits", 1)
    runner = CliRunner()
    piped = runner.invoke(cli, ["classify", "-", "-m", "lenet5-mnist", "-o", "-"], input=files[0].read_bytes())
    direct = runner.invoke(cli, ["classify", str(files[0]), "-m", "lenet5-mnist", "-o", "-"])
    assert piped.exit_code == 0, piped.output
    assert json.loads(piped.stdout)["top_k"] == json.loads(direct.stdout)["top_k"]
    assert json.loads(piped.stdout)["file"] == "-"  # not the temporary copy's path
    table = runner.invoke(cli, ["classify", "-", "-m", "lenet5-mnist"], input=files[0].read_bytes())
    assert table.stdout.splitlines()[1].split()[0] == "-"
    out = tmp_path / "out"
    filtered = runner.invoke(cli, ["filter", "-", "-k", "sobel", "-o", str(out)], input=files[0].read_bytes())
    assert filtered.exit_code == 0, filtered.output
    assert [p.name for p in out.iterdir()] == ["stdin-sobel.png"]
    empty = runner.invoke(cli, ["classify", "-", "-m", "lenet5-mnist"], input=b"")
    assert empty.exit_code == 1 and "nothing came on standard input" in empty.output
    text = runner.invoke(cli, ["classify", "-", "-m", "lenet5-mnist"], input=b"hello")
    assert text.exit_code == 1 and "standard input is not an image" in text.output
