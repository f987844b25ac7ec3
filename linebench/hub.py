"""`linebench push`: publish a generated folder to the Hugging Face Hub as one commit.

What goes up is exactly what `load_dataset` needs and nothing else: the card (README.md, rebuilt
to name the repo), manifest.json, assets/example.png and the shards manifest.json lists (each
checked against its sha256 first). `upload_folder` skips blobs the Hub already holds, so a push
that broke off is re-run with the same command. Remote shards the release does not list are
deleted in the same commit, so a smaller release never leaves stale shards behind its globs.

Every failure the user can fix (no token, a read-only token, someone else's namespace, offline
mode, no network, an invalid card) is a `PushError`: one line, and never the token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import __version__
from .card import card_for_folder, config_name
from .errors import LinebenchError
from .folder import CARD, EXAMPLE, MANIFEST, inside, manifest_problems, read_manifest, sha256_bytes, sha256_file, write_manifest

REPO_TYPE = "dataset"
REMOTE_OWNED = ["data/*", "assets/*"]  # remote files here that the release does not list are deleted


class PushError(LinebenchError):
    """A push that cannot (or did not) go through: the message says why and what to do."""


@dataclass
class PushPlan:
    folder: Path
    repo_id: str
    config: str
    card: str  # the README.md that goes up
    files: list[tuple[str, int]]  # (path in the repo, bytes), README.md first
    commit_message: str
    commit_description: str
    tag: str | None  # official releases are tagged with their config name

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self.files)


@dataclass
class PushResult:
    url: str
    commit_url: str
    pr_url: str | None = None
    tag: str | None = None
    notes: list[str] = field(default_factory=list)


def check_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts):
        raise PushError(f"--repo-id takes ORG/NAME (e.g. linebench/tracing), got {repo_id!r}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise PushError(f"--repo-id {repo_id!r} is not a valid Hub repo id: {str(e).splitlines()[0]}") from None


def plan(folder: Path, repo_id: str, progress: Callable[[int, int], None] | None = None) -> PushPlan:
    """Check a finished folder (every shard present and matching its sha256) and build the card
    and the file list; touches neither the folder nor the network."""
    check_repo_id(repo_id)
    folder = Path(folder)
    if not folder.is_dir():
        raise PushError(f"{folder} is not a folder")
    manifest = read_manifest(folder)
    problems = manifest_problems(manifest, generator=False)
    if problems:
        raise PushError(f"{folder}/{MANIFEST}: {problems[0]}; run `linebench verify {folder}`")
    report = progress or (lambda done, total: None)
    shards: list[tuple[str, int]] = []
    for i, shard in enumerate(manifest["shards"]):
        path = folder / shard["path"]
        if not path.is_file():
            raise PushError(f"{shard['path']} is missing: run `linebench generate ... --resume` or `linebench verify {folder}`")
        if not inside(folder, path):
            raise PushError(f"{shard['path']} links to a file outside {folder}: refusing to upload it")
        size = path.stat().st_size
        if size != shard["bytes"] or sha256_file(path) != shard["sha256"]:
            raise PushError(f"{shard['path']} differs from {MANIFEST} (sha256): run `linebench verify {folder}`")
        shards.append((shard["path"], size))
        report(i + 1, len(manifest["shards"]))
    card = card_for_folder(folder, repo_id)
    files_ = manifest["files"]
    for rel in (EXAMPLE, CARD):
        path = folder / rel
        if not path.is_file() or not inside(folder, path):
            raise PushError(f"{folder}/{rel} is missing: regenerate the folder")
        sha = sha256_file(path)
        # README.md may already be the card for this repo (a push that broke off after writing it)
        if sha != files_[rel]["sha256"] and not (rel == CARD and sha == sha256_bytes(card.encode("utf-8"))):
            raise PushError(f"{folder}/{rel} differs from {MANIFEST} (sha256): run `linebench verify {folder}`")
    validate_card_locally(card, folder, manifest)
    config = config_name(manifest)
    splits = ", ".join(f"{d['split']} {d['n']:,}" for d in manifest["specs"])
    command = manifest["command"]
    what = f"release {config} ({command})" if config != "default" else f"{manifest['task']} {manifest['generator_version']}, {splits}"
    files = [("README.md", len(card.encode())), (MANIFEST, (folder / MANIFEST).stat().st_size)]
    files.append(("assets/example.png", (folder / "assets" / "example.png").stat().st_size))
    return PushPlan(
        folder=folder,
        repo_id=repo_id,
        config=config,
        card=card,
        files=files + shards,
        commit_message=f"linebench {__version__}: {what}",
        commit_description=(
            f"Generated by linebench {manifest.get('linebench_version', '?')}, generator {manifest['generator_version']} "
            f"(config `{config}`).\n\nRows: {splits}.\n\n```\n{command}\n```\n"
        ),
        tag=config if config != "default" else None,
    )


def validate_card_locally(card: str, folder: Path, manifest: dict[str, Any]) -> None:
    """The card's YAML parses with huggingface_hub's card tools, has exactly one default config
    whose data_files cover every split's shards, and declares the features the shards carry."""
    import fnmatch
    import json

    import pyarrow.parquet as pq
    from datasets import Features
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard

    try:
        data = DatasetCard(card).data
    except Exception as e:  # the card is ours: a failure here is a bug, said plainly
        raise PushError(f"the dataset card does not parse: {e}") from None
    problems = []
    if data.license != "cc-by-4.0":
        problems.append(f"license is {data.license!r}")
    configs = MetadataConfigs.from_dataset_card_data(data)
    defaults = [name for name, c in configs.items() if c.get("default")]
    if len(defaults) != 1:
        problems.append(f"{len(defaults)} default configs")
    shard_paths = [s["path"] for s in manifest["shards"]]
    for name, c in configs.items():
        for entry in c.get("data_files", []):
            matched = {p for p in shard_paths if fnmatch.fnmatch(p, entry["path"])}
            expected = {s["path"] for s in manifest["shards"] if s["split"] == entry["split"]}
            if matched != expected:
                problems.append(f"config {name}: {entry['path']} matches {len(matched)} shard(s), not the {len(expected)} of split {entry['split']}")
    infos = DatasetInfosDict.from_dataset_card_data(data)
    stored = pq.read_schema(folder / shard_paths[0]).metadata or {}
    shard_features = Features.from_dict(json.loads(stored[b"huggingface"])["info"]["features"]) if b"huggingface" in stored else None
    for name, info in infos.items():
        if shard_features is not None and info.features != shard_features:
            problems.append(f"config {name}: dataset_info.features differ from the shards' features")
    if problems:
        raise PushError("the dataset card is invalid: " + "; ".join(problems))


