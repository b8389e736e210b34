"""The HTTP API of the service (``autopeft serve``): the dashboard's launch and manage actions, for CI pipelines and
notebooks on other machines. Starlette (already installed with Streamlit) routes to ``SearchJobs``; it reads and
checks requests (the token, the fields' types, a bounded body) and leaves the work to ``SearchJobs`` and the API.

Every write (POST, DELETE) needs the service's token (``Authorization: Bearer TOKEN``); reads need it too when the
service listens beyond 127.0.0.1. Bad input is a 400 whose ``error`` is the command line's own message.
docs/service.md lists the routes.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import hmac
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from autopeft.errors import UserError
from autopeft.service.jobs import SearchJobs

if TYPE_CHECKING:
    from autopeft.api import Search
    from autopeft.spec import DataSpec

USER_HEADER = "x-autopeft-user"
MAX_BODY_BYTES = 256 * 2**20  # a spec with its data files, base64 in JSON; beyond this a request is refused (413)
log = logging.getLogger(__name__)


def create_app(jobs: SearchJobs, token: str, *, token_for_reads: bool = False) -> Starlette:
    """The API over ``jobs``. ``token``: the secret writes need (and reads, with ``token_for_reads``)."""

    def authorised(request: Request, write: bool) -> bool:
        if not write and not token_for_reads:
            return True
        offered = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        offered = offered or request.query_params.get("token", "")
        return bool(offered) and hmac.compare_digest(offered.encode(), token.encode())

    def endpoint(action: Callable[..., Any], write: bool = False, token_needed: bool = False,
                 fields: tuple[str, ...] = ()) -> Callable:
        """``write``: changes something (the token, 201); ``token_needed``: reads, but costly enough (a model
        loaded and run) that only the token's holders may ask (200); ``fields``: what a POST body may hold (a
        misspelt one, "trail" for "trial", was ignored and the request answered as if it were absent)."""
        async def handle(request: Request) -> Response:
            if not authorised(request, write or token_needed):
                return JSONResponse({"error": "a valid token is needed: Authorization: Bearer TOKEN (printed "
                                              "when the service started)"}, status_code=401)
            body = await _json_body(request) if request.method == "POST" else {}
            if isinstance(body, Response):
                return body
            try:
                _check_fields(body, fields)
                # The actions block (admission loads the model and data; Ray calls are synchronous).
                result = await run_in_threadpool(action, request, body)
            except UserError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            except Exception as exc:  # Ray's job server or the database failing: said as JSON, not a bare 500
                log.exception("%s %s failed", request.method, request.url.path)
                return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=500)
            return result if isinstance(result, Response) else JSONResponse(result, status_code=201 if write else 200)
        return handle

    def who(request: Request, body: dict[str, Any]) -> str:
        return str(body.get("launched_by") or request.headers.get(USER_HEADER) or "http")

    def launch(request: Request, body: dict[str, Any]) -> dict[str, Any]:
        if "example" in body:
            job = jobs.launch_example(str(body["example"]), name=_str(body, "name"), launched_by=who(request, body))
        elif isinstance(body.get("spec"), (str, dict)):
            job = jobs.launch(_spec_text(body["spec"]), name=_str(body, "name"), launched_by=who(request, body),
                              uploads=_files(body.get("files")))
        else:
            raise UserError('body: give "spec" (the YAML text) or "example" (a bundled example, e.g. "sst2")')
        return job.to_json()

    def name_of(request: Request) -> str:
        return request.path_params["name"]

    def export_zip(request: Request, body: dict[str, Any]) -> Response:
        from autopeft.api import load_search
        from autopeft.results.export import zip_tree

        name = name_of(request)
        search = load_search(name, storage=jobs.config.storage_url)
        with tempfile.TemporaryDirectory(prefix="autopeft-export-") as folder:
            out = Path(folder) / name
            search.export(out, picks=request.query_params.getlist("pick"),
                          include_chance=request.query_params.get("include_chance") == "true", flag="pick")
            archive = zip_tree(out)
        return Response(archive, media_type="application/zip",
                        headers={"content-disposition": f'attachment; filename="{name}-export.zip"'})

    tried: dict[str, Any] = {}  # the search last asked to predict, its trial's model kept for the next request

    def predict(request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """A trial on new inputs, as ``autopeft predict`` runs it: ``trial`` (a number or a pick), and ``texts``
        (a classifier's or regressor's, a pair as a list of two texts; a tagger's sentences, each a text or a list
        of words; a multiple-choice search's questions, each ``{"question": ..., "options": [...]}`` or a row by
        column name) or a decoder's ``prompts``."""
        from autopeft.api import load_search

        name = name_of(request)
        kept = tried.get(name)
        search = kept.refresh() if kept is not None else load_search(name, storage=jobs.config.storage_url)
        tried.clear()
        tried[name] = search
        trial = body.get("trial", "knee")
        if not isinstance(trial, int | str) or isinstance(trial, bool):
            raise UserError('body: "trial" is a trial number or a pick such as "knee"')
        number = search.trial_number(trial, include_chance=_flag(body, "include_chance"))
        if search.spec.model.task == "causal-lm":
            prompts = body.get("prompts")
            if prompts is None:
                raise UserError('body: give "prompts" (instructions, messages or texts, as the search\'s records '
                                'were read); a decoder answers with text')
            return {"trial": number, "responses": search.generate(
                number, prompts, max_new_tokens=_int(body, "max_new_tokens") or 128)}
        texts = body.get("texts")
        if search.spec.model.task == "multiple-choice":
            return _choose(search, number, texts, _flag(body, "probabilities"))
        tagger = search.spec.model.task == "token-classification"
        if not isinstance(texts, list):
            raise UserError('body: give "texts", a list of sentences (each a text, or a list of its words)' if tagger
                            else 'body: give "texts", a list of texts (a pair as a list of two texts)')
        if tagger:  # a list in texts is one sentence's words, never a pair
            return {"trial": number, "predictions": _tagged(search.predict(
                number, texts, probabilities=_flag(body, "probabilities")))}
        rows = [tuple(t) if isinstance(t, list) else t for t in texts]  # JSON has no tuples: a pair is a list
        probabilities = _flag(body, "probabilities")
        predicted = search.predict(number, rows, probabilities=probabilities)
        if probabilities:
            from autopeft.results.predict import predicted_labels

            chosen = (predicted_labels(predicted) if search.spec.model.task == "multi-label-classification" else
                      list(predicted.idxmax(axis=1)))  # several labels: each whose probability passes one half
            return {"trial": number, "labels": list(predicted.columns), "predictions": chosen,
                    "probabilities": predicted.to_numpy().tolist()}
        return {"trial": number, "predictions": predicted}

    def trials(request: Request, body: dict[str, Any]) -> dict[str, Any]:
        from autopeft.api import load_search

        search = load_search(name_of(request), storage=jobs.config.storage_url)
        return {"objectives": search.spec.objective_names, "chance": search.chance, "data_notes": search.data_notes,
                "trials": [_plain(record.to_json()) for record in search.records]}

    routes = [
        Route("/api/health", endpoint(lambda r, b: {"ok": True}), methods=["GET"]),
        Route("/api/searches", endpoint(lambda r, b: jobs.searches()), methods=["GET"]),
        Route("/api/searches", endpoint(launch, write=True, fields=("spec", "example", "name", "files",
                                                                    "launched_by")), methods=["POST"]),
        Route("/api/searches/{name}", endpoint(lambda r, b: jobs.status(name_of(r))), methods=["GET"]),
        Route("/api/searches/{name}", endpoint(lambda r, b: JSONResponse(jobs.delete(name_of(r))), write=True),
              methods=["DELETE"]),
        Route("/api/searches/{name}/trials", endpoint(trials), methods=["GET"]),
        Route("/api/searches/{name}/export.zip", endpoint(export_zip), methods=["GET"]),
        Route("/api/searches/{name}/predict", endpoint(predict, token_needed=True, fields=(
            "trial", "texts", "prompts", "probabilities", "include_chance", "max_new_tokens")), methods=["POST"]),
        Route("/api/searches/{name}/stop", endpoint(
            lambda r, b: {"stopped": [job.to_json() for job in jobs.stop(name_of(r))]}, write=True,
            fields=("launched_by",)), methods=["POST"]),
        Route("/api/searches/{name}/resume", endpoint(
            lambda r, b: jobs.resume(name_of(r), trials=_int(b, "trials"), launched_by=who(r, b)).to_json(),
            write=True, fields=("trials", "launched_by")), methods=["POST"]),
        Route("/api/searches/{name}/baselines", endpoint(
            lambda r, b: jobs.baselines(name_of(r), only=_strings(b, "only"), launched_by=who(r, b)).to_json(),
            write=True, fields=("only", "launched_by")), methods=["POST"]),
        Route("/api/searches/{name}/confirm", endpoint(
            lambda r, b: jobs.confirm(name_of(r), picks=_strings(b, "picks"), seeds=_int(b, "seeds") or 3,
                                      launched_by=who(r, b)).to_json(), write=True,
            fields=("picks", "seeds", "launched_by")), methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_allowed})


