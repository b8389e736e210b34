"""Admitting a spec submitted to the service: the command line's own checks, then the service's confinement.

A submitted spec is YAML text, read with a safe loader (``spec.parse_yaml``): data, never code. It is checked exactly as
``autopeft search run`` checks a spec (``autopeft.api.resolve`` and ``autopeft.search.launch.prepare``: fields, model,
space against the model, the data's columns and labels), so the page and the HTTP API give the command line's
errors, before any job starts. Then what a spec could reach on the service's machines is confined:

- its searches go to the service's database (a spec naming another is refused: a spec must not make the service
  write to, or read from, a database its operator did not configure);
- its output folder lies under the service's ``runs`` folder;
- the files it reads (data, a local model folder, a search-space file) lie under the service's root (uploads) or
  the bundled examples; a dataset is a hub name, not a folder; a ``python-package:`` model is one the service
  ships (resolving it imports the module); earlier searches to start from are in the service's database.

An admitted spec is written, resolved, to ``ROOT/specs/NAME.yaml``, which the job runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from autopeft.errors import UserError
from autopeft.spec import (
    PACKAGE_MODEL_PREFIX,
    PROJECT_ROOT,
    SearchSpec,
    WarmStartSource,
    normalise_storage_url,
    parse_yaml,
    yaml_problem,
)
from autopeft.spec import timestamped_name as stamped_name

# The checkout's bundled examples. An installed package has none: its PROJECT_ROOT is site-packages, whose
# "examples" folder, if any, belongs to some other distribution.
EXAMPLES_DIR: Path | None = PROJECT_ROOT / "examples" if (PROJECT_ROOT / "pyproject.toml").is_file() else None
_NAME_LENGTH = 100
_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{_NAME_LENGTH - 1}}}")
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


@dataclass(frozen=True)
class ServiceConfig:
    """Where the service keeps what it is given and where its searches go."""

    storage_url: str  # every launched search's database
    root: Path  # specs/ (admitted specs), uploads/ (files sent with a spec), runs/ (trials' adapters)
    job_server: str  # Ray's job server, http://HOST:8265

    @property
    def specs_dir(self) -> Path:
        return self.root / "specs"

    @property
    def uploads_dir(self) -> Path:
        return self.root / "uploads"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def readable_roots(self) -> tuple[Path, ...]:
        """Folders a submitted spec may read files from."""
        return (self.root.resolve(), *([EXAMPLES_DIR.resolve()] if EXAMPLES_DIR else []))


@dataclass(frozen=True)
class Admitted:
    name: str
    spec: SearchSpec
    spec_path: Path


def check_name(name: str, field: str = "name") -> str:
    if not _NAME.fullmatch(name):
        raise UserError(f"{field}: {name!r} is not a search name here; use letters, digits, '.', '_' and '-' (at "
                        "most 100), starting with a letter or digit")
    return name


def timestamped_name(stem: str) -> str:
    """The name of a search launched without one: the spec's own name (or the example's) and the time, so that
    launching one spec twice makes two searches. The stem is checked as it was written, naming the spec's field,
    and shortened to leave the time its room: a 90-character spec name was refused as a 106-character name the
    submitter never wrote."""
    return stamped_name(check_name(stem, "spec: name"), _NAME_LENGTH)


def bundled_examples() -> dict[str, Path]:
    """The specs shipped in examples/, by stem (the README demo is ``sst2``)."""
    return {path.stem: path for path in sorted(EXAMPLES_DIR.glob("*.yaml"))} if EXAMPLES_DIR else {}


def save_uploads(config: ServiceConfig, name: str, files: dict[str, bytes]) -> Path:
    """Store files sent with a spec in ``ROOT/uploads/NAME/``, where every worker of a shared root reads them; the
    spec names them by file name."""
    folder = config.uploads_dir / name
    for file_name in files:
        if not _FILE_NAME.fullmatch(file_name):
            raise UserError(f"upload {file_name!r}: use a plain file name (letters, digits, '.', '_', '-')")
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, content in files.items():
        (folder / file_name).write_bytes(content)
    return folder


def read_spec_text(text: str) -> dict[str, Any]:
    try:
        raw = parse_yaml(text)
    except yaml.YAMLError as exc:
        one_line = "\n" not in text.strip() and text.count(":") > 1
        # curl -d @FILE (even with a YAML content type) removes every line break: the spec arrives as one line
        hint = ("; the spec arrived as one line, as curl -d sends a file: send it with --data-binary @FILE"
                if one_line else "")
        raise UserError(f"spec: not valid YAML: {yaml_problem(exc)}{hint}") from None
    if not isinstance(raw, dict):
        raise UserError("spec: the spec must be a YAML mapping of fields")
    return raw


def admit(config: ServiceConfig, text: str, *, name: str | None = None, base_dir: Path | None = None,
          own_places: bool = False) -> Admitted:
    """Check ``text`` as the command line would and confine it; write the resolved spec for the job to run.

    ``base_dir``: where the spec's relative paths point (an example's folder, or the search's uploads).
    ``own_places``: the spec is one the service ships (a bundled example), whose ``storage`` and ``output_dir``
    are the service's own to set rather than the submitter's choice."""
    from autopeft.api import resolve
    from autopeft.search.launch import prepare
    from autopeft.store import storage

    raw = read_spec_text(text)
    if own_places:
        raw.pop("storage", None)
        raw.pop("output_dir", None)
    if name is not None:
        check_name(name)
    _confine_storage(config, raw)
    _confine_warm_start(config, raw)
    _confine_sources(raw)  # before resolve: resolving imports a model package and opens a dataset
    raw["output_dir"] = str(_confined_output(config, raw.get("output_dir", ".")))
    _confine_space(raw)
    base_dir = (base_dir or config.uploads_dir).resolve()
    if not own_places:
        _point_at_uploads(raw, base_dir)
    spec, name = resolve(raw, name=name, base_dir=base_dir, source="<submitted spec>")
    check_name(name)
    _confine_reads(config, raw, spec)
    storage.check_name_free(storage.open_storage(config.storage_url), name)
    prepare(spec, new=True)  # the model, the space on it, the data: the command line's checks, with its errors
    config.specs_dir.mkdir(parents=True, exist_ok=True)
    path = config.specs_dir / f"{name}.yaml"
    stored = spec.to_stored()
    # The job passes the database with --storage from its environment; the file never holds its password.
    stored["storage"] = storage.mask_url(config.storage_url)
    path.write_text(yaml.safe_dump(stored, sort_keys=False))
    return Admitted(name, spec, path)


def _point_at_uploads(raw: dict[str, Any], uploads: Path) -> None:
    """A spec copied from the checkout names its data as ``data/sst2/train.tsv``; uploads are kept by their name
    alone (a name with a folder is refused), so that path is never there: say what to write."""
    data = raw.get("data")
    for field in ("train", "eval"):
        value = data.get(field) if isinstance(data, dict) else None
        if not isinstance(value, str) or "/" not in value or (uploads / value).exists():
            continue
        if (uploads / Path(value).name).is_file():
            raise UserError(f"data.{field}: {value!r} is not among the uploads, which are kept by their name "
                            f"alone; write data.{field}: {Path(value).name}")


def _confine_storage(config: ServiceConfig, raw: dict[str, Any]) -> None:
    given = raw.get("storage")
    if given is not None and normalise_storage_url(str(given)) != config.storage_url:
        from autopeft.store.storage import mask_url

        raise UserError(f"storage: a search launched through the service goes to the service's database "
                        f"({mask_url(config.storage_url)}); remove storage from the spec")
    raw["storage"] = config.storage_url
    workers = raw.get("workers")
    if isinstance(workers, dict) and workers.get("ray_address"):
        # The trials, and the uploaded data with them, would go to whichever cluster the spec names.
        raise UserError("workers.ray_address: a search launched through the service runs on the service's Ray "
                        "cluster; remove ray_address from the spec")


def model_packages() -> set[str]:
    """The ``python-package:`` models a submitted spec may name: those the bundled examples use, and the decoders
    autopeft ships. Resolving one imports the module, so any other installed module is refused."""
    named = set()
    for path in bundled_examples().values():
        model = (read_spec_text(path.read_text()).get("model") or {}).get("name_or_path", "")
        if str(model).startswith(PACKAGE_MODEL_PREFIX):
            named.add(str(model).removeprefix(PACKAGE_MODEL_PREFIX))
    return named


def _confine_sources(raw: dict[str, Any]) -> None:
    """A model package must be one the service ships; a dataset must be a hub name, not a folder on its disk."""
    model = raw.get("model")
    name = str(model.get("name_or_path", "")) if isinstance(model, dict) else ""
    if name.startswith(PACKAGE_MODEL_PREFIX):
        module = name.removeprefix(PACKAGE_MODEL_PREFIX)
        allowed = model_packages()
        if module not in allowed and not module.startswith("autopeft.decoders."):
            raise UserError(f"model.name_or_path: {name!r} is not a model the service ships; use one of "
                            f"{', '.join(sorted(PACKAGE_MODEL_PREFIX + m for m in allowed))}, a hub name, or a "
                            f"model folder uploaded under the service's root")
    data = raw.get("data")
    dataset = data.get("dataset") if isinstance(data, dict) else None
    ref = str(dataset.get("name", "")) if isinstance(dataset, dict) else ""
    if ref and (ref.startswith((".", "/", "~", "\\")) or "\\" in ref or Path(ref).expanduser().exists()):
        raise UserError(f"data.dataset.name: {ref!r} is a path on the service's machine; name a dataset on the hub, "
                        f"or upload the files with the spec as data.train and data.eval")


def _confine_warm_start(config: ServiceConfig, raw: dict[str, Any]) -> None:
    """Earlier searches to start from must be the service's own: a URL could read any database the machine
    reaches."""
    sources = raw.get("warm_start") or []
    for source in sources if isinstance(sources, list) else []:
        try:
            url = WarmStartSource.model_validate(source).storage
        except ValueError:
            continue  # malformed: the spec's own validation names it
        if url and normalise_storage_url(str(url)) != config.storage_url:
            raise UserError(f"warm_start: {source!r} names another database; a search launched through the service "
                            f"starts from the service's own searches (give their names only)")


def _confined_output(config: ServiceConfig, output_dir: Any) -> Path:
    target = (config.runs_dir / str(output_dir)).resolve()
    if not target.is_relative_to(config.runs_dir.resolve()):
        raise UserError(f"output_dir: {output_dir!r} lies outside the service's runs folder; give a folder inside "
                        f"it (relative, e.g. runs/my-search) or remove output_dir")
    return target


def _confine_space(raw: dict[str, Any]) -> None:
    """A space is named (a bundled one) or given inline; a path could read any YAML file on the machine."""
    space = raw.get("search_space")
    if isinstance(space, str) and ("/" in space or "\\" in space or space.startswith(".")):
        raise UserError(f"search_space: {space!r} is a path; name a bundled space (e.g. lora, full) or give the "
                        "space inline")


def _confine_reads(config: ServiceConfig, raw: dict[str, Any], spec: SearchSpec) -> None:
    """Every file the spec reads must lie under the service's root or the bundled examples."""
    roots = config.readable_roots
    paths = {f"data.{field}": getattr(spec.data, field) for field in ("train", "eval")}
    model = str(raw.get("model", {}).get("name_or_path", "")) if isinstance(raw.get("model"), dict) else ""
    if model and not model.startswith(PACKAGE_MODEL_PREFIX) and Path(spec.model.name_or_path).is_dir():
        paths["model.name_or_path"] = spec.model.name_or_path  # a local folder (hub names and packages are not files)
    for field, value in paths.items():
        if value is not None and not any(Path(value).resolve().is_relative_to(root) for root in roots):
            examples = f", {EXAMPLES_DIR} for the bundled examples" if EXAMPLES_DIR else ""
            raise UserError(f"{field}: {value} lies outside the folders the service reads ({config.uploads_dir} "
                            f"for uploads{examples}); upload the file with the spec")