# --------------------------------------------------------------------------- the network side


def _network_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError]
    for module in ("httpx2", "httpx"):
        try:
            errors.append(__import__(module).TransportError)
        except (ImportError, AttributeError):
            pass
    try:
        import requests

        errors.append(requests.ConnectionError)
    except ImportError:
        pass
    return tuple(errors)


class _Redacting:
    """Turns Hub and network errors into PushError with the token scrubbed from the message."""

    def __init__(self, token: str, doing: str):
        self.token, self.doing = token, doing

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or isinstance(exc, (PushError, KeyboardInterrupt)):
            return False
        from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

        if isinstance(exc, OfflineModeIsEnabled):
            raise PushError(OFFLINE) from None
        if isinstance(exc, HfHubHTTPError):
            status = getattr(exc.response, "status_code", None)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if status == 401:
                message = "the Hugging Face token was rejected (invalid or expired): set a valid HF_TOKEN or run `hf auth login`"
            elif status == 403:
                message = f"{self.doing}: forbidden (403): this token cannot write there ({first})"
            else:
                message = f"{self.doing}: the Hub answered {status}: {first}"
            raise PushError(redact(message, self.token)) from None
        if isinstance(exc, _network_errors()):
            raise PushError(redact(f"{self.doing}: cannot reach the Hub ({type(exc).__name__}: {exc}); check the network", self.token)) from None
        return False


OFFLINE = "offline mode is on (HF_HUB_OFFLINE=1): unset it to push"


def redact(text: str, token: str | None) -> str:
    return text.replace(token, "hf_***") if token else text


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _can_write(whoami: dict[str, Any], namespace: str, repo_id: str, create_pr: bool) -> str | None:
    """Why this login cannot write to `namespace`, or None if it can (as far as whoami says)."""
    user = whoami.get("name", "?")
    orgs = {o.get("name"): o for o in whoami.get("orgs", []) or []}
    if namespace != user and namespace not in orgs:
        mine = ", ".join([user, *sorted(n for n in orgs if n)])
        return f"{repo_id} belongs to {namespace!r}, which is neither you nor one of your organisations ({mine})"
    token = (whoami.get("auth") or {}).get("accessToken") or {}
    role = token.get("role")
    if role == "read":
        return "the token is read-only: create a token with write access (https://huggingface.co/settings/tokens)"
    if role == "fineGrained":
        fine = token.get("fineGrained") or {}
        granted = set(fine.get("global") or [])
        for scoped in fine.get("scoped") or []:
            if (scoped.get("entity") or {}).get("name") in (namespace, repo_id):
                granted |= set(scoped.get("permissions") or [])
        if "repo.write" not in granted:
            return f"the fine-grained token has no repo.write permission on {namespace!r}"
    if namespace in orgs:
        org_role = orgs[namespace].get("roleInOrg")
        if org_role == "read":
            return f"you are a read-only member of {namespace!r}"
        if org_role == "contributor" and not create_pr:
            return f"as a contributor to {namespace!r} you can only open pull requests: add --create-pr"
    return None