def _choose(search: Search, number: int, texts: Any, probabilities: bool) -> dict[str, Any]:
    """A multiple-choice trial's answers: the option chosen for each question and, with ``probabilities``, each
    option's probability, an object per question keyed by its options in the order given (``Search.predict``'s
    dicts: each question has options of its own, so there is no shared column of labels as a classifier's)."""
    predicted = search.predict(number, _questions(texts, search.spec.data), probabilities=probabilities)
    if not probabilities:
        return {"trial": number, "predictions": predicted}
    return {"trial": number, "predictions": [max(options, key=options.get) for options in predicted],
            "probabilities": predicted}


def _questions(texts: Any, data: DataSpec) -> list[Any]:
    """The body's questions as ``Search.predict`` takes them: ``{"question": ..., "options": [...]}`` as a
    ``(question, options)`` tuple (JSON has no tuples), and a row by the search's column names as it is (its
    options as the data holds them: a column each, or one column of a list). A field of the wrong type is named
    here, with its position, before the model is loaded."""
    form = ('{"question": "...", "options": ["...", "..."]}, or a row by the search\'s columns '
            f"{[*data.text_columns, *data.choice_columns]}")
    if not isinstance(texts, list):
        raise UserError(f'body: give "texts", a list of questions, each {form}')
    questions = []
    for index, value in enumerate(texts):
        if not isinstance(value, dict):
            raise UserError(f"texts[{index}]: expected {form}; got {type(value).__name__}")
        if set(value) == {"question", "options"} and not _names_columns(value, data):
            questions.append(_question_and_options(value, f"texts[{index}]"))
        else:
            questions.append(value)
    return questions


