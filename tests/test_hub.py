"""`linebench push`: the real huggingface_hub client against a fake Hub at the HTTP layer
(tests/fake_hub.py), and the folder it uploads loaded back with `datasets` offline."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fake_hub import FakeHub
from linebench.cli import app
from linebench.dataset import generate, read_manifest
from linebench.release import load_release

runner = CliRunner()

SPEC = """task = "tracing"
seed = 5
canvas = [448, 448]
maps = ["grid24", "qwen2.5-vl"]
shard_size = 4

[splits.train]
n = 10
difficulty = "stratified"

[splits.validation]
n = 3
difficulty = "stratified"

[splits.test]
n = 5
difficulty = "stratified"

[splits.ood]
n = 3
difficulty = "ood"
"""


def make_release(folder: Path, spec_dir: Path, n_train: int = 10) -> Path:
    spec = spec_dir / "tiny.toml"
    spec.write_text(SPEC.replace("n = 10", f"n = {n_train}"))
    rel = load_release(str(spec))
    generate(rel.run_specs(), folder, workers=1, shard_size=rel.shard_size, command=rel.command, overwrite=True)
    return folder


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    base = tmp_path_factory.mktemp("hub")
    return make_release(base / "tracing", base)


@pytest.fixture
def hub(monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.utils._http import default_client_factory

    fake = FakeHub()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", fake.token)
    huggingface_hub.set_client_factory(fake.client)
    yield fake
    huggingface_hub.set_client_factory(default_client_factory)


def push(*args: str):
    return runner.invoke(app, ["push", *args])


def one_line_error(result, fake: FakeHub) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip() and "checking shards" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert fake.token not in result.output and "Traceback" not in result.output
    return lines[0]


def download(repo_files: dict[str, bytes], folder: Path) -> Path:
    for path, data in repo_files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    return folder


def uploaded_files(folder: Path) -> dict[str, bytes]:
    manifest = read_manifest(folder)
    paths = ["README.md", "manifest.json", "assets/example.png", *(s["path"] for s in manifest["shards"])]
    return {p: (folder / p).read_bytes() for p in paths}


# --------------------------------------------------------------------------- success paths


def test_push_commits_the_release_and_it_loads_back_offline(release, hub, tmp_path):
    from datasets import load_dataset

    r = push(str(release), "--repo-id", "linebench/tracing", "--private")
    assert r.exit_code == 0, r.output
    repo = hub.repos["linebench/tracing"]
    assert repo.private
    manifest = read_manifest(release)
    config = manifest["generator_version"]

    # one commit, naming the linebench version and the spec; tagged with the release name
    assert len(repo.commits) == 1
    commit = repo.commits[0]
    assert commit["summary"].startswith("linebench 0.1.0: release " + config)
    assert "tiny.toml" in commit["summary"] and "train 10, validation 3, test 5, ood 3" in commit["description"]
    assert repo.tags == {config: commit["oid"]} and f"tagged {config}" in r.output

    # exactly the files of the release, byte for byte (no .linebench-run.json)
    files = repo.branches["main"]
    assert files == uploaded_files(release)
    assert (release / ".linebench-run.json").exists() and ".linebench-run.json" not in files
    card = files["README.md"].decode()
    assert 'load_dataset("linebench/tracing"' in card and f'"linebench/tracing", "{config}"' in card

    # what the Hub holds loads, by default config and by name, with the same rows as the folder
    copy = download(files, tmp_path / "copy")
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    local = load_dataset(str(release))
    remote = load_dataset(str(copy))
    named = load_dataset(str(copy), config, split="test")
    assert set(remote) == {"train", "validation", "test", "ood"}
    assert named["id"] == remote["test"]["id"] == local["test"]["id"]
    a, b = local["ood"].with_format("numpy")[:], remote["ood"].with_format("numpy")[:]
    assert np.array_equal(a["attn_qwen2.5-vl"], b["attn_qwen2.5-vl"]) and list(a["answer"]) == list(b["answer"])
    assert remote["train"][0]["image"].size == (448, 448)
    assert np.array_equal(np.asarray(remote["train"][0]["image"]), np.asarray(local["train"][0]["image"]))

    # the token went only into the Authorization header
    assert hub.seen_authorization <= {f"Bearer {hub.token}", ""}
    assert hub.token not in r.output


def test_a_smaller_release_replaces_stale_shards_and_keeps_the_tag(hub, tmp_path):
    folder = make_release(tmp_path / "big", tmp_path, n_train=12)  # 3 train shards
    assert push(str(folder), "--repo-id", "alice/tr").exit_code == 0
    repo = hub.repos["alice/tr"]
    assert sum(p.startswith("data/train-") for p in repo.branches["main"]) == 3
    folder = make_release(tmp_path / "big", tmp_path, n_train=5)  # 2 train shards, same generator
    r = push(str(folder), "--repo-id", "alice/tr")
    assert r.exit_code == 0, r.output
    assert repo.branches["main"] == uploaded_files(folder)  # the third shard is gone
    assert len(repo.tags) == 1 and "already exists" in r.output


def test_revision_and_pull_request(release, hub):
    r = push(str(release), "--repo-id", "linebench/tracing", "--revision", "next")
    assert r.exit_code == 0, r.output
    repo = hub.repos["linebench/tracing"]
    assert repo.branches["main"] == {} and repo.branches["next"] == uploaded_files(release)
    assert repo.tags == {}  # only main is tagged

    r = push(str(release), "--repo-id", "linebench/tracing", "--create-pr")
    assert r.exit_code == 0, r.output
    assert repo.branches["main"] == {} and repo.branches["refs/pr/1"] == uploaded_files(release)
    assert len(repo.prs) == 1 and "pull request: https://huggingface.co/datasets/linebench/tracing/discussions/1" in r.output


def test_dry_run_lists_files_validates_the_card_and_uploads_nothing(release, hub):
    before = (release / "README.md").read_bytes()
    r = push(str(release), "--repo-id", "linebench/tracing", "--dry-run")
    assert r.exit_code == 0, r.output
    for path in uploaded_files(release):
        assert path in r.output
    assert "checked locally and by the Hub" in r.output and "tag: core" in r.output
    assert hub.requests == [("POST", "/api/validate-yaml")] and hub.repos == {}
    assert (release / "README.md").read_bytes() == before


def test_dry_run_offline_checks_the_card_locally(release):
    r = push(str(release), "--repo-id", "linebench/tracing", "--dry-run")
    assert r.exit_code == 0 and "the Hub's check skipped: offline mode" in r.output, r.output


def test_the_console_script_exits_cleanly(release):
    """`import datasets` + a parquet read made ~3 of 4 runs abort at interpreter exit (exit 134,
    apache/arrow#45214); the console script exits hard once its output is flushed."""
    import subprocess
    import sys

    for _ in range(3):
        p = subprocess.run([sys.executable, "-m", "linebench.cli", "push", str(release), "--repo-id", "a/b", "--dry-run"], capture_output=True, text=True)
        assert p.returncode == 0 and "10 files" in p.stdout, (p.returncode, p.stderr[-500:])


def test_contributors_push_pull_requests(release, hub):
    hub.orgs["linebench"] = "contributor"
    assert "--create-pr" in one_line_error(push(str(release), "--repo-id", "linebench/tracing"), hub)


# --------------------------------------------------------------------------- error paths


def _forbidden(hub: FakeHub, how: str) -> None:
    if how == "read-token":
        hub.role = "read"
    elif how == "fine-grained":
        hub.role = "fineGrained"
        hub.fine_grained = {"global": [], "scoped": [{"entity": {"type": "org", "name": "linebench"}, "permissions": ["repo.content.read"]}]}
    elif how == "read-member":
        hub.orgs["linebench"] = "read"


@pytest.mark.parametrize(
    "how, message",
    [
        ("read-token", "read-only"),
        ("fine-grained", "no repo.write permission"),
        ("read-member", "read-only member of 'linebench'"),
    ],
)
def test_no_write_access_fails_before_any_upload(release, hub, how, message):
    _forbidden(hub, how)
    line = one_line_error(push(str(release), "--repo-id", "linebench/tracing"), hub)
    assert message in line
    assert hub.requests == [("GET", "/api/whoami-v2")]


def test_private_refuses_a_public_repo(release, hub):
    assert push(str(release), "--repo-id", "alice/pub").exit_code == 0
    line = one_line_error(push(str(release), "--repo-id", "alice/pub", "--private"), hub)
    assert "exists and is public" in line and len(hub.repos["alice/pub"].commits) == 1


def test_someone_elses_namespace(release, hub):
    line = one_line_error(push(str(release), "--repo-id", "bob/tracing"), hub)
    assert "belongs to 'bob'" in line and "alice, linebench" in line
    assert hub.repos == {}


def test_no_token(release, hub, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # no stored login either
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "token"))
    line = one_line_error(push(str(release), "--repo-id", "linebench/tracing"), hub)
    assert "no Hugging Face token" in line and hub.requests == []