def preflight(api, repo_id: str, token: str, create_pr: bool = False) -> str:
    """Fail fast, before anything is uploaded (offline mode and the token are checked by the
    caller). Returns the user's name."""
    with _Redacting(token, "checking the token"):
        whoami = api.whoami(token=token)
    why = _can_write(whoami, repo_id.split("/")[0], repo_id, create_pr)
    if why:
        raise PushError(f"cannot push to {repo_id}: {why}")
    return whoami.get("name", "?")


def validate_card_on_hub(card: str, token: str | None) -> None:
    from huggingface_hub import DatasetCard

    with _Redacting(token or "", "validating the card on the Hub"):
        try:
            DatasetCard(card).validate(repo_type=REPO_TYPE)
        except ValueError as e:
            raise PushError(f"the Hub rejects the dataset card: {str(e).strip().splitlines()[0]}") from None


def write_card(folder: Path, card: str) -> None:
    """README.md becomes the card that goes up, and manifest.json records its new checksum (both
    atomically, the card first: a crash in between leaves a card the next push recognises)."""
    from .fsio import atomic_write, why

    data = card.encode("utf-8")
    manifest = read_manifest(folder)
    try:
        atomic_write(folder / CARD, data)
        manifest["files"][CARD] = {"sha256": sha256_bytes(data), "bytes": len(data)}
        write_manifest(folder, manifest)
    except OSError as e:
        raise PushError(f"cannot update {folder}/{CARD}: {why(e)}") from None


def get_token() -> str | None:
    from huggingface_hub import get_token as hf_token

    return hf_token()


def push(
    folder: Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    create_pr: bool = False,
    token: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PushResult:
    """Publish `folder` to the dataset repo `repo_id` in one commit (see the module docstring)."""
    from huggingface_hub import HfApi

    if create_pr and revision not in (None, "main"):
        raise PushError("--create-pr opens a pull request against main: drop --revision")
    the_plan = plan(folder, repo_id, progress)
    token = token or get_token()
    if _offline():
        raise PushError(OFFLINE)
    if not token:
        raise PushError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (a token with write access)")
    if not token.isascii() or not token.isprintable():
        raise PushError("the Hugging Face token has a character a token cannot have (a bad paste?): set HF_TOKEN again")
    api = HfApi(token=token)
    preflight(api, repo_id, token, create_pr)
    validate_card_on_hub(the_plan.card, token)
    # The card that goes up names the repo; it is written into the folder too, so the folder on
    # disk stays exactly what the Hub holds.
    write_card(the_plan.folder, the_plan.card)
    result = PushResult(url=f"https://huggingface.co/datasets/{repo_id}", commit_url="")
    branch = revision if revision not in (None, "main") else None
    with _Redacting(token, f"creating {repo_id}"):
        if private and api.repo_exists(repo_id, repo_type=REPO_TYPE) and not api.repo_info(repo_id, repo_type=REPO_TYPE).private:
            raise PushError(f"{repo_id} exists and is public: drop --private, or make it private on the Hub first")
        api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
        if branch and not create_pr:
            api.create_branch(repo_id, branch=branch, repo_type=REPO_TYPE, exist_ok=True)
    with _Redacting(token, f"uploading to {repo_id}"):
        info = api.upload_folder(
            repo_id=repo_id,
            repo_type=REPO_TYPE,
            folder_path=the_plan.folder,
            allow_patterns=[path for path, _ in the_plan.files],
            delete_patterns=REMOTE_OWNED,
            commit_message=the_plan.commit_message,
            commit_description=the_plan.commit_description,
            revision=revision,
            create_pr=create_pr,
        )
    result.commit_url = str(info.commit_url)
    result.pr_url = str(info.pr_url) if getattr(info, "pr_url", None) else None
    if the_plan.tag and not create_pr and branch is None:
        with _Redacting(token, f"tagging {repo_id}"):
            tags = {t.name for t in api.list_repo_refs(repo_id, repo_type=REPO_TYPE).tags}
            if the_plan.tag in tags:
                result.notes.append(f"tag {the_plan.tag} already exists; left where it is")
            else:
                api.create_tag(repo_id, tag=the_plan.tag, revision=info.oid, repo_type=REPO_TYPE, tag_message=the_plan.commit_message)
                result.tag = the_plan.tag
    return result


def dry_run(folder: Path, repo_id: str, progress: Callable[[int, int], None] | None = None) -> tuple[PushPlan, str]:
    """What `push` would upload, and how the card was validated (on the Hub too unless offline)."""
    the_plan = plan(folder, repo_id, progress)
    if _offline():
        return the_plan, "valid (checked locally; the Hub's check skipped: offline mode)"
    try:
        validate_card_on_hub(the_plan.card, get_token())
    except PushError as e:
        if "cannot reach the Hub" in str(e):
            return the_plan, "valid (checked locally; the Hub's check skipped: no network)"
        raise
    return the_plan, "valid (checked locally and by the Hub)"