def _names_columns(value: dict[str, Any], data: DataSpec) -> bool:
    """Whether an object with the fields question and options is a row of a search whose own columns are named
    so: its options column may hold ARC's {text, label}, which the row's reading takes and a list's does not."""
    return {*data.text_columns, *data.choice_columns} == {"question", "options"}


def _question_and_options(value: dict[str, Any], where: str) -> tuple[str, list[Any]]:
    """``{"question": ..., "options": [...]}`` as ``Search.predict``'s tuple; a field of the wrong type is named
    with its place in the body (the API's own message would speak of Python tuples)."""
    question, options = value["question"], value["options"]
    if not isinstance(question, str):
        raise UserError(f"{where}.question: expected the question's text, got {question!r}")
    if not isinstance(options, list) or not all(o is None or isinstance(o, (str, int, float)) for o in options):
        raise UserError(f'{where}.options: expected a list of the options\' texts, e.g. ["red", "a dog"], got '
                        f"{options!r}")
    return question, options


def _tagged(sentences: list[list[tuple[str, str | None]]]) -> list[list[dict[str, str | None]]]:
    """A tagger's (word, tag) pairs as JSON objects, ``{"word": ..., "tag": ...}`` per word in order (the tag null
    for a word past ``data.max_length`` tokens): named fields, where a bare pair reads like a classifier's text
    pair."""
    return [[{"word": word, "tag": tag} for word, tag in pairs] for pairs in sentences]


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    """Every answer is JSON, a wrong path's too (Starlette's own is plain text)."""
    return JSONResponse({"error": f"no such endpoint: {request.url.path}; docs/service.md lists them"},
                        status_code=404)