def test_rejected_token_is_never_echoed(release, hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_WRONGwrongWRONG0000")
    r = push(str(release), "--repo-id", "linebench/tracing")
    line = one_line_error(r, hub)
    assert "token was rejected" in line and "hf_WRONG" not in r.output


def test_offline_mode(release, hub, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    assert "offline mode is on" in one_line_error(push(str(release), "--repo-id", "linebench/tracing"), hub)
    assert hub.requests == []


def test_network_down(release, hub):
    hub.down = True
    assert "cannot reach the Hub" in one_line_error(push(str(release), "--repo-id", "linebench/tracing"), hub)


def test_card_rejected_by_the_hub(release, hub):
    hub.card_errors = ["license: unknown value"]
    line = one_line_error(push(str(release), "--repo-id", "linebench/tracing"), hub)
    assert "rejects the dataset card" in line and hub.repos == {}


@pytest.mark.parametrize("repo_id", ["tracing", "a/b/c", "linebench/bad name"])
def test_bad_repo_ids(release, hub, repo_id):
    assert "--repo-id" in one_line_error(push(str(release), "--repo-id", repo_id), hub)
    assert hub.requests == []


def test_pull_requests_target_main(release, hub):
    r = push(str(release), "--repo-id", "alice/x", "--create-pr", "--revision", "dev")
    assert "drop --revision" in one_line_error(r, hub) and hub.requests == []


def test_a_damaged_folder_is_not_pushed(hub, tmp_path):
    folder = make_release(tmp_path / "f", tmp_path)
    shard = folder / read_manifest(folder)["shards"][-1]["path"]
    shard.write_bytes(shard.read_bytes()[:-1] + b"\0")
    assert "differs from manifest.json" in one_line_error(push(str(folder), "--repo-id", "alice/x"), hub)
    shard.unlink()
    assert "is missing" in one_line_error(push(str(folder), "--repo-id", "alice/x"), hub)
    (folder / "manifest.json").unlink()
    assert "no manifest.json" in one_line_error(push(str(folder), "--repo-id", "alice/x"), hub)
    assert hub.requests == []


# --------------------------------------------------------------------------- the real Hub (opt-in)


@pytest.mark.skipif(
    os.environ.get("LINEBENCH_LIVE_HUB") != "1" or not os.environ.get("HF_TOKEN"),
    reason="live Hub test: set LINEBENCH_LIVE_HUB=1 and HF_TOKEN (pushes to a private scratch repo)",
)
def test_live_push_and_load(release, monkeypatch):  # pragma: no cover - needs the network
    import uuid

    from datasets import load_dataset
    from huggingface_hub import HfApi, constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    user = HfApi().whoami()["name"]
    repo_id = f"{user}/linebench-scratch-{uuid.uuid4().hex[:8]}"
    try:
        r = push(str(release), "--repo-id", repo_id, "--private")
        assert r.exit_code == 0, r.output
        ds = load_dataset(repo_id, split="test", download_mode="force_redownload")
        assert ds["id"] == load_dataset(str(release), split="test")["id"]
    finally:
        HfApi().delete_repo(repo_id, repo_type="dataset", missing_ok=True)
