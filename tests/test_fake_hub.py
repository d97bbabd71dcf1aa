"""The real huggingface_hub client against tests/fake_hub.py: repos, branches, uploads, downloads, auth, failures."""

import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import HfApi
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import (
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils._runtime import is_xet_available

from tests.fake_hub import GITATTRIBUTES, FakeHub

TOKEN = "hf_fake_hub_test_token"
REPO = "babytrain/tiny-llama"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Online (whatever HF_HUB_OFFLINE says), no telemetry, and any lookup of a host other than the
    loopback fails the test: the client must only ever talk to the fake. (Without HF_HUB_DISABLE_TELEMETRY,
    building the user agent would fetch https://huggingface.co/api/agent-harnesses: constants.ENDPOINT, not
    the HfApi's endpoint. The constants are read at import, hence the monkeypatching.)"""
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    foreign, real_getaddrinfo = [], socket.getaddrinfo

    def guarded(host, *args, **kwargs):
        if host not in LOOPBACK:
            foreign.append(host)
            raise socket.gaierror(f"tests may not reach {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    yield
    assert not foreign, f"the client tried to reach {foreign}"


@pytest.fixture
def hub():
    with FakeHub(token=TOKEN) as fake:
        yield fake
        assert not fake.server_errors, fake.server_errors[0]


@pytest.fixture
def api(hub):
    return HfApi(endpoint=hub.url, token=TOKEN)


def write_folder(folder: Path, files: dict[str, bytes]) -> dict[str, bytes]:
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    return files


def model_files(seed: int) -> dict[str, bytes]:
    """A config, a ~300 KB model.safetensors, a 2 MiB binary and a README: different bytes per seed."""
    rng = random.Random(seed)
    return {
        "config.json": b'{"hidden_size": %d}' % (64 + seed),
        "model.safetensors": rng.randbytes(300_000),
        "optimizer/state.bin": rng.randbytes(2 * 1024 * 1024),
        "README.md": b"---\nlicense: mit\n---\n# tiny model %d\n" % seed,
    }


def read_tree(folder: str | Path) -> dict[str, bytes]:
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def statuses(hub, path_contains: str) -> list[int]:
    return [r.status for r in hub.requests_to(path_contains)]


def test_private_repo_upload_folder_to_main_and_download_back(hub, api, tmp_path):
    url = api.create_repo(REPO, private=True)
    assert url.repo_id == REPO and hub.is_private(REPO)
    api.create_repo(REPO, private=True, exist_ok=True)  # a 409 the client swallows

    local = write_folder(tmp_path / "final", model_files(0))
    info = api.upload_folder(folder_path=tmp_path / "final", repo_id=REPO, commit_message="final")
    assert info.oid == hub.head(REPO, "main") and info.repo_url.repo_id == REPO
    assert hub.files(REPO, "main") == {**local, ".gitattributes": GITATTRIBUTES}
    assert [c.message for c in hub.commits(REPO)] == ["initial commit", "final"]
    assert sorted(api.list_repo_files(REPO)) == sorted([*local, ".gitattributes"])

    snapshot = api.snapshot_download(REPO, cache_dir=tmp_path / "cache")
    assert read_tree(snapshot) == hub.files(REPO, "main")
    assert Path(snapshot).name == info.oid  # snapshot_download pinned the commit from repo_info
    assert all(r.path.startswith(("/api/", f"/{REPO}/resolve/")) for r in hub.requests)


def test_branches_per_milestone(hub, api, tmp_path):
    api.create_repo(REPO, private=True)
    main_files = write_folder(tmp_path / "final", model_files(0))
    api.upload_folder(folder_path=tmp_path / "final", repo_id=REPO)
    uploaded = {}
    for seed, branch in enumerate(["tokens-25M", "chck_1M"], start=1):
        api.create_branch(REPO, branch=branch)
        assert hub.files(REPO, branch) == hub.files(REPO, "main")  # a new branch starts as a copy of main
        uploaded[branch] = write_folder(tmp_path / branch, {**model_files(seed), f"{branch}.txt": branch.encode()})
        api.upload_folder(folder_path=tmp_path / branch, repo_id=REPO, revision=branch, commit_message=branch)

    refs = api.list_repo_refs(REPO)
    assert {ref.name for ref in refs.branches} == {"main", "tokens-25M", "chck_1M"} == hub.branches(REPO)
    assert hub.files(REPO, "main") == {**main_files, ".gitattributes": GITATTRIBUTES}  # untouched by branch commits
    assert [c.message for c in hub.commits(REPO, branch="chck_1M")] == ["chck_1M"]
    for branch, files in uploaded.items():
        assert {ref.name: ref.target_commit for ref in refs.branches}[branch] == hub.head(REPO, branch)
        for name in ("model.safetensors", "optimizer/state.bin", f"{branch}.txt"):
            path = api.hf_hub_download(REPO, name, revision=branch, cache_dir=tmp_path / "cache")
            assert Path(path).read_bytes() == files[name]
        snapshot = api.snapshot_download(REPO, revision=branch, cache_dir=tmp_path / "cache")
        assert read_tree(snapshot) == {**files, ".gitattributes": GITATTRIBUTES}
    assert "chck_1M.txt" not in api.list_repo_files(REPO, revision="tokens-25M")

    with pytest.raises(HfHubHTTPError) as exists:
        api.create_branch(REPO, branch="chck_1M")
    assert exists.value.response.status_code == 409
    api.create_branch(REPO, branch="chck_1M", exist_ok=True)
    with pytest.raises(RevisionNotFoundError):  # commits go to existing branches only
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO, revision="tokens-50M")
    with pytest.raises(RemoteEntryNotFoundError):
        api.hf_hub_download(REPO, "missing.bin", revision="chck_1M", cache_dir=tmp_path / "cache")
    with pytest.raises(RepositoryNotFoundError):
        api.repo_info("babytrain/no-such-model")


def test_writes_need_the_token(hub, api, tmp_path):
    anonymous, wrong = HfApi(endpoint=hub.url, token=False), HfApi(endpoint=hub.url, token="hf_wrong")
    for client in (anonymous, wrong):
        with pytest.raises(HfHubHTTPError) as refused:
            client.create_repo(REPO)
        assert refused.value.response.status_code == 401
    assert REPO not in hub.repos() and [r.status for r in hub.requests] == [401, 401]

    api.create_repo(REPO, private=True)
    for client in (anonymous, wrong):
        with pytest.raises(HfHubHTTPError) as refused:
            client.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO)
        assert refused.value.response.status_code == 401
        with pytest.raises(HfHubHTTPError):
            client.create_branch(REPO, branch="tokens-25M")
    with pytest.raises(RepositoryNotFoundError):  # a private repo is invisible without the token
        anonymous.list_repo_refs(REPO)
    assert hub.branches(REPO) == {"main"} and set(hub.files(REPO)) == {".gitattributes"}


def test_failed_commit_then_retry_loop_succeeds(hub, api):
    """create_commit/upload_file POST the commit once: a 5xx reaches the caller as HfHubHTTPError."""
    api.create_repo(REPO)
    api.create_branch(REPO, branch="chck_1M")

    def push():
        return api.upload_file(
            path_or_fileobj=b"weights", path_in_repo="model.safetensors", repo_id=REPO, revision="chck_1M"
        )

    hub.fail_next(1, method="POST", path_contains="/commit/chck_1M")
    with pytest.raises(HfHubHTTPError) as failed:
        push()
    assert failed.value.response.status_code == 500
    assert "model.safetensors" not in hub.files(REPO, "chck_1M")  # nothing was applied

    hub.fail_next(2, method="POST", path_contains="/commit/chck_1M", status=503)
    for attempt in range(5):  # noqa: B007  (read after the loop)
        try:
            info = push()
            break
        except HfHubHTTPError as error:
            assert error.response.status_code >= 500
    assert attempt == 2 and info.oid == hub.head(REPO, "chck_1M")
    assert hub.files(REPO, "chck_1M")["model.safetensors"] == b"weights"
    assert statuses(hub, "/commit/chck_1M") == [500, 503, 503, 200]


def test_lost_commit_response_then_retry_is_a_no_op(hub, api):
    """The commit lands but its answer is a 500: the retry finds the file unchanged and makes no commit."""
    api.create_repo(REPO)
    hub.fail_next(1, method="POST", path_contains="/commit/main", after_handling=True)
    with pytest.raises(HfHubHTTPError):
        api.upload_file(path_or_fileobj=b"weights", path_in_repo="model.safetensors", repo_id=REPO)
    landed = hub.head(REPO)
    info = api.upload_file(path_or_fileobj=b"weights", path_in_repo="model.safetensors", repo_id=REPO)
    assert info.oid == landed and len(hub.commits(REPO)) == 2
    assert statuses(hub, "/commit/main") == [500]  # the retry asked repo_info instead of committing


@pytest.mark.parametrize("xet", [True, False], ids=["with-hf_xet", "without-hf_xet"])
def test_upload_folder_commit_5xx(hub, api, tmp_path, monkeypatch, xet):
    """With hf_xet installed upload_folder retries a 5xx commit itself (backoff from 1 s); without it, it raises."""
    if xet and not is_xet_available():
        pytest.skip("hf_xet is not installed")
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", not xet)
    api.create_repo(REPO)
    files = write_folder(tmp_path / "final", {"config.json": b"{}", "model.safetensors": b"\0" * 1000})
    hub.fail_next(1, method="POST", path_contains="/commit/")
    if xet:
        api.upload_folder(folder_path=tmp_path / "final", repo_id=REPO)
        assert statuses(hub, "/commit/") == [500, 200]
    else:
        with pytest.raises(HfHubHTTPError):
            api.upload_folder(folder_path=tmp_path / "final", repo_id=REPO)
        api.upload_folder(folder_path=tmp_path / "final", repo_id=REPO)
        assert statuses(hub, "/commit/") == [500, 200]
    assert hub.files(REPO) == {**files, ".gitattributes": GITATTRIBUTES}


SUBPROCESS = """
import os, socket, sys
real_getaddrinfo = socket.getaddrinfo
def guarded(host, *args, **kwargs):
    if host not in ("127.0.0.1", "localhost"):
        raise SystemExit(f"tried to reach {host}")
    return real_getaddrinfo(host, *args, **kwargs)
socket.getaddrinfo = guarded

from huggingface_hub import HfApi, hf_hub_download
api = HfApi()  # endpoint and token from HF_ENDPOINT and HF_TOKEN
assert api.endpoint == os.environ["HF_ENDPOINT"], api.endpoint
repo_id = sys.argv[1]
api.create_branch(repo_id, branch="tokens-25M", exist_ok=True)
api.upload_file(path_or_fileobj=b"from a subprocess", path_in_repo="sub/hello.txt", repo_id=repo_id,
                revision="tokens-25M")
print(open(hf_hub_download(repo_id, "sub/hello.txt", revision="tokens-25M"), "rb").read().decode())
"""


@pytest.mark.e2e
def test_subprocess_uses_hf_endpoint_and_hf_token(hub, api, tmp_path):
    api.create_repo(REPO, private=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HUGGINGFACE_HUB_CACHE")
    }
    env.update(
        HF_ENDPOINT=hub.url,
        HF_TOKEN=TOKEN,
        HF_HOME=str(tmp_path / "home"),
        HF_HUB_CACHE=str(tmp_path / "cache"),
        HF_HUB_DISABLE_TELEMETRY="1",
        NO_PROXY="127.0.0.1,localhost",
    )
    result = subprocess.run(
        [sys.executable, "-c", SUBPROCESS, REPO], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "from a subprocess"
    assert hub.files(REPO, "tokens-25M")["sub/hello.txt"] == b"from a subprocess"
    assert "sub/hello.txt" not in hub.files(REPO, "main")


def test_the_pusher_retries_sends_each_snapshot_to_its_branch_and_reports_what_failed(hub, tmp_path):
    """common/training/hub.py's HubPusher in this process, against the fake: a failed branch creation
    is retried, a milestone goes to its branch (and its local copy after it with --milestone_store
    hub), final/ to main (kept), and a push that fails every attempt is reported, not raised."""
    from common.training.hub import HubPusher

    pusher = HubPusher(REPO, private=True, attempts=2, first_wait=0.01)
    pusher.api, pusher.secret = HfApi(endpoint=hub.url, token=TOKEN), TOKEN
    pusher.open()
    milestone = write_folder(tmp_path / "tokens-25M", {"config.json": b"{}", "model.safetensors": b"25M"})
    write_folder(tmp_path / "final", {"config.json": b"{}", "model.safetensors": b"final"})
    write_folder(tmp_path / "tokens-50M", {"config.json": b"{}", "model.safetensors": b"50M"})
    hub.fail_next(1, method="POST", path_contains="/branch/tokens-25M", status=503)
    pusher.push(tmp_path / "tokens-25M", "tokens-25M", delete_after=True)
    pusher.push(tmp_path / "final", "final", delete_after=True)
    hub.fail_next(2, method="POST", path_contains="/branch/tokens-50M", status=503)
    pusher.push(tmp_path / "tokens-50M", "tokens-50M")
    failed = pusher.finish()
    assert [push.branch for push in failed] == ["tokens-50M"]
    assert hub.branches(REPO) == {"main", "tokens-25M"} and hub.is_private(REPO)
    assert hub.files(REPO, "tokens-25M")["model.safetensors"] == milestone["model.safetensors"]
    assert hub.files(REPO, "main")["model.safetensors"] == b"final"
    assert not (tmp_path / "tokens-25M").exists() and (tmp_path / "final").is_dir()  # main is never deleted


def test_a_push_the_hub_never_confirmed_is_pushed_again_by_the_next_launch(hub, tmp_path):
    from common.training.hub import HubPusher

    def pusher():
        made = HubPusher(REPO, private=False, attempts=1, first_wait=0.01, state_file=tmp_path / "hub_pushes.json")
        made.api, made.secret = HfApi(endpoint=hub.url, token=TOKEN), TOKEN
        return made.open()

    write_folder(tmp_path / "tokens-25M", {"config.json": b"{}", "model.safetensors": b"25M"})
    first = pusher()
    hub.fail_next(1, method="POST", path_contains="/branch/tokens-25M", status=503)
    first.push(tmp_path / "tokens-25M", "tokens-25M")
    assert [push.branch for push in first.finish()] == ["tokens-25M"]  # the launch ends (or is killed) here
    pending = json.loads((tmp_path / "hub_pushes.json").read_text())
    assert [entry["branch"] for entry in pending] == ["tokens-25M"]
    second = pusher()  # the resumed launch
    second.push_pending()
    assert second.finish() == []
    assert hub.files(REPO, "tokens-25M")["model.safetensors"] == b"25M"
    assert json.loads((tmp_path / "hub_pushes.json").read_text()) == []