async def _not_allowed(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": f"{request.method} is not taken at {request.url.path}; docs/service.md says "
                                  "which methods each endpoint takes"}, status_code=405)


async def _json_body(request: Request) -> dict[str, Any] | Response:
    too_large = JSONResponse({"error": f"body: larger than {MAX_BODY_BYTES // 2**20} MiB; send a smaller data file "
                                       "(e.g. a sample), or put the data where the service reads it"},
                             status_code=413)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return too_large
    chunks, size = [], 0
    async for chunk in request.stream():  # counted as it arrives: a missing or false length cannot fill memory
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return too_large
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        return {}
    content_type = request.headers.get("content-type", "")
    if "yaml" in content_type or content_type.startswith("text/"):
        return {"spec": raw.decode("utf-8", errors="replace")}  # a spec posted as it is, e.g. curl --data-binary
    try:
        import json

        body = json.loads(raw)
    except ValueError:
        if "form-urlencoded" in content_type:  # curl -d @spec.yaml: curl's default type, and it drops line breaks
            return JSONResponse({"error": "body: a form, as curl -d sends a file, with its line breaks dropped; "
                                          "send the spec with --data-binary @FILE -H 'content-type: "
                                          "application/yaml'"}, status_code=400)
        return JSONResponse({"error": "body: not JSON; send {\"spec\": \"...YAML...\"} or the YAML itself with "
                                      "content-type: application/yaml"}, status_code=400)
    if not isinstance(body, dict):
        return JSONResponse({"error": "body: expected a JSON object"}, status_code=400)
    return body


def _spec_text(spec: str | dict[str, Any]) -> str:
    """A spec given as YAML text, or as a JSON object of its fields (what a client building one in code sends):
    JSON is YAML, so the object's text is read by the same loader and checked by the same rules."""
    import json

    return spec if isinstance(spec, str) else json.dumps(spec)


def _files(files: Any) -> dict[str, bytes] | None:
    """Uploaded files: {"train.tsv": "<base64>"}."""
    if files is None:
        return None
    if not isinstance(files, dict):
        raise UserError('files: expected {"name.tsv": "<base64 of the file>", ...}')
    try:
        # Whitespace dropped first: `base64 FILE` wraps its lines at 76 characters.
        return {str(name): base64.b64decode("".join(str(content).split()), validate=True)
                for name, content in files.items()}
    except (binascii.Error, TypeError):
        raise UserError("files: each file's content must be base64") from None


def _check_fields(body: dict[str, Any], fields: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(fields))
    if unknown:
        close = difflib.get_close_matches(unknown[0], fields, n=1)
        raise UserError(f"body: unknown field {unknown[0]!r}" + (f"; did you mean {close[0]!r}?" if close else "")
                        + f" (this request takes {', '.join(fields) or 'no fields'})")


def _flag(body: dict[str, Any], field: str) -> bool:
    value = body.get(field, False)
    if not isinstance(value, bool):
        raise UserError(f"{field}: true or false (got {value!r})")
    return value


def _int(body: dict[str, Any], field: str, minimum: int = 1) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"{field}: expected a whole number of at least {minimum}, got {value!r}")
    return value


def _str(body: dict[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is not None and not isinstance(value, str):
        raise UserError(f"{field}: expected a string, got {value!r}")
    return value


def _strings(body: dict[str, Any], field: str) -> list[str] | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserError(f'{field}: expected a list of strings, e.g. ["knee"], got {value!r}')
    return value


def _plain(record: dict[str, Any]) -> dict[str, Any]:
    """A trial record with only JSON values (floats that are not finite become null)."""
    import math

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return clean(record)
